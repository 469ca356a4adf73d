"""The floor under `%px` on SSH engines: the same work with nothing of pxkernel in the way.

Per host, a ControlMaster of the bench's own (`ssh -M -S SOCK -N HOST`, the user's
ssh_config: pxc through pxa), ipykernels started on the host over it in a
directory of their own, each binding `ipc` sockets there (as pxkernel's SSH
engines do), and those sockets forwarded to Unix sockets here with
`ssh -O forward -L LOCAL:REMOTE`. The engines are then driven by px_floor's bare
Rust client (`px_floor --serve --connect FILE ...`, kernel/examples/px_floor.rs)
through local connection files. `FloorEngines.stop()` ends the engines' process
groups on each host, removes their directories and closes the masters.
"""

import json
import secrets
import subprocess
import time
from pathlib import Path

import psutil

from benchlib import log, track

CHANNELS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}

LAUNCH = r'''set -u
PY={python}
D=$(mktemp -d "${{TMPDIR:-/tmp}}/pxf-XXXXXXXX") || exit 1
echo "dir $D"
i=0
while read -r json; do
  printf '%s\n' "$json" > "$D/f$i.json"
  (cd "$D" && exec setsid "$PY" -m ipykernel_launcher -f "$D/f$i.json" \
     --HistoryManager.hist_file=:memory: >"$D/f$i.log" 2>&1 </dev/null) &
  echo "pid $i $!"
  i=$((i + 1))
done
end=$(( $(date +%s) + {wait} ))
j=0
while [ "$j" -lt "$i" ]; do
  if [ -S "$D/f$j-1" ] && [ -S "$D/f$j-2" ] && [ -S "$D/f$j-3" ] && [ -S "$D/f$j-4" ] && [ -S "$D/f$j-5" ]; then
    j=$((j + 1))
  elif [ "$(date +%s)" -ge "$end" ]; then
    echo "failed $j"; tail -n 5 "$D/f$j.log"; exit 1
  else
    sleep 0.05
  fi
done
echo ready
'''


class FloorEngines:
    """`per_host` ipykernels on each of `hosts` (ssh destinations), reached through
    Unix-socket forwards on masters of our own; `files` are their local connection files."""

    def __init__(self, hosts, per_host, python, tmp, timeout=120.0):
        self.hosts, self.per_host, self.python = list(hosts), per_host, python
        self.tmp = Path(tmp) / "floor-ssh"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.masters = {}    # host -> (socket path, Popen)
        self.batches = {}    # host -> (remote dir, [pids])
        self.files = []

    def _ssh(self, host, *args, stdin=None, timeout=60):
        """`ssh ... HOST ARGS` over the host's master; `-O OP` (a control command) when
        ARGS start with it."""
        sock, _ = self.masters[host]
        base = ["ssh", "-S", str(sock), "-o", "ControlMaster=no", "-o", "BatchMode=yes"]
        argv = [*base, *args, host] if args[0] == "-O" else [*base, "-T", host, *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)

    def _master(self, i, host):
        sock = self.tmp / f"m{i}.sock"
        p = subprocess.Popen(["ssh", "-M", "-S", str(sock), "-N", "-o", "BatchMode=yes",
                              "-o", "ControlPersist=no", "-o", "StreamLocalBindUnlink=yes",
                              "-o", "ServerAliveInterval=3", host],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / f"m{i}.log", "wb"), start_new_session=True)
        track(psutil.Process(p.pid))
        self.masters[host] = (sock, p)
        deadline = time.perf_counter() + 30
        while self._ssh(host, "-O", "check", timeout=10).returncode != 0:
            if p.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"floor: no ssh master to {host}: "
                                   f"{(self.tmp / f'm{i}.log').read_text()[-500:]}")
            time.sleep(0.05)

    def start(self):
        for i, host in enumerate(self.hosts):
            self._master(i, host)
        for i, host in enumerate(self.hosts):
            keys = [secrets.token_hex(32) for _ in range(self.per_host)]
            remote = "".join(json.dumps({"transport": "ipc", "ip": f"f{k}", **CHANNELS, "key": key,
                                         "signature_scheme": "hmac-sha256", "kernel_name": "python3"}) + "\n"
                             for k, key in enumerate(keys))
            script = LAUNCH.format(python=self.python, wait=int(self.timeout))
            out = self._ssh(host, "sh", "-c", _quote(script), stdin=remote, timeout=self.timeout + 30)
            words = [ln.split() for ln in out.stdout.splitlines()]
            d = next((w[1] for w in words if w[:1] == ["dir"]), None)
            pids = [int(w[2]) for w in words if w[:1] == ["pid"]]
            if d:
                self.batches[host] = (d, pids)
            if out.returncode != 0 or ["ready"] not in words:
                raise RuntimeError(f"floor: engines on {host} did not start: {out.stdout[-800:]} {out.stderr[-400:]}")
            forwards = []
            for k, key in enumerate(keys):
                local = self.tmp / f"h{i}-f{k}"
                forwards += [a for c in range(1, 6) for a in ("-L", f"{local}-{c}:{d}/f{k}-{c}")]
                path = self.tmp / f"h{i}-f{k}.json"
                path.write_text(json.dumps({"transport": "ipc", "ip": str(local), **CHANNELS, "key": key,
                                            "signature_scheme": "hmac-sha256", "kernel_name": "python3"}))
                self.files.append(str(path))
            fwd = self._ssh(host, "-O", "forward", *forwards, timeout=30)
            if fwd.returncode != 0:
                raise RuntimeError(f"floor: forwards on {host}: {fwd.stderr.strip()}")
        return self.files

    def stop(self):
        for host, (d, pids) in self.batches.items():
            groups = " ".join(f"-{p}" for p in pids)
            script = (f"kill -s TERM -- {groups} 2>/dev/null; sleep 1; "
                      f"kill -s KILL -- {groups} 2>/dev/null; rm -rf {_quote(d)}")
            try:
                self._ssh(host, "sh", "-c", _quote(script), timeout=30)
            except (OSError, subprocess.SubprocessError) as e:
                log(f"floor: stopping the engines on {host}: {e}")
        self.batches.clear()
        for host, (sock, p) in self.masters.items():
            try:
                self._ssh(host, "-O", "exit", timeout=10)
                p.wait(timeout=10)
            except (OSError, subprocess.SubprocessError):
                p.kill()
                p.wait(timeout=10)
        self.masters.clear()


def _quote(s):
    return "'" + s.replace("'", "'\\''") + "'"
