/* vacsctl calls list|show|hangup|transfer: calls (GET /v1/calls[/{id}], POST hangup/transfer). */
#include "control/vacsctl/vacsctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct vacsctl_col call_cols[] = {
    {"CALL ID", "call_id"}, {"DIR", "direction"}, {"CALLER", "caller"},
    {"CALLED", "called"},   {"START", "start"},   {"ANSWER", "answer"},
    {"END", "end"},         {"SIP", "sip_code"},  {"REASON", "end_reason"},
};
#define N_CALL_COLS (sizeof(call_cols) / sizeof(call_cols[0]))

static void show_list(const json_t *j, const void *arg)
{
	(void)arg;
	vacsctl_table(stdout, json_object_get(j, "calls"), call_cols, N_CALL_COLS);
	const char *next = json_string_value(json_object_get(j, "next"));
	if (next)
		printf("more: vacsctl calls list --after %s\n", next);
}

static int calls_list(const struct vacsctl *v, int argc, char **argv)
{
	/* option -> query parameter of GET /v1/calls */
	static const struct option opts[] = {
	    {"limit", required_argument, NULL, 'l'},  {"after", required_argument, NULL, 'a'},
	    {"cursor", required_argument, NULL, 'a'}, {"direction", required_argument, NULL, 'd'},
	    {"lead", required_argument, NULL, 'L'},   {"since", required_argument, NULL, 's'},
	    {"until", required_argument, NULL, 'u'},  {NULL, 0, NULL, 0},
	};
	char path[2048] = "/v1/calls", esc[600];
	int c;
	char sep = '?';
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *q = c == 'l'   ? "limit"
		                : c == 'a' ? "after"
		                : c == 'd' ? "direction"
		                : c == 'L' ? "lead_id"
		                : c == 's' ? "since"
		                : c == 'u' ? "until"
		                           : NULL;
		size_t n = strlen(path);
		if (!q || vacsctl_escape(optarg, esc, sizeof(esc)) ||
		    n + strlen(q) + strlen(esc) + 3 > sizeof(path))
			goto usage;
		snprintf(path + n, sizeof(path) - n, "%c%s=%s", sep, q, esc);
		sep = '&';
	}
	if (optind != argc)
		goto usage;
	return vacsctl_api(v, "GET", path, NULL, show_list, NULL);
usage:
	fprintf(stderr, "usage: vacsctl calls list [--limit N] [--after CURSOR] "
	                "[--direction inbound|outbound] [--lead ID] [--since T] [--until T]\n");
	return VACSCTL_USAGE;
}

static void show_call(const json_t *j, const void *arg)
{
	(void)arg;
	static const struct vacsctl_col ev_cols[] = {
	    {"SEQ", "seq"},
	    {"TS", "ts"},
	    {"EVENT", "event"},
	    {"DETAIL", "detail"},
	};
	const char *k;
	json_t *x;
	char cell[1024];
	size_t w = 0;
	json_object_foreach((json_t *)j, k, x)
	{
		if (strcmp(k, "events") && strlen(k) > w)
			w = strlen(k);
	}
	json_object_foreach((json_t *)j, k, x)
	{
		if (strcmp(k, "events"))
			printf("%-*s  %s\n", (int)w + 1, k, vacsctl_cell(x, cell, sizeof(cell)));
	}
	json_t *ev = json_object_get(j, "events");
	if (json_array_size(ev)) {
		printf("\n");
		vacsctl_table(stdout, ev, ev_cols, sizeof(ev_cols) / sizeof(ev_cols[0]));
	}
}

/* "/v1/calls/<escaped id><tail>" into path; -1 when the id does not fit. */
static int call_path(char *path, size_t len, const char *id, const char *tail)
{
	char esc[512];
	if (!id[0] || vacsctl_escape(id, esc, sizeof(esc)))
		return -1;
	snprintf(path, len, "/v1/calls/%s%s", esc, tail);
	return 0;
}

static int calls_show(const struct vacsctl *v, int argc, char **argv)
{
	char path[600];
	if (argc != 2 || call_path(path, sizeof(path), argv[1], "")) {
		fprintf(stderr, "usage: vacsctl calls show ID\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "GET", path, NULL, show_call, NULL);
}

static void show_done(const json_t *j, const void *arg)
{
	static const struct vacsctl_col cols[] = {{"id", "id"}, {"status", "status"}};
	if (json_is_object(j))
		vacsctl_fields(stdout, j, cols, sizeof(cols) / sizeof(cols[0]));
	else
		printf("%s\n", (const char *)arg);
}

static int calls_hangup(const struct vacsctl *v, int argc, char **argv)
{
	char path[600];
	if (argc != 2 || call_path(path, sizeof(path), argv[1], "/hangup")) {
		fprintf(stderr, "usage: vacsctl calls hangup ID\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "POST", path, NULL, show_done, "hung up");
}

static int calls_transfer(const struct vacsctl *v, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"queue", required_argument, NULL, 'q'},
	    {"reason", required_argument, NULL, 'r'},
	    {"summary", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	json_t *o = json_object();
	char path[600];
	int c, rc = VACSCTL_USAGE;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *k = c == 'q'   ? "queue"
		                : c == 'r' ? "reason"
		                : c == 's' ? "summary"
		                           : NULL;
		if (!k)
			goto usage;
		json_object_set_new(o, k, json_string(optarg));
	}
	if (optind != argc - 1 || !json_object_get(o, "queue") ||
	    call_path(path, sizeof(path), argv[optind], "/transfer"))
		goto usage;
	rc = vacsctl_api(v, "POST", path, o, show_done, "transferring");
	json_decref(o);
	return rc;
usage:
	fprintf(stderr, "usage: vacsctl calls transfer ID --queue Q [--reason R] [--summary S]\n");
	json_decref(o);
	return rc;
}

static const struct vacsctl_cmd calls_cmds[] = {
    {"calls", "list",
     "[--limit N] [--after CURSOR] [--direction D] [--lead ID] [--since T] [--until T]",
     "GET /v1/calls: calls, newest first (vacsd checks the values: limit 1-200,\n"
     "inbound|outbound, ISO 8601 times); prints the next page's --after",
     calls_list},
    {"calls", "show", "ID", "GET /v1/calls/ID: one call and its events", calls_show},
    {"calls", "hangup", "ID", "POST /v1/calls/ID/hangup: ends a call in progress", calls_hangup},
    {"calls", "transfer", "ID --queue Q [--reason R] [--summary S]",
     "POST /v1/calls/ID/transfer: hands a call in progress to a queue of agents", calls_transfer},
};
VACSCTL_COMMANDS(calls_cmds)
