/* Rules YAML on arbitrary bytes, two ways (the first byte chooses):
 *   even: the input, indented, is the value of `rules:` in a minimal valid
 *         main config (so the rule compiler sees it, not the top-level
 *         walker);
 *   odd:  the input is an included file (rules.d/fuzz.yaml, which may hold
 *         sources: and rules:) of a fixed main config.
 * Loaded with CONFIG_LOAD_NO_SECRETS. A config that loads is evaluated
 * against a fixed event from each source, so compiled conditions, paths and
 * templates written by the fuzzer also run. */
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "alloc.h"
#include "config.h"
#include "fuzz.h"
#include "rules.h"

#define HEAD                                            \
        "onepassword:\n"                                \
        "  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n"     \
        "  client_id_file: id\n"                        \
        "  client_secret_file: secret\n"                \
        "sources:\n"                                    \
        "  - name: splunk\n"                            \
        "    auth: { bearer: { token_file: t } }\n"      \
        "  - name: okta\n"                              \
        "    auth: { bearer: { token_file: t } }\n"

static const char event_text[] =
        "{\"sid\": \"s1\", \"search_name\": \"Impossible travel\", \"severity\": 7,"
        " \"result\": {\"user\": \"alice@example.com\", \"signature\": \"Impossible travel\","
        " \"severity\": \"high\", \"score\": 87.5, \"tags\": [\"a\", \"b\"], \"ok\": true, \"none\": null},"
        " \"data\": {\"events\": [{\"target\": [{\"alternateId\": \"bob@example.com\", \"type\": \"User\"}]}]},"
        " \"object\": {\"properties\": {\"severity\": \"High\", \"relatedEntities\": ["
        "  {\"kind\": \"Account\", \"properties\": {\"accountName\": \"carol\", \"upnSuffix\": \"example.com\"}},"
        "  {\"kind\": \"Host\", \"properties\": {\"hostName\": \"h1\"}}]}},"
        " \"a.b\": {\"c\": 1}, \"\": \"empty key\"}";

static json_object *event;
static char main_path[4200], include_path[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        char p[4200];

        fuzz_quiet_logs();
        fuzz_path(p, sizeof(p), "rules.d");
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
                abort();
        fuzz_path(main_path, sizeof(main_path), "remedyd.yaml");
        fuzz_path(include_path, sizeof(include_path), "rules.d/fuzz.yaml");
        event = json_tokener_parse(event_text);
        if (!event)
                abort();
        return 0;
}

static void evaluate(const Config *c) {
        static const char *const sources[] = { "splunk", "okta", "nosuch" };

        for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
                RuleHits hits = {};
                char *text = NULL;

                if (rules_evaluate(c, sources[i], event, &hits) >= 0)
                        rule_hits_free(&hits);
                if (rules_explain(c, sources[i], event, &text) >= 0)
                        mem_free(text);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ConfigProblems problems = {};
        Config *c = NULL;

        if (!event)
                LLVMFuzzerInitialize(NULL, NULL);
        if (size < 1)
                return 0;

        if (data[0] & 1) {
                static const char main_text[] = HEAD "include:\n  - rules.d/*.yaml\n";

                fuzz_write_file(main_path, main_text, strlen(main_text));
                fuzz_write_file(include_path, data + 1, size - 1);
        } else {
                /* "rules:\n" then every input line indented by two spaces. */
                size_t n_lines = 1, head = strlen(HEAD "rules:\n");
                char *buf, *o;

                for (size_t i = 1; i < size; i++)
                        n_lines += data[i] == '\n';
                buf = mem_malloc(head + size + 2 * n_lines + 1);
                if (!buf)
                        abort();
                memcpy(buf, HEAD "rules:\n", head);
                o = buf + head;
                *o++ = ' ';
                *o++ = ' ';
                for (size_t i = 1; i < size; i++) {
                        *o++ = (char) data[i];
                        if (data[i] == '\n') {
                                *o++ = ' ';
                                *o++ = ' ';
                        }
                }
                fuzz_write_file(main_path, buf, (size_t) (o - buf));
                mem_free(buf);
                (void) unlink(include_path);
        }

        if (config_load(main_path, CONFIG_LOAD_NO_SECRETS, &c, &problems) >= 0)
                evaluate(c);
        config_free(c);
        config_problems_free(&problems);
        return 0;
}
