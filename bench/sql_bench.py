"""%sql benchmarks against a real PostgreSQL (TLS), side by side in one run.

1. 1,000,000 rows x 4 columns (int, float, text, timestamp) into a pandas
   DataFrame in the home kernel: `df << %sql SELECT ...` through pxkernel vs
   `pandas.read_sql(...)` through SQLAlchemy + psycopg2 in the same home kernel,
   interleaved. Goal: pxkernel <= 0.5x.
2. First table of a 10,000,000-row `SELECT *` on screen: from sending the cell
   to the arrival of its first execute_result (the table), through pxkernel.
   Goal: <= 100 ms.

Needs root (the server runs as the postgres user), the postgresql package, and
a Python with jupyter_client, ipykernel, pandas, SQLAlchemy, psycopg2.

    python bench/sql_bench.py [--reps 3] [--rows 1000000] [--big-rows 10000000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))

from pg_server import postgres_server, unavailable_reason  # noqa: E402

from benchlib import line  # noqa: E402


VERBOSE = bool(os.environ.get("SQL_BENCH_VERBOSE"))


def stats(xs):
    xs = sorted(xs)
    return {"median": round(statistics.median(xs), 3), "min": round(xs[0], 3), "max": round(xs[-1], 3)}


class Kernel:
    """pxkernel via jupyter_client, with helpers that time cells."""

    def __init__(self):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=120)

    def run(self, code, timeout=600, first=None):
        """Run a cell; returns (seconds to reply+idle, seconds to the first `first` msg type, reply)."""
        if VERBOSE:
            print(f"# run: {code[:80]!r}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        t_first = None
        reply = None
        idle = False
        while reply is None or not idle:
            if reply is None:
                try:
                    r = self.kc.get_shell_msg(timeout=0.005)
                    if r["parent_header"].get("msg_id") == msg_id:
                        reply = r["content"]
                except Exception:
                    pass
            if reply is not None and idle:
                break
            try:
                m = self.kc.get_iopub_msg(timeout=0.005 if reply is None else timeout)
            except Exception:
                continue
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if first and t_first is None and m["msg_type"] == first:
                t_first = time.perf_counter() - t0
            if m["msg_type"] == "error":
                print(f"# error: {m['content']['ename']}: {m['content']['evalue']}", file=sys.stderr)
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                idle = True
        return time.perf_counter() - t0, t_first, reply

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pxkernel", default=str(ROOT / "target" / "release" / "pxkernel"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="100k / 1M rows, 1 rep")
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    if args.quick:
        args.reps, args.rows, args.big_rows = 1, 100_000, 1_000_000
    reason = unavailable_reason()
    if reason:
        print(f"# skipped: {reason}")
        return 0
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("benchmark timed out")))
    signal.alarm(args.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="pxk-sqlbench-"))
    os.environ.update(
        JUPYTER_PATH=str(tmp / "share" / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        IPYTHONDIR=str(tmp / "ipython"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    )
    for k in ("PXKERNEL_LOG", "PXKERNEL_LOG_FILE", "DATABASE_URL"):
        os.environ.pop(k, None)
    subprocess.run([args.pxkernel, "install", "--prefix", str(tmp)], check=True, capture_output=True)
    import pandas, sqlalchemy, psycopg2  # noqa: F401,E401  (fail early when missing)

    line("env", python=sys.version.split()[0], pandas=pandas.__version__, sqlalchemy=sqlalchemy.__version__,
         psycopg2=psycopg2.__version__.split()[0], rows=args.rows, big_rows=args.big_rows)
    with postgres_server() as pg:
        t = time.perf_counter()
        pg.psql(
            f"CREATE TABLE million AS SELECT g AS id, (g * 0.5)::float8 AS x, 'row number ' || g AS label, "
            f"timestamptz '2026-01-01' + g * interval '1 second' AS at FROM generate_series(1, {args.rows}) g; "
            f"CREATE TABLE big AS SELECT g AS id, g * 1.5 AS x, md5(g::text) AS label "
            f"FROM generate_series(1, {args.big_rows}) g; ANALYZE"
        )
        line("setup_s", seconds=round(time.perf_counter() - t, 1))
        url = pg.url("require")
        k = Kernel()
        try:
            k.run(f"%sql {url} --alias pg")
            k.run("import pandas, sqlalchemy\n"
                  f"engine = sqlalchemy.create_engine({url.replace('postgresql://', 'postgresql+psycopg2://')!r})")
            # Warm both paths (helper install, imports, connection pools).
            k.run("_w << %sql SELECT * FROM million LIMIT 10")
            k.run("_w = pandas.read_sql('SELECT * FROM million LIMIT 10', engine)")
            ours, theirs = [], []
            for _ in range(args.reps):
                s, _, r = k.run("df << %sql SELECT * FROM million")
                assert r["status"] == "ok", r
                ours.append(s)
                s, _, r = k.run("df2 = pandas.read_sql('SELECT * FROM million', engine)")
                assert r["status"] == "ok", r
                theirs.append(s)
            s, _, r = k.run(f"assert df.shape == df2.shape == ({args.rows}, 4), (df.shape, df2.shape)\n"
                            "assert int(df['id'].sum()) == int(df2['id'].sum())\n"
                            "print(df.dtypes.to_dict(), df2.dtypes.to_dict())")
            assert r["status"] == "ok", r
            o, p = stats(ours), stats(theirs)
            line("sql_to_dataframe_s", system="pxkernel", rows=args.rows, reps=args.reps, **o)
            line("sql_to_dataframe_s", system="pandas_read_sql_psycopg2", rows=args.rows, reps=args.reps, **p)
            ratio = o["median"] / p["median"]
            line("sql_to_dataframe_ratio", ratio=round(ratio, 3))
            firsts = []
            for _ in range(max(args.reps, 3)):
                total, first, r = k.run("%sql SELECT * FROM big", first="execute_result")
                assert r["status"] == "ok", r
                firsts.append(first * 1000)
            f = stats(firsts)
            line("first_table_ms", rows=args.big_rows, reps=len(firsts), **f)
            print("#")
            print(f"# {args.rows} rows into a DataFrame: pxkernel {o['median']:.2f} s, "
                  f"pandas.read_sql {p['median']:.2f} s, ratio {ratio:.2f} (goal <= 0.5) "
                  f"{'PASS' if ratio <= 0.5 else 'MISS'}")
            print(f"# first table of a {args.big_rows}-row SELECT *: {f['median']:.1f} ms (goal <= 100) "
                  f"{'PASS' if f['median'] <= 100 else 'MISS'}")
        finally:
            k.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
