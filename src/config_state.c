/* The state: section (interface.md sections 3 and 8): where the state
 * store lives, SQLite or PostgreSQL (whose conninfo_file is read here, at
 * load), the instance name and lease, and their defaults. Calls the engine
 * (config-section.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "config-section.h"
#include "util.h"

#define DEFAULT_STATE_PATH "/var/lib/remedyd/state.db"

enum { ST_BACKEND, ST_PATH, ST_POSTGRESQL, ST_INSTANCE, ST_LEASE, _ST_FIELDS };
enum { PG_CONNINFO_FILE, PG_SCHEMA, PG_POOL, _PG_FIELDS };

static const Field postgresql_fields[_PG_FIELDS] = {
        [PG_CONNINFO_FILE] = { "conninfo_file", config_field_path,   offsetof(Config, state.conninfo_file) },
        [PG_SCHEMA]        = { "schema",        config_field_string, offsetof(Config, state.schema) },
        [PG_POOL]          = { "pool",          config_field_uint,   offsetof(Config, state.pool), .min = 2, .max = 64 },
};

static int p_state_postgresql(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        yaml_node_t *seen[_PG_FIELDS] = {};
        Config *c = l->c;
        int r;

        r = config_parse_mapping(l, v, SECTION(postgresql_fields), c, name, seen);
        if (r < 0)
                return r;
        if (!seen[PG_CONNINFO_FILE])
                config_problem(l, &v->start_mark, "'%s' is missing the required key 'conninfo_file'", name);
        if (seen[PG_SCHEMA] && c->state.schema) {
                const char *sc = c->state.schema;
                /* an unquoted PostgreSQL identifier, at most 63 bytes; it also
                 * names the LISTEN channels (SCHEMA_queue) */
                if (strlen(sc) > 56 || !strchr("abcdefghijklmnopqrstuvwxyz_", sc[0]) ||
                    strspn(sc, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(sc))
                        config_problem(l, &seen[PG_SCHEMA]->start_mark,
                                "'%s.schema' must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 56 "
                                "characters), not '%s'",
                                name, sc);
        }
        return config_read_key_secret(l, seen[PG_CONNINFO_FILE], c->state.conninfo_file, &c->state.conninfo);
}

static int p_instance(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);

        if (!s)
                return 0;
        if (!config_name_valid(s) || strlen(s) > 64) {
                config_problem(l, &v->start_mark, "'%s' must be at most 64 of A-Z a-z 0-9 _ . -, not '%s'", name, s);
                return 0;
        }
        return config_set_string(dst, s);
}

static const Field state_fields[_ST_FIELDS] = {
        [ST_BACKEND]    = { "backend",    config_field_string,   offsetof(Config, state.backend) },
        /* as written: relative to the working directory */
        [ST_PATH]       = { "path",       config_field_string,   offsetof(Config, state.path) },
        [ST_POSTGRESQL] = { "postgresql", p_state_postgresql,    0 },
        [ST_INSTANCE]   = { "instance",   p_instance,            offsetof(Config, state.instance) },
        [ST_LEASE]      = { "lease",      config_field_duration, offsetof(Config, state.lease_usec), .min = 1 },
};

int config_state_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        yaml_node_t *seen[_ST_FIELDS] = {};
        Config *c = l->c;
        bool pg;
        int r;

        r = config_parse_mapping(l, v, SECTION(state_fields), c, name, seen);
        if (r < 0)
                return r;
        pg = c->state.backend && strcmp(c->state.backend, "postgresql") == 0;
        if (seen[ST_BACKEND] && c->state.backend && !pg && strcmp(c->state.backend, "sqlite") != 0) {
                config_problem(l, &seen[ST_BACKEND]->start_mark, "'%s.backend' must be sqlite or postgresql, not '%s'", name,
                        c->state.backend);
                return 0;
        }
        if (pg && !seen[ST_POSTGRESQL])
                config_problem(l, &v->start_mark, "'%s.backend: postgresql' needs a '%s.postgresql' section with conninfo_file",
                        name, name);
        if (!pg && seen[ST_POSTGRESQL])
                config_problem(l, &seen[ST_POSTGRESQL]->start_mark,
                        "'%s.postgresql' is set but '%s.backend' is not postgresql", name, name);
        if (seen[ST_LEASE] && (c->state.lease_usec < 2 * USEC_PER_SEC || c->state.lease_usec > 3600 * USEC_PER_SEC))
                config_problem(l, &seen[ST_LEASE]->start_mark, "'%s.lease' must be from 2s to 1h", name);
        return 0;
}

int config_state_defaults(Config *c) {
        const char *sd = getenv("STATE_DIRECTORY");

        c->state.backend = mem_strdup("sqlite");
        c->state.schema = mem_strdup("remedyd");
        c->state.pool = 4;
        c->state.lease_usec = 30 * USEC_PER_SEC;
        if (!c->state.backend || !c->state.schema)
                return -ENOMEM;
        if (sd && *sd) {
                /* STATE_DIRECTORY may list several, colon-separated: the first */
                size_t n = strcspn(sd, ":");

                c->state.path = mem_malloc(n + sizeof("/state.db"));
                if (c->state.path) {
                        memcpy(c->state.path, sd, n);
                        strcpy(c->state.path + n, "/state.db");
                }
        } else
                c->state.path = mem_strdup(DEFAULT_STATE_PATH);
        if (!c->state.path)
                return -ENOMEM;
        return 0;
}

void config_state_done(Config *c) {
        mem_free(c->state.path);
        mem_free(c->state.backend);
        mem_free(c->state.conninfo_file);
        config_free_secret(c->state.conninfo);
        mem_free(c->state.schema);
        mem_free(c->state.instance);
}
