/* The state store on SQLite: one file in WAL mode, synchronous=FULL (every
 * commit fsync'd). The embedded default: one instance, nothing to set up.
 * Redeliveries are found through an in-memory hash index of the dedup
 * window (dedup.h) instead of a B-tree on the key. See
 * docs/internals/store.md. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "alloc.h"
#include "dedup.h"
#include "log.h"
#include "remedyd-limits.h"
#include "sqlite_walbuf.h"
#include "store-backend.h"
#include "util.h"

#define SCHEMA_VERSION 4
#define DEDUP_WINDOW_USEC (24ULL * 3600ULL * USEC_PER_SEC)
#define MAX_PAGE_COUNT_DEFAULT UINT64_C(1073741823)
/* WAL size (pages) past which a commit asks for a checkpoint: SQLite's
 * default auto-checkpoint threshold. The checkpointer thread runs it beside
 * the writer; past STORE_WAL_WRITER_CHECKPOINT_PAGES (the checkpointer did
 * not catch up: under a sustained load it never finds the WAL complete, so
 * the WAL never restarts) the writer checkpoints itself after the batch is
 * answered, which holds the WAL at about 32 MiB. */
#define STORE_WAL_CHECKPOINT_PAGES 1000
#define STORE_WAL_WRITER_CHECKPOINT_PAGES 8000

/* A thread with its own connection that copies the WAL into the database
 * (PASSIVE: it never blocks the writer, nor waits for readers). The DB
 * file's writes and fdatasync were 3-9 ms in the writer thread, every
 * ~2,700 deliveries under load, and every batch queued behind them waited
 * as long. */
typedef struct Checkpointer {
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        sqlite3 *db;
        int fd;         /* the database file, for fdatasync */
        int backfilled; /* WAL frames copied into the database by its last run */
        bool wanted, stop;
} Checkpointer;

struct StoreConn {
        sqlite3 *db;
        bool reader;
        Checkpointer *cp;         /* the writer's; NULL: the writer checkpoints */
        int wal_pages;            /* WAL size after the last commit */
        DedupIndex *dedup;        /* the writer's */
        int64_t dedup_hash_valid; /* 1 while hash holds the current event's */
        uint64_t dedup_hash;
        sqlite3_stmt *dedup_stmt;
        sqlite3_stmt *st[_S_MAX];
};

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

/* v4: the same tables as the PostgreSQL schema (claims name their owner,
 * audit rows their instance), the notification outbox and the heartbeats. */
static const char schema_v4[] =
        "ALTER TABLE actions ADD COLUMN owner TEXT;"
        "ALTER TABLE actions ADD COLUMN lease_until_usec INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE audit ADD COLUMN instance TEXT;"
        "CREATE TABLE outbox ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  sink TEXT NOT NULL,"
        "  action_id TEXT NOT NULL,"
        "  outcome TEXT NOT NULL,"
        "  state TEXT NOT NULL DEFAULT 'pending',"
        "  attempts INTEGER NOT NULL DEFAULT 0,"
        "  created_usec INTEGER NOT NULL,"
        "  updated_usec INTEGER NOT NULL,"
        "  not_before_usec INTEGER NOT NULL DEFAULT 0,"
        "  last_error TEXT,"
        "  instance TEXT);"
        "CREATE INDEX outbox_due ON outbox(state, not_before_usec);"
        "CREATE INDEX outbox_created ON outbox(created_usec);"
        "CREATE TABLE instances ("
        "  name TEXT PRIMARY KEY NOT NULL,"
        "  started_usec INTEGER NOT NULL,"
        "  last_seen_usec INTEGER NOT NULL,"
        "  version TEXT);";

#define ACTION_SELECT                                                                             \
        "a.id, a.event_id, a.rule, a.action, a.user, a.user_id, a.reason, a.status, a.detail, "   \
        "a.created_usec, a.updated_usec, a.not_before_usec, a.attempts, a.for_usec, "             \
        "a.cooldown_usec, a.dry_run, a.parent_id, a.api_code, a.api_message, "                    \
        "COALESCE(e.received_usec, a.created_usec), a.owner "
#define ACTION_FROM "FROM actions a LEFT JOIN events e ON e.id = a.event_id "
#define ACTION_COLUMNS ACTION_SELECT ACTION_FROM
#define OUTBOX_SELECT                                                                             \
        "SELECT " ACTION_SELECT ", o.id, o.sink, o.outcome, o.state, o.attempts, o.created_usec, " \
        "o.updated_usec, o.not_before_usec, o.last_error, o.instance, e.source "                  \
        "FROM outbox o JOIN actions a ON a.id = o.action_id LEFT JOIN events e ON e.id = a.event_id "
#define AUDIT_COLUMNS "seq, time_usec, kind, event_id, action_id, rule, user, from_status, to_status, detail, instance "

static const char *const sql[_S_MAX] = {
        [S_EVENT_ACTIONS] = "SELECT " ACTION_COLUMNS "WHERE a.event_id = ?1 AND a.parent_id IS NULL ORDER BY a.rowid",
        [S_INSERT_EVENT] = "INSERT INTO events (id, source, dedup_key, received_usec, body) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)",
        [S_INSERT_ACTION] = "INSERT INTO actions (id, event_id, rule, action, user, user_id, user_key, reason, "
                            "status, detail, created_usec, updated_usec, not_before_usec, attempts, for_usec, "
                            "cooldown_usec, dry_run, parent_id) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        [S_INSERT_AUDIT] = "INSERT INTO audit (time_usec, kind, event_id, action_id, rule, user, user_key, "
                           "from_status, to_status, detail, instance) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [S_COOLDOWN] = "SELECT 1 FROM actions WHERE rule = ?1 AND (user_key = ?2 OR user_key = ?4) "
                       "AND created_usec >= ?3 AND status IN ('queued', 'held', 'running', 'done', 'dry_run') LIMIT 1",
        [S_CAP] = "SELECT count(*) FROM actions WHERE action = 'suspend' "
                  "AND status IN ('queued', 'running', 'done') AND created_usec >= ?1",
        [S_TIMED_PENDING] = "SELECT id FROM actions WHERE user_key = ?1 AND action = 'reactivate' "
                            "AND parent_id IS NOT NULL AND status IN ('queued', 'held') "
                            "AND (?2 IS NULL OR not_before_usec < ?2)",
        [S_SET_STATUS] = "UPDATE actions SET status = ?2, updated_usec = ?3 WHERE id = ?1",
        [S_GET] = "SELECT " ACTION_COLUMNS "WHERE a.id = ?1",
        /* one instance: nothing else can hold a running action */
        [S_DUE] = "SELECT id FROM actions WHERE status = 'queued' AND not_before_usec <= ?1 "
                  "ORDER BY not_before_usec LIMIT ?2",
        [S_CLAIM] = "UPDATE actions SET status = 'running', updated_usec = ?2, owner = ?3, lease_until_usec = ?4 "
                    "WHERE id = ?1",
        [S_NEXT_DUE] = "SELECT min(not_before_usec) FROM actions WHERE status = 'queued'",
        [S_FINISH] = "UPDATE actions SET status = ?2, api_code = ?3, api_message = ?4, "
                     "detail = COALESCE(?5, detail), updated_usec = ?6 WHERE id = ?1",
        [S_RETRY] = "UPDATE actions SET status = 'queued', attempts = attempts + 1, not_before_usec = ?2, "
                    "detail = COALESCE(?3, detail), updated_usec = ?4 WHERE id = ?1",
        [S_SET_USER_ID] = "UPDATE actions SET user_id = ?2, user_key = ?2, updated_usec = ?3 WHERE id = ?1",
        [S_RESOLVE] = "UPDATE actions SET status = ?2, detail = COALESCE(?3, detail), updated_usec = ?4 "
                      "WHERE id = ?1",
        [S_OUTLASTED] = "SELECT 1 FROM actions WHERE user_key = ?1 AND action = 'suspend' AND id <> ?2 "
                        "AND created_usec >= ?3 AND (status IN ('queued', 'running') "
                        "OR (status = 'done' AND (for_usec = 0 OR updated_usec + for_usec > ?4))) LIMIT 1",
        /* one instance: whatever was running was ours */
        [S_RECOVER] = "SELECT " ACTION_COLUMNS "WHERE a.status = 'running'",
        [S_HEARTBEAT] = "INSERT INTO instances (name, started_usec, last_seen_usec, version) VALUES (?1, ?3, ?2, ?4) "
                        "ON CONFLICT (name) DO UPDATE SET started_usec = excluded.started_usec, "
                        "last_seen_usec = excluded.last_seen_usec, version = excluded.version",
        [S_RENEW] = "UPDATE actions SET lease_until_usec = ?2 WHERE owner = ?1 AND status = 'running'",
        /* the dedup window is in memory here */
        [S_PRUNE] = "DELETE FROM outbox WHERE state <> 'pending' AND updated_usec < ?2",
        [S_OUTBOX_INSERT] = "INSERT INTO outbox (id, sink, action_id, outcome, created_usec, updated_usec, instance) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        [S_OUTBOX_DUE] = "SELECT id FROM outbox WHERE state = 'pending' AND not_before_usec <= ?1 "
                         "ORDER BY not_before_usec, created_usec LIMIT ?2",
        [S_OUTBOX_CLAIM] = "UPDATE outbox SET not_before_usec = ?2, attempts = attempts + 1, updated_usec = ?3 "
                           "WHERE id = ?1",
        [S_OUTBOX_GET] = OUTBOX_SELECT "WHERE o.id = ?1",
        [S_OUTBOX_NEXT_DUE] = "SELECT min(not_before_usec) FROM outbox WHERE state = 'pending'",
        [S_OUTBOX_SET] = "UPDATE outbox SET state = ?2, not_before_usec = ?3, last_error = COALESCE(?4, last_error), "
                         "updated_usec = ?5 WHERE id = ?1 AND state = 'pending' RETURNING id",
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
                          "NULL, source, NULL FROM events WHERE received_usec >= ?1 ORDER BY received_usec DESC LIMIT ?2) "
                          "ORDER BY 2 DESC, 1 DESC LIMIT ?2",
        [R_HISTORY_USER] = "SELECT " AUDIT_COLUMNS "FROM audit WHERE (user_key = ?3 OR user = ?4 COLLATE NOCASE) "
                           "AND time_usec >= ?1 ORDER BY seq DESC LIMIT ?2",
        [R_OUTBOX_LIST] = OUTBOX_SELECT "ORDER BY o.created_usec DESC, o.rowid DESC LIMIT ?1",
        [R_OUTBOX_COUNT] = "SELECT count(*) FROM outbox WHERE state = ?1",
        [R_INSTANCES] = "SELECT name FROM instances WHERE last_seen_usec >= ?1 ORDER BY name",
        /* The writer's dedup index is in its memory; a preview scans the
         * window's events instead (events_time bounds it; no index on the
         * key since v3): one scan per explain --live, not per delivery. */
        [R_DEDUP] = "SELECT id FROM events WHERE received_usec >= ?3 AND source = ?1 AND dedup_key = ?2 "
                    "ORDER BY received_usec LIMIT 1",
        [R_EVENT_ACTIONS] = "SELECT " ACTION_COLUMNS "WHERE a.event_id = ?1 AND a.parent_id IS NULL ORDER BY a.rowid",
        [R_COOLDOWN] = "SELECT 1 FROM actions WHERE rule = ?1 AND (user_key = ?2 OR user_key = ?4) "
                       "AND created_usec >= ?3 AND status IN ('queued', 'held', 'running', 'done', 'dry_run') LIMIT 1",
};

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

static int sql_exec(sqlite3 *db, const char *text) {
        int rc = sqlite3_exec(db, text, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return log_debug_errno(sqlite_errno(rc), "store: \"%.40s\" failed: %s", text, sqlite3_errmsg(db));
        return 0;
}

static int pragma_text(sqlite3 *db, const char *text, char *buf, size_t size) {
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(db, text, -1, &st, NULL);
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

static int db_open(const char *path, int flags, sqlite3 **ret) {
        sqlite3 *db = NULL;
        int rc;

        /* sqlite_walbuf.c: one write per commit to the WAL, not two per page. */
        rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, sqlite_walbuf_vfs());
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

static sqlite3_stmt *S(StoreStmt *st) {
        return (sqlite3_stmt *) (void *) st;
}

static int lite_stmt(StoreConn *c, StoreStmtId id, StoreStmt **ret) {
        int rc;

        *ret = NULL; /* set on every path: gcc -O2/-O3 cannot see log_*_errno() < 0 */
        if (id < 0 || id >= _S_MAX || !sql[id])
                return -EINVAL;
        if (!c->st[id]) {
                rc = sqlite3_prepare_v3(c->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
                if (rc != SQLITE_OK)
                        return log_error_errno(sqlite_errno(rc), "store: cannot prepare statement: %s",
                                               sqlite3_errmsg(c->db));
        } else {
                sqlite3_reset(c->st[id]);
                sqlite3_clear_bindings(c->st[id]);
        }
        *ret = (StoreStmt *) (void *) c->st[id];
        return 0;
}

/* Binding a parameter the statement does not have is not an error: the
 * common part binds what the other dialect may need. */
static bool has_param(sqlite3_stmt *st, int i) {
        return i >= 1 && i <= sqlite3_bind_parameter_count(st);
}

static int lite_bind_text(StoreStmt *st, int i, const char *s) {
        if (!has_param(S(st), i))
                return 0;
        return sqlite_errno(s ? sqlite3_bind_text(S(st), i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(S(st), i));
}

static int lite_bind_u64(StoreStmt *st, int i, uint64_t v) {
        if (!has_param(S(st), i))
                return 0;
        return sqlite_errno(sqlite3_bind_int64(S(st), i, (sqlite3_int64) (v > INT64_MAX ? INT64_MAX : v)));
}

/* The body is kept as TEXT of its exact length (as since v1). */
static int lite_bind_blob(StoreStmt *st, int i, const void *p, size_t n) {
        if (!has_param(S(st), i))
                return 0;
        if (n > INT32_MAX)
                return -E2BIG;
        return sqlite_errno(p ? sqlite3_bind_text(S(st), i, p, (int) n, SQLITE_STATIC) : sqlite3_bind_null(S(st), i));
}

static int lite_step(StoreStmt *st) {
        int rc = sqlite3_step(S(st));

        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return sqlite_errno(sqlite3_reset(S(st)));
}

static void lite_reset(StoreStmt *st) {
        sqlite3_reset(S(st));
}

static bool lite_column_null(StoreStmt *st, int i) {
        return sqlite3_column_type(S(st), i) == SQLITE_NULL;
}

static const char *lite_column_text(StoreStmt *st, int i) {
        return (const char *) sqlite3_column_text(S(st), i);
}

static uint64_t lite_column_u64(StoreStmt *st, int i) {
        sqlite3_int64 v = sqlite3_column_int64(S(st), i);
        return v < 0 ? 0 : (uint64_t) v;
}

static int lite_begin(StoreConn *c, bool guard) {
        /* one writer: an IMMEDIATE transaction serialises everything */
        return sql_exec(c->db, "BEGIN IMMEDIATE");
}

/* The number of WAL frames in the database after it, or -1. */
static int wal_checkpoint(sqlite3 *db) {
        int rc, log = 0, done = 0;

        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        /* BUSY: the other one is at it. A failure (disk full) is tried
         * again after the next commit. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                log_debug("store: WAL checkpoint failed: %s, will retry", sqlite3_errstr(rc));
        return rc == SQLITE_OK ? done : -1;
}

static void *checkpointer_main(void *userdata) {
        Checkpointer *cp = userdata;

        (void) pthread_setname_np(pthread_self(), "store-ckpt");
        pthread_mutex_lock(&cp->lock);
        for (;;) {
                while (!cp->wanted && !cp->stop)
                        pthread_cond_wait(&cp->cond, &cp->lock);
                if (cp->stop)
                        break;
                pthread_mutex_unlock(&cp->lock);
                int done = wal_checkpoint(cp->db);
                /* SQLite syncs the database only when a checkpoint copied
                 * the whole WAL: under load that is the writer's, which
                 * then waited for every page copied since (7.6 ms). */
                if (done > 0)
                        (void) fdatasync(cp->fd);
                pthread_mutex_lock(&cp->lock);
                cp->wanted = false;
                if (done >= 0)
                        cp->backfilled = done;
        }
        pthread_mutex_unlock(&cp->lock);
        return NULL;
}

static void checkpointer_free(Checkpointer *cp) {
        if (!cp)
                return;
        pthread_mutex_lock(&cp->lock);
        cp->stop = true;
        pthread_cond_signal(&cp->cond);
        pthread_mutex_unlock(&cp->lock);
        (void) pthread_join(cp->thread, NULL);
        pthread_cond_destroy(&cp->cond);
        pthread_mutex_destroy(&cp->lock);
        sqlite3_close(cp->db);
        (void) close(cp->fd);
        mem_free(cp);
}

/* NULL when it cannot start (no memory, no thread): the writer then
 * checkpoints itself, as without it. */
static Checkpointer *checkpointer_new(const char *path) {
        Checkpointer *cp = mem_calloc(1, sizeof(*cp));
        sigset_t all, old;
        char mode[16];
        int r;

        if (!cp)
                return NULL;
        /* A connection learns that the file is in WAL mode on its first
         * read; until then a checkpoint is a no-op that returns OK. */
        cp->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (cp->fd < 0 || db_open(path, SQLITE_OPEN_READWRITE, &cp->db) < 0 ||
            pragma_text(cp->db, "PRAGMA journal_mode", mode, sizeof(mode)) < 0 || strcmp(mode, "wal") != 0)
                goto fail;
        pthread_mutex_init(&cp->lock, NULL);
        pthread_cond_init(&cp->cond, NULL);
        /* the loop's signals are the loop's */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&cp->thread, NULL, checkpointer_main, cp);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r == 0)
                return cp;
        log_debug("store: no checkpointer thread (%s), the writer checkpoints", strerror(r));
        pthread_cond_destroy(&cp->cond);
        pthread_mutex_destroy(&cp->lock);
fail:
        sqlite3_close(cp->db);
        if (cp->fd >= 0)
                (void) close(cp->fd);
        mem_free(cp);
        return NULL;
}

/* After the batch's completions are handed to the loop. */
static void checkpoint(StoreConn *c) {
        if (c->wal_pages < STORE_WAL_CHECKPOINT_PAGES)
                return;
        if (c->cp && c->wal_pages < STORE_WAL_WRITER_CHECKPOINT_PAGES) {
                Checkpointer *cp = c->cp;

                /* Once every STORE_WAL_CHECKPOINT_PAGES new frames, as
                 * SQLite's own: the WAL does not restart under a steady
                 * load, and a run per commit copied the hot pages again
                 * and again (65 runs a second, two fdatasyncs each). */
                pthread_mutex_lock(&cp->lock);
                if (c->wal_pages < cp->backfilled)
                        cp->backfilled = 0; /* the WAL restarted */
                if (!cp->wanted && c->wal_pages - cp->backfilled >= STORE_WAL_CHECKPOINT_PAGES) {
                        cp->wanted = true;
                        pthread_cond_signal(&cp->cond);
                }
                pthread_mutex_unlock(&cp->lock);
                return;
        }
        /* Between two transactions of the only writer nothing is
         * appended: the copy can finish, and the next write restarts the
         * WAL from its start. */
        (void) wal_checkpoint(c->db);
        c->wal_pages = 0;
}

static int lite_commit(StoreConn *c, bool wake_queue, bool wake_outbox) {
        return sql_exec(c->db, "COMMIT");
}

static void lite_rollback(StoreConn *c) {
        if (!sqlite3_get_autocommit(c->db))
                (void) sql_exec(c->db, "ROLLBACK");
}

/* Replaces SQLite's auto-checkpoint, which ran inside the COMMIT that
 * crossed 1,000 WAL pages. */
static int wal_hook(void *userdata, sqlite3 *db, const char *name, int pages) {
        StoreConn *c = userdata;

        c->wal_pages = pages;
        return SQLITE_OK;
}

/* A candidate of the dedup index is checked against its row (so slots of
 * a rolled-back batch are harmless). */
static int lite_dedup_check(StoreConn *c, const StoreEvent *ev, uint64_t since, char orig[static 33]) {
        size_t cursor = 0;
        int64_t rowid;
        int rc, r = 0;

        c->dedup_hash = dedup_index_hash(c->dedup, ev->source, ev->dedup_key);
        if (!c->dedup_stmt) {
                rc = sqlite3_prepare_v3(c->db,
                                        "SELECT id FROM events WHERE rowid = ?1 AND source = ?2 AND dedup_key = ?3 "
                                        "AND received_usec >= ?4",
                                        -1, SQLITE_PREPARE_PERSISTENT, &c->dedup_stmt, NULL);
                if (rc != SQLITE_OK)
                        return sqlite_errno(rc);
        }
        while (!orig[0] && dedup_index_next(c->dedup, c->dedup_hash, since, &cursor, &rowid)) {
                sqlite3_stmt *st = c->dedup_stmt;

                sqlite3_reset(st);
                if ((r = sqlite_errno(sqlite3_bind_int64(st, 1, rowid))) < 0 ||
                    (r = sqlite_errno(sqlite3_bind_text(st, 2, ev->source, -1, SQLITE_STATIC))) < 0 ||
                    (r = sqlite_errno(sqlite3_bind_text(st, 3, ev->dedup_key, -1, SQLITE_STATIC))) < 0 ||
                    (r = sqlite_errno(sqlite3_bind_int64(st, 4, (sqlite3_int64) since))) < 0)
                        break;
                r = lite_step((StoreStmt *) (void *) st);
                if (r > 0) {
                        const char *t = (const char *) sqlite3_column_text(st, 0);
                        if (t && strlen(t) < 33)
                                strcpy(orig, t);
                }
                sqlite3_reset(st);
                if (r < 0)
                        break;
        }
        if (r < 0)
                return r;
        return orig[0] ? 1 : 0;
}

static int lite_dedup_record(StoreConn *c, const StoreEvent *ev, uint64_t since) {
        uint64_t evicted = dedup_index_evicted(c->dedup);
        int r;

        r = dedup_index_add(c->dedup, c->dedup_hash, sqlite3_last_insert_rowid(c->db), ev->received_usec, since);
        if (r < 0)
                return r;
        if (dedup_index_evicted(c->dedup) != evicted)
                log_warning("store: more than %u deliveries in the dedup window: the oldest %" PRIu64
                            " were forgotten, their redeliveries will count as new events",
                            LIMIT_DEDUP_KEYS, dedup_index_evicted(c->dedup) - evicted);
        return 0;
}

/* The dedup index from the events of the window, oldest first (past
 * LIMIT_DEDUP_KEYS the oldest are the ones dropped). */
static int dedup_load(StoreConn *c) {
        uint64_t now = now_usec(CLOCK_REALTIME), since = now > DEDUP_WINDOW_USEC ? now - DEDUP_WINDOW_USEC : 0, n = 0;
        sqlite3_stmt *st = NULL;
        int rc, r;

        r = dedup_index_new(LIMIT_DEDUP_KEYS, &c->dedup);
        if (r < 0)
                return log_error_errno(r, "store: cannot set up the dedup index: %m");
        rc = sqlite3_prepare_v2(c->db,
                                "SELECT rowid, source, dedup_key, received_usec FROM events "
                                "WHERE received_usec >= ?1 AND dedup_key IS NOT NULL ORDER BY received_usec",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return log_error_errno(sqlite_errno(rc), "store: cannot read the dedup keys: %s", sqlite3_errmsg(c->db));
        r = sqlite_errno(sqlite3_bind_int64(st, 1, (sqlite3_int64) since));
        while (r >= 0 && (r = lite_step((StoreStmt *) (void *) st)) > 0) {
                const char *source = (const char *) sqlite3_column_text(st, 1);
                const char *key = (const char *) sqlite3_column_text(st, 2);
                sqlite3_int64 t = sqlite3_column_int64(st, 3);

                if (!source || !key)
                        continue;
                r = dedup_index_add(c->dedup, dedup_index_hash(c->dedup, source, key), sqlite3_column_int64(st, 0),
                                    t < 0 ? 0 : (uint64_t) t, since);
                n++;
        }
        sqlite3_finalize(st);
        if (r < 0)
                return log_error_errno(r, "store: cannot load the dedup keys: %m");
        log_debug("store: %" PRIu64 " dedup keys of the last %" PRIu64 " s loaded", n,
                  (uint64_t) (DEDUP_WINDOW_USEC / USEC_PER_SEC));
        return 0;
}

static int lite_migrate(StoreConn *c) {
        char buf[32];
        long v;
        int r;

        r = pragma_text(c->db, "PRAGMA user_version", buf, sizeof(buf));
        if (r < 0)
                return r;
        v = strtol(buf, NULL, 10);
        if (v > SCHEMA_VERSION)
                return log_error_errno(-EPROTONOSUPPORT, "store: database schema version %ld is newer than %d",
                                       v, SCHEMA_VERSION);
        if (v < SCHEMA_VERSION) {
                r = sql_exec(c->db, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                if ((v < 1 && (r = sql_exec(c->db, schema_v1)) < 0) || (v < 2 && (r = sql_exec(c->db, schema_v2)) < 0) ||
                    (v < 3 && (r = sql_exec(c->db, schema_v3)) < 0) || (v < 4 && (r = sql_exec(c->db, schema_v4)) < 0))
                        goto fail;
                (void) snprintf(buf, sizeof(buf), "PRAGMA user_version = %d", SCHEMA_VERSION);
                if ((r = sql_exec(c->db, buf)) < 0 || (r = sql_exec(c->db, "COMMIT")) < 0)
                        goto fail;
        }
        return dedup_load(c);
fail:
        lite_rollback(c);
        return log_error_errno(r, "store: schema migration failed: %m");
}

static void lite_disconnect(StoreConn *c) {
        if (!c)
                return;
        for (size_t i = 0; i < _S_MAX; i++)
                sqlite3_finalize(c->st[i]);
        sqlite3_finalize(c->dedup_stmt);
        checkpointer_free(c->cp); /* before: the last connection to close checkpoints */
        sqlite3_close(c->db);
        dedup_index_free(c->dedup);
        mem_free(c);
}

/* SQLite counts every allocation in global statistics under a mutex
 * unless told otherwise before it initialises; remedyd never reads them.
 * (~10 allocations per stored event on the writer, more on the loop's
 * reader.) Too late once SQLite is initialised: then it says MISUSE and
 * keeps counting, which is only slower. */
static void sqlite_configure(void) {
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int lite_connect(const StoreConnConfig *cfg, StoreConn **ret) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        StoreConn *c;
        char mode[16];
        int r;

        (void) pthread_once(&once, sqlite_configure);
        if (!cfg->path)
                return -EINVAL;
        if (!sqlite3_threadsafe())
                return log_error_errno(-ENOTSUP, "store: SQLite was built without thread support");
        c = mem_calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reader = cfg->reader;
        if (cfg->reader) {
                /* WAL readers never block the writer */
                if ((r = db_open(cfg->path, SQLITE_OPEN_READONLY, &c->db)) < 0 ||
                    (r = sql_exec(c->db, "PRAGMA busy_timeout = 1000")) < 0)
                        goto fail;
                *ret = c;
                return 0;
        }
        if ((r = db_open(cfg->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &c->db)) < 0)
                goto fail;
        r = pragma_text(c->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
        if (r < 0 || strcmp(mode, "wal") != 0) {
                r = log_error_errno(r < 0 ? r : -EIO, "store: cannot switch %s to WAL mode", cfg->path);
                goto fail;
        }
        if ((r = sql_exec(c->db, "PRAGMA synchronous = FULL")) < 0 ||
            (r = sql_exec(c->db, "PRAGMA busy_timeout = 5000")) < 0 ||
            (r = sql_exec(c->db, "PRAGMA cache_size = -65536")) < 0)
                goto fail;
        (void) sqlite3_wal_hook(c->db, wal_hook, c);
        c->cp = checkpointer_new(cfg->path);
        *ret = c;
        return 0;
fail:
        lite_disconnect(c);
        return r;
}

static int lite_reconnect(StoreConn *c) {
        return 0; /* a file does not go away */
}

static int lite_listen_fd(StoreConn *c) {
        return -1;
}

static int lite_listen_read(StoreConn *c, bool *ret_queue, bool *ret_outbox) {
        return 0;
}

static int lite_debug_max_pages(StoreConn *c, uint64_t pages) {
        char text[64];

        (void) snprintf(text, sizeof(text), "PRAGMA max_page_count = %" PRIu64, pages ? pages : MAX_PAGE_COUNT_DEFAULT);
        return sql_exec(c->db, text);
}

const StoreBackend store_backend_sqlite = {
        .name = "sqlite",
        .shared = false,
        .connect = lite_connect,
        .disconnect = lite_disconnect,
        .migrate = lite_migrate,
        .reconnect = lite_reconnect,
        .stmt = lite_stmt,
        .bind_text = lite_bind_text,
        .bind_u64 = lite_bind_u64,
        .bind_blob = lite_bind_blob,
        .step = lite_step,
        .reset = lite_reset,
        .column_null = lite_column_null,
        .column_text = lite_column_text,
        .column_u64 = lite_column_u64,
        .begin = lite_begin,
        .commit = lite_commit,
        .rollback = lite_rollback,
        .dedup_check = lite_dedup_check,
        .dedup_record = lite_dedup_record,
        .listen_fd = lite_listen_fd,
        .listen_read = lite_listen_read,
        .after_commit = checkpoint,
        .debug_max_pages = lite_debug_max_pages,
};
