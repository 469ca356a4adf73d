"""scripts/check_notebook_errors.py, which `make test-notebooks` runs over the
executed notebooks: a cell tagged raises-exception must have raised (the error
named in its metadata, when it names one), and no other cell may have. Checked
on small notebooks written here, without a kernel; and the repository's
notebooks are checked to be tagged as the script expects."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_notebook_errors.py"
TAG = "raises-exception"


def cell(source, outputs=(), tags=(), ename=None, count=1):
    metadata = {"tags": list(tags)} if tags else {}
    if ename:
        metadata["pxkernel"] = {"ename": ename}
    return {
        "cell_type": "code",
        "execution_count": count,
        "metadata": metadata,
        "outputs": list(outputs),
        "source": source,
        "id": hashlib.sha1(source.encode()).hexdigest()[:8],
    }


def error(ename):
    return {"output_type": "error", "ename": ename, "evalue": "boom", "traceback": [f"{ename}: boom"]}


def stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def check(tmp_path, *cells):
    nb = {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "executed.ipynb"
    path.write_text(json.dumps(nb))
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_a_tagged_cell_that_raised_passes(tmp_path):
    rc, out = check(tmp_path, cell("x = 1"), cell("1/0", [error("ZeroDivisionError")], [TAG], "ZeroDivisionError"))
    assert rc == 0, out
    assert "1 cells" in out


def test_a_tagged_cell_that_did_not_raise_fails(tmp_path):
    rc, out = check(tmp_path, cell("1/1", [stream("1.0\n")], [TAG]))
    assert rc == 1
    assert "cell 0 ('1/1'): tagged raises-exception but raised no error" in out


def test_a_tagged_cell_that_raised_another_error_fails(tmp_path):
    rc, out = check(tmp_path, cell("%px 1/0", [error("UsageError")], [TAG], "CompositeError"))
    assert rc == 1
    assert "expected CompositeError, but raised UsageError" in out


def test_an_untagged_cell_that_raised_fails(tmp_path):
    rc, out = check(tmp_path, cell("1/0", [error("ZeroDivisionError")]))
    assert rc == 1
    assert "raised ZeroDivisionError: boom but is not tagged raises-exception" in out


def test_a_notebook_that_was_not_executed_fails(tmp_path):
    rc, out = check(tmp_path, cell("x = 1", count=None), cell("1/0", tags=[TAG], count=None))
    assert rc == 1
    assert "never ran" in out and "no code cell ran" in out


def test_an_expected_error_without_the_tag_fails(tmp_path):
    rc, out = check(tmp_path, cell("1/0", [error("ZeroDivisionError")], ename="ZeroDivisionError"))
    assert rc == 1
    assert "is not tagged raises-exception" in out


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_the_notebooks_name_the_error_of_every_tagged_cell(notebook):
    nb = json.loads(notebook.read_text())
    for c in nb["cells"]:
        if TAG in c.get("metadata", {}).get("tags", []):
            assert c["metadata"].get("pxkernel", {}).get("ename"), (notebook.name, c["source"])
