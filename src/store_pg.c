/* The state store on PostgreSQL (15 or later), through libpq: any number
 * of instances share one schema, all active at once (interface.md section
 * 8). Each writer thread has its own blocking connection and runs group
 * commits like the SQLite writer; the loop has one connection for reads
 * and one that LISTENs for the peers' wake-ups. What makes several
 * instances one:
 *  - redeliveries: a row per (source, dedup_key) in `dedup`, inserted with
 *    ON CONFLICT, so two instances racing on one delivery make one event;
 *  - guardrails: a transaction that applies them (cooldown, the cap) holds
 *    a transaction-scoped advisory lock first, so the cap never overshoots;
 *  - work: claims take `FOR UPDATE SKIP LOCKED` rows and a lease the owner
 *    renews with its heartbeat; a running action whose lease expired is
 *    claimable by anyone;
 *  - wake-ups: NOTIFY in the committing transaction, LISTEN on the loop.
 * See docs/internals/store.md and docs/high-availability.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "alloc.h"
#include "cleanup.h"
#include "log.h"
#include "remedyd-limits.h"
#include "store-backend.h"
#include "strbuf.h"
#include "util.h"

#define SCHEMA_VERSION 1
#define MAX_PARAMS 20
/* pg_advisory_[xact_]lock(ADVISORY_CLASS, hashtext(schema)) */
#define ADVISORY_CLASS 29285 /* "re" */
#define ADVISORY_MIGRATE 1
#define ADVISORY_GUARD 2

struct StoreStmt {
        StoreConn *c;
        StoreStmtId id;
        int nparams;
        const char *values[MAX_PARAMS];
        int lengths[MAX_PARAMS];
        int formats[MAX_PARAMS];
        char nums[MAX_PARAMS][24];
        PGresult *res;
        int row, nrows;
};

/* A prefetched redelivery check (see pg_dedup_prefetch()). */
typedef struct Prefetch {
        const StoreEvent *ev;
        int result;              /* 1 duplicate of orig, 0 new, -1 ask again */
        char orig[33];
        size_t first;            /* the batch's first event with the same key */
} Prefetch;

/* An events row waiting to go out with others in one INSERT. */
typedef struct EventRow {
        const char *id, *source, *dedup_key, *body; /* the op's, alive until the commit */
        size_t body_len;
        uint64_t received_usec;
} EventRow;
#define EVENT_ROWS_MAX 1024u
/* ... and at most this many body bytes (hex doubles them in the statement) */
#define EVENT_ROWS_BYTES (8u * 1024u * 1024u)
/* redelivery checks per statement (keys are at most LIMIT_TEMPLATE_OUTPUT_BYTES) */
#define PREFETCH_CHUNK 1024u

struct StoreConn {
        PGconn *pg;
        PGconn *listener;        /* reader only: LISTENs */
        char *conninfo, *schema, *instance;
        char *channel_queue, *channel_outbox;
        bool reader;
        bool prepared[_S_MAX];
        StoreStmt st[_S_MAX];
        /* Writers run in pipeline mode: statements whose result nobody
         * reads are sent without waiting; the results still owed are
         * collected at the next read and at COMMIT. */
        bool pipeline;
        unsigned inflight;       /* commands sent whose results are not read yet */
        int pipe_error;          /* the first error among them, this transaction */
        uint64_t round_trips;
        Prefetch *pf;
        size_t n_pf, pf_cursor, pf_cap;
        EventRow *rows;          /* S_INSERT_EVENT, held back until the next other statement */
        size_t n_rows, rows_cap, rows_bytes;
        char *last_error;        /* the last failed connect's message */
        /* the backend's own fixed statements, prepared on first use: the
         * server plans each once per connection, not once per batch */
        const char *own[16];
        size_t n_own;
};

/* Commands sent ahead at most, before their results are read: bounds what
 * the server buffers for us (a server blocked writing results to a client
 * blocked writing commands would wait for ever). */
#define PIPE_MAX_INFLIGHT 512u

/* Statements without a result row: pipelined. */
static const bool write_only[_S_MAX] = {
        [S_INSERT_EVENT] = true,  [S_INSERT_ACTION] = true, [S_INSERT_AUDIT] = true, [S_SET_STATUS] = true,
        [S_CLAIM] = true,         [S_FINISH] = true,        [S_RETRY] = true,        [S_SET_USER_ID] = true,
        [S_RESOLVE] = true,       [S_HEARTBEAT] = true,     [S_RENEW] = true,        [S_PRUNE] = true,
        [S_OUTBOX_INSERT] = true, [S_OUTBOX_CLAIM] = true,
};

#define ACTION_SELECT                                                                                   \
        "a.id, a.event_id, a.rule, a.action, a.\"user\", a.user_id, a.reason, a.status, a.detail, "     \
        "a.created_usec, a.updated_usec, a.not_before_usec, a.attempts, a.for_usec, "                   \
        "a.cooldown_usec, a.dry_run, a.parent_id, a.api_code, a.api_message, "                          \
        "COALESCE(e.received_usec, a.created_usec), a.owner "
#define ACTION_COLUMNS ACTION_SELECT "FROM actions a LEFT JOIN events e ON e.id = a.event_id "
#define OUTBOX_SELECT                                                                                   \
        "SELECT " ACTION_SELECT ", o.id, o.sink, o.outcome, o.state, o.attempts, o.created_usec, "       \
        "o.updated_usec, o.not_before_usec, o.last_error, o.instance, e.source "                        \
        "FROM outbox o JOIN actions a ON a.id = o.action_id LEFT JOIN events e ON e.id = a.event_id "
#define AUDIT_COLUMNS                                                                                   \
        "seq, time_usec, kind, event_id, action_id, rule, \"user\", from_status, to_status, detail, instance "

static const char schema_v1[] =
        "CREATE TABLE events ("
        "  id text PRIMARY KEY,"
        "  source text NOT NULL,"
        "  dedup_key text,"
        "  received_usec bigint NOT NULL,"
        "  body bytea);"
        "CREATE INDEX events_time ON events (received_usec);"
        "CREATE TABLE dedup ("
        "  source text NOT NULL,"
        "  dedup_key text NOT NULL,"
        "  event_id text NOT NULL,"
        "  received_usec bigint NOT NULL,"
        "  PRIMARY KEY (source, dedup_key));"
        "CREATE INDEX dedup_time ON dedup (received_usec);"
        "CREATE TABLE actions ("
        "  seq bigserial NOT NULL,"
        "  id text PRIMARY KEY,"
        "  event_id text,"
        "  rule text NOT NULL,"
        "  action text NOT NULL,"
        "  \"user\" text,"
        "  user_id text,"
        "  user_key text,"
        "  reason text,"
        "  status text NOT NULL,"
        "  detail text,"
        "  created_usec bigint NOT NULL,"
        "  updated_usec bigint NOT NULL,"
        "  not_before_usec bigint NOT NULL DEFAULT 0,"
        "  attempts integer NOT NULL DEFAULT 0,"
        "  for_usec bigint NOT NULL DEFAULT 0,"
        "  cooldown_usec bigint NOT NULL DEFAULT 0,"
        "  dry_run integer NOT NULL DEFAULT 0,"
        "  parent_id text,"
        "  api_code text,"
        "  api_message text,"
        "  owner text,"
        "  lease_until_usec bigint NOT NULL DEFAULT 0);"
        "CREATE INDEX actions_seq ON actions (seq);"
        "CREATE INDEX actions_event ON actions (event_id);"
        "CREATE INDEX actions_due ON actions (status, not_before_usec);"
        "CREATE INDEX actions_cooldown ON actions (rule, user_key, created_usec);"
        "CREATE INDEX actions_cap ON actions (action, status, created_usec);"
        "CREATE INDEX actions_user ON actions (user_key, created_usec);"
        "CREATE TABLE audit ("
        "  seq bigserial PRIMARY KEY,"
        "  time_usec bigint NOT NULL,"
        "  kind text NOT NULL,"
        "  event_id text,"
        "  action_id text,"
        "  rule text,"
        "  \"user\" text,"
        "  user_key text,"
        "  from_status text,"
        "  to_status text,"
        "  detail text,"
        "  instance text);"
        "CREATE INDEX audit_user ON audit (user_key, time_usec);"
        "CREATE INDEX audit_user_lower ON audit (lower(\"user\"), time_usec);"
        "CREATE INDEX audit_time ON audit (time_usec);"
        "CREATE TABLE outbox ("
        "  seq bigserial NOT NULL,"
        "  id text PRIMARY KEY,"
        "  sink text NOT NULL,"
        "  action_id text NOT NULL,"
        "  outcome text NOT NULL,"
        "  state text NOT NULL DEFAULT 'pending',"
        "  attempts integer NOT NULL DEFAULT 0,"
        "  created_usec bigint NOT NULL,"
        "  updated_usec bigint NOT NULL,"
        "  not_before_usec bigint NOT NULL DEFAULT 0,"
        "  last_error text,"
        "  instance text);"
        "CREATE INDEX outbox_due ON outbox (state, not_before_usec);"
        "CREATE INDEX outbox_created ON outbox (created_usec);"
        "CREATE TABLE instances ("
        "  name text PRIMARY KEY,"
        "  started_usec bigint NOT NULL,"
        "  last_seen_usec bigint NOT NULL,"
        "  version text);";

static const char *const sql[_S_MAX] = {
        [S_EVENT_ACTIONS] = "SELECT " ACTION_COLUMNS "WHERE a.event_id = $1::text AND a.parent_id IS NULL ORDER BY a.seq",
        [S_INSERT_EVENT] = "INSERT INTO events (id, source, dedup_key, received_usec, body) "
                           "VALUES ($1::text, $2::text, $3::text, $4::bigint, $5::bytea)",
        [S_INSERT_ACTION] = "INSERT INTO actions (id, event_id, rule, action, \"user\", user_id, user_key, reason, "
                            "status, detail, created_usec, updated_usec, not_before_usec, attempts, for_usec, "
                            "cooldown_usec, dry_run, parent_id) "
                            "VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, "
                            "$9::text, $10::text, $11::bigint, $11::bigint, $12::bigint, $13::integer, $14::bigint, "
                            "$15::bigint, $16::integer, $17::text)",
        [S_INSERT_AUDIT] = "INSERT INTO audit (time_usec, kind, event_id, action_id, rule, \"user\", user_key, "
                           "from_status, to_status, detail, instance) "
                           "VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, "
                           "$8::text, $9::text, $10::text, $11::text)",
        [S_COOLDOWN] = "SELECT 1 FROM actions WHERE rule = $1::text AND (user_key = $2::text OR user_key = $4::text) "
                       "AND created_usec >= $3::bigint "
                       "AND status IN ('queued', 'held', 'running', 'done', 'dry_run') LIMIT 1",
        [S_CAP] = "SELECT count(*) FROM actions WHERE action = 'suspend' "
                  "AND status IN ('queued', 'running', 'done') AND created_usec >= $1::bigint",
        [S_TIMED_PENDING] = "SELECT id FROM actions WHERE user_key = $1::text AND action = 'reactivate' "
                            "AND parent_id IS NOT NULL AND status IN ('queued', 'held') "
                            "AND ($2::bigint IS NULL OR not_before_usec < $2::bigint)",
        [S_SET_STATUS] = "UPDATE actions SET status = $2::text, updated_usec = $3::bigint WHERE id = $1::text",
        [S_GET] = "SELECT " ACTION_COLUMNS "WHERE a.id = $1::text",
        [S_DUE] = "SELECT id FROM actions WHERE (status = 'queued' AND not_before_usec <= $1::bigint) "
                  "OR (status = 'running' AND lease_until_usec < $1::bigint AND owner IS DISTINCT FROM $3::text) "
                  "ORDER BY not_before_usec LIMIT $2::bigint FOR UPDATE SKIP LOCKED",
        [S_CLAIM] = "UPDATE actions SET status = 'running', updated_usec = $2::bigint, owner = $3::text, "
                    "lease_until_usec = $4::bigint WHERE id = $1::text",
        /* running actions count by their lease: one that expires becomes claimable */
        [S_NEXT_DUE] = "SELECT min(t) FROM (SELECT min(not_before_usec) AS t FROM actions WHERE status = 'queued' "
                       "UNION ALL SELECT min(lease_until_usec) FROM actions WHERE status = 'running' "
                       "AND owner IS DISTINCT FROM $2::text) x WHERE $1::bigint IS NOT NULL",
        [S_FINISH] = "UPDATE actions SET status = $2::text, api_code = $3::text, api_message = $4::text, "
                     "detail = COALESCE($5::text, detail), updated_usec = $6::bigint WHERE id = $1::text",
        [S_RETRY] = "UPDATE actions SET status = 'queued', attempts = attempts + 1, not_before_usec = $2::bigint, "
                    "detail = COALESCE($3::text, detail), updated_usec = $4::bigint, owner = NULL "
                    "WHERE id = $1::text",
        [S_SET_USER_ID] = "UPDATE actions SET user_id = $2::text, user_key = $2::text, updated_usec = $3::bigint "
                          "WHERE id = $1::text",
        [S_RESOLVE] = "UPDATE actions SET status = $2::text, detail = COALESCE($3::text, detail), "
                      "updated_usec = $4::bigint WHERE id = $1::text",
        [S_OUTLASTED] = "SELECT 1 FROM actions WHERE user_key = $1::text AND action = 'suspend' AND id <> $2::text "
                        "AND created_usec >= $3::bigint AND (status IN ('queued', 'running') "
                        "OR (status = 'done' AND (for_usec = 0 OR updated_usec + for_usec > $4::bigint))) LIMIT 1",
        /* other instances' running work stays theirs until their leases expire */
        [S_RECOVER] = "SELECT " ACTION_COLUMNS "WHERE a.status = 'running' AND a.owner = $1::text",
        [S_HEARTBEAT] = "INSERT INTO instances (name, started_usec, last_seen_usec, version) "
                        "VALUES ($1::text, $3::bigint, $2::bigint, $4::text) "
                        "ON CONFLICT (name) DO UPDATE SET started_usec = excluded.started_usec, "
                        "last_seen_usec = excluded.last_seen_usec, version = excluded.version",
        [S_RENEW] = "UPDATE actions SET lease_until_usec = $2::bigint WHERE owner = $1::text AND status = 'running'",
        [S_PRUNE] = "WITH d AS (DELETE FROM dedup WHERE received_usec < $1::bigint) "
                    "DELETE FROM outbox WHERE state <> 'pending' AND updated_usec < $2::bigint",
        [S_OUTBOX_INSERT] = "INSERT INTO outbox (id, sink, action_id, outcome, created_usec, updated_usec, instance) "
                            "VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $5::bigint, $6::text)",
        [S_OUTBOX_DUE] = "SELECT id FROM outbox WHERE state = 'pending' AND not_before_usec <= $1::bigint "
                         "ORDER BY not_before_usec, created_usec LIMIT $2::bigint FOR UPDATE SKIP LOCKED",
        [S_OUTBOX_CLAIM] = "UPDATE outbox SET not_before_usec = $2::bigint, attempts = attempts + 1, "
                           "updated_usec = $3::bigint WHERE id = $1::text",
        [S_OUTBOX_GET] = OUTBOX_SELECT "WHERE o.id = $1::text",
        [S_OUTBOX_NEXT_DUE] = "SELECT min(not_before_usec) FROM outbox WHERE state = 'pending' "
                              "AND $1::bigint IS NOT NULL",
        [S_OUTBOX_SET] = "UPDATE outbox SET state = $2::text, not_before_usec = $3::bigint, "
                         "last_error = COALESCE($4::text, last_error), updated_usec = $5::bigint "
                         "WHERE id = $1::text AND state = 'pending' RETURNING id",
        [R_COUNT_STATUS] = "SELECT count(*) FROM actions WHERE status = $1::text",
        [R_CAP] = "SELECT count(*) FROM actions WHERE action = 'suspend' "
                  "AND status IN ('queued', 'running', 'done') AND created_usec >= $1::bigint",
        [R_LIST_ALL] = "SELECT " ACTION_COLUMNS "ORDER BY a.seq DESC LIMIT $1::bigint",
        [R_LIST_STATUS] = "SELECT " ACTION_COLUMNS "WHERE a.status = $2::text ORDER BY a.seq DESC LIMIT $1::bigint",
        [R_GET] = "SELECT " ACTION_COLUMNS "WHERE a.id = $1::text",
        [R_HISTORY_ALL] = "SELECT * FROM (SELECT " AUDIT_COLUMNS "FROM audit WHERE time_usec >= $1::bigint "
                          "ORDER BY time_usec DESC, seq DESC LIMIT $2::bigint) a "
                          "UNION ALL SELECT * FROM (SELECT 0::bigint, received_usec, 'event', id, NULL, NULL, NULL, "
                          "NULL, NULL, source, NULL FROM events WHERE received_usec >= $1::bigint "
                          "ORDER BY received_usec DESC LIMIT $2::bigint) e "
                          "ORDER BY 2 DESC, 1 DESC LIMIT $2::bigint",
        [R_HISTORY_USER] = "SELECT " AUDIT_COLUMNS "FROM audit WHERE (user_key = $3::text "
                           "OR lower(\"user\") = lower($4::text)) AND time_usec >= $1::bigint "
                           "ORDER BY seq DESC LIMIT $2::bigint",
        [R_OUTBOX_LIST] = OUTBOX_SELECT "ORDER BY o.created_usec DESC, o.seq DESC LIMIT $1::bigint",
        [R_OUTBOX_COUNT] = "SELECT count(*) FROM outbox WHERE state = $1::text",
        [R_INSTANCES] = "SELECT name FROM instances WHERE last_seen_usec >= $1::bigint ORDER BY name",
        [R_DEDUP] = "SELECT event_id FROM dedup WHERE source = $1::text AND dedup_key = $2::text "
                    "AND received_usec >= $3::bigint",
        [R_EVENT_ACTIONS] = "SELECT " ACTION_COLUMNS "WHERE a.event_id = $1::text AND a.parent_id IS NULL ORDER BY a.seq",
        [R_COOLDOWN] = "SELECT 1 FROM actions WHERE rule = $1::text AND (user_key = $2::text OR user_key = $4::text) "
                       "AND created_usec >= $3::bigint "
                       "AND status IN ('queued', 'held', 'running', 'done', 'dry_run') LIMIT 1",
};

/* The highest $N of a statement. */
static int count_params(const char *text) {
        int max = 0;

        for (const char *p = text; (p = strchr(p, '$')); p++) {
                char *end;
                long v = strtol(p + 1, &end, 10);
                if (end != p + 1 && v > max && v <= MAX_PARAMS)
                        max = (int) v;
        }
        return max;
}

/* An error of a result or of the connection as an errno. */
static int pg_errno(PGconn *pg, const PGresult *res) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (PQstatus(pg) != CONNECTION_OK)
                return -ENOTCONN;
        if (!state)
                return -EIO;
        if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)
                return -EDEADLK;
        if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
            strcmp(state, "57P03") == 0)
                return -ENOTCONN;
        if (strcmp(state, "23505") == 0)
                return -EEXIST;
        if (strcmp(state, "53100") == 0)
                return -ENOSPC;
        if (strcmp(state, "53200") == 0)
                return -ENOMEM;
        if (strcmp(state, "25006") == 0)
                return -EROFS;
        if (strcmp(state, "57014") == 0)
                return -ETIMEDOUT;
        if (strncmp(state, "28", 2) == 0 || strcmp(state, "42501") == 0)
                return -EACCES;
        return -EIO;
}

/* Runs a command on the connection; logs and maps a failure. */
static int pg_exec(PGconn *pg, const char *text) {
        PGresult *res = PQexec(pg, text);
        ExecStatusType t = PQresultStatus(res);
        int r = 0;

        if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
                r = pg_errno(pg, res);
                log_debug("store: \"%.40s\" failed: %.300s", text, PQerrorMessage(pg));
        }
        PQclear(res);
        return r;
}

/* Notes a result of a pipelined command: the first error counts. */
static void pipe_note(StoreConn *c, const PGresult *res) {
        ExecStatusType t = PQresultStatus(res);

        if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK || t == PGRES_PIPELINE_SYNC || c->pipe_error < 0)
                return;
        c->pipe_error = t == PGRES_PIPELINE_ABORTED ? -EIO : pg_errno(c->pg, res);
        if (t != PGRES_PIPELINE_ABORTED)
                log_debug("store: pipelined command failed: %.300s", PQerrorMessage(c->pg));
}

/* Reads the results still owed; keeps the last one in *last when asked
 * (the caller's). One round trip. */
static int pipe_collect(StoreConn *c, PGresult **last) {
        if (c->inflight == 0)
                return c->pipe_error;
        if (PQsendFlushRequest(c->pg) != 1 || PQflush(c->pg) != 0)
                return -ENOTCONN;
        __atomic_add_fetch(&c->round_trips, 1, __ATOMIC_RELAXED);
        for (unsigned i = 0; i < c->inflight; i++) {
                PGresult *res = PQgetResult(c->pg), *end;

                if (!res)
                        return c->inflight = 0, PQstatus(c->pg) != CONNECTION_OK ? -ENOTCONN : -EIO;
                pipe_note(c, res);
                if (last && i + 1 == c->inflight)
                        *last = res;
                else
                        PQclear(res);
                /* each command's results end with a NULL */
                while ((end = PQgetResult(c->pg)))
                        PQclear(end);
        }
        c->inflight = 0;
        if (PQstatus(c->pg) != CONNECTION_OK)
                return -ENOTCONN;
        return c->pipe_error;
}

/* Ends the pipeline's current segment (Sync) and reads everything up to it. */
static int pipe_sync(StoreConn *c) {
        PGresult *res;
        int r;

        if (PQpipelineSync(c->pg) != 1)
                return -ENOTCONN;
        __atomic_add_fetch(&c->round_trips, 1, __ATOMIC_RELAXED);
        for (unsigned i = 0; i < c->inflight; i++) {
                res = PQgetResult(c->pg);
                if (!res)
                        break;
                pipe_note(c, res);
                PQclear(res);
                while ((res = PQgetResult(c->pg)))
                        PQclear(res);
        }
        c->inflight = 0;
        res = PQgetResult(c->pg); /* the Sync's own */
        if (res)
                PQclear(res);
        if (PQstatus(c->pg) != CONNECTION_OK)
                return -ENOTCONN;
        r = c->pipe_error;
        return r;
}

/* One element of a PostgreSQL array literal: NULL, or double-quoted with
 * backslash escapes; bytes as bytea hex. */
static int array_elem(StrBuf *b, const char *v, size_t n, bool hex) {
        static const char digits[] = "0123456789abcdef";
        int r;

        if (b->len > 1 && (r = strbuf_puts(b, ",")) < 0)
                return r;
        if (!v)
                return strbuf_puts(b, "NULL");
        if ((r = strbuf_puts(b, hex ? "\"\\\\x" : "\"")) < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char e[3];
                size_t k = 0;
                unsigned char ch = (unsigned char) v[i];

                if (hex) {
                        e[k++] = digits[ch >> 4];
                        e[k++] = digits[ch & 15];
                } else {
                        if (ch == '"' || ch == '\\')
                                e[k++] = '\\';
                        e[k++] = (char) ch;
                }
                if ((r = strbuf_append(b, e, k)) < 0)
                        return r;
        }
        return strbuf_puts(b, "\"");
}

static int array_u64(StrBuf *b, uint64_t v) {
        char num[24];

        (void) snprintf(num, sizeof(num), "%" PRIu64, v);
        return array_elem(b, num, strlen(num), false);
}

static int pipe_send(StoreConn *c, const char *text, int n, const char *const *values);

/* The held-back events rows as one INSERT (pipelined). */
static int rows_flush(StoreConn *c) {
        static const char insert[] =
                "INSERT INTO events (id, source, dedup_key, received_usec, body) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[])";
        StrBuf a[5];
        const char *v[5];
        int r = 0;

        if (c->n_rows == 0)
                return 0;
        for (size_t k = 0; k < 5; k++) {
                strbuf_init(&a[k], 256u * 1024u * 1024u);
                if (r >= 0)
                        r = strbuf_puts(&a[k], "{");
        }
        for (size_t i = 0; i < c->n_rows && r >= 0; i++) {
                const EventRow *e = &c->rows[i];

                if ((r = array_elem(&a[0], e->id, strlen(e->id), false)) < 0 ||
                    (r = array_elem(&a[1], e->source, strlen(e->source), false)) < 0 ||
                    (r = array_elem(&a[2], e->dedup_key, e->dedup_key ? strlen(e->dedup_key) : 0, false)) < 0 ||
                    (r = array_u64(&a[3], e->received_usec)) < 0 ||
                    (r = array_elem(&a[4], e->body, e->body_len, true)) < 0)
                        break;
        }
        for (size_t k = 0; k < 5 && r >= 0; k++)
                if ((r = strbuf_puts(&a[k], "}")) >= 0)
                        v[k] = a[k].data;
        c->n_rows = c->rows_bytes = 0;
        if (r >= 0)
                r = pipe_send(c, insert, 5, v); /* libpq copies the parameters */
        for (size_t k = 0; k < 5; k++)
                strbuf_free(&a[k]);
        return r;
}

static int row_add(StoreConn *c, const StoreStmt *st) {
        EventRow *e;

        if (c->n_rows == c->rows_cap) {
                size_t ncap = c->rows_cap ? c->rows_cap * 2 : 64;
                EventRow *nr = mem_reallocarray(c->rows, ncap, sizeof(*nr));
                if (!nr)
                        return -ENOMEM;
                c->rows = nr;
                c->rows_cap = ncap;
        }
        e = &c->rows[c->n_rows++];
        *e = (EventRow) {
                .id = st->values[0], .source = st->values[1], .dedup_key = st->values[2],
                .received_usec = st->values[3] ? strtoull(st->values[3], NULL, 10) : 0,
                .body = st->values[4], .body_len = (size_t) st->lengths[4],
        };
        if (!e->id || !e->source)
                return -EINVAL;
        c->rows_bytes += e->body_len;
        return c->n_rows >= EVENT_ROWS_MAX || c->rows_bytes >= EVENT_ROWS_BYTES ? rows_flush(c) : 0;
}

/* Sends one of the backend's fixed statements (text is a static string:
 * known by its address) as a prepared one, preparing it first if needed. */
static int own_send(StoreConn *c, const char *text, int n, const char *const *values) {
        char name[8];
        size_t k;

        for (k = 0; k < c->n_own && c->own[k] != text; k++)
                ;
        (void) snprintf(name, sizeof(name), "o%zu", k);
        if (k == c->n_own) {
                if (k == ELEMENTSOF(c->own))
                        return PQsendQueryParams(c->pg, text, n, NULL, values, NULL, NULL, 0) == 1 ? 0 : -EIO;
                if (PQsendPrepare(c->pg, name, text, 0, NULL) != 1)
                        return pg_errno(c->pg, NULL);
                c->inflight++;
                c->own[c->n_own++] = text;
        }
        return PQsendQueryPrepared(c->pg, name, n, values, NULL, NULL, 0) == 1 ? 0 : pg_errno(c->pg, NULL);
}

/* Sends a command with text parameters into the pipeline. */
static int pipe_send(StoreConn *c, const char *text, int n, const char *const *values) {
        int r;

        if ((r = own_send(c, text, n, values)) < 0)
                return r;
        c->inflight++;
        if (c->inflight >= PIPE_MAX_INFLIGHT)
                return pipe_collect(c, NULL);
        return 0;
}

/* A command whose result is needed: sent, then everything owed is read. */
static int pipe_query(StoreConn *c, const char *text, int n, const char *const *values, PGresult **ret) {
        int r;

        *ret = NULL;
        if ((r = rows_flush(c)) < 0 || (r = own_send(c, text, n, values)) < 0)
                return r;
        c->inflight++;
        r = pipe_collect(c, ret);
        if (r < 0) {
                PQclear(*ret);
                *ret = NULL;
        }
        return r;
}

static int pg_stmt(StoreConn *c, StoreStmtId id, StoreStmt **ret) {
        StoreStmt *st;

        *ret = NULL;
        if (id < 0 || id >= _S_MAX || !sql[id])
                return -EINVAL;
        if (PQstatus(c->pg) != CONNECTION_OK)
                return -ENOTCONN;
        st = &c->st[id];
        if (!c->prepared[id]) {
                char name[16];
                PGresult *res;
                int r = 0;

                (void) snprintf(name, sizeof(name), "s%d", (int) id);
                if (c->pipeline) {
                        /* its result comes with the next collect */
                        if (PQsendPrepare(c->pg, name, sql[id], 0, NULL) != 1)
                                return pg_errno(c->pg, NULL);
                        c->inflight++;
                } else {
                        res = PQprepare(c->pg, name, sql[id], 0, NULL);
                        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                                r = pg_errno(c->pg, res);
                                log_error("store: cannot prepare statement %d: %.300s", (int) id, PQerrorMessage(c->pg));
                        }
                        PQclear(res);
                        if (r < 0)
                                return r;
                }
                c->prepared[id] = true;
                *st = (StoreStmt) { .c = c, .id = id, .nparams = count_params(sql[id]) };
        }
        PQclear(st->res);
        st->res = NULL;
        for (int i = 0; i < st->nparams; i++) {
                st->values[i] = NULL;
                st->lengths[i] = 0;
                st->formats[i] = 0;
        }
        *ret = st;
        return 0;
}

static int pg_bind_text(StoreStmt *st, int i, const char *s) {
        if (i < 1 || i > st->nparams)
                return 0;
        st->values[i - 1] = s;
        st->formats[i - 1] = 0;
        return 0;
}

static int pg_bind_u64(StoreStmt *st, int i, uint64_t v) {
        if (i < 1 || i > st->nparams)
                return 0;
        (void) snprintf(st->nums[i - 1], sizeof(st->nums[i - 1]), "%" PRIu64, v > INT64_MAX ? (uint64_t) INT64_MAX : v);
        st->values[i - 1] = st->nums[i - 1];
        st->formats[i - 1] = 0;
        return 0;
}

static int pg_bind_blob(StoreStmt *st, int i, const void *p, size_t n) {
        if (i < 1 || i > st->nparams)
                return 0;
        if (n > INT32_MAX)
                return -E2BIG;
        st->values[i - 1] = p;
        st->lengths[i - 1] = (int) n;
        st->formats[i - 1] = 1;
        return 0;
}

static int pg_step(StoreStmt *st) {
        StoreConn *c = st->c;

        if (!st->res) {
                char name[16];
                ExecStatusType t;

                (void) snprintf(name, sizeof(name), "s%d", (int) st->id);
                if (c->pipeline) {
                        int r;

                        /* events rows go out together; anything else may read them */
                        if (st->id == S_INSERT_EVENT)
                                return row_add(c, st);
                        if ((r = rows_flush(c)) < 0)
                                return r;
                        if (PQsendQueryPrepared(c->pg, name, st->nparams, st->values, st->lengths, st->formats, 0) != 1)
                                return pg_errno(c->pg, NULL);
                        c->inflight++;
                        if (write_only[st->id])
                                return c->inflight >= PIPE_MAX_INFLIGHT ? pipe_collect(c, NULL) : 0;
                        r = pipe_collect(c, &st->res);
                        if (r < 0) {
                                PQclear(st->res);
                                st->res = NULL;
                                return r;
                        }
                } else
                        st->res = PQexecPrepared(c->pg, name, st->nparams, st->values, st->lengths, st->formats, 0);
                t = PQresultStatus(st->res);
                if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
                        int r = pg_errno(st->c->pg, st->res);
                        log_debug("store: statement %d failed: %.300s", (int) st->id, PQerrorMessage(st->c->pg));
                        PQclear(st->res);
                        st->res = NULL;
                        return r;
                }
                st->row = -1;
                st->nrows = PQntuples(st->res);
        }
        if (st->row < st->nrows)
                st->row++;
        return st->row < st->nrows ? 1 : 0;
}

static void pg_reset(StoreStmt *st) {
        PQclear(st->res);
        st->res = NULL;
}

static bool pg_column_null(StoreStmt *st, int i) {
        return !st->res || st->row < 0 || st->row >= st->nrows || i >= PQnfields(st->res) ||
               PQgetisnull(st->res, st->row, i);
}

static const char *pg_column_text(StoreStmt *st, int i) {
        return pg_column_null(st, i) ? NULL : PQgetvalue(st->res, st->row, i);
}

static uint64_t pg_column_u64(StoreStmt *st, int i) {
        const char *t = pg_column_text(st, i);

        if (!t || t[0] == '-')
                return 0;
        return strtoull(t, NULL, 10);
}

/* The advisory lock of this schema for `which`; session-level outside a
 * pipeline (migrations), transaction-level and pipelined inside one. */
static int guard_lock(StoreConn *c, int which, bool xact) {
        static const char session[] = "SELECT pg_advisory_lock($1::integer, hashtext($2) + $3::integer)";
        static const char transaction[] = "SELECT pg_advisory_xact_lock($1::integer, hashtext($2) + $3::integer)";
        char cls[16], w[16];
        const char *v[3] = { cls, c->schema, w };
        PGresult *res;
        int r;

        (void) snprintf(cls, sizeof(cls), "%d", ADVISORY_CLASS);
        (void) snprintf(w, sizeof(w), "%d", which);
        if (xact && c->pipeline)
                return pipe_send(c, transaction, 3, v);
        res = PQexecParams(c->pg, xact ? transaction : session, 3, NULL, v, NULL, NULL, 0);
        r = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : pg_errno(c->pg, res);
        PQclear(res);
        return r;
}

static int pg_begin(StoreConn *c, bool guard) {
        static const char *const none[1] = { NULL };
        int r;

        if (PQstatus(c->pg) != CONNECTION_OK)
                return -ENOTCONN;
        if (!c->pipeline) {
                if (PQenterPipelineMode(c->pg) != 1)
                        return -EIO;
                c->pipeline = true;
        }
        c->pipe_error = 0;
        c->n_pf = c->pf_cursor = 0;
        c->n_rows = c->rows_bytes = 0;
        if ((r = pipe_send(c, "BEGIN", 0, none)) < 0)
                return r;
        /* Transactions that apply the guardrails take turns, across every
         * instance: the cap's count and the insert it allows are one step.
         * READ COMMITTED: the statements after the lock see what the
         * previous holder committed. */
        if (guard && (r = guard_lock(c, ADVISORY_GUARD, true)) < 0)
                return r;
        return 0;
}

static int pg_commit(StoreConn *c, bool wake_queue, bool wake_outbox) {
        static const char notify[] = "SELECT pg_notify($1, '')";
        static const char *const none[1] = { NULL };
        int r;

        /* delivered to the listeners when (and only if) this commits */
        if ((wake_queue && (r = pipe_send(c, notify, 1, (const char *const[]) { c->channel_queue })) < 0) ||
            (wake_outbox && (r = pipe_send(c, notify, 1, (const char *const[]) { c->channel_outbox })) < 0) ||
            (r = rows_flush(c)) < 0 || (r = pipe_send(c, "COMMIT", 0, none)) < 0)
                return r;
        return pipe_sync(c);
}

static void pg_rollback(StoreConn *c) {
        static const char *const none[1] = { NULL };

        if (PQstatus(c->pg) != CONNECTION_OK)
                return;
        if (c->pipeline) {
                (void) pipe_sync(c); /* what was sent, up to the error */
                if (PQtransactionStatus(c->pg) != PQTRANS_IDLE && pipe_send(c, "ROLLBACK", 0, none) >= 0)
                        (void) pipe_sync(c);
                c->pipe_error = 0;
                return;
        }
        if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
                (void) pg_exec(c->pg, "ROLLBACK");
}

/* Dedup by the row of (source, key): inserted if new, taken over if what
 * holds it left the window, else the redelivery's original. Two instances
 * inserting the same key at once: the second waits for the first's
 * transaction, then sees the conflict. */
/* One statement: the key claimed for ev (first column its event id, second
 * 1), or, when another event of the window holds it, that event's id and 0.
 * No row at all: the holder committed while this statement waited for it,
 * after the statement's snapshot; a new statement sees it. */
static const char dedup_claim[] =
        "WITH ins AS (INSERT INTO dedup (source, dedup_key, event_id, received_usec) "
        "VALUES ($1, $2, $3, $4::bigint) ON CONFLICT (source, dedup_key) DO UPDATE "
        "SET event_id = excluded.event_id, received_usec = excluded.received_usec "
        "WHERE dedup.received_usec < $5::bigint RETURNING event_id) "
        "SELECT event_id, 1 FROM ins UNION ALL "
        "SELECT event_id, 0 FROM dedup WHERE source = $1 AND dedup_key = $2 AND NOT EXISTS (SELECT 1 FROM ins)";
static const char dedup_find[] = "SELECT event_id FROM dedup WHERE source = $1 AND dedup_key = $2";

/* 1 duplicate (orig set), 0 new, -1 unknown yet, < -1 errors */
static int dedup_result(const PGresult *res, char orig[static 33]) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return -EIO;
        if (PQntuples(res) == 0)
                return -1;
        if (strcmp(PQgetvalue(res, 0, 1), "1") == 0)
                return 0;
        if (strlen(PQgetvalue(res, 0, 0)) >= 33)
                return -EBADMSG;
        strcpy(orig, PQgetvalue(res, 0, 0));
        return 1;
}

static int dedup_params(const StoreEvent *ev, uint64_t since, char t4[static 24], char t5[static 24],
                        const char *v[static 5]) {
        (void) snprintf(t4, 24, "%" PRIu64, ev->received_usec);
        (void) snprintf(t5, 24, "%" PRIu64, since);
        v[0] = ev->source;
        v[1] = ev->dedup_key;
        v[2] = ev->id;
        v[3] = t4;
        v[4] = t5;
        return 5;
}

static int pg_dedup_check(StoreConn *c, const StoreEvent *ev, uint64_t since, char orig[static 33]) {
        char t4[24], t5[24];
        const char *v[5];
        PGresult *res;
        int r = -1;

        if (c->pf_cursor < c->n_pf && c->pf[c->pf_cursor].ev == ev) {
                Prefetch *p = &c->pf[c->pf_cursor++];
                r = p->result;
                if (r == 1)
                        strcpy(orig, p->orig);
        } else {
                if ((r = pipe_query(c, dedup_claim, dedup_params(ev, since, t4, t5, v), v, &res)) < 0)
                        return r;
                r = dedup_result(res, orig);
                PQclear(res);
        }
        if (r != -1)
                return r;
        if ((r = pipe_query(c, dedup_find, 2, (const char *const[]) { ev->source, ev->dedup_key }, &res)) < 0)
                return r;
        r = PQntuples(res) > 0 && strlen(PQgetvalue(res, 0, 0)) < 33 ? 1 : -EIO;
        if (r > 0)
                strcpy(orig, PQgetvalue(res, 0, 0));
        PQclear(res);
        return r;
}

static int prefetch_cmp(const void *a, const void *b, void *userdata) {
        const Prefetch *v = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int k = strcmp(v[i].ev->source, v[j].ev->source);

        if (!k)
                k = strcmp(v[i].ev->dedup_key, v[j].ev->dedup_key);
        return k ? k : i < j ? -1 : i > j; /* the batch's order among equal keys */
}

/* The redelivery checks of a whole batch in one statement and one round
 * trip: the keys inserted in (source, key) order, so that two instances'
 * batches lock the keys they share in the same order and cannot deadlock on
 * them. A key twice in the batch is the first one's redelivery. */
/* One statement claiming the keys of c->pf[distinct[0..k-1]] (sorted). */
static int prefetch_chunk(StoreConn *c, const size_t *distinct, size_t k, uint64_t min_since) {
        static const char claim[] =
                "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
                "  WITH ORDINALITY AS u(source, dedup_key, event_id, received_usec, ord)), "
                "ins AS (INSERT INTO dedup (source, dedup_key, event_id, received_usec) "
                "  SELECT source, dedup_key, event_id, received_usec FROM u ORDER BY source, dedup_key "
                "  ON CONFLICT (source, dedup_key) DO UPDATE SET event_id = excluded.event_id, "
                "  received_usec = excluded.received_usec WHERE dedup.received_usec < $5::bigint "
                "  RETURNING source, dedup_key, event_id) "
                "SELECT u.ord, COALESCE(i.event_id, (SELECT d.event_id FROM dedup d WHERE d.source = u.source "
                "  AND d.dedup_key = u.dedup_key)), i.event_id IS NOT NULL "
                "FROM u LEFT JOIN ins i ON i.source = u.source AND i.dedup_key = u.dedup_key";
        StrBuf a[4];
        const char *v[5];
        char num[24];
        PGresult *res = NULL;
        int r = 0;

        for (size_t j = 0; j < 4; j++) {
                strbuf_init(&a[j], 64u * 1024u * 1024u);
                if (r >= 0)
                        r = strbuf_puts(&a[j], "{");
        }
        for (size_t i = 0; i < k && r >= 0; i++) {
                const StoreEvent *ev = c->pf[distinct[i]].ev;

                if ((r = array_elem(&a[0], ev->source, strlen(ev->source), false)) < 0 ||
                    (r = array_elem(&a[1], ev->dedup_key, strlen(ev->dedup_key), false)) < 0 ||
                    (r = array_elem(&a[2], ev->id, strlen(ev->id), false)) < 0 ||
                    (r = array_u64(&a[3], ev->received_usec)) < 0)
                        break;
        }
        for (size_t j = 0; j < 4 && r >= 0; j++)
                if ((r = strbuf_puts(&a[j], "}")) >= 0)
                        v[j] = a[j].data;
        if (r < 0)
                goto out;
        (void) snprintf(num, sizeof(num), "%" PRIu64, min_since);
        v[4] = num;
        if ((r = pipe_query(c, claim, 5, v, &res)) < 0)
                goto out;
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
                r = -EIO;
                goto out;
        }
        for (int row = 0; row < PQntuples(res); row++) {
                unsigned long ord = strtoul(PQgetvalue(res, row, 0), NULL, 10);
                Prefetch *p;

                if (ord < 1 || ord > k)
                        continue;
                p = &c->pf[distinct[ord - 1]];
                if (strcmp(PQgetvalue(res, row, 2), "t") == 0)
                        p->result = 0;
                else if (!PQgetisnull(res, row, 1) && strlen(PQgetvalue(res, row, 1)) < 33) {
                        p->result = 1;
                        strcpy(p->orig, PQgetvalue(res, row, 1));
                }
        }
out:
        PQclear(res);
        for (size_t j = 0; j < 4; j++)
                strbuf_free(&a[j]);
        return r;
}

/* The redelivery checks of a whole batch, PREFETCH_CHUNK keys a statement
 * and a round trip: the keys inserted in (source, key) order, so that two
 * instances' batches lock the keys they share in the same order and cannot
 * deadlock on them. A key twice in the batch is the first one's redelivery. */
static int pg_dedup_prefetch(StoreConn *c, const StoreEvent *const *evs, const uint64_t *since, size_t n) {
        size_t *order = NULL, *distinct = NULL, nd = 0;
        uint64_t min_since = UINT64_MAX;
        int r = 0;

        c->n_pf = c->pf_cursor = 0;
        if (n == 0)
                return 0;
        if (n > c->pf_cap) {
                Prefetch *np = mem_reallocarray(c->pf, n, sizeof(*np));
                if (!np)
                        return -ENOMEM;
                c->pf = np;
                c->pf_cap = n;
        }
        order = mem_calloc(n, sizeof(*order));
        distinct = mem_calloc(n, sizeof(*distinct));
        if (!order || !distinct) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                c->pf[i] = (Prefetch) { .ev = evs[i], .result = -1, .first = i };
                order[i] = i;
                if (since[i] < min_since)
                        min_since = since[i]; /* within the batch's milliseconds of each other */
        }
        qsort_r(order, n, sizeof(*order), prefetch_cmp, c->pf);
        for (size_t i = 0; i < n; i++) {
                Prefetch *p = &c->pf[order[i]];

                if (i > 0) {
                        const Prefetch *q = &c->pf[order[i - 1]];
                        if (strcmp(q->ev->source, p->ev->source) == 0 && strcmp(q->ev->dedup_key, p->ev->dedup_key) == 0) {
                                p->first = q->first;
                                continue;
                        }
                }
                distinct[nd++] = order[i];
        }
        for (size_t done = 0; done < nd && r >= 0; done += PREFETCH_CHUNK)
                r = prefetch_chunk(c, distinct + done, nd - done < PREFETCH_CHUNK ? nd - done : PREFETCH_CHUNK,
                                   min_since);
        if (r < 0)
                goto out;
        /* the batch's own repeats follow their first */
        for (size_t i = 0; i < n; i++) {
                Prefetch *p = &c->pf[i], *f = &c->pf[p->first];

                if (p->first == i)
                        continue;
                if (f->result == 0) {
                        p->result = 1;
                        strcpy(p->orig, f->ev->id);
                } else if (f->result == 1) {
                        p->result = 1;
                        strcpy(p->orig, f->orig);
                }
        }
        c->n_pf = n;
out:
        mem_free(order);
        mem_free(distinct);
        return r;
}

static uint64_t pg_round_trips(StoreConn *c) {
        return __atomic_load_n(&c->round_trips, __ATOMIC_RELAXED);
}

static int pg_dedup_record(StoreConn *c, const StoreEvent *ev, uint64_t since) {
        return 0; /* the dedup row went in with the check */
}

/* Settings of every new connection: the schema, and bounds so that a
 * database that stops answering fails a batch (503) instead of hanging it. */
static int session_setup(StoreConn *c) {
        char text[512];
        char *id = PQescapeIdentifier(c->pg, c->schema, strlen(c->schema));
        int r;

        if (!id)
                return -ENOMEM;
        (void) snprintf(text, sizeof(text),
                        "SET search_path TO %s; SET statement_timeout = '%s'; SET lock_timeout = '10s'; "
                        "SET idle_in_transaction_session_timeout = '60s'; SET synchronous_commit = on",
                        id, c->reader ? "5s" : "15s");
        PQfreemem(id);
        if (strlen(text) >= sizeof(text) - 1)
                return -ENAMETOOLONG;
        memset(c->prepared, 0, sizeof(c->prepared));
        if ((r = pg_exec(c->pg, text)) < 0)
                return r;
        return 0;
}

static int channel_name(const char *schema, const char *what, char **ret) {
        size_t n = strlen(schema) + strlen(what) + 2;

        *ret = mem_malloc(n);
        if (!*ret)
                return -ENOMEM;
        (void) snprintf(*ret, n, "%s_%s", schema, what);
        return 0;
}

/* The server's NOTICEs ("schema already exists, skipping") are not ours
 * to print on stderr. */
static void on_notice(void *arg, const char *message) {
        log_debug("store: PostgreSQL says: %.200s", message);
}

/* A connection: the configured conninfo, with defaults before it (so the
 * operator's string wins) for timeouts and keepalives. */
static int pg_open(StoreConn *c, PGconn **ret) {
        static const char *const keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
                                            "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                            "dbname", "fallback_application_name", NULL };
        const char *values[] = { "5", "1", "10", "5", "3", "15000", c->conninfo, "remedyd", NULL };
        PGconn *pg = PQconnectdbParams(keys, values, 1);

        if (!pg)
                return -ENOMEM;
        if (PQstatus(pg) != CONNECTION_OK) {
                /* the conninfo's password is registered for redaction
                 * (pg_connect()); a message is logged when it changes */
                char *msg = mem_strdup(PQerrorMessage(pg));
                if (msg)
                        (void) strstrip(msg);
                if (msg && (!c->last_error || strcmp(msg, c->last_error) != 0))
                        log_warning("store: cannot connect to PostgreSQL: %.300s", msg);
                mem_free(c->last_error);
                c->last_error = msg;
                PQfinish(pg);
                return -ENOTCONN;
        }
        mem_free(c->last_error);
        c->last_error = NULL;
        (void) PQsetNoticeProcessor(pg, on_notice, NULL);
        *ret = pg;
        return 0;
}

static int listener_open(StoreConn *c) {
        char text[512];
        char *q = NULL, *o = NULL;
        int r;

        if ((r = pg_open(c, &c->listener)) < 0)
                return r;
        q = PQescapeIdentifier(c->listener, c->channel_queue, strlen(c->channel_queue));
        o = PQescapeIdentifier(c->listener, c->channel_outbox, strlen(c->channel_outbox));
        if (!q || !o) {
                r = -ENOMEM;
                goto out;
        }
        (void) snprintf(text, sizeof(text), "LISTEN %s; LISTEN %s", q, o);
        r = pg_exec(c->listener, text);
        if (r >= 0 && PQsetnonblocking(c->listener, 1) < 0)
                r = -EIO;
out:
        PQfreemem(q);
        PQfreemem(o);
        return r;
}

static void pg_disconnect(StoreConn *c) {
        if (!c)
                return;
        for (size_t i = 0; i < _S_MAX; i++)
                PQclear(c->st[i].res);
        if (c->pg)
                PQfinish(c->pg);
        if (c->listener)
                PQfinish(c->listener);
        if (c->conninfo) {
                explicit_bzero(c->conninfo, strlen(c->conninfo));
                mem_free(c->conninfo);
        }
        mem_free(c->schema);
        mem_free(c->instance);
        mem_free(c->channel_queue);
        mem_free(c->channel_outbox);
        mem_free(c->pf);
        mem_free(c->rows);
        mem_free(c->last_error);
        mem_free(c);
}

static int pg_connect(const StoreConnConfig *cfg, StoreConn **ret) {
        StoreConn *c;
        int r;

        if (!cfg->conninfo || !cfg->schema)
                return -EINVAL;
        c = mem_calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->reader = cfg->reader;
        if (!(c->conninfo = mem_strdup(cfg->conninfo)) || !(c->schema = mem_strdup(cfg->schema)) ||
            !(c->instance = mem_strdup(cfg->instance ? cfg->instance : ""))) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = channel_name(c->schema, "queue", &c->channel_queue)) < 0 ||
            (r = channel_name(c->schema, "outbox", &c->channel_outbox)) < 0)
                goto fail;
        {
                /* a password inside the conninfo never reaches a log line */
                PQconninfoOption *opts = PQconninfoParse(c->conninfo, NULL);
                for (PQconninfoOption *o = opts; o && o->keyword; o++)
                        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
                                (void) log_register_secret_pinned(o->val);
                if (!opts) {
                        r = log_error_errno(-EINVAL, "store: state.postgresql.conninfo_file holds no valid libpq "
                                                     "connection string or URI");
                        goto fail;
                }
                PQconninfoFree(opts);
        }
        if ((r = pg_open(c, &c->pg)) < 0) {
                /* the database may come later: the writer reconnects
                 * (store.c), and every request meanwhile is answered 503 */
                if (r == -ENOTCONN) {
                        *ret = c;
                        return r;
                }
                goto fail;
        }
        if (PQserverVersion(c->pg) < 150000) {
                r = log_error_errno(-EPROTONOSUPPORT, "store: PostgreSQL %d.%d is older than 15",
                                    PQserverVersion(c->pg) / 10000, PQserverVersion(c->pg) % 10000);
                goto fail;
        }
        /* the schema may not exist yet (migrate creates it): a search_path
         * naming a missing schema is not an error in PostgreSQL */
        if ((r = session_setup(c)) < 0)
                goto fail;
        if (cfg->reader && (r = listener_open(c)) < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        pg_disconnect(c);
        return r;
}

/* A new connection (not PQreset(): the old one may be in any pipeline
 * state). */
static int pg_reconnect(StoreConn *c) {
        PGconn *pg;
        int r;

        if ((r = pg_open(c, &pg)) < 0)
                return r;
        PQfinish(c->pg);
        c->pg = pg;
        c->pipeline = false;
        c->inflight = 0;
        c->pipe_error = 0;
        c->n_pf = c->pf_cursor = 0;
        c->n_rows = c->rows_bytes = 0;
        c->n_own = 0;
        return session_setup(c);
}

static int meta_version(StoreConn *c, long *ret) {
        PGresult *res = PQexec(c->pg, "SELECT value FROM meta WHERE key = 'schema_version'");
        int r = 0;

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                r = pg_errno(c->pg, res);
        else
                *ret = PQntuples(res) > 0 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        PQclear(res);
        return r;
}

/* Creates the schema or brings it to SCHEMA_VERSION, under a session
 * advisory lock: instances starting together migrate once. */
static int pg_migrate(StoreConn *c) {
        char text[256];
        char *id = PQescapeIdentifier(c->pg, c->schema, strlen(c->schema));
        long v = 0;
        int r, k;

        if (!id)
                return -ENOMEM;
        (void) snprintf(text, sizeof(text),
                        "CREATE SCHEMA IF NOT EXISTS %s; "
                        "CREATE TABLE IF NOT EXISTS %s.meta (key text PRIMARY KEY, value text NOT NULL)",
                        id, id);
        PQfreemem(id);
        if ((r = guard_lock(c, ADVISORY_MIGRATE, false)) < 0)
                return log_error_errno(r, "store: cannot take the migration lock: %.300s", PQerrorMessage(c->pg));
        if ((r = pg_exec(c->pg, "BEGIN")) < 0 || (r = pg_exec(c->pg, text)) < 0 || (r = meta_version(c, &v)) < 0)
                goto fail;
        if (v > SCHEMA_VERSION) {
                r = log_error_errno(-EPROTONOSUPPORT, "store: schema \"%s\" has version %ld, newer than %d", c->schema,
                                    v, SCHEMA_VERSION);
                goto fail;
        }
        if (v < 1 && (r = pg_exec(c->pg, schema_v1)) < 0)
                goto fail;
        if (v < SCHEMA_VERSION) {
                (void) snprintf(text, sizeof(text),
                                "INSERT INTO meta (key, value) VALUES ('schema_version', '%d') "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                SCHEMA_VERSION);
                if ((r = pg_exec(c->pg, text)) < 0)
                        goto fail;
        }
        if ((r = pg_exec(c->pg, "COMMIT")) < 0)
                goto fail;
        (void) pg_exec(c->pg, "SELECT pg_advisory_unlock_all()");
        if (v < SCHEMA_VERSION)
                log_info("store: PostgreSQL schema \"%s\" at version %d (was %ld)", c->schema, SCHEMA_VERSION, v);
        return session_setup(c);
fail:
        k = r;
        log_error("store: schema migration failed: %.300s", PQerrorMessage(c->pg));
        pg_rollback(c);
        (void) pg_exec(c->pg, "SELECT pg_advisory_unlock_all()");
        return k;
}

static int pg_listen_fd(StoreConn *c) {
        return c->listener ? PQsocket(c->listener) : -1;
}

static int pg_listen_read(StoreConn *c, bool *ret_queue, bool *ret_outbox) {
        PGnotify *n;

        if (!c->listener)
                return 0;
        if (!PQconsumeInput(c->listener) || PQstatus(c->listener) != CONNECTION_OK)
                return -ENOTCONN;
        while ((n = PQnotifies(c->listener))) {
                if (strcmp(n->relname, c->channel_queue) == 0)
                        *ret_queue = true;
                else if (strcmp(n->relname, c->channel_outbox) == 0)
                        *ret_outbox = true;
                PQfreemem(n);
        }
        return 0;
}

/* --- bulk import (COPY) ------------------------------------------------------ */

static int pg_is_empty(StoreConn *c) {
        PGresult *res = PQexec(c->pg, "SELECT (SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1) e) + "
                                      "(SELECT count(*) FROM (SELECT 1 FROM actions LIMIT 1) a) + "
                                      "(SELECT count(*) FROM (SELECT 1 FROM audit LIMIT 1) u) + "
                                      "(SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 1) o)");
        int r;

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                r = pg_errno(c->pg, res);
        else
                r = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
        PQclear(res);
        return r;
}

/* Ends a COPY in progress and reads its result. */
static int copy_finish(StoreConn *c, const char *error) {
        PGresult *res;
        int r = 0;

        if (PQputCopyEnd(c->pg, error) != 1)
                return pg_errno(c->pg, NULL);
        while ((res = PQgetResult(c->pg))) {
                if (PQresultStatus(res) != PGRES_COMMAND_OK && r == 0 && !error) {
                        r = pg_errno(c->pg, res);
                        log_error("store: import failed: %.300s", PQerrorMessage(c->pg));
                }
                PQclear(res);
        }
        return r;
}

static int pg_import_table(StoreConn *c, const char *table, const char *columns) {
        char text[512];
        PGresult *res;
        int r;

        if (PQtransactionStatus(c->pg) == PQTRANS_ACTIVE && (r = copy_finish(c, NULL)) < 0)
                return r;
        if (PQtransactionStatus(c->pg) == PQTRANS_IDLE && (r = pg_exec(c->pg, "BEGIN")) < 0)
                return r;
        (void) snprintf(text, sizeof(text), "COPY %s (%s) FROM STDIN", table, columns);
        res = PQexec(c->pg, text);
        r = PQresultStatus(res) == PGRES_COPY_IN ? 0 : pg_errno(c->pg, res);
        if (r < 0)
                log_error("store: cannot import into %s: %.300s", table, PQerrorMessage(c->pg));
        PQclear(res);
        return r;
}

/* One row in COPY's text format: tabs between values, \N for NULL,
 * backslash escapes for the characters that format reserves; bytea as
 * \\x and hex. */
static int pg_import_row(StoreConn *c, size_t n, const char *const *values, const size_t *lengths,
                         const bool *binary) {
        static const char hex[] = "0123456789abcdef";
        size_t size = 1;
        char *line, *p;
        int r;

        for (size_t i = 0; i < n; i++)
                size += 4 + (values[i] ? 2 * lengths[i] : 2); /* escaped or hex: at most twice the bytes */
        p = line = mem_malloc(size);
        if (!line)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const unsigned char *v = (const unsigned char *) values[i];

                if (i > 0)
                        *p++ = '\t';
                if (!v) {
                        *p++ = '\\';
                        *p++ = 'N';
                        continue;
                }
                if (binary[i]) {
                        *p++ = '\\';
                        *p++ = '\\';
                        *p++ = 'x';
                        for (size_t k = 0; k < lengths[i]; k++) {
                                *p++ = hex[v[k] >> 4];
                                *p++ = hex[v[k] & 15];
                        }
                        continue;
                }
                for (size_t k = 0; k < lengths[i]; k++) {
                        unsigned char ch = v[k];
                        const char *esc = ch == '\\' ? "\\\\" : ch == '\n' ? "\\n" : ch == '\r' ? "\\r" : ch == '\t' ? "\\t" : NULL;

                        if (esc) {
                                *p++ = esc[0];
                                *p++ = esc[1];
                        } else
                                *p++ = (char) ch;
                }
        }
        *p++ = '\n';
        r = PQputCopyData(c->pg, line, (int) (p - line)) == 1 ? 0 : pg_errno(c->pg, NULL);
        mem_free(line);
        return r;
}

static int pg_import_end(StoreConn *c, bool commit) {
        int r = 0;

        if (PQtransactionStatus(c->pg) == PQTRANS_ACTIVE)
                r = copy_finish(c, commit ? NULL : "migration abandoned");
        if (r >= 0 && commit) {
                /* the sequences continue after what was copied */
                r = pg_exec(c->pg, "SELECT setval(pg_get_serial_sequence('audit', 'seq'), "
                                   "GREATEST((SELECT max(seq) FROM audit), 1)); "
                                   "SELECT setval(pg_get_serial_sequence('actions', 'seq'), "
                                   "GREATEST((SELECT max(seq) FROM actions), 1)); "
                                   "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), "
                                   "GREATEST((SELECT max(seq) FROM outbox), 1))");
                if (r >= 0)
                        r = pg_exec(c->pg, "COMMIT");
                if (r < 0)
                        log_error("store: import failed: %.300s", PQerrorMessage(c->pg));
        }
        if (r < 0 || !commit)
                pg_rollback(c);
        return r;
}

const StoreBackend store_backend_pg = {
        .name = "postgresql",
        .shared = true,
        .connect = pg_connect,
        .disconnect = pg_disconnect,
        .migrate = pg_migrate,
        .reconnect = pg_reconnect,
        .stmt = pg_stmt,
        .bind_text = pg_bind_text,
        .bind_u64 = pg_bind_u64,
        .bind_blob = pg_bind_blob,
        .step = pg_step,
        .reset = pg_reset,
        .column_null = pg_column_null,
        .column_text = pg_column_text,
        .column_u64 = pg_column_u64,
        .begin = pg_begin,
        .commit = pg_commit,
        .rollback = pg_rollback,
        .dedup_check = pg_dedup_check,
        .dedup_record = pg_dedup_record,
        .dedup_prefetch = pg_dedup_prefetch,
        .round_trips = pg_round_trips,
        .listen_fd = pg_listen_fd,
        .listen_read = pg_listen_read,
        .is_empty = pg_is_empty,
        .import_table = pg_import_table,
        .import_row = pg_import_row,
        .import_end = pg_import_end,
};
