/* UTF-8 validation (include/utf8.h). Calls nothing. */
#include <stdint.h>
#include <string.h>

#include "utf8.h"

#define HIGH_BITS UINT64_C(0x8080808080808080)

size_t utf8_valid_prefix(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < n) {
                unsigned char c = p[i], lo = 0x80, hi = 0xbf;
                size_t len;

                if (c < 0x80) {
                        /* Webhook bodies are mostly ASCII: skip it a word
                         * at a time (memcpy: no alignment assumed). */
                        for (; n - i >= 16; i += 16) {
                                uint64_t w[2];

                                memcpy(w, p + i, sizeof(w));
                                if ((w[0] | w[1]) & HIGH_BITS)
                                        break;
                        }
                        for (; n - i >= 8; i += 8) {
                                uint64_t w;

                                memcpy(&w, p + i, sizeof(w));
                                if (w & HIGH_BITS)
                                        break;
                        }
                        while (i < n && p[i] < 0x80)
                                i++;
                        continue;
                }

                /* The first continuation byte narrows for the lead bytes
                 * that could spell an overlong form, a surrogate or a code
                 * point past U+10FFFF; the others are always 80..BF. */
                if (c >= 0xc2 && c <= 0xdf)
                        len = 2;
                else if (c >= 0xe0 && c <= 0xef) {
                        len = 3;
                        if (c == 0xe0)
                                lo = 0xa0;
                        else if (c == 0xed)
                                hi = 0x9f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        len = 4;
                        if (c == 0xf0)
                                lo = 0x90;
                        else if (c == 0xf4)
                                hi = 0x8f;
                } else
                        return i; /* 80..C1 (continuation, overlong lead), F5..FF */

                if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
                        return i;
                if (len > 2 && (p[i + 2] & 0xc0) != 0x80)
                        return i;
                if (len > 3 && (p[i + 3] & 0xc0) != 0x80)
                        return i;
                i += len;
        }
        return n;
}

bool utf8_is_valid(const char *s, size_t n) {
        return utf8_valid_prefix(s, n) == n;
}
