/* JSON paths (contract 3.2): dotted "a.b.0.c" where a key holding dots
 * matches literally (longest literal prefix first, then shorter ones), or
 * RFC 6901 pointers "/a/b~1c". Compiled once at config load. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "cleanup.h"
#include "remedyd-limits.h"
#include "rules.h"

struct JPath {
        char *text;
        uint64_t hash;  /* FNV-1a of text, for per-evaluation memos */
        bool pointer;
        /* dotted: segment i is text[start[i] .. end[i]); pointer: the
         * unescaped reference tokens in tokens[] */
        size_t *start, *end;
        char **tokens;
        size_t n;
};

JPath *jpath_free(JPath *p) {
        if (!p)
                return NULL;
        if (p->tokens)
                for (size_t i = 0; i < p->n; i++)
                        mem_free(p->tokens[i]);
        mem_free(p->tokens);
        mem_free(p->start);
        mem_free(p->end);
        mem_free(p->text);
        mem_free(p);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(JPath *, jpath_free, jpath_freep)

const char *jpath_text(const JPath *p) {
        return p ? p->text : NULL;
}

uint64_t jpath_hash(const JPath *p) {
        return p ? p->hash : 0;
}

static int pointer_unescape(const char *s, size_t n, char **ret) {
        char *out, *o;

        out = o = mem_malloc(n + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '~') {
                        *o++ = s[i];
                        continue;
                }
                if (i + 1 < n && s[i + 1] == '0')
                        *o++ = '~';
                else if (i + 1 < n && s[i + 1] == '1')
                        *o++ = '/';
                else {
                        mem_free(out);
                        return -EINVAL;
                }
                i++;
        }
        *o = 0;
        *ret = out;
        return 0;
}

int jpath_compile(const char *text, JPath **ret) {
        _cleanup_(jpath_freep) JPath *p = NULL;
        size_t len, n = 1;
        int r;

        if (!text || !*text)
                return -EINVAL;
        len = strlen(text);
        if (len > LIMIT_JPATH_BYTES)
                return -E2BIG;

        p = mem_calloc(1, sizeof(JPath));
        if (!p)
                return -ENOMEM;
        p->text = mem_strdup(text);
        if (!p->text)
                return -ENOMEM;
        p->hash = UINT64_C(14695981039346656037);
        for (size_t i = 0; i < len; i++)
                p->hash = (p->hash ^ (uint8_t) text[i]) * UINT64_C(1099511628211);

        if (text[0] == '/') {
                const char *s = text + 1;

                p->pointer = true;
                for (const char *c = s; *c; c++)
                        n += *c == '/';
                if (n > LIMIT_JPATH_SEGMENTS)
                        return -E2BIG;
                p->tokens = mem_calloc(n, sizeof(char *));
                if (!p->tokens)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *e = strchrnul(s, '/');

                        r = pointer_unescape(s, (size_t) (e - s), &p->tokens[i]);
                        if (r < 0)
                                return r;
                        p->n++;
                        s = *e ? e + 1 : e;
                }
        } else {
                size_t pos = 0;

                for (const char *c = text; *c; c++)
                        n += *c == '.';
                if (n > LIMIT_JPATH_SEGMENTS)
                        return -E2BIG;
                p->start = mem_calloc(n, sizeof(size_t));
                p->end = mem_calloc(n, sizeof(size_t));
                if (!p->start || !p->end)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *e = strchrnul(text + pos, '.');

                        if (e == text + pos)
                                return -EINVAL; /* empty segment: "a..b", ".a", "a." */
                        p->start[i] = pos;
                        p->end[i] = (size_t) (e - text);
                        pos = p->end[i] + 1;
                }
                p->n = n;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

/* Array index: decimal digits only, no sign, no leading zero (RFC 6901). */
static bool parse_index(const char *s, size_t n, size_t *ret) {
        size_t v = 0;

        if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (size_t) (s[i] - '0');
        }
        *ret = v;
        return true;
}

/* One step: key (n bytes, NUL-terminated in key) into cur. */
static bool step(json_object *cur, const char *key, size_t n, json_object **ret) {
        size_t idx;

        if (json_object_is_type(cur, json_type_object))
                return json_object_object_get_ex(cur, key, ret);
        if (json_object_is_type(cur, json_type_array) && parse_index(key, n, &idx) &&
            idx < json_object_array_length(cur)) {
                *ret = json_object_array_get_idx(cur, idx);
                return true;
        }
        return false;
}

/* Backtracks over literal-key splits, but within a step budget: the event
 * is untrusted, and keys for every prefix at every level would otherwise
 * make this exponential in the number of segments. */
static bool lookup_dotted(const JPath *p, size_t i, json_object *cur, char *scratch, unsigned *budget,
                          json_object **ret) {
        if (i == p->n) {
                *ret = cur;
                return true;
        }
        if (!cur)
                return false;
        /* Literal keys spanning several segments can only exist in an
         * object that has a key with a dot; most have none, and trying
         * every prefix there cost a hash lookup each (rules bench: lookups
         * were half of the time per event). */
        bool dotted_keys = false;
        if (p->n - i > 1 && json_object_is_type(cur, json_type_object)) {
                json_object_object_foreach(cur, key, val) {
                        (void) val;
                        if (strchr(key, '.')) {
                                dotted_keys = true;
                                break;
                        }
                }
        }
        /* Longest literal key first: "kibana.alert.rule.name" as one key
         * wins over nested objects, then shorter prefixes. */
        for (size_t j = p->n; j > i; j--) {
                size_t n = p->end[j - 1] - p->start[i];
                json_object *next = NULL;

                if (*budget == 0)
                        return false;
                if (j - 1 > i && !dotted_keys)
                        continue;
                memcpy(scratch, p->text + p->start[i], n);
                scratch[n] = 0;
                (*budget)--;
                if (step(cur, scratch, n, &next) && lookup_dotted(p, j, next, scratch, budget, ret))
                        return true;
        }
        return false;
}

json_object *jpath_lookup(const JPath *p, json_object *root, bool *found_null) {
        char scratch[LIMIT_JPATH_BYTES + 1];
        json_object *cur = root;
        bool found;

        if (found_null)
                *found_null = false;
        if (!p || !root)
                return NULL;

        if (p->pointer) {
                found = true;
                for (size_t i = 0; i < p->n && found; i++) {
                        if (!cur)
                                found = false;
                        else
                                found = step(cur, p->tokens[i], strlen(p->tokens[i]), &cur);
                }
        } else {
                unsigned budget = LIMIT_JPATH_LOOKUP_STEPS;

                found = lookup_dotted(p, 0, root, scratch, &budget, &cur);
        }

        if (!found)
                return NULL;
        if (!cur && found_null)
                *found_null = true;
        return cur;
}
