"""Helpers for driving pxkernel through jupyter_client in tests: start a kernel,
execute a cell and collect its IOPub messages, find processes."""

from __future__ import annotations

import time
from contextlib import contextmanager
from queue import Empty

import psutil
from jupyter_client.manager import start_new_kernel

TIMEOUT = 30


@contextmanager
def pxkernel(**kwargs):
    """A running pxkernel with a connected blocking client; shut down afterwards."""
    km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60, **kwargs)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def collect(kc, msg_id, timeout=TIMEOUT):
    """IOPub messages of one request, up to and including its idle status."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no idle for {msg_id}; got {[m['msg_type'] for m in out]}")
        try:
            msg = kc.get_iopub_msg(timeout=remaining)
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out


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


def descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
