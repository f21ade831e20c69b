/* The in-memory dedup index of include/dedup.h, owned by the store's
 * SQLite writer thread. Calls libc only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "alloc.h"
#include "dedup.h"

#define DEDUP_MIN_SLOTS 1024u

/* --- SipHash-2-4 ------------------------------------------------------- */

static uint64_t rotl(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

static void sip_round(SipHash *s) {
        s->v0 += s->v1;
        s->v1 = rotl(s->v1, 13);
        s->v1 ^= s->v0;
        s->v0 = rotl(s->v0, 32);
        s->v2 += s->v3;
        s->v3 = rotl(s->v3, 16);
        s->v3 ^= s->v2;
        s->v0 += s->v3;
        s->v3 = rotl(s->v3, 21);
        s->v3 ^= s->v0;
        s->v2 += s->v1;
        s->v1 = rotl(s->v1, 17);
        s->v1 ^= s->v2;
        s->v2 = rotl(s->v2, 32);
}

static void sip_compress(SipHash *s, uint64_t m) {
        s->v3 ^= m;
        sip_round(s);
        sip_round(s);
        s->v0 ^= m;
}

void siphash24_init(SipHash *s, const uint8_t key[static 16]) {
        uint64_t k0 = le64(key), k1 = le64(key + 8);

        *s = (SipHash) {
                .v0 = k0 ^ UINT64_C(0x736f6d6570736575),
                .v1 = k1 ^ UINT64_C(0x646f72616e646f6d),
                .v2 = k0 ^ UINT64_C(0x6c7967656e657261),
                .v3 = k1 ^ UINT64_C(0x7465646279746573),
        };
}

void siphash24_update(SipHash *s, const void *data, size_t len) {
        const uint8_t *p = data;

        s->len += len;
        while (len > 0 && s->n_tail > 0) {
                s->tail |= (uint64_t) *p++ << (8 * s->n_tail);
                len--;
                if (++s->n_tail == 8) {
                        sip_compress(s, s->tail);
                        s->tail = 0;
                        s->n_tail = 0;
                }
        }
        for (; len >= 8; p += 8, len -= 8)
                sip_compress(s, le64(p));
        for (; len > 0; len--)
                s->tail |= (uint64_t) *p++ << (8 * s->n_tail++);
}

uint64_t siphash24_final(SipHash *s) {
        sip_compress(s, s->tail | (uint64_t) s->len << 56);
        s->v2 ^= 0xff;
        for (unsigned i = 0; i < 4; i++)
                sip_round(s);
        return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t siphash24(const uint8_t key[static 16], const void *data, size_t len) {
        SipHash s;

        siphash24_init(&s, key);
        siphash24_update(&s, data, len);
        return siphash24_final(&s);
}

/* --- the table ----------------------------------------------------------- */

/* Open addressing with linear probing; hash 0 marks an empty slot. Entries
 * are never removed one by one: the table is replaced by a new one that
 * keeps those still inside the window.
 *
 * Never in one go: a table of a few million entries takes 100-600 ms to
 * copy (fresh pages, a random write per entry), and the writer thread, with
 * every webhook waiting on its commit, would stall that long. So the work is
 * spread over the additions that follow, DEDUP_STEP slots per addition:
 *
 *   IDLE      one table.
 *   COUNTING  the table reached 3/4 of its slots: additions go on into it
 *             while the live entries are counted, to size the next table.
 *   DRAINING  adds and lookups go to the new table (cur); the old one is
 *             still searched, and each addition moves the next DEDUP_STEP
 *             slots of it (the live entries that are not past max_keys).
 *
 * A drain of n slots ends within n/DEDUP_STEP additions, long before the
 * new table (at least twice the live count) fills; if it would, the drain
 * is finished at once (a safety net, not the normal path). */
#define DEDUP_STEP 32u
#define DEDUP_RELEASE (16u * 1024u * 1024u)

typedef struct Slot {
        uint64_t hash;
        int64_t rowid;
        uint64_t received_usec;
} Slot;

typedef struct Table {
        Slot *slots;
        size_t n_slots; /* a power of 2 */
        size_t used;    /* non-empty slots (old: those not drained yet) */
} Table;

enum { IDLE, COUNTING, DRAINING };

struct DedupIndex {
        Table cur;
        Table old;              /* DRAINING: slots [0, pos) are done */
        int phase;
        size_t pos;             /* next slot to count (of cur) or to drain (of old) */
        size_t released;        /* DRAINING: bytes of old's whole pages given back */
        size_t live;            /* COUNTING: live entries seen plus additions since */
        int64_t floor_rowid;    /* DRAINING: entries at or below are dropped */
        uint64_t since_usec;    /* the latest window start given */
        int64_t newest_rowid;
        size_t max_keys;
        size_t steps;           /* slots examined by the last addition */
        uint64_t evicted;
        uint8_t key[16];
};

int dedup_index_new(size_t max_keys, DedupIndex **ret) {
        DedupIndex *d;

        if (max_keys < 8)
                return -EINVAL;
        d = mem_calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->max_keys = max_keys;
        d->newest_rowid = INT64_MIN;
        d->cur.n_slots = DEDUP_MIN_SLOTS;
        d->cur.slots = mem_calloc(d->cur.n_slots, sizeof(Slot));
        if (!d->cur.slots) {
                mem_free(d);
                return -ENOMEM;
        }
        if (getrandom(d->key, sizeof(d->key), 0) != (ssize_t) sizeof(d->key)) {
                int r = errno > 0 ? -errno : -EIO;

                dedup_index_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

DedupIndex *dedup_index_free(DedupIndex *d) {
        if (!d)
                return NULL;
        mem_free(d->cur.slots);
        mem_free(d->old.slots);
        explicit_bzero(d->key, sizeof(d->key));
        mem_free(d);
        return NULL;
}

uint64_t dedup_index_hash(const DedupIndex *d, const char *source, const char *key) {
        SipHash s;
        uint64_t h;

        /* Neither string holds a NUL: "source\0key" is unambiguous. */
        siphash24_init(&s, d->key);
        siphash24_update(&s, source, strlen(source) + 1);
        siphash24_update(&s, key, strlen(key));
        h = siphash24_final(&s);
        return h ? h : 1;
}

/* Walks t's chain for hash from probe *k on, over slots [from, n_slots):
 * the old table's slots below the drain position are gone (their pages
 * are given back), and every entry left sits in the part of its chain at
 * or above it. Probes run from the home slot, or from `from` when the home
 * is below it, to the end, then on from `from`. */
static bool table_next(const Table *t, size_t from, uint64_t hash, uint64_t since_usec, size_t *k,
                       int64_t *ret_rowid) {
        size_t home = hash & (t->n_slots - 1), start = home < from ? from : home;

        while (*k < t->n_slots - from) {
                size_t i = *k < t->n_slots - start ? start + *k : from + (*k - (t->n_slots - start));
                const Slot *sl = &t->slots[i];

                (*k)++;
                if (sl->hash == 0)
                        break;
                if (sl->hash == hash && sl->received_usec >= since_usec) {
                        *ret_rowid = sl->rowid;
                        return true;
                }
        }
        *k = t->n_slots;
        return false;
}

/* The cursor counts probes: [0, cur.n_slots) in cur, then the old table's. */
bool dedup_index_next(const DedupIndex *d, uint64_t hash, uint64_t since_usec, size_t *cursor,
                      int64_t *ret_rowid) {
        size_t k;

        if (*cursor < d->cur.n_slots) {
                k = *cursor;
                if (table_next(&d->cur, 0, hash, since_usec, &k, ret_rowid)) {
                        *cursor = k;
                        return true;
                }
                *cursor = d->cur.n_slots;
        }
        if (d->phase == DRAINING && *cursor - d->cur.n_slots < d->old.n_slots) {
                k = *cursor - d->cur.n_slots;
                if (table_next(&d->old, d->pos, hash, since_usec, &k, ret_rowid)) {
                        *cursor = d->cur.n_slots + k;
                        return true;
                }
        }
        *cursor = SIZE_MAX;
        return false;
}

static void slot_put(Table *t, const Slot *e) {
        size_t mask = t->n_slots - 1;

        for (size_t i = e->hash & mask;; i = (i + 1) & mask)
                if (t->slots[i].hash == 0) {
                        t->slots[i] = *e;
                        t->used++;
                        return;
                }
}

static size_t pow2_at_least(size_t n) {
        size_t p = DEDUP_MIN_SLOTS;

        while (p < n)
                p *= 2;
        return p;
}

static size_t entries(const DedupIndex *d) {
        return d->cur.used + (d->phase == DRAINING ? d->old.used : 0);
}

/* Gives the kernel back the whole pages of the old table below the drain
 * position, DEDUP_RELEASE bytes at a time, so that neither its memory nor
 * the cost of unmapping it all at the end stays for the last addition. */
static void release(DedupIndex *d) {
        uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
        uintptr_t base = ((uintptr_t) d->old.slots + page - 1) & ~(page - 1);
        uintptr_t upto = ((uintptr_t) (d->old.slots + d->pos)) & ~(page - 1);
        uintptr_t from = base + d->released;

        if (upto <= from || upto - from < DEDUP_RELEASE)
                return;
        (void) madvise((void *) from, upto - from, MADV_DONTNEED);
        d->released = upto - base;
}

/* Moves the next n slots of the old table; frees it after its last. */
static void drain(DedupIndex *d, size_t n) {
        size_t end = d->old.n_slots - d->pos < n ? d->old.n_slots : d->pos + n;

        d->steps += end - d->pos;
        for (; d->pos < end; d->pos++) {
                const Slot *e = &d->old.slots[d->pos];

                if (e->hash == 0)
                        continue;
                d->old.used--;
                if (e->received_usec < d->since_usec)
                        continue;
                if (e->rowid <= d->floor_rowid) {
                        d->evicted++;
                        continue;
                }
                slot_put(&d->cur, e);
        }
        release(d);
        if (d->pos == d->old.n_slots) {
                mem_free(d->old.slots);
                d->old = (Table) { .slots = NULL };
                d->phase = IDLE;
        }
}

/* Starts draining cur into a new table with room for twice expect entries;
 * floor_rowid: entries at or below it go. -ENOMEM leaves it as it was. */
static int drain_start(DedupIndex *d, size_t expect, int64_t floor_rowid) {
        Table t = { .n_slots = pow2_at_least(2 * (expect + 1)) };

        t.slots = mem_calloc(t.n_slots, sizeof(Slot));
        if (!t.slots)
                return -ENOMEM;
        d->old = d->cur;
        d->cur = t;
        d->phase = DRAINING;
        d->pos = 0;
        d->released = 0;
        d->floor_rowid = floor_rowid;
        return 0;
}

/* Counts the next n slots of cur; at its end, starts the drain. */
static int count(DedupIndex *d, size_t n) {
        size_t end = d->cur.n_slots - d->pos < n ? d->cur.n_slots : d->pos + n;

        d->steps += end - d->pos;
        for (; d->pos < end; d->pos++)
                if (d->cur.slots[d->pos].hash != 0 && d->cur.slots[d->pos].received_usec >= d->since_usec)
                        d->live++;
        if (d->pos < d->cur.n_slots)
                return 0;
        d->phase = IDLE;
        return drain_start(d, d->live, INT64_MIN);
}

/* Past max_keys: the newest 7/8 of max_keys stay, by rowid (rowids grow
 * in the order the events were stored: the oldest go). A drain under way
 * raises its floor; else one starts. */
static int cap(DedupIndex *d) {
        size_t keep = d->max_keys - d->max_keys / 8;
        int64_t floor_rowid;
        int r;

        if (keep > (size_t) INT64_MAX)
                keep = (size_t) INT64_MAX;
        /* rowids of INT64_MIN + keep or below: nothing to drop by rowid */
        floor_rowid = d->newest_rowid < INT64_MIN + (int64_t) keep ? INT64_MIN : d->newest_rowid - (int64_t) keep;

        if (d->phase == DRAINING && d->floor_rowid < floor_rowid)
                d->floor_rowid = floor_rowid;
        /* never more than max_keys: move on until enough went */
        while (d->phase == DRAINING && entries(d) >= d->max_keys)
                drain(d, DEDUP_STEP);
        if (entries(d) < d->max_keys)
                return 0;
        d->phase = IDLE;
        r = drain_start(d, keep, floor_rowid);
        if (r < 0)
                return r;
        while (d->phase == DRAINING && entries(d) >= d->max_keys)
                drain(d, DEDUP_STEP);
        return 0;
}

int dedup_index_add(DedupIndex *d, uint64_t hash, int64_t rowid, uint64_t received_usec, uint64_t since_usec) {
        Slot e = { .hash = hash ? hash : 1, .rowid = rowid, .received_usec = received_usec };
        int r = 0;

        d->steps = 0;
        if (since_usec > d->since_usec)
                d->since_usec = since_usec;
        if (d->phase == DRAINING)
                drain(d, DEDUP_STEP);
        else if (d->phase == COUNTING)
                r = count(d, DEDUP_STEP);
        if (r >= 0 && entries(d) >= d->max_keys)
                r = cap(d);
        else if (r >= 0 && d->phase == IDLE && (d->cur.used + 1) * 4 > d->cur.n_slots * 3) {
                d->phase = COUNTING;
                d->pos = 0;
                d->live = 0;
        }
        if (r >= 0 && (d->cur.used + 1) * 8 > d->cur.n_slots * 7) {
                /* The safety net: whatever is under way, at once (a count
                 * ends by starting a drain). */
                if (d->phase == COUNTING)
                        r = count(d, SIZE_MAX);
                if (r >= 0 && d->phase == DRAINING)
                        drain(d, SIZE_MAX);
        }
        /* No new table (count() and cap() leave the phase IDLE then): add
         * to this one while it has room. */
        if (r < 0 && ((d->cur.used + 1) * 8 > d->cur.n_slots * 7 || entries(d) >= d->max_keys))
                return r;
        slot_put(&d->cur, &e);
        if (d->phase == COUNTING)
                d->live++;
        if (rowid > d->newest_rowid)
                d->newest_rowid = rowid;
        return 0;
}

size_t dedup_index_size(const DedupIndex *d) {
        return entries(d);
}

uint64_t dedup_index_evicted(const DedupIndex *d) {
        return d->evicted;
}

size_t dedup_index_steps(const DedupIndex *d) {
        return d->steps;
}
