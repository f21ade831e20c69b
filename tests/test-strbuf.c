#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "harness.h"
#include "strbuf.h"

TEST(limits) {
        StrBuf b;
        char *s;

        strbuf_init(&b, 10);
        ASSERT_OK(strbuf_puts(&b, "hello"));
        ASSERT_OK(strbuf_printf(&b, "%d", 1234));
        ASSERT_STREQ(b.data, "hello1234");
        ASSERT_ERR(strbuf_puts(&b, "xy"), E2BIG);
        ASSERT_STREQ(b.data, "hello1234"); /* unchanged on failure */
        ASSERT_ERR(strbuf_printf(&b, "%s", "xy"), E2BIG);
        ASSERT_OK(strbuf_puts(&b, "z"));
        ASSERT_EQ(b.len, 10);
        s = strbuf_steal(&b);
        ASSERT_STREQ(s, "hello1234z");
        ASSERT_EQ(b.len, 0);
        mem_free(s);
        strbuf_free(&b);
}

TEST(growth) {
        StrBuf b;

        strbuf_init(&b, 1u << 20);
        for (int i = 0; i < 10000; i++)
                ASSERT_OK(strbuf_puts(&b, "0123456789"));
        ASSERT_EQ(b.len, 100000);
        strbuf_reset(&b);
        ASSERT_STREQ(b.data, "");
        strbuf_free(&b);
}

TEST(urlencoded) {
        StrBuf b;

        strbuf_init(&b, 64);
        ASSERT_OK(strbuf_append_urlencoded(&b, "a+b/c=d e~_.-"));
        ASSERT_STREQ(b.data, "a%2Bb%2Fc%3Dd%20e~_.-");
        strbuf_free(&b);
}

TEST(json_string) {
        char all[128], *p = all;
        json_object *o;
        StrBuf b;

        strbuf_init(&b, 1024);
        ASSERT_OK(strbuf_append_json_string(&b, "a\"b\\c/d\n\t\x01\x1f\x7f \xc3\xa9"));
        ASSERT_STREQ(b.data, "\"a\\\"b\\\\c/d\\n\\t\\u0001\\u001f\x7f \xc3\xa9\"");
        strbuf_reset(&b);
        ASSERT_OK(strbuf_append_json_string(&b, NULL));
        ASSERT_STREQ(b.data, "null");
        strbuf_reset(&b);
        ASSERT_OK(strbuf_append_json_string(&b, ""));
        ASSERT_STREQ(b.data, "\"\"");

        /* every ASCII character comes back the same through a JSON parser */
        for (int c = 1; c < 128; c++)
                *p++ = (char) c;
        *p = 0;
        strbuf_reset(&b);
        ASSERT_OK(strbuf_append_json_string(&b, all));
        o = json_tokener_parse(b.data);
        ASSERT_TRUE(o && json_object_is_type(o, json_type_string));
        ASSERT_STREQ(json_object_get_string(o), all);
        json_object_put(o);
        strbuf_free(&b);

        strbuf_init(&b, 8);
        ASSERT_ERR(strbuf_append_json_string(&b, "\n\n\n\n"), E2BIG);
        strbuf_free(&b);
}

int main(void) {
        RUN(limits);
        RUN(growth);
        RUN(urlencoded);
        RUN(json_string);
        HARNESS_DONE();
}
