/* Rendering notifications (notify_format.c) from hostile values.
 *
 * Input: byte 0 picks the outcome and the action kind; the rest, split at
 * NUL bytes, gives user, rule, reason, api_code, api_message, detail,
 * source and instance (missing ones are NULL).
 *
 * Checked: each renderer succeeds within LIMIT_NOTIFY_MESSAGE_BYTES; the
 * slack and webhook bodies parse as JSON; the mail's header block has no
 * bare CR or LF, no line over 78 bytes, and no line that starts a header we
 * did not write; no body line is over 76 bytes. */
#include <json-c/json.h>

#include "config.h"
#include "fuzz.h"
#include "notify_format.h"
#include "remedyd-limits.h"
#include "store.h"
#include "strbuf.h"
#include "util.h"

static void check_json(const StrBuf *b) {
        json_object *o = json_tokener_parse(b->data);

        if (!o)
                abort();
        json_object_put(o);
}

static void check_mail(const StrBuf *b) {
        static const char *const names[] = { "From: ", "To: ", "Subject: ", "Date: ", "Message-ID: ",
                                             "X-Remedyd-Delivery: ", "Auto-Submitted: ", "MIME-Version: ",
                                             "Content-Type: ", "Content-Transfer-Encoding: " };
        const char *p = b->data;
        bool in_body = false;

        while (*p) {
                const char *eol = strstr(p, "\r\n");
                size_t n = eol ? (size_t) (eol - p) : strlen(p);

                if (memchr(p, '\n', n) || memchr(p, '\r', n))
                        abort();
                if (n == 0 && !in_body) {
                        in_body = true;
                } else if (!in_body) {
                        bool known = *p == ' ';

                        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                                known |= strncmp(p, names[i], strlen(names[i])) == 0;
                        if (!known || n > 78)
                                abort();
                } else if (n > 76)
                        abort();
                p += n + (eol ? 2 : 0);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *fields[8] = {}, *copy;
        size_t k = 0;
        StrBuf b;
        StoreNotification n;

        if (size < 1 || size > 4 * LIMIT_NOTIFY_MESSAGE_BYTES)
                return 0;
        copy = malloc(size);
        if (!copy)
                return 0;
        memcpy(copy, data + 1, size - 1);
        copy[size - 1] = 0;
        for (char *p = copy; k < 8 && p < copy + size - 1;) {
                fields[k++] = p;
                p += strlen(p) + 1;
        }
        n = (StoreNotification) {
                .id = "0123456789abcdef0123456789abcdef",
                .outcome = (ActionStatus) (data[0] % _ACTION_STATUS_MAX),
                .event_source = fields[6],
                .event_received_usec = 1796000000ULL * USEC_PER_SEC,
                .instance = fields[7],
                .action = {
                        .id = "fedcba9876543210fedcba9876543210",
                        .action = (ActionKind) ((data[0] >> 4) % _ACTION_KIND_MAX),
                        .user = fields[0], .rule = fields[1], .reason = fields[2], .api_code = fields[3],
                        .api_message = fields[4], .detail = fields[5],
                        .status = (ActionStatus) ((data[0] >> 2) % _ACTION_STATUS_MAX),
                },
        };
        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        if (notify_format_slack(&b, &n) < 0)
                abort();
        check_json(&b);
        strbuf_reset(&b);
        if (notify_format_webhook(&b, &n) < 0)
                abort();
        check_json(&b);
        strbuf_reset(&b);
        if (notify_format_email(&b, &n, &(NotifyMailParams) {
                                             .from = "remedyd@example.com",
                                             .to = (char *[]) { (char *) "soc@example.com", NULL },
                                     }) < 0)
                abort();
        check_mail(&b);
        strbuf_free(&b);
        free(copy);
        return 0;
}
