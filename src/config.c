/* The configuration engine (contract section 3): every file parsed with
 * libyaml's document API so each node keeps its start mark, mapped through
 * tables of key -> parser -> offset into an immutable Config, with every
 * problem collected as "FILE:LINE:COLUMN: message" before failing.
 *
 * It owns the document walk, the marks and problem list, the generic
 * field parsers, secret and included files, config_load() and
 * config_free(); each section's keys, validators and defaults are in its
 * config_SECTION.c (config-section.h is the contract). It calls
 * confutil.h, listen.h's types (in config.h) and the foundation, and the
 * sections only through the hooks of config-section.h: never rules.h or
 * store.h. */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#include "alloc.h"
#include "cleanup.h"
#include "config-section.h"
#include "config.h"
#include "confutil.h"
#include "remedyd-limits.h"
#include "util.h"

struct Include {
        char *glob;        /* resolved against the main file's directory */
        ConfigMark mark;
};

/* --- problems ----------------------------------------------------------- */

void config_problem(Loader *l, const yaml_mark_t *m, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        confutil_problemv(&l->problems, l->file, (unsigned) m->line + 1, (unsigned) m->column + 1, fmt, ap);
        va_end(ap);
}

void config_problem_at(Loader *l, const ConfigMark *m, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        confutil_problemv(&l->problems, m->file, m->line, m->column, fmt, ap);
        va_end(ap);
}

void config_problem_unknown(Loader *l, const ConfigMark *m, const char *word, const char *const *candidates, size_t n,
                            const char *otherwise, const char *fmt, ...) {
        const char *dym = confutil_suggest(word, candidates, n);
        char msg[2048];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (dym)
                config_problem_at(l, m, "%s, did you mean '%s'?", msg, dym);
        else
                config_problem_at(l, m, "%s%s", msg, otherwise);
}

static void problem_file(Loader *l, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem_file(Loader *l, const char *file, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        confutil_problemv(&l->problems, file, 0, 0, fmt, ap);
        va_end(ap);
}

void config_problem_sink(void *userdata, const yaml_mark_t *mark, const char *fmt, ...) {
        Loader *l = userdata;
        va_list ap;

        va_start(ap, fmt);
        confutil_problemv(&l->problems, l->file, (unsigned) mark->line + 1, (unsigned) mark->column + 1, fmt, ap);
        va_end(ap);
}

ConfigMark config_mark_of(Loader *l, const yaml_node_t *n) {
        return (ConfigMark) {
                .file = l->file,
                .line = (unsigned) n->start_mark.line + 1,
                .column = (unsigned) n->start_mark.column + 1,
        };
}

ConfigMark config_top_mark(Loader *l) {
        Config *c = l->c;

        return (ConfigMark) { .file = c->files ? c->files[0] : c->path, .line = 1, .column = 1 };
}

/* --- small helpers ------------------------------------------------------- */

int config_table_lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

bool config_node_is_null(const yaml_node_t *n) {
        const char *s;

        if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        s = (const char *) n->data.scalar.value;
        return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

size_t config_node_items(const yaml_node_t *n) {
        return (size_t) (n->data.sequence.items.top - n->data.sequence.items.start);
}

/* The scalar text, or NULL after reporting a problem. */
const char *config_get_scalar(Loader *l, yaml_node_t *v, const char *name) {
        if (v->type != YAML_SCALAR_NODE) {
                config_problem(l, &v->start_mark, "'%s' must be a scalar, not a %s", name,
                        v->type == YAML_MAPPING_NODE ? "mapping" : "list");
                return NULL;
        }
        if (v->data.scalar.length > LIMIT_CONFIG_STRING_BYTES) {
                config_problem(l, &v->start_mark, "'%s' is longer than LIMIT_CONFIG_STRING_BYTES (%u bytes)", name,
                        LIMIT_CONFIG_STRING_BYTES);
                return NULL;
        }
        if (strlen((const char *) v->data.scalar.value) != v->data.scalar.length) {
                config_problem(l, &v->start_mark, "'%s' contains a NUL byte", name);
                return NULL;
        }
        return (const char *) v->data.scalar.value;
}

const char *config_get_nonempty(Loader *l, yaml_node_t *v, const char *name) {
        const char *s = config_get_scalar(l, v, name);

        if (s && (!*s || config_node_is_null(v))) {
                config_problem(l, &v->start_mark, "'%s' must not be empty", name);
                return NULL;
        }
        return s;
}

bool config_list_fits(Loader *l, yaml_node_t *v, size_t n, const char *name) {
        if (n <= LIMIT_CONFIG_LIST_ITEMS)
                return true;
        config_problem(l, &v->start_mark, "'%s' has more than LIMIT_CONFIG_LIST_ITEMS (%u) items", name,
                       LIMIT_CONFIG_LIST_ITEMS);
        return false;
}

int config_set_string(char **dst, const char *s) {
        char *d = mem_strdup(s);

        if (!d)
                return -ENOMEM;
        mem_free(*dst);
        *dst = d;
        return 0;
}

/* Relative paths are relative to the directory of the file naming them;
 * "credential:NAME" is kept for secret_read() to resolve. */
int config_resolve_path(Loader *l, const char *s, char **ret) {
        char *p;

        if (s[0] == '/' || str_startswith(s, "credential:") || !l->dir)
                p = mem_strdup(s);
        else {
                size_t a = strlen(l->dir), b = strlen(s);

                p = mem_malloc(a + b + 2);
                if (p) {
                        memcpy(p, l->dir, a);
                        p[a] = '/';
                        memcpy(p + a + 1, s, b + 1);
                }
        }
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

bool config_name_valid(const char *s) {
        if (!*s || strlen(s) > LIMIT_NAME_BYTES || strspn(s, ".") == strlen(s))
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == strlen(s);
}

/* --- generic field parsers ---------------------------------------------- */

int config_field_section(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        /* Sections share the enclosing struct: their offsets are relative
         * to the same base. */
        return config_parse_mapping(l, v, f->arg, (uint8_t *) dst - f->offset, name, NULL);
}

int config_field_string(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);

        return s ? config_set_string(dst, s) : 0;
}

int config_field_path(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);
        char *p;
        int r;

        if (!s)
                return 0;
        r = config_resolve_path(l, s, &p);
        if (r < 0)
                return r;
        mem_free(*(char **) dst);
        *(char **) dst = p;
        return 0;
}

int config_field_bool(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name);

        if (s && confutil_parse_bool(s, dst) < 0)
                config_problem(l, &v->start_mark, "'%s' must be true or false, not '%s'", name, s);
        return 0;
}

int config_field_duration(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name);
        uint64_t u;

        if (!s)
                return 0;
        if (parse_duration(s, &u) < 0) {
                config_problem(l, &v->start_mark, "'%s': invalid duration '%s' (use e.g. 500ms, 30s, 10m, 4h, 7d)", name, s);
                return 0;
        }
        if (u < f->min) {
                config_problem(l, &v->start_mark, "'%s' must be a positive duration, not '%s'", name, s);
                return 0;
        }
        *(uint64_t *) dst = u;
        return 0;
}

bool config_parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!*s || !strchr("0123456789", *s))
                return false;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return false;
        *ret = v;
        return true;
}

/* An integer within the field's bounds, or a problem and false. */
static bool get_bounded(Loader *l, yaml_node_t *v, const Field *f, const char *name, uint64_t *ret) {
        const char *s = config_get_scalar(l, v, name);

        if (!s)
                return false;
        if (!config_parse_u64(s, ret) || *ret < f->min || *ret > f->max) {
                config_problem(l, &v->start_mark, "'%s' must be an integer from %" PRIu64 " to %" PRIu64 ", not '%s'", name,
                        f->min, f->max, s);
                return false;
        }
        return true;
}

int config_field_uint(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        uint64_t u;

        if (get_bounded(l, v, f, name, &u))
                *(unsigned *) dst = (unsigned) u;
        return 0;
}

int config_field_size(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        uint64_t u;

        if (get_bounded(l, v, f, name, &u))
                *(size_t *) dst = (size_t) u;
        return 0;
}

int config_field_strv(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        char **list;
        size_t n, k = 0;

        if (config_node_is_null(v))
                return 0;
        if (v->type != YAML_SEQUENCE_NODE) {
                config_problem(l, &v->start_mark, "'%s' must be a list", name);
                return 0;
        }
        n = config_node_items(v);
        if (!config_list_fits(l, v, n, name))
                return 0;
        list = mem_calloc(n + 1, sizeof(char *));
        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                yaml_node_t *item = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
                const char *s = config_get_nonempty(l, item, name);

                if (!s)
                        continue;
                list[k] = mem_strdup(s);
                if (!list[k]) {
                        strv_free(list);
                        return -ENOMEM;
                }
                k++;
        }
        strv_free(*(char ***) dst);
        *(char ***) dst = list;
        return 0;
}

int config_field_name(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);

        if (!s)
                return 0;
        if (!config_name_valid(s)) {
                config_problem(l, &v->start_mark, "'%s': invalid name '%s' (1 to %u characters A-Z a-z 0-9 _ . -)", name, s,
                        LIMIT_NAME_BYTES);
                return 0;
        }
        return config_set_string(dst, s);
}

/* --- secrets ------------------------------------------------------------- */

int config_read_secret(Loader *l, const ConfigMark *m, const char *spec, bool several, char ***ret, size_t *ret_n) {
        char **lines = NULL;
        size_t n = 0;
        int r;

        r = secret_read(spec, &lines, &n);
        switch (r) {
        case 0:
                break;
        case -ENOMEM:
                return r;
        case -ENXIO:
                config_problem_at(l, m, "cannot read secret file '%s': $CREDENTIALS_DIRECTORY is not set (LoadCredential=)", spec);
                return -EINVAL;
        case -ENODATA:
                config_problem_at(l, m, "secret file '%s' holds no secret", spec);
                return -EINVAL;
        case -ENOBUFS:
                config_problem_at(l, m, "secret file '%s' holds more than LIMIT_SECRETS_PER_FILE (%u) secrets", spec,
                                  LIMIT_SECRETS_PER_FILE);
                return -EINVAL;
        case -E2BIG:
                config_problem_at(l, m, "secret file '%s' is larger than LIMIT_SECRET_FILE_BYTES (%u bytes)", spec,
                                  LIMIT_SECRET_FILE_BYTES);
                return -EINVAL;
        default:
                config_problem_at(l, m, "cannot read secret file '%s': %s", spec, strerror(-r));
                return -EINVAL;
        }
        if (n != 1 && !several) {
                config_problem_at(l, m, "secret file '%s' must hold exactly one secret, it holds %zu lines", spec, n);
                strv_free_erase(lines);
                return -EINVAL;
        }
        *ret = lines;
        if (ret_n)
                *ret_n = n;
        return 0;
}

int config_read_one_secret(Loader *l, const ConfigMark *m, const char *spec, char **ret) {
        char **lines = NULL;
        int r;

        r = config_read_secret(l, m, spec, false, &lines, NULL);
        if (r < 0)
                return r;
        *ret = lines[0];
        mem_free(lines);
        return 0;
}

void config_free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        mem_free(s);
}

int config_read_key_secret(Loader *l, const yaml_node_t *key, const char *spec, char **ret) {
        ConfigMark m;
        int r;

        if (!key || !spec || (l->flags & CONFIG_LOAD_NO_SECRETS))
                return 0;
        m = config_mark_of(l, key);
        r = config_read_one_secret(l, &m, spec, ret);
        return r == -ENOMEM ? r : 0;
}

void config_check_readable(Loader *l, const ConfigMark *m, const char *what, const char *path) {
        if (!path || (l->flags & CONFIG_LOAD_NO_SECRETS))
                return;
        if (access(path, R_OK) < 0)
                config_problem_at(l, m, "cannot read %s '%s': %s", what, path, strerror(errno));
}

/* --- include: and the top-level tables ------------------------------------ */

static int p_include(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        if (config_node_is_null(v))
                return 0;
        if (v->type != YAML_SEQUENCE_NODE) {
                config_problem(l, &v->start_mark, "'include' must be a list of globs");
                return 0;
        }
        if (!config_list_fits(l, v, config_node_items(v), "include"))
                return 0;
        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                yaml_node_t *item = yaml_document_get_node(l->doc, *i);
                const char *s = config_get_nonempty(l, item, "include");
                Include *n;
                char *g;
                int r;

                if (!s)
                        continue;
                r = config_resolve_path(l, s, &g);
                if (r < 0)
                        return r;
                n = mem_reallocarray(l->includes, l->n_includes + 1, sizeof(Include));
                if (!n) {
                        mem_free(g);
                        return -ENOMEM;
                }
                l->includes = n;
                l->includes[l->n_includes++] = (Include) { .glob = g, .mark = config_mark_of(l, item) };
        }
        return 0;
}

/* The sections, in the order "did you mean" prefers on a tie. */
static const Field main_fields[] = {
        { "listen",      config_listen_parse },
        { "onepassword", config_onepassword_parse },
        { "state",       config_state_parse },
        { "safety",      config_safety_parse },
        { "sources",     config_sources_parse },
        { "rules",       config_rules_parse },
        { "include",     p_include },
        { "notify",      config_notify_parse },
};

/* What an included file may hold. */
static const Field include_fields[] = {
        { "sources", config_sources_parse },
        { "rules",   config_rules_parse },
};

/* --- the mapping walker -------------------------------------------------- */

int config_parse_mapping(Loader *l, yaml_node_t *node, const Section *s, void *base, const char *prefix,
                         yaml_node_t **seen) {
        yaml_node_t *local[32] = {};

        if (!seen)
                seen = local;
        if (config_node_is_null(node))
                return 0;
        if (node->type != YAML_MAPPING_NODE) {
                config_problem(l, &node->start_mark, "'%s' must be a mapping", prefix ? prefix : "document");
                return 0;
        }
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
                yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
                const char *key = config_get_scalar(l, k, "key");
                const Field *f = NULL;
                char name[256];
                size_t idx = 0;
                int r;

                if (!key)
                        continue;
                for (idx = 0; idx < s->n; idx++)
                        if (strcmp(s->fields[idx].key, key) == 0) {
                                f = &s->fields[idx];
                                break;
                        }
                if (!f) {
                        const char *cand[32];
                        ConfigMark km = config_mark_of(l, k);

                        for (size_t j = 0; j < s->n && j < ELEMENTSOF(cand); j++)
                                cand[j] = s->fields[j].key;
                        config_problem_unknown(l, &km, key, cand, s->n < ELEMENTSOF(cand) ? s->n : ELEMENTSOF(cand), "",
                                               "unknown key '%s' in '%s'", key, prefix ? prefix : "document");
                        continue;
                }
                if (seen[idx]) {
                        config_problem(l, &k->start_mark, "duplicate key '%s' (first at line %u)", key,
                                (unsigned) seen[idx]->start_mark.line + 1);
                        continue;
                }
                seen[idx] = k;
                if (prefix && strcmp(prefix, "sources") != 0 && strcmp(prefix, "rules") != 0)
                        snprintf(name, sizeof(name), "%s.%s", prefix, key);
                else
                        snprintf(name, sizeof(name), "%s", key);
                r = f->parse(l, v, (uint8_t *) base + f->offset, f, name);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_parse_list(Loader *l, yaml_node_t *v, const ConfigList *list, void *array, size_t *n) {
        if (config_node_is_null(v))
                return 0;
        if (v->type != YAML_SEQUENCE_NODE) {
                config_problem(l, &v->start_mark, "%s", list->not_a_list);
                return 0;
        }
        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                yaml_node_t *item = yaml_document_get_node(l->doc, *i);
                void *a, *e;
                int r;

                if (*n >= list->limit) {
                        config_problem(l, &item->start_mark, "more than %s (%u) %ss", list->limit_name, list->limit,
                                       list->noun);
                        return 0;
                }
                if (item->type != YAML_MAPPING_NODE) {
                        config_problem(l, &item->start_mark, "a %s must be a mapping", list->noun);
                        continue;
                }
                /* array is a T **: copied, not cast, to stay within the rules on pointer types */
                memcpy(&a, array, sizeof(a));
                a = mem_reallocarray(a, *n + 1, list->size);
                if (!a)
                        return -ENOMEM;
                memcpy(array, &a, sizeof(a));
                /* counted before it is parsed: config_free() frees what the item got */
                e = memset((uint8_t *) a + (*n)++ * list->size, 0, list->size);
                r = list->parse_item(l, item, e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* --- files --------------------------------------------------------------- */

static int files_add(Loader *l, const char *path, const char **ret) {
        size_t n = strv_length(l->c->files);
        char **v, *p;

        p = mem_strdup(path);
        if (!p)
                return -ENOMEM;
        v = mem_reallocarray(l->c->files, n + 2, sizeof(char *));
        if (!v) {
                mem_free(p);
                return -ENOMEM;
        }
        v[n] = p;
        v[n + 1] = NULL;
        l->c->files = v;
        *ret = p;
        return 0;
}

static int dir_of(const char *path, char **ret) {
        _cleanup_free_ char *copy = NULL;
        char *real, *d;

        copy = mem_strdup(path);
        if (!copy)
                return -ENOMEM;
        d = dirname(copy);
        real = realpath(d, NULL);
        if (real) {
                d = mem_strdup(real);
                free(real);
        } else
                d = mem_strdup(d);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

static void yaml_error(Loader *l, yaml_parser_t *p) {
        const char *what = p->problem ? p->problem : "unknown error";
        unsigned line = (unsigned) p->problem_mark.line + 1, col = (unsigned) p->problem_mark.column + 1;

        if (p->error == YAML_READER_ERROR) {
                problem_file(l, l->file, "YAML syntax error: %s at byte %zu", what, p->problem_offset);
                return;
        }
        if (p->context) {
                char msg[512];

                snprintf(msg, sizeof(msg), "YAML syntax error: %s (%s at line %u)", what, p->context,
                         (unsigned) p->context_mark.line + 1);
                config_problem_at(l, &(ConfigMark) { l->file, line, col }, "%s", msg);
        } else
                config_problem_at(l, &(ConfigMark) { l->file, line, col }, "YAML syntax error: %s", what);
}

/* Parses one file into l->c. Returns 0 (problems collected), -ENOMEM, or
 * for the main file the errno of reading it. */
static int load_file(Loader *l, const char *path, bool main_file, const ConfigMark *included_at) {
        _cleanup_free_ char *buf = NULL;
        yaml_parser_t parser;
        yaml_document_t doc, extra;
        yaml_node_t *root;
        size_t size = 0;
        int r;

        r = read_file_limited(path, LIMIT_CONFIG_DOCUMENT_BYTES, &buf, &size);
        if (r == -ENOMEM)
                return r;
        if (r == -E2BIG) {
                if (included_at)
                        config_problem_at(l, included_at, "included file '%s' is larger than LIMIT_CONFIG_DOCUMENT_BYTES (%u bytes)",
                                          path, LIMIT_CONFIG_DOCUMENT_BYTES);
                else
                        problem_file(l, path, "larger than LIMIT_CONFIG_DOCUMENT_BYTES (%u bytes)",
                                     LIMIT_CONFIG_DOCUMENT_BYTES);
                return main_file ? -EINVAL : 0;
        }
        if (r < 0) {
                if (included_at)
                        config_problem_at(l, included_at, "cannot read included file '%s': %s", path, strerror(-r));
                else
                        problem_file(l, path, "%s", strerror(-r));
                return main_file ? r : 0;
        }

        r = files_add(l, path, &l->file);
        if (r < 0)
                return r;
        mem_free(l->dir);
        l->dir = NULL;
        r = dir_of(path, &l->dir);
        if (r < 0)
                return r;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) buf, size);
        if (!yaml_parser_load(&parser, &doc)) {
                r = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : 0;
                if (r == 0)
                        yaml_error(l, &parser);
                if (main_file)
                        l->main_unparsed = true;
                yaml_parser_delete(&parser);
                return r;
        }

        l->doc = &doc;
        root = yaml_document_get_root_node(&doc);
        if (root)
                r = config_parse_mapping(l, root, main_file ? SECTION(main_fields) : SECTION(include_fields), l->c,
                                         main_file ? NULL : "included file", NULL);
        l->doc = NULL;
        yaml_document_delete(&doc);

        if (r >= 0) {
                if (!yaml_parser_load(&parser, &extra)) {
                        if (parser.error == YAML_MEMORY_ERROR)
                                r = -ENOMEM;
                        else
                                yaml_error(l, &parser);
                } else {
                        yaml_node_t *x = yaml_document_get_root_node(&extra);

                        if (x)
                                config_problem(l, &x->start_mark, "only one YAML document per file is allowed");
                        yaml_document_delete(&extra);
                }
        }
        yaml_parser_delete(&parser);
        return r;
}

/* A directory that does not exist matches nothing; one that cannot be
 * read is a problem. */
static int glob_error(const char *path, int error) {
        return error != ENOENT && error != ENOTDIR;
}

static int load_includes(Loader *l) {
        unsigned n_files = 0;
        int r;

        for (size_t i = 0; i < l->n_includes; i++) {
                glob_t g = {};
                int k;

                errno = 0;
                k = glob(l->includes[i].glob, 0, glob_error, &g);
                if (k == GLOB_NOMATCH) {
                        globfree(&g);
                        continue;
                }
                if (k == GLOB_NOSPACE) {
                        globfree(&g);
                        return -ENOMEM;
                }
                if (k != 0) {
                        config_problem_at(l, &l->includes[i].mark, "cannot expand include '%s': %s", l->includes[i].glob,
                                          strerror(errno ? errno : EIO));
                        globfree(&g);
                        continue;
                }
                for (size_t j = 0; j < g.gl_pathc; j++) {
                        if (strv_contains(l->c->files, g.gl_pathv[j]))
                                continue;
                        if (++n_files > LIMIT_CONFIG_INCLUDE_FILES) {
                                config_problem_at(l, &l->includes[i].mark, "more than LIMIT_CONFIG_INCLUDE_FILES (%u) included files",
                                                  LIMIT_CONFIG_INCLUDE_FILES);
                                globfree(&g);
                                return 0;
                        }
                        r = load_file(l, g.gl_pathv[j], false, &l->includes[i].mark);
                        if (r < 0) {
                                globfree(&g);
                                return r;
                        }
                }
                globfree(&g);
        }
        return 0;
}

/* --- whole-config checks ------------------------------------------------- */

static int cmp_index_by_name(const void *a, const void *b, void *userdata) {
        const char *const *names = userdata;
        size_t x = *(const size_t *) a, y = *(const size_t *) b;
        int c = strcmp(names[x] ? names[x] : "", names[y] ? names[y] : "");

        return c != 0 ? c : (x < y ? -1 : x > y);
}

/* Reports every later definition of a name already defined. */
const char **config_names(const void *items, size_t n, size_t size, size_t name_offset) {
        const char **names = mem_calloc(n + 1, sizeof(char *));

        for (size_t i = 0; names && i < n; i++) {
                memcpy(&names[i], (const uint8_t *) items + i * size + name_offset, sizeof(char *));
                if (!names[i])
                        names[i] = "";
        }
        return names;
}

int config_check_unique(Loader *l, const char *what, const void *items, size_t n, size_t size, size_t name_offset,
                        size_t mark_offset) {
        _cleanup_free_ size_t *idx = NULL;
        _cleanup_free_ const char **names = NULL;
        _cleanup_free_ const ConfigMark **marks = NULL;

        if (n < 2)
                return 0;
        idx = mem_calloc(n, sizeof(size_t));
        names = mem_calloc(n, sizeof(char *));
        marks = mem_calloc(n, sizeof(ConfigMark *));
        if (!idx || !names || !marks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const uint8_t *item = (const uint8_t *) items + i * size;

                idx[i] = i;
                memcpy(&names[i], item + name_offset, sizeof(char *));
                marks[i] = (const ConfigMark *) (item + mark_offset);
        }
        qsort_r(idx, n, sizeof(size_t), cmp_index_by_name, names);
        for (size_t i = 1; i < n; i++) {
                size_t first = i - 1;

                if (!names[idx[i]])
                        continue;
                while (first > 0 && names[idx[first - 1]] && strcmp(names[idx[first - 1]], names[idx[i]]) == 0)
                        first--;
                if (!names[idx[first]] || strcmp(names[idx[first]], names[idx[i]]) != 0)
                        continue;
                config_problem_at(l, marks[idx[i]], "duplicate %s name '%s' (first defined at %s:%u:%u)", what, names[idx[i]],
                                  marks[idx[first]]->file, marks[idx[first]]->line, marks[idx[first]]->column);
        }
        return 0;
}

static int check_config(Loader *l) {
        int r;

        config_onepassword_check(l);
        config_listen_check(l);

        r = config_sources_check(l);
        if (r < 0)
                return r;
        r = config_rules_check(l);
        if (r < 0)
                return r;
        r = config_notify_check(l);
        if (r < 0)
                return r;
        return config_rules_check_sources(l);
}

static int set_defaults(Config *c) {
        int r;

        r = config_listen_defaults(c);
        if (r < 0)
                return r;
        r = config_onepassword_defaults(c);
        if (r < 0)
                return r;
        config_safety_defaults(c);
        return config_state_defaults(c);
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        mem_free(c->path);
        strv_free(c->files);
        config_listen_done(c);
        config_onepassword_done(c);
        config_state_done(c);
        config_safety_done(c);
        config_sources_done(c);
        config_rules_done(c);
        config_notify_done(c);
        mem_free(c);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free, config_freep)

void config_problems_free(ConfigProblems *p) {
        if (!p)
                return;
        strv_free(p->lines);
        *p = (ConfigProblems) {};
}

void config_problems_report(ConfigProblems *p, const char *prefix, const char *path, int error) {
        for (size_t i = 0; i < p->n; i++)
                fprintf(stderr, "%s\n", p->lines[i]);
        if (p->n == 0)
                fprintf(stderr, "%s%s: %s\n", prefix, path, strerror(-error));
        config_problems_free(p);
}

static void loader_done(Loader *l) {
        confutil_problems_done(&l->problems);
        mem_free(l->refs);
        for (size_t i = 0; i < l->n_includes; i++)
                mem_free(l->includes[i].glob);
        mem_free(l->includes);
        mem_free(l->dir);
}

int config_load(const char *path, unsigned flags, Config **ret, ConfigProblems *problems) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(loader_done) Loader l = { .flags = flags, .regex_budget = LIMIT_CONFIG_REGEX_COMPILE_BYTES };
        int r;

        if (!path || !ret)
                return -EINVAL;

        c = mem_calloc(1, sizeof(Config));
        if (!c)
                return -ENOMEM;
        l.c = c;
        c->path = mem_strdup(path);
        if (!c->path)
                return -ENOMEM;
        r = set_defaults(c);
        if (r < 0)
                return r;

        r = load_file(&l, path, /* main_file= */ true, NULL);
        if (r == -ENOMEM || l.problems.oom)
                return -ENOMEM;
        if (r < 0)
                goto fail;
        if (!c->files || l.main_unparsed) {
                r = -EINVAL; /* main file too big or not YAML: reported */
                goto fail;
        }
        r = load_includes(&l);
        if (r < 0)
                return r;

        r = check_config(&l);
        if (r < 0)
                return r;
        if (l.problems.oom)
                return -ENOMEM;
        if (l.problems.n > 0) {
                r = -EINVAL;
                goto fail;
        }

        c->loaded_usec = now_usec(CLOCK_REALTIME);
        *ret = TAKE_PTR(c);
        return 0;

fail:
        if (problems) {
                problems->lines = TAKE_PTR(l.problems.lines);
                problems->n = l.problems.n;
                l.problems.n = 0;
        }
        return r;
}
