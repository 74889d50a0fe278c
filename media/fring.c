/* Single-producer single-consumer ring of fixed-size audio frames (media worker -> ai thread). */
#include "media/buf_int.h"

#include "core/mem.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define CACHE_LINE 64

/* head is written only by the producer, tail only by the consumer; each sits on its own
 * cache line (explicit padding: mem_alloc only promises malloc alignment). Positions are
 * free-running uint32_t: head - tail is the fill even across wrap, since n <= 2^16. */
struct media_fring {
	uint32_t frame_bytes;
	uint32_t n;      /* frames, power of two */
	uint32_t mask;   /* n - 1 */
	uint32_t stride; /* a slot: the frame's stamp (8 bytes), then the frame */
	char pad0[CACHE_LINE];
	_Atomic uint32_t head;    /* next slot to fill; producer */
	_Atomic uint64_t pushed;  /* producer only writes */
	_Atomic uint64_t dropped; /* producer only writes */
	char pad1[CACHE_LINE];
	_Atomic uint32_t tail; /* next slot to take; consumer */
	char pad2[CACHE_LINE];
	uint8_t data[]; /* n * stride */
};

/* A counter with a single writer: a plain load/store pair, no locked read-modify-write. */
static inline void bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

int media_fring_create(struct media_fring **out, size_t frame_bytes, unsigned n_frames)
{
	if (!out || frame_bytes == 0 || frame_bytes > MEDIA_FRING_FRAME_MAX || n_frames < 2 ||
	    n_frames > 65536 || (n_frames & (n_frames - 1)) != 0)
		return -EINVAL;
	size_t stride = (sizeof(uint64_t) + frame_bytes + 7u) & ~(size_t)7u;
	struct media_fring *r = mem_zalloc(sizeof(*r) + (size_t)n_frames * stride);
	if (!r)
		return -ENOMEM;
	r->frame_bytes = (uint32_t)frame_bytes;
	r->stride = (uint32_t)stride;
	r->n = n_frames;
	r->mask = n_frames - 1;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	atomic_init(&r->pushed, 0);
	atomic_init(&r->dropped, 0);
	*out = r;
	return 0;
}

void media_fring_destroy(struct media_fring *r)
{
	mem_free(r);
}

int media_fring_push(struct media_fring *r, const uint8_t *frame, uint64_t stamp)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	/* acquire: the consumer's copy out of the slot we may reuse is complete */
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (head - tail >= r->n) {
		bump(&r->dropped);
		return -ENOBUFS;
	}
	uint8_t *slot = r->data + (size_t)(head & r->mask) * r->stride;
	memcpy(slot, &stamp, sizeof(stamp));
	memcpy(slot + sizeof(stamp), frame, r->frame_bytes);
	/* release: the frame content is visible before the new head */
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	bump(&r->pushed);
	return 0;
}

int media_fring_pop(struct media_fring *r, uint8_t *frame, uint64_t *stamp)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	if (head == tail)
		return 0;
	const uint8_t *slot = r->data + (size_t)(tail & r->mask) * r->stride;
	if (stamp)
		memcpy(stamp, slot, sizeof(*stamp));
	memcpy(frame, slot + sizeof(uint64_t), r->frame_bytes);
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return 1;
}

unsigned media_fring_count(const struct media_fring *cr)
{
	struct media_fring *r = (struct media_fring *)cr; /* atomic loads only */
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint32_t n = head - tail;
	/* the two loads are not one snapshot: clamp what a racing pop/push can produce */
	return n > r->n ? r->n : n;
}

size_t media_fring_frame_bytes(const struct media_fring *r)
{
	return r->frame_bytes;
}

void media_fring_stats(const struct media_fring *cr, struct media_fring_stats *st)
{
	struct media_fring *r = (struct media_fring *)cr;
	st->pushed = atomic_load_explicit(&r->pushed, memory_order_relaxed);
	st->dropped = atomic_load_explicit(&r->dropped, memory_order_relaxed);
}
