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
