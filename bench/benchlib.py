"""What the benchmark scripts share: output lines, statistics, CPU and noise
meters read from /proc, and process hygiene (every process a run starts is
recorded with its create time and, if still alive at the end, killed by PID,
never by name)."""

import os
import statistics
import sys
import time

import psutil

TCK = os.sysconf("SC_CLK_TCK")

_tracked = {}      # pid -> (psutil.Process, create_time); the scripts' cleanup reads it


def log(*a):
    print("#", *a, file=sys.stderr, flush=True)


def line(name, **fields):
    print(" ".join([name] + [f"{k}={v}" for k, v in fields.items()]), flush=True)


def pct(data, p):
    s = sorted(data)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(xs, nd=3):
    if not xs:
        return dict(reps=0)
    return dict(
        reps=len(xs),
        median=round(statistics.median(xs), nd),
        p90=round(pct(xs, 90), nd),
        min=round(min(xs), nd),
        max=round(max(xs), nd),
        mean=round(statistics.fmean(xs), nd),
    )


def stat_cpu_s(pid):
    """utime+stime of the process (all its threads, dead ones too), in s; tick resolution."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TCK


def sched_cpu_ns(pid):
    """{tid: on-CPU ns} from /proc/<pid>/task/*/schedstat (ns resolution), or None."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            if not os.path.exists(f"/proc/{pid}/task/{tid}/schedstat"):
                return None
    return out


class CpuMeter:
    """CPU seconds one process used between start() and stop().

    The precise figure sums per-thread schedstat deltas; a thread that exited in
    between is missing from it, so it is cross-checked against the tick-based
    utime+stime (which counts every thread) and the larger one is used when they
    disagree by more than two ticks."""

    def __init__(self, pid):
        self.pid = pid
        self.s0 = stat_cpu_s(pid)
        self.t0 = sched_cpu_ns(pid)

    def stop(self):
        stat = stat_cpu_s(self.pid) - self.s0
        t1 = sched_cpu_ns(self.pid)
        if self.t0 is None or t1 is None:
            return stat, stat, "stat"
        sched = sum(v - self.t0.get(tid, 0) for tid, v in t1.items()) / 1e9
        lost = [tid for tid in self.t0 if tid not in t1]
        if lost and stat - sched > 2.0 / TCK:
            return stat, stat, "stat"
        return sched, stat, "schedstat"


def busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / TCK


def ours_s():
    me = psutil.Process()
    t = 0.0
    for p in [me] + me.children(recursive=True):
        try:
            c = p.cpu_times()
            t += c.user + c.system + c.children_user + c.children_system
        except psutil.Error:
            pass
    return t


class Noise:
    """foreign_cores = (busy CPU of the machine - CPU of this script's tree) / wall time."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.b0 = busy_s()
        self.o0 = ours_s()

    def foreign_cores(self):
        dt = time.perf_counter() - self.t0
        f = (busy_s() - self.b0) - (ours_s() - self.o0)
        return round(max(f, 0.0) / dt, 2) if dt > 0 else 0.0


def track(proc):
    try:
        _tracked.setdefault(proc.pid, (proc, proc.create_time()))
    except psutil.Error:
        pass


def track_tree(pid):
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return []
    for p in procs:
        track(p)
    return procs


def kill_by_pid(entries, grace=3.0):
    """TERM, then KILL, the given (Process, create_time) pairs still alive and still the same."""
    procs = []
    for p, ct in entries:
        try:
            if (p.is_running() and abs(p.create_time() - ct) < 0.01
                    and p.status() != psutil.STATUS_ZOMBIE):
                procs.append(p)
        except psutil.Error:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return len(procs)


def mem_of(pids):
    """Summed RSS / PSS / USS in MiB (and VmHWM of a single process)."""
    mb = 1024 * 1024
    rss = pss = uss = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            try:
                fi = p.memory_full_info()
                rss, pss, uss = rss + fi.rss, pss + getattr(fi, "pss", 0), uss + fi.uss
            except psutil.AccessDenied:
                rss += p.memory_info().rss
        except psutil.Error:
            pass
    out = {"rss": round(rss / mb, 2), "pss": round(pss / mb, 2), "uss": round(uss / mb, 2)}
    if len(pids) == 1:
        try:
            with open(f"/proc/{pids[0]}/status") as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        out["hwm"] = round(int(ln.split()[1]) * 1024 / mb, 2)
        except OSError:
            pass
    return out
