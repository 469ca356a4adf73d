"""Engines on SSH hosts (`%engines start --ssh HOST`) against the SSH test hosts
(tests/hosts): the seed story on pxa and pxb, pxc through ProxyJump, pxd whose
python3 has no ipykernel (the error, then --python and --setup), no port opened
on the host and no key on any command line, stop and restart, an engine killed
on its host, interrupts, 1,000 lines from four engines, a kernel that only takes
loopback TCP (`--kernel`), one that also declares CurveZMQ (it gets keys) and a
kernelspec the host lacks; then, each with a
pxkernel of its own, what is left on the host after shutdown and SIGKILL of
pxkernel, and network drops: idle, while a cell runs (its reply lost, or the cell
outlasting the drop), and longer than the grace period. Skipped
(with the reason) where the hosts cannot run — a failure under
PXKERNEL_REQUIRE_ALL=1."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import signal
import time
from pathlib import Path

import psutil
import pytest
from kernel_helpers import (
    engine_tracebacks,
    engines_table,
    error_of,
    collect,
    execute,
    finish,
    is_tagged,
    kernel_pid,
    of_type,
    pxkernel_started,
    read_until,
    shell_reply,
    stdout_of,
    tagged_lines,
    untagged_lines,
    wait_gone,
    wait_until,
)
from ssh_tunnel_support import master_pids as masters

VENV_PYTHON = "/opt/pxkernel-testhosts/venv/bin/python3"
STARTED = re.compile(r"^Started (\d+) (\S+) engines? on (\S+) in [^:]+: ids? (\d+)(?:-(\d+))?\.\n$")
LAUNCHER = re.compile(r"ipykernel_launcher -f (/\S+)/e(\d+)\.json")


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts(ssh_hosts):
    return ssh_hosts


def _shutdown(km, kc):
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=False)
    else:
        km.cleanup_resources()


@pytest.fixture(scope="module")
def shared_kernel(hosts):
    """One pxkernel for the tests that neither kill nor cut anything."""
    km, kc = pxkernel_started()
    try:
        yield km, kc
    finally:
        _shutdown(km, kc)


@pytest.fixture
def kernel(shared_kernel, hosts):
    """The shared kernel; afterwards every engine is stopped, and nothing of them is
    left on any host (no engine process, no batch directory)."""
    km, kc = shared_kernel
    before = {name: set(batch_dirs(hosts, name)) for name in hosts.names}
    yield km, kc
    execute(kc, "%engines stop", timeout=60)
    for name in hosts.names:
        wait_until(lambda: engine_pids(hosts, name) == {} and set(batch_dirs(hosts, name)) <= before[name],
                   timeout=15, what=f"no engine and no batch directory left on {name}")


@pytest.fixture
def fresh(hosts):
    """A pxkernel of the test's own (it is shut down, killed or cut). Once it is
    shut down, none of its engines may be left on any host: those that are fail the
    test, and are killed (by pid) so that they cannot confuse the next one."""
    before = {name: set(engine_pids(hosts, name).values()) for name in hosts.names}
    dirs = {name: set(batch_dirs(hosts, name)) for name in hosts.names}
    km, kc = pxkernel_started()
    try:
        yield km, kc
    finally:
        _shutdown(km, kc)
        left = [pid for name in hosts.names for pid in engine_pids(hosts, name).values() if pid not in before[name]]
        left = wait_gone(left, timeout=10)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert left == [], f"engine processes {left} outlived their pxkernel's shutdown by 10 s (killed now)"
        for name in hosts.names:  # each watchdog removes its directory once its engines are gone
            wait_until(lambda: set(batch_dirs(hosts, name)) <= dirs[name], timeout=10,
                       what=f"no batch directory left on {name}")


# -- helpers -------------------------------------------------------------------------


def ok(kc, code, timeout=60):
    reply, msgs = execute(kc, code, timeout=timeout)
    assert reply["status"] == "ok", (code, reply, stdout_of(msgs), stdout_of(msgs, "stderr"))
    return msgs


def start(kc, host, n, extra="", timeout=90):
    """`%engines start --ssh HOST -n N EXTRA` that must work; the new ids."""
    msgs = ok(kc, f"%engines start --ssh {host} -n {n} {extra}".rstrip(), timeout=timeout)
    out = stdout_of(msgs)
    m = STARTED.match(out)
    assert m, repr(out)
    assert (int(m.group(1)), m.group(2), m.group(3)) == (n, "python3", host), out
    first = int(m.group(4))
    last = int(m.group(5)) if m.group(5) else first
    ids = list(range(first, last + 1))
    assert len(ids) == n, out
    return ids


def uid_of(hosts, name) -> int:
    return pwd.getpwnam(hosts[name].user).pw_uid


def engine_pids(hosts, name) -> dict[tuple[str, int], int]:
    """The engines running on host name: (batch directory, engine id) -> pid."""
    out = {}
    for pid, cmdline in hosts.processes(name):
        m = LAUNCHER.search(cmdline)
        if m:
            out[(m.group(1), int(m.group(2)))] = pid
    return out


def pids_by_id(hosts, name) -> dict[int, int]:
    found = engine_pids(hosts, name)
    by_id = {i: pid for (_, i), pid in found.items()}
    assert len(by_id) == len(found), f"two engines with one id on {name}: {found}"
    return by_id


def dir_of(hosts, name, engine_id) -> str:
    (d,) = [d for (d, i) in engine_pids(hosts, name) if i == engine_id]
    return d


def batch_dirs(hosts, name) -> list[str]:
    """The pxk-* directories in /tmp that belong to the host's user (the hosts share
    this machine's file system; only their network, hostname and user are theirs)."""
    uid = uid_of(hosts, name)
    out = []
    for p in Path("/tmp").glob("pxk-*"):
        try:
            if p.is_dir() and p.stat().st_uid == uid:
                out.append(str(p))
        except OSError:
            pass  # removed meanwhile
    return sorted(out)


def leftovers(hosts, name, d) -> list[tuple[int, str]]:
    """Processes on host name that belong to batch directory d (keeper, watchdog, engines)."""
    return [(pid, c) for pid, c in hosts.processes(name) if d in c]


def hosts_said(msgs) -> list[tuple[int, str]]:
    """`[stdout:N] Hello, World from HOST` lines as (N, HOST), sorted."""
    out = []
    for kind, engine, text in tagged_lines(msgs, "stdout"):
        m = re.fullmatch(r"Hello, World from (\S+)", text)
        assert kind == "stdout" and m, (kind, engine, text)
        out.append((engine, m.group(1)))
    return sorted(out)


def results(msgs) -> dict[int, str]:
    """`Out[N:k]: value` displays of a %px cell: engine -> value."""
    shown = {}
    for m in of_type(msgs, "display_data"):
        r = re.fullmatch(r"Out\[(\d+):\d+\]: (.*)", m["content"]["data"].get("text/plain", ""), re.S)
        if r:
            shown[int(r.group(1))] = r.group(2)
    return shown


HELLO = '%px import socket; print("Hello, World from", socket.gethostname())'


# -- the seed story --------------------------------------------------------------------


def test_hello_world_from_two_hosts_and_state_across_cells(kernel, hosts):
    km, kc = kernel
    a = start(kc, "pxa", 2)
    b = start(kc, "pxb", 2)
    assert len(set(a + b)) == 4
    msgs = ok(kc, HELLO)
    assert hosts_said(msgs) == sorted([(i, "pxa") for i in a] + [(i, "pxb") for i in b])
    assert untagged_lines(msgs) == [] and stdout_of(msgs, "stderr") == ""
    table = engines_table(kc)
    assert sorted(table) == sorted(a + b)
    for i in a + b:
        row = table[i]
        assert row["host"] == ("pxa" if i in a else "pxb"), row
        assert row["kernel"] == "python3" and row["state"] == "idle", row
    # The engines are ipykernel processes of each host's own user, one master per host.
    assert sorted(pids_by_id(hosts, "pxa")) == a
    assert sorted(pids_by_id(hosts, "pxb")) == b
    assert len(masters(km)) == 2, "one ssh master per host"
    # State is kept across cells, on every engine.
    ok(kc, "%px x = 41")
    msgs = ok(kc, "%px x + 1")
    assert results(msgs) == {i: "42" for i in a + b}


def test_pxc_through_proxyjump(kernel, hosts):
    km, kc = kernel
    (c,) = start(kc, "pxc", 1)
    msgs = ok(kc, HELLO)
    assert hosts_said(msgs) == [(c, "pxc")]
    assert engines_table(kc)[c]["host"] == "pxc"
    assert list(pids_by_id(hosts, "pxc")) == [c], "the engine runs as pxc's user"


# -- pxd: no ipykernel -----------------------------------------------------------------


def test_pxd_without_ipykernel_says_what_to_do_then_python_and_setup_work(kernel, hosts):
    km, kc = kernel
    before = engines_table(kc)
    dirs = batch_dirs(hosts, "pxd")
    reply, msgs = execute(kc, "%engines start --ssh pxd -n 1", timeout=60)
    assert reply["status"] == "error" and reply["ename"] == "EngineError", reply
    err = error_of(msgs)
    assert (err["ename"], err["evalue"]) == ("EngineError", reply["evalue"])
    said = reply["evalue"]
    assert said.startswith("pxd: /usr/bin/python3 (Python 3."), said
    for part in ("has no ipykernel", "/usr/bin/python3 -m pip install ipykernel", "--python", "--setup"):
        assert part in said, (part, said)
    assert engines_table(kc).keys() == before.keys(), "no engine was registered"
    assert batch_dirs(hosts, "pxd") == dirs, "nothing was made on pxd"

    (d1,) = start(kc, "pxd", 1, f"--python {VENV_PYTHON}")
    (d2,) = start(kc, "pxd", 1, "--setup 'export PATH=/opt/pxkernel-testhosts/venv/bin:$PATH'")
    msgs = ok(kc, f"%px --targets {d1},{d2} import sys, socket; print(socket.gethostname(), sys.executable)")
    assert sorted(tagged_lines(msgs)) == [("stdout", d1, f"pxd {VENV_PYTHON}"), ("stdout", d2, f"pxd {VENV_PYTHON}")]
    assert sorted(pids_by_id(hosts, "pxd")) == [d1, d2]


# -- nothing exposed -------------------------------------------------------------------


def listeners(hosts, name) -> list[tuple[str, str, set[int]]]:
    """Listening TCP and UDP sockets in the host's network namespace: (proto, local
    address:port, pids of the processes that hold it)."""
    r = hosts.netns_exec(name, ["ss", "-ltunpH"], check=True)
    out = []
    for line in r.stdout.splitlines():
        if line.strip():
            cells = line.split()
            out.append((cells[0], cells[4], {int(p) for p in re.findall(r"pid=(\d+)", line)}))
    return out


def test_no_port_on_the_host_and_no_key_on_any_command_line(kernel, hosts):
    km, kc = kernel
    sshd = listeners(hosts, "pxa")
    assert [(proto, addr) for proto, addr, _ in sshd] == [("tcp", f"{hosts['pxa'].address}:22")], sshd
    ids = start(kc, "pxa", 2)
    ok(kc, "%px 1")
    # The engines' channels are Unix sockets in their directory, forwarded by the master.
    pids = pids_by_id(hosts, "pxa")
    extra = [entry for entry in listeners(hosts, "pxa") if entry not in sshd]
    # ipykernel itself always binds one ZMQ PULL socket on 127.0.0.1 (IOPubThread's pipe for
    # the output of forked subprocesses; not configurable): nothing else may listen on
    # pxa, and nothing at all on an address other hosts can reach.
    assert all(addr.startswith("127.0.0.1:") for _, addr, _ in extra), extra
    assert sorted(p for _, _, owners in extra for p in owners) == sorted(pids.values()), (extra, pids)
    # Nor does pxkernel's master listen on a TCP port here: its forwards are Unix sockets.
    for pid in masters(km):
        assert [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
    d = dir_of(hosts, "pxa", ids[0])
    assert dir_of(hosts, "pxa", ids[1]) == d, "one batch, one directory"
    r = hosts.run("pxa", f"stat -c '%a %U' {d} {d}/e{ids[0]}.json", check=True)
    assert r.stdout.splitlines() == [f"700 {hosts['pxa'].user}", f"600 {hosts['pxa'].user}"], r.stdout
    sockets = [Path(d, f"e{i}-{p}") for i in ids for p in range(1, 6)]
    assert all(s.is_socket() for s in sockets), sockets
    keys = [json.loads(Path(d, f"e{i}.json").read_text())["key"] for i in ids]
    assert all(len(k) >= 16 for k in keys) and len(set(keys)) == 2, keys
    for name in hosts.names:
        for pid, cmdline in hosts.processes(name):
            assert not any(k in cmdline for k in keys), (name, pid, cmdline)
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        assert not any(k in cmdline for k in keys), (p.pid, cmdline)


# -- stop and restart ------------------------------------------------------------------


def test_stop_ends_the_engine_on_its_host_and_restart_keeps_the_id(kernel, hosts):
    km, kc = kernel
    a, b = start(kc, "pxa", 2)
    pids = pids_by_id(hosts, "pxa")
    d = dir_of(hosts, "pxa", a)
    ok(kc, "%px x = 'set'")

    assert stdout_of(ok(kc, f"%engines stop {a}")) == f"Stopped engines {a}.\n"
    assert wait_gone([pids[a]], timeout=10) == [], "the stopped engine's process is gone"
    assert list(pids_by_id(hosts, "pxa")) == [b]
    gone = [f"e{a}.json", f"e{a}.pid"] + [f"e{a}-{p}" for p in range(1, 6)]
    assert [f for f in gone if Path(d, f).exists()] == [], os.listdir(d)
    assert Path(d).is_dir(), "engine b still lives in the batch directory"
    assert sorted(engines_table(kc)) == [b]

    assert stdout_of(ok(kc, f"%engines restart {b}")) == f"Restarted engines {b}.\n"
    assert wait_gone([pids[b]], timeout=10) == []
    new = pids_by_id(hosts, "pxa")
    assert list(new) == [b] and new[b] != pids[b]
    # The old batch has no engine left: its watchdog removes its directory.
    wait_until(lambda: not Path(d).exists(), timeout=10, what=f"{d} removed")
    msgs = ok(kc, f"%px --targets {b} print('x' in globals())")
    assert tagged_lines(msgs) == [("stdout", b, "False")], "a restarted engine starts afresh"
    row = engines_table(kc)[b]
    assert (row["host"], row["state"]) == ("pxa", "idle"), row

    d2 = dir_of(hosts, "pxa", b)
    assert d2 != d, "a restarted engine has a directory of its own"
    ok(kc, f"%engines stop {b}")
    wait_until(lambda: engine_pids(hosts, "pxa") == {} and not Path(d2).exists(),
               timeout=10, what=f"no engine and no {d2} left on pxa")


# -- an engine that dies on its host ---------------------------------------------------


def test_an_engine_killed_on_its_host_is_dead_and_fails_fast(kernel, hosts):
    km, kc = kernel
    a, b = start(kc, "pxa", 2)
    (c,) = start(kc, "pxb", 1)
    pids = pids_by_id(hosts, "pxa")
    os.kill(pids[a], signal.SIGKILL)  # the hosts share this machine's pid namespace
    want = "dead (its process on pxa ended)"
    wait_until(lambda: engines_table(kc)[a]["state"] == want, timeout=5, interval=0.2,
               what=f"engine {a} shown {want}")
    table = engines_table(kc)
    assert table[b]["state"] == "idle" and table[c]["state"] == "idle", table
    reply, msgs = execute(kc, "%px print('still here')", timeout=15)
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == f"1 of 3 engines failed: [{a}:execute] died (its process on pxa ended)", reply
    assert sorted(tagged_lines(msgs, "stdout")) == [("stdout", b, "still here"), ("stdout", c, "still here")]


# -- interrupts ------------------------------------------------------------------------


def test_interrupt_stops_engines_on_ssh_hosts(kernel, hosts):
    km, kc = kernel
    a = start(kc, "pxa", 1)[0]
    b = start(kc, "pxb", 1)[0]
    ok(kc, "%px kept = 'still here'")
    msg_id = kc.execute("%%px\nimport time\nprint('started', flush=True)\ntime.sleep(60)\n")
    seen = read_until(kc, msg_id, is_tagged("stdout", a, "started"), timeout=20)
    if ("stdout", b, "started") not in tagged_lines(seen):
        seen += read_until(kc, msg_id, is_tagged("stdout", b, "started"), timeout=20)
    km.interrupt_kernel()
    reply, msgs = finish(kc, msg_id, seen, timeout=15)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    tracebacks = engine_tracebacks(msgs)
    assert sorted(tracebacks) == [a, b], stdout_of(msgs, "stderr")
    assert all("KeyboardInterrupt" in tb for tb in tracebacks.values()), tracebacks
    msgs = ok(kc, "%px print(kept)")
    assert sorted(tagged_lines(msgs)) == [("stdout", a, "still here"), ("stdout", b, "still here")]


# -- a thousand lines --------------------------------------------------------------------


def test_a_thousand_lines_from_four_engines_on_two_hosts(kernel, hosts):
    km, kc = kernel
    ids = start(kc, "pxa", 2) + start(kc, "pxb", 2)
    msgs = ok(kc, "%px for i in range(250): print(i)", timeout=60)
    lines = tagged_lines(msgs, "stdout")
    assert len(lines) == 1000, len(lines)
    for i in ids:
        assert [t for k, e, t in lines if e == i] == [str(n) for n in range(250)], i
    assert untagged_lines(msgs) == [], "every line whole and tagged"
    assert stdout_of(msgs, "stderr") == ""


# -- lifetime: pxkernel shut down or killed ------------------------------------------------


# A kernel other than ipykernel: here ipykernel behind a script that refuses anything
# but TCP on loopback, as kernels without ipc support (IRkernel, ...) would.
TCP_ONLY = """import json, sys
path = sys.argv[sys.argv.index("-f") + 1]
info = json.load(open(path))
if (info["transport"], info["ip"]) != ("tcp", "127.0.0.1"):
    sys.exit(f"tcp-only wants tcp on 127.0.0.1, not {info['transport']} {info['ip']}")
from ipykernel.kernelapp import launch_new_instance
launch_new_instance(["-f", path, "--HistoryManager.hist_file=:memory:"])
"""


def tcp_kernelspec(hosts, name: str, **extra):
    """Install the kernelspec `name` running TCP_ONLY in pxa's user's Jupyter data
    directory; returns the command that removes it."""
    spec = {"argv": [VENV_PYTHON, f"{hosts['pxa'].home}/{name}.py", "-f", "{connection_file}"],
            "display_name": name, "language": "python", **extra}
    setup = (f"mkdir -p ~/.local/share/jupyter/kernels/{name} && cat > ~/{name}.py && "
             f"printf '%s' {shlex.quote(json.dumps(spec))} > ~/.local/share/jupyter/kernels/{name}/kernel.json")
    hosts.run("pxa", setup, input=TCP_ONLY, check=True)
    return f"rm -rf ~/{name}.py ~/.local/share/jupyter/kernels/{name}"


@pytest.fixture
def tcp_only(hosts):
    """The kernelspec `tcp-only` on pxa, for one test."""
    remove = tcp_kernelspec(hosts, "tcp-only")
    yield
    hosts.run("pxa", remove, check=True)


@pytest.fixture
def tcp_curve(hosts):
    """The kernelspec `tcp-curve` on pxa, declaring CurveZMQ as ipykernel 7.4 does."""
    remove = tcp_kernelspec(hosts, "tcp-curve", metadata={"supported_encryption": ["curve"]})
    yield
    hosts.run("pxa", remove, check=True)


# On a host: a kernel_info_request to the shell port of the connection file on stdin,
# from a socket of its own (a CURVE client of argv[2] when given); prints whether a
# reply came within argv[1] seconds.
ASK_ENGINE = """import json, sys, zmq
from jupyter_client.session import Session
info = json.load(sys.stdin)
sock = zmq.Context.instance().socket(zmq.DEALER)
sock.linger = 0
if len(sys.argv) > 2:
    sock.curve_serverkey = sys.argv[2].encode()
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
sock.connect(f"tcp://127.0.0.1:{info['shell_port']}")
Session(key=info["key"].encode()).send(sock, "kernel_info_request", {})
print("reply" if sock.poll(int(float(sys.argv[1]) * 1000)) else "silent")
"""


def ask_engine_on(hosts, name, info: dict, timeout: float, serverkey: str | None = None) -> str:
    argv = [VENV_PYTHON, "-c", ASK_ENGINE, str(timeout)] + ([serverkey] if serverkey else [])
    return hosts.netns_exec(name, argv, input=json.dumps(info), check=True).stdout.strip()


def listening(hosts, name, pid) -> list[str]:
    """The TCP addresses process pid listens on, in host name's network namespace."""
    out = hosts.netns_exec(name, ["ss", "-Hltnp"], check=True).stdout
    return sorted(ln.split()[3] for ln in out.splitlines() if f"pid={pid}," in ln)


def start_tcp_engine(kc, hosts, name: str) -> tuple[int, int, dict]:
    """Start one engine of kernelspec name (a TCP_ONLY one) on pxa and check it runs
    there, on loopback TCP; its id, its pid on the host and its connection file."""
    out = stdout_of(ok(kc, f"%engines start --ssh pxa -n 1 --kernel {name}", timeout=90))
    m = STARTED.match(out)
    assert m and m.group(2) == name, out
    e = int(m.group(4))
    msgs = ok(kc, f"%px --targets {e} import socket; print(socket.gethostname())")
    assert tagged_lines(msgs) == [("stdout", e, "pxa")]
    ((pid, cmd),) = [(p, c) for p, c in hosts.processes("pxa") if f"{name}.py" in c]
    info = json.loads(Path(cmd.split(" -f ")[1].split()[0]).read_text())
    assert (info["transport"], info["ip"]) == ("tcp", "127.0.0.1"), info
    return e, pid, info


def test_a_kernel_other_than_ipykernel_listens_on_the_hosts_loopback(kernel, hosts, tcp_only):
    km, kc = kernel
    e, pid, info = start_tcp_engine(kc, hosts, "tcp-only")
    assert "curve_secretkey" not in info, "a kernel that does not declare CurveZMQ gets no keys"
    # Its five ports, and ipykernel's own one for the output of forked processes: all
    # on the host's loopback.
    addrs = listening(hosts, "pxa", pid)
    ports = [info[f"{c}_port"] for c in ("shell", "iopub", "stdin", "control", "hb")]
    assert {f"127.0.0.1:{p}" for p in ports} <= set(addrs), (ports, addrs)
    assert all(a.startswith("127.0.0.1:") for a in addrs), addrs
    assert engines_table(kc)[e]["pid"] == str(pid)


def test_a_kernel_on_the_hosts_loopback_that_declares_curve_gets_keys(kernel, hosts, tcp_curve):
    # Any user of the host could connect to its loopback ports: a kernel that serves
    # CurveZMQ gets keys, and pxkernel reaches it as a CURVE client through the forward.
    km, kc = kernel
    e, _, info = start_tcp_engine(kc, hosts, "tcp-curve")
    pub, sec = info.get("curve_publickey"), info.get("curve_secretkey")
    assert isinstance(pub, str) and isinstance(sec, str) and len(pub) == len(sec) == 40, sorted(info)
    # The kernel serves CURVE for real: on the host, a plain client gets nothing,
    # a CURVE client with the public key its reply.
    assert ask_engine_on(hosts, "pxa", info, 1.5) == "silent"
    assert ask_engine_on(hosts, "pxa", info, 20, pub) == "reply"
    assert tagged_lines(ok(kc, f"%px --targets {e} print(6 * 7)")) == [("stdout", e, "42")]


def test_a_kernelspec_the_host_lacks_is_one_error_naming_those_it_has(kernel, hosts, tcp_only):
    km, kc = kernel
    reply, msgs = execute(kc, "%engines start --ssh pxa -n 1 --kernel nosuch", timeout=90)
    assert reply["status"] == "error"
    text = error_of(msgs)["evalue"]
    assert 'pxa has no kernelspec "nosuch"' in text and "tcp-only" in text, text


def test_shutdown_leaves_nothing_on_the_host(fresh, hosts):
    km, kc = fresh
    ids = start(kc, "pxb", 2)
    pids = list(pids_by_id(hosts, "pxb").values())
    d = dir_of(hosts, "pxb", ids[0])
    mine = masters(km)
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert wait_gone(pids, timeout=10) == [], "pxkernel stops its engines when it shuts down"
    assert wait_gone(mine, timeout=10) == []
    wait_until(lambda: leftovers(hosts, "pxb", d) == [] and not Path(d).exists(), timeout=10,
               what=f"nothing of {d} left on pxb")


def test_sigkill_of_pxkernel_ends_its_engines_after_the_grace_period(fresh, hosts):
    km, kc = fresh
    ids = start(kc, "pxa", 2, "--grace 3")
    pids = list(pids_by_id(hosts, "pxa").values())
    d = dir_of(hosts, "pxa", ids[0])
    mine = masters(km)
    os.kill(kernel_pid(km), signal.SIGKILL)
    assert wait_gone(mine, timeout=10) == [], "the master dies with pxkernel"
    # The lease goes stale; 3 s later the watchdog ends the engines, then removes the directory.
    assert wait_gone(pids, timeout=15) == [], "the watchdog ended the engines"
    wait_until(lambda: leftovers(hosts, "pxa", d) == [] and not Path(d).exists(), timeout=10,
               what=f"nothing of {d} left on pxa")


# -- network drops -------------------------------------------------------------------------


def test_a_drop_shorter_than_the_grace_period_loses_nothing(fresh, hosts):
    km, kc = fresh
    began = time.monotonic()
    ids = start(kc, "pxb", 2, "--grace 60")
    ok(kc, "%px kept = 'from before the drop'")
    pids = pids_by_id(hosts, "pxb")
    # As in a notebook whose engines have run a while: their heartbeat has answered,
    # and they are older than its window (5 missed pings 2 s apart).
    wait_until(lambda: all(r["heartbeat"] != "-" for r in engines_table(kc).values()), timeout=15,
               interval=0.5, what="a heartbeat from every engine")
    time.sleep(max(0.0, 11 - (time.monotonic() - began)))
    (master,) = masters(km)
    hosts.cut("pxb")
    try:
        # Keepalives (3 missed, 3 s apart) find the cut: the master ends, to be restarted.
        assert wait_gone([master], timeout=30) == [], "the master noticed the cut"
    finally:
        hosts.restore("pxb")
    # Until the master is back with its forwards (a dead engine never comes back: stop there).
    deadline = time.monotonic() + 40
    while True:
        reply, msgs = execute(kc, "%px print(kept)", timeout=40)
        if reply["status"] == "ok" or "died" in reply["evalue"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert reply["status"] == "ok", (reply, stdout_of(msgs, "stderr"), engines_table(kc))
    assert sorted(tagged_lines(msgs)) == [("stdout", i, "from before the drop") for i in ids]
    assert pids_by_id(hosts, "pxb") == pids, "the same engine processes, never restarted"
    assert masters(km) not in ([], [master]), "a new master"
    table = engines_table(kc)
    assert [table[i]["state"] for i in ids] == ["idle", "idle"], table
    # The pid column shows each engine's process on its host.
    assert [table[i]["pid"] for i in ids] == [str(pids[i]) for i in ids], table


def _cut_until_the_master_drops(km, hosts, name):
    """Cut the host off until pxkernel's master to it ends (its keepalives give up),
    then bring the link back; returns the old master's pid."""
    (master,) = masters(km)
    hosts.cut(name)
    try:
        assert wait_gone([master], timeout=30) == [], "the master noticed the cut"
    finally:
        hosts.restore(name)
    return master


def _marks(d, prefix):
    return sorted(p.name for p in Path(d).glob(f"{prefix}-*"))


def test_a_drop_while_a_cell_runs_ends_the_cell_with_its_reply_lost_and_keeps_the_engines(fresh, hosts):
    km, kc = fresh
    ids = start(kc, "pxb", 2, "--grace 60")
    ok(kc, "%px kept = 'from before the drop'")
    pids = pids_by_id(hosts, "pxb")
    d = dir_of(hosts, "pxb", ids[0])
    # The engines (in their batch directory) mark that they run, then finish while
    # the host is cut off: their reply and output go nowhere.
    msg_id = kc.execute("%px import os, time; open(f'running-{os.getpid()}', 'w').close(); time.sleep(2)")
    wait_until(lambda: len(_marks(d, "running")) == 2, timeout=30, what="both engines running the cell")
    _cut_until_the_master_drops(km, hosts, "pxb")
    # Once the master is back, each engine is asked what came of the cell: the cell
    # ends, saying so, instead of waiting forever.
    reply = shell_reply(kc, msg_id, timeout=60)["content"]
    collect(kc, msg_id, 10)
    assert reply["status"] == "error", reply
    for i in ids:
        assert f"[{i}:execute] its reply was lost: the connection to pxb dropped" in reply["evalue"], reply
    # The engines are the same, with their state, and idle.
    msgs = ok(kc, "%px print(kept)")
    assert sorted(tagged_lines(msgs)) == [("stdout", i, "from before the drop") for i in ids]
    assert pids_by_id(hosts, "pxb") == pids
    table = engines_table(kc)
    assert [table[i]["state"] for i in ids] == ["idle", "idle"], table


def test_a_cell_that_outlasts_a_drop_returns_as_usual(fresh, hosts):
    km, kc = fresh
    ids = start(kc, "pxb", 2, "--grace 60")
    d = dir_of(hosts, "pxb", ids[0])
    # The cell runs until the test says go: before the drop, through it, and after.
    msg_id = kc.execute("%%px\n"
                        "import os, time\n"
                        "open(f'running-{os.getpid()}', 'w').close()\n"
                        "while not os.path.exists('go'): time.sleep(0.05)\n"
                        "print('went on')")
    wait_until(lambda: len(_marks(d, "running")) == 2, timeout=30, what="both engines running the cell")
    old = _cut_until_the_master_drops(km, hosts, "pxb")
    wait_until(lambda: masters(km) not in ([], [old]), timeout=30, what="a new master")
    # The forwards come back with the master; the engines' sockets reconnect within
    # half a second of that.
    time.sleep(3)
    Path(d, "go").touch()
    reply = shell_reply(kc, msg_id, timeout=60)["content"]
    msgs = collect(kc, msg_id, 10)
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", i, "went on") for i in ids]


def test_a_killed_master_comes_back_and_the_engines_with_it(fresh, hosts):
    km, kc = fresh
    ids = start(kc, "pxa", 2, "--grace 60")
    ok(kc, "%px kept = 'from before the kill'")
    pids = pids_by_id(hosts, "pxa")
    (master,) = masters(km)
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: masters(km) not in ([], [master]), timeout=30, what="a new master")
    # The forwards come back with it; a request sent before they are is queued.
    msgs = ok(kc, "%px print(kept)")
    assert sorted(tagged_lines(msgs)) == [("stdout", i, "from before the kill") for i in ids]
    assert pids_by_id(hosts, "pxa") == pids, "the same engine processes"
    table = engines_table(kc)
    assert [table[i]["state"] for i in ids] == ["idle", "idle"], table


def test_a_drop_past_the_grace_period_gives_the_engines_up(fresh, hosts):
    km, kc = fresh
    (e,) = start(kc, "pxb", 1, "--grace 3")
    pid = pids_by_id(hosts, "pxb")[e]
    d = dir_of(hosts, "pxb", e)
    want = "dead (lost its host pxb for longer than the grace period (3 s))"
    hosts.cut("pxb")
    try:
        # On the host, the watchdog ends the engine once the lease is older than 3 s.
        assert wait_gone([pid], timeout=20) == [], "the watchdog ended the engine while pxb was cut off"
        wait_until(lambda: engines_table(kc)[e]["state"] == want, timeout=30, interval=0.5,
                   what=f"engine {e} shown {want}")
    finally:
        hosts.restore("pxb")
    # Nothing of the batch is left on pxb: no engine, no directory.
    wait_until(lambda: engine_pids(hosts, "pxb") == {} and not Path(d).exists(), timeout=15,
               what=f"no engine and no {d} left on pxb")
    reply, msgs = execute(kc, "%px print(1)", timeout=15)
    assert reply["status"] == "error", reply
    assert f"[{e}:execute] died (lost its host pxb" in reply["evalue"], reply
