"""%ssh_tunnel when the connection drops, against the SSH test hosts (tests/hosts):
reconnects after sshd is restarted (or stopped with every session, then back), the
master is killed or the link is cut, with the forwards back on the same ports and
one notice at the next cell; a short cut that loses nothing; the line re-run while
reconnecting keeps the tunnel; and no ssh left behind after shutdown, restart,
SIGTERM or SIGKILL of pxkernel, or the death of its parent. Each test has a pxkernel of its own; the shared helpers and fixtures are
in ssh_tunnel_support.py. Skipped (with the reason) where the hosts cannot run — a
failure under PXKERNEL_REQUIRE_ALL=1."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
from jupyter_client import BlockingKernelClient, write_connection_file
from kernel_helpers import (
    kernel_pid,
    pxkernel_under_a_parent,
    stdout_of,
    wait_gone,
    wait_until,
)
from ssh_tunnel_support import (
    NOTICE,
    REMOTE_PORT,
    cell,
    fetches,
    fresh,  # noqa: F401
    hosts,  # noqa: F401
    master_pids,
    masters,
    notices,
    ok,
    open_tunnel,
    servers,  # noqa: F401
    tunnel_rows,
)


# -- faults --------------------------------------------------------------------------------


def _one_notice_then_none(kc, want):
    msgs = ok(kc, "pass")
    said = notices(msgs)
    assert len(said) == 1, stdout_of(msgs, "stderr")
    assert said[0].startswith(f"{NOTICE} pxb dropped ("), said
    assert want in said[0], said
    assert notices(ok(kc, "pass")) == []
    return said[0]


def test_sshd_restart_keeps_or_restores_the_forward(fresh, hosts, servers):
    km, kc = fresh
    content = servers["pxb"].content
    _, port = open_tunnel(kc, f"-L 0:127.0.0.1:{REMOTE_PORT} pxb")
    (pid,) = master_pids(km)
    hosts.restart_sshd("pxb")  # the listener only: open sessions go on, as with systemctl restart
    fetches(port, content)
    assert master_pids(km) == [pid]
    assert notices(ok(kc, "pass")) == []
    # sshd stopped with every session (a reboot, say), then back: the master reconnects.
    hosts.stop_sshd("pxb")
    try:
        hosts.kill_user_processes("pxb")
        said = []

        def reconnecting():
            said.extend(notices(ok(kc, "pass")))
            return tunnel_rows(kc)["pxb"]["state"] == "reconnecting"

        wait_until(reconnecting, timeout=15, what="reconnecting")
        said.extend(notices(ok(kc, "pass")))
        assert len(said) == 1 and said[0].startswith(f"{NOTICE} pxb dropped ("), said
        assert said[0].endswith("; reconnecting"), said
    finally:
        hosts.start_sshd("pxb")
    fetches(port, content)
    assert master_pids(km) != [pid]
    said = _one_notice_then_none(kc, "came back after")
    assert said.endswith("; its forwards are restored"), said
    assert tunnel_rows(kc)["pxb"]["state"] == "up"


def test_killed_master_comes_back_on_the_same_port(fresh, hosts, servers):
    km, kc = fresh
    content = servers["pxb"].content
    _, port = open_tunnel(kc, f"-L 0:127.0.0.1:{REMOTE_PORT} pxb")
    (old,) = masters(km)
    old.kill()
    wait_until(lambda: master_pids(km) and master_pids(km) != [old.pid], timeout=15, what="a new master")
    fetches(port, content)
    said = _one_notice_then_none(kc, "came back after")
    assert "SIGKILL" in said, said
    row = tunnel_rows(kc)["pxb"]
    assert row["state"] == "up" and row["forwards"] == f"127.0.0.1:{port} → 127.0.0.1:{REMOTE_PORT}"


def test_link_cut_is_detected_and_recovered(fresh, hosts, servers):
    km, kc = fresh
    content = servers["pxb"].content
    _, port = open_tunnel(kc, f"-L 0:127.0.0.1:{REMOTE_PORT} pxb")
    (pid,) = master_pids(km)
    said = []
    hosts.cut("pxb")
    try:

        def reconnecting():
            reply, msgs = cell(kc, "%ssh_tunnel --list")
            said.extend(notices(msgs))
            rows = tunnel_rows(kc)
            return rows["pxb"]["state"] == "reconnecting" and rows["pxb"]

        # Found by keepalives (3 missed, 3 s apart), not TCP's minutes.
        row = wait_until(reconnecting, timeout=25, interval=0.5, what="--list to show reconnecting")
        assert row["last error"] != "-", row
    finally:
        hosts.restore("pxb")
    fetches(port, content)
    assert master_pids(km) != [pid]
    msgs = ok(kc, "pass")
    said += notices(msgs)
    assert [s for s in said if s.endswith("; reconnecting")], said
    assert said[-1].endswith("; its forwards are restored"), said
    assert tunnel_rows(kc)["pxb"]["state"] == "up"


def test_short_cut_loses_nothing(fresh, hosts, servers):
    km, kc = fresh
    content = servers["pxb"].content
    _, port = open_tunnel(kc, f"-L 0:127.0.0.1:{REMOTE_PORT} pxb")
    (pid,) = master_pids(km)
    hosts.cut("pxb")
    try:
        time.sleep(2.0)  # the cut itself: shorter than keepalives detect (3 x 3 s)
    finally:
        hosts.restore("pxb")
    fetches(port, content)
    assert master_pids(km) == [pid]
    assert notices(ok(kc, "pass")) == []
    assert tunnel_rows(kc)["pxb"]["state"] == "up"


# -- re-running while reconnecting --------------------------------------------------


def test_rerunning_the_line_while_reconnecting_keeps_the_tunnel(fresh, hosts, servers):
    """A notebook re-run while the connection is away must not lose the tunnel: it
    is said to be reconnecting (or already open), and comes back on its port."""
    km, kc = fresh
    line = f"%ssh_tunnel -L 0:127.0.0.1:{REMOTE_PORT} pxb"
    _, port = open_tunnel(kc, line[len("%ssh_tunnel "):])
    hosts.stop_sshd("pxb")
    try:
        hosts.kill_user_processes("pxb")  # its session too: the master drops
        wait_until(lambda: tunnel_rows(kc)["pxb"]["state"] == "reconnecting", timeout=15, what="reconnecting")
        reply, msgs = cell(kc, line)
        if reply["status"] == "error":
            assert reply["ename"] == "SSHError" and "reconnecting" in reply["evalue"], reply
        assert list(tunnel_rows(kc)) == ["pxb"], "the tunnel is still held"
    finally:
        hosts.start_sshd("pxb")
    fetches(port, servers["pxb"].content)


# -- lifetime ----------------------------------------------------------------------------------


def _open_on_pxd(km, kc, hosts):
    """Two masters to pxd (different options: two connections): their pids and
    control sockets; pxd's user has processes for them."""
    wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="pxd idle before the test")
    open_tunnel(kc, "--name d1 -L 0:127.0.0.1:9 pxd")
    open_tunnel(kc, "--name d2 -C -L 0:127.0.0.1:9 pxd")
    found = masters(km)
    assert len(found) == 2
    sockets = [p.cmdline()[3] for p in found]
    assert all(Path(s).is_socket() for s in sockets), sockets
    assert hosts.processes("pxd"), "pxd's sshd runs a session for each"
    return [p.pid for p in found], sockets


def test_shutdown_ends_every_ssh(fresh, hosts):
    km, kc = fresh
    pids, sockets = _open_on_pxd(km, kc, hosts)
    km.shutdown_kernel(now=False)
    assert wait_gone(pids) == []
    wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="no process of pxd's user")
    assert not any(Path(s).exists() for s in sockets), sockets


def test_sigkill_of_pxkernel_ends_every_ssh(fresh, hosts):
    km, kc = fresh
    pids, _ = _open_on_pxd(km, kc, hosts)
    os.kill(kernel_pid(km), signal.SIGKILL)
    assert wait_gone(pids) == []
    wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="no process of pxd's user")


def test_sigterm_of_pxkernel_ends_every_ssh(fresh, hosts):
    km, kc = fresh
    pids, sockets = _open_on_pxd(km, kc, hosts)
    px = kernel_pid(km)
    os.kill(px, signal.SIGTERM)
    assert wait_gone([px, *pids]) == []
    wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="no process of pxd's user")
    assert not any(Path(s).exists() for s in sockets), sockets


def test_restart_ends_every_ssh_and_starts_without_tunnels(fresh, hosts):
    km, kc = fresh
    pids, sockets = _open_on_pxd(km, kc, hosts)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    assert wait_gone(pids) == []
    wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="no process of pxd's user")
    assert tunnel_rows(kc) == {}
    assert masters(km) == []


def test_death_of_pxkernels_parent_ends_every_ssh(tmp_path, hosts, pxkernel_bin):
    cf = str(tmp_path / "kernel.json")
    write_connection_file(cf, ip="127.0.0.1", key=b"tunnel-parent-death-key")
    # An intermediate parent, killed without a chance to clean up.
    parent, px = pxkernel_under_a_parent(pxkernel_bin, cf)
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="pxd idle before the test")
        open_tunnel(kc, "-L 0:127.0.0.1:9 pxd")
        ssh = [p.pid for p in psutil.Process(px).children() if p.cmdline()[:2] == ["ssh", "-M"]]
        assert len(ssh) == 1, ssh
        parent.kill()
        parent.wait()
        assert wait_gone([px, *ssh]) == []
        wait_until(lambda: hosts.processes("pxd") == [], timeout=15, what="no process of pxd's user")
    finally:
        kc.stop_channels()
        if psutil.pid_exists(px):
            os.kill(px, signal.SIGKILL)
