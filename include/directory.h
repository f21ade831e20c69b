/* The email -> 1Password user id index, built by listing every user
 * (max_page_size=1000, all pages). Emails are trimmed and compared
 * case-insensitively; an email held by two users is ambiguous and never
 * resolved. Refreshed every directory_refresh, and once on a miss with at
 * most one miss-driven refresh a minute. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "remedyd-forward.h"

typedef enum DirectoryResult {
        DIRECTORY_FOUND,
        DIRECTORY_UNKNOWN,       /* not in a directory synced within the last minute */
        DIRECTORY_AMBIGUOUS,
        DIRECTORY_PENDING,       /* cannot tell now (never synced, stale, or API down): resolve later */
        _DIRECTORY_RESULT_MAX,
        _DIRECTORY_RESULT_INVALID = -22,
} DirectoryResult;

int directory_new(sd_event *e, UsersApi *api, uint64_t refresh_usec, Directory **ret);
Directory *directory_free(Directory *d);
void directory_set_refresh(Directory *d, uint64_t refresh_usec);
/* Starts the first sync and the periodic timer. */
int directory_start(Directory *d);

/* Synchronous lookup from the index, never waits. On a miss in a directory
 * older than a minute it starts a refresh (if none ran in the last minute)
 * and returns DIRECTORY_PENDING. *ret_user_id is borrowed, valid until the
 * next refresh completes; copy it. */
DirectoryResult directory_lookup(Directory *d, const char *email, const char **ret_user_id);
/* The same answer without starting a refresh (explain --live: no API
 * call; a delivery at that moment would get the same PENDING). */
DirectoryResult directory_peek(Directory *d, const char *email, const char **ret_user_id);

/* Asynchronous resolution for the executor: waits for a running refresh,
 * or starts one when the email is missing and one is allowed, then calls
 * cb. result DIRECTORY_PENDING here means the refresh failed (transient). */
typedef void (*DirectoryResolveCallback)(Directory *d, DirectoryResult result, const char *user_id, void *userdata);
int directory_resolve(Directory *d, const char *email, DirectoryResolveCallback cb, void *userdata);

typedef struct DirectoryStats {
        uint64_t users;
        uint64_t synced_usec;    /* CLOCK_REALTIME of the last full sync, 0 if never */
        bool syncing;
        char last_error[256];
        uint64_t emails;         /* distinct emails in the index (ambiguous ones included) */
        uint64_t index_bytes;    /* memory held by the index (table + string arena) */
} DirectoryStats;
void directory_stats(Directory *d, DirectoryStats *ret);
