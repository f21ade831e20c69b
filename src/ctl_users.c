/* remedyctl users list [--active|--suspended] [--json]
 * remedyctl users get EMAIL|ID [--json]
 *
 * Goes through the daemon when its control socket answers (--socket, or
 * listen.control of the config read without secrets), so that an operator
 * needs no read access to the client secret: GET /v1/users and
 * /v1/users/{email-or-id} (control.c). When nothing listens there (no such
 * socket, connection refused), works from the config alone: loads it with
 * the client secret, talks to the 1Password Users API on its own sd-event
 * loop, revokes its token when done. Same output and exit status either
 * way: 0 ok, 1 no such user (or ambiguous email), 2 usage or configuration
 * error, 3 the API (or the daemon) could not be used (credentials rejected,
 * unreachable, error answer). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"

enum {
        USERS_OK = 0,
        USERS_NOT_FOUND = 1,
        USERS_USAGE = 2,
        USERS_API_FAILED = 3,
};

#define USERS_PAGE_SIZE 1000u

static void curl_freep(char **p) {
        curl_free(*p);
}
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
               "Goes through the running daemon when its control socket answers\n"
               "(--socket, or listen.control), else calls the API with the client\n"
               "credentials of the config.\n\n"
               "Exit status: 0 ok, 1 no such user, 2 usage or configuration error,\n"
               "3 the 1Password API could not be used.\n");
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free, config_freep)

static void report_api_error(const char *base, int error, long http_status, const char *api_code,
                             const char *api_message) {

        switch (error) {
        case -EKEYREJECTED:
                fprintf(stderr, "remedyctl: 1Password rejected the client credentials (HTTP %ld)\n", http_status);
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
                fprintf(stderr, "remedyctl: cannot reach the 1Password API at %s: %s\n", base, strerror(-error));
                break;
        case -EBADMSG:
                fprintf(stderr, "remedyctl: the 1Password API at %s answered with an unexpected body\n", base);
                break;
        default:
                if (http_status > 0)
                        fprintf(stderr, "remedyctl: 1Password API error (HTTP %ld)%s%s%s%s\n", http_status,
                                api_code ? ": code " : "", api_code ? api_code : "",
                                api_message ? ": " : "", api_message ? api_message : "");
                else
                        fprintf(stderr, "remedyctl: 1Password API request failed: %s\n", strerror(-error));
        }
}

static void report_result_error(const char *base, const UsersApiResult *res) {
        report_api_error(base, res->error, res->http_status, res->api_code, res->api_message);
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
                report_result_error(run->config->onepassword.base_url, res);
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

static void on_page(UsersApi *api, const UsersApiResult *res, void *userdata) {
        UsersRun *run = userdata;
        int r;

        if (res->error < 0) {
                report_result_error(run->config->onepassword.base_url, res);
                finish(run, USERS_API_FAILED);
                return;
        }
        run->pages++;
        if (users_api_page_collect(res, run->want_email, run->users, SIZE_MAX) < 0) {
                fprintf(stderr, "remedyctl: out of memory\n");
                finish(run, USERS_API_FAILED);
                return;
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

/* Prints users (an array; get: its one element) and returns the exit code. */
static int print_users(json_object *users, bool get, bool json) {
        if (json && get)
                puts(json_object_to_json_string_ext(json_object_array_get_idx(users, 0),
                                                    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        else if (json)
                puts(json_object_to_json_string_ext(users, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        else
                print_table(users);
        if (fflush(stdout) != 0) {
                fprintf(stderr, "remedyctl: cannot write the output: %m\n");
                return USERS_API_FAILED;
        }
        return USERS_OK;
}

static void report_ambiguous(json_object *users, const char *email) {
        size_t n = json_object_array_length(users);

        fprintf(stderr, "remedyctl: %zu users have email %s (ambiguous):", n, email);
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %s", field(json_object_array_get_idx(users, i), "id"));
        fputc('\n', stderr);
}

/* How long to wait for a whole answer: every request is bounded by
 * onepassword.timeout and a few retries; paging adds up. This only guards
 * against something that never ends. */
static uint64_t users_budget(const Config *c, bool paging) {
        uint64_t t = c && c->onepassword.timeout_usec ? c->onepassword.timeout_usec : 10 * USEC_PER_SEC;

        return t * 6 + 60 * USEC_PER_SEC + (paging ? 10 * USEC_PER_SEC * 100 : 0);
}

/* --- through the daemon --------------------------------------------------- */

static size_t on_control_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        return strbuf_append(userdata, ptr, size * nmemb) < 0 ? 0 : size * nmemb;
}

/* Whether something accepts connections on the unix socket at path:
 * 0 yes, -ENOENT/-ECONNREFUSED nothing there (work alone), other errors. */
static int control_probe(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r = 0;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                r = -errno;
        close(fd);
        return r;
}

/* Asks the daemon on sock. Returns 0 with *ret_code the exit code once
 * the daemon answered (or failed in a way worth reporting), or -ENOENT
 * when nothing listens there: then the caller works alone. */
static int users_via_daemon(const char *sock, const Config *c, const char *filter_name, const char *target,
                            bool json, int *ret_code) {
        _cleanup_(curl_easy_cleanupp) CURL *h = NULL;
        _cleanup_(json_object_putp) json_object *body = NULL;
        _cleanup_free_ char *url = NULL;
        json_object *users = NULL, *v;
        StrBuf resp;
        long status = 0;
        CURLcode cc;
        int r;

        r = control_probe(sock);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return -ENOENT;
        if (r < 0) {
                fprintf(stderr, "remedyctl: cannot reach remedyd on %s: %s\n", sock, strerror(-r));
                *ret_code = USERS_API_FAILED;
                return 0;
        }

        h = curl_easy_init();
        if (!h)
                goto oom;
        if (target) {
                _cleanup_(curl_freep) char *esc = curl_easy_escape(h, target, 0);

                if (!esc || asprintf(&url, "http://localhost/v1/users/%s", esc) < 0)
                        goto oom;
        } else if (asprintf(&url, "http://localhost/v1/users%s%s", filter_name ? "?filter=" : "",
                            filter_name ? filter_name : "") < 0)
                goto oom;

        strbuf_init(&resp, LIMIT_CONTROL_USERS_RESPONSE_BYTES);
        (void) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
        (void) curl_easy_setopt(h, CURLOPT_URL, url);
        (void) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) (users_budget(c, !target || !is_user_id(target)) / 1000));
        (void) curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_control_body);
        (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
        cc = curl_easy_perform(h);
        if (cc == CURLE_COULDNT_CONNECT) {
                /* Gone between the probe and now. */
                strbuf_free(&resp);
                return -ENOENT;
        }
        if (cc != CURLE_OK) {
                fprintf(stderr, "remedyctl: cannot reach remedyd on %s: %s\n", sock, curl_easy_strerror(cc));
                strbuf_free(&resp);
                *ret_code = USERS_API_FAILED;
                return 0;
        }
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        body = resp.data ? json_tokener_parse(resp.data) : NULL;
        strbuf_free(&resp);

        if (status == 200 && target && json_object_object_get_ex(body, "user", &v) &&
            json_object_is_type(v, json_type_object)) {
                users = json_object_new_array();
                if (!users || json_object_array_add(users, json_object_get(v)) < 0) {
                        json_object_put(v);
                        json_object_put(users);
                        goto oom;
                }
                *ret_code = print_users(users, true, json);
                json_object_put(users);
                return 0;
        }
        if (status == 200 && !target && json_object_object_get_ex(body, "users", &v) &&
            json_object_is_type(v, json_type_array)) {
                *ret_code = print_users(v, false, json);
                return 0;
        }
        if (status == 404 && target) {
                if (is_user_id(target))
                        fprintf(stderr, "remedyctl: no such user\n");
                else
                        fprintf(stderr, "remedyctl: no user with email %s\n", target);
                *ret_code = USERS_NOT_FOUND;
                return 0;
        }
        if (status == 409 && target && json_object_object_get_ex(body, "users", &v) &&
            json_object_is_type(v, json_type_array)) {
                report_ambiguous(v, target);
                *ret_code = USERS_NOT_FOUND;
                return 0;
        }
        if (status == 502 && json_object_object_get_ex(body, "errno", &v)) {
                json_object *code = NULL, *msg = NULL, *hs = NULL, *base = NULL;

                (void) json_object_object_get_ex(body, "http_status", &hs);
                (void) json_object_object_get_ex(body, "api_code", &code);
                (void) json_object_object_get_ex(body, "api_message", &msg);
                (void) json_object_object_get_ex(body, "base_url", &base);
                report_api_error(base ? json_object_get_string(base) : "?", -json_object_get_int(v),
                                 hs ? (long) json_object_get_int64(hs) : 0,
                                 json_object_is_type(code, json_type_string) ? json_object_get_string(code) : NULL,
                                 json_object_is_type(msg, json_type_string) ? json_object_get_string(msg) : NULL);
                *ret_code = USERS_API_FAILED;
                return 0;
        }
        v = NULL;
        (void) json_object_object_get_ex(body, "message", &v);
        fprintf(stderr, "remedyctl: remedyd: %s (HTTP %ld)\n",
                v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "unexpected answer",
                status);
        *ret_code = USERS_API_FAILED;
        return 0;
oom:
        fprintf(stderr, "remedyctl: out of memory\n");
        *ret_code = USERS_API_FAILED;
        return 0;
}

/* --- alone, from the config ----------------------------------------------- */

static int users_direct(const CtlContext *ctx, const char *filter, const char *target, bool json) {
        _cleanup_(config_freep) Config *c = NULL;
        ConfigProblems problems = {};
        UsersRun run = { .exit_code = USERS_API_FAILED };
        int r;

        r = config_load(ctx->config_path, 0, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "", ctx->config_path, r);
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
                run.want_email = target;
                r = users_api_list(run.api, filter, USERS_PAGE_SIZE, NULL, NULL, on_page, &run);
        }
        if (r < 0) {
                fprintf(stderr, "remedyctl: cannot query 1Password: %s\n", strerror(-r));
                goto out;
        }

        r = run_loop(run.event, &run.finished, users_budget(c, !target || !is_user_id(target)));
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
                        report_ambiguous(run.users, run.want_email);
                        run.exit_code = USERS_NOT_FOUND;
                }
        }
        if (run.exit_code == USERS_OK)
                run.exit_code = print_users(run.users, target, json);

        /* Do not leave a valid token behind. */
        if (users_api_revoke(run.api, on_revoked, &run) >= 0)
                (void) run_loop(run.event, &run.revoked, 5 * USEC_PER_SEC);

out:
        users_api_free(run.api);
        sd_event_unref(run.event);
        json_object_put(run.users);
        return run.exit_code;
}

/* The control socket to try: --socket, else a unix listen.control of the
 * config (read without secrets). *ret NULL: none configured. Returns the
 * exit code on a configuration error, else -1. */
static int control_socket(const CtlContext *ctx, Config **ret_config, const char **ret) {
        ConfigProblems problems = {};
        Config *c = NULL;
        int r;

        *ret = ctx->socket_path;
        r = config_load(ctx->config_path, CONFIG_LOAD_NO_SECRETS, &c, &problems);
        if (r < 0) {
                if (ctx->socket_path) {
                        /* The daemon may still answer; alone, the
                         * config's problems are reported then. */
                        config_problems_free(&problems);
                        return -1;
                }
                config_problems_report(&problems, "", ctx->config_path, r);
                return USERS_USAGE;
        }
        if (!*ret && c->listen.control && c->listen.control_addr.kind == LISTEN_UNIX)
                *ret = c->listen.control_addr.path;
        *ret_config = c;
        return -1;
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
        const char *sub, *filter = NULL, *filter_name = NULL, *target = NULL, *sock = NULL;
        _cleanup_free_ char *trimmed = NULL;
        bool json = false;
        int opt, code;

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
                        filter_name = "active";
                        break;
                case 's':
                        filter = "user.isSuspended()";
                        filter_name = "suspended";
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
                trimmed = mem_strdup(argv[optind + 1]);
                if (!trimmed) {
                        fprintf(stderr, "remedyctl: out of memory\n");
                        return USERS_API_FAILED;
                }
                target = strstrip(trimmed);
                if (!*target) {
                        fprintf(stderr, "remedyctl: empty email\n");
                        return USERS_USAGE;
                }
        } else if (optind != argc - 1) {
                fprintf(stderr, "remedyctl: 'users list' takes no arguments\n");
                return USERS_USAGE;
        }

        code = control_socket(ctx, &c, &sock);
        if (code >= 0)
                return code;
        if (sock && users_via_daemon(sock, c, filter_name, target, json, &code) >= 0)
                return code;
        return users_direct(ctx, filter, target, json);
}
