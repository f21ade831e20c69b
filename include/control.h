/* The control socket (listen.control, a unix socket of mode 0660): the
 * admin endpoints remedyctl uses. Everything an operator does through it is
 * audited and passes the same guardrails as rule actions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "remedyd-forward.h"

/* What the control socket reads, and what it asks the daemon for. The
 * handles are borrowed and must outlive the socket; store is required, api
 * may be NULL (the users endpoints answer 503 no_client), directory and
 * executor too (emails resolve at execution; nothing is kicked). Read at
 * each request, never kept:
 *   config()      the current Config (required, never NULL);
 *   dry_run()     whether global dry-run applies (required);
 *   status_json() GET /v1/status: the status document (required; as
 *                 status_build_json(): *ret the caller's, -ENOMEM);
 *   explain()     POST /v1/explain: the body evaluated read-only as a
 *                 delivery to SOURCE, with webhook_preview()'s answer and
 *                 errors (*ret_json the caller's); NULL: 503 unavailable. */
typedef struct ControlDeps {
        Store *store;
        UsersApi *api;
        Directory *directory;
        Executor *executor;
        const Config *(*config)(void *userdata);
        bool (*dry_run)(void *userdata);
        int (*status_json)(void *userdata, json_object **ret);
        int (*explain)(void *userdata, const char *source, const char *body, size_t len, char **ret_json,
                       size_t *ret_len);
        void *userdata;
} ControlDeps;

/* Serves on listen_fd on e (taken over always); *deps is copied.
 * -EINVAL, -ENOMEM, -EIO (MHD refused). */
int control_new(sd_event *e, const ControlDeps *deps, int listen_fd, Control **ret);
/* Answers suspended requests, drops their API calls. NULL-safe. */
Control *control_free(Control *c);
