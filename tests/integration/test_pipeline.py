# SPDX-License-Identifier: MIT
"""The pipeline end to end with the real remedyd and the fake 1Password API:
webhook -> rules -> guardrails -> durable actions -> 1Password calls."""

import json
import os
import signal
import time

import pytest

import harness
from harness import hmac_sign, hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

SECRET = "pipeline-hmac-secret-0123"


def splunk_rule(**over):
    r = {
        "name": "splunk-impossible-travel",
        "source": "splunk",
        "when": {"all": [
            {"field": "result.signature", "equals": "Impossible travel"},
            {"field": "result.severity", "in": ["high", "critical"], "ignore_case": True},
        ]},
        "action": "suspend",
        "user": "${result.user}",
        "reason": "Splunk ${search_name}: ${result.signature}",
    }
    r.update(over)
    return r


def splunk_alert(user, sid="sid-1", severity="high", signature="Impossible travel"):
    return {"sid": sid, "search_name": "Impossible travel detected",
            "result": {"user": user, "signature": signature, "severity": severity}}


def base_config(rules=None, sources=None, **extra):
    cfg = {"sources": sources or [hmac_source("splunk")],
           "rules": rules if rules is not None else [splunk_rule()]}
    cfg.update(extra)
    return cfg


def start(remedyd_factory, fake, cfg=None, **kw):
    secrets = kw.pop("secrets", {})
    secrets.setdefault("splunk.hmac", SECRET)
    return remedyd_factory(cfg or base_config(), fake=fake, secrets=secrets, **kw)


def suspended(fake, email):
    u = fake.user(email)
    return u is not None and u["state"] == "SUSPENDED"


def actions_by_id(d):
    return {a["id"]: a for a in d.ctl_json("actions")}


def wait_action(d, action_id, status, timeout=15):
    def check():
        a = actions_by_id(d).get(action_id)
        return a if a and a["status"] == status else None
    return wait_until(check, timeout=timeout, message="action %s to be %s" % (action_id, status))


# --------------------------------------------------------------- the happy path

def test_alert_suspends_user(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    s, _, body = d.post("splunk", splunk_alert("User7@Example.com "), sign=SECRET)
    assert s == 202, body
    assert body["duplicate"] is False and body["event_id"]
    [a] = body["actions"]
    assert a["rule"] == "splunk-impossible-travel" and a["action"] == "suspend"
    assert a["status"] == "queued" and a["user"] == "User7@Example.com "
    wait_until(lambda: suspended(fake1p, "user7@example.com"), message="user7 suspended")
    target = fake1p.user("user7@example.com")["id"]
    calls = fake1p.requests(op="suspend")
    assert [c["path"] for c in calls] == ["/v1beta1/accounts/%s/users/%s:suspend" % (fake1p.account_id, target)]
    assert calls[0]["headers"]["authorization"].startswith("Bearer ")
    assert calls[0]["headers"]["user-agent"].startswith("remedyd/")
    wait_action(d, a["id"], "done")
    # time-to-contain was measured
    wait_until(lambda: d.metric("remedyd_time_to_contain_seconds_count") == 1)
    assert d.metric("remedyd_webhooks_total", source="splunk", code="202") == 1
    assert d.metric("remedyd_webhook_duration_seconds_count", source="splunk") == 1
    assert 0 < d.metric("remedyd_webhook_duration_seconds_sum", source="splunk") < 10
    assert d.metric("remedyd_rule_matches_total", rule="splunk-impossible-travel") == 1
    harness.assert_no_secrets([d.log_text(), json.dumps(d.get_status()), d.metrics_text()],
                              [SECRET, fake1p.client_secret])


def test_no_rule_matches_still_accepted(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    s, _, body = d.post("splunk", splunk_alert("user7@example.com", severity="low"), sign=SECRET)
    assert s == 202 and body["actions"] == []
    assert fake1p.requests(op="suspend") == []


def test_user_given_as_id(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    uid = fake1p.user("user9@example.com")["id"]
    s, _, body = d.post("splunk", splunk_alert(uid), sign=SECRET)
    assert s == 202 and body["actions"][0]["status"] == "queued"
    wait_until(lambda: suspended(fake1p, uid))


# --------------------------------------------------------------- status codes

def test_status_codes(remedyd_factory, fake1p):
    cfg = base_config()
    cfg["listen"] = {"max_body_bytes": 2048}
    cfg["sources"][0]["rate_limit"] = "3/m"
    cfg["sources"].append(hmac_source("other"))
    d = start(remedyd_factory, fake1p, cfg, secrets={"other.hmac": "other-secret-xyz"})
    alert = splunk_alert("user1@example.com", severity="low")

    s, _, b = d.post("splunk", b"{not json", sign=SECRET)
    assert s == 400 and b["error"] and b["message"]
    s, _, b = d.post("splunk", b"[1,2]", sign=SECRET)
    assert s == 400
    s, _, b = d.post("splunk", alert, sign="wrong-secret")
    assert s == 401 and set(b) == {"error", "message"}
    s, _, b = d.post("splunk", alert)
    assert s == 401
    s, _, b = d.post("nosuch", alert, sign=SECRET)
    assert s == 404
    s, h, b = d.post("splunk", alert, sign=SECRET, method="PUT")
    assert s == 405 and "POST" in h["allow"]
    s, h, _ = d.webhook_raw("GET", "/hooks/splunk")
    assert s == 405 and "POST" in h["allow"]
    s, _, b = d.post("splunk", {"pad": "x" * 4096}, sign=SECRET)
    assert s == 413
    s, _, b = d.post("splunk", json.dumps(alert), sign=SECRET, content_type="text/plain")
    assert s == 415
    s, _, b = d.post("splunk", json.dumps(alert), sign=SECRET, content_type=None)
    assert s == 202  # a missing content type is accepted
    # rate limit: 3 a minute; two more already counted above at most
    codes = [d.post("splunk", splunk_alert("user1@example.com", sid="rl-%d" % i, severity="low"),
                    sign=SECRET)[0] for i in range(4)]
    assert 429 in codes
    s, h, b = d.post("splunk", alert, sign=SECRET)
    assert s == 429 and int(h["retry-after"]) >= 1
    # another source is not limited by splunk's bucket
    assert d.post("other", alert, sign="other-secret-xyz")[0] == 202
    for code in ("400", "401", "404", "405", "413", "415", "429", "202"):
        assert any(l.startswith("remedyd_webhooks_total{") and 'code="%s"' % code in l
                   for l in d.metrics_text().splitlines()), code


# --------------------------------------------------------------- redelivery

def test_redelivery_same_body_is_duplicate(remedyd_factory, fake1p):
    cfg = base_config()
    d = start(remedyd_factory, fake1p, cfg)
    alert = splunk_alert("user3@example.com")
    s1, _, b1 = d.post("splunk", alert, sign=SECRET)
    s2, _, b2 = d.post("splunk", alert, sign=SECRET)
    assert s1 == 202 and s2 == 200
    assert b2["duplicate"] is True and b2["event_id"] == b1["event_id"]
    assert [a["id"] for a in b2["actions"]] == [a["id"] for a in b1["actions"]]
    wait_until(lambda: suspended(fake1p, "user3@example.com"))
    assert len(fake1p.requests(op="suspend")) == 1


def test_redelivery_by_event_id_template(remedyd_factory, fake1p):
    cfg = base_config()
    cfg["sources"][0]["event_id"] = "${sid}"
    d = start(remedyd_factory, fake1p, cfg)
    a1 = splunk_alert("user4@example.com", sid="S-42")
    a2 = dict(a1, extra="resent by a different search head")
    assert d.post("splunk", a1, sign=SECRET)[0] == 202
    s, _, b = d.post("splunk", a2, sign=SECRET)
    assert s == 200 and b["duplicate"] is True


# --------------------------------------------------------------- guardrails

def test_protected_user_is_never_suspended(remedyd_factory, fake1p):
    cfg = base_config(safety={"protected_users": ["user5@example.com", "*@secops.example.com"]})
    fake1p.add_users([{"email": "alice@secops.example.com"}])
    d = start(remedyd_factory, fake1p, cfg)
    for who in ("user5@example.com", "Alice@SecOps.example.com"):
        s, _, b = d.post("splunk", splunk_alert(who, sid=who), sign=SECRET)
        assert s == 202 and b["actions"][0]["status"] == "protected", b
    d.post("splunk", splunk_alert("user6@example.com", sid="x"), sign=SECRET)
    wait_until(lambda: suspended(fake1p, "user6@example.com"))
    assert [c["path"].rsplit("/", 1)[1] for c in fake1p.requests(op="suspend")] == \
        [fake1p.user("user6@example.com")["id"] + ":suspend"]


def test_cap_holds_then_release(remedyd_factory, fake1p):
    cfg = base_config(safety={"max_suspensions": {"count": 2, "window": "1h"}})
    d = start(remedyd_factory, fake1p, cfg)
    statuses = []
    for i in range(1, 5):
        s, _, b = d.post("splunk", splunk_alert("user%d@example.com" % i, sid=str(i)), sign=SECRET)
        assert s == 202
        statuses.append(b["actions"][0])
    assert [a["status"] for a in statuses] == ["queued", "queued", "held", "held"]
    wait_until(lambda: len(fake1p.requests(op="suspend")) == 2)
    assert d.get_status()["queue"]["held"] == 2
    held = statuses[2]["id"]
    assert d.ctl("actions", "--state", "held").stdout.count("held") >= 2
    r = d.ctl("release", held)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: suspended(fake1p, "user3@example.com"))
    assert not suspended(fake1p, "user4@example.com")
    r = d.ctl("cancel", statuses[3]["id"])
    assert r.returncode == 0, r.stderr
    assert actions_by_id(d)[statuses[3]["id"]]["status"] == "cancelled"
    assert d.ctl("release", statuses[3]["id"]).returncode == 1  # not held any more
    # the window survives a restart
    d.restart()
    s, _, b = d.post("splunk", splunk_alert("user8@example.com", sid="8"), sign=SECRET)
    assert b["actions"][0]["status"] == "held"


def test_cooldown(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p, base_config(rules=[splunk_rule(cooldown="30m")]))
    s, _, b = d.post("splunk", splunk_alert("user2@example.com", sid="a"), sign=SECRET)
    assert b["actions"][0]["status"] == "queued"
    s, _, b = d.post("splunk", splunk_alert("user2@example.com", sid="b"), sign=SECRET)
    assert b["actions"][0]["status"] == "cooldown"
    d.restart()  # persisted
    s, _, b = d.post("splunk", splunk_alert("USER2@example.com", sid="c"), sign=SECRET)
    assert b["actions"][0]["status"] == "cooldown"


def test_dry_run_rule_and_global(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p, base_config(rules=[splunk_rule(dry_run=True)]))
    s, _, b = d.post("splunk", splunk_alert("user2@example.com"), sign=SECRET)
    assert b["actions"][0]["status"] == "dry_run"
    d.stop()
    d2 = start(remedyd_factory, fake1p, base_config(), args=["--dry-run"])
    s, _, b = d2.post("splunk", splunk_alert("user3@example.com"), sign=SECRET)
    assert b["actions"][0]["status"] == "dry_run"
    assert d2.get_status()["safety"]["dry_run"] is True
    assert fake1p.requests(op="suspend") == []


def test_unknown_ambiguous_unresolved(remedyd_factory, fake1p):
    fake1p.add_users([{"email": "twin@example.com"}, {"email": "Twin@Example.com"}])
    d = start(remedyd_factory, fake1p)
    wait_until(lambda: d.get_status()["directory"]["users"] >= 52)
    s, _, b = d.post("splunk", splunk_alert("nobody@example.com", sid="1"), sign=SECRET)
    assert b["actions"][0]["status"] == "unknown_user", b
    s, _, b = d.post("splunk", splunk_alert("twin@example.com", sid="2"), sign=SECRET)
    assert b["actions"][0]["status"] == "ambiguous_user"
    alert = {"sid": "3", "search_name": "x", "result": {"signature": "Impossible travel", "severity": "high"}}
    s, _, b = d.post("splunk", alert, sign=SECRET)
    assert b["actions"][0]["status"] == "unresolved" and b["actions"][0]["user"] is None or \
        b["actions"][0]["status"] == "unresolved"
    assert fake1p.requests(op="suspend") == []


def test_timed_suspension_reactivates(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p, base_config(rules=[splunk_rule(**{"for": "1s"})]))
    d.post("splunk", splunk_alert("user11@example.com"), sign=SECRET)
    wait_until(lambda: suspended(fake1p, "user11@example.com"))
    wait_until(lambda: fake1p.user("user11@example.com")["state"] == "ACTIVE", timeout=15,
               message="timed reactivation")
    assert len(fake1p.requests(op="reactivate")) == 1


# --------------------------------------------------------------- failures

def test_permanent_api_error_is_failed_with_message(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    s, _, b = d.post("splunk", splunk_alert("user0@example.com"), sign=SECRET)  # the owner
    aid = b["actions"][0]["id"]
    wait_action(d, aid, "failed")
    hist = d.ctl("history", "--user", "user0@example.com")
    assert hist.returncode == 0 and "no_owner_remain" in hist.stdout, hist.stdout
    assert d.get_status()["queue"]["failed"] == 1


def test_transient_errors_retry_until_done(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    fake1p.faults([{"op": "suspend", "status": 500, "times": 2},
                   {"op": "suspend", "drop": True, "times": 1},
                   {"op": "suspend", "status": 429, "headers": {"Retry-After": "1"}, "times": 1}])
    s, _, b = d.post("splunk", splunk_alert("user12@example.com"), sign=SECRET)
    wait_action(d, b["actions"][0]["id"], "done", timeout=60)
    assert suspended(fake1p, "user12@example.com")
    assert len(fake1p.requests(op="suspend")) == 5


def test_kill9_with_api_down_then_restart(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    fake1p.fault(op="suspend", status=503, times=-1)
    ids = []
    for i in range(20, 30):
        s, _, b = d.post("splunk", splunk_alert("user%d@example.com" % i, sid=str(i)), sign=SECRET)
        assert s == 202
        ids.append(b["actions"][0]["id"])
    wait_until(lambda: len(fake1p.requests(op="suspend")) >= 3)
    d.kill9()
    fake1p.clear_faults()
    d.start()
    for aid in ids:
        wait_action(d, aid, "done", timeout=60)
    acts = d.ctl_json("actions")
    assert sorted(a["id"] for a in acts if a["action"] == "suspend") == sorted(ids)
    for i in range(20, 30):
        assert suspended(fake1p, "user%d@example.com" % i)


# --------------------------------------------------------------- remedyctl

def test_manual_suspend_and_reactivate(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p, base_config(safety={"protected_users": ["user1@example.com"]}))
    r = d.ctl("suspend", "user13@example.com", "--reason", "phished, ticket SEC-1")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: suspended(fake1p, "user13@example.com"))
    r = d.ctl("reactivate", "user13@example.com", "--reason", "reset done")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: fake1p.user("user13@example.com")["state"] == "ACTIVE")
    r = d.ctl("suspend", "user1@example.com", "--reason", "nope")
    assert r.returncode == 0 and "protected" in r.stdout
    hist = d.ctl_json("history", "--user", "user13@example.com")
    assert any("SEC-1" in (e.get("detail") or "") for e in hist)
    assert d.ctl("suspend", "user13@example.com").returncode == 2  # no --reason


def test_explain(remedyd_factory, fake1p, tmp_path):
    d = start(remedyd_factory, fake1p, start=False)
    hit = tmp_path / "hit.json"
    hit.write_text(json.dumps(splunk_alert("user1@example.com")))
    miss = tmp_path / "miss.json"
    miss.write_text(json.dumps(splunk_alert("user1@example.com", severity="low")))
    r = d.ctl("explain", "--source", "splunk", str(hit))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "user1@example.com" in r.stdout
    r = d.ctl("explain", "--source", "splunk", str(miss))
    assert r.returncode == 1 and "severity" in r.stdout
    assert d.ctl("explain", "--source", "nosuch", str(hit)).returncode == 2


def test_oversized_for_each_is_refused_not_retried(remedyd_factory, fake1p):
    rule = {"name": "many", "source": "splunk", "for_each": "users", "action": "suspend",
            "user": "${email}"}
    d = start(remedyd_factory, fake1p, base_config(rules=[rule]))
    s, _, b = d.post("splunk", {"users": [{"email": "user1@example.com"}] * 1001}, sign=SECRET)
    assert s == 422 and b["error"] == "too_many_actions"
    s, _, b = d.post("splunk", {"users": [{"email": "user1@example.com"}] * 3}, sign=SECRET)
    assert s == 202 and len(b["actions"]) == 3


def test_sigterm_lets_an_inflight_call_finish(remedyd_factory, fake1p):
    d = start(remedyd_factory, fake1p)
    fake1p.fault(op="suspend", delay=1.0)
    s, _, b = d.post("splunk", splunk_alert("user14@example.com"), sign=SECRET)
    aid = b["actions"][0]["id"]
    wait_action(d, aid, "running")
    assert d.stop() == 0
    assert suspended(fake1p, "user14@example.com")
    revokes = fake1p.requests(op="revoke")
    assert len(revokes) == 1
    # the outcome was recorded before exit: no second call after a restart
    d.start()
    assert actions_by_id(d)[aid]["status"] == "done"
    assert len(fake1p.requests(op="suspend")) == 1
