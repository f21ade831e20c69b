/* The 1Password Users API client: see include/users_api.h and
 * docs/internals/client.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "http_client.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "oauth.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"
#include "version.h"

#define USERS_API_DEFAULT_ATTEMPTS 4u
#define USERS_API_BACKOFF_BASE_USEC (500ULL * USEC_PER_MSEC)
#define USERS_API_BACKOFF_CAP_USEC (30ULL * USEC_PER_SEC)
/* A Retry-After longer than this is not waited for in memory: the call
 * returns transient with retry_after_usec and the caller persists it. */
#define USERS_API_RETRY_AFTER_INLINE_MAX_USEC (30ULL * USEC_PER_SEC)
#define USERS_API_URL_MAX 8192u
#define USERS_API_MESSAGE_MAX 1024u

typedef struct ApiSettings {
        unsigned n_ref;
        char *base_url;
        ApiVersion api_version;
        char *account_id;
        char *user_agent;
        char *ca_file;
        uint64_t timeout_usec;
} ApiSettings;

typedef struct UsersApiCall UsersApiCall;
struct UsersApiCall {
        UsersApi *api;
        UsersApiCall *prev, *next;
        UsersApiOperation op;
        ApiSettings *settings;
        char *url;
        unsigned max_attempts;
        bool retried_401;
        uint64_t generation;
        void *token_waiter;
        HttpRequest *req;
        sd_event_source *retry_timer;
        UsersApiResult result;
        UsersApiCallback cb;
        void *userdata;
};

typedef struct CallList {
        UsersApiCall *head, *tail;
} CallList;

struct UsersApi {
        sd_event *event;
        HttpClient *http;
        OAuth *oauth;
        Metrics *metrics;
        ApiSettings *settings;
        CallList active;
        CallList done;
        sd_event_source *defer;
        bool dispatching;
        bool dead;
};

static const char *const operation_names[_USERS_API_OPERATION_MAX] = {
        [USERS_API_TOKEN] = "token",
        [USERS_API_LIST] = "list",
        [USERS_API_GET] = "get",
        [USERS_API_SUSPEND] = "suspend",
        [USERS_API_REACTIVATE] = "reactivate",
        [USERS_API_REVOKE] = "revoke",
};

static const char *const state_names[_OP_USER_STATE_MAX] = {
        [OP_USER_STATE_UNSPECIFIED] = "STATE_UNSPECIFIED",
        [OP_USER_STATE_ACTIVE] = "ACTIVE",
        [OP_USER_STATE_SUSPENDED] = "SUSPENDED",
};

const char *users_api_operation_to_string(UsersApiOperation op) {
        if (op < 0 || op >= _USERS_API_OPERATION_MAX)
                return NULL;
        return operation_names[op];
}

const char *users_api_state_to_string(OpUserState s) {
        if (s < 0 || s >= _OP_USER_STATE_MAX)
                return NULL;
        return state_names[s];
}

void op_user_done(OpUser *u) {
        if (!u)
                return;
        mem_free(u->id);
        mem_free(u->email);
        mem_free(u->display_name);
        mem_free(u->create_time);
        mem_free(u->path);
        *u = (OpUser) {};
}

static ApiSettings *settings_unref(ApiSettings *s) {
        if (!s || --s->n_ref > 0)
                return NULL;
        mem_free(s->base_url);
        mem_free(s->account_id);
        mem_free(s->user_agent);
        mem_free(s->ca_file);
        mem_free(s);
        return NULL;
}

static int settings_new(const Config *c, ApiSettings **ret) {
        ApiSettings *s;

        if (!c || !c->onepassword.base_url || !c->onepassword.account_id)
                return -EINVAL;
        s = mem_calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->base_url = mem_strdup(c->onepassword.base_url);
        s->account_id = mem_strdup(c->onepassword.account_id);
        s->user_agent = mem_strdup(c->onepassword.user_agent ? c->onepassword.user_agent : "remedyd/" REMEDYD_VERSION);
        if (c->onepassword.ca_file)
                s->ca_file = mem_strdup(c->onepassword.ca_file);
        s->api_version = c->onepassword.api_version;
        s->timeout_usec = c->onepassword.timeout_usec;
        if (!s->base_url || !s->account_id || !s->user_agent || (c->onepassword.ca_file && !s->ca_file)) {
                settings_unref(s);
                return -ENOMEM;
        }
        /* No trailing slash, whatever the config did. */
        for (size_t n = strlen(s->base_url); n > 0 && s->base_url[n - 1] == '/'; n--)
                s->base_url[n - 1] = 0;
        *ret = s;
        return 0;
}

static OAuthSettings oauth_settings(const Config *c, const ApiSettings *s) {
        return (OAuthSettings) {
                .base_url = s->base_url,
                .api_version = s->api_version,
                .client_id = c->onepassword.client_id,
                .client_secret = c->onepassword.client_secret,
                .user_agent = s->user_agent,
                .ca_file = s->ca_file,
                .timeout_usec = s->timeout_usec,
        };
}

void users_api_result_done(UsersApiResult *r) {
        mem_free(r->api_code);
        mem_free(r->api_message);
        if (r->user) {
                op_user_done(r->user);
                mem_free(r->user);
        }
        for (size_t i = 0; i < r->n_users; i++)
                op_user_done(&r->users[i]);
        mem_free(r->users);
        mem_free(r->next_page_token);
        json_object_put(r->body);
        *r = (UsersApiResult) {};
}

static void call_free(UsersApiCall *c) {
        UsersApi *api;

        if (!c)
                return;
        api = c->api;
        if (api) {
                c->req = http_client_cancel(api->http, c->req);
                oauth_cancel(api->oauth, c->token_waiter);
        }
        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        users_api_result_done(&c->result);
        settings_unref(c->settings);
        mem_free(c->url);
        mem_free(c);
}

static void really_free(UsersApi *api) {
        while (api->active.head) {
                UsersApiCall *c = api->active.head;
                LIST_REMOVE(&api->active, c);
                call_free(c);
        }
        while (api->done.head) {
                UsersApiCall *c = api->done.head;
                LIST_REMOVE(&api->done, c);
                call_free(c);
        }
        api->defer = sd_event_source_disable_unref(api->defer);
        api->oauth = oauth_free(api->oauth);
        api->http = http_client_free(api->http);
        settings_unref(api->settings);
        sd_event_unref(api->event);
        mem_free(api);
}

static int on_defer(sd_event_source *s, void *userdata) {
        UsersApi *api = userdata;

        (void) sd_event_source_set_enabled(api->defer, SD_EVENT_OFF);
        api->dispatching = true;
        while (!api->dead && api->done.head) {
                UsersApiCall *c = api->done.head;

                LIST_REMOVE(&api->done, c);
                c->cb(api, &c->result, c->userdata);
                call_free(c);
        }
        api->dispatching = false;
        if (api->dead)
                really_free(api);
        return 0;
}

/* Ends a call: its callback runs from a deferred event, on a clean stack,
 * so that it may start calls or free the UsersApi. */
static void call_complete(UsersApiCall *c) {
        UsersApi *api = c->api;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        LIST_REMOVE(&api->active, c);
        LIST_APPEND(&api->done, c);
        if (sd_event_source_set_enabled(api->defer, SD_EVENT_ONESHOT) < 0)
                log_error("users_api: cannot schedule a completion; it will run with the next one");
}

static void result_reset_error(UsersApiResult *r) {
        r->error = 0;
        r->http_status = 0;
        r->transient = false;
        r->retry_after_usec = 0;
        mem_free(r->api_code);
        r->api_code = NULL;
        mem_free(r->api_message);
        r->api_message = NULL;
        json_object_put(r->body);
        r->body = NULL;
        if (r->user) {
                op_user_done(r->user);
                mem_free(r->user);
                r->user = NULL;
        }
        for (size_t i = 0; i < r->n_users; i++)
                op_user_done(&r->users[i]);
        mem_free(r->users);
        r->users = NULL;
        r->n_users = 0;
        mem_free(r->next_page_token);
        r->next_page_token = NULL;
}

static void call_fail(UsersApiCall *c, int error, long status, bool transient) {
        c->result.error = error;
        c->result.http_status = status;
        c->result.transient = transient;
        call_complete(c);
}

static int call_start(UsersApiCall *c);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        UsersApiCall *c = userdata;
        int r;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        r = call_start(c);
        if (r < 0)
                call_fail(c, r, 0, true);
        return 0;
}

/* A transient failure: retry in memory, or give it back to the caller. */
static void call_retry_or_fail(UsersApiCall *c, int error, long status, uint64_t retry_after) {
        UsersApi *api = c->api;
        uint64_t delay;
        int r;

        c->result.error = error;
        c->result.http_status = status;
        c->result.transient = true;
        c->result.retry_after_usec = retry_after;

        if (c->result.attempts >= c->max_attempts || retry_after > USERS_API_RETRY_AFTER_INLINE_MAX_USEC) {
                call_complete(c);
                return;
        }
        delay = http_client_backoff_usec(c->result.attempts, USERS_API_BACKOFF_BASE_USEC, USERS_API_BACKOFF_CAP_USEC);
        if (retry_after > 0)
                delay = retry_after;
        if (api->metrics)
                metrics_api_retry(api->metrics, users_api_operation_to_string(c->op));
        log_debug("users_api: %s failed (%s, HTTP %ld), attempt %u/%u, retrying in %.1fs",
                  users_api_operation_to_string(c->op), strerror(-error), status, c->result.attempts,
                  c->max_attempts, (double) delay / 1e6);
        r = sd_event_add_time_relative(api->event, &c->retry_timer, CLOCK_MONOTONIC, delay, /* accuracy= */ 1000,
                                       on_retry, c);
        if (r < 0)
                call_complete(c);
}

static json_object *parse_json(const char *body, size_t size) {
        json_object *j;
        json_tokener *tok;

        if (size == 0 || size > INT32_MAX)
                return NULL;
        tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
        if (!tok)
                return NULL;
        j = json_tokener_parse_ex(tok, body, (int) size);
        if (j && json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(j);
                j = NULL;
        }
        json_tokener_free(tok);
        return j;
}

/* A JSON string that holds a NUL ("\u0000") would be cut short by every C
 * string function after it: an id "U1\u0000X" would become "U1". */
static bool json_string_has_nul(json_object *v) {
        return strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v);
}

static int dup_string_member(json_object *o, const char *key, char **ret) {
        json_object *v;

        *ret = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string) ||
            json_string_has_nul(v))
                return 0;     /* missing, mistyped or unusable: NULL */
        *ret = mem_strdup(json_object_get_string(v));
        return *ret ? 0 : -ENOMEM;
}

/* Tolerant: missing or mistyped keys stay NULL, unknown states are
 * UNSPECIFIED. Only an object is required. */
static int user_parse(json_object *o, OpUser *u) {
        json_object *v;
        int r;

        *u = (OpUser) {};
        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        if ((r = dup_string_member(o, "id", &u->id)) < 0 || (r = dup_string_member(o, "email", &u->email)) < 0 ||
            (r = dup_string_member(o, "display_name", &u->display_name)) < 0 ||
            (r = dup_string_member(o, "create_time", &u->create_time)) < 0 ||
            (r = dup_string_member(o, "path", &u->path)) < 0) {
                op_user_done(u);
                return r;
        }
        u->state = OP_USER_STATE_UNSPECIFIED;
        if (json_object_object_get_ex(o, "state", &v) && json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);

                if (strcmp(s, "ACTIVE") == 0)
                        u->state = OP_USER_STATE_ACTIVE;
                else if (strcmp(s, "SUSPENDED") == 0)
                        u->state = OP_USER_STATE_SUSPENDED;
        }
        return 0;
}

static int parse_success(UsersApiOperation op, json_object *j, UsersApiResult *res) {
        json_object *v;
        int r;

        if (!json_object_is_type(j, json_type_object))
                return -EBADMSG;

        if (op != USERS_API_LIST) {
                OpUser *u = mem_calloc(1, sizeof(*u));

                if (!u)
                        return -ENOMEM;
                r = user_parse(j, u);
                if (r < 0) {
                        mem_free(u);
                        return r;
                }
                res->user = u;
                return 0;
        }

        if (json_object_object_get_ex(j, "results", &v) && !json_object_is_type(v, json_type_null)) {
                size_t n;

                if (!json_object_is_type(v, json_type_array))
                        return -EBADMSG;
                n = json_object_array_length(v);
                if (n > LIMIT_DIRECTORY_USERS)
                        return -E2BIG;
                if (n > 0) {
                        res->users = mem_calloc(n, sizeof(OpUser));
                        if (!res->users)
                                return -ENOMEM;
                }
                for (size_t i = 0; i < n; i++) {
                        r = user_parse(json_object_array_get_idx(v, i), &res->users[res->n_users]);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0)
                                continue;   /* a non-object entry: skip it */
                        res->n_users++;
                }
        }
        if (json_object_object_get_ex(j, "next_page_token", &v) && json_object_is_type(v, json_type_string) &&
            json_object_get_string_len(v) > 0) {
                /* Cut at the NUL it would read as "" or a different page:
                 * "" restarts the listing, so paging would never end. */
                if (json_string_has_nul(v))
                        return -EBADMSG;
                res->next_page_token = mem_strdup(json_object_get_string(v));
                if (!res->next_page_token)
                        return -ENOMEM;
        }
        return 0;
}

/* Keeps the error body's "code" (as text) and "message", if it is JSON. */
static void parse_error_body(UsersApiResult *res, json_object *j) {
        json_object *v;

        if (!j || !json_object_is_type(j, json_type_object))
                return;
        if (json_object_object_get_ex(j, "code", &v)) {
                if (json_object_is_type(v, json_type_int)) {
                        char buf[32];

                        (void) snprintf(buf, sizeof(buf), "%" PRId64, json_object_get_int64(v));
                        res->api_code = mem_strdup(buf);
                } else if (json_object_is_type(v, json_type_string))
                        res->api_code = mem_strndup(json_object_get_string(v), USERS_API_MESSAGE_MAX);
        } else if (json_object_object_get_ex(j, "error", &v) && json_object_is_type(v, json_type_string))
                res->api_code = mem_strndup(json_object_get_string(v), USERS_API_MESSAGE_MAX);
        if (json_object_object_get_ex(j, "message", &v) && json_object_is_type(v, json_type_string))
                res->api_message = mem_strndup(json_object_get_string(v), USERS_API_MESSAGE_MAX);
}

static int status_to_errno(long status) {
        switch (status) {
        case 400:
                return -EINVAL;
        case 401:
                return -EACCES;
        case 403:
                return -EPERM;
        case 404:
                return -ENOENT;
        case 429:
                return -EBUSY;
        default:
                return -EREMOTEIO;
        }
}

int users_api_parse_response(UsersApiOperation op, long status, const char *body, size_t size,
                             UsersApiResult *res) {
        json_object *j = parse_json(body, size);

        res->body = j;
        if (status >= 200 && status < 300)
                return j ? parse_success(op, j, res) : -EBADMSG;
        parse_error_body(res, j);
        return status_to_errno(status);
}

static void on_response(HttpClient *http, const HttpResponse *resp, void *userdata) {
        UsersApiCall *c = userdata;
        UsersApi *api = c->api;
        int r;

        c->req = NULL;
        if (api->metrics)
                metrics_api_request(api->metrics, users_api_operation_to_string(c->op), resp->status, resp->seconds);
        result_reset_error(&c->result);

        if (resp->error < 0) {
                switch (resp->error) {
                case -ETIMEDOUT:
                case -ECONNREFUSED:
                case -ECONNRESET:
                case -EHOSTUNREACH:
                case -EIO:
                        call_retry_or_fail(c, resp->error, 0, 0);
                        return;
                case -E2BIG:
                case -EINVAL:
                        call_fail(c, resp->error, 0, /* transient= */ false);
                        return;
                default:
                        /* TLS trouble, OOM: not worth retrying right now, but
                         * nothing the caller did wrong either. */
                        call_fail(c, resp->error, 0, /* transient= */ true);
                        return;
                }
        }

        r = users_api_parse_response(c->op, resp->status, resp->body, resp->body_size, &c->result);
        if (resp->status >= 200 && resp->status < 300) {
                if (r == -EBADMSG) {
                        log_warning("users_api: %s answered HTTP %ld with a body that is not the expected JSON",
                                    users_api_operation_to_string(c->op), resp->status);
                        call_retry_or_fail(c, -EBADMSG, resp->status, 0);
                } else if (r < 0)
                        call_fail(c, r, resp->status, /* transient= */ r == -ENOMEM);
                else {
                        c->result.http_status = resp->status;
                        call_complete(c);
                }
                return;
        }

        if (resp->status == 401 && !c->retried_401) {
                c->retried_401 = true;
                log_trace(TRACE_OAUTH, "users_api: %s got HTTP 401, fetching a fresh token and retrying once",
                          users_api_operation_to_string(c->op));
                oauth_invalidate(api->oauth, c->generation);
                r = call_start(c);
                if (r < 0)
                        call_fail(c, r, 401, true);
                return;
        }
        if (resp->status == 401) {
                /* A fresh token was refused too: the application lost its
                 * access. Transient: an operator can fix it. */
                call_fail(c, -EACCES, 401, /* transient= */ true);
                return;
        }
        if (resp->status == 429 || resp->status >= 500) {
                call_retry_or_fail(c, r, resp->status, resp->retry_after_usec);
                return;
        }
        call_fail(c, r, resp->status, /* transient= */ false);
}

static int call_send(UsersApiCall *c, const char *token, uint64_t generation) {
        UsersApi *api = c->api;
        const char *headers[3] = {};
        _cleanup_free_ char *auth = NULL;
        HttpRequestParams p;
        size_t n;
        int r;

        n = strlen(token) + 32;
        auth = mem_malloc(n);
        if (!auth)
                return -ENOMEM;
        (void) snprintf(auth, n, "Authorization: Bearer %s", token);
        headers[0] = auth;
        headers[1] = "Accept: application/json";
        p = (HttpRequestParams) {
                .method = c->op == USERS_API_LIST || c->op == USERS_API_GET ? "GET" : "POST",
                .url = c->url,
                .headers = headers,
                .timeout_usec = c->settings->timeout_usec,
                .ca_file = c->settings->ca_file,
                .user_agent = c->settings->user_agent,
        };
        c->generation = generation;
        r = http_client_request(api->http, &p, on_response, c, &c->req);
        explicit_bzero(auth, strlen(auth));
        return r;
}

static void on_token(OAuth *o, int error, long status, const char *token, uint64_t generation, void *userdata) {
        UsersApiCall *c = userdata;
        int r;

        c->token_waiter = NULL;
        if (error == -EKEYREJECTED) {
                /* Bad client credentials: retrying in memory will not help. */
                call_fail(c, error, status, /* transient= */ true);
                return;
        }
        if (error < 0) {
                call_retry_or_fail(c, error, 0, 0);
                return;
        }
        r = call_send(c, token, generation);
        if (r < 0)
                call_fail(c, r, 0, /* transient= */ true);
}

static int call_start(UsersApiCall *c) {
        const char *token;
        uint64_t gen;
        int r;

        c->result.attempts++;
        r = oauth_token(c->api->oauth, on_token, c, &token, &gen, &c->token_waiter);
        if (r < 0)
                return r;
        if (r == 0)
                return 0;
        return call_send(c, token, gen);
}

static int build_url(const ApiSettings *s, UsersApiOperation op, const char *user_id, const char *filter,
                     unsigned max_page_size, const char *page_token, char **ret) {
        StrBuf b;
        char sep = '?';
        int r;

        strbuf_init(&b, USERS_API_URL_MAX);
        r = strbuf_printf(&b, "%s/%s/accounts/", s->base_url, s->api_version == API_VERSION_V1 ? "v1" : "v1beta1");
        if (r >= 0)
                r = strbuf_append_urlencoded(&b, s->account_id);
        if (r >= 0)
                r = strbuf_puts(&b, "/users");
        if (r >= 0 && user_id) {
                r = strbuf_puts(&b, "/");
                if (r >= 0)
                        r = strbuf_append_urlencoded(&b, user_id);
                /* The action colon is literal, not %3A. */
                if (r >= 0 && op == USERS_API_SUSPEND)
                        r = strbuf_puts(&b, ":suspend");
                if (r >= 0 && op == USERS_API_REACTIVATE)
                        r = strbuf_puts(&b, ":reactivate");
        }
        if (r >= 0 && filter && *filter) {
                r = strbuf_printf(&b, "%cfilter=", sep);
                sep = '&';
                if (r >= 0)
                        r = strbuf_append_urlencoded(&b, filter);
        }
        if (r >= 0 && max_page_size > 0) {
                r = strbuf_printf(&b, "%cmax_page_size=%u", sep, max_page_size);
                sep = '&';
        }
        if (r >= 0 && page_token && *page_token) {
                r = strbuf_printf(&b, "%cpage_token=", sep);
                if (r >= 0)
                        r = strbuf_append_urlencoded(&b, page_token);
        }
        if (r < 0) {
                strbuf_free(&b);
                return r;
        }
        *ret = strbuf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static int call_new(UsersApi *api, UsersApiOperation op, const char *user_id, const char *filter,
                    unsigned max_page_size, const char *page_token, const UsersApiCallOptions *opts,
                    UsersApiCallback cb, void *userdata) {
        UsersApiCall *c;
        int r;

        if (!api || api->dead || !cb)
                return -EINVAL;
        if (op != USERS_API_LIST && (!user_id || *user_id == 0))
                return -EINVAL;

        c = mem_calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->op = op;
        c->cb = cb;
        c->userdata = userdata;
        c->settings = api->settings;
        c->settings->n_ref++;
        c->max_attempts = opts && opts->max_attempts > 0 ? opts->max_attempts : USERS_API_DEFAULT_ATTEMPTS;
        if (c->max_attempts > LIMIT_API_RETRIES)
                c->max_attempts = LIMIT_API_RETRIES;
        r = build_url(c->settings, op, user_id, filter, max_page_size, page_token, &c->url);
        if (r < 0) {
                call_free(c);
                return r;
        }
        c->api = api;
        LIST_APPEND(&api->active, c);
        r = call_start(c);
        if (r < 0) {
                LIST_REMOVE(&api->active, c);
                call_free(c);
                return r;
        }
        return 0;
}

int users_api_list(UsersApi *api, const char *filter, unsigned max_page_size, const char *page_token,
                   const UsersApiCallOptions *opts, UsersApiCallback cb, void *userdata) {
        return call_new(api, USERS_API_LIST, NULL, filter, max_page_size, page_token, opts, cb, userdata);
}

int users_api_get(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts, UsersApiCallback cb,
                  void *userdata) {
        return call_new(api, USERS_API_GET, user_id, NULL, 0, NULL, opts, cb, userdata);
}

int users_api_suspend(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts, UsersApiCallback cb,
                      void *userdata) {
        return call_new(api, USERS_API_SUSPEND, user_id, NULL, 0, NULL, opts, cb, userdata);
}

int users_api_reactivate(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts,
                         UsersApiCallback cb, void *userdata) {
        return call_new(api, USERS_API_REACTIVATE, user_id, NULL, 0, NULL, opts, cb, userdata);
}

int users_api_new(sd_event *e, const Config *c, Metrics *m, UsersApi **ret) {
        UsersApi *api;
        OAuthSettings os;
        int r;

        if (!e || !c || !ret)
                return -EINVAL;
        api = mem_calloc(1, sizeof(*api));
        if (!api)
                return -ENOMEM;
        api->event = sd_event_ref(e);
        api->metrics = m;
        r = settings_new(c, &api->settings);
        if (r >= 0)
                r = http_client_new(e, &api->http);
        if (r >= 0) {
                os = oauth_settings(c, api->settings);
                r = oauth_new(e, api->http, m, &os, &api->oauth);
        }
        if (r >= 0)
                r = sd_event_add_defer(e, &api->defer, on_defer, api);
        if (r >= 0) {
                (void) sd_event_source_set_description(api->defer, "users-api-done");
                r = sd_event_source_set_enabled(api->defer, SD_EVENT_OFF);
        }
        if (r < 0) {
                really_free(api);
                return r;
        }
        *ret = api;
        return 0;
}

UsersApi *users_api_free(UsersApi *api) {
        if (!api)
                return NULL;
        if (api->dispatching) {
                api->dead = true;
                return NULL;
        }
        really_free(api);
        return NULL;
}

int users_api_reconfigure(UsersApi *api, const Config *c) {
        ApiSettings *s;
        OAuthSettings os;
        int r;

        if (!api || !c)
                return -EINVAL;
        r = settings_new(c, &s);
        if (r < 0)
                return r;
        os = oauth_settings(c, s);
        r = oauth_reconfigure(api->oauth, &os);
        if (r < 0) {
                settings_unref(s);
                return r;
        }
        settings_unref(api->settings);
        api->settings = s;
        return 0;
}

void users_api_token_state(UsersApi *api, UsersApiTokenState *ret) {
        OAuthState s;

        *ret = (UsersApiTokenState) {};
        if (!api)
                return;
        oauth_state(api->oauth, &s);
        ret->valid = s.valid;
        ret->expires_in_seconds = s.expires_in_seconds;
        ret->last_request_ok = s.last_request_ok;
        if (s.last_error[0])
                (void) snprintf(ret->last_error, sizeof(ret->last_error), "%s", s.last_error);
        else if (!s.ever_requested)
                (void) snprintf(ret->last_error, sizeof(ret->last_error), "no token requested yet");
}

int users_api_revoke(UsersApi *api, void (*done)(void *userdata), void *userdata) {
        if (!api)
                return -EINVAL;
        return oauth_revoke(api->oauth, done, userdata);
}

size_t users_api_cancel(UsersApi *api, void *userdata) {
        size_t n = 0;

        if (!api)
                return 0;
        for (CallList *l = &api->active; l; l = l == &api->active ? &api->done : NULL) {
                UsersApiCall *c = l->head;

                while (c) {
                        UsersApiCall *next = c->next;

                        if (c->userdata == userdata) {
                                LIST_REMOVE(l, c);
                                call_free(c);
                                n++;
                        }
                        c = next;
                }
        }
        return n;
}

size_t users_api_pending(UsersApi *api) {
        size_t n = 0;

        if (!api)
                return 0;
        for (UsersApiCall *c = api->active.head; c; c = c->next)
                n++;
        for (UsersApiCall *c = api->done.head; c; c = c->next)
                n++;
        return n;
}

bool users_api_user_has_email(json_object *user, const char *want) {
        json_object *v;
        const char *e;
        size_t wl = strlen(want), el;

        if (!json_object_object_get_ex(user, "email", &v) || !json_object_is_type(v, json_type_string) ||
            json_string_has_nul(v))
                return false;
        e = json_object_get_string(v);
        while (*e == ' ' || *e == '\t')
                e++;
        el = strlen(e);
        while (el > 0 && (e[el - 1] == ' ' || e[el - 1] == '\t'))
                el--;
        return el == wl && strncasecmp(e, want, wl) == 0;
}

int users_api_page_collect(const UsersApiResult *res, const char *want, json_object *into, size_t max) {
        json_object *results;

        if (!res->body || !json_object_object_get_ex(res->body, "results", &results) ||
            !json_object_is_type(results, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(results); i++) {
                json_object *u = json_object_array_get_idx(results, i);

                if (!json_object_is_type(u, json_type_object))
                        continue;
                if (want && !users_api_user_has_email(u, want))
                        continue;
                if (json_object_array_length(into) >= max)
                        return -E2BIG;
                if (json_object_array_add(into, json_object_get(u)) < 0) {
                        json_object_put(u);
                        return -ENOMEM;
                }
        }
        return 0;
}
