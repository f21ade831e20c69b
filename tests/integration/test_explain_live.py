# SPDX-License-Identifier: MIT
"""remedyctl explain --live against the same delivery (issue 21): for every
status a delivery can get, the live explain first, then the delivery; the
statuses must be equal, the explain must record and call nothing, and the
offline explain must agree wherever it can decide."""

import json
import time

import harness
from harness import hmac_source, requires_remedyd, wait_until

import pytest

pytestmark = requires_remedyd

SECRET = "explain-live-hmac-secret-42"
REASON = "Splunk ${sid}: ${result.note}"


def config(protected_id):
    return {
        "sources": [hmac_source("splunk", event_id="${sid}")],
        "safety": {"protected_users": [protected_id, "*@secops.example.com"],
                   "max_suspensions": {"count": 3, "window": "1h"}},
        "rules": [
            {"name": "contain", "source": "splunk", "when": {"field": "kind", "equals": "contain"},
             "action": "suspend", "user": "${result.user}", "reason": REASON, "cooldown": "1h"},
            {"name": "rehearse", "source": "splunk", "when": {"field": "kind", "equals": "rehearse"},
             "action": "suspend", "user": "${result.user}", "reason": REASON, "dry_run": True},
        ],
    }


def alert(sid, user=None, kind="contain", note="note"):
    a = {"sid": sid, "kind": kind, "result": {}}
    if user is not None:
        a["result"]["user"] = user
    if note is not None:
        a["result"]["note"] = note
    return a


# (name, alert, expected status of the one action, or "duplicate")
ROWS = [
    ("queued", alert("1", "user1@example.com"), "queued"),
    ("reason with a missing path", alert("2", "user2@example.com", note=None), "queued"),
    ("cooldown", alert("3", "user1@example.com"), "cooldown"),
    ("dry_run", alert("4", "user3@example.com", kind="rehearse"), "dry_run"),
    ("protected by pattern", alert("5", "alice@secops.example.com"), "protected"),
    ("protected by user id", alert("6", "user110@example.com"), "protected"),
    ("protected, padded", alert("7", "  alice@secops.example.com "), "protected"),
    ("unknown_user", alert("8", "nobody@example.com"), "unknown_user"),
    ("ambiguous_user", alert("9", "twin@example.com"), "ambiguous_user"),
    ("unresolved", alert("10", None), "unresolved"),
    ("duplicate", alert("1", "user1@example.com"), "duplicate"),
    ("queued, the cap's last", alert("12", "user4@example.com"), "queued"),
    ("held", alert("13", "user5@example.com"), "held"),
]


def offline_status(stdout):
    """The status an offline explain line states, or None if it cannot tell."""
    for line in stdout.splitlines():
        if not line.startswith("rule "):
            continue
        if ": unresolved: " in line:
            return "unresolved"
        if ": protected: " in line:
            return "protected"
        if ": dry_run: " in line:
            return "dry_run"
        if ": would act on user " in line:
            return "queued"
    return None


def settled(d):
    q = d.get_status()["queue"]
    return q["queued"] == 0 and q["running"] == 0


@pytest.mark.fake1p(users=120)
def test_live_explain_agrees_with_the_delivery(remedyd_factory, fake1p, tmp_path):
    fake1p.add_users([{"email": "alice@secops.example.com"},
                      {"email": "twin@example.com"}, {"email": "Twin@Example.com"}])
    protected_id = fake1p.user("user110@example.com")["id"]
    d = remedyd_factory(config(protected_id), fake=fake1p, secrets={"splunk.hmac": SECRET})
    wait_until(lambda: d.get_status()["directory"]["users"] >= 123, message="directory synced")

    latencies = []
    for i, (name, body, want) in enumerate(ROWS):
        path = tmp_path / ("row%d.json" % i)
        path.write_text(json.dumps(body))
        wait_until(lambda: settled(d), timeout=20, message="executor idle before row %r" % name)
        calls = len(fake1p.requests())
        actions = d.ctl_json("actions")
        history = d.ctl_json("history")

        t0 = time.monotonic()
        r = d.ctl("explain", "--live", "--source", "splunk", str(path), "--json")
        latencies.append(time.monotonic() - t0)
        assert r.returncode in (0, 1), "%s: %s" % (name, r.stderr)
        live = json.loads(r.stdout)
        assert r.returncode == (0 if any(a["status"] == "queued" for a in live["actions"])
                                and not live["duplicate"] else 1), name

        # read-only: no row, no audit entry, no API call
        assert len(fake1p.requests()) == calls, name
        assert d.ctl_json("actions") == actions, name
        assert d.ctl_json("history") == history, name

        s, _, got = d.post("splunk", body, sign=SECRET)
        assert s in (200, 202), (name, s, got)
        if want == "duplicate":
            assert live["duplicate"] is True and got["duplicate"] is True, name
            assert live["event_id"] == got["event_id"], name
            assert [a["rule"] for a in live["actions"]] == [a["rule"] for a in got["actions"]]
            continue
        assert live["duplicate"] is False and got["duplicate"] is False, name
        assert [a["status"] for a in live["actions"]] == [a["status"] for a in got["actions"]] == [want], \
            (name, live, got)
        assert [a["user"] for a in live["actions"]] == [a["user"] for a in got["actions"]], name
        if name == "reason with a missing path":
            assert live["actions"][0]["reason"] == "Splunk 2: (missing result.note)", live
        if name == "protected by user id":
            assert live["actions"][0]["user_id"] == protected_id, live

        # offline: wherever it can decide, the same answer
        off = d.ctl("explain", "--source", "splunk", str(path))
        assert off.returncode in (0, 1), off.stderr
        o = offline_status(off.stdout)
        if o in ("protected", "unresolved", "dry_run"):
            assert o == want, (name, off.stdout)
        else:
            # it could not know (directory, cooldown, the cap): it says so
            assert "remedyctl explain --live" in off.stdout, (name, off.stdout)

    print("explain --live via remedyctl: median %.1f ms, max %.1f ms over %d rows"
          % (sorted(latencies)[len(latencies) // 2] * 1000, max(latencies) * 1000, len(latencies)))


def test_live_explain_errors(remedyd_factory, fake1p, tmp_path):
    d = remedyd_factory(config("A" * 26), fake=fake1p, secrets={"splunk.hmac": SECRET})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(alert("1", "user1@example.com")))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert d.ctl("explain", "--live", "--source", "nosuch", str(good)).returncode == 2
    r = d.ctl("explain", "--live", "--source", "splunk", str(bad))
    assert r.returncode == 2 and "JSON object" in r.stderr
    # no signature needed: the control socket is the trust boundary
    s, _, b = d.control_raw("/v1/explain?source=splunk", "POST", good.read_bytes())
    assert s == 200 and json.loads(b)["actions"][0]["status"] == "queued"
    r = d.ctl("explain", "--live", "--source", "splunk", str(good))
    assert r.returncode == 0 and "rule contain: suspend: queued: user user1@example.com" in r.stdout, r.stdout
    assert d.get_status()["queue"]["queued"] == 0
