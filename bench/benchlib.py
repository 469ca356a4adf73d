"""What the benchmark scripts share: output lines, statistics, CPU and noise
meters read from /proc, and process hygiene (every process a run starts is
recorded with its create time and, if still alive at the end, killed by PID,
never by name)."""

import atexit
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session

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


def ratio(a, b, nd=3):
    """a / b, rounded; NaN when b is 0."""
    return round(a / b, nd) if b else float("nan")


def sha256_12(path):
    """The first 12 hex digits of a file's SHA-256 (which binary was measured)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


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


# ---------------------------------------------------------------------------
# running things, and stopping every one of them
# ---------------------------------------------------------------------------

_live = []         # started objects with .kind and .stop(quiet=...), until stopped
_ctx = None


def zmq_context():
    global _ctx
    if _ctx is None:
        _ctx = zmq.Context()
    return _ctx


def wait_gone(entries, timeout):
    """Wait until the given (Process, create_time) pairs have exited; returns those still alive."""
    procs = [p for p, _ in entries]
    _, alive = psutil.wait_procs(procs, timeout=max(0.0, timeout))
    return [(p, ct) for p, ct in entries if p in alive]


def cleanup():
    """Stop everything still live, kill what is left by PID, close the zmq context."""
    global _ctx
    signal.alarm(0)
    for k in list(_live):
        try:
            k.stop(quiet=True)
        except Exception as e:  # noqa: BLE001 - keep cleaning up
            log(f"cleanup: stopping {k.kind}: {e}")
    left = list(_tracked.values())
    names = []
    for p, _ in left:
        try:
            names.append(f"{p.pid}:{' '.join(p.cmdline()[:4])}")
        except psutil.Error:
            pass
    n = kill_by_pid(left)
    if n:
        log(f"cleanup: stopped {n} leftover process(es) by PID ({'; '.join(names)})")
    _tracked.clear()
    if _ctx is not None:
        _ctx.destroy(linger=0)
        _ctx = None


def install_cleanup(script, timeout):
    """cleanup() at exit, on SIGTERM/SIGINT/SIGHUP, and when the hard `timeout` (s) fires."""
    def on_signal(signum, frame):
        raise SystemExit(f"{script}: got signal {signum}, cleaning up")
    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, on_signal)
    signal.alarm(max(1, int(timeout)))


def stop_tree(owner, pids, ask_to_quit, how, timeout, quiet):
    """Stop `owner.proc` and the processes `pids` (its tree): ask_to_quit(), wait for
    all of them, then kill what is left by PID. Returns (seconds until all were
    gone, number of processes that had to be killed)."""
    proc = owner.proc
    entries = [(p, ct) for p, ct in _tracked.values() if p.pid in pids]
    rest = [e for e in entries if e[0].pid != proc.pid]
    t0 = time.perf_counter()
    try:
        if proc.poll() is None:
            ask_to_quit()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        wait_gone(rest, t0 + timeout - time.perf_counter())
    except Exception as e:  # noqa: BLE001 - fall through to killing by PID
        if not quiet:
            log(f"{owner.kind}: shutdown failed: {e}")
    dt = time.perf_counter() - t0
    killed = 0
    if proc.poll() is None:
        proc.kill()
        killed += 1
    proc.wait()
    killed += kill_by_pid(rest)
    for p, _ in entries:
        _tracked.pop(p.pid, None)
    if owner in _live:
        _live.remove(owner)
    if killed and not quiet:
        log(f"{owner.kind}: {killed} process(es) did not exit after {how}; killed by PID")
    return dt, killed


class KernelProcess:
    """One kernel process started from a kernelspec, with a notebook-like client.

    The client's sockets are plain zmq sockets carrying jupyter_client Session
    messages (what BlockingKernelClient does, without its machinery). Subclasses
    add how a cell is executed and timed."""

    conn_prefix = "bench"    # connection files are <runtime>/<prefix>-<tag>.json

    def __init__(self, kind, spec, env, workdir, tag):
        self.kind = kind
        self.spec = spec
        self.env = env
        self.workdir = workdir
        self.tag = tag
        self.proc = None
        self.shell = self.iopub = self.control = None
        self.key = None    # the connection file's key (default: a fresh one)

    def connection_extra(self):
        """More fields for the connection file (a subclass's CurveZMQ keys)."""
        return {}

    def secure_socket(self, s):
        """Set a client socket's security before it connects (a subclass's CURVE)."""

    def spawn(self):
        """Write a connection file, connect shell, start the process. Returns t0."""
        rt = Path(self.env["JUPYTER_RUNTIME_DIR"])
        cf, info = write_connection_file(
            fname=str(rt / f"{self.conn_prefix}-{self.tag}.json"), ip="127.0.0.1",
            key=(self.key or uuid.uuid4().hex).encode(), transport="tcp",
            signature_scheme="hmac-sha256", kernel_name=self.kind, **self.connection_extra())
        self.cf = cf
        key = info["key"] if isinstance(info["key"], bytes) else info["key"].encode()
        self.session = Session(key=key, signature_scheme="hmac-sha256", username="bench")
        self.ports = info
        self.shell = self._socket(zmq.DEALER, info["shell_port"], identity=True)
        argv = [a.replace("{connection_file}", cf).replace("{resource_dir}", self.spec["dir"])
                for a in self.spec["argv"]]
        env = dict(self.env)
        env.update({k: os.path.expandvars(v) for k, v in self.spec.get("env", {}).items()})
        env["JPY_PARENT_PID"] = str(os.getpid())
        self.logpath = Path(self.workdir) / f"{self.tag}.log"
        with open(self.logpath, "wb") as logf:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        track(psutil.Process(self.pid))
        _live.append(self)
        return t0

    def _socket(self, kind, port, identity=False):
        s = zmq_context().socket(kind)
        s.linger = 0
        # Retry a refused connect every 2 ms, not the 100 ms default, so that
        # start-up figures measure the kernel, not the client's retry timer.
        s.setsockopt(zmq.RECONNECT_IVL, 2)
        self.secure_socket(s)
        if identity:
            s.identity = self.session.bsession
        if kind == zmq.SUB:
            s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(f"tcp://127.0.0.1:{port}")
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

    def run_cell(self, code, timeout, on_output, on_stray=None):
        """Send one notebook-style execute_request; wait for its reply AND its idle.

        on_output(msg) sees each iopub message of this request as it arrives,
        on_stray(msg) each iopub message of another request. Returns (seconds
        until both the reply and idle arrived, the request's msg_id, the reply content)."""
        shell, iopub = self.shell, self.iopub
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        content = {"code": code, "silent": False, "store_history": True,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        t0 = time.perf_counter()
        msg_id = self.send(shell, "execute_request", content)
        deadline = t0 + timeout
        t_reply = t_idle = reply = None
        while t_reply is None or t_idle is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self._check_alive()
                raise TimeoutError(f"{self.kind}: cell {code[:60]!r} took over {timeout}s")
            events = dict(poller.poll(int(remaining * 1000) + 1))
            for sock in (iopub, shell):
                while sock in events:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.perf_counter()
                    _, f = self.session.feed_identities(frames)
                    m = self.session.deserialize(f)
                    mine = m["parent_header"].get("msg_id") == msg_id
                    if sock is shell:
                        if mine:
                            t_reply, reply = now - t0, m["content"]
                    elif not mine:
                        if on_stray is not None:
                            on_stray(m)
                    else:
                        on_output(m)
                        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                            t_idle = now - t0
        return max(t_reply, t_idle), msg_id, reply

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
        pids = {self.pid} | {p.pid for p in track_tree(self.pid)}

        def ask():
            if self.control is None:
                self.control = self._socket(zmq.DEALER, self.ports["control_port"], identity=True)
            self.send(self.control, "shutdown_request", {"restart": False})

        result = stop_tree(self, pids, ask, "shutdown_request", timeout, quiet)
        for s in (self.shell, self.iopub, self.control):
            if s is not None:
                s.close(linger=0)
        self.shell = self.iopub = self.control = None
        try:
            os.unlink(self.cf)
        except OSError:
            pass
        self.proc = None
        return result


# ---------------------------------------------------------------------------
# kernelspecs and the environment every script's kernels run in
# ---------------------------------------------------------------------------

def bench_env(tmp, python, drop=(), **extra):
    """A python3 kernelspec (this Python's ipykernel) under TMP/share/jupyter, and the
    environment that finds it first: temp Jupyter and IPython dirs under TMP, this
    Python's bin dir first on PATH (the home `python3`), without the variables in
    DROP or pxkernel's own settings, with EXTRA set. Returns (env, the data dir)."""
    data = tmp / "share" / "jupyter"
    py_dir = data / "kernels" / "python3"
    py_dir.mkdir(parents=True)
    (py_dir / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "metadata": {"debugger": True},
    }))
    env = dict(os.environ)
    for var in ("PXKERNEL_LOG", "PXKERNEL_LOG_FILE", "PXKERNEL_HOME", "PXKERNEL_LANGUAGE_INFO",
                "PXKERNEL_HOME_SPEC", "PXKERNEL_HOME_PYTHON", *drop):
        env.pop(var, None)
    env.update(
        JUPYTER_PATH=str(data),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        IPYTHONDIR=str(tmp / "ipython"),
        PATH=os.path.dirname(python) + os.pathsep + env.get("PATH", ""),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        **extra,
    )
    for d in ("runtime", "data", "config", "ipython", "work"):
        (tmp / d).mkdir(exist_ok=True)
    return env, data


def kernelspec_of(data, name):
    """The kernel.json of kernelspec NAME under DATA, with its directory as "dir"."""
    d = data / "kernels" / name
    spec = json.loads((d / "kernel.json").read_text())
    spec["dir"] = str(d)
    return spec


def install_pxkernel(exe, tmp, env, name="pxkernel", label="pxkernel"):
    """`EXE install --prefix TMP --name NAME` in ENV; its warnings are logged.
    Returns the installed kernelspec."""
    r = subprocess.run([str(exe), "install", "--prefix", str(tmp), "--name", name], env=env,
                       cwd=str(tmp), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{label}: pxkernel install failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    if r.stderr.strip():
        log(f"{label}: pxkernel install:", r.stderr.strip())
    return kernelspec_of(tmp / "share" / "jupyter", name)
