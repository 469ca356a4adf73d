"""%px when engines misbehave: killed or frozen mid-cell, never starting, ignoring
interrupts, hanging, flooding output, sending bytes that are not UTF-8; and a
shutdown while engines are busy. fake_engine.py is the misbehaving kernel.

Time limits here only turn a hang into a failure; they are far above what the
behaviour needs. Engines that must still be running when the test acts wait for
a flag file (or their own first output) instead of sleeping a guessed time."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from queue import Empty

import psutil
import pytest

from kernel_helpers import (
    alive,
    control_kernel_info,
    descendants,
    engine_tracebacks,
    engines_table,
    error_of,
    execute,
    finish,
    heartbeat_echo,
    home_pid,
    is_tagged,
    kernel_pid,
    notebook_env,
    pxkernel,
    pxkernel_started,
    read_until,
    shell_reply,
    stdout_of,
    tagged_lines,
    wait_gone,
    wait_reaped,
    wait_until,
)

ENGINE_ID = "os.environ['PXKERNEL_ENGINE_ID']"
OUTPUT_LIMIT = 16 << 20  # px/src/run.rs: stream output shown per engine per cell


def failure_shown(engine):
    """A predicate for read_until: the `[N:execute] engine N died …` line."""
    return lambda m: f"[{engine}:execute] engine {engine} died" in m["content"].get("text", "")


def wait_for_flag_code(flag) -> str:
    return f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)"


def start_engines(kc, n, kernel=None):
    extra = f" --kernel {kernel}" if kernel else ""
    reply, msgs = execute(kc, f"%engines start -n {n}{extra}", timeout=120)
    assert reply["status"] == "ok", (reply, stdout_of(msgs))


@pytest.fixture(scope="module")
def two():
    """A pxkernel with python engines 0 and 1, for tests that leave them alive."""
    with pxkernel(env=notebook_env()) as (km, kc):
        start_engines(kc, 2)
        yield km, kc


class RssSampler:
    """Samples a process's resident memory in a thread until stopped."""

    def __init__(self, pid, every=0.02):
        self.proc = psutil.Process(pid)
        self.every = every
        self.samples = [self.proc.memory_info().rss]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self):
        return max(self.samples) / 1e6


# -- engine death ------------------------------------------------------------------


def held_cell(flag, engine_1_sleeps=False):
    """A %%px cell: every engine prints `started ID`, then (engine 1 after a 30 s
    sleep, if asked) waits for `flag` to exist and prints `done ID`."""
    sleep = "if eid == '1':\n    time.sleep(30)\n" if engine_1_sleeps else ""
    return (
        "%%px\n"
        "import os, time\n"
        f"eid = {ENGINE_ID}\n"
        "print('started', eid, flush=True)\n"
        f"{sleep}"
        f"{wait_for_flag_code(flag)}\n"
        "print('done', eid)\n"
    )


def test_sigkill_of_an_engine_mid_cell_fails_that_engine_only(tmp_path):
    flag = tmp_path / "release-engine-0"
    with pxkernel() as (km, kc):
        start_engines(kc, 2)
        pids = {i: int(r["pid"]) for i, r in engines_table(kc).items()}
        msg_id = kc.execute(held_cell(flag, engine_1_sleeps=True))
        try:
            seen = read_until(kc, msg_id, is_tagged("stdout", 1, "started 1"))
            os.kill(pids[1], signal.SIGKILL)
            # Engine 1's failure is shown while engine 0 still runs: death is noticed at once.
            seen += read_until(kc, msg_id, failure_shown(1), timeout=15)
        finally:
            flag.touch()
        reply, msgs = finish(kc, msg_id, seen)
        assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
        assert reply["evalue"] == "1 of 2 engines failed: [1:execute] died (killed by signal 9)"
        assert ("stdout", 0, "done 0") in tagged_lines(msgs), "the other engine finished normally"
        assert error_of(msgs)["traceback"] == ["[1:execute] died (killed by signal 9)"]

        table = engines_table(kc)
        assert table[1]["state"] == "dead (killed by signal 9)"
        assert table[0]["state"] == "idle"
        # A dead engine fails fast and never blocks the others.
        reply, msgs = execute(kc, "%px print('still here')", timeout=15)
        assert reply["evalue"] == "1 of 2 engines failed: [1:execute] died (killed by signal 9)"
        assert tagged_lines(msgs, "stdout") == [("stdout", 0, "still here")]


def test_a_frozen_engine_is_declared_dead_by_its_heartbeat(tmp_path):
    flag = tmp_path / "release-engine-0"
    with pxkernel() as (km, kc):
        start_engines(kc, 2)
        pids = {i: int(r["pid"]) for i, r in engines_table(kc).items()}
        msg_id = kc.execute(held_cell(flag))
        try:
            seen = read_until(kc, msg_id, is_tagged("stdout", 1, "started 1"))
            # Stopped, the process is alive but answers nothing, heartbeat included.
            os.kill(pids[1], signal.SIGSTOP)
            seen += read_until(kc, msg_id, failure_shown(1), timeout=20)
            # Having given up on it, pxkernel kills its frozen engine and reaps it.
            assert wait_reaped([pids[1]]) == [], "pxkernel left its frozen engine behind"
            flag.touch()
            reply, msgs = finish(kc, msg_id, seen)
        finally:
            flag.touch()
            if alive(pids[1]):  # only when the assertion above failed
                os.kill(pids[1], signal.SIGKILL)
        assert reply["evalue"] == "1 of 2 engines failed: [1:execute] died (heartbeat lost)", reply
        assert ("stdout", 0, "done 0") in tagged_lines(msgs)
        assert engines_table(kc)[1]["state"] == "dead (heartbeat lost)"


def test_an_engine_that_cannot_start_fails_fast_with_its_output(two, broken_kernelspec):
    _, kc = two
    before = engines_table(kc)
    # Far below the 60 s start timeout: the exit is noticed, not waited out.
    reply, msgs = execute(kc, f"%engines start -n 1 --kernel {broken_kernelspec}", timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "EngineError", reply
    text = "\n".join(reply["traceback"])
    assert "boom: cannot start" in text, text
    assert "exit code 3" in reply["evalue"], reply["evalue"]
    err = error_of(msgs)
    assert err["ename"] == "EngineError"
    assert "boom: cannot start" in "\n".join(err["traceback"])
    assert engines_table(kc).keys() == before.keys(), "no engine was registered"
    reply, msgs = execute(kc, "%px --targets 0,1 print('fine')")
    assert reply["status"] == "ok", reply


# -- interrupts -----------------------------------------------------------------


def test_interrupt_stops_every_busy_engine_and_keeps_their_state(two):
    km, kc = two
    reply, _ = execute(kc, "%px --targets 0,1 kept = 'still here'")
    assert reply["status"] == "ok", reply
    code = (
        "%%px --targets 0,1\n"
        "import os, time\n"
        f"print('started', {ENGINE_ID}, flush=True)\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    msg_id = kc.execute(code)
    seen = read_until(kc, msg_id, is_tagged("stdout", 0, "started 0"))
    if not any(l == ("stdout", 1, "started 1") for l in tagged_lines(seen)):
        seen += read_until(kc, msg_id, is_tagged("stdout", 1, "started 1"))
    km.interrupt_kernel()
    reply, msgs = finish(kc, msg_id, seen, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert reply["evalue"] == "%px interrupted; every engine stopped and kept its state"
    tracebacks = engine_tracebacks(msgs)
    assert sorted(tracebacks) == [0, 1]
    assert all("KeyboardInterrupt" in tb for tb in tracebacks.values()), tracebacks
    reply, msgs = execute(kc, "%px --targets 0,1 print(kept)")
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "still here"), ("stdout", 1, "still here")]


# -- floods -----------------------------------------------------------------------


def drain(kc, msg_id, on_message=None, timeout=180):
    """Read every IOPub message of a request (as a frontend must) until idle."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no idle for {msg_id} within {timeout} s")
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if on_message:
            on_message(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs


def shown_flood_lines(msgs, engine=0, line="x" * 1000):
    return sum(1 for k, e, t in tagged_lines(msgs, "stdout") if e == engine and t == line)


def assert_cut_at_the_limit(msgs, written):
    """Engine 0 wrote `written` bytes of 1001-byte flood lines: the first
    OUTPUT_LIMIT bytes are shown (every whole line of them; only the line the cut
    falls in is partial), and the rest is counted in one notice, so nothing is
    dropped unannounced and the cap is not undershot."""
    shown = shown_flood_lines(msgs) * 1001
    assert OUTPUT_LIMIT - 1001 < shown <= OUTPUT_LIMIT, f"{shown} bytes of flood lines shown"
    cut = [t for k, e, t in tagged_lines(msgs, "stderr") if e == 0 and "more output not shown" in t]
    assert len(cut) == 1 and cut[0].endswith("(at most 16 MB per engine per cell)"), cut
    hidden = float(re.search(r"([\d.]+) MB more output not shown", cut[0]).group(1)) * 1e6
    assert hidden >= written - OUTPUT_LIMIT - 0.1e6, f"{written} bytes written, {shown} shown, {hidden:.0f} counted"


def flood_cell(flag, write_lines):
    return (
        "%%px --targets 0,1\n"
        "import os, sys, time\n"
        f"if {ENGINE_ID} == '0':\n"
        f"    {write_lines}\n"
        "    sys.stdout.flush()\n"
        f"    {wait_for_flag_code(flag)}\n"
        "else:\n"
        "    print('normal output', flush=True)\n"
    )


def test_a_stdout_flood_is_cut_and_pxkernel_stays_responsive(two, tmp_path):
    """100 MB from a tight write loop (ipykernel batches it into a few huge messages)."""
    km, kc = two
    flag = tmp_path / "flood-done"
    code = flood_cell(flag, "_ = [sys.stdout.write('x' * 1000 + '\\n') for _ in range(100_000)]")
    checks = {}

    def during(msg):
        # The cell runs (engine 0 waits for the flag) while the flood is relayed.
        if not checks and msg["msg_type"] == "stream" and "[stdout:0] xxx" in msg["content"]["text"]:
            checks["heartbeat"] = heartbeat_echo(kc, timeout=10)
            checks["kc.is_alive"] = kc.is_alive()
            checks["control"] = control_kernel_info(kc, timeout=10)
            flag.touch()

    with RssSampler(kernel_pid(km)) as rss:
        msg_id = kc.execute(code)
        try:
            msgs = drain(kc, msg_id, during)
        finally:
            flag.touch()
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok", reply
    assert checks["heartbeat"] and checks["kc.is_alive"], checks
    assert checks["control"]["status"] == "ok" and checks["control"]["implementation"] == "pxkernel"
    assert ("stdout", 1, "normal output") in tagged_lines(msgs)
    assert_cut_at_the_limit(msgs, written=100_000 * 1001)
    # Not the 300 MB of the chunked flood below: pxkernel relays a whole ipykernel
    # batch (20-50 MB here) even past the cap, and needs several copies of it.
    assert rss.peak_mb < 1024, f"pxkernel's RSS peaked at {rss.peak_mb:.0f} MB"
    reply, msgs = execute(kc, "%px --targets 0,1 print('after the flood')")
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "after the flood"), ("stdout", 1, "after the flood")]


def test_a_flood_of_flushed_chunks_is_cut_at_the_limit_in_bounded_memory(two, tmp_path):
    """100 MB as a hundred flushed 1 MB writes: many messages, each small."""
    km, kc = two
    flag = tmp_path / "flood-done"
    code = flood_cell(
        flag,
        "chunk = ('x' * 1000 + '\\n') * 1000\n"
        "    for _ in range(100):\n"
        "        sys.stdout.write(chunk); sys.stdout.flush()",
    )
    checks = []

    def during(msg):
        if msg["msg_type"] == "stream" and "[stdout:0] xxx" in msg["content"]["text"] and len(checks) < 3:
            checks.append((heartbeat_echo(kc, timeout=10), control_kernel_info(kc, timeout=10)["status"]))
            if len(checks) == 3:
                flag.touch()

    with RssSampler(kernel_pid(km)) as rss:
        msg_id = kc.execute(code)
        try:
            msgs = drain(kc, msg_id, during)
        finally:
            flag.touch()
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok", reply
    assert checks == [(True, "ok")] * 3
    assert ("stdout", 1, "normal output") in tagged_lines(msgs)
    assert_cut_at_the_limit(msgs, written=100 * 1000 * 1001)
    assert rss.peak_mb < 300, f"pxkernel's RSS peaked at {rss.peak_mb:.0f} MB"


def test_one_stream_message_larger_than_the_limit_is_cut(two):
    _, kc = two
    code = "%px --targets 0 import sys; sys.stdout.write(('x' * 1000 + '\\n') * 20_000); sys.stdout.flush()"
    msg_id = kc.execute(code)
    msgs = drain(kc, msg_id)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok", reply
    assert_cut_at_the_limit(msgs, written=20_000 * 1001)


# -- bytes that are not UTF-8 ---------------------------------------------------------


def test_invalid_bytes_from_an_engine_are_replaced_and_the_cell_completes(two):
    _, kc = two
    # ipykernel has no sys.stdout.buffer: bytes written to fd 1 are read by its pipe
    # watcher thread, decoded with replacement characters, and also echoed to the
    # engine's real stdout (a pipe pxkernel reads for its log). The cell waits until
    # the watcher has passed them on, so they belong to this cell.
    code = (
        "%%px --targets 0,1\n"
        "import os, sys, threading\n"
        "passed_on = threading.Event()\n"
        "write = sys.stdout.write\n"
        "def spy(text):\n"
        "    if 'bad' in text:\n"
        "        passed_on.set()\n"
        "    return write(text)\n"
        "sys.stdout.write = spy\n"
        "os.write(1, b'\\xff\\xfe bad\\n')\n"
        "assert passed_on.wait(10), 'ipykernel did not pass fd output on'\n"
        "sys.stdout.write = write\n"
        "print('good line')\n"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    lines = tagged_lines(msgs, "stdout")
    for engine in (0, 1):
        assert ("stdout", engine, "good line") in lines
        assert ("stdout", engine, "\ufffd\ufffd bad") in lines, lines


def test_a_lone_surrogate_from_an_engine_does_not_break_the_cell(two):
    _, kc = two
    # ipykernel packs this with surrogateescape: the content frame is not UTF-8.
    reply, msgs = execute(kc, "%px --targets 0 import sys; sys.stdout.write('\\udcff\\n'); sys.stdout.flush()")
    assert reply["status"] == "ok", reply
    reply, msgs = execute(kc, "%px --targets 0 print('next cell')")
    assert tagged_lines(msgs) == [("stdout", 0, "next cell")]


def test_output_batched_with_a_lone_surrogate_is_not_lost(two):
    _, kc = two
    code = "%px --targets 0 import sys; print('ok-before'); sys.stdout.write('\\udcff\\n'); print('ok-after')"
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    lines = tagged_lines(msgs, "stdout")
    assert ("stdout", 0, "ok-before") in lines, lines
    assert ("stdout", 0, "\ufffd") in lines, lines
    assert ("stdout", 0, "ok-after") in lines, lines


# -- the fake engine ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_kernel(fake_engine_kernelspec, tmp_path_factory):
    """A pxkernel (logging to a file) with python engine 0, shared by the fake-engine tests."""
    log = tmp_path_factory.mktemp("fake-engine-log") / "pxkernel.log"
    env = notebook_env(PXKERNEL_LOG="info", PXKERNEL_LOG_FILE=str(log))
    with pxkernel(env=env) as (km, kc):
        start_engines(kc, 1)
        assert engines_table(kc)[0]["kernel"] == "python3"
        yield km, kc, log


@pytest.fixture
def fake(fake_kernel, fake_engine_kernelspec):
    """The shared pxkernel with two fake engines of this test's own, fresh whatever
    earlier tests did to theirs (hung, killed), so no test depends on which ran
    before it: (km, kc, log, (id, id))."""
    km, kc, log = fake_kernel
    before = set(engines_table(kc))
    start_engines(kc, 2, fake_engine_kernelspec)
    table = engines_table(kc)
    ids = tuple(sorted(set(table) - before))
    assert len(ids) == 2 and all(table[i]["kernel"] == fake_engine_kernelspec for i in ids), table
    assert all(table[i]["state"] == "idle" for i in ids), table
    return km, kc, log, ids


def test_fake_engine_runs_cells(fake):
    _, kc, _, (a, b) = fake
    reply, msgs = execute(kc, f"%px --targets {a},{b} print hello")
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", a, "hello"), ("stdout", b, "hello")]
    reply, msgs = execute(kc, f"%px --targets {a} error it failed")
    assert reply["evalue"] == f"1 of 1 engines failed: [{a}:execute] FakeError: it failed", reply


def test_a_message_whose_content_is_not_utf8_is_shown_with_replacements(fake):
    _, kc, _, (a, _) = fake
    reply, msgs = execute(kc, f"%px --targets {a} bad-utf8", timeout=15)
    assert reply["status"] == "ok", reply
    assert tagged_lines(msgs) == [("stdout", a, "\ufffd\ufffd bad"), ("stdout", a, "after-bad")]


def test_a_message_whose_header_is_not_utf8_is_dropped_and_logged(fake):
    _, kc, log, (a, _) = fake
    reply, msgs = execute(kc, f"%px --targets {a} bad-header", timeout=15)
    assert reply["status"] == "ok", reply
    assert tagged_lines(msgs) == [("stdout", a, "after-bad")], "the bad message is dropped, the rest shown"
    wait_until(
        lambda: "dropped a message from a kernel" in log.read_text(errors="replace"),
        what="pxkernel logging the dropped message",
    )
    assert "malformed header" in log.read_text(errors="replace")


def test_an_engine_that_never_replies_times_out_while_the_others_finish(fake):
    _, kc, _, (a, _) = fake
    # Python assigns; the fake engine reads the first word and hangs.
    reply, msgs = execute(kc, f"%px --targets 0,{a} --timeout 3 hang = print('python done')", timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == f"1 of 2 engines failed: [{a}:execute] timed out after 3 s"
    assert sorted(tagged_lines(msgs, "stdout")) == [("stdout", 0, "python done"), ("stdout", a, "hanging")]
    # The hung engine still answers new requests; the kernel is usable.
    reply, msgs = execute(kc, f"%px --targets {a} print still serving", timeout=15)
    assert reply["status"] == "ok", reply
    assert tagged_lines(msgs) == [("stdout", a, "still serving")]


def test_an_engine_that_ignores_an_interrupt_is_given_up_after_the_grace(fake):
    km, kc, _, (a, _) = fake
    msg_id = kc.execute(f"%px --targets {a} hang")
    seen = read_until(kc, msg_id, is_tagged("stdout", a, "hanging"))
    km.interrupt_kernel()
    reply, msgs = finish(kc, msg_id, seen, timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert reply["evalue"] == f"%px interrupted; engines {a} did not stop within 5 s and are still running"
    reply, msgs = execute(kc, f"%px --targets {a} print back", timeout=15)
    assert tagged_lines(msgs) == [("stdout", a, "back")]


def test_an_engine_that_exits_mid_cell_is_reported_dead(fake):
    _, kc, _, (a, _) = fake
    reply, msgs = execute(kc, f"%px --targets 0,{a} die = print('python done')", timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == f"1 of 2 engines failed: [{a}:execute] died (exit code 7)"
    assert ("stdout", 0, "python done") in tagged_lines(msgs)
    assert f"[{a}:execute] engine {a} died (exit code 7)" in stdout_of(msgs, "stderr")
    assert engines_table(kc)[a]["state"] == "dead (exit code 7)"


# -- shutdown ---------------------------------------------------------------------------


def test_shutdown_with_busy_engines_leaves_no_process():
    """Engines busy in a cell, each with a process of its own (pxkernel's
    grandchildren), and the home with one too: a shutdown request stops them all."""
    km, kc = pxkernel_started()
    try:
        px = kernel_pid(km)
        start_engines(kc, 2)
        home = home_pid(kc)
        reply, msgs = execute(kc, "import subprocess; print(subprocess.Popen(['sleep', '300']).pid)")
        home_sleeper = int(stdout_of(msgs))
        engines = [int(r["pid"]) for r in engines_table(kc).values()]
        msg_id = kc.execute(
            "%px import os, subprocess, time; "
            "print('sleeper', subprocess.Popen(['sleep', '300']).pid, flush=True); time.sleep(60)"
        )
        seen = read_until(kc, msg_id, is_tagged("stdout", 0))
        if len({e for _, e, _ in tagged_lines(seen)}) < 2:
            seen += read_until(kc, msg_id, is_tagged("stdout", 1))
        engine_sleepers = [int(t.split()[1]) for _, _, t in tagged_lines(seen)]
        grandchildren = [home_sleeper, *engine_sleepers]
        assert len(grandchildren) == 3 and set(grandchildren) <= set(descendants(px)), (grandchildren, descendants(px))
        family = sorted({px, home, *engines, *grandchildren, *descendants(px)})
        assert all(alive(p) for p in family)
        # A frontend's shutdown request while the engines are busy; pxkernel must
        # stop everything itself (jupyter_client's fallback signals its process group).
        kc.shutdown()
        assert wait_gone(family) == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
