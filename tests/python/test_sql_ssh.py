"""%sql URL --ssh HOST: a PostgreSQL with TLS that listens only on a test host's
own loopback (pxa, a network namespace with its own sshd: tests/hosts), reached
through a tunnel pxkernel opens to the URL's host and port via HOST. TLS still
verifies the server under the URL's host name; the tunnel shows in
%ssh_tunnel --list and is reused by a second connection; the password shows
nowhere; a dropped tunnel comes back and the connection with it."""

from __future__ import annotations

import socket

import pytest

from kernel_helpers import execute, of_type, pxkernel, stdout_of
from pg_server import postgres_server, unavailable_reason as pg_unavailable
from test_sql import failed, kernel_env, ok, query_rows

HOST = "pxa"


@pytest.fixture(scope="module")
def remote_pg(ssh_hosts):
    """A TLS PostgreSQL inside pxa's namespace on its loopback, with the AUG31 table."""
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    with postgres_server(netns=ssh_hosts[HOST].netns) as server:
        server.psql(
            "CREATE TABLE aug31 (id int PRIMARY KEY, city text, temp_c numeric);"
            "INSERT INTO aug31 VALUES (1, 'Zürich', 21.5), (2, 'Lyon', 27.0), (3, 'Oslo', 14.25);"
        )
        yield server


@pytest.fixture
def kernel(remote_pg):
    with pxkernel(env=kernel_env()) as (km, kc):
        yield km, kc


def url(server, sslmode="require", extra=""):
    return f"postgresql://postgres:{server.password}@localhost:{server.port}/postgres?sslmode={sslmode}{extra}"


def tunnels(kc):
    """%ssh_tunnel --list as text."""
    msgs = ok(kc, "%ssh_tunnel --list")
    shown = of_type(msgs, "display_data")
    return shown[0]["content"]["data"]["text/plain"] if shown else stdout_of(msgs)


def test_the_server_is_only_on_the_hosts_loopback(ssh_hosts, remote_pg):
    with pytest.raises(OSError):
        socket.create_connection((ssh_hosts[HOST].address, remote_pg.port), timeout=2).close()


def test_aug31_through_the_tunnel_with_sslmode_require(kernel, remote_pg):
    _, kc = kernel
    msgs = ok(kc, f"%sql {url(remote_pg)} --ssh {HOST} --alias remote")
    said = stdout_of(msgs)
    assert said.startswith("Connected: remote (postgresql://postgres:***@localhost:5432/postgres"), said
    assert f"via ssh {HOST} (tunnel {HOST}, 127.0.0.1:" in said, said
    rows = query_rows(kc, "SELECT city, temp_c FROM aug31 ORDER BY id")
    assert rows == [["Zürich", "21.5"], ["Lyon", "27.0"], ["Oslo", "14.25"]]
    listing = tunnels(kc)
    assert f"localhost:{remote_pg.port}" in listing and "up" in listing, listing


def test_verify_full_passes_through_the_tunnel(kernel, remote_pg):
    # The certificate names localhost (and 127.0.0.1): verified under the URL's host,
    # with the connection going to the tunnel's local port.
    _, kc = kernel
    ok(kc, f"%sql {url(remote_pg, 'verify-full', '&sslrootcert=' + remote_pg.cert)} --ssh {HOST} --alias vf")
    assert query_rows(kc, "SELECT count(*) FROM aug31") == [["3"]]


def test_a_second_connection_reuses_the_tunnel(kernel, remote_pg):
    _, kc = kernel
    first = stdout_of(ok(kc, f"%sql {url(remote_pg)} --ssh {HOST} --alias one"))
    second = stdout_of(ok(kc, f"%sql {url(remote_pg)} --ssh {HOST} --alias two"))
    port = lambda s: s.rsplit("127.0.0.1:", 1)[1].rstrip(")\n")  # noqa: E731
    assert port(first) == port(second), (first, second)
    assert tunnels(kc).count(f"localhost:{remote_pg.port}") == 1


def test_the_password_shows_nowhere(kernel, remote_pg):
    _, kc = kernel
    seen = []
    for code in (f"%sql {url(remote_pg)} --ssh {HOST} --alias pw", "%sql --connections", "%ssh_tunnel --list"):
        reply, msgs = execute(kc, code)
        seen.append(repr(reply))
        # execute_input echoes the cell as typed: the password is the user's own there.
        seen.extend(repr(m["content"]) for m in msgs if m["msg_type"] != "execute_input")
    assert all(remote_pg.password not in s for s in seen)


def test_a_dropped_tunnel_comes_back_with_the_connection(ssh_hosts, kernel, remote_pg):
    _, kc = kernel
    ok(kc, f"%sql {url(remote_pg)} --ssh {HOST} --alias again")
    ssh_hosts.restart_sshd(HOST)
    # The first query after the drop may find the old connection gone: pxkernel
    # reconnects it through the restored tunnel, saying so.
    reply, msgs = execute(kc, "%sql SELECT count(*) FROM aug31", timeout=60)
    if reply["status"] != "ok":
        reply, msgs = execute(kc, "%sql SELECT count(*) FROM aug31", timeout=60)
    assert reply["status"] == "ok", (reply, stdout_of(msgs, "stderr"))


def test_bad_uses_of_ssh(kernel, remote_pg):
    _, kc = kernel
    reply, _, _ = failed(kc, f"%sql sqlite:// --ssh {HOST}")
    assert "postgresql://" in reply["evalue"], reply
    reply, _, _ = failed(kc, f"%sql --ssh {HOST} SELECT 1")
    assert reply["ename"] == "UsageError" and "goes with a URL" in reply["evalue"], reply
    reply, _, _ = failed(kc, f"%sql {url(remote_pg)} --ssh 'a b'")
    assert reply["ename"] == "UsageError", reply
    reply, _, _ = failed(kc, f"%sql {url(remote_pg)} --ssh root@10.231.250.2", timeout=60)
    assert "ssh to root@10.231.250.2 failed" in reply["evalue"], reply
    assert remote_pg.password not in reply["evalue"]
