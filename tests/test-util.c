#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "harness.h"
#include "remedyd-limits.h"
#include "util.h"

static char tmpdir[] = "/tmp/remedyd-test-util-XXXXXX";

static void write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "w");
        ASSERT_NOT_NULL(f);
        fputs(content, f);
        fclose(f);
}

TEST(duration) {
        uint64_t u;

        ASSERT_OK(parse_duration("500ms", &u));
        ASSERT_EQ(u, 500000);
        ASSERT_OK(parse_duration("30s", &u));
        ASSERT_EQ(u, 30 * USEC_PER_SEC);
        ASSERT_OK(parse_duration("10m", &u));
        ASSERT_EQ(u, 600 * USEC_PER_SEC);
        ASSERT_OK(parse_duration("4h", &u));
        ASSERT_EQ(u, 4 * 3600 * USEC_PER_SEC);
        ASSERT_OK(parse_duration("7d", &u));
        ASSERT_EQ(u, 7 * 86400 * USEC_PER_SEC);
        ASSERT_OK(parse_duration("1h30m", &u));
        ASSERT_EQ(u, 5400 * USEC_PER_SEC);
        ASSERT_OK(parse_duration("1m500ms", &u));
        ASSERT_EQ(u, 60500000);
        ASSERT_ERR(parse_duration("", &u), EINVAL);
        ASSERT_ERR(parse_duration("10", &u), EINVAL);
        ASSERT_ERR(parse_duration("ten seconds", &u), EINVAL);
        ASSERT_ERR(parse_duration("5x", &u), EINVAL);
        ASSERT_ERR(parse_duration("-5s", &u), EINVAL);
        ASSERT_ERR(parse_duration("99999999999999999999d", &u), ERANGE);
        ASSERT_ERR(parse_duration("999999999999999d", &u), ERANGE);
}

TEST(format_duration) {
        char b[64];

        format_duration(5400 * USEC_PER_SEC, b, sizeof(b));
        ASSERT_STREQ(b, "1h30m");
        format_duration(500000, b, sizeof(b));
        ASSERT_STREQ(b, "500ms");
        format_duration(0, b, sizeof(b));
        ASSERT_STREQ(b, "0s");
}

TEST(read_file_limited) {
        char p[256];
        char *buf = NULL;
        size_t n;

        snprintf(p, sizeof(p), "%s/f", tmpdir);
        write_file(p, "hello");
        ASSERT_OK(read_file_limited(p, 5, &buf, &n));
        ASSERT_EQ(n, 5);
        ASSERT_STREQ(buf, "hello");
        mem_free(buf);
        ASSERT_ERR(read_file_limited(p, 4, &buf, &n), E2BIG);
        ASSERT_ERR(read_file_limited("/nonexistent/x", 4, &buf, &n), ENOENT);
        ASSERT_ERR(read_file_limited(tmpdir, 4, &buf, &n), EISDIR);
        snprintf(p, sizeof(p), "%s/fifo", tmpdir);
        ASSERT_OK(mkfifo(p, 0600)); /* would block a blocking open for ever */
        ASSERT_ERR(read_file_limited(p, 4, &buf, &n), EINVAL);
        unlink(p);
}

TEST(secret_path) {
        char *p = NULL;

        ASSERT_OK(secret_path_resolve("/etc/x", &p));
        ASSERT_STREQ(p, "/etc/x");
        mem_free(p);
        unsetenv("CREDENTIALS_DIRECTORY");
        ASSERT_ERR(secret_path_resolve("credential:client_id", &p), ENXIO);
        setenv("CREDENTIALS_DIRECTORY", "/run/credentials/remedyd.service", 1);
        ASSERT_OK(secret_path_resolve("credential:client_id", &p));
        ASSERT_STREQ(p, "/run/credentials/remedyd.service/client_id");
        mem_free(p);
        ASSERT_ERR(secret_path_resolve("credential:../x", &p), EINVAL);
        ASSERT_ERR(secret_path_resolve("credential:", &p), EINVAL);
        unsetenv("CREDENTIALS_DIRECTORY");
}

TEST(secret_read) {
        char p[256], spec[300];
        char **v = NULL;
        size_t n;

        snprintf(p, sizeof(p), "%s/secret", tmpdir);
        write_file(p, "  first-secret  \n\nsecond-secret\r\n");
        ASSERT_OK(secret_read(p, &v, &n));
        ASSERT_EQ(n, 2);
        ASSERT_STREQ(v[0], "first-secret");
        ASSERT_STREQ(v[1], "second-secret");
        ASSERT_NULL(v[2]);
        strv_free_erase(v);

        write_file(p, "\n  \n");
        ASSERT_ERR(secret_read(p, &v, &n), ENODATA);

        /* credential: form */
        write_file(p, "from-credentials\n");
        setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
        ASSERT_OK(secret_read("credential:secret", &v, &n));
        ASSERT_STREQ(v[0], "from-credentials");
        strv_free_erase(v);
        unsetenv("CREDENTIALS_DIRECTORY");

        snprintf(spec, sizeof(spec), "%s/missing", tmpdir);
        ASSERT_ERR(secret_read(spec, &v, &n), ENOENT);

        {
                FILE *f = fopen(p, "w");
                for (unsigned i = 0; i < LIMIT_SECRETS_PER_FILE + 1; i++)
                        fprintf(f, "secret-%u\n", i);
                fclose(f);
                ASSERT_ERR(secret_read(p, &v, &n), ENOBUFS);
        }
}

TEST(hex_and_compare) {
        uint8_t b[3] = { 0x00, 0xab, 0xff }, o[3];
        char h[7];

        hex_encode(b, 3, h);
        ASSERT_STREQ(h, "00abff");
        ASSERT_OK(hex_decode("00ABff", o, 3));
        ASSERT_TRUE(memcmp(b, o, 3) == 0);
        ASSERT_ERR(hex_decode("00abf", o, 3), EINVAL);
        ASSERT_ERR(hex_decode("00abfg", o, 3), EINVAL);
        /* every byte, in either place of a pair, against strtol()'s idea */
        for (int c = 1; c < 256; c++) {
                char in[3] = { (char) c, '7', 0 }, sw[3] = { '7', (char) c, 0 }, one[2] = { (char) c, 0 };
                bool digit = strchr("0123456789abcdefABCDEF", c) != NULL;
                uint8_t v;

                ASSERT_EQ(hex_decode(in, &v, 1) == 0, digit);
                if (digit)
                        ASSERT_EQ(v, (uint8_t) (strtol(one, NULL, 16) << 4 | 7));
                ASSERT_EQ(hex_decode(sw, &v, 1) == 0, digit);
                if (digit)
                        ASSERT_EQ(v, (uint8_t) (0x70 | strtol(one, NULL, 16)));
        }
        ASSERT_TRUE(memeq_secret("abc", 3, "abc", 3));
        ASSERT_FALSE(memeq_secret("abc", 3, "abd", 3));
        ASSERT_FALSE(memeq_secret("abc", 3, "abcd", 4));
}

TEST(strings) {
        char s[] = "  padded \t\n";
        char *l;
        char id[33];

        ASSERT_STREQ(strstrip(s), "padded");
        l = str_tolower_dup("Wendy@Example.COM");
        ASSERT_STREQ(l, "wendy@example.com");
        mem_free(l);
        ASSERT_TRUE(glob_match_ci("*@secops.example.com", "Bob@SecOps.Example.com"));
        ASSERT_FALSE(glob_match_ci("*@secops.example.com", "bob@example.com"));
        ASSERT_EQ(edit_distance("webhook", "webhok"), 1);
        ASSERT_EQ(edit_distance("max_body_bytes", "max_body_byte"), 1);
        ASSERT_TRUE(is_user_id("IR7VJHJ36JHINBFAD7V2T5MP3E"));
        ASSERT_FALSE(is_user_id("ir7vjhj36jhinbfad7v2t5mp3e"));
        ASSERT_FALSE(is_user_id("IR7VJHJ36JHINBFAD7V2T5MP3"));
        ASSERT_OK(random_id(id));
        ASSERT_EQ(strlen(id), 32);
}

int main(void) {
        ASSERT_NOT_NULL(mkdtemp(tmpdir));
        RUN(duration);
        RUN(format_duration);
        RUN(read_file_limited);
        RUN(secret_path);
        RUN(secret_read);
        RUN(hex_and_compare);
        RUN(strings);
        {
                char cmd[300];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
                (void) !system(cmd);
        }
        HARNESS_DONE();
}
