/* Shared by every fuzz target: the libFuzzer entry points and a few
 * helpers for targets that need files (config) or a fixed setup.
 *
 * A target implements LLVMFuzzerTestOneInput() and may implement
 * LLVMFuzzerInitialize(). Built with -Dfuzzing=true it is a libFuzzer
 * binary; otherwise fuzz-main.c replays files and directories through it
 * (meson test --suite fuzz). Targets must be deterministic, must not keep
 * state that changes what a later input does, and must free everything
 * (leaks are findings). */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Logs stay quiet unless FUZZ_VERBOSE is set: the modules log rejected
 * input at debug/info/warning level, and a fuzzer prints millions. */
static inline void fuzz_quiet_logs(void) {
        if (!getenv("FUZZ_VERBOSE"))
                log_set_max_level(LOG_CRIT);
}

static int fuzz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static char fuzz_tmpdir_path[4096];

static void fuzz_tmpdir_remove(void) {
        if (fuzz_tmpdir_path[0])
                (void) nftw(fuzz_tmpdir_path, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A private directory for the process (under $TMPDIR or /tmp), removed at
 * exit. Aborts on failure: nothing can be fuzzed without it. */
static inline const char *fuzz_tmpdir(void) {
        const char *base;

        if (fuzz_tmpdir_path[0])
                return fuzz_tmpdir_path;
        base = getenv("TMPDIR");
        if (!base || !*base)
                base = "/tmp";
        if (snprintf(fuzz_tmpdir_path, sizeof(fuzz_tmpdir_path), "%s/remedyd-fuzz-XXXXXX", base) >=
            (int) sizeof(fuzz_tmpdir_path))
                abort();
        if (!mkdtemp(fuzz_tmpdir_path))
                abort();
        atexit(fuzz_tmpdir_remove);
        return fuzz_tmpdir_path;
}

/* Writes size bytes to path (created or truncated). Aborts on failure. */
static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const uint8_t *p = data;

        if (fd < 0)
                abort();
        while (size > 0) {
                ssize_t k = write(fd, p, size);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        abort();
                }
                p += k;
                size -= (size_t) k;
        }
        if (close(fd) < 0)
                abort();
}

/* path = tmpdir/name in a static buffer per call site's choice. */
static inline void fuzz_path(char *buf, size_t n, const char *name) {
        if (snprintf(buf, n, "%s/%s", fuzz_tmpdir(), name) >= (int) n)
                abort();
}
