"""Test session setup: install the built pxkernel kernelspec into a temp prefix and
point Jupyter (and IPython) at temp dirs, so no user or system config is touched;
the kernelspecs and the PostgreSQL server the suites need; and the rule that,
under PXKERNEL_REQUIRE_ALL=1 (set by `make test`, as in CI), a skipped test is a
failure: a required suite that cannot run must not pass unnoticed."""

import json
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


REQUIRE_ALL = "PXKERNEL_REQUIRE_ALL"


def require_all() -> bool:
    """Whether every test must run (`make test`): then a skip fails, saying why."""
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_the_skip(node, report) -> None:
    """Turn a skip report into a failure that says why it was skipped."""
    reason = _skip_reason(report)
    try:
        pytest.fail(
            f"skipped, but {REQUIRE_ALL}=1 requires every test to run: {reason} "
            "(install what the reason names; `make test` does so as root)",
            pytrace=False,
        )
    except pytest.fail.Exception:
        excinfo = pytest.ExceptionInfo.from_current()
    report.outcome = "failed"
    report.longrepr = node.repr_failure(excinfo)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and require_all():
        _fail_the_skip(item, report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and require_all():
        _fail_the_skip(collector, report)


def pytest_report_header(config):
    if require_all():
        return f"{REQUIRE_ALL}=1: a skipped test fails"
    return f"{REQUIRE_ALL} unset: tests whose server or kernel is missing are skipped (-rs says why)"


def pytest_unconfigure(config):
    tmp = getattr(config, "_pxk_tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pxkernel_bin() -> Path:
    return Path(os.environ["PXKERNEL_BIN"])


# -- Engines for the %px suites (test_px.py, test_px_faults.py) ---------------

FAKE_ENGINE_SPEC = "pxk-fake-engine"
BROKEN_ENGINE_SPEC = "pxk-broken-engine"


@pytest.fixture(scope="session")
def jupyter_prefix() -> Path:
    """The temp prefix whose share/jupyter is JUPYTER_PATH: kernelspecs installed
    here are the first pxkernel (and jupyter_client) find."""
    return Path(os.environ["JUPYTER_PATH"]).parents[1]


def write_kernelspec(prefix: Path, name: str, argv: list[str], **extra) -> str:
    d = prefix / "share" / "jupyter" / "kernels" / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": name, "language": "python", **extra}
    (d / "kernel.json").write_text(json.dumps(spec, indent=1))
    return name


@pytest.fixture(scope="session")
def bash_kernelspec(jupyter_prefix) -> str:
    """bash_kernel's kernelspec, installed into the temp prefix; skips without bash_kernel
    (a failure under PXKERNEL_REQUIRE_ALL=1)."""
    try:
        import bash_kernel.kernel  # noqa: F401
    except ImportError as e:
        pytest.skip(f"bash engines need bash_kernel in the test venv ({e}); pip install bash_kernel")
    if shutil.which("bash") is None:
        pytest.skip("bash engines need a bash executable on PATH")
    subprocess.run(
        [sys.executable, "-m", "bash_kernel.install", "--prefix", str(jupyter_prefix)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (jupyter_prefix / "share" / "jupyter" / "kernels" / "bash" / "kernel.json").is_file()
    return "bash"


@pytest.fixture(scope="session")
def fake_engine_kernelspec(jupyter_prefix) -> str:
    """A kernelspec for tests/python/fake_engine.py, the deliberately misbehaving kernel."""
    script = Path(__file__).with_name("fake_engine.py")
    return write_kernelspec(
        jupyter_prefix,
        FAKE_ENGINE_SPEC,
        [sys.executable, str(script), "{connection_file}"],
        display_name="Fake engine (pxkernel tests)",
        language="fake",
        interrupt_mode="message",
    )


@pytest.fixture(scope="session")
def broken_kernelspec(jupyter_prefix) -> str:
    """A kernelspec whose process says why it cannot start on stderr and exits 3."""
    return write_kernelspec(
        jupyter_prefix,
        BROKEN_ENGINE_SPEC,
        [sys.executable, "-c", "import sys; sys.stderr.write('boom: cannot start\\n'); sys.exit(3)"],
        display_name="Broken engine (pxkernel tests)",
    )


# -- PostgreSQL for the %sql suite (test_sql_postgres.py) ----------------------


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL server with TLS (pg_server.py), shared by the session;
    the tests that use it are skipped, saying why, where one cannot be started (a
    failure under PXKERNEL_REQUIRE_ALL=1)."""
    from pg_server import postgres_server, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with postgres_server() as server:
        yield server


# -- SSH test hosts for the SSH suites (tests/hosts/testhosts.py) --------------

@pytest.fixture(scope="session")
def ssh_hosts():
    """The SSH test hosts (pxa, pxb, pxc via pxa, pxd without ipykernel; see
    tests/hosts/README.md), up for the whole session and always torn down; the
    tests that use them are skipped, saying why, where they cannot run (a failure
    under PXKERNEL_REQUIRE_ALL=1)."""
    from ssh_hosts import running_hosts, testhosts, unavailable_reason

    # Hosts already up by hand (`python tests/hosts/testhosts.py up DIR`): use them
    # and leave them up, so a suite can be run again and again while developing.
    if os.environ.get("PXKERNEL_TEST_HOSTS"):
        yield testhosts.load(os.environ["PXKERNEL_TEST_HOSTS"])
        return
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with running_hosts() as hosts:
        yield hosts
