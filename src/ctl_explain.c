/* remedyctl explain --source NAME FILE.json: offline, with no secrets, what
 * every rule would do with this event and why. With --live, the daemon
 * evaluates it as a delivery, read-only (control POST /v1/explain). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "util.h"

enum {
        EXPLAIN_ACTS = 0,
        EXPLAIN_NONE = 1,
        EXPLAIN_ERROR = 2,
};

static void help(void) {
        printf("Usage: remedyctl [-c CONFIG] explain --source NAME FILE.json\n"
               "       remedyctl [-c CONFIG] [--socket PATH] explain --live --source NAME FILE.json [--json]\n\n"
               "Shows, offline and without reading any secret, which rules would match the\n"
               "event in FILE.json (\"-\" for stdin) posted by source NAME, which condition\n"
               "failed and on what value, and which users would be acted on.\n\n"
               "--live asks the running daemon, which evaluates the body exactly as a\n"
               "delivery to /hooks/NAME (dedup window, directory, protected users,\n"
               "cooldowns, dry-run, the cap) and records and calls nothing; --json prints\n"
               "its answer as JSON.\n\n"
               "Exit status: 0 some action would be taken (--live: queued), 1 none, 2 error.\n");
}

/* The last line and the exit status. */
static int summary(unsigned n, const char *what) {
        if (n > 0)
                printf("%u action%s would be %s\n", n, n == 1 ? "" : "s", what);
        else
                printf("no action would be %s\n", what);
        fflush(stdout);
        return n > 0 ? EXPLAIN_ACTS : EXPLAIN_NONE;
}

/* --live: the daemon's answer, one line per action, or the JSON. */
static int explain_live(const CtlContext *ctx, const char *source, const char *body, size_t size, bool json) {
        _cleanup_(json_object_putp) json_object *answer = NULL;
        _cleanup_free_ char *path = NULL;
        json_object *actions = NULL, *v;
        unsigned queued = 0;
        long status = 0;
        size_t n;
        int r;

        if (asprintf(&path, "/v1/explain?source=%s", source) < 0)
                return EXPLAIN_ERROR;
        r = ctl_control_call(ctx, "POST", path, body, size, &status, &answer);
        if (r < 0)
                return EXPLAIN_ERROR;
        if (status != 200 || !answer || !json_object_object_get_ex(answer, "actions", &actions) ||
            !json_object_is_type(actions, json_type_array)) {
                const char *m = answer && json_object_object_get_ex(answer, "message", &v) ? json_object_get_string(v) : NULL;

                fprintf(stderr, "remedyctl explain: %s (HTTP %ld)\n", m ? m : "the daemon refused the request", status);
                return EXPLAIN_ERROR;
        }
        n = json_object_array_length(actions);
        bool duplicate = json_object_object_get_ex(answer, "duplicate", &v) && json_object_get_boolean(v);
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(actions, i);

                if (!duplicate && json_object_object_get_ex(a, "status", &v) &&
                    strcmp(json_object_get_string(v), "queued") == 0)
                        queued++;
        }
        if (json) {
                printf("%s\n", json_object_to_json_string_ext(answer, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                fflush(stdout);
                return queued > 0 ? EXPLAIN_ACTS : EXPLAIN_NONE;
        }
        if (duplicate)
                printf("duplicate: a redelivery of event %s, answered with its actions; nothing new would be done\n",
                       json_object_object_get_ex(answer, "event_id", &v) ? json_object_get_string(v) : "?");
        for (size_t i = 0; i < n; i++) {
                json_object *a = json_object_array_get_idx(actions, i);
                const char *f[6] = {};
                static const char *const keys[6] = { "rule", "action", "status", "user", "user_id", "reason" };

                for (size_t k = 0; k < 6; k++)
                        f[k] = json_object_object_get_ex(a, keys[k], &v) && !json_object_is_type(v, json_type_null)
                                       ? json_object_get_string(v) : NULL;
                printf("rule %s: %s: %s: user %s", f[0] ? f[0] : "?", f[1] ? f[1] : "?", f[2] ? f[2] : "?",
                       f[3] ? f[3] : "(unresolved)");
                if (f[4])
                        printf(" (user id %s)", f[4]);
                if (f[5])
                        printf(" (reason: %s)", f[5]);
                printf("\n");
        }
        return summary(queued, "queued");
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free, config_freep)

/* Parses a whole JSON document (nothing but whitespace after it), at most
 * LIMIT_JSON_DEPTH deep. */
static int parse_event(const char *text, size_t size, json_object **ret) {
        struct json_tokener *tok;
        json_object *o;
        size_t end;

        tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, text, (int) size);
        end = json_tokener_get_parse_end(tok);
        if (!o || json_tokener_get_error(tok) != json_tokener_success) {
                json_tokener_free(tok);
                json_object_put(o);
                return -EBADMSG;
        }
        json_tokener_free(tok);
        for (; end < size; end++)
                if (!strchr(" \t\r\n", text[end])) {
                        json_object_put(o);
                        return -EBADMSG;
                }
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

int ctl_explain(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(json_object_putp) json_object *event = NULL;
        _cleanup_free_ char *body = NULL, *text = NULL;
        ConfigProblems problems = {};
        const char *source = NULL, *file = NULL;
        bool live = false, json = false;
        size_t size = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        help();
                        return EXPLAIN_ACTS;
                }
                if (strcmp(argv[i], "--live") == 0)
                        live = true;
                else if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc)
                        source = argv[++i];
                else if (str_startswith(argv[i], "--source="))
                        source = argv[i] + strlen("--source=");
                else if (argv[i][0] == '-' && argv[i][1] != 0) {
                        fprintf(stderr, "remedyctl explain: unknown option '%s'\n", argv[i]);
                        return EXPLAIN_ERROR;
                } else if (!file)
                        file = argv[i];
                else {
                        fprintf(stderr, "remedyctl explain: one event file only\n");
                        return EXPLAIN_ERROR;
                }
        }
        if (!source || !*source || !file) {
                fprintf(stderr, "Usage: remedyctl explain --source NAME FILE.json [--live [--json]]\n");
                return EXPLAIN_ERROR;
        }
        if (json && !live) {
                fprintf(stderr, "remedyctl explain: --json needs --live\n");
                return EXPLAIN_ERROR;
        }

        r = strcmp(file, "-") == 0 ? read_fd_limited(STDIN_FILENO, LIMIT_BODY_BYTES_MAX, &body, &size)
                                 : read_file_limited(file, LIMIT_BODY_BYTES_MAX, &body, &size);
        if (r < 0) {
                fprintf(stderr, "remedyctl explain: cannot read %s: %s\n", file, strerror(-r));
                return EXPLAIN_ERROR;
        }
        /* live: the daemon validates the body as it would a delivery's */
        if (live)
                return explain_live(ctx, source, body, size, json);

        r = config_load(ctx->config_path, CONFIG_LOAD_NO_SECRETS, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "", ctx->config_path, r);
                return EXPLAIN_ERROR;
        }

        if (!config_find_source(c, source)) {
                fprintf(stderr, "remedyctl explain: no source '%s' in %s (sources:", source, ctx->config_path);
                for (size_t i = 0; i < c->n_sources; i++)
                        fprintf(stderr, " %s", c->sources[i].name);
                fprintf(stderr, "%s)\n", c->n_sources == 0 ? " none" : "");
                return EXPLAIN_ERROR;
        }

        r = parse_event(body, size, &event);
        if (r == -ENOMEM) {
                fprintf(stderr, "remedyctl explain: out of memory\n");
                return EXPLAIN_ERROR;
        }
        if (r < 0) {
                fprintf(stderr, "remedyctl explain: %s is not a JSON object\n", file);
                return EXPLAIN_ERROR;
        }

        r = rules_explain(c, source, event, &text);
        if (r < 0) {
                fprintf(stderr, "remedyctl explain: %s\n",
                        r == -ENOBUFS ? "the event produces more actions than LIMIT_ACTIONS_PER_EVENT or "
                                        "LIMIT_FOR_EACH_ITEMS allow (the daemon would refuse it)"
                                      : strerror(-r));
                return EXPLAIN_ERROR;
        }
        fputs(text, stdout);
        return summary((unsigned) r, "taken");
}
