#!/usr/bin/env python3
"""Checks executed notebooks against what their cells say about errors.

nbconvert's `raises-exception` tag lets a cell fail without stopping the run, but
does not require it to fail: a cell meant to show an error would pass unnoticed
if it stopped raising one. Here a code cell tagged `raises-exception` must have an
`error` output, and, when its metadata names the exception (`"pxkernel":
{"ename": "CompositeError"}`), an error of that name; a cell without the tag must
have none.

Usage: check_notebook_errors.py EXECUTED.ipynb [...]. Prints each mismatch with
the notebook and cell and exits 1 when there is any; `make test-notebooks` runs it
over the notebooks it executed. Uses only the standard library (a notebook is
JSON), so it runs with any Python 3.
"""

from __future__ import annotations

import json
import sys

TAG = "raises-exception"


def source_of(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def problems(path: str) -> tuple[list[str], int]:
    """What is wrong with one executed notebook, one line each; and how many
    cells it tags raises-exception."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    found = []
    tagged_cells = 0
    code_cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        tagged = TAG in meta.get("tags", [])
        tagged_cells += tagged
        expected = (meta.get("pxkernel") or {}).get("ename")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        first_line = source_of(cell).strip().splitlines()[0] if source_of(cell).strip() else ""
        where = f"{path}: cell {index} ({first_line!r})"
        if expected and not tagged:
            found.append(f"{where}: names an expected error ({expected}) but is not tagged {TAG}")
        if tagged and not errors:
            if cell.get("execution_count") is None and not cell.get("outputs"):
                found.append(f"{where}: tagged {TAG} but never ran (was the notebook executed?)")
            else:
                found.append(f"{where}: tagged {TAG} but raised no error")
        elif tagged and expected and all(e.get("ename") != expected for e in errors):
            names = ", ".join(e.get("ename", "?") for e in errors)
            found.append(f"{where}: tagged {TAG} and expected {expected}, but raised {names}")
        elif not tagged and errors:
            names = ", ".join(f"{e.get('ename', '?')}: {e.get('evalue', '')}" for e in errors)
            found.append(f"{where}: raised {names} but is not tagged {TAG}")
    if code_cells and all(c.get("execution_count") is None and not c.get("outputs") for c in code_cells):
        found.append(f"{path}: no code cell ran; check executed notebooks")
    return found, tagged_cells


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: check_notebook_errors.py EXECUTED.ipynb [...]", file=sys.stderr)
        return 2
    found, tagged = [], 0
    for path in paths:
        lines, n = problems(path)
        found += lines
        tagged += n
    for line in found:
        print(line, file=sys.stderr)
    if found:
        return 1
    print(f"{len(paths)} notebooks: every cell tagged {TAG} raised its error ({tagged} cells); no other cell did")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
