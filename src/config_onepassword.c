/* The onepassword: section (interface.md section 3): the 1Password
 * account, its API and the OAuth client credentials (read here, at load),
 * their defaults, and the check that a config acting on anything names an
 * account. Calls the engine (config-section.h) and listen.h (a loopback
 * host may use http://). */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "config-section.h"
#include "listen.h"
#include "util.h"
#include "version.h"

#define DEFAULT_BASE_URL "https://api.1password.com"

static const char *const api_version_table[_API_VERSION_MAX] = {
        [API_VERSION_V1BETA1] = "v1beta1",
        [API_VERSION_V1] = "v1",
};

const char *config_api_version_to_string(ApiVersion v) {
        return v >= 0 && v < _API_VERSION_MAX ? api_version_table[v] : NULL;
}

bool config_is_unconfigured(const Config *c) {
        return !c->onepassword.account_id;
}

static int p_api_version(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name);
        int k;

        if (!s)
                return 0;
        k = config_table_lookup(api_version_table, _API_VERSION_MAX, s);
        if (k < 0) {
                config_problem(l, &v->start_mark, "'%s' must be v1beta1 or v1, not '%s'", name, s);
                return 0;
        }
        *(ApiVersion *) dst = (ApiVersion) k;
        return 0;
}

static int p_base_url(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name), *host, *end;
        ListenAddress a = { .kind = LISTEN_INET };
        bool http;
        size_t n;
        char *u;

        if (!s)
                return 0;
        http = str_startswith(s, "http://");
        if (!http && !str_startswith(s, "https://"))
                goto bad;
        host = s + (http ? 7 : 8);
        if (strpbrk(host, "@?# \t"))
                goto bad;
        if (*host == '[') {
                end = strchr(host, ']');
                if (!end)
                        goto bad;
                host++;
        } else
                end = host + strcspn(host, ":/");
        if (end == host || (size_t) (end - host) >= sizeof(a.host))
                goto bad;
        memcpy(a.host, host, (size_t) (end - host));
        a.host[end - host] = 0;
        if (http && !listen_is_local(&a)) {
                config_problem(l, &v->start_mark, "'%s': http:// is only allowed for a loopback host, use https:// for '%s'",
                        name, a.host);
                return 0;
        }
        n = strlen(s);
        while (n > 0 && s[n - 1] == '/')
                n--;
        u = mem_strndup(s, n);
        if (!u)
                return -ENOMEM;
        mem_free(*(char **) dst);
        *(char **) dst = u;
        return 0;
bad:
        config_problem(l, &v->start_mark, "'%s': invalid URL '%s' (use https://HOST[:PORT][/PATH])", name, s);
        return 0;
}

static int p_account_id(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_nonempty(l, v, name);

        if (!s)
                return 0;
        if (!is_user_id(s)) {
                config_problem(l, &v->start_mark, "'%s' must be 26 characters A-Z and 0-9, not '%s'", name, s);
                return 0;
        }
        return config_set_string(dst, s);
}

enum {
        OP_BASE_URL, OP_API_VERSION, OP_ACCOUNT_ID, OP_CLIENT_ID_FILE, OP_CLIENT_SECRET_FILE,
        OP_USER_AGENT, OP_TIMEOUT, OP_CA_FILE, OP_DIRECTORY_REFRESH, _OP_FIELDS,
};

static const Field onepassword_fields[_OP_FIELDS] = {
        [OP_BASE_URL]           = { "base_url",           p_base_url,            offsetof(Config, onepassword.base_url) },
        [OP_API_VERSION]        = { "api_version",        p_api_version,         offsetof(Config, onepassword.api_version) },
        [OP_ACCOUNT_ID]         = { "account_id",         p_account_id,          offsetof(Config, onepassword.account_id) },
        [OP_CLIENT_ID_FILE]     = { "client_id_file",     config_field_path,     offsetof(Config, onepassword.client_id_file) },
        [OP_CLIENT_SECRET_FILE] = { "client_secret_file", config_field_path,     offsetof(Config, onepassword.client_secret_file) },
        [OP_USER_AGENT]         = { "user_agent",         config_field_string,   offsetof(Config, onepassword.user_agent) },
        [OP_TIMEOUT]            = { "timeout",            config_field_duration, offsetof(Config, onepassword.timeout_usec),
                                    .min = 1 },
        [OP_CA_FILE]            = { "ca_file",            config_field_path,     offsetof(Config, onepassword.ca_file) },
        [OP_DIRECTORY_REFRESH]  = { "directory_refresh",  config_field_duration,
                                    offsetof(Config, onepassword.directory_refresh_usec), .min = 1 },
};

int config_onepassword_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        Config *c = l->c;
        yaml_node_t *seen[_OP_FIELDS] = {};
        static const int required[] = { OP_ACCOUNT_ID, OP_CLIENT_ID_FILE, OP_CLIENT_SECRET_FILE };
        ConfigMark m;
        int r;

        l->have_onepassword = true;
        r = config_parse_mapping(l, v, SECTION(onepassword_fields), c, name, seen);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                if (!seen[required[i]])
                        config_problem(l, &v->start_mark, "'onepassword' is missing the required key '%s'",
                                onepassword_fields[required[i]].key);

        if (seen[OP_CA_FILE] && c->onepassword.ca_file) {
                m = config_mark_of(l, seen[OP_CA_FILE]);
                config_check_readable(l, &m, "onepassword.ca_file", c->onepassword.ca_file);
        }
        r = config_read_key_secret(l, seen[OP_CLIENT_ID_FILE], c->onepassword.client_id_file, &c->onepassword.client_id);
        if (r < 0)
                return r;
        return config_read_key_secret(l, seen[OP_CLIENT_SECRET_FILE], c->onepassword.client_secret_file,
                                      &c->onepassword.client_secret);
}

int config_onepassword_defaults(Config *c) {
        c->onepassword.base_url = mem_strdup(DEFAULT_BASE_URL);
        c->onepassword.api_version = API_VERSION_V1BETA1;
        c->onepassword.user_agent = mem_strdup("remedyd/" REMEDYD_VERSION);
        c->onepassword.timeout_usec = 10 * USEC_PER_SEC;
        c->onepassword.directory_refresh_usec = 10 * 60 * USEC_PER_SEC;
        if (!c->onepassword.base_url || !c->onepassword.user_agent)
                return -ENOMEM;
        return 0;
}

void config_onepassword_done(Config *c) {
        mem_free(c->onepassword.base_url);
        mem_free(c->onepassword.account_id);
        mem_free(c->onepassword.client_id_file);
        mem_free(c->onepassword.client_secret_file);
        config_free_secret(c->onepassword.client_id);
        config_free_secret(c->onepassword.client_secret);
        mem_free(c->onepassword.user_agent);
        mem_free(c->onepassword.ca_file);
}

void config_onepassword_check(Loader *l) {
        Config *c = l->c;
        ConfigMark top = config_top_mark(l);

        /* A file with nothing to act on may leave the account out: the
         * packaged default, which the daemon then refuses to run. */
        if (!l->have_onepassword && (c->n_sources > 0 || c->n_rules > 0))
                config_problem_at(l, &top, "missing required section 'onepassword' (account_id, client_id_file, client_secret_file)");
}
