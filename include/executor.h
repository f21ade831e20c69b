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

int executor_new(sd_event *e, Store *s, UsersApi *api, Directory *d, Metrics *m, Executor **ret);
Executor *executor_free(Executor *x);
/* Resets running -> queued (crash recovery) and starts draining. */
int executor_start(Executor *x);
/* New work was committed (or a hold was released): look for due actions. */
void executor_kick(Executor *x);
/* Stops claiming new work; running calls finish (or stay queued). */
void executor_stop(Executor *x);
unsigned executor_inflight(Executor *x);
