/* The notification worker: see include/notify.h. Every delivery in flight
 * is a Delivery that owns its claimed row until the store has recorded the
 * outcome; a single REALTIME timer wakes the worker at the next due row. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "http_client.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "notify_format.h"
#include "remedyd-limits.h"
#include "store.h"
#include "strbuf.h"
#include "util.h"
#include "version.h"

#define NOTIFY_BACKOFF_BASE_USEC (1 * USEC_PER_SEC)
#define NOTIFY_BACKOFF_MAX_USEC (15 * 60 * USEC_PER_SEC)
/* A claimed row comes back to any instance after its sink's timeout plus
 * this much, if its deliverer died meanwhile. */
#define NOTIFY_LEASE_MARGIN_USEC (30 * USEC_PER_SEC)
/* After a failed claim (store unavailable), try again this much later. */
#define NOTIFY_CLAIM_RETRY_USEC (5 * USEC_PER_SEC)
#define NOTIFY_RESPONSE_MAX 65536u
/* A row for a sink this instance does not have waits at least this long. */
#define NOTIFY_UNKNOWN_SINK_RETRY_USEC (60 * USEC_PER_SEC)

typedef struct Delivery Delivery;

struct Notify {
        sd_event *event;
        Store *store;
        Metrics *metrics;
        HttpClient *http;
        const Config *config;
        uint64_t lease_usec;

        sd_event_source *timer;   /* CLOCK_REALTIME: the next due row */
        sd_event_source *kick;    /* deferred claim */
        bool started, stopped, claiming, kick_again;
        unsigned inflight;
        struct {
                Delivery *head, *tail;
        } deliveries;
};

struct Delivery {
        Notify *notify;
        Delivery *prev, *next;
        HttpRequest *req;         /* while sending */
        StoreNotification *n;     /* the claimed row, owned (one element) */
        NotifyType type;
        uint64_t started_usec;    /* CLOCK_MONOTONIC */
};

static void claim(Notify *x);

/* --- one delivery ---------------------------------------------------------- */

uint64_t notify_backoff_usec(unsigned attempts, uint64_t retry_after_usec) {
        uint64_t d = http_client_backoff_usec(attempts ? attempts : 1, NOTIFY_BACKOFF_BASE_USEC, NOTIFY_BACKOFF_MAX_USEC);

        if (retry_after_usec > d)
                d = retry_after_usec > NOTIFY_BACKOFF_MAX_USEC ? NOTIFY_BACKOFF_MAX_USEC : retry_after_usec;
        return d;
}

void notify_result(int type, const HttpResponse *resp, NotifyResult *ret) {
        *ret = (NotifyResult) { .status = resp->status, .retry_after_usec = resp->retry_after_usec };

        if (type == NOTIFY_EMAIL) {
                if (resp->error == 0)
                        return;
                ret->error = resp->error;
                /* 5xx is the server's final word; 4xx and no answer may pass */
                ret->permanent = resp->status >= 500 && resp->status < 600;
                if (resp->status > 0)
                        snprintf(ret->message, sizeof(ret->message), "SMTP %ld (%s)", resp->status, strerror(-resp->error));
                else
                        snprintf(ret->message, sizeof(ret->message), "%s", strerror(-resp->error));
                return;
        }
        if (resp->error < 0) {
                ret->error = resp->error;
                snprintf(ret->message, sizeof(ret->message), "%s", strerror(-resp->error));
                return;
        }
        if (resp->status >= 200 && resp->status < 300)
                return;
        ret->error = -EPROTO;
        ret->permanent = resp->status < 500 && resp->status != 408 && resp->status != 425 && resp->status != 429;
        snprintf(ret->message, sizeof(ret->message), "HTTP %ld", resp->status);
}

static int deliver_http(HttpClient *c, const NotifySink *k, const StoreNotification *n, const StrBuf *body,
                        HttpClientCallback cb, void *userdata, HttpRequest **ret) {
        _cleanup_free_ char *delivery = NULL, *sig = NULL, *authz = NULL;
        const char *headers[6];
        size_t nh = 0;
        int r;

        if (!k->url)
                return -EINVAL;
        if (asprintf(&delivery, "X-Remedyd-Delivery: %s", n->id) < 0)
                return (delivery = NULL), -ENOMEM;
        headers[nh++] = "Content-Type: application/json";
        headers[nh++] = delivery;
        if (k->type == NOTIFY_WEBHOOK && k->hmac_header && k->hmac_secret) {
                char hex[65];

                r = auth_hmac_sha256_hex(k->hmac_secret, /* timestamp= */ NULL, body->data, body->len, hex);
                if (r < 0)
                        return r;
                if (asprintf(&sig, "%s: sha256=%s", k->hmac_header, hex) < 0)
                        return (sig = NULL), -ENOMEM;
                headers[nh++] = sig;
        }
        if (k->type == NOTIFY_WEBHOOK && k->authorization) {
                if (asprintf(&authz, "Authorization: %s", k->authorization) < 0)
                        return (authz = NULL), -ENOMEM;
                headers[nh++] = authz;
        }
        headers[nh] = NULL;
        r = http_client_request(c, &(HttpRequestParams) {
                                        .method = "POST",
                                        .url = k->url,
                                        .headers = headers,
                                        .body = body->data,
                                        .body_size = body->len,
                                        .timeout_usec = k->timeout_usec,
                                        .ca_file = k->ca_file,
                                        .user_agent = "remedyd/" REMEDYD_VERSION,
                                        .max_response_bytes = NOTIFY_RESPONSE_MAX,
                                },
                                cb, userdata, ret);
        if (authz)
                explicit_bzero(authz, strlen(authz));
        return r;
}

int notify_deliver(HttpClient *c, const NotifySink *k, const StoreNotification *n, HttpClientCallback cb,
                   void *userdata, HttpRequest **ret) {
        _cleanup_(strbuf_free) StrBuf body = {};
        int r;

        if (!c || !k || !n || !cb)
                return -EINVAL;
        strbuf_init(&body, LIMIT_NOTIFY_MESSAGE_BYTES);
        switch (k->type) {
        case NOTIFY_SLACK:
        case NOTIFY_WEBHOOK:
                r = k->type == NOTIFY_SLACK ? notify_format_slack(&body, n) : notify_format_webhook(&body, n);
                if (r < 0)
                        return r;
                return deliver_http(c, k, n, &body, cb, userdata, ret);
        case NOTIFY_EMAIL:
                r = notify_format_email(&body, n, &(NotifyMailParams) {
                                                          .from = k->from,
                                                          .to = k->to,
                                                          .date_usec = now_usec(CLOCK_REALTIME),
                                                  });
                if (r < 0)
                        return r;
                return http_client_mail(c, &(HttpMailParams) {
                                                .url = k->smtp_url,
                                                .require_tls = k->starttls,
                                                .username = k->username,
                                                .password = k->password,
                                                .from = k->from,
                                                .rcpt = (const char *const *) k->to,
                                                .message = body.data,
                                                .message_size = body.len,
                                                .timeout_usec = k->timeout_usec,
                                                .ca_file = k->ca_file,
                                        },
                                        cb, userdata, ret);
        default:
                return -EINVAL;
        }
}

/* --- the worker ------------------------------------------------------------ */

static void delivery_unlink(Delivery *d) {
        if (!d->notify)
                return;
        LIST_REMOVE(&d->notify->deliveries, d);
        d->notify = NULL;
}

static Delivery *delivery_free(Delivery *d) {
        if (!d)
                return NULL;
        delivery_unlink(d);
        store_notifications_free(d->n, 1);
        mem_free(d);
        return NULL;
}

static LogContext delivery_log_context(const Delivery *d) {
        return (LogContext) {
                .event_id = d->n->action.event_id,
                .rule = d->n->action.rule,
                .action_id = d->n->action.id,
        };
}

static void on_recorded(Store *s, int r, void *userdata) {
        Delivery *d = userdata;
        Notify *x = d->notify;

        if (r < 0) {
                LogContext ctx = delivery_log_context(d);

                log_full(LOG_WARNING, r, &ctx,
                         "notify: cannot record the outcome of delivery %s to sink %s, it stays pending and is "
                         "tried again after its lease: %m", d->n->id, d->n->sink ? d->n->sink : "?");
        }
        delivery_free(d);
        if (x) {
                x->inflight--;
                claim(x);
        }
}

/* Records d's outcome: delivered, or retry at not_before (give_up: failed). */
static void delivery_record(Delivery *d, const NotifyResult *res) {
        Notify *x = d->notify;
        LogContext ctx = delivery_log_context(d);
        const char *sink = d->n->sink ? d->n->sink : "?";
        uint64_t now = now_usec(CLOCK_REALTIME);
        bool give_up;
        int r;

        if (res->error == 0) {
                log_full(LOG_INFO, 0, &ctx, "notify: delivery %s to sink %s delivered (attempt %u, %.3fs)", d->n->id, sink,
                         d->n->attempts, (double) (now_usec(CLOCK_MONOTONIC) - d->started_usec) / USEC_PER_SEC);
                metrics_notification(x->metrics, sink, "delivered");
                r = store_notification_delivered(x->store, d->n->id, on_recorded, d);
        } else {
                uint64_t delay = notify_backoff_usec(d->n->attempts, res->retry_after_usec);

                give_up = res->permanent || d->n->attempts >= LIMIT_NOTIFY_ATTEMPTS;
                if (give_up)
                        log_full(LOG_WARNING, 0, &ctx, "notify: delivery %s to sink %s failed for good after %u attempt%s: %s",
                                 d->n->id, sink, d->n->attempts, d->n->attempts == 1 ? "" : "s", res->message);
                else
                        log_full(LOG_NOTICE, 0, &ctx, "notify: delivery %s to sink %s: %s, retrying in %.1fs (attempt %u)",
                                 d->n->id, sink, res->message, (double) delay / USEC_PER_SEC, d->n->attempts);
                metrics_notification(x->metrics, sink, give_up ? "failed" : "retry");
                r = store_notification_retry(x->store, d->n->id, now + delay, give_up, res->message, on_recorded, d);
        }
        if (r < 0)
                on_recorded(x->store, r, d);
}

static void on_sent(HttpClient *c, const HttpResponse *resp, void *userdata) {
        Delivery *d = userdata;
        NotifyResult res;

        d->req = NULL;
        notify_result(d->type, resp, &res);
        delivery_record(d, &res);
}

static void delivery_start(Notify *x, StoreNotification *note) {
        const NotifySink *k = config_find_notify(x->config, note->sink);
        Delivery *d;
        int r;

        d = mem_calloc(1, sizeof(Delivery));
        if (d)
                d->n = mem_calloc(1, sizeof(StoreNotification));
        if (!d || !d->n) {
                /* the row comes back after its lease */
                log_error("notify: out of memory, delivery %s waits for its lease", note->id);
                mem_free(d);
                return;
        }
        *d->n = *note;
        *note = (StoreNotification) {};
        d->notify = x;
        LIST_APPEND(&x->deliveries, d);
        d->started_usec = now_usec(CLOCK_MONOTONIC);
        x->inflight++;

        if (!k) {
                /* Another instance (shared store) may have it, or a reload
                 * may bring it back: wait, and fail after the attempts. */
                NotifyResult res = { .error = -ENOENT, .retry_after_usec = NOTIFY_UNKNOWN_SINK_RETRY_USEC };

                snprintf(res.message, sizeof(res.message), "sink is not configured on this instance");
                delivery_record(d, &res);
                return;
        }
        d->type = k->type;
        r = notify_deliver(x->http, k, d->n, on_sent, d, &d->req);
        if (r < 0) {
                NotifyResult res = { .error = r, .permanent = r == -E2BIG || r == -EINVAL };

                snprintf(res.message, sizeof(res.message), "cannot send: %s", strerror(-r));
                delivery_record(d, &res);
        }
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        claim(userdata);
        return 0;
}

static void arm_timer(Notify *x, uint64_t when_usec) {
        int r;

        if (when_usec == USEC_INFINITY)
                return;
        if (!x->timer)
                r = sd_event_add_time(x->event, &x->timer, CLOCK_REALTIME, when_usec, 10 * USEC_PER_MSEC, on_timer, x);
        else {
                uint64_t cur = 0;

                /* only ever brought forward, or re-armed once it fired */
                if (sd_event_source_get_enabled(x->timer, NULL) > 0 && sd_event_source_get_time(x->timer, &cur) >= 0 &&
                    cur <= when_usec)
                        return;
                r = sd_event_source_set_time(x->timer, when_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(x->timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_warning_errno(r, "notify: cannot arm the retry timer, ignoring: %m");
}

static void on_claimed(Store *s, int r, StoreNotification *notes, size_t count, uint64_t next_due, void *userdata) {
        Notify *x = userdata;
        unsigned asked = LIMIT_NOTIFY_INFLIGHT - x->inflight;

        x->claiming = false;
        if (r < 0) {
                if (r != -ESHUTDOWN)
                        log_warning_errno(r, "notify: cannot claim notifications, trying again in %llus: %m",
                                          (unsigned long long) (NOTIFY_CLAIM_RETRY_USEC / USEC_PER_SEC));
                arm_timer(x, now_usec(CLOCK_REALTIME) + NOTIFY_CLAIM_RETRY_USEC);
                return;
        }
        for (size_t i = 0; i < count; i++)
                delivery_start(x, &notes[i]);
        if (count >= asked || x->kick_again || (next_due == 0 && count > 0)) {
                x->kick_again = false;
                notify_kick(x);
        } else if (next_due == 0)
                /* due but not claimable now (a peer holds the rows): no spinning */
                arm_timer(x, now_usec(CLOCK_REALTIME) + USEC_PER_SEC);
        else
                arm_timer(x, next_due);
}

static void claim(Notify *x) {
        unsigned room;
        int r;

        if (!x->started || x->stopped || !x->store)
                return;
        if (x->claiming) {
                x->kick_again = true;
                return;
        }
        if (x->inflight >= LIMIT_NOTIFY_INFLIGHT)
                return; /* the next finished delivery claims again */
        room = LIMIT_NOTIFY_INFLIGHT - x->inflight;
        x->claiming = true;
        r = store_claim_notifications(x->store, now_usec(CLOCK_REALTIME), room, x->lease_usec, on_claimed, x);
        if (r < 0) {
                x->claiming = false;
                if (r != -ESHUTDOWN) {
                        log_warning_errno(r, "notify: cannot claim notifications, trying again: %m");
                        arm_timer(x, now_usec(CLOCK_REALTIME) + NOTIFY_CLAIM_RETRY_USEC);
                }
        }
}

static int on_kick(sd_event_source *s, void *userdata) {
        claim(userdata);
        return 0;
}

void notify_kick(Notify *x) {
        if (!x)
                return;
        if (!x->kick || sd_event_source_set_enabled(x->kick, SD_EVENT_ONESHOT) < 0)
                claim(x);
}

int notify_new(sd_event *e, Store *s, Metrics *m, Notify **ret) {
        Notify *x;
        int r;

        if (!e || !ret)
                return -EINVAL;
        x = mem_calloc(1, sizeof(Notify));
        if (!x)
                return -ENOMEM;
        x->event = sd_event_ref(e);
        x->store = s;
        x->metrics = m;
        x->lease_usec = 10 * USEC_PER_SEC + NOTIFY_LEASE_MARGIN_USEC;
        r = http_client_new(e, &x->http);
        if (r >= 0)
                r = sd_event_add_defer(e, &x->kick, on_kick, x);
        if (r >= 0)
                r = sd_event_source_set_enabled(x->kick, SD_EVENT_OFF);
        if (r < 0) {
                notify_free(x);
                return r;
        }
        (void) sd_event_source_set_description(x->kick, "notify-kick");
        *ret = x;
        return 0;
}

Notify *notify_free(Notify *x) {
        if (!x)
                return NULL;
        /* drops the requests without calling back: the rows' leases run out */
        x->http = http_client_free(x->http);
        while (x->deliveries.head)
                delivery_free(x->deliveries.head);
        x->timer = sd_event_source_disable_unref(x->timer);
        x->kick = sd_event_source_disable_unref(x->kick);
        sd_event_unref(x->event);
        mem_free(x);
        return NULL;
}

void notify_set_config(Notify *x, const Config *c) {
        uint64_t longest = 0;

        if (!x)
                return;
        x->config = c;
        for (size_t i = 0; c && i < c->n_notify; i++)
                if (c->notify[i].timeout_usec > longest)
                        longest = c->notify[i].timeout_usec;
        x->lease_usec = (longest ? longest : 10 * USEC_PER_SEC) + NOTIFY_LEASE_MARGIN_USEC;
}

int notify_start(Notify *x) {
        if (!x)
                return -EINVAL;
        x->started = true;
        x->stopped = false;
        notify_kick(x);
        return 0;
}

void notify_stop(Notify *x) {
        if (x)
                x->stopped = true;
}

unsigned notify_inflight(Notify *x) {
        return x ? x->inflight : 0;
}
