/* Metrics registry: counters and gauges rendered in the Prometheus text format. */
#ifndef VACS_CORE_METRIC_H
#define VACS_CORE_METRIC_H

#include <stdint.h>

struct strbuf;

enum metric_type { METRIC_COUNTER, METRIC_GAUGE };

/* A metric; members are private. Updates are relaxed atomics: safe from any thread,
 * cheap enough for the packet path. */
struct metric;

/* Registers (or finds) a metric. `name` may carry labels: `vacs_sip_rejected_total{reason="x"}`.
 * The registry owns it; it lives until metric_registry_close(). NULL only on OOM. */
struct metric *metric_get(enum metric_type type, const char *name, const char *help);
void metric_add(struct metric *m, uint64_t n);
void metric_inc(struct metric *m);
void metric_set(struct metric *m, int64_t v);
int64_t metric_value(const struct metric *m);
/* Value of a registered metric by exact name (with labels), or -1 if absent. */
int64_t metric_lookup(const char *name);

/* A histogram (Prometheus type histogram): `name_bucket{le="B"}` for each bound B
 * (ascending, at most METRIC_HIST_MAX) and +Inf, `name_sum`, `name_count`. Observing is
 * a few relaxed atomics: fine on the packet path, from any thread. Registered like
 * metric_get (the same name finds the same histogram); NULL only on OOM or bad bounds. */
#define METRIC_HIST_MAX 24u
struct metric_hist;
struct metric_hist *metric_hist_get(const char *name, const char *help, const uint64_t *bounds,
                                    unsigned n);
void metric_hist_observe(struct metric_hist *h, uint64_t v);

/* Callback run before rendering, to refresh gauges owned by other threads. */
typedef void (*metric_collect_cb)(void *arg);
void metric_on_collect(metric_collect_cb cb, void *arg);

/* Appends the whole registry to sb in Prometheus text format 0.0.4. 0 or -ENOMEM. */
int metric_render(struct strbuf *sb);
void metric_registry_close(void);

#endif
