/* SPDX-License-Identifier: MIT */
/* mhd-baseline: the ceiling for the ingest benchmark. A bare libmicrohttpd
 * server (one epoll thread, like remedyd's single loop) that reads each
 * POST body and answers 202 with a small JSON body: no authentication, no
 * parsing, no storage. Prints "port N" once listening on 127.0.0.1; runs
 * until SIGTERM/SIGINT. Built by scripts/bench. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct MHD_Response *accepted;

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
        static int marker;

        if (!*con_cls) {
                *con_cls = &marker;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                *upload_data_size = 0; /* consumed */
                return MHD_YES;
        }
        return MHD_queue_response(c, 202, accepted);
}

int main(int argc, char **argv) {
        static const char body[] = "{\"event_id\":\"00000000000000000000000000000000\",\"duplicate\":false,\"actions\":[]}";
        unsigned threads = argc > 1 ? (unsigned) atoi(argv[1]) : 1;
        sigset_t ss;
        int sig;

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);

        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        accepted = MHD_create_response_from_buffer(sizeof body - 1, (void *) body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(accepted, "Content-Type", "application/json");
        struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, handler, NULL,
                                                MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0,
                                                MHD_OPTION_CONNECTION_LIMIT, 1024,
                                                MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
        if (!d) {
                fprintf(stderr, "mhd-baseline: MHD_start_daemon failed\n");
                return 1;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        printf("port %u\n", info ? info->port : 0);
        fflush(stdout);
        sigwait(&ss, &sig);
        MHD_stop_daemon(d);
        MHD_destroy_response(accepted);
        return 0;
}
