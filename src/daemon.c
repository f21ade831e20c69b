/* The daemon (daemon.h): the one module that includes every other. It owns
 * the Config and swaps it whole on a good reload; the listeners read the
 * current one through the callbacks below, never through Daemon. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "cleanup.h"
#include "config.h"
#include "control.h"
#include "daemon.h"
#include "directory.h"
#include "executor.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "remedyd-limits.h"
#include "status.h"
#include "store.h"
#include "strbuf.h"
#include "users_api.h"
#include "util.h"
#include "version.h"
#include "webhook.h"

#define STATUS_INTERVAL_USEC (5 * USEC_PER_SEC)
#define SHUTDOWN_REVOKE_TIMEOUT_USEC (3 * USEC_PER_SEC)
#define SHUTDOWN_DRAIN_USEC (5 * USEC_PER_SEC)
#define DRAIN_TICK_USEC (20 * USEC_PER_MSEC)

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

/* True if global dry-run applies (--dry-run or safety.dry_run). */
static bool daemon_dry_run(const Daemon *d) {
        return d->opts.dry_run || (d->config && d->config->safety.dry_run);
}

/* The listeners' view of what a reload changes: read at each use, so the
 * swap in daemon_reload() is the only place that changes it. */
static const Config *current_config(void *userdata) {
        const Daemon *d = userdata;

        return d->config;
}

static bool current_dry_run(void *userdata) {
        return daemon_dry_run(userdata);
}

static const char *current_reload_error(void *userdata) {
        const Daemon *d = userdata;

        return d->last_reload_error;
}

/* The control socket's requests that other listeners answer. */
static int control_status_json(void *userdata, json_object **ret) {
        Daemon *d = userdata;

        return status_build_json(&d->status_deps, ret);
}

/* The webhook starts before the control socket and is freed after it. */
static int control_explain(void *userdata, const char *source, const char *body, size_t len, char **ret_json,
                           size_t *ret_len) {
        Daemon *d = userdata;

        return webhook_preview(d->webhook, source, body, len, ret_json, ret_len, /* ret_queued= */ NULL);
}

/* sinks: room for LIMIT_NOTIFY_SINKS, pointing into c (the store copies). */
static void store_options_from_config(const Config *c, StoreOptions *o, StoreNotifySink *sinks) {
        for (size_t i = 0; i < c->n_notify && i < LIMIT_NOTIFY_SINKS; i++)
                sinks[i] = (StoreNotifySink) {
                        .name = c->notify[i].name,
                        .on_mask = c->notify[i].on_mask,
                        .rules = c->notify[i].rules,
                };
        *o = (StoreOptions) {
                .max_suspensions = c->safety.max_suspensions,
                .window_usec = c->safety.window_usec,
                .dedup_window_usec = 24 * 3600 * USEC_PER_SEC,
                .notify = sinks,
                .n_notify = c->n_notify < LIMIT_NOTIFY_SINKS ? c->n_notify : LIMIT_NOTIFY_SINKS,
        };
}

static bool streq_null(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* New outbox rows: committed here or, on a shared store, by a peer. */
static void on_store_outbox(void *userdata) {
        Daemon *d = userdata;

        if (d->notify)
                notify_kick(d->notify);
}

/* New work in the store: committed here or, on a shared store, by a peer. */
static void on_store_queue(void *userdata) {
        Daemon *d = userdata;

        if (d->executor)
                executor_kick(d->executor);
}

/* Joins problems into one string for /status (bounded). */
static char *problems_join(const ConfigProblems *p, int r) {
        StrBuf b;

        strbuf_init(&b, 4096);
        for (size_t i = 0; i < p->n; i++)
                if (strbuf_printf(&b, "%s%s", i ? "; " : "", p->lines[i]) < 0)
                        break;
        if (p->n == 0)
                (void) strbuf_printf(&b, "cannot load configuration: %s", strerror(-r));
        return strbuf_steal(&b);
}

static int load_config(const char *path, Config **ret, char **ret_error) {
        ConfigProblems problems = {};
        int r;

        r = config_load(path, 0, ret, &problems);
        if (r < 0) {
                for (size_t i = 0; i < problems.n; i++)
                        log_error("%s", problems.lines[i]);
                if (problems.n == 0)
                        log_error_errno(r, "%s: cannot load configuration: %m", path);
                if (ret_error)
                        *ret_error = problems_join(&problems, r);
                config_problems_free(&problems);
                return r;
        }
        if (config_is_unconfigured(*ret)) {
                log_error("%s: not configured yet: no 'onepassword' section and no sources; "
                          "see remedyd.yaml(5), refusing to run", path);
                if (ret_error)
                        *ret_error = mem_strdup("not configured: no 'onepassword' section and no sources");
                *ret = config_free(*ret);
                return -EINVAL;
        }
        return r;
}

static int open_listener(const char *what, const ListenAddress *a, unsigned mode) {
        char desc[160];
        int fd;

        fd = listen_open(a, mode);
        if (fd < 0) {
                if (fd == -EADDRINUSE && a->kind == LISTEN_UNIX)
                        return log_error_errno(fd, "%s listener: another remedyd answers on %s, refusing to start",
                                               what, a->path);
                return log_error_errno(fd, "%s listener: cannot listen: %m", what);
        }
        if (listen_describe(fd, desc, sizeof(desc)) < 0)
                snprintf(desc, sizeof(desc), "%s", a->kind == LISTEN_SYSTEMD ? a->path : "?");
        /* Tests parse this line to find ports the OS picked. */
        log_info("%s listener on %s", what, desc);
        return fd;
}

static void notify_status(Daemon *d) {
        StoreQueueCounts q = {};
        UsersApiTokenState t = {};

        if (d->store)
                (void) store_queue_counts(d->store, &q);
        if (d->api)
                users_api_token_state(d->api, &t);
        (void) sd_notifyf(/* unset_environment= */ 0,
                          "STATUS=queue: %llu queued, %llu running, %llu held, %llu failed; token: %s%s%s%s%s",
                          (unsigned long long) q.queued, (unsigned long long) q.running,
                          (unsigned long long) q.held, (unsigned long long) q.failed,
                          t.valid ? "valid" : "none",
                          t.last_error[0] ? "; last error: " : "", t.last_error,
                          d->last_reload_error ? "; reload failed: " : "",
                          d->last_reload_error ? d->last_reload_error : "");
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;

        notify_status(d);
        (void) sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
        return 0;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        uint64_t interval = 0;

        (void) sd_notify(0, "WATCHDOG=1");
        if (sd_watchdog_enabled(0, &interval) > 0 && interval > 0)
                (void) sd_event_source_set_time(s, usec + interval / 2);
        return 0;
}

int daemon_reload(Daemon *d) {
        Config *c = NULL, *old;
        char *err = NULL;
        StoreOptions so;
        StoreNotifySink sinks[LIMIT_NOTIFY_SINKS];
        int r;

        (void) sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) now_usec(CLOCK_MONOTONIC));
        log_info("reloading configuration from %s", d->opts.config_path);
        r = load_config(d->opts.config_path, &c, &err);
        if (r >= 0) {
                const char *why = NULL;

                if (strcmp(c->listen.webhook, d->config->listen.webhook) != 0)
                        why = "listen.webhook";
                else if (!!c->listen.status != !!d->config->listen.status ||
                         (c->listen.status && strcmp(c->listen.status, d->config->listen.status) != 0))
                        why = "listen.status";
                else if (!!c->listen.control != !!d->config->listen.control ||
                         (c->listen.control && strcmp(c->listen.control, d->config->listen.control) != 0))
                        why = "listen.control";
                else if (strcmp(c->state.path, d->config->state.path) != 0)
                        why = "state.path";
                else if (!streq_null(c->state.backend, d->config->state.backend) ||
                         !streq_null(c->state.conninfo, d->config->state.conninfo) ||
                         !streq_null(c->state.schema, d->config->state.schema) ||
                         !streq_null(c->state.instance, d->config->state.instance) ||
                         c->state.pool != d->config->state.pool || c->state.lease_usec != d->config->state.lease_usec)
                        why = "state";
                else if (!!c->listen.tls_cert_file != !!d->config->listen.tls_cert_file)
                        why = "listen.tls";
                if (why) {
                        if (asprintf(&err, "%s changed: restart remedyd to apply it (reload refused, old configuration kept)", why) < 0)
                                err = NULL;
                        log_error("reload refused: %s changed; restart remedyd to apply it, keeping the old configuration", why);
                        c = config_free(c);
                        r = -EINVAL;
                }
        } else
                log_error("reload failed, keeping the old configuration");

        if (r < 0) {
                mem_free(d->last_reload_error);
                d->last_reload_error = err ? mem_strdup(err) : mem_strdup("reload failed");
                free(err);
                (void) sd_notify(0, "READY=1");
                notify_status(d);
                return r;
        }

        old = d->config;
        d->config = c;
        r = users_api_reconfigure(d->api, c);
        if (r < 0)
                log_warning_errno(r, "1Password client kept its old settings: %m");
        directory_set_refresh(d->directory, c->onepassword.directory_refresh_usec);
        store_options_from_config(c, &so, sinks);
        store_set_options(d->store, &so);
        executor_set_config(d->executor, c);
        notify_set_config(d->notify, c);
        if (d->webhook)
                (void) webhook_reconfigure(d->webhook);
        config_free(old);
        mem_free(d->last_reload_error);
        d->last_reload_error = NULL;
        log_info("configuration reloaded: %zu sources, %zu rules", c->n_sources, c->n_rules);
        (void) sd_notify(0, "READY=1");
        notify_status(d);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) daemon_reload(userdata);
        return 0;
}

static void finish_shutdown(void *userdata) {
        Daemon *d = userdata;

        (void) sd_event_exit(d->event, 0);
}

static void revoke_and_exit(Daemon *d) {
        if (d->revoking)
                return;
        d->revoking = true;
        if (!d->api || users_api_revoke(d->api, finish_shutdown, d) < 0)
                (void) sd_event_exit(d->event, 0);
}

/* Polls until in-flight work is over (webhooks waiting for their commit,
 * API calls the executor started), then revokes the token and exits. Past
 * the deadline whatever is still running stays in the store (running ->
 * queued on the next start). */
static int on_drain_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        bool idle = executor_inflight(d->executor) == 0 && notify_inflight(d->notify) == 0 &&
                    (!d->webhook || webhook_pending(d->webhook) == 0);

        if (d->revoking)
                return 0;
        if (idle || usec >= d->stop_deadline_usec) {
                if (!idle)
                        log_warning("stopping with work in flight: it stays queued in the state store");
                revoke_and_exit(d);
                return 0;
        }
        (void) sd_event_source_set_time(s, usec + DRAIN_TICK_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Daemon *d = userdata;

        log_warning("token revocation did not finish in time, exiting anyway");
        return sd_event_exit(d->event, 0);
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (d->stopping)
                return 0;
        d->stopping = true;
        log_info("received %s, stopping: queued work stays in the state store",
                 si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        (void) sd_notify(0, "STOPPING=1");
        if (d->webhook)
                webhook_stop_accepting(d->webhook);
        if (d->executor)
                executor_stop(d->executor);
        notify_stop(d->notify);
        d->stop_deadline_usec = now + SHUTDOWN_DRAIN_USEC;
        (void) sd_event_add_time(d->event, NULL, CLOCK_MONOTONIC, now + SHUTDOWN_DRAIN_USEC + SHUTDOWN_REVOKE_TIMEOUT_USEC,
                                 0, on_shutdown_timeout, d);
        if (sd_event_add_time(d->event, NULL, CLOCK_MONOTONIC, now, 0, on_drain_tick, d) < 0)
                revoke_and_exit(d);
        return 0;
}

int daemon_new(const DaemonOptions *opts, Daemon **ret) {
        Daemon *d;
        StoreOptions so;
        StoreNotifySink sinks[LIMIT_NOTIFY_SINKS];
        int r, fd;

        d = mem_calloc(1, sizeof(Daemon));
        if (!d)
                return log_error_errno(-ENOMEM, "out of memory");
        d->opts = *opts;
        d->started_usec = now_usec(CLOCK_REALTIME);
        d->started_mono_usec = now_usec(CLOCK_MONOTONIC);

        r = load_config(opts->config_path, &d->config, NULL);
        if (r < 0) {
                daemon_free(d);
                return r == -ENOMEM ? r : -EINVAL;
        }

        /* A loop of its own, not the thread's default: sd_event_prepare()
         * checks a default loop's thread with gettid(), a system call at
         * every iteration (0.29 per delivery under wrk, perf trace). Every
         * module is handed this loop; none asks for the default. */
        r = sd_event_new(&d->event);
        if (r < 0)
                goto fail;
        {
                sigset_t ss;
                sigemptyset(&ss);
                sigaddset(&ss, SIGTERM);
                sigaddset(&ss, SIGINT);
                sigaddset(&ss, SIGHUP);
                sigprocmask(SIG_BLOCK, &ss, NULL);
                signal(SIGPIPE, SIG_IGN);
        }
        if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, on_sigterm, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGINT, on_sigterm, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d)) < 0)
                goto fail;

        d->metrics = metrics_new();
        if (!d->metrics) {
                r = -ENOMEM;
                goto fail;
        }

        store_options_from_config(d->config, &so, sinks);
        {
                const Config *c = d->config;
                StoreConfig sc = {
                        .backend = c->state.backend,
                        .path = c->state.path,
                        .conninfo = c->state.conninfo,
                        .schema = c->state.schema,
                        .pool = c->state.pool,
                        .instance = c->state.instance,
                        .lease_usec = c->state.lease_usec,
                };
                bool pg = c->state.backend && strcmp(c->state.backend, "postgresql") == 0;

                r = store_open_config(&sc, d->event, &so, &d->store);
                if (r < 0) {
                        if (pg)
                                log_error_errno(r, "cannot open the state store on PostgreSQL (schema %s): %m",
                                                c->state.schema);
                        else
                                log_error_errno(r, "cannot open the state store %s: %m", c->state.path);
                        goto fail;
                }
        }

        r = users_api_new(d->event, d->config, d->metrics, &d->api);
        if (r < 0) {
                log_error_errno(r, "cannot set up the 1Password client: %m");
                goto fail;
        }
        r = directory_new(d->event, d->api, d->config->onepassword.directory_refresh_usec, &d->directory);
        if (r < 0)
                goto fail;
        r = executor_new(d->event, d->store, d->api, d->directory, d->metrics, &d->executor);
        if (r < 0)
                goto fail;
        executor_set_config(d->executor, d->config);
        r = notify_new(d->event, d->store, d->metrics, &d->notify);
        if (r < 0) {
                log_error_errno(r, "cannot set up the notification worker: %m");
                goto fail;
        }
        notify_set_config(d->notify, d->config);
        store_set_wakeups(d->store, on_store_queue, on_store_outbox, d);
        d->status_deps = (StatusDeps) {
                .store = d->store,
                .api = d->api,
                .directory = d->directory,
                .notify = d->notify,
                .metrics = d->metrics,
                .started_usec = d->started_usec,
                .started_mono_usec = d->started_mono_usec,
                .config = current_config,
                .dry_run = current_dry_run,
                .last_reload_error = current_reload_error,
                .userdata = d,
        };

        fd = open_listener("webhook", &d->config->listen.webhook_addr, 0666);
        if (fd < 0) {
                r = fd;
                goto fail;
        }
        r = webhook_new(d->event,
                        &(WebhookDeps) {
                                .store = d->store,
                                .directory = d->directory,
                                .executor = d->executor,
                                .metrics = d->metrics,
                                .config = current_config,
                                .dry_run = current_dry_run,
                                .userdata = d,
                        },
                        fd, &d->webhook);
        if (r < 0) {
                close(fd);
                log_error_errno(r, "cannot start the webhook listener: %m");
                goto fail;
        }
        if (d->config->listen.status) {
                fd = open_listener("status", &d->config->listen.status_addr, 0666);
                if (fd < 0) {
                        r = fd;
                        goto fail;
                }
                r = status_new(d->event, &d->status_deps, fd, &d->status);
                if (r < 0) {
                        close(fd);
                        log_error_errno(r, "cannot start the status listener: %m");
                        goto fail;
                }
        }
        if (d->config->listen.control) {
                fd = open_listener("control", &d->config->listen.control_addr, 0660);
                if (fd < 0) {
                        r = fd;
                        goto fail;
                }
                r = control_new(d->event,
                                &(ControlDeps) {
                                        .store = d->store,
                                        .api = d->api,
                                        .directory = d->directory,
                                        .executor = d->executor,
                                        .config = current_config,
                                        .dry_run = current_dry_run,
                                        .status_json = control_status_json,
                                        .explain = control_explain,
                                        .userdata = d,
                                },
                                fd, &d->control); /* takes fd always */
                if (r < 0) {
                        log_error_errno(r, "cannot start the control listener: %m");
                        goto fail;
                }
        }

        *ret = d;
        return 0;
fail:
        if (r == -ENOMEM)
                log_error("out of memory");
        daemon_free(d);
        return r < 0 ? r : -EIO;
}

int daemon_run(Daemon *d) {
        uint64_t wd = 0;
        int r;

        r = directory_start(d->directory);
        if (r < 0)
                log_warning_errno(r, "directory sync could not start, resolving at execution: %m");
        r = executor_start(d->executor);
        if (r < 0)
                return log_error_errno(r, "cannot start the executor: %m");
        r = notify_start(d->notify);
        if (r < 0)
                return log_error_errno(r, "cannot start the notification worker: %m");

        if (sd_watchdog_enabled(0, &wd) > 0 && wd > 0)
                (void) sd_event_add_time_relative(d->event, &d->watchdog_source, CLOCK_MONOTONIC, wd / 2, 0,
                                                  on_watchdog, d);
        (void) sd_event_add_time_relative(d->event, &d->notify_source, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                          USEC_PER_SEC, on_status_timer, d);
        if (d->notify_source)
                (void) sd_event_source_set_enabled(d->notify_source, SD_EVENT_ON);
        if (d->watchdog_source)
                (void) sd_event_source_set_enabled(d->watchdog_source, SD_EVENT_ON);

        log_info("remedyd %s ready: %zu sources, %zu rules%s", REMEDYD_VERSION, d->config->n_sources,
                 d->config->n_rules, daemon_dry_run(d) ? ", dry-run" : "");
        (void) sd_notify(0, "READY=1");
        notify_status(d);

        r = sd_event_loop(d->event);
        if (r < 0)
                return log_error_errno(r, "event loop failed: %m");
        log_info("stopped");
        return 0;
}

Daemon *daemon_free(Daemon *d) {
        if (!d)
                return NULL;
        d->control = control_free(d->control);
        d->status = status_free(d->status);
        d->webhook = webhook_free(d->webhook);
        /* store_close() runs the callbacks still due: the executor, the
         * directory and the client must be alive for them. */
        d->store = store_close(d->store);
        d->executor = executor_free(d->executor);
        d->notify = notify_free(d->notify);
        d->directory = directory_free(d->directory);
        d->api = users_api_free(d->api);
        d->metrics = metrics_free(d->metrics);
        d->watchdog_source = sd_event_source_unref(d->watchdog_source);
        d->notify_source = sd_event_source_unref(d->notify_source);
        d->event = sd_event_unref(d->event);
        d->config = config_free(d->config);
        mem_free(d->last_reload_error);
        mem_free(d);
        return NULL;
}
