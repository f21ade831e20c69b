/* remedyctl commands that talk to the running daemon over the control
 * socket: status, suspend, reactivate, actions, release, cancel, history,
 * notifications.
 * The protocol is HTTP/1.1 with JSON bodies on a unix socket (docs in
 * control.c). Blocking libcurl is fine here: this is the CLI. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "util.h"

#define CONTROL_RESPONSE_MAX (16u * 1024u * 1024u)

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
        StrBuf *b = userdata;

        if (strbuf_append(b, ptr, size * nmemb) < 0)
                return 0;
        return size * nmemb;
}

/* Finds the socket: --socket, else listen.control of the config (read
 * without secrets: an operator in the socket's group needs no secret). */
static int socket_path(const CtlContext *ctx, char **ret) {
        ConfigProblems problems = {};
        Config *c = NULL;
        int r;

        if (ctx->socket_path) {
                *ret = mem_strdup(ctx->socket_path);
                return *ret ? 0 : -ENOMEM;
        }
        r = config_load(ctx->config_path, CONFIG_LOAD_NO_SECRETS, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "remedyctl: ", ctx->config_path, r);
                return r;
        }
        if (!c->listen.control || c->listen.control_addr.kind != LISTEN_UNIX) {
                fprintf(stderr, "remedyctl: %s has no unix control socket (listen.control); use --socket PATH\n",
                        ctx->config_path);
                config_free(c);
                return -ENOENT;
        }
        *ret = mem_strdup(c->listen.control_addr.path);
        config_free(c);
        return *ret ? 0 : -ENOMEM;
}

/* Performs one request; on success *ret_status is the HTTP status and
 * *ret_body the parsed JSON (NULL if the body was not JSON). */
static int control_call(const CtlContext *ctx, const char *method, const char *path, json_object *body,
                        long *ret_status, json_object **ret_body) {
        const char *payload = body ? json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN) : NULL;

        return ctl_control_call(ctx, method, path, payload, payload ? strlen(payload) : 0, ret_status, ret_body);
}

int ctl_control_call(const CtlContext *ctx, const char *method, const char *path, const char *payload,
                     size_t payload_len, long *ret_status, json_object **ret_body) {
        _cleanup_free_ char *sock = NULL, *url = NULL;
        _cleanup_(curl_easy_cleanupp) CURL *h = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *hdrs = NULL;
        StrBuf resp;
        long status = 0;
        CURLcode cc;
        int r;

        r = socket_path(ctx, &sock);
        if (r < 0)
                return r;
        if (asprintf(&url, "http://localhost%s", path) < 0)
                return -ENOMEM;
        h = curl_easy_init();
        if (!h)
                return -ENOMEM;
        strbuf_init(&resp, CONTROL_RESPONSE_MAX);
        hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        if (!hdrs) {
                free(TAKE_PTR(url));
                return -ENOMEM;
        }
        (void) curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
        (void) curl_easy_setopt(h, CURLOPT_URL, url);
        (void) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        (void) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        (void) curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
        (void) curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
        if (payload) {
                (void) curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) payload_len);
                (void) curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        }
        else if (strcmp(method, "POST") == 0)
                (void) curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        cc = curl_easy_perform(h);
        free(TAKE_PTR(url));
        if (cc != CURLE_OK) {
                fprintf(stderr, "remedyctl: cannot reach remedyd on %s: %s (is it running? do you belong to its group?)\n",
                        sock, curl_easy_strerror(cc));
                strbuf_free(&resp);
                return -ECONNREFUSED;
        }
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        *ret_status = status;
        *ret_body = resp.data ? json_tokener_parse(resp.data) : NULL;
        strbuf_free(&resp);
        return 0;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return "";
        return json_object_get_string(v);
}

static int print_error(long status, json_object *body) {
        const char *m = jstr(body, "message");

        fprintf(stderr, "remedyctl: %s (HTTP %ld)\n", *m ? m : "the daemon refused the request", status);
        return 1;
}

static void print_action_row(json_object *a) {
        printf("%-32s  %-10s  %-15s  %-28s  %-24s  %s\n", jstr(a, "id"), jstr(a, "action"), jstr(a, "status"),
               jstr(a, "user"), jstr(a, "rule"), jstr(a, "detail"));
}

static void print_actions(json_object *list) {
        size_t n = list ? json_object_array_length(list) : 0;

        printf("%-32s  %-10s  %-15s  %-28s  %-24s  %s\n", "ID", "ACTION", "STATUS", "USER", "RULE", "DETAIL");
        for (size_t i = 0; i < n; i++)
                print_action_row(json_object_array_get_idx(list, i));
        if (n == 0)
                printf("(no actions)\n");
}

static void print_json(json_object *o) {
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void print_status(json_object *s) {
        json_object *cfg = NULL, *tok = NULL, *dir = NULL, *q = NULL, *safety = NULL, *state = NULL, *nt = NULL;

        json_object_object_get_ex(s, "config", &cfg);
        json_object_object_get_ex(s, "token", &tok);
        json_object_object_get_ex(s, "directory", &dir);
        json_object_object_get_ex(s, "queue", &q);
        json_object_object_get_ex(s, "safety", &safety);
        printf("remedyd %s, up %ss\n", jstr(s, "version"), jstr(s, "uptime_seconds"));
        printf("config:    loaded %s, %s sources, %s rules%s%s\n", jstr(cfg, "loaded_at"), jstr(cfg, "sources"),
               jstr(cfg, "rules"), *jstr(cfg, "last_reload_error") ? "\n           last reload FAILED: " : "",
               jstr(cfg, "last_reload_error"));
        printf("token:     %s (expires in %ss)\n", strcmp(jstr(tok, "valid"), "true") == 0 ? "valid" : "none",
               jstr(tok, "expires_in_seconds"));
        printf("directory: %s users, synced %s\n", jstr(dir, "users"), *jstr(dir, "synced_at") ? jstr(dir, "synced_at") : "never");
        printf("queue:     %s queued, %s running, %s held, %s failed\n", jstr(q, "queued"), jstr(q, "running"),
               jstr(q, "held"), jstr(q, "failed"));
        if (json_object_object_get_ex(s, "notify", &nt))
                printf("notify:    %s sinks, %s pending, %s failed\n", jstr(nt, "sinks"), jstr(nt, "pending"),
                       jstr(nt, "failed"));
        printf("safety:    dry-run %s, %s suspensions in window (cap %s)\n",
               strcmp(jstr(safety, "dry_run"), "true") == 0 ? "ON" : "off", jstr(safety, "suspensions_in_window"),
               jstr(safety, "max_suspensions"));
        if (json_object_object_get_ex(s, "state", &state)) {
                json_object *db = NULL, *list = NULL;
                size_t n;

                json_object_object_get_ex(state, "database", &db);
                json_object_object_get_ex(state, "instances", &list);
                n = list && json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
                printf("state:     %s, instance %s, database %s (%s ms), %zu live instance%s", jstr(state, "backend"),
                       jstr(state, "instance"), strcmp(jstr(db, "connected"), "true") == 0 ? "connected" : "NOT CONNECTED",
                       jstr(db, "latency_ms"), n, n == 1 ? "" : "s");
                for (size_t i = 0; i < n; i++)
                        printf("%s%s", i ? ", " : ": ", json_object_get_string(json_object_array_get_idx(list, i)));
                printf("\n");
        }
}

static int cmd_status(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        bool json = false;
        long st = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else {
                        fprintf(stderr, "remedyctl status: unknown option '%s'\n", argv[i]);
                        return 2;
                }
        }
        r = control_call(ctx, "GET", "/v1/status", NULL, &st, &body);
        if (r < 0)
                return 1;
        if (st != 200 || !body)
                return print_error(st, body);
        if (json)
                print_json(body);
        else
                print_status(body);
        return 0;
}

static int cmd_manual(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *req = NULL, *body = NULL;
        const char *user = NULL, *reason = NULL;
        json_object *a;
        long st = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
                        reason = argv[++i];
                else if (strncmp(argv[i], "--reason=", 9) == 0)
                        reason = argv[i] + 9;
                else if (argv[i][0] != '-' && !user)
                        user = argv[i];
                else {
                        fprintf(stderr, "remedyctl %s: unexpected argument '%s'\n", argv[0], argv[i]);
                        return 2;
                }
        }
        if (!user || !reason || !*reason) {
                fprintf(stderr, "Usage: remedyctl %s EMAIL|ID --reason TEXT\n", argv[0]);
                return 2;
        }
        req = json_object_new_object();
        if (!req || json_object_object_add(req, "action", json_object_new_string(argv[0])) < 0 ||
            json_object_object_add(req, "user", json_object_new_string(user)) < 0 ||
            json_object_object_add(req, "reason", json_object_new_string(reason)) < 0) {
                fprintf(stderr, "remedyctl: out of memory\n");
                return 1;
        }
        r = control_call(ctx, "POST", "/v1/actions", req, &st, &body);
        if (r < 0)
                return 1;
        if (st / 100 != 2 || !body)
                return print_error(st, body);
        if (!json_object_object_get_ex(body, "action", &a))
                a = body;
        printf("%s %s: %s (action %s)\n", argv[0], jstr(a, "user"), jstr(a, "status"), jstr(a, "id"));
        return 0;
}

static bool parse_limit(const char *s, unsigned long *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v == 0 || v > LIMIT_STORE_READ_ROWS)
                return false;
        *ret = v;
        return true;
}

static int url_escape(const char *s, char **ret) {
        char *e = curl_easy_escape(NULL, s, 0);

        if (!e)
                return -ENOMEM;
        *ret = mem_strdup(e);
        curl_free(e);
        return *ret ? 0 : -ENOMEM;
}

/* GETs path and finds the array under key (*ret_body owns it; *ret_list
 * may be NULL). With json, prints it. Returns -1 when the caller prints the
 * list as a table, else the exit code. */
static int get_list(const CtlContext *ctx, const char *path, const char *key, bool json, json_object **ret_body,
                    json_object **ret_list) {
        long st = 0;

        *ret_list = NULL;
        if (control_call(ctx, "GET", path, NULL, &st, ret_body) < 0)
                return 1;
        if (st != 200 || !*ret_body)
                return print_error(st, *ret_body);
        json_object_object_get_ex(*ret_body, key, ret_list);
        if (json) {
                print_json(*ret_list ? *ret_list : *ret_body);
                return 0;
        }
        return -1;
}

static int cmd_actions(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        _cleanup_free_ char *esc = NULL;
        const char *state = NULL;
        char path[256];
        json_object *list = NULL;
        bool json = false;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
                        state = argv[++i];
                else if (strncmp(argv[i], "--state=", 8) == 0)
                        state = argv[i] + 8;
                else {
                        fprintf(stderr, "Usage: remedyctl actions [--state STATE] [--json]\n");
                        return 2;
                }
        }
        if (state && url_escape(state, &esc) < 0)
                return 1;
        snprintf(path, sizeof(path), "/v1/actions%s%s", esc ? "?state=" : "", esc ? esc : "");
        r = get_list(ctx, path, "actions", json, &body, &list);
        if (r >= 0)
                return r;
        print_actions(list);
        return 0;
}

static int cmd_transition(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        _cleanup_free_ char *esc = NULL;
        char path[256];
        json_object *a;
        long st = 0;

        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr, "Usage: remedyctl %s ID\n", argv[0]);
                return 2;
        }
        if (strlen(argv[1]) > 64 || url_escape(argv[1], &esc) < 0) {
                fprintf(stderr, "remedyctl %s: bad action id\n", argv[0]);
                return 2;
        }
        snprintf(path, sizeof(path), "/v1/actions/%s/%s", esc, argv[0]);
        if (control_call(ctx, "POST", path, NULL, &st, &body) < 0)
                return 1;
        if (st != 200 || !body)
                return print_error(st, body);
        if (!json_object_object_get_ex(body, "action", &a))
                a = body;
        printf("action %s: %s\n", jstr(a, "id"), jstr(a, "status"));
        return 0;
}

static int cmd_history(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        _cleanup_free_ char *esc = NULL;
        const char *user = NULL, *since = NULL;
        json_object *list = NULL;
        uint64_t since_usec = 0;
        bool json = false;
        char path[512];
        int r;
        size_t n;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
                        user = argv[++i];
                else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
                        since = argv[++i];
                else {
                        fprintf(stderr, "Usage: remedyctl history [--user EMAIL|ID] [--since DURATION] [--json]\n");
                        return 2;
                }
        }
        if (since && parse_duration(since, &since_usec) < 0) {
                fprintf(stderr, "remedyctl history: --since takes a duration like 30m, 4h or 7d, not '%s'\n", since);
                return 2;
        }
        if (user && url_escape(user, &esc) < 0)
                return 1;
        snprintf(path, sizeof(path), "/v1/history?since_seconds=%llu%s%s",
                 (unsigned long long) (since_usec / USEC_PER_SEC), esc ? "&user=" : "", esc ? esc : "");
        r = get_list(ctx, path, "entries", json, &body, &list);
        if (r >= 0)
                return r;
        n = list ? json_object_array_length(list) : 0;
        printf("%-20s  %-18s  %-28s  %-24s  %-10s  %s\n", "TIME", "WHAT", "USER", "RULE", "STATUS", "DETAIL");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(list, i);
                const char *inst = jstr(e, "instance");

                /* the instance that wrote it, after the detail (shared state) */
                printf("%-20s  %-18s  %-28s  %-24s  %-10s  %s%s%s%s\n", jstr(e, "time"), jstr(e, "kind"),
                       jstr(e, "user"), jstr(e, "rule"), jstr(e, "to"), jstr(e, "detail"), *inst ? "  [" : "", inst,
                       *inst ? "]" : "");
        }
        if (n == 0)
                printf("(no history)\n");
        return 0;
}

static int cmd_notifications(const CtlContext *ctx, int argc, char **argv) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        json_object *list = NULL;
        unsigned long limit = 0;
        bool json = false;
        char path[128];
        int r;
        size_t n;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc && parse_limit(argv[i + 1], &limit))
                        i++;
                else {
                        fprintf(stderr, "Usage: remedyctl notifications [--limit N] [--json]\n");
                        return 2;
                }
        }
        snprintf(path, sizeof(path), "/v1/notifications?limit=%lu", limit ? limit : 100);
        r = get_list(ctx, path, "notifications", json, &body, &list);
        if (r >= 0)
                return r;
        n = list ? json_object_array_length(list) : 0;
        printf("%-20s  %-32s  %-16s  %-9s  %-10s  %-3s  %-28s  %s\n", "TIME", "DELIVERY", "SINK", "STATE", "OUTCOME",
               "TRY", "USER", "LAST ERROR");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(list, i);

                printf("%-20s  %-32s  %-16s  %-9s  %-10s  %-3s  %-28s  %s\n", jstr(e, "updated_at"), jstr(e, "delivery"),
                       jstr(e, "sink"), jstr(e, "state"), jstr(e, "outcome"), jstr(e, "attempts"), jstr(e, "user"),
                       jstr(e, "last_error"));
        }
        if (n == 0)
                printf("(no notifications)\n");
        return 0;
}

int ctl_admin(const CtlContext *ctx, int argc, char **argv) {
        const char *cmd = argv[0];

        if (strcmp(cmd, "status") == 0)
                return cmd_status(ctx, argc, argv);
        if (strcmp(cmd, "suspend") == 0 || strcmp(cmd, "reactivate") == 0)
                return cmd_manual(ctx, argc, argv);
        if (strcmp(cmd, "actions") == 0)
                return cmd_actions(ctx, argc, argv);
        if (strcmp(cmd, "release") == 0 || strcmp(cmd, "cancel") == 0)
                return cmd_transition(ctx, argc, argv);
        if (strcmp(cmd, "history") == 0)
                return cmd_history(ctx, argc, argv);
        if (strcmp(cmd, "notifications") == 0)
                return cmd_notifications(ctx, argc, argv);
        fprintf(stderr, "remedyctl: unknown command '%s'\n", cmd);
        return 2;
}
