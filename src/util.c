/* The small shared helpers of include/util.h: durations, bounded file
 * reads, secrets, time, strings. Calls libc, libcrypto (cleansing) and
 * the foundation (alloc, log). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "cleanup.h"
#include "log.h"
#include "remedyd-limits.h"
#include "util.h"

int parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "ms", USEC_PER_MSEC },          { "s", USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },       { "h", 3600 * USEC_PER_SEC },
                { "d", 86400 * USEC_PER_SEC },    { "w", 7 * 86400 * USEC_PER_SEC },
        };
        uint64_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;
        while (*s == ' ')
                s++;
        while (*s) {
                uint64_t n = 0, mult = 0;
                size_t ul = 0;

                if (!isdigit((unsigned char) *s))
                        return -EINVAL;
                while (isdigit((unsigned char) *s)) {
                        if (n > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        n = n * 10 + (uint64_t) (*s++ - '0');
                }
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        size_t l = strlen(units[i].suffix);
                        if (strncmp(s, units[i].suffix, l) == 0 && l > ul &&
                            !(l == 1 && units[i].suffix[0] == 'm' && s[1] == 's')) {
                                mult = units[i].usec;
                                ul = l;
                        }
                }
                if (mult == 0)
                        return -EINVAL;
                s += ul;
                if (n > UINT64_MAX / mult || total > UINT64_MAX - n * mult)
                        return -ERANGE;
                total += n * mult;
                any = true;
                while (*s == ' ')
                        s++;
        }
        if (!any)
                return -EINVAL;
        *ret_usec = total;
        return 0;
}

void format_duration(uint64_t usec, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },    { "s", USEC_PER_SEC },
                { "ms", USEC_PER_MSEC },
        };
        size_t o = 0;

        if (size == 0)
                return;
        buf[0] = 0;
        if (usec == 0) {
                snprintf(buf, size, "0s");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(units) && o < size; i++)
                if (usec >= units[i].usec) {
                        int k = snprintf(buf + o, size - o, "%llu%s",
                                         (unsigned long long) (usec / units[i].usec), units[i].suffix);
                        if (k < 0)
                                return;
                        o += (size_t) k;
                        usec %= units[i].usec;
                }
}

uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

void format_rfc3339(uint64_t realtime_usec, char *buf, size_t size) {
        time_t t = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int read_fd_limited(int fd, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 4096;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                if ((uint64_t) st.st_size > max)
                        return -E2BIG;
                cap = (size_t) st.st_size + 1;
        }
        buf = mem_malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k;

                if (n + 1 >= cap) {
                        size_t ncap = cap * 2;
                        char *nb;
                        if (cap > max + 1)
                                return -E2BIG;
                        nb = mem_reallocarray(buf, ncap, 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        cap = ncap;
                }
                k = read(fd, buf + n, cap - n - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max)
                        return -E2BIG;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = n;
        return 0;
}

int read_file_limited(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        int fl;

        /* O_NONBLOCK: a FIFO must not hang a config load or a reload. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return -errno;
        return read_fd_limited(fd, max, ret, ret_size);
}

int secret_path_resolve(const char *spec, char **ret_path) {
        const char *name, *dir;
        char *p;

        if (!spec || !*spec)
                return -EINVAL;
        if (!str_startswith(spec, "credential:")) {
                p = mem_strdup(spec);
                if (!p)
                        return -ENOMEM;
                *ret_path = p;
                return 0;
        }
        name = spec + strlen("credential:");
        if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return -EINVAL;
        dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir)
                return -ENXIO;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        /* asprintf allocated with malloc; hand back through our allocator */
        *ret_path = mem_strdup(p);
        free(p);
        return *ret_path ? 0 : -ENOMEM;
}

int secret_read(const char *spec, char ***ret_lines, size_t *ret_n) {
        _cleanup_free_ char *path = NULL;
        char *buf = NULL, *save = NULL, *line;
        char **v = NULL;
        size_t n = 0, size = 0;
        int r;

        r = secret_path_resolve(spec, &path);
        if (r < 0)
                return r;
        r = read_file_limited(path, LIMIT_SECRET_FILE_BYTES, &buf, &size);
        if (r < 0)
                return r;
        v = mem_calloc(LIMIT_SECRETS_PER_FILE + 1, sizeof(char *));
        if (!v) {
                r = -ENOMEM;
                goto out;
        }
        for (line = strtok_r(buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
                strstrip(line);
                if (!*line)
                        continue;
                if (n >= LIMIT_SECRETS_PER_FILE) {
                        r = -ENOBUFS;
                        goto out;
                }
                v[n] = mem_strdup(line);
                if (!v[n]) {
                        r = -ENOMEM;
                        goto out;
                }
                (void) log_register_secret_pinned(v[n]);
                n++;
        }
        if (n == 0) {
                r = -ENODATA;
                goto out;
        }
        *ret_lines = v;
        v = NULL;
        if (ret_n)
                *ret_n = n;
        r = 0;
out:
        explicit_bzero(buf, size);
        mem_free(buf);
        strv_free_erase(v);
        return r;
}

void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                mem_free(*p);
        mem_free(v);
}

void strv_free_erase(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                explicit_bzero(*p, strlen(*p));
        strv_free(v);
}

size_t strv_length(char *const *v) {
        size_t n = 0;

        while (v && v[n])
                n++;
        return n;
}

bool strv_contains(char *const *v, const char *s) {
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

bool memeq_secret(const void *a, size_t alen, const void *b, size_t blen) {
        if (alen != blen) {
                /* Still spend the time of a comparison. */
                (void) CRYPTO_memcmp(a, a, alen);
                return false;
        }
        return CRYPTO_memcmp(a, b, alen) == 0;
}

void hex_encode(const uint8_t *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = 0;
}

/* Nibble values, 0xff for what is not a hex digit: a lookup instead of
 * range tests, whose branches a random digest mispredicts half the time
 * (hex_decode() was 1.3% of the daemon's CPU under load, for the one
 * signature header of each webhook; perf). */
static const uint8_t unhex_table[256] = {
        ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14,
        ['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19,
        ['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, ['f'] = 0x1f,
        ['A'] = 0x1a, ['B'] = 0x1b, ['C'] = 0x1c, ['D'] = 0x1d, ['E'] = 0x1e, ['F'] = 0x1f,
};

int hex_decode(const char *in, uint8_t *out, size_t n) {
        unsigned valid = 0x10;

        if (strlen(in) != 2 * n)
                return -EINVAL;
        /* 0x10 marks a digit: the AND of all entries keeps it only if every
         * character was one. */
        for (size_t i = 0; i < n; i++) {
                uint8_t hi = unhex_table[(unsigned char) in[2 * i]], lo = unhex_table[(unsigned char) in[2 * i + 1]];

                valid &= hi & lo;
                out[i] = (uint8_t) ((hi & 0x0f) << 4 | (lo & 0x0f));
        }
        return valid ? 0 : -EINVAL;
}

char *strstrip(char *s) {
        size_t l;
        char *p = s;

        while (*p && isspace((unsigned char) *p))
                p++;
        l = strlen(p);
        while (l > 0 && isspace((unsigned char) p[l - 1]))
                l--;
        memmove(s, p, l);
        s[l] = 0;
        return s;
}

bool str_startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

char *str_tolower_dup(const char *s) {
        char *d = mem_strdup(s);

        for (char *p = d; p && *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return d;
}

bool glob_match_ci(const char *pattern, const char *s) {
        return fnmatch(pattern, s, FNM_CASEFOLD) == 0;
}

unsigned edit_distance(const char *a, const char *b) {
        unsigned row[65];
        size_t la = strlen(a), lb = strlen(b);

        if (la > 64 || lb > 64)
                return 255;
        for (size_t j = 0; j <= lb; j++)
                row[j] = (unsigned) j;
        for (size_t i = 1; i <= la; i++) {
                unsigned prev = row[0];
                row[0] = (unsigned) i;
                for (size_t j = 1; j <= lb; j++) {
                        unsigned cur = row[j];
                        unsigned sub = prev + (tolower((unsigned char) a[i - 1]) != tolower((unsigned char) b[j - 1]));
                        unsigned del = row[j] + 1, ins = row[j - 1] + 1;
                        row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
                        prev = cur;
                }
        }
        return row[lb] > 255 ? 255 : row[lb];
}

bool is_user_id(const char *s) {
        size_t n = 0;

        for (; s[n]; n++)
                if (!((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9')))
                        return false;
        return n == 26;
}

int random_id(char out[static 33]) {
        uint8_t b[16];
        size_t got = 0;

        while (got < sizeof(b)) {
                ssize_t k = getrandom(b + got, sizeof(b) - got, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t) k;
        }
        hex_encode(b, sizeof(b), out);
        return 0;
}
