/* The rules: section (interface.md sections 3.2 and 3.3): each rule's
 * keys, compiled at load into what rules.c evaluates (conditions through
 * rules_condition_compile_budget(), JSON paths, templates), the checks
 * between a rule's keys, unique rule names, and that every source a rule
 * names exists. Also the template field parser the sources' event_id
 * uses. Calls the engine (config-section.h) and rules.h. */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "config-section.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "util.h"

static const char *const action_kind_table[_ACTION_KIND_MAX] = {
        [ACTION_SUSPEND] = "suspend",
        [ACTION_REACTIVATE] = "reactivate",
        [ACTION_NOTIFY] = "notify",
};

const char *config_action_kind_to_string(ActionKind k) {
        return k >= 0 && k < _ACTION_KIND_MAX ? action_kind_table[k] : NULL;
}

ActionKind config_action_kind_from_string(const char *s) {
        return (ActionKind) config_table_lookup(action_kind_table, _ACTION_KIND_MAX, s);
}

/* Contract 3.3: a default in a user template would act on someone the
 * alert did not name. Reported at the insertion itself when the scalar
 * sits on one line (its column is the mark's plus the offset, plus the
 * opening quote). */
static void check_user_default(Loader *l, const yaml_node_t *v, const Template *t) {
        yaml_mark_t m = v->start_mark;
        size_t off;

        if (!template_has_default(t, &off))
                return;
        if (v->start_mark.line == v->end_mark.line) {
                m.column += off;
                if (v->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
                        m.column++;
        }
        config_problem(l, &m, "'user' may not have a default (${PATH:-TEXT}): it would act on someone the alert did not name");
}

int config_rules_field_template(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);
        Template *t;
        size_t off = 0;
        int r;

        if (!s)
                return 0;
        r = template_compile(s, &t, &off);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                config_problem(l, &v->start_mark, "'%s': invalid template '%s' at offset %zu (use ${PATH}, and $$ for a literal $)",
                        name, s, off);
                return 0;
        }
        template_free(*(Template **) dst);
        *(Template **) dst = t;
        return 0;
}

static int p_user(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        Template **t = dst;
        int r;

        r = config_rules_field_template(l, v, dst, f, name);
        /* *t was NULL: a key is parsed once */
        if (r >= 0 && *t)
                check_user_default(l, v, *t);
        return r;
}

static int p_jpath(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);
        JPath *p;
        int r;

        if (!s)
                return 0;
        r = jpath_compile(s, &p);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                config_problem(l, &v->start_mark, "'%s': invalid path '%s'", name, s);
                return 0;
        }
        jpath_free(*(JPath **) dst);
        *(JPath **) dst = p;
        return 0;
}

static int p_condition(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        unsigned long before = l->problems.n_reported;
        Condition *c;

        if (config_node_is_null(v))
                return 0;
        c = rules_condition_compile_budget(l->doc, v, config_problem_sink, l, &l->regex_budget);
        if (!c)
                /* NULL without a problem is OOM: never let that turn into
                 * "no condition", which would match everything. */
                return l->problems.n_reported > before ? 0 : -ENOMEM;
        rules_condition_free(*(Condition **) dst);
        *(Condition **) dst = c;
        return 0;
}

static int p_action(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name);
        ActionKind k;

        if (!s)
                return 0;
        k = config_action_kind_from_string(s);
        if (k < 0) {
                config_problem(l, &v->start_mark, "'%s' must be suspend, reactivate or notify, not '%s'", name, s);
                return 0;
        }
        *(ActionKind *) dst = k;
        return 0;
}

static int p_rule_source(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        Rule *rule = dst;
        yaml_node_item_t *start, *top;
        yaml_node_item_t one;
        char **list;
        size_t n, k = 0;

        if (v->type == YAML_SCALAR_NODE) {
                one = 0; /* unused: handled below */
                start = top = &one;
        } else if (v->type == YAML_SEQUENCE_NODE) {
                start = v->data.sequence.items.start;
                top = v->data.sequence.items.top;
        } else {
                config_problem(l, &v->start_mark, "'%s' must be a source name, a list of names, or \"*\"", name);
                return 0;
        }
        n = v->type == YAML_SCALAR_NODE ? 1 : (size_t) (top - start);
        if (n == 0) {
                config_problem(l, &v->start_mark, "'%s' must name at least one source", name);
                return 0;
        }
        if (!config_list_fits(l, v, n, name))
                return 0;
        list = mem_calloc(n + 1, sizeof(char *));
        if (!list)
                return -ENOMEM;
        strv_free(rule->sources);
        rule->sources = list;
        for (size_t i = 0; i < n; i++) {
                yaml_node_t *item = v->type == YAML_SCALAR_NODE ? v : yaml_document_get_node(l->doc, start[i]);
                const char *s = config_get_nonempty(l, item, name);
                Ref *refs;

                if (!s)
                        continue;
                if (strcmp(s, "*") == 0) {
                        rule->any_source = true;
                        continue;
                }
                list[k] = mem_strdup(s);
                if (!list[k])
                        return -ENOMEM;
                refs = mem_reallocarray(l->refs, l->n_refs + 1, sizeof(Ref));
                if (!refs)
                        return -ENOMEM;
                l->refs = refs;
                l->refs[l->n_refs++] = (Ref) { .name = list[k], .mark = config_mark_of(l, item) };
                k++;
        }
        if (rule->any_source) {
                strv_free(rule->sources);
                rule->sources = NULL;
        }
        return 0;
}

enum {
        RULE_NAME, RULE_SOURCE, RULE_WHEN, RULE_FOR_EACH, RULE_WHERE, RULE_ACTION, RULE_USER, RULE_REASON,
        RULE_COOLDOWN, RULE_FOR, RULE_DRY_RUN, RULE_STOP, _RULE_FIELDS,
};

static const Field rule_fields[_RULE_FIELDS] = {
        [RULE_NAME]     = { "name",     config_field_name,           offsetof(Rule, name) },
        [RULE_SOURCE]   = { "source",   p_rule_source,               0 },
        [RULE_WHEN]     = { "when",     p_condition,                 offsetof(Rule, when) },
        [RULE_FOR_EACH] = { "for_each", p_jpath,                     offsetof(Rule, for_each) },
        [RULE_WHERE]    = { "where",    p_condition,                 offsetof(Rule, where) },
        [RULE_ACTION]   = { "action",   p_action,                    offsetof(Rule, action) },
        [RULE_USER]     = { "user",     p_user,                      offsetof(Rule, user) },
        [RULE_REASON]   = { "reason",   config_rules_field_template, offsetof(Rule, reason) },
        [RULE_COOLDOWN] = { "cooldown", config_field_duration,       offsetof(Rule, cooldown_usec) },
        [RULE_FOR]      = { "for",      config_field_duration,       offsetof(Rule, for_usec), .min = 1 },
        [RULE_DRY_RUN]  = { "dry_run",  config_field_bool,           offsetof(Rule, dry_run) },
        [RULE_STOP]     = { "stop",     config_field_bool,           offsetof(Rule, stop) },
};

static void rule_done(Rule *r) {
        mem_free(r->name);
        strv_free(r->sources);
        rules_condition_free(r->when);
        jpath_free(r->for_each);
        rules_condition_free(r->where);
        template_free(r->user);
        template_free(r->reason);
}

static int rule_parse(Loader *l, yaml_node_t *item, void *element) {
        yaml_node_t *seen[_RULE_FIELDS] = {};
        Rule *rule = element;
        const char *rn;
        int r;

        *rule = (Rule) {
                .action = _ACTION_KIND_INVALID,
                .mark = config_mark_of(l, item),
        };
        r = config_parse_mapping(l, item, SECTION(rule_fields), rule, "rules", seen);
        if (r < 0)
                return r;

        rn = rule->name ? rule->name : "?";
        if (!seen[RULE_NAME])
                config_problem(l, &item->start_mark, "a rule needs a 'name'");
        if (!seen[RULE_SOURCE])
                config_problem(l, &item->start_mark, "rule '%s' needs 'source' (a name, a list of names, or \"*\")", rn);
        if (!seen[RULE_ACTION])
                config_problem(l, &item->start_mark, "rule '%s' needs 'action' (suspend, reactivate or notify)", rn);
        if (!seen[RULE_USER])
                config_problem(l, &item->start_mark, "rule '%s' needs 'user' (a template such as \"${result.user}\")", rn);
        if (seen[RULE_WHERE] && !seen[RULE_FOR_EACH])
                config_problem(l, &seen[RULE_WHERE]->start_mark, "rule '%s': 'where' needs 'for_each'", rn);
        if (seen[RULE_FOR] && rule->action != ACTION_SUSPEND && rule->action >= 0)
                config_problem(l, &seen[RULE_FOR]->start_mark, "rule '%s': 'for' only applies to action: suspend", rn);
        return 0;
}

static const ConfigList rule_list =
        CONFIG_LIST("'rules' must be a list", "rule", LIMIT_CONFIG_RULES, Rule, rule_parse);

int config_rules_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        return config_parse_list(l, v, &rule_list, &l->c->rules, &l->c->n_rules);
}

void config_rules_done(Config *c) {
        for (size_t i = 0; i < c->n_rules; i++)
                rule_done(&c->rules[i]);
        mem_free(c->rules);
}

int config_rules_check(Loader *l) {
        return CONFIG_CHECK_UNIQUE(l, "rule", l->c->rules, l->c->n_rules, Rule);
}

int config_rules_check_sources(Loader *l) {
        Config *c = l->c;
        _cleanup_free_ const char **cand = NULL;

        for (size_t i = 0; i < l->n_refs; i++) {
                if (config_find_source(c, l->refs[i].name))
                        continue;
                if (!cand && !(cand = CONFIG_NAMES(c->sources, c->n_sources, Source)))
                        return -ENOMEM;
                config_problem_unknown(l, &l->refs[i].mark, l->refs[i].name, cand, c->n_sources, "", "unknown source '%s'",
                                       l->refs[i].name);
        }
        return 0;
}
