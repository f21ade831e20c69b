/* The webhook listener (contract section 4): POST /hooks/{source}.
 *
 * Each request walks a rejection ladder (method, path, content type,
 * declared length, authentication on the raw bytes, rate limit, JSON),
 * then the rules produce actions whose pre-status is settled on the loop
 * (resolution through the directory, protected users, dry-run), and the
 * event is handed to the store. The connection stays suspended until the
 * store has committed it: 202 (or 200 for a duplicate delivery) only then,
 * 503 if the store failed. See docs/internals/webhook.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "remedyd-forward.h"

/* What the webhook reads. The handles are borrowed and must outlive the
 * webhook; directory, executor and metrics may be NULL (emails are then
 * resolved at execution, nothing is kicked, nothing counted). What a
 * reload changes is read through the callbacks, never kept past one
 * request: config() returns the current Config (NULL: the webhook answers
 * 404), dry_run() whether global dry-run applies. Both are required. */
typedef struct WebhookDeps {
        Store *store;
        Directory *directory;
        Executor *executor;
        Metrics *metrics;
        const Config *(*config)(void *userdata);
        bool (*dry_run)(void *userdata);
        void *userdata;
} WebhookDeps;

/* Serves the webhook on listen_fd on e; *deps is copied. The config is
 * read at each request, so a reload takes effect for the next request.
 * On success the listener owns listen_fd; on failure the caller still
 * does. -EINVAL (no config), -ENOMEM, or http_server_new() errors (TLS
 * files from config()->listen.tls_*). */
int webhook_new(sd_event *e, const WebhookDeps *deps, int listen_fd, Webhook **ret);
/* Answers suspended requests with 503, closes the listener. Events
 * already handed to the store still complete there; their callbacks find
 * the webhook gone and only free their bookkeeping. NULL-safe. */
Webhook *webhook_free(Webhook *w);
/* After a reload: rebuilds the per-source rate limiters from config()
 * (keeping the tokens of sources that stay) and applies max_body_bytes.
 * Returns 0 or -ENOMEM (the old limiters then stay). */
int webhook_reconfigure(Webhook *w);
/* Shutdown: every new request gets 503 shutting_down; requests waiting
 * for the store still get their answer. */
void webhook_stop_accepting(Webhook *w);
/* Events handed to the store whose commit has not been reported yet. */
unsigned webhook_pending(Webhook *w);

/* A delivery's body as the webhook reads it: well-formed UTF-8
 * (utf8_is_valid()), then one JSON object (json-c, at most LIMIT_JSON_DEPTH
 * deep) with nothing after it but blanks and no key twice in any object.
 * tok: a tokener from json_tokener_new_ex(LIMIT_JSON_DEPTH) to reuse (it is
 * reset first), or NULL for a temporary one. On success *ret owns the
 * object. Errors: -EILSEQ (not UTF-8), -EINVAL (not such an object),
 * -E2BIG (over INT32_MAX bytes), -ENOMEM. */
int webhook_parse_body(json_tokener *tok, const char *body, size_t len, json_object **ret);

/* remedyctl explain --live (control POST /v1/explain): the body evaluated
 * exactly as a delivery to /hooks/SOURCE would be (the same path: event id
 * and dedup key, rules, templates, the directory, the pre-status), then
 * store_preview_event() instead of the commit: nothing recorded, audited,
 * called or counted (no metrics, no rate-limit token). The source's
 * authentication is not checked: the caller is the trusted control
 * socket. *ret_json (caller frees) is the webhook answer's shape, each
 * action {"rule", "action", "user", "status", "user_id", "reason",
 * "detail"}, event_id null unless a duplicate; *ret_queued the actions that
 * would be queued (0 for a duplicate). -ENOENT no such source, -EMSGSIZE
 * over max_body_bytes, -EILSEQ / -EINVAL as webhook_parse_body(), -ENOBUFS
 * too many actions, the store's errors, -ENOMEM. */
int webhook_preview(Webhook *w, const char *source, const char *body, size_t len, char **ret_json,
                    size_t *ret_len, unsigned *ret_queued);
