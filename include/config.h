/* The configuration: YAML (main file plus include: globs) parsed fully into
 * an immutable Config. Nothing reads YAML after config_load() returns.
 *
 * Problems are collected, not stopped at: config_load() reports every one
 * as "FILE:LINE:COLUMN: message" (libyaml's 0-based marks printed 1-based)
 * in a ConfigProblems list.
 *
 * Implemented by src/config.c (the engine: load, free, problems) and one
 * src/config_SECTION.c per section, which also holds the functions below
 * about that section (config_find_source() in config_sources.c, the enum
 * names with the key that takes them); docs/internals/config.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "listen.h"
#include "remedyd-forward.h"

typedef enum ApiVersion {
        API_VERSION_V1BETA1,
        API_VERSION_V1,
        _API_VERSION_MAX,
        _API_VERSION_INVALID = -22,
} ApiVersion;

typedef enum AuthMethod {
        AUTH_HMAC_SHA256,
        AUTH_BEARER,
        AUTH_HEADER_TOKEN,
        AUTH_BASIC,
        AUTH_MTLS,
        AUTH_NONE,
        _AUTH_METHOD_MAX,
        _AUTH_METHOD_INVALID = -22,
} AuthMethod;

typedef enum ActionKind {
        ACTION_SUSPEND,
        ACTION_REACTIVATE,
        ACTION_NOTIFY,
        _ACTION_KIND_MAX,
        _ACTION_KIND_INVALID = -22,
} ActionKind;

typedef enum NotifyType {
        NOTIFY_SLACK,             /* incoming-webhook JSON (Slack, Mattermost, Rocket.Chat) */
        NOTIFY_WEBHOOK,           /* section 9 JSON, optionally HMAC-signed */
        NOTIFY_EMAIL,             /* SMTP through libcurl */
        _NOTIFY_TYPE_MAX,
        _NOTIFY_TYPE_INVALID = -22,
} NotifyType;

/* Where a node was: for messages after load (e.g. explain). line/column
 * are 1-based. file points into Config.files (owned by the Config). */
typedef struct ConfigMark {
        const char *file;
        unsigned line;
        unsigned column;
} ConfigMark;

struct SourceAuth {
        AuthMethod method;
        char *header;           /* hmac_sha256, header_token: header name */
        char *prefix;           /* hmac_sha256: e.g. "sha256=", or NULL */
        char *timestamp_header; /* hmac_sha256: or NULL */
        uint64_t tolerance_usec;/* hmac_sha256 with timestamp_header; default 5m */
        char *username;         /* basic */
        char *subject;          /* mtls: required subject DN substring, or NULL */
        /* The secret(s): hmac_sha256 may hold several (rotation), the
         * others exactly one. NULL-terminated. Empty (NULL) when loaded with
         * CONFIG_LOAD_NO_SECRETS. Registered with the log for redaction. */
        char **secrets;
        size_t n_secrets;
        char *secret_file;      /* secret_file/token_file/password_file: a relative path made
                                 * relative to the naming file's directory; credential:NAME as is */
};

struct Source {
        char *name;
        SourceAuth auth;
        Template *event_id;       /* or NULL: dedup by body SHA-256 */
        double rate_per_sec;      /* 0 = unlimited; "50/s", "600/m", "1000/h" */
        unsigned rate_burst;      /* tokens in the bucket; = ceil(rate per unit) */
        bool okta_verification;
        ConfigMark mark;
};

struct Rule {
        char *name;
        char **sources;           /* NULL-terminated; NULL with any_source */
        bool any_source;          /* source: "*" */
        Condition *when;          /* NULL = always */
        JPath *for_each;          /* NULL = once per event */
        Condition *where;         /* only with for_each; NULL = every element */
        ActionKind action;
        Template *user;           /* required */
        Template *reason;         /* or NULL */
        uint64_t cooldown_usec;   /* 0 = none */
        uint64_t for_usec;        /* 0 = permanent */
        bool dry_run;
        bool stop;
        ConfigMark mark;
};

/* A notification sink (notify:, interface.md section 9). Secrets are read at
 * load (not with CONFIG_LOAD_NO_SECRETS) and registered for redaction. */
struct NotifySink {
        char *name;
        NotifyType type;
        unsigned on_mask;         /* bit (1u << ActionStatus); default done, failed, held */
        char **rules;             /* NULL-terminated fnmatch() globs; NULL = every rule */
        char *url;                /* slack/webhook: url, or the contents of url_file (a secret) */
        char *url_file;
        uint64_t timeout_usec;    /* default 10s: a hanging receiver is given up on after it */
        char *ca_file;            /* extra trust anchor, or NULL */
        char *hmac_header;        /* webhook: header carrying "sha256=<hex>", or NULL */
        char *hmac_secret_file, *hmac_secret;
        char *authorization_file; /* webhook: the whole Authorization header value (Splunk HEC, */
        char *authorization;      /* Elastic ApiKey), or NULL */
        char *smtp_url;           /* email: smtp://HOST[:PORT] (STARTTLS) or smtps:// (TLS) */
        bool starttls;            /* email over smtp://: require STARTTLS (default true) */
        char *username;
        char *password_file, *password;
        char *from;
        char **to;                /* NULL-terminated */
        ConfigMark mark;
        ConfigMark rules_mark;
};

struct Config {
        char *path;               /* the main file as given */
        char **files;             /* every file read, main first; NULL-terminated */

        struct {
                char *webhook;    /* as written; parsed forms below */
                char *status;     /* NULL when set empty (disabled); same for control */
                char *control;
                ListenAddress webhook_addr, status_addr, control_addr;
                char *tls_cert_file, *tls_key_file, *tls_client_ca_file; /* or NULL */
                size_t max_body_bytes;
        } listen;

        struct {
                char *base_url;           /* no trailing slash */
                ApiVersion api_version;
                char *account_id;
                char *client_id_file, *client_secret_file; /* relative paths resolved against the
                                                            * file's directory; credential:NAME as is */
                char *client_id, *client_secret;           /* contents; NULL with NO_SECRETS */
                char *user_agent;         /* default "remedyd/VERSION" */
                uint64_t timeout_usec;    /* default 10s */
                char *ca_file;            /* or NULL */
                uint64_t directory_refresh_usec; /* default 10m */
        } onepassword;

        struct {
                char *backend;            /* "sqlite" (default) or "postgresql" */
                char *path;               /* default $STATE_DIRECTORY/state.db else /var/lib/remedyd/state.db */
                char *conninfo_file;      /* postgresql: resolved like the other *_file keys */
                char *conninfo;           /* its contents; NULL with NO_SECRETS or for sqlite */
                char *schema;             /* default "remedyd" */
                unsigned pool;            /* default 4 */
                char *instance;           /* NULL = the host name */
                uint64_t lease_usec;      /* default 30s */
        } state;

        struct {
                bool dry_run;
                char **protected_users;   /* NULL-terminated: emails (globs) or user ids */
                unsigned max_suspensions; /* 0 = no cap */
                uint64_t window_usec;     /* default 1h */
        } safety;

        Source *sources;
        size_t n_sources;
        Rule *rules;
        size_t n_rules;

        NotifySink *notify;
        size_t n_notify;

        uint64_t loaded_usec;     /* CLOCK_REALTIME when loaded */
};

typedef struct ConfigProblems {
        char **lines;             /* "FILE:LINE:COLUMN: message", NULL-terminated */
        size_t n;
} ConfigProblems;

enum {
        /* Do not read secret files (remedyctl explain). */
        CONFIG_LOAD_NO_SECRETS = 1u << 0,
};

/* Loads and validates path (and every include). On success returns 0 and
 * *ret (caller frees with config_free). On failure returns -EINVAL (or
 * -ENOMEM), *ret untouched, and, if problems is non-NULL, fills it with
 * every problem found (caller frees with config_problems_free). Reading the
 * main file fails with its errno and one problem "FILE: message". */
int config_load(const char *path, unsigned flags, Config **ret, ConfigProblems *problems);
Config *config_free(Config *c);
void config_problems_free(ConfigProblems *p);
/* For command-line tools: prints every problem line to stderr, or, when a
 * load failed without one, "PREFIXPATH: strerror(-error)"; then frees them. */
void config_problems_report(ConfigProblems *p, const char *prefix, const char *path, int error);

const Source *config_find_source(const Config *c, const char *name);
/* True for a loaded config without an 'onepassword' section, which
 * config_load() accepts only when it has no sources and no rules: the
 * packaged default. remedyd refuses to start on (or reload into) it. */
bool config_is_unconfigured(const Config *c);

const char *config_action_kind_to_string(ActionKind k);
ActionKind config_action_kind_from_string(const char *s);
const char *config_auth_method_to_string(AuthMethod m);
const char *config_api_version_to_string(ApiVersion v);
const char *config_notify_type_to_string(NotifyType t);
const NotifySink *config_find_notify(const Config *c, const char *name);
