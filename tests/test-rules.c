/* rules.c, jpath.c, template.c: every operator with ignore_case and
 * missing-field semantics, all/any/not, paths (dotted, array indexes,
 * literal dotted keys, JSON pointers), templates, for_each + where, stop,
 * several rules firing, and the explain text. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <json-c/json.h>
#include <yaml.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "ctl.h"
#include "harness.h"
#include "log.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "strbuf.h"
#include "util.h"

static char tmpdir[] = "/tmp/test-rules-XXXXXX";
static char problem_text[1024];

static void collect_problem(void *userdata, const yaml_mark_t *mark, const char *fmt, ...) {
        va_list ap;
        int n;

        n = snprintf(problem_text, sizeof(problem_text), "%zu:%zu: ", mark->line + 1, mark->column + 1);
        va_start(ap, fmt);
        vsnprintf(problem_text + n, sizeof(problem_text) - (size_t) n, fmt, ap);
        va_end(ap);
}

/* Compiles a condition from YAML text; NULL with problem_text set on a
 * problem. */
static Condition *compile(const char *yaml) {
        yaml_parser_t parser;
        yaml_document_t doc;
        Condition *c;

        problem_text[0] = 0;
        ASSERT_TRUE(yaml_parser_initialize(&parser));
        yaml_parser_set_input_string(&parser, (const unsigned char *) yaml, strlen(yaml));
        ASSERT_TRUE(yaml_parser_load(&parser, &doc));
        c = rules_condition_compile(&doc, yaml_document_get_root_node(&doc), collect_problem, NULL);
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        return c;
}

static json_object *json(const char *text) {
        json_object *o = json_tokener_parse(text);

        if (!o && strcmp(text, "null") != 0)
                FAIL_AT("bad JSON in test: %s", text);
        return o;
}

/* 1 or 0: does condition yaml hold on the event text? */
static int holds(const char *yaml, const char *event) {
        Condition *c = compile(yaml);
        json_object *e = json(event);
        int r;

        if (!c)
                FAIL_AT("condition %s: %s", yaml, problem_text);
        r = rules_condition_eval(c, e);
        ASSERT_OK(r);
        rules_condition_free(c);
        json_object_put(e);
        return r;
}

#define HOLDS(y, e) ASSERT_EQ(holds(y, e), 1)
#define FAILS(y, e) ASSERT_EQ(holds(y, e), 0)

TEST(jpath) {
        json_object *e = json("{\"a\": {\"b\": [10, {\"c\": \"x\"}, null]}, \"kibana.alert.rule.name\": \"flat\","
                              " \"kibana\": {\"alert\": {\"rule.id\": \"half\", \"x\": 1}}, \"a.b\": {\"z\": 2},"
                              " \"s/l\": {\"t~n\": 3}, \"\": 4, \"0\": \"zero\"}");
        JPath *p;
        bool null;

#define LOOKUP_STR(path, want)                                               \
        do {                                                                 \
                ASSERT_OK(jpath_compile(path, &p));                          \
                ASSERT_STREQ(json_object_to_json_string_ext(jpath_lookup(p, e, NULL), JSON_C_TO_STRING_PLAIN), want); \
                p = jpath_free(p);                                           \
        } while (0)
#define LOOKUP_MISSING(path)                                                 \
        do {                                                                 \
                ASSERT_OK(jpath_compile(path, &p));                          \
                ASSERT_NULL(jpath_lookup(p, e, NULL));                       \
                p = jpath_free(p);                                           \
        } while (0)

        LOOKUP_STR("a.b.0", "10");
        LOOKUP_STR("a.b.1.c", "\"x\"");
        LOOKUP_MISSING("a.b.3");
        LOOKUP_MISSING("a.b.01");
        LOOKUP_MISSING("a.b.-1");
        LOOKUP_MISSING("a.b.c");
        LOOKUP_MISSING("a.x");
        LOOKUP_STR("0", "\"zero\"");
        /* literal dotted keys: the whole, a prefix, a middle part */
        LOOKUP_STR("kibana.alert.rule.name", "\"flat\"");
        LOOKUP_STR("kibana.alert.rule.id", "\"half\"");
        LOOKUP_STR("kibana.alert.x", "1");
        /* "a.b" exists literally but has no "0": backtrack to a -> b -> 0 */
        LOOKUP_STR("a.b.0", "10");
        LOOKUP_STR("a.b.z", "2");
        /* JSON pointers */
        LOOKUP_STR("/a/b/1/c", "\"x\"");
        LOOKUP_STR("/s~1l/t~0n", "3");
        LOOKUP_STR("/", "4");
        LOOKUP_STR("/kibana.alert.rule.name", "\"flat\"");
        LOOKUP_MISSING("/a/b/01");
        LOOKUP_MISSING("/a/b/-");
        LOOKUP_MISSING("/kibana/alert/rule/name");

        /* a JSON null is missing, but can be told apart */
        ASSERT_OK(jpath_compile("a.b.2", &p));
        ASSERT_NULL(jpath_lookup(p, e, NULL));
        ASSERT_NULL(jpath_lookup(p, e, &null));
        ASSERT_TRUE(null);
        p = jpath_free(p);
        ASSERT_OK(jpath_compile("a.b.9", &p));
        ASSERT_NULL(jpath_lookup(p, e, &null));
        ASSERT_FALSE(null);
        ASSERT_STREQ(jpath_text(p), "a.b.9");
        p = jpath_free(p);

        ASSERT_ERR(jpath_compile("", &p), EINVAL);
        ASSERT_ERR(jpath_compile("a..b", &p), EINVAL);
        ASSERT_ERR(jpath_compile(".a", &p), EINVAL);
        ASSERT_ERR(jpath_compile("a.", &p), EINVAL);
        ASSERT_ERR(jpath_compile("/a~2", &p), EINVAL);
        ASSERT_ERR(jpath_compile("/a~", &p), EINVAL);
        json_object_put(e);
}

/* Keys for every prefix at every level cannot make a lookup exponential. */
TEST(jpath_backtracking_bounded) {
        _cleanup_free_ char *path = NULL;
        json_object *level = json_object_new_object();
        StrBuf b;
        JPath *p;

        /* 40 levels, each holding "a", "a.a" and "a.a.a" that all lead to
         * the next level (a DAG): ~1e10 ways to split the path, none ending
         * in "b". The step budget must cut this short. */
        for (int i = 0; i < 40; i++) {
                json_object *up = json_object_new_object();

                json_object_object_add(up, "a", json_object_get(level));
                json_object_object_add(up, "a.a", json_object_get(level));
                json_object_object_add(up, "a.a.a", level);
                level = up;
        }
        strbuf_init(&b, 4096);
        for (int i = 0; i < 40; i++)
                ASSERT_OK(strbuf_puts(&b, "a."));
        ASSERT_OK(strbuf_puts(&b, "b"));
        path = strbuf_steal(&b);
        ASSERT_OK(jpath_compile(path, &p));
        ASSERT_NULL(jpath_lookup(p, level, NULL));
        jpath_free(p);
        json_object_put(level);
}

TEST(operators) {
        const char *ev = "{\"s\": \"Impossible Travel\", \"n\": 5, \"d\": 2.5, \"ns\": \"7\", \"t\": true, "
                         "\"arr\": [\"a\", \"B\", 3], \"o\": {\"k\": 1}, \"z\": null, \"big\": 9007199254740993}";

        /* equals: strings, numbers both ways, booleans, ignore_case */
        HOLDS("{field: s, equals: Impossible Travel}", ev);
        FAILS("{field: s, equals: impossible travel}", ev);
        HOLDS("{field: s, equals: impossible travel, ignore_case: true}", ev);
        HOLDS("{field: n, equals: 5}", ev);
        HOLDS("{field: n, equals: \"5\"}", ev);
        HOLDS("{field: n, equals: 5.0}", ev);
        FAILS("{field: n, equals: 6}", ev);
        HOLDS("{field: ns, equals: 7}", ev);
        HOLDS("{field: d, equals: 2.5}", ev);
        HOLDS("{field: t, equals: true}", ev);
        FAILS("{field: t, equals: false}", ev);
        FAILS("{field: t, equals: 1}", ev);
        FAILS("{field: o, equals: x}", ev);
        HOLDS("{field: big, equals: 9007199254740993}", ev);
        FAILS("{field: big, equals: 9007199254740992}", ev);
        /* not_equals */
        HOLDS("{field: s, not_equals: x}", ev);
        FAILS("{field: s, not_equals: Impossible Travel}", ev);
        FAILS("{field: s, not_equals: IMPOSSIBLE TRAVEL, ignore_case: yes}", ev);
        /* in / not_in */
        HOLDS("{field: n, in: [1, 5]}", ev);
        FAILS("{field: n, in: [1, 2]}", ev);
        FAILS("{field: n, in: []}", ev);
        HOLDS("{field: s, in: [x, impossible travel], ignore_case: true}", ev);
        FAILS("{field: s, in: [x, impossible travel]}", ev);
        HOLDS("{field: n, not_in: [1, 2]}", ev);
        FAILS("{field: n, not_in: [5]}", ev);
        /* contains: array element, substring */
        HOLDS("{field: arr, contains: a}", ev);
        FAILS("{field: arr, contains: b}", ev);
        HOLDS("{field: arr, contains: b, ignore_case: true}", ev);
        HOLDS("{field: arr, contains: 3}", ev);
        HOLDS("{field: s, contains: ble Tr}", ev);
        FAILS("{field: s, contains: ble tr}", ev);
        HOLDS("{field: s, contains: BLE TR, ignore_case: true}", ev);
        FAILS("{field: o, contains: k}", ev);
        /* starts_with / ends_with */
        HOLDS("{field: s, starts_with: Imp}", ev);
        FAILS("{field: s, starts_with: imp}", ev);
        HOLDS("{field: s, starts_with: imp, ignore_case: true}", ev);
        HOLDS("{field: s, ends_with: Travel}", ev);
        FAILS("{field: s, ends_with: travel}", ev);
        HOLDS("{field: s, ends_with: TRAVEL, ignore_case: true}", ev);
        FAILS("{field: s, ends_with: \"a much longer suffix than the value\"}", ev);
        HOLDS("{field: n, starts_with: \"5\"}", ev);
        /* matches: POSIX ERE, ignore_case */
        HOLDS("{field: s, matches: \"^Imp.*l$\"}", ev);
        FAILS("{field: s, matches: \"^imp\"}", ev);
        HOLDS("{field: s, matches: \"^imp(ossible)? travel$\", ignore_case: true}", ev);
        HOLDS("{field: n, matches: \"^[0-9]+$\"}", ev);
        FAILS("{field: o, matches: \".*\"}", ev);
        /* exists */
        HOLDS("{field: s, exists: true}", ev);
        FAILS("{field: s, exists: false}", ev);
        FAILS("{field: z, exists: true}", ev);
        HOLDS("{field: z, exists: false}", ev);
        /* gt, gte, lt, lte: numbers and numeric strings; others false */
        HOLDS("{field: n, gt: 4}", ev);
        FAILS("{field: n, gt: 5}", ev);
        HOLDS("{field: n, gte: 5}", ev);
        HOLDS("{field: n, lt: 5.5}", ev);
        FAILS("{field: n, lt: 5}", ev);
        HOLDS("{field: n, lte: 5}", ev);
        HOLDS("{field: ns, gt: 6}", ev);
        HOLDS("{field: d, gt: 2}", ev);
        HOLDS("{field: d, lt: 3}", ev);
        FAILS("{field: s, gt: 0}", ev);
        FAILS("{field: s, lt: 0}", ev);
        FAILS("{field: t, gt: 0}", ev);
        FAILS("{field: arr, gte: 0}", ev);
        /* a missing field: false except exists: false, not_equals, not_in */
        FAILS("{field: nope, equals: x}", ev);
        HOLDS("{field: nope, not_equals: x}", ev);
        FAILS("{field: nope, in: [x]}", ev);
        HOLDS("{field: nope, not_in: [x]}", ev);
        FAILS("{field: nope, contains: x}", ev);
        FAILS("{field: nope, starts_with: x}", ev);
        FAILS("{field: nope, ends_with: x}", ev);
        FAILS("{field: nope, matches: x}", ev);
        FAILS("{field: nope, exists: true}", ev);
        HOLDS("{field: nope, exists: false}", ev);
        FAILS("{field: nope, gt: 0}", ev);
        FAILS("{field: nope, gte: 0}", ev);
        FAILS("{field: nope, lt: 0}", ev);
        FAILS("{field: nope, lte: 0}", ev);
        /* JSON pointer field */
        HOLDS("{field: /arr/1, equals: B}", ev);
}

TEST(composition) {
        const char *ev = "{\"a\": 1, \"b\": \"x\"}";

        HOLDS("{all: [{field: a, equals: 1}, {field: b, equals: x}]}", ev);
        FAILS("{all: [{field: a, equals: 1}, {field: b, equals: y}]}", ev);
        HOLDS("{any: [{field: a, equals: 2}, {field: b, equals: x}]}", ev);
        FAILS("{any: [{field: a, equals: 2}, {field: b, equals: y}]}", ev);
        HOLDS("{not: {field: a, equals: 2}}", ev);
        FAILS("{not: {field: a, equals: 1}}", ev);
        HOLDS("{all: [{any: [{field: q, exists: true}, {not: {field: b, in: [y, z]}}]}, {field: a, lte: 1}]}", ev);
        ASSERT_EQ(rules_condition_eval(NULL, NULL), 1);
}

TEST(compile_problems) {
        static const struct {
                const char *yaml, *problem;
        } cases[] = {
                { "{field: a, equals: 1, in: [1]}", "1:23: a condition takes exactly one operator, got 'equals' and 'in'" },
                { "{field: a, sw: x}", "1:12: unknown condition operator 'sw' (one of equals, not_equals, in, not_in, "
                                       "contains, starts_with, ends_with, matches, exists, gt, gte, lt, lte)" },
                { "{field: a, lt: x}", "1:16: 'lt' takes a number, not 'x'" },
                { "{field: a, in: x}", "1:16: 'in' takes a list of values" },
                { "{field: a, equals: [x]}", "1:20: equals must be a scalar" },
                { "{field: a, exists: maybe}", "1:20: 'exists' takes true or false, not 'maybe'" },
                { "{field: \"a..b\", exists: true}", "1:9: invalid field path 'a..b'" },
                { "{equals: 1}", "1:1: condition has no 'field'" },
                { "{all: []}", "1:7: 'all' needs at least one condition" },
                { "{any: {field: a, exists: true}}", "1:7: 'any' takes a list of conditions" },
                { "{field: a, matches: \"[z-a]\"}", "1:21: invalid regular expression '[z-a]': Invalid range end" },
                /* fuzz-rules-yaml/oom-stacked-plus-regex: regcomp() doubles a
                 * subexpression for every stacked '+'; 97 of them took all memory */
                { "{field: a, matches: \"a++++++++++++++++\"}",
                  "1:21: regular expression 'a++++++++++++++++' stacks repetition operators (such "
                  "as 'a*+' or 'a{2}{3}'), which POSIX leaves undefined; group instead: '(a*)+'" },
                { "{field: a, matches: \"x{,3000}\"}",
                  "1:21: regular expression 'x{,3000}' is too complex: compiling it would take about "
                  "86 MiB, more than 16 MiB (nested, stacked or optional repetitions multiply)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ASSERT_NULL(compile(cases[i].yaml));
                ASSERT_STREQ(problem_text, cases[i].problem);
        }
        ASSERT_NULL(compile("{field: a, matches: \"((a{100}){100}){8}\"}"));
        ASSERT_CONTAINS(problem_text, "is too complex");
}

/* Estimates against what regcomp() took (maxrss, measured): the limit is
 * 16 MiB per pattern. */
TEST(regex_cost) {
        const uint64_t MiB = 1024 * 1024, limit = LIMIT_REGEX_COMPILE_BYTES;

        ASSERT_EQ(rules_regex_cost(""), 0u);
        ASSERT_EQ(rules_regex_cost("abc"), 3u * 256);
        ASSERT_EQ(rules_regex_cost("a{1000}"), 1000u * 256);
        ASSERT_EQ(rules_regex_cost("a{2,}"), 3u * 256 + 20 * 1);   /* a a a*: one optional copy */
        ASSERT_EQ(rules_regex_cost("a{,5}"), rules_regex_cost("a{0,5}"));   /* glibc reads {,m} as {0,m} */
        ASSERT_EQ(rules_regex_cost("[]a{}]{3}"), rules_regex_cost("x{3}"));  /* members, not a bound */
        ASSERT_EQ(rules_regex_cost("[[:alpha:]]{4}"), rules_regex_cost("x{4}"));
        ASSERT_EQ(rules_regex_cost("\\{3}"), rules_regex_cost("x{3}"));  /* an escaped '\' repeated */
        ASSERT_EQ(rules_regex_cost("a{x}"), 4u * 256);       /* not a bound: '{', 'x', '}' */
        ASSERT_EQ(rules_regex_cost("((("), 0u);
        /* stacked repetition operators */
        ASSERT_EQ(rules_regex_cost("a++"), UINT64_MAX);
        ASSERT_EQ(rules_regex_cost("a*?"), UINT64_MAX);
        ASSERT_EQ(rules_regex_cost("a{2}{3}"), UINT64_MAX);
        ASSERT_EQ(rules_regex_cost("a*{,297}"), UINT64_MAX);
        ASSERT_TRUE(rules_regex_cost("(a*)+") < MiB);
        /* measured: a{32767} 7 MB, a{,1000} 9.5 MB, (a?){1000} 9.7 MB, a
         * hostname pattern 8.4 MB: allowed, estimated within 2x */
        ASSERT_TRUE(rules_regex_cost("a{32767}") >= 7 * MiB && rules_regex_cost("a{32767}") <= limit);
        ASSERT_TRUE(rules_regex_cost("a{,1000}") >= 8 * MiB && rules_regex_cost("a{,1000}") <= limit);
        ASSERT_TRUE(rules_regex_cost("(a?){1000}") >= 8 * MiB && rules_regex_cost("(a?){1000}") <= limit);
        ASSERT_TRUE(rules_regex_cost("([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.){1,126}") >= 4 * MiB &&
                    rules_regex_cost("([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.){1,126}") <= limit);
        /* measured: a{,3000} 72 MB, a{,10000} 790 MB: refused */
        ASSERT_TRUE(rules_regex_cost("a{,3000}") > limit);
        ASSERT_TRUE(rules_regex_cost("a{,10000}") > 500 * MiB);
        ASSERT_TRUE(rules_regex_cost("(a{,1000}){,100}") > limit);   /* 1 GB measured */
        ASSERT_TRUE(rules_regex_cost("a{99999999999999999999}") > limit);   /* saturates */
        /* what the product's own rule packs use stays small */
        ASSERT_TRUE(rules_regex_cost("^[a-z0-9._%+-]+@(example|corp)\\.com$") < 64 * 1024);
}

static char *render(const char *tmpl, const char *value, const char *event, int *ret, char **missing) {
        Template *t = NULL;
        json_object *v = json(value), *e = event ? json(event) : NULL;
        char *out = NULL;

        ASSERT_OK(template_compile(tmpl, &t, NULL));
        *ret = template_render(t, v, e ? e : v, &out, missing);
        template_free(t);
        json_object_put(v);
        json_object_put(e);
        return out;
}

TEST(templates) {
        const char *ev = "{\"u\": \"alice@example.com\", \"n\": 42, \"d\": 1.5, \"t\": false, \"o\": {\"k\": [1, \"x\"]},"
                         " \"event\": {\"id\": \"own\"}, \"e\": {\"f\": \"g\"}}";
        _cleanup_free_ char *missing = NULL;
        Template *t;
        size_t off;
        char *s;
        int r;

#define RENDERS(tmpl, want)                                       \
        do {                                                      \
                s = render(tmpl, ev, NULL, &r, NULL);             \
                ASSERT_OK(r);                                     \
                ASSERT_STREQ(s, want);                            \
                mem_free(s);                                      \
        } while (0)

        RENDERS("${u}", "alice@example.com");
        RENDERS("user ${u} has ${n} alerts", "user alice@example.com has 42 alerts");
        RENDERS("${d}|${t}|${o}", "1.5|false|{\"k\":[1,\"x\"]}");
        RENDERS("${o.k.1}${o.k.0}", "x1");
        RENDERS("cost: $$5, $x, $", "cost: $5, $x, $");
        RENDERS("$${u}", "${u}");
        RENDERS("", "");
        RENDERS("${/o/k/1}", "x");
        /* outside for_each, event.X is first the literal path, then X */
        RENDERS("${event.id}", "own");
        RENDERS("${event.e.f}", "g");

        s = render("x ${o.k.5} y", ev, NULL, &r, &missing);
        ASSERT_ERR(r, ENOENT);
        ASSERT_NULL(s);
        ASSERT_STREQ(missing, "o.k.5");

        /* defaults: used only when the path is missing (or null) */
        RENDERS("${u:-nobody}", "alice@example.com");
        RENDERS("${nope:-nobody} ${n:-0}", "nobody 42");
        RENDERS("[${nope:-}]", "[]");
        RENDERS("${nope:-a:-b $ c}", "a:-b $ c");
        RENDERS("${event.nope:-x}", "x");
        mem_free(missing);
        missing = NULL;

        /* texts (reason, notifications) never fail on a missing path */
        {
                json_object *v = json(ev);
                char *out = NULL;

                ASSERT_OK(template_compile("${a}", &t, NULL));
                ASSERT_FALSE(template_has_default(t, NULL));
                template_free(t);
                ASSERT_OK(template_compile("Splunk ${u}: ${result.note} ${o.k.9:-none}", &t, NULL));
                ASSERT_TRUE(template_has_default(t, &off));
                ASSERT_EQ(off, 28);
                ASSERT_OK(template_render_text(t, v, v, &out));
                ASSERT_STREQ(out, "Splunk alice@example.com: (missing result.note) none");
                mem_free(out);
                ASSERT_ERR(template_render(t, v, v, &out, &missing), ENOENT);
                ASSERT_STREQ(missing, "result.note");
                template_free(t);
                json_object_put(v);
        }

        /* inside for_each: plain paths on the element, event.X on the event */
        s = render("${name}@${event.domain}", "{\"name\": \"bob\"}", "{\"domain\": \"example.org\", \"name\": \"no\"}", &r, NULL);
        ASSERT_OK(r);
        ASSERT_STREQ(s, "bob@example.org");
        mem_free(s);

        ASSERT_ERR(template_compile("${unclosed", &t, &off), EINVAL);
        ASSERT_EQ(off, 0);
        ASSERT_ERR(template_compile("ab ${}", &t, &off), EINVAL);
        ASSERT_EQ(off, 3);
        ASSERT_ERR(template_compile("ab ${x} ${a..b}", &t, &off), EINVAL);
        ASSERT_EQ(off, 8);
        ASSERT_ERR(template_compile("ab ${:-x}", &t, &off), EINVAL);
        ASSERT_EQ(off, 3);
        ASSERT_ERR(template_compile("${a:-x", &t, &off), EINVAL);
        ASSERT_OK(template_compile("a ${b}", &t, NULL));
        ASSERT_STREQ(template_text(t), "a ${b}");
        template_free(t);

        /* output limit */
        {
                _cleanup_free_ char *big = mem_calloc(LIMIT_TEMPLATE_OUTPUT_BYTES + 64, 1);
                json_object *v;

                memset(big, 'x', LIMIT_TEMPLATE_OUTPUT_BYTES - 1);
                v = json_object_new_object();
                json_object_object_add(v, "b", json_object_new_string(big));
                ASSERT_OK(template_compile("${b}${b}", &t, NULL));
                ASSERT_ERR(template_render(t, v, v, &s, NULL), E2BIG);
                /* a text keeps what fit */
                ASSERT_OK(template_render_text(t, v, v, &s));
                ASSERT_EQ(strlen(s), LIMIT_TEMPLATE_OUTPUT_BYTES - 1);
                mem_free(s);
                template_free(t);
                json_object_put(v);
        }
}

/* --- rules_evaluate / rules_explain on a loaded config -------------------- */

#define PROTECTED_ID "U0110AAAAAAAAAAAAAAAAAAAAA"

static Config *load(const char *rules_yaml) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        ConfigProblems problems = {};
        Config *c = NULL;
        FILE *f;

        ASSERT_TRUE(asprintf(&path, "%s/rules.yaml", tmpdir) > 0);
        ASSERT_TRUE(asprintf(&text,
                             "listen: { webhook: \"127.0.0.1:0\" }\n"
                             "onepassword: { account_id: XLQMR47VZPBKJHSGWNCYFDE3T9, client_id_file: x, client_secret_file: y }\n"
                             "safety: { protected_users: [\"*@secops.example.com\", boss@example.com, %s] }\n"
                             "sources:\n"
                             "  - { name: splunk, auth: { none: true } }\n"
                             "  - { name: okta, auth: { none: true } }\n"
                             "  - { name: sentinel, auth: { none: true } }\n"
                             "%s", PROTECTED_ID, rules_yaml) > 0);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        fclose(f);
        if (config_load(path, CONFIG_LOAD_NO_SECRETS, &c, &problems) < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        fprintf(stderr, "%s\n", problems.lines[i]);
                FAIL_AT("test config did not load");
        }
        unlink(path);
        return c;
}

static const char *RULES =
        "rules:\n"
        "  - name: splunk-impossible-travel\n"
        "    source: splunk\n"
        "    when:\n"
        "      all:\n"
        "        - { field: result.signature, equals: \"Impossible travel\" }\n"
        "        - { field: result.severity, in: [high, critical], ignore_case: true }\n"
        "    action: suspend\n"
        "    user: \"${result.user}\"\n"
        "    reason: \"Splunk ${search_name}: ${result.signature}\"\n"
        "  - name: any-source-notify\n"
        "    source: \"*\"\n"
        "    when: { field: result.user, exists: true }\n"
        "    action: notify\n"
        "    user: \"${result.user}\"\n"
        "  - name: sentinel-account-entities\n"
        "    source: [sentinel, okta]\n"
        "    when: { field: object.properties.severity, in: [High] }\n"
        "    for_each: object.properties.relatedEntities\n"
        "    where: { field: kind, equals: Account }\n"
        "    action: suspend\n"
        "    user: \"${properties.accountName}@${properties.upnSuffix}\"\n"
        "    reason: \"Sentinel ${event.object.properties.title}\"\n"
        "    stop: true\n"
        "  - name: after-stop\n"
        "    source: \"*\"\n"
        "    action: notify\n"
        "    user: \"${nobody}\"\n";

static const char *SPLUNK_HIT =
        "{\"sid\": \"s1\", \"search_name\": \"travel\", \"result\": {\"signature\": \"Impossible travel\", "
        "\"severity\": \"HIGH\", \"user\": \"alice@example.com\"}}";

static const char *SENTINEL =
        "{\"object\": {\"properties\": {\"severity\": \"High\", \"title\": \"Mass download\", \"relatedEntities\": ["
        "{\"kind\": \"Ip\", \"address\": \"10.0.0.1\"},"
        "{\"kind\": \"Account\", \"properties\": {\"accountName\": \"bob\", \"upnSuffix\": \"example.com\"}},"
        "{\"kind\": \"Account\", \"properties\": {\"accountName\": \"carol\"}},"
        "{\"kind\": \"Account\", \"properties\": {\"accountName\": \"x\", \"upnSuffix\": \"secops.example.com\"}}]}}}";

TEST(evaluate) {
        Config *c = load(RULES);
        json_object *e = json(SPLUNK_HIT);
        RuleHits hits = {};

        /* splunk: the first rule and the any-source rule fire, in order */
        ASSERT_EQ(rules_evaluate(c, "splunk", e, &hits), 3);
        ASSERT_EQ(hits.n, 3);
        ASSERT_STREQ(hits.hits[0].rule->name, "splunk-impossible-travel");
        ASSERT_STREQ(hits.hits[0].user, "alice@example.com");
        ASSERT_STREQ(hits.hits[0].reason, "Splunk travel: Impossible travel");
        ASSERT_NULL(hits.hits[0].missing);
        ASSERT_STREQ(hits.hits[1].rule->name, "any-source-notify");
        ASSERT_EQ(hits.hits[1].rule->action, ACTION_NOTIFY);
        ASSERT_NULL(hits.hits[1].reason);
        ASSERT_STREQ(hits.hits[2].rule->name, "after-stop");
        ASSERT_NULL(hits.hits[2].user);
        ASSERT_STREQ(hits.hits[2].missing, "nobody");
        rule_hits_free(&hits);
        ASSERT_EQ(hits.n, 0);

        /* okta does not get the splunk-only rule */
        ASSERT_EQ(rules_evaluate(c, "okta", e, &hits), 2);
        ASSERT_STREQ(hits.hits[0].rule->name, "any-source-notify");
        /* hits append */
        ASSERT_EQ(rules_evaluate(c, "okta", e, &hits), 2);
        ASSERT_EQ(hits.n, 4);
        ASSERT_STREQ(hits.hits[2].rule->name, "any-source-notify");
        rule_hits_free(&hits);
        json_object_put(e);

        /* for_each + where, ${event.X}, an unresolved element, stop */
        e = json(SENTINEL);
        ASSERT_EQ(rules_evaluate(c, "sentinel", e, &hits), 1);
        ASSERT_EQ(hits.n, 3);
        ASSERT_STREQ(hits.hits[0].user, "bob@example.com");
        ASSERT_STREQ(hits.hits[0].reason, "Sentinel Mass download");
        ASSERT_NULL(hits.hits[1].user);
        ASSERT_STREQ(hits.hits[1].missing, "properties.upnSuffix");
        ASSERT_STREQ(hits.hits[2].user, "x@secops.example.com");
        rule_hits_free(&hits);

        /* severity not High: nothing for sentinel, and no stop either */
        json_object_object_add(json_object_object_get(json_object_object_get(e, "object"), "properties"),
                               "severity", json_object_new_string("Low"));
        ASSERT_EQ(rules_evaluate(c, "sentinel", e, &hits), 1);
        ASSERT_EQ(hits.n, 1);
        ASSERT_STREQ(hits.hits[0].rule->name, "after-stop");
        rule_hits_free(&hits);
        json_object_put(e);
        config_free(c);
}

/* The same path text in many conditions is resolved once per evaluation
 * from the event root (rules.c memo); a where: clause resolves it from its
 * element, and a JSON null stays "missing". */
TEST(shared_paths) {
        Config *c = load("rules:\n"
                         "  - { name: r1, source: \"*\", when: { field: a.b, equals: x }, action: notify, user: u@example.com }\n"
                         "  - { name: r2, source: \"*\", when: { field: a.b, equals: y }, action: notify, user: u@example.com }\n"
                         "  - { name: r3, source: \"*\", when: { field: a.b, exists: true }, for_each: list,\n"
                         "      where: { field: a.b, equals: z }, action: notify, user: \"${u}\" }\n"
                         "  - { name: r4, source: \"*\", when: { field: a.n, exists: false }, action: notify, user: u@example.com }\n"
                         "  - { name: r5, source: \"*\", when: { field: /a/b, equals: y }, action: notify, user: u@example.com }\n");
        json_object *e = json_tokener_parse("{\"a\": {\"b\": \"y\", \"n\": null},"
                                            " \"list\": [{\"a\": {\"b\": \"z\"}, \"u\": \"v@example.com\"}, {\"a\": {\"b\": \"y\"}}]}");
        RuleHits hits = {};

        ASSERT_NOT_NULL(e);
        ASSERT_EQ(rules_evaluate(c, "okta", e, &hits), 4);
        ASSERT_EQ(hits.n, 4);
        ASSERT_STREQ(hits.hits[0].rule->name, "r2");
        ASSERT_STREQ(hits.hits[1].rule->name, "r3");
        ASSERT_STREQ(hits.hits[1].user, "v@example.com");
        ASSERT_STREQ(hits.hits[2].rule->name, "r4");
        ASSERT_STREQ(hits.hits[3].rule->name, "r5");
        rule_hits_free(&hits);
        json_object_put(e);
        config_free(c);
}

TEST(for_each_limits) {
        Config *c = load("rules:\n  - { name: r, source: \"*\", for_each: list, action: notify, user: \"${u}\" }\n");
        json_object *e = json_object_new_object(), *list = json_object_new_array();
        RuleHits hits = {};

        json_object_object_add(e, "list", list);
        for (unsigned i = 0; i < LIMIT_FOR_EACH_ITEMS; i++) {
                json_object *o = json_object_new_object();

                json_object_object_add(o, "u", json_object_new_string("a@example.com"));
                json_object_array_add(list, o);
        }
        ASSERT_EQ(rules_evaluate(c, "okta", e, &hits), 1);
        ASSERT_EQ(hits.n, LIMIT_FOR_EACH_ITEMS);
        rule_hits_free(&hits);
        json_object_array_add(list, json_object_new_object());
        ASSERT_ERR(rules_evaluate(c, "okta", e, &hits), ENOBUFS);
        ASSERT_EQ(hits.n, 0);

        /* for_each on something that is not an array: no match */
        json_object_object_add(e, "list", json_object_new_string("x"));
        ASSERT_EQ(rules_evaluate(c, "okta", e, &hits), 0);
        json_object_put(e);
        config_free(c);
}

#define NOT_KNOWN_OFFLINE                                                                                      \
        "not known offline: the directory (unknown or ambiguous users, the user id of an email and whether it " \
        "is protected), cooldowns, the cap and redeliveries; remedyctl explain --live asks the daemon\n"

TEST(explain) {
        Config *c = load(RULES);
        json_object *e = json("{\"search_name\": \"travel\", \"result\": {\"signature\": \"Impossible travel\", "
                              "\"severity\": \"low\", \"user\": \"alice@example.com\"}}");
        _cleanup_free_ char *text = NULL;

        ASSERT_EQ(rules_explain(c, "splunk", e, &text), 1);
        ASSERT_STREQ(text,
                     "rule splunk-impossible-travel: no match: result.severity in [high, critical] failed: value \"low\"\n"
                     "rule any-source-notify: match: notify: would act on user alice@example.com\n"
                     "rule sentinel-account-entities: skipped: source splunk is not one of this rule's sources\n"
                     "rule after-stop: match: notify: unresolved: missing nobody\n" NOT_KNOWN_OFFLINE);
        mem_free(text);
        text = NULL;
        json_object_put(e);

        e = json(SENTINEL);
        ASSERT_EQ(rules_explain(c, "sentinel", e, &text), 1);
        ASSERT_STREQ(text,
                     "rule splunk-impossible-travel: skipped: source sentinel is not one of this rule's sources\n"
                     "rule any-source-notify: no match: result.user exists true failed: field missing\n"
                     "rule sentinel-account-entities: match: suspend (for_each element 1): would act on user bob@example.com (reason: Sentinel Mass download)\n"
                     "rule sentinel-account-entities: match: suspend (for_each element 2): unresolved: missing properties.upnSuffix (reason: Sentinel Mass download)\n"
                     "rule sentinel-account-entities: match: suspend (for_each element 3): protected: user x@secops.example.com is in safety.protected_users (reason: Sentinel Mass download)\n"
                     "rule after-stop: not evaluated: rule sentinel-account-entities matched with stop: true\n"
                     NOT_KNOWN_OFFLINE);
        mem_free(text);
        text = NULL;

        /* no element passes where: the first failing element is named */
        json_object_put(e);
        e = json("{\"object\": {\"properties\": {\"severity\": \"High\", \"relatedEntities\": [{\"kind\": \"Ip\"}]}}}");
        ASSERT_EQ(rules_explain(c, "okta", e, &text), 0);
        ASSERT_CONTAINS(text, "rule sentinel-account-entities: no match: for_each object.properties.relatedEntities: "
                              "no element passed where (element 0: kind equals \"Account\" failed: value \"Ip\")\n");
        mem_free(text);
        text = NULL;
        json_object_put(e);
        config_free(c);

        /* any and not failures, dry_run */
        c = load("rules:\n"
                 "  - name: a\n    source: \"*\"\n    when: { any: [ { field: x, gt: 5 }, { field: y, equals: 1 } ] }\n"
                 "    action: notify\n    user: u\n"
                 "  - name: b\n    source: \"*\"\n    when: { not: { field: x, lt: 5 } }\n    action: notify\n    user: u\n"
                 "  - name: c\n    source: \"*\"\n    action: suspend\n    user: \"${x}\"\n    dry_run: true\n");
        e = json("{\"x\": 3}");
        ASSERT_EQ(rules_explain(c, "okta", e, &text), 1);
        ASSERT_STREQ(text,
                     "rule a: no match: any [x gt 5; y equals 1] failed: none held\n"
                     "rule b: no match: not (x lt 5) failed: the inner condition held\n"
                     "rule c: match: suspend: dry_run: would act on user 3\n" NOT_KNOWN_OFFLINE);
        json_object_put(e);
        config_free(c);
}

/* Issue 21: explain decides as the daemon does wherever it can. */
TEST(explain_agrees) {
        Config *c = load("rules:\n"
                         "  - { name: r, source: splunk, action: suspend, user: \"${u}\",\n"
                         "      reason: \"Splunk ${sid}: ${result.note}\" }\n");
        static const struct {
                const char *event;
                int acting;
                const char *line;
        } table[] = {
                /* protected by its user id, named by the alert */
                { "{\"u\": \"" PROTECTED_ID "\", \"sid\": 1, \"result\": {\"note\": \"n\"}}", 0,
                  "rule r: match: suspend: protected: user " PROTECTED_ID " is in safety.protected_users (reason: Splunk 1: n)\n" },
                /* padded: trimmed as the daemon trims */
                { "{\"u\": \"  alice@secops.example.com \", \"sid\": 2, \"result\": {\"note\": \"n\"}}", 0,
                  "rule r: match: suspend: protected: user   alice@secops.example.com  is in safety.protected_users (reason: Splunk 2: n)\n" },
                /* a reason with a missing path: the action goes ahead */
                { "{\"u\": \"bob@example.com\", \"sid\": 3}", 1,
                  "rule r: match: suspend: would act on user bob@example.com (reason: Splunk 3: (missing result.note))\n"
                  NOT_KNOWN_OFFLINE },
                /* only the user makes it unresolved */
                { "{\"sid\": 4}", 0, "rule r: match: suspend: unresolved: missing u (reason: Splunk 4: (missing result.note))\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                json_object *e = json(table[i].event);
                RuleHits hits = {};
                char *text = NULL;

                ASSERT_EQ(rules_explain(c, "splunk", e, &text), table[i].acting);
                ASSERT_STREQ(text, table[i].line);
                mem_free(text);
                ASSERT_EQ(rules_evaluate(c, "splunk", e, &hits), 1);
                ASSERT_EQ(hits.n, 1);
                ASSERT_TRUE((hits.hits[0].user != NULL) == (i != 3));
                ASSERT_NOT_NULL(hits.hits[0].reason);
                rule_hits_free(&hits);
                json_object_put(e);
        }
        config_free(c);
}

/* Runs ctl_explain with stdout and stderr captured. */
static int run_explain(const char *config, char **argv, int argc, char **ret_out, char **ret_err) {
        _cleanup_free_ char *o = NULL, *e = NULL;
        CtlContext ctx = { .config_path = config };
        int so, se, fo, fe, r;

        ASSERT_TRUE(asprintf(&o, "%s/out", tmpdir) > 0);
        ASSERT_TRUE(asprintf(&e, "%s/err", tmpdir) > 0);
        fflush(stdout);
        fflush(stderr);
        so = dup(1);
        se = dup(2);
        fo = open(o, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        fe = open(e, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(so >= 0 && se >= 0 && fo >= 0 && fe >= 0);
        dup2(fo, 1);
        dup2(fe, 2);
        r = ctl_explain(&ctx, argc, argv);
        fflush(stdout);
        fflush(stderr);
        dup2(so, 1);
        dup2(se, 2);
        close(so);
        close(se);
        close(fo);
        close(fe);
        ASSERT_OK(read_file_limited(o, 1u << 20, ret_out, NULL));
        ASSERT_OK(read_file_limited(e, 1u << 20, ret_err, NULL));
        unlink(o);
        unlink(e);
        return r;
}

static void write_tmp(const char *name, const char *text, char **ret_path) {
        FILE *f;

        ASSERT_TRUE(asprintf(ret_path, "%s/%s", tmpdir, name) > 0);
        f = fopen(*ret_path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        fclose(f);
}

TEST(ctl_explain) {
        _cleanup_free_ char *conf = NULL, *hit = NULL, *miss = NULL, *bad = NULL, *broken = NULL;

        /* secret files do not exist: explain must not need them */
        write_tmp("explain.yaml",
                  "listen: { webhook: \"127.0.0.1:0\" }\n"
                  "onepassword: { account_id: XLQMR47VZPBKJHSGWNCYFDE3T9, client_id_file: /nonexistent/id, "
                  "client_secret_file: /nonexistent/secret }\n"
                  "sources:\n  - { name: splunk, auth: { bearer: { token_file: /nonexistent/token } } }\n"
                  "rules:\n  - { name: r, source: splunk, when: { field: level, gte: 5 }, action: suspend, user: \"${user}\" }\n",
                  &conf);
        write_tmp("hit.json", "{\"level\": 7, \"user\": \"alice@example.com\"}\n", &hit);
        write_tmp("miss.json", "{\"level\": \"2\", \"user\": \"alice@example.com\"}", &miss);
        write_tmp("bad.json", "[1, 2]", &bad);
        write_tmp("broken.yaml", "onepassword: {\n", &broken);

        struct {
                const char *config;
                int argc;
                char *argv[4];
                int status;
                const char *out, *err;  /* the whole text; NULL: not checked */
                const char *err_has[2]; /* parts of the error text */
        } cases[] = {
                { conf, 4, { "explain", "--source", "splunk", hit }, 0,
                  .out = "rule r: match: suspend: would act on user alice@example.com\n" NOT_KNOWN_OFFLINE
                         "1 action would be taken\n",
                  .err = "" },
                { conf, 4, { "explain", "--source", "splunk", miss }, 1,
                  .out = "rule r: no match: level gte 5 failed: value \"2\"\nno action would be taken\n" },
                { conf, 4, { "explain", "--source", "splunk", bad }, 2, .err_has = { "bad.json is not a JSON object" } },
                { conf, 4, { "explain", "--source", "okta", hit }, 2,
                  .err_has = { "no source 'okta' in ", "(sources: splunk)" } },
                { conf, 2, { "explain", hit }, 2, .err_has = { "Usage: remedyctl explain --source NAME FILE.json" } },
                { broken, 3, { "explain", "--source=splunk", hit }, 2,
                  .err_has = { "broken.yaml:2:1: YAML syntax error: " } },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *out = NULL, *err = NULL;

                ASSERT_EQ(run_explain(cases[i].config, cases[i].argv, cases[i].argc, &out, &err), cases[i].status);
                if (cases[i].out)
                        ASSERT_STREQ(out, cases[i].out);
                if (cases[i].err)
                        ASSERT_STREQ(err, cases[i].err);
                for (size_t k = 0; k < ELEMENTSOF(cases[i].err_has) && cases[i].err_has[k]; k++)
                        ASSERT_CONTAINS(err, cases[i].err_has[k]);
                mem_free(out);
                mem_free(err);
        }

        unlink(conf);
        unlink(hit);
        unlink(miss);
        unlink(bad);
        unlink(broken);
}

/* Every allocation failure gives -ENOMEM and no leak. */
TEST(out_of_memory) {
        Config *c = load(RULES);
        json_object *e = json(SENTINEL);
        unsigned long n;
        int r = -ENOMEM;

        for (n = 1; r == -ENOMEM && n < 10000; n++) {
                RuleHits hits = {};
                char *text = NULL;

                mem_fail_at(n);
                r = rules_evaluate(c, "sentinel", e, &hits);
                if (r >= 0)
                        r = rules_explain(c, "sentinel", e, &text);
                mem_fail_at(0);
                rule_hits_free(&hits);
                mem_free(text);
                if (r < 0)
                        ASSERT_ERR(r, ENOMEM);
        }
        ASSERT_EQ(r, 1);
        json_object_put(e);
        config_free(c);
}

int main(void) {
        ASSERT_NOT_NULL(mkdtemp(tmpdir));
        log_setup(LOG_FORMAT_TEXT, true);

        RUN(jpath);
        RUN(jpath_backtracking_bounded);
        RUN(operators);
        RUN(composition);
        RUN(compile_problems);
        RUN(regex_cost);
        RUN(templates);
        RUN(evaluate);
        RUN(shared_paths);
        RUN(for_each_limits);
        RUN(explain);
        RUN(explain_agrees);
        RUN(ctl_explain);
        log_set_trace(TRACE_RULES);
        log_set_max_level(LOG_WARNING); /* the trace path runs, quietly */
        RUN(evaluate);
        log_set_trace(0);
        RUN(out_of_memory);

        rmdir(tmpdir);
        HARNESS_DONE();
}
