#!/usr/bin/env python3
"""Engines on SSH hosts and SSH tunnels: pxkernel vs. its peers, in one run, on the
SSH test hosts (tests/hosts/testhosts.py: pxa, pxb, pxc through pxa, pxd; network
namespaces on this machine, each with its own sshd).

  start     16 engines over 4 hosts: `%engines start --profile` (a cluster profile,
            hosts in parallel) in a fresh pxkernel vs. ipyparallel's
            SSHEngineSetLauncher (`Cluster(engines="ssh")`, start_cluster until
            `rc.wait_for_engines(16)`), alternating, each alone on the machine
  px        `%px pass` on 16 SSH engines vs. the same 16 engines (same interpreter)
            started locally with `%engines start -n 16`: two pxkernels, interleaved
  print     R runs of `%px print(i)` on the 16 SSH engines: lines lost
  tunnel    `%ssh_tunnel -L 0:127.0.0.1:PORT pxb` to a banner server in pxb's netns;
            pxb's sshd stopped and its user's sessions killed (the master drops),
            sshd started again ~2 s later: time from sshd accepting again until the
            forward works again. Peer: jupyter_client's openssh_tunnel (`ssh -f -L`),
            which is only checked for coming back at all within 10 s

Figures, one `name key=value ...` line each, then a `#` summary (see
bench/README.md). No goal is asserted: a missed goal is MISS in the summary.

Needs root (the test hosts), openssh-server/-client, iproute2, and a Python with
jupyter_client, ipykernel, psutil, pexpect and ipyparallel==9.2.0; on the hosts the
venv /opt/pxkernel-testhosts/venv that testhosts.py makes. Brings the hosts up and
down itself (one instance per machine: fails at once if another is up). Every
local process it starts is stopped and reaped; stragglers are killed by PID (after
checking the PID still names the same process), never by name; the hosts' users'
processes go with `testhosts.down`.
"""

import argparse
import collections
import itertools
import json
import os
import platform
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import zmq

from benchlib import (ratio, sha256_12, Noise, _live, bench_env, cleanup, install_cleanup, install_pxkernel,
                      kill_by_pid, line, log, pct, stats, stop_tree, track, track_tree)
from px_bench import TAGGED, Floor, Kernel
from ssh_floor import FloorEngines

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "hosts"))
import testhosts  # noqa: E402

VENV_PY = str(testhosts.VENV / "bin" / "python3")   # the hosts' venv: ipykernel, ipyparallel
GOALS = {
    "start_over_ipp": 0.25,    # 16 engines over 4 hosts, pxkernel / ipyparallel
    "ssh_over_local": 1.15,    # `%px pass`, 16 SSH engines / the same 16 engines local
    "lost_lines": 0,           # `%px print(i)` runs on 16 SSH engines
    "tunnel_back_ms": 2000.0,  # sshd accepting again -> forward working again
}
PARTS = ("start", "px", "print", "tunnel")
N = 16
# Equal for both tools: pxc cannot reach a controller in the root namespace (see
# reach_root), so the 4th set of 4 is on pxa again, as another login (pxt-a@pxa).
FAIR_HOSTS = ("pxa", "pxb", "pxd", "pxt-a@pxa")
ALL_HOSTS = ("pxa", "pxb", "pxc", "pxd")        # pxkernel alone: pxc through pxa (ProxyJump)
PROFILES = {"bench-fair": FAIR_HOSTS, "bench-all": ALL_HOSTS}
CONTROLLER_LOCATION = "10.231.1.1"             # the root side of pxa's veth; pxb, pxd route to it
NOTICE = "pxkernel: the ssh connection to"
FORWARD = re.compile(r"^  (\S+):(\d+) → ", re.M)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# set-up: kernelspecs and profiles
# ---------------------------------------------------------------------------

def setup(tmp, exe, python):
    """bench_env (a python3 home kernelspec of PYTHON under TMP), pxkernel installed as
    `pxkernel`, a kernelspec `hostpy` of the hosts' venv Python (the local engines of
    the px part, the same interpreter as on the hosts) and the cluster profiles."""
    env, data = bench_env(tmp, python, drop=("IPP_NONINTERACTIVE", "IPP_PROFILE"),
                          OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    spec = install_pxkernel(exe, tmp, env)
    d = data / "kernels" / "hostpy"
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [VENV_PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test hosts' venv)", "language": "python"}))
    # The same for the floor's local engines, without IPython's history database, as
    # pxkernel starts its engines (and the floor its SSH ones).
    d = data / "kernels" / "hostpy-nohist"
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [VENV_PY, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--HistoryManager.hist_file=:memory:"],
        "display_name": "Python 3 (test hosts' venv, no history)", "language": "python"}))
    profiles = Path(env["JUPYTER_CONFIG_DIR"]) / "pxkernel" / "profiles"
    profiles.mkdir(parents=True)
    for name, hosts in PROFILES.items():
        text = f'description = "ssh_bench: {N} engines on {", ".join(hosts)}"\n'
        for h in hosts:
            text += f'\n[[hosts]]\nhost = "{h}"\nn = {N // len(hosts)}\npython = "{VENV_PY}"\n'
        (profiles / f"{name}.toml").write_text(text)
    return env, spec


def kernel_env(env, tmp, tag):
    e = dict(env)
    e["IPYTHONDIR"] = str(tmp / "ipython" / tag)
    return e


def start_pxkernel(a, tmp, env, spec, tag):
    k = Kernel("pxkernel", spec, kernel_env(env, tmp, tag), str(tmp / "work"), tag)
    k.start(a.start_timeout)
    k.execute("pass", a.start_timeout)     # its home kernel is up
    return k


def hosts_idle(hosts, timeout):
    """Wait (bounded) until no host user has a process left: (seconds, {host: [(pid, cmd)]})."""
    t0 = time.perf_counter()
    while True:
        left = {n: p for n in hosts.names if (p := hosts.processes(n))}
        if not left or time.perf_counter() - t0 > timeout:
            return time.perf_counter() - t0, left
        time.sleep(0.1)


def clear_hosts(hosts, what, timeout):
    """After a system stopped: wait for the hosts' users to have no process; kill (by the
    host user's pids, testhosts.kill_user_processes) and report what is left."""
    dt, left = hosts_idle(hosts, timeout)
    n = sum(len(v) for v in left.values())
    if left:
        log(f"{what}: {n} process(es) of the host users still there {timeout:.0f}s after the stop, "
            f"killed: " + "; ".join(f"{h}: {pid} {cmd[:100]}" for h, ps in left.items() for pid, cmd in ps))
        for h in left:
            hosts.kill_user_processes(h)
    return dt, n


# ---------------------------------------------------------------------------
# ipyparallel with SSHEngineSetLauncher, in a process of its own
# ---------------------------------------------------------------------------

IPP_HELPER = r'''
import json, sys, time
cfg = json.loads(sys.argv[1])
def say(**kw):
    print(json.dumps(kw), flush=True)
import ipyparallel as ipp
from traitlets.config import Config
c = Config()
c.SSHEngineSetLauncher.engines = cfg["engines"]
c.SSHEngineSetLauncher.remote_python = cfg["python"]
# relative: in each host user's home (the local profile dir is root's, under /tmp)
c.SSHEngineSetLauncher.remote_profile_dir = cfg["remote_profile_dir"]
cluster = ipp.Cluster(config=c, engines="ssh", n=cfg["n"], controller_ip="0.0.0.0",
                      controller_location=cfg["location"], log_level=20)
say(event="imported")
sys.stdin.readline()                  # "go"
t0 = time.perf_counter()
cluster.start_cluster_sync()          # controller, 1 s delay (default), then each engine over ssh
t_launched = time.perf_counter()
rc = cluster.connect_client_sync()
rc.wait_for_engines(cfg["n"], timeout=cfg["timeout"])
t_ready = time.perf_counter()
say(event="ready", ms=(t_ready - t0) * 1e3, launch_ms=(t_launched - t0) * 1e3, engines=len(rc.ids))
sys.stdin.readline()                  # "stop"
t0 = time.perf_counter()
rc.close()
cluster.stop_cluster_sync()
say(event="stopped", ms=(time.perf_counter() - t0) * 1e3)
'''


class IppCluster:
    """A Python process (the bench's Python: ipyparallel 9.2) running IPP_HELPER."""

    kind = "ipyparallel"

    def __init__(self, a, tmp, env, tag, engines):
        self.a, self.tag = a, tag
        cfg = {"engines": engines, "python": VENV_PY, "remote_profile_dir": f"ipp-bench-{tag}",
               "n": N, "location": CONTROLLER_LOCATION, "timeout": a.start_timeout}
        self.logpath = tmp / f"ipp-{tag}.log"
        with open(self.logpath, "wb") as logf:
            self.proc = subprocess.Popen([a.python, "-c", IPP_HELPER, json.dumps(cfg)],
                                         env=kernel_env(env, tmp, f"ipp-{tag}"), cwd=str(tmp / "work"),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.buf = b""
        track(psutil.Process(self.pid))
        _live.append(self)
        self.expect("imported", a.start_timeout)

    def expect(self, event, timeout):
        deadline = time.perf_counter() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"ipyparallel: no {event!r} in {timeout}s\n{self.log_tail()}")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"ipyparallel helper exited ({self.proc.wait(5)}):\n{self.log_tail()}")
                self.buf += chunk
        ln, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(ln)
        if msg.get("event") != event:
            raise RuntimeError(f"ipyparallel: expected {event!r}, got {msg}\n{self.log_tail()}")
        return msg

    def tell(self, word):
        self.proc.stdin.write(word.encode() + b"\n")
        self.proc.stdin.flush()

    def log_tail(self, n=3000):
        try:
            return self.logpath.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def start(self):
        self.tell("go")
        r = self.expect("ready", self.a.start_timeout + 30)
        track_tree(self.pid)
        return r

    def stop(self, timeout=60.0, quiet=False):
        if self.proc is None:
            return 0.0, 0
        pids = {self.pid} | {p.pid for p in track_tree(self.pid)}
        said = {}

        def ask():
            self.tell("stop")
            said.update(self.expect("stopped", timeout))

        result = stop_tree(self, pids, ask, "stop_cluster_sync", timeout, quiet)
        self.proc.stdout.close()
        self.proc.stdin.close()
        self.proc = None
        return result


# ---------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------

def reach_root(hosts):
    """Which hosts can open a TCP connection to the root namespace (where a controller
    runs): a listener on 0.0.0.0, a connect to CONTROLLER_LOCATION from each host."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    ok = {}
    try:
        for name in hosts.names:
            probe = f"import socket; socket.create_connection(('{CONTROLLER_LOCATION}', {port}), timeout=2).close()"
            r = hosts.run(name, [testhosts.SYSTEM_PYTHON, "-c", probe], timeout=30)
            ok[name] = r.returncode == 0
            line("reach_root", host=name, to=f"{CONTROLLER_LOCATION}:{port}", ok=int(ok[name]))
    finally:
        srv.close()
    return ok


def warm_hosts(hosts):
    """Import ipykernel and ipyparallel's engine once per host (the page cache is shared:
    neither system pays the first, cold import in its timed start)."""
    for name in hosts.names:
        r = hosts.run(name, [VENV_PY, "-c", "import ipykernel.kernelapp, ipyparallel.engine.app"], timeout=120)
        if r.returncode:
            raise RuntimeError(f"{name}: warm-up import failed: {r.stderr.strip()[-500:]}")


def px_start(a, tmp, env, spec, hosts, profile, tag):
    """A fresh pxkernel; times `%engines start --profile PROFILE`; stops it. Returns
    (cell ms, foreign_cores, stop ms, killed, host procs left)."""
    k = start_pxkernel(a, tmp, env, spec, tag)
    try:
        noise = Noise()
        ms, said = start_engines(a, k, profile)
        fc = noise.foreign_cores()
    finally:
        dt, killed = k.stop(timeout=30)
    idle_s, left = clear_hosts(hosts, f"pxkernel {tag}", a.clear_timeout)
    return ms, fc, dt * 1e3, killed, idle_s, left, said


def has_profiles(a, tmp, env, spec):
    """Whether this pxkernel knows cluster profiles (`%engines profiles`)."""
    k = start_pxkernel(a, tmp, env, spec, "probe")
    try:
        return k.execute("%engines profiles", a.cell_timeout, allow_error=True).status == "ok"
    finally:
        k.stop(timeout=30)


def start_engines(a, k, profile):
    """Start the profile's 16 engines in pxkernel k: `%engines start --profile NAME`, or,
    for a pxkernel without profiles, one `%engines start --ssh HOST -n 4 --python PY`
    cell per host, one after the other. Returns (ms: the cell, or the cells' sum, what
    pxkernel said)."""
    if a.profiles:
        r = k.execute(f"%engines start --profile {profile}", a.start_timeout)
        if f"Started {N} engines of profile {profile}" not in r.stdout():
            raise RuntimeError(f"pxkernel: %engines start --profile {profile} said {r.text()!r}")
        return r.t * 1e3, r.stdout().strip().splitlines()[-1]
    ms, said = 0.0, []
    for h in PROFILES[profile]:
        n = N // len(PROFILES[profile])
        r = k.execute(f"%engines start --ssh {h} -n {n} --python {VENV_PY}", a.start_timeout)
        if f"Started {n} " not in r.stdout():
            raise RuntimeError(f"pxkernel: %engines start --ssh {h} -n {n} said {r.text()!r}")
        ms += r.t * 1e3
        said.append(r.stdout().strip().splitlines()[-1])
    return ms, " | ".join(said)


def ipp_start(a, tmp, env, hosts, tag):
    c = IppCluster(a, tmp, env, tag, {h: N // len(FAIR_HOSTS) for h in FAIR_HOSTS})
    try:
        noise = Noise()
        r = c.start()
        fc = noise.foreign_cores()
        if r["engines"] != N:
            raise RuntimeError(f"ipyparallel: {r['engines']} engines registered, not {N}")
    finally:
        dt, killed = c.stop()
    idle_s, left = clear_hosts(hosts, f"ipyparallel {tag}", a.clear_timeout)
    return r, fc, dt * 1e3, killed, idle_s, left


def part_start(a, tmp, env, spec, hosts, results):
    warm_hosts(hosts)
    layout = ",".join(FAIR_HOSTS)
    for rep in range(a.starts):
        order = ("pxkernel", "ipyparallel") if rep % 2 == 0 else ("ipyparallel", "pxkernel")
        for s in order:
            if s == "pxkernel":
                ms, fc, stop_ms, killed, idle_s, left, said = px_start(a, tmp, env, spec, hosts, "bench-fair",
                                                                       f"start{rep}-px")
                line("ssh_start_ms", system=s, n=N, layout=layout, rep=rep, ms=round(ms, 1),
                     what=a.px_start_what, foreign_cores=fc)
                log(f"pxkernel said: {said}")
            else:
                r, fc, stop_ms, killed, idle_s, left = ipp_start(a, tmp, env, hosts, f"start{rep}")
                ms = r["ms"]
                line("ssh_start_ms", system=s, n=N, layout=layout, rep=rep, ms=round(ms, 1),
                     launch_ms=round(r["launch_ms"], 1), what="start_cluster_to_wait_for_engines",
                     foreign_cores=fc)
            results.setdefault(("start", s), []).append(ms)
            line("ssh_stop_ms", system=s, rep=rep, ms=round(stop_ms, 1), killed_after_stop=killed,
                 hosts_idle_s=round(idle_s, 2), host_procs_left=left)
            time.sleep(a.settle_s)
    med = {s: statistics.median(results[("start", s)]) for s in ("pxkernel", "ipyparallel")}
    line("ssh_start_ratio", n=N, layout=layout, reps=a.starts, pxkernel_median=round(med["pxkernel"], 1),
         ipyparallel_median=round(med["ipyparallel"], 1), px_over_ipp=ratio(med["pxkernel"], med["ipyparallel"]))


def hostnames(k):
    """{hostname: engines} from `%px print(socket.gethostname())`."""
    r = k.execute("%px import socket; print(socket.gethostname())", 120)
    names = collections.Counter()
    for _, text in r.streams:
        for ln in text.splitlines():
            if (m := TAGGED.match(ln)) and m.group(1) == "stdout":
                names[m.group(3).strip()] += 1
    return dict(names)


def part_px(a, tmp, env, spec, results):
    """Two pxkernels: 16 engines on pxa, pxb, pxc, pxd (profile bench-all) and 16 local
    engines of the same interpreter; and under them the floor: px_floor's bare client on
    16 engines of the same hosts reached through Unix-socket forwards on ssh masters of
    the bench's own (bench/ssh_floor.py), and on 16 local engines. `%px pass` on all
    four interleaved. Returns the SSH kernel (for the print part); the rest is stopped
    here."""
    ssh = start_pxkernel(a, tmp, env, spec, "px-ssh")
    noise = Noise()
    ms, said = start_engines(a, ssh, "bench-all")
    line("ssh_start_ms", system="pxkernel", n=N, layout=",".join(ALL_HOSTS), rep=0, ms=round(ms, 1),
         what=a.px_start_what, foreign_cores=noise.foreign_cores())
    log(f"pxkernel said: {said}")
    results["start_all"] = ms
    local = start_pxkernel(a, tmp, env, spec, "px-local")
    noise = Noise()
    r = local.execute(f"%engines start -n {N} --kernel hostpy", a.start_timeout)
    if f"Started {N} " not in r.stdout():
        raise RuntimeError(f"pxkernel: %engines start -n {N} --kernel hostpy said {r.text()!r}")
    line("local_start_ms", system="pxkernel", n=N, kernel="hostpy", ms=round(r.t * 1e3, 1),
         what="engines_start_cell", foreign_cores=noise.foreign_cores())
    where = hostnames(ssh)
    line("engines_on", kernel="px-ssh", **{h.replace("-", "_"): n for h, n in sorted(where.items())})
    if sorted(where) != list(ALL_HOSTS) or set(where.values()) != {N // len(ALL_HOSTS)}:
        raise RuntimeError(f"the SSH engines run on {where}, not {N // 4} on each of {ALL_HOSTS}")
    line("engines_on", kernel="px-local", **{h.replace("-", "_"): n for h, n in sorted(hostnames(local).items())})
    floor_engines = FloorEngines(ALL_HOSTS, N // len(ALL_HOSTS), VENV_PY, tmp)
    floors = {}
    try:
        files = floor_engines.start()
        floors["floor_ssh"] = Floor(a.floor, N, env, str(tmp), "floor-ssh", a.cell_timeout,
                                    extra=[x for f in files for x in ("--connect", f)])
        floors["floor_local"] = Floor(a.floor, N, env, str(tmp), "floor-local", a.cell_timeout,
                                      extra=["--kernel", "hostpy-nohist"])
        for f in floors.values():
            f.start(a.start_timeout)
        # One `%px pass` each, in seconds: pxkernel timed through jupyter_client, the
        # floor by px_floor's client (its own timing of the fan-out).
        systems = {"ssh": lambda: ssh.execute("%px pass", a.cell_timeout).t,
                   "local": lambda: local.execute("%px pass", a.cell_timeout).t}
        for name, f in floors.items():
            systems[name] = lambda f=f: _floor_pass(f)
        for run in systems.values():
            for _ in range(a.warmup):
                run()
        samples = {s: [] for s in systems}
        noise = Noise()
        order = rotations(tuple(systems))
        for _ in range(a.reps):
            for s in next(order):
                samples[s].append(systems[s]() * 1e3)
        fc = noise.foreign_cores()
        for s in systems:
            line("px_roundtrip_ms", engines=s, n=N, cell="pass", **stats(samples[s]), foreign_cores=fc)
        med = {s: statistics.median(v) for s, v in samples.items()}
        paired = [x / y for x, y in zip(samples["ssh"], samples["local"])]
        line("px_ratio", n=N, cell="pass", ssh_over_local=ratio(med["ssh"], med["local"]),
             paired_ssh_over_local=round(statistics.median(paired), 3),
             p90_ssh_over_local=ratio(pct(samples["ssh"], 90), pct(samples["local"], 90)),
             min_ssh_over_local=ratio(min(samples["ssh"]), min(samples["local"])),
             floor_ssh_over_local=ratio(med["floor_ssh"], med["floor_local"]),
             ssh_over_floor_ssh=ratio(med["ssh"], med["floor_ssh"]),
             local_over_floor_local=ratio(med["local"], med["floor_local"]), foreign_cores=fc)
        results["px"] = med
    finally:
        for f in floors.values():
            f.stop(timeout=30, quiet=True)
        floor_engines.stop()
    dt, killed = local.stop(timeout=30)
    line("px_stop_ms", engines="local", ms=round(dt * 1e3, 1), killed_after_stop=killed)
    return ssh


def rotations(items):
    """The systems in turn, forever, each order a rotation of the last: every system is
    first, second, ... equally often, and none runs twice in a row (px_bench's orders
    searches the permutations, which takes forever for four)."""
    n = len(items)
    return itertools.cycle([tuple(items[(k + i) % n] for i in range(n)) for k in range(n)])


def _floor_pass(f):
    secs, _, complete = f.run("pass")
    if not complete:
        raise RuntimeError(f"floor {f.tag}: `pass` incomplete\n{f.log_tail()}")
    return secs


def part_print(a, k, results):
    """R runs of `%px print(i)`: every engine must print i, tagged, by the cell's idle."""
    r = k.execute("%px print(-1)", a.cell_timeout)
    ids = sorted({int(m.group(2)) for _, t in r.streams for ln in t.splitlines() if (m := TAGGED.match(ln))})
    if len(ids) != N:
        raise RuntimeError(f"%px print(-1) answered from engines {ids}, not {N}")
    k.stray.clear()
    got = dup = other = 0
    bad_ids, times = [], []
    noise = Noise()
    for i in range(a.print_runs):
        r = k.execute(f"%px print({i})", a.cell_timeout)
        times.append(r.t * 1e3)
        seen = collections.Counter()
        for name, text in r.streams:
            for ln in text.splitlines():
                m = TAGGED.match(ln)
                if m and m.group(1) == "stdout" and m.group(3) == str(i) and int(m.group(2)) in ids:
                    seen[int(m.group(2))] += 1
                else:
                    other += 1
        got += len(seen)
        dup += sum(c - 1 for c in seen.values())
        if len(seen) != N:
            bad_ids.append(r.msg_id)
    fc = noise.foreign_cores()
    expected = N * a.print_runs
    late = k.late_outputs(bad_ids, 2.0) if bad_ids else 0
    line("px_print_lines", engines="ssh", n=N, cell="print(i)", runs=a.print_runs, expected_lines=expected,
         received_lines=got, lost=expected - got, runs_with_loss=len(bad_ids), late_output_msgs=late,
         duplicate_lines=dup, other_lines=other, median_ms=round(statistics.median(times), 3),
         p90_ms=round(pct(times, 90), 3), foreign_cores=fc)
    results["print"] = (expected - got, expected, late)


# -- tunnel ------------------------------------------------------------------

BANNER_SERVER = r'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
token = sys.argv[2].encode() + b"\n"
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(token)
    except OSError:
        pass
    c.close()
'''


class BannerServer:
    """A TCP server on 127.0.0.1:PORT inside a host's network namespace (as root): each
    connection gets one line, unique to this run, then is closed."""

    kind = "banner server"

    def __init__(self, hosts, name):
        self.port = 18000 + os.getpid() % 1000
        self.token = f"ssh_bench {name} {uuid.uuid4().hex}"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", hosts[name].netns, testhosts.SYSTEM_PYTHON, "-u", "-c", BANNER_SERVER,
             str(self.port), self.token],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid   # `ip netns exec` execs python
        track(psutil.Process(self.pid))
        _live.append(self)
        if not select.select([self.proc.stdout], [], [], 20)[0] or self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"banner server in {name}'s netns did not start")

    def stop(self, timeout=5.0, quiet=False):
        if self.proc is None:
            return 0.0, 0
        return stop_tree(self, {self.pid}, self.proc.kill, "SIGKILL", timeout, quiet)


def reads(port, token, timeout=0.3):
    """Whether a connect to 127.0.0.1:port gets the server's line."""
    want = token.encode() + b"\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                buf += chunk
            return buf == want
    except OSError:
        return False


def sshd_greets(address, timeout=0.3):
    try:
        with socket.create_connection((address, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class Poller(threading.Thread):
    """Calls ok() every `interval` s until it is true or `limit` s passed; `.t` is the
    perf_counter time of the first success (None if none)."""

    def __init__(self, ok, interval, limit):
        super().__init__(daemon=True)
        self.ok, self.interval, self.limit = ok, interval, limit
        self.t = None
        self.halt = threading.Event()

    def run(self):
        t0 = time.perf_counter()
        nxt = t0
        while not self.halt.is_set() and time.perf_counter() - t0 < self.limit:
            if self.ok():
                self.t = time.perf_counter()
                return
            nxt += self.interval
            self.halt.wait(max(0.0, nxt - time.perf_counter()))


def drop_and_return(a, hosts, name, port, token, back_limit):
    """Stop NAME's sshd and kill its user's sessions (the master drops), wait a.down_s,
    start sshd again. Returns (dropped, ms from sshd greeting again until the forward
    reads again, or None within back_limit s)."""
    addr = hosts[name].address
    hosts.stop_sshd(name)
    try:
        hosts.kill_user_processes(name)
        t_down = time.perf_counter()
        dropped = False
        while time.perf_counter() - t_down < a.down_s:
            dropped = dropped or not reads(port, token)
            time.sleep(0.05)
        sshd = Poller(lambda: sshd_greets(addr), 0.02, 30)
        fwd = Poller(lambda: reads(port, token), 0.02, 30 + back_limit)
        sshd.start()
        fwd.start()
    finally:
        hosts.start_sshd(name)     # returns once an ssh login works
    sshd.join()
    deadline = (sshd.t or time.perf_counter()) + back_limit
    while fwd.is_alive() and time.perf_counter() < deadline:
        fwd.join(0.05)
    fwd.halt.set()
    fwd.join()
    if sshd.t is None:
        raise RuntimeError(f"{name}'s sshd never greeted after start_sshd")
    back = (fwd.t - sshd.t) * 1e3 if fwd.t is not None and fwd.t - sshd.t <= back_limit else None
    return dropped, back


def part_tunnel(a, tmp, env, spec, hosts, results):
    srv = BannerServer(hosts, "pxb")
    try:
        k = start_pxkernel(a, tmp, env, spec, "tunnel")
        try:
            r = k.execute(f"%ssh_tunnel -L 0:127.0.0.1:{srv.port} pxb", a.start_timeout)
            m = FORWARD.search(r.stdout())
            if not m:
                raise RuntimeError(f"%ssh_tunnel said {r.text()!r}")
            port = int(m.group(2))
            deadline = time.perf_counter() + 10
            while not reads(port, srv.token):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the forward 127.0.0.1:{port} does not read {srv.token!r}")
                time.sleep(0.05)
            backs = []
            for rep in range(a.tunnel_reps):
                dropped, back = drop_and_return(a, hosts, "pxb", port, srv.token, a.tunnel_limit)
                said = [ln for _, t in k.execute("pass", a.cell_timeout).streams for ln in t.splitlines()
                        if ln.startswith(NOTICE)]
                line("tunnel_back_ms", system="pxkernel", rep=rep, down_s=a.down_s, dropped=int(dropped),
                     ms=round(back, 1) if back is not None else "none", notices=len(said))
                for s in said:
                    log(f"pxkernel said: {s}")
                backs.append(back)
                time.sleep(a.settle_s)
            came = [b for b in backs if b is not None]
            line("tunnel_back", system="pxkernel", reps=len(backs), came_back=len(came),
                 median_ms=round(statistics.median(came), 1) if came else "none",
                 max_ms=round(max(came), 1) if came else "none")
            results["tunnel"] = backs
        finally:
            k.stop(timeout=30)
        clear_hosts(hosts, "pxkernel tunnel", a.clear_timeout)

        # -- the peer: jupyter_client's openssh_tunnel ---------------------------------
        # Its command line, as openssh_tunnel builds it for a key login (no master
        # to reuse: `-O check` fails), run without its pexpect pty: on this machine
        # the forward of an `ssh -f` left on a pty that pexpect closed does not read.
        lport = free_port()
        # (Its output goes to a file: the ssh left in the background holds it open.)
        with open(tmp / "openssh_tunnel.err", "w+") as err:
            p = subprocess.run(["ssh", "-f", "-S", "none", "-L", f"127.0.0.1:{lport}:127.0.0.1:{srv.port}",
                                "pxb", "sleep", "600"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            p.stderr = err.read()
        forwarders = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if proc.info["cmdline"] and f"127.0.0.1:{lport}:127.0.0.1:{srv.port}" in " ".join(proc.info["cmdline"]):
                    track(proc)
                    forwarders.append(proc)
            except psutil.Error:
                pass
        if p.returncode:
            raise RuntimeError(f"openssh_tunnel failed ({p.returncode}): {p.stderr.strip()[-1000:]}")
        deadline = time.perf_counter() + 10
        while not reads(lport, srv.token):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"openssh_tunnel's forward 127.0.0.1:{lport} does not read")
            time.sleep(0.05)
        dropped, back = drop_and_return(a, hosts, "pxb", lport, srv.token, a.peer_limit)
        alive = sum(1 for f in forwarders if f.is_running() and f.status() != psutil.STATUS_ZOMBIE)
        line("tunnel_back", system="jupyter_client", what="openssh_tunnel", reps=1, dropped=int(dropped),
             came_back=int(back is not None), within_s=a.peer_limit,
             ms=round(back, 1) if back is not None else "none", ssh_procs_alive_after=alive)
        results["peer_tunnel"] = back
        kill_by_pid([(f, f.create_time()) for f in forwarders if f.is_running()])
    finally:
        srv.stop()


# ---------------------------------------------------------------------------
# summary and main
# ---------------------------------------------------------------------------

def summary(a, results, failed):
    def verdict(ok):
        return "PASS" if ok else "MISS"

    def p(text):
        print("#   " + text, flush=True)

    print("#", flush=True)
    print("# summary (goals: see bench/README.md); times in ms, medians", flush=True)
    if ("start", "pxkernel") in results and ("start", "ipyparallel") in results:
        sp = statistics.median(results[("start", "pxkernel")])
        si = statistics.median(results[("start", "ipyparallel")])
        r = sp / si
        p(f"start {N} engines on {', '.join(FAIR_HOSTS)} (4 each, median of {a.starts}): "
          f"pxkernel {sp:.0f}  ipyparallel {si:.0f} | px/ipp {r:.3f}x goal <= {GOALS['start_over_ipp']}x "
          f"{verdict(r <= GOALS['start_over_ipp'])}")
    if "start_all" in results:
        p(f"start {N} engines on {', '.join(ALL_HOSTS)} (pxc through pxa), pxkernel alone: "
          f"{results['start_all']:.0f} (ipyparallel's engines on pxc cannot reach its controller)")
    if "px" in results:
        m = results["px"]
        r = m["ssh"] / m["local"]
        fr = m["floor_ssh"] / m["floor_local"]
        p(f"%px pass on {N} engines: SSH {m['ssh']:.2f}  local {m['local']:.2f} | ssh/local {r:.3f}x "
          f"goal <= {GOALS['ssh_over_local']}x {verdict(r <= GOALS['ssh_over_local'])}")
        p(f"  floor (px_floor's bare client, same hosts, forwards on ssh masters of its own): "
          f"SSH {m['floor_ssh']:.2f}  local {m['floor_local']:.2f} | ssh/local {fr:.3f}x; "
          f"pxkernel over the floor: SSH {m['ssh'] / m['floor_ssh']:.3f}x  "
          f"local {m['local'] / m['floor_local']:.3f}x")
    if "print" in results:
        lost, expected, late = results["print"]
        p(f"%px print(i) x {a.print_runs} on {N} SSH engines: {lost} of {expected} lines lost at idle "
          f"({late} output messages came late) goal 0 {verdict(lost == 0)}")
    if "tunnel" in results:
        backs = results["tunnel"]
        came = [b for b in backs if b is not None]
        if came:
            med, mx = statistics.median(came), max(came)
            ok = len(came) == len(backs) and mx <= GOALS["tunnel_back_ms"]
            p(f"tunnel back after sshd returned ({len(came)} of {len(backs)} came back): median {med:.0f}  "
              f"max {mx:.0f} goal <= {GOALS['tunnel_back_ms']:.0f} {verdict(ok)}")
        else:
            p(f"tunnel back after sshd returned: none of {len(backs)} came back within "
              f"{a.tunnel_limit} s  MISS")
    if "peer_tunnel" in results:
        b = results["peer_tunnel"]
        p("jupyter_client openssh_tunnel after the same drop: " +
          (f"back after {b:.0f}" if b is not None else f"not back within {a.peer_limit} s (it does not reconnect)"))
    if failed:
        p(f"FAILED: {failed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pxkernel", default=str(REPO / "target" / "release" / "pxkernel"),
                    help="pxkernel binary (default: target/release/pxkernel of this repo); copied to the temp dir")
    ap.add_argument("--floor", default=str(REPO / "target" / "release" / "examples" / "px_floor"),
                    help="px_floor binary, the bare client of the px part's floor (default: this repo's; "
                         "build: cargo build --release -p pxkernel-kernel --example px_floor)")
    ap.add_argument("--python", default=sys.executable,
                    help="Python of the home kernel, ipyparallel's controller and client (default: this one)")
    ap.add_argument("--only", help=f"comma-separated parts to run: {','.join(PARTS)} (default: all)")
    ap.add_argument("--starts", type=int, help="timed starts per system (default 3, quick 1)")
    ap.add_argument("--reps", type=int, help="timed `%%px pass` cells per kernel (default 200, quick 20)")
    ap.add_argument("--warmup", type=int, help="untimed `%%px pass` cells per kernel first (default 10, quick 3)")
    ap.add_argument("--print-runs", type=int, help="`%%px print(i)` runs (default 1000, quick 100)")
    ap.add_argument("--tunnel-reps", type=int, help="sshd drops for pxkernel's tunnel (default 5, quick 2)")
    ap.add_argument("--down-s", type=float, default=2.0, help="seconds sshd stays down (default 2)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run of about 3 min")
    ap.add_argument("--timeout", type=float, help="hard limit for the whole run, s (default 900, quick 480)")
    ap.add_argument("--cell-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-timeout", type=float, default=180.0, help=argparse.SUPPRESS)
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (kernel and ipyparallel logs)")
    a = ap.parse_args()
    q = a.quick
    a.parts = [p.strip() for p in (a.only or ",".join(PARTS)).split(",") if p.strip()]
    if bad := [p for p in a.parts if p not in PARTS]:
        sys.exit(f"ssh_bench: unknown part(s) {bad}; parts are {', '.join(PARTS)}")
    if "print" in a.parts and "px" not in a.parts:
        a.parts.append("px")   # print runs on the px part's SSH engines
    a.starts = max(1, a.starts if a.starts is not None else (1 if q else 3))
    a.reps = a.reps or (20 if q else 200)
    a.warmup = a.warmup if a.warmup is not None else (3 if q else 10)
    a.print_runs = a.print_runs or (100 if q else 1000)
    a.tunnel_reps = a.tunnel_reps or (2 if q else 5)
    a.timeout = a.timeout or (480 if q else 900)
    a.tunnel_limit, a.peer_limit = 15.0, 10.0
    a.settle_s = 0.5
    a.clear_timeout = 15.0

    exe = os.path.abspath(a.pxkernel)
    if not os.access(exe, os.X_OK):
        sys.exit(f"ssh_bench: no pxkernel binary at {exe} (build: cargo build --release)")
    if "px" in a.parts and not os.access(a.floor, os.X_OK):
        sys.exit(f"ssh_bench: no px_floor binary at {a.floor} "
                 "(build: cargo build --release -p pxkernel-kernel --example px_floor)")
    if reason := testhosts.unavailable_reason():
        sys.exit(f"ssh_bench: {reason}")
    try:
        ipp_version = subprocess.run([a.python, "-c", "import ipyparallel, pexpect; print(ipyparallel.__version__)"],
                                     capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        ipp_version = ""
    if not ipp_version:
        sys.exit(f"ssh_bench: {a.python} lacks ipyparallel or pexpect (pip install ipyparallel==9.2.0 pexpect)")
    if (owner := testhosts.lock_owner()) is not None:
        sys.exit(f"ssh_bench: the SSH test hosts are up already (from {owner.get('dir')}): "
                 "another run or test uses them; try again when they are down")

    install_cleanup("ssh_bench", a.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="pxk-sshb-", dir="/tmp"))
    hosts_dir = tempfile.mkdtemp(prefix="pxk-hosts-", dir="/tmp")
    hosts = None
    results = {}
    failed = None
    t_run = time.perf_counter()
    try:
        shutil.copy2(exe, tmp / "pxkernel")
        env, spec = setup(tmp, str(tmp / "pxkernel"), a.python)
        t0 = time.perf_counter()
        hosts = testhosts.up(hosts_dir)
        remote = hosts.run("pxa", [VENV_PY, "-c", "import ipykernel, ipyparallel; "
                                   "print(ipykernel.__version__, ipyparallel.__version__)"]).stdout.split()
        line("env", python=platform.python_version(), ipykernel=__import__("ipykernel").__version__,
             ipyparallel=ipp_version, jupyter_client=__import__("jupyter_client").__version__,
             pyzmq=zmq.__version__, pxkernel=exe, pxkernel_sha256=sha256_12(exe),
             ssh=subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip().split(",")[0],
             remote_python=VENV_PY, remote_ipykernel=remote[0] if remote else "?",
             remote_ipyparallel=remote[1] if len(remote) > 1 else "?", cpus=os.cpu_count(), quick=int(q),
             parts=",".join(a.parts), hosts_up_s=round(time.perf_counter() - t0, 1),
             loadavg=open("/proc/loadavg").read().split()[0])
        a.profiles = has_profiles(a, tmp, env, spec)
        a.px_start_what = "engines_start_profile_cell" if a.profiles else "sum_of_4_engines_start_ssh_cells"
        if not a.profiles:
            log("this pxkernel has no cluster profiles (%engines profiles is unknown): each host's "
                "engines are started by a cell of their own, one after the other")
        reach = reach_root(hosts)
        if not all(reach[h] for h in ("pxa", "pxb", "pxd")):
            raise RuntimeError(f"pxa, pxb and pxd must reach {CONTROLLER_LOCATION} for ipyparallel: {reach}")
        if "start" in a.parts:
            part_start(a, tmp, env, spec, hosts, results)
        if "px" in a.parts:
            ssh = part_px(a, tmp, env, spec, results)
            try:
                if "print" in a.parts:
                    part_print(a, ssh, results)
            finally:
                dt, killed = ssh.stop(timeout=30)
                line("px_stop_ms", engines="ssh", ms=round(dt * 1e3, 1), killed_after_stop=killed)
                idle_s, left = clear_hosts(hosts, "pxkernel px-ssh", a.clear_timeout)
                line("ssh_stop_hosts", kernel="px-ssh", hosts_idle_s=round(idle_s, 2), host_procs_left=left)
        if "tunnel" in a.parts:
            part_tunnel(a, tmp, env, spec, hosts, results)
    except BaseException as e:  # report, clean up, exit non-zero
        failed = f"{type(e).__name__}: {e}"
        log(failed)
    finally:
        cleanup()
        if hosts is not None:  # a failed up() has undone itself
            try:
                testhosts.down(hosts_dir)
            except Exception as e:  # noqa: BLE001
                log(f"testhosts down {hosts_dir}: {e}")
                failed = failed or f"hosts down: {e}"
        shutil.rmtree(hosts_dir, ignore_errors=True)
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    line("run", seconds=round(time.perf_counter() - t_run, 1), failed=int(failed is not None))
    summary(a, results, failed)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
