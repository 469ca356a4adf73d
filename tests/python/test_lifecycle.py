"""Process hygiene: shutdown, restart, SIGTERM, SIGKILL and the death of
pxkernel's parent leave no process behind (home kernel, engines, and what those
started); logs never carry a key; the connection files pxkernel writes for the
kernels it starts are private and removed with them."""

import json
import os
import signal
import time
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import start_new_kernel

from kernel_helpers import (
    alive,
    children,
    connection_file_of,
    descendants,
    engines_table,
    execute,
    home_pid,
    kernel_pid,
    pxkernel,
    pxkernel_under_a_parent,
    read_until,
    stdout_of,
    tagged_lines,
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


def test_shutdown_with_a_busy_home_and_engines_leaves_no_process():
    km, kc = start()
    try:
        px, home, home_sleeper = family(km, kc)
        reply, msgs = execute(kc, "%engines start -n 2", timeout=120)
        assert reply["status"] == "ok", (reply, stdout_of(msgs))
        engines = [int(r["pid"]) for r in engines_table(kc).values()]
        # Each engine starts a process of its own: pxkernel's grandchildren.
        reply, msgs = execute(kc, f"%px {SLEEPER.replace(chr(10), '; ')}")
        assert reply["status"] == "ok", reply
        engine_sleepers = [int(text) for _, _, text in tagged_lines(msgs)]
        assert len(engine_sleepers) == 2, tagged_lines(msgs)
        assert set(engines + engine_sleepers) <= set(descendants(px))
        everyone = sorted({px, home, home_sleeper, *engines, *engine_sleepers, *descendants(px)})
        assert all(alive(p) for p in everyone)
        # The home is busy when the shutdown comes: the cell said it runs.
        msg_id = kc.execute("import time\nprint('busy', flush=True)\ntime.sleep(120)")
        read_until(kc, msg_id, lambda m: m["msg_type"] == "stream" and "busy" in m["content"]["text"])
        # A frontend's shutdown request; pxkernel must stop everything itself
        # (jupyter_client's fallback would signal pxkernel's process group).
        kc.shutdown()
        assert wait_gone(everyone) == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


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
    parent, px = pxkernel_under_a_parent(pxkernel_bin, cf)
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
        # This kernel's home, by its process: not any file of the runtime dir.
        home_file = connection_file_of(home_pid(kc))
        home_key = json.loads(home_file.read_text())["key"]
        assert home_key and home_key != key
    text = log.read_text()
    assert "DEBUG" in text or "INFO" in text, "debug logging was on"
    assert key not in text
    assert home_key not in text


def test_connection_files_we_write_are_private(tmp_path):
    km, kc = start()
    try:
        px = kernel_pid(km)
        home = home_pid(kc)
        reply, msgs = execute(kc, "%engines start -n 1", timeout=120)
        assert reply["status"] == "ok", (reply, stdout_of(msgs))
        (engine,) = [int(r["pid"]) for r in engines_table(kc).values()]
        assert {home, engine} <= set(children(px)), "both are pxkernel's own children"
        files = {pid: connection_file_of(pid) for pid in (home, engine)}
        assert len(set(files.values())) == 2, files
        for pid, f in files.items():
            assert json.loads(f.read_text())["key"], f
            assert f.stat().st_mode & 0o777 == 0o600, (pid, f, oct(f.stat().st_mode))
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
        home_file = connection_file_of(home_pid(kc))
        assert home_file.resolve().is_relative_to(runtime.resolve()), home_file
        info = json.loads(home_file.read_text())
        assert info["transport"] == "ipc"
        sockets = [Path(f"{info['ip']}-{info[p]}") for p in ("shell_port", "iopub_port", "hb_port")]
        assert all(s.is_socket() for s in sockets), sockets
    assert list(runtime.iterdir()) == []
