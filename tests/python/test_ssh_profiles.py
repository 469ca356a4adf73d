"""Cluster profiles (TOML in Jupyter's config directory): `%engines profiles`
lists them, `%engines start --profile NAME` opens the tunnels a profile names
and starts its engines on every host in parallel, over the SSH test hosts
(tests/hosts); a bad profile is an error naming its file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernel_helpers import error_of, execute, of_type, pxkernel, stdout_of


def profiles_dir() -> Path:
    d = Path(os.environ["JUPYTER_CONFIG_DIR"]) / "pxkernel" / "profiles"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def profile(ssh_hosts):
    """A profile `three`: 2 engines on pxa, 1 on pxc (through pxa), and a tunnel."""
    path = profiles_dir() / "three.toml"
    path.write_text(
        'description = "pxa and pxc, and a tunnel"\n\n'
        "[[hosts]]\nhost = \"pxa\"\nn = 2\nenv = { PXK_PROFILE = \"three\" }\n\n"
        "[[hosts]]\nhost = \"pxc\"\nn = 1\ngrace = 10\n\n"
        "[[tunnels]]\nname = \"sshd-b\"\nargs = \"-L 0:127.0.0.1:22 pxb\"\n"
    )
    yield "three"
    path.unlink(missing_ok=True)


@pytest.fixture
def kc(ssh_hosts):
    with pxkernel() as (_, kc):
        yield kc


def test_profiles_are_listed_and_started(kc, profile):
    reply, msgs = execute(kc, "%engines profiles")
    assert reply["status"] == "ok", reply
    (table,) = of_type(msgs, "display_data")
    text = table["content"]["data"]["text/plain"]
    assert "three" in text and "2×pxa, 1×pxc" in text and "pxa and pxc" in text, text

    reply, msgs = execute(kc, f"%engines start --profile {profile}", timeout=120)
    said = stdout_of(msgs)
    assert reply["status"] == "ok", (reply, said)
    assert "tunnel sshd-b to pxb: 127.0.0.1:" in said, said
    assert f"Started 3 engines of profile {profile} (2 on pxa, 1 on pxc)" in said, said

    reply, msgs = execute(kc, "%px import os, socket; print(socket.gethostname(), os.environ.get('PXK_PROFILE'))")
    assert reply["status"] == "ok", reply
    lines = sorted(line.split("] ", 1)[1] for line in stdout_of(msgs).splitlines())
    assert lines == ["pxa three", "pxa three", "pxc None"], lines
    reply, _ = execute(kc, "%engines stop all")
    assert reply["status"] == "ok"


def test_a_bad_profile_names_its_line(kc):
    path = profiles_dir() / "broken.toml"
    path.write_text("[[hosts]]\nhost = \"pxa\"\nn = 0\n")
    try:
        reply, msgs = execute(kc, "%engines start --profile broken")
        assert reply["status"] == "error"
        assert f"{path}, line 3: n is a number of engines from 1 to 1024" in error_of(msgs)["evalue"]
        reply, msgs = execute(kc, "%engines profiles")
        (table,) = of_type(msgs, "display_data")
        assert "error: " in table["content"]["data"]["text/plain"]
    finally:
        path.unlink()
    reply, msgs = execute(kc, "%engines start --profile nosuch")
    assert reply["status"] == "error" and "no profile \"nosuch\"" in error_of(msgs)["evalue"], reply
