/* Webhook source authentication (include/auth.h): the methods' pure
 * checks and the HMAC over a pre-fetched SHA-256. Calls libcrypto and the
 * foundation (alloc, util); reads Config's source types, nothing else. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "util.h"

#define SHA256_LEN 32
/* Timestamps above this are taken as milliseconds (year 5138 in seconds). */
#define TIMESTAMP_MS_THRESHOLD 100000000000ULL
#define AUTH_VALUE_MAX 8192u

static const char *skip_ws(const char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        return s;
}

/* Length of s without trailing blanks. */
static size_t trimmed_len(const char *s) {
        size_t n = strlen(s);

        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        return n;
}

static EVP_MD *sha256_md = NULL;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) {
        /* Fetched once: EVP_sha256() would make OpenSSL 3 look the
         * implementation up in its provider tables on every init. */
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* RFC 2104 over a pre-fetched SHA-256: 0.7 us for a 300-byte body where
 * EVP_PKEY + EVP_DigestSign took 9.8 us (new key object and two provider
 * fetches per call); this runs once per webhook, on the loop. */
static int hmac_sha256(const char *key, const char *timestamp, const void *body, size_t body_len,
                       uint8_t out[static SHA256_LEN]) {
        enum { BLOCK = 64 };
        uint8_t k[BLOCK] = {}, pad[BLOCK], inner[SHA256_LEN];
        size_t key_len = strlen(key);
        EVP_MD_CTX *ctx;
        unsigned n;
        int r = -EIO;

        (void) pthread_once(&sha256_once, sha256_fetch);
        if (!sha256_md)
                return -EIO;
        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;

        if (key_len > BLOCK) {
                if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 ||
                    EVP_DigestUpdate(ctx, key, key_len) != 1 ||
                    EVP_DigestFinal_ex(ctx, k, &n) != 1)
                        goto out;
        } else
                memcpy(k, key, key_len);

        for (size_t i = 0; i < BLOCK; i++)
                pad[i] = k[i] ^ 0x36;
        if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 ||
            EVP_DigestUpdate(ctx, pad, BLOCK) != 1)
                goto out;
        if (timestamp &&
            (EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) != 1 ||
             EVP_DigestUpdate(ctx, ".", 1) != 1))
                goto out;
        if (body_len > 0 && EVP_DigestUpdate(ctx, body, body_len) != 1)
                goto out;
        if (EVP_DigestFinal_ex(ctx, inner, &n) != 1 || n != SHA256_LEN)
                goto out;

        for (size_t i = 0; i < BLOCK; i++)
                pad[i] = k[i] ^ 0x5c;
        if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 ||
            EVP_DigestUpdate(ctx, pad, BLOCK) != 1 ||
            EVP_DigestUpdate(ctx, inner, SHA256_LEN) != 1 ||
            EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != SHA256_LEN)
                goto out;
        r = 0;
out:
        explicit_bzero(k, sizeof(k));
        explicit_bzero(pad, sizeof(pad));
        explicit_bzero(inner, sizeof(inner));
        EVP_MD_CTX_free(ctx);
        return r;
}

int auth_hmac_sha256_hex(const char *key, const char *timestamp, const void *body, size_t body_len,
                         char ret[static 65]) {
        uint8_t mac[SHA256_LEN];
        int r;

        r = hmac_sha256(key, timestamp, body, body_len, mac);
        if (r < 0)
                return r;
        hex_encode(mac, sizeof(mac), ret);
        return 0;
}

/* Parses a Unix timestamp in seconds (or milliseconds) into usec. */
static int parse_timestamp(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0 || n > 19)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v >= TIMESTAMP_MS_THRESHOLD) {
                /* v * 1000 past UINT64_MAX would wrap to any time, "now"
                 * included: a signed far-future stamp valid for ever. */
                if (v > UINT64_MAX / USEC_PER_MSEC)
                        return -EINVAL;
                *ret = v * USEC_PER_MSEC;
        } else
                *ret = v * USEC_PER_SEC;
        return 0;
}

static int check_hmac(const SourceAuth *a, const AuthRequest *req) {
        _cleanup_free_ char *ts = NULL;
        const char *v, *t = NULL;
        uint8_t want[SHA256_LEN];
        size_t n, prefix_len;
        bool ok = false;
        int r;

        v = req->header(req->userdata, a->header);
        if (!v)
                return -EACCES;
        v = skip_ws(v);
        prefix_len = a->prefix ? strlen(a->prefix) : 0;
        if (prefix_len > 0 && strncasecmp(v, a->prefix, prefix_len) == 0)
                v += prefix_len;
        n = trimmed_len(v);
        if (n != 2 * SHA256_LEN)
                return -EACCES;
        {
                char hex[2 * SHA256_LEN + 1];

                memcpy(hex, v, n);
                hex[n] = 0;
                if (hex_decode(hex, want, SHA256_LEN) < 0)
                        return -EACCES;
        }

        if (a->timestamp_header) {
                uint64_t when, tolerance, delta;

                t = req->header(req->userdata, a->timestamp_header);
                if (!t)
                        return -EACCES;
                t = skip_ws(t);
                n = trimmed_len(t);
                if (parse_timestamp(t, n, &when) < 0)
                        return -EACCES;
                tolerance = a->tolerance_usec > 0 ? a->tolerance_usec : 300 * USEC_PER_SEC;
                delta = when > req->now_usec ? when - req->now_usec : req->now_usec - when;
                if (delta > tolerance)
                        return -EACCES;
                ts = mem_strndup(t, n);
                if (!ts)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < a->n_secrets; i++) {
                uint8_t mac[SHA256_LEN];

                r = hmac_sha256(a->secrets[i], ts, req->body, req->body_len, mac);
                if (r < 0)
                        return r;
                ok |= memeq_secret(mac, sizeof(mac), want, sizeof(want));
        }
        return ok ? 0 : -EACCES;
}

/* True if the n bytes at v equal one of the secrets. */
static bool secret_matches(const SourceAuth *a, const char *v, size_t n) {
        bool ok = false;

        for (size_t i = 0; i < a->n_secrets; i++)
                ok |= memeq_secret(v, n, a->secrets[i], strlen(a->secrets[i]));
        return ok;
}

/* "Scheme credentials": returns the credentials when the scheme matches
 * (case-insensitively), else NULL. */
static const char *auth_scheme(const char *v, const char *scheme) {
        size_t n = strlen(scheme);

        v = skip_ws(v);
        if (strncasecmp(v, scheme, n) != 0 || (v[n] != ' ' && v[n] != '\t'))
                return NULL;
        return skip_ws(v + n);
}

static int check_bearer(const SourceAuth *a, const AuthRequest *req) {
        const char *v;

        v = req->header(req->userdata, "Authorization");
        if (!v)
                return -EACCES;
        v = auth_scheme(v, "Bearer");
        if (!v)
                return -EACCES;
        return secret_matches(a, v, trimmed_len(v)) ? 0 : -EACCES;
}

static int check_header_token(const SourceAuth *a, const AuthRequest *req) {
        const char *v;

        v = req->header(req->userdata, a->header);
        if (!v)
                return -EACCES;
        v = skip_ws(v);
        return secret_matches(a, v, trimmed_len(v)) ? 0 : -EACCES;
}

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Strict RFC 4648 base64 (padding optional); out holds n*3/4+1 bytes. */
static int base64_decode(const char *in, size_t n, uint8_t *out, size_t *ret_len) {
        uint32_t acc = 0;
        size_t len = 0, bits = 0;

        while (n > 0 && in[n - 1] == '=')
                n--;
        for (size_t i = 0; i < n; i++) {
                int v = base64_value(in[i]);

                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[len++] = (uint8_t) (acc >> bits);
                }
        }
        if (bits >= 6)
                return -EINVAL;
        *ret_len = len;
        return 0;
}

static int check_basic(const SourceAuth *a, const AuthRequest *req) {
        _cleanup_free_ uint8_t *decoded = NULL;
        const char *v;
        const uint8_t *colon;
        size_t n, len;
        bool user_ok, pass_ok;

        v = req->header(req->userdata, "Authorization");
        if (!v)
                return -EACCES;
        v = auth_scheme(v, "Basic");
        if (!v)
                return -EACCES;
        n = trimmed_len(v);
        if (n > AUTH_VALUE_MAX)
                return -EACCES;
        decoded = mem_malloc(n * 3 / 4 + 1);
        if (!decoded)
                return -ENOMEM;
        if (base64_decode(v, n, decoded, &len) < 0)
                return -EACCES;
        colon = memchr(decoded, ':', len);
        if (!colon || !a->username)
                return -EACCES;

        /* Both halves are compared whatever the first one gave. */
        user_ok = memeq_secret(decoded, (size_t) (colon - decoded), a->username, strlen(a->username));
        pass_ok = secret_matches(a, (const char *) colon + 1, len - (size_t) (colon - decoded) - 1);
        explicit_bzero(decoded, len);
        return (user_ok & pass_ok) ? 0 : -EACCES; /* & not &&: both compared, always */
}

static int check_mtls(const SourceAuth *a, const AuthRequest *req) {
        if (!req->client_cert_verified)
                return -EACCES;
        if (a->subject && (!req->client_cert_subject || !strstr(req->client_cert_subject, a->subject)))
                return -EACCES;
        return 0;
}

int auth_check(const SourceAuth *a, const AuthRequest *req) {
        if (!a || !req || !req->header)
                return -EINVAL;

        switch (a->method) {
        case AUTH_HMAC_SHA256:
        case AUTH_BEARER:
        case AUTH_HEADER_TOKEN:
        case AUTH_BASIC:
                if (a->n_secrets == 0 || !a->secrets)
                        return -EINVAL;
                break;
        default:
                break;
        }

        switch (a->method) {
        case AUTH_HMAC_SHA256:
                if (!a->header)
                        return -EINVAL;
                return check_hmac(a, req);
        case AUTH_BEARER:
                return check_bearer(a, req);
        case AUTH_HEADER_TOKEN:
                if (!a->header)
                        return -EINVAL;
                return check_header_token(a, req);
        case AUTH_BASIC:
                return check_basic(a, req);
        case AUTH_MTLS:
                return check_mtls(a, req);
        case AUTH_NONE:
                return 0;
        default:
                return -EINVAL;
        }
}
