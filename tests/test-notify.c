/* notify.c without the store: how answers are classified, the backoff, and
 * one delivery of each HTTP sink type through notify_deliver() to the real
 * fake receiver (tests/fakehook/fakehook.py) on an sd_event loop, whose
 * signature our own inbound hmac_sha256 check (auth_check) accepts. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "fake1p-harness.h"
#include "http_client.h"
#include "notify.h"
#include "remedyd-limits.h"
#include "store.h"

TEST(result) {
        static const struct {
                int type;
                int error;
                long status;
                int want_error;
                bool permanent;
        } cases[] = {
                { NOTIFY_SLACK, 0, 200, 0, false },
                { NOTIFY_WEBHOOK, 0, 204, 0, false },
                { NOTIFY_WEBHOOK, 0, 503, -EPROTO, false },
                { NOTIFY_WEBHOOK, 0, 429, -EPROTO, false },
                { NOTIFY_WEBHOOK, 0, 408, -EPROTO, false },
                { NOTIFY_SLACK, 0, 404, -EPROTO, true },
                { NOTIFY_SLACK, 0, 400, -EPROTO, true },
                { NOTIFY_SLACK, 0, 301, -EPROTO, true },
                { NOTIFY_WEBHOOK, -ETIMEDOUT, 0, -ETIMEDOUT, false },
                { NOTIFY_WEBHOOK, -ECONNREFUSED, 0, -ECONNREFUSED, false },
                { NOTIFY_EMAIL, 0, 250, 0, false },
                { NOTIFY_EMAIL, -EIO, 451, -EIO, false },
                { NOTIFY_EMAIL, -EIO, 550, -EIO, true },
                { NOTIFY_EMAIL, -ECONNREFUSED, 0, -ECONNREFUSED, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                HttpResponse resp = { .error = cases[i].error, .status = cases[i].status, .body = "" };
                NotifyResult res;

                notify_result(cases[i].type, &resp, &res);
                ASSERT_EQ(res.error, cases[i].want_error);
                ASSERT_EQ(res.permanent, cases[i].permanent);
                if (res.error < 0)
                        ASSERT_TRUE(res.message[0] != 0);
        }
}

TEST(backoff) {
        for (unsigned a = 1; a <= LIMIT_NOTIFY_ATTEMPTS; a++) {
                uint64_t d = notify_backoff_usec(a, 0);
                uint64_t full = USEC_PER_SEC << (a - 1 < 20 ? a - 1 : 20);

                if (full > 15 * 60 * USEC_PER_SEC)
                        full = 15 * 60 * USEC_PER_SEC;
                ASSERT_TRUE(d >= full / 2 && d <= full);
        }
        ASSERT_EQ(notify_backoff_usec(1, 30 * USEC_PER_SEC), 30 * USEC_PER_SEC);
        ASSERT_EQ(notify_backoff_usec(1, 86400 * USEC_PER_SEC), 15 * 60 * USEC_PER_SEC);
}

typedef struct Done {
        bool done;
        NotifyResult res;
        int type;
} Done;

static void on_done(HttpClient *c, const HttpResponse *resp, void *userdata) {
        Done *d = userdata;

        notify_result(d->type, resp, &d->res);
        d->done = true;
}

/* fakehook records header names lower-cased */
static const char *hook_header(void *userdata, const char *name) {
        char lower[64];
        size_t i;

        for (i = 0; name[i] && i + 1 < sizeof(lower); i++)
                lower[i] = (char) tolower((unsigned char) name[i]);
        lower[i] = 0;
        return req_header(userdata, lower);
}

TEST(deliver) {
        static char script[4096];
        const char *root = getenv("REMEDYD_SOURCE_ROOT");
        const char *const extra[] = { "--hmac-secret", "webhook-signing-secret", NULL };
        char url[128];
        char *hmac_secrets[] = { (char *) "webhook-signing-secret", NULL };
        SourceAuth inbound = { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Remedyd-Signature",
                               .prefix = (char *) "sha256=", .secrets = hmac_secrets, .n_secrets = 1 };
        StoreNotification n = {
                .id = "0123456789abcdef0123456789abcdef",
                .outcome = ACTION_STATUS_DONE,
                .action = { .id = "fedcba9876543210fedcba9876543210", .rule = (char *) "r1", .action = ACTION_SUSPEND,
                            .user = (char *) "alice@example.com", .status = ACTION_STATUS_DONE },
        };
        NotifySink k = { .name = (char *) "feed", .url = url, .timeout_usec = 5 * USEC_PER_SEC,
                         .hmac_header = (char *) "X-Remedyd-Signature", .hmac_secret = (char *) "webhook-signing-secret" };
        sd_event *e = NULL;
        HttpClient *c = NULL;
        json_object *reqs;
        Fake f;

        snprintf(script, sizeof(script), "%s/tests/fakehook/fakehook.py", root ? root : ".");
        if (access(script, R_OK) < 0) {
                fprintf(stderr, "fakehook.py not found, skipping\n");
                return;
        }
        fake_start_script(&f, script, extra);
        snprintf(url, sizeof(url), "%s/remedyd", f.base_url);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(http_client_new(e, &c));

        for (int t = NOTIFY_SLACK; t <= NOTIFY_WEBHOOK; t++) {
                Done d = { .type = t };

                k.type = (NotifyType) t;
                ASSERT_OK(notify_deliver(c, &k, &n, on_done, &d, NULL));
                loop_until(e, &d.done, 20);
                ASSERT_EQ(d.res.error, 0);
        }
        reqs = fake_requests(&f);
        ASSERT_EQ(json_object_array_length(reqs), 2);
        for (size_t i = 0; i < 2; i++) {
                json_object *r = json_object_array_get_idx(reqs, i), *body;
                const char *b;

                ASSERT_STREQ(req_header(r, "x-remedyd-delivery"), "0123456789abcdef0123456789abcdef");
                ASSERT_STREQ(req_header(r, "content-type"), "application/json");
                ASSERT_TRUE(json_object_object_get_ex(r, "body", &body));
                b = json_object_get_string(body);
                if (i == 0) {
                        /* slack: unsigned */
                        ASSERT_NULL(req_header(r, "x-remedyd-signature"));
                        ASSERT_CONTAINS(b, "Suspended alice@example.com (rule r1)");
                        continue;
                }
                /* webhook: signed as our inbound check wants it */
                {
                        AuthRequest ar = { .header = hook_header, .userdata = r, .body = b, .body_len = strlen(b) };
                        char *wrong[] = { (char *) "another-secret", NULL };
                        SourceAuth bad = inbound;

                        json_object *ok;

                        ASSERT_TRUE(json_object_object_get_ex(r, "hmac_ok", &ok) && json_object_get_boolean(ok));
                        ASSERT_OK(auth_check(&inbound, &ar));
                        bad.secrets = wrong;
                        ASSERT_ERR(auth_check(&bad, &ar), EACCES);
                }
        }
        json_object_put(reqs);

        /* a receiver that is gone: a transient error */
        fake_stop(&f);
        {
                Done d = { .type = NOTIFY_WEBHOOK };

                ASSERT_OK(notify_deliver(c, &k, &n, on_done, &d, NULL));
                loop_until(e, &d.done, 20);
                ASSERT_ERR(d.res.error, ECONNREFUSED);
                ASSERT_FALSE(d.res.permanent);
        }
        http_client_free(c);
        sd_event_unref(e);
}

int main(void) {
        RUN(result);
        RUN(backoff);
        RUN(deliver);
        HARNESS_DONE();
}
