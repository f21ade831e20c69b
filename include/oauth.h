/* OAuth 2.0 client-credentials token cache for the 1Password Users API.
 *
 * The token is kept in memory only. It is fetched with client_secret_basic
 * (Authorization: Basic base64(id:secret)) from {base}/v1beta1/users/oauth2/token
 * (v1: /v1/oauth/token), renewed ahead of expiry at the later of 80% of its
 * lifetime and 60 s before it expires, by one request in flight that every
 * waiting caller shares. Token-endpoint failures back off exponentially with
 * jitter (capped at OAUTH_BACKOFF_MAX_USEC). The client secret and every
 * token are registered with log_register_secret(); neither is ever logged. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "remedyd-forward.h"

#define OAUTH_BACKOFF_MIN_USEC (1ULL * 1000000ULL)
#define OAUTH_BACKOFF_MAX_USEC (60ULL * 1000000ULL)
#define OAUTH_DEFAULT_LIFETIME_SEC 900

typedef struct OAuthSettings {
        const char *base_url;       /* no trailing slash */
        ApiVersion api_version;
        const char *client_id;
        const char *client_secret;
        const char *user_agent;     /* or NULL */
        const char *ca_file;        /* or NULL */
        uint64_t timeout_usec;      /* 0 = 10 s */
} OAuthSettings;

/* error: 0 with a token; -EKEYREJECTED when the token endpoint answered
 * 400/401/403 (bad credentials: http_status says which); -EBADMSG on a
 * 200 without a usable token; else the http_client -errno, or -EREMOTEIO
 * for any other HTTP status. token is borrowed for the call only. */
typedef void (*OAuthCallback)(OAuth *o, int error, long http_status, const char *token, uint64_t generation,
                              void *userdata);

/* http and m are borrowed (m may be NULL). Settings strings are copied. */
int oauth_new(sd_event *e, HttpClient *http, Metrics *m, const OAuthSettings *s, OAuth **ret);
/* Drops waiters without calling them; does not revoke. NULL ok. */
OAuth *oauth_free(OAuth *o);
/* Swaps settings (reload). If the endpoint or credentials changed the
 * cached token is dropped. -ENOMEM (settings left as they were). */
int oauth_reconfigure(OAuth *o, const OAuthSettings *s);

/* Gets a token. Returns 1 with *ret_token (borrowed, valid until the next
 * return to the event loop) and *ret_generation set when a usable token is
 * cached: cb is then not called. Returns 0 when the caller must wait: cb is
 * called once, later, from the loop (never from inside this function).
 * -ENOMEM. ret_waiter (optional) can cancel the wait. */
int oauth_token(OAuth *o, OAuthCallback cb, void *userdata, const char **ret_token, uint64_t *ret_generation,
                void **ret_waiter);
/* Cancels a wait returned by oauth_token(); cb is not called. */
void oauth_cancel(OAuth *o, void *waiter);
/* Discards the cached token if it is still generation (a 401 came back for
 * it); a later oauth_token() fetches a fresh one. */
void oauth_invalidate(OAuth *o, uint64_t generation);

/* Revokes the cached token (clean shutdown) and forgets it; done is called
 * from the loop when the request finished or failed (or at once, through a
 * deferred event, if there is no token). -ENOMEM. */
int oauth_revoke(OAuth *o, void (*done)(void *userdata), void *userdata);

typedef struct OAuthState {
        bool valid;                 /* a token is cached and unexpired */
        int64_t expires_in_seconds; /* of that token, or 0 */
        bool last_request_ok;       /* the last token request succeeded (false before the first) */
        bool ever_requested;
        char last_error[256];       /* "" or why the last token request failed */
        uint64_t refreshes;         /* successful token requests */
        uint64_t failures;          /* failed token requests */
} OAuthState;
void oauth_state(OAuth *o, OAuthState *ret);

#define OAUTH_TOKEN_MAX_BYTES 4096u

/* Reads a token endpoint's 200 body: 0 with the access token (a copy, at
 * most OAUTH_TOKEN_MAX_BYTES, no CR/LF) and its lifetime in seconds clamped
 * to 1 s..30 days (expires_in absent: the default), -EBADMSG when there is
 * no usable bearer token, -ENOMEM. Exported for the fuzz target. */
int oauth_parse_token(const char *body, size_t size, char **ret_token, uint64_t *ret_lifetime_sec);
