#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "auth.h"
#include "config.h"
#include "harness.h"
#include "util.h"

#define NOW (1764210125ULL * USEC_PER_SEC)

typedef struct Headers {
        const char *names[4];
        const char *values[4];
} Headers;

static const char *lookup(void *userdata, const char *name) {
        Headers *h = userdata;

        for (size_t i = 0; i < 4 && h->names[i]; i++)
                if (strcasecmp(h->names[i], name) == 0)
                        return h->values[i];
        return NULL;
}

static int check(const SourceAuth *a, Headers *h, const char *body) {
        AuthRequest req = {
                .header = lookup,
                .userdata = h,
                .body = body,
                .body_len = strlen(body),
                .now_usec = NOW,
        };
        return auth_check(a, &req);
}

static char *secrets_one[] = { (char *) "s3cret-token", NULL };
static char *secrets_two[] = { (char *) "old-secret-value", (char *) "new-secret-value", NULL };

TEST(hmac_known_vector) {
        char hex[65];

        /* RFC 4231 test case 2. */
        ASSERT_OK(auth_hmac_sha256_hex("Jefe", NULL, "what do ya want for nothing?", 28, hex));
        ASSERT_STREQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(hmac_accept_reject) {
        SourceAuth a = { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Sig", .secrets = secrets_two, .n_secrets = 2 };
        const char *body = "{\"a\":1}";
        char hex[65], upper[65];
        Headers h = { { "X-Sig" }, { hex } };

        /* Second secret (rotation) and first secret both pass. */
        ASSERT_OK(auth_hmac_sha256_hex("new-secret-value", NULL, body, strlen(body), hex));
        ASSERT_OK(check(&a, &h, body));
        ASSERT_OK(auth_hmac_sha256_hex("old-secret-value", NULL, body, strlen(body), hex));
        ASSERT_OK(check(&a, &h, body));

        /* Upper-case hex is the same MAC. */
        for (size_t i = 0; i <= 64; i++)
                upper[i] = (char) toupper((unsigned char) hex[i]);
        h.values[0] = upper;
        ASSERT_OK(check(&a, &h, body));
        h.values[0] = hex;

        /* Another body, another secret, garbage, absence. */
        ASSERT_ERR(check(&a, &h, "{\"a\":2}"), EACCES);
        ASSERT_OK(auth_hmac_sha256_hex("wrong", NULL, body, strlen(body), hex));
        ASSERT_ERR(check(&a, &h, body), EACCES);
        h.values[0] = "zz";
        ASSERT_ERR(check(&a, &h, body), EACCES);
        h.values[0] = "";
        ASSERT_ERR(check(&a, &h, body), EACCES);
        h.names[0] = "X-Other";
        ASSERT_ERR(check(&a, &h, body), EACCES);
}

TEST(hmac_prefix) {
        SourceAuth a = { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Hub-Signature-256",
                         .prefix = (char *) "sha256=", .secrets = secrets_one, .n_secrets = 1 };
        const char *body = "{}";
        char hex[65], value[80];
        Headers h = { { "x-hub-signature-256" }, { value } };

        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", NULL, body, strlen(body), hex));
        snprintf(value, sizeof(value), "sha256=%s", hex);
        ASSERT_OK(check(&a, &h, body));
        snprintf(value, sizeof(value), "sha1=%s", hex);
        ASSERT_ERR(check(&a, &h, body), EACCES);
        snprintf(value, sizeof(value), "sha256=%.63s", hex);
        ASSERT_ERR(check(&a, &h, body), EACCES);
}

TEST(hmac_timestamp) {
        SourceAuth a = { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Sig", .timestamp_header = (char *) "X-Ts",
                         .tolerance_usec = 300 * USEC_PER_SEC, .secrets = secrets_one, .n_secrets = 1 };
        const char *body = "{\"alert\":true}";
        char hex[65], ts[32];
        Headers h = { { "X-Sig", "X-Ts" }, { hex, ts } };

        /* Within the window, either side of now. */
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_SEC - 200));
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", ts, body, strlen(body), hex));
        ASSERT_OK(check(&a, &h, body));
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_SEC + 200));
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", ts, body, strlen(body), hex));
        ASSERT_OK(check(&a, &h, body));

        /* Milliseconds are understood. */
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_MSEC - 1000));
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", ts, body, strlen(body), hex));
        ASSERT_OK(check(&a, &h, body));

        /* A replay older than the tolerance, correctly signed, is refused. */
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_SEC - 301));
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", ts, body, strlen(body), hex));
        ASSERT_ERR(check(&a, &h, body), EACCES);

        /* The MAC covers the timestamp: changing it breaks the MAC. */
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_SEC));
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", ts, body, strlen(body), hex));
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) (NOW / USEC_PER_SEC - 1));
        ASSERT_ERR(check(&a, &h, body), EACCES);

        /* A MAC of the body alone is not enough. */
        ASSERT_OK(auth_hmac_sha256_hex("s3cret-token", NULL, body, strlen(body), hex));
        ASSERT_ERR(check(&a, &h, body), EACCES);

        /* Missing or malformed timestamp. */
        snprintf(ts, sizeof(ts), "soon");
        ASSERT_ERR(check(&a, &h, body), EACCES);
        h.names[1] = "X-Nothing";
        ASSERT_ERR(check(&a, &h, body), EACCES);
}

TEST(bearer) {
        SourceAuth a = { .method = AUTH_BEARER, .secrets = secrets_one, .n_secrets = 1 };
        Headers h = { { "Authorization" }, { "Bearer s3cret-token" } };

        ASSERT_OK(check(&a, &h, "{}"));
        h.values[0] = "bearer   s3cret-token ";
        ASSERT_OK(check(&a, &h, "{}"));
        h.values[0] = "Bearer s3cret-toke";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Bearer s3cret-token2";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Basic s3cret-token";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "s3cret-token";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Bearer ";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.names[0] = "X-Auth";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
}

TEST(header_token) {
        SourceAuth a = { .method = AUTH_HEADER_TOKEN, .header = (char *) "X-Okta-Token", .secrets = secrets_one, .n_secrets = 1 };
        Headers h = { { "x-okta-token" }, { "s3cret-token" } };

        ASSERT_OK(check(&a, &h, "{}"));
        h.values[0] = "S3CRET-TOKEN";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.names[0] = "Authorization";
        h.values[0] = "s3cret-token";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
}

TEST(basic) {
        SourceAuth a = { .method = AUTH_BASIC, .username = (char *) "splunk", .secrets = secrets_one, .n_secrets = 1 };
        Headers h = { { "Authorization" }, { NULL } };

        h.values[0] = "Basic c3BsdW5rOnMzY3JldC10b2tlbg=="; /* splunk:s3cret-token */
        ASSERT_OK(check(&a, &h, "{}"));
        h.values[0] = "basic c3BsdW5rOnMzY3JldC10b2tlbg"; /* without padding */
        ASSERT_OK(check(&a, &h, "{}"));
        h.values[0] = "Basic c3BsdW5rMjpzM2NyZXQtdG9rZW4="; /* splunk2:s3cret-token: wrong user */
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Basic c3BsdW5rOnMzY3JldA=="; /* splunk:s3cret */
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Basic c3BsdW5r"; /* no colon */
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Basic !!!!";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
        h.values[0] = "Bearer c3BsdW5rOnMzY3JldC10b2tlbg==";
        ASSERT_ERR(check(&a, &h, "{}"), EACCES);
}

TEST(mtls) {
        SourceAuth a = { .method = AUTH_MTLS };
        Headers h = { { NULL } };
        AuthRequest req = { .header = lookup, .userdata = &h, .body = "{}", .body_len = 2, .now_usec = NOW };

        ASSERT_ERR(auth_check(&a, &req), EACCES);
        req.client_cert_verified = true;
        ASSERT_OK(auth_check(&a, &req));

        a.subject = (char *) "CN=siem.example.com";
        ASSERT_ERR(auth_check(&a, &req), EACCES);
        req.client_cert_subject = "O=Example,CN=siem.example.com";
        ASSERT_OK(auth_check(&a, &req));
        req.client_cert_subject = "O=Example,CN=other.example.com";
        ASSERT_ERR(auth_check(&a, &req), EACCES);
        req.client_cert_verified = false;
        req.client_cert_subject = "O=Example,CN=siem.example.com";
        ASSERT_ERR(auth_check(&a, &req), EACCES);
}

TEST(none_and_missing_secrets) {
        SourceAuth none = { .method = AUTH_NONE };
        SourceAuth bearer = { .method = AUTH_BEARER };
        Headers h = { { "Authorization" }, { "Bearer x" } };

        ASSERT_OK(check(&none, &h, "{}"));
        /* A config loaded without secrets cannot authenticate anything. */
        ASSERT_ERR(check(&bearer, &h, "{}"), EINVAL);
}

TEST(constant_time_helper) {
        /* The comparisons rely on memeq_secret(): equal only for equal
         * length and contents. */
        ASSERT_TRUE(memeq_secret("abc", 3, "abc", 3));
        ASSERT_FALSE(memeq_secret("abc", 3, "abd", 3));
        ASSERT_FALSE(memeq_secret("abc", 3, "abcd", 4));
        ASSERT_FALSE(memeq_secret("", 0, "a", 1));
}

int main(void) {
        RUN(hmac_known_vector);
        RUN(hmac_accept_reject);
        RUN(hmac_prefix);
        RUN(hmac_timestamp);
        RUN(bearer);
        RUN(header_token);
        RUN(basic);
        RUN(mtls);
        RUN(none_and_missing_secrets);
        RUN(constant_time_helper);
        HARNESS_DONE();
}
