# SPDX-License-Identifier: MIT
"""Integration-test harness: the fake 1Password API and the real remedyd.

Used through the fixtures in conftest.py; test files may also
`import harness` for wait_until, assert_no_secrets, hmac_sign, metric_value.

Nothing here sleeps for a fixed time: every wait polls with a bound.

State backend: REMEDYD_TEST_BACKEND=sqlite (default) or postgresql. Under
postgresql every Remedyd gets `state.backend: postgresql` on a database of
one private server per test process (tests/pgserver.py, started on first
use); see Remedyd and PgDatabase.
"""

import atexit
import contextlib
import copy
import itertools
import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("REMEDYD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("REMEDYD_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
FAKE1P = os.path.join(SOURCE_ROOT, "tests", "fake1p", "fake1p.py")
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests"))
import pgserver  # noqa: E402
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
REMEDYD_BIN = os.environ.get("REMEDYD_BIN") or os.path.join(BUILD_ROOT, "src", "remedyd")
REMEDYCTL_BIN = os.environ.get("REMEDYCTL_BIN") or os.path.join(BUILD_ROOT, "src", "remedyctl")
# A command line the daemon is started under, e.g. "valgrind --error-exitcode=99"
# (scripts/valgrind). Split like a shell would; empty = run the daemon directly.
REMEDYD_WRAPPER = shlex.split(os.environ.get("REMEDYD_WRAPPER", ""))
# Slow wrappers stretch startup: multiply the startup and readiness bound.
TIMEOUT_SCALE = float(os.environ.get("REMEDYD_TIMEOUT_SCALE", "1") or "1")

DEFAULT_ACCOUNT = "XLQMR47VZPBKJHSGWNCYFDE3T9"
DEFAULT_CLIENT_ID = "test-client-id"
DEFAULT_CLIENT_SECRET = "test-client-secret"

LISTENER_RE = re.compile(r"(webhook|status|control) listener on (\S+)")
SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                          r"SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")
# Environment a test daemon must not inherit: it would talk to the real
# journal or service manager instead of writing to stderr.
SCRUBBED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM",
                "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY",
                "STATE_DIRECTORY", "RUNTIME_DIRECTORY")


BACKENDS = ("sqlite", "postgresql")
BACKEND = os.environ.get("REMEDYD_TEST_BACKEND") or "sqlite"
if BACKEND not in BACKENDS:
    raise RuntimeError("REMEDYD_TEST_BACKEND=%s: use one of %s" % (BACKEND, ", ".join(BACKENDS)))

requires_remedyd = pytest.mark.skipif(not os.path.exists(REMEDYD_BIN),
                                      reason="remedyd not built at %s" % REMEDYD_BIN)
requires_pg = pytest.mark.skipif(not pgserver.available(),
                                 reason="PostgreSQL 15 not installed under %s" % pgserver.PG_BIN)


def sqlite_only(why):
    """Skip marker for a test that cannot run on the PostgreSQL backend;
    `why` names the SQLite-only fact it relies on."""
    return pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite backend only: " + why)


class WaitTimeout(AssertionError):
    pass


def free_port():
    """A loopback TCP port the OS just handed out (for servers that take a
    port number and cannot be given a socket)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(predicate, timeout=10, interval=0.02, message=None):
    """Polls predicate() until it returns a true value, which is returned.

    Raises WaitTimeout (an AssertionError) naming `message` (or the
    predicate) after `timeout` seconds. Exceptions from predicate propagate.
    """
    return pgserver.poll(predicate, timeout, interval,
                         message or getattr(predicate, "__name__", repr(predicate)), WaitTimeout)


@contextlib.contextmanager
def server_factory(make):
    """For a fixture that hands out several servers: yields new(*args, **kw),
    which returns make(n, *args, **kw) (n: how many came before) and keeps
    it; when the block ends, every one kept is stopped (.stop()), first
    made first."""
    made = []

    def new(*args, **kw):
        server = make(len(made), *args, **kw)
        made.append(server)
        return server
    try:
        yield new
    finally:
        for server in made:
            server.stop()


def _as_text(t):
    if isinstance(t, (bytes, bytearray)):
        return bytes(t).decode("utf-8", "replace")
    if isinstance(t, str):
        return t
    return json.dumps(t)


def assert_no_secrets(texts, secrets):
    """Fails if any secret appears in any text.

    texts: a str/bytes, or an iterable of them (dicts/lists are JSON-dumped).
    secrets: a str or an iterable of str; empty ones are ignored. Also looks
    for the URL-encoded and JSON-escaped forms of each secret.
    """
    if isinstance(texts, (str, bytes, bytearray)):
        texts = [texts]
    if isinstance(secrets, str):
        secrets = [secrets]
    texts = [_as_text(t) for t in texts]
    for s in secrets:
        if not s:
            continue
        forms = {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s),
                 json.dumps(s)[1:-1]}
        for i, t in enumerate(texts):
            for f in forms:
                if f in t:
                    at = t.index(f)
                    ctx = t[max(0, at - 60):at].replace("\n", "\\n")
                    raise AssertionError("secret %s... found in text #%d after %r"
                                         % (s[:3], i, ctx))


def hmac_sign(secret, body, prefix="sha256="):
    """Hex HMAC-SHA256 of body (bytes/str) under secret, with prefix."""
    if isinstance(secret, str):
        secret = secret.encode()
    if isinstance(body, str):
        body = body.encode()
    return prefix + hmac.new(secret, body, hashlib.sha256).hexdigest()


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> list of (name, {labels}, float value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in _LABEL.findall(m.group(3) or "")}
        try:
            val = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, val))
    return out


def metric_value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`; 0.0 if none."""
    return sum(v for n, l, v in parse_metrics(text)
               if n == name and all(l.get(k) == str(x) for k, x in labels.items()))


def deep_merge(base, over):
    """Returns base updated by over: dicts merge recursively, anything else
    (lists included) replaces; a None value in `over` deletes the key."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def http_request(url, method="GET", body=None, headers=None, timeout=10, unix_socket=None,
                 context=None):
    """One HTTP request; returns (status, headers lower-cased dict, body bytes).

    HTTP errors are returned, not raised; connection errors raise.
    """
    u = urllib.parse.urlsplit(url)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    if unix_socket:
        conn = _UnixHTTPConnection(unix_socket, timeout=timeout)
    elif u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    if isinstance(body, str):
        body = body.encode()
    return http_exchange(conn, method, path, body, headers)


def http_exchange(conn, method, path, body=None, headers=None):
    """One request on conn (an unopened http.client connection), path and body
    sent as given; returns (status, headers lower-cased dict, body bytes) and
    closes conn."""
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def _json_or_none(data):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


# --------------------------------------------------------------------- fake

class FakeOnePassword:
    """A running tests/fake1p/fake1p.py on 127.0.0.1, port picked by the OS."""

    def __init__(self, workdir, users=0, users_file=None, token_lifetime=None,
                 client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 account_id=DEFAULT_ACCOUNT, default_page_size=None, max_page_size=None,
                 layout=None, extra_args=(), startup_timeout=20):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.client_id = client_id
        self.client_secret = client_secret
        self.account_id = account_id
        self._tokens_seen = set()
        fd, self.port_file = tempfile.mkstemp(prefix="fake1p-", suffix=".port", dir=self.workdir)
        os.close(fd)
        os.unlink(self.port_file)
        args = [PYTHON, FAKE1P, "--host", "127.0.0.1", "--port", "0",
                "--port-file", self.port_file, "--account-id", account_id,
                "--client-id", client_id, "--client-secret", client_secret,
                "--users", str(int(users))]
        if users_file:
            args += ["--users-file", str(users_file)]
        if token_lifetime is not None:
            args += ["--token-lifetime", str(int(token_lifetime))]
        if default_page_size is not None:
            args += ["--default-page-size", str(int(default_page_size))]
        if max_page_size is not None:
            args += ["--max-page-size", str(int(max_page_size))]
        if layout:
            args += ["--layout", layout]
        args += list(extra_args)
        self.log_path = os.path.join(self.workdir, os.path.basename(self.port_file)[:-5] + ".log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_until(self._ready, timeout=startup_timeout, interval=0.02,
                       message="fake1p to write its port file")
        except BaseException:
            self.stop()
            raise
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("fake1p exited with %s: %s" % (self.proc.returncode, self.log_text()))
        return os.path.exists(self.port_file) and os.path.getsize(self.port_file) > 0

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- control API ------------------------------------------------------
    def _control(self, method, path, obj=None):
        data = json.dumps(obj).encode() if obj is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError("fake1p %s %s: %d %s" % (method, path, e.code,
                                                          e.read().decode(errors="replace")))
        return json.loads(body) if body else None

    def requests(self, op=None, method=None):
        """Recorded API requests, oldest first; optionally only one op
        (token|revoke|list|get|suspend|reactivate) and/or method."""
        reqs = self._control("GET", "/_fake/requests")
        return [r for r in reqs
                if (op is None or r.get("op") == op) and (method is None or r["method"] == method)]

    def clear_requests(self):
        self._control("DELETE", "/_fake/requests")

    def fault(self, **kw):
        """Queues one fault, e.g. fault(op="suspend", status=429, headers={"Retry-After": "1"})."""
        return self._control("POST", "/_fake/faults", [kw])

    def faults(self, lst):
        return self._control("POST", "/_fake/faults", list(lst))

    def pending_faults(self):
        return self._control("GET", "/_fake/faults")

    def clear_faults(self):
        self._control("DELETE", "/_fake/faults")

    def users(self):
        """Every user: the 6 API keys plus "owner"."""
        return self._control("GET", "/_fake/users")

    def user(self, key):
        """One user by id or email (case-insensitive); None if absent."""
        for u in self.users():
            if u["id"] == key or u["email"].lower() == key.lower():
                return u
        return None

    def add_users(self, lst):
        """Adds users ({email, display_name?, state?, id?, owner?}); returns them."""
        return self._control("POST", "/_fake/users", list(lst))

    def set_user(self, user_id, **kw):
        """Changes state/owner/email/display_name of one user behind the API's back."""
        return self._control("POST", "/_fake/users/" + urllib.parse.quote(user_id, safe=""), kw)

    def expire_tokens(self):
        return self._control("POST", "/_fake/expire-tokens")["expired"]

    def config(self, **kw):
        """Sets token_lifetime/default_page_size/max_page_size; returns the config."""
        return self._control("POST" if kw else "GET", "/_fake/config", kw if kw else None)

    def health(self):
        return self._control("GET", "/_fake/health")

    def token(self, path="/v1beta1/users/oauth2/token"):
        """Gets an access token as a client would (recorded in the request log)."""
        import base64
        auth = base64.b64encode(("%s:%s" % (self.client_id, self.client_secret)).encode()).decode()
        s, _, b = http_request(self.url + path, "POST", "grant_type=client_credentials",
                               {"Authorization": "Basic " + auth,
                                "Content-Type": "application/x-www-form-urlencoded"})
        assert s == 200, b
        return json.loads(b)["access_token"]

    def access_tokens(self):
        """Every bearer token seen on recorded API requests (and kept from
        before stop()): what a daemon must never log."""
        if self.proc.poll() is None:
            try:
                for r in self.requests():
                    a = (r.get("headers") or {}).get("authorization", "")
                    if a.lower().startswith("bearer "):
                        self._tokens_seen.add(a[7:].strip())
            except (OSError, AssertionError, ValueError):
                pass
        return set(self._tokens_seen)

    def stop(self, timeout=10):
        self.access_tokens()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------- PostgreSQL

_pg = None
_db_numbers = itertools.count(1)
_instance_numbers = itertools.count(1)


def pg_server():
    """This process's private PostgreSQL server, started on first use and
    removed at exit (conftest's pg_server fixture stops it earlier)."""
    global _pg
    if _pg is None:
        pg = pgserver.PgServer()
        atexit.register(pg.cleanup)
        pg.start()
        _pg = pg
    return _pg


def pg_server_cleanup():
    global _pg
    if _pg is not None:
        _pg.cleanup()
        _pg = None


class PgDatabase:
    """A fresh database on pg_server(): `conninfo` (unix socket, trust),
    `tcp_conninfo` (127.0.0.1, with the superuser's password), psql(sql)."""

    def __init__(self, prefix="t"):
        self.server = pg_server()
        self.name = "%s_%d_%d" % (prefix, os.getpid(), next(_db_numbers))
        self.conninfo = self.server.create_database(self.name)
        self.tcp_conninfo = self.server.conninfo(self.name, tcp=True)

    def psql(self, sql, timeout=60):
        """Rows (lists of str, None for NULL) of the last statement in sql."""
        return self.server.psql(sql, self.name, timeout=timeout)

    def drop(self):
        if self.server.running():
            self.server.drop_database(self.name)


# --------------------------------------------------------------------- remedyd

class Remedyd:
    """A real remedyd started on a generated config, against a fake.

    config: dict merged over test defaults (see default_config()); None
    values delete default keys. secrets: {relative name: content} written
    (mode 0600) under DIR/secrets/ before start; relative secret paths in
    the config resolve against DIR, where the config file is written.

    backend: "sqlite" or "postgresql" (default: $REMEDYD_TEST_BACKEND).
    On postgresql the state lives in `pg_database` (a PgDatabase; several
    daemons given the same one share their state), by default a fresh one
    dropped by cleanup(); its conninfo is the secret file
    secrets/pg_conninfo (the TCP one, with a password, if pg_tcp).
    `instance` names the instance (default: unique per process).
    """

    def __init__(self, workdir, fake=None, config=None, secrets=None, args=(), env=None,
                 wait_ready=True, start=True, ready_timeout=15, binary=None, ctl_binary=None,
                 backend=None, pg_database=None, pg_tcp=False, instance=None, lease="30s"):
        self.dir = str(workdir)
        self.backend = backend or BACKEND
        if self.backend not in BACKENDS:
            raise ValueError("backend %r: use one of %s" % (self.backend, ", ".join(BACKENDS)))
        self._own_db = self.backend == "postgresql" and pg_database is None
        self.pg = (PgDatabase() if self._own_db else pg_database) \
            if self.backend == "postgresql" else None
        self.instance = instance or "%s-%d" % (
            re.sub(r"[^a-z0-9-]", "-", os.path.basename(self.dir).lower())[:40],
            next(_instance_numbers))
        self.lease = lease
        self.binary = binary or REMEDYD_BIN
        self.ctl_binary = ctl_binary or REMEDYCTL_BIN
        os.makedirs(self.dir, exist_ok=True)
        self.fake = fake
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout * TIMEOUT_SCALE
        self.config_path = os.path.join(self.dir, "remedyd.yaml")
        self.log_path = os.path.join(self.dir, "remedyd.log")
        self.stdout_path = os.path.join(self.dir, "remedyd.stdout")
        # sun_path holds 108 bytes; pytest's tmp paths can be longer.
        sock = os.path.join(self.dir, "control.sock")
        self._sockdir = None
        if len(sock.encode()) > 100:
            self._sockdir = tempfile.mkdtemp(prefix="remedyd-")
            sock = os.path.join(self._sockdir, "control.sock")
        self._default_control = sock
        self.proc = None
        self.returncode = None
        self.addresses = {}
        self._log_offset = 0
        self._log_file = None
        self.write_secret("client_id", fake.client_id if fake else DEFAULT_CLIENT_ID)
        self.write_secret("client_secret", fake.client_secret if fake else DEFAULT_CLIENT_SECRET)
        if self.pg is not None:
            self.write_secret("pg_conninfo", self.pg.tcp_conninfo if pg_tcp else self.pg.conninfo)
            if pg_tcp:  # so that secret_leaks() looks for the password on its own
                self.write_secret("pg_password", self.pg.server.password)
        for name, content in (secrets or {}).items():
            self.write_secret(name, content)
        self.config = deep_merge(self.default_config(), config)
        self.write_config()
        if start:
            self.start(wait_ready=wait_ready)

    # -- config ---------------------------------------------------------
    def default_config(self):
        fake = self.fake
        return {
            "listen": {
                "webhook": "127.0.0.1:0",
                "status": "127.0.0.1:0",
                "control": "unix:" + self._default_control,
            },
            "onepassword": {
                "base_url": fake.url if fake else "http://127.0.0.1:9",
                "api_version": "v1beta1",
                "account_id": fake.account_id if fake else DEFAULT_ACCOUNT,
                "client_id_file": self.secret_path("client_id"),
                "client_secret_file": self.secret_path("client_secret"),
            },
            "state": self.default_state_config(),
        }

    def default_state_config(self):
        if self.backend == "sqlite":
            return {"path": os.path.join(self.dir, "state.db")}
        return {"backend": "postgresql",
                "postgresql": {"conninfo_file": self.secret_path("pg_conninfo"),
                               "schema": "remedyd", "pool": 2},
                "instance": self.instance,
                "lease": self.lease}

    def secret_path(self, name):
        return os.path.join(self.dir, "secrets", name)

    def write_secret(self, name, content):
        """Writes DIR/secrets/NAME (0600); returns its path."""
        p = self.secret_path(name)
        os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content if content.endswith("\n") else content + "\n")
        return p

    def write_config(self, config=None):
        """Writes self.config (or a replacement: a full dict) as YAML."""
        if config is not None:
            self.config = config
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            yaml.safe_dump(self.config, f, sort_keys=False, default_flow_style=False)
        os.replace(tmp, self.config_path)

    def update_config(self, over):
        """Merges `over` into the current config and rewrites the file."""
        self.write_config(deep_merge(self.config, over))

    # -- process --------------------------------------------------------
    def start(self, wait_ready=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not os.path.exists(self.binary):
            raise RuntimeError("remedyd binary not found at %s (set REMEDYD_BIN)" % self.binary)
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(self.extra_env)
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._log_file = open(self.log_path, "ab")
        self.addresses = {}
        self.returncode = None
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(REMEDYD_WRAPPER + [self.binary, "-c", self.config_path]
                                         + self.args,
                                         stdout=out, stderr=self._log_file,
                                         stdin=subprocess.DEVNULL, env=env, cwd=self.dir)
        try:
            self._wait_started(wait_ready)
        except BaseException:
            self.stop(timeout=5)
            raise
        return self

    def _this_run_log(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def _wanted_listeners(self):
        listen = self.config.get("listen") or {}
        return {k for k in ("webhook", "status", "control") if listen.get(k)}

    def _check_alive(self):
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise RuntimeError("remedyd exited with %d during startup; log:\n%s"
                               % (self.proc.returncode, self._this_run_log()[-4000:]))

    def _wait_started(self, wait_ready):
        want = self._wanted_listeners()

        def listeners_logged():
            self._check_alive()
            for m in LISTENER_RE.finditer(self._this_run_log()):
                self.addresses[m.group(1)] = m.group(2)
            return want <= set(self.addresses)
        wait_until(listeners_logged, timeout=self.ready_timeout, interval=0.02,
                   message="remedyd to log its listener addresses %s" % sorted(want))
        if "status" not in self.addresses:
            return
        path = "/readyz" if wait_ready else "/healthz"

        def answers():
            self._check_alive()
            try:
                s, _, _ = http_request(self.status_url + path, timeout=2)
            except OSError:
                return False
            return s == 200
        try:
            wait_until(answers, timeout=self.ready_timeout, interval=0.03,
                       message="remedyd %s to answer 200" % path)
        except WaitTimeout as e:
            raise WaitTimeout("%s; log:\n%s" % (e, self._this_run_log()[-4000:]))

    @staticmethod
    def _url(addr, scheme="http"):
        if addr is None:
            return None
        if addr.startswith("unix:") or addr.startswith("/"):
            return None
        return "%s://%s" % (scheme, addr)

    @property
    def webhook_url(self):
        tls = (self.config.get("listen") or {}).get("tls")
        return self._url(self.addresses.get("webhook"), "https" if tls else "http")

    @property
    def status_url(self):
        return self._url(self.addresses.get("status"))

    @property
    def control_socket(self):
        a = self.addresses.get("control") or (self.config.get("listen") or {}).get("control", "")
        return a[len("unix:"):] if a.startswith("unix:") else a

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, config=None):
        """Rewrites the config if given (a dict merged over the current one),
        then sends SIGHUP. Waiting for the effect is up to the caller."""
        if config is not None:
            self.update_config(config)
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout=15):
        """Waits (bounded) for the daemon to exit on its own; returns the code."""
        self.returncode = self.proc.wait(timeout * TIMEOUT_SCALE)
        return self.returncode

    def kill9(self):
        if self.alive():
            self.proc.kill()
        self.returncode = self.proc.wait(10)
        self._close_log()
        return self.returncode

    def stop(self, timeout=15):
        """SIGTERM, bounded wait, SIGKILL past it; returns the exit code
        (negative signal number if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self._close_log()
        return self.returncode

    def restart(self, wait_ready=True, config=None, timeout=15):
        """stop() (if running), optionally merge `config` into the config,
        start again. Ports picked by the OS may change. Returns the old exit code."""
        rc = self.stop(timeout) if self.alive() else self.returncode
        if config is not None:
            self.update_config(config)
        self.start(wait_ready=wait_ready)
        return rc

    def _close_log(self):
        if self._log_file and not self._log_file.closed:
            self._log_file.close()

    def cleanup(self):
        self.stop()
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
        if self._own_db:
            self.pg.drop()
            self._own_db = False

    def log_text(self):
        """Everything the daemon wrote to stderr, over all its runs."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def secret_leaks(self):
        """Secrets found in the daemon's log: the contents (per line, 8+
        characters) of every file under DIR/secrets/ but client_id, and every
        access token the fake saw. Returns a list of descriptions."""
        secrets = set()
        sdir = os.path.join(self.dir, "secrets")
        for root, _, files in os.walk(sdir):
            for name in files:
                if name == "client_id":
                    continue
                try:
                    with open(os.path.join(root, name), errors="replace") as f:
                        secrets.update(l.strip() for l in f if len(l.strip()) >= 8)
                except OSError:
                    pass
        if self.fake is not None:
            secrets.update(self.fake.access_tokens())
        try:
            assert_no_secrets(self.log_text(), sorted(secrets))
        except AssertionError as e:
            return [str(e)]
        return []

    def sanitizer_report(self):
        """The ASan/UBSan/LSan report lines in the log, or ''."""
        return "\n".join(l for l in self.log_text().splitlines() if SANITIZER_RE.search(l))

    def wait_log(self, pattern, timeout=10):
        """Waits until the log matches regex `pattern`; returns the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_text()), timeout=timeout,
                          message="log line matching %r" % pattern)

    # -- HTTP -----------------------------------------------------------
    def post(self, source, body, headers=None, sign=None, header="X-Remedyd-Signature",
             prefix="sha256=", content_type="application/json", method="POST", timeout=10,
             context=None):
        """Delivers a webhook to /hooks/SOURCE. body: dict (JSON-encoded) or
        bytes/str (sent as is). sign: an HMAC secret to sign the body with.
        Returns (status, headers lower-cased, parsed JSON or None)."""
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        h = {}
        if content_type:
            h["Content-Type"] = content_type
        if sign is not None:
            h[header] = hmac_sign(sign, data or b"", prefix)
        h.update(headers or {})
        s, hd, b = self.webhook_raw(method, "/hooks/" + source, data, h, timeout, context)
        return s, hd, _json_or_none(b)

    def webhook_raw(self, method, path, body=None, headers=None, timeout=10, context=None):
        """Any request on the webhook listener; returns (status, headers, bytes)."""
        addr = self.addresses.get("webhook", "")
        if addr.startswith("unix:") or addr.startswith("/"):
            return http_request("http://localhost" + path, method, body, headers, timeout,
                                unix_socket=addr[5:] if addr.startswith("unix:") else addr)
        return http_request(self.webhook_url + path, method, body, headers, timeout,
                            context=context)

    def status_raw(self, path, method="GET", timeout=10):
        return http_request(self.status_url + path, method, timeout=timeout)

    def get_status(self):
        s, _, b = self.status_raw("/status")
        assert s == 200, "/status answered %d: %r" % (s, b[:200])
        return json.loads(b)

    def metrics_text(self):
        s, _, b = self.status_raw("/metrics")
        assert s == 200, "/metrics answered %d" % s
        return b.decode()

    def metric(self, name, **labels):
        return metric_value(self.metrics_text(), name, **labels)

    def control_raw(self, path, method="GET", body=None, headers=None, timeout=10):
        """A request on the control socket; returns (status, headers, bytes)."""
        return http_request("http://localhost" + path, method, body, headers, timeout,
                            unix_socket=self.control_socket)

    def ctl(self, *args, check=False, timeout=30, input=None, env=None):
        """Runs remedyctl -c CONFIG --socket SOCK ARGS...; returns CompletedProcess (text)."""
        e = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        e.update(env or {})
        cmd = [self.ctl_binary, "-c", self.config_path]
        if self.control_socket:
            cmd += ["--socket", self.control_socket]
        cmd += [str(a) for a in args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check,
                              input=input, env=e, cwd=self.dir)

    def ctl_json(self, *args):
        """remedyctl ARGS --json; asserts exit 0 and returns the parsed output."""
        r = self.ctl(*args, "--json")
        assert r.returncode == 0, "remedyctl %s: %d %s" % (" ".join(args), r.returncode, r.stderr)
        return json.loads(r.stdout)


def hmac_source(name, secret_file=None, header="X-Remedyd-Signature", prefix="sha256=", **extra):
    """A `sources:` entry authenticated by HMAC-SHA256 (secret in secrets/NAME.hmac)."""
    auth = {"header": header, "secret_file": secret_file or "secrets/%s.hmac" % name}
    if prefix:
        auth["prefix"] = prefix
    d = {"name": name, "auth": {"hmac_sha256": auth}}
    d.update(extra)
    return d
