/* HTTP client: libcurl's multi interface driven by the daemon's sd-event
 * loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION -> sd_event io and time
 * sources, as systemd's curl-util.c). Nothing blocks the loop. One multi
 * handle per client, so connections are kept alive and reused.
 *
 * curl errors are translated here, once, into negative errnos:
 *   -ETIMEDOUT     the request's timeout elapsed
 *   -ECONNREFUSED  could not connect
 *   -EHOSTUNREACH  name resolution failed
 *   -ECONNRESET    connection dropped, empty reply, send/receive error
 *   -EPROTO        TLS handshake or certificate verification failed
 *   -E2BIG         response body over max_response_bytes
 *   -EINVAL        malformed URL or unsupported scheme
 *   -ENOMEM        out of memory
 *   -EIO           anything else */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "remedyd-forward.h"

typedef struct HttpRequestParams {
        const char *method;             /* "GET" or "POST" (any token accepted) */
        const char *url;                /* http:// or https:// only */
        const char *const *headers;     /* NULL-terminated "Name: value" lines, or NULL; copied */
        const char *body;               /* POST body (copied), or NULL: Content-Length: 0 */
        size_t body_size;
        uint64_t timeout_usec;          /* whole exchange; 0 = 10 s */
        const char *ca_file;            /* extra trust anchor file, or NULL */
        const char *user_agent;         /* or NULL: no User-Agent header */
        size_t max_response_bytes;      /* 0 = LIMIT_API_RESPONSE_BYTES */
} HttpRequestParams;

struct HttpResponse {
        int error;                      /* 0 when an HTTP answer arrived, else a -errno above */
        long status;                    /* HTTP status, 0 without an answer */
        uint64_t retry_after_usec;      /* Retry-After (seconds or HTTP-date) as a delay, 0 if none */
        const char *body;               /* NUL-terminated, never NULL (maybe "") */
        size_t body_size;
        double seconds;                 /* wall time of the exchange */
};

/* Called on the loop once per request, unless the request was cancelled or
 * the client freed first. response and its body are borrowed for the
 * duration of the call. The callback may start new requests and cancel
 * other ones; it may free the client (the rest of the dispatch is then
 * dropped). */
typedef void (*HttpClientCallback)(HttpClient *c, const HttpResponse *response, void *userdata);

/* Returns 0 and a new client attached to e, or -ENOMEM / -EIO. */
int http_client_new(sd_event *e, HttpClient **ret);
/* Aborts every request in flight without calling their callbacks. NULL ok. */
HttpClient *http_client_free(HttpClient *c);

/* Starts a request. Returns 0 and, if ret is non-NULL, a handle that stays
 * valid until the callback has been called or the request cancelled (the
 * handle is owned by the client). -EINVAL on bad params, -ENOMEM, -EIO. The
 * callback is never called from inside this function. */
int http_client_request(HttpClient *c, const HttpRequestParams *p, HttpClientCallback cb, void *userdata,
                        HttpRequest **ret);
typedef struct HttpMailParams {
        const char *url;                /* smtp://HOST[:PORT] or smtps://HOST[:PORT] only */
        bool require_tls;               /* smtp://: STARTTLS or fail (CURLUSESSL_ALL) */
        const char *username;           /* AUTH (whatever the server offers: PLAIN, LOGIN ...), or NULL */
        const char *password;
        const char *from;               /* envelope sender, an addr-spec */
        const char *const *rcpt;        /* NULL-terminated envelope recipients (at least one) */
        const char *message;            /* the RFC 5322 message, CRLF line ends (copied); libcurl
                                         * dot-stuffs lines that start with "." */
        size_t message_size;
        uint64_t timeout_usec;          /* whole exchange; 0 = 10 s */
        const char *ca_file;            /* extra trust anchor file, or NULL */
} HttpMailParams;

/* Sends one mail over SMTP on the same multi handle, with the contract of
 * http_client_request(); in the callback's response, status is the last
 * SMTP reply code (250 when accepted, 5xx when refused, 0 without one) and
 * the body is empty. */
int http_client_mail(HttpClient *c, const HttpMailParams *p, HttpClientCallback cb, void *userdata,
                     HttpRequest **ret);
/* Aborts a request; its callback is not called. NULL ok. Returns NULL. */
HttpRequest *http_client_cancel(HttpClient *c, HttpRequest *r);
/* Number of requests in flight. */
size_t http_client_inflight(HttpClient *c);

/* Parses a Retry-After value (delta-seconds or an HTTP-date) into a delay
 * relative to now_realtime_usec (a date in the past gives 0). -EINVAL if
 * neither form. */
int http_client_parse_retry_after(const char *value, uint64_t now_realtime_usec, uint64_t *ret_usec);
/* Translates a CURLcode (as int) into the -errno listed above. */
int http_client_curl_error_to_errno(int curl_code);

/* Exponential backoff with jitter for attempt n (1 = first retry): a delay
 * drawn uniformly from [d/2, d] where d = min(base * 2^(n-1), cap). */
uint64_t http_client_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t cap_usec);
