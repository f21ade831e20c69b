/* safety.c: the guardrail chain in the contract's order (3.3), both
 * halves: the loop's pre-status and the store's guard status. */
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "directory.h"
#include "harness.h"
#include "safety.h"
#include "store.h"

TEST(protected_and_pre_status) {
        char *prot[] = { "breakglass@example.com", "*@secops.example.com", "ABCDEFGHIJKLMNOPQRSTUVWXY2", NULL };
        Config c = { .safety.protected_users = prot };
        const char *id = "ABCDEFGHIJKLMNOPQRSTUVWXY2", *other = "ABCDEFGHIJKLMNOPQRSTUVWXY3";

        ASSERT_TRUE(safety_is_protected(&c, "breakglass@example.com", NULL));
        ASSERT_TRUE(safety_is_protected(&c, "  BreakGlass@Example.COM\n", NULL));
        ASSERT_TRUE(safety_is_protected(&c, "eve@SecOps.example.com", NULL));
        ASSERT_FALSE(safety_is_protected(&c, "eve@secops.example.com.evil", NULL));
        ASSERT_FALSE(safety_is_protected(&c, "alice@example.com", NULL));
        ASSERT_TRUE(safety_is_protected(&c, "alice@example.com", id));
        ASSERT_TRUE(safety_is_protected(&c, id, NULL));
        ASSERT_FALSE(safety_is_protected(&c, other, other));
        ASSERT_FALSE(safety_is_protected(&c, "abcdefghijklmnopqrstuvwxy2", NULL)); /* ids are exact */
        ASSERT_FALSE(safety_is_protected(NULL, "breakglass@example.com", NULL));
        ASSERT_FALSE(safety_is_protected(&c, NULL, NULL));
        /* issue 21: a padded alert value, and an id entry named by the alert */
        ASSERT_TRUE(safety_is_protected(&c, "  alice@secops.example.com ", NULL));
        ASSERT_TRUE(safety_is_protected(&c, " ABCDEFGHIJKLMNOPQRSTUVWXY2\t", NULL));

        /* the contract's order: resolution first, then protected */
        ASSERT_EQ(safety_pre_status(&c, NULL, DIRECTORY_FOUND, NULL), ACTION_STATUS_UNRESOLVED);
        ASSERT_EQ(safety_pre_status(&c, "breakglass@example.com", DIRECTORY_UNKNOWN, NULL), ACTION_STATUS_UNKNOWN_USER);
        ASSERT_EQ(safety_pre_status(&c, "x@example.com", DIRECTORY_AMBIGUOUS, NULL), ACTION_STATUS_AMBIGUOUS_USER);
        ASSERT_EQ(safety_pre_status(&c, "breakglass@example.com", DIRECTORY_FOUND, other), ACTION_STATUS_PROTECTED);
        ASSERT_EQ(safety_pre_status(&c, "alice@example.com", DIRECTORY_FOUND, id), ACTION_STATUS_PROTECTED);
        ASSERT_EQ(safety_pre_status(&c, "breakglass@example.com", DIRECTORY_PENDING, NULL), ACTION_STATUS_PROTECTED);
        ASSERT_EQ(safety_pre_status(&c, "alice@example.com", DIRECTORY_PENDING, NULL), ACTION_STATUS_QUEUED);
        ASSERT_EQ(safety_pre_status(&c, "alice@example.com", DIRECTORY_FOUND, other), ACTION_STATUS_QUEUED);
        ASSERT_EQ(safety_pre_status(&c, other, DIRECTORY_UNKNOWN, NULL), ACTION_STATUS_QUEUED); /* an id needs no lookup */
        ASSERT_EQ(safety_pre_status(&c, id, DIRECTORY_UNKNOWN, NULL), ACTION_STATUS_PROTECTED);
}

/* The store half: a pre-status other than QUEUED stands; then cooldown,
 * dry-run, the cap, in that order. */
TEST(guard_status) {
        static const struct {
                ActionStatus pre;
                bool cooldown, dry_run, cap;
                ActionStatus want;
                bool needs_cap;
        } table[] = {
                { ACTION_STATUS_QUEUED, false, false, false, ACTION_STATUS_QUEUED, true },
                { ACTION_STATUS_QUEUED, false, false, true, ACTION_STATUS_HELD, true },
                { ACTION_STATUS_QUEUED, false, true, true, ACTION_STATUS_DRY_RUN, false },
                { ACTION_STATUS_QUEUED, true, true, true, ACTION_STATUS_COOLDOWN, false },
                { ACTION_STATUS_QUEUED, true, false, false, ACTION_STATUS_COOLDOWN, false },
                { ACTION_STATUS_PROTECTED, true, true, true, ACTION_STATUS_PROTECTED, false },
                { ACTION_STATUS_UNRESOLVED, false, false, true, ACTION_STATUS_UNRESOLVED, false },
                { ACTION_STATUS_UNKNOWN_USER, false, true, false, ACTION_STATUS_UNKNOWN_USER, false },
                { ACTION_STATUS_AMBIGUOUS_USER, true, false, false, ACTION_STATUS_AMBIGUOUS_USER, false },
        };

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                ASSERT_EQ(safety_guard_status(table[i].pre, table[i].cooldown, table[i].dry_run, table[i].cap),
                          table[i].want);
                ASSERT_EQ(safety_guard_needs_cap(table[i].pre, table[i].cooldown, table[i].dry_run),
                          table[i].needs_cap);
        }
}

int main(void) {
        RUN(protected_and_pre_status);
        RUN(guard_status);
        HARNESS_DONE();
}
