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
#include "safety.h"

/* ActionStatus (safety.h) by the names the store records and shows
 * ("queued", "dry_run", ...): NULL for a value outside the enum, and
 * _ACTION_STATUS_INVALID for a name that is none of them. */
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
        /* out only (reads and claims): */
        uint64_t updated_usec;   /* last transition, CLOCK_REALTIME */
        uint64_t received_usec;  /* owning event's arrival (CLOCK_REALTIME), else created_usec */
        char *parent_id;         /* timed reactivation: the suspend it ends, else NULL */
        char *api_code;          /* from a failed API call, or NULL */
        char *api_message;
        char *owner;             /* instance that claimed it last, or NULL */
        ActionStatus pre_status; /* internal: the loop's pre-status, kept for a re-run */
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

/* A notification sink as the store needs it to fill the outbox: which
 * action outcomes and which rules it wants (interface.md section 9). */
typedef struct StoreNotifySink {
        const char *name;
        unsigned on_mask;           /* bit (1u << ActionStatus) per outcome that notifies */
        char **rules;               /* NULL-terminated fnmatch() globs; NULL = every rule;
                                     * manual actions have rule "manual" */
} StoreNotifySink;

typedef struct StoreOptions {
        unsigned max_suspensions;   /* from safety.max_suspensions; 0 = no cap */
        uint64_t window_usec;
        uint64_t dedup_window_usec; /* 24 h */
        const StoreNotifySink *notify; /* copied by store_open()/store_set_options() */
        size_t n_notify;
} StoreOptions;

/* Where the state lives (config section state, interface.md section 8). */
typedef struct StoreConfig {
        const char *backend;        /* "sqlite" (NULL: sqlite) or "postgresql" */
        const char *path;           /* sqlite: the database file */
        const char *conninfo;       /* postgresql: libpq connection string or URI (a secret) */
        const char *schema;         /* postgresql: NULL = "remedyd" */
        unsigned pool;              /* postgresql: connections of this instance (>= 2: one
                                     * for the loop's reads, the rest write); 0 = 4 */
        const char *instance;       /* NULL = the host name */
        uint64_t lease_usec;        /* claims a dead instance stops renewing expire; 0 = 30 s */
} StoreConfig;

/* Opens (creating, migrating) the database and starts the writer
 * thread(s); completions are dispatched on e. */
int store_open_config(const StoreConfig *cfg, sd_event *e, const StoreOptions *opts, Store **ret);
/* The same for a SQLite file. */
int store_open(const char *path, sd_event *e, const StoreOptions *opts, Store **ret);
/* Stops the writer after committing what was submitted; NULL-safe. */
Store *store_close(Store *s);
/* Applies new guardrail options (reload). */
void store_set_options(Store *s, const StoreOptions *opts);

/* Takes ownership of ev always (freed on failure too). Returns 0 once
 * queued for the next commit (the callback then runs exactly once, on the
 * loop, or inside store_close()), -ESHUTDOWN while closing, -ENOBUFS past
 * LIMIT_STORE_PENDING outstanding operations, -EINVAL, -ENOMEM. A failed
 * commit is reported to the callback (r < 0) and does not stop later
 * batches from being tried. */
int store_submit_event(Store *s, StoreEvent *ev, StoreEventCallback cb, void *userdata);

StoreEvent *store_event_free(StoreEvent *ev);
void store_action_done(StoreAction *a); /* frees the members, not a itself */

/* True while the last commit succeeded (readiness). */
bool store_writable(Store *s);

typedef struct StoreInfo {
        const char *backend;        /* "sqlite" or "postgresql" (static) */
        const char *instance;       /* borrowed from the store */
        bool shared;                /* several instances may share it */
        bool connected;             /* the writer's connection is up */
        uint64_t latency_usec;      /* the last heartbeat's round trip (0 = none yet) */
        uint64_t lease_usec;
} StoreInfo;
void store_info(Store *s, StoreInfo *ret);
/* Names of the instances whose heartbeat is younger than the lease (this
 * one included), sorted; a NULL-terminated array the caller frees with
 * strv_free() (util.h). Loop-thread read. */
int store_instances(Store *s, char ***ret);

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

/* Actions, newest first (created, then insertion order). status < 0 = any
 * state; limit 0 = LIMIT_STORE_READ_ROWS. *ret is an array the caller frees
 * with store_actions_free(). -EIO (or the mapped SQLite errno) on error. */
int store_list_actions(Store *s, int status, unsigned limit, StoreAction **ret, size_t *ret_n);
/* One action by id into *ret (caller frees with store_actions_free(a, 1)).
 * -ENOENT if there is no such action. */
int store_get_action(Store *s, const char *id, StoreAction **ret);
void store_actions_free(StoreAction *a, size_t n);

/* remedyctl explain --live: what store_submit_event() would make of ev
 * now, read-only on the loop's connection (on a shared backend, the
 * cluster's state): no row, no audit entry, nothing counted against the
 * cap. ev is updated in place: a redelivery within the dedup window (by
 * source and dedup_key) gets the original's id and actions (*ret_duplicate
 * = true); otherwise ev->id stays empty and each QUEUED pre-status becomes
 * what the writer would decide (cooldown, dry_run, the cap, counting the
 * event's own earlier actions as the transaction would). Another delivery
 * committed meanwhile can change the answer. received_usec 0 = now.
 * -EINVAL, -ENOMEM, -ENOTCONN or the database's errno. */
int store_preview_event(Store *s, StoreEvent *ev, bool *ret_duplicate);

typedef struct StoreAuditEntry {
        uint64_t seq;
        uint64_t time_usec;     /* CLOCK_REALTIME */
        char *kind;             /* "event", "decision", "manual", "transition" */
        char *event_id, *action_id, *rule, *user, *from_status, *to_status, *detail; /* each may be NULL */
        char *instance;         /* the instance that wrote it, or NULL */
} StoreAuditEntry;

/* The audit trail, newest first. user: NULL = everyone, else an email
 * (case-insensitive) or a user id: rows whose user key (user id when known,
 * else the lower-cased user) or user string matches. since_usec: rows at or
 * after this CLOCK_REALTIME time (0 = all). limit 0 = LIMIT_STORE_READ_ROWS.
 * Caller frees with store_audit_free(). */
int store_history(Store *s, const char *user, uint64_t since_usec, unsigned limit,
                  StoreAuditEntry **ret, size_t *ret_n);
void store_audit_free(StoreAuditEntry *e, size_t n);

/* --- asynchronous writer operations --------------------------------------
 *
 * Each is queued like an event and committed in the next group commit; the
 * callback runs on the loop thread afterwards (or during store_close()).
 * The submit functions return 0 once queued, -ESHUTDOWN while closing,
 * -ENOBUFS past LIMIT_STORE_PENDING, -ENOMEM, -EINVAL on bad arguments; then
 * the callback is always called exactly once. In the callback r < 0 means
 * nothing was changed: -ENOENT (no such action), -EBUSY (the action is not in
 * a state that allows the transition), or the commit's error (-ENOSPC, -EIO,
 * -EROFS ...). Every transition writes an audit row. */

typedef void (*StoreDoneCallback)(Store *s, int r, void *userdata);
/* actions are borrowed for the callback (the callee may take an element's
 * members, leaving zeroes behind; the store frees what is left); next_due_usec is the earliest
 * not_before of what is still queued after the claim (0 = due now,
 * USEC_INFINITY = nothing queued). */
typedef void (*StoreClaimCallback)(Store *s, int r, StoreAction *actions, size_t n,
                                   uint64_t next_due_usec, void *userdata);
/* a is borrowed for the callback. */
typedef void (*StoreActionCallback)(Store *s, int r, const StoreAction *a, void *userdata);

/* queued with not_before <= now_usec -> running, at most max (1..LIMIT_QUEUE_INFLIGHT),
 * earliest first. */
int store_claim_due(Store *s, uint64_t now_usec, unsigned max, StoreClaimCallback cb, void *userdata);

/* running -> done (success) or failed. api_code/api_message/detail may be
 * NULL. A done suspend with for_usec > 0 also inserts its timed reactivation
 * (queued, not_before = now + for_usec, same rule, parent_id = id, reason
 * "timed suspension ended") unless a later suspension of the same user
 * outlasts it. */
int store_finish_action(Store *s, const char *id, bool success, const char *api_code,
                        const char *api_message, const char *detail, StoreDoneCallback cb, void *userdata);
/* running -> queued with attempts + 1 and the given next attempt time. */
int store_retry_action(Store *s, const char *id, uint64_t not_before_usec, const char *detail,
                       StoreDoneCallback cb, void *userdata);
/* Records the user id found by late resolution (any non-terminal state). */
int store_set_user_id(Store *s, const char *id, const char *user_id, StoreDoneCallback cb, void *userdata);
/* running|queued -> a terminal resolution status (UNKNOWN_USER,
 * AMBIGUOUS_USER, UNRESOLVED, PROTECTED) found at execution time. */
int store_resolve_action(Store *s, const char *id, ActionStatus status, const char *detail,
                         StoreDoneCallback cb, void *userdata);
/* held -> queued (release) and held|queued -> cancelled (cancel); by is the
 * operator's note for the audit row (may be NULL). */
int store_release_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata);
int store_cancel_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata);
/* A manual action (remedyctl suspend/reactivate): a->rule is forced to
 * "manual", the pre-status contract and guardrails are those of
 * store_submit_event(), and an audit row of kind "manual" names
 * a->reason. Takes ownership of a always (a is heap-allocated, freed with
 * store_actions_free(a, 1)). The callback gets the committed action. */
int store_submit_manual(Store *s, StoreAction *a, StoreActionCallback cb, void *userdata);

/* --- the notification outbox (interface.md section 9) --------------------
 *
 * Whenever an action enters a status in a sink's on_mask (created held,
 * dry_run, protected ...; finished done or failed; ...) for a rule the sink
 * wants, the same transaction inserts one outbox row per such sink: a
 * delivery id (32 hex, X-Remedyd-Delivery, stable across retries), state
 * pending. Rows are claimed with a lease (claimed rows get not_before = now +
 * lease, so a crashed deliverer's rows come back), then delivered, retried
 * or given up. Delivered and failed rows older than LIMIT_NOTIFY_RETENTION
 * are pruned by the writer. */

typedef enum NotifyState {
        NOTIFY_STATE_PENDING,
        NOTIFY_STATE_DELIVERED,
        NOTIFY_STATE_FAILED,      /* given up after LIMIT_NOTIFY_ATTEMPTS */
        _NOTIFY_STATE_MAX,
        _NOTIFY_STATE_INVALID = -22,
} NotifyState;

const char *store_notify_state_to_string(NotifyState s);

typedef struct StoreNotification {
        char id[33];              /* delivery id */
        char *sink;
        ActionStatus outcome;     /* the status that caused it */
        NotifyState state;
        unsigned attempts;
        uint64_t created_usec, updated_usec, not_before_usec; /* CLOCK_REALTIME */
        char *last_error;         /* or NULL */
        StoreAction action;       /* the action as it is now (id, rule, user, reason, api_*) */
        char *event_source;       /* the owning event's source, NULL for manual actions */
        uint64_t event_received_usec;
        char *instance;           /* instance that recorded the outcome */
} StoreNotification;

void store_notifications_free(StoreNotification *n, size_t count);

/* n is borrowed for the callback (the callee may take members, leaving NULLs);
 * next_due_usec as for store_claim_due(). */
typedef void (*StoreNotificationCallback)(Store *s, int r, StoreNotification *n, size_t count,
                                          uint64_t next_due_usec, void *userdata);
/* pending rows with not_before <= now, oldest first, at most max: their
 * not_before becomes now + lease_usec and attempts + 1. */
int store_claim_notifications(Store *s, uint64_t now_usec, unsigned max, uint64_t lease_usec,
                              StoreNotificationCallback cb, void *userdata);
/* pending -> delivered. */
int store_notification_delivered(Store *s, const char *id, StoreDoneCallback cb, void *userdata);
/* pending stays pending with the given next attempt (give_up: -> failed); error
 * is kept as last_error (may be NULL). */
int store_notification_retry(Store *s, const char *id, uint64_t not_before_usec, bool give_up,
                             const char *error, StoreDoneCallback cb, void *userdata);
/* Newest first; limit 0 = LIMIT_STORE_READ_ROWS. Loop-thread read. */
int store_list_notifications(Store *s, unsigned limit, StoreNotification **ret, size_t *ret_n);
int store_notification_counts(Store *s, uint64_t *ret_pending, uint64_t *ret_failed);

/* Wake-ups: called on the loop after a commit that queued work (new queued
 * actions, a release) or new outbox rows, and, on a shared backend, when
 * another instance did (LISTEN/NOTIFY). Either may be NULL. */
typedef void (*StoreWakeup)(void *userdata);
void store_set_wakeups(Store *s, StoreWakeup on_queue, StoreWakeup on_outbox, void *userdata);

/* --- moving over (remedyctl migrate-state, interface.md 8.7) -------------- */

typedef struct StoreMigrateStats {
        uint64_t events, dedup, actions, audit, outbox;
} StoreMigrateStats;

/* Copies a SQLite state (schema version 3 or 4: events, the dedup window,
 * actions with their lifecycle, cooldowns and timed reactivations, the audit
 * trail, the outbox) into the shared store described by target, in one
 * transaction. -ENOTEMPTY if the target already holds state, -EPROTONOSUPPORT
 * for a SQLite schema it does not know, -ENOTCONN if the database cannot be
 * reached. Every problem is logged. */
int store_migrate_from_sqlite(const StoreConfig *target, const char *sqlite_path, StoreMigrateStats *ret);

/* --- statistics and tests ------------------------------------------------ */

/* Operations waiting past which an idle writer starts a commit before the
 * loop iteration that submits them ends (op_submit()). 1 lost 15% of ingest
 * to one-event commits; 2 to 32 measured within the noise at first; with
 * the dedup index in memory, 16 beat 8 in 3 of 3 alternating runs (+0.7%,
 * +2.6%, +4.8%; writer 5.1-6.2 us/event instead of 5.5-6.3: fewer,
 * larger commits) and 32 did not. */
#define STORE_EARLY_COMMIT 16

typedef struct StoreStats {
        uint64_t commits;        /* successful transactions (= fsync groups) */
        uint64_t failed_commits;
        uint64_t ops;            /* operations committed */
        uint64_t pending;        /* submitted, not yet committed */
        int last_error;          /* errno of the last failed commit, 0 after a success */
        bool writer_idle;        /* the writer waits for work */
        uint64_t round_trips;    /* database round trips of the writers (shared backends) */
} StoreStats;
void store_stats(Store *s, StoreStats *ret);

/* Tests only: sets the writer's PRAGMA max_page_count (0 = restore the
 * default), a real way to make commits fail with SQLITE_FULL (-ENOSPC). */
int store_debug_set_max_pages(Store *s, uint64_t pages, StoreDoneCallback cb, void *userdata);
