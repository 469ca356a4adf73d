"""Run notebooks/remote.ipynb against real SSH hosts on this machine: the test
hosts of tests/hosts (network namespaces, each with its own sshd and user), a
Jupyter server bound to pxa's own loopback, and a PostgreSQL with TLS on pxa's
own loopback holding the AUG31 table. Everything is torn down afterwards.

The hosts need root (namespaces, users, sshd). Elsewhere this says what it
skipped and how to point the notebook at real hosts, and exits 0.

    python scripts/remote_demo.py --output-dir build/demo
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hosts"))
sys.path.insert(0, str(ROOT / "tests" / "python"))

import testhosts  # noqa: E402
from pg_server import postgres_server, unavailable_reason as pg_unavailable  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "remote.ipynb"
JUPYTER_PORT = 8889

AUG31 = """
CREATE TABLE aug31 (hour int, station text, temperature numeric(4,1), rain_mm numeric(4,1), sunny boolean, observed timestamp);
INSERT INTO aug31 VALUES
  (6, 'Harbor', 14.2, 0.0, true, '2026-08-31 06:00'), (9, 'Harbor', 17.8, 0.0, true, '2026-08-31 09:00'),
  (12, 'Harbor', 21.5, 0.4, false, '2026-08-31 12:00'), (15, 'Harbor', 19.9, 3.1, false, '2026-08-31 15:00'),
  (6, 'Summit', 4.1, 0.0, true, '2026-08-31 06:00'), (12, 'Summit', 9.6, 1.2, false, '2026-08-31 12:00');
"""


def skipped(why: str) -> int:
    if os.environ.get("PXKERNEL_REQUIRE_ALL", "") not in ("", "0"):
        print(f"==> {NOTEBOOK.relative_to(ROOT)} cannot run here: {why}", file=sys.stderr)
        return 1
    print(f"==> skipped {NOTEBOOK.relative_to(ROOT)}: {why}")
    print("    To run it against real hosts, edit its host names (pxa, pxb) to hosts of your")
    print("    ~/.ssh/config, and set PXK_DEMO_TOKEN (a Jupyter server's token on pxa:8889)")
    print("    and PGPASSWORD (a PostgreSQL on pxa's localhost:5432 with the AUG31 table).")
    return 0


def wait_http(netns: str, url: str, limit: float = 60) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c",
                            f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"],
                           capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit(f"the Jupyter server on the test host did not answer at {url}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", default="build/demo")
    args = ap.parse_args()
    reason = testhosts.unavailable_reason() or pg_unavailable()
    if reason:
        return skipped(reason)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = tempfile.mkdtemp(prefix="pxk-hosts-", dir="/tmp")
    jupyter = None
    try:
        hosts = testhosts.up(d)
        pxa = hosts["pxa"]
        token = secrets.token_hex(16)
        venv_bin = Path(sys.executable).parent
        jupyter = subprocess.Popen(
            ["ip", "netns", "exec", pxa.netns, str(venv_bin / "jupyter-server"),
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={JUPYTER_PORT}", "--ServerApp.open_browser=False",
             f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={d}"],
            stdout=subprocess.DEVNULL, stderr=open(Path(d) / "jupyter-server.log", "w"),
        )
        wait_http(pxa.netns, f"http://127.0.0.1:{JUPYTER_PORT}/api")
        with postgres_server(netns=pxa.netns) as pg:
            pg.psql(AUG31)
            env = dict(os.environ, PXK_DEMO_TOKEN=token, PGPASSWORD=pg.password)
            print(f"==> jupyter nbconvert --execute {NOTEBOOK.relative_to(ROOT)} (hosts pxa, pxb, pxc)")
            run = subprocess.run(
                [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                 "--ExecutePreprocessor.kernel_name=pxkernel", "--ExecutePreprocessor.timeout=300",
                 "--output-dir", str(out_dir), str(NOTEBOOK)],
                env=env,
            )
            if run.returncode:
                return run.returncode
        return 0
    finally:
        if jupyter is not None:
            jupyter.terminate()
            try:
                jupyter.wait(10)
            except subprocess.TimeoutExpired:
                jupyter.kill()
        testhosts.down(d)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
