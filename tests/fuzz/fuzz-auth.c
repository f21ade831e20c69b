/* The request path's authentication rung: auth_check() against a fixed set
 * of SourceAuth (hmac_sha256 with prefix and timestamp and two secrets,
 * hmac_sha256 bare, bearer, basic, header_token).
 *
 * Input: byte 0 picks the SourceAuth (bits 0-2) and, with bit 3, asks the
 * harness to sign the body itself with the source's last secret (so the
 * accepting path and the timestamp window run too). Then four lines, the
 * values of X-Sig, X-Ts, Authorization and X-Token (an empty line: header
 * absent); the rest is the body.
 *
 * Checked: the result is 0 or -EACCES; a signed request is accepted
 * exactly when its timestamp (seconds, or milliseconds from 1e11 up, with
 * no overflow) is within the tolerance of now. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "auth.h"
#include "config.h"
#include "fuzz.h"
#include "util.h"

#define NOW_USEC (1700000000ULL * USEC_PER_SEC)
#define TOLERANCE_USEC (90ULL * USEC_PER_SEC)

static char *hmac_secrets[] = { (char *) "old-secret", (char *) "s3cr3t-hmac-key", NULL };
static char *bearer_secrets[] = { (char *) "tok-abc.DEF_123", NULL };
static char *basic_secrets[] = { (char *) "p@ss:word", NULL };
static char *token_secrets[] = { (char *) "okta-verify-token", (char *) "rotated", NULL };

static const SourceAuth auths[] = {
        { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Sig", .prefix = (char *) "sha256=",
          .timestamp_header = (char *) "X-Ts", .tolerance_usec = TOLERANCE_USEC,
          .secrets = hmac_secrets, .n_secrets = 2 },
        { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Sig", .secrets = hmac_secrets + 1, .n_secrets = 1 },
        { .method = AUTH_BEARER, .secrets = bearer_secrets, .n_secrets = 1 },
        { .method = AUTH_BASIC, .username = (char *) "kibana", .secrets = basic_secrets, .n_secrets = 1 },
        { .method = AUTH_HEADER_TOKEN, .header = (char *) "X-Token", .secrets = token_secrets, .n_secrets = 2 },
};

static const char *const header_names[] = { "X-Sig", "X-Ts", "Authorization", "X-Token" };

typedef struct Headers {
        char *values[4];
} Headers;

static const char *lookup(void *userdata, const char *name) {
        Headers *h = userdata;

        for (size_t i = 0; i < 4; i++)
                if (strcasecmp(name, header_names[i]) == 0)
                        return h->values[i];
        return NULL;
}

/* The timestamp window, computed independently of auth.c. */
static bool timestamp_fresh(const char *t) {
        uint64_t v = 0, when;
        size_t n;

        if (!t)
                return false;
        while (*t == ' ' || *t == '\t')
                t++;
        n = strlen(t);
        while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
                n--;
        if (n == 0 || n > 19)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char) t[i]))
                        return false;
                v = v * 10 + (uint64_t) (t[i] - '0');
        }
        if (__builtin_mul_overflow(v, v >= 100000000000ULL ? USEC_PER_MSEC : USEC_PER_SEC, &when))
                return false;
        return (when > NOW_USEC ? when - NOW_USEC : NOW_USEC - when) <= TOLERANCE_USEC;
}

static char *trimmed_dup(const char *t) {
        size_t n;

        while (*t == ' ' || *t == '\t')
                t++;
        n = strlen(t);
        while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
                n--;
        return mem_strndup(t, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *p, *end = data + size;
        const SourceAuth *a;
        Headers h = {};
        AuthRequest req;
        bool sign;
        int r;

        if (size < 1)
                return 0;
        a = &auths[(data[0] & 7) % (sizeof(auths) / sizeof(auths[0]))];
        sign = (data[0] & 8) && a->method == AUTH_HMAC_SHA256;
        p = data + 1;
        for (size_t i = 0; i < 4 && p < end; i++) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);

                if (n > 0) {
                        h.values[i] = mem_strndup((const char *) p, n);
                        if (!h.values[i])
                                abort();
                }
                p = nl ? nl + 1 : end;
        }

        if (sign) {
                char hex[65], *ts = NULL, *v;

                if (a->timestamp_header && h.values[1]) {
                        ts = trimmed_dup(h.values[1]);
                        if (!ts)
                                abort();
                }
                if (auth_hmac_sha256_hex(a->secrets[a->n_secrets - 1], ts, p, (size_t) (end - p), hex) < 0)
                        abort();
                mem_free(ts);
                v = mem_malloc(strlen(a->prefix ? a->prefix : "") + sizeof(hex));
                if (!v)
                        abort();
                strcpy(v, a->prefix ? a->prefix : "");
                strcat(v, hex);
                mem_free(h.values[0]);
                h.values[0] = v;
        }

        req = (AuthRequest) {
                .header = lookup,
                .userdata = &h,
                .body = p,
                .body_len = (size_t) (end - p),
                .now_usec = NOW_USEC,
        };
        r = auth_check(a, &req);
        if (r != 0 && r != -EACCES)
                abort();
        if (sign && (r == 0) != (!a->timestamp_header || timestamp_fresh(h.values[1]))) {
                fprintf(stderr, "signed request %s with timestamp '%s'\n",
                        r == 0 ? "accepted" : "refused", h.values[1] ? h.values[1] : "(none)");
                abort();
        }

        for (size_t i = 0; i < 4; i++)
                mem_free(h.values[i]);
        return 0;
}
