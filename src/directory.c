/* The email -> user id index: see include/directory.h.
 *
 * Memory: one open-addressing table of 12-byte slots (hash, email offset,
 * id offset) at a load factor of at most 1/2, and one string arena holding
 * every lower-cased email and id, NUL-terminated. No per-user allocation.
 * A refresh builds a second index and swaps it in only when every page
 * arrived, so a failed refresh keeps the old one. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "directory.h"
#include "log.h"
#include "remedyd-limits.h"
#include "users_api.h"
#include "util.h"

#define DIRECTORY_PAGE_SIZE 1000u
#define DIRECTORY_MISS_INTERVAL_USEC (60ULL * USEC_PER_SEC)
#define DIRECTORY_RETRY_USEC (60ULL * USEC_PER_SEC)
#define DIRECTORY_EMAIL_MAX 320u
#define SLOT_EMPTY UINT32_MAX
#define ID_AMBIGUOUS UINT32_MAX

typedef struct DirSlot {
        uint32_t hash;
        uint32_t email;         /* arena offset, SLOT_EMPTY if free */
        uint32_t id;            /* arena offset, ID_AMBIGUOUS if two users share the email */
} DirSlot;

typedef struct DirIndex {
        DirSlot *slots;
        size_t n_slots;         /* power of two */
        size_t n_emails;
        size_t n_users;
        char *arena;
        size_t arena_len, arena_cap;
} DirIndex;

typedef struct DirWaiter DirWaiter;
struct DirWaiter {
        DirWaiter *next;
        char *email;
        DirectoryResolveCallback cb;
        void *userdata;
        bool ready;             /* result decided; waiting for the deferred call */
        DirectoryResult result;
};

struct Directory {
        sd_event *event;
        UsersApi *api;
        uint64_t refresh_usec;

        DirIndex *index;
        uint64_t synced_mono, synced_real;

        DirIndex *building;
        bool syncing;
        bool started;
        unsigned pages;
        uint64_t last_start_mono;

        sd_event_source *timer;
        sd_event_source *defer;
        DirWaiter *waiters;
        bool dispatching, dead;
        char last_error[256];
};

static uint32_t hash_str(const char *s) {
        uint32_t h = 2166136261u;

        for (; *s; s++) {
                h ^= (unsigned char) *s;
                h *= 16777619u;
        }
        return h;
}

static DirIndex *index_free(DirIndex *x) {
        if (!x)
                return NULL;
        mem_free(x->slots);
        mem_free(x->arena);
        mem_free(x);
        return NULL;
}

static int index_new(DirIndex **ret) {
        DirIndex *x = mem_calloc(1, sizeof(*x));

        if (!x)
                return -ENOMEM;
        x->n_slots = 1024;
        x->slots = mem_reallocarray(NULL, x->n_slots, sizeof(DirSlot));
        if (!x->slots) {
                mem_free(x);
                return -ENOMEM;
        }
        memset(x->slots, 0xff, x->n_slots * sizeof(DirSlot));
        *ret = x;
        return 0;
}

static int arena_add(DirIndex *x, const char *s, size_t n, uint32_t *ret) {
        if (x->arena_len + n + 1 > UINT32_MAX - 1)
                return -E2BIG;
        if (x->arena_len + n + 1 > x->arena_cap) {
                size_t cap = x->arena_cap ? x->arena_cap : 64 * 1024;
                char *a;

                while (cap < x->arena_len + n + 1)
                        cap *= 2;
                a = mem_reallocarray(x->arena, cap, 1);
                if (!a)
                        return -ENOMEM;
                x->arena = a;
                x->arena_cap = cap;
        }
        memcpy(x->arena + x->arena_len, s, n);
        x->arena[x->arena_len + n] = 0;
        *ret = (uint32_t) x->arena_len;
        x->arena_len += n + 1;
        return 0;
}

static DirSlot *index_find(const DirIndex *x, const char *email, uint32_t h) {
        size_t mask = x->n_slots - 1;

        for (size_t i = h & mask;; i = (i + 1) & mask) {
                DirSlot *s = &x->slots[i];

                if (s->email == SLOT_EMPTY)
                        return s;
                if (s->hash == h && strcmp(x->arena + s->email, email) == 0)
                        return s;
        }
}

static int index_grow(DirIndex *x) {
        size_t n = x->n_slots * 2;
        DirSlot *old = x->slots, *slots;

        slots = mem_reallocarray(NULL, n, sizeof(DirSlot));
        if (!slots)
                return -ENOMEM;
        memset(slots, 0xff, n * sizeof(DirSlot));
        x->slots = slots;
        x->n_slots = n;
        for (size_t i = 0; i < n / 2; i++) {
                if (old[i].email == SLOT_EMPTY)
                        continue;
                *index_find(x, x->arena + old[i].email, old[i].hash) = old[i];
        }
        mem_free(old);
        return 0;
}

/* Trimmed, lower-case copy of an email into buf; 0, or -EINVAL if empty or
 * too long. */
static int email_normalize(const char *email, char buf[static DIRECTORY_EMAIL_MAX + 1], size_t *ret_len) {
        const char *s = email, *e;
        size_t n;

        if (!email)
                return -EINVAL;
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
                e--;
        n = (size_t) (e - s);
        if (n == 0 || n > DIRECTORY_EMAIL_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char) (s[i] - 'A' + 'a') : s[i];
        buf[n] = 0;
        *ret_len = n;
        return 0;
}

static int index_add(DirIndex *x, const char *email, const char *id) {
        char buf[DIRECTORY_EMAIL_MAX + 1];
        uint32_t h, eo, io;
        DirSlot *s;
        size_t n;
        int r;

        if (!id || *id == 0 || email_normalize(email, buf, &n) < 0)
                return 0;   /* nothing to index */
        if (x->n_users >= LIMIT_DIRECTORY_USERS)
                return -ENOBUFS;
        if ((x->n_emails + 1) * 2 > x->n_slots) {
                r = index_grow(x);
                if (r < 0)
                        return r;
        }
        h = hash_str(buf);
        s = index_find(x, buf, h);
        x->n_users++;
        if (s->email != SLOT_EMPTY) {
                if (s->id != ID_AMBIGUOUS && strcmp(x->arena + s->id, id) != 0)
                        s->id = ID_AMBIGUOUS;
                return 0;
        }
        r = arena_add(x, buf, n, &eo);
        if (r < 0)
                return r;
        r = arena_add(x, id, strlen(id), &io);
        if (r < 0)
                return r;
        *s = (DirSlot) { .hash = h, .email = eo, .id = io };
        x->n_emails++;
        return 0;
}

/* FOUND (with *ret_id), AMBIGUOUS, or UNKNOWN when not in x. */
static DirectoryResult index_lookup(const DirIndex *x, const char *email, const char **ret_id) {
        char buf[DIRECTORY_EMAIL_MAX + 1];
        DirSlot *s;
        size_t n;

        if (!x || email_normalize(email, buf, &n) < 0)
                return DIRECTORY_UNKNOWN;
        s = index_find(x, buf, hash_str(buf));
        if (s->email == SLOT_EMPTY)
                return DIRECTORY_UNKNOWN;
        if (s->id == ID_AMBIGUOUS)
                return DIRECTORY_AMBIGUOUS;
        if (ret_id)
                *ret_id = x->arena + s->id;
        return DIRECTORY_FOUND;
}

static void schedule_timer(Directory *d, uint64_t delay);
static void on_page(UsersApi *api, const UsersApiResult *res, void *userdata);

static void set_error(Directory *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(Directory *d, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(d->last_error, sizeof(d->last_error), fmt, ap);
        va_end(ap);
}

static int on_defer(sd_event_source *s, void *userdata) {
        Directory *d = userdata;
        DirWaiter **p = &d->waiters;

        (void) sd_event_source_set_enabled(d->defer, SD_EVENT_OFF);
        d->dispatching = true;
        while (!d->dead && *p) {
                DirWaiter *w = *p;
                const char *id = NULL;
                DirectoryResult res;

                if (!w->ready) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                res = w->result;
                if (res == DIRECTORY_FOUND && index_lookup(d->index, w->email, &id) != DIRECTORY_FOUND)
                        res = DIRECTORY_PENDING;   /* cannot happen: the index changes only on sync completion */
                w->cb(d, res, id, w->userdata);
                mem_free(w->email);
                mem_free(w);
                /* The callback may have added waiters at the head: rescan. */
                p = &d->waiters;
        }
        d->dispatching = false;
        if (d->dead)
                directory_free(d);
        return 0;
}

static void waiters_kick(Directory *d) {
        if (sd_event_source_set_enabled(d->defer, SD_EVENT_ONESHOT) < 0)
                log_error("directory: cannot schedule resolution callbacks");
}

/* Decides every waiting resolution after a sync finished (ok or not). */
static void waiters_settle(Directory *d, bool ok) {
        for (DirWaiter *w = d->waiters; w; w = w->next) {
                if (w->ready)
                        continue;
                w->result = index_lookup(d->index, w->email, NULL);
                if (w->result == DIRECTORY_UNKNOWN && !ok)
                        w->result = DIRECTORY_PENDING;
                w->ready = true;
        }
        waiters_kick(d);
}

static int sync_page(Directory *d, const char *page_token) {
        return users_api_list(d->api, /* filter= */ NULL, DIRECTORY_PAGE_SIZE, page_token, /* opts= */ NULL, on_page,
                              d);
}

static int sync_start(Directory *d) {
        int r;

        if (d->syncing)
                return 0;
        r = index_new(&d->building);
        if (r < 0)
                return r;
        d->pages = 0;
        r = sync_page(d, NULL);
        if (r < 0) {
                d->building = index_free(d->building);
                return r;
        }
        d->syncing = true;
        d->last_start_mono = now_usec(CLOCK_MONOTONIC);
        log_debug("directory: sync started");
        return 0;
}

static void sync_finish(Directory *d, int error) {
        d->syncing = false;
        if (error < 0) {
                d->building = index_free(d->building);
                set_error(d, "directory sync failed: %s", strerror(-error));
                log_warning_errno(error, "directory: sync failed, keeping the previous index (%zu users): %m",
                                  d->index ? d->index->n_users : 0);
                schedule_timer(d, d->refresh_usec < DIRECTORY_RETRY_USEC ? d->refresh_usec : DIRECTORY_RETRY_USEC);
                waiters_settle(d, false);
                return;
        }
        /* The arena doubled while growing: give the slack back. */
        if (d->building->arena_len > 0 && d->building->arena_len < d->building->arena_cap) {
                char *a = mem_reallocarray(d->building->arena, d->building->arena_len, 1);

                if (a) {
                        d->building->arena = a;
                        d->building->arena_cap = d->building->arena_len;
                }
        }
        index_free(d->index);
        d->index = TAKE_PTR(d->building);
        d->synced_mono = now_usec(CLOCK_MONOTONIC);
        d->synced_real = now_usec(CLOCK_REALTIME);
        d->last_error[0] = 0;
        log_info("directory: synced %zu users (%zu distinct emails) in %u pages", d->index->n_users,
                 d->index->n_emails, d->pages);
        schedule_timer(d, d->refresh_usec);
        waiters_settle(d, true);
}

static void on_page(UsersApi *api, const UsersApiResult *res, void *userdata) {
        Directory *d = userdata;
        int r = 0;

        if (res->error < 0) {
                sync_finish(d, res->error);
                return;
        }
        d->pages++;
        for (size_t i = 0; i < res->n_users && r >= 0; i++)
                r = index_add(d->building, res->users[i].email, res->users[i].id);
        if (r >= 0 && res->next_page_token) {
                if (d->pages >= LIMIT_DIRECTORY_PAGES)
                        r = -ENOBUFS;
                else
                        r = sync_page(d, res->next_page_token);
                if (r >= 0)
                        return;
        }
        sync_finish(d, r);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Directory *d = userdata;
        int r;

        r = sync_start(d);
        if (r < 0) {
                set_error(d, "cannot start a directory sync: %s", strerror(-r));
                schedule_timer(d, DIRECTORY_RETRY_USEC);
        }
        return 0;
}

static void schedule_timer(Directory *d, uint64_t delay) {
        uint64_t at = now_usec(CLOCK_MONOTONIC) + delay;
        int r;

        if (!d->started)
                return;
        if (d->timer) {
                r = sd_event_source_set_time(d->timer, at);
                if (r >= 0)
                        r = sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
        } else {
                r = sd_event_add_time(d->event, &d->timer, CLOCK_MONOTONIC, at, USEC_PER_SEC, on_timer, d);
                if (r >= 0)
                        (void) sd_event_source_set_description(d->timer, "directory-refresh");
        }
        if (r < 0)
                log_error_errno(r, "directory: cannot arm the refresh timer: %m");
}

int directory_new(sd_event *e, UsersApi *api, uint64_t refresh_usec, Directory **ret) {
        Directory *d;
        int r;

        if (!e || !api || !ret)
                return -EINVAL;
        d = mem_calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->event = sd_event_ref(e);
        d->api = api;
        d->refresh_usec = refresh_usec > 0 ? refresh_usec : 600 * USEC_PER_SEC;
        r = sd_event_add_defer(e, &d->defer, on_defer, d);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->defer, SD_EVENT_OFF);
        if (r < 0) {
                directory_free(d);
                return r;
        }
        (void) sd_event_source_set_description(d->defer, "directory-resolve");
        *ret = d;
        return 0;
}

Directory *directory_free(Directory *d) {
        if (!d)
                return NULL;
        if (d->dispatching) {
                d->dead = true;
                return NULL;
        }
        (void) users_api_cancel(d->api, d);
        while (d->waiters) {
                DirWaiter *w = d->waiters;

                d->waiters = w->next;
                mem_free(w->email);
                mem_free(w);
        }
        d->timer = sd_event_source_disable_unref(d->timer);
        d->defer = sd_event_source_disable_unref(d->defer);
        index_free(d->index);
        index_free(d->building);
        sd_event_unref(d->event);
        mem_free(d);
        return NULL;
}

void directory_set_refresh(Directory *d, uint64_t refresh_usec) {
        if (!d || refresh_usec == 0 || refresh_usec == d->refresh_usec)
                return;
        d->refresh_usec = refresh_usec;
        if (d->started && !d->syncing && d->index) {
                uint64_t due = d->synced_mono + refresh_usec, now = now_usec(CLOCK_MONOTONIC);

                schedule_timer(d, due > now ? due - now : 0);
        }
}

int directory_start(Directory *d) {
        int r;

        if (!d)
                return -EINVAL;
        d->started = true;
        r = sync_start(d);
        if (r < 0) {
                set_error(d, "cannot start a directory sync: %s", strerror(-r));
                schedule_timer(d, DIRECTORY_RETRY_USEC);
        }
        return r;
}

static bool synced_recently(Directory *d, uint64_t now) {
        return d->index && d->synced_mono > 0 && now - d->synced_mono < DIRECTORY_MISS_INTERVAL_USEC;
}

static bool miss_refresh_allowed(Directory *d, uint64_t now) {
        return !d->syncing && (d->last_start_mono == 0 || now - d->last_start_mono >= DIRECTORY_MISS_INTERVAL_USEC);
}

static DirectoryResult lookup(Directory *d, const char *email, const char **ret_user_id, bool may_refresh) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        DirectoryResult res;

        if (!d)
                return DIRECTORY_PENDING;
        res = index_lookup(d->index, email, ret_user_id);
        if (res != DIRECTORY_UNKNOWN)
                return res;
        if (synced_recently(d, now))
                return DIRECTORY_UNKNOWN;
        if (may_refresh && miss_refresh_allowed(d, now) && sync_start(d) < 0)
                log_warning("directory: cannot start a miss-driven refresh, ignoring");
        return DIRECTORY_PENDING;
}

DirectoryResult directory_lookup(Directory *d, const char *email, const char **ret_user_id) {
        return lookup(d, email, ret_user_id, true);
}

DirectoryResult directory_peek(Directory *d, const char *email, const char **ret_user_id) {
        return lookup(d, email, ret_user_id, false);
}

int directory_resolve(Directory *d, const char *email, DirectoryResolveCallback cb, void *userdata) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        DirWaiter *w;
        int r;

        if (!d || !email || !cb)
                return -EINVAL;
        w = mem_calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->email = mem_strdup(email);
        if (!w->email) {
                mem_free(w);
                return -ENOMEM;
        }
        w->cb = cb;
        w->userdata = userdata;
        w->result = index_lookup(d->index, email, NULL);
        w->ready = true;
        if (w->result == DIRECTORY_UNKNOWN) {
                if (d->syncing)
                        w->ready = false;
                else if (synced_recently(d, now))
                        w->result = DIRECTORY_UNKNOWN;
                else if (miss_refresh_allowed(d, now)) {
                        r = sync_start(d);
                        if (r < 0)
                                w->result = DIRECTORY_PENDING;
                        else
                                w->ready = false;
                } else
                        w->result = DIRECTORY_PENDING;
        }
        w->next = d->waiters;
        d->waiters = w;
        if (w->ready)
                waiters_kick(d);
        return 0;
}

void directory_stats(Directory *d, DirectoryStats *ret) {
        *ret = (DirectoryStats) {};
        if (!d)
                return;
        ret->users = d->index ? d->index->n_users : 0;
        ret->emails = d->index ? d->index->n_emails : 0;
        ret->index_bytes = d->index ? d->index->n_slots * sizeof(DirSlot) + d->index->arena_cap : 0;
        ret->synced_usec = d->synced_real;
        ret->syncing = d->syncing;
        (void) snprintf(ret->last_error, sizeof(ret->last_error), "%s", d->last_error);
}
