"""The wire as an attack surface: raw bytes through real sockets at a running
pxkernel, on each of its five ports. Garbage, half greetings held open, a foreign
security mechanism, a frame announcing 2^62 bytes and four announcing 4 GiB - 1,
200,000 empty MORE frames, a message over PXKERNEL_MAX_MESSAGE, 1,000 idle
connections. Each connection is dropped by pxkernel (or held, harmlessly); after
each case a jupyter_client kernel_info_request still answers, and pxkernel's
address space has not grown by what the frame headers announced."""

from __future__ import annotations

import os
import resource
import socket
import struct

import pytest
from kernel_helpers import kernel_pid, pxkernel_started, wait_until
from wire_abuse import LONG, MORE, PORTS, closed_by_peer, connect, greeting, vm_size_kib

ALIVE_TIMEOUT = 5.0


def ended(s):
    """Whether the peer has closed s (what it sent before is read and discarded)."""
    s.setblocking(False)
    try:
        while True:
            if not s.recv(65536):
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def assert_answers(kc):
    kc.kernel_info()
    reply = kc.get_shell_msg(timeout=ALIVE_TIMEOUT)
    assert reply["msg_type"] == "kernel_info_reply"


@pytest.fixture(scope="module")
def target():
    km, kc = pxkernel_started()
    try:
        yield km, kc, km.get_connection_info()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


@pytest.mark.parametrize("port", PORTS)
def test_garbage_is_turned_away(target, port):
    km, kc, info = target
    s = connect(info, port)
    s.sendall(os.urandom(4096))
    assert closed_by_peer(s)
    s.close()
    assert_answers(kc)


@pytest.mark.parametrize("port", PORTS)
def test_a_foreign_mechanism_is_turned_away(target, port):
    km, kc, info = target
    s = connect(info, port)
    s.sendall(greeting(b"CURVE"))
    assert closed_by_peer(s)
    s.close()
    assert_answers(kc)


@pytest.mark.parametrize("port", PORTS)
def test_a_half_greeting_held_open_blocks_nothing(target, port):
    km, kc, info = target
    held = [connect(info, port) for _ in range(10)]
    for s in held:
        s.sendall(greeting()[:10])
    assert_answers(kc)
    # The handshake has a deadline: they are closed in the end.
    assert all(closed_by_peer(s, timeout=20) for s in held)
    for s in held:
        s.close()


@pytest.mark.parametrize("port", PORTS)
def test_frames_announcing_more_than_a_message_may_hold(target, port):
    km, kc, info = target
    pid = kernel_pid(km)
    before = vm_size_kib(pid)
    conns = []
    for size in (1 << 62, (4 << 30) - 1, (4 << 30) - 1, (4 << 30) - 1, (4 << 30) - 1):
        s = connect(info, port, handshake=True)
        s.sendall(bytes([LONG]) + struct.pack(">Q", size) + b"x" * 1000)
        conns.append(s)
    assert all(closed_by_peer(s) for s in conns)
    for s in conns:
        s.close()
    assert_answers(kc)
    grown = vm_size_kib(pid) - before
    assert grown < 256 << 10, f"the address space grew by {grown} KiB"


@pytest.mark.parametrize("port", PORTS)
def test_endless_more_frames_end_the_connection(target, port):
    km, kc, info = target
    s = connect(info, port, handshake=True)
    try:
        s.sendall(bytes([MORE, 0]) * 200_000)
    except (BrokenPipeError, ConnectionResetError):
        pass  # dropped before all of it was sent
    assert closed_by_peer(s)
    s.close()
    assert_answers(kc)


def test_a_thousand_idle_connections(target):
    km, kc, info = target
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    conns = []
    try:
        for i in range(1000):
            conns.append(socket.create_connection((info["ip"], info[PORTS[i % 5]]), timeout=10))
        assert_answers(kc)
        # 200 a port, at most 64 of them in their handshake: the others are closed.
        wait_until(lambda: sum(map(ended, conns)) >= 1000 - 5 * 64, timeout=15,
                   what="connections past the handshake cap closed")
    finally:
        for s in conns:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert_answers(kc)


def test_a_message_over_the_configured_maximum_drops_only_its_connection(tmp_path):
    log = tmp_path / "pxkernel.log"
    env = dict(os.environ, PXKERNEL_MAX_MESSAGE="64K", PXKERNEL_LOG="debug", PXKERNEL_LOG_FILE=str(log))
    km, kc = pxkernel_started(env=env)
    try:
        info = km.get_connection_info()
        s = connect(info, "shell_port", handshake=True)
        # Three frames of 30 KiB: each under the limit, the message over it.
        s.sendall((bytes([MORE | LONG]) + struct.pack(">Q", 30 << 10) + b"x" * (30 << 10)) * 3)
        assert closed_by_peer(s)
        s.close()
        assert_answers(kc)
        # A message under it is read (and, unsigned, dropped by the protocol layer).
        s = connect(info, "shell_port", handshake=True)
        s.sendall(bytes([LONG]) + struct.pack(">Q", 60 << 10) + b"x" * (60 << 10))
        assert not closed_by_peer(s, timeout=1.0)
        s.close()
        assert_answers(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    assert "larger than the limit" in log.read_text()
