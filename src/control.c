/* The control socket: admin endpoints for remedyctl, HTTP/1.1 with JSON
 * bodies on a unix socket of mode 0660 (who may act = who is in its group).
 *
 *   GET  /v1/status                      the /status document
 *   GET  /v1/actions?state=S&limit=N     actions, newest first
 *   POST /v1/actions                     {"action": "suspend"|"reactivate", "user": U, "reason": R}
 *   POST /v1/actions/ID/release          held -> queued
 *   POST /v1/actions/ID/cancel           held|queued -> cancelled
 *   GET  /v1/history?user=U&since_seconds=N&limit=N
 *   GET  /v1/notifications?limit=N       recent deliveries, newest first
 *   GET  /v1/users?filter=active|suspended  {"users": [User...]}, every page
 *   POST /v1/explain?source=NAME         the raw body of a delivery to /hooks/NAME,
 *                                        evaluated read-only (webhook_preview()):
 *                                        200 the webhook answer's shape; the source's
 *                                        auth is not checked (this socket is trusted)
 *   GET  /v1/users/{email-or-id}          {"user": User}; 404 no_such_user,
 *                                        409 ambiguous_user {"users": [...]}
 *                                        (an email the directory index does not
 *                                        resolve is matched over a full listing)
 *
 * The users endpoints call the 1Password API with the daemon's client, so
 * that remedyctl users needs no access to the client secret. An API
 * failure is 502 {"error": "api_error", "errno", "http_status",
 * "api_code", "api_message", "base_url"}.
 *
 * Manual actions go through the same resolution and guardrails as rule
 * actions (protected, cooldown, dry-run, the cap) and are audited.
 *
 * It reads the daemon only through ControlDeps: the store, the client, the
 * directory and the executor, and callbacks for the current config, the
 * dry-run flag, the status document and explain --live, which daemon.c
 * answers with status_build_json() and webhook_preview(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "control.h"
#include "directory.h"
#include "executor.h"
#include "http_server.h"
#include "list.h"
#include "log.h"
#include "remedyd-limits.h"
#include "safety.h"
#include "store.h"
#include "users_api.h"
#include "utf8.h"
#include "util.h"

#define CONTROL_BODY_MAX 65536u
#define CONTROL_REASON_MAX 1024u
#define USERS_PAGE_SIZE 1000u

typedef struct UsersJob UsersJob;

struct Control {
        ControlDeps deps;
        HttpServer *server;
        struct {
                UsersJob *head, *tail;
        } jobs;                  /* users requests waiting for the API */
};

/* A suspended request waiting for the store. The request may be gone by
 * the time the store answers (peer closed, shutdown): on_complete clears
 * req through the context. */
typedef struct Pending {
        Control *control;
        HttpServerRequest *req;
        char id[64];
        bool release;
} Pending;

static const Config *config(const Control *c) {
        return c->deps.config(c->deps.userdata);
}

static void pending_free(void *p) {
        Pending *x = p;

        if (x)
                x->req = NULL; /* the store callback still owns x */
}

static int add_str(json_object *o, const char *k, const char *v) {
        return json_object_object_add(o, k, v ? json_object_new_string(v) : json_object_new_null());
}

static json_object *action_json(const StoreAction *a) {
        json_object *o = json_object_new_object();
        char t[40];

        if (!o)
                return NULL;
        format_rfc3339(a->created_usec, t, sizeof(t));
        if (add_str(o, "id", a->id) < 0 || add_str(o, "event_id", a->event_id) < 0 ||
            add_str(o, "rule", a->rule) < 0 ||
            add_str(o, "action", config_action_kind_to_string(a->action)) < 0 ||
            add_str(o, "user", a->user) < 0 || add_str(o, "user_id", a->user_id) < 0 ||
            add_str(o, "reason", a->reason) < 0 ||
            add_str(o, "status", store_action_status_to_string(a->status)) < 0 ||
            add_str(o, "detail", a->detail) < 0 || add_str(o, "created_at", t) < 0 ||
            add_str(o, "owner", a->owner) < 0 ||
            json_object_object_add(o, "attempts", json_object_new_int64(a->attempts)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int respond_action(HttpServerRequest *req, unsigned status, const StoreAction *a) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *j = action_json(a);

        if (!o || !j || json_object_object_add(o, "action", j) < 0) {
                json_object_put(j);
                return -ENOMEM;
        }
        return http_server_respond_json(req, status, o);
}

/* Answers 200 {key: [item(items, 0), ...]}; the items stay the caller's. */
static int respond_items(HttpServerRequest *req, const char *key, const void *items, size_t n,
                         json_object *(*item)(const void *items, size_t i)) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *arr = json_object_new_array();

        if (!o || !arr || json_object_object_add(o, key, arr) < 0) {
                json_object_put(arr);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *j = item(items, i);

                if (!j || json_object_array_add(arr, j) < 0) {
                        json_object_put(j);
                        return -ENOMEM;
                }
        }
        return http_server_respond_json(req, 200, o);
}

static json_object *action_item(const void *items, size_t i) {
        return action_json((const StoreAction *) items + i);
}

static int handle_status(Control *c, HttpServerRequest *req) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        r = c->deps.status_json(c->deps.userdata, &o);
        if (r < 0)
                return r;
        return http_server_respond_json(req, 200, o);
}

static int handle_list(Control *c, HttpServerRequest *req) {
        const char *state = http_server_request_query(req, "state");
        const char *limit = http_server_request_query(req, "limit");
        StoreAction *a = NULL;
        size_t n = 0;
        int status = -1, r;
        unsigned lim = 0;

        if (state && *state) {
                status = store_action_status_from_string(state);
                if (status < 0)
                        return http_server_respond_json_error(req, 400, "bad_state",
                                                              "Unknown action state: use queued, held, running, done, failed, cancelled, dry_run, cooldown, protected, unknown_user, ambiguous_user or unresolved.");
        }
        if (limit)
                lim = (unsigned) strtoul(limit, NULL, 10);
        r = store_list_actions(c->deps.store, status, lim, &a, &n);
        if (r < 0)
                return http_server_respond_json_error(req, 503, "store_unavailable", "The state store cannot be read right now.");
        r = respond_items(req, "actions", a, n, action_item);
        store_actions_free(a, n);
        return r;
}

static int handle_history(Control *c, HttpServerRequest *req) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const char *user = http_server_request_query(req, "user");
        const char *since = http_server_request_query(req, "since_seconds");
        const char *limit = http_server_request_query(req, "limit");
        StoreAuditEntry *e = NULL;
        uint64_t since_usec = 0, now = now_usec(CLOCK_REALTIME);
        json_object *arr;
        size_t n = 0;
        int r;

        if (since && *since) {
                uint64_t s = strtoull(since, NULL, 10);
                if (s > 0 && s * USEC_PER_SEC < now)
                        since_usec = now - s * USEC_PER_SEC;
        }
        r = store_history(c->deps.store, user && *user ? user : NULL, since_usec,
                          limit ? (unsigned) strtoul(limit, NULL, 10) : 0, &e, &n);
        if (r < 0)
                return http_server_respond_json_error(req, 503, "store_unavailable", "The state store cannot be read right now.");
        arr = json_object_new_array();
        if (!o || !arr || json_object_object_add(o, "entries", arr) < 0) {
                json_object_put(arr);
                store_audit_free(e, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                json_object *j = json_object_new_object();
                char t[40];

                format_rfc3339(e[i].time_usec, t, sizeof(t));
                if (!j || add_str(j, "time", t) < 0 || add_str(j, "kind", e[i].kind) < 0 ||
                    add_str(j, "event_id", e[i].event_id) < 0 || add_str(j, "action_id", e[i].action_id) < 0 ||
                    add_str(j, "rule", e[i].rule) < 0 || add_str(j, "user", e[i].user) < 0 ||
                    add_str(j, "from", e[i].from_status) < 0 || add_str(j, "to", e[i].to_status) < 0 ||
                    add_str(j, "detail", e[i].detail) < 0 || add_str(j, "instance", e[i].instance) < 0 ||
                    json_object_array_add(arr, j) < 0) {
                        json_object_put(j);
                        store_audit_free(e, n);
                        return -ENOMEM;
                }
        }
        store_audit_free(e, n);
        return http_server_respond_json(req, 200, o);
}

static json_object *notification_json(const StoreNotification *n) {
        json_object *o = json_object_new_object();
        char created[40], updated[40], next[40];

        if (!o)
                return NULL;
        format_rfc3339(n->created_usec, created, sizeof(created));
        format_rfc3339(n->updated_usec, updated, sizeof(updated));
        format_rfc3339(n->not_before_usec, next, sizeof(next));
        if (add_str(o, "delivery", n->id) < 0 || add_str(o, "sink", n->sink) < 0 ||
            add_str(o, "state", store_notify_state_to_string(n->state)) < 0 ||
            add_str(o, "outcome", store_action_status_to_string(n->outcome)) < 0 ||
            add_str(o, "action_id", n->action.id) < 0 || add_str(o, "rule", n->action.rule) < 0 ||
            add_str(o, "user", n->action.user) < 0 || add_str(o, "last_error", n->last_error) < 0 ||
            add_str(o, "instance", n->instance) < 0 || add_str(o, "created_at", created) < 0 ||
            add_str(o, "updated_at", updated) < 0 ||
            add_str(o, "next_attempt_at", n->state == NOTIFY_STATE_PENDING ? next : NULL) < 0 ||
            json_object_object_add(o, "attempts", json_object_new_int64(n->attempts)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static json_object *notification_item(const void *items, size_t i) {
        return notification_json((const StoreNotification *) items + i);
}

static int handle_notifications(Control *c, HttpServerRequest *req) {
        const char *limit = http_server_request_query(req, "limit");
        StoreNotification *v = NULL;
        size_t n = 0;
        int r;

        r = store_list_notifications(c->deps.store, limit ? (unsigned) strtoul(limit, NULL, 10) : 0, &v, &n);
        if (r < 0)
                return http_server_respond_json_error(req, 503, "store_unavailable", "The state store cannot be read right now.");
        r = respond_items(req, "notifications", v, n, notification_item);
        store_notifications_free(v, n);
        return r;
}

static void on_manual_done(Store *s, int r, const StoreAction *a, void *userdata) {
        Pending *p = userdata;
        HttpServerRequest *req = p->req;

        if (req) {
                /* Detach first: replacing the context runs pending_free(). */
                http_server_request_set_context(req, NULL, NULL);
                if (r < 0)
                        (void) http_server_respond_json_error(req, 503, "store_unavailable",
                                                              "The action could not be recorded; nothing was done.");
                else
                        (void) respond_action(req, 202, a);
        }
        if (r >= 0) {
                LogContext ctx = { .action_id = a->id, .rule = "manual", .user = a->user };
                log_full(LOG_NOTICE, 0, &ctx, "manual %s of %s recorded as %s", config_action_kind_to_string(a->action),
                         a->user, store_action_status_to_string(a->status));
                if (a->status == ACTION_STATUS_QUEUED)
                        executor_kick(p->control->deps.executor);
        }
        mem_free(p);
}

static int handle_manual(Control *c, HttpServerRequest *req) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        const Config *cfg = config(c);
        const char *raw, *act, *user, *reason, *user_id = NULL;
        json_object *v;
        DirectoryResult lookup = DIRECTORY_FOUND;
        StoreAction *a;
        Pending *p;
        ActionKind kind;
        size_t size;
        int r;

        raw = http_server_request_body(req, &size);
        if (utf8_is_valid(raw, size))
                body = json_tokener_parse(raw);
        if (!body || !json_object_is_type(body, json_type_object))
                return http_server_respond_json_error(req, 400, "bad_json", "The request body is not a JSON object.");
        act = json_object_object_get_ex(body, "action", &v) ? json_object_get_string(v) : NULL;
        user = json_object_object_get_ex(body, "user", &v) ? json_object_get_string(v) : NULL;
        reason = json_object_object_get_ex(body, "reason", &v) ? json_object_get_string(v) : NULL;
        kind = act ? config_action_kind_from_string(act) : _ACTION_KIND_INVALID;
        if (kind != ACTION_SUSPEND && kind != ACTION_REACTIVATE)
                return http_server_respond_json_error(req, 400, "bad_action", "The action must be suspend or reactivate.");
        if (!user || !*user || strlen(user) > LIMIT_CONFIG_STRING_BYTES)
                return http_server_respond_json_error(req, 400, "bad_user", "Name the user by email or 1Password user id.");
        if (!reason || !*reason || strlen(reason) > CONTROL_REASON_MAX)
                return http_server_respond_json_error(req, 400, "bad_reason", "Give a reason (at most 1024 bytes).");

        if (is_user_id(user))
                user_id = user;
        else
                lookup = directory_lookup(c->deps.directory, user, &user_id);

        a = mem_calloc(1, sizeof(StoreAction));
        if (!a)
                return -ENOMEM;
        a->action = kind;
        a->user = mem_strdup(user);
        a->reason = mem_strdup(reason);
        a->rule = mem_strdup("manual");
        a->user_id = user_id ? mem_strdup(user_id) : NULL;
        a->status = safety_pre_status(cfg, user, lookup, user_id);
        a->dry_run = c->deps.dry_run(c->deps.userdata);
        a->created_usec = now_usec(CLOCK_REALTIME);
        a->received_mono_usec = http_server_request_started_mono(req);
        if (!a->user || !a->reason || !a->rule || (user_id && !a->user_id)) {
                store_actions_free(a, 1);
                return -ENOMEM;
        }
        p = mem_calloc(1, sizeof(Pending));
        if (!p) {
                store_actions_free(a, 1);
                return -ENOMEM;
        }
        p->control = c;
        p->req = req;
        r = http_server_request_suspend(req);
        if (r < 0) {
                store_actions_free(a, 1);
                mem_free(p);
                return r;
        }
        http_server_request_set_context(req, p, pending_free);
        r = store_submit_manual(c->deps.store, a, on_manual_done, p);
        if (r < 0) {
                http_server_request_set_context(req, NULL, NULL);
                mem_free(p);
                return http_server_respond_json_error(req, 503, "store_unavailable",
                                                      "The action could not be recorded; nothing was done.");
        }
        return 0;
}

static void on_transition_done(Store *s, int r, void *userdata) {
        Pending *p = userdata;
        HttpServerRequest *req = p->req;
        StoreAction *a = NULL;

        if (r >= 0 && p->release)
                executor_kick(p->control->deps.executor);
        if (req) {
                http_server_request_set_context(req, NULL, NULL);
                if (r == -ENOENT)
                        (void) http_server_respond_json_error(req, 404, "no_such_action", "There is no action with that id.");
                else if (r == -EBUSY)
                        (void) http_server_respond_json_error(req, 409, "wrong_state",
                                                              p->release ? "Only a held action can be released."
                                                                         : "Only a held or queued action can be cancelled.");
                else if (r < 0)
                        (void) http_server_respond_json_error(req, 503, "store_unavailable", "The state store cannot be written right now.");
                else if (store_get_action(s, p->id, &a) >= 0) {
                        (void) respond_action(req, 200, a);
                        store_actions_free(a, 1);
                } else
                        (void) http_server_respond_json_error(req, 500, "internal_error", "The action changed but cannot be read back.");
        }
        if (r >= 0)
                log_notice("action %s %s by an operator", p->id, p->release ? "released" : "cancelled");
        mem_free(p);
}

static int handle_transition(Control *c, HttpServerRequest *req, const char *id, size_t id_len, bool release) {
        Pending *p;
        int r;

        if (id_len == 0 || id_len >= sizeof(p->id))
                return http_server_respond_json_error(req, 404, "no_such_action", "There is no action with that id.");
        p = mem_calloc(1, sizeof(Pending));
        if (!p)
                return -ENOMEM;
        p->control = c;
        p->req = req;
        p->release = release;
        memcpy(p->id, id, id_len);
        r = http_server_request_suspend(req);
        if (r < 0) {
                mem_free(p);
                return r;
        }
        http_server_request_set_context(req, p, pending_free);
        r = (release ? store_release_action : store_cancel_action)(c->deps.store, p->id, "remedyctl",
                                                                    on_transition_done, p);
        if (r < 0) {
                http_server_request_set_context(req, NULL, NULL);
                mem_free(p);
                return http_server_respond_json_error(req, 503, "store_unavailable", "The state store cannot be written right now.");
        }
        return 0;
}

/* --- users: the daemon's 1Password client on behalf of remedyctl users ---- */

/* One GET /v1/users or /v1/users/{email-or-id} in flight: a chain of API
 * calls whose userdata is the job (so users_api_cancel() drops them). The
 * request may go away first (peer closed): its context then only clears
 * req, and the job answers nobody. */
struct UsersJob {
        Control *control;
        HttpServerRequest *req;  /* NULL once the request is over */
        UsersJob *prev, *next;   /* in control->jobs */
        const char *filter;      /* list: "user.isActive()" ..., or NULL (static) */
        char *email;             /* get by email while listing: match this, else NULL */
        json_object *users;      /* collected User objects */
        unsigned pages;
        bool get;                /* answer {"user": ...} (or 404/409) instead of {"users": [...]} */
};

static UsersJob *users_job_free(UsersJob *j) {
        if (!j)
                return NULL;
        if (j->req)
                http_server_request_set_context(j->req, NULL, NULL);
        if (j->control)
                LIST_REMOVE(&j->control->jobs, j);
        json_object_put(j->users);
        mem_free(j->email);
        mem_free(j);
        return NULL;
}

static void users_job_detach(void *p) {
        UsersJob *j = p;

        if (j)
                j->req = NULL; /* the API callbacks still own j */
}

static int add_int(json_object *o, const char *k, int64_t v) {
        return json_object_object_add(o, k, json_object_new_int64(v));
}

/* 502 with what remedyctl needs to say what went wrong the way it does
 * when it calls the API itself. */
static void users_respond_api_error(UsersJob *j, const UsersApiResult *res) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const Config *cfg = config(j->control);

        if (!o || add_str(o, "error", "api_error") < 0 ||
            add_str(o, "message", "The 1Password API could not be used.") < 0 ||
            add_int(o, "errno", -res->error) < 0 || add_int(o, "http_status", res->http_status) < 0 ||
            add_str(o, "api_code", res->api_code) < 0 || add_str(o, "api_message", res->api_message) < 0 ||
            add_str(o, "base_url", cfg->onepassword.base_url) < 0) {
                (void) http_server_respond_json_error(j->req, 503, "out_of_memory", "The daemon is out of memory.");
                return;
        }
        (void) http_server_respond_json(j->req, 502, o);
}

/* Answers with the collected users and frees the job. */
static void users_job_finish(UsersJob *j) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        size_t n = json_object_array_length(j->users);
        int r = -ENOMEM;

        if (!j->req)
                goto out;
        if (j->get && n == 0) {
                (void) http_server_respond_json_error(j->req, 404, "no_such_user", "There is no such 1Password user.");
                goto out;
        }
        o = json_object_new_object();
        if (!o)
                goto fail;
        if (j->get && n > 1) {
                /* The ids, so that the operator can pick one. */
                if (add_str(o, "error", "ambiguous_user") < 0 ||
                    add_str(o, "message", "Several 1Password users have that email.") < 0 ||
                    json_object_object_add(o, "users", json_object_get(j->users)) < 0)
                        goto fail;
                (void) http_server_respond_json(j->req, 409, o);
                goto out;
        }
        if (j->get)
                r = json_object_object_add(o, "user", json_object_get(json_object_array_get_idx(j->users, 0)));
        else
                r = json_object_object_add(o, "users", json_object_get(j->users));
        if (r < 0)
                goto fail;
        (void) http_server_respond_json(j->req, 200, o);
        goto out;
fail:
        (void) http_server_respond_json_error(j->req, 503, "out_of_memory", "The daemon is out of memory.");
out:
        users_job_free(j);
}

static void on_users_page(UsersApi *api, const UsersApiResult *res, void *userdata) {
        UsersJob *j = userdata;
        int r;

        if (res->error < 0) {
                if (j->req)
                        users_respond_api_error(j, res);
                users_job_free(j);
                return;
        }
        j->pages++;
        if (users_api_page_collect(res, j->email, j->users, LIMIT_DIRECTORY_USERS) < 0)
                goto fail;
        if (!res->next_page_token || !j->req) {
                users_job_finish(j);
                return;
        }
        if (j->pages >= LIMIT_DIRECTORY_PAGES)
                goto fail;
        r = users_api_list(api, j->filter, USERS_PAGE_SIZE, res->next_page_token, NULL, on_users_page, j);
        if (r >= 0)
                return;
fail:
        if (j->req)
                (void) http_server_respond_json_error(j->req, 503, "out_of_memory",
                                                      "The daemon cannot collect that many users.");
        users_job_free(j);
}

static void on_users_get(UsersApi *api, const UsersApiResult *res, void *userdata) {
        UsersJob *j = userdata;

        if (res->error == -ENOENT) {
                users_job_finish(j); /* nothing collected: 404 */
                return;
        }
        if (res->error < 0) {
                if (j->req)
                        users_respond_api_error(j, res);
                users_job_free(j);
                return;
        }
        if (res->body && json_object_array_add(j->users, json_object_get(res->body)) < 0) {
                json_object_put(res->body);
                if (j->req)
                        (void) http_server_respond_json_error(j->req, 503, "out_of_memory", "The daemon is out of memory.");
                users_job_free(j);
                return;
        }
        users_job_finish(j);
}

/* GET /v1/users?filter=active|suspended and GET /v1/users/{email-or-id}.
 * who: NULL for the list. */
static int handle_users(Control *c, HttpServerRequest *req, const char *who) {
        const char *filter = http_server_request_query(req, "filter"), *user_id = NULL;
        const ControlDeps *d = &c->deps;
        UsersJob *j;
        int r;

        if (!d->api)
                return http_server_respond_json_error(req, 503, "no_client", "The daemon has no 1Password client.");
        j = mem_calloc(1, sizeof(UsersJob));
        if (!j)
                return -ENOMEM;
        j->users = json_object_new_array();
        if (!j->users) {
                mem_free(j);
                return -ENOMEM;
        }
        j->control = c;
        LIST_APPEND(&c->jobs, j);

        if (!who) {
                if (filter && strcmp(filter, "active") == 0)
                        j->filter = "user.isActive()";
                else if (filter && strcmp(filter, "suspended") == 0)
                        j->filter = "user.isSuspended()";
                else if (filter && *filter) {
                        users_job_free(j);
                        return http_server_respond_json_error(req, 400, "bad_filter", "The filter must be active or suspended.");
                }
                r = users_api_list(d->api, j->filter, USERS_PAGE_SIZE, NULL, NULL, on_users_page, j);
        } else {
                j->get = true;
                if (is_user_id(who))
                        user_id = who;
                else {
                        /* The index answers the common case without
                         * listing. Otherwise (unknown: maybe added since
                         * the last sync; ambiguous: the answer names every
                         * match; or it cannot tell now) list and match, as
                         * remedyctl does alone: an operator's question gets
                         * the API's answer, not the index's. */
                        if (directory_lookup(d->directory, who, &user_id) != DIRECTORY_FOUND) {
                                user_id = NULL;
                                j->email = mem_strdup(who);
                                if (!j->email) {
                                        users_job_free(j);
                                        return -ENOMEM;
                                }
                        }
                }
                if (user_id)
                        r = users_api_get(d->api, user_id, NULL, on_users_get, j);
                else
                        r = users_api_list(d->api, NULL, USERS_PAGE_SIZE, NULL, NULL, on_users_page, j);
        }
        if (r < 0) {
                users_job_free(j);
                return r;
        }
        r = http_server_request_suspend(req);
        if (r < 0) {
                (void) users_api_cancel(d->api, j);
                users_job_free(j);
                return r;
        }
        j->req = req;
        http_server_request_set_context(req, j, users_job_detach);
        return 0;
}

/* POST /v1/explain?source=NAME: remedyctl explain --live. Errors answer
 * as a delivery would (404, 413, 400, 422), a store failure 503. */
static int handle_explain(Control *c, HttpServerRequest *req) {
        const char *source = http_server_request_query(req, "source"), *body;
        char *json = NULL;
        size_t len, n = 0;
        int r;

        if (!source || !*source)
                return http_server_respond_json_error(req, 400, "bad_request", "Name the source: ?source=NAME.");
        if (!c->deps.explain || !c->deps.store)
                return http_server_respond_json_error(req, 503, "unavailable", "The webhook is not running.");
        body = http_server_request_body(req, &len);
        r = c->deps.explain(c->deps.userdata, source, body ? body : "", body ? len : 0, &json, &n);
        switch (r) {
        case 0:
                return http_server_respond_take(req, 200, "application/json", json, n);
        case -ENOENT:
                return http_server_respond_json_error(req, 404, "not_found", "No such webhook source.");
        case -EMSGSIZE:
                return http_server_respond_json_error(req, 413, "too_large", "The body is over listen.max_body_bytes.");
        case -EILSEQ:
                return http_server_respond_json_error(req, 400, "invalid_json", "The body is not valid UTF-8 JSON.");
        case -EINVAL:
                return http_server_respond_json_error(req, 400, "invalid_json", "The body is not a valid JSON object.");
        case -ENOBUFS:
                return http_server_respond_json_error(req, 422, "too_many_actions",
                                                      "The event would produce more actions than remedyd accepts from one delivery.");
        case -ENOMEM:
                return r;
        default:
                log_warning_errno(r, "explain --live: the state store could not be read: %m");
                return http_server_respond_json_error(req, 503, "store_unavailable", "The state store could not be read.");
        }
}

static int on_headers(HttpServerRequest *req, void *userdata) {
        const char *m = http_server_request_method(req);

        if (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0) {
                (void) http_server_request_add_header(req, "Allow", "GET, POST");
                return http_server_respond_json_error(req, 405, "method_not_allowed", "Use GET or POST.");
        }
        return 0;
}

static int on_request(HttpServerRequest *req, void *userdata) {
        Control *c = userdata;
        const char *m = http_server_request_method(req), *path = http_server_request_path(req);
        bool get = strcmp(m, "GET") == 0;

        if (strcmp(path, "/v1/status") == 0 && get)
                return handle_status(c, req);
        if (strcmp(path, "/v1/actions") == 0)
                return get ? handle_list(c, req) : handle_manual(c, req);
        if (strcmp(path, "/v1/history") == 0 && get)
                return handle_history(c, req);
        if (strcmp(path, "/v1/notifications") == 0 && get)
                return handle_notifications(c, req);
        if (strcmp(path, "/v1/explain") == 0 && !get)
                return handle_explain(c, req);
        if (strcmp(path, "/v1/users") == 0 && get)
                return handle_users(c, req, NULL);
        if (str_startswith(path, "/v1/users/") && get) {
                const char *who = path + strlen("/v1/users/");

                if (!*who || strchr(who, '/') || strlen(who) > LIMIT_CONFIG_STRING_BYTES)
                        return http_server_respond_json_error(req, 404, "no_such_user", "There is no such 1Password user.");
                return handle_users(c, req, who);
        }
        if (str_startswith(path, "/v1/actions/") && !get) {
                const char *id = path + strlen("/v1/actions/"), *slash = strchr(id, '/');

                if (slash && strcmp(slash, "/release") == 0)
                        return handle_transition(c, req, id, (size_t) (slash - id), true);
                if (slash && strcmp(slash, "/cancel") == 0)
                        return handle_transition(c, req, id, (size_t) (slash - id), false);
        }
        return http_server_respond_json_error(req, 404, "not_found", "No such control endpoint.");
}

int control_new(sd_event *e, const ControlDeps *deps, int listen_fd, Control **ret) {
        HttpServerOptions o = {
                .listen_fd = listen_fd,
                .max_body_bytes = CONTROL_BODY_MAX,
                .on_headers = on_headers,
                .on_request = on_request,
                .name = "control",
        };
        const Config *cfg;
        Control *c;
        int r;

        if (!e || !deps || !deps->config || !deps->dry_run || !deps->status_json) {
                close(listen_fd);
                return -EINVAL;
        }
        c = mem_calloc(1, sizeof(Control));
        if (!c) {
                close(listen_fd);
                return -ENOMEM;
        }
        c->deps = *deps;
        o.userdata = c;
        /* explain --live takes a delivery's body (read at start: a reload
         * that raises max_body_bytes applies after a restart here) */
        cfg = config(c);
        if (cfg && cfg->listen.max_body_bytes > o.max_body_bytes)
                o.max_body_bytes = cfg->listen.max_body_bytes;
        r = http_server_new(e, &o, &c->server);
        if (r < 0) {
                close(listen_fd);
                mem_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

Control *control_free(Control *c) {
        if (!c)
                return NULL;
        /* Answers the suspended requests first: their contexts let go of
         * the jobs, whose API calls are then dropped. */
        http_server_free(c->server);
        while (c->jobs.head) {
                UsersJob *j = c->jobs.head;

                if (c->deps.api)
                        (void) users_api_cancel(c->deps.api, j);
                users_job_free(j);
        }
        mem_free(c);
        return NULL;
}
