#!/usr/bin/env python3
"""A/B benchmark: two pxkernel binaries side by side, interleaved, in one run.

Each binary (--a, --b; copied into the temp dir first, so a rebuild during the
run does not change what is measured) is installed as its own kernelspec
(`BIN install --prefix TMP --name pxk-a|pxk-b`) with the same home: a `python3`
kernelspec of this Python's ipykernel under TMP. Both kernels run at the same
time. With --engines N > 0 each first runs `%engines start -n N` once.

Then --rounds rounds. In each round, for each cell type in turn, A runs
--cells cells and then B does (odd rounds: B first, then A), so each kernel's
block of a cell type is adjacent in time to the other's and machine noise hits
both alike. Cell types: `pass`, `print('x'*100)` (print100, output checked) and,
with engines, `%px pass` (px_pass). Per kernel, cell type and round:

  latency   per cell, execute_request -> execute_reply + iopub idle (ms)
  CPU       user+sys of the pxkernel process itself (the process the kernelspec
            started; not its home kernel or engines) over the block, per cell:
            per-thread schedstat (ns resolution), cross-checked with
            utime+stime of /proc/PID/stat (benchlib.CpuMeter)

Figures (one `name key=value ...` line each, see bench/README.md):

  ab_round            one kernel's block in one round: median, mean, CPU per cell
  ab_latency_ms       all timed cells of a kernel and cell type pooled
  ab_cpu_ms_per_cell  the kernel's CPU over all its blocks / its timed cells
  ab_compare          per cell type and metric: A, B, B/A, the median of B/A over pairs
                      of rounds (AB, BA), a bootstrap 95% interval of B/A over those
                      pairs, the spread of each side's per-round values, how much
                      slower the block that ran second in a round was, and a verdict
  ab_idle_cpu_ms_per_s  CPU each pxkernel burns per second with nothing running
                      (engine heartbeats), before and after the rounds
  ab_mem_mib          RSS / PSS / USS / peak RSS of each pxkernel at the end

`foreign_cores` on a line is CPU time used by processes that are not this script
or its descendants, per wall second, while that figure was measured (0 = quiet).

Needs jupyter_client, ipykernel and psutil. Every process it starts is stopped
and reaped; stragglers are killed by PID (after checking the PID still names the
same process), never by name.
"""

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zmq

from benchlib import (sha256_12, CpuMeter, KernelProcess, Noise, cleanup, install_cleanup, line, log,
                      mem_of, pct, stats, track, bench_env, install_pxkernel)

REPO = Path(__file__).resolve().parent.parent
PRINT100_OUT = "x" * 100 + "\n"
SIDES = ("a", "b")
METRICS = (("median_ms", "latency median"), ("mean_ms", "latency mean"),
           ("cpu_ms_per_cell", "CPU per cell"))


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------

class Kernel(KernelProcess):
    """A pxkernel with a notebook-like client that times `execute` cells."""

    conn_prefix = "ab-bench"

    def __init__(self, kind, spec, env, workdir, tag):
        super().__init__(kind, spec, env, workdir, tag)
        self.cells = 0

    def execute(self, code, timeout):
        """One notebook-style cell; (seconds until reply AND idle, its stdout)."""
        out = []

        def on_output(m):
            if m["msg_type"] == "stream" and m["content"].get("name") == "stdout":
                out.append(m["content"]["text"])

        t, _, reply = self.run_cell(code, timeout, on_output)
        if reply["status"] != "ok":
            raise RuntimeError(f"{self.kind}: cell {code!r} ended with status {reply['status']}: "
                               f"{reply.get('ename', '')} {reply.get('evalue', '')}")
        self.cells += 1
        return t, "".join(out)


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def setup(tmp, bins, python):
    """Copy the binaries into TMP, write a python3 kernelspec (this Python's ipykernel)
    and install each binary as kernelspec pxk-a / pxk-b under TMP, both with that
    python3 as home. Returns (env, {side: spec})."""
    env, _ = bench_env(
        tmp, python,
        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    specs = {}
    for side in SIDES:
        d = tmp / f"bin-{side}"
        d.mkdir()
        exe = d / "pxkernel"
        shutil.copy2(bins[side], exe)
        spec = install_pxkernel(exe, tmp, env, name=f"pxk-{side}", label=side)
        spec["exe"] = str(exe)
        specs[side] = spec
    return env, specs



def kernel_env(env, tmp, side):
    """Each kernel (with its home and engines) gets its own IPYTHONDIR, so the two
    sides never share a history database."""
    e = dict(env)
    e["IPYTHONDIR"] = str(tmp / "ipython" / side)
    return e


def start_kernel(a, tmp, env, spec, side):
    k = Kernel(f"pxkernel-{side}", spec, kernel_env(env, tmp, side), str(tmp / "work"), f"ab-{side}")
    k.start(a.start_timeout)
    try:
        exe = psutil.Process(k.pid).exe()
        if os.path.realpath(exe) != os.path.realpath(spec["exe"]):
            log(f"{side}: the started process {k.pid} runs {exe}, not {spec['exe']}: "
                f"its CPU is what is measured")
    except psutil.Error:
        pass
    k.execute("pass", a.start_timeout)          # its home kernel is up
    k.engines = []
    if a.engines:
        _, out = k.execute(f"%engines start -n {a.engines}", a.start_timeout)
        if f"Started {a.engines} " not in out:
            raise RuntimeError(f"{side}: %engines start -n {a.engines} said {out!r}")
        for p in k.descendants():
            track(p)
            try:
                if p.ppid() == k.pid and "PXKERNEL_ENGINE_ID" in p.environ():
                    k.engines.append(p.pid)
            except psutil.Error:
                pass
        if len(k.engines) != a.engines:
            raise RuntimeError(f"{side}: expected {a.engines} engine processes, found {len(k.engines)}")
    else:
        for p in k.descendants():
            track(p)
    return k


# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------

def rel_spread(xs):
    """Half the interquartile range of the per-round values, relative to their median."""
    med = statistics.median(xs)
    return (pct(xs, 75) - pct(xs, 25)) / 2 / med if med else float("nan")


def round_pairs(xs):
    """Per-round values summed over pairs of rounds (AB, BA): the block that runs second
    in a round can be slower than the first, and a pair holds each order once."""
    return [sum(xs[i:i + 2]) for i in range(0, len(xs), 2)]


def bootstrap_ratio(xa, xb, n, rng):
    """95% interval of sum(B)/sum(A), resampling pairs of rounds with replacement."""
    pa, pb = round_pairs(xa), round_pairs(xb)
    idx = range(len(pa))
    out = []
    for _ in range(n):
        s = [rng.choice(idx) for _ in idx]
        sa = sum(pa[i] for i in s)
        sb = sum(pb[i] for i in s)
        if sa > 0:
            out.append(sb / sa)
    return pct(out, 2.5), pct(out, 97.5)


def second_over_first(xa, xb):
    """Median over rounds of (value of the block that ran second) / (the first one's)."""
    r = []
    for i, (x, y) in enumerate(zip(xa, xb)):
        first, second = (x, y) if i % 2 == 0 else (y, x)
        if first > 0:
            r.append(second / first)
    return statistics.median(r)


def verdict(lo, hi):
    if lo <= 1.0 <= hi:
        return "within_noise"
    return "B_higher" if lo > 1.0 else "B_lower"


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------

def idle_cpu(kernels, seconds, when):
    meters = {s: CpuMeter(k.pid) for s, k in kernels.items()}
    noise = Noise()
    t0 = time.perf_counter()
    time.sleep(seconds)
    dt = time.perf_counter() - t0
    fc = noise.foreign_cores()
    per = {s: round(m.stop()[0] * 1e3 / dt, 4) for s, m in meters.items()}
    line("ab_idle_cpu_ms_per_s", when=when, seconds=round(dt, 2), engines=len(kernels["a"].engines), **per,
         foreign_cores=fc)
    return per


def run_block(k, code, n, timeout, check):
    """n cells of `code` through kernel k: (latencies ms, bad outputs, CPU s (precise, ticks), source)."""
    meter = CpuMeter(k.pid)
    lat, bad = [], 0
    for _ in range(n):
        t, out = k.execute(code, timeout)
        lat.append(t * 1e3)
        if check is not None and out != check:
            bad += 1
    precise, ticks, source = meter.stop()
    return lat, bad, precise, ticks, source


def bench(a, tmp, env, specs, res):
    kernels = {}
    for side in SIDES:
        kernels[side] = start_kernel(a, tmp, env, specs[side], side)
    line("env", python=platform.python_version(), ipykernel=__import__("ipykernel").__version__,
         jupyter_client=__import__("jupyter_client").__version__, pyzmq=zmq.__version__,
         libzmq=zmq.zmq_version(),
         a=a.a_shown, a_sha256=res["sha"]["a"], a_version=kernels["a"].info.get("implementation_version", "?"),
         b=a.b_shown, b_sha256=res["sha"]["b"], b_version=kernels["b"].info.get("implementation_version", "?"),
         cpus=os.cpu_count(), rounds=a.rounds, cells=a.cells, engines=a.engines, warmup=a.warmup,
         loadavg=open("/proc/loadavg").read().split()[0])

    cells = [("pass", "pass", None), ("print100", "print('x'*100)", PRINT100_OUT)]
    if a.engines:
        cells.append(("px_pass", "%px pass", None))
    res["cells"] = [c[0] for c in cells]

    for _ in range(a.warmup):
        for side in SIDES:
            for _, code, _ in cells:
                kernels[side].execute(code, a.cell_timeout)

    if a.idle:
        res["idle_before"] = idle_cpu(kernels, a.idle, "before")

    per_round = {(c, s): {"median_ms": [], "mean_ms": [], "cpu_ms_per_cell": [], "ticks_ms_per_cell": []}
                 for c, _, _ in cells for s in SIDES}
    pooled = {(c, s): [] for c, _, _ in cells for s in SIDES}
    bad = {(c, s): 0 for c, _, _ in cells for s in SIDES}
    sources = {s: set() for s in SIDES}
    noise_all = Noise()
    for r in range(a.rounds):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for label, code, check in cells:
            noise = Noise()
            for side in order:
                lat, nbad, cpu, ticks, source = run_block(kernels[side], code, a.cells, a.cell_timeout, check)
                sources[side].add(source)
                pr = per_round[(label, side)]
                pr["median_ms"].append(statistics.median(lat))
                pr["mean_ms"].append(statistics.fmean(lat))
                pr["cpu_ms_per_cell"].append(cpu * 1e3 / a.cells)
                pr["ticks_ms_per_cell"].append(ticks * 1e3 / a.cells)
                pooled[(label, side)].extend(lat)
                bad[(label, side)] += nbad
            fc = noise.foreign_cores()
            for side in order:
                pr = per_round[(label, side)]
                line("ab_round", round=r, cell=label, kernel=side, first=order[0],
                     median_ms=round(pr["median_ms"][-1], 3), mean_ms=round(pr["mean_ms"][-1], 3),
                     cpu_ms_per_cell=round(pr["cpu_ms_per_cell"][-1], 4),
                     ticks_ms_per_cell=round(pr["ticks_ms_per_cell"][-1], 3), foreign_cores=fc)
    res["foreign_cores"] = noise_all.foreign_cores()

    if a.idle:
        res["idle_after"] = idle_cpu(kernels, a.idle, "after")

    rng = random.Random(a.seed)
    for label, _, check in cells:
        for side in SIDES:
            extra = {"bad_output": bad[(label, side)]} if check is not None else {}
            line("ab_latency_ms", cell=label, kernel=side, **stats(pooled[(label, side)]), **extra,
                 foreign_cores=res["foreign_cores"])
        for side in SIDES:
            pr = per_round[(label, side)]
            line("ab_cpu_ms_per_cell", cell=label, kernel=side, cells=a.cells * a.rounds,
                 pxkernel=round(statistics.fmean(pr["cpu_ms_per_cell"]), 4),
                 ticks=round(statistics.fmean(pr["ticks_ms_per_cell"]), 4),
                 source="+".join(sorted(sources[side])), foreign_cores=res["foreign_cores"])
        for metric, _ in METRICS:
            xa, xb = per_round[(label, "a")][metric], per_round[(label, "b")][metric]
            if metric == "median_ms":
                va, vb = statistics.median(pooled[(label, "a")]), statistics.median(pooled[(label, "b")])
            else:
                va, vb = statistics.fmean(xa), statistics.fmean(xb)
            lo, hi = bootstrap_ratio(xa, xb, a.bootstrap, rng)
            paired = statistics.median([y / x for x, y in zip(round_pairs(xa), round_pairs(xb)) if x > 0])
            row = dict(a=va, b=vb, ratio=vb / va if va else float("nan"), paired=paired, lo=lo, hi=hi,
                       spread_a=rel_spread(xa), spread_b=rel_spread(xb), verdict=verdict(lo, hi),
                       position=second_over_first(xa, xb))
            res[("cmp", label, metric)] = row
            line("ab_compare", cell=label, metric=metric, a=round(va, 4), b=round(vb, 4),
                 ratio=round(row["ratio"], 3), pair_ratio_median=round(paired, 3),
                 ci95_lo=round(lo, 3), ci95_hi=round(hi, 3),
                 a_round_spread=round(row["spread_a"], 3), b_round_spread=round(row["spread_b"], 3),
                 second_over_first=round(row["position"], 3), verdict=row["verdict"], rounds=a.rounds)

    for side in SIDES:
        k = kernels[side]
        line("ab_mem_mib", kernel=side, cells=k.cells, engines=len(k.engines), **mem_of([k.pid]),
             threads=psutil.Process(k.pid).num_threads())
    for side in SIDES:
        dt, killed = kernels[side].stop(timeout=30.0)
        line("ab_stop_ms", kernel=side, ms=round(dt * 1e3, 1), killed_after_shutdown=killed)


def summary(a, res, failed, seconds):
    def p(s=""):
        print(f"# {s}".rstrip(), flush=True)

    p()
    p(f"A = {a.a_shown} ({res['sha'].get('a', '?')})")
    p(f"B = {a.b_shown} ({res['sha'].get('b', '?')})")
    p(f"{a.rounds} rounds x {a.cells} cells per kernel and cell type, engines={a.engines}; "
      f"loadavg start {res.get('load0', '?')} end {res.get('load1', '?')}; "
      f"foreign_cores {res.get('foreign_cores', '?')}; {seconds:.0f} s")
    p("pairs = median over round pairs (AB+BA) of B/A; CI = bootstrap 95% of B/A over round pairs;")
    p("spr = half the IQR of the per-round values / their median; 2nd/1st = block run second / first")
    p()
    hdr = f"{'cell':9s} {'metric':15s} {'A':>9s} {'B':>9s} {'B/A':>6s} {'pairs':>6s} " \
          f"{'CI95':>13s} {'sprA':>6s} {'sprB':>6s} {'2nd/1st':>7s}  verdict"
    p(hdr)
    p("-" * len(hdr))
    for label in res.get("cells", []):
        for metric, name in METRICS:
            row = res.get(("cmp", label, metric))
            if row is None:
                continue
            nd = 4 if metric == "cpu_ms_per_cell" else 3
            p(f"{label:9s} {name:15s} {row['a']:9.{nd}f} {row['b']:9.{nd}f} {row['ratio']:6.3f} "
              f"{row['paired']:6.3f} [{row['lo']:5.3f},{row['hi']:5.3f}] {row['spread_a'] * 100:5.1f}% "
              f"{row['spread_b'] * 100:5.1f}% {row['position']:7.3f}  {row['verdict']}")
    for when in ("before", "after"):
        v = res.get(f"idle_{when}")
        if v:
            p(f"idle CPU ({when}, {a.engines} engines): A {v['a']:.4f} ms/s  B {v['b']:.4f} ms/s")
    if failed:
        p(f"FAILED: {failed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="pxkernel binary A (the baseline)")
    ap.add_argument("--b", required=True, help="pxkernel binary B (the candidate)")
    ap.add_argument("--python", default=sys.executable,
                    help="Python whose ipykernel is the home kernel and the engines (default: this one)")
    ap.add_argument("--rounds", type=int, default=20, help="rounds, an even number; A goes first in even "
                    "ones, B in odd ones (default 20)")
    ap.add_argument("--cells", type=int, default=100, help="timed cells per kernel, cell type and round "
                    "(default 100)")
    ap.add_argument("--engines", type=int, default=4, help="engines per kernel for the `%%px pass` cells "
                    "(default 4; 0 skips them)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed cells per kernel and cell type first "
                    "(default 20)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measurement before and "
                    "after the rounds (default 3; 0 skips it)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    ap.add_argument("--timeout", type=float, default=900, help="hard limit for the whole run, s (default 900)")
    ap.add_argument("--cell-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--start-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (kernel logs) for inspection")
    a = ap.parse_args()
    if a.rounds < 2 or a.rounds % 2 or a.cells < 1 or a.engines < 0:
        sys.exit("ab_bench: need an even --rounds >= 2, --cells >= 1, --engines >= 0")

    def shown(path):
        return os.path.relpath(path, REPO) if Path(path).is_relative_to(REPO) else path

    bins = {}
    for side, path in (("a", a.a), ("b", a.b)):
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            sys.exit(f"ab_bench: no executable at --{side} {path}")
        bins[side] = path
    a.a_shown, a.b_shown = shown(bins["a"]), shown(bins["b"])

    install_cleanup("ab_bench", a.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="pxkernel-abbench-"))
    res = {"sha": {}, "load0": open("/proc/loadavg").read().split()[0]}
    failed = None
    t_run = time.perf_counter()
    try:
        env, specs = setup(tmp, bins, a.python)
        res["sha"] = {s: sha256_12(specs[s]["exe"]) for s in SIDES}
        bench(a, tmp, env, specs, res)
    except BaseException as e:  # report, clean up, exit non-zero
        failed = f"{type(e).__name__}: {e}"
        log(failed)
    finally:
        cleanup()
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t_run
    res["load1"] = open("/proc/loadavg").read().split()[0]
    line("run", seconds=round(seconds, 1), loadavg_start=res["load0"], loadavg_end=res["load1"],
         failed=int(bool(failed)))
    summary(a, res, failed, seconds)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
