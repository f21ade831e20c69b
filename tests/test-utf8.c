#include <stdint.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "harness.h"
#include "utf8.h"

/* The definition, spelled the other way round from src/utf8.c: decode the
 * code point by its bit pattern, then refuse what the length does not
 * need (overlong), surrogates and what is past U+10FFFF. 1 if b[0..n) is
 * exactly one well-formed sequence. */
static bool reference_one(const unsigned char *b, size_t n) {
        static const uint32_t min_for_len[] = { 0, 0, 0x80, 0x800, 0x10000 };
        uint32_t cp;
        size_t len;

        if (n == 0)
                return 0;
        if ((b[0] & 0x80) == 0x00) {
                len = 1;
                cp = b[0];
        } else if ((b[0] & 0xe0) == 0xc0) {
                len = 2;
                cp = b[0] & 0x1f;
        } else if ((b[0] & 0xf0) == 0xe0) {
                len = 3;
                cp = b[0] & 0x0f;
        } else if ((b[0] & 0xf8) == 0xf0) {
                len = 4;
                cp = b[0] & 0x07;
        } else
                return 0;
        if (len != n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((b[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (b[i] & 0x3f);
        }
        if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return 1;
}

/* Whole sequences one after the other: the lead byte fixes the length, so
 * at most one length fits at each place. */
static bool reference_valid(const unsigned char *b, size_t n) {
        size_t i = 0;

        while (i < n) {
                size_t len = 1;

                while (len <= 4 && (i + len > n || !reference_one(b + i, len)))
                        len++;
                if (len > 4)
                        return false;
                i += len;
        }
        return true;
}

static bool valid(const char *s) {
        return utf8_is_valid(s, strlen(s));
}

TEST(valid_each_length) {
        ASSERT_TRUE(utf8_is_valid(NULL, 0));
        ASSERT_TRUE(valid(""));
        ASSERT_TRUE(valid("{\"sid\":\"abc\",\"x\":1}"));
        ASSERT_TRUE(utf8_is_valid("a\0b", 3));                /* NUL is a character */
        ASSERT_TRUE(valid("\x7f"));
        ASSERT_TRUE(valid("\xc2\x80"));                       /* U+0080 */
        ASSERT_TRUE(valid("\xc3\xa9t\xc3\xa9"));              /* "été" */
        ASSERT_TRUE(valid("\xdf\xbf"));                       /* U+07FF */
        ASSERT_TRUE(valid("\xe0\xa0\x80"));                   /* U+0800 */
        ASSERT_TRUE(valid("\xe2\x9c\x93"));                   /* U+2713 */
        ASSERT_TRUE(valid("\xed\x9f\xbf"));                   /* U+D7FF */
        ASSERT_TRUE(valid("\xee\x80\x80"));                   /* U+E000 */
        ASSERT_TRUE(valid("\xef\xbf\xbf"));                   /* U+FFFF */
        ASSERT_TRUE(valid("\xf0\x90\x80\x80"));               /* U+10000 */
        ASSERT_TRUE(valid("\xf0\x9f\x94\x92"));               /* U+1F512 */
        ASSERT_TRUE(valid("\xf4\x8f\xbf\xbf"));               /* U+10FFFF */
}

TEST(invalid_classes) {
        /* overlong 2-, 3- and 4-byte forms */
        ASSERT_FALSE(valid("\xc0\x80"));
        ASSERT_FALSE(valid("\xc0\xaf"));
        ASSERT_FALSE(valid("\xc1\xbf"));
        ASSERT_FALSE(valid("\xe0\x80\xaf"));
        ASSERT_FALSE(valid("\xe0\x9f\xbf"));
        ASSERT_FALSE(valid("\xf0\x80\x80\xaf"));
        ASSERT_FALSE(valid("\xf0\x8f\xbf\xbf"));
        /* surrogates, alone and as a CESU-8 pair */
        ASSERT_FALSE(valid("\xed\xa0\x80"));
        ASSERT_FALSE(valid("\xed\xbf\xbf"));
        ASSERT_FALSE(valid("\xed\xa0\xbd\xed\xb4\x92"));
        /* past U+10FFFF, and lead bytes that cannot start anything */
        ASSERT_FALSE(valid("\xf4\x90\x80\x80"));
        ASSERT_FALSE(valid("\xf5\x80\x80\x80"));
        ASSERT_FALSE(valid("\xf7\xbf\xbf\xbf"));
        ASSERT_FALSE(valid("\xf8\x88\x80\x80\x80"));
        ASSERT_FALSE(valid("\xfe"));
        ASSERT_FALSE(valid("\xff"));
        /* truncated at the end */
        ASSERT_FALSE(valid("\xc3"));
        ASSERT_FALSE(valid("\xe2\x9c"));
        ASSERT_FALSE(valid("\xf0\x9f\x94"));
        ASSERT_FALSE(valid("abc\xf0"));
        /* truncated in the middle: a lead, then not a continuation */
        ASSERT_FALSE(valid("\xc3("));
        ASSERT_FALSE(valid("\xe2\x9c("));
        ASSERT_FALSE(valid("\xf0\x9f\x94("));
        ASSERT_FALSE(valid("\xe2\xc3\xa9"));
        /* bare continuation bytes */
        ASSERT_FALSE(valid("\x80"));
        ASSERT_FALSE(valid("\xbf"));
        ASSERT_FALSE(valid("\xc3\xa9\xa9"));
        /* the body */
        ASSERT_FALSE(valid("{\"sid\":\"\xff\xfe\",\"x\":1}"));
}

TEST(prefix_offsets) {
        ASSERT_EQ(utf8_valid_prefix("abc", 3), 3);
        ASSERT_EQ(utf8_valid_prefix("{\"sid\":\"\xff\xfe\",\"x\":1}", 20), 8);
        ASSERT_EQ(utf8_valid_prefix("\xc3\xa9\xe2\x9c", 4), 2);    /* at the cut lead */
        ASSERT_EQ(utf8_valid_prefix("0123456789abcdef\x80", 17), 16); /* after the word loop */
        ASSERT_EQ(utf8_valid_prefix("01234567\xc3\xa9" "89abcdefgh\xed\xa0\x80", 23), 20);
        /* a bad byte at every place of a long ASCII run */
        for (size_t at = 0; at < 40; at++) {
                char b[40];

                memset(b, 'a', sizeof(b));
                b[at] = (char) 0x80;
                ASSERT_EQ(utf8_valid_prefix(b, sizeof(b)), at);
                ASSERT_EQ(utf8_valid_prefix(b + 1, at > 0 ? sizeof(b) - 1 : 0), at > 0 ? at - 1 : 0);
        }
}

/* Every string of one to three bytes, and every four-byte sequence whose
 * last two bytes are at the edges of the continuation range (after one
 * byte of ASCII, so that the offset is checked too), against the
 * reference. */
TEST(exhaustive_against_reference) {
        static const unsigned char tails[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff };
        unsigned char b[5];
        size_t checked = 0;

        for (uint32_t v = 0; v < (1u << 24); v++) {
                for (size_t n = 1; n <= 3; n++) {
                        if (n < 3 && (v >> (8 * n)) != 0)
                                continue;
                        for (size_t i = 0; i < n; i++)
                                b[i] = (unsigned char) (v >> (8 * (n - 1 - i)));
                        bool want = reference_valid(b, n);

                        if (utf8_is_valid((const char *) b, n) != want)
                                FAIL_AT("%zu bytes %02x %02x %02x: want %d", n, b[0], n > 1 ? b[1] : 0,
                                        n > 2 ? b[2] : 0, want);
                        checked++;
                }
        }
        for (unsigned l = 0xf0; l <= 0xff; l++)
                for (unsigned c1 = 0; c1 <= 0xff; c1++)
                        for (size_t t2 = 0; t2 < sizeof(tails); t2++)
                                for (size_t t3 = 0; t3 < sizeof(tails); t3++) {
                                        b[0] = 'x';
                                        b[1] = (unsigned char) l;
                                        b[2] = (unsigned char) c1;
                                        b[3] = tails[t2];
                                        b[4] = tails[t3];
                                        bool one = reference_one(b + 1, 4);
                                        size_t p = utf8_valid_prefix((const char *) b, 5);

                                        if (one != (p == 5) || (!one && p != 1))
                                                FAIL_AT("x %02x %02x %02x %02x: prefix %zu, want %s", l, c1,
                                                        tails[t2], tails[t3], p, one ? "5" : "1");
                                        checked++;
                                }
        fprintf(stderr, "%zu sequences checked\n", checked);
}

/* The best of seven runs: on a shared machine the others only add noise. */
static double bench_one(const char *label, const char *buf, size_t n, unsigned rounds) {
        double best = 0;

        for (unsigned run = 0; run < 7; run++) {
                struct timespec a, z;
                size_t sink = 0;
                double ns;

                clock_gettime(CLOCK_MONOTONIC, &a);
                for (unsigned r = 0; r < rounds; r++)
                        sink += utf8_valid_prefix(buf, n);
                clock_gettime(CLOCK_MONOTONIC, &z);
                ASSERT_EQ(sink, (size_t) rounds * n);
                ns = (double) (z.tv_sec - a.tv_sec) * 1e9 + (double) (z.tv_nsec - a.tv_nsec);
                ns /= (double) rounds * ((double) n / 1024.0);
                if (run == 0 || ns < best)
                        best = ns;
        }
        printf("%-28s %8.1f ns/KiB\n", label, best);
        return best;
}

/* test-utf8 --bench: ns per KiB (best of seven) on a 1 KiB JSON-like ASCII body (the usual
 * alert), a 64 KiB one, and 64 KiB of text with one non-ASCII character in
 * eight (accented Latin, symbols, emoji). Not run by the test suite. */
static void bench(void) {
        static const char *const pieces[] = { "\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9f\x94\x92", "\xc3\xbc" };
        const size_t big = 64 * 1024;
        char *ascii = mem_malloc(big), *mixed = mem_malloc(big + 8);
        size_t n = 0, k = 0;

        ASSERT_NOT_NULL(ascii);
        ASSERT_NOT_NULL(mixed);
        for (size_t i = 0; i < big; i++)
                ascii[i] = "{\"user\":\"alice@example.com\",\"severity\":\"high\"}, "[i % 50];
        while (n < big) {
                if (n % 8 == 7) {
                        const char *p = pieces[k++ % 4];

                        memcpy(mixed + n, p, strlen(p));
                        n += strlen(p);
                } else {
                        mixed[n] = (char) ('a' + n % 26);
                        n++;
                }
        }
        bench_one("ascii, 1 KiB body", ascii, 1024, 200000);
        bench_one("ascii, 64 KiB body", ascii, big, 4000);
        bench_one("1 in 8 non-ASCII, 64 KiB", mixed, n, 1000);
        mem_free(ascii);
        mem_free(mixed);
}

int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
                bench();
                return 0;
        }
        RUN(valid_each_length);
        RUN(invalid_classes);
        RUN(prefix_offsets);
        RUN(exhaustive_against_reference);
        HARNESS_DONE();
}
