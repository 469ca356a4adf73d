"""%engines and %px, %%px, %autopx, %pxresult, %pxconfig through jupyter_client:
engines of the home's kernelspec, of bash and attached by connection file; every
target form and option; how engine output, displays, results and errors reach
the notebook; completion and help.

Most tests share one pxkernel with four python engines (ids 0-3); tests that
change which engines exist get a pxkernel of their own. Nothing here depends on
timing: engines that must still be running when the test looks wait for a flag
file the test creates, and time limits only turn a hang into a failure."""

from __future__ import annotations

import re
from types import SimpleNamespace

import psutil
import pytest
from jupyter_client.manager import KernelManager

from kernel_helpers import (
    alive,
    descendants,
    engine_tracebacks,
    engines_table,
    error_of,
    execute,
    finish,
    kernel_pid,
    of_type,
    pxkernel,
    read_until,
    shell_reply,
    stdout_of,
    tagged_lines,
    untagged_lines,
    wait_gone,
    wait_until,
)

N_ENGINES = 4
ALL = list(range(N_ENGINES))
# Every engine prints its id; PXKERNEL_ENGINE_ID is set by pxkernel.
PRINT_ID = "import os; print(os.environ['PXKERNEL_ENGINE_ID'])"


@pytest.fixture(scope="module")
def cluster():
    """A pxkernel with four python engines, shared by the tests of this module."""
    with pxkernel() as (km, kc):
        reply, msgs = execute(kc, f"%engines start -n {N_ENGINES}", timeout=120)
        yield SimpleNamespace(km=km, kc=kc, start_reply=reply, start_msgs=msgs)


@pytest.fixture
def kc(cluster):
    return cluster.kc


def wait_for_flag_code(flag) -> str:
    return f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)"


def ids_that_printed(msgs):
    """Engine ids of `[stdout:N] N` lines; each engine prints its own id once."""
    lines = tagged_lines(msgs)
    for kind, engine, text in lines:
        assert kind == "stdout" and text == str(engine), lines
    ids = [engine for _, engine, _ in lines]
    assert len(ids) == len(set(ids)), f"an engine printed twice: {lines}"
    return sorted(ids)


# -- starting engines, hello world, %engines ------------------------------------


def test_start_engines_then_hello_from_every_engine(cluster):
    km, kc = cluster.km, cluster.kc
    assert cluster.start_reply["status"] == "ok", cluster.start_reply
    started = stdout_of(cluster.start_msgs)
    assert re.fullmatch(r"Started 4 python3 engines in [^:]+: ids 0-3\.\n", started), started

    reply, msgs = execute(kc, "%px import os; print('hello from', os.environ['PXKERNEL_ENGINE_ID'], os.getpid())")
    assert reply["status"] == "ok", reply
    lines = tagged_lines(msgs)
    assert sorted(e for _, e, _ in lines) == ALL, lines
    printed_pids = {}
    for kind, engine, text in lines:
        assert kind == "stdout"
        hello, frm, engine_id, pid = text.split()
        assert (hello, frm) == ("hello", "from")
        assert engine_id == str(engine), "the tag is the engine's PXKERNEL_ENGINE_ID"
        printed_pids[engine] = int(pid)
    assert untagged_lines(msgs) == [], "plain %px output is always tagged"

    table = engines_table(kc)
    assert sorted(table) == ALL
    children = descendants(kernel_pid(km))
    for engine, row in table.items():
        assert row["kernel"] == "python3" and row["host"] == "localhost", row
        assert row["state"] == "idle", row
        assert int(row["pid"]) == printed_pids[engine], "the table's pid is the engine's process"
        assert int(row["pid"]) in children, "engines are pxkernel's child processes"
        assert psutil.Process(int(row["pid"])).is_running()


def test_engines_list_is_the_same_table(kc):
    reply, msgs = execute(kc, "%engines list")
    assert reply["status"] == "ok"
    (table,) = of_type(msgs, "display_data")
    data = table["content"]["data"]
    assert set(data) >= {"text/plain", "text/html"}
    assert data["text/plain"].rstrip().endswith("4 engines")
    for column in ("id", "kernel", "host", "pid", "state", "heartbeat", "uptime"):
        assert f">{column}</th>" in data["text/html"]


# -- targets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "targets, expected",
    [
        ("all", [0, 1, 2, 3]),
        ("3", [3]),
        ("0,2,3", [0, 2, 3]),
        ("0, 2", [0, 2]),
        ("1:4", [1, 2, 3]),
        ("1:3", [1, 2]),
        ("::2", [0, 2]),
        ("-1", [3]),
        ("-2:", [2, 3]),
        ("::-1", [0, 1, 2, 3]),
    ],
)
def test_every_target_form_selects_exactly_its_engines(kc, targets, expected):
    quoted = f"'{targets}'" if " " in targets else targets
    reply, msgs = execute(kc, f"%px --targets {quoted} {PRINT_ID}")
    assert reply["status"] == "ok", reply
    assert ids_that_printed(msgs) == expected


@pytest.mark.parametrize("form", ["-t 1", "--targets=1"])
def test_short_and_equals_forms_of_targets(kc, form):
    reply, msgs = execute(kc, f"%px {form} {PRINT_ID}")
    assert reply["status"] == "ok", reply
    assert ids_that_printed(msgs) == [1]


def test_a_target_that_names_no_engine_is_a_usage_error_naming_the_engines(kc):
    execute(kc, "%px px_touched = 0")
    for targets, says in [("9", "no engine 9"), ("-9", "no engine at index -9"), ("5:9", "select no engine")]:
        reply, msgs = execute(kc, f"%px --targets {targets} px_touched = 1")
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        assert says in reply["evalue"], reply["evalue"]
        assert "registered engines: 0, 1, 2, 3" in reply["evalue"], reply["evalue"]
        assert error_of(msgs)["ename"] == "UsageError"
        assert tagged_lines(msgs) == []
    reply, msgs = execute(kc, "%px print(px_touched)")
    assert {t for _, _, t in tagged_lines(msgs)} == {"0"}, "nothing ran"


def test_usage_errors_without_an_option_do_not_show_an_empty_one(kc):
    for code in ["%px --targets 9 x = 1", "%px", "%engines restart", "%engines frobnicate"]:
        reply, _ = execute(kc, code)
        assert reply["ename"] == "UsageError", (code, reply)
        assert 'bad value "" for --:' not in reply["evalue"], (code, reply["evalue"])
    reply, _ = execute(kc, "%px --targets 9 x = 1")
    assert "--targets" in reply["evalue"], reply["evalue"]


# -- option errors -------------------------------------------------------------

OPTION_ERRORS = [
    ("unknown option", "%px --bogus px_ran += 1", "--bogus"),
    ("misspelt option", "%px --targest 1 px_ran += 1", "--targets"),
    ("targets not ids", "%px --targets x,y px_ran += 1", "--targets"),
    ("zero slice step", "%px --targets ::0 px_ran += 1", "--targets"),
    ("unknown grouping", "%px --group-outputs size px_ran += 1", "--group-outputs"),
    ("zero timeout", "%px --timeout 0 px_ran += 1", "--timeout"),
    ("negative timeout", "%px --timeout -1 px_ran += 1", "--timeout"),
    ("words for seconds", "%px --progress-after soon px_ran += 1", "--progress-after"),
    ("block and noblock", "%px --block --noblock px_ran += 1", "--noblock"),
    ("stream and no-stream", "%px --stream --no-stream px_ran += 1", "--no-stream"),
    ("missing value", "%px --timeout", "--timeout"),
    ("code on a %%px line", "%%px --targets 0 px_ran += 1\npx_ran += 1", "px_ran += 1"),
    ("bad %%px option", "%%px --timeout x\npx_ran += 1", "--timeout"),
    ("bad %pxconfig option", "%pxconfig --group-outputs size", "--group-outputs"),
]


@pytest.mark.parametrize("label, code, option", OPTION_ERRORS, ids=[c[0] for c in OPTION_ERRORS])
def test_option_errors_are_usage_errors_naming_the_option_and_run_nothing(kc, label, code, option):
    reply, _ = execute(kc, "%px px_ran = 0")
    assert reply["status"] == "ok", reply
    reply, msgs = execute(kc, code)
    assert reply["status"] == "error", reply
    assert reply["ename"] == "UsageError", reply
    assert option in reply["evalue"], reply["evalue"]
    err = error_of(msgs)
    assert err["ename"] == "UsageError" and option in err["evalue"]
    assert tagged_lines(msgs) == []
    # Nothing ran, not even in the background.
    reply, msgs = execute(kc, "%px print(px_ran)")
    assert reply["status"] == "ok", reply
    assert [(e, t) for _, e, t in sorted(tagged_lines(msgs), key=lambda x: x[1])] == [(i, "0") for i in ALL]
    # The defaults are unchanged by a failed %pxconfig.
    reply, msgs = execute(kc, "%pxconfig")
    assert stdout_of(msgs) == "%px defaults: --targets all --block --group-outputs engine --stream --progress-after 2\n"


# -- errors ------------------------------------------------------------------


def test_an_error_on_every_engine_is_a_composite_error_naming_each(kc):
    reply, msgs = execute(kc, "%px 1/0")
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    parts = "; ".join(f"[{i}:execute] ZeroDivisionError: division by zero" for i in ALL)
    assert reply["evalue"] == f"4 of 4 engines failed: {parts}"
    err = error_of(msgs)
    assert err["ename"] == "CompositeError" and err["evalue"] == reply["evalue"]
    assert err["traceback"] == [f"[{i}:execute] ZeroDivisionError: division by zero" for i in ALL]
    tracebacks = engine_tracebacks(msgs)
    assert sorted(tracebacks) == ALL
    for engine, tb in tracebacks.items():
        assert "Traceback" in tb and "ZeroDivisionError: division by zero" in tb, (engine, tb)


def test_an_error_on_one_engine_leaves_the_others_output(kc):
    code = (
        "%%px\n"
        "import os\n"
        "eid = os.environ['PXKERNEL_ENGINE_ID']\n"
        "print('before', eid)\n"
        "if eid == '2':\n"
        "    raise ValueError('only engine 2')\n"
        "print('after', eid)\n"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == "1 of 4 engines failed: [2:execute] ValueError: only engine 2"
    out = sorted((e, t) for k, e, t in tagged_lines(msgs, "stdout"))
    assert out == sorted([(i, f"before {i}") for i in ALL] + [(i, f"after {i}") for i in ALL if i != 2])
    tracebacks = engine_tracebacks(msgs)
    assert list(tracebacks) == [2]
    assert "ValueError: only engine 2" in tracebacks[2]


# -- rich output and results ---------------------------------------------------


def preceded_by_tag(msgs, index, tag):
    """The message before msgs[index] is a stdout stream ending with the line `tag`."""
    before = msgs[index - 1]
    return (
        before["msg_type"] == "stream"
        and before["content"]["name"] == "stdout"
        and before["content"]["text"].endswith(tag + "\n")
    )


def test_html_displays_and_rich_results_keep_their_bundle_per_engine(kc):
    code = (
        "%%px --targets 0,1\n"
        "import os\n"
        "from IPython.display import HTML, display\n"
        "eid = os.environ['PXKERNEL_ENGINE_ID']\n"
        "display(HTML(f'<b>engine {eid}</b>'))\n"
        "HTML(f'<i>result {eid}</i>')\n"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    displays = {}
    results = {}
    for i, m in enumerate(msgs):
        if m["msg_type"] != "display_data":
            continue
        data = m["content"]["data"]
        assert "text/plain" in data, "the whole MIME bundle is relayed"
        shown = re.fullmatch(r"<b>engine (\d)</b>", data.get("text/html", ""))
        result = re.fullmatch(r"<i>result (\d)</i>", data.get("text/html", ""))
        if shown:
            engine = int(shown.group(1))
            assert preceded_by_tag(msgs, i, f"[output:{engine}]"), msgs[i - 1]["content"]
            displays[engine] = data
        elif result:
            engine = int(result.group(1))
            before = msgs[i - 1]["content"].get("text", "")
            assert re.search(rf"Out\[{engine}:\d+\]:\n$", before), before
            results[engine] = data
    assert sorted(displays) == [0, 1]
    assert sorted(results) == [0, 1]
    assert of_type(msgs, "execute_result") == [], "engine results are displays of the %px cell"


def test_plain_results_are_labelled_with_engine_and_count(kc):
    counts = []
    for _ in range(2):
        reply, msgs = execute(kc, "%px --targets 0,1 6*7")
        assert reply["status"] == "ok", reply
        shown = {}
        for m in of_type(msgs, "display_data"):
            match = re.fullmatch(r"Out\[(\d+):(\d+)\]: 42", m["content"]["data"]["text/plain"])
            assert match, m["content"]
            shown[int(match.group(1))] = int(match.group(2))
        assert sorted(shown) == [0, 1]
        counts.append(shown)
    for engine in (0, 1):
        assert counts[1][engine] == counts[0][engine] + 1, "the engine's own execution count"


def test_matplotlib_figures_arrive_as_png_per_engine(kc):
    code = (
        "%%px --targets 0,1\n"
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
    )
    reply, msgs = execute(kc, code, timeout=60)
    assert reply["status"] == "ok", reply
    engines = []
    for i, m in enumerate(msgs):
        if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]:
            assert m["content"]["data"]["image/png"].startswith("iVBOR"), "base64 PNG"
            tag = re.search(r"\[output:(\d+)\]\n$", msgs[i - 1]["content"].get("text", ""))
            assert tag, msgs[i - 1]["content"]
            engines.append(int(tag.group(1)))
    assert sorted(engines) == [0, 1]


def test_display_ids_are_made_distinct_per_engine(kc):
    code = (
        "%%px --targets 0,1\n"
        "from IPython.display import HTML, display, update_display\n"
        "display(HTML('<b>v1</b>'), display_id='shared')\n"
        "update_display(HTML('<b>v2</b>'), display_id='shared')\n"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    shown = sorted(m["content"]["transient"]["display_id"] for m in of_type(msgs, "display_data"))
    updated = sorted(m["content"]["transient"]["display_id"] for m in of_type(msgs, "update_display_data"))
    assert shown == ["px0-shared", "px1-shared"]
    assert updated == ["px0-shared", "px1-shared"]
    assert all(m["content"]["data"]["text/html"] == "<b>v2</b>" for m in of_type(msgs, "update_display_data"))


# -- %autopx -------------------------------------------------------------------


def test_autopx_sends_plain_cells_to_the_engines_then_back_home(kc):
    reply, _ = execute(kc, "where = 'home'")
    assert reply["status"] == "ok"
    on = False
    try:
        reply, msgs = execute(kc, "%autopx")
        on = True
        assert reply["status"] == "ok"
        assert stdout_of(msgs).startswith("%autopx enabled")
        reply, msgs = execute(kc, "import os\nwhere = 'engine ' + os.environ['PXKERNEL_ENGINE_ID']\nprint(where)")
        assert reply["status"] == "ok", reply
        assert sorted((e, t) for _, e, t in tagged_lines(msgs)) == [(i, f"engine {i}") for i in ALL]
        assert untagged_lines(msgs) == [], "the cell did not run at home"
        reply, msgs = execute(kc, "%autopx")
        on = False
        assert stdout_of(msgs).startswith("%autopx disabled")
    finally:
        if on:
            execute(kc, "%autopx")
    reply, msgs = execute(kc, "print(where)")
    assert stdout_of(msgs) == "home\n", "the home kernel's state was untouched"
    assert tagged_lines(msgs) == []


# -- --noblock and %pxresult ---------------------------------------------------


def test_noblock_returns_at_once_and_pxresult_shows_every_engine(kc, tmp_path):
    flag = tmp_path / "release"
    code = (
        "%%px --noblock --targets 0,1\n"
        "import os, time\n"
        f"{wait_for_flag_code(flag)}\n"
        "print('released', os.environ['PXKERNEL_ENGINE_ID'])\n"
    )
    try:
        # The engines cannot finish before the flag exists: the reply proves no waiting.
        reply, msgs = execute(kc, code)
        assert reply["status"] == "ok", reply
        assert stdout_of(msgs) == "%px: sent to engines 0-1 without waiting; %pxresult shows the result.\n"
        assert tagged_lines(msgs) == [], "no engine output in the --noblock cell"
        wait_until(
            lambda: all(engines_table(kc)[i]["state"] == "busy" for i in (0, 1)),
            what="engines 0 and 1 busy with the --noblock cell",
        )
    finally:
        flag.touch()
    reply, msgs = execute(kc, "%pxresult")
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "released 0"), ("stdout", 1, "released 1")]


def test_pxresult_shows_a_noblock_failure(kc):
    reply, _ = execute(kc, "%px --noblock --targets 1 raise KeyError('late')")
    assert reply["status"] == "ok", reply
    reply, msgs = execute(kc, "%pxresult")
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == "1 of 1 engines failed: [1:execute] KeyError: 'late'"
    assert list(engine_tracebacks(msgs)) == [1]


# -- grouping of outputs that are not streamed ---------------------------------


GROUPED = {
    # Engine 1 prints first (engine 0 waits for its flag), each engine out1, err1, out2.
    "order": [
        ("stdout", 1, "out1 1"),
        ("stderr", 1, "err1 1"),
        ("stdout", 1, "out2 1"),
        ("stdout", 0, "out1 0"),
        ("stderr", 0, "err1 0"),
        ("stdout", 0, "out2 0"),
    ],
    "engine": [
        ("stdout", 0, "out1 0"),
        ("stderr", 0, "err1 0"),
        ("stdout", 0, "out2 0"),
        ("stdout", 1, "out1 1"),
        ("stderr", 1, "err1 1"),
        ("stdout", 1, "out2 1"),
    ],
    "type": [
        ("stdout", 0, "out1 0"),
        ("stdout", 0, "out2 0"),
        ("stdout", 1, "out1 1"),
        ("stdout", 1, "out2 1"),
        ("stderr", 0, "err1 0"),
        ("stderr", 1, "err1 1"),
    ],
}


def shows_engine_1_done_and_0_running(msg):
    """A predicate for read_until: the progress display says engine 1 is done and
    engine 0 still runs. pxkernel counts an engine done only once its idle status
    came, after all of its output: so by then every output of engine 1 arrived."""
    if msg["msg_type"] not in ("display_data", "update_display_data"):
        return False
    content = msg["content"]
    if not content.get("transient", {}).get("display_id", "").startswith("px-progress-"):
        return False
    return re.fullmatch(r"%px: 1/2 engines done \([\d.]+ s\); running: 0", content["data"]["text/plain"]) is not None


@pytest.mark.parametrize("mode", sorted(GROUPED))
def test_no_stream_groups_outputs(kc, tmp_path, mode):
    """Engine 1 prints first: engine 0 prints only after the test has seen
    pxkernel count engine 1 done, so the arrival order is known, whatever the timing."""
    flag = tmp_path / "engine1-done"
    code = (
        f"%%px --targets 0,1 --no-stream --group-outputs {mode} --progress-after 0\n"
        "import os, sys, time\n"
        "eid = os.environ['PXKERNEL_ENGINE_ID']\n"
        "if eid == '0':\n"
        f"    {wait_for_flag_code(flag)}\n"
        "print('out1', eid, flush=True)\n"
        "print('err1', eid, file=sys.stderr, flush=True)\n"
        "print('out2', eid, flush=True)\n"
    )
    msg_id = kc.execute(code)
    try:
        seen = read_until(kc, msg_id, shows_engine_1_done_and_0_running)
        assert tagged_lines(seen) == [], "not streamed"
    finally:
        flag.touch()
    reply, msgs = finish(kc, msg_id, seen)
    assert reply["status"] == "ok", reply
    assert tagged_lines(msgs) == GROUPED[mode]


def test_streamed_output_keeps_each_engines_order(kc):
    code = (
        "%%px --targets 0,1\n"
        "import os, sys\n"
        "eid = os.environ['PXKERNEL_ENGINE_ID']\n"
        "for i in range(20):\n"
        "    print('line', i, eid, flush=True)\n"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok"
    for engine in (0, 1):
        mine = [t for _, e, t in tagged_lines(msgs) if e == engine]
        assert mine == [f"line {i} {engine}" for i in range(20)]


# -- --local, --verbose, --timeout, progress ------------------------------------


def test_local_also_runs_the_cell_in_the_home_kernel(kc):
    code = (
        "%px --local --targets 0,1 import os; "
        "where = os.environ.get('PXKERNEL_ENGINE_ID', 'home'); print('ran in', where)"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "ran in 0"), ("stdout", 1, "ran in 1")]
    assert untagged_lines(msgs) == ["ran in home"]
    reply, msgs = execute(kc, "print(where)")
    assert stdout_of(msgs) == "home\n", "the home kernel kept the cell's state"


def test_px_lines_mixed_with_plain_code_run_in_order(kc):
    """As in IPython: our line magics may follow plain code in one cell."""
    code = "x = 21\n%px y = 2\n%px --targets 0,1 print(y * 3)\nprint(x * 2)\n"
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "6"), ("stdout", 1, "6")]
    assert untagged_lines(msgs) == ["42"]


def test_a_bare_expression_before_a_px_line_shows_no_value(kc):
    """As in IPython, only the cell's last expression is shown."""
    reply, msgs = execute(kc, "x = 21\nx\n%px --targets 0 print(5)\n")
    assert reply["status"] == "ok", reply
    assert [m for m in msgs if m["msg_type"] == "execute_result"] == []
    assert tagged_lines(msgs) == [("stdout", 0, "5")]


def test_a_px_line_inside_a_string_stays_plain_code(kc):
    code = 's = """\n%px print(9)\n"""\nprint(len(s))'
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    assert tagged_lines(msgs) == []
    assert stdout_of(msgs) == "14\n"


def test_an_error_before_a_px_line_stops_the_cell_there(kc):
    reply, msgs = execute(kc, "1 / 0\n%px print('never')\n")
    assert reply["status"] == "error"
    assert reply["ename"] == "ZeroDivisionError"
    assert tagged_lines(msgs) == []


def test_verbose_says_how_each_engine_ended(kc):
    reply, msgs = execute(kc, "%px --verbose --targets 0,1 pass")
    assert reply["status"] == "ok"
    assert re.fullmatch(r"%px on engines 0-1 took .+: \[0\] ok, \[1\] ok\n", stdout_of(msgs)), stdout_of(msgs)


def test_timeout_reports_engines_still_running_and_the_kernel_stays_usable(kc, tmp_path):
    flag = tmp_path / "release"
    code = (
        "%%px --targets 0,1 --timeout 2\n"
        "import os, time\n"
        "eid = os.environ['PXKERNEL_ENGINE_ID']\n"
        "if eid == '1':\n"
        f"    {wait_for_flag_code(flag)}\n"
        "    print('late', eid)\n"
        "print('finished', eid)\n"
    )
    try:
        reply, msgs = execute(kc, code)
    finally:
        flag.touch()
    assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
    assert reply["evalue"] == "1 of 2 engines failed: [1:execute] timed out after 2 s"
    assert tagged_lines(msgs, "stdout") == [("stdout", 0, "finished 0")]
    assert "[1:execute] engine 1 timed out after 2 s" in stdout_of(msgs, "stderr")
    # Engine 1 finishes the old cell, then runs the next; its late output stays out of it.
    reply, msgs = execute(kc, "%px --targets 0,1 import os; print('next', os.environ['PXKERNEL_ENGINE_ID'])")
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "next 0"), ("stdout", 1, "next 1")]


def is_progress(msg):
    return msg["msg_type"] == "display_data" and msg["content"].get("transient", {}).get(
        "display_id", ""
    ).startswith("px-progress-")


def test_progress_display_is_updated_until_every_engine_is_done(kc, tmp_path):
    flag = tmp_path / "release"
    code = (
        "%%px --targets 0,1 --progress-after 0.2\n"
        "import os, time\n"
        f"{wait_for_flag_code(flag)}\n"
    )
    msg_id = kc.execute(code)
    try:
        seen = read_until(kc, msg_id, is_progress)
    finally:
        flag.touch()
    reply, msgs = finish(kc, msg_id, seen)
    assert reply["status"] == "ok", reply
    (first,) = [m for m in msgs if is_progress(m)]
    display_id = first["content"]["transient"]["display_id"]
    text = first["content"]["data"]["text/plain"]
    assert re.fullmatch(r"%px: 0/2 engines done \([\d.]+ s\); running: 0-1", text), text
    assert "<progress" in first["content"]["data"]["text/html"]
    updates = of_type(msgs, "update_display_data")
    assert updates, "the progress display is updated"
    assert {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    last = updates[-1]["content"]["data"]["text/plain"]
    assert re.fullmatch(r"%px: 2/2 engines done \([\d.]+ s\)", last), last
    assert msgs.index(updates[-1]) > msgs.index(first)


def test_pxconfig_sets_the_defaults_of_px(kc):
    try:
        reply, msgs = execute(kc, "%pxconfig --targets 0 --no-stream --group-outputs type")
        assert reply["status"] == "ok", reply
        assert stdout_of(msgs) == (
            "%px defaults: --targets 0 --block --group-outputs type --no-stream --progress-after 2\n"
        )
        reply, msgs = execute(kc, f"%px {PRINT_ID}")
        assert ids_that_printed(msgs) == [0]
        reply, msgs = execute(kc, f"%px --targets 1 {PRINT_ID}")
        assert ids_that_printed(msgs) == [1], "options override the defaults"
    finally:
        execute(kc, "%pxconfig --targets all --stream --group-outputs engine")
    reply, msgs = execute(kc, "%pxconfig")
    assert stdout_of(msgs) == "%px defaults: --targets all --block --group-outputs engine --stream --progress-after 2\n"


# -- %engines restart ------------------------------------------------------------


def test_restart_keeps_the_id_gives_a_new_process_and_loses_state(kc):
    reply, _ = execute(kc, "%px --targets 2,3 restart_marker = 'set'")
    assert reply["status"] == "ok"
    before = engines_table(kc)
    old_pid = int(before[3]["pid"])
    reply, msgs = execute(kc, "%engines restart 3", timeout=90)
    assert reply["status"] == "ok", reply
    assert stdout_of(msgs) == "Restarted engines 3.\n"
    assert wait_gone([old_pid]) == [], "the old process is gone"
    after = engines_table(kc)
    assert sorted(after) == ALL
    new_pid = int(after[3]["pid"])
    assert new_pid != old_pid
    assert after[3]["kernel"] == "python3"
    assert after[2]["pid"] == before[2]["pid"], "other engines are untouched"
    code = (
        "%px --targets 2,3 import os; "
        "print('restart_marker' in globals(), os.environ['PXKERNEL_ENGINE_ID'], os.getpid())"
    )
    reply, msgs = execute(kc, code)
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [
        ("stdout", 2, f"True 2 {before[2]['pid']}"),
        ("stdout", 3, f"False 3 {new_pid}"),
    ]


# -- completion and help ---------------------------------------------------------


@pytest.mark.parametrize(
    "code, matches, start",
    [
        ("%px --ta", ["--targets"], 4),
        ("%px --no", ["--noblock", "--no-stream"], 4),
        ("%%px --gr", ["--group-outputs"], 5),
        ("%engines st", ["start", "stop"], 9),
        ("%engines start --ke", ["--kernel"], 15),
        ("%pxconfig --ti", ["--timeout"], 10),
    ],
)
def test_magic_options_and_subcommands_complete(kc, code, matches, start):
    msg_id = kc.complete(code, len(code))
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok"
    assert reply["matches"] == matches
    assert (reply["cursor_start"], reply["cursor_end"]) == (start, len(code))


def test_px_magic_names_complete(kc):
    msg_id = kc.complete("%px", 3)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["matches"][:4] == ["%px", "%%px", "%pxconfig", "%pxresult"]


@pytest.mark.parametrize(
    "magic, words",
    [("px", ["--targets", "--noblock", "[stdout:0]"]), ("engines", ["start -n N", "connect FILE"])],
)
def test_inspect_and_question_mark_show_help(kc, magic, words):
    msg_id = kc.inspect(f"%{magic}", 2)
    reply = shell_reply(kc, msg_id)["content"]
    assert reply["status"] == "ok" and reply["found"] is True
    help_text = reply["data"]["text/plain"]
    for w in words:
        assert w in help_text, w
    reply, _ = execute(kc, f"%{magic}?")
    assert reply["status"] == "ok"
    (page,) = reply["payload"]
    assert page["source"] == "page"
    assert page["data"]["text/plain"] == help_text


# -- a notebook of its own ---------------------------------------------------------


def test_without_engines_px_says_how_to_start_them():
    with pxkernel() as (_, kc):
        table = engines_table(kc)
        assert table == {}
        reply, msgs = execute(kc, "%engines")
        (listing,) = of_type(msgs, "display_data")
        assert "No engines. Start some with %engines start -n N." in listing["content"]["data"]["text/plain"]
        reply, msgs = execute(kc, "%px print(1)")
        assert reply["ename"] == "UsageError", reply
        assert "%engines start -n N" in reply["evalue"]
        reply, msgs = execute(kc, "%pxresult")
        assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
        assert "no %px --noblock has run yet" in reply["evalue"]
        assert error_of(msgs)["ename"] == "UsageError"
        reply, msgs = execute(kc, "%engines start -n 0")
        assert reply["ename"] == "UsageError" and "-n" in reply["evalue"], reply
        reply, msgs = execute(kc, "%engines start -n 1 --kernel no-such-kernelspec")
        assert reply["ename"] == "EngineError", reply
        assert "no-such-kernelspec" in reply["evalue"]
        assert engines_table(kc) == {}


def test_bash_engines_work_next_to_python_engines(bash_kernelspec):
    with pxkernel() as (km, kc):
        reply, msgs = execute(kc, "%engines start -n 1", timeout=120)
        assert reply["status"] == "ok", reply
        reply, msgs = execute(kc, f"%engines start -n 1 --kernel {bash_kernelspec}", timeout=120)
        assert reply["status"] == "ok", reply
        assert re.fullmatch(r"Started 1 bash engine in [^:]+: id 1\.\n", stdout_of(msgs)), stdout_of(msgs)
        table = engines_table(kc)
        assert (table[0]["kernel"], table[1]["kernel"]) == ("python3", "bash")
        assert int(table[1]["pid"]) in descendants(kernel_pid(km))

        reply, msgs = execute(kc, "%px --targets 1 echo hi from engine $PXKERNEL_ENGINE_ID")
        assert reply["status"] == "ok", reply
        assert tagged_lines(msgs) == [("stdout", 1, "hi from engine 1")]
        reply, msgs = execute(kc, "%px --targets 0 import os; print('python', os.environ['PXKERNEL_ENGINE_ID'])")
        assert tagged_lines(msgs) == [("stdout", 0, "python 0")]
        # A failing bash command fails the cell, naming the bash engine.
        reply, msgs = execute(kc, "%px --targets 1 exit_with() { return 3; }; exit_with")
        assert reply["status"] == "error" and reply["ename"] == "CompositeError", reply
        assert reply["evalue"].startswith("1 of 1 engines failed: [1:execute]"), reply["evalue"]


def still_serves(external, expected_pid):
    """The attached kernel's process runs, and it answers kernel_info and runs a
    cell on a client of its own, with the state the %px cells left."""
    assert external.is_alive()
    assert alive(expected_pid)
    client = external.client()
    client.start_channels()
    try:
        info = shell_reply(client, client.kernel_info())["content"]
        assert info["status"] == "ok" and info["implementation"] == "ipython", info
        reply, msgs = execute(client, "import os; print(os.getpid(), attached_marker)")
        assert reply["status"] == "ok", reply
        assert stdout_of(msgs) == f"{expected_pid} set by %px\n"
    finally:
        client.stop_channels()


def test_connect_attaches_a_running_kernel_and_stop_detaches_it():
    external = KernelManager(kernel_name="python3")
    external.start_kernel()
    try:
        external_pid = external.provisioner.process.pid
        with pxkernel() as (_, kc):
            reply, msgs = execute(kc, f"%engines connect {external.connection_file}", timeout=60)
            assert reply["status"] == "ok", reply
            assert stdout_of(msgs) == "Attached engines 0.\n"
            table = engines_table(kc)
            assert list(table) == [0]
            assert table[0]["kernel"] == "python3" and table[0]["host"] == "127.0.0.1"
            assert table[0]["pid"] == "-", "pxkernel did not start it, so it has no pid for it"

            reply, msgs = execute(kc, "%px import os; print(os.getpid(), os.environ.get('PXKERNEL_ENGINE_ID'))")
            assert reply["status"] == "ok", reply
            assert tagged_lines(msgs) == [("stdout", 0, f"{external_pid} None")]
            reply, msgs = execute(kc, "%px attached_marker = 'set by %px'")
            assert reply["status"] == "ok", reply

            reply, msgs = execute(kc, "%engines restart 0")
            assert reply["ename"] == "EngineError" and "cannot restart" in reply["evalue"], reply

            reply, msgs = execute(kc, "%engines stop 0")
            assert reply["status"] == "ok", reply
            assert stdout_of(msgs) == "Stopped engines 0.\n"
            assert engines_table(kc) == {}
            reply, msgs = execute(kc, "%px print(1)")
            assert reply["ename"] == "UsageError", "no engine left"
            # Stopping an attached engine detaches it: the kernel was not ours to stop.
            still_serves(external, external_pid)
        # Nor does pxkernel's own shutdown stop it.
        still_serves(external, external_pid)
    finally:
        if external.has_kernel:
            external.shutdown_kernel(now=True)
        external.cleanup_resources()


def test_connect_to_a_missing_file_is_an_engine_error(tmp_path):
    with pxkernel() as (_, kc):
        missing = tmp_path / "no-such-kernel.json"
        reply, msgs = execute(kc, f"%engines connect {missing}")
        assert reply["status"] == "error" and reply["ename"] == "EngineError", reply
        assert str(missing) in reply["evalue"]
        assert engines_table(kc) == {}


def test_stopped_engines_are_gone_and_new_ones_get_new_ids():
    with pxkernel() as (km, kc):
        reply, _ = execute(kc, "%engines start -n 2", timeout=120)
        assert reply["status"] == "ok", reply
        pids = [int(r["pid"]) for r in engines_table(kc).values()]
        reply, msgs = execute(kc, "%engines stop 0")
        assert stdout_of(msgs) == "Stopped engines 0.\n"
        assert wait_gone(pids[:1]) == []
        reply, msgs = execute(kc, "%engines start -n 1", timeout=120)
        assert stdout_of(msgs).endswith(": id 2.\n"), "ids are never reused"
        assert sorted(engines_table(kc)) == [1, 2]
        reply, msgs = execute(kc, f"%px {PRINT_ID}")
        assert ids_that_printed(msgs) == [1, 2]
        reply, msgs = execute(kc, "%engines stop")
        assert stdout_of(msgs) == "Stopped engines 1-2.\n"
        assert engines_table(kc) == {}
        assert wait_gone(pids) == []
