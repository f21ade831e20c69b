/* JSON paths, templates and conditions on arbitrary bytes. The input is
 * TEXT "\n" JSON: TEXT is compiled as a path (jpath_compile) and as a
 * template (template_compile), JSON is parsed as the webhook parses a body
 * (depth LIMIT_JSON_DEPTH) into any JSON value. Then:
 *   - the path is looked up (with and without found_null), and when it
 *     finds an array, the template is rendered against every element (the
 *     for_each shape, ${event.X} reaching the root);
 *   - the template is rendered against the document, strictly (user,
 *     event_id) and as a text (reason: ${PATH:-TEXT} defaults and
 *     "(missing PATH)", never failing but for memory), and the two agree;
 *   - conditions with TEXT as the field, one per operator (ignore_case on
 *     and off, under all/any/not; a quarter of them per input, picked by
 *     its last byte), are compiled from YAML exactly as config.c does and
 *     evaluated against the document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yaml.h>

#include "alloc.h"
#include "fuzz.h"
#include "remedyd-limits.h"
#include "rules.h"

/* %s is the field, as a YAML double-quoted string body. */
static const char *const condition_templates[] = {
        "{field: \"%s\", equals: admin@example.com}",
        "{field: \"%s\", equals: 5}",
        "{field: \"%s\", equals: true}",
        "{field: \"%s\", equals: \"\"}",
        "{field: \"%s\", not_equals: x, ignore_case: true}",
        "{field: \"%s\", in: [high, critical, 5, 2.5, true, \"\"], ignore_case: true}",
        "{field: \"%s\", in: [High]}",
        "{field: \"%s\", not_in: [low, 0]}",
        "{field: \"%s\", contains: \"@\"}",
        "{field: \"%s\", contains: ADMIN, ignore_case: yes}",
        "{field: \"%s\", starts_with: a}",
        "{field: \"%s\", ends_with: .COM, ignore_case: true}",
        "{field: \"%s\", matches: \"^[a-z0-9._%%+-]+@(example|corp)\\\\.com$\"}",
        "{field: \"%s\", matches: \"(a|b)*c\", ignore_case: true}",
        "{field: \"%s\", exists: true}",
        "{field: \"%s\", exists: false}",
        "{field: \"%s\", gt: 5}",
        "{field: \"%s\", gte: -0.5}",
        "{field: \"%s\", lt: 1e3}",
        "{field: \"%s\", lte: 100}",
        "{all: [{field: \"%s\", exists: true}, {not: {field: sid, equals: x}}]}",
        "{any: [{field: \"%s\", gt: 1}, {field: \"%s\", contains: a}]}",
        "{not: {any: [{field: \"%s\", in: [a, b]}, {all: [{field: \"%s\", lt: 0}]}]}}",
};

static void no_problem(void *userdata, const yaml_mark_t *mark, const char *fmt, ...) {
}

static char *yaml_escape(const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        char *buf = mem_malloc(4 * n + 1), *o = buf;

        if (!buf)
                abort();
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];

                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '/' || c == '~')
                        *o++ = (char) c;
                else {
                        *o++ = '\\';
                        *o++ = 'x';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                }
        }
        *o = 0;
        return buf;
}

/* A quarter of the conditions per input (the input's last byte picks
 * which quarter), in one YAML flow sequence: one parser per input. Building
 * every condition for every input (23 parsers, 4 regcomp) made this target
 * run at ~1,600 inputs/s; the fuzzer still reaches every operator. */
#define CONDITION_GROUPS 4

static void eval_conditions(const char *field, size_t field_len, unsigned group, json_object *doc) {
        const size_t n_all = sizeof(condition_templates) / sizeof(condition_templates[0]);
        const size_t n_templates = (n_all - group + CONDITION_GROUPS - 1) / CONDITION_GROUPS;
        char *esc = yaml_escape(field, field_len);
        size_t esc_len = strlen(esc);
        size_t cap = n_templates * (2 * esc_len + 128) + 16, len = 0;
        char *yaml_text = mem_malloc(cap);
        yaml_parser_t parser;
        yaml_document_t d;
        yaml_node_t *root;

        if (!yaml_text)
                abort();
        yaml_text[len++] = '[';
        for (size_t i = 0; i < n_templates; i++) {
                int n;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                n = snprintf(yaml_text + len, cap - len, condition_templates[group + i * CONDITION_GROUPS], esc, esc);
#pragma GCC diagnostic pop
                if (n < 0 || (size_t) n + 2 >= cap - len)
                        abort();
                len += (size_t) n;
                yaml_text[len++] = i + 1 < n_templates ? ',' : ']';
        }
        if (!yaml_parser_initialize(&parser))
                abort();
        yaml_parser_set_input_string(&parser, (const unsigned char *) yaml_text, len);
        /* The escaping makes every field a valid scalar. */
        if (!yaml_parser_load(&parser, &d))
                abort();
        root = yaml_document_get_root_node(&d);
        if (!root || root->type != YAML_SEQUENCE_NODE ||
            (size_t) (root->data.sequence.items.top - root->data.sequence.items.start) != n_templates)
                abort();
        for (yaml_node_item_t *item = root->data.sequence.items.start; item < root->data.sequence.items.top; item++) {
                yaml_node_t *node = yaml_document_get_node(&d, *item);
                Condition *c = node ? rules_condition_compile(&d, node, no_problem, NULL) : NULL;

                if (c) {
                        int r = rules_condition_eval(c, doc);

                        if (r < 0 && r != -ENOMEM)
                                abort();
                        rules_condition_free(c);
                }
        }
        yaml_document_delete(&d);
        yaml_parser_delete(&parser);
        mem_free(yaml_text);
        mem_free(esc);
}

static json_object *parse_json(const char *s, size_t n) {
        json_tokener *tok;
        json_object *o;

        if (n > INT32_MAX)
                return NULL;
        tok = json_tokener_new_ex(LIMIT_JSON_DEPTH);
        if (!tok)
                abort();
        o = json_tokener_parse_ex(tok, s, (int) n);
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

static void render(const Template *t, json_object *value, json_object *root) {
        char *out = NULL, *missing = NULL, *text = NULL;
        int r, rt;

        r = template_render(t, value, root, &out, &missing);
        if (r >= 0) {
                if (!out || missing)
                        abort();
                if (strlen(out) > LIMIT_TEMPLATE_OUTPUT_BYTES)
                        abort();
        } else if (r == -ENOENT && !missing)
                abort();

        rt = template_render_text(t, value, root, &text);
        if (rt == -ENOMEM)
                goto out;
        if (rt < 0 || !text || strlen(text) > LIMIT_TEMPLATE_OUTPUT_BYTES)
                abort();
        /* nothing missing: the same bytes either way */
        if (r >= 0 && strcmp(out, text) != 0)
                abort();
        /* a missing path without a default is named in the text (unless
         * the output limit cut it off) */
        if (r == -ENOENT && strlen(text) + strlen(missing) + 16 < LIMIT_TEMPLATE_OUTPUT_BYTES) {
                char *want = NULL;

                if (asprintf(&want, "(missing %s)", missing) < 0)
                        goto out;
                if (!strstr(text, want))
                        abort();
                free(want);
        }
out:
        mem_free(out);
        mem_free(missing);
        mem_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *nl = memchr(data, '\n', size);
        size_t text_len = nl ? (size_t) ((const uint8_t *) nl - data) : size;
        char *text = mem_strndup((const char *) data, text_len);
        json_object *doc = NULL;
        Template *t = NULL;
        JPath *p = NULL;
        size_t err_off = 0;

        fuzz_quiet_logs();
        if (!text)
                abort();
        if (nl)
                doc = parse_json(nl + 1, size - text_len - 1);
        if (!doc)
                doc = json_object_new_object();
        if (!doc)
                abort();

        if (jpath_compile(text, &p) >= 0) {
                bool found_null = false;
                json_object *v;

                if (strcmp(jpath_text(p), text) != 0)
                        abort();
                v = jpath_lookup(p, doc, NULL);
                if (jpath_lookup(p, doc, &found_null) != v)
                        abort();
                if (v && found_null)
                        abort();
                if (template_compile(text, &t, &err_off) >= 0 && json_object_is_type(v, json_type_array)) {
                        size_t n = json_object_array_length(v);

                        for (size_t i = 0; i < n && i < LIMIT_FOR_EACH_ITEMS; i++)
                                render(t, json_object_array_get_idx(v, i), doc);
                }
                p = jpath_free(p);
        }
        if (t || template_compile(text, &t, &err_off) >= 0) {
                if (strcmp(template_text(t), text) != 0)
                        abort();
                render(t, doc, doc);
                t = template_free(t);
        } else if (err_off > text_len)
                abort();

        eval_conditions((const char *) data, text_len, size > 0 ? data[size - 1] % CONDITION_GROUPS : 0, doc);

        json_object_put(doc);
        mem_free(text);
        return 0;
}
