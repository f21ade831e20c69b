/* Raw HTTP request bytes through the real webhook: http_server (MHD on an
 * sd-event loop) and webhook.c on a unix listening socket, with a real
 * config (secrets in a private directory), a real store (SQLite in the
 * private directory), metrics and rules. Every rung of the rejection ladder
 * runs: method, path, content type, length, auth, rate limit, JSON, rules,
 * the store's commit and the 202/200.
 *
 * The input is written to a client connection, which is then shut down for
 * writing; the loop runs until the server closes it (bounded: a hang is a
 * finding). Before sending, in the head (up to the first CRLFCRLF) only:
 *   @@SIG@@  becomes the hex HMAC-SHA256 (splunk's secret) of the body,
 *            under the timestamp @@TS@@ stands for;
 *   @@TS@@   becomes the current time in seconds;
 *   @@LEN@@  becomes the body's length,
 * so that the fuzzer gets past authentication with a body it changes.
 *
 * Stand-ins (this target does not link the 1Password client, the executor
 * or the daemon): the directory never knows a user (actions stay pending
 * resolution), the executor is not kicked, dry-run is the config's. */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "auth.h"
#include "config.h"
#include "directory.h"
#include "executor.h"
#include "fuzz.h"
#include "metrics.h"
#include "store.h"
#include "util.h"
#include "webhook.h"

#define HMAC_SECRET "fuzz-hmac-secret"
#define DEADLINE_USEC (20 * USEC_PER_SEC)
/* The store grows with every event (dedup keeps them for 24 h): start a
 * fresh database now and then. */
#define STORE_RECYCLE_EVERY 20000u

DirectoryResult directory_lookup(Directory *d, const char *email, const char **ret_user_id) {
        return DIRECTORY_PENDING;
}

DirectoryResult directory_peek(Directory *d, const char *email, const char **ret_user_id) {
        return DIRECTORY_PENDING;
}

void executor_kick(Executor *x) {
}


static const char config_text[] =
        "listen:\n"
        "  webhook: \"127.0.0.1:0\"\n"
        "  max_body_bytes: 65536\n"
        "onepassword:\n"
        "  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n"
        "  client_id_file: id\n"
        "  client_secret_file: secret\n"
        "state:\n"
        "  path: state.db\n"
        "safety:\n"
        "  protected_users: [boss@example.com]\n"
        "  max_suspensions: { count: 5, window: 1h }\n"
        "sources:\n"
        "  - name: splunk\n"
        "    auth:\n"
        "      hmac_sha256:\n"
        "        header: X-Remedyd-Signature\n"
        "        prefix: \"sha256=\"\n"
        "        timestamp_header: X-Remedyd-Timestamp\n"
        "        secret_file: hmac\n"
        "    event_id: \"${sid}\"\n"
        "  - name: okta\n"
        "    auth: { header_token: { header: Authorization, token_file: token } }\n"
        "    okta_verification: true\n"
        "  - name: sentinel\n"
        "    auth: { bearer: { token_file: token } }\n"
        "  - name: elastic\n"
        "    auth: { basic: { username: kibana, password_file: token } }\n"
        "  - name: open\n"
        "    auth: { none: true }\n"
        "    event_id: \"${id}\"\n"
        "rules:\n"
        "  - name: impossible-travel\n"
        "    source: [splunk, open]\n"
        "    when:\n"
        "      all:\n"
        "        - { field: result.signature, equals: \"Impossible travel\" }\n"
        "        - { field: result.severity, in: [high, critical], ignore_case: true }\n"
        "    action: suspend\n"
        "    user: \"${result.user}\"\n"
        "    reason: \"${search_name}\"\n"
        "    cooldown: 30m\n"
        "    for: 1h\n"
        "  - name: entities\n"
        "    source: \"*\"\n"
        "    for_each: entities\n"
        "    where: { field: kind, equals: Account }\n"
        "    action: reactivate\n"
        "    user: \"${name}\"\n"
        "  - name: notify-all\n"
        "    source: \"*\"\n"
        "    when: { field: severity, gte: 5 }\n"
        "    action: notify\n"
        "    user: \"${user}\"\n"
        "    dry_run: true\n";

static sd_event *event;
static Config *config;
static Metrics *metrics;
static Store *store;
static Webhook *webhook;
static char socket_path[4200], store_path[4200];
static unsigned n_inputs;

static const Config *current_config(void *userdata) {
        return config;
}

static bool config_dry_run(void *userdata) {
        return config->safety.dry_run;
}

/* A fresh database, and a webhook on it (the webhook keeps its store). */
static void open_store_and_webhook(void) {
        StoreOptions o = {
                .max_suspensions = config->safety.max_suspensions,
                .window_usec = config->safety.window_usec,
                .dedup_window_usec = 24 * 3600 * USEC_PER_SEC,
        };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        webhook = webhook_free(webhook);
        store = store_close(store);
        (void) unlink(store_path);
        if (store_open(store_path, event, &o, &store) < 0)
                abort();

        if (strlen(socket_path) >= sizeof(sa.sun_path))
                abort();
        strcpy(sa.sun_path, socket_path);
        (void) unlink(socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
                abort();
        if (webhook_new(event,
                        &(WebhookDeps) {
                                .store = store,
                                .metrics = metrics,
                                .config = current_config,
                                .dry_run = config_dry_run,
                        },
                        fd, &webhook) < 0)
                abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        ConfigProblems problems = {};
        char path[4200];

        fuzz_quiet_logs();
        fuzz_path(path, sizeof(path), "hmac");
        fuzz_write_file(path, HMAC_SECRET "\n", strlen(HMAC_SECRET) + 1);
        fuzz_path(path, sizeof(path), "token");
        fuzz_write_file(path, "fuzz-token\n", 11);
        fuzz_path(path, sizeof(path), "id");
        fuzz_write_file(path, "id\n", 3);
        fuzz_path(path, sizeof(path), "secret");
        fuzz_write_file(path, "secret\n", 7);
        fuzz_path(path, sizeof(path), "remedyd.yaml");
        fuzz_write_file(path, config_text, strlen(config_text));
        if (config_load(path, 0, &config, &problems) < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                abort();
        }
        fuzz_path(store_path, sizeof(store_path), "state.db");

        if (sd_event_new(&event) < 0)
                abort();
        metrics = metrics_new();
        if (!metrics)
                abort();
        fuzz_path(socket_path, sizeof(socket_path), "webhook.sock");
        open_store_and_webhook();
        return 0;
}

/* Replaces the placeholders in the head; returns a new buffer. */
static char *prepare(const uint8_t *data, size_t size, size_t *ret_size) {
        const uint8_t *sep = memmem(data, size, "\r\n\r\n", 4);
        size_t head_len = sep ? (size_t) (sep - data) + 4 : size;
        const uint8_t *body = data + head_len;
        size_t body_len = size - head_len;
        char ts[32], len[32], sig[65];
        size_t cap = size + 1;
        char *out, *o;

        if (!memmem(data, head_len, "@@", 2)) {
                out = mem_memdup(data, size > 0 ? size : 1);
                if (!out)
                        abort();
                *ret_size = size;
                return out;
        }
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long) time(NULL));
        snprintf(len, sizeof(len), "%zu", body_len);
        if (auth_hmac_sha256_hex(HMAC_SECRET, memmem(data, head_len, "@@TS@@", 6) ? ts : NULL, body, body_len,
                                 sig) < 0)
                abort();
        /* Each placeholder is at least 6 bytes, so 64 more per one at most. */
        cap += (head_len / 6 + 1) * 64;
        out = o = mem_malloc(cap);
        if (!out)
                abort();
        for (size_t i = 0; i < head_len;) {
                const char *with = NULL;
                size_t skip = 0;

                if (i + 7 <= head_len && memcmp(data + i, "@@SIG@@", 7) == 0)
                        with = sig, skip = 7;
                else if (i + 6 <= head_len && memcmp(data + i, "@@TS@@", 6) == 0)
                        with = ts, skip = 6;
                else if (i + 7 <= head_len && memcmp(data + i, "@@LEN@@", 7) == 0)
                        with = len, skip = 7;
                if (with) {
                        o = stpcpy(o, with);
                        i += skip;
                } else
                        *o++ = (char) data[i++];
        }
        memcpy(o, body, body_len);
        o += body_len;
        *ret_size = (size_t) (o - out);
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uint64_t deadline;
        size_t n, sent = 0;
        bool eof = false, shut = false, early_shutdown;
        char *buf;
        int fd;

        if (!webhook)
                LLVMFuzzerInitialize(NULL, NULL);
        if (++n_inputs % STORE_RECYCLE_EVERY == 0)
                open_store_and_webhook();

        /* FUZZ_HTTP_EARLY_SHUTDOWN=1 half-closes right after sending:
         * the reproducer of the edge-triggered stall described above. */
        early_shutdown = getenv("FUZZ_HTTP_EARLY_SHUTDOWN");
        buf = prepare(data, size, &n);
        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                abort();

        deadline = now_usec(CLOCK_MONOTONIC) + (getenv("FUZZ_DEADLINE_SEC") ? strtoull(getenv("FUZZ_DEADLINE_SEC"), NULL, 10) * USEC_PER_SEC : DEADLINE_USEC);
        while (!eof) {
                char rbuf[4096];
                ssize_t k;

                if (sent < n) {
                        k = send(fd, buf + sent, n - sent, MSG_NOSIGNAL);
                        if (k > 0)
                                sent += (size_t) k;
                        else if (k < 0 && errno != EAGAIN && errno != EINTR)
                                sent = n;       /* the server closed early: fine */
                }
                k = sd_event_run(event, 1000);
                if (k < 0)
                        abort();
                /* Half-close only once the server has taken in what was
                 * sent and gone idle: MHD registers its sockets
                 * edge-triggered and, after a read shorter than its buffer,
                 * waits for the next edge; data and FIN arriving together
                 * give it one edge, and it would sit on the connection until
                 * the connection timeout (see docs/reliability.md). */
                if (sent >= n && !shut && (k == 0 || early_shutdown)) {
                        (void) shutdown(fd, SHUT_WR);
                        shut = true;
                }
                for (;;) {
                        k = recv(fd, rbuf, sizeof(rbuf), 0);
                        if (k > 0) {
                                if (getenv("FUZZ_VERBOSE"))
                                        fprintf(stderr, "< %.*s\n", (int) strcspn(rbuf, "\r") < k ? (int) strcspn(rbuf, "\r") : (int) k, rbuf);
                                continue;
                        }
                        if (k == 0 || (errno != EAGAIN && errno != EINTR))
                                eof = true;
                        break;
                }
                if (!eof && now_usec(CLOCK_MONOTONIC) > deadline) {
                        fprintf(stderr, "the server did not close the connection within %llus\n",
                                (unsigned long long) (DEADLINE_USEC / USEC_PER_SEC));
                        abort();
                }
        }
        close(fd);
        /* Let MHD see the close and free the connection before the next input. */
        for (unsigned i = 0; i < 4 && sd_event_run(event, 0) > 0; i++)
                ;
        mem_free(buf);
        return 0;
}
