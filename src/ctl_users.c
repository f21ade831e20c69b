/* remedyctl users list [--active|--suspended] [--json]
 * remedyctl users get EMAIL|ID [--json]
 *
 * Works from the config alone: loads it (with the client secret), talks to
 * the 1Password Users API on its own sd-event loop, revokes its token when
 * done. Exit status: 0 ok, 1 no such user (or ambiguous email), 2 usage or
 * configuration error, 3 the API could not be used (credentials rejected,
 * unreachable, error answer). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "users_api.h"
#include "util.h"

enum {
        USERS_OK = 0,
        USERS_NOT_FOUND = 1,
        USERS_USAGE = 2,
        USERS_API_FAILED = 3,
};

#define USERS_PAGE_SIZE 1000u
#define USERS_MAX_PAGES 10000u

typedef struct UsersRun {
        sd_event *event;
        UsersApi *api;
        const Config *config;
        const char *filter;
        const char *want_email;  /* get by email: match while listing */
        json_object *users;      /* collected User objects (array) */
        unsigned pages;
        int exit_code;
        bool finished;
        bool revoked;
} UsersRun;

static void help(void) {
        printf("Usage: remedyctl [-c CONFIG] users list [--active|--suspended] [--json]\n"
               "       remedyctl [-c CONFIG] users get EMAIL|ID [--json]\n\n"
               "Lists every 1Password user (following all pages), or shows one user, by\n"
               "user id or by email (case-insensitive). A table by default; the API's\n"
               "JSON objects with --json (an array for list).\n\n"
               "Exit status: 0 ok, 1 no such user, 2 usage or configuration error,\n"
               "3 the 1Password API could not be used.\n");
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free, config_freep)

static void report_api_error(const UsersRun *run, const UsersApiResult *res) {
        const char *base = run->config->onepassword.base_url;

        switch (res->error) {
        case -EKEYREJECTED:
                fprintf(stderr, "remedyctl: 1Password rejected the client credentials (HTTP %ld)\n", res->http_status);
                break;
        case -EACCES:
                fprintf(stderr, "remedyctl: 1Password refused the access token (HTTP 401)\n");
                break;
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EHOSTUNREACH:
        case -EIO:
        case -EPROTO:
                fprintf(stderr, "remedyctl: cannot reach the 1Password API at %s: %s\n", base, strerror(-res->error));
                break;
        case -EBADMSG:
                fprintf(stderr, "remedyctl: the 1Password API at %s answered with an unexpected body\n", base);
                break;
        default:
                if (res->http_status > 0)
                        fprintf(stderr, "remedyctl: 1Password API error (HTTP %ld)%s%s%s%s\n", res->http_status,
                                res->api_code ? ": code " : "", res->api_code ? res->api_code : "",
                                res->api_message ? ": " : "", res->api_message ? res->api_message : "");
                else
                        fprintf(stderr, "remedyctl: 1Password API request failed: %s\n", strerror(-res->error));
        }
}

static void finish(UsersRun *run, int code) {
        run->exit_code = code;
        run->finished = true;
}

static void on_get(UsersApi *api, const UsersApiResult *res, void *userdata) {
        UsersRun *run = userdata;

        if (res->error == -ENOENT) {
                fprintf(stderr, "remedyctl: no such user\n");
                finish(run, USERS_NOT_FOUND);
                return;
        }
        if (res->error < 0) {
                report_api_error(run, res);
                finish(run, USERS_API_FAILED);
                return;
        }
        if (!res->body || json_object_array_add(run->users, json_object_get(res->body)) < 0) {
                fprintf(stderr, "remedyctl: out of memory\n");
                finish(run, USERS_API_FAILED);
                return;
        }
        finish(run, USERS_OK);
}

static bool email_matches(json_object *user, const char *want) {
        json_object *v;
        const char *e;
        size_t wl = strlen(want), el;

        if (!json_object_object_get_ex(user, "email", &v) || !json_object_is_type(v, json_type_string))
                return false;
        e = json_object_get_string(v);
        while (*e == ' ' || *e == '\t')
                e++;
        el = strlen(e);
        while (el > 0 && (e[el - 1] == ' ' || e[el - 1] == '\t'))
                el--;
        return el == wl && strncasecmp(e, want, wl) == 0;
}

static void on_page(UsersApi *api, const UsersApiResult *res, void *userdata) {
        UsersRun *run = userdata;
        json_object *results;
        int r;

        if (res->error < 0) {
                report_api_error(run, res);
                finish(run, USERS_API_FAILED);
                return;
        }
        run->pages++;
        if (res->body && json_object_object_get_ex(res->body, "results", &results) &&
            json_object_is_type(results, json_type_array))
                for (size_t i = 0; i < json_object_array_length(results); i++) {
                        json_object *u = json_object_array_get_idx(results, i);

                        if (!json_object_is_type(u, json_type_object))
                                continue;
                        if (run->want_email && !email_matches(u, run->want_email))
                                continue;
                        if (json_object_array_add(run->users, json_object_get(u)) < 0) {
                                json_object_put(u);
                                fprintf(stderr, "remedyctl: out of memory\n");
                                finish(run, USERS_API_FAILED);
                                return;
                        }
                }
        if (!res->next_page_token) {
                finish(run, USERS_OK);
                return;
        }
        if (run->pages >= USERS_MAX_PAGES) {
                fprintf(stderr, "remedyctl: more than %u pages of users, giving up\n", USERS_MAX_PAGES);
                finish(run, USERS_API_FAILED);
                return;
        }
        r = users_api_list(api, run->filter, USERS_PAGE_SIZE, res->next_page_token, NULL, on_page, run);
        if (r < 0) {
                fprintf(stderr, "remedyctl: cannot list users: %s\n", strerror(-r));
                finish(run, USERS_API_FAILED);
        }
}

static void on_revoked(void *userdata) {
        ((UsersRun *) userdata)->revoked = true;
}

/* Runs the loop until flag is set or the deadline passes. */
static int run_loop(sd_event *e, const bool *flag, uint64_t timeout_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        int r;

        while (!*flag) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = sd_event_run(e, deadline - now);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* API strings go to a terminal: no control characters. */
static void print_clean(const char *s, int width) {
        int n = 0;

        for (; s && *s; s++, n++)
                putchar((unsigned char) *s < 0x20 || *s == 0x7f ? '?' : *s);
        for (; n < width; n++)
                putchar(' ');
}

static const char *field(json_object *u, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(u, key, &v) || !json_object_is_type(v, json_type_string))
                return "";
        return json_object_get_string(v);
}

static void print_table(json_object *users) {
        size_t n = json_object_array_length(users);
        int we = 5, wn = 4;

        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(users, i);
                int l;

                l = (int) strlen(field(u, "email"));
                we = l > we ? (l > 64 ? 64 : l) : we;
                l = (int) strlen(field(u, "display_name"));
                wn = l > wn ? (l > 40 ? 40 : l) : wn;
        }
        printf("%-26s  %-*s  %-*s  %s\n", "ID", we, "EMAIL", wn, "NAME", "STATE");
        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(users, i);
                const char *state = field(u, "state");

                print_clean(field(u, "id"), 26);
                fputs("  ", stdout);
                print_clean(field(u, "email"), we);
                fputs("  ", stdout);
                print_clean(field(u, "display_name"), wn);
                fputs("  ", stdout);
                print_clean(*state ? state : "STATE_UNSPECIFIED", 0);
                putchar('\n');
        }
}

int ctl_users(const CtlContext *ctx, int argc, char **argv) {
        static const struct option options[] = {
                { "active", no_argument, NULL, 'a' },
                { "suspended", no_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(config_freep) Config *c = NULL;
        ConfigProblems problems = {};
        UsersRun run = { .exit_code = USERS_API_FAILED };
        const char *sub, *filter = NULL, *target = NULL;
        _cleanup_free_ char *email = NULL;
        bool json = false;
        uint64_t budget;
        int opt, r;

        if (argc < 2) {
                help();
                return USERS_USAGE;
        }
        sub = argv[1];
        if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
                help();
                return USERS_OK;
        }
        if (strcmp(sub, "list") != 0 && strcmp(sub, "get") != 0) {
                fprintf(stderr, "remedyctl: unknown users command '%s'\nTry 'remedyctl users --help'.\n", sub);
                return USERS_USAGE;
        }
        optind = 0;
        while ((opt = getopt_long(argc - 1, argv + 1, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'a':
                        filter = "user.isActive()";
                        break;
                case 's':
                        filter = "user.isSuspended()";
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        help();
                        return USERS_OK;
                default:
                        return USERS_USAGE;
                }
        if (strcmp(sub, "get") == 0) {
                if (filter) {
                        fprintf(stderr, "remedyctl: --active/--suspended only apply to 'users list'\n");
                        return USERS_USAGE;
                }
                if (optind + 1 != argc - 1) {
                        fprintf(stderr, "remedyctl: 'users get' takes exactly one EMAIL or ID\n");
                        return USERS_USAGE;
                }
                target = argv[optind + 1];
        } else if (optind != argc - 1) {
                fprintf(stderr, "remedyctl: 'users list' takes no arguments\n");
                return USERS_USAGE;
        }

        r = config_load(ctx->config_path, 0, &c, &problems);
        if (r < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                if (problems.n == 0)
                        fprintf(stderr, "%s: %s\n", ctx->config_path, strerror(-r));
                config_problems_free(&problems);
                return USERS_USAGE;
        }

        /* One line per failure is ours to print; the modules' own warnings
         * would repeat it. */
        if (log_get_max_level() < LOG_DEBUG)
                log_set_max_level(LOG_CRIT);

        run.config = c;
        run.filter = filter;
        run.users = json_object_new_array();
        if (!run.users) {
                fprintf(stderr, "remedyctl: out of memory\n");
                return USERS_API_FAILED;
        }
        r = sd_event_new(&run.event);
        if (r >= 0)
                r = users_api_new(run.event, c, /* m= */ NULL, &run.api);
        if (r < 0) {
                fprintf(stderr, "remedyctl: cannot set up the 1Password client: %s\n", strerror(-r));
                goto out;
        }

        if (target && is_user_id(target))
                r = users_api_get(run.api, target, NULL, on_get, &run);
        else {
                if (target) {
                        email = mem_strdup(target);
                        if (!email) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        run.want_email = strstrip(email);
                        if (!*run.want_email) {
                                fprintf(stderr, "remedyctl: empty email\n");
                                run.exit_code = USERS_USAGE;
                                goto out;
                        }
                }
                r = users_api_list(run.api, filter, USERS_PAGE_SIZE, NULL, NULL, on_page, &run);
        }
fail:
        if (r < 0) {
                fprintf(stderr, "remedyctl: cannot query 1Password: %s\n", strerror(-r));
                goto out;
        }

        /* Every request is bounded by onepassword.timeout and a few retries;
         * this only guards against a loop that never ends. */
        budget = (c->onepassword.timeout_usec ? c->onepassword.timeout_usec : 10 * USEC_PER_SEC) * 6 + 60 * USEC_PER_SEC;
        if (!target || !is_user_id(target))
                budget += 10 * USEC_PER_SEC * 100; /* paging */
        r = run_loop(run.event, &run.finished, budget);
        if (r < 0) {
                fprintf(stderr, "remedyctl: gave up waiting for 1Password: %s\n", strerror(-r));
                run.exit_code = USERS_API_FAILED;
                goto out;
        }

        if (run.exit_code == USERS_OK && run.want_email) {
                size_t n = json_object_array_length(run.users);

                if (n == 0) {
                        fprintf(stderr, "remedyctl: no user with email %s\n", run.want_email);
                        run.exit_code = USERS_NOT_FOUND;
                } else if (n > 1) {
                        fprintf(stderr, "remedyctl: %zu users have email %s (ambiguous):", n, run.want_email);
                        for (size_t i = 0; i < n; i++)
                                fprintf(stderr, " %s", field(json_object_array_get_idx(run.users, i), "id"));
                        fputc('\n', stderr);
                        run.exit_code = USERS_NOT_FOUND;
                }
        }
        if (run.exit_code == USERS_OK) {
                if (json && target)
                        puts(json_object_to_json_string_ext(json_object_array_get_idx(run.users, 0),
                                                            JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                else if (json)
                        puts(json_object_to_json_string_ext(run.users, JSON_C_TO_STRING_PRETTY |
                                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
                else
                        print_table(run.users);
                if (fflush(stdout) != 0) {
                        fprintf(stderr, "remedyctl: cannot write the output: %m\n");
                        run.exit_code = USERS_API_FAILED;
                }
        }

        /* Do not leave a valid token behind. */
        if (users_api_revoke(run.api, on_revoked, &run) >= 0)
                (void) run_loop(run.event, &run.revoked, 5 * USEC_PER_SEC);

out:
        users_api_free(run.api);
        sd_event_unref(run.event);
        json_object_put(run.users);
        return run.exit_code;
}
