# SPDX-License-Identifier: MIT
"""remedyd as a systemd service: sd_notify (READY, STATUS, WATCHDOG,
RELOADING, STOPPING), socket activation, reload, the status endpoint and
its metrics, the units themselves."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

SECRET = "service-hmac-secret-4567"
SRC = os.environ.get("REMEDYD_SOURCE_ROOT") or harness.SOURCE_ROOT
BUILD = os.environ.get("REMEDYD_BUILD_ROOT") or harness.BUILD_ROOT


def config(**extra):
    cfg = {"sources": [hmac_source("splunk")],
           "rules": [{"name": "r1", "source": "splunk",
                      "when": {"field": "kind", "equals": "compromise"},
                      "action": "suspend", "user": "${user}"}]}
    cfg.update(extra)
    return cfg


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages = []

    def drain(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode())

    def seen(self, needle):
        return any(needle in m for m in self.drain())

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = NotifySocket(str(tmp_path / "notify.sock"))
    yield n
    n.close()


def test_notify_protocol(remedyd_factory, fake1p, notify):
    d = remedyd_factory(config(), fake=fake1p, secrets={"splunk.hmac": SECRET},
                        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    wait_until(lambda: notify.seen("READY=1"), message="READY=1")
    wait_until(lambda: notify.seen("WATCHDOG=1"), message="WATCHDOG=1 pings")
    n_wd = sum("WATCHDOG=1" in m for m in notify.drain())
    wait_until(lambda: sum("WATCHDOG=1" in m for m in notify.drain()) > n_wd + 2,
               message="repeated WATCHDOG=1")
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in notify.drain())
    status = [m for m in notify.drain() if "STATUS=" in m][-1]
    assert "queued" in status and "token" in status
    notify.messages.clear()
    d.signal(signal.SIGHUP)
    wait_until(lambda: notify.seen("RELOADING=1"), message="RELOADING=1")
    wait_until(lambda: any("READY=1" in m for m in notify.messages[1:]) or
               sum("READY=1" in m for m in notify.drain()) >= 1, message="READY=1 after reload")
    notify.messages.clear()
    assert d.stop() == 0
    assert notify.seen("STOPPING=1")
    # the token was revoked on the clean stop
    assert len(fake1p.requests(op="revoke")) == 1


def test_socket_activation(remedyd_factory, fake1p, tmp_path):
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        pytest.skip("systemd-socket-activate not installed")
    port = harness.free_port()
    d = remedyd_factory(config(listen={"webhook": "systemd:webhook"}), fake=fake1p,
                        secrets={"splunk.hmac": SECRET}, start=False)
    d.binary_argv_prefix = None
    # Run remedyd under systemd-socket-activate: it binds, then execs remedyd
    # with LISTEN_FDS=1 LISTEN_FDNAMES=webhook.
    env = {k: v for k, v in os.environ.items() if k not in harness.SCRUBBED_ENV}
    log = open(d.log_path, "ab")
    proc = subprocess.Popen([activate, "-l", "127.0.0.1:%d" % port, "--fdname=webhook",
                             d.binary, "-c", d.config_path], stdout=log, stderr=log, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        # the socket exists before remedyd runs; remedyd starts on the first connection
        def post():
            try:
                return harness.http_request("http://127.0.0.1:%d/hooks/splunk" % port, "POST",
                                            json.dumps({"kind": "none"}).encode(),
                                            {"Content-Type": "application/json",
                                             "X-Remedyd-Signature": harness.hmac_sign(SECRET, json.dumps({"kind": "none"}).encode())},
                                            timeout=5)
            except OSError:
                return None
        r = wait_until(post, timeout=20, message="a webhook through the activated socket")
        assert r[0] == 202, r
        assert "webhook listener on" in open(d.log_path, errors="replace").read()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


def test_reload_good_and_bad(remedyd_factory, fake1p):
    d = remedyd_factory(config(), fake=fake1p, secrets={"splunk.hmac": SECRET})
    st = d.get_status()
    assert st["config"]["rules"] == 1 and st["config"]["last_reload_error"] is None
    # good: a second rule
    cfg = config()
    cfg["rules"].append({"name": "r2", "source": "splunk", "when": {"field": "kind", "equals": "other"},
                         "action": "notify", "user": "${user}"})
    d.update_config({"rules": cfg["rules"]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.get_status()["config"]["rules"] == 2, message="reloaded rules")
    body = {"kind": "other", "user": "user3@example.com"}
    s, _, b = d.post("splunk", body, sign=SECRET)
    assert s == 202 and b["actions"][0]["action"] == "notify"
    # bad: unknown operator; the old rules stay in force
    bad = json.loads(json.dumps(cfg))
    bad["rules"][1]["when"] = {"field": "kind", "equalz": "x"}
    d.update_config({"rules": bad["rules"]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.get_status()["config"]["last_reload_error"], message="reload error in /status")
    err = d.get_status()["config"]["last_reload_error"]
    assert "equalz" in err and re.search(r":\d+:\d+:", err)
    assert d.get_status()["config"]["rules"] == 2
    s, _, b = d.post("splunk", dict(body, n=2), sign=SECRET)
    assert s == 202 and b["actions"][0]["action"] == "notify"
    # a listener change is refused with a clear message
    d.update_config({"rules": cfg["rules"], "listen": {"webhook": "127.0.0.1:1"}})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "listen.webhook" in (d.get_status()["config"]["last_reload_error"] or ""))


def test_status_endpoints_and_metrics(remedyd_factory, fake1p):
    d = remedyd_factory(config(), fake=fake1p, secrets={"splunk.hmac": SECRET})
    s, _, b = d.status_raw("/healthz")
    assert s == 200 and b.strip() == b"ok"
    s, _, b = d.status_raw("/readyz")
    assert s == 200
    st = d.get_status()
    for k in ("version", "uptime_seconds", "config", "token", "directory", "queue", "safety", "counters"):
        assert k in st, k
    for k in ("loaded_at", "sources", "rules", "last_reload_error"):
        assert k in st["config"]
    assert st["token"]["valid"] is True and 0 < st["token"]["expires_in_seconds"] <= 900
    wait_until(lambda: d.get_status()["directory"]["users"] == 50)
    assert d.get_status()["directory"]["synced_at"]
    for k in ("queued", "running", "held", "failed"):
        assert k in st["queue"]
    for k in ("dry_run", "suspensions_in_window", "max_suspensions"):
        assert k in st["safety"]
    # do things, then check the figures agree
    d.post("splunk", {"kind": "compromise", "user": "user4@example.com"}, sign=SECRET)
    d.post("splunk", {"kind": "compromise"}, sign="bad")
    wait_until(lambda: fake1p.user("user4@example.com")["state"] == "SUSPENDED")
    wait_until(lambda: d.metric("remedyd_time_to_contain_seconds_count") == 1)
    m = d.metrics_text()
    for name in ("remedyd_webhooks_total", "remedyd_rule_matches_total", "remedyd_actions_total",
                 "remedyd_api_requests_total", "remedyd_api_request_duration_seconds_bucket",
                 "remedyd_token_refreshes_total", "remedyd_queue_depth",
                 "remedyd_time_to_contain_seconds_bucket"):
        assert re.search(r"^%s[{ ]" % name, m, re.M), name
    assert d.metric("remedyd_webhooks_total", source="splunk", code="202") == 1
    assert d.metric("remedyd_webhooks_total", source="splunk", code="401") == 1
    assert d.metric("remedyd_rule_matches_total", rule="r1") == 1
    assert d.metric("remedyd_token_refreshes_total", result="success") >= 1
    assert d.metric("remedyd_api_requests_total", operation="suspend", code="200") == 1
    assert d.metric("remedyd_queue_depth", state="queued") == 0
    # read-only: anything but GET is refused
    s, h, _ = d.status_raw("/status", method="POST")
    assert s == 405
    assert d.status_raw("/nope")[0] == 404
    # remedyctl status renders it
    r = d.ctl("status")
    assert r.returncode == 0 and "queue" in r.stdout, r.stderr
    assert d.ctl_json("status")["config"]["rules"] == 1
    harness.assert_no_secrets([d.log_text(), m, json.dumps(st)], [SECRET, fake1p.client_secret])


def test_readyz_fails_when_token_fails(remedyd_factory, fake1p_factory):
    fake = fake1p_factory(users=5, client_secret="the-real-secret")
    d = remedyd_factory(config(), fake=fake, secrets={"splunk.hmac": SECRET}, wait_ready=False)
    d.write_secret("client_secret", "a-wrong-secret")
    d.restart(wait_ready=False)
    wait_until(lambda: d.status_raw("/readyz")[0] == 503, message="/readyz 503 with bad credentials")
    s, _, b = d.status_raw("/readyz")
    assert json.loads(b)["message"]
    assert d.get_status()["token"]["valid"] is False


def test_control_socket_mode_and_stale_socket(remedyd_factory, fake1p):
    d = remedyd_factory(config(), fake=fake1p, secrets={"splunk.hmac": SECRET})
    assert oct(os.stat(d.control_socket).st_mode & 0o777) == "0o660"
    # a second daemon on the same control socket refuses to start
    d.kill9()
    # the stale socket left by the crash is replaced on start
    d.start()
    assert d.ctl_json("status")["version"]


def test_units_verify_and_security(tmp_path):
    unit = os.path.join(BUILD, "systemd", "remedyd.service")
    if not shutil.which("systemd-analyze") or not os.path.exists(unit):
        pytest.skip("systemd-analyze or the built unit is missing")
    text = open(unit).read()
    # verify needs the binaries where the unit says: point it at the build
    text = re.sub(r"(ExecStart(?:Pre)?=)\S+/remedyd", r"\1" + harness.REMEDYD_BIN, text)
    svc = tmp_path / "remedyd.service"
    svc.write_text(text)
    sock = tmp_path / "remedyd.socket"
    shutil.copy(os.path.join(SRC, "systemd", "remedyd.socket"), sock)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(svc), str(sock)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(svc)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for remedyd.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unconfigured_default_refused():
    """The packaged /etc/remedyd/remedyd.yaml passes --check-config, and the
    daemon refuses it with exit 1 (which the unit does not restart on) and
    one clear line, before it listens on anything."""
    default = os.path.join(SRC, "config", "default.yaml")
    r = subprocess.run([harness.REMEDYD_BIN, "--check-config", "-c", default],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stdout + r.stderr
    assert "refuses to start" in r.stderr
    r = subprocess.run([harness.REMEDYD_BIN, "-c", default], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not configured yet" in r.stderr and "listener" not in r.stderr
