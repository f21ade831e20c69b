/* Every 1Password response parser, called the way the client calls them
 * once curl has handed over a response: users_api_parse_response() (user,
 * list and error bodies for each operation and status),
 * oauth_parse_token() (token bodies) and http_client_parse_retry_after()
 * (the Retry-After header, seconds or HTTP-date), then
 * users_api_user_has_email() on whatever JSON came back.
 *
 * Input: byte 0 picks the operation (bits 0-1: get, list, suspend,
 * reactivate) and whether the rest is a raw HTTP response (bit 4: status
 * line, headers, blank line, body; every Retry-After header is parsed).
 * Otherwise byte 1 picks a status and the rest is the body; the body's
 * first line is also tried as a Retry-After value.
 *
 * (Until 2026-11 this target ran each input through the real curl client
 * against a server in the process: 0.4-2.4 k inputs/s, too slow to reach
 * 10 M executions. The transport is libcurl's and is covered by
 * test-users_api and the integration tests; the parsing is ours.) */
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "alloc.h"
#include "fuzz.h"
#include "http_client.h"
#include "oauth.h"
#include "remedyd-limits.h"
#include "users_api.h"

#define HEADER_VALUE_MAX 255
/* A fixed "now" keeps HTTP-date answers deterministic: 2026-01-01. */
#define NOW_REALTIME_USEC (UINT64_C(1767225600) * UINT64_C(1000000))

static const UsersApiOperation ops[] = { USERS_API_GET, USERS_API_LIST, USERS_API_SUSPEND, USERS_API_REACTIVATE };
static const unsigned statuses[] = { 200, 200, 200, 400, 401, 403, 404, 409, 429, 500, 503, 204, 301 };

static void retry_after(const char *value, size_t n) {
        char buf[HEADER_VALUE_MAX + 1];
        uint64_t usec = 0;

        if (n > HEADER_VALUE_MAX)
                n = HEADER_VALUE_MAX;
        memcpy(buf, value, n);
        buf[n] = 0;
        if (http_client_parse_retry_after(buf, NOW_REALTIME_USEC, &usec) < 0 && usec != 0)
                abort();
}

static void check_result(UsersApiOperation op, long status, int r, const UsersApiResult *res) {
        if (r > 0)
                abort();
        if (status >= 200 && status < 300) {
                if (r == 0 && op != USERS_API_LIST && !res->user)
                        abort();
                if (r == 0 && !res->body)
                        abort();
                if (res->api_code || res->api_message)
                        abort();
        } else {
                if (r == 0 || res->user || res->users || res->next_page_token)
                        abort();
        }
        if (res->n_users > 0 && !res->users)
                abort();
        if (res->n_users > LIMIT_DIRECTORY_USERS)
                abort();
        for (size_t i = 0; i < res->n_users; i++)
                if (res->users[i].state < 0 || res->users[i].state >= _OP_USER_STATE_MAX)
                        abort();
        if (res->user && (res->user->state < 0 || res->user->state >= _OP_USER_STATE_MAX))
                abort();
        if (res->next_page_token && !*res->next_page_token)
                abort();
        if (res->api_message && strlen(res->api_message) > 4096)
                abort();
        if (res->api_code && strlen(res->api_code) > 4096)
                abort();
}

static void parse_all(UsersApiOperation op, long status, const char *body, size_t n) {
        UsersApiResult res = {};
        char *token = NULL;
        uint64_t life = 0;
        int r;

        r = users_api_parse_response(op, status, body, n, &res);
        check_result(op, status, r, &res);
        if (json_object_is_type(res.body, json_type_object))
                (void) users_api_user_has_email(res.body, "alice@example.com");
        for (size_t i = 0; json_object_is_type(res.body, json_type_object) && i < res.n_users; i++)
                (void) users_api_user_has_email(json_object_array_get_idx(
                                json_object_object_get(res.body, "results"), i), "alice@example.com");
        users_api_result_done(&res);

        r = oauth_parse_token(body, n, &token, &life);
        if (r == 0) {
                if (!token || !*token || strlen(token) > OAUTH_TOKEN_MAX_BYTES || strpbrk(token, "\r\n"))
                        abort();
                if (life < 1 || life > 86400 * 30)
                        abort();
        } else if (token || (r != -EBADMSG && r != -ENOMEM))
                abort();
        mem_free(token);
}

/* Bit 4: "HTTP/1.1 NNN ...\r\n" headers "\r\n" body. */
static void raw_response(UsersApiOperation op, const char *p, size_t n) {
        const char *end = p + n, *line = p;
        long status = 0;

        if (n >= 12 && memcmp(p, "HTTP/", 5) == 0) {
                const char *sp = memchr(p, ' ', n);

                for (const char *d = sp ? sp + 1 : end; d < end && d < sp + 4 && *d >= '0' && *d <= '9'; d++)
                        status = status * 10 + (*d - '0');
        }
        while (line < end) {
                const char *nl = memchr(line, '\n', (size_t) (end - line));
                size_t len = (size_t) ((nl ? nl : end) - line);

                if (len > 0 && line[len - 1] == '\r')
                        len--;
                if (len == 0) {
                        line = nl ? nl + 1 : end;
                        break;
                }
                if (len >= 12 && strncasecmp(line, "retry-after:", 12) == 0)
                        retry_after(line + 12, len - 12);
                line = nl ? nl + 1 : end;
        }
        parse_all(op, status, line, (size_t) (end - line));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        UsersApiOperation op;
        const char *body;
        size_t n;

        fuzz_quiet_logs();
        if (size < 2)
                return 0;
        op = ops[data[0] & 3];
        if (data[0] & 16) {
                raw_response(op, (const char *) data + 1, size - 1);
                return 0;
        }
        body = (const char *) data + 2;
        n = size - 2;
        parse_all(op, statuses[data[1] % (sizeof(statuses) / sizeof(statuses[0]))], body, n);
        {
                const char *nl = memchr(body, '\n', n);

                retry_after(body, nl ? (size_t) (nl - body) : n);
        }
        return 0;
}
