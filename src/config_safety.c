/* The safety: section (interface.md section 3): dry-run, protected users
 * and the blast-radius cap, and their defaults. What they mean at run time
 * is safety.c's; this file only reads them. Calls the engine
 * (config-section.h). */
#include "config-section.h"
#include "util.h"

static const Field max_suspensions_fields[] = {
        { "count",  config_field_uint,     offsetof(Config, safety.max_suspensions), .min = 0, .max = 1000000 },
        { "window", config_field_duration, offsetof(Config, safety.window_usec), .min = 1 },
};

static const Field safety_fields[] = {
        { "dry_run",         config_field_bool,    offsetof(Config, safety.dry_run) },
        { "protected_users", config_field_strv,    offsetof(Config, safety.protected_users) },
        { "max_suspensions", config_field_section, 0, SECTION(max_suspensions_fields) },
};

int config_safety_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        return config_parse_mapping(l, v, SECTION(safety_fields), l->c, name, NULL);
}

void config_safety_defaults(Config *c) {
        c->safety.window_usec = 3600 * USEC_PER_SEC;
}

void config_safety_done(Config *c) {
        strv_free(c->safety.protected_users);
}
