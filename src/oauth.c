/* OAuth 2.0 client-credentials token cache: see include/oauth.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/evp.h>
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
#include "util.h"

#define OAUTH_RESPONSE_MAX_BYTES (64u * 1024u)
#define OAUTH_REFRESH_BEFORE_USEC (60ULL * USEC_PER_SEC)

typedef struct OAuthWaiter OAuthWaiter;
struct OAuthWaiter {
        OAuthWaiter *prev, *next;
        OAuthCallback cb;
        void *userdata;
};

typedef struct WaiterList {
        OAuthWaiter *head, *tail;
} WaiterList;

struct OAuth {
        sd_event *event;
        HttpClient *http;
        Metrics *metrics;

        char *base_url;
        ApiVersion api_version;
        char *client_id;
        char *client_secret;
        char *user_agent;
        char *ca_file;
        uint64_t timeout_usec;

        char *token;
        uint64_t generation;
        uint64_t expires_at;    /* CLOCK_MONOTONIC */
        uint64_t refresh_at;
        uint64_t margin_usec;   /* a stale token is still used this long before expiry */

        HttpRequest *fetch;
        uint64_t backoff_until;
        unsigned failures_in_row;
        sd_event_source *timer; /* proactive refresh, or the end of a backoff */

        WaiterList waiters;
        WaiterList firing;      /* waiters being called back */

        HttpRequest *revoke;
        sd_event_source *revoke_defer;
        void (*revoke_done)(void *userdata);
        void *revoke_userdata;

        bool ever_requested;
        bool last_request_ok;
        char last_error[256];
        uint64_t refreshes, failures;
};

static void free_erase(char **s) {
        if (*s) {
                explicit_bzero(*s, strlen(*s));
                mem_free(*s);
                *s = NULL;
        }
}

static void token_forget(OAuth *o) {
        free_erase(&o->token);
        o->generation++;
        o->expires_at = o->refresh_at = 0;
}

static const char *token_path(ApiVersion v) {
        return v == API_VERSION_V1 ? "/v1/oauth/token" : "/v1beta1/users/oauth2/token";
}

static const char *revoke_path(ApiVersion v) {
        return v == API_VERSION_V1 ? "/v1/oauth/revoke" : "/v1beta1/users/oauth2/revoke";
}

static void set_error(OAuth *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(OAuth *o, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(o->last_error, sizeof(o->last_error), fmt, ap);
        va_end(ap);
}

/* "Authorization: Basic base64(id:secret)"; caller wipes and frees. */
static int basic_header(OAuth *o, char **ret) {
        size_t il = strlen(o->client_id), sl = strlen(o->client_secret), n = il + 1 + sl;
        static const char prefix[] = "Authorization: Basic ";
        _cleanup_free_ char *plain = NULL;
        char *h;

        if (n > 8192)
                return -E2BIG;
        plain = mem_malloc(n);
        h = mem_malloc(sizeof(prefix) + 4 * ((n + 2) / 3) + 1);
        if (!plain || !h) {
                mem_free(h);
                return -ENOMEM;
        }
        memcpy(plain, o->client_id, il);
        plain[il] = ':';
        memcpy(plain + il + 1, o->client_secret, sl);
        memcpy(h, prefix, sizeof(prefix) - 1);
        (void) EVP_EncodeBlock((unsigned char *) h + sizeof(prefix) - 1, (const unsigned char *) plain, (int) n);
        explicit_bzero(plain, n);
        *ret = h;
        return 0;
}

static int url_join(const char *base, const char *path, char **ret) {
        size_t bl = strlen(base), pl = strlen(path);
        char *u = mem_malloc(bl + pl + 1);

        if (!u)
                return -ENOMEM;
        memcpy(u, base, bl);
        memcpy(u + bl, path, pl + 1);
        *ret = u;
        return 0;
}

static void on_fetch_done(HttpClient *c, const HttpResponse *resp, void *userdata);
static void schedule_timer(OAuth *o);

static void fire_waiters(OAuth *o, int error, long status) {
        /* Waiters may queue new waits (they join o->waiters and wait for
         * the next fetch) or cancel others (looked up in o->firing). */
        o->firing = o->waiters;
        o->waiters = (WaiterList) {};
        while (o->firing.head) {
                OAuthWaiter *w = o->firing.head;

                LIST_REMOVE(&o->firing, w);
                w->cb(o, error, status, error < 0 ? NULL : o->token, o->generation, w->userdata);
                mem_free(w);
        }
}

static int fetch_start(OAuth *o) {
        const char *headers[4] = {};
        _cleanup_free_ char *url = NULL;
        char *auth = NULL;
        static const char body[] = "grant_type=client_credentials";
        HttpRequestParams p;
        int r;

        if (o->fetch)
                return 0;
        if (!o->client_id || !o->client_secret)
                return -ENOKEY;
        r = url_join(o->base_url, token_path(o->api_version), &url);
        if (r < 0)
                return r;
        r = basic_header(o, &auth);
        if (r < 0)
                return r;
        headers[0] = auth;
        headers[1] = "Content-Type: application/x-www-form-urlencoded";
        headers[2] = "Accept: application/json";
        p = (HttpRequestParams) {
                .method = "POST",
                .url = url,
                .headers = headers,
                .body = body,
                .body_size = sizeof(body) - 1,
                .timeout_usec = o->timeout_usec,
                .ca_file = o->ca_file,
                .user_agent = o->user_agent,
                .max_response_bytes = OAUTH_RESPONSE_MAX_BYTES,
        };
        r = http_client_request(o->http, &p, on_fetch_done, o, &o->fetch);
        free_erase(&auth);
        if (r < 0)
                return r;
        o->ever_requested = true;
        log_trace(TRACE_OAUTH, "oauth: token request sent");
        return 0;
}

static void fetch_failed(OAuth *o, int error, long status) {
        uint64_t d;

        o->failures++;
        o->failures_in_row++;
        o->last_request_ok = false;
        if (o->metrics)
                metrics_token_refresh(o->metrics, "failure");
        d = http_client_backoff_usec(o->failures_in_row, OAUTH_BACKOFF_MIN_USEC, OAUTH_BACKOFF_MAX_USEC);
        o->backoff_until = now_usec(CLOCK_MONOTONIC) + d;
        log_trace(TRACE_OAUTH, "oauth: next token request in %.1fs at the earliest", (double) d / 1e6);
        schedule_timer(o);
        fire_waiters(o, error, status);
}

int oauth_parse_token(const char *body, size_t size, char **ret_token, uint64_t *ret_lifetime_sec) {
        _cleanup_(json_object_putp) json_object *j = NULL;
        json_tokener *tok;
        json_object *v;
        const char *t;
        int64_t life = OAUTH_DEFAULT_LIFETIME_SEC;
        char *copy;

        if (size > INT32_MAX)
                return -EBADMSG;
        tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        j = json_tokener_parse_ex(tok, body, (int) size);
        if (j && json_tokener_get_error(tok) != json_tokener_success)
                json_object_put(TAKE_PTR(j));
        json_tokener_free(tok);
        if (!j || !json_object_is_type(j, json_type_object))
                return -EBADMSG;

        if (!json_object_object_get_ex(j, "access_token", &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        t = json_object_get_string(v);
        if (!t || *t == 0 || strlen(t) > OAUTH_TOKEN_MAX_BYTES || strpbrk(t, "\r\n") ||
            strlen(t) != (size_t) json_object_get_string_len(v))
                return -EBADMSG;      /* ... or a NUL inside, which would cut it short */
        if (json_object_object_get_ex(j, "token_type", &v) &&
            (!json_object_is_type(v, json_type_string) || strcasecmp(json_object_get_string(v), "bearer") != 0))
                return -EBADMSG;
        if (json_object_object_get_ex(j, "expires_in", &v) && !json_object_is_type(v, json_type_null)) {
                if (json_object_is_type(v, json_type_int))
                        life = json_object_get_int64(v);
                else if (json_object_is_type(v, json_type_string)) {
                        char *end;

                        errno = 0;
                        life = strtoll(json_object_get_string(v), &end, 10);
                        if (errno != 0 || *end != 0)
                                return -EBADMSG;
                } else
                        return -EBADMSG;
        }
        if (life < 1)
                life = 1;
        if (life > 86400 * 30)
                life = 86400 * 30;
        copy = mem_strdup(t);
        if (!copy)
                return -ENOMEM;
        *ret_token = copy;
        *ret_lifetime_sec = (uint64_t) life;
        return 0;
}

static void on_fetch_done(HttpClient *c, const HttpResponse *resp, void *userdata) {
        OAuth *o = userdata;
        char *token = NULL;
        uint64_t life, now, life_usec, at80, before;
        int r;

        o->fetch = NULL;
        if (o->metrics)
                metrics_api_request(o->metrics, "token", resp->status, resp->seconds);

        if (resp->error < 0) {
                set_error(o, "token request failed: %s", strerror(-resp->error));
                log_warning_errno(resp->error, "oauth: token request failed: %m");
                fetch_failed(o, resp->error, 0);
                return;
        }
        if (resp->status != 200) {
                r = resp->status == 400 || resp->status == 401 || resp->status == 403 ? -EKEYREJECTED : -EREMOTEIO;
                if (r == -EKEYREJECTED)
                        set_error(o, "1Password rejected the client credentials (HTTP %ld)", resp->status);
                else
                        set_error(o, "token endpoint answered HTTP %ld", resp->status);
                /* The body is untrusted and may be large: at most 200 bytes;
                 * the log escapes it and redacts registered secrets. */
                log_warning("oauth: token request failed with HTTP %ld: %.200s", resp->status, resp->body);
                fetch_failed(o, r, resp->status);
                return;
        }
        r = oauth_parse_token(resp->body, resp->body_size, &token, &life);
        if (r < 0) {
                set_error(o, "token endpoint answered 200 without a usable bearer token");
                log_warning_errno(r, "oauth: token response unusable (no access_token, or token_type not bearer)");
                fetch_failed(o, r, resp->status);
                return;
        }

        (void) log_register_secret(token);
        free_erase(&o->token);
        o->token = token;
        o->generation++;
        now = now_usec(CLOCK_MONOTONIC);
        life_usec = life * USEC_PER_SEC;
        at80 = life_usec / 5 * 4;
        before = life_usec > OAUTH_REFRESH_BEFORE_USEC ? life_usec - OAUTH_REFRESH_BEFORE_USEC : 0;
        o->expires_at = now + life_usec;
        o->refresh_at = now + (at80 > before ? at80 : before);
        o->margin_usec = life_usec / 10 < 5 * USEC_PER_SEC ? life_usec / 10 : 5 * USEC_PER_SEC;
        o->failures_in_row = 0;
        o->backoff_until = 0;
        o->last_request_ok = true;
        o->last_error[0] = 0;
        o->refreshes++;
        if (o->metrics)
                metrics_token_refresh(o->metrics, "success");
        log_trace(TRACE_OAUTH, "oauth: token received, lifetime %" PRIu64 "s", life);
        schedule_timer(o);
        fire_waiters(o, 0, resp->status);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        OAuth *o = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        int r;

        if (o->fetch)
                return 0;
        if (!o->waiters.head && !(o->token && now < o->expires_at))
                return 0;   /* nobody needs a token: fetch lazily */
        if (now < o->backoff_until) {
                schedule_timer(o);
                return 0;
        }
        r = fetch_start(o);
        if (r < 0) {
                set_error(o, "cannot start a token request: %s", strerror(-r));
                fetch_failed(o, r, 0);
        }
        return 0;
}

static void schedule_timer(OAuth *o) {
        uint64_t at;
        int r;

        if (o->backoff_until > 0)
                at = o->backoff_until;
        else if (o->token)
                at = o->refresh_at;
        else {
                if (o->timer)
                        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
                return;
        }
        if (o->timer) {
                r = sd_event_source_set_time(o->timer, at);
                if (r >= 0)
                        r = sd_event_source_set_enabled(o->timer, SD_EVENT_ONESHOT);
        } else {
                r = sd_event_add_time(o->event, &o->timer, CLOCK_MONOTONIC, at, /* accuracy= */ 1000, on_timer, o);
                if (r >= 0)
                        (void) sd_event_source_set_description(o->timer, "oauth-refresh");
        }
        if (r < 0)
                log_warning_errno(r, "oauth: cannot arm the refresh timer, refreshing on demand: %m");
}

int oauth_token(OAuth *o, OAuthCallback cb, void *userdata, const char **ret_token, uint64_t *ret_generation,
                void **ret_waiter) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        OAuthWaiter *w;
        int r;

        if (!o || !cb)
                return -EINVAL;
        if (o->token && now < o->refresh_at) {
                *ret_token = o->token;
                *ret_generation = o->generation;
                return 1;
        }
        if (o->token && now + o->margin_usec < o->expires_at) {
                /* Stale but unexpired: use it while a refresh runs. */
                if (!o->fetch && now >= o->backoff_until) {
                        r = fetch_start(o);
                        if (r < 0)
                                log_warning_errno(r, "oauth: cannot start a token refresh, ignoring: %m");
                }
                *ret_token = o->token;
                *ret_generation = o->generation;
                return 1;
        }

        w = mem_calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        if (!o->fetch && now >= o->backoff_until) {
                r = fetch_start(o);
                if (r < 0) {
                        mem_free(w);
                        return r;
                }
        } else if (!o->fetch)
                schedule_timer(o);
        w->cb = cb;
        w->userdata = userdata;
        LIST_APPEND(&o->waiters, w);
        if (ret_waiter)
                *ret_waiter = w;
        return 0;
}

void oauth_cancel(OAuth *o, void *waiter) {
        OAuthWaiter *w = waiter;

        if (!o || !w)
                return;
        if (LIST_CONTAINS(&o->waiters, w))
                LIST_REMOVE(&o->waiters, w);
        else if (LIST_CONTAINS(&o->firing, w))
                LIST_REMOVE(&o->firing, w);
        else
                return;
        mem_free(w);
}

void oauth_invalidate(OAuth *o, uint64_t generation) {
        if (!o || !o->token || o->generation != generation)
                return;
        log_trace(TRACE_OAUTH, "oauth: token rejected by the API, discarding it");
        token_forget(o);
        schedule_timer(o);
}

static int settings_copy(OAuth *o, const OAuthSettings *s) {
        _cleanup_free_ char *base = NULL, *ua = NULL, *ca = NULL;
        char *id = NULL, *secret = NULL;

        if (!s || !s->base_url)
                return -EINVAL;
        base = mem_strdup(s->base_url);
        if (s->user_agent)
                ua = mem_strdup(s->user_agent);
        if (s->ca_file)
                ca = mem_strdup(s->ca_file);
        if (s->client_id)
                id = mem_strdup(s->client_id);
        if (s->client_secret)
                secret = mem_strdup(s->client_secret);
        if (!base || (s->user_agent && !ua) || (s->ca_file && !ca) || (s->client_id && !id) ||
            (s->client_secret && !secret)) {
                free_erase(&id);
                free_erase(&secret);
                return -ENOMEM;
        }
        if (secret)
                (void) log_register_secret_pinned(secret);

        mem_free(o->base_url);
        o->base_url = TAKE_PTR(base);
        mem_free(o->user_agent);
        o->user_agent = TAKE_PTR(ua);
        mem_free(o->ca_file);
        o->ca_file = TAKE_PTR(ca);
        free_erase(&o->client_id);
        o->client_id = id;
        free_erase(&o->client_secret);
        o->client_secret = secret;
        o->api_version = s->api_version;
        o->timeout_usec = s->timeout_usec;
        return 0;
}

static bool streq_null(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int oauth_reconfigure(OAuth *o, const OAuthSettings *s) {
        bool changed;
        int r;

        if (!o || !s)
                return -EINVAL;
        changed = !streq_null(o->base_url, s->base_url) || o->api_version != s->api_version ||
                  !streq_null(o->client_id, s->client_id) || !streq_null(o->client_secret, s->client_secret);
        r = settings_copy(o, s);
        if (r < 0)
                return r;
        if (changed) {
                token_forget(o);
                o->backoff_until = 0;
                o->failures_in_row = 0;
                schedule_timer(o);
        }
        return 0;
}

int oauth_new(sd_event *e, HttpClient *http, Metrics *m, const OAuthSettings *s, OAuth **ret) {
        OAuth *o;
        int r;

        if (!e || !http || !s || !ret)
                return -EINVAL;
        o = mem_calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->event = sd_event_ref(e);
        o->http = http;
        o->metrics = m;
        r = settings_copy(o, s);
        if (r < 0) {
                oauth_free(o);
                return r;
        }
        *ret = o;
        return 0;
}

OAuth *oauth_free(OAuth *o) {
        if (!o)
                return NULL;
        while (o->waiters.head) {
                OAuthWaiter *w = o->waiters.head;
                LIST_REMOVE(&o->waiters, w);
                mem_free(w);
        }
        while (o->firing.head) {
                OAuthWaiter *w = o->firing.head;
                LIST_REMOVE(&o->firing, w);
                mem_free(w);
        }
        o->fetch = http_client_cancel(o->http, o->fetch);
        o->revoke = http_client_cancel(o->http, o->revoke);
        o->timer = sd_event_source_disable_unref(o->timer);
        o->revoke_defer = sd_event_source_disable_unref(o->revoke_defer);
        free_erase(&o->token);
        free_erase(&o->client_id);
        free_erase(&o->client_secret);
        mem_free(o->base_url);
        mem_free(o->user_agent);
        mem_free(o->ca_file);
        sd_event_unref(o->event);
        mem_free(o);
        return NULL;
}

static void revoke_finish(OAuth *o) {
        void (*done)(void *) = o->revoke_done;
        void *ud = o->revoke_userdata;

        o->revoke_done = NULL;
        o->revoke_userdata = NULL;
        if (done)
                done(ud);
}

static void on_revoke_done(HttpClient *c, const HttpResponse *resp, void *userdata) {
        OAuth *o = userdata;

        o->revoke = NULL;
        if (o->metrics)
                metrics_api_request(o->metrics, "revoke", resp->status, resp->seconds);
        if (resp->error < 0)
                log_warning_errno(resp->error, "oauth: token revocation failed: %m");
        else if (resp->status != 200)
                log_warning("oauth: token revocation answered HTTP %ld", resp->status);
        else
                log_trace(TRACE_OAUTH, "oauth: token revoked");
        revoke_finish(o);
}

static int on_revoke_defer(sd_event_source *s, void *userdata) {
        OAuth *o = userdata;

        o->revoke_defer = sd_event_source_disable_unref(o->revoke_defer);
        revoke_finish(o);
        return 0;
}

int oauth_revoke(OAuth *o, void (*done)(void *userdata), void *userdata) {
        const char *headers[3] = {};
        _cleanup_free_ char *url = NULL;
        char *auth = NULL;
        StrBuf body;
        HttpRequestParams p;
        int r;

        if (!o || o->revoke || o->revoke_defer)
                return -EBUSY;
        o->revoke_done = done;
        o->revoke_userdata = userdata;
        o->timer = sd_event_source_disable_unref(o->timer);

        if (!o->token || !o->client_id || !o->client_secret) {
                r = sd_event_add_defer(o->event, &o->revoke_defer, on_revoke_defer, o);
                if (r < 0)
                        o->revoke_done = NULL;
                return r;
        }

        strbuf_init(&body, OAUTH_TOKEN_MAX_BYTES * 3 + 16);
        r = strbuf_puts(&body, "token=");
        if (r >= 0)
                r = strbuf_append_urlencoded(&body, o->token);
        if (r >= 0)
                r = url_join(o->base_url, revoke_path(o->api_version), &url);
        if (r >= 0)
                r = basic_header(o, &auth);
        if (r >= 0) {
                headers[0] = auth;
                headers[1] = "Content-Type: application/x-www-form-urlencoded";
                p = (HttpRequestParams) {
                        .method = "POST",
                        .url = url,
                        .headers = headers,
                        .body = body.data,
                        .body_size = body.len,
                        .timeout_usec = o->timeout_usec,
                        .ca_file = o->ca_file,
                        .user_agent = o->user_agent,
                        .max_response_bytes = OAUTH_RESPONSE_MAX_BYTES,
                };
                r = http_client_request(o->http, &p, on_revoke_done, o, &o->revoke);
        }
        free_erase(&auth);
        if (body.data)
                explicit_bzero(body.data, body.len);
        strbuf_free(&body);
        if (r < 0) {
                o->revoke_done = NULL;
                return r;
        }
        token_forget(o);
        return 0;
}

void oauth_state(OAuth *o, OAuthState *ret) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        *ret = (OAuthState) {};
        if (!o)
                return;
        ret->valid = o->token && now < o->expires_at;
        ret->expires_in_seconds = ret->valid ? (int64_t) ((o->expires_at - now) / USEC_PER_SEC) : 0;
        ret->last_request_ok = o->last_request_ok;
        ret->ever_requested = o->ever_requested;
        (void) snprintf(ret->last_error, sizeof(ret->last_error), "%s", o->last_error);
        ret->refreshes = o->refreshes;
        ret->failures = o->failures;
}
