# SPDX-License-Identifier: MIT
"""The SIEM rule packs of config/examples/ against payloads shaped like the
real senders' (tests/data/payloads/), end to end: the pack's own source and
rules are loaded into a real remedyd, the payload is delivered with the
sender's authentication, and the 1Password calls made on the fake are
checked exactly. Each pack also has a negative payload that must not act,
and `remedyctl explain` must agree (exit 0 / 1) using the shipped
config/examples/remedyd-all-packs.yaml."""

import base64
import copy
import json
import os
import subprocess

import pytest
import yaml

import harness
from harness import requires_remedyd, wait_until

pytestmark = requires_remedyd

EXAMPLES = os.path.join(harness.SOURCE_ROOT, "config", "examples")
PAYLOADS = os.path.join(harness.SOURCE_ROOT, "tests", "data", "payloads")
ALL_PACKS = os.path.join(EXAMPLES, "remedyd-all-packs.yaml")

# Every person the payloads name; the fake's user 0 is the account owner.
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
          "mallory", "oscar", "peggy", "trent", "victor", "walter", "xavier", "yolanda"]

# pack -> (emails suspended by the positive payload, emails only notified)
EXPECTED = {
    "splunk": (["alice@example.com"], []),
    "sentinel": (["carol@example.com", "dave@example.com"], []),
    "elastic": (["erin@example.com", "frank@example.com"], []),
    "datadog": (["heidi@example.com"], []),
    "okta": (["ivan@example.com", "judy@example.com"], ["oscar@example.com"]),
    "alertmanager": (["mallory@example.com", "peggy@example.com"], []),
    "panther": (["victor@example.com"], []),
    "sumologic": (["walter@example.com", "xavier@example.com"], []),
}


def load_pack(name):
    with open(os.path.join(EXAMPLES, name + ".yaml")) as f:
        return yaml.safe_load(f)


def payload_path(name):
    return os.path.join(PAYLOADS, name + ".json")


def load_payload(name):
    with open(payload_path(name), "rb") as f:
        return f.read()


def secret_value(name):
    return "test-%s-token-%s" % (name, "k3Jx9q")


def pack_secrets(pack, name):
    """The pack's secret files (relative `secrets/X` paths, kept as they are:
    they resolve against the test daemon's directory) with test values."""
    out = {}
    for src in pack["sources"]:
        for method, keys in src["auth"].items():
            for k, v in (keys or {}).items() if isinstance(keys, dict) else []:
                if k.endswith("_file"):
                    assert v.startswith("secrets/"), v
                    out[v[len("secrets/"):]] = secret_value(name)
    return out


def auth_headers(source, secret):
    """The headers the sender would send for this source's auth method."""
    (method, a), = source["auth"].items()
    if method == "bearer":
        return {"Authorization": "Bearer " + secret}
    if method == "header_token":
        return {a["header"]: secret}
    if method == "basic":
        cred = base64.b64encode(("%s:%s" % (a["username"], secret)).encode()).decode()
        return {"Authorization": "Basic " + cred}
    raise AssertionError("no sender auth for %s" % method)


def explain(name, path):
    r = subprocess.run([harness.REMEDYCTL_BIN, "explain", "-c", ALL_PACKS, "--source", name,
                        path], capture_output=True, text=True, timeout=30)
    assert not harness.SANITIZER_RE.search(r.stderr), r.stderr
    return r


def suspended_ids(fake):
    return [r["path"].rsplit("/", 1)[1].split(":")[0] for r in fake.requests(op="suspend")]


def queue_idle(d):
    q = d.get_status()["queue"]
    return q["queued"] == 0 and q["running"] == 0


@pytest.fixture
def people(fake1p):
    fake1p.add_users([{"email": p + "@example.com", "display_name": p.title()} for p in PEOPLE])
    return {p + "@example.com": fake1p.user(p + "@example.com")["id"] for p in PEOPLE}


def start_pack(remedyd_factory, fake, name, **over):
    pack = load_pack(name)
    cfg = {"sources": copy.deepcopy(pack["sources"]), "rules": copy.deepcopy(pack["rules"])}
    cfg.update(over)
    d = remedyd_factory(cfg, fake=fake, secrets=pack_secrets(pack, name))
    return d, pack["sources"][0]


@pytest.mark.fake1p(users=1)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pack(remedyd_factory, fake1p, people, name):
    want_suspend, want_notify = EXPECTED[name]
    d, source = start_pack(remedyd_factory, fake1p, name)
    assert source["name"] == name
    headers = dict(auth_headers(source, secret_value(name)), **{"Content-Type": "application/json"})
    body = load_payload(name)

    # Without the sender's credentials nothing happens.
    s, _, b = d.post(name, body)
    assert s == 401, b
    s, _, b = d.post(name, body, headers=dict(auth_headers(source, "wrong-" + secret_value(name))))
    assert s == 401, b

    s, _, b = d.post(name, body, headers=headers)
    assert s == 202, b
    acts = b["actions"]
    got_suspend = sorted(a["user"].lower() for a in acts if a["action"] == "suspend")
    got_notify = sorted(a["user"].lower() for a in acts if a["action"] == "notify")
    assert got_suspend == sorted(want_suspend), acts
    assert got_notify == sorted(want_notify), acts
    assert all(a["status"] == "queued" for a in acts), acts

    want_ids = sorted(people[e] for e in want_suspend)
    wait_until(lambda: len(suspended_ids(fake1p)) >= len(want_ids) and queue_idle(d),
               message="%s: %d suspensions" % (name, len(want_ids)))
    assert sorted(suspended_ids(fake1p)) == want_ids
    for r in fake1p.requests(op="suspend"):
        assert r["path"].startswith("/v1beta1/accounts/%s/users/" % fake1p.account_id)
    assert fake1p.requests(op="reactivate") == []
    for e in want_suspend:
        assert fake1p.user(e)["state"] == "SUSPENDED"
    for e in set(people) - set(want_suspend):
        assert fake1p.user(e)["state"] == "ACTIVE", e

    # A redelivery is recognised (by event_id, or by the body's SHA-256).
    s, _, b2 = d.post(name, body, headers=headers)
    assert s == 200 and b2["duplicate"] is True and b2["event_id"] == b["event_id"]

    # The negative payload is accepted and acts on nobody.
    fake1p.clear_requests()
    s, _, b = d.post(name, load_payload(name + "-negative"), headers=headers)
    assert s == 202 and b["actions"] == [], b
    wait_until(lambda: queue_idle(d))
    assert fake1p.requests(op="suspend") == []

    # remedyctl explain agrees, on the shipped all-packs configuration.
    r = explain(name, payload_path(name))
    assert r.returncode == 0, r.stdout + r.stderr
    for e in want_suspend:
        assert e in r.stdout.lower(), r.stdout
    r = explain(name, payload_path(name + "-negative"))
    assert r.returncode == 1, r.stdout + r.stderr


@pytest.mark.fake1p(users=1)
def test_okta_verification_challenge(remedyd_factory, fake1p):
    d, source = start_pack(remedyd_factory, fake1p, "okta")
    good = auth_headers(source, secret_value("okta"))
    challenge = "X8hw3ZpQ2mNc-_vbtRkY0sLq7uJd5eFa"
    s, _, b = d.webhook_raw("GET", "/hooks/okta",
                            headers=dict(good, **{"X-Okta-Verification-Challenge": challenge}))
    assert s == 200 and json.loads(b) == {"verification": challenge}
    s, _, b = d.webhook_raw("GET", "/hooks/okta",
                            headers={"X-Okta-Verification-Challenge": challenge})
    assert s == 401 and challenge.encode() not in b
    s, _, b = d.webhook_raw("GET", "/hooks/okta",
                            headers={"Authorization": "not-the-secret",
                                     "X-Okta-Verification-Challenge": challenge})
    assert s == 401 and challenge.encode() not in b
    assert fake1p.requests(op="suspend") == []


@pytest.mark.fake1p(users=1)
def test_splunk_src_user_fallback(remedyd_factory, fake1p, people):
    """Searches naming the account src_user (CIM) suspend that account; a
    result with both acts once, on `user`."""
    d, source = start_pack(remedyd_factory, fake1p, "splunk")
    headers = auth_headers(source, secret_value("splunk"))
    alert = json.loads(load_payload("splunk"))
    alert["sid"] += "_src"
    alert["result"]["src_user"] = alert["result"].pop("user").replace("alice", "bob")
    s, _, b = d.post("splunk", alert, headers=headers)
    assert s == 202 and [(a["rule"], a["user"]) for a in b["actions"]] == \
        [("splunk-suspend-src-user", "bob@example.com")]
    both = json.loads(load_payload("splunk"))
    both["sid"] += "_both"
    both["result"]["src_user"] = "carol@example.com"
    s, _, b = d.post("splunk", both, headers=headers)
    assert s == 202 and [(a["rule"], a["user"]) for a in b["actions"]] == \
        [("splunk-suspend-user", "alice@example.com")]
    wait_until(lambda: len(suspended_ids(fake1p)) >= 2 and queue_idle(d))
    assert sorted(suspended_ids(fake1p)) == sorted([people["bob@example.com"],
                                                    people["alice@example.com"]])


def test_all_packs_check_config():
    """The shipped example passes --check-config as it is, from any working
    directory (relative paths resolve against the files)."""
    r = subprocess.run([harness.REMEDYD_BIN, "--check-config", "-c", ALL_PACKS],
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configuration OK"
    with open(ALL_PACKS) as f:
        included = yaml.safe_load(f)["include"]
    assert sorted(os.path.splitext(i)[0] for i in included) == sorted(EXPECTED)
    # Every payload file has a pack and the other way round.
    names = {f[:-5] for f in os.listdir(PAYLOADS) if f.endswith(".json")}
    assert names == set(EXPECTED) | {n + "-negative" for n in EXPECTED}
