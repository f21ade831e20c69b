# SPDX-License-Identifier: MIT
"""Time-to-contain with a notification sink that hangs, against none, in the
same run (issue 14): a dead sink must never delay a suspension.

  python3 bench/notify-hang.py [--alerts N] [--build DIR] [--hang S] [--timeout S]

Starts the fake 1Password API, a fakehook receiver that holds every request
--hang seconds (longer than the sink's --timeout, so each delivery times out
and is retried), and two remedyd: A with a slack sink (on done, failed, held,
queued: every alert notifies twice) pointing at the hanging receiver, B with no
sink. Alerts alternate A, B, A, B ... for distinct users; each one's
time-to-contain is the webhook POST until the fake reports the user
SUSPENDED, and the daemons' own remedyd_time_to_contain_seconds histograms
are read at the end. Prints medians, p95 and max for both, and one JSON line.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

SECRET = "bench-notify-hmac-secret"


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=200, help="alerts per daemon")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--hang", type=float, default=60)
    ap.add_argument("--timeout", default="2s", help="the sink's timeout")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="notify-hang-")
    binary = os.path.join(a.build, "src", "remedyd")
    fake = harness.FakeOnePassword(os.path.join(work, "fake"), users=2 * a.alerts + 10)
    port_file = os.path.join(work, "hook.port")
    hook = subprocess.Popen([harness.PYTHON, os.path.join(ROOT, "tests", "fakehook", "fakehook.py"),
                             "--port-file", port_file], stderr=subprocess.DEVNULL)
    daemons = []
    try:
        harness.wait_until(lambda: os.path.exists(port_file), timeout=20)
        with open(port_file) as f:
            hook_url = "http://127.0.0.1:%d" % int(f.read())
        harness.http_request(hook_url + "/_fake/faults", "POST", json.dumps([{"hang": a.hang, "times": -1}]))
        base = {"sources": [harness.hmac_source("siem", event_id="${alert_id}")],
                "rules": [{"name": "contain", "source": "siem", "action": "suspend", "user": "${user}",
                           "reason": "bench ${alert_id}"}]}
        hanging = dict(base, notify=[{"name": "hanging", "type": "slack", "url": hook_url + "/hang",
                                      "timeout": a.timeout, "on": ["done", "failed", "held", "queued"]}])
        for name, cfg in (("hanging", hanging), ("none", base)):
            daemons.append((name, harness.Remedyd(os.path.join(work, name), fake, cfg, binary=binary,
                                                  secrets={"siem.hmac": SECRET})))
        times = {"hanging": [], "none": []}
        for i in range(a.alerts):
            for k, (name, d) in enumerate(daemons):
                user = "user%d@example.com" % (1 + 2 * i + k)
                t0 = time.monotonic()
                s, _, b = d.post("siem", {"alert_id": "B-%06d" % (2 * i + k), "user": user}, sign=SECRET)
                assert s == 202, b
                harness.wait_until(lambda: (fake.user(user) or {}).get("state") == "SUSPENDED", timeout=30,
                                   interval=0.002)
                times[name].append(time.monotonic() - t0)
        out = {"alerts": a.alerts, "hang_s": a.hang, "sink_timeout": a.timeout}
        for name, d in daemons:
            v = times[name]
            out[name] = {"median_ms": round(statistics.median(v) * 1e3, 2), "p95_ms": round(pct(v, 95) * 1e3, 2),
                         "max_ms": round(max(v) * 1e3, 2),
                         "daemon_ttc_sum_s": round(d.metric("remedyd_time_to_contain_seconds_sum"), 4),
                         "notify_retries": d.metric("remedyd_notifications_total", result="retry")}
            print("%-8s median %7.2f ms  p95 %7.2f ms  max %7.2f ms" % (name, out[name]["median_ms"],
                                                                         out[name]["p95_ms"], out[name]["max_ms"]))
        print(json.dumps(out, sort_keys=True))
    finally:
        for _, d in daemons:
            d.cleanup()
        hook.terminate()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
