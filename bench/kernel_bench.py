#!/usr/bin/env python3
"""Plain-cell benchmarks: pxkernel vs. the ipykernel it proxies, in one run.

Figures (one `name key=value ...` line each, see bench/README.md):

  plain_roundtrip_ms       execute_request -> execute_reply + iopub idle, per kernel and cell
  plain_overhead_ms        pxkernel - ipykernel (difference of medians, paired median, ratio)
  pxkernel_cpu_ms_per_cell CPU of the pxkernel process itself per cell (+ home, ipykernel)
  pxkernel_idle_cpu_ms_per_s   CPU pxkernel burns while nothing happens
  startup_ms               spawn -> kernel_info_reply
  first_cell_ms            spawn -> first `pass` cell done (pxkernel: includes its home's start)
  shutdown_ms              shutdown_request -> process (and all its descendants) gone
  mem_mib                  RSS / PSS / USS / peak RSS of pxkernel, its home, plain ipykernel
  pxkernel_soak            many more cells through pxkernel alone: RSS growth, CPU per cell

Both kernels run at the same time and are driven alternately (ABBA order per
rep), so machine noise hits both alike.  `foreign_cores` on a line is CPU time
used by processes that are not this script or its descendants, per wall second,
while that figure was measured (0 = quiet machine).

Needs only jupyter_client, ipykernel, psutil (and pyzmq, which they pull in).
Every process it starts is stopped and reaped; stragglers are killed by PID
(after checking the PID still names the same process), never by name.
"""

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session

from benchlib import (CpuMeter, Noise, _tracked, kill_by_pid, line, log, mem_of, pct,
                      stats, track, track_tree)

REPO = Path(__file__).resolve().parent.parent
GOALS = {
    "overhead_ms": 0.3,      # pxkernel - ipykernel, median round trip of a plain cell
    "cpu_ms_per_cell": 0.2,  # pxkernel's own CPU per plain cell
    "startup_ms": 50.0,      # spawn -> kernel_info_reply, median
    "rss_mib": 15.0,         # pxkernel's RSS with the home kernel running
}
CELLS = (("pass", "pass"), ("print100", "print('x'*100)"))
PRINT100_OUT = "x" * 100 + "\n"


# ---------------------------------------------------------------------------
# process hygiene
# ---------------------------------------------------------------------------

_kernels = []      # live Kernel objects
_ctx = None


def cleanup():
    global _ctx
    signal.alarm(0)
    for k in list(_kernels):
        k.stop(quiet=True)
    n = kill_by_pid(list(_tracked.values()))
    if n:
        log(f"cleanup: stopped {n} leftover process(es) by PID")
    _tracked.clear()
    if _ctx is not None:
        _ctx.destroy(linger=0)
        _ctx = None


def _on_signal(signum, frame):
    raise SystemExit(f"kernel_bench: got signal {signum}, cleaning up")


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------

class Kernel:
    """One kernel process started from a kernelspec, with a notebook-like client.

    The client's sockets are plain zmq sockets carrying jupyter_client Session
    messages (what BlockingKernelClient does, without its machinery)."""

    def __init__(self, kind, spec, env, workdir, tag):
        self.kind = kind
        self.spec = spec
        self.env = env
        self.workdir = workdir
        self.tag = tag
        self.proc = None
        self.iopub = self.control = None
        self.cells = 0

    # -- life cycle -------------------------------------------------------
    def spawn(self):
        """Write a connection file, connect shell, start the process. Returns t0."""
        rt = Path(self.env["JUPYTER_RUNTIME_DIR"])
        cf, info = write_connection_file(
            fname=str(rt / f"kernel-bench-{self.tag}.json"), ip="127.0.0.1",
            key=uuid.uuid4().hex.encode(), transport="tcp",
            signature_scheme="hmac-sha256", kernel_name=self.kind)
        self.cf = cf
        self.session = Session(key=info["key"] if isinstance(info["key"], bytes) else info["key"].encode(),
                               signature_scheme="hmac-sha256", username="bench")
        self.url = lambda port: f"tcp://127.0.0.1:{port}"
        self.ports = info
        self.shell = self._socket(zmq.DEALER, info["shell_port"], identity=True)
        argv = [a.replace("{connection_file}", cf).replace("{resource_dir}", self.spec["dir"])
                for a in self.spec["argv"]]
        env = dict(self.env)
        env.update({k: os.path.expandvars(v) for k, v in self.spec.get("env", {}).items()})
        env["JPY_PARENT_PID"] = str(os.getpid())
        self.logpath = Path(self.workdir) / f"{self.tag}.log"
        logf = open(self.logpath, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        self.pid = self.proc.pid
        track(psutil.Process(self.pid))
        _kernels.append(self)
        return t0

    def _socket(self, kind, port, identity=False):
        s = _ctx.socket(kind)
        s.linger = 0
        # Retry a refused connect every 2 ms, not the 100 ms default, so that the
        # start-up figure measures the kernel, not the client's retry timer.
        s.setsockopt(zmq.RECONNECT_IVL, 2)
        if identity:
            s.identity = self.session.bsession
        if kind == zmq.SUB:
            s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(self.url(port))
        return s

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, n=3000):
        try:
            return self.logpath.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def send(self, sock, msg_type, content):
        return self.session.send(sock, msg_type, content)["header"]["msg_id"]

    def recv(self, sock):
        _, frames = self.session.feed_identities(sock.recv_multipart())
        return self.session.deserialize(frames)

    def wait_kernel_info(self, timeout):
        """Send kernel_info_request (again every second) until a reply arrives; return its time."""
        ids = set()
        deadline = time.perf_counter() + timeout
        next_send = 0.0
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"{self.kind}: no kernel_info_reply in {timeout}s\n{self.log_tail()}")
            if now >= next_send:
                ids.add(self.send(self.shell, "kernel_info_request", {}))
                next_send = now + 1.0
            if self.shell.poll(20):
                t = time.perf_counter()
                m = self.recv(self.shell)
                if m["msg_type"] == "kernel_info_reply" and m["parent_header"].get("msg_id") in ids:
                    self.info = m["content"]
                    return t
            else:
                self._check_alive()

    def connect_iopub(self, timeout):
        """Connect iopub and wait until messages flow on it (kernel_info until one arrives)."""
        self.iopub = self._socket(zmq.SUB, self.ports["iopub_port"])
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.send(self.shell, "kernel_info_request", {})
            if self.iopub.poll(200):
                self.drain(settle=0.05)
                return
            self._check_alive()
        raise TimeoutError(f"{self.kind}: iopub silent for {timeout}s")

    def drain(self, settle=0.0):
        if settle:
            time.sleep(settle)
        for s in (self.shell, self.iopub):
            while s is not None and s.poll(0):
                s.recv_multipart()

    def start(self, timeout):
        self.spawn()
        self.wait_kernel_info(timeout)
        self.connect_iopub(timeout)

    # -- cells ------------------------------------------------------------
    def execute(self, code, timeout):
        """One notebook-style execute_request; seconds until reply AND idle, and stdout."""
        shell, iopub = self.shell, self.iopub
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        t_reply = t_idle = None
        status = None
        out = []
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        t0 = time.perf_counter()
        msg_id = self.send(shell, "execute_request", content)
        deadline = t0 + timeout
        while t_reply is None or t_idle is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._check_alive()
                raise TimeoutError(f"{self.kind}: cell {code!r} took over {timeout}s")
            events = dict(poller.poll(int(remaining * 1000) + 1))
            if iopub in events:
                while True:
                    try:
                        frames = iopub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.perf_counter()
                    _, f = self.session.feed_identities(frames)
                    m = self.session.deserialize(f)
                    if m["parent_header"].get("msg_id") != msg_id:
                        continue
                    mt = m["msg_type"]
                    if mt == "stream":
                        out.append(m["content"]["text"])
                    elif mt == "status" and m["content"]["execution_state"] == "idle":
                        t_idle = now - t0
            if shell in events:
                while True:
                    try:
                        frames = shell.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.perf_counter()
                    _, f = self.session.feed_identities(frames)
                    m = self.session.deserialize(f)
                    if m["parent_header"].get("msg_id") == msg_id:
                        t_reply = now - t0
                        status = m["content"]["status"]
        if status != "ok":
            raise RuntimeError(f"{self.kind}: cell {code!r} ended with status {status}")
        self.cells += 1
        return max(t_reply, t_idle), "".join(out)

    # -- the end ----------------------------------------------------------
    def descendants(self):
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def stop(self, timeout=10.0, quiet=False):
        """shutdown_request on control; wait for the process and every descendant to go.

        Returns (seconds until all gone, number of processes that had to be killed)."""
        if self.proc is None:
            return 0.0, 0
        procs = track_tree(self.pid)
        entries = [(p, _tracked[p.pid][1]) for p in procs if p.pid in _tracked]
        t0 = time.perf_counter()
        killed = 0
        try:
            if self.proc.poll() is None:
                if self.control is None:
                    self.control = self._socket(zmq.DEALER, self.ports["control_port"], identity=True)
                self.send(self.control, "shutdown_request", {"restart": False})
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            rest = [p for p, _ in entries if p.pid != self.pid]
            _, alive = psutil.wait_procs(rest, timeout=max(0.0, t0 + timeout - time.perf_counter()))
        except Exception as e:  # noqa: BLE001 - fall through to killing by PID
            if not quiet:
                log(f"{self.kind}: shutdown failed: {e}")
        dt = time.perf_counter() - t0
        killed = 0
        if self.proc.poll() is None:
            self.proc.kill()
            killed += 1
        self.proc.wait()
        killed += kill_by_pid([(p, ct) for p, ct in entries if p.pid != self.pid])
        for s in (self.shell, self.iopub, self.control):
            if s is not None:
                s.close(linger=0)
        self.shell = self.iopub = self.control = None
        for p, _ in entries:
            _tracked.pop(p.pid, None)
        if self in _kernels:
            _kernels.remove(self)
        try:
            os.unlink(self.cf)
        except OSError:
            pass
        self.proc = None
        if killed and not quiet:
            log(f"{self.kind}: {killed} process(es) did not exit after shutdown_request; killed by PID")
        return dt, killed


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def setup(tmp, pxkernel, python):
    """A python3 kernelspec (this Python's ipykernel) and a pxkernel kernelspec whose
    home is that python3, both under TMP/share/jupyter; returns (env, specs)."""
    data = tmp / "share" / "jupyter"
    py_dir = data / "kernels" / "python3"
    py_dir.mkdir(parents=True)
    (py_dir / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "metadata": {"debugger": True},
    }))
    env = dict(os.environ)
    for var in ("PXKERNEL_LOG", "PXKERNEL_LOG_FILE", "PXKERNEL_HOME", "PXKERNEL_LANGUAGE_INFO"):
        env.pop(var, None)
    env.update(
        JUPYTER_PATH=str(data),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        IPYTHONDIR=str(tmp / "ipython"),
        PATH=os.path.dirname(python) + os.pathsep + env.get("PATH", ""),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    for d in ("runtime", "data", "config", "ipython", "work"):
        (tmp / d).mkdir(exist_ok=True)
    r = subprocess.run([pxkernel, "install", "--prefix", str(tmp)], env=env, cwd=str(tmp),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"pxkernel install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    if r.stderr.strip():
        log("pxkernel install:", r.stderr.strip())
    specs = {}
    for name in ("pxkernel", "python3"):
        d = data / "kernels" / name
        spec = json.loads((d / "kernel.json").read_text())
        spec["dir"] = str(d)
        specs[name] = spec
    return env, specs


def kernel_env(env, tmp, kind):
    """Each kernel gets its own IPYTHONDIR, so their history databases don't contend."""
    e = dict(env)
    e["IPYTHONDIR"] = str(tmp / "ipython" / kind)
    return e


# ---------------------------------------------------------------------------
# the benchmarks
# ---------------------------------------------------------------------------

def bench_roundtrip(a, tmp, env, specs, results):
    px = Kernel("pxkernel", specs["pxkernel"], kernel_env(env, tmp, "pxkernel"), str(tmp / "work"), "rt-pxkernel")
    ipk = Kernel("ipykernel", specs["python3"], kernel_env(env, tmp, "ipykernel"), str(tmp / "work"), "rt-ipykernel")
    px.start(a.start_timeout)
    ipk.start(a.start_timeout)
    # first cell through pxkernel waits for its home kernel
    px.execute("pass", a.start_timeout)
    ipk.execute("pass", a.start_timeout)
    desc = px.descendants()
    for p in desc:
        track(p)
    homes = [p for p in desc if p.ppid() == px.pid]
    if len(homes) != 1:
        log(f"expected one home kernel under pxkernel, found {[(p.pid, p.name()) for p in desc]}")
    home_pid = homes[0].pid if homes else None
    cell_to = a.cell_timeout
    line("env", python=platform.python_version(),
         ipykernel=__import__("ipykernel").__version__,
         jupyter_client=__import__("jupyter_client").__version__,
         pyzmq=zmq.__version__, libzmq=zmq.zmq_version(),
         pxkernel=px.info.get("implementation_version", "?"),
         binary=a.pxkernel_shown, cpus=os.cpu_count(), quick=int(a.quick))

    for _ in range(a.warmup):
        for k in (px, ipk):
            for _, code in CELLS:
                k.execute(code, cell_to)

    # idle CPU: what pxkernel burns while nothing happens
    meters = {"pxkernel": CpuMeter(px.pid), "home": CpuMeter(home_pid) if home_pid else None}
    t0 = time.perf_counter()
    time.sleep(a.idle_s)
    dt = time.perf_counter() - t0
    idle = {k: (round(m.stop()[0] * 1e3 / dt, 4) if m else "nan") for k, m in meters.items()}
    line("pxkernel_idle_cpu_ms_per_s", seconds=round(dt, 2), **idle)

    for label, code in CELLS:
        samples = {"pxkernel": [], "ipykernel": []}
        bad = {"pxkernel": 0, "ipykernel": 0}
        noise = Noise()
        cpu = {"pxkernel": CpuMeter(px.pid), "ipykernel": CpuMeter(ipk.pid)}
        if home_pid:
            cpu["home"] = CpuMeter(home_pid)
        for i in range(a.reps):
            order = (px, ipk) if i % 4 in (0, 3) else (ipk, px)   # ABBA
            for k in order:
                t, out = k.execute(code, cell_to)
                samples[k.kind].append(t * 1e3)
                if label == "print100" and out != PRINT100_OUT:
                    bad[k.kind] += 1
        fc = noise.foreign_cores()
        used = {k: m.stop() for k, m in cpu.items()}
        for kind in ("pxkernel", "ipykernel"):
            extra = {"bad_output": bad[kind]} if label == "print100" else {}
            line("plain_roundtrip_ms", kernel=kind, cell=label, **stats(samples[kind]), **extra,
                 foreign_cores=fc)
        sp, si = samples["pxkernel"], samples["ipykernel"]
        med_p, med_i = statistics.median(sp), statistics.median(si)
        paired = [x - y for x, y in zip(sp, si)]
        line("plain_overhead_ms", cell=label, reps=len(sp),
             median_diff=round(med_p - med_i, 3),
             paired_median_diff=round(statistics.median(paired), 3),
             p90_diff=round(pct(sp, 90) - pct(si, 90), 3),
             min_diff=round(min(sp) - min(si), 3),
             ratio=round(med_p / med_i, 3), foreign_cores=fc)
        per = {k: round(v[0] * 1e3 / a.reps, 4) for k, v in used.items()}
        line("pxkernel_cpu_ms_per_cell", cell=label, cells=a.reps,
             pxkernel=per["pxkernel"], home=per.get("home", "nan"), ipykernel=per["ipykernel"],
             pxkernel_ticks=round(used["pxkernel"][1] * 1e3 / a.reps, 4),
             source=used["pxkernel"][2], foreign_cores=fc)
        results[("rt", label)] = (med_p, med_i, pct(sp, 90), pct(si, 90))
        results[("cpu", label)] = per["pxkernel"]

    m = mem_of([px.pid])
    line("mem_mib", proc="pxkernel", cells=px.cells, **m, threads=psutil.Process(px.pid).num_threads())
    results["rss"] = (m["rss"], px.cells)
    if home_pid:
        line("mem_mib", proc="home_ipykernel", cells=px.cells, **mem_of([home_pid]))
    line("mem_mib", proc="ipykernel", cells=ipk.cells, **mem_of([ipk.pid]))
    dt, killed = ipk.stop()
    if killed:
        line("leftover_procs", phase="roundtrip", kernel=ipk.kind, n=killed)

    if a.soak:
        # Many more cells through pxkernel alone: does its memory settle?
        cells0, rss0 = px.cells, m["rss"]
        noise = Noise()
        cpu = CpuMeter(px.pid)
        t0 = time.perf_counter()
        for _ in range(a.soak):
            px.execute("pass", cell_to)
        dt = time.perf_counter() - t0
        fc = noise.foreign_cores()
        m = mem_of([px.pid])
        line("mem_mib", proc="pxkernel", cells=px.cells, **m, threads=psutil.Process(px.pid).num_threads())
        if home_pid:
            line("mem_mib", proc="home_ipykernel", cells=px.cells, **mem_of([home_pid]))
        line("pxkernel_soak", cells=a.soak, cell="pass",
             rss_growth_kib_per_1000_cells=round((m["rss"] - rss0) * 1024 * 1000 / (px.cells - cells0), 1),
             cpu_ms_per_cell=round(cpu.stop()[0] * 1e3 / a.soak, 4),
             roundtrip_mean_ms=round(dt * 1e3 / a.soak, 3), foreign_cores=fc)
        results["rss"] = (m["rss"], px.cells)
        results["rss_growth"] = (m["rss"] - rss0) * 1024 * 1000 / (px.cells - cells0)

    dt, killed = px.stop()
    if killed:
        line("leftover_procs", phase="roundtrip", kernel=px.kind, n=killed)


def bench_startup(a, tmp, env, specs, results):
    kinds = (("pxkernel", "pxkernel"), ("ipykernel", "python3"))
    data = {k: {"info": [], "first": [], "stop": [], "killed": 0} for k, _ in kinds}
    noise = Noise()
    n = 0
    for i in range(-a.startup_warmup, a.starts):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for kind, spec in order:
            n += 1
            k = Kernel(kind, specs[spec], kernel_env(env, tmp, f"start-{kind}"), str(tmp / "work"),
                       f"start-{kind}-{n}")
            t0 = k.spawn()
            t_info = k.wait_kernel_info(a.start_timeout)
            k.connect_iopub(a.start_timeout)
            k.execute("pass", a.start_timeout)
            t_first = time.perf_counter()
            track_tree(k.pid)
            dt_stop, killed = k.stop()
            if i >= 0:
                d = data[kind]
                d["info"].append((t_info - t0) * 1e3)
                d["first"].append((t_first - t0) * 1e3)
                d["stop"].append(dt_stop * 1e3)
                d["killed"] += killed
            time.sleep(0.2)  # let the machine settle between starts
    fc = noise.foreign_cores()
    for kind, _ in kinds:
        d = data[kind]
        line("startup_ms", kernel=kind, what="spawn_to_kernel_info_reply", **stats(d["info"], 1),
             foreign_cores=fc)
        line("first_cell_ms", kernel=kind, what="spawn_to_first_pass_done", **stats(d["first"], 1),
             foreign_cores=fc)
        line("shutdown_ms", kernel=kind, what="shutdown_request_to_all_procs_gone",
             **stats(d["stop"], 1), killed_after_shutdown=d["killed"], foreign_cores=fc)
        results[("startup", kind)] = (statistics.median(d["info"]), pct(d["info"], 90))


def summary(results, failed):
    def verdict(ok):
        return "PASS" if ok else "MISS"

    print("#", flush=True)
    print("# summary (goals: see bench/README.md)", flush=True)
    for label, _ in CELLS:
        if ("rt", label) in results:
            mp, mi, _, _ = results[("rt", label)]
            d = mp - mi
            g = GOALS["overhead_ms"]
            print(f"#   {label:8s} round trip   pxkernel {mp:7.3f} ms  ipykernel {mi:7.3f} ms  "
                  f"overhead {d:+.3f} ms ({mp / mi:.2f}x)  goal <= +{g} ms  {verdict(d <= g)}", flush=True)
    for label, _ in CELLS:
        if ("cpu", label) in results:
            c = results[("cpu", label)]
            g = GOALS["cpu_ms_per_cell"]
            print(f"#   {label:8s} pxkernel CPU {c:.4f} ms/cell  goal <= {g} ms  {verdict(c <= g)}", flush=True)
    if ("startup", "pxkernel") in results:
        mp, _ = results[("startup", "pxkernel")]
        mi = results.get(("startup", "ipykernel"), (float("nan"),))[0]
        g = GOALS["startup_ms"]
        print(f"#   start-up to kernel_info_reply: pxkernel {mp:.1f} ms  (ipykernel {mi:.1f} ms)  "
              f"goal <= {g:.0f} ms  {verdict(mp <= g)}", flush=True)
    if "rss" in results:
        r, cells = results["rss"]
        g = GOALS["rss_mib"]
        grow = ""
        if "rss_growth" in results:
            grow = f" (grew {results['rss_growth']:.0f} KiB per 1000 cells)"
        print(f"#   pxkernel RSS {r:.1f} MiB after {cells} cells{grow}  goal <= {g:.0f} MiB  "
              f"{verdict(r <= g)}", flush=True)
    if failed:
        print(f"#   FAILED: {failed}", flush=True)


def main():
    global _ctx
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pxkernel", default=str(REPO / "target" / "release" / "pxkernel"),
                    help="pxkernel binary (default: target/release/pxkernel of this repo)")
    ap.add_argument("--python", default=sys.executable,
                    help="Python whose ipykernel is the home kernel and the comparison (default: this one)")
    ap.add_argument("--reps", type=int, help="timed cells per kernel and cell type (default 500, quick 40)")
    ap.add_argument("--warmup", type=int, help="untimed cells per kernel first (default 30, quick 5)")
    ap.add_argument("--starts", type=int, help="timed starts per kernel (default 10, quick 2)")
    ap.add_argument("--soak", type=int, help="extra `pass` cells through pxkernel alone before its memory "
                    "is measured again (default 5000, quick 0)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run under 30 s")
    ap.add_argument("--only", choices=("roundtrip", "startup"), help="run one part only")
    ap.add_argument("--timeout", type=float, default=900, help="hard limit for the whole run, s (default 900)")
    ap.add_argument("--cell-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (kernel logs) for inspection")
    a = ap.parse_args()
    a.reps = a.reps or (40 if a.quick else 500)
    a.warmup = a.warmup if a.warmup is not None else (5 if a.quick else 30)
    a.starts = a.starts or (2 if a.quick else 10)
    a.soak = a.soak if a.soak is not None else (0 if a.quick else 5000)
    a.startup_warmup = 0 if a.quick else 1
    a.idle_s = 0.5 if a.quick else 3.0

    pxkernel = os.path.abspath(a.pxkernel)
    try:
        a.pxkernel_shown = os.path.relpath(pxkernel, REPO) if Path(pxkernel).is_relative_to(REPO) else pxkernel
    except ValueError:
        a.pxkernel_shown = pxkernel
    if not os.access(pxkernel, os.X_OK):
        sys.exit(f"kernel_bench: no pxkernel binary at {pxkernel} (build it: cargo build --release, "
                 f"or pass --pxkernel PATH)")

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_signal)
    signal.alarm(max(1, int(a.timeout)))
    _ctx = zmq.Context()
    tmp = Path(tempfile.mkdtemp(prefix="pxkernel-bench-"))
    results = {}
    failed = None
    try:
        env, specs = setup(tmp, pxkernel, a.python)
        if a.only in (None, "roundtrip"):
            bench_roundtrip(a, tmp, env, specs, results)
        if a.only in (None, "startup"):
            bench_startup(a, tmp, env, specs, results)
    except BaseException as e:  # report, clean up, exit non-zero
        failed = f"{type(e).__name__}: {e}"
        log(failed)
    finally:
        cleanup()
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    summary(results, failed)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
