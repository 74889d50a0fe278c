/* SRTP/SRTCP (RFC 3711, RFC 7714) on OpenSSL libcrypto: SDES suites, keys, in-place transforms. */
#include "media/media_int.h"

#include "core/mem.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

/*
 * Why not libsrtp2: Debian's build uses NSS, which creates PK11 contexts per packet
 * (5-14 mallocs per protect/unprotect). Here every key schedule and HMAC state is made once
 * in media_srtp_create(); per packet only an IV is set on an existing EVP context and two
 * SHA-1 states are copied by value. Nothing on the packet path allocates or locks
 * (tests/unit/test_media.c counts every malloc in the process around 10,000 packets).
 *
 * Wire formats:
 *   SRTP  AES-CM:  header | E(payload)   | tag (10 or 4)      tag = HMAC(header|E(payload)|ROC)
 *   SRTCP AES-CM:  8 bytes | E(rest)      | E|index | tag (10) tag = HMAC(all before it)
 *   SRTP  GCM:     header | E(payload)+tag (16)               AAD = header
 *   SRTCP GCM:     8 bytes | E(rest)+tag (16) | E|index        AAD = 8 bytes | E|index
 */

#define REPLAY_WINDOW  128u /* replay window, packets (RFC 3711 §3.3.2 asks for >= 64) */
#define MAX_PKT        0xffffu
#define RTCP_INDEX_MAX 0x7fffffffu
#define RTCP_E_BIT     0x80000000u
#define SHA1_LEN       20u
#define GCM_TAG_LEN    16u

static const struct {
	enum media_srtp_suite suite;
	const char *name;
	size_t key_len;  /* master key, bytes */
	size_t salt_len; /* master and session salt, bytes */
	size_t rtp_tag;  /* SRTP tag bytes; SRTCP uses 10 (HMAC) or 16 (GCM) */
	int aead;
} suites[] = {
    {MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80, "AES_CM_128_HMAC_SHA1_80", 16, 14, 10, 0},
    /* The short tag is for SRTP only: SRTCP never uses HMAC-SHA1 below 80 bits (RFC 3711
     * §5.2, RFC 4568 §6.2.2). */
    {MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32, "AES_CM_128_HMAC_SHA1_32", 16, 14, 4, 0},
    {MEDIA_SRTP_AEAD_AES_128_GCM, "AEAD_AES_128_GCM", 16, 12, 16, 1},
    {MEDIA_SRTP_AEAD_AES_256_GCM, "AEAD_AES_256_GCM", 32, 12, 16, 1},
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))

/* Replay state of one index space (RFC 3711 §3.3.2): the highest index accepted and a
 * bitmap of the REPLAY_WINDOW indices at and below it. For SRTP the top also carries the
 * ROC and s_l of Appendix A: top = ROC * 2^16 + s_l. */
struct replay_win {
	uint64_t top;
	uint64_t mask[REPLAY_WINDOW / 64]; /* bit k of the whole: index top - k was accepted */
	int seen;                          /* 0 until the first packet */
};

/* Per-SSRC state (ssrc_any_* semantics: each new SSRC starts a fresh stream). */
struct stream {
	uint32_t ssrc;
	int in_use;
	uint64_t stamp; /* last use, for eviction */
	struct replay_win rtp, rtcp;
	uint32_t rtcp_next; /* outbound: next SRTCP index */
};

/* Session keys of one of SRTP / SRTCP. */
struct session_keys {
	EVP_CIPHER_CTX *cipher; /* AES-CTR or AES-GCM holding the session key; IV set per packet */
	uint8_t salt[14];       /* session salt (12 bytes used by GCM) */
	SHA_CTX hmac_in;        /* HMAC-SHA1: state after the key ^ ipad block (AES-CM only) */
	SHA_CTX hmac_out;       /* and after the key ^ opad block */
	size_t tag_len;
};

struct media_srtp {
	enum media_srtp_suite suite;
	int aead;
	int outbound;
	uint64_t clock; /* counts packets, stamps streams */
	struct session_keys rtp, rtcp;
	struct stream streams[MEDIA_SRTP_STREAMS];
};

static int suite_index(enum media_srtp_suite s)
{
	for (size_t i = 0; i < N_SUITES; i++) {
		if (suites[i].suite == s)
			return (int)i;
	}
	return -1;
}

enum media_srtp_suite media_srtp_suite_parse(const char *name)
{
	if (!name)
		return MEDIA_SRTP_NONE;
	for (size_t i = 0; i < N_SUITES; i++) {
		if (strcmp(name, suites[i].name) == 0)
			return suites[i].suite;
	}
	return MEDIA_SRTP_NONE;
}

/* Returns NULL for MEDIA_SRTP_NONE and unknown values. */
const char *media_srtp_suite_name(enum media_srtp_suite s)
{
	int i = suite_index(s);
	return i < 0 ? NULL : suites[i].name;
}

size_t media_srtp_key_len(enum media_srtp_suite s)
{
	int i = suite_index(s);
	return i < 0 ? 0 : suites[i].key_len + suites[i].salt_len;
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

/* ---- HMAC-SHA1 from precomputed states ----
 * The low-level SHA1_* calls are deprecated in OpenSSL 3, but the EVP replacements cannot
 * reuse a keyed state without allocating: EVP_MD_CTX_copy_ex and EVP_MAC_init(NULL key)
 * both duplicate the provider context (1 and 2 mallocs per call, measured on 3.0). SHA_CTX
 * is a plain struct, copied by value, and SHA1_Update still uses SHA-NI/AVX. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static void hmac_setup(struct session_keys *k, const uint8_t *key, size_t key_len)
{
	uint8_t pad[64];
	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < key_len; i++)
		pad[i] ^= key[i];
	SHA1_Init(&k->hmac_in);
	SHA1_Update(&k->hmac_in, pad, sizeof(pad));
	memset(pad, 0x5c, sizeof(pad));
	for (size_t i = 0; i < key_len; i++)
		pad[i] ^= key[i];
	SHA1_Init(&k->hmac_out);
	SHA1_Update(&k->hmac_out, pad, sizeof(pad));
	OPENSSL_cleanse(pad, sizeof(pad));
}

/* mac = HMAC-SHA1(a | b), full 20 bytes. */
static void hmac_sha1(const struct session_keys *k, const uint8_t *a, size_t a_len,
                      const uint8_t *b, size_t b_len, uint8_t mac[SHA1_LEN])
{
	SHA_CTX c = k->hmac_in;
	SHA1_Update(&c, a, a_len);
	if (b_len)
		SHA1_Update(&c, b, b_len);
	SHA1_Final(mac, &c);
	c = k->hmac_out;
	SHA1_Update(&c, mac, SHA1_LEN);
	SHA1_Final(mac, &c);
}

#pragma GCC diagnostic pop

/* ---- AES ---- */

/* In-place AES-CTR over p[0..n) from the 16-byte counter block iv. EVP counts in all 128
 * bits, RFC 3711 in the low 16: the same for any packet (< 2^12 blocks). */
static int ctr_xor(EVP_CIPHER_CTX *c, const uint8_t *iv, uint8_t *p, size_t n)
{
	int out;
	if (n == 0)
		return 0;
	if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(c, p, &out, p, (int)n) != 1)
		return -EIO;
	return 0;
}

/* In-place AES-GCM with a 12-byte iv over p[0..n); AAD is aad1 | aad2. Encrypting writes the
 * tag, decrypting checks it (-EBADMSG). */
static int gcm_run(EVP_CIPHER_CTX *c, const uint8_t *iv, int enc, const uint8_t *aad1, size_t n1,
                   const uint8_t *aad2, size_t n2, uint8_t *p, size_t n, uint8_t *tag)
{
	int out;
	if (EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, enc) != 1)
		return -EIO;
	if (n1 && EVP_CipherUpdate(c, NULL, &out, aad1, (int)n1) != 1)
		return -EIO;
	if (n2 && EVP_CipherUpdate(c, NULL, &out, aad2, (int)n2) != 1)
		return -EIO;
	if (n && EVP_CipherUpdate(c, p, &out, p, (int)n) != 1)
		return -EIO;
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_LEN, tag) != 1)
		return -EIO;
	if (EVP_CipherFinal_ex(c, p + n, &out) != 1)
		return enc ? -EIO : -EBADMSG;
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_LEN, tag) != 1)
		return -EIO;
	return 0;
}

/* RFC 3711 §4.3.1 and §4.3.3, key derivation rate 0: the AES-CM PRF keyed with the master
 * key over x = master_salt XOR (label * 2^48), IV = x * 2^16. A 12-byte GCM master salt
 * (RFC 7714 §11) is padded with two zero bytes on the right, as libsrtp2 does
 * (tests/unit/test_srtp.c checks byte-identical output). */
static int kdf(const EVP_CIPHER *prf, const uint8_t *mkey, const uint8_t *msalt, size_t salt_len,
               uint8_t label, uint8_t *out, size_t n)
{
	uint8_t iv[16];
	int err = -EIO, len;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	memset(iv, 0, sizeof(iv));
	memcpy(iv, msalt, salt_len);
	iv[7] ^= label;
	memset(out, 0, n);
	if (EVP_EncryptInit_ex(c, prf, NULL, mkey, iv) == 1 &&
	    EVP_EncryptUpdate(c, out, &len, out, (int)n) == 1)
		err = 0;
	EVP_CIPHER_CTX_free(c);
	return err;
}

/* Derives one of SRTP (labels 0, 1, 2) or SRTCP (3, 4, 5) and keys its cipher context. */
static int keys_init(struct session_keys *k, int si, const uint8_t *master, uint8_t label0,
                     size_t tag_len)
{
	const size_t klen = suites[si].key_len, slen = suites[si].salt_len;
	const uint8_t *msalt = master + klen;
	const EVP_CIPHER *prf = klen == 32 ? EVP_aes_256_ctr() : EVP_aes_128_ctr();
	const EVP_CIPHER *enc;
	uint8_t ke[32], ka[SHA1_LEN];
	int err;

	if (suites[si].aead)
		enc = klen == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
	else
		enc = EVP_aes_128_ctr();
	k->tag_len = tag_len;
	err = kdf(prf, master, msalt, slen, label0, ke, klen);
	if (!err)
		err = kdf(prf, master, msalt, slen, (uint8_t)(label0 + 2), k->salt, slen);
	if (!err && !suites[si].aead) {
		err = kdf(prf, master, msalt, slen, (uint8_t)(label0 + 1), ka, sizeof(ka));
		if (!err)
			hmac_setup(k, ka, sizeof(ka));
	}
	if (err)
		goto out;
	k->cipher = EVP_CIPHER_CTX_new();
	if (!k->cipher) {
		err = -ENOMEM;
		goto out;
	}
	/* enc = 1 for both: CTR is symmetric; GCM gets the direction with each IV. */
	if (EVP_CipherInit_ex(k->cipher, enc, NULL, ke, NULL, 1) != 1)
		err = -EIO;
out:
	OPENSSL_cleanse(ke, sizeof(ke));
	OPENSSL_cleanse(ka, sizeof(ka));
	return err;
}

int media_srtp_create(struct media_srtp **out, enum media_srtp_suite suite, const uint8_t *key,
                      int outbound)
{
	int si = suite_index(suite);
	struct media_srtp *c;
	int err;

	if (si < 0)
		return -EINVAL;
	c = mem_zalloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->suite = suite;
	c->aead = suites[si].aead;
	c->outbound = !!outbound;
	err = keys_init(&c->rtp, si, key, 0, suites[si].rtp_tag);
	if (!err)
		err = keys_init(&c->rtcp, si, key, 3, c->aead ? GCM_TAG_LEN : 10);
	if (err) {
		media_srtp_destroy(c);
		return err;
	}
	*out = c;
	return 0;
}

void media_srtp_destroy(struct media_srtp *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->rtp.cipher);
	EVP_CIPHER_CTX_free(c->rtcp.cipher);
	OPENSSL_cleanse(c, sizeof(*c));
	mem_free(c);
}

/* ---- Streams and replay windows ---- */

static struct stream *stream_find(struct media_srtp *c, uint32_t ssrc)
{
	for (unsigned i = 0; i < MEDIA_SRTP_STREAMS; i++) {
		if (c->streams[i].in_use && c->streams[i].ssrc == ssrc)
			return &c->streams[i];
	}
	return NULL;
}

/* A fresh stream for ssrc, in a free slot or in place of the least recently used. */
static struct stream *stream_add(struct media_srtp *c, uint32_t ssrc)
{
	struct stream *s = &c->streams[0];
	for (unsigned i = 0; i < MEDIA_SRTP_STREAMS; i++) {
		if (!c->streams[i].in_use) {
			s = &c->streams[i];
			break;
		}
		if (c->streams[i].stamp < s->stamp)
			s = &c->streams[i];
	}
	memset(s, 0, sizeof(*s));
	s->ssrc = ssrc;
	s->in_use = 1;
	return s;
}

static int window_bit(const struct replay_win *r, uint64_t k)
{
	return (int)((r->mask[k / 64] >> (k % 64)) & 1u);
}

/* 0 when index idx may be accepted, -EALREADY when it was seen or is behind the window. */
static int replay_check(const struct replay_win *r, uint64_t idx)
{
	if (!r->seen || idx > r->top)
		return 0;
	if (r->top - idx >= REPLAY_WINDOW || window_bit(r, r->top - idx))
		return -EALREADY;
	return 0;
}

/* Records an accepted index (after authentication). */
static void replay_add(struct replay_win *r, uint64_t idx)
{
	uint64_t d;
	if (!r->seen || idx >= r->top + REPLAY_WINDOW) {
		memset(r->mask, 0, sizeof(r->mask));
		r->top = idx;
		r->seen = 1;
	} else if (idx > r->top) {
		/* Shift the bitmap up by d (< REPLAY_WINDOW) positions, most significant word
		 * first. */
		d = idx - r->top;
		for (unsigned w = REPLAY_WINDOW / 64; w-- > 0;) {
			uint64_t v = 0;
			if (w >= d / 64) {
				unsigned src = w - (unsigned)(d / 64), sh = (unsigned)(d % 64);
				v = r->mask[src] << sh;
				if (sh && src > 0)
					v |= r->mask[src - 1] >> (64 - sh);
			}
			r->mask[w] = v;
		}
		r->top = idx;
	}
	d = r->top - idx;
	r->mask[d / 64] |= (uint64_t)1 << (d % 64);
}

/* RFC 3711 Appendix A: the 48-bit index of seq given the highest index so far. The ROC is
 * never guessed below 0 (a packet from before the first one is taken as ahead of it), as
 * libsrtp does. */
static uint64_t rtp_index(const struct replay_win *r, uint16_t seq)
{
	if (!r->seen)
		return seq;
	uint32_t roc = (uint32_t)(r->top >> 16), v = roc;
	int s_l = (int)(uint16_t)r->top, s = seq;
	if (s_l < 32768) {
		if (s - s_l > 32768 && roc > 0)
			v = roc - 1;
	} else if (s_l - 32768 > s) {
		v = roc + 1;
	}
	return (uint64_t)v << 16 | seq;
}

/* Bytes of RTP header (fixed, CSRCs, extension) if it fits in len, else 0. */
static size_t rtp_hdr_len(const uint8_t *buf, size_t len)
{
	size_t h;
	if (len < MEDIA_RTP_HDR_MIN || (buf[0] >> 6) != 2)
		return 0;
	h = MEDIA_RTP_HDR_MIN + 4u * (buf[0] & 0x0fu);
	if (buf[0] & 0x10) {
		if (h + 4 > len)
			return 0;
		h += 4 + 4u * media_get16(buf + h + 2);
	}
	return h <= len ? h : 0;
}

/* ---- IVs ---- */

/* AES-CM (RFC 3711 §4.1.1): (k_s * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16). */
static void cm_iv(uint8_t iv[16], const uint8_t *salt, uint32_t ssrc, uint64_t idx)
{
	memcpy(iv, salt, 14);
	iv[14] = iv[15] = 0;
	for (unsigned i = 0; i < 4; i++)
		iv[4 + i] ^= (uint8_t)(ssrc >> (24 - 8 * i));
	for (unsigned i = 0; i < 6; i++)
		iv[8 + i] ^= (uint8_t)(idx >> (40 - 8 * i));
}

/* GCM (RFC 7714 §8.1, §9.1): salt XOR (0x0000 | SSRC | 32-bit hi | 16-bit lo), where hi|lo is
 * ROC|SEQ for SRTP and 0x0000|index for SRTCP: the same 48-bit index layout as above. */
static void gcm_iv(uint8_t iv[12], const uint8_t *salt, uint32_t ssrc, uint64_t idx)
{
	memcpy(iv, salt, 12);
	for (unsigned i = 0; i < 4; i++)
		iv[2 + i] ^= (uint8_t)(ssrc >> (24 - 8 * i));
	for (unsigned i = 0; i < 6; i++)
		iv[6 + i] ^= (uint8_t)(idx >> (40 - 8 * i));
}

/* ---- SRTP ---- */

int media_srtp_protect(struct media_srtp *c, uint8_t *buf, size_t *len)
{
	const size_t n = *len, h = rtp_hdr_len(buf, n), tl = c->rtp.tag_len;
	uint8_t iv[16], mac[SHA1_LEN], roc[4];
	int err;

	if (!c->outbound)
		return -EINVAL;
	if (h == 0 || n > MAX_PKT)
		return -EBADMSG;
	uint32_t ssrc = media_get32(buf + 8);
	struct stream *s = stream_find(c, ssrc);
	if (!s)
		s = stream_add(c, ssrc);
	s->stamp = ++c->clock;
	uint64_t idx = rtp_index(&s->rtp, media_get16(buf + 2));
	/* A repeat inside the window is protected again (a retransmission); older is refused. */
	if (s->rtp.seen && idx + REPLAY_WINDOW <= s->rtp.top)
		return -EALREADY;
	if (c->aead) {
		gcm_iv(iv, c->rtp.salt, ssrc, idx);
		err = gcm_run(c->rtp.cipher, iv, 1, buf, h, NULL, 0, buf + h, n - h, buf + n);
	} else {
		cm_iv(iv, c->rtp.salt, ssrc, idx);
		err = ctr_xor(c->rtp.cipher, iv, buf + h, n - h);
		if (!err) {
			media_put32(roc, (uint32_t)(idx >> 16));
			hmac_sha1(&c->rtp, buf, n, roc, sizeof(roc), mac);
			memcpy(buf + n, mac, tl);
		}
	}
	if (err)
		return err;
	if (!s->rtp.seen || idx > s->rtp.top) {
		s->rtp.top = idx;
		s->rtp.seen = 1;
	}
	*len = n + tl;
	return 0;
}

int media_srtp_unprotect(struct media_srtp *c, uint8_t *buf, size_t *len)
{
	const size_t n = *len, tl = c->rtp.tag_len;
	uint8_t iv[16], mac[SHA1_LEN], roc[4];
	struct replay_win fresh;
	size_t h;
	int err;

	if (c->outbound)
		return -EINVAL;
	if (n < MEDIA_RTP_HDR_MIN + tl || n > MAX_PKT)
		return -EBADMSG;
	h = rtp_hdr_len(buf, n - tl);
	if (h == 0)
		return -EBADMSG;
	uint32_t ssrc = media_get32(buf + 8);
	struct stream *s = stream_find(c, ssrc);
	memset(&fresh, 0, sizeof(fresh));
	const struct replay_win *r = s ? &s->rtp : &fresh;
	uint64_t idx = rtp_index(r, media_get16(buf + 2));
	err = replay_check(r, idx);
	if (err)
		return err;
	if (c->aead) {
		gcm_iv(iv, c->rtp.salt, ssrc, idx);
		err = gcm_run(c->rtp.cipher, iv, 0, buf, h, NULL, 0, buf + h, n - tl - h,
		              buf + n - tl);
	} else {
		media_put32(roc, (uint32_t)(idx >> 16));
		hmac_sha1(&c->rtp, buf, n - tl, roc, sizeof(roc), mac);
		if (CRYPTO_memcmp(mac, buf + n - tl, tl) != 0)
			return -EBADMSG;
		cm_iv(iv, c->rtp.salt, ssrc, idx);
		err = ctr_xor(c->rtp.cipher, iv, buf + h, n - tl - h);
	}
	if (err)
		return err;
	/* Authentic: only now may a new SSRC take a slot. */
	if (!s)
		s = stream_add(c, ssrc);
	s->stamp = ++c->clock;
	replay_add(&s->rtp, idx);
	*len = n - tl;
	return 0;
}

/* ---- SRTCP ---- */

int media_srtp_protect_rtcp(struct media_srtp *c, uint8_t *buf, size_t *len)
{
	const size_t n = *len, tl = c->rtcp.tag_len;
	uint8_t iv[16], mac[SHA1_LEN], e_idx[4];
	int err;

	if (!c->outbound)
		return -EINVAL;
	if (n < 8 || n > MAX_PKT || (buf[0] >> 6) != 2)
		return -EBADMSG;
	uint32_t ssrc = media_get32(buf + 4);
	struct stream *s = stream_find(c, ssrc);
	if (!s)
		s = stream_add(c, ssrc);
	s->stamp = ++c->clock;
	if (s->rtcp_next > RTCP_INDEX_MAX)
		return -EIO; /* 2^31 SRTCP packets: the key is used up (RFC 3711 §9.2) */
	uint32_t idx = s->rtcp_next;
	media_put32(e_idx, RTCP_E_BIT | idx);
	if (c->aead) {
		gcm_iv(iv, c->rtcp.salt, ssrc, idx);
		err = gcm_run(c->rtcp.cipher, iv, 1, buf, 8, e_idx, 4, buf + 8, n - 8, buf + n);
		if (!err)
			memcpy(buf + n + tl, e_idx, 4);
	} else {
		cm_iv(iv, c->rtcp.salt, ssrc, idx);
		err = ctr_xor(c->rtcp.cipher, iv, buf + 8, n - 8);
		if (!err) {
			memcpy(buf + n, e_idx, 4);
			hmac_sha1(&c->rtcp, buf, n + 4, NULL, 0, mac);
			memcpy(buf + n + 4, mac, tl);
		}
	}
	if (err)
		return err;
	s->rtcp_next++;
	*len = n + 4 + tl;
	return 0;
}

int media_srtp_unprotect_rtcp(struct media_srtp *c, uint8_t *buf, size_t *len)
{
	const size_t n = *len, tl = c->rtcp.tag_len;
	uint8_t iv[16], mac[SHA1_LEN];
	struct replay_win fresh;
	size_t end; /* end of the RTCP packet proper */
	const uint8_t *e_idx;
	int err;

	if (c->outbound)
		return -EINVAL;
	if (n < 8 + 4 + tl || n > MAX_PKT || (buf[0] >> 6) != 2)
		return -EBADMSG;
	end = n - 4 - tl;
	e_idx = c->aead ? buf + n - 4 : buf + end;
	uint32_t ei = media_get32(e_idx), idx = ei & RTCP_INDEX_MAX;
	int encrypted = (ei & RTCP_E_BIT) != 0;
	uint32_t ssrc = media_get32(buf + 4);
	struct stream *s = stream_find(c, ssrc);
	memset(&fresh, 0, sizeof(fresh));
	err = replay_check(s ? &s->rtcp : &fresh, idx);
	if (err)
		return err;
	if (c->aead) {
		/* Without the E bit the whole packet is authenticated only (RFC 7714 §9.2). */
		gcm_iv(iv, c->rtcp.salt, ssrc, idx);
		if (encrypted)
			err = gcm_run(c->rtcp.cipher, iv, 0, buf, 8, e_idx, 4, buf + 8, end - 8,
			              buf + end);
		else
			err = gcm_run(c->rtcp.cipher, iv, 0, buf, end, e_idx, 4, buf + end, 0,
			              buf + end);
	} else {
		hmac_sha1(&c->rtcp, buf, n - tl, NULL, 0, mac);
		if (CRYPTO_memcmp(mac, buf + n - tl, tl) != 0)
			return -EBADMSG;
		cm_iv(iv, c->rtcp.salt, ssrc, idx);
		if (encrypted)
			err = ctr_xor(c->rtcp.cipher, iv, buf + 8, end - 8);
	}
	if (err)
		return err;
	if (!s)
		s = stream_add(c, ssrc);
	s->stamp = ++c->clock;
	replay_add(&s->rtcp, idx);
	*len = end;
	return 0;
}
