/* The webhook listener: POST /hooks/{source} to a committed event (see
 * webhook.h and docs/internals/webhook.md). It reads the daemon only
 * through WebhookDeps. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "directory.h"
#include "executor.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "safety.h"
#include "store.h"
#include "strbuf.h"
#include "utf8.h"
#include "util.h"
#include "webhook.h"

#define HOOKS_PREFIX "/hooks/"
#define OKTA_CHALLENGE_HEADER "X-Okta-Verification-Challenge"
#define STORE_RETRY_AFTER "5"

typedef struct Limiter {
        char *source;
        RateLimit bucket;
} Limiter;

typedef struct Pending Pending;

struct Webhook {
        WebhookDeps deps;
        HttpServer *server;
        Limiter *limiters;
        size_t n_limiters;
        bool stopping;
        Pending *pending;     /* events handed to the store */
        unsigned n_pending;
        json_tokener *tok;    /* parse_body()'s, kept: two allocations and
                               * a zeroed 64-level stack per event less */
};

/* One event handed to the store: outlives the request if the client or
 * the listener goes away before the commit is reported. */
struct Pending {
        Webhook *webhook;     /* NULL once the webhook is freed */
        HttpServerRequest *req; /* NULL once the request is over */
        Pending *prev, *next;
};

/* Per request, allocated once the cheap checks passed. */
typedef struct WebhookRequest {
        Webhook *webhook;
        char *source;
        Pending *pending;
} WebhookRequest;

static const Config *config(const Webhook *w) {
        return w->deps.config(w->deps.userdata);
}

static void pending_unlink(Pending *p) {
        Webhook *w = p->webhook;

        if (!w)
                return;
        if (p->prev)
                p->prev->next = p->next;
        else
                w->pending = p->next;
        if (p->next)
                p->next->prev = p->prev;
        p->prev = p->next = NULL;
        w->n_pending--;
        p->webhook = NULL;
}

static void webhook_request_free(void *p) {
        WebhookRequest *wr = p;

        if (!wr)
                return;
        if (wr->pending)
                wr->pending->req = NULL;
        mem_free(wr->source);
        mem_free(wr);
}

/* "/hooks/NAME" -> NAME (borrowed), or NULL. */
static const char *path_source_name(const char *path) {
        const char *name;

        if (!path || !str_startswith(path, HOOKS_PREFIX))
                return NULL;
        name = path + strlen(HOOKS_PREFIX);
        if (!*name || strchr(name, '/') || strlen(name) > LIMIT_NAME_BYTES)
                return NULL;
        return name;
}

static const Source *request_source(Webhook *w, HttpServerRequest *req) {
        const char *name = path_source_name(http_server_request_path(req));

        const Config *c = config(w);

        if (!name || !c)
                return NULL;
        return config_find_source(c, name);
}

static bool content_type_is_json(const char *v) {
        size_t n;

        if (!v)
                return true; /* absent is accepted (contract section 4) */
        while (*v == ' ' || *v == '\t')
                v++;
        n = strcspn(v, ";");
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
        if (n == strlen("application/json") && strncasecmp(v, "application/json", n) == 0)
                return true;
        /* application/cloudevents+json and friends */
        return n > strlen("application/+json") && strncasecmp(v, "application/", strlen("application/")) == 0 &&
                strncasecmp(v + n - strlen("+json"), "+json", strlen("+json")) == 0;
}

static const char *header_lookup(void *userdata, const char *name) {
        return http_server_request_header(userdata, name);
}

/* Authenticates the request on its raw bytes. 0, -EACCES, -ENOMEM. */
static int request_authenticate(HttpServerRequest *req, const Source *src) {
        _cleanup_free_ char *subject = NULL;
        AuthRequest ar = {
                .header = header_lookup,
                .userdata = req,
                .now_usec = now_usec(CLOCK_REALTIME),
        };
        int r;

        ar.body = http_server_request_body(req, &ar.body_len);
        if (src->auth.method == AUTH_MTLS) {
                r = http_server_request_client_cert(req, &subject);
                if (r == -ENOMEM)
                        return r;
                ar.client_cert_verified = r >= 0;
                ar.client_cert_subject = subject;
        }
        r = auth_check(&src->auth, &ar);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -EACCES;
        return 0;
}

static Limiter *limiter_find(Webhook *w, const char *source) {
        for (size_t i = 0; i < w->n_limiters; i++)
                if (strcmp(w->limiters[i].source, source) == 0)
                        return &w->limiters[i];
        return NULL;
}

static void limiters_free(Limiter *l, size_t n) {
        for (size_t i = 0; i < n; i++)
                mem_free(l[i].source);
        mem_free(l);
}

static int respond_error(HttpServerRequest *req, unsigned status, const char *code, const char *message) {
        return http_server_respond_json_error(req, status, code, message);
}

static int respond_method_not_allowed(HttpServerRequest *req) {
        int r;

        r = http_server_request_add_header(req, MHD_HTTP_HEADER_ALLOW, "POST");
        if (r < 0)
                return r;
        return respond_error(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                             "Webhooks are delivered with POST.");
}

static int respond_unauthorized(HttpServerRequest *req) {
        return respond_error(req, MHD_HTTP_UNAUTHORIZED, "unauthorized", "Authentication failed.");
}

/* GET /hooks/NAME with the Okta one-time verification challenge. */
static int okta_challenge(HttpServerRequest *req, const Source *src) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *challenge;
        json_object *v;
        int r;

        challenge = http_server_request_header(req, OKTA_CHALLENGE_HEADER);
        if (!src->okta_verification || !challenge)
                return respond_method_not_allowed(req);
        r = request_authenticate(req, src);
        if (r == -EACCES)
                return respond_unauthorized(req);
        if (r < 0)
                return r;
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        v = json_object_new_string(challenge);
        if (!v || json_object_object_add(o, "verification", v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return http_server_respond_json(req, MHD_HTTP_OK, o);
}

static int on_headers(HttpServerRequest *req, void *userdata) {
        Webhook *w = userdata;
        const char *method = http_server_request_method(req);
        const Source *src;
        WebhookRequest *wr;

        if (w->stopping)
                return respond_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting_down",
                                     "The server is shutting down.");

        if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0)
                return respond_method_not_allowed(req);

        src = request_source(w, req);
        if (!src)
                return respond_error(req, MHD_HTTP_NOT_FOUND, "not_found", "No such webhook source.");

        if (strcmp(method, "GET") == 0)
                return okta_challenge(req, src);

        if (!content_type_is_json(http_server_request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
                return respond_error(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                                     "The body must be application/json.");

        http_server_request_set_body_limit(req, config(w)->listen.max_body_bytes);

        wr = mem_calloc(1, sizeof(*wr));
        if (!wr)
                return -ENOMEM;
        wr->webhook = w;
        wr->source = mem_strdup(src->name);
        if (!wr->source) {
                mem_free(wr);
                return -ENOMEM;
        }
        http_server_request_set_context(req, wr, webhook_request_free);
        return 0;
}

/* Bodies up to this size leave the kept tokener as it is. */
#define TOKENER_KEEP_BYTES (8u * 1024u)

/* Members of every object in the tree. */
static size_t tree_members(json_object *o) {
        size_t n = 0;

        if (json_object_is_type(o, json_type_object)) {
                json_object_object_foreach(o, k, v) {
                        (void) k;
                        n += 1 + tree_members(v);
                }
        } else if (json_object_is_type(o, json_type_array)) {
                size_t l = json_object_array_length(o);

                for (size_t i = 0; i < l; i++)
                        n += tree_members(json_object_array_get_idx(o, i));
        }
        return n;
}

/* json-c keeps the last of duplicate keys; a SIEM's own rules may have
 * read the first (RFC 8259 4: names SHOULD be unique, and what receivers
 * then do differs). Every colon outside a string and a comment ends a
 * member's name, so the parsed tree has fewer members than the text has
 * such colons exactly when some object repeats a key. Strings and comments
 * are skipped as json-c reads them ('...' strings and comments too, which
 * it takes outside strict mode), so that neither can hide a colon. */
static bool has_duplicate_keys(const char *body, size_t len, json_object *parsed) {
        size_t colons = 0;

        for (size_t i = 0; i < len; i++) {
                char c = body[i];

                if (c == '"' || c == '\'') {
                        /* To the closing quote: one not preceded by an odd
                         * run of backslashes. memchr() makes long strings
                         * cheap. */
                        for (;;) {
                                const char *q = memchr(body + i + 1, c, len - i - 1);
                                size_t bs = 0;

                                if (!q) {
                                        i = len;
                                        break;
                                }
                                i = (size_t) (q - body);
                                while (body[i - 1 - bs] == '\\')
                                        bs++;
                                if (bs % 2 == 0)
                                        break;
                        }
                } else if (c == '/' && i + 1 < len && body[i + 1] == '*') {
                        for (i += 2; i + 1 < len && !(body[i] == '*' && body[i + 1] == '/'); i++)
                                ;
                        i++;
                } else if (c == '/' && i + 1 < len && body[i + 1] == '/') {
                        while (i < len && body[i] != '\n')
                                i++;
                } else if (c == ':')
                        colons++;
        }
        return tree_members(parsed) != colons;
}

int webhook_parse_body(json_tokener *tok, const char *body, size_t len, json_object **ret) {
        _cleanup_(json_tokener_freep) json_tokener *own = NULL;
        enum json_tokener_error err;
        json_object *o;
        size_t end;

        /* json-c takes any bytes inside strings; what is not UTF-8 is not
         * JSON (RFC 8259 8.1), and alert text goes on to chat, mail and
         * the journal. */
        if (!utf8_is_valid(body, len))
                return -EILSEQ;
        if (len > INT32_MAX)
                return -E2BIG;
        if (!tok) {
                tok = own = json_tokener_new_ex(LIMIT_JSON_DEPTH);
                if (!tok)
                        return -ENOMEM;
        }
        json_tokener_reset(tok);
        o = json_tokener_parse_ex(tok, body, (int) len);
        err = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (!o || err != json_tokener_success) {
                json_object_put(o);
                return -EINVAL;
        }
        for (; end < len; end++)
                if (!strchr(" \t\r\n", body[end])) {
                        json_object_put(o);
                        return -EINVAL;
                }
        if (!json_object_is_type(o, json_type_object) || has_duplicate_keys(body, len, o)) {
                json_object_put(o);
                return -EINVAL;
        }
        *ret = o;
        return 0;
}

/* webhook_parse_body() with the webhook's kept tokener. */
static int parse_body(Webhook *w, const char *body, size_t len, json_object **ret) {
        int r;

        if (!w->tok) {
                w->tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
                if (!w->tok)
                        return -ENOMEM;
        }
        r = webhook_parse_body(w->tok, body, len, ret);
        if (len > TOKENER_KEEP_BYTES) {
                /* Its buffer has grown to the body's longest string: not
                 * kept for the life of the daemon. */
                json_tokener_free(w->tok);
                w->tok = NULL;
        }
        return r;
}

static int dedup_key(const Source *src, json_object *event, const char *body, size_t len, char **ret) {
        _cleanup_free_ char *value = NULL, *missing = NULL;
        uint8_t md[32];
        unsigned mdlen = 0;
        char hex[65];
        StrBuf b;
        int r;

        strbuf_init(&b, LIMIT_TEMPLATE_OUTPUT_BYTES + 8);
        if (src->event_id) {
                r = template_render(src->event_id, event, event, &value, &missing);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0 && value && *value) {
                        r = strbuf_printf(&b, "id:%s", value);
                        if (r < 0) {
                                strbuf_free(&b);
                                return r;
                        }
                        goto done;
                }
                /* A delivery without the id field falls back to the body. */
        }
        if (EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md))
                return -EIO;
        hex_encode(md, sizeof(md), hex);
        r = strbuf_printf(&b, "sha256:%s", hex);
        if (r < 0) {
                strbuf_free(&b);
                return r;
        }
done:
        *ret = strbuf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static char *strdup_or_null(const char *s, bool *oom) {
        char *c;

        if (!s)
                return NULL;
        c = mem_strdup(s);
        if (!c)
                *oom = true;
        return c;
}

/* Settles the pre-status of one action on the loop (store.h contract). */
static int action_from_hit(Webhook *w, const RuleHit *h, uint64_t now, uint64_t now_mono, bool preview,
                           StoreAction *a) {
        const WebhookDeps *d = &w->deps;
        DirectoryResult lookup = DIRECTORY_PENDING;
        const char *uid = NULL;
        bool oom = false;

        *a = (StoreAction) {
                .action = h->rule->action,
                .cooldown_usec = h->rule->cooldown_usec,
                .for_usec = h->rule->for_usec,
                .created_usec = now,
                .received_mono_usec = now_mono,
                .status = ACTION_STATUS_QUEUED,
        };
        a->rule = strdup_or_null(h->rule->name, &oom);
        a->user = strdup_or_null(h->user, &oom);
        a->reason = strdup_or_null(h->reason, &oom);
        if (oom)
                return -ENOMEM;

        if (!h->user) {
                a->status = ACTION_STATUS_UNRESOLVED;
                a->detail = strdup_or_null(h->missing ? h->missing : "user", &oom);
                return oom ? -ENOMEM : 0;
        }

        if (is_user_id(h->user))
                uid = h->user;
        else if (d->directory) {
                lookup = preview ? directory_peek(d->directory, h->user, &uid)
                                 : directory_lookup(d->directory, h->user, &uid);
                if (lookup != DIRECTORY_FOUND)
                        uid = NULL;
        }
        /* Without a directory, or while it cannot tell (pending), the
         * email is resolved when the action executes. */
        a->status = safety_pre_status(config(w), h->user, lookup, uid);
        if (uid) {
                a->user_id = strdup_or_null(uid, &oom);
                if (oom)
                        return -ENOMEM;
        }
        if (a->status != ACTION_STATUS_QUEUED)
                return 0;
        a->dry_run = d->dry_run(d->userdata) || h->rule->dry_run;
        return 0;
}

static int build_event(Webhook *w, const Source *src, const char *body, size_t len, uint64_t realtime,
                       uint64_t mono, bool preview, json_object *event, const RuleHits *hits, StoreEvent **ret) {
        StoreEvent *ev;
        int r;

        ev = mem_calloc(1, sizeof(*ev));
        if (!ev)
                return -ENOMEM;
        ev->received_usec = realtime;
        ev->received_mono_usec = mono;
        ev->source = mem_strdup(src->name);
        ev->body = mem_memdup(body, len + 1);
        ev->body_len = len;
        if (!ev->source || !ev->body) {
                r = -ENOMEM;
                goto fail;
        }
        r = dedup_key(src, event, body, len, &ev->dedup_key);
        if (r < 0)
                goto fail;

        if (hits->n > 0) {
                ev->actions = mem_calloc(hits->n, sizeof(StoreAction));
                if (!ev->actions) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        for (size_t i = 0; i < hits->n; i++) {
                ev->n_actions++;
                r = action_from_hit(w, &hits->hits[i], ev->received_usec, ev->received_mono_usec, preview,
                                    &ev->actions[i]);
                if (r < 0)
                        goto fail;
        }
        *ret = ev;
        return 0;
fail:
        store_event_free(ev);
        return r;
}

/* The answer to a delivery, written out: building it as json-c objects
 * took 20 allocations per event, a quarter of the loop's (perf probes on
 * malloc). {"event_id": ..., "duplicate": ..., "actions": [{"id", "rule",
 * "action", "user", "status"}, ...]}. */
static int event_response(const StoreEvent *ev, bool duplicate, bool preview, StrBuf *b) {
        int r;

        r = strbuf_puts(b, "{\"event_id\":");
        if (r >= 0)
                r = strbuf_append_json_string(b, ev->id[0] ? ev->id : NULL);
        if (r >= 0)
                r = strbuf_puts(b, duplicate ? ",\"duplicate\":true,\"actions\":[" :
                                               ",\"duplicate\":false,\"actions\":[");
        for (size_t i = 0; r >= 0 && i < ev->n_actions; i++) {
                const StoreAction *a = &ev->actions[i];
                const struct {
                        const char *key;
                        const char *value;
                } fields[] = {
                        { "{\"id\":", a->id },
                        { preview ? "{\"rule\":" : ",\"rule\":", a->rule },
                        { ",\"action\":", config_action_kind_to_string(a->action) },
                        { ",\"user\":", a->user },
                        { ",\"status\":", store_action_status_to_string(a->status) },
                        /* explain --live also says who and why */
                        { ",\"user_id\":", a->user_id },
                        { ",\"reason\":", a->reason },
                        { ",\"detail\":", a->detail },
                };
                size_t n = preview ? ELEMENTSOF(fields) : ELEMENTSOF(fields) - 3;

                if (i > 0)
                        r = strbuf_puts(b, ",");
                for (size_t j = preview ? 1 : 0; r >= 0 && j < n; j++) {
                        r = strbuf_puts(b, fields[j].key);
                        if (r >= 0)
                                r = strbuf_append_json_string(b, fields[j].value);
                }
                if (r >= 0)
                        r = strbuf_puts(b, "}");
        }
        if (r >= 0)
                r = strbuf_puts(b, "]}");
        return r;
}

static void log_accepted(const StoreEvent *ev) {
        if (ev->n_actions == 0) {
                LogContext ctx = { .event_id = ev->id };

                /* Debug: at thousands of events a second, one line per
                 * unmatched event would be the loudest thing in the
                 * journal (and 2-5 us of the loop per event); the event
                 * is in the store's history either way. */
                log_full(LOG_DEBUG, 0, &ctx, "accepted event from %s: no rule matched", ev->source);
                return;
        }
        for (size_t i = 0; i < ev->n_actions; i++) {
                const StoreAction *a = &ev->actions[i];
                LogContext ctx = {
                        .event_id = ev->id,
                        .rule = a->rule,
                        .action_id = a->id,
                        .user = a->user,
                };

                log_full(LOG_INFO, 0, &ctx, "accepted event from %s: %s %s: %s%s%s", ev->source,
                         config_action_kind_to_string(a->action), a->user ? a->user : "(unresolved)",
                         store_action_status_to_string(a->status), a->detail ? " " : "",
                         a->detail ? a->detail : "");
        }
}

static void on_committed(Store *s, int r, const StoreEvent *ev, bool duplicate, void *userdata) {
        Pending *p = userdata;
        Webhook *w = p->webhook;
        HttpServerRequest *req = p->req;
        bool queued = false;

        pending_unlink(p);
        if (req) {
                WebhookRequest *wr = http_server_request_get_context(req);

                if (wr)
                        wr->pending = NULL;
        }
        mem_free(p);

        if (r < 0) {
                if (w)
                        log_error_errno(r, "state store failed to record an event, answering 503: %m");
                if (req) {
                        /* Without the header the server still says 1. */
                        (void) http_server_request_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, STORE_RETRY_AFTER);
                        (void) respond_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "store_unavailable",
                                             "The event could not be recorded, try again later.");
                }
                return;
        }

        if (!duplicate) {
                for (size_t i = 0; i < ev->n_actions; i++) {
                        if (ev->actions[i].status == ACTION_STATUS_QUEUED)
                                queued = true;
                        if (w)
                                metrics_action(w->deps.metrics,
                                               config_action_kind_to_string(ev->actions[i].action),
                                               store_action_status_to_string(ev->actions[i].status));
                }
                log_accepted(ev);
        } else {
                LogContext ctx = { .event_id = ev->id };

                log_full(LOG_INFO, 0, &ctx, "duplicate delivery from %s, answering with the original actions",
                         ev->source);
        }

        if (req) {
                StrBuf b;

                strbuf_init(&b, LIMIT_WEBHOOK_RESPONSE_BYTES);
                r = event_response(ev, duplicate, false, &b);
                if (r < 0) {
                        strbuf_free(&b);
                        /* Committed all the same: the sender will retry and
                         * get the duplicate answer. */
                        (void) respond_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory",
                                             "The server is out of memory, try again later.");
                } else {
                        size_t len = b.len;

                        (void) http_server_respond_take(req, duplicate ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED,
                                                        "application/json", strbuf_steal(&b), len);
                }
        }

        if (queued && w && w->deps.executor)
                executor_kick(w->deps.executor);
}

static void count_rule_matches(Webhook *w, const RuleHits *hits) {
        const Rule *last = NULL;

        /* Hits of one rule are adjacent (rules are walked in order). */
        for (size_t i = 0; i < hits->n; i++) {
                if (hits->hits[i].rule == last)
                        continue;
                last = hits->hits[i].rule;
                metrics_rule_match(w->deps.metrics, last->name);
        }
}

/* From a delivery's body to the event the store gets: JSON, the rules,
 * the templates, the event id and dedup key, resolution through the
 * directory and the pre-status. The one path of a delivery and of
 * explain --live (preview: no rule-match metrics, and the directory is
 * peeked at without starting a refresh). -EILSEQ
 * (not UTF-8), -EINVAL (not a JSON object), -ENOBUFS (too many actions),
 * -ENOMEM, or the rules' errors (logged). */
static int event_from_body(Webhook *w, const Source *src, const char *body, size_t len, uint64_t realtime,
                           uint64_t mono, bool preview, StoreEvent **ret) {
        _cleanup_(json_object_putp) json_object *event = NULL;
        RuleHits hits = {};
        int r;

        r = parse_body(w, body, len, &event);
        if (r == -EILSEQ || r == -ENOMEM)
                return r;
        if (r < 0)
                return -EINVAL;

        r = rules_evaluate(config(w), src->name, event, &hits);
        if (r < 0) {
                if (r != -ENOMEM && r != -ENOBUFS)
                        log_warning_errno(r, "rules failed on an event from %s: %m", src->name);
                rule_hits_free(&hits);
                return r;
        }
        if (!preview)
                count_rule_matches(w, &hits);

        r = build_event(w, src, body, len, realtime, mono, preview, event, &hits, ret);
        rule_hits_free(&hits);
        return r;
}

int webhook_preview(Webhook *w, const char *source, const char *body, size_t len, char **ret_json,
                    size_t *ret_len, unsigned *ret_queued) {
        _cleanup_(strbuf_free) StrBuf b = { .max = LIMIT_WEBHOOK_RESPONSE_BYTES * 2 };
        StoreEvent *ev = NULL;
        const Config *c;
        const Source *src;
        bool duplicate = false;
        unsigned queued = 0;
        int r;

        if (!w || !source || !body || !ret_json)
                return -EINVAL;
        c = config(w);
        src = c ? config_find_source(c, source) : NULL;
        if (!src)
                return -ENOENT;
        if (len > c->listen.max_body_bytes)
                return -EMSGSIZE;
        r = event_from_body(w, src, body, len, now_usec(CLOCK_REALTIME), now_usec(CLOCK_MONOTONIC), true, &ev);
        if (r < 0)
                return r;
        r = store_preview_event(w->deps.store, ev, &duplicate);
        if (r < 0) {
                store_event_free(ev);
                return r;
        }
        for (size_t i = 0; !duplicate && i < ev->n_actions; i++)
                if (ev->actions[i].status == ACTION_STATUS_QUEUED)
                        queued++;
        r = event_response(ev, duplicate, true, &b);
        store_event_free(ev);
        if (r < 0)
                return r;
        *ret_len = b.len;
        *ret_json = strbuf_steal(&b);
        if (!*ret_json)
                return -ENOMEM;
        if (ret_queued)
                *ret_queued = queued;
        return 0;
}

static int on_request(HttpServerRequest *req, void *userdata) {
        Webhook *w = userdata;
        WebhookRequest *wr = http_server_request_get_context(req);
        const Config *c = config(w);
        StoreEvent *ev = NULL;
        const Source *src;
        const char *body;
        Limiter *l;
        uint64_t wait;
        size_t len;
        Pending *p;
        int r;

        if (!wr)
                return -EINVAL;
        if (w->stopping)
                return respond_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting_down",
                                     "The server is shutting down.");

        /* Looked up again: a reload may have happened while reading. */
        src = c ? config_find_source(c, wr->source) : NULL;
        if (!src)
                return respond_error(req, MHD_HTTP_NOT_FOUND, "not_found", "No such webhook source.");

        r = request_authenticate(req, src);
        if (r == -EACCES)
                return respond_unauthorized(req);
        if (r < 0)
                return r;

        l = limiter_find(w, src->name);
        if (l && !ratelimit_allow(&l->bucket, now_usec(CLOCK_MONOTONIC), &wait)) {
                char v[32];

                snprintf(v, sizeof(v), "%u", ratelimit_retry_after_sec(wait));
                r = http_server_request_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, v);
                if (r < 0)
                        return r;
                return respond_error(req, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
                                     "Too many deliveries for this source, slow down.");
        }

        body = http_server_request_body(req, &len);
        r = event_from_body(w, src, body, len, http_server_request_started_realtime(req),
                            http_server_request_started_mono(req), false, &ev);
        if (r == -EILSEQ)
                return respond_error(req, MHD_HTTP_BAD_REQUEST, "invalid_json",
                                     "The body is not valid UTF-8 JSON.");
        if (r == -EINVAL)
                return respond_error(req, MHD_HTTP_BAD_REQUEST, "invalid_json",
                                     "The body is not a valid JSON object.");
        if (r == -ENOBUFS) {
                /* Deterministic: the same delivery would fail again, so a 4xx
                 * (a retry storm helps nobody). */
                log_warning("an event from %s would produce more than %u actions (or a for_each array over %u items), refusing it",
                            src->name, LIMIT_ACTIONS_PER_EVENT, LIMIT_FOR_EACH_ITEMS);
                return respond_error(req, MHD_HTTP_UNPROCESSABLE_CONTENT, "too_many_actions",
                                     "The event would produce more actions than remedyd accepts from one delivery.");
        }
        if (r < 0)
                return r;

        p = mem_calloc(1, sizeof(*p));
        if (!p) {
                store_event_free(ev);
                return -ENOMEM;
        }

        /* The store calls back from the loop, never from inside submit,
         * so the connection is suspended after a successful hand-off. */
        p->webhook = w;
        p->req = req;
        r = store_submit_event(w->deps.store, ev, on_committed, p);
        if (r < 0) {
                /* The store took ev and freed it. */
                bool shutdown = r == -ESHUTDOWN;

                mem_free(p);
                log_error_errno(r, "state store refused an event from %s, answering 503: %m", src->name);
                r = http_server_request_add_header(req, MHD_HTTP_HEADER_RETRY_AFTER, STORE_RETRY_AFTER);
                if (r < 0)
                        return r;
                return respond_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                                     shutdown ? "shutting_down" : "store_unavailable",
                                     "The event could not be recorded, try again later.");
        }
        p->next = w->pending;
        if (w->pending)
                w->pending->prev = p;
        w->pending = p;
        w->n_pending++;
        wr->pending = p;
        return http_server_request_suspend(req);
}

static void on_complete(HttpServerRequest *req, void *userdata) {
        Webhook *w = userdata;
        const Source *src;
        const char *name;
        unsigned status = http_server_request_status(req);

        if (status == 0 || !w->deps.metrics)
                return;
        src = request_source(w, req);
        name = src ? src->name : "unknown";
        metrics_webhook(w->deps.metrics, name, (int) status);
        metrics_webhook_duration(w->deps.metrics, name,
                                 (double) (now_usec(CLOCK_MONOTONIC) - http_server_request_started_mono(req)) / 1e6);
}

static int limiters_build(Webhook *w, Limiter **ret, size_t *ret_n) {
        const Config *c = config(w);
        Limiter *l;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        size_t n = 0;

        l = mem_calloc(c->n_sources ? c->n_sources : 1, sizeof(Limiter));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_sources; i++) {
                const Source *s = &c->sources[i];
                Limiter *old;

                if (s->rate_per_sec <= 0)
                        continue;
                l[n].source = mem_strdup(s->name);
                if (!l[n].source) {
                        limiters_free(l, n);
                        return -ENOMEM;
                }
                old = limiter_find(w, s->name);
                if (old) {
                        l[n].bucket = old->bucket;
                        ratelimit_update(&l[n].bucket, s->rate_per_sec, s->rate_burst, now);
                } else
                        ratelimit_init(&l[n].bucket, s->rate_per_sec, s->rate_burst, now);
                n++;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

int webhook_reconfigure(Webhook *w) {
        Limiter *l;
        size_t n;
        int r;

        r = limiters_build(w, &l, &n);
        if (r < 0)
                return r;
        limiters_free(w->limiters, w->n_limiters);
        w->limiters = l;
        w->n_limiters = n;
        http_server_set_max_body(w->server, config(w)->listen.max_body_bytes);
        return 0;
}

Webhook *webhook_free(Webhook *w) {
        if (!w)
                return NULL;
        /* Answers every suspended request; their contexts let go of the
         * pending entries, which stay for the store's callbacks. */
        w->server = http_server_free(w->server);
        while (w->pending)
                pending_unlink(w->pending);
        limiters_free(w->limiters, w->n_limiters);
        if (w->tok)
                json_tokener_free(w->tok);
        mem_free(w);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Webhook *, webhook_free, webhook_freep)

int webhook_new(sd_event *e, const WebhookDeps *deps, int listen_fd, Webhook **ret) {
        _cleanup_(webhook_freep) Webhook *w = NULL;
        const Config *c;
        HttpServerOptions o;
        int r;

        if (!e || !deps || !deps->config || !deps->dry_run || listen_fd < 0)
                return -EINVAL;
        c = deps->config(deps->userdata);
        if (!c)
                return -EINVAL;

        w = mem_calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->deps = *deps;

        r = limiters_build(w, &w->limiters, &w->n_limiters);
        if (r < 0)
                return r;

        o = (HttpServerOptions) {
                .listen_fd = listen_fd,
                .max_body_bytes = c->listen.max_body_bytes,
                .tls_cert_file = c->listen.tls_cert_file,
                .tls_key_file = c->listen.tls_key_file,
                .tls_client_ca_file = c->listen.tls_client_ca_file,
                .on_headers = on_headers,
                .on_request = on_request,
                .on_complete = on_complete,
                .userdata = w,
                /* Source names need no escaping (config.c); decoding would
                 * only give one source several spellings. */
                .raw_path = true,
                .name = "webhook",
        };
        r = http_server_new(e, &o, &w->server);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(w);
        return 0;
}

void webhook_stop_accepting(Webhook *w) {
        w->stopping = true;
}

unsigned webhook_pending(Webhook *w) {
        return w->n_pending;
}
