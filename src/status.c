/* The read-only status listener and the documents it serves (status.h).
 * It reads the daemon's modules only through StatusDeps: handles given at
 * creation and callbacks for what a reload changes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "directory.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "status.h"
#include "store.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"
#include "version.h"

#define METRICS_TEXT_MAX (8u * 1024u * 1024u)
#define PROMETHEUS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct Status {
        StatusDeps deps;
        HttpServer *server;
};

static const Config *config(const StatusDeps *d) {
        return d->config(d->userdata);
}

/* --- documents ---------------------------------------------------------- */

static int add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* Adds key: null. */
static int add_null(json_object *o, const char *key) {
        return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
}

static int add_string_or_null(json_object *o, const char *key, const char *s) {
        return s ? add(o, key, json_object_new_string(s)) : add_null(o, key);
}

static int add_time_or_null(json_object *o, const char *key, uint64_t realtime_usec) {
        char buf[32];

        if (realtime_usec == 0)
                return add_null(o, key);
        format_rfc3339(realtime_usec, buf, sizeof(buf));
        return add(o, key, json_object_new_string(buf));
}

static int add_u64(json_object *o, const char *key, uint64_t v) {
        return add(o, key, json_object_new_uint64(v));
}

static json_object *new_object(json_object *parent, const char *key) {
        json_object *o = json_object_new_object();

        if (!o || add(parent, key, o) < 0)
                return NULL;
        return o;
}

static int build_config(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "config");
        const Config *c = config(d);

        if (!o)
                return -ENOMEM;
        if (add_time_or_null(o, "loaded_at", c ? c->loaded_usec : 0) < 0 ||
            add_u64(o, "sources", c ? c->n_sources : 0) < 0 ||
            add_u64(o, "rules", c ? c->n_rules : 0) < 0 ||
            add_string_or_null(o, "last_reload_error", d->last_reload_error(d->userdata)) < 0 ||
            add_string_or_null(o, "path", c ? c->path : NULL) < 0)
                return -ENOMEM;
        return 0;
}

static int build_token(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "token");
        UsersApiTokenState t = {};

        if (!o)
                return -ENOMEM;
        if (d->api)
                users_api_token_state(d->api, &t);
        if (add(o, "valid", json_object_new_boolean(t.valid)) < 0 ||
            add(o, "expires_in_seconds", json_object_new_int64(t.valid ? t.expires_in_seconds : 0)) < 0 ||
            add(o, "last_request_ok", json_object_new_boolean(t.last_request_ok)) < 0 ||
            add_string_or_null(o, "last_error", t.last_error[0] ? t.last_error : NULL) < 0)
                return -ENOMEM;
        return 0;
}

static int build_directory(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "directory");
        DirectoryStats st = {};

        if (!o)
                return -ENOMEM;
        if (d->directory)
                directory_stats(d->directory, &st);
        if (add_u64(o, "users", st.users) < 0 ||
            add_time_or_null(o, "synced_at", st.synced_usec) < 0 ||
            add(o, "syncing", json_object_new_boolean(st.syncing)) < 0 ||
            add_string_or_null(o, "last_error", st.last_error[0] ? st.last_error : NULL) < 0)
                return -ENOMEM;
        return 0;
}

static int build_queue(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "queue");
        StoreQueueCounts q = {};
        bool ok;
        static const char *const keys[] = { "queued", "running", "held", "failed", "done", "cancelled" };

        if (!o)
                return -ENOMEM;
        ok = d->store && store_queue_counts(d->store, &q) >= 0;
        const uint64_t values[] = { q.queued, q.running, q.held, q.failed, q.done, q.cancelled };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if ((ok ? add_u64(o, keys[i], values[i]) : add_null(o, keys[i])) < 0)
                        return -ENOMEM;
        return 0;
}

static int build_notify(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "notify");
        const Config *c = config(d);
        uint64_t pending = 0, failed = 0;
        bool ok;

        if (!o)
                return -ENOMEM;
        ok = d->store && store_notification_counts(d->store, &pending, &failed) >= 0;
        if ((ok ? add_u64(o, "pending", pending) : add_null(o, "pending")) < 0 ||
            (ok ? add_u64(o, "failed", failed) : add_null(o, "failed")) < 0 ||
            add_u64(o, "sinks", c ? c->n_notify : 0) < 0 ||
            add_u64(o, "inflight", notify_inflight(d->notify)) < 0)
                return -ENOMEM;
        return 0;
}

static int build_safety(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "safety");
        const Config *c = config(d);
        uint64_t n = 0;
        bool ok;

        if (!o)
                return -ENOMEM;
        ok = d->store && store_suspensions_in_window(d->store, &n) >= 0;
        if (add(o, "dry_run", json_object_new_boolean(d->dry_run(d->userdata))) < 0 ||
            (ok ? add_u64(o, "suspensions_in_window", n) : add_null(o, "suspensions_in_window")) < 0 ||
            add_u64(o, "max_suspensions", c ? c->safety.max_suspensions : 0) < 0 ||
            add_u64(o, "window_seconds", c ? c->safety.window_usec / USEC_PER_SEC : 0) < 0)
                return -ENOMEM;
        return 0;
}

/* state: where the state lives and who shares it (interface.md 8.6). */
static int build_state(const StatusDeps *d, json_object *root) {
        json_object *o = new_object(root, "state"), *db, *list;
        StoreInfo info = {};
        char **names = NULL;

        if (!o)
                return -ENOMEM;
        if (d->store)
                store_info(d->store, &info);
        list = json_object_new_array();
        if (!list || add(o, "instances", list) < 0)
                return -ENOMEM;
        if (d->store && store_instances(d->store, &names) >= 0)
                for (char **p = names; *p; p++)
                        if (json_object_array_add(list, json_object_new_string(*p)) < 0) {
                                strv_free(names);
                                return -ENOMEM;
                        }
        strv_free(names);
        if (add_string_or_null(o, "backend", info.backend) < 0 || add_string_or_null(o, "instance", info.instance) < 0 ||
            add_u64(o, "lease_seconds", info.lease_usec / USEC_PER_SEC) < 0 || !(db = new_object(o, "database")) ||
            add(db, "connected", json_object_new_boolean(d->store && info.connected && store_writable(d->store))) < 0 ||
            add(db, "latency_ms", json_object_new_double((double) info.latency_usec / 1000.0)) < 0)
                return -ENOMEM;
        return 0;
}

static int build_counters(const StatusDeps *d, json_object *root) {
        static const char *const outcomes[] = {
                "queued", "held", "dry_run", "cooldown", "protected", "unknown_user",
                "ambiguous_user", "unresolved", "done", "failed", "cancelled",
        };
        json_object *o = new_object(root, "counters"), *a;

        if (!o)
                return -ENOMEM;
        if (!d->metrics)
                return 0;
        if (add_u64(o, "webhooks_total", metrics_webhooks_total(d->metrics)) < 0)
                return -ENOMEM;
        a = new_object(o, "actions_total");
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(outcomes); i++)
                if (add_u64(a, outcomes[i], metrics_actions_total(d->metrics, outcomes[i])) < 0)
                        return -ENOMEM;
        return 0;
}

int status_build_json(const StatusDeps *d, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (add(o, "version", json_object_new_string(REMEDYD_VERSION)) < 0 ||
            add_u64(o, "uptime_seconds", now > d->started_mono_usec ? (now - d->started_mono_usec) / USEC_PER_SEC : 0) < 0 ||
            add_time_or_null(o, "started_at", d->started_usec) < 0)
                return -ENOMEM;
        if ((r = build_config(d, o)) < 0 ||
            (r = build_token(d, o)) < 0 ||
            (r = build_directory(d, o)) < 0 ||
            (r = build_queue(d, o)) < 0 ||
            (r = build_notify(d, o)) < 0 ||
            (r = build_safety(d, o)) < 0 ||
            (r = build_state(d, o)) < 0 ||
            (r = build_counters(d, o)) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

bool status_ready(const StatusDeps *d, char *reason, size_t reason_size) {
        UsersApiTokenState t = {};
        const char *why = NULL;

        if (!config(d))
                why = "The configuration is not loaded.";
        else if (!d->store || !store_writable(d->store)) {
                StoreInfo info = {};

                if (d->store)
                        store_info(d->store, &info);
                why = info.shared && !info.connected ? "The state database (PostgreSQL) is not reachable."
                                                     : "The state store is not writable.";
        }
        else {
                if (d->api)
                        users_api_token_state(d->api, &t);
                if (!t.last_request_ok)
                        why = "The last 1Password token request did not succeed.";
        }
        if (why && reason && reason_size > 0)
                snprintf(reason, reason_size, "%s", why);
        return !why;
}

int status_render_metrics(const StatusDeps *d, StrBuf *out) {
        StoreQueueCounts q = {};
        DirectoryStats st = {};
        UsersApiTokenState t = {};
        int r;

        if (d->metrics) {
                r = metrics_render(d->metrics, out);
                if (r < 0)
                        return r;
        }

        if (d->store && store_queue_counts(d->store, &q) >= 0) {
                r = strbuf_printf(out,
                                  "# HELP remedyd_queue_depth Actions in the state store, by lifecycle state.\n"
                                  "# TYPE remedyd_queue_depth gauge\n"
                                  "remedyd_queue_depth{state=\"queued\"} %" PRIu64 "\n"
                                  "remedyd_queue_depth{state=\"running\"} %" PRIu64 "\n"
                                  "remedyd_queue_depth{state=\"held\"} %" PRIu64 "\n"
                                  "remedyd_queue_depth{state=\"failed\"} %" PRIu64 "\n",
                                  q.queued, q.running, q.held, q.failed);
                if (r < 0)
                        return r;
        }
        {
                uint64_t pending, failed;

                if (d->store && store_notification_counts(d->store, &pending, &failed) >= 0) {
                        r = strbuf_printf(out,
                                          "# HELP remedyd_notifications_outbox Notifications in the outbox, by state.\n"
                                          "# TYPE remedyd_notifications_outbox gauge\n"
                                          "remedyd_notifications_outbox{state=\"pending\"} %" PRIu64 "\n"
                                          "remedyd_notifications_outbox{state=\"failed\"} %" PRIu64 "\n",
                                          pending, failed);
                        if (r < 0)
                                return r;
                }
        }
        if (d->store) {
                StoreStats ss;

                store_stats(d->store, &ss);
                r = strbuf_printf(out,
                                  "# HELP remedyd_store_commits_total State store transactions committed.\n"
                                  "# TYPE remedyd_store_commits_total counter\n"
                                  "remedyd_store_commits_total %" PRIu64 "\n"
                                  "# HELP remedyd_store_operations_total Operations (events, transitions, claims) "
                                  "committed.\n"
                                  "# TYPE remedyd_store_operations_total counter\n"
                                  "remedyd_store_operations_total %" PRIu64 "\n"
                                  "# HELP remedyd_store_round_trips_total Database round trips of the writers "
                                  "(shared backends).\n"
                                  "# TYPE remedyd_store_round_trips_total counter\n"
                                  "remedyd_store_round_trips_total %" PRIu64 "\n",
                                  ss.commits, ss.ops, ss.round_trips);
                if (r < 0)
                        return r;
        }
        if (d->directory)
                directory_stats(d->directory, &st);
        if (d->api)
                users_api_token_state(d->api, &t);
        return strbuf_printf(out,
                             "# HELP remedyd_directory_users Users in the email index.\n"
                             "# TYPE remedyd_directory_users gauge\n"
                             "remedyd_directory_users %" PRIu64 "\n"
                             "# HELP remedyd_token_valid Whether a valid 1Password access token is held.\n"
                             "# TYPE remedyd_token_valid gauge\n"
                             "remedyd_token_valid %d\n"
                             "# HELP remedyd_up Whether the daemon is ready (see /readyz).\n"
                             "# TYPE remedyd_up gauge\n"
                             "remedyd_up %d\n",
                             st.users, t.valid ? 1 : 0, status_ready(d, NULL, 0) ? 1 : 0);
}

/* --- the listener ------------------------------------------------------- */

static int respond_status(HttpServerRequest *req, const StatusDeps *d) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        r = status_build_json(d, &o);
        if (r < 0)
                return r;
        return http_server_respond_json(req, MHD_HTTP_OK, o);
}

static int respond_metrics(HttpServerRequest *req, const StatusDeps *d) {
        StrBuf b;
        int r;

        strbuf_init(&b, METRICS_TEXT_MAX);
        r = status_render_metrics(d, &b);
        if (r >= 0)
                r = http_server_respond(req, MHD_HTTP_OK, PROMETHEUS_CONTENT_TYPE, b.data ? b.data : "");
        strbuf_free(&b);
        if (r == -E2BIG) {
                log_error_errno(r, "status: metrics text is over %u bytes: %m", METRICS_TEXT_MAX);
                return -EIO;
        }
        return r;
}

static int on_headers(HttpServerRequest *req, void *userdata) {
        Status *s = userdata;
        const StatusDeps *d = &s->deps;
        const char *method = http_server_request_method(req);
        const char *path = http_server_request_path(req);
        char reason[128];
        int r;

        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                r = http_server_request_add_header(req, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
                if (r < 0)
                        return r;
                return http_server_respond_json_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                                                      "The status endpoint is read-only.");
        }

        if (strcmp(path, "/healthz") == 0)
                return http_server_respond(req, MHD_HTTP_OK, "text/plain; charset=utf-8", "ok\n");
        if (strcmp(path, "/readyz") == 0) {
                if (status_ready(d, reason, sizeof(reason)))
                        return http_server_respond(req, MHD_HTTP_OK, "text/plain; charset=utf-8", "ready\n");
                return http_server_respond_json_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready", reason);
        }
        if (strcmp(path, "/status") == 0)
                return respond_status(req, d);
        if (strcmp(path, "/metrics") == 0)
                return respond_metrics(req, d);
        return http_server_respond_json_error(req, MHD_HTTP_NOT_FOUND, "not_found", "No such status page.");
}

static int on_request(HttpServerRequest *req, void *userdata) {
        /* Every request is answered from its headers. */
        return on_headers(req, userdata);
}

Status *status_free(Status *s) {
        if (!s)
                return NULL;
        http_server_free(s->server);
        mem_free(s);
        return NULL;
}

int status_new(sd_event *e, const StatusDeps *deps, int listen_fd, Status **ret) {
        Status *s;
        HttpServerOptions o;
        int r;

        if (!e || !deps || !deps->config || !deps->dry_run || !deps->last_reload_error || listen_fd < 0)
                return -EINVAL;
        s = mem_calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->deps = *deps;
        o = (HttpServerOptions) {
                .listen_fd = listen_fd,
                .max_body_bytes = 0,
                .connection_limit = 64,
                .on_headers = on_headers,
                .on_request = on_request,
                .userdata = s,
                .name = "status",
        };
        r = http_server_new(e, &o, &s->server);
        if (r < 0) {
                mem_free(s);
                return r;
        }
        *ret = s;
        return 0;
}
