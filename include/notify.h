/* The notification worker (interface.md section 9): delivers the store's
 * outbox at least once. On the loop, it claims due rows with a lease
 * (store_claim_notifications()), renders each for its sink (notify_format.h),
 * sends it through its own libcurl multi (HTTP POST for slack and webhook,
 * SMTP for email, all on the loop), and records delivered, or retry with
 * exponential backoff and jitter (at least the receiver's Retry-After), or
 * failed after LIMIT_NOTIFY_ATTEMPTS attempts or a permanent refusal (HTTP
 * 4xx but 408/425/429, SMTP 5xx). At most LIMIT_NOTIFY_INFLIGHT deliveries
 * run at once; each is bounded by its sink's timeout (default 10 s), so a
 * hanging receiver costs a slot for that long and never the executor or the
 * webhook anything: nothing here runs on their path.
 *
 * Woken by the store's on_outbox (new rows, here or on a peer) and by a timer
 * at the next due time. Logs name the sink and the delivery id, never a URL
 * or a secret. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "http_client.h"
#include "remedyd-forward.h"

typedef struct StoreNotification StoreNotification;

/* s and m are borrowed (m may be NULL). -ENOMEM, -EIO. */
int notify_new(sd_event *e, Store *s, Metrics *m, Notify **ret);
/* Drops deliveries in flight (their rows come back after the lease).
 * NULL-safe; returns NULL. Call after store_close(). */
Notify *notify_free(Notify *n);
/* The sinks (config->notify), borrowed: call again after every reload. A
 * row for a sink this instance does not have (removed by a reload, or known
 * only to a peer on a shared store) is retried a minute later at the
 * earliest, and failed after LIMIT_NOTIFY_ATTEMPTS. */
void notify_set_config(Notify *n, const Config *c);
/* Starts claiming; notify_kick() before it is remembered. */
int notify_start(Notify *n);
/* New outbox rows were committed: look for due ones (coalesced per loop
 * iteration). */
void notify_kick(Notify *n);
/* Stops claiming; deliveries in flight finish or come back after the lease. */
void notify_stop(Notify *n);
/* Deliveries claimed whose outcome is not yet recorded. */
unsigned notify_inflight(Notify *n);

/* --- one delivery, without the store (the worker's steps; tests) --------- */

typedef struct NotifyResult {
        int error;                /* 0: delivered; else -errno (-EPROTO for a refusal by status) */
        bool permanent;           /* retrying will not help */
        long status;              /* HTTP status or SMTP reply code; 0 = none */
        uint64_t retry_after_usec;
        char message[128];        /* for the row's last_error: "HTTP 503", "timed out" ... never a URL */
} NotifyResult;

/* Renders n for sink and starts sending it on c; cb gets the HttpResponse,
 * which notify_result() turns into a NotifyResult. Returns 0 (the callback
 * then runs once, unless the request is cancelled or c freed), -E2BIG (the
 * message over LIMIT_NOTIFY_MESSAGE_BYTES), -EINVAL, -ENOMEM, -EIO. */
int notify_deliver(HttpClient *c, const NotifySink *sink, const StoreNotification *n, HttpClientCallback cb,
                   void *userdata, HttpRequest **ret);
/* Classifies a response for a sink of type t (NotifyType). */
void notify_result(int type, const HttpResponse *resp, NotifyResult *ret);
/* The delay before attempt attempts + 1 (attempts >= 1 made): 1 s * 2^(n-1)
 * with jitter in [d/2, d], capped at 15 min, at least retry_after_usec
 * (itself capped). */
uint64_t notify_backoff_usec(unsigned attempts, uint64_t retry_after_usec);
