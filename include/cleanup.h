/* Scope-bound cleanup: _cleanup_(f) runs f(&var) when var leaves scope.
 * TAKE_PTR(p) hands ownership out of a scope (returns p, leaves NULL). */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <yaml.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

#define TAKE_PTR(p)                       \
        ({                                \
                __typeof__(p) _tp_ = (p); \
                (p) = NULL;               \
                _tp_;                     \
        })

#define TAKE_FD(fd)                \
        ({                         \
                int _tf_ = (fd);   \
                (fd) = -1;         \
                _tf_;              \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* Defines static inline void namep(type *p) { if (*p) fn(*p); } */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, fn, name) \
        static inline void name(type *p) {          \
                if (*p)                             \
                        (void) fn(*p);              \
        }

void mem_free(void *p);
static inline void freep(void *p) {
        mem_free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0)
                (void) close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose, fclosep)
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put, json_object_putp)
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free, json_tokener_freep)
DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup, curl_easy_cleanupp)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all, curl_slist_free_allp)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct MHD_Response *, MHD_destroy_response, mhd_destroy_responsep)

static inline void yaml_parser_deletep(yaml_parser_t **p) {
        if (*p)
                yaml_parser_delete(*p);
}
