/* The 1Password Users API (v1beta1, or GA v1 by config): list, get,
 * :suspend, :reactivate. Non-blocking: every call is driven by curl's multi
 * interface on the daemon's sd-event loop (http_client) and completes
 * through a callback on the loop. Tokens come from oauth; a 401 discards
 * the token, fetches one fresh token and retries the call once.
 *
 * Transient failures (network errors, timeouts, 429, 5xx) are retried here
 * with capped exponential backoff and jitter, honouring Retry-After (seconds
 * or HTTP-date), up to opts->max_attempts; what remains transient after
 * that is reported with result->transient = true, so that the caller can
 * persist the retry (the executor does). 400/403/404 are permanent and
 * carry the API's code and message.
 *
 * Errors (UsersApiResult.error), and whether they are transient:
 *   -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EIO
 *                  network (http_client.h), retried, transient
 *   -EBUSY         HTTP 429, retried, transient
 *   -EREMOTEIO     HTTP 5xx (retried, transient); other unexpected statuses (permanent)
 *   -EBADMSG       a 2xx whose body is not the expected JSON: a protocol error,
 *                  retried, transient (the executor tries again later)
 *   -EPROTO        TLS failure, not retried here, transient
 *   -EKEYREJECTED  the token endpoint refused the client credentials (400/401/403;
 *                  http_status holds its status), not retried here, transient
 *   -EACCES        HTTP 401 again after a fresh token, transient
 *   -EINVAL/-EPERM/-ENOENT  HTTP 400/403/404, permanent, api_code/api_message kept
 *   -E2BIG         response over LIMIT_API_RESPONSE_BYTES, permanent
 *   -ENOMEM        transient
 * Callbacks always run from the event loop (a deferred event), never from
 * inside the users_api_* call that started them; a callback may start new
 * calls or free the UsersApi. users_api_free() drops pending calls without
 * calling them back. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "remedyd-forward.h"

typedef enum OpUserState {
        OP_USER_STATE_UNSPECIFIED,
        OP_USER_STATE_ACTIVE,
        OP_USER_STATE_SUSPENDED,
        _OP_USER_STATE_MAX,
        _OP_USER_STATE_INVALID = -22,
} OpUserState;

struct OpUser {
        char *id;
        char *email;
        char *display_name;
        OpUserState state;
        char *create_time;
        char *path;
};

typedef enum UsersApiOperation {
        USERS_API_TOKEN,
        USERS_API_LIST,
        USERS_API_GET,
        USERS_API_SUSPEND,
        USERS_API_REACTIVATE,
        USERS_API_REVOKE,
        _USERS_API_OPERATION_MAX,
        _USERS_API_OPERATION_INVALID = -22,
} UsersApiOperation;

typedef struct UsersApiResult {
        int error;               /* 0, or negative errno: see "Errors" below */
        long http_status;        /* 0 when no HTTP answer */
        bool transient;          /* worth retrying later */
        uint64_t retry_after_usec; /* from Retry-After, 0 if none */
        char *api_code;          /* the error body's "code" as text ("7"), or NULL */
        char *api_message;       /* the error body's "message" ("no_owner_remain"), or NULL */
        OpUser *user;            /* get/suspend/reactivate: the returned User */
        OpUser *users;           /* list: the page */
        size_t n_users;
        char *next_page_token;   /* list: NULL on the last page (omitted or "") */
        json_object *body;       /* the parsed response body, or NULL */
        unsigned attempts;
} UsersApiResult;

/* result is borrowed for the duration of the callback. */
typedef void (*UsersApiCallback)(UsersApi *api, const UsersApiResult *result, void *userdata);

typedef struct UsersApiCallOptions {
        unsigned max_attempts;   /* 0 = default (4) */
} UsersApiCallOptions;

int users_api_new(sd_event *e, const Config *c, Metrics *m, UsersApi **ret);
UsersApi *users_api_free(UsersApi *api);
/* Swaps in new onepassword settings (reload); in-flight calls finish on
 * the old ones. */
int users_api_reconfigure(UsersApi *api, const Config *c);

int users_api_list(UsersApi *api, const char *filter, unsigned max_page_size, const char *page_token,
                   const UsersApiCallOptions *opts, UsersApiCallback cb, void *userdata);
int users_api_get(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts,
                  UsersApiCallback cb, void *userdata);
int users_api_suspend(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts,
                      UsersApiCallback cb, void *userdata);
int users_api_reactivate(UsersApi *api, const char *user_id, const UsersApiCallOptions *opts,
                         UsersApiCallback cb, void *userdata);

/* Token state for /status, /readyz and STATUS=. */
typedef struct UsersApiTokenState {
        bool valid;
        int64_t expires_in_seconds;
        bool last_request_ok;    /* the last token request succeeded */
        char last_error[256];    /* why not, or "" */
} UsersApiTokenState;
void users_api_token_state(UsersApi *api, UsersApiTokenState *ret);
/* Revokes the token (clean shutdown); calls done when finished or failed. */
int users_api_revoke(UsersApi *api, void (*done)(void *userdata), void *userdata);

/* Drops every pending call started with this userdata, without calling
 * its callback (an owner going away: directory_free(), executor stop).
 * Returns how many were dropped. */
size_t users_api_cancel(UsersApi *api, void *userdata);
/* Calls started and not yet called back. */
size_t users_api_pending(UsersApi *api);

/* How a response is read (the callbacks see the outcome; exported for the
 * fuzz target). Fills res->body (the parsed JSON, or NULL) and, for a 2xx,
 * res->user (get/suspend/reactivate) or res->users/n_users/next_page_token
 * (list); for any other status, res->api_code/api_message from an error
 * body. Returns 0 for a usable 2xx, -EBADMSG for a 2xx that is not the
 * expected JSON, -E2BIG for a list page over LIMIT_DIRECTORY_USERS, -ENOMEM,
 * or the errno of the status ("Errors" above: -EINVAL, -EACCES, -EPERM,
 * -ENOENT, -EBUSY, -EREMOTEIO). Release with users_api_result_done(). */
int users_api_parse_response(UsersApiOperation op, long status, const char *body, size_t size,
                             UsersApiResult *res);
void users_api_result_done(UsersApiResult *r);

const char *users_api_operation_to_string(UsersApiOperation op);
const char *users_api_state_to_string(OpUserState s);
void op_user_done(OpUser *u);
/* True when the API User object's "email", trimmed of blanks, equals want
 * (already trimmed) ignoring ASCII case: how the directory and remedyctl
 * match people. */
bool users_api_user_has_email(json_object *user, const char *want);
/* Appends a list page's User objects (only those users_api_user_has_email()
 * matches with want, unless want is NULL) to the JSON array into, holding
 * a reference to each: 0, -E2BIG once into would pass max entries, or
 * -ENOMEM. How the control socket and remedyctl users collect pages. */
int users_api_page_collect(const UsersApiResult *res, const char *want, json_object *into, size_t max);
