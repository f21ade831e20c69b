/* UTF-8 validation of untrusted bytes (RFC 3629, Unicode table 3-7): a body
 * that is not UTF-8 is not JSON (RFC 8259 section 8.1), and json-c accepts
 * such bytes inside strings, so the listeners check before parsing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The length of the longest prefix of s[0..n) made of whole, well-formed
 * UTF-8 sequences: n when all of it is valid, else the offset of the first
 * byte of the first bad or truncated sequence. Refused: bare continuation
 * bytes, C0/C1 and other overlong forms, surrogates (U+D800..U+DFFF),
 * anything past U+10FFFF (F5..FF), and a sequence cut short by the end of
 * the input. A NUL byte is valid UTF-8. s may be NULL when n is 0. Pure,
 * no allocation; runs of ASCII are checked sixteen bytes at a time. */
size_t utf8_valid_prefix(const char *s, size_t n);

/* True if all of s[0..n) is well-formed UTF-8 (utf8_valid_prefix() == n). */
bool utf8_is_valid(const char *s, size_t n);
