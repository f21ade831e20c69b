/* libmicrohttpd glue on the daemon's sd-event loop (the counterpart of
 * journal-remote's microhttpd-util.c): MHD runs with MHD_USE_EPOLL and no
 * thread of its own; its epoll fd is an sd-event io source and its timeout
 * re-arms a timer source. One HttpServer serves one listening socket and
 * hands each request to the owner's callbacks:
 *
 *   on_headers  headers are in, nothing of the body was read: the cheap
 *               rungs of the rejection ladder (method, path, content type).
 *               Respond to end the request there, or return 0 to read the
 *               body. The server then refuses a declared Content-Length over
 *               the body limit, and a chunked body that grows past it, with
 *               413 itself.
 *   on_request  the whole body is in: respond, or suspend the connection
 *               and respond later from any loop callback (the server resumes
 *               it).
 *   on_complete the request is over (answered, or the peer went away):
 *               http_server_request_status() tells what was sent. The
 *               context set with http_server_request_set_context() is freed
 *               right after.
 *
 * A callback that returns a negative errno without responding gets 503
 * (-ENOMEM, "out_of_memory") or 500 ("internal_error"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "remedyd-forward.h"

typedef struct HttpServerRequest HttpServerRequest;

typedef int (*HttpServerHandler)(HttpServerRequest *req, void *userdata);
typedef void (*HttpServerCompleteHandler)(HttpServerRequest *req, void *userdata);

typedef struct HttpServerOptions {
        /* A bound, listening, non-blocking socket (TCP, unix or from
         * systemd). See http_server_new() for ownership. */
        int listen_fd;
        /* Default body limit of every request; 0 = no body accepted.
         * Requests may change theirs in on_headers. */
        size_t max_body_bytes;
        unsigned connection_limit;       /* 0 = LIMIT_HTTP_CONNECTIONS */
        unsigned connection_timeout_sec; /* 0 = LIMIT_HTTP_CONNECTION_TIMEOUT_SEC */
        /* TLS: both or neither (PEM paths, read at start). With
         * tls_client_ca_file, client certificates are requested and checked
         * against it (http_server_request_client_cert()). */
        const char *tls_cert_file;
        const char *tls_key_file;
        const char *tls_client_ca_file;
        /* Callbacks: on_request is required. */
        HttpServerHandler on_headers;
        HttpServerHandler on_request;
        HttpServerCompleteHandler on_complete;
        void *userdata;
        /* The path and query arguments exactly as sent, without
         * percent-decoding: "/hooks/%68mac" and "/hooks/hmac%00x" then name
         * no source instead of "hmac" (a decoded %00 cuts the name). */
        bool raw_path;
        /* Label for log lines ("webhook", "status", "control"). */
        const char *name;
        /* Waiting requests (http_server_request_suspend()) always use
         * MHD_suspend_connection(), never parking (http_server.c): for
         * tests of both ways. */
        bool suspend;
} HttpServerOptions;

/* Starts serving opts->listen_fd on e. On success the server owns the
 * listening socket (closed by http_server_free()); on failure the caller
 * still owns it. Errors: -EINVAL (bad options), -ENOENT/-EACCES/-E2BIG
 * reading TLS files, -EOPNOTSUPP (MHD without TLS), -EIO (MHD refused to
 * start), -ENOMEM. */
int http_server_new(sd_event *e, const HttpServerOptions *opts, HttpServer **ret);
/* Answers every suspended request with 503, closes every connection (each
 * gets on_complete) and the listening socket. NULL-safe; returns NULL. */
HttpServer *http_server_free(HttpServer *s);
/* Changes the default body limit for requests that start from now on. */
void http_server_set_max_body(HttpServer *s, size_t max_body_bytes);
/* Connections open right now (suspended ones included). */
unsigned http_server_connections(HttpServer *s);

/* --- the request: everything is borrowed and valid until on_complete ---- */

const char *http_server_request_method(const HttpServerRequest *req);
/* The path without the query string, percent-decoded unless raw_path. */
const char *http_server_request_path(const HttpServerRequest *req);
/* A request header by case-insensitive name, or NULL. */
const char *http_server_request_header(const HttpServerRequest *req, const char *name);
/* A query-string argument by name (decoded), or NULL. */
const char *http_server_request_query(const HttpServerRequest *req, const char *name);
/* Declared Content-Length: 0 and *ret, -ENODATA when absent (chunked or
 * no body), -EINVAL when malformed. */
int http_server_request_content_length(const HttpServerRequest *req, uint64_t *ret);
/* The body read so far (all of it in on_request). Never NULL: "" when
 * empty; NUL-terminated after *ret_size bytes (it may hold NULs itself). */
const char *http_server_request_body(const HttpServerRequest *req, size_t *ret_size);
/* In on_headers: the body limit of this request. */
void http_server_request_set_body_limit(HttpServerRequest *req, size_t max_body_bytes);
/* The CLOCK_MONOTONIC / CLOCK_REALTIME time the request started. */
uint64_t http_server_request_started_mono(const HttpServerRequest *req);
uint64_t http_server_request_started_realtime(const HttpServerRequest *req);

/* A per-request context owned by the request: free_fn(context) runs after
 * on_complete. Replacing a context frees the old one. */
void http_server_request_set_context(HttpServerRequest *req, void *context, void (*free_fn)(void *));
void *http_server_request_get_context(const HttpServerRequest *req);

/* The client certificate on a TLS connection that asked for one:
 * 0 when it verified against the client CA (*ret_subject, if non-NULL, is
 * its subject DN; caller frees), -ENODATA when no certificate was sent or
 * the listener has no TLS, -EACCES when it did not verify, -ENOMEM. */
int http_server_request_client_cert(HttpServerRequest *req, char **ret_subject);

/* The status of the response sent (or queued), 0 if none yet. */
unsigned http_server_request_status(const HttpServerRequest *req);
/* Whether a response has been queued for this request. */
bool http_server_request_responded(const HttpServerRequest *req);

/* In on_request only: stop processing the connection until the response
 * is given with one of the http_server_respond*() calls. -EBUSY if already
 * suspended or answered. The connection has no idle timeout meanwhile. With
 * libmicrohttpd 0.9 the request is "parked" rather than MHD-suspended
 * (http_server.c: 3 syscalls fewer per request), unless opts->suspend. */
int http_server_request_suspend(HttpServerRequest *req);
/* Requests waiting parked right now (0 when they are MHD-suspended). */
unsigned http_server_parked(const HttpServer *s);
/* MHD_run() calls so far: how often the loop ran the server. */
uint64_t http_server_runs(const HttpServer *s);

/* --- responses: one per request; a second gives -EALREADY ------------- */

/* Adds a header to the response given next (Allow, Retry-After, ...).
 * Copied. -ENOMEM, -EINVAL for CR/LF in name or value. */
int http_server_request_add_header(HttpServerRequest *req, const char *name, const char *value);

/* Answers with body (NUL-terminated; copied) of content_type (NULL: no
 * Content-Type). 503 and 429 get "Retry-After: 1" unless a Retry-After was
 * added. Resumes a suspended request. On -ENOMEM the request gets a static
 * 503 instead, so callers may ignore the result. */
int http_server_respond(HttpServerRequest *req, unsigned status, const char *content_type, const char *body);
/* The same with a body of len bytes from mem_malloc() (a StrBuf's), which
 * it takes always: no copy. */
int http_server_respond_take(HttpServerRequest *req, unsigned status, const char *content_type, char *body,
                             size_t len);
/* Answers with obj serialised as application/json (obj is not consumed). */
int http_server_respond_json(HttpServerRequest *req, unsigned status, json_object *obj);
/* Answers {"error": code, "message": message} as application/json.
 * message should be one human sentence, never untrusted input. */
int http_server_respond_json_error(HttpServerRequest *req, unsigned status, const char *code, const char *message);
