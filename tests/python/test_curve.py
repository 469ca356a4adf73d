"""CurveZMQ transport encryption (RFC 26) on every channel: pxkernel's kernelspec
declares it, so jupyter_client's transport_encryption="required" gives pxkernel
keys and connects to it with CURVE on shell, iopub, stdin, control and heartbeat.
Plain clients and clients with the wrong server key get nothing and disturb no
one; the conformance suite and notebooks run encrypted; and engines of a
kernelspec that declares curve, reached over TCP, get keys of their own and are
driven with CURVE, while an ipykernel home (Unix sockets) gets none.

Silence is checked by waiting a bounded time (NO_REPLY_S) for a reply that must
not come; each such check has a positive control over the same helper."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager, KernelManager, start_new_kernel
from jupyter_client.session import Session
from nbclient import NotebookClient

import test_conformance
from conftest import write_kernelspec
from kernel_helpers import (
    TIMEOUT,
    alive,
    collect,
    connection_file_of,
    control_kernel_info,
    execute,
    heartbeat_echo,
    home_pid,
    interrupt_a_running_cell,
    kernel_pid,
    notebook_env,
    shell_reply,
    stdout_of,
    tagged_lines,
    wait_gone,
)

ROOT = Path(__file__).resolve().parents[2]
NO_REPLY_S = 3.0  # how long a client that must get nothing is given


@contextmanager
def encrypted_pxkernel(**kwargs):
    """A pxkernel started as a server with transport_encryption="required" starts it,
    with a connected (CURVE) blocking client; shut down afterwards."""
    km = KernelManager(kernel_name="pxkernel", transport_encryption="required", **kwargs)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def encrypted():
    with encrypted_pxkernel() as (km, kc):
        yield SimpleNamespace(km=km, kc=kc)


def assert_curve_keys(info: dict):
    """A connection file's CurveZMQ keys: Z85 text, the public key that of the secret."""
    pub, sec = info.get("curve_publickey"), info.get("curve_secretkey")
    assert isinstance(pub, str) and isinstance(sec, str), sorted(info)
    assert len(pub) == len(sec) == 40, "a Z85 key is 40 characters"
    assert zmq.curve_public(sec.encode()) == pub.encode(), "the public key is the secret key's"


def socket_to(km, channel, kind, serverkey=None):
    """A socket of our own to one of the kernel's ports: a CURVE client of serverkey
    with a fresh keypair when serverkey is given, else a plain (NULL) one. Sending
    gives up after a second: after a failed handshake libzmq may drop the pipe,
    and a send with no pipe would wait for ever."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.sndtimeo = 1000
    if serverkey is not None:
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = serverkey
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    port = getattr(km, channel + "_port")
    sock.connect(f"tcp://{km.ip}:{port}" if km.transport == "tcp" else f"{km.transport}://{km.ip}-{port}")
    return sock


def try_send(send, *args):
    """send(*args); False when no pipe could take the message (zmq.Again, see socket_to)."""
    try:
        send(*args)
        return True
    except zmq.Again:
        return False


def send_kernel_info(km, sock):
    """Send a kernel_info_request signed with the kernel's key; (our session, its msg_id)."""
    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    msg = session.msg("kernel_info_request")
    try_send(session.send, sock, msg)
    return session, msg["header"]["msg_id"]


def kernel_info_over(km, sock, timeout):
    """A kernel_info_request on our socket; its reply, or None when none comes in time."""
    session, msg_id = send_kernel_info(km, sock)
    deadline = time.monotonic() + timeout
    while sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        msg = session.deserialize(session.feed_identities(sock.recv_multipart())[1])
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    return None


def kernel_info_from(km, serverkey, timeout):
    """kernel_info_over a shell socket of our own (see socket_to), closed afterwards."""
    sock = socket_to(km, "shell", zmq.DEALER, serverkey)
    try:
        return kernel_info_over(km, sock, timeout)
    finally:
        sock.close()


def heard_within(socks, timeout) -> list:
    """Those of socks readable within timeout (waits the whole time when none is)."""
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    return [s for s, _ in poller.poll(int(timeout * 1000))]


def curve_heartbeat(km, serverkey, timeout) -> bool:
    """One ping on the heartbeat as jupyter_client's HBChannel sends it (a CURVE REQ
    with a fresh keypair); True when echoed within timeout."""
    sock = socket_to(km, "hb", zmq.REQ, serverkey)
    try:
        sent = try_send(sock.send, b"ping-curve")
        return sent and bool(sock.poll(int(timeout * 1000))) and sock.recv() == b"ping-curve"
    finally:
        sock.close()


# -- the kernelspec ---------------------------------------------------------------


def test_the_installed_kernelspec_declares_curve():
    spec = KernelSpecManager().get_kernel_spec("pxkernel")
    assert spec.metadata.get("supported_encryption") == ["curve"], spec.metadata
    assert "pxkernel" in spec.metadata, "pxkernel's own metadata is kept"


# -- every channel encrypted ----------------------------------------------------------


def test_the_connection_file_carries_the_kernels_keys(encrypted):
    km = encrypted.km
    info = json.loads(Path(km.connection_file).read_text())
    assert info["transport"] == "tcp"
    assert_curve_keys(info)
    assert info["curve_publickey"].encode() == km.curve_publickey
    assert connection_file_of(kernel_pid(km)) == Path(km.connection_file), "pxkernel was given that file"


def test_shell_and_iopub_work_encrypted(encrypted):
    kc = encrypted.kc
    info = shell_reply(kc, kc.kernel_info())["content"]
    assert info["status"] == "ok" and info["implementation"] == "pxkernel", info
    reply, msgs = execute(kc, "print('x')")
    assert reply["status"] == "ok", reply
    assert stdout_of(msgs) == "x\n"


def test_stdin_works_encrypted(encrypted):
    kc = encrypted.kc
    msg_id = kc.execute("name = input('Who? ')\nprint('hi', name)", allow_stdin=True)
    req = kc.get_stdin_msg(timeout=TIMEOUT)
    assert req["msg_type"] == "input_request" and req["content"]["prompt"] == "Who? ", req
    kc.input("Ada")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stdout_of(collect(kc, msg_id)) == "hi Ada\n"


def test_control_works_encrypted(encrypted):
    info = control_kernel_info(encrypted.kc)
    assert info["status"] == "ok" and info["implementation"] == "pxkernel", info


def test_the_heartbeat_echoes_a_curve_client(encrypted):
    assert curve_heartbeat(encrypted.km, encrypted.km.curve_publickey, timeout=10.0)


def test_interrupt_over_the_managers_encrypted_control_socket(encrypted):
    # interrupt_mode "message": the KernelManager's own control socket, a CURVE client too.
    reply = interrupt_a_running_cell(encrypted.km, encrypted.kc)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply


def test_px_on_local_engines_works_encrypted(encrypted):
    kc = encrypted.kc
    reply, msgs = execute(kc, "%engines start -n 2", timeout=120)
    assert reply["status"] == "ok", (reply, stdout_of(msgs))
    reply, msgs = execute(kc, "%px import os; print(os.environ['PXKERNEL_ENGINE_ID'])")
    assert reply["status"] == "ok", reply
    assert sorted(tagged_lines(msgs)) == [("stdout", 0, "0"), ("stdout", 1, "1")], tagged_lines(msgs)


# -- clients that must get nothing ------------------------------------------------------


def test_plain_clients_get_nothing_and_disturb_nothing(encrypted):
    km, kc = encrypted.km, encrypted.kc
    shell, control = socket_to(km, "shell", zmq.DEALER), socket_to(km, "control", zmq.DEALER)
    iopub, hb = socket_to(km, "iopub", zmq.SUB), socket_to(km, "hb", zmq.REQ)
    try:
        send_kernel_info(km, shell)
        send_kernel_info(km, control)
        try_send(hb.send, b"ping")
        # Something to overhear on iopub: a cell that prints, for the real client.
        reply, msgs = execute(kc, "print('not for plain ears')")
        assert reply["status"] == "ok" and stdout_of(msgs) == "not for plain ears\n"
        heard = heard_within([shell, control, iopub, hb], NO_REPLY_S)
        assert heard == [], f"a plain client was answered: {[s.type for s in heard]}"
    finally:
        for s in (shell, control, iopub, hb):
            s.close()
    assert not heartbeat_echo(kc, timeout=1.0), "kernel_helpers' plain heartbeat gets no echo"
    # Positive controls: the same request over CURVE with the kernel's key is
    # answered, and so is the real client.
    assert kernel_info_from(km, km.curve_publickey, TIMEOUT)["content"]["status"] == "ok"
    assert shell_reply(kc, kc.kernel_info())["content"]["status"] == "ok"


def test_a_client_with_the_wrong_server_key_gets_nothing(encrypted):
    km, kc = encrypted.km, encrypted.kc
    wrong, _ = zmq.curve_keypair()
    shell, hb = socket_to(km, "shell", zmq.DEALER, wrong), socket_to(km, "hb", zmq.REQ, wrong)
    try:
        try_send(hb.send, b"ping")
        assert kernel_info_over(km, shell, NO_REPLY_S) is None, "answered a client with the wrong key"
        assert not hb.poll(0), "echoed a client with the wrong key"
        # While that client keeps retrying its handshake, the right one is served at once.
        msg_id = kc.kernel_info()
        assert shell_reply(kc, msg_id, timeout=1.0)["content"]["status"] == "ok"
        assert curve_heartbeat(km, km.curve_publickey, timeout=1.0)
    finally:
        shell.close()
        hb.close()
    assert alive(kernel_pid(km))


def test_restart_keeps_the_keys_and_shutdown_stops_every_process():
    with encrypted_pxkernel() as (km, kc):
        keys, before = (km.curve_publickey, km.curve_secretkey), [kernel_pid(km), home_pid(kc)]
        km.restart_kernel(now=False)
        assert wait_gone(before) == []
        kc.wait_for_ready(timeout=60)
        info = json.loads(Path(km.connection_file).read_text())
        assert (info["curve_publickey"].encode(), info["curve_secretkey"].encode()) == keys
        reply, msgs = execute(kc, "print('back')")
        assert stdout_of(msgs) == "back\n"
        # A frontend's shutdown request, on the client's encrypted control channel.
        everyone = [kernel_pid(km), home_pid(kc)]
        msg_id = kc.shutdown()
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = kc.get_control_msg(timeout=max(0.01, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["msg_type"] == "shutdown_reply" and reply["content"]["status"] == "ok", reply
        assert wait_gone(everyone) == []


def test_unix_sockets_are_encrypted_too(tmp_path):
    """jupyter_client provisions keys for the ipc transport as well."""
    with encrypted_pxkernel(transport="ipc", ip=str(tmp_path / "px")) as (km, kc):
        info = json.loads(Path(km.connection_file).read_text())
        assert info["transport"] == "ipc"
        assert_curve_keys(info)
        reply, msgs = execute(kc, "print('x')")
        assert reply["status"] == "ok" and stdout_of(msgs) == "x\n"
        assert control_kernel_info(kc)["status"] == "ok"
        assert curve_heartbeat(km, km.curve_publickey, timeout=10.0)
        assert kernel_info_from(km, None, NO_REPLY_S) is None, "answered a plain client"


# -- the conformance suite, encrypted -----------------------------------------------


class PxKernelConformanceEncrypted(test_conformance.PxKernelConformance):
    """test_conformance.py's suite again, with every channel under CurveZMQ."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.km, cls.kc = start_new_kernel(
            kernel_name=cls.kernel_name, startup_timeout=60, transport_encryption="required"
        )
        if cls.km.curve_publickey is None:  # tearDownClass does not run when this fails
            cls.tearDownClass()
            raise AssertionError("jupyter_client provisioned no CurveZMQ keys")


class PxKernelIopubWelcomeEncrypted(test_conformance.PxKernelIopubWelcome):
    @classmethod
    def setUpClass(cls) -> None:
        cls.km = KernelManager(kernel_name=cls.kernel_name, transport_encryption="required")
        cls.km.start_kernel()
        cls.kc = cls.km.client()
        if cls.kc.curve_publickey is None:
            cls.tearDownClass()
            raise AssertionError("jupyter_client provisioned no CurveZMQ keys")
        # The suite waits for the welcome without a limit; a broken handshake
        # must fail the test, not hang it.
        unbounded = cls.kc.get_iopub_msg
        cls.kc.get_iopub_msg = lambda timeout=60, **kw: unbounded(timeout=timeout, **kw)


# -- notebooks, encrypted ---------------------------------------------------------

# The home kernel reads its parent's (pxkernel's) connection file: the keys it has.
PXKERNEL_KEYS_CELL = """\
import json, os, psutil
px = psutil.Process(os.getppid())
args = px.cmdline()
with open(os.path.join(px.cwd(), args[args.index('-f') + 1])) as f:
    print(sorted(k for k in json.load(f) if k.startswith('curve_')))"""


def small_notebook(path: Path) -> Path:
    cells = ["print('plain cell')", PXKERNEL_KEYS_CELL, "%engines start -n 2",
             "%px import os; print('engine', os.environ['PXKERNEL_ENGINE_ID'])"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "pxkernel", "display_name": "pxkernel", "language": "python"}
    nbformat.write(nb, path)
    return path


def check_executed(nb):
    outputs = [c["outputs"] for c in nb.cells]
    errors = [o for out in outputs for o in out if o["output_type"] == "error"]
    assert errors == [], errors

    def text(out):
        return "".join(o.get("text", "") for o in out if o["output_type"] == "stream")

    assert text(outputs[0]) == "plain cell\n"
    assert text(outputs[1]) == "['curve_publickey', 'curve_secretkey']\n", "pxkernel got no keys"
    lines = sorted(x for x in text(outputs[3]).splitlines() if x.startswith("[stdout:"))
    assert lines == ["[stdout:0] engine 0", "[stdout:1] engine 1"], text(outputs[3])


def test_nbclient_runs_a_notebook_encrypted(tmp_path):
    nb = nbformat.read(small_notebook(tmp_path / "small.ipynb"), as_version=4)
    km = AsyncKernelManager(kernel_name="pxkernel", transport_encryption="required")
    NotebookClient(nb, km=km, timeout=120, startup_timeout=60).execute()
    assert km.curve_publickey is not None
    check_executed(nb)


def test_nbconvert_execute_with_the_encryption_flag(tmp_path):
    """The flag a user would pass, on the small notebook and notebooks/quickstart.ipynb."""
    sources = [small_notebook(tmp_path / "small.ipynb"), ROOT / "notebooks" / "quickstart.ipynb"]
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.kernel_name=pxkernel", "--ExecutePreprocessor.timeout=120",
         "--KernelManager.transport_encryption=required", "--output-dir", str(out), *map(str, sources)],
        env=notebook_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    executed = [str(out / src.name) for src in sources]
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_notebook_errors.py"), *executed],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    check_executed(nbformat.read(executed[0], as_version=4))


# -- engines over TCP with CURVE ----------------------------------------------------


@pytest.fixture(scope="module")
def curvy_kernelspec(jupyter_prefix) -> str:
    """ipykernel without the word ipykernel_launcher in its argv, so pxkernel gives
    it TCP; it declares curve, so pxkernel gives it keys."""
    return write_kernelspec(
        jupyter_prefix, "curvy",
        [sys.executable, "-c", "from ipykernel import kernelapp; kernelapp.launch_new_instance()",
         "-f", "{connection_file}"],
        metadata={"supported_encryption": ["curve"]},
    )


def test_engines_over_tcp_get_keys_and_are_driven_with_curve(curvy_kernelspec):
    with encrypted_pxkernel() as (km, kc):
        reply, msgs = execute(kc, f"%engines start -n 2 --kernel {curvy_kernelspec}", timeout=120)
        assert reply["status"] == "ok", (reply, stdout_of(msgs))
        reply, msgs = execute(kc, "%px import os; print(os.getpid())")
        assert reply["status"] == "ok", reply
        lines = tagged_lines(msgs)
        assert sorted(e for _, e, _ in lines) == [0, 1], lines
        engines = [int(text) for _, _, text in lines]
        infos = [json.loads(connection_file_of(pid).read_text()) for pid in engines]
        for info in infos:
            assert info["transport"] == "tcp" and info["ip"] == "127.0.0.1", info
            assert_curve_keys(info)
        # The engines serve CURVE for real (a plain client gets nothing from one),
        # so the %px above went through CURVE clients.
        engine = SimpleNamespace(transport="tcp", ip=infos[0]["ip"], shell_port=infos[0]["shell_port"],
                                 session=Session(key=infos[0]["key"].encode(),
                                                 signature_scheme=infos[0]["signature_scheme"]))
        assert kernel_info_from(engine, None, NO_REPLY_S) is None, "an engine answered a plain client"
        reply = kernel_info_from(engine, infos[0]["curve_publickey"].encode(), TIMEOUT)
        assert reply["content"]["status"] == "ok"
        # The ipykernel home is reached by Unix sockets and gets no keys.
        home = json.loads(connection_file_of(home_pid(kc)).read_text())
        assert home["transport"] == "ipc" and "curve_secretkey" not in home, sorted(home)
