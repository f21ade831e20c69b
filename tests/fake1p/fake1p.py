#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""fake1p: a faithful fake of the 1Password Users API (v1beta1 and GA v1 layouts).

Implements docs/users-api.md section 8 for the tests and the demo. Python 3
standard library only. It listens on 127.0.0.1 (by default) and never makes
any outbound connection.

API (as 1Password documents it, plus the UNCONFIRMED behaviours the spec asks
a fake to pick):
  POST /v1beta1/users/oauth2/token | /v1/oauth/token     client credentials
  POST /v1beta1/users/oauth2/revoke | /v1/oauth/revoke   RFC 7009 revoke
  GET  /{v1beta1|v1}/accounts/{a}/users                 list (paged)
  GET  /{v1beta1|v1}/accounts/{a}/users/{u}              get
  POST /{v1beta1|v1}/accounts/{a}/users/{u}:suspend      suspend (also %3A)
  POST /{v1beta1|v1}/accounts/{a}/users/{u}:reactivate   reactivate

Test control (no auth, JSON):
  GET|DELETE /_fake/requests     recorded API requests / clear them: every
                                 non-/_fake request in arrival order, as
                                 {"method", "path" (raw, without query),
                                 "query" {name: first value}, "query_string",
                                 "headers" {lower-cased name: value}, "body",
                                 "status" (null until answered, or if dropped),
                                 "dropped", "time" (epoch s), "op"}
  GET|POST|DELETE /_fake/faults  queued faults / append a list / clear
  GET|POST /_fake/users          all users (plus "owner") / add users
  POST /_fake/users/{id}         change state/owner/email/display_name of one user
  POST /_fake/expire-tokens      every issued token expires now
  GET|POST /_fake/config         token_lifetime, default_page_size, max_page_size
  GET /_fake/health              {"status": "ok"}

Fault objects (POST /_fake/faults takes a list, or one object):
  {"op": "token|revoke|list|get|suspend|reactivate|any",  default "any"
   "status": 429, "headers": {"Retry-After": "1"}, "body": "raw text",
   "delay": 2.5, "drop": true, "times": 1,                 times < 0: forever
   "match": "substring of the raw path", "apply": false}
A fault applies to the next matching API request(s), first matching fault in
FIFO order. "delay" sleeps first; "drop" then closes the connection without
an answer; "status" answers with that status (body: "body" or a default
JSON error) instead of serving the request, unless "apply" is true, in which
case the request is performed first and its answer replaced (a lost reply).
A fault with only "body" answers 200 with that body. A fault with only
"delay" serves the request normally after the delay.
"""

import argparse
import base64
import binascii
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ACCOUNT = "XLQMR47VZPBKJHSGWNCYFDE3T9"
DEFAULT_CLIENT_ID = "test-client-id"
DEFAULT_CLIENT_SECRET = "test-client-secret"
ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FILTERS = {"": None, "user.isActive()": "ACTIVE", "user.isSuspended()": "SUSPENDED"}
OPS = ("token", "revoke", "list", "get", "suspend", "reactivate", "any")
# Page tokens start with these bytes so that their base64 always holds '+'
# and '/' (and usually '='): a client that forgets to URL-encode the token
# in the query string gets 400, as it would from the real server.
PAGE_TOKEN_MAGIC = b"\xfb\xff\xbf"
GRPC_FOR_STATUS = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 10, 429: 8,
                   500: 13, 501: 12, 502: 14, 503: 14, 504: 4}
MAX_BODY = 1 << 20


def user_id_for_index(i):
    """Deterministic 26-character [A-Z0-9] id of generated user i."""
    n = int.from_bytes(hashlib.sha256(b"fake1p-user-%d" % i).digest(), "big")
    out = []
    for _ in range(26):
        n, r = divmod(n, 36)
        out.append(ID_ALPHABET[r])
    return "".join(out)


def random_user_id():
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(26))


def rfc3339(ts):
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


GENERATED_EPOCH = 1704067200  # 2024-01-01T00:00:00Z


class User:
    __slots__ = ("id", "email", "display_name", "state", "create_time", "owner", "index")

    def __init__(self, uid, email, display_name, state, create_time, owner):
        self.id = uid
        self.email = email
        self.display_name = display_name
        self.state = state
        self.create_time = create_time
        self.owner = owner

    def to_json(self, account):
        return {"id": self.id, "email": self.email,
                "display_name": self.display_name, "state": self.state,
                "create_time": self.create_time,
                "path": "accounts/%s/users/%s" % (account, self.id)}


def state_flag(state):
    return {"ACTIVE": 0x41, "SUSPENDED": 0x53}.get(state, 0x55)


class BadInput(Exception):
    pass


class State:
    """Everything the fake knows. All access under self.lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.account = args.account_id
        self.client_id = args.client_id
        self.client_secret = args.client_secret
        self.layout = args.layout
        self.config = {"token_lifetime": args.token_lifetime,
                       "default_page_size": args.default_page_size,
                       "max_page_size": args.max_page_size}
        self.users = []         # creation order
        self.by_id = {}
        # One byte per user (A/S/U for ACTIVE/SUSPENDED/other), so that a
        # filtered list skips over 100k users at C speed (bytearray.find).
        self.flags = bytearray()
        self.tokens = {}        # token -> {"expires": monotonic, "revoked": bool}
        self.faults = []
        self.requests = []
        self.verbose = args.verbose

    # -- users --------------------------------------------------------
    def add_user(self, obj, default_create_time=None):
        """Adds one user from a JSON object; caller holds the lock."""
        if not isinstance(obj, dict):
            raise BadInput("user must be an object")
        email = obj.get("email")
        if not isinstance(email, str) or not email:
            raise BadInput("user needs a non-empty email")
        uid = obj.get("id") or random_user_id()
        if not isinstance(uid, str):
            raise BadInput("id must be a string")
        if uid in self.by_id:
            raise BadInput("duplicate user id %s" % uid)
        state = obj.get("state", "ACTIVE")
        if not isinstance(state, str):
            raise BadInput("state must be a string")
        display_name = obj.get("display_name", email.split("@")[0])
        create_time = obj.get("create_time") or rfc3339(default_create_time or time.time())
        u = User(uid, email, str(display_name), state, create_time,
                 bool(obj.get("owner", False)))
        self.append(u)
        return u

    def generate_users(self, n):
        for i in range(n):
            uid = user_id_for_index(i)
            u = User(uid, "user%d@example.com" % i, "User %d" % i, "ACTIVE",
                     rfc3339(GENERATED_EPOCH + i), i == 0)
            self.append(u)

    def append(self, u):
        u.index = len(self.users)
        self.users.append(u)
        self.flags.append(state_flag(u.state))
        self.by_id[u.id] = u

    def pop(self):
        u = self.users.pop()
        self.flags.pop()
        del self.by_id[u.id]

    def set_state(self, u, state):
        u.state = state
        self.flags[u.index] = state_flag(state)

    def active_owners(self):
        return sum(1 for u in self.users if u.owner and u.state == "ACTIVE")

    # -- tokens -------------------------------------------------------
    def issue_token(self):
        tok = secrets.token_urlsafe(32)
        lifetime = int(self.config["token_lifetime"])
        self.tokens[tok] = {"expires": time.monotonic() + lifetime, "revoked": False}
        return tok, lifetime

    def check_token(self, tok):
        """Returns None if valid, else a reason."""
        t = self.tokens.get(tok)
        if t is None:
            return "invalid access token"
        if t["revoked"]:
            return "access token revoked"
        if time.monotonic() >= t["expires"]:
            return "access token expired"
        return None

    def expire_tokens(self):
        now = time.monotonic()
        n = 0
        for t in self.tokens.values():
            if t["expires"] > now:
                t["expires"] = now
                n += 1
        return n

    # -- faults -------------------------------------------------------
    def take_fault(self, op, raw_path):
        for i, f in enumerate(self.faults):
            if f["op"] != "any" and f["op"] != op:
                continue
            if f.get("match") and f["match"] not in raw_path:
                continue
            times = f["times"]
            if times > 0:
                f["times"] = times - 1
                if f["times"] == 0:
                    del self.faults[i]
            return dict(f)
        return None


def validate_fault(f):
    if not isinstance(f, dict):
        raise BadInput("fault must be an object")
    f = dict(f)
    f.setdefault("op", "any")
    if f["op"] not in OPS:
        raise BadInput("unknown fault op %r" % (f["op"],))
    times = f.get("times", 1)
    if times is None:
        times = 1
    if not isinstance(times, int) or isinstance(times, bool) or times == 0:
        raise BadInput("times must be a non-zero integer")
    f["times"] = times
    if "status" in f and f["status"] is not None:
        if not isinstance(f["status"], int) or not 100 <= f["status"] <= 599:
            raise BadInput("status must be an HTTP status code")
    if "delay" in f and f["delay"] is not None:
        if not isinstance(f["delay"], (int, float)) or f["delay"] < 0:
            raise BadInput("delay must be a non-negative number")
    hdrs = f.get("headers") or {}
    if not isinstance(hdrs, dict) or not all(isinstance(k, str) for k in hdrs):
        raise BadInput("headers must be an object")
    f["headers"] = {k: str(v) for k, v in hdrs.items()}
    if "body" in f and f["body"] is not None and not isinstance(f["body"], str):
        f["body"] = json.dumps(f["body"])
    if "match" in f and f["match"] is not None and not isinstance(f["match"], str):
        raise BadInput("match must be a string")
    return f


def encode_page_token(pos, filt):
    raw = PAGE_TOKEN_MAGIC + json.dumps({"p": pos, "f": filt},
                                        separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


def decode_page_token(tok):
    try:
        raw = base64.b64decode(tok.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadInput("invalid page_token")
    if not raw.startswith(PAGE_TOKEN_MAGIC):
        raise BadInput("invalid page_token")
    try:
        d = json.loads(raw[len(PAGE_TOKEN_MAGIC):])
        pos, filt = d["p"], d["f"]
    except (ValueError, KeyError, TypeError):
        raise BadInput("invalid page_token")
    if not isinstance(pos, int) or pos < 0 or filt not in FILTERS:
        raise BadInput("invalid page_token")
    return pos, filt


def grpc_error(code, message):
    return {"code": code, "message": message, "details": []}


class Reply(Exception):
    """Raised by handlers to answer at once."""

    def __init__(self, status, body=None, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake1p/1.0"
    # Headers and body go out in two writes; without this, Nagle plus the
    # client's delayed ACK stall small answers by ~40 ms.
    disable_nagle_algorithm = True
    sys_version = ""

    # Quiet by default; with --verbose only the request line (no headers,
    # no bodies: nothing secret) goes to stderr.
    def log_message(self, fmt, *args):
        if self.server.state.verbose:
            sys.stderr.write("fake1p: %s\n" % (fmt % args))

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    # -- plumbing -----------------------------------------------------
    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise Reply(413, grpc_error(3, "request too large"))
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        try:
            n = int(self.headers.get("Content-Length", "0") or "0")
        except ValueError:
            raise Reply(400, grpc_error(3, "bad content-length"))
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            raise Reply(413, grpc_error(3, "request too large"))
        return self.rfile.read(n) if n else b""

    def send(self, status, body=None, headers=None):
        hdrs = {k.lower(): (k, v) for k, v in (headers or {}).items()}
        if body is None:
            data = b""
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
            hdrs.setdefault("content-type", ("Content-Type", "application/json"))
        if data and "content-type" not in hdrs:
            hdrs["content-type"] = ("Content-Type", "application/json")
        rec = getattr(self, "rec", None)
        if rec is not None:
            # Before the answer leaves: a client reading the log right
            # after its answer must see the status.
            with self.server.state.lock:
                rec["status"] = status
        self.send_response(status)
        for _, (k, v) in hdrs.items():
            if k.lower() == "content-length":
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()
        self.status_sent = status

    def dispatch(self):
        self.status_sent = None
        self.rec = None
        st = self.server.state
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = self.read_body()
        except Reply as r:
            self.send(r.status, r.body, r.headers)
            return
        except (ValueError, ConnectionError):
            self.close_connection = True
            return
        if raw_path == "/_fake" or raw_path.startswith("/_fake/"):
            try:
                self.control(raw_path, body)
            except Reply as r:
                self.send(r.status, r.body, r.headers)
            return
        self.api(st, raw_path, raw_query, body)

    # -- API ----------------------------------------------------------
    def classify(self, raw_path):
        """Returns (op, version, account, user_id, action) for an API path,
                op None if the path is no API route."""
        segs = [urllib.parse.unquote(s) for s in raw_path.split("/")]
        if len(segs) < 2 or segs[0] != "":
            return None, None, None, None, None
        segs = segs[1:]
        layout = self.server.state.layout
        v = segs[0]
        if v not in ("v1beta1", "v1") or (layout != "both" and layout != v):
            return None, None, None, None, None
        if v == "v1beta1" and segs[1:] == ["users", "oauth2", "token"]:
            return "token", v, None, None, None
        if v == "v1beta1" and segs[1:] == ["users", "oauth2", "revoke"]:
            return "revoke", v, None, None, None
        if v == "v1" and segs[1:] == ["oauth", "token"]:
            return "token", v, None, None, None
        if v == "v1" and segs[1:] == ["oauth", "revoke"]:
            return "revoke", v, None, None, None
        if len(segs) == 4 and segs[1] == "accounts" and segs[3] == "users" and segs[2]:
            return "list", v, segs[2], None, None
        if len(segs) == 5 and segs[1] == "accounts" and segs[3] == "users" and segs[2]:
            uid, colon, action = segs[4].partition(":")
            if not uid:
                return None, None, None, None, None
            if not colon:
                return "get", v, segs[2], uid, None
            if action in ("suspend", "reactivate"):
                return action, v, segs[2], uid, action
        return None, None, None, None, None

    def api(self, st, raw_path, raw_query, body):
        op, version, account, uid, _ = self.classify(raw_path)
        rec = {"method": self.command, "path": raw_path,
               "query": {k: v[0] for k, v in
                         urllib.parse.parse_qs(raw_query, keep_blank_values=True).items()},
               "query_string": raw_query,
               "headers": {}, "body": body.decode("utf-8", "replace"),
               "status": None, "dropped": False, "time": time.time(), "op": op}
        for k, v in self.headers.items():
            k = k.lower()
            rec["headers"][k] = rec["headers"][k] + ", " + v if k in rec["headers"] else v
        with st.lock:
            st.requests.append(rec)
            fault = st.take_fault(op, raw_path)
        self.rec = rec
        try:
            if fault is not None:
                self.apply_fault(st, fault, op, version, account, uid, raw_query, body)
            else:
                self.serve(st, op, version, account, uid, raw_query, body)
        except Reply as r:
            self.send(r.status, r.body, r.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.rec = None

    def apply_fault(self, st, fault, op, version, account, uid, raw_query, body):
        delay = fault.get("delay")
        if delay:
            time.sleep(delay)
        if fault.get("drop"):
            with st.lock:
                self.rec["dropped"] = True
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        status = fault.get("status")
        fbody = fault.get("body")
        if status is None and fbody is None:
            self.serve(st, op, version, account, uid, raw_query, body)
            return
        if fault.get("apply"):
            # Perform the operation, throw its answer away.
            try:
                self.serve(st, op, version, account, uid, raw_query, body, dry=True)
            except Reply:
                pass
        if status is None:
            status = 200
        if fbody is None:
            if op in ("token", "revoke"):
                fbody = {"error": "server_error" if status >= 500 else "invalid_request"}
            else:
                fbody = grpc_error(GRPC_FOR_STATUS.get(status, 2),
                                   "injected fault %d" % status)
        self.send(status, fbody, fault.get("headers"))

    def serve(self, st, op, version, account, uid, raw_query, body, dry=False):
        """Serves one API request. With dry=True the effect happens but
                nothing is sent (Reply is raised instead)."""
        def answer(status, b=None, headers=None):
            if dry:
                raise Reply(status, b, headers)
            self.send(status, b, headers)

        if op is None:
            raise Reply(404, grpc_error(5, "Not Found"))
        if op in ("token", "revoke"):
            if self.command != "POST":
                raise Reply(405, {"error": "invalid_request"}, {"Allow": "POST"})
            self.check_client(st)
            form = self.parse_form(body)
            if op == "token":
                status, b = self.token(st, form)
                answer(status, b, {"Cache-Control": "no-store", "Pragma": "no-cache"})
            else:
                tok = form.get("token")
                if not tok:
                    raise Reply(400, {"error": "invalid_request",
                                      "error_description": "token is required"})
                with st.lock:
                    t = st.tokens.get(tok)
                    if t is not None:
                        t["revoked"] = True
                answer(200)
            return

        want = "GET" if op in ("list", "get") else "POST"
        if self.command != want and not (want == "GET" and self.command == "HEAD"):
            raise Reply(405, grpc_error(12, "Method Not Allowed"), {"Allow": want})
        self.check_bearer(st)
        if account != st.account:
            raise Reply(404, grpc_error(5, "account not found"))
        if op == "list":
            answer(200, self.list_users(st, raw_query))
            return
        with st.lock:
            u = st.by_id.get(uid)
            if u is None:
                raise Reply(404, grpc_error(5, "user not found"))
            if op == "suspend" and u.state != "SUSPENDED":
                if u.owner and u.state == "ACTIVE" and st.active_owners() <= 1:
                    raise Reply(403, grpc_error(7, "no_owner_remain"))
                st.set_state(u, "SUSPENDED")
            elif op == "reactivate":
                st.set_state(u, "ACTIVE")
            out = u.to_json(st.account)
        answer(200, out)

    def check_client(self, st):
        auth = self.headers.get("Authorization", "")
        scheme, _, cred = auth.strip().partition(" ")
        ok = False
        if scheme.lower() == "basic":
            try:
                dec = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
                cid, sep, sec = dec.partition(":")
                ok = (sep == ":" and
                      secrets.compare_digest(cid, st.client_id) and
                      secrets.compare_digest(sec, st.client_secret))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            raise Reply(401, {"error": "invalid_client"},
                        {"WWW-Authenticate": 'Basic realm="fake1p"'})

    def parse_form(self, body):
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise Reply(400, {"error": "invalid_request",
                              "error_description": "content type must be application/x-www-form-urlencoded"})
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=bool(body))
        except (ValueError, UnicodeDecodeError):
            raise Reply(400, {"error": "invalid_request",
                              "error_description": "malformed form body"})
        form = {}
        for k, v in pairs:
            if k in form:
                raise Reply(400, {"error": "invalid_request",
                                  "error_description": "repeated parameter"})
            form[k] = v
        return form

    def token(self, st, form):
        gt = form.get("grant_type")
        if not gt:
            return 400, {"error": "invalid_request",
                         "error_description": "grant_type is required"}
        if gt != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if "scope" in form and form["scope"] != "openid":
            return 400, {"error": "invalid_scope"}
        with st.lock:
            tok, lifetime = st.issue_token()
        return 200, {"access_token": tok, "token_type": "Bearer", "expires_in": lifetime}

    def check_bearer(self, st):
        auth = self.headers.get("Authorization", "")
        scheme, _, tok = auth.strip().partition(" ")
        tok = tok.strip()
        if scheme.lower() != "bearer" or not tok:
            raise Reply(401, grpc_error(16, "missing bearer token"))
        with st.lock:
            why = st.check_token(tok)
        if why:
            raise Reply(401, grpc_error(16, why))

    def list_users(self, st, raw_query):
        try:
            q = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        except ValueError:
            raise Reply(400, grpc_error(3, "malformed query"))

        def one(*names):
            for n in names:
                if n in q:
                    return q[n][-1]
            return None

        filt = one("filter")
        if filt is None:
            filt = ""
        if filt not in FILTERS:
            raise Reply(400, grpc_error(3, "invalid filter"))
        with st.lock:
            default_size = int(st.config["default_page_size"])
            max_size = int(st.config["max_page_size"])
        size_s = one("max_page_size", "maxPageSize")
        size = default_size
        if size_s not in (None, ""):
            try:
                size = int(size_s)
            except ValueError:
                raise Reply(400, grpc_error(3, "invalid max_page_size"))
            if size < 0:
                raise Reply(400, grpc_error(3, "invalid max_page_size"))
            if size == 0:
                size = default_size
        size = max(1, min(size, max_size))
        pos = 0
        ptok = one("page_token", "pageToken")
        if ptok:
            try:
                pos, tfilt = decode_page_token(ptok)
            except BadInput:
                raise Reply(400, grpc_error(3, "invalid page_token"))
            if filt and filt != tfilt:
                raise Reply(400, grpc_error(3, "filter does not match page_token"))
            filt = tfilt
        want = FILTERS[filt]
        results = []
        with st.lock:
            users = st.users
            n = len(users)
            if pos > n:
                raise Reply(400, grpc_error(3, "invalid page_token"))
            i = pos
            if want is None:
                page = users[pos:pos + size]
                results = [u.to_json(st.account) for u in page]
                i = pos + len(page)
            else:
                flags, ch = st.flags, state_flag(want)
                while len(results) < size:
                    j = flags.find(ch, i)
                    if j < 0:
                        i = n
                        break
                    results.append(users[j].to_json(st.account))
                    i = j + 1
                # Look ahead so the last page carries no token.
                j = flags.find(ch, i)
                i = j if j >= 0 else n
            more = i < n
        out = {"results": results}
        if more:
            out["next_page_token"] = encode_page_token(i, filt)
        return out

    # -- control ------------------------------------------------------
    def json_body(self, body):
        try:
            return json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            raise Reply(400, {"error": "bad_json"})

    def control(self, raw_path, body):
        st = self.server.state
        path = raw_path.rstrip("/")
        m = self.command
        if path == "/_fake/health" and m == "GET":
            self.send(200, {"status": "ok"})
        elif path == "/_fake/requests" and m == "GET":
            with st.lock:
                data = json.dumps(st.requests)
            self.send(200, data)
        elif path == "/_fake/requests" and m == "DELETE":
            with st.lock:
                st.requests = []
            self.send(200, {"cleared": True})
        elif path == "/_fake/faults" and m == "GET":
            with st.lock:
                self.send(200, list(st.faults))
        elif path == "/_fake/faults" and m == "POST":
            obj = self.json_body(body)
            if isinstance(obj, dict):
                obj = [obj]
            if not isinstance(obj, list):
                raise Reply(400, {"error": "expected a list of faults"})
            try:
                fl = [validate_fault(f) for f in obj]
            except BadInput as e:
                raise Reply(400, {"error": str(e)})
            with st.lock:
                st.faults.extend(fl)
                n = len(st.faults)
            self.send(200, {"queued": n})
        elif path == "/_fake/faults" and m == "DELETE":
            with st.lock:
                st.faults = []
            self.send(200, {"cleared": True})
        elif path == "/_fake/users" and m == "GET":
            with st.lock:
                out = []
                for u in st.users:
                    d = u.to_json(st.account)
                    d["owner"] = u.owner
                    out.append(d)
            self.send(200, out)
        elif path == "/_fake/users" and m == "POST":
            obj = self.json_body(body)
            if isinstance(obj, dict):
                obj = [obj]
            if not isinstance(obj, list):
                raise Reply(400, {"error": "expected a list of users"})
            with st.lock:
                ids = set()
                for o in obj:
                    i = o.get("id") if isinstance(o, dict) else None
                    if i is not None and (i in st.by_id or i in ids):
                        raise Reply(409, {"error": "duplicate user id %s" % i})
                    ids.add(i)
                added = []
                try:
                    for o in obj:
                        added.append(st.add_user(o))
                except BadInput as e:
                    for u in added:
                        st.pop()
                    raise Reply(400, {"error": str(e)})
                out = [dict(u.to_json(st.account), owner=u.owner) for u in added]
            self.send(200, out)
        elif path.startswith("/_fake/users/") and m in ("GET", "POST"):
            uid = urllib.parse.unquote(path[len("/_fake/users/"):])
            obj = self.json_body(body) if m == "POST" else None
            if m == "POST" and not isinstance(obj, dict):
                raise Reply(400, {"error": "expected an object"})
            with st.lock:
                u = st.by_id.get(uid)
                if u is None:
                    raise Reply(404, {"error": "no such user"})
                for k in ("email", "display_name"):
                    if obj and k in obj:
                        setattr(u, k, str(obj[k]))
                if obj and "state" in obj:
                    st.set_state(u, str(obj["state"]))
                if obj and "owner" in obj:
                    u.owner = bool(obj["owner"])
                out = dict(u.to_json(st.account), owner=u.owner)
            self.send(200, out)
        elif path == "/_fake/expire-tokens" and m == "POST":
            with st.lock:
                n = st.expire_tokens()
            self.send(200, {"expired": n})
        elif path == "/_fake/config" and m in ("GET", "POST"):
            if m == "POST":
                obj = self.json_body(body)
                if not isinstance(obj, dict):
                    raise Reply(400, {"error": "expected an object"})
                for k, v in obj.items():
                    if k not in st.config:
                        raise Reply(400, {"error": "unknown key %s" % k})
                    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1:
                        raise Reply(400, {"error": "%s must be a positive number" % k})
                with st.lock:
                    st.config.update(obj)
            with st.lock:
                self.send(200, dict(st.config))
        else:
            raise Reply(404, {"error": "no such control endpoint"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client going away mid-answer is routine in fault tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(description="fake 1Password Users API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--account-id", default=DEFAULT_ACCOUNT)
    p.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    p.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--users-file")
    p.add_argument("--token-lifetime", type=int, default=900)
    p.add_argument("--default-page-size", type=int, default=25)
    p.add_argument("--max-page-size", type=int, default=1000)
    p.add_argument("--layout", choices=("both", "v1beta1", "v1"), default="both",
                   help="which API layout to serve (default both)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.users < 0 or a.token_lifetime < 1 or a.default_page_size < 1 or a.max_page_size < 1:
        p.error("numbers must be positive")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state = State(args)
    state.generate_users(args.users)
    if args.users_file:
        with open(args.users_file, encoding="utf-8") as f:
            lst = json.load(f)
        if not isinstance(lst, list):
            sys.exit("fake1p: --users-file must hold a JSON list")
        try:
            for o in lst:
                state.add_user(o)
        except BadInput as e:
            sys.exit("fake1p: --users-file: %s" % e)

    server = Server((args.host, args.port), Handler)
    server.state = state
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    host, port = server.server_address[:2]
    print("fake1p listening on %s:%d" % (host, port), flush=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
