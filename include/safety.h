/* The guardrail chain (contract 3.3: resolution, protected, cooldown,
 * dry-run, the cap), written once. The loop side (safety_pre_status()) needs
 * the directory; the store side (safety_guard_status()) needs facts only the
 * store has (cooldown, the cap count), which the writer learns inside its
 * transaction and a preview (store_preview_event()) reads. The webhook,
 * manual actions, release, offline and live explain all go through these
 * two. */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "directory.h"
#include "remedyd-forward.h"

/* What became of an action. The guardrail chain below decides the first
 * eight (QUEUED through UNRESOLVED, in the store's transaction for the
 * store-side ones), the executor the rest; the store records them under
 * the names of store_action_status_to_string(). */
typedef enum ActionStatus {
        ACTION_STATUS_QUEUED,
        ACTION_STATUS_HELD,
        ACTION_STATUS_DRY_RUN,
        ACTION_STATUS_COOLDOWN,
        ACTION_STATUS_PROTECTED,
        ACTION_STATUS_UNKNOWN_USER,
        ACTION_STATUS_AMBIGUOUS_USER,
        ACTION_STATUS_UNRESOLVED,
        ACTION_STATUS_RUNNING,
        ACTION_STATUS_DONE,
        ACTION_STATUS_FAILED,
        ACTION_STATUS_CANCELLED,
        _ACTION_STATUS_MAX,
        _ACTION_STATUS_INVALID = -22,
} ActionStatus;

/* True when safety.protected_users covers this user. An entry of 26
 * [A-Z0-9] characters is a user id, compared exactly to user_id and to
 * user; any other entry is an email glob (fnmatch), compared
 * case-insensitively to user with surrounding whitespace trimmed. user and
 * user_id may be NULL; c NULL protects nobody. */
bool safety_is_protected(const Config *c, const char *user, const char *user_id);

/* The pre-status for store_submit_event() (first that applies, in the
 * contract's order): user NULL (template path missing) -> UNRESOLVED;
 * lookup DIRECTORY_UNKNOWN -> UNKNOWN_USER, DIRECTORY_AMBIGUOUS ->
 * AMBIGUOUS_USER; protected (by user, and by user_id when known) ->
 * PROTECTED; else QUEUED (also for DIRECTORY_PENDING: the executor resolves
 * the email later). A user that is itself a user id needs no lookup: pass
 * anything as lookup. user_id is the id the lookup found, or NULL. */
ActionStatus safety_pre_status(const Config *c, const char *user, DirectoryResult lookup, const char *user_id);

/* The store side, on a pre-status from safety_pre_status(): anything but
 * QUEUED stands; else cooldown_hit -> COOLDOWN, dry_run -> DRY_RUN,
 * over_cap -> HELD, else QUEUED. over_cap only matters when
 * safety_guard_needs_cap() says so (the writer skips that query
 * otherwise); over_cap is for suspend actions only, the caller passes false
 * for others. */
ActionStatus safety_guard_status(ActionStatus pre, bool cooldown_hit, bool dry_run, bool over_cap);
bool safety_guard_needs_cap(ActionStatus pre, bool cooldown_hit, bool dry_run);
