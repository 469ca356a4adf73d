"""Shared by the %ssh_tunnel suites (test_ssh_tunnel.py, test_ssh_tunnel_faults.py):
constants, the http servers on the SSH test hosts' own loopbacks, the fixtures that
give the hosts, those servers and a pxkernel of a test's own, and helpers to run
cells, read what %ssh_tunnel says (its opening lines, --list, the notices at the
next cell), fetch through a forward (plain or SOCKS5) and find the ssh processes
pxkernel runs. Not a test module: the suites import from it, fixtures included."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
from kernel_helpers import (
    error_of,
    execute,
    kernel_pid,
    of_type,
    pxkernel_started,
    stdout_of,
    wait_until,
)

SYSTEM_PYTHON = "/usr/bin/python3"
REMOTE_PORT = 8889  # each host's own http server listens on its loopback, this port
FILE = "hello.txt"
NOTICE = "pxkernel: the ssh connection to"
OPENED = re.compile(r"^tunnel (\S+) to (\S+) (open|already open|replaced and open):\n((?:  .+\n)+)$")
FORWARD = re.compile(r"^  (\S+):(\d+) (?:→ (\S+)|\(SOCKS\))$")


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts(ssh_hosts):
    return ssh_hosts


class Server:
    """python3 -m http.server on 127.0.0.1:8889 inside a host's network namespace,
    serving FILE with content unique to this run."""

    def __init__(self, hosts, name: str):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"pxk-http-{name}-")
        self.content = f"served by {name} {uuid.uuid4().hex}\n"
        Path(self.dir, FILE).write_text(self.content)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", hosts[name].netns, SYSTEM_PYTHON, "-u", "-m", "http.server",
             str(REMOTE_PORT), "--bind", "127.0.0.1", "--directory", self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if "Serving HTTP" not in line:
            self.stop()
            raise RuntimeError(f"http server in {name}'s netns did not start: {line!r}")

    def stop(self):
        self.proc.kill()  # by pid: `ip netns exec` execs python
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def servers(hosts):
    started = {}
    try:
        for name in ("pxa", "pxb", "pxc"):
            started[name] = Server(hosts, name)
        yield started
    finally:
        for s in started.values():
            s.stop()


@pytest.fixture
def fresh(hosts):
    """A pxkernel of the test's own (for faults: no other test's notices)."""
    km, kc = pxkernel_started()
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=False)
        else:
            km.cleanup_resources()


# -- helpers -------------------------------------------------------------------------


def cell(kc, code, *, allow_stdin=False, timeout=60):
    """Run a cell; (reply content, iopub messages). Headless unless allow_stdin."""
    return execute(kc, code, timeout=timeout, allow_stdin=allow_stdin)


def ok(kc, code, **kw):
    reply, msgs = cell(kc, code, **kw)
    assert reply["status"] == "ok", (code, reply, stdout_of(msgs, "stderr"))
    return msgs


def failure(kc, code, **kw):
    """A cell that must fail: (ename, evalue)."""
    reply, msgs = cell(kc, code, **kw)
    assert reply["status"] == "error", (code, stdout_of(msgs))
    err = error_of(msgs)
    assert (reply["ename"], reply["evalue"]) == (err["ename"], err["evalue"])
    return err["ename"], err["evalue"]


def opened(msgs):
    """The stdout of an opening %ssh_tunnel: (name, destination, how, [(bind, port, target)])."""
    out = stdout_of(msgs)
    m = OPENED.match(out)
    assert m, repr(out)
    forwards = []
    for line in m.group(4).splitlines():
        f = FORWARD.match(line)
        assert f, repr(line)
        forwards.append((f.group(1), int(f.group(2)), f.group(3)))
    return m.group(1), m.group(2), m.group(3), forwards


def open_tunnel(kc, args, **kw):
    """`%ssh_tunnel ARGS` that must open: (name, local port of its first forward)."""
    name, _, how, forwards = opened(ok(kc, f"%ssh_tunnel {args}", **kw))
    assert how in ("open", "already open", "replaced and open"), how
    return name, forwards[0][1]


def tunnel_rows(kc):
    """`%ssh_tunnel --list` as {name: {column: value}}; {} when it says there are none."""
    msgs = ok(kc, "%ssh_tunnel --list")
    tables = of_type(msgs, "display_data")
    if not tables:
        assert stdout_of(msgs).startswith("no tunnels: "), stdout_of(msgs)
        return {}
    (table,) = tables
    data = table["content"]["data"]
    assert "<table>" in data["text/html"], data
    lines = data["text/plain"].splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header == ["name", "destination", "forwards", "state", "since", "last error"], header
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), line
        rows[cells[0]] = dict(zip(header, cells))
        assert f">{cells[0]}</td>" in data["text/html"], data["text/html"]
    return rows


def notices(msgs):
    return [line for line in stdout_of(msgs, "stderr").splitlines() if line.startswith(NOTICE)]


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(port, host="127.0.0.1", timeout=5.0) -> str:
    with _DIRECT.open(f"http://{host}:{port}/{FILE}", timeout=timeout) as r:
        return r.read().decode()


def fetches(port, want, timeout=30.0, what=None):
    """Poll until FILE read through 127.0.0.1:port is `want`."""

    def attempt():
        try:
            return fetch(port, timeout=2) == want
        except OSError:
            return False

    wait_until(attempt, timeout=timeout, interval=0.1, what=what or f"{want!r} through 127.0.0.1:{port}")


def accepts(port, host="127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def masters(km) -> list[psutil.Process]:
    """The ssh masters pxkernel runs: its children `ssh -M ...`."""
    out = []
    try:
        kids = psutil.Process(kernel_pid(km)).children()
    except psutil.NoSuchProcess:
        return out
    for p in kids:
        try:
            if p.cmdline()[:2] == ["ssh", "-M"] and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def master_pids(km) -> list[int]:
    return sorted(p.pid for p in masters(km))


def ssh_children(km) -> list[int]:
    """Every ssh process under pxkernel (masters and `ssh -O` control commands)."""
    out = []
    try:
        kids = psutil.Process(kernel_pid(km)).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for p in kids:
        try:
            if p.name() == "ssh":
                out.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def fingerprint(hosts, name) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", os.path.join(hosts[name].dir, "hostkey.pub")],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def host_key_blob(hosts, name) -> str:
    return Path(hosts[name].dir, "hostkey.pub").read_text().split()[1]


def _recv_exactly(s, n) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def socks5_fetch(port, host, target_port, path) -> str:
    """HTTP GET of path through the SOCKS5 proxy on 127.0.0.1:port, to host:target_port
    as the far end resolves it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
        assert _recv_exactly(s, 2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + struct.pack(">H", target_port))
        head = _recv_exactly(s, 4)
        assert head[:2] == b"\x05\x00", head  # succeeded
        _recv_exactly(s, {1: 4, 4: 16}[head[3]] + 2)  # bound address and port
        s.sendall(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()
