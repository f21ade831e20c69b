/* The listen: section (interface.md section 3): the webhook, status and
 * control listeners' addresses, TLS and the body limit; its defaults, and
 * the checks between its keys. Calls the engine (config-section.h) and
 * listen.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "config-section.h"
#include "listen.h"
#include "remedyd-limits.h"
#include "util.h"

#define DEFAULT_WEBHOOK "0.0.0.0:8080"
#define DEFAULT_STATUS "127.0.0.1:9464"
#define DEFAULT_CONTROL "unix:/run/remedyd/control.sock"

/* listen_parse(), but "unix:relative/path" is taken relative to the working
 * directory (like state.path), as the demo does. */
static int parse_listen(const char *s, ListenAddress *ret) {
        char cwd[PATH_MAX], *abs;
        int r;

        if (!str_startswith(s, "unix:") || s[5] == '/' || s[5] == 0)
                return listen_parse(s, ret);
        if (!getcwd(cwd, sizeof(cwd)))
                return -errno;
        if (asprintf(&abs, "unix:%s/%s", cwd, s + 5) < 0)
                return -ENOMEM;
        r = listen_parse(abs, ret);
        free(abs);
        return r;
}

static int p_listen(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        ListenAddress a;
        const char *s;

        if (f->min && (config_node_is_null(v) || (v->type == YAML_SCALAR_NODE && v->data.scalar.length == 0))) {
                /* status/control may be switched off with an empty value */
                mem_free(*(char **) dst);
                *(char **) dst = NULL;
                return 0;
        }
        s = config_get_nonempty(l, v, name);
        if (!s)
                return 0;
        if (parse_listen(s, &a) < 0) {
                config_problem(l, &v->start_mark,
                        "'%s': invalid address '%s' (use HOST:PORT, [V6]:PORT, unix:/path or systemd:NAME)", name, s);
                return 0;
        }
        if (f->max && a.kind != LISTEN_UNIX) {
                config_problem(l, &v->start_mark, "'%s' must be a unix socket (unix:/path), not '%s'", name, s);
                return 0;
        }
        return config_set_string(dst, s);
}

static const Field tls_fields[] = {
        { "cert_file",      config_field_path, offsetof(Config, listen.tls_cert_file) },
        { "key_file",       config_field_path, offsetof(Config, listen.tls_key_file) },
        { "client_ca_file", config_field_path, offsetof(Config, listen.tls_client_ca_file) },
};

static const Field listen_fields[] = {
        { "webhook",        p_listen,             offsetof(Config, listen.webhook) },
        { "status",         p_listen,             offsetof(Config, listen.status), .min = 1 },
        { "control",        p_listen,             offsetof(Config, listen.control), .min = 1, .max = 1 },
        { "tls",            config_field_section, 0, SECTION(tls_fields) },
        { "max_body_bytes", config_field_size,    offsetof(Config, listen.max_body_bytes), .min = 1,
                                                  .max = LIMIT_BODY_BYTES_MAX },
};

int config_listen_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        return config_parse_mapping(l, v, SECTION(listen_fields), l->c, name, NULL);
}

int config_listen_defaults(Config *c) {
        c->listen.webhook = mem_strdup(DEFAULT_WEBHOOK);
        c->listen.status = mem_strdup(DEFAULT_STATUS);
        c->listen.control = mem_strdup(DEFAULT_CONTROL);
        c->listen.max_body_bytes = LIMIT_BODY_BYTES_DEFAULT;
        if (!c->listen.webhook || !c->listen.status || !c->listen.control)
                return -ENOMEM;
        return 0;
}

void config_listen_done(Config *c) {
        mem_free(c->listen.webhook);
        mem_free(c->listen.status);
        mem_free(c->listen.control);
        mem_free(c->listen.tls_cert_file);
        mem_free(c->listen.tls_key_file);
        mem_free(c->listen.tls_client_ca_file);
}

void config_listen_check(Loader *l) {
        Config *c = l->c;
        ConfigMark top = config_top_mark(l);

        /* every address was checked as it was parsed */
        (void) parse_listen(c->listen.webhook, &c->listen.webhook_addr);
        if (c->listen.status)
                (void) parse_listen(c->listen.status, &c->listen.status_addr);
        if (c->listen.control)
                (void) parse_listen(c->listen.control, &c->listen.control_addr);

        if (c->listen.tls_key_file && !c->listen.tls_cert_file)
                config_problem_at(l, &top, "listen.tls.key_file needs listen.tls.cert_file");
        if (c->listen.tls_cert_file && !c->listen.tls_key_file)
                config_problem_at(l, &top, "listen.tls.cert_file needs listen.tls.key_file");
        if (c->listen.tls_client_ca_file && !c->listen.tls_cert_file)
                config_problem_at(l, &top, "listen.tls.client_ca_file needs listen.tls.cert_file and key_file");
        config_check_readable(l, &top, "listen.tls.cert_file", c->listen.tls_cert_file);
        config_check_readable(l, &top, "listen.tls.key_file", c->listen.tls_key_file);
        config_check_readable(l, &top, "listen.tls.client_ca_file", c->listen.tls_client_ca_file);
}
