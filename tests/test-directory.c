/* directory: the email -> user id index, against the fake 1Password API. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "config.h"
#include "directory.h"
#include "fake1p-harness.h"
#include "harness.h"
#include "log.h"
#include "users_api.h"
#include "util.h"

#define ACCOUNT "XLQMR47VZPBKJHSGWNCYFDE3T9"

static Fake fake;
static sd_event *event;

static UsersApi *api_new(const Fake *f) {
        static char base_buf[128], secret_buf[] = "test-client-secret", account_buf[] = ACCOUNT,
                    id_buf[] = "test-client-id";
        Config c;
        UsersApi *api = NULL;

        snprintf(base_buf, sizeof(base_buf), "%s", f->base_url);
        memset(&c, 0, sizeof(c));
        c.onepassword.base_url = base_buf;
        c.onepassword.api_version = API_VERSION_V1BETA1;
        c.onepassword.account_id = account_buf;
        c.onepassword.client_id = id_buf;
        c.onepassword.client_secret = secret_buf;
        c.onepassword.timeout_usec = 30 * USEC_PER_SEC;
        ASSERT_OK(users_api_new(event, &c, NULL, &api));
        return api;
}

/* What each test drives: a users API client on f (in *ret_api) and a
 * directory over it, refreshed every 10 minutes, not started. Neither
 * talks to the fake before the loop runs. */
static Directory *subject_new(const Fake *f, UsersApi **ret_api) {
        Directory *d = NULL;

        *ret_api = api_new(f);
        ASSERT_OK(directory_new(event, *ret_api, 600 * USEC_PER_SEC, &d));
        return d;
}

static void subject_free(Directory *d, UsersApi *api) {
        directory_free(d);
        users_api_free(api);
}

static void wait_synced(Directory *d, uint64_t after_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 120 * USEC_PER_SEC;
        DirectoryStats st;

        for (;;) {
                directory_stats(d, &st);
                if (st.synced_usec > after_usec && !st.syncing)
                        return;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        FAIL_AT("directory did not sync within 120s");
                ASSERT_OK(sd_event_run(event, 100 * USEC_PER_MSEC));
        }
}

typedef struct Resolved {
        bool done;
        DirectoryResult result;
        char id[64];
} Resolved;

static void on_resolved(Directory *d, DirectoryResult result, const char *user_id, void *userdata) {
        Resolved *r = userdata;

        r->done = true;
        r->result = result;
        snprintf(r->id, sizeof(r->id), "%s", user_id ? user_id : "");
}

static Resolved resolve(Directory *d, const char *email) {
        Resolved r = {};

        ASSERT_OK(directory_resolve(d, email, on_resolved, &r));
        ASSERT_FALSE(r.done);
        loop_until(event, &r.done, 120);
        return r;
}

/* resolve() finds email, as the user id the fake gave it. */
static void resolves_to_fake_id(Directory *d, const char *email) {
        Resolved r = resolve(d, email);
        char want[64];

        ASSERT_EQ(r.result, DIRECTORY_FOUND);
        fake_user_id(&fake, email, want);
        ASSERT_STREQ(r.id, want);
}

TEST(sync_lookup_ambiguous) {
        UsersApi *api;
        Directory *d = subject_new(&fake, &api);
        DirectoryStats st;
        const char *id = NULL;
        char want[64];
        json_object *reqs;

        fake_clear(&fake);
        ASSERT_EQ(directory_lookup(d, "user1@example.com", &id), DIRECTORY_PENDING); /* never synced */
        ASSERT_OK(directory_start(d));
        wait_synced(d, 0);
        directory_stats(d, &st);
        ASSERT_EQ(st.users, 2502);
        ASSERT_EQ(st.emails, 2501);
        ASSERT_STREQ(st.last_error, "");

        /* One sync of 3 pages at max_page_size=1000 (the lookup before
         * start joined the same sync: it was already running or started it). */
        reqs = fake_requests(&fake);
        for (size_t i = 0; i < json_object_array_length(reqs); i++) {
                json_object *r = json_object_array_get_idx(reqs, i);
                if (strcmp(req_str(r, "op"), "list") == 0)
                        ASSERT_STREQ(req_query(r, "max_page_size"), "1000");
        }
        json_object_put(reqs);
        ASSERT_EQ(fake_count(&fake, "list"), 3);

        fake_user_id(&fake, "user42@example.com", want);
        ASSERT_EQ(directory_lookup(d, "  USER42@Example.COM\t", &id), DIRECTORY_FOUND);
        ASSERT_STREQ(id, want);
        ASSERT_EQ(directory_lookup(d, "dup@example.com", &id), DIRECTORY_AMBIGUOUS);
        ASSERT_EQ(directory_lookup(d, "Dup@Example.com", &id), DIRECTORY_AMBIGUOUS);
        /* A miss right after a full sync is unknown, and syncs nothing. */
        ASSERT_EQ(directory_lookup(d, "nobody@example.com", &id), DIRECTORY_UNKNOWN);
        ASSERT_EQ(directory_lookup(d, "", &id), DIRECTORY_UNKNOWN);

        resolves_to_fake_id(d, "user7@example.com");
        ASSERT_EQ(resolve(d, "DUP@example.com").result, DIRECTORY_AMBIGUOUS);
        ASSERT_EQ(resolve(d, "nobody@example.com").result, DIRECTORY_UNKNOWN);
        ASSERT_EQ(fake_count(&fake, "list"), 3);
        subject_free(d, api);
}

TEST(resolve_waits_for_first_sync) {
        UsersApi *api;
        Directory *d = subject_new(&fake, &api);

        fake_clear(&fake);
        /* Not started: the miss starts the one sync, the resolution waits. */
        resolves_to_fake_id(d, "user2000@example.com");
        ASSERT_EQ(fake_count(&fake, "list"), 3);
        subject_free(d, api);
}

TEST(failed_refresh_keeps_index) {
        UsersApi *api;
        Directory *d = subject_new(&fake, &api);
        DirectoryStats st;
        const char *id = NULL;
        uint64_t first;
        Resolved r;

        ASSERT_OK(directory_start(d));
        wait_synced(d, 0);
        directory_stats(d, &st);
        first = st.synced_usec;

        /* The second page of the next sync fails for good. */
        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults",
                  "[{\"op\":\"list\",\"delay\":0.01,\"times\":1},{\"op\":\"list\",\"status\":400,\"times\":-1}]");
        directory_set_refresh(d, 1 * USEC_PER_SEC);
        for (uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;;) {
                directory_stats(d, &st);
                if (st.last_error[0])
                        break;
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(event, 100 * USEC_PER_MSEC));
        }
        ASSERT_CONTAINS(st.last_error, "sync failed");
        ASSERT_EQ(st.synced_usec, first);
        ASSERT_EQ(st.users, 2502);
        ASSERT_EQ(directory_lookup(d, "user5@example.com", &id), DIRECTORY_FOUND);
        r = resolve(d, "user6@example.com");
        ASSERT_EQ(r.result, DIRECTORY_FOUND);
        fake_clear(&fake);
        subject_free(d, api);
}

TEST(api_down_means_pending) {
        UsersApi *api;
        Directory *d = subject_new(&fake, &api);
        Resolved r;

        fake_clear(&fake);
        fake_post(&fake, "/_fake/faults", "[{\"op\":\"list\",\"status\":403,\"times\":-1}]");
        r = resolve(d, "user1@example.com");
        ASSERT_EQ(r.result, DIRECTORY_PENDING);
        /* The failed attempt counts against the once-a-minute budget. */
        r = resolve(d, "user1@example.com");
        ASSERT_EQ(r.result, DIRECTORY_PENDING);
        ASSERT_EQ(fake_count(&fake, "list"), 1);
        fake_clear(&fake);
        subject_free(d, api);
}

TEST(free_while_syncing) {
        UsersApi *api;
        Directory *d = subject_new(&fake, &api);
        Resolved r = {};

        ASSERT_OK(directory_start(d));
        ASSERT_OK(directory_resolve(d, "user1@example.com", on_resolved, &r));
        ASSERT_OK(sd_event_run(event, 10 * USEC_PER_MSEC));
        directory_free(d);
        for (int i = 0; i < 5; i++)
                ASSERT_OK(sd_event_run(event, 50 * USEC_PER_MSEC));
        ASSERT_FALSE(r.done);
        ASSERT_EQ(users_api_pending(api), 0);
        users_api_free(api);
}

static long vm_rss_kib(void) {
        char *s = NULL, *p;
        size_t n;
        long v = -1;

        ASSERT_OK(read_file_limited("/proc/self/status", 1u << 20, &s, &n));
        p = strstr(s, "VmRSS:");
        if (p)
                v = strtol(p + 6, NULL, 10);
        mem_free(s);
        return v;
}

/* 100,000 users: the index must stay well under 32 MiB above idle. */
TEST(memory_100k) {
        static const char *const args[] = { "--users", "100000", NULL };
        Fake big;
        UsersApi *api;
        Directory *d = NULL;
        DirectoryStats st;
        long before, after;
        const char *id;
        uint64_t t0;

        fake_start(&big, args);
        d = subject_new(&big, &api);
        before = vm_rss_kib();
        t0 = now_usec(CLOCK_MONOTONIC);
        ASSERT_OK(directory_start(d));
        wait_synced(d, 0);
        after = vm_rss_kib();
        directory_stats(d, &st);
        ASSERT_EQ(st.users, 100000);
        ASSERT_EQ(directory_lookup(d, "user99999@example.com", &id), DIRECTORY_FOUND);
        fprintf(stderr, "directory: 100000 users synced in %.1fs; index %.1f MiB; VmRSS %ld KiB -> %ld KiB (+%.1f MiB)\n",
                (double) (now_usec(CLOCK_MONOTONIC) - t0) / 1e6, (double) st.index_bytes / (1024.0 * 1024.0), before,
                after, (double) (after - before) / 1024.0);
        ASSERT_TRUE(st.index_bytes < 16u * 1024u * 1024u);
#if !defined(__SANITIZE_ADDRESS__)
        ASSERT_TRUE(after - before < 32 * 1024);
#endif
        subject_free(d, api);
        fake_stop(&big);
}

int main(void) {
        static const char *const args[] = { "--users", "2500", NULL };

        log_setup(LOG_FORMAT_TEXT, /* explicit= */ true);
        fake_require();
        fake_start(&fake, args);
        fake_post(&fake, "/_fake/users", "[{\"email\":\"dup@example.com\"},{\"email\":\"DUP@example.com\"}]");
        ASSERT_OK(sd_event_default(&event));

        RUN(sync_lookup_ambiguous);
        RUN(resolve_waits_for_first_sync);
        RUN(failed_refresh_keeps_index);
        RUN(api_down_means_pending);
        RUN(free_while_syncing);
        if (!getenv("REMEDYD_SKIP_SLOW"))
                RUN(memory_100k);

        sd_event_unref(event);
        fake_stop(&fake);
        log_forget_secrets();
        HARNESS_DONE();
}
