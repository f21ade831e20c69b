/* Rules (contract 3.2, 3.3): conditions compiled from YAML at load into a
 * small tree, one predicate per operator (OpenSMTPD ruleset.c), and the
 * walk over the rules for one event. Non-logging apart from TRACE_RULES. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <yaml.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "confutil.h"
#include "log.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "safety.h"
#include "strbuf.h"
#include "util.h"

typedef enum CondKind {
        COND_ALL,
        COND_ANY,
        COND_NOT,
        COND_LEAF,
} CondKind;

typedef enum CondOp {
        OP_EQUALS,
        OP_NOT_EQUALS,
        OP_IN,
        OP_NOT_IN,
        OP_CONTAINS,
        OP_STARTS_WITH,
        OP_ENDS_WITH,
        OP_MATCHES,
        OP_EXISTS,
        OP_GT,
        OP_GTE,
        OP_LT,
        OP_LTE,
        _OP_MAX,
        _OP_INVALID = -EINVAL,
} CondOp;

/* A YAML scalar operand with its possible readings: "5" equals JSON 5 and
 * "5"; "true" equals JSON true and "true". */
typedef struct CondValue {
        char *text;
        bool is_number, is_int, is_bool;
        double number;
        int64_t integer;
        bool boolean;
} CondValue;

struct Condition {
        CondKind kind;
        Condition **children; /* all, any: n_children; not: one */
        size_t n_children;

        JPath *field;
        CondOp op;
        bool ignore_case;
        CondValue *values;    /* one, or the in/not_in list */
        size_t n_values;
        bool exists;
        regex_t regex;
        bool have_regex;
};

typedef enum OpArg {
        ARG_SCALAR,
        ARG_LIST,
        ARG_REGEX,
        ARG_BOOL,
        ARG_NUMBER,
} OpArg;

typedef int (*OpPredicate)(const Condition *c, json_object *v);

/* Failure of an evaluation, for explain: the node that decided the "no",
 * and for a leaf the value it saw (NULL: field missing). */
typedef struct Failure {
        const Condition *cond;
        json_object *seen;
} Failure;

/* --- value helpers --------------------------------------------------- */

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static bool parse_number(const char *s, double *ret) {
        char *end;
        double d;

        if (!s || !*s || strchr(" \t\n", *s))
                return false;
        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || *end || !isfinite(d))
                return false;
        /* strtod also takes "inf", "nan" and hex; only decimal here */
        for (const char *p = s; *p; p++)
                if (!strchr("0123456789+-.eE", *p))
                        return false;
        *ret = d;
        return true;
}

static bool parse_int64(const char *s, int64_t *ret) {
        char *end;
        long long v;

        if (!s || !*s || strchr(" \t\n+", *s))
                return false;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || *end)
                return false;
        *ret = (int64_t) v;
        return true;
}

/* The text a string operator works on: strings as-is, numbers and booleans
 * in JSON form; NULL for objects, arrays and null. */
static const char *value_text(json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_string:
                return json_object_get_string(v);
        case json_type_int:
        case json_type_double:
        case json_type_boolean:
                return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
        default:
                return NULL;
        }
}

static bool json_number(json_object *v, double *ret) {
        switch (json_object_get_type(v)) {
        case json_type_int:
        case json_type_double:
                *ret = json_object_get_double(v);
                return true;
        case json_type_string:
                return parse_number(json_object_get_string(v), ret);
        default:
                return false;
        }
}

static bool value_equals(const CondValue *cv, json_object *v, bool ignore_case) {
        switch (json_object_get_type(v)) {
        case json_type_string:
                return ignore_case ? strcasecmp(cv->text, json_object_get_string(v)) == 0
                                   : strcmp(cv->text, json_object_get_string(v)) == 0;
        case json_type_int:
                if (cv->is_int)
                        return cv->integer == json_object_get_int64(v);
                return cv->is_number && cv->number == json_object_get_double(v);
        case json_type_double:
                return cv->is_number && cv->number == json_object_get_double(v);
        case json_type_boolean:
                return cv->is_bool && cv->boolean == (bool) json_object_get_boolean(v);
        default:
                return false;
        }
}

static const char *strstr_ci(const char *hay, const char *needle, bool ignore_case) {
        return ignore_case ? strcasestr(hay, needle) : strstr(hay, needle);
}

/* --- one predicate per operator; v is present (not missing) ------------ */

static int op_equals(const Condition *c, json_object *v) {
        return value_equals(&c->values[0], v, c->ignore_case);
}

static int op_not_equals(const Condition *c, json_object *v) {
        return !value_equals(&c->values[0], v, c->ignore_case);
}

static int op_in(const Condition *c, json_object *v) {
        for (size_t i = 0; i < c->n_values; i++)
                if (value_equals(&c->values[i], v, c->ignore_case))
                        return 1;
        return 0;
}

static int op_not_in(const Condition *c, json_object *v) {
        return !op_in(c, v);
}

static int op_contains(const Condition *c, json_object *v) {
        const char *s;

        if (json_object_is_type(v, json_type_array)) {
                size_t n = json_object_array_length(v);

                for (size_t i = 0; i < n; i++)
                        if (value_equals(&c->values[0], json_object_array_get_idx(v, i), c->ignore_case))
                                return 1;
                return 0;
        }
        s = value_text(v);
        return s && strstr_ci(s, c->values[0].text, c->ignore_case);
}

static int op_starts_with(const Condition *c, json_object *v) {
        const char *s = value_text(v), *p = c->values[0].text;
        size_t n = strlen(p);

        if (!s)
                return 0;
        return c->ignore_case ? strncasecmp(s, p, n) == 0 : strncmp(s, p, n) == 0;
}

static int op_ends_with(const Condition *c, json_object *v) {
        const char *s = value_text(v), *p = c->values[0].text;
        size_t n = strlen(p), m;

        if (!s)
                return 0;
        m = strlen(s);
        if (m < n)
                return 0;
        return c->ignore_case ? strcasecmp(s + m - n, p) == 0 : strcmp(s + m - n, p) == 0;
}

static int op_matches(const Condition *c, json_object *v) {
        const char *s = value_text(v);
        int r;

        if (!s)
                return 0;
        r = regexec(&c->regex, s, 0, NULL, 0);
        if (r == 0)
                return 1;
        if (r == REG_NOMATCH)
                return 0;
        return -ENOMEM; /* REG_ESPACE */
}

static int op_exists(const Condition *c, json_object *v) {
        return c->exists;
}

static int op_gt(const Condition *c, json_object *v) {
        double d;
        return json_number(v, &d) && d > c->values[0].number;
}

static int op_gte(const Condition *c, json_object *v) {
        double d;
        return json_number(v, &d) && d >= c->values[0].number;
}

static int op_lt(const Condition *c, json_object *v) {
        double d;
        return json_number(v, &d) && d < c->values[0].number;
}

static int op_lte(const Condition *c, json_object *v) {
        double d;
        return json_number(v, &d) && d <= c->values[0].number;
}

static const struct {
        const char *name;
        OpArg arg;
        OpPredicate predicate;
        bool when_missing;  /* the result when the field is missing */
        bool string_op;     /* ignore_case applies */
} ops[_OP_MAX] = {
        [OP_EQUALS]      = { "equals",      ARG_SCALAR, op_equals,      false, true  },
        [OP_NOT_EQUALS]  = { "not_equals",  ARG_SCALAR, op_not_equals,  true,  true  },
        [OP_IN]          = { "in",          ARG_LIST,   op_in,          false, true  },
        [OP_NOT_IN]      = { "not_in",      ARG_LIST,   op_not_in,      true,  true  },
        [OP_CONTAINS]    = { "contains",    ARG_SCALAR, op_contains,    false, true  },
        [OP_STARTS_WITH] = { "starts_with", ARG_SCALAR, op_starts_with, false, true  },
        [OP_ENDS_WITH]   = { "ends_with",   ARG_SCALAR, op_ends_with,   false, true  },
        [OP_MATCHES]     = { "matches",     ARG_REGEX,  op_matches,     false, true  },
        [OP_EXISTS]      = { "exists",      ARG_BOOL,   op_exists,      false, false },
        [OP_GT]          = { "gt",          ARG_NUMBER, op_gt,          false, false },
        [OP_GTE]         = { "gte",         ARG_NUMBER, op_gte,         false, false },
        [OP_LT]          = { "lt",          ARG_NUMBER, op_lt,          false, false },
        [OP_LTE]         = { "lte",         ARG_NUMBER, op_lte,         false, false },
};

static CondOp op_from_string(const char *s) {
        for (size_t i = 0; i < _OP_MAX; i++)
                if (strcmp(ops[i].name, s) == 0)
                        return (CondOp) i;
        return _OP_INVALID;
}

/* --- evaluation ---------------------------------------------------------- */

/* Lookups from the event root, memoized for one evaluation: the ~250 rules
 * of a source name the same few paths again and again, and resolving a
 * dotted path costs a json-c lookup (hash + strcmp) per segment and per
 * literal-dotted-key attempt. Keyed by the path's compile-time hash, then
 * its text; a full table just stops memoizing. The event is not modified
 * while the rules run, so a result stays valid for the whole walk. */
#define PATH_MEMO_SLOTS 256u
#define PATH_MEMO_PROBES 8u

typedef struct PathMemoSlot {
        const JPath *path;   /* NULL: empty */
        uint64_t hash;
        json_object *value;
        bool found_null;
} PathMemoSlot;

typedef struct PathMemo {
        PathMemoSlot slots[PATH_MEMO_SLOTS];
} PathMemo;

static json_object *memo_lookup(PathMemo *m, const JPath *p, json_object *root, bool *found_null) {
        uint64_t h = jpath_hash(p);
        PathMemoSlot *free_slot = NULL;
        json_object *v;
        bool null = false;

        for (size_t i = 0; i < PATH_MEMO_PROBES; i++) {
                PathMemoSlot *e = &m->slots[(h + i) & (PATH_MEMO_SLOTS - 1)];

                if (!e->path) {
                        free_slot = e;
                        break;
                }
                if (e->hash == h && (e->path == p || streq(jpath_text(e->path), jpath_text(p)))) {
                        *found_null = e->found_null;
                        return e->value;
                }
        }
        v = jpath_lookup(p, root, &null);
        if (free_slot)
                *free_slot = (PathMemoSlot) { .path = p, .hash = h, .value = v, .found_null = null };
        *found_null = null;
        return v;
}

/* m: the memo when value is the event root, else NULL. */
static int eval(const Condition *c, json_object *value, Failure *f, PathMemo *m) {
        json_object *v;
        bool found_null;
        int r;

        switch (c->kind) {
        case COND_ALL:
                for (size_t i = 0; i < c->n_children; i++) {
                        r = eval(c->children[i], value, f, m);
                        if (r <= 0)
                                return r;
                }
                return 1;
        case COND_ANY:
                for (size_t i = 0; i < c->n_children; i++) {
                        r = eval(c->children[i], value, f, m);
                        if (r != 0)
                                return r;
                }
                if (f)
                        *f = (Failure) { .cond = c };
                return 0;
        case COND_NOT:
                r = eval(c->children[0], value, NULL, m);
                if (r < 0)
                        return r;
                if (r > 0 && f)
                        *f = (Failure) { .cond = c };
                return !r;
        case COND_LEAF:
                /* A JSON null counts as missing: exists is false for it. */
                found_null = false;
                v = m ? memo_lookup(m, c->field, value, &found_null) : jpath_lookup(c->field, value, &found_null);
                if (!v)
                        r = c->op == OP_EXISTS ? !c->exists : ops[c->op].when_missing;
                else
                        r = ops[c->op].predicate(c, v);
                if (r == 0 && f)
                        *f = (Failure) { .cond = c, .seen = v };
                return r;
        }
        return -EINVAL;
}

int rules_condition_eval(const Condition *c, json_object *value) {
        if (!c)
                return 1;
        return eval(c, value, NULL, NULL);
}

/* --- compiling ----------------------------------------------------------- */

typedef struct Compiler {
        yaml_document_t *doc;
        ConfutilProblemFn problem;
        void *userdata;
        unsigned nodes;
        bool nodes_reported;
        uint64_t *regex_budget;  /* the config's, or NULL */
} Compiler;

#define EXPANSION_CAP (UINT64_C(1) << 40)

static uint64_t sat_add(uint64_t a, uint64_t b) {
        return a + b > EXPANSION_CAP ? EXPANSION_CAP : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
        return b != 0 && a > EXPANSION_CAP / b ? EXPANSION_CAP : a * b;
}

/* An estimate of the memory regcomp() needs for an ERE (see
 * LIMIT_REGEX_COMPILE_BYTES), meant to be on the high side. glibc builds a
 * tree with a copy of a subexpression for every repetition it must spell
 * out ({n,m}: m copies, '+': two; nested bounds multiply, stacked '+'
 * double), ~256 bytes a node, and an epsilon closure for every node that is
 * quadratic in a run of things that may match nothing ("a{0,3000}": 9M
 * entries, ~20 bytes each: 72 MB measured). Tracked per group: nodes, the
 * closure entries inside, whether it can match nothing, and the run of such
 * items it ends with. UINT64_MAX for stacked repetition operators ("a*+"),
 * which POSIX leaves undefined and glibc compiles at any cost. */
typedef struct RegexItem {
        uint64_t nodes, quad;
        bool nullable;
} RegexItem;

typedef struct RegexFrame {
        uint64_t nodes, quad, run;
        bool alt_nullable, any_nullable; /* this alternative so far; an earlier one */
        RegexItem last;
        bool have_last;
        /* before the last item, for a repetition to replace it */
        uint64_t prev_nodes, prev_quad, prev_run;
        bool prev_alt_nullable;
} RegexFrame;

static void regex_append(RegexFrame *f, RegexItem x) {
        f->prev_nodes = f->nodes;
        f->prev_quad = f->quad;
        f->prev_run = f->run;
        f->prev_alt_nullable = f->alt_nullable;
        f->nodes = sat_add(f->nodes, x.nodes);
        f->quad = sat_add(f->quad, x.quad);
        if (x.nullable) {
                /* every node of the run before reaches every node of x */
                f->quad = sat_add(f->quad, sat_mul(sat_add(f->run, 1), x.nodes));
                f->run = sat_add(f->run, x.nodes);
        } else {
                f->run = 0;
                f->alt_nullable = false;
        }
        f->last = x;
        f->have_last = true;
}

/* Replaces the frame's last item by min..max copies of it (max 0: no upper
 * bound, one starred copy after min). */
static void regex_repeat(RegexFrame *f, uint64_t min, uint64_t max) {
        RegexItem x = f->last, y;
        uint64_t copies, optional;

        if (!f->have_last)
                return;
        if (max == 0) {
                copies = sat_add(min, 1);
                optional = 1;
        } else {
                if (max < min)
                        max = min;
                copies = max ? max : 1;
                optional = max - min;
        }
        y.nodes = sat_mul(x.nodes, copies);
        y.quad = sat_mul(x.quad, copies);
        if (x.nullable) {
                /* copies that may match nothing: each node reaches every node after it */
                uint64_t n = sat_mul(copies, x.nodes);

                y.quad = sat_add(y.quad, sat_mul(n, n / 2 + 1));
        } else
                /* optional copies: each start reaches the starts after it */
                y.quad = sat_add(y.quad, sat_mul(optional, optional / 2 + 1));
        y.nullable = x.nullable || min == 0;
        /* undo the item, append the repetition */
        f->nodes = f->prev_nodes;
        f->quad = f->prev_quad;
        f->run = f->prev_run;
        f->alt_nullable = f->prev_alt_nullable;
        regex_append(f, y);
}

uint64_t rules_regex_cost(const char *p) {
        RegexFrame stack[LIMIT_REGEX_BYTES + 1];
        size_t depth = 0;
        uint64_t bytes;
        bool quantified = false;  /* the last token was a repetition operator */

        stack[0] = (RegexFrame) { .alt_nullable = true };
        for (size_t i = 0; p[i]; i++) {
                RegexFrame *f = &stack[depth];
                const RegexItem atom = { .nodes = 1 };
                bool was_quantified = quantified;

                quantified = false;
                switch (p[i]) {
                case '\\':
                        if (p[i + 1])
                                i++;
                        regex_append(f, atom);
                        break;
                case '[': {
                        size_t j = i + 1;

                        if (p[j] == '^')
                                j++;
                        if (p[j] == ']')
                                j++;
                        while (p[j] && p[j] != ']') {
                                if (p[j] == '[' && (p[j + 1] == ':' || p[j + 1] == '=' || p[j + 1] == '.')) {
                                        const char *end = strstr(p + j + 2, (char[]) { p[j + 1], ']', 0 });

                                        j = end ? (size_t) (end - p) + 2 : strlen(p);
                                } else
                                        j++;
                        }
                        i = p[j] ? j : j - 1;
                        regex_append(f, atom);
                        break;
                }
                case '(':
                        if (depth < LIMIT_REGEX_BYTES)
                                stack[++depth] = (RegexFrame) { .alt_nullable = true };
                        break;
                case ')':
                        if (depth > 0) {
                                RegexItem g = { .nodes = f->nodes ? f->nodes : 1, .quad = f->quad,
                                                .nullable = f->alt_nullable || f->any_nullable };

                                depth--;
                                regex_append(&stack[depth], g);
                        } else
                                regex_append(f, atom);
                        break;
                case '|':
                        f->any_nullable = f->any_nullable || f->alt_nullable;
                        f->alt_nullable = true;
                        f->run = 0;
                        f->have_last = false;
                        break;
                case '*':
                case '?':
                case '+':
                        /* "a*+", "a?{3}": POSIX leaves stacked repetitions
                         * undefined, and glibc's take memory without bound */
                        if (was_quantified)
                                return UINT64_MAX;
                        quantified = true;
                        regex_repeat(f, p[i] == '+' ? 1 : 0, p[i] == '?' ? 1 : 0);
                        break;
                case '{': {
                        uint64_t n = 0, m = 0;
                        bool comma = false, have_m = false;
                        size_t j = i + 1;

                        /* glibc takes "{,m}" as "{0,m}" */
                        if ((p[j] < '0' || p[j] > '9') && p[j] != ',') {
                                regex_append(f, atom);
                                break;
                        }
                        while (p[j] >= '0' && p[j] <= '9')
                                n = sat_add(sat_mul(n, 10), (uint64_t) (p[j++] - '0'));
                        if (p[j] == ',') {
                                comma = true;
                                j++;
                                while (p[j] >= '0' && p[j] <= '9') {
                                        m = sat_add(sat_mul(m, 10), (uint64_t) (p[j++] - '0'));
                                        have_m = true;
                                }
                        }
                        if (p[j] != '}') {
                                regex_append(f, atom);
                                break;
                        }
                        i = j;
                        if (was_quantified)
                                return UINT64_MAX;
                        quantified = true;
                        if (!comma)
                                regex_repeat(f, n, n ? n : 1);
                        else if (have_m)
                                regex_repeat(f, n, m ? m : 1);
                        else
                                regex_repeat(f, n, 0);
                        break;
                }
                default:
                        regex_append(f, atom);
                        break;
                }
        }
        while (depth > 0) {
                RegexFrame *f = &stack[depth];
                RegexItem g = { .nodes = f->nodes, .quad = f->quad, .nullable = f->alt_nullable || f->any_nullable };

                depth--;
                regex_append(&stack[depth], g);
        }
        bytes = sat_add(sat_mul(stack[0].nodes, 256), sat_mul(stack[0].quad, 20));
        return bytes;
}

Condition *rules_condition_free(Condition *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_children; i++)
                rules_condition_free(c->children[i]);
        mem_free(c->children);
        jpath_free(c->field);
        for (size_t i = 0; i < c->n_values; i++)
                mem_free(c->values[i].text);
        mem_free(c->values);
        if (c->have_regex)
                regfree(&c->regex);
        mem_free(c);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Condition *, rules_condition_free, rules_condition_freep)

/* The scalar's text, or NULL after a problem (wrong type, too long, NUL). */
static const char *scalar(Compiler *cc, yaml_node_t *n, const char *what) {
        if (n->type != YAML_SCALAR_NODE) {
                cc->problem(cc->userdata, &n->start_mark, "%s must be a scalar", what);
                return NULL;
        }
        if (n->data.scalar.length > LIMIT_CONFIG_STRING_BYTES) {
                cc->problem(cc->userdata, &n->start_mark, "%s is longer than LIMIT_CONFIG_STRING_BYTES (%u bytes)",
                            what, LIMIT_CONFIG_STRING_BYTES);
                return NULL;
        }
        if (strlen((const char *) n->data.scalar.value) != n->data.scalar.length) {
                cc->problem(cc->userdata, &n->start_mark, "%s contains a NUL byte", what);
                return NULL;
        }
        return (const char *) n->data.scalar.value;
}

static int value_set(CondValue *cv, const char *text) {
        cv->text = mem_strdup(text);
        if (!cv->text)
                return -ENOMEM;
        cv->is_number = parse_number(text, &cv->number);
        cv->is_int = parse_int64(text, &cv->integer);
        if (strcasecmp(text, "true") == 0)
                cv->is_bool = cv->boolean = true;
        else if (strcasecmp(text, "false") == 0)
                cv->is_bool = true;
        return 0;
}

static Condition *compile(Compiler *cc, yaml_node_t *node, unsigned depth);

static int compile_children(Compiler *cc, Condition *c, yaml_node_t *node, const char *key, unsigned depth) {
        yaml_node_item_t *item;
        size_t n;
        bool failed = false;

        if (c->kind == COND_NOT) {
                c->children = mem_calloc(1, sizeof(Condition *));
                if (!c->children)
                        return -ENOMEM;
                c->children[0] = compile(cc, node, depth + 1);
                if (!c->children[0])
                        return -EINVAL;
                c->n_children = 1;
                return 0;
        }

        if (node->type != YAML_SEQUENCE_NODE) {
                cc->problem(cc->userdata, &node->start_mark, "'%s' takes a list of conditions", key);
                return -EINVAL;
        }
        n = (size_t) (node->data.sequence.items.top - node->data.sequence.items.start);
        if (n == 0) {
                cc->problem(cc->userdata, &node->start_mark, "'%s' needs at least one condition", key);
                return -EINVAL;
        }
        if (n > LIMIT_CONFIG_LIST_ITEMS) {
                cc->problem(cc->userdata, &node->start_mark, "'%s' has more than LIMIT_CONFIG_LIST_ITEMS (%u) items",
                            key, LIMIT_CONFIG_LIST_ITEMS);
                return -EINVAL;
        }
        c->children = mem_calloc(n, sizeof(Condition *));
        if (!c->children)
                return -ENOMEM;
        for (item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++) {
                Condition *child = compile(cc, yaml_document_get_node(cc->doc, *item), depth + 1);

                if (!child) {
                        failed = true;
                        if (cc->nodes > LIMIT_CONFIG_CONDITION_NODES)
                                break;
                        continue;
                }
                c->children[c->n_children++] = child;
        }
        return failed ? -EINVAL : 0;
}

static int compile_operand(Compiler *cc, Condition *c, yaml_node_t *v) {
        const char *s, *name = ops[c->op].name;
        int r;

        switch (ops[c->op].arg) {
        case ARG_LIST: {
                size_t n;

                if (v->type != YAML_SEQUENCE_NODE) {
                        cc->problem(cc->userdata, &v->start_mark, "'%s' takes a list of values", name);
                        return -EINVAL;
                }
                n = (size_t) (v->data.sequence.items.top - v->data.sequence.items.start);
                if (n > LIMIT_CONFIG_LIST_ITEMS) {
                        cc->problem(cc->userdata, &v->start_mark, "'%s' has more than LIMIT_CONFIG_LIST_ITEMS (%u) items",
                                    name, LIMIT_CONFIG_LIST_ITEMS);
                        return -EINVAL;
                }
                c->values = mem_calloc(n ? n : 1, sizeof(CondValue));
                if (!c->values)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        yaml_node_t *item = yaml_document_get_node(cc->doc, v->data.sequence.items.start[i]);

                        s = scalar(cc, item, "a list value");
                        if (!s)
                                return -EINVAL;
                        r = value_set(&c->values[c->n_values], s);
                        if (r < 0)
                                return r;
                        c->n_values++;
                }
                return 0;
        }
        case ARG_BOOL:
                s = scalar(cc, v, name);
                if (!s)
                        return -EINVAL;
                if (confutil_parse_bool(s, &c->exists) < 0) {
                        cc->problem(cc->userdata, &v->start_mark, "'%s' takes true or false, not '%s'", name, s);
                        return -EINVAL;
                }
                return 0;
        default:
                break;
        }

        s = scalar(cc, v, name);
        if (!s)
                return -EINVAL;
        c->values = mem_calloc(1, sizeof(CondValue));
        if (!c->values)
                return -ENOMEM;
        r = value_set(&c->values[0], s);
        if (r < 0)
                return r;
        c->n_values = 1;
        if (ops[c->op].arg == ARG_NUMBER && !c->values[0].is_number) {
                cc->problem(cc->userdata, &v->start_mark, "'%s' takes a number, not '%s'", name, s);
                return -EINVAL;
        }
        if (ops[c->op].arg == ARG_REGEX && strlen(s) > LIMIT_REGEX_BYTES) {
                cc->problem(cc->userdata, &v->start_mark, "regular expression longer than LIMIT_REGEX_BYTES (%u bytes)",
                            LIMIT_REGEX_BYTES);
                return -EINVAL;
        }
        return 0;
}

static const char *const leaf_keys[] = {
        "field", "ignore_case", "all", "any", "not",
        "equals", "not_equals", "in", "not_in", "contains", "starts_with", "ends_with",
        "matches", "exists", "gt", "gte", "lt", "lte",
};

static Condition *compile(Compiler *cc, yaml_node_t *node, unsigned depth) {
        _cleanup_(rules_condition_freep) Condition *c = NULL;
        yaml_node_pair_t *pair;
        yaml_node_t *op_node = NULL, *op_key = NULL;
        size_t n_pairs;
        bool failed = false, have_ic = false;
        int r;

        if (depth > LIMIT_CONFIG_CONDITION_DEPTH) {
                cc->problem(cc->userdata, &node->start_mark,
                            "conditions nested deeper than LIMIT_CONFIG_CONDITION_DEPTH (%u)",
                            LIMIT_CONFIG_CONDITION_DEPTH);
                return NULL;
        }
        if (++cc->nodes > LIMIT_CONFIG_CONDITION_NODES) {
                if (!cc->nodes_reported)
                        cc->problem(cc->userdata, &node->start_mark,
                                    "condition has more than LIMIT_CONFIG_CONDITION_NODES (%u) nodes",
                                    LIMIT_CONFIG_CONDITION_NODES);
                cc->nodes_reported = true;
                return NULL;
        }
        if (node->type != YAML_MAPPING_NODE) {
                cc->problem(cc->userdata, &node->start_mark,
                            "a condition must be a mapping: {all: [...]}, {any: [...]}, {not: ...} or {field: PATH, OPERATOR: VALUE}");
                return NULL;
        }

        c = mem_calloc(1, sizeof(Condition));
        if (!c)
                return NULL;
        c->kind = COND_LEAF;
        c->op = _OP_INVALID;

        n_pairs = (size_t) (node->data.mapping.pairs.top - node->data.mapping.pairs.start);
        for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = yaml_document_get_node(cc->doc, pair->key);
                yaml_node_t *v = yaml_document_get_node(cc->doc, pair->value);
                const char *key = scalar(cc, k, "a condition key");
                CondOp op;

                if (!key) {
                        failed = true;
                        continue;
                }

                if (streq(key, "all") || streq(key, "any") || streq(key, "not")) {
                        if (n_pairs != 1) {
                                cc->problem(cc->userdata, &k->start_mark,
                                            "'%s' cannot be combined with other keys in one condition", key);
                                return NULL;
                        }
                        c->kind = streq(key, "all") ? COND_ALL : streq(key, "any") ? COND_ANY : COND_NOT;
                        r = compile_children(cc, c, v, key, depth);
                        if (r < 0)
                                return NULL;
                        return TAKE_PTR(c);
                }

                if (streq(key, "field")) {
                        const char *s = scalar(cc, v, "field");

                        if (!s) {
                                failed = true;
                                continue;
                        }
                        jpath_free(c->field);
                        c->field = NULL;
                        r = jpath_compile(s, &c->field);
                        if (r == -ENOMEM)
                                return NULL;
                        if (r < 0) {
                                cc->problem(cc->userdata, &v->start_mark, "invalid field path '%s'", s);
                                failed = true;
                        }
                        continue;
                }
                if (streq(key, "ignore_case")) {
                        const char *s = scalar(cc, v, "ignore_case");

                        if (!s || confutil_parse_bool(s, &c->ignore_case) < 0) {
                                if (s)
                                        cc->problem(cc->userdata, &v->start_mark,
                                                    "'ignore_case' takes true or false, not '%s'", s);
                                failed = true;
                        }
                        have_ic = true;
                        continue;
                }

                op = op_from_string(key);
                if (op < 0) {
                        const char *dym = confutil_suggest(key, leaf_keys, ELEMENTSOF(leaf_keys));

                        if (dym)
                                cc->problem(cc->userdata, &k->start_mark,
                                            "unknown condition operator '%s', did you mean '%s'?", key, dym);
                        else
                                cc->problem(cc->userdata, &k->start_mark,
                                            "unknown condition operator '%s' (one of equals, not_equals, in, not_in, "
                                            "contains, starts_with, ends_with, matches, exists, gt, gte, lt, lte)", key);
                        failed = true;
                        continue;
                }
                if (op_key) {
                        cc->problem(cc->userdata, &k->start_mark,
                                    "a condition takes exactly one operator, got '%s' and '%s'",
                                    (const char *) op_key->data.scalar.value, key);
                        failed = true;
                        continue;
                }
                op_key = k;
                op_node = v;
                c->op = op;
        }
        if (failed)
                return NULL;

        if (!c->field) {
                cc->problem(cc->userdata, &node->start_mark, "condition has no 'field'");
                return NULL;
        }
        if (!op_key) {
                cc->problem(cc->userdata, &node->start_mark,
                            "condition on '%s' has no operator (one of equals, not_equals, in, not_in, contains, "
                            "starts_with, ends_with, matches, exists, gt, gte, lt, lte)", jpath_text(c->field));
                return NULL;
        }
        if (have_ic && !ops[c->op].string_op) {
                cc->problem(cc->userdata, &node->start_mark, "'ignore_case' does not apply to '%s'", ops[c->op].name);
                return NULL;
        }
        r = compile_operand(cc, c, op_node);
        if (r < 0)
                return NULL;
        if (c->op == OP_MATCHES) {
                uint64_t x = rules_regex_cost(c->values[0].text);

                if (x == UINT64_MAX) {
                        cc->problem(cc->userdata, &op_node->start_mark,
                                    "regular expression '%s' stacks repetition operators (such as 'a*+' or "
                                    "'a{2}{3}'), which POSIX leaves undefined; group instead: '(a*)+'",
                                    c->values[0].text);
                        return NULL;
                }
                if (x > LIMIT_REGEX_COMPILE_BYTES) {
                        cc->problem(cc->userdata, &op_node->start_mark,
                                    "regular expression '%s' is too complex: compiling it would take about %" PRIu64
                                    " MiB, more than %u MiB (nested, stacked or optional repetitions multiply)",
                                    c->values[0].text, x >> 20, LIMIT_REGEX_COMPILE_BYTES >> 20);
                        return NULL;
                }
                if (cc->regex_budget) {
                        if (x > *cc->regex_budget) {
                                cc->problem(cc->userdata, &op_node->start_mark,
                                            "regular expression '%s' is over the configuration's budget: all its "
                                            "patterns together may take %u MiB to compile", c->values[0].text,
                                            LIMIT_CONFIG_REGEX_COMPILE_BYTES >> 20);
                                return NULL;
                        }
                        *cc->regex_budget -= x;
                }
                r = regcomp(&c->regex, c->values[0].text,
                            REG_EXTENDED | REG_NOSUB | (c->ignore_case ? REG_ICASE : 0));
                if (r != 0) {
                        char err[256];

                        regerror(r, &c->regex, err, sizeof(err));
                        cc->problem(cc->userdata, &op_node->start_mark, "invalid regular expression '%s': %s",
                                    c->values[0].text, err);
                        return NULL;
                }
                c->have_regex = true;
        }
        return TAKE_PTR(c);
}

Condition *rules_condition_compile_budget(yaml_document_t *doc, yaml_node_t *node, ConfutilProblemFn problem,
                                          void *userdata, uint64_t *regex_budget) {
        Compiler cc = {
                .doc = doc,
                .problem = problem,
                .userdata = userdata,
                .regex_budget = regex_budget,
        };

        return compile(&cc, node, 1);
}

Condition *rules_condition_compile(yaml_document_t *doc, yaml_node_t *node, ConfutilProblemFn problem, void *userdata) {
        return rules_condition_compile_budget(doc, node, problem, userdata, NULL);
}

/* --- describing (explain, trace) ---------------------------------------- */

static bool value_bare(const CondValue *v) {
        return v->is_number || v->is_bool;
}

static int describe(const Condition *c, StrBuf *b) {
        int r = 0;

        switch (c->kind) {
        case COND_ALL:
        case COND_ANY:
                r = strbuf_puts(b, c->kind == COND_ALL ? "all [" : "any [");
                for (size_t i = 0; r >= 0 && i < c->n_children; i++) {
                        if (i > 0)
                                r = strbuf_puts(b, "; ");
                        if (r >= 0)
                                r = describe(c->children[i], b);
                }
                return r < 0 ? r : strbuf_puts(b, "]");
        case COND_NOT:
                r = strbuf_puts(b, "not (");
                if (r >= 0)
                        r = describe(c->children[0], b);
                return r < 0 ? r : strbuf_puts(b, ")");
        case COND_LEAF:
                r = strbuf_printf(b, "%s %s ", jpath_text(c->field), ops[c->op].name);
                if (r < 0)
                        return r;
                if (c->op == OP_EXISTS)
                        return strbuf_puts(b, c->exists ? "true" : "false");
                if (ops[c->op].arg == ARG_LIST) {
                        r = strbuf_puts(b, "[");
                        for (size_t i = 0; r >= 0 && i < c->n_values; i++)
                                r = strbuf_printf(b, "%s%s", i > 0 ? ", " : "", c->values[i].text);
                        return r < 0 ? r : strbuf_puts(b, "]");
                }
                if (value_bare(&c->values[0]))
                        return strbuf_puts(b, c->values[0].text);
                return strbuf_printf(b, "\"%s\"", c->values[0].text);
        }
        return -EINVAL;
}

static int describe_failure(const Failure *f, StrBuf *b) {
        _cleanup_free_ char *seen = NULL;
        int r;

        r = describe(f->cond, b);
        if (r < 0)
                return r;
        switch (f->cond->kind) {
        case COND_ANY:
                return strbuf_puts(b, " failed: none held");
        case COND_NOT:
                return strbuf_puts(b, " failed: the inner condition held");
        case COND_ALL:
                return strbuf_puts(b, " failed");
        case COND_LEAF:
                break;
        }
        if (!f->seen)
                return strbuf_puts(b, " failed: field missing");
        seen = log_escape(json_object_to_json_string_ext(f->seen, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), 200);
        if (!seen)
                return -ENOMEM;
        return strbuf_printf(b, " failed: value %s", seen);
}

/* --- the walk ------------------------------------------------------------ */

void rule_hits_free(RuleHits *h) {
        if (!h)
                return;
        for (size_t i = 0; i < h->n; i++) {
                mem_free(h->hits[i].user);
                mem_free(h->hits[i].reason);
                mem_free(h->hits[i].missing);
        }
        mem_free(h->hits);
        *h = (RuleHits) {};
}

typedef struct Walk {
        const Config *config;
        const char *source;
        json_object *event;
        RuleHits hits;
        StrBuf *out;      /* explain text, or NULL */
        bool verbose;     /* build lines: explain, or TRACE_RULES on */
        unsigned acting;  /* hits that would act (resolved, not protected) */
        unsigned undecided; /* of those, the ones the directory, cooldowns or the cap could still stop */
        PathMemo *memo;   /* lookups from the event root, this walk only */
} Walk;

/* Emits one finished line: to the explain text and to the trace. */
static int emit(Walk *w, StrBuf *line) {
        int r = 0;

        if (!w->verbose)
                return 0;
        log_trace(TRACE_RULES, "%s", line->data ? line->data : "");
        if (w->out) {
                r = strbuf_printf(w->out, "%s\n", line->data ? line->data : "");
                if (r < 0)
                        return r;
        }
        strbuf_reset(line);
        return 0;
}

/* The user template: a missing path, or an output over the limit (as
 * useless, and deterministic: not worth a retry), leaves the hit
 * unresolved with *ret_missing naming why. */
static int render_user(const Template *t, json_object *value, json_object *event, char **ret, char **ret_missing) {
        int r;

        r = template_render(t, value, event, ret, ret_missing);
        if (r == -E2BIG) {
                *ret_missing = mem_strdup(template_text(t));
                return *ret_missing ? -ENOENT : -ENOMEM;
        }
        return r;
}

/* What the daemon's loop would decide for a hit without the directory
 * (safety_pre_status(): resolution, then protected), then dry-run: the
 * part of the chain explain can know from the config alone. */
static ActionStatus offline_status(const Config *c, const RuleHit *hit) {
        ActionStatus s;

        s = safety_pre_status(c, hit->user, DIRECTORY_PENDING, hit->user && is_user_id(hit->user) ? hit->user : NULL);
        return safety_guard_status(s, false, hit->rule->dry_run || c->safety.dry_run, false);
}

static int add_hit(Walk *w, const Rule *rule, json_object *value, long element, StrBuf *line) {
        RuleHit hit = { .rule = rule }, *n;
        ActionStatus status;
        int r;

        if (w->hits.n >= LIMIT_ACTIONS_PER_EVENT)
                return -ENOBUFS;

        /* Contract 3.3: only the user template can leave an action
         * unresolved; a reason with a missing path still goes ahead. */
        r = render_user(rule->user, value, w->event, &hit.user, &hit.missing);
        if (r < 0 && r != -ENOENT)
                return r;
        if (rule->reason) {
                r = template_render_text(rule->reason, value, w->event, &hit.reason);
                if (r < 0)
                        goto fail;
        }

        n = mem_reallocarray(w->hits.hits, w->hits.n + 1, sizeof(RuleHit));
        if (!n) {
                r = -ENOMEM;
                goto fail;
        }
        w->hits.hits = n;
        w->hits.hits[w->hits.n++] = hit;

        status = offline_status(w->config, &hit);
        /* The directory and cooldowns come before dry-run in the chain:
         * either status is only as far as the config can tell. */
        if (status == ACTION_STATUS_QUEUED || status == ACTION_STATUS_DRY_RUN) {
                w->acting++;
                w->undecided++;
        }

        if (!w->verbose)
                return 0;
        r = strbuf_printf(line, "rule %s: match: %s", rule->name, config_action_kind_to_string(rule->action));
        if (r >= 0 && element >= 0)
                r = strbuf_printf(line, " (for_each element %ld)", element);
        if (r >= 0) {
                switch (status) {
                case ACTION_STATUS_UNRESOLVED:
                        r = strbuf_printf(line, ": unresolved: missing %s", hit.missing);
                        break;
                case ACTION_STATUS_PROTECTED:
                        r = strbuf_printf(line, ": protected: user %s is in safety.protected_users", hit.user);
                        break;
                case ACTION_STATUS_DRY_RUN:
                        r = strbuf_printf(line, ": dry_run: would act on user %s", hit.user);
                        break;
                default:
                        r = strbuf_printf(line, ": would act on user %s", hit.user);
                        break;
                }
        }
        if (r >= 0 && hit.reason)
                r = strbuf_printf(line, " (reason: %s)", hit.reason);
        if (r == -E2BIG)
                r = 0; /* a truncated explain line is fine */
        if (r < 0)
                return r;
        return emit(w, line);

fail:
        mem_free(hit.user);
        mem_free(hit.reason);
        mem_free(hit.missing);
        return r;
}

static bool rule_wants_source(const Rule *rule, const char *source) {
        return rule->any_source || strv_contains(rule->sources, source);
}

/* Returns 1 if the rule matched, 0 if not, or a negative errno. */
static int walk_rule(Walk *w, const Rule *rule, StrBuf *line) {
        Failure f = {};
        json_object *array;
        size_t n;
        bool any = false, have_failure = false;
        long failed_element = -1;
        int r;

        if (!rule_wants_source(rule, w->source)) {
                if (!w->verbose)
                        return 0;
                r = strbuf_printf(line, "rule %s: skipped: source %s is not one of this rule's sources", rule->name, w->source);
                return r < 0 ? r : emit(w, line);
        }

        r = rule->when ? eval(rule->when, w->event, NULL, w->memo) : 1;
        if (r < 0)
                return r;
        if (r == 0) {
                if (!w->verbose)
                        return 0;
                (void) eval(rule->when, w->event, &f, w->memo);
                r = strbuf_printf(line, "rule %s: no match: ", rule->name);
                if (r >= 0)
                        r = describe_failure(&f, line);
                if (r < 0 && r != -E2BIG)
                        return r;
                return emit(w, line);
        }

        if (!rule->for_each) {
                r = add_hit(w, rule, w->event, -1, line);
                return r < 0 ? r : 1;
        }

        array = jpath_lookup(rule->for_each, w->event, NULL);
        if (!json_object_is_type(array, json_type_array)) {
                if (!w->verbose)
                        return 0;
                r = strbuf_printf(line, "rule %s: no match: for_each %s: %s", rule->name, jpath_text(rule->for_each),
                                  array ? "not an array" : "field missing");
                return r < 0 ? r : emit(w, line);
        }
        n = json_object_array_length(array);
        if (n > LIMIT_FOR_EACH_ITEMS)
                return -ENOBUFS;
        for (size_t i = 0; i < n; i++) {
                json_object *element = json_object_array_get_idx(array, i);

                if (!rule->where)
                        r = 1;
                else
                        r = eval(rule->where, element, have_failure ? NULL : &f, NULL);
                if (r < 0)
                        return r;
                if (r == 0) {
                        if (!have_failure)
                                failed_element = (long) i;
                        have_failure = true;
                        continue;
                }
                any = true;
                r = add_hit(w, rule, element, (long) i, line);
                if (r < 0)
                        return r;
        }
        if (any)
                return 1;
        if (!w->verbose)
                return 0;
        if (n == 0)
                r = strbuf_printf(line, "rule %s: no match: for_each %s: empty array", rule->name, jpath_text(rule->for_each));
        else {
                r = strbuf_printf(line, "rule %s: no match: for_each %s: no element passed where (element %ld: ",
                                  rule->name, jpath_text(rule->for_each), failed_element);
                if (r >= 0)
                        r = describe_failure(&f, line);
                if (r >= 0)
                        r = strbuf_puts(line, ")");
        }
        if (r < 0 && r != -E2BIG)
                return r;
        return emit(w, line);
}

static int walk(Walk *w) {
        _cleanup_(strbuf_free) StrBuf line;
        PathMemo memo = {};
        unsigned matched = 0;
        int r;

        w->memo = &memo;
        strbuf_init(&line, 4096);
        w->verbose = w->out || (log_get_trace() & TRACE_RULES);

        for (size_t i = 0; i < w->config->n_rules; i++) {
                const Rule *rule = &w->config->rules[i];

                r = walk_rule(w, rule, &line);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                matched++;
                if (!rule->stop)
                        continue;
                if (w->verbose) {
                        for (size_t j = i + 1; j < w->config->n_rules; j++) {
                                r = strbuf_printf(&line, "rule %s: not evaluated: rule %s matched with stop: true",
                                                  w->config->rules[j].name, rule->name);
                                if (r >= 0)
                                        r = emit(w, &line);
                                if (r < 0)
                                        return r;
                        }
                }
                break;
        }
        return (int) matched;
}

int rules_evaluate(const Config *c, const char *source_name, json_object *event, RuleHits *ret) {
        Walk w = {
                .config = c,
                .source = source_name,
                .event = event,
        };
        int r;

        r = walk(&w);
        if (r < 0) {
                rule_hits_free(&w.hits);
                return r;
        }
        if (ret->n == 0) {
                mem_free(ret->hits);
                *ret = w.hits;
        } else {
                RuleHit *n = mem_reallocarray(ret->hits, ret->n + w.hits.n, sizeof(RuleHit));

                if (!n) {
                        rule_hits_free(&w.hits);
                        return -ENOMEM;
                }
                memcpy(n + ret->n, w.hits.hits, w.hits.n * sizeof(RuleHit));
                ret->hits = n;
                ret->n += w.hits.n;
                mem_free(w.hits.hits);
        }
        return r;
}

int rules_explain(const Config *c, const char *source_name, json_object *event, char **ret_text) {
        _cleanup_(strbuf_free) StrBuf out;
        Walk w = {
                .config = c,
                .source = source_name,
                .event = event,
                .out = &out,
        };
        char *text;
        int r;

        strbuf_init(&out, 16u * 1024u * 1024u);
        r = walk(&w);
        rule_hits_free(&w.hits);
        if (r < 0)
                return r;
        if (c->n_rules == 0) {
                r = strbuf_puts(&out, "no rules configured\n");
                if (r < 0)
                        return r;
        }
        if (w.undecided > 0) {
                r = strbuf_puts(&out, "not known offline: the directory (unknown or ambiguous users, the user id of an "
                                      "email and whether it is protected), cooldowns, the cap and redeliveries; "
                                      "remedyctl explain --live asks the daemon\n");
                if (r < 0)
                        return r;
        }
        text = strbuf_steal(&out);
        if (!text)
                return -ENOMEM;
        *ret_text = text;
        return (int) w.acting;
}
