/* remedyctl: the administration CLI. Global options, then a subcommand. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "log.h"
#include "version.h"

static void help(void) {
        printf("Usage: remedyctl [-c CONFIG] [--socket PATH] COMMAND [ARGS]\n\n"
               "Commands:\n"
               "  status [--json]                              daemon status\n"
               "  check [-c CONFIG]                            validate the configuration\n"
               "  explain --source NAME FILE.json              which rules would act, and why (offline)\n"
               "  explain --live --source NAME FILE.json [--json]  what the daemon would do now, read-only\n"
               "  users list [--active|--suspended] [--json]   every 1Password user\n"
               "  users get EMAIL|ID [--json]                  one user\n"
               "  suspend EMAIL|ID --reason TEXT               queue a manual suspension\n"
               "  reactivate EMAIL|ID --reason TEXT            queue a manual reactivation\n"
               "  actions [--state STATE] [--json]             list actions\n"
               "  release ID | cancel ID                       release or cancel a held action\n"
               "  history [--user EMAIL|ID] [--since DURATION] [--json]\n"
               "                                               the audit trail\n"
               "  notifications [--limit N] [--json]           recent notification deliveries\n"
               "  migrate-state --from sqlite:PATH             copy a SQLite state into PostgreSQL\n\n"
               "Options:\n"
               "  -c, --config PATH   configuration (default /etc/remedyd/remedyd.yaml)\n"
               "      --socket PATH   control socket (default: listen.control of the config)\n"
               "  -h, --help          this help\n"
               "      --version       the version\n");
}

static int check(const CtlContext *ctx) {
        ConfigProblems problems = {};
        Config *c = NULL;
        int r;

        r = config_load(ctx->config_path, 0, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "", ctx->config_path, r);
                return 1;
        }
        config_free(c);
        printf("configuration OK\n");
        return 0;
}

int main(int argc, char *argv[]) {
        CtlContext ctx = { .config_path = "/etc/remedyd/remedyd.yaml" };
        const char *cmd;
        int i;

        log_setup(LOG_FORMAT_TEXT, /* explicit= */ true);
        log_set_max_level(LOG_WARNING);

        /* Global options may come before the command; -c and --socket also
         * after it (every command accepts them). */
        for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        help();
                        return 0;
                }
                if (strcmp(argv[i], "--version") == 0) {
                        printf("remedyctl %s\n", REMEDYD_VERSION);
                        return 0;
                }
                if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
                        ctx.config_path = argv[++i];
                else if (strncmp(argv[i], "--config=", 9) == 0)
                        ctx.config_path = argv[i] + 9;
                else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
                        ctx.socket_path = argv[++i];
                else if (strncmp(argv[i], "--socket=", 9) == 0)
                        ctx.socket_path = argv[i] + 9;
                else
                        break;
        }
        if (i >= argc) {
                help();
                return 2;
        }
        cmd = argv[i];

        /* Strip -c/--socket given after the command, keep the rest in order. */
        {
                char **rest = calloc((size_t) (argc - i) + 1, sizeof(char *));
                int n = 0, r;

                if (!rest) {
                        fprintf(stderr, "remedyctl: out of memory\n");
                        return 2;
                }
                for (int k = i; k < argc; k++) {
                        if ((strcmp(argv[k], "-c") == 0 || strcmp(argv[k], "--config") == 0) && k + 1 < argc)
                                ctx.config_path = argv[++k];
                        else if (strcmp(argv[k], "--socket") == 0 && k + 1 < argc)
                                ctx.socket_path = argv[++k];
                        else
                                rest[n++] = argv[k];
                }

                if (strcmp(cmd, "check") == 0)
                        r = check(&ctx);
                else if (strcmp(cmd, "explain") == 0)
                        r = ctl_explain(&ctx, n, rest);
                else if (strcmp(cmd, "migrate-state") == 0)
                        r = ctl_migrate_state(&ctx, n, rest);
                else if (strcmp(cmd, "users") == 0)
                        r = ctl_users(&ctx, n, rest);
                else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "suspend") == 0 ||
                         strcmp(cmd, "reactivate") == 0 || strcmp(cmd, "actions") == 0 ||
                         strcmp(cmd, "release") == 0 || strcmp(cmd, "cancel") == 0 ||
                         strcmp(cmd, "history") == 0 || strcmp(cmd, "notifications") == 0)
                        r = ctl_admin(&ctx, n, rest);
                else {
                        fprintf(stderr, "remedyctl: unknown command '%s'\nTry 'remedyctl --help'.\n", cmd);
                        r = 2;
                }
                free(rest);
                return r;
        }
}
