/* The executor against the fake 1Password API (tests/fake1p/fake1p.py on a
 * loopback port the OS picks) and a real store in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "directory.h"
#include "executor.h"
#include "harness.h"
#include "metrics.h"
#include "store.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"

static char dir[] = "/tmp/test-executor-XXXXXX";
static char dbpath[300];
static unsigned db_counter;
static pid_t fake_pid = -1;
static char base_url[64];
static char uid[3][27]; /* fake users 0 (the owner), 1 and 2 */

/* --- tiny blocking HTTP client for the fake's control endpoints ---------- */

static size_t on_body(char *p, size_t size, size_t n, void *userdata) {
        StrBuf *b = userdata;
        return strbuf_append(b, p, size * n) < 0 ? 0 : size * n;
}

static char *fake_call(const char *method, const char *path, const char *body) {
        _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
        _cleanup_(curl_slist_free_allp) struct curl_slist *h = NULL;
        char url[256];
        StrBuf b;
        long code = 0;

        ASSERT_NOT_NULL(c);
        strbuf_init(&b, 16 * 1024 * 1024);
        (void) snprintf(url, sizeof(url), "%s%s", base_url, path);
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        ASSERT_EQ(code, 200);
        return strbuf_steal(&b);
}

/* How many recorded API requests have a path ending in suffix. */
static unsigned fake_count(const char *suffix) {
        _cleanup_free_ char *text = fake_call("GET", "/_fake/requests", NULL);
        _cleanup_(json_object_putp) json_object *j = json_tokener_parse(text);
        unsigned n = 0;

        ASSERT_NOT_NULL(j);
        for (size_t i = 0; i < json_object_array_length(j); i++) {
                json_object *path = json_object_object_get(json_object_array_get_idx(j, i), "path");
                const char *p = path ? json_object_get_string(path) : "";
                size_t lp = strlen(p), ls = strlen(suffix);
                if (lp >= ls && strcmp(p + lp - ls, suffix) == 0)
                        n++;
        }
        return n;
}

static void fake_reset(void) {
        mem_free(fake_call("DELETE", "/_fake/requests", NULL));
        mem_free(fake_call("DELETE", "/_fake/faults", NULL));
}

static bool fake_start(void) {
        const char *root = getenv("REMEDYD_SOURCE_ROOT");
        char script[512], port_file[320], port[16] = "";
        uint64_t deadline;

        (void) snprintf(script, sizeof(script), "%s/tests/fake1p/fake1p.py", root ? root : "..");
        if (access(script, R_OK) < 0 || access("/usr/bin/python3", X_OK) < 0)
                return false;
        (void) snprintf(port_file, sizeof(port_file), "%s/fake.port", dir);
        fake_pid = fork();
        ASSERT_TRUE(fake_pid >= 0);
        if (fake_pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                if (null >= 0)
                        dup2(null, STDOUT_FILENO);
                execl("/usr/bin/python3", "python3", script, "--host", "127.0.0.1", "--port", "0", "--port-file",
                      port_file, "--users", "3", (char *) NULL);
                _exit(127);
        }
        deadline = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;
        for (;;) {
                _cleanup_(fclosep) FILE *f = fopen(port_file, "re");
                if (f && fgets(port, sizeof(port), f) && strlen(strstrip(port)) > 0)
                        break;
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                ASSERT_EQ(waitpid(fake_pid, NULL, WNOHANG), 0);
                usleep(20 * 1000);
        }
        (void) snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%s", port);

        {
                _cleanup_free_ char *text = fake_call("GET", "/_fake/users", NULL);
                _cleanup_(json_object_putp) json_object *j = json_tokener_parse(text);
                ASSERT_NOT_NULL(j);
                ASSERT_EQ(json_object_array_length(j), 3u);
                for (size_t i = 0; i < 3; i++) {
                        json_object *u = json_object_array_get_idx(j, i);
                        const char *id = json_object_get_string(json_object_object_get(u, "id"));
                        const char *email = json_object_get_string(json_object_object_get(u, "email"));
                        char want[32];
                        ASSERT_TRUE(is_user_id(id));
                        /* order by index */
                        for (size_t k = 0; k < 3; k++) {
                                (void) snprintf(want, sizeof(want), "user%zu@example.com", k);
                                if (strcmp(email, want) == 0)
                                        strcpy(uid[k], id);
                        }
                }
                for (size_t k = 0; k < 3; k++)
                        ASSERT_TRUE(is_user_id(uid[k]));
        }
        return true;
}

static void fake_stop(void) {
        if (fake_pid > 0) {
                kill(fake_pid, SIGTERM);
                (void) waitpid(fake_pid, NULL, 0);
                fake_pid = -1;
        }
}

/* --- the system under test ------------------------------------------------ */

typedef struct World {
        sd_event *e;
        Config config;
        Metrics *metrics;
        Store *store;
        UsersApi *api;
        Directory *directory;
        Executor *x;
} World;

static void world_open_store(World *w, unsigned cap) {
        StoreOptions o = { .max_suspensions = cap, .window_usec = 3600 * USEC_PER_SEC };
        ASSERT_OK(store_open(dbpath, w->e, &o, &w->store));
}

static void world_start(World *w) {
        ASSERT_OK(executor_new(w->e, w->store, w->api, w->directory, w->metrics, &w->x));
        executor_set_config(w->x, &w->config);
        ASSERT_OK(executor_start(w->x));
}

static void world_new(World *w, unsigned cap, bool start) {
        *w = (World) {};
        (void) snprintf(dbpath, sizeof(dbpath), "%s/state-%u.db", dir, ++db_counter);
        ASSERT_OK(sd_event_new(&w->e));
        w->config.onepassword.base_url = base_url;
        w->config.onepassword.api_version = API_VERSION_V1BETA1;
        w->config.onepassword.account_id = (char *) "XLQMR47VZPBKJHSGWNCYFDE3T9";
        w->config.onepassword.client_id = (char *) "test-client-id";
        w->config.onepassword.client_secret = (char *) "test-client-secret";
        w->config.onepassword.timeout_usec = 5 * USEC_PER_SEC;
        w->config.onepassword.directory_refresh_usec = 600 * USEC_PER_SEC;
        w->metrics = metrics_new();
        ASSERT_NOT_NULL(w->metrics);
        ASSERT_OK(users_api_new(w->e, &w->config, w->metrics, &w->api));
        ASSERT_OK(directory_new(w->e, w->api, w->config.onepassword.directory_refresh_usec, &w->directory));
        world_open_store(w, cap);
        if (start)
                world_start(w);
        fake_reset();
}

static void world_free(World *w) {
        w->x = executor_free(w->x);
        w->store = store_close(w->store);
        w->directory = directory_free(w->directory);
        w->api = users_api_free(w->api);
        w->metrics = metrics_free(w->metrics);
        w->e = sd_event_unref(w->e);
}

typedef struct Submitted {
        unsigned calls;
        int r;
        char id[33];
        ActionStatus status;
} Submitted;

static void on_event(Store *s, int r, const StoreEvent *ev, bool duplicate, void *userdata) {
        Submitted *sub = userdata;
        sub->calls++;
        sub->r = r;
        if (r >= 0 && ev->n_actions > 0) {
                strcpy(sub->id, ev->actions[0].id);
                sub->status = ev->actions[0].status;
        }
}

static void run_until(World *w, const unsigned *counter, unsigned want) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
        while (*counter < want) {
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(w->e, 100 * USEC_PER_MSEC));
        }
}

static void submit(World *w, ActionKind kind, const char *user, const char *user_id, uint64_t for_usec,
                   Submitted *sub) {
        StoreEvent *ev = mem_calloc(1, sizeof(*ev));

        ASSERT_NOT_NULL(ev);
        ev->source = mem_strdup("splunk");
        ev->received_usec = now_usec(CLOCK_REALTIME);
        ev->actions = mem_calloc(1, sizeof(StoreAction));
        ASSERT_NOT_NULL(ev->actions);
        ev->n_actions = 1;
        ev->actions[0] = (StoreAction) {
                .rule = mem_strdup("rule"),
                .action = kind,
                .user = mem_strdup(user),
                .user_id = user_id ? mem_strdup(user_id) : NULL,
                .status = ACTION_STATUS_QUEUED,
                .for_usec = for_usec,
        };
        *sub = (Submitted) {};
        ASSERT_OK(store_submit_event(w->store, ev, on_event, sub));
        run_until(w, &sub->calls, 1);
        ASSERT_OK(sub->r);
        executor_kick(w->x);
}

static ActionStatus status_of(World *w, const char *id, StoreAction **ret) {
        StoreAction *a = NULL;
        ActionStatus st;

        ASSERT_OK(store_get_action(w->store, id, &a));
        st = a->status;
        if (ret)
                *ret = a;
        else
                store_actions_free(a, 1);
        return st;
}

/* Runs the loop until the action reaches want (bounded). */
static void wait_status(World *w, const char *id, ActionStatus want) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        while (status_of(w, id, NULL) != want) {
                ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) < deadline);
                ASSERT_OK(sd_event_run(w->e, 100 * USEC_PER_MSEC));
        }
}

/* --- tests ------------------------------------------------------------------ */

TEST(suspend_done) {
        World w;
        Submitted sub;
        StoreAction *a = NULL;

        world_new(&w, 0, true);
        submit(&w, ACTION_SUSPEND, "user1@example.com", uid[1], 0, &sub);
        ASSERT_EQ(sub.status, ACTION_STATUS_QUEUED);
        wait_status(&w, sub.id, ACTION_STATUS_DONE);
        ASSERT_EQ(fake_count(":suspend"), 1u);
        ASSERT_EQ(status_of(&w, sub.id, &a), ACTION_STATUS_DONE);
        ASSERT_EQ(a->attempts, 0u);
        store_actions_free(a, 1);
        ASSERT_EQ(metrics_actions_total(w.metrics, "done"), 1u);
        ASSERT_EQ(executor_inflight(w.x), 0u);

        /* a user given as an id needs no directory; reactivation too */
        submit(&w, ACTION_REACTIVATE, uid[1], NULL, 0, &sub);
        wait_status(&w, sub.id, ACTION_STATUS_DONE);
        ASSERT_EQ(fake_count(":reactivate"), 1u);

        /* notify: no API call at all */
        submit(&w, ACTION_NOTIFY, "user2@example.com", NULL, 0, &sub);
        wait_status(&w, sub.id, ACTION_STATUS_DONE);
        ASSERT_EQ(fake_count(":suspend"), 1u);
        ASSERT_EQ(fake_count(":reactivate"), 1u);
        world_free(&w);
}

/* Server errors on :suspend, then success: a few retried inline by the
 * client; more than it retries inline put the action back in the queue
 * with a backoff, and the executor tries again. */
TEST(suspend_after_server_errors) {
        static const struct {
                const char *name, *faults;
                unsigned user;      /* fake user 1 or 2 */
                unsigned suspends;  /* :suspend calls the fake saw */
                int attempts;       /* the action's attempts when done; < 0: not checked */
        } cases[] = {
                { "server_errors_then_success", "[{\"op\":\"suspend\",\"status\":500,\"times\":2}]", 1, 3, -1 },
                { "persisted_retry",
                  "[{\"op\":\"suspend\",\"status\":503,\"headers\":{\"Retry-After\":\"0\"},\"times\":4}]", 2, 5, 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char email[32];
                World w;
                Submitted sub;
                StoreAction *a = NULL;

                fprintf(stderr, "-- %s\n", cases[i].name);
                (void) snprintf(email, sizeof(email), "user%u@example.com", cases[i].user);
                world_new(&w, 0, true);
                mem_free(fake_call("POST", "/_fake/faults", cases[i].faults));
                submit(&w, ACTION_SUSPEND, email, uid[cases[i].user], 0, &sub);
                wait_status(&w, sub.id, ACTION_STATUS_DONE);
                ASSERT_EQ(fake_count(":suspend"), cases[i].suspends);
                if (cases[i].attempts >= 0) {
                        ASSERT_EQ(status_of(&w, sub.id, &a), ACTION_STATUS_DONE);
                        ASSERT_EQ(a->attempts, (unsigned) cases[i].attempts);
                        store_actions_free(a, 1);
                }
                world_free(&w);
        }
}

TEST(permanent_failure) {
        World w;
        Submitted sub;
        StoreAction *a = NULL;

        world_new(&w, 0, true);
        submit(&w, ACTION_SUSPEND, "user0@example.com", uid[0], 0, &sub);
        wait_status(&w, sub.id, ACTION_STATUS_FAILED);
        ASSERT_EQ(status_of(&w, sub.id, &a), ACTION_STATUS_FAILED);
        ASSERT_STREQ(a->api_message, "no_owner_remain");
        ASSERT_STREQ(a->api_code, "7");
        ASSERT_CONTAINS(a->detail, "403");
        store_actions_free(a, 1);
        ASSERT_EQ(fake_count(":suspend"), 1u);
        ASSERT_EQ(metrics_actions_total(w.metrics, "failed"), 1u);
        world_free(&w);
}

typedef struct Claimed {
        unsigned calls;
        size_t n;
} Claimed;

static void on_claim(Store *s, int r, StoreAction *actions, size_t n, uint64_t next_due, void *userdata) {
        Claimed *c = userdata;
        c->calls++;
        c->n = n;
}

TEST(crash_recovery) {
        World w;
        Submitted sub;
        Claimed c = {};

        world_new(&w, 0, false);
        submit(&w, ACTION_SUSPEND, "user1@example.com", uid[1], 0, &sub);
        /* a previous process claimed it and died before recording the outcome */
        ASSERT_OK(store_claim_due(w.store, 0, 1, on_claim, &c));
        run_until(&w, &c.calls, 1);
        ASSERT_EQ(c.n, 1u);
        ASSERT_EQ(status_of(&w, sub.id, NULL), ACTION_STATUS_RUNNING);
        w.store = store_close(w.store);

        world_open_store(&w, 0);
        ASSERT_EQ(status_of(&w, sub.id, NULL), ACTION_STATUS_QUEUED);
        world_start(&w);
        wait_status(&w, sub.id, ACTION_STATUS_DONE);
        ASSERT_EQ(fake_count(":suspend"), 1u);
        world_free(&w);
}

TEST(timed_reactivation) {
        World w;
        Submitted sub;
        StoreAction *list = NULL;
        size_t n = 0;
        char re[33];
        uint64_t t_done;

        world_new(&w, 0, true);
        submit(&w, ACTION_SUSPEND, "user2@example.com", uid[2], 1 * USEC_PER_SEC, &sub);
        wait_status(&w, sub.id, ACTION_STATUS_DONE);
        t_done = now_usec(CLOCK_MONOTONIC);
        ASSERT_OK(store_list_actions(w.store, -1, 1, &list, &n));
        ASSERT_EQ(n, 1u);
        ASSERT_EQ(list[0].action, ACTION_REACTIVATE);
        ASSERT_STREQ(list[0].parent_id, sub.id);
        strcpy(re, list[0].id);
        store_actions_free(list, n);
        ASSERT_EQ(fake_count(":reactivate"), 0u);
        /* the executor's timer fires it, about a second later */
        wait_status(&w, re, ACTION_STATUS_DONE);
        ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - t_done >= 900 * USEC_PER_MSEC);
        ASSERT_EQ(fake_count(":reactivate"), 1u);
        world_free(&w);
}

TEST(held_then_released) {
        World w;
        Submitted first, second;
        unsigned n = 0;
        uint64_t deadline;

        world_new(&w, 1, true);
        submit(&w, ACTION_SUSPEND, "user1@example.com", uid[1], 0, &first);
        wait_status(&w, first.id, ACTION_STATUS_DONE);
        submit(&w, ACTION_SUSPEND, "user2@example.com", uid[2], 0, &second);
        ASSERT_EQ(second.status, ACTION_STATUS_HELD);
        /* held work is not executed: give the loop a moment to prove it */
        deadline = now_usec(CLOCK_MONOTONIC) + 300 * USEC_PER_MSEC;
        while (now_usec(CLOCK_MONOTONIC) < deadline)
                ASSERT_OK(sd_event_run(w.e, 50 * USEC_PER_MSEC));
        ASSERT_EQ(status_of(&w, second.id, NULL), ACTION_STATUS_HELD);
        ASSERT_EQ(fake_count(":suspend"), 1u);

        ASSERT_OK(store_release_action(w.store, second.id, "operator", NULL, NULL));
        while (status_of(&w, second.id, NULL) != ACTION_STATUS_QUEUED && n++ < 600)
                ASSERT_OK(sd_event_run(w.e, 100 * USEC_PER_MSEC));
        executor_kick(w.x);
        wait_status(&w, second.id, ACTION_STATUS_DONE);
        ASSERT_EQ(fake_count(":suspend"), 2u);
        world_free(&w);
}

static void cleanup(void) {
        char cmd[300];

        fake_stop();
        (void) snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
        ASSERT_NOT_NULL(mkdtemp(dir));
        atexit(cleanup);
        ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        if (!fake_start()) {
                fprintf(stderr, "fake1p.py or /usr/bin/python3 not available, skipping\n");
                return 77;
        }

        RUN(suspend_done);
        RUN(suspend_after_server_errors);
        RUN(permanent_failure);
        RUN(crash_recovery);
        RUN(timed_reactivation);
        RUN(held_then_released);
        curl_global_cleanup();
        HARNESS_DONE();
}
