/* users_api + oauth + http_client against the fake 1Password API
 * (tests/fake1p/fake1p.py), driven on a real sd_event loop. */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "config.h"
#include "fake1p-harness.h"
#include "harness.h"
#include "http_client.h"
#include "log.h"
#include "oauth.h"
#include "users_api.h"
#include "util.h"
#include "version.h"

#define ACCOUNT "XLQMR47VZPBKJHSGWNCYFDE3T9"

static Fake fake;
static sd_event *event;

typedef struct Capture {
        bool done;
        int error;
        long status;
        bool transient;
        unsigned attempts;
        uint64_t retry_after;
        char api_code[64];
        char api_message[256];
        size_t n_users;
        char next[1024];
        bool has_next;
        char user_id[64];
        char user_email[128];
        OpUserState user_state;
} Capture;

static void on_result(UsersApi *api, const UsersApiResult *r, void *userdata) {
        Capture *c = userdata;

        *c = (Capture) {
                .done = true,
                .error = r->error,
                .status = r->http_status,
                .transient = r->transient,
                .attempts = r->attempts,
                .retry_after = r->retry_after_usec,
                .n_users = r->n_users,
                .has_next = r->next_page_token != NULL,
        };
        snprintf(c->api_code, sizeof(c->api_code), "%s", r->api_code ? r->api_code : "");
        snprintf(c->api_message, sizeof(c->api_message), "%s", r->api_message ? r->api_message : "");
        snprintf(c->next, sizeof(c->next), "%s", r->next_page_token ? r->next_page_token : "");
        if (r->user) {
                snprintf(c->user_id, sizeof(c->user_id), "%s", r->user->id ? r->user->id : "");
                snprintf(c->user_email, sizeof(c->user_email), "%s", r->user->email ? r->user->email : "");
                c->user_state = r->user->state;
        }
}

static void config_init(Config *c, const char *base_url, ApiVersion v, const char *secret) {
        static char base_buf[128], secret_buf[128], account_buf[] = ACCOUNT, id_buf[] = "test-client-id";

        snprintf(base_buf, sizeof(base_buf), "%s", base_url);
        snprintf(secret_buf, sizeof(secret_buf), "%s", secret);
        memset(c, 0, sizeof(*c));
        c->onepassword.base_url = base_buf;
        c->onepassword.api_version = v;
        c->onepassword.account_id = account_buf;
        c->onepassword.client_id = id_buf;
        c->onepassword.client_secret = secret_buf;
        c->onepassword.timeout_usec = 5 * USEC_PER_SEC;
}

static UsersApi *api_new(ApiVersion v, const char *secret) {
        Config c;
        UsersApi *api = NULL;

        config_init(&c, fake.base_url, v, secret);
        ASSERT_OK(users_api_new(event, &c, NULL, &api));
        return api;
}

static Capture do_get(UsersApi *api, const char *id, unsigned max_attempts) {
        UsersApiCallOptions o = { .max_attempts = max_attempts };
        Capture c = {};

        ASSERT_OK(users_api_get(api, id, &o, on_result, &c));
        ASSERT_FALSE(c.done); /* never called back from inside the call */
        loop_until(event, &c.done, 60);
        return c;
}

static Capture do_list(UsersApi *api, const char *filter, unsigned size, const char *token, unsigned max_attempts) {
        UsersApiCallOptions o = { .max_attempts = max_attempts };
        Capture c = {};

        ASSERT_OK(users_api_list(api, filter, size, token, &o, on_result, &c));
        loop_until(event, &c.done, 60);
        return c;
}

TEST(retry_after_parse) {
        uint64_t u;
        uint64_t now = 1700000000ULL * USEC_PER_SEC;

        ASSERT_OK(http_client_parse_retry_after("7", now, &u));
        ASSERT_EQ(u, 7 * USEC_PER_SEC);
        ASSERT_OK(http_client_parse_retry_after("  0 ", now, &u));
        ASSERT_EQ(u, 0);
        /* 1700000000 = Tue, 14 Nov 2023 22:13:20 GMT */
        ASSERT_OK(http_client_parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now, &u));
        ASSERT_EQ(u, 10 * USEC_PER_SEC);
        ASSERT_OK(http_client_parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now, &u));
        ASSERT_EQ(u, 0);
        ASSERT_ERR(http_client_parse_retry_after("soon", now, &u), EINVAL);
        ASSERT_ERR(http_client_parse_retry_after("", now, &u), EINVAL);
        ASSERT_OK(http_client_parse_retry_after("99999999999999999999", now, &u));
        ASSERT_EQ(u, 86400 * USEC_PER_SEC);
}

TEST(backoff_bounds) {
        for (unsigned a = 1; a < 20; a++) {
                uint64_t d = http_client_backoff_usec(a, 500 * USEC_PER_MSEC, 30 * USEC_PER_SEC), full;

                full = 500 * USEC_PER_MSEC << (a - 1 < 10 ? a - 1 : 10);
                if (full > 30 * USEC_PER_SEC)
                        full = 30 * USEC_PER_SEC;
                ASSERT_TRUE(d >= full / 2 && d <= full);
        }
}

TEST(error_mapping) {
        ASSERT_EQ(http_client_curl_error_to_errno(CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
        ASSERT_EQ(http_client_curl_error_to_errno(CURLE_COULDNT_CONNECT), -ECONNREFUSED);
        ASSERT_EQ(http_client_curl_error_to_errno(CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
        ASSERT_EQ(http_client_curl_error_to_errno(CURLE_PEER_FAILED_VERIFICATION), -EPROTO);
        ASSERT_EQ(http_client_curl_error_to_errno(CURLE_GOT_NOTHING), -ECONNRESET);
}

/* The parsers on_response() uses, without a server. */
TEST(parse_response) {
        static const char list[] =
                "{\"results\":[{\"id\":\"U1\",\"email\":\"a@example.com\",\"state\":\"SUSPENDED\"},7,"
                "{\"id\":\"U2\",\"state\":\"WEIRD\"}],\"next_page_token\":\"p2\"}";
        static const char last[] = "{\"results\":[],\"next_page_token\":\"\"}";
        static const char user[] = "{\"id\":\"U1\",\"email\":\"a@example.com\",\"state\":\"ACTIVE\"}";
        static const char err[] = "{\"code\":409,\"message\":\"no_owner_remain\"}";
        static const char nul_token[] = "{\"results\":[],\"next_page_token\":\"\\u0000abc\"}";
        static const char nul_id[] = "{\"id\":\"U1\\u0000X\",\"email\":\"a@example.com\"}";
        static const char nul_email[] = "{\"id\":\"U1\",\"email\":\"a@example.com\\u0000.evil\"}";
        static const char tok_nul[] = "{\"access_token\":\"t\\u0000u\"}";
        static const char tok_ok[] = "{\"access_token\":\"t\",\"token_type\":\"Bearer\",\"expires_in\":\"900\"}";
        static const char tok_mac[] = "{\"access_token\":\"t\",\"token_type\":\"mac\"}";
        static const char tok_crlf[] = "{\"access_token\":\"a\\r\\nb\"}";
        static const char tok_negative[] = "{\"access_token\":\"t\",\"expires_in\":-5}";
        UsersApiResult r = {};
        char *token = NULL;
        uint64_t life = 0;

        ASSERT_OK(users_api_parse_response(USERS_API_LIST, 200, list, strlen(list), &r));
        ASSERT_EQ(r.n_users, 2u);      /* the non-object entry is skipped */
        ASSERT_STREQ(r.users[0].id, "U1");
        ASSERT_EQ(r.users[0].state, OP_USER_STATE_SUSPENDED);
        ASSERT_EQ(r.users[1].state, OP_USER_STATE_UNSPECIFIED);
        ASSERT_STREQ(r.next_page_token, "p2");
        {
                json_object *into = json_object_new_array();

                ASSERT_OK(users_api_page_collect(&r, "A@example.com", into, 10));
                ASSERT_EQ(json_object_array_length(into), 1u);   /* U2 has no email, 7 is no object */
                ASSERT_OK(users_api_page_collect(&r, NULL, into, 10));
                ASSERT_EQ(json_object_array_length(into), 3u);
                ASSERT_EQ(users_api_page_collect(&r, NULL, into, 4), -E2BIG);
                json_object_put(into);
        }
        users_api_result_done(&r);
        ASSERT_OK(users_api_parse_response(USERS_API_LIST, 200, last, strlen(last), &r));
        ASSERT_EQ(r.n_users, 0u);
        ASSERT_NULL(r.next_page_token);
        users_api_result_done(&r);
        ASSERT_OK(users_api_parse_response(USERS_API_SUSPEND, 200, user, strlen(user), &r));
        ASSERT_STREQ(r.user->email, "a@example.com");
        ASSERT_EQ(r.user->state, OP_USER_STATE_ACTIVE);
        users_api_result_done(&r);
        /* fuzz-users-api-parsers/crash-nul-in-page-token: "\u0000abc" read
         * as "" would restart the listing for ever */
        ASSERT_EQ(users_api_parse_response(USERS_API_LIST, 200, nul_token, strlen(nul_token), &r), -EBADMSG);
        users_api_result_done(&r);
        ASSERT_OK(users_api_parse_response(USERS_API_GET, 200, nul_id, strlen(nul_id), &r));
        ASSERT_NULL(r.user->id);       /* not "U1" */
        ASSERT_STREQ(r.user->email, "a@example.com");
        users_api_result_done(&r);
        ASSERT_OK(users_api_parse_response(USERS_API_GET, 200, nul_email, strlen(nul_email), &r));
        ASSERT_NULL(r.user->email);
        ASSERT_FALSE(users_api_user_has_email(r.body, "a@example.com"));
        users_api_result_done(&r);
        ASSERT_EQ(users_api_parse_response(USERS_API_GET, 200, "[1]", 3, &r), -EBADMSG);
        users_api_result_done(&r);
        ASSERT_EQ(users_api_parse_response(USERS_API_GET, 200, "", 0, &r), -EBADMSG);
        users_api_result_done(&r);
        ASSERT_EQ(users_api_parse_response(USERS_API_SUSPEND, 409, err, strlen(err), &r), -EREMOTEIO);
        ASSERT_STREQ(r.api_code, "409");
        ASSERT_STREQ(r.api_message, "no_owner_remain");
        ASSERT_NULL(r.user);
        users_api_result_done(&r);
        ASSERT_EQ(users_api_parse_response(USERS_API_GET, 404, "not json", 8, &r), -ENOENT);
        ASSERT_NULL(r.api_code);
        users_api_result_done(&r);
        ASSERT_EQ(users_api_parse_response(USERS_API_LIST, 429, "", 0, &r), -EBUSY);
        users_api_result_done(&r);

        ASSERT_OK(oauth_parse_token(tok_ok, strlen(tok_ok), &token, &life));
        ASSERT_STREQ(token, "t");
        ASSERT_EQ(life, 900u);
        mem_free(token);
        token = NULL;
        ASSERT_EQ(oauth_parse_token(tok_mac, strlen(tok_mac), &token, &life), -EBADMSG);
        ASSERT_EQ(oauth_parse_token(tok_crlf, strlen(tok_crlf), &token, &life), -EBADMSG);
        ASSERT_EQ(oauth_parse_token(tok_nul, strlen(tok_nul), &token, &life), -EBADMSG);
        ASSERT_NULL(token);
        ASSERT_OK(oauth_parse_token(tok_negative, strlen(tok_negative), &token, &life));
        ASSERT_EQ(life, 1u);   /* clamped */
        mem_free(token);
}

TEST(token_fetched_and_reused) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        char id[64], expect_auth[128], b64[96];
        json_object *reqs;
        Capture c;
        int tokens = 0, gets = 0;

        fake_clear(&fake);
        fake_user_id(&fake, "user1@example.com", id);
        for (int i = 0; i < 3; i++) {
                c = do_get(api, id, 0);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.status, 200);
                ASSERT_STREQ(c.user_id, id);
                ASSERT_STREQ(c.user_email, "user1@example.com");
                ASSERT_EQ(c.user_state, OP_USER_STATE_ACTIVE);
        }
        EVP_EncodeBlock((unsigned char *) b64, (const unsigned char *) "test-client-id:test-client-secret", 33);
        snprintf(expect_auth, sizeof(expect_auth), "Basic %s", b64);

        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);
                const char *op = req_str(r, "op");

                if (strcmp(op, "token") == 0) {
                        tokens++;
                        ASSERT_STREQ(req_str(r, "path"), "/v1beta1/users/oauth2/token");
                        ASSERT_STREQ(req_header(r, "authorization"), expect_auth);
                        ASSERT_STREQ(req_header(r, "content-type"), "application/x-www-form-urlencoded");
                        ASSERT_STREQ(req_str(r, "body"), "grant_type=client_credentials");
                } else if (strcmp(op, "get") == 0) {
                        gets++;
                        ASSERT_CONTAINS(req_header(r, "authorization"), "Bearer ");
                        ASSERT_STREQ(req_header(r, "user-agent"), "remedyd/" REMEDYD_VERSION);
                        ASSERT_CONTAINS(req_str(r, "path"), "/v1beta1/accounts/" ACCOUNT "/users/");
                }
        }
        json_object_put(reqs);
        ASSERT_EQ(tokens, 1);
        ASSERT_EQ(gets, 3);

        {
                UsersApiTokenState ts;
                users_api_token_state(api, &ts);
                ASSERT_TRUE(ts.valid);
                ASSERT_TRUE(ts.last_request_ok);
                ASSERT_TRUE(ts.expires_in_seconds > 800 && ts.expires_in_seconds <= 900);
        }
        users_api_free(api);
}

TEST(v1_paths) {
        UsersApi *api = api_new(API_VERSION_V1, "test-client-secret");
        json_object *reqs;
        Capture c;

        fake_clear(&fake);
        c = do_list(api, NULL, 10, NULL, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.n_users, 10);
        reqs = fake_requests(&fake);
        ASSERT_EQ(json_object_array_length(reqs), 2);
        ASSERT_STREQ(req_str(json_object_array_get_idx(reqs, 0), "path"), "/v1/oauth/token");
        ASSERT_STREQ(req_str(json_object_array_get_idx(reqs, 1), "path"), "/v1/accounts/" ACCOUNT "/users");
        json_object_put(reqs);
        users_api_free(api);
}

TEST(paging_2500_users) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        char token[1024] = "";
        size_t total = 0, pages = 0;
        json_object *reqs;

        fake_clear(&fake);
        for (;;) {
                Capture c = do_list(api, "user.isActive()", 1000, token[0] ? token : NULL, 0);

                ASSERT_EQ(c.error, 0);
                total += c.n_users;
                pages++;
                if (!c.has_next)
                        break;
                ASSERT_TRUE(pages < 10);
                snprintf(token, sizeof(token), "%s", c.next);
        }
        ASSERT_EQ(pages, 3);
        ASSERT_EQ(total, 2500);
        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);
                if (strcmp(req_str(r, "op"), "list") != 0)
                        continue;
                ASSERT_EQ(req_status(r), 200);
                ASSERT_STREQ(req_query(r, "max_page_size"), "1000");
                ASSERT_STREQ(req_query(r, "filter"), "user.isActive()");
        }
        json_object_put(reqs);
        ASSERT_EQ(fake_count(&fake, "list"), 3);
        users_api_free(api);
}

TEST(expired_token_401_refresh_retry_once) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        char id[64];
        Capture c;

        fake_user_id(&fake, "user2@example.com", id);
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        fake_clear(&fake);
        fake_post(&fake, "/_fake/expire-tokens", "{}");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.status, 200);
        ASSERT_EQ(c.attempts, 2);
        ASSERT_EQ(fake_count(&fake, "token"), 1);
        ASSERT_EQ(fake_count(&fake, "get"), 2);

        /* A token the API keeps refusing: one retry only, then -EACCES. */
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"get\",\"status\":401,\"times\":5}]");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, -EACCES);
        ASSERT_EQ(c.status, 401);
        ASSERT_EQ(fake_count(&fake, "get"), 2);
        ASSERT_EQ(fake_count(&fake, "token"), 1);
        users_api_free(api);
}

TEST(refresh_before_expiry) {
        UsersApi *api;
        json_object *reqs;
        char id[64];
        Capture c;
        uint64_t t0, deadline;

        fake_post(&fake, "/_fake/config", "{\"token_lifetime\": 3}");
        api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        fake_user_id(&fake, "user3@example.com", id);
        fake_clear(&fake);
        t0 = now_usec(CLOCK_MONOTONIC);
        /* Calls keep coming for 7 s (two token lifetimes and more): the
         * token is renewed ahead of time, so no call ever sees a 401. */
        deadline = t0 + 7 * USEC_PER_SEC;
        while (now_usec(CLOCK_MONOTONIC) < deadline) {
                c = do_get(api, id, 1);
                ASSERT_EQ(c.error, 0);
                ASSERT_EQ(c.attempts, 1);
                /* Spin the loop a little between calls (timers fire here). */
                for (int i = 0; i < 3; i++)
                        ASSERT_OK(sd_event_run(event, 100 * USEC_PER_MSEC));
        }
        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++)
                ASSERT_TRUE(req_status(json_object_array_get_idx(reqs, i)) != 401);
        json_object_put(reqs);
        /* 3 s tokens renewed at 2.4 s: 3 or 4 token requests in 7 s. */
        ASSERT_TRUE(fake_count(&fake, "token") >= 3 && fake_count(&fake, "token") <= 4);
        fake_post(&fake, "/_fake/config", "{\"token_lifetime\": 900}");
        users_api_free(api);
}

TEST(retry_after_429) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        char id[64];
        Capture c;
        uint64_t t0;

        fake_user_id(&fake, "user4@example.com", id);
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults",
                  "[{\"op\":\"get\",\"status\":429,\"headers\":{\"Retry-After\":\"1\"},\"times\":1}]");
        t0 = now_usec(CLOCK_MONOTONIC);
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.attempts, 2);
        ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - t0 >= 950 * USEC_PER_MSEC);

        /* Given back to the caller when attempts run out, with the delay. */
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults",
                  "[{\"op\":\"get\",\"status\":429,\"headers\":{\"Retry-After\":\"120\"},\"times\":1}]");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, -EBUSY);
        ASSERT_EQ(c.status, 429);
        ASSERT_TRUE(c.transient);
        ASSERT_EQ(c.retry_after, 120 * USEC_PER_SEC);
        ASSERT_EQ(c.attempts, 1);
        users_api_free(api);
}

TEST(server_errors_and_drops_then_success) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        Capture c;

        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults",
                  "[{\"op\":\"list\",\"status\":500,\"times\":1},{\"op\":\"list\",\"drop\":true,\"times\":1},"
                  "{\"op\":\"list\",\"status\":503,\"times\":1}]");
        c = do_list(api, NULL, 5, NULL, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.n_users, 5);
        /* curl itself replays a request once when a reused connection
         * turns out dead, so the drop may not cost one of our attempts. */
        ASSERT_TRUE(c.attempts == 3 || c.attempts == 4);
        ASSERT_EQ(fake_count(&fake, "list"), 4);

        /* Out of attempts: transient, with the last status. */
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"status\":502,\"times\":3}]");
        c = do_list(api, NULL, 5, NULL, 2);
        ASSERT_EQ(c.error, -EREMOTEIO);
        ASSERT_EQ(c.status, 502);
        ASSERT_TRUE(c.transient);
        ASSERT_EQ(c.attempts, 2);
        ASSERT_EQ(fake_count(&fake, "list"), 2);

        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"drop\":true,\"times\":2}]");
        c = do_list(api, NULL, 5, NULL, 1);
        ASSERT_EQ(c.error, -ECONNRESET);
        ASSERT_TRUE(c.transient);
        fake_clear(&fake);
        users_api_free(api);
}

TEST(timeout) {
        Config cfg;
        UsersApi *api = NULL;
        Capture c;

        config_init(&cfg, fake.base_url, API_VERSION_V1BETA1, "test-client-secret");
        cfg.onepassword.timeout_usec = 500 * USEC_PER_MSEC;
        ASSERT_OK(users_api_new(event, &cfg, NULL, &api));
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"delay\":2,\"times\":1}]");
        c = do_list(api, NULL, 5, NULL, 1);
        ASSERT_EQ(c.error, -ETIMEDOUT);
        ASSERT_TRUE(c.transient);
        fake_clear(&fake);
        users_api_free(api);
}

TEST(permanent_403_and_404) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        UsersApiCallOptions o = {};
        char owner[64];
        Capture c = {};

        fake_user_id(&fake, "user0@example.com", owner);
        fake_clear(&fake);
        ASSERT_OK(users_api_suspend(api, owner, &o, on_result, &c));
        loop_until(event, &c.done, 30);
        ASSERT_EQ(c.error, -EPERM);
        ASSERT_EQ(c.status, 403);
        ASSERT_FALSE(c.transient);
        ASSERT_EQ(c.attempts, 1);
        ASSERT_STREQ(c.api_code, "7");
        ASSERT_STREQ(c.api_message, "no_owner_remain");

        c = do_get(api, "ZZZZZZZZZZZZZZZZZZZZZZZZZZ", 0);
        ASSERT_EQ(c.error, -ENOENT);
        ASSERT_EQ(c.status, 404);
        ASSERT_FALSE(c.transient);
        ASSERT_EQ(c.attempts, 1);
        users_api_free(api);
}

TEST(suspend_and_reactivate) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        UsersApiCallOptions o = {};
        json_object *reqs;
        char id[64];
        Capture c = {};
        size_t posts = 0;

        fake_user_id(&fake, "user5@example.com", id);
        fake_clear(&fake);
        ASSERT_OK(users_api_suspend(api, id, &o, on_result, &c));
        loop_until(event, &c.done, 30);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.user_state, OP_USER_STATE_SUSPENDED);
        c = (Capture) {};
        ASSERT_OK(users_api_reactivate(api, id, &o, on_result, &c));
        loop_until(event, &c.done, 30);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.user_state, OP_USER_STATE_ACTIVE);

        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);
                const char *op = req_str(r, "op");
                char want[128];

                if (strcmp(op, "suspend") != 0 && strcmp(op, "reactivate") != 0)
                        continue;
                posts++;
                snprintf(want, sizeof(want), "/v1beta1/accounts/%s/users/%s:%s", ACCOUNT, id, op);
                ASSERT_STREQ(req_str(r, "method"), "POST");
                ASSERT_STREQ(req_str(r, "path"), want);
                ASSERT_STREQ(req_header(r, "content-length"), "0");
                ASSERT_NULL(req_header(r, "content-type"));
                ASSERT_STREQ(req_str(r, "body"), "");
        }
        json_object_put(reqs);
        ASSERT_EQ(posts, 2);
        users_api_free(api);
}

TEST(garbage_body) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        char id[64];
        Capture c;

        fake_user_id(&fake, "user6@example.com", id);
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"get\",\"body\":\"<html>proxy error</html>\",\"times\":1}]");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.attempts, 2);

        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"body\":\"{\\\"results\\\": 5}\",\"times\":1}]");
        c = do_list(api, NULL, 5, NULL, 1);
        ASSERT_EQ(c.error, -EBADMSG);
        ASSERT_EQ(c.status, 200);
        ASSERT_TRUE(c.transient);

        /* A missing "results" is an empty page, the last one. */
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"body\":\"{}\",\"times\":1}]");
        c = do_list(api, NULL, 5, NULL, 1);
        ASSERT_EQ(c.error, 0);
        ASSERT_EQ(c.n_users, 0);
        ASSERT_FALSE(c.has_next);
        fake_clear(&fake);
        users_api_free(api);
}

TEST(bad_credentials) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "wrong-secret");
        UsersApiTokenState ts;
        Capture c;

        fake_clear(&fake);
        c = do_list(api, NULL, 5, NULL, 0);
        ASSERT_EQ(c.error, -EKEYREJECTED);
        ASSERT_EQ(c.status, 401);
        ASSERT_TRUE(c.transient);
        ASSERT_EQ(fake_count(&fake, "token"), 1);
        ASSERT_EQ(fake_count(&fake, "list"), 0);
        users_api_token_state(api, &ts);
        ASSERT_FALSE(ts.valid);
        ASSERT_FALSE(ts.last_request_ok);
        ASSERT_CONTAINS(ts.last_error, "HTTP 401");
        users_api_free(api);
}

TEST(connection_refused) {
        Config cfg;
        UsersApi *api = NULL;
        Capture c;

        /* Port 1 on loopback: nothing listens there. */
        config_init(&cfg, "http://127.0.0.1:1", API_VERSION_V1BETA1, "test-client-secret");
        ASSERT_OK(users_api_new(event, &cfg, NULL, &api));
        c = do_list(api, NULL, 5, NULL, 1);
        ASSERT_EQ(c.error, -ECONNREFUSED);
        ASSERT_TRUE(c.transient);
        users_api_free(api);
}

static void on_revoked(void *userdata) {
        *(bool *) userdata = true;
}

TEST(revoke_and_no_secret_in_logs) {
        char logpath[] = "/tmp/remedyd-users-api-log-XXXXXX";
        char token[512] = "";
        int fd, saved;
        UsersApi *api;
        json_object *reqs;
        char *log = NULL, id[64];
        size_t size;
        bool revoked = false;
        Capture c;

        fake_user_id(&fake, "user7@example.com", id);
        fd = mkstemp(logpath);
        ASSERT_TRUE(fd >= 0);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        ASSERT_TRUE(dup2(fd, STDERR_FILENO) >= 0);
        log_set_max_level(LOG_DEBUG);
        log_set_trace(TRACE_OAUTH | TRACE_HTTP);

        api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"get\",\"status\":500,\"times\":1}]");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        fake_post(&fake, "/_fake/expire-tokens", "{}");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, 0);
        ASSERT_OK(users_api_revoke(api, on_revoked, &revoked));
        loop_until(event, &revoked, 30);
        users_api_free(api);

        /* A failing token endpoint logs too. */
        api = api_new(API_VERSION_V1BETA1, "wrong-secret-value");
        c = do_get(api, id, 0);
        ASSERT_EQ(c.error, -EKEYREJECTED);
        users_api_free(api);

        fflush(stderr);
        ASSERT_TRUE(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        close(fd);
        log_set_max_level(LOG_INFO);
        log_set_trace(0);

        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);
                const char *auth = req_header(r, "authorization");

                if (strcmp(req_str(r, "op"), "revoke") == 0) {
                        ASSERT_STREQ(req_str(r, "path"), "/v1beta1/users/oauth2/revoke");
                        ASSERT_TRUE(str_startswith(req_str(r, "body"), "token="));
                        ASSERT_EQ(req_status(r), 200);
                }
                if (auth && str_startswith(auth, "Bearer "))
                        snprintf(token, sizeof(token), "%s", auth + 7);
        }
        json_object_put(reqs);
        ASSERT_EQ(fake_count(&fake, "revoke"), 1);
        ASSERT_TRUE(strlen(token) > 8);

        ASSERT_OK(read_file_limited(logpath, 1u << 20, &log, &size));
        unlink(logpath);
        ASSERT_TRUE(size > 0); /* trace lines were written */
        ASSERT_NULL(strstr(log, token));
        ASSERT_NULL(strstr(log, "test-client-secret"));
        ASSERT_NULL(strstr(log, "wrong-secret-value"));
        ASSERT_NULL(strstr(log, "dGVzdC1jbGllbnQtaWQ6")); /* base64 "test-client-id:" */
        mem_free(log);
        fake_clear(&fake);
}

TEST(free_with_calls_in_flight) {
        UsersApi *api = api_new(API_VERSION_V1BETA1, "test-client-secret");
        Capture a = {}, b = {};

        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"any\",\"delay\":1,\"times\":2}]");
        ASSERT_OK(users_api_list(api, NULL, 5, NULL, NULL, on_result, &a));
        ASSERT_OK(users_api_list(api, NULL, 5, NULL, NULL, on_result, &b));
        ASSERT_EQ(users_api_pending(api), 2);
        ASSERT_EQ(users_api_cancel(api, &b), 1);
        for (int i = 0; i < 3; i++)
                ASSERT_OK(sd_event_run(event, 50 * USEC_PER_MSEC));
        users_api_free(api);
        ASSERT_FALSE(a.done);
        ASSERT_FALSE(b.done);
        fake_clear(&fake);
}

int main(void) {
        static const char *const args[] = { "--users", "2500", NULL };

        log_setup(LOG_FORMAT_TEXT, /* explicit= */ true);
        RUN(retry_after_parse);
        RUN(backoff_bounds);
        RUN(error_mapping);
        RUN(parse_response);

        fake_require();
        fake_start(&fake, args);
        ASSERT_OK(sd_event_default(&event));

        RUN(token_fetched_and_reused);
        RUN(v1_paths);
        RUN(paging_2500_users);
        RUN(expired_token_401_refresh_retry_once);
        RUN(retry_after_429);
        RUN(server_errors_and_drops_then_success);
        RUN(timeout);
        RUN(permanent_403_and_404);
        RUN(suspend_and_reactivate);
        RUN(garbage_body);
        RUN(bad_credentials);
        RUN(connection_refused);
        RUN(revoke_and_no_secret_in_logs);
        RUN(free_with_calls_in_flight);
        RUN(refresh_before_expiry);

        sd_event_unref(event);
        fake_stop(&fake);
        log_forget_secrets();
        HARNESS_DONE();
}
