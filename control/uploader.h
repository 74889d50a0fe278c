/* S3 uploads of closed recordings (announced in <spool>/recordings.jsonl), with SigV4,
 * retries, a recordings row per object, restart-safe. docs/store.md "Recordings in S3". */
#ifndef VACS_CONTROL_UPLOADER_H
#define VACS_CONTROL_UPLOADER_H

struct ctl_s3_config {
	const char *endpoint;   /* "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:9000";
	                         * NULL or "" = https://s3.<region>.amazonaws.com */
	const char *region;     /* "us-east-1" */
	const char *bucket;     /* NULL or "" = uploads off */
	const char *access_key; /* values, read by conf from the variables it names */
	const char *secret_key;
	int path_style;          /* <endpoint>/<bucket>/<key>, else <bucket>.<host>/<key> */
	int delete_after_upload; /* remove the local file once the object and row exist */
	int use_db;              /* PostgreSQL configured: write a recordings row per object */
	const char *spool_dir;   /* recordings.jsonl and s3-uploaded.jsonl live here */
	unsigned attempts;       /* PUTs per file before giving up until the next start */
	unsigned backoff_ms;     /* wait before the 2nd attempt; doubles each time */
	unsigned backoff_max_ms;
	unsigned timeout_ms; /* one PUT */
	unsigned scan_ms;    /* how often recordings.jsonl is read for new lines */
};

/* Registers the scan tick on the out thread (control/outbound.h). Main thread, before
 * ctl_out_init; strings are copied. 0 (also when the bucket is empty: off), -EINVAL
 * (no credentials), -ENOMEM. */
int ctl_s3_init(const struct ctl_s3_config *cfg);
/* After ctl_out_close: frees what is left. */
void ctl_s3_close(void);

/* The bucket uploads go to, NULL when uploads are off. Any thread after ctl_s3_init. */
const char *ctl_s3_bucket(void);
/* The bucket's URL (endpoint and addressing style as the uploads use them), mem_alloc'd;
 * NULL when uploads are off or memory is short. */
char *ctl_s3_bucket_url(void);
/* A HEAD of the bucket signed with the upload credentials, not sent yet (GET
 * /v1/admin/checks asks it); NULL when uploads are off or memory is short. Out thread. */
struct ctl_out *ctl_s3_head_bucket(void);

/* The object key of a recording: recordings/YYYY/MM/DD/<call_id>/<file name>, the date
 * from `closed` (ISO 8601, UTC), characters outside [A-Za-z0-9._-] of the call id and file
 * name replaced by '_'. Returns a mem_alloc'd string or NULL (bad date, OOM). Any thread. */
char *ctl_s3_key(const char *call_id, const char *path, const char *closed);

/* A presigned GET URL of an object (SigV4 query-string signing, UNSIGNED-PAYLOAD, only
 * the host header signed), valid expires_s seconds from now (unix seconds), the signature
 * computed here with OpenSSL (libcurl signs only what it sends). endpoint as in
 * ctl_s3_config (no trailing '/'); key is encoded here. Returns a mem_alloc'd URL or NULL
 * (bad argument, OOM). Any thread. */
char *ctl_s3_presign_url(const char *endpoint, int path_style, const char *region,
                         const char *access_key, const char *secret_key, const char *bucket,
                         const char *key, long long now, unsigned expires_s);
/* The same with the configured endpoint, region and keys (ctl_s3_init): NULL when uploads
 * are off. Read-only after init, so any thread between ctl_s3_init and ctl_s3_close. */
char *ctl_s3_presign(const char *bucket, const char *key, unsigned expires_s);

#endif
