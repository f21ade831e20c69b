/* The dedup index: which events of the dedup window had a given (source,
 * dedup key), in memory, for the store's writer thread.
 *
 * A B-tree index on the key in SQLite put every event on a random leaf
 * when keys are random (the body's SHA-256 of a source without event_id,
 * SIEMs' UUIDs): 2.7 WAL frames per event instead of 0.7, and ingest fell
 * from 63,000/s to 29,000/s (bench/RESULTS.md, fourth round). Here an event
 * costs a 24-byte slot: a keyed 64-bit hash (SipHash-2-4 with a key drawn
 * at start, so senders cannot aim at one chain), the events row's rowid
 * and its time. A hit is only a candidate: the caller reads that row and
 * compares source and key, which also makes entries of rolled-back
 * transactions harmless.
 *
 * Not thread-safe: one thread (the writer) owns it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct DedupIndex DedupIndex;

/* max_keys: entries kept at most; past it the oldest (lowest rowids) are
 * dropped down to 7/8 of it (the window shrinks, counted in
 * dedup_index_evicted()). */
int dedup_index_new(size_t max_keys, DedupIndex **ret);
DedupIndex *dedup_index_free(DedupIndex *d);

uint64_t dedup_index_hash(const DedupIndex *d, const char *source, const char *key);

/* Walks the entries with this hash received at or after since_usec:
 * start with *cursor = 0, returns true and the rowid for each. */
bool dedup_index_next(const DedupIndex *d, uint64_t hash, uint64_t since_usec, size_t *cursor,
                      int64_t *ret_rowid);

/* Adds an entry. Entries received before since_usec are dropped as the
 * table is replaced (it grows and shrinks so, a few slots per addition).
 * -ENOMEM: no room for it (no new table could be allocated); the index
 * is as it was, less what it dropped. */
int dedup_index_add(DedupIndex *d, uint64_t hash, int64_t rowid, uint64_t received_usec, uint64_t since_usec);

size_t dedup_index_size(const DedupIndex *d);          /* entries, dead ones included */
uint64_t dedup_index_evicted(const DedupIndex *d);     /* live entries dropped for max_keys */
/* Slots the last dedup_index_add() examined to grow, shrink or drop
 * entries: the table is replaced a few slots per addition, never at once. */
size_t dedup_index_steps(const DedupIndex *d);

/* SipHash-2-4 (Aumasson and Bernstein): in one call, or fed in pieces. */
uint64_t siphash24(const uint8_t key[static 16], const void *data, size_t len);

typedef struct SipHash {
        uint64_t v0, v1, v2, v3;
        uint64_t tail;   /* up to 7 bytes not yet compressed, little-endian */
        size_t n_tail;
        size_t len;
} SipHash;
void siphash24_init(SipHash *s, const uint8_t key[static 16]);
void siphash24_update(SipHash *s, const void *data, size_t len);
uint64_t siphash24_final(SipHash *s);
