"""SSH test hosts for the suites (pxa, pxb, pxc via pxa, pxd without ipykernel): a
thin wrapper around tests/hosts/testhosts.py, as pg_server.py is for PostgreSQL —
why they cannot run here, and a context manager that brings them up in a fresh
directory and always tears them down."""

from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hosts"))

import testhosts  # noqa: E402
from testhosts import HostError, Hosts  # noqa: E402

__all__ = ["HostError", "Hosts", "running_hosts", "testhosts", "unavailable_reason"]


def unavailable_reason() -> str | None:
    """Why the SSH test hosts cannot run on this machine (not root, no sshd, no ip, ...), or None."""
    return testhosts.unavailable_reason()


@contextmanager
def running_hosts():
    """Bring the four hosts up in a fresh directory, yield their Hosts, then bring them
    down and remove the directory, whatever happened."""
    # Under /tmp, not pytest's tmp_path (/tmp/pytest-of-root is 0700): the test users'
    # homes are in this directory, and they must be able to reach them.
    d = tempfile.mkdtemp(prefix="pxk-hosts-", dir="/tmp")
    try:
        hosts = testhosts.up(d)  # on failure, up has undone what it did
        try:
            yield hosts
        finally:
            testhosts.down(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    with running_hosts() as h:
        for name in h.names:
            print(name, h.run(name, "hostname", check=True).stdout.strip(), h[name].address, h[name].user)
