"""A minimal, deliberately misbehaving Jupyter kernel, used as a %px engine in tests.

Run as ``python fake_engine.py CONNECTION_FILE``. It speaks just enough of the
protocol for pxkernel to start it and run cells on it (kernel_info_request,
execute_request, interrupt_request, shutdown_request), with pyzmq and
jupyter_client's Session: ROUTER shell/control/stdin, an XPUB IOPub that sends
``iopub_welcome`` on every subscription, and a heartbeat echo in its own thread.

What a cell does is chosen by its code (first word; the rest is an argument), so
that some cells are valid Python too (``hang = print(1)``) and can run on python
and fake engines at once:

- ``bad-utf8``   publishes a properly signed ``stream`` whose content frame is not
                 valid UTF-8, then a good ``stream`` line ``after-bad``, then replies ok.
- ``bad-header`` the same, but the *header* frame is not valid UTF-8.
- ``hang``       goes busy, prints ``hanging``, and never replies nor goes idle
                 (it still answers kernel_info, interrupt and shutdown).
- ``die [N]``    goes busy, prints ``dying``, and exits with code N (the digits of the
                 argument; 7 without) mid-cell.
- ``error``      replies with an error (ename ``FakeError``).
- ``print TEXT`` prints TEXT on stdout and replies ok.
- anything else  echoes the code on stdout and replies ok.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time

import zmq
from jupyter_client.session import Session

PROTOCOL_VERSION = "5.3"


class FakeEngine:
    def __init__(self, connection_file: str):
        with open(connection_file) as f:
            info = json.load(f)
        self.key = info["key"].encode()
        scheme = info.get("signature_scheme", "hmac-sha256")
        self.session = Session(key=self.key, signature_scheme=scheme, username="fake")
        self.digestmod = getattr(hashlib, scheme.split("-", 1)[1])
        self.ctx = zmq.Context()
        url = f"{info['transport']}://{info['ip']}:"
        self.shell = self._bind(zmq.ROUTER, url, info["shell_port"])
        self.control = self._bind(zmq.ROUTER, url, info["control_port"])
        self.stdin = self._bind(zmq.ROUTER, url, info["stdin_port"])
        self.iopub = self.ctx.socket(zmq.XPUB)
        self.iopub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.iopub.setsockopt(zmq.LINGER, 1000)
        self.iopub.bind(f"{url}{info['iopub_port']}")
        self.hb = self._bind(zmq.ROUTER, url, info["hb_port"])
        threading.Thread(target=self._heartbeat, daemon=True).start()
        self.count = 0

    def _bind(self, kind, url, port):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 1000)
        s.bind(f"{url}{port}")
        return s

    def exit(self, code):
        """Leave at once, giving queued messages a moment to go out first."""
        for s in (self.shell, self.control, self.stdin, self.iopub):
            s.close(linger=1000)
        time.sleep(0.2)
        os._exit(code)

    def _heartbeat(self):
        # A ROUTER echoing every frame back to its sender, like ipykernel's.
        try:
            zmq.proxy(self.hb, self.hb)
        except zmq.ZMQError:
            pass

    # -- sending -------------------------------------------------------------

    def publish(self, msg_type, content, parent):
        self.session.send(self.iopub, msg_type, content, parent=parent)

    def status(self, state, parent):
        self.publish("status", {"execution_state": state}, parent)

    def reply(self, sock, idents, msg_type, content, parent):
        self.session.send(sock, msg_type, content, parent=parent, ident=idents)

    def publish_bad_utf8_stream(self, parent, in_header=False):
        """A stream message, signed correctly, whose content (or header) frame is not UTF-8."""
        header = self.session.pack(self.session.msg_header("stream"))
        if in_header:
            header = header.replace(b'"msg_type"', b'"\xff\xfe": 1, "msg_type"', 1)
        parent_header = self.session.pack(parent["header"])
        metadata = b"{}"
        content = b'{"name": "stdout", "text": "\xff\xfe bad\\n"}'
        if in_header:
            content = b'{"name": "stdout", "text": "bad header\\n"}'
        mac = hmac.new(self.key, digestmod=self.digestmod)
        for frame in (header, parent_header, metadata, content):
            mac.update(frame)
        signature = mac.hexdigest().encode()
        self.iopub.send_multipart(
            [b"<IDS|MSG>", signature, header, parent_header, metadata, content]
        )

    # -- handling ------------------------------------------------------------

    def kernel_info(self, sock, idents, msg):
        self.status("busy", msg)
        self.reply(
            sock,
            idents,
            "kernel_info_reply",
            {
                "status": "ok",
                "protocol_version": PROTOCOL_VERSION,
                "implementation": "fake_engine",
                "implementation_version": "0.1",
                "language_info": {"name": "fake", "version": "0", "file_extension": ".txt"},
                "banner": "a misbehaving kernel for tests",
                "help_links": [],
            },
            msg,
        )
        self.status("idle", msg)

    def execute(self, sock, idents, msg):
        code = msg["content"].get("code", "").strip()
        word, _, arg = code.partition(" ")
        self.count += 1
        self.status("busy", msg)
        self.publish("execute_input", {"code": code, "execution_count": self.count}, msg)

        def say(text, name="stdout"):
            self.publish("stream", {"name": name, "text": text}, msg)

        ok = {"status": "ok", "execution_count": self.count, "payload": [], "user_expressions": {}}
        if word == "hang":
            say("hanging\n")
            return
        if word == "die":
            say("dying\n")
            digits = "".join(c for c in arg if c.isdigit())
            self.exit(int(digits or 7))
        if word in ("bad-utf8", "bad-header"):
            self.publish_bad_utf8_stream(msg, in_header=word == "bad-header")
            say("after-bad\n")
        elif word == "error":
            evalue = arg or "it failed"
            err = {"ename": "FakeError", "evalue": evalue, "traceback": [f"FakeError: {evalue}"]}
            self.publish("error", err, msg)
            reply = {"status": "error", "execution_count": self.count, **err}
            self.reply(sock, idents, "execute_reply", reply, msg)
            self.status("idle", msg)
            return
        elif word == "print":
            say(arg + "\n")
        else:
            say(code + "\n")
        self.reply(sock, idents, "execute_reply", ok, msg)
        self.status("idle", msg)

    def handle(self, sock):
        idents, msg = self.session.recv(sock, mode=zmq.NOBLOCK)
        if msg is None:
            return True
        t = msg["header"]["msg_type"]
        if t == "kernel_info_request":
            self.kernel_info(sock, idents, msg)
        elif t == "execute_request":
            self.execute(sock, idents, msg)
        elif t == "interrupt_request":
            self.status("busy", msg)
            self.reply(sock, idents, "interrupt_reply", {"status": "ok"}, msg)
            self.status("idle", msg)
        elif t == "shutdown_request":
            self.status("busy", msg)
            restart = bool(msg["content"].get("restart", False))
            self.reply(sock, idents, "shutdown_reply", {"status": "ok", "restart": restart}, msg)
            self.status("idle", msg)
            return False
        elif t.endswith("_request"):
            self.status("busy", msg)
            reply = {"status": "error", "ename": "NotSupported", "evalue": t, "traceback": []}
            self.reply(sock, idents, t[: -len("_request")] + "_reply", reply, msg)
            self.status("idle", msg)
        return True

    def welcome(self):
        frame = self.iopub.recv()
        if frame[:1] == b"\x01":
            topic = frame[1:]
            self.session.send(
                self.iopub,
                "iopub_welcome",
                {"subscription": topic.decode(errors="replace")},
                ident=[topic] if topic else None,
            )

    def serve(self):
        poller = zmq.Poller()
        for s in (self.shell, self.control, self.stdin, self.iopub):
            poller.register(s, zmq.POLLIN)
        while True:
            for sock, _ in poller.poll():
                if sock is self.iopub:
                    self.welcome()
                elif sock is self.stdin:
                    sock.recv_multipart()
                elif not self.handle(sock):
                    return


def main():
    engine = FakeEngine(sys.argv[1])
    engine.serve()
    engine.exit(0)


if __name__ == "__main__":
    main()
