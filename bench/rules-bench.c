/* SPDX-License-Identifier: MIT */
/* rules-bench: 1,000 rules (equals/in/contains/starts_with/ends_with/
 * matches/exists/gt/lt/not_in, all/any/not, for_each + where, flattened
 * dotted keys, JSON pointers) over four sources, evaluated in-process
 * through the core library against realistic Splunk, Okta, Sentinel and
 * Elastic alerts. Writes the config to DIR/rules.yaml, loads it with
 * config_load() like the daemon, then times rules_evaluate() alone and
 * json parse + rules_evaluate (what the webhook does per body).
 *
 * usage: rules-bench DIR [RULES] */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "rules.h"

#define ROUNDS 21

static const char *const sources[] = { "splunk", "okta", "sentinel", "elastic" };

/* per source: signature-like, severity-like, user-like, ip-like, numeric */
static const char *const paths[4][5] = {
        { "result.signature", "result.severity", "result.user", "result.src_ip", "result.risk_score" },
        { "eventType", "data.events.0.severity", "data.events.0.actor.alternateId",
          "data.events.0.client.ipAddress", "data.events.0.debugContext.debugData.riskScore" },
        { "object.properties.title", "object.properties.severity", "object.properties.owner.email",
          "/object/properties/additionalData/ip", "object.properties.incidentNumber" },
        { "kibana.alert.rule.name", "kibana.alert.severity", "user.email", "source.ip", "kibana.alert.risk_score" },
};

static const char *const user_tpl[4] = {
        "${result.user}", "${data.events.0.actor.alternateId}", "${object.properties.owner.email}", "${user.email}",
};

static void emit_rule(FILE *f, unsigned i) {
        unsigned s = i % 4, k = (i / 4) % 10;
        const char *const *p = paths[s];

        fprintf(f, "  - name: r%04u\n    source: %s\n", i, sources[s]);
        switch (k) {
        case 0:
                fprintf(f, "    when:\n      all:\n        - { field: \"%s\", equals: \"Signature %u\" }\n"
                           "        - { field: \"%s\", in: [high, critical], ignore_case: true }\n", p[0], i, p[1]);
                break;
        case 1:
                fprintf(f, "    when:\n      any:\n        - { field: \"%s\", contains: \"pattern-%u\" }\n"
                           "        - { field: \"%s\", starts_with: \"svc-%u-\" }\n", p[0], i, p[2], i);
                break;
        case 2:
                fprintf(f, "    when: { field: \"%s\", matches: \"^attacker[0-9]+-%u@evil\\\\.example$\" }\n", p[2], i);
                break;
        case 3:
                fprintf(f, "    when:\n      all:\n        - { field: \"%s\", gt: %u }\n"
                           "        - { field: \"%s\", ends_with: \"@corp-%u.example\", ignore_case: true }\n",
                        p[4], 1000 + i, p[2], i);
                break;
        case 4:
                if (s == 2) {
                        fprintf(f, "    when: { field: object.properties.severity, in: [High, Critical] }\n"
                                   "    for_each: object.properties.relatedEntities\n"
                                   "    where:\n      all:\n        - { field: kind, equals: Account }\n"
                                   "        - { field: properties.upnSuffix, equals: \"tenant-%u.example\" }\n"
                                   "    user: \"${properties.accountName}@${properties.upnSuffix}\"\n"
                                   "    reason: \"sentinel ${event.object.properties.title}\"\n", i);
                        fprintf(f, "    action: suspend\n");
                        return;
                }
                fprintf(f, "    when:\n      not: { field: \"%s\", not_in: [\"Sig %u a\", \"Sig %u b\", \"Sig %u c\"] }\n",
                        p[0], i, i, i);
                break;
        case 5:
                fprintf(f, "    when: { field: \"%s\", matches: \"^10\\\\.%u\\\\.[0-9]+\\\\.[0-9]+$\" }\n", p[3], i % 250);
                break;
        case 6:
                fprintf(f, "    when:\n      all:\n        - { field: \"%s\", exists: true }\n"
                           "        - { field: \"%s\", lt: -%u }\n", p[2], p[4], i);
                break;
        case 7:
                fprintf(f, "    when:\n      all:\n        - { field: \"%s\", not_equals: \"low\" }\n"
                           "        - { field: \"%s\", equals: \"Detector %u\", ignore_case: true }\n", p[1], p[0], i);
                break;
        case 8:
                fprintf(f, "    when: { field: \"%s\", matches: \"(brute|spray|stuff)[- ]?force.*%u\" }\n", p[0], i);
                break;
        default:
                fprintf(f, "    when:\n      any:\n        - { field: \"%s\", in: [\"a%u\", \"b%u\", \"c%u\", \"d%u\"] }\n"
                           "        - { field: \"%s\", starts_with: \"Detector-%u\" }\n", p[0], i, i, i, i, p[0], i);
                break;
        }
        fprintf(f, "    action: %s\n    user: \"%s\"\n    reason: \"rule %u\"\n", i % 7 ? "suspend" : "notify", user_tpl[s], i);
}

static const char *const events[4] = {
        "{\"sid\":\"scheduler__admin__search__RMD5a1b2c3_at_1714563600_1234\",\"search_name\":\"Impossible travel detection\","
        "\"app\":\"search\",\"owner\":\"admin\",\"results_link\":\"https://splunk.example.com/app/search/@go?sid=x\","
        "\"result\":{\"signature\":\"Impossible travel\",\"severity\":\"High\",\"user\":\"user42@example.com\","
        "\"src_ip\":\"10.17.3.4\",\"dest\":\"vpn-gw-1\",\"count\":\"3\",\"risk_score\":\"87\","
        "\"message\":\"login from two countries within 10 minutes\",\"_time\":\"1714563600\"}}",

        "{\"eventType\":\"com.okta.event_hook\",\"eventTypeVersion\":\"1.0\",\"cloudEventsVersion\":\"0.1\","
        "\"source\":\"https://example.okta.com/api/v1/eventHooks/who8xyz\",\"eventId\":\"b5d4f1a2-1111-2222-3333-444455556666\","
        "\"data\":{\"events\":[{\"uuid\":\"5e5f1a2b-0000-1111-2222-333344445555\",\"published\":\"2024-05-01T12:00:00.000Z\","
        "\"eventType\":\"user.session.start\",\"severity\":\"WARN\",\"displayMessage\":\"User login to Okta\","
        "\"actor\":{\"id\":\"00u1abcd\",\"type\":\"User\",\"alternateId\":\"user42@example.com\",\"displayName\":\"User 42\"},"
        "\"client\":{\"ipAddress\":\"198.51.100.4\",\"userAgent\":{\"rawUserAgent\":\"Mozilla/5.0\"}},"
        "\"outcome\":{\"result\":\"FAILURE\",\"reason\":\"INVALID_CREDENTIALS\"},"
        "\"debugContext\":{\"debugData\":{\"riskScore\":\"72\",\"threatSuspected\":\"true\"}}}]}}",

        "{\"operation\":\"Create\",\"object\":{\"id\":\"/subscriptions/x/incidents/abc\",\"name\":\"abc\","
        "\"properties\":{\"title\":\"Suspicious sign-in followed by mailbox rule\",\"severity\":\"High\",\"status\":\"New\","
        "\"incidentNumber\":4711,\"owner\":{\"email\":\"soc@example.com\"},\"additionalData\":{\"ip\":\"203.0.113.9\"},"
        "\"relatedEntities\":["
        "{\"kind\":\"Account\",\"properties\":{\"accountName\":\"user42\",\"upnSuffix\":\"example.com\"}},"
        "{\"kind\":\"Ip\",\"properties\":{\"address\":\"203.0.113.9\"}},"
        "{\"kind\":\"Account\",\"properties\":{\"accountName\":\"user43\",\"upnSuffix\":\"example.com\"}},"
        "{\"kind\":\"Host\",\"properties\":{\"hostName\":\"laptop-42\"}},"
        "{\"kind\":\"Account\",\"properties\":{\"accountName\":\"user44\",\"upnSuffix\":\"example.com\"}}]}}}",

        "{\"kibana.alert.rule.name\":\"Credential access via brute force\",\"kibana.alert.severity\":\"high\","
        "\"kibana.alert.risk_score\":73,\"kibana.alert.uuid\":\"9c0f6a1e-aaaa-bbbb-cccc-ddddeeeeffff\","
        "\"@timestamp\":\"2024-05-01T12:00:00.000Z\",\"user\":{\"email\":\"user42@example.com\",\"name\":\"user42\"},"
        "\"source\":{\"ip\":\"10.9.8.7\"},\"host\":{\"name\":\"web-1\",\"os\":{\"family\":\"linux\"}},"
        "\"event\":{\"category\":[\"authentication\"],\"outcome\":\"failure\"}}",
};

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        unsigned n_rules = argc > 2 ? (unsigned) atoi(argv[2]) : 1000;
        char path[4096];
        Config *c = NULL;
        ConfigProblems problems = {};
        int r;

        if (argc < 2) {
                fprintf(stderr, "usage: rules-bench DIR [RULES]\n");
                return 2;
        }
        mkdir(argv[1], 0755);
        snprintf(path, sizeof path, "%s/rules.yaml", argv[1]);
        FILE *f = fopen(path, "we");
        if (!f) {
                perror(path);
                return 1;
        }
        fprintf(f, "listen:\n  webhook: \"127.0.0.1:0\"\n"
                   "onepassword:\n  base_url: \"http://127.0.0.1:9\"\n  account_id: \"XLQMR47VZPBKJHSGWNCYFDE3T9\"\n"
                   "  client_id_file: /nonexistent/id\n  client_secret_file: /nonexistent/secret\n"
                   "state:\n  path: /nonexistent/state.db\nsources:\n");
        for (unsigned s = 0; s < 4; s++)
                fprintf(f, "  - name: %s\n    auth:\n      hmac_sha256:\n        header: X-Sig\n"
                           "        secret_file: /nonexistent/%s\n", sources[s], sources[s]);
        fprintf(f, "rules:\n");
        for (unsigned i = 0; i < n_rules; i++)
                emit_rule(f, i);
        fclose(f);

        double t0 = now_us();
        r = config_load(path, CONFIG_LOAD_NO_SECRETS, &c, &problems);
        if (r < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                fprintf(stderr, "rules-bench: config_load: %s\n", strerror(-r));
                return 1;
        }
        double load_ms = (now_us() - t0) / 1000;

        json_object *ev[4];
        size_t hits_per_event[4];
        for (unsigned s = 0; s < 4; s++) {
                RuleHits h = {};
                ev[s] = json_tokener_parse(events[s]);
                if (!ev[s] || rules_evaluate(c, sources[s], ev[s], &h) < 0) {
                        fprintf(stderr, "rules-bench: event %u failed\n", s);
                        return 1;
                }
                hits_per_event[s] = h.n;
                rule_hits_free(&h);
        }

        /* Each round: every event ITER times; per-event figure = round time
         * / events. Median over ROUNDS rounds. */
        enum { ITER = 500 };
        double eval_us[ROUNDS], parse_us[ROUNDS];
        for (unsigned round = 0; round < ROUNDS; round++) {
                double a = now_us();
                for (unsigned it = 0; it < ITER; it++)
                        for (unsigned s = 0; s < 4; s++) {
                                RuleHits h = {};
                                (void) rules_evaluate(c, sources[s], ev[s], &h);
                                rule_hits_free(&h);
                        }
                eval_us[round] = (now_us() - a) / (ITER * 4);
                a = now_us();
                for (unsigned it = 0; it < ITER; it++)
                        for (unsigned s = 0; s < 4; s++) {
                                RuleHits h = {};
                                json_object *o = json_tokener_parse(events[s]);
                                (void) rules_evaluate(c, sources[s], o, &h);
                                rule_hits_free(&h);
                                json_object_put(o);
                        }
                parse_us[round] = (now_us() - a) / (ITER * 4);
        }
        qsort(eval_us, ROUNDS, sizeof(double), cmp_double);
        qsort(parse_us, ROUNDS, sizeof(double), cmp_double);

        /* per source, to show the spread */
        printf("rules: %u rules over 4 sources (%zu compiled, config_load %.1f ms); hits per event:"
               " splunk %zu, okta %zu, sentinel %zu, elastic %zu\n",
               n_rules, c->n_rules, load_ms, hits_per_event[0], hits_per_event[1], hits_per_event[2], hits_per_event[3]);
        for (unsigned s = 0; s < 4; s++) {
                double best = 1e18;
                for (unsigned round = 0; round < 5; round++) {
                        double a = now_us();
                        for (unsigned it = 0; it < ITER; it++) {
                                RuleHits h = {};
                                (void) rules_evaluate(c, sources[s], ev[s], &h);
                                rule_hits_free(&h);
                        }
                        double t = (now_us() - a) / ITER;
                        if (t < best)
                                best = t;
                }
                printf("rules:   %-8s %.2f us/event (best of 5)\n", sources[s], best);
        }
        printf("rules: rules_evaluate median %.2f us/event (min %.2f, max %.2f, %d rounds x %d events; target <= 50)\n",
               eval_us[ROUNDS / 2], eval_us[0], eval_us[ROUNDS - 1], ROUNDS, ITER * 4);
        printf("rules: json parse + rules_evaluate median %.2f us/event\n", parse_us[ROUNDS / 2]);
        printf("rules: median %.2f us/event\n", eval_us[ROUNDS / 2]);
        for (unsigned s = 0; s < 4; s++)
                json_object_put(ev[s]);
        config_free(c);
        return 0;
}
