"""A throw-away PostgreSQL server with TLS for tests: initdb into a temp dir owned
by the unprivileged postgres user, a self-signed certificate for localhost,
hostssl-only TCP on a free 127.0.0.1 port with scram-sha-256 passwords."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass


def pg_bin() -> str | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[-2].split(".") if x.isdigit()])
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    return None


def unavailable_reason() -> str | None:
    if pg_bin() is None:
        return "PostgreSQL server binaries not installed (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres system user"
    if os.geteuid() != 0:
        return "starting a PostgreSQL server as the postgres user needs root"
    if shutil.which("openssl") is None:
        return "openssl not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    password: str
    cert: str
    dir: str
    user: str = "postgres"
    # The network namespace it runs in (a test host), or None for this machine's.
    netns: str | None = None

    def _in_netns(self, argv: list[str]) -> list[str]:
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + argv

    def url(self, sslmode: str = "require", password: str | None = None, extra: str = "") -> str:
        pw = self.password if password is None else password
        return f"postgresql://{self.user}:{pw}@127.0.0.1:{self.port}/postgres?sslmode={sslmode}{extra}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            self._in_netns(["runuser", "-u", "postgres", "--", os.path.join(pg_bin(), "pg_ctl"), "-D", os.path.join(self.dir, "data"), *args]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def restart(self) -> None:
        self._ctl("-m", "fast", "-w", "restart", "-l", os.path.join(self.dir, "server.log"))

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def psql(self, sql: str) -> str:
        out = subprocess.run(
            self._in_netns(["runuser", "-u", "postgres", "--", os.path.join(pg_bin(), "psql"), "-h", self.dir, "-p", str(self.port), "-d", "postgres", "-Atc", sql]),
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return out.stdout


@contextmanager
def postgres_server(netns: str | None = None):
    """Start a TLS PostgreSQL server (inside the network namespace `netns`, on its
    own loopback, when given); stop it and remove its files afterwards."""
    bindir = pg_bin()
    d = tempfile.mkdtemp(prefix="pxk-pg-")
    os.chmod(d, 0o755)
    password = "pw-" + os.urandom(6).hex()
    port = 5432 if netns else free_port()
    data = os.path.join(d, "data")
    with open(os.path.join(d, "pwfile"), "w") as f:
        f.write(password + "\n")
    shutil.chown(d, "postgres", "postgres")
    shutil.chown(os.path.join(d, "pwfile"), "postgres", "postgres")
    run = lambda *a: subprocess.run(["runuser", "-u", "postgres", "--", *a], check=True, capture_output=True, timeout=300)  # noqa: E731
    run(
        os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", f"--pwfile={d}/pwfile",
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
    )
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-days", "30", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", os.path.join(data, "server.key"), "-out", os.path.join(data, "server.crt")],
        check=True, capture_output=True, timeout=60,
    )
    for name in ("server.key", "server.crt"):
        shutil.chown(os.path.join(data, name), "postgres", "postgres")
    os.chmod(os.path.join(data, "server.key"), 0o600)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n"
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        )
    hba = os.path.join(data, "pg_hba.conf")
    with open(hba) as f:
        lines = f.read().splitlines()
    with open(hba, "w") as f:
        for line in lines:
            f.write(("hostssl" + line[4:] if line.startswith("host ") else line) + "\n")
    cert = os.path.join(d, "ca.crt")
    shutil.copy(os.path.join(data, "server.crt"), cert)
    os.chmod(cert, 0o644)
    server = Server(port=port, password=password, cert=cert, dir=d, netns=netns)
    server._ctl("-w", "start", "-l", os.path.join(d, "server.log"))
    try:
        yield server
    finally:
        try:
            server.stop()
        except Exception:
            pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    with postgres_server() as s:
        print(s.url())
        print(s.psql("select version()"))
        time.sleep(float(os.environ.get("HOLD", "0")))
