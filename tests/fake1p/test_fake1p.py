# SPDX-License-Identifier: MIT
"""Tests of the fake 1Password Users API (tests/fake1p/fake1p.py)."""

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake1p.py")
sys.path.insert(0, HERE)
import fake1p  # noqa: E402  (for user_id_for_index)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402  (http_exchange, server_factory)

ACCT = "XLQMR47VZPBKJHSGWNCYFDE3T9"
CID = "test-client-id"
CSECRET = "test-client-secret"


class Fake:
    def __init__(self, tmp_path, *args):
        port_file = tmp_path / ("port-%d" % time.monotonic_ns())
        self.proc = subprocess.Popen(
            [sys.executable, FAKE, "--port", "0", "--port-file", str(port_file), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError("fake1p exited: %s" % self.proc.stderr.read())
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("fake1p did not become ready")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.banner = self.proc.stdout.readline().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, headers dict lower-cased, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return harness.http_exchange(conn, method, path, body, headers)

    def jreq(self, method, path, obj=None, headers=None):
        h = dict(headers or {})
        body = None
        if obj is not None:
            body = json.dumps(obj)
            h["Content-Type"] = "application/json"
        s, hd, b = self.request(method, path, body, h)
        return s, hd, (json.loads(b) if b else None)

    # token helpers
    def token_req(self, form, cid=CID, secret=CSECRET, path="/v1beta1/users/oauth2/token",
                  ctype="application/x-www-form-urlencoded"):
        h = {}
        if cid is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % (cid, secret)).encode()).decode()
        if ctype:
            h["Content-Type"] = ctype
        body = form if isinstance(form, str) else urllib.parse.urlencode(form)
        s, hd, b = self.request("POST", path, body, h)
        return s, hd, (json.loads(b) if b else None)

    def token(self, path="/v1beta1/users/oauth2/token"):
        s, _, b = self.token_req({"grant_type": "client_credentials"}, path=path)
        assert s == 200, b
        return b["access_token"]

    def api(self, method, path, tok=None, query=None, version="v1beta1"):
        if tok is None:
            tok = self.token()
        full = "/%s/accounts/%s/users%s" % (version, ACCT, path)
        if query:
            full += "?" + urllib.parse.urlencode(query)
        s, hd, b = self.request(method, full, None, {"Authorization": "Bearer " + tok})
        return s, hd, (json.loads(b) if b else None)

    def requests(self):
        return self.jreq("GET", "/_fake/requests")[2]

    def faults(self, lst):
        s, _, b = self.jreq("POST", "/_fake/faults", lst)
        assert s == 200, b


@pytest.fixture
def start(tmp_path):
    with harness.server_factory(lambda n, *args: Fake(tmp_path, *args)) as new_fake:
        yield new_fake


@pytest.fixture
def fake(start):
    return start("--users", "10")


UID0 = fake1p.user_id_for_index(0)
UID1 = fake1p.user_id_for_index(1)


# ---------------------------------------------------------------- startup

def test_banner_health_and_clean_exit(fake):
    assert fake.banner == "fake1p listening on 127.0.0.1:%d" % fake.port
    s, _, b = fake.jreq("GET", "/_fake/health")
    assert s == 200 and b == {"status": "ok"}
    assert fake.stop() == 0


def test_sigint_exits_cleanly(fake):
    fake.proc.send_signal(signal.SIGINT)
    assert fake.proc.wait(10) == 0


def test_generated_users_deterministic(fake):
    users = fake.jreq("GET", "/_fake/users")[2]
    assert len(users) == 10
    for i, u in enumerate(users):
        assert u["id"] == fake1p.user_id_for_index(i)
        assert len(u["id"]) == 26 and all(c.isdigit() or c.isupper() for c in u["id"])
        assert u["email"] == "user%d@example.com" % i
        assert u["display_name"] == "User %d" % i
        assert u["state"] == "ACTIVE"
        assert u["owner"] == (i == 0)
    assert len({u["id"] for u in users}) == 10


def test_users_file(start, tmp_path):
    p = tmp_path / "users.json"
    p.write_text(json.dumps([
        {"email": "alice@example.com", "display_name": "Alice", "id": "ALICE000000000000000000000",
         "owner": True},
        {"email": "bob@example.com", "state": "SUSPENDED"}]))
    f = start("--users", "2", "--users-file", str(p))
    users = f.jreq("GET", "/_fake/users")[2]
    assert [u["email"] for u in users] == ["user0@example.com", "user1@example.com",
                                           "alice@example.com", "bob@example.com"]
    assert users[2]["id"] == "ALICE000000000000000000000" and users[2]["owner"]
    assert users[3]["state"] == "SUSPENDED" and len(users[3]["id"]) == 26


# ---------------------------------------------------------------- token

def test_token_success(fake):
    s, h, b = fake.token_req({"grant_type": "client_credentials", "scope": "openid"})
    assert s == 200
    assert set(b) == {"access_token", "token_type", "expires_in"}
    assert b["token_type"] == "Bearer" and b["expires_in"] == 900
    assert len(b["access_token"]) >= 32
    assert h["content-type"] == "application/json"
    assert h["cache-control"] == "no-store"
    # without scope too; tokens are distinct
    s, _, b2 = fake.token_req({"grant_type": "client_credentials"})
    assert s == 200 and b2["access_token"] != b["access_token"]


def test_token_content_type_with_charset(fake):
    s, _, _ = fake.token_req({"grant_type": "client_credentials"},
                             ctype="application/x-www-form-urlencoded; charset=utf-8")
    assert s == 200


@pytest.mark.parametrize("cid,secret", [("test-client-id", "wrong"), ("wrong", "test-client-secret"),
                                        ("", ""), (None, None)])
def test_token_bad_credentials(fake, cid, secret):
    s, h, b = fake.token_req({"grant_type": "client_credentials"}, cid=cid, secret=secret)
    assert s == 401 and b == {"error": "invalid_client"}
    assert "basic" in h.get("www-authenticate", "").lower()


def test_token_bearer_scheme_rejected(fake):
    s, _, b = fake.request("POST", "/v1beta1/users/oauth2/token", "grant_type=client_credentials",
                           {"Authorization": "Bearer abc",
                            "Content-Type": "application/x-www-form-urlencoded"})
    assert s == 401 and json.loads(b) == {"error": "invalid_client"}


def test_token_credentials_in_body_rejected(fake):
    s, _, b = fake.token_req({"grant_type": "client_credentials", "client_id": CID,
                              "client_secret": CSECRET}, cid=None)
    assert s == 401


def test_token_bad_grant(fake):
    s, _, b = fake.token_req({"grant_type": "password"})
    assert s == 400 and b["error"] == "unsupported_grant_type"
    s, _, b = fake.token_req({})
    assert s == 400 and b["error"] == "invalid_request"


def test_token_bad_content_type(fake):
    s, _, b = fake.token_req(json.dumps({"grant_type": "client_credentials"}),
                             ctype="application/json")
    assert s == 400 and b["error"] == "invalid_request"
    s, _, b = fake.token_req({"grant_type": "client_credentials"}, ctype=None)
    assert s == 400 and b["error"] == "invalid_request"


def test_token_bad_scope(fake):
    s, _, b = fake.token_req({"grant_type": "client_credentials", "scope": "admin"})
    assert s == 400 and b["error"] == "invalid_scope"


def test_token_bad_creds_beat_bad_grant(fake):
    s, _, b = fake.token_req({"grant_type": "nope"}, secret="wrong")
    assert s == 401


def test_custom_credentials_and_lifetime(start):
    f = start("--client-id", "cid-2", "--client-secret", "s3cr:et", "--token-lifetime", "77")
    s, _, b = f.token_req({"grant_type": "client_credentials"}, cid="cid-2", secret="s3cr:et")
    assert s == 200 and b["expires_in"] == 77
    s, _, _ = f.token_req({"grant_type": "client_credentials"})
    assert s == 401


# ---------------------------------------------------------------- v1 layout

def test_v1_layout(fake):
    tok = fake.token(path="/v1/oauth/token")
    s, _, b = fake.api("GET", "", tok, version="v1")
    assert s == 200 and len(b["results"]) == 10
    s, _, b = fake.api("GET", "/" + UID1, tok, version="v1")
    assert s == 200 and b["id"] == UID1
    s, _, b = fake.api("POST", "/%s:suspend" % UID1, tok, version="v1")
    assert s == 200 and b["state"] == "SUSPENDED"
    # tokens are shared between layouts
    s, _, b = fake.api("GET", "/" + UID1, tok, version="v1beta1")
    assert s == 200 and b["state"] == "SUSPENDED"
    h = {"Authorization": "Basic " + base64.b64encode(b"test-client-id:test-client-secret").decode(),
         "Content-Type": "application/x-www-form-urlencoded"}
    s, _, b = fake.request("POST", "/v1/oauth/revoke", "token=" + tok, h)
    assert s == 200 and b == b""
    assert fake.api("GET", "", tok, version="v1")[0] == 401


def test_layout_restriction(start):
    f = start("--layout", "v1")
    s, _, _ = f.token_req({"grant_type": "client_credentials"})
    assert s == 404
    tok = f.token(path="/v1/oauth/token")
    assert f.api("GET", "", tok, version="v1beta1")[0] == 404
    assert f.api("GET", "", tok, version="v1")[0] == 200


# ---------------------------------------------------------------- tokens

def test_bearer_missing_garbage(fake):
    s, _, b = fake.request("GET", "/v1beta1/accounts/%s/users" % ACCT)
    b = json.loads(b)
    assert s == 401 and b["code"] == 16 and b["details"] == [] and isinstance(b["message"], str)
    s, _, b = fake.api("GET", "", "garbage")
    assert s == 401 and b["code"] == 16
    s, _, b = fake.request("GET", "/v1beta1/accounts/%s/users" % ACCT,
                           headers={"Authorization": "Basic " + fake.token()})
    assert s == 401


def test_bearer_scheme_case_insensitive(fake):
    tok = fake.token()
    s, _, _ = fake.request("GET", "/v1beta1/accounts/%s/users" % ACCT,
                           headers={"Authorization": "bearer " + tok})
    assert s == 200


def test_expire_tokens_endpoint(fake):
    tok = fake.token()
    assert fake.api("GET", "", tok)[0] == 200
    s, _, b = fake.jreq("POST", "/_fake/expire-tokens")
    assert s == 200 and b["expired"] >= 1
    s, _, b = fake.api("GET", "", tok)
    assert s == 401 and b["code"] == 16
    assert fake.api("GET", "", fake.token())[0] == 200


def test_token_lifetime_one_second(start):
    f = start("--token-lifetime", "1")
    s, _, b = f.token_req({"grant_type": "client_credentials"})
    assert b["expires_in"] == 1
    tok = b["access_token"]
    assert f.api("GET", "", tok)[0] == 200
    deadline = time.monotonic() + 5
    while f.api("GET", "", tok)[0] == 200:
        assert time.monotonic() < deadline, "token never expired"
        time.sleep(0.05)
    assert f.api("GET", "", tok)[0] == 401


def test_config_endpoint(fake):
    s, _, b = fake.jreq("POST", "/_fake/config", {"token_lifetime": 3, "default_page_size": 4})
    assert s == 200 and b == {"token_lifetime": 3, "default_page_size": 4, "max_page_size": 1000}
    s, _, b = fake.token_req({"grant_type": "client_credentials"})
    assert b["expires_in"] == 3
    s, _, b = fake.api("GET", "")
    assert len(b["results"]) == 4
    assert fake.jreq("POST", "/_fake/config", {"nope": 1})[0] == 400
    assert fake.jreq("POST", "/_fake/config", {"token_lifetime": 0})[0] == 400


def test_revoke(fake):
    tok = fake.token()
    assert fake.api("GET", "", tok)[0] == 200
    h = {"Authorization": "Basic " + base64.b64encode(b"test-client-id:test-client-secret").decode(),
         "Content-Type": "application/x-www-form-urlencoded"}
    s, hd, b = fake.request("POST", "/v1beta1/users/oauth2/revoke", "token=" + tok, h)
    assert s == 200 and b == b"" and hd["content-length"] == "0"
    assert fake.api("GET", "", tok)[0] == 401
    # again, and an unknown token: still 200
    assert fake.request("POST", "/v1beta1/users/oauth2/revoke", "token=" + tok, h)[0] == 200
    assert fake.request("POST", "/v1beta1/users/oauth2/revoke", "token=unknown", h)[0] == 200
    # bad client credentials
    h2 = dict(h, Authorization="Basic " + base64.b64encode(b"test-client-id:bad").decode())
    tok2 = fake.token()
    s, _, b = fake.request("POST", "/v1beta1/users/oauth2/revoke", "token=" + tok2, h2)
    assert s == 401 and json.loads(b) == {"error": "invalid_client"}
    assert fake.api("GET", "", tok2)[0] == 200
    # missing token parameter
    assert fake.request("POST", "/v1beta1/users/oauth2/revoke", "", h)[0] == 400


# ---------------------------------------------------------------- list

def test_list_default_page_and_shape(start):
    f = start("--users", "30")
    tok = f.token()
    s, h, b = f.api("GET", "", tok)
    assert s == 200 and h["content-type"] == "application/json"
    assert set(b) == {"results", "next_page_token"}
    assert len(b["results"]) == 25
    u = b["results"][0]
    assert list(u) == ["id", "email", "display_name", "state", "create_time", "path"]
    assert u["path"] == "accounts/%s/users/%s" % (ACCT, UID0)
    assert u["create_time"] == "2024-01-01T00:00:00Z"
    s, _, b2 = f.api("GET", "", tok, {"page_token": b["next_page_token"]})
    assert s == 200 and set(b2) == {"results"} and len(b2["results"]) == 5
    assert b2["results"][0]["email"] == "user25@example.com"


def test_list_paging_2500(start):
    f = start("--users", "2500")
    tok = f.token()
    pages = []
    q = {"max_page_size": "1000"}
    while True:
        s, _, b = f.api("GET", "", tok, q)
        assert s == 200, b
        pages.append(b)
        if "next_page_token" not in b:
            break
        assert b["next_page_token"]
        q = {"max_page_size": "1000", "page_token": b["next_page_token"]}
        assert len(pages) < 10
    assert [len(p["results"]) for p in pages] == [1000, 1000, 500]
    emails = [u["email"] for p in pages for u in p["results"]]
    assert emails == ["user%d@example.com" % i for i in range(2500)]


def test_list_page_size_clamp_and_camelcase(start):
    f = start("--users", "1200")
    tok = f.token()
    s, _, b = f.api("GET", "", tok, {"max_page_size": "5000"})
    assert s == 200 and len(b["results"]) == 1000
    s, _, b = f.api("GET", "", tok, {"maxPageSize": "1"})
    assert s == 200 and len(b["results"]) == 1
    s, _, b = f.api("GET", "", tok, {"maxPageSize": "2", "pageToken": b["next_page_token"]})
    assert [u["email"] for u in b["results"]] == ["user1@example.com", "user2@example.com"]
    s, _, b = f.api("GET", "", tok, {"max_page_size": "0"})
    assert s == 200 and len(b["results"]) == 25
    for bad in ("-1", "x", "1.5"):
        s, _, b = f.api("GET", "", tok, {"max_page_size": bad})
        assert s == 400 and b["code"] == 3


def test_list_filters(fake):
    tok = fake.token()
    users = fake.jreq("GET", "/_fake/users")[2]
    for i in (2, 5, 7):
        assert fake.api("POST", "/%s:suspend" % users[i]["id"], tok)[0] == 200
    s, _, b = fake.api("GET", "", tok, {"filter": "user.isSuspended()"})
    assert s == 200 and [u["email"] for u in b["results"]] == [
        "user2@example.com", "user5@example.com", "user7@example.com"]
    assert "next_page_token" not in b
    s, _, b = fake.api("GET", "", tok, {"filter": "user.isActive()"})
    assert len(b["results"]) == 7 and all(u["state"] == "ACTIVE" for u in b["results"])
    s, _, b = fake.api("GET", "", tok, {"filter": ""})
    assert len(b["results"]) == 10
    # unencoded parentheses, as in the docs' curl examples
    s, _, b = fake.request("GET", "/v1beta1/accounts/%s/users?filter=user.isSuspended()" % ACCT,
                           headers={"Authorization": "Bearer " + tok})
    assert s == 200 and len(json.loads(b)["results"]) == 3


def test_list_filter_paging_keeps_filter(fake):
    tok = fake.token()
    users = fake.jreq("GET", "/_fake/users")[2]
    for i in (1, 4, 8):
        fake.api("POST", "/%s:suspend" % users[i]["id"], tok)
    s, _, b = fake.api("GET", "", tok, {"filter": "user.isSuspended()", "max_page_size": "2"})
    assert len(b["results"]) == 2 and b["next_page_token"]
    # the token remembers the filter
    s, _, b2 = fake.api("GET", "", tok, {"page_token": b["next_page_token"], "max_page_size": "2"})
    assert s == 200 and [u["email"] for u in b2["results"]] == ["user8@example.com"]
    assert "next_page_token" not in b2
    # a repeated identical filter is fine, a different one is not
    s, _, _ = fake.api("GET", "", tok, {"page_token": b["next_page_token"],
                                        "filter": "user.isSuspended()"})
    assert s == 200
    s, _, e = fake.api("GET", "", tok, {"page_token": b["next_page_token"],
                                        "filter": "user.isActive()"})
    assert s == 400 and e["code"] == 3


def test_list_exact_page_has_no_next_token(start):
    f = start("--users", "50")
    s, _, b = f.api("GET", "", None, {"max_page_size": "50"})
    assert len(b["results"]) == 50 and "next_page_token" not in b


def test_list_empty(start):
    f = start()
    s, _, b = f.api("GET", "")
    assert s == 200 and b == {"results": []}


@pytest.mark.parametrize("filt", ["user.isActive", "user.isAdmin()", "state=ACTIVE",
                                  "user.isActive() || user.isSuspended()"])
def test_list_bad_filter(fake, filt):
    s, _, b = fake.api("GET", "", None, {"filter": filt})
    assert s == 400 and b["code"] == 3 and b["details"] == []


@pytest.mark.parametrize("tok", ["garbage", "CAIQAg", "%%%", base64.b64encode(b"{}").decode(),
                                 fake1p.encode_page_token(99999, "")])
def test_list_bad_page_token(fake, tok):
    s, _, b = fake.api("GET", "", None, {"page_token": tok})
    assert s == 400 and b["code"] == 3


def test_page_token_needs_url_encoding(start):
    f = start("--users", "5")
    tok = f.token()
    s, _, b = f.api("GET", "", tok, {"max_page_size": "2"})
    pt = b["next_page_token"]
    assert "+" in pt and "/" in pt
    s, _, _ = f.request("GET", "/v1beta1/accounts/%s/users?page_token=%s" % (ACCT, pt),
                        headers={"Authorization": "Bearer " + tok})
    assert s == 400


def test_unknown_account(fake):
    tok = fake.token()
    for path in ("/v1beta1/accounts/OTHERACCOUNT/users",
                 "/v1beta1/accounts/OTHERACCOUNT/users/%s" % UID1):
        s, _, b = fake.request("GET", path, headers={"Authorization": "Bearer " + tok})
        assert s == 404 and json.loads(b)["code"] == 5


def pages(conn, tok, query):
    """Lists users on conn (kept alive) from query, following next_page_token:
    yields (status, body, seconds the page took) for each page."""
    q = dict(query)
    while True:
        t0 = time.monotonic()
        conn.request("GET", "/v1beta1/accounts/%s/users?%s" % (ACCT, urllib.parse.urlencode(q)),
                     headers={"Authorization": "Bearer " + tok})
        r = conn.getresponse()
        b = json.loads(r.read())
        yield r.status, b, time.monotonic() - t0
        if "next_page_token" not in b:
            return
        q["page_token"] = b["next_page_token"]


def test_list_100k_fast(start):
    f = start("--users", "100000")
    tok = f.token()
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
    n = 0
    worst = 0.0
    for status, b, took in pages(conn, tok, {"max_page_size": "1000"}):
        worst = max(worst, took)
        assert status == 200
        n += len(b["results"])
    assert n == 100000
    assert worst < 0.25, "slowest page took %.3f s" % worst
    # a filter matching two users far apart still pages quickly
    for i in (5, 99990):
        assert f.jreq("POST", "/_fake/users/" + fake1p.user_id_for_index(i),
                      {"state": "SUSPENDED"})[0] == 200
    got = []
    for _, b, took in pages(conn, tok, {"filter": "user.isSuspended()", "max_page_size": "1"}):
        assert took < 0.25
        got += [u["email"] for u in b["results"]]
    conn.close()
    assert got == ["user5@example.com", "user99990@example.com"]


# ---------------------------------------------------------------- get

def test_get_user(fake):
    s, _, b = fake.api("GET", "/" + UID1)
    assert s == 200
    assert b == {"id": UID1, "email": "user1@example.com", "display_name": "User 1",
                 "state": "ACTIVE", "create_time": "2024-01-01T00:00:01Z",
                 "path": "accounts/%s/users/%s" % (ACCT, UID1)}


def test_get_unknown(fake):
    s, _, b = fake.api("GET", "/NOSUCHUSER0000000000000000")
    assert s == 404 and b == {"code": 5, "message": "user not found", "details": []}


def test_unknown_route(fake):
    tok = fake.token()
    for m, p in (("GET", "/v2/accounts/%s/users" % ACCT), ("GET", "/"),
                 ("POST", "/v1beta1/accounts/%s/users/%s:delete" % (ACCT, UID1))):
        s, _, b = fake.request(m, p, headers={"Authorization": "Bearer " + tok})
        assert s == 404 and json.loads(b)["code"] == 5
    s, h, _ = fake.request("GET", "/v1beta1/accounts/%s/users/%s:suspend" % (ACCT, UID1),
                           headers={"Authorization": "Bearer " + tok})
    assert s == 405 and h["allow"] == "POST"


# ---------------------------------------------------------------- suspend / reactivate

def test_suspend_reactivate_idempotent(fake):
    tok = fake.token()
    for _ in range(2):
        s, _, b = fake.api("POST", "/%s:suspend" % UID1, tok)
        assert s == 200 and b["state"] == "SUSPENDED" and b["id"] == UID1
        assert len(b) == 6
    assert fake.api("GET", "/" + UID1, tok)[2]["state"] == "SUSPENDED"
    for _ in range(2):
        s, _, b = fake.api("POST", "/%s:reactivate" % UID1, tok)
        assert s == 200 and b["state"] == "ACTIVE"
    assert fake.api("GET", "/" + UID1, tok)[2]["state"] == "ACTIVE"


def test_suspend_percent_encoded_colon_and_body_ignored(fake):
    tok = fake.token()
    s, _, b = fake.request("POST", "/v1beta1/accounts/%s/users/%s%%3Asuspend" % (ACCT, UID1),
                           body="{}", headers={"Authorization": "Bearer " + tok,
                                               "Content-Type": "application/json"})
    assert s == 200 and json.loads(b)["state"] == "SUSPENDED"
    s, _, b = fake.request("POST", "/v1beta1/accounts/%s/users/%s%%3areactivate" % (ACCT, UID1),
                           headers={"Authorization": "Bearer " + tok})
    assert s == 200 and json.loads(b)["state"] == "ACTIVE"


def test_suspend_unknown(fake):
    for action in ("suspend", "reactivate"):
        s, _, b = fake.api("POST", "/NOSUCHUSER0000000000000000:" + action)
        assert s == 404 and b["code"] == 5


def test_last_owner(fake):
    tok = fake.token()
    s, _, b = fake.api("POST", "/%s:suspend" % UID0, tok)
    assert s == 403 and b == {"code": 7, "message": "no_owner_remain", "details": []}
    assert fake.api("GET", "/" + UID0, tok)[2]["state"] == "ACTIVE"
    # with a second active owner, the first may be suspended, then not the second
    s, _, added = fake.jreq("POST", "/_fake/users", [{"email": "owner2@example.com", "owner": True}])
    assert s == 200 and added[0]["owner"]
    assert fake.api("POST", "/%s:suspend" % UID0, tok)[0] == 200
    s, _, b = fake.api("POST", "/%s:suspend" % added[0]["id"], tok)
    assert s == 403 and b["message"] == "no_owner_remain"
    # suspending an already suspended owner stays idempotent
    assert fake.api("POST", "/%s:suspend" % UID0, tok)[0] == 200


# ---------------------------------------------------------------- control: users

def test_add_and_update_users(fake):
    s, _, added = fake.jreq("POST", "/_fake/users", [
        {"email": "Carol@Example.com", "display_name": "Carol", "id": "CAROL00000000000000000000X"},
        {"email": "dave@example.com", "state": "SUSPENDED"}])
    assert s == 200 and len(added) == 2
    assert fake.jreq("POST", "/_fake/users", [{"email": "x@example.com",
                                               "id": "CAROL00000000000000000000X"}])[0] == 409
    assert fake.jreq("POST", "/_fake/users", [{"display_name": "no email"}])[0] == 400
    s, _, b = fake.api("GET", "/CAROL00000000000000000000X")
    assert s == 200 and b["email"] == "Carol@Example.com"
    s, _, b = fake.jreq("POST", "/_fake/users/CAROL00000000000000000000X", {"state": "SUSPENDED"})
    assert s == 200 and b["state"] == "SUSPENDED"
    assert fake.api("GET", "/CAROL00000000000000000000X")[2]["state"] == "SUSPENDED"
    assert len(fake.jreq("GET", "/_fake/users")[2]) == 12
    # new users come last in list order
    s, _, b = fake.api("GET", "", None, {"max_page_size": "100"})
    assert [u["email"] for u in b["results"]][-2:] == ["Carol@Example.com", "dave@example.com"]


# ---------------------------------------------------------------- faults

def test_fault_429_with_retry_after(fake):
    tok = fake.token()
    fake.faults([{"op": "suspend", "status": 429, "headers": {"Retry-After": "1"}}])
    # other ops are not affected
    assert fake.api("GET", "/" + UID1, tok)[0] == 200
    s, h, b = fake.api("POST", "/%s:suspend" % UID1, tok)
    assert s == 429 and h["retry-after"] == "1" and b["code"] == 8
    assert fake.api("GET", "/" + UID1, tok)[2]["state"] == "ACTIVE"  # not performed
    s, _, b = fake.api("POST", "/%s:suspend" % UID1, tok)
    assert s == 200 and b["state"] == "SUSPENDED"


def test_fault_429_without_retry_after(fake):
    fake.faults({"op": "list", "status": 429})
    s, h, b = fake.api("GET", "")
    assert s == 429 and "retry-after" not in h


@pytest.mark.parametrize("status", [500, 503])
def test_fault_5xx(fake, status):
    fake.faults([{"op": "get", "status": status, "body": "<html>oops</html>",
                  "headers": {"Content-Type": "text/html"}}])
    s, h, b = fake.request("GET", "/v1beta1/accounts/%s/users/%s" % (ACCT, UID1),
                           headers={"Authorization": "Bearer " + fake.token()})
    assert s == status and b == b"<html>oops</html>" and h["content-type"] == "text/html"


def test_fault_token_endpoint(fake):
    fake.faults([{"op": "token", "status": 503}])
    s, _, b = fake.token_req({"grant_type": "client_credentials"})
    assert s == 503 and b == {"error": "server_error"}
    assert fake.token_req({"grant_type": "client_credentials"})[0] == 200


def test_fault_truncated_body(fake):
    fake.faults([{"op": "list", "body": '{"results": [{"id": "AB'}])
    s, h, b = fake.request("GET", "/v1beta1/accounts/%s/users" % ACCT,
                           headers={"Authorization": "Bearer " + fake.token()})
    assert s == 200 and b == b'{"results": [{"id": "AB' and h["content-type"] == "application/json"


def test_fault_delay(fake):
    tok = fake.token()
    fake.faults([{"op": "get", "delay": 0.6}])
    t0 = time.monotonic()
    s, _, b = fake.api("GET", "/" + UID1, tok)
    assert s == 200 and b["id"] == UID1
    assert time.monotonic() - t0 >= 0.6
    # a delayed request does not block others
    fake.faults([{"op": "get", "delay": 30, "status": 500}])
    def slow():
        with pytest.raises(TimeoutError):
            fake.request("GET", "/v1beta1/accounts/%s/users/%s" % (ACCT, UID1),
                         headers={"Authorization": "Bearer " + tok}, timeout=1)
    th = threading.Thread(target=slow, daemon=True)
    th.start()
    wait_for(lambda: any(r["status"] is None for r in fake.requests()))
    t0 = time.monotonic()
    assert fake.api("GET", "/" + UID1, tok)[0] == 200
    assert time.monotonic() - t0 < 1.0
    th.join(5)


def test_fault_delay_with_status_times_out_client(fake):
    fake.faults([{"op": "list", "delay": 2, "status": 500}])
    with pytest.raises(TimeoutError):
        fake.request("GET", "/v1beta1/accounts/%s/users" % ACCT,
                     headers={"Authorization": "Bearer " + fake.token()}, timeout=0.3)


def test_fault_drop(fake):
    tok = fake.token()
    fake.faults([{"op": "suspend", "drop": True}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        fake.api("POST", "/%s:suspend" % UID1, tok)
    assert fake.api("GET", "/" + UID1, tok)[2]["state"] == "ACTIVE"
    rec = [r for r in fake.requests() if r["op"] == "suspend"]
    assert rec[-1]["status"] is None and rec[-1]["dropped"]
    assert fake.api("POST", "/%s:suspend" % UID1, tok)[0] == 200


def test_fault_apply_lost_reply(fake):
    tok = fake.token()
    fake.faults([{"op": "suspend", "status": 504, "apply": True}])
    assert fake.api("POST", "/%s:suspend" % UID1, tok)[0] == 504
    assert fake.api("GET", "/" + UID1, tok)[2]["state"] == "SUSPENDED"


def test_fault_times_and_fifo(fake):
    tok = fake.token()
    fake.faults([{"op": "any", "status": 500, "times": 2}, {"op": "get", "status": 503}])
    got = [fake.api("GET", "/" + UID1, tok)[0] for _ in range(4)]
    assert got == [500, 500, 503, 200]
    s, _, b = fake.jreq("GET", "/_fake/faults")
    assert b == []
    fake.faults([{"op": "get", "status": 500, "times": -1}])
    assert [fake.api("GET", "/" + UID1, tok)[0] for _ in range(3)] == [500, 500, 500]
    assert fake.jreq("DELETE", "/_fake/faults")[0] == 200
    assert fake.api("GET", "/" + UID1, tok)[0] == 200


def test_fault_match(fake):
    tok = fake.token()
    fake.faults([{"op": "get", "status": 500, "match": UID1}])
    assert fake.api("GET", "/" + fake1p.user_id_for_index(2), tok)[0] == 200
    assert fake.api("GET", "/" + UID1, tok)[0] == 500


def test_bad_fault_rejected(fake):
    for f in ({"op": "nope"}, {"status": "x"}, {"times": 0}, {"delay": -1}, "x"):
        assert fake.jreq("POST", "/_fake/faults", [f])[0] == 400


# ---------------------------------------------------------------- request log

def wait_for(pred, timeout=5):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_request_log(fake):
    tok = fake.token()
    fake.request("GET", "/v1beta1/accounts/%s/users?filter=user.isActive()&max_page_size=3" % ACCT,
                 headers={"Authorization": "Bearer " + tok, "User-Agent": "remedyd/test"})
    fake.api("POST", "/%s:suspend" % UID1, tok)
    fake.jreq("GET", "/_fake/users")  # control requests are not logged
    log = fake.requests()
    assert [r["op"] for r in log] == ["token", "list", "suspend"]
    t, l, s = log
    assert t["method"] == "POST" and t["path"] == "/v1beta1/users/oauth2/token"
    assert t["headers"]["authorization"] == "Basic " + base64.b64encode(
        b"test-client-id:test-client-secret").decode()
    assert t["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert t["body"] == "grant_type=client_credentials" and t["status"] == 200
    assert l["query"] == {"filter": "user.isActive()", "max_page_size": "3"}
    assert l["headers"]["authorization"] == "Bearer " + tok
    assert l["headers"]["user-agent"] == "remedyd/test"
    assert l["status"] == 200 and l["body"] == ""
    assert s["method"] == "POST" and s["path"].endswith(":suspend") and s["status"] == 200
    assert all(isinstance(r["time"], float) for r in log)
    assert log[0]["time"] <= log[1]["time"] <= log[2]["time"]
    assert fake.jreq("DELETE", "/_fake/requests")[0] == 200
    assert fake.requests() == []


def test_request_log_records_failures(fake):
    fake.token_req({"grant_type": "client_credentials"}, secret="bad")
    fake.faults([{"op": "list", "status": 500}])
    fake.api("GET", "")
    log = fake.requests()
    assert [(r["op"], r["status"]) for r in log] == [("token", 401), ("token", 200), ("list", 500)]


def test_keepalive_connection_reuse(fake):
    tok = fake.token()
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/v1beta1/accounts/%s/users/%s" % (ACCT, UID1),
                     headers={"Authorization": "Bearer " + tok})
        r = conn.getresponse()
        assert r.status == 200
        r.read()
    conn.close()


def test_no_secret_in_output(start):
    f = start("--client-secret", "sup3r-s3cret-value", "-v")
    tok = f.token_req({"grant_type": "client_credentials"}, secret="sup3r-s3cret-value")[2]
    f.api("GET", "", tok["access_token"])
    f.stop()
    out = f.proc.stdout.read() + f.proc.stderr.read()
    assert "sup3r-s3cret-value" not in out
    assert tok["access_token"] not in out
    assert "/v1beta1/accounts" in out  # -v logs request lines
