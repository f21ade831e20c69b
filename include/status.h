/* The read-only status listener (listen.status, contract section 5):
 * GET/HEAD /healthz, /readyz, /status, /metrics. The documents are built by
 * functions that need no server, so the control socket and remedyctl
 * status reuse them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "remedyd-forward.h"

/* What the documents read. The handles are borrowed and outlive every use
 * (a NULL one gives null or zero for its part). What a reload changes is
 * read through the callbacks at each call, never kept: config() returns
 * the current Config (NULL: none loaded), dry_run() whether global dry-run
 * applies, last_reload_error() the last reload's problems (NULL: it
 * succeeded). All three are required. */
typedef struct StatusDeps {
        Store *store;
        UsersApi *api;
        Directory *directory;
        Notify *notify;
        Metrics *metrics;
        uint64_t started_usec;      /* CLOCK_REALTIME */
        uint64_t started_mono_usec; /* CLOCK_MONOTONIC: uptime */
        const Config *(*config)(void *userdata);
        bool (*dry_run)(void *userdata);
        const char *(*last_reload_error)(void *userdata);
        void *userdata;
} StatusDeps;

/* Serves on listen_fd on e; *deps is copied. On success the listener owns
 * listen_fd; on failure the caller still does. -EINVAL, -ENOMEM, -EIO
 * (MHD refused). */
int status_new(sd_event *e, const StatusDeps *deps, int listen_fd, Status **ret);
/* NULL-safe; returns NULL. */
Status *status_free(Status *s);

/* The /status document: version, uptime_seconds, config{loaded_at,
 * sources, rules, last_reload_error}, token{valid, expires_in_seconds},
 * directory{users, synced_at}, queue{queued, running, held, failed},
 * notify{pending, failed, sinks, inflight},
 * safety{dry_run, suspensions_in_window, max_suspensions}, counters{...}.
 * Values a module cannot give right now (store read failed, no client)
 * are null. Caller owns *ret. -ENOMEM. */
int status_build_json(const StatusDeps *d, json_object **ret);

/* Readiness: true when the config is loaded, the store is writable and the
 * last token request succeeded; otherwise false and a one-sentence reason
 * in reason (may be NULL). */
bool status_ready(const StatusDeps *d, char *reason, size_t reason_size);

/* Appends the Prometheus text: metrics_render() plus the gauges
 * remedyd_queue_depth{state}, remedyd_notifications_outbox{state},
 * remedyd_directory_users, remedyd_token_valid
 * and remedyd_up. -E2BIG past out's maximum, -ENOMEM. */
int status_render_metrics(const StatusDeps *d, StrBuf *out);
