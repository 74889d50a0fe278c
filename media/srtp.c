/* SRTP/SRTCP through libsrtp2: SDES suites, key generation, in-place transforms. */
#include "media/media_int.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include <srtp2/srtp.h>

static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned lib_refs;

static const struct {
	enum media_srtp_suite suite;
	const char *name;
	size_t key_len;
} suites[] = {
    {MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80, "AES_CM_128_HMAC_SHA1_80", 30},
    {MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32, "AES_CM_128_HMAC_SHA1_32", 30},
    {MEDIA_SRTP_AEAD_AES_128_GCM, "AEAD_AES_128_GCM", 28},
    {MEDIA_SRTP_AEAD_AES_256_GCM, "AEAD_AES_256_GCM", 44},
};

enum media_srtp_suite media_srtp_suite_parse(const char *name)
{
	if (!name)
		return MEDIA_SRTP_NONE;
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (strcmp(name, suites[i].name) == 0)
			return suites[i].suite;
	}
	return MEDIA_SRTP_NONE;
}

/* Returns NULL for MEDIA_SRTP_NONE and unknown values. */
const char *media_srtp_suite_name(enum media_srtp_suite s)
{
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (suites[i].suite == s)
			return suites[i].name;
	}
	return NULL;
}

size_t media_srtp_key_len(enum media_srtp_suite s)
{
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (suites[i].suite == s)
			return suites[i].key_len;
	}
	return 0;
}

int media_srtp_keygen(enum media_srtp_suite s, uint8_t *key)
{
	size_t len = media_srtp_key_len(s);
	size_t got = 0;
	if (len == 0)
		return -EINVAL;
	while (got < len) {
		ssize_t r = getrandom(key + got, len - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	return 0;
}

int media_srtp_lib_init(void)
{
	int err = 0;
	pthread_mutex_lock(&lib_lock);
	if (lib_refs == 0 && srtp_init() != srtp_err_status_ok)
		err = -EIO;
	else
		lib_refs++;
	pthread_mutex_unlock(&lib_lock);
	return err;
}

void media_srtp_lib_close(void)
{
	pthread_mutex_lock(&lib_lock);
	if (lib_refs > 0 && --lib_refs == 0)
		srtp_shutdown();
	pthread_mutex_unlock(&lib_lock);
}

static int set_policy(srtp_policy_t *pol, enum media_srtp_suite s)
{
	switch (s) {
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80:
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtcp);
		return 0;
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32:
		/* RFC 4568 §6.2.2: the short tag is for SRTP only; SRTCP keeps 80 bits. */
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol->rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtcp);
		return 0;
	case MEDIA_SRTP_AEAD_AES_128_GCM:
		/* RFC 7714: 16-byte tag for both. */
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtp);
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtcp);
		return 0;
	case MEDIA_SRTP_AEAD_AES_256_GCM:
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&pol->rtp);
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&pol->rtcp);
		return 0;
	case MEDIA_SRTP_NONE:
		break;
	}
	return -EINVAL;
}

int media_srtp_create(struct srtp_ctx_t_ **out, enum media_srtp_suite suite, const uint8_t *key,
                      int outbound)
{
	srtp_policy_t pol;
	unsigned char k[SRTP_MAX_KEY_LEN];
	srtp_t ctx = NULL;
	int err;

	memset(&pol, 0, sizeof(pol));
	err = set_policy(&pol, suite);
	if (err)
		return err;
	memset(k, 0, sizeof(k));
	memcpy(k, key, media_srtp_key_len(suite));
	pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
	pol.key = k;
	pol.window_size = 0;     /* libsrtp default (128) */
	pol.allow_repeat_tx = 1; /* a retransmitted packet is protected again, not refused */
	pol.next = NULL;
	srtp_err_status_t st = srtp_create(&ctx, &pol);
	explicit_bzero(k, sizeof(k));
	if (st != srtp_err_status_ok)
		return st == srtp_err_status_alloc_fail ? -ENOMEM : -EIO;
	*out = ctx;
	return 0;
}

void media_srtp_destroy(struct srtp_ctx_t_ *ctx)
{
	if (ctx)
		srtp_dealloc(ctx);
}

static int map_status(srtp_err_status_t st)
{
	switch (st) {
	case srtp_err_status_ok:
		return 0;
	case srtp_err_status_auth_fail:
		return -EBADMSG;
	case srtp_err_status_replay_fail:
	case srtp_err_status_replay_old:
		return -EALREADY;
	default:
		return -EIO;
	}
}

int media_srtp_protect(struct srtp_ctx_t_ *ctx, uint8_t *buf, size_t *len)
{
	int l = (int)*len;
	int err = map_status(srtp_protect(ctx, buf, &l));
	if (!err)
		*len = (size_t)l;
	return err;
}

int media_srtp_unprotect(struct srtp_ctx_t_ *ctx, uint8_t *buf, size_t *len)
{
	int l = (int)*len;
	int err = map_status(srtp_unprotect(ctx, buf, &l));
	if (!err)
		*len = (size_t)l;
	return err;
}

int media_srtp_protect_rtcp(struct srtp_ctx_t_ *ctx, uint8_t *buf, size_t *len)
{
	int l = (int)*len;
	int err = map_status(srtp_protect_rtcp(ctx, buf, &l));
	if (!err)
		*len = (size_t)l;
	return err;
}

int media_srtp_unprotect_rtcp(struct srtp_ctx_t_ *ctx, uint8_t *buf, size_t *len)
{
	int l = (int)*len;
	int err = map_status(srtp_unprotect_rtcp(ctx, buf, &l));
	if (!err)
		*len = (size_t)l;
	return err;
}
