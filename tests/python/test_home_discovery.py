"""Where pxkernel finds its home kernel, and what it leaves in the runtime dir.

- A Jupyter started from a Python environment that is not on PATH: pxkernel finds
  `python3` where that Jupyter would (its environment's ipykernel, with no
  kernelspec on disk anywhere), not only through PATH.
- What `pxkernel install` recorded is used while it is there; a recorded home that
  has gone is reported in the next cell, never replaced silently.
- A pxkernel killed with SIGKILL cannot clean up; the next one removes what the
  dead ones left (connection files, Unix sockets) and never what a live one owns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from kernel_helpers import execute, kernel_pid, stdout_of, wait_gone

BIN = os.environ.get("PXKERNEL_BIN", "")


def _stripped_env(**extra) -> dict[str, str]:
    """An environment where no Python environment is active: PATH only has the
    system's bin dirs (whose python3 has no ipykernel)."""
    drop = ("VIRTUAL_ENV", "CONDA_PREFIX", "JUPYTER_PATH", "PYTHONPATH", "JPY_PARENT_PID", "PYTEST_CURRENT_TEST")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PXKERNEL_")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def _install(prefix: Path, name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN, "install", "--prefix", str(prefix), "--name", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _linked_venv(dest: Path) -> Path:
    """A fresh venv whose Python imports this one's packages (ipykernel, jupyter_client)
    through a .pth file, with no kernelspec in its share/jupyter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True, timeout=120)
    python = dest / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "pxk_link.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert not (dest / "share" / "jupyter" / "kernels" / "python3").exists()
    return python


LAUNCH = textwrap.dedent(
    """
    import sys
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=60)
    try:
        msg_id = kc.execute("import sys; print('HOME-PYTHON', sys.executable)")
        reply = kc.get_shell_msg(timeout=60)
        assert reply["parent_header"]["msg_id"] == msg_id, reply
        out = []
        while True:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "error":
                out.append(msg["content"]["ename"] + ": " + msg["content"]["evalue"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        print("".join(out))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    """
)


def test_python3_is_found_in_the_environment_of_the_jupyter_that_started_pxkernel(tmp_path):
    python = _linked_venv(tmp_path / "labenv")
    data = tmp_path / "data"
    # Installed from outside any environment: python3 is not found from there.
    installed = _install(tmp_path / "prefix", "pxk-native", _stripped_env(JUPYTER_DATA_DIR=str(data)))
    assert installed.returncode == 0, installed.stderr
    assert "warning:" in installed.stderr and "at run time" in installed.stderr, installed.stderr
    spec = json.loads((tmp_path / "prefix/share/jupyter/kernels/pxk-native/kernel.json").read_text())
    assert "PXKERNEL_HOME_SPEC" not in spec["env"] and "PXKERNEL_HOME_PYTHON" not in spec["env"], spec

    # A Jupyter (jupyter_client) run by absolute path from that venv, which is on
    # no PATH and has no python3 kernelspec: Jupyter itself offers its native kernel.
    env = _stripped_env(
        JUPYTER_PATH=str(tmp_path / "prefix/share/jupyter"),
        JUPYTER_DATA_DIR=str(data),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    run = subprocess.run(
        [str(python), "-c", LAUNCH, "pxk-native"], env=env, capture_output=True, text=True, timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"HOME-PYTHON {python}" in run.stdout, run.stdout + run.stderr


HIDE_IPYKERNEL = textwrap.dedent(
    """
    import sys
    class _HideIpykernel:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "ipykernel" or name.startswith("ipykernel."):
                raise ModuleNotFoundError(name)
            return None
    sys.meta_path.insert(0, _HideIpykernel)
    """
)


def test_the_home_missing_everywhere_names_the_places_searched_and_the_fix(tmp_path):
    installed = _install(tmp_path / "prefix", "pxk-nohome", _stripped_env(JUPYTER_DATA_DIR=str(tmp_path / "data")))
    assert installed.returncode == 0, installed.stderr
    # A Jupyter whose Python lacks ipykernel (hidden from its imports).
    python = _linked_venv(tmp_path / "noipk")
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "pxk_hide_ipykernel.py").write_text(HIDE_IPYKERNEL)
    (site / "pxk_hide_ipykernel.pth").write_text("import pxk_hide_ipykernel\n")
    env = _stripped_env(
        JUPYTER_PATH=str(tmp_path / "prefix/share/jupyter"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    run = subprocess.run([str(python), "-c", LAUNCH, "pxk-nohome"], env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert "HomeKernelUnavailable" in out, out
    assert 'no kernelspec named \\"python3\\"' in out or 'no kernelspec named "python3"' in out, out
    assert str(tmp_path / "prefix/share/jupyter/kernels") in out, out
    assert f"no ipykernel for {python}" in out, out
    assert f"{python} -m pip install ipykernel" in out, out


def test_a_recorded_home_that_has_gone_is_reported_and_replaced_by_the_one_found(tmp_path):
    # The home is found, at install, in a place only JUPYTER_PATH names.
    elsewhere = tmp_path / "elsewhere" / "share" / "jupyter"
    venv_spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3"
    shutil.copytree(venv_spec, elsewhere / "kernels" / "python3")
    env = dict(os.environ, JUPYTER_PATH=str(elsewhere))
    installed = _install(tmp_path / "prefix", "pxk-recorded", env)
    assert installed.returncode == 0, installed.stderr
    spec_file = tmp_path / "prefix/share/jupyter/kernels/pxk-recorded/kernel.json"
    spec = json.loads(spec_file.read_text())
    recorded = elsewhere / "kernels" / "python3"
    assert spec["env"]["PXKERNEL_HOME_SPEC"] == str(recorded), spec

    shutil.rmtree(recorded)
    os.environ["JUPYTER_PATH"], saved = str(tmp_path / "prefix/share/jupyter"), os.environ["JUPYTER_PATH"]
    try:
        km, kc = start_new_kernel(kernel_name="pxk-recorded", startup_timeout=60)
    finally:
        os.environ["JUPYTER_PATH"] = saved
    try:
        reply, msgs = execute(kc, "print('ran')")
        assert reply["status"] == "ok", reply
        assert "ran" in stdout_of(msgs)
        notice = stdout_of(msgs, "stderr")
        assert "recorded at install" in notice and str(recorded) in notice, notice
        assert str(venv_spec) in notice, notice
        # Said once.
        reply, msgs = execute(kc, "print('again')")
        assert stdout_of(msgs, "stderr") == "", msgs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def _runtime_entries(runtime: Path) -> set[str]:
    return {str(p.relative_to(runtime)) for p in runtime.rglob("*")}


def test_a_sigkilled_pxkernel_leaves_nothing_that_piles_up_in_the_runtime_dir(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    for _ in range(3):
        km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60)
        reply, _ = execute(kc, "1")
        assert reply["status"] == "ok", reply
        ours = [p for p in runtime.iterdir() if p.name.startswith("pxk-")]
        assert len(ours) == 1 and any(ours[0].iterdir()), _runtime_entries(runtime)
        pid = kernel_pid(km)
        kc.stop_channels()
        os.kill(pid, signal.SIGKILL)
        wait_gone([pid])
        km.cleanup_resources()  # jupyter_client's own connection file
    # The last dead pxkernel's files are there until the next pxkernel starts
    # (each start above removed the one before).
    dead = [p for p in runtime.iterdir() if p.name.startswith("pxk-")]
    assert len(dead) == 1 and any(dead[0].iterdir()), _runtime_entries(runtime)

    km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60)
    live_pid = kernel_pid(km)
    try:
        reply, _ = execute(kc, "1")
        assert reply["status"] == "ok", reply
        ours = [p for p in runtime.iterdir() if p.name.startswith("pxk-")]
        assert len(ours) == 1, _runtime_entries(runtime)
        left = {p.name for p in runtime.iterdir()} - {ours[0].name, Path(km.connection_file).name}
        assert left == set(), left
        # The live one's home kernel: its connection file and sockets are in place.
        files = {p.name for p in ours[0].iterdir()}
        assert any(n.startswith("kernel-") and n.endswith(".json") for n in files), files
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    # A clean shutdown removes the live one's directory too.
    wait_gone([live_pid])
    assert not any(p.name.startswith("pxk-") for p in runtime.iterdir()), _runtime_entries(runtime)


def test_kernel_names_from_the_user_never_reach_outside_the_kernels_directory():
    km, kc = start_new_kernel(kernel_name="pxkernel", startup_timeout=60, extra_arguments=["--home", "../python3"])
    try:
        reply, msgs = execute(kc, "print('never runs')")
        assert reply["status"] == "error", reply
        assert reply["ename"] == "HomeKernelUnavailable", reply
        assert '"../python3" is not a kernelspec name' in reply["evalue"], reply
        reply, msgs = execute(kc, "%engines start -n 1 --kernel ../../etc")
        assert reply["status"] == "error", reply
        assert '"../../etc" is not a kernelspec name' in reply["evalue"], reply
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
