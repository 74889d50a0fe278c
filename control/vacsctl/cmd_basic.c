/* vacsctl commands: health, ready, metrics, check-config, call, drain. */
#include "control/vacsctl/vacsctl.h"

#include "conf/conf.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET of a plain-text page: the body on stdout, the exit status from the HTTP status. */
static int get_page(const struct vacsctl *v, const char *path, int argc)
{
	struct vacsctl_resp r;
	if (argc != 1) {
		fprintf(stderr, "vacsctl: this command takes no arguments\n");
		return VACSCTL_USAGE;
	}
	int rc = vacsctl_http(v, "GET", path, NULL, 0, &r);
	if (rc)
		return rc;
	fwrite(r.body, 1, r.len, stdout);
	fflush(stdout);
	rc = vacsctl_exit_for(r.status);
	if (rc) {
		const char *eol = strstr(r.head, "\r\n");
		fprintf(stderr, "vacsctl: %.*s\n",
		        (int)(eol ? (size_t)(eol - r.head) : strlen(r.head)), r.head);
	}
	vacsctl_resp_free(&r);
	return rc;
}

static int cmd_health(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	return get_page(v, "/healthz", argc);
}

static int cmd_ready(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	return get_page(v, "/readyz", argc);
}

static int cmd_metrics(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	return get_page(v, "/metrics", argc);
}

static int cmd_check_config(const struct vacsctl *v, int argc, char **argv)
{
	(void)v;
	if (argc != 2) {
		fprintf(stderr, "usage: vacsctl check-config FILE\n");
		return VACSCTL_USAGE;
	}
	char err[16384];
	struct conf *c = NULL;
	int rc = conf_load(argv[1], &c, err, sizeof(err));
	if (rc) {
		fputs(err, stderr);
		if (!err[0])
			fprintf(stderr, "%s: %s\n", argv[1], strerror(-rc));
		return VACSCTL_FAIL;
	}
	conf_unref(c);
	printf("ok\n");
	return VACSCTL_OK;
}

/* vacsctl call NUMBER [options]: POST /v1/calls; the answer is printed as JSON (as it came),
 * errors included, whatever --json says. */
static int cmd_call(const struct vacsctl *v, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"from", required_argument, NULL, 'f'}, {"assistant", required_argument, NULL, 'a'},
	    {"lead", required_argument, NULL, 'l'}, {"ref", required_argument, NULL, 'r'},
	    {"var", required_argument, NULL, 'v'},  {NULL, 0, NULL, 0},
	};
	json_t *o = json_object(), *vars = json_object();
	int c, rc = VACSCTL_USAGE;
	optind = 0; /* GNU getopt: 0 re-initialises its state after the first scan */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *k = c == 'f'   ? "from"
		                : c == 'a' ? "assistant_id"
		                : c == 'l' ? "lead_id"
		                : c == 'r' ? "ref"
		                           : NULL;
		if (k) {
			json_object_set_new(o, k, json_string(optarg));
		} else if (c == 'v' && strchr(optarg, '=') && optarg[0] != '=') {
			char *eq = strchr(optarg, '=');
			*eq = '\0';
			json_object_set_new(vars, optarg, json_string(eq + 1));
		} else {
			fprintf(stderr, "usage: vacsctl call NUMBER [--from N] [--assistant ID] "
			                "[--lead ID] [--ref R] [--var KEY=VALUE]...\n");
			goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vacsctl: call needs exactly one NUMBER\n");
		goto out;
	}
	json_object_set_new(o, "to", json_string(argv[optind]));
	if (json_object_size(vars))
		json_object_set(o, "variables", vars);
	char *body = json_dumps(o, JSON_COMPACT);
	struct vacsctl_resp r;
	rc = body ? vacsctl_http(v, "POST", "/v1/calls", body, 1, &r) : VACSCTL_FAIL;
	free(body);
	if (rc)
		goto out;
	fwrite(r.body, 1, r.len, stdout);
	fflush(stdout);
	rc = vacsctl_exit_for(r.status);
	if (rc) {
		const char *eol = strstr(r.head, "\r\n");
		fprintf(stderr, "vacsctl: %.*s\n",
		        (int)(eol ? (size_t)(eol - r.head) : strlen(r.head)), r.head);
	}
	vacsctl_resp_free(&r);
out:
	json_decref(vars);
	json_decref(o);
	return rc;
}

static void show_drain(const json_t *j, const void *arg)
{
	(void)arg;
	const char *k;
	json_t *x;
	char cell[512];
	if (!json_is_object(j) || !json_object_size(j)) {
		printf("draining: vacsd takes no new calls\n");
		return;
	}
	json_object_foreach((json_t *)j, k, x)
	    printf("%s: %s\n", k, vacsctl_cell(x, cell, sizeof(cell)));
}

static int cmd_drain(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vacsctl drain\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "POST", "/v1/admin/drain", NULL, show_drain, NULL);
}

static const struct vacsctl_cmd basic_cmds[] = {
    {"health", NULL, "", "GET /healthz: is vacsd alive", cmd_health},
    {"ready", NULL, "", "GET /readyz: is vacsd taking calls (prints why not)", cmd_ready},
    {"metrics", NULL, "", "GET /metrics: Prometheus text format", cmd_metrics},
    {"call", NULL, "NUMBER [--from N] [--assistant ID] [--lead ID] [--ref R] [--var K=V]...",
     "POST /v1/calls: an outbound AI call to NUMBER now; prints the answer as JSON\n"
     "({\"id\":...}), errors included",
     cmd_call},
    {"check-config", NULL, "FILE",
     "load and validate a vacsd configuration file, print each problem\n"
     "(file:line: key: what) or \"ok\"; the variables named by *_env must be set",
     cmd_check_config},
    {"drain", NULL, "",
     "POST /v1/admin/drain (admin scope): vacsd takes no new calls, calls in\n"
     "progress go on",
     cmd_drain},
};
VACSCTL_COMMANDS(basic_cmds)
