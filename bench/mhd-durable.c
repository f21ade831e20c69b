/* SPDX-License-Identifier: MIT */
/* mhd-durable: the ceiling for ingest that is durable before it answers.
 * mhd-baseline plus the one thing the benchmark requires of remedyd that
 * costs time on this machine's disk: every body is appended to a file and
 * fdatasync()ed before its 202. A writer thread commits in groups (all that
 * arrived while the last fdatasync ran, in one write()), the connections
 * wait for it parked, like remedyd's. No authentication, no parsing, no
 * index, no SQLite. Prints "port N" once listening on 127.0.0.1; runs until
 * SIGTERM/SIGINT.
 *
 *   mhd-durable FILE [park|epoll|pool|threads]
 *
 * How MHD handles the connections (issue 16 asks which suits 2 cores):
 *   park     one epoll loop of our own driving MHD (MHD_run()), requests
 *            wait parked: no answer in the final call, so MHD calls again
 *            at every run (src/http_server.c; the default; remedyd's)
 *   epoll    one internal epoll thread, suspend/resume (remedyd's before)
 *   pool     MHD's internal thread pool, 2 epoll threads, suspend/resume
 *   threads  a thread per connection; the handler blocks until its group
 *            is durable (no suspend/resume, no epoll)
 *
 * Built by scripts/bench. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define BODY_MAX (1024 * 1024)

typedef struct Req {
        struct MHD_Connection *conn;
        char *body;
        size_t len, cap;
        bool queued, done;
        struct Req *next;
} Req;

static bool blocking; /* thread per connection: wait instead of suspending */
static bool parking;  /* park: wait in MHD's ready list, woken through done_fd */
static int done_fd = -1;
static unsigned n_parked;
static bool answered; /* a parked request got its answer in this MHD_run() */
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;

static struct MHD_Response *accepted;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static Req *pending;
static int fd = -1;
static unsigned long long commits, bodies;

static void *writer(void *unused) {
        char *buf = NULL;
        size_t cap = 0;

        for (;;) {
                Req *batch;
                size_t n = 0;

                pthread_mutex_lock(&lock);
                while (!pending)
                        pthread_cond_wait(&cond, &lock);
                batch = pending;
                pending = NULL;
                pthread_mutex_unlock(&lock);

                for (Req *r = batch; r; r = r->next) {
                        if (n + r->len + 1 > cap) {
                                cap = 2 * (n + r->len + 1);
                                buf = realloc(buf, cap);
                                if (!buf)
                                        abort();
                        }
                        memcpy(buf + n, r->body, r->len);
                        n += r->len;
                        buf[n++] = '\n';
                }
                if (write(fd, buf, n) != (ssize_t) n || fdatasync(fd) < 0) {
                        perror("mhd-durable: write");
                        abort();
                }
                commits++;
                if (blocking) {
                        pthread_mutex_lock(&lock);
                        for (Req *r = batch; r; r = r->next) {
                                bodies++;
                                r->done = true;
                        }
                        pthread_cond_broadcast(&done_cond);
                        pthread_mutex_unlock(&lock);
                        continue;
                }
                if (parking) {
                        uint64_t one = 1;

                        for (Req *r = batch; r; r = r->next) {
                                bodies++;
                                __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
                        }
                        if (write(done_fd, &one, sizeof(one)) != sizeof(one))
                                abort();
                        continue;
                }
                for (Req *r = batch, *next; r; r = next) {
                        next = r->next;
                        bodies++;
                        r->done = true;
                        MHD_resume_connection(r->conn);
                }
        }
        return NULL;
}

/* Hands r to the writer. */
static void enqueue(Req *r) {
        pthread_mutex_lock(&lock);
        r->next = pending;
        pending = r;
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
        Req *r = *con_cls;

        if (!r) {
                r = calloc(1, sizeof(*r));
                if (!r)
                        return MHD_NO;
                r->conn = c;
                *con_cls = r;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (r->len + *upload_data_size > BODY_MAX)
                        return MHD_NO;
                if (r->len + *upload_data_size > r->cap) {
                        r->cap = 2 * (r->len + *upload_data_size);
                        r->body = realloc(r->body, r->cap);
                        if (!r->body)
                                return MHD_NO;
                }
                memcpy(r->body + r->len, upload_data, *upload_data_size);
                r->len += *upload_data_size;
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (parking) {
                if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
                        n_parked--;
                        answered = true;
                        return MHD_queue_response(c, 202, accepted);
                }
                if (!r->queued) {
                        r->queued = true;
                        n_parked++;
                        enqueue(r);
                }
                return MHD_YES;
        }
        if (r->done)
                return MHD_queue_response(c, 202, accepted);
        if (blocking) {
                pthread_mutex_lock(&lock);
                r->next = pending;
                pending = r;
                pthread_cond_signal(&cond);
                while (!r->done)
                        pthread_cond_wait(&done_cond, &lock);
                pthread_mutex_unlock(&lock);
                return MHD_queue_response(c, 202, accepted);
        }
        if (!r->queued) {
                r->queued = true;
                MHD_suspend_connection(c);
                enqueue(r);
        }
        return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        Req *r = *con_cls;

        if (r) {
                if (parking && r->queued && !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
                        /* Peer gone while parked: the writer still holds r.
                         * Left to it (a benchmark's leak at its end). */
                        n_parked--;
                        *con_cls = NULL;
                        return;
                }
                free(r->body);
                free(r);
                *con_cls = NULL;
        }
}

/* The park mode's loop: MHD's epoll fd, the writer's eventfd and the
 * signals in one epoll set. While requests are parked MHD says "0 ms" (its
 * ready list is not empty): wait for an event instead, and at most 1 ms. */
static void park_loop(struct MHD_Daemon *d, const sigset_t *ss) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
        struct epoll_event ev = { .events = EPOLLIN };
        int ep, sfd;

        ep = epoll_create1(EPOLL_CLOEXEC);
        sfd = signalfd(-1, ss, SFD_CLOEXEC);
        if (!info || ep < 0 || sfd < 0)
                abort();
        ev.data.fd = info->epoll_fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev);
        ev.data.fd = done_fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, done_fd, &ev);
        ev.data.fd = sfd;
        epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
        for (;;) {
                struct epoll_event evs[4];
                MHD_UNSIGNED_LONG_LONG ms;
                int timeout = -1, n;

                if (answered)
                        timeout = 0; /* MHD writes those answers at its next run */
                else if (n_parked > 0)
                        timeout = 1;
                else if (MHD_get_timeout(d, &ms) == MHD_YES)
                        timeout = ms > 1000 ? 1000 : (int) ms;
                answered = false;
                n = epoll_wait(ep, evs, 4, timeout);
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.fd == sfd)
                                return;
                        if (evs[i].data.fd == done_fd) {
                                uint64_t v;

                                if (read(done_fd, &v, sizeof(v)) < 0)
                                        abort();
                        }
                }
                MHD_run(d);
        }
}

int main(int argc, char **argv) {
        static const char body[] = "{\"event_id\":\"00000000000000000000000000000000\",\"duplicate\":false,\"actions\":[]}";
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        const union MHD_DaemonInfo *info;
        struct MHD_Daemon *d;
        const char *mode = argc >= 3 ? argv[2] : "park";
        unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, pool = 0;
        pthread_t t;
        sigset_t ss;
        int sig;

        if (argc < 2 || argc > 3) {
                fprintf(stderr, "usage: mhd-durable FILE [park|epoll|pool|threads]\n");
                return 2;
        }
        if (strcmp(mode, "pool") == 0)
                pool = 2;
        else if (strcmp(mode, "threads") == 0) {
                flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
                blocking = true;
        } else if (strcmp(mode, "park") == 0) {
                flags = MHD_USE_EPOLL;
                parking = true;
        } else if (strcmp(mode, "epoll") != 0) {
                fprintf(stderr, "mhd-durable: unknown mode %s\n", mode);
                return 2;
        }
        fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
                perror("mhd-durable: open");
                return 1;
        }
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        if (parking) {
                done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (done_fd < 0)
                        return 1;
        }
        if (pthread_create(&t, NULL, writer, NULL) != 0)
                return 1;

        accepted = MHD_create_response_from_buffer(sizeof body - 1, (void *) body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(accepted, "Content-Type", "application/json");
        d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
                             MHD_OPTION_THREAD_POOL_SIZE, pool,
                             MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                             MHD_OPTION_CONNECTION_LIMIT, 1024,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 16384,
                             MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
        if (!d) {
                fprintf(stderr, "mhd-durable: MHD_start_daemon failed\n");
                return 1;
        }
        info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        printf("port %u\n", info ? info->port : 0);
        fflush(stdout);
        if (parking)
                park_loop(d, &ss);
        else
                sigwait(&ss, &sig);
        fprintf(stderr, "mhd-durable: %llu bodies in %llu commits\n", bodies, commits);
        /* The writer may be inside MHD_resume_connection(): leave without
         * tearing MHD down under it. */
        _exit(0);
}
