/* An SQLite VFS that writes a commit's WAL frames with one pwrite()
 * instead of two per page (src/sqlite_walbuf.c). Everything else is the
 * default VFS's. */
#pragma once

#include <stdint.h>

/* Registers the VFS once (not as the default) and returns its name for
 * sqlite3_open_v2(); NULL if SQLite's default VFS cannot be wrapped (then
 * open with the default). Thread-safe. */
const char *sqlite_walbuf_vfs(void);
/* Writes handed to the real WAL files so far, by every connection. */
uint64_t sqlite_walbuf_writes(void);
