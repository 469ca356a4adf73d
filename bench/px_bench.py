#!/usr/bin/env python3
"""%px benchmarks: pxkernel vs. ipyparallel vs. a floor, interleaved in one run.

For each N in --ns (default 1, 2, 4, 8, 16) three systems run side by side:

  pxkernel     a pxkernel (kernelspec from `pxkernel install --prefix TMP`),
               `%engines start -n N`, then `%px CODE` cells
  ipyparallel  a notebook ipykernel running `ipp.Cluster(n=N).start_and_connect_sync()`,
               then ipyparallel's `%px CODE` cells
  floor        `px_floor --serve` (kernel/examples/px_floor.rs): N ipykernels each
               sent the cell at once by a bare client, no kernel in between

Figures (one `name key=value ...` line each, see bench/README.md):

  px_start_ms          engines started until all answer (`%engines start -n N` cell,
                       `Cluster(n=N).start_and_connect_sync()` cell, floor launch)
  px_roundtrip_ms      `%px pass`: execute_request -> execute_reply + iopub idle
  px_ratio             pxkernel / floor and pxkernel / ipyparallel, per N
  px_roundtrip_same_client_ms, px_ratio_same_client
                       `%px pass` through pxkernel and the floor, both timed by px_floor's
                       Rust client (pxkernel driven via `px_floor --connect`)
  px_cpu_ms_per_cell   CPU per `%px pass`: pxkernel process alone; ipyparallel kernel +
                       controller tree; floor client; engines for scale
  px_idle_cpu_ms_per_s CPU burnt while nothing runs (heartbeats)
  px_output_ms         `%px for i in range(10000): print(i)` on --loop-n engines, complete?
  px_complete          R runs of `%px print("x"*100)` at --complete-n engines: incomplete runs
  mem_mib              pxkernel with N engines; ipyparallel kernel and controller tree
  px_stop_ms           shutdown until every process is gone

Per N the three systems' cells are interleaved (the order cycles through all six
permutations), so machine noise hits them alike. `foreign_cores` on a line is CPU
time used by processes that are not this script or its descendants, per wall
second, while that figure was measured (0 = quiet machine).

Needs jupyter_client, ipykernel, psutil and ipyparallel==9.2.0 in the Python
running it, a release build of pxkernel and of the px_floor example. Every process
it starts is stopped and reaped; stragglers are killed by PID (after checking the
PID still names the same process), never by name.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zmq

from benchlib import (ratio, CpuMeter, KernelProcess, Noise, _live, _tracked, cleanup, install_cleanup,
                      kill_by_pid, line, log, mem_of, pct, stats, stop_tree, track, track_tree,
                      wait_gone, bench_env, install_pxkernel, kernelspec_of)

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("pxkernel", "ipyparallel", "floor")
GOALS = {
    "over_floor": 1.15,      # pxkernel / floor, `%px pass` median, every N
    "over_ipp_pass": 0.5,    # pxkernel / ipyparallel, `%px pass` median, N <= 2
    "cpu_over_ipp": 0.1,     # pxkernel CPU / (ipyparallel kernel + controller) CPU per `%px pass`
    "loop_over_ipp": 0.5,    # loop10k on 4 engines, pxkernel / ipyparallel
    "loop_over_floor": 1.15,  # loop10k on 4 engines, pxkernel / floor
    "start_over_ipp": 0.5,   # `%engines start -n 16` / `Cluster(n=16).start_and_connect_sync()`
    "rss_mb": 25.0,          # pxkernel RSS with 16 engines, MB (10^6 bytes)
}
CELLS = {
    "pass": "pass",
    "print100": 'print("x"*100)',
    "loop10k": "for i in range(10000): print(i)",
}
EXPECTED = {
    "pass": "",
    "print100": "x" * 100 + "\n",
    "loop10k": "".join(f"{i}\n" for i in range(10000)),
}
OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "execute_result")
TAGGED = re.compile(r"\[(stdout|stderr):(\d+)\] ?(.*)\Z", re.S)


def orders(items):
    """Every permutation in turn, forever: each system is first, middle and last equally
    often, and no system ever runs twice in a row (not even across two permutations):
    a kernel still writes the previous cell's history for a while after it went idle,
    so a cell sent right after one of its own system would be slower."""
    perms = list(itertools.permutations(items))
    if len(items) > 2:
        for rest in itertools.permutations(perms[1:]):
            cyc = [perms[0], *rest]
            if all(cyc[i][-1] != cyc[(i + 1) % len(cyc)][0] for i in range(len(cyc))):
                return itertools.cycle(cyc)
    # one or two systems: plain round robin (A B A B ...), in a steady stream each
    # cell follows one of the other system
    return itertools.cycle([tuple(items)])


# ---------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------

class GroupMeter:
    """CPU seconds a group of processes used (a process that exits counts until its last sample)."""

    def __init__(self, pids):
        self.meters = []
        for pid in pids:
            try:
                self.meters.append(CpuMeter(pid))
            except OSError:
                pass

    def stop(self):
        total = 0.0
        for m in self.meters:
            try:
                total += m.stop()[0]
            except OSError:
                pass
        return total


# ---------------------------------------------------------------------------
# process hygiene
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# kernels (pxkernel, and the notebook ipykernel that drives ipyparallel)
# ---------------------------------------------------------------------------

class Exec:
    """What one execute_request produced."""
    __slots__ = ("msg_id", "t", "status", "streams", "displays", "out_msgs", "out_bytes", "error")

    def stdout(self):
        return "".join(t for name, t in self.streams if name == "stdout")

    def text(self):
        return "".join(t for _, t in self.streams) + "".join(self.displays.values())


class Kernel(KernelProcess):
    """A kernel with a notebook-like client that times `execute` cells and counts
    output that arrives after its cell went idle."""

    conn_prefix = "px-bench"

    def __init__(self, kind, spec, env, workdir, tag):
        super().__init__(kind, spec, env, workdir, tag)
        self.stray = collections.Counter()   # output messages of other requests, by parent id

    def execute(self, code, timeout, allow_error=False):
        """One notebook-style execute_request; returns an Exec once reply AND idle have arrived."""
        r = Exec()
        r.streams, r.displays = [], {}
        r.out_msgs = r.out_bytes = 0
        r.error = None

        def on_stray(m):
            if m["msg_type"] in OUTPUT_TYPES:
                self.stray[m["parent_header"].get("msg_id") or ""] += 1

        def on_output(m):
            mt, c = m["msg_type"], m["content"]
            if mt == "stream":
                r.streams.append((c["name"], c["text"]))
                r.out_msgs += 1
                r.out_bytes += len(c["text"].encode())
            elif mt in ("display_data", "update_display_data", "execute_result"):
                # ipyparallel streams each engine's output as a display_data with a
                # display_id, then update_display_data messages carrying the WHOLE
                # text so far; the last one is what the user sees.
                txt = c.get("data", {}).get("text/plain", "")
                r.out_msgs += 1
                r.out_bytes += len(txt.encode())
                did = c.get("transient", {}).get("display_id") or f"anon-{r.out_msgs}"
                if mt == "update_display_data" or did not in r.displays:
                    r.displays[did] = txt
            elif mt == "error":
                r.error = "\n".join(c.get("traceback", [])) or f"{c.get('ename')}: {c.get('evalue')}"

        while self.iopub.poll(0):    # leftovers (e.g. another client's cells): not timed
            on_stray(self.recv(self.iopub))
        r.t, r.msg_id, reply = self.run_cell(code, timeout, on_output, on_stray)
        r.status = reply["status"]
        if r.status != "ok" and r.error is None:
            r.error = f"{reply.get('ename')}: {reply.get('evalue')}"
        if r.status != "ok" and not allow_error:
            raise RuntimeError(f"{self.kind}: cell {code[:200]!r} ended with status {r.status}:\n"
                               f"{r.error}\n{r.text()[-2000:]}")
        return r

    def late_outputs(self, msg_ids, wait):
        """Output messages of `msg_ids` that arrived after their cell went idle: those seen
        while later cells ran, and those arriving within `wait` s from now."""
        ids = set(msg_ids)
        n = sum(self.stray[m] for m in ids)
        deadline = time.perf_counter() + wait
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not self.iopub.poll(int(remaining * 1000) + 1):
                return n
            m = self.recv(self.iopub)
            if m["parent_header"].get("msg_id") in ids and m["msg_type"] in OUTPUT_TYPES:
                n += 1


# ---------------------------------------------------------------------------
# the floor: px_floor --serve
# ---------------------------------------------------------------------------

class Floor:
    """`px_floor --serve --n N`: N kernels driven by a bare Rust client, one command a line."""

    kind = "floor"

    def __init__(self, binary, n, env, workdir, tag, cell_timeout, extra=()):
        self.binary, self.n, self.env, self.workdir, self.tag = binary, n, env, workdir, tag
        self.cell_timeout = cell_timeout
        self.extra = list(extra)
        self.proc = None
        self.buf = b""

    def start(self, timeout):
        """Spawn and wait for `ready`; returns the floor's own launch-to-all-answered time, ms."""
        self.logpath = Path(self.workdir) / f"{self.tag}.log"
        with open(self.logpath, "wb") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "--serve", "--n", str(self.n), "--timeout", str(self.cell_timeout)]
                + self.extra,
                env=self.env, cwd=self.workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=logf, start_new_session=True)
        self.pid = self.proc.pid
        track(psutil.Process(self.pid))
        _live.append(self)
        ready = self._fields(self._readline(timeout), "ready")
        self.engine_pids = [int(p) for p in ready["pids"].split(",") if p]
        track_tree(self.pid)
        return float(ready["start_ms"])

    def _readline(self, timeout):
        deadline = time.perf_counter() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"floor: no answer in {timeout}s\n{self.log_tail()}")
            r, _, _ = select.select([fd], [], [], remaining)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"floor exited ({self.proc.wait(5)}):\n{self.log_tail()}")
                self.buf += chunk
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.decode()

    def _fields(self, ln, word):
        parts = ln.split()
        if not parts or parts[0] != word:
            raise RuntimeError(f"floor: expected {word!r}, got {ln!r}\n{self.log_tail()}")
        return dict(p.split("=", 1) for p in parts[1:])

    def log_tail(self, n=3000):
        try:
            return self.logpath.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def run(self, cell):
        """One fan-out; returns (seconds as timed inside the floor, bytes, complete).
        `self.wall` is the same fan-out timed from here, through the pipe."""
        t0 = time.perf_counter()
        self.proc.stdin.write(f"run {cell}\n".encode())
        self.proc.stdin.flush()
        d = self._fields(self._readline(self.cell_timeout + 10), "done")
        self.wall = time.perf_counter() - t0
        return float(d["ms"]) / 1e3, int(d["bytes"]), d["complete"] == "1"

    def stop(self, timeout=10.0, quiet=False):
        if self.proc is None:
            return 0.0, 0
        track_tree(self.pid)
        pids = {self.pid, *getattr(self, "engine_pids", ())}

        def ask():
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()

        result = stop_tree(self, pids, ask, "quit", timeout, quiet)
        self.proc.stdout.close()
        self.proc = None
        return result


# ---------------------------------------------------------------------------
# output checks
# ---------------------------------------------------------------------------

def check_pxkernel(r, n, cell):
    """pxkernel tags every line `[stdout:ID] `: each engine's lines, in order, must be the cell's."""
    per = collections.defaultdict(list)
    untagged = 0
    for name, text in r.streams:
        for ln in text.splitlines():
            m = TAGGED.match(ln)
            if not m:
                untagged += 1
                continue
            per[(m.group(1), int(m.group(2)))].append(m.group(3))
    want = EXPECTED[cell].splitlines()
    return untagged == 0 and all(per.get(("stdout", i), []) == want for i in range(n)) \
        and len(per) == (n if want else 0)


def check_ipp(r, n, cell):
    """ipyparallel shows each engine's stdout as one display, `[stdout:ID] ` before its first line."""
    per = {}
    for text in r.displays.values():
        m = TAGGED.match(text)
        if m and m.group(1) == "stdout":
            per[int(m.group(2))] = m.group(3)
    want = EXPECTED[cell]
    if not want:
        return not per
    return all(per.get(i) == want for i in range(n))


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def setup(tmp, pxkernel, python):
    """A python3 kernelspec (this Python's ipykernel) and a pxkernel kernelspec whose
    home is that python3, both under TMP/share/jupyter; returns (env, specs)."""
    env, data = bench_env(
        tmp, python, drop=("IPP_NONINTERACTIVE", "IPP_PROFILE"),
        # one BLAS/OpenMP thread per process, the same for every system
        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    specs = {"pxkernel": install_pxkernel(pxkernel, tmp, env), "python3": kernelspec_of(data, "python3")}
    return env, specs



def system_env(env, tmp, tag):
    """Each system gets its own IPYTHONDIR (its kernels and engines share it)."""
    e = dict(env)
    e["IPYTHONDIR"] = str(tmp / "ipython" / tag)
    return e


# ---------------------------------------------------------------------------
# the three systems for one N
# ---------------------------------------------------------------------------

IPP_START = "cluster = ipp.Cluster(n={n})\nrc = cluster.start_and_connect_sync()"
IPP_INFO = 'print(_j.dumps({"ids": len(rc.ids), "controller": cluster.controller.pid}))'
IPP_STOP = "rc.close()\ncluster.stop_cluster_sync()"


class Systems:
    """pxkernel, ipyparallel and the floor, each with N engines."""

    def __init__(self, a, tmp, env, specs, n, tag):
        self.a, self.tmp, self.env, self.specs, self.n, self.tag = a, tmp, env, specs, n, tag
        self.px = self.ipp = self.floor = None

    def start(self, which):
        """Start one system; returns its engine start-up time in ms."""
        a, n, work = self.a, self.n, str(self.tmp / "work")
        if which == "pxkernel":
            px = Kernel("pxkernel", self.specs["pxkernel"], system_env(self.env, self.tmp, f"px-{self.tag}"),
                        work, f"pxkernel-{self.tag}")
            self.px = px
            px.start(a.start_timeout)
            px.execute("pass", a.start_timeout)          # its home kernel is up
            r = px.execute(f"%engines start -n {n}", a.start_timeout)
            if f"Started {n} " not in r.stdout():
                raise RuntimeError(f"pxkernel: %engines start -n {n} said {r.text()!r}")
            kids = [p for p in px.descendants() if p.ppid() == px.pid]
            for p in px.descendants():
                track(p)
            self.px_engines, self.px_home = [], None
            for p in kids:
                try:
                    is_engine = "PXKERNEL_ENGINE_ID" in p.environ()
                except psutil.Error:
                    is_engine = False
                if is_engine:
                    self.px_engines.append(p.pid)
                else:
                    self.px_home = p.pid
            if len(self.px_engines) != n:
                raise RuntimeError(f"pxkernel: expected {n} engine processes, found {len(self.px_engines)}")
            # The same pxkernel, also driven by px_floor's Rust client, so that `%px pass`
            # can be timed exactly as the floor is.
            self.px_rust = Floor(a.floor, 1, self.env, work, f"pxkernel-rust-{self.tag}", a.cell_timeout,
                                 extra=["--connect", px.cf, "--prefix", "%px "])
            self.px_rust.start(a.start_timeout)
            return r.t * 1e3
        if which == "ipyparallel":
            k = Kernel("ipyparallel", self.specs["python3"], system_env(self.env, self.tmp, f"ipp-{self.tag}"),
                       work, f"ipp-{self.tag}")
            self.ipp = k
            k.start(a.start_timeout)
            k.execute("import json as _j\nimport ipyparallel as ipp", a.start_timeout)
            r = k.execute(IPP_START.format(n=n), a.start_timeout)
            info = json.loads(k.execute(IPP_INFO, a.cell_timeout).stdout().strip().splitlines()[-1])
            if info["ids"] != n:
                raise RuntimeError(f"ipyparallel: {info['ids']} engines registered, not {n}")
            track_tree(k.pid)
            self.ipp_ctrl = [info["controller"]]
            try:
                c = psutil.Process(info["controller"])
                self.ipp_ctrl += [p.pid for p in c.children(recursive=True)]
            except psutil.Error:
                pass
            self.ipp_engines = []
            for p in psutil.Process(k.pid).children(recursive=False):
                try:
                    cmd = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                if "ipyparallel.engine" in cmd or "ipengine" in cmd:
                    self.ipp_engines += [p.pid] + [q.pid for q in p.children(recursive=True)]
            return r.t * 1e3
        if which == "floor":
            f = Floor(a.floor, n, system_env(self.env, self.tmp, f"floor-{self.tag}"), work,
                      f"floor-{self.tag}", a.cell_timeout)
            self.floor = f
            return f.start(a.start_timeout)
        raise ValueError(which)

    def run(self, which, cell, check=False):
        """One `%px CELL` (or floor fan-out): (seconds, output bytes, complete or None, msg_id)."""
        to = self.a.cell_timeout
        if which == "pxkernel":
            r = self.px.execute(f"%px {CELLS[cell]}", to)
            return r.t, r.out_bytes, (check_pxkernel(r, self.n, cell) if check else None), r.msg_id
        if which == "ipyparallel":
            r = self.ipp.execute(f"%px {CELLS[cell]}", to)
            return r.t, r.out_bytes, (check_ipp(r, self.n, cell) if check else None), r.msg_id
        if which == "pxkernel_rust_client":
            t, b, ok = self.px_rust.run(cell)
            if not ok:
                raise RuntimeError(f"pxkernel (Rust client): %px {CELLS[cell]} did not end ok")
            return t, b, None, None
        t, b, ok = self.floor.run(cell)
        return t, b, ok, None

    def stop(self, which):
        """Stop one system; returns (ms until every process is gone, processes killed)."""
        if which == "pxkernel" and self.px is not None:
            if getattr(self, "px_rust", None) is not None:
                self.px_rust.stop()
                self.px_rust = None
            dt, killed = self.px.stop()
            self.px = None
            return dt * 1e3, killed
        if which == "ipyparallel" and self.ipp is not None:
            k = self.ipp
            t0 = time.perf_counter()
            track_tree(k.pid)
            pids = {k.pid, *self.ipp_ctrl, *self.ipp_engines}
            entries = [(p, ct) for p, ct in _tracked.values() if p.pid in pids]
            try:
                k.execute(IPP_STOP, 120)
            except Exception as e:  # noqa: BLE001 - the kernel stop below still runs
                log(f"ipyparallel: stop_cluster_sync failed: {e}")
            k.stop()
            # ipyparallel's engine nannies outlive stop_cluster_sync by a few seconds
            alive = wait_gone(entries, self.a.linger_s)
            dt = time.perf_counter() - t0
            killed = kill_by_pid(alive)
            for p, _ in entries:
                _tracked.pop(p.pid, None)
            self.ipp = None
            return dt * 1e3, killed
        if which == "floor" and self.floor is not None:
            dt, killed = self.floor.stop()
            self.floor = None
            return dt * 1e3, killed
        return 0.0, 0

    def stop_all(self):
        for s in SYSTEMS:
            self.stop(s)


# ---------------------------------------------------------------------------
# the benchmarks
# ---------------------------------------------------------------------------

def bench_n(a, tmp, env, specs, n, idx, results):
    sysm = Systems(a, tmp, env, specs, n, f"n{n}")
    try:
        # -- start-up, one system at a time; the order rotates with N -----------------
        start_order = SYSTEMS[idx % 3:] + SYSTEMS[:idx % 3]
        for s in start_order:
            noise = Noise()
            ms = sysm.start(s)
            what = {"pxkernel": "engines_start_cell", "ipyparallel": "cluster_start_and_connect_cell",
                    "floor": "launch_to_all_kernel_info"}[s]
            line("px_start_ms", n=n, system=s, what=what, ms=round(ms, 1), foreign_cores=noise.foreign_cores())
            results.setdefault(("start", n, s), []).append(ms)
            time.sleep(a.settle_s)  # let the machine settle

        # -- %px pass, interleaved ---------------------------------------------------
        for s in SYSTEMS:
            for _ in range(a.warmup):
                sysm.run(s, "pass")
        samples = {s: [] for s in SYSTEMS + ("floor_via_pipe",)}
        noise = Noise()
        order = orders(SYSTEMS)
        for _ in range(a.reps):
            for s in next(order):
                samples[s].append(sysm.run(s, "pass")[0] * 1e3)
                if s == "floor":
                    samples["floor_via_pipe"].append(sysm.floor.wall * 1e3)
        fc = noise.foreign_cores()
        for s in samples:
            line("px_roundtrip_ms", n=n, system=s, cell="pass", **stats(samples[s]), foreign_cores=fc)
        med = {s: statistics.median(samples[s]) for s in SYSTEMS}
        paired = [x / y for x, y in zip(samples["pxkernel"], samples["floor"])]
        line("px_ratio", n=n, cell="pass",
             px_over_floor=ratio(med["pxkernel"], med["floor"]),
             px_over_ipp=ratio(med["pxkernel"], med["ipyparallel"]),
             px_over_floor_via_pipe=ratio(med["pxkernel"], statistics.median(samples["floor_via_pipe"])),
             paired_px_over_floor=round(statistics.median(paired), 3),
             p90_px_over_floor=ratio(pct(samples["pxkernel"], 90), pct(samples["floor"], 90)),
             min_px_over_floor=ratio(min(samples["pxkernel"]), min(samples["floor"])),
             foreign_cores=fc)

        # -- %px pass, pxkernel and the floor both timed by px_floor's Rust client -----
        # A loop of its own, strictly alternating (every cell follows one of the other
        # system), so that no engine set ever runs two cells back to back: an ipykernel
        # still saves its history for a while after it went idle.
        for _ in range(a.warmup):
            sysm.run("pxkernel_rust_client", "pass")
        same = {"pxkernel": [], "floor": []}
        noise = Noise()
        for _ in range(a.reps):
            for s in ("pxkernel", "floor"):
                which = "pxkernel_rust_client" if s == "pxkernel" else "floor"
                same[s].append(sysm.run(which, "pass")[0] * 1e3)
        fc = noise.foreign_cores()
        for s in same:
            line("px_roundtrip_same_client_ms", n=n, system=s, cell="pass", client="px_floor",
                 **stats(same[s]), foreign_cores=fc)
        med_same = {s: statistics.median(v) for s, v in same.items()}
        line("px_ratio_same_client", n=n, cell="pass",
             px_over_floor=ratio(med_same["pxkernel"], med_same["floor"]),
             paired_px_over_floor=round(statistics.median(
                 [x / y for x, y in zip(same["pxkernel"], same["floor"])]), 3),
             foreign_cores=fc)
        med["same_client"] = med_same
        results[("rt", n)] = med

        # -- idle CPU: what each burns while nothing runs ---------------------------
        m_px, m_ipp = CpuMeter(sysm.px.pid), GroupMeter([sysm.ipp.pid] + sysm.ipp_ctrl)
        m_fl = CpuMeter(sysm.floor.pid)
        t0 = time.perf_counter()
        time.sleep(a.idle_s)
        dt = time.perf_counter() - t0
        line("px_idle_cpu_ms_per_s", n=n, seconds=round(dt, 2),
             pxkernel=round(m_px.stop()[0] * 1e3 / dt, 4),
             ipp_kernel_controller=round(m_ipp.stop() * 1e3 / dt, 4),
             floor=round(m_fl.stop()[0] * 1e3 / dt, 4))

        # -- CPU per %px pass: each system alone, many cells -------------------------
        cpu = {}
        for s in SYSTEMS:
            cells = a.cpu_cells_ipp if s == "ipyparallel" else a.cpu_cells
            noise = Noise()
            procs = {}
            if s == "pxkernel":
                main = CpuMeter(sysm.px.pid)
                side = {"home": GroupMeter([sysm.px_home] if sysm.px_home else []),
                        "engines": GroupMeter(sysm.px_engines)}
            elif s == "ipyparallel":
                main = None
                side = {"kernel": GroupMeter([sysm.ipp.pid]), "controller": GroupMeter(sysm.ipp_ctrl),
                        "engines": GroupMeter(sysm.ipp_engines)}
                procs = {"controller_procs": len(sysm.ipp_ctrl), "engine_procs": len(sysm.ipp_engines)}
            else:
                main = CpuMeter(sysm.floor.pid)
                side = {"engines": GroupMeter(sysm.floor.engine_pids)}
            ts = []
            for _ in range(cells):
                ts.append(sysm.run(s, "pass")[0] * 1e3)
            fc = noise.foreign_cores()
            used = {k: m.stop() for k, m in side.items()}
            per = {k: round(v * 1e3 / cells, 4) for k, v in used.items()}
            if main is not None:
                v, _, source = main.stop()
                self_ms = round(v * 1e3 / cells, 4)
            else:
                self_ms, source = round(per["kernel"] + per["controller"], 4), "schedstat_sum"
            cpu[s] = self_ms
            line("px_cpu_ms_per_cell", n=n, system=s, cell="pass", cells=cells, self=self_ms, **per,
                 **procs, source=source, roundtrip_median=round(statistics.median(ts), 3), foreign_cores=fc)
        line("px_cpu_ratio", n=n, cell="pass", px_over_ipp=ratio(cpu["pxkernel"], cpu["ipyparallel"], 4),
             px_over_floor_client=ratio(cpu["pxkernel"], cpu["floor"]))
        results[("cpu", n)] = cpu

        # -- memory --------------------------------------------------------------------
        m = mem_of([sysm.px.pid])
        line("mem_mib", n=n, proc="pxkernel", **m, threads=psutil.Process(sysm.px.pid).num_threads())
        results[("rss", n)] = m["rss"]
        line("mem_mib", n=n, proc="pxkernel_engine", **mem_of(sysm.px_engines[:1]))
        line("mem_mib", n=n, proc="ipp_kernel", **mem_of([sysm.ipp.pid]))
        line("mem_mib", n=n, proc="ipp_controller_tree", nprocs=len(sysm.ipp_ctrl), **mem_of(sysm.ipp_ctrl))
        line("mem_mib", n=n, proc="floor_client", **mem_of([sysm.floor.pid]))

        # -- loop10k ----------------------------------------------------------------
        if n == a.loop_n:
            bench_output(a, sysm, n, "loop10k", a.loop_reps, 1, results)

        # -- completeness -------------------------------------------------------------
        if n == a.complete_n:
            bench_complete(a, sysm, n, results)
    finally:
        for s in SYSTEMS:
            try:
                dt, killed = sysm.stop(s)
                line("px_stop_ms", n=n, system=s, ms=round(dt, 1), killed_after_stop=killed)
            except Exception as e:  # noqa: BLE001 - stop the others anyway
                log(f"stopping {s}: {e}")


def bench_output(a, sysm, n, cell, reps, warmup, results):
    for s in SYSTEMS:
        for _ in range(warmup):
            sysm.run(s, cell)
    samples = {s: [] for s in SYSTEMS}
    nbytes = {s: [] for s in SYSTEMS}
    bad = {s: 0 for s in SYSTEMS}
    noise = Noise()
    meters = {"pxkernel": CpuMeter(sysm.px.pid), "floor": CpuMeter(sysm.floor.pid)}
    ipp_meter = GroupMeter([sysm.ipp.pid] + sysm.ipp_ctrl)
    order = orders(SYSTEMS)
    for _ in range(reps):
        for s in next(order):
            t, b, ok, _ = sysm.run(s, cell, check=True)
            samples[s].append(t * 1e3)
            nbytes[s].append(b)
            bad[s] += 0 if ok else 1
    fc = noise.foreign_cores()
    cpu = {k: round(m.stop()[0] * 1e3 / reps, 3) for k, m in meters.items()}
    cpu["ipyparallel"] = round(ipp_meter.stop() * 1e3 / reps, 3)
    for s in SYSTEMS:
        line("px_output_ms", n=n, system=s, cell=cell, **stats(samples[s]),
             bytes_per_rep=int(statistics.median(nbytes[s])), incomplete=bad[s],
             cpu_ms_per_cell=cpu[s], foreign_cores=fc)
    med = {s: statistics.median(samples[s]) for s in SYSTEMS}
    line("px_ratio", n=n, cell=cell, px_over_floor=ratio(med["pxkernel"], med["floor"]),
         px_over_ipp=ratio(med["pxkernel"], med["ipyparallel"]), foreign_cores=fc)
    results[("out", n, cell)] = (med, bad, reps)


def bench_complete(a, sysm, n, results):
    """R runs of `%px print("x"*100)`: in how many had some engine's line not arrived at idle?"""
    reps = {"pxkernel": a.complete_reps, "floor": a.complete_reps, "ipyparallel": a.complete_reps_ipp}
    for s in SYSTEMS:
        for _ in range(a.warmup):
            sysm.run(s, "print100")
    for k in (sysm.px, sysm.ipp):
        k.stray.clear()
    samples = {s: [] for s in SYSTEMS}
    bad = {s: [] for s in SYSTEMS}
    noise = Noise()
    cycles = {}
    for i in range(max(reps.values())):
        active = tuple(s for s in SYSTEMS if i < reps[s])
        order = cycles.setdefault(active, orders(active))
        for s in next(order):
            t, _, ok, msg_id = sysm.run(s, "print100", check=True)
            samples[s].append(t * 1e3)
            if not ok:
                bad[s].append(msg_id)
    fc = noise.foreign_cores()
    for s in SYSTEMS:
        k = {"pxkernel": sysm.px, "ipyparallel": sysm.ipp}.get(s)
        extra = {}
        if k is not None:
            ids = [m for m in bad[s] if m]
            extra = {"late_output_msgs": k.late_outputs(ids, 2.0) if ids else 0,
                     "stray_output_msgs": sum(k.stray.values())}
        line("px_complete", n=n, system=s, cell="print100", runs=reps[s], incomplete=len(bad[s]),
             **extra, median_ms=round(statistics.median(samples[s]), 3),
             p90_ms=round(pct(samples[s], 90), 3), foreign_cores=fc)
        results[("complete", s)] = (len(bad[s]), reps[s])


def bench_starts(a, tmp, env, specs, results):
    """Extra start-ups at --start-n, each system alone on the machine, order alternating."""
    n = a.start_n
    for i in range(a.starts):
        order = SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]
        for s in order:
            sysm = Systems(a, tmp, env, specs, n, f"start{i}-{s}")
            try:
                noise = Noise()
                ms = sysm.start(s)
                line("px_start_ms", n=n, system=s, what="alone", ms=round(ms, 1),
                     foreign_cores=noise.foreign_cores())
                results.setdefault(("start", n, s), []).append(ms)
            except Exception as e:  # noqa: BLE001 - one lost sample (e.g. a port taken by
                # another program between reservation and bind) does not end the run
                log(f"{s}: start of {n} engines failed: {str(e)[:2000]}")
                line("px_start_ms", n=n, system=s, what="alone", failed=1)
            finally:
                sysm.stop_all()
            time.sleep(1.0)


def summary(a, results, failed):
    def verdict(ok):
        return "PASS" if ok else "MISS"

    def p(text):
        print("#   " + text, flush=True)

    print("#", flush=True)
    print("# summary (goals: see bench/README.md); times in ms, medians", flush=True)
    for n in a.ns:
        if ("rt", n) not in results:
            continue
        m = results[("rt", n)]
        rf, ri = m["pxkernel"] / m["floor"], m["pxkernel"] / m["ipyparallel"]
        ipp_goal = (f"goal <= {GOALS['over_ipp_pass']}x {verdict(ri <= GOALS['over_ipp_pass'])}"
                    if n <= 2 else "(no goal at N > 2)")
        sc = m["same_client"]
        rr = sc["pxkernel"] / sc["floor"]
        p(f"%px pass N={n:<2d}  pxkernel {m['pxkernel']:7.2f}  floor {m['floor']:7.2f}  "
          f"ipyparallel {m['ipyparallel']:7.2f} | px/floor {rf:.2f}x goal <= {GOALS['over_floor']}x "
          f"{verdict(rf <= GOALS['over_floor'])} (same Rust client: {sc['pxkernel']:.2f} / {sc['floor']:.2f} = "
          f"{rr:.2f}x {verdict(rr <= GOALS['over_floor'])}) | px/ipp {ri:.2f}x {ipp_goal}")
    for n in a.ns:
        if ("cpu", n) not in results:
            continue
        c = results[("cpu", n)]
        r = c["pxkernel"] / c["ipyparallel"]
        p(f"CPU per %px pass N={n:<2d}  pxkernel {c['pxkernel']:.3f} ms  ipyparallel kernel+controller "
          f"{c['ipyparallel']:.2f} ms  ({r:.3f}x)  floor client {c['floor']:.3f} ms  "
          f"goal <= {GOALS['cpu_over_ipp']}x {verdict(r <= GOALS['cpu_over_ipp'])}")
    if ("out", a.loop_n, "loop10k") in results:
        med, bad, reps = results[("out", a.loop_n, "loop10k")]
        ri, rf = med["pxkernel"] / med["ipyparallel"], med["pxkernel"] / med["floor"]
        p(f"loop10k N={a.loop_n}  pxkernel {med['pxkernel']:.1f}  floor {med['floor']:.1f}  "
          f"ipyparallel {med['ipyparallel']:.1f} | px/ipp {ri:.2f}x goal <= {GOALS['loop_over_ipp']}x "
          f"{verdict(ri <= GOALS['loop_over_ipp'])} | px/floor {rf:.2f}x goal <= {GOALS['loop_over_floor']}x "
          f"{verdict(rf <= GOALS['loop_over_floor'])} | incomplete of {reps}: pxkernel {bad['pxkernel']} "
          f"ipyparallel {bad['ipyparallel']} floor {bad['floor']} {verdict(bad['pxkernel'] == 0)}")
    sn = a.start_n
    if ("start", sn, "pxkernel") in results and ("start", sn, "ipyparallel") in results:
        sp = statistics.median(results[("start", sn, "pxkernel")])
        si = statistics.median(results[("start", sn, "ipyparallel")])
        sf = statistics.median(results.get(("start", sn, "floor"), [float("nan")]))
        k = len(results[("start", sn, "pxkernel")])
        p(f"start {sn} engines (median of {k})  %engines start {sp:.0f}  ipyparallel {si:.0f}  "
          f"floor {sf:.0f} | px/ipp {sp / si:.2f}x goal <= {GOALS['start_over_ipp']}x "
          f"{verdict(sp / si <= GOALS['start_over_ipp'])}")
    if ("rss", 16) in results:
        r = results[("rss", 16)]
        mb = r * 1024 * 1024 / 1e6
        p(f"pxkernel RSS with 16 engines {r:.1f} MiB ({mb:.1f} MB)  goal <= {GOALS['rss_mb']:.0f} MB "
          f"{verdict(mb <= GOALS['rss_mb'])}")
    if ("complete", "pxkernel") in results:
        parts = []
        for s in SYSTEMS:
            b, r = results[("complete", s)]
            parts.append(f"{s} {b}/{r}")
        b = results[("complete", "pxkernel")][0]
        p(f"print100 at N={a.complete_n}, runs with a line missing at idle: {'  '.join(parts)}  "
          f"goal pxkernel 0 {verdict(b == 0)}")
    if failed:
        p(f"FAILED: {failed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pxkernel", default=str(REPO / "target" / "release" / "pxkernel"),
                    help="pxkernel binary (default: target/release/pxkernel of this repo)")
    ap.add_argument("--floor", default=str(REPO / "target" / "release" / "examples" / "px_floor"),
                    help="px_floor binary (default: target/release/examples/px_floor)")
    ap.add_argument("--python", default=sys.executable,
                    help="Python whose ipykernel runs the engines and the ipyparallel kernel (default: this one)")
    ap.add_argument("--ns", help="engine counts, comma-separated (default 1,2,4,8,16; quick 1,4,16)")
    ap.add_argument("--reps", type=int, help="timed `%%px pass` cells per system and N (default 200, quick 20)")
    ap.add_argument("--warmup", type=int, help="untimed cells per system first (default 10, quick 3)")
    ap.add_argument("--cpu-cells", type=int, help="`%%px pass` cells of pxkernel and of the floor, each alone, "
                    "for CPU per cell (default 300, quick 30)")
    ap.add_argument("--cpu-cells-ipp", type=int, help="the same for ipyparallel (default 100, quick 15)")
    ap.add_argument("--loop-n", type=int, default=4, help="engines for the loop10k cell (default 4; must be in --ns)")
    ap.add_argument("--loop-reps", type=int, help="timed loop10k cells per system (default 10, quick 2)")
    ap.add_argument("--complete-n", type=int, default=16,
                    help="engines for the completeness count (default 16; must be in --ns)")
    ap.add_argument("--complete-reps", type=int, help="print100 runs of pxkernel and of the floor "
                    "(default 1000, quick 60)")
    ap.add_argument("--complete-reps-ipp", type=int, help="print100 runs of ipyparallel (default 200, quick 20)")
    ap.add_argument("--start-n", type=int, default=16, help="engines for the start-up goal (default 16)")
    ap.add_argument("--starts", type=int, help="extra start-ups at --start-n, each system alone "
                    "(default 2, quick 0); the start at --start-n in the per-N run counts too")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run under 2 min")
    ap.add_argument("--timeout", type=float, default=2400, help="hard limit for the whole run, s (default 2400)")
    ap.add_argument("--cell-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (kernel logs) for inspection")
    a = ap.parse_args()
    q = a.quick
    a.ns = [int(x) for x in (a.ns or ("1,4,16" if q else "1,2,4,8,16")).split(",") if x.strip()]
    a.reps = a.reps or (15 if q else 200)
    a.warmup = a.warmup if a.warmup is not None else (3 if q else 10)
    a.cpu_cells = a.cpu_cells or (20 if q else 300)
    a.cpu_cells_ipp = a.cpu_cells_ipp or (10 if q else 100)
    a.loop_reps = a.loop_reps or (2 if q else 10)
    a.complete_reps = a.complete_reps or (40 if q else 1000)
    a.complete_reps_ipp = a.complete_reps_ipp or (15 if q else 200)
    a.starts = a.starts if a.starts is not None else (0 if q else 2)
    a.idle_s = 0.5 if q else 3.0
    a.settle_s = 0.2 if q else 0.5
    a.linger_s = 1.0 if q else 10.0

    def shown(path):
        path = os.path.abspath(path)
        return os.path.relpath(path, REPO) if Path(path).is_relative_to(REPO) else path

    for what, path in (("pxkernel", a.pxkernel), ("px_floor", a.floor)):
        if not os.access(path, os.X_OK):
            sys.exit(f"px_bench: no {what} binary at {path} (build: cargo build --release && "
                     f"cargo build --release -p pxkernel-kernel --example px_floor)")
    a.pxkernel, a.floor = os.path.abspath(a.pxkernel), os.path.abspath(a.floor)
    try:
        ipp_version = subprocess.run([a.python, "-c", "import ipyparallel; print(ipyparallel.__version__)"],
                                     capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        ipp_version = ""
    if not ipp_version:
        sys.exit(f"px_bench: {a.python} has no ipyparallel (pip install ipyparallel==9.2.0)")

    install_cleanup("px_bench", a.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="pxkernel-pxbench-"))
    results = {}
    failed = None
    t_run = time.perf_counter()
    try:
        env, specs = setup(tmp, a.pxkernel, a.python)
        line("env", python=platform.python_version(), ipykernel=__import__("ipykernel").__version__,
             ipyparallel=ipp_version, jupyter_client=__import__("jupyter_client").__version__,
             pyzmq=zmq.__version__, libzmq=zmq.zmq_version(), pxkernel=shown(a.pxkernel),
             floor=shown(a.floor), cpus=os.cpu_count(), quick=int(q), ns=",".join(map(str, a.ns)),
             loadavg=open("/proc/loadavg").read().split()[0])
        for idx, n in enumerate(a.ns):
            bench_n(a, tmp, env, specs, n, idx, results)
        if a.starts and a.start_n:
            bench_starts(a, tmp, env, specs, results)
    except BaseException as e:  # report, clean up, exit non-zero
        failed = f"{type(e).__name__}: {e}"
        log(failed)
    finally:
        cleanup()
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    line("run", seconds=round(time.perf_counter() - t_run, 1), failed=int(failed is not None))
    summary(a, results, failed)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
