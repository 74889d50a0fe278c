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

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric *head, *tail;
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
	n_collect = 0;
	pthread_mutex_unlock(&reg_lock);
}
