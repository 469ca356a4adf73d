#!/usr/bin/env python3
"""Instructions pxkernel executes per plain cell, counted by valgrind (callgrind).

Wall time and CPU seconds on a shared VM drift by 2x within minutes; an
instruction count does not: the same binary and cells give the same count
whatever else the machine does. Use it to tell whether a change to the
per-message path made pxkernel cheaper, before timing it with kernel_bench.py.

pxkernel runs under `valgrind --tool=callgrind` twice, for FEW and MANY `pass`
cells (after the same start-up), and the difference of the two totals divided
by MANY - FEW is the figure: start-up and shutdown cancel out.

    python bench/instr_bench.py [--pxkernel target/release/pxkernel] [--few 50] [--many 550]
                                [--cell "print('x'*100)"] [--profile callgrind.out]

Note: valgrind hides SHA extensions from the program, so HMAC runs in
software under it (about half the count); natively it costs a few percent.
Needs valgrind, jupyter_client and ipykernel.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent


def total_instructions(out_dir: Path) -> int:
    """The `summary:` line of the one callgrind output file in out_dir."""
    [f] = list(out_dir.glob("callgrind.out.*"))
    for text in f.read_text(errors="replace").splitlines():
        m = re.match(r"(summary|totals): (\d+)", text)
        if m:
            return int(m.group(2))
    raise RuntimeError(f"no summary in {f}")


def run(tmp: Path, binary: Path, cells: int, code: str, keep: Path | None = None) -> int:
    out_dir = Path(tempfile.mkdtemp(dir=tmp, prefix="cg-"))
    spec_dir = tmp / "share" / "jupyter" / "kernels" / "pxkernel-callgrind"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["valgrind", "--tool=callgrind", "--quiet",
                 f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                 str(binary), "kernel", "-f", "{connection_file}"],
        "display_name": "pxkernel under callgrind",
        "language": "python",
        "interrupt_mode": "message",
    }))
    km = KernelManager(kernel_name="pxkernel-callgrind")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=300)
        for _ in range(cells):
            reply = kc.execute_interactive(code, timeout=60, output_hook=lambda _m: None)
            assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    if keep is not None:
        [f] = list(out_dir.glob("callgrind.out.*"))
        shutil.copyfile(f, keep)
    return total_instructions(out_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pxkernel", default=str(REPO / "target/release/pxkernel"))
    ap.add_argument("--few", type=int, default=50)
    ap.add_argument("--many", type=int, default=550)
    ap.add_argument("--cell", default="pass", help="the cell's code (default: pass)")
    ap.add_argument("--profile", type=Path,
                    help="keep the MANY run's callgrind file here (for callgrind_annotate)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found (Debian package valgrind)")
    binary = Path(args.pxkernel).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="pxk-instr-"))
    try:
        # The python3 home kernel is this Python's ipykernel; nothing under ~ is touched.
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp)],
                       check=True, capture_output=True)
        for var, sub in [("JUPYTER_PATH", "share/jupyter"), ("JUPYTER_RUNTIME_DIR", "rt"),
                         ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_CONFIG_DIR", "config"),
                         ("IPYTHONDIR", "ipython")]:
            os.environ[var] = str(tmp / sub)
        for var in [v for v in os.environ if v.startswith("PXKERNEL_LOG")]:
            del os.environ[var]
        few = run(tmp, binary, args.few, args.cell)
        many = run(tmp, binary, args.many, args.cell, args.profile)
        per_cell = (many - few) / (args.many - args.few)
        print(f"instructions_per_cell cell={args.cell!r} few={args.few} many={args.many} "
              f"total_few={few} total_many={many} per_cell={per_cell:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
