/* Counters and histograms and their Prometheus text (include/metrics.h).
 * Calls alloc only. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "metrics.h"

/* A family is a name, its label names, and up to METRICS_SERIES_MAX series,
 * each a set of label values with a counter or a histogram. Lookups are
 * linear: the label sets are few (sources, rules, codes). */

#define LABELS_MAX 2
#define HISTOGRAM_BUCKETS 14

static const double bucket_bounds[HISTOGRAM_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

typedef struct Series {
        char *values[LABELS_MAX];
        uint64_t count;                       /* counter value, or histogram count */
        double sum;                           /* histogram */
        uint64_t buckets[HISTOGRAM_BUCKETS];  /* histogram, non-cumulative */
} Series;

typedef struct Family {
        const char *name;
        const char *help;
        const char *labels[LABELS_MAX];
        unsigned n_labels;
        bool histogram;
        Series *series;
        size_t n_series;
        size_t cap;
} Family;

enum {
        F_WEBHOOKS,
        F_RULE_MATCHES,
        F_ACTIONS,
        F_API_REQUESTS,
        F_API_DURATION,
        F_TOKEN_REFRESHES,
        F_TIME_TO_CONTAIN,
        F_API_RETRIES,
        F_NOTIFICATIONS,
        F_WEBHOOK_DURATION,
        _F_MAX,
};

struct Metrics {
        Family families[_F_MAX];
};

Metrics *metrics_new(void) {
        Metrics *m = mem_calloc(1, sizeof(Metrics));

        if (!m)
                return NULL;
        m->families[F_WEBHOOKS] = (Family) { "remedyd_webhooks_total", "Webhook requests answered, by source and HTTP status.", { "source", "code" }, 2, false };
        m->families[F_RULE_MATCHES] = (Family) { "remedyd_rule_matches_total", "Rule matches, by rule.", { "rule" }, 1, false };
        m->families[F_ACTIONS] = (Family) { "remedyd_actions_total", "Actions reaching a status (at acceptance and at completion).", { "action", "outcome" }, 2, false };
        m->families[F_API_REQUESTS] = (Family) { "remedyd_api_requests_total", "1Password API requests, by operation and HTTP status (0 = no answer).", { "operation", "code" }, 2, false };
        m->families[F_API_DURATION] = (Family) { "remedyd_api_request_duration_seconds", "1Password API request duration.", { "operation" }, 1, true };
        m->families[F_TOKEN_REFRESHES] = (Family) { "remedyd_token_refreshes_total", "OAuth token requests, by result.", { "result" }, 1, false };
        m->families[F_TIME_TO_CONTAIN] = (Family) { "remedyd_time_to_contain_seconds", "From webhook arrival to 1Password confirming the suspension.", { NULL }, 0, true };
        m->families[F_API_RETRIES] = (Family) { "remedyd_api_retries_total", "1Password API calls retried after a transient failure.", { "operation" }, 1, false };
        m->families[F_NOTIFICATIONS] = (Family) { "remedyd_notifications_total", "Notification delivery attempts, by sink and result (delivered, retry, failed).", { "sink", "result" }, 2, false };
        m->families[F_WEBHOOK_DURATION] = (Family) { "remedyd_webhook_duration_seconds", "From a webhook request's arrival to its answer sent, by source (includes the wait for the durable commit).", { "source" }, 1, true };
        return m;
}

Metrics *metrics_free(Metrics *m) {
        if (!m)
                return NULL;
        for (size_t f = 0; f < _F_MAX; f++) {
                Family *fam = &m->families[f];
                for (size_t i = 0; i < fam->n_series; i++)
                        for (unsigned l = 0; l < fam->n_labels; l++)
                                mem_free(fam->series[i].values[l]);
                mem_free(fam->series);
        }
        mem_free(m);
        return NULL;
}

static const char *const overflow_values[LABELS_MAX] = { "other", "other" };

static Series *series_get(Family *f, const char *const *values) {
        Series *s;

        for (size_t i = 0; i < f->n_series; i++) {
                bool same = true;
                for (unsigned l = 0; l < f->n_labels && same; l++)
                        same = strcmp(f->series[i].values[l], values[l]) == 0;
                if (same)
                        return &f->series[i];
        }
        /* The last slot is kept for the "other" series. */
        if (f->n_series >= METRICS_SERIES_MAX - 1 && values[0] != overflow_values[0])
                return series_get(f, overflow_values);
        if (f->n_series >= METRICS_SERIES_MAX)
                return NULL;
        if (f->n_series == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 8;
                Series *n = mem_reallocarray(f->series, cap, sizeof(Series));
                if (!n)
                        return NULL;
                f->series = n;
                f->cap = cap;
        }
        s = &f->series[f->n_series];
        *s = (Series) {};
        for (unsigned l = 0; l < f->n_labels; l++) {
                s->values[l] = mem_strdup(values[l] ? values[l] : "");
                if (!s->values[l]) {
                        for (unsigned k = 0; k < l; k++)
                                mem_free(s->values[k]);
                        return NULL;
                }
        }
        f->n_series++;
        return s;
}

static void count(Metrics *m, unsigned fam, const char *a, const char *b) {
        const char *v[LABELS_MAX] = { a, b };
        Series *s;

        if (!m)
                return;
        s = series_get(&m->families[fam], v);
        if (s)
                s->count++;
}

static void observe(Metrics *m, unsigned fam, const char *a, double x) {
        const char *v[LABELS_MAX] = { a, NULL };
        Series *s;

        if (!m || !(x >= 0))
                return;
        s = series_get(&m->families[fam], v);
        if (!s)
                return;
        s->count++;
        s->sum += x;
        for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
                if (x <= bucket_bounds[i]) {
                        s->buckets[i]++;
                        break;
                }
}

void metrics_webhook(Metrics *m, const char *source, int code) {
        char c[16];

        snprintf(c, sizeof(c), "%d", code);
        count(m, F_WEBHOOKS, source, c);
}

void metrics_rule_match(Metrics *m, const char *rule) {
        count(m, F_RULE_MATCHES, rule, NULL);
}

void metrics_action(Metrics *m, const char *action, const char *outcome) {
        count(m, F_ACTIONS, action, outcome);
}

void metrics_api_request(Metrics *m, const char *operation, long code, double seconds) {
        char c[16];

        snprintf(c, sizeof(c), "%ld", code);
        count(m, F_API_REQUESTS, operation, c);
        observe(m, F_API_DURATION, operation, seconds);
}

void metrics_token_refresh(Metrics *m, const char *result) {
        count(m, F_TOKEN_REFRESHES, result, NULL);
}

void metrics_time_to_contain(Metrics *m, double seconds) {
        observe(m, F_TIME_TO_CONTAIN, NULL, seconds);
}

void metrics_api_retry(Metrics *m, const char *operation) {
        count(m, F_API_RETRIES, operation, NULL);
}

void metrics_notification(Metrics *m, const char *sink, const char *result) {
        count(m, F_NOTIFICATIONS, sink, result);
}

void metrics_webhook_duration(Metrics *m, const char *source, double seconds) {
        observe(m, F_WEBHOOK_DURATION, source, seconds);
}

static uint64_t family_total(Metrics *m, unsigned fam, int label, const char *value) {
        Family *f;
        uint64_t t = 0;

        if (!m)
                return 0;
        f = &m->families[fam];
        for (size_t i = 0; i < f->n_series; i++)
                if (label < 0 || strcmp(f->series[i].values[label], value) == 0)
                        t += f->series[i].count;
        return t;
}

uint64_t metrics_webhooks_total(Metrics *m) {
        return family_total(m, F_WEBHOOKS, -1, NULL);
}

uint64_t metrics_actions_total(Metrics *m, const char *outcome) {
        return family_total(m, F_ACTIONS, outcome ? 1 : -1, outcome);
}

/* Label values are escaped as the text format requires: \\, \" and \n. */
static int put_labels(StrBuf *out, const Family *f, const Series *s, const char *extra_name, const char *extra) {
        bool any = false;
        int r;

        if (f->n_labels == 0 && !extra_name)
                return 0;
        r = strbuf_puts(out, "{");
        for (unsigned l = 0; r >= 0 && l < f->n_labels + (extra_name ? 1 : 0); l++) {
                const char *name = l < f->n_labels ? f->labels[l] : extra_name;
                const char *v = l < f->n_labels ? s->values[l] : extra;

                r = strbuf_printf(out, "%s%s=\"", any ? "," : "", name);
                for (const char *p = v; r >= 0 && *p; p++) {
                        if (*p == '\\' || *p == '"')
                                r = strbuf_printf(out, "\\%c", *p);
                        else if (*p == '\n')
                                r = strbuf_puts(out, "\\n");
                        else
                                r = strbuf_append(out, p, 1);
                }
                if (r >= 0)
                        r = strbuf_puts(out, "\"");
                any = true;
        }
        if (r >= 0)
                r = strbuf_puts(out, "}");
        return r;
}

int metrics_render(Metrics *m, StrBuf *out) {
        int r = 0;

        for (unsigned fi = 0; r >= 0 && fi < _F_MAX; fi++) {
                const Family *f = &m->families[fi];

                r = strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                                  f->histogram ? "histogram" : "counter");
                if (f->histogram && f->n_series == 0 && f->n_labels == 0) {
                        /* An unlabelled histogram exists from the start, empty. */
                        for (unsigned b = 0; r >= 0 && b < HISTOGRAM_BUCKETS; b++)
                                r = strbuf_printf(out, "%s_bucket{le=\"%g\"} 0\n", f->name, bucket_bounds[b]);
                        if (r >= 0)
                                r = strbuf_printf(out, "%s_bucket{le=\"+Inf\"} 0\n%s_sum 0\n%s_count 0\n",
                                                  f->name, f->name, f->name);
                        continue;
                }
                for (size_t i = 0; r >= 0 && i < f->n_series; i++) {
                        const Series *s = &f->series[i];

                        if (!f->histogram) {
                                r = strbuf_puts(out, f->name);
                                if (r >= 0)
                                        r = put_labels(out, f, s, NULL, NULL);
                                if (r >= 0)
                                        r = strbuf_printf(out, " %llu\n", (unsigned long long) s->count);
                                continue;
                        }
                        uint64_t cum = 0;
                        for (unsigned b = 0; r >= 0 && b <= HISTOGRAM_BUCKETS; b++) {
                                char le[32];

                                if (b < HISTOGRAM_BUCKETS) {
                                        cum += s->buckets[b];
                                        snprintf(le, sizeof(le), "%g", bucket_bounds[b]);
                                } else {
                                        cum = s->count;
                                        snprintf(le, sizeof(le), "+Inf");
                                }
                                r = strbuf_printf(out, "%s_bucket", f->name);
                                if (r >= 0)
                                        r = put_labels(out, f, s, "le", le);
                                if (r >= 0)
                                        r = strbuf_printf(out, " %llu\n", (unsigned long long) cum);
                        }
                        if (r >= 0)
                                r = strbuf_printf(out, "%s_sum", f->name);
                        if (r >= 0)
                                r = put_labels(out, f, s, NULL, NULL);
                        if (r >= 0)
                                r = strbuf_printf(out, " %.6f\n%s_count", s->sum, f->name);
                        if (r >= 0)
                                r = put_labels(out, f, s, NULL, NULL);
                        if (r >= 0)
                                r = strbuf_printf(out, " %llu\n", (unsigned long long) s->count);
                }
        }
        return r;
}
