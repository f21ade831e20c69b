/* Listener addresses of the contract ("HOST:PORT", "[V6]:PORT",
 * "unix:/path", "systemd:NAME") and opening them. */
#pragma once

#include <stdbool.h>

typedef enum ListenKind {
        LISTEN_INET,    /* host is an IPv4/IPv6 literal or a name */
        LISTEN_UNIX,
        LISTEN_SYSTEMD, /* fd passed by systemd, FileDescriptorName=name */
        _LISTEN_KIND_MAX,
        _LISTEN_KIND_INVALID = -22,
} ListenKind;

typedef struct ListenAddress {
        ListenKind kind;
        char host[256]; /* LISTEN_INET, without brackets */
        unsigned port;  /* LISTEN_INET; 0 = the OS picks */
        char path[108]; /* LISTEN_UNIX (sun_path) or LISTEN_SYSTEMD name */
} ListenAddress;

/* -EINVAL with no output on a malformed address. */
int listen_parse(const char *s, ListenAddress *ret);
/* True for unix sockets and loopback hosts (127.0.0.0/8, ::1, localhost).
 * systemd sockets are not known to be local: false. */
bool listen_is_local(const ListenAddress *a);
/* Opens a non-blocking, close-on-exec listening socket. For unix sockets
 * a stale socket file (nobody answers) is replaced and the socket gets
 * mode `mode`; a live one gives -EADDRINUSE. For systemd names the fd is
 * taken from sd_listen_fds_with_names() (-ENOENT if absent). Returns the fd
 * or a negative errno. */
int listen_open(const ListenAddress *a, unsigned mode);
/* Fills buf with the bound address ("127.0.0.1:34567", "unix:/p"). */
int listen_describe(int fd, char *buf, unsigned size);
