/* SPDX-License-Identifier: MIT */
/* loadgen: a small HTTP/1.1 keep-alive load generator for the benchmarks.
 *
 * Every request body is unique and signed with HMAC-SHA256 before the timed
 * phase starts (no crypto on the hot path). One thread, epoll, N keep-alive
 * connections each with one request in flight (no pipelining).
 *
 * Closed loop (default): every connection sends its next request as soon as
 * the previous answer arrived, for --duration seconds.
 * Open loop (--rate R): requests leave at R/s spread over the connections;
 * with --log FILE every request is logged as "index send_unix_ns status
 * latency_ns user" (time-to-contain).
 *
 * Output, one "key value" per line: requests, ok (2xx), dup (200), other,
 * errors, reconnects, wrapped, seconds, rate, lat_p50_us, lat_p99_us.
 *
 * Bodies: {"sid":"bench-SEED-I","search_name":"bench","result":{"signature":
 * SIG,"severity":SEV,"user":"userU@example.com",...}} with U = (I * 7919) %
 * users + 1: distinct users spread over the whole directory while I < users
 * (7919 is prime; users must not be a multiple of it; user 0, the account
 * owner, is never named), SIG/SEV from --match (matching alert) or a benign
 * pair that rules do not match. With --bodies FILE, the pre-signed
 * "SIGNATURE<TAB>BODY" lines bench.py writes for wrk instead.
 *
 * Not part of the daemon: plain libc + libcrypto, built by scripts/bench. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAT_BUCKETS 200000 /* 1 us buckets up to 200 ms, then one overflow */

typedef struct Conn {
        int fd;
        size_t req;          /* index of the request in flight */
        size_t wpos;
        bool busy;
        uint64_t sent_ns;
        char rbuf[16384];
        size_t rlen;
} Conn;

static const char *arg_host = "127.0.0.1";
static int arg_port = 0;
static const char *arg_path = "/hooks/bench";
static unsigned arg_conns = 64;
static double arg_duration = 20;
static double arg_rate = 0;
static size_t arg_count = 1000000;
static const char *arg_secret_file = NULL;
static const char *arg_header = "X-Remedyd-Signature";
static const char *arg_prefix = "sha256=";
static const char *arg_log = NULL;
static unsigned arg_users = 10000;
static bool arg_match = false;
static unsigned long arg_seed = 0;
static const char *arg_bodies = NULL;

static char **reqs;
static size_t *req_len;
static uint64_t lat_hist[LAT_BUCKETS + 1];
static uint64_t n_req, n_ok, n_dup, n_other, n_err, n_reconnect, n_wrapped;
static size_t next_req;
static FILE *logf;

static uint64_t now_ns(clockid_t c) {
        struct timespec ts;
        clock_gettime(c, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void die(const char *what) {
        perror(what);
        exit(2);
}

static unsigned user_of(size_t i) {
        return (unsigned) ((i * 7919u) % arg_users) + 1;
}

static void add_request(size_t i, const char *sig, const char *body, size_t bl) {
        char head[1024];
        int hl = snprintf(head, sizeof head,
                "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                "%s: %s%s\r\nContent-Length: %zu\r\n\r\n",
                arg_path, arg_host, arg_port, arg_header, arg_prefix, sig, bl);
        reqs[i] = malloc((size_t) hl + bl);
        if (!reqs[i])
                die("malloc");
        memcpy(reqs[i], head, (size_t) hl);
        memcpy(reqs[i] + hl, body, bl);
        req_len[i] = (size_t) hl + bl;
}

/* --bodies FILE: the pre-signed "SIGNATURE<TAB>BODY" lines that bench.py
 * writes for wrk (bench/wrk-ingest.lua), so that both clients send the
 * same deliveries; at most --count of them. */
static void read_requests(void) {
        FILE *f = fopen(arg_bodies, "re");
        char *line = NULL;
        size_t cap = 0, n = 0;
        ssize_t len;

        if (!f)
                die(arg_bodies);
        reqs = calloc(arg_count, sizeof *reqs);
        req_len = calloc(arg_count, sizeof *req_len);
        if (!reqs || !req_len)
                die("calloc");
        while (n < arg_count && (len = getline(&line, &cap, f)) > 0) {
                char *tab = memchr(line, '\t', (size_t) len);
                if (!tab)
                        continue;
                *tab = 0;
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        line[--len] = 0;
                add_request(n++, line, tab + 1, (size_t) (line + len - (tab + 1)));
        }
        free(line);
        fclose(f);
        if (n == 0) {
                fprintf(stderr, "loadgen: no bodies in %s\n", arg_bodies);
                exit(2);
        }
        arg_count = n;
}

static void build_requests(const char *secret, size_t secret_len) {
        static const char hexd[] = "0123456789abcdef";
        char body[1024];
        unsigned char mac[32];
        unsigned mac_len;
        char sig[65];

        reqs = calloc(arg_count, sizeof *reqs);
        req_len = calloc(arg_count, sizeof *req_len);
        if (!reqs || !req_len)
                die("calloc");
        for (size_t i = 0; i < arg_count; i++) {
                unsigned u = user_of(i);
                int bl = snprintf(body, sizeof body,
                        "{\"sid\":\"bench-%lu-%zu\",\"search_name\":\"bench\",\"_time\":\"2024-05-01T12:00:%02zu.000+00:00\","
                        "\"result\":{\"signature\":\"%s\",\"severity\":\"%s\",\"user\":\"user%u@example.com\","
                        "\"src_ip\":\"10.%zu.%zu.%zu\",\"app\":\"okta\",\"count\":%zu}}",
                        arg_seed, i, i % 60,
                        arg_match ? "Impossible travel" : "Failed login burst",
                        arg_match ? "high" : "low", u,
                        (i >> 16) & 255, (i >> 8) & 255, i & 255, i % 97);
                HMAC(EVP_sha256(), secret, (int) secret_len, (const unsigned char *) body, (size_t) bl, mac, &mac_len);
                for (unsigned k = 0; k < 32; k++) {
                        sig[2 * k] = hexd[mac[k] >> 4];
                        sig[2 * k + 1] = hexd[mac[k] & 15];
                }
                sig[64] = 0;
                add_request(i, sig, body, (size_t) bl);
        }
}

static int conn_open(Conn *c, int ep) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) arg_port) };
        int one = 1;

        if (inet_pton(AF_INET, arg_host, &sa.sin_addr) != 1)
                return -EINVAL;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                return -errno;
        c->busy = false;
        c->rlen = 0;
        return 0;
}

static void conn_reopen(Conn *c, int ep) {
        close(c->fd);
        n_reconnect++;
        if (conn_open(c, ep) < 0)
                die("reconnect");
}

static void conn_send(Conn *c) {
        size_t i = next_req++;
        if (i >= arg_count) {
                i %= arg_count;
                n_wrapped++;
        }
        c->req = i;
        c->busy = true;
        c->sent_ns = now_ns(CLOCK_MONOTONIC);
        c->wpos = 0;
        while (c->wpos < req_len[i]) {
                ssize_t n = write(c->fd, reqs[i] + c->wpos, req_len[i] - c->wpos);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die("write"); /* 64 small requests never fill a socket buffer */
                }
                c->wpos += (size_t) n;
        }
        if (logf) {
                /* realtime stamp for matching with the fake API's log */
                fprintf(logf, "S %zu %llu %u\n", i, (unsigned long long) now_ns(CLOCK_REALTIME), user_of(i));
        }
}

/* Returns the length of one complete response at the start of buf, 0 if
 * incomplete, -1 if malformed; *status set. */
static ssize_t parse_response(const char *buf, size_t len, int *status) {
        const char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (!end)
                return 0;
        if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
                return -1;
        *status = atoi(buf + 9);
        size_t hdr = (size_t) (end - buf) + 4;
        long cl = -1;
        for (const char *p = buf; p < end; ) {
                const char *eol = memmem(p, (size_t) (end - p) + 2, "\r\n", 2);
                if (!eol)
                        break;
                if ((size_t) (eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
                        cl = strtol(p + 15, NULL, 10);
                p = eol + 2;
        }
        if (cl < 0)
                return -1; /* the servers measured all send Content-Length */
        if (len < hdr + (size_t) cl)
                return 0;
        return (ssize_t) (hdr + (size_t) cl);
}

static void record(Conn *c, int status) {
        uint64_t lat = now_ns(CLOCK_MONOTONIC) - c->sent_ns;
        uint64_t us = lat / 1000;
        lat_hist[us < LAT_BUCKETS ? us : LAT_BUCKETS]++;
        n_req++;
        if (status == 200)
                n_dup++;
        if (status >= 200 && status < 300)
                n_ok++;
        else
                n_other++;
        if (logf)
                fprintf(logf, "R %zu %d %llu\n", c->req, status, (unsigned long long) lat);
        c->busy = false;
}

static uint64_t percentile(double q) {
        uint64_t target = (uint64_t) ((double) n_req * q), acc = 0;
        for (size_t i = 0; i <= LAT_BUCKETS; i++) {
                acc += lat_hist[i];
                if (acc > target)
                        return i;
        }
        return LAT_BUCKETS;
}

static void usage(void) {
        fprintf(stderr, "usage: loadgen --port P --secret-file F [--host H] [--path P] [--conns N] [--duration S]\n"
                        "               [--rate R] [--count N] [--users N] [--match] [--seed N] [--log FILE]\n"
                        "               [--header NAME] [--prefix TEXT] [--bodies FILE]\n");
        exit(2);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "host", 1, NULL, 'H' }, { "port", 1, NULL, 'p' }, { "path", 1, NULL, 'P' },
                { "conns", 1, NULL, 'c' }, { "duration", 1, NULL, 'd' }, { "rate", 1, NULL, 'r' },
                { "count", 1, NULL, 'n' }, { "secret-file", 1, NULL, 's' }, { "header", 1, NULL, 'h' },
                { "prefix", 1, NULL, 'x' }, { "log", 1, NULL, 'l' }, { "users", 1, NULL, 'u' },
                { "match", 0, NULL, 'm' }, { "seed", 1, NULL, 'S' },
                { "bodies", 1, NULL, 'b' }, {}
        };
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (o) {
                case 'H': arg_host = optarg; break;
                case 'p': arg_port = atoi(optarg); break;
                case 'P': arg_path = optarg; break;
                case 'c': arg_conns = (unsigned) atoi(optarg); break;
                case 'd': arg_duration = atof(optarg); break;
                case 'r': arg_rate = atof(optarg); break;
                case 'n': arg_count = (size_t) atoll(optarg); break;
                case 's': arg_secret_file = optarg; break;
                case 'h': arg_header = optarg; break;
                case 'x': arg_prefix = optarg; break;
                case 'l': arg_log = optarg; break;
                case 'u': arg_users = (unsigned) atoi(optarg); break;
                case 'm': arg_match = true; break;
                case 'S': arg_seed = strtoul(optarg, NULL, 10); break;
                case 'b': arg_bodies = optarg; break;
                default: usage();
                }
        if (arg_port <= 0 || !arg_secret_file || arg_conns == 0 || arg_count == 0 || arg_users == 0)
                usage();
        if (arg_rate > 0 && (size_t) (arg_rate * arg_duration) + 1 < arg_count)
                arg_count = (size_t) (arg_rate * arg_duration) + 1;

        char secret[4096];
        FILE *f = fopen(arg_secret_file, "re");
        if (!f)
                die(arg_secret_file);
        size_t sl = fread(secret, 1, sizeof secret, f);
        fclose(f);
        while (sl > 0 && (secret[sl - 1] == '\n' || secret[sl - 1] == '\r'))
                sl--;
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        if (arg_bodies)
                read_requests();
        else
                build_requests(secret, sl);
        fprintf(stderr, "loadgen: %zu signed requests built in %.2f s\n", arg_count,
                (double) (now_ns(CLOCK_MONOTONIC) - t0) / 1e9);
        if (arg_log) {
                logf = fopen(arg_log, "we");
                if (!logf)
                        die(arg_log);
        }

        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                die("epoll_create1");
        Conn *conns = calloc(arg_conns, sizeof *conns);
        if (!conns)
                die("calloc");
        for (unsigned i = 0; i < arg_conns; i++)
                if (conn_open(&conns[i], ep) < 0)
                        die("connect");

        uint64_t start = now_ns(CLOCK_MONOTONIC);
        uint64_t end = start + (uint64_t) (arg_duration * 1e9);
        uint64_t interval = arg_rate > 0 ? (uint64_t) (1e9 / arg_rate) : 0;
        uint64_t next_due = start;
        size_t n_sent_open = 0, limit_open = arg_rate > 0 ? (size_t) (arg_rate * arg_duration) : SIZE_MAX;
        unsigned rr = 0;

        if (!interval)
                for (unsigned i = 0; i < arg_conns; i++)
                        conn_send(&conns[i]);

        struct epoll_event evs[256];
        for (;;) {
                uint64_t now = now_ns(CLOCK_MONOTONIC);
                bool sending = now < end;
                if (interval) {
                        /* open loop: send what is due on idle connections */
                        while (sending && n_sent_open < limit_open && next_due <= now) {
                                unsigned tries = 0;
                                while (conns[rr].busy && tries < arg_conns) {
                                        rr = (rr + 1) % arg_conns;
                                        tries++;
                                }
                                if (conns[rr].busy)
                                        break; /* all busy: the request leaves late */
                                conn_send(&conns[rr]);
                                rr = (rr + 1) % arg_conns;
                                n_sent_open++;
                                next_due += interval;
                        }
                        if (n_sent_open >= limit_open)
                                sending = false;
                }
                bool any_busy = false;
                for (unsigned i = 0; i < arg_conns && !any_busy; i++)
                        any_busy = conns[i].busy;
                if (!sending && !any_busy)
                        break;
                int timeout = 100;
                if (interval && sending) {
                        int64_t d = (int64_t) (next_due - now_ns(CLOCK_MONOTONIC)) / 1000000;
                        timeout = d < 0 ? 0 : (int) d;
                }
                if (!sending && now > end + 30000000000ull)
                        break; /* 30 s drain bound */
                int n = epoll_wait(ep, evs, 256, timeout);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die("epoll_wait");
                }
                for (int k = 0; k < n; k++) {
                        Conn *c = evs[k].data.ptr;
                        ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
                        if (r <= 0) {
                                if (r < 0 && errno == EINTR)
                                        continue;
                                if (c->busy) {
                                        n_err++;
                                        n_req++;
                                }
                                conn_reopen(c, ep);
                                if (!interval && now_ns(CLOCK_MONOTONIC) < end)
                                        conn_send(c);
                                continue;
                        }
                        c->rlen += (size_t) r;
                        int status = 0;
                        ssize_t used = parse_response(c->rbuf, c->rlen, &status);
                        if (used == 0)
                                continue;
                        if (used < 0) {
                                n_err++;
                                n_req++;
                                conn_reopen(c, ep);
                        } else {
                                record(c, status);
                                memmove(c->rbuf, c->rbuf + used, c->rlen - (size_t) used);
                                c->rlen -= (size_t) used;
                        }
                        if (!interval && now_ns(CLOCK_MONOTONIC) < end)
                                conn_send(c);
                }
        }
        double secs = (double) (now_ns(CLOCK_MONOTONIC) - start) / 1e9;
        if (!interval)
                secs = arg_duration < secs ? secs : arg_duration;
        printf("requests %llu\nok %llu\ndup %llu\nother %llu\nerrors %llu\nreconnects %llu\nwrapped %llu\n"
               "seconds %.3f\nrate %.0f\nlat_p50_us %llu\nlat_p99_us %llu\n",
               (unsigned long long) n_req, (unsigned long long) n_ok, (unsigned long long) n_dup,
               (unsigned long long) n_other, (unsigned long long) n_err, (unsigned long long) n_reconnect,
               (unsigned long long) n_wrapped, secs, (double) n_ok / secs,
               (unsigned long long) percentile(0.5), (unsigned long long) percentile(0.99));
        if (logf)
                fclose(logf);
        return 0;
}
