# SPDX-License-Identifier: MIT
"""Hostile input on every listener of the real remedyd (issue 18), one table.

Each row is sent as raw bytes (rawhttp.py: nothing fixes the request up)
to a daemon whose rule would suspend the user named in the body, and the
row says what must come back: the status and error code of each answer
(every error in the contract's shape, {"error", "message"}, with
Content-Type: application/json), or no answer at all where there is no
whole request to answer. After the table, the fake 1Password API must have
seen only the suspension of the normal alert sent last, and no row may
have left an action for a user.

Rows marked MHD are the answers libmicrohttpd 0.9.75 builds itself, before
or outside any callback of ours: an HTML page (or, for a bad
Content-Length, its head twice), no Content-Type. docs/security.md
("Answers remedyd does not write") lists them and why they cannot be
replaced; the rows pin the status so that a change shows up here.

The last test opens 2,000 slow connections and checks that a normal alert
is still answered within a second.
"""

import json
import os
import resource
import socket
import time

import pytest

import rawhttp
from harness import hmac_sign, hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

SECRET = "hostile-hmac-secret-5d1e0c"
MAX_BODY = 4096
USER = "user1@example.com"   # in the fake's directory: a 202 for it means a suspension
MHD = "mhd"                  # an answer libmicrohttpd writes itself
NO_ANSWER = "no answer"      # nothing comes back: closed at once, or left to time out


def config():
    return {
        "listen": {"max_body_bytes": MAX_BODY},
        "sources": [hmac_source("hmac")],
        "rules": [{"name": "suspend-named", "source": "hmac", "action": "suspend",
                   "user": "${user}", "reason": "hostile input test"}],
    }


def post(body, path=b"/hooks/hmac", version=b"HTTP/1.1", extra=b"", sign=True, length=None):
    """A POST of body (bytes), signed over body unless sign is False;
    length overrides the Content-Length header (None: the true length)."""
    h = b"POST " + path + b" " + version + b"\r\nHost: remedyd.test\r\n"
    h += b"Content-Type: application/json\r\n"
    if sign:
        h += b"X-Remedyd-Signature: " + hmac_sign(SECRET, body).encode() + b"\r\n"
    h += extra
    h += b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length)
    return h + body


def chunked(chunks, extra=b""):
    """A POST with a chunked body: chunks is a list of bytes (a final empty
    chunk is added) or raw bytes sent after the head as they are."""
    h = (b"POST /hooks/hmac HTTP/1.1\r\nHost: remedyd.test\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\n" + extra + b"\r\n")
    if isinstance(chunks, bytes):
        return h + chunks
    return h + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def alert(**extra):
    """A body that names a real user: accepting it would suspend them."""
    d = {"user": USER, "alert": "hostile"}
    d.update(extra)
    return json.dumps(d).encode()


def nested(depth):
    return b'{"user":"' + USER.encode() + b'","x":' + b"[" * depth + b"]" * depth + b"}"


# name, listener, request bytes, expected answers: a list of (status, error code,
# or None for a success answer in JSON, or MHD), or NO_ANSWER
TABLE = [
    # headers over MHD's per-connection memory (LIMIT_HTTP_CONNECTION_MEMORY, 16 KiB)
    ("200 KB header", "webhook", post(alert(), extra=b"X-Pad: " + b"a" * 200_000 + b"\r\n"),
     [(431, MHD)]),
    ("10,000 headers", "webhook",
     post(alert(), extra=b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))), [(431, MHD)]),
    ("20 KB request line", "webhook", post(alert(), path=b"/hooks/" + b"a" * 20_000),
     [(414, MHD)]),
    # not UTF-8, correctly signed
    ("invalid UTF-8 (the issue's body)", "webhook", post(b'{"sid":"\xff\xfe","x":1}'),
     [(400, "invalid_json")]),
    ("overlong form", "webhook", post(alert(n="\u00c0").replace(b"\\u00c0", b"\xc0\xaf")),
     [(400, "invalid_json")]),
    ("UTF-8 encoded surrogate", "webhook",
     post(alert(n="X").replace(b'"X"', b'"\xed\xa0\x80"')), [(400, "invalid_json")]),
    ("past U+10FFFF", "webhook", post(alert(n="X").replace(b'"X"', b'"\xf4\x90\x80\x80"')),
     [(400, "invalid_json")]),
    ("truncated sequence", "webhook", post(alert() + b"\xe2\x9c"), [(400, "invalid_json")]),
    ("bare continuation byte", "webhook",
     post(alert(n="X").replace(b'"X"', b'"\x80"')), [(400, "invalid_json")]),
    # JSON that is valid, or nearly
    ("nesting past 64", "webhook", post(nested(100)), [(400, "invalid_json")]),
    ("nesting 10,000 deep (over the body limit)", "webhook", post(nested(10_000)),
     [(413, "payload_too_large")]),
    ("huge numbers, no user", "webhook",
     post(b'{"n":1e999999,"m":123456789012345678901234567890,"k":-1e-999999}'), [(202, None)]),
    ("duplicate keys", "webhook",
     post(b'{"user":"nobody@example.com","user":"' + USER.encode() + b'"}'),
     [(400, "invalid_json")]),
    ("duplicate keys, nested", "webhook",
     post(b'{"user":"' + USER.encode() + b'","x":{"a":1,"a":2}}'), [(400, "invalid_json")]),
    ("not an object", "webhook", post(b'["' + USER.encode() + b'"]'), [(400, "invalid_json")]),
    # Content-Length lies
    ("Content-Length longer than the body", "webhook",
     post(alert(), length=len(alert()) + 100), NO_ANSWER),
    ("Content-Length shorter than the body", "webhook",
     post(alert(), length=len(alert()) - 5), [(401, "unauthorized")]),
    ("Content-Length not a number", "webhook", post(alert(), length=None).replace(
        b"Content-Length: %d" % len(alert()), b"Content-Length: 12abc"), [(400, MHD)]),
    ("Content-Length past 2^64", "webhook", post(alert()).replace(
        b"Content-Length: %d" % len(alert()), b"Content-Length: 99999999999999999999999"),
     [(413, MHD)]),
    ("Content-Length over max_body_bytes", "webhook", post(alert(), length=MAX_BODY + 1),
     [(413, "payload_too_large")]),
    ("two Content-Lengths", "webhook",
     post(alert(), extra=b"Content-Length: 2\r\n"), [(401, "unauthorized")]),
    # chunked bodies
    ("chunked past max_body_bytes", "webhook", chunked([b"a" * 1024] * 6),
     [(413, "payload_too_large")]),
    ("one chunk past max_body_bytes", "webhook", chunked([b"a" * (MAX_BODY + 10)]),
     [(413, "payload_too_large")]),
    ("chunk size past 2^64", "webhook", chunked(b"FFFFFFFFFFFFFFFFFFFF\r\n"), [(413, MHD)]),
    ("chunk size not hex", "webhook", chunked(b"zz\r\n"), [(400, MHD)]),
    ("chunked and Content-Length", "webhook",
     chunked([alert()], extra=b"Content-Length: 3\r\n"), [(401, "unauthorized")]),
    # paths
    ("dot-dot path", "webhook", post(alert(), path=b"/hooks/../hooks/hmac"),
     [(404, "not_found")]),
    ("dot-dot after the source", "webhook", post(alert(), path=b"/hooks/hmac/../../etc/passwd"),
     [(404, "not_found")]),
    ("encoded dot-dot", "webhook", post(alert(), path=b"/hooks/%2e%2e%2fhmac"),
     [(404, "not_found")]),
    ("percent-encoded source name", "webhook", post(alert(), path=b"/hooks/%68mac"),
     [(404, "not_found")]),
    ("encoded NUL in the source name", "webhook", post(alert(), path=b"/hooks/hmac%00x"),
     [(404, "not_found")]),
    # request lines and versions
    ("HTTP/1.0, no user", "webhook", post(b'{"http":"1.0"}', version=b"HTTP/1.0"), [(202, None)]),
    ("HTTP/0.9", "webhook", b"POST /hooks/hmac HTTP/0.9\r\n\r\n", [(505, MHD)]),
    ("HTTP/2.0 in an HTTP/1 request line", "webhook",
     b"POST /hooks/hmac HTTP/2.0\r\nHost: x\r\n\r\n", [(505, MHD)]),
    ("request line without a space", "webhook", b"GARBAGE\r\n\r\n", NO_ANSWER),
    ("header line without a colon", "webhook",
     b"POST /hooks/hmac HTTP/1.1\r\nHost remedyd.test\r\n\r\n", [(400, MHD)]),
    ("pipelined: two alerts without a user, one write", "webhook",
     post(b'{"pipelined":1}') + post(b'{"pipelined":2}'), [(202, None), (202, None)]),
    ("pipelined: a bad request, then a good one", "webhook",
     post(b'{"x":1,"x":2}') + post(b'{"pipelined":3}'), [(400, "invalid_json"), (202, None)]),
    # the other listeners
    ("status: 200 KB header", "status",
     b"GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200_000 + b"\r\n\r\n", [(431, MHD)]),
    ("status: unknown page", "status", b"GET /../status HTTP/1.1\r\nHost: x\r\n\r\n",
     [(404, "not_found")]),
    ("status: POST", "status", b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
     [(405, "method_not_allowed")]),
    ("control: manual action not UTF-8", "control",
     b"POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 71\r\n\r\n"
     b'{"action":"suspend","user":"user1@example.com","reason":"bad \xff\xfe bytes"}',
     [(400, "bad_json")]),
    ("control: HTTP/2.0", "control", b"GET /v1/status HTTP/2.0\r\nHost: x\r\n\r\n",
     [(505, MHD)]),
]


def check_row(d, row):
    """Sends one row; returns a list of problems (empty if it went as told)."""
    name, listener, data, want = row
    addr = d.addresses[listener]
    if want == NO_ANSWER:
        # The client stops sending (half-close). There is nothing to answer:
        # MHD closes at once, or when it notices the EOF, or at the
        # connection timeout (an EOF that came with the last data is seen
        # only then: MHD's epoll is edge-triggered). Either way, no answer.
        got, _ = rawhttp.exchange(addr, data, answers=1, timeout=1.5, shutdown_write=True)
        return [] if not got else ["%s: want no answer, got %r" % (name, got)]
    got, _ = rawhttp.exchange(addr, data, answers=len(want), timeout=10)
    problems = []
    if len(got) != len(want):
        return ["%s: want %d answers, got %r" % (name, len(want), got)]
    for a, (status, code) in zip(got, want):
        ctype = a.headers.get("content-type", "")
        if a.status != status:
            problems.append("%s: status %d, want %d (%r)" % (name, a.status, status, a))
            continue
        if code == MHD:
            if ctype.startswith("application/json"):
                problems.append("%s: libmicrohttpd's own %d is JSON now: update the table and "
                                "docs/security.md" % (name, status))
            continue
        if ctype != "application/json":
            problems.append("%s: Content-Type %r" % (name, ctype))
        try:
            body = json.loads(a.body)
        except ValueError:
            problems.append("%s: body is not JSON: %r" % (name, a.body[:200]))
            continue
        if code is None:
            if not (isinstance(body, dict) and "event_id" in body and "actions" in body):
                problems.append("%s: not a webhook answer: %r" % (name, body))
        elif not (isinstance(body, dict) and set(body) == {"error", "message"}
                  and body["error"] == code and isinstance(body["message"], str)
                  and body["message"]):
            problems.append("%s: want {\"error\": %r, \"message\": ...}, got %r"
                            % (name, code, body))
    return problems


def test_hostile_requests(remedyd_factory, fake1p):
    d = remedyd_factory(config(), fake=fake1p, secrets={"hmac.hmac": SECRET})
    problems = []
    for row in TABLE:
        problems += check_row(d, row)
    # the daemon is still there and still works: a normal alert goes through
    s, _, b = d.post("hmac", {"user": "user2@example.com"}, sign=SECRET)
    assert s == 202, b
    wait_until(lambda: len(fake1p.requests(op="suspend")) >= 1, timeout=20)
    suspended = [r for r in fake1p.requests(op="suspend")]
    assert len(suspended) == 1, suspended
    assert not problems, "\n".join(problems)
    # the rows answered 202 named no user: the normal alert's is the only
    # action that is not "unresolved"
    resolved = [a for a in d.ctl_json("actions") if a.get("status") != "unresolved"]
    assert [a.get("user") for a in resolved] == ["user2@example.com"], resolved


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


SLOW = 2000


def test_slow_connections_do_not_starve_alerts(remedyd_factory, fake1p):
    """2,000 connections that send half a request and then nothing (under
    LIMIT_HTTP_CONNECTIONS and its pressure mark, 3,072): a normal alert
    on a new connection is answered within a second, and acted on."""
    raise_nofile(SLOW + 512)  # the daemon inherits it
    d = remedyd_factory(config(), fake=fake1p, secrets={"hmac.hmac": SECRET})
    host, port = d.addresses["webhook"].rsplit(":", 1)
    base_fds = len(os.listdir("/proc/%d/fd" % d.pid))
    slow = []
    try:
        deadline = time.monotonic() + 60
        for i in range(SLOW):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"POST /hooks/hmac HTTP/1.1\r\nHost: remedyd.test\r\nX-Slow: %d" % i)
            slow.append(s)
            assert time.monotonic() < deadline, "opening the slow connections took too long"
        # the daemon has accepted every one of them (its fds), and holds them open
        # (less a few: base_fds may count the readiness probe's connection)
        wait_until(lambda: len(os.listdir("/proc/%d/fd" % d.pid)) >= base_fds + SLOW - 4,
                   timeout=20,
                   message="remedyd to accept %d connections" % SLOW)
        assert all(_still_open(s) for s in slow[-10:])
        body = alert(alert="while slowed")
        t0 = time.monotonic()
        got, _ = rawhttp.exchange(d.addresses["webhook"], post(body), timeout=5)
        took = time.monotonic() - t0
        assert got and got[0].status == 202, got
        print("alert among slow connections: %.3f s" % took)
        assert took < 1.0, "a normal alert took %.2f s among %d slow connections" % (took, SLOW)
        wait_until(lambda: len(fake1p.requests(op="suspend")) == 1, timeout=20)
        # the slow ones got nothing and caused nothing
        assert all(_still_open(s) for s in slow[:10])
    finally:
        for s in slow:
            s.close()


def _still_open(s):
    """True if the server has neither answered nor closed s (no data, no EOF)."""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)  # data or EOF: answered or closed
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)
