/* vacsctl users create|list|disable: dashboard accounts (POST/GET/PATCH /v1/users, admin). */
#include "control/vacsctl/vacsctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct vacsctl_col user_cols[] = {
    {"ID", "id"},
    {"EMAIL", "email"},
    {"ROLE", "role"},
    {"CREATED", "created_at"},
    {"DISABLED", "disabled_at"},
    {"LAST SIGN-IN", "last_login_at"},
};
#define N_COLS (sizeof(user_cols) / sizeof(user_cols[0]))

static void show_user(const json_t *j, const void *arg)
{
	(void)arg;
	vacsctl_fields(stdout, j, user_cols, N_COLS);
}

/* The password: $VACS_USER_PASSWORD, else the first line of stdin (never argv). */
static int read_password(char *buf, size_t len)
{
	const char *env = getenv("VACS_USER_PASSWORD");
	if (env && *env) {
		if (strlen(env) >= len)
			return -1;
		snprintf(buf, len, "%s", env);
		return 0;
	}
	if (!fgets(buf, (int)len, stdin))
		return -1;
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? 0 : -1;
}

static int users_create(const struct vacsctl *v, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"role", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	const char *role = "viewer";
	char pw[512];
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "r:", opts, NULL)) != -1) {
		if (c != 'r')
			goto usage;
		role = optarg;
	}
	if (optind != argc - 1)
		goto usage;
	if (read_password(pw, sizeof(pw))) {
		fprintf(stderr,
		        "vacsctl: no password: set VACS_USER_PASSWORD or give it on stdin\n");
		return VACSCTL_USAGE;
	}
	json_t *body =
	    json_pack("{s:s, s:s, s:s}", "email", argv[optind], "role", role, "password", pw);
	memset(pw, 0, sizeof(pw));
	int rc = body ? vacsctl_api(v, "POST", "/v1/users", body, show_user, NULL) : VACSCTL_FAIL;
	json_decref(body);
	return rc;
usage:
	fprintf(stderr, "usage: vacsctl users create EMAIL [--role viewer|admin]\n"
	                "  the password comes from $VACS_USER_PASSWORD or stdin\n");
	return VACSCTL_USAGE;
}

static void show_list(const json_t *j, const void *arg)
{
	(void)arg;
	vacsctl_table(stdout, json_object_get(j, "users"), user_cols, N_COLS);
}

static int users_list(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vacsctl users list\n");
		return VACSCTL_USAGE;
	}
	return vacsctl_api(v, "GET", "/v1/users", NULL, show_list, NULL);
}

static int users_disable(const struct vacsctl *v, int argc, char **argv)
{
	char path[96], id[48];
	if (argc != 2 || vacsctl_escape(argv[1], id, sizeof(id))) {
		fprintf(stderr, "usage: vacsctl users disable ID\n");
		return VACSCTL_USAGE;
	}
	snprintf(path, sizeof(path), "/v1/users/%s", id);
	json_t *body = json_pack("{s:b}", "disabled", 1);
	int rc = vacsctl_api(v, "PATCH", path, body, show_user, NULL);
	json_decref(body);
	return rc;
}

static const struct vacsctl_cmd users_cmds[] = {
    {"users", "create", "EMAIL [--role viewer|admin]",
     "create a dashboard account (password from $VACS_USER_PASSWORD or stdin)", users_create},
    {"users", "list", "", "list dashboard accounts", users_list},
    {"users", "disable", "ID", "disable an account and end its sessions", users_disable},
};
VACSCTL_COMMANDS(users_cmds)
