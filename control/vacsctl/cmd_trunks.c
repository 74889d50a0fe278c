/* vacsctl trunks: the SIP trunks and their nodes as vacsd sees them (GET /v1/trunks). */
#include "control/vacsctl/vacsctl.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* One row per node, the trunk's columns on its first node's row only. */
static void show_trunks(const json_t *j, const void *arg)
{
	(void)arg;
	static const struct vacsctl_col cols[] = {
	    {"TRUNK", "name"},     {"TYPE", "type"}, {"STATUS", "status"}, {"CALLS", "calls"},
	    {"REGISTERED", "reg"}, {"NODE", "node"}, {"UP", "up"},
	};
	json_t *rows = json_array();
	size_t i, k;
	json_t *t, *n;
	json_array_foreach(json_object_get(j, "trunks"), i, t)
	{
		char calls[48], node[300];
		json_t *reg = json_object_get(t, "registration");
		json_int_t max = json_integer_value(json_object_get(t, "max_calls"));
		if (max)
			snprintf(calls, sizeof(calls),
			         "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(t, "active_calls")), max);
		else
			snprintf(calls, sizeof(calls), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(t, "active_calls")));
		json_array_foreach(json_object_get(t, "nodes"), k, n)
		{
			snprintf(node, sizeof(node), "%s:%" JSON_INTEGER_FORMAT,
			         json_string_value(json_object_get(n, "host")),
			         json_integer_value(json_object_get(n, "port")));
			json_t *row = json_object();
			if (k == 0) {
				json_object_set(row, "name", json_object_get(t, "name"));
				json_object_set(row, "type", json_object_get(t, "type"));
				json_object_set(row, "status", json_object_get(t, "status"));
				json_object_set_new(row, "calls", json_string(calls));
				json_object_set_new(row, "reg",
				                    json_is_object(reg)
				                        ? json_string(json_is_true(json_object_get(
				                                          reg, "registered"))
				                                          ? "yes"
				                                          : "no")
				                        : json_null());
			}
			json_object_set_new(row, "node", json_string(node));
			json_object_set_new(
			    row, "up",
			    json_string(json_is_true(json_object_get(n, "up")) ? "yes" : "no"));
			json_array_append_new(rows, row);
		}
	}
	vacsctl_table(stdout, rows, cols, sizeof(cols) / sizeof(cols[0]));
	json_decref(rows);
	printf("calls in progress: %" JSON_INTEGER_FORMAT "%s\n",
	       json_integer_value(json_object_get(j, "calls")),
	       json_is_true(json_object_get(j, "draining")) ? " (draining)" : "");
}

static int trunks(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vacsctl trunks\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "GET", "/v1/trunks", NULL, show_trunks, NULL);
}

static const struct vacsctl_cmd trunk_cmds[] = {
    {"trunks", NULL, "", "GET /v1/trunks: each trunk's status, calls and nodes (up or down)",
     trunks},
};
VACSCTL_COMMANDS(trunk_cmds)
