#!/usr/bin/env python3
"""Plain-cell benchmarks: pxkernel vs. the ipykernel it proxies, in one run.

Figures (one `name key=value ...` line each, see bench/README.md):

  plain_roundtrip_ms       execute_request -> execute_reply + iopub idle, per kernel and cell
  plain_overhead_ms        pxkernel - ipykernel (difference of medians, paired median, ratio)
  pxkernel_cpu_ms_per_cell CPU of the pxkernel process itself per cell (+ home, ipykernel,
                           and relay_floor: the same transport relaying frames verbatim)
  pxkernel_idle_cpu_ms_per_s   CPU pxkernel burns while nothing happens
  startup_ms               spawn -> kernel_info_reply
  first_cell_ms            spawn -> first `pass` cell done (pxkernel: includes its home's start)
  shutdown_ms              shutdown_request -> process (and all its descendants) gone
  mem_mib                  RSS / PSS / USS / peak RSS of pxkernel, its home, plain ipykernel
  pxkernel_soak            many more cells through pxkernel alone: RSS growth, CPU per cell
  curve_overhead_ms        pxkernel reached with CurveZMQ minus pxkernel without (round trip, CPU)

Both kernels run at the same time and are driven alternately (ABBA order per
rep), so machine noise hits both alike.  With the relay floor built (cargo build
--release -p pxkernel-kernel --example relay_floor) a third kernel joins them: a
relay that forwards frames verbatim, over pxkernel's own transport, to its own
ipykernel home.  Its CPU per cell is what the sockets and wake-ups cost with no
message handling at all: the floor under pxkernel's CPU figure.  Unless --no-curve, a
second pxkernel joins them too, given CurveZMQ keys in its connection file and driven
by CURVE client sockets (what jupyter_client's transport_encryption="required" does):
what encrypting the client's leg costs.  `foreign_cores` on a line is CPU time
used by processes that are not this script or its descendants, per wall second,
while that figure was measured (0 = quiet machine).

Needs only jupyter_client, ipykernel, psutil (and pyzmq, which they pull in).
Every process it starts is stopped and reaped; stragglers are killed by PID
(after checking the PID still names the same process), never by name.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import zmq

from benchlib import (CpuMeter, KernelProcess, Noise, cleanup, install_cleanup, line, log,
                      mem_of, pct, stats, track, track_tree, bench_env, install_pxkernel, kernelspec_of)

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
# kernels
# ---------------------------------------------------------------------------

class Kernel(KernelProcess):
    """A kernel with a notebook-like client that times `execute` cells."""

    conn_prefix = "kernel-bench"

    def __init__(self, kind, spec, env, workdir, tag):
        super().__init__(kind, spec, env, workdir, tag)
        self.cells = 0

    def execute(self, code, timeout):
        """One notebook-style cell; seconds until reply AND idle, and its stdout."""
        out = []

        def on_output(m):
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])

        t, _, reply = self.run_cell(code, timeout, on_output)
        if reply["status"] != "ok":
            raise RuntimeError(f"{self.kind}: cell {code!r} ended with status {reply['status']}")
        self.cells += 1
        return t, "".join(out)


class CurveKernel(Kernel):
    """A kernel reached with CurveZMQ: a fresh server keypair in its connection file,
    as jupyter_client's transport_encryption provisions one, and CURVE client sockets
    with a keypair of their own (as jupyter_client's heartbeat has)."""

    def connection_extra(self):
        self.server_public, server_secret = zmq.curve_keypair()
        self.client_keys = zmq.curve_keypair()
        return {"curve_publickey": self.server_public, "curve_secretkey": server_secret}

    def secure_socket(self, s):
        s.curve_publickey, s.curve_secretkey = self.client_keys
        s.curve_serverkey = self.server_public


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def setup(tmp, pxkernel, python):
    """A python3 kernelspec (this Python's ipykernel) and a pxkernel kernelspec whose
    home is that python3, both under TMP/share/jupyter; returns (env, specs)."""
    env, data = bench_env(tmp, python)
    specs = {"pxkernel": install_pxkernel(pxkernel, tmp, env), "python3": kernelspec_of(data, "python3")}
    return env, specs



def start_relay_floor(a, tmp, env):
    """The relay floor in front of its own ipykernel home, joined by Unix sockets as
    pxkernel joins its home. Returns the relay (a Kernel), or None when not built."""
    if not os.access(a.relay_floor, os.X_OK):
        log(f"no relay floor at {a.relay_floor}: its figures are skipped "
            f"(cargo build --release -p pxkernel-kernel --example relay_floor)")
        return None
    key = uuid.uuid4().hex
    home_cf = Path(env["JUPYTER_RUNTIME_DIR"]) / "relay-home.json"
    home_cf.write_text(json.dumps({
        "transport": "ipc", "ip": str(tmp / "rh"), "shell_port": 1, "iopub_port": 2,
        "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": key,
        "signature_scheme": "hmac-sha256", "kernel_name": "python3"}))
    home_env = kernel_env(env, tmp, "relay_home")
    home_env["JPY_PARENT_PID"] = str(os.getpid())
    with open(tmp / "work" / "relay-home.log", "wb") as logf:
        home = subprocess.Popen([a.python, "-m", "ipykernel_launcher", "-f", str(home_cf)],
                                env=home_env, cwd=str(tmp / "work"), stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    home_proc = psutil.Process(home.pid)
    track(home_proc)
    spec = {"argv": [a.relay_floor, "-f", "{connection_file}", "--home", str(home_cf)],
            "dir": str(tmp)}
    relay = Kernel("relay_floor", spec, kernel_env(env, tmp, "relay_floor"), str(tmp / "work"),
                   "rt-relay-floor")
    relay.key = key
    relay.start(a.start_timeout)
    relay.home_proc = home_proc
    return relay


def start_curve(a, tmp, env, spec):
    """The second pxkernel, reached with CurveZMQ. Returns it (a CurveKernel), or None
    with --no-curve or when this pxkernel or pyzmq has no CURVE."""
    if a.no_curve:
        return None
    if "curve" not in spec.get("metadata", {}).get("supported_encryption", []):
        log("pxkernel's kernelspec does not declare supported_encryption curve: "
            "the CURVE figures are skipped")
        return None
    if not zmq.has("curve"):
        log("this pyzmq's libzmq has no CURVE: the CURVE figures are skipped")
        return None
    k = CurveKernel("pxkernel_curve", spec, kernel_env(env, tmp, "pxkernel_curve"), str(tmp / "work"),
                    "rt-pxkernel-curve")
    k.start(a.start_timeout)
    return k


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
    relay = start_relay_floor(a, tmp, env)
    curve = start_curve(a, tmp, env, specs["pxkernel"])
    kernels = (px, ipk) + tuple(k for k in (relay, curve) if k)
    # first cell through pxkernel (and the relay) waits for its home kernel
    for k in kernels:
        k.execute("pass", a.start_timeout)
    if curve:
        for p in curve.descendants():
            track(p)
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
        for k in kernels:
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
        samples = {k.kind: [] for k in kernels}
        bad = {k.kind: 0 for k in kernels}
        noise = Noise()
        cpu = {k.kind: CpuMeter(k.pid) for k in kernels}
        if home_pid:
            cpu["home"] = CpuMeter(home_pid)
        for i in range(a.reps):
            order = kernels if i % 4 in (0, 3) else kernels[::-1]   # ABBA
            for k in order:
                t, out = k.execute(code, cell_to)
                samples[k.kind].append(t * 1e3)
                if label == "print100" and out != PRINT100_OUT:
                    bad[k.kind] += 1
        fc = noise.foreign_cores()
        used = {k: m.stop() for k, m in cpu.items()}
        for kind in samples:
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
             relay_floor=per.get("relay_floor", "nan"),
             pxkernel_ticks=round(used["pxkernel"][1] * 1e3 / a.reps, 4),
             source=used["pxkernel"][2], foreign_cores=fc)
        results[("rt", label)] = (med_p, med_i, pct(sp, 90), pct(si, 90))
        results[("cpu", label)] = per["pxkernel"]
        if "relay_floor" in per:
            results[("floor_cpu", label)] = per["relay_floor"]
        if curve:
            sc = samples[curve.kind]
            med_c = statistics.median(sc)
            line("curve_overhead_ms", cell=label, reps=len(sc),
                 median_diff=round(med_c - med_p, 3),
                 paired_median_diff=round(statistics.median([x - y for x, y in zip(sc, sp)]), 3),
                 ratio=round(med_c / med_p, 3),
                 cpu_ms_per_cell=per[curve.kind], cpu_ms_per_cell_plain=per["pxkernel"],
                 cpu_ratio=round(per[curve.kind] / per["pxkernel"], 3) if per["pxkernel"] else "nan",
                 foreign_cores=fc)
            results[("curve", label)] = (med_c, med_p, per[curve.kind], per["pxkernel"])

    m = mem_of([px.pid])
    line("mem_mib", proc="pxkernel", cells=px.cells, **m, threads=psutil.Process(px.pid).num_threads())
    results["rss"] = (m["rss"], px.cells)
    if home_pid:
        line("mem_mib", proc="home_ipykernel", cells=px.cells, **mem_of([home_pid]))
    line("mem_mib", proc="ipykernel", cells=ipk.cells, **mem_of([ipk.pid]))
    for k in kernels[1:]:
        dt, killed = k.stop()
        if killed:
            line("leftover_procs", phase="roundtrip", kernel=k.kind, n=killed)
    if relay:
        # The relay's home is the bench's own child: the relay passed it the shutdown
        # request; give it the same time to exit before anything is killed.
        _, alive = psutil.wait_procs([relay.home_proc], timeout=10.0)
        if alive:
            line("leftover_procs", phase="roundtrip", kernel="relay_floor_home", n=1)

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
            floor = ""
            if ("floor_cpu", label) in results:
                f = results[("floor_cpu", label)]
                floor = f"  (relay floor {f:.4f}: handling adds {c - f:+.4f})"
            print(f"#   {label:8s} pxkernel CPU {c:.4f} ms/cell  goal <= {g} ms  {verdict(c <= g)}{floor}",
                  flush=True)
    for label, _ in CELLS:
        if ("curve", label) in results:
            mc, mp, cc, cp = results[("curve", label)]
            print(f"#   {label:8s} with CURVE   {mc:7.3f} ms vs {mp:7.3f} ms  {mc - mp:+.3f} ms ({mc / mp:.2f}x)  "
                  f"CPU {cc:.4f} vs {cp:.4f} ms/cell  (no goal)", flush=True)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pxkernel", default=str(REPO / "target" / "release" / "pxkernel"),
                    help="pxkernel binary (default: target/release/pxkernel of this repo)")
    ap.add_argument("--relay-floor", default=str(REPO / "target" / "release" / "examples" / "relay_floor"),
                    help="relay floor binary (default: target/release/examples/relay_floor; skipped if absent)")
    ap.add_argument("--python", default=sys.executable,
                    help="Python whose ipykernel is the home kernel and the comparison (default: this one)")
    ap.add_argument("--reps", type=int, help="timed cells per kernel and cell type (default 500, quick 40)")
    ap.add_argument("--warmup", type=int, help="untimed cells per kernel first (default 30, quick 5)")
    ap.add_argument("--starts", type=int, help="timed starts per kernel (default 10, quick 2)")
    ap.add_argument("--soak", type=int, help="extra `pass` cells through pxkernel alone before its memory "
                    "is measured again (default 5000, quick 0)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run under 30 s")
    ap.add_argument("--no-curve", action="store_true",
                    help="leave out the pxkernel reached with CurveZMQ (and the curve_overhead_ms figure)")
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

    install_cleanup("kernel_bench", a.timeout)
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
