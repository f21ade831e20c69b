/* SPDX-License-Identifier: MIT */
/* rss-floor: the baseline for the idle-memory benchmark. Links the same
 * libraries as remedyd and does, once, the least any program using them
 * for remedyd's job must do: an sd-event loop, an HMAC-SHA256 through
 * OpenSSL's EVP_MAC, curl's global init plus one HTTP GET over a multi and
 * an easy handle that stay alive (remedyd fetches a token and the user
 * directory at start), a libmicrohttpd daemon in epoll mode listening on
 * loopback, a SQLite database in WAL mode with one table and one row, one
 * JSON and one YAML document parsed. None of remedyd's own code.
 *
 *   rss-floor URL DBPATH      prints "ready" when done, then sleeps until
 *                             SIGTERM/SIGINT
 *
 * Built by scripts/bench; bench/bench.py reads its RSS beside remedyd's. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <yaml.h>

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
        return MHD_NO;
}

static size_t discard(char *p, size_t size, size_t n, void *userdata) {
        return size * n;
}

static void die(const char *what) {
        fprintf(stderr, "rss-floor: %s failed\n", what);
        exit(1);
}

int main(int argc, char **argv) {
        static const char yaml_text[] = "rules:\n  - name: x\n    when: {field: a, equals: b}\n";
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t mac_len = 0;
        OSSL_PARAM params[2];
        struct MHD_Daemon *mhd;
        yaml_parser_t parser;
        yaml_document_t doc;
        json_object *j;
        EVP_MAC_CTX *mctx;
        EVP_MAC *hmac;
        sd_event *e = NULL;
        sqlite3 *db = NULL;
        CURLM *multi;
        CURL *easy;
        sigset_t ss;
        int sig;

        if (argc != 3) {
                fprintf(stderr, "usage: rss-floor URL DBPATH\n");
                return 2;
        }
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);

        if (sd_event_default(&e) < 0)
                die("sd_event_default");

        hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        mctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (!mctx || !EVP_MAC_init(mctx, (const unsigned char *) "key", 3, params) ||
            !EVP_MAC_update(mctx, (const unsigned char *) "body", 4) || !EVP_MAC_final(mctx, mac, &mac_len, sizeof(mac)))
                die("HMAC");

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                die("curl_global_init");
        multi = curl_multi_init();
        easy = curl_easy_init();
        if (!multi || !easy)
                die("curl handles");
        curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT, 10L);
        if (curl_easy_perform(easy) != CURLE_OK)
                die("HTTP GET");

        mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, handler, NULL,
                               MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 16384, MHD_OPTION_END);
        if (!mhd)
                die("MHD_start_daemon");

        if (sqlite3_open(argv[2], &db) != SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (x TEXT);"
                             "INSERT INTO t VALUES ('row');", NULL, NULL, NULL) != SQLITE_OK)
                die("sqlite");

        j = json_tokener_parse("{\"result\": {\"user\": \"a@example.com\", \"severity\": [1, 2]}}");
        if (!j)
                die("json");
        json_object_put(j);
        if (!yaml_parser_initialize(&parser))
                die("yaml");
        yaml_parser_set_input_string(&parser, (const unsigned char *) yaml_text, strlen(yaml_text));
        if (!yaml_parser_load(&parser, &doc))
                die("yaml");
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);

        printf("ready %zu\n", mac_len);
        fflush(stdout);
        sigwait(&ss, &sig);

        MHD_stop_daemon(mhd);
        sqlite3_close(db);
        curl_easy_cleanup(easy);
        curl_multi_cleanup(multi);
        curl_global_cleanup();
        EVP_MAC_CTX_free(mctx);
        EVP_MAC_free(hmac);
        sd_event_unref(e);
        return 0;
}
