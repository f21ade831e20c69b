# SPDX-License-Identifier: MIT
"""Tests of the integration harness itself: the fake1p fixtures, the helpers,
the Remedyd driver against a stand-in daemon, and (when it is built) against
the real remedyd."""

import json
import os
import signal
import sys
import textwrap
import time

import pytest

import harness
from harness import (Remedyd, WaitTimeout, assert_no_secrets, deep_merge, hmac_sign,
                     metric_value, requires_remedyd, wait_until)


# ------------------------------------------------------------------ helpers

def test_wait_until_returns_value():
    n = []
    assert wait_until(lambda: n.append(1) or (len(n) >= 3 and "done")) == "done"


def test_wait_until_times_out_bounded():
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="the impossible"):
        wait_until(lambda: False, timeout=0.2, message="the impossible")
    assert 0.2 <= time.monotonic() - t0 < 2


def test_assert_no_secrets():
    assert_no_secrets(["nothing here", b"bytes too", {"k": "v"}], ["s3cr3t-value", ""])
    with pytest.raises(AssertionError):
        assert_no_secrets("log: token=s3cr3t-value", "s3cr3t-value")
    with pytest.raises(AssertionError):
        assert_no_secrets([b"x", "a=s3cr3t%2Fvalue"], ["s3cr3t/value"])
    with pytest.raises(AssertionError) as e:
        assert_no_secrets([{"msg": 'said q"uote'}], ['q"uote'])
    assert 'q"uote' not in str(e.value)


def test_hmac_sign_known_vector():
    # RFC 4231 test case 2
    assert hmac_sign("Jefe", "what do ya want for nothing?", prefix="") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_sign(b"Jefe", b"what do ya want for nothing?").startswith("sha256=5bdc")


def test_metric_value():
    text = textwrap.dedent('''\
        # HELP remedyd_webhooks_total Webhooks.
        # TYPE remedyd_webhooks_total counter
        remedyd_webhooks_total{source="splunk",code="202"} 3
        remedyd_webhooks_total{source="splunk",code="401"} 1
        remedyd_webhooks_total{source="okta",code="202"} 2
        remedyd_queue_depth{state="queued"} 0
        remedyd_up 1
        ''')
    assert metric_value(text, "remedyd_webhooks_total") == 6
    assert metric_value(text, "remedyd_webhooks_total", source="splunk") == 4
    assert metric_value(text, "remedyd_webhooks_total", source="splunk", code=202) == 3
    assert metric_value(text, "remedyd_up") == 1
    assert metric_value(text, "remedyd_missing") == 0


def test_deep_merge():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": None, "e": {"f": 1}}) == \
        {"a": {"b": 1, "c": [3]}, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


# ------------------------------------------------------------------ fake1p fixture

def test_fake1p_fixture_basics(fake1p):
    assert fake1p.url == "http://127.0.0.1:%d" % fake1p.port
    assert fake1p.health() == {"status": "ok"}
    users = fake1p.users()
    assert len(users) == 50 and users[0]["owner"]
    assert fake1p.user("USER7@example.com")["id"] == users[7]["id"]
    assert fake1p.user("nobody@example.com") is None
    assert fake1p.requests() == []
    tok = fake1p.token()
    reqs = fake1p.requests()
    assert len(reqs) == 1 and reqs[0]["op"] == "token" and reqs[0]["status"] == 200
    assert reqs[0]["headers"]["authorization"].startswith("Basic ")
    assert fake1p.requests(op="list") == []
    s, _, b = harness.http_request(fake1p.url + "/v1beta1/accounts/%s/users" % fake1p.account_id,
                                   headers={"Authorization": "Bearer " + tok})
    assert s == 200 and len(json.loads(b)["results"]) == 25
    assert len(fake1p.requests(op="list", method="GET")) == 1
    fake1p.clear_requests()
    assert fake1p.requests() == []


def test_fake1p_fixture_faults_users_tokens_config(fake1p):
    tok = fake1p.token()
    url = fake1p.url + "/v1beta1/accounts/%s/users" % fake1p.account_id
    auth = {"Authorization": "Bearer " + tok}
    fake1p.fault(op="list", status=429, headers={"Retry-After": "2"})
    fake1p.faults([{"op": "list", "status": 503}, {"op": "get", "status": 500}])
    assert len(fake1p.pending_faults()) == 3
    s, h, _ = harness.http_request(url, headers=auth)
    assert s == 429 and h["retry-after"] == "2"
    assert harness.http_request(url, headers=auth)[0] == 503
    fake1p.clear_faults()
    assert fake1p.pending_faults() == []
    assert harness.http_request(url, headers=auth)[0] == 200

    added = fake1p.add_users([{"email": "new@example.com", "id": "NEWUSER0000000000000000000"}])
    assert added[0]["id"] == "NEWUSER0000000000000000000"
    assert fake1p.set_user("NEWUSER0000000000000000000", state="SUSPENDED")["state"] == "SUSPENDED"
    assert fake1p.user("new@example.com")["state"] == "SUSPENDED"

    assert fake1p.expire_tokens() >= 1
    assert harness.http_request(url, headers=auth)[0] == 401
    cfg = fake1p.config(token_lifetime=3)
    assert cfg["token_lifetime"] == 3 and fake1p.config()["token_lifetime"] == 3


@pytest.mark.fake1p(users=3, client_id="other-id", client_secret="other-secret", layout="v1")
def test_fake1p_marker_options(fake1p):
    assert len(fake1p.users()) == 3
    assert fake1p.client_id == "other-id"
    fake1p.token(path="/v1/oauth/token")
    with pytest.raises(AssertionError):
        fake1p.token()  # v1beta1 route is switched off


def test_fake1p_factory_independent(fake1p_factory):
    a = fake1p_factory(users=1)
    b = fake1p_factory(users=2, token_lifetime=5)
    assert a.port != b.port
    assert len(a.users()) == 1 and len(b.users()) == 2
    assert a.stop() == 0 and b.stop() == 0


# ------------------------------------------------------------------ Remedyd driver (stand-in)

STUB = r'''
import json, os, signal, socket, sys, threading, yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
cfg = yaml.safe_load(open(sys.argv[sys.argv.index("-c") + 1]))
for k in ("client_id_file", "client_secret_file"):
    assert open(cfg["onepassword"][k]).read().strip()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, obj):
        b = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
        self.send_response(code); self.send_header("Content-Length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        if self.path == "/metrics":
            self.reply(200, 'remedyd_webhooks_total{source="s",code="202"} %d\n' % hooks[0])
        elif self.path in ("/healthz", "/readyz"):
            self.reply(200, "ok")
        elif self.path == "/status":
            self.reply(200, {"version": "stub", "argv": sys.argv[1:]})
        else:
            self.reply(404, {})
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hooks[0] += 1
        self.reply(202, {"path": self.path, "sig": self.headers.get("X-Remedyd-Signature"),
                         "body": body.decode(), "ctype": self.headers.get("Content-Type")})
hooks = [0]
servers = {}
for what in ("webhook", "status"):
    host, port = cfg["listen"][what].rsplit(":", 1)
    s = ThreadingHTTPServer((host, int(port)), H); servers[what] = s
    threading.Thread(target=s.serve_forever, daemon=True).start()
ctl = cfg["listen"]["control"][5:]
if os.path.exists(ctl): os.unlink(ctl)
u = socket.socket(socket.AF_UNIX); u.bind(ctl); u.listen()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
signal.signal(signal.SIGHUP, lambda *a: print("reloading configuration", file=sys.stderr, flush=True))
print("starting, secret is redacted", file=sys.stderr, flush=True)
for what, s in servers.items():
    print("remedyd: %s listener on %s:%d" % (what, *s.server_address[:2]), file=sys.stderr, flush=True)
print("remedyd: control listener on unix:%s" % ctl, file=sys.stderr, flush=True)
if os.environ.get("STUB_SANITIZER"):
    print("==1==ERROR: AddressSanitizer: heap-use-after-free", file=sys.stderr, flush=True)
while not stop.wait(0.05):
    pass
os.unlink(ctl)
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
'''


@pytest.fixture
def stub_bin(tmp_path):
    p = tmp_path / "stub-remedyd"
    p.write_text("#!%s\n%s" % (harness.PYTHON, STUB))
    p.chmod(0o755)
    ctl = tmp_path / "stub-remedyctl"
    ctl.write_text("#!/bin/sh\necho \"$@\"\n")
    ctl.chmod(0o755)
    return str(p), str(ctl)


def test_remedyd_driver_with_stub(fake1p, tmp_path, stub_bin):
    d = Remedyd(tmp_path / "rd", fake1p, {"sources": [harness.hmac_source("s")]},
                secrets={"s.hmac": "hook-secret"}, binary=stub_bin[0], ctl_binary=stub_bin[1],
                args=["-v"])
    try:
        assert d.webhook_url.startswith("http://127.0.0.1:")
        assert d.status_url.startswith("http://127.0.0.1:") and d.status_url != d.webhook_url
        assert d.control_socket.endswith("control.sock") and os.path.exists(d.control_socket)
        cfg = harness.yaml.safe_load(open(d.config_path))
        assert cfg["onepassword"]["base_url"] == fake1p.url
        assert cfg["onepassword"]["api_version"] == "v1beta1"
        assert cfg["onepassword"]["account_id"] == fake1p.account_id
        assert cfg["listen"]["webhook"] == "127.0.0.1:0"
        if d.backend == "sqlite":
            assert cfg["state"]["path"].startswith(d.dir)
        else:
            assert cfg["state"]["backend"] == "postgresql" and "path" not in cfg["state"]
            assert open(cfg["state"]["postgresql"]["conninfo_file"]).read() == d.pg.conninfo + "\n"
            assert cfg["state"]["instance"] == d.instance
        assert cfg["sources"][0]["auth"]["hmac_sha256"]["secret_file"] == "secrets/s.hmac"
        assert open(os.path.join(d.dir, "secrets", "s.hmac")).read() == "hook-secret\n"
        assert os.stat(os.path.join(d.dir, "secrets", "client_secret")).st_mode & 0o077 == 0

        body = {"result": {"user": "user1@example.com"}}
        s, h, j = d.post("s", body, sign="hook-secret")
        assert s == 202 and j["path"] == "/hooks/s" and j["ctype"] == "application/json"
        assert j["sig"] == hmac_sign("hook-secret", json.dumps(body))
        s, _, j = d.post("s", b"raw", content_type=None, headers={"X-Other": "1"})
        assert s == 202 and j["body"] == "raw" and j["ctype"] is None and j["sig"] is None
        assert d.get_status()["argv"][-1] == "-v"
        assert d.metric("remedyd_webhooks_total", source="s") == 2
        r = d.ctl("status", "--json")
        assert r.returncode == 0
        assert r.stdout.split() == ["-c", d.config_path, "--socket", d.control_socket,
                                    "status", "--json"]
        assert "webhook listener on" in d.log_text()

        d.reload({"safety": {"dry_run": True}})
        d.wait_log("reloading configuration")
        assert harness.yaml.safe_load(open(d.config_path))["safety"]["dry_run"] is True

        assert d.restart() == 0
        assert d.log_text().count("status listener on") == 2
        assert d.get_status()["version"] == "stub"

        assert d.kill9() == -signal.SIGKILL
        assert not d.alive()
        d.start()
        assert d.stop() == 0
        assert d.sanitizer_report() == ""
        assert_no_secrets([d.log_text()], ["hook-secret", fake1p.client_secret])
    finally:
        d.cleanup()


def test_remedyd_driver_startup_failure_is_reported(fake1p, tmp_path):
    bad = tmp_path / "bad-remedyd"
    bad.write_text("#!/bin/sh\necho 'config: bad key' >&2\nexit 1\n")
    bad.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="(?s)exited with 1.*bad key"):
        Remedyd(tmp_path / "rd", fake1p, binary=str(bad))
    assert time.monotonic() - t0 < 5


def test_remedyd_driver_sanitizer_and_exit_code(fake1p, tmp_path, stub_bin):
    d = Remedyd(tmp_path / "rd", fake1p, binary=stub_bin[0],
                env={"STUB_SANITIZER": "1", "STUB_EXIT": "3"})
    try:
        assert "AddressSanitizer" in d.sanitizer_report()
        assert d.stop() == 3
    finally:
        d.cleanup()


def test_remedyd_long_tmp_path_gets_short_socket(fake1p, tmp_path, stub_bin):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    d = Remedyd(deep, fake1p, binary=stub_bin[0])
    try:
        assert len(d.control_socket) < 100 and os.path.exists(d.control_socket)
    finally:
        d.cleanup()
    assert not os.path.exists(os.path.dirname(d.control_socket))


# ------------------------------------------------------------------ the real remedyd

def _hook_config():
    return {
        "sources": [harness.hmac_source("selftest")],
        "rules": [{"name": "selftest-suspend", "source": "selftest",
                   "when": {"field": "signature", "equals": "bad"},
                   "action": "suspend", "user": "${user}"}],
    }


@requires_remedyd
def test_real_remedyd_starts_and_stops(remedyd_factory, fake1p):
    d = remedyd_factory(_hook_config(), secrets={"selftest.hmac": "selftest-hook-secret"})
    assert d.alive()
    assert harness.http_request(d.status_url + "/healthz")[0] == 200
    st = d.get_status()
    assert "version" in st and "queue" in st
    assert "remedyd_webhooks_total" in d.metrics_text() or d.metrics_text() != ""
    s, _, j = d.post("selftest", {"signature": "benign", "user": "user1@example.com"},
                     sign="selftest-hook-secret")
    assert s == 202 and j["duplicate"] is False and j["actions"] == []
    s, _, j = d.post("selftest", {"signature": "benign"}, sign="wrong-secret")
    assert s == 401
    assert d.stop() == 0
    assert_no_secrets([d.log_text()], ["selftest-hook-secret", fake1p.client_secret])


@requires_remedyd
def test_real_remedyd_suspends_through_fake(remedyd_factory, fake1p):
    d = remedyd_factory(_hook_config(), secrets={"selftest.hmac": "selftest-hook-secret"})
    s, _, j = d.post("selftest", {"signature": "bad", "user": "user3@example.com"},
                     sign="selftest-hook-secret")
    assert s == 202 and j["actions"][0]["status"] == "queued", j
    wait_until(lambda: fake1p.user("user3@example.com")["state"] == "SUSPENDED",
               timeout=15, message="user3 suspended on the fake")
    sus = fake1p.requests(op="suspend")
    assert sus and sus[-1]["headers"]["authorization"].startswith("Bearer ")
    assert d.stop() == 0


@requires_remedyd
def test_real_remedyd_restart_keeps_working(remedyd_factory):
    d = remedyd_factory(_hook_config(), secrets={"selftest.hmac": "selftest-hook-secret"})
    assert d.restart() == 0
    assert d.log_text().count("webhook listener on") == 2
    assert harness.http_request(d.status_url + "/readyz")[0] == 200
    r = d.ctl("status", "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    assert d.stop() == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
