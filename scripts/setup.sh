#!/usr/bin/env bash
# Prepare a machine for pxkernel's demo and tests: system packages when missing
# (as root, with apt), the Rust toolchain check, and a Python venv with the
# Jupyter tooling pinned in requirements-dev.txt. Safe to run again: each step
# is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '==> %s\n' "$*"; }

apt_updated=0
need_pkg() {  # need_pkg COMMAND-OR-PATH PACKAGE...
    local probe="$1"; shift
    if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then return 0; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing $probe: install the Debian package(s) $* (needs root)" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi
need_pkg "$PYTHON" python3 python3-venv python3-pip
need_pkg cc gcc
need_pkg c++ g++
need_pkg make make
# A real PostgreSQL (with TLS) for the %sql tests, started by the tests themselves.
need_pkg openssl openssl
need_pkg /usr/lib/postgresql postgresql
need_pkg runuser util-linux
# Test hosts for the SSH suites: network namespaces, each with its own sshd and user.
need_pkg /usr/sbin/sshd openssh-server
need_pkg ssh openssh-client
need_pkg ip iproute2
need_pkg unshare util-linux
need_pkg useradd passwd
# (the hosts run engines from a venv made with Debian's python3, which needs ensurepip)
need_pkg "$(/usr/bin/python3 -c 'import sys; print(f"/usr/lib/python3.{sys.version_info.minor}/ensurepip")' 2>/dev/null || echo /usr/lib/python3/ensurepip)" python3-venv
# Headless Chromium for the JupyterLab tests (driven by Playwright, which downloads no browser).
need_pkg chromium chromium
for pkg in ${EXTRA_PACKAGES:-}; do need_pkg "${pkg%%=*}" "${pkg#*=}"; done

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV" || { need_pkg /usr/lib/python3/dist-packages/ensurepip python3-venv && "$PYTHON" -m venv "$VENV"; }
fi
stamp="$VENV/.requirements-dev.txt"
if ! cmp -s requirements-dev.txt "$stamp"; then
    say "installing Python packages into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    cp requirements-dev.txt "$stamp"
fi
# A second kind of engine for the demo and tests.
if [ ! -f "$VENV/share/jupyter/kernels/bash/kernel.json" ]; then
    say "installing the bash kernelspec into $VENV"
    "$VENV/bin/python" -m bash_kernel.install --sys-prefix >/dev/null
fi
