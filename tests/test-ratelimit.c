#include "harness.h"
#include "ratelimit.h"
#include "util.h"

#define T0 (1000ULL * USEC_PER_SEC)

TEST(unlimited) {
        RateLimit rl;

        ratelimit_init(&rl, 0, 0, T0);
        for (unsigned i = 0; i < 100000; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
}

TEST(burst_then_refill) {
        RateLimit rl;
        uint64_t wait = 0;

        /* 5/s, burst 5: five at once, the sixth waits 200ms. */
        ratelimit_init(&rl, 5, 5, T0);
        for (unsigned i = 0; i < 5; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0, &wait));
        ASSERT_EQ(wait, 200 * USEC_PER_MSEC);
        ASSERT_EQ(ratelimit_retry_after_sec(wait), 1);

        /* 100ms later half a token: still no, 100ms to go. */
        ASSERT_FALSE(ratelimit_allow(&rl, T0 + 100 * USEC_PER_MSEC, &wait));
        ASSERT_EQ(wait, 100 * USEC_PER_MSEC);
        ASSERT_TRUE(ratelimit_allow(&rl, T0 + 200 * USEC_PER_MSEC, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0 + 200 * USEC_PER_MSEC, NULL));

        /* A long pause fills the bucket only up to the burst. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0 + 3600 * USEC_PER_SEC, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0 + 3600 * USEC_PER_SEC, NULL));
}

TEST(slow_rate_retry_after) {
        RateLimit rl;
        uint64_t wait = 0;

        /* 1000/h: burst defaults to 1 token for rates below 1/s. */
        ratelimit_init(&rl, 1000.0 / 3600.0, 0, T0);
        ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0, &wait));
        ASSERT_EQ(ratelimit_retry_after_sec(wait), 4); /* 3.6s rounded up */
        ASSERT_FALSE(ratelimit_allow(&rl, T0 + 3 * USEC_PER_SEC, &wait));
        ASSERT_EQ(ratelimit_retry_after_sec(wait), 1);
        ASSERT_TRUE(ratelimit_allow(&rl, T0 + 3600 * USEC_PER_MSEC, NULL));
}

TEST(default_burst) {
        RateLimit rl;

        /* 50/s, burst 0: the bucket holds ceil(50) = 50. */
        ratelimit_init(&rl, 50, 0, T0);
        for (unsigned i = 0; i < 50; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0, NULL));
        /* 2.5/s: ceil = 3 */
        ratelimit_init(&rl, 2.5, 0, T0);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0, NULL));
}

TEST(clock_backwards) {
        RateLimit rl;

        ratelimit_init(&rl, 1, 1, T0);
        ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        /* Going back gives nothing, and does not make the later refill
         * count the same time twice. */
        ASSERT_FALSE(ratelimit_allow(&rl, T0 - 10 * USEC_PER_SEC, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0 - 9500 * USEC_PER_MSEC, NULL));
        ASSERT_TRUE(ratelimit_allow(&rl, T0 - 8500 * USEC_PER_MSEC, NULL));
}

TEST(update_keeps_tokens) {
        RateLimit rl;

        ratelimit_init(&rl, 10, 10, T0);
        for (unsigned i = 0; i < 8; i++)
                ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        /* Reload to 100/s burst 100: the 2 tokens left stay 2. */
        ratelimit_update(&rl, 100, 100, T0);
        ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_TRUE(ratelimit_allow(&rl, T0, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0, NULL));
        /* Down to burst 1: clamped. */
        ratelimit_update(&rl, 1, 1, T0 + 10 * USEC_PER_SEC);
        ASSERT_TRUE(ratelimit_allow(&rl, T0 + 10 * USEC_PER_SEC, NULL));
        ASSERT_FALSE(ratelimit_allow(&rl, T0 + 10 * USEC_PER_SEC, NULL));
}

TEST(retry_after_rounding) {
        ASSERT_EQ(ratelimit_retry_after_sec(0), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(1), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(USEC_PER_SEC), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(USEC_PER_SEC + 1), 2);
        ASSERT_EQ(ratelimit_retry_after_sec(UINT64_MAX / 2), 86400);
}

int main(void) {
        RUN(unlimited);
        RUN(burst_then_refill);
        RUN(slow_rate_retry_after);
        RUN(default_burst);
        RUN(clock_backwards);
        RUN(update_keeps_tokens);
        RUN(retry_after_rounding);
        HARNESS_DONE();
}
