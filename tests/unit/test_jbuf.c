/* Unit tests: inbound RTP jitter buffer (order, loss, wrap, pauses, restarts, ptime, delay). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "core/mem.h"
#include "media/buf_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- harness: packets with arrival times, a get every 20 ms (virtual time) ---- */

struct pk {
	uint16_t seq;
	uint32_t ts;
	uint64_t at_us;
	size_t len;
};

struct rec {
	enum media_jbuf_res res;
	uint16_t seq;
	uint32_t ts, dur;
	int has_next;
	uint16_t next_seq;
	uint64_t t_us;
	int64_t wait_us; /* PACKET: release time - arrival time */
};

#define MAXP 12000
static struct pk pks[MAXP];
static struct rec recs[MAXP * 2];
static unsigned n_recs;

static void payload_for(uint16_t seq, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq + i);
	if (len >= 2) {
		buf[0] = (uint8_t)(seq >> 8);
		buf[1] = (uint8_t)seq;
	}
}

static uint16_t payload_seq(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* In-order stream: n packets from seq0/ts0, one every ptime_ms, the first arriving at
 * t0_us. */
static unsigned make_stream(unsigned n, uint16_t seq0, uint32_t ts0, unsigned ptime_ms,
                            uint64_t t0_us)
{
	for (unsigned i = 0; i < n; i++) {
		pks[i].seq = (uint16_t)(seq0 + i);
		pks[i].ts = ts0 + i * ptime_ms * 8;
		pks[i].at_us = t0_us + (uint64_t)i * ptime_ms * 1000;
		pks[i].len = ptime_ms * 8;
	}
	return n;
}

static void drop_pk(unsigned *n, unsigned idx)
{
	memmove(&pks[idx], &pks[idx + 1], (*n - idx - 1) * sizeof(pks[0]));
	(*n)--;
}

static int pk_cmp(const void *a, const void *b)
{
	const struct pk *x = a, *y = b;
	return x->at_us < y->at_us ? -1 : x->at_us > y->at_us;
}

/* Ticks every 20 ms from t_start to t_end; puts what has arrived, then gets once. Records
 * every result. The payload of a PACKET must carry its own seq. */
static void run(struct media_jbuf *j, unsigned n, uint64_t t_start, uint64_t t_end)
{
	uint8_t buf[1500];
	unsigned pi = 0;
	n_recs = 0;
	for (uint64_t t = t_start; t < t_end; t += 20000) {
		while (pi < n && pks[pi].at_us <= t) {
			payload_for(pks[pi].seq, buf, pks[pi].len);
			media_jbuf_put(j, pks[pi].seq, pks[pi].ts, buf, pks[pi].len, pks[pi].at_us);
			pi++;
		}
		struct media_jbuf_frame f;
		struct rec *r = &recs[n_recs++];
		memset(r, 0, sizeof(*r));
		r->res = media_jbuf_get(j, t, &f);
		r->t_us = t;
		if (r->res == MEDIA_JBUF_PACKET) {
			assert_non_null(f.payload);
			assert_int_equal(payload_seq(f.payload), f.seq);
			for (unsigned i = 0; i < n; i++)
				if (pks[i].seq == f.seq)
					r->wait_us = (int64_t)t - (int64_t)pks[i].at_us;
		}
		if (r->res != MEDIA_JBUF_EMPTY) {
			r->seq = f.seq;
			r->ts = f.ts;
			r->dur = f.dur_ts;
		}
		if (r->res == MEDIA_JBUF_LOST && f.next) {
			r->has_next = 1;
			r->next_seq = payload_seq(f.next);
		}
	}
}

/* Index of the first non-EMPTY record. */
static unsigned first_out(void)
{
	for (unsigned i = 0; i < n_recs; i++)
		if (recs[i].res != MEDIA_JBUF_EMPTY)
			return i;
	fail();
	return 0;
}

static struct media_jbuf *mk(const struct media_jbuf_opts *o)
{
	struct media_jbuf *j = NULL;
	assert_int_equal(media_jbuf_create(&j, 8000, o), 0);
	return j;
}

/* ---- tests ---- */

static void test_jbuf_in_order(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(200, 1000, 5555, 20, 5000);
	run(j, n, 0, 5000000);
	unsigned i0 = first_out();
	/* held for the target (20 ms, no jitter yet): released at the first tick >= 25 ms */
	assert_int_equal(recs[i0].t_us, 40000);
	for (unsigned k = 0; k < 200; k++) {
		assert_int_equal(recs[i0 + k].res, MEDIA_JBUF_PACKET);
		assert_int_equal(recs[i0 + k].seq, 1000 + k);
		assert_int_equal(recs[i0 + k].ts, 5555 + 160 * k);
		assert_int_equal(recs[i0 + k].dur, 160);
		assert_int_equal(recs[i0 + k].wait_us, 35000);
	}
	for (unsigned k = i0 + 200; k < n_recs; k++)
		assert_int_equal(recs[k].res, MEDIA_JBUF_EMPTY);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.packets, 200);
	assert_int_equal(st.lost + st.skipped + st.dropped + st.duplicates, 0);
	assert_int_equal(st.jitter_us, 0);
	assert_int_equal(st.target_ms, 20);
	media_jbuf_destroy(j);
}

static void test_jbuf_reordered_swap(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(50, 7, 0, 20, 5000);
	/* 20 and 21 swap arrival times */
	uint64_t t = pks[20].at_us;
	pks[20].at_us = pks[21].at_us;
	pks[21].at_us = t;
	qsort(pks, n, sizeof(pks[0]), pk_cmp);
	run(j, n, 0, 2000000);
	unsigned i0 = first_out();
	for (unsigned k = 0; k < 50; k++) {
		assert_int_equal(recs[i0 + k].res, MEDIA_JBUF_PACKET);
		assert_int_equal(recs[i0 + k].seq, 7 + k);
	}
	media_jbuf_destroy(j);
}

static void test_jbuf_duplicate_and_old(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	uint8_t p[160];
	payload_for(1, p, 160);
	assert_int_equal(media_jbuf_put(j, 1, 0, p, 160, 0), 0);
	assert_int_equal(media_jbuf_put(j, 1, 0, p, 160, 1000), -EALREADY);
	assert_int_equal(media_jbuf_put(j, 2, 160, p, 160, 20000), 0);
	struct media_jbuf_frame f;
	assert_int_equal(media_jbuf_get(j, 20000, &f), MEDIA_JBUF_PACKET);
	assert_int_equal(f.seq, 1);
	/* already played */
	assert_int_equal(media_jbuf_put(j, 1, 0, p, 160, 21000), -EALREADY);
	assert_int_equal(media_jbuf_put(j, 2, 160, p, 160, 21000), -EALREADY);
	assert_int_equal(media_jbuf_put(j, 0xffff, 0, p, 160, 21000), -EALREADY);
	assert_int_equal(media_jbuf_put(j, 3, 320, p, 2000, 21000), -EMSGSIZE);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.duplicates, 4);
	assert_int_equal(st.received, 2);
	media_jbuf_destroy(j);
}

static void test_jbuf_single_loss(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(60, 100, 800, 20, 5000);
	drop_pk(&n, 30); /* seq 130 never arrives */
	run(j, n, 0, 2000000);
	unsigned i0 = first_out();
	for (unsigned k = 0; k < 60; k++) {
		const struct rec *r = &recs[i0 + k];
		assert_int_equal(r->seq, 100 + k);
		if (k == 30) {
			/* at the very tick seq 130 would have played */
			assert_int_equal(r->res, MEDIA_JBUF_LOST);
			assert_int_equal(r->t_us, recs[i0].t_us + 30 * 20000);
			assert_int_equal(r->ts, 800 + 30 * 160);
			assert_int_equal(r->dur, 160);
			assert_true(r->has_next); /* seq 131, for Opus FEC */
			assert_int_equal(r->next_seq, 131);
		} else {
			assert_int_equal(r->res, MEDIA_JBUF_PACKET);
		}
	}
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.lost, 1);
	/* the late packet, if it shows up now, is refused */
	uint8_t p[160];
	assert_int_equal(media_jbuf_put(j, 130, 800 + 30 * 160, p, 160, 3000000), -EALREADY);
	media_jbuf_destroy(j);
}

static void test_jbuf_burst_loss(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(60, 65000, 0, 20, 5000);
	for (int k = 0; k < 5; k++)
		drop_pk(&n, 20); /* 65020..65024 */
	run(j, n, 0, 2000000);
	unsigned i0 = first_out();
	/* one result per tick; the slots of the missing packets are silence (EMPTY: nothing
	 * says yet whether it is DTX) until the next packet arrives, then the last missing
	 * one is concealed (LOST, with that next packet for FEC); play goes on at the same
	 * ticks with no added delay */
	unsigned lost = 0;
	for (unsigned k = 0; k < 60; k++) {
		const struct rec *r = &recs[i0 + k];
		assert_int_equal(r->t_us, recs[i0].t_us + k * 20000);
		if (k >= 20 && k < 25) {
			if (r->res == MEDIA_JBUF_LOST) {
				lost++;
				assert_int_equal(r->seq, (uint16_t)(65000 + k));
				assert_int_equal(r->ts, k * 160);
				assert_int_equal(r->dur, 160);
				assert_int_equal(r->has_next, k == 24);
			} else {
				assert_int_equal(r->res, MEDIA_JBUF_EMPTY);
			}
		} else {
			assert_int_equal(r->res, MEDIA_JBUF_PACKET);
			assert_int_equal(r->seq, (uint16_t)(65000 + k));
			assert_int_equal(r->wait_us, 35000);
		}
	}
	assert_int_equal(lost, 1);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.lost + st.skipped, 5);
	media_jbuf_destroy(j);

	/* with a delay that covers the burst (ceiling-bound jitter), each missing packet is
	 * reported LOST at its own tick */
	struct media_jbuf_opts o = {.floor_ms = 100, .ceiling_ms = 100};
	j = mk(&o);
	n = make_stream(60, 100, 0, 20, 5000);
	for (int k = 0; k < 4; k++)
		drop_pk(&n, 20); /* 120..123 */
	run(j, n, 0, 2000000);
	i0 = first_out();
	for (unsigned k = 0; k < 60; k++) {
		const struct rec *r = &recs[i0 + k];
		assert_int_equal(r->seq, 100 + k);
		assert_int_equal(r->res, k >= 20 && k < 24 ? MEDIA_JBUF_LOST : MEDIA_JBUF_PACKET);
	}
	media_jbuf_destroy(j);
}

static void test_jbuf_seq_and_ts_wrap(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(100, 65500, 0xffffff00u, 20, 5000);
	/* and a swap right across the wrap: 65535 and 0 */
	uint64_t t = pks[35].at_us;
	pks[35].at_us = pks[36].at_us;
	pks[36].at_us = t;
	qsort(pks, n, sizeof(pks[0]), pk_cmp);
	run(j, n, 0, 3000000);
	unsigned i0 = first_out();
	for (unsigned k = 0; k < 100; k++) {
		assert_int_equal(recs[i0 + k].res, MEDIA_JBUF_PACKET);
		assert_int_equal(recs[i0 + k].seq, (uint16_t)(65500 + k));
		assert_int_equal(recs[i0 + k].ts, (uint32_t)(0xffffff00u + 160 * k));
		assert_int_equal(recs[i0 + k].dur, 160);
	}
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.lost + st.restarts + st.dropped, 0);
	media_jbuf_destroy(j);
}

static void test_jbuf_long_silence_then_resume(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(50, 10, 0, 20, 5000);
	/* DTX: the sender stops for 3 s; seq continues, ts jumps by the pause */
	for (unsigned i = 0; i < 50; i++) {
		pks[n + i] = pks[i];
		pks[n + i].seq = (uint16_t)(60 + i);
		pks[n + i].ts = 50 * 160 + 3000 * 8 + i * 160;
		pks[n + i].at_us = 5000 + 50 * 20000 + 3000000 + (uint64_t)i * 20000;
	}
	n = 100;
	run(j, n, 0, 6000000);
	unsigned i0 = first_out();
	for (unsigned k = 0; k < 50; k++)
		assert_int_equal(recs[i0 + k].seq, 10 + k);
	/* the pause is EMPTY (silence), never LOST */
	unsigned k = i0 + 50, empties = 0;
	while (recs[k].res == MEDIA_JBUF_EMPTY) {
		empties++;
		k++;
	}
	assert_true(empties >= 150);
	/* after the pause the first packet plays with the same delay as before */
	assert_int_equal(recs[k].wait_us, 35000);
	for (unsigned q = 0; q < 50; q++) {
		assert_int_equal(recs[k + q].res, MEDIA_JBUF_PACKET);
		assert_int_equal(recs[k + q].seq, 60 + q);
	}
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.lost + st.skipped + st.dropped, 0);
	media_jbuf_destroy(j);
}

static void test_jbuf_restart_on_jump_and_reset(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	uint8_t p[160];
	struct media_jbuf_frame f;
	uint64_t t = 0;
	uint16_t seq = 500;
	uint32_t ts = 0;
	for (int k = 0; k < 10; k++, t += 20000, seq++, ts += 160) {
		payload_for(seq, p, 160);
		assert_int_equal(media_jbuf_put(j, seq, ts, p, 160, t), 0);
		media_jbuf_get(j, t, &f);
	}
	/* one stray packet far away: kept aside, the stream goes on */
	payload_for(40000, p, 160);
	assert_int_equal(media_jbuf_put(j, 40000, 99, p, 160, t), -EAGAIN);
	payload_for(seq, p, 160);
	assert_int_equal(media_jbuf_put(j, seq, ts, p, 160, t), 0);
	/* a new source: two consecutive far packets restart the stream, the first kept */
	payload_for(30000, p, 160);
	assert_int_equal(media_jbuf_put(j, 30000, 123456, p, 160, t), -EAGAIN);
	payload_for(30001, p, 160);
	assert_int_equal(media_jbuf_put(j, 30001, 123456 + 160, p, 160, t + 1000), 0);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.restarts, 1);
	unsigned got = 0;
	for (int k = 0; k < 10; k++) {
		t += 20000;
		if (media_jbuf_get(j, t, &f) == MEDIA_JBUF_PACKET) {
			assert_int_equal(f.seq, 30000 + got);
			assert_int_equal(payload_seq(f.payload), f.seq);
			got++;
		}
	}
	assert_int_equal(got, 2);

	/* reset (SSRC change): any seq is accepted as a fresh stream, even an "older" one */
	media_jbuf_reset(j);
	payload_for(29000, p, 160);
	assert_int_equal(media_jbuf_put(j, 29000, 5, p, 160, t), 0);
	t += 40000;
	assert_int_equal(media_jbuf_get(j, t, &f), MEDIA_JBUF_PACKET);
	assert_int_equal(f.seq, 29000);
	media_jbuf_stats(j, &st);
	assert_int_equal(st.restarts, 2);
	media_jbuf_destroy(j);
}

/* The caller keeps decoded audio in a FIFO and calls get while it holds < 20 ms. */
static void test_jbuf_ptime_10_30_60(void **state)
{
	(void)state;
	static const unsigned ptimes[] = {10, 30, 60};
	for (unsigned pi = 0; pi < 3; pi++) {
		unsigned ptime = ptimes[pi];
		struct media_jbuf *j = mk(NULL);
		unsigned n = make_stream(3000 / ptime, 1, 0, ptime, 5000);
		uint8_t buf[1500];
		unsigned next_pk = 0, fifo_ms = 0, released = 0, underflows = 0;
		int started = 0;
		uint16_t expect = 1;
		for (uint64_t t = 0; t < 4000000; t += 20000) {
			while (next_pk < n && pks[next_pk].at_us <= t) {
				payload_for(pks[next_pk].seq, buf, pks[next_pk].len);
				assert_int_equal(
				    media_jbuf_put(j, pks[next_pk].seq, pks[next_pk].ts, buf,
				                   pks[next_pk].len, pks[next_pk].at_us),
				    0);
				next_pk++;
			}
			while (fifo_ms < 20) {
				struct media_jbuf_frame f;
				enum media_jbuf_res r = media_jbuf_get(j, t, &f);
				if (r == MEDIA_JBUF_EMPTY)
					break;
				assert_int_equal(r, MEDIA_JBUF_PACKET);
				assert_int_equal(f.seq, expect);
				/* the first packet's duration is not known yet (default 20 ms); the
				 * caller counts what it decoded (PCMU: len samples) */
				if (expect > 1)
					assert_int_equal(f.dur_ts, ptime * 8);
				assert_int_equal(f.len, ptime * 8);
				expect++;
				released++;
				fifo_ms += (unsigned)f.len / 8;
				started = 1;
			}
			if (fifo_ms >= 20)
				fifo_ms -= 20;
			else if (started && released < n)
				underflows++;
			else
				fifo_ms = 0;
		}
		assert_int_equal(released, n);
		assert_int_equal(underflows, 0);
		media_jbuf_destroy(j);
	}
}

static void test_jbuf_full_drops_oldest(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL); /* 32 slots */
	uint8_t p[160];
	for (unsigned k = 0; k < 40; k++) {
		payload_for((uint16_t)(200 + k), p, 160);
		assert_int_equal(media_jbuf_put(j, (uint16_t)(200 + k), k * 160, p, 160, 1000), 0);
	}
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.dropped, 8);
	struct media_jbuf_frame f;
	/* arriving all at once is jitter: the hold grew above 20 ms; wait for it */
	uint64_t t = 20000;
	while (media_jbuf_get(j, t, &f) == MEDIA_JBUF_EMPTY && t < 1000000)
		t += 20000;
	for (unsigned k = 0; k < 32; k++) {
		if (k)
			assert_int_equal(media_jbuf_get(j, t, &f), MEDIA_JBUF_PACKET);
		assert_int_equal(f.seq, 208 + k); /* the oldest 8 went */
		t += 20000;
	}
	assert_int_equal(media_jbuf_get(j, t, &f), MEDIA_JBUF_EMPTY);

	/* after play: a packet far ahead pushes the window; play resumes with it */
	payload_for(300, p, 160);
	assert_int_equal(media_jbuf_put(j, 300, 100 * 160, p, 160, t), 0);
	uint64_t t_put = t;
	while (media_jbuf_get(j, t, &f) == MEDIA_JBUF_EMPTY && t < t_put + 200000)
		t += 20000;
	assert_int_equal(f.seq, 300);
	assert_int_equal(payload_seq(f.payload), 300);
	media_jbuf_stats(j, &st);
	assert_int_equal(st.skipped, 300 - 240);
	media_jbuf_destroy(j);
}

static uint32_t rnd_state = 1;
static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

static void test_jbuf_target_follows_jitter(void **state)
{
	(void)state;
	/* smooth network: the target stays at the floor */
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(500, 1, 0, 20, 5000);
	run(j, n, 0, 12000000);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.target_ms, 20);
	media_jbuf_destroy(j);

	/* ±8 ms of delay variation: the target grows (20 + 3 x J) and nothing is lost */
	j = mk(NULL);
	rnd_state = 3;
	n = make_stream(1000, 1, 0, 20, 5000);
	for (unsigned k = 0; k < n; k++)
		pks[k].at_us += rnd() % 16001;
	qsort(pks, n, sizeof(pks[0]), pk_cmp);
	run(j, n, 0, 22000000);
	media_jbuf_stats(j, &st);
	print_message("jitter %u us target %u ms lost %llu\n", st.jitter_us, st.target_ms,
	              (unsigned long long)st.lost);
	assert_true(st.target_ms >= 30 && st.target_ms <= 60);
	assert_true(st.lost <= 3); /* only while the estimate was still learning */
	assert_int_equal(st.packets + st.lost + st.skipped + st.dropped, 1000);
	media_jbuf_destroy(j);

	/* the ceiling holds */
	struct media_jbuf_opts o = {.ceiling_ms = 40};
	j = mk(&o);
	rnd_state = 4;
	n = make_stream(500, 1, 0, 20, 5000);
	for (unsigned k = 0; k < n; k++)
		pks[k].at_us += rnd() % 60001;
	qsort(pks, n, sizeof(pks[0]), pk_cmp);
	run(j, n, 0, 12000000);
	media_jbuf_stats(j, &st);
	assert_int_equal(st.target_ms, 40);
	media_jbuf_destroy(j);
}

static void test_jbuf_no_floor_minimum_latency(void **state)
{
	(void)state;
	struct media_jbuf_opts o = {.floor_ms = MEDIA_JBUF_NO_FLOOR};
	struct media_jbuf *j = mk(&o);
	unsigned n = make_stream(60, 1, 0, 20, 5000);
	drop_pk(&n, 30); /* seq 31 */
	run(j, n, 0, 2000000);
	unsigned i0 = first_out();
	assert_int_equal(recs[i0].t_us, 20000); /* the first tick after arrival */
	assert_int_equal(recs[i0].wait_us, 15000);
	unsigned packets = 0, empties = 0;
	for (unsigned k = i0; k < i0 + 60; k++) {
		assert_true(recs[k].res != MEDIA_JBUF_LOST);
		if (recs[k].res == MEDIA_JBUF_PACKET) {
			packets++;
			assert_int_equal(recs[k].wait_us, 15000); /* no delay added by the loss */
		} else {
			empties++; /* the loss shows as one silent tick */
		}
	}
	assert_int_equal(packets, 59);
	assert_int_equal(empties, 1);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.skipped, 1);
	media_jbuf_destroy(j);
}

static void test_jbuf_latency_trimmed_after_stall(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	unsigned n = make_stream(600, 1, 0, 20, 5000);
	/* a 200 ms network stall: packets 100..110 arrive together */
	for (unsigned k = 100; k <= 110; k++)
		pks[k].at_us = pks[110].at_us;
	run(j, n, 0, 14000000);
	int64_t max_wait = 0, last_wait = 0;
	unsigned packets = 0;
	for (unsigned k = 0; k < n_recs; k++) {
		if (recs[k].res != MEDIA_JBUF_PACKET)
			continue;
		packets++;
		if (recs[k].wait_us > max_wait)
			max_wait = recs[k].wait_us;
		last_wait = recs[k].wait_us;
	}
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	print_message("stall: max wait %lld ms, final wait %lld ms, dropped %llu, target %u ms\n",
	              (long long)max_wait / 1000, (long long)last_wait / 1000,
	              (unsigned long long)st.dropped, st.target_ms);
	assert_true(max_wait >= 200000);         /* the stall did add delay... */
	assert_true(last_wait <= 20000 + 40000); /* ...which was trimmed back */
	assert_true(st.dropped > 0);
	assert_int_equal(st.lost, 0);
	assert_int_equal(packets + st.dropped, 600);
	media_jbuf_destroy(j);
}

/* media_jbuf_get_next (the AI upstream): the expected packet at once, no hold; a missing
 * one is left to media_jbuf_get, which still finds the later packets in order. */
static void test_jbuf_get_next_no_hold(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	struct media_jbuf_frame f;
	uint8_t pl[160];
	uint64_t t = 1000000;
	assert_int_equal(media_jbuf_get_next(j, t, &f), MEDIA_JBUF_EMPTY); /* nothing yet */
	payload_for(100, pl, sizeof(pl));
	assert_int_equal(media_jbuf_put(j, 100, 0, pl, sizeof(pl), t), 0);
	/* a plain get would hold it for the target (20 ms); get_next releases it now */
	assert_int_equal(media_jbuf_get_next(j, t, &f), MEDIA_JBUF_PACKET);
	assert_int_equal(f.seq, 100);
	assert_int_equal(payload_seq(f.payload), 100);
	assert_int_equal(media_jbuf_get_next(j, t, &f), MEDIA_JBUF_EMPTY); /* once */
	/* 101 goes missing, 102 arrives: not the expected one, get_next leaves it */
	payload_for(102, pl, sizeof(pl));
	assert_int_equal(media_jbuf_put(j, 102, 320, pl, sizeof(pl), t + 25000), 0);
	assert_int_equal(media_jbuf_get_next(j, t + 25000, &f), MEDIA_JBUF_EMPTY);
	/* the tick's get declares 101 lost once its time has come, then 102 is next */
	enum media_jbuf_res r = media_jbuf_get(j, t + 30000, &f);
	assert_int_equal(r, MEDIA_JBUF_LOST);
	assert_int_equal(f.seq, 101);
	assert_int_equal(media_jbuf_get_next(j, t + 31000, &f), MEDIA_JBUF_PACKET);
	assert_int_equal(f.seq, 102);
	/* a late 101 is too old now */
	payload_for(101, pl, sizeof(pl));
	assert_int_equal(media_jbuf_put(j, 101, 160, pl, sizeof(pl), t + 45000), -EALREADY);
	/* after a pause (nothing for 200 ms, the ticks saw it idle) no new hold either */
	for (uint64_t tick = t + 60000; tick < t + 260000; tick += 20000)
		assert_int_equal(media_jbuf_get(j, tick, &f), MEDIA_JBUF_EMPTY);
	payload_for(113, pl, sizeof(pl));
	assert_int_equal(media_jbuf_put(j, 113, 13 * 160, pl, sizeof(pl), t + 260000), 0);
	assert_int_equal(media_jbuf_get_next(j, t + 260000, &f), MEDIA_JBUF_PACKET);
	assert_int_equal(f.seq, 113);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.early, 3);
	assert_int_equal(st.lost, 1);
	media_jbuf_destroy(j);
}

static void test_jbuf_create_args_and_oom(void **state)
{
	(void)state;
	struct media_jbuf *j = NULL;
	assert_int_equal(media_jbuf_create(&j, 0, NULL), -EINVAL);
	struct media_jbuf_opts o = {.slots = 1};
	assert_int_equal(media_jbuf_create(&j, 8000, &o), -EINVAL);
	o = (struct media_jbuf_opts){.floor_ms = 80, .ceiling_ms = 60};
	assert_int_equal(media_jbuf_create(&j, 8000, &o), -EINVAL);
	for (long k = 0; k < 3; k++) {
		mem_fail_after(k);
		assert_int_equal(media_jbuf_create(&j, 48000, NULL), -ENOMEM);
	}
	mem_fail_after(-1);
	assert_null(j);
	media_jbuf_destroy(NULL);
	assert_int_equal(media_jbuf_create(&j, 48000, NULL), 0);
	/* an empty buffer says EMPTY */
	struct media_jbuf_frame f;
	assert_int_equal(media_jbuf_get(j, 0, &f), MEDIA_JBUF_EMPTY);
	assert_null(f.payload);
	media_jbuf_destroy(j);
}

static void test_jbuf_no_alloc_10000_ticks(void **state)
{
	(void)state;
	struct media_jbuf *j = mk(NULL);
	rnd_state = 11;
	unsigned n = make_stream(10000, 60000, 0, 20, 5000);
	for (unsigned k = 0; k < n; k++)
		pks[k].at_us += rnd() % 30001;
	for (unsigned k = n; k-- > 0;)
		if (rnd() % 50 == 0)
			drop_pk(&n, k);
	qsort(pks, n, sizeof(pks[0]), pk_cmp);
	uint64_t allocs = mem_total_allocs();
	run(j, n, 0, 10000ull * 20000 + 200000);
	assert_int_equal(mem_total_allocs(), allocs);
	struct media_jbuf_stats st;
	media_jbuf_stats(j, &st);
	assert_int_equal(st.packets + st.dropped + st.duplicates, n);
	media_jbuf_destroy(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_jbuf_in_order, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_get_next_no_hold, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_reordered_swap, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_duplicate_and_old, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_single_loss, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_burst_loss, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_seq_and_ts_wrap, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_long_silence_then_resume, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_restart_on_jump_and_reset, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_ptime_10_30_60, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_full_drops_oldest, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_target_follows_jitter, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_no_floor_minimum_latency, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_latency_trimmed_after_stall, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_create_args_and_oom, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_jbuf_no_alloc_10000_ticks, leak_setup,
	                                    leak_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
