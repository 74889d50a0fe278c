/* Upstream binary WebSocket frames built by vacsd itself (RFC 6455 §5.2, client side),
 * masked with keys from a userspace CSPRNG instead of a read from the kernel per frame. */
#include "vapi/vapi_int.h"

#include <sodium.h>
#include <string.h>

/*
 * RFC 6455 §5.3 wants each frame's masking key fresh and unpredictable ("a strong source
 * of entropy"). lws reads 4 bytes from /dev/urandom for every frame it writes, one system
 * call per 20 ms frame per call. Here a ChaCha20 stream (libsodium's
 * randombytes_buf_deterministic) keyed from the kernel's getrandom gives the keys: each
 * refill draws a new seed and a pool of keys from the current seed (the old seed is
 * overwritten, so earlier keys cannot be recomputed from the state), and every
 * VAPI_MASK_REKEY refills the seed comes from the kernel again.
 */

#define VAPI_MASK_REKEY 64u /* refills between seeds from the kernel (64 x 128 frames) */

void vapi_mask_rng_init(struct vapi_mask_rng *r)
{
	memset(r, 0, sizeof(*r));
	r->pos = sizeof(r->pool); /* empty: the first key refills (and seeds) */
}

static void refill(struct vapi_mask_rng *r)
{
	unsigned char out[32 + sizeof(r->pool)];
	if (r->refills++ % VAPI_MASK_REKEY == 0)
		randombytes_buf(r->seed, sizeof(r->seed));
	randombytes_buf_deterministic(out, sizeof(out), r->seed);
	memcpy(r->seed, out, sizeof(r->seed));
	memcpy(r->pool, out + sizeof(r->seed), sizeof(r->pool));
	sodium_memzero(out, sizeof(out));
	r->pos = 0;
}

size_t vapi_ws_frame_hdr_len(size_t len)
{
	return len < 126 ? 2u + 4u : len <= 0xffff ? 4u + 4u : 10u + 4u;
}

size_t vapi_ws_frame_binary(struct vapi_mask_rng *r, unsigned char *out, size_t len)
{
	size_t h = vapi_ws_frame_hdr_len(len);
	unsigned char *p = out + h;
	out[0] = 0x82; /* FIN, binary */
	if (len < 126) {
		out[1] = (unsigned char)(0x80u | len);
	} else if (len <= 0xffff) {
		out[1] = 0x80 | 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
	} else {
		out[1] = 0x80 | 127;
		for (unsigned i = 0; i < 8; i++)
			out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	if (r->pos + 4 > sizeof(r->pool))
		refill(r);
	unsigned char *key = out + h - 4;
	memcpy(key, r->pool + r->pos, 4);
	memset(r->pool + r->pos, 0, 4);
	r->pos += 4;
	/* XOR 8 bytes at a time: the key repeats every 4 bytes, so an 8-byte step keeps the
	 * byte i <-> key[i % 4] pairing. */
	uint32_t k4;
	memcpy(&k4, key, 4);
	uint64_t k8 = (uint64_t)k4 | (uint64_t)k4 << 32;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		v ^= k8;
		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] ^= key[i & 3];
	return h + len;
}
