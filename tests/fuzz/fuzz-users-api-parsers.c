/* 1Password API responses through the real client: users_api (with oauth
 * and http_client, curl multi on sd-event) against a tiny server in this
 * process on 127.0.0.1 that answers with the fuzzer's bytes. The client's
 * response parsers are static, so they are reached the way the daemon
 * reaches them: token, user, list and error bodies, status codes and
 * headers (Retry-After) as curl hands them over.
 *
 * Input: byte 0 picks the call (bits 0-1: get, list, suspend, reactivate),
 * whether the fuzzed answer goes to the token endpoint instead of the API
 * (bit 2; the API then gets a fixed valid user), the API version (bit 3:
 * v1 instead of v1beta1) and whether the rest is a raw HTTP response
 * (bit 4). Otherwise byte 1 picks a status and the rest is the JSON body,
 * sent with a correct Content-Length. Each input gets a fresh UsersApi
 * (so a fresh token request) with max_attempts 1: no retry delays. */
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <systemd/sd-event.h>

#include "alloc.h"
#include "config.h"
#include "fuzz.h"
#include "metrics.h"
#include "users_api.h"
#include "util.h"

#define DEADLINE_USEC (20 * USEC_PER_SEC)
#define REQUEST_MAX 65536

static const char token_ok[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 76\r\nConnection: close\r\n\r\n"
        "{\"access_token\":\"fuzz-access-token\",\"token_type\":\"Bearer\",\"expires_in\":3600}";
static const char user_ok_body[] =
        "{\"id\":\"ABCDEFGHIJKLMNOPQRSTUVWXY2\",\"email\":\"alice@example.com\",\"display_name\":\"Alice\","
        "\"state\":\"ACTIVE\",\"create_time\":\"2023-01-01T00:00:00Z\",\"path\":\"accounts/X/users/Y\"}";

static const unsigned statuses[] = { 200, 200, 200, 400, 401, 403, 404, 409, 429, 500, 503, 204, 301 };

static sd_event *event;
static Config *configs[2];
static Metrics *metrics;
static int listen_fd = -1;
static uint16_t port;

/* What the server answers to the current input. */
static const uint8_t *answer;      /* the whole response for the fuzzed endpoint */
static size_t answer_len;
static bool fuzz_token;

typedef struct Conn {
        int fd;
        sd_event_source *source;
        char buf[REQUEST_MAX + 1];
        size_t len;
        struct Conn *next;
} Conn;
static Conn *conns;

static void conn_free(Conn *c) {
        for (Conn **p = &conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        sd_event_source_disable_unref(c->source);
        close(c->fd);
        mem_free(c);
}

static void write_all(int fd, const void *data, size_t n) {
        const uint8_t *p = data;

        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

                if (k < 0 && errno == EAGAIN) {
                        struct pollfd pfd = { .fd = fd, .events = POLLOUT };

                        if (poll(&pfd, 1, 1000) <= 0)
                                return;
                        continue;
                }
                if (k <= 0)
                        return;     /* the client went away */
                p += k;
                n -= (size_t) k;
        }
}

/* Whole request in? Headers and Content-Length bytes of body. */
static bool request_complete(Conn *c) {
        const char *end, *cl;
        size_t body = 0;

        c->buf[c->len] = 0;
        end = strstr(c->buf, "\r\n\r\n");
        if (!end)
                return false;
        cl = strcasestr(c->buf, "\r\ncontent-length:");
        if (cl && cl < end)
                body = strtoul(cl + 17, NULL, 10);
        return c->len >= (size_t) (end + 4 - c->buf) + body;
}

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        ssize_t k = recv(fd, c->buf + c->len, REQUEST_MAX - c->len, 0);
        bool token;

        if (k < 0 && errno == EAGAIN)
                return 0;
        if (k <= 0) {
                conn_free(c);
                return 0;
        }
        c->len += (size_t) k;
        if (!request_complete(c) && c->len < REQUEST_MAX)
                return 0;
        /* /v1/oauth/token or /v1beta1/users/oauth2/token (list queries carry page_token=) */
        token = strstr(c->buf, "/oauth") && strstr(c->buf, "/oauth") < strstr(c->buf, "\r\n");
        if (token == fuzz_token)
                write_all(fd, answer, answer_len);
        else if (token)
                write_all(fd, token_ok, strlen(token_ok));
        else {
                char head[160];
                int n = snprintf(head, sizeof(head),
                                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                                 "Connection: close\r\n\r\n",
                                 strlen(user_ok_body));

                write_all(fd, head, (size_t) n);
                write_all(fd, user_ok_body, strlen(user_ok_body));
        }
        (void) shutdown(fd, SHUT_WR);
        conn_free(c);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                Conn *c;

                if (cfd < 0)
                        return 0;
                c = mem_calloc(1, sizeof(*c));
                if (!c)
                        abort();
                c->fd = cfd;
                if (sd_event_add_io(event, &c->source, cfd, EPOLLIN, on_conn, c) < 0)
                        abort();
                c->next = conns;
                conns = c;
        }
}

static Config *load(const char *name, const char *api_version) {
        ConfigProblems problems = {};
        Config *c = NULL;
        char path[4200], *text;

        if (asprintf(&text,
                     "onepassword:\n"
                     "  base_url: \"http://127.0.0.1:%u\"\n"
                     "  api_version: %s\n"
                     "  account_id: XLQMR47VZPBKJHSGWNCYFDE3T9\n"
                     "  client_id_file: id\n"
                     "  client_secret_file: secret\n"
                     "  timeout: 5s\n",
                     port, api_version) < 0)
                abort();
        fuzz_path(path, sizeof(path), name);
        fuzz_write_file(path, text, strlen(text));
        free(text);
        if (config_load(path, 0, &c, &problems) < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                abort();
        }
        return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sa);
        char path[4200];

        fuzz_quiet_logs();
        if (sd_event_new(&event) < 0)
                abort();
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(listen_fd, 64) < 0 ||
            getsockname(listen_fd, (struct sockaddr *) &sa, &sl) < 0)
                abort();
        port = ntohs(sa.sin_port);
        if (sd_event_add_io(event, NULL, listen_fd, EPOLLIN, on_accept, NULL) < 0)
                abort();

        fuzz_path(path, sizeof(path), "id");
        fuzz_write_file(path, "fuzz-client-id\n", 15);
        fuzz_path(path, sizeof(path), "secret");
        fuzz_write_file(path, "fuzz-client-secret\n", 19);
        configs[0] = load("v1beta1.yaml", "v1beta1");
        configs[1] = load("v1.yaml", "v1");
        metrics = metrics_new();
        if (!metrics)
                abort();
        return 0;
}

typedef struct Outcome {
        bool done;
} Outcome;

static void on_result(UsersApi *api, const UsersApiResult *res, void *userdata) {
        Outcome *o = userdata;

        o->done = true;
        if (getenv("FUZZ_VERBOSE"))
                fprintf(stderr, "result: error %d status %ld%s user %s users %zu code %s message %s\n", res->error,
                        res->http_status, res->transient ? " transient" : "", res->user ? "yes" : "no", res->n_users,
                        res->api_code ? res->api_code : "-", res->api_message ? res->api_message : "-");
        if (res->error > 0)
                abort();
        if (res->error == 0 && res->transient)
                abort();
        if (res->n_users > 0 && !res->users)
                abort();
        for (size_t i = 0; i < res->n_users; i++)
                if (res->users[i].state < 0 || res->users[i].state >= _OP_USER_STATE_MAX)
                        abort();
        if (res->api_message && strlen(res->api_message) > 4096)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const UsersApiCallOptions once = { .max_attempts = 1 };
        Outcome outcome = {};
        UsersApi *api = NULL;
        uint8_t *wrapped = NULL;
        uint64_t deadline;
        unsigned op;
        int r;

        if (!event)
                LLVMFuzzerInitialize(NULL, NULL);
        if (size < 2)
                return 0;
        op = data[0] & 3;
        fuzz_token = data[0] & 4;
        if (data[0] & 16) {
                answer = data + 1;
                answer_len = size - 1;
        } else {
                unsigned status = statuses[data[1] % (sizeof(statuses) / sizeof(statuses[0]))];
                size_t body_len = size - 2;
                char head[160];
                int n = snprintf(head, sizeof(head),
                                 "HTTP/1.1 %u X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                                 "Connection: close\r\n\r\n",
                                 status, body_len);

                wrapped = mem_malloc((size_t) n + body_len);
                if (!wrapped)
                        abort();
                memcpy(wrapped, head, (size_t) n);
                memcpy(wrapped + n, data + 2, body_len);
                answer = wrapped;
                answer_len = (size_t) n + body_len;
        }

        if (users_api_new(event, configs[(data[0] >> 3) & 1], metrics, &api) < 0)
                abort();
        switch (op) {
        case 0:
                r = users_api_get(api, "ABCDEFGHIJKLMNOPQRSTUVWXY2", &once, on_result, &outcome);
                break;
        case 1:
                r = users_api_list(api, NULL, 1000, "page-2", &once, on_result, &outcome);
                break;
        case 2:
                r = users_api_suspend(api, "ABCDEFGHIJKLMNOPQRSTUVWXY2", &once, on_result, &outcome);
                break;
        default:
                r = users_api_reactivate(api, "ABCDEFGHIJKLMNOPQRSTUVWXY2", &once, on_result, &outcome);
                break;
        }
        if (r < 0)
                abort();

        deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_USEC;
        while (!outcome.done) {
                if (sd_event_run(event, 100 * USEC_PER_MSEC) < 0)
                        abort();
                if (now_usec(CLOCK_MONOTONIC) > deadline) {
                        fprintf(stderr, "no answer from users_api within %llus\n",
                                (unsigned long long) (DEADLINE_USEC / USEC_PER_SEC));
                        abort();
                }
        }
        users_api_free(api);
        while (conns)
                conn_free(conns);
        /* Let curl's closed sockets leave the loop. */
        for (unsigned i = 0; i < 4 && sd_event_run(event, 0) > 0; i++)
                ;
        mem_free(wrapped);
        return 0;
}
