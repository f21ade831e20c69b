/* One thin allocation wrapper for all of remedyd's own allocations. It
 * returns NULL like libc (it never aborts). When built with
 * -Dalloc_torture=true, REMEDYD_ALLOC_FAIL=N in the environment (or
 * mem_fail_at(N)) makes the Nth call fail, so tests can walk every
 * out-of-memory path. */
#pragma once

#include <stddef.h>

void *mem_malloc(size_t n);
void *mem_calloc(size_t n, size_t size);
/* Like reallocarray(3): fails with NULL (errno ENOMEM) on overflow. */
void *mem_reallocarray(void *p, size_t n, size_t size);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void *mem_memdup(const void *p, size_t n);
void mem_free(void *p);

/* Torture control (no-ops unless built with alloc_torture). Independent of
 * REMEDYD_ALLOC_FAIL (whole-program runs), which reports on stderr when it
 * fires ("remedyd-alloc-torture: failing allocation N") and at exit
 * ("remedyd-alloc-torture: N allocations"); REMEDYD_ALLOC_BACKTRACE=1 adds
 * the failing call's stack.
 * mem_fail_at(0) disables injection. mem_alloc_count() returns how many
 * allocations were attempted since the last mem_fail_at(). */
void mem_fail_at(unsigned long n);
unsigned long mem_alloc_count(void);
