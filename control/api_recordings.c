/* GET /v1/recordings/{call_id}: the call's recording (WAV) as vacsd wrote it, for the
 * dashboard's player (read scope). */
#include "control/api_recordings.h"

#include "control/control.h"
#include "core/mem.h"
#include "db/db.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_MAX_BYTES (64u * 1024 * 1024) /* about an hour of 8 kHz stereo 16-bit */
#define REC_SQL                                                                                    \
	"SELECT path FROM recordings WHERE call_id = $1 AND result = 0 AND closed_at IS NOT NULL"  \
	" ORDER BY id DESC LIMIT 1"

/* Runs on the db thread: reading one local file there is bounded by REC_MAX_BYTES. */
static void on_rows(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	const char *path = json_string_value(json_object_get(json_array_get(rows, 0), "path"));
	struct stat st;
	char *b = NULL;
	int fd = -1;
	if (rc) {
		ctl_reply_error(token, 503, "store_unavailable", "PostgreSQL is not available",
		                NULL);
		goto out;
	}
	if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) ||
	    !S_ISREG(st.st_mode)) {
		ctl_reply_error(token, 404, "not_found",
		                "no recording of this call on this node (uploaded or not recorded)",
		                "call_id");
		goto out;
	}
	if ((uint64_t)st.st_size > REC_MAX_BYTES) {
		ctl_reply_error(token, 413, "payload_too_large",
		                "the recording is too large to serve here: use its S3 copy", NULL);
		goto out;
	}
	b = mem_alloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (b && got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (!b || got != (size_t)st.st_size) {
		ctl_reply_error(token, 500, "internal", "cannot read the recording", NULL);
		goto out;
	}
	ctl_reply(token, 200, "audio/wav", b, got);
	b = NULL;
out:
	if (fd >= 0)
		close(fd);
	mem_free(b);
	json_decref(rows);
}

static void on_recording(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *id = ctl_req_path(rq) + strlen("/v1/recordings/");
	if (!*id || strlen(id) > 128 || strchr(id, '/')) {
		ctl_reply_error(token, 404, "not_found", "no such call", "call_id");
		return;
	}
	const char *p[1] = {id};
	int rc = db_query(REC_SQL, p, 1, on_rows, (void *)(uintptr_t)token);
	if (rc)
		on_rows((void *)(uintptr_t)token, rc, NULL);
}

int api_recordings_init(void)
{
	return ctl_route_add("GET", "/v1/recordings/", CTL_SCOPE_READ, 0, 30000, on_recording,
	                     NULL);
}
