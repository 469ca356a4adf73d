"""The SSH test hosts harness itself (tests/hosts/testhosts.py, via ssh_hosts.py):
each host answers a plain `ssh` with its own hostname, user and home; pxc is
reachable through pxa only; pxd's python3 lacks ipykernel where the others' has
it; cut/restore, sshd restarts and user process control work; and `down` leaves
nothing behind. Skipped (with the reason) where the hosts cannot run: not root,
no sshd, no ip — a failure under PXKERNEL_REQUIRE_ALL=1."""

import os
import pwd
import socket
import stat
import subprocess
import tempfile
import time

import pytest
from ssh_hosts import running_hosts, testhosts, unavailable_reason


@pytest.fixture
def hosts(ssh_hosts):
    return ssh_hosts


def plain_ssh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`ssh` as a user would type it: no -F, so the system config's Include is what knows the hosts."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return subprocess.run(["ssh", "-o", "BatchMode=yes", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=timeout)


def can_connect(address: str, timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((address, 22), timeout=timeout).close()
        return True
    except OSError:
        return False


def test_plain_ssh_reaches_each_host_by_its_hostname(hosts):
    for name in hosts.names:
        r = plain_ssh(name, "hostname; python3 -c 'import socket; print(socket.gethostname())'")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [name, name]


def test_pxc_only_through_pxa(hosts):
    r = plain_ssh("pxc", "hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pxc"
    assert not can_connect(hosts["pxc"].address)  # no route from the root namespace
    assert hosts.reachable("pxc")  # but from pxa's
    assert "ProxyJump pxa" in open(hosts.ssh_config).read()


def test_pythons(hosts):
    pins = dict(p.split("==") for p in testhosts._pins())
    for name in ("pxa", "pxb", "pxc"):
        r = hosts.run(name, "command -v python3; python3 -c 'import ipykernel, ipyparallel as p; "
                            "print(ipykernel.__version__, p.__version__)'")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [hosts.remote_python, pins["ipykernel"], pins["ipyparallel"]]
    r = hosts.run("pxd", "command -v python3; python3 -c 'import ipykernel'")
    assert r.returncode != 0
    assert r.stdout.strip() == "/usr/bin/python3"
    assert "No module named 'ipykernel'" in r.stderr


def test_users_and_homes_differ(hosts):
    seen = set()
    for name in hosts.names:
        h = hosts[name]
        r = hosts.run(name, 'id -un; echo "$HOME"; pwd')
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [h.user, h.home, h.home]
        st = os.stat(h.home)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == pwd.getpwnam(h.user).pw_uid
        seen.add((h.user, h.home))
    assert len(seen) == 4
    # each sshd lets in its own user only, never root
    assert plain_ssh("-l", hosts["pxb"].user, "pxa", "true").returncode != 0
    assert plain_ssh("-l", "root", "pxa", "true").returncode != 0


def test_cut_and_restore(hosts):
    assert can_connect(hosts["pxb"].address)
    hosts.cut("pxb")
    try:
        assert not can_connect(hosts["pxb"].address)
        assert hosts.run("pxb", "true", options=("-o", "ConnectTimeout=3")).returncode != 0
    finally:
        hosts.restore("pxb")
    assert can_connect(hosts["pxb"].address)
    # pxc: the pxa-pxc link; pxa itself stays reachable
    hosts.cut("pxc")
    try:
        assert not hosts.reachable("pxc")
        assert hosts.run("pxa", "true").returncode == 0
    finally:
        hosts.restore("pxc")
    assert hosts.run("pxc", "hostname").stdout.strip() == "pxc"


def test_processes_and_kill(hosts):
    hosts.run("pxb", "nohup sleep 300 >/dev/null 2>&1 &", check=True)
    deadline = time.monotonic() + 10
    while not any(cmd == "sleep 300" for _, cmd in hosts.processes("pxb")):
        assert time.monotonic() < deadline, hosts.processes("pxb")
        time.sleep(0.05)
    assert not any(cmd == "sleep 300" for _, cmd in hosts.processes("pxa"))
    hosts.kill_user_processes("pxb")
    assert hosts.processes("pxb") == []
    assert hosts.run("pxb", "true").returncode == 0


def test_sshd_stop_start_restart(hosts):
    old = hosts["pxd"].sshd_pid
    assert old
    hosts.stop_sshd("pxd")
    assert hosts["pxd"].sshd_pid is None
    r = hosts.run("pxd", "true")
    assert r.returncode != 0 and "refused" in r.stderr
    hosts.start_sshd("pxd")
    new = hosts.restart_sshd("pxd")
    assert new not in (None, old) and hosts["pxd"].sshd_pid == new
    assert hosts.run("pxd", "hostname").stdout.strip() == "pxd"
    assert testhosts.load(hosts.dir)["pxd"].sshd_pid == new


def test_passphrase_key_and_unknown_host(hosts, tmp_path):
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{hosts.passphrase}'\n")
    askpass.chmod(0o755)
    h = hosts["pxa"]
    argv = ["ssh", "-F", "/dev/null", "-i", hosts.passphrase_key, "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={hosts.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-l", h.user, h.address, "hostname"]
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    run = lambda argv, env: subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,  # noqa: E731
                                           env=env, timeout=30, start_new_session=True)
    r = run(argv, {**env, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"})
    assert (r.returncode, r.stdout.strip()) == (0, "pxa"), r.stderr
    assert run(argv[:1] + ["-o", "BatchMode=yes"] + argv[1:], env).returncode != 0  # needs the passphrase
    # pxb-unknown: pxb under a known_hosts file that does not know it
    r = plain_ssh("pxb-unknown", "true")
    assert r.returncode != 0 and "Host key verification failed" in r.stderr
    assert open(hosts.empty_known_hosts).read() == ""


def test_one_instance_only(hosts):
    other = tempfile.mkdtemp(prefix="pxk-hosts-other-", dir="/tmp")
    try:
        with pytest.raises(testhosts.HostError, match="already up"):
            testhosts.up(other)
        with pytest.raises(testhosts.HostError, match="not " + other):
            testhosts.down(other)
    finally:
        os.rmdir(other)
    assert hosts.run("pxa", "true").returncode == 0
    assert testhosts.lock_owner()["dir"] == hosts.dir
    assert testhosts.load(hosts.dir).names == ["pxa", "pxb", "pxc", "pxd"]


def test_down_leaves_nothing_then_up_again(hosts):
    """Last: down (twice), check nothing is left, then up again in the same DIR for
    whatever shares these hosts afterwards."""
    sshds = [hosts[n].sshd_pid for n in hosts.names]
    testhosts.down(hosts.dir)
    testhosts.down(hosts.dir)
    assert not [ns for ns in os.listdir("/run/netns") if ns.startswith("pxt-")] if os.path.isdir("/run/netns") else True
    assert not [link for link in os.listdir("/sys/class/net") if link.startswith("vpxt-")]
    for name in hosts.names:
        with pytest.raises(KeyError):
            pwd.getpwnam(hosts[name].user)
        assert not os.path.exists(hosts[name].home)
    assert not testhosts.SYSTEM_SSH_CONFIG.exists()
    assert "10.231." not in subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                                           text=True, timeout=10, check=True).stdout
    assert not [p for p in sshds if os.path.exists(f"/proc/{p}") and testhosts._alive(p)]
    assert testhosts.lock_owner() is None
    assert plain_ssh("pxa", "true").returncode != 0  # the alias is gone with the config
    testhosts.up(hosts.dir)
    assert plain_ssh("pxa", "hostname").stdout.strip() == "pxa"
