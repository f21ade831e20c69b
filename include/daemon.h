/* The daemon: every module wired onto one sd-event loop. main.c only parses
 * argv, calls daemon_new/daemon_run, and exits. Daemon is opaque: daemon.c
 * is the one module that includes every other, and the listeners get what
 * they read through their own WebhookDeps, StatusDeps and ControlDeps. */
#pragma once

#include <stdbool.h>

#include "remedyd-forward.h"

typedef struct DaemonOptions {
        const char *config_path;
        bool dry_run;            /* --dry-run: forces global dry-run */
} DaemonOptions;


/* Loads the config (returns -EINVAL after logging problems: exit 1),
 * opens the store and listeners (other errors: exit 3). */
int daemon_new(const DaemonOptions *opts, Daemon **ret);
Daemon *daemon_free(Daemon *d);
/* Runs until SIGTERM/SIGINT; returns 0 on a clean stop. */
int daemon_run(Daemon *d);
/* SIGHUP: parse the new config fully, swap it in if valid; otherwise keep
 * the old one and remember the problems for /status (last_reload_error).
 * The listeners read the new config at their next request. */
int daemon_reload(Daemon *d);
