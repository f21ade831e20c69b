/* remedyctl migrate-state --from sqlite:PATH: copies a SQLite state into
 * the PostgreSQL schema the configuration names (interface.md 8.7). Run it
 * with every remedyd stopped; the target must be empty. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "store.h"
#include "util.h"

int ctl_migrate_state(const CtlContext *ctx, int argc, char **argv) {
        ConfigProblems problems = {};
        StoreMigrateStats st = {};
        const char *from = NULL;
        Config *c = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
                        from = argv[++i];
                else if (strncmp(argv[i], "--from=", 7) == 0)
                        from = argv[i] + 7;
                else {
                        fprintf(stderr, "remedyctl migrate-state: unexpected argument '%s'\n"
                                        "Usage: remedyctl [-c CONFIG] migrate-state --from sqlite:PATH\n", argv[i]);
                        return 2;
                }
        }
        if (!from || !str_startswith(from, "sqlite:") || !from[7]) {
                fprintf(stderr, "Usage: remedyctl [-c CONFIG] migrate-state --from sqlite:PATH\n");
                return 2;
        }
        r = config_load(ctx->config_path, 0, &c, &problems);
        if (r < 0) {
                config_problems_report(&problems, "", ctx->config_path, r);
                return 1;
        }
        if (strcmp(c->state.backend, "postgresql") != 0) {
                fprintf(stderr, "remedyctl migrate-state: %s: state.backend is %s; the target must be postgresql\n",
                        ctx->config_path, c->state.backend);
                config_free(c);
                return 1;
        }
        r = store_migrate_from_sqlite(&(StoreConfig) { .backend = c->state.backend, .conninfo = c->state.conninfo,
                                                       .schema = c->state.schema, .instance = c->state.instance },
                                      from + 7, &st);
        if (r < 0)
                fprintf(stderr, "remedyctl migrate-state: nothing was copied: %s\n",
                        r == -ENOTEMPTY ? "the target schema is not empty" : strerror(-r));
        else
                printf("migrated %s into PostgreSQL schema \"%s\": %" PRIu64 " events (%" PRIu64
                       " in the dedup window), %" PRIu64 " actions, %" PRIu64 " audit rows, %" PRIu64
                       " notifications\n",
                       from + 7, c->state.schema, st.events, st.dedup, st.actions, st.audit, st.outbox);
        config_free(c);
        return r < 0 ? 1 : 0;
}
