/* Audio processing of legs that need more than relay: decode and encode, the AI port,
 * prompts, tones, recording, AMD and DTMF interworking, run once per 20 ms tick. */
#include "media/dsp_int.h"

#include "core/clock.h"
#include "core/mem.h"
#include "media/buf_int.h"
#include "media/codec_int.h"
#include "media/det_int.h"
#include "media/wav_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

/*
 * A dsp leg's audio moves on the worker's tick, not packet by packet:
 *   rx stage:  jitter buffer -> decode (or conceal, or silence) -> this tick's PCM frame
 *              -> in-band DTMF detector, AMD, the AI port's upstream ring.
 *   tx stage:  one source per tick, by priority: prompt, tone, RFC 4733 event, AI
 *              playout, the bridged peer's rx frame -> in-band DTMF overlay -> encode.
 * Both legs of a bridge are dsp legs or neither is (media.c keeps that true), and every
 * rx stage of a worker runs before any tx stage, so a peer's frame is always this tick's.
 */

struct media_ai_port {
	atomic_int refs;
	enum media_ai_format fmt;
	unsigned frame_bytes;
	media_ai_notify_cb cb;
	void *arg;
	struct media_fring *up;
	struct media_playout *down;
	/* 16 kHz PCM from the AI toward a narrowband (8 kHz G.711) leg: converted as it is
	 * written (AI thread) and kept as 8 kHz mu-law, a quarter of the memory, and the
	 * worker plays it like a mu-law stream. */
	struct media_resampler *down_rs;
	uint8_t down_carry; /* an odd byte left by the last write */
	int has_carry;
	_Atomic uint64_t up_frames;
	/* media_ai_ready: where the worker queues the port (AI thread sets), whether it is
	 * queued (worker sets, media_ai_ready_pop clears), the link while queued. */
	_Atomic(struct media_ai_ready *) ready;
	void *user; /* AI thread only */
	atomic_int queued;
	struct media_ai_port *ready_next;
};

enum media_ai_format media_ai_format_for(enum media_codec leg_codec)
{
	return leg_codec == MEDIA_CODEC_PCMU ? MEDIA_AI_MULAW_8K : MEDIA_AI_PCM16_16K;
}

unsigned media_ai_frame_bytes(enum media_ai_format f)
{
	return f == MEDIA_AI_MULAW_8K ? 160u : f == MEDIA_AI_PCM16_16K ? 640u : 0u;
}

const char *media_ai_format_name(enum media_ai_format f)
{
	return f == MEDIA_AI_MULAW_8K ? "mulaw" : f == MEDIA_AI_PCM16_16K ? "pcm_s16le" : "none";
}

/* Upstream ring depth: 160 ms of mu-law, 80 ms of 16 kHz PCM (2.6 KB) before the AI
 * thread is considered behind (it is woken for every frame). */
#define AI_UP_FRAMES_MULAW 8u
#define AI_UP_FRAMES_PCM16 4u
/* Downstream playout bound: 1 s; the ring is this plus 25 %, 10 KB per call for mu-law
 * (and 16 kHz PCM toward a narrowband leg, kept as mu-law), 40 KB for 16 kHz PCM toward
 * a wideband leg. VAPI sends bursts of ~100 ms, not paced, sometimes far ahead of
 * real time; the AI thread stops reading the socket (TCP flow control: the rest waits in
 * the kernel and at VAPI) while media_ai_queued_ms() is above 700 ms and resumes below
 * 500 ms (vapi/ws.c), and lws hands it at most 1 KB per callback (128 ms of mu-law), so
 * the ring never has to drop audio. The playout's own target is at most 300 ms. */
#define AI_DOWN_BOUND_MS_MULAW 1000u
#define AI_DOWN_BOUND_MS_PCM16 1000u

int media_ai_port_create(struct media_ai_port **out, enum media_ai_format f, unsigned leg_rate,
                         media_ai_notify_cb cb, void *arg)
{
	unsigned fb = media_ai_frame_bytes(f);
	if (!fb)
		return -EINVAL;
	struct media_ai_port *p = mem_zalloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	int mulaw = f == MEDIA_AI_MULAW_8K;
	int err = media_fring_create(&p->up, fb, mulaw ? AI_UP_FRAMES_MULAW : AI_UP_FRAMES_PCM16);
	if (!err && !mulaw && leg_rate == 8000u) {
		err = media_resampler_create(&p->down_rs, 16000u, 8000u, -1);
		mulaw = 1; /* kept as mu-law */
	}
	struct media_playout_opts po;
	memset(&po, 0, sizeof(po));
	po.bound_ms = mulaw ? AI_DOWN_BOUND_MS_MULAW : AI_DOWN_BOUND_MS_PCM16;
	if (!err)
		err = media_playout_create(&p->down, mulaw ? 1u : 2u, &po);
	if (err) {
		media_resampler_destroy(p->down_rs);
		media_fring_destroy(p->up);
		mem_free(p);
		return err;
	}
	atomic_init(&p->refs, 1);
	atomic_init(&p->ready, NULL);
	atomic_init(&p->queued, 0);
	p->fmt = f;
	p->frame_bytes = fb;
	p->cb = cb;
	p->arg = arg;
	*out = p;
	return 0;
}

void media_ai_port_ref(struct media_ai_port *p)
{
	atomic_fetch_add(&p->refs, 1);
}

void media_ai_port_release(struct media_ai_port *p)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	media_fring_destroy(p->up);
	media_playout_destroy(p->down);
	media_resampler_destroy(p->down_rs);
	mem_free(p);
}

void media_ai_port_notify_target(const struct media_ai_port *p, media_ai_notify_cb *cb, void **arg)
{
	*cb = p->cb;
	*arg = p->arg;
}

void media_ai_port_set_ready(struct media_ai_port *p, struct media_ai_ready *r, void *user)
{
	p->user = user;
	atomic_store(&p->ready, r);
}

void *media_ai_port_user(const struct media_ai_port *p)
{
	return p->user;
}

/* Worker: a frame went into an empty ring (or one the AI thread has not looked at since
 * it popped the port): queue the port once, with a reference. */
static void ready_push(struct media_ai_port *p)
{
	struct media_ai_ready *r = atomic_load_explicit(&p->ready, memory_order_acquire);
	if (!r || atomic_exchange(&p->queued, 1))
		return;
	atomic_fetch_add(&p->refs, 1);
	struct media_ai_port *head = atomic_load_explicit(&r->head, memory_order_relaxed);
	do
		p->ready_next = head;
	while (!atomic_compare_exchange_weak_explicit(&r->head, &head, p, memory_order_release,
	                                              memory_order_relaxed));
}

struct media_ai_port *media_ai_ready_pop(struct media_ai_ready *r)
{
	if (!r->taken) {
		/* Everything queued so far, oldest first. */
		struct media_ai_port *l = atomic_exchange_explicit(&r->head, NULL,
		                                                   memory_order_acquire),
		                     *rev = NULL;
		while (l) {
			struct media_ai_port *n = l->ready_next;
			l->ready_next = rev;
			rev = l;
			l = n;
		}
		r->taken = rev;
	}
	struct media_ai_port *p = r->taken;
	if (!p)
		return NULL;
	r->taken = p->ready_next;
	p->ready_next = NULL;
	/* From here a new frame queues the port again (seq_cst: ordered before the ring
	 * reads the caller does next). */
	atomic_store(&p->queued, 0);
	return p;
}

int media_ai_read(struct media_ai_port *p, uint8_t *frame, uint64_t *rx_us)
{
	return media_fring_pop(p->up, frame, rx_us);
}

/* 16 kHz s16le -> 8 kHz mu-law into the playout, in pieces of up to 20 ms. */
static int write_narrow(struct media_ai_port *p, const uint8_t *data, size_t len, uint64_t now)
{
	int rc = 0;
	while (len || p->has_carry) {
		int16_t wide[320], narrow[200];
		uint8_t law[200];
		unsigned n = 0;
		if (p->has_carry) {
			if (!len)
				break;
			wide[n++] = (int16_t)(uint16_t)(p->down_carry | (unsigned)data[0] << 8);
			data++;
			len--;
			p->has_carry = 0;
		}
		while (n < 320 && len >= 2) {
			wide[n++] = (int16_t)(uint16_t)(data[0] | (unsigned)data[1] << 8);
			data += 2;
			len -= 2;
		}
		if (len == 1 && n < 320) {
			p->down_carry = data[0];
			p->has_carry = 1;
			len = 0;
		}
		unsigned m = n ? media_resample(p->down_rs, wide, n, narrow, 200) : 0;
		if (m) {
			media_g711_encode(MEDIA_CODEC_PCMU, narrow, law, m);
			if (media_playout_write(p->down, law, m, now))
				rc = -ENOBUFS;
		}
	}
	return rc;
}

int media_ai_write(struct media_ai_port *p, const uint8_t *data, size_t len)
{
	if (p->down_rs)
		return write_narrow(p, data, len, clock_now_us());
	return media_playout_write(p->down, data, len, clock_now_us());
}

unsigned media_ai_queued_ms(const struct media_ai_port *p)
{
	return media_playout_queued_ms(p->down);
}

void media_ai_flush(struct media_ai_port *p)
{
	if (p->down_rs) {
		media_resampler_reset(p->down_rs);
		p->has_carry = 0;
	}
	media_playout_flush(p->down);
}

int media_ai_mark(struct media_ai_port *p, uint32_t id)
{
	return media_playout_mark(p->down, id);
}

void media_ai_stats(const struct media_ai_port *p, struct media_ai_stats *out)
{
	struct media_playout_stats ps;
	struct media_fring_stats fs;
	media_playout_stats(p->down, &ps);
	media_fring_stats(p->up, &fs);
	memset(out, 0, sizeof(*out));
	out->up_frames = fs.pushed;
	out->up_dropped = fs.dropped;
	out->down_frames_audio = ps.frames_audio;
	out->down_frames_silence = ps.frames_silence;
	out->underruns = ps.underruns;
	out->overrun_bytes = ps.overrun_bytes;
	out->flushes = ps.flushes;
	out->target_ms = ps.target_ms;
	out->depth_ms = ps.depth_ms;
}

/* ---- the leg's codec part ---- */

/* Jitter buffer: 8 packets (160 ms at 20 ms: its hold is at most 100 ms) of up to three
 * frames each (Opus: 1000 B, far above what 20 ms at VoIP bit rates takes); about 5 KB
 * for G.711. */
#define JB_SLOTS 8u

static unsigned alt_rate(unsigned rate)
{
	return rate == 8000u ? 16000u : 8000u;
}

void media_dsp_codec_destroy(struct media_dsp_codec *k)
{
	if (!k)
		return;
	media_coder_destroy(k->coder);
	media_jbuf_destroy(k->jb);
	media_resampler_destroy(k->to_alt);
	media_resampler_destroy(k->from_alt);
	media_dtmf_det_destroy(k->det);
	media_dtmf_gen_destroy(k->gen);
	mem_free(k);
}

int media_dsp_codec_create(struct media_dsp_codec **out, enum media_codec c)
{
	const struct media_codec_desc *d = media_codec_desc(c);
	if (!d)
		return -EINVAL;
	struct media_dsp_codec *k = mem_zalloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	struct media_coder_opts o;
	memset(&o, 0, sizeof(o));
	o.opus_complexity = 5;
	o.opus_fec = 1;
	o.opus_loss_pct = 5;
	o.pcm_rate = d->pcm_rate; /* Opus decodes and encodes at 16 kHz inside VACS */
	int err = media_coder_create(&k->coder, c, &o);
	struct media_jbuf_opts jo;
	memset(&jo, 0, sizeof(jo));
	jo.slots = JB_SLOTS;
	jo.max_payload = d->frame_bytes ? 3u * d->frame_bytes : 1000u;
	if (!err)
		err = media_jbuf_create(&k->jb, d->rtp_clock, &jo);
	k->codec = c;
	k->rate = d->pcm_rate;
	k->fs = k->rate / 50u;
	k->ts_step = media_codec_ts_per_frame(c);
	if (!err)
		err = media_resampler_create(&k->to_alt, k->rate, alt_rate(k->rate), -1);
	if (!err)
		err = media_resampler_create(&k->from_alt, alt_rate(k->rate), k->rate, -1);
	if (!err)
		err = media_dtmf_det_create(&k->det);
	if (!err)
		err = media_dtmf_gen_create(&k->gen);
	if (err) {
		media_dsp_codec_destroy(k);
		return err;
	}
	*out = k;
	return 0;
}

/* ---- worker side ---- */

void media_dsp_reset_rx(struct media_dsp *d)
{
	if (d->k)
		media_jbuf_reset(d->k->jb);
}

static int ai_up(struct media_dsp *d, uint64_t rx_us);

/* Decodes (or conceals) what the jitter buffer gave into this tick's frame d->rx. */
static void rx_decode(struct media_dsp *d, enum media_jbuf_res r, const struct media_jbuf_frame *jf)
{
	struct media_dsp_codec *k = d->k;
	int n = 0;
	d->rx_audio = 0;
	d->rx_raw = NULL;
	d->rx_raw_len = 0;
	if (r == MEDIA_JBUF_PACKET) {
		n = media_coder_decode(k->coder, jf->payload, jf->len, d->rx, MEDIA_PCM_FRAME_MAX);
		if (n > 0) {
			d->rx_raw = jf->payload;
			d->rx_raw_len = jf->len;
		} else {
			d->decode_errors++;
		}
	} else if (r == MEDIA_JBUF_LOST) {
		n = media_coder_conceal(k->coder, jf->next, jf->next_len, d->rx);
		d->concealed++;
	}
	if (n > 0) {
		/* Packets of another duration than 20 ms are cut or padded to one frame: VACS
		 * offers ptime 20 and the peers seen (CUCM, carriers, baresip) keep to it. */
		for (unsigned i = (unsigned)n; i < k->fs; i++)
			d->rx[i] = 0;
		d->rx_audio = 1;
	} else {
		memset(d->rx, 0, k->fs * sizeof(d->rx[0]));
	}
}

int media_dsp_rx_ready(struct media_dsp *d, uint64_t now)
{
	return d->k && media_jbuf_next_ready(d->k->jb, now);
}

int media_dsp_rx_packet(struct media_dsp *d, uint32_t ssrc, uint16_t seq, uint32_t ts,
                        const uint8_t *payload, size_t len, uint64_t now, uint64_t rx_us)
{
	if (!d->k)
		return 0;
	if (!d->rx_have_ssrc || ssrc != d->rx_ssrc) {
		/* A new source (re-INVITE, CUCM transfer): its numbering starts afresh. */
		media_jbuf_reset(d->k->jb);
		d->rx_ssrc = ssrc;
		d->rx_have_ssrc = 1;
	}
	media_jbuf_put(d->k->jb, seq, ts, payload, len, now);
	/* AI upstream: a packet that arrives in order goes up now instead of waiting up to
	 * 20 ms for the tick; the ticks it runs ahead of then queue nothing (rx_ahead). */
	int pushed = 0;
	while (d->ai && d->rx_ahead < MEDIA_DSP_AHEAD_MAX) {
		struct media_jbuf_frame jf;
		if (media_jbuf_get_next(d->k->jb, now, &jf) != MEDIA_JBUF_PACKET)
			break;
		rx_decode(d, MEDIA_JBUF_PACKET, &jf);
		d->rx_ahead++;
		pushed |= ai_up(d, rx_us);
	}
	return pushed;
}

/* Converts frame `pcm` (n samples at the leg rate) to 8 kHz for the detectors, using the
 * leg's to_alt resampler only when the leg is wideband (then nothing else uses it). */
static const int16_t *narrowband(struct media_dsp *d, const int16_t *pcm, int16_t *tmp)
{
	struct media_dsp_codec *k = d->k;
	if (k->rate == 8000u)
		return pcm;
	media_resample(k->to_alt, pcm, k->fs, tmp, MEDIA_FRAME_SAMPLES);
	return tmp;
}

/* Puts this tick's frame (d->rx, or the payload as it came) into the AI ring; 1 when it
 * was queued. */
static int ai_up(struct media_dsp *d, uint64_t rx_us)
{
	struct media_dsp_codec *k = d->k;
	struct media_ai_port *p = d->ai;
	uint8_t frame[640];
	if (p->fmt == MEDIA_AI_MULAW_8K) {
		if (d->rx_raw && d->rx_raw_len == 160u && k->codec == MEDIA_CODEC_PCMU)
			memcpy(frame, d->rx_raw, 160); /* byte pass-through */
		else if (!d->rx_audio)
			memset(frame, 0xff, 160);
		else
			media_g711_encode(MEDIA_CODEC_PCMU, d->rx, frame, 160);
	} else {
		int16_t wide[320];
		const int16_t *src = d->rx;
		if (!d->rx_audio) {
			memset(frame, 0, 640);
			goto push;
		}
		if (k->rate == 8000u) {
			media_resample(k->to_alt, d->rx, k->fs, wide, 320);
			src = wide;
		}
		for (unsigned i = 0; i < 320; i++) {
			frame[2 * i] = (uint8_t)((uint16_t)src[i] & 0xff);
			frame[2 * i + 1] = (uint8_t)((uint16_t)src[i] >> 8);
		}
	}
push:
	if (media_fring_push(p->up, frame, rx_us) != 0)
		return 0;
	ready_push(p);
	return 1;
}

void media_dsp_rx_tick(struct media_dsp *d, uint64_t now, struct media_dsp_emit *em)
{
	struct media_dsp_codec *k = d->k;
	memset(em, 0, sizeof(*em));
	/* this tick's frame went up when its packet came (an AI port detached since: the
	 * tick decodes again, from the next packet on) */
	int pushed = d->ai && d->rx_ahead > 0;
	if (pushed)
		d->rx_ahead--;
	else
		d->rx_ahead = 0;
	if (!k) {
		d->rx_audio = 0;
		d->rx_raw = NULL;
		d->rx_raw_len = 0;
		return;
	}
	if (!pushed) {
		/* The expected packet is taken whenever it is here: an AI leg's (it arrived
		 * while this tick's slot was taken already), and a bridged leg's, whose peer
		 * gets it this tick instead of after a hold (a relay adds no hold either; a
		 * late packet makes the buffer one packet deeper by itself). Otherwise the
		 * jitter buffer's clock decides: a packet not due yet, loss, a pause. */
		struct media_jbuf_frame jf;
		enum media_jbuf_res r = media_jbuf_get_next(k->jb, now, &jf);
		if (r != MEDIA_JBUF_PACKET)
			r = media_jbuf_get(k->jb, now, &jf);
		rx_decode(d, r, &jf);
	}

	int16_t nb[MEDIA_FRAME_SAMPLES];
	const int16_t *pcm8 = NULL;
	if (d->amd || (!d->has_te && k->det)) {
		pcm8 = narrowband(d, d->rx, nb);
		if (!d->has_te) {
			struct media_dtmf_digit dg[4];
			unsigned nd = media_dtmf_det_feed(k->det, pcm8, MEDIA_FRAME_SAMPLES, dg, 4);
			for (unsigned i = 0; i < nd && em->n_digits < 4; i++)
				em->digits[em->n_digits++] = dg[i];
		}
		if (d->amd && !d->amd_done) {
			struct media_amd_result ar;
			int rc = media_amd_feed(d->amd, pcm8, MEDIA_FRAME_SAMPLES, &ar);
			if (rc == 1) {
				/* a machine's greeting may still be going: its end follows */
				d->amd_done =
				    ar.verdict != MEDIA_AMD_MACHINE || !strcmp(ar.reason, "beep");
				em->amd = 1;
				em->amd_verdict = ar.verdict;
				em->amd_ms = ar.ms;
				em->amd_why = ar.reason;
			} else if (rc == 2) {
				d->amd_done = 1;
				em->amd_end = 1;
				em->amd_end_ms = ar.ms;
				em->amd_end_why = ar.reason;
			}
		}
	}
	if (d->ai && !pushed)
		em->notify = ai_up(d, 0);
}

static void from_s16le(const uint8_t *b, int16_t *pcm, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		pcm[i] = (int16_t)(uint16_t)(b[2 * i] | (unsigned)b[2 * i + 1] << 8);
}

/* Fills d->tx from the AI playout; returns 1 with audio (silence included: the AI leg
 * always sends), and may hand back a ready PCMU payload in raw. */
static int tx_from_ai(struct media_dsp *d, uint64_t now, struct media_dsp_emit *em,
                      const uint8_t **raw, size_t *raw_len)
{
	struct media_dsp_codec *k = d->k;
	struct media_ai_port *p = d->ai;
	unsigned nm = 0;
	struct media_playout_mark_ev mk[4];
	media_playout_read(p->down, d->ai_frame, now, mk, 4, &nm);
	for (unsigned i = 0; i < nm; i++) {
		em->marks[i].id = mk[i].id;
		em->marks[i].played = mk[i].status == MEDIA_PLAYOUT_MARK_PLAYED;
	}
	em->n_marks = nm;
	if (p->fmt == MEDIA_AI_MULAW_8K || p->down_rs) {
		media_g711_decode(MEDIA_CODEC_PCMU, d->ai_frame, d->tx, 160);
		if (k->codec == MEDIA_CODEC_PCMU) {
			*raw = d->ai_frame;
			*raw_len = 160;
		}
		if (k->rate != 8000u) {
			int16_t tmp[MEDIA_FRAME_SAMPLES];
			memcpy(tmp, d->tx, sizeof(tmp));
			media_resample(k->from_alt, tmp, 160, d->tx, k->fs);
		}
		return 1;
	}
	int16_t wide[320];
	from_s16le(d->ai_frame, wide, 320);
	if (k->rate == 16000u)
		memcpy(d->tx, wide, sizeof(wide));
	else
		media_resample(k->from_alt, wide, 320, d->tx, k->fs);
	return 1;
}

/* Fills d->tx (and *raw with the frame prepared for the leg's codec) from the prompt; at
 * its end a looped prompt starts again, a once-played one is done (play_done). Returns 1
 * with a frame. */
static int tx_from_prompt(struct media_dsp *d, struct media_dsp_emit *em, const uint8_t **raw,
                          size_t *raw_len)
{
	struct media_dsp_codec *k = d->k;
	unsigned frames = media_prompt_frames(d->prompt, k->codec);
	if (d->prompt_frame >= frames && d->loop)
		d->prompt_frame = 0;
	if (d->prompt_frame >= frames ||
	    media_prompt_frame(d->prompt, k->codec, d->prompt_frame, raw, raw_len) != 0) {
		*raw = NULL;
		*raw_len = 0;
		em->play_done = 1;
		em->play_id = d->play_id;
		media_prompt_unref(d->prompt);
		d->prompt = NULL;
		return 0;
	}
	size_t n = 0;
	const int16_t *pcm = media_prompt_pcm(d->prompt, k->rate, &n);
	size_t at = (size_t)d->prompt_frame * k->fs;
	for (unsigned i = 0; i < k->fs; i++)
		d->tx[i] = at + i < n ? pcm[at + i] : 0;
	d->prompt_frame++;
	return 1;
}

/* Fills d->tx from the bridged peer's rx frame of this tick. */
static int tx_from_peer(struct media_dsp *d, const struct media_dsp *peer, const uint8_t **raw,
                        size_t *raw_len)
{
	struct media_dsp_codec *k = d->k;
	if (!peer || !peer->k || !peer->rx_audio)
		return 0;
	if (peer->k->codec == k->codec && peer->rx_raw) {
		*raw = peer->rx_raw; /* same codec: the payload as it came */
		*raw_len = peer->rx_raw_len;
	}
	if (peer->k->rate == k->rate)
		memcpy(d->tx, peer->rx, k->fs * sizeof(d->tx[0]));
	else
		media_resample(k->from_alt, peer->rx, peer->k->fs, d->tx, k->fs);
	return 1;
}

int media_dsp_tx_tick(struct media_dsp *d, const struct media_dsp *peer, enum media_tone tone,
                      uint32_t tone_pos, uint64_t now, uint8_t *out, size_t cap,
                      struct media_dsp_emit *em, struct media_dsp_tx *tx)
{
	struct media_dsp_codec *k = d->k;
	memset(em, 0, sizeof(*em));
	memset(tx, 0, sizeof(*tx));
	if (!k)
		return 0;
	const uint8_t *raw = NULL;
	size_t raw_len = 0;
	int have = 0;

	if (d->prompt)
		have = tx_from_prompt(d, em, &raw, &raw_len);
	if (!have && tone != MEDIA_TONE_NONE) {
		media_tone_pcm(tone, k->rate, tone_pos * (k->rate / 8000u), d->tx, k->fs);
		have = 1;
	}
	if (!have)
		have = d->ai ? tx_from_ai(d, now, em, &raw, &raw_len)
		             : tx_from_peer(d, peer, &raw, &raw_len);

	/* RFC 4733 toward a leg that negotiated telephone-event: the event packet replaces
	 * the audio packet of the tick. */
	if (d->has_te) {
		uint8_t ev[4];
		int marker = 0, is_new = 0;
		uint32_t ts_off = 0;
		if (media_rfc4733_tx_next(&d->tx4733, ev, &marker, &ts_off, &is_new) == 1) {
			memcpy(out, ev, 4);
			tx->len = 4;
			tx->dtmf = 1;
			tx->marker = marker;
			tx->ts_off = ts_off;
			goto record;
		}
	} else if (media_dtmf_gen_fill(k->gen, d->tx, k->fs, k->rate) == 1) {
		have = 1;
		raw = NULL; /* the tone replaced the audio: encode */
	}
	if (!have)
		goto record;
	if (raw && raw_len <= cap) {
		memcpy(out, raw, raw_len);
		tx->len = raw_len;
	} else {
		int n = media_coder_encode(k->coder, d->tx, out, cap);
		if (n > 0)
			tx->len = (size_t)n;
	}
record:
	if (d->rec)
		media_recorder_push(d->rec, d->rx_audio ? d->rx : NULL,
		                    have && !tx->dtmf ? d->tx : NULL, k->fs);
	return tx->len > 0;
}

void media_dsp_destroy(struct media_dsp *d)
{
	if (!d)
		return;
	media_dsp_codec_destroy(d->k);
	if (d->ai)
		media_ai_port_release(d->ai);
	media_prompt_unref(d->prompt);
	if (d->rec)
		media_recorder_finish(d->rec);
	media_amd_destroy(d->amd);
	mem_free(d);
}
