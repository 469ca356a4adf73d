"""%ssh_tunnel against the SSH test hosts (tests/hosts): forwards that reach a
server only the remote host can see (its own loopback, in its network namespace),
port 0, SOCKS, a Unix socket, --list / --close, ProxyJump, prompts brought to the
frontend (unknown host key, key passphrase) and refused at once when it takes no
input (and a dropped master that would need the passphrase going down saying so),
and errors: unreachable, refused, a local port in use, usage. Drops, reconnects and
the ssh left after pxkernel ends are in test_ssh_tunnel_faults.py, the shared
helpers and fixtures in ssh_tunnel_support.py. Skipped (with the reason) where the
hosts cannot run — a failure under PXKERNEL_REQUIRE_ALL=1."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from kernel_helpers import (
    collect,
    pxkernel_started,
    shell_reply,
    stdout_of,
    wait_gone,
    wait_until,
)
from ssh_tunnel_support import (
    FILE,
    REMOTE_PORT,
    accepts,
    cell,
    failure,
    fetch,
    fingerprint,
    free_port,
    fresh,  # noqa: F401
    host_key_blob,
    hosts,  # noqa: F401
    master_pids,
    masters,
    notices,
    ok,
    open_tunnel,
    opened,
    servers,  # noqa: F401
    socks5_fetch,
    ssh_children,
    tunnel_rows,
)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_kernel(hosts, tmp_path_factory):
    """One pxkernel for the tests that neither kill nor fault it, logging at debug
    level to a file (read by the passphrase and usage tests)."""
    log = tmp_path_factory.mktemp("sshlog") / "pxkernel.log"
    km, kc = pxkernel_started(env=dict(os.environ, PXKERNEL_LOG="debug", PXKERNEL_LOG_FILE=str(log)))
    km.pxk_log = log
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


@pytest.fixture
def kernel(shared_kernel):
    """The shared kernel; every tunnel closed afterwards and any notice drained."""
    km, kc = shared_kernel
    yield km, kc
    cell(kc, "%ssh_tunnel --close --all")
    cell(kc, "pass")


# -- the seed story --------------------------------------------------------------------


def test_a_tutorial_line_reaches_a_server_only_the_host_sees(kernel, hosts, servers):
    km, kc = kernel
    pxa = servers["pxa"]
    # The server listens on pxa's own loopback: not reachable from here directly.
    for addr in ("127.0.0.1", hosts["pxa"].address):
        try:
            got = fetch(REMOTE_PORT, host=addr, timeout=2)
        except OSError:
            got = None
        assert got != pxa.content, addr
    port = free_port()
    msgs = ok(kc, f"%ssh_tunnel -N -f -L 127.0.0.1:{port}:127.0.0.1:{REMOTE_PORT} pxa")
    assert stdout_of(msgs, "stderr") == ""
    assert stdout_of(msgs) == f"tunnel pxa to pxa open:\n  127.0.0.1:{port} → 127.0.0.1:{REMOTE_PORT}\n"
    # A plain cell, in the home kernel, reads through it.
    msgs = ok(kc, f"import urllib.request\n"
                  f"print(urllib.request.urlopen('http://127.0.0.1:{port}/{FILE}', timeout=10).read().decode(), end='')")
    assert stdout_of(msgs) == pxa.content
    # The same line again: the tunnel that is open, nothing new.
    (pid,) = master_pids(km)
    msgs = ok(kc, f"%ssh_tunnel -N -f -L 127.0.0.1:{port}:127.0.0.1:{REMOTE_PORT} pxa")
    assert stdout_of(msgs) == f"tunnel pxa to pxa already open:\n  127.0.0.1:{port} → 127.0.0.1:{REMOTE_PORT}\n"
    assert master_pids(km) == [pid]
    assert list(tunnel_rows(kc)) == ["pxa"]


# -- port 0, SOCKS, --list, --close ------------------------------------------------------


def test_port_0_list_and_close(kernel, hosts, servers):
    km, kc = kernel
    name, port = open_tunnel(kc, f"--name web -L 0:127.0.0.1:{REMOTE_PORT} pxa")
    assert name == "web" and port > 0
    assert fetch(port) == servers["pxa"].content
    rows = tunnel_rows(kc)
    assert list(rows) == ["web"]
    row = rows["web"]
    assert row["destination"] == "pxa"
    assert row["forwards"] == f"127.0.0.1:{port} → 127.0.0.1:{REMOTE_PORT}"
    assert row["state"] == "up"
    assert row["since"].endswith(" ago"), row
    assert row["last error"] == "-"
    # The same line again keeps its port; another line under the same name replaces it.
    assert opened(ok(kc, f"%ssh_tunnel --name web -L 0:127.0.0.1:{REMOTE_PORT} pxa"))[2:] == (
        "already open", [("127.0.0.1", port, f"127.0.0.1:{REMOTE_PORT}")])
    _, _, how, ((_, port2, _), (_, port3, _)) = opened(
        ok(kc, f"%ssh_tunnel --name web -L 0:127.0.0.1:{REMOTE_PORT} -L 0:127.0.0.1:{REMOTE_PORT} pxa"))
    assert how == "replaced and open"
    assert not accepts(port)
    assert fetch(port2) == fetch(port3) == servers["pxa"].content
    msgs = ok(kc, "%ssh_tunnel --close web")
    assert stdout_of(msgs) == "tunnel web closed\n"
    assert not accepts(port2) and not accepts(port3)
    assert tunnel_rows(kc) == {}
    assert wait_gone(master_pids(km)) == [] and master_pids(km) == []


def test_close_all_closes_several_and_one_master_serves_a_host(kernel, hosts, servers):
    km, kc = kernel
    _, a1 = open_tunnel(kc, f"--name a1 -L 0:127.0.0.1:{REMOTE_PORT} pxa")
    _, a2 = open_tunnel(kc, f"--name a2 -L 0:127.0.0.1:{REMOTE_PORT} pxa")
    _, b1 = open_tunnel(kc, f"--name b1 -L 0:127.0.0.1:{REMOTE_PORT} pxb")
    assert len({a1, a2, b1}) == 3
    # Unnamed tunnels are named after their host, numbered when taken.
    assert open_tunnel(kc, "-L 0:127.0.0.1:9 pxa")[0] == "pxa"
    assert open_tunnel(kc, "-L 0:127.0.0.1:10 pxa")[0] == "pxa-2"
    assert len(master_pids(km)) == 2, "one master per destination"
    # Closing one tunnel of pxa leaves the other on the same master working.
    before = master_pids(km)
    ok(kc, "%ssh_tunnel --close a1")
    assert not accepts(a1)
    assert fetch(a2) == servers["pxa"].content
    assert master_pids(km) == before
    assert set(tunnel_rows(kc)) == {"a2", "b1", "pxa", "pxa-2"}
    msgs = ok(kc, "%ssh_tunnel --close --all")
    assert stdout_of(msgs) == "closed a2, b1, pxa, pxa-2\n"
    assert not accepts(a2) and not accepts(b1)
    assert tunnel_rows(kc) == {}
    assert wait_gone(before) == []
    assert stdout_of(ok(kc, "%ssh_tunnel --close --all")) == "no tunnel was open\n"


def test_socks_and_public_bind(kernel, hosts, servers):
    km, kc = kernel
    msgs = ok(kc, "%ssh_tunnel --name socks -D 0 pxa")
    name, dest, how, ((bind, port, target),) = opened(msgs)
    assert (name, dest, how, bind, target) == ("socks", "pxa", "open", "127.0.0.1", None)
    assert stdout_of(msgs).endswith(" (SOCKS)\n")
    # Resolved and connected on pxa: its loopback.
    assert socks5_fetch(port, "127.0.0.1", REMOTE_PORT, FILE) == servers["pxa"].content
    # Anything but loopback needs -g; with it, the port is reachable on this host's address too.
    msgs = ok(kc, f"%ssh_tunnel --name public -g -L 0.0.0.0:0:127.0.0.1:{REMOTE_PORT} pxb")
    _, _, _, ((bind, pport, _),) = opened(msgs)
    assert bind == "0.0.0.0"
    assert fetch(pport) == servers["pxb"].content
    assert fetch(pport, host=hosts["pxb"].peer) == servers["pxb"].content


def test_unix_socket_forward(kernel, servers, tmp_path):
    km, kc = kernel
    path = tmp_path / "pxa-web.sock"
    msgs = ok(kc, f"%ssh_tunnel --name sock -L {path}:127.0.0.1:{REMOTE_PORT} pxa")
    assert stdout_of(msgs) == f"tunnel sock to pxa open:\n  {path} → 127.0.0.1:{REMOTE_PORT}\n"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(f"GET /{FILE} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.split(b"\r\n\r\n", 1)[1].decode() == servers["pxa"].content
    ok(kc, "%ssh_tunnel --close sock")
    assert not path.exists()


# -- ProxyJump -------------------------------------------------------------------------


def test_proxyjump_from_the_system_config_and_explicit(kernel, hosts, servers):
    km, kc = kernel
    pxc = servers["pxc"]
    _, port = open_tunnel(kc, f"-L 0:127.0.0.1:{REMOTE_PORT} pxc")
    assert fetch(port) == pxc.content
    dest = f"{hosts['pxc'].user}@{hosts['pxc'].address}"
    _, port2 = open_tunnel(kc, f"--name viaj -J pxa -i {hosts.key} -o IdentitiesOnly=yes "
                               f"-o UserKnownHostsFile={hosts.known_hosts} -L 0:127.0.0.1:{REMOTE_PORT} {dest}")
    assert fetch(port2) == pxc.content
    rows = tunnel_rows(kc)
    assert rows["viaj"]["destination"] == dest and rows["viaj"]["state"] == "up"


# -- prompts -----------------------------------------------------------------------------


def _restore_empty_known_hosts(hosts):
    Path(hosts.empty_known_hosts).write_text("")


def test_unknown_host_key_headless_fails_at_once_naming_the_fix(kernel, hosts):
    km, kc = kernel
    fp = fingerprint(hosts, "pxb")
    # At once: a headless run gets no reply if the prompt waited for an answer.
    ename, evalue = failure(kc, "%ssh_tunnel -L 0:127.0.0.1:9 pxb-unknown", timeout=10)
    assert ename == "SSHError"
    assert evalue.startswith("ssh to pxb-unknown failed: "), evalue
    assert "Host key verification failed" in evalue
    assert fp in evalue and "known_hosts" in evalue, evalue
    assert Path(hosts.empty_known_hosts).read_text() == ""
    assert master_pids(km) == [] and tunnel_rows(kc) == {}


def _ask_host_key(kc, hosts, answer):
    """%ssh_tunnel to pxb-unknown in a frontend that takes input, answering the
    host-key question with `answer`; (input_request content, reply, iopub msgs)."""
    msg_id = kc.execute(f"%ssh_tunnel --name unk -L 0:127.0.0.1:{REMOTE_PORT} pxb-unknown", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=20)
    assert req["msg_type"] == "input_request", req
    assert req["parent_header"]["msg_id"] == msg_id
    kc.input(answer)
    reply = shell_reply(kc, msg_id, timeout=30)["content"]
    return req["content"], reply, collect(kc, msg_id)


def test_unknown_host_key_asked_and_accepted(kernel, hosts, servers):
    km, kc = kernel
    fp = fingerprint(hosts, "pxb")
    try:
        prompt, reply, msgs = _ask_host_key(kc, hosts, "yes")
        assert prompt["password"] is False
        assert fp in prompt["prompt"] and "continue connecting" in prompt["prompt"], prompt
        assert reply["status"] == "ok", (reply, stdout_of(msgs, "stderr"))
        _, dest, how, ((_, port, _),) = opened(msgs)
        assert (dest, how) == ("pxb-unknown", "open")
        assert fetch(port) == servers["pxb"].content
        assert host_key_blob(hosts, "pxb") in Path(hosts.empty_known_hosts).read_text()
    finally:
        cell(kc, "%ssh_tunnel --close --all")
        _restore_empty_known_hosts(hosts)


def test_unknown_host_key_refused(kernel, hosts):
    km, kc = kernel
    try:
        prompt, reply, msgs = _ask_host_key(kc, hosts, "no")
        assert reply["status"] == "error"
        assert reply["ename"] == "SSHError"
        assert reply["evalue"].startswith("ssh to pxb-unknown failed: "), reply["evalue"]
        assert "Host key verification failed" in reply["evalue"]
        assert Path(hosts.empty_known_hosts).read_text() == ""
        assert master_pids(km) == [] and tunnel_rows(kc) == {}
    finally:
        _restore_empty_known_hosts(hosts)


def test_interrupt_while_asked(kernel, hosts):
    km, kc = kernel
    msg_id = kc.execute(f"%ssh_tunnel -L 0:127.0.0.1:{REMOTE_PORT} pxb-unknown", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=20)
    assert req["msg_type"] == "input_request"
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=10)["content"]
    collect(kc, msg_id)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    wait_until(lambda: ssh_children(km) == [], timeout=10, what="no ssh left")
    assert tunnel_rows(kc) == {}
    assert Path(hosts.empty_known_hosts).read_text() == ""


def _passphrase_line(hosts, name="pp"):
    a = hosts["pxa"]
    return (f"%ssh_tunnel --name {name} -i {hosts.passphrase_key} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={hosts.known_hosts} -L 0:127.0.0.1:{REMOTE_PORT} {a.user}@{a.address}")


def test_passphrase_headless_says_ssh_add(kernel, hosts):
    km, kc = kernel
    ename, evalue = failure(kc, _passphrase_line(hosts), timeout=10)
    assert ename == "SSHError"
    assert f"ssh-add {hosts.passphrase_key}" in evalue, evalue
    assert "Permission denied" in evalue, evalue


def test_passphrase_asked_hidden_and_never_shown_or_logged(kernel, hosts, servers):
    km, kc = kernel
    msg_id = kc.execute(_passphrase_line(hosts), allow_stdin=True)
    req = kc.get_stdin_msg(timeout=20)
    assert req["msg_type"] == "input_request"
    assert req["content"]["password"] is True
    assert "passphrase" in req["content"]["prompt"] and hosts.passphrase_key in req["content"]["prompt"], req
    kc.input(hosts.passphrase)
    reply = shell_reply(kc, msg_id, timeout=30)
    msgs = collect(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    _, _, how, ((_, port, _),) = opened(msgs)
    assert fetch(port) == servers["pxa"].content
    seen = [reply, *msgs]
    list_reply, list_msgs = cell(kc, "%ssh_tunnel --list")
    seen += [list_reply, *list_msgs]
    for m in seen:
        assert hosts.passphrase not in repr(m)
    text = km.pxk_log.read_text()
    assert "DEBUG" in text, "debug logging was on"
    assert hosts.passphrase not in text


def test_dropped_master_that_needs_a_passphrase_goes_down_saying_so(fresh, hosts):
    km, kc = fresh
    msg_id = kc.execute(_passphrase_line(hosts, "pq"), allow_stdin=True)
    kc.get_stdin_msg(timeout=20)
    kc.input(hosts.passphrase)
    assert shell_reply(kc, msg_id, timeout=30)["content"]["status"] == "ok"
    collect(kc, msg_id)
    (master,) = masters(km)
    master.kill()
    said = []

    def down():
        reply, msgs = cell(kc, "%ssh_tunnel --list")
        said.extend(notices(msgs))
        rows = tunnel_rows(kc)
        return rows["pq"]["state"] == "down" and rows["pq"]

    # A reconnect would need the passphrase, and nobody is there between cells.
    row = wait_until(down, timeout=15, interval=0.2, what="--list to show down")
    assert "ssh-add" in row["last error"], row
    said += notices(ok(kc, "pass"))
    assert said and "cannot come back by itself" in said[-1] and "ssh-add" in said[-1], said
    assert masters(km) == []
    # As the notice says: run the cell that opened it again.
    msg_id = kc.execute(_passphrase_line(hosts, "pq"), allow_stdin=True)
    assert kc.get_stdin_msg(timeout=20)["content"]["password"] is True
    kc.input(hosts.passphrase)
    assert shell_reply(kc, msg_id, timeout=30)["content"]["status"] == "ok"
    _, _, how, ((_, port, _),) = opened(collect(kc, msg_id))
    assert how == "open"
    assert accepts(port)
    assert tunnel_rows(kc)["pq"]["state"] == "up"


# -- errors ---------------------------------------------------------------------------------


def test_unreachable_and_refused_fail_in_bounded_time_with_openssh_words(kernel, hosts):
    km, kc = kernel
    ename, evalue = failure(kc, "%ssh_tunnel -o ConnectTimeout=3 -L 0:127.0.0.1:9 root@10.231.250.2", timeout=15)
    assert ename == "SSHError"
    assert evalue.startswith("ssh to root@10.231.250.2 failed: "), evalue
    assert "connect to host 10.231.250.2 port 22" in evalue, evalue
    ename, evalue = failure(kc, "%ssh_tunnel -p 2222 -L 0:127.0.0.1:9 pxb")
    assert ename == "SSHError" and "Connection refused" in evalue, evalue
    assert master_pids(km) == [] and tunnel_rows(kc) == {}


def test_a_local_port_in_use_fails_and_leaves_nothing(kernel, hosts):
    km, kc = kernel
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ename, evalue = failure(kc, f"%ssh_tunnel -L 127.0.0.1:{port}:127.0.0.1:{REMOTE_PORT} pxa")
    assert ename == "SSHError"
    assert evalue.startswith(f"forward 127.0.0.1:{port} → 127.0.0.1:{REMOTE_PORT} via pxa failed"), evalue
    assert wait_until(lambda: master_pids(km) == [], timeout=10, what="the master released")
    assert tunnel_rows(kc) == {}


USAGE = [
    ("no destination", "-L 0:127.0.0.1:9", "no destination"),
    ("no forward", "pxa", "nothing to forward"),
    ("remote forward", "-R 9000:127.0.0.1:9 pxa", "-R is not supported"),
    ("bad forward", "-L nonsense pxa", "bad forward"),
    ("public bind without -g", "-L 0.0.0.0:0:127.0.0.1:9 pxa", "add -g"),
    ("remote command", "-L 0:127.0.0.1:9 pxa uptime", "runs no remote command"),
    ("control socket", "-S /tmp/x -L 0:127.0.0.1:9 pxa", "owns the master"),
    ("list with a destination", "--list pxa", "take no destination"),
    ("list and close", "--list --close x", "not both"),
    ("bad name", "--name 'a b' -L 0:127.0.0.1:9 pxa", "letters, digits"),
]


@pytest.mark.parametrize("line, want", [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_usage_errors_start_no_ssh(kernel, line, want):
    km, kc = kernel
    before = km.pxk_log.read_text().count("started ssh master")
    ename, evalue = failure(kc, f"%ssh_tunnel {line}")
    assert ename == "UsageError", evalue
    assert evalue.startswith("%ssh_tunnel: "), evalue
    assert want in evalue, evalue
    assert ssh_children(km) == []
    assert km.pxk_log.read_text().count("started ssh master") == before


def test_no_cell_form(kernel):
    km, kc = kernel
    reply, msgs = cell(kc, "%%ssh_tunnel -L 0:127.0.0.1:9 pxa\nanything")
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert "%%ssh_tunnel" in reply["evalue"], reply
    assert ssh_children(km) == []


def test_closing_an_unknown_tunnel_is_a_usage_error(kernel):
    km, kc = kernel
    ename, evalue = failure(kc, "%ssh_tunnel --close nosuch")
    assert ename == "UsageError"
    assert evalue.startswith("%ssh_tunnel: "), evalue
    assert "nosuch" in evalue and "--list" in evalue, evalue
