#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""fakehook: the receiving end of remedyd's slack and webhook notification
sinks, for the tests. Python 3 standard library only; listens on 127.0.0.1
and never connects anywhere.

Every request outside /_fake is recorded and answered 200 "ok" (what a
Slack incoming webhook answers), unless a fault says otherwise. With
--hmac-secret, each recorded request says whether its --hmac-header held
"sha256=<hex HMAC-SHA256 of the body>" (hmac_ok true/false; null without
a secret): the check an inbound remedyd source with prefix "sha256=" does.

Test control (JSON):
  GET|DELETE /_fake/requests   the recorded requests, oldest first:
                               {"method", "path", "headers" {lower-cased},
                                "body" (text), "json" (parsed or null),
                                "hmac_ok", "status" (what was answered,
                                null while hanging), "time"}
  GET|POST|DELETE /_fake/faults  queued faults / append a list / clear
  GET /_fake/health            {"status": "ok"}

Faults, first match in FIFO order, each for "times" requests (default 1,
< 0 forever): {"status": 503, "body": "...", "headers": {...}} answers that
instead; {"hang": 30} sleeps that long before answering (the client gives
up first); {"drop": true} closes the connection without an answer.

Stopping and starting: kill the process, start it again with the same
--port (the socket is opened with SO_REUSEADDR).
"""

import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class State:
    def __init__(self, secret, header):
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []
        self.secret = secret.encode() if secret else None
        self.header = header.lower()

    def take_fault(self):
        with self.lock:
            for f in self.faults:
                if f.get("times", 1) == 0:
                    continue
                if f.get("times", 1) > 0:
                    f["times"] = f.get("times", 1) - 1
                return dict(f)
            return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehook/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fakehook: " + (fmt % args) + "\n")

    def _send(self, status, body=b"", ctype="text/plain", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj), "application/json")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _control(self, method, body):
        st = self.server.state
        if self.path == "/_fake/health":
            return self._json(200, {"status": "ok"})
        if self.path == "/_fake/requests":
            with st.lock:
                if method == "DELETE":
                    st.requests.clear()
                    return self._json(200, [])
                return self._json(200, list(st.requests))
        if self.path == "/_fake/faults":
            with st.lock:
                if method == "POST":
                    obj = json.loads(body or b"[]")
                    st.faults.extend(obj if isinstance(obj, list) else [obj])
                elif method == "DELETE":
                    st.faults.clear()
                return self._json(200, [f for f in st.faults if f.get("times", 1) != 0])
        return self._json(404, {"error": "not_found"})

    def _handle(self, method):
        try:
            body = self._body()
        except (ValueError, OSError):
            self._send(413, "too large")
            return
        if self.path.startswith("/_fake/"):
            return self._control(method, body)
        st = self.server.state
        hmac_ok = None
        if st.secret is not None:
            want = "sha256=" + hmac.new(st.secret, body, hashlib.sha256).hexdigest()
            hmac_ok = hmac.compare_digest(want, self.headers.get(st.header, ""))
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        rec = {"method": method, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace"), "json": parsed, "hmac_ok": hmac_ok,
               "status": None, "time": time.time()}
        with st.lock:
            st.requests.append(rec)
        fault = st.take_fault()
        if fault and fault.get("hang"):
            time.sleep(float(fault["hang"]))
        if fault and fault.get("drop"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        status = int(fault.get("status", 200)) if fault else 200
        with st.lock:
            rec["status"] = status
        try:
            self._send(status, (fault or {}).get("body", "ok" if status < 300 else "error"),
                       headers=(fault or {}).get("headers"))
        except OSError:
            pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--hmac-secret")
    ap.add_argument("--hmac-header", default="X-Remedyd-Signature")
    a = ap.parse_args()

    srv = Server((a.host, a.port), Handler)
    srv.state = State(a.hmac_secret, a.hmac_header)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    sys.stderr.write("fakehook: listening on %s:%d\n" % (a.host, port))
    srv.serve_forever()


if __name__ == "__main__":
    main()
