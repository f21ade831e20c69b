#include <fcntl.h>
#include <unistd.h>

#include <json-c/json.h>

#include "alloc.h"
#include "harness.h"
#include "log.h"

/* Runs fn with stderr redirected to a temp file; returns what was written. */
static char captured[65536];

static const char *capture(void (*fn)(void)) {
        char path[] = "/tmp/remedyd-test-log-XXXXXX";
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        ssize_t n;

        ASSERT_TRUE(fd >= 0);
        dup2(fd, STDERR_FILENO);
        fn();
        dup2(saved, STDERR_FILENO);
        close(saved);
        lseek(fd, 0, SEEK_SET);
        n = read(fd, captured, sizeof(captured) - 1);
        captured[n < 0 ? 0 : n] = 0;
        close(fd);
        unlink(path);
        return captured;
}

static void emit_secret(void) {
        log_info("token is tok-SECRET-123 and client s3cr3t-value, again tok-SECRET-123");
}

static void emit_injection(void) {
        log_warning("user said: %s", "evil\nFAKE LINE\x1b[31m");
}

static void emit_ctx(void) {
        LogContext ctx = { .event_id = "ev1", .rule = "r\"1", .action_id = NULL, .user = "a@b.c" };
        log_full(LOG_NOTICE, 0, &ctx, "suspended %s", "x");
}

static void emit_errno(void) {
        int r = log_error_errno(-ENOENT, "opening: %m");
        ASSERT_EQ(r, -ENOENT);
}

static void emit_debug(void) {
        log_debug("hidden");
}

TEST(redaction) {
        const char *out;

        ASSERT_OK(log_register_secret("tok-SECRET-123"));
        ASSERT_OK(log_register_secret("s3cr3t-value"));
        ASSERT_OK(log_register_secret("abc")); /* too short: ignored */
        out = capture(emit_secret);
        ASSERT_TRUE(strstr(out, "tok-SECRET-123") == NULL);
        ASSERT_TRUE(strstr(out, "s3cr3t-value") == NULL);
        ASSERT_CONTAINS(out, "[redacted]");
        ASSERT_CONTAINS(out, "<6>");
        log_forget_secrets();
        out = capture(emit_secret);
        ASSERT_CONTAINS(out, "tok-SECRET-123");
}

static void emit_pinned(void) {
        log_info("client secret pinned-config-secret, token tok-0001");
}

TEST(pinned_secrets_survive_many_tokens) {
        const char *out;
        char tok[32];

        log_forget_secrets();
        ASSERT_OK(log_register_secret_pinned("pinned-config-secret"));
        for (int i = 0; i < 1000; i++) {
                snprintf(tok, sizeof(tok), "tok-%04d", i);
                ASSERT_OK(log_register_secret(tok));
        }
        out = capture(emit_pinned);
        ASSERT_TRUE(strstr(out, "pinned-config-secret") == NULL);
        /* the oldest token was evicted to make room: it is no longer redacted */
        ASSERT_CONTAINS(out, "tok-0001");
        log_forget_secret("pinned-config-secret");
        out = capture(emit_pinned);
        ASSERT_CONTAINS(out, "pinned-config-secret");
        log_forget_secrets();
}

TEST(escaping) {
        const char *out = capture(emit_injection);

        ASSERT_CONTAINS(out, "evil\\nFAKE LINE\\x1b[31m");
        /* exactly one line */
        ASSERT_TRUE(strchr(out, '\n') == out + strlen(out) - 1);
}

TEST(json_format) {
        json_object *o;
        const char *out;

        log_setup(LOG_FORMAT_JSON, true);
        out = capture(emit_ctx);
        o = json_tokener_parse(out);
        ASSERT_NOT_NULL(o);
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "msg")), "suspended x");
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "rule")), "r\"1");
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "user")), "a@b.c");
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "level")), "notice");
        json_object_put(o);
        out = capture(emit_injection);
        o = json_tokener_parse(out);
        ASSERT_NOT_NULL(o);
        json_object_put(o);
        log_setup(LOG_FORMAT_TEXT, true);
}

TEST(levels_and_errno) {
        const char *out;

        out = capture(emit_errno);
        ASSERT_CONTAINS(out, "No such file or directory");
        log_set_max_level(LOG_INFO);
        out = capture(emit_debug);
        ASSERT_STREQ(out, "");
        log_set_max_level(LOG_DEBUG);
        out = capture(emit_debug);
        ASSERT_CONTAINS(out, "hidden");
}

TEST(trace_words) {
        unsigned m;

        ASSERT_OK(log_trace_from_string("rules,oauth", &m));
        ASSERT_EQ(m, TRACE_RULES | TRACE_OAUTH);
        ASSERT_ERR(log_trace_from_string("rules,bogus", &m), EINVAL);
        ASSERT_EQ(log_format_from_string("json"), LOG_FORMAT_JSON);
        ASSERT_TRUE(log_format_from_string("xml") < 0);
}

TEST(escape_helper) {
        char *e = log_escape("a\x01" "b", 64);
        ASSERT_STREQ(e, "a\\x01b");
        mem_free(e);
}

int main(void) {
        log_setup(LOG_FORMAT_TEXT, true);
        RUN(redaction);
        RUN(pinned_secrets_survive_many_tokens);
        RUN(escaping);
        RUN(json_format);
        RUN(levels_and_errno);
        RUN(trace_words);
        RUN(escape_helper);
        HARNESS_DONE();
}
