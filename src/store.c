/* The state store's common part: the operations the loop submits, the
 * writer thread(s) that run them in group commits, the guardrails and the
 * action lifecycle with its audit rows, the outbox, and the reads for
 * status and remedyctl. Every database access goes through a backend
 * (store-backend.h): SQLite (store_sqlite.c) or PostgreSQL (store_pg.c).
 * See docs/internals/store.md. */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "log.h"
#include "remedyd-limits.h"
#include "safety.h"
#include "store-backend.h"
#include "store.h"
#include "util.h"
#include "version.h"

#define DEDUP_WINDOW_DEFAULT_USEC (24ULL * 3600ULL * USEC_PER_SEC)
#define LEASE_DEFAULT_USEC (30ULL * USEC_PER_SEC)
#define POOL_DEFAULT 4u
/* A batch that lost a race with another instance's transaction runs again
 * this many times before its operations fail. */
#define BATCH_RERUNS 8
#define RECONNECT_MIN_USEC (250ULL * 1000ULL)
#define RECONNECT_MAX_USEC (5ULL * USEC_PER_SEC)
#define BIT(s) (1u << (s))

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

static const char *const notify_state_table[_NOTIFY_STATE_MAX] = {
        [NOTIFY_STATE_PENDING] = "pending",
        [NOTIFY_STATE_DELIVERED] = "delivered",
        [NOTIFY_STATE_FAILED] = "failed",
};

static int table_lookup(const char *const *table, int n, const char *s) {
        if (!s)
                return -22;
        for (int i = 0; i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return i;
        return -22;
}

const char *store_action_status_to_string(ActionStatus s) {
        return s < 0 || s >= _ACTION_STATUS_MAX ? NULL : action_status_table[s];
}

ActionStatus store_action_status_from_string(const char *s) {
        return (ActionStatus) table_lookup(action_status_table, _ACTION_STATUS_MAX, s);
}

const char *store_notify_state_to_string(NotifyState s) {
        return s < 0 || s >= _NOTIFY_STATE_MAX ? NULL : notify_state_table[s];
}

static const char *kind_to_string(ActionKind k) {
        return k < 0 || k >= _ACTION_KIND_MAX ? NULL : action_kind_table[k];
}

static ActionKind kind_from_string(const char *s) {
        return (ActionKind) table_lookup(action_kind_table, _ACTION_KIND_MAX, s);
}

/* The sinks the outbox is filled for: an immutable, reference-counted copy
 * of StoreOptions.notify, so that a reload can replace it while a writer
 * still uses the old one. */
typedef struct NotifySet {
        unsigned refs;
        size_t n;
        StoreNotifySink *sinks; /* rules owned */
        char **names;           /* sinks[i].name */
} NotifySet;

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
        OP_HEARTBEAT,
        OP_OUTBOX_CLAIM,
        OP_OUTBOX_DELIVERED,
        OP_OUTBOX_RETRY,
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
        StoreNotificationCallback notification_cb;

        StoreEvent *ev;          /* OP_EVENT */
        StoreAction *action;     /* OP_MANUAL */
        char id[33];
        bool success;
        ActionStatus status;
        uint64_t value;          /* not_before, claim time, page count */
        uint64_t value2;         /* lease */
        unsigned max;
        char *text1, *text2, *text3;

        bool duplicate;
        StoreAction *claimed;
        size_t n_claimed;
        StoreNotification *notes;
        size_t n_notes;
        uint64_t next_due;
};

typedef struct Writer {
        Store *store;
        StoreConn *conn;
        pthread_t thread;
        bool started;
        /* this writer's transaction, while it runs */
        bool wake_queue, wake_outbox;
        const NotifySet *notify;
} Writer;

struct Store {
        const StoreBackend *be;
        StoreConnConfig conn_cfg;
        char *path, *conninfo, *schema, *instance;
        uint64_t lease_usec, started_usec;

        sd_event *event;
        sd_event_source *efd_source;
        sd_event_source *kick_source;    /* wakes a writer once per loop iteration */
        sd_event_source *heartbeat_source;
        sd_event_source *listen_source;
        sd_event_source *relisten_source;
        int efd;
        StoreConn *rconn;                /* the loop's connection: reads, LISTEN */
        bool rconn_broken;

        Writer *writers;
        size_t n_writers;

        StoreWakeup on_queue, on_outbox;
        void *wake_userdata;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool lock_initialised;

        /* under lock */
        StoreOp *pending, *pending_tail;
        StoreOp *done, *done_tail;
        size_t n_pending;         /* operations in pending */
        unsigned idle_writers;    /* writers waiting for pending */
        size_t outstanding;
        bool closing;
        StoreOptions opts;        /* .notify points into notify */
        NotifySet *notify;
        bool writable, connected;
        bool schema_ready;        /* migrated and recovered (at open, or at the first connect) */
        size_t early_commit;      /* ops waiting past which an idle writer starts; 0 = only at the
                                   * end of the loop iteration (op_submit()) */
        bool woke_queue, woke_outbox;
        uint64_t commits, failed_commits, ops, latency_usec;
        int last_error;
};

/* --- small helpers ---------------------------------------------------------- */

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

static int dup_opt(const char *in, char **out) {
        if (!in) {
                *out = NULL;
                return 0;
        }
        *out = mem_strndup(in, LIMIT_CONFIG_STRING_BYTES);
        return *out ? 0 : -ENOMEM;
}

/* Ids for events, actions and deliveries: 32 lower-case hex characters like
 * random_id(), but time-ordered: 48 bits of milliseconds since the epoch,
 * then 80 random bits. The tables key on the id, and a random key puts
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

/* --- statements ------------------------------------------------------------- */

/* One statement in use: the backend and its handle. */
typedef struct Q {
        const StoreBackend *be;
        StoreStmt *st;
} Q;

static int q_get(const StoreBackend *be, StoreConn *c, StoreStmtId id, Q *ret) {
        *ret = (Q) { .be = be };
        return be->stmt(c, id, &ret->st);
}

static int q_text(Q *q, int i, const char *s) {
        return q->be->bind_text(q->st, i, s);
}

static int q_u64(Q *q, int i, uint64_t v) {
        return q->be->bind_u64(q->st, i, v);
}

/* Binds a run of text parameters from 1 on. */
static int q_texts(Q *q, size_t n, const char *const *v) {
        int r;

        for (size_t i = 0; i < n; i++)
                if ((r = q_text(q, (int) i + 1, v[i])) < 0)
                        return r;
        return 0;
}

static int q_step(Q *q) {
        return q->be->step(q->st);
}

static void q_reset(Q *q) {
        q->be->reset(q->st);
}

/* Runs a statement whose rows, if any, are ignored. */
static int q_done(Q *q) {
        int r = q_step(q);
        q_reset(q);
        return r < 0 ? r : 0;
}

static const char *q_col(Q *q, int i) {
        return q->be->column_text(q->st, i);
}

static uint64_t q_col_u64(Q *q, int i) {
        return q->be->column_u64(q->st, i);
}

static int col_strdup(Q *q, int i, char **ret) {
        const char *t = q_col(q, i);

        if (!t) {
                *ret = NULL;
                return 0;
        }
        *ret = mem_strdup(t);
        return *ret ? 0 : -ENOMEM;
}

/* Runs a one-row, one-column count. */
static int q_count(Q *q, uint64_t *ret) {
        int r = q_step(q);

        if (r > 0)
                *ret = q_col_u64(q, 0);
        q_reset(q);
        if (r == 0)
                r = -EIO;
        return r < 0 ? r : 0;
}

/* Reads the ACTION_COLS of a row starting at column base into a (zeroed). */
static int action_from_row(Q *q, int base, StoreAction *a) {
        const char *t = q_col(q, base + 0);
        int r;

        if (!t || strlen(t) >= sizeof(a->id))
                return -EBADMSG;
        strcpy(a->id, t);
        if ((r = col_strdup(q, base + 1, &a->event_id)) < 0 || (r = col_strdup(q, base + 2, &a->rule)) < 0 ||
            (r = col_strdup(q, base + 4, &a->user)) < 0 || (r = col_strdup(q, base + 5, &a->user_id)) < 0 ||
            (r = col_strdup(q, base + 6, &a->reason)) < 0 || (r = col_strdup(q, base + 8, &a->detail)) < 0 ||
            (r = col_strdup(q, base + 16, &a->parent_id)) < 0 || (r = col_strdup(q, base + 17, &a->api_code)) < 0 ||
            (r = col_strdup(q, base + 18, &a->api_message)) < 0 || (r = col_strdup(q, base + 20, &a->owner)) < 0)
                return r;
        a->action = kind_from_string(q_col(q, base + 3));
        a->status = store_action_status_from_string(q_col(q, base + 7));
        a->created_usec = q_col_u64(q, base + 9);
        a->updated_usec = q_col_u64(q, base + 10);
        a->not_before_usec = q_col_u64(q, base + 11);
        a->attempts = (unsigned) q_col_u64(q, base + 12);
        a->for_usec = q_col_u64(q, base + 13);
        a->cooldown_usec = q_col_u64(q, base + 14);
        a->dry_run = q_col_u64(q, base + 15) != 0;
        a->received_usec = q_col_u64(q, base + 19);
        return 0;
}

/* Grows *v (elements of size) to hold one more at index n. */
static int grow(void **v, size_t *cap, size_t n, size_t size) {
        size_t ncap;
        void *nv;

        if (n < *cap)
                return 0;
        ncap = *cap ? *cap * 2 : 8;
        nv = mem_reallocarray(*v, ncap, size);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        *cap = ncap;
        return 0;
}

/* Runs a bound action query into a new array of at most max rows. */
static int actions_collect(Q *q, size_t max, StoreAction **ret, size_t *ret_n) {
        StoreAction *v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        while (n < max && (r = q_step(q)) > 0) {
                if ((r = grow((void **) &v, &cap, n, sizeof(*v))) < 0)
                        break;
                v[n] = (StoreAction) {};
                r = action_from_row(q, 0, &v[n++]);
                if (r < 0)
                        break;
        }
        if (r > 0)
                r = 0;
        q_reset(q);
        if (r < 0) {
                store_actions_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Collects the first column of every row (ids) into a new array. */
static int ids_collect(Q *q, size_t max, char (**ret)[33], size_t *ret_n) {
        char (*v)[33] = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        while (n < max && (r = q_step(q)) > 0) {
                const char *id = q_col(q, 0);

                if (!id || strlen(id) >= 33)
                        continue;
                if ((r = grow((void **) &v, &cap, n, sizeof(*v))) < 0)
                        break;
                strcpy(v[n++], id);
        }
        if (r > 0)
                r = 0;
        q_reset(q);
        if (r < 0) {
                mem_free(v);
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
        mem_free(a->owner);
        a->rule = a->user = a->user_id = a->reason = a->detail = a->event_id = NULL;
        a->parent_id = a->api_code = a->api_message = a->owner = NULL;
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

void store_notifications_free(StoreNotification *n, size_t count) {
        if (!n)
                return;
        for (size_t i = 0; i < count; i++) {
                mem_free(n[i].sink);
                mem_free(n[i].last_error);
                mem_free(n[i].event_source);
                mem_free(n[i].instance);
                store_action_done(&n[i].action);
        }
        mem_free(n);
}

static StoreOp *op_free(StoreOp *op) {
        if (!op)
                return NULL;
        store_event_free(op->ev);
        store_actions_free(op->action, 1);
        store_actions_free(op->claimed, op->n_claimed);
        store_notifications_free(op->notes, op->n_notes);
        mem_free(op->text1);
        mem_free(op->text2);
        mem_free(op->text3);
        mem_free(op);
        return NULL;
}

static NotifySet *notify_set_unref(NotifySet *n) {
        if (!n || __atomic_sub_fetch(&n->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < n->n; i++)
                strv_free(n->sinks[i].rules);
        strv_free(n->names);
        mem_free(n->sinks);
        mem_free(n);
        return NULL;
}

static NotifySet *notify_set_ref(NotifySet *n) {
        if (n)
                __atomic_add_fetch(&n->refs, 1, __ATOMIC_ACQ_REL);
        return n;
}

static int notify_set_new(const StoreNotifySink *sinks, size_t n, NotifySet **ret) {
        NotifySet *set = mem_calloc(1, sizeof(*set));

        if (!set)
                return -ENOMEM;
        set->refs = 1;
        if (n > 0 && (!(set->sinks = mem_calloc(n, sizeof(*set->sinks))) ||
                      !(set->names = mem_calloc(n + 1, sizeof(char *))))) {
                mem_free(set->sinks);
                mem_free(set);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                StoreNotifySink *d = &set->sinks[set->n++];
                size_t k = strv_length(sinks[i].rules);

                d->on_mask = sinks[i].on_mask;
                set->names[i] = mem_strdup(sinks[i].name ? sinks[i].name : "");
                if (!set->names[i])
                        goto oom;
                d->name = set->names[i];
                if (sinks[i].rules) {
                        d->rules = mem_calloc(k + 1, sizeof(char *));
                        if (!d->rules)
                                goto oom;
                        for (size_t j = 0; j < k; j++)
                                if (!(d->rules[j] = mem_strdup(sinks[i].rules[j])))
                                        goto oom;
                }
        }
        *ret = set;
        return 0;
oom:
        notify_set_unref(set);
        return -ENOMEM;
}

/* --- inside a transaction (writer thread) ---------------------------------- */

static int wq(Writer *w, StoreStmtId id, Q *ret) {
        return q_get(w->store->be, w->conn, id, ret);
}

static int audit_insert(Writer *w, uint64_t now, const char *kind, const char *event_id, const char *action_id,
                        const char *rule, const char *user, const char *user_key, const char *from,
                        const char *to, const char *detail) {
        const char *const texts[] = { NULL, kind, event_id, action_id, rule, user, user_key, from, to,
                                      detail, w->store->instance };
        Q q;
        int r;

        if ((r = wq(w, S_INSERT_AUDIT, &q)) < 0)
                return r;
        for (size_t i = 1; i < ELEMENTSOF(texts); i++)
                if ((r = q_text(&q, (int) i + 1, texts[i])) < 0)
                        return r;
        if ((r = q_u64(&q, 1, now)) < 0)
                return r;
        return q_done(&q);
}

/* One outbox row per sink that wants this action entering status. */
static int outbox_fill(Writer *w, const StoreAction *a, ActionStatus status, uint64_t now) {
        const NotifySet *set = w->notify;
        const char *rule = a->rule ? a->rule : "manual";
        int r;

        if (!set || status < 0)
                return 0;
        for (size_t i = 0; i < set->n; i++) {
                const StoreNotifySink *k = &set->sinks[i];
                bool wanted = !k->rules;
                char id[33];
                Q q;

                if (!(k->on_mask & BIT(status)))
                        continue;
                for (char **g = k->rules; g && *g && !wanted; g++)
                        wanted = fnmatch(*g, rule, 0) == 0;
                if (!wanted)
                        continue;
                if ((r = id_new(id)) < 0 || (r = wq(w, S_OUTBOX_INSERT, &q)) < 0)
                        return r;
                if ((r = q_texts(&q, 4, (const char *const[]) { id, k->name, a->id,
                                                                 store_action_status_to_string(status) })) < 0 ||
                    (r = q_u64(&q, 5, now)) < 0 || (r = q_text(&q, 6, w->store->instance)) < 0 ||
                    (r = q_done(&q)) < 0)
                        return r;
                w->wake_outbox = true;
        }
        return 0;
}

/* Loads one action by id on the writer's connection: 1 found, 0 not. */
static int writer_get(Writer *w, const char *id, StoreAction *ret) {
        Q q;
        int r;

        if ((r = wq(w, S_GET, &q)) < 0 || (r = q_text(&q, 1, id)) < 0)
                return r;
        r = q_step(&q);
        if (r > 0) {
                *ret = (StoreAction) {};
                r = action_from_row(&q, 0, ret);
                if (r < 0)
                        store_action_done(ret);
                else
                        r = 1;
        }
        q_reset(&q);
        return r;
}

/* Moves an action loaded by writer_get() to a new status with its audit row. */
static int transition(Writer *w, const StoreAction *a, ActionStatus to, uint64_t now, const char *detail) {
        _cleanup_free_ char *key = NULL;
        Q q;
        int r;

        if ((r = wq(w, S_SET_STATUS, &q)) < 0 || (r = q_text(&q, 1, a->id)) < 0 ||
            (r = q_text(&q, 2, store_action_status_to_string(to))) < 0 || (r = q_u64(&q, 3, now)) < 0 ||
            (r = q_done(&q)) < 0)
                return r;
        if ((r = user_key_make(a->user, a->user_id, &key)) < 0)
                return r;
        if (to == ACTION_STATUS_QUEUED)
                w->wake_queue = true;
        r = audit_insert(w, now, "transition", a->event_id, a->id, a->rule, a->user, key,
                         store_action_status_to_string(a->status), store_action_status_to_string(to), detail);
        return r < 0 ? r : outbox_fill(w, a, to, now);
}

/* A queued suspension of user_key ending at end_usec (USEC_INFINITY: never)
 * cancels the pending timed reactivations that would end it sooner. */
static int cancel_timed_reactivations(Writer *w, const char *user_key, uint64_t end_usec, const char *by_id,
                                      uint64_t now) {
        _cleanup_free_ char *detail = NULL;
        char (*ids)[33] = NULL;
        size_t n = 0;
        Q q;
        int r;

        if (!user_key)
                return 0;
        if ((r = wq(w, S_TIMED_PENDING, &q)) < 0 || (r = q_text(&q, 1, user_key)) < 0)
                return r;
        r = end_usec == USEC_INFINITY ? q_text(&q, 2, NULL) : q_u64(&q, 2, end_usec);
        if (r < 0 || (r = ids_collect(&q, SIZE_MAX, &ids, &n)) < 0)
                return r;
        if (n > 0 && !(detail = strdup_printf("superseded by suspension %s", by_id))) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                StoreAction a;

                r = writer_get(w, ids[i], &a);
                if (r <= 0)
                        goto out;
                r = transition(w, &a, ACTION_STATUS_CANCELLED, now, detail);
                store_action_done(&a);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        mem_free(ids);
        return r;
}

/* The cooldown query (S_COOLDOWN or R_COOLDOWN, obtained in q) for a:
 * an earlier action of the same rule and user within its cooldown. */
static int cooldown_query(Q *q, const StoreAction *a, const char *key, uint64_t now, bool *ret) {
        _cleanup_free_ char *email_key = NULL;
        int r;

        /* An earlier action of the same user may have been recorded before
         * its user id was known (keyed by the email then): match that key
         * too. */
        if (a->user_id && a->user && !(email_key = str_tolower_dup(a->user))) {
                q_reset(q);
                return -ENOMEM;
        }
        if ((r = q_text(q, 1, a->rule)) < 0 || (r = q_text(q, 2, key)) < 0 ||
            (r = q_u64(q, 3, now > a->cooldown_usec ? now - a->cooldown_usec : 0)) < 0 ||
            (r = q_text(q, 4, email_key)) < 0)
                return r;
        r = q_step(q);
        q_reset(q);
        if (r < 0)
                return r;
        *ret = r > 0;
        return 0;
}

static uint64_t cap_since(const StoreOptions *o, uint64_t now) {
        return now > o->window_usec ? now - o->window_usec : 0;
}

static bool cap_applies(const StoreAction *a, const StoreOptions *o) {
        return a->action == ACTION_SUSPEND && o->max_suspensions > 0;
}

static int guard_cooldown(Writer *w, const StoreAction *a, const char *key, uint64_t now, bool *ret) {
        Q q;
        int r;

        *ret = false;
        if (a->cooldown_usec == 0 || !key)
                return 0;
        if ((r = wq(w, S_COOLDOWN, &q)) < 0)
                return r;
        return cooldown_query(&q, a, key, now, ret);
}

static int guard_cap(Writer *w, const StoreAction *a, const StoreOptions *o, uint64_t now, bool *ret) {
        uint64_t n = 0;
        Q q;
        int r;

        *ret = false;
        if (!cap_applies(a, o))
                return 0;
        if ((r = wq(w, S_CAP, &q)) < 0 || (r = q_u64(&q, 1, cap_since(o, now))) < 0 || (r = q_count(&q, &n)) < 0)
                return r;
        *ret = n >= o->max_suspensions;
        return 0;
}

/* Applies the writer-side guardrails, inserts the action and its audit row.
 * a->id, event_id and timestamps are filled in. */
static int action_insert(Writer *w, StoreAction *a, const char *event_id, const char *audit_kind,
                         const char *audit_detail, const StoreOptions *o, uint64_t now) {
        _cleanup_free_ char *key = NULL;
        Q q;
        int r;

        if (a->status < 0 || a->status >= _ACTION_STATUS_MAX || !kind_to_string(a->action) || !a->rule)
                return -EINVAL;
        if ((r = id_new(a->id)) < 0 || (r = user_key_make(a->user, a->user_id, &key)) < 0)
                return r;
        if (event_id && !a->event_id && !(a->event_id = mem_strdup(event_id)))
                return -ENOMEM;
        a->created_usec = a->updated_usec = now;

        if (a->status == ACTION_STATUS_QUEUED) {
                bool cooldown = false, cap = false;

                if ((r = guard_cooldown(w, a, key, now, &cooldown)) < 0)
                        return r;
                if (safety_guard_needs_cap(a->status, cooldown, a->dry_run) && (r = guard_cap(w, a, o, now, &cap)) < 0)
                        return r;
                a->status = safety_guard_status(a->status, cooldown, a->dry_run, cap);
        }

        if ((r = wq(w, S_INSERT_ACTION, &q)) < 0)
                return r;
        if ((r = q_texts(&q, 10, (const char *const[]) { a->id, a->event_id, a->rule, kind_to_string(a->action),
                                                          a->user, a->user_id, key, a->reason,
                                                          store_action_status_to_string(a->status), a->detail })) < 0 ||
            (r = q_u64(&q, 11, now)) < 0 || (r = q_u64(&q, 12, a->not_before_usec)) < 0 ||
            (r = q_u64(&q, 13, a->attempts)) < 0 || (r = q_u64(&q, 14, a->for_usec)) < 0 ||
            (r = q_u64(&q, 15, a->cooldown_usec)) < 0 || (r = q_u64(&q, 16, a->dry_run)) < 0 ||
            (r = q_text(&q, 17, a->parent_id)) < 0 || (r = q_done(&q)) < 0)
                return r;

        r = audit_insert(w, now, audit_kind, a->event_id, a->id, a->rule, a->user, key, NULL,
                         store_action_status_to_string(a->status),
                         audit_detail ? audit_detail : a->detail ? a->detail : a->reason);
        if (r < 0 || (r = outbox_fill(w, a, a->status, now)) < 0)
                return r;
        if (a->status != ACTION_STATUS_QUEUED)
                return 0;
        w->wake_queue = true;
        if (a->action == ACTION_SUSPEND)
                return cancel_timed_reactivations(w, key, a->for_usec == 0 ? USEC_INFINITY : now + a->for_usec,
                                                  a->id, now);
        return 0;
}

static int op_event(Writer *w, StoreOp *op, const StoreOptions *o) {
        const StoreBackend *be = w->store->be;
        StoreEvent *ev = op->ev;
        uint64_t now = now_usec(CLOCK_REALTIME), window, since;
        Q q;
        int r;

        /* received_usec and the id were set by batch_run() */
        window = o->dedup_window_usec ? o->dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        since = ev->received_usec > window ? ev->received_usec - window : 0;

        if (ev->dedup_key) {
                char orig[33] = "";
                StoreAction *v = NULL;
                size_t n = 0;

                r = be->dedup_check(w->conn, ev, since, orig);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if ((r = wq(w, S_EVENT_ACTIONS, &q)) < 0 || (r = q_text(&q, 1, orig)) < 0 ||
                            (r = actions_collect(&q, SIZE_MAX, &v, &n)) < 0)
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

        if ((r = wq(w, S_INSERT_EVENT, &q)) < 0 ||
            (r = q_texts(&q, 3, (const char *const[]) { ev->id, ev->source, ev->dedup_key })) < 0 ||
            (r = q_u64(&q, 4, ev->received_usec)) < 0 || (r = be->bind_blob(q.st, 5, ev->body, ev->body_len)) < 0 ||
            (r = q_done(&q)) < 0)
                return r;
        if (ev->dedup_key && (r = be->dedup_record(w->conn, ev, since)) < 0)
                return r;
        /* No audit row: store_history() reads events from their table. */
        for (size_t i = 0; i < ev->n_actions; i++)
                if ((r = action_insert(w, &ev->actions[i], ev->id, "decision", NULL, o, now)) < 0)
                        return r;
        return 0;
}

static int op_manual(Writer *w, StoreOp *op, const StoreOptions *o) {
        StoreAction *a = op->action;

        mem_free(a->rule);
        a->rule = mem_strdup("manual");
        if (!a->rule)
                return -ENOMEM;
        return action_insert(w, a, NULL, "manual", a->reason, o, now_usec(CLOCK_REALTIME));
}

/* The earliest time something of a queue (S_NEXT_DUE or S_OUTBOX_NEXT_DUE)
 * becomes due; USEC_INFINITY when nothing waits. */
static int next_due(Writer *w, StoreStmtId id, uint64_t now, uint64_t *ret) {
        Q q;
        int r;

        if ((r = wq(w, id, &q)) < 0 || (r = q_u64(&q, 1, now)) < 0 || (r = q_text(&q, 2, w->store->instance)) < 0)
                return r;
        r = q_step(&q);
        *ret = r > 0 && !q.be->column_null(q.st, 0) ? q_col_u64(&q, 0) : USEC_INFINITY;
        q_reset(&q);
        return r < 0 ? r : 0;
}

static int op_claim(Writer *w, StoreOp *op) {
        Store *s = w->store;
        uint64_t now = now_usec(CLOCK_REALTIME), when = op->value ? op->value : now;
        char (*ids)[33] = NULL;
        size_t n = 0;
        Q q;
        int r;

        if ((r = wq(w, S_DUE, &q)) < 0 || (r = q_u64(&q, 1, when)) < 0 || (r = q_u64(&q, 2, op->max)) < 0 ||
            (r = q_text(&q, 3, s->instance)) < 0 || (r = ids_collect(&q, op->max, &ids, &n)) < 0)
                return r;
        if (n > 0 && !(op->claimed = mem_calloc(n, sizeof(StoreAction)))) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                StoreAction *a = &op->claimed[op->n_claimed];
                _cleanup_free_ char *detail = NULL;

                r = writer_get(w, ids[i], a);
                if (r < 0)
                        goto out;
                if (r == 0)
                        continue;
                op->n_claimed++;
                /* A running action here is one whose owner stopped renewing
                 * its lease (shared backends only). */
                if (a->status == ACTION_STATUS_RUNNING &&
                    !(detail = strdup_printf("lease of instance %s expired, taken over", a->owner ? a->owner : "?"))) {
                        r = -ENOMEM;
                        goto out;
                }
                if ((r = wq(w, S_CLAIM, &q)) < 0 || (r = q_text(&q, 1, a->id)) < 0 || (r = q_u64(&q, 2, now)) < 0 ||
                    (r = q_text(&q, 3, s->instance)) < 0 || (r = q_u64(&q, 4, now + s->lease_usec)) < 0 ||
                    (r = q_done(&q)) < 0)
                        goto out;
                {
                        _cleanup_free_ char *key = NULL;
                        if ((r = user_key_make(a->user, a->user_id, &key)) < 0 ||
                            (r = audit_insert(w, now, "transition", a->event_id, a->id, a->rule, a->user, key,
                                              store_action_status_to_string(a->status), "running", detail)) < 0)
                                goto out;
                }
                a->status = ACTION_STATUS_RUNNING;
                a->updated_usec = now;
                mem_free(a->owner);
                if (!(a->owner = mem_strdup(s->instance))) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        r = next_due(w, S_NEXT_DUE, now, &op->next_due);
out:
        mem_free(ids);
        return r;
}

/* Loads the action for a transition op; sets op->r to -ENOENT/-EBUSY and
 * returns 0 when the op does not apply. Returns 1 with *a loaded. */
static int op_load(Writer *w, StoreOp *op, StoreAction *a, unsigned allowed_mask) {
        int r = writer_get(w, op->id, a);
        if (r < 0)
                return r;
        if (r == 0) {
                op->r = -ENOENT;
                return 0;
        }
        if (a->status < 0 || !(allowed_mask & BIT(a->status))) {
                store_action_done(a);
                op->r = -EBUSY;
                return 0;
        }
        return 1;
}

static int timed_reactivation_insert(Writer *w, const StoreAction *susp, uint64_t now) {
        _cleanup_free_ char *key = NULL, *detail = NULL;
        StoreAction re = {};
        Q q;
        int r;

        if ((r = user_key_make(susp->user, susp->user_id, &key)) < 0)
                return r;
        if (key) {
                /* a later suspension of the same user that outlasts this one wins */
                if ((r = wq(w, S_OUTLASTED, &q)) < 0 || (r = q_text(&q, 1, key)) < 0 ||
                    (r = q_text(&q, 2, susp->id)) < 0 || (r = q_u64(&q, 3, susp->created_usec)) < 0 ||
                    (r = q_u64(&q, 4, now + susp->for_usec)) < 0)
                        return r;
                r = q_step(&q);
                q_reset(&q);
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
            !re.parent_id || !(detail = strdup_printf("timed reactivation of %s", susp->id))) {
                r = -ENOMEM;
                goto out;
        }
        /* Not subject to cooldown, dry-run or the cap: already decided. */
        r = action_insert(w, &re, susp->event_id, "decision", detail, &(StoreOptions) {}, now);
out:
        store_action_done(&re);
        return r;
}

/* The audit row of an update that is not a plain status change. */
static int audit_update(Writer *w, const StoreAction *a, uint64_t now, const char *kind, ActionStatus from,
                        ActionStatus to, const char *detail) {
        _cleanup_free_ char *key = NULL;
        int r = user_key_make(a->user, a->user_id, &key);

        if (r < 0)
                return r;
        return audit_insert(w, now, kind, a->event_id, a->id, a->rule, a->user, key,
                            store_action_status_to_string(from), store_action_status_to_string(to), detail);
}

static int op_finish(Writer *w, StoreOp *op, StoreAction *a, uint64_t now) {
        ActionStatus to = op->success ? ACTION_STATUS_DONE : ACTION_STATUS_FAILED;
        _cleanup_free_ char *msg = NULL;
        Q q;
        int r;

        if ((r = wq(w, S_FINISH, &q)) < 0 ||
            (r = q_texts(&q, 5, (const char *const[]) { a->id, store_action_status_to_string(to), op->text1,
                                                         op->text2, op->text3 })) < 0 ||
            (r = q_u64(&q, 6, now)) < 0 || (r = q_done(&q)) < 0)
                return r;
        if ((op->text1 || op->text2) &&
            !(msg = strdup_printf("api code %s: %s%s%s", op->text1 ? op->text1 : "-", op->text2 ? op->text2 : "-",
                                  op->text3 ? "; " : "", op->text3 ? op->text3 : "")))
                return -ENOMEM;
        if ((r = audit_update(w, a, now, "transition", ACTION_STATUS_RUNNING, to, msg ? msg : op->text3)) < 0)
                return r;
        /* the outbox sees the outcome with the API's answer */
        mem_free(a->api_code);
        mem_free(a->api_message);
        a->api_code = a->api_message = NULL;
        if ((r = dup_opt(op->text1, &a->api_code)) < 0 || (r = dup_opt(op->text2, &a->api_message)) < 0 ||
            (r = outbox_fill(w, a, to, now)) < 0)
                return r;
        if (op->success && a->action == ACTION_SUSPEND && a->for_usec > 0)
                return timed_reactivation_insert(w, a, now);
        return 0;
}

static int op_transition(Writer *w, StoreOp *op) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        _cleanup_free_ char *msg = NULL;
        StoreAction a;
        Q q;
        int r;

        switch (op->type) {
        case OP_FINISH:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_RUNNING))) <= 0)
                        return r;
                r = op_finish(w, op, &a, now);
                break;
        case OP_RETRY:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_RUNNING))) <= 0)
                        return r;
                if ((r = wq(w, S_RETRY, &q)) < 0 || (r = q_text(&q, 1, a.id)) < 0 || (r = q_u64(&q, 2, op->value)) < 0 ||
                    (r = q_text(&q, 3, op->text3)) < 0 || (r = q_u64(&q, 4, now)) < 0 || (r = q_done(&q)) < 0)
                        break;
                if (!(msg = strdup_printf("attempt %u failed%s%s", a.attempts + 1, op->text3 ? ": " : "",
                                          op->text3 ? op->text3 : ""))) {
                        r = -ENOMEM;
                        break;
                }
                w->wake_queue = true;
                r = audit_update(w, &a, now, "transition", ACTION_STATUS_RUNNING, ACTION_STATUS_QUEUED, msg);
                break;
        case OP_SET_USER_ID:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_QUEUED) | BIT(ACTION_STATUS_RUNNING) |
                                                    BIT(ACTION_STATUS_HELD))) <= 0)
                        return r;
                if ((r = wq(w, S_SET_USER_ID, &q)) < 0 || (r = q_text(&q, 1, a.id)) < 0 ||
                    (r = q_text(&q, 2, op->text1)) < 0 || (r = q_u64(&q, 3, now)) < 0 || (r = q_done(&q)) < 0)
                        break;
                if (!(msg = strdup_printf("resolved to user id %s", op->text1))) {
                        r = -ENOMEM;
                        break;
                }
                mem_free(a.user_id);
                if (!(a.user_id = mem_strdup(op->text1))) {
                        r = -ENOMEM;
                        break;
                }
                r = audit_update(w, &a, now, "resolution", a.status, a.status, msg);
                break;
        case OP_RESOLVE:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_QUEUED) | BIT(ACTION_STATUS_RUNNING))) <= 0)
                        return r;
                if ((r = wq(w, S_RESOLVE, &q)) < 0 || (r = q_text(&q, 1, a.id)) < 0 ||
                    (r = q_text(&q, 2, store_action_status_to_string(op->status))) < 0 ||
                    (r = q_text(&q, 3, op->text3)) < 0 || (r = q_u64(&q, 4, now)) < 0 || (r = q_done(&q)) < 0)
                        break;
                if ((r = audit_update(w, &a, now, "transition", a.status, op->status, op->text3)) < 0)
                        break;
                r = outbox_fill(w, &a, op->status, now);
                break;
        case OP_RELEASE:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_HELD))) <= 0)
                        return r;
                r = transition(w, &a, ACTION_STATUS_QUEUED, now, op->text3 ? op->text3 : "released");
                if (r < 0 || a.action != ACTION_SUSPEND)
                        break;
                {
                        _cleanup_free_ char *key = NULL;
                        if ((r = user_key_make(a.user, a.user_id, &key)) < 0)
                                break;
                        r = cancel_timed_reactivations(w, key, a.for_usec == 0 ? USEC_INFINITY : now + a.for_usec,
                                                       a.id, now);
                }
                break;
        case OP_CANCEL:
                if ((r = op_load(w, op, &a, BIT(ACTION_STATUS_HELD) | BIT(ACTION_STATUS_QUEUED))) <= 0)
                        return r;
                r = transition(w, &a, ACTION_STATUS_CANCELLED, now, op->text3 ? op->text3 : "cancelled");
                break;
        default:
                return -EINVAL;
        }
        store_action_done(&a);
        return r;
}

/* This instance is alive: its heartbeat row, its leases renewed, what left
 * the dedup window and the outbox's retention forgotten. */
static int op_heartbeat(Writer *w, const StoreOptions *o) {
        Store *s = w->store;
        uint64_t now = now_usec(CLOCK_REALTIME);
        uint64_t window = o->dedup_window_usec ? o->dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        Q q;
        int r;

        if ((r = wq(w, S_HEARTBEAT, &q)) < 0 || (r = q_text(&q, 1, s->instance)) < 0 || (r = q_u64(&q, 2, now)) < 0 ||
            (r = q_u64(&q, 3, s->started_usec)) < 0 || (r = q_text(&q, 4, REMEDYD_VERSION)) < 0 ||
            (r = q_done(&q)) < 0)
                return r;
        if ((r = wq(w, S_RENEW, &q)) < 0 || (r = q_text(&q, 1, s->instance)) < 0 ||
            (r = q_u64(&q, 2, now + s->lease_usec)) < 0 || (r = q_done(&q)) < 0)
                return r;
        if ((r = wq(w, S_PRUNE, &q)) < 0 || (r = q_u64(&q, 1, now > window ? now - window : 0)) < 0 ||
            (r = q_u64(&q, 2, now > LIMIT_NOTIFY_RETENTION_USEC ? now - LIMIT_NOTIFY_RETENTION_USEC : 0)) < 0)
                return r;
        return q_done(&q);
}

/* Reads the S_OUTBOX_GET columns of a row into n (zeroed). */
static int notification_from_row(Q *q, StoreNotification *n) {
        const char *t;
        int r;

        if ((r = action_from_row(q, 0, &n->action)) < 0)
                return r;
        t = q_col(q, STORE_ACTION_NCOLS + 0);
        if (!t || strlen(t) >= sizeof(n->id))
                return -EBADMSG;
        strcpy(n->id, t);
        if ((r = col_strdup(q, STORE_ACTION_NCOLS + 1, &n->sink)) < 0 ||
            (r = col_strdup(q, STORE_ACTION_NCOLS + 8, &n->last_error)) < 0 ||
            (r = col_strdup(q, STORE_ACTION_NCOLS + 9, &n->instance)) < 0 ||
            (r = col_strdup(q, STORE_ACTION_NCOLS + 10, &n->event_source)) < 0)
                return r;
        n->outcome = store_action_status_from_string(q_col(q, STORE_ACTION_NCOLS + 2));
        n->state = (NotifyState) table_lookup(notify_state_table, _NOTIFY_STATE_MAX, q_col(q, STORE_ACTION_NCOLS + 3));
        n->attempts = (unsigned) q_col_u64(q, STORE_ACTION_NCOLS + 4);
        n->created_usec = q_col_u64(q, STORE_ACTION_NCOLS + 5);
        n->updated_usec = q_col_u64(q, STORE_ACTION_NCOLS + 6);
        n->not_before_usec = q_col_u64(q, STORE_ACTION_NCOLS + 7);
        n->event_received_usec = n->event_source ? n->action.received_usec : 0;
        return 0;
}

static int notifications_collect(Q *q, size_t max, StoreNotification **ret, size_t *ret_n) {
        StoreNotification *v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        while (n < max && (r = q_step(q)) > 0) {
                if ((r = grow((void **) &v, &cap, n, sizeof(*v))) < 0)
                        break;
                v[n] = (StoreNotification) {};
                if ((r = notification_from_row(q, &v[n++])) < 0)
                        break;
        }
        if (r > 0)
                r = 0;
        q_reset(q);
        if (r < 0) {
                store_notifications_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int op_outbox(Writer *w, StoreOp *op) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        char (*ids)[33] = NULL;
        size_t n = 0;
        Q q;
        int r;

        switch (op->type) {
        case OP_OUTBOX_CLAIM:
                if ((r = wq(w, S_OUTBOX_DUE, &q)) < 0 || (r = q_u64(&q, 1, op->value ? op->value : now)) < 0 ||
                    (r = q_u64(&q, 2, op->max)) < 0 || (r = ids_collect(&q, op->max, &ids, &n)) < 0)
                        return r;
                if (n > 0 && !(op->notes = mem_calloc(n, sizeof(StoreNotification)))) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t i = 0; i < n; i++) {
                        StoreNotification *x;
                        size_t got = 0;

                        if ((r = wq(w, S_OUTBOX_CLAIM, &q)) < 0 || (r = q_text(&q, 1, ids[i])) < 0 ||
                            (r = q_u64(&q, 2, now + op->value2)) < 0 || (r = q_u64(&q, 3, now)) < 0 ||
                            (r = q_done(&q)) < 0 || (r = wq(w, S_OUTBOX_GET, &q)) < 0 || (r = q_text(&q, 1, ids[i])) < 0 ||
                            (r = notifications_collect(&q, 1, &x, &got)) < 0)
                                break;
                        if (got == 1)
                                op->notes[op->n_notes++] = *x;
                        mem_free(x);
                }
                if (r >= 0)
                        r = next_due(w, S_OUTBOX_NEXT_DUE, now, &op->next_due);
                break;
        case OP_OUTBOX_DELIVERED:
        case OP_OUTBOX_RETRY: {
                NotifyState to = op->type == OP_OUTBOX_DELIVERED ? NOTIFY_STATE_DELIVERED
                                 : op->success                   ? NOTIFY_STATE_FAILED
                                                                 : NOTIFY_STATE_PENDING;

                if ((r = wq(w, S_OUTBOX_SET, &q)) < 0 || (r = q_text(&q, 1, op->id)) < 0 ||
                    (r = q_text(&q, 2, store_notify_state_to_string(to))) < 0 || (r = q_u64(&q, 3, op->value)) < 0 ||
                    (r = q_text(&q, 4, op->text3)) < 0 || (r = q_u64(&q, 5, now)) < 0)
                        return r;
                r = q_step(&q);
                q_reset(&q);
                if (r == 0)
                        op->r = -ENOENT; /* not pending (any more) */
                r = r < 0 ? r : 0;
                break;
        }
        default:
                return -EINVAL;
        }
        mem_free(ids);
        return r;
}

static int op_run(Writer *w, StoreOp *op, const StoreOptions *o) {
        op->r = 0;
        switch (op->type) {
        case OP_EVENT:
                return op_event(w, op, o);
        case OP_MANUAL:
                return op_manual(w, op, o);
        case OP_CLAIM:
                return op_claim(w, op);
        case OP_HEARTBEAT:
                return op_heartbeat(w, o);
        case OP_OUTBOX_CLAIM:
        case OP_OUTBOX_DELIVERED:
        case OP_OUTBOX_RETRY:
                return op_outbox(w, op);
        case OP_MAX_PAGES:
                return w->store->be->debug_max_pages ? w->store->be->debug_max_pages(w->conn, op->value) : -EOPNOTSUPP;
        default:
                return op_transition(w, op);
        }
}

/* Does the op apply guardrails (cooldown, cap) that another instance's
 * transaction must not apply at the same time? */
static bool op_guarded(const StoreOp *op) {
        if (op->type == OP_MANUAL || op->type == OP_RELEASE)
                return true;
        if (op->type != OP_EVENT)
                return false;
        for (size_t i = 0; i < op->ev->n_actions; i++)
                if (op->ev->actions[i].pre_status == ACTION_STATUS_QUEUED)
                        return true;
        return false;
}

/* Puts an op back as it was submitted, for a re-run of its batch (or after a
 * failure, so that its callback sees no half-made results). */
static void op_reset(StoreOp *op, int r) {
        op->r = r;
        op->duplicate = false;
        store_actions_free(op->claimed, op->n_claimed);
        op->claimed = NULL;
        op->n_claimed = 0;
        store_notifications_free(op->notes, op->n_notes);
        op->notes = NULL;
        op->n_notes = 0;
        if (op->type == OP_EVENT && r == 0)
                for (size_t i = 0; i < op->ev->n_actions; i++) {
                        StoreAction *a = &op->ev->actions[i];
                        a->status = a->pre_status;
                        mem_free(a->event_id);
                        a->event_id = NULL;
                }
        if (op->type == OP_MANUAL && r == 0)
                op->action->status = op->action->pre_status;
}

/* Every event of the batch gets its arrival time and id before anything
 * runs, and a backend that can checks all their dedup keys at once. */
static int batch_prepare(Writer *w, StoreOp *batch, const StoreOptions *o) {
        const StoreBackend *be = w->store->be;
        uint64_t now = now_usec(CLOCK_REALTIME);
        uint64_t window = o->dedup_window_usec ? o->dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        const StoreEvent **evs = NULL;
        uint64_t *since = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        for (StoreOp *op = batch; op; op = op->next) {
                StoreEvent *ev = op->ev;

                if (op->type != OP_EVENT)
                        continue;
                if (ev->received_usec == 0)
                        ev->received_usec = now;
                if ((r = id_new(ev->id)) < 0)
                        goto out;
                if (!ev->dedup_key || !be->dedup_prefetch)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        const StoreEvent **ne = mem_reallocarray(evs, ncap, sizeof(*ne));
                        uint64_t *ns;

                        if (!ne) {
                                r = -ENOMEM;
                                goto out;
                        }
                        evs = ne;
                        ns = mem_reallocarray(since, ncap, sizeof(*ns));
                        if (!ns) {
                                r = -ENOMEM;
                                goto out;
                        }
                        since = ns;
                        cap = ncap;
                }
                evs[n] = ev;
                since[n++] = ev->received_usec > window ? ev->received_usec - window : 0;
        }
        if (n > 0)
                r = be->dedup_prefetch(w->conn, evs, since, n);
out:
        mem_free(evs);
        mem_free(since);
        return r;
}

static int batch_run(Writer *w, StoreOp *batch, const StoreOptions *o) {
        const StoreBackend *be = w->store->be;
        bool guard = false;
        int r;

        for (StoreOp *op = batch; op && !guard; op = op->next)
                guard = op_guarded(op);
        w->wake_queue = w->wake_outbox = false;
        if ((r = be->begin(w->conn, guard)) < 0)
                return r;
        if ((r = batch_prepare(w, batch, o)) < 0)
                goto fail;
        for (StoreOp *op = batch; op; op = op->next)
                if ((r = op_run(w, op, o)) < 0)
                        goto fail;
        if ((r = be->commit(w->conn, w->wake_queue, w->wake_outbox)) >= 0)
                return 0;
fail:
        be->rollback(w->conn);
        return r;
}

/* Runs a batch to its end: again after a lost race. */
static int batch_commit(Writer *w, StoreOp *batch, const StoreOptions *o) {
        int r;

        for (unsigned i = 0;; i++) {
                r = batch_run(w, batch, o);
                if (r != -EDEADLK || i >= BATCH_RERUNS)
                        return r;
                log_debug("store: transaction lost a race with another instance, running it again");
                for (StoreOp *op = batch; op; op = op->next)
                        op_reset(op, 0);
        }
}

/* Which ops wait for the database to come back instead of failing: the
 * executor's and the notifier's records of what was done (they cannot be
 * asked for again). Everything else (a heartbeat too: the next one comes) has a caller who can retry (a SIEM
 * gets 503, remedyctl an error, a claim runs again later). */
static bool op_parks(const StoreOp *op) {
        return op->type == OP_FINISH || op->type == OP_RETRY || op->type == OP_SET_USER_ID ||
               op->type == OP_RESOLVE || op->type == OP_OUTBOX_DELIVERED || op->type == OP_OUTBOX_RETRY;
}

/* Hands a finished batch to the loop. */
static void writer_complete(Store *s, StoreOp *batch, StoreOp *tail, int r, uint64_t n, bool wq_, bool wo) {
        uint64_t one = 1;

        pthread_mutex_lock(&s->lock);
        if (r < 0) {
                s->failed_commits++;
                s->last_error = -r;
                s->writable = false;
        } else {
                s->commits += n > 0; /* a heartbeat alone is housekeeping */
                s->ops += n;
                s->last_error = 0;
                s->writable = true;
                s->woke_queue |= wq_;
                s->woke_outbox |= wo;
        }
        if (batch) {
                if (s->done_tail)
                        s->done_tail->next = batch;
                else
                        s->done = batch;
                s->done_tail = tail;
        }
        pthread_mutex_unlock(&s->lock);
        if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_warning_errno(errno, "store: cannot wake the loop: %m, ignoring");
}

static int recover_running(Writer *w);

/* Migration and crash recovery, once per store: at open, or, when the
 * database was not reachable then, at the first connect of any writer
 * (migrations take an advisory lock: instances starting together migrate
 * once). */
static int store_setup(Writer *w) {
        Store *s = w->store;
        bool ready;
        int r;

        pthread_mutex_lock(&s->lock);
        ready = s->schema_ready;
        pthread_mutex_unlock(&s->lock);
        if (ready)
                return 0;
        if ((r = s->be->migrate(w->conn)) < 0 || (r = recover_running(w)) < 0)
                return log_error_errno(r, "store: cannot set up the %s schema: %m", s->be->name);
        pthread_mutex_lock(&s->lock);
        s->schema_ready = true;
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/* The connection is gone: fails what cannot wait, keeps the rest (parked)
 * for when it is back, and tries to reconnect with backoff. Returns the ops
 * to run first once connected. */
static StoreOp *writer_reconnect(Writer *w, StoreOp *batch) {
        Store *s = w->store;
        StoreOp *parked = NULL, **ptail = &parked, *failed = NULL, *ftail = NULL;
        uint64_t delay = RECONNECT_MIN_USEC, nfail = 0;

        pthread_mutex_lock(&s->lock);
        s->connected = false;
        s->writable = false;
        pthread_mutex_unlock(&s->lock);
        log_error("store: lost the connection to the %s database; reconnecting", s->be->name);

        for (;;) {
                struct timespec until;
                int r;

                /* sort: parked ops wait, the rest fail now */
                while (batch) {
                        StoreOp *op = batch;
                        batch = op->next;
                        op->next = NULL;
                        if (op_parks(op)) {
                                op_reset(op, 0);
                                *ptail = op;
                                ptail = &op->next;
                        } else {
                                op_reset(op, -EIO);
                                if (ftail)
                                        ftail->next = op;
                                else
                                        failed = op;
                                ftail = op;
                                nfail++;
                        }
                }
                if (failed) {
                        writer_complete(s, failed, ftail, -EIO, nfail, false, false);
                        failed = ftail = NULL;
                        nfail = 0;
                }

                r = s->be->reconnect(w->conn);
                if (r >= 0)
                        r = store_setup(w);
                if (r >= 0) {
                        pthread_mutex_lock(&s->lock);
                        s->connected = true;
                        pthread_mutex_unlock(&s->lock);
                        log_notice("store: connected to the %s database", s->be->name);
                        return parked;
                }

                pthread_mutex_lock(&s->lock);
                if (s->closing) {
                        pthread_mutex_unlock(&s->lock);
                        break;
                }
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += (time_t) (delay / USEC_PER_SEC);
                until.tv_nsec += (long) (delay % USEC_PER_SEC) * 1000;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                /* new ops are sorted the same way as they arrive */
                while (!s->pending && !s->closing)
                        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
                                break;
                batch = s->pending;
                s->pending = s->pending_tail = NULL;
                s->n_pending = 0;
                pthread_mutex_unlock(&s->lock);
                if (!batch)
                        delay = delay * 2 > RECONNECT_MAX_USEC ? RECONNECT_MAX_USEC : delay * 2;
        }
        /* closing while disconnected: nothing more can be recorded */
        for (StoreOp *op = parked; op; op = op->next)
                op_reset(op, -ESHUTDOWN), nfail++;
        if (parked) {
                StoreOp *t = parked;
                while (t->next)
                        t = t->next;
                writer_complete(s, parked, t, -ESHUTDOWN, nfail, false, false);
        }
        return NULL;
}

static void *writer_main(void *userdata) {
        Writer *w = userdata;
        Store *s = w->store;
        StoreOp *first = NULL;

        for (;;) {
                StoreOp *batch, *tail;
                StoreOptions o;
                NotifySet *notify;
                uint64_t n = 0, t0;
                int r;

                pthread_mutex_lock(&s->lock);
                s->idle_writers++;
                while (!first && !s->pending && !s->closing)
                        pthread_cond_wait(&s->cond, &s->lock);
                s->idle_writers--;
                if (!first && !s->pending) {
                        pthread_mutex_unlock(&s->lock);
                        break;
                }
                batch = s->pending;
                s->pending = s->pending_tail = NULL;
                s->n_pending = 0;
                o = s->opts;
                notify = notify_set_ref(s->notify);
                pthread_mutex_unlock(&s->lock);
                if (first) { /* parked ops from before a reconnect go first */
                        StoreOp *t = first;
                        while (t->next)
                                t = t->next;
                        t->next = batch;
                        batch = first;
                        first = NULL;
                }
                for (tail = batch; tail->next; tail = tail->next)
                        ;

                w->notify = notify;
                t0 = now_usec(CLOCK_MONOTONIC);
                r = batch_commit(w, batch, &o);
                w->notify = NULL;
                notify_set_unref(notify);
                if (r == -ENOTCONN) {
                        first = writer_reconnect(w, batch);
                        continue;
                }
                for (StoreOp *op = batch; op; op = op->next) {
                        n += op->type != OP_HEARTBEAT; /* housekeeping is not counted in the stats */
                        if (r < 0)
                                op_reset(op, r);
                        if (op->type == OP_HEARTBEAT && r >= 0) {
                                pthread_mutex_lock(&s->lock);
                                s->latency_usec = now_usec(CLOCK_MONOTONIC) - t0;
                                pthread_mutex_unlock(&s->lock);
                        }
                }
                if (r < 0)
                        log_error_errno(r, "store: commit of %" PRIu64 " operations failed: %m", n);
                else
                        log_trace(TRACE_STORE, "store: committed %" PRIu64 " operations", n);
                writer_complete(s, batch, tail, r, n, w->wake_queue, w->wake_outbox);
                if (s->be->after_commit)
                        s->be->after_commit(w->conn);
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
        case OP_OUTBOX_CLAIM:
                if (op->notification_cb)
                        op->notification_cb(s, op->r, op->notes, op->n_notes, op->r < 0 ? 0 : op->next_due,
                                            op->userdata);
                break;
        default:
                if (op->done_cb)
                        op->done_cb(s, op->r, op->userdata);
                break;
        }
}

static void wake(Store *s, bool queue, bool outbox) {
        if (queue && s->on_queue)
                s->on_queue(s->wake_userdata);
        if (outbox && s->on_outbox)
                s->on_outbox(s->wake_userdata);
}

static void dispatch_done(Store *s) {
        StoreOp *list;
        bool wq_, wo;

        pthread_mutex_lock(&s->lock);
        list = s->done;
        s->done = s->done_tail = NULL;
        wq_ = s->woke_queue;
        wo = s->woke_outbox;
        s->woke_queue = s->woke_outbox = false;
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
        wake(s, wq_, wo);
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
                /* Group commit: a writer is woken once per loop iteration
                 * (kick_source), after the dispatch that submitted this has
                 * submitted everything it had, so one transaction takes the
                 * whole burst. Waking it here for every operation made it
                 * commit the first request of every burst alone: 3 of 4
                 * commits held one event, each paying a full fsync. But an
                 * idle writer that waits for the end of a long burst leaves
                 * the disk idle while the loop works, then the loop idle
                 * while the disk syncs (loop, writer and fsync took turns:
                 * 0.82 + 0.34 + 0.3 ms per 56-event commit, perf). Once
                 * STORE_EARLY_COMMIT operations wait, an idle writer starts
                 * on them, and the rest of the burst goes into the next
                 * commit, built while this one syncs (bench/RESULTS.md,
                 * fourth round). */
                if (s->idle_writers > 0 && s->early_commit && s->n_pending >= s->early_commit)
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

static StoreOp *op_new(OpType type, void *userdata) {
        StoreOp *op = mem_calloc(1, sizeof(*op));

        if (op) {
                op->type = type;
                op->userdata = userdata;
        }
        return op;
}

int store_submit_event(Store *s, StoreEvent *ev, StoreEventCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || !ev || !ev->source) {
                store_event_free(ev);
                return -EINVAL;
        }
        if (!(op = op_new(OP_EVENT, userdata))) {
                store_event_free(ev);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ev->n_actions; i++)
                ev->actions[i].pre_status = ev->actions[i].status;
        op->ev = ev;
        op->event_cb = cb;
        return op_submit(s, op);
}

int store_submit_manual(Store *s, StoreAction *a, StoreActionCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || !a) {
                store_actions_free(a, 1);
                return -EINVAL;
        }
        if (!(op = op_new(OP_MANUAL, userdata))) {
                store_actions_free(a, 1);
                return -ENOMEM;
        }
        a->pre_status = a->status;
        op->action = a;
        op->action_cb = cb;
        return op_submit(s, op);
}

int store_claim_due(Store *s, uint64_t now, unsigned max, StoreClaimCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || max == 0 || max > LIMIT_QUEUE_INFLIGHT)
                return -EINVAL;
        if (!(op = op_new(OP_CLAIM, userdata)))
                return -ENOMEM;
        op->value = now;
        op->max = max;
        op->claim_cb = cb;
        return op_submit(s, op);
}

/* Builds an op on one action (or delivery) id. */
static int op_new_for(OpType type, const char *id, StoreDoneCallback cb, void *userdata, StoreOp **ret) {
        StoreOp *op;

        if (!id || strlen(id) >= sizeof(op->id) || id[0] == 0)
                return -EINVAL;
        if (!(op = op_new(type, userdata)))
                return -ENOMEM;
        strcpy(op->id, id);
        op->done_cb = cb;
        *ret = op;
        return 0;
}

/* An op on id with up to three texts; submitted, or freed on error. */
static int submit_for(Store *s, OpType type, const char *id, const char *t1, const char *t2, const char *t3,
                      StoreOp *proto, StoreDoneCallback cb, void *userdata) {
        StoreOp *op;
        int r;

        if (!s)
                return -EINVAL;
        if ((r = op_new_for(type, id, cb, userdata, &op)) < 0)
                return r;
        if (proto) {
                op->success = proto->success;
                op->status = proto->status;
                op->value = proto->value;
        }
        if ((r = dup_opt(t1, &op->text1)) < 0 || (r = dup_opt(t2, &op->text2)) < 0 ||
            (r = dup_opt(t3, &op->text3)) < 0) {
                op_free(op);
                return r;
        }
        return op_submit(s, op);
}

int store_finish_action(Store *s, const char *id, bool success, const char *api_code, const char *api_message,
                        const char *detail, StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_FINISH, id, api_code, api_message, detail, &(StoreOp) { .success = success }, cb,
                          userdata);
}

int store_retry_action(Store *s, const char *id, uint64_t not_before_usec, const char *detail,
                       StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_RETRY, id, NULL, NULL, detail, &(StoreOp) { .value = not_before_usec }, cb, userdata);
}

int store_set_user_id(Store *s, const char *id, const char *user_id, StoreDoneCallback cb, void *userdata) {
        if (!user_id || !is_user_id(user_id))
                return -EINVAL;
        return submit_for(s, OP_SET_USER_ID, id, user_id, NULL, NULL, NULL, cb, userdata);
}

int store_resolve_action(Store *s, const char *id, ActionStatus status, const char *detail, StoreDoneCallback cb,
                         void *userdata) {
        if (!is_resolution_status(status))
                return -EINVAL;
        return submit_for(s, OP_RESOLVE, id, NULL, NULL, detail, &(StoreOp) { .status = status }, cb, userdata);
}

int store_release_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_RELEASE, id, NULL, NULL, by, NULL, cb, userdata);
}

int store_cancel_action(Store *s, const char *id, const char *by, StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_CANCEL, id, NULL, NULL, by, NULL, cb, userdata);
}

int store_claim_notifications(Store *s, uint64_t now, unsigned max, uint64_t lease_usec,
                              StoreNotificationCallback cb, void *userdata) {
        StoreOp *op;

        if (!s || max == 0 || max > LIMIT_QUEUE_INFLIGHT)
                return -EINVAL;
        if (!(op = op_new(OP_OUTBOX_CLAIM, userdata)))
                return -ENOMEM;
        op->value = now;
        op->value2 = lease_usec;
        op->max = max;
        op->notification_cb = cb;
        return op_submit(s, op);
}

int store_notification_delivered(Store *s, const char *id, StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_OUTBOX_DELIVERED, id, NULL, NULL, NULL, NULL, cb, userdata);
}

int store_notification_retry(Store *s, const char *id, uint64_t not_before_usec, bool give_up, const char *error,
                             StoreDoneCallback cb, void *userdata) {
        return submit_for(s, OP_OUTBOX_RETRY, id, NULL, NULL, error,
                          &(StoreOp) { .success = give_up, .value = not_before_usec }, cb, userdata);
}

int store_debug_set_max_pages(Store *s, uint64_t pages, StoreDoneCallback cb, void *userdata) {
        StoreOp *op;

        if (!s)
                return -EINVAL;
        if (!(op = op_new(OP_MAX_PAGES, userdata)))
                return -ENOMEM;
        op->value = pages;
        op->done_cb = cb;
        return op_submit(s, op);
}

void store_set_wakeups(Store *s, StoreWakeup on_queue, StoreWakeup on_outbox, void *userdata) {
        if (!s)
                return;
        s->on_queue = on_queue;
        s->on_outbox = on_outbox;
        s->wake_userdata = userdata;
}

/* --- the loop's connection: peers' wake-ups, heartbeats ------------------ */

static int on_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata);
static void rconn_broke(Store *s);

static int rconn_open(Store *s) {
        StoreConnConfig cfg = s->conn_cfg;
        int r, fd;

        cfg.reader = true;
        r = s->be->connect(&cfg, &s->rconn);
        if (r == -ENOTCONN && s->rconn) {
                s->rconn_broken = false;
                rconn_broke(s); /* reads fail at once; a timer connects */
                return 0;
        }
        if (r < 0)
                return r;
        s->rconn_broken = false;
        fd = s->be->listen_fd(s->rconn);
        if (fd >= 0) {
                r = sd_event_add_io(s->event, &s->listen_source, fd, EPOLLIN, on_listen, s);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(s->listen_source, "store-listen");
        }
        return 0;
}

static int on_relisten(sd_event_source *src, uint64_t usec, void *userdata) {
        Store *s = userdata;

        if (!s->rconn_broken)
                return 0;
        s->listen_source = sd_event_source_disable_unref(s->listen_source);
        if (s->rconn)
                s->be->disconnect(s->rconn);
        s->rconn = NULL;
        if (rconn_open(s) >= 0 && !s->rconn_broken) {
                log_info("store: the loop's database connection is back");
                wake(s, true, true); /* what peers queued meanwhile */
                return 0;
        }
        s->rconn_broken = true;
        if (sd_event_source_set_time_relative(src, RECONNECT_MAX_USEC) >= 0)
                (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

/* Reads on a broken loop connection fail at once; a timer reconnects. */
static void rconn_broke(Store *s) {
        if (s->rconn_broken)
                return;
        s->rconn_broken = true;
        log_warning("store: the loop's database connection broke; reconnecting in the background");
        s->listen_source = sd_event_source_disable_unref(s->listen_source);
        if (!s->relisten_source &&
            sd_event_add_time_relative(s->event, &s->relisten_source, CLOCK_MONOTONIC, RECONNECT_MIN_USEC, 0,
                                       on_relisten, s) < 0)
                return;
        (void) sd_event_source_set_time_relative(s->relisten_source, RECONNECT_MIN_USEC);
        (void) sd_event_source_set_enabled(s->relisten_source, SD_EVENT_ONESHOT);
}

static int on_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Store *s = userdata;
        bool q = false, o = false;
        int r;

        r = s->be->listen_read(s->rconn, &q, &o);
        if (r < 0) {
                rconn_broke(s);
                return 0;
        }
        wake(s, q, o);
        return 0;
}

static int on_heartbeat(sd_event_source *src, uint64_t usec, void *userdata) {
        Store *s = userdata;
        StoreOp *op = op_new(OP_HEARTBEAT, NULL);
        uint64_t every = s->lease_usec / 3;

        if (op)
                (void) op_submit(s, op);
        if (every < USEC_PER_SEC / 4)
                every = USEC_PER_SEC / 4;
        if (every > 10 * USEC_PER_SEC)
                every = 10 * USEC_PER_SEC;
        (void) sd_event_source_set_time_relative(src, every);
        return 0;
}

/* --- open and close ------------------------------------------------------- */

static int instance_default(char **ret) {
        char host[256];

        if (gethostname(host, sizeof(host)) < 0 || !host[0])
                (void) snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = 0;
        *ret = mem_strdup(host);
        return *ret ? 0 : -ENOMEM;
}

/* Crash recovery: whatever this instance had running when it last died goes
 * back to the queue (the API calls are idempotent). Other instances' work is
 * theirs until their leases expire. */
static int recover_running(Writer *w) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        StoreAction *v = NULL;
        size_t n = 0;
        Q q;
        int r;

        if ((r = w->store->be->begin(w->conn, false)) < 0)
                return r;
        if ((r = wq(w, S_RECOVER, &q)) >= 0 && (r = q_text(&q, 1, w->store->instance)) >= 0)
                r = actions_collect(&q, SIZE_MAX, &v, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = transition(w, &v[i], ACTION_STATUS_QUEUED, now, "recovered after restart");
        if (r >= 0)
                r = w->store->be->commit(w->conn, n > 0, false);
        if (r < 0)
                w->store->be->rollback(w->conn);
        if (r >= 0 && n > 0)
                log_notice("store: %zu interrupted action(s) queued again after restart", n);
        store_actions_free(v, n);
        return r;
}

static int store_set_notify(Store *s, const StoreOptions *opts) {
        NotifySet *set = NULL, *old;
        int r;

        if ((r = notify_set_new(opts ? opts->notify : NULL, opts ? opts->n_notify : 0, &set)) < 0)
                return r;
        pthread_mutex_lock(&s->lock);
        old = s->notify;
        s->notify = set;
        if (opts)
                s->opts = *opts;
        s->opts.notify = set->sinks;
        s->opts.n_notify = set->n;
        pthread_mutex_unlock(&s->lock);
        notify_set_unref(old);
        return 0;
}

int store_open_config(const StoreConfig *cfg, sd_event *e, const StoreOptions *opts, Store **ret) {
        Store *s;
        sigset_t all, old;
        unsigned pool;
        int r;

        if (!cfg || !e || !ret)
                return -EINVAL;
        s = mem_calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->efd = -1;
        s->event = sd_event_ref(e);
        s->writable = s->connected = true;
        s->started_usec = now_usec(CLOCK_REALTIME);
        s->lease_usec = cfg->lease_usec ? cfg->lease_usec : LEASE_DEFAULT_USEC;
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

        if (!cfg->backend || strcmp(cfg->backend, "sqlite") == 0)
                s->be = &store_backend_sqlite;
        else if (strcmp(cfg->backend, "postgresql") == 0)
                s->be = &store_backend_pg;
        else {
                r = log_error_errno(-EINVAL, "store: unknown backend \"%s\"", cfg->backend);
                goto fail;
        }
        if ((r = dup_opt(cfg->path, &s->path)) < 0 || (r = dup_opt(cfg->schema ? cfg->schema : "remedyd", &s->schema)) < 0)
                goto fail;
        if (cfg->conninfo && !(s->conninfo = mem_strdup(cfg->conninfo))) {
                r = -ENOMEM;
                goto fail;
        }
        r = cfg->instance ? dup_opt(cfg->instance, &s->instance) : instance_default(&s->instance);
        if (r < 0)
                goto fail;
        if ((r = store_set_notify(s, opts)) < 0)
                goto fail;
        s->conn_cfg = (StoreConnConfig) {
                .path = s->path, .conninfo = s->conninfo, .schema = s->schema, .instance = s->instance,
        };

        /* On a shared backend each transaction costs the server an
         * execution of each statement, a WAL flush and round trips: an early
         * start for 16 ops made batches of 8 deliveries (pg_stat_statements)
         * and cost 67 us of PostgreSQL CPU per delivery; starting only at
         * the end of the loop iteration, 52-64 us (two instances under wrk,
         * on a machine shared with other builds: 10,195 vs 10,623-13,056
         * deliveries/s). */
        s->early_commit = s->be->shared ? 0 : STORE_EARLY_COMMIT;
        pool = cfg->pool ? cfg->pool : POOL_DEFAULT;
        /* SQLite has one writer (its dedup index and the file lock allow no
         * more); a shared backend writes on pool - 1 connections. */
        s->n_writers = s->be->shared && pool > 2 ? pool - 1 : 1;
        s->writers = mem_calloc(s->n_writers, sizeof(Writer));
        if (!s->writers) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < s->n_writers; i++) {
                s->writers[i].store = s;
                r = s->be->connect(&s->conn_cfg, &s->writers[i].conn);
                if (r == -ENOTCONN && s->writers[i].conn) {
                        /* a shared database that is down now: answer 503
                         * until a writer reaches it (writer_reconnect()) */
                        if (s->connected)
                                log_error("store: the %s database is not reachable; starting anyway, answering "
                                          "503 until it is",
                                          s->be->name);
                        s->connected = s->writable = false;
                        continue;
                }
                if (r < 0)
                        goto fail;
        }
        if (s->connected) {
                if ((r = s->be->migrate(s->writers[0].conn)) < 0)
                        goto fail;
                if ((r = recover_running(&s->writers[0])) < 0) {
                        log_error_errno(r, "store: crash recovery failed: %m");
                        goto fail;
                }
                s->schema_ready = true;
        }
        if ((r = rconn_open(s)) < 0)
                goto fail;

        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd < 0) {
                r = -errno;
                goto fail;
        }
        if ((r = sd_event_add_io(e, &s->efd_source, s->efd, EPOLLIN, on_eventfd, s)) < 0)
                goto fail;
        (void) sd_event_source_set_description(s->efd_source, "store-completions");
        if ((r = sd_event_add_defer(e, &s->kick_source, on_kick, s)) < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->kick_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->kick_source, "store-kick");
        if ((r = sd_event_add_time_relative(e, &s->heartbeat_source, CLOCK_MONOTONIC, 0, 0, on_heartbeat, s)) < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->heartbeat_source, SD_EVENT_ON);
        (void) sd_event_source_set_description(s->heartbeat_source, "store-heartbeat");

        /* The writers must never take the loop's signals. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (size_t i = 0; i < s->n_writers; i++) {
                char name[16]; /* the kernel's limit, with the NUL */

                r = -pthread_create(&s->writers[i].thread, NULL, writer_main, &s->writers[i]);
                if (r < 0)
                        break;
                s->writers[i].started = true;
                /* "top -H", perf and /proc/PID/task show which thread is which. */
                (void) snprintf(name, sizeof name, "store-writer%zu", i % 100);
                (void) pthread_setname_np(s->writers[i].thread, name);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                goto fail;

        *ret = s;
        return 0;
fail:
        store_close(s);
        return r;
}

int store_open(const char *path, sd_event *e, const StoreOptions *opts, Store **ret) {
        if (!path)
                return -EINVAL;
        return store_open_config(&(StoreConfig) { .backend = "sqlite", .path = path }, e, opts, ret);
}

Store *store_close(Store *s) {
        bool any = false;

        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_writers; i++)
                any |= s->writers[i].started;
        if (any) {
                /* a last heartbeat renews nothing: the ops still pending commit first */
                pthread_mutex_lock(&s->lock);
                s->closing = true;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
                for (size_t i = 0; i < s->n_writers; i++)
                        if (s->writers[i].started) {
                                pthread_join(s->writers[i].thread, NULL);
                                s->writers[i].started = false;
                        }
                dispatch_done(s);
        }
        sd_event_source_disable_unref(s->efd_source);
        sd_event_source_disable_unref(s->kick_source);
        sd_event_source_disable_unref(s->heartbeat_source);
        sd_event_source_disable_unref(s->listen_source);
        sd_event_source_disable_unref(s->relisten_source);
        if (s->efd >= 0)
                close(s->efd);
        if (s->rconn)
                s->be->disconnect(s->rconn);
        for (size_t i = 0; i < s->n_writers; i++)
                if (s->writers[i].conn)
                        s->be->disconnect(s->writers[i].conn);
        mem_free(s->writers);
        notify_set_unref(s->notify);
        mem_free(s->path);
        mem_free(s->schema);
        mem_free(s->instance);
        if (s->conninfo) {
                explicit_bzero(s->conninfo, strlen(s->conninfo));
                mem_free(s->conninfo);
        }
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
        if (store_set_notify(s, opts) < 0)
                log_warning("store: out of memory replacing the notification sinks; keeping the old ones");
}

bool store_writable(Store *s) {
        bool w;

        if (!s)
                return false;
        pthread_mutex_lock(&s->lock);
        w = s->writable && s->connected;
        pthread_mutex_unlock(&s->lock);
        return w;
}

void store_info(Store *s, StoreInfo *ret) {
        pthread_mutex_lock(&s->lock);
        *ret = (StoreInfo) {
                .backend = s->be->name,
                .instance = s->instance,
                .shared = s->be->shared,
                .connected = s->connected,
                .latency_usec = s->latency_usec,
                .lease_usec = s->lease_usec,
        };
        pthread_mutex_unlock(&s->lock);
}

void store_stats(Store *s, StoreStats *ret) {
        pthread_mutex_lock(&s->lock);
        *ret = (StoreStats) {
                .commits = s->commits,
                .failed_commits = s->failed_commits,
                .ops = s->ops,
                .pending = s->outstanding,
                .last_error = s->last_error,
                .writer_idle = s->idle_writers == s->n_writers && !s->pending,
        };
        for (size_t i = 0; i < s->n_writers; i++)
                if (s->be->round_trips && s->writers[i].conn)
                        ret->round_trips += s->be->round_trips(s->writers[i].conn);
        pthread_mutex_unlock(&s->lock);
}

/* --- reads on the loop ---------------------------------------------------- */

static int rq(Store *s, StoreStmtId id, Q *ret) {
        if (s->rconn_broken)
                return -ENOTCONN;
        return q_get(s->be, s->rconn, id, ret);
}

/* A read's error: a broken connection is noticed here. */
static int read_result(Store *s, int r) {
        if (r == -ENOTCONN)
                rconn_broke(s);
        return r;
}

static int read_count(Store *s, StoreStmtId id, const char *text, uint64_t value, uint64_t *ret) {
        Q q;
        int r;

        if ((r = rq(s, id, &q)) < 0 || (r = text ? q_text(&q, 1, text) : q_u64(&q, 1, value)) < 0)
                return read_result(s, r);
        return read_result(s, q_count(&q, ret));
}

int store_queue_counts(Store *s, StoreQueueCounts *ret) {
        static const ActionStatus which[] = {
                ACTION_STATUS_QUEUED, ACTION_STATUS_RUNNING, ACTION_STATUS_HELD,
                ACTION_STATUS_FAILED, ACTION_STATUS_DONE,    ACTION_STATUS_CANCELLED,
        };
        uint64_t v[ELEMENTSOF(which)] = {};
        int r;

        if (!s || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(which); i++)
                if ((r = read_count(s, R_COUNT_STATUS, store_action_status_to_string(which[i]), 0, &v[i])) < 0)
                        return r;
        *ret = (StoreQueueCounts) {
                .queued = v[0], .running = v[1], .held = v[2], .failed = v[3], .done = v[4], .cancelled = v[5],
        };
        return 0;
}

int store_suspensions_in_window(Store *s, uint64_t *ret) {
        uint64_t now = now_usec(CLOCK_REALTIME), window;

        if (!s || !ret)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        window = s->opts.window_usec;
        pthread_mutex_unlock(&s->lock);
        return read_count(s, R_CAP, NULL, window == 0 ? now : now > window ? now - window : 0, ret);
}

int store_notification_counts(Store *s, uint64_t *ret_pending, uint64_t *ret_failed) {
        int r;

        if (!s || !ret_pending || !ret_failed)
                return -EINVAL;
        if ((r = read_count(s, R_OUTBOX_COUNT, "pending", 0, ret_pending)) < 0)
                return r;
        return read_count(s, R_OUTBOX_COUNT, "failed", 0, ret_failed);
}

int store_list_actions(Store *s, int status, unsigned limit, StoreAction **ret, size_t *ret_n) {
        Q q;
        int r;

        if (!s || !ret || !ret_n || (status >= 0 && !store_action_status_to_string((ActionStatus) status)))
                return -EINVAL;
        if (limit == 0 || limit > LIMIT_STORE_READ_ROWS)
                limit = LIMIT_STORE_READ_ROWS;
        if ((r = rq(s, status < 0 ? R_LIST_ALL : R_LIST_STATUS, &q)) < 0 || (r = q_u64(&q, 1, limit)) < 0 ||
            (status >= 0 && (r = q_text(&q, 2, store_action_status_to_string((ActionStatus) status))) < 0))
                return read_result(s, r);
        return read_result(s, actions_collect(&q, limit, ret, ret_n));
}

int store_get_action(Store *s, const char *id, StoreAction **ret) {
        StoreAction *v = NULL;
        size_t n = 0;
        Q q;
        int r;

        if (!s || !id || !ret)
                return -EINVAL;
        if ((r = rq(s, R_GET, &q)) < 0 || (r = q_text(&q, 1, id)) < 0 || (r = actions_collect(&q, 1, &v, &n)) < 0)
                return read_result(s, r);
        if (n == 0) {
                mem_free(v);
                return -ENOENT;
        }
        *ret = v;
        return 0;
}

int store_list_notifications(Store *s, unsigned limit, StoreNotification **ret, size_t *ret_n) {
        Q q;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        if (limit == 0 || limit > LIMIT_STORE_READ_ROWS)
                limit = LIMIT_STORE_READ_ROWS;
        if ((r = rq(s, R_OUTBOX_LIST, &q)) < 0 || (r = q_u64(&q, 1, limit)) < 0)
                return read_result(s, r);
        return read_result(s, notifications_collect(&q, limit, ret, ret_n));
}

int store_instances(Store *s, char ***ret) {
        uint64_t now = now_usec(CLOCK_REALTIME);
        char **v = NULL;
        size_t n = 0, cap = 0;
        Q q;
        int r;

        if (!s || !ret)
                return -EINVAL;
        if ((r = rq(s, R_INSTANCES, &q)) < 0 || (r = q_u64(&q, 1, now > s->lease_usec ? now - s->lease_usec : 0)) < 0)
                return read_result(s, r);
        while ((r = q_step(&q)) > 0 && n < LIMIT_STORE_READ_ROWS) {
                if ((r = grow((void **) &v, &cap, n + 1, sizeof(*v))) < 0)
                        break;
                v[n + 1] = NULL;
                if ((r = col_strdup(&q, 0, &v[n])) < 0 || !v[n])
                        break;
                n++;
        }
        q_reset(&q);
        if (v)
                v[n] = NULL;
        if (r < 0) {
                strv_free(v);
                return read_result(s, r);
        }
        if (!v && !(v = mem_calloc(1, sizeof(*v))))
                return -ENOMEM;
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
                mem_free(e[i].instance);
        }
        mem_free(e);
}

int store_history(Store *s, const char *user, uint64_t since_usec, unsigned limit, StoreAuditEntry **ret,
                  size_t *ret_n) {
        _cleanup_free_ char *key = NULL;
        StoreAuditEntry *v = NULL;
        size_t n = 0, cap = 0;
        Q q;
        int r = 0;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        if (limit == 0 || limit > LIMIT_STORE_READ_ROWS)
                limit = LIMIT_STORE_READ_ROWS;
        if (user && (r = user_key_make(user, is_user_id(user) ? user : NULL, &key)) < 0)
                return r;
        if ((r = rq(s, user ? R_HISTORY_USER : R_HISTORY_ALL, &q)) < 0 || (r = q_u64(&q, 1, since_usec)) < 0 ||
            (r = q_u64(&q, 2, limit)) < 0 || (user && ((r = q_text(&q, 3, key)) < 0 || (r = q_text(&q, 4, user)) < 0)))
                return read_result(s, r);
        while (n < limit && (r = q_step(&q)) > 0) {
                StoreAuditEntry *x;

                if ((r = grow((void **) &v, &cap, n, sizeof(*v))) < 0)
                        break;
                x = &v[n++];
                *x = (StoreAuditEntry) { .seq = q_col_u64(&q, 0), .time_usec = q_col_u64(&q, 1) };
                if ((r = col_strdup(&q, 2, &x->kind)) < 0 || (r = col_strdup(&q, 3, &x->event_id)) < 0 ||
                    (r = col_strdup(&q, 4, &x->action_id)) < 0 || (r = col_strdup(&q, 5, &x->rule)) < 0 ||
                    (r = col_strdup(&q, 6, &x->user)) < 0 || (r = col_strdup(&q, 7, &x->from_status)) < 0 ||
                    (r = col_strdup(&q, 8, &x->to_status)) < 0 || (r = col_strdup(&q, 9, &x->detail)) < 0 ||
                    (r = col_strdup(&q, 10, &x->instance)) < 0)
                        break;
        }
        if (n >= limit && r > 0)
                r = 0;
        q_reset(&q);
        if (r < 0) {
                store_audit_free(v, n);
                return read_result(s, r);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* --- previews (remedyctl explain --live) ----------------------------------- */

/* The event this one is a redelivery of, as op_event() would find it:
 * 1 and its id in orig, or 0. */
static int preview_dedup(Store *s, const StoreEvent *ev, uint64_t window, char orig[static 33]) {
        Q q;
        int r;

        if ((r = rq(s, R_DEDUP, &q)) < 0 || (r = q_text(&q, 1, ev->source)) < 0 ||
            (r = q_text(&q, 2, ev->dedup_key)) < 0 ||
            (r = q_u64(&q, 3, ev->received_usec > window ? ev->received_usec - window : 0)) < 0)
                return r;
        r = q_step(&q);
        if (r > 0) {
                const char *id = q_col(&q, 0);

                if (id && strlen(id) < 33)
                        strcpy(orig, id);
                else
                        r = 0;
        }
        q_reset(&q);
        return r;
}

/* Whether an earlier action of the same preview would count against a
 * (cooldown) or the cap, as its inserted row would in the transaction. */
static int preview_earlier(const StoreEvent *ev, size_t i, const char *key, bool *ret_cooldown, uint64_t *ret_cap) {
        const StoreAction *a = &ev->actions[i];

        *ret_cooldown = false;
        *ret_cap = 0;
        for (size_t j = 0; j < i; j++) {
                const StoreAction *b = &ev->actions[j];
                _cleanup_free_ char *bkey = NULL;
                int r;

                if (b->action == ACTION_SUSPEND && b->status == ACTION_STATUS_QUEUED)
                        (*ret_cap)++;
                if (a->cooldown_usec == 0 || !key || strcmp(a->rule, b->rule) != 0 ||
                    (b->status != ACTION_STATUS_QUEUED && b->status != ACTION_STATUS_HELD &&
                     b->status != ACTION_STATUS_DRY_RUN))
                        continue;
                if ((r = user_key_make(b->user, b->user_id, &bkey)) < 0)
                        return r;
                if (bkey && strcmp(bkey, key) == 0)
                        *ret_cooldown = true;
        }
        return 0;
}

int store_preview_event(Store *s, StoreEvent *ev, bool *ret_duplicate) {
        uint64_t now = now_usec(CLOCK_REALTIME), window, in_window = 0;
        bool have_cap = false;
        StoreOptions o;
        int r;

        if (!s || !ev || !ret_duplicate)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        o = s->opts;
        pthread_mutex_unlock(&s->lock);
        window = o.dedup_window_usec ? o.dedup_window_usec : DEDUP_WINDOW_DEFAULT_USEC;
        if (ev->received_usec == 0)
                ev->received_usec = now;
        ev->id[0] = 0;

        if (ev->dedup_key) {
                char orig[33] = "";
                StoreAction *v = NULL;
                size_t n = 0;
                Q q;

                r = preview_dedup(s, ev, window, orig);
                if (r < 0)
                        return read_result(s, r);
                if (r > 0) {
                        if ((r = rq(s, R_EVENT_ACTIONS, &q)) < 0 || (r = q_text(&q, 1, orig)) < 0 ||
                            (r = actions_collect(&q, SIZE_MAX, &v, &n)) < 0)
                                return read_result(s, r);
                        store_actions_free(ev->actions, ev->n_actions);
                        ev->actions = v;
                        ev->n_actions = n;
                        strcpy(ev->id, orig);
                        *ret_duplicate = true;
                        return 0;
                }
        }

        for (size_t i = 0; i < ev->n_actions; i++) {
                StoreAction *a = &ev->actions[i];
                _cleanup_free_ char *key = NULL;
                bool cooldown = false, cap = false;
                uint64_t earlier_cap;
                Q q;

                if (a->status != ACTION_STATUS_QUEUED)
                        continue;
                if ((r = user_key_make(a->user, a->user_id, &key)) < 0 ||
                    (r = preview_earlier(ev, i, key, &cooldown, &earlier_cap)) < 0)
                        return r;
                if (!cooldown && a->cooldown_usec > 0 && key) {
                        if ((r = rq(s, R_COOLDOWN, &q)) < 0 || (r = cooldown_query(&q, a, key, now, &cooldown)) < 0)
                                return read_result(s, r);
                }
                if (safety_guard_needs_cap(a->status, cooldown, a->dry_run) && cap_applies(a, &o)) {
                        if (!have_cap) {
                                if ((r = read_count(s, R_CAP, NULL, cap_since(&o, now), &in_window)) < 0)
                                        return r;
                                have_cap = true;
                        }
                        cap = in_window + earlier_cap >= o.max_suspensions;
                }
                a->status = safety_guard_status(a->status, cooldown, a->dry_run, cap);
        }
        *ret_duplicate = false;
        return 0;
}
