/* Counters and histograms for /metrics and /status. Loop thread only.
 * Label values are copied; each family holds at most METRICS_SERIES_MAX
 * label sets (later ones are folded into label value "other"). */
#pragma once

#include <stdint.h>

#include "remedyd-forward.h"
#include "strbuf.h"

#define METRICS_SERIES_MAX 512

Metrics *metrics_new(void);
Metrics *metrics_free(Metrics *m);

/* remedyd_webhooks_total{source,code} */
void metrics_webhook(Metrics *m, const char *source, int code);
/* remedyd_webhook_duration_seconds{source} (histogram): arrival to answer sent */
void metrics_webhook_duration(Metrics *m, const char *source, double seconds);
/* remedyd_rule_matches_total{rule} */
void metrics_rule_match(Metrics *m, const char *rule);
/* remedyd_actions_total{action,outcome}; outcome is a status name */
void metrics_action(Metrics *m, const char *action, const char *outcome);
/* remedyd_api_requests_total{operation,code} and
 * remedyd_api_request_duration_seconds{operation} (histogram); code is the
 * HTTP status, 0 for a network error. */
void metrics_api_request(Metrics *m, const char *operation, long code, double seconds);
/* remedyd_token_refreshes_total{result} ("success"|"failure") */
void metrics_token_refresh(Metrics *m, const char *result);
/* remedyd_time_to_contain_seconds (histogram) */
void metrics_time_to_contain(Metrics *m, double seconds);
/* remedyd_api_retries_total{operation} */
void metrics_api_retry(Metrics *m, const char *operation);

/* remedyd_notifications_total{sink,result}; result delivered|retry|failed */
void metrics_notification(Metrics *m, const char *sink, const char *result);

/* Totals for /status counters. */
uint64_t metrics_webhooks_total(Metrics *m);
uint64_t metrics_actions_total(Metrics *m, const char *outcome);

/* Appends the Prometheus text of every family (gauges are the caller's). */
int metrics_render(Metrics *m, StrBuf *out);
