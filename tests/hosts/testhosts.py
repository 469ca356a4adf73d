"""Test hosts for pxkernel's SSH tests: four network namespaces on this machine, each
with its own sshd, hostname, Unix user and home, reachable by a plain `ssh pxa`.

    pxa, pxb   plain hosts, reachable from the root namespace
    pxc        reachable only through pxa (ProxyJump): a veth pair between pxa and pxc
    pxd        its python3 (Debian's /usr/bin/python3) has no ipykernel

This module owns, while the hosts are up (one instance per machine: an flock on
/run/pxkernel-testhosts.lock, held by a small holder process until `down`):
the route `unreachable 10.231.0.0/16` and everything in that range (netns pxt-a..pxt-d,
root-side veths vpxt-a/b/d, veth vpxt-c inside pxt-a), the users pxt-a..pxt-d,
/etc/ssh/ssh_config.d/pxkernel-testhosts.conf, and everything in DIR (keys,
known_hosts, ssh_config, per-host sshd config, log and home, hosts.json). It also
keeps, across runs, the venv /opt/pxkernel-testhosts/venv (ipykernel and ipyparallel
pinned as in requirements-dev.txt) that the hosts' python3 is.

    python tests/hosts/testhosts.py up|down|status DIR
    up(dir) -> Hosts;  load(dir) -> Hosts;  down(dir)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path("/run/pxkernel-testhosts.lock")
SYSTEM_SSH_CONFIG = Path("/etc/ssh/ssh_config.d/pxkernel-testhosts.conf")
VENV = Path("/opt/pxkernel-testhosts/venv")
VENV_STAMP = VENV / ".pxkernel-testhosts-stamp"
SYSTEM_PYTHON = "/usr/bin/python3"
REMOTE_PACKAGES = ("ipykernel", "ipyparallel")  # pinned by requirements-dev.txt
SSHD = "/usr/sbin/sshd"
TEST_NET = "10.231.0.0/16"
PASSPHRASE = "pxkernel-test-passphrase"
VENV_PATH = f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin"
PLAIN_PATH = "/usr/bin:/bin"
# name -> (third octet of its /30, the host it hangs off: None = the root namespace)
LAYOUT = {"pxa": (1, None), "pxb": (2, None), "pxc": (3, "pxa"), "pxd": (4, None)}
NETNS = {n: "pxt-" + n[-1] for n in LAYOUT}  # also the user names
VETHS = {n: "vpxt-" + n[-1] for n in LAYOUT}  # upstream-side veth (vpxt-c is in pxt-a)

_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this process started (reaped here)


class HostError(RuntimeError):
    """The test hosts cannot be brought up, reached or torn down; says why."""


def _run(argv, *, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
    argv = [str(a) for a in argv]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise HostError(f"`{shlex.join(argv)}` timed out after {timeout}s") from None
    if check and r.returncode != 0:
        raise HostError(f"`{shlex.join(argv)}` failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
    return r


def _ns(netns: str | None) -> list[str]:
    return ["-n", netns] if netns else []


# -- processes and the lock -------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    try:
        return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    except (OSError, ValueError):
        return {}


def _alive(pid: int | None) -> bool:
    """Whether pid runs (zombies are dead: PID 1 here reaps them only now and then)."""
    child = _CHILDREN.get(pid)
    if not pid or (child is not None and child.poll() is not None):
        return False
    return _status(pid).get("State", "Z")[0] not in "ZX"


def _uid_pids(uid: int | None) -> list[int]:
    """Live processes whose real or effective uid is uid."""
    return [int(p) for p in _listdir("/proc") if p.isdigit() and _alive(int(p))
            and uid in map(int, _status(int(p)).get("Uid", "-1 -1").split()[:2])]


def _until(ok, timeout: float, failure) -> None:
    """Poll ok() until it is true; past timeout seconds raise HostError(failure())."""
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise HostError(failure())
        time.sleep(0.03)


def _kill(pids, sig=signal.SIGKILL, timeout=10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    _until(lambda: not any(map(_alive, pids)), timeout, lambda: f"{[p for p in pids if _alive(p)]} outlived signal {sig}")
    for pid in pids:
        _CHILDREN.pop(pid, None)


def _uid(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _lock(fd: int) -> dict | None:
    """flock LOCK via fd: None if that worked, else what LOCK records ({"dir", "holder_pid"})."""
    try:
        return fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return json.loads(os.pread(fd, 4096, 0) or b"{}") or {"dir": "?"}
        except ValueError:
            return {"dir": "?"}


def lock_owner() -> dict | None:
    """What LOCK records while some instance is up, else None."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        return _lock(fd)
    finally:
        os.close(fd)


def _take_lock(d: Path) -> None:
    """Take LOCK for the life of the hosts: a holder process keeps it until `down`."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if (owner := _lock(fd)) is not None:
            raise HostError(f"test hosts are already up from {owner.get('dir')} (lock {LOCK} held by pid "
                            f"{owner.get('holder_pid')}); bring them down first: "
                            f"python {Path(__file__).relative_to(ROOT)} down {owner.get('dir')}")
        holder = subprocess.Popen(["sleep", "infinity"], pass_fds=(fd,), start_new_session=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _CHILDREN[holder.pid] = holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"dir": str(d), "holder_pid": holder.pid}).encode(), 0)
    finally:
        os.close(fd)  # the holder's copy keeps the lock


def _release_lock() -> None:
    pid = (lock_owner() or {}).get("holder_pid")
    if pid and any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(LOCK) for fd in _listdir(f"/proc/{pid}/fd")):
        _kill([pid])


# -- the hosts -------------------------------------------------------------------


@dataclass
class Host:
    name: str  # ssh alias and hostname: pxa
    address: str  # 10.231.N.2, port 22
    peer: str  # 10.231.N.1: the upstream end of its link (root namespace, or pxa for pxc)
    user: str  # pxt-a
    home: str
    netns: str  # pxt-a
    veth: str  # upstream-side veth of its link: vpxt-a, ...; vpxt-c lives in netns pxt-a
    veth_netns: str | None  # the namespace that veth is in (None: the root namespace)
    via: str | None  # ProxyJump host
    path: str  # PATH that sshd sets for its sessions
    dir: str  # DIR/<name>: sshd_config, hostkey, authorized_keys, sshd.log, sshd.pid

    @property
    def sshd_pid(self) -> int | None:
        """The running sshd's pid (read from its pid file: stays right across restarts)."""
        try:
            pid = int(Path(self.dir, "sshd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


@dataclass
class Hosts:
    dir: str
    hosts: dict[str, Host]
    passphrase: str = PASSPHRASE
    remote_python: str = str(VENV / "bin" / "python3")  # python3 on pxa, pxb, pxc

    names = property(lambda self: list(self.hosts))
    ssh_config = property(lambda self: os.path.join(self.dir, "ssh_config"))
    known_hosts = property(lambda self: os.path.join(self.dir, "known_hosts"))
    empty_known_hosts = property(lambda self: os.path.join(self.dir, "empty_known_hosts"))
    key = property(lambda self: os.path.join(self.dir, "id_ed25519"))
    passphrase_key = property(lambda self: os.path.join(self.dir, "id_passphrase"))

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # ssh and commands
    def ssh_argv(self, name: str, *options: str) -> list[str]:
        """`ssh -F DIR/ssh_config -o BatchMode=yes [options] name`: add the remote command."""
        return ["ssh", "-F", self.ssh_config, "-o", "BatchMode=yes", *options, name]

    def run(self, name: str, cmd, *, options=(), timeout=30, check=False, **kw) -> subprocess.CompletedProcess:
        """Run cmd (a shell string, or an argv that is quoted) on host name over ssh;
        output captured as text, stdin /dev/null unless input= is given."""
        cmd = cmd if isinstance(cmd, str) else shlex.join(cmd)
        kw = {"capture_output": True, "text": True, **({} if "input" in kw else {"stdin": subprocess.DEVNULL}), **kw}
        return subprocess.run(self.ssh_argv(name, *options) + [cmd], timeout=timeout, check=check, **kw)

    def netns_exec(self, name: str, argv, *, timeout=30, check=False, **kw) -> subprocess.CompletedProcess:
        """Run argv as root inside host name's network namespace (not its UTS namespace)."""
        kw = {"capture_output": True, "text": True, **kw}
        return subprocess.run(["ip", "netns", "exec", self[name].netns, *argv], timeout=timeout, check=check, **kw)

    def reachable(self, name: str, timeout: float = 1.0) -> bool:
        """Whether a TCP connect to the host's sshd succeeds from the upstream side of
        its link: the root namespace, or pxa's namespace for pxc."""
        h = self[name]
        if h.veth_netns is None:
            try:
                socket.create_connection((h.address, 22), timeout=timeout).close()
                return True
            except OSError:
                return False
        probe = f"import socket; socket.create_connection(('{h.address}', 22), timeout={timeout}).close()"
        return self.netns_exec(h.via, [SYSTEM_PYTHON, "-c", probe], timeout=timeout + 10).returncode == 0

    # links
    def cut(self, name: str) -> None:
        """Take the host's link down (for pxc: the pxa-pxc link): new connects fail at once,
        open ssh connections see no more packets."""
        h = self[name]
        _run(["ip", *_ns(h.veth_netns), "link", "set", h.veth, "down"])

    def restore(self, name: str, timeout: float = 10.0) -> None:
        """Bring the link back up and wait (bounded) until its sshd can be connected to."""
        h = self[name]
        _run(["ip", *_ns(h.veth_netns), "link", "set", h.veth, "up"])
        _until(lambda: self.reachable(name), timeout, lambda: f"{name}: no connect to {h.address}:22 {timeout}s after link up")

    # sshd
    def start_sshd(self, name: str, timeout: float = 60.0) -> int:
        """Start the host's sshd (if not running) and wait until it accepts an ssh."""
        h = self[name]
        if h.sshd_pid:
            return h.sshd_pid
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(os.path.join(h.dir, "sshd.log"), "ab") as log:
            p = subprocess.Popen(
                ["ip", "netns", "exec", h.netns, "unshare", "--uts", "--", "sh", "-c", 'hostname "$1" && shift && exec "$@"',
                 "sh", name, SSHD, "-D", "-e", "-f", os.path.join(h.dir, "sshd_config")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _CHILDREN[p.pid] = p  # ip netns exec, unshare and sh all exec: this pid is sshd's
        Path(h.dir, "sshd.pid").write_text(f"{p.pid}\n")
        self.wait_accepting(name, timeout)
        return p.pid

    def stop_sshd(self, name: str) -> None:
        """Stop the host's listening sshd (SIGTERM, then SIGKILL); open sessions go on."""
        h = self[name]
        pid = h.sshd_pid
        if pid:
            try:
                _kill([pid], signal.SIGTERM, timeout=5)
            except HostError:
                _kill([pid])
        Path(h.dir, "sshd.pid").unlink(missing_ok=True)

    def restart_sshd(self, name: str) -> int:
        self.stop_sshd(name)
        return self.start_sshd(name)  # the new pid

    def wait_accepting(self, name: str, timeout: float = 60.0) -> None:
        """Wait (bounded) until an ssh into the host works; else say why, with sshd's log."""
        h = self[name]
        deadline = time.monotonic() + timeout
        while (r := self.run(name, "true", options=("-o", "ConnectTimeout=3"), timeout=15)).returncode:
            if not h.sshd_pid or time.monotonic() > deadline:
                try:
                    log = "\n".join(Path(h.dir, "sshd.log").read_text(errors="replace").splitlines()[-20:])
                except OSError as e:
                    log = str(e)
                raise HostError(f"{name}: no ssh into {h.user}@{h.address} within {timeout}s ({r.stderr.strip()}); "
                                f"its sshd {'runs' if h.sshd_pid else 'is not running'}; end of {h.dir}/sshd.log:\n{log}")
            time.sleep(0.1)

    # the host's user
    def processes(self, name: str) -> list[tuple[int, str]]:
        """(pid, cmdline) of every live process of the host's user (zombies are not listed)."""
        out = []
        for pid in _uid_pids(_uid(self[name].user)):
            try:
                out.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()))
            except OSError:
                pass  # gone meanwhile
        return out

    def kill_user_processes(self, name: str) -> None:
        for _ in range(5):  # one may fork while we kill
            if not (pids := _uid_pids(_uid(self[name].user))):
                return
            _kill(pids)


def load(dir) -> Hosts:
    """The Hosts that `up(dir)` brought up, from DIR/hosts.json."""
    try:
        data = json.loads(Path(dir, "hosts.json").read_text())
    except FileNotFoundError:
        raise HostError(f"no test hosts are up from {dir} (no hosts.json)") from None
    return Hosts(dir=data["dir"], hosts={n: Host(**h) for n, h in data["hosts"].items()})


# -- up ----------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why the test hosts cannot be brought up on this machine, or None."""
    if os.geteuid() != 0:
        return "SSH test hosts need root (network namespaces, users, sshd)"
    for exe, pkg in ((SSHD, "openssh-server"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                     ("ip", "iproute2"), ("unshare", "util-linux"), ("useradd", "passwd"), (SYSTEM_PYTHON, "python3")):
        if shutil.which(exe) is None:
            return f"SSH test hosts need {exe} (apt-get install {pkg})"
    if not VENV_STAMP.is_file() and _run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], check=False).returncode:
        return f"SSH test hosts need {SYSTEM_PYTHON} with venv (apt-get install python3-venv)"
    return None


def _pins() -> list[str]:
    pins = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep and name.lower() in REMOTE_PACKAGES:
            pins[name.lower()] = f"{name}=={version}"
    if missing := [n for n in REMOTE_PACKAGES if n not in pins]:
        raise HostError(f"requirements-dev.txt pins no version of {missing}")
    return [pins[n] for n in REMOTE_PACKAGES]


def ensure_venv() -> str:
    """Make (once; cached by a stamp of the pins and Python version) the world-readable
    venv, from Debian's python3, that is python3 on pxa, pxb and pxc. Returns its python."""
    version = _run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"]).stdout.strip()
    stamp = json.dumps({"python": SYSTEM_PYTHON, "version": version, "packages": _pins()})
    python = VENV / "bin" / "python3"
    if python.exists() and VENV_STAMP.is_file() and VENV_STAMP.read_text() == stamp:
        return str(python)
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    VENV.parent.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONUSERBASE")}
    _run([SYSTEM_PYTHON, "-m", "venv", VENV], umask=0o022, env=env, timeout=300)
    _run([python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", *_pins()],
         umask=0o022, env=env, timeout=1200)
    _run(["chmod", "-R", "a+rX", VENV])  # the test users run it, whatever umask pip had
    VENV_STAMP.write_text(stamp)
    return str(python)


def _keygen(path: Path, passphrase: str = "", comment: str = "") -> str:
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", path])
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _sshd_config(h: Host) -> str:
    return "\n".join([
        "# generated by tests/hosts/testhosts.py",
        f"ListenAddress {h.address}", "Port 22",
        f"HostKey {h.dir}/hostkey", f"PidFile {h.dir}/sshd.pid", f"AuthorizedKeysFile {h.dir}/authorized_keys",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "PermitRootLogin no", f"AllowUsers {h.user}",
        "AllowTcpForwarding yes", "AllowStreamLocalForwarding yes", "StreamLocalBindUnlink yes",
        "MaxStartups 200", "MaxSessions 200", "PrintMotd no", "PrintLastLog no",
        f"SetEnv PATH={h.path}", "LogLevel VERBOSE", "Subsystem sftp internal-sftp", "",
    ])


def _ssh_config(hosts: Hosts) -> str:
    def block(alias, h, known, strict):
        lines = [f"Host {alias}", f"HostName {h.address}", f"User {h.user}", f"IdentityFile {hosts.key}",
                 "IdentitiesOnly yes", f"UserKnownHostsFile {known}", "GlobalKnownHostsFile /dev/null",
                 f"StrictHostKeyChecking {strict}", "UpdateHostKeys no"] + ([f"ProxyJump {h.via}"] if h.via else [])
        return "\n    ".join(lines) + "\n"
    out = ["# pxkernel SSH test hosts, generated by tests/hosts/testhosts.py\n"]
    out += [block(n, h, hosts.known_hosts, "yes") for n, h in hosts.hosts.items()]
    out.append(block("pxb-unknown", hosts["pxb"], hosts.empty_known_hosts, "ask"))
    return "\n".join(out)


def _check_dir(d: Path) -> None:
    if any(c.isspace() for c in str(d)):
        raise HostError(f"{d}: no whitespace allowed in DIR (it goes into sshd and ssh configs)")
    d.chmod(d.stat().st_mode | 0o011)
    for p in d.parents:
        if not p.stat().st_mode & 0o001:
            raise HostError(f"the test users cannot reach their homes under {d}: {p} is not searchable by others "
                            "(mode {:o}); use a DIR under /tmp".format(p.stat().st_mode & 0o7777))


def up(dir) -> Hosts:
    """Bring the four hosts up, with their state in dir; fails (clearly) if another
    instance is up. Leftovers of a crashed earlier run are torn down first."""
    if reason := unavailable_reason():
        raise HostError(reason)
    d = Path(dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    _take_lock(d)
    try:
        _teardown(None)
        _check_dir(d)
        ensure_venv()
        hosts = _build(d)
        for name in hosts.names:  # pxa before pxc, which is reached through it
            hosts.start_sshd(name)
        r = hosts.run("pxd", "python3 -c 'import ipykernel'")
        if r.returncode == 0 or "ipykernel" not in r.stderr:
            raise HostError(f"pxd must have a python3 without ipykernel, but `python3 -c 'import ipykernel'` there "
                            f"exited {r.returncode}: {r.stderr.strip()} (is python3-ipykernel installed?)")
        return hosts
    except BaseException:
        try:
            _teardown(d)
        finally:
            _release_lock()
        raise


def _build(d: Path) -> Hosts:
    _run(["ip", "route", "replace", "unreachable", TEST_NET])  # first: nothing in the range leaves
    hosts = Hosts(dir=str(d), hosts={})
    client_keys = [_keygen(d / "id_ed25519", comment="pxkernel-testhosts"),
                   _keygen(d / "id_passphrase", PASSPHRASE, "pxkernel-testhosts-passphrase")]
    known = []
    for name, (net, via) in LAYOUT.items():
        hdir = d / name
        hdir.mkdir(exist_ok=True)
        hdir.chmod(0o711)
        h = Host(name=name, address=f"10.231.{net}.2", peer=f"10.231.{net}.1", user=NETNS[name],
                 home=str(hdir / "home"), netns=NETNS[name], veth=VETHS[name], veth_netns=via and NETNS[via],
                 via=via, path=PLAIN_PATH if name == "pxd" else VENV_PATH, dir=str(hdir))
        hosts.hosts[name] = h
        known.append(f"{name},{h.address} {_keygen(hdir / 'hostkey', comment=name)}\n")
        (hdir / "authorized_keys").write_text("".join(k + "\n" for k in client_keys))
        (hdir / "authorized_keys").chmod(0o644)  # sshd reads it as the user
        (hdir / "sshd_config").write_text(_sshd_config(h))
        _run(["useradd", "-M", "-d", h.home, "-s", "/bin/bash", "-p", "*", "-c", f"pxkernel test host {name}", h.user])
        shutil.rmtree(h.home, ignore_errors=True)
        os.mkdir(h.home, 0o700)
        # login shells read /etc/profile, which resets PATH: keep the host's PATH there too
        Path(h.home, ".profile").write_text(f"PATH={h.path}; export PATH\n")
        for p in (h.home, os.path.join(h.home, ".profile")):
            shutil.chown(p, h.user, h.user)
        upstream, inside = ["ip", *_ns(h.veth_netns)], ["ip", "-n", h.netns]
        for argv in (["ip", "netns", "add", h.netns],
                     upstream + ["link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns],
                     upstream + ["addr", "add", f"{h.peer}/30", "dev", h.veth], upstream + ["link", "set", h.veth, "up"],
                     inside + ["addr", "add", f"{h.address}/30", "dev", "eth0"], inside + ["link", "set", "eth0", "up"],
                     inside + ["link", "set", "lo", "up"], inside + ["route", "add", TEST_NET, "via", h.peer]):
            _run(argv)
    Path(hosts.known_hosts).write_text("".join(known))
    Path(hosts.empty_known_hosts).write_text("")
    Path(hosts.ssh_config).write_text(_ssh_config(hosts))
    SYSTEM_SSH_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_SSH_CONFIG.write_text(f"# pxkernel SSH test hosts (tests/hosts/testhosts.py); removed by `down`\n"
                                 f"Include {hosts.ssh_config}\n")
    data = {"dir": hosts.dir, "hosts": {n: asdict(h) for n, h in hosts.hosts.items()}}
    Path(d, "hosts.json").write_text(json.dumps(data, indent=1) + "\n")
    return hosts


# -- down ----------------------------------------------------------------------------


def _teardown(d: Path | None) -> None:
    """Remove everything the hosts consist of, found by their fixed names; then, given
    DIR, the homes and DIR's runtime state. Safe to repeat."""
    netns = [ns for ns in NETNS.values() if ns in _listdir("/run/netns")]
    pids = {int(p) for ns in netns for p in _run(["ip", "netns", "pids", ns], check=False).stdout.split()}
    _kill(sorted(pids.union(*(_uid_pids(_uid(user)) for user in NETNS.values()))))
    for ns in netns:
        _run(["ip", "netns", "del", ns])
    for veth in VETHS.values():  # gone with their namespace's end; a half-made one may remain
        # The kernel may remove it between the check and the delete: then it is gone.
        if os.path.exists(f"/sys/class/net/{veth}"):
            r = _run(["ip", "link", "del", veth], check=False)
            if r.returncode and os.path.exists(f"/sys/class/net/{veth}"):
                raise HostError(f"`ip link del {veth}` failed: {r.stderr.strip()}")
    for user in NETNS.values():
        if _uid(user) is not None:
            _run(["userdel", "-f", user])  # -f: a zombie of the user may linger
    if _run(["ip", "route", "show", "type", "unreachable", TEST_NET], check=False).stdout.strip():
        _run(["ip", "route", "del", "unreachable", TEST_NET])
    SYSTEM_SSH_CONFIG.unlink(missing_ok=True)
    if d is not None:
        for name in LAYOUT:
            shutil.rmtree(d / name / "home", ignore_errors=True)
            (d / name / "sshd.pid").unlink(missing_ok=True)
        (d / "hosts.json").unlink(missing_ok=True)


def down(dir) -> None:
    """Kill every process of the hosts, remove netns, veths, users, the route and the
    ssh_config.d file, release the lock. Safe to call twice."""
    d = Path(dir).resolve()
    owner = lock_owner()
    if owner and owner.get("dir") not in (str(d), "?"):
        raise HostError(f"the test hosts that are up are {owner['dir']}'s, not {d}'s: down {owner['dir']}")
    _teardown(d)
    _release_lock()


# -- CLI -------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("dir", help="state directory (keys, configs, logs, homes); under /tmp, say")
    args = ap.parse_args(argv)
    try:
        if args.action == "down":
            down(args.dir)
            print("test hosts down")
            return 0
        t0 = time.monotonic()
        hosts = up(args.dir) if args.action == "up" else load(args.dir)
        if args.action == "up":
            print(f"test hosts up in {time.monotonic() - t0:.1f}s; plain `ssh pxa` works ({SYSTEM_SSH_CONFIG})")
        print(f"lock: {'held for ' + owner['dir'] if (owner := lock_owner()) else 'free'}; state in {hosts.dir}")
        for name, h in hosts.hosts.items():
            r = hosts.run(name, "hostname", options=("-o", "ConnectTimeout=3"), timeout=15)
            ssh = r.stdout.strip() if r.returncode == 0 else "FAILED: " + r.stderr.strip()
            print(f"  {name}  {h.user}@{h.address:10}  netns {h.netns}  sshd pid {h.sshd_pid}  "
                  f"`ssh {name} hostname`: {ssh}" + (f"  (via {h.via})" if h.via else ""))
    except HostError as e:
        print(f"testhosts {args.action}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
