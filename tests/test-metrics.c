#include "alloc.h"
#include "cleanup.h"
#include "harness.h"
#include "metrics.h"
#include "strbuf.h"

TEST(counters_and_render) {
        static const char *const lines[] = {
                "# TYPE remedyd_webhooks_total counter",
                "remedyd_webhooks_total{source=\"splunk\",code=\"202\"} 2\n",
                "remedyd_webhooks_total{source=\"okta\",code=\"401\"} 1\n",
                "remedyd_rule_matches_total{rule=\"r\\\"1\"} 1\n",
                "remedyd_actions_total{action=\"suspend\",outcome=\"done\"} 1\n",
                "remedyd_api_requests_total{operation=\"suspend\",code=\"200\"} 1\n",
                "remedyd_api_request_duration_seconds_bucket{operation=\"suspend\",le=\"0.005\"} 1\n",
                "remedyd_token_refreshes_total{result=\"success\"} 1\n",
                "remedyd_time_to_contain_seconds_bucket{le=\"0.005\"} 1\n",
                "remedyd_time_to_contain_seconds_bucket{le=\"0.25\"} 2\n",
                "remedyd_time_to_contain_seconds_bucket{le=\"+Inf\"} 2\n",
                "remedyd_time_to_contain_seconds_count 2\n",
                "# TYPE remedyd_webhook_duration_seconds histogram",
                "remedyd_webhook_duration_seconds_bucket{source=\"splunk\",le=\"0.001\"} 1\n",
                "remedyd_webhook_duration_seconds_bucket{source=\"splunk\",le=\"0.01\"} 2\n",
                "remedyd_webhook_duration_seconds_count{source=\"splunk\"} 2\n",
                "remedyd_webhook_duration_seconds_count{source=\"okta\"} 1\n",
        };
        Metrics *m = metrics_new();
        StrBuf b;

        ASSERT_NOT_NULL(m);
        metrics_webhook(m, "splunk", 202);
        metrics_webhook(m, "splunk", 202);
        metrics_webhook(m, "okta", 401);
        metrics_rule_match(m, "r\"1");
        metrics_action(m, "suspend", "queued");
        metrics_action(m, "suspend", "done");
        metrics_api_request(m, "suspend", 200, 0.003);
        metrics_token_refresh(m, "success");
        metrics_time_to_contain(m, 0.004);
        metrics_time_to_contain(m, 0.2);
        metrics_webhook_duration(m, "splunk", 0.0004);
        metrics_webhook_duration(m, "splunk", 0.007);
        metrics_webhook_duration(m, "okta", 0.0001);
        ASSERT_EQ(metrics_webhooks_total(m), 3);
        ASSERT_EQ(metrics_actions_total(m, "done"), 1);
        ASSERT_EQ(metrics_actions_total(m, NULL), 2);

        strbuf_init(&b, 1u << 20);
        ASSERT_OK(metrics_render(m, &b));
        for (size_t i = 0; i < ELEMENTSOF(lines); i++)
                ASSERT_CONTAINS(b.data, lines[i]);
        strbuf_free(&b);
        metrics_free(m);
}

TEST(empty_histogram_present) {
        Metrics *m = metrics_new();
        StrBuf b;

        ASSERT_NOT_NULL(m);
        strbuf_init(&b, 1u << 20);
        ASSERT_OK(metrics_render(m, &b));
        ASSERT_CONTAINS(b.data, "remedyd_time_to_contain_seconds_count 0\n");
        ASSERT_CONTAINS(b.data, "# TYPE remedyd_api_request_duration_seconds histogram");
        strbuf_free(&b);
        metrics_free(m);
}

TEST(series_cap) {
        Metrics *m = metrics_new();
        StrBuf b;
        char name[32];

        ASSERT_NOT_NULL(m);
        for (int i = 0; i < METRICS_SERIES_MAX + 50; i++) {
                snprintf(name, sizeof(name), "rule-%d", i);
                metrics_rule_match(m, name);
        }
        strbuf_init(&b, 1u << 22);
        ASSERT_OK(metrics_render(m, &b));
        ASSERT_CONTAINS(b.data, "remedyd_rule_matches_total{rule=\"other\"} 51\n");
        strbuf_free(&b);
        metrics_free(m);
        metrics_webhook(NULL, "x", 1); /* NULL-safe */
}

int main(void) {
        RUN(counters_and_render);
        RUN(empty_histogram_present);
        RUN(series_cap);
        HARNESS_DONE();
}
