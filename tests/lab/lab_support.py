"""What the JupyterLab and nbconvert suites share: where the venv, the pxkernel
binary and Chromium are, the environment of a shell outside the venv, the notebook
both suites execute, and finding the processes a test started (they carry a marker
in their environment) to check that none outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import nbformat
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
SHOTS = ROOT / "build" / "lab"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium package
# What a user's shell has when the venv is not activated: no venv, no ipykernel
# (Debian's /usr/bin/python3 has none), no Jupyter paths.
OUTSIDE_PATH = "/usr/bin:/bin"
MARKER = "PXK_LAB_TEST_RUN"
DROPPED = {"VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONHOME", "MPLBACKEND"}


def pxkernel_binary() -> Path:
    explicit = os.environ.get("PXKERNEL_BIN")
    p = Path(explicit).resolve() if explicit else ROOT / "target" / "release" / "pxkernel"
    if not p.is_file():
        raise RuntimeError(f"build pxkernel first (cargo build --release): {p} is missing")
    return p


def venv_tool(name: str) -> Path:
    p = VENV / "bin" / name
    if not p.is_file():
        pytest.skip(f"{p.relative_to(ROOT)} is missing: `make setup` installs requirements-dev.txt")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outside_env(base: Path, marker: str) -> dict[str, str]:
    """The environment of a shell outside the venv, with Jupyter's dirs and HOME in `base`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in DROPPED and not k.startswith(("JUPYTER", "IPYTHON", "PXKERNEL"))
    }
    for d in ("home", "config", "data", "runtime"):
        (base / d).mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=OUTSIDE_PATH,
        HOME=str(base / "home"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        LANG=os.environ.get("LANG", "C.UTF-8"),
    )
    env[MARKER] = marker
    return env


# -- The notebook both suites run ---------------------------------------------

# (key, source, tags): the Lab suite runs them one by one by key; nbconvert runs all.
CELLS = [
    ("plain", "x = 41\nprint('hello from home')\nx + 1", []),
    ("html", "from IPython.display import HTML\nHTML('<b id=\"pxk-html\">bold from home</b>')", []),
    ("lsmagic", "%lsmagic", []),
    ("engines", "%engines start -n 2", []),
    ("px", "%px import os; print('engine', os.environ['PXKERNEL_ENGINE_ID'])", []),
    ("px_progress", "%px --progress-after 0.5 import time; time.sleep(3); print('slept')", []),
    ("sql_connect", "%sql sqlite://", []),
    (
        "sql_table",
        "%%sql\nCREATE TABLE langs (id int, name text);\n"
        "INSERT INTO langs VALUES (1, 'rust'), (2, 'python');\nSELECT * FROM langs",
        [],
    ),
    ("slider", "import ipywidgets as w\ns = w.IntSlider(value=3, max=10)\ns", []),
    ("slider_value", "print('slider at', s.value)", []),
    ("error", "raise ValueError('pxk-lab boom')", ["raises-exception"]),
]
KEYS = [key for key, _, _ in CELLS]


def write_notebook(path: Path, kernel_name: str, display_name: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": display_name, "language": "python"}
    for key, source, tags in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        cell.id = key
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


# -- Processes -----------------------------------------------------------------


def marked_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries this test's marker."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(MARKER) == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def describe(procs) -> str:
    lines = []
    for p in procs:
        try:
            lines.append(f"  {p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"  {p.pid}: (gone)")
    return "\n".join(lines)


def assert_no_leftovers(marker: str, timeout: float = 20.0) -> None:
    """Every process started with `marker` must end within `timeout`; any left are killed
    (so they do not outlive the test run) and the test fails naming them."""
    deadline = time.monotonic() + timeout
    left = marked_processes(marker)
    while left and time.monotonic() < deadline:
        psutil.wait_procs(left, timeout=0.5)
        left = marked_processes(marker)
    if left:
        text = describe(left)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)
        pytest.fail(f"processes left behind:\n{text}")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
