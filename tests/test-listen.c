#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "listen.h"

TEST(parse) {
        ListenAddress a;

        ASSERT_OK(listen_parse("0.0.0.0:8080", &a));
        ASSERT_EQ(a.kind, LISTEN_INET);
        ASSERT_STREQ(a.host, "0.0.0.0");
        ASSERT_EQ(a.port, 8080);
        ASSERT_FALSE(listen_is_local(&a));
        ASSERT_OK(listen_parse("[::1]:9464", &a));
        ASSERT_STREQ(a.host, "::1");
        ASSERT_TRUE(listen_is_local(&a));
        ASSERT_OK(listen_parse("127.0.0.2:1", &a));
        ASSERT_TRUE(listen_is_local(&a));
        ASSERT_OK(listen_parse("localhost:0", &a));
        ASSERT_TRUE(listen_is_local(&a));
        ASSERT_OK(listen_parse("unix:/run/remedyd/control.sock", &a));
        ASSERT_EQ(a.kind, LISTEN_UNIX);
        ASSERT_STREQ(a.path, "/run/remedyd/control.sock");
        ASSERT_TRUE(listen_is_local(&a));
        ASSERT_OK(listen_parse("systemd:webhook", &a));
        ASSERT_EQ(a.kind, LISTEN_SYSTEMD);
        ASSERT_STREQ(a.path, "webhook");
        ASSERT_FALSE(listen_is_local(&a));

        ASSERT_ERR(listen_parse("", &a), EINVAL);
        ASSERT_ERR(listen_parse("8080", &a), EINVAL);
        ASSERT_ERR(listen_parse("host:", &a), EINVAL);
        ASSERT_ERR(listen_parse("host:70000", &a), EINVAL);
        ASSERT_ERR(listen_parse("::1:80", &a), EINVAL);
        ASSERT_ERR(listen_parse("[nothex]:80", &a), EINVAL);
        ASSERT_ERR(listen_parse("unix:relative", &a), EINVAL);
        ASSERT_ERR(listen_parse("systemd:", &a), EINVAL);
}

TEST(open_inet) {
        ListenAddress a;
        char d[64];
        int fd;

        ASSERT_OK(listen_parse("127.0.0.1:0", &a));
        fd = listen_open(&a, 0);
        ASSERT_OK(fd);
        ASSERT_OK(listen_describe(fd, d, sizeof(d)));
        ASSERT_CONTAINS(d, "127.0.0.1:");
        close(fd);
}

TEST(open_unix_stale_and_live) {
        char path[] = "/tmp/remedyd-test-listen-XXXXXX";
        char sock[128];
        ListenAddress a;
        struct stat st;
        int fd, fd2;

        ASSERT_NOT_NULL(mkdtemp(path));
        snprintf(sock, sizeof(sock), "unix:%s/c.sock", path);
        ASSERT_OK(listen_parse(sock, &a));
        fd = listen_open(&a, 0660);
        ASSERT_OK(fd);
        ASSERT_OK(stat(a.path, &st));
        ASSERT_EQ(st.st_mode & 0777, 0660);
        /* a live listener is refused */
        ASSERT_ERR(listen_open(&a, 0660), EADDRINUSE);
        /* a stale one (nobody listening) is replaced */
        close(fd);
        fd2 = listen_open(&a, 0660);
        ASSERT_OK(fd2);
        close(fd2);
        unlink(a.path);
        rmdir(path);
}

int main(void) {
        RUN(parse);
        RUN(open_inet);
        RUN(open_unix_stale_and_live);
        HARNESS_DONE();
}
