/* vacsctl campaigns|leads|dnc|stats: the campaign routes of the API (/v1/campaigns,
 * /v1/leads, /v1/dnc, /v1/stats). */
#include "control/vacsctl/vacsctl.h"
#include "core/mem.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* An option that becomes a member of the JSON body or a query parameter. */
struct arg_map {
	const char *opt; /* long option, "max-concurrent" */
	const char *key; /* body member or query parameter, "max_concurrent" */
	char type;       /* 's' string ("null" = JSON null), 'i' integer, 'n' number,
	                  * 'b' true/false, 'j' JSON text */
};
#define MAP_MAX 24

static const struct arg_map campaign_body[] = {
    {"name", "name", 's'},
    {"id", "id", 's'},
    {"assistant", "assistant", 's'},
    {"caller-id", "caller_id", 's'},
    {"trunk", "trunk", 's'},
    {"country", "country", 's'},
    {"timezone", "timezone", 's'},
    {"max-concurrent", "max_concurrent", 'i'},
    {"cps", "calls_per_second", 'n'},
    {"max-attempts", "max_attempts", 'i'},
    {"amd", "amd_action", 's'},
    {"amd-prompt", "amd_prompt", 's'},
    {"calling-hours", "calling_hours", 'j'},
    {"retry-policy", "retry_policy", 'j'},
    {NULL, NULL, 0},
};
static const struct arg_map lead_body[] = {
    {"phone", "phone", 's'},
    {"campaign", "campaign_id", 's'},
    {"id", "id", 's'},
    {"name", "name", 's'},
    {"email", "email", 's'},
    {"language", "language", 's'},
    {"timezone", "timezone", 's'},
    {"external-id", "external_id", 's'},
    {"status", "status", 's'},
    {"consent-call", "consent_call", 'b'},
    {"attributes", "attributes", 'j'},
    {NULL, NULL, 0},
};
static const struct arg_map page_query[] = {
    {"limit", "limit", 's'},   {"after", "after", 's'},
    {"status", "status", 's'}, {"campaign", "campaign_id", 's'},
    {"phone", "phone", 's'},   {"country", "country", 's'},
    {"from", "from", 's'},     {"to", "to", 's'},
    {NULL, NULL, 0},
};

/* Percent-encodes a query value ('+' too: in a query it would read as a space). */
static int query_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		            (*p >= '0' && *p <= '9') || strchr("-._~:", *p);
		if (o + (plain ? 1 : 3) + 1 > len)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

/* Parses argv's options named in `map` (only those in `allowed`, a NULL-terminated list
 * of option names, or all when NULL) into a JSON body (body != NULL) or a query string
 * appended to path (body == NULL). Positional arguments stay at argv[optind..]. 0, or -1
 * after saying why. */
static int parse_args(int argc, char **argv, const struct arg_map *map, const char *const *allowed,
                      json_t *body, char *path, size_t plen)
{
	struct option opts[MAP_MAX + 1];
	size_t n = 0;
	for (size_t i = 0; map[i].opt && n < MAP_MAX; i++) {
		size_t k = 0;
		while (allowed && allowed[k] && strcmp(allowed[k], map[i].opt) != 0)
			k++;
		if (allowed && !allowed[k])
			continue;
		opts[n] = (struct option){map[i].opt, required_argument, NULL, (int)(i + 1)};
		n++;
	}
	opts[n] = (struct option){NULL, 0, NULL, 0};
	char sep = strchr(path, '?') ? '&' : '?';
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c < 1 || c > MAP_MAX)
			return -1;
		const struct arg_map *m = &map[c - 1];
		if (!body) {
			char esc[600];
			size_t len = strlen(path);
			if (query_escape(optarg, esc, sizeof(esc)) ||
			    len + strlen(m->key) + strlen(esc) + 3 > plen)
				return -1;
			snprintf(path + len, plen - len, "%c%s=%s", sep, m->key, esc);
			sep = '&';
			continue;
		}
		json_t *v = NULL;
		char *end;
		if (m->type == 's') {
			v = strcmp(optarg, "null") == 0 ? json_null() : json_string(optarg);
		} else if (m->type == 'i') {
			long long x = strtoll(optarg, &end, 10);
			v = *optarg && !*end ? json_integer(x) : NULL;
		} else if (m->type == 'n') {
			double x = strtod(optarg, &end);
			v = *optarg && !*end ? json_real(x) : NULL;
		} else if (m->type == 'b') {
			v = !strcmp(optarg, "true")    ? json_true()
			    : !strcmp(optarg, "false") ? json_false()
			                               : NULL;
		} else {
			v = json_loads(optarg, JSON_DECODE_ANY, NULL);
		}
		if (!v) {
			fprintf(stderr, "vacsctl: --%s: \"%s\" is not %s\n", m->opt, optarg,
			        m->type == 'i'   ? "an integer"
			        : m->type == 'n' ? "a number"
			        : m->type == 'b' ? "true or false"
			                         : "JSON");
			return -1;
		}
		json_object_set_new(body, m->key, v);
	}
	return 0;
}

/* "<base>/<escaped id><tail>" into path; -1 when it does not fit. */
static int id_path(char *path, size_t len, const char *base, const char *id, const char *tail)
{
	char esc[300];
	if (!id || !id[0] || vacsctl_escape(id, esc, sizeof(esc)))
		return -1;
	snprintf(path, len, "%s/%s%s", base, esc, tail);
	return 0;
}

static const struct vacsctl_col campaign_cols[] = {
    {"ID", "id"},
    {"NAME", "name"},
    {"STATUS", "status"},
    {"ASSISTANT", "assistant"},
    {"CALLER ID", "caller_id"},
    {"MAX", "max_concurrent"},
    {"CPS", "calls_per_second"},
    {"TZ", "timezone"},
    {"CREATED", "created_at"},
};
static const struct vacsctl_col lead_cols[] = {
    {"ID", "id"},         {"CAMPAIGN", "campaign_id"}, {"PHONE", "phone"},        {"NAME", "name"},
    {"STATUS", "status"}, {"DNC", "do_not_call"},      {"CREATED", "created_at"},
};
static const struct vacsctl_col dnc_cols[] = {
    {"PHONE", "phone"}, {"REASON", "reason"}, {"CREATED", "created_at"}};
#define N(a) (sizeof(a) / sizeof(a[0]))

/* Shows a page: arg = "campaigns", "leads" or "dnc". */
static void show_page(const json_t *j, const void *arg)
{
	const char *key = arg;
	const json_t *rows = json_object_get(j, key);
	if (!strcmp(key, "campaigns"))
		vacsctl_table(stdout, rows, campaign_cols, N(campaign_cols));
	else if (!strcmp(key, "leads"))
		vacsctl_table(stdout, rows, lead_cols, N(lead_cols));
	else
		vacsctl_table(stdout, rows, dnc_cols, N(dnc_cols));
	const char *next = json_string_value(json_object_get(j, "next"));
	if (next)
		printf("more: --after %s\n", next);
}

/* Shows any object as "key: value" lines, in the answer's order. */
static void show_object(const json_t *j, const void *arg)
{
	const char *k;
	json_t *x;
	char cell[2048];
	size_t w = 0;
	if (!json_is_object(j)) {
		if (arg)
			printf("%s\n", (const char *)arg);
		return;
	}
	json_object_foreach((json_t *)j, k, x)
	{
		if (strlen(k) > w)
			w = strlen(k);
	}
	json_object_foreach((json_t *)j, k, x)
	    printf("%-*s  %s\n", (int)w + 1, k, vacsctl_cell(x, cell, sizeof(cell)));
}

static int usage(const char *text)
{
	fprintf(stderr, "usage: vacsctl %s\n", text);
	return VACSCTL_USAGE;
}

/* ---- list commands ---- */

static int list_cmd(const struct vacsctl *v, int argc, char **argv, const char *base,
                    const char *const *allowed, const char *key, const char *use)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s", base);
	if (parse_args(argc, argv, page_query, allowed, NULL, path, sizeof(path)) || optind != argc)
		return usage(use);
	return vacsctl_api(v, "GET", path, NULL, show_page, key);
}

static int campaigns_list(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"limit", "after", "status", NULL};
	return list_cmd(v, argc, argv, "/v1/campaigns", allowed, "campaigns",
	                "campaigns list [--limit N] [--after CURSOR] [--status S]");
}

static int leads_list(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"limit", "after",   "status", "campaign",
	                                      "phone", "country", NULL};
	return list_cmd(v, argc, argv, "/v1/leads", allowed, "leads",
	                "leads list [--campaign ID] [--status S] [--phone P [--country CC]] "
	                "[--limit N] [--after CURSOR]");
}

static int dnc_list(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"limit", "after", "phone", "country", NULL};
	return list_cmd(v, argc, argv, "/v1/dnc", allowed, "dnc",
	                "dnc list [--phone P [--country CC]] [--limit N] [--after CURSOR]");
}

static int stats(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"from", "to", "campaign", NULL};
	char path[2048] = "/v1/stats";
	if (parse_args(argc, argv, page_query, allowed, NULL, path, sizeof(path)) || optind != argc)
		return usage("stats [--from T] [--to T] [--campaign ID]");
	return vacsctl_api(v, "GET", path, NULL, show_object, NULL);
}

/* ---- one object: show, delete, start, pause ---- */

static int one_cmd(const struct vacsctl *v, int argc, char **argv, const char *method,
                   const char *base, const char *tail, const char *done, const char *use)
{
	char path[600];
	if (argc != 2 || id_path(path, sizeof(path), base, argv[1], tail))
		return usage(use);
	return vacsctl_api(v, method, path, NULL, show_object, done);
}

static int campaigns_show(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "GET", "/v1/campaigns", "", NULL, "campaigns show ID");
}
static int campaigns_delete(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "DELETE", "/v1/campaigns", "", "deleted",
	               "campaigns delete ID");
}
static int campaigns_start(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "POST", "/v1/campaigns", "/start", NULL,
	               "campaigns start ID");
}
static int campaigns_pause(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "POST", "/v1/campaigns", "/pause", NULL,
	               "campaigns pause ID");
}
static int leads_show(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "GET", "/v1/leads", "", NULL, "leads show ID");
}
static int leads_delete(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "DELETE", "/v1/leads", "", "deleted", "leads delete ID");
}
static int dnc_remove(const struct vacsctl *v, int argc, char **argv)
{
	return one_cmd(v, argc, argv, "DELETE", "/v1/dnc", "", "removed", "dnc remove PHONE");
}

/* ---- bodies: create, update, add ---- */

static int body_cmd(const struct vacsctl *v, int argc, char **argv, const char *method,
                    const char *path_in, const struct arg_map *map, const char *const *allowed,
                    int want_id, const char *use)
{
	char path[2048];
	json_t *body = json_object();
	int rc = VACSCTL_USAGE;
	snprintf(path, sizeof(path), "%s", path_in);
	if (parse_args(argc, argv, map, allowed, body, path, sizeof(path)) ||
	    optind != argc - want_id ||
	    (want_id && id_path(path, sizeof(path), path_in, argv[optind], ""))) {
		usage(use);
		goto out;
	}
	rc = vacsctl_api(v, method, path, body, show_object, NULL);
out:
	json_decref(body);
	return rc;
}

static const char *const campaign_opts =
    "[--name N] [--assistant A] [--caller-id E164] [--trunk T] [--country CC] "
    "[--timezone TZ] [--max-concurrent N] [--cps X] [--max-attempts N] "
    "[--amd hangup|message|ai] [--amd-prompt TEXT] [--calling-hours JSON] "
    "[--retry-policy JSON]";

static int campaigns_create(const struct vacsctl *v, int argc, char **argv)
{
	char use[600];
	snprintf(use, sizeof(use), "campaigns create --name N [--id ID] %s", campaign_opts);
	return body_cmd(v, argc, argv, "POST", "/v1/campaigns", campaign_body, NULL, 0, use);
}

static int campaigns_update(const struct vacsctl *v, int argc, char **argv)
{
	char use[600];
	snprintf(use, sizeof(use), "campaigns update ID %s (\"null\" clears)", campaign_opts);
	return body_cmd(v, argc, argv, "PATCH", "/v1/campaigns", campaign_body, NULL, 1, use);
}

static const char *const lead_opts =
    "[--name N] [--email E] [--language L] [--timezone TZ] [--external-id X] "
    "[--consent-call true|false] [--attributes JSON]";

static int leads_add(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {
	    "phone",    "campaign",    "id",           "name",       "email", "language",
	    "timezone", "external-id", "consent-call", "attributes", NULL};
	char use[600];
	snprintf(use, sizeof(use), "leads add --phone P [--campaign ID] [--id ID] %s", lead_opts);
	return body_cmd(v, argc, argv, "POST", "/v1/leads", lead_body, allowed, 0, use);
}

static int leads_update(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"phone",        "campaign",   "name",   "email",
	                                      "language",     "timezone",   "status", "external-id",
	                                      "consent-call", "attributes", NULL};
	char use[600];
	snprintf(use, sizeof(use), "leads update ID [--status S] [--phone P] [--campaign ID] %s",
	         lead_opts);
	return body_cmd(v, argc, argv, "PATCH", "/v1/leads", lead_body, allowed, 1, use);
}

static int dnc_add(const struct vacsctl *v, int argc, char **argv)
{
	static const struct option opts[] = {{"reason", required_argument, NULL, 'r'},
	                                     {NULL, 0, NULL, 0}};
	json_t *body = json_object();
	int c, rc = VACSCTL_USAGE;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'r')
			goto usage;
		json_object_set_new(body, "reason", json_string(optarg));
	}
	if (optind != argc - 1)
		goto usage;
	json_object_set_new(body, "phone", json_string(argv[optind]));
	rc = vacsctl_api(v, "POST", "/v1/dnc", body, show_object, NULL);
	json_decref(body);
	return rc;
usage:
	json_decref(body);
	return usage("dnc add PHONE [--reason R]");
}

/* A whole file as a NUL-terminated string (mem_), or NULL after saying why. */
static char *read_text(const char *file)
{
	FILE *f = fopen(file, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if (!f) {
		fprintf(stderr, "vacsctl: %s: %s\n", file, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = cap <= (64u << 20) ? mem_realloc(buf, cap) : NULL;
			if (!nb) {
				fprintf(stderr, "vacsctl: %s: too large (64 MiB at most)\n", file);
				mem_free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
	}
	int bad = ferror(f) || memchr(buf, '\0', len) != NULL;
	fclose(f);
	if (bad) {
		fprintf(stderr, "vacsctl: %s: unreadable or not text\n", file);
		mem_free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

/* Imports a JSON file (an array of leads or {"leads": [...]}) or a CSV file (a header row
 * naming the columns; by the .csv extension) into a campaign. */
static int leads_import(const struct vacsctl *v, int argc, char **argv)
{
	static const char *const allowed[] = {"country", NULL};
	static const char *const use = "leads import CAMPAIGN FILE.json|FILE.csv [--country CC]";
	char q[200] = "", base[600], path[900];
	if (parse_args(argc, argv, page_query, allowed, NULL, q, sizeof(q)) || optind != argc - 2 ||
	    id_path(base, sizeof(base), "/v1/campaigns", argv[optind], "/leads"))
		return usage(use);
	const char *file = argv[optind + 1];
	size_t fl = strlen(file);
	if (fl > 4 && strcasecmp(file + fl - 4, ".csv") == 0) {
		char *csv = read_text(file);
		if (!csv)
			return VACSCTL_USAGE;
		struct vacsctl vc = *v;
		vc.content_type = "text/csv";
		snprintf(path, sizeof(path), "%s%s", base, q);
		int rc = vacsctl_api_text(&vc, "POST", path, csv, show_object, NULL);
		mem_free(csv);
		return rc;
	}
	json_error_t err;
	json_t *body = json_load_file(file, 0, &err);
	if (!body) {
		fprintf(stderr, "vacsctl: %s: %s (line %d)\n", file, err.text, err.line);
		return VACSCTL_USAGE;
	}
	snprintf(path, sizeof(path), "%s%s", base, q);
	int rc = vacsctl_api(v, "POST", path, body, show_object, NULL);
	json_decref(body);
	return rc;
}

static const struct vacsctl_cmd campaign_cmds[] = {
    {"campaigns", "list", "[--limit N] [--after CURSOR] [--status S]",
     "GET /v1/campaigns: campaigns, newest first", campaigns_list},
    {"campaigns", "show", "ID", "GET /v1/campaigns/ID: a campaign and its progress",
     campaigns_show},
    {"campaigns", "create", "--name N [options]",
     "POST /v1/campaigns; options --id --assistant --caller-id --trunk --country\n"
     "--timezone --max-concurrent --cps --max-attempts --amd --amd-prompt\n"
     "--calling-hours JSON --retry-policy JSON (\"null\" clears a field in update)",
     campaigns_create},
    {"campaigns", "update", "ID [options]", "PATCH /v1/campaigns/ID: changes the options given",
     campaigns_update},
    {"campaigns", "delete", "ID", "DELETE /v1/campaigns/ID (not while running)", campaigns_delete},
    {"campaigns", "start", "ID", "POST /v1/campaigns/ID/start: draft or paused -> running",
     campaigns_start},
    {"campaigns", "pause", "ID", "POST /v1/campaigns/ID/pause: running -> paused", campaigns_pause},
    {"leads", "list", "[--campaign ID] [--status S] [--phone P] [--limit N] [--after C]",
     "GET /v1/leads: leads, newest first", leads_list},
    {"leads", "show", "ID", "GET /v1/leads/ID", leads_show},
    {"leads", "add", "--phone P [--campaign ID] [options]", "POST /v1/leads: one lead", leads_add},
    {"leads", "update", "ID [options]", "PATCH /v1/leads/ID", leads_update},
    {"leads", "delete", "ID", "DELETE /v1/leads/ID", leads_delete},
    {"leads", "import", "CAMPAIGN FILE.json|FILE.csv [--country CC]",
     "POST /v1/campaigns/CAMPAIGN/leads: imports leads from a JSON array, or from CSV\n"
     "with a header row (phone, name, language, timezone, email, external_id, others)",
     leads_import},
    {"dnc", "add", "PHONE [--reason R]", "POST /v1/dnc: puts a number on the do-not-call list",
     dnc_add},
    {"dnc", "list", "[--phone P] [--limit N] [--after C]", "GET /v1/dnc", dnc_list},
    {"dnc", "remove", "PHONE", "DELETE /v1/dnc/PHONE", dnc_remove},
    {"stats", NULL, "[--from T] [--to T] [--campaign ID]",
     "GET /v1/stats: the funnel and call outcomes", stats},
};
VACSCTL_COMMANDS(campaign_cmds)
