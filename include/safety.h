/* Loop-side guardrails: protected users, and the pre-status a rule hit gets
 * before it goes to the store (which applies cooldown, dry-run and the cap
 * inside its transaction, see store.h). */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "directory.h"
#include "remedyd-forward.h"
#include "store.h"

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
