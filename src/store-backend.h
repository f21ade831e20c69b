/* The contract between the store's common part (src/store.c: the queue of
 * operations, the writer threads, group commit, the guardrails, the
 * lifecycle and its audit rows, the outbox) and a database backend
 * (src/store_sqlite.c, src/store_pg.c). Private to those three files.
 *
 * The common part speaks in numbered statements (StoreStmtId below). Each
 * backend has its own SQL text for every number, in its dialect, with the
 * parameters and result columns documented here: ?1 ... ?N bind in that
 * order, a statement may leave parameters unused (binding one it does not
 * have is not an error), and the result columns must come in the order
 * given. So the decisions are written once and both backends make them the
 * same way; what differs (how a redelivery is found, how the cap is
 * serialised between instances, claims with leases) is a backend hook. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct StoreConn StoreConn; /* one connection of a backend */
typedef struct StoreStmt StoreStmt; /* one prepared statement of a connection */

/* The result columns of an action: ACTION_COLS (see action_from_row()):
 *  0 id, 1 event_id, 2 rule, 3 action, 4 user, 5 user_id, 6 reason,
 *  7 status, 8 detail, 9 created, 10 updated, 11 not_before, 12 attempts,
 * 13 for, 14 cooldown, 15 dry_run, 16 parent_id, 17 api_code,
 * 18 api_message, 19 the event's received time (else created), 20 owner. */
#define STORE_ACTION_NCOLS 21

typedef enum StoreStmtId {
        /* --- writer ------------------------------------------------------- */
        S_EVENT_ACTIONS,  /* (event_id) -> the event's own actions (not the timed reactivations
                           * they caused), insertion order */
        S_INSERT_EVENT,   /* (id, source, dedup_key, received, body BLOB) */
        S_INSERT_ACTION,  /* (id, event_id, rule, action, user, user_id, user_key, reason, status,
                           *  detail, now, not_before, attempts, for, cooldown, dry_run, parent_id) */
        S_INSERT_AUDIT,   /* (time, kind, event_id, action_id, rule, user, user_key, from, to,
                           *  detail, instance) */
        S_COOLDOWN,       /* (rule, user_key, since, email_key) -> a row if any */
        S_CAP,            /* (since) -> count of suspends queued/running/done */
        S_TIMED_PENDING,  /* (user_key, end or NULL) -> ids of pending timed reactivations */
        S_SET_STATUS,     /* (id, status, now) */
        S_GET,            /* (id) -> action */
        S_DUE,            /* (now, max, instance) -> ids of claimable actions, earliest first: queued and
                           * due, and (shared) running under another instance's expired lease */
        S_CLAIM,          /* (id, now, instance, lease_until): -> running, owned */
        S_NEXT_DUE,       /* (now, instance) -> earliest time something becomes claimable, NULL if none */
        S_FINISH,         /* (id, status, api_code, api_message, detail, now) */
        S_RETRY,          /* (id, not_before, detail, now) */
        S_SET_USER_ID,    /* (id, user_id, now) */
        S_RESOLVE,        /* (id, status, detail, now) */
        S_OUTLASTED,      /* (user_key, id, created, end) -> a row if a later suspension outlasts */
        S_RECOVER,        /* (instance) -> running actions this instance owned before a restart */
        S_HEARTBEAT,      /* (instance, now, started, version) upsert */
        S_RENEW,          /* (instance, lease_until): this instance's running actions */
        S_PRUNE,          /* (dedup_since, outbox_before): forgets what left the windows */
        S_OUTBOX_INSERT,  /* (id, sink, action_id, outcome, now, instance) */
        S_OUTBOX_DUE,     /* (now, max) -> ids of pending rows due, oldest first */
        S_OUTBOX_CLAIM,   /* (id, not_before, now): attempts + 1 */
        S_OUTBOX_GET,     /* (id) -> ACTION_COLS, then 21 id, 22 sink, 23 outcome, 24 state,
                           * 25 attempts, 26 created, 27 updated, 28 not_before, 29 last_error,
                           * 30 instance, 31 event source */
        S_OUTBOX_NEXT_DUE,/* (now) -> earliest not_before of pending rows, NULL if none */
        S_OUTBOX_SET,     /* (id, state, not_before, last_error, now) */
        /* --- reader ------------------------------------------------------- */
        R_COUNT_STATUS,   /* (status) -> count */
        R_CAP,            /* (since) -> count, as S_CAP */
        R_LIST_ALL,       /* (limit) -> actions, newest first */
        R_LIST_STATUS,    /* (limit, status) -> actions, newest first */
        R_GET,            /* (id) -> action */
        R_HISTORY_ALL,    /* (since, limit) -> audit columns (below), newest first */
        R_HISTORY_USER,   /* (since, limit, user_key, user) */
        R_OUTBOX_LIST,    /* (limit) -> as S_OUTBOX_GET, newest first */
        R_OUTBOX_COUNT,   /* (state) -> count */
        R_INSTANCES,      /* (since) -> names of instances seen since, by name */
        /* for store_preview_event(): what the writer would find, read-only */
        R_DEDUP,          /* (source, dedup_key, since) -> the id of the event this is a redelivery of */
        R_EVENT_ACTIONS,  /* (event_id) -> as S_EVENT_ACTIONS */
        R_COOLDOWN,       /* (rule, user_key, since, email_key) -> as S_COOLDOWN */
        _S_MAX,
} StoreStmtId;
/* Audit columns: 0 seq, 1 time, 2 kind, 3 event_id, 4 action_id, 5 rule,
 * 6 user, 7 from, 8 to, 9 detail, 10 instance. */

typedef struct StoreConnConfig {
        const char *path;        /* sqlite */
        const char *conninfo;    /* postgresql */
        const char *schema;      /* postgresql */
        bool reader;             /* the loop's connection (read-only use) */
        const char *instance;
} StoreConnConfig;

typedef struct StoreBackend {
        const char *name;        /* as in state.backend */
        bool shared;             /* several instances may share the database */

        /* -ENOTCONN with *ret set (shared backends): the database is not
         * reachable now; reconnect() later (the loop's connection: connect()
         * again). */
        int (*connect)(const StoreConnConfig *cfg, StoreConn **ret);
        void (*disconnect)(StoreConn *c);
        /* Creates or migrates the schema (writer connection, at open). */
        int (*migrate)(StoreConn *c);
        /* After a -ENOTCONN: tries once to connect again (0 on success). */
        int (*reconnect)(StoreConn *c);

        /* The connection's cached statement, reset, bindings cleared. */
        int (*stmt)(StoreConn *c, StoreStmtId id, StoreStmt **ret);
        int (*bind_text)(StoreStmt *st, int i, const char *s);            /* s NULL: SQL NULL */
        int (*bind_u64)(StoreStmt *st, int i, uint64_t v);
        int (*bind_blob)(StoreStmt *st, int i, const void *p, size_t n); /* p NULL: SQL NULL */
        int (*step)(StoreStmt *st);   /* 1 a row, 0 done, < 0 error */
        void (*reset)(StoreStmt *st); /* ends the statement's use; keeps it prepared */
        bool (*column_null)(StoreStmt *st, int i);
        const char *(*column_text)(StoreStmt *st, int i);                /* NULL for NULL */
        uint64_t (*column_u64)(StoreStmt *st, int i);

        /* Transactions. guard: the transaction applies guardrails (cooldown,
         * cap): a shared backend serialises such transactions between its
         * instances. wake_queue/wake_outbox at commit: tell the peers. */
        int (*begin)(StoreConn *c, bool guard);
        int (*commit)(StoreConn *c, bool wake_queue, bool wake_outbox);
        void (*rollback)(StoreConn *c);

        /* Dedup, inside the transaction, ev->id already drawn: 1 and the
         * original's id in orig if ev is a redelivery within the window
         * starting at since, 0 if new (then record() runs after the event's
         * row is inserted). */
        int (*dedup_check)(StoreConn *c, const StoreEvent *ev, uint64_t since, char orig[static 33]);
        int (*dedup_record)(StoreConn *c, const StoreEvent *ev, uint64_t since);
        /* Optional: the checks of a whole batch ahead (events with a dedup
         * key, ids drawn, in the order their ops run; since[i] as above), so
         * that dedup_check() needs no round trip of its own. */
        int (*dedup_prefetch)(StoreConn *c, const StoreEvent *const *evs, const uint64_t *since, size_t n);
        /* Optional: the database round trips this connection made. */
        uint64_t (*round_trips)(StoreConn *c);

        /* Loop-side peer wake-ups (shared backends): the fd to watch, or -1,
         * and a function to call when it is readable: returns which wake-ups
         * arrived; -ENOTCONN when the connection broke. */
        int (*listen_fd)(StoreConn *c);
        int (*listen_read)(StoreConn *c, bool *ret_queue, bool *ret_outbox);

        /* After a batch's completions are handed to the loop: housekeeping
         * off the commit path (may be NULL). */
        void (*after_commit)(StoreConn *c);

        /* Bulk import into an empty schema (remedyctl migrate-state; may be
         * NULL): is_empty() 1 if no event, action, audit or outbox row;
         * import_table() starts one table's rows (columns comma-separated),
         * import_row() adds one (NULL values are SQL NULL; binary[i]: raw
         * bytes for a bytea column), import_end() finishes them all, in one
         * transaction with the first import_table(). */
        int (*is_empty)(StoreConn *c);
        int (*import_table)(StoreConn *c, const char *table, const char *columns);
        int (*import_row)(StoreConn *c, size_t n, const char *const *values, const size_t *lengths,
                          const bool *binary);
        int (*import_end)(StoreConn *c, bool commit);

        /* Tests only (may be NULL). */
        int (*debug_max_pages)(StoreConn *c, uint64_t pages);
} StoreBackend;

extern const StoreBackend store_backend_sqlite;
extern const StoreBackend store_backend_pg;

/* Errors a backend returns that the common part treats specially:
 * -ENOTCONN the connection is gone (reconnect, park the executor's work),
 * -EDEADLK the transaction lost a race with another instance's (deadlock,
 * serialisation failure): the whole batch runs again. */
