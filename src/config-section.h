/* The contract between the configuration engine (config.c) and the section
 * files (config_listen.c, config_onepassword.c, config_state.c,
 * config_safety.c, config_sources.c, config_rules.c, config_notify.c).
 * Part of the config module: only those files include it.
 *
 * The engine walks each YAML document through tables of key -> parser ->
 * offset (Field, Section), keeps the marks and the problem list, reads
 * secret and included files, and calls the sections' hooks below in a
 * fixed order. A section file holds its keys' tables, its value parsers and
 * validators, its defaults, what it frees, and its checks across files; it
 * calls the engine (this header), confutil.h, the foundation, and the
 * module that owns the section's meaning (rules.h, store.h), never another
 * section file except where a hook below says so.
 *
 * Parsers and validators report problems through config_problem*() and
 * return 0; they return a negative errno only for -ENOMEM, which fails the
 * whole load. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "cleanup.h"
#include "config.h"
#include "confutil.h"

/* A rule's source: name, resolved when every file is read. */
typedef struct Ref {
        const char *name;  /* borrowed from a Rule's sources */
        ConfigMark mark;
} Ref;

typedef struct Include Include;

/* One config_load(). */
typedef struct Loader {
        Config *c;
        unsigned flags;
        yaml_document_t *doc;
        const char *file;  /* the file being parsed; points into c->files */
        char *dir;         /* its directory, for relative paths */

        ConfutilProblems problems;

        Ref *refs;         /* config_rules.c */
        size_t n_refs;
        Include *includes; /* config.c */
        size_t n_includes;

        bool have_onepassword; /* config_onepassword.c */
        bool main_unparsed;  /* syntax error in the main file: nothing else to check */
        uint64_t regex_budget; /* LIMIT_CONFIG_REGEX_COMPILE_BYTES, less what the patterns use */
} Loader;

typedef struct Field Field;
/* Parses the value v of the key a Field names into dst (base + offset);
 * name is the key's dotted name for messages ("listen.status"). */
typedef int (*FieldParser)(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);

struct Field {
        const char *key;
        FieldParser parse;
        size_t offset;
        const void *arg;        /* a Section for nested mappings */
        uint64_t min, max;      /* integers; flags for some parsers */
};

typedef struct Section {
        const Field *fields;
        size_t n;
} Section;

#define SECTION(t) (&(const Section) { t, ELEMENTSOF(t) })

/* --- the engine (config.c) ---------------------------------------------- */

/* A problem at a libyaml mark of the file being parsed, or at a ConfigMark
 * (any file, line and column 1-based). */
void config_problem(Loader *l, const yaml_mark_t *m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void config_problem_at(Loader *l, const ConfigMark *m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* config_problem() as a ConfutilProblemFn, userdata the Loader (for
 * rules_condition_compile()). */
void config_problem_sink(void *userdata, const yaml_mark_t *mark, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* "MESSAGE, did you mean 'CANDIDATE'?" when confutil_suggest() finds word
 * among candidates, else "MESSAGE" followed by otherwise (may be ""). */
void config_problem_unknown(Loader *l, const ConfigMark *m, const char *word, const char *const *candidates, size_t n,
                            const char *otherwise, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
ConfigMark config_mark_of(Loader *l, const yaml_node_t *n);
/* Line 1, column 1 of the main file: where whole-config problems point. */
ConfigMark config_top_mark(Loader *l);

/* A plain empty, "~" or "null" scalar. */
bool config_node_is_null(const yaml_node_t *n);
size_t config_node_items(const yaml_node_t *n);
/* The scalar's text, or NULL after a problem (not a scalar, longer than
 * LIMIT_CONFIG_STRING_BYTES, a NUL byte). Borrowed from the document. */
const char *config_get_scalar(Loader *l, yaml_node_t *v, const char *name);
/* The same, and NULL after a problem for an empty or null value. */
const char *config_get_nonempty(Loader *l, yaml_node_t *v, const char *name);
/* True when a list v of n items is within LIMIT_CONFIG_LIST_ITEMS, else
 * a problem and false. */
bool config_list_fits(Loader *l, yaml_node_t *v, size_t n, const char *name);
/* Replaces *dst with a copy of s. -ENOMEM. */
int config_set_string(char **dst, const char *s);
/* A path relative to the directory of the file naming it; absolute paths
 * and "credential:NAME" as they are. Caller frees. -ENOMEM. */
int config_resolve_path(Loader *l, const char *s, char **ret);
/* 1 to LIMIT_NAME_BYTES of A-Z a-z 0-9 _ . -, not only dots. */
bool config_name_valid(const char *s);
/* A decimal integer, nothing else. */
bool config_parse_u64(const char *s, uint64_t *ret);
/* The index of s in table (n entries, NULL ones skipped), or -EINVAL. */
int config_table_lookup(const char *const *table, size_t n, const char *s);

/* Walks a mapping through s's fields into base. Each key found is recorded
 * in seen[index of its Field] (at most 32 fields when seen is NULL);
 * unknown keys ("did you mean") and duplicates are problems. prefix is the
 * mapping's dotted name for messages, NULL for the document. */
int config_parse_mapping(Loader *l, yaml_node_t *node, const Section *s, void *base, const char *prefix,
                         yaml_node_t **seen);

/* A list of mappings (sources:, rules:, notify:), each item one element of
 * a Config array. */
typedef struct ConfigList {
        const char *not_a_list; /* the whole message, e.g. "'rules' must be a list" */
        const char *noun;       /* "a NOUN must be a mapping", "more than LIMIT (N) NOUNs" */
        const char *limit_name;
        unsigned limit;         /* elements in the array, over every file */
        size_t size;            /* of one element */
        /* Fills the zeroed element from item: its defaults, its keys, its
         * checks. Only -ENOMEM stops the walk. */
        int (*parse_item)(Loader *l, yaml_node_t *item, void *element);
} ConfigList;

#define CONFIG_LIST(not_a_list, noun, limit, type, parse_item) \
        { not_a_list, noun, #limit, limit, sizeof(type), parse_item }

/* Walks v (null: an empty list) and appends one element per mapping item
 * to the array of *n elements whose address array is (a T **). An item
 * that is not a mapping is a problem and skipped; passing list->limit is a
 * problem that ends the walk. An element is counted before it is parsed,
 * so config_free() frees what it got. 0 or -ENOMEM. */
int config_parse_list(Loader *l, yaml_node_t *v, const ConfigList *list, void *array, size_t *n);

/* Generic FieldParsers. section: a nested mapping, f->arg its Section, at
 * the same base. string: non-empty. path: config_resolve_path(). bool:
 * confutil_parse_bool(). duration: parse_duration(), at least f->min.
 * uint (unsigned), size (size_t): f->min to f->max. strv: a list of
 * non-empty strings (NULL-terminated). name: config_name_valid(). */
int config_field_section(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_string(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_path(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_bool(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_duration(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_uint(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_size(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_strv(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_field_name(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);

/* Reads the secret file spec (secret_read()) into *ret (caller frees with
 * strv_free_erase()) and *ret_n (may be NULL); exactly one secret unless
 * several. A file that cannot be read, or holds the wrong number of
 * secrets, is a problem at m and -EINVAL; -ENOMEM. */
int config_read_secret(Loader *l, const ConfigMark *m, const char *spec, bool several, char ***ret, size_t *ret_n);
/* The same for a file of exactly one secret, into *ret (caller frees). */
int config_read_one_secret(Loader *l, const ConfigMark *m, const char *spec, char **ret);
/* Overwrites a secret string, then frees it. NULL is fine. */
void config_free_secret(char *s);
/* config_read_one_secret() of spec into *ret at the mark of key (the key
 * naming the file), when key and spec are set and secrets are read. A
 * problem does not stop the load: 0 or -ENOMEM. */
int config_read_key_secret(Loader *l, const yaml_node_t *key, const char *spec, char **ret);
/* A problem at m when path is set and cannot be read (not with
 * CONFIG_LOAD_NO_SECRETS). what names the key. */
void config_check_readable(Loader *l, const ConfigMark *m, const char *what, const char *path);
/* The char * names at name_offset of n structs of size bytes at items, NULL
 * ones as "" (candidates for config_problem_unknown()), in an array the
 * caller frees (not the names). NULL on OOM. */
const char **config_names(const void *items, size_t n, size_t size, size_t name_offset);
#define CONFIG_NAMES(items, n, type) config_names(items, n, sizeof(type), offsetof(type, name))
/* A problem at every later definition of a name already defined ("duplicate
 * WHAT name 'X' (first defined at FILE:LINE:COLUMN)") among n structs of
 * size bytes at items, each with a char * name at name_offset (NULL names
 * are skipped) and a ConfigMark at mark_offset. -ENOMEM. */
int config_check_unique(Loader *l, const char *what, const void *items, size_t n, size_t size, size_t name_offset,
                        size_t mark_offset);
#define CONFIG_CHECK_UNIQUE(l, what, items, n, type) \
        config_check_unique(l, what, items, n, sizeof(type), offsetof(type, name), offsetof(type, mark))

/* --- the sections --------------------------------------------------------
 * Each section file gives the engine a FieldParser for its top-level key
 * (config_SECTION_parse), and where it has them: its defaults (set before
 * any file is read; -ENOMEM), what it frees in a Config (config_free()),
 * and its checks once every file is read, which config_load() calls in
 * the order problems have always been reported in: onepassword, listen,
 * sources, rules (names), notify, rules (sources). */

/* config_listen.c. The check also parses the listen addresses into
 * c->listen.*_addr (the sources' check reads webhook_addr). */
int config_listen_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_listen_defaults(Config *c);
void config_listen_done(Config *c);
void config_listen_check(Loader *l);

/* config_onepassword.c. The parser also reads the client id and secret;
 * the check reports a missing section when there are sources or rules. */
int config_onepassword_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_onepassword_defaults(Config *c);
void config_onepassword_done(Config *c);
void config_onepassword_check(Loader *l);

/* config_state.c. The parser also reads state.postgresql.conninfo_file. */
int config_state_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_state_defaults(Config *c);
void config_state_done(Config *c);

/* config_safety.c */
int config_safety_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
void config_safety_defaults(Config *c);
void config_safety_done(Config *c);

/* config_rules.c. config_rules_field_template() is the FieldParser of a
 * template (rules' user and reason, and the sources' event_id, the one
 * call from one section file into another). The checks: unique rule
 * names; then, after the notify sinks', every source a rule names. */
int config_rules_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
int config_rules_field_template(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
void config_rules_done(Config *c);
int config_rules_check(Loader *l);
int config_rules_check_sources(Loader *l);

/* config_sources.c. The parser also reads each method's secret file; the
 * check needs the listen addresses (after config_listen_check()). */
int config_sources_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
void config_sources_done(Config *c);
int config_sources_check(Loader *l);

/* config_notify.c. The parser also reads each sink's secret files. The
 * check: unique sink names, and every rule a sink names without glob
 * characters (or "manual") exists. */
int config_notify_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name);
void config_notify_done(Config *c);
int config_notify_check(Loader *l);
