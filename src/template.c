/* Templates (contract 3.3): literal text, "${PATH}" and "${PATH:-TEXT}"
 * insertions and "$$" for a literal "$". Compiled once at load into parts. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "cleanup.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "strbuf.h"
#include "util.h"

typedef struct TemplatePart {
        char *literal;     /* or NULL for an insertion */
        JPath *path;       /* the path as written */
        JPath *event_path; /* for "${event.X}": X, looked up in the event root */
        char *fallback;    /* TEXT of "${PATH:-TEXT}", or NULL */
        size_t offset;     /* where the insertion starts in the text */
} TemplatePart;

struct Template {
        char *text;
        TemplatePart *parts;
        size_t n;
};

Template *template_free(Template *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++) {
                mem_free(t->parts[i].literal);
                jpath_free(t->parts[i].path);
                jpath_free(t->parts[i].event_path);
                mem_free(t->parts[i].fallback);
        }
        mem_free(t->parts);
        mem_free(t->text);
        mem_free(t);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Template *, template_free, template_freep)

const char *template_text(const Template *t) {
        return t ? t->text : NULL;
}

static TemplatePart *part_new(Template *t) {
        TemplatePart *p;

        p = mem_reallocarray(t->parts, t->n + 1, sizeof(TemplatePart));
        if (!p)
                return NULL;
        t->parts = p;
        p = &t->parts[t->n++];
        *p = (TemplatePart) {};
        return p;
}

static int flush_literal(Template *t, StrBuf *lit) {
        TemplatePart *p;

        if (lit->len == 0)
                return 0;
        p = part_new(t);
        if (!p)
                return -ENOMEM;
        p->literal = strbuf_steal(lit);
        return p->literal ? 0 : -ENOMEM;
}

int template_compile(const char *text, Template **ret, size_t *error_offset) {
        _cleanup_(template_freep) Template *t = NULL;
        _cleanup_(strbuf_free) StrBuf lit;
        size_t i = 0;
        int r;

        strbuf_init(&lit, LIMIT_CONFIG_STRING_BYTES);
        if (!text)
                return -EINVAL;

        t = mem_calloc(1, sizeof(Template));
        if (!t)
                return -ENOMEM;
        t->text = mem_strdup(text);
        if (!t->text)
                return -ENOMEM;

        while (text[i]) {
                const char *close, *dflt;
                _cleanup_free_ char *path = NULL;
                TemplatePart *p;

                if (text[i] != '$' || (text[i + 1] != '$' && text[i + 1] != '{')) {
                        r = strbuf_append(&lit, text + i, 1);
                        if (r < 0)
                                return r;
                        i++;
                        continue;
                }
                if (text[i + 1] == '$') {
                        r = strbuf_append(&lit, "$", 1);
                        if (r < 0)
                                return r;
                        i += 2;
                        continue;
                }

                close = strchr(text + i + 2, '}');
                if (!close || close == text + i + 2) {
                        if (error_offset)
                                *error_offset = i;
                        return -EINVAL;
                }
                /* "${PATH:-TEXT}": TEXT runs to the first "}" (so it
                 * holds none), and may be empty. */
                dflt = strstr(text + i + 2, ":-");
                if (dflt && dflt > close)
                        dflt = NULL;
                if (dflt == text + i + 2) {
                        if (error_offset)
                                *error_offset = i;
                        return -EINVAL;
                }
                path = mem_strndup(text + i + 2, (size_t) ((dflt ? dflt : close) - (text + i + 2)));
                if (!path)
                        return -ENOMEM;

                r = flush_literal(t, &lit);
                if (r < 0)
                        return r;
                p = part_new(t);
                if (!p)
                        return -ENOMEM;
                p->offset = i;
                if (dflt) {
                        p->fallback = mem_strndup(dflt + 2, (size_t) (close - (dflt + 2)));
                        if (!p->fallback)
                                return -ENOMEM;
                }
                r = jpath_compile(path, &p->path);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        if (error_offset)
                                *error_offset = i;
                        return -EINVAL;
                }
                if (str_startswith(path, "event.") && path[strlen("event.")]) {
                        r = jpath_compile(path + strlen("event."), &p->event_path);
                        if (r == -ENOMEM)
                                return r;
                        if (r < 0) {
                                if (error_offset)
                                        *error_offset = i;
                                return -EINVAL;
                        }
                }
                i = (size_t) (close - text) + 1;
        }
        r = flush_literal(t, &lit);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(t);
        return 0;
}

/* Strings as-is, numbers and booleans in JSON form, objects and arrays as
 * JSON text. NULL (JSON null) counts as missing. */
static int append_value(StrBuf *b, json_object *v) {
        if (json_object_is_type(v, json_type_string))
                return strbuf_append(b, json_object_get_string(v), (size_t) json_object_get_string_len(v));
        return strbuf_puts(b, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static json_object *part_lookup(const TemplatePart *p, json_object *value, json_object *event_root) {
        json_object *v;

        /* Inside for_each, ${event.X} is X in the whole event. Elsewhere the
         * event is the value: "event.X" is tried as written first (an event
         * may well have an "event" key), then as X. */
        if (p->event_path && event_root && event_root != value)
                return jpath_lookup(p->event_path, event_root, NULL);
        v = jpath_lookup(p->path, value, NULL);
        if (!v && p->event_path)
                v = jpath_lookup(p->event_path, value, NULL);
        return v;
}

bool template_has_default(const Template *t, size_t *ret_offset) {
        for (size_t i = 0; t && i < t->n; i++)
                if (t->parts[i].fallback) {
                        if (ret_offset)
                                *ret_offset = t->parts[i].offset;
                        return true;
                }
        return false;
}

/* strict: a missing path without a default fails the rendering (-ENOENT);
 * otherwise it is written as "(missing PATH)". */
static int render(const Template *t, json_object *value, json_object *event_root, bool strict, StrBuf *b,
                  char **ret_missing) {
        int r;

        for (size_t i = 0; i < t->n; i++) {
                const TemplatePart *p = &t->parts[i];
                json_object *v;

                if (p->literal) {
                        r = strbuf_puts(b, p->literal);
                        if (r < 0)
                                return r;
                        continue;
                }
                v = part_lookup(p, value, event_root);
                if (v)
                        r = append_value(b, v);
                else if (p->fallback)
                        r = strbuf_puts(b, p->fallback);
                else if (!strict)
                        r = strbuf_printf(b, "(missing %s)", jpath_text(p->path));
                else {
                        if (ret_missing) {
                                char *m = mem_strdup(jpath_text(p->path));
                                if (!m)
                                        return -ENOMEM;
                                *ret_missing = m;
                        }
                        return -ENOENT;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int template_render(const Template *t, json_object *value, json_object *event_root, char **ret, char **ret_missing) {
        _cleanup_(strbuf_free) StrBuf b;
        char *s;
        int r;

        strbuf_init(&b, LIMIT_TEMPLATE_OUTPUT_BYTES);
        r = render(t, value, event_root, true, &b, ret_missing);
        if (r < 0)
                return r;
        s = strbuf_steal(&b);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int template_render_text(const Template *t, json_object *value, json_object *event_root, char **ret) {
        _cleanup_(strbuf_free) StrBuf b;
        char *s;
        int r;

        strbuf_init(&b, LIMIT_TEMPLATE_OUTPUT_BYTES);
        r = render(t, value, event_root, false, &b, NULL);
        /* Past the limit, what fit stands (a part is appended whole or
         * not at all): a long reason is no reason to drop an action. */
        if (r < 0 && r != -E2BIG)
                return r;
        s = strbuf_steal(&b);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}
