"""Helpers for driving pxkernel through jupyter_client in tests: start a kernel,
execute a cell and collect its IOPub messages, find processes (and the connection
file a kernel process was started with), wait for conditions with a deadline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from queue import Empty

import psutil
from jupyter_client.manager import start_new_kernel

TIMEOUT = 30


def pxkernel_started(**kwargs):
    """A running pxkernel and a connected blocking client, for a test that shuts it
    down itself: (km, kc)."""
    return start_new_kernel(kernel_name="pxkernel", startup_timeout=60, **kwargs)


@contextmanager
def pxkernel(**kwargs):
    """A running pxkernel with a connected blocking client; shut down afterwards."""
    km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60, **kwargs)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def is_idle(msg) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


def collect(kc, msg_id, timeout=TIMEOUT):
    """IOPub messages of one request, up to and including its idle status."""
    return read_until(kc, msg_id, is_idle, timeout)


def shell_reply(kc, msg_id, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def execute(kc, code, timeout=TIMEOUT, **kwargs):
    """Run a cell; returns (reply content, iopub messages)."""
    msg_id = kc.execute(code, **kwargs)
    reply = shell_reply(kc, msg_id, timeout)
    return reply["content"], collect(kc, msg_id, timeout)


def stdout_of(msgs, name="stdout"):
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == name)


def of_type(msgs, msg_type):
    return [m for m in msgs if m["msg_type"] == msg_type]


def pxkernel_under_a_parent(pxkernel_bin, connection_file):
    """`pxkernel kernel -f FILE` started by an intermediate Python parent (to be killed
    without a chance to clean up): (the parent's Popen, pxkernel's pid)."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()",
         str(pxkernel_bin), "kernel", "-f", str(connection_file)],
        stdout=subprocess.PIPE, text=True,
    )
    return parent, int(parent.stdout.readline())


def kernel_pid(km) -> int:
    return km.provisioner.process.pid


def home_pid(kc) -> int:
    reply, msgs = execute(kc, "import os; print(os.getpid())")
    assert reply["status"] == "ok", reply
    return int(stdout_of(msgs).strip())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids, timeout=15.0):
    """Wait until none of pids is alive; returns those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def wait_reaped(pids, timeout=15.0):
    """Wait until none of pids exists any more, not even as a zombie (its parent
    has collected it); returns those that still exist."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if psutil.pid_exists(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if psutil.pid_exists(p)]
    return left


def children(pid: int) -> list[int]:
    """Direct child processes of pid."""
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def connection_file_of(pid: int) -> Path:
    """The connection file a kernel process was started with, from its command
    line: the argument of `-f` (ipykernel, pxkernel), else the one argument that
    names an existing .json file (a kernelspec passing `{connection_file}` bare)."""
    proc = psutil.Process(pid)
    args = proc.cmdline()
    cwd = Path(proc.cwd())
    named = None
    for i, arg in enumerate(args):
        if arg == "-f" and i + 1 < len(args):
            named = args[i + 1]
            break
        if arg.startswith("--f="):
            named = arg[len("--f="):]
            break
    if named is None:
        files = [a for a in args[1:] if a.endswith(".json") and (cwd / a).is_file()]
        assert len(files) == 1, f"no single connection file in {args}"
        named = files[0]
    return cwd / named


def descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


# -- %px and %engines ----------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TAGGED = re.compile(r"^\[(stdout|stderr|output):(\d+)\] ?(.*)$")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def tagged_lines(msgs, name=None):
    """Every `[stdout:0] text` / `[stderr:1] text` / `[output:2]` line of the stream
    outputs, in arrival order, as (kind, engine id, text)."""
    out = []
    for m in of_type(msgs, "stream"):
        if name is not None and m["content"]["name"] != name:
            continue
        for line in m["content"]["text"].splitlines():
            match = TAGGED.match(line)
            if match:
                out.append((match.group(1), int(match.group(2)), match.group(3)))
    return out


def untagged_lines(msgs, name="stdout"):
    """Stream lines that carry no engine tag (the home kernel's, pxkernel's notices)."""
    return [line for line in stdout_of(msgs, name).splitlines() if not TAGGED.match(line)]


def engine_tracebacks(msgs) -> dict[int, str]:
    """The stderr blocks `[N:execute]\\n<traceback>` by engine id, ANSI colours removed."""
    text = strip_ansi(stdout_of(msgs, "stderr"))
    blocks: dict[int, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^\[(\d+):execute\](.*)$", line)
        if match:
            current = int(match.group(1))
            blocks[current] = blocks.get(current, "") + match.group(2).strip() + "\n"
        elif current is not None and not TAGGED.match(line):
            blocks[current] += line + "\n"
        else:
            current = None
    return blocks


def error_of(msgs):
    """The one `error` output of a cell."""
    errors = of_type(msgs, "error")
    assert len(errors) == 1, [m["content"] for m in errors]
    return errors[0]["content"]


def engines_table(kc) -> dict[int, dict[str, str]]:
    """`%engines` parsed from its text/plain table: engine id -> {column: value}."""
    reply, msgs = execute(kc, "%engines")
    assert reply["status"] == "ok", reply
    (table,) = of_type(msgs, "display_data")
    data = table["content"]["data"]
    assert "<table>" in data["text/html"]
    lines = data["text/plain"].splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == ["id", "kernel", "host", "pid", "state", "heartbeat", "uptime"], header
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == len(header):
            row = dict(zip(header, cells))
            rows[int(row["id"])] = row
    return rows


def wait_until(predicate, timeout=15.0, interval=0.1, what="a condition"):
    """Poll predicate until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_until(kc, msg_id, predicate, timeout=TIMEOUT):
    """IOPub messages of one request up to and including the first for which
    predicate(msg) is true (the request keeps running)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no matching message for {msg_id}; got {[m['msg_type'] for m in out]}")
        try:
            msg = kc.get_iopub_msg(timeout=remaining)
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(msg)
        if predicate(msg):
            return out
        if is_idle(msg):
            raise AssertionError(f"the request ended before the awaited message: {[m['content'] for m in out]}")


def is_tagged(kind, engine, text=None):
    """A predicate for read_until: a stream line `[kind:engine] text` (any text when None)."""

    def predicate(msg):
        if msg["msg_type"] != "stream":
            return False
        return any(
            k == kind and e == engine and (text is None or t == text) for k, e, t in tagged_lines([msg])
        )

    return predicate


def finish(kc, msg_id, seen, timeout=TIMEOUT):
    """The reply of a request whose first IOPub messages were read already, and all its messages."""
    reply = shell_reply(kc, msg_id, timeout)
    return reply["content"], seen + collect(kc, msg_id, timeout)


def control_kernel_info(kc, timeout=TIMEOUT):
    """kernel_info_request on the control channel; returns the reply content."""
    msg = kc.session.msg("kernel_info_request")
    kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_control_msg(timeout=max(0.01, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def heartbeat_echo(kc, timeout=5.0) -> bool:
    """One ping on the heartbeat channel, on a socket of our own; True when echoed in time."""
    import zmq

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"{kc.transport}://{kc.ip}:{kc.hb_port}")
        ping = f"ping-{time.monotonic_ns()}".encode()
        sock.send(ping)
        if not sock.poll(int(timeout * 1000)):
            return False
        return sock.recv() == ping
    finally:
        sock.close()


def notebook_env(**extra) -> dict[str, str]:
    """The environment for a kernel that should behave as in a notebook: without
    PYTEST_CURRENT_TEST, under which ipykernel does not capture output written to
    file descriptors 1 and 2 (os.write, C extensions, subprocesses)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(extra)
    return env


def interrupt_a_running_cell(km, kc):
    """Start a long cell, interrupt it once it runs (it says so), and return its reply."""
    msg_id = kc.execute("import time\nprint('running', flush=True)\nfor _ in range(600): time.sleep(0.1)")
    read_until(kc, msg_id, lambda m: m["msg_type"] == "stream" and "running" in m["content"]["text"])
    km.interrupt_kernel()
    return shell_reply(kc, msg_id, timeout=20)["content"]
