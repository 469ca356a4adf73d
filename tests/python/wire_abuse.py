"""Raw ZMTP for the wire-abuse tests and bench/wire_compare.py: a greeting, a READY,
connections to a kernel's ports with or without a handshake, whether the kernel
closes one, and a process's address space."""

from __future__ import annotations

import socket
import struct
import time

PORTS = ("shell_port", "control_port", "stdin_port", "iopub_port", "hb_port")
COMMAND, LONG, MORE = 0x04, 0x02, 0x01


def greeting(mechanism=b"NULL"):
    return b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + mechanism.ljust(20, b"\0") + b"\0" * 32


def ready(socket_type: bytes):
    name = b"Socket-Type"
    body = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(socket_type)) + socket_type
    return bytes([COMMAND, len(body)]) + body


def peer_type(port_name):
    return b"SUB" if port_name == "iopub_port" else b"DEALER"


def connect(info, port_name, handshake=False):
    s = socket.create_connection((info["ip"], info[port_name]), timeout=10)
    if handshake:
        s.sendall(greeting() + ready(peer_type(port_name)))
        got = b""
        while len(got) < 64:  # pxkernel's greeting; its READY follows
            chunk = s.recv(64 - len(got))
            assert chunk, "closed during the handshake"
            got += chunk
    return s


def closed_by_peer(s, timeout=10.0):
    """Whether the peer closes the connection (reads, discarding, until EOF)."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


def vm_size_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1])
    raise AssertionError("no VmSize")
