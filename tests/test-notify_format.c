/* notify_format.c: each medium's escaping and bounds with hostile values
 * (Slack link and mention syntax, CR/LF header injection, 10 KiB strings,
 * invalid UTF-8), the three message shapes, and the render speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "config.h"
#include "harness.h"
#include "notify_format.h"
#include "remedyd-limits.h"
#include "store.h"
#include "strbuf.h"
#include "util.h"

static char *render_with(int (*fn)(StrBuf *, const char *, size_t), const char *s, size_t max) {
        StrBuf b;

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        ASSERT_OK(fn(&b, s, max));
        return strbuf_steal(&b);
}

static char *big(size_t n, char c) {
        char *s = malloc(n + 1);

        ASSERT_NOT_NULL(s);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

TEST(mrkdwn) {
        struct {
                const char *in, *out;
        } cases[] = {
                { "a & b < c > d", "a &amp; b &lt; c &gt; d" },
                { "<!here> <!channel> <@U123>", "&lt;!here&gt; &lt;!channel&gt; &lt;@\xe2\x81\xa0" "U123&gt;" },
                { "<https://evil.example|click me>", "&lt;https://evil.example|click me&gt;" },
                { "@channel @all hi", "@\xe2\x81\xa0" "channel @\xe2\x81\xa0" "all hi" },
                { "alice@example.com", "alice@example.com" },
                { "[x](https://evil.example)", "[x]\xe2\x80\x8b(https://evil.example)" },
                { "line1\nOutcome: done\r\n", "line1 Outcome: done  " },
                { "bad \xff\xfe utf8 \xc0\xaf", "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd\xef\xbf\xbd" },
                { "caf\xc3\xa9 \xe2\x9c\x93", "caf\xc3\xa9 \xe2\x9c\x93" },
                { "", "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *got = render_with(notify_format_mrkdwn, cases[i].in, 0);

                ASSERT_STREQ(got, cases[i].out);
        }
}

TEST(bounds) {
        _cleanup_free_ char *lt = big(10240, '<'), *e = big(10240, 'e'), *uni = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *j = NULL;
        size_t n;

        a = render_with(notify_format_mrkdwn, lt, 0);
        n = strlen(a);
        ASSERT_TRUE(n <= LIMIT_NOTIFY_FIELD_BYTES);
        ASSERT_TRUE(n >= LIMIT_NOTIFY_FIELD_BYTES - 8);
        ASSERT_TRUE(strcmp(a + n - 3, "\xe2\x80\xa6") == 0);
        ASSERT_TRUE(strncmp(a, "&lt;&lt;", 8) == 0);
        b = render_with(notify_format_text, e, 100);
        ASSERT_EQ(strlen(b), 100);
        /* a multi-byte string is cut between code points */
        uni = malloc(3 * 4000 + 1);
        ASSERT_NOT_NULL(uni);
        for (size_t i = 0; i < 4000; i++)
                memcpy(uni + 3 * i, "\xe2\x9c\x93", 3);
        uni[3 * 4000] = 0;
        c = render_with(notify_format_text, uni, 101);
        ASSERT_EQ(strlen(c), 99 + 0); /* 32 checkmarks (96 bytes) + the ellipsis */
        /* JSON: the escaped form is what is bounded */
        {
                _cleanup_free_ char *ctl = big(10240, '\x01');
                json_object *o;

                j = render_with(notify_format_json, ctl, 0);
                ASSERT_TRUE(strlen(j) <= LIMIT_NOTIFY_FIELD_BYTES + 2);
                o = json_tokener_parse(j);
                ASSERT_NOT_NULL(o);
                ASSERT_TRUE(json_object_is_type(o, json_type_string));
                json_object_put(o);
        }
        {
                _cleanup_free_ char *q = render_with(notify_format_json, "say \"hi\"\n\\", 0);
                ASSERT_STREQ(q, "\"say \\\"hi\\\"\\n\\\\\"");
        }
}

/* Every line ends in CRLF and is at most 78 bytes; a line that does not
 * start with a space (continuation) starts one of the headers we write:
 * data never makes a header of its own. */
static void check_header_lines(const char *h) {
        static const char *const names[] = { "From: ", "To: ", "Subject: ", "Date: ", "Message-ID: ",
                                             "X-Remedyd-Delivery: ", "Auto-Submitted: ", "MIME-Version: ",
                                             "Content-Type: ", "Content-Transfer-Encoding: " };
        const char *p = h;

        while (*p) {
                const char *eol = strstr(p, "\r\n");

                ASSERT_NOT_NULL(eol);
                ASSERT_TRUE(eol - p <= 78);
                ASSERT_NULL(memchr(p, '\n', (size_t) (eol - p)));
                ASSERT_NULL(memchr(p, '\r', (size_t) (eol - p)));
                if (*p != ' ') {
                        bool known = false;

                        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                                known |= str_startswith(p, names[i]);
                        ASSERT_TRUE(known);
                }
                p = eol + 2;
        }
}

TEST(header) {
        StrBuf b;
        _cleanup_free_ char *long_subject = big(5000, 'x');

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        ASSERT_OK(notify_format_header(&b, "Subject", "Suspended alice@example.com"));
        ASSERT_STREQ(b.data, "Subject: Suspended alice@example.com\r\n");
        strbuf_reset(&b);
        ASSERT_OK(notify_format_header(&b, "Subject", "x\r\nBcc: evil@example.com\r\n\r\nbody"));
        ASSERT_STREQ(b.data, "Subject: x  Bcc: evil@example.com    body\r\n");
        strbuf_reset(&b);
        ASSERT_OK(notify_format_header(&b, "Subject", "Gesperrt: J\xc3\xbcrgen M\xc3\xbcller \xe2\x9c\x93"));
        ASSERT_STREQ(b.data, "Subject: =?UTF-8?B?R2VzcGVycnQ6IErDvHJnZW4gTcO8bGxlciDinJM=?=\r\n");
        check_header_lines(b.data);
        strbuf_reset(&b);
        ASSERT_OK(notify_format_header(&b, "Subject", long_subject));
        check_header_lines(b.data);
        ASSERT_TRUE(b.len < 4 * LIMIT_NOTIFY_FIELD_BYTES);
        strbuf_reset(&b);
        /* "=?" would be decoded by a reader: encoded instead */
        ASSERT_OK(notify_format_header(&b, "Subject", "=?UTF-8?B?QmNjOiBldmls?="));
        ASSERT_TRUE(str_startswith(b.data, "Subject: =?UTF-8?B?PT9VVEYtOD9CP1FtTmpPaUJsZG1scz89?="));
        strbuf_reset(&b);
        ASSERT_ERR(notify_format_header(&b, "Bad Name", "x"), EINVAL);
        ASSERT_ERR(notify_format_header(&b, "X\r\nY", "x"), EINVAL);
        strbuf_free(&b);
}

TEST(qp) {
        StrBuf b;
        _cleanup_free_ char *l = big(300, 'a');

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        ASSERT_OK(notify_format_qp(&b, "a=b \xc3\xa9 end \n.x\n", strlen("a=b \xc3\xa9 end \n.x\n")));
        ASSERT_STREQ(b.data, "a=3Db =C3=A9 end=20\r\n.x\r\n");
        strbuf_reset(&b);
        ASSERT_OK(notify_format_qp(&b, l, strlen(l)));
        for (const char *p = b.data; *p;) {
                const char *eol = strstr(p, "\r\n");
                size_t n = eol ? (size_t) (eol - p) : strlen(p);

                ASSERT_TRUE(n <= 76);
                p += n + (eol ? 2 : 0);
        }
        strbuf_free(&b);
}

static void sample(StoreNotification *n, ActionStatus outcome, char *user, char *reason) {
        *n = (StoreNotification) {
                .id = "0123456789abcdef0123456789abcdef",
                .sink = (char *) "soc-chat",
                .outcome = outcome,
                .state = NOTIFY_STATE_PENDING,
                .attempts = 1,
                .created_usec = 1796000000ULL * USEC_PER_SEC,
                .event_source = (char *) "splunk",
                .event_received_usec = 1796000000ULL * USEC_PER_SEC - 1000,
                .instance = (char *) "web-1",
                .action = {
                        .id = "fedcba9876543210fedcba9876543210",
                        .rule = (char *) "splunk-impossible-travel",
                        .action = ACTION_SUSPEND,
                        .user = user,
                        .user_id = (char *) "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                        .reason = reason,
                        .status = outcome,
                        .event_id = (char *) "11112222333344445555666677778888",
                },
        };
}

static json_object *parse_all(const StrBuf *b) {
        json_object *o = json_tokener_parse(b->data);

        ASSERT_NOT_NULL(o);
        return o;
}

static const char *get_str(json_object *o, const char *path) {
        char buf[128], *save = NULL;

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
                json_object *v;

                if (!json_object_object_get_ex(o, k, &v))
                        return NULL;
                o = v;
        }
        return o && !json_object_is_type(o, json_type_null) ? json_object_get_string(o) : NULL;
}

TEST(slack) {
        static const char *const held_text[] = {
                "*Held (over the suspension cap): suspend of alice@example.com waits for a release (rule "
                "splunk-impossible-travel)*",
                "*Reason:* Splunk: Impossible travel",
                "*Rule:* splunk-impossible-travel",
                "`remedyctl release fedcba9876543210fedcba9876543210`",
        };
        /* Slack link, mention and Markdown link syntax: escaped, never live */
        static const char *const never[] = { "<https://", "<!", "@channel", "](b)" };
        StoreNotification n;
        StrBuf b;
        json_object *o, *blocks;

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        sample(&n, ACTION_STATUS_HELD, "alice@example.com", "Splunk: Impossible travel");
        ASSERT_OK(notify_format_slack(&b, &n));
        o = parse_all(&b);
        for (size_t i = 0; i < ELEMENTSOF(held_text); i++)
                ASSERT_CONTAINS(get_str(o, "text"), held_text[i]);
        ASSERT_TRUE(json_object_object_get_ex(o, "blocks", &blocks));
        ASSERT_TRUE(json_object_array_length(blocks) >= 2);
        json_object_put(o);

        /* hostile: every field 10 KiB of link syntax and newlines */
        {
                _cleanup_free_ char *evil = NULL;
                StrBuf e;

                strbuf_init(&e, 20000);
                while (e.len < 10240)
                        ASSERT_OK(strbuf_puts(&e, "<https://evil.example|x>\n@channel [a](b) & \"\\"));
                evil = strbuf_steal(&e);
                sample(&n, ACTION_STATUS_FAILED, evil, evil);
                n.action.api_code = evil;
                n.action.api_message = evil;
                n.action.detail = evil;
                n.instance = evil;
                n.event_source = evil;
                strbuf_reset(&b);
                ASSERT_OK(notify_format_slack(&b, &n));
                ASSERT_TRUE(b.len <= LIMIT_NOTIFY_MESSAGE_BYTES);
                o = parse_all(&b);
                for (size_t i = 0; i < ELEMENTSOF(never); i++)
                        ASSERT_NULL(strstr(get_str(o, "text"), never[i]));
                ASSERT_TRUE(json_object_object_get_ex(o, "blocks", &blocks));
                for (size_t i = 0; i < json_object_array_length(blocks); i++) {
                        json_object *blk = json_object_array_get_idx(blocks, i);
                        const char *t = get_str(blk, "text.text");

                        ASSERT_TRUE(!t || strlen(t) <= 3000);
                }
                json_object_put(o);

                strbuf_reset(&b);
                ASSERT_OK(notify_format_webhook(&b, &n));
                ASSERT_TRUE(b.len <= LIMIT_NOTIFY_MESSAGE_BYTES);
                json_object_put(parse_all(&b));
                strbuf_reset(&b);
                ASSERT_OK(notify_format_email(&b, &n, &(NotifyMailParams) {
                                                             .from = "remedyd@example.com",
                                                             .to = (char *[]) { (char *) "soc@example.com", NULL },
                                                     }));
                ASSERT_TRUE(b.len <= LIMIT_NOTIFY_MESSAGE_BYTES);
        }
        strbuf_free(&b);
}

TEST(webhook) {
        static const struct {
                const char *path, *value;
        } fields[] = {
                { "delivery", "0123456789abcdef0123456789abcdef" },
                { "action.id", "fedcba9876543210fedcba9876543210" },
                { "action.rule", "splunk-impossible-travel" },
                { "action.action", "suspend" },
                { "action.user", "bob@example.com" },
                { "action.status", "failed" },
                { "action.outcome", "failed" },
                { "action.api_code", "no_owner_remain" },
                { "action.api_message", "the last owner cannot be suspended" },
                { "action.instance", "web-1" },
                { "event.id", "11112222333344445555666677778888" },
                { "event.source", "splunk" },
                { "event.received_at", "2026-11-30T00:53:19Z" },
        };
        StoreNotification n;
        StrBuf b;
        json_object *o, *v;

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        sample(&n, ACTION_STATUS_FAILED, "bob@example.com", "r");
        n.action.api_code = (char *) "no_owner_remain";
        n.action.api_message = (char *) "the last owner cannot be suspended";
        ASSERT_OK(notify_format_webhook(&b, &n));
        o = parse_all(&b);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                ASSERT_STREQ(get_str(o, fields[i].path), fields[i].value);
        json_object_put(o);

        /* a manual action has no event */
        n.event_source = NULL;
        n.action.event_id = NULL;
        n.action.rule = (char *) "manual";
        strbuf_reset(&b);
        ASSERT_OK(notify_format_webhook(&b, &n));
        o = parse_all(&b);
        ASSERT_TRUE(json_object_object_get_ex(o, "event", &v));
        ASSERT_NULL(get_str(o, "event.id"));
        ASSERT_NULL(get_str(o, "event.received_at"));
        json_object_put(o);
        strbuf_free(&b);
}

TEST(email) {
        StoreNotification n;
        StrBuf b;
        const char *body;
        char *to[] = { (char *) "soc@example.com", (char *) "oncall@example.com", NULL };

        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        sample(&n, ACTION_STATUS_DONE, "eve@example.com\r\nBcc: attacker@evil.example\r\n\r\nfake body", "why\r\n.\r\nQUIT");
        ASSERT_OK(notify_format_email(&b, &n, &(NotifyMailParams) {
                                                     .from = "remedyd@example.com",
                                                     .to = to,
                                                     .date_usec = 1796000000ULL * USEC_PER_SEC,
                                             }));
        body = strstr(b.data, "\r\n\r\n");
        ASSERT_NOT_NULL(body);
        {
                _cleanup_free_ char *head = strndup(b.data, (size_t) (body - b.data) + 2);

                check_header_lines(head);
                ASSERT_NULL(strstr(head, "\r\nBcc:"));
                ASSERT_CONTAINS(head, "From: remedyd <remedyd@example.com>\r\n");
                ASSERT_CONTAINS(head, "To: <soc@example.com>,\r\n <oncall@example.com>\r\n");
                ASSERT_CONTAINS(head, "Date: Mon, 30 Nov 2026 00:53:20 +0000\r\n");
                ASSERT_CONTAINS(head, "Message-ID: <0123456789abcdef0123456789abcdef@example.com>\r\n");
                ASSERT_CONTAINS(head, "X-Remedyd-Delivery: 0123456789abcdef0123456789abcdef\r\n");
                ASSERT_CONTAINS(head, "Content-Transfer-Encoding: quoted-printable\r\n");
        }
        /* the body: no bare LF, no line over 76, no line that is just "." */
        for (const char *p = body + 4; *p;) {
                const char *eol = strstr(p, "\r\n");
                size_t len = eol ? (size_t) (eol - p) : strlen(p);

                ASSERT_TRUE(len <= 76);
                ASSERT_NULL(memchr(p, '\n', len));
                ASSERT_FALSE(len == 1 && *p == '.');
                p += len + (eol ? 2 : 0);
        }
        ASSERT_CONTAINS(body, "Reason: why  .  QUIT");
        ASSERT_CONTAINS(body, "Suspended eve@example.com  Bcc: attacker@evil.example    fake body (rule sp=\r\n");
        ASSERT_ERR(notify_format_email(&b, &n, &(NotifyMailParams) { .from = "x@example.com" }), EINVAL);
        strbuf_free(&b);
}

TEST(speed) {
        StoreNotification n;
        StrBuf b;
        struct timespec t0, t1;
        const unsigned rounds = 20000;
        double us[3];
        char *to[] = { (char *) "soc@example.com", NULL };

        sample(&n, ACTION_STATUS_DONE, "alice@example.com", "Splunk Impossible travel: alice from 2 countries in 5 min");
        strbuf_init(&b, LIMIT_NOTIFY_MESSAGE_BYTES);
        for (int k = 0; k < 3; k++) {
                clock_gettime(CLOCK_MONOTONIC, &t0);
                for (unsigned i = 0; i < rounds; i++) {
                        strbuf_reset(&b);
                        if (k == 0)
                                ASSERT_OK(notify_format_slack(&b, &n));
                        else if (k == 1)
                                ASSERT_OK(notify_format_webhook(&b, &n));
                        else
                                ASSERT_OK(notify_format_email(&b, &n, &(NotifyMailParams) { .from = "r@example.com", .to = to }));
                }
                clock_gettime(CLOCK_MONOTONIC, &t1);
                us[k] = ((double) (t1.tv_sec - t0.tv_sec) * 1e6 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e3) / rounds;
        }
        fprintf(stderr, "render: slack %.2f us, webhook %.2f us, email %.2f us per message\n", us[0], us[1], us[2]);
        strbuf_free(&b);
}

int main(void) {
        RUN(mrkdwn);
        RUN(bounds);
        RUN(header);
        RUN(qp);
        RUN(slack);
        RUN(webhook);
        RUN(email);
        RUN(speed);
        HARNESS_DONE();
}
