# SPDX-License-Identifier: MIT
"""Raw HTTP/1.x over a socket for hostile-input tests: the bytes are sent as
given (no client library fixes them up), and the answers are read back as
they come, each with its status, headers and body.

Every call is bounded by a deadline; nothing sleeps for a fixed time."""

import select
import socket
import time


class Answer:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers      # lower-cased names -> last value
        self.body = body
        self.version = version

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers.get("content-type"), self.body[:80])


def _parse(buf):
    """One answer from the start of buf: (Answer, bytes used) or None if
    incomplete. Bodies are framed by Content-Length (MHD sends one on every
    error answer) or by chunked encoding."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    version, _, rest = head[0].partition(" ")
    code, _, reason = rest.partition(" ")
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    pos = end + 4
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(buf) < pos + n:
            return None
        return Answer(int(code), reason, headers, bytes(buf[pos:pos + n]), version), pos + n
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return None
            size = int(buf[pos:nl].split(b";")[0], 16)
            if len(buf) < nl + 2 + size + 2:
                return None
            body += buf[nl + 2:nl + 2 + size]
            pos = nl + 2 + size + 2
            if size == 0:
                return Answer(int(code), reason, headers, body, version), pos
    return Answer(int(code), reason, headers, b"", version), pos


def connect(addr, timeout=5.0):
    """A connected socket to "host:port" or to a unix socket path."""
    if addr.startswith("unix:"):
        addr = addr[len("unix:"):]
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def exchange(addr, data, answers=1, timeout=5.0, shutdown_write=False, chunk=65536):
    """Connects to addr (see connect()), sends data while reading, and returns
    (list of Answer, closed) once `answers` answers are in, the server
    closed the connection, or `timeout` seconds passed. closed tells
    whether the server closed (or reset) the connection."""
    deadline = time.monotonic() + timeout
    s = connect(addr, timeout)
    s.setblocking(False)
    out = memoryview(data)
    buf = bytearray()
    got = []
    closed = False
    try:
        poller = select.poll()  # not select(): a test may hold thousands of fds
        while time.monotonic() < deadline:
            poller.register(s, select.POLLIN | (select.POLLOUT if len(out) else 0))
            ev = dict(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))
            r = ev.get(s.fileno(), 0) & (select.POLLIN | select.POLLHUP | select.POLLERR)
            w = ev.get(s.fileno(), 0) & select.POLLOUT
            if w:
                try:
                    n = s.send(out[:chunk])
                    out = out[n:]
                except (BrokenPipeError, ConnectionResetError):
                    out = memoryview(b"")
                if not len(out) and shutdown_write:
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            if r:
                try:
                    b = s.recv(65536)
                except ConnectionResetError:
                    b = b""
                if not b:
                    closed = True
                else:
                    buf += b
                while True:
                    p = _parse(buf)
                    if not p:
                        break
                    got.append(p[0])
                    del buf[:p[1]]
                if closed or len(got) >= answers:
                    break
    finally:
        s.close()
    return got, closed
