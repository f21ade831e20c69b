/* libcurl multi on sd-event: see include/http_client.h and
 * docs/internals/client.md. Modelled on systemd's src/shared/curl-util.c and
 * curl's docs/examples/ephiperfifo.c. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "http_client.h"
#include "log.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "util.h"

#define HTTP_DEFAULT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define HTTP_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
/* A Retry-After beyond a day is nonsense; clamp it. */
#define HTTP_RETRY_AFTER_MAX_SEC 86400ULL

struct HttpRequest {
        HttpClient *client;
        HttpRequest *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        StrBuf body;
        char *upload;                   /* mail: the message, read by on_read() */
        size_t upload_size, upload_off;
        struct curl_slist *rcpt;
        bool mail;                      /* SMTP: keep the reply code on errors */
        bool too_big;
        uint64_t retry_after_usec;
        HttpClientCallback cb;
        void *userdata;
        char errbuf[CURL_ERROR_SIZE];
};

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        HttpRequest *requests;
        size_t n_requests;
        bool dispatching;
        bool dead;
};

int http_client_curl_error_to_errno(int curl_code) {
        switch ((CURLcode) curl_code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -ECONNRESET;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
                return -EPROTO;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EINVAL;
        case CURLE_FILESIZE_EXCEEDED:
                return -E2BIG;
        default:
                return -EIO;
        }
}

int http_client_parse_retry_after(const char *value, uint64_t now_realtime_usec, uint64_t *ret_usec) {
        char buf[128];
        size_t n;
        const char *s;
        time_t t;

        if (!value)
                return -EINVAL;
        n = strlen(value);
        if (n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, value, n + 1);
        s = strstrip(buf);
        if (*s == 0)
                return -EINVAL;

        if (strspn(s, "0123456789") == strlen(s)) {
                uint64_t sec = 0;

                for (; *s; s++) {
                        sec = sec * 10 + (uint64_t) (*s - '0');
                        if (sec > HTTP_RETRY_AFTER_MAX_SEC) {
                                sec = HTTP_RETRY_AFTER_MAX_SEC;
                                break;
                        }
                }
                *ret_usec = sec * USEC_PER_SEC;
                return 0;
        }

        t = curl_getdate(s, NULL);
        if (t < 0)
                return -EINVAL;
        if ((uint64_t) t * USEC_PER_SEC <= now_realtime_usec)
                *ret_usec = 0;
        else {
                uint64_t d = (uint64_t) t * USEC_PER_SEC - now_realtime_usec;
                *ret_usec = d > HTTP_RETRY_AFTER_MAX_SEC * USEC_PER_SEC ? HTTP_RETRY_AFTER_MAX_SEC * USEC_PER_SEC : d;
        }
        return 0;
}

static void request_unlink(HttpRequest *r) {
        HttpClient *c = r->client;

        if (!c)
                return;
        if (r->prev)
                r->prev->next = r->next;
        else
                c->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        r->prev = r->next = NULL;
        c->n_requests--;
        r->client = NULL;
}

static void request_free(HttpRequest *r) {
        if (!r)
                return;
        if (r->easy) {
                if (r->client)
                        (void) curl_multi_remove_handle(r->client->multi, r->easy);
                curl_easy_cleanup(r->easy);
        }
        request_unlink(r);
        /* Headers may carry credentials (Authorization): wipe them. */
        for (struct curl_slist *l = r->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(r->headers);
        curl_slist_free_all(r->rcpt);
        mem_free(r->upload);
        strbuf_free(&r->body);
        mem_free(r);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *r = userdata;
        size_t n = size * nmemb;
        int k;

        k = strbuf_append(&r->body, ptr, n);
        if (k < 0) {
                r->too_big = k == -E2BIG;
                return 0;
        }
        return n;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata) {
        HttpRequest *r = userdata;
        size_t n = size * nitems;
        char line[256];
        uint64_t usec;

        /* A new status line starts a new response (after 100 Continue). */
        if (n >= 5 && strncmp(buffer, "HTTP/", 5) == 0) {
                r->retry_after_usec = 0;
                return n;
        }
        if (n < 12 || n >= sizeof(line) || strncasecmp(buffer, "retry-after:", 12) != 0)
                return n;
        memcpy(line, buffer + 12, n - 12);
        line[n - 12] = 0;
        if (http_client_parse_retry_after(line, now_usec(CLOCK_REALTIME), &usec) >= 0)
                r->retry_after_usec = usec;
        return n;
}

static void client_really_free(HttpClient *c) {
        while (c->requests)
                request_free(c->requests);
        if (c->multi)
                /* May call the socket callback to drop io sources: c is still valid. */
                (void) curl_multi_cleanup(c->multi);
        c->multi = NULL;
        c->timer = sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        mem_free(c);
        curl_global_cleanup();
}

static void dispatch_finished(HttpClient *c) {
        CURLMsg *msg;
        int left;

        if (c->dispatching)
                return;
        c->dispatching = true;
        while (!c->dead && (msg = curl_multi_info_read(c->multi, &left))) {
                HttpRequest *r = NULL;
                CURLcode code;
                HttpResponse resp = {};
                long status = 0;
                double secs = 0;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                code = msg->data.result;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r) != CURLE_OK || !r)
                        continue;
                (void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
                (void) curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &secs);
                (void) curl_multi_remove_handle(c->multi, r->easy);
                request_unlink(r);

                if (code == CURLE_OK)
                        resp.error = 0;
                else if (code == CURLE_WRITE_ERROR && r->too_big)
                        resp.error = -E2BIG;
                else if (code == CURLE_WRITE_ERROR)
                        resp.error = -ENOMEM;
                else
                        resp.error = http_client_curl_error_to_errno(code);
                resp.status = resp.error < 0 && !r->mail ? 0 : status;
                resp.retry_after_usec = r->retry_after_usec;
                resp.body = r->body.data ? r->body.data : "";
                resp.body_size = r->body.len;
                resp.seconds = secs;

                log_trace(TRACE_HTTP, "http: request finished: status %ld, curl %d (%s), %zu bytes, %.3fs",
                          resp.status, (int) code, code != CURLE_OK ? r->errbuf : "ok", resp.body_size, secs);

                if (r->cb)
                        r->cb(c, &resp, r->userdata);
                request_free(r);
        }
        c->dispatching = false;
        if (c->dead)
                client_really_free(c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpClient *c = userdata;
        int action = 0, running;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        if (curl_multi_socket_action(c->multi, fd, action, &running) != CURLM_OK)
                log_debug("http: curl_multi_socket_action() failed, ignoring");
        dispatch_finished(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpClient *c = userdata;
        int running;

        if (curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                log_debug("http: curl_multi_socket_action() failed, ignoring");
        dispatch_finished(c);
        return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpClient *c = userp;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        (void) curl_multi_assign(c->multi, fd, NULL);
                        sd_event_source_disable_unref(io);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(io, SD_EVENT_ON);
        } else {
                r = sd_event_add_io(c->event, &io, fd, events, on_io, c);
                if (r >= 0 && curl_multi_assign(c->multi, fd, io) != CURLM_OK) {
                        sd_event_source_disable_unref(io);
                        r = -EIO;
                }
                if (r >= 0)
                        (void) sd_event_source_set_description(io, "curl-io");
        }
        if (r < 0) {
                log_error_errno(r, "http: cannot watch a curl socket: %m");
                return -1;
        }
        return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
        HttpClient *c = userp;
        uint64_t usec;
        int r;

        if (timeout_ms < 0) {
                if (c->timer)
                        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                return 0;
        }
        usec = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * USEC_PER_MSEC;
        if (c->timer) {
                r = sd_event_source_set_time(c->timer, usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        } else {
                r = sd_event_add_time(c->event, &c->timer, CLOCK_MONOTONIC, usec, /* accuracy= */ 1, on_timer, c);
                if (r >= 0)
                        (void) sd_event_source_set_description(c->timer, "curl-timer");
        }
        if (r < 0) {
                log_error_errno(r, "http: cannot arm the curl timer: %m");
                return -1;
        }
        return 0;
}

int http_client_new(sd_event *e, HttpClient **ret) {
        HttpClient *c;

        if (!e || !ret)
                return -EINVAL;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = mem_calloc(1, sizeof(*c));
        if (!c) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi) {
                client_really_free(c);
                return -ENOMEM;
        }
        if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
                client_really_free(c);
                return -EIO;
        }
        /* Keep a handful of connections to the API alive for reuse. */
        (void) curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 8L);
        *ret = c;
        return 0;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        if (c->dispatching) {
                /* Called from a callback: drop the requests now, the rest
                 * when the dispatch loop unwinds. */
                c->dead = true;
                while (c->requests)
                        request_free(c->requests);
                return NULL;
        }
        client_really_free(c);
        return NULL;
}

size_t http_client_inflight(HttpClient *c) {
        return c ? c->n_requests : 0;
}

HttpRequest *http_client_cancel(HttpClient *c, HttpRequest *r) {
        if (!c || !r)
                return NULL;
        request_free(r);
        return NULL;
}

static int append_header(struct curl_slist **l, const char *h) {
        struct curl_slist *n = curl_slist_append(*l, h);

        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

#define SETOPT(easy, opt, val)                                     \
        do {                                                       \
                if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK) \
                        return -EIO;                               \
        } while (0)

/* What every transfer sets: the URL and its protocols, timeouts, the
 * error buffer, the response sink and an extra trust anchor. */
static int request_setup_common(HttpRequest *r, const char *url, const char *protocols, uint64_t timeout_usec,
                                const char *ca_file) {
        uint64_t timeout = timeout_usec > 0 ? timeout_usec : HTTP_DEFAULT_TIMEOUT_USEC;
        uint64_t connect_timeout = timeout < HTTP_CONNECT_TIMEOUT_USEC ? timeout : HTTP_CONNECT_TIMEOUT_USEC;
        CURL *e = r->easy;

        SETOPT(e, CURLOPT_PRIVATE, r);
        SETOPT(e, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
        SETOPT(e, CURLOPT_PROTOCOLS_STR, protocols);
#else
        SETOPT(e, CURLOPT_PROTOCOLS, (long) (strcmp(protocols, "http,https") == 0 ? CURLPROTO_HTTP | CURLPROTO_HTTPS
                                                                                  : CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
        SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(e, CURLOPT_TIMEOUT_MS, (long) (timeout / USEC_PER_MSEC));
        SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (connect_timeout / USEC_PER_MSEC));
        SETOPT(e, CURLOPT_ERRORBUFFER, r->errbuf);
        SETOPT(e, CURLOPT_WRITEFUNCTION, on_write);
        SETOPT(e, CURLOPT_WRITEDATA, r);
        if (ca_file)
                SETOPT(e, CURLOPT_CAINFO, ca_file);
        return 0;
}

static int request_setup(HttpRequest *r, const HttpRequestParams *p) {
        bool has_content_type = false;
        CURL *e = r->easy;
        int k;

        for (const char *const *h = p->headers; h && *h; h++) {
                if (strncasecmp(*h, "content-type:", 13) == 0)
                        has_content_type = true;
                k = append_header(&r->headers, *h);
                if (k < 0)
                        return k;
        }
        /* An empty POST carries no Content-Type (curl would add a form one). */
        if (!p->body && !has_content_type) {
                k = append_header(&r->headers, "Content-Type:");
                if (k < 0)
                        return k;
        }
        k = append_header(&r->headers, "Expect:");
        if (k < 0)
                return k;

        k = request_setup_common(r, p->url, "http,https", p->timeout_usec, p->ca_file);
        if (k < 0)
                return k;
        SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
        SETOPT(e, CURLOPT_HEADERDATA, r);
        SETOPT(e, CURLOPT_HTTPHEADER, r->headers);
        if (p->user_agent)
                SETOPT(e, CURLOPT_USERAGENT, p->user_agent);

        if (strcmp(p->method, "GET") == 0)
                SETOPT(e, CURLOPT_HTTPGET, 1L);
        else {
                if (strcmp(p->method, "POST") != 0)
                        SETOPT(e, CURLOPT_CUSTOMREQUEST, p->method);
                SETOPT(e, CURLOPT_POST, 1L);
                SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (p->body ? p->body_size : 0));
                SETOPT(e, CURLOPT_COPYPOSTFIELDS, p->body ? p->body : "");
        }
        return 0;
}

static HttpRequest *request_new(size_t max_response_bytes, HttpClientCallback cb, void *userdata) {
        HttpRequest *r = mem_calloc(1, sizeof(*r));

        if (!r)
                return NULL;
        strbuf_init(&r->body, max_response_bytes > 0 ? max_response_bytes : LIMIT_API_RESPONSE_BYTES);
        r->cb = cb;
        r->userdata = userdata;
        r->easy = curl_easy_init();
        if (!r->easy) {
                request_free(r);
                return NULL;
        }
        return r;
}

/* Links a set-up request into c and hands it to the multi; frees it on
 * failure. */
static int request_start(HttpClient *c, HttpRequest *r, const char *what, HttpRequest **ret) {
        r->client = c;
        r->next = c->requests;
        if (c->requests)
                c->requests->prev = r;
        c->requests = r;
        c->n_requests++;

        if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
                /* Not added: do not let request_free() remove it. */
                request_unlink(r);
                request_free(r);
                return -EIO;
        }
        log_trace(TRACE_HTTP, "http: %s request started", what);
        if (ret)
                *ret = r;
        return 0;
}

int http_client_request(HttpClient *c, const HttpRequestParams *p, HttpClientCallback cb, void *userdata,
                        HttpRequest **ret) {
        HttpRequest *r;
        int k;

        if (!c || c->dead || !p || !p->url || !p->method || !cb)
                return -EINVAL;
        if (!str_startswith(p->url, "http://") && !str_startswith(p->url, "https://"))
                return -EINVAL;

        r = request_new(p->max_response_bytes, cb, userdata);
        if (!r)
                return -ENOMEM;
        k = request_setup(r, p);
        if (k < 0) {
                request_free(r);
                return k;
        }
        return request_start(c, r, p->method, ret);
}

static size_t on_read(char *buffer, size_t size, size_t nitems, void *userdata) {
        HttpRequest *r = userdata;
        size_t n = size * nitems, left = r->upload_size - r->upload_off;

        if (n > left)
                n = left;
        memcpy(buffer, r->upload + r->upload_off, n);
        r->upload_off += n;
        return n;
}

static int mail_setup(HttpRequest *r, const HttpMailParams *p) {
        _cleanup_free_ char *from = NULL;
        CURL *e = r->easy;
        int k;

        k = request_setup_common(r, p->url, "smtp,smtps", p->timeout_usec, p->ca_file);
        if (k < 0)
                return k;
        for (const char *const *t = p->rcpt; *t; t++) {
                _cleanup_free_ char *a = NULL;

                if (asprintf(&a, "<%s>", *t) < 0) {
                        a = NULL;
                        return -ENOMEM;
                }
                k = append_header(&r->rcpt, a);
                if (k < 0)
                        return k;
        }
        if (asprintf(&from, "<%s>", p->from) < 0) {
                from = NULL;
                return -ENOMEM;
        }
        r->upload = mem_memdup(p->message, p->message_size);
        if (!r->upload && p->message_size > 0)
                return -ENOMEM;
        r->upload_size = p->message_size;
        r->mail = true;
        SETOPT(e, CURLOPT_MAIL_FROM, from);
        SETOPT(e, CURLOPT_MAIL_RCPT, r->rcpt);
        SETOPT(e, CURLOPT_UPLOAD, 1L);
        SETOPT(e, CURLOPT_READFUNCTION, on_read);
        SETOPT(e, CURLOPT_READDATA, r);
        SETOPT(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) p->message_size);
        if (p->require_tls)
                SETOPT(e, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
        if (p->username) {
                SETOPT(e, CURLOPT_USERNAME, p->username);
                SETOPT(e, CURLOPT_PASSWORD, p->password ? p->password : "");
        }
        return 0;
}

int http_client_mail(HttpClient *c, const HttpMailParams *p, HttpClientCallback cb, void *userdata,
                     HttpRequest **ret) {
        HttpRequest *r;
        int k;

        if (!c || c->dead || !p || !p->url || !p->from || !p->rcpt || !p->rcpt[0] || !p->message || !cb)
                return -EINVAL;
        if (!str_startswith(p->url, "smtp://") && !str_startswith(p->url, "smtps://"))
                return -EINVAL;
        r = request_new(4096, cb, userdata);
        if (!r)
                return -ENOMEM;
        k = mail_setup(r, p);
        if (k < 0) {
                request_free(r);
                return k;
        }
        return request_start(c, r, "SMTP", ret);
}

static uint64_t rng_state;

static uint64_t rng_next(void) {
        uint64_t x;

        if (rng_state == 0) {
                if (getrandom(&rng_state, sizeof(rng_state), GRND_NONBLOCK) != sizeof(rng_state) || rng_state == 0)
                        rng_state = now_usec(CLOCK_MONOTONIC) | 1;
        }
        /* xorshift64*: jitter only, not security. */
        x = rng_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng_state = x;
        return x * 0x2545F4914F6CDD1DULL;
}

uint64_t http_client_backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t cap_usec) {
        uint64_t d = base_usec;

        for (unsigned i = 1; i < attempt && d < cap_usec; i++)
                d *= 2;
        if (d > cap_usec)
                d = cap_usec;
        if (d < 2)
                return d;
        return d / 2 + rng_next() % (d / 2 + 1);
}
