/* Small helpers shared by every module: durations, files with a size limit,
 * secrets, time, strings. All fallible functions return 0 or a negative
 * errno and set ret_* only on success. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL
#define USEC_INFINITY UINT64_MAX

/* Parses "500ms", "30s", "10m", "4h", "7d" and sums like "1h30m". A bare
 * number is refused (ambiguous). -EINVAL on syntax, -ERANGE on overflow. */
int parse_duration(const char *s, uint64_t *ret_usec);
/* Formats usec as the shortest exact duration string ("90s" -> "1m30s"). */
void format_duration(uint64_t usec, char *buf, size_t size);

/* CLOCK_REALTIME / CLOCK_MONOTONIC in microseconds. */
uint64_t now_usec(clockid_t clock);
/* RFC 3339 UTC with seconds ("2026-11-27T02:22:05Z"); buf >= 32 bytes. */
void format_rfc3339(uint64_t realtime_usec, char *buf, size_t size);

/* Reads a whole regular file (-EISDIR for a directory, -EINVAL for any
 * other kind: FIFOs, devices); fails with -E2BIG if it is larger than max bytes.
 * The result is NUL-terminated (size excludes the NUL); caller frees. */
int read_file_limited(const char *path, size_t max, char **ret, size_t *ret_size);
/* The same from an open fd of any kind (a pipe on stdin), to EOF. */
int read_fd_limited(int fd, size_t max, char **ret, size_t *ret_size);

/* Maps "credential:NAME" to "$CREDENTIALS_DIRECTORY/NAME" and returns any
 * other path as a copy. -ENXIO if CREDENTIALS_DIRECTORY is unset, -EINVAL
 * if NAME is empty or holds '/'. Caller frees. */
int secret_path_resolve(const char *spec, char **ret_path);
/* Reads a secret file: one secret per non-empty line, surrounding
 * whitespace trimmed, at most LIMIT_SECRETS_PER_FILE lines and
 * LIMIT_SECRET_FILE_BYTES bytes. Every secret is registered with the log
 * for redaction. -ENODATA if the file holds no secret. Caller frees with
 * strv_free_erase(). */
int secret_read(const char *spec, char ***ret_lines, size_t *ret_n);

/* NULL-terminated string vectors. */
void strv_free(char **v);
/* Overwrites each string before freeing it (secrets). */
void strv_free_erase(char **v);
size_t strv_length(char *const *v);
bool strv_contains(char *const *v, const char *s);

/* Constant-time equality for secrets: time depends only on the lengths. */
bool memeq_secret(const void *a, size_t alen, const void *b, size_t blen);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly 2n hex digits (either case); -EINVAL otherwise. */
int hex_decode(const char *in, uint8_t *out, size_t n);

/* Trims ASCII whitespace in place; returns s. */
char *strstrip(char *s);
bool str_startswith(const char *s, const char *prefix);
/* ASCII lower-case copy; caller frees. NULL on OOM. */
char *str_tolower_dup(const char *s);
/* fnmatch(3)-style glob, case-insensitive (emails). */
bool glob_match_ci(const char *pattern, const char *s);
/* Levenshtein distance, capped at 255; for "did you mean". */
unsigned edit_distance(const char *a, const char *b);
/* A 1Password user id: exactly 26 characters [A-Z0-9]. */
bool is_user_id(const char *s);
/* Random 128-bit id as 32 lower-case hex chars plus NUL (33 bytes). */
int random_id(char out[static 33]);
