/* The problem list, "did you mean" and booleans that the configuration
 * loader and rules.c share (include/confutil.h). Calls only the
 * foundation: alloc, strbuf, util. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "cleanup.h"
#include "confutil.h"
#include "remedyd-limits.h"
#include "strbuf.h"
#include "util.h"

static void problem_add(ConfutilProblems *p, char *line) {
        char **v;

        if (!line) {
                p->oom = true;
                return;
        }
        if (p->n >= LIMIT_CONFIG_PROBLEMS) {
                mem_free(line);
                return;
        }
        v = mem_reallocarray(p->lines, p->n + 2, sizeof(char *));
        if (!v) {
                mem_free(line);
                p->oom = true;
                return;
        }
        p->lines = v;
        v[p->n++] = line;
        v[p->n] = NULL;
}

void confutil_problemv(ConfutilProblems *p, const char *file, unsigned line, unsigned column, const char *fmt,
                       va_list ap) {
        _cleanup_(strbuf_free) StrBuf b;
        int r;

        p->n_reported++;
        strbuf_init(&b, 8192);
        if (line > 0)
                r = strbuf_printf(&b, "%s:%u:%u: ", file, line, column);
        else
                r = strbuf_printf(&b, "%s: ", file);
        if (r >= 0) {
                va_list aq;
                char msg[2048];

                va_copy(aq, ap);
                (void) vsnprintf(msg, sizeof(msg), fmt, aq);
                va_end(aq);
                r = strbuf_puts(&b, msg);
        }
        if (r == -ENOMEM) {
                p->oom = true;
                return;
        }
        problem_add(p, strbuf_steal(&b));
}

void confutil_problems_done(ConfutilProblems *p) {
        strv_free(p->lines);
        *p = (ConfutilProblems) {};
}

const char *confutil_suggest(const char *word, const char *const *candidates, size_t n) {
        const char *best = NULL;
        unsigned best_d = 3;

        for (size_t i = 0; i < n; i++) {
                unsigned d = edit_distance(word, candidates[i]);

                /* two edits turn any two-letter word into any other */
                if (d < best_d && d < strlen(word)) {
                        best_d = d;
                        best = candidates[i];
                }
        }
        return best;
}

int confutil_parse_bool(const char *s, bool *ret) {
        if (!s)
                return -EINVAL;
        if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0) {
                *ret = true;
                return 0;
        }
        if (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0) {
                *ret = false;
                return 0;
        }
        return -EINVAL;
}
