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
    fakes = []

    def make(**kw):
        f = FakeOnePassword(tmp_path / ("fake1p-%d" % len(fakes)), **kw)
        fakes.append(f)
        return f
    yield make
    for f in fakes:
        f.stop()


@pytest.fixture
def fake1p(request, fake1p_factory):
    m = request.node.get_closest_marker("fake1p")
    kw = {"users": 50}
    if m:
        kw.update(m.kwargs)
    return fake1p_factory(**kw)


@pytest.fixture
def remedyd_factory(request, tmp_path):
    daemons = []

    def make(config=None, fake=None, start=True, wait_ready=True, **kw):
        if fake is None:
            fake = request.getfixturevalue("fake1p")
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
