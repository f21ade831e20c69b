# SPDX-License-Identifier: MIT
"""remedyctl users list|get, from the config alone, against the fake 1Password API."""

import json
import os

import pytest

from harness import Remedyd, assert_no_secrets, wait_until

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


def assert_listed_all_2500(r, fake1p):
    """r: `users list --json` against a fake of 2,500 users. All of them, in
    three pages of 1,000."""
    assert r.returncode == 0, r.stderr
    users = json.loads(r.stdout)
    assert len(users) == 2500
    assert {u["email"] for u in users} == {"user%d@example.com" % i for i in range(2500)}
    lists = fake1p.requests(op="list")
    assert len(lists) == 3
    assert all(q["query"].get("max_page_size") == "1000" for q in lists)


# `users get` of someone who is not there: exit 1 and this message.
NOT_FOUND = [
    (("users", "get", "nobody@example.com"), "remedyctl: no user with email nobody@example.com"),
    (("users", "get", "ZZZZZZZZZZZZZZZZZZZZZZZZZZ"), "remedyctl: no such user"),
]


@pytest.mark.fake1p(users=2500)
def test_list_follows_pages(tmp_path, fake1p):
    d = ctl_for(tmp_path, fake1p)
    assert_listed_all_2500(run(d, "users", "list", "--json"), fake1p)
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
    for args, message in NOT_FOUND:
        r = run(d, *args)
        assert r.returncode == 1
        assert r.stderr.strip() == message
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


# -- through the daemon -------------------------------------------------------

def ctl_without_secrets(tmp_path, daemon):
    """A copy of the daemon's config whose secret files do not exist: what an
    operator without read access to the client secret has. remedyctl is
    pointed at it (and so at the daemon's control socket through
    listen.control, or with --socket)."""
    import copy
    import yaml
    cfg = copy.deepcopy(daemon.config)
    cfg["onepassword"]["client_id_file"] = str(tmp_path / "nowhere" / "client_id")
    cfg["onepassword"]["client_secret_file"] = str(tmp_path / "nowhere" / "client_secret")
    cfg["listen"]["control"] = "unix:" + daemon.control_socket
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def run_cfg(config_path, *args, cwd=None):
    import subprocess
    return subprocess.run([os.environ["REMEDYCTL_BIN"], "-c", config_path] + list(args),
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.fake1p(users=2500)
def test_through_daemon_without_secrets(tmp_path, fake1p, remedyd_factory):
    d = remedyd_factory()
    cfg = ctl_without_secrets(tmp_path, d)
    # Without a daemon this config cannot work: the secret files are missing.
    r = run_cfg(cfg, "--socket", str(tmp_path / "none.sock"), "users", "list")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "client_secret" in r.stderr

    # the daemon's own first directory sync must not count below
    wait_until(lambda: d.get_status()["directory"]["synced_at"], timeout=30,
               message="the daemon's first directory sync")
    fake1p.clear_requests()
    tokens_before = len(fake1p.requests(op="token"))
    assert_listed_all_2500(run_cfg(cfg, "users", "list", "--json"), fake1p)
    # the daemon's token: remedyctl neither fetched nor revoked one
    assert len(fake1p.requests(op="token")) == tokens_before
    assert fake1p.requests(op="revoke") == []

    # table, filters, get by id and by (messy) email, all the same as alone
    uid = fake1p.user("user3@example.com")["id"]
    fake1p.set_user(uid, state="SUSPENDED")
    r = run_cfg(cfg, "users", "list", "--suspended", "--json")
    assert r.returncode == 0, r.stderr
    assert [u["id"] for u in json.loads(r.stdout)] == [uid]
    assert fake1p.requests(op="list")[-1]["query"]["filter"] == "user.isSuspended()"
    r = run_cfg(cfg, "users", "list", "--active", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 2499
    r = run_cfg(cfg, "users", "get", uid, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["email"] == "user3@example.com"
    assert json.loads(r.stdout)["state"] == "SUSPENDED"
    r = run_cfg(cfg, "users", "get", "  USER3@Example.com ")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "NAME", "STATE"]
    assert len(lines) == 2 and uid in lines[1] and "SUSPENDED" in lines[1] and "User 3" in lines[1]
    # --socket works as well as listen.control
    r = run_cfg(cfg, "--socket", d.control_socket, "users", "get", "user4@example.com", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["email"] == "user4@example.com"

    # not found, ambiguous: same messages and exit codes as alone
    for args, message in NOT_FOUND:
        r = run_cfg(cfg, *args)
        assert r.returncode == 1
        assert r.stderr.strip() == message
    twins = fake1p.add_users([{"email": "twin@example.com"}, {"email": "Twin@example.com"}])
    r = run_cfg(cfg, "users", "get", "twin@example.com")
    assert r.returncode == 1
    assert "2 users have email twin@example.com (ambiguous)" in r.stderr
    assert all(t["id"] in r.stderr for t in twins)

    # an API failure comes back as remedyctl would say it alone
    fake1p.fault(op="get", status=403, body=json.dumps({"code": 7, "message": "forbidden_here",
                                                        "details": []}))
    r = run_cfg(cfg, "users", "get", uid)
    assert r.returncode == 3
    assert r.stderr.strip() == "remedyctl: 1Password API error (HTTP 403): code 7: forbidden_here"
    assert r.stdout == ""
    assert_no_secrets([r.stderr, r.stdout, d.log_text()], [fake1p.client_secret])


@pytest.mark.fake1p(users=5)
def test_falls_back_without_daemon(tmp_path, fake1p, remedyd_factory):
    # A daemon that ran and stopped leaves nothing listening: remedyctl
    # calls the API itself (with the config's secrets), token revoked.
    d = remedyd_factory()
    sock = d.control_socket
    d.stop()
    fake1p.clear_requests()
    r = run(d, "users", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 5
    assert len(fake1p.requests(op="token")) == 1
    assert len(fake1p.requests(op="revoke")) == 1
    # a stale socket file nobody listens on (connection refused)
    import socket
    if not os.path.exists(sock):
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock)
        s.close()
    assert os.path.exists(sock)
    r = run(d, "users", "get", "user1@example.com", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["email"] == "user1@example.com"
    assert len(fake1p.requests(op="revoke")) == 2



@pytest.mark.fake1p(users=5)
def test_daemon_stops_during_a_listing(tmp_path, fake1p, remedyd_factory):
    # The daemon stops while a listing it runs for remedyctl waits for the
    # API: remedyctl gets an answer (exit 3), the daemon exits cleanly with
    # nothing leaked (the fixture fails on a sanitizer report).
    import subprocess
    d = remedyd_factory()
    wait_until(lambda: d.get_status()["directory"]["synced_at"], timeout=30,
               message="the daemon's first directory sync")
    cfg = ctl_without_secrets(tmp_path, d)
    fake1p.fault(op="list", delay=3)
    p = subprocess.Popen([os.environ["REMEDYCTL_BIN"], "-c", cfg, "users", "list"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: fake1p.pending_faults() == [], timeout=15,
                   message="the listing to reach the fake")
        assert d.stop() == 0
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 3, err
    assert out == ""
    assert err.startswith("remedyctl: "), err
