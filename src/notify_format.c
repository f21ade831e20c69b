/* Rendering notifications: see include/notify_format.h. Every value goes
 * through render(), which walks it one UTF-8 code point at a time, maps each
 * to its escaped form for the medium and stops where the escaped form would
 * pass the field's bound. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "config.h"
#include "notify_format.h"
#include "remedyd-limits.h"
#include "store.h"
#include "strbuf.h"
#include "util.h"

#define ELLIPSIS "\xe2\x80\xa6"          /* U+2026 */
#define REPLACEMENT "\xef\xbf\xbd"       /* U+FFFD */
#define WORD_JOINER "\xe2\x81\xa0"       /* U+2060: breaks @mentions, invisible */
#define ZERO_WIDTH_SPACE "\xe2\x80\x8b"  /* U+200B: breaks ]( links */
/* Input bytes per RFC 2047 encoded-word: 39 bytes are 52 base64 characters,
 * a 64-character word, so "Subject: " plus one word stays under 78. */
#define ENCODED_WORD_INPUT 39u
#define HEADER_LINE_MAX 78u
#define QP_LINE_MAX 76u
/* Bodies of a Slack section block hold at most 3000 characters. */
#define SLACK_SECTION_MAX 3000u
#define SLACK_LINES_MAX 16u

typedef enum Medium {
        MEDIUM_MRKDWN,
        MEDIUM_TEXT,
        MEDIUM_JSON,    /* raw UTF-8 out, widths counted as the JSON escaper writes them */
} Medium;

/* Decodes the code point at s[*i] and advances *i; -1 for a byte that does
 * not start a valid, shortest-form UTF-8 sequence (one byte consumed). */
static int32_t utf8_next(const unsigned char *s, size_t *i) {
        unsigned char c = s[*i];
        int32_t cp, min;
        size_t n;

        if (c < 0x80) {
                (*i)++;
                return c;
        }
        if ((c & 0xe0) == 0xc0) {
                n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
                n = 4, cp = c & 0x07, min = 0x10000;
        } else {
                (*i)++;
                return -1;
        }
        for (size_t k = 1; k < n; k++) {
                if ((s[*i + k] & 0xc0) != 0x80) {
                        (*i)++;
                        return -1;
                }
                cp = (cp << 6) | (s[*i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                (*i)++;
                return -1;
        }
        *i += n;
        return cp;
}

static bool is_word(int32_t cp) {
        return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp == '_' ||
               cp >= 0x80;
}

/* The escaped form of one code point (src: its bytes) into out; returns its
 * length and sets *width to the bytes it takes in the final message. */
static size_t piece(Medium m, int32_t cp, int32_t prev, int32_t next, const unsigned char *src, size_t srclen,
                    char out[static 16], size_t *width) {
        size_t n;

        if (cp < 0) {
                memcpy(out, REPLACEMENT, 3);
                *width = 3;
                return 3;
        }
        if (m == MEDIUM_JSON) {
                memcpy(out, src, srclen);
                if (cp == '"' || cp == '\\' || cp == '\b' || cp == '\f' || cp == '\n' || cp == '\r' || cp == '\t')
                        *width = 2;
                else if (cp < 0x20)
                        *width = 6;
                else
                        *width = srclen;
                return srclen;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029) {
                out[0] = ' ';
                n = 1;
        } else if (m == MEDIUM_MRKDWN && cp == '&') {
                memcpy(out, "&amp;", n = 5);
        } else if (m == MEDIUM_MRKDWN && cp == '<') {
                memcpy(out, "&lt;", n = 4);
        } else if (m == MEDIUM_MRKDWN && cp == '>') {
                memcpy(out, "&gt;", n = 4);
        } else if (m == MEDIUM_MRKDWN && cp == '@' && !is_word(prev) && is_word(next)) {
                memcpy(out, "@" WORD_JOINER, n = 4);
        } else if (m == MEDIUM_MRKDWN && cp == '(' && prev == ']') {
                memcpy(out, ZERO_WIDTH_SPACE "(", n = 4);
        } else {
                memcpy(out, src, n = srclen);
        }
        *width = n;
        return n;
}

/* Walks s, appending pieces to out (NULL: only measure) while the widths fit
 * in limit. Returns the total width of what fits; *ret_cut tells whether
 * something was left out. */
static int walk(const char *s, Medium m, StrBuf *out, size_t limit, size_t *ret_width, bool *ret_cut) {
        const unsigned char *u = (const unsigned char *) s;
        size_t i = 0, used = 0;
        int32_t prev = 0, cp;
        int r;

        *ret_cut = false;
        if (u[0] == 0) {
                *ret_width = 0;
                return 0;
        }
        {
                size_t j = 0;
                cp = utf8_next(u, &j);
        }
        while (u[i]) {
                size_t start = i, j, len, width;
                int32_t next;
                char buf[16];

                (void) utf8_next(u, &i);
                j = i;
                next = u[j] ? utf8_next(u, &j) : 0;
                len = piece(m, cp, prev, next, u + start, i - start, buf, &width);
                if (used + width > limit) {
                        *ret_cut = true;
                        break;
                }
                if (out && (r = strbuf_append(out, buf, len)) < 0)
                        return r;
                used += width;
                prev = cp;
                cp = next;
        }
        *ret_width = used;
        return 0;
}

static int render(StrBuf *b, const char *s, size_t max, Medium m) {
        size_t width, limit;
        bool cut;
        int r;

        if (!s)
                return 0;
        if (max == 0)
                max = LIMIT_NOTIFY_FIELD_BYTES;
        if (max < sizeof(ELLIPSIS))
                return -EINVAL;
        r = walk(s, m, NULL, SIZE_MAX, &width, &cut);
        if (r < 0)
                return r;
        limit = width <= max ? SIZE_MAX : max - (sizeof(ELLIPSIS) - 1);
        r = walk(s, m, b, limit, &width, &cut);
        if (r >= 0 && cut)
                r = strbuf_puts(b, ELLIPSIS);
        return r;
}

int notify_format_mrkdwn(StrBuf *b, const char *s, size_t max) {
        return render(b, s, max, MEDIUM_MRKDWN);
}

int notify_format_text(StrBuf *b, const char *s, size_t max) {
        return render(b, s, max, MEDIUM_TEXT);
}

int notify_format_json(StrBuf *b, const char *s, size_t max) {
        _cleanup_(strbuf_free) StrBuf raw = {};
        int r;

        strbuf_init(&raw, (max ? max : LIMIT_NOTIFY_FIELD_BYTES) + 8);
        if (!s)
                return strbuf_puts(b, "null");
        r = render(&raw, s, max, MEDIUM_JSON);
        if (r >= 0)
                r = strbuf_append_json_string(b, raw.data ? raw.data : "");
        return r;
}

/* --- mail ----------------------------------------------------------------- */

static bool header_name_valid(const char *s) {
        return s && *s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s);
}

static int base64_append(StrBuf *b, const unsigned char *s, size_t n) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16;
                char o[4];

                if (i + 1 < n)
                        v |= (uint32_t) s[i + 1] << 8;
                if (i + 2 < n)
                        v |= s[i + 2];
                o[0] = tab[(v >> 18) & 63];
                o[1] = tab[(v >> 12) & 63];
                o[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
                o[3] = i + 2 < n ? tab[v & 63] : '=';
                r = strbuf_append(b, o, 4);
        }
        return r;
}

int notify_format_header(StrBuf *b, const char *name, const char *value) {
        _cleanup_(strbuf_free) StrBuf v = {};
        const unsigned char *u;
        bool plain = true;
        size_t i = 0;
        int r;

        if (!header_name_valid(name) || !value)
                return -EINVAL;
        strbuf_init(&v, LIMIT_NOTIFY_FIELD_BYTES);
        if ((r = render(&v, value, LIMIT_NOTIFY_FIELD_BYTES, MEDIUM_TEXT)) < 0)
                return r;
        u = (const unsigned char *) (v.data ? v.data : "");
        for (size_t k = 0; k < v.len; k++)
                if (u[k] < 0x20 || u[k] >= 0x7f)
                        plain = false;
        /* "=?" in a plain value would be taken for an encoded-word */
        if (plain && strlen(name) + 2 + v.len <= HEADER_LINE_MAX && !strstr((const char *) u, "=?"))
                return strbuf_printf(b, "%s: %s\r\n", name, (const char *) u);

        r = strbuf_printf(b, "%s:", name);
        while (r >= 0 && i < v.len) {
                size_t start = i, end = i;

                /* whole code points only: a word must decode on its own */
                while (end < v.len) {
                        size_t j = end;

                        (void) utf8_next(u, &j);
                        if (j - start > ENCODED_WORD_INPUT)
                                break;
                        end = j;
                }
                if (end == start)
                        end = start + 1;
                r = strbuf_puts(b, start == 0 ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
                if (r >= 0)
                        r = base64_append(b, u + start, end - start);
                if (r >= 0)
                        r = strbuf_puts(b, "?=");
                i = end;
        }
        if (r >= 0)
                r = strbuf_puts(b, v.len == 0 ? " \r\n" : "\r\n");
        return r;
}

int notify_format_qp(StrBuf *b, const char *s, size_t n) {
        static const char hex[] = "0123456789ABCDEF";
        size_t col = 0;
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                unsigned char c = (unsigned char) s[i];
                bool at_eol = i + 1 >= n || s[i + 1] == '\n';
                char e[3];
                size_t len;

                if (c == '\n') {
                        r = strbuf_puts(b, "\r\n");
                        col = 0;
                        continue;
                }
                if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
                        e[0] = (char) c;
                        len = 1;
                } else {
                        e[0] = '=';
                        e[1] = hex[c >> 4];
                        e[2] = hex[c & 15];
                        len = 3;
                }
                /* a soft break leaves room for its "=" */
                if (col + len > QP_LINE_MAX - 1 && !(at_eol && col + len <= QP_LINE_MAX)) {
                        r = strbuf_puts(b, "=\r\n");
                        col = 0;
                }
                if (r >= 0)
                        r = strbuf_append(b, e, len);
                col += len;
        }
        return r;
}

/* --- what a message says -------------------------------------------------- */

static const char *kind_of(const StoreNotification *n) {
        const char *k = config_action_kind_to_string(n->action.action);

        return k ? k : "act on";
}

/* What the headline says around the user, per outcome: lead, then the
 * action kind ("suspend") and kind_then when kind_then is set, the user,
 * after. DONE is worded per kind below. */
static const struct {
        const char *lead, *kind_then, *after;
} headline_table[_ACTION_STATUS_MAX] = {
        [ACTION_STATUS_QUEUED]         = { "Queued: ", " of ", "" },
        [ACTION_STATUS_HELD]           = { "Held (over the suspension cap): ", " of ", " waits for a release" },
        [ACTION_STATUS_DRY_RUN]        = { "Dry run: would ", " ", "" },
        [ACTION_STATUS_COOLDOWN]       = { "Cooldown: ", NULL, " was acted on recently, nothing done" },
        [ACTION_STATUS_PROTECTED]      = { "Protected user ", NULL, ": nothing done" },
        [ACTION_STATUS_UNKNOWN_USER]   = { "Unknown user ", NULL, ": nothing done" },
        [ACTION_STATUS_AMBIGUOUS_USER] = { "Ambiguous user ", NULL, ": nothing done" },
        [ACTION_STATUS_UNRESOLVED]     = { "Alert named no user ", NULL, ": nothing done" },
        [ACTION_STATUS_RUNNING]        = { "Running: ", " of ", "" },
        [ACTION_STATUS_FAILED]         = { "Could not ", " ", "" },
        [ACTION_STATUS_CANCELLED]      = { "Cancelled: ", " of ", "" },
};

/* The headline in medium m: "Suspended alice@example.com (rule r)". */
static int headline(StrBuf *b, const StoreNotification *n, Medium m) {
        const StoreAction *a = &n->action;
        const char *after = "";
        int r;

        if (n->outcome == ACTION_STATUS_DONE)
                r = strbuf_puts(b, a->action == ACTION_SUSPEND      ? "Suspended "
                                   : a->action == ACTION_REACTIVATE ? "Reactivated "
                                                                    : "Recorded alert about ");
        else if (n->outcome >= 0 && n->outcome < _ACTION_STATUS_MAX && headline_table[n->outcome].lead) {
                const char *then = headline_table[n->outcome].kind_then;

                r = then ? strbuf_printf(b, "%s%s%s", headline_table[n->outcome].lead, kind_of(n), then)
                         : strbuf_puts(b, headline_table[n->outcome].lead);
                after = headline_table[n->outcome].after;
        } else
                r = strbuf_printf(b, "%s: ", kind_of(n));
        if (r >= 0)
                r = render(b, a->user ? a->user : "(unresolved)", 256, m);
        if (r >= 0)
                r = strbuf_puts(b, after);
        if (r >= 0)
                r = strbuf_puts(b, " (rule ");
        if (r >= 0)
                r = render(b, a->rule ? a->rule : "manual", LIMIT_NAME_BYTES + 8, m);
        if (r >= 0)
                r = strbuf_puts(b, ")");
        return r;
}

int notify_format_headline(StrBuf *b, const StoreNotification *n) {
        return headline(b, n, MEDIUM_TEXT);
}

/* The lines of the message body, each "Label: value" in medium m (mrkdwn
 * labels in bold). lines[] get one StrBuf each (caller frees). */
typedef struct Lines {
        StrBuf v[SLACK_LINES_MAX];
        size_t n;
} Lines;

static void lines_done(Lines *l) {
        for (size_t i = 0; i < l->n; i++)
                strbuf_free(&l->v[i]);
}

static StrBuf *line_new(Lines *l) {
        StrBuf *b = &l->v[l->n++];

        strbuf_init(b, LIMIT_NOTIFY_FIELD_BYTES + 1024); /* label, value, " (value2)" */
        return b;
}

static int line_add(Lines *l, Medium m, const char *label, const char *value, const char *value2) {
        StrBuf *b;
        int r;

        if (!value || l->n >= SLACK_LINES_MAX)
                return 0;
        b = line_new(l);
        r = strbuf_printf(b, m == MEDIUM_MRKDWN ? "*%s:* " : "%s: ", label);
        if (r >= 0)
                r = render(b, value, 0, m);
        if (r >= 0 && value2) {
                r = strbuf_puts(b, " (");
                if (r >= 0)
                        r = render(b, value2, 512, m);
                if (r >= 0)
                        r = strbuf_puts(b, ")");
        }
        return r;
}

static int lines_build(Lines *l, const StoreNotification *n, Medium m) {
        const StoreAction *a = &n->action;
        char t[40], status[128];
        StrBuf *b;
        int r;

        b = line_new(l);
        if (m == MEDIUM_MRKDWN)
                r = strbuf_puts(b, "*");
        else
                r = 0;
        if (r >= 0)
                r = headline(b, n, m);
        if (r >= 0 && m == MEDIUM_MRKDWN)
                r = strbuf_puts(b, "*");
        if (r < 0)
                return r;

        snprintf(status, sizeof(status), "%s", store_action_status_to_string(n->outcome) ?: "?");
        if (a->status != n->outcome && store_action_status_to_string(a->status))
                snprintf(status + strlen(status), sizeof(status) - strlen(status), ", now %s",
                         store_action_status_to_string(a->status));
        if ((r = line_add(l, m, "User", a->user ? a->user : "(unresolved)", a->user_id)) < 0 ||
            (r = line_add(l, m, "Rule", a->rule ? a->rule : "manual", NULL)) < 0 ||
            (r = line_add(l, m, "Action", kind_of(n), NULL)) < 0 ||
            (r = line_add(l, m, "Outcome", status, NULL)) < 0 ||
            (r = line_add(l, m, "Reason", a->reason, NULL)) < 0 ||
            (r = line_add(l, m, "1Password", a->api_code, a->api_message)) < 0 ||
            (!a->api_code && (r = line_add(l, m, "1Password", a->api_message, NULL)) < 0) ||
            (r = line_add(l, m, "Detail", a->detail, NULL)) < 0 ||
            (r = line_add(l, m, "Event", a->event_id, n->event_source)) < 0)
                return r;
        if (n->event_received_usec) {
                format_rfc3339(n->event_received_usec, t, sizeof(t));
                if ((r = line_add(l, m, "Received", t, NULL)) < 0)
                        return r;
        }
        if ((r = line_add(l, m, "Action id", a->id, NULL)) < 0 ||
            (r = line_add(l, m, "Instance", n->instance, NULL)) < 0)
                return r;
        if (n->outcome == ACTION_STATUS_HELD && l->n < SLACK_LINES_MAX) {
                /* a->id is 32 hex digits from the store: nothing to escape */
                b = line_new(l);
                r = strbuf_printf(b, m == MEDIUM_MRKDWN ? "Release it with: `remedyctl release %s`"
                                                        : "Release it with: remedyctl release %s", a->id);
                if (r < 0)
                        return r;
        }
        return 0;
}

int notify_format_slack(StrBuf *b, const StoreNotification *n) {
        _cleanup_(lines_done) Lines l = {};
        _cleanup_(strbuf_free) StrBuf text = {}, section = {};
        int r;

        if (!n)
                return -EINVAL;
        strbuf_init(&text, LIMIT_NOTIFY_MESSAGE_BYTES);
        strbuf_init(&section, SLACK_SECTION_MAX);
        if ((r = lines_build(&l, n, MEDIUM_MRKDWN)) < 0)
                return r;
        for (size_t i = 0; i < l.n && r >= 0; i++) {
                r = strbuf_puts(&text, i ? "\n" : "");
                if (r >= 0)
                        r = strbuf_append(&text, l.v[i].data ? l.v[i].data : "", l.v[i].len);
        }
        if (r >= 0)
                r = strbuf_puts(b, "{\"text\":");
        if (r >= 0)
                r = strbuf_append_json_string(b, text.data ? text.data : "");
        if (r >= 0)
                r = strbuf_puts(b, ",\"blocks\":[");
        /* lines grouped into sections of at most SLACK_SECTION_MAX bytes */
        for (size_t i = 0; i < l.n && r >= 0; i++) {
                bool first = section.len == 0;

                if (!first && section.len + 1 + l.v[i].len > SLACK_SECTION_MAX) {
                        r = strbuf_puts(b, "{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":");
                        if (r >= 0)
                                r = strbuf_append_json_string(b, section.data);
                        if (r >= 0)
                                r = strbuf_puts(b, "}},");
                        strbuf_reset(&section);
                        first = true;
                }
                if (r >= 0 && !first)
                        r = strbuf_puts(&section, "\n");
                if (r >= 0)
                        r = strbuf_append(&section, l.v[i].data ? l.v[i].data : "", l.v[i].len);
        }
        if (r >= 0 && section.len > 0) {
                r = strbuf_puts(b, "{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":");
                if (r >= 0)
                        r = strbuf_append_json_string(b, section.data);
                if (r >= 0)
                        r = strbuf_puts(b, "}},");
        }
        if (r >= 0)
                r = strbuf_printf(b, "{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":"
                                     "\"remedyd delivery %s\"}]}]}", n->id);
        return r;
}

static int json_field(StrBuf *b, const char *key, const char *value, bool comma) {
        int r = strbuf_printf(b, "%s\"%s\":", comma ? "," : "", key);

        return r < 0 ? r : notify_format_json(b, value, 0);
}

static int json_time(StrBuf *b, const char *key, uint64_t usec) {
        char t[40];

        if (usec == 0)
                return strbuf_printf(b, ",\"%s\":null", key);
        format_rfc3339(usec, t, sizeof(t));
        return strbuf_printf(b, ",\"%s\":\"%s\"", key, t);
}

int notify_format_webhook(StrBuf *b, const StoreNotification *n) {
        const StoreAction *a;
        int r;

        if (!n)
                return -EINVAL;
        a = &n->action;
        if ((r = strbuf_printf(b, "{\"delivery\":\"%s\",\"action\":{", n->id)) < 0 ||
            (r = json_field(b, "id", a->id, false)) < 0 ||
            (r = json_field(b, "rule", a->rule ? a->rule : "manual", true)) < 0 ||
            (r = json_field(b, "action", config_action_kind_to_string(a->action), true)) < 0 ||
            (r = json_field(b, "user", a->user, true)) < 0 ||
            (r = json_field(b, "user_id", a->user_id, true)) < 0 ||
            (r = json_field(b, "status", store_action_status_to_string(a->status), true)) < 0 ||
            (r = json_field(b, "outcome", store_action_status_to_string(n->outcome), true)) < 0 ||
            (r = json_field(b, "reason", a->reason, true)) < 0 ||
            (r = json_field(b, "detail", a->detail, true)) < 0 ||
            (r = json_field(b, "api_code", a->api_code, true)) < 0 ||
            (r = json_field(b, "api_message", a->api_message, true)) < 0 ||
            (r = json_field(b, "instance", n->instance, true)) < 0 ||
            (r = json_time(b, "time", n->created_usec)) < 0 ||
            (r = strbuf_puts(b, "},\"event\":{")) < 0 ||
            (r = json_field(b, "id", a->event_id, false)) < 0 ||
            (r = json_field(b, "source", n->event_source, true)) < 0 ||
            (r = json_time(b, "received_at", n->event_source ? n->event_received_usec : 0)) < 0)
                return r;
        return strbuf_puts(b, "}}");
}

static void format_mail_date(uint64_t usec, char *buf, size_t size) {
        static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        gmtime_r(&t, &tm);
        snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int notify_format_email(StrBuf *b, const StoreNotification *n, const NotifyMailParams *p) {
        _cleanup_(lines_done) Lines l = {};
        _cleanup_(strbuf_free) StrBuf subject = {}, body = {};
        const char *domain;
        char date[64];
        int r;

        if (!n || !p || !p->from || !p->to || !p->to[0])
                return -EINVAL;
        domain = strrchr(p->from, '@');
        domain = domain && domain[1] ? domain + 1 : "remedyd.invalid";
        strbuf_init(&subject, LIMIT_NOTIFY_FIELD_BYTES);
        strbuf_init(&body, LIMIT_NOTIFY_MESSAGE_BYTES / 2);
        format_mail_date(p->date_usec, date, sizeof(date));

        if ((r = strbuf_puts(&subject, "remedyd: ")) < 0 || (r = headline(&subject, n, MEDIUM_TEXT)) < 0)
                return r;
        if ((r = strbuf_printf(b, "From: remedyd <%s>\r\nTo: ", p->from)) < 0)
                return r;
        for (size_t i = 0; p->to[i]; i++)
                if ((r = strbuf_printf(b, "%s<%s>", i ? ",\r\n " : "", p->to[i])) < 0)
                        return r;
        if ((r = strbuf_puts(b, "\r\n")) < 0 || (r = notify_format_header(b, "Subject", subject.data)) < 0 ||
            (r = strbuf_printf(b, "Date: %s\r\nMessage-ID: <%s@%s>\r\nX-Remedyd-Delivery: %s\r\n"
                                  "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
                                  "Content-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                               date, n->id, domain, n->id)) < 0)
                return r;

        if ((r = lines_build(&l, n, MEDIUM_TEXT)) < 0)
                return r;
        for (size_t i = 0; i < l.n && r >= 0; i++) {
                r = strbuf_append(&body, l.v[i].data ? l.v[i].data : "", l.v[i].len);
                if (r >= 0)
                        r = strbuf_puts(&body, i == 0 ? "\n\n" : "\n");
        }
        if (r >= 0)
                r = strbuf_printf(&body, "\n-- \nremedyd, delivery %s\n", n->id);
        if (r >= 0)
                r = notify_format_qp(b, body.data, body.len);
        return r;
}
