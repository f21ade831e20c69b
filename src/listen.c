/* Listener addresses and their sockets (include/listen.h), systemd
 * socket activation included. Calls libc, sd-daemon and util. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cleanup.h"
#include "listen.h"
#include "util.h"

int listen_parse(const char *s, ListenAddress *ret) {
        ListenAddress a = { 0 };
        const char *colon;
        char *end;
        unsigned long port;

        if (!s || !*s)
                return -EINVAL;
        if (str_startswith(s, "unix:")) {
                const char *p = s + 5;
                if (*p != '/' || strlen(p) >= sizeof(a.path))
                        return -EINVAL;
                a.kind = LISTEN_UNIX;
                strcpy(a.path, p);
                *ret = a;
                return 0;
        }
        if (str_startswith(s, "systemd:")) {
                const char *p = s + 8;
                if (!*p || strlen(p) >= sizeof(a.path) || strchr(p, ':') || strchr(p, '/'))
                        return -EINVAL;
                a.kind = LISTEN_SYSTEMD;
                strcpy(a.path, p);
                *ret = a;
                return 0;
        }
        a.kind = LISTEN_INET;
        if (*s == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':' || (size_t) (close - s - 1) >= sizeof(a.host) || close == s + 1)
                        return -EINVAL;
                memcpy(a.host, s + 1, (size_t) (close - s - 1));
                a.host[close - s - 1] = 0;
                colon = close + 1;
                {
                        struct in6_addr in6;
                        if (inet_pton(AF_INET6, a.host, &in6) != 1)
                                return -EINVAL;
                }
        } else {
                colon = strrchr(s, ':');
                if (!colon || colon == s || (size_t) (colon - s) >= sizeof(a.host))
                        return -EINVAL;
                memcpy(a.host, s, (size_t) (colon - s));
                a.host[colon - s] = 0;
                if (strchr(a.host, ':'))
                        return -EINVAL; /* bare IPv6 needs brackets */
        }
        if (!colon[1])
                return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno || *end || port > 65535 || colon[1] == '-' || colon[1] == '+')
                return -EINVAL;
        a.port = (unsigned) port;
        *ret = a;
        return 0;
}

bool listen_is_local(const ListenAddress *a) {
        struct in_addr in4;
        struct in6_addr in6;

        if (a->kind == LISTEN_UNIX)
                return true;
        if (a->kind != LISTEN_INET)
                return false;
        if (strcasecmp(a->host, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, a->host, &in4) == 1)
                return (ntohl(in4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, a->host, &in6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&in6);
        return false;
}

static int open_systemd(const char *name) {
        static int n = -1;
        static char **names;

        if (n < 0) {
                n = sd_listen_fds_with_names(/* unset_environment= */ 0, &names);
                if (n < 0)
                        return n;
        }
        for (int i = 0; i < n; i++)
                if (names && names[i] && strcmp(names[i], name) == 0) {
                        int fd = SD_LISTEN_FDS_START + i;
                        int fl = fcntl(fd, F_GETFL);
                        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                                return -errno;
                        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                                return -errno;
                        return fd;
                }
        return -ENOENT;
}

static int open_unix(const char *path, unsigned mode) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                _cleanup_close_ int probe = -1;

                if (errno != EADDRINUSE)
                        return -errno;
                /* Someone left a socket file: is a live daemon behind it? */
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return -errno;
                if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return -EADDRINUSE;
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
                if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        return -errno;
        }
        if (chmod(path, mode) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int open_inet(const ListenAddress *a) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *res = NULL;
        char port[8];
        int r, fd = -1;

        snprintf(port, sizeof(port), "%u", a->port);
        r = getaddrinfo(a->host, port, &hints, &res);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int one = 1;

                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (ai->ai_family == AF_INET6)
                        (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) {
                        r = 0;
                        break;
                }
                r = -errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        return fd >= 0 ? fd : (r < 0 ? r : -EADDRNOTAVAIL);
}

int listen_open(const ListenAddress *a, unsigned mode) {
        switch (a->kind) {
        case LISTEN_UNIX:
                return open_unix(a->path, mode);
        case LISTEN_SYSTEMD:
                return open_systemd(a->path);
        case LISTEN_INET:
                return open_inet(a);
        default:
                return -EINVAL;
        }
}

int listen_describe(int fd, char *buf, unsigned size) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char host[INET6_ADDRSTRLEN];

        if (getsockname(fd, (struct sockaddr *) &ss, &sl) < 0)
                return -errno;
        switch (ss.ss_family) {
        case AF_INET: {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
                return 0;
        }
        case AF_INET6: {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
                return 0;
        }
        case AF_UNIX:
                snprintf(buf, size, "unix:%s", ((struct sockaddr_un *) &ss)->sun_path);
                return 0;
        default:
                return -EAFNOSUPPORT;
        }
}
