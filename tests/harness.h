/* A tiny test harness: ASSERT_* print file, line and both values, then
 * abort the test program. TEST(name) declares a test; RUN(name) runs it. */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned harness_run_count;

#define FAIL_AT(fmt, ...)                                                                \
        do {                                                                             \
                fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__); \
                abort();                                                                 \
        } while (0)

#define ASSERT_TRUE(e)                                  \
        do {                                            \
                if (!(e))                               \
                        FAIL_AT("assertion failed: %s", #e); \
        } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))

#define ASSERT_EQ(a, b)                                                                  \
        do {                                                                             \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                       \
                if (_a != _b)                                                            \
                        FAIL_AT("%s == %s: %jd != %jd", #a, #b, _a, _b);                 \
        } while (0)
#define ASSERT_OK(e)                                                                     \
        do {                                                                             \
                intmax_t _r = (intmax_t) (e);                                            \
                if (_r < 0)                                                              \
                        FAIL_AT("%s failed: %jd (%s)", #e, _r, strerror((int) -_r));     \
        } while (0)
#define ASSERT_ERR(e, err)                                                               \
        do {                                                                             \
                intmax_t _r = (intmax_t) (e);                                            \
                if (_r != -(err))                                                        \
                        FAIL_AT("%s: got %jd, want -%s (%d)", #e, _r, #err, err);       \
        } while (0)
#define ASSERT_STREQ(a, b)                                                               \
        do {                                                                             \
                const char *_a = (a), *_b = (b);                                         \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                   \
                        FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", \
                                _b ? _b : "(null)");                                     \
        } while (0)
#define ASSERT_NULL(e) ASSERT_TRUE((e) == NULL)
#define ASSERT_NOT_NULL(e) ASSERT_TRUE((e) != NULL)
#define ASSERT_CONTAINS(hay, needle)                                                     \
        do {                                                                             \
                const char *_h = (hay), *_n = (needle);                                  \
                if (!_h || !strstr(_h, _n))                                              \
                        FAIL_AT("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n); \
        } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name)                                          \
        do {                                               \
                fprintf(stderr, "== %s\n", #name);         \
                test_##name();                             \
                harness_run_count++;                       \
        } while (0)
#define HARNESS_DONE()                                                  \
        do {                                                            \
                fprintf(stderr, "%u tests passed\n", harness_run_count); \
                return 0;                                               \
        } while (0)
