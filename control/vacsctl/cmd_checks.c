/* vacsctl checks: the external services tried now with vacsd's own credentials
 * (GET /v1/admin/checks). Exit 1 when one of them failed, also with --json. */
#include "control/vacsctl/vacsctl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

struct seen {
	int json;   /* print the answer as it came */
	int failed; /* the answer says a check failed, or it is not one */
};

static void show_checks(const json_t *j, const void *arg)
{
	struct seen *s = (struct seen *)arg;
	s->failed = !json_is_true(json_object_get(j, "ok"));
	if (s->json) {
		char *t = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		if (t)
			printf("%s\n", t);
		free(t);
		return;
	}
	static const struct vacsctl_col cols[] = {
	    {"SERVICE", "name"}, {"RESULT", "result"}, {"MS", "ms"}, {"DETAIL", "detail"}};
	vacsctl_table(stdout, json_object_get(j, "checks"), cols, sizeof(cols) / sizeof(cols[0]));
}

static int checks(const struct vacsctl *v, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vacsctl checks\n");
		return VACSCTL_USAGE;
	}
	struct seen s = {.json = v->json, .failed = 1};
	struct vacsctl w = *v;
	w.json = 0; /* the answer comes to show_checks, which prints it either way */
	int rc = vacsctl_api(&w, "GET", "/v1/admin/checks", NULL, show_checks, &s);
	return rc == VACSCTL_OK && s.failed ? VACSCTL_FAIL : rc;
}

static const struct vacsctl_cmd check_cmds[] = {
    {"checks", NULL, "",
     "GET /v1/admin/checks (admin): S3, VAPI and the WhatsApp Graph API tried now with\n"
     "vacsd's credentials; exit 1 when one fails",
     checks},
};
VACSCTL_COMMANDS(check_cmds)
