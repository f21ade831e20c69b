/* remedyctl subcommands. Each returns the process exit code. argv[0] is the
 * subcommand name; options after it are the subcommand's own. */
#pragma once

#include <stddef.h>

#include <json-c/json.h>

typedef struct CtlContext {
        const char *config_path;  /* -c, default /etc/remedyd/remedyd.yaml */
        const char *socket_path;  /* --socket, or NULL: from the config */
} CtlContext;

/* remedyctl users list|get ... */
int ctl_users(const CtlContext *ctx, int argc, char **argv);
/* remedyctl explain --source NAME FILE.json: 0 some action, 1 none, 2 error */
int ctl_explain(const CtlContext *ctx, int argc, char **argv);
/* status, suspend, reactivate, actions, release, cancel, history, notifications */
int ctl_admin(const CtlContext *ctx, int argc, char **argv);
/* migrate-state --from sqlite:PATH: 0 copied, 1 refused or failed, 2 usage */
int ctl_migrate_state(const CtlContext *ctx, int argc, char **argv);

/* One request to the daemon's control socket (--socket, else listen.control
 * of the config): payload (may be NULL) is sent as is. On success
 * *ret_status is the HTTP status and *ret_body the parsed JSON answer (NULL
 * if it was not JSON; caller puts it). -ECONNREFUSED (reported) when the
 * daemon cannot be reached, -ENOMEM, or the config's errors (reported). */
int ctl_control_call(const CtlContext *ctx, const char *method, const char *path, const char *payload,
                     size_t payload_len, long *ret_status, json_object **ret_body);
