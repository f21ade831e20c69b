# SPDX-License-Identifier: MIT
"""remedyctl users list|get, from the config alone, against the fake 1Password API."""

import json
import os

import pytest

from harness import Remedyd, assert_no_secrets

pytestmark = pytest.mark.skipif(not os.path.exists(os.environ.get("REMEDYCTL_BIN", "")),
                                reason="remedyctl not built")


def ctl_for(tmp_path, fake, **config):
    # start=False: only the config and secret files; no daemon, no socket.
    d = Remedyd(tmp_path / "ctl", fake=fake, config=config or None, start=False)
    return d


def run(d, *args):
    env = {k: v for k, v in os.environ.items()}
    import subprocess
    return subprocess.run([d.ctl_binary, "-c", d.config_path] + list(args), capture_output=True,
                          text=True, timeout=120, env=env, cwd=d.dir)


@pytest.mark.fake1p(users=2500)
def test_list_follows_pages(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    r = run(d, "users", "list", "--json")
    assert r.returncode == 0, r.stderr
    users = json.loads(r.stdout)
    assert len(users) == 2500
    assert {u["email"] for u in users} == {"user%d@example.com" % i for i in range(2500)}
    lists = fake1p.requests(op="list")
    assert len(lists) == 3
    assert all(q["query"].get("max_page_size") == "1000" for q in lists)
    # the token is revoked when the command is done
    assert len(fake1p.requests(op="revoke")) == 1


@pytest.mark.fake1p(users=5)
def test_table_and_filters(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    uid = fake1p.user("user3@example.com")["id"]
    fake1p.set_user(uid, state="SUSPENDED")
    r = run(d, "users", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "NAME", "STATE"]
    assert len(lines) == 6
    assert any(uid in l and "SUSPENDED" in l and "User 3" in l for l in lines)
    r = run(d, "users", "list", "--suspended", "--json")
    assert r.returncode == 0, r.stderr
    assert [u["id"] for u in json.loads(r.stdout)] == [uid]
    r = run(d, "users", "list", "--active", "--json")
    assert len(json.loads(r.stdout)) == 4
    assert fake1p.requests(op="list")[-1]["query"]["filter"] == "user.isActive()"


@pytest.mark.fake1p(users=5)
def test_get_by_id_and_email(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    u = fake1p.user("user2@example.com")
    r = run(d, "users", "get", u["id"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["email"] == "user2@example.com"
    r = run(d, "users", "get", "  USER2@Example.com ", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == u["id"]
    r = run(d, "users", "get", "user2@example.com")
    assert r.returncode == 0
    assert u["id"] in r.stdout and "ACTIVE" in r.stdout


@pytest.mark.fake1p(users=5)
def test_unknown_and_ambiguous(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    r = run(d, "users", "get", "nobody@example.com")
    assert r.returncode == 1
    assert r.stderr.strip() == "remedyctl: no user with email nobody@example.com"
    r = run(d, "users", "get", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert r.returncode == 1
    assert r.stderr.strip() == "remedyctl: no such user"
    fake1p.add_users([{"email": "twin@example.com"}, {"email": "Twin@example.com"}])
    r = run(d, "users", "get", "twin@example.com")
    assert r.returncode == 1
    assert "ambiguous" in r.stderr


@pytest.mark.fake1p(users=5)
def test_bad_credentials(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    d.write_secret("client_secret", "not-the-secret")
    r = run(d, "users", "list")
    assert r.returncode == 3
    assert r.stderr.strip() == "remedyctl: 1Password rejected the client credentials (HTTP 401)"
    assert r.stdout == ""
    assert_no_secrets([r.stderr, r.stdout], ["not-the-secret", fake1p.client_secret])


def test_unreachable(tmp_path):
    d = Remedyd(tmp_path / "ctl", fake=None, start=False,
                config={"onepassword": {"base_url": "http://127.0.0.1:9", "timeout": "2s"}})
    r = run(d, "users", "list")
    assert r.returncode == 3
    assert r.stderr.startswith("remedyctl: cannot reach the 1Password API at http://127.0.0.1:9")
    assert len(r.stderr.strip().splitlines()) == 1


def test_usage(tmp_path):
    d = Remedyd(tmp_path / "ctl", fake=None, start=False)
    assert run(d, "users").returncode == 2
    assert run(d, "users", "frobnicate").returncode == 2
    assert run(d, "users", "get").returncode == 2
    assert run(d, "users", "get", "a@b", "c@d").returncode == 2
    assert run(d, "users", "list", "extra").returncode == 2
