/* The state store: events, actions and the audit trail in SQLite (WAL).
 *
 * Writes go through one writer thread with its own connection; the loop
 * submits work and gets a callback on the loop (an eventfd wakes it) once
 * the transaction holding it is committed with fsync (synchronous=FULL).
 * Everything submitted while a commit is running goes into the next
 * transaction together: group commit, one fsync for many requests.
 * Reads for status and remedyctl use a second connection on the loop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "remedyd-forward.h"

typedef enum ActionStatus {
        ACTION_STATUS_QUEUED,
        ACTION_STATUS_HELD,
        ACTION_STATUS_DRY_RUN,
        ACTION_STATUS_COOLDOWN,
        ACTION_STATUS_PROTECTED,
        ACTION_STATUS_UNKNOWN_USER,
        ACTION_STATUS_AMBIGUOUS_USER,
        ACTION_STATUS_UNRESOLVED,
        ACTION_STATUS_RUNNING,
        ACTION_STATUS_DONE,
        ACTION_STATUS_FAILED,
        ACTION_STATUS_CANCELLED,
        _ACTION_STATUS_MAX,
        _ACTION_STATUS_INVALID = -22,
} ActionStatus;

const char *store_action_status_to_string(ActionStatus s);
ActionStatus store_action_status_from_string(const char *s);

struct StoreAction {
        char id[33];             /* set by the store when the event is committed */
        char *rule;              /* rule name, or "manual" (remedyctl) */
        ActionKind action;
        char *user;              /* as resolved from the template; NULL if unresolved */
        char *user_id;           /* 1Password user id once known, else NULL */
        char *reason;            /* or NULL */
        char *detail;            /* missing path, API code/message, ... or NULL */
        ActionStatus status;     /* in: pre-status from the loop (see below); out: final */
        /* in: what the writer needs to finish the guardrail checks */
        uint64_t cooldown_usec;
        uint64_t for_usec;
        bool dry_run;
        /* bookkeeping */
        uint64_t created_usec;   /* CLOCK_REALTIME */
        uint64_t not_before_usec;/* next attempt, CLOCK_REALTIME; 0 = now */
        unsigned attempts;
        char *event_id;          /* owning event, or NULL for manual actions */
        uint64_t received_mono_usec; /* webhook arrival (CLOCK_MONOTONIC), for time-to-contain */
};

struct StoreEvent {
        char id[33];             /* set by the store */
        char *source;
        char *dedup_key;         /* "id:<event_id value>" or "sha256:<hex>"; per source */
        char *body;              /* raw JSON as received (stored for history) */
        size_t body_len;
        uint64_t received_usec;  /* CLOCK_REALTIME */
        uint64_t received_mono_usec;
        StoreAction *actions;
        size_t n_actions;
};

/* Pre-status contract for store_submit_event(): the loop sets UNRESOLVED,
 * UNKNOWN_USER, AMBIGUOUS_USER or PROTECTED when those apply (no further
 * check); otherwise QUEUED, and the writer, inside the transaction, applies
 * in order: cooldown (an earlier queued/held/running/done/dry_run action of
 * the same rule and user within cooldown_usec -> COOLDOWN), dry_run ->
 * DRY_RUN, the cap (suspend actions queued/running/done in the sliding
 * window >= max_suspensions -> HELD), else QUEUED. A committed QUEUED
 * suspend cancels pending timed reactivations of the same user that would
 * end it sooner. */

/* Called on the loop thread. r < 0: nothing was recorded (-EIO, -ENOSPC,
 * -EROFS, -ESHUTDOWN ...): answer 503. Otherwise ev holds the final ids and
 * statuses; duplicate=true means ev was replaced by the original event
 * (same dedup key within 24 h) and its original actions. ev is borrowed for
 * the duration of the callback and freed by the store after it. */
typedef void (*StoreEventCallback)(Store *s, int r, const StoreEvent *ev, bool duplicate, void *userdata);

typedef struct StoreOptions {
        unsigned max_suspensions;   /* from safety.max_suspensions; 0 = no cap */
        uint64_t window_usec;
        uint64_t dedup_window_usec; /* 24 h */
} StoreOptions;

/* Opens (creating, migrating) the database at path and starts the writer
 * thread; its completions are dispatched on e. */
int store_open(const char *path, sd_event *e, const StoreOptions *opts, Store **ret);
/* Stops the writer after committing what was submitted; NULL-safe. */
Store *store_close(Store *s);
/* Applies new guardrail options (reload). */
void store_set_options(Store *s, const StoreOptions *opts);

/* Takes ownership of ev always (freed on failure too). Returns 0 once
 * queued for the next commit, -ESHUTDOWN while closing, -ENOBUFS past the
 * pending limit, -EIO once the store has failed. */
int store_submit_event(Store *s, StoreEvent *ev, StoreEventCallback cb, void *userdata);

StoreEvent *store_event_free(StoreEvent *ev);
void store_action_done(StoreAction *a); /* frees the members, not a itself */

/* True while the last commit succeeded (readiness). */
bool store_writable(Store *s);

/* --- reads on the loop thread (second connection) ------------------------ */

typedef struct StoreQueueCounts {
        uint64_t queued;
        uint64_t running;
        uint64_t held;
        uint64_t failed;
        uint64_t done;
        uint64_t cancelled;
} StoreQueueCounts;

/* Counts actions by lifecycle state. -EIO on a database error. */
int store_queue_counts(Store *s, StoreQueueCounts *ret);
/* Suspend actions queued/running/done created within the current cap
 * window (ending now). */
int store_suspensions_in_window(Store *s, uint64_t *ret);
