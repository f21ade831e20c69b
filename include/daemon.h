/* The daemon: every module wired onto one sd-event loop. main.c only parses
 * argv, calls daemon_new/daemon_run, and exits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "remedyd-forward.h"
#include "status.h"

typedef struct DaemonOptions {
        const char *config_path;
        bool dry_run;            /* --dry-run: forces global dry-run */
} DaemonOptions;

struct Daemon {
        sd_event *event;
        DaemonOptions opts;
        Config *config;          /* current; replaced whole on a good reload */
        Store *store;
        UsersApi *api;
        Directory *directory;
        Executor *executor;
        Notify *notify;          /* the notification outbox's deliverer */
        Metrics *metrics;
        Webhook *webhook;        /* the webhook listener and its handler */
        Status *status;          /* the read-only status listener */
        Control *control;        /* the control socket */
        StatusDeps status_deps;  /* what the status documents read (status listener, control) */
        uint64_t started_usec;   /* CLOCK_REALTIME */
        uint64_t started_mono_usec;
        char *last_reload_error; /* NULL when the last reload succeeded */
        bool stopping;
        bool revoking;
        uint64_t stop_deadline_usec; /* CLOCK_MONOTONIC: in-flight work may finish until then */
        sd_event_source *watchdog_source;
        sd_event_source *notify_source;
};

/* Loads the config (returns -EINVAL after logging problems: exit 1),
 * opens the store and listeners (other errors: exit 3). */
int daemon_new(const DaemonOptions *opts, Daemon **ret);
Daemon *daemon_free(Daemon *d);
/* Runs until SIGTERM/SIGINT; returns 0 on a clean stop. */
int daemon_run(Daemon *d);
/* SIGHUP: parse the new config fully, swap it in if valid; otherwise keep
 * the old one and remember the problems in last_reload_error. */
int daemon_reload(Daemon *d);
/* True if global dry-run applies (--dry-run or safety.dry_run). */
bool daemon_dry_run(const Daemon *d);
