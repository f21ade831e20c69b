/* libmicrohttpd on the sd-event loop (include/http_server.h): requests,
 * bodies with a limit, suspend/resume, JSON answers, TLS. Calls MHD,
 * gnutls, json-c, sd-event and the foundation (alloc, log, strbuf, util);
 * knows no webhook, status or control logic. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "http_server.h"
#include "log.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "util.h"

#define TLS_FILE_MAX (1024u * 1024u)
/* While requests are parked, how often MHD runs without an event (see
 * on_prepare()). */
#define PARK_POLL_USEC 1000u
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

static const char oom_body[] =
        "{\"error\":\"out_of_memory\",\"message\":\"The server is out of memory, try again later.\"}";
static const char too_big_body[] =
        "{\"error\":\"payload_too_large\",\"message\":\"The request body is larger than the server accepts.\"}";

typedef struct HeaderPair {
        char *name;
        char *value;
} HeaderPair;

struct HttpServerRequest {
        HttpServer *server;
        struct MHD_Connection *connection;
        const char *method; /* owned by MHD, valid for the request */
        const char *path;

        StrBuf body;
        size_t body_limit;
        bool too_big;
        bool out_of_memory; /* the body could not be stored: answer 503 at its end */
        size_t discarded;   /* body bytes dropped after too_big or out_of_memory */
        bool suspended;     /* waiting for its answer (http_server_request_suspend()) */
        bool parked;        /* ... in MHD's ready list, not MHD-suspended: see park_supported() */
        bool queued;        /* handed to MHD */
        bool receiving;     /* took body data; MHD's final call not made yet */

        struct MHD_Response *response; /* built, waiting to be queued */
        bool response_shared;          /* one of the server's static answers */
        unsigned status;
        HeaderPair *headers;
        size_t n_headers;

        void *context;
        void (*free_context)(void *);

        uint64_t started_mono;
        uint64_t started_realtime;

        HttpServerRequest *susp_prev, *susp_next;
};

/* One TCP connection, oldest first in HttpServer.conns (the MHD socket
 * context). "busy" while a request on it has started (headers complete). */
typedef struct HttpConn {
        struct MHD_Connection *connection;
        struct HttpConn *prev, *next;
        bool busy;
        bool shortened; /* idle timeout cut to LIMIT_HTTP_IDLE_TIMEOUT_PRESSURE_SEC */
} HttpConn;

struct HttpServer {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        sd_event_source *defer_source; /* "run MHD now", without a timerfd */
        sd_event_source *park_source;  /* MHD's run while requests are parked */
        bool kick;

        size_t max_body_bytes;
        HttpServerHandler on_headers;
        HttpServerHandler on_request;
        HttpServerCompleteHandler on_complete;
        void *userdata;
        char *name;

        char *tls_cert;
        char *tls_key;
        size_t tls_key_size;
        char *tls_trust;
        bool tls;

        struct MHD_Response *oom_response;
        struct MHD_Response *too_big_response;

        HttpServerRequest *suspended; /* list of suspended requests */
        bool park;                    /* wait in MHD's ready list (park_supported()) */
        unsigned n_parked;

        /* Connection pressure (nginx-style reuse of idle connections): past
         * 3/4 of the connection limit, connections that carry no request
         * get a short idle timeout, so that idle and slow clients cannot
         * hold every slot; back to normal under 1/4. */
        HttpConn *conns, *conns_tail;
        unsigned n_conns;
        unsigned conn_limit;
        unsigned conn_timeout_sec;
        bool pressure;

        /* A handler took upload data in this MHD_run(): run again at once
         * if a body is still coming in (n_receiving). MHD reads at most its
         * buffer per run and, its epoll being edge-triggered, would
         * otherwise come back for the rest of the socket's data only at its
         * next timeout (~250 ms per 32 KiB). A body that came whole had its
         * final call in the same run: running again would find nothing. */
        bool uploading;
        unsigned n_receiving;
        uint64_t n_runs; /* MHD_run() calls, for tests (http_server_runs()) */
};

static void suspended_add(HttpServer *s, HttpServerRequest *req) {
        req->susp_prev = NULL;
        req->susp_next = s->suspended;
        if (s->suspended)
                s->suspended->susp_prev = req;
        s->suspended = req;
}

static void suspended_remove(HttpServer *s, HttpServerRequest *req) {
        if (req->susp_prev)
                req->susp_prev->susp_next = req->susp_next;
        else if (s->suspended == req)
                s->suspended = req->susp_next;
        if (req->susp_next)
                req->susp_next->susp_prev = req->susp_prev;
        req->susp_prev = req->susp_next = NULL;
}

/* Ends req's wait for its answer; MHD calls access_handler() for it again
 * at its next MHD_run(). resume: the connection goes on (not when it is
 * being closed). */
static void request_unwait(HttpServerRequest *req, bool resume) {
        HttpServer *s = req->server;

        suspended_remove(s, req);
        req->suspended = false;
        if (req->parked) {
                req->parked = false;
                s->n_parked--;
                if (resume)
                        /* Its timeout again, counted from now (as after a resume). */
                        (void) MHD_set_connection_option(req->connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                                         s->conn_timeout_sec);
        } else if (resume)
                MHD_resume_connection(req->connection);
}

/* How a request waits for its answer. MHD_suspend_connection() takes the
 * connection out of MHD's epoll set and MHD_resume_connection() puts it
 * back: an epoll_ctl() each, and a recv() that gets EAGAIN after the
 * resume, because MHD then marks the socket readable (3 of remedyd's 7.7
 * syscalls per delivery under wrk; the two epoll_ctl() alone 11.6 % of its
 * CPU). libmicrohttpd 0.9 also lets a request wait without that: an access
 * handler that queues no answer in its final call is called again at every
 * MHD_run() ("try again next time", state FULL_REQ_RECEIVED in
 * connection.c), with the connection left in the epoll set and in MHD's
 * ready list. Such a request is "parked": access_handler() answers "not
 * yet" until respond_set() gives it its answer. Later libmicrohttpd
 * versions rewrote that state machine: they get suspend and resume. */
static bool park_supported(void) {
        const char *v = MHD_get_version();

        return v && strncmp(v, "0.9.", 4) == 0;
}

static void server_kick(HttpServer *s) {
        s->kick = true;
        if (s->defer_source)
                (void) sd_event_source_set_enabled(s->defer_source, SD_EVENT_ONESHOT);
}

static void request_receiving(HttpServerRequest *req, bool on) {
        if (req->receiving == on)
                return;
        req->receiving = on;
        if (on)
                req->server->n_receiving++;
        else
                req->server->n_receiving--;
}

static void request_free(HttpServerRequest *req) {
        if (!req)
                return;
        request_receiving(req, false);
        if (req->free_context)
                req->free_context(req->context);
        if (req->response && !req->response_shared)
                MHD_destroy_response(req->response);
        for (size_t i = 0; i < req->n_headers; i++) {
                mem_free(req->headers[i].name);
                mem_free(req->headers[i].value);
        }
        mem_free(req->headers);
        strbuf_free(&req->body);
        mem_free(req);
}

/* --- MHD callbacks ------------------------------------------------------ */

__attribute__((format(printf, 2, 0)))
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        HttpServer *s = cls;
        char buf[512];
        size_t n;

        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = 0;
        /* MHD mostly reports misbehaving peers: not worth more than debug. */
        log_full(LOG_DEBUG, 0, NULL, "%s: microhttpd: %s", s->name, buf);
}

static int queue_ready_response(HttpServerRequest *req) {
        struct MHD_Response *resp = TAKE_PTR(req->response);
        enum MHD_Result m;

        m = MHD_queue_response(req->connection, req->status, resp);
        if (!req->response_shared)
                MHD_destroy_response(resp);
        if (m != MHD_YES)
                return -EIO;
        req->queued = true;
        if (req->server->n_parked > 0)
                /* MHD writes it at its next run; while requests are parked
                 * on_prepare() cannot tell that from MHD's timeout. */
                req->server->kick = true;
        return 0;
}

static enum MHD_Result queue_static(HttpServerRequest *req, unsigned status, struct MHD_Response *resp) {
        if (req->response && !req->response_shared)
                MHD_destroy_response(req->response);
        req->response = NULL;
        req->status = status;
        if (MHD_queue_response(req->connection, status, resp) != MHD_YES)
                return MHD_NO;
        req->queued = true;
        return MHD_YES;
}

/* After a handler ran: queue what it answered, or answer for it. */
static enum MHD_Result finish_handler(HttpServerRequest *req, int r, bool may_wait) {
        if (req->response)
                return queue_ready_response(req) < 0 ? MHD_NO : MHD_YES;
        if (req->queued)
                return MHD_YES;
        if (r == -ENOMEM)
                return queue_static(req, MHD_HTTP_SERVICE_UNAVAILABLE, req->server->oom_response);
        if (r < 0) {
                log_error_errno(r, "%s: request handler failed: %m", req->server->name);
                (void) http_server_respond_json_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                                                      "The request could not be processed.");
                if (!req->response)
                        return MHD_NO;
                return queue_ready_response(req) < 0 ? MHD_NO : MHD_YES;
        }
        if (may_wait)
                return MHD_YES;
        if (req->suspended)
                return MHD_YES;
        log_error("%s: request handler gave no answer", req->server->name);
        (void) http_server_respond_json_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
                                              "The request could not be processed.");
        if (!req->response)
                return MHD_NO;
        return queue_ready_response(req) < 0 ? MHD_NO : MHD_YES;
}

static void conn_shorten(HttpConn *c) {
        if (c->busy || c->shortened)
                return;
        c->shortened = true;
        (void) MHD_set_connection_option(c->connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                         (unsigned) LIMIT_HTTP_IDLE_TIMEOUT_PRESSURE_SEC);
}

static void conn_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
        HttpServer *s = cls;
        HttpConn *c = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                c = mem_calloc(1, sizeof(*c));
                if (!c) {
                        /* Untracked: at least do not let it sit idle for long. */
                        (void) MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                                         (unsigned) LIMIT_HTTP_IDLE_TIMEOUT_PRESSURE_SEC);
                        return;
                }
                c->connection = connection;
                c->prev = s->conns_tail;
                if (s->conns_tail)
                        s->conns_tail->next = c;
                else
                        s->conns = c;
                s->conns_tail = c;
                s->n_conns++;
                *socket_context = c;

                if (!s->pressure && s->n_conns >= s->conn_limit / 4 * 3) {
                        s->pressure = true;
                        log_warning("%s: %u connections open, limit %u: idle ones now time out after %u s",
                                    s->name, s->n_conns, s->conn_limit,
                                    (unsigned) LIMIT_HTTP_IDLE_TIMEOUT_PRESSURE_SEC);
                        for (HttpConn *i = s->conns; i; i = i->next)
                                conn_shorten(i);
                } else if (s->pressure)
                        conn_shorten(c);
                return;
        }

        /* At the connection limit MHD takes the listening socket out of its
         * epoll set, and puts it back only at the start of a later
         * MHD_run(). With no connection left there may be no later run (no
         * fd ready, no timeout): kick one, or the listener stays deaf for
         * good after the limit was hit once. */
        server_kick(s);
        if (!c)
                return;
        *socket_context = NULL;
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                s->conns_tail = c->prev;
        s->n_conns--;
        mem_free(c);
        if (s->pressure && s->n_conns < s->conn_limit / 4) {
                s->pressure = false;
                log_info("%s: connection pressure over (%u open)", s->name, s->n_conns);
        }
}

static HttpConn *conn_of(struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *info;

        info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return info ? info->socket_context : NULL;
}

static void conn_set_busy(HttpServer *s, struct MHD_Connection *connection, bool busy) {
        HttpConn *c = conn_of(connection);

        if (!c)
                return;
        c->busy = busy;
        if (busy && c->shortened) {
                /* A request arrived: it gets the normal timeout. */
                c->shortened = false;
                (void) MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                                 s->conn_timeout_sec);
        } else if (!busy && s->pressure)
                conn_shorten(c); /* idle keep-alive under pressure */
}

static enum MHD_Result access_handler(
                void *cls,
                struct MHD_Connection *connection,
                const char *url,
                const char *method,
                const char *version,
                const char *upload_data,
                size_t *upload_data_size,
                void **con_cls) {

        HttpServer *s = cls;
        HttpServerRequest *req = *con_cls;
        uint64_t length;
        int r;

        if (!req) {
                req = mem_calloc(1, sizeof(*req));
                if (!req)
                        /* Cannot even track the request: answer with the
                         * static 503 and let MHD close the connection. */
                        return MHD_queue_response(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                  s->oom_response);
                req->server = s;
                req->connection = connection;
                req->method = method;
                req->path = url;
                req->body_limit = s->max_body_bytes;
                req->started_mono = now_usec(CLOCK_MONOTONIC);
                req->started_realtime = now_usec(CLOCK_REALTIME);
                *con_cls = req;
                conn_set_busy(s, connection, true);

                if (s->on_headers) {
                        r = s->on_headers(req, s->userdata);
                        if (r < 0 || req->response || req->queued)
                                return finish_handler(req, r, /* may_wait= */ false);
                }

                r = http_server_request_content_length(req, &length);
                if (r >= 0 && length > req->body_limit) {
                        req->too_big = true;
                        return queue_static(req, MHD_HTTP_CONTENT_TOO_LARGE, s->too_big_response);
                }
                strbuf_init(&req->body, req->body_limit);
                return MHD_YES;
        }

        if (req->queued)
                /* Answered early; MHD is draining or closing. */
                goto discard;

        if (req->response)
                /* Resumed with an answer. */
                return queue_ready_response(req) < 0 ? MHD_NO : MHD_YES;

        if (req->parked)
                /* Still waiting: MHD calls again at each MHD_run(). */
                return MHD_YES;

        if (*upload_data_size > 0) {
                s->uploading = true;
                request_receiving(req, true);
                if (req->too_big || req->out_of_memory) {
                        /* MHD takes no answer in the middle of an upload:
                         * drop the rest and answer 413 at its end, unless
                         * the sender keeps going for too long. */
                        if (*upload_data_size > LIMIT_HTTP_DISCARD_BYTES - req->discarded)
                                return MHD_NO;
                        req->discarded += *upload_data_size;
                        goto discard;
                }
                r = strbuf_append(&req->body, upload_data, *upload_data_size);
                if (r == -E2BIG) {
                        req->too_big = true;
                        strbuf_free(&req->body);
                        req->discarded = *upload_data_size;
                        goto discard;
                }
                if (r < 0) {
                        /* Out of memory: MHD takes no answer mid-upload, so
                         * drop the rest like an oversized body and answer
                         * 503 (retryable) at its end. */
                        req->out_of_memory = true;
                        strbuf_free(&req->body);
                        req->discarded = *upload_data_size;
                        goto discard;
                }
                *upload_data_size = 0;
                return MHD_YES;
        }

        /* The final call: the whole body is in. */
        request_receiving(req, false);
        if (req->too_big)
                return queue_static(req, MHD_HTTP_CONTENT_TOO_LARGE, s->too_big_response);
        if (req->out_of_memory)
                return queue_static(req, MHD_HTTP_SERVICE_UNAVAILABLE, s->oom_response);
        if (req->suspended)
                /* Resumed without an answer (server shutting down). */
                return queue_static(req, MHD_HTTP_SERVICE_UNAVAILABLE, s->oom_response);

        r = s->on_request(req, s->userdata);
        return finish_handler(req, r, /* may_wait= */ false);

discard:
        *upload_data_size = 0;
        return MHD_YES;
}

static void request_completed(
                void *cls,
                struct MHD_Connection *connection,
                void **con_cls,
                enum MHD_RequestTerminationCode toe) {

        HttpServer *s = cls;
        HttpServerRequest *req = *con_cls;

        if (!req)
                return;
        *con_cls = NULL;
        conn_set_busy(s, connection, false);
        if (req->suspended)
                request_unwait(req, /* resume= */ false);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
                log_trace(TRACE_HTTP, "%s: request %s %s ended early (%d)", s->name,
                          req->method, req->path, (int) toe);
        if (s->on_complete)
                s->on_complete(req, s->userdata);
        request_free(req);
}

/* MHD_OPTION_UNESCAPE_CALLBACK for raw_path servers: leave it as sent. */
static size_t unescape_none(void *cls, struct MHD_Connection *connection, char *s) {
        return strlen(s);
}

/* --- the loop ----------------------------------------------------------- */

static int server_run(HttpServer *s) {
        s->kick = false;
        s->uploading = false;
        s->n_runs++;
        if (MHD_run(s->daemon) != MHD_YES)
                log_warning("%s: MHD_run() failed, ignoring", s->name);
        if (s->uploading && s->n_receiving > 0)
                s->kick = true;
        return 0;
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        return server_run(userdata);
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        return server_run(userdata);
}

static int on_defer(sd_event_source *source, void *userdata) {
        return server_run(userdata);
}

static int park_poll_arm(HttpServer *s) {
        int enabled = SD_EVENT_OFF;
        uint64_t now;

        /* Armed once per period, not per loop iteration: a timerfd_settime()
         * per iteration is what the defer source exists to avoid. */
        if (sd_event_source_get_enabled(s->park_source, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return 0;
        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        (void) sd_event_source_set_time(s->park_source, now + PARK_POLL_USEC);
        return sd_event_source_set_enabled(s->park_source, SD_EVENT_ONESHOT);
}

static int on_prepare(sd_event_source *source, void *userdata) {
        HttpServer *s = userdata;
        MHD_UNSIGNED_LONG_LONG ms;
        uint64_t when, now;
        bool have;

        /* MHD returns 0 ms while a resumed keep-alive connection waits for
         * its next recv(): that must run now, not within the timer's
         * accuracy (250 ms), or every second request on a connection
         * waits that long. "Now" is a one-shot defer source: moving the
         * timer to the past and back re-armed the timerfd twice per loop
         * iteration (timerfd_settime was 8% of the loop thread, perf). */
        if (s->kick)
                return sd_event_source_set_enabled(s->defer_source, SD_EVENT_ONESHOT);
        have = MHD_get_timeout(s->daemon, &ms) == MHD_YES;
        if (have && ms == 0 && s->n_parked > 0) {
                /* A parked request keeps MHD's ready list non-empty, so MHD
                 * says "0 ms" for as long as it waits: running now would
                 * spin. Whatever MHD has to do for the others is an answer
                 * to write (kicked in queue_ready_response()), data on a
                 * socket (the io source) or a timeout: run on those, and at
                 * the latest every PARK_POLL_USEC, which also checks the
                 * connection timeouts that MHD no longer reports. */
                (void) sd_event_source_set_enabled(s->defer_source, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);
                return park_poll_arm(s);
        }
        (void) sd_event_source_set_enabled(s->park_source, SD_EVENT_OFF);
        if (have && ms == 0)
                return sd_event_source_set_enabled(s->defer_source, SD_EVENT_ONESHOT);
        (void) sd_event_source_set_enabled(s->defer_source, SD_EVENT_OFF);

        if (!have)
                return sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);

        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec(CLOCK_MONOTONIC);
        when = ms >= (UINT64_MAX - now) / USEC_PER_MSEC ? USEC_INFINITY : now + ms * USEC_PER_MSEC;
        if (when == USEC_INFINITY)
                return sd_event_source_set_enabled(s->timer_source, SD_EVENT_OFF);
        (void) sd_event_source_set_time(s->timer_source, when);
        return sd_event_source_set_enabled(s->timer_source, SD_EVENT_ONESHOT);
}

/* --- construction ------------------------------------------------------- */

static struct MHD_Response *static_json_response(const char *body, bool retry) {
        struct MHD_Response *resp;

        resp = MHD_create_response_from_buffer(strlen(body), (void *) (uintptr_t) body, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return NULL;
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES ||
            (retry && MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1") != MHD_YES)) {
                MHD_destroy_response(resp);
                return NULL;
        }
        return resp;
}

static int read_pem(const char *path, char **ret, size_t *ret_size) {
        int r;

        r = read_file_limited(path, TLS_FILE_MAX, ret, ret_size);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", path);
        return 0;
}

static void erase_free(char *p, size_t n) {
        if (p)
                explicit_bzero(p, n);
        mem_free(p);
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;

        if (s->daemon) {
                /* MHD must not be stopped with suspended connections. */
                while (s->suspended) {
                        HttpServerRequest *req = s->suspended;

                        request_unwait(req, /* resume= */ true);
                        if (!req->response)
                                (void) http_server_respond_json_error(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                                                                      "shutting_down",
                                                                      "The server is shutting down.");
                }
                (void) MHD_run(s->daemon);
                MHD_stop_daemon(s->daemon);
        }
        sd_event_source_disable_unref(s->io_source);
        sd_event_source_disable_unref(s->timer_source);
        sd_event_source_disable_unref(s->defer_source);
        sd_event_source_disable_unref(s->park_source);
        if (s->oom_response)
                MHD_destroy_response(s->oom_response);
        if (s->too_big_response)
                MHD_destroy_response(s->too_big_response);
        mem_free(s->tls_cert);
        erase_free(s->tls_key, s->tls_key_size);
        mem_free(s->tls_trust);
        mem_free(s->name);
        sd_event_unref(s->event);
        mem_free(s);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free, http_server_freep)

int http_server_new(sd_event *e, const HttpServerOptions *opts, HttpServer **ret) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        struct MHD_OptionItem o[16];
        const union MHD_DaemonInfo *info;
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        size_t n = 0, size;
        int fd, r;

        if (!e || !opts || !opts->on_request || opts->listen_fd < 0)
                return -EINVAL;
        if (!!opts->tls_cert_file != !!opts->tls_key_file)
                return -EINVAL;
        if (opts->tls_client_ca_file && !opts->tls_cert_file)
                return -EINVAL;

        s = mem_calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->max_body_bytes = opts->max_body_bytes;
        s->on_headers = opts->on_headers;
        s->on_request = opts->on_request;
        s->on_complete = opts->on_complete;
        s->userdata = opts->userdata;
        s->name = mem_strdup(opts->name ? opts->name : "http");
        if (!s->name)
                return -ENOMEM;

        s->oom_response = static_json_response(oom_body, /* retry= */ true);
        s->too_big_response = static_json_response(too_big_body, /* retry= */ false);
        if (!s->oom_response || !s->too_big_response)
                return -ENOMEM;

        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) mhd_logger, s };
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) request_completed, s };
        s->conn_limit = opts->connection_limit ? opts->connection_limit : LIMIT_HTTP_CONNECTIONS;
        s->conn_timeout_sec = opts->connection_timeout_sec ? opts->connection_timeout_sec
                                                           : LIMIT_HTTP_CONNECTION_TIMEOUT_SEC;
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) conn_notify, s };
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_LIMIT, s->conn_limit, NULL };
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                LIMIT_HTTP_CONNECTION_MEMORY, NULL };
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_CONNECTION_TIMEOUT, s->conn_timeout_sec, NULL };
        if (opts->raw_path)
                o[n++] = (struct MHD_OptionItem) { MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t) unescape_none, NULL };

        if (opts->tls_cert_file) {
                if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
                        return log_error_errno(-EOPNOTSUPP, "%s: libmicrohttpd was built without TLS", s->name);
                r = read_pem(opts->tls_cert_file, &s->tls_cert, &size);
                if (r < 0)
                        return r;
                r = read_pem(opts->tls_key_file, &s->tls_key, &s->tls_key_size);
                if (r < 0)
                        return r;
                flags |= MHD_USE_TLS;
                s->tls = true;
                o[n++] = (struct MHD_OptionItem) { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert };
                o[n++] = (struct MHD_OptionItem) { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key };
                o[n++] = (struct MHD_OptionItem) { MHD_OPTION_HTTPS_PRIORITIES, 0, (void *) (uintptr_t) TLS_PRIORITIES };
                if (opts->tls_client_ca_file) {
                        r = read_pem(opts->tls_client_ca_file, &s->tls_trust, &size);
                        if (r < 0)
                                return r;
                        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_trust };
                }
        }

        /* MHD closes the listening socket when it stops; whether it does
         * when it fails to start is not documented. Give it a duplicate,
         * so that the caller's fd stays the caller's on failure. */
        fd = fcntl(opts->listen_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_LISTEN_SOCKET, fd, NULL };
        o[n++] = (struct MHD_OptionItem) { MHD_OPTION_END, 0, NULL };

        s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, access_handler, s,
                                     MHD_OPTION_ARRAY, o, MHD_OPTION_END);
        if (!s->daemon)
                /* fd is lost here, see above: one descriptor on a fatal path. */
                return log_error_errno(-EIO, "%s: failed to start libmicrohttpd", s->name);

        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return log_error_errno(-EIO, "%s: libmicrohttpd has no epoll fd", s->name);

        r = sd_event_add_io(e, &s->io_source, info->epoll_fd, EPOLLIN, on_io, s);
        if (r < 0)
                return r;
        r = sd_event_source_set_prepare(s->io_source, on_prepare);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->io_source, "http-server-io");

        /* Default accuracy (250 ms): MHD's other timeouts are connection
         * idle timeouts, and a coarse timer spares a timerfd_settime() per
         * loop iteration; on_prepare() turns "0 ms" into "now". */
        r = sd_event_add_time(e, &s->timer_source, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->timer_source, "http-server-timer");

        r = sd_event_add_defer(e, &s->defer_source, on_defer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(s->defer_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->defer_source, "http-server-run");

        r = sd_event_add_time(e, &s->park_source, CLOCK_MONOTONIC, USEC_INFINITY, 1, on_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(s->park_source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->park_source, "http-server-park");
        s->park = !opts->suspend && park_supported();

        /* From here on the listening socket is MHD's. */
        (void) close(opts->listen_fd);

        *ret = TAKE_PTR(s);
        return 0;
}

void http_server_set_max_body(HttpServer *s, size_t max_body_bytes) {
        s->max_body_bytes = max_body_bytes;
}

unsigned http_server_connections(HttpServer *s) {
        const union MHD_DaemonInfo *info;

        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        return info ? info->num_connections : 0;
}

/* --- requests ----------------------------------------------------------- */

const char *http_server_request_method(const HttpServerRequest *req) {
        return req->method;
}

const char *http_server_request_path(const HttpServerRequest *req) {
        return req->path;
}

const char *http_server_request_header(const HttpServerRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_server_request_query(const HttpServerRequest *req, const char *name) {
        return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

int http_server_request_content_length(const HttpServerRequest *req, uint64_t *ret) {
        const char *v;
        char *end;
        unsigned long long l;

        v = http_server_request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!v)
                return -ENODATA;
        if (http_server_request_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return -ENODATA; /* chunked wins (RFC 9112 6.3) */
        while (*v == ' ' || *v == '\t')
                v++;
        if (*v < '0' || *v > '9')
                return -EINVAL;
        errno = 0;
        l = strtoull(v, &end, 10);
        if (errno != 0)
                return -EINVAL;
        while (*end == ' ' || *end == '\t')
                end++;
        if (*end)
                return -EINVAL;
        *ret = l;
        return 0;
}

const char *http_server_request_body(const HttpServerRequest *req, size_t *ret_size) {
        if (ret_size)
                *ret_size = req->body.len;
        return req->body.data ? req->body.data : "";
}

void http_server_request_set_body_limit(HttpServerRequest *req, size_t max_body_bytes) {
        req->body_limit = max_body_bytes;
}

uint64_t http_server_request_started_mono(const HttpServerRequest *req) {
        return req->started_mono;
}

uint64_t http_server_request_started_realtime(const HttpServerRequest *req) {
        return req->started_realtime;
}

void http_server_request_set_context(HttpServerRequest *req, void *context, void (*free_fn)(void *)) {
        if (req->free_context && req->context != context)
                req->free_context(req->context);
        req->context = context;
        req->free_context = free_fn;
}

void *http_server_request_get_context(const HttpServerRequest *req) {
        return req->context;
}

int http_server_request_client_cert(HttpServerRequest *req, char **ret_subject) {
        const union MHD_ConnectionInfo *info;
        gnutls_session_t session;
        const gnutls_datum_t *certs;
        gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t dn = {};
        unsigned status = 0, n_certs = 0;
        int g, r;

        if (!req->server->tls)
                return -ENODATA;
        info = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (!info || !info->tls_session)
                return -ENODATA;
        session = (gnutls_session_t) info->tls_session;

        certs = gnutls_certificate_get_peers(session, &n_certs);
        if (!certs || n_certs == 0)
                return -ENODATA;
        g = gnutls_certificate_verify_peers2(session, &status);
        if (g == GNUTLS_E_NO_CERTIFICATE_FOUND)
                return -ENODATA;
        if (g < 0 || status != 0)
                return -EACCES;

        if (!ret_subject)
                return 0;

        if (gnutls_x509_crt_init(&crt) < 0)
                return -ENOMEM;
        if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0 ||
            gnutls_x509_crt_get_dn2(crt, &dn) < 0) {
                r = -EACCES;
                goto out;
        }
        *ret_subject = mem_strndup((const char *) dn.data, dn.size);
        r = *ret_subject ? 0 : -ENOMEM;
out:
        gnutls_free(dn.data);
        gnutls_x509_crt_deinit(crt);
        return r;
}

unsigned http_server_parked(const HttpServer *s) {
        return s->n_parked;
}

uint64_t http_server_runs(const HttpServer *s) {
        return s->n_runs;
}

unsigned http_server_request_status(const HttpServerRequest *req) {
        return req->status;
}

bool http_server_request_responded(const HttpServerRequest *req) {
        return req->queued || req->response;
}

int http_server_request_suspend(HttpServerRequest *req) {
        if (req->suspended || http_server_request_responded(req))
                return -EBUSY;
        if (req->server->park) {
                /* No idle timeout while it waits, as MHD gives a suspended
                 * connection none: the answer may take long (remedyctl
                 * users list pages through the whole account). */
                (void) MHD_set_connection_option(req->connection, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
                req->parked = true;
                req->server->n_parked++;
        } else
                MHD_suspend_connection(req->connection);
        req->suspended = true;
        suspended_add(req->server, req);
        return 0;
}

int http_server_request_add_header(HttpServerRequest *req, const char *name, const char *value) {
        HeaderPair *h;

        if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
                return -EINVAL;
        h = mem_reallocarray(req->headers, req->n_headers + 1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        req->headers = h;
        h[req->n_headers] = (HeaderPair) { mem_strdup(name), mem_strdup(value) };
        if (!h[req->n_headers].name || !h[req->n_headers].value) {
                mem_free(h[req->n_headers].name);
                mem_free(h[req->n_headers].value);
                return -ENOMEM;
        }
        req->n_headers++;
        return 0;
}

static bool has_header(const HttpServerRequest *req, const char *name) {
        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0)
                        return true;
        return false;
}

static void respond_set(HttpServerRequest *req, unsigned status, struct MHD_Response *resp, bool shared) {
        req->response = resp;
        req->response_shared = shared;
        req->status = status;
        if (req->suspended) {
                request_unwait(req, /* resume= */ true);
                server_kick(req->server);
        }
}

static int respond_oom(HttpServerRequest *req) {
        respond_set(req, MHD_HTTP_SERVICE_UNAVAILABLE, req->server->oom_response, /* shared= */ true);
        return -ENOMEM;
}

/* Adds the headers and answers with resp; destroys resp on failure. */
static int respond_with(HttpServerRequest *req, unsigned status, const char *content_type,
                        struct MHD_Response *resp) {
        if (!resp)
                goto oom;
        if (content_type &&
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
                goto oom;
        for (size_t i = 0; i < req->n_headers; i++)
                if (MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value) != MHD_YES)
                        goto oom;
        if ((status == MHD_HTTP_SERVICE_UNAVAILABLE || status == MHD_HTTP_TOO_MANY_REQUESTS) &&
            !has_header(req, MHD_HTTP_HEADER_RETRY_AFTER) &&
            MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1") != MHD_YES)
                goto oom;

        respond_set(req, status, resp, /* shared= */ false);
        return 0;

oom:
        if (resp)
                MHD_destroy_response(resp);
        return respond_oom(req);
}

int http_server_respond(HttpServerRequest *req, unsigned status, const char *content_type, const char *body) {
        const char *b = body ? body : "";

        if (http_server_request_responded(req))
                return -EALREADY;
        return respond_with(req, status, content_type,
                            MHD_create_response_from_buffer(strlen(b), (void *) (uintptr_t) b,
                                                            MHD_RESPMEM_MUST_COPY));
}

int http_server_respond_take(HttpServerRequest *req, unsigned status, const char *content_type, char *body,
                             size_t len) {
        struct MHD_Response *resp;

        if (http_server_request_responded(req)) {
                mem_free(body);
                return -EALREADY;
        }
        /* MHD frees it with free(): mem_malloc() is malloc(). */
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp)
                mem_free(body);
        return respond_with(req, status, content_type, resp);
}

int http_server_respond_json(HttpServerRequest *req, unsigned status, json_object *obj) {
        const char *s;

        s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return http_server_request_responded(req) ? -EALREADY : respond_oom(req);
        return http_server_respond(req, status, "application/json", s);
}

int http_server_respond_json_error(HttpServerRequest *req, unsigned status, const char *code, const char *message) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *v;

        o = json_object_new_object();
        if (!o)
                goto oom;
        v = json_object_new_string(code);
        if (!v || json_object_object_add(o, "error", v) < 0)
                goto oom_v;
        v = json_object_new_string(message);
        if (!v || json_object_object_add(o, "message", v) < 0)
                goto oom_v;
        return http_server_respond_json(req, status, o);

oom_v:
        json_object_put(v);
oom:
        return http_server_request_responded(req) ? -EALREADY : respond_oom(req);
}
