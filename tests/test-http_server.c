/* Unit tests for src/http_server.c: requests that wait for their answer
 * (http_server_request_suspend()), in both ways they can wait: parked in
 * MHD's ready list (libmicrohttpd 0.9) and MHD-suspended (opts.suspend).
 * A server thread runs the HttpServer on its own sd-event loop on a
 * loopback port; the test talks plain HTTP/1.1 to it with blocking
 * sockets. Paths:
 *
 *   /now      answered at once (200)
 *   /hold     waits until the test says "release" (202, body = the path's
 *             query "id")
 *   /wait     waits for a 2.5 s timer, then 200
 *
 * Any method: a POST's body is read and dropped.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "harness.h"
#include "http_server.h"
#include "log.h"
#include "util.h"

#define N_CONNS 16
#define WAIT_USEC (2500u * 1000u)

typedef struct Held {
        HttpServerRequest *req;
        sd_event_source *timer;
        struct Held *next, **prevp;
} Held;

typedef struct Server {
        sd_event *event;
        HttpServer *http;
        bool suspend;
        unsigned timeout_sec;
        int cmd_pipe[2];
        int ack_pipe[2];
        unsigned port;
        Held *held;
        atomic_uint n_held;      /* waiting right now, either way */
        atomic_uint parked_seen; /* http_server_parked() at the last wait */
        atomic_uint completed;
        atomic_ullong runs_at_request; /* http_server_runs() in the last on_request() */
        atomic_ullong runs_at_command; /* ... when the last command was read */
} Server;

static void held_free(void *p) {
        Held *h = p;

        if (!h)
                return;
        if (h->prevp) {
                *h->prevp = h->next;
                if (h->next)
                        h->next->prevp = h->prevp;
        }
        sd_event_source_disable_unref(h->timer);
        free(h);
}

static Server *server_of(HttpServerRequest *req, void *userdata) {
        return userdata;
}

static int on_wait_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Held *h = userdata;

        return http_server_respond(h->req, 200, "text/plain", "waited");
}

static int on_request(HttpServerRequest *req, void *userdata) {
        Server *srv = server_of(req, userdata);
        const char *path = http_server_request_path(req);
        Held *h;
        int r;

        if (strcmp(path, "/now") == 0)
                return http_server_respond(req, 200, "text/plain", "now");
        if (strcmp(path, "/hold") != 0 && strcmp(path, "/wait") != 0)
                return http_server_respond(req, 404, "text/plain", "no");

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->req = req;
        r = http_server_request_suspend(req);
        if (r < 0) {
                free(h);
                return r;
        }
        http_server_request_set_context(req, h, held_free);
        if (strcmp(path, "/wait") == 0) {
                r = sd_event_add_time_relative(srv->event, &h->timer, CLOCK_MONOTONIC, WAIT_USEC, 1,
                                               on_wait_timer, h);
                if (r < 0)
                        return r;
        } else {
                h->next = srv->held;
                if (h->next)
                        h->next->prevp = &h->next;
                h->prevp = &srv->held;
                srv->held = h;
                atomic_fetch_add(&srv->n_held, 1);
        }
        atomic_store(&srv->parked_seen, http_server_parked(srv->http));
        atomic_store(&srv->runs_at_request, http_server_runs(srv->http));
        return 0;
}

static void on_complete(HttpServerRequest *req, void *userdata) {
        Server *srv = userdata;
        Held *h = http_server_request_get_context(req);

        if (h && h->prevp)
                atomic_fetch_sub(&srv->n_held, 1);
        atomic_fetch_add(&srv->completed, 1);
}

static void release_all(Server *srv) {
        while (srv->held) {
                Held *h = srv->held;
                const char *id = http_server_request_query(h->req, "id");

                /* Off the list first: the answer may end the request. */
                srv->held = h->next;
                if (h->next)
                        h->next->prevp = &srv->held;
                h->next = NULL;
                h->prevp = NULL;
                atomic_fetch_sub(&srv->n_held, 1);
                (void) http_server_respond(h->req, 202, "text/plain", id ? id : "-");
        }
}

static int on_command(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Server *srv = userdata;
        char c;

        if (read(fd, &c, 1) != 1 || c == 'q')
                return sd_event_exit(srv->event, 0);
        atomic_store(&srv->runs_at_command, http_server_runs(srv->http));
        if (c == 'r')
                release_all(srv);
        (void) write(srv->ack_pipe[1], "k", 1);
        return 0;
}

static void *server_thread(void *p) {
        Server *srv = p;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(sa);
        sd_event_source *cmd = NULL;
        HttpServerOptions o;
        int fd;

        ASSERT_OK(sd_event_new(&srv->event));
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(fd, 64));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        srv->port = ntohs(sa.sin_port);
        o = (HttpServerOptions) {
                .listen_fd = fd,
                .max_body_bytes = 1024,
                .connection_timeout_sec = srv->timeout_sec,
                .on_request = on_request,
                .on_complete = on_complete,
                .userdata = srv,
                .name = "test",
                .suspend = srv->suspend,
        };
        ASSERT_OK(http_server_new(srv->event, &o, &srv->http));
        ASSERT_OK(sd_event_add_io(srv->event, &cmd, srv->cmd_pipe[0], EPOLLIN, on_command, srv));
        ASSERT_EQ(write(srv->ack_pipe[1], "k", 1), 1);
        ASSERT_OK(sd_event_loop(srv->event));
        srv->http = http_server_free(srv->http);
        sd_event_source_disable_unref(cmd);
        srv->event = sd_event_unref(srv->event);
        return NULL;
}

static pthread_t server_thread_id;

static void server_start(Server *srv, bool suspend, unsigned timeout_sec) {
        char c;

        *srv = (Server) { .suspend = suspend, .timeout_sec = timeout_sec };
        ASSERT_OK(pipe2(srv->cmd_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(srv->ack_pipe, O_CLOEXEC));
        ASSERT_EQ(pthread_create(&server_thread_id, NULL, server_thread, srv), 0);
        ASSERT_EQ(read(srv->ack_pipe[0], &c, 1), 1);
}

static void server_command(Server *srv, char c) {
        char k;

        ASSERT_EQ(write(srv->cmd_pipe[1], &c, 1), 1);
        if (c != 'q')
                ASSERT_EQ(read(srv->ack_pipe[0], &k, 1), 1);
}

static void server_stop(Server *srv) {
        server_command(srv, 'q');
        ASSERT_EQ(pthread_join(server_thread_id, NULL), 0);
        close(srv->cmd_pipe[0]);
        close(srv->cmd_pipe[1]);
        close(srv->ack_pipe[0]);
        close(srv->ack_pipe[1]);
}

/* Polls cond (an expression over srv) for up to 10 s. */
#define WAIT_FOR(cond)                                                          \
        do {                                                                    \
                uint64_t _end = now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;  \
                while (!(cond)) {                                               \
                        if (now_usec(CLOCK_MONOTONIC) > _end)                   \
                                FAIL_AT("timed out waiting for %s", #cond);     \
                        usleep(1000);                                           \
                }                                                               \
        } while (0)

static int client_connect(const Server *srv) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(srv->port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        struct timeval tv = { .tv_sec = 10 };
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
        return fd;
}

static void client_send(int fd, const char *target) {
        char buf[256];
        int n;

        n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
        ASSERT_EQ(write(fd, buf, (size_t) n), n);
}

/* A POST with a body of n bytes: headers and, if split, part of the body
 * in a first write, the rest in a second. */
static void client_post(int fd, const char *target, size_t n, size_t split) {
        char buf[1024];
        int h;

        ASSERT_TRUE(n <= 512 && split <= n);
        h = snprintf(buf, sizeof(buf), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", target, n);
        memset(buf + h, 'b', n);
        ASSERT_EQ(write(fd, buf, (size_t) h + split), (ssize_t) ((size_t) h + split));
        if (split < n)
                ASSERT_EQ(write(fd, buf + h + split, n - split), (ssize_t) (n - split));
}

/* Reads one response on a keep-alive connection: its status and body. */
static void client_read(int fd, unsigned *ret_status, char *body, size_t body_size) {
        char buf[4096];
        size_t have = 0;
        const char *end, *cl;
        size_t len;

        for (;;) {
                ssize_t k;

                buf[have] = 0;
                end = strstr(buf, "\r\n\r\n");
                if (end) {
                        cl = strcasestr(buf, "\r\nContent-Length:");
                        ASSERT_NOT_NULL(cl);
                        len = strtoul(cl + strlen("\r\nContent-Length:"), NULL, 10);
                        if (have >= (size_t) (end + 4 - buf) + len)
                                break;
                }
                ASSERT_TRUE(have < sizeof(buf) - 1);
                k = read(fd, buf + have, sizeof(buf) - 1 - have);
                if (k <= 0)
                        FAIL_AT("connection closed or timed out before the answer (%zd, %s)", k,
                                strerror(errno));
                have += (size_t) k;
        }
        ASSERT_EQ(sscanf(buf, "HTTP/1.1 %u", ret_status), 1);
        ASSERT_TRUE(len < body_size);
        memcpy(body, end + 4, len);
        body[len] = 0;
}

static void expect_answer(int fd, unsigned status, const char *body) {
        char b[256];
        unsigned s;

        client_read(fd, &s, b, sizeof(b));
        ASSERT_EQ(s, status);
        ASSERT_STREQ(b, body);
}

/* Whether this libmicrohttpd parks (http_server.c park_supported()). */
static bool mhd_parks(void) {
        return strncmp(MHD_get_version(), "0.9.", 4) == 0;
}

/* N_CONNS requests wait at once, are answered together, and their
 * connections go on: three rounds on the same keep-alive connections. The
 * waiting happens the way asked for: parked unless opts.suspend. */
static void batch(bool suspend) {
        Server srv;
        int fds[N_CONNS];

        server_start(&srv, suspend, 0);
        for (unsigned i = 0; i < N_CONNS; i++)
                fds[i] = client_connect(&srv);
        for (unsigned round = 0; round < 3; round++) {
                for (unsigned i = 0; i < N_CONNS; i++) {
                        char target[64];

                        snprintf(target, sizeof(target), "/hold?id=%u-%u", round, i);
                        client_send(fds[i], target);
                }
                WAIT_FOR(atomic_load(&srv.n_held) == N_CONNS);
                ASSERT_EQ(atomic_load(&srv.parked_seen), suspend || !mhd_parks() ? 0 : N_CONNS);
                server_command(&srv, 'r');
                for (unsigned i = 0; i < N_CONNS; i++) {
                        char want[64];

                        snprintf(want, sizeof(want), "%u-%u", round, i);
                        expect_answer(fds[i], 202, want);
                }
        }
        WAIT_FOR(atomic_load(&srv.completed) == 3 * N_CONNS);
        ASSERT_EQ(http_server_connections(srv.http), N_CONNS);
        for (unsigned i = 0; i < N_CONNS; i++)
                close(fds[i]);
        server_stop(&srv);
}

TEST(batch_parked) { batch(false); }
TEST(batch_suspended) { batch(true); }

/* While one request waits, the other connections are served as usual:
 * the waiting one does not make the loop spin or stall. */
static void others_served(bool suspend) {
        Server srv;
        int a, b;

        server_start(&srv, suspend, 0);
        a = client_connect(&srv);
        b = client_connect(&srv);
        client_send(a, "/hold?id=a");
        WAIT_FOR(atomic_load(&srv.n_held) == 1);
        for (unsigned i = 0; i < 50; i++) {
                client_send(b, "/now");
                expect_answer(b, 200, "now");
        }
        server_command(&srv, 'r');
        expect_answer(a, 202, "a");
        close(a);
        close(b);
        server_stop(&srv);
}

TEST(others_served_parked) { others_served(false); }
TEST(others_served_suspended) { others_served(true); }

/* A waiting request has no idle timeout: with a 1 s connection timeout, a
 * 2.5 s wait still gets its answer; afterwards the idle timeout applies
 * again and the server closes the quiet connection. */
static void no_timeout_while_waiting(bool suspend) {
        Server srv;
        uint64_t t0;
        char c;
        int fd;

        server_start(&srv, suspend, 1);
        fd = client_connect(&srv);
        t0 = now_usec(CLOCK_MONOTONIC);
        client_send(fd, "/wait");
        expect_answer(fd, 200, "waited");
        ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - t0 >= WAIT_USEC);
        /* Idle now: closed by the server after about 1 s (read gives 0). */
        ASSERT_EQ(read(fd, &c, 1), 0);
        close(fd);
        server_stop(&srv);
}

TEST(no_timeout_while_waiting_parked) { no_timeout_while_waiting(false); }
TEST(no_timeout_while_waiting_suspended) { no_timeout_while_waiting(true); }

/* The client goes away while its request waits; answering it later is
 * harmless and the server goes on. */
static void peer_gone(bool suspend) {
        Server srv;
        int fd;

        server_start(&srv, suspend, 0);
        fd = client_connect(&srv);
        client_send(fd, "/hold?id=gone");
        WAIT_FOR(atomic_load(&srv.n_held) == 1);
        close(fd);
        server_command(&srv, 'r');
        WAIT_FOR(atomic_load(&srv.completed) == 1);
        fd = client_connect(&srv);
        client_send(fd, "/now");
        expect_answer(fd, 200, "now");
        close(fd);
        server_stop(&srv);
}

TEST(peer_gone_parked) { peer_gone(false); }
TEST(peer_gone_suspended) { peer_gone(true); }

/* Stopping the server with a request waiting answers it 503 or closes
 * it, and frees it either way (ASan/valgrind see the rest). */
static void stop_while_waiting(bool suspend) {
        Server srv;
        char buf[512];
        ssize_t k;
        int fd;

        server_start(&srv, suspend, 0);
        fd = client_connect(&srv);
        client_send(fd, "/hold?id=stop");
        WAIT_FOR(atomic_load(&srv.n_held) == 1);
        server_stop(&srv);
        k = read(fd, buf, sizeof(buf) - 1);
        ASSERT_TRUE(k >= 0);
        buf[k] = 0;
        if (k > 0)
                ASSERT_TRUE(strncmp(buf, "HTTP/1.1 503", 12) == 0);
        ASSERT_EQ(atomic_load(&srv.completed), 1);
        close(fd);
}

TEST(stop_while_waiting_parked) { stop_while_waiting(false); }
TEST(stop_while_waiting_suspended) { stop_while_waiting(true); }

/* A body that came whole costs one MHD_run(): the request's final call
 * is in the run that read it, and nothing is left on the socket, so the
 * server does not run MHD again at once for it (it used to, after every
 * run in which a handler took body data: 0.11 runs and 0.25 epoll_wait()
 * per delivery under wrk). MHD-suspended, so that no park poll runs MHD
 * either. A body in two writes still gets its answer. */
TEST(whole_body_one_run) {
        Server srv;
        int a;

        server_start(&srv, /* suspend= */ true, 0);
        a = client_connect(&srv);
        for (unsigned i = 0; i < 5; i++) {
                char target[32], want[32];

                snprintf(target, sizeof(target), "/hold?id=w%u", i);
                client_post(a, target, 300, 300);
                WAIT_FOR(atomic_load(&srv.n_held) == 1);
                server_command(&srv, 'r');
                ASSERT_EQ(atomic_load(&srv.runs_at_command), atomic_load(&srv.runs_at_request));
                snprintf(want, sizeof(want), "w%u", i);
                expect_answer(a, 202, want);
        }
        client_post(a, "/hold?id=split", 300, 100);
        WAIT_FOR(atomic_load(&srv.n_held) == 1);
        server_command(&srv, 'r');
        expect_answer(a, 202, "split");
        close(a);
        server_stop(&srv);
}

int main(void) {
        log_set_max_level(getenv("REMEDYD_TEST_DEBUG") ? LOG_DEBUG : LOG_WARNING);

        RUN(batch_parked);
        RUN(batch_suspended);
        RUN(others_served_parked);
        RUN(others_served_suspended);
        RUN(no_timeout_while_waiting_parked);
        RUN(no_timeout_while_waiting_suspended);
        RUN(peer_gone_parked);
        RUN(peer_gone_suspended);
        RUN(stop_while_waiting_parked);
        RUN(stop_while_waiting_suspended);
        RUN(whole_body_one_run);
        HARNESS_DONE();
}
