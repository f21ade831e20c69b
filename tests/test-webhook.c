/* The webhook end to end in-process: the real http_server + webhook on an
 * sd-event loop in a server thread, on 127.0.0.1:0, driven by libcurl from
 * the main thread. Commands to the server thread (store failure, shutdown)
 * go through a pipe, so the loop's state is only touched on its thread.
 *
 * Until the config/rules, store and directory branches land here, the
 * modules around the webhook are small fakes below (TEST ONLY): a store
 * that commits asynchronously through a defer source and deduplicates by
 * key, rules that turn event.users[] into hits, and a directory that maps a
 * few emails. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "daemon.h"
#include "directory.h"
#include "executor.h"
#include "harness.h"
#include "log.h"
#include "metrics.h"
#include "rules.h"
#include "store.h"
#include "status.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"
#include "webhook.h"
#include "version.h"


#define HMAC_SECRET "hmac-secret-1"
#define OKTA_TOKEN "okta-token-value"
#define MAX_BODY 1024

/* --- fakes of the modules around the webhook (TEST ONLY) ----------------- */

static Config config;
static Source sources[4];
static Config tls_config;
static char tls_dir[64];
static bool have_tls;
static unsigned tls_port;
static int tls_fd = -1;
static Rule rule_suspend = { .name = (char *) "suspend-users", .action = ACTION_SUSPEND, .cooldown_usec = 60 * USEC_PER_SEC };
static char *hmac_secrets[] = { (char *) "old-hmac-secret", (char *) HMAC_SECRET, NULL };
static char *okta_secrets[] = { (char *) OKTA_TOKEN, NULL };

const Source *config_find_source(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_sources; i++)
                if (strcmp(c->sources[i].name, name) == 0)
                        return &c->sources[i];
        return NULL;
}

const char *config_action_kind_to_string(ActionKind k) {
        static const char *const t[] = { "suspend", "reactivate", "notify" };
        return k >= 0 && k < _ACTION_KIND_MAX ? t[k] : NULL;
}

const char *store_action_status_to_string(ActionStatus s) {
        static const char *const t[] = {
                "queued", "held", "dry_run", "cooldown", "protected", "unknown_user",
                "ambiguous_user", "unresolved", "running", "done", "failed", "cancelled",
        };
        return s >= 0 && s < _ACTION_STATUS_MAX ? t[s] : NULL;
}

int template_render(const Template *t, json_object *value, json_object *event_root, char **ret, char **ret_missing) {
        return -ENOENT;
}

/* One hit per element of "users": a string is the user, null unresolved. */
int rules_evaluate(const Config *c, const char *source_name, json_object *event, RuleHits *ret) {
        json_object *users;
        size_t n;

        *ret = (RuleHits) {};
        if (!json_object_object_get_ex(event, "users", &users) || !json_object_is_type(users, json_type_array))
                return 0;
        n = json_object_array_length(users);
        ret->hits = mem_calloc(n ? n : 1, sizeof(RuleHit));
        if (!ret->hits)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(users, i);
                RuleHit *h = &ret->hits[ret->n++];

                h->rule = &rule_suspend;
                if (json_object_is_type(u, json_type_string))
                        h->user = mem_strdup(json_object_get_string(u));
                else
                        h->missing = mem_strdup("result.user");
        }
        return n > 0;
}

void rule_hits_free(RuleHits *h) {
        for (size_t i = 0; i < h->n; i++) {
                mem_free(h->hits[i].user);
                mem_free(h->hits[i].reason);
                mem_free(h->hits[i].missing);
        }
        mem_free(h->hits);
        *h = (RuleHits) {};
}

DirectoryResult directory_lookup(Directory *d, const char *email, const char **ret_user_id) {
        if (strcmp(email, "alice@example.com") == 0) {
                *ret_user_id = "ALICEALICEALICEALICEALICE1";
                return DIRECTORY_FOUND;
        }
        if (strcmp(email, "boss@example.com") == 0) {
                *ret_user_id = "BOSSBOSSBOSSBOSSBOSSBOSS12";
                return DIRECTORY_FOUND;
        }
        if (strcmp(email, "twins@example.com") == 0)
                return DIRECTORY_AMBIGUOUS;
        if (strcmp(email, "later@example.com") == 0)
                return DIRECTORY_PENDING;
        return DIRECTORY_UNKNOWN;
}

bool safety_is_protected(const Config *c, const char *user, const char *user_id);
bool safety_is_protected(const Config *c, const char *user, const char *user_id) {
        return (user && strcmp(user, "boss@example.com") == 0) ||
                (user_id && strcmp(user_id, "BOSSBOSSBOSSBOSSBOSSBOSS12") == 0);
}

static unsigned executor_kicks;
void executor_kick(Executor *x) {
        executor_kicks++;
}

bool daemon_dry_run(const Daemon *d) {
        return d->opts.dry_run;
}

void store_action_done(StoreAction *a) {
        mem_free(a->rule);
        mem_free(a->user);
        mem_free(a->user_id);
        mem_free(a->reason);
        mem_free(a->detail);
        mem_free(a->event_id);
}

StoreEvent *store_event_free(StoreEvent *ev) {
        if (!ev)
                return NULL;
        for (size_t i = 0; i < ev->n_actions; i++)
                store_action_done(&ev->actions[i]);
        mem_free(ev->actions);
        mem_free(ev->source);
        mem_free(ev->dedup_key);
        mem_free(ev->body);
        mem_free(ev);
        return NULL;
}

typedef struct FakeSubmit {
        StoreEvent *ev;
        StoreEventCallback cb;
        void *userdata;
} FakeSubmit;

struct Store {
        sd_event *event;
        int fail_submit;   /* store_submit_event() fails */
        int fail_commit;   /* the callback reports -EIO */
        StoreEvent *committed[64];
        size_t n_committed;
        unsigned submitted;
};

static Store fake_store;

static int fake_commit(sd_event_source *s, void *userdata) {
        FakeSubmit *f = userdata;
        StoreEvent *ev = f->ev;

        sd_event_source_disable_unref(s);
        if (fake_store.fail_commit) {
                f->cb(&fake_store, -EIO, NULL, false, f->userdata);
                store_event_free(ev);
                mem_free(f);
                return 0;
        }
        for (size_t i = 0; i < fake_store.n_committed; i++)
                if (strcmp(fake_store.committed[i]->source, ev->source) == 0 &&
                    strcmp(fake_store.committed[i]->dedup_key, ev->dedup_key) == 0) {
                        f->cb(&fake_store, 0, fake_store.committed[i], true, f->userdata);
                        store_event_free(ev);
                        mem_free(f);
                        return 0;
                }
        ASSERT_OK(random_id(ev->id));
        for (size_t i = 0; i < ev->n_actions; i++) {
                ASSERT_OK(random_id(ev->actions[i].id));
                if (ev->actions[i].status == ACTION_STATUS_QUEUED && ev->actions[i].dry_run)
                        ev->actions[i].status = ACTION_STATUS_DRY_RUN;
        }
        ASSERT_TRUE(fake_store.n_committed < ELEMENTSOF(fake_store.committed));
        fake_store.committed[fake_store.n_committed++] = ev;
        f->cb(&fake_store, 0, ev, false, f->userdata);
        mem_free(f);
        return 0;
}

int store_submit_event(Store *s, StoreEvent *ev, StoreEventCallback cb, void *userdata) {
        FakeSubmit *f;

        s->submitted++;
        if (s->fail_submit) {
                store_event_free(ev);
                return -EIO;
        }
        f = mem_calloc(1, sizeof(*f));
        if (!f) {
                store_event_free(ev);
                return -ENOMEM;
        }
        *f = (FakeSubmit) { ev, cb, userdata };
        ASSERT_OK(sd_event_add_defer(s->event, NULL, fake_commit, f));
        return 0;
}

static bool fake_writable = true;
bool store_writable(Store *s) {
        return fake_writable;
}

int store_queue_counts(Store *s, StoreQueueCounts *ret) {
        *ret = (StoreQueueCounts) { .queued = 3, .running = 1, .held = 2, .failed = 4, .done = 7 };
        return 0;
}

int store_suspensions_in_window(Store *s, uint64_t *ret) {
        *ret = 5;
        return 0;
}

static bool fake_token_ok;
void users_api_token_state(UsersApi *api, UsersApiTokenState *ret) {
        *ret = (UsersApiTokenState) { .valid = fake_token_ok, .expires_in_seconds = 1234, .last_request_ok = fake_token_ok };
}

void directory_stats(Directory *d, DirectoryStats *ret) {
        *ret = (DirectoryStats) { .users = 42, .synced_usec = 1764210125ULL * USEC_PER_SEC };
}

/* --- the server thread ------------------------------------------------- */

enum {
        CMD_EXIT = 'x',
        CMD_FAIL_SUBMIT = 's',
        CMD_FAIL_COMMIT = 'c',
        CMD_STORE_OK = 'o',
        CMD_STOP_ACCEPTING = 'a',
        CMD_DRY_RUN = 'd',
        CMD_RENDER_METRICS = 'm',
        CMD_TOKEN_OK = 't',
        CMD_STORE_READONLY = 'r',
        CMD_FAIL_ALLOC = 'f',   /* mem_fail_at(fail_alloc_at) on the server thread */
};

static unsigned long fail_alloc_at;

static int cmd_pipe[2];
static int ack_pipe[2];
static int listen_fd, status_fd, unix_fd;
static char unix_path[108];
static unsigned port, status_port;
static char metrics_text[16384];

static int on_command(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Daemon *d = userdata;
        char c;

        ASSERT_EQ(read(fd, &c, 1), 1);
        switch (c) {
        case CMD_EXIT:
                return sd_event_exit(d->event, 0);
        case CMD_FAIL_SUBMIT:
                fake_store.fail_submit = 1;
                break;
        case CMD_FAIL_COMMIT:
                fake_store.fail_commit = 1;
                break;
        case CMD_STORE_OK:
                fake_store.fail_submit = fake_store.fail_commit = 0;
                break;
        case CMD_STOP_ACCEPTING:
                webhook_stop_accepting(d->webhook);
                break;
        case CMD_DRY_RUN:
                d->opts.dry_run = true;
                break;
        case CMD_TOKEN_OK:
                fake_token_ok = true;
                break;
        case CMD_STORE_READONLY:
                fake_writable = !fake_writable;
                break;
        case CMD_FAIL_ALLOC:
                mem_fail_at(fail_alloc_at);
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
        ASSERT_EQ(write(ack_pipe[1], &c, 1), 1);
        return 0;
}

static void *server_thread(void *arg) {
        Webhook *unix_webhook = NULL, *tls_webhook = NULL;
        Daemon d = {}, tls_daemon;
        sd_event_source *cmd_source = NULL;

        ASSERT_OK(sd_event_new(&d.event));
        d.config = &config;
        d.store = &fake_store;
        d.directory = (Directory *) &config; /* any non-NULL: the fake ignores it */
        d.executor = (Executor *) &config;
        d.metrics = metrics_new();
        ASSERT_NOT_NULL(d.metrics);
        fake_store.event = d.event;

        d.api = (UsersApi *) &config;
        d.started_mono_usec = now_usec(CLOCK_MONOTONIC) - 90 * USEC_PER_SEC;
        d.started_usec = now_usec(CLOCK_REALTIME) - 90 * USEC_PER_SEC;
        ASSERT_OK(webhook_new(&d, listen_fd, &d.webhook));
        ASSERT_OK(status_new(&d, status_fd, &d.status));
        ASSERT_OK(webhook_new(&d, unix_fd, &unix_webhook));
        if (have_tls) {
                tls_daemon = d;
                tls_daemon.config = &tls_config;
                ASSERT_OK(webhook_new(&tls_daemon, tls_fd, &tls_webhook));
        }
        ASSERT_OK(sd_event_add_io(d.event, &cmd_source, cmd_pipe[0], EPOLLIN, on_command, &d));
        ASSERT_EQ(write(ack_pipe[1], "r", 1), 1);

        ASSERT_OK(sd_event_loop(d.event));

        d.webhook = webhook_free(d.webhook);
        d.status = status_free(d.status);
        unix_webhook = webhook_free(unix_webhook);
        tls_webhook = webhook_free(tls_webhook);
        sd_event_source_disable_unref(cmd_source);
        metrics_free(d.metrics);
        for (size_t i = 0; i < fake_store.n_committed; i++)
                store_event_free(fake_store.committed[i]);
        sd_event_unref(d.event);
        return NULL;
}

static void command(char c) {
        char a;

        ASSERT_EQ(write(cmd_pipe[1], &c, 1), 1);
        ASSERT_EQ(read(ack_pipe[0], &a, 1), 1);
        ASSERT_EQ(a, c);
}

/* --- the client -------------------------------------------------------- */

typedef struct Reply {
        long status;
        char body[8192];
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
                snprintf(f, sizeof(f), "%s/ca.pem", tls_dir);
                ASSERT_EQ(curl_easy_setopt(c, CURLOPT_CAINFO, f), CURLE_OK);
                if (str_startswith(path, "mtls:")) {
                        snprintf(f, sizeof(f), "%s/client.pem", tls_dir);
                        ASSERT_EQ(curl_easy_setopt(c, CURLOPT_SSLCERT, f), CURLE_OK);
                        snprintf(f, sizeof(f), "%s/client.key", tls_dir);
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

TEST(accepted_and_duplicate) {
        _cleanup_(json_object_putp) json_object *a = NULL, *b = NULL;
        const char *body = "{\"users\": [\"alice@example.com\", \"nobody@example.com\", \"twins@example.com\","
                           " \"boss@example.com\", null, \"later@example.com\", \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"]}";
        static const char *const want[][2] = {
                { "alice@example.com", "queued" },
                { "nobody@example.com", "unknown_user" },
                { "twins@example.com", "ambiguous_user" },
                { "boss@example.com", "protected" },
                { NULL, "unresolved" },
                { "later@example.com", "queued" },
                { "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "queued" },
        };
        unsigned kicks = executor_kicks;
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
        ASSERT_EQ(executor_kicks, kicks + 1);

        /* The same body again: 200, duplicate, the original actions. */
        post_signed(body, &r);
        ASSERT_EQ(r.status, 200);
        b = parse_reply(&r);
        ASSERT_STREQ(get_str(b, "event_id"), get_str(a, "event_id"));
        ASSERT_STREQ(get_str(b, "duplicate"), "true");
        ASSERT_TRUE(json_object_object_get_ex(b, "actions", &actions2));
        ASSERT_STREQ(json_object_to_json_string(actions2), json_object_to_json_string(actions));
        ASSERT_EQ(executor_kicks, kicks + 1);
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

TEST(unauthorized) {
        const char *wrong[] = { "X-Signature: sha256=00000000000000000000000000000000000000000000000000000000000000ff", NULL };
        const char *okta_wrong[] = { "Authorization: not-the-token", NULL };
        Reply r;

        request("POST", "/hooks/hmac", NULL, "{}", &r);
        assert_error(&r, 401, "unauthorized");
        request("POST", "/hooks/hmac", wrong, "{}", &r);
        assert_error(&r, 401, "unauthorized");
        request("POST", "/hooks/okta", okta_wrong, "{}", &r);
        assert_error(&r, 401, "unauthorized");
        /* The same message whatever was wrong. */
        ASSERT_CONTAINS(r.body, "Authentication failed.");
}

TEST(not_found) {
        Reply r;

        request("POST", "/hooks/nope", NULL, "{}", &r);
        assert_error(&r, 404, "not_found");
        request("POST", "/hooks/", NULL, "{}", &r);
        assert_error(&r, 404, "not_found");
        request("POST", "/hooks/hmac/extra", NULL, "{}", &r);
        assert_error(&r, 404, "not_found");
        request("POST", "/", NULL, "{}", &r);
        assert_error(&r, 404, "not_found");
}

TEST(method_not_allowed) {
        Reply r;

        request("PUT", "/hooks/hmac", NULL, "{}", &r);
        assert_error(&r, 405, "method_not_allowed");
        ASSERT_STREQ(r.allow, "POST");
        request("DELETE", "/hooks/hmac", NULL, NULL, &r);
        assert_error(&r, 405, "method_not_allowed");
        ASSERT_STREQ(r.allow, "POST");
        /* GET only for the Okta challenge. */
        request("GET", "/hooks/hmac", NULL, NULL, &r);
        assert_error(&r, 405, "method_not_allowed");
        ASSERT_STREQ(r.allow, "POST");
        request("GET", "/hooks/okta", NULL, NULL, &r);
        assert_error(&r, 405, "method_not_allowed");
}

TEST(okta_challenge) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        const char *ok[] = { "Authorization: " OKTA_TOKEN, "X-Okta-Verification-Challenge: c9uRsBaRiGE7d0qk", NULL };
        const char *bad[] = { "Authorization: wrong", "X-Okta-Verification-Challenge: c9uRsBaRiGE7d0qk", NULL };
        Reply r;

        request("GET", "/hooks/okta", ok, NULL, &r);
        ASSERT_EQ(r.status, 200);
        o = parse_reply(&r);
        ASSERT_STREQ(get_str(o, "verification"), "c9uRsBaRiGE7d0qk");
        ASSERT_EQ(json_object_object_length(o), 1);

        request("GET", "/hooks/okta", bad, NULL, &r);
        assert_error(&r, 401, "unauthorized");
}

TEST(unsupported_media_type) {
        const char *text[] = { "Content-Type: text/plain", NULL };
        const char *form[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
        const char *cloud[] = { "Content-Type: application/cloudevents+json", NULL };
        Reply r;

        request("POST", "/hooks/open", text, "{}", &r);
        assert_error(&r, 415, "unsupported_media_type");
        request("POST", "/hooks/open", form, "{}", &r);
        assert_error(&r, 415, "unsupported_media_type");
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
        Reply r;

        /* The store refuses the hand-off. */
        command(CMD_FAIL_SUBMIT);
        post_signed("{\"store\": 1}", &r);
        assert_error(&r, 503, "store_unavailable");
        ASSERT_STREQ(r.retry_after, "5");
        command(CMD_STORE_OK);

        /* The commit fails after the connection was suspended. */
        command(CMD_FAIL_COMMIT);
        post_signed("{\"store\": 2}", &r);
        assert_error(&r, 503, "store_unavailable");
        ASSERT_STREQ(r.retry_after, "5");
        command(CMD_STORE_OK);

        /* And the same delivery goes through once the store is back. */
        post_signed("{\"store\": 2}", &r);
        ASSERT_EQ(r.status, 202);
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

TEST(dry_run) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *actions;
        Reply r;

        command(CMD_DRY_RUN);
        post_signed("{\"users\": [\"alice@example.com\", \"boss@example.com\"], \"dry\": 1}", &r);
        ASSERT_EQ(r.status, 202);
        o = parse_reply(&r);
        ASSERT_TRUE(json_object_object_get_ex(o, "actions", &actions));
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 0), "status"), "dry_run");
        ASSERT_STREQ(get_str(json_object_array_get_idx(actions, 1), "status"), "protected");
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
        json_object *v;
        Reply r;

        request("GET", "status:/healthz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "ok\n");
        request("HEAD", "status:/healthz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_EQ(r.len, 0);

        /* Not ready until a token request succeeded; then not while the
         * store is not writable. */
        request("GET", "status:/readyz", NULL, NULL, &r);
        assert_error(&r, 503, "not_ready");
        ASSERT_CONTAINS(r.body, "token");
        ASSERT_TRUE(strlen(r.retry_after) > 0);
        command(CMD_TOKEN_OK);
        request("GET", "status:/readyz", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        command(CMD_STORE_READONLY);
        request("GET", "status:/readyz", NULL, NULL, &r);
        assert_error(&r, 503, "not_ready");
        ASSERT_CONTAINS(r.body, "store");
        command(CMD_STORE_READONLY);

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
        ASSERT_TRUE(json_object_object_get_ex(o, "queue", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "held")), 2);
        ASSERT_TRUE(json_object_object_get_ex(o, "directory", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "users")), 42);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(v, "synced_at")), "2025-11-27T02:22:05Z");
        ASSERT_TRUE(json_object_object_get_ex(o, "token", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "expires_in_seconds")), 1234);
        ASSERT_TRUE(json_object_object_get_ex(o, "safety", &v));
        ASSERT_EQ(json_object_get_int64(json_object_object_get(v, "suspensions_in_window")), 5);
        ASSERT_TRUE(json_object_object_get_ex(o, "counters", &v));
        ASSERT_TRUE(json_object_get_int64(json_object_object_get(v, "webhooks_total")) > 10);

        request("GET", "status:/metrics", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_CONTAINS(r.content_type, "text/plain");
        ASSERT_CONTAINS(r.body, "remedyd_webhooks_total{source=\"hmac\",code=\"202\"}");
        ASSERT_CONTAINS(r.body, "remedyd_queue_depth{state=\"held\"} 2\n");
        ASSERT_CONTAINS(r.body, "remedyd_queue_depth{state=\"queued\"} 3\n");
        ASSERT_CONTAINS(r.body, "remedyd_directory_users 42\n");
        ASSERT_CONTAINS(r.body, "remedyd_token_valid 1\n");

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
        ASSERT_TRUE(r.status == 202 || r.status == 429);
        /* mtls source: refused without a certificate, accepted with one
         * whose subject holds the configured substring. */
        request("POST", "tls:/hooks/mtls", NULL, "{\"via\": \"mtls\"}", &r);
        assert_error(&r, 401, "unauthorized");
        request("POST", "mtls:/hooks/mtls", NULL, "{\"via\": \"mtls\"}", &r);
        ASSERT_EQ(r.status, 202);
}

static void setup_tls(void) {
        char cmd[2048];

        snprintf(tls_dir, sizeof(tls_dir), "/tmp/test-webhook-tls-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(tls_dir));
        snprintf(cmd, sizeof(cmd),
                 "cd %s && exec >/dev/null 2>&1 && "
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
                 tls_dir);
        if (system(cmd) != 0)
                return;
        have_tls = true;
        tls_config = config;
        ASSERT_TRUE(asprintf(&tls_config.listen.tls_cert_file, "%s/server.pem", tls_dir) > 0);
        ASSERT_TRUE(asprintf(&tls_config.listen.tls_key_file, "%s/server.key", tls_dir) > 0);
        ASSERT_TRUE(asprintf(&tls_config.listen.tls_client_ca_file, "%s/ca.pem", tls_dir) > 0);
        tls_fd = open_loopback(&tls_port);
}

static void cleanup_tls(void) {
        char cmd[256];

        if (!tls_dir[0])
                return;
        free(tls_config.listen.tls_cert_file);
        free(tls_config.listen.tls_key_file);
        free(tls_config.listen.tls_client_ca_file);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
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

        sources[0] = (Source) {
                .name = (char *) "hmac",
                .auth = { .method = AUTH_HMAC_SHA256, .header = (char *) "X-Signature", .prefix = (char *) "sha256=",
                          .secrets = hmac_secrets, .n_secrets = 2 },
        };
        sources[1] = (Source) {
                .name = (char *) "open",
                .auth = { .method = AUTH_NONE },
                .rate_per_sec = 1,
                .rate_burst = 1,
        };
        sources[3] = (Source) {
                .name = (char *) "mtls",
                .auth = { .method = AUTH_MTLS, .subject = (char *) "CN=siem.example.com" },
        };
        sources[2] = (Source) {
                .name = (char *) "okta",
                .auth = { .method = AUTH_HEADER_TOKEN, .header = (char *) "Authorization",
                          .secrets = okta_secrets, .n_secrets = 1 },
                .okta_verification = true,
        };
        config.sources = sources;
        config.n_sources = ELEMENTSOF(sources);
        config.listen.max_body_bytes = MAX_BODY;

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

        RUN(accepted_and_duplicate);
        RUN(accepted_without_match);
        RUN(bad_json);
        RUN(json_depth_limit);
        RUN(unauthorized);
        RUN(not_found);
        RUN(method_not_allowed);
        RUN(okta_challenge);
        RUN(unsupported_media_type);
        RUN(too_large);
        RUN(rate_limited);
        RUN(store_unavailable);
        RUN(out_of_memory);
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
        cleanup_tls();
        curl_global_cleanup();
        HARNESS_DONE();
}
