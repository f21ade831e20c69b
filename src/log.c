/* Logging to stderr or the journal (include/log.h), every message
 * sanitised here. Calls sd-journal and alloc. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "alloc.h"
#include "log.h"

#define LOG_LINE_MAX 8192
#define LOG_SECRETS_MAX 256

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static LogFormat log_format = LOG_FORMAT_TEXT;
static int log_max_level = LOG_INFO;
static unsigned log_trace_mask;
static char *secrets[LOG_SECRETS_MAX];
static bool pinned[LOG_SECRETS_MAX];
static size_t n_secrets;

static const char *const format_names[_LOG_FORMAT_MAX] = {
        [LOG_FORMAT_TEXT] = "text",
        [LOG_FORMAT_JSON] = "json",
        [LOG_FORMAT_JOURNAL] = "journal",
};

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
        [LOG_ERR] = "error",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

LogFormat log_format_from_string(const char *s) {
        for (int i = 0; i < _LOG_FORMAT_MAX; i++)
                if (s && strcmp(s, format_names[i]) == 0)
                        return (LogFormat) i;
        return _LOG_FORMAT_INVALID;
}

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(LogFormat format, bool explicit) {
        const char *t = getenv("REMEDYD_TRACE");
        unsigned mask;

        if (format < 0 || format >= _LOG_FORMAT_MAX)
                format = LOG_FORMAT_TEXT;
        if (!explicit && format == LOG_FORMAT_TEXT && stderr_is_journal())
                format = LOG_FORMAT_JOURNAL;
        log_format = format;
        if (t && log_trace_from_string(t, &mask) >= 0)
                log_trace_mask |= mask;
}

void log_set_max_level(int level) {
        log_max_level = level < LOG_EMERG ? LOG_EMERG : level > LOG_DEBUG ? LOG_DEBUG : level;
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_set_trace(unsigned mask) {
        log_trace_mask = mask;
}

unsigned log_get_trace(void) {
        return log_trace_mask;
}

int log_trace_from_string(const char *s, unsigned *ret) {
        static const struct {
                const char *name;
                unsigned bit;
        } table[] = {
                { "rules", TRACE_RULES }, { "oauth", TRACE_OAUTH },
                { "http", TRACE_HTTP },   { "store", TRACE_STORE },
                { "all", ~0u },
        };
        unsigned mask = 0;

        while (s && *s) {
                size_t l = strcspn(s, ", ");
                bool found = false;

                for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                        if (l == strlen(table[i].name) && strncmp(s, table[i].name, l) == 0) {
                                mask |= table[i].bit;
                                found = true;
                        }
                if (l > 0 && !found)
                        return -EINVAL;
                s += l;
                s += strspn(s, ", ");
        }
        *ret = mask;
        return 0;
}

static void forget_at(size_t i) {
        explicit_bzero(secrets[i], strlen(secrets[i]));
        mem_free(secrets[i]);
        memmove(secrets + i, secrets + i + 1, (n_secrets - i - 1) * sizeof(char *));
        memmove(pinned + i, pinned + i + 1, (n_secrets - i - 1) * sizeof(bool));
        n_secrets--;
}

static int register_secret(const char *secret, bool pin) {
        int r = 0;

        if (!secret || strlen(secret) < 4)
                return 0;
        pthread_mutex_lock(&log_lock);
        for (size_t i = 0; i < n_secrets; i++)
                if (strcmp(secrets[i], secret) == 0) {
                        pinned[i] = pinned[i] || pin;
                        goto out;
                }
        if (n_secrets >= LOG_SECRETS_MAX) {
                /* Forget the oldest short-lived one (an old token); pinned
                 * secrets from the configuration stay. */
                size_t i = 0;

                while (i < n_secrets && pinned[i])
                        i++;
                if (i == n_secrets) {
                        r = -ENOBUFS;
                        goto out;
                }
                forget_at(i);
        }
        secrets[n_secrets] = mem_strdup(secret);
        if (!secrets[n_secrets])
                r = -ENOMEM;
        else
                pinned[n_secrets++] = pin;
out:
        pthread_mutex_unlock(&log_lock);
        return r;
}

int log_register_secret(const char *secret) {
        return register_secret(secret, false);
}

int log_register_secret_pinned(const char *secret) {
        return register_secret(secret, true);
}

void log_forget_secret(const char *secret) {
        if (!secret)
                return;
        pthread_mutex_lock(&log_lock);
        for (size_t i = 0; i < n_secrets; i++)
                if (strcmp(secrets[i], secret) == 0) {
                        forget_at(i);
                        break;
                }
        pthread_mutex_unlock(&log_lock);
}

void log_forget_secrets(void) {
        pthread_mutex_lock(&log_lock);
        while (n_secrets > 0)
                forget_at(n_secrets - 1);
        pthread_mutex_unlock(&log_lock);
}

/* Replaces registered secrets in buf in place (the replacement is never
 * longer than a secret of >= 4 bytes... it may be, so work on a copy). */
static void redact(char *buf, size_t size) {
        static const char mark[] = "[redacted]";

        for (size_t i = 0; i < n_secrets; i++) {
                const char *s = secrets[i];
                size_t sl = strlen(s);
                char *p;

                while ((p = strstr(buf, s))) {
                        size_t tail = strlen(p + sl);
                        size_t ml = sizeof(mark) - 1;
                        size_t used = (size_t) (p - buf);

                        if (used + ml + tail + 1 > size)
                                tail = size > used + ml + 1 ? size - used - ml - 1 : 0;
                        if (used + ml + 1 > size) {
                                *p = 0;
                                break;
                        }
                        memmove(p + ml, p + sl, tail);
                        memcpy(p, mark, ml);
                        p[ml + tail] = 0;
                }
        }
}

/* Escapes control bytes and invalid UTF-8; stops at max output bytes. */
static size_t escape_into(const char *s, char *out, size_t max, bool json) {
        const unsigned char *p = (const unsigned char *) s;
        size_t o = 0;

        while (*p && o + 8 < max) {
                unsigned c = *p;
                size_t seq = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
                bool valid = seq > 0;

                for (size_t k = 1; valid && k < seq; k++)
                        if ((p[k] & 0xC0) != 0x80)
                                valid = false;
                if (valid && seq > 1) {
                        memcpy(out + o, p, seq);
                        o += seq;
                        p += seq;
                        continue;
                }
                if (c >= 0x20 && c < 0x7f && !(json && (c == '"' || c == '\\'))) {
                        out[o++] = (char) c;
                } else if (json && (c == '"' || c == '\\')) {
                        out[o++] = '\\';
                        out[o++] = (char) c;
                } else if (c == '\n') {
                        memcpy(out + o, "\\n", 2);
                        o += 2;
                } else if (c == '\t') {
                        memcpy(out + o, "\\t", 2);
                        o += 2;
                } else {
                        o += (size_t) snprintf(out + o, max - o, json ? "\\u%04x" : "\\x%02x", c);
                }
                p++;
        }
        if (*p && o + 4 <= max) {
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = 0;
        return o;
}

char *log_escape(const char *s, size_t max) {
        char *out;

        if (max < 16)
                max = 16;
        out = mem_malloc(max + 1);
        if (!out)
                return NULL;
        escape_into(s ? s : "", out, max, false);
        return out;
}

static void write_text(int level, const char *msg, const LogContext *ctx) {
        char line[LOG_LINE_MAX + 512];
        size_t o;

        o = (size_t) snprintf(line, sizeof(line), "<%d>%s", level, msg);
        if (ctx) {
                const char *keys[] = { "event", "rule", "action", "user" };
                const char *vals[] = { ctx->event_id, ctx->rule, ctx->action_id, ctx->user };
                for (size_t i = 0; i < 4 && o < sizeof(line) - 1; i++)
                        if (vals[i]) {
                                char esc[256];
                                escape_into(vals[i], esc, sizeof(esc), false);
                                o += (size_t) snprintf(line + o, sizeof(line) - o, " %s=%s", keys[i], esc);
                        }
        }
        if (o >= sizeof(line) - 1)
                o = sizeof(line) - 2;
        line[o++] = '\n';
        (void) !write(STDERR_FILENO, line, o);
}

static void write_json(int level, const char *msg, const LogContext *ctx) {
        char line[LOG_LINE_MAX * 2 + 1024], esc[LOG_LINE_MAX * 2];
        struct timespec ts;
        struct tm tm;
        size_t o;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        escape_into(msg, esc, sizeof(esc), true);
        o = (size_t) snprintf(line, sizeof(line),
                              "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], esc);
        if (ctx) {
                const char *keys[] = { "event_id", "rule", "action_id", "user" };
                const char *vals[] = { ctx->event_id, ctx->rule, ctx->action_id, ctx->user };
                for (size_t i = 0; i < 4 && o < sizeof(line) - 1; i++)
                        if (vals[i]) {
                                char v[512];
                                escape_into(vals[i], v, sizeof(v), true);
                                o += (size_t) snprintf(line + o, sizeof(line) - o, ",\"%s\":\"%s\"", keys[i], v);
                        }
        }
        if (o > sizeof(line) - 3)
                o = sizeof(line) - 3;
        line[o++] = '}';
        line[o++] = '\n';
        (void) !write(STDERR_FILENO, line, o);
}

static void write_journal(int level, const char *msg, const LogContext *ctx) {
        char f[4][600];
        const char *names[] = { "REMEDYD_EVENT_ID", "REMEDYD_RULE", "REMEDYD_ACTION_ID", "REMEDYD_USER" };
        const char *vals[] = { ctx ? ctx->event_id : NULL, ctx ? ctx->rule : NULL,
                               ctx ? ctx->action_id : NULL, ctx ? ctx->user : NULL };
        struct iovec iov[7];
        char m[LOG_LINE_MAX + 16], p[32];
        size_t n = 0;

        snprintf(m, sizeof(m), "MESSAGE=%s", msg);
        snprintf(p, sizeof(p), "PRIORITY=%d", level);
        iov[n++] = (struct iovec) { .iov_base = m, .iov_len = strlen(m) };
        iov[n++] = (struct iovec) { .iov_base = p, .iov_len = strlen(p) };
        iov[n++] = (struct iovec) { .iov_base = (char *) "SYSLOG_IDENTIFIER=remedyd", .iov_len = 25 };
        for (size_t i = 0; i < 4; i++)
                if (vals[i]) {
                        char esc[512];
                        escape_into(vals[i], esc, sizeof(esc), false);
                        snprintf(f[i], sizeof(f[i]), "%s=%s", names[i], esc);
                        iov[n++] = (struct iovec) { .iov_base = f[i], .iov_len = strlen(f[i]) };
                }
        if (sd_journal_sendv(iov, (int) n) < 0)
                write_text(level, msg, ctx);
}

int log_fullv(int level, int error, const LogContext *ctx, const char *format, va_list ap) {
        char raw[LOG_LINE_MAX], msg[LOG_LINE_MAX];
        int saved = errno;

        if (error < 0)
                error = -error;
        if (level > log_max_level)
                return -error;

        if (error)
                errno = error; /* for %m */
        vsnprintf(raw, sizeof(raw), format, ap);

        pthread_mutex_lock(&log_lock);
        redact(raw, sizeof(raw));
        pthread_mutex_unlock(&log_lock);
        escape_into(raw, msg, sizeof(msg), false);

        switch (log_format) {
        case LOG_FORMAT_JSON:
                write_json(level, msg, ctx);
                break;
        case LOG_FORMAT_JOURNAL:
                write_journal(level, msg, ctx);
                break;
        default:
                write_text(level, msg, ctx);
        }
        errno = saved;
        return -error;
}

int log_full(int level, int error, const LogContext *ctx, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_fullv(level, error, ctx, format, ap);
        va_end(ap);
        return r;
}
