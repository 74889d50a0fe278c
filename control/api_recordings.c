/* GET /v1/recordings/{call_id}: the call's recording (WAV) as vacsd wrote it, for the
 * dashboard's player (read scope); when the local file is gone (delete_after_upload, or
 * another node) and the object is in S3, a 302 to a presigned GET URL of it
 * (REC_PRESIGN_S seconds), so the bytes go from S3 to the browser, not through vacsd. */
#include "control/api_recordings.h"

#include "control/control.h"
#include "control/uploader.h"
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
#define REC_PRESIGN_S 300u                /* life of a presigned link: enough to start playing */
#define REC_SQL                                                                                    \
	"SELECT path, CASE WHEN uploaded_at IS NOT NULL THEN s3_bucket END AS s3_bucket,"          \
	" CASE WHEN uploaded_at IS NOT NULL THEN s3_key END AS s3_key FROM recordings WHERE"       \
	" call_id = $1 AND result = 0 AND closed_at IS NOT NULL ORDER BY id DESC LIMIT 1"

/* Answers 302 to the S3 copy of the row's object; 0, or -ENOENT when there is none (not
 * uploaded, or uploads are not configured on this node). */
static int redirect_s3(uint64_t token, const json_t *row)
{
	char *url =
	    ctl_s3_presign(json_string_value(json_object_get(row, "s3_bucket")),
	                   json_string_value(json_object_get(row, "s3_key")), REC_PRESIGN_S);
	if (!url)
		return -ENOENT;
	char *h = mem_alloc(strlen(url) + 64);
	if (h) {
		sprintf(h, "Location: %s\r\nCache-Control: no-store\r\n", url);
		ctl_reply_hdrs(token, 302, "text/plain", h, NULL, 0);
	} else {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	}
	mem_free(h);
	mem_free(url);
	return 0;
}

/* Runs on the db thread: reading one local file there is bounded by REC_MAX_BYTES. */
static void on_rows(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	const json_t *row = json_array_get(rows, 0);
	const char *path = json_string_value(json_object_get(row, "path"));
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
		if (row && redirect_s3(token, row) == 0)
			goto out;
		ctl_reply_error(
		    token, 404, "not_found",
		    "no recording of this call (not recorded, or neither on this node nor in S3)",
		    "call_id");
		goto out;
	}
	if ((uint64_t)st.st_size > REC_MAX_BYTES) {
		if (redirect_s3(token, row) == 0)
			goto out;
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
