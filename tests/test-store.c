/* Unit tests for the state store (no network). Run with --bench N [--concurrency K]
 * to measure group-commit throughput instead. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "harness.h"
#include "safety.h"
#include "sqlite_walbuf.h"
#include "store.h"
#include "util.h"

#define HOUR (3600ULL * USEC_PER_SEC)

static char dir[] = "/tmp/test-store-XXXXXX";
static char dbpath[256];
static unsigned db_counter;

/* One test body, two backends: with REMEDYD_TEST_PG_CONNINFO set (meson's
 * store-pg test runs this binary under tests/pgserver.py), every store is
 * a fresh schema on that PostgreSQL server instead of a fresh file. */
static const char *pg_conninfo;
static char schema[64];

static void new_db_path(void) {
        (void) snprintf(dbpath, sizeof(dbpath), "%s/state-%u.db", dir, ++db_counter);
        (void) snprintf(schema, sizeof(schema), "t%u_%u", (unsigned) getpid(), db_counter);
}

typedef struct Result {
        unsigned calls;
        int r;
        bool duplicate;
        char event_id[33];
        size_t n;
        char ids[16][33];
        ActionStatus status[16];
} Result;

static void on_event(Store *s, int r, const StoreEvent *ev, bool duplicate, void *userdata) {
        Result *res = userdata;

        res->calls++;
        res->r = r;
        if (r < 0)
                return;
        res->duplicate = duplicate;
        strcpy(res->event_id, ev->id);
        res->n = ev->n_actions;
        for (size_t i = 0; i < ev->n_actions && i < 16; i++) {
                strcpy(res->ids[i], ev->actions[i].id);
                res->status[i] = ev->actions[i].status;
        }
}

static void on_done(Store *s, int r, void *userdata) {
        Result *res = userdata;
        res->calls++;
        res->r = r;
}

static void on_action(Store *s, int r, const StoreAction *a, void *userdata) {
        Result *res = userdata;
        res->calls++;
        res->r = r;
        if (r >= 0) {
                res->n = 1;
                strcpy(res->ids[0], a->id);
                res->status[0] = a->status;
        }
}

typedef struct Claimed {
        unsigned calls;
        int r;
        size_t n;
        char ids[64][33];
        ActionKind kind[64];
        uint64_t next_due;
        uint64_t not_before[64];
} Claimed;

static void on_claim(Store *s, int r, StoreAction *actions, size_t n, uint64_t next_due, void *userdata) {
        Claimed *c = userdata;
        c->calls++;
        c->r = r;
        c->n = n;
        c->next_due = next_due;
        for (size_t i = 0; i < n && i < 64; i++) {
                strcpy(c->ids[i], actions[i].id);
                c->kind[i] = actions[i].action;
                ASSERT_EQ(actions[i].status, ACTION_STATUS_RUNNING);
        }
}

/* Runs the loop until *counter reaches want, bounded by 60 s. */
static void wait_for(sd_event *e, const unsigned *counter, unsigned want) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        while (*counter < want) {
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        }
}

static StoreEvent *ev_new(const char *source, const char *dedup) {
        StoreEvent *ev = mem_calloc(1, sizeof(*ev));
        ASSERT_NOT_NULL(ev);
        ev->source = mem_strdup(source);
        ev->dedup_key = dedup ? mem_strdup(dedup) : NULL;
        ev->body = mem_strdup("{\"x\":1}");
        ASSERT_NOT_NULL(ev->source);
        ASSERT_NOT_NULL(ev->body);
        ev->body_len = strlen(ev->body);
        ev->received_usec = now_usec(CLOCK_REALTIME);
        ev->received_mono_usec = now_usec(CLOCK_MONOTONIC);
        return ev;
}

typedef struct ActSpec {
        const char *rule;
        ActionKind kind;
        const char *user;
        const char *user_id;
        ActionStatus pre;
        uint64_t cooldown;
        uint64_t for_usec;
        bool dry_run;
} ActSpec;

static void ev_add(StoreEvent *ev, ActSpec spec) {
        StoreAction *a;

        ev->actions = mem_reallocarray(ev->actions, ev->n_actions + 1, sizeof(StoreAction));
        ASSERT_NOT_NULL(ev->actions);
        a = &ev->actions[ev->n_actions++];
        *a = (StoreAction) {
                .rule = mem_strdup(spec.rule),
                .action = spec.kind,
                .user = spec.user ? mem_strdup(spec.user) : NULL,
                .user_id = spec.user_id ? mem_strdup(spec.user_id) : NULL,
                .reason = mem_strdup("test reason"),
                .status = spec.pre,
                .cooldown_usec = spec.cooldown,
                .for_usec = spec.for_usec,
                .dry_run = spec.dry_run,
        };
}

/* A store of the current database as instance `instance` (NULL: "test-a"),
 * with notification sinks. */
static Store *open_store_as(sd_event *e, unsigned cap, uint64_t window, const char *instance, uint64_t lease,
                            const StoreNotifySink *sinks, size_t n_sinks) {
        StoreOptions o = { .max_suspensions = cap, .window_usec = window, .dedup_window_usec = 24 * HOUR,
                           .notify = sinks, .n_notify = n_sinks };
        StoreConfig c = { .backend = pg_conninfo ? "postgresql" : "sqlite", .path = dbpath, .conninfo = pg_conninfo,
                          .schema = schema, .instance = instance ? instance : "test-a", .lease_usec = lease };
        Store *s = NULL;

        ASSERT_OK(store_open_config(&c, e, &o, &s));
        return s;
}

static Store *open_store(sd_event *e, unsigned cap, uint64_t window) {
        return open_store_as(e, cap, window, NULL, 0, NULL, 0);
}

/* The start of most tests: a fresh database (new_db_path()), a new loop in
 * *ret_e, and a store on both with a window of an hour. */
static Store *fresh_store_as(sd_event **ret_e, unsigned cap, const char *instance, uint64_t lease,
                             const StoreNotifySink *sinks, size_t n_sinks) {
        new_db_path();
        ASSERT_OK(sd_event_new(ret_e));
        return open_store_as(*ret_e, cap, HOUR, instance, lease, sinks, n_sinks);
}

static Store *fresh_store(sd_event **ret_e, unsigned cap) {
        return fresh_store_as(ret_e, cap, NULL, 0, NULL, 0);
}

/* Submits one event with one action and waits for its commit. */
static void submit1(sd_event *e, Store *s, const char *dedup, ActSpec spec, Result *res) {
        StoreEvent *ev = ev_new("splunk", dedup);

        *res = (Result) {};
        ev_add(ev, spec);
        ASSERT_OK(store_submit_event(s, ev, on_event, res));
        wait_for(e, &res->calls, 1);
        ASSERT_OK(res->r);
}

/* Waits for the on_done callback of a call that returned r (asserted
 * to be >= 0); returns what the callback got, and clears *res for the
 * next call. */
static int wait_done(sd_event *e, int r, Result *res) {
        int got;

        ASSERT_OK(r);
        wait_for(e, &res->calls, 1);
        got = res->r;
        *res = (Result) {};
        return got;
}

static ActionStatus status_of(Store *s, const char *id) {
        StoreAction *a = NULL;
        ActionStatus st;

        ASSERT_OK(store_get_action(s, id, &a));
        st = a->status;
        store_actions_free(a, 1);
        return st;
}

TEST(commit_and_read) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        StoreQueueCounts q;
        StoreAction *a = NULL, *list = NULL;
        StoreAuditEntry *h = NULL;
        size_t n = 0;
        Result res = {};
        Store *s;
        StoreEvent *ev;

        s = fresh_store(&e, 0);

        ev = ev_new("splunk", "id:1");
        ev_add(ev, (ActSpec) { "r1", ACTION_SUSPEND, "Alice@Example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r2", ACTION_NOTIFY, "alice@example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r3", ACTION_SUSPEND, NULL, NULL, ACTION_STATUS_UNRESOLVED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &res));
        ASSERT_EQ(res.calls, 0u);
        wait_for(e, &res.calls, 1);
        ASSERT_OK(res.r);
        ASSERT_FALSE(res.duplicate);
        ASSERT_EQ(strlen(res.event_id), 32u);
        ASSERT_EQ(res.n, 3u);
        ASSERT_EQ(res.status[0], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res.status[1], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res.status[2], ACTION_STATUS_UNRESOLVED);
        ASSERT_TRUE(store_writable(s));

        ASSERT_OK(store_get_action(s, res.ids[0], &a));
        ASSERT_STREQ(a->rule, "r1");
        ASSERT_STREQ(a->user, "Alice@Example.com");
        ASSERT_STREQ(a->event_id, res.event_id);
        ASSERT_EQ(a->action, ACTION_SUSPEND);
        ASSERT_EQ(a->status, ACTION_STATUS_QUEUED);
        ASSERT_TRUE(a->received_usec > 0);
        store_actions_free(a, 1);
        ASSERT_ERR(store_get_action(s, "0123456789abcdef0123456789abcdef", &a), ENOENT);

        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.queued, 2u);
        ASSERT_EQ(q.held, 0u);

        ASSERT_OK(store_list_actions(s, -1, 0, &list, &n));
        ASSERT_EQ(n, 3u);
        ASSERT_STREQ(list[0].id, res.ids[2]); /* newest first */
        store_actions_free(list, n);
        ASSERT_OK(store_list_actions(s, ACTION_STATUS_UNRESOLVED, 10, &list, &n));
        ASSERT_EQ(n, 1u);
        store_actions_free(list, n);

        /* history by email, case-insensitively: the two decisions for alice */
        ASSERT_OK(store_history(s, "ALICE@example.com", 0, 0, &h, &n));
        ASSERT_EQ(n, 2u);
        ASSERT_STREQ(h[0].kind, "decision");
        ASSERT_STREQ(h[0].to_status, "queued");
        store_audit_free(h, n);
        /* everything: one event row and three decisions */
        ASSERT_OK(store_history(s, NULL, 0, 0, &h, &n));
        ASSERT_EQ(n, 4u);
        ASSERT_STREQ(h[3].kind, "event");
        ASSERT_STREQ(h[3].detail, "splunk");
        store_audit_free(h, n);
        ASSERT_OK(store_history(s, NULL, now_usec(CLOCK_REALTIME) + HOUR, 0, &h, &n));
        ASSERT_EQ(n, 0u);
        store_audit_free(h, n);

        store_close(s);
}

TEST(dedup) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result r1 = {}, r2 = {}, r3 = {}, r4 = {};
        StoreQueueCounts q;
        StoreEvent *ev;
        Store *s;

        s = fresh_store(&e, 0);

        submit1(e, s, "id:abc", (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &r1);
        ASSERT_FALSE(r1.duplicate);

        /* a redelivery, with different (later) actions: the original ones come back */
        ev = ev_new("splunk", "id:abc");
        ev_add(ev, (ActSpec) { "r9", ACTION_NOTIFY, "b@example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r9", ACTION_NOTIFY, "c@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &r2));
        /* and two copies of a new one in the same batch */
        ev = ev_new("splunk", "id:def");
        ev_add(ev, (ActSpec) { "r1", ACTION_NOTIFY, "d@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &r3));
        ev = ev_new("splunk", "id:def");
        ev_add(ev, (ActSpec) { "r1", ACTION_NOTIFY, "d@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &r4));
        wait_for(e, &r4.calls, 1);
        wait_for(e, &r2.calls, 1);
        ASSERT_OK(r2.r);
        ASSERT_TRUE(r2.duplicate);
        ASSERT_STREQ(r2.event_id, r1.event_id);
        ASSERT_EQ(r2.n, 1u);
        ASSERT_STREQ(r2.ids[0], r1.ids[0]);
        ASSERT_EQ(r2.status[0], ACTION_STATUS_QUEUED);
        ASSERT_FALSE(r3.duplicate);
        ASSERT_TRUE(r4.duplicate);
        ASSERT_STREQ(r4.event_id, r3.event_id);
        ASSERT_STREQ(r4.ids[0], r3.ids[0]);

        /* same key, other source: not a duplicate */
        ev = ev_new("okta", "id:abc");
        r2 = (Result) {};
        ASSERT_OK(store_submit_event(s, ev, on_event, &r2));
        wait_for(e, &r2.calls, 1);
        ASSERT_FALSE(r2.duplicate);

        /* outside the window: not a duplicate */
        ev = ev_new("splunk", "id:abc");
        ev->received_usec += 25 * HOUR;
        r2 = (Result) {};
        ASSERT_OK(store_submit_event(s, ev, on_event, &r2));
        wait_for(e, &r2.calls, 1);
        ASSERT_FALSE(r2.duplicate);
        ASSERT_TRUE(strcmp(r2.event_id, r1.event_id) != 0);

        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.queued, 2u); /* r1's suspend and the def notify: nothing from duplicates */
        store_close(s);
}

TEST(cooldown_and_dry_run) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const char *uid = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        Result r = {};
        Store *s;

        s = fresh_store(&e, 0);

        submit1(e, s, NULL, (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        /* same rule, same user (other case): cooldown */
        submit1(e, s, NULL, (ActSpec) { "r1", ACTION_SUSPEND, "A@EXAMPLE.COM", NULL, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_COOLDOWN);
        /* a cooldown record does not extend itself, but the first still holds */
        submit1(e, s, NULL, (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_COOLDOWN);
        /* other rule: no cooldown; no cooldown configured: none */
        submit1(e, s, NULL, (ActSpec) { "r2", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        submit1(e, s, NULL, (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, 0 }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        /* by user id */
        submit1(e, s, NULL, (ActSpec) { "r3", ACTION_SUSPEND, "x@example.com", uid, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        submit1(e, s, NULL, (ActSpec) { "r3", ACTION_SUSPEND, uid, uid, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_COOLDOWN);
        /* the first action was recorded before its user id was known (the
         * id is set when it executes; a restart came first), the second
         * arrives with the id: still the same user (regression) */
        submit1(e, s, NULL, (ActSpec) { "r5", ACTION_SUSPEND, "late@example.com", NULL, ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        submit1(e, s, NULL, (ActSpec) { "r5", ACTION_SUSPEND, "LATE@example.com", "LATELATELATELATELATELATE12", ACTION_STATUS_QUEUED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_COOLDOWN);
        /* a loop-side status is kept as is */
        submit1(e, s, NULL, (ActSpec) { "r3", ACTION_SUSPEND, uid, uid, ACTION_STATUS_PROTECTED, HOUR }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_PROTECTED);

        /* dry run: recorded, and a dry run also starts a cooldown */
        submit1(e, s, NULL,
                (ActSpec) { "r4", ACTION_SUSPEND, "d@example.com", NULL, ACTION_STATUS_QUEUED, HOUR, 0, true }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_DRY_RUN);
        submit1(e, s, NULL,
                (ActSpec) { "r4", ACTION_SUSPEND, "d@example.com", NULL, ACTION_STATUS_QUEUED, HOUR, 0, true }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_COOLDOWN);
        store_close(s);
}

TEST(cap) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result res[6] = {}, r = {};
        uint64_t n = 0;
        StoreEvent *ev;
        Store *s;

        s = fresh_store(&e, 3);

        /* one earlier commit, then five in one batch across rules */
        submit1(e, s, NULL, (ActSpec) { "r0", ACTION_SUSPEND, "u0@example.com", NULL, ACTION_STATUS_QUEUED }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        for (unsigned i = 0; i < 5; i++) {
                char user[32], rule[8];
                (void) snprintf(user, sizeof(user), "u%u@example.com", i + 1);
                (void) snprintf(rule, sizeof(rule), "r%u", i % 2);
                ev = ev_new("splunk", NULL);
                ev_add(ev, (ActSpec) { rule, ACTION_SUSPEND, user, NULL, ACTION_STATUS_QUEUED });
                if (i == 0) {
                        /* neither notify, reactivate nor a dry run counts */
                        ev_add(ev, (ActSpec) { "n", ACTION_NOTIFY, user, NULL, ACTION_STATUS_QUEUED });
                        ev_add(ev, (ActSpec) { "n", ACTION_REACTIVATE, user, NULL, ACTION_STATUS_QUEUED });
                        ev_add(ev, (ActSpec) { "n", ACTION_SUSPEND, user, NULL, ACTION_STATUS_QUEUED, 0, 0, true });
                }
                ASSERT_OK(store_submit_event(s, ev, on_event, &res[i]));
        }
        wait_for(e, &res[4].calls, 1);
        ASSERT_EQ(res[0].status[0], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res[0].status[1], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res[0].status[2], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res[0].status[3], ACTION_STATUS_DRY_RUN);
        ASSERT_EQ(res[1].status[0], ACTION_STATUS_QUEUED);
        ASSERT_EQ(res[2].status[0], ACTION_STATUS_HELD);
        ASSERT_EQ(res[3].status[0], ACTION_STATUS_HELD);
        ASSERT_EQ(res[4].status[0], ACTION_STATUS_HELD);
        ASSERT_OK(store_suspensions_in_window(s, &n));
        ASSERT_EQ(n, 3u);

        /* survives a restart */
        store_close(s);
        s = open_store(e, 3, HOUR);
        submit1(e, s, NULL, (ActSpec) { "r5", ACTION_SUSPEND, "u9@example.com", NULL, ACTION_STATUS_QUEUED }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_HELD);
        /* manual actions pass the same cap */
        {
                StoreAction *a = mem_calloc(1, sizeof(*a));
                ASSERT_NOT_NULL(a);
                a->action = ACTION_SUSPEND;
                a->user = mem_strdup("m@example.com");
                a->reason = mem_strdup("operator: lost laptop");
                a->status = ACTION_STATUS_QUEUED;
                r = (Result) {};
                ASSERT_OK(store_submit_manual(s, a, on_action, &r));
                wait_for(e, &r.calls, 1);
                ASSERT_OK(r.r);
                ASSERT_EQ(r.status[0], ACTION_STATUS_HELD);
        }
        /* a raised cap lets new ones through */
        store_set_options(s, &(StoreOptions) { .max_suspensions = 10, .window_usec = HOUR });
        submit1(e, s, NULL, (ActSpec) { "r5", ACTION_SUSPEND, "u10@example.com", NULL, ACTION_STATUS_QUEUED }, &r);
        ASSERT_EQ(r.status[0], ACTION_STATUS_QUEUED);
        store_close(s);
}

/* One event of several actions, for the preview test. */
static StoreEvent *preview_event(const char *dedup) {
        StoreEvent *ev = ev_new("splunk", dedup);

        ev_add(ev, (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, HOUR });
        ev_add(ev, (ActSpec) { "r2", ACTION_SUSPEND, "b@example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r3", ACTION_SUSPEND, "c@example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r4", ACTION_SUSPEND, "d@example.com", NULL, ACTION_STATUS_QUEUED, 0, 0, true });
        ev_add(ev, (ActSpec) { "r6", ACTION_SUSPEND, "e@example.com", NULL, ACTION_STATUS_QUEUED, HOUR });
        ev_add(ev, (ActSpec) { "r6", ACTION_SUSPEND, "E@example.com", NULL, ACTION_STATUS_QUEUED, HOUR });
        ev_add(ev, (ActSpec) { "r7", ACTION_NOTIFY, "f@example.com", NULL, ACTION_STATUS_QUEUED });
        ev_add(ev, (ActSpec) { "r8", ACTION_SUSPEND, "g@example.com", NULL, ACTION_STATUS_PROTECTED });
        return ev;
}

/* store_preview_event(): what the commit would decide, and nothing
 * recorded (issue 21). */
TEST(preview) {
        static const ActionStatus want[] = {
                ACTION_STATUS_COOLDOWN, /* r1 a: the committed action below */
                ACTION_STATUS_QUEUED,   /* the cap: 1 in the window + 0 earlier < 2 */
                ACTION_STATUS_HELD,     /* 1 + 1 earlier of this event */
                ACTION_STATUS_DRY_RUN,
                ACTION_STATUS_HELD,
                ACTION_STATUS_COOLDOWN, /* the held one just before, same rule and user */
                ACTION_STATUS_QUEUED,   /* notify: no cap */
                ACTION_STATUS_PROTECTED,
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        StoreQueueCounts before, after;
        StoreEvent *ev;
        Result first = {}, r = {};
        bool duplicate = true;
        uint64_t n = 0;
        Store *s;

        s = fresh_store(&e, 2);
        submit1(e, s, "id:1", (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, HOUR },
                &first);
        ASSERT_OK(store_queue_counts(s, &before));

        /* a redelivery: the original's id and actions */
        ev = ev_new("splunk", "id:1");
        ev_add(ev, (ActSpec) { "other", ACTION_SUSPEND, "z@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_preview_event(s, ev, &duplicate));
        ASSERT_TRUE(duplicate);
        ASSERT_STREQ(ev->id, first.event_id);
        ASSERT_EQ(ev->n_actions, 1);
        ASSERT_STREQ(ev->actions[0].id, first.ids[0]);
        store_event_free(ev);
        /* another source, same key: new */
        ev = ev_new("okta", "id:1");
        ASSERT_OK(store_preview_event(s, ev, &duplicate));
        ASSERT_FALSE(duplicate);
        ASSERT_STREQ(ev->id, "");
        store_event_free(ev);

        ev = preview_event("id:2");
        ASSERT_OK(store_preview_event(s, ev, &duplicate));
        ASSERT_FALSE(duplicate);
        ASSERT_EQ(ev->n_actions, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                ASSERT_EQ(ev->actions[i].status, want[i]);
        store_event_free(ev);

        /* nothing recorded, nothing counted */
        ASSERT_OK(store_queue_counts(s, &after));
        ASSERT_EQ(memcmp(&before, &after, sizeof(before)), 0);
        ASSERT_OK(store_suspensions_in_window(s, &n));
        ASSERT_EQ(n, 1u);

        /* and the commit decides the same */
        ASSERT_OK(store_submit_event(s, preview_event("id:2"), on_event, &r));
        wait_for(e, &r.calls, 1);
        ASSERT_OK(r.r);
        ASSERT_FALSE(r.duplicate);
        ASSERT_EQ(r.n, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                ASSERT_EQ(r.status[i], want[i]);
        store_close(s);
}

TEST(release_and_cancel) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result a = {}, b = {}, c = {}, r = {};
        StoreQueueCounts q;
        StoreAuditEntry *h = NULL;
        size_t n = 0;
        Store *s;

        s = fresh_store(&e, 1);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "b@example.com", NULL, ACTION_STATUS_QUEUED }, &b);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "c@example.com", NULL, ACTION_STATUS_QUEUED }, &c);
        ASSERT_EQ(a.status[0], ACTION_STATUS_QUEUED);
        ASSERT_EQ(b.status[0], ACTION_STATUS_HELD);
        ASSERT_EQ(c.status[0], ACTION_STATUS_HELD);

        ASSERT_OK(wait_done(e, store_release_action(s, b.ids[0], "operator alice", on_done, &r), &r));
        ASSERT_EQ(status_of(s, b.ids[0]), ACTION_STATUS_QUEUED);
        ASSERT_OK(wait_done(e, store_cancel_action(s, c.ids[0], "false positive", on_done, &r), &r));
        ASSERT_EQ(status_of(s, c.ids[0]), ACTION_STATUS_CANCELLED);

        /* wrong state and unknown id */
        ASSERT_EQ(wait_done(e, store_release_action(s, a.ids[0], NULL, on_done, &r), &r), -EBUSY);
        ASSERT_EQ(wait_done(e, store_release_action(s, c.ids[0], NULL, on_done, &r), &r), -EBUSY);
        ASSERT_EQ(wait_done(e, store_cancel_action(s, "00000000000000000000000000000000", NULL, on_done, &r), &r),
                  -ENOENT);
        ASSERT_ERR(store_cancel_action(s, "", NULL, on_done, &r), EINVAL);
        /* a queued one can be cancelled too */
        ASSERT_OK(wait_done(e, store_cancel_action(s, a.ids[0], NULL, on_done, &r), &r));

        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.queued, 1u);
        ASSERT_EQ(q.held, 0u);
        ASSERT_EQ(q.cancelled, 2u);

        ASSERT_OK(store_history(s, "b@example.com", 0, 0, &h, &n));
        ASSERT_EQ(n, 2u);
        ASSERT_STREQ(h[0].kind, "transition");
        ASSERT_STREQ(h[0].from_status, "held");
        ASSERT_STREQ(h[0].to_status, "queued");
        ASSERT_STREQ(h[0].detail, "operator alice");
        store_audit_free(h, n);
        store_close(s);
}

TEST(lifecycle) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const char *uid = "ABCDEFGHIJKLMNOPQRSTUVWXY1";
        Result a = {}, b = {}, r = {};
        Claimed c = {};
        StoreAction *x = NULL;
        StoreAuditEntry *h = NULL;
        size_t n = 0;
        uint64_t now;
        Store *s;

        s = fresh_store(&e, 0);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "b@example.com", NULL, ACTION_STATUS_QUEUED }, &b);

        ASSERT_ERR(store_claim_due(s, 0, 0, on_claim, &c), EINVAL);
        ASSERT_OK(store_claim_due(s, 0, 1, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_OK(c.r);
        ASSERT_EQ(c.n, 1u);
        ASSERT_STREQ(c.ids[0], a.ids[0]);
        ASSERT_EQ(c.next_due, 0u); /* b is due */
        ASSERT_EQ(status_of(s, a.ids[0]), ACTION_STATUS_RUNNING);

        /* late resolution, then done */
        ASSERT_OK(wait_done(e, store_set_user_id(s, a.ids[0], uid, on_done, &r), &r));
        ASSERT_OK(wait_done(e, store_finish_action(s, a.ids[0], true, NULL, NULL, NULL, on_done, &r), &r));
        ASSERT_OK(store_get_action(s, a.ids[0], &x));
        ASSERT_EQ(x->status, ACTION_STATUS_DONE);
        ASSERT_STREQ(x->user_id, uid);
        store_actions_free(x, 1);
        /* done is final */
        ASSERT_EQ(wait_done(e, store_finish_action(s, a.ids[0], true, NULL, NULL, NULL, on_done, &r), &r), -EBUSY);

        /* b: claim, transient failure -> retry later, then permanent failure */
        c = (Claimed) {};
        ASSERT_OK(store_claim_due(s, 0, 8, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_EQ(c.n, 1u);
        ASSERT_EQ(c.next_due, USEC_INFINITY);
        now = now_usec(CLOCK_REALTIME);
        ASSERT_OK(wait_done(e, store_retry_action(s, b.ids[0], now + HOUR, "HTTP 503", on_done, &r), &r));
        ASSERT_OK(store_get_action(s, b.ids[0], &x));
        ASSERT_EQ(x->status, ACTION_STATUS_QUEUED);
        ASSERT_EQ(x->attempts, 1u);
        ASSERT_EQ(x->not_before_usec, now + HOUR);
        store_actions_free(x, 1);
        c = (Claimed) {};
        ASSERT_OK(store_claim_due(s, 0, 8, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_EQ(c.n, 0u);
        ASSERT_EQ(c.next_due, now + HOUR);
        c = (Claimed) {};
        ASSERT_OK(store_claim_due(s, now + 2 * HOUR, 8, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_EQ(c.n, 1u);
        ASSERT_OK(wait_done(e, store_finish_action(s, b.ids[0], false, "7", "no_owner_remain", "HTTP 403", on_done, &r),
                            &r));
        ASSERT_OK(store_get_action(s, b.ids[0], &x));
        ASSERT_EQ(x->status, ACTION_STATUS_FAILED);
        ASSERT_STREQ(x->api_code, "7");
        ASSERT_STREQ(x->api_message, "no_owner_remain");
        store_actions_free(x, 1);

        ASSERT_OK(store_history(s, "b@example.com", 0, 0, &h, &n));
        ASSERT_EQ(n, 5u); /* decision, running, queued, running, failed */
        ASSERT_STREQ(h[0].to_status, "failed");
        ASSERT_CONTAINS(h[0].detail, "no_owner_remain");
        ASSERT_STREQ(h[1].to_status, "running");
        ASSERT_STREQ(h[2].to_status, "queued");
        ASSERT_CONTAINS(h[2].detail, "HTTP 503");
        ASSERT_STREQ(h[3].to_status, "running");
        ASSERT_STREQ(h[4].kind, "decision");
        store_audit_free(h, n);
        /* history by the id resolved late finds a's later rows */
        ASSERT_OK(store_history(s, uid, 0, 0, &h, &n));
        ASSERT_EQ(n, 2u);
        ASSERT_STREQ(h[0].to_status, "done");
        store_audit_free(h, n);

        /* execution-time resolution */
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "zz@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        ASSERT_ERR(store_resolve_action(s, a.ids[0], ACTION_STATUS_DONE, NULL, on_done, &r), EINVAL);
        ASSERT_OK(wait_done(e, store_resolve_action(s, a.ids[0], ACTION_STATUS_UNKNOWN_USER, "no such user", on_done,
                                                    &r), &r));
        ASSERT_EQ(status_of(s, a.ids[0]), ACTION_STATUS_UNKNOWN_USER);
        store_close(s);
}

TEST(crash_recovery) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result a = {};
        Claimed c = {};
        StoreQueueCounts q;
        StoreAuditEntry *h = NULL;
        size_t n = 0;
        Store *s;

        s = fresh_store(&e, 0);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        ASSERT_OK(store_claim_due(s, 0, 8, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_EQ(c.n, 1u);
        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.running, 1u);
        store_close(s);

        s = open_store(e, 0, HOUR);
        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.running, 0u);
        ASSERT_EQ(q.queued, 1u);
        ASSERT_OK(store_history(s, "a@example.com", 0, 1, &h, &n));
        ASSERT_EQ(n, 1u);
        ASSERT_STREQ(h[0].from_status, "running");
        ASSERT_STREQ(h[0].to_status, "queued");
        ASSERT_CONTAINS(h[0].detail, "recovered");
        store_audit_free(h, n);
        store_close(s);
}

static void sql(const char *path, const char *text) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

/* The integer a one-row query gives. */
static int sql_int(const char *path, const char *query) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int v;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, query, -1, &st, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

/* A version 1 database kept an audit row per event beside the events row;
 * version 2 reads events from their table, so the migration drops those
 * rows (or history would show every event twice) and adds the time index. */
/* What version 4 added, taken away again to make an older database. */
#define V4_UNDO                                                                                    \
        "DROP TABLE outbox; DROP TABLE instances;"                                                 \
        "ALTER TABLE actions DROP COLUMN owner; ALTER TABLE actions DROP COLUMN lease_until_usec;" \
        "ALTER TABLE audit DROP COLUMN instance;"

TEST(schema_v1_migration) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        StoreAuditEntry *h = NULL;
        Result a = {}, b = {};
        char text[512];
        size_t n = 0;
        Store *s;

        s = fresh_store(&e, 0);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        store_close(s);
        /* What version 1 left behind. */
        (void) snprintf(text, sizeof(text),
                        "DROP INDEX events_time;"
                        V4_UNDO
                        "INSERT INTO audit (time_usec, kind, event_id, detail) "
                        "SELECT received_usec, 'event', id, source FROM events;"
                        "PRAGMA user_version = 1;");
        sql(dbpath, text);

        s = open_store(e, 0, HOUR);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "b@example.com", NULL, ACTION_STATUS_QUEUED }, &b);
        ASSERT_OK(store_history(s, NULL, 0, 0, &h, &n));
        ASSERT_EQ(n, 4u);       /* two events, two decisions, each once */
        ASSERT_STREQ(h[0].kind, "decision");
        ASSERT_STREQ(h[1].kind, "event");
        ASSERT_STREQ(h[1].event_id, b.event_id);
        ASSERT_STREQ(h[3].kind, "event");
        ASSERT_STREQ(h[3].event_id, a.event_id);
        ASSERT_STREQ(h[3].detail, "splunk");
        store_audit_free(h, n);
        /* limit applies to the merged list, newest first */
        ASSERT_OK(store_history(s, NULL, 0, 3, &h, &n));
        ASSERT_EQ(n, 3u);
        ASSERT_STREQ(h[2].kind, "decision");
        ASSERT_STREQ(h[2].user, "a@example.com");
        store_audit_free(h, n);
        store_close(s);
        ASSERT_EQ(sql_int(dbpath, "SELECT count(*) FROM pragma_index_list('events') WHERE name = 'events_time'"), 1);
        ASSERT_EQ(sql_int(dbpath, "SELECT user_version FROM pragma_user_version"), 4);
}

/* Redeliveries are found through the in-memory index, which a restart
 * loads from the events of the window; a version 2 database loses its
 * B-tree on the key (version 3) and keeps its dedup. */
TEST(dedup_after_restart) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result r1 = {}, old = {}, r2 = {}, r3 = {}, r4 = {};
        StoreEvent *ev;
        Store *s;

        s = fresh_store(&e, 0);
        submit1(e, s, "id:k1", (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &r1);
        ev = ev_new("splunk", "id:old");
        ev->received_usec -= 25 * HOUR;
        ASSERT_OK(store_submit_event(s, ev, on_event, &old));
        wait_for(e, &old.calls, 1);
        ASSERT_OK(old.r);
        store_close(s);
        sql(dbpath, "CREATE INDEX events_dedup ON events(source, dedup_key, received_usec);" V4_UNDO
                    "PRAGMA user_version = 2;");

        s = open_store(e, 0, HOUR);
        ev = ev_new("splunk", "id:k1");
        ev_add(ev, (ActSpec) { "r9", ACTION_NOTIFY, "b@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &r2));
        ev = ev_new("okta", "id:k1");
        ASSERT_OK(store_submit_event(s, ev, on_event, &r3));
        ev = ev_new("splunk", "id:old"); /* its first delivery left the window */
        ASSERT_OK(store_submit_event(s, ev, on_event, &r4));
        wait_for(e, &r4.calls, 1);
        wait_for(e, &r2.calls, 1);
        wait_for(e, &r3.calls, 1);
        ASSERT_TRUE(r2.duplicate);
        ASSERT_STREQ(r2.event_id, r1.event_id);
        ASSERT_EQ(r2.n, 1u);
        ASSERT_STREQ(r2.ids[0], r1.ids[0]);
        ASSERT_FALSE(r3.duplicate);
        ASSERT_FALSE(r4.duplicate);
        ASSERT_TRUE(strcmp(r4.event_id, old.event_id) != 0);
        store_close(s);

        ASSERT_EQ(sql_int(dbpath, "SELECT count(*) FROM pragma_index_list('events') WHERE name = 'events_dedup'"), 0);
        ASSERT_EQ(sql_int(dbpath, "SELECT user_version FROM pragma_user_version"), 4);
}

static void claim_all(sd_event *e, Store *s, uint64_t when, Claimed *c) {
        *c = (Claimed) {};
        ASSERT_OK(store_claim_due(s, when, 64, on_claim, c));
        wait_for(e, &c->calls, 1);
        ASSERT_OK(c->r);
}

TEST(timed_reactivation) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result a = {}, b = {}, r = {};
        Claimed c = {};
        StoreAction *list = NULL;
        size_t n = 0;
        uint64_t t0;
        Store *s;
        char re1[33];

        s = fresh_store(&e, 0);

        t0 = now_usec(CLOCK_REALTIME);
        submit1(e, s, NULL,
                (ActSpec) { "travel", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED, 0, 4 * HOUR }, &a);
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 1u);
        ASSERT_OK(wait_done(e, store_finish_action(s, a.ids[0], true, NULL, NULL, NULL, on_done, &r), &r));

        /* a queued reactivation with parent_id, due in 4h */
        ASSERT_OK(store_list_actions(s, ACTION_STATUS_QUEUED, 0, &list, &n));
        ASSERT_EQ(n, 1u);
        ASSERT_EQ(list[0].action, ACTION_REACTIVATE);
        ASSERT_STREQ(list[0].parent_id, a.ids[0]);
        ASSERT_STREQ(list[0].rule, "travel");
        ASSERT_STREQ(list[0].reason, "timed suspension ended");
        ASSERT_TRUE(list[0].not_before_usec >= t0 + 4 * HOUR);
        ASSERT_TRUE(list[0].not_before_usec <= now_usec(CLOCK_REALTIME) + 4 * HOUR);
        strcpy(re1, list[0].id);
        store_actions_free(list, n);
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 0u);
        ASSERT_TRUE(c.next_due >= t0 + 4 * HOUR);

        /* a later, shorter suspension leaves it alone */
        submit1(e, s, NULL,
                (ActSpec) { "other", ACTION_SUSPEND, "A@example.com", NULL, ACTION_STATUS_QUEUED, 0, HOUR }, &b);
        ASSERT_EQ(status_of(s, re1), ACTION_STATUS_QUEUED);
        /* a permanent one cancels it */
        submit1(e, s, NULL, (ActSpec) { "perm", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &b);
        ASSERT_EQ(status_of(s, re1), ACTION_STATUS_CANCELLED);

        /* when the earlier suspension finishes after a permanent one was
         * queued, no reactivation is scheduled at all */
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 2u);
        for (size_t i = 0; i < c.n; i++) {
                ASSERT_OK(wait_done(e, store_finish_action(s, c.ids[i], true, NULL, NULL, NULL, on_done, &r), &r));
        }
        ASSERT_OK(store_list_actions(s, ACTION_STATUS_QUEUED, 0, &list, &n));
        ASSERT_EQ(n, 0u);
        store_actions_free(list, n);

        /* the reactivation fires when due: claimed with a clock 5h on */
        submit1(e, s, NULL,
                (ActSpec) { "t", ACTION_SUSPEND, "z@example.com", NULL, ACTION_STATUS_QUEUED, 0, 4 * HOUR }, &a);
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 1u);
        wait_done(e, store_finish_action(s, a.ids[0], true, NULL, NULL, NULL, on_done, &r), &r);
        claim_all(e, s, now_usec(CLOCK_REALTIME) + 5 * HOUR, &c);
        ASSERT_EQ(c.n, 1u);
        ASSERT_EQ(c.kind[0], ACTION_REACTIVATE);
        store_close(s);
}

TEST(failing_commit) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result ok = {}, r = {}, bad[20] = {};
        StoreStats st;
        StoreQueueCounts q;
        Store *s;

        s = fresh_store(&e, 0);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &ok);

        /* the database may not grow any more: a full disk */
        ASSERT_OK(wait_done(e, store_debug_set_max_pages(s, 1, on_done, &r), &r));
        for (unsigned i = 0; i < 20; i++) {
                StoreEvent *ev = ev_new("splunk", NULL);
                mem_free(ev->body);
                ev->body_len = 64 * 1024;
                ev->body = mem_malloc(ev->body_len + 1);
                ASSERT_NOT_NULL(ev->body);
                memset(ev->body, 'x', ev->body_len);
                ev->body[ev->body_len] = 0;
                ev_add(ev, (ActSpec) { "r", ACTION_NOTIFY, "b@example.com", NULL, ACTION_STATUS_QUEUED });
                ASSERT_OK(store_submit_event(s, ev, on_event, &bad[i]));
        }
        wait_for(e, &bad[19].calls, 1);
        for (unsigned i = 0; i < 20; i++)
                ASSERT_EQ(bad[i].r, -ENOSPC);
        ASSERT_FALSE(store_writable(s));
        store_stats(s, &st);
        ASSERT_TRUE(st.failed_commits >= 1);
        ASSERT_EQ(st.last_error, ENOSPC);

        /* space returns: service resumes, nothing accepted earlier is lost */
        wait_done(e, store_debug_set_max_pages(s, 0, on_done, &r), &r);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "c@example.com", NULL, ACTION_STATUS_QUEUED }, &r);
        ASSERT_TRUE(store_writable(s));
        ASSERT_EQ(status_of(s, ok.ids[0]), ACTION_STATUS_QUEUED);
        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.queued, 2u);
        store_close(s);
}

TEST(open_errors) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Store *s = NULL;
        char path[300];

        ASSERT_OK(sd_event_new(&e));
        (void) snprintf(path, sizeof(path), "%s/missing-dir/state.db", dir);
        ASSERT_TRUE(store_open(path, e, NULL, &s) < 0);
        ASSERT_NULL(s);
        /* not a database */
        (void) snprintf(path, sizeof(path), "%s/garbage.db", dir);
        {
                FILE *f = fopen(path, "w");
                ASSERT_NOT_NULL(f);
                for (unsigned i = 0; i < 512; i++)
                        fputs("this is not an SQLite database ", f);
                fclose(f);
        }
        ASSERT_ERR(store_open(path, e, NULL, &s), EBADMSG);
}

typedef struct Bench {
        Store *s;
        unsigned submitted, completed, total, failed;
} Bench;

static void bench_submit(Bench *b);

static void on_bench(Store *s, int r, const StoreEvent *ev, bool duplicate, void *userdata) {
        Bench *b = userdata;
        b->completed++;
        if (r < 0)
                b->failed++;
        bench_submit(b);
}

static void bench_submit_one(Bench *b) {
        char key[64];
        StoreEvent *ev;

        (void) snprintf(key, sizeof(key), "id:%u", b->submitted);
        ev = ev_new("bench", key);
        ev_add(ev, (ActSpec) { "rule", ACTION_NOTIFY, "user@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(b->s, ev, on_bench, b));
        b->submitted++;
}

static void bench_submit(Bench *b) {
        if (b->submitted < b->total)
                bench_submit_one(b);
}

/* Keeps `concurrency` events in flight, like that many webhook connections
 * waiting for their 202, until total were committed. */
static void run_bench(unsigned total, unsigned concurrency, bool print) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Bench b = { .total = total };
        StoreStats st;
        uint64_t t0, t1;

        b.s = fresh_store(&e, 0);
        t0 = now_usec(CLOCK_MONOTONIC);
        for (unsigned i = 0; i < concurrency && i < total; i++)
                bench_submit_one(&b);
        wait_for(e, &b.completed, total);
        t1 = now_usec(CLOCK_MONOTONIC);
        store_stats(b.s, &st);
        ASSERT_EQ(b.failed, 0u);
        ASSERT_EQ(st.ops, total);
        if (print)
                printf("%u events (1 action each), %u in flight: %.3f s, %.0f events/s, %" PRIu64
                       " commits (fsync groups), %.1f events/commit, %.0f commits/s, %.3f round trips/event\n",
                       total, concurrency, (double) (t1 - t0) / 1e6,
                       (double) total * 1e6 / (double) (t1 - t0), st.commits, (double) total / (double) st.commits,
                       (double) st.commits * 1e6 / (double) (t1 - t0), (double) st.round_trips / (double) total);
        /* group commit: far fewer transactions than events */
        ASSERT_TRUE(st.commits * 10 <= total);
        store_close(b.s);
}

TEST(group_commit) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        static Result res[10000];
        StoreStats st;
        Store *s;

        s = fresh_store(&e, 0);
        for (unsigned i = 0; i < 10000; i++) {
                StoreEvent *ev = ev_new("splunk", NULL);
                ev_add(ev, (ActSpec) { "r", ACTION_NOTIFY, "a@example.com", NULL, ACTION_STATUS_QUEUED });
                ASSERT_OK(store_submit_event(s, ev, on_event, &res[i]));
        }
        wait_for(e, &res[9999].calls, 1);
        for (unsigned i = 0; i < 10000; i++) {
                ASSERT_EQ(res[i].calls, 1u);
                ASSERT_OK(res[i].r);
        }
        store_stats(s, &st);
        fprintf(stderr, "10000 submissions before the loop ran: %" PRIu64 " commits\n", st.commits);
        ASSERT_TRUE(st.commits <= 10);
        ASSERT_EQ(st.ops, 10000u);
        store_close(s);

        run_bench(20000, 2048, true);
}

/* Under a steady load the WAL is copied into the database while the writer
 * goes on (the checkpointer thread), and it still restarts from its start
 * (the writer's own checkpoint past 8,000 pages): a few thousand small
 * commits write several times that many WAL frames, but the WAL file (its
 * size is its high-water mark) stays near 8,000 pages of 4 KiB. */
TEST(wal_bounded) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Bench b = { .total = 30000 };
        char wal[PATH_MAX + 8];
        struct stat st_db, st_wal;
        StoreStats st;
        uint64_t writes;

        b.s = fresh_store(&e, 0);
        writes = sqlite_walbuf_writes();
        for (unsigned i = 0; i < 8; i++)
                bench_submit_one(&b);
        wait_for(e, &b.completed, b.total);
        ASSERT_EQ(b.failed, 0u);
        store_stats(b.s, &st);
        (void) snprintf(wal, sizeof(wal), "%s-wal", dbpath);
        ASSERT_OK(stat(dbpath, &st_db) < 0 ? -errno : 0);
        ASSERT_OK(stat(wal, &st_wal) < 0 ? -errno : 0);
        writes = sqlite_walbuf_writes() - writes;
        fprintf(stderr, "%u events in %" PRIu64 " commits: database %lld KiB, WAL %lld KiB, %" PRIu64 " WAL writes\n",
                b.total, st.commits, (long long) st_db.st_size / 1024, (long long) st_wal.st_size / 1024, writes);
        /* one write per commit (sqlite_walbuf.c), not two per page: a
         * commit here has 3-6 pages */
        ASSERT_TRUE(writes <= st.commits + st.commits / 2);
        ASSERT_TRUE(writes >= st.commits / 2);
        /* enough commits for several times 8,000 frames */
        ASSERT_TRUE(st.commits >= 3000);
        /* copied while running: 30,000 events and actions are > 8 MiB */
        ASSERT_TRUE(st_db.st_size > 8 * 1024 * 1024);
        ASSERT_TRUE(st_wal.st_size <= (off_t) 10000 * (4096 + 24));
        store_close(b.s);
}

/* An idle writer does not wait for the loop iteration to end once
 * STORE_EARLY_COMMIT operations wait: it commits them while the loop goes
 * on building the next batch. The loop does not run here until the commit
 * is seen. */
TEST(early_commit) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        static Result res[STORE_EARLY_COMMIT];
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
        Result first = {};
        StoreStats st;
        Store *s;

        s = fresh_store(&e, 0);
        /* one commit through the loop, then wait for the writer to idle */
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_NOTIFY, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &first);
        for (store_stats(s, &st); !st.writer_idle; store_stats(s, &st)) {
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                (void) usleep(1000);
        }
        ASSERT_EQ(st.commits, 1u);

        for (unsigned i = 0; i < STORE_EARLY_COMMIT; i++) {
                StoreEvent *ev = ev_new("splunk", NULL);
                ev_add(ev, (ActSpec) { "r", ACTION_NOTIFY, "a@example.com", NULL, ACTION_STATUS_QUEUED });
                ASSERT_OK(store_submit_event(s, ev, on_event, &res[i]));
                if (i + 1 < STORE_EARLY_COMMIT) { /* fewer wait for the loop's kick */
                        store_stats(s, &st);
                        ASSERT_EQ(st.commits, 1u);
                }
        }
        /* the loop does not run until the writer has committed them all */
        for (store_stats(s, &st); st.ops < 1 + STORE_EARLY_COMMIT; store_stats(s, &st)) {
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                (void) usleep(1000);
        }
        ASSERT_EQ(st.commits, 2u);
        ASSERT_EQ(res[0].calls, 0u); /* callbacks run on the loop only */
        wait_for(e, &res[STORE_EARLY_COMMIT - 1].calls, 1);
        for (unsigned i = 0; i < STORE_EARLY_COMMIT; i++)
                ASSERT_OK(res[i].r);
        store_close(s);
}

TEST(close_commits_pending) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Result r = {};
        StoreQueueCounts q;
        StoreEvent *ev;
        Store *s;

        s = fresh_store(&e, 0);
        ev = ev_new("splunk", NULL);
        ev_add(ev, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED });
        ASSERT_OK(store_submit_event(s, ev, on_event, &r));
        store_close(s); /* commits, and runs the callback before returning */
        ASSERT_EQ(r.calls, 1u);
        ASSERT_OK(r.r);
        s = open_store(e, 0, HOUR);
        ASSERT_OK(store_queue_counts(s, &q));
        ASSERT_EQ(q.queued, 1u);
        store_close(s);
}

static void on_notes(Store *s, int r, StoreNotification *n, size_t count, uint64_t next_due, void *userdata);

typedef struct Notes {
        unsigned calls;
        int r;
        size_t n;
        char ids[16][33];
        char sinks[16][32];
        ActionStatus outcome[16];
        char action_id[16][33];
        unsigned attempts[16];
        uint64_t next_due;
} Notes;

static void on_notes(Store *s, int r, StoreNotification *n, size_t count, uint64_t next_due, void *userdata) {
        Notes *x = userdata;

        x->calls++;
        x->r = r;
        x->n = count;
        x->next_due = next_due;
        for (size_t i = 0; i < count && i < 16; i++) {
                strcpy(x->ids[i], n[i].id);
                (void) snprintf(x->sinks[i], sizeof(x->sinks[i]), "%s", n[i].sink);
                x->outcome[i] = n[i].outcome;
                strcpy(x->action_id[i], n[i].action.id);
                x->attempts[i] = n[i].attempts;
                ASSERT_EQ(n[i].state, NOTIFY_STATE_PENDING);
                ASSERT_NOT_NULL(n[i].action.rule);
        }
}

static void claim_notes(sd_event *e, Store *s, uint64_t when, uint64_t lease, Notes *x) {
        *x = (Notes) {};
        ASSERT_OK(store_claim_notifications(s, when, 16, lease, on_notes, x));
        wait_for(e, &x->calls, 1);
        ASSERT_OK(x->r);
}

/* The outbox: a row per (outcome, sink) the sink wants, in the same commit
 * as the state change; claimed with a lease, delivered, retried, given up. */
TEST(outbox) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char *only_r2[] = { "r2*", NULL };
        StoreNotifySink sinks[] = {
                { "chat", (1u << ACTION_STATUS_DONE) | (1u << ACTION_STATUS_FAILED) | (1u << ACTION_STATUS_HELD), NULL },
                { "siem", 1u << ACTION_STATUS_DONE, only_r2 },
        };
        StoreNotification *list = NULL;
        uint64_t pending = 0, failed = 0, now;
        Result a = {}, b = {}, h = {}, d = {};
        Claimed c = {};
        Notes x = {};
        size_t n = 0;
        Store *s;

        s = fresh_store_as(&e, 1, NULL, 0, sinks, ELEMENTSOF(sinks));
        submit1(e, s, NULL, (ActSpec) { "r1", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        submit1(e, s, NULL, (ActSpec) { "r2x", ACTION_SUSPEND, "b@example.com", NULL, ACTION_STATUS_QUEUED }, &h);
        ASSERT_EQ(h.status[0], ACTION_STATUS_HELD); /* over the cap of 1: chat hears of it */
        claim_notes(e, s, 0, 60 * USEC_PER_SEC, &x);
        ASSERT_EQ(x.n, 1u);
        ASSERT_STREQ(x.sinks[0], "chat");
        ASSERT_EQ(x.outcome[0], ACTION_STATUS_HELD);
        ASSERT_STREQ(x.action_id[0], h.ids[0]);
        ASSERT_EQ(x.attempts[0], 1u);
        ASSERT_TRUE(x.next_due != USEC_INFINITY); /* claimed: due again after its lease */
        ASSERT_OK(wait_done(e, store_notification_delivered(s, x.ids[0], on_done, &d), &d));
        /* delivered once is delivered */
        ASSERT_ERR(wait_done(e, store_notification_delivered(s, x.ids[0], on_done, &d), &d), ENOENT);

        /* r1 done: chat only; r2x released then done: chat and siem */
        ASSERT_OK(store_claim_due(s, 0, 8, on_claim, &c));
        wait_for(e, &c.calls, 1);
        ASSERT_EQ(c.n, 1u);
        wait_done(e, store_finish_action(s, a.ids[0], true, NULL, NULL, NULL, on_done, &b), &b);
        wait_done(e, store_release_action(s, h.ids[0], "test", on_done, &b), &b);
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 1u);
        wait_done(e, store_finish_action(s, h.ids[0], false, "no_owner_remain", "last owner", NULL, on_done, &b), &b);
        claim_notes(e, s, 0, 60 * USEC_PER_SEC, &x);
        ASSERT_EQ(x.n, 2u); /* r1 done to chat, r2x failed to chat (siem wants done only) */
        ASSERT_STREQ(x.sinks[0], "chat");
        ASSERT_EQ(x.outcome[0], ACTION_STATUS_DONE);
        ASSERT_EQ(x.outcome[1], ACTION_STATUS_FAILED);
        ASSERT_STREQ(x.action_id[1], h.ids[0]);
        /* leased: nothing more to claim now */
        {
                Notes y;
                claim_notes(e, s, 0, 60 * USEC_PER_SEC, &y);
                ASSERT_EQ(y.n, 0u);
        }
        /* a retry comes back when due, a give-up is failed */
        now = now_usec(CLOCK_REALTIME);
        ASSERT_OK(wait_done(e, store_notification_retry(s, x.ids[0], now - 1, false, "HTTP 503", on_done, &b), &b));
        ASSERT_OK(wait_done(e, store_notification_retry(s, x.ids[1], now, true, "HTTP 410", on_done, &b), &b));
        {
                Notes y;
                claim_notes(e, s, 0, 60 * USEC_PER_SEC, &y);
                ASSERT_EQ(y.n, 1u);
                ASSERT_STREQ(y.ids[0], x.ids[0]);
                ASSERT_EQ(y.attempts[0], 2u);
        }
        ASSERT_OK(store_notification_counts(s, &pending, &failed));
        ASSERT_EQ(pending, 1u);
        ASSERT_EQ(failed, 1u);
        ASSERT_OK(store_list_notifications(s, 0, &list, &n));
        ASSERT_EQ(n, 3u);
        for (size_t i = 0; i < n; i++) {
                ASSERT_STREQ(list[i].instance, "test-a");
                ASSERT_STREQ(list[i].event_source, "splunk");
                if (strcmp(list[i].id, x.ids[1]) == 0) {
                        ASSERT_EQ(list[i].state, NOTIFY_STATE_FAILED);
                        ASSERT_STREQ(list[i].last_error, "HTTP 410");
                        ASSERT_STREQ(list[i].action.api_code, "no_owner_remain");
                }
        }
        store_notifications_free(list, n);
        store_close(s);
}

/* Heartbeats name the live instances; claims name their owner. */
TEST(instances_and_leases) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        char **names = NULL;
        Result a = {};
        Claimed c = {};
        StoreAction *got = NULL;
        StoreInfo info;
        Store *s;

        s = fresh_store_as(&e, 0, "web-1", 10 * USEC_PER_SEC, NULL, 0);
        store_info(s, &info);
        ASSERT_STREQ(info.backend, pg_conninfo ? "postgresql" : "sqlite");
        ASSERT_STREQ(info.instance, "web-1");
        ASSERT_EQ(info.shared, pg_conninfo != NULL);
        submit1(e, s, NULL, (ActSpec) { "r", ACTION_SUSPEND, "a@example.com", NULL, ACTION_STATUS_QUEUED }, &a);
        /* the first heartbeat went with the loop's first iteration */
        for (uint64_t end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;;) {
                ASSERT_OK(store_instances(s, &names));
                if (names[0])
                        break;
                strv_free(names);
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < end);
                ASSERT_OK(sd_event_run(e, 50 * USEC_PER_MSEC));
        }
        ASSERT_STREQ(names[0], "web-1");
        ASSERT_NULL(names[1]);
        strv_free(names);
        claim_all(e, s, 0, &c);
        ASSERT_EQ(c.n, 1u);
        ASSERT_OK(store_get_action(s, a.ids[0], &got));
        ASSERT_STREQ(got->owner, "web-1");
        store_actions_free(got, 1);
        store_close(s);
}

typedef struct Pair {
        sd_event *e;
        Store *a, *b;
} Pair;

static void pair_open(Pair *p, unsigned cap, uint64_t lease) {
        ASSERT_OK(sd_event_new(&p->e));
        p->a = open_store_as(p->e, cap, HOUR, "inst-a", lease, NULL, 0);
        p->b = open_store_as(p->e, cap, HOUR, "inst-b", lease, NULL, 0);
}

static void pair_close(Pair *p) {
        store_close(p->a);
        store_close(p->b);
        sd_event_unref(p->e);
}

/* The same delivery submitted to two instances at the same moment, many
 * times over: each key is new exactly once, the other copy is its
 * duplicate with the same actions. */
TEST(two_instances_dedup) {
        static Result ra[200], rb[200];
        Pair p = {};
        unsigned fresh = 0;

        new_db_path();
        pair_open(&p, 0, 0);
        for (unsigned i = 0; i < 200; i++) {
                char key[32];
                StoreEvent *x, *y;

                (void) snprintf(key, sizeof(key), "id:k%u", i);
                x = ev_new("splunk", key);
                y = ev_new("splunk", key);
                ev_add(x, (ActSpec) { "r", ACTION_NOTIFY, "a@example.com", NULL, ACTION_STATUS_QUEUED });
                ev_add(y, (ActSpec) { "r", ACTION_NOTIFY, "a@example.com", NULL, ACTION_STATUS_QUEUED });
                /* alternate the order, so that batches cross */
                ASSERT_OK(store_submit_event(i % 2 ? p.a : p.b, x, on_event, &ra[i]));
                ASSERT_OK(store_submit_event(i % 2 ? p.b : p.a, y, on_event, &rb[i]));
        }
        for (unsigned i = 0; i < 200; i++) {
                wait_for(p.e, &ra[i].calls, 1);
                wait_for(p.e, &rb[i].calls, 1);
                ASSERT_OK(ra[i].r);
                ASSERT_OK(rb[i].r);
                ASSERT_STREQ(ra[i].event_id, rb[i].event_id);
                ASSERT_TRUE(ra[i].duplicate != rb[i].duplicate);
                ASSERT_STREQ(ra[i].ids[0], rb[i].ids[0]);
                fresh += !ra[i].duplicate + !rb[i].duplicate;
        }
        ASSERT_EQ(fresh, 200u);
        pair_close(&p);
}

/* 40 users through two instances at once with a cap of 5: exactly 5
 * queued, 35 held; released through the other instance. */
TEST(two_instances_cap) {
        static Result r[40];
        unsigned queued = 0, held = 0;
        StoreQueueCounts q;
        Result rel = {};
        Pair p = {};
        int first_held = -1;

        new_db_path();
        pair_open(&p, 5, 0);
        for (unsigned i = 0; i < 40; i++) {
                char user[64];
                StoreEvent *ev = ev_new("splunk", NULL);

                (void) snprintf(user, sizeof(user), "u%u@example.com", i);
                ev_add(ev, (ActSpec) { "r", ACTION_SUSPEND, user, NULL, ACTION_STATUS_QUEUED });
                ASSERT_OK(store_submit_event(i % 2 ? p.a : p.b, ev, on_event, &r[i]));
        }
        for (unsigned i = 0; i < 40; i++) {
                wait_for(p.e, &r[i].calls, 1);
                ASSERT_OK(r[i].r);
                queued += r[i].status[0] == ACTION_STATUS_QUEUED;
                if (r[i].status[0] == ACTION_STATUS_HELD) {
                        held++;
                        if (first_held < 0)
                                first_held = (int) i;
                }
        }
        ASSERT_EQ(queued, 5u);
        ASSERT_EQ(held, 35u);
        /* held through b, released through a */
        ASSERT_OK(wait_done(p.e, store_release_action(first_held % 2 ? p.b : p.a, r[first_held].ids[0], "op", on_done,
                                                      &rel), &rel));
        ASSERT_OK(store_queue_counts(p.b, &q));
        ASSERT_EQ(q.queued, 6u);
        ASSERT_EQ(q.held, 34u);
        pair_close(&p);
}

/* More keys in one batch than one redelivery-check statement takes
 * (PostgreSQL: PREFETCH_CHUNK), each also repeated right after: one copy of
 * each is new, the other its duplicate. */
TEST(dedup_large_batch) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        static Result first[3000], again[3000];
        Store *s;

        s = fresh_store(&e, 0);
        for (unsigned i = 0; i < 3000; i++) {
                char key[32];

                (void) snprintf(key, sizeof(key), "id:big-%u", i);
                ASSERT_OK(store_submit_event(s, ev_new("splunk", key), on_event, &first[i]));
                ASSERT_OK(store_submit_event(s, ev_new("splunk", key), on_event, &again[i]));
        }
        wait_for(e, &again[2999].calls, 1);
        for (unsigned i = 0; i < 3000; i++) {
                wait_for(e, &first[i].calls, 1);
                wait_for(e, &again[i].calls, 1);
                ASSERT_OK(first[i].r);
                ASSERT_OK(again[i].r);
                /* one copy is new, the other its duplicate; which is which is
                 * the batches' order, and a shared backend's writers run
                 * batches side by side */
                ASSERT_TRUE(first[i].duplicate != again[i].duplicate);
                ASSERT_TRUE(pg_conninfo || !first[i].duplicate);
                ASSERT_STREQ(again[i].event_id, first[i].event_id);
        }
        store_close(s);
}

static void cleanup_dir(void) {
        char cmd[300];
        (void) snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        atexit(cleanup_dir);
        pg_conninfo = getenv("REMEDYD_TEST_PG_CONNINFO");
        if (pg_conninfo && !*pg_conninfo)
                pg_conninfo = NULL;
        fprintf(stderr, "backend: %s\n", pg_conninfo ? "postgresql" : "sqlite");
        new_db_path();

        if (argc >= 3 && strcmp(argv[1], "--bench") == 0) {
                unsigned total = (unsigned) strtoul(argv[2], NULL, 10);
                unsigned conc = argc >= 5 && strcmp(argv[3], "--concurrency") == 0
                                        ? (unsigned) strtoul(argv[4], NULL, 10) : 4096;
                run_bench(total, conc, true);
                return 0;
        }

        RUN(commit_and_read);
        RUN(dedup);
        RUN(cooldown_and_dry_run);
        RUN(cap);
        RUN(preview);
        RUN(release_and_cancel);
        RUN(lifecycle);
        RUN(crash_recovery);
        if (!pg_conninfo) { /* SQLite's own: its file, its schema versions */
                RUN(schema_v1_migration);
                RUN(dedup_after_restart);
                RUN(failing_commit);
                RUN(open_errors);
        }
        RUN(timed_reactivation);
        RUN(outbox);
        RUN(dedup_large_batch);
        RUN(instances_and_leases);
        if (pg_conninfo) { /* several instances on one database */
                RUN(two_instances_dedup);
                RUN(two_instances_cap);
        }
        RUN(group_commit);
        if (!pg_conninfo)
                RUN(wal_bounded);
        if (!pg_conninfo) /* a shared backend commits at the end of the loop iteration only */
                RUN(early_commit);
        RUN(close_commits_pending);
        HARNESS_DONE();
}
