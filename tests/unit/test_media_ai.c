/* Unit tests: the media engine's processed legs on real loopback sockets: the AI port
 * (pass-through, cadence, playout, flush, marks), transcoding bridges, DTMF
 * interworking, prompts, recording, ringback of Mexico and AMD; and a session's audio
 * processing driven for 10,000 frames each way with no allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "core/metric.h"
#include "media/codec_int.h"
#include "media/det_int.h"
#include "media/dsp_int.h"
#include "media/media.h"
#include "media/media_int.h"
#include "media/wav_int.h"
#include "tests/unit/media_test.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static long live_before;
static char tmpdir[64];

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	media_close();
	metric_registry_close();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void up(void)
{
	struct media_config cfg;
	pick_ports(16);
	memset(&cfg, 0, sizeof(cfg));
	cfg.address = LOCALHOST;
	cfg.port_min = port_base;
	cfg.port_max = (uint16_t)(port_base + 15u);
	cfg.workers = 1;
	cfg.max_sessions = 16;
	assert_int_equal(media_init(&cfg), 0);
}

/* ---- signal helpers ---- */

static void sine(int16_t *x, size_t n, double f, double rate, double amp, size_t *phase)
{
	for (size_t i = 0; i < n; i++, (*phase)++)
		x[i] = (int16_t)lrint(amp * sin(2.0 * M_PI * f * (double)*phase / rate));
}

/* Power of frequency f in x relative to the total power (0..1). */
static double tone_share(const int16_t *x, size_t n, double f, double rate)
{
	double w = 2.0 * M_PI * f / rate, c = 2.0 * cos(w), s1 = 0, s2 = 0, tot = 0;
	for (size_t i = 0; i < n; i++) {
		double s0 = x[i] + c * s1 - s2;
		s2 = s1;
		s1 = s0;
		tot += (double)x[i] * x[i];
	}
	double p = s1 * s1 + s2 * s2 - c * s1 * s2;
	return tot > 0 ? 2.0 * p / ((double)n * tot) : 0.0;
}

static size_t rtp_pkt(uint8_t *buf, uint8_t pt, uint16_t seq, uint32_t ts, uint32_t ssrc,
                      const uint8_t *pl, size_t plen, int marker)
{
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.pt = pt;
	h.seq = seq;
	h.ts = ts;
	h.ssrc = ssrc;
	h.marker = (uint8_t)marker;
	h.payload_len = (uint16_t)plen;
	int len = media_rtp_build(buf, 1500, &h, NULL, NULL, pl);
	assert_true(len > 0);
	return (size_t)len;
}

/* A far end that sends one frame of its codec every 20 ms and collects what it gets. */
struct phone {
	struct far f;
	struct media_session *s;
	uint16_t port;
	enum media_codec codec;
	uint8_t pt;
	struct media_coder *enc, *dec;
	uint16_t seq;
	uint32_t ts;
	size_t phase;
	double freq; /* 0: send nothing */
	int16_t *got;
	size_t n_got, cap_got;
	unsigned pkts, ts_errors, seq_errors, events;
	int have_last;
	uint16_t last_seq;
	uint32_t last_ts;
	uint8_t last_event;
};

static void phone_open(struct phone *p, enum media_codec c, uint8_t pt, int pt_dtmf, uint64_t owner)
{
	memset(p, 0, sizeof(*p));
	far_open(&p->f);
	p->codec = c;
	p->pt = pt;
	assert_int_equal(media_coder_create(&p->enc, c, NULL), 0);
	assert_int_equal(media_coder_create(&p->dec, c, NULL), 0);
	assert_int_equal(media_session_create(owner, NULL, &p->s, &p->port), 0);
	struct media_stream_params sp = leg(&p->f, c, pt, pt_dtmf, -1);
	assert_int_equal(media_session_update(p->s, &sp), 0);
	p->cap_got = 16000u * 12u;
	p->got = mem_zalloc(p->cap_got * sizeof(int16_t));
	assert_non_null(p->got);
	p->seq = 1000;
	p->ts = 5000;
}

static void phone_close(struct phone *p)
{
	media_session_destroy(p->s);
	media_coder_destroy(p->enc);
	media_coder_destroy(p->dec);
	mem_free(p->got);
	far_close(&p->f);
}

static void phone_send_pcm(struct phone *p, const int16_t *pcm)
{
	uint8_t pl[MEDIA_CODED_FRAME_MAX], pkt[1600];
	int n = media_coder_encode(p->enc, pcm, pl, sizeof(pl));
	assert_true(n > 0);
	size_t len = rtp_pkt(pkt, p->pt, p->seq++, p->ts, 0x1234, pl, (size_t)n, 0);
	p->ts += media_codec_ts_per_frame(p->codec);
	far_send(&p->f, p->port, pkt, len);
}

static void phone_send(struct phone *p)
{
	int16_t pcm[MEDIA_PCM_FRAME_MAX];
	unsigned fs = media_coder_frame_samples(p->enc);
	if (p->freq <= 0)
		return;
	sine(pcm, fs, p->freq, media_coder_pcm_rate(p->enc), 8000.0, &p->phase);
	phone_send_pcm(p, pcm);
}

/* Reads what arrived: audio decoded into got[], telephone-events counted. */
static void phone_recv(struct phone *p, int pt_dtmf, int timeout_ms)
{
	uint8_t buf[2048];
	int r;
	while ((r = far_recv(&p->f, buf, sizeof(buf), timeout_ms)) > 0) {
		timeout_ms = 0;
		if (media_is_rtcp(buf, (size_t)r))
			continue;
		struct media_rtp_hdr h;
		assert_int_equal(media_rtp_parse(buf, (size_t)r, &h), 0);
		if (pt_dtmf >= 0 && h.pt == pt_dtmf) {
			struct media_dtmf_event ev;
			assert_int_equal(media_rfc4733_parse(buf + h.hdr_len, h.payload_len, &ev),
			                 0);
			p->last_event = ev.event;
			p->events++;
			continue;
		}
		assert_int_equal(h.pt, p->pt);
		uint32_t step = media_codec_ts_per_frame(p->codec);
		if (p->have_last) {
			if (h.seq != (uint16_t)(p->last_seq + 1u))
				p->seq_errors++;
			if (!h.marker && h.ts - p->last_ts != step)
				p->ts_errors++;
		}
		p->have_last = 1;
		p->last_seq = h.seq;
		p->last_ts = h.ts;
		p->pkts++;
		int16_t pcm[MEDIA_PCM_FRAME_MAX];
		int n = media_coder_decode(p->dec, buf + h.hdr_len, h.payload_len, pcm,
		                           MEDIA_PCM_FRAME_MAX);
		assert_true(n > 0);
		if (p->n_got + (size_t)n <= p->cap_got) {
			memcpy(p->got + p->n_got, pcm, (size_t)n * sizeof(int16_t));
			p->n_got += (size_t)n;
		}
	}
}

/* Runs for ms: phones send their tone every 20 ms and receive. */
static void run_phones(struct phone **ph, unsigned n, const int *pt_dtmf, unsigned ms)
{
	uint64_t start = now_ms();
	for (unsigned t = 0; t < ms / 20u; t++) {
		for (unsigned i = 0; i < n; i++)
			phone_send(ph[i]);
		uint64_t due = start + (uint64_t)(t + 1u) * 20u;
		for (;;) {
			uint64_t now = now_ms();
			for (unsigned i = 0; i < n; i++)
				phone_recv(ph[i], pt_dtmf ? pt_dtmf[i] : -1, 0);
			if (now >= due)
				break;
			sleep_ms(2);
		}
	}
}

/* ---- the AI port ---- */

struct ai_side {
	_Atomic unsigned wakeups;
};

static void ai_wake(void *arg)
{
	struct ai_side *a = arg;
	atomic_fetch_add(&a->wakeups, 1);
}

static int is_silence(const uint8_t *f, size_t n, uint8_t sil)
{
	for (size_t i = 0; i < n; i++)
		if (f[i] != sil)
			return 0;
	return 1;
}

/* PCMU leg: the caller's payload bytes reach the AI unchanged, one frame per 20 ms,
 * silence (0xFF) when the caller sends nothing; AI audio written in VAPI's bursts leaves
 * as a regular 20 ms stream on the caller leg's clock, with the right tone. */
static void test_media_ai_pcmu_passthrough_and_playout(void **state)
{
	(void)state;
	up();
	struct phone caller;
	phone_open(&caller, MEDIA_CODEC_PCMU, 0, -1, 1);
	struct ai_side side = {0};
	struct media_ai_port *port = NULL;
	assert_int_equal(media_ai_format_for(MEDIA_CODEC_PCMU), MEDIA_AI_MULAW_8K);
	assert_int_equal(media_ai_format_for(MEDIA_CODEC_G722), MEDIA_AI_PCM16_16K);
	assert_string_equal(media_ai_format_name(MEDIA_AI_MULAW_8K), "mulaw");
	assert_int_equal(media_ai_attach(caller.s, MEDIA_AI_MULAW_8K, ai_wake, &side, &port), 0);

	/* AI downstream: 1.5 s of a 400 Hz mu-law tone in bursts, while the caller sends 1 s
	 * of numbered payloads. */
	uint8_t tone_ulaw[8000 * 2];
	int16_t pcm[8000 * 2];
	size_t ph = 0;
	sine(pcm, sizeof(tone_ulaw), 400.0, 8000.0, 8000.0, &ph);
	media_g711_encode(MEDIA_CODEC_PCMU, pcm, tone_ulaw, sizeof(tone_ulaw));
	size_t down_pos = 0, down_total = 12000;

	uint8_t sent[50][160];
	uint8_t frames[200][160];
	unsigned n_frames = 0;
	uint64_t start = now_ms();
	unsigned long allocs_before = 0;
	for (unsigned t = 0; t < 100; t++) {
		if (t == 10)
			allocs_before = alloc_count();
		if (t < 50) {
			uint8_t pkt[200];
			for (unsigned i = 0; i < 160; i++)
				sent[t][i] = (uint8_t)((t * 7u + i) % 0xfe); /* never 0xFF */
			size_t len = rtp_pkt(pkt, 0, caller.seq++, caller.ts, 77, sent[t], 160, 0);
			caller.ts += 160;
			far_send(&caller.f, caller.port, pkt, len);
		}
		if (t % 5 == 0 && down_pos < down_total) {
			/* Every 100 ms, 100 ms of audio in two chunks arriving together (VAPI
			 * sends pairs of ~46 ms); once the second is split into 79 + 321 bytes. */
			static const size_t pair[] = {400, 400}, odd[] = {400, 79, 321};
			const size_t *ch = t == 70 ? odd : pair;
			unsigned nch = t == 70 ? 3u : 2u;
			for (unsigned k = 0; k < nch && down_pos < down_total; k++) {
				size_t c =
				    ch[k] < down_total - down_pos ? ch[k] : down_total - down_pos;
				assert_int_equal(media_ai_write(port, tone_ulaw + down_pos, c), 0);
				down_pos += c;
			}
		}
		uint64_t due = start + (uint64_t)(t + 1u) * 20u;
		while (now_ms() < due) {
			uint8_t f[160];
			while (media_ai_read(port, f, NULL) == 1)
				if (n_frames < 200)
					memcpy(frames[n_frames++], f, 160);
			phone_recv(&caller, -1, 0);
			sleep_ms(2);
		}
	}
	unsigned long allocs_after = alloc_count();
	/* Upstream: about one frame per 20 ms (2 s of ticks, scheduling slack allowed) ... */
	assert_true(n_frames >= 95 && n_frames <= 103);
	/* ... every caller payload in order and byte-exact, the rest silence. */
	unsigned next = 0, silent = 0;
	for (unsigned i = 0; i < n_frames; i++) {
		if (next < 50 && memcmp(frames[i], sent[next], 160) == 0)
			next++;
		else if (is_silence(frames[i], 160, 0xff))
			silent++;
		else
			fail_msg("frame %u is neither a caller payload nor silence", i);
	}
	assert_int_equal(next, 50);
	assert_true(silent >= 40);
	assert_true(atomic_load(&side.wakeups) >= 50);

	/* Downstream: a regular 20 ms stream, no seq or ts gaps, carrying 400 Hz. */
	phone_recv(&caller, -1, 100);
	assert_true(caller.pkts >= 90);
	assert_int_equal(caller.seq_errors, 0);
	assert_int_equal(caller.ts_errors, 0);
	assert_true(caller.n_got >= 12000);
	size_t a0 = 0;
	while (a0 < caller.n_got && abs(caller.got[a0]) < 100)
		a0++;
	assert_true(a0 + 8000 <= caller.n_got);
	assert_true(tone_share(caller.got + a0 + 800, 8000, 400.0, 8000.0) > 0.9);
	struct media_ai_stats st;
	media_ai_stats(port, &st);
	assert_int_equal(st.underruns, 0);
	assert_true(st.up_frames >= 95);
	assert_true(st.target_ms <= 200);
	/* Nothing allocated in the process while audio flowed both ways. */
	assert_int_equal(allocs_after, allocs_before);

	media_ai_port_release(port);
	phone_close(&caller);
}

/* Barge-in: after a flush the caller hears silence at once; marks report flushed audio,
 * then played audio once it has left. */
static void test_media_ai_flush_and_marks(void **state)
{
	(void)state;
	up();
	struct phone caller;
	phone_open(&caller, MEDIA_CODEC_PCMU, 0, -1, 2);
	struct media_ai_port *port = NULL;
	assert_int_equal(media_ai_attach(caller.s, MEDIA_AI_MULAW_8K, NULL, NULL, &port), 0);
	uint8_t tone[8000];
	int16_t pcm[8000];
	size_t ph = 0;
	sine(pcm, 8000, 1000.0, 8000.0, 8000.0, &ph);
	media_g711_encode(MEDIA_CODEC_PCMU, pcm, tone, sizeof(tone));
	/* 1 s: the mu-law playout's bound (the AI thread stops reading well before) */
	assert_int_equal(media_ai_write(port, tone, sizeof(tone)), 0);
	assert_true(media_ai_queued_ms(port) >= 900 && media_ai_queued_ms(port) <= 1000);
	assert_int_equal(media_ai_mark(port, 7), 0);
	/* Let it play 300 ms. */
	phone_recv(&caller, -1, 300);
	sleep_ms(300);
	phone_recv(&caller, -1, 0);
	size_t before = caller.n_got;
	assert_true(before >= 160 * 5);
	media_ai_flush(port);
	assert_int_equal(media_ai_queued_ms(port), 0); /* for flow control: gone at once */
	/* Within two packets (one tick, plus one frame possibly in flight) it is silent. */
	sleep_ms(200);
	phone_recv(&caller, -1, 0);
	size_t first_silent = before;
	while (first_silent < caller.n_got && abs(caller.got[first_silent]) > 50)
		first_silent++;
	assert_true(first_silent - before <= 2 * 160);
	for (size_t i = first_silent + 160; i < caller.n_got; i++)
		assert_true(abs(caller.got[i]) <= 50);
	struct media_event ev;
	assert_int_equal(wait_event(&ev, 1000), 1);
	assert_int_equal(ev.type, MEDIA_EV_MARK);
	assert_int_equal(ev.id, 7);
	assert_int_equal(ev.result, 0); /* flushed */
	/* 100 ms more, then a mark: played once that audio has gone out. */
	uint64_t t0 = now_ms();
	assert_int_equal(media_ai_write(port, tone, 800), 0);
	assert_int_equal(media_ai_mark(port, 8), 0);
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.type, MEDIA_EV_MARK);
	assert_int_equal(ev.id, 8);
	assert_int_equal(ev.result, 1);
	uint64_t took = now_ms() - t0;
	assert_true(took >= 80 && took <= 600);
	media_ai_detach(caller.s);
	media_ai_port_release(port);
	phone_close(&caller);
}

/* G.722 leg: 16 kHz PCM both ways to the AI, with the tone's frequency kept. */
static void test_media_ai_g722_pcm16(void **state)
{
	(void)state;
	up();
	struct phone caller;
	phone_open(&caller, MEDIA_CODEC_G722, 9, -1, 3);
	struct media_ai_port *port = NULL;
	assert_int_equal(media_ai_attach(caller.s, MEDIA_AI_MULAW_8K, NULL, NULL, &port), -EINVAL);
	assert_int_equal(media_ai_attach(caller.s, MEDIA_AI_PCM16_16K, NULL, NULL, &port), 0);
	caller.freq = 1000.0;
	int16_t down[16000];
	size_t ph = 0;
	sine(down, 16000, 500.0, 16000.0, 8000.0, &ph);
	uint8_t le[32000];
	for (unsigned i = 0; i < 16000; i++) {
		le[2 * i] = (uint8_t)((uint16_t)down[i] & 0xff);
		le[2 * i + 1] = (uint8_t)((uint16_t)down[i] >> 8);
	}
	/* 400 ms now, the rest as the AI thread would: topped up below 200 ms queued (the
	 * 16 kHz playout holds at most 500 ms) */
	size_t le_pos = 12800;
	assert_int_equal(media_ai_write(port, le, le_pos), 0);
	int16_t *up_pcm = mem_alloc(16000u * 2u * sizeof(int16_t));
	assert_non_null(up_pcm);
	size_t n_up = 0;
	uint64_t start = now_ms();
	for (unsigned t = 0; t < 60; t++) {
		phone_send(&caller);
		if (le_pos < sizeof(le) && media_ai_queued_ms(port) < 200) {
			assert_int_equal(media_ai_write(port, le + le_pos, 3200), 0);
			le_pos += 3200;
		}
		uint64_t due = start + (uint64_t)(t + 1u) * 20u;
		while (now_ms() < due) {
			uint8_t f[640];
			while (media_ai_read(port, f, NULL) == 1 && n_up + 320 <= 32000u) {
				for (unsigned i = 0; i < 320; i++)
					up_pcm[n_up + i] =
					    (int16_t)(uint16_t)(f[2 * i] | f[2 * i + 1] << 8);
				n_up += 320;
			}
			phone_recv(&caller, -1, 0);
			sleep_ms(2);
		}
	}
	phone_recv(&caller, -1, 100);
	/* Upstream at 16 kHz: the caller's 1 kHz; downstream G.722: the AI's 500 Hz. */
	size_t a0 = 0;
	while (a0 < n_up && abs(up_pcm[a0]) < 500)
		a0++;
	assert_true(a0 + 8000 <= n_up);
	assert_true(tone_share(up_pcm + a0 + 1600, 6400, 1000.0, 16000.0) > 0.9);
	assert_true(caller.n_got >= 16000);
	assert_true(tone_share(caller.got + 3200, 12800, 500.0, 16000.0) > 0.9);
	assert_int_equal(caller.seq_errors, 0);
	assert_int_equal(caller.ts_errors, 0);
	mem_free(up_pcm);
	media_ai_port_release(port);
	phone_close(&caller);
}

/* PCMA leg with 16 kHz PCM to the AI: the AI's audio, written in odd-sized pieces (half
 * samples included), is kept at 8 kHz and still reaches the caller as its tone, with the
 * queue measured in real milliseconds; the caller's tone goes up at 16 kHz. */
static void test_media_ai_pcma_pcm16_narrow(void **state)
{
	(void)state;
	up();
	struct phone caller;
	phone_open(&caller, MEDIA_CODEC_PCMA, 8, -1, 4);
	struct media_ai_port *port = NULL;
	assert_int_equal(media_ai_attach(caller.s, MEDIA_AI_PCM16_16K, NULL, NULL, &port), 0);
	caller.freq = 1000.0;
	static int16_t down[24000];
	static uint8_t le[48000];
	size_t ph = 0;
	sine(down, 24000, 500.0, 16000.0, 8000.0, &ph);
	for (unsigned i = 0; i < 24000; i++) {
		le[2 * i] = (uint8_t)((uint16_t)down[i] & 0xff);
		le[2 * i + 1] = (uint8_t)((uint16_t)down[i] >> 8);
	}
	/* 400 ms in pieces of 1001, 777, ... bytes: odd sizes split samples. */
	static const size_t piece[] = {1001, 777, 3, 2048, 5, 1111};
	size_t le_pos = 0;
	for (unsigned k = 0; le_pos < 12800; k++) {
		size_t n = piece[k % 6];
		if (le_pos + n > 12800)
			n = 12800 - le_pos;
		assert_int_equal(media_ai_write(port, le + le_pos, n), 0);
		le_pos += n;
	}
	unsigned q = media_ai_queued_ms(port);
	assert_true(q >= 390 && q <= 400); /* the resampler holds back a few samples */
	uint64_t start = now_ms();
	unsigned n_up = 0, loud_up = 0;
	for (unsigned t = 0; t < 60; t++) {
		phone_send(&caller);
		if (le_pos < sizeof(le) && media_ai_queued_ms(port) < 200) {
			size_t n = sizeof(le) - le_pos < 3199 ? sizeof(le) - le_pos : 3199;
			assert_int_equal(media_ai_write(port, le + le_pos, n), 0);
			le_pos += n;
		}
		uint64_t due = start + (uint64_t)(t + 1u) * 20u;
		while (now_ms() < due) {
			uint8_t f[640];
			while (media_ai_read(port, f, NULL) == 1) {
				n_up++;
				int16_t s0 = (int16_t)(uint16_t)(f[200] | f[201] << 8);
				loud_up += abs(s0) > 500;
			}
			phone_recv(&caller, -1, 0);
			sleep_ms(2);
		}
	}
	phone_recv(&caller, -1, 100);
	assert_true(n_up >= 50);
	assert_true(loud_up >= n_up / 4); /* the caller's tone went up at 16 kHz */
	assert_true(caller.n_got >= 8000);
	assert_true(tone_share(caller.got + 1600, 6400, 500.0, 8000.0) > 0.9);
	assert_int_equal(caller.seq_errors, 0);
	assert_int_equal(caller.ts_errors, 0);
	/* Barge-in empties it, resampler included. */
	media_ai_flush(port);
	media_ai_port_release(port);
	phone_close(&caller);
}

/* ---- processed bridges ---- */

/* PCMU caller bridged to a G.722 agent: each hears the other's tone; the recording of
 * the caller leg is a stereo WAV with the caller left and the agent right. */
static void test_media_bridge_transcode_and_record(void **state)
{
	(void)state;
	up();
	struct phone a, b;
	phone_open(&a, MEDIA_CODEC_PCMU, 0, -1, 10);
	phone_open(&b, MEDIA_CODEC_G722, 9, -1, 11);
	assert_int_equal(media_session_bridge(a.s, b.s), 0);
	char path[128];
	snprintf(path, sizeof(path), "%s/rec-%d.wav", tmpdir, (int)getpid());
	unlink(path);
	assert_int_equal(media_session_record(a.s, path), 0);
	assert_int_equal(media_session_record(a.s, path), -EBUSY);
	a.freq = 1000.0;
	b.freq = 400.0;
	struct phone *ph[2] = {&a, &b};
	run_phones(ph, 2, NULL, 1500);
	phone_recv(&a, -1, 100);
	phone_recv(&b, -1, 100);
	assert_int_equal(media_session_record_stop(a.s), 0);
	/* B (16 kHz) hears 1 kHz; A (8 kHz) hears 400 Hz. */
	assert_true(b.n_got >= 16000);
	assert_true(tone_share(b.got + b.n_got - 12800, 12800, 1000.0, 16000.0) > 0.9);
	assert_true(a.n_got >= 8000);
	assert_true(tone_share(a.got + a.n_got - 6400, 6400, 400.0, 8000.0) > 0.9);
	struct media_event ev;
	assert_int_equal(wait_event(&ev, 3000), 1);
	assert_int_equal(ev.type, MEDIA_EV_RECORDING);
	assert_int_equal(ev.owner, 10);
	assert_int_equal(ev.result, 0);
	assert_true(ev.bytes >= 8000u * 4u); /* at least 1 s of 8 kHz stereo 16-bit */

	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct stat stt;
	assert_int_equal(fstat(fd, &stt), 0);
	uint8_t *file = mem_alloc((size_t)stt.st_size);
	assert_non_null(file);
	assert_int_equal(read(fd, file, (size_t)stt.st_size), stt.st_size);
	close(fd);
	struct media_wav_info wi;
	const char *why = NULL;
	assert_int_equal(media_wav_parse(file, (size_t)stt.st_size, &wi, &why), 0);
	assert_int_equal(wi.channels, 2);
	assert_int_equal(wi.rate, 8000);
	assert_int_equal(wi.data_to_eof, 0);
	assert_true(wi.frames >= 8000);
	int16_t *l = mem_alloc(wi.frames * sizeof(int16_t)),
	        *r = mem_alloc(wi.frames * sizeof(int16_t));
	assert_non_null(l);
	assert_non_null(r);
	for (size_t i = 0; i < wi.frames; i++) {
		const uint8_t *q = file + wi.data_off + i * 4u;
		l[i] = (int16_t)(uint16_t)(q[0] | q[1] << 8);
		r[i] = (int16_t)(uint16_t)(q[2] | q[3] << 8);
	}
	size_t mid = wi.frames / 2;
	assert_true(tone_share(l + mid - 2000, 4000, 1000.0, 8000.0) > 0.9);
	assert_true(tone_share(r + mid - 2000, 4000, 400.0, 8000.0) > 0.9);
	mem_free(l);
	mem_free(r);
	mem_free(file);
	unlink(path);
	phone_close(&a);
	phone_close(&b);
}

/* DTMF between a leg with telephone-event and one without: RFC 4733 in, in-band out,
 * detected at the far end; in-band in, RFC 4733 out. Events name the digits. */
static void test_media_dtmf_interworking(void **state)
{
	(void)state;
	up();
	struct phone a, b;
	phone_open(&a, MEDIA_CODEC_PCMU, 0, 101, 20); /* telephone-event */
	phone_open(&b, MEDIA_CODEC_PCMU, 0, -1, 21);  /* in-band only */
	assert_int_equal(media_session_bridge(a.s, b.s), 0);
	sleep_ms(60);
	/* A sends digit 5 as RFC 4733 (120 ms, end x3). */
	uint8_t pkt[64], pl[4];
	uint32_t ets = a.ts;
	for (unsigned k = 0; k < 9; k++) {
		unsigned dur = k < 6 ? (k + 1u) * 160u : 960u;
		pl[0] = 5;
		pl[1] = (uint8_t)((k >= 6 ? 0x80 : 0) | 10);
		media_put16(pl + 2, (uint16_t)dur);
		size_t len = rtp_pkt(pkt, 101, a.seq++, ets, 0x1234, pl, 4, k == 0);
		far_send(&a.f, a.port, pkt, len);
		sleep_ms(20);
		phone_recv(&b, -1, 0);
	}
	a.ts += 960;
	struct phone *ph[2] = {&a, &b};
	int pts[2] = {101, -1};
	run_phones(ph, 2, pts, 400);
	struct media_dtmf_det *det = NULL;
	assert_int_equal(media_dtmf_det_create(&det), 0);
	struct media_dtmf_digit dg[8];
	unsigned nd = 0;
	for (size_t i = 0; i + 160 <= b.n_got && nd < 8; i += 160)
		nd += media_dtmf_det_feed(det, b.got + i, 160, dg + nd, 8 - nd);
	media_dtmf_det_destroy(det);
	assert_int_equal(nd, 1);
	assert_int_equal(dg[0].digit, '5');
	assert_true(dg[0].duration_ms >= 90 && dg[0].duration_ms <= 160);

	/* B sends digit 9 in-band for 100 ms; A receives RFC 4733 event 9. */
	struct media_dtmf_gen *gen = NULL;
	assert_int_equal(media_dtmf_gen_create(&gen), 0);
	assert_int_equal(media_dtmf_gen_start(gen, '9', 100), 0);
	uint64_t start = now_ms();
	for (unsigned t = 0; t < 30; t++) {
		int16_t frame[160];
		memset(frame, 0, sizeof(frame));
		media_dtmf_gen_fill(gen, frame, 160, 8000);
		phone_send_pcm(&b, frame);
		while (now_ms() < start + (t + 1u) * 20u) {
			phone_recv(&a, 101, 0);
			sleep_ms(2);
		}
	}
	media_dtmf_gen_destroy(gen);
	phone_recv(&a, 101, 200);
	assert_true(a.events >= 4);
	assert_int_equal(a.last_event, 9);
	/* The control thread heard both digits, the second one as in-band. */
	int seen5 = 0, seen9 = 0;
	struct media_event ev;
	while (wait_event(&ev, 200) == 1) {
		if (ev.type != MEDIA_EV_DTMF)
			continue;
		if (ev.digit == '5' && ev.owner == 20 && !ev.inband)
			seen5 = 1;
		if (ev.digit == '9' && ev.owner == 21 && ev.inband)
			seen9 = 1;
	}
	assert_true(seen5);
	assert_true(seen9);
	phone_close(&a);
	phone_close(&b);
}

/* Announcement from a WAV file (made by sox, 44.1 kHz stereo) on a PCMA leg: heard at
 * the right pitch, then PLAY_DONE; a looped prompt stopped reports result 0. */
static void test_media_prompt_play(void **state)
{
	(void)state;
	up();
	char path[128], cmd[256];
	snprintf(path, sizeof(path), "%s/prompt-%d.wav", tmpdir, (int)getpid());
	snprintf(cmd, sizeof(cmd), "sox -q -n -r 44100 -c 2 -b 16 %s synth 0.5 sine 600 vol 0.3",
	         path);
	assert_int_equal(system(cmd), 0);
	struct media_prompt *pr = NULL;
	char err[256];
	assert_int_equal(media_prompt_load(path, &pr, err, sizeof(err)), 0);
	assert_true(media_prompt_ms(pr) >= 490 && media_prompt_ms(pr) <= 510);
	struct phone a;
	phone_open(&a, MEDIA_CODEC_PCMA, 8, -1, 30);
	assert_int_equal(media_session_play(a.s, pr, 0, 41), 0);
	struct media_event ev;
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.type, MEDIA_EV_PLAY_DONE);
	assert_int_equal(ev.id, 41);
	assert_int_equal(ev.result, 1);
	phone_recv(&a, -1, 100);
	assert_true(a.n_got >= 3600 && a.n_got <= 4400);
	assert_true(tone_share(a.got + 400, 3200, 600.0, 8000.0) > 0.9);
	assert_int_equal(a.seq_errors, 0);
	assert_int_equal(a.ts_errors, 0);
	/* Looped, then stopped. */
	assert_int_equal(media_session_play(a.s, pr, 1, 42), 0);
	sleep_ms(700);
	assert_int_equal(media_events_poll(&ev, 1), 0); /* no end while looping */
	assert_int_equal(media_session_play(a.s, NULL, 0, 0), 0);
	assert_int_equal(wait_event(&ev, 1000), 1);
	assert_int_equal(ev.type, MEDIA_EV_PLAY_DONE);
	assert_int_equal(ev.id, 42);
	assert_int_equal(ev.result, 0);
	phone_recv(&a, -1, 50);
	assert_true(a.n_got >= 4000 + 4800);
	media_prompt_unref(pr);
	/* A bad file names itself and the reason. */
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "RIFF\x04\x00\x00\x00WAVE", 12), 12);
	close(fd);
	assert_true(media_prompt_load(path, &pr, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, path));
	unlink(path);
	phone_close(&a);
}

/* Mexican ringback: 425 Hz, 1 s on, 4 s off. */
static void test_media_ringback_mx(void **state)
{
	(void)state;
	up();
	assert_int_equal(media_ringback_for_country(52), MEDIA_TONE_RINGBACK_MX);
	assert_int_equal(media_ringback_for_country(1), MEDIA_TONE_RINGBACK);
	struct phone a;
	phone_open(&a, MEDIA_CODEC_PCMU, 0, -1, 40);
	assert_int_equal(media_session_tone(a.s, MEDIA_TONE_RINGBACK_MX), 0);
	phone_recv(&a, -1, 100);
	sleep_ms(1400);
	phone_recv(&a, -1, 0);
	assert_true(a.n_got >= 8000 + 1600);
	assert_true(tone_share(a.got + 800, 6400, 425.0, 8000.0) > 0.9);
	for (size_t i = 8000 + 400; i < a.n_got; i++)
		assert_true(abs(a.got[i]) < 16);
	phone_close(&a);
}

/* AMD on a leg that answers and says nothing: MACHINE by initial silence. */
static void test_media_amd_silence(void **state)
{
	(void)state;
	up();
	struct phone a;
	phone_open(&a, MEDIA_CODEC_PCMU, 0, -1, 50);
	assert_int_equal(media_session_amd(a.s), 0);
	struct media_event ev;
	assert_int_equal(wait_event(&ev, 4000), 1);
	assert_int_equal(ev.type, MEDIA_EV_AMD);
	assert_int_equal(ev.owner, 50);
	assert_int_equal(ev.result, MEDIA_AMD_MACHINE);
	assert_true(ev.ms >= 2400 && ev.ms <= 2700);
	assert_non_null(ev.why);
	phone_close(&a);
}

/* ---- the processing alone, 10,000 frames each way, counted allocations ---- */

static void test_media_dsp_10k_frames_no_alloc(void **state)
{
	(void)state;
	static const enum media_codec codecs[] = {MEDIA_CODEC_PCMU, MEDIA_CODEC_G722,
	                                          MEDIA_CODEC_OPUS, MEDIA_CODEC_G729};
	for (unsigned ci = 0; ci < sizeof(codecs) / sizeof(codecs[0]); ci++) {
		enum media_codec c = codecs[ci];
		struct media_dsp *d = mem_zalloc(sizeof(*d));
		assert_non_null(d);
		media_rfc4733_tx_init(&d->tx4733);
		assert_int_equal(media_dsp_codec_create(&d->k, c), 0);
		enum media_ai_format f = media_ai_format_for(c);
		assert_int_equal(media_ai_port_create(&d->ai, f, d->k->rate, NULL, NULL), 0);
		struct media_coder *enc = NULL;
		assert_int_equal(media_coder_create(&enc, c, NULL), 0);
		unsigned fs = media_coder_frame_samples(enc), fb = media_ai_frame_bytes(f);
		int16_t pcm[MEDIA_PCM_FRAME_MAX];
		uint8_t pl[MEDIA_CODED_FRAME_MAX], out[MEDIA_CODED_FRAME_MAX], up_f[640], down[640];
		size_t ph = 0;
		memset(down, f == MEDIA_AI_MULAW_8K ? 0x55 : 0x11, sizeof(down));
		/* Pre-encode one frame so the loop measures the session, not the test. */
		sine(pcm, fs, 1000.0, media_coder_pcm_rate(enc), 8000.0, &ph);
		int plen = media_coder_encode(enc, pcm, pl, sizeof(pl));
		assert_true(plen > 0);
		uint64_t now = 1000000;
		unsigned long before = alloc_count();
		uint64_t total_before = mem_total_allocs();
		unsigned up_frames = 0, sent = 0;
		for (unsigned i = 0; i < 10000; i++, now += 20000) {
			if (i % 50 != 49) /* a lost packet every second */
				media_dsp_rx_packet(d, 0x1234, (uint16_t)i,
				                    i * media_codec_ts_per_frame(c), pl,
				                    (size_t)plen, now, 0);
			struct media_dsp_emit em;
			struct media_dsp_tx tx;
			media_dsp_rx_tick(d, now, &em);
			while (media_ai_read(d->ai, up_f, NULL) == 1)
				up_frames++;
			media_ai_write(d->ai, down, fb);
			if (media_dsp_tx_tick(d, NULL, MEDIA_TONE_NONE, 0, now, out, sizeof(out),
			                      &em, &tx) == 1)
				sent++;
		}
		assert_int_equal(alloc_count(), before);
		assert_int_equal(mem_total_allocs(), total_before);
		assert_true(up_frames >= 9990);
		assert_true(sent >= 9990);
		media_coder_destroy(enc);
		media_dsp_destroy(d);
	}
}

/* ---- the AI upstream's early push (media/dsp.c rx_ahead) ---- */

struct early {
	struct media_dsp *d;
	uint8_t pl[160];
	uint64_t t0;
	uint64_t last_stamp; /* of the last frame early_take took */
};

static void early_open(struct early *e)
{
	e->d = mem_zalloc(sizeof(*e->d));
	assert_non_null(e->d);
	media_rfc4733_tx_init(&e->d->tx4733);
	e->d->has_te = 1; /* no in-band detector: not what this tests */
	assert_int_equal(media_dsp_codec_create(&e->d->k, MEDIA_CODEC_PCMU), 0);
	assert_int_equal(media_ai_port_create(&e->d->ai, MEDIA_AI_MULAW_8K, 8000, NULL, NULL), 0);
	e->t0 = 1000000;
}

/* Packet seq (payload bytes = 0x10 + seq) arriving at t0 + at_ms; returns what
 * media_dsp_rx_packet said (1: a frame went up). */
static int early_pkt(struct early *e, uint16_t seq, unsigned at_ms)
{
	memset(e->pl, 0x10 + seq, sizeof(e->pl));
	return media_dsp_rx_packet(e->d, 0x4242, seq, seq * 160u, e->pl, sizeof(e->pl),
	                           e->t0 + at_ms * 1000u, 7000000u + seq);
}

static void early_tick(struct early *e, unsigned at_ms)
{
	struct media_dsp_emit em;
	media_dsp_rx_tick(e->d, e->t0 + at_ms * 1000u, &em);
}

/* The frames in the AI ring now: their first bytes into first[], the count returned. */
static unsigned early_take(struct early *e, uint8_t *first, unsigned max)
{
	uint8_t f[160];
	unsigned n = 0;
	while (media_ai_read(e->d->ai, f, &e->last_stamp) == 1) {
		if (n < max)
			first[n] = f[0];
		n++;
	}
	return n;
}

/* An in-order packet is in the AI ring as soon as it arrived, before the tick; the tick it
 * stands for queues nothing more; a tick with no packet queues exactly one silent frame. */
static void test_media_ai_early_push(void **state)
{
	(void)state;
	struct early e;
	uint8_t got[8];
	early_open(&e);
	/* The first packet goes up on arrival (no jitter-buffer hold on the AI path), before
	 * any tick; the tick it stands for (ticks at 10, 30, 50, ... ms) queues nothing. */
	assert_int_equal(early_pkt(&e, 0, 0), 1);
	assert_int_equal(early_take(&e, got, 8), 1);
	assert_int_equal(got[0], 0x10);
	assert_int_equal(e.last_stamp, 7000000u); /* the packet's receive time came along */
	early_tick(&e, 10);
	assert_int_equal(early_take(&e, got, 8), 0);
	/* Two packets between two ticks (the first one late): both go up on arrival, and
	 * the next two ticks queue nothing (never more than MEDIA_DSP_AHEAD_MAX ahead). */
	assert_int_equal(early_pkt(&e, 1, 31), 1);
	assert_int_equal(early_pkt(&e, 2, 40), 1);
	assert_int_equal(early_take(&e, got, 8), 2);
	assert_int_equal(got[0], 0x11);
	assert_int_equal(got[1], 0x12);
	early_tick(&e, 30 + 20);
	early_tick(&e, 30 + 40);
	assert_int_equal(early_take(&e, got, 8), 0);
	/* Steady flow: each packet is in the ring on arrival, its tick adds nothing. */
	for (unsigned k = 3; k < 50; k++) {
		assert_int_equal(early_pkt(&e, (uint16_t)k, 20 * k + 22), 1);
		assert_int_equal(early_take(&e, got, 8), 1);
		assert_int_equal(got[0], (uint8_t)(0x10 + k));
		early_tick(&e, 20 * k + 30);
		assert_int_equal(early_take(&e, got, 8), 0);
	}
	/* Nothing arrives for a slot: its tick queues exactly one frame, silence. */
	early_tick(&e, 20 * 50 + 30);
	assert_int_equal(early_take(&e, got, 8), 1);
	assert_int_equal(got[0], 0xff);
	assert_int_equal(e.last_stamp, 0); /* made on the tick: no packet, no stamp */
	struct media_jbuf_stats js;
	media_jbuf_stats(e.d->k->jb, &js);
	assert_true(js.early >= 48);
	media_dsp_destroy(e.d);
}

/* Over a long run with jitter, reordering and loss the AI gets one frame per tick: never
 * more than 2 ahead of the ticks, never behind, and every packet that came in order went
 * up on arrival. */
static void test_media_ai_early_push_one_per_tick(void **state)
{
	(void)state;
	struct early e;
	uint8_t got[8];
	early_open(&e);
	unsigned ticks = 0, frames = 0, early_frames = 0;
	uint32_t rng = 12345;
	unsigned next_tick = 10;
	for (unsigned k = 0; k < 3000; k++) {
		rng = rng * 1103515245u + 12345u;
		unsigned jitter = (rng >> 16) % 8; /* 0..7 ms late */
		unsigned at = 20 * k + jitter;
		while (next_tick <= at) {
			early_tick(&e, next_tick);
			ticks++;
			frames += early_take(&e, got, 8);
			assert_true(frames <= ticks + MEDIA_DSP_AHEAD_MAX);
			assert_true(frames >= ticks);
			next_tick += 20;
		}
		if (k % 97 == 13)
			continue; /* lost */
		uint16_t seq = (uint16_t)k;
		if (k % 53 == 7 && k + 1 < 3000) {
			/* k and k+1 swapped: k+1 first */
			early_pkt(&e, (uint16_t)(seq + 1), at);
			early_pkt(&e, seq, at + 1);
			k++;
		} else if (early_pkt(&e, seq, at)) {
			early_frames++;
		}
		frames += early_take(&e, got, 8);
		assert_true(frames <= ticks + MEDIA_DSP_AHEAD_MAX);
	}
	assert_true(ticks > 2900);
	assert_true(early_frames > 2800);
	media_dsp_destroy(e.d);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	const struct CMUnitTest tests[] = {
	    T(test_media_ai_pcmu_passthrough_and_playout),
	    T(test_media_ai_flush_and_marks),
	    T(test_media_ai_g722_pcm16),
	    T(test_media_ai_pcma_pcm16_narrow),
	    T(test_media_bridge_transcode_and_record),
	    T(test_media_dtmf_interworking),
	    T(test_media_prompt_play),
	    T(test_media_ringback_mx),
	    T(test_media_amd_silence),
	    T(test_media_dsp_10k_frames_no_alloc),
	    T(test_media_ai_early_push),
	    T(test_media_ai_early_push_one_per_tick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
