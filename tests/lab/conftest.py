"""Fixtures of the JupyterLab and nbconvert suites: pxkernel's kernelspec installed
into the venv by `pxkernel install --prefix` run from outside it (under a name of
its own, removed afterwards), fresh outside-the-venv environments, the screenshot
dir, and each test's outcome kept on it for the failure screenshots. Under
PXKERNEL_REQUIRE_ALL=1 (set by `make test`, as in CI) a skipped test is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from lab_support import SHOTS, VENV, assert_no_leftovers, outside_env, pxkernel_binary, venv_tool

# -- Fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def outside(tmp_path_factory):
    """A fresh outside-the-venv environment and its marker, for one suite."""

    def make(name: str) -> tuple[dict[str, str], str]:
        marker = uuid.uuid4().hex
        return outside_env(tmp_path_factory.mktemp(name), marker), marker

    return make


@pytest.fixture(scope="session")
def pxkernel_spec(outside):
    """pxkernel's kernelspec under a unique name in the venv, installed by `pxkernel
    install --prefix` run from outside the venv; removed at the end of the session."""
    binary = pxkernel_binary()
    venv_tool("jupyter")
    env, marker = outside("install")
    name = f"pxk-lab-{uuid.uuid4().hex[:8]}"
    run = subprocess.run(
        [str(binary), "install", "--prefix", str(VENV), "--name", name],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"pxkernel install failed:\n{run.stdout}{run.stderr}"
    spec_dir = VENV / "share" / "jupyter" / "kernels" / name
    assert (spec_dir / "kernel.json").is_file(), run.stdout + run.stderr
    assert_no_leftovers(marker)
    try:
        yield name
    finally:
        gone = subprocess.run(
            [str(binary), "uninstall", "--prefix", str(VENV), "--name", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        left = spec_dir.exists()
        shutil.rmtree(spec_dir, ignore_errors=True)
        assert gone.returncode == 0 and not left, f"pxkernel uninstall failed:\n{gone.stdout}{gone.stderr}"


@pytest.fixture(scope="session")
def screenshots():
    """build/lab/, without the failure screenshots of an earlier run."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*-failed.png"):
        old.unlink(missing_ok=True)
    return SHOTS


# -- Under PXKERNEL_REQUIRE_ALL=1 (`make test`, CI) a skipped test fails ----------

REQUIRE_ALL = "PXKERNEL_REQUIRE_ALL"


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def fail_the_skip(report) -> None:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped, but {REQUIRE_ALL}=1 requires every test to run: {reason}\n"
        "(install what the reason names; `make test` does so as root)"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.skipped and not hasattr(rep, "wasxfail") and require_all():
        fail_the_skip(rep)
    # Keep each phase's report on the item, so fixtures can tell a failed test.
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    rep = yield
    if rep.skipped and require_all():
        fail_the_skip(rep)
    return rep


def pytest_report_header(config):
    if require_all():
        return f"{REQUIRE_ALL}=1: a skipped test fails"
    return f"{REQUIRE_ALL} unset: tests whose browser or Jupyter tool is missing are skipped (-rs says why)"
