/* The webhook end to end in-process, on the real modules: a Config loaded
 * from tests/data/webhook/, real rules, a real Store in a temporary
 * directory, a real UsersApi, Directory and Executor against the fake
 * 1Password API (tests/fake1p/fake1p.py), the real http_server + webhook +
 * status listeners (given their WebhookDeps and StatusDeps as daemon.c
 * gives them) on an sd-event loop in a server thread, on 127.0.0.1:0,
 * driven by libcurl from the main thread. Commands to the server thread
 * (store full, shutdown, snapshots of the modules' state) go through a
 * pipe, so the loop's state is only touched on its thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "directory.h"
#include "executor.h"
#include "fake1p-harness.h"
#include "harness.h"
#include "log.h"
#include "metrics.h"
#include "remedyd-limits.h"
#include "status.h"
#include "store.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"
#include "version.h"
#include "webhook.h"

#define HMAC_SECRET "hmac-secret-1"
#define OKTA_TOKEN "okta-token-value"
#define MAX_BODY 16384 /* listen.max_body_bytes of the fixture */

/* Users of the fake API (ids of 26 [A-Z0-9]). */
#define ALICE_ID "ALICEALICEALICEALICEALICE1"
#define BOSS_ID "BOSSBOSSBOSSBOSSBOSSBOSS12"
#define CAROL_ID "CAROLCAROLCAROLCAROLCAROL1"
#define DAVE_ID "DAVEDAVEDAVEDAVEDAVEDAVE12" /* not in the fake: only ever held */
#define NOBODY_ID "ABCDEFGHIJKLMNOPQRSTUVWXYZ" /* not in the fake: 404 */
#define FAKE_USERS 5

static Fake fake;
static Config *config, *tls_config;
static char state_dir[] = "/tmp/test-webhook-XXXXXX";
static char tls_dir[64];
static bool have_tls;
static unsigned tls_port;
static int tls_fd = -1;

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free, config_freep)

/* --- the server thread ------------------------------------------------- */

enum {
        CMD_EXIT = 'x',
        CMD_STORE_FULL = 'f',   /* the database may not grow: commits fail with -ENOSPC */
        CMD_STORE_OK = 'o',
        CMD_STOP_ACCEPTING = 'a',
        CMD_DRY_RUN = 'd',
        CMD_RENDER_METRICS = 'm',
        CMD_SNAPSHOT = 's',
        CMD_FAIL_ALLOC = 'F',   /* mem_fail_at(fail_alloc_at) on the server thread */
};

static unsigned long fail_alloc_at;

/* What the modules say, copied on the loop thread (CMD_SNAPSHOT). */
typedef struct Snapshot {
        StoreQueueCounts queue;
        uint64_t suspensions_in_window;
        DirectoryStats directory;
        UsersApiTokenState token;
        bool store_writable;
        unsigned executor_inflight;
        size_t api_pending;
} Snapshot;

static int cmd_pipe[2];
static int ack_pipe[2];
static int listen_fd, status_fd, unix_fd;
static char unix_path[108];
static unsigned port, status_port;
static char metrics_text[16384];
static Snapshot snapshot;

static void ack(char c) {
        ASSERT_EQ(write(ack_pipe[1], &c, 1), 1);
}

static void on_max_pages(Store *s, int r, void *userdata) {
        ASSERT_OK(r);
        ack((char) (intptr_t) userdata);
}

/* The modules as daemon.c wires them, on the server thread. */
typedef struct Server {
        sd_event *event;
        Store *store;
        UsersApi *api;
        Directory *directory;
        Executor *executor;
        Metrics *metrics;
        Webhook *webhook;
        Status *status;
} Server;

/* What the listeners read through their callbacks (daemon.c: the current
 * config, --dry-run or safety.dry_run). One for the plain listeners, one
 * for the TLS webhook. */
typedef struct View {
        const Config *config;
        bool dry_run;
} View;

static View view, tls_view;

static const Config *view_config(void *userdata) {
        const View *v = userdata;

        return v->config;
}

static bool view_dry_run(void *userdata) {
        const View *v = userdata;

        return v->dry_run || v->config->safety.dry_run;
}

static const char *view_reload_error(void *userdata) {
        return NULL;
}

static int on_command(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Server *d = userdata;
        char c;

        ASSERT_EQ(read(fd, &c, 1), 1);
        switch (c) {
        case CMD_EXIT:
                return sd_event_exit(d->event, 0);
        case CMD_STORE_FULL:
                /* Acknowledged once the writer applied it. */
                ASSERT_OK(store_debug_set_max_pages(d->store, 1, on_max_pages, (void *) (intptr_t) c));
                return 0;
        case CMD_STORE_OK:
                ASSERT_OK(store_debug_set_max_pages(d->store, 0, on_max_pages, (void *) (intptr_t) c));
                return 0;
        case CMD_STOP_ACCEPTING:
                webhook_stop_accepting(d->webhook);
                break;
        case CMD_DRY_RUN:
                view.dry_run = true;
                break;
        case CMD_FAIL_ALLOC:
                mem_fail_at(fail_alloc_at);
                break;
        case CMD_SNAPSHOT:
                snapshot = (Snapshot) {};
                ASSERT_OK(store_queue_counts(d->store, &snapshot.queue));
                ASSERT_OK(store_suspensions_in_window(d->store, &snapshot.suspensions_in_window));
                directory_stats(d->directory, &snapshot.directory);
                users_api_token_state(d->api, &snapshot.token);
                snapshot.store_writable = store_writable(d->store);
                snapshot.executor_inflight = executor_inflight(d->executor);
                snapshot.api_pending = users_api_pending(d->api);
                break;
        case CMD_RENDER_METRICS: {
                StrBuf b;

                strbuf_init(&b, sizeof(metrics_text) - 1);
                ASSERT_OK(metrics_render(d->metrics, &b));
                memcpy(metrics_text, b.data, b.len + 1);
                strbuf_free(&b);
                break;
        }
        default:
                ASSERT_TRUE(false);
        }
        ack(c);
        return 0;
}

static void *server_thread(void *arg) {
        Webhook *unix_webhook = NULL, *tls_webhook = NULL;
        Server d = {};
        WebhookDeps wd;
        sd_event_source *cmd_source = NULL;
        StoreOptions so;
        char dbpath[128];

        ASSERT_OK(sd_event_new(&d.event));
        view = (View) { .config = config };
        tls_view = (View) { .config = tls_config };
        d.metrics = metrics_new();
        ASSERT_NOT_NULL(d.metrics);
        so = (StoreOptions) {
                .max_suspensions = config->safety.max_suspensions,
                .window_usec = config->safety.window_usec,
                .dedup_window_usec = 24 * 3600 * USEC_PER_SEC,
        };
        snprintf(dbpath, sizeof(dbpath), "%s/state.db", state_dir);
        ASSERT_OK(store_open(dbpath, d.event, &so, &d.store));
        ASSERT_OK(users_api_new(d.event, config, d.metrics, &d.api));
        /* Not started: the first lookup of an unknown email syncs it, so
         * that the test sees a directory that cannot tell yet. */
        ASSERT_OK(directory_new(d.event, d.api, config->onepassword.directory_refresh_usec, &d.directory));
        ASSERT_OK(executor_new(d.event, d.store, d.api, d.directory, d.metrics, &d.executor));
        executor_set_config(d.executor, config);
        ASSERT_OK(executor_start(d.executor));

        wd = (WebhookDeps) {
                .store = d.store,
                .directory = d.directory,
                .executor = d.executor,
                .metrics = d.metrics,
                .config = view_config,
                .dry_run = view_dry_run,
                .userdata = &view,
        };
        ASSERT_OK(webhook_new(d.event, &wd, listen_fd, &d.webhook));
        ASSERT_OK(status_new(d.event,
                             &(StatusDeps) {
                                     .store = d.store,
                                     .api = d.api,
                                     .directory = d.directory,
                                     .metrics = d.metrics,
                                     .started_usec = now_usec(CLOCK_REALTIME) - 90 * USEC_PER_SEC,
                                     .started_mono_usec = now_usec(CLOCK_MONOTONIC) - 90 * USEC_PER_SEC,
                                     .config = view_config,
                                     .dry_run = view_dry_run,
                                     .last_reload_error = view_reload_error,
                                     .userdata = &view,
                             },
                             status_fd, &d.status));
        ASSERT_OK(webhook_new(d.event, &wd, unix_fd, &unix_webhook));
        if (have_tls) {
                wd.userdata = &tls_view;
                ASSERT_OK(webhook_new(d.event, &wd, tls_fd, &tls_webhook));
        }
        ASSERT_OK(sd_event_add_io(d.event, &cmd_source, cmd_pipe[0], EPOLLIN, on_command, &d));
        ack('r');

        ASSERT_OK(sd_event_loop(d.event));

        /* The order of daemon_free(). */
        d.webhook = webhook_free(d.webhook);
        d.status = status_free(d.status);
        unix_webhook = webhook_free(unix_webhook);
        tls_webhook = webhook_free(tls_webhook);
        d.store = store_close(d.store);
        d.executor = executor_free(d.executor);
        d.directory = directory_free(d.directory);
        d.api = users_api_free(d.api);
        d.metrics = metrics_free(d.metrics);
        sd_event_source_disable_unref(cmd_source);
        sd_event_unref(d.event);
        return NULL;
}

static void command(char c) {
        char a;

        ASSERT_EQ(write(cmd_pipe[1], &c, 1), 1);
        ASSERT_EQ(read(ack_pipe[0], &a, 1), 1);
        ASSERT_EQ(a, c);
}

static void pause_briefly(void) {
        (void) nanosleep(&(struct timespec) { .tv_nsec = 20 * 1000 * 1000 }, NULL);
}

/* Polls until the directory finished its first sync. */
static void wait_directory_synced(void) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;

        for (;;) {
                command(CMD_SNAPSHOT);
                if (snapshot.directory.synced_usec > 0 && !snapshot.directory.syncing)
                        return;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        FAIL_AT("directory not synced within 30s: %s", snapshot.directory.last_error);
                pause_briefly();
        }
}

/* Polls until the executor has nothing queued or running. */
static void wait_idle(void) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;

        for (;;) {
                command(CMD_SNAPSHOT);
                if (snapshot.queue.queued == 0 && snapshot.queue.running == 0 && snapshot.executor_inflight == 0 &&
                    snapshot.api_pending == 0)
                        return;
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        FAIL_AT("executor not idle within 30s: %" PRIu64 " queued, %" PRIu64 " running",
                                snapshot.queue.queued, snapshot.queue.running);
                pause_briefly();
        }
}

/* Suspend calls the fake received for user_id (NULL: any user). */
static size_t fake_suspends(const char *user_id) {
        _cleanup_(json_object_putp) json_object *j = fake_requests(&fake);
        size_t n = 0;

        for (size_t i = 0; i < json_object_array_length(j); i++) {
                json_object *q = json_object_array_get_idx(j, i);
                const char *path = req_str(q, "path"), *op = req_str(q, "op");

                if (!path || !op || strcmp(op, "suspend") != 0)
                        continue;
                if (!user_id || strstr(path, user_id))
                        n++;
        }
        return n;
}

/* --- the client -------------------------------------------------------- */

typedef struct Reply {
        long status;
        char body[65536]; /* /metrics: every family and gauge */
        size_t len;
        char retry_after[32];
        char allow[64];
        char content_type[128];
        CURLcode code;
} Reply;

typedef struct Upload {
        const char *data;
        size_t len, off;
        size_t piece;
} Upload;

static size_t on_write(char *ptr, size_t size, size_t n, void *userdata) {
        Reply *r = userdata;
        size_t k = size * n;

        ASSERT_TRUE(r->len + k < sizeof(r->body));
        memcpy(r->body + r->len, ptr, k);
        r->len += k;
        r->body[r->len] = 0;
        return k;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t size) {
        size_t l = strlen(name);

        if (n <= l + 1 || strncasecmp(line, name, l) != 0 || line[l] != ':')
                return;
        line += l + 1;
        n -= l + 1;
        while (n > 0 && *line == ' ')
                line++, n--;
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
                n--;
        snprintf(out, size, "%.*s", (int) n, line);
}

static size_t on_header(char *ptr, size_t size, size_t n, void *userdata) {
        Reply *r = userdata;

        header_value(ptr, size * n, "Retry-After", r->retry_after, sizeof(r->retry_after));
        header_value(ptr, size * n, "Allow", r->allow, sizeof(r->allow));
        header_value(ptr, size * n, "Content-Type", r->content_type, sizeof(r->content_type));
        return size * n;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userdata) {
        Upload *u = userdata;
        size_t k = size * n;

        if (k > u->piece)
                k = u->piece;
        if (k > u->len - u->off)
                k = u->len - u->off;
        memcpy(buf, u->data + u->off, k);
        u->off += k;
        return k;
}

/* headers: NULL-terminated "Name: value" list. body NULL: no body. */
static void request_full(const char *method, const char *path, const char *const *headers, const char *body,
                         size_t body_len, bool chunked, Reply *ret) {
        _cleanup_(curl_easy_cleanupp) CURL *c = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *h = NULL;
        Upload up = { body, body_len, 0, 100 };
        char url[256];

        *ret = (Reply) {};
        c = curl_easy_init();
        ASSERT_NOT_NULL(c);
        if (str_startswith(path, "tls:") || str_startswith(path, "mtls:")) {
                char f[128];

                snprintf(url, sizeof(url), "https://localhost:%u%s", tls_port, strchr(path, ':') + 1);
                snprintf(f, sizeof(f), "%s/tls/ca.pem", tls_dir);
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CAINFO, f), CURLE_OK);
                if (str_startswith(path, "mtls:")) {
                        snprintf(f, sizeof(f), "%s/tls/client.pem", tls_dir);
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_SSLCERT, f), CURLE_OK);
                        snprintf(f, sizeof(f), "%s/tls/client.key", tls_dir);
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_SSLKEY, f), CURLE_OK);
                }
        } else if (str_startswith(path, "unix:")) {
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path), CURLE_OK);
                snprintf(url, sizeof(url), "http://localhost%s", path + strlen("unix:"));
        } else if (str_startswith(path, "status:"))
                snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", status_port, path + strlen("status:"));
        else
                snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_URL, url), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
        if (body) {
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_POST, 1L), CURLE_OK);
                if (chunked) {
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read), CURLE_OK);
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_READDATA, &up), CURLE_OK);
                        h = curl_slist_append(h, "Transfer-Encoding: chunked");
                } else {
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_POSTFIELDS, body), CURLE_OK);
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len), CURLE_OK);
                }
        } else if (strcmp(method, "HEAD") == 0)
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_NOBODY, 1L), CURLE_OK);
        /* curl adds a form content type to POSTs: drop it unless given. */
        h = curl_slist_append(h, "Content-Type:");
        for (const char *const *p = headers; p && *p; p++)
                h = curl_slist_append(h, *p);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HTTPHEADER, h), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_WRITEDATA, ret), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_HEADERDATA, ret), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L), CURLE_OK);
        ret->code = curl_easy_perform(c);
        (void) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ret->status);
}

static void request(const char *method, const char *path, const char *const *headers, const char *body, Reply *ret) {
        request_full(method, path, headers, body, body ? strlen(body) : 0, false, ret);
        ASSERT_EQ(ret->code, CURLE_OK);
}

/* POST to /hooks/hmac, signed. */
static void post_signed(const char *body, Reply *ret) {
        char hex[65], sig[96];
        const char *headers[] = { "Content-Type: application/json", sig, NULL };

        ASSERT_OK(auth_hmac_sha256_hex(HMAC_SECRET, NULL, body, strlen(body), hex));
        snprintf(sig, sizeof(sig), "X-Signature: sha256=%s", hex);
        request("POST", "/hooks/hmac", headers, body, ret);
}

static json_object *parse_reply(const Reply *r) {
        json_object *o = json_tokener_parse(r->body);

        ASSERT_NOT_NULL(o);
        ASSERT_TRUE(json_object_is_type(o, json_type_object));
        ASSERT_STREQ(r->content_type, "application/json");
        return o;
}

static const char *get_str(json_object *o, const char *key) {
        json_object *v;

        ASSERT_TRUE(json_object_object_get_ex(o, key, &v));
        return json_object_get_string(v);
}

static void assert_error(const Reply *r, long status, const char *code) {
        _cleanup_(json_object_putp) json_object *o = NULL;

        if (r->status != status)
                FAIL_AT("status %ld, want %ld; body %s", r->status, status, r->body);
        o = parse_reply(r);
        ASSERT_STREQ(get_str(o, "error"), code);
        ASSERT_TRUE(strlen(get_str(o, "message")) > 0);
        ASSERT_EQ(json_object_object_length(o), 2);
}

/* --- tests -------------------------------------------------------------- */

TEST(not_ready_before_token) {
        Reply r;

        /* Nothing asked 1Password for a token yet. */
        request("GET", "status:/readyz", NULL, NULL, &r);
        assert_error(&r, 503, "not_ready");
        ASSERT_CONTAINS(r.body, "token");
        ASSERT_TRUE(strlen(r.retry_after) > 0);
}

TEST(pending_before_sync) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *actions, *x;
        Reply r;

        /* The directory has never synced: it cannot tell, so the email is
         * queued and resolved when it executes (never unknown_user). This
         * lookup starts the first sync. */
        post_signed("{\"users\": [{\"email\": \"later@example.com\"}]}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_TRUE(json_object_object_get_ex(o, "actions", &actions));
        ASSERT_EQ(json_object_array_length(actions), 1);
        x = json_object_array_get_idx(actions, 0);
        ASSERT_STREQ(get_str(x, "user"), "later@example.com");
        ASSERT_STREQ(get_str(x, "status"), "queued");

        wait_directory_synced();
        ASSERT_EQ(snapshot.directory.users, FAKE_USERS);
        /* Resolved at execution: the fake has no such user. */
        wait_idle();
        ASSERT_EQ(fake_suspends(NULL), 0);

        /* A token request succeeded: ready now. */
        request("GET", "status:/readyz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
}

TEST(accepted_and_duplicate) {
        _cleanup_(json_object_putp) json_object *a = NULL, *b = NULL;
        const char *body = "{\"users\": [{\"email\": \"alice@example.com\"}, {\"email\": \"nobody@example.com\"},"
                           " {\"email\": \"twins@example.com\"}, {\"email\": \"boss@example.com\"},"
                           " {\"name\": \"no email\"}, {\"email\": \"" NOBODY_ID "\"}]}";
        static const char *const want[][3] = {
                /* user, status at once, status once executed */
                { "alice@example.com", "queued", "done" },
                { "nobody@example.com", "unknown_user", "unknown_user" },
                { "twins@example.com", "ambiguous_user", "ambiguous_user" },
                { "boss@example.com", "protected", "protected" },
                { NULL, "unresolved", "unresolved" },
                { NOBODY_ID, "queued", "failed" },
        };
        json_object *actions, *actions2;
        Reply r;

        post_signed(body, &r);
        ASSERT_EQ(r.status, 202);
        a = parse_reply(&r);
        ASSERT_EQ(strlen(get_str(a, "event_id")), 32);
        ASSERT_STREQ(get_str(a, "duplicate"), "false");
        ASSERT_TRUE(json_object_object_get_ex(a, "actions", &actions));
        ASSERT_EQ(json_object_array_length(actions), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                json_object *x = json_object_array_get_idx(actions, i), *u;

                ASSERT_EQ(json_object_object_length(x), 5);
                ASSERT_EQ(strlen(get_str(x, "id")), 32);
                ASSERT_STREQ(get_str(x, "rule"), "suspend-users");
                ASSERT_STREQ(get_str(x, "action"), "suspend");
                ASSERT_STREQ(get_str(x, "status"), want[i][1]);
                ASSERT_TRUE(json_object_object_get_ex(x, "user", &u));
                if (want[i][0])
                        ASSERT_STREQ(json_object_get_string(u), want[i][0]);
                else
                        ASSERT_NULL(u);
        }

        /* The queued ones were handed to the executor: alice is suspended
         * by id (resolved through the directory), the unknown id fails
         * with the API's 404; nothing else reached the API. */
        wait_idle();
        ASSERT_EQ(fake_suspends(ALICE_ID), 1);
        ASSERT_EQ(fake_suspends(NOBODY_ID), 1);
        ASSERT_EQ(fake_suspends(NULL), 2);

        /* The same body again: 200, duplicate, the original actions (in
         * their current state), and no new work. */
        post_signed(body, &r);
        ASSERT_EQ(r.status, 200);
        b = parse_reply(&r);
        ASSERT_STREQ(get_str(b, "event_id"), get_str(a, "event_id"));
        ASSERT_STREQ(get_str(b, "duplicate"), "true");
        ASSERT_TRUE(json_object_object_get_ex(b, "actions", &actions2));
        ASSERT_EQ(json_object_array_length(actions2), ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                json_object *x = json_object_array_get_idx(actions, i), *y = json_object_array_get_idx(actions2, i);

                ASSERT_EQ(json_object_object_length(y), 5);
                ASSERT_STREQ(get_str(y, "id"), get_str(x, "id"));
                ASSERT_STREQ(get_str(y, "rule"), get_str(x, "rule"));
                ASSERT_STREQ(get_str(y, "action"), get_str(x, "action"));
                ASSERT_STREQ(json_object_to_json_string(json_object_object_get(y, "user")),
                             json_object_to_json_string(json_object_object_get(x, "user")));
                ASSERT_STREQ(get_str(y, "status"), want[i][2]);
        }
        wait_idle();
        ASSERT_EQ(fake_suspends(NULL), 2);
}

TEST(accepted_without_match) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *actions;
        Reply r;

        /* Content type with parameters; no rule matched: still 202. */
        const char *headers[] = { "Content-Type: application/json; charset=utf-8", NULL };
        request("POST", "/hooks/open", headers, "{\"nothing\": \"here\"}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_TRUE(json_object_object_get_ex(o, "actions", &actions));
        ASSERT_EQ(json_object_array_length(actions), 0);
}

TEST(bad_json) {
        Reply r;

        post_signed("{\"users\": [", &r);
        assert_error(&r, 400, "invalid_json");
        post_signed("[1, 2]", &r);
        assert_error(&r, 400, "invalid_json");
        post_signed("{} {}", &r);
        assert_error(&r, 400, "invalid_json");
        post_signed("", &r);
        assert_error(&r, 400, "invalid_json");
}

/* The parser alone: its errors tell UTF-8 from JSON; a kept tokener is
 * reset between bodies. */
TEST(parse_body) {
        json_tokener *tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
        json_object *o = NULL;

        ASSERT_NOT_NULL(tok);
        ASSERT_ERR(webhook_parse_body(tok, "{\"a\":\"\xff\"}", 8, &o), EILSEQ);
        ASSERT_ERR(webhook_parse_body(tok, "{\"a\":", 5, &o), EINVAL);
        ASSERT_ERR(webhook_parse_body(tok, "{\"a\":1,\"a\":1}", 13, &o), EINVAL);
        ASSERT_ERR(webhook_parse_body(NULL, "{} x", 4, &o), EINVAL);
        ASSERT_NULL(o);
        ASSERT_OK(webhook_parse_body(tok, "{\"a\":\"\xc3\xa9:\"} \n", 11, &o));
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "a")), "\xc3\xa9:");
        json_object_put(o);
        ASSERT_OK(webhook_parse_body(NULL, "{\"b\":[{}]}", 10, &o));
        json_object_put(o);
        /* a string ending in an even run of backslashes ends there; an odd
         * run escapes the quote */
        ASSERT_OK(webhook_parse_body(NULL, "{\"a\":\"x\\\\\",\"b\":\":\"}", 19, &o));
        json_object_put(o);
        ASSERT_OK(webhook_parse_body(NULL, "{\"a\":\"x\\\\\\\":\",\"b\":1}", 20, &o));
        json_object_put(o);
        ASSERT_ERR(webhook_parse_body(NULL, "{\"a\":\"x\\\\\",\"b\":1,\"b\":2}", 23, &o), EINVAL);
        json_tokener_free(tok);
}

/* json-c keeps the last of repeated keys, where a sender may have read
 * the first: refused, at any depth, whatever a comment or a '...' string
 * (json-c takes both) hides. Colons inside strings are no members. */
TEST(duplicate_keys) {
        static const char *const bodies[] = {
                "{\"user\":\"a@example.com\",\"user\":\"b@example.com\"}",
                "{\"x\":{\"user\":1,\"user\":2}}",
                "{\"x\":[{\"a\":1},{\"b\":{\"c\":1,\"c\":{\"d\":2}}}]}",
                "{\"a\":{\"x\":1},\"a\":{\"y\":2}}",
                "{\"a\":1 /*\"*/,\"a\":2 /*\"*/}",
                "{'a':1,\"a\":2}",
        };
        Reply r;

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                post_signed(bodies[i], &r);
                assert_error(&r, 400, "invalid_json");
        }
        post_signed("{\"t\":\"12:00:01\",\"u\":\"a\\\":b\",\"v\":{\"w\":[{\"a\":1},{\"a\":1}]}}", &r);
        ASSERT_EQ(r.status, 202);
}

/* Signed and well formed for json-c, but not UTF-8: refused before rules
 * run, nothing stored or called. An escaped NUL stays what it was. */
TEST(not_utf8) {
        static const char *const bodies[] = {
                "{\"sid\":\"\xff\xfe\",\"x\":1}",
                "{\"user\":\"alice@example.com\",\"n\":\"\xc0\xaf\"}",  /* overlong */
                "{\"user\":\"alice@example.com\",\"n\":\"\xed\xa0\x80\"}", /* surrogate */
                "{\"user\":\"alice@example.com\",\"n\":\"\xf4\x90\x80\x80\"}", /* > U+10FFFF */
                "{\"user\":\"alice@example.com\"}\xe2\x9c",                  /* truncated */
        };
        size_t before = fake_suspends(NULL);
        Reply r;

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                post_signed(bodies[i], &r);
                assert_error(&r, 400, "invalid_json");
        }
        wait_idle();
        ASSERT_EQ(fake_suspends(NULL), before);
        post_signed("{\"sid\":\"\xc3\xa9t\xc3\xa9 \\u0000\",\"x\":1}", &r);
        ASSERT_EQ(r.status, 202);
}

/* The webhook keeps one tokener across deliveries, but lets go of it after
 * a body past 8 KiB (its buffer grows to the longest string): parses keep
 * working on either side of that. */
TEST(big_body_between_small_ones) {
        static const char head[] = "{\"blob\": \"";
        char big[MAX_BODY - 1024];
        size_t n = sizeof(big) - sizeof(head) - 4;
        Reply r;

        post_signed("{\"users\": [", &r);
        assert_error(&r, 400, "invalid_json");
        memcpy(big, head, sizeof(head) - 1);
        memset(big + sizeof(head) - 1, 'x', n);
        strcpy(big + sizeof(head) - 1 + n, "\"}");
        post_signed(big, &r);
        ASSERT_EQ(r.status, 202);
        big[sizeof(head) - 1 + n] = 0; /* the string unterminated */
        post_signed(big, &r);
        assert_error(&r, 400, "invalid_json");
        post_signed("{\"small\": 1}", &r);
        ASSERT_EQ(r.status, 202);
}

TEST(json_depth_limit) {
        char deep[400];
        size_t n = 0;
        Reply r;

        /* 100 levels: past LIMIT_JSON_DEPTH (64). */
        for (unsigned i = 0; i < 100; i++)
                n += (size_t) snprintf(deep + n, sizeof(deep) - n, "[");
        deep[n] = 0;
        char body[600];
        snprintf(body, sizeof(body), "{\"a\":%s", deep);
        for (unsigned i = 0; i < 100; i++)
                strcat(body, "]");
        strcat(body, "}");
        post_signed(body, &r);
        assert_error(&r, 400, "invalid_json");
}

/* One rung of the rejection ladder: a request it refuses, and the answer. */
typedef struct Refusal {
        const char *method, *path;
        const char *headers[3];  /* NULL-terminated */
        const char *body;        /* NULL: none */
        long status;
        const char *error;
        const char *allow;       /* the Allow header wanted, NULL: not checked */
        const char *message;     /* a part of the message wanted, or NULL */
} Refusal;

#define WRONG_SIGNATURE "X-Signature: sha256=00000000000000000000000000000000000000000000000000000000000000ff"
#define OKTA_CHALLENGE "X-Okta-Verification-Challenge: c9uRsBaRiGE7d0qk"
#define AUTH_FAILED "Authentication failed."

TEST(refused) {
        static const Refusal cases[] = {
                /* auth: the same message whatever was wrong */
                { "POST", "/hooks/hmac", {}, "{}", 401, "unauthorized", .message = AUTH_FAILED },
                { "POST", "/hooks/hmac", { WRONG_SIGNATURE }, "{}", 401, "unauthorized", .message = AUTH_FAILED },
                { "POST", "/hooks/okta", { "Authorization: not-the-token" }, "{}", 401, "unauthorized",
                  .message = AUTH_FAILED },
                { "GET", "/hooks/okta", { "Authorization: wrong", OKTA_CHALLENGE }, NULL, 401, "unauthorized" },
                /* path */
                { "POST", "/hooks/nope", {}, "{}", 404, "not_found" },
                { "POST", "/hooks/", {}, "{}", 404, "not_found" },
                { "POST", "/hooks/hmac/extra", {}, "{}", 404, "not_found" },
                { "POST", "/", {}, "{}", 404, "not_found" },
                /* method: GET only for the Okta challenge */
                { "PUT", "/hooks/hmac", {}, "{}", 405, "method_not_allowed", .allow = "POST" },
                { "DELETE", "/hooks/hmac", {}, NULL, 405, "method_not_allowed", .allow = "POST" },
                { "GET", "/hooks/hmac", {}, NULL, 405, "method_not_allowed", .allow = "POST" },
                { "GET", "/hooks/okta", {}, NULL, 405, "method_not_allowed", .allow = "POST" },
                /* content type */
                { "POST", "/hooks/open", { "Content-Type: text/plain" }, "{}", 415, "unsupported_media_type" },
                { "POST", "/hooks/open", { "Content-Type: application/x-www-form-urlencoded" }, "{}", 415,
                  "unsupported_media_type" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const Refusal *c = &cases[i];
                Reply r;

                request(c->method, c->path, c->headers, c->body, &r);
                if (r.status != c->status)
                        FAIL_AT("%s %s: status %ld, want %ld; body %s", c->method, c->path, r.status, c->status, r.body);
                assert_error(&r, c->status, c->error);
                if (c->allow)
                        ASSERT_STREQ(r.allow, c->allow);
                if (c->message)
                        ASSERT_CONTAINS(r.body, c->message);
        }
}

TEST(okta_challenge) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *ok[] = { "Authorization: " OKTA_TOKEN, OKTA_CHALLENGE, NULL };
        Reply r;

        request("GET", "/hooks/okta", ok, NULL, &r);
        ASSERT_EQ(r.status, 200);
        o = parse_reply(&r);
        ASSERT_STREQ(get_str(o, "verification"), "c9uRsBaRiGE7d0qk");
        ASSERT_EQ(json_object_object_length(o), 1);
}

/* A JSON suffix type is JSON too (the refused types: see refused). */
TEST(json_suffix_media_type) {
        const char *cloud[] = { "Content-Type: application/cloudevents+json", NULL };
        Reply r;

        request("POST", "/hooks/open", cloud, "{}", &r);
        ASSERT_TRUE(r.status == 202 || r.status == 429);
}

TEST(too_large) {
        char big[4 * MAX_BODY];
        const char *expect[] = { "Expect: 100-continue", NULL };
        Reply r;

        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[sizeof(big) - 2] = '}';
        big[sizeof(big) - 1] = 0;

        /* Declared length over the limit: refused before the body. */
        request_full("POST", "/hooks/hmac", expect, big, strlen(big), false, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        assert_error(&r, 413, "payload_too_large");
        request_full("POST", "/hooks/hmac", NULL, big, strlen(big), false, &r);
        if (r.code == CURLE_OK)
                assert_error(&r, 413, "payload_too_large");

        /* Chunked: refused once it grows past the limit. */
        request_full("POST", "/hooks/hmac", NULL, big, strlen(big), true, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        assert_error(&r, 413, "payload_too_large");

        /* Exactly at the limit is fine (and then fails auth). */
        big[MAX_BODY - 2] = '}';
        big[MAX_BODY - 1] = 0;
        request_full("POST", "/hooks/hmac", NULL, big, strlen(big), true, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        assert_error(&r, 401, "unauthorized");
}

TEST(rate_limited) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Reply r;
        unsigned seen_429 = 0;

        /* 1/s, burst 1: of three quick deliveries at most two pass (a
         * second boundary may refill one), and the 429 says when. */
        for (unsigned i = 0; i < 3; i++) {
                char body[64];

                snprintf(body, sizeof(body), "{\"n\": %u}", i);
                request("POST", "/hooks/open", NULL, body, &r);
                if (r.status == 429) {
                        assert_error(&r, 429, "rate_limited");
                        ASSERT_STREQ(r.retry_after, "1");
                        seen_429++;
                } else
                        ASSERT_EQ(r.status, 202);
        }
        ASSERT_TRUE(seen_429 >= 1);
}

TEST(store_unavailable) {
        char body[MAX_BODY - 64];
        Reply r;
        int n;

        /* A real commit failure: the database may not grow any more (a
         * full disk, -ENOSPC), and the event needs new pages. */
        wait_idle();
        n = snprintf(body, sizeof(body), "{\"store\": 2, \"pad\": \"");
        memset(body + n, 'p', sizeof(body) - (size_t) n - 3);
        memcpy(body + sizeof(body) - 3, "\"}", 3);

        command(CMD_STORE_FULL);
        post_signed(body, &r);
        assert_error(&r, 503, "store_unavailable");
        ASSERT_STREQ(r.retry_after, "5");
        command(CMD_SNAPSHOT);
        ASSERT_FALSE(snapshot.store_writable);
        /* And readiness says so. */
        request("GET", "status:/readyz", NULL, NULL, &r);
        assert_error(&r, 503, "not_ready");
        ASSERT_CONTAINS(r.body, "store");
        ASSERT_TRUE(strlen(r.retry_after) > 0);
        command(CMD_STORE_OK);

        /* The same delivery goes through once the store is back: nothing
         * of the failed one was recorded (no duplicate). */
        post_signed(body, &r);
        ASSERT_EQ(r.status, 202);
        request("GET", "status:/readyz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
}

/* Every allocation of one request's handling fails in turn: the sender
 * always gets an answer (503 + Retry-After when memory ran out), never a
 * closed connection; in particular when the body cannot be stored. */
TEST(out_of_memory) {
#ifdef REMEDYD_ALLOC_TORTURE
        unsigned n_503 = 0;

        for (unsigned long n = 1; n <= 40; n++) {
                char body[64];
                Reply r;

                wait_idle();
                snprintf(body, sizeof(body), "{\"oom\": %lu}", n);
                fail_alloc_at = n;
                command(CMD_FAIL_ALLOC);
                post_signed(body, &r);
                fail_alloc_at = 0;
                command(CMD_FAIL_ALLOC);
                if (r.status == 503) {
                        ASSERT_TRUE(strlen(r.retry_after) > 0);
                        n_503++;
                } else if (r.status != 202)
                        FAIL_AT("allocation %lu failed: status %ld, body %s", n, r.status, r.body);
        }
        ASSERT_TRUE(n_503 >= 2);
#endif
}

TEST(held_over_cap) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *actions;
        Reply r;

        /* max_suspensions 2 per hour; alice's suspension (done) counts,
         * the failed one does not: one more goes, the next is held. */
        wait_idle();
        command(CMD_SNAPSHOT);
        ASSERT_EQ(snapshot.suspensions_in_window, 1);
        post_signed("{\"users\": [{\"email\": \"" CAROL_ID "\"}, {\"email\": \"" DAVE_ID "\"}]}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_TRUE(json_object_object_get_ex(o, "actions", &actions));
        ASSERT_EQ(json_object_array_length(actions), 2);
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 0), "status"), "queued");
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 1), "status"), "held");
        wait_idle();
        ASSERT_EQ(fake_suspends(CAROL_ID), 1);
        ASSERT_EQ(fake_suspends(DAVE_ID), 0);
        ASSERT_EQ(snapshot.queue.held, 1);
        ASSERT_EQ(snapshot.suspensions_in_window, 2);
}

TEST(dry_run) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *actions;
        Reply r;

        command(CMD_DRY_RUN);
        post_signed("{\"users\": [{\"email\": \"alice@example.com\"}, {\"email\": \"boss@example.com\"}], \"dry\": 1}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_TRUE(json_object_object_get_ex(o, "actions", &actions));
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 0), "status"), "dry_run");
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 1), "status"), "protected");
        wait_idle();
        ASSERT_EQ(fake_suspends(ALICE_ID), 1);
}

TEST(metrics_counted) {
        command(CMD_RENDER_METRICS);
        ASSERT_CONTAINS(metrics_text, "remedyd_webhooks_total{source=\"hmac\",code=\"202\"}");
        ASSERT_CONTAINS(metrics_text, "remedyd_webhooks_total{source=\"hmac\",code=\"200\"} 1");
        ASSERT_CONTAINS(metrics_text, "remedyd_webhooks_total{source=\"unknown\",code=\"404\"}");
        ASSERT_CONTAINS(metrics_text, "remedyd_webhooks_total{source=\"hmac\",code=\"413\"}");
        ASSERT_CONTAINS(metrics_text, "remedyd_webhooks_total{source=\"open\",code=\"429\"}");
        ASSERT_CONTAINS(metrics_text, "remedyd_rule_matches_total{rule=\"suspend-users\"}");
        ASSERT_CONTAINS(metrics_text, "remedyd_actions_total{action=\"suspend\",outcome=\"protected\"}");
}

TEST(shutting_down) {
        Reply r;

        command(CMD_STOP_ACCEPTING);
        post_signed("{\"late\": true}", &r);
        assert_error(&r, 503, "shutting_down");
        ASSERT_TRUE(strlen(r.retry_after) > 0);
}

TEST(status_endpoints) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        char synced_at[40];
        json_object *v;
        Reply r;

        request("GET", "status:/healthz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "ok\n");
        request("HEAD", "status:/healthz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.len, 0);
        /* Readiness before a token and with a failing store: see
         * not_ready_before_token and store_unavailable. */
        request("GET", "status:/readyz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);

        wait_idle();
        request("GET", "status:/status", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        o = parse_reply(&r);
        ASSERT_STREQ(get_str(o, "version"), REMEDYD_VERSION);
        ASSERT_TRUE(json_object_object_get_ex(o, "uptime_seconds", &v));
        ASSERT_TRUE(json_object_get_int64(v) >= 90);
        {
                static const char *const want[][8] = {
                        { "config", "loaded_at", "sources", "rules", "last_reload_error" },
                        { "token", "valid", "expires_in_seconds" },
                        { "directory", "users", "synced_at" },
                        { "queue", "queued", "running", "held", "failed" },
                        { "safety", "dry_run", "suspensions_in_window", "max_suspensions" },
                        { "counters" },
                };
                for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                        json_object *sub;

                        ASSERT_TRUE(json_object_object_get_ex(o, want[i][0], &sub));
                        ASSERT_TRUE(json_object_is_type(sub, json_type_object));
                        for (size_t j = 1; j < 8 && want[i][j]; j++)
                                if (!json_object_object_get_ex(sub, want[i][j], NULL))
                                        FAIL_AT("/status lacks %s.%s", want[i][0], want[i][j]);
                }
        }
        /* The numbers are the modules' own. */
        command(CMD_SNAPSHOT);
        ASSERT_EQ(snapshot.queue.held, 1);
        ASSERT_EQ(snapshot.queue.failed, 1);
        ASSERT_TRUE(json_object_object_get_ex(o, "queue", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "held")), snapshot.queue.held);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "queued")), snapshot.queue.queued);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "failed")), snapshot.queue.failed);
        ASSERT_TRUE(json_object_object_get_ex(o, "directory", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "users")), FAKE_USERS);
        format_rfc3339(snapshot.directory.synced_usec, synced_at, sizeof(synced_at));
        ASSERT_STREQ(json_object_get_string(json_object_object_get(v, "synced_at")), synced_at);
        ASSERT_TRUE(json_object_object_get_ex(o, "token", &v));
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(v, "valid")));
        ASSERT_TRUE(json_object_get_int64(json_object_object_get(v, "expires_in_seconds")) > 0);
        ASSERT_TRUE(json_object_get_int64(json_object_object_get(v, "expires_in_seconds")) <= 900);
        ASSERT_TRUE(json_object_object_get_ex(o, "safety", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "suspensions_in_window")),
                  snapshot.suspensions_in_window);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "suspensions_in_window")), 2);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "max_suspensions")), 2);
        ASSERT_TRUE(json_object_object_get_ex(o, "counters", &v));
        ASSERT_TRUE(json_object_get_int64(json_object_object_get(v, "webhooks_total")) > 10);

        request("GET", "status:/metrics", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_CONTAINS(r.content_type, "text/plain");
        ASSERT_CONTAINS(r.body, "remedyd_webhooks_total{source=\"hmac\",code=\"202\"}");
        ASSERT_CONTAINS(r.body, "remedyd_queue_depth{state=\"held\"} 1\n");
        ASSERT_CONTAINS(r.body, "remedyd_queue_depth{state=\"queued\"} 0\n");
        ASSERT_CONTAINS(r.body, "remedyd_queue_depth{state=\"failed\"} 1\n");
        ASSERT_CONTAINS(r.body, "remedyd_directory_users 5\n");
        ASSERT_CONTAINS(r.body, "remedyd_token_valid 1\n");
        ASSERT_CONTAINS(r.body, "remedyd_api_requests_total{operation=\"suspend\",code=\"200\"} 2\n");

        request("POST", "status:/status", NULL, "{}", &r);
        assert_error(&r, 405, "method_not_allowed");
        ASSERT_STREQ(r.allow, "GET, HEAD");
        request("GET", "status:/nothing", NULL, NULL, &r);
        assert_error(&r, 404, "not_found");
}

static int open_loopback(unsigned *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(sa);
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(fd, 64));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

TEST(tls_and_mtls) {
        Reply r;

        if (!have_tls) {
                fprintf(stderr, "openssl not available, skipped\n");
                return;
        }
        /* TLS with a hook that needs no client certificate. */
        request("POST", "tls:/hooks/open", NULL, "{\"via\": \"tls\"}", &r);
        ASSERT_EQ(r.status, 202);
        /* mtls source: refused without a certificate, accepted with one
         * whose subject holds the configured substring. */
        request("POST", "tls:/hooks/mtls", NULL, "{\"via\": \"mtls\"}", &r);
        assert_error(&r, 401, "unauthorized");
        request("POST", "mtls:/hooks/mtls", NULL, "{\"via\": \"mtls\"}", &r);
        ASSERT_EQ(r.status, 202);
}

static const char *source_root(void) {
        const char *root = getenv("REMEDYD_SOURCE_ROOT");

        return root ? root : ".";
}

static Config *load_config(const char *path) {
        ConfigProblems problems = {};
        Config *c = NULL;
        int r;

        r = config_load(path, 0, &c, &problems);
        for (size_t i = 0; i < problems.n; i++)
                fprintf(stderr, "%s\n", problems.lines[i]);
        config_problems_free(&problems);
        if (r < 0)
                FAIL_AT("%s: cannot load: %s", path, strerror(-r));
        /* The fake listens on a port the OS picked. */
        mem_free(c->onepassword.base_url);
        c->onepassword.base_url = mem_strdup(fake.base_url);
        ASSERT_NOT_NULL(c->onepassword.base_url);
        return c;
}

/* The fixture directory copied to a temporary one, with certificates
 * generated next to remedyd-tls.yaml. */
static void setup_tls(void) {
        char cmd[4096], path[128];

        snprintf(tls_dir, sizeof(tls_dir), "/tmp/test-webhook-tls-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(tls_dir));
        snprintf(cmd, sizeof(cmd),
                 "cp -R '%s/tests/data/webhook/.' %s && mkdir %s/tls && cd %s/tls && exec >/dev/null 2>&1 && "
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                 "  -subj /CN=test-ca -keyout ca.key -out ca.pem && "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
                 "  -keyout server.key -out server.csr && "
                 "printf 'subjectAltName=DNS:localhost\n' > server.ext && "
                 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                 "  -extfile server.ext -out server.pem && "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=Example/CN=siem.example.com "
                 "  -keyout client.key -out client.csr && "
                 "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem",
                 source_root(), tls_dir, tls_dir, tls_dir);
        if (system(cmd) != 0)
                return;
        have_tls = true;
        snprintf(path, sizeof(path), "%s/remedyd-tls.yaml", tls_dir);
        tls_config = load_config(path);
        ASSERT_NOT_NULL(tls_config->listen.tls_client_ca_file);
        tls_fd = open_loopback(&tls_port);
}

static void cleanup_dir(const char *dir) {
        char cmd[256];

        if (!dir[0])
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ASSERT_EQ(system(cmd), 0);
}

TEST(unix_socket) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        Reply r;

        request("POST", "unix:/hooks/open", NULL, "{\"via\": \"unix\"}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_STREQ(get_str(o, "duplicate"), "false");
}

static void setup(void) {
        struct sockaddr_un su = { .sun_family = AF_UNIX };
        char path[4096];

        fake_require();
        fake_start(&fake, NULL);
        fake_post(&fake, "/_fake/users",
                  "[{\"email\": \"alice@example.com\", \"id\": \"" ALICE_ID "\"},"
                  " {\"email\": \"boss@example.com\", \"id\": \"" BOSS_ID "\"},"
                  " {\"email\": \"twins@example.com\"}, {\"email\": \"Twins@Example.com\"},"
                  " {\"email\": \"carol@example.com\", \"id\": \"" CAROL_ID "\"}]");

        snprintf(path, sizeof(path), "%s/tests/data/webhook/remedyd.yaml", source_root());
        config = load_config(path);
        ASSERT_NOT_NULL(mkdtemp(state_dir));

        listen_fd = open_loopback(&port);
        status_fd = open_loopback(&status_port);

        snprintf(unix_path, sizeof(unix_path), "/tmp/test-webhook-%d.sock", (int) getpid());
        (void) unlink(unix_path);
        memcpy(su.sun_path, unix_path, strlen(unix_path) + 1);
        unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(unix_fd >= 0);
        ASSERT_OK(bind(unix_fd, (struct sockaddr *) &su, sizeof(su)));
        ASSERT_OK(listen(unix_fd, 64));
        setup_tls();
        ASSERT_OK(pipe2(cmd_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(ack_pipe, O_CLOEXEC));
}

int main(void) {
        pthread_t t;
        char c;

        log_set_max_level(getenv("REMEDYD_TEST_DEBUG") ? LOG_DEBUG : LOG_WARNING);
        ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        setup();
        ASSERT_EQ(pthread_create(&t, NULL, server_thread, NULL), 0);
        ASSERT_EQ(read(ack_pipe[0], &c, 1), 1);

        RUN(not_ready_before_token);
        RUN(pending_before_sync);
        RUN(accepted_and_duplicate);
        RUN(accepted_without_match);
        RUN(bad_json);
        RUN(parse_body);
        RUN(not_utf8);
        RUN(duplicate_keys);
        RUN(big_body_between_small_ones);
        RUN(json_depth_limit);
        RUN(refused);
        RUN(okta_challenge);
        RUN(json_suffix_media_type);
        RUN(too_large);
        RUN(rate_limited);
        RUN(store_unavailable);
        RUN(out_of_memory);
        RUN(held_over_cap);
        RUN(dry_run);
        RUN(metrics_counted);
        RUN(status_endpoints);
        RUN(unix_socket);
        RUN(tls_and_mtls);
        RUN(shutting_down);

        c = CMD_EXIT;
        ASSERT_EQ(write(cmd_pipe[1], &c, 1), 1);
        ASSERT_EQ(pthread_join(t, NULL), 0);
        close(cmd_pipe[0]);
        close(cmd_pipe[1]);
        close(ack_pipe[0]);
        close(ack_pipe[1]);
        (void) unlink(unix_path);
        config = config_free(config);
        tls_config = config_free(tls_config);
        cleanup_dir(tls_dir);
        cleanup_dir(state_dir);
        fake_stop(&fake);
        curl_global_cleanup();
        HARNESS_DONE();
}
