#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A private PostgreSQL 15 server for the tests: initdb + pg_ctl in a
temporary directory, nothing shared with a system cluster.

It listens on a unix socket in its own directory and on 127.0.0.1 at a port
the OS picked. Durability is the server's default (fsync, synchronous_commit
and full_page_writes on): remedyd promises fsync'd commits and the tests
must see what a real server does. Started as the `postgres` system user
when run as root (initdb refuses root). Every wait polls with a bound.

Library use (tests/integration/conftest.py):

    pg = PgServer().start()
    pg.create_database("t1")
    pg.conninfo("t1")          # "host=/tmp/pgserver-x/run port=N user=postgres dbname=t1"
    pg.conninfo("t1", tcp=True)  # host=127.0.0.1 ... password=...
    pg.psql("SELECT 1", "t1")  # [["1"]]
    pg.kill9(); pg.start()     # crash and recovery
    pg.cleanup()

Command line:

    python3 tests/pgserver.py run [--keep] -- CMD ARGS...
        starts a server, creates a database, runs CMD with
        REMEDYD_TEST_PG_CONNINFO (libpq keyword/value conninfo of that
        database over the unix socket) and REMEDYD_TEST_PG_TCP_CONNINFO in
        its environment, stops the server, exits with CMD's exit code.
    python3 tests/pgserver.py selftest
        start, query, restart, kill -9 and recover; prints timings.

Python 3.11 standard library only.
"""

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get("REMEDYD_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_LIB = os.environ.get("REMEDYD_PG_LIB", "/usr/lib/postgresql/15/lib")
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"        # who runs the server when we are root

# Unaligned psql output: these never occur in what the tests store.
FIELD_SEP = "\x1f"
RECORD_SEP = "\x1e"
NULL_MARK = "\x1d"

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgError(RuntimeError):
    pass


def available():
    """Whether the PostgreSQL 15 server binaries are installed."""
    return all(os.access(os.path.join(PG_BIN, b), os.X_OK)
               for b in ("initdb", "pg_ctl", "postgres", "pg_isready", "psql"))


def poll(predicate, timeout, interval=0.02, what="condition", error=None):
    """Calls predicate() until it returns a true value, which is returned;
    raises `error` (default PgError) naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise (error or PgError)("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)



def _free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _children(pid):
    """Pids whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


class PgServer:
    """One private PostgreSQL server.

    base_dir: where the temporary directory is made (default $TMPDIR).
    settings: extra postgresql.conf lines {name: value}.
    The directory holds data/ (PGDATA), run/ (the unix socket), server.log.
    """

    def __init__(self, base_dir=None, settings=None, start_timeout=60, port_attempts=5):
        if not available():
            raise PgError("PostgreSQL 15 server not installed under %s "
                          "(apt-get install postgresql)" % PG_BIN)
        self.start_timeout = start_timeout
        self.port_attempts = port_attempts
        self.settings = dict(settings or {})
        self.dir = None
        self.port = None
        self.password = secrets.token_hex(12)
        self._base_dir = base_dir
        self._run_as = None
        self._initialized = False
        self.timings = {}

    # -- paths -------------------------------------------------------------
    @property
    def datadir(self):
        return os.path.join(self.dir, "data")

    @property
    def sockdir(self):
        return os.path.join(self.dir, "run")

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    # -- running things ------------------------------------------------------
    def _as_server_user(self, argv):
        if self._run_as is None:
            return list(argv)
        return ["runuser", "-u", self._run_as, "--"] + list(argv)

    def _run(self, argv, timeout=60, check=True, as_server=True, input=None):
        cmd = self._as_server_user(argv) if as_server else list(argv)
        env = dict(os.environ, LC_ALL="C", LANG="C")
        for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE",
                  "PGOPTIONS"):
            env.pop(k, None)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL,
                           cwd="/")
        if check and r.returncode != 0:
            raise PgError("%s exited with %d: %s%s" % (os.path.basename(argv[0]), r.returncode,
                                                       r.stderr.strip(), r.stdout.strip()))
        return r

    def _bin(self, name):
        return os.path.join(PG_BIN, name)

    def _make_dir(self):
        self.dir = tempfile.mkdtemp(prefix="pgserver-", dir=self._base_dir)
        os.chmod(self.dir, 0o755)
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(SYSTEM_USER)
            self._run_as = SYSTEM_USER
            for p in (self.dir, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            parent = os.path.dirname(self.dir)
            while parent != "/":
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    shutil.rmtree(self.dir)
                    self.dir = None
                    raise PgError("%s is not searchable by the %s user; give PgServer a "
                                  "base_dir it can reach" % (parent, SYSTEM_USER))
                parent = os.path.dirname(parent)

    def _initdb(self):
        t = time.monotonic()
        pwfile = os.path.join(self.dir, "pwfile")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        try:
            self._run([self._bin("initdb"), "-D", self.datadir, "-U", SUPERUSER,
                       "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
                       "-E", "UTF8", "--locale=C"], timeout=180)
        finally:
            os.unlink(pwfile)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.sockdir,
            "max_connections": "100",
            "shared_buffers": "32MB",
            "log_line_prefix": "'%m [%p] %d '",
            "lc_messages": "'C'",
            "timezone": "'UTC'",
        }
        if os.path.exists(os.path.join(PG_LIB, "pg_stat_statements.so")):
            conf["shared_preload_libraries"] = "'pg_stat_statements'"
        conf.update({k: str(v) for k, v in self.settings.items()})
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# tests/pgserver.py\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        self._initialized = True
        self.timings["initdb"] = time.monotonic() - t

    # -- lifecycle ---------------------------------------------------------------
    def start(self):
        """Creates the cluster on first use, then starts the server and waits
        (bounded) until it accepts connections. Keeps the port once chosen,
        so conninfo strings stay valid across restarts. Returns self."""
        if self.running():
            return self
        if self.dir is None:
            self._make_dir()
        if not self._initialized:
            self._initdb()
        t = time.monotonic()
        attempts = 1 if self.port else self.port_attempts
        for attempt in range(attempts):
            port = self.port or _free_port()
            try:
                self._start_on(port)
            except _PortBusy:
                if attempt + 1 == attempts:
                    raise PgError("no free port after %d attempts; log:\n%s"
                                  % (attempts, self.log_text()[-2000:]))
                continue
            self.port = port
            break
        self.timings["start"] = time.monotonic() - t
        if "pg_stat_statements" in self._conf_value("shared_preload_libraries"):
            # in template1, so every database created later has the view
            self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "template1")
        return self

    def _conf_value(self, key):
        try:
            with open(os.path.join(self.datadir, "postgresql.conf")) as f:
                vals = [l.split("=", 1)[1].strip() for l in f
                        if l.split("=", 1)[0].strip() == key]
        except OSError:
            return ""
        return vals[-1] if vals else ""

    def _start_on(self, port):
        log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        # -W: do not let pg_ctl wait; we poll pg_isready ourselves, with a bound
        self._run([self._bin("pg_ctl"), "start", "-W", "-D", self.datadir, "-l", self.log_path,
                   "-o", "-p %d" % port], timeout=30)

        def log_since():
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                f.seek(log_offset)
                return f.read()

        def ready():
            r = self._run([self._bin("pg_isready"), "-q", "-h", self.sockdir, "-p", str(port),
                           "-t", "1"], check=False, as_server=False, timeout=10)
            if r.returncode == 0:
                return True
            text = log_since() if os.path.exists(self.log_path) else ""
            if "could not bind" in text or "Address already in use" in text:
                self._wait_postmaster_gone()
                raise _PortBusy()
            if "FATAL" in text or "PANIC" in text:
                if not self._postmaster_pid():
                    raise PgError("postgres failed to start; log:\n%s" % text[-3000:])
            return False
        poll(ready, self.start_timeout, interval=0.05, what="pg_isready on port %d" % port)

    def _postmaster_pid(self):
        """The running postmaster's pid from postmaster.pid, or None."""
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError, TypeError):
            return None
        return pid if _pid_alive(pid) else None

    def _wait_postmaster_gone(self, timeout=20):
        poll(lambda: self._postmaster_pid() is None, timeout, what="the postmaster to exit")

    def running(self):
        """Whether the server accepts connections right now."""
        if self.port is None or self.dir is None or self._postmaster_pid() is None:
            return False
        r = self._run([self._bin("pg_isready"), "-q", "-h", self.sockdir, "-p", str(self.port),
                       "-t", "2"], check=False, as_server=False, timeout=10)
        return r.returncode == 0

    def stop(self, mode="fast", timeout=60):
        """pg_ctl stop -m fast|immediate (smart is not offered: it waits for
        clients such as a daemon's pool). No-op if not running."""
        if mode not in ("fast", "immediate"):
            raise ValueError("mode must be 'fast' or 'immediate'")
        if self.dir is None or self._postmaster_pid() is None:
            return
        t = time.monotonic()
        self._run([self._bin("pg_ctl"), "stop", "-D", self.datadir, "-m", mode, "-w",
                   "-t", str(int(timeout))], timeout=timeout + 10)
        self.timings["stop_" + mode] = time.monotonic() - t

    def restart(self, mode="fast"):
        self.stop(mode)
        return self.start()

    def kill9(self, timeout=20):
        """SIGKILL to the postmaster, as a crash would. Its backends notice
        and exit; any left after `timeout` are killed too, so that start()
        (which then runs crash recovery) finds no one holding the old
        shared memory."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        kids = _children(pid)
        os.kill(pid, signal.SIGKILL)
        poll(lambda: not _pid_alive(pid), timeout, what="the postmaster to die")
        try:
            poll(lambda: not any(_pid_alive(k) for k in kids), timeout,
                  what="the backends to exit")
        except PgError:
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            poll(lambda: not any(_pid_alive(k) for k in kids), timeout,
                  what="the killed backends to go")
        # postgres refuses to start while the old pid answers kill(pid, 0),
        # which a zombie does until its parent (pid 1: pg_ctl is gone) reaps it
        try:
            poll(lambda: not os.path.exists("/proc/%d" % pid), 5, what="the postmaster reaped")
        except PgError:
            os.unlink(os.path.join(self.datadir, "postmaster.pid"))

    def cleanup(self):
        """Stops the server (immediate) and removes its directory."""
        if self.dir is None:
            return
        try:
            self.stop("immediate")
        except (PgError, subprocess.TimeoutExpired):
            self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        self._initialized = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- clients ------------------------------------------------------------------
    def conninfo(self, dbname="postgres", tcp=False):
        """libpq keyword/value string for dbname: over the unix socket (trust
        authentication) or, with tcp=True, over 127.0.0.1 with the
        superuser's password (scram-sha-256)."""
        if tcp:
            return "host=127.0.0.1 port=%d user=%s password=%s dbname=%s" % (
                self.port, SUPERUSER, self.password, dbname)
        return "host=%s port=%d user=%s dbname=%s" % (self.sockdir, self.port, SUPERUSER, dbname)

    def psql(self, sql, db="postgres", timeout=60):
        """Runs sql (one or more statements) through psql over the socket;
        returns the rows of the last result as lists of str (None for NULL).
        Raises PgError on any SQL error."""
        r = self._run([self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-F", FIELD_SEP, "-R", RECORD_SEP, "-P", "null=" + NULL_MARK,
                       "-h", self.sockdir, "-p", str(self.port), "-U", SUPERUSER, "-d", db,
                       "-c", sql], timeout=timeout, check=False, as_server=False)
        if r.returncode != 0:
            raise PgError("psql: %s" % r.stderr.strip())
        out = r.stdout
        if out.endswith("\n"):
            out = out[:-1]
        if not out:
            return []
        return [[None if v == NULL_MARK else v for v in rec.split(FIELD_SEP)]
                for rec in out.split(RECORD_SEP)]

    def create_database(self, name):
        """A new empty database (a copy of template1) named name
        ([a-z_][a-z0-9_]*); returns its unix-socket conninfo."""
        if not _NAME_RE.match(name):
            raise ValueError("database name %r: use [a-z_][a-z0-9_]*" % name)
        t = time.monotonic()
        self.psql("CREATE DATABASE %s" % quote_ident(name))
        self.timings["create_database"] = time.monotonic() - t
        return self.conninfo(name)

    def drop_database(self, name):
        """Drops name, disconnecting whoever is still connected."""
        self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name))

    def databases(self):
        return [r[0] for r in self.psql("SELECT datname FROM pg_database ORDER BY 1")]


class _PortBusy(Exception):
    pass


# ---------------------------------------------------------------------- CLI

def _cmd_run(argv):
    keep = False
    while argv and argv[0] != "--":
        if argv[0] == "--keep":
            keep = True
        else:
            print("pgserver: unknown option %s" % argv[0], file=sys.stderr)
            return 2
        argv = argv[1:]
    argv = argv[1:]
    if not argv:
        print("usage: pgserver.py run [--keep] -- CMD ARGS...", file=sys.stderr)
        return 2
    pg = PgServer()
    try:
        pg.start()
        env = dict(os.environ,
                   REMEDYD_TEST_PG_CONNINFO=pg.create_database("remedyd_test"),
                   REMEDYD_TEST_PG_TCP_CONNINFO=pg.conninfo("remedyd_test", tcp=True))
        try:
            proc = subprocess.Popen(argv, env=env)
        except OSError as e:
            print("pgserver: %s: %s" % (argv[0], e), file=sys.stderr)
            return 127
        # the child's terminal signals reach it directly; we only wait
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            rc = proc.wait()
        finally:
            signal.signal(signal.SIGINT, old)
        if keep:
            print("pgserver: kept %s" % pg.dir, file=sys.stderr)
        return rc if rc >= 0 else 128 - rc
    except PgError as e:
        print("pgserver: %s" % e, file=sys.stderr)
        return 1
    finally:
        if keep:
            pg.stop("fast")
        else:
            pg.cleanup()


def selftest():
    """Start, query, restart, crash and recover one server; returns timings."""
    with PgServer() as pg:
        t = {"initdb": pg.timings["initdb"], "start": pg.timings["start"]}
        pg.create_database("selftest")
        t["create_database"] = pg.timings["create_database"]
        assert pg.running()
        pg.psql("CREATE TABLE t (k int PRIMARY KEY, v text); "
                "INSERT INTO t VALUES (1, 'one'), (2, NULL)", "selftest")
        assert pg.psql("SELECT k, v FROM t ORDER BY k", "selftest") == [["1", "one"], ["2", None]]
        assert pg.psql("SHOW fsync", "selftest") == [["on"]]
        assert pg.psql("SHOW synchronous_commit", "selftest") == [["on"]]
        port = pg.port
        pg.restart()
        t["stop_fast"] = pg.timings["stop_fast"]
        t["restart"] = pg.timings["start"]
        assert pg.port == port and pg.running()
        assert pg.psql("SELECT count(*) FROM t", "selftest") == [["2"]]
        pg.psql("INSERT INTO t VALUES (3, 'committed before the crash')", "selftest")
        pg.kill9()
        assert not pg.running()
        pg.start()
        t["start_after_kill9"] = pg.timings["start"]
        assert pg.psql("SELECT v FROM t WHERE k = 3", "selftest") == [["committed before the crash"]]
        pg.stop("immediate")
        t["stop_immediate"] = pg.timings["stop_immediate"]
        assert not pg.running()
        return {k: round(v, 3) for k, v in t.items()}


def main(argv):
    if len(argv) >= 1 and argv[0] == "run":
        return _cmd_run(argv[1:])
    if argv == ["selftest"]:
        for k, v in selftest().items():
            print("%-18s %.3f s" % (k, v))
        return 0
    print(__doc__.split("Command line:")[1].split("Python 3.11")[0].rstrip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
