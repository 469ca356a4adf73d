"""Test session setup: install the built pxkernel kernelspec into a temp prefix and
point Jupyter (and IPython) at temp dirs, so no user or system config is touched."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> Path:
    explicit = os.environ.get("PXKERNEL_BIN")
    if explicit:
        return Path(explicit).resolve()
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "pxkernel"
        if p.is_file():
            return p
    raise RuntimeError("build pxkernel first: cargo build --release")


def pytest_configure(config):
    tmp = Path(tempfile.mkdtemp(prefix="pxk-tests-"))
    config._pxk_tmp = tmp
    # The venv running the tests provides the python3 home kernel.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ["JUPYTER_PATH"] = str(tmp / "share" / "jupyter")
    os.environ["JUPYTER_DATA_DIR"] = str(tmp / "data")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    os.environ["JUPYTER_CONFIG_DIR"] = str(tmp / "config")
    os.environ["IPYTHONDIR"] = str(tmp / "ipython")
    os.environ["MPLBACKEND"] = "Agg"
    binary = _binary()
    os.environ["PXKERNEL_BIN"] = str(binary)
    subprocess.run(
        [str(binary), "install", "--prefix", str(tmp)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def pytest_unconfigure(config):
    tmp = getattr(config, "_pxk_tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pxkernel_bin() -> Path:
    return Path(os.environ["PXKERNEL_BIN"])
