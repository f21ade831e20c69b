/* Logging: one line per message on stderr (text or JSON), or structured
 * journal entries when JOURNAL_STREAM says stderr is the journal.
 *
 * Every message is sanitised in one place before it is written: control
 * characters are escaped (so untrusted input cannot forge lines) and every
 * string registered with log_register_secret() is replaced by "[redacted]".
 * Register each secret as soon as it is read; callers never need to think
 * about redaction again. Thread-safe (the store thread logs too). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

typedef enum LogFormat {
        LOG_FORMAT_TEXT,
        LOG_FORMAT_JSON,
        LOG_FORMAT_JOURNAL,
        _LOG_FORMAT_MAX,
        _LOG_FORMAT_INVALID = -22,
} LogFormat;

/* Trace bits, switched on by REMEDYD_TRACE=rules,oauth,http,store or
 * log_set_trace(). Trace lines are logged at LOG_DEBUG. */
enum {
        TRACE_RULES = 1u << 0,
        TRACE_OAUTH = 1u << 1,
        TRACE_HTTP = 1u << 2,
        TRACE_STORE = 1u << 3,
};

/* Structured context attached to a line: journal fields REMEDYD_EVENT_ID,
 * REMEDYD_RULE, REMEDYD_ACTION_ID, REMEDYD_USER; JSON keys event_id, rule,
 * action_id, user; text " key=value" suffixes. Any member may be NULL. */
typedef struct LogContext {
        const char *event_id;
        const char *rule;
        const char *action_id;
        const char *user;
} LogContext;

/* Chooses the sink. LOG_FORMAT_TEXT is upgraded to LOG_FORMAT_JOURNAL when
 * stderr is the journal (JOURNAL_STREAM matches stderr's dev:inode) unless
 * the format was asked for explicitly (explicit=true). */
void log_setup(LogFormat format, bool explicit);
LogFormat log_format_from_string(const char *s);
void log_set_max_level(int level);
int log_get_max_level(void);
void log_set_trace(unsigned mask);
unsigned log_get_trace(void);
/* Parses "rules,oauth,http,store" (or "all"); returns -EINVAL on an
 * unknown word. */
int log_trace_from_string(const char *s, unsigned *ret);

/* Registers a secret to redact from every later line. Strings shorter
 * than 4 bytes are ignored (redacting them would mangle ordinary text).
 * The string is copied. Returns 0 or -ENOMEM. */
int log_register_secret(const char *secret);
/* The same for long-lived secrets (the configuration's): never evicted to
 * make room for newer short-lived ones such as access tokens. -ENOBUFS when
 * all 256 slots are pinned. */
int log_register_secret_pinned(const char *secret);
/* Forgets one secret (a replaced access token), overwriting the copy. */
void log_forget_secret(const char *secret);
void log_forget_secrets(void);

/* Writes one line. Returns -abs(error) if error != 0, else 0, so that
 * "return log_error_errno(r, ...)" works. */
int log_full(int level, int error, const LogContext *ctx, const char *format, ...)
        __attribute__((format(printf, 4, 5)));
int log_fullv(int level, int error, const LogContext *ctx, const char *format, va_list ap)
        __attribute__((format(printf, 4, 0)));

#define log_debug(...) log_full(LOG_DEBUG, 0, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, NULL, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full(LOG_DEBUG, (e), NULL, __VA_ARGS__)
#define log_info_errno(e, ...) log_full(LOG_INFO, (e), NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_WARNING, (e), NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e), NULL, __VA_ARGS__)
#define log_trace(bit, ...) \
        ((log_get_trace() & (bit)) ? log_full(LOG_DEBUG, 0, NULL, __VA_ARGS__) : 0)

/* Escapes control characters and non-UTF-8 bytes of s into a new string of
 * at most max bytes (truncated with "..."). Returns NULL on OOM. Use for
 * untrusted text that goes anywhere other than the log (the log escapes by
 * itself). */
char *log_escape(const char *s, size_t max);
