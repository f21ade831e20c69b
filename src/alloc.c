/* The allocation wrapper of include/alloc.h (and, with -Dalloc_torture,
 * its failure injection). Calls libc only. */
#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"

#ifdef REMEDYD_ALLOC_TORTURE
/* Two independent injectors: mem_fail_at() for tests that walk one
 * operation, and REMEDYD_ALLOC_FAIL=N from the environment for whole-program
 * runs (scripts/torture). The environment one says on stderr when it fires
 * and, at exit, how many allocations the process made, so that a driver can
 * tell "failed allocation N was handled" from "N was never reached". The
 * counters are atomic: the store's writer thread allocates too. */
static unsigned long fail_at;
static unsigned long counter;
static unsigned long env_fail_at;
static unsigned long env_counter;
static int env_initialised;

static void env_report(void) {
        char buf[96];
        int n = snprintf(buf, sizeof buf, "remedyd-alloc-torture: %lu allocations\n",
                         __atomic_load_n(&env_counter, __ATOMIC_RELAXED));
        if (n > 0)
                (void) !write(STDERR_FILENO, buf, (size_t) n);
}

static void env_init(void) {
        const char *e;

        if (__atomic_exchange_n(&env_initialised, 1, __ATOMIC_ACQ_REL))
                return;
        e = getenv("REMEDYD_ALLOC_FAIL");
        if (!e)
                return;
        env_fail_at = strtoul(e, NULL, 10);
        (void) atexit(env_report);
}

static int should_fail(void) {
        unsigned long c;

        env_init();
        c = __atomic_add_fetch(&env_counter, 1, __ATOMIC_RELAXED);
        if (env_fail_at > 0 && c == env_fail_at) {
                char buf[96];
                int n = snprintf(buf, sizeof buf,
                                 "remedyd-alloc-torture: failing allocation %lu\n", c);
                if (n > 0)
                        (void) !write(STDERR_FILENO, buf, (size_t) n);
                if (getenv("REMEDYD_ALLOC_BACKTRACE")) {
                        void *frames[32];
                        backtrace_symbols_fd(frames, backtrace(frames, 32), STDERR_FILENO);
                }
                errno = ENOMEM;
                return 1;
        }
        c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        if (fail_at > 0 && c == fail_at) {
                errno = ENOMEM;
                return 1;
        }
        return 0;
}

void mem_fail_at(unsigned long n) {
        fail_at = n;
        __atomic_store_n(&counter, 0, __ATOMIC_RELAXED);
}

unsigned long mem_alloc_count(void) {
        return __atomic_load_n(&counter, __ATOMIC_RELAXED);
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
