/* remedyd: argv, config check, daemon setup, the loop. Nothing else. */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "version.h"

#define DEFAULT_CONFIG "/etc/remedyd/remedyd.yaml"

enum {
        EXIT_CLEAN = 0,
        EXIT_CONFIG = 1,
        EXIT_USAGE = 2,
        EXIT_RUNTIME = 3,
};

static const char *arg_config = DEFAULT_CONFIG;
static bool arg_check;
static bool arg_dry_run;
static LogFormat arg_log_format = LOG_FORMAT_TEXT;
static bool arg_log_format_set;
static int arg_verbose;

static void help(void) {
        printf("Usage: remedyd [OPTIONS]\n\n"
               "Contain compromised 1Password accounts on SIEM alerts.\n\n"
               "  -c, --config PATH        configuration file (default %s)\n"
               "  -t, --check-config       validate the configuration and exit\n"
               "      --dry-run            record actions as dry_run, call nothing state-changing\n"
               "      --log-format FORMAT  text or json on stderr (journal under systemd)\n"
               "  -v, --verbose            more logging (repeatable)\n"
               "  -h, --help               show this help\n"
               "      --version            show the version\n\n"
               "Signals: SIGHUP reloads, SIGTERM/SIGINT stop cleanly.\n"
               "Exit codes: 0 clean stop, 1 configuration error, 2 usage error, 3 runtime error.\n",
               DEFAULT_CONFIG);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_DRY_RUN, ARG_LOG_FORMAT };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 't' },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "log-format", required_argument, NULL, ARG_LOG_FORMAT },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:tvh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case 't':
                        arg_check = true;
                        break;
                case ARG_DRY_RUN:
                        arg_dry_run = true;
                        break;
                case ARG_LOG_FORMAT:
                        arg_log_format = log_format_from_string(optarg);
                        if (arg_log_format < 0 || arg_log_format == LOG_FORMAT_JOURNAL) {
                                fprintf(stderr, "remedyd: --log-format takes text or json, not '%s'\n", optarg);
                                return -EINVAL;
                        }
                        arg_log_format_set = true;
                        break;
                case 'v':
                        arg_verbose++;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("remedyd %s\n", REMEDYD_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'remedyd --help'.\n");
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "remedyd: unexpected argument '%s'\nTry 'remedyd --help'.\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int check_config(void) {
        ConfigProblems problems = {};
        Config *c = NULL;
        int r;

        r = config_load(arg_config, 0, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "", arg_config, r);
                return EXIT_CONFIG;
        }
        if (config_is_unconfigured(c))
                fprintf(stderr, "%s: note: no 'onepassword' section and no sources yet: "
                        "the daemon refuses to start on this file\n", arg_config);
        config_free(c);
        printf("configuration OK\n");
        return EXIT_CLEAN;
}

int main(int argc, char *argv[]) {
        DaemonOptions opts = {};
        Daemon *d = NULL;
        int r;

        /* json-c brackets every json_tokener_parse_ex() with duplocale(),
         * newlocale(LC_NUMERIC, "C") and freelocale() of the thread's
         * locale: 1.2 of the 2.3 us it takes to parse a 240-byte webhook
         * body. With the thread already in glibc's C locale object those
         * calls return it and allocate nothing. remedyd never calls
         * setlocale(): it runs in the C locale either way. The loop thread
         * (this one) parses every body. */
        locale_t c_locale = newlocale(LC_ALL_MASK, "C", (locale_t) 0);
        if (c_locale)
                (void) uselocale(c_locale);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_CLEAN;

        log_setup(arg_log_format, arg_log_format_set);
        log_set_max_level(arg_verbose >= 1 ? LOG_DEBUG : LOG_INFO);
        if (arg_verbose >= 2)
                log_set_trace(~0u);

        if (arg_check)
                return check_config();

        opts.config_path = arg_config;
        opts.dry_run = arg_dry_run;
        r = daemon_new(&opts, &d);
        if (r == -EINVAL)
                return EXIT_CONFIG;
        if (r < 0)
                return EXIT_RUNTIME;
        r = daemon_run(d);
        daemon_free(d);
        log_forget_secrets();
        return r < 0 ? EXIT_RUNTIME : EXIT_CLEAN;
}
