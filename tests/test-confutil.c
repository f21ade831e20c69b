/* confutil.c: "did you mean", booleans, and the problem list's format,
 * limit, counting and out-of-memory flag. */
#include <stdarg.h>
#include <string.h>

#include "alloc.h"
#include "cleanup.h"
#include "confutil.h"
#include "harness.h"
#include "remedyd-limits.h"
#include "util.h"

static void add(ConfutilProblems *p, const char *file, unsigned line, unsigned column, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static void add(ConfutilProblems *p, const char *file, unsigned line, unsigned column, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        confutil_problemv(p, file, line, column, fmt, ap);
        va_end(ap);
}

TEST(suggest) {
        static const char *const keys[] = { "listen", "onepassword", "state", "safety", "sources", "rules" };
        static const struct {
                const char *word, *want;
        } cases[] = {
                { "lisen",      "listen" },
                { "sorces",     "sources" },
                { "rule",       "rules" },
                { "saftey",     "safety" }, /* a transposition is two edits */
                { "frobnicate", NULL },
                { "st",         NULL },     /* no fewer edits than characters */
                { "LISTEN",     "listen" }, /* case does not count */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *got = confutil_suggest(cases[i].word, keys, ELEMENTSOF(keys));

                if (!cases[i].want)
                        ASSERT_NULL(got);
                else
                        ASSERT_STREQ(got, cases[i].want);
        }
        ASSERT_NULL(confutil_suggest("listen", keys, 0));
}

TEST(parse_bool) {
        static const struct {
                const char *s;
                int r;
                bool want;
        } cases[] = {
                { "true", 0, true },   { "YES", 0, true },     { "False", 0, false }, { "no", 0, false },
                { "1", -EINVAL, 0 },   { "maybe", -EINVAL, 0 }, { "", -EINVAL, 0 },    { NULL, -EINVAL, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool b = !cases[i].want;

                ASSERT_EQ(confutil_parse_bool(cases[i].s, &b), cases[i].r);
                if (cases[i].r == 0)
                        ASSERT_EQ(b, cases[i].want);
                else
                        ASSERT_EQ(b, !cases[i].want); /* untouched */
        }
}

TEST(problems) {
        ConfutilProblems p = {};
        char big[4096];

        add(&p, "a.yaml", 3, 7, "'%s' must be a list", "to");
        add(&p, "b.yaml", 0, 0, "No such file or directory");
        ASSERT_EQ(p.n, 2);
        ASSERT_STREQ(p.lines[0], "a.yaml:3:7: 'to' must be a list");
        ASSERT_STREQ(p.lines[1], "b.yaml: No such file or directory");
        ASSERT_NULL(p.lines[2]);

        /* the message is cut at 2,047 bytes, the file name is not */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        add(&p, big, 1, 1, "%s", big);
        ASSERT_EQ(strlen(p.lines[2]), strlen(big) + strlen(":1:1: ") + 2047);

        /* past the limit only counted */
        for (unsigned i = 3; i < LIMIT_CONFIG_PROBLEMS + 5; i++)
                add(&p, "c.yaml", i, 1, "problem %u", i);
        ASSERT_EQ(p.n, LIMIT_CONFIG_PROBLEMS);
        ASSERT_EQ(p.n_reported, LIMIT_CONFIG_PROBLEMS + 5);
        ASSERT_FALSE(p.oom);
        confutil_problems_done(&p);
        ASSERT_NULL(p.lines);
        ASSERT_EQ(p.n, 0);
}

TEST(out_of_memory) {
        ConfutilProblems p = {};

        mem_fail_at(1);
        add(&p, "a.yaml", 1, 1, "lost");
        mem_fail_at(0);
        /* without -Dalloc_torture=true nothing fails: then the line is there */
        ASSERT_TRUE(p.oom ? p.n == 0 : p.n == 1);
        confutil_problems_done(&p);
}

int main(void) {
        RUN(suggest);
        RUN(parse_bool);
        RUN(problems);
        RUN(out_of_memory);
        HARNESS_DONE();
}
