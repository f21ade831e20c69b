# SPDX-License-Identifier: MIT
"""Notifications (interface.md section 9) with the real remedyd: the slack
and webhook sinks against tests/fakehook/fakehook.py, the email sink against
a real SMTP server (python3-aiosmtpd, tests/fakehook/smtpd.py) with STARTTLS
or implicit TLS and AUTH. Each sink: success, 5xx (or 451) then success, a
receiver down for a while, kill -9 with notifications pending; hostile alert
fields; and a hanging sink never delaying a suspension."""

import email
import email.policy
import glob
import json
import os
import subprocess
import time

import pytest

import harness
from harness import PYTHON, SOURCE_ROOT, hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

SECRET = "notify-source-hmac-secret-1"
HOOK_SECRET = "notify-webhook-signing-secret-2"
SMTP_PASSWORD = "smtp-password-for-remedyd-3"
FAKEHOOK = os.path.join(SOURCE_ROOT, "tests", "fakehook", "fakehook.py")
SMTPD = os.path.join(SOURCE_ROOT, "tests", "fakehook", "smtpd.py")
SCALE = harness.TIMEOUT_SCALE


def report(name, **figures):
    print("\nNOTIFY " + json.dumps(dict(test=name, **figures), sort_keys=True))


class _Proc:
    """A helper server started on 127.0.0.1 and a port it picks (or the same
    port again after stop(): a receiver down for a while)."""

    def __init__(self, workdir, name):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.proc = None
        self.port = 0

    def _spawn(self, args):
        port_file = os.path.join(self.dir, self.name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        log = open(os.path.join(self.dir, self.name + ".log"), "ab")
        self.proc = subprocess.Popen([PYTHON] + args + ["--port", str(self.port), "--port-file", port_file],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (self.name, self.log_text()))
            return os.path.exists(port_file)
        wait_until(ready, timeout=20, message=self.name + " to listen")
        with open(port_file) as f:
            self.port = int(f.read())

    def log_text(self):
        with open(os.path.join(self.dir, self.name + ".log"), errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FakeHook(_Proc):
    def __init__(self, workdir, hmac_secret=None):
        super().__init__(workdir, "fakehook")
        self.hmac_secret = hmac_secret
        self.start()

    def start(self):
        args = [FAKEHOOK] + (["--hmac-secret", self.hmac_secret] if self.hmac_secret else [])
        self._spawn(args)
        self.url = "http://127.0.0.1:%d" % self.port

    def _control(self, method, path, obj=None):
        s, _, b = harness.http_request(self.url + path, method,
                                       json.dumps(obj) if obj is not None else None,
                                       {"Content-Type": "application/json"})
        assert s == 200, b
        return json.loads(b)

    def requests(self):
        return self._control("GET", "/_fake/requests")

    def faults(self, lst):
        return self._control("POST", "/_fake/faults", lst)


class Smtpd(_Proc):
    def __init__(self, workdir, tls="starttls", cert=None, user=None, password=None, reject_first=0):
        super().__init__(workdir, "smtpd")
        self.outdir = os.path.join(self.dir, "mail")
        os.makedirs(self.outdir, exist_ok=True)
        self.args = [SMTPD, "--outdir", self.outdir, "--tls", tls]
        if cert:
            self.args += ["--cert", cert[0], "--key", cert[1]]
        if user:
            self.args += ["--user", user, "--password", password]
        if reject_first:
            self.args += ["--reject-first", str(reject_first)]
        self.start()

    def start(self):
        self._spawn(self.args)

    def messages(self):
        out = []
        for p in sorted(glob.glob(os.path.join(self.outdir, "*.json"))):
            with open(p) as f:
                out.append(json.load(f))
        return out


@pytest.fixture
def servers(tmp_path):
    made = []

    def make(kind, **kw):
        s = kind(tmp_path / ("%s-%d" % (kind.__name__.lower(), len(made))), **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), used as the CA too."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return crt, key


def rule(**over):
    r = {"name": "siem-contain", "source": "siem", "action": "suspend", "user": "${user}",
         "reason": "${why}"}
    r.update(over)
    return r


def start(remedyd_factory, fake, notify, secrets=None, **extra):
    cfg = {"sources": [hmac_source("siem", event_id="${alert_id}")], "rules": [rule()], "notify": notify}
    cfg.update(extra)
    s = {"siem.hmac": SECRET, "hook.hmac": HOOK_SECRET, "smtp.password": SMTP_PASSWORD}
    s.update(secrets or {})
    return remedyd_factory(cfg, fake=fake, secrets=s)


def slack_sink(hook, **over):
    d = {"name": "chat", "type": "slack", "url": hook.url + "/services/T0/B0/x", "timeout": "2s"}
    d.update(over)
    return d


def webhook_sink(hook, **over):
    d = {"name": "siem-feedback", "type": "webhook", "url": (hook.url if hook else "") + "/remedyd", "timeout": "2s",
         "hmac_sha256": {"header": "X-Remedyd-Signature", "secret_file": "secrets/hook.hmac"}}
    d.update(over)
    return d


def mail_sink(smtp, cert=None, scheme="smtp", **over):
    d = {"name": "mail", "type": "email", "smtp_url": "%s://127.0.0.1:%d" % (scheme, smtp.port),
         "from": "remedyd@example.com", "to": ["soc@example.com", "oncall@example.com"], "timeout": "5s",
         "username": "remedyd", "password_file": "secrets/smtp.password"}
    if cert:
        d["ca_file"] = cert[0]
    d.update(over)
    return d


def alert(d, i, user, **extra):
    body = {"alert_id": "A-%04d" % i, "user": user, "why": "Impossible travel"}
    body.update(extra)
    s, _, b = d.post("siem", body, sign=SECRET)
    assert s == 202, b
    return b["actions"][0]


def suspended(fake, email_):
    u = fake.user(email_)
    return u is not None and u["state"] == "SUSPENDED"


def notifications(d):
    return d.ctl_json("notifications")


def delivered(d, n):
    lst = notifications(d)
    return len(lst) == n and all(x["state"] == "delivered" for x in lst) and lst


# --------------------------------------------------------------- success

def test_slack_and_webhook_delivered_once(remedyd_factory, fake1p, servers):
    chat, feed = servers(FakeHook), servers(FakeHook, hmac_secret=HOOK_SECRET)
    # the Slack URL is a credential: from a secret file, and never in the log
    # (the fixture fails the test if a secret file's line shows up there)
    slack = slack_sink(chat, url_file="secrets/slack.url")
    del slack["url"]
    d = start(remedyd_factory, fake1p, [slack, webhook_sink(feed)],
              secrets={"slack.url": chat.url + "/services/T0/B0/slack-secret-token-4711"})
    a = alert(d, 1, "user3@example.com", why="Impossible travel")
    wait_until(lambda: delivered(d, 2), timeout=20 * SCALE, message="both notifications delivered")

    [c] = chat.requests()
    assert c["path"] == "/services/T0/B0/slack-secret-token-4711"
    text = c["json"]["text"]
    assert "Suspended user3@example.com" in text and "siem-contain" in text and "Impossible travel" in text
    assert c["json"]["blocks"][0]["type"] == "section"
    [w] = feed.requests()
    assert w["hmac_ok"] is True
    body = w["json"]
    assert w["headers"]["x-remedyd-delivery"] == body["delivery"]
    assert body["action"]["id"] == a["id"] and body["action"]["rule"] == "siem-contain"
    assert body["action"]["action"] == "suspend" and body["action"]["user"] == "user3@example.com"
    assert body["action"]["status"] == "done" and body["action"]["outcome"] == "done"
    assert set(body["action"]) >= {"api_code", "api_message", "instance"}
    assert body["event"]["source"] == "siem" and body["event"]["id"] and body["event"]["received_at"]
    assert c["headers"]["x-remedyd-delivery"] != w["headers"]["x-remedyd-delivery"]

    st = d.get_status()["notify"]
    assert st["pending"] == 0 and st["failed"] == 0
    m = d.metrics_text()
    assert harness.metric_value(m, "remedyd_notifications_total", sink="chat", result="delivered") == 1
    assert harness.metric_value(m, "remedyd_notifications_total", sink="siem-feedback", result="delivered") == 1
    out = d.ctl("notifications")
    assert out.returncode == 0 and "delivered" in out.stdout and "siem-feedback" in out.stdout


def test_held_names_the_release_command(remedyd_factory, fake1p, servers):
    chat = servers(FakeHook)
    d = start(remedyd_factory, fake1p, [slack_sink(chat, on=["held"])],
              safety={"max_suspensions": {"count": 1, "window": "1h"}})
    alert(d, 1, "user1@example.com")
    held = alert(d, 2, "user2@example.com")
    assert held["status"] == "held"
    wait_until(lambda: chat.requests(), timeout=15 * SCALE)
    text = chat.requests()[0]["json"]["text"]
    line = "remedyctl release %s" % held["id"]
    assert line in text
    r = d.ctl(*line.split()[1:])
    assert r.returncode == 0, r.stderr
    wait_until(lambda: suspended(fake1p, "user2@example.com"), timeout=15 * SCALE)


@harness.sqlite_only("the receiving remedyd needs a store of its own (on PostgreSQL the test's daemons share one)")
def test_a_remedyd_source_accepts_the_webhook(remedyd_factory, fake1p):
    """The signature is the one our own inbound hmac_sha256 checks."""
    receiver = remedyd_factory({"sources": [hmac_source("feedback", secret_file="secrets/feedback.hmac")],
                                "rules": []}, fake=fake1p, secrets={"feedback.hmac": HOOK_SECRET})
    d = start(remedyd_factory, fake1p, [webhook_sink(None, url=receiver.webhook_url + "/hooks/feedback")])
    alert(d, 1, "user4@example.com")
    wait_until(lambda: delivered(d, 1), timeout=20 * SCALE)
    assert receiver.metric("remedyd_webhooks_total", source="feedback", code="202") == 1


# --------------------------------------------------------------- failures

@pytest.mark.parametrize("sink", ["slack", "webhook"])
def test_5xx_then_success_one_delivery_id(remedyd_factory, fake1p, servers, sink):
    hook = servers(FakeHook, hmac_secret=HOOK_SECRET)
    hook.faults([{"status": 503, "times": 2}])
    s = slack_sink(hook) if sink == "slack" else webhook_sink(hook)
    d = start(remedyd_factory, fake1p, [s])
    alert(d, 1, "user5@example.com")
    wait_until(lambda: delivered(d, 1), timeout=30 * SCALE, message="delivered after two 503s")
    reqs = hook.requests()
    assert [r["status"] for r in reqs] == [503, 503, 200]
    assert len({r["headers"]["x-remedyd-delivery"] for r in reqs}) == 1
    n = notifications(d)[0]
    assert n["attempts"] == 3
    m = d.metrics_text()
    assert harness.metric_value(m, "remedyd_notifications_total", result="retry") == 2


def sink_of(kind, hook):
    return slack_sink(hook) if kind == "slack" else webhook_sink(hook)


def text_of(kind, req):
    return req["json"]["text"] if kind == "slack" else req["json"]["action"]["user"]


@pytest.mark.parametrize("sink", ["slack", "webhook"])
def test_receiver_down_for_a_while(remedyd_factory, fake1p, servers, sink):
    hook = servers(FakeHook, hmac_secret=HOOK_SECRET)
    hook.stop()
    d = start(remedyd_factory, fake1p, [sink_of(sink, hook)])
    alert(d, 1, "user6@example.com")
    wait_until(lambda: suspended(fake1p, "user6@example.com"), timeout=15 * SCALE)
    wait_until(lambda: notifications(d) and notifications(d)[0]["attempts"] >= 2, timeout=20 * SCALE,
               message="two failed attempts while the receiver is down")
    assert notifications(d)[0]["state"] == "pending" and notifications(d)[0]["last_error"]
    assert d.get_status()["notify"]["pending"] == 1
    hook.start()
    wait_until(lambda: delivered(d, 1), timeout=30 * SCALE, message="delivered once the receiver is back")
    assert len(hook.requests()) == 1


@pytest.mark.parametrize("sink", ["slack", "webhook"])
def test_kill9_with_pending_notifications(remedyd_factory, fake1p, servers, sink):
    hook = servers(FakeHook, hmac_secret=HOOK_SECRET)
    hook.stop()
    d = start(remedyd_factory, fake1p, [sink_of(sink, hook)])
    users = ["user%d@example.com" % i for i in range(10, 16)]
    for i, u in enumerate(users):
        alert(d, i, u)
    wait_until(lambda: all(suspended(fake1p, u) for u in users), timeout=20 * SCALE)
    wait_until(lambda: len(notifications(d)) == len(users), timeout=10 * SCALE)
    d.kill9()
    hook.start()
    d.start()
    wait_until(lambda: delivered(d, len(users)), timeout=60 * SCALE, message="every notification delivered")
    reqs = hook.requests()
    ids = [r["headers"]["x-remedyd-delivery"] for r in reqs]
    assert len(set(ids)) == len(users), "one delivery id per notification"
    got = sorted(u for u in users if any(u in text_of(sink, r) for r in reqs))
    assert got == sorted(users), "none lost"
    if sink == "webhook":
        assert all(r["hmac_ok"] for r in reqs)
    report("kill9_pending", sink=sink, notifications=len(users), requests=len(reqs))


def test_kill9_mid_delivery_repeats_with_the_same_id(remedyd_factory, fake1p, servers):
    """Killed while the receiver holds the request: the row's lease (the
    sink's timeout + 30 s) runs out and the restarted daemon delivers it
    again, with the same delivery id: a repeat, never a loss."""
    hook = servers(FakeHook)
    hook.faults([{"hang": 0.8, "times": 1}])
    d = start(remedyd_factory, fake1p, [slack_sink(hook, timeout="1s")])
    alert(d, 1, "user20@example.com")
    wait_until(lambda: hook.requests(), timeout=15 * SCALE, message="the delivery to start")
    d.kill9()
    t0 = time.monotonic()
    d.start()
    wait_until(lambda: delivered(d, 1), timeout=60 * SCALE, interval=0.2, message="the repeat after the lease")
    reqs = hook.requests()
    assert len(reqs) == 2 and len({r["headers"]["x-remedyd-delivery"] for r in reqs}) == 1
    report("kill9_mid_delivery", requests=len(reqs), redelivered_after_s=round(time.monotonic() - t0, 1))


# --------------------------------------------------------------- email

def parse_mail(m):
    return email.message_from_string(m["data"], policy=email.policy.default)


def test_email_starttls_auth(remedyd_factory, fake1p, servers, cert):
    smtp = servers(Smtpd, tls="starttls", cert=cert, user="remedyd", password=SMTP_PASSWORD)
    d = start(remedyd_factory, fake1p, [mail_sink(smtp, cert)])
    a = alert(d, 1, "user7@example.com", why="Impossible travel: Z\u00fcrich then Sydney")
    wait_until(lambda: smtp.messages(), timeout=20 * SCALE, message="a mail")
    wait_until(lambda: delivered(d, 1), timeout=10 * SCALE)
    [m] = smtp.messages()
    assert m["tls"] is True and m["auth_user"] == "remedyd"
    assert m["mail_from"] == "remedyd@example.com"
    assert m["rcpt_tos"] == ["soc@example.com", "oncall@example.com"]
    msg = parse_mail(m)
    delivery = notifications(d)[0]["delivery"]
    assert msg["X-Remedyd-Delivery"] == delivery
    assert msg["Message-ID"] == "<%s@example.com>" % delivery
    assert "Suspended user7@example.com" in msg["Subject"]
    body = msg.get_content()
    assert "Rule: siem-contain" in body and "Z\u00fcrich then Sydney" in body and a["id"] in body


def test_email_implicit_tls_451_then_accepted(remedyd_factory, fake1p, servers, cert):
    smtp = servers(Smtpd, tls="implicit", cert=cert, user="remedyd", password=SMTP_PASSWORD, reject_first=1)
    d = start(remedyd_factory, fake1p, [mail_sink(smtp, cert, scheme="smtps")])
    alert(d, 1, "user8@example.com")
    wait_until(lambda: delivered(d, 1), timeout=30 * SCALE, message="accepted after a 451")
    assert len(smtp.messages()) == 1
    assert notifications(d)[0]["attempts"] == 2


def test_email_server_down_then_kill9(remedyd_factory, fake1p, servers, cert):
    smtp = servers(Smtpd, tls="starttls", cert=cert, user="remedyd", password=SMTP_PASSWORD)
    smtp.stop()
    d = start(remedyd_factory, fake1p, [mail_sink(smtp, cert)])
    alert(d, 1, "user9@example.com")
    wait_until(lambda: notifications(d) and notifications(d)[0]["attempts"] >= 1, timeout=20 * SCALE)
    d.kill9()
    smtp.start()
    d.start()
    wait_until(lambda: delivered(d, 1), timeout=60 * SCALE)
    msgs = smtp.messages()
    assert len(msgs) >= 1 and len({parse_mail(m)["X-Remedyd-Delivery"] for m in msgs}) == 1


# --------------------------------------------------------------- hostile input

def test_hostile_fields_escaped_and_bounded(remedyd_factory, fake1p, servers, cert):
    chat, feed = servers(FakeHook), servers(FakeHook, hmac_secret=HOOK_SECRET)
    smtp = servers(Smtpd, tls="starttls", cert=cert, user="remedyd", password=SMTP_PASSWORD)
    on = ["unknown_user"]
    d = start(remedyd_factory, fake1p, [slack_sink(chat, on=on), webhook_sink(feed, on=on),
                                        mail_sink(smtp, cert, on=on)])
    evil_user = "x@evil.example\r\nBcc: attacker@evil.example\r\n\r\n<!channel> @here"
    # templates stop at LIMIT_TEMPLATE_OUTPUT_BYTES (4096): just under it, twice the field bound
    evil_why = ("<https://evil.example|click> [a](https://evil.example) @channel & \"q\"\n" * 200)[:4000]
    alert(d, 1, evil_user, why=evil_why)
    wait_until(lambda: delivered(d, 3), timeout=30 * SCALE, message="three notifications")

    text = chat.requests()[0]["json"]["text"]
    for bad in ("<https://", "<!channel>", "@channel", "@here", "](https"):
        assert bad not in text, bad
    assert len(chat.requests()[0]["body"].encode()) <= 64 * 1024
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in chat.requests()[0]["json"]["blocks"])

    w = feed.requests()[0]["json"]
    assert w["action"]["user"] == evil_user  # JSON carries the value itself, escaped by JSON
    reason = w["action"]["reason"]
    assert len(reason.encode()) <= 2048 and reason.endswith("\u2026")
    assert evil_why.startswith(reason[:-1])

    [m] = smtp.messages()
    msg = parse_mail(m)
    assert msg["Bcc"] is None and m["rcpt_tos"] == ["soc@example.com", "oncall@example.com"]
    head = m["data"].split("\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split("\r\n"))
    assert "\r\nBcc:" not in head


# --------------------------------------------------------------- containment

def test_hanging_sink_never_delays_containment(remedyd_factory, fake1p, servers):
    """Time-to-contain with a sink that hangs (every request held 30 s, the
    sink's timeout 2 s) against one with no sink, in the same run."""
    hook = servers(FakeHook)
    hook.faults([{"hang": 30, "times": -1}])
    hanging = start(remedyd_factory, fake1p, [slack_sink(hook, on=["done", "failed", "held", "queued"])])
    plain = remedyd_factory({"sources": [hmac_source("siem", event_id="${alert_id}")], "rules": [rule()]},
                            fake=fake1p, secrets={"siem.hmac": SECRET})
    figures = {}
    for name, d, base in (("hanging", hanging, 20), ("none", plain, 40)):
        users = ["user%d@example.com" % i for i in range(base, base + 8)]
        times = []
        for i, u in enumerate(users):
            t0 = time.monotonic()
            alert(d, base + i, u)
            wait_until(lambda: suspended(fake1p, u), timeout=15 * SCALE, interval=0.005)
            times.append(time.monotonic() - t0)
        figures[name] = times
    med = {k: sorted(v)[len(v) // 2] for k, v in figures.items()}
    report("time_to_contain", hanging_median_s=round(med["hanging"], 4), none_median_s=round(med["none"], 4),
           hanging_max_s=round(max(figures["hanging"]), 4), none_max_s=round(max(figures["none"]), 4))
    assert len(hook.requests()) >= 1, "the sink was tried"
    assert med["hanging"] < med["none"] + 0.25 * SCALE
    assert max(figures["hanging"]) < 1.5 * SCALE


def test_check_config_notify_problem(tmp_path, remedyd_factory, fake1p):
    d = remedyd_factory({"sources": [hmac_source("siem")], "rules": [rule()],
                         "notify": [{"name": "chat", "type": "slack", "url": "http://chat.example.com/x"}]},
                        fake=fake1p, secrets={"siem.hmac": SECRET}, start=False)
    r = subprocess.run([harness.REMEDYD_BIN, "--check-config", "-c", d.config_path], capture_output=True, text=True)
    assert r.returncode == 1
    assert "remedyd.yaml:" in r.stderr and "http:// is only allowed for a loopback host" in r.stderr


# --------------------------------------------------------------- shared store

@harness.requires_pg
def test_each_notification_delivered_by_one_instance(remedyd_cluster, fake1p, servers):
    """Two instances on one PostgreSQL store, one sink: every outcome is
    delivered once, by whichever instance claimed its row."""
    hook = servers(FakeHook)
    cfg = {"sources": [hmac_source("siem", event_id="${alert_id}")], "rules": [rule()],
           "notify": [slack_sink(hook)]}
    a, b = remedyd_cluster(2, cfg, secrets={"siem.hmac": SECRET})
    users = ["user%d@example.com" % i for i in range(20, 32)]
    for i, u in enumerate(users):
        alert(a if i % 2 else b, 100 + i, u)
    wait_until(lambda: all(suspended(fake1p, u) for u in users), timeout=30 * SCALE)
    wait_until(lambda: delivered(a, len(users)), timeout=30 * SCALE, message="every notification delivered")
    reqs = hook.requests()
    ids = [r["headers"]["x-remedyd-delivery"] for r in reqs]
    assert len(ids) == len(users) and len(set(ids)) == len(users), "each delivered once"
    by = {}
    for n in notifications(b):
        by[n["instance"]] = by.get(n["instance"], 0) + 1
    report("shared_store", requests=len(reqs), notifications=len(users), recorded_by=by)


def test_api_message_10k_reaches_receivers_bounded(remedyd_factory, fake1p, servers):
    """A 10 KiB hostile message from the API (a 403 the action fails on)."""
    chat, feed = servers(FakeHook), servers(FakeHook, hmac_secret=HOOK_SECRET)
    evil = ("<!here> <https://evil.example|x> @all ](http://e) \r\n" * 400)[:10240]
    fake1p.fault(op="suspend", status=403, body=json.dumps({"code": "forbidden_evil", "message": evil}))
    d = start(remedyd_factory, fake1p, [slack_sink(chat), webhook_sink(feed)])
    alert(d, 1, "user17@example.com")
    wait_until(lambda: delivered(d, 2), timeout=20 * SCALE)
    w = feed.requests()[0]["json"]
    assert w["action"]["outcome"] == "failed" and w["action"]["api_code"] == "forbidden_evil"
    assert len(w["action"]["api_message"].encode()) <= 2048
    text = chat.requests()[0]["json"]["text"]
    assert "Could not suspend user17@example.com" in text
    for bad in ("<!here>", "<https://", "@all", "](http"):
        assert bad not in text
    assert len(chat.requests()[0]["body"].encode()) <= 64 * 1024


def test_reload_adds_a_sink(remedyd_factory, fake1p, servers):
    hook = servers(FakeHook)
    d = start(remedyd_factory, fake1p, [])
    alert(d, 1, "user18@example.com")
    wait_until(lambda: suspended(fake1p, "user18@example.com"), timeout=15 * SCALE)
    assert notifications(d) == []
    d.reload({"notify": [slack_sink(hook)]})
    d.wait_log(r"configuration reloaded", timeout=10 * SCALE)
    alert(d, 2, "user19@example.com")
    wait_until(lambda: delivered(d, 1), timeout=20 * SCALE)
    assert "user19@example.com" in hook.requests()[0]["json"]["text"]
