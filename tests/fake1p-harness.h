/* Test helpers: run tests/fake1p/fake1p.py on a loopback port the OS picks,
 * talk to its /_fake control endpoints with blocking libcurl (tests only,
 * never on the loop), and drive an sd_event loop until a flag is set.
 * Every wait is bounded. Include once per test program. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "alloc.h"
#include "harness.h"
#include "strbuf.h"
#include "util.h"

extern char **environ;

typedef struct Fake {
        pid_t pid;
        int port;
        char dir[64];
        char base_url[64];
} Fake;

static inline const char *fake_script(void) {
        static char path[4096];
        const char *e = getenv("REMEDYD_FAKE1P"), *root = getenv("REMEDYD_SOURCE_ROOT");

        if (e)
                return access(e, R_OK) == 0 ? e : NULL;
        snprintf(path, sizeof(path), "%s/tests/fake1p/fake1p.py", root ? root : ".");
        return access(path, R_OK) == 0 ? path : NULL;
}

/* Skips the whole program (exit 77) when the fake is not in the tree. */
static inline void fake_require(void) {
        if (!fake_script()) {
                fprintf(stderr, "fake1p.py not found (set REMEDYD_FAKE1P), skipping\n");
                exit(77);
        }
}

/* Starts script (a fake of this tree taking --port, --port-file and --host:
 * fake1p.py, fakehook.py); extra: NULL-terminated extra arguments, or NULL. */
static inline void fake_start_script(Fake *f, const char *script, const char *const *extra) {
        char portfile[128];
        char *argv[64];
        size_t n = 0;
        uint64_t deadline;
        pid_t parent = getpid();

        memset(f, 0, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/remedyd-fake-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(f->dir));
        snprintf(portfile, sizeof(portfile), "%s/port", f->dir);

        argv[n++] = mem_strdup("/usr/bin/python3");
        argv[n++] = mem_strdup(script);
        argv[n++] = mem_strdup("--port");
        argv[n++] = mem_strdup("0");
        argv[n++] = mem_strdup("--port-file");
        argv[n++] = mem_strdup(portfile);
        argv[n++] = mem_strdup("--host");
        argv[n++] = mem_strdup("127.0.0.1");
        for (size_t i = 0; extra && extra[i] && n < 62; i++)
                argv[n++] = mem_strdup(extra[i]);
        argv[n] = NULL;
        for (size_t i = 0; i < n; i++)
                ASSERT_NOT_NULL(argv[i]);

        /* fork + exec rather than posix_spawn: the fake must die with a
         * test that aborts (PR_SET_PDEATHSIG). */
        f->pid = fork();
        ASSERT_TRUE(f->pid >= 0);
        if (f->pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                if (null >= 0)
                        (void) dup2(null, STDOUT_FILENO);
                execve(argv[0], argv, environ);
                _exit(127);
        }
        for (size_t i = 0; i < n; i++)
                mem_free(argv[i]);

        deadline = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;
        for (;;) {
                FILE *p = fopen(portfile, "re");
                int st;

                if (p) {
                        int ok = fscanf(p, "%d", &f->port);
                        fclose(p);
                        if (ok == 1 && f->port > 0)
                                break;
                }
                if (waitpid(f->pid, &st, WNOHANG) == f->pid)
                        FAIL_AT("%s exited early", script);
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        FAIL_AT("%s did not start within 30s", script);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 20 * 1000 * 1000 }, NULL);
        }
        snprintf(f->base_url, sizeof(f->base_url), "http://127.0.0.1:%d", f->port);
}

static inline void fake_start(Fake *f, const char *const *extra) {
        fake_start_script(f, fake_script(), extra);
}

static inline void fake_stop(Fake *f) {
        char path[128];
        int st;

        if (f->pid <= 0)
                return;
        (void) kill(f->pid, SIGTERM);
        (void) waitpid(f->pid, &st, 0);
        f->pid = 0;
        snprintf(path, sizeof(path), "%s/port", f->dir);
        (void) unlink(path);
        (void) rmdir(f->dir);
}

static inline size_t fake_write(char *p, size_t size, size_t n, void *userdata) {
        StrBuf *b = userdata;
        return strbuf_append(b, p, size * n) < 0 ? 0 : size * n;
}

/* Blocking control request; returns the HTTP status, body in *ret_body
 * (caller frees with mem_free) if ret_body is non-NULL. */
static inline long fake_http(Fake *f, const char *method, const char *path, const char *body, char **ret_body) {
        char url[512];
        StrBuf b;
        CURL *c;
        long status = 0;
        struct curl_slist *h = NULL;

        strbuf_init(&b, 64u * 1024u * 1024u);
        snprintf(url, sizeof(url), "%s%s", f->base_url, path);
        c = curl_easy_init();
        ASSERT_NOT_NULL(c);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fake_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        if (ret_body)
                *ret_body = strbuf_steal(&b);
        else
                strbuf_free(&b);
        return status;
}

static inline void fake_post(Fake *f, const char *path, const char *body) {
        long s = fake_http(f, "POST", path, body, NULL);
        if (s < 200 || s >= 300)
                FAIL_AT("POST %s -> %ld", path, s);
}

static inline void fake_clear(Fake *f) {
        ASSERT_EQ(fake_http(f, "DELETE", "/_fake/requests", NULL, NULL), 200);
        ASSERT_EQ(fake_http(f, "DELETE", "/_fake/faults", NULL, NULL), 200);
}

/* The recorded requests as a json array (caller puts). */
static inline json_object *fake_requests(Fake *f) {
        char *body = NULL;
        json_object *j;

        ASSERT_EQ(fake_http(f, "GET", "/_fake/requests", NULL, &body), 200);
        j = json_tokener_parse(body);
        mem_free(body);
        ASSERT_NOT_NULL(j);
        ASSERT_TRUE(json_object_is_type(j, json_type_array));
        return j;
}

static inline const char *req_str(json_object *req, const char *key) {
        json_object *v;
        return json_object_object_get_ex(req, key, &v) ? json_object_get_string(v) : NULL;
}

static inline const char *req_header(json_object *req, const char *name) {
        json_object *h, *v;
        if (!json_object_object_get_ex(req, "headers", &h) || !json_object_object_get_ex(h, name, &v))
                return NULL;
        return json_object_get_string(v);
}

static inline const char *req_query(json_object *req, const char *name) {
        json_object *h, *v;
        if (!json_object_object_get_ex(req, "query", &h) || !json_object_object_get_ex(h, name, &v))
                return NULL;
        return json_object_get_string(v);
}

static inline long req_status(json_object *req) {
        json_object *v;
        return json_object_object_get_ex(req, "status", &v) ? (long) json_object_get_int(v) : 0;
}

/* How many recorded requests have "op" == op (NULL: all). */
static inline size_t fake_count(Fake *f, const char *op) {
        json_object *j = fake_requests(f);
        size_t n = 0;

        for (size_t i = 0; i < json_object_array_length(j); i++) {
                const char *o = req_str(json_object_array_get_idx(j, i), "op");
                if (!op || (o && strcmp(o, op) == 0))
                        n++;
        }
        json_object_put(j);
        return n;
}

/* The id of the fake's user with this email into out (NUL-terminated);
 * fails the test if there is none. */
static inline void fake_user_id(Fake *f, const char *email, char out[64]) {
        char *body = NULL;
        json_object *j, *arr;

        ASSERT_EQ(fake_http(f, "GET", "/_fake/users", NULL, &body), 200);
        j = json_tokener_parse(body);
        mem_free(body);
        ASSERT_NOT_NULL(j);
        arr = j;
        if (json_object_is_type(j, json_type_object))
                ASSERT_TRUE(json_object_object_get_ex(j, "users", &arr) || json_object_object_get_ex(j, "results", &arr));
        out[0] = 0;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *u = json_object_array_get_idx(arr, i);
                if (strcmp(req_str(u, "email"), email) == 0)
                        snprintf(out, 64, "%s", req_str(u, "id"));
        }
        json_object_put(j);
        ASSERT_TRUE(out[0] != 0);
}

/* Runs the loop until *flag, failing after timeout_sec. */
static inline void loop_until(sd_event *e, const bool *flag, unsigned timeout_sec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_sec * USEC_PER_SEC;

        while (!*flag) {
                if (now_usec(CLOCK_MONOTONIC) > deadline)
                        FAIL_AT("event loop: condition not reached within %us", timeout_sec);
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        }
}
