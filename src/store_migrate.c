/* Moving a SQLite state to a shared backend (remedyctl migrate-state,
 * interface.md 8.7): every row the daemon's decisions depend on, in one
 * transaction of the target, into an empty schema. Reads the SQLite file
 * read-only, so a copy can be taken while nothing runs on it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "alloc.h"
#include "log.h"
#include "remedyd-limits.h"
#include "store-backend.h"
#include "store.h"
#include "util.h"

#define DEDUP_WINDOW_USEC (24ULL * 3600ULL * USEC_PER_SEC)

/* Copies the rows of one query into one target table. */
static int copy_table(const StoreBackend *be, StoreConn *c, sqlite3 *db, const char *name, const char *columns,
                      const char *query, int binary_column, uint64_t *count) {
        sqlite3_stmt *st = NULL;
        int rc, r, n;

        rc = sqlite3_prepare_v2(db, query, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return log_error_errno(-EBADMSG, "migrate: cannot read %s from the SQLite state: %s", name,
                                       sqlite3_errmsg(db));
        if ((r = be->import_table(c, name, columns)) < 0)
                goto out;
        n = sqlite3_column_count(st);
        if (n > 32) {
                r = -E2BIG;
                goto out;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *values[32];
                size_t lengths[32];
                bool binary[32];

                for (int i = 0; i < n; i++) {
                        values[i] = sqlite3_column_type(st, i) == SQLITE_NULL
                                            ? NULL
                                            : i == binary_column ? (const char *) sqlite3_column_blob(st, i)
                                                                 : (const char *) sqlite3_column_text(st, i);
                        lengths[i] = values[i] ? (size_t) sqlite3_column_bytes(st, i) : 0;
                        binary[i] = i == binary_column;
                        if (binary[i] && !values[i] && sqlite3_column_type(st, i) != SQLITE_NULL)
                                values[i] = ""; /* an empty blob */
                }
                if ((r = be->import_row(c, (size_t) n, values, lengths, binary)) < 0)
                        goto out;
                (*count)++;
        }
        r = rc == SQLITE_DONE ? 0 : log_error_errno(-EIO, "migrate: reading %s failed: %s", name, sqlite3_errmsg(db));
out:
        sqlite3_finalize(st);
        return r;
}

static int user_version(sqlite3 *db, long *ret) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);

        if (rc != SQLITE_OK)
                return -EBADMSG;
        rc = sqlite3_step(st);
        *ret = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        return rc == SQLITE_ROW ? 0 : -EBADMSG;
}

int store_migrate_from_sqlite(const StoreConfig *target, const char *path, StoreMigrateStats *ret) {
        const StoreBackend *be = &store_backend_pg;
        StoreMigrateStats stats = {};
        StoreConnConfig cc;
        StoreConn *c = NULL;
        sqlite3 *db = NULL;
        char since[32];
        long v = 0;
        int r;

        if (!target || !path || !target->backend || strcmp(target->backend, "postgresql") != 0 || !target->conninfo)
                return log_error_errno(-EINVAL, "migrate: the configuration's state.backend is not postgresql");
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
                r = log_error_errno(-ENOENT, "migrate: cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
                sqlite3_close(db);
                return r;
        }
        if ((r = user_version(db, &v)) < 0 || v < 3 || v > 4) {
                r = log_error_errno(r < 0 ? r : -EPROTONOSUPPORT,
                                    "migrate: %s is not a remedyd SQLite state of schema version 3 or 4 (found %ld)%s",
                                    path, v, v > 0 && v < 3 ? "; start remedyd on it once to upgrade it" : "");
                goto out;
        }

        cc = (StoreConnConfig) { .conninfo = target->conninfo, .schema = target->schema ? target->schema : "remedyd",
                                 .instance = target->instance };
        if ((r = be->connect(&cc, &c)) < 0 || (r = be->migrate(c)) < 0)
                goto out;
        r = be->is_empty(c);
        if (r < 0)
                goto out;
        if (r == 0) {
                r = log_error_errno(-ENOTEMPTY, "migrate: schema \"%s\" already holds state; refusing to mix two "
                                                "states (migrate into a new schema, or drop this one first)",
                                    cc.schema);
                goto out;
        }

        {
                uint64_t now = now_usec(CLOCK_REALTIME);
                (void) snprintf(since, sizeof(since), "%" PRIu64, (uint64_t) (now > DEDUP_WINDOW_USEC ? now - DEDUP_WINDOW_USEC : 0));
        }
        {
                char dedup_query[512];
                const bool v4 = v >= 4;
                /* the newest delivery of each key within the window: the one a
                 * redelivery is a duplicate of */
                (void) snprintf(dedup_query, sizeof(dedup_query),
                                "SELECT source, dedup_key, id, max(received_usec) FROM events "
                                "WHERE dedup_key IS NOT NULL AND received_usec >= %s GROUP BY source, dedup_key",
                                since);
                if ((r = copy_table(be, c, db, "events", "id, source, dedup_key, received_usec, body",
                                    "SELECT id, source, dedup_key, received_usec, CAST(body AS BLOB) FROM events "
                                    "ORDER BY rowid",
                                    4, &stats.events)) < 0 ||
                    (r = copy_table(be, c, db, "dedup", "source, dedup_key, event_id, received_usec", dedup_query, -1,
                                    &stats.dedup)) < 0 ||
                    (r = copy_table(be, c, db, "actions",
                                    "seq, id, event_id, rule, action, \"user\", user_id, user_key, reason, status, "
                                    "detail, created_usec, updated_usec, not_before_usec, attempts, for_usec, "
                                    "cooldown_usec, dry_run, parent_id, api_code, api_message, owner, "
                                    "lease_until_usec",
                                    v4 ? "SELECT rowid, id, event_id, rule, action, user, user_id, user_key, reason, "
                                         "status, detail, created_usec, updated_usec, not_before_usec, attempts, "
                                         "for_usec, cooldown_usec, dry_run, parent_id, api_code, api_message, owner, "
                                         "0 FROM actions ORDER BY rowid"
                                       : "SELECT rowid, id, event_id, rule, action, user, user_id, user_key, reason, "
                                         "status, detail, created_usec, updated_usec, not_before_usec, attempts, "
                                         "for_usec, cooldown_usec, dry_run, parent_id, api_code, api_message, NULL, "
                                         "0 FROM actions ORDER BY rowid",
                                    -1, &stats.actions)) < 0 ||
                    (r = copy_table(be, c, db, "audit",
                                    "seq, time_usec, kind, event_id, action_id, rule, \"user\", user_key, "
                                    "from_status, to_status, detail, instance",
                                    v4 ? "SELECT seq, time_usec, kind, event_id, action_id, rule, user, user_key, "
                                         "from_status, to_status, detail, instance FROM audit ORDER BY seq"
                                       : "SELECT seq, time_usec, kind, event_id, action_id, rule, user, user_key, "
                                         "from_status, to_status, detail, NULL FROM audit ORDER BY seq",
                                    -1, &stats.audit)) < 0 ||
                    (v4 && (r = copy_table(be, c, db, "outbox",
                                           "seq, id, sink, action_id, outcome, state, attempts, created_usec, "
                                           "updated_usec, not_before_usec, last_error, instance",
                                           "SELECT rowid, id, sink, action_id, outcome, state, attempts, created_usec, "
                                           "updated_usec, not_before_usec, last_error, instance FROM outbox "
                                           "ORDER BY rowid",
                                           -1, &stats.outbox)) < 0))
                        goto fail;
        }
        if ((r = be->import_end(c, true)) < 0)
                goto out;
        if (ret)
                *ret = stats;
        r = 0;
        goto out;
fail:
        (void) be->import_end(c, false);
out:
        if (c)
                be->disconnect(c);
        sqlite3_close(db);
        return r;
}
