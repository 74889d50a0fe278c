/* Call recorder: stereo WAV files written by one writer thread, fed by lock-free rings. */
#include "media/wav_int.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * Threads. The control thread creates a recorder and hands it to the writer through a
 * mutex-protected "incoming" list (the worker never touches that lock). The media worker is
 * the single producer of the recorder's ring: it fills a slot and publishes it with a
 * release store of `head`; the writer is the single consumer and frees slots with a release
 * store of `tail`. Neither side waits for the other: a full ring drops the frame. The writer
 * wakes on its eventfd (finish, close, a ring half full) or every MEDIA_RECORDER_POLL_MS.
 * Once `finished` is set (release) the producer is gone; the writer drains the rest,
 * patches the header, closes the file, calls done_cb and frees the recorder.
 */

#define WAV_HDR_LEN 44u
#define RING_MASK   (MEDIA_RECORDER_RING_FRAMES - 1u)
/* Bytes the writer gathers before a write(2). */
#define WBUF_BYTES (64u * 1024u)
/* Most sample data bytes a RIFF file can describe after its 44-byte header. */
#define DATA_MAX (0xFFFFFFFFu - 36u - 1u)

_Static_assert((MEDIA_RECORDER_RING_FRAMES & RING_MASK) == 0, "ring size is a power of two");

struct media_recorder {
	struct media_recorder *next; /* the writer's lists */
	int fd;
	unsigned rate;
	unsigned slot_samples; /* samples per side in one slot: 20 ms */
	uint64_t owner;
	int16_t *ring;    /* MEDIA_RECORDER_RING_FRAMES slots of slot_samples stereo pairs */
	uint16_t *slot_n; /* samples per side in each slot */
	atomic_uint head; /* next slot the producer fills */
	atomic_uint tail; /* next slot the writer reads */
	atomic_int finished;
	atomic_uint_fast64_t dropped; /* frames */
	/* Writer thread only: */
	uint64_t data_bytes;
	int err;        /* first I/O error, -errno */
	char path[256]; /* for the log line, truncated */
};

static struct {
	int running;
	pthread_t thread;
	int efd;
	pthread_mutex_t lock; /* protects incoming */
	struct media_recorder *incoming;
	struct media_recorder *active; /* writer thread only */
	atomic_int stop;
	atomic_int stall;
	media_recorder_done_cb done_cb;
	void *arg;
	uint8_t *wbuf;
	struct metric *m_dropped, *m_errors, *m_done;
} rec = {.efd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static void *writer_main(void *unused);

static void wake(void)
{
	uint64_t one = 1;
	/* Non-blocking eventfd: a counter at its limit only means the writer is awake. */
	ssize_t r = write(rec.efd, &one, sizeof(one));
	(void)r;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A canonical 44-byte stereo 16-bit header; data_bytes 0xFFFFFFFF = not known yet (what a
 * reader takes as "to the end of the file" if we never get to patch it). */
static void build_header(uint8_t *h, unsigned rate, uint32_t data_bytes)
{
	memcpy(h, "RIFF", 4);
	put_le32(h + 4, data_bytes == 0xFFFFFFFFu ? 0xFFFFFFFFu : data_bytes + 36u);
	memcpy(h + 8, "WAVEfmt ", 8);
	put_le32(h + 16, 16);
	put_le16(h + 20, 1); /* PCM */
	put_le16(h + 22, 2);
	put_le32(h + 24, rate);
	put_le32(h + 28, rate * 4u);
	put_le16(h + 32, 4);
	put_le16(h + 34, 16);
	memcpy(h + 36, "data", 4);
	put_le32(h + 40, data_bytes);
}

/* Writes len bytes; *done (may be NULL) gets what reached the file even on failure. */
static int write_all(int fd, const uint8_t *p, size_t len, uint64_t *done)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
		if (done)
			*done += (uint64_t)w;
	}
	return 0;
}

static void recorder_free(struct media_recorder *r)
{
	if (!r)
		return;
	mem_free(r->ring);
	mem_free(r->slot_n);
	mem_free(r);
}

int media_recorder_init(media_recorder_done_cb done_cb, void *arg)
{
	if (rec.running)
		return -EALREADY;
	int err = 0;
	rec.m_dropped = metric_get(METRIC_COUNTER, "vacs_media_recorder_dropped_frames_total",
	                           "Recorded 20 ms frames dropped (writer behind or disk error)");
	rec.m_errors = metric_get(METRIC_COUNTER, "vacs_media_recorder_errors_total",
	                          "Recordings that ended with an I/O error");
	rec.m_done = metric_get(METRIC_COUNTER, "vacs_media_recordings_total",
	                        "Recordings finished (file closed)");
	rec.wbuf = mem_alloc(WBUF_BYTES);
	if (!rec.wbuf)
		return -ENOMEM;
	rec.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rec.efd < 0) {
		err = -errno;
		goto fail;
	}
	rec.done_cb = done_cb;
	rec.arg = arg;
	rec.incoming = rec.active = NULL;
	atomic_store(&rec.stop, 0);
	atomic_store(&rec.stall, 0);
	int e = pthread_create(&rec.thread, NULL, writer_main, NULL);
	if (e) {
		err = -e;
		goto fail;
	}
	rec.running = 1;
	return 0;
fail:
	if (rec.efd >= 0)
		close(rec.efd);
	rec.efd = -1;
	mem_free(rec.wbuf);
	rec.wbuf = NULL;
	return err;
}

void media_recorder_close(void)
{
	if (!rec.running)
		return;
	atomic_store(&rec.stall, 0);
	atomic_store_explicit(&rec.stop, 1, memory_order_release);
	wake();
	pthread_join(rec.thread, NULL);
	close(rec.efd);
	rec.efd = -1;
	mem_free(rec.wbuf);
	rec.wbuf = NULL;
	rec.running = 0;
}

int media_recorder_create(struct media_recorder **out, const char *path, unsigned rate,
                          uint64_t owner)
{
	if (!rec.running || (rate != 8000 && rate != 16000))
		return -EINVAL;
	int err = 0;
	struct media_recorder *r = mem_zalloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	r->rate = rate;
	r->slot_samples = rate / 50u;
	r->owner = owner;
	r->ring =
	    mem_alloc((size_t)MEDIA_RECORDER_RING_FRAMES * r->slot_samples * 2u * sizeof(int16_t));
	r->slot_n = mem_zalloc(MEDIA_RECORDER_RING_FRAMES * sizeof(uint16_t));
	if (!r->ring || !r->slot_n) {
		err = -ENOMEM;
		goto fail;
	}
	atomic_init(&r->head, 0u);
	atomic_init(&r->tail, 0u);
	atomic_init(&r->finished, 0);
	atomic_init(&r->dropped, 0u);
	strncpy(r->path, path, sizeof(r->path) - 1);
	r->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
	if (r->fd < 0) {
		err = -errno;
		goto fail;
	}
	uint8_t h[WAV_HDR_LEN];
	build_header(h, rate, 0xFFFFFFFFu);
	err = write_all(r->fd, h, sizeof(h), NULL);
	if (err) {
		close(r->fd);
		unlink(path); /* ours: O_EXCL created it just now */
		r->fd = -1;
		goto fail;
	}
	pthread_mutex_lock(&rec.lock);
	r->next = rec.incoming;
	rec.incoming = r;
	pthread_mutex_unlock(&rec.lock);
	*out = r;
	return 0;
fail:
	recorder_free(r);
	return err;
}

void media_recorder_push(struct media_recorder *r, const int16_t *left, const int16_t *right,
                         unsigned n)
{
	unsigned head = atomic_load_explicit(&r->head, memory_order_relaxed);
	unsigned tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	while (n) {
		unsigned k = n < r->slot_samples ? n : r->slot_samples;
		if (head - tail >= MEDIA_RECORDER_RING_FRAMES) {
			tail = atomic_load_explicit(&r->tail, memory_order_acquire);
			if (head - tail >= MEDIA_RECORDER_RING_FRAMES) {
				atomic_fetch_add_explicit(&r->dropped, 1u, memory_order_relaxed);
				metric_inc(rec.m_dropped);
				goto next;
			}
		}
		unsigned slot = head & RING_MASK;
		int16_t *d = r->ring + (size_t)slot * r->slot_samples * 2u;
		for (unsigned i = 0; i < k; i++) {
			d[2 * i] = left ? left[i] : 0;
			d[2 * i + 1] = right ? right[i] : 0;
		}
		r->slot_n[slot] = (uint16_t)k;
		head++;
		atomic_store_explicit(&r->head, head, memory_order_release);
		/* Half full: the writer is behind its poll; nudge it (never blocks). */
		if (head - tail == MEDIA_RECORDER_RING_FRAMES / 2u)
			wake();
	next:
		if (left)
			left += k;
		if (right)
			right += k;
		n -= k;
	}
}

void media_recorder_finish(struct media_recorder *r)
{
	if (!r)
		return;
	atomic_store_explicit(&r->finished, 1, memory_order_release);
	wake();
}

uint64_t media_recorder_dropped(const struct media_recorder *r)
{
	return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

unsigned media_recorder_backlog(const struct media_recorder *r)
{
	return atomic_load_explicit(&r->head, memory_order_acquire) -
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

void media_recorder_test_stall(int on)
{
	atomic_store(&rec.stall, on ? 1 : 0);
}

/* ---- Writer thread ---- */

static void io_failed(struct media_recorder *r, int err)
{
	if (r->err)
		return;
	r->err = err;
	log_warn("media", "recording %s: %s; the rest of the call is not recorded", r->path,
	         strerror(-err));
}

/* Writes the gathered buffer of `frames` slots; on failure the slots that did not reach
 * the file whole count as dropped. */
static void flush(struct media_recorder *r, size_t fill, unsigned frames)
{
	if (!fill)
		return;
	uint64_t before = r->data_bytes;
	int e = write_all(r->fd, rec.wbuf, fill, &r->data_bytes);
	if (e) {
		io_failed(r, e);
		unsigned whole = (unsigned)((r->data_bytes - before) * frames / fill);
		atomic_fetch_add_explicit(&r->dropped, frames - whole, memory_order_relaxed);
		metric_add(rec.m_dropped, frames - whole);
	}
}

/* Writes every queued slot of r; after an I/O error they are dropped and counted. Slots
 * are handed back (tail) only once written or counted, so a producer that sees an empty
 * ring also sees the final drop count. */
static void drain(struct media_recorder *r)
{
	unsigned head = atomic_load_explicit(&r->head, memory_order_acquire);
	unsigned tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t fill = 0;
	unsigned frames = 0;
	while (tail != head) {
		unsigned slot = tail & RING_MASK;
		const int16_t *s = r->ring + (size_t)slot * r->slot_samples * 2u;
		size_t bytes = (size_t)r->slot_n[slot] * 4u;
		if (!r->err &&
		    (fill + bytes > WBUF_BYTES || r->data_bytes + fill + bytes > DATA_MAX)) {
			flush(r, fill, frames);
			fill = 0;
			frames = 0;
			atomic_store_explicit(&r->tail, tail, memory_order_release);
			if (!r->err && r->data_bytes + bytes > DATA_MAX)
				io_failed(r, -EFBIG); /* a RIFF file cannot say more */
		}
		if (r->err) {
			atomic_fetch_add_explicit(&r->dropped, 1u, memory_order_relaxed);
			metric_inc(rec.m_dropped);
		} else {
			for (size_t i = 0; i < (size_t)r->slot_n[slot] * 2u; i++)
				put_le16(rec.wbuf + fill + 2u * i, (uint16_t)s[i]);
			fill += bytes;
			frames++;
		}
		tail++;
	}
	if (!r->err)
		flush(r, fill, frames);
	atomic_store_explicit(&r->tail, tail, memory_order_release);
}

/* Patches the sizes, syncs and closes; reports and frees r. */
static void finalize(struct media_recorder *r)
{
	uint8_t h[WAV_HDR_LEN];
	build_header(h, r->rate, (uint32_t)r->data_bytes);
	/* Patched after a write error too: the header then describes what did reach the
	 * file, which stays a valid WAV. */
	errno = 0;
	if (pwrite(r->fd, h + 4, 4, 4) != 4 || pwrite(r->fd, h + 40, 4, 40) != 4)
		io_failed(r, errno ? -errno : -EIO);
	if (fsync(r->fd) != 0 && !r->err)
		io_failed(r, -errno);
	if (close(r->fd) != 0 && !r->err)
		io_failed(r, -errno);
	r->fd = -1;
	metric_inc(rec.m_done);
	if (r->err)
		metric_inc(rec.m_errors);
	if (rec.done_cb)
		rec.done_cb(r->owner, r->err, r->data_bytes, rec.arg);
	recorder_free(r);
}

static void *writer_main(void *unused)
{
	(void)unused;
	struct pollfd pfd = {.fd = rec.efd, .events = POLLIN};
	for (;;) {
		(void)poll(&pfd, 1, (int)MEDIA_RECORDER_POLL_MS);
		uint64_t v;
		ssize_t rd = read(rec.efd, &v, sizeof(v));
		(void)rd;
		int stop = atomic_load_explicit(&rec.stop, memory_order_acquire);

		pthread_mutex_lock(&rec.lock);
		while (rec.incoming) {
			struct media_recorder *r = rec.incoming;
			rec.incoming = r->next;
			r->next = rec.active;
			rec.active = r;
		}
		pthread_mutex_unlock(&rec.lock);

		if (atomic_load(&rec.stall) && !stop)
			continue;
		struct media_recorder **pp = &rec.active;
		while (*pp) {
			struct media_recorder *r = *pp;
			/* Read finished before draining: every push came before it. */
			int fin = atomic_load_explicit(&r->finished, memory_order_acquire);
			drain(r);
			if (fin || stop) {
				*pp = r->next;
				finalize(r);
			} else {
				pp = &r->next;
			}
		}
		if (stop)
			break;
	}
	return NULL;
}
