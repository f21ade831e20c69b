/* config.c: every key with its exact value, defaults, each class of
 * problem with its exact "FILE:LINE:COLUMN: message", includes,
 * credentials, limits, the shipped example, and out-of-memory paths. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "harness.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "store.h"
#include "strbuf.h"
#include "util.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";
static char *source_root;

static char *fixture(const char *rel) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/tests/data/config/%s", source_root, rel) > 0);
        return p;
}

static void write_file(const char *path, const char *text, size_t n) {
        FILE *f = fopen(path, "we");

        ASSERT_NOT_NULL(f);
        ASSERT_EQ(fwrite(text, 1, n, f), n);
        ASSERT_EQ(fclose(f), 0);
}

static char *tmp_path(const char *name) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/%s", tmpdir, name) > 0);
        return p;
}

/* The minimal valid head; secrets "id" and "secret" live in tmpdir. */
#define HEAD                                        \
        "onepassword:\n"                            \
        "  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n" \
        "  client_id_file: id\n"                    \
        "  client_secret_file: secret\n"
/* HEAD is 4 lines: the first line after it is line 5. */

/* Loads text as tmpdir/t.yaml. Returns the load result; *ret_problems gets
 * every problem line with the tmpdir prefix removed, joined by "\n". */
static int load_text(const char *text, unsigned flags, Config **ret, char **ret_problems) {
        ConfigProblems problems = {};
        _cleanup_free_ char *path = tmp_path("t.yaml");
        StrBuf b;
        Config *c = NULL;
        int r;

        write_file(path, text, strlen(text));
        r = config_load(path, flags, &c, &problems);
        strbuf_init(&b, 1u << 20);
        for (size_t i = 0; i < problems.n; i++) {
                const char *line = problems.lines[i];

                if (str_startswith(line, tmpdir))
                        line += strlen(tmpdir) + 1;
                ASSERT_OK(strbuf_printf(&b, "%s%s", i > 0 ? "\n" : "", line));
        }
        config_problems_free(&problems);
        if (ret_problems)
                *ret_problems = strbuf_steal(&b);
        else
                strbuf_free(&b);
        if (r >= 0) {
                if (ret)
                        *ret = c;
                else
                        config_free(c);
        }
        return r;
}

/* Loads path, which must load; prints its problems and fails the test if
 * it does not. Caller frees with config_free(). */
static Config *load_ok(const char *path, unsigned flags) {
        ConfigProblems problems = {};
        Config *c = NULL;

        if (config_load(path, flags, &c, &problems) < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                FAIL_AT("%s does not load", path);
        }
        return c;
}

/* Loads text, which must fail with -EINVAL; returns its problems as
 * load_text() does (caller frees). */
static char *problems_of(const char *text) {
        char *got = NULL;

        ASSERT_ERR(load_text(text, 0, NULL, &got), EINVAL);
        return got;
}

/* "<TMP>" in want stands for the temporary directory. */
static void expect_problem(const char *text, const char *want_template) {
        _cleanup_free_ char *got = NULL, *want = NULL;
        const char *p, *q;
        StrBuf b;
        int r;

        strbuf_init(&b, 1u << 16);
        for (p = want_template; (q = strstr(p, "<TMP>")); p = q + 5) {
                ASSERT_OK(strbuf_append(&b, p, (size_t) (q - p)));
                ASSERT_OK(strbuf_puts(&b, tmpdir));
        }
        ASSERT_OK(strbuf_puts(&b, p));
        want = strbuf_steal(&b);

        r = load_text(text, 0, NULL, &got);
        if (r != -EINVAL || strcmp(got, want) != 0) {
                fprintf(stderr, "--- config:\n%s--- want:\n%s\n--- got (r=%d):\n%s\n", text, want, r, got);
                FAIL_AT("problem mismatch");
        }
}

TEST(full) {
        _cleanup_free_ char *path = fixture("full/remedyd.yaml");
        Config *c = load_ok(path, 0);
        const Source *s;
        const Rule *r;

        ASSERT_STREQ(c->path, path);
        ASSERT_EQ(strv_length(c->files), 3);
        ASSERT_CONTAINS(c->files[1], "rules.d/10-first.yaml");
        ASSERT_CONTAINS(c->files[2], "rules.d/20-second.yaml");

        ASSERT_STREQ(c->listen.webhook, "127.0.0.1:18080");
        ASSERT_EQ(c->listen.webhook_addr.kind, LISTEN_INET);
        ASSERT_EQ(c->listen.webhook_addr.port, 18080);
        ASSERT_STREQ(c->listen.status, "[::1]:19464");
        ASSERT_STREQ(c->listen.status_addr.host, "::1");
        ASSERT_STREQ(c->listen.control, "unix:/tmp/remedyd-test/control.sock");
        ASSERT_EQ(c->listen.control_addr.kind, LISTEN_UNIX);
        ASSERT_CONTAINS(c->listen.tls_cert_file, "/tests/data/config/full/tls/cert.pem");
        ASSERT_TRUE(c->listen.tls_cert_file[0] == '/');
        ASSERT_CONTAINS(c->listen.tls_key_file, "/full/tls/key.pem");
        ASSERT_CONTAINS(c->listen.tls_client_ca_file, "/full/tls/ca.pem");
        ASSERT_EQ(c->listen.max_body_bytes, 65536);

        ASSERT_STREQ(c->onepassword.base_url, "http://127.0.0.1:9999");
        ASSERT_EQ(c->onepassword.api_version, API_VERSION_V1);
        ASSERT_STREQ(c->onepassword.account_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        ASSERT_CONTAINS(c->onepassword.client_id_file, "/full/secrets/client_id");
        ASSERT_STREQ(c->onepassword.client_id, "full-client-id");
        ASSERT_STREQ(c->onepassword.client_secret, "full-client-secret");
        ASSERT_STREQ(c->onepassword.user_agent, "remedyd-test/1");
        ASSERT_EQ(c->onepassword.timeout_usec, 2500 * USEC_PER_MSEC);
        ASSERT_CONTAINS(c->onepassword.ca_file, "/full/tls/ca.pem");
        ASSERT_EQ(c->onepassword.directory_refresh_usec, 90 * 60 * USEC_PER_SEC);

        ASSERT_STREQ(c->state.path, "/tmp/remedyd-test/state.db");

        ASSERT_TRUE(c->safety.dry_run);
        ASSERT_EQ(strv_length(c->safety.protected_users), 3);
        ASSERT_STREQ(c->safety.protected_users[1], "*@secops.example.com");
        ASSERT_EQ(c->safety.max_suspensions, 7);
        ASSERT_EQ(c->safety.window_usec, 2 * 3600 * USEC_PER_SEC);

        ASSERT_EQ(c->n_sources, 6);
        s = config_find_source(c, "splunk");
        ASSERT_NOT_NULL(s);
        ASSERT_EQ(s->auth.method, AUTH_HMAC_SHA256);
        ASSERT_STREQ(s->auth.header, "X-Remedyd-Signature");
        ASSERT_STREQ(s->auth.prefix, "sha256=");
        ASSERT_STREQ(s->auth.timestamp_header, "X-Remedyd-Timestamp");
        ASSERT_EQ(s->auth.tolerance_usec, 90 * USEC_PER_SEC);
        ASSERT_EQ(s->auth.n_secrets, 2);
        ASSERT_STREQ(s->auth.secrets[0], "splunk-old-secret");
        ASSERT_STREQ(s->auth.secrets[1], "splunk-new-secret");
        ASSERT_NULL(s->auth.secrets[2]);
        ASSERT_STREQ(template_text(s->event_id), "${sid}");
        ASSERT_TRUE(s->rate_per_sec == 50.0);
        ASSERT_EQ(s->rate_burst, 50);
        ASSERT_FALSE(s->okta_verification);
        ASSERT_EQ(s->mark.line, 37);
        ASSERT_EQ(s->mark.column, 5);

        s = config_find_source(c, "sentinel");
        ASSERT_EQ(s->auth.method, AUTH_BEARER);
        ASSERT_STREQ(s->auth.secrets[0], "sentinel-bearer-token");
        ASSERT_EQ(s->auth.n_secrets, 1);
        ASSERT_TRUE(s->rate_per_sec == 10.0);
        ASSERT_EQ(s->rate_burst, 600);
        ASSERT_NULL(s->event_id);

        s = config_find_source(c, "okta");
        ASSERT_EQ(s->auth.method, AUTH_HEADER_TOKEN);
        ASSERT_STREQ(s->auth.header, "Authorization");
        ASSERT_STREQ(s->auth.secrets[0], "okta-header-token");
        ASSERT_TRUE(s->okta_verification);
        ASSERT_TRUE(s->rate_per_sec == 1.0);

        s = config_find_source(c, "elastic");
        ASSERT_EQ(s->auth.method, AUTH_BASIC);
        ASSERT_STREQ(s->auth.username, "kibana");
        ASSERT_STREQ(s->auth.secrets[0], "elastic-password");
        ASSERT_TRUE(s->rate_per_sec == 0.0);

        s = config_find_source(c, "mtls-siem");
        ASSERT_EQ(s->auth.method, AUTH_MTLS);
        ASSERT_STREQ(s->auth.subject, "CN=siem.example.com");
        ASSERT_NULL(s->auth.secrets);

        s = config_find_source(c, "included-source");
        ASSERT_EQ(s->auth.method, AUTH_NONE);
        ASSERT_CONTAINS(s->mark.file, "10-first.yaml");
        ASSERT_NULL(config_find_source(c, "nope"));

        ASSERT_EQ(c->n_rules, 4);
        r = &c->rules[0];
        ASSERT_STREQ(r->name, "splunk-impossible-travel");
        ASSERT_EQ(strv_length(r->sources), 1);
        ASSERT_STREQ(r->sources[0], "splunk");
        ASSERT_FALSE(r->any_source);
        ASSERT_NOT_NULL(r->when);
        ASSERT_NULL(r->for_each);
        ASSERT_EQ(r->action, ACTION_SUSPEND);
        ASSERT_STREQ(template_text(r->user), "${result.user}");
        ASSERT_STREQ(template_text(r->reason), "Splunk ${search_name}: ${result.signature}");
        ASSERT_EQ(r->cooldown_usec, 30 * 60 * USEC_PER_SEC);
        ASSERT_EQ(r->for_usec, 4 * 3600 * USEC_PER_SEC);
        ASSERT_TRUE(r->dry_run);
        ASSERT_TRUE(r->stop);
        ASSERT_EQ(r->mark.line, 70);

        r = &c->rules[1];
        ASSERT_EQ(strv_length(r->sources), 2);
        ASSERT_STREQ(r->sources[1], "okta");
        ASSERT_STREQ(jpath_text(r->for_each), "object.properties.relatedEntities");
        ASSERT_NOT_NULL(r->where);
        ASSERT_EQ(r->action, ACTION_NOTIFY);
        ASSERT_EQ(r->cooldown_usec, 0);
        ASSERT_FALSE(r->stop);

        /* includes in glob order, after the main file */
        ASSERT_STREQ(c->rules[2].name, "first-file-rule");
        ASSERT_STREQ(c->rules[3].name, "second-file-rule");
        ASSERT_TRUE(c->rules[3].any_source);
        ASSERT_NULL(c->rules[3].sources);
        ASSERT_EQ(c->rules[3].action, ACTION_REACTIVATE);
        ASSERT_TRUE(c->loaded_usec > 0);

        ASSERT_STREQ(config_action_kind_to_string(ACTION_NOTIFY), "notify");
        ASSERT_EQ(config_action_kind_from_string("reactivate"), ACTION_REACTIVATE);
        ASSERT_EQ(config_action_kind_from_string("delete"), _ACTION_KIND_INVALID);
        ASSERT_STREQ(config_auth_method_to_string(AUTH_HEADER_TOKEN), "header_token");
        ASSERT_STREQ(config_api_version_to_string(API_VERSION_V1BETA1), "v1beta1");
        ASSERT_NULL(config_auth_method_to_string(_AUTH_METHOD_MAX));
        config_free(c);
}

TEST(defaults) {
        Config *c = NULL;
        _cleanup_free_ char *problems = NULL;

        unsetenv("STATE_DIRECTORY");
        ASSERT_OK(load_text(HEAD, 0, &c, &problems));
        ASSERT_STREQ(c->listen.webhook, "0.0.0.0:8080");
        ASSERT_STREQ(c->listen.status, "127.0.0.1:9464");
        ASSERT_STREQ(c->listen.control, "unix:/run/remedyd/control.sock");
        ASSERT_STREQ(c->listen.control_addr.path, "/run/remedyd/control.sock");
        ASSERT_NULL(c->listen.tls_cert_file);
        ASSERT_EQ(c->listen.max_body_bytes, 1048576);
        ASSERT_STREQ(c->onepassword.base_url, "https://api.1password.com");
        ASSERT_EQ(c->onepassword.api_version, API_VERSION_V1BETA1);
        ASSERT_TRUE(str_startswith(c->onepassword.user_agent, "remedyd/"));
        ASSERT_EQ(c->onepassword.timeout_usec, 10 * USEC_PER_SEC);
        ASSERT_EQ(c->onepassword.directory_refresh_usec, 600 * USEC_PER_SEC);
        ASSERT_NULL(c->onepassword.ca_file);
        ASSERT_STREQ(c->onepassword.client_id, "the-client-id");
        ASSERT_STREQ(c->state.path, "/var/lib/remedyd/state.db");
        ASSERT_FALSE(c->safety.dry_run);
        ASSERT_NULL(c->safety.protected_users);
        ASSERT_EQ(c->safety.max_suspensions, 0);
        ASSERT_EQ(c->safety.window_usec, 3600 * USEC_PER_SEC);
        ASSERT_EQ(c->n_sources, 0);
        ASSERT_EQ(c->n_rules, 0);
        config_free(c);

        /* a relative unix socket is relative to the working directory */
        ASSERT_OK(load_text(HEAD "listen:\n  control: unix:run/c.sock\n", 0, &c, NULL));
        {
                char cwd[4096], want[4200];

                ASSERT_NOT_NULL(getcwd(cwd, sizeof(cwd)));
                snprintf(want, sizeof(want), "%s/run/c.sock", cwd);
                ASSERT_STREQ(c->listen.control, "unix:run/c.sock");
                ASSERT_EQ(c->listen.control_addr.kind, LISTEN_UNIX);
                ASSERT_STREQ(c->listen.control_addr.path, want);
        }
        config_free(c);

        setenv("STATE_DIRECTORY", "/var/lib/remedyd-x:/other", 1);
        ASSERT_OK(load_text(HEAD "listen:\n  status: \"\"\n  control: ~\n", 0, &c, NULL));
        ASSERT_STREQ(c->state.path, "/var/lib/remedyd-x/state.db");
        ASSERT_NULL(c->listen.status);
        ASSERT_NULL(c->listen.control);
        config_free(c);
        unsetenv("STATE_DIRECTORY");
}

#define SRC_OK "sources:\n  - name: s\n    auth: { bearer: { token_file: secret } }\n"

TEST(problems) {
        /* unknown key, with and without a suggestion */
        expect_problem(HEAD "lisen:\n  webhook: \"127.0.0.1:1\"\n",
                       "t.yaml:5:1: unknown key 'lisen' in 'document', did you mean 'listen'?");
        expect_problem(HEAD "listen:\n  max_body_byte: 5\n",
                       "t.yaml:6:3: unknown key 'max_body_byte' in 'listen', did you mean 'max_body_bytes'?");
        expect_problem(HEAD "frobnicate: 1\n", "t.yaml:5:1: unknown key 'frobnicate' in 'document'");
        expect_problem(HEAD "listen:\n  tls:\n    cert: x\n",
                       "t.yaml:7:5: unknown key 'cert' in 'listen.tls'");
        /* wrong types */
        expect_problem(HEAD "listen: 5\n", "t.yaml:5:9: 'listen' must be a mapping");
        expect_problem(HEAD "listen:\n  max_body_bytes: [1]\n",
                       "t.yaml:6:19: 'listen.max_body_bytes' must be a scalar, not a list");
        expect_problem(HEAD "listen:\n  max_body_bytes: lots\n",
                       "t.yaml:6:19: 'listen.max_body_bytes' must be an integer from 1 to 67108864, not 'lots'");
        expect_problem(HEAD "listen:\n  max_body_bytes: 67108865\n",
                       "t.yaml:6:19: 'listen.max_body_bytes' must be an integer from 1 to 67108864, not '67108865'");
        expect_problem(HEAD "safety:\n  dry_run: maybe\n",
                       "t.yaml:6:12: 'safety.dry_run' must be true or false, not 'maybe'");
        expect_problem(HEAD "safety:\n  protected_users: root@example.com\n",
                       "t.yaml:6:20: 'safety.protected_users' must be a list");
        /* durations */
        expect_problem(HEAD "safety:\n  max_suspensions:\n    window: 10 minutes\n",
                       "t.yaml:7:13: 'safety.max_suspensions.window': invalid duration '10 minutes' (use e.g. 500ms, 30s, 10m, 4h, 7d)");
        expect_problem(HEAD "onepassword:\n  timeout: 1s\n",
                       "t.yaml:5:1: duplicate key 'onepassword' (first at line 1)");
        expect_problem(HEAD "  timeout: 0s\n", "t.yaml:5:12: 'onepassword.timeout' must be a positive duration, not '0s'");
        /* values */
        expect_problem("onepassword:\n  account_id: short\n  client_id_file: id\n  client_secret_file: secret\n",
                       "t.yaml:2:15: 'onepassword.account_id' must be 26 characters A-Z and 0-9, not 'short'");
        expect_problem(HEAD "  base_url: http://api.example.com\n",
                       "t.yaml:5:13: 'onepassword.base_url': http:// is only allowed for a loopback host, use https:// for 'api.example.com'");
        expect_problem(HEAD "  api_version: v2\n", "t.yaml:5:16: 'onepassword.api_version' must be v1beta1 or v1, not 'v2'");
        expect_problem(HEAD "listen:\n  webhook: \"nowhere\"\n",
                       "t.yaml:6:12: 'listen.webhook': invalid address 'nowhere' (use HOST:PORT, [V6]:PORT, unix:/path or systemd:NAME)");
        expect_problem(HEAD "listen:\n  control: \"127.0.0.1:5\"\n",
                       "t.yaml:6:12: 'listen.control' must be a unix socket (unix:/path), not '127.0.0.1:5'");
        expect_problem("onepassword:\n  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n",
                       "t.yaml:2:3: 'onepassword' is missing the required key 'client_id_file'\n"
                       "t.yaml:2:3: 'onepassword' is missing the required key 'client_secret_file'");
        expect_problem(SRC_OK,
                       "t.yaml:1:1: missing required section 'onepassword' (account_id, client_id_file, client_secret_file)");
        /* unreadable secret file */
        expect_problem("onepassword:\n  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n  client_id_file: /nonexistent/id\n"
                       "  client_secret_file: secret\n",
                       "t.yaml:3:3: cannot read secret file '/nonexistent/id': No such file or directory");
        expect_problem(HEAD "sources:\n  - name: s\n    auth:\n      hmac_sha256:\n        header: X-Sig\n"
                       "        secret_file: missing.hmac\n",
                       "t.yaml:10:9: cannot read secret file '<TMP>/missing.hmac': No such file or directory");
        expect_problem(HEAD "  ca_file: /nonexistent/ca.pem\n",
                       "t.yaml:5:3: cannot read onepassword.ca_file '/nonexistent/ca.pem': No such file or directory");
        /* sources */
        expect_problem(HEAD SRC_OK "  - name: s\n    auth: { bearer: { token_file: secret } }\n",
                       "t.yaml:8:5: duplicate source name 's' (first defined at <TMP>/t.yaml:6:5)");
        expect_problem(HEAD "sources:\n  - name: s\n    auth:\n      bearer: { token_file: secret }\n"
                       "      basic: { username: u, password_file: secret }\n",
                       "t.yaml:9:7: source has two auth methods ('bearer' and 'basic'), exactly one is allowed");
        expect_problem(HEAD "sources:\n  - name: s\n    auth: {}\n",
                       "t.yaml:7:11: 'auth' needs exactly one method (hmac_sha256, bearer, header_token, basic, mtls, none), found none");
        expect_problem(HEAD "sources:\n  - name: s\n",
                       "t.yaml:6:5: source 's' needs 'auth' with exactly one method (hmac_sha256, bearer, header_token, basic, mtls, none)");
        expect_problem(HEAD "sources:\n  - name: s\n    auth: { baerer: { token_file: secret } }\n",
                       "t.yaml:7:13: unknown auth method 'baerer', did you mean 'bearer'?");
        expect_problem(HEAD "sources:\n  - name: s\n    auth: { none: true }\n",
                       "t.yaml:6:5: source 's': 'none: true' is refused unless listen.webhook is loopback or a unix socket (it is '0.0.0.0:8080')");
        expect_problem(HEAD "sources:\n  - name: s\n    auth: { mtls: {} }\n",
                       "t.yaml:6:5: source 's': mtls needs listen.tls.client_ca_file");
        expect_problem(HEAD "sources:\n  - name: s\n    auth: { hmac_sha256: { secret_file: secret } }\n",
                       "t.yaml:7:13: 'auth.hmac_sha256' is missing the required key 'header'");
        expect_problem(HEAD "sources:\n  - name: \"bad/name\"\n    auth: { bearer: { token_file: secret } }\n",
                       "t.yaml:6:11: 'name': invalid name 'bad/name' (1 to 128 characters A-Z a-z 0-9 _ . -)");
        expect_problem(HEAD SRC_OK "    rate_limit: 5/d\n",
                       "t.yaml:8:17: 'rate_limit': invalid rate '5/d' (use N/s, N/m or N/h, N from 1 to 1000000)");
        expect_problem(HEAD SRC_OK "    event_id: \"${sid\"\n",
                       "t.yaml:8:15: 'event_id': invalid template '${sid' at offset 0 (use ${PATH}, and $$ for a literal $)");
        /* rules */
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: suspend, user: x }\n"
                       "  - { name: r, source: s, action: notify, user: y }\n",
                       "t.yaml:10:5: duplicate rule name 'r' (first defined at <TMP>/t.yaml:9:5)");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: [s, splnk], action: suspend, user: x }\n",
                       "t.yaml:9:28: unknown source 'splnk'");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: ss, action: suspend, user: x }\n",
                       "t.yaml:9:24: unknown source 'ss', did you mean 's'?");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    where: { field: kind, equals: Account }\n",
                       "t.yaml:13:5: rule 'r': 'where' needs 'for_each'");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: notify, user: x, for: 1h }\n",
                       "t.yaml:9:52: rule 'r': 'for' only applies to action: suspend");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: delete, user: x }\n",
                       "t.yaml:9:35: 'action' must be suspend, reactivate or notify, not 'delete'");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s }\n",
                       "t.yaml:9:5: rule 'r' needs 'action' (suspend, reactivate or notify)\n"
                       "t.yaml:9:5: rule 'r' needs 'user' (a template such as \"${result.user}\")");
        /* a default in user would act on someone the alert did not name
         * (contract 3.3): reported at the insertion; in reason it is fine */
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: suspend, user: \"x ${a:-b}\", reason: \"${c:-d}\" }\n",
                       "t.yaml:9:53: 'user' may not have a default (${PATH:-TEXT}): it would act on someone the alert did not name");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: ${u:-}\n",
                       "t.yaml:12:11: 'user' may not have a default (${PATH:-TEXT}): it would act on someone the alert did not name");
        expect_problem(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: suspend, user: x, cooldown: 1 }\n",
                       "t.yaml:9:63: 'cooldown': invalid duration '1' (use e.g. 500ms, 30s, 10m, 4h, 7d)");
        /* conditions */
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, eqals: 1 }\n",
                       "t.yaml:13:23: unknown condition operator 'eqals', did you mean 'equals'?");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, matches: \"(unclosed\" }\n",
                       "t.yaml:13:32: invalid regular expression '(unclosed': Unmatched ( or \\(");
        {
                /* 32 patterns of ~8 MB (a{32000}) fit the config's 256 MiB
                 * budget; the 33rd does not (rules start on line 9) */
                StrBuf b;
                _cleanup_free_ char *text = NULL;

                strbuf_init(&b, 1u << 16);
                ASSERT_OK(strbuf_puts(&b, HEAD SRC_OK "rules:\n"));
                for (unsigned i = 0; i < 33; i++)
                        ASSERT_OK(strbuf_printf(&b, "  - { name: r%u, source: s, action: suspend, user: x, "
                                                    "when: { field: a, matches: \"a{32000}\" } }\n", i));
                text = strbuf_steal(&b);
                expect_problem(text, "t.yaml:41:82: regular expression 'a{32000}' is over the configuration's budget: "
                                     "all its patterns together may take 256 MiB to compile");
        }
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, matches: \"(x+)++++++++++++++++\" }\n",
                       "t.yaml:13:32: regular expression '(x+)++++++++++++++++' stacks repetition operators (such as "
                       "'a*+' or 'a{2}{3}'), which POSIX leaves undefined; group instead: '(a*)+'");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, equals: 1, in: [1] }\n",
                       "t.yaml:13:34: a condition takes exactly one operator, got 'equals' and 'in'");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a }\n",
                       "t.yaml:13:11: condition on 'a' has no operator (one of equals, not_equals, in, not_in, contains, "
                       "starts_with, ends_with, matches, exists, gt, gte, lt, lte)");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, gt: many }\n",
                       "t.yaml:13:27: 'gt' takes a number, not 'many'");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { all: [ { field: a, in: x } ], any: [] }\n",
                       "t.yaml:13:13: 'all' cannot be combined with other keys in one condition");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: { field: a, exists: yes, ignore_case: true }\n",
                       "t.yaml:13:11: 'ignore_case' does not apply to 'exists'");
        expect_problem(HEAD SRC_OK "rules:\n  - name: r\n    source: s\n    action: suspend\n    user: x\n"
                       "    when: [ { field: a, exists: true } ]\n",
                       "t.yaml:13:11: a condition must be a mapping: {all: [...]}, {any: [...]}, {not: ...} or {field: PATH, OPERATOR: VALUE}");
        /* YAML syntax error: libyaml's problem mark */
        expect_problem(HEAD "listen:\n  webhook: \"127.0.0.1:1\n",
                       "t.yaml:7:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at line 6)");
        expect_problem(HEAD "listen: {\n", "t.yaml:6:1: YAML syntax error: did not find expected node content (while parsing a flow node at line 6)");
        expect_problem(HEAD "---\nlisten: {}\n", "t.yaml:6:1: only one YAML document per file is allowed");
}

/* Every problem of one file is reported, in order, not just the first. */
TEST(many_problems) {
        _cleanup_free_ char *path = fixture("several-problems.yaml"), *want = NULL, *got = NULL;
        ConfigProblems problems = {};
        StrBuf b;
        Config *c = NULL;

        ASSERT_ERR(config_load(path, 0, &c, &problems), EINVAL);
        ASSERT_NULL(c);
        strbuf_init(&b, 1u << 16);
        for (size_t i = 0; i < problems.n; i++)
                ASSERT_OK(strbuf_printf(&b, "%s\n", problems.lines[i] + strlen(path) - strlen("several-problems.yaml")));
        got = strbuf_steal(&b);
        ASSERT_TRUE(asprintf(&want,
                             "several-problems.yaml:4:3: unknown key 'webhok' in 'listen', did you mean 'webhook'?\n"
                             "several-problems.yaml:9:12: 'onepassword.timeout': invalid duration 'soon' (use e.g. 500ms, 30s, 10m, 4h, 7d)\n"
                             "several-problems.yaml:11:3: unknown key 'dryrun' in 'safety', did you mean 'dry_run'?\n"
                             "several-problems.yaml:22:23: unknown condition operator 'equal', did you mean 'equals'?\n"
                             "several-problems.yaml:23:25: unknown source 'splunkk', did you mean 'splunk'?\n") > 0);
        ASSERT_STREQ(got, want);
        ASSERT_EQ(problems.n, 5);
        ASSERT_NULL(problems.lines[5]);
        config_problems_free(&problems);
}

TEST(main_file_missing) {
        ConfigProblems problems = {};
        Config *c = NULL;

        ASSERT_ERR(config_load("/nonexistent/remedyd.yaml", 0, &c, &problems), ENOENT);
        ASSERT_EQ(problems.n, 1);
        ASSERT_STREQ(problems.lines[0], "/nonexistent/remedyd.yaml: No such file or directory");
        config_problems_free(&problems);
        ASSERT_ERR(config_load("/nonexistent/remedyd.yaml", 0, &c, NULL), ENOENT);
}

TEST(includes) {
        _cleanup_free_ char *d = tmp_path("inc"), *rd = tmp_path("inc/rules.d"), *sub = tmp_path("inc/rules.d/dir.yaml");
        _cleanup_free_ char *f1 = tmp_path("inc/rules.d/b.yaml"), *f2 = tmp_path("inc/rules.d/a.yaml");
        _cleanup_free_ char *got = NULL, *want = NULL;
        Config *c = NULL;
        const char *a = "sources:\n  - name: from-a\n    auth: { bearer: { token_file: ../../secret } }\n"
                        "rules:\n  - { name: a1, source: from-b, action: suspend, user: x }\n";
        const char *b = "sources:\n  - name: from-b\n    auth: { bearer: { token_file: ../../secret } }\n"
                        "rules:\n  - { name: b1, source: from-a, action: notify, user: y }\n"
                        "  - { name: b2, source: \"*\", action: notify, user: z }\n";

        ASSERT_OK(mkdir(d, 0755));
        ASSERT_OK(mkdir(rd, 0755));
        write_file(f1, b, strlen(b));
        write_file(f2, a, strlen(a));

        /* relative globs are relative to the main file; sorted order; a glob
         * matching nothing is fine; sources from one include serve rules in
         * another and in the main file */
        ASSERT_OK(load_text(HEAD "rules:\n  - { name: m, source: from-a, action: suspend, user: x }\n"
                            "include:\n  - inc/rules.d/*.yaml\n  - none/*.yaml\n",
                            0, &c, &got));
        ASSERT_EQ(c->n_rules, 4);
        ASSERT_STREQ(c->rules[0].name, "m");
        ASSERT_STREQ(c->rules[1].name, "a1");
        ASSERT_STREQ(c->rules[2].name, "b1");
        ASSERT_STREQ(c->rules[3].name, "b2");
        ASSERT_EQ(c->n_sources, 2);
        ASSERT_STREQ(c->sources[0].name, "from-a");
        ASSERT_STREQ(c->sources[1].name, "from-b");
        ASSERT_STREQ(c->rules[2].mark.file, f1);
        ASSERT_EQ(c->rules[2].mark.line, 5);
        config_free(c);
        mem_free(got);
        got = NULL;

        /* only rules and sources in an included file; problems name the
         * included file */
        write_file(f1, "listen: {}\n", strlen("listen: {}\n"));
        ASSERT_ERR(load_text(HEAD "include:\n  - inc/rules.d/b.yaml\n", 0, NULL, &got), EINVAL);
        ASSERT_STREQ(got, "inc/rules.d/b.yaml:1:1: unknown key 'listen' in 'included file'");
        mem_free(got);
        got = NULL;

        /* an include that cannot be read is a problem at the include line */
        ASSERT_OK(mkdir(sub, 0755));
        ASSERT_ERR(load_text(HEAD "include:\n  - inc/rules.d/dir.yaml\n", 0, NULL, &got), EINVAL);
        ASSERT_TRUE(asprintf(&want, "t.yaml:6:5: cannot read included file '%s/inc/rules.d/dir.yaml': Is a directory", tmpdir) > 0);
        ASSERT_STREQ(got, want);
        mem_free(got);
        got = NULL;
        rmdir(sub);
        unlink(f1);
        unlink(f2);
        rmdir(rd);
        rmdir(d);
}

TEST(credentials) {
        _cleanup_free_ char *got = NULL;
        Config *c = NULL;
        const char *text = "onepassword:\n  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n"
                           "  client_id_file: credential:client_id\n  client_secret_file: credential:client_secret\n";
        _cleanup_free_ char *creds = fixture("example-secrets/credentials");

        unsetenv("CREDENTIALS_DIRECTORY");
        ASSERT_ERR(load_text(text, 0, NULL, &got), EINVAL);
        ASSERT_STREQ(got, "t.yaml:3:3: cannot read secret file 'credential:client_id': $CREDENTIALS_DIRECTORY is not set (LoadCredential=)\n"
                          "t.yaml:4:3: cannot read secret file 'credential:client_secret': $CREDENTIALS_DIRECTORY is not set (LoadCredential=)");
        mem_free(got);
        got = NULL;
        got = NULL;

        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        ASSERT_OK(load_text(text, 0, &c, NULL));
        ASSERT_STREQ(c->onepassword.client_id_file, "credential:client_id");
        ASSERT_STREQ(c->onepassword.client_id, "example-client-id");
        ASSERT_STREQ(c->onepassword.client_secret, "example-client-secret");
        config_free(c);
        unsetenv("CREDENTIALS_DIRECTORY");

        /* explain needs no secrets at all */
        ASSERT_OK(load_text(text, CONFIG_LOAD_NO_SECRETS, &c, NULL));
        ASSERT_NULL(c->onepassword.client_id);
        ASSERT_NULL(c->onepassword.client_secret);
        config_free(c);
}

TEST(limits) {
        _cleanup_free_ char *got = NULL, *bigpath = tmp_path("big.yaml");
        char *big = NULL;
        StrBuf b;
        ConfigProblems problems = {};
        Config *c = NULL;

        /* too many rules */
        strbuf_init(&b, 8u << 20);
        ASSERT_OK(strbuf_puts(&b, HEAD SRC_OK "rules:\n"));
        for (unsigned i = 0; i <= LIMIT_CONFIG_RULES; i++)
                ASSERT_OK(strbuf_printf(&b, "  - { name: r%u, source: s, action: notify, user: x }\n", i));
        big = strbuf_steal(&b);
        expect_problem(big, "t.yaml:10009:5: more than LIMIT_CONFIG_RULES (10000) rules");
        mem_free(big);

        /* nesting: LIMIT_CONFIG_CONDITION_DEPTH levels load, one more does not */
        for (unsigned depth = LIMIT_CONFIG_CONDITION_DEPTH - 1; depth <= LIMIT_CONFIG_CONDITION_DEPTH; depth++) {
                strbuf_init(&b, 1u << 16);
                ASSERT_OK(strbuf_puts(&b, HEAD SRC_OK "rules:\n  - { name: r, source: s, action: notify, user: x, when: "));
                for (unsigned i = 0; i < depth; i++)
                        ASSERT_OK(strbuf_puts(&b, "{not: "));
                ASSERT_OK(strbuf_puts(&b, "{field: a, exists: true}"));
                for (unsigned i = 0; i < depth; i++)
                        ASSERT_OK(strbuf_puts(&b, "}"));
                ASSERT_OK(strbuf_puts(&b, " }\n"));
                big = strbuf_steal(&b);
                if (depth < LIMIT_CONFIG_CONDITION_DEPTH) {
                        ASSERT_OK(load_text(big, 0, NULL, NULL));
                        mem_free(big);
                }
        }
        expect_problem(big, "t.yaml:9:154: conditions nested deeper than LIMIT_CONFIG_CONDITION_DEPTH (16)");
        mem_free(big);

        /* a recursive alias is cut by the depth limit, not the stack */
        got = problems_of(HEAD SRC_OK "rules:\n  - { name: r, source: s, action: notify, user: x, when: &a { not: *a } }\n");
        ASSERT_CONTAINS(got, "conditions nested deeper than LIMIT_CONFIG_CONDITION_DEPTH (16)");

        /* a long scalar */
        big = mem_calloc(LIMIT_CONFIG_STRING_BYTES + 512, 1);
        strcpy(big, HEAD "  user_agent: ");
        memset(big + strlen(big), 'a', LIMIT_CONFIG_STRING_BYTES + 1);
        expect_problem(big, "t.yaml:5:15: 'onepassword.user_agent' is longer than LIMIT_CONFIG_STRING_BYTES (4096 bytes)");
        mem_free(big);

        /* the document size is checked before parsing */
        big = mem_malloc(LIMIT_CONFIG_DOCUMENT_BYTES + 1);
        memset(big, '#', LIMIT_CONFIG_DOCUMENT_BYTES + 1);
        write_file(bigpath, big, LIMIT_CONFIG_DOCUMENT_BYTES + 1);
        mem_free(big);
        ASSERT_ERR(config_load(bigpath, 0, &c, &problems), EINVAL);
        ASSERT_EQ(problems.n, 1);
        ASSERT_CONTAINS(problems.lines[0], "big.yaml: larger than LIMIT_CONFIG_DOCUMENT_BYTES (4194304 bytes)");
        config_problems_free(&problems);
        unlink(bigpath);
}

/* config/remedyd.yaml, the commented example, loads with its secrets
 * rewritten from /etc/remedyd/secrets to the fixture directory. */
TEST(example) {
        _cleanup_free_ char *example = NULL, *src = NULL, *secrets = fixture("example-secrets");
        _cleanup_free_ char *creds = fixture("example-secrets/credentials"), *out = tmp_path("example.yaml");
        Config *c = NULL;
        StrBuf b;
        const char *p, *q;
        size_t n;

        ASSERT_TRUE(asprintf(&src, "%s/config/remedyd.yaml", source_root) > 0);
        ASSERT_OK(read_file_limited(src, 1u << 20, &example, &n));
        strbuf_init(&b, 1u << 20);
        for (p = example; (q = strstr(p, "/etc/remedyd/secrets")); p = q + strlen("/etc/remedyd/secrets")) {
                ASSERT_OK(strbuf_append(&b, p, (size_t) (q - p)));
                ASSERT_OK(strbuf_puts(&b, secrets));
        }
        ASSERT_OK(strbuf_puts(&b, p));
        write_file(out, b.data, b.len);
        strbuf_free(&b);

        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        c = load_ok(out, 0);
        unsetenv("CREDENTIALS_DIRECTORY");
        ASSERT_STREQ(c->onepassword.client_id, "example-client-id");
        ASSERT_STREQ(c->onepassword.base_url, "https://api.1password.com");
        ASSERT_EQ(c->onepassword.api_version, API_VERSION_V1BETA1);
        ASSERT_EQ(c->listen.max_body_bytes, 1048576);
        ASSERT_TRUE(c->n_sources >= 1);
        ASSERT_TRUE(c->n_rules >= 2);
        ASSERT_STREQ(c->rules[0].name, "splunk-impossible-travel");
        config_free(c);
        unlink(out);
}

/* config/default.yaml, the packaged /etc/remedyd/remedyd.yaml, loads (so
 * --check-config passes on a fresh install) and says it is unconfigured,
 * which the daemon refuses; a configured file is not. */
TEST(unconfigured_default) {
        _cleanup_free_ char *path = NULL;
        Config *c = NULL;

        ASSERT_TRUE(asprintf(&path, "%s/config/default.yaml", source_root) > 0);
        c = load_ok(path, 0);
        ASSERT_TRUE(config_is_unconfigured(c));
        ASSERT_EQ(c->n_sources, 0);
        ASSERT_EQ(c->n_rules, 0);
        ASSERT_TRUE(c->safety.dry_run);
        config_free(c);

        ASSERT_OK(load_text(HEAD SRC_OK, 0, &c, NULL));
        ASSERT_FALSE(config_is_unconfigured(c));
        config_free(c);
}

/* Every allocation failure is reported as -ENOMEM, never as a wrong
 * Config (e.g. a rule whose condition vanished) and never as a leak. */
/* notify: (interface.md section 9): every key, defaults, and each problem
 * with its position. HEAD is 4 lines; "notify:" is line 5. */
#define RULE1 "rules:\n  - {name: r1, source: s, action: suspend, user: \"${u}\"}\n" \
              "sources:\n  - {name: s, auth: {none: true}}\nlisten: {webhook: \"127.0.0.1:0\"}\n"

TEST(notify) {
        _cleanup_free_ char *url = tmp_path("hook-url"), *pw = tmp_path("smtp-pw"), *hs = tmp_path("hook-hmac");
        _cleanup_free_ char *az = tmp_path("hook-authz");
        Config *c = NULL;
        const NotifySink *k;

        write_file(url, "https://hooks.example.com/T0/B0/xyz\n", strlen("https://hooks.example.com/T0/B0/xyz\n"));
        write_file(pw, "smtp-password\n", strlen("smtp-password\n"));
        write_file(hs, "hook-hmac-secret\n", strlen("hook-hmac-secret\n"));
        write_file(az, "Splunk 0000-1111\n", strlen("Splunk 0000-1111\n"));
        ASSERT_OK(load_text(HEAD
                            "notify:\n"
                            "  - name: chat\n"
                            "    type: slack\n"
                            "    url_file: hook-url\n"
                            "  - name: siem\n"
                            "    type: webhook\n"
                            "    url: \"https://siem.example.com/remedyd?x=1\"\n"
                            "    on: [done, failed, held, dry_run]\n"
                            "    rules: [\"r*\", manual]\n"
                            "    timeout: 3s\n"
                            "    hmac_sha256: {header: X-Remedyd-Signature, secret_file: hook-hmac}\n"
                            "    authorization_file: hook-authz\n"
                            "  - name: mail\n"
                            "    type: email\n"
                            "    smtp_url: \"smtp://127.0.0.1:2525\"\n"
                            "    starttls: false\n"
                            "    username: remedyd\n"
                            "    password_file: smtp-pw\n"
                            "    from: remedyd@example.com\n"
                            "    to: [soc@example.com, oncall@example.com]\n"
                            RULE1, 0, &c, NULL));
        ASSERT_EQ(c->n_notify, 3);
        k = config_find_notify(c, "chat");
        ASSERT_NOT_NULL(k);
        ASSERT_EQ(k->type, NOTIFY_SLACK);
        ASSERT_STREQ(k->url, "https://hooks.example.com/T0/B0/xyz");
        ASSERT_EQ(k->on_mask, (1u << ACTION_STATUS_DONE) | (1u << ACTION_STATUS_FAILED) | (1u << ACTION_STATUS_HELD));
        ASSERT_NULL(k->rules);
        ASSERT_EQ(k->timeout_usec, 10 * USEC_PER_SEC);
        k = config_find_notify(c, "siem");
        ASSERT_EQ(k->type, NOTIFY_WEBHOOK);
        ASSERT_STREQ(k->url, "https://siem.example.com/remedyd?x=1");
        ASSERT_EQ(k->on_mask, (1u << ACTION_STATUS_DONE) | (1u << ACTION_STATUS_FAILED) | (1u << ACTION_STATUS_HELD) |
                                      (1u << ACTION_STATUS_DRY_RUN));
        ASSERT_STREQ(k->rules[0], "r*");
        ASSERT_STREQ(k->rules[1], "manual");
        ASSERT_NULL(k->rules[2]);
        ASSERT_EQ(k->timeout_usec, 3 * USEC_PER_SEC);
        ASSERT_STREQ(k->hmac_header, "X-Remedyd-Signature");
        ASSERT_STREQ(k->hmac_secret, "hook-hmac-secret");
        ASSERT_STREQ(k->authorization, "Splunk 0000-1111");
        k = config_find_notify(c, "mail");
        ASSERT_EQ(k->type, NOTIFY_EMAIL);
        ASSERT_STREQ(k->smtp_url, "smtp://127.0.0.1:2525");
        ASSERT_FALSE(k->starttls);
        ASSERT_STREQ(k->username, "remedyd");
        ASSERT_STREQ(k->password, "smtp-password");
        ASSERT_STREQ(k->from, "remedyd@example.com");
        ASSERT_STREQ(k->to[1], "oncall@example.com");
        ASSERT_NULL(config_find_notify(c, "nope"));
        config_free(c);

        /* without secrets: nothing read, the file names kept */
        ASSERT_OK(load_text(HEAD "notify:\n  - {name: chat, type: slack, url_file: missing-file}\n" RULE1,
                            CONFIG_LOAD_NO_SECRETS, &c, NULL));
        ASSERT_NULL(c->notify[0].url);
        config_free(c);

        expect_problem(HEAD "notify:\n  - {name: chat, type: teams, url: \"https://x.example\"}\n" RULE1,
                       "t.yaml:6:24: 'notify.type' must be slack, webhook or email, not 'teams'");
        expect_problem(HEAD "notify:\n  - {name: chat, url: \"https://x.example\"}\n" RULE1,
                       "t.yaml:6:5: notify sink 'chat' needs 'type' (slack, webhook or email)");
        expect_problem(HEAD "notify:\n  - {type: slack, url: \"https://x.example\"}\n" RULE1,
                       "t.yaml:6:5: a notify sink needs a 'name'");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack}\n" RULE1,
                       "t.yaml:6:5: notify sink 'chat' needs exactly one of 'url' and 'url_file'");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"http://chat.example.com/x\"}\n" RULE1,
                       "t.yaml:6:31: notify sink 'chat': http:// is only allowed for a loopback host, use https://");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"ftp://x\"}\n" RULE1,
                       "t.yaml:6:31: notify sink 'chat': invalid url (use https://HOST[:PORT]/PATH)");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"https://x.example\", smtp_url: \"smtps://m\"}\n" RULE1,
                       "t.yaml:6:57: notify sink 'chat': 'smtp_url' does not apply to type slack");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"https://x.example\", on: [done, running]}\n" RULE1,
                       "t.yaml:6:68: 'notify.on': unknown outcome 'running' (done, failed, held, dry_run, queued, cooldown, "
                       "protected, unknown_user, ambiguous_user, unresolved, cancelled)");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"https://x.example\", rules: [r2]}\n" RULE1,
                       "t.yaml:6:57: notify sink 'chat': unknown rule 'r2', did you mean 'r1'?");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url: \"https://x.example\"}\n"
                            "  - {name: chat, type: slack, url: \"https://y.example\"}\n" RULE1,
                       "t.yaml:7:5: duplicate notify sink name 'chat' (first defined at <TMP>/t.yaml:6:5)");
        expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url_file: nothere}\n" RULE1,
                       "t.yaml:6:31: cannot read secret file '<TMP>/nothere': No such file or directory");
        expect_problem(HEAD "notify:\n  - {name: h, type: webhook, url: \"https://x.example\", hmac_sha256: {header: X-Sig}}\n" RULE1,
                       "t.yaml:6:56: notify sink 'h': 'hmac_sha256' needs 'header' and 'secret_file'");
        expect_problem(HEAD "notify:\n  - {name: m, type: email, smtp_url: \"smtps://mail.example.com\", from: x@example.com}\n" RULE1,
                       "t.yaml:6:5: notify sink 'm' (email) needs 'to'");
        expect_problem(HEAD "notify:\n  - {name: m, type: email, smtp_url: \"smtp://mail.example.com\", starttls: false,"
                            " from: x@example.com, to: [y@example.com]}\n" RULE1,
                       "t.yaml:6:28: notify sink 'm': 'starttls: false' is only allowed for a loopback host");
        expect_problem(HEAD "notify:\n  - {name: m, type: email, smtp_url: \"smtps://mail.example.com\","
                            " from: \"x@example.com\\r\\nBcc: evil@example.com\", to: [y@example.com]}\n" RULE1,
                       "t.yaml:6:66: notify sink 'm': invalid 'from' address (one addr-spec such as remedyd@example.com)");
        expect_problem(HEAD "notify:\n  - {name: m, type: email, smtp_url: \"smtps://mail.example.com\","
                            " from: x@example.com, to: [y@example.com], username: u}\n" RULE1,
                       "t.yaml:6:5: notify sink 'm': 'username' and 'password_file' go together");
        expect_problem(HEAD "notify:\n  - {name: m, type: email, smtp_url: \"imap://mail.example.com\","
                            " from: x@example.com, to: [y@example.com]}\n" RULE1,
                       "t.yaml:6:28: notify sink 'm': invalid smtp_url 'imap://mail.example.com' (use smtps://HOST[:PORT] or "
                       "smtp://HOST[:PORT] with STARTTLS)");
        expect_problem(HEAD "notify: {name: x}\n" RULE1, "t.yaml:5:9: 'notify' must be a list of sinks");
        {
                /* the URL in url_file is the secret: a bad one is named by its file, never printed */
                _cleanup_free_ char *bad = tmp_path("bad-url");

                write_file(bad, "http://chat.example.com/secret-token\n", strlen("http://chat.example.com/secret-token\n"));
                expect_problem(HEAD "notify:\n  - {name: chat, type: slack, url_file: bad-url}\n" RULE1,
                               "t.yaml:6:31: notify sink 'chat': url_file '<TMP>/bad-url' does not hold an https:// URL "
                               "(http:// only to a loopback host)");
                unlink(bad);
        }
        unlink(url);
        unlink(pw);
        unlink(hs);
        unlink(az);
}

TEST(out_of_memory) {
        _cleanup_free_ char *path = fixture("full/remedyd.yaml");
        unsigned long n;
        int r = -ENOMEM;

        for (n = 1; r == -ENOMEM && n < 100000; n++) {
                Config *c = NULL;

                mem_fail_at(n);
                r = config_load(path, 0, &c, NULL);
                mem_fail_at(0);
                if (r >= 0) {
                        ASSERT_EQ(c->n_rules, 4);
                        ASSERT_NOT_NULL(c->rules[0].when);
                        ASSERT_NOT_NULL(c->rules[1].where);
                        config_free(c);
                } else
                        ASSERT_ERR(r, ENOMEM);
        }
        ASSERT_OK(r);
        fprintf(stderr, "config_load survived %lu allocation failures\n", n - 2);
}

/* state: interface.md section 8 keys, each checked at its position. */
TEST(state_backends) {
        _cleanup_free_ char *pg = tmp_path("pg");
        Config *c = NULL;

        write_file(pg, "host=/run/postgresql dbname=remedyd password=hunter2\n",
                   strlen("host=/run/postgresql dbname=remedyd password=hunter2\n"));
        ASSERT_OK(load_text(HEAD "state:\n  backend: postgresql\n  postgresql:\n    conninfo_file: pg\n"
                                 "    schema: remedyd_prod\n    pool: 6\n  instance: web-1\n  lease: 10s\n",
                            0, &c, NULL));
        ASSERT_STREQ(c->state.backend, "postgresql");
        ASSERT_STREQ(c->state.conninfo, "host=/run/postgresql dbname=remedyd password=hunter2");
        ASSERT_STREQ(c->state.schema, "remedyd_prod");
        ASSERT_EQ(c->state.pool, 6u);
        ASSERT_STREQ(c->state.instance, "web-1");
        ASSERT_EQ(c->state.lease_usec, 10 * USEC_PER_SEC);
        config_free(c);
        /* defaults */
        ASSERT_OK(load_text(HEAD, 0, &c, NULL));
        ASSERT_STREQ(c->state.backend, "sqlite");
        ASSERT_STREQ(c->state.schema, "remedyd");
        ASSERT_EQ(c->state.pool, 4u);
        ASSERT_NULL(c->state.instance);
        ASSERT_EQ(c->state.lease_usec, 30 * USEC_PER_SEC);
        ASSERT_NULL(c->state.conninfo);
        config_free(c);
        /* explain reads no secret */
        ASSERT_OK(load_text(HEAD "state:\n  backend: postgresql\n  postgresql:\n    conninfo_file: missing\n",
                            CONFIG_LOAD_NO_SECRETS, &c, NULL));
        ASSERT_NULL(c->state.conninfo);
        config_free(c);

        expect_problem(HEAD "state:\n  backend: mysql\n", "t.yaml:6:3: 'state.backend' must be sqlite or postgresql, not 'mysql'");
        expect_problem(HEAD "state:\n  backend: postgresql\n",
                       "t.yaml:6:3: 'state.backend: postgresql' needs a 'state.postgresql' section with conninfo_file");
        expect_problem(HEAD "state:\n  backend: postgresql\n  postgresql:\n    schema: x\n",
                       "t.yaml:8:5: 'state.postgresql' is missing the required key 'conninfo_file'");
        expect_problem(HEAD "state:\n  postgresql:\n    conninfo_file: pg\n",
                       "t.yaml:6:3: 'state.postgresql' is set but 'state.backend' is not postgresql");
        expect_problem(HEAD "state:\n  backend: postgresql\n  postgresql:\n    conninfo_file: pg\n    schema: Bad-Name\n",
                       "t.yaml:9:5: 'state.postgresql.schema' must be a lower-case identifier ([a-z_][a-z0-9_]*, at "
                       "most 56 characters), not 'Bad-Name'");
        expect_problem(HEAD "state:\n  backend: postgresql\n  postgresql:\n    conninfo_file: pg\n    pool: 1\n",
                       "t.yaml:9:11: 'state.postgresql.pool' must be an integer from 2 to 64, not '1'");
        expect_problem(HEAD "state:\n  instance: \"web 1\"\n",
                       "t.yaml:6:13: 'state.instance' must be at most 64 of A-Z a-z 0-9 _ . -, not 'web 1'");
        expect_problem(HEAD "state:\n  lease: 1s\n", "t.yaml:6:3: 'state.lease' must be from 2s to 1h");
        expect_problem(HEAD "state:\n  backend: postgresql\n  postgresql:\n    conninfo_file: nothere\n",
                       "t.yaml:8:5: cannot read secret file '<TMP>/nothere': No such file or directory");
        expect_problem(HEAD "state:\n  postgres: {}\n",
                       "t.yaml:6:3: unknown key 'postgres' in 'state', did you mean 'postgresql'?");
}

int main(void) {
        _cleanup_free_ char *id = NULL, *secret = NULL;

        source_root = getenv("REMEDYD_SOURCE_ROOT");
        if (!source_root)
                source_root = ".";
        ASSERT_NOT_NULL(mkdtemp(tmpdir));
        id = tmp_path("id");
        secret = tmp_path("secret");
        write_file(id, "the-client-id\n", strlen("the-client-id\n"));
        write_file(secret, "the-client-secret\n", strlen("the-client-secret\n"));

        RUN(full);
        RUN(defaults);
        RUN(problems);
        RUN(many_problems);
        RUN(main_file_missing);
        RUN(includes);
        RUN(credentials);
        RUN(state_backends);
        RUN(limits);
        RUN(example);
        RUN(notify);
        RUN(unconfigured_default);
        RUN(out_of_memory);

        unlink(id);
        unlink(secret);
        {
                _cleanup_free_ char *t = tmp_path("t.yaml");
                unlink(t);
        }
        rmdir(tmpdir);
        HARNESS_DONE();
}
