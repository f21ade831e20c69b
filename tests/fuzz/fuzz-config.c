/* The whole configuration loader on arbitrary bytes: the input is the main
 * YAML file (written to a private directory), loaded with
 * CONFIG_LOAD_NO_SECRETS so no secret file is read; the Config or the
 * problem list is freed.
 *
 * include: globs are expanded relative to the private directory. A glob
 * that could leave it (an absolute path, "..", "~") is not loaded: it would
 * read files of the machine (a FIFO blocks forever) and make the target
 * depend on them. fuzz-rules-yaml covers included files. */
#include <string.h>

#include <yaml.h>

#include "config.h"
#include "fuzz.h"

static bool glob_stays_inside(const char *s, size_t n) {
        return s && n > 0 && s[0] != '/' && s[0] != '~' && !memmem(s, n, "..", 2) && !memchr(s, '\\', n);
}

/* false when the document's top-level include: names a glob outside the
 * private directory (or the document does not parse: config_load reports
 * that by itself, no glob is expanded). */
static bool includes_stay_inside(const uint8_t *data, size_t size) {
        yaml_parser_t parser;
        yaml_document_t doc;
        yaml_node_t *root;
        bool ok = true;

        if (!memmem(data, size, "include", 7) && !memchr(data, '\\', size) && !memchr(data, '%', size))
                return true;    /* the key cannot be spelled: no need to parse */
        if (!yaml_parser_initialize(&parser))
                return false;
        yaml_parser_set_input_string(&parser, data, size);
        if (!yaml_parser_load(&parser, &doc)) {
                yaml_parser_delete(&parser);
                return true;
        }
        root = yaml_document_get_root_node(&doc);
        if (root && root->type == YAML_MAPPING_NODE)
                for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
                        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
                        yaml_node_t *v = yaml_document_get_node(&doc, p->value);

                        if (!k || k->type != YAML_SCALAR_NODE ||
                            k->data.scalar.length != 7 || memcmp(k->data.scalar.value, "include", 7) != 0)
                                continue;
                        if (!v || v->type != YAML_SEQUENCE_NODE)
                                continue;
                        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                                yaml_node_t *item = yaml_document_get_node(&doc, *i);

                                if (item && item->type == YAML_SCALAR_NODE &&
                                    !glob_stays_inside((const char *) item->data.scalar.value, item->data.scalar.length))
                                        ok = false;
                        }
                }
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ConfigProblems problems = {};
        Config *c = NULL;
        char path[4200];
        int r;

        fuzz_quiet_logs();
        if (!includes_stay_inside(data, size))
                return 0;
        fuzz_path(path, sizeof(path), "remedyd.yaml");
        fuzz_write_file(path, data, size);

        r = config_load(path, CONFIG_LOAD_NO_SECRETS, &c, &problems);
        if (r >= 0) {
                /* A loaded config is whole: walk what rules and the webhook use. */
                for (size_t i = 0; i < c->n_sources; i++)
                        if (config_find_source(c, c->sources[i].name) != &c->sources[i] &&
                            !config_find_source(c, c->sources[i].name))
                                abort();
                if (problems.n != 0)
                        abort();
        } else if (r != -ENOMEM && problems.n == 0)
                abort();        /* a refused config must say why */
        config_free(c);
        config_problems_free(&problems);
        return 0;
}
