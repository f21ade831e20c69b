/* What the configuration loader (config.c and its config_*.c section
 * files) shares with the modules that compile their own part of a
 * configuration document (rules.c compiles conditions): the problem sink,
 * the list of problem lines, "did you mean", booleans.
 *
 * It includes no header of ours and its code calls only the foundation
 * (alloc, strbuf, util), so config and rules both depend on it and neither
 * on the other through it. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

/* Where a compiler reports a problem at a libyaml mark and carries on.
 * The sink decides the file name and the format of the line. */
typedef void (*ConfutilProblemFn)(void *userdata, const yaml_mark_t *mark, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Every problem of one load, in the order reported. */
typedef struct ConfutilProblems {
        char **lines;             /* "FILE:LINE:COLUMN: message" or "FILE: message"; NULL-terminated */
        size_t n;                 /* at most LIMIT_CONFIG_PROBLEMS */
        unsigned long n_reported; /* every problem reported, also those past the limit */
        bool oom;                 /* a line was lost to an allocation failure */
} ConfutilProblems;

/* Appends "FILE:LINE:COLUMN: message" (line and column 1-based), or
 * "FILE: message" when line is 0. The message is cut at 2,047 bytes.
 * Past LIMIT_CONFIG_PROBLEMS lines it only counts; on OOM it sets p->oom
 * (the caller then fails with -ENOMEM). Never fails otherwise. */
void confutil_problemv(ConfutilProblems *p, const char *file, unsigned line, unsigned column, const char *fmt,
                       va_list ap) __attribute__((format(printf, 5, 0)));
/* Frees the lines; p is empty afterwards. */
void confutil_problems_done(ConfutilProblems *p);

/* "did you mean": the candidate within edit distance 2 of word, and
 * fewer edits than word has characters (the closest, first on ties), or
 * NULL. Borrowed from candidates. */
const char *confutil_suggest(const char *word, const char *const *candidates, size_t n);
/* true/false/yes/no (any case) -> 0 and *ret; -EINVAL otherwise (also for
 * NULL), *ret untouched. */
int confutil_parse_bool(const char *s, bool *ret);
