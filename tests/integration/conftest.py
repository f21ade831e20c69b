# SPDX-License-Identifier: MIT
"""Fixtures every integration test uses (the classes live in harness.py).

  fake1p              a fake 1Password API (options from @pytest.mark.fake1p(**kw),
                      default 50 users); stopped after the test
  fake1p_factory      fake1p_factory(**kw) -> another fake (same options as
                      harness.FakeOnePassword)
  remedyd_factory     remedyd_factory(config=None, fake=None, secrets=None, args=(),
                      wait_ready=True, start=True) -> harness.Remedyd against `fake`
                      (default: the fake1p fixture); stopped after the test, and the
                      test errors if the daemon's log holds a sanitizer report or a
                      secret (harness.Remedyd.secret_leaks)
  remedyd             remedyd_factory() with @pytest.mark.remedyd(config=..., secrets=...)
  harness.requires_remedyd   skip marker for tests that need the daemon binary

State backend: REMEDYD_TEST_BACKEND=postgresql (meson suite integration-pg)
runs every daemon on PostgreSQL instead of SQLite:
  pg_server           (session) the private PostgreSQL server (tests/pgserver.py),
                      started the first time a test needs it
  pg_database         a fresh database on it for this test, dropped afterwards
                      (harness.PgDatabase: .conninfo, .tcp_conninfo, .psql(sql));
                      under postgresql every remedyd_factory daemon of the test
                      shares it
  remedyd_cluster     remedyd_cluster(n=2, config=None, fake=None, names=None,
                      each=None, **kw) -> n daemons on PostgreSQL (whatever
                      REMEDYD_TEST_BACKEND says) sharing pg_database and the fake,
                      each with its own directory, listeners and instance name
                      (names, default node-a, node-b, ...); `each` is a list of
                      per-daemon keyword overrides; other keywords go to
                      remedyd_factory for all of them
  harness.sqlite_only(why)   skip marker for tests that rely on SQLite-only facts
  harness.requires_pg        skip marker for tests that need PostgreSQL installed

Tests may `from harness import wait_until, assert_no_secrets, hmac_sign, ...`.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FakeOnePassword, Remedyd, assert_no_secrets,  # noqa: E402,F401
                     wait_until)

requires_remedyd = harness.requires_remedyd


def pytest_configure(config):
    config.addinivalue_line("markers", "fake1p(**options): options of the fake1p fixture")
    config.addinivalue_line("markers", "remedyd(**options): options of the remedyd fixture")


@pytest.fixture
def fake1p_factory(tmp_path):
    def new_fake(n, **kw):
        return FakeOnePassword(tmp_path / ("fake1p-%d" % n), **kw)
    with harness.server_factory(new_fake) as make:
        yield make


@pytest.fixture
def fake1p(request, fake1p_factory):
    m = request.node.get_closest_marker("fake1p")
    kw = {"users": 50}
    if m:
        kw.update(m.kwargs)
    return fake1p_factory(**kw)


@pytest.fixture(scope="session")
def pg_server():
    if not harness.pgserver.available():
        pytest.skip("PostgreSQL 15 not installed under %s" % harness.pgserver.PG_BIN)
    yield harness.pg_server()
    harness.pg_server_cleanup()


@pytest.fixture
def pg_database(pg_server):
    db = harness.PgDatabase()
    yield db
    db.drop()


@pytest.fixture
def remedyd_factory(request, tmp_path):
    daemons = []
    # requested here, before the first daemon, so that it outlives them all
    shared_db = request.getfixturevalue("pg_database") if harness.BACKEND == "postgresql" \
        else None

    def make(config=None, fake=None, start=True, wait_ready=True, **kw):
        if fake is None:
            fake = request.getfixturevalue("fake1p")
        if shared_db is not None and kw.get("backend", "postgresql") == "postgresql":
            kw.setdefault("pg_database", shared_db)
        d = Remedyd(tmp_path / ("remedyd-%d" % len(daemons)), fake, config, start=False, **kw)
        daemons.append(d)
        if start:
            d.start(wait_ready=wait_ready)
        return d
    yield make
    reports = []
    for d in daemons:
        d.cleanup()
        rep = d.sanitizer_report()
        if rep:
            reports.append("%s:\n%s" % (d.log_path, rep))
        # no secret (secret files, access tokens) in any daemon log, in any test
        for leak in d.secret_leaks():
            reports.append("%s: %s" % (d.log_path, leak))
    if reports:
        pytest.fail("sanitizer reports or secrets in the daemon log:\n" + "\n".join(reports),
                    pytrace=False)


@pytest.fixture
def remedyd(request, remedyd_factory):
    m = request.node.get_closest_marker("remedyd")
    return remedyd_factory(**(m.kwargs if m else {}))


@pytest.fixture
def remedyd_cluster(pg_database, remedyd_factory):
    def make(n=2, config=None, fake=None, names=None, each=None, **kw):
        names = list(names or ["node-%s" % chr(ord("a") + i) for i in range(n)])
        each = list(each or [{}] * len(names))
        assert len(each) == len(names), "one `each` entry per daemon"
        out = []
        for name, own in zip(names, each):
            args = dict(kw, backend="postgresql", pg_database=pg_database, instance=name)
            args.update(own)
            out.append(remedyd_factory(config, fake=fake, **args))
        return out
    return make
