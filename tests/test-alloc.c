#include "alloc.h"
#include "harness.h"

TEST(basics) {
        char *s = mem_strdup("abc"), *t = mem_strndup("abcdef", 2);
        void *p;

        ASSERT_STREQ(s, "abc");
        ASSERT_STREQ(t, "ab");
        mem_free(s);
        mem_free(t);
        p = mem_reallocarray(NULL, SIZE_MAX / 2, 4);
        ASSERT_NULL(p);
        ASSERT_EQ(errno, ENOMEM);
        mem_free(NULL);
}

TEST(torture) {
#ifdef REMEDYD_ALLOC_TORTURE
        void *a, *b, *c;

        mem_fail_at(2);
        a = mem_malloc(1);
        b = mem_malloc(1);
        c = mem_malloc(1);
        ASSERT_NOT_NULL(a);
        ASSERT_NULL(b);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(mem_alloc_count(), 3);
        mem_free(a);
        mem_free(c);
        mem_fail_at(0);
#endif
}

int main(void) {
        RUN(basics);
        RUN(torture);
        HARNESS_DONE();
}
