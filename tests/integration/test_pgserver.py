# SPDX-License-Identifier: MIT
"""tests/pgserver.py and the harness's PostgreSQL plumbing, on their own:
a private server starts, answers, restarts, survives kill -9 of its
postmaster and goes away; fixtures hand out fresh databases; daemons get
the section 8 state config. Needs no backend code in remedyd."""

import os
import socket
import subprocess
import sys
import time

import pytest

import harness
from harness import PgDatabase, Remedyd, pgserver

pytestmark = harness.requires_pg


def test_server_lifecycle():
    pg = pgserver.PgServer()  # not under tmp_path: its 0700 parents keep `postgres` out
    try:
        t = time.monotonic()
        pg.start()
        started = time.monotonic() - t
        assert pg.running() and pg.port and os.path.exists(pg.sockdir)
        # durability is the server's default: nothing lowered
        for setting, want in (("fsync", "on"), ("synchronous_commit", "on"),
                              ("full_page_writes", "on"), ("max_connections", "100")):
            assert pg.psql("SHOW " + setting) == [[want]], setting
        assert pg.psql("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
                       "template1") == [["1"]]
        conninfo = pg.create_database("life")
        assert "host=%s" % pg.sockdir in conninfo and "dbname=life" in conninfo
        assert pg.psql("CREATE TABLE t (k int PRIMARY KEY, v text); "
                       "INSERT INTO t VALUES (1, 'a|b'), (2, NULL) RETURNING k", "life") == \
            [["1"], ["2"]]
        assert pg.psql("SELECT k, v FROM t ORDER BY k", "life") == [["1", "a|b"], ["2", None]]
        with pytest.raises(pgserver.PgError):
            pg.psql("SELECT * FROM no_such_table", "life")
        port = pg.port
        pg.restart()
        assert pg.port == port and pg.running()
        pg.psql("INSERT INTO t VALUES (3, 'before the crash')", "life")
        pg.kill9()
        assert not pg.running()
        pg.start()  # crash recovery: the committed row is there
        assert pg.psql("SELECT v FROM t WHERE k = 3", "life") == [["before the crash"]]
        pg.stop("immediate")
        assert not pg.running()
        pg.start()
        assert pg.psql("SELECT count(*) FROM t", "life") == [["3"]]
        print("\nPGSERVER initdb %.2f s, first start %.2f s, %s" % (
            pg.timings["initdb"], started,
            ", ".join("%s %.3f s" % kv for kv in sorted(pg.timings.items()))))
    finally:
        d = pg.dir
        pg.cleanup()
    assert not os.path.exists(d)


def test_port_collision_is_retried(monkeypatch):
    """A port taken between the probe and the server's bind: another one."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    ports = [busy.getsockname()[1]]
    real = pgserver._free_port
    monkeypatch.setattr(pgserver, "_free_port", lambda: ports.pop() if ports else real())
    pg = pgserver.PgServer()
    try:
        pg.start()
        assert pg.running() and pg.port != busy.getsockname()[1]
        assert "could not bind" in pg.log_text()
    finally:
        pg.cleanup()
        busy.close()


def test_tcp_listener_needs_the_password(pg_server, pg_database):
    psql = os.path.join(pgserver.PG_BIN, "psql")

    def query(conninfo):
        return subprocess.run([psql, "-X", "-At", "-d", conninfo, "-c", "SELECT current_database()"],
                              capture_output=True, text=True, timeout=30)
    r = query(pg_database.tcp_conninfo)
    assert r.returncode == 0 and r.stdout.strip() == pg_database.name, r.stderr
    assert "host=127.0.0.1" in pg_database.tcp_conninfo
    r = query(pg_database.tcp_conninfo.replace(pg_server.password, "wrong-password"))
    assert r.returncode != 0 and "password authentication failed" in r.stderr


def test_fresh_database_per_test(pg_database):
    assert pg_database.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == \
        [["0"]]
    pg_database.psql("CREATE SCHEMA remedyd; CREATE TABLE remedyd.x (i int)")
    other = PgDatabase()
    try:
        assert other.name != pg_database.name
        assert other.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'remedyd'") == [["0"]]
    finally:
        other.drop()
    assert other.name not in pg_database.server.databases()


def test_cli_run_exports_the_conninfo_and_exit_code(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, subprocess, sys\n"
        "ci = os.environ['REMEDYD_TEST_PG_CONNINFO']\n"
        "out = subprocess.run([%r, '-X', '-At', '-d', ci, '-c', 'SHOW fsync'],\n"
        "                     capture_output=True, text=True).stdout.strip()\n"
        "open(sys.argv[1], 'w').write(ci + '\\n' + out)\n"
        "sys.exit(7)\n" % os.path.join(pgserver.PG_BIN, "psql"))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, os.path.join(harness.SOURCE_ROOT, "tests", "pgserver.py"),
                        "run", "--", sys.executable, str(probe), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 7, r.stderr
    conninfo, fsync = out.read_text().split("\n")
    assert fsync == "on"
    host = dict(kv.split("=", 1) for kv in conninfo.split())["host"]
    assert host.startswith("/") and not os.path.exists(host), "server directory left behind"


def test_daemon_state_config_on_postgresql(tmp_path, pg_database):
    d = Remedyd(tmp_path / "rd", backend="postgresql", pg_database=pg_database,
                instance="web-1", lease="3s", start=False)
    state = d.config["state"]
    assert state == {"backend": "postgresql",
                     "postgresql": {"conninfo_file": d.secret_path("pg_conninfo"),
                                    "schema": "remedyd", "pool": 2},
                     "instance": "web-1", "lease": "3s"}
    assert open(d.secret_path("pg_conninfo")).read() == pg_database.conninfo + "\n"
    assert os.stat(d.secret_path("pg_conninfo")).st_mode & 0o077 == 0
    tcp = Remedyd(tmp_path / "rd-tcp", backend="postgresql", pg_database=pg_database,
                  pg_tcp=True, start=False)
    assert open(tcp.secret_path("pg_conninfo")).read().startswith("host=127.0.0.1 ")
    assert tcp.instance != d.instance
    sq = Remedyd(tmp_path / "rd-sqlite", backend="sqlite", start=False)
    assert sq.config["state"] == {"path": os.path.join(sq.dir, "state.db")} and sq.pg is None


def test_cluster_fixture_shares_one_database(remedyd_cluster, pg_database, fake1p):
    a, b, c = remedyd_cluster(3, start=False, each=[{}, {"pg_tcp": True}, {}])
    assert [d.instance for d in (a, b, c)] == ["node-a", "node-b", "node-c"]
    assert len({d.dir for d in (a, b, c)}) == 3
    assert len({d.control_socket for d in (a, b, c)}) == 3
    assert all(d.pg is pg_database and d.fake is fake1p for d in (a, b, c))
    assert open(b.secret_path("pg_conninfo")).read().startswith("host=127.0.0.1 ")
    assert a.config["listen"]["webhook"] == "127.0.0.1:0"
