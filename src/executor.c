/* The executor: drains due actions from the store through the 1Password
 * client. Every piece of in-flight work is a Job that records its outcome
 * back in the store; the store's timers are not ours: a single timer wakes
 * us for the earliest not_before the store reported. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "directory.h"
#include "executor.h"
#include "log.h"
#include "metrics.h"
#include "remedyd-limits.h"
#include "safety.h"
#include "store.h"
#include "users_api.h"
#include "util.h"

#define BACKOFF_BASE_USEC (2 * USEC_PER_SEC)

typedef struct Job Job;

struct Executor {
        sd_event *event;
        Store *store;
        UsersApi *api;
        Directory *directory;
        Metrics *metrics;
        const Config *config;

        sd_event_source *timer;   /* earliest not_before */
        sd_event_source *kick;    /* deferred claim */
        bool started, stopped;

        struct ClaimCtx *claim;   /* the outstanding claim, or NULL */
        bool kick_again;
        unsigned inflight;        /* claimed, outcome not yet committed */
        Job *jobs;
        uint64_t rng;
};

typedef struct ClaimCtx {
        Executor *x;              /* NULL once the executor is gone */
} ClaimCtx;

typedef enum RecordOp {
        RECORD_NONE,
        RECORD_RETRY,
        RECORD_FINISH,
        RECORD_RESOLVE,
} RecordOp;

struct Job {
        Executor *x;              /* NULL once the executor is gone */
        Job *prev, *next;
        StoreAction a;            /* owned copy of the claimed action */
        const char *user_id;      /* a.user_id, or a.user when it is an id */

        /* The outcome to record, kept until the store committed it: a
         * failed commit (disk full) is tried again, so that the action does
         * not stay "running" until the next start. */
        RecordOp record;
        bool rec_success;
        ActionStatus rec_status;
        uint64_t rec_not_before;
        char *rec_code, *rec_message, *rec_detail;
        unsigned rec_failures;
        sd_event_source *rec_timer;
};

static void claim(Executor *x);

static void job_unlink(Job *j) {
        Executor *x = j->x;

        if (!x)
                return;
        if (j->prev)
                j->prev->next = j->next;
        else
                x->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        job_unlink(j);
        store_action_done(&j->a);
        sd_event_source_disable_unref(j->rec_timer);
        mem_free(j->rec_code);
        mem_free(j->rec_message);
        mem_free(j->rec_detail);
        mem_free(j);
        return NULL;
}

static LogContext job_log_context(const Job *j) {
        return (LogContext) {
                .event_id = j->a.event_id,
                .rule = j->a.rule,
                .action_id = j->a.id,
                .user = j->a.user,
        };
}

static const char *kind_name(ActionKind k) {
        switch (k) {
        case ACTION_SUSPEND:
                return "suspend";
        case ACTION_REACTIVATE:
                return "reactivate";
        case ACTION_NOTIFY:
                return "notify";
        default:
                return "unknown";
        }
}

static uint64_t rng_next(Executor *x) {
        /* xorshift64*: jitter only, not security */
        x->rng ^= x->rng >> 12;
        x->rng ^= x->rng << 25;
        x->rng ^= x->rng >> 27;
        return x->rng * UINT64_C(2685821657736338717);
}

/* Exponential backoff with jitter in [d/2, d], capped, never sooner than
 * the server asked. */
static uint64_t backoff_usec(Executor *x, unsigned attempts, uint64_t retry_after_usec) {
        uint64_t d = BACKOFF_BASE_USEC;

        for (unsigned i = 0; i < attempts && d < LIMIT_API_BACKOFF_MAX_USEC; i++)
                d *= 2;
        if (d > LIMIT_API_BACKOFF_MAX_USEC)
                d = LIMIT_API_BACKOFF_MAX_USEC;
        d = d / 2 + rng_next(x) % (d / 2 + 1);
        if (retry_after_usec > d)
                d = retry_after_usec > LIMIT_API_BACKOFF_MAX_USEC ? LIMIT_API_BACKOFF_MAX_USEC : retry_after_usec;
        return d;
}

#define RECORD_RETRY_BASE_USEC (1 * USEC_PER_SEC)
#define RECORD_RETRY_MAX_USEC (30 * USEC_PER_SEC)

static void on_recorded(Store *s, int r, void *userdata);

static int job_record(Job *j) {
        Executor *x = j->x;

        switch (j->record) {
        case RECORD_RETRY:
                return store_retry_action(x->store, j->a.id, j->rec_not_before, j->rec_detail, on_recorded, j);
        case RECORD_FINISH:
                return store_finish_action(x->store, j->a.id, j->rec_success, j->rec_code, j->rec_message,
                                           j->rec_detail, on_recorded, j);
        case RECORD_RESOLVE:
                return store_resolve_action(x->store, j->a.id, j->rec_status, j->rec_detail, on_recorded, j);
        default:
                return -EINVAL;
        }
}

static int on_record_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Job *j = userdata;
        int r;

        j->rec_timer = sd_event_source_disable_unref(j->rec_timer);
        r = job_record(j);
        if (r < 0)
                on_recorded(j->x->store, r, j);
        return 0;
}

/* The store has recorded the job's outcome (or failed to): the job ends and
 * its slot frees up. A commit that failed for want of space or a writable
 * store is tried again with backoff, the slot kept. */
static void on_recorded(Store *s, int r, void *userdata) {
        Job *j = userdata;
        Executor *x = j->x;

        if (r < 0) {
                LogContext ctx = job_log_context(j);

                if (x && !x->stopped && j->record != RECORD_NONE && r != -ESHUTDOWN && r != -ENOENT &&
                    r != -EBUSY && r != -EINVAL) {
                        uint64_t d = RECORD_RETRY_BASE_USEC;

                        for (unsigned i = 0; i < j->rec_failures && d < RECORD_RETRY_MAX_USEC; i++)
                                d *= 2;
                        if (d > RECORD_RETRY_MAX_USEC)
                                d = RECORD_RETRY_MAX_USEC;
                        j->rec_failures++;
                        if (sd_event_add_time_relative(x->event, &j->rec_timer, CLOCK_MONOTONIC, d, 0,
                                                       on_record_timer, j) >= 0) {
                                log_full(LOG_ERR, r, &ctx, "cannot record the outcome of action %s: %m; retrying in %.0fs",
                                         j->a.id, (double) d / 1e6);
                                return;
                        }
                }
                /* The action stays running in the store; it is queued again on the
                 * next start (crash recovery), and the API calls are idempotent. */
                log_full(LOG_ERR, r, &ctx, "cannot record the outcome of action %s: %m", j->a.id);
        }
        job_free(j);
        if (!x)
                return;
        x->inflight--;
        executor_kick(x);
}

/* Keeps what to record in j (copies: the caller's strings are transient)
 * and submits it. Without memory for the copies it is still submitted once,
 * just not tried again. */
static void job_submit_record(Job *j, RecordOp op, const char *code, const char *message, const char *detail) {
        bool ok = true;
        int r;

        j->record = op;
        if (code && !(j->rec_code = mem_strdup(code)))
                ok = false;
        if (message && !(j->rec_message = mem_strdup(message)))
                ok = false;
        if (detail && !(j->rec_detail = mem_strdup(detail)))
                ok = false;
        if (!ok) {
                j->record = RECORD_NONE;
                switch (op) {
                case RECORD_RETRY:
                        r = store_retry_action(j->x->store, j->a.id, j->rec_not_before, detail, on_recorded, j);
                        break;
                case RECORD_FINISH:
                        r = store_finish_action(j->x->store, j->a.id, j->rec_success, code, message, detail,
                                                on_recorded, j);
                        break;
                default:
                        r = store_resolve_action(j->x->store, j->a.id, j->rec_status, detail, on_recorded, j);
                        break;
                }
        } else
                r = job_record(j);
        if (r < 0)
                on_recorded(j->x->store, r, j);
}

static void job_retry(Job *j, uint64_t retry_after_usec, const char *why) {
        Executor *x = j->x;
        uint64_t d = backoff_usec(x, j->a.attempts, retry_after_usec);
        LogContext ctx = job_log_context(j);

        log_full(LOG_WARNING, 0, &ctx, "%s of %s failed (%s), attempt %u, retrying in %.1fs", kind_name(j->a.action),
                 j->a.user ? j->a.user : "?", why, j->a.attempts + 1, (double) d / 1e6);
        j->rec_not_before = now_usec(CLOCK_REALTIME) + d;
        job_submit_record(j, RECORD_RETRY, NULL, NULL, why);
}

static void job_finish(Job *j, bool success, const char *api_code, const char *api_message, const char *detail) {
        Executor *x = j->x;

        metrics_action(x->metrics, kind_name(j->a.action), success ? "done" : "failed");
        j->rec_success = success;
        job_submit_record(j, RECORD_FINISH, api_code, api_message, detail);
}

static void job_resolve(Job *j, ActionStatus st, const char *detail) {
        Executor *x = j->x;

        metrics_action(x->metrics, kind_name(j->a.action), store_action_status_to_string(st));
        j->rec_status = st;
        job_submit_record(j, RECORD_RESOLVE, NULL, NULL, detail);
}

static void on_api(UsersApi *api, const UsersApiResult *res, void *userdata) {
        Job *j = userdata;
        Executor *x = j->x;
        LogContext ctx = job_log_context(j);
        char detail[128];

        if (!x) {
                job_free(j);
                return;
        }
        if (res->error >= 0 && res->http_status >= 200 && res->http_status < 300) {
                log_full(LOG_NOTICE, 0, &ctx, "%s of %s (%s) confirmed by 1Password", kind_name(j->a.action),
                         j->a.user ? j->a.user : j->user_id, j->user_id);
                if (j->a.action == ACTION_SUSPEND) {
                        uint64_t now = now_usec(CLOCK_REALTIME);
                        if (j->a.received_usec > 0 && now >= j->a.received_usec)
                                metrics_time_to_contain(x->metrics, (double) (now - j->a.received_usec) / 1e6);
                }
                job_finish(j, true, NULL, NULL, NULL);
                return;
        }

        if (res->http_status > 0)
                (void) snprintf(detail, sizeof(detail), "HTTP %ld", res->http_status);
        else
                (void) snprintf(detail, sizeof(detail), "%s", strerror(res->error < 0 ? -res->error : EIO));

        if (res->transient || res->error == 0) {
                job_retry(j, res->retry_after_usec, detail);
                return;
        }
        log_full(LOG_ERR, res->error, &ctx, "%s of %s failed permanently: %s (code %s: %s)", kind_name(j->a.action),
                 j->a.user ? j->a.user : j->user_id, detail, res->api_code ? res->api_code : "-",
                 res->api_message ? res->api_message : "-");
        job_finish(j, false, res->api_code, res->api_message, detail);
}

static void job_call(Job *j) {
        Executor *x = j->x;
        int r;

        if (j->a.action == ACTION_SUSPEND)
                r = users_api_suspend(x->api, j->user_id, /* opts= */ NULL, on_api, j);
        else
                r = users_api_reactivate(x->api, j->user_id, /* opts= */ NULL, on_api, j);
        if (r < 0)
                job_retry(j, 0, strerror(-r));
}

static void on_user_id_recorded(Store *s, int r, void *userdata) {
        if (r < 0)
                log_warning_errno(r, "cannot record a resolved user id: %m, ignoring");
}

static void on_resolved(Directory *d, DirectoryResult result, const char *user_id, void *userdata) {
        Job *j = userdata;
        Executor *x = j->x;
        int r;

        if (!x) {
                job_free(j);
                return;
        }
        switch (result) {
        case DIRECTORY_FOUND:
                if (!user_id || !is_user_id(user_id)) {
                        job_retry(j, 0, "directory returned no user id");
                        return;
                }
                j->a.user_id = mem_strdup(user_id);
                if (!j->a.user_id) {
                        job_retry(j, 0, "out of memory");
                        return;
                }
                j->user_id = j->a.user_id;
                r = store_set_user_id(x->store, j->a.id, j->user_id, on_user_id_recorded, NULL);
                if (r < 0)
                        log_warning_errno(r, "cannot record a resolved user id: %m, ignoring");
                if (safety_is_protected(x->config, j->a.user, j->user_id)) {
                        job_resolve(j, ACTION_STATUS_PROTECTED, "protected user (by id, after resolution)");
                        return;
                }
                job_call(j);
                return;
        case DIRECTORY_UNKNOWN:
                job_resolve(j, ACTION_STATUS_UNKNOWN_USER, "no 1Password user has this email");
                return;
        case DIRECTORY_AMBIGUOUS:
                job_resolve(j, ACTION_STATUS_AMBIGUOUS_USER, "several 1Password users have this email");
                return;
        default:
                job_retry(j, 0, "directory unavailable");
                return;
        }
}

static void job_start(Job *j) {
        Executor *x = j->x;
        int r;

        if (j->a.action == ACTION_NOTIFY) {
                LogContext ctx = job_log_context(j);
                log_full(LOG_NOTICE, 0, &ctx, "notify: %s%s%s", j->a.user ? j->a.user : "?",
                         j->a.reason ? ": " : "", j->a.reason ? j->a.reason : "");
                job_finish(j, true, NULL, NULL, NULL);
                return;
        }
        if (j->a.action != ACTION_SUSPEND && j->a.action != ACTION_REACTIVATE) {
                job_finish(j, false, NULL, NULL, "unknown action kind");
                return;
        }
        if (j->a.user_id)
                j->user_id = j->a.user_id;
        else if (j->a.user && is_user_id(j->a.user))
                j->user_id = j->a.user;
        if (j->user_id) {
                job_call(j);
                return;
        }
        if (!j->a.user) {
                job_resolve(j, ACTION_STATUS_UNRESOLVED, "no user");
                return;
        }
        r = directory_resolve(x->directory, j->a.user, on_resolved, j);
        if (r < 0)
                job_retry(j, 0, "directory unavailable");
}

static void arm_timer(Executor *x, uint64_t next_due) {
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (next_due == USEC_INFINITY || x->stopped) {
                (void) sd_event_source_set_enabled(x->timer, SD_EVENT_OFF);
                return;
        }
        if (next_due <= now) {
                if (x->inflight < LIMIT_QUEUE_INFLIGHT)
                        executor_kick(x);
                /* else: a finishing job kicks */
                (void) sd_event_source_set_enabled(x->timer, SD_EVENT_OFF);
                return;
        }
        /* not_before is CLOCK_REALTIME; a monotonic timer is immune to clock
         * steps and is re-armed after every claim anyway */
        (void) sd_event_source_set_time(x->timer, now_usec(CLOCK_MONOTONIC) + (next_due - now));
        (void) sd_event_source_set_enabled(x->timer, SD_EVENT_ONESHOT);
}

static void on_claimed(Store *s, int r, StoreAction *actions, size_t n, uint64_t next_due, void *userdata) {
        ClaimCtx *c = userdata;
        Executor *x = c->x;

        mem_free(c);
        if (!x)
                return;
        x->claim = NULL;
        if (r < 0) {
                log_error_errno(r, "cannot claim due actions: %m; retrying in 1s");
                arm_timer(x, now_usec(CLOCK_REALTIME) + USEC_PER_SEC);
                return;
        }
        Job *todo[LIMIT_QUEUE_INFLIGHT];
        size_t k = 0;

        for (size_t i = 0; i < n && k < ELEMENTSOF(todo); i++) {
                Job *j = mem_calloc(1, sizeof(*j));
                if (!j) {
                        /* stays running until the next start; see on_recorded() */
                        log_error_errno(-ENOMEM, "cannot start action %s: %m", actions[i].id);
                        continue;
                }
                j->x = x;
                /* take the members: the store frees what we leave */
                j->a = actions[i];
                actions[i] = (StoreAction) {};
                j->next = x->jobs;
                if (x->jobs)
                        x->jobs->prev = j;
                x->jobs = j;
                x->inflight++;
                todo[k++] = j;
        }
        /* started only after counting all of them */
        for (size_t i = 0; i < k; i++)
                job_start(todo[i]);
        if (x->kick_again) {
                x->kick_again = false;
                executor_kick(x);
        }
        arm_timer(x, next_due);
}

static void *mem_free_null(void *p) {
        mem_free(p);
        return NULL;
}

static void claim(Executor *x) {
        unsigned room;
        int r;

        if (!x->started || x->stopped)
                return;
        if (x->claim) {
                x->kick_again = true;
                return;
        }
        room = x->inflight < LIMIT_QUEUE_INFLIGHT ? LIMIT_QUEUE_INFLIGHT - x->inflight : 0;
        if (room == 0)
                return;
        x->claim = mem_calloc(1, sizeof(ClaimCtx));
        if (!x->claim) {
                arm_timer(x, now_usec(CLOCK_REALTIME) + USEC_PER_SEC);
                return;
        }
        x->claim->x = x;
        r = store_claim_due(x->store, /* now= */ 0, room, on_claimed, x->claim);
        if (r < 0) {
                x->claim = mem_free_null(x->claim); /* a failed submit never calls back */
                log_warning_errno(r, "cannot claim due actions: %m; retrying in 1s");
                arm_timer(x, now_usec(CLOCK_REALTIME) + USEC_PER_SEC);
        }
}

static int on_kick(sd_event_source *s, void *userdata) {
        claim(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        claim(userdata);
        return 0;
}

int executor_new(sd_event *e, Store *s, UsersApi *api, Directory *d, Metrics *m, Executor **ret) {
        Executor *x;
        int r;

        if (!e || !s || !ret)
                return -EINVAL;
        x = mem_calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->event = sd_event_ref(e);
        x->store = s;
        x->api = api;
        x->directory = d;
        x->metrics = m;
        x->rng = now_usec(CLOCK_MONOTONIC) ^ ((uint64_t) (uintptr_t) x << 16) ^ UINT64_C(0x9e3779b97f4a7c15);
        if (x->rng == 0)
                x->rng = 1;

        r = sd_event_add_time(e, &x->timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_timer, x);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(x->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(x->timer, "executor-timer");
        r = sd_event_add_defer(e, &x->kick, on_kick, x);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(x->kick, SD_EVENT_OFF);
        (void) sd_event_source_set_description(x->kick, "executor-kick");
        *ret = x;
        return 0;
fail:
        executor_free(x);
        return r;
}

Executor *executor_free(Executor *x) {
        if (!x)
                return NULL;
        /* A claim still out calls back later (the store always does, during
         * store_close() at the latest): detach it. A job still waiting is
         * waiting on the 1Password client or the directory, which drop their
         * callbacks when cancelled or freed: free it. Its action stays
         * running in the store and is queued again on the next start. */
        if (x->claim)
                x->claim->x = NULL;
        while (x->jobs) {
                Job *j = x->jobs;

                (void) users_api_cancel(x->api, j);
                job_free(j);
        }
        sd_event_source_disable_unref(x->timer);
        sd_event_source_disable_unref(x->kick);
        sd_event_unref(x->event);
        mem_free(x);
        return NULL;
}

void executor_set_config(Executor *x, const Config *c) {
        if (x)
                x->config = c;
}

int executor_start(Executor *x) {
        if (!x)
                return -EINVAL;
        if (!x->api)
                return -EINVAL;
        x->started = true;
        x->stopped = false;
        executor_kick(x);
        return 0;
}

void executor_kick(Executor *x) {
        if (!x || !x->started || x->stopped)
                return;
        (void) sd_event_source_set_enabled(x->kick, SD_EVENT_ONESHOT);
}

void executor_stop(Executor *x) {
        if (!x)
                return;
        x->stopped = true;
        (void) sd_event_source_set_enabled(x->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(x->kick, SD_EVENT_OFF);
}

unsigned executor_inflight(Executor *x) {
        return x ? x->inflight : 0;
}
