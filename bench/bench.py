# SPDX-License-Identifier: MIT
"""remedyd benchmarks (issue 6). Run through scripts/bench, which builds the
daemon and the helper programs first; see bench/RESULTS.md for figures.

  bench.py [--only NAME,...] [--duration S] [--tools DIR] [--build DIR]

Each measurement runs its baseline back to back with it and prints medians
and ratios. Results are also appended as JSON lines to
BUILD/bench-run/results.jsonl.
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (FakeOnePassword, Remedyd, wait_until, metrics)

SECRET = "bench-hmac-secret-0123456789abcdef"
NOT_MATCHING_RULES = 20

ARGS = None
RESULTS = []


def log(msg):
    print(msg, flush=True)


def record(name, **kw):
    kw["bench"] = name
    kw["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    RESULTS.append(kw)
    with open(os.path.join(ARGS.workdir, "results.jsonl"), "a") as f:
        f.write(json.dumps(kw) + "\n")


def machine():
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {"cores": os.cpu_count(), "kernel": os.uname().release, "load": " ".join(load)}


def fresh_dir(name):
    d = os.path.join(ARGS.workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def loadgen(port, extra):
    os.sync()  # what the previous run left dirty is not written back during this one
    cmd = [os.path.join(ARGS.tools, "loadgen"), "--port", str(port),
           "--secret-file", os.path.join(ARGS.workdir, "hmac.secret")] + [str(x) for x in extra]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = {}
    for line in out.splitlines():
        k, v = line.split()
        r[k] = float(v) if "." in v else int(v)
    return r


def rules_yaml(match_rule):
    """NOT_MATCHING_RULES rules that look at the event but never match the
    load's benign alerts, plus (for time-to-contain) the matching rule."""
    rules = []
    for i in range(NOT_MATCHING_RULES):
        rules.append({
            "name": "bench-nomatch-%d" % i,
            "source": "bench",
            "when": {"all": [
                {"field": "result.signature", "equals": "Rule %d never" % i},
                {"field": "result.severity", "in": ["high", "critical"], "ignore_case": True},
            ]},
            "action": "suspend",
            "user": "${result.user}",
        })
    if match_rule:
        rules.append({
            "name": "bench-impossible-travel",
            "source": "bench",
            "when": {"all": [
                {"field": "result.signature", "equals": "Impossible travel"},
                {"field": "result.severity", "in": ["high", "critical"], "ignore_case": True},
            ]},
            "action": "suspend",
            "user": "${result.user}",
            "reason": "bench ${search_name}: ${result.signature}",
            "cooldown": "30m",
        })
    return rules


def start_remedyd(d, fake, match_rule=False, extra=None, args=(), event_id="${sid}", **kw):
    """event_id None: the source has no event_id, so remedyd deduplicates by
    the body's SHA-256 (random keys, where the load's sids are sequential)."""
    config = {
        "sources": [{"name": "bench", **({"event_id": event_id} if event_id else {}),
                     "auth": {"hmac_sha256": {"header": "X-Remedyd-Signature", "prefix": "sha256=",
                                              "secret_file": os.path.join(ARGS.workdir, "hmac.secret")}}}],
        "rules": rules_yaml(match_rule),
        "safety": {"protected_users": ["user0@example.com"]},
    }
    if extra:
        config = harness.deep_merge(config, extra)
    return harness.Remedyd(d, fake=fake, config=config, ready_timeout=60, args=args, **kw)


def webhook_port(url):
    return int(url.rsplit(":", 1)[1].split("/")[0])


def start_adnanh_webhook(d, hooks, port):
    path = os.path.join(d, "hooks.json")
    with open(path, "w") as f:
        json.dump(hooks, f, indent=1)
    logf = open(os.path.join(d, "webhook.log"), "ab")
    p = subprocess.Popen(["webhook", "-hooks", path, "-ip", "127.0.0.1", "-port", str(port)],
                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if p.poll() is not None:
                raise RuntimeError("webhook exited: %s" % open(os.path.join(d, "webhook.log")).read())
            return False
    harness.wait_until(up, timeout=10, message="adnanh/webhook to listen")
    return p


def hmac_trigger():
    return {"match": {"type": "payload-hmac-sha256", "secret": SECRET,
                      "parameter": {"source": "header", "name": "X-Remedyd-Signature"}}}


def stop_proc(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ fsync

def bench_fsync():
    """Durable commits per second of the disk holding the state store:
    append 4 KiB + fdatasync (what a WAL commit does), for 3 s."""
    path = os.path.join(ARGS.workdir, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    buf = b"x" * 4096
    res = {}
    for name, fn in (("fdatasync", os.fdatasync), ("fsync", os.fsync)):
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            os.write(fd, buf)
            fn(fd)
            n += 1
        res[name] = n / (time.monotonic() - t0)
    os.close(fd)
    os.unlink(path)
    log("fsync: %.0f fdatasync/s, %.0f fsync/s (4 KiB appends, %s)" % (res["fdatasync"], res["fsync"], ARGS.workdir))
    record("fsync", per_second_fdatasync=round(res["fdatasync"]), per_second_fsync=round(res["fsync"]))
    return res


# ------------------------------------------------------------------ ingest

def sqlite_events(d):
    """Rows in the events table of the daemon state in d (counted after a run)."""
    out = subprocess.run(["sqlite3", os.path.join(d, "state.db"), "SELECT count(*) FROM events"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return int(out.strip())


def with_remedyd(name, run, **kw):
    """run(r) against remedyd (SQLite, fake API with 10 users) in a fresh
    directory; its result with the events rows counted after the stop
    (every 2xx must be one)."""
    d = fresh_dir(name)
    fake = harness.FakeOnePassword(d, users=10)
    try:
        r = start_remedyd(d, fake, **kw)
        try:
            res = run(r)
        finally:
            r.stop()
        res["events_in_db"] = sqlite_events(d)
    finally:
        fake.stop()
    return res


def with_tool(argv, run):
    """run(port, pid) against a bench tool that prints "port N" when it listens."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        return run(int(p.stdout.readline().split()[1]), p.pid)
    finally:
        stop_proc(p)


def ingest_remedyd(dur, seed, event_id="${sid}"):
    def run(r):
        res = loadgen(webhook_port(r.webhook_url), ["--conns", 64, "--duration", dur, "--count", int(dur * 100000),
                                                    "--seed", seed])
        with open("/proc/%d/status" % r.pid) as f:
            res["rss_hwm_kib"] = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        return res
    return with_remedyd("ingest-remedyd", run, event_id=event_id)


def ingest_remedyd_sha256(dur, seed):
    return ingest_remedyd(dur, seed, event_id=None)


def ingest_mhd(dur, seed):
    return with_tool([os.path.join(ARGS.tools, "mhd-baseline")],
                     lambda port, pid: loadgen(port, ["--conns", 64, "--duration", dur, "--count", 1000000,
                                                      "--seed", seed]))


def ingest_mhd_durable(dur, seed):
    return with_tool([os.path.join(ARGS.tools, "mhd-durable"), os.path.join(fresh_dir("ingest-mhd-durable"), "bodies.log")],
                     lambda port, pid: loadgen(port, ["--conns", 64, "--duration", dur,
                                                      "--count", int(dur * 100000), "--seed", seed]))


def with_adnanh_webhook(name, run):
    """run(port) against adnanh/webhook with one hook: the HMAC trigger,
    then /bin/true (answered 202 before the command runs)."""
    d = fresh_dir(name)
    port = harness.free_port()
    hooks = [{"id": "bench", "execute-command": "/bin/true", "command-working-directory": d,
              "success-http-response-code": 202, "response-message": "accepted",
              "trigger-rule": hmac_trigger()}]
    p = start_adnanh_webhook(d, hooks, port)
    try:
        return run(port)
    finally:
        stop_proc(p)


def ingest_webhook(dur, seed):
    return with_adnanh_webhook("ingest-webhook", lambda port: loadgen(
        port, ["--conns", 64, "--duration", dur, "--count", int(dur * 20000), "--seed", seed]))


def bench_ingest():
    """mhd, mhd-durable, remedyd, remedyd-sha256 (no event_id: random dedup
    keys), webhook back to back, --ingest-rounds times; medians of the rates
    and of the per-round ratios (the machine is shared)."""
    dur = ARGS.duration
    seed = int(time.time())
    rounds = []
    for k in range(ARGS.ingest_rounds):
        rows = {}
        for name, fn in (("mhd", ingest_mhd), ("mhd-durable", ingest_mhd_durable), ("remedyd", ingest_remedyd),
                         ("remedyd-sha256", ingest_remedyd_sha256),
                         ("webhook", ingest_webhook)):
            res = fn(dur, seed)
            seed += 1
            rows[name] = res
            log("ingest: round %d %-8s %8.0f accepted/s  (2xx %d, other %d, errors %d, wrapped %d) "
                "latency p50 %d us p99 %d us%s  [load %s]"
                % (k + 1, name, res["rate"], res["ok"], res["other"], res["errors"], res["wrapped"],
                   res["lat_p50_us"], res["lat_p99_us"],
                   ("  db rows %d, VmHWM %d KiB" % (res["events_in_db"], res["rss_hwm_kib"])
                    if "events_in_db" in res else ""), machine()["load"]))
        rd, mh, wh = rows["remedyd"]["rate"], rows["mhd"]["rate"], rows["webhook"]["rate"]
        md = rows["mhd-durable"]["rate"]
        rows["ratio_webhook"], rows["ratio_mhd"], rows["ratio_mhd_durable"] = rd / wh, rd / mh, rd / md
        rows["ratio_sha256_mhd"] = rows["remedyd-sha256"]["rate"] / mh
        log("ingest: round %d remedyd/webhook = %.2fx, remedyd/mhd = %.0f%%, remedyd/mhd-durable = %.0f%% "
            "(mhd-durable/mhd = %.0f%%); remedyd-sha256/mhd = %.0f%%"
            % (k + 1, rd / wh, 100 * rd / mh, 100 * rd / md, 100 * md / mh, 100 * rows["ratio_sha256_mhd"]))
        rounds.append(rows)
    med = lambda f: statistics.median(f(r) for r in rounds)  # noqa: E731
    log("ingest: median of %d rounds: remedyd %.0f/s (target >= 30000/s), webhook %.0f/s, mhd %.0f/s, "
        "mhd-durable %.0f/s; remedyd/webhook %.2fx (target >= 4x), remedyd/mhd %.0f%% (target >= 40%%), "
        "remedyd/mhd-durable %.0f%%; remedyd-sha256 (random dedup keys) %.0f/s, %.0f%% of mhd"
        % (len(rounds), med(lambda r: r["remedyd"]["rate"]), med(lambda r: r["webhook"]["rate"]),
           med(lambda r: r["mhd"]["rate"]), med(lambda r: r["mhd-durable"]["rate"]),
           med(lambda r: r["ratio_webhook"]), 100 * med(lambda r: r["ratio_mhd"]),
           100 * med(lambda r: r["ratio_mhd_durable"]), med(lambda r: r["remedyd-sha256"]["rate"]),
           100 * med(lambda r: r["ratio_sha256_mhd"])))
    record("ingest", duration=dur, conns=64, machine=machine(), rounds=rounds)
    return rounds


# --------------------------------------------------------- time-to-contain

def percentiles(xs):
    xs = sorted(xs)
    if not xs:
        return {}

    def q(p):
        return xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"n": len(xs), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": xs[-1]}


def parse_sendlog(path):
    sent, status = {}, {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if p[0] == "S":
                sent[int(p[3])] = int(p[2]) / 1e9  # by user index
            else:
                status[int(p[1])] = int(p[2])
    return sent, status


def contain_times(fake, sendlog, users):
    """(latencies in ms, api requests, suspends confirmed). The fake stamps a
    request when it arrives; it answers a suspend in ~0.1 ms."""
    sent, _ = parse_sendlog(sendlog)
    by_id = {u["id"]: u["email"] for u in fake.users()}
    reqs = fake.requests()
    lat = []
    suspends = 0
    for q in reqs:
        m = re.search(r"/users/([A-Z0-9]{26})(?::|%3A)suspend$", q["path"])
        if not m or q["status"] != 200:
            continue
        suspends += 1
        email = by_id.get(m.group(1), "")
        u = int(re.match(r"user(\d+)@", email).group(1))
        if u in sent:
            lat.append((q["time"] - sent[u]) * 1000)
    return lat, len(reqs), suspends


def histogram_quantiles(text, name):
    """p50/p99 upper bounds from a Prometheus histogram."""
    buckets = []
    for line in text.splitlines():
        m = re.match(r'%s_bucket\{.*le="([^"]+)".*\} (\S+)' % name, line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    out = {"count": int(total)}
    for q in (0.5, 0.99):
        for le, c in buckets:
            if c >= q * total:
                out["p%d_le_ms" % int(q * 100)] = le * 1000
                break
    return out


def fake_self_check(fake):
    """The fake is Python: its own service times, so that they are not
    mistaken for the daemon's (median of 20 each, keep-alive)."""
    import base64
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", fake.port)
    basic = base64.b64encode(("%s:%s" % (fake.client_id, fake.client_secret)).encode()).decode()
    c.request("POST", "/v1beta1/users/oauth2/token", "grant_type=client_credentials",
              {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
    tok = json.loads(c.getresponse().read())["access_token"]
    h = {"Authorization": "Bearer " + tok}
    base = "/v1beta1/accounts/%s/users" % fake.account_id
    out = {}
    for name, path in (("list25", base), ("list1000", base + "?max_page_size=1000"),
                       ("get", base + "/" + fake.users()[5]["id"])):
        ts = []
        for _ in range(20):
            t = time.monotonic()
            c.request("GET", path, headers=h)
            c.getresponse().read()
            ts.append((time.monotonic() - t) * 1000)
        out[name] = statistics.median(ts)
    c.close()
    fake.clear_requests()
    log("ttc: fake1p service time (median of 20): list page of 25 %.2f ms, of 1000 %.1f ms, get %.2f ms"
        % (out["list25"], out["list1000"], out["get"]))
    record("fake1p", **out)
    return out


def bench_ttc():
    ttc_naive(ttc_remedyd("sqlite"))


def send_alerts(fake, port, rate, dur, users, sendlog, n, timeout, interval, what):
    """Matching alerts at rate/s for dur s (logged to sendlog), then waits
    until the fake has seen n suspends (or timeout s: logged, not fatal)."""
    res = loadgen(port, ["--conns", 8, "--rate", rate, "--duration", dur, "--match",
                         "--users", users - 1, "--log", sendlog, "--seed", int(time.time())])
    try:
        harness.wait_until(lambda: len([q for q in fake.requests() if q["path"].endswith("suspend")]) >= n,
                           timeout=timeout, interval=interval, message="all suspends")
    except harness.WaitTimeout as e:
        log("%s: %s" % (what, e))
    return res


def ttc_remedyd(backend):
    users, rate, dur = 10000, ARGS.ttc_rate, ARGS.ttc_duration
    n = int(rate * dur)
    d = fresh_dir("ttc-remedyd-" + backend)
    fake = harness.FakeOnePassword(d, users=users)
    try:
        fake_self_check(fake)
        t0 = time.monotonic()
        r = start_remedyd(d, fake, match_rule=True, backend=backend)
        try:
            harness.wait_until(lambda: (json.loads(harness.http_request(r.status_url + "/status")[2])
                                        .get("directory", {}).get("users") == users),
                               timeout=60, message="directory sync")
            log("ttc: daemon ready and directory synced (%d users) in %.2f s" % (users, time.monotonic() - t0))
            port = webhook_port(r.webhook_url)
            sendlog = os.path.join(d, "send.log")
            res = send_alerts(fake, port, rate, dur, users, sendlog, n, timeout=60, interval=0.5, what="ttc")
            metrics = harness.http_request(r.status_url + "/metrics")[2].decode()
        finally:
            r.stop()
        lat, api, suspends = contain_times(fake, sendlog, users - 1)
    finally:
        fake.stop()
    pc = percentiles(lat)
    hq = histogram_quantiles(metrics, "remedyd_time_to_contain_seconds")
    log("ttc: remedyd (%s) %d alerts at %g/s: %d suspended; webhook send -> fake receives suspend: "
        "p50 %.2f ms p90 %.2f ms p99 %.2f ms max %.2f ms (targets p50 <= 5, p99 <= 20); "
        "histogram p50 <= %s ms, p99 <= %s ms; webhook answer p50 %d us p99 %d us"
        % (backend, n, rate, suspends, pc["p50"], pc["p90"], pc["p99"], pc["max"],
           hq and hq.get("p50_le_ms"), hq and hq.get("p99_le_ms"), res["lat_p50_us"], res["lat_p99_us"]))
    econ = api / suspends if suspends else float("inf")
    log("economy: remedyd %d API requests for %d suspensions = %.4f per remediation (target <= 1.05)"
        % (api, suspends, econ))
    record("ttc", system="remedyd", backend=backend, rate=rate, duration=dur, alerts=n, suspended=suspends,
           latency_ms=pc, histogram=hq, api_requests=api, api_per_remediation=econ, machine=machine())
    return pc


def ttc_naive(pc):
    """the naive playbook beside remedyd's figures pc"""
    users = 10000

    # the naive playbook, same fake, same alerts (rate given by --naive-rate)
    nrate, ndur = ARGS.naive_rate, ARGS.naive_duration
    nn = int(nrate * ndur)
    d = fresh_dir("ttc-naive")
    fake = harness.FakeOnePassword(d, users=users)
    try:
        port = harness.free_port()
        script = os.path.join(HERE, "naive-playbook.sh")
        hooks = [{"id": "bench", "execute-command": script, "command-working-directory": d,
                  "success-http-response-code": 202, "response-message": "accepted",
                  "pass-arguments-to-command": [{"source": "payload", "name": "result.user"}],
                  "pass-environment-to-command": [
                      {"source": "string", "envname": "OP_BASE", "name": fake.url},
                      {"source": "string", "envname": "OP_ACCOUNT", "name": fake.account_id},
                      {"source": "string", "envname": "OP_CLIENT_ID", "name": fake.client_id},
                      {"source": "string", "envname": "OP_CLIENT_SECRET", "name": fake.client_secret}],
                  "trigger-rule": {"and": [hmac_trigger(),
                                           {"match": {"type": "value", "value": "Impossible travel",
                                                      "parameter": {"source": "payload",
                                                                    "name": "result.signature"}}}]}}]
        p = start_adnanh_webhook(d, hooks, port)
        try:
            sendlog = os.path.join(d, "send.log")
            send_alerts(fake, port, nrate, ndur, users, sendlog, nn, timeout=300, interval=1, what="ttc: naive")
        finally:
            stop_proc(p)
        nlat, napi, nsus = contain_times(fake, sendlog, users - 1)
    finally:
        fake.stop()
    npc = percentiles(nlat)
    log("ttc: naive    %d alerts at %g/s: %d suspended; p50 %.1f ms p90 %.1f ms p99 %.1f ms max %.1f ms"
        % (nn, nrate, nsus, npc.get("p50", 0), npc.get("p90", 0), npc.get("p99", 0), npc.get("max", 0)))
    necon = napi / nsus if nsus else float("inf")
    log("economy: naive %d API requests for %d suspensions = %.2f per remediation" % (napi, nsus, necon))
    log("ttc: naive/remedyd p50 = %.0fx, p99 = %.0fx" % (npc.get("p50", 0) / pc["p50"], npc.get("p99", 0) / pc["p99"]))
    record("ttc", system="naive", rate=nrate, duration=ndur, alerts=nn, suspended=nsus,
           latency_ms=npc, api_requests=napi, api_per_remediation=necon, machine=machine())


# -------------------------------------------------------------------- wrk

WRK_LUA = os.path.join(HERE, "wrk-ingest.lua")


def wrk_bodies(n, seed):
    """n unique, signed, Splunk-like deliveries (~240 bytes) for wrk."""
    path = os.path.join(ARGS.workdir, "wrk-bodies.tsv")
    key = SECRET.encode()
    with open(path, "w") as f:
        for i in range(n):
            body = ('{"sid":"wrk-%d-%d","search_name":"Benign sign-in","result":{"user":"user%d@example.com",'
                    '"signature":"Successful login","severity":"low","src_ip":"10.%d.%d.%d","app":"okta"}}'
                    % (seed, i, i % 1000, (i >> 16) & 255, (i >> 8) & 255, i & 255))
            f.write(hmac.new(key, body.encode(), hashlib.sha256).hexdigest() + "\t" + body + "\n")
    return path


def wrk_start(port, threads, conns, dur, bodies, part=0, parts=1):
    os.sync()  # what the previous run left dirty is not written back during this one
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % int(dur), "--latency", "-s", WRK_LUA,
           "http://127.0.0.1:%d" % port, "--", bodies, str(part), str(parts), str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def wrk_result(p):
    out = p.communicate()[0]
    r = {}
    for line in out.splitlines():
        if line.startswith("WRK "):
            _, k, v = line.split()
            r[k] = int(v)
    if "requests" not in r:
        raise RuntimeError("wrk printed no figures:\n" + out)
    r["ok"] = r["requests"] - r["non2xx"]
    r["rate"] = r["ok"] * 1e6 / max(r["duration_us"], 1)
    return r


def metric_sum(nodes, name):
    return sum(harness.metric_value(harness.http_request(n.status_url + "/metrics")[2].decode(), name) or 0
               for n in nodes)


SERVER_BUCKETS = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1")


def server_latency(r):
    """remedyd's own view of the run's deliveries (remedyd_webhook_duration_seconds:
    arrival to answer sent): the share answered within each bucket bound,
    and the smallest bound that holds 99 % of them."""
    text = r.metrics_text()
    n = harness.metric_value(text, "remedyd_webhook_duration_seconds_count", source="bench")
    share = {le: harness.metric_value(text, "remedyd_webhook_duration_seconds_bucket", source="bench", le=le) / max(n, 1)
             for le in SERVER_BUCKETS}
    p99 = next((float(le) * 1000 for le in SERVER_BUCKETS if share[le] >= 0.99), None)
    return {"server_n": int(n), "server_share_within": share, "server_p99_le_ms": p99}


def wrk_remedyd_sqlite(dur, bodies):
    def run(r):
        res = wrk_result(wrk_start(webhook_port(r.webhook_url), 2, 64, dur, bodies))
        res.update(server_latency(r))
        return res
    return with_remedyd("wrk-remedyd-sqlite", run, backend="sqlite")


def start_pg_pair(nodes, d, fake, db, prefix, **kw):
    """Instances PREFIXa and PREFIXb on database db, appended to nodes as they
    start (so that the caller's cleanup stops whatever did)."""
    for name in ("a", "b"):
        nd = os.path.join(d, name)
        os.makedirs(nd)
        nodes.append(start_remedyd(nd, fake, backend="postgresql", pg_database=db, instance=prefix + name, **kw))


def wrk_remedyd_pg_pair(dur, bodies, pool=4):
    """Two instances on one PostgreSQL database, wrk -t1 -c32 against each at
    the same time (64 connections in all), each its own half of the bodies."""
    d = fresh_dir("wrk-remedyd-pg")
    fake = harness.FakeOnePassword(d, users=10)
    db = harness.PgDatabase(prefix="bench")
    nodes = []
    try:
        start_pg_pair(nodes, d, fake, db, "bench-", extra={"state": {"postgresql": {"pool": pool}}})
        rt0, ops0 = metric_sum(nodes, "remedyd_store_round_trips_total"), metric_sum(nodes, "remedyd_store_operations_total")
        ps = [wrk_start(webhook_port(n.webhook_url), 1, 32, dur, bodies, i, 2) for i, n in enumerate(nodes)]
        rs = [wrk_result(p) for p in ps]
        rt = metric_sum(nodes, "remedyd_store_round_trips_total") - rt0
        ops = metric_sum(nodes, "remedyd_store_operations_total") - ops0
        for n in nodes:
            n.stop()
        events = int(db.psql("SELECT count(*) FROM remedyd.events")[0][0])
    finally:
        for n in nodes:
            n.stop()
        fake.stop()
        db.drop()
    ok = sum(r["ok"] for r in rs)
    return {"rate": sum(r["rate"] for r in rs), "ok": ok, "non2xx": sum(r["non2xx"] for r in rs),
            "errors": sum(r["errors"] for r in rs), "wrapped": sum(r["wrapped"] for r in rs),
            "lat_p50_us": max(r["lat_p50_us"] for r in rs), "lat_p99_us": max(r["lat_p99_us"] for r in rs),
            "events_in_db": events, "round_trips": rt, "ops": ops,
            "round_trips_per_webhook": rt / ok if ok else float("nan"), "per_instance": rs}


def bench_ha_ingest():
    """Issue 13: two instances on PostgreSQL beside one on SQLite, under wrk
    (64 connections in all, unique signed bodies), alternating, rounds."""
    dur = ARGS.duration
    seed = int(time.time())
    bodies = wrk_bodies(int(min(dur * 60000, 1500000)), seed)
    rounds = []
    for k in range(ARGS.ingest_rounds):
        row = {"sqlite": wrk_remedyd_sqlite(dur, bodies), "pg2": wrk_remedyd_pg_pair(dur, bodies, ARGS.pg_pool)}
        for name, res in row.items():
            log("ha-ingest: round %d %-6s %8.0f accepted/s (2xx %d, non-2xx %d, errors %d, wrapped %d) "
                "p50 %.2f ms p99 %.2f ms, db rows %d%s  [load %s]"
                % (k + 1, name, res["rate"], res["ok"], res["non2xx"], res["errors"], res["wrapped"],
                   res["lat_p50_us"] / 1000, res["lat_p99_us"] / 1000, res["events_in_db"],
                   ", %.4f round trips per webhook" % res["round_trips_per_webhook"] if "round_trips" in res else "",
                   machine()["load"]))
        row["ratio"] = row["pg2"]["rate"] / row["sqlite"]["rate"]
        log("ha-ingest: round %d two instances on PostgreSQL = %.0f%% of one on SQLite" % (k + 1, 100 * row["ratio"]))
        rounds.append(row)
    med = lambda f: statistics.median(f(r) for r in rounds)  # noqa: E731
    log("ha-ingest: median of %d rounds: two PostgreSQL instances %.0f/s together (target >= 15000/s), "
        "one SQLite instance %.0f/s, ratio %.0f%% (target >= 40%%), %.4f round trips per webhook (target <= 0.2)"
        % (len(rounds), med(lambda r: r["pg2"]["rate"]), med(lambda r: r["sqlite"]["rate"]),
           100 * med(lambda r: r["ratio"]), med(lambda r: r["pg2"]["round_trips_per_webhook"])))
    record("ha-ingest", duration=dur, conns=64, machine=machine(), rounds=rounds)


def bench_wrk_ingest():
    """Issue 16: the ingest comparison of bench_ingest under wrk -t2 -c64 with
    the same kind of bodies: remedyd, bare MHD, MHD with durable commits,
    adnanh/webhook, back to back, rounds."""
    dur = ARGS.duration
    seed = int(time.time())
    bodies = wrk_bodies(int(min(dur * 80000, 2000000)), seed)
    rounds = []

    def tool(name, argv):
        return with_tool(argv, lambda port, pid: wrk_result(wrk_start(port, 2, 64, dur, bodies)))

    def webhook():
        return with_adnanh_webhook("wrk-webhook", lambda port: wrk_result(wrk_start(port, 2, 64, dur, bodies)))

    for k in range(ARGS.ingest_rounds):
        row = {"mhd": tool("mhd", [os.path.join(ARGS.tools, "mhd-baseline")]),
               "mhd-durable": tool("mhd-durable", [os.path.join(ARGS.tools, "mhd-durable"),
                                                   os.path.join(fresh_dir("wrk-mhd-durable"), "bodies.log")]),
               "remedyd": wrk_remedyd_sqlite(dur, bodies),
               "webhook": webhook()}
        for name, res in row.items():
            log("wrk-ingest: round %d %-11s %8.0f accepted/s (2xx %d, non-2xx %d, errors %d, wrapped %d) "
                "p50 %.2f ms p99 %.2f ms%s%s  [load %s]"
                % (k + 1, name, res["rate"], res["ok"], res["non2xx"], res["errors"], res["wrapped"],
                   res["lat_p50_us"] / 1000, res["lat_p99_us"] / 1000,
                   ", db rows %d" % res["events_in_db"] if "events_in_db" in res else "",
                   "; remedyd's own p99 <= %s ms (%.2f %% within 5 ms, %.2f %% within 10 ms)"
                   % (res["server_p99_le_ms"], 100 * res["server_share_within"]["0.005"],
                      100 * res["server_share_within"]["0.01"]) if "server_n" in res else "",
                   machine()["load"]))
        rd = row["remedyd"]["rate"]
        row["ratio_webhook"], row["ratio_mhd"] = rd / row["webhook"]["rate"], rd / row["mhd"]["rate"]
        row["ratio_mhd_durable"] = rd / row["mhd-durable"]["rate"]
        # the durability ceiling against the same webhook: what 6x asks of
        # a server that does nothing but append and fdatasync
        row["ceiling_webhook"] = row["mhd-durable"]["rate"] / row["webhook"]["rate"]
        log("wrk-ingest: round %d remedyd/webhook %.2fx, remedyd/mhd %.2f, remedyd/mhd-durable %.2f; "
            "mhd-durable/webhook %.2fx"
            % (k + 1, row["ratio_webhook"], row["ratio_mhd"], row["ratio_mhd_durable"], row["ceiling_webhook"]))
        rounds.append(row)
    med = lambda f: statistics.median(f(r) for r in rounds)  # noqa: E731
    log("wrk-ingest: median of %d rounds: remedyd %.0f/s (target >= 35000), %.2fx webhook (target >= 6), "
        "%.2f of bare MHD (target >= 0.50), %.2f of MHD+fdatasync; remedyd p99 %.2f ms (target <= 10); "
        "the durability ceiling (MHD+fdatasync) %.0f/s, %.2fx webhook, p99 %.2f ms"
        % (len(rounds), med(lambda r: r["remedyd"]["rate"]), med(lambda r: r["ratio_webhook"]),
           med(lambda r: r["ratio_mhd"]), med(lambda r: r["ratio_mhd_durable"]),
           med(lambda r: r["remedyd"]["lat_p99_us"]) / 1000, med(lambda r: r["mhd-durable"]["rate"]),
           med(lambda r: r["ceiling_webhook"]), med(lambda r: r["mhd-durable"]["lat_p99_us"]) / 1000))
    record("wrk-ingest", duration=dur, conns=64, machine=machine(), rounds=rounds)


# ------------------------------------------------------------------ clients

SYSCALLS = ("epoll_wait", "epoll_ctl", "recvfrom", "sendto", "sendmsg", "writev", "futex", "pwrite64",
            "fdatasync", "write", "read", "accept4", "timerfd_settime", "setsockopt", "close")


def task_stats(pid):
    """Per thread of pid: {comm: [cpu seconds, voluntary, involuntary context switches]}."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        inv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        row = out.setdefault(comm, [0.0, 0, 0])
        row[0] += cpu
        row[1] += vol
        row[2] += inv
    return out


def process_cpu(pid):
    """CPU seconds of pid, its ended threads included."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_run(name, port, dur, bodies, pid):
    """One client against pid's listener on port, 64 connections; what the
    daemon's threads spent (CPU, context switches, syscalls by perf stat)
    and what the client process spent (CPU, from its rusage)."""
    events = ["context-switches", "raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + c for c in SYSCALLS]
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", str(pid)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # perf attached
    t0, p0 = task_stats(pid), process_cpu(pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name == "wrk":
        res = wrk_result(wrk_start(port, 2, 64, dur, bodies))
    else:
        res = loadgen(port, ["--conns", 64, "--duration", dur, "--count", int(dur * 80000), "--bodies", bodies])
        res["requests"] = res["ok"] + res["dup"] + res["other"]
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1, p1 = task_stats(pid), process_cpu(pid)
    perf.send_signal(signal.SIGINT)
    counts = {}
    for line in perf.communicate()[1].splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2].split(":")[-1].replace("sys_enter_", "")] = int(f[0])
    ctxsw = counts.pop("context-switches", 0)
    n = max(res["requests"], 1)
    threads = {c: [t1[c][i] - t0.get(c, [0, 0, 0])[i] for i in range(3)] for c in t1}
    res["client_cpu_us"] = 1e6 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / n
    # the process's own counters: they keep what threads that ended spent
    # (MHD's thread per connection); perf's counts follow new threads
    res["daemon_cpu_us"] = 1e6 * (p1 - p0) / n
    res["ctxsw"] = ctxsw / n
    res["threads"] = {c: {"cpu_us": 1e6 * v[0] / n, "vol": v[1] / n, "invol": v[2] / n} for c, v in threads.items()}
    res["syscalls"] = counts.get("sys_enter", 0) / n
    res["syscalls_by_name"] = {k: v / n for k, v in counts.items() if k != "sys_enter" and v}
    return res


def bench_clients():
    """Issue 16: remedyd (SQLite), bare MHD and MHD + fdatasync, each under
    bench/loadgen.c and under wrk -t2 -c64 with the same pre-signed bodies,
    rounds: accepted/s and p99 beside CPU per request of each client and of
    the server's threads, context switches and syscalls per request, and
    requests per commit (remedyd)."""
    dur = ARGS.duration
    seed = int(time.time())
    bodies = wrk_bodies(int(min(dur * 80000, 2000000)), seed)
    rounds = []

    def remedyd(client):
        def run(r):
            metrics = lambda: harness.http_request(r.status_url + "/metrics")[2].decode()  # noqa: E731
            c0 = harness.metric_value(metrics(), "remedyd_store_commits_total") or 0
            res = client_run(client, webhook_port(r.webhook_url), dur, bodies, r.pid)
            commits = (harness.metric_value(metrics(), "remedyd_store_commits_total") or 0) - c0
            res["per_commit"] = res["ok"] / max(commits, 1)
            return res
        return with_remedyd("clients-remedyd", run, backend="sqlite")

    def tool(argv, client):
        return with_tool(argv, lambda port, pid: client_run(client, port, dur, bodies, pid))

    servers = (("remedyd", remedyd),
               ("mhd", lambda c: tool([os.path.join(ARGS.tools, "mhd-baseline")], c)),
               ("mhd-durable", lambda c: tool([os.path.join(ARGS.tools, "mhd-durable"),
                                               os.path.join(fresh_dir("clients-mhd-durable"), "bodies.log")], c)))
    for k in range(ARGS.ingest_rounds):
        row = {}
        for server, run in servers:
            for client in ("loadgen", "wrk"):
                res = row[server + "/" + client] = run(client)
                top = sorted(res["syscalls_by_name"].items(), key=lambda kv: -kv[1])[:8]
                log("clients: round %d %-11s %-7s %8.0f accepted/s p99 %.2f ms; CPU per request: client %.1f us, "
                    "server %.1f us (%s); %.2f context switches, %.2f syscalls (%s) per request%s  [load %s]"
                    % (k + 1, server, client, res["rate"], res["lat_p99_us"] / 1000, res["client_cpu_us"],
                       res["daemon_cpu_us"],
                       ", ".join("%s %.1f" % (c, v["cpu_us"]) for c, v in sorted(res["threads"].items())
                                 if v["cpu_us"] >= 0.5),
                       res["ctxsw"], res["syscalls"], ", ".join("%s %.2f" % kv for kv in top),
                       "; %.1f requests per commit, db rows %d / 2xx %d" % (res["per_commit"], res["events_in_db"],
                                                                            res["ok"]) if "per_commit" in res else "",
                       machine()["load"]))
        rounds.append(row)
    med = lambda key, f: statistics.median(f(r[key]) for r in rounds)  # noqa: E731
    for key in rounds[0]:
        log("clients: median of %d rounds, %-19s: %.0f accepted/s, p99 %.2f ms, client %.1f us/request, "
            "server %.1f us/request, %.2f context switches/request, %.2f syscalls/request"
            % (len(rounds), key, med(key, lambda r: r["rate"]), med(key, lambda r: r["lat_p99_us"]) / 1000,
               med(key, lambda r: r["client_cpu_us"]), med(key, lambda r: r["daemon_cpu_us"]),
               med(key, lambda r: r["ctxsw"]), med(key, lambda r: r["syscalls"])))
    record("clients", duration=dur, conns=64, machine=machine(), rounds=rounds)

def bench_mhd_modes():
    """Issue 16: MHD's connection handling on 2 cores, with the durable
    group commit of bench/mhd-durable.c: one epoll loop with parked
    requests (remedyd's), one epoll thread with suspend/resume (remedyd's
    before), MHD's thread pool (2 epoll threads), a thread
    per connection whose handler blocks until its group is durable; wrk
    -t2 -c64, alternating, rounds."""
    dur = ARGS.duration
    bodies = wrk_bodies(int(min(dur * 80000, 2000000)), int(time.time()))
    rounds = []
    for k in range(ARGS.ingest_rounds):
        row = {}
        for mode in ("park", "epoll", "pool", "threads"):
            res = row[mode] = with_tool([os.path.join(ARGS.tools, "mhd-durable"),
                                         os.path.join(fresh_dir("mhd-modes"), "bodies.log"), mode],
                                        lambda port, pid: client_run("wrk", port, dur, bodies, pid))
            log("mhd-modes: round %d %-7s %8.0f accepted/s p50 %.2f p99 %.2f ms; server %.1f us/request, "
                "%.2f context switches, %.2f syscalls per request; wrk %.1f us/request  [load %s]"
                % (k + 1, mode, res["rate"], res["lat_p50_us"] / 1000, res["lat_p99_us"] / 1000,
                   res["daemon_cpu_us"], res["ctxsw"], res["syscalls"], res["client_cpu_us"], machine()["load"]))
        rounds.append(row)
    for mode in rounds[0]:
        log("mhd-modes: median of %d rounds, %-7s: %.0f accepted/s, p99 %.2f ms, %.1f us/request"
            % (len(rounds), mode, statistics.median(r[mode]["rate"] for r in rounds),
               statistics.median(r[mode]["lat_p99_us"] for r in rounds) / 1000,
               statistics.median(r[mode]["daemon_cpu_us"] for r in rounds)))
    record("mhd-modes", duration=dur, conns=64, machine=machine(), rounds=rounds)

def bench_ab():
    """Two remedyd binaries side by side (--ab-baseline OLD against this
    build's), alternating, each with a fresh state directory and the same
    bodies, under loadgen and under wrk -t2 -c64: accepted/s, p99, CPU per
    request. For a change's before/after in its commit message."""
    if not ARGS.ab_baseline:
        raise SystemExit("bench ab: --ab-baseline BIN (the remedyd to compare with) is required")
    dur = ARGS.duration
    bodies = wrk_bodies(int(min(dur * 60000, 2000000)), int(time.time()))
    bins = {"baseline": os.path.abspath(ARGS.ab_baseline), "this": harness.REMEDYD_BIN}
    rows = []
    try:
        for k in range(ARGS.ingest_rounds):
            for client in ("loadgen", "wrk"):
                for name, path in bins.items():
                    harness.REMEDYD_BIN = os.environ["REMEDYD_BIN"] = path
                    res = with_remedyd("ab", lambda r: client_run(client, webhook_port(r.webhook_url), dur, bodies,
                                                                  r.pid), backend="sqlite")
                    rows.append({"round": k + 1, "client": client, "bin": name, **res})
                    log("ab: round %d %-7s %-8s %8.0f accepted/s p50 %.2f p99 %.2f ms, %.1f us/request, "
                        "%.2f syscalls/request, db rows %d / 2xx %d  [load %s]"
                        % (k + 1, client, name, res["rate"], res["lat_p50_us"] / 1000, res["lat_p99_us"] / 1000,
                           res["daemon_cpu_us"], res["syscalls"], res["events_in_db"], res["ok"], machine()["load"]))
    finally:
        harness.REMEDYD_BIN = os.environ["REMEDYD_BIN"] = bins["this"]
    for client in ("loadgen", "wrk"):
        for name in bins:
            xs = [r for r in rows if r["client"] == client and r["bin"] == name]
            log("ab: median of %d rounds, %-7s %-8s: %.0f accepted/s, p99 %.2f ms, %.1f us/request"
                % (len(xs), client, name, statistics.median(x["rate"] for x in xs),
                   statistics.median(x["lat_p99_us"] for x in xs) / 1000,
                   statistics.median(x["daemon_cpu_us"] for x in xs)))
    record("ab", duration=dur, conns=64, baseline=bins["baseline"], machine=machine(), rows=rows)


def bench_ha_failover():
    """Issue 13: kill -9 of the instance holding running actions while the
    fake API is slow; seconds until the survivor has finished every one."""
    lease, n = 5, 8
    d = fresh_dir("ha-failover")
    fake = harness.FakeOnePassword(d, users=100)
    db = harness.PgDatabase(prefix="bench")
    nodes = []
    try:
        start_pg_pair(nodes, d, fake, db, "fail-", match_rule=True, lease="%ds" % lease,
                      extra={"onepassword": {"timeout": "60s"}})
        a, b = nodes
        harness.wait_until(lambda: all(json.loads(harness.http_request(x.status_url + "/status")[2])
                                       ["directory"]["users"] == 100 for x in nodes), timeout=60)
        fake.fault(op="suspend", delay=60, times=n)
        b.stop()  # A alone claims everything
        for i in range(n):
            body = json.dumps({"sid": "failover-%d" % i, "search_name": "bench",
                               "result": {"user": "user%d@example.com" % (i + 1), "signature": "Impossible travel",
                                          "severity": "high"}}).encode()
            st = harness.http_request(a.webhook_url + "/hooks/bench", "POST", body,
                                      {"Content-Type": "application/json",
                                       "X-Remedyd-Signature": harness.hmac_sign(SECRET, body)})[0]
            assert st == 202, st
        running = lambda: int(db.psql("SELECT count(*) FROM remedyd.actions WHERE status = 'running' "  # noqa: E731
                                      "AND owner = 'fail-a'")[0][0])
        harness.wait_until(lambda: running() == n, timeout=30, message="A's calls on the wire")
        b.start()
        fake.clear_faults()
        t0 = time.monotonic()
        a.kill9()
        done = lambda: int(db.psql("SELECT count(*) FROM remedyd.actions WHERE status = 'done'")[0][0])  # noqa: E731
        harness.wait_until(lambda: done() == n, timeout=lease * 4, interval=0.05, message="takeover")
        secs = time.monotonic() - t0
    finally:
        for x in nodes:
            x.stop()
        fake.stop()
        db.drop()
    log("ha-failover: kill -9 of the instance with %d running actions (lease %d s): the survivor finished "
        "them %.2f s later (target <= lease + 1 s = %d s)" % (n, lease, secs, lease + 1))
    record("ha-failover", lease=lease, actions=n, seconds=secs, machine=machine())


def bench_ha_ttc():
    """Issue 13: time-to-contain through PostgreSQL at --ttc-rate alerts/s."""
    ttc_remedyd(backend="postgresql")


# ------------------------------------------------------------------ memory

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        t = f.read()
    return int(re.search(r"VmRSS:\s+(\d+)", t).group(1)), int(re.search(r"VmHWM:\s+(\d+)", t).group(1))


def smaps_kib(pid):
    """Pss, private (dirty + clean) and shared-clean (library text) KiB."""
    with open("/proc/%d/smaps_rollup" % pid) as f:
        t = f.read()

    def g(k):
        return int(re.search(r"^%s:\s+(\d+)" % k, t, re.M).group(1))
    return {"pss": g("Pss"), "private": g("Private_Dirty") + g("Private_Clean"), "shared_clean": g("Shared_Clean")}


def floor_rss(d, fake):
    """The baseline: rss-floor links the same libraries and does the least
    remedyd's job needs of them (see bench/rss-floor.c), then idles."""
    p = subprocess.Popen([os.path.join(ARGS.tools, "rss-floor"), fake.url + "/", os.path.join(d, "floor.db")],
                         stdout=subprocess.PIPE, text=True)
    try:
        if not p.stdout.readline().startswith("ready"):
            raise RuntimeError("rss-floor did not start")
        time.sleep(1)
        return rss_kib(p.pid)[0], smaps_kib(p.pid)
    finally:
        stop_proc(p)


def bench_memory():
    for users in (10, 100000):
        d = fresh_dir("memory-%d" % users)
        t0 = time.monotonic()
        fake = harness.FakeOnePassword(d, users=users, startup_timeout=120)
        try:
            r = start_remedyd(d, fake)
            try:
                harness.wait_until(lambda: (json.loads(harness.http_request(r.status_url + "/status")[2])
                                            .get("directory", {}).get("users") == users),
                                   timeout=300, interval=0.2, message="directory sync")
                time.sleep(1)  # idle: let the loop settle after the sync
                rss, hwm = rss_kib(r.pid)
                sm = smaps_kib(r.pid)
            finally:
                r.stop()
            floor = floor_rss(d, fake) if users == 10 else None
        finally:
            fake.stop()
        target = 10 if users == 10 else 48
        log("memory: %6d users: VmRSS %.1f MiB, VmHWM %.1f MiB (target <= %d MiB); of the RSS %.1f MiB are "
            "shared library pages, %.1f MiB private; PSS %.1f MiB [%.0f s]"
            % (users, rss / 1024, hwm / 1024, target, sm["shared_clean"] / 1024, sm["private"] / 1024,
               sm["pss"] / 1024, time.monotonic() - t0))
        if floor:
            log("memory: baseline rss-floor (same libraries, their least use, no remedyd code): VmRSS %.1f MiB, "
                "PSS %.1f MiB; remedyd idle is %+.1f MiB over it"
                % (floor[0] / 1024, floor[1]["pss"] / 1024, (rss - floor[0]) / 1024))
            sm["floor_rss_kib"] = floor[0]
            sm["floor_pss_kib"] = floor[1]["pss"]
        record("memory", users=users, rss_kib=rss, hwm_kib=hwm, machine=machine(), **sm)


# ------------------------------------------------------------------- rules

def bench_rules():
    out = subprocess.run([os.path.join(ARGS.tools, "rules-bench"), os.path.join(ARGS.workdir, "rules")],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    sys.stdout.write(out)
    m = re.search(r"median ([\d.]+) us/event", out)
    record("rules", median_us_per_event=float(m.group(1)) if m else None, output=out, machine=machine())


# ----------------------------------------------------------------- startup

def bench_startup():
    d = fresh_dir("startup")
    fake = harness.FakeOnePassword(d, users=10)
    try:
        r = start_remedyd(d, fake)  # writes the config and creates the database
        r.stop()
        sock_path = os.path.join(d, "notify.sock")
        times = []
        for i in range(ARGS.startup_runs):
            if os.path.exists(sock_path):
                os.unlink(sock_path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(sock_path)
            s.settimeout(10)
            env = {k: v for k, v in os.environ.items() if k not in harness.SCRUBBED_ENV}
            env["NOTIFY_SOCKET"] = sock_path
            t0 = time.monotonic()
            p = subprocess.Popen([r.binary, "-c", r.config_path], env=env, cwd=d,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            ready = None
            while ready is None:
                msg = s.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    ready = time.monotonic() - t0
            times.append(ready * 1000)
            stop_proc(p)
            s.close()
    finally:
        fake.stop()
    med = statistics.median(times)
    # the floor: fork+exec of a trivial binary from the same loop
    floor = []
    for i in range(ARGS.startup_runs):
        t0 = time.monotonic()
        subprocess.run(["/bin/true"])
        floor.append((time.monotonic() - t0) * 1000)
    log("startup: exec -> READY=1 median %.1f ms, min %.1f, max %.1f over %d runs (target <= 50 ms); "
        "fork+exec+wait of /bin/true from the same loop: median %.2f ms"
        % (med, min(times), max(times), len(times), statistics.median(floor)))
    record("startup", median_ms=med, min_ms=min(times), max_ms=max(times), runs=len(times),
           true_median_ms=statistics.median(floor), machine=machine())


BENCHES = {"fsync": bench_fsync, "ingest": bench_ingest, "ttc": bench_ttc, "memory": bench_memory,
           "rules": bench_rules, "startup": bench_startup, "wrk-ingest": bench_wrk_ingest,
           "clients": bench_clients, "mhd-modes": bench_mhd_modes, "ab": bench_ab,
           "ha-ingest": bench_ha_ingest, "ha-ttc": bench_ha_ttc, "ha-failover": bench_ha_failover}
# what a plain `scripts/bench` runs (the others by --only)
DEFAULT_BENCHES = ["fsync", "ingest", "ttc", "memory", "rules", "startup"]


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(DEFAULT_BENCHES), help="any of " + ",".join(BENCHES))
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--ingest-rounds", type=int, default=3)
    p.add_argument("--ttc-rate", type=float, default=200)
    p.add_argument("--ttc-duration", type=float, default=30)
    # the naive playbook cannot keep up with 200/s (each alert lists ~5
    # pages of 1000 users, ~0.6 s of curl+jq): by default it is measured
    # at a rate it sustains on 2 cores
    p.add_argument("--naive-rate", type=float, default=2)
    p.add_argument("--naive-duration", type=float, default=20)
    p.add_argument("--startup-runs", type=int, default=41)
    p.add_argument("--pg-pool", type=int, default=4, help="state.postgresql.pool of the ha-ingest instances")
    p.add_argument("--ab-baseline", help="ab: the remedyd binary to compare this build's with")
    p.add_argument("--remedyd", help="run the benchmarks against this remedyd binary instead of the build's")
    p.add_argument("--tools", required=True)
    p.add_argument("--build", required=True)
    ARGS = p.parse_args()
    ARGS.workdir = os.path.join(os.path.abspath(ARGS.build), "bench-run")
    os.makedirs(ARGS.workdir, exist_ok=True)
    with open(os.path.join(ARGS.workdir, "hmac.secret"), "w") as f:
        f.write(SECRET + "\n")
    os.environ["REMEDYD_BIN"] = os.path.abspath(ARGS.remedyd) if ARGS.remedyd else \
        os.path.join(os.path.abspath(ARGS.build), "src", "remedyd")
    harness.REMEDYD_BIN = os.environ["REMEDYD_BIN"]
    m = machine()
    log("machine: %d cores, kernel %s, load %s; %s" % (m["cores"], m["kernel"], m["load"],
                                                      time.strftime("%Y-%m-%d %H:%M:%S")))
    for name in ARGS.only.split(","):
        BENCHES[name]()


if __name__ == "__main__":
    main()
