/* Rules: conditions, JSON paths and templates compiled at config load, then
 * evaluated against an event (a json-c object) with no YAML at match time.
 *
 * Predicates return 1 (holds), 0 (does not) or a negative errno (aborts the
 * evaluation; the webhook turns it into a retryable error). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <yaml.h>

#include "config.h"
#include "confutil.h"
#include "remedyd-forward.h"

/* One action a matching rule produces, before guardrails. */
struct RuleHit {
        const Rule *rule;
        char *user;        /* rendered user template; NULL when unresolved */
        char *reason;      /* rendered reason, or NULL */
        char *missing;     /* the template path that was missing (unresolved) */
};

struct RuleHits {
        RuleHit *hits;
        size_t n;
};

/* Walks c->rules in order for an event from source_name and appends one hit
 * per action (one per for_each element that passes where:). Stops after a
 * matching rule with stop: true. At most LIMIT_ACTIONS_PER_EVENT hits, and
 * for_each arrays of at most LIMIT_FOR_EACH_ITEMS (-ENOBUFS past either;
 * deterministic, so not worth a retry). A hit is unresolved (user NULL,
 * missing = the path) when a path of its user template is missing or null,
 * or that rendering is over LIMIT_TEMPLATE_OUTPUT_BYTES (missing = the
 * template text then); the reason never leaves a hit unresolved (it is
 * rendered with template_render_text()). On success returns the number of
 * matching rules; on failure *ret is untouched. -ENOMEM on OOM. */
int rules_evaluate(const Config *c, const char *source_name, json_object *event, RuleHits *ret);
void rule_hits_free(RuleHits *h);

/* explain: one line per rule (one per hit for matches) into *ret_text
 * (caller frees with mem_free): "rule NAME: match: ACTION: would act on
 * user X" (or "dry_run: ...", "protected: ...", "unresolved: missing
 * PATH"), "rule NAME: no match: CONDITION failed: value V", "skipped" for
 * other sources, "not evaluated" after stop. The status is the guardrail
 * chain's (safety.h) as far as the config tells: safety_pre_status()
 * without the directory, then dry-run; when some hit would act, a last
 * line "not known offline: ..." names what only the daemon knows. The
 * same rule lines go to TRACE_RULES from rules_evaluate(). Returns the
 * number of hits that would act (resolved and not protected), or a
 * negative errno as rules_evaluate(). */
int rules_explain(const Config *c, const char *source_name, json_object *event, char **ret_text);

/* --- compiling (called by config.c) ------------------------------------ */

/* Compiles a condition from a libyaml document node, reporting each
 * problem through problem() and carrying on. Returns NULL after reporting
 * (or on OOM). */
Condition *rules_condition_compile(yaml_document_t *doc, yaml_node_t *node, ConfutilProblemFn problem, void *userdata);
/* The same, drawing each pattern's rules_regex_cost() from *regex_budget
 * (a config's LIMIT_CONFIG_REGEX_COMPILE_BYTES); a pattern over what is
 * left is a problem. */
Condition *rules_condition_compile_budget(yaml_document_t *doc, yaml_node_t *node, ConfutilProblemFn problem,
                                          void *userdata, uint64_t *regex_budget);
/* An estimate, on the high side, of the bytes regcomp() takes for the ERE
 * p (for the LIMIT_REGEX_COMPILE_BYTES check; exported for tests). */
uint64_t rules_regex_cost(const char *p);
Condition *rules_condition_free(Condition *c);
/* Evaluates a condition on a JSON value (the event or a for_each element). */
int rules_condition_eval(const Condition *c, json_object *value);

/* --- JSON paths (section 3.2) ------------------------------------------- */

/* Compiles "a.b.0.c" (with literal dotted keys tried first at each level),
 * or an RFC 6901 pointer "/a/b~1c". -EINVAL on a malformed path. */
int jpath_compile(const char *text, JPath **ret);
JPath *jpath_free(JPath *p);
const char *jpath_text(const JPath *p);
/* A hash of the path's text, computed at compile time: equal texts, equal
 * hashes (rules.c memoizes lookups per evaluation with it). 0 for NULL. */
uint64_t jpath_hash(const JPath *p);
/* Finds the value; NULL when missing. Borrowed reference. A JSON null is
 * returned as NULL too, unless found_null is non-NULL (set to true). */
json_object *jpath_lookup(const JPath *p, json_object *root, bool *found_null);

/* --- templates (section 3.3) -------------------------------------------- */

/* Compiles "${PATH} text $$" and "${PATH:-TEXT}" (TEXT when PATH is
 * missing; TEXT holds no "}"). -EINVAL with *error_offset set on a bad
 * template (unclosed ${, empty path, bad path). */
int template_compile(const char *text, Template **ret, size_t *error_offset);
Template *template_free(Template *t);
const char *template_text(const Template *t);
/* True when some insertion has a ":-" default (*ret_offset = where that
 * insertion starts); config.c refuses one in a user template. */
bool template_has_default(const Template *t, size_t *ret_offset);
/* Renders against value (the event, or the for_each element); ${event.X}
 * reaches event_root. Strings as-is, numbers and booleans in JSON form; a
 * missing path with a default gives the default. For user and event_id:
 * -ENOENT when a path without a default is missing (*ret_missing = that
 * path, caller frees), -E2BIG past LIMIT_TEMPLATE_OUTPUT_BYTES. */
int template_render(const Template *t, json_object *value, json_object *event_root, char **ret, char **ret_missing);
/* The same for texts that never stop an action (reason, notifications):
 * a missing path without a default renders as "(missing PATH)", and past
 * LIMIT_TEMPLATE_OUTPUT_BYTES the output ends at the last part that fit.
 * Fails only with -ENOMEM. */
int template_render_text(const Template *t, json_object *value, json_object *event_root, char **ret);
