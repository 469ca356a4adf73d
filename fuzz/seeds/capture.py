"""Seed corpora of the ZMTP and wire fuzz targets, from real traffic.

Starts an ipykernel with jupyter_client over TCP, puts a recording TCP proxy in
front of its shell port, and sends the requests a front end sends
(kernel_info, execute, complete, inspect, is_complete, history, comm_info). The
bytes the client sends (and the kernel's replies) become:

  corpus/zmtp_null/     the client's byte stream: greeting, READY, messages
  corpus/wire_decode/   each request as the kernel's ROUTER receives it (routing
                        id first) and each reply as the client receives it
  corpus/curve_sealed/  each request's frames, as that target cuts its input

Then the same requests go from a jupyter_client client with CURVE keys (the
fuzz targets' fixed server key, secret [7] * 32) to a CURVE server in this
script, recorded the same way:

  corpus/zmtp_curve/    greeting, HELLO, INITIATE, MESSAGEs; and the HELLO and
                        INITIATE data alone (what curve_server_commands takes)

The session key is the one fuzz_targets/wire_decode.rs uses, so the recorded
signatures are valid there. Run from anywhere with a Python that has
jupyter_client, ipykernel and pyzmq:

    python fuzz/seeds/capture.py

It replaces the files it wrote before (named cap-*) and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
import zmq.utils.z85
from jupyter_client import BlockingKernelClient, KernelManager

KEY = b"pxkernel-fuzz-key"  # wire_decode.rs's KEY
CURVE_SECRET = bytes([7] * 32)  # transport/fuzz.rs's server key
SEP = b"\xff\xfe"  # how wire_decode and curve_sealed cut their input into frames
CORPUS = Path(__file__).resolve().parent.parent / "corpus"
TIMEOUT = 30

MORE, LONG, COMMAND = 0x01, 0x02, 0x04


class Proxy:
    """A TCP proxy to `upstream` that records both directions of every connection."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[dict[str, bytearray]] = []
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._connect()
            rec = {"up": bytearray(), "down": bytearray()}
            self.connections.append(rec)
            for src, dst, buf in ((client, server, rec["up"]), (server, client, rec["down"])):
                t = threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True)
                t.start()
                self.threads.append(t)

    def _connect(self) -> socket.socket:
        # The kernel may not listen yet when the client connects.
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return socket.create_connection(self.upstream)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                buf.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for t in self.threads:
            t.join(5)

    def upstream_bytes(self) -> bytes:
        """What the one client that connected sent."""
        assert len(self.connections) == 1, f"{len(self.connections)} connections"
        return bytes(self.connections[0]["up"])

    def downstream_bytes(self) -> bytes:
        return bytes(self.connections[0]["down"])


def parse_stream(data: bytes) -> list[tuple]:
    """A ZMTP 3 byte stream after its 64-byte greeting, as ("cmd", name, body, raw)
    and ("msg", frames, raw) items."""
    items = []
    frames: list[bytes] = []
    i = start = 64
    while i < len(data):
        flags = data[i]
        if flags & LONG:
            n, head = int.from_bytes(data[i + 1 : i + 9], "big"), 9
        else:
            n, head = data[i + 1], 2
        body = data[i + head : i + head + n]
        assert len(body) == n, "truncated stream"
        i += head + n
        if flags & COMMAND:
            name = body[1 : 1 + body[0]].decode()
            items.append(("cmd", name, body[1 + body[0] :], data[start:i]))
            start = i
        else:
            frames.append(body)
            if not flags & MORE:
                items.append(("msg", frames, data[start:i]))
                frames = []
                start = i
    return items


def properties(data: bytes) -> dict[str, bytes]:
    """A READY command's metadata."""
    props, i = {}, 0
    while i < len(data):
        name = data[i + 1 : i + 1 + data[i]].decode()
        i += 1 + data[i]
        n = int.from_bytes(data[i : i + 4], "big")
        props[name] = data[i + 4 : i + 4 + n]
        i += 4 + n
    return props


def msg_type(frames: list[bytes]) -> str:
    d = frames.index(b"<IDS|MSG>")
    return json.loads(frames[d + 2])["msg_type"]


def requests(kc: BlockingKernelClient, wait: bool) -> None:
    """What a front end sends on shell; with `wait`, each reply is awaited."""
    sent = [
        kc.kernel_info(),
        kc.execute("x = 6 * 7\nprint(x)"),
        # A header and content over 255 bytes: frames with 8-byte lengths.
        kc.execute(
            "def f(a, b):\n    '''" + "pad " * 70 + "'''\n    return a + b\nf(1, 2)",
            user_expressions={"y": "x + 1"},
        ),
        kc.execute("1/0", store_history=False),
        kc.execute("", silent=True),
        kc.complete("pri", 3),
        kc.inspect("print", 5, detail_level=0),
        kc.is_complete("for i in range(3):"),
        kc.history(hist_access_type="tail", n=5, output=False, raw=True),
        kc.comm_info(),
        kc.comm_info(target_name="jupyter.widget"),
    ]
    if wait:
        for msg_id in sent:
            while True:
                reply = kc.get_shell_msg(timeout=TIMEOUT)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
    else:
        time.sleep(2)


def check_private(blobs: dict[str, bytes], private: list[bytes]) -> None:
    private = [p for p in private if len(p) >= 4]
    for name, blob in blobs.items():
        for p in private:
            if p in blob:
                sys.exit(f"{name} holds a local name or path; not writing it")


def write(target: str, files: dict[str, bytes]) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("cap-*"):
        old.unlink()
    for name, data in files.items():
        (d / f"cap-{name}").write_bytes(data)
    print(f"{target}: {len(files)} files")


def capture_null(tmp: Path) -> tuple[bytes, bytes]:
    """Client->kernel and kernel->client bytes of the shell connection of a real ipykernel."""
    km = KernelManager(kernel_name="python3", transport="tcp", ip="127.0.0.1")
    km.session.key = KEY
    km.connection_file = str(tmp / "kernel.json")
    km.start_kernel(env={**os.environ, "IPYTHONDIR": str(tmp / "ipython")}, cwd=str(tmp))
    proxy = Proxy(("127.0.0.1", km.shell_port))
    try:
        kc = km.client()
        kc.shell_port = proxy.port
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        requests(kc, wait=True)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
        proxy.close()
    return proxy.upstream_bytes(), proxy.downstream_bytes()


def capture_curve() -> bytes:
    """Client->server bytes of a jupyter_client client with CURVE keys, to a CURVE
    ROUTER whose secret key is the fuzz targets' (it answers nothing)."""
    secret = zmq.utils.z85.encode(CURVE_SECRET)
    public = zmq.curve_public(secret)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_secretkey = secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    proxy = Proxy(("127.0.0.1", port))
    try:
        kc = BlockingKernelClient(context=ctx)
        kc.load_connection_info(
            {
                "transport": "tcp",
                "ip": "127.0.0.1",
                "shell_port": proxy.port,
                "iopub_port": port,  # never used: only shell is started
                "stdin_port": port,
                "control_port": port,
                "hb_port": port,
                "key": KEY.decode(),
                "signature_scheme": "hmac-sha256",
                # As jupyter_client connects with transport_encryption: the
                # connection file's key pair is its own and names the server.
                "curve_publickey": public.decode(),
                "curve_secretkey": secret.decode(),
            }
        )
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        requests(kc, wait=False)
        got = 0
        while router.poll(1000):
            router.recv_multipart()
            got += 1
        assert got > 0, "the CURVE server got nothing"
        kc.stop_channels()
    finally:
        router.close(0)
        proxy.close()
    return proxy.upstream_bytes()


def main() -> None:
    os.environ["USER"] = os.environ["LOGNAME"] = "fuzz"  # the headers' username
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
        up, down = capture_null(tmp)
        curve = capture_curve()
        private = [
            str(Path.home()).encode(),
            str(Path.cwd()).encode(),
            str(tmp).encode(),
            socket.gethostname().encode(),
            str(Path(__file__).resolve().parents[2]).encode(),
        ]

    greeting_ready, null_seeds, wire_seeds, sealed_seeds = b"", {}, {}, {}
    items = parse_stream(up)
    assert items[0][0] == "cmd" and items[0][1] == "READY", items[0][:2]
    greeting_ready = up[:64] + items[0][3]
    identity = properties(items[0][2]).get("Identity", b"")
    seen: dict[str, int] = {}
    for kind, frames, raw in items[1:]:
        assert kind == "msg"
        name = msg_type(frames)
        seen[name] = seen.get(name, 0) + 1
        name = f"{name}-{seen[name]}"
        null_seeds[name] = greeting_ready + raw
        # As the kernel's ROUTER hands it on: the peer's routing id first.
        routed = [identity, *frames] if identity else frames
        assert not any(SEP in f for f in routed)
        wire_seeds[name] = b"\x00" + SEP.join(routed)
        chunks = [bytes([MORE if k + 1 < len(frames) else 0]) + f for k, f in enumerate(frames)]
        sealed_seeds[name] = SEP.join(chunks)
    null_seeds["shell-session"] = up  # the whole conversation
    # One request in each other mode: signed by the target, and unsigned.
    first = next(iter(wire_seeds))
    wire_seeds[f"{first}-resign"] = b"\x01" + wire_seeds[first][1:]
    wire_seeds[f"{first}-unsigned"] = b"\x02" + wire_seeds[first][1:]
    ping = bytes([COMMAND, 4]) + b"PING" + (10).to_bytes(2, "big") + b"ctx"
    sealed_seeds["ping-then-message"] = SEP.join([ping, sealed_seeds[first]])

    replies = parse_stream(down)
    seen = {}
    for kind, frames, _ in replies[1:]:
        name = msg_type(frames)
        seen[name] = seen.get(name, 0) + 1
        wire_seeds[f"{name}-{seen[name]}"] = b"\x00" + SEP.join(frames)

    citems = parse_stream(curve)
    # libzmq sends MESSAGE boxes as data frames ("\x07MESSAGE…"), not commands.
    names = [i[1] if i[0] == "cmd" else i[1][0][:8] for i in citems]
    assert names[:2] == ["HELLO", "INITIATE"] and b"\x07MESSAGE" in names, names[:3]
    handshake = curve[:64] + citems[0][3] + citems[1][3]
    assert len(citems[0][2]) == 194, len(citems[0][2])
    curve_seeds = {
        "session": curve,
        "handshake": handshake,
        "hello-initiate-data": citems[0][2] + citems[1][2],
    }

    everything = {**null_seeds, **wire_seeds, **sealed_seeds, **curve_seeds}
    check_private(everything, private)
    write("zmtp_null", null_seeds)
    write("wire_decode", wire_seeds)
    write("curve_sealed", sealed_seeds)
    write("zmtp_curve", curve_seeds)


if __name__ == "__main__":
    main()
