/* The state store: SQLite in WAL mode, one writer thread doing group
 * commits, one reader connection on the loop. See docs/internals/store.md. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <sqlite3.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "dedup.h"
#include "log.h"
#include "remedyd-limits.h"
#include "store.h"
#include "util.h"

#define SCHEMA_VERSION 3
#define DEDUP_WINDOW_DEFAULT_USEC (24ULL * 3600ULL * USEC_PER_SEC)
#define MAX_PAGE_COUNT_DEFAULT UINT64_C(1073741823)
/* WAL size (pages) past which the writer checkpoints after a commit: SQLite's
 * default auto-checkpoint threshold, but run after the batch is answered. */
#define STORE_WAL_CHECKPOINT_PAGES 1000

static const char *const action_status_table[_ACTION_STATUS_MAX] = {
        [ACTION_STATUS_QUEUED] = "queued",
        [ACTION_STATUS_HELD] = "held",
        [ACTION_STATUS_DRY_RUN] = "dry_run",
        [ACTION_STATUS_COOLDOWN] = "cooldown",
        [ACTION_STATUS_PROTECTED] = "protected",
        [ACTION_STATUS_UNKNOWN_USER] = "unknown_user",
        [ACTION_STATUS_AMBIGUOUS_USER] = "ambiguous_user",
        [ACTION_STATUS_UNRESOLVED] = "unresolved",
        [ACTION_STATUS_RUNNING] = "running",
        [ACTION_STATUS_DONE] = "done",
        [ACTION_STATUS_FAILED] = "failed",
        [ACTION_STATUS_CANCELLED] = "cancelled",
};

/* Our own copy, so that the store does not depend on config.c. */
static const char *const action_kind_table[_ACTION_KIND_MAX] = {
        [ACTION_SUSPEND] = "suspend",
        [ACTION_REACTIVATE] = "reactivate",
        [ACTION_NOTIFY] = "notify",
};

const char *store_action_status_to_string(ActionStatus s) {
        if (s < 0 || s >= _ACTION_STATUS_MAX)
                return NULL;
        return action_status_table[s];
}

ActionStatus store_action_status_from_string(const char *s) {
        if (!s)
                return _ACTION_STATUS_INVALID;
        for (int i = 0; i < _ACTION_STATUS_MAX; i++)
                if (strcmp(action_status_table[i], s) == 0)
                        return (ActionStatus) i;
        return _ACTION_STATUS_INVALID;
}

static const char *kind_to_string(ActionKind k) {
        if (k < 0 || k >= _ACTION_KIND_MAX)
                return NULL;
        return action_kind_table[k];
}

static ActionKind kind_from_string(const char *s) {
        if (!s)
                return _ACTION_KIND_INVALID;
        for (int i = 0; i < _ACTION_KIND_MAX; i++)
                if (strcmp(action_kind_table[i], s) == 0)
                        return (ActionKind) i;
        return _ACTION_KIND_INVALID;
}

static const char schema_v1[] =
        "CREATE TABLE events ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  source TEXT NOT NULL,"
        "  dedup_key TEXT,"
        "  received_usec INTEGER NOT NULL,"
        "  body BLOB);"
        "CREATE INDEX events_dedup ON events(source, dedup_key, received_usec);"
        "CREATE TABLE actions ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  event_id TEXT,"
        "  rule TEXT NOT NULL,"
        "  action TEXT NOT NULL,"
        "  user TEXT,"
        "  user_id TEXT,"
        "  user_key TEXT,"
        "  reason TEXT,"
        "  status TEXT NOT NULL,"
        "  detail TEXT,"
        "  created_usec INTEGER NOT NULL,"
        "  updated_usec INTEGER NOT NULL,"
        "  not_before_usec INTEGER NOT NULL DEFAULT 0,"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  for_usec INTEGER NOT NULL DEFAULT 0,"
        "  cooldown_usec INTEGER NOT NULL DEFAULT 0,"
        "  dry_run INTEGER NOT NULL DEFAULT 0,"
        "  parent_id TEXT,"
        "  api_code TEXT,"
        "  api_message TEXT);"
        "CREATE INDEX actions_event ON actions(event_id);"
        "CREATE INDEX actions_due ON actions(status, not_before_usec);"
        "CREATE INDEX actions_cooldown ON actions(rule, user_key, created_usec);"
        "CREATE INDEX actions_cap ON actions(action, status, created_usec);"
        "CREATE INDEX actions_user ON actions(user_key, created_usec);"
        "CREATE TABLE audit ("
        "  seq INTEGER PRIMARY KEY,"
        "  time_usec INTEGER NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  event_id TEXT,"
        "  action_id TEXT,"
        "  rule TEXT,"
        "  user TEXT,"
        "  user_key TEXT,"
        "  from_status TEXT,"
        "  to_status TEXT,"
        "  detail TEXT);"
        "CREATE INDEX audit_user ON audit(user_key, time_usec);"
        "CREATE INDEX audit_user_nocase ON audit(user COLLATE NOCASE, time_usec);"
        "CREATE INDEX audit_time ON audit(time_usec);";

/* v2: an event's history entry comes from its events row (received_usec,
 * source) instead of an audit row written beside it: one B-tree insert per
 * event instead of four. The old rows would show every event twice. */
static const char schema_v2[] =
        "CREATE INDEX events_time ON events(received_usec);"
        "DELETE FROM audit WHERE kind = 'event';";

/* v3: redeliveries are found through the in-memory dedup index (dedup.h),
 * loaded from the events of the window at open: the B-tree on the key put
 * each event on a random page when keys are random. */
static const char schema_v3[] =
        "DROP INDEX IF EXISTS events_dedup;";

#define ACTION_COLUMNS                                                                            \
        "a.id, a.event_id, a.rule, a.action, a.user, a.user_id, a.reason, a.status, a.detail, "   \
        "a.created_usec, a.updated_usec, a.not_before_usec, a.attempts, a.for_usec, "             \
        "a.cooldown_usec, a.dry_run, a.parent_id, a.api_code, a.api_message, "                    \
        "COALESCE(e.received_usec, a.created_usec) "                                              \
        "FROM actions a LEFT JOIN events e ON e.id = a.event_id "

typedef enum WriterStmt {
        W_DEDUP,
        W_EVENT_ACTIONS,
        W_INSERT_EVENT,
        W_INSERT_ACTION,
        W_INSERT_AUDIT,
        W_COOLDOWN,
        W_CAP,
        W_TIMED_PENDING,
        W_SET_STATUS,
        W_GET,
        W_DUE,
        W_NEXT_DUE,
        W_FINISH,
        W_RETRY,
        W_SET_USER_ID,
        W_RESOLVE,
        W_OUTLASTED,
        _W_MAX,
} WriterStmt;

static const char *const writer_sql[_W_MAX] = {
        /* a candidate of the dedup index */
        [W_DEDUP] = "SELECT id FROM events WHERE rowid = ?1 AND source = ?2 AND dedup_key = ?3 "
                    "AND received_usec >= ?4",
        [W_EVENT_ACTIONS] = "SELECT " ACTION_COLUMNS "WHERE a.event_id = ?1 ORDER BY a.rowid",
        [W_INSERT_EVENT] = "INSERT INTO events (id, source, dedup_key, received_usec, body) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
        [W_INSERT_ACTION] = "INSERT INTO actions (id, event_id, rule, action, user, user_id, user_key, reason, "
                            "status, detail, created_usec, updated_usec, not_before_usec, attempts, for_usec, "
                            "cooldown_usec, dry_run, parent_id) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        [W_INSERT_AUDIT] = "INSERT INTO audit (time_usec, kind, event_id, action_id, rule, user, user_key, "
                           "from_status, to_status, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [W_COOLDOWN] = "SELECT 1 FROM actions WHERE rule = ?1 AND (user_key = ?2 OR user_key = ?4) AND created_usec >= ?3 "
                       "AND status IN ('queued', 'held', 'running', 'done', 'dry_run') LIMIT 1",
        [W_CAP] = "SELECT count(*) FROM actions WHERE action = 'suspend' "
                  "AND status IN ('queued', 'running', 'done') AND created_usec >= ?1",
        [W_TIMED_PENDING] = "SELECT id FROM actions WHERE user_key = ?1 AND action = 'reactivate' "
                            "AND parent_id IS NOT NULL AND status IN ('queued', 'held') "
                            "AND (?2 IS NULL OR not_before_usec < ?2)",
        [W_SET_STATUS] = "UPDATE actions SET status = ?2, updated_usec = ?3 WHERE id = ?1",
        [W_GET] = "SELECT " ACTION_COLUMNS "WHERE a.id = ?1",
        [W_DUE] = "SELECT id FROM actions WHERE status = 'queued' AND not_before_usec <= ?1 "
                  "ORDER BY not_before_usec LIMIT ?2",
        [W_NEXT_DUE] = "SELECT min(not_before_usec) FROM actions WHERE status = 'queued'",
        [W_FINISH] = "UPDATE actions SET status = ?2, api_code = ?3, api_message = ?4, "
                     "detail = COALESCE(?5, detail), updated_usec = ?6 WHERE id = ?1",
        [W_RETRY] = "UPDATE actions SET status = 'queued', attempts = attempts + 1, not_before_usec = ?2, "
                    "detail = COALESCE(?3, detail), updated_usec = ?4 WHERE id = ?1",
        [W_SET_USER_ID] = "UPDATE actions SET user_id = ?2, user_key = ?2, updated_usec = ?3 WHERE id = ?1",
        [W_RESOLVE] = "UPDATE actions SET status = ?2, detail = COALESCE(?3, detail), updated_usec = ?4 "
                      "WHERE id = ?1",
        [W_OUTLASTED] = "SELECT 1 FROM actions WHERE user_key = ?1 AND action = 'suspend' AND id <> ?2 "
                        "AND created_usec >= ?3 AND (status IN ('queued', 'running') "
                        "OR (status = 'done' AND (for_usec = 0 OR updated_usec + for_usec > ?4))) LIMIT 1",
};

typedef enum ReaderStmt {
        R_COUNT_STATUS,
        R_CAP,
        R_LIST_ALL,
        R_LIST_STATUS,
        R_GET,
        R_HISTORY_ALL,
        R_HISTORY_USER,
        _R_MAX,
} ReaderStmt;

#define AUDIT_COLUMNS "seq, time_usec, kind, event_id, action_id, rule, user, from_status, to_status, detail "

static const char *const reader_sql[_R_MAX] = {
        [R_COUNT_STATUS] = "SELECT count(*) FROM actions WHERE status = ?1",
        [R_CAP] = "SELECT count(*) FROM actions WHERE action = 'suspend' "
                  "AND status IN ('queued', 'running', 'done') AND created_usec >= ?1",
        [R_LIST_ALL] = "SELECT " ACTION_COLUMNS "ORDER BY a.rowid DESC LIMIT ?1",
        [R_LIST_STATUS] = "SELECT " ACTION_COLUMNS "WHERE a.status = ?2 ORDER BY a.rowid DESC LIMIT ?1",
        [R_GET] = "SELECT " ACTION_COLUMNS "WHERE a.id = ?1",
        /* Newest first: audit rows and events (kind "event", detail = source;
         * an event sorts before the decisions made at the same time). */
        [R_HISTORY_ALL] = "SELECT * FROM (SELECT " AUDIT_COLUMNS "FROM audit WHERE time_usec >= ?1 "
                          "ORDER BY time_usec DESC, seq DESC LIMIT ?2) "
                          "UNION ALL SELECT * FROM (SELECT 0, received_usec, 'event', id, NULL, NULL, NULL, NULL, "
                          "NULL, source FROM events WHERE received_usec >= ?1 ORDER BY received_usec DESC LIMIT ?2) "
                          "ORDER BY 2 DESC, 1 DESC LIMIT ?2",
        [R_HISTORY_USER] = "SELECT " AUDIT_COLUMNS "FROM audit WHERE (user_key = ?3 OR user = ?4 COLLATE NOCASE) "
                           "AND time_usec >= ?1 ORDER BY seq DESC LIMIT ?2",
};

typedef enum OpType {
        OP_EVENT,
        OP_MANUAL,
        OP_CLAIM,
        OP_FINISH,
        OP_RETRY,
        OP_SET_USER_ID,
        OP_RESOLVE,
        OP_RELEASE,
        OP_CANCEL,
        OP_MAX_PAGES,
} OpType;

typedef struct StoreOp StoreOp;
struct StoreOp {
        StoreOp *next;
        OpType type;
        int r;
        void *userdata;
        StoreEventCallback event_cb;
        StoreDoneCallback done_cb;
        StoreClaimCallback claim_cb;
        StoreActionCallback action_cb;

        StoreEvent *ev;          /* OP_EVENT */
        StoreAction *action;     /* OP_MANUAL */
        char id[33];
        bool success;
        ActionStatus status;
        uint64_t value;          /* not_before, claim time, page count */
        unsigned max;
        char *text1, *text2, *text3;

        bool duplicate;
        StoreAction *claimed;
        size_t n_claimed;
        uint64_t next_due;
};

struct Store {
        sd_event *event;
        sd_event_source *efd_source;
        sd_event_source *kick_source; /* wakes the writer once per loop iteration */
        int efd;
        sqlite3 *wdb, *rdb;
        int wal_pages;            /* writer thread only: WAL size after the last commit */
        DedupIndex *dedup;        /* writer thread only (and open, before it starts) */
        sqlite3_stmt *wst[_W_MAX];
        sqlite3_stmt *rst[_R_MAX];

        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool lock_initialised;

        /* under lock */
        StoreOp *pending, *pending_tail;
        StoreOp *done, *done_tail;
        size_t n_pending;         /* operations in pending */
        bool writer_idle;         /* the writer waits for pending */
        size_t outstanding;
        bool closing;
        StoreOptions opts;
        bool writable;
        uint64_t commits, failed_commits, ops;
        int last_error;
};

/* --- SQLite helpers ------------------------------------------------------- */

static int sqlite_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_IOERR:
                return -EIO;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_CANTOPEN:
                return -EACCES;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EPERM;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_INTERRUPT:
                return -EINTR;
        default:
                return -EIO;
        }
}

static int sql_exec(sqlite3 *db, const char *sql) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return log_debug_errno(sqlite_errno(rc), "store: \"%.40s\" failed: %s", sql, sqlite3_errmsg(db));
        return 0;
}

/* Returns the cached statement, reset, with its bindings cleared. */
static int stmt_get(sqlite3 *db, sqlite3_stmt **cache, const char *sql, sqlite3_stmt **ret) {
        int rc;

        *ret = NULL; /* set on every path: gcc -O2/-O3 cannot see log_*_errno() < 0 */
        if (!*cache) {
                rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, cache, NULL);
                if (rc != SQLITE_OK)
                        return log_error_errno(sqlite_errno(rc), "store: cannot prepare statement: %s",
                                               sqlite3_errmsg(db));
        } else {
                sqlite3_reset(*cache);
                sqlite3_clear_bindings(*cache);
        }
        *ret = *cache;
        return 0;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s) {
        int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
        return sqlite_errno(rc);
}

static int bind_u64(sqlite3_stmt *st, int i, uint64_t v) {
        return sqlite_errno(sqlite3_bind_int64(st, i, (sqlite3_int64) (v > INT64_MAX ? INT64_MAX : v)));
}

/* Steps a statement that returns no row (or whose rows are ignored). */
static int step_done(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        int r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sqlite_errno(sqlite3_reset(st));
        sqlite3_reset(st);
        return r;
}

/* Steps once: 1 for a row, 0 when done, <0 on error. */
static int step_row(sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return sqlite_errno(sqlite3_reset(st));
}

static uint64_t column_u64(sqlite3_stmt *st, int i) {
        sqlite3_int64 v = sqlite3_column_int64(st, i);
        return v < 0 ? 0 : (uint64_t) v;
}

static int column_strdup(sqlite3_stmt *st, int i, char **ret) {
        const unsigned char *t = sqlite3_column_text(st, i);

        if (!t) {
                if (sqlite3_column_type(st, i) != SQLITE_NULL)
                        return -ENOMEM;
                *ret = NULL;
                return 0;
        }
        *ret = mem_strdup((const char *) t);
        return *ret ? 0 : -ENOMEM;
}

/* Reads one ACTION_COLUMNS row into a (zeroed beforehand). */
static int action_from_row(sqlite3_stmt *st, StoreAction *a) {
        const unsigned char *t;
        int r;

        t = sqlite3_column_text(st, 0);
        if (!t || strlen((const char *) t) >= sizeof(a->id))
                return -EBADMSG;
        strcpy(a->id, (const char *) t);
        if ((r = column_strdup(st, 1, &a->event_id)) < 0 || (r = column_strdup(st, 2, &a->rule)) < 0 ||
            (r = column_strdup(st, 4, &a->user)) < 0 || (r = column_strdup(st, 5, &a->user_id)) < 0 ||
            (r = column_strdup(st, 6, &a->reason)) < 0 || (r = column_strdup(st, 8, &a->detail)) < 0 ||
            (r = column_strdup(st, 16, &a->parent_id)) < 0 || (r = column_strdup(st, 17, &a->api_code)) < 0 ||
            (r = column_strdup(st, 18, &a->api_message)) < 0)
                return r;
        a->action = kind_from_string((const char *) sqlite3_column_text(st, 3));
        a->status = store_action_status_from_string((const char *) sqlite3_column_text(st, 7));
        a->created_usec = column_u64(st, 9);
        a->updated_usec = column_u64(st, 10);
        a->not_before_usec = column_u64(st, 11);
        a->attempts = (unsigned) column_u64(st, 12);
        a->for_usec = column_u64(st, 13);
        a->cooldown_usec = column_u64(st, 14);
        a->dry_run = sqlite3_column_int(st, 15) != 0;
        a->received_usec = column_u64(st, 19);
        return 0;
}

/* Runs a prepared ACTION_COLUMNS query (bound by the caller) into a new
 * array of at most max rows. */
static int actions_collect(sqlite3_stmt *st, size_t max, StoreAction **ret, size_t *ret_n) {
        StoreAction *v = NULL;
        size_t n = 0, cap = 0;
        int r;

        for (;;) {
                r = step_row(st);
                if (r <= 0)
                        break;
                if (n >= max)
                        break;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        StoreAction *nv = mem_reallocarray(v, ncap, sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
                v[n] = (StoreAction) {};
                r = action_from_row(st, &v[n]);
                n++;
                if (r < 0)
                        break;
        }
        sqlite3_reset(st);
        if (r < 0) {
                store_actions_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

void store_action_done(StoreAction *a) {
        if (!a)
                return;
        mem_free(a->rule);
        mem_free(a->user);
        mem_free(a->user_id);
        mem_free(a->reason);
        mem_free(a->detail);
        mem_free(a->event_id);
        mem_free(a->parent_id);
        mem_free(a->api_code);
        mem_free(a->api_message);
        a->rule = a->user = a->user_id = a->reason = a->detail = a->event_id = NULL;
        a->parent_id = a->api_code = a->api_message = NULL;
}

void store_actions_free(StoreAction *a, size_t n) {
        if (!a)
                return;
        for (size_t i = 0; i < n; i++)
                store_action_done(&a[i]);
        mem_free(a);
}

StoreEvent *store_event_free(StoreEvent *ev) {
        if (!ev)
                return NULL;
        mem_free(ev->source);
        mem_free(ev->dedup_key);
        mem_free(ev->body);
        for (size_t i = 0; i < ev->n_actions; i++)
                store_action_done(&ev->actions[i]);
        mem_free(ev->actions);
        mem_free(ev);
        return NULL;
}

static StoreOp *op_free(StoreOp *op) {
        if (!op)
                return NULL;
        store_event_free(op->ev);
        store_actions_free(op->action, 1);
        store_actions_free(op->claimed, op->n_claimed);
        mem_free(op->text1);
        mem_free(op->text2);
        mem_free(op->text3);
        mem_free(op);
        return NULL;
}

/* --- writer side ---------------------------------------------------------- */

/* A formatted string through mem_malloc; NULL on OOM. */
static char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *p;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        p = mem_malloc((size_t) n + 1);
        if (!p)
                return NULL;
        va_start(ap, fmt);
        (void) vsnprintf(p, (size_t) n + 1, fmt, ap);
        va_end(ap);
        return p;
}

/* Ids for events and actions: 32 lower-case hex characters like
 * random_id(), but time-ordered: 48 bits of milliseconds since the epoch,
 * then 80 random bits. Both tables key on the id, and a random key puts
 * every insert on a different B-tree page: with time-ordered keys one
 * commit of a burst touches a few pages instead of one per event (WAL
 * frames written per event 1.6 -> ~0.6). The random bits come from a
 * per-thread pool refilled 4 KiB at a time: one getrandom() per event was
 * the writer's third most frequent syscall. */
static int id_new(char out[static 33]) {
        static _Thread_local uint8_t pool[4096];
        static _Thread_local size_t avail = 0;
        uint8_t b[16];
        uint64_t ms = now_usec(CLOCK_REALTIME) / 1000;

        if (avail < 10) {
                size_t got = 0;

                while (got < sizeof(pool)) {
                        ssize_t k = getrandom(pool + got, sizeof(pool) - got, 0);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        got += (size_t) k;
                }
                avail = sizeof(pool);
        }
        for (size_t i = 0; i < 6; i++)
                b[i] = (uint8_t) (ms >> (8 * (5 - i)));
        memcpy(b + 6, pool + sizeof(pool) - avail, 10);
        explicit_bzero(pool + sizeof(pool) - avail, 10);
        avail -= 10;
        hex_encode(b, sizeof(b), out);
        return 0;
}

static bool is_resolution_status(ActionStatus s) {
        return s == ACTION_STATUS_UNKNOWN_USER || s == ACTION_STATUS_AMBIGUOUS_USER ||
               s == ACTION_STATUS_UNRESOLVED || s == ACTION_STATUS_PROTECTED;
}

static int wstmt(Store *s, WriterStmt id, sqlite3_stmt **ret) {
        return stmt_get(s->wdb, &s->wst[id], writer_sql[id], ret);
}

/* The user key for cooldown and history: the user id when known, else the
 * lower-cased user string. Caller frees. */
static int user_key_make(const char *user, const char *user_id, char **ret) {
        if (user_id)
                *ret = mem_strdup(user_id);
        else if (user)
                *ret = str_tolower_dup(user);
        else {
                *ret = NULL;
                return 0;
        }
        return *ret ? 0 : -ENOMEM;
}

static int audit_insert(Store *s, uint64_t now, const char *kind, const char *event_id, const char *action_id,
                        const char *rule, const char *user, const char *user_key, const char *from,
                        const char *to, const char *detail) {
        sqlite3_stmt *st;
        int r;

        r = wstmt(s, W_INSERT_AUDIT, &st);
        if (r < 0)
                return r;
        if ((r = bind_u64(st, 1, now)) < 0 || (r = bind_text(st, 2, kind)) < 0 ||
            (r = bind_text(st, 3, event_id)) < 0 || (r = bind_text(st, 4, action_id)) < 0 ||
            (r = bind_text(st, 5, rule)) < 0 || (r = bind_text(st, 6, user)) < 0 ||
            (r = bind_text(st, 7, user_key)) < 0 || (r = bind_text(st, 8, from)) < 0 ||
            (r = bind_text(st, 9, to)) < 0 || (r = bind_text(st, 10, detail)) < 0)
                return r;
        return step_done(st);
}

/* Loads one action by id on the writer connection: 1 found, 0 not. */
static int writer_get(Store *s, const char *id, StoreAction *ret) {
        sqlite3_stmt *st;
        int r;

        r = wstmt(s, W_GET, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, id)) < 0)
                return r;
        r = step_row(st);
        if (r <= 0)
                return r;
        *ret = (StoreAction) {};
        r = action_from_row(st, ret);
        sqlite3_reset(st);
        if (r < 0) {
                store_action_done(ret);
                return r;
        }
        return 1;
}

static int set_status(Store *s, const char *id, ActionStatus to, uint64_t now) {
        sqlite3_stmt *st;
        int r;

        r = wstmt(s, W_SET_STATUS, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, id)) < 0 || (r = bind_text(st, 2, store_action_status_to_string(to))) < 0 ||
            (r = bind_u64(st, 3, now)) < 0)
                return r;
        return step_done(st);
}

/* Moves an action loaded by writer_get() to a new status with its audit row. */
static int transition(Store *s, const StoreAction *a, ActionStatus to, uint64_t now, const char *detail) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = set_status(s, a->id, to, now);
        if (r < 0)
                return r;
        r = user_key_make(a->user, a->user_id, &key);
        if (r < 0)
                return r;
        return audit_insert(s, now, "transition", a->event_id, a->id, a->rule, a->user, key,
                            store_action_status_to_string(a->status), store_action_status_to_string(to), detail);
}

/* A queued suspension of user_key ending at end_usec (USEC_INFINITY: never)
 * cancels the pending timed reactivations that would end it sooner. */
static int cancel_timed_reactivations(Store *s, const char *user_key, uint64_t end_usec, const char *by_id,
                                      uint64_t now) {
        _cleanup_free_ char *detail = NULL;
        char (*ids)[33] = NULL;
        size_t n = 0, cap = 0;
        sqlite3_stmt *st;
        int r;

        if (!user_key)
                return 0;
        r = wstmt(s, W_TIMED_PENDING, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, user_key)) < 0)
                return r;
        if (end_usec != USEC_INFINITY && (r = bind_u64(st, 2, end_usec)) < 0)
                return r;
        while ((r = step_row(st)) > 0) {
                const char *id = (const char *) sqlite3_column_text(st, 0);
                if (!id || strlen(id) >= 33)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 4;
                        char (*nids)[33] = mem_reallocarray(ids, ncap, sizeof(*ids));
                        if (!nids) {
                                r = -ENOMEM;
                                break;
                        }
                        ids = nids;
                        cap = ncap;
                }
                strcpy(ids[n++], id);
        }
        sqlite3_reset(st);
        if (r < 0)
                goto out;

        if (n > 0 && !(detail = strdup_printf("superseded by suspension %s", by_id))) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                StoreAction a;

                r = writer_get(s, ids[i], &a);
                if (r <= 0)
                        goto out;
                r = transition(s, &a, ACTION_STATUS_CANCELLED, now, detail);
                store_action_done(&a);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        mem_free(ids);
        return r;
}

static int guard_cooldown(Store *s, const StoreAction *a, const char *key, uint64_t now, bool *ret) {
        _cleanup_free_ char *email_key = NULL;
        sqlite3_stmt *st;
        int r;

        *ret = false;
        if (a->cooldown_usec == 0 || !key)
                return 0;
        /* An earlier action of the same user may have been recorded before
         * its user id was known (keyed by the email then): match that key
         * too. */
        if (a->user_id && a->user) {
                email_key = str_tolower_dup(a->user);
                if (!email_key)
                        return -ENOMEM;
        }
        r = wstmt(s, W_COOLDOWN, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, a->rule)) < 0 || (r = bind_text(st, 2, key)) < 0 ||
            (r = bind_u64(st, 3, now > a->cooldown_usec ? now - a->cooldown_usec : 0)) < 0 ||
            (r = bind_text(st, 4, email_key)) < 0) {
                sqlite3_reset(st);
                return r;
        }
        r = step_row(st);
        sqlite3_reset(st);
        if (r < 0)
                return r;
        *ret = r > 0;
        return 0;
}

static int count_cap(sqlite3 *db, sqlite3_stmt *st, uint64_t since, uint64_t *ret) {
        int r;

        if ((r = bind_u64(st, 1, since)) < 0)
                return r;
        r = step_row(st);
        if (r > 0)
                *ret = column_u64(st, 0);
        sqlite3_reset(st);
        if (r == 0)
                r = -EIO;
        return r < 0 ? r : 0;
}

static int guard_cap(Store *s, const StoreAction *a, const StoreOptions *o, uint64_t now, bool *ret) {
        sqlite3_stmt *st;
        uint64_t n = 0;
        int r;

        *ret = false;
        if (a->action != ACTION_SUSPEND || o->max_suspensions == 0)
                return 0;
        r = wstmt(s, W_CAP, &st);
        if (r < 0)
                return r;
        r = count_cap(s->wdb, st, now > o->window_usec ? now - o->window_usec : 0, &n);
        if (r < 0)
                return r;
        *ret = n >= o->max_suspensions;
        return 0;
}

/* Applies the writer-side guardrails, inserts the action and its audit row.
 * a->id, event_id and timestamps are filled in. */
static int action_insert(Store *s, StoreAction *a, const char *event_id, const char *audit_kind,
                         const char *audit_detail, const StoreOptions *o, uint64_t now) {
        _cleanup_free_ char *key = NULL;
        sqlite3_stmt *st;
        int r;

        if (a->status < 0 || a->status >= _ACTION_STATUS_MAX || !kind_to_string(a->action) || !a->rule)
                return -EINVAL;
        r = id_new(a->id);
        if (r < 0)
                return r;
        r = user_key_make(a->user, a->user_id, &key);
        if (r < 0)
                return r;
        if (event_id && !a->event_id) {
                a->event_id = mem_strdup(event_id);
                if (!a->event_id)
                        return -ENOMEM;
        }
        a->created_usec = a->updated_usec = now;

        if (a->status == ACTION_STATUS_QUEUED) {
                bool hit;

                r = guard_cooldown(s, a, key, now, &hit);
                if (r < 0)
                        return r;
                if (hit)
                        a->status = ACTION_STATUS_COOLDOWN;
                else if (a->dry_run)
                        a->status = ACTION_STATUS_DRY_RUN;
                else {
                        r = guard_cap(s, a, o, now, &hit);
                        if (r < 0)
                                return r;
                        if (hit)
                                a->status = ACTION_STATUS_HELD;
                }
        }

        r = wstmt(s, W_INSERT_ACTION, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, a->id)) < 0 || (r = bind_text(st, 2, a->event_id)) < 0 ||
            (r = bind_text(st, 3, a->rule)) < 0 || (r = bind_text(st, 4, kind_to_string(a->action))) < 0 ||
            (r = bind_text(st, 5, a->user)) < 0 || (r = bind_text(st, 6, a->user_id)) < 0 ||
            (r = bind_text(st, 7, key)) < 0 || (r = bind_text(st, 8, a->reason)) < 0 ||
            (r = bind_text(st, 9, store_action_status_to_string(a->status))) < 0 ||
            (r = bind_text(st, 10, a->detail)) < 0 || (r = bind_u64(st, 11, now)) < 0 ||
            (r = bind_u64(st, 12, a->not_before_usec)) < 0 || (r = bind_u64(st, 13, a->attempts)) < 0 ||
            (r = bind_u64(st, 14, a->for_usec)) < 0 || (r = bind_u64(st, 15, a->cooldown_usec)) < 0 ||
            (r = bind_u64(st, 16, a->dry_run)) < 0 || (r = bind_text(st, 17, a->parent_id)) < 0)
                return r;
        r = step_done(st);
        if (r < 0)
                return r;

        r = audit_insert(s, now, audit_kind, a->event_id, a->id, a->rule, a->user, key, NULL,
                         store_action_status_to_string(a->status),
                         audit_detail ? audit_detail : a->detail ? a->detail : a->reason);
        if (r < 0)
                return r;

        if (a->status == ACTION_STATUS_QUEUED && a->action == ACTION_SUSPEND)
                return cancel_timed_reactivations(s, key, a->for_usec == 0 ? USEC_INFINITY : now + a->for_usec,
                                                  a->id, now);
        return 0;
}

static int op_event(Store *s, StoreOp *op, const StoreOptions *o) {
        StoreEvent *ev = op->ev;
        uint64_t now = now_usec(CLOCK_REALTIME), window, since, hash = 0;
        sqlite3_stmt *st;
        int r;

        if (ev->received_usec == 0)
                ev->received_usec = now;
        window = o->dedup_window_usec ? o->dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        since = ev->received_usec > window ? ev->received_usec - window : 0;

        if (ev->dedup_key) {
                char orig[33] = "";
                size_t cursor = 0;
                int64_t rowid;

                hash = dedup_index_hash(s->dedup, ev->source, ev->dedup_key);
                while (!orig[0] && dedup_index_next(s->dedup, hash, since, &cursor, &rowid)) {
                        r = wstmt(s, W_DEDUP, &st);
                        if (r < 0)
                                return r;
                        if ((r = bind_u64(st, 1, (uint64_t) rowid)) < 0 || (r = bind_text(st, 2, ev->source)) < 0 ||
                            (r = bind_text(st, 3, ev->dedup_key)) < 0 || (r = bind_u64(st, 4, since)) < 0)
                                return r;
                        r = step_row(st);
                        if (r > 0) {
                                const char *t = (const char *) sqlite3_column_text(st, 0);
                                if (t && strlen(t) < sizeof(orig))
                                        strcpy(orig, t);
                        }
                        sqlite3_reset(st);
                        if (r < 0)
                                return r;
                }
                if (orig[0]) {
                        StoreAction *v = NULL;
                        size_t n = 0;

                        r = wstmt(s, W_EVENT_ACTIONS, &st);
                        if (r < 0)
                                return r;
                        if ((r = bind_text(st, 1, orig)) < 0)
                                return r;
                        r = actions_collect(st, SIZE_MAX, &v, &n);
                        if (r < 0)
                                return r;
                        for (size_t i = 0; i < ev->n_actions; i++)
                                store_action_done(&ev->actions[i]);
                        mem_free(ev->actions);
                        ev->actions = v;
                        ev->n_actions = n;
                        strcpy(ev->id, orig);
                        op->duplicate = true;
                        return 0;
                }
        }

        r = id_new(ev->id);
        if (r < 0)
                return r;
        r = wstmt(s, W_INSERT_EVENT, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, ev->id)) < 0 || (r = bind_text(st, 2, ev->source)) < 0 ||
            (r = bind_text(st, 3, ev->dedup_key)) < 0 || (r = bind_u64(st, 4, ev->received_usec)) < 0)
                return r;
        r = ev->body ? sqlite_errno(sqlite3_bind_text(st, 5, ev->body, (int) ev->body_len, SQLITE_STATIC))
                     : sqlite_errno(sqlite3_bind_null(st, 5));
        if (r < 0)
                return r;
        r = step_done(st);
        if (r < 0)
                return r;
        if (ev->dedup_key) {
                uint64_t evicted = dedup_index_evicted(s->dedup);

                r = dedup_index_add(s->dedup, hash, sqlite3_last_insert_rowid(s->wdb), ev->received_usec, since);
                if (r < 0)
                        return r;
                if (dedup_index_evicted(s->dedup) != evicted)
                        log_warning("store: more than %u deliveries in the dedup window: the oldest %" PRIu64
                                    " were forgotten, their redeliveries will count as new events",
                                    LIMIT_DEDUP_KEYS, dedup_index_evicted(s->dedup) - evicted);
        }
        /* No audit row: store_history() reads events from this table. */
        for (size_t i = 0; i < ev->n_actions; i++) {
                r = action_insert(s, &ev->actions[i], ev->id, "decision", NULL, o, now);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int op_manual(Store *s, StoreOp *op, const StoreOptions *o) {
        StoreAction *a = op->action;

        mem_free(a->rule);
        a->rule = mem_strdup("manual");
        if (!a->rule)
                return -ENOMEM;
        return action_insert(s, a, NULL, "manual", a->reason, o, now_usec(CLOCK_REALTIME));
}

static int op_claim(Store *s, StoreOp *op) {
        uint64_t now = now_usec(CLOCK_REALTIME), when = op->value ? op->value : now;
        char (*ids)[33] = NULL;
        size_t n = 0;
        sqlite3_stmt *st;
        int r;

        ids = mem_calloc(op->max, sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        r = wstmt(s, W_DUE, &st);
        if (r < 0)
                goto out;
        if ((r = bind_u64(st, 1, when)) < 0 || (r = bind_u64(st, 2, op->max)) < 0)
                goto out;
        while (n < op->max && (r = step_row(st)) > 0) {
                const char *id = (const char *) sqlite3_column_text(st, 0);
                if (id && strlen(id) < 33)
                        strcpy(ids[n++], id);
        }
        sqlite3_reset(st);
        if (r < 0)
                goto out;

        op->claimed = mem_calloc(n, sizeof(StoreAction));
        if (!op->claimed) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                StoreAction *a = &op->claimed[op->n_claimed];

                r = writer_get(s, ids[i], a);
                if (r < 0)
                        goto out;
                if (r == 0)
                        continue;
                op->n_claimed++;
                r = transition(s, a, ACTION_STATUS_RUNNING, now, NULL);
                if (r < 0)
                        goto out;
                a->status = ACTION_STATUS_RUNNING;
                a->updated_usec = now;
        }

        r = wstmt(s, W_NEXT_DUE, &st);
        if (r < 0)
                goto out;
        r = step_row(st);
        if (r > 0)
                op->next_due = sqlite3_column_type(st, 0) == SQLITE_NULL ? USEC_INFINITY : column_u64(st, 0);
        sqlite3_reset(st);
        if (r == 0)
                op->next_due = USEC_INFINITY;
        r = r < 0 ? r : 0;
out:
        mem_free(ids);
        return r;
}

/* Loads the action for a transition op; sets op->r to -ENOENT/-EBUSY and
 * returns 0 when the op does not apply. Returns 1 with *a loaded. */
static int op_load(Store *s, StoreOp *op, StoreAction *a, unsigned allowed_mask) {
        int r = writer_get(s, op->id, a);
        if (r < 0)
                return r;
        if (r == 0) {
                op->r = -ENOENT;
                return 0;
        }
        if (a->status < 0 || !(allowed_mask & (1u << a->status))) {
                store_action_done(a);
                op->r = -EBUSY;
                return 0;
        }
        return 1;
}

#define BIT(s) (1u << (s))

static int timed_reactivation_insert(Store *s, const StoreAction *susp, uint64_t now, const StoreOptions *o) {
        _cleanup_free_ char *key = NULL, *detail = NULL;
        StoreAction re = {};
        sqlite3_stmt *st;
        int r;

        r = user_key_make(susp->user, susp->user_id, &key);
        if (r < 0)
                return r;
        if (key) {
                /* a later suspension of the same user that outlasts this one wins */
                r = wstmt(s, W_OUTLASTED, &st);
                if (r < 0)
                        return r;
                if ((r = bind_text(st, 1, key)) < 0 || (r = bind_text(st, 2, susp->id)) < 0 ||
                    (r = bind_u64(st, 3, susp->created_usec)) < 0 || (r = bind_u64(st, 4, now + susp->for_usec)) < 0)
                        return r;
                r = step_row(st);
                sqlite3_reset(st);
                if (r != 0)
                        return r < 0 ? r : 0;
        }

        re = (StoreAction) {
                .action = ACTION_REACTIVATE,
                .status = ACTION_STATUS_QUEUED,
                .not_before_usec = now + susp->for_usec,
                .rule = susp->rule ? mem_strdup(susp->rule) : NULL,
                .user = susp->user ? mem_strdup(susp->user) : NULL,
                .user_id = susp->user_id ? mem_strdup(susp->user_id) : NULL,
                .reason = mem_strdup("timed suspension ended"),
                .parent_id = mem_strdup(susp->id),
        };
        if ((susp->rule && !re.rule) || (susp->user && !re.user) || (susp->user_id && !re.user_id) || !re.reason ||
            !re.parent_id) {
                r = -ENOMEM;
                goto out;
        }
        detail = strdup_printf("timed reactivation of %s", susp->id);
        if (!detail) {
                r = -ENOMEM;
                goto out;
        }
        /* Not subject to cooldown, dry-run or the cap: already decided. */
        re.status = ACTION_STATUS_QUEUED;
        r = action_insert(s, &re, susp->event_id, "decision", detail, &(StoreOptions) {}, now);
        (void) o;
out:
        store_action_done(&re);
        return r;
}

static int op_transition(Store *s, StoreOp *op, const StoreOptions *o) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        _cleanup_free_ char *msg = NULL;
        StoreAction a;
        sqlite3_stmt *st;
        int r;

        switch (op->type) {
        case OP_FINISH: {
                ActionStatus to = op->success ? ACTION_STATUS_DONE : ACTION_STATUS_FAILED;
                const char *d;

                r = op_load(s, op, &a, BIT(ACTION_STATUS_RUNNING));
                if (r <= 0)
                        return r;
                r = wstmt(s, W_FINISH, &st);
                if (r < 0)
                        goto out;
                if ((r = bind_text(st, 1, a.id)) < 0 ||
                    (r = bind_text(st, 2, store_action_status_to_string(to))) < 0 ||
                    (r = bind_text(st, 3, op->text1)) < 0 || (r = bind_text(st, 4, op->text2)) < 0 ||
                    (r = bind_text(st, 5, op->text3)) < 0 || (r = bind_u64(st, 6, now)) < 0)
                        goto out;
                r = step_done(st);
                if (r < 0)
                        goto out;
                if (op->text1 || op->text2) {
                        msg = strdup_printf("api code %s: %s%s%s", op->text1 ? op->text1 : "-",
                                            op->text2 ? op->text2 : "-", op->text3 ? "; " : "",
                                            op->text3 ? op->text3 : "");
                        if (!msg) {
                                r = -ENOMEM;
                                goto out;
                        }
                        d = msg;
                } else
                        d = op->text3;
                {
                        _cleanup_free_ char *key = NULL;
                        r = user_key_make(a.user, a.user_id, &key);
                        if (r < 0)
                                goto out;
                        r = audit_insert(s, now, "transition", a.event_id, a.id, a.rule, a.user, key,
                                         "running", store_action_status_to_string(to), d);
                        if (r < 0)
                                goto out;
                }
                if (op->success && a.action == ACTION_SUSPEND && a.for_usec > 0)
                        r = timed_reactivation_insert(s, &a, now, o);
                break;
        }
        case OP_RETRY:
                r = op_load(s, op, &a, BIT(ACTION_STATUS_RUNNING));
                if (r <= 0)
                        return r;
                r = wstmt(s, W_RETRY, &st);
                if (r < 0)
                        goto out;
                if ((r = bind_text(st, 1, a.id)) < 0 || (r = bind_u64(st, 2, op->value)) < 0 ||
                    (r = bind_text(st, 3, op->text3)) < 0 || (r = bind_u64(st, 4, now)) < 0)
                        goto out;
                r = step_done(st);
                if (r < 0)
                        goto out;
                {
                        _cleanup_free_ char *key = NULL;
                        r = user_key_make(a.user, a.user_id, &key);
                        if (r < 0)
                                goto out;
                        msg = strdup_printf("attempt %u failed%s%s", a.attempts + 1, op->text3 ? ": " : "",
                                            op->text3 ? op->text3 : "");
                        if (!msg) {
                                r = -ENOMEM;
                                goto out;
                        }
                        r = audit_insert(s, now, "transition", a.event_id, a.id, a.rule, a.user, key, "running",
                                         "queued", msg);
                }
                break;
        case OP_SET_USER_ID:
                r = op_load(s, op, &a, BIT(ACTION_STATUS_QUEUED) | BIT(ACTION_STATUS_RUNNING) |
                                               BIT(ACTION_STATUS_HELD));
                if (r <= 0)
                        return r;
                r = wstmt(s, W_SET_USER_ID, &st);
                if (r < 0)
                        goto out;
                if ((r = bind_text(st, 1, a.id)) < 0 || (r = bind_text(st, 2, op->text1)) < 0 ||
                    (r = bind_u64(st, 3, now)) < 0)
                        goto out;
                r = step_done(st);
                if (r < 0)
                        goto out;
                msg = strdup_printf("resolved to user id %s", op->text1);
                if (!msg) {
                        r = -ENOMEM;
                        goto out;
                }
                r = audit_insert(s, now, "resolution", a.event_id, a.id, a.rule, a.user, op->text1,
                                 store_action_status_to_string(a.status), store_action_status_to_string(a.status),
                                 msg);
                break;
        case OP_RESOLVE:
                r = op_load(s, op, &a, BIT(ACTION_STATUS_QUEUED) | BIT(ACTION_STATUS_RUNNING));
                if (r <= 0)
                        return r;
                r = wstmt(s, W_RESOLVE, &st);
                if (r < 0)
                        goto out;
                if ((r = bind_text(st, 1, a.id)) < 0 ||
                    (r = bind_text(st, 2, store_action_status_to_string(op->status))) < 0 ||
                    (r = bind_text(st, 3, op->text3)) < 0 || (r = bind_u64(st, 4, now)) < 0)
                        goto out;
                r = step_done(st);
                if (r < 0)
                        goto out;
                {
                        _cleanup_free_ char *key = NULL;
                        r = user_key_make(a.user, a.user_id, &key);
                        if (r < 0)
                                goto out;
                        r = audit_insert(s, now, "transition", a.event_id, a.id, a.rule, a.user, key,
                                         store_action_status_to_string(a.status),
                                         store_action_status_to_string(op->status), op->text3);
                }
                break;
        case OP_RELEASE:
                r = op_load(s, op, &a, BIT(ACTION_STATUS_HELD));
                if (r <= 0)
                        return r;
                r = transition(s, &a, ACTION_STATUS_QUEUED, now, op->text3 ? op->text3 : "released");
                if (r < 0)
                        goto out;
                if (a.action == ACTION_SUSPEND) {
                        _cleanup_free_ char *key = NULL;
                        r = user_key_make(a.user, a.user_id, &key);
                        if (r < 0)
                                goto out;
                        r = cancel_timed_reactivations(s, key, a.for_usec == 0 ? USEC_INFINITY : now + a.for_usec,
                                                       a.id, now);
                }
                break;
        case OP_CANCEL:
                r = op_load(s, op, &a, BIT(ACTION_STATUS_HELD) | BIT(ACTION_STATUS_QUEUED));
                if (r <= 0)
                        return r;
                r = transition(s, &a, ACTION_STATUS_CANCELLED, now, op->text3 ? op->text3 : "cancelled");
                break;
        default:
                return -EINVAL;
        }
out:
        store_action_done(&a);
        return r;
}

static int op_run(Store *s, StoreOp *op, const StoreOptions *o) {
        char sql[64];

        op->r = 0;
        switch (op->type) {
        case OP_EVENT:
                return op_event(s, op, o);
        case OP_MANUAL:
                return op_manual(s, op, o);
        case OP_CLAIM:
                return op_claim(s, op);
        case OP_MAX_PAGES:
                (void) snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %" PRIu64,
                                op->value ? op->value : MAX_PAGE_COUNT_DEFAULT);
                return sql_exec(s->wdb, sql);
        default:
                return op_transition(s, op, o);
        }
}

/* Clears what a failed transaction left in the ops' outputs. */
static void op_reset_outputs(StoreOp *op, int r) {
        op->r = r;
        op->duplicate = false;
        store_actions_free(op->claimed, op->n_claimed);
        op->claimed = NULL;
        op->n_claimed = 0;
}

static int batch_commit(Store *s, StoreOp *batch, const StoreOptions *o) {
        int r;

        r = sql_exec(s->wdb, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        for (StoreOp *op = batch; op; op = op->next) {
                r = op_run(s, op, o);
                if (r < 0)
                        goto fail;
        }
        r = sql_exec(s->wdb, "COMMIT");
        if (r >= 0)
                return 0;
fail:
        if (!sqlite3_get_autocommit(s->wdb))
                (void) sql_exec(s->wdb, "ROLLBACK");
        return r;
}

/* Replaces SQLite's auto-checkpoint, which ran inside the COMMIT that
 * crossed 1,000 WAL pages, before that batch's callers were woken. */
static int wal_hook(void *userdata, sqlite3 *db, const char *name, int pages) {
        Store *s = userdata;

        s->wal_pages = pages;
        return SQLITE_OK;
}

/* Off the commit path: after the batch's completions are handed to the
 * loop. PASSIVE like SQLite's own auto-checkpoint (never waits for
 * readers); a failure (disk full, busy) is tried again after the next
 * commit. */
static void writer_checkpoint(Store *s) {
        int rc;

        if (s->wal_pages < STORE_WAL_CHECKPOINT_PAGES)
                return;
        rc = sqlite3_wal_checkpoint_v2(s->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc == SQLITE_OK)
                s->wal_pages = 0;
        else
                log_debug("store: WAL checkpoint failed: %s, will retry", sqlite3_errstr(rc));
}

static void *writer_main(void *userdata) {
        Store *s = userdata;

        for (;;) {
                StoreOp *batch, *tail;
                StoreOptions o;
                uint64_t n = 0;
                uint64_t one = 1;
                int r;

                pthread_mutex_lock(&s->lock);
                s->writer_idle = true;
                while (!s->pending && !s->closing)
                        pthread_cond_wait(&s->cond, &s->lock);
                s->writer_idle = false;
                if (!s->pending) {
                        pthread_mutex_unlock(&s->lock);
                        break;
                }
                batch = s->pending;
                tail = s->pending_tail;
                s->pending = s->pending_tail = NULL;
                s->n_pending = 0;
                o = s->opts;
                pthread_mutex_unlock(&s->lock);

                r = batch_commit(s, batch, &o);
                for (StoreOp *op = batch; op; op = op->next) {
                        n++;
                        if (r < 0)
                                op_reset_outputs(op, r);
                }
                if (r < 0)
                        log_error_errno(r, "store: commit of %" PRIu64 " operations failed: %m", n);
                else
                        log_trace(TRACE_STORE, "store: committed %" PRIu64 " operations", n);

                pthread_mutex_lock(&s->lock);
                if (r < 0) {
                        s->failed_commits++;
                        s->last_error = -r;
                        s->writable = false;
                } else {
                        s->commits++;
                        s->ops += n;
                        s->last_error = 0;
                        s->writable = true;
                }
                if (s->done_tail)
                        s->done_tail->next = batch;
                else
                        s->done = batch;
                s->done_tail = tail;
                pthread_mutex_unlock(&s->lock);

                if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                        log_warning_errno(errno, "store: cannot wake the loop: %m, ignoring");

                writer_checkpoint(s);
        }
        return NULL;
}

/* --- loop side ------------------------------------------------------------ */

static void op_complete(Store *s, StoreOp *op) {
        switch (op->type) {
        case OP_EVENT:
                if (op->event_cb)
                        op->event_cb(s, op->r, op->ev, op->duplicate, op->userdata);
                break;
        case OP_MANUAL:
                if (op->action_cb)
                        op->action_cb(s, op->r, op->action, op->userdata);
                break;
        case OP_CLAIM:
                if (op->claim_cb)
                        op->claim_cb(s, op->r, op->claimed, op->n_claimed, op->r < 0 ? 0 : op->next_due,
                                     op->userdata);
                break;
        default:
                if (op->done_cb)
                        op->done_cb(s, op->r, op->userdata);
                break;
        }
}

static void dispatch_done(Store *s) {
        StoreOp *list;

        pthread_mutex_lock(&s->lock);
        list = s->done;
        s->done = s->done_tail = NULL;
        pthread_mutex_unlock(&s->lock);

        while (list) {
                StoreOp *op = list;
                list = op->next;
                op_complete(s, op);
                op_free(op);
                pthread_mutex_lock(&s->lock);
                s->outstanding--;
                pthread_mutex_unlock(&s->lock);
        }
}

static int on_eventfd(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Store *s = userdata;
        uint64_t v;

        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR)
                log_warning_errno(errno, "store: eventfd read failed: %m, ignoring");
        dispatch_done(s);
        return 0;
}

/* Takes ownership of op always. */
static int op_submit(Store *s, StoreOp *op) {
        int r = 0;

        pthread_mutex_lock(&s->lock);
        if (s->closing)
                r = -ESHUTDOWN;
        else if (s->outstanding >= LIMIT_STORE_PENDING)
                r = -ENOBUFS;
        else {
                op->next = NULL;
                if (s->pending_tail)
                        s->pending_tail->next = op;
                else
                        s->pending = op;
                s->pending_tail = op;
                s->n_pending++;
                s->outstanding++;
                /* Group commit: the writer is woken once per loop
                 * iteration (kick_source), after the dispatch that
                 * submitted this has submitted everything it had, so one
                 * transaction takes the whole burst. Waking it here for
                 * every operation made it commit the first request of
                 * every burst alone: 3 of 4 commits held one event, each
                 * paying a full fsync. But an idle writer that waits for
                 * the end of a long burst leaves the disk idle while the
                 * loop works, then the loop idle while the disk syncs
                 * (loop, writer and fsync took turns: 0.82 + 0.34 + 0.3
                 * ms per 56-event commit, perf). Once STORE_EARLY_COMMIT
                 * operations wait, an idle writer starts on them, and the
                 * rest of the burst goes into the next commit, built while
                 * this one syncs (bench/RESULTS.md, fourth round). */
                if (s->writer_idle && s->n_pending >= STORE_EARLY_COMMIT)
                        pthread_cond_signal(&s->cond);
                if (!s->kick_source || sd_event_source_set_enabled(s->kick_source, SD_EVENT_ONESHOT) < 0)
                        pthread_cond_signal(&s->cond);
        }
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                op_free(op);
        return r;
}

static int on_kick(sd_event_source *src, void *userdata) {
        Store *s = userdata;

        pthread_mutex_lock(&s->lock);
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

int store_submit_event(Store *s, StoreEvent *ev, StoreEventCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || !ev || !ev->source) {
                store_event_free(ev);
                return -EINVAL;
        }
        op = mem_calloc(1, sizeof(*op));
        if (!op) {
                store_event_free(ev);
                return -ENOMEM;
        }
        op->type = OP_EVENT;
        op->ev = ev;
        op->event_cb = cb;
        op->userdata = userdata;
        return op_submit(s, op);
}

int store_submit_manual(Store *s, StoreAction *a, StoreActionCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || !a) {
                store_actions_free(a, 1);
                return -EINVAL;
        }
        op = mem_calloc(1, sizeof(*op));
        if (!op) {
                store_actions_free(a, 1);
                return -ENOMEM;
        }
        op->type = OP_MANUAL;
        op->action = a;
        op->action_cb = cb;
        op->userdata = userdata;
        return op_submit(s, op);
}

int store_claim_due(Store *s, uint64_t now, unsigned max, StoreClaimCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || max == 0 || max > LIMIT_QUEUE_INFLIGHT)
                return -EINVAL;
        op = mem_calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->type = OP_CLAIM;
        op->value = now;
        op->max = max;
        op->claim_cb = cb;
        op->userdata = userdata;
        return op_submit(s, op);
}

static int dup_opt(const char *in, char **out) {
        if (!in) {
                *out = NULL;
                return 0;
        }
        *out = mem_strndup(in, LIMIT_CONFIG_STRING_BYTES);
        return *out ? 0 : -ENOMEM;
}

/* Builds an action transition op. */
static int op_new_for(OpType type, const char *id, StoreDoneCallback cb, void *userdata, StoreOp **ret) {
        StoreOp *op;

        if (!id || strlen(id) >= sizeof(op->id) || id[0] == 0)
                return -EINVAL;
        op = mem_calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->type = type;
        strcpy(op->id, id);
        op->done_cb = cb;
        op->userdata = userdata;
        *ret = op;
        return 0;
}

int store_finish_action(Store *s, const char *id, bool success, const char *api_code, const char *api_message,
                        const char *detail, StoreDoneCallback cb, void *userdata) {
        StoreOp *op;
        int r;

        if (!s)
                return -EINVAL;
        r = op_new_for(OP_FINISH, id, cb, userdata, &op);
        if (r < 0)
                return r;
        op->success = success;
        if ((r = dup_opt(api_code, &op->text1)) < 0 || (r = dup_opt(api_message, &op->text2)) < 0 ||
            (r = dup_opt(detail, &op->text3)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

int store_retry_action(Store *s, const char *id, uint64_t not_before_usec, const char *detail,
                       StoreDoneCallback cb, void *userdata) {
        StoreOp *op;
        int r;

        if (!s)
                return -EINVAL;
        r = op_new_for(OP_RETRY, id, cb, userdata, &op);
        if (r < 0)
                return r;
        op->value = not_before_usec;
        if ((r = dup_opt(detail, &op->text3)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

int store_set_user_id(Store *s, const char *id, const char *user_id, StoreDoneCallback cb, void *userdata) {
        StoreOp *op;
        int r;

        if (!s || !user_id || !is_user_id(user_id))
                return -EINVAL;
        r = op_new_for(OP_SET_USER_ID, id, cb, userdata, &op);
        if (r < 0)
                return r;
        if ((r = dup_opt(user_id, &op->text1)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

int store_resolve_action(Store *s, const char *id, ActionStatus status, const char *detail, StoreDoneCallback cb,
                         void *userdata) {
        StoreOp *op;
        int r;

        if (!s || !is_resolution_status(status))
                return -EINVAL;
        r = op_new_for(OP_RESOLVE, id, cb, userdata, &op);
        if (r < 0)
                return r;
        op->status = status;
        if ((r = dup_opt(detail, &op->text3)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

static int submit_operator(Store *s, OpType type, const char *id, const char *by, StoreDoneCallback cb,
                           void *userdata) {
        StoreOp *op;
        int r;

        if (!s)
                return -EINVAL;
        r = op_new_for(type, id, cb, userdata, &op);
        if (r < 0)
                return r;
        if ((r = dup_opt(by, &op->text3)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

int store_release_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata) {
        return submit_operator(s, OP_RELEASE, id, by, cb, userdata);
}

int store_cancel_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata) {
        return submit_operator(s, OP_CANCEL, id, by, cb, userdata);
}

int store_debug_set_max_pages(Store *s, uint64_t pages, StoreDoneCallback cb, void *userdata) {
        StoreOp *op;

        if (!s)
                return -EINVAL;
        op = mem_calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->type = OP_MAX_PAGES;
        op->value = pages;
        op->done_cb = cb;
        op->userdata = userdata;
        return op_submit(s, op);
}

/* --- open and close ------------------------------------------------------- */

static int db_open(const char *path, int flags, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                int r = sqlite_errno(rc), e = db ? sqlite3_system_errno(db) : 0;
                if (rc == SQLITE_CANTOPEN && e > 0)
                        r = -e;
                log_error_errno(r, "store: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
                sqlite3_close(db);
                return r;
        }
        sqlite3_extended_result_codes(db, 1);
        *ret = db;
        return 0;
}

static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size) {
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                const char *t = (const char *) sqlite3_column_text(st, 0);
                (void) snprintf(buf, size, "%s", t ? t : "");
        } else if (rc != SQLITE_DONE)
                r = sqlite_errno(rc);
        else
                buf[0] = 0;
        sqlite3_finalize(st);
        return r;
}

static int schema_migrate(Store *s) {
        char buf[32];
        long v;
        int r;

        r = pragma_text(s->wdb, "PRAGMA user_version", buf, sizeof(buf));
        if (r < 0)
                return r;
        v = strtol(buf, NULL, 10);
        if (v > SCHEMA_VERSION)
                return log_error_errno(-EPROTONOSUPPORT, "store: database schema version %ld is newer than %d",
                                       v, SCHEMA_VERSION);
        if (v == SCHEMA_VERSION)
                return 0;

        r = sql_exec(s->wdb, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        if (v < 1 && (r = sql_exec(s->wdb, schema_v1)) < 0)
                goto fail;
        if (v < 2 && (r = sql_exec(s->wdb, schema_v2)) < 0)
                goto fail;
        if (v < 3 && (r = sql_exec(s->wdb, schema_v3)) < 0)
                goto fail;
        (void) snprintf(buf, sizeof(buf), "PRAGMA user_version = %d", SCHEMA_VERSION);
        if ((r = sql_exec(s->wdb, buf)) < 0)
                goto fail;
        r = sql_exec(s->wdb, "COMMIT");
        if (r >= 0)
                return 0;
fail:
        if (!sqlite3_get_autocommit(s->wdb))
                (void) sql_exec(s->wdb, "ROLLBACK");
        return log_error_errno(r, "store: schema migration failed: %m");
}

/* The dedup index from the events of the window, oldest first (past
 * LIMIT_DEDUP_KEYS the oldest are the ones dropped). Runs before the writer
 * starts, on its connection. */
static int dedup_load(Store *s) {
        uint64_t window = s->opts.dedup_window_usec ? s->opts.dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        uint64_t now = now_usec(CLOCK_REALTIME), since = now > window ? now - window : 0, n = 0;
        sqlite3_stmt *st = NULL;
        int rc, r;

        r = dedup_index_new(LIMIT_DEDUP_KEYS, &s->dedup);
        if (r < 0)
                return log_error_errno(r, "store: cannot set up the dedup index: %m");
        rc = sqlite3_prepare_v2(s->wdb,
                                "SELECT rowid, source, dedup_key, received_usec FROM events "
                                "WHERE received_usec >= ?1 AND dedup_key IS NOT NULL ORDER BY received_usec",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return log_error_errno(sqlite_errno(rc), "store: cannot read the dedup keys: %s",
                                       sqlite3_errmsg(s->wdb));
        r = bind_u64(st, 1, since);
        while (r >= 0 && (r = step_row(st)) > 0) {
                const char *source = (const char *) sqlite3_column_text(st, 1);
                const char *key = (const char *) sqlite3_column_text(st, 2);

                if (!source || !key)
                        continue;
                r = dedup_index_add(s->dedup, dedup_index_hash(s->dedup, source, key), sqlite3_column_int64(st, 0),
                                    column_u64(st, 3), since);
                n++;
        }
        sqlite3_finalize(st);
        if (r < 0)
                return log_error_errno(r, "store: cannot load the dedup keys: %m");
        log_debug("store: %" PRIu64 " dedup keys of the last %" PRIu64 " s loaded", n, (uint64_t) (window / USEC_PER_SEC));
        return 0;
}

/* Crash recovery: whatever was running when the last process died goes back
 * to the queue (the API calls are idempotent). */
static int recover_running(Store *s) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        StoreAction *v = NULL;
        size_t n = 0;
        sqlite3_stmt *st = NULL;
        int r, rc;

        rc = sqlite3_prepare_v2(s->wdb, "SELECT " ACTION_COLUMNS "WHERE a.status = 'running'", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(rc);
        r = sql_exec(s->wdb, "BEGIN IMMEDIATE");
        if (r < 0) {
                sqlite3_finalize(st);
                return r;
        }
        r = actions_collect(st, SIZE_MAX, &v, &n);
        sqlite3_finalize(st);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = transition(s, &v[i], ACTION_STATUS_QUEUED, now, "recovered after restart");
        if (r >= 0)
                r = sql_exec(s->wdb, "COMMIT");
        if (r < 0 && !sqlite3_get_autocommit(s->wdb))
                (void) sql_exec(s->wdb, "ROLLBACK");
        if (r >= 0 && n > 0)
                log_notice("store: %zu interrupted action(s) queued again after restart", n);
        store_actions_free(v, n);
        return r;
}

int store_open(const char *path, sd_event *e, const StoreOptions *opts, Store **ret) {
        Store *s;
        char mode[16];
        sigset_t all, old;
        int r;

        if (!path || !e || !ret)
                return -EINVAL;
        if (!sqlite3_threadsafe())
                return log_error_errno(-ENOTSUP, "store: SQLite was built without thread support");

        s = mem_calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->efd = -1;
        s->event = sd_event_ref(e);
        s->writable = true;
        if (opts)
                s->opts = *opts;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
                mem_free(s);
                sd_event_unref(e);
                return -ENOMEM;
        }
        if (pthread_cond_init(&s->cond, NULL) != 0) {
                pthread_mutex_destroy(&s->lock);
                mem_free(s);
                sd_event_unref(e);
                return -ENOMEM;
        }
        s->lock_initialised = true;

        r = db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &s->wdb);
        if (r < 0)
                goto fail;
        r = pragma_text(s->wdb, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
        if (r < 0 || strcmp(mode, "wal") != 0) {
                r = log_error_errno(r < 0 ? r : -EIO, "store: cannot switch %s to WAL mode", path);
                goto fail;
        }
        if ((r = sql_exec(s->wdb, "PRAGMA synchronous = FULL")) < 0 ||
            (r = sql_exec(s->wdb, "PRAGMA busy_timeout = 5000")) < 0 ||
            (r = sql_exec(s->wdb, "PRAGMA cache_size = -65536")) < 0)
                goto fail;
        (void) sqlite3_wal_hook(s->wdb, wal_hook, s);
        r = schema_migrate(s);
        if (r < 0)
                goto fail;
        r = recover_running(s);
        if (r < 0) {
                log_error_errno(r, "store: crash recovery failed: %m");
                goto fail;
        }
        r = dedup_load(s);
        if (r < 0)
                goto fail;

        r = db_open(path, SQLITE_OPEN_READONLY, &s->rdb);
        if (r < 0)
                goto fail;
        if ((r = sql_exec(s->rdb, "PRAGMA busy_timeout = 1000")) < 0)
                goto fail;

        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &s->efd_source, s->efd, EPOLLIN, on_eventfd, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(s->efd_source, "store-completions");
        r = sd_event_add_defer(e, &s->kick_source, on_kick, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->kick_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->kick_source, "store-kick");

        /* The writer must never take the loop's signals. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&s->thread, NULL, writer_main, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                goto fail;
        s->thread_started = true;

        *ret = s;
        return 0;
fail:
        store_close(s);
        return r;
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        if (s->thread_started) {
                pthread_mutex_lock(&s->lock);
                s->closing = true;
                pthread_cond_signal(&s->cond);
                pthread_mutex_unlock(&s->lock);
                pthread_join(s->thread, NULL);
                s->thread_started = false;
                pthread_mutex_lock(&s->lock);
                s->closing = true;
                pthread_mutex_unlock(&s->lock);
                dispatch_done(s);
        }
        sd_event_source_disable_unref(s->efd_source);
        sd_event_source_disable_unref(s->kick_source);
        if (s->efd >= 0)
                close(s->efd);
        for (size_t i = 0; i < _W_MAX; i++)
                sqlite3_finalize(s->wst[i]);
        for (size_t i = 0; i < _R_MAX; i++)
                sqlite3_finalize(s->rst[i]);
        sqlite3_close(s->rdb);
        sqlite3_close(s->wdb);
        dedup_index_free(s->dedup);
        if (s->lock_initialised) {
                pthread_cond_destroy(&s->cond);
                pthread_mutex_destroy(&s->lock);
        }
        sd_event_unref(s->event);
        mem_free(s);
        return NULL;
}

void store_set_options(Store *s, const StoreOptions *opts) {
        if (!s || !opts)
                return;
        pthread_mutex_lock(&s->lock);
        s->opts = *opts;
        pthread_mutex_unlock(&s->lock);
}

bool store_writable(Store *s) {
        bool w;

        if (!s)
                return false;
        pthread_mutex_lock(&s->lock);
        w = s->writable;
        pthread_mutex_unlock(&s->lock);
        return w;
}

void store_stats(Store *s, StoreStats *ret) {
        pthread_mutex_lock(&s->lock);
        *ret = (StoreStats) {
                .commits = s->commits,
                .failed_commits = s->failed_commits,
                .ops = s->ops,
                .pending = s->outstanding,
                .last_error = s->last_error,
                .writer_idle = s->writer_idle && !s->pending,
        };
        pthread_mutex_unlock(&s->lock);
}

/* --- reads on the loop ---------------------------------------------------- */

static int rstmt(Store *s, ReaderStmt id, sqlite3_stmt **ret) {
        return stmt_get(s->rdb, &s->rst[id], reader_sql[id], ret);
}

int store_queue_counts(Store *s, StoreQueueCounts *ret) {
        static const ActionStatus which[] = {
                ACTION_STATUS_QUEUED, ACTION_STATUS_RUNNING, ACTION_STATUS_HELD,
                ACTION_STATUS_FAILED, ACTION_STATUS_DONE,    ACTION_STATUS_CANCELLED,
        };
        uint64_t v[ELEMENTSOF(which)] = {};
        sqlite3_stmt *st;
        int r;

        if (!s || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(which); i++) {
                r = rstmt(s, R_COUNT_STATUS, &st);
                if (r < 0)
                        return r;
                if ((r = bind_text(st, 1, store_action_status_to_string(which[i]))) < 0)
                        return r;
                r = step_row(st);
                if (r > 0)
                        v[i] = column_u64(st, 0);
                sqlite3_reset(st);
                if (r < 0)
                        return r;
        }
        *ret = (StoreQueueCounts) {
                .queued = v[0], .running = v[1], .held = v[2], .failed = v[3], .done = v[4], .cancelled = v[5],
        };
        return 0;
}

int store_suspensions_in_window(Store *s, uint64_t *ret) {
        uint64_t now = now_usec(CLOCK_REALTIME), window, n = 0;
        sqlite3_stmt *st;
        int r;

        if (!s || !ret)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        window = s->opts.window_usec;
        pthread_mutex_unlock(&s->lock);
        r = rstmt(s, R_CAP, &st);
        if (r < 0)
                return r;
        r = count_cap(s->rdb, st, window == 0 ? now : now > window ? now - window : 0, &n);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

int store_list_actions(Store *s, int status, unsigned limit, StoreAction **ret, size_t *ret_n) {
        sqlite3_stmt *st;
        int r;

        if (!s || !ret || !ret_n || (status >= 0 && !store_action_status_to_string((ActionStatus) status)))
                return -EINVAL;
        if (limit == 0 || limit > LIMIT_STORE_READ_ROWS)
                limit = LIMIT_STORE_READ_ROWS;
        r = rstmt(s, status < 0 ? R_LIST_ALL : R_LIST_STATUS, &st);
        if (r < 0)
                return r;
        if ((r = bind_u64(st, 1, limit)) < 0)
                return r;
        if (status >= 0 && (r = bind_text(st, 2, store_action_status_to_string((ActionStatus) status))) < 0)
                return r;
        return actions_collect(st, limit, ret, ret_n);
}

int store_get_action(Store *s, const char *id, StoreAction **ret) {
        StoreAction *v = NULL;
        size_t n = 0;
        sqlite3_stmt *st;
        int r;

        if (!s || !id || !ret)
                return -EINVAL;
        r = rstmt(s, R_GET, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, id)) < 0)
                return r;
        r = actions_collect(st, 1, &v, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                mem_free(v);
                return -ENOENT;
        }
        *ret = v;
        return 0;
}

void store_audit_free(StoreAuditEntry *e, size_t n) {
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                mem_free(e[i].kind);
                mem_free(e[i].event_id);
                mem_free(e[i].action_id);
                mem_free(e[i].rule);
                mem_free(e[i].user);
                mem_free(e[i].from_status);
                mem_free(e[i].to_status);
                mem_free(e[i].detail);
        }
        mem_free(e);
}

int store_history(Store *s, const char *user, uint64_t since_usec, unsigned limit, StoreAuditEntry **ret,
                  size_t *ret_n) {
        _cleanup_free_ char *key = NULL;
        StoreAuditEntry *v = NULL;
        size_t n = 0, cap = 0;
        sqlite3_stmt *st;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        if (limit == 0 || limit > LIMIT_STORE_READ_ROWS)
                limit = LIMIT_STORE_READ_ROWS;
        r = rstmt(s, user ? R_HISTORY_USER : R_HISTORY_ALL, &st);
        if (r < 0)
                return r;
        if ((r = bind_u64(st, 1, since_usec)) < 0 || (r = bind_u64(st, 2, limit)) < 0)
                return r;
        if (user) {
                r = user_key_make(user, is_user_id(user) ? user : NULL, &key);
                if (r < 0)
                        return r;
                if ((r = bind_text(st, 3, key)) < 0 || (r = bind_text(st, 4, user)) < 0)
                        return r;
        }
        while ((r = step_row(st)) > 0 && n < limit) {
                StoreAuditEntry *x;

                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        StoreAuditEntry *nv = mem_reallocarray(v, ncap, sizeof(*v));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv;
                        cap = ncap;
                }
                x = &v[n++];
                *x = (StoreAuditEntry) { .seq = column_u64(st, 0), .time_usec = column_u64(st, 1) };
                if ((r = column_strdup(st, 2, &x->kind)) < 0 || (r = column_strdup(st, 3, &x->event_id)) < 0 ||
                    (r = column_strdup(st, 4, &x->action_id)) < 0 || (r = column_strdup(st, 5, &x->rule)) < 0 ||
                    (r = column_strdup(st, 6, &x->user)) < 0 || (r = column_strdup(st, 7, &x->from_status)) < 0 ||
                    (r = column_strdup(st, 8, &x->to_status)) < 0 || (r = column_strdup(st, 9, &x->detail)) < 0)
                        break;
        }
        sqlite3_reset(st);
        if (r < 0) {
                store_audit_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}
