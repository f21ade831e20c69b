# SPDX-License-Identifier: MIT
"""Security checks with the real remedyd: no secret in any log or status
output, replay protection, the control socket and the read-only status
listener, TLS 1.2 minimum and mTLS on the webhook listener."""

import base64
import json
import os
import shutil
import ssl
import stat
import subprocess
import time

import pytest

import harness
from harness import assert_no_secrets, hmac_sign, hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

HMAC_SECRET = "sec-hmac-6f1c2a9e44d0b7"
BEARER = "sec-bearer-0b8e7d61f2c3a4"
HEADER_TOKEN = "sec-header-token-5a4d3c2b1"
BASIC_PASSWORD = "sec-basic-pw-9e8d7c6b5a"
CLIENT_SECRET = "sec-client-secret-7Hq2Lx9Vb4"


def rule(source, user="${user}", **kw):
    r = {"name": "r-" + source, "source": source, "action": "suspend", "user": user,
         "reason": "security test"}
    r.update(kw)
    return r


def all_auth_config():
    return {
        "sources": [
            hmac_source("hmac"),
            {"name": "bearer", "auth": {"bearer": {"token_file": "secrets/bearer"}}},
            {"name": "hdr", "auth": {"header_token": {"header": "X-Api-Key",
                                                      "token_file": "secrets/hdr"}}},
            {"name": "basic", "auth": {"basic": {"username": "siem",
                                                 "password_file": "secrets/basic"}}},
        ],
        "rules": [rule("hmac"), rule("bearer"), rule("hdr"), rule("basic")],
    }


def all_auth_secrets():
    return {"hmac.hmac": HMAC_SECRET, "bearer": BEARER, "hdr": HEADER_TOKEN,
            "basic": BASIC_PASSWORD}


def issued_tokens(fake):
    """Every access token remedyd used, from the fake's request log."""
    out = set()
    for r in fake.requests():
        a = (r.get("headers") or {}).get("authorization", "")
        if a.lower().startswith("bearer "):
            out.add(a[7:].strip())
    return out


# ------------------------------------------------------------- no secrets

@pytest.mark.fake1p(users=20, client_secret=CLIENT_SECRET, token_lifetime=2)
def test_no_secret_in_logs_or_status(remedyd_factory, fake1p):
    """Every auth method used right and wrong, tokens refreshed, the
    daemon at -vv (HTTP traces on): no secret in any line it wrote, nor in
    /status, /metrics, remedyctl's outputs."""
    d = remedyd_factory(all_auth_config(), fake=fake1p, secrets=all_auth_secrets(),
                        args=["-v", "-v"])
    uid = [u["id"] for u in fake1p.users() if u["email"] == "user3@example.com"][0]
    outputs = []
    basic = base64.b64encode(("siem:" + BASIC_PASSWORD).encode()).decode()
    wrong_basic = base64.b64encode(b"siem:" + BASIC_PASSWORD[::-1].encode()).decode()
    cases = [
        ("hmac", None, 202),  # signed below, body by body
        ("hmac", None, 401),
        ("bearer", {"Authorization": "Bearer " + BEARER}, 202),
        ("bearer", {"Authorization": "Bearer " + BEARER + "x"}, 401),
        ("hdr", {"X-Api-Key": HEADER_TOKEN}, 202),
        ("hdr", {"X-Api-Key": HEADER_TOKEN[:-1]}, 401),
        ("basic", {"Authorization": "Basic " + basic}, 202),
        ("basic", {"Authorization": "Basic " + wrong_basic}, 401),
    ]
    for i, (src, headers, want) in enumerate(cases):
        b = json.dumps({"user": uid if i % 2 else "user%d@example.com" % (i + 2), "i": i})
        if src == "hmac":
            headers = {"X-Remedyd-Signature": hmac_sign(HMAC_SECRET if want == 202 else "bad", b)}
        s, _, resp = d.post(src, b, headers=headers)
        assert s == want, (src, s, resp)
        outputs.append(json.dumps(resp))
    wait_until(lambda: len(fake1p.requests(op="suspend")) >= 4, timeout=20)
    # let the 2 s token expire and be refreshed, then force a 401 -> refresh
    first = issued_tokens(fake1p)
    wait_until(lambda: d.metric("remedyd_token_refreshes_total") >= 2, timeout=20)
    fake1p.expire_tokens()
    b = json.dumps({"user": "user9@example.com"})
    assert d.post("hmac", b, sign=HMAC_SECRET)[0] == 202
    wait_until(lambda: len(fake1p.requests(op="suspend")) >= 5, timeout=20)
    tokens = issued_tokens(fake1p)
    assert len(tokens) >= 2 and first <= tokens
    outputs += [d.status_raw("/status")[2], d.metrics_text(), d.status_raw("/readyz")[2]]
    for args in (("status", "--json"), ("status",), ("actions", "--json"), ("history", "--json"),
                 ("history",), ("users", "list", "--json")):
        r = d.ctl(*args)
        assert r.returncode == 0, (args, r.stderr)
        outputs += [r.stdout, r.stderr]
    r = d.ctl("check")
    outputs += [r.stdout, r.stderr]
    d.reload()
    d.wait_log(r"reload")
    d.stop()
    log = d.log_text()
    assert "suspend" in log.lower() and len(log.splitlines()) > 20, "too little log to judge"
    client_basic = base64.b64encode(("%s:%s" % (fake1p.client_id, CLIENT_SECRET)).encode()).decode()
    secrets = [HMAC_SECRET, BEARER, HEADER_TOKEN, BASIC_PASSWORD, CLIENT_SECRET, basic,
               client_basic] + sorted(tokens)
    assert_no_secrets([log] + outputs, secrets)
    # the fake did see the client secret: the test looks for the right thing
    assert any(client_basic in json.dumps(r["headers"]) for r in fake1p.requests(op="token"))


def test_secret_file_never_echoed_by_check_config(remedyd_factory, fake1p):
    """A broken config next to valid secret files: the error lines name
    files and keys, never a secret's content."""
    cfg = all_auth_config()
    cfg["rules"].append({"name": "broken", "source": "nosuch", "action": "suspend",
                         "user": "${u}"})
    d = remedyd_factory(cfg, fake=fake1p, secrets=all_auth_secrets(), start=False)
    r = subprocess.run([d.binary, "-t", "-c", d.config_path], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "nosuch" in r.stderr
    assert_no_secrets([r.stdout, r.stderr], [HMAC_SECRET, BEARER, HEADER_TOKEN, BASIC_PASSWORD])


# ------------------------------------------------------------- replay

def test_replay_window_and_redelivery(remedyd_factory, fake1p):
    src = hmac_source("ts")
    src["auth"]["hmac_sha256"].update({"timestamp_header": "X-Timestamp", "tolerance": "5m"})
    cfg = {"sources": [src], "rules": [rule("ts")]}
    d = remedyd_factory(cfg, fake=fake1p, secrets={"ts.hmac": HMAC_SECRET})
    body = json.dumps({"user": "user4@example.com", "alert": "A-1"})

    def send(ts, b=body, mac_ts=None):
        mac_ts = ts if mac_ts is None else mac_ts
        sig = hmac_sign(HMAC_SECRET, "%s.%s" % (mac_ts, b))
        return d.post("ts", b, headers={"X-Timestamp": str(ts), "X-Remedyd-Signature": sig})

    now = int(time.time())
    # signed correctly, but an hour old: refused, nothing recorded
    s, _, b = send(now - 3600)
    assert s == 401 and set(b) == {"error", "message"}
    # far in the future: refused too
    assert send(now + 3600)[0] == 401
    # a fresh timestamp whose MAC was computed for another time: refused
    assert send(now, mac_ts=now - 1)[0] == 401
    assert d.ctl_json("actions") == []
    # fresh: accepted; the same delivery replayed inside the window: deduplicated
    s1, _, b1 = send(now)
    assert s1 == 202 and b1["duplicate"] is False
    s2, _, b2 = send(now)
    assert s2 == 200 and b2["duplicate"] is True and b2["event_id"] == b1["event_id"]
    # re-signed with a new timestamp, same body: still the same delivery
    s3, _, b3 = send(now + 1)
    assert s3 == 200 and b3["event_id"] == b1["event_id"]
    wait_until(lambda: len(fake1p.requests(op="suspend")) == 1)
    assert len(d.ctl_json("actions")) == 1
    # milliseconds are understood too
    b4 = json.dumps({"user": "user5@example.com", "alert": "A-2"})
    assert send(now * 1000, b4)[0] == 202
    assert send((now - 3600) * 1000, json.dumps({"user": "user6@example.com"}))[0] == 401


# ------------------------------------------------------------- listeners

def test_control_socket_mode_and_status_is_read_only(remedyd_factory, fake1p):
    d = remedyd_factory({"sources": [hmac_source("s")], "rules": [rule("s")]}, fake=fake1p,
                        secrets={"s.hmac": HMAC_SECRET})
    st = os.stat(d.control_socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    # the status listener serves GET only ...
    for path in ("/status", "/metrics", "/healthz", "/readyz"):
        assert d.status_raw(path)[0] == 200
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            s, h, _ = d.status_raw(path, method=method)
            assert s == 405 and "GET" in h.get("allow", ""), (method, path, s)
    # ... and none of the admin endpoints of the control socket, whatever the method
    for method, path in (("GET", "/v1/actions"), ("GET", "/v1/history"), ("GET", "/v1/status"),
                         ("POST", "/v1/actions"), ("POST", "/v1/actions/x/release")):
        body = b'{"action":"suspend","user":"user1@example.com","reason":"x"}' \
            if method == "POST" else None
        s, _, _ = harness.http_request(d.status_url + path, method, body,
                                       {"Content-Type": "application/json"})
        assert s in (404, 405), (method, path, s)
    # the webhook listener does not serve them either
    s, _, _ = d.webhook_raw("POST", "/v1/actions",
                            b'{"action":"suspend","user":"user1@example.com","reason":"x"}',
                            {"Content-Type": "application/json"})
    assert s in (404, 405)
    assert fake1p.requests(op="suspend") == [] and d.ctl_json("actions") == []
    # the control socket does serve them (the only way in)
    s, _, b = d.control_raw("/v1/status")
    assert s == 200 and "queue" in json.loads(b)


# ------------------------------------------------------------- TLS

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_pki(d):
    """CA, server cert for 127.0.0.1, a client cert under the CA and one
    under a rogue CA (same subject). Returns a dict of paths."""
    os.makedirs(d, exist_ok=True)
    ext_server = os.path.join(d, "server.ext")
    with open(ext_server, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    ext_client = os.path.join(d, "client.ext")
    with open(ext_client, "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "rogue"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2", "-subj",
                 "/CN=remedyd test %s" % ca, cwd=d)

    def issue(name, ca, subj, ext):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
    issue("server", "ca", "/CN=127.0.0.1", ext_server)
    issue("client", "ca", "/CN=siem.example.com/O=SecOps", ext_client)
    issue("intruder", "rogue", "/CN=siem.example.com/O=SecOps", ext_client)
    return {k: os.path.join(d, k + ".pem") for k in ("ca", "server", "client", "intruder", "rogue")} | \
        {k + "_key": os.path.join(d, k + ".key") for k in ("server", "client", "intruder")}


@pytest.fixture
def pki(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    return make_pki(str(tmp_path / "pki"))


def tls_config(pki, client_ca=True):
    tls = {"cert_file": pki["server"], "key_file": pki["server_key"]}
    cfg = {"listen": {"tls": tls}, "sources": [hmac_source("hmac")], "rules": [rule("hmac")]}
    if client_ca:
        tls["client_ca_file"] = pki["ca"]
        cfg["sources"].append({"name": "mtls", "auth": {"mtls": {"subject": "siem.example.com"}}})
        cfg["rules"].append(rule("mtls"))
    return cfg


def s_client(port, *args):
    """openssl s_client against 127.0.0.1:port; returns (rc, output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-brief",
                        "-no_ign_eof"] + list(args),
                       input=b"", capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_tls_minimum_version(remedyd_factory, fake1p, pki):
    d = remedyd_factory(tls_config(pki, client_ca=False), fake=fake1p,
                        secrets={"hmac.hmac": HMAC_SECRET})
    port = int(d.addresses["webhook"].rsplit(":", 1)[1])
    # TLS 1.2 and 1.3 work ...
    for v in ("-tls1_2", "-tls1_3"):
        rc, out = s_client(port, v, "-CAfile", pki["ca"])
        assert rc == 0 and "Verification: OK" in out, (v, out)
    # ... 1.1 and 1.0 are refused by the server. SECLEVEL=0 lets this
    # OpenSSL client offer them at all, so the refusal is the server's.
    for v in ("-tls1_1", "-tls1"):
        rc, out = s_client(port, v, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", pki["ca"])
        assert rc != 0 and "Protocol version" not in out, (v, out)
        assert "no protocols available" not in out, "the client refused by itself: " + out
    # the same client options with TLS 1.2 do connect: the version made the difference
    rc, out = s_client(port, "-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", pki["ca"])
    assert rc == 0 and "Protocol version: TLSv1.2" in out, out
    # and HTTPS carries webhooks
    ctx = ssl.create_default_context(cafile=pki["ca"])
    body = json.dumps({"user": "user1@example.com"})
    s, _, b = d.post("hmac", body, sign=HMAC_SECRET, context=ctx)
    assert s == 202, b


def test_mtls_refuses_clients_without_a_valid_cert(remedyd_factory, fake1p, pki):
    d = remedyd_factory(tls_config(pki), fake=fake1p, secrets={"hmac.hmac": HMAC_SECRET})

    def ctx(cert=None):
        c = ssl.create_default_context(cafile=pki["ca"])
        if cert:
            c.load_cert_chain(pki[cert], pki[cert + "_key"])
        return c

    def attempt(cert):
        try:
            s, _, b = d.post("mtls", {"user": "user2@example.com", "cert": str(cert)},
                             context=ctx(cert))
            return s
        except (ssl.SSLError, ConnectionError, OSError) as e:
            return "tls:%s" % type(e).__name__

    # no certificate, and a certificate (same subject) from another CA: refused
    for cert in (None, "intruder"):
        got = attempt(cert)
        assert got == 401 or str(got).startswith("tls:"), (cert, got)
    assert fake1p.requests(op="suspend") == []
    # the right certificate: accepted
    assert attempt("client") == 202
    wait_until(lambda: len(fake1p.requests(op="suspend")) == 1)
    # a valid certificate does not stand in for another source's auth
    s, _, _ = d.post("hmac", {"user": "user3@example.com"}, context=ctx("client"))
    assert s == 401


def test_every_test_checks_its_daemon_log_for_secrets(remedyd_factory, fake1p):
    """The remedyd fixture fails any test whose daemon logged a secret file's
    content or an access token; make sure that check sees one."""
    d = remedyd_factory(all_auth_config(), fake=fake1p, secrets=all_auth_secrets())
    assert d.secret_leaks() == []
    token = sorted(fake1p.access_tokens())[0]
    size = os.path.getsize(d.log_path)
    for leaked in (BASIC_PASSWORD, token):
        with open(d.log_path, "a") as f:
            f.write("<6>oops %s\n" % leaked)
        assert d.secret_leaks(), leaked
        os.truncate(d.log_path, size)
    assert d.secret_leaks() == []
