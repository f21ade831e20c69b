/* A growable string with a maximum (include/strbuf.h). Calls alloc only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "strbuf.h"

void strbuf_init(StrBuf *b, size_t max) {
        *b = (StrBuf) { .max = max };
}

void strbuf_free(StrBuf *b) {
        mem_free(b->data);
        strbuf_init(b, b->max);
}

void strbuf_reset(StrBuf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

static int grow(StrBuf *b, size_t need) {
        size_t cap;
        char *d;

        if (need > b->max)
                return -E2BIG;
        if (need + 1 <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 64;
        while (cap < need + 1)
                cap *= 2;
        if (cap > b->max + 1)
                cap = b->max + 1;
        d = mem_reallocarray(b->data, cap, 1);
        if (!d)
                return -ENOMEM;
        b->data = d;
        b->cap = cap;
        return 0;
}

int strbuf_append(StrBuf *b, const char *s, size_t n) {
        int r;

        if (n > b->max - b->len)
                return -E2BIG;
        r = grow(b, b->len + n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int strbuf_puts(StrBuf *b, const char *s) {
        return strbuf_append(b, s, strlen(s));
}

int strbuf_printf(StrBuf *b, const char *fmt, ...) {
        va_list ap;
        int k, r;

        va_start(ap, fmt);
        k = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -EINVAL;
        if ((size_t) k > b->max - b->len)
                return -E2BIG;
        r = grow(b, b->len + (size_t) k);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) k + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) k;
        return 0;
}

char *strbuf_steal(StrBuf *b) {
        char *d = b->data;

        if (!d)
                d = mem_strdup("");
        strbuf_init(b, b->max);
        return d;
}

int strbuf_append_urlencoded(StrBuf *b, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (; *s && r >= 0; s++) {
                unsigned char ch = (unsigned char) *s;

                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '.' || ch == '_' || ch == '~')
                        r = strbuf_append(b, (const char *) &ch, 1);
                else {
                        char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };
                        r = strbuf_append(b, e, 3);
                }
        }
        return r;
}

int strbuf_append_json_string(StrBuf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const char *run;
        int r;

        if (!s)
                return strbuf_append(b, "null", 4);
        r = strbuf_append(b, "\"", 1);
        for (run = s; r >= 0 && *s; s++) {
                unsigned char ch = (unsigned char) *s;
                char e[6] = { '\\', 0 };
                size_t n = 2;

                if (ch >= 0x20 && ch != '"' && ch != '\\')
                        continue;
                r = strbuf_append(b, run, (size_t) (s - run));
                run = s + 1;
                switch (ch) {
                case '"': e[1] = '"'; break;
                case '\\': e[1] = '\\'; break;
                case '\b': e[1] = 'b'; break;
                case '\f': e[1] = 'f'; break;
                case '\n': e[1] = 'n'; break;
                case '\r': e[1] = 'r'; break;
                case '\t': e[1] = 't'; break;
                default:
                        memcpy(e + 1, "u00", 3);
                        e[4] = hex[ch >> 4];
                        e[5] = hex[ch & 15];
                        n = 6;
                }
                if (r >= 0)
                        r = strbuf_append(b, e, n);
        }
        if (r >= 0)
                r = strbuf_append(b, run, (size_t) (s - run));
        if (r >= 0)
                r = strbuf_append(b, "\"", 1);
        return r;
}
