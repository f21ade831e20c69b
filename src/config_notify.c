/* The notify: section (interface.md section 9): each sink's type and the
 * keys that type takes, its URL, HMAC, Authorization and SMTP secrets (read
 * here, at load), the outcomes it wants (by store.h's names), and the
 * checks across files: unique sink names, and that a rule a sink names
 * exists. Calls the engine (config-section.h), listen.h (loopback hosts)
 * and store.h (ActionStatus names). */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "config-section.h"
#include "listen.h"
#include "remedyd-limits.h"
#include "store.h"
#include "util.h"

static const char *const notify_type_table[_NOTIFY_TYPE_MAX] = {
        [NOTIFY_SLACK] = "slack",
        [NOTIFY_WEBHOOK] = "webhook",
        [NOTIFY_EMAIL] = "email",
};

const char *config_notify_type_to_string(NotifyType t) {
        return t >= 0 && t < _NOTIFY_TYPE_MAX ? notify_type_table[t] : NULL;
}

const NotifySink *config_find_notify(const Config *c, const char *name) {
        for (size_t i = 0; c && name && i < c->n_notify; i++)
                if (c->notify[i].name && strcmp(c->notify[i].name, name) == 0)
                        return &c->notify[i];
        return NULL;
}

#define NOTIFY_DEFAULT_ON \
        ((1u << ACTION_STATUS_DONE) | (1u << ACTION_STATUS_FAILED) | (1u << ACTION_STATUS_HELD))

static int p_notify_type(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        const char *s = config_get_scalar(l, v, name);
        int k;

        if (!s)
                return 0;
        k = config_table_lookup(notify_type_table, _NOTIFY_TYPE_MAX, s);
        if (k < 0) {
                config_problem(l, &v->start_mark, "'%s' must be slack, webhook or email, not '%s'", name, s);
                return 0;
        }
        *(NotifyType *) dst = (NotifyType) k;
        return 0;
}

static int p_notify_on(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        unsigned mask = 0;

        if (v->type != YAML_SEQUENCE_NODE) {
                config_problem(l, &v->start_mark, "'%s' must be a list of outcomes, e.g. [done, failed, held]", name);
                return 0;
        }
        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                yaml_node_t *item = yaml_document_get_node(l->doc, *i);
                const char *s = config_get_nonempty(l, item, name);
                ActionStatus st;

                if (!s)
                        continue;
                st = store_action_status_from_string(s);
                if (st < 0 || st == ACTION_STATUS_RUNNING) {
                        config_problem(l, &item->start_mark,
                                "'%s': unknown outcome '%s' (done, failed, held, dry_run, queued, cooldown, protected, "
                                "unknown_user, ambiguous_user, unresolved, cancelled)", name, s);
                        continue;
                }
                mask |= 1u << st;
        }
        if (mask == 0 && config_node_items(v) == 0)
                config_problem(l, &v->start_mark, "'%s' must name at least one outcome", name);
        *(unsigned *) dst = mask;
        return 0;
}

/* scheme://HOST[:PORT][/...] with HOST loopback when the scheme is the
 * insecure one. Returns 0, -EINVAL (syntax) or -EPERM (insecure, not
 * loopback). */
static int url_check(const char *s, const char *secure, const char *insecure) {
        ListenAddress a = { .kind = LISTEN_INET };
        const char *host, *end;
        bool plain;

        plain = insecure && str_startswith(s, insecure);
        if (!plain && !str_startswith(s, secure))
                return -EINVAL;
        host = s + strlen(plain ? insecure : secure);
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= 0x20 || *p == 0x7f)
                        return -EINVAL;
        if (*host == '[') {
                end = strchr(host, ']');
                if (!end)
                        return -EINVAL;
                host++;
        } else
                end = host + strcspn(host, ":/?#");
        if (end == host || (size_t) (end - host) >= sizeof(a.host) || memchr(host, '@', (size_t) (end - host)))
                return -EINVAL;
        memcpy(a.host, host, (size_t) (end - host));
        a.host[end - host] = 0;
        if (plain && !listen_is_local(&a))
                return -EPERM;
        return 0;
}

/* An addr-spec as a mail header can carry it between < and >. */
static bool mail_address_valid(const char *s) {
        const char *at = strrchr(s, '@');

        if (!at || at == s || !at[1] || strlen(s) > 254)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f || strchr("<>()[],;:\\\"", *p))
                        return false;
        return true;
}

enum {
        NS_NAME, NS_TYPE, NS_ON, NS_RULES, NS_URL, NS_URL_FILE, NS_TIMEOUT, NS_CA_FILE, NS_HMAC,
        NS_AUTHORIZATION_FILE, NS_SMTP_URL, NS_STARTTLS, NS_USERNAME, NS_PASSWORD_FILE, NS_FROM, NS_TO,
        _NS_FIELDS,
};

static const Field notify_hmac_fields[] = {
        { "header",      config_field_string, offsetof(NotifySink, hmac_header) },
        { "secret_file", config_field_path,   offsetof(NotifySink, hmac_secret_file) },
};

static const Field notify_fields[_NS_FIELDS] = {
        [NS_NAME]               = { "name",               config_field_name,     offsetof(NotifySink, name) },
        [NS_TYPE]               = { "type",               p_notify_type,         offsetof(NotifySink, type) },
        [NS_ON]                 = { "on",                 p_notify_on,           offsetof(NotifySink, on_mask) },
        [NS_RULES]              = { "rules",              config_field_strv,     offsetof(NotifySink, rules) },
        [NS_URL]                = { "url",                config_field_string,   offsetof(NotifySink, url) },
        [NS_URL_FILE]           = { "url_file",           config_field_path,     offsetof(NotifySink, url_file) },
        [NS_TIMEOUT]            = { "timeout",            config_field_duration, offsetof(NotifySink, timeout_usec), .min = 1 },
        [NS_CA_FILE]            = { "ca_file",            config_field_path,     offsetof(NotifySink, ca_file) },
        [NS_HMAC]               = { "hmac_sha256",        config_field_section,  0, SECTION(notify_hmac_fields) },
        [NS_AUTHORIZATION_FILE] = { "authorization_file", config_field_path,     offsetof(NotifySink, authorization_file) },
        [NS_SMTP_URL]           = { "smtp_url",           config_field_string,   offsetof(NotifySink, smtp_url) },
        [NS_STARTTLS]           = { "starttls",           config_field_bool,     offsetof(NotifySink, starttls) },
        [NS_USERNAME]           = { "username",           config_field_string,   offsetof(NotifySink, username) },
        [NS_PASSWORD_FILE]      = { "password_file",      config_field_path,     offsetof(NotifySink, password_file) },
        [NS_FROM]               = { "from",               config_field_string,   offsetof(NotifySink, from) },
        [NS_TO]                 = { "to",                 config_field_strv,     offsetof(NotifySink, to) },
};

/* Which keys each type takes (besides name, type, on, rules, timeout). */
static const bool notify_keys[_NOTIFY_TYPE_MAX][_NS_FIELDS] = {
        [NOTIFY_SLACK]   = { [NS_URL] = true, [NS_URL_FILE] = true, [NS_CA_FILE] = true },
        [NOTIFY_WEBHOOK] = { [NS_URL] = true, [NS_URL_FILE] = true, [NS_CA_FILE] = true, [NS_HMAC] = true,
                             [NS_AUTHORIZATION_FILE] = true },
        [NOTIFY_EMAIL]   = { [NS_SMTP_URL] = true, [NS_STARTTLS] = true, [NS_CA_FILE] = true, [NS_USERNAME] = true,
                             [NS_PASSWORD_FILE] = true, [NS_FROM] = true, [NS_TO] = true },
};

static void notify_sink_done(NotifySink *k) {
        mem_free(k->name);
        strv_free(k->rules);
        if (k->url_file) /* then the URL is the secret */
                config_free_secret(k->url);
        else
                mem_free(k->url);
        mem_free(k->url_file);
        mem_free(k->ca_file);
        mem_free(k->hmac_header);
        mem_free(k->hmac_secret_file);
        config_free_secret(k->hmac_secret);
        mem_free(k->authorization_file);
        config_free_secret(k->authorization);
        mem_free(k->smtp_url);
        mem_free(k->username);
        mem_free(k->password_file);
        config_free_secret(k->password);
        mem_free(k->from);
        strv_free(k->to);
}

static int notify_check(Loader *l, yaml_node_t *item, NotifySink *k, yaml_node_t *const *seen) {
        const char *kn = k->name ? k->name : "?";
        ConfigMark m;
        int r;

        if (!seen[NS_NAME])
                config_problem(l, &item->start_mark, "a notify sink needs a 'name'");
        if (!seen[NS_TYPE]) {
                config_problem(l, &item->start_mark, "notify sink '%s' needs 'type' (slack, webhook or email)", kn);
                return 0;
        }
        if (k->type < 0)
                return 0;
        for (int i = NS_URL; i < _NS_FIELDS; i++)
                if (seen[i] && i != NS_TIMEOUT && !notify_keys[k->type][i])
                        config_problem(l, &seen[i]->start_mark, "notify sink '%s': '%s' does not apply to type %s", kn,
                                notify_fields[i].key, notify_type_table[k->type]);

        if (k->type == NOTIFY_SLACK || k->type == NOTIFY_WEBHOOK) {
                if (!!seen[NS_URL] == !!seen[NS_URL_FILE])
                        config_problem(l, &item->start_mark, "notify sink '%s' needs exactly one of 'url' and 'url_file'", kn);
                if (seen[NS_URL] && k->url && (r = url_check(k->url, "https://", "http://")) < 0)
                        config_problem(l, &seen[NS_URL]->start_mark, r == -EPERM
                                ? "notify sink '%s': http:// is only allowed for a loopback host, use https://"
                                : "notify sink '%s': invalid url (use https://HOST[:PORT]/PATH)", kn);
                if ((r = config_read_key_secret(l, seen[NS_URL_FILE], k->url_file, &k->url)) < 0)
                        return r;
                if (seen[NS_URL_FILE] && k->url && url_check(k->url, "https://", "http://") < 0)
                        /* never print the URL: it is the secret */
                        config_problem(l, &seen[NS_URL_FILE]->start_mark,
                                "notify sink '%s': url_file '%s' does not hold an https:// URL (http:// only to a loopback host)",
                                kn, k->url_file);
        }
        if (seen[NS_HMAC] && (!k->hmac_header || !k->hmac_secret_file))
                config_problem(l, &seen[NS_HMAC]->start_mark, "notify sink '%s': 'hmac_sha256' needs 'header' and 'secret_file'", kn);
        if (k->hmac_header && strspn(k->hmac_header, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") !=
                                      strlen(k->hmac_header))
                config_problem(l, &seen[NS_HMAC]->start_mark, "notify sink '%s': invalid header name '%s'", kn, k->hmac_header);
        if ((r = config_read_key_secret(l, seen[NS_HMAC], k->hmac_secret_file, &k->hmac_secret)) < 0)
                return r;
        if ((r = config_read_key_secret(l, seen[NS_AUTHORIZATION_FILE], k->authorization_file, &k->authorization)) < 0)
                return r;

        if (k->type == NOTIFY_EMAIL) {
                static const int required[] = { NS_SMTP_URL, NS_FROM, NS_TO };

                for (size_t i = 0; i < ELEMENTSOF(required); i++)
                        if (!seen[required[i]])
                                config_problem(l, &item->start_mark, "notify sink '%s' (email) needs '%s'", kn,
                                        notify_fields[required[i]].key);
                if (seen[NS_SMTP_URL] && k->smtp_url) {
                        r = url_check(k->smtp_url, "smtps://", "smtp://");
                        if (r == -EPERM && !k->starttls)
                                config_problem(l, &seen[NS_SMTP_URL]->start_mark,
                                        "notify sink '%s': 'starttls: false' is only allowed for a loopback host", kn);
                        else if (r < 0 && r != -EPERM)
                                config_problem(l, &seen[NS_SMTP_URL]->start_mark,
                                        "notify sink '%s': invalid smtp_url '%s' (use smtps://HOST[:PORT] or smtp://HOST[:PORT] with STARTTLS)",
                                        kn, k->smtp_url);
                        if (seen[NS_STARTTLS] && str_startswith(k->smtp_url, "smtps://"))
                                config_problem(l, &seen[NS_STARTTLS]->start_mark,
                                        "notify sink '%s': 'starttls' applies to smtp:// only (smtps:// is TLS from the start)", kn);
                }
                if (!!seen[NS_USERNAME] != !!seen[NS_PASSWORD_FILE])
                        config_problem(l, &item->start_mark, "notify sink '%s': 'username' and 'password_file' go together", kn);
                if (k->from && !mail_address_valid(k->from))
                        config_problem(l, &seen[NS_FROM]->start_mark,
                                "notify sink '%s': invalid 'from' address (one addr-spec such as remedyd@example.com)", kn);
                for (char **t = k->to; t && *t; t++)
                        if (!mail_address_valid(*t))
                                config_problem(l, &seen[NS_TO]->start_mark,
                                        "notify sink '%s': invalid 'to' address (addr-specs such as soc@example.com)", kn);
                if (seen[NS_TO] && k->to && !k->to[0])
                        config_problem(l, &seen[NS_TO]->start_mark, "notify sink '%s': 'to' must name at least one address", kn);
                if ((r = config_read_key_secret(l, seen[NS_PASSWORD_FILE], k->password_file, &k->password)) < 0)
                        return r;
        }
        if (seen[NS_CA_FILE] && k->ca_file) {
                m = config_mark_of(l, seen[NS_CA_FILE]);
                config_check_readable(l, &m, "ca_file", k->ca_file);
        }
        if (seen[NS_RULES])
                k->rules_mark = config_mark_of(l, seen[NS_RULES]);
        return 0;
}

static int notify_sink_parse(Loader *l, yaml_node_t *item, void *element) {
        yaml_node_t *seen[_NS_FIELDS] = {};
        NotifySink *k = element;
        int r;

        *k = (NotifySink) {
                .type = _NOTIFY_TYPE_INVALID,
                .on_mask = NOTIFY_DEFAULT_ON,
                .timeout_usec = 10 * USEC_PER_SEC,
                .starttls = true,
                .mark = config_mark_of(l, item),
        };
        r = config_parse_mapping(l, item, SECTION(notify_fields), k, "notify", seen);
        if (r < 0)
                return r;
        return notify_check(l, item, k, seen);
}

static const ConfigList notify_list =
        CONFIG_LIST("'notify' must be a list of sinks", "notify sink", LIMIT_NOTIFY_SINKS, NotifySink, notify_sink_parse);

int config_notify_parse(Loader *l, yaml_node_t *v, void *dst, const Field *f, const char *name) {
        return config_parse_list(l, v, &notify_list, &l->c->notify, &l->c->n_notify);
}

void config_notify_done(Config *c) {
        for (size_t i = 0; i < c->n_notify; i++)
                notify_sink_done(&c->notify[i]);
        mem_free(c->notify);
}

/* Sink names are unique; a rule name without glob characters names a rule
 * (or "manual"). */
int config_notify_check(Loader *l) {
        Config *c = l->c;
        _cleanup_free_ const char **cand = NULL;
        int r;

        r = CONFIG_CHECK_UNIQUE(l, "notify sink", c->notify, c->n_notify, NotifySink);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_notify; i++)
                for (char **g = c->notify[i].rules; g && *g; g++) {
                        bool found = strcmp(*g, "manual") == 0 || strpbrk(*g, "*?[");

                        for (size_t j = 0; j < c->n_rules && !found; j++)
                                found = c->rules[j].name && strcmp(c->rules[j].name, *g) == 0;
                        if (found)
                                continue;
                        if (!cand && !(cand = CONFIG_NAMES(c->rules, c->n_rules, Rule)))
                                return -ENOMEM;
                        config_problem_unknown(l, &c->notify[i].rules_mark, *g, cand, c->n_rules,
                                               " (a rule name, a glob, or \"manual\")", "notify sink '%s': unknown rule '%s'",
                                               c->notify[i].name ? c->notify[i].name : "?", *g);
                }
        return 0;
}
