/* A token bucket per webhook source (Source.rate_per_sec, rate_burst).
 * Pure arithmetic on a clock the caller passes in, so tests can drive it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "remedyd-forward.h"

struct RateLimit {
        double rate_per_sec;  /* 0 = unlimited */
        double burst;         /* bucket size in tokens (>= 1) */
        double tokens;
        uint64_t last_usec;   /* when tokens was last brought up to date */
};

/* A full bucket at now_usec. burst 0 means max(1, ceil(rate_per_sec)). */
void ratelimit_init(RateLimit *rl, double rate_per_sec, unsigned burst, uint64_t now_usec);
/* Changes rate and burst, keeping the tokens gathered so far (clamped to
 * the new burst). */
void ratelimit_update(RateLimit *rl, double rate_per_sec, unsigned burst, uint64_t now_usec);
/* Takes one token at now_usec (a monotonic clock; time going backwards
 * counts as no time). Returns true if there was one; otherwise false and,
 * if ret_wait_usec is non-NULL, how long until a token is there. */
bool ratelimit_allow(RateLimit *rl, uint64_t now_usec, uint64_t *ret_wait_usec);
/* The Retry-After value for a wait: whole seconds rounded up, at least 1. */
unsigned ratelimit_retry_after_sec(uint64_t wait_usec);
