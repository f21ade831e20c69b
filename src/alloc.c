#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#ifdef REMEDYD_ALLOC_TORTURE
static unsigned long fail_at;
static unsigned long counter;
static int initialised;

static int should_fail(void) {
        if (!initialised) {
                const char *e = getenv("REMEDYD_ALLOC_FAIL");
                initialised = 1;
                if (e)
                        fail_at = strtoul(e, NULL, 10);
        }
        counter++;
        if (fail_at > 0 && counter == fail_at) {
                errno = ENOMEM;
                return 1;
        }
        return 0;
}

void mem_fail_at(unsigned long n) {
        initialised = 1;
        fail_at = n;
        counter = 0;
}

unsigned long mem_alloc_count(void) {
        return counter;
}
#else
static inline int should_fail(void) {
        return 0;
}

void mem_fail_at(unsigned long n) {
        (void) n;
}

unsigned long mem_alloc_count(void) {
        return 0;
}
#endif

void *mem_malloc(size_t n) {
        if (should_fail())
                return NULL;
        return malloc(n == 0 ? 1 : n);
}

void *mem_calloc(size_t n, size_t size) {
        if (should_fail())
                return NULL;
        return calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
}

void *mem_reallocarray(void *p, size_t n, size_t size) {
        if (size != 0 && n > SIZE_MAX / size) {
                errno = ENOMEM;
                return NULL;
        }
        if (should_fail())
                return NULL;
        return realloc(p, n * size == 0 ? 1 : n * size);
}

void *mem_memdup(const void *p, size_t n) {
        void *q = mem_malloc(n);
        if (q && n > 0)
                memcpy(q, p, n);
        return q;
}

char *mem_strndup(const char *s, size_t n) {
        size_t l = strnlen(s, n);
        char *q = mem_malloc(l + 1);
        if (!q)
                return NULL;
        memcpy(q, s, l);
        q[l] = 0;
        return q;
}

char *mem_strdup(const char *s) {
        return mem_strndup(s, SIZE_MAX);
}

void mem_free(void *p) {
        free(p);
}
