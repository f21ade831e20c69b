/* The JSON event of a webhook delivery through rules_evaluate() and
 * rules_explain(), parsed by the webhook's own webhook_parse_body() (UTF-8,
 * json-c at depth LIMIT_JSON_DEPTH, one object, only whitespace after it,
 * no repeated key), against a fixed config whose rules use every operator,
 * for_each/where, templates (${event.X}, $$), stop, and sources named and
 * "*". The first byte picks the source the event came from; the rest is
 * the body. */
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "config.h"
#include "fuzz.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "webhook.h"

static const char config_text[] =
        "onepassword:\n"
        "  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n"
        "  client_id_file: id\n"
        "  client_secret_file: secret\n"
        "safety:\n"
        "  protected_users: [boss@example.com, \"*@secops.example.com\"]\n"
        "sources:\n"
        "  - name: splunk\n"
        "    auth: { hmac_sha256: { header: X-Sig, prefix: \"sha256=\", secret_file: s } }\n"
        "    event_id: \"${sid}\"\n"
        "  - name: okta\n"
        "    auth: { header_token: { header: Authorization, token_file: t } }\n"
        "    okta_verification: true\n"
        "  - name: sentinel\n"
        "    auth: { bearer: { token_file: t } }\n"
        "  - name: elastic\n"
        "    auth: { basic: { username: kibana, password_file: p } }\n"
        "  - name: alertmanager\n"
        "    auth: { bearer: { token_file: t } }\n"
        "  - name: datadog\n"
        "    auth: { header_token: { header: DD-Token, token_file: t } }\n"
        "rules:\n"
        "  - name: splunk-impossible-travel\n"
        "    source: splunk\n"
        "    when:\n"
        "      all:\n"
        "        - { field: result.signature, equals: \"Impossible travel\" }\n"
        "        - { field: result.severity, in: [high, critical], ignore_case: true }\n"
        "        - { field: result.user, matches: \"^[^@]+@[a-z.]+$\" }\n"
        "    action: suspend\n"
        "    user: \"${result.user}\"\n"
        "    reason: \"Splunk ${search_name}: ${result.signature} ($$${result.count})\"\n"
        "    cooldown: 30m\n"
        "    for: 4h\n"
        "  - name: splunk-score\n"
        "    source: splunk\n"
        "    when:\n"
        "      any:\n"
        "        - { field: result.score, gt: 90 }\n"
        "        - { field: result.score, gte: 80.5 }\n"
        "        - { not: { field: result.risk, lt: 10 } }\n"
        "        - { field: /result/a~1b, lte: 0 }\n"
        "    action: notify\n"
        "    user: \"${result.user}\"\n"
        "    dry_run: true\n"
        "  - name: okta-session-hijack\n"
        "    source: okta\n"
        "    when:\n"
        "      all:\n"
        "        - { field: data.events, exists: true }\n"
        "        - { field: data.events.0.eventType, starts_with: security. }\n"
        "        - { field: data.events.0.outcome.result, not_in: [SUCCESS, ALLOW] }\n"
        "    for_each: data.events\n"
        "    where: { field: target.0.type, equals: User }\n"
        "    action: suspend\n"
        "    user: \"${target.0.alternateId}\"\n"
        "    reason: \"Okta ${eventType} for ${event.data.events.0.actor.id}\"\n"
        "    stop: true\n"
        "  - name: sentinel-accounts\n"
        "    source: [sentinel, okta]\n"
        "    when: { field: object.properties.severity, in: [High, Medium], ignore_case: true }\n"
        "    for_each: object.properties.relatedEntities\n"
        "    where:\n"
        "      all:\n"
        "        - { field: kind, equals: Account }\n"
        "        - { field: properties.accountName, not_equals: \"\" }\n"
        "    action: suspend\n"
        "    user: \"${properties.accountName}@${properties.upnSuffix}\"\n"
        "    reason: \"Sentinel incident ${event.object.properties.incidentNumber}\"\n"
        "  - name: elastic-rule\n"
        "    source: elastic\n"
        "    when:\n"
        "      all:\n"
        "        - { field: rule.name, contains: credential, ignore_case: true }\n"
        "        - { field: kibana.alert.severity, not_in: [low] }\n"
        "        - { field: user.email, ends_with: \"@example.com\" }\n"
        "    action: suspend\n"
        "    user: \"${user.email}\"\n"
        "  - name: alertmanager-alerts\n"
        "    source: alertmanager\n"
        "    when: { field: status, equals: firing }\n"
        "    for_each: alerts\n"
        "    where: { any: [{ field: labels.severity, equals: critical }, { field: labels.user, exists: true }] }\n"
        "    action: reactivate\n"
        "    user: \"${labels.user}\"\n"
        "    reason: \"${annotations.summary}\"\n"
        "  - name: datadog-any\n"
        "    source: \"*\"\n"
        "    when: { field: \"alert_type\", in: [error, 1, 2.5, true] }\n"
        "    action: notify\n"
        "    user: \"${usr.email}\"\n"
        "  - name: always\n"
        "    source: \"*\"\n"
        "    action: notify\n"
        "    user: \"$${literal}${missing.path}\"\n";

static const char *const sources[] = { "splunk", "okta", "sentinel", "elastic", "alertmanager", "datadog", "other" };

static Config *config;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        ConfigProblems problems = {};
        char path[4200];

        fuzz_quiet_logs();
        fuzz_path(path, sizeof(path), "remedyd.yaml");
        fuzz_write_file(path, config_text, strlen(config_text));
        if (config_load(path, CONFIG_LOAD_NO_SECRETS, &config, &problems) < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                abort();
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        RuleHits hits = {};
        const char *source;
        json_object *event;
        char *text = NULL;
        int r, k;

        if (!config)
                LLVMFuzzerInitialize(NULL, NULL);
        if (size < 1)
                return 0;
        source = sources[data[0] % (sizeof(sources) / sizeof(sources[0]))];
        r = webhook_parse_body(/* tok= */ NULL, (const char *) data + 1, size - 1, &event);
        if (r == -ENOMEM)
                return 0;
        if (r < 0) {
                if (r != -EILSEQ && r != -EINVAL && r != -E2BIG)
                        abort();
                return 0;
        }

        r = rules_evaluate(config, source, event, &hits);
        if (r >= 0) {
                if (hits.n > LIMIT_ACTIONS_PER_EVENT)
                        abort();
                for (size_t i = 0; i < hits.n; i++) {
                        const RuleHit *h = &hits.hits[i];

                        if (!h->rule || (!h->user) == (!h->missing))
                                abort();    /* resolved xor unresolved */
                        if (h->user && strlen(h->user) > LIMIT_TEMPLATE_OUTPUT_BYTES)
                                abort();
                }
                rule_hits_free(&hits);
        } else if (r != -ENOBUFS && r != -ENOMEM)
                abort();

        k = rules_explain(config, source, event, &text);
        if ((k < 0) != (r < 0))
                abort();        /* explain walks what evaluate walks */
        mem_free(text);
        json_object_put(event);
        return 0;
}
