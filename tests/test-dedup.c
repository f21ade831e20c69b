#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dedup.h"
#include "harness.h"

/* The reference vectors (SipHash paper, appendix A; the reference
 * implementation's vectors.h): key 00..0f, messages 00.. of length 0..15. */
TEST(siphash_vectors) {
        static const uint64_t want[16] = {
                UINT64_C(0x726fdb47dd0e0e31), UINT64_C(0x74f839c593dc67fd), UINT64_C(0x0d6c8009d9a94f5a),
                UINT64_C(0x85676696d7fb7e2d), UINT64_C(0xcf2794e0277187b7), UINT64_C(0x18765564cd99a68d),
                UINT64_C(0xcbc9466e58fee3ce), UINT64_C(0xab0200f58b01d137), UINT64_C(0x93f5f5799a932462),
                UINT64_C(0x9e0082df0ba9e4b0), UINT64_C(0x7a5dbbc594ddb9f3), UINT64_C(0xf4b32f46226bada7),
                UINT64_C(0x751e8fbc860ee5fb), UINT64_C(0x14ea5627c0843d90), UINT64_C(0xf723ca908e7af2ee),
                UINT64_C(0xa129ca6149be45e5),
        };
        uint8_t key[16], msg[16];

        for (unsigned i = 0; i < 16; i++)
                key[i] = msg[i] = (uint8_t) i;
        for (unsigned n = 0; n < 16; n++)
                ASSERT_EQ(siphash24(key, msg, n), want[n]);
        /* fed in two and three pieces, cut anywhere */
        for (unsigned n = 0; n < 16; n++)
                for (unsigned a = 0; a <= n; a++)
                        for (unsigned b = a; b <= n; b++) {
                                SipHash s;

                                siphash24_init(&s, key);
                                siphash24_update(&s, msg, a);
                                siphash24_update(&s, msg + a, b - a);
                                siphash24_update(&s, msg + b, n - b);
                                ASSERT_EQ(siphash24_final(&s), want[n]);
                        }
}

/* Walks h's candidates from the start (time since): exactly the rowids
 * in want, in that order, then no more. */
static void assert_candidates(DedupIndex *d, uint64_t h, uint64_t since, const int64_t *want, size_t n) {
        size_t cursor = 0;
        int64_t rowid;

        for (size_t i = 0; i < n; i++) {
                ASSERT_TRUE(dedup_index_next(d, h, since, &cursor, &rowid));
                ASSERT_EQ(rowid, want[i]);
        }
        ASSERT_FALSE(dedup_index_next(d, h, since, &cursor, &rowid));
}

TEST(lookup) {
        DedupIndex *d;
        uint64_t h1, h2;

        ASSERT_OK(dedup_index_new(1000, &d));
        h1 = dedup_index_hash(d, "splunk", "id:1");
        h2 = dedup_index_hash(d, "splunk", "id:2");
        ASSERT_TRUE(h1 != h2);
        /* the source is part of the key, and "a"+"bc" is not "ab"+"c" */
        ASSERT_TRUE(h1 != dedup_index_hash(d, "sentinel", "id:1"));
        ASSERT_TRUE(dedup_index_hash(d, "a", "bc") != dedup_index_hash(d, "ab", "c"));

        assert_candidates(d, h1, 0, NULL, 0);
        ASSERT_OK(dedup_index_add(d, h1, 7, 1000, 0));
        assert_candidates(d, h1, 0, (const int64_t[]) { 7 }, 1);
        /* outside the window */
        assert_candidates(d, h1, 1001, NULL, 0);
        assert_candidates(d, h2, 0, NULL, 0);

        /* the same hash twice (a rolled-back row and its redelivery):
         * both are candidates, the caller checks each row */
        ASSERT_OK(dedup_index_add(d, h1, 9, 1002, 0));
        assert_candidates(d, h1, 0, (const int64_t[]) { 7, 9 }, 2);
        dedup_index_free(d);
}

/* Adds key "id:i" of source "s" as rowid i, received at received_usec;
 * rebuilds drop what was received before since_usec. */
static void add_key(DedupIndex *d, unsigned i, uint64_t received_usec, uint64_t since_usec) {
        char key[32];

        snprintf(key, sizeof(key), "id:%u", i);
        ASSERT_OK(dedup_index_add(d, dedup_index_hash(d, "s", key), i, received_usec, since_usec));
}

/* The first candidate for key "id:i" of source "s" since since_usec:
 * true with its rowid, or false. */
static bool find_key(DedupIndex *d, unsigned i, uint64_t since_usec, int64_t *ret_rowid) {
        size_t cursor = 0;
        char key[32];

        snprintf(key, sizeof(key), "id:%u", i);
        return dedup_index_next(d, dedup_index_hash(d, "s", key), since_usec, &cursor, ret_rowid);
}

/* Growth keeps every live entry findable, and replacing a full table
 * drops those that left the window. */
TEST(growth_and_expiry) {
        DedupIndex *d;

        ASSERT_OK(dedup_index_new(1000000, &d));
        for (unsigned i = 0; i < 150000; i++)
                add_key(d, i, i, i >= 60000 ? i - 60000 : 0); /* time i; the window is the last 60,000 */
        for (unsigned i = 0; i < 150000; i++) {
                int64_t rowid = -1;
                bool found = find_key(d, i, 90000, &rowid);

                ASSERT_EQ(found, i >= 90000);
                if (found)
                        ASSERT_EQ(rowid, (int64_t) i);
        }
        /* the table of 131,072 slots filled at ~98,000 entries and was
         * replaced without the ~40,000 expired: at most the window plus the
         * additions since remain */
        ASSERT_TRUE(dedup_index_size(d) < 110000);
        ASSERT_EQ(dedup_index_evicted(d), 0u);
        dedup_index_free(d);
}

/* Past max_keys the oldest go, and no more than max_keys are kept. */
TEST(max_keys) {
        DedupIndex *d;

        ASSERT_OK(dedup_index_new(1000, &d));
        for (unsigned i = 0; i < 5000; i++) {
                add_key(d, i, 1000000 + i, 0);
                ASSERT_TRUE(dedup_index_size(d) <= 1000);
        }
        ASSERT_TRUE(dedup_index_evicted(d) >= 4000);
        /* the newest 875 are always there */
        for (unsigned i = 5000 - 875; i < 5000; i++) {
                int64_t rowid;

                ASSERT_TRUE(find_key(d, i, 0, &rowid));
                ASSERT_EQ(rowid, (int64_t) i);
        }
        dedup_index_free(d);
}

/* The table grows, drops the expired and keeps max_keys by replacing
 * itself a few slots per addition: no addition does the whole copy, and
 * every entry stays findable while a copy is under way. */
TEST(replaced_in_steps) {
        size_t max_steps = 0, drains = 0, prev = 0;
        DedupIndex *d;

        ASSERT_OK(dedup_index_new(200000, &d));
        for (unsigned i = 1; i <= 1000000; i++) {
                /* the window: the last 300,000 (more than max_keys fit) */
                add_key(d, i, i, i > 300000 ? i - 300000 : 0);
                if (dedup_index_steps(d) > max_steps)
                        max_steps = dedup_index_steps(d);
                if (dedup_index_steps(d) && !prev)
                        drains++;
                prev = dedup_index_steps(d);
                ASSERT_TRUE(dedup_index_size(d) <= 200000);
                if (i % 9973 == 0)
                        for (unsigned j = i > 1000 ? i - 1000 : 1; j <= i; j++) {
                                int64_t rowid = -1;

                                ASSERT_TRUE(find_key(d, j, 0, &rowid));
                                ASSERT_EQ(rowid, (int64_t) j);
                        }
        }
        /* tables of up to 512 Ki slots were replaced, 32 slots at a time
         * (a few more when max_keys makes it catch up) */
        ASSERT_TRUE(drains >= 8);
        ASSERT_TRUE(max_steps <= 512);
        ASSERT_TRUE(dedup_index_evicted(d) > 0);
        for (unsigned j = 1000000 - 175000 + 1; j <= 1000000; j++) {
                int64_t rowid = -1;

                ASSERT_TRUE(find_key(d, j, 0, &rowid));
                ASSERT_EQ(rowid, (int64_t) j);
        }
        dedup_index_free(d);
}

/* Rowids of INT64_MIN (not SQLite's, but the index takes any) reach
 * the cap without an overflow in the rowid floor. */
TEST(cap_low_rowids) {
        DedupIndex *d;

        ASSERT_OK(dedup_index_new(8, &d));
        for (unsigned i = 0; i < 64; i++)
                ASSERT_OK(dedup_index_add(d, dedup_index_hash(d, "s", "k"), INT64_MIN, 1000 + i, 0));
        ASSERT_TRUE(dedup_index_size(d) <= 8);
        dedup_index_free(d);
}

int main(void) {
        RUN(siphash_vectors);
        RUN(lookup);
        RUN(growth_and_expiry);
        RUN(max_keys);
        RUN(replaced_in_steps);
        RUN(cap_low_rowids);
        HARNESS_DONE();
}
