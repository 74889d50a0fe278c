/* Metrics registry rendered in the Prometheus text format. */
#include "core/metric.h"

#include "core/mem.h"
#include "core/strbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct metric {
	struct metric *next;
	enum metric_type type;
	char *name; /* with labels */
	char *help;
	size_t base_len; /* length of the name without labels */
	_Atomic int64_t value;
};

struct metric_hist {
	struct metric_hist *next;
	char *name;
	char *help;
	unsigned n;
	uint64_t bounds[METRIC_HIST_MAX];
	_Atomic uint64_t counts[METRIC_HIST_MAX + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t sum;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *head, *tail;
static struct metric_hist *hists;
static metric_collect_cb collect_cb[8];
static void *collect_arg[8];
static unsigned n_collect;

struct metric *metric_get(enum metric_type type, const char *name, const char *help)
{
	pthread_mutex_lock(&reg_lock);
	struct metric *m;
	for (m = head; m; m = m->next) {
		if (strcmp(m->name, name) == 0)
			goto out;
	}
	m = mem_zalloc(sizeof(*m));
	if (!m)
		goto out;
	m->name = mem_strdup(name);
	m->help = mem_strdup(help ? help : "");
	if (!m->name || !m->help) {
		mem_free(m->name);
		mem_free(m->help);
		mem_free(m);
		m = NULL;
		goto out;
	}
	m->type = type;
	const char *brace = strchr(name, '{');
	m->base_len = brace ? (size_t)(brace - name) : strlen(name);
	/* Keep metrics of one family together so HELP/TYPE print once. */
	struct metric *after = NULL;
	for (struct metric *it = head; it; it = it->next) {
		if (it->base_len == m->base_len && strncmp(it->name, name, m->base_len) == 0)
			after = it;
	}
	if (after) {
		m->next = after->next;
		after->next = m;
		if (tail == after)
			tail = m;
	} else if (tail) {
		tail->next = m;
		tail = m;
	} else {
		head = tail = m;
	}
out:
	pthread_mutex_unlock(&reg_lock);
	return m;
}

void metric_add(struct metric *m, uint64_t n)
{
	if (m)
		atomic_fetch_add_explicit(&m->value, (int64_t)n, memory_order_relaxed);
}

void metric_inc(struct metric *m)
{
	metric_add(m, 1);
}

void metric_set(struct metric *m, int64_t v)
{
	if (m)
		atomic_store_explicit(&m->value, v, memory_order_relaxed);
}

int64_t metric_value(const struct metric *m)
{
	return m ? atomic_load_explicit(&m->value, memory_order_relaxed) : 0;
}

int64_t metric_lookup(const char *name)
{
	int64_t v = -1;
	pthread_mutex_lock(&reg_lock);
	for (struct metric *m = head; m; m = m->next) {
		if (strcmp(m->name, name) == 0) {
			v = metric_value(m);
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return v;
}

struct metric_hist *metric_hist_get(const char *name, const char *help, const uint64_t *bounds,
                                    unsigned n)
{
	if (n == 0 || n > METRIC_HIST_MAX)
		return NULL;
	for (unsigned i = 1; i < n; i++)
		if (bounds[i] <= bounds[i - 1])
			return NULL;
	pthread_mutex_lock(&reg_lock);
	struct metric_hist *h;
	for (h = hists; h; h = h->next)
		if (strcmp(h->name, name) == 0)
			goto out;
	h = mem_zalloc(sizeof(*h));
	if (!h)
		goto out;
	h->name = mem_strdup(name);
	h->help = mem_strdup(help ? help : "");
	if (!h->name || !h->help) {
		mem_free(h->name);
		mem_free(h->help);
		mem_free(h);
		h = NULL;
		goto out;
	}
	h->n = n;
	memcpy(h->bounds, bounds, n * sizeof(bounds[0]));
	struct metric_hist **pp = &hists;
	while (*pp)
		pp = &(*pp)->next;
	*pp = h;
out:
	pthread_mutex_unlock(&reg_lock);
	return h;
}

void metric_hist_observe(struct metric_hist *h, uint64_t v)
{
	if (!h)
		return;
	unsigned i = 0;
	while (i < h->n && v > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

void metric_on_collect(metric_collect_cb cb, void *arg)
{
	pthread_mutex_lock(&reg_lock);
	if (n_collect < 8) {
		collect_cb[n_collect] = cb;
		collect_arg[n_collect] = arg;
		n_collect++;
	}
	pthread_mutex_unlock(&reg_lock);
}

int metric_render(struct strbuf *sb)
{
	pthread_mutex_lock(&reg_lock);
	unsigned n = n_collect;
	pthread_mutex_unlock(&reg_lock);
	for (unsigned i = 0; i < n; i++)
		collect_cb[i](collect_arg[i]);

	pthread_mutex_lock(&reg_lock);
	const struct metric *prev = NULL;
	for (const struct metric *m = head; m; prev = m, m = m->next) {
		int same = prev && prev->base_len == m->base_len &&
		           strncmp(prev->name, m->name, m->base_len) == 0;
		if (!same) {
			str_printf(sb, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)m->base_len,
			           m->name, m->help, (int)m->base_len, m->name,
			           m->type == METRIC_COUNTER ? "counter" : "gauge");
		}
		str_printf(sb, "%s %lld\n", m->name, (long long)metric_value(m));
	}
	for (const struct metric_hist *h = hists; h; h = h->next) {
		str_printf(sb, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
		uint64_t cum = 0;
		for (unsigned i = 0; i <= h->n; i++) {
			cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
			if (i < h->n)
				str_printf(sb, "%s_bucket{le=\"%llu\"} %llu\n", h->name,
				           (unsigned long long)h->bounds[i],
				           (unsigned long long)cum);
			else
				str_printf(sb, "%s_bucket{le=\"+Inf\"} %llu\n", h->name,
				           (unsigned long long)cum);
		}
		str_printf(sb, "%s_sum %llu\n%s_count %llu\n", h->name,
		           (unsigned long long)atomic_load_explicit(&h->sum, memory_order_relaxed),
		           h->name, (unsigned long long)cum);
	}
	pthread_mutex_unlock(&reg_lock);
	return sb->oom ? -ENOMEM : 0;
}

void metric_registry_close(void)
{
	pthread_mutex_lock(&reg_lock);
	struct metric *m = head;
	while (m) {
		struct metric *next = m->next;
		mem_free(m->name);
		mem_free(m->help);
		mem_free(m);
		m = next;
	}
	head = tail = NULL;
	while (hists) {
		struct metric_hist *h = hists;
		hists = h->next;
		mem_free(h->name);
		mem_free(h->help);
		mem_free(h);
	}
	n_collect = 0;
	pthread_mutex_unlock(&reg_lock);
}
