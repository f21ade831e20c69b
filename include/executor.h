/* The executor drains queued actions from the store through the 1Password
 * client: claims due actions (queued -> running), resolves pending emails
 * through the directory, calls :suspend / :reactivate, and records the
 * outcome (done, failed with the API's code/message, or back to queued with
 * a persisted backoff on transient errors). At most LIMIT_QUEUE_INFLIGHT
 * calls run at once. At-least-once: the API calls are idempotent. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "remedyd-forward.h"

/* Jobs in flight when executor_free() runs are detached, not freed: the
 * store calls them back later (store_close() at the latest) and they free
 * themselves; calls dropped by users_api_free() are never called back. Crash
 * recovery (running -> queued) happens in store_open(). Transient failures
 * go back to queued with backoff 2s * 2^attempts (jitter [d/2, d], at least
 * Retry-After, at most LIMIT_API_BACKOFF_MAX_USEC), forever: an outage never
 * fails an action. */

int executor_new(sd_event *e, Store *s, UsersApi *api, Directory *d, Metrics *m, Executor **ret);
Executor *executor_free(Executor *x);
/* Resets running -> queued (crash recovery) and starts draining. */
int executor_start(Executor *x);
/* New work was committed (or a hold was released): look for due actions. */
void executor_kick(Executor *x);
/* Stops claiming new work; running calls finish (or stay queued). */
void executor_stop(Executor *x);
/* Actions claimed whose outcome is not yet committed (<= LIMIT_QUEUE_INFLIGHT). */
unsigned executor_inflight(Executor *x);
/* Optional: the config whose safety.protected_users is checked again once
 * an email was resolved to a user id at execution time (borrowed; call again
 * after every reload; NULL = no re-check). */
void executor_set_config(Executor *x, const Config *c);
