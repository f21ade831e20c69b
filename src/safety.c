/* The guardrail chain of include/safety.h, written once for the loop and
 * the store. Pure: calls util only. */
#include <ctype.h>
#include <string.h>

#include "safety.h"
#include "util.h"

#define PROTECTED_USER_MAX 512

/* Copies s without surrounding whitespace into buf; false if it does not
 * fit (such a user is compared untrimmed). */
static bool trim_copy(const char *s, char *buf, size_t size) {
        size_t n;

        while (isspace((unsigned char) *s))
                s++;
        n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                n--;
        if (n + 1 > size)
                return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        return true;
}

bool safety_is_protected(const Config *c, const char *user, const char *user_id) {
        char trimmed[PROTECTED_USER_MAX];
        const char *u = NULL;

        if (!c || !c->safety.protected_users)
                return false;
        if (user)
                u = trim_copy(user, trimmed, sizeof(trimmed)) ? trimmed : user;

        for (char **p = c->safety.protected_users; *p; p++) {
                if (is_user_id(*p)) {
                        if ((user_id && strcmp(*p, user_id) == 0) || (u && strcmp(*p, u) == 0))
                                return true;
                } else if (u && glob_match_ci(*p, u))
                        return true;
        }
        return false;
}

ActionStatus safety_pre_status(const Config *c, const char *user, DirectoryResult lookup, const char *user_id) {
        if (!user)
                return ACTION_STATUS_UNRESOLVED;
        if (!is_user_id(user)) {
                if (lookup == DIRECTORY_UNKNOWN)
                        return ACTION_STATUS_UNKNOWN_USER;
                if (lookup == DIRECTORY_AMBIGUOUS)
                        return ACTION_STATUS_AMBIGUOUS_USER;
        }
        if (safety_is_protected(c, user, user_id))
                return ACTION_STATUS_PROTECTED;
        return ACTION_STATUS_QUEUED;
}

ActionStatus safety_guard_status(ActionStatus pre, bool cooldown_hit, bool dry_run, bool over_cap) {
        if (pre != ACTION_STATUS_QUEUED)
                return pre;
        if (cooldown_hit)
                return ACTION_STATUS_COOLDOWN;
        if (dry_run)
                return ACTION_STATUS_DRY_RUN;
        if (over_cap)
                return ACTION_STATUS_HELD;
        return ACTION_STATUS_QUEUED;
}

bool safety_guard_needs_cap(ActionStatus pre, bool cooldown_hit, bool dry_run) {
        return pre == ACTION_STATUS_QUEUED && !cooldown_hit && !dry_run;
}
