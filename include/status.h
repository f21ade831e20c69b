/* The read-only status listener (listen.status, contract section 5):
 * GET/HEAD /healthz, /readyz, /status, /metrics. The documents are built by
 * functions that need no server, so the control socket and remedyctl
 * status reuse them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "remedyd-forward.h"

/* Serves on listen_fd on d's loop. On success the listener owns listen_fd;
 * on failure the caller still does. -ENOMEM, -EIO (MHD refused). */
int status_new(Daemon *d, int listen_fd, Status **ret);
/* NULL-safe; returns NULL. */
Status *status_free(Status *s);

/* The /status document: version, uptime_seconds, config{loaded_at,
 * sources, rules, last_reload_error}, token{valid, expires_in_seconds},
 * directory{users, synced_at}, queue{queued, running, held, failed},
 * notify{pending, failed, sinks, inflight},
 * safety{dry_run, suspensions_in_window, max_suspensions}, counters{...}.
 * Values a module cannot give right now (store read failed, no client)
 * are null. Caller owns *ret. -ENOMEM. */
int status_build_json(Daemon *d, json_object **ret);

/* Readiness: true when the config is loaded, the store is writable and the
 * last token request succeeded; otherwise false and a one-sentence reason
 * in reason (may be NULL). */
bool status_ready(Daemon *d, char *reason, size_t reason_size);

/* Appends the Prometheus text: metrics_render() plus the gauges
 * remedyd_queue_depth{state}, remedyd_notifications_outbox{state},
 * remedyd_directory_users, remedyd_token_valid
 * and remedyd_up. -E2BIG past out's maximum, -ENOMEM. */
int status_render_metrics(Daemon *d, StrBuf *out);
