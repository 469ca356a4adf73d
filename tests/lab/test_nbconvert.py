"""The JupyterLab suite's notebook run headless: `<venv>/bin/jupyter-nbconvert --execute`
started by absolute path with the venv not on PATH, on the pxkernel installed from
outside the venv, and the outputs the executed notebook then holds (the slider is
not moved here: its cell must leave a widget view and the widget's saved state)."""

from __future__ import annotations

import re
import subprocess

import nbformat
import pytest

from lab_support import assert_no_leftovers, venv_tool, write_notebook

NBCONVERT_TIMEOUT = 240  # s, the whole run; each cell gets ExecutePreprocessor.timeout
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def executed(outside, pxkernel_spec, tmp_path_factory):
    """{cell key: executed cell}, and the executed notebook under the key None."""
    nbconvert = venv_tool("jupyter-nbconvert")
    env, marker = outside("nbconvert")
    work = tmp_path_factory.mktemp("nbconvert")
    source = write_notebook(work / "pxkernel-headless.ipynb", pxkernel_spec, "pxkernel")
    try:
        run = subprocess.run(
            [
                str(nbconvert),
                "--to",
                "notebook",
                "--execute",
                f"--ExecutePreprocessor.kernel_name={pxkernel_spec}",
                "--ExecutePreprocessor.timeout=120",
                "--output-dir",
                str(work / "out"),
                str(source),
            ],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NBCONVERT_TIMEOUT,
        )
    finally:
        assert_no_leftovers(marker)
    assert run.returncode == 0, f"nbconvert failed ({run.returncode}):\n{run.stdout}\n{run.stderr[-6000:]}"
    nb = nbformat.read(str(work / "out" / source.name), as_version=4)
    cells = {cell.id: cell for cell in nb.cells}
    cells[None] = nb
    return cells


def texts(cell) -> str:
    """Everything a cell shows as text: streams, text/plain of results and displays, errors."""
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.data.get("text/plain", ""))
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}")
    return "\n".join(parts)


def test_nbconvert_plain_cell_prints_and_has_its_result(executed):
    cell = executed["plain"]
    stream, result = cell.outputs
    assert (stream.output_type, stream.name, stream.text) == ("stream", "stdout", "hello from home\n")
    assert result.output_type == "execute_result" and result.data["text/plain"] == "42"
    assert result.execution_count == cell.execution_count


def test_nbconvert_html_display_keeps_its_html(executed):
    (out,) = executed["html"].outputs
    assert '<b id="pxk-html">bold from home</b>' in out.data["text/html"]


def test_nbconvert_lsmagic_lists_pxkernels_magics(executed):
    (out,) = executed["lsmagic"].outputs
    for magic in ("%px", "%engines", "%sql", "%lsmagic"):
        assert magic in out.data["text/plain"] and magic in out.data["text/html"]


def test_nbconvert_engines_start_and_px_is_tagged_by_engine(executed):
    assert re.search(r"Started 2 \S+ engines in .*: ids 0", texts(executed["engines"]))
    text = texts(executed["px"])
    assert "[stdout:0] engine 0" in text and "[stdout:1] engine 1" in text, text


def test_nbconvert_px_progress_is_left_in_its_final_form(executed):
    cell = executed["px_progress"]
    progress = [o for o in cell.outputs if "engines done" in o.get("data", {}).get("text/plain", "")]
    assert len(progress) == 1, cell.outputs
    (shown,) = progress
    assert re.fullmatch(r"%px: 2/2 engines done \(\d+\.\d s\)", shown.data["text/plain"]), shown.data
    assert '<progress value="2" max="2"' in shown.data["text/html"]
    text = texts(cell)
    assert "[stdout:0] slept" in text and "[stdout:1] slept" in text, text


def test_nbconvert_sql_result_is_a_table(executed):
    assert "sqlite://" in texts(executed["sql_connect"])
    cell = executed["sql_table"]
    tables = [o for o in cell.outputs if "<table" in o.get("data", {}).get("text/html", "")]
    assert len(tables) == 1, cell.outputs
    html = tables[0].data["text/html"]
    for value in ("id", "name", "rust", "python"):
        assert f">{value}<" in html, html


def test_nbconvert_slider_leaves_a_widget_view_and_its_state(executed):
    (view,) = executed["slider"].outputs
    model_id = view.data[WIDGET_VIEW]["model_id"]
    state = executed[None].metadata.widgets[WIDGET_STATE]["state"]
    assert state[model_id]["model_name"] == "IntSliderModel"
    assert state[model_id]["state"]["value"] == 3
    assert texts(executed["slider_value"]) == "slider at 3\n"


def test_nbconvert_error_is_recorded_with_its_traceback(executed):
    (err,) = executed["error"].outputs
    assert (err.output_type, err.ename, err.evalue) == ("error", "ValueError", "pxk-lab boom")
    assert any("pxk-lab boom" in line for line in err.traceback)
