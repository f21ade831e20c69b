/* Replays inputs through a fuzz target without libFuzzer (systemd's
 * src/fuzz/fuzz-main.c): every argument is a file or a directory whose
 * files (not dot files, not *.dict, not README*) are run in name order.
 * Each input is copied into a buffer of exactly its size so that ASan sees
 * any read past it. Exits 0 when every input ran; a crash or sanitizer
 * report is the failure. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "cleanup.h"
#include "fuzz.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir, closedirp)

/* libFuzzer's hook is optional; a target may not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static bool skip_name(const char *name) {
        size_t n = strlen(name);

        return name[0] == '.' || str_startswith(name, "README") ||
                (n >= 5 && strcmp(name + n - 5, ".dict") == 0);
}

static int run_file(const char *path) {
        _cleanup_free_ char *text = NULL;
        uint8_t *copy;
        size_t size = 0;
        int r;

        r = read_file_limited(path, 64u * 1024u * 1024u, &text, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        /* malloc(0) may return NULL; give the target a valid pointer. */
        copy = malloc(size > 0 ? size : 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, text, size);
        if (getenv("FUZZ_VERBOSE"))
                fprintf(stderr, "running %s (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput(copy, size);
        free(copy);
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int run_dir(const char *dir, unsigned *n_run) {
        _cleanup_(closedirp) DIR *d = NULL;
        char **names = NULL;
        size_t n = 0;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                fprintf(stderr, "%s: %m\n", dir);
                return -errno;
        }
        for (struct dirent *de; (de = readdir(d));) {
                char **nn;

                if (skip_name(de->d_name))
                        continue;
                nn = mem_reallocarray(names, n + 1, sizeof(char *));
                if (!nn) {
                        r = -ENOMEM;
                        goto out;
                }
                names = nn;
                names[n] = mem_strdup(de->d_name);
                if (!names[n]) {
                        r = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (n > 0)
                qsort(names, n, sizeof(char *), cmp_str);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                struct stat st;

                p = mem_malloc(strlen(dir) + strlen(names[i]) + 2);
                if (!p) {
                        r = -ENOMEM;
                        goto out;
                }
                sprintf(p, "%s/%s", dir, names[i]);
                if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = run_file(p);
                if (r < 0)
                        goto out;
                (*n_run)++;
        }
out:
        for (size_t i = 0; i < n; i++)
                mem_free(names[i]);
        mem_free(names);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned n_run = 0;

        (void) LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %m\n", argv[i]);
                        return EXIT_FAILURE;
                }
                if (S_ISDIR(st.st_mode))
                        r = run_dir(argv[i], &n_run);
                else {
                        r = run_file(argv[i]);
                        if (r >= 0)
                                n_run++;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        printf("%u inputs ran\n", n_run);
        return EXIT_SUCCESS;
}
