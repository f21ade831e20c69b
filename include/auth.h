/* Webhook source authentication (contract section 3.1): pure functions of
 * the request's header values, raw body and, for mtls, what the TLS layer
 * verified. No I/O, no logging: the webhook answers 401 `unauthorized` on
 * any failure and never says which part was wrong.
 *
 * Every secret comparison goes through memeq_secret() (constant time in the
 * contents); every secret of a source is tried (rotation). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remedyd-forward.h"

/* Looks a request header up by case-insensitive name; NULL when absent. */
typedef const char *(*AuthHeaderFn)(void *userdata, const char *name);

typedef struct AuthRequest {
        AuthHeaderFn header;
        void *userdata;              /* for header() */
        const void *body;            /* the raw bytes as received */
        size_t body_len;
        uint64_t now_usec;           /* CLOCK_REALTIME, for timestamp_header */
        /* mtls: set by the caller from http_server_request_client_cert() */
        bool client_cert_verified;
        const char *client_cert_subject; /* subject DN, or NULL */
} AuthRequest;

/* Checks req against the source's auth. Returns 0 when the sender proved
 * itself, -EACCES when not (whatever the reason), -ENOMEM, -EINVAL for a
 * SourceAuth without secrets where one is needed (a config loaded with
 * CONFIG_LOAD_NO_SECRETS). */
int auth_check(const SourceAuth *a, const AuthRequest *req);

/* Lower-case hex HMAC-SHA256 under key of "TIMESTAMP.BODY" (timestamp
 * non-NULL) or of BODY into ret (65 bytes). Returns 0 or -ENOMEM/-EIO.
 * Used by auth_check() and by tests and tools that sign deliveries. */
int auth_hmac_sha256_hex(const char *key, const char *timestamp, const void *body, size_t body_len,
                         char ret[static 65]);
