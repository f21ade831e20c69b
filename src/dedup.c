/* The in-memory dedup index of include/dedup.h, owned by the store's
 * SQLite writer thread. Calls libc only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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
 * are never removed one by one: a rebuild (when 3/4 of the slots are used)
 * keeps those still inside the window. */
typedef struct Slot {
        uint64_t hash;
        int64_t rowid;
        uint64_t received_usec;
} Slot;

struct DedupIndex {
        Slot *slots;
        size_t n_slots; /* a power of 2 */
        size_t used;
        size_t max_keys;
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
        d->n_slots = DEDUP_MIN_SLOTS;
        d->slots = mem_calloc(d->n_slots, sizeof(Slot));
        if (!d->slots) {
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
        mem_free(d->slots);
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

bool dedup_index_next(const DedupIndex *d, uint64_t hash, uint64_t since_usec, size_t *cursor,
                      int64_t *ret_rowid) {
        size_t mask = d->n_slots - 1;

        while (*cursor < d->n_slots) {
                const Slot *sl = &d->slots[(hash + *cursor) & mask];

                (*cursor)++;
                if (sl->hash == 0)
                        break;
                if (sl->hash == hash && sl->received_usec >= since_usec) {
                        *ret_rowid = sl->rowid;
                        return true;
                }
        }
        *cursor = d->n_slots;
        return false;
}

static void slot_put(Slot *slots, size_t n_slots, const Slot *e) {
        size_t mask = n_slots - 1;

        for (size_t i = e->hash & mask;; i = (i + 1) & mask)
                if (slots[i].hash == 0) {
                        slots[i] = *e;
                        return;
                }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* The time from which entries are kept so that at most keep of the live
 * ones remain (the oldest go first); since_usec when they all fit. */
static int keep_from(const DedupIndex *d, size_t live, size_t keep, uint64_t since_usec, uint64_t *ret) {
        uint64_t *t;
        size_t n = 0;

        if (live <= keep) {
                *ret = since_usec;
                return 0;
        }
        t = mem_reallocarray(NULL, live, sizeof(*t));
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_slots; i++)
                if (d->slots[i].hash != 0 && d->slots[i].received_usec >= since_usec)
                        t[n++] = d->slots[i].received_usec;
        qsort(t, n, sizeof(*t), cmp_u64);
        *ret = t[n - keep];
        mem_free(t);
        return 0;
}

static size_t pow2_at_least(size_t n) {
        size_t p = DEDUP_MIN_SLOTS;

        while (p < n)
                p *= 2;
        return p;
}

/* Rebuilds the table without the entries from before since_usec, with
 * room for one more entry. Past max_keys it keeps the newest 7/8 of it, so
 * that the next rebuild is max_keys/8 additions away. */
static int rebuild(DedupIndex *d, uint64_t since_usec) {
        size_t live = 0, keep, kept = 0, n_slots, quota_at_floor = 0;
        uint64_t floor_usec;
        Slot *slots;
        int r;

        for (size_t i = 0; i < d->n_slots; i++)
                if (d->slots[i].hash != 0 && d->slots[i].received_usec >= since_usec)
                        live++;
        keep = live < d->max_keys ? live : d->max_keys - d->max_keys / 8 - 1;
        r = keep_from(d, live, keep, since_usec, &floor_usec);
        if (r < 0)
                return r;
        if (keep < live) {
                /* Entries at floor_usec itself fill what is left of keep. */
                quota_at_floor = keep;
                for (size_t i = 0; i < d->n_slots; i++)
                        if (d->slots[i].hash != 0 && d->slots[i].received_usec > floor_usec)
                                quota_at_floor--;
        }

        n_slots = pow2_at_least(2 * (keep + 1));
        slots = mem_calloc(n_slots, sizeof(Slot));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_slots; i++) {
                const Slot *e = &d->slots[i];

                if (e->hash == 0 || e->received_usec < floor_usec)
                        continue;
                if (keep < live && e->received_usec == floor_usec) {
                        if (quota_at_floor == 0)
                                continue;
                        quota_at_floor--;
                }
                slot_put(slots, n_slots, e);
                kept++;
        }
        mem_free(d->slots);
        d->slots = slots;
        d->n_slots = n_slots;
        d->used = kept;
        d->evicted += live - kept;
        return 0;
}

int dedup_index_add(DedupIndex *d, uint64_t hash, int64_t rowid, uint64_t received_usec, uint64_t since_usec) {
        Slot e = { .hash = hash ? hash : 1, .rowid = rowid, .received_usec = received_usec };

        if ((d->used + 1) * 4 > d->n_slots * 3 || d->used >= d->max_keys) {
                int r = rebuild(d, since_usec);
                if (r < 0)
                        return r;
        }
        slot_put(d->slots, d->n_slots, &e);
        d->used++;
        return 0;
}

size_t dedup_index_size(const DedupIndex *d) {
        return d->used;
}

uint64_t dedup_index_evicted(const DedupIndex *d) {
        return d->evicted;
}
