/* GET /v1/admin/checks: the external services a node depends on, tried now with the
 * configured credentials (S3 bucket, VAPI key, WhatsApp token), so an operator learns of a
 * wrong key before the first upload, call or reply does. docs/first-hour.md. */
#ifndef VACS_CONTROL_CHECKS_H
#define VACS_CONTROL_CHECKS_H

/* What is tried; strings are copied. NULL or "" leaves that check "off". S3 is the
 * uploader's bucket and credentials (control/uploader.h), on when uploads are. */
struct ctl_checks_config {
	const char *vapi_url, *vapi_key;
	const char *graph_url, *wa_token, *wa_phone_number_id;
	unsigned timeout_ms; /* per check; 0 = 5000 */
};

/* Registers the route (admin scope). Main thread, after ctl_s3_init and before ctl_init;
 * the checks run on the out thread (ctl_out_init). 0 or -errno. */
int ctl_checks_init(const struct ctl_checks_config *cfg);
/* Frees what init kept. After ctl_close and ctl_out_close. */
void ctl_checks_close(void);

#endif
