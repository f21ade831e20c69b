/* The per-source token bucket (include/ratelimit.h). Pure arithmetic;
 * calls util's clock helpers only. */
#include "ratelimit.h"
#include "util.h"

/* ceil() without libm, for the small positive values used here. */
static double ceil_pos(double x) {
        double t = (double) (uint64_t) x;

        return t < x ? t + 1.0 : t;
}

static double bucket_size(double rate_per_sec, unsigned burst) {
        if (burst > 0)
                return burst;
        return rate_per_sec > 1.0 ? ceil_pos(rate_per_sec) : 1.0;
}

void ratelimit_init(RateLimit *rl, double rate_per_sec, unsigned burst, uint64_t now_usec) {
        *rl = (RateLimit) {
                .rate_per_sec = rate_per_sec > 0 ? rate_per_sec : 0,
                .burst = bucket_size(rate_per_sec, burst),
                .last_usec = now_usec,
        };
        rl->tokens = rl->burst;
}

static void refill(RateLimit *rl, uint64_t now_usec) {
        if (now_usec > rl->last_usec) {
                rl->tokens += (double) (now_usec - rl->last_usec) * rl->rate_per_sec / (double) USEC_PER_SEC;
                if (rl->tokens > rl->burst)
                        rl->tokens = rl->burst;
        }
        /* A clock that went backwards restarts the interval from here. */
        rl->last_usec = now_usec;
}

void ratelimit_update(RateLimit *rl, double rate_per_sec, unsigned burst, uint64_t now_usec) {
        refill(rl, now_usec);
        rl->rate_per_sec = rate_per_sec > 0 ? rate_per_sec : 0;
        rl->burst = bucket_size(rate_per_sec, burst);
        if (rl->tokens > rl->burst)
                rl->tokens = rl->burst;
}

bool ratelimit_allow(RateLimit *rl, uint64_t now_usec, uint64_t *ret_wait_usec) {
        double missing;

        if (rl->rate_per_sec <= 0)
                return true;
        refill(rl, now_usec);
        if (rl->tokens >= 1.0) {
                rl->tokens -= 1.0;
                return true;
        }
        if (ret_wait_usec) {
                missing = 1.0 - rl->tokens;
                *ret_wait_usec = (uint64_t) ceil_pos(missing * (double) USEC_PER_SEC / rl->rate_per_sec);
        }
        return false;
}

unsigned ratelimit_retry_after_sec(uint64_t wait_usec) {
        uint64_t s = (wait_usec + USEC_PER_SEC - 1) / USEC_PER_SEC;

        if (s < 1)
                return 1;
        if (s > 86400)
                return 86400;
        return (unsigned) s;
}
