"""Process hygiene: shutdown, restart, SIGTERM, SIGKILL and the death of
pxkernel's parent leave no process behind; logs never carry a key."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import start_new_kernel

from kernel_helpers import (
    alive,
    descendants,
    execute,
    home_pid,
    kernel_pid,
    pxkernel,
    stdout_of,
    wait_gone,
)

SLEEPER = "import subprocess\nsleeper = subprocess.Popen(['sleep', '300'])\nprint(sleeper.pid)"


def start():
    return start_new_kernel(kernel_name="pxkernel", startup_timeout=60)


def family(km, kc):
    """pxkernel, its home kernel and a grandchild the home kernel started."""
    px = kernel_pid(km)
    home = home_pid(kc)
    reply, msgs = execute(kc, SLEEPER)
    assert reply["status"] == "ok"
    grandchild = int(stdout_of(msgs).strip())
    assert home in descendants(px) and grandchild in descendants(px)
    return [px, home, grandchild]


def test_shutdown_with_a_busy_home_leaves_no_process():
    km, kc = start()
    pids = family(km, kc)
    kc.execute("import time; time.sleep(120)")
    time.sleep(0.5)
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert wait_gone(pids) == []


def test_restart_replaces_every_process():
    km, kc = start()
    try:
        old = family(km, kc)
        km.restart_kernel(now=False)
        assert wait_gone(old) == []
        kc.wait_for_ready(timeout=60)
        reply, msgs = execute(kc, "print('back')")
        assert stdout_of(msgs) == "back\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_sigterm_stops_every_child():
    km, kc = start()
    try:
        pids = family(km, kc)
        os.kill(pids[0], signal.SIGTERM)
        assert wait_gone(pids) == []
    finally:
        kc.stop_channels()
        km.cleanup_resources()


def test_sigint_does_not_kill_the_kernel():
    km, kc = start()
    try:
        px = kernel_pid(km)
        os.kill(px, signal.SIGINT)
        time.sleep(0.5)
        assert alive(px)
        reply, msgs = execute(kc, "print('alive')")
        assert stdout_of(msgs) == "alive\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_sigkill_of_pxkernel_takes_the_home_kernel_down():
    km, kc = start()
    try:
        px = kernel_pid(km)
        home = home_pid(kc)
        os.kill(px, signal.SIGKILL)
        assert wait_gone([px, home]) == []
    finally:
        kc.stop_channels()
        km.cleanup_resources()


def test_death_of_the_parent_stops_everything(tmp_path, pxkernel_bin):
    cf = str(tmp_path / "kernel.json")
    write_connection_file(cf, ip="127.0.0.1", key=b"parent-death-key")
    # An intermediate parent, killed without a chance to clean up.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()",
            str(pxkernel_bin),
            "kernel",
            "-f",
            cf,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    px = int(parent.stdout.readline())
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        home = home_pid(kc)
        parent.kill()
        parent.wait()
        assert wait_gone([px, home]) == []
    finally:
        kc.stop_channels()
        for pid in (px,):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_debug_logs_never_contain_a_key(tmp_path):
    log = tmp_path / "pxkernel.log"
    env = dict(os.environ, PXKERNEL_LOG="debug", PXKERNEL_LOG_FILE=str(log))
    with pxkernel(env=env) as (km, kc):
        key = km.session.key.decode()
        execute(kc, "print('x')")
        execute(kc, "1/0")
        home_key = None
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        for f in runtime.glob("kernel-pxk-*.json"):
            home_key = json.loads(f.read_text())["key"]
        assert home_key, "the home kernel's connection file is in the runtime dir"
    text = log.read_text()
    assert "DEBUG" in text or "INFO" in text, "debug logging was on"
    assert key not in text
    assert home_key not in text


def test_connection_files_we_write_are_private(tmp_path):
    km, kc = start()
    try:
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        files = list(runtime.glob("kernel-pxk-*.json"))
        assert files
        for f in files:
            assert f.stat().st_mode & 0o777 == 0o600, f
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_home_over_unix_sockets_leaves_no_file_behind(tmp_path):
    """An ipykernel home is reached by Unix sockets in the runtime dir, not
    loopback TCP; stopping pxkernel removes the sockets and the connection file."""
    runtime = tmp_path / "rt"
    with pxkernel(env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))) as (_, kc):
        reply, outputs = execute(kc, "print(6 * 7)")
        assert reply["status"] == "ok"
        assert stdout_of(outputs) == "42\n"
        [home_file] = runtime.glob("kernel-pxk-*.json")
        info = json.loads(home_file.read_text())
        assert info["transport"] == "ipc"
        sockets = [Path(f"{info['ip']}-{info[p]}") for p in ("shell_port", "iopub_port", "hb_port")]
        assert all(s.is_socket() for s in sockets), sockets
    assert list(runtime.iterdir()) == []
