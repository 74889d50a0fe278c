/* vacsctl keys create|list|revoke: API keys (POST/GET/DELETE /v1/keys, admin scope). */
#include "control/vacsctl/vacsctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const struct vacsctl_col key_cols[] = {
    {"ID", "id"},
    {"NAME", "name"},
    {"PREFIX", "prefix"},
    {"SCOPES", "scopes"},
    {"CREATED", "created_at"},
    {"LAST USED", "last_used_at"},
    {"REVOKED", "revoked_at"},
};

static void show_created(const json_t *j, const void *arg)
{
	(void)arg;
	static const struct vacsctl_col cols[] = {
	    {"id", "id"},         {"name", "name"},          {"prefix", "prefix"},
	    {"scopes", "scopes"}, {"created", "created_at"}, {"key", "key"},
	};
	vacsctl_fields(stdout, j, cols, sizeof(cols) / sizeof(cols[0]));
	fprintf(stderr, "vacsctl: the key is shown only now: store it safely\n");
}

static int keys_create(const struct vacsctl *v, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"scope", required_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	json_t *scopes = json_array();
	int c, rc = VACSCTL_USAGE;
	optind = 0;
	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c != 's')
			goto usage;
		/* --scope read --scope admin, or --scope read,admin */
		for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ","))
			json_array_append_new(scopes, json_string(tok));
	}
	if (optind != argc - 1 || !json_array_size(scopes))
		goto usage;
	json_t *body = json_pack("{s:s, s:O}", "name", argv[optind], "scopes", scopes);
	rc = body ? vacsctl_api(v, "POST", "/v1/keys", body, show_created, NULL) : VACSCTL_FAIL;
	json_decref(body);
	json_decref(scopes);
	return rc;
usage:
	fprintf(stderr, "usage: vacsctl keys create NAME --scope SCOPE [--scope SCOPE]...\n"
	                "  SCOPE: read, calls:write, campaigns, admin\n");
	json_decref(scopes);
	return rc;
}

static void show_list(const json_t *j, const void *arg)
{
	(void)arg;
	vacsctl_table(stdout, json_object_get(j, "keys"), key_cols,
	              sizeof(key_cols) / sizeof(key_cols[0]));
}

static int keys_list(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vacsctl keys list\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "GET", "/v1/keys", NULL, show_list, NULL);
}

static void show_revoked(const json_t *j, const void *arg)
{
	(void)j;
	printf("key %s revoked\n", (const char *)arg);
}

static int keys_revoke(const struct vacsctl *v, int argc, char **argv)
{
	char path[128], id[64];
	if (argc != 2 || vacsctl_escape(argv[1], id, sizeof(id))) {
		fprintf(stderr, "usage: vacsctl keys revoke ID\n");
		return VACSCTL_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/keys/%s", id);
	return vacsctl_api(v, "DELETE", path, NULL, show_revoked, argv[1]);
}

static const struct vacsctl_cmd keys_cmds[] = {
    {"keys", "create", "NAME --scope SCOPE [--scope SCOPE]...",
     "POST /v1/keys: a new API key with the scopes (read, calls:write, campaigns,\n"
     "admin); prints it once",
     keys_create},
    {"keys", "list", "", "GET /v1/keys: every key, by prefix (never the key itself)", keys_list},
    {"keys", "revoke", "ID", "DELETE /v1/keys/ID: the key stops working at once", keys_revoke},
};
VACSCTL_COMMANDS(keys_cmds)
