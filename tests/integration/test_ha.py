# SPDX-License-Identifier: MIT
"""Several remedyd instances sharing one PostgreSQL database (contract
section 8, issue 13), each test against a real private server
(tests/pgserver.py) and the fake 1Password API shared by the instances.

Sizes and bounds (environment, defaults keep the file to a few minutes on
two busy cores):
  REMEDYD_HA_ALERTS          alerts in the round-robin redelivery test (1000)
  REMEDYD_HA_SENDERS         concurrent senders where a test has several (8)
  REMEDYD_HA_OUTAGE_SECONDS  how long PostgreSQL is down in the outage test (10)
  REMEDYD_HA_OUTAGE_ALERTS   alerts sent across that outage (150)
  REMEDYD_HA_TAKEOVER_SLACK  seconds allowed beyond lease + 1 s for our own
                             polling in the kill -9 test (0.5)
Figures are printed (pytest -s shows them) as lines starting "HA ".
"""

import collections
import json
import os
import re
import threading
import time

import pytest

import harness
from harness import hmac_source, requires_pg, requires_remedyd, wait_until

pytestmark = [requires_remedyd, requires_pg]

SECRET = "ha-hmac-secret-5d1e07"
SCALE = harness.TIMEOUT_SCALE
N_ALERTS = int(os.environ.get("REMEDYD_HA_ALERTS", "1000"))
N_SENDERS = int(os.environ.get("REMEDYD_HA_SENDERS", "8"))
OUTAGE_SECONDS = float(os.environ.get("REMEDYD_HA_OUTAGE_SECONDS", "10"))
OUTAGE_ALERTS = int(os.environ.get("REMEDYD_HA_OUTAGE_ALERTS", "150"))
TAKEOVER_SLACK = float(os.environ.get("REMEDYD_HA_TAKEOVER_SLACK", "0.5"))


def report(name, **figures):
    print("\nHA " + json.dumps(dict(test=name, **figures), sort_keys=True))


def rule(**over):
    r = {"name": "contain", "source": "siem", "action": "suspend", "user": "${user}",
         "reason": "alert ${alert_id}"}
    r.update(over)
    return r


def config(rules=None, **extra):
    cfg = {"sources": [hmac_source("siem", event_id="${alert_id}")],
           "rules": rules or [rule()]}
    cfg.update(extra)
    return cfg


def cluster(remedyd_cluster, cfg=None, n=2, **kw):
    kw.setdefault("secrets", {"siem.hmac": SECRET})
    return remedyd_cluster(n, cfg or config(), **kw)


def alert(i, user):
    return {"alert_id": "HA-%05d" % i, "user": user, "severity": "high"}


def deliver(d, body, timeout=20):
    """(status, headers, JSON) of one delivery; a connection error is status None."""
    try:
        return d.post("siem", body, sign=SECRET, timeout=timeout * SCALE)
    except OSError as e:
        return None, {}, {"error": type(e).__name__}


def user_ids(fake, n, first=1):
    """Ids of generated users first..first+n-1 (user0 is the account owner)."""
    by_email = {u["email"]: u["id"] for u in fake.users()}
    return [by_email["user%d@example.com" % i] for i in range(first, first + n)]


def calls_by_user(fake, op):
    """Counter: user id -> number of `op` (suspend|reactivate) requests."""
    out = collections.Counter()
    for r in fake.requests(op=op):
        out[re.split(r":|%3[Aa]", r["path"].rsplit("/users/", 1)[1])[0]] += 1
    return out


def call_times(fake, op, uid):
    return [r["time"] for r in fake.requests(op=op) if "/users/%s" % uid in r["path"]]


def queue_idle(d):
    q = d.get_status()["queue"]
    return q["queued"] == 0 and q["running"] == 0


def instance_names(status):
    """state.instances as a set of names (a list of names, or of objects
    carrying one), or the count if the daemon gives a number."""
    inst = status["state"]["instances"]
    if isinstance(inst, int):
        return inst
    names = set()
    for x in inst:
        names.add(x if isinstance(x, str) else x.get("name") or x.get("instance"))
    return names


def sees_instances(d, names):
    got = instance_names(d.get_status())
    return got >= len(names) if isinstance(got, int) else set(names) <= got


def action_view(d):
    """remedyctl actions through d: {id: (user, action, status)}."""
    return {a["id"]: (a["user"], a["action"], a["status"]) for a in d.ctl_json("actions")}


def same_actions(a, b):
    """Sorted (id, rule, action, user) of two webhook answers' actions."""
    def key(body):
        return sorted((x["id"], x["rule"], x["action"], x["user"]) for x in body["actions"])
    return key(a) == key(b)


class Tickets:
    """The numbers 0..n-1, each handed to one of the threads that ask."""

    def __init__(self, n):
        self._numbers = iter(range(n))
        self._lock = threading.Lock()

    def take(self):
        """The next number, or None when all are taken."""
        with self._lock:
            return next(self._numbers, None)


def run_threads(fn, args_list):
    threads = [threading.Thread(target=fn, args=a, daemon=True) for a in args_list]
    for t in threads:
        t.start()
    return threads


def join_all(threads, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, "%d sender threads still running after %.0f s" % (len(alive), timeout)


# ----------------------------------------------------- a. dedup across instances

@pytest.mark.fake1p(users=N_ALERTS + 1)
def test_round_robin_with_redelivery_to_the_other_instance(remedyd_cluster, fake1p):
    """N_ALERTS alerts, alert i to instance i % 2; every one redelivered to
    the other instance, one in five at the same moment as the first
    delivery: each alert accepted as new exactly once, every redelivery a
    200 duplicate with the original actions, every user suspended once."""
    a, b = cluster(remedyd_cluster)
    nodes = (a, b)
    ids = user_ids(fake1p, N_ALERTS)
    assert len(ids) == N_ALERTS
    lock = threading.Lock()
    answers = {}       # i -> [(instance, status, body)]
    problems = []
    tickets = Tickets(N_ALERTS)

    def both_at_once(i, first, second, body):
        barrier = threading.Barrier(2)
        got = {}

        def one(k, d):
            barrier.wait(10)
            got[k] = (d.instance,) + deliver(d, body)[::2]
        join_all(run_threads(one, [(0, first), (1, second)]), 30 * SCALE)
        return [got[0], got[1]]

    def sender():
        while (i := tickets.take()) is not None:
            first, second = nodes[i % 2], nodes[(i + 1) % 2]
            body = alert(i, ids[i])
            if i % 5 == 0:
                res = both_at_once(i, first, second, body)
            else:
                s1, _, b1 = deliver(first, body)
                s2, _, b2 = deliver(second, body)
                res = [(first.instance, s1, b1), (second.instance, s2, b2)]
            with lock:
                answers[i] = res

    t0 = time.monotonic()
    join_all(run_threads(sender, [()] * N_SENDERS), 300 * SCALE)
    post_seconds = time.monotonic() - t0
    for i in range(N_ALERTS):
        res = answers.get(i)
        if res is None:
            problems.append((i, "no answer: its sender failed"))
            continue
        codes = sorted((s for _, s, _ in res), key=str)
        if codes != [200, 202]:
            problems.append((i, codes, [b for _, _, b in res]))
            continue
        new = [b for _, s, b in res if s == 202][0]
        dup = [b for _, s, b in res if s == 200][0]
        if not (new["duplicate"] is False and dup["duplicate"] is True and
                dup["event_id"] == new["event_id"] and same_actions(new, dup) and
                [x["status"] for x in new["actions"]] == ["queued"]):
            problems.append((i, "answers differ", new, dup))
    assert problems == [], "%d alerts not accepted exactly once: %s" % (len(problems),
                                                                        problems[:3])
    wait_until(lambda: sum(calls_by_user(fake1p, "suspend").values()) >= N_ALERTS,
               timeout=120 * SCALE, interval=0.25, message="every alert's suspension")
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=60 * SCALE, interval=0.2)
    calls = calls_by_user(fake1p, "suspend")
    twice = {u: n for u, n in calls.items() if n != 1}
    assert twice == {}, "suspended more than once: %s" % list(twice.items())[:5]
    assert set(calls) == set(ids)
    done = [x for x in a.ctl_json("actions") if x["action"] == "suspend"]
    assert len(done) == N_ALERTS and all(x["status"] == "done" for x in done)
    concurrent = sum(1 for i in range(N_ALERTS) if i % 5 == 0)
    report("round_robin", alerts=N_ALERTS, deliveries=2 * N_ALERTS, concurrent_pairs=concurrent,
           post_seconds=round(post_seconds, 1), suspend_calls=sum(calls.values()))
    assert a.alive() and b.alive()


# ----------------------------------------------------- b. one cap for all instances

@pytest.mark.fake1p(users=50)
def test_cap_is_global_and_release_works_from_the_other_instance(remedyd_cluster, fake1p):
    cfg = config(safety={"max_suspensions": {"count": 5, "window": "1h"}})
    a, b = cluster(remedyd_cluster, cfg)
    ids = user_ids(fake1p, 40)
    barrier = threading.Barrier(40)
    got = {}

    def send(k):
        d = (a, b)[k % 2]
        barrier.wait(30)
        got[k] = (d,) + deliver(d, alert(k, ids[k]))[::2]
    join_all(run_threads(send, [(k,) for k in range(40)]), 60 * SCALE)
    assert {s for _, s, _ in got.values()} == {202}, \
        [(k, s, body) for k, (_, s, body) in got.items() if s != 202][:3]
    status = collections.Counter(body["actions"][0]["status"] for _, _, body in got.values())
    assert status == {"queued": 5, "held": 35}, status
    wait_until(lambda: sum(calls_by_user(fake1p, "suspend").values()) >= 5, timeout=30 * SCALE)
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=30 * SCALE)
    assert sum(calls_by_user(fake1p, "suspend").values()) == 5
    for d in (a, b):
        st = d.get_status()
        assert st["safety"]["suspensions_in_window"] == 5, (d.instance, st["safety"])
        assert st["queue"]["held"] == 35, (d.instance, st["queue"])
    # a held action accepted by one instance, released through the other
    k = next(k for k, (_, _, body) in got.items() if body["actions"][0]["status"] == "held")
    accepted_by = got[k][0]
    other = b if accepted_by is a else a
    held_id = got[k][2]["actions"][0]["id"]
    r = other.ctl("release", held_id)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: calls_by_user(fake1p, "suspend").get(ids[k]) == 1, timeout=30 * SCALE,
               message="the released action's suspension")
    wait_until(lambda: action_view(accepted_by).get(held_id, (0, 0, 0))[2] == "done",
               timeout=30 * SCALE, message="the released action done, seen by its acceptor")
    assert sum(calls_by_user(fake1p, "suspend").values()) == 6
    assert other.ctl("release", held_id).returncode != 0  # not held any more, anywhere
    report("global_cap", alerts=40, queued=5, held=35, released_through=other.instance)


# ----------------------------------------------------- c. kill -9 and takeover

LEASE = 3.0


@pytest.mark.fake1p(users=20)
def test_kill9_of_the_instance_running_actions(remedyd_cluster, fake1p):
    """Instance A has every action on the wire (the fake answers :suspend
    only after 30 s) when it is killed -9: B takes each over within lease
    + 1 s and completes it; A, restarted, shows up in the instances again."""
    m = 5
    # a call timeout past the fake's delay: A's calls stay on the wire until the kill
    a, b = cluster(remedyd_cluster, config(onepassword={"timeout": "60s"}),
                   lease="%ds" % LEASE, start=False)
    ids = user_ids(fake1p, m)
    a.start()
    fake1p.fault(op="suspend", delay=30, times=m)
    acked = []
    for k in range(m):
        s, _, body = deliver(a, alert(k, ids[k]))
        assert s == 202, body
        acked.append(body["actions"][0]["id"])
    wait_until(lambda: len(fake1p.requests(op="suspend")) == m, timeout=20 * SCALE,
               message="A's suspensions on the wire")
    b.start()
    wait_until(lambda: sees_instances(b, ["node-a", "node-b"]), timeout=20 * SCALE,
               message="B to see both instances")
    view = action_view(b)
    assert all(view[x][2] == "running" for x in acked), view
    assert len(fake1p.requests(op="suspend")) == m, "B took over actions A holds a live lease on"
    t_kill = time.time()
    a.kill9()

    def taken_over():
        return all(any(t > t_kill for t in call_times(fake1p, "suspend", u)) for u in ids)
    wait_until(taken_over, timeout=(LEASE + 10) * SCALE, interval=0.05,
               message="B's calls for A's actions")
    late = {u: round(min(t for t in call_times(fake1p, "suspend", u) if t > t_kill) - t_kill, 2)
            for u in ids}
    bound = LEASE + 1 + TAKEOVER_SLACK
    assert max(late.values()) <= bound, "taken over after %s s (bound %.1f s)" % (late, bound)
    wait_until(lambda: all(action_view(b)[x][2] == "done" for x in acked),
               timeout=(LEASE + 10) * SCALE, message="every action done by B")
    assert b.alive()
    a.start()
    wait_until(lambda: sees_instances(b, ["node-a", "node-b"]) and
               sees_instances(a, ["node-a", "node-b"]), timeout=(LEASE + 10) * SCALE,
               message="the restarted A in both instances' state.instances")
    # A's old claims are not run again after its restart
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=20 * SCALE)
    assert all(action_view(a)[x][2] == "done" for x in acked)
    after = collections.Counter(u for u in ids for t in call_times(fake1p, "suspend", u)
                                if t > t_kill)
    assert all(n == 1 for n in after.values()), after
    report("kill9_takeover", lease=LEASE, actions=m, takeover_seconds=late)


# ----------------------------------------------------- d. database outage

@pytest.mark.fake1p(users=OUTAGE_ALERTS + 1)
def test_database_outage_under_load(remedyd_cluster, fake1p, pg_server):
    a, b = cluster(remedyd_cluster)
    ids = user_ids(fake1p, OUTAGE_ALERTS)
    lock = threading.Lock()
    acked = {}            # i -> answer body
    during = []           # (status, retry-after, body) sent and answered inside the outage
    codes = collections.Counter()
    tickets = Tickets(OUTAGE_ALERTS)
    down = {"since": None, "until": None}
    stop_sending = threading.Event()

    def sender():
        while not stop_sending.is_set() and (i := tickets.take()) is not None:
            body = alert(i, ids[i])
            deadline = time.monotonic() + (OUTAGE_SECONDS + 60) * SCALE
            k = 0
            while time.monotonic() < deadline and not stop_sending.is_set():
                d = (a, b)[(i + k) % 2]   # a retry may land on the other instance
                k += 1
                sent_at = time.monotonic()
                s, h, resp = deliver(d, body)
                with lock:
                    codes[str(s)] += 1
                    since, until = down["since"], down["until"]
                    if since is not None and sent_at > since and until is None:
                        during.append((s, h.get("retry-after"), resp))
                if s in (200, 202):
                    with lock:
                        acked[i] = resp
                    break
                # the sender backs off as a SIEM would, briefly: the test is bounded
                time.sleep(0.2)

    threads = run_threads(sender, [()] * 4)
    wait_until(lambda: len(acked) >= OUTAGE_ALERTS // 4, timeout=60 * SCALE,
               message="a quarter of the alerts accepted before the outage")
    try:
        pg_server.stop("fast")
        with lock:
            down["since"] = time.monotonic()
        outage_end = time.monotonic() + OUTAGE_SECONDS

        def readyz_names_db(d):
            s, _, body = d.status_raw("/readyz")
            return s == 503 and re.search(rb"database|postgres", body, re.I)
        wait_until(lambda: readyz_names_db(a) and readyz_names_db(b),
                   timeout=OUTAGE_SECONDS * SCALE, message="/readyz 503 naming the database")
        assert d_healthy(a) and d_healthy(b)
        wait_until(lambda: time.monotonic() >= outage_end, timeout=OUTAGE_SECONDS + 1,
                   interval=0.1)  # the outage's length itself
        with lock:
            down["until"] = time.monotonic()
    finally:
        if not pg_server.running():
            pg_server.start()
    assert a.alive() and b.alive(), "an instance exited during the outage"
    assert during, "no delivery was attempted during the outage"
    wrong = [x for x in during if x[0] != 503 or not x[1] or int(x[1]) < 1]
    assert wrong == [], "answers during the outage other than 503 + Retry-After: %s" % wrong[:3]
    join_all(threads, (OUTAGE_SECONDS + 90) * SCALE)
    assert sorted(acked) == list(range(OUTAGE_ALERTS)), "not every alert was accepted after"
    wait_until(lambda: set(calls_by_user(fake1p, "suspend")) >= set(ids),
               timeout=60 * SCALE, interval=0.25, message="every accepted alert suspended")
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=30 * SCALE)
    calls = calls_by_user(fake1p, "suspend")
    assert all(calls[u] == 1 for u in ids), [(u, calls[u]) for u in ids if calls[u] != 1][:5]
    for d in (a, b):
        wait_until(lambda: d.status_raw("/readyz")[0] == 200, timeout=30 * SCALE)
        assert d.get_status()["state"]["database"]["connected"] is True
    assert a.alive() and b.alive()
    report("db_outage", seconds=OUTAGE_SECONDS, alerts=OUTAGE_ALERTS,
           answered_during_outage=len(during), codes=dict(codes))


def d_healthy(d):
    return d.status_raw("/healthz")[0] == 200


# ----------------------------------------------------- e. timed reactivation once

@pytest.mark.fake1p(users=10)
def test_timed_reactivation_runs_once_after_its_instance_stops(remedyd_cluster, fake1p):
    a, b = cluster(remedyd_cluster, config(rules=[rule(**{"for": "2s"})]))
    [uid] = user_ids(fake1p, 1, first=3)
    s, _, body = deliver(a, alert(1, uid))
    assert s == 202, body
    wait_until(lambda: fake1p.user(uid)["state"] == "SUSPENDED", timeout=15 * SCALE)
    wait_until(lambda: action_view(a)[body["actions"][0]["id"]][2] == "done",
               timeout=15 * SCALE)
    assert a.stop() == 0
    t_stop = time.time()
    assert calls_by_user(fake1p, "reactivate") == {}, "A reactivated before it stopped"
    wait_until(lambda: fake1p.user(uid)["state"] == "ACTIVE", timeout=20 * SCALE,
               message="the timed reactivation, through B")
    assert min(call_times(fake1p, "reactivate", uid)) >= t_stop
    wait_until(lambda: queue_idle(b), timeout=15 * SCALE)
    a.start()  # A comes back: the reactivation it scheduled is not run again
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=15 * SCALE)
    assert calls_by_user(fake1p, "reactivate") == {uid: 1}
    assert calls_by_user(fake1p, "suspend") == {uid: 1}


# ----------------------------------------------------- f. migrate-state from SQLite

@pytest.mark.fake1p(users=20)
def test_migrate_state_from_sqlite(pg_database, remedyd_factory, fake1p):
    """A SQLite state with every kind of row, copied into an empty
    PostgreSQL schema: dedup window, cap window, cooldowns, held actions,
    timed reactivations and the audit trail carry over; a second migration
    into the now non-empty target is refused."""
    cfg = config(rules=[rule(cooldown="30m", **{"for": "12s"})],
                 safety={"max_suspensions": {"count": 3, "window": "1h"}})
    ids = user_ids(fake1p, 5)
    old = remedyd_factory(cfg, secrets={"siem.hmac": SECRET}, backend="sqlite")
    first = {}
    for k in range(4):  # three suspensions fill the cap, the fourth is held
        s, _, body = deliver(old, alert(k, ids[k]))
        assert s == 202, body
        first[k] = body
    assert [first[k]["actions"][0]["status"] for k in range(4)] == \
        ["queued", "queued", "queued", "held"]
    s, _, body = deliver(old, alert(10, ids[0]))  # same user again: cooldown
    assert body["actions"][0]["status"] == "cooldown", body
    wait_until(lambda: all(calls_by_user(fake1p, "suspend").get(ids[k]) == 1 for k in range(3)),
               timeout=20 * SCALE)
    # not queue_idle(): the timed reactivations wait in the queue
    wait_until(lambda: all(action_view(old)[first[k]["actions"][0]["id"]][2] == "done"
                           for k in range(3)), timeout=15 * SCALE)
    old_actions = {x["id"]: x for x in old.ctl_json("actions")}
    old_history = old.ctl_json("history")
    assert old.stop() == 0
    t_stopped = time.time()
    assert calls_by_user(fake1p, "reactivate") == {}, "reactivated before the migration"

    new = remedyd_factory(cfg, secrets={"siem.hmac": SECRET}, backend="postgresql",
                          pg_database=pg_database, instance="migrated", start=False)
    src = "sqlite:" + old.config["state"]["path"]
    r = new.ctl("migrate-state", "--from", src)
    assert r.returncode == 0, r.stdout + r.stderr
    r = new.ctl("migrate-state", "--from", src)
    assert r.returncode != 0, "a second migration into a non-empty schema was accepted"
    assert re.search(r"empty|already", r.stdout + r.stderr, re.I), r.stdout + r.stderr

    new.start()
    s, _, body = deliver(new, alert(0, ids[0]))  # an old delivery
    assert s == 200 and body["duplicate"] is True, body
    assert body["event_id"] == first[0]["event_id"] and same_actions(body, first[0])
    assert new.get_status()["safety"]["suspensions_in_window"] == 3
    s, _, body = deliver(new, alert(20, ids[4]))  # the cap window carried over
    assert s == 202 and body["actions"][0]["status"] == "held", body
    s, _, body = deliver(new, alert(21, ids[1]))  # and the cooldowns
    assert s == 202 and body["actions"][0]["status"] == "cooldown", body
    view = action_view(new)
    missing = [x for x in old_actions if x not in view]
    assert missing == [], "actions not migrated: %s" % missing
    for x, o in old_actions.items():
        assert view[x] == (o["user"], o["action"], o["status"]), (x, view[x], o)
    held = [x["id"] for x in new.ctl_json("actions", "--state", "held")]
    assert first[3]["actions"][0]["id"] in held
    new_history = new.ctl_json("history")

    def key(e):
        return (e.get("time"), e.get("kind"), e.get("action_id"), e.get("to"))
    lost = sorted(set(map(key, old_history)) - set(map(key, new_history)))
    assert lost == [], "audit rows not migrated: %s" % lost[:5]
    # the timed reactivations scheduled on SQLite run on PostgreSQL, once each
    wait_until(lambda: all(calls_by_user(fake1p, "reactivate").get(ids[k]) == 1
                           for k in range(3)), timeout=40 * SCALE,
               message="the migrated timed reactivations")
    assert all(t >= t_stopped for k in range(3) for t in call_times(fake1p, "reactivate", ids[k]))
    wait_until(lambda: queue_idle(new), timeout=15 * SCALE)
    assert sum(calls_by_user(fake1p, "reactivate").values()) == 3
    report("migrate_state", actions=len(old_actions), audit_rows=len(old_history))


# ----------------------------------------------------- g. one view, status

@pytest.mark.fake1p(users=20)
def test_status_state_and_one_view(remedyd_cluster, fake1p):
    """Started at the same moment (both create the schema), one of them
    over TCP with a password in its conninfo file: /status names the
    backend, the instance, both live instances and the database; actions
    and history are the same through either."""
    a, b = cluster(remedyd_cluster, start=False, each=[{}, {"pg_tcp": True}])
    errors = []

    def start(d):
        try:
            d.start()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((d.instance, e))
    join_all(run_threads(start, [(a,), (b,)]), 60 * SCALE)
    assert errors == []
    ids = user_ids(fake1p, 6)
    for k, uid in enumerate(ids):
        s, _, body = deliver((a, b)[k % 2], alert(k, uid))
        assert s == 202, body
    wait_until(lambda: len(calls_by_user(fake1p, "suspend")) == len(ids), timeout=20 * SCALE)
    wait_until(lambda: queue_idle(a) and queue_idle(b), timeout=15 * SCALE)
    for d in (a, b):
        wait_until(lambda: sees_instances(d, ["node-a", "node-b"]), timeout=20 * SCALE,
                   message="%s to list both instances" % d.instance)
        st = d.get_status()["state"]
        assert st["backend"] == "postgresql" and st["instance"] == d.instance, st
        db = st["database"]
        assert db["connected"] is True, st
        assert isinstance(db["latency_ms"], (int, float)) and db["latency_ms"] >= 0, st
        r = d.ctl("status")
        assert r.returncode == 0 and d.instance in r.stdout, r.stdout + r.stderr
    va, vb = action_view(a), action_view(b)
    assert va == vb and len(va) == len(ids)
    assert all(v[2] == "done" for v in va.values())
    ha = sorted(json.dumps(e, sort_keys=True) for e in a.ctl_json("history"))
    hb = sorted(json.dumps(e, sort_keys=True) for e in b.ctl_json("history"))
    assert ha == hb and ha
