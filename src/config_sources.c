/* The sources: section (interface.md sections 3 and 3.1): each source's
 * name, its one authentication method and that method's keys and secrets
 * (read here, at load), event_id, rate_limit and okta_verification; the
 * checks against listen: (mtls needs a client CA, none a loopback
 * webhook), unique source names, and config_find_source(). Calls the
 * engine (config-section.h), config_rules_field_template() for event_id,
 * listen.h and rules.h (templates). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "config-section.h"
#include "listen.h"
#include "remedyd-limits.h"
#include "rules.h"
#include "util.h"

static const char *const auth_method_table[_AUTH_METHOD_MAX] = {
        [AUTH_HMAC_SHA256] = "hmac_sha256",
        [AUTH_BEARER] = "bearer",
        [AUTH_HEADER_TOKEN] = "header_token",
        [AUTH_BASIC] = "basic",
        [AUTH_MTLS] = "mtls",
        [AUTH_NONE] = "none",
};

const char *config_auth_method_to_string(AuthMethod m) {
        return m >= 0 && m < _AUTH_METHOD_MAX ? auth_method_table[m] : NULL;
}

const Source *config_find_source(const Config *c, const char *name) {
        if (!c || !name)
                return NULL;
        /* A source whose name: was missing or invalid stays in the list
         * (with a problem reported) until the load fails: skip it. */
        for (size_t i = 0; i < c->n_sources; i++)
                if (c->sources[i].name && strcmp(c->sources[i].name, name) == 0)
                        return &c->sources[i];
        return NULL;
}

static int p_rate_limit(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name), *slash;
        Source *src = dst;
        _cleanup_free_ char *num = NULL;
        uint64_t n;
        double per;

        if (!s)
                return 0;
        slash = strchr(s, '/');
        if (!slash)
                goto bad;
        num = mem_strndup(s, (size_t) (slash - s));
        if (!num)
                return -ENOMEM;
        if (!config_parse_u64(num, &n) || n == 0 || n > 1000000)
                goto bad;
        if (strcmp(slash + 1, "s") == 0)
                per = 1;
        else if (strcmp(slash + 1, "m") == 0)
                per = 60;
        else if (strcmp(slash + 1, "h") == 0)
                per = 3600;
        else
                goto bad;
        src->rate_per_sec = (double) n / per;
        src->rate_burst = (unsigned) n;
        return 0;
bad:
        config_problem(l, &v->start_mark, "'%s': invalid rate '%s' (use N/s, N/m or N/h, N from 1 to 1000000)", name, s);
        return 0;
}

static const Field hmac_fields[] = {
        { "header",           config_field_string,   offsetof(SourceAuth, header) },
        { "secret_file",      config_field_path,     offsetof(SourceAuth, secret_file) },
        { "prefix",           config_field_string,   offsetof(SourceAuth, prefix) },
        { "timestamp_header", config_field_string,   offsetof(SourceAuth, timestamp_header) },
        { "tolerance",        config_field_duration, offsetof(SourceAuth, tolerance_usec), .min = 1 },
};

static const Field bearer_fields[] = {
        { "token_file", config_field_path, offsetof(SourceAuth, secret_file) },
};

static const Field header_token_fields[] = {
        { "header",     config_field_string, offsetof(SourceAuth, header) },
        { "token_file", config_field_path,   offsetof(SourceAuth, secret_file) },
};

static const Field basic_fields[] = {
        { "username",      config_field_string, offsetof(SourceAuth, username) },
        { "password_file", config_field_path,   offsetof(SourceAuth, secret_file) },
};

static const Field mtls_fields[] = {
        { "subject", config_field_string, offsetof(SourceAuth, subject) },
};

static const struct {
        const Section *section;
        const char *required[2];
} auth_methods[_AUTH_METHOD_MAX] = {
        [AUTH_HMAC_SHA256]  = { SECTION(hmac_fields),         { "header", "secret_file" } },
        [AUTH_BEARER]       = { SECTION(bearer_fields),       { "token_file" } },
        [AUTH_HEADER_TOKEN] = { SECTION(header_token_fields), { "header", "token_file" } },
        [AUTH_BASIC]        = { SECTION(basic_fields),        { "username", "password_file" } },
        [AUTH_MTLS]         = { SECTION(mtls_fields),         {} },
        [AUTH_NONE]         = { NULL,                         {} },
};

static int parse_auth_method(Loader *l, AuthMethod m, yaml_node_t *k, yaml_node_t *v, SourceAuth *a) {
        yaml_node_t *seen[8] = {};
        char name[64];
        const Section *s = auth_methods[m].section;
        int r;

        a->method = m;
        snprintf(name, sizeof(name), "auth.%s", auth_method_table[m]);
        if (m == AUTH_NONE) {
                const char *t = config_get_scalar(l, v, name);
                bool b = false;

                if (t && (confutil_parse_bool(t, &b) < 0 || !b))
                        config_problem(l, &v->start_mark, "'auth.none' must be true, not '%s'", t);
                return 0;
        }
        if (m == AUTH_MTLS && config_node_is_null(v))
                return 0;
        r = config_parse_mapping(l, v, s, a, name, seen);
        if (r < 0)
                return r;
        if (v->type != YAML_MAPPING_NODE)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(auth_methods[m].required); i++) {
                const char *req = auth_methods[m].required[i];
                bool found = false;

                if (!req)
                        continue;
                for (size_t j = 0; j < s->n; j++)
                        if (strcmp(s->fields[j].key, req) == 0 && seen[j])
                                found = true;
                if (!found)
                        config_problem(l, &k->start_mark, "'%s' is missing the required key '%s'", name, req);
        }

        if (a->secret_file && !(l->flags & CONFIG_LOAD_NO_SECRETS)) {
                ConfigMark mk = config_mark_of(l, k);

                for (size_t j = 0; j < s->n; j++)
                        if (s->fields[j].offset == offsetof(SourceAuth, secret_file) && seen[j])
                                mk = config_mark_of(l, seen[j]);
                r = config_read_secret(l, &mk, a->secret_file, m == AUTH_HMAC_SHA256, &a->secrets, &a->n_secrets);
                if (r == -ENOMEM)
                        return r;
        }
        return 0;
}

static int p_auth(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        SourceAuth *a = dst;
        yaml_node_t *first = NULL;
        bool unknown = false;
        int r;

        if (v->type != YAML_MAPPING_NODE) {
                config_problem(l, &v->start_mark, "'%s' must be a mapping holding exactly one method "
                        "(hmac_sha256, bearer, header_token, basic, mtls, none)", name);
                return 0;
        }
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
                yaml_node_t *val = yaml_document_get_node(l->doc, p->value);
                const char *key = config_get_scalar(l, k, "auth method");
                int m;

                if (!key)
                        continue;
                m = config_table_lookup(auth_method_table, _AUTH_METHOD_MAX, key);
                if (m < 0) {
                        ConfigMark km = config_mark_of(l, k);

                        unknown = true;
                        config_problem_unknown(l, &km, key, auth_method_table, _AUTH_METHOD_MAX,
                                               " (one of hmac_sha256, bearer, header_token, basic, mtls, none)",
                                               "unknown auth method '%s'", key);
                        continue;
                }
                if (first) {
                        config_problem(l, &k->start_mark, "source has two auth methods ('%s' and '%s'), exactly one is allowed",
                                (const char *) first->data.scalar.value, key);
                        continue;
                }
                first = k;
                r = parse_auth_method(l, (AuthMethod) m, k, val, a);
                if (r < 0)
                        return r;
        }
        if (!first && !unknown)
                config_problem(l, &v->start_mark, "'%s' needs exactly one method (hmac_sha256, bearer, header_token, basic, "
                        "mtls, none), found none", name);
        return 0;
}

enum { SRC_NAME, SRC_AUTH, SRC_EVENT_ID, SRC_RATE_LIMIT, SRC_OKTA, _SRC_FIELDS };

static const Field source_fields[_SRC_FIELDS] = {
        [SRC_NAME]       = { "name",              config_field_name,           offsetof(Source, name) },
        [SRC_AUTH]       = { "auth",              p_auth,                      offsetof(Source, auth) },
        [SRC_EVENT_ID]   = { "event_id",          config_rules_field_template, offsetof(Source, event_id) },
        [SRC_RATE_LIMIT] = { "rate_limit",        p_rate_limit,                0 },
        [SRC_OKTA]       = { "okta_verification", config_field_bool,           offsetof(Source, okta_verification) },
};

static void source_done(Source *s) {
        mem_free(s->name);
        mem_free(s->auth.header);
        mem_free(s->auth.prefix);
        mem_free(s->auth.timestamp_header);
        mem_free(s->auth.username);
        mem_free(s->auth.subject);
        strv_free_erase(s->auth.secrets);
        mem_free(s->auth.secret_file);
        template_free(s->event_id);
}

static int source_parse(Loader *l, yaml_node_t *item, void *element) {
        yaml_node_t *seen[_SRC_FIELDS] = {};
        Source *s = element;
        int r;

        *s = (Source) {
                .auth.method = _AUTH_METHOD_INVALID,
                .auth.tolerance_usec = 5 * 60 * USEC_PER_SEC,
                .mark = config_mark_of(l, item),
        };
        r = config_parse_mapping(l, item, SECTION(source_fields), s, "sources", seen);
        if (r < 0)
                return r;
        if (!seen[SRC_NAME])
                config_problem(l, &item->start_mark, "a source needs a 'name'");
        if (!seen[SRC_AUTH])
                config_problem(l, &item->start_mark, "source '%s' needs 'auth' with exactly one method "
                               "(hmac_sha256, bearer, header_token, basic, mtls, none)", s->name ? s->name : "?");
        return 0;
}

static const ConfigList source_list =
        CONFIG_LIST("'sources' must be a list", "source", LIMIT_CONFIG_SOURCES, Source, source_parse);

int config_sources_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        return config_parse_list(l, v, &source_list, &l->c->sources, &l->c->n_sources);
}

void config_sources_done(Config *c) {
        for (size_t i = 0; i < c->n_sources; i++)
                source_done(&c->sources[i]);
        mem_free(c->sources);
}

int config_sources_check(Loader *l) {
        Config *c = l->c;

        for (size_t i = 0; i < c->n_sources; i++) {
                const Source *s = &c->sources[i];

                if (s->auth.method == AUTH_MTLS && !c->listen.tls_client_ca_file)
                        config_problem_at(l, &s->mark, "source '%s': mtls needs listen.tls.client_ca_file",
                                          s->name ? s->name : "?");
                if (s->auth.method == AUTH_NONE && c->listen.webhook && !listen_is_local(&c->listen.webhook_addr))
                        config_problem_at(l, &s->mark,
                                          "source '%s': 'none: true' is refused unless listen.webhook is loopback or a unix socket (it is '%s')",
                                          s->name ? s->name : "?", c->listen.webhook);
        }
        return CONFIG_CHECK_UNIQUE(l, "source", c->sources, c->n_sources, Source);
}
