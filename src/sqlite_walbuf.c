/* An SQLite VFS that gathers the writes to a WAL file into one pwrite()
 * per commit (include/sqlite_walbuf.h). Wraps the default VFS ("unix");
 * calls SQLite and the foundation (alloc) only.
 *
 * SQLite appends a commit to the WAL as two writes per page, a 24-byte
 * frame header and the page, then syncs the file (synchronous=FULL): about
 * 20 pwrite() for a commit of 20 deliveries, 1.1 syscalls per delivery and
 * 8.5 % of remedyd's CPU under wrk, half of it the syscall itself. Here a
 * WAL file keeps contiguous writes in a buffer and hands them to the real
 * file in one write when SQLite syncs it, reads it, asks its size,
 * truncates or closes it, or writes elsewhere in it.
 *
 * Why that is safe: no write is reported durable before xSync() returns,
 * and xSync() writes the buffer first. Other connections (the
 * checkpointer, readers) read only frames below the WAL index's mxFrame,
 * which SQLite raises after the commit's sync (sqlite3WalFrames(): frames,
 * sync, then walIndexAppend()); a commit that is never synced
 * (synchronous=OFF/NORMAL) is not what the store runs, but would still be
 * flushed before any read of the same file handle. Files other than WAL
 * files are the default VFS's own, untouched. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include <sqlite3.h>

#include "alloc.h"
#include "sqlite_walbuf.h"

#define WALBUF_NAME "remedyd-walbuf"
/* A commit of up to 30 pages (4 KiB) in one write, larger ones in several.
 * The unix VFS writes at most 128 KiB - 1 per call (seekAndWriteFd() masks
 * the length with 0x1ffff, and a short write is SQLITE_FULL). */
#define WALBUF_BYTES (128u * 1024u - 4096u)

typedef struct WalFile {
        sqlite3_file base;       /* pMethods = &walbuf_io */
        sqlite3_file *real;      /* the default VFS's file, right after this struct */
        char *buf;
        size_t len;              /* bytes in buf */
        sqlite3_int64 off;       /* file offset of buf[0] */
} WalFile;

static sqlite3_vfs walbuf_vfs;
static sqlite3_vfs *real_vfs;
static sqlite3_io_methods walbuf_io[4]; /* by iVersion 1-3 */
static atomic_uint_fast64_t real_writes;

static int flush(WalFile *f) {
        int rc;

        if (f->len == 0)
                return SQLITE_OK;
        rc = f->real->pMethods->xWrite(f->real, f->buf, (int) f->len, f->off);
        atomic_fetch_add_explicit(&real_writes, 1, memory_order_relaxed);
        f->len = 0;
        return rc;
}

static int w_close(sqlite3_file *p) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f), rc2;

        rc2 = f->real->pMethods->xClose(f->real);
        mem_free(f->buf);
        f->buf = NULL;
        return rc != SQLITE_OK ? rc : rc2;
}

static int w_read(sqlite3_file *p, void *data, int amt, sqlite3_int64 ofst) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, data, amt, ofst);
}

static int w_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 ofst) {
        WalFile *f = (WalFile *) p;
        int rc;

        if (amt <= 0)
                return f->real->pMethods->xWrite(f->real, data, amt, ofst);
        if (f->len > 0 && ofst == f->off + (sqlite3_int64) f->len && f->len + (size_t) amt <= WALBUF_BYTES) {
                memcpy(f->buf + f->len, data, (size_t) amt);
                f->len += (size_t) amt;
                return SQLITE_OK;
        }
        rc = flush(f);
        if (rc != SQLITE_OK)
                return rc;
        if ((size_t) amt >= WALBUF_BYTES)
                goto direct;
        if (!f->buf) {
                f->buf = mem_malloc(WALBUF_BYTES);
                if (!f->buf)
                        goto direct; /* unbuffered is slower, not wrong */
        }
        memcpy(f->buf, data, (size_t) amt);
        f->len = (size_t) amt;
        f->off = ofst;
        return SQLITE_OK;

direct:
        atomic_fetch_add_explicit(&real_writes, 1, memory_order_relaxed);
        return f->real->pMethods->xWrite(f->real, data, amt, ofst);
}

static int w_truncate(sqlite3_file *p, sqlite3_int64 size) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int w_sync(sqlite3_file *p, int flags) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int w_file_size(sqlite3_file *p, sqlite3_int64 *size) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int w_lock(sqlite3_file *p, int lock) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xLock(f->real, lock);
}

static int w_unlock(sqlite3_file *p, int lock) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xUnlock(f->real, lock);
}

static int w_check_reserved(sqlite3_file *p, int *out) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int w_file_control(sqlite3_file *p, int op, void *arg) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f); /* a size hint or chunk size may act on the file */

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int w_sector_size(sqlite3_file *p) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xSectorSize(f->real);
}

static int w_device_characteristics(sqlite3_file *p) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int w_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int w_shm_lock(sqlite3_file *p, int offset, int n, int flags) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void w_shm_barrier(sqlite3_file *p) {
        WalFile *f = (WalFile *) p;

        f->real->pMethods->xShmBarrier(f->real);
}

static int w_shm_unmap(sqlite3_file *p, int del) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xShmUnmap(f->real, del);
}

static int w_fetch(sqlite3_file *p, sqlite3_int64 ofst, int amt, void **pp) {
        WalFile *f = (WalFile *) p;
        int rc = flush(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, ofst, amt, pp);
}

static int w_unfetch(sqlite3_file *p, sqlite3_int64 ofst, void *ptr) {
        WalFile *f = (WalFile *) p;

        return f->real->pMethods->xUnfetch(f->real, ofst, ptr);
}

static int v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p, int flags, int *out_flags) {
        WalFile *f = (WalFile *) p;
        const sqlite3_io_methods *m;
        int rc;

        if (!(flags & SQLITE_OPEN_WAL))
                /* Not a WAL file: the default VFS's file in our slot. */
                return real_vfs->xOpen(real_vfs, name, p, flags, out_flags);

        memset(f, 0, sizeof(*f));
        f->real = (sqlite3_file *) (f + 1);
        rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
        m = f->real->pMethods;
        if (!m)
                return rc; /* the real open failed before it needed closing */
        if (rc != SQLITE_OK) {
                m->xClose(f->real);
                return rc;
        }
        /* Offer no more of the method table than the real file has. */
        p->pMethods = &walbuf_io[m->iVersion < 1 ? 1 : m->iVersion > 3 ? 3 : m->iVersion];
        return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
        return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
        return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
        return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *v, const char *name) {
        return real_vfs->xDlOpen(real_vfs, name);
}

static void v_dlerror(sqlite3_vfs *v, int n, char *msg) {
        real_vfs->xDlError(real_vfs, n, msg);
}

static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void) {
        return real_vfs->xDlSym(real_vfs, h, sym);
}

static void v_dlclose(sqlite3_vfs *v, void *h) {
        real_vfs->xDlClose(real_vfs, h);
}

static int v_randomness(sqlite3_vfs *v, int n, char *out) {
        return real_vfs->xRandomness(real_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *v, int usec) {
        return real_vfs->xSleep(real_vfs, usec);
}

static int v_current_time(sqlite3_vfs *v, double *out) {
        return real_vfs->xCurrentTime(real_vfs, out);
}

static int v_get_last_error(sqlite3_vfs *v, int n, char *out) {
        return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int v_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
        return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool registered;

static void walbuf_register(void) {
        real_vfs = sqlite3_vfs_find(NULL);
        if (!real_vfs || real_vfs->iVersion < 2 || !real_vfs->xCurrentTimeInt64)
                return;
        walbuf_io[3] = (sqlite3_io_methods) {
                .iVersion = 3,
                .xClose = w_close,
                .xRead = w_read,
                .xWrite = w_write,
                .xTruncate = w_truncate,
                .xSync = w_sync,
                .xFileSize = w_file_size,
                .xLock = w_lock,
                .xUnlock = w_unlock,
                .xCheckReservedLock = w_check_reserved,
                .xFileControl = w_file_control,
                .xSectorSize = w_sector_size,
                .xDeviceCharacteristics = w_device_characteristics,
                .xShmMap = w_shm_map,
                .xShmLock = w_shm_lock,
                .xShmBarrier = w_shm_barrier,
                .xShmUnmap = w_shm_unmap,
                .xFetch = w_fetch,
                .xUnfetch = w_unfetch,
        };
        walbuf_io[2] = walbuf_io[3];
        walbuf_io[2].iVersion = 2;
        walbuf_io[1] = walbuf_io[2];
        walbuf_io[1].iVersion = 1;
        walbuf_vfs = (sqlite3_vfs) {
                .iVersion = 2,
                .szOsFile = (int) sizeof(WalFile) + real_vfs->szOsFile,
                .mxPathname = real_vfs->mxPathname,
                .zName = WALBUF_NAME,
                .xOpen = v_open,
                .xDelete = v_delete,
                .xAccess = v_access,
                .xFullPathname = v_full_pathname,
                .xDlOpen = v_dlopen,
                .xDlError = v_dlerror,
                .xDlSym = v_dlsym,
                .xDlClose = v_dlclose,
                .xRandomness = v_randomness,
                .xSleep = v_sleep,
                .xCurrentTime = v_current_time,
                .xGetLastError = v_get_last_error,
                .xCurrentTimeInt64 = v_current_time_int64,
        };
        registered = sqlite3_vfs_register(&walbuf_vfs, /* makeDflt= */ 0) == SQLITE_OK;
}

const char *sqlite_walbuf_vfs(void) {
        (void) pthread_once(&once, walbuf_register);
        return registered ? WALBUF_NAME : NULL;
}

uint64_t sqlite_walbuf_writes(void) {
        return atomic_load_explicit(&real_writes, memory_order_relaxed);
}
