# SPDX-License-Identifier: MIT
"""Logging to the journal: when JOURNAL_STREAM names remedyd's stderr, log
lines go to journald with structured fields (REMEDYD_EVENT_ID,
REMEDYD_RULE, REMEDYD_ACTION_ID, REMEDYD_USER, PRIORITY).

journald does not run on the test machines (systemd is not PID 1), so the
test stands in for it: it binds the journal's native socket
/run/systemd/journal/socket and parses what arrives. Skipped where a real
journald owns that socket."""

import json
import os
import socket
import struct
import subprocess

import pytest

import harness
from harness import hmac_source, requires_remedyd, wait_until

pytestmark = requires_remedyd

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SECRET = "journal-hmac-secret-7788"


def parse_native(data):
    """The journal native protocol: KEY=value\\n, or KEY\\n<le64 size><bytes>\\n."""
    fields = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode(errors="replace")
            i = nl + 1
        else:
            size = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            fields[line.decode()] = data[nl + 9:nl + 9 + size].decode(errors="replace")
            i = nl + 9 + size + 1
    return fields


@pytest.fixture
def journald():
    if os.path.exists(JOURNAL_SOCKET):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(JOURNAL_SOCKET)
            pytest.skip("a journald owns %s here" % JOURNAL_SOCKET)
        except ConnectionRefusedError:
            os.unlink(JOURNAL_SOCKET)  # left by an earlier run that was killed
        finally:
            probe.close()
    try:
        os.makedirs(os.path.dirname(JOURNAL_SOCKET), exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(JOURNAL_SOCKET)
    except OSError as e:
        pytest.skip("cannot stand in for journald: %s" % e)
    s.setblocking(False)
    entries = []

    def drain():
        while True:
            try:
                entries.append(parse_native(s.recv(1 << 20)))
            except BlockingIOError:
                return entries
    yield drain
    s.close()
    os.unlink(JOURNAL_SOCKET)


def test_structured_journal_fields(remedyd_factory, fake1p, journald):
    cfg = {"sources": [hmac_source("siem")],
           "rules": [{"name": "journal-rule", "source": "siem", "action": "suspend",
                      "user": "${user}", "when": {"field": "kind", "equals": "bad"}}]}
    d = remedyd_factory(cfg, fake=fake1p, secrets={"siem.hmac": SECRET}, start=False)
    open(d.log_path, "ab").close()
    st = os.stat(d.log_path)
    # The harness finds listeners in the stderr log; under the journal they
    # are in journal entries, so start the process here and read them there.
    env = {k: v for k, v in os.environ.items() if k not in harness.SCRUBBED_ENV}
    env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    log = open(d.log_path, "ab")
    proc = subprocess.Popen([d.binary, "-c", d.config_path], stderr=log, stdout=log,
                            stdin=subprocess.DEVNULL, env=env, cwd=d.dir)
    try:
        def listener(kind):
            for e in journald():
                m = e.get("MESSAGE", "")
                if m.startswith(kind + " listener on "):
                    return m.split(" on ", 1)[1]
            return None
        addr = wait_until(lambda: listener("webhook"), message="webhook listener in the journal")
        d.addresses["webhook"] = addr
        d.addresses["status"] = wait_until(lambda: listener("status"))
        body = json.dumps({"kind": "bad", "user": "user3@example.com"}).encode()
        s, _, b = d.post("siem", body, sign=SECRET)
        assert s == 202, b
        ev = b["event_id"]

        def confirmed():
            for e in journald():
                if e.get("REMEDYD_EVENT_ID") == ev and "confirmed" in e.get("MESSAGE", ""):
                    return e
            return None
        e = wait_until(confirmed, message="the confirmation entry with its fields")
        assert e["REMEDYD_RULE"] == "journal-rule"
        assert e["REMEDYD_USER"] == "user3@example.com"
        assert len(e["REMEDYD_ACTION_ID"]) == 32
        assert e["PRIORITY"] in ("5", "6")
        assert e["SYSLOG_IDENTIFIER"] == "remedyd"
        # nothing went to stderr as text while the journal took it
        assert "listener on" not in open(d.log_path, errors="replace").read()
        for entry in journald():
            assert SECRET not in json.dumps(entry)
            assert fake1p.client_secret not in json.dumps(entry)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        log.close()
