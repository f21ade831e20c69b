/* A growable string with an explicit maximum (curl's dynbuf). Appending past
 * the maximum fails with -E2BIG and leaves the contents as they were. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "remedyd-forward.h"

struct StrBuf {
        char *data; /* always NUL-terminated once anything was appended */
        size_t len;
        size_t cap;
        size_t max; /* bytes, excluding the NUL */
};

void strbuf_init(StrBuf *b, size_t max);
void strbuf_free(StrBuf *b);
void strbuf_reset(StrBuf *b);
int strbuf_append(StrBuf *b, const char *s, size_t n);
int strbuf_puts(StrBuf *b, const char *s);
int strbuf_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded: everything but RFC 3986's unreserved
 * characters becomes %XX (query strings, form bodies). -E2BIG as above. */
int strbuf_append_urlencoded(StrBuf *b, const char *s);
/* Appends s as a JSON string, quoted, with '"', '\\' and the control
 * characters escaped (RFC 8259, section 7), or null for NULL. s is taken
 * as UTF-8 and copied as it is. -E2BIG past the maximum (or -ENOMEM),
 * with part of the string appended. */
int strbuf_append_json_string(StrBuf *b, const char *s);
/* Takes the buffer out (caller frees with mem_free); returns "" copy when
 * empty, NULL on OOM. The StrBuf is reset. */
char *strbuf_steal(StrBuf *b);
