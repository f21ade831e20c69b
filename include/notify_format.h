/* Rendering notifications (interface.md section 9): pure functions from a
 * StoreNotification to the bytes a sink sends. No I/O, no logging, no
 * allocation beyond the StrBuf they append to.
 *
 * Every value that comes from an alert or the API (user, rule, reason,
 * api_code, api_message, detail, source, instance) is escaped for its
 * medium and bounded: its rendered form takes at most LIMIT_NOTIFY_FIELD_BYTES
 * bytes (cut at a UTF-8 boundary, then "…"); invalid UTF-8 becomes U+FFFD.
 * A whole message is bounded by the StrBuf's maximum, which callers set to
 * LIMIT_NOTIFY_MESSAGE_BYTES (the worst case, every field at its bound and
 * every byte escaped, stays below it).
 *
 *   Slack mrkdwn: & < > as &amp; &lt; &gt; (so no <link|text>, <!here> or
 *       <@U…> from data), "@" before a word gets U+2060 (no @channel/@all
 *       mentions on Mattermost and Rocket.Chat), "](" is split by U+200B
 *       (no Markdown links), control characters become spaces (no fake lines).
 *   JSON: the strbuf JSON string escaper, on the bounded value.
 *   Mail: headers never carry CR or LF from data; a non-ASCII or long value
 *       becomes RFC 2047 B encoded-words folded under 78 columns; the body is
 *       quoted-printable UTF-8 text (lines under 77 bytes). Dot-stuffing is
 *       libcurl's (its SMTP upload escapes a line-leading "."). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "remedyd-forward.h"

typedef struct StoreNotification StoreNotification;

/* Escapers: append the bounded, escaped form of s (NULL appends nothing) to
 * b; max bounds the appended bytes (0 = LIMIT_NOTIFY_FIELD_BYTES). Return 0,
 * -E2BIG past b's maximum, -ENOMEM. */
int notify_format_mrkdwn(StrBuf *b, const char *s, size_t max);
/* Plain text: control characters become spaces. */
int notify_format_text(StrBuf *b, const char *s, size_t max);
/* A quoted JSON string (null for NULL); max bounds the escaped contents. */
int notify_format_json(StrBuf *b, const char *s, size_t max);
/* "Name: value\r\n": value (control characters as spaces) as is when it is
 * printable ASCII and short, else as folded RFC 2047 encoded-words. name
 * must be a header field name (checked: -EINVAL). */
int notify_format_header(StrBuf *b, const char *name, const char *value);
/* Quoted-printable (RFC 2045) of the n bytes at s, lines ending in CRLF:
 * LF in s starts a new line, other control bytes are encoded. */
int notify_format_qp(StrBuf *b, const char *s, size_t n);

/* The one-line summary a person reads first, e.g. "Suspended alice@example.com
 * (rule splunk-impossible-travel)" (plain text, bounded, no newline). */
int notify_format_headline(StrBuf *b, const StoreNotification *n);

/* The slack sink's body: {"text": mrkdwn, "blocks": [...]}: who, which rule,
 * why, the outcome, the API's answer on failure and for held the exact
 * "remedyctl release ID" line. The same "text" is what Mattermost and
 * Rocket.Chat show. */
int notify_format_slack(StrBuf *b, const StoreNotification *n);
/* The webhook sink's body (section 9): {"delivery", "action": {id, rule,
 * action, user, user_id, status, outcome, reason, api_code, api_message,
 * instance, time}, "event": {id, source, received_at}} (event values null
 * for a manual action). */
int notify_format_webhook(StrBuf *b, const StoreNotification *n);

typedef struct NotifyMailParams {
        const char *from;               /* addr-spec, checked by the config */
        char *const *to;                /* NULL-terminated addr-specs */
        uint64_t date_usec;             /* CLOCK_REALTIME for the Date: header */
} NotifyMailParams;

/* The whole RFC 5322 message (headers, blank line, quoted-printable body),
 * CRLF line ends: From, To, Subject (the headline), Date, Message-ID
 * <DELIVERY@domain of from>, X-Remedyd-Delivery, MIME headers. -EINVAL if
 * from or to is missing. */
int notify_format_email(StrBuf *b, const StoreNotification *n, const NotifyMailParams *p);
