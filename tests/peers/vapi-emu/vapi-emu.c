/* vapi-emu: a stand-in for api.vapi.ai (POST /call and the call's vapi.websocket transport),
 * scripted by a JSON scenario, reporting what it saw as JSON; a VACS test peer. */
/*
 * One lws context, one vhost on 127.0.0.1 serving HTTP (REST) and ws:// (the transport),
 * one thread. A single 10 ms sul tick drives the scripted actions, the assistant's audio,
 * the timeouts and delayed HTTP answers of every call. The optional webhook sender is the
 * only other thread (emu_webhook.c); its results come back through lws_cancel_service.
 * See README.md for the command line, the scenario format and the report.
 */
#include "emu_audio.h"
#include "emu_webhook.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define TICK_US          10000
#define MAX_HTTP_BODY    (256 * 1024)
#define MAX_WS_MSG       (256 * 1024)
#define TXQ_AUDIO_MAX    256 /* queued audio chunks per call; more are dropped and counted */
#define TXQ_MAX          1024
#define HIST_BINS        20000 /* inter-arrival histogram: 0.1 ms bins up to 2 s */
#define ANA_MAX_S        4     /* seconds of voiced audio kept for the tone analysis */
#define VOICED_RMS       200.0 /* frame RMS (full scale 32767) from which audio is voiced */
#define SPEAK_CHUNK_MS   46
#define SPEAK_CADENCE_MS 92
#define SPEAK_LEAD_MS    100
#define SPEAK_ODD_EVERY  5 /* every 5th chunk is an odd 79-sample one */
#define SPEAK_ODD_SAMPS  79
#define CLOSE_GRACE_US   3000000LL
#define MAX_LIST         10000 /* entries per report list */
#define ORG_ID           "5a1d0c52-3e4f-4b0c-9a7e-0e6d5a1a2b3c"
/* Benchmark tags (bench/tools/aiload.c): a mu-law frame whose first bytes are this magic,
 * the generator's stream id, its packet count and its CLOCK_REALTIME send time (ns). */
#define TAG_MAGIC  0x52544c44u /* "RTLD", little-endian u32 at offset 0 */
#define LAT_FINE   20000u      /* 1 us bins up to 20 ms */
#define LAT_COARSE 10000u      /* 1 ms bins up to 10 s */

enum call_state { CALL_CREATED, CALL_OPEN, CALL_ENDED };
enum tx_kind { TX_TEXT, TX_BIN, TX_PING, TX_CLOSE, TX_DROP };
enum route { ROUTE_NONE, ROUTE_CREATE, ROUTE_NOT_FOUND };

/* One queued WebSocket write. */
struct tx {
	struct tx *next;
	enum tx_kind kind;
	int audio;     /* assistant audio: dropped on interruption */
	int interrupt; /* user-interrupted: its write time is reported */
	int code;      /* TX_CLOSE */
	char type[64]; /* reported in "sent" when not empty */
	json_t *extra; /* merged into the "sent" entry (owned), may be NULL */
	size_t len;
	unsigned char buf[]; /* LWS_PRE + len */
};

/* The assistant speaking a tone in VAPI-like bursts. */
struct speak {
	int active;
	double hz, amp, phase;
	unsigned long long total, pos; /* samples */
	long long t0_us, next_us;      /* start, next burst */
	unsigned chunks;
	int end_after; /* say with endCallAfterSpoken */
	json_t *rec;   /* its entry in call->speaks (borrowed) */
};

struct call {
	struct call *next;
	unsigned index;
	char id[40];
	json_t *request, *scen; /* owned refs */
	json_t *client_messages, *sent, *speaks, *webhooks;
	unsigned long long lists_dropped;
	int auth_header;
	char *user_agent;
	enum call_state state;
	struct lws *wsi;
	int ws_connected, ws_auth_header;
	char *ws_user_agent;
	int mulaw, rate;
	size_t frame_bytes; /* 20 ms */
	long long created_us, created_epoch_ms, open_us, open_epoch_ms, end_us, last_rx_us;
	long long silence_timeout_ms, connect_timeout_ms, max_duration_ms;
	size_t next_action;
	/* receive side */
	unsigned char *rx;
	size_t rx_len, rx_cap;
	int rx_binary, rx_over;
	unsigned long long frames, bytes, bad_size_frames, text_msgs, oversize_msgs, pongs;
	long long prev_frame_us;
	double ia_sum, ia_sumsq, ia_max, ia_p99;
	unsigned long long ia_n, hist_over;
	uint32_t *hist;
	long long first_frame_ms, first_audio_ms;
	double silence_run_ms, longest_silence_ms;
	unsigned long long silent_frames;
	int16_t *ana;
	size_t ana_n, ana_cap;
	double voiced_sumsq;
	unsigned long long voiced_samples;
	struct emu_tone tone;
	/* benchmark tags: the last packet count seen */
	int tag_seen;
	uint32_t tag_last;
	/* send side */
	struct tx *txh, *txt;
	unsigned txn, tx_audio;
	unsigned long long audio_chunks, audio_bytes, tx_dropped;
	struct speak sp;
	int muted, turn;
	long long interrupted_at_ms, interrupted_epoch_ms, interrupted_ahead_ms;
	/* end */
	int closing;
	long long closing_us;
	const char *ended_by;
	char *ended_reason;
	int client_close_code;
};

/* Per connection (HTTP transaction or WebSocket). lws zeroes it. */
struct pss {
	struct lws *wsi;
	struct call *call; /* the WebSocket's call */
	enum route route;
	char *auth, *ua;
	int has_ua;
	char *body;
	size_t body_len;
	int body_over;
	char *resp;
	size_t resp_len;
	int resp_status;
	const char *resp_ctype;
	int hdr_sent, delayed;
	long long due_us;
	struct pss *dnext;
};

static struct {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	int port, verbose;
	const char *key, *report_path, *scen_path, *webhook_url, *webhook_secret;
	long max_calls;
	json_t *scen;
	lws_sorted_usec_list_t sul;
	long long next_tick_us;
	struct call *calls, *calls_tail;
	unsigned ncalls;
	json_t *refused;
	unsigned long long refused_dropped;
	struct pss *delayed;
	long long refuse_call_n, refuse_ws_n;
	int shutting_down;
	/* --report-at-exit: the report is written once, at exit (a benchmark with hundreds
	 * of calls would otherwise rewrite it, whole, at every event) */
	int report_at_exit, final_report;
	/* --bench-out: window counters, reset by SIGUSR1, written by SIGUSR2 */
	const char *bench_out;
	struct {
		long long start_us;
		unsigned long long frames, tagged, untagged, gaps, reordered, bad_size, ia_over_40;
		unsigned long long lat_n, lat_over, lat_max_us, chunks_sent, chunks_dropped;
		double lat_sum_us;
		uint32_t fine[LAT_FINE], coarse[LAT_COARSE];
	} w;
} g;

static volatile sig_atomic_t g_stop, g_usr1, g_usr2;

/* ---------------------------------------------------------------- utilities */

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 1, 2))) static void emu_log(const char *fmt, ...)
{
	va_list ap;
	long long t = epoch_ms();

	fprintf(stderr, "%lld.%03lld vapi-emu: ", t / 1000, t % 1000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *xzalloc(size_t n)
{
	void *p = calloc(1, n);

	if (!p) {
		emu_log("out of memory");
		abort();
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d) {
		emu_log("out of memory");
		abort();
	}
	return d;
}

static void iso_time(long long ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

static void make_uuid(char *out, size_t n)
{
	unsigned char b[16];

	if (lws_get_random(g.ctx, b, sizeof b) != sizeof b) {
		long long t = now_us();
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)((t >> (i % 8 * 8)) ^ (long long)rand());
	}
	b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
	snprintf(out, n, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
	         b[13], b[14], b[15]);
}

/* A header's value as a heap string, NULL when absent. */
static char *hdr_dup(struct lws *wsi, enum lws_token_indexes t)
{
	int n = lws_hdr_total_length(wsi, t);
	char *s;

	if (n <= 0)
		return NULL;
	s = xzalloc((size_t)n + 1);
	if (lws_hdr_copy(wsi, s, n + 1, t) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

static void list_add(struct call *c, json_t *list, json_t *entry)
{
	if (json_array_size(list) >= MAX_LIST) {
		c->lists_dropped++;
		json_decref(entry);
		return;
	}
	json_array_append_new(list, entry);
}

static long long call_ms(const struct call *c, long long now)
{
	return c->open_us ? (now - c->open_us) / 1000 : 0;
}

/* ---------------------------------------------------------------- report */

static void call_summarise(struct call *c)
{
	if (c->hist && c->ia_n) {
		unsigned long long want = (unsigned long long)ceil(0.99 * (double)c->ia_n), cum = 0;
		c->ia_p99 = c->ia_max;
		for (unsigned i = 0; i < HIST_BINS; i++) {
			cum += c->hist[i];
			if (cum >= want) {
				c->ia_p99 = (i + 1) * 0.1;
				if (c->ia_p99 > c->ia_max)
					c->ia_p99 = c->ia_max;
				break;
			}
		}
	}
	if (c->ana && c->ana_n) {
		double hi = c->rate / 2.0 - 100;
		emu_tone_analyse(c->ana, c->ana_n, c->rate, 100, hi < 3900 ? hi : 3900, &c->tone);
	}
}

static json_t *ms_or_null(long long v)
{
	return v < 0 ? json_null() : json_integer(v);
}

static double round1(double v)
{
	return round(v * 10) / 10;
}

static double round2(double v)
{
	return round(v * 100) / 100;
}

static json_t *call_json(struct call *c)
{
	json_t *o = json_object(), *ia = json_object();
	double mean = 0, sd = 0;

	if (c->state != CALL_ENDED)
		call_summarise(c);
	if (c->ia_n) {
		mean = c->ia_sum / (double)c->ia_n;
		sd = sqrt(fmax(0, c->ia_sumsq / (double)c->ia_n - mean * mean));
	}
	json_object_set_new(o, "id", json_string(c->id));
	json_object_set_new(o, "index", json_integer(c->index));
	json_object_set_new(o, "status",
	                    json_string(c->state == CALL_CREATED ? "queued"
	                                : c->state == CALL_OPEN  ? "in-progress"
	                                                         : "ended"));
	json_object_set(o, "request", c->request);
	json_object_set_new(o, "auth_header", json_boolean(c->auth_header));
	json_object_set_new(o, "user_agent",
	                    c->user_agent ? json_string(c->user_agent) : json_null());
	json_object_set_new(o, "created_epoch_ms", json_integer(c->created_epoch_ms));
	json_object_set_new(o, "ws_connected", json_boolean(c->ws_connected));
	json_object_set_new(o, "ws_auth_header", json_boolean(c->ws_auth_header));
	json_object_set_new(o, "ws_user_agent",
	                    c->ws_user_agent ? json_string(c->ws_user_agent) : json_null());
	json_object_set_new(o, "ws_open_epoch_ms",
	                    c->ws_connected ? json_integer(c->open_epoch_ms) : json_null());
	json_object_set_new(o, "format", json_string(c->mulaw ? "mulaw" : "pcm_s16le"));
	json_object_set_new(o, "sample_rate", json_integer(c->rate));
	json_object_set_new(o, "frame_bytes_expected", json_integer((json_int_t)c->frame_bytes));
	json_object_set_new(o, "frames", json_integer((json_int_t)c->frames));
	json_object_set_new(o, "bytes", json_integer((json_int_t)c->bytes));
	json_object_set_new(o, "frame_size_ok", json_boolean(c->frames && !c->bad_size_frames));
	json_object_set_new(o, "bad_size_frames", json_integer((json_int_t)c->bad_size_frames));
	json_object_set_new(ia, "n", json_integer((json_int_t)c->ia_n));
	json_object_set_new(ia, "mean", c->ia_n ? json_real(round2(mean)) : json_null());
	json_object_set_new(ia, "sd", c->ia_n ? json_real(round2(sd)) : json_null());
	json_object_set_new(ia, "p99", c->ia_n ? json_real(round1(c->ia_p99)) : json_null());
	json_object_set_new(ia, "max", c->ia_n ? json_real(round1(c->ia_max)) : json_null());
	json_object_set_new(o, "interarrival_ms", ia);
	json_object_set_new(o, "tone_hz", json_real(round1(c->tone.hz)));
	json_object_set_new(o, "tone_purity", json_real(round(c->tone.purity * 1000) / 1000));
	json_object_set_new(
	    o, "tone_rms",
	    json_real(c->voiced_samples ? round1(sqrt(c->voiced_sumsq / (double)c->voiced_samples))
	                                : 0));
	json_object_set_new(
	    o, "voiced_ms",
	    json_integer((json_int_t)(c->voiced_samples * 1000 / (unsigned)c->rate)));
	json_object_set_new(o, "silent_frames", json_integer((json_int_t)c->silent_frames));
	json_object_set_new(o, "longest_silence_ms",
	                    json_integer((json_int_t)c->longest_silence_ms));
	json_object_set_new(o, "first_frame_ms", ms_or_null(c->first_frame_ms));
	json_object_set_new(o, "first_audio_ms", ms_or_null(c->first_audio_ms));
	json_object_set_new(o, "text_messages", json_integer((json_int_t)c->text_msgs));
	json_object_set_new(o, "oversize_messages", json_integer((json_int_t)c->oversize_msgs));
	json_object_set(o, "client_messages", c->client_messages);
	json_object_set(o, "sent", c->sent);
	json_object_set_new(o, "audio_chunks_sent", json_integer((json_int_t)c->audio_chunks));
	json_object_set_new(o, "audio_bytes_sent", json_integer((json_int_t)c->audio_bytes));
	json_object_set_new(o, "audio_chunks_dropped", json_integer((json_int_t)c->tx_dropped));
	json_object_set(o, "speaks", c->speaks);
	json_object_set_new(o, "pongs", json_integer((json_int_t)c->pongs));
	json_object_set_new(o, "interrupted_at_ms", ms_or_null(c->interrupted_at_ms));
	json_object_set_new(o, "interrupted_epoch_ms", ms_or_null(c->interrupted_epoch_ms));
	json_object_set_new(o, "interrupted_ahead_ms", ms_or_null(c->interrupted_ahead_ms));
	json_object_set(o, "webhooks", c->webhooks);
	json_object_set_new(o, "list_entries_dropped", json_integer((json_int_t)c->lists_dropped));
	json_object_set_new(o, "ended_by", c->ended_by ? json_string(c->ended_by) : json_null());
	json_object_set_new(o, "ended_reason",
	                    c->ended_reason ? json_string(c->ended_reason) : json_null());
	json_object_set_new(o, "client_close_code",
	                    c->client_close_code ? json_integer(c->client_close_code)
	                                         : json_null());
	if (c->state == CALL_ENDED)
		json_object_set_new(
		    o, "duration_ms",
		    json_integer((c->end_us - (c->open_us ? c->open_us : c->created_us)) / 1000));
	else
		json_object_set_new(o, "duration_ms", json_null());
	return o;
}

static void write_report(void)
{
	json_t *root = json_object(), *calls = json_array();
	char tmp[4096];

	if (!g.report_path || (g.report_at_exit && !g.final_report))
		return;
	for (struct call *c = g.calls; c; c = c->next)
		json_array_append_new(calls, call_json(c));
	json_object_set_new(root, "port", json_integer(g.port));
	json_object_set_new(root, "max_calls", json_integer(g.max_calls));
	json_object_set_new(root, "calls", calls);
	json_object_set(root, "refused", g.refused);
	json_object_set_new(root, "refused_dropped", json_integer((json_int_t)g.refused_dropped));
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", g.report_path, (int)getpid());
	if (json_dump_file(root, tmp, JSON_INDENT(1)) || rename(tmp, g.report_path))
		emu_log("cannot write the report %s: %s", g.report_path, strerror(errno));
	json_decref(root);
}

static void add_refused(int status, const char *reason)
{
	json_t *e;

	if (json_array_size(g.refused) >= MAX_LIST) {
		g.refused_dropped++;
		return;
	}
	e = json_pack("{s:i,s:s,s:I}", "status", status, "reason", reason, "epoch_ms",
	              (json_int_t)epoch_ms());
	json_array_append_new(g.refused, e);
	emu_log("refused %d: %s", status, reason);
	write_report();
}

/* ---------------------------------------------------------------- WebSocket send queue */

static struct tx *tx_new(enum tx_kind kind, const void *data, size_t len, const char *type)
{
	struct tx *t = xzalloc(sizeof *t + LWS_PRE + len);

	t->kind = kind;
	t->len = len;
	if (len && data)
		memcpy(t->buf + LWS_PRE, data, len);
	if (type)
		snprintf(t->type, sizeof t->type, "%s", type);
	return t;
}

static void tx_free(struct tx *t)
{
	json_decref(t->extra);
	free(t);
}

/* Queues t (takes it) and asks for a writeable callback. */
static void tx_push(struct call *c, struct tx *t)
{
	if (c->state != CALL_OPEN || c->txn >= TXQ_MAX ||
	    (t->audio && c->tx_audio >= TXQ_AUDIO_MAX)) {
		if (t->audio) {
			c->tx_dropped++;
			g.w.chunks_dropped++;
		}
		tx_free(t);
		return;
	}
	if (c->txt)
		c->txt->next = t;
	else
		c->txh = t;
	c->txt = t;
	c->txn++;
	if (t->audio)
		c->tx_audio++;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

static void tx_drop_audio(struct call *c)
{
	struct tx **pp = &c->txh, *last = NULL;

	while (*pp) {
		struct tx *t = *pp;
		if (t->audio) {
			*pp = t->next;
			c->txn--;
			c->tx_audio--;
			tx_free(t);
		} else {
			last = t;
			pp = &t->next;
		}
	}
	c->txt = last;
}

static void tx_clear(struct call *c)
{
	while (c->txh) {
		struct tx *t = c->txh;
		c->txh = t->next;
		tx_free(t);
	}
	c->txt = NULL;
	c->txn = c->tx_audio = 0;
}

/* Sends a JSON message (borrowed) as a text frame; extra (taken) goes into its "sent" entry. */
static void send_json(struct call *c, json_t *msg, int interrupt, json_t *extra)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	const char *type = json_string_value(json_object_get(msg, "type"));
	struct tx *t;

	if (!s) {
		json_decref(extra);
		return;
	}
	t = tx_new(TX_TEXT, s, strlen(s), type ? type : "(no type)");
	t->interrupt = interrupt;
	t->extra = extra;
	free(s);
	tx_push(c, t);
}

/* ---------------------------------------------------------------- the assistant speaking */

/* Notes how the current speak ended in its report entry and lets the entry go. */
static void speak_close_rec(struct call *c, const char *why)
{
	if (!c->sp.rec)
		return;
	json_object_set_new(c->sp.rec, "stopped", json_string(why));
	json_object_set_new(
	    c->sp.rec, "audio_ms",
	    json_integer((json_int_t)(c->sp.pos * 1000 / (unsigned long long)c->rate)));
	json_decref(c->sp.rec);
	c->sp.rec = NULL;
}

static void speak_stop(struct call *c, const char *why)
{
	json_t *m;

	if (!c->sp.active)
		return;
	c->sp.active = 0;
	tx_drop_audio(c);
	speak_close_rec(c, why);
	m = json_pack("{s:s,s:s,s:s,s:i}", "type", "speech-update", "status", "stopped", "role",
	              "assistant", "turn", c->turn);
	send_json(c, m, 0, NULL);
	json_decref(m);
}

static void speak_start(struct call *c, double hz, double ms, double amp, int end_after,
                        const char *origin)
{
	long long now = now_us();
	json_t *rec, *m;

	rec = json_pack("{s:I,s:f,s:f,s:s,s:b}", "at_ms", (json_int_t)call_ms(c, now), "hz", hz,
	                "ms", ms, "origin", origin, "muted", c->muted);
	list_add(c, c->speaks, json_incref(rec));
	if (c->muted) {
		json_decref(rec);
		return;
	}
	speak_stop(c, "replaced");
	c->turn++;
	memset(&c->sp, 0, sizeof c->sp);
	c->sp.active = 1;
	c->sp.hz = hz;
	c->sp.amp = amp;
	c->sp.total = (unsigned long long)(ms * c->rate / 1000.0);
	c->sp.t0_us = c->sp.next_us = now;
	c->sp.end_after = end_after;
	c->sp.rec = rec; /* owned */
	json_object_set_new(rec, "turn", json_integer(c->turn));
	m = json_pack("{s:s,s:s,s:s,s:i}", "type", "speech-update", "status", "started", "role",
	              "assistant", "turn", c->turn);
	send_json(c, m, 0, NULL);
	json_decref(m);
}

static void call_end(struct call *c, const char *by, const char *reason, int send_status, int code);

static void speak_emit(struct call *c, unsigned long long n)
{
	size_t bps = c->mulaw ? 1 : 2, len = (size_t)n * bps;
	struct tx *t = tx_new(TX_BIN, NULL, len, NULL);
	unsigned char *p = t->buf + LWS_PRE;
	double step = 2.0 * M_PI * c->sp.hz / c->rate;

	for (unsigned long long i = 0; i < n; i++) {
		int16_t s = (int16_t)lrint(c->sp.amp * 32767.0 * sin(c->sp.phase));
		c->sp.phase += step;
		if (c->sp.phase > 2.0 * M_PI)
			c->sp.phase -= 2.0 * M_PI;
		if (c->mulaw) {
			*p++ = emu_ulaw_encode(s);
		} else {
			*p++ = (unsigned char)((uint16_t)s & 0xFF);
			*p++ = (unsigned char)((uint16_t)s >> 8);
		}
	}
	t->audio = 1;
	c->sp.pos += n;
	tx_push(c, t);
}

/* Pairs of ~46 ms chunks every ~92 ms, at most SPEAK_LEAD_MS ahead of real time. */
static void speak_pump(struct call *c, long long now)
{
	unsigned long long chunk = (unsigned long long)c->rate * SPEAK_CHUNK_MS / 1000;

	while (c->sp.active && now >= c->sp.next_us) {
		long long ahead_us = c->sp.next_us - c->sp.t0_us + SPEAK_CADENCE_MS * 1000LL;
		long long cap_us = now - c->sp.t0_us + SPEAK_LEAD_MS * 1000LL;
		unsigned long long target;

		if (ahead_us > cap_us)
			ahead_us = cap_us;
		target = (unsigned long long)(ahead_us * c->rate / 1000000);
		if (target > c->sp.total)
			target = c->sp.total;
		while (c->sp.pos < target) {
			unsigned long long n = chunk;
			if (++c->sp.chunks % SPEAK_ODD_EVERY == 0)
				n = SPEAK_ODD_SAMPS;
			if (n > target - c->sp.pos)
				n = target - c->sp.pos;
			speak_emit(c, n);
		}
		c->sp.next_us += SPEAK_CADENCE_MS * 1000LL;
	}
	if (c->sp.active && c->sp.pos >= c->sp.total) {
		int end_after = c->sp.end_after;
		/* Not speak_stop: the queued audio must still go out. */
		c->sp.active = 0;
		speak_close_rec(c, "done");
		json_t *m = json_pack("{s:s,s:s,s:s,s:i}", "type", "speech-update", "status",
		                      "stopped", "role", "assistant", "turn", c->turn);
		send_json(c, m, 0, NULL);
		json_decref(m);
		if (end_after)
			call_end(c, "emulator", "assistant-ended-call-after-message-spoken", 1,
			         1000);
	}
}

/* ---------------------------------------------------------------- call lifecycle */

/* The emulator ends the call: optional status-update ended, then close (or a TCP drop when
 * code is 0). The call is finished when lws reports the socket closed. */
static void call_end(struct call *c, const char *by, const char *reason, int send_status, int code)
{
	struct tx *t;

	if (c->state != CALL_OPEN || c->closing)
		return;
	c->ended_by = by;
	free(c->ended_reason);
	c->ended_reason = xstrdup(reason);
	c->sp.active = 0;
	speak_close_rec(c, "call-ended");
	tx_drop_audio(c);
	if (send_status) {
		json_t *m = json_pack("{s:s,s:s,s:s}", "type", "status-update", "status", "ended",
		                      "endedReason", reason);
		send_json(c, m, 0, NULL);
		json_decref(m);
	}
	if (code) {
		t = tx_new(TX_CLOSE, reason, strlen(reason) > 100 ? 100 : strlen(reason), "close");
		t->code = code;
		t->extra = json_pack("{s:i}", "code", code);
	} else {
		t = tx_new(TX_DROP, NULL, 0, "drop");
	}
	tx_push(c, t);
	c->closing = 1;
	c->closing_us = now_us();
	emu_log("call %s: ending (%s: %s)", c->id, by, reason);
}

/* The scenario's "end_of_call_report": true: POST an end-of-call-report for the call that
 * just ended (any reason), recorded in "webhooks" like the scripted ones. */
static void end_of_call_report(struct call *c)
{
	json_t *v = json_object_get(c->scen, "end_of_call_report"), *name;
	long long at_ms = call_ms(c, c->end_us), end_ms = epoch_ms();
	char *body;
	int rc;

	if (!v)
		v = json_object_get(g.scen, "end_of_call_report");
	if (!json_is_true(v) || !g.webhook_url)
		return;
	name = json_object_get(c->request, "name");
	body = emu_webhook_end_report(
	    c->id, json_string_value(name), c->ended_reason, json_object_get(c->scen, "actions"),
	    c->next_action, c->open_epoch_ms ? c->open_epoch_ms : c->created_epoch_ms, end_ms);
	rc = body ? emu_webhook_post(c->id, at_ms, "end-of-call-report", body) : -ENOMEM;
	if (rc)
		list_add(c, c->webhooks,
		         json_pack("{s:I,s:s,s:i,s:n,s:s}", "at_ms", (json_int_t)at_ms, "type",
		                   "end-of-call-report", "status", 0, "response", "error",
		                   rc == -ENOTCONN ? "webhook sender stopped" : strerror(-rc)));
}

static void call_finish(struct call *c, const char *by, const char *reason)
{
	if (c->state == CALL_ENDED)
		return;
	if (!c->ended_by) {
		c->ended_by = by;
		free(c->ended_reason);
		c->ended_reason = xstrdup(reason);
	}
	c->state = CALL_ENDED;
	c->end_us = now_us();
	c->wsi = NULL;
	c->sp.active = 0;
	speak_close_rec(c, "call-ended");
	call_summarise(c);
	free(c->hist);
	free(c->ana);
	free(c->rx);
	c->hist = NULL;
	c->ana = NULL;
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	tx_clear(c);
	emu_log("call %s: ended by %s (%s), %llu frames, tone %.1f Hz", c->id, c->ended_by,
	        c->ended_reason ? c->ended_reason : "", c->frames, c->tone.hz);
	end_of_call_report(c);
	write_report();
}

static void call_free(struct call *c)
{
	json_decref(c->request);
	json_decref(c->scen);
	json_decref(c->client_messages);
	json_decref(c->sent);
	json_decref(c->speaks);
	json_decref(c->webhooks);
	free(c->user_agent);
	free(c->ws_user_agent);
	free(c->ended_reason);
	free(c->hist);
	free(c->ana);
	free(c->rx);
	json_decref(c->sp.rec);
	tx_clear(c);
	free(c);
}

static struct call *find_call(const char *id)
{
	for (struct call *c = g.calls; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

static unsigned active_ws(void)
{
	unsigned n = 0;

	for (struct call *c = g.calls; c; c = c->next)
		n += c->state == CALL_OPEN;
	return n;
}

static unsigned active_calls(void)
{
	unsigned n = 0;

	for (struct call *c = g.calls; c; c = c->next)
		n += c->state != CALL_ENDED;
	return n;
}

/* ---------------------------------------------------------------- scripted actions */

static void do_interrupt(struct call *c, json_t *msg, long long now)
{
	if (c->sp.active && c->interrupted_ahead_ms < 0)
		c->interrupted_ahead_ms =
		    (long long)(c->sp.pos * 1000 / (unsigned long long)c->rate) -
		    (now - c->sp.t0_us) / 1000;
	tx_drop_audio(c);
	send_json(c, msg, 1, NULL);
	speak_stop(c, "interrupted");
}

static void do_tool_call(struct call *c, json_t *a)
{
	json_t *args = json_object_get(a, "arguments"), *id = json_object_get(a, "id");
	const char *name = json_string_value(json_object_get(a, "name"));
	char idbuf[48], *argstr;
	json_t *call, *msg;

	if (json_is_string(id)) {
		snprintf(idbuf, sizeof idbuf, "%s", json_string_value(id));
	} else {
		char u[40], hex[40];
		size_t k = 0;
		make_uuid(u, sizeof u);
		for (const char *q = u; *q && k < 24; q++)
			if (*q != '-')
				hex[k++] = *q;
		hex[k] = '\0';
		snprintf(idbuf, sizeof idbuf, "call_%s", hex);
	}
	if (json_is_string(args))
		argstr = xstrdup(json_string_value(args));
	else
		argstr = json_dumps(args ? args : json_object(), JSON_COMPACT);
	if (!argstr)
		argstr = xstrdup("{}");
	call = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", idbuf, "type", "function", "function",
	                 "name", name ? name : "", "arguments", argstr);
	msg = json_pack("{s:s,s:[O],s:[{s:s,s:{s:s},s:O}]}", "type", "tool-calls", "toolCallList",
	                call, "toolWithToolCallList", "type", "function", "function", "name",
	                name ? name : "", "toolCall", call);
	send_json(c, msg, 0, json_pack("{s:s,s:s}", "id", idbuf, "name", name ? name : ""));
	json_decref(msg);
	json_decref(call);
	free(argstr);
}

static void do_webhook(struct call *c, json_t *m, long long at_ms)
{
	json_t *msg = json_deep_copy(m), *body, *call, *name = json_object_get(c->request, "name");
	const char *type, *a = json_string_value(json_object_get(msg, "_auth"));
	char *s, auth[160];
	int rc;

	/* "_auth" (checked at load) overrides the credential of this one POST. */
	snprintf(auth, sizeof auth, "%s", a ? a : "");
	json_object_del(msg, "_auth");
	/* message.call always carries the id and the name vacsd gave (unless the scenario
	 * made "call" something other than an object on purpose). */
	call = json_object_get(msg, "call");
	if (!call) {
		call = json_pack("{s:s}", "type", "vapi.websocketCall");
		json_object_set_new(msg, "call", call);
	}
	if (json_is_object(call) && !json_object_get(call, "id"))
		json_object_set_new(call, "id", json_string(c->id));
	if (json_is_object(call) && json_is_string(name) && !json_object_get(call, "name"))
		json_object_set(call, "name", name);
	if (!json_object_get(msg, "timestamp"))
		json_object_set_new(msg, "timestamp", json_integer(epoch_ms()));
	type = json_string_value(json_object_get(msg, "type"));
	body = json_pack("{s:o}", "message", msg); /* body owns msg (and type) */
	s = json_dumps(body, JSON_COMPACT);
	rc = s ? emu_webhook_post_auth(c->id, at_ms, type ? type : "", s, auth[0] ? auth : NULL)
	       : -ENOMEM;
	if (rc) {
		list_add(c, c->webhooks,
		         json_pack("{s:I,s:s,s:i,s:n,s:s}", "at_ms", (json_int_t)at_ms, "type",
		                   type ? type : "", "status", 0, "response", "error",
		                   rc == -ENOTCONN ? "no --webhook-url" : strerror(-rc)));
	}
	json_decref(body);
}

static void do_action(struct call *c, json_t *a, long long now)
{
	json_t *v;

	if ((v = json_object_get(a, "send"))) {
		const char *type = json_string_value(json_object_get(v, "type"));
		if (type && !strcmp(type, "user-interrupted"))
			do_interrupt(c, v, now);
		else
			send_json(c, v, 0, NULL);
	} else if ((v = json_object_get(a, "speak"))) {
		json_t *hz = json_object_get(v, "hz"), *ms = json_object_get(v, "ms"),
		       *amp = json_object_get(v, "amplitude");
		speak_start(c, hz ? json_number_value(hz) : 440, ms ? json_number_value(ms) : 1000,
		            amp ? json_number_value(amp) : 0.5, 0, "scenario");
	} else if ((v = json_object_get(a, "tool_call"))) {
		do_tool_call(c, v);
	} else if ((v = json_object_get(a, "raw"))) {
		const char *s = json_string_value(v);
		tx_push(c, tx_new(TX_TEXT, s, strlen(s), "raw"));
	} else if ((v = json_object_get(a, "end"))) {
		const char *r = json_string_value(json_object_get(v, "reason"));
		call_end(c, "emulator", r ? r : "assistant-ended-call", 1, 1000);
	} else if ((v = json_object_get(a, "close"))) {
		json_t *code = json_object_get(v, "code");
		const char *r = json_string_value(json_object_get(v, "reason"));
		char why[128];
		int ic = code ? (int)json_integer_value(code) : 1000;
		snprintf(why, sizeof why, "close-%d%s%s", ic, r ? " " : "", r ? r : "");
		call_end(c, "emulator", why, 0, ic);
	} else if (json_object_get(a, "drop")) {
		call_end(c, "drop", "connection-dropped", 0, 0);
	} else if (json_object_get(a, "ping")) {
		tx_push(c, tx_new(TX_PING, "emu", 3, "ping"));
	} else if ((v = json_object_get(a, "webhook"))) {
		do_webhook(c, v, call_ms(c, now));
	}
}

static void run_actions(struct call *c, long long now)
{
	json_t *acts = json_object_get(c->scen, "actions");
	long long el = call_ms(c, now);

	while (c->state == CALL_OPEN && !c->closing && c->next_action < json_array_size(acts)) {
		json_t *a = json_array_get(acts, c->next_action);
		if (json_number_value(json_object_get(a, "at_ms")) > (double)el)
			break;
		c->next_action++;
		do_action(c, a, now);
	}
}

/* ---------------------------------------------------------------- receive side */

/* A benchmark's tagged mu-law frame (bench/tools/aiload.c): counts gaps in the generator's
 * packet numbering and the latency from its send time to now. 1 when tagged. */
static int bench_tag(struct call *c, const unsigned char *b, size_t n)
{
	uint32_t magic, count;
	uint64_t t_tx, t_rx, us;
	struct timespec ts;

	if (!c->mulaw || n != 160)
		return 0;
	memcpy(&magic, b, 4);
	if (magic != TAG_MAGIC)
		return 0;
	memcpy(&count, b + 8, 4);
	memcpy(&t_tx, b + 12, 8);
	clock_gettime(CLOCK_REALTIME, &ts);
	t_rx = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (c->tag_seen && count != c->tag_last + 1) {
		if (count > c->tag_last)
			g.w.gaps += count - c->tag_last - 1;
		else
			g.w.reordered++;
	}
	if (!c->tag_seen || count > c->tag_last)
		c->tag_last = count;
	c->tag_seen = 1;
	us = t_rx > t_tx ? (t_rx - t_tx) / 1000 : 0;
	if (us < LAT_FINE)
		g.w.fine[us]++;
	else if (us / 1000 < LAT_COARSE)
		g.w.coarse[us / 1000]++;
	else
		g.w.lat_over++;
	if (us > g.w.lat_max_us)
		g.w.lat_max_us = us;
	g.w.lat_sum_us += (double)us;
	g.w.lat_n++;
	return 1;
}

static void on_audio(struct call *c, const unsigned char *b, size_t n, long long now)
{
	size_t ns = c->mulaw ? n : n / 2, cap;
	double sumsq = 0, dur_ms;
	int silent = 1;

	c->frames++;
	c->bytes += n;
	g.w.frames++;
	if (bench_tag(c, b, n))
		g.w.tagged++;
	else if (c->mulaw)
		g.w.untagged++;
	if (n != c->frame_bytes) {
		c->bad_size_frames++;
		g.w.bad_size++;
	}
	if (c->prev_frame_us) {
		double ia = (now - c->prev_frame_us) / 1000.0;
		size_t bin = (size_t)(ia / 0.1);
		if (ia > 40.0)
			g.w.ia_over_40++;
		c->ia_sum += ia;
		c->ia_sumsq += ia * ia;
		c->ia_n++;
		if (ia > c->ia_max)
			c->ia_max = ia;
		if (bin < HIST_BINS && c->hist)
			c->hist[bin]++;
		else
			c->hist_over++;
	}
	c->prev_frame_us = now;
	c->last_rx_us = now;
	if (c->first_frame_ms < 0)
		c->first_frame_ms = call_ms(c, now);
	for (size_t i = 0; i < ns; i++) {
		int16_t s;
		if (c->mulaw) {
			if (b[i] != 0xFF && b[i] != 0x7F)
				silent = 0;
			s = emu_ulaw_decode(b[i]);
		} else {
			s = (int16_t)(uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
			if (s)
				silent = 0;
		}
		sumsq += (double)s * s;
	}
	dur_ms = ns * 1000.0 / c->rate;
	if (silent) {
		c->silent_frames++;
		c->silence_run_ms += dur_ms;
		if (c->silence_run_ms > c->longest_silence_ms)
			c->longest_silence_ms = c->silence_run_ms;
		return;
	}
	c->silence_run_ms = 0;
	if (c->first_audio_ms < 0)
		c->first_audio_ms = call_ms(c, now);
	if (!ns || sqrt(sumsq / (double)ns) < VOICED_RMS)
		return;
	c->voiced_sumsq += sumsq;
	c->voiced_samples += ns;
	cap = (size_t)c->rate * ANA_MAX_S;
	if (!c->ana) {
		c->ana = calloc(cap, sizeof *c->ana);
		c->ana_cap = c->ana ? cap : 0;
	}
	for (size_t i = 0; i < ns && c->ana_n < c->ana_cap; i++)
		c->ana[c->ana_n++] = c->mulaw ? emu_ulaw_decode(b[i])
		                              : (int16_t)(uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
}

static const char *const known_types[] = {
    "say", "add-message", "control", "end-call", "send-transport-message", "transfer"};

static void on_text(struct call *c, char *s, size_t n, long long now)
{
	json_error_t err;
	json_t *msg = json_loadb(s, n, 0, &err), *e;
	const char *type = NULL;
	int known = 0;

	c->text_msgs++;
	e = json_pack("{s:I}", "at_ms", (json_int_t)call_ms(c, now));
	if (!json_is_object(msg)) {
		json_object_set_new(e, "type", json_string(msg ? "not-an-object" : "invalid-json"));
		json_t *raw = json_stringn(s, n > 300 ? 300 : n);
		json_object_set_new(e, "raw", raw ? raw : json_string("(not UTF-8)"));
		json_decref(msg);
		list_add(c, c->client_messages, e);
		emu_log("call %s: bad text frame from the client", c->id);
		return;
	}
	type = json_string_value(json_object_get(msg, "type"));
	for (size_t i = 0; type && i < sizeof known_types / sizeof known_types[0]; i++)
		known |= !strcmp(type, known_types[i]);
	json_object_set_new(e, "type", json_string(type ? type : "(no type)"));
	json_object_set(e, "msg", msg);
	if (!known)
		json_object_set_new(e, "unknown", json_true());
	list_add(c, c->client_messages, e);
	if (g.verbose)
		emu_log("call %s: client %s", c->id, type ? type : "(no type)");

	if (!type || c->closing) {
		/* nothing */
	} else if (!strcmp(type, "say")) {
		speak_start(c, 660, 300, 0.5,
		            json_is_true(json_object_get(msg, "endCallAfterSpoken")), "say");
	} else if (!strcmp(type, "control")) {
		const char *ctl = json_string_value(json_object_get(msg, "control"));
		if (ctl && !strcmp(ctl, "mute-assistant")) {
			speak_stop(c, "muted");
			c->muted = 1;
		} else if (ctl && !strcmp(ctl, "unmute-assistant")) {
			c->muted = 0;
		}
	} else if (!strcmp(type, "end-call")) {
		call_end(c, "client", "customer-ended-call", 1, 1000);
	}
	json_decref(msg);
}

static void on_receive(struct call *c, struct lws *wsi, const void *in, size_t len)
{
	long long now = now_us();

	if (lws_is_first_fragment(wsi)) {
		c->rx_len = 0;
		c->rx_over = 0;
		c->rx_binary = lws_frame_is_binary(wsi);
	}
	if (c->rx_len + len > MAX_WS_MSG) {
		c->rx_over = 1;
	} else {
		if (c->rx_len + len + 1 > c->rx_cap) {
			size_t cap = c->rx_cap ? c->rx_cap : 4096;
			while (cap < c->rx_len + len + 1)
				cap *= 2;
			unsigned char *p = realloc(c->rx, cap);
			if (!p) {
				c->rx_over = 1;
				goto fin;
			}
			c->rx = p;
			c->rx_cap = cap;
		}
		if (len)
			memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
	}
fin:
	if (!lws_is_final_fragment(wsi))
		return;
	if (c->rx_over) {
		c->oversize_msgs++;
		c->last_rx_us = now;
	} else if (c->rx_binary) {
		on_audio(c, c->rx, c->rx_len, now);
	} else {
		c->rx[c->rx_len] = '\0';
		on_text(c, (char *)c->rx, c->rx_len, now);
	}
	c->rx_len = 0;
}

/* ---------------------------------------------------------------- REST */

static void http_reset(struct pss *p)
{
	if (p->delayed) {
		for (struct pss **pp = &g.delayed; *pp; pp = &(*pp)->dnext)
			if (*pp == p) {
				*pp = p->dnext;
				break;
			}
		p->delayed = 0;
	}
	free(p->auth);
	free(p->ua);
	free(p->body);
	free(p->resp);
	p->auth = p->ua = p->body = p->resp = NULL;
	p->body_len = p->resp_len = 0;
	p->body_over = p->hdr_sent = p->has_ua = 0;
	p->route = ROUTE_NONE;
}

/* Answers the transaction (takes body); delay_ms > 0 holds the answer back. */
static void http_answer(struct lws *wsi, struct pss *p, int status, const char *ctype, char *body,
                        long long delay_ms)
{
	free(p->resp);
	p->resp = body;
	p->resp_len = strlen(body);
	p->resp_status = status;
	p->resp_ctype = ctype;
	p->hdr_sent = 0;
	if (delay_ms > 0) {
		p->due_us = now_us() + delay_ms * 1000;
		p->delayed = 1;
		p->dnext = g.delayed;
		g.delayed = p;
		return;
	}
	lws_callback_on_writable(wsi);
}

static void http_json(struct lws *wsi, struct pss *p, int status, json_t *j /* taken */,
                      long long delay_ms)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	http_answer(wsi, p, status, "application/json; charset=utf-8", s ? s : xstrdup("{}"),
	            delay_ms);
}

static const char *error_name(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

/* NestJS-style error: {"message":message,"error":...,"statusCode":status}; takes message. */
static void http_error(struct lws *wsi, struct pss *p, int status, json_t *message)
{
	http_json(wsi, p, status,
	          json_pack("{s:o,s:s,s:i}", "message", message, "error", error_name(status),
	                    "statusCode", status),
	          0);
}

static int http_write(struct lws *wsi, struct pss *p)
{
	unsigned char hb[LWS_PRE + 2048], *start = hb + LWS_PRE, *q = start,
	                                  *end = hb + sizeof hb - 1;
	unsigned char *b;
	int n;

	if (!p->resp || p->delayed)
		return 0;
	if (!p->hdr_sent) {
		if (lws_add_http_common_headers(wsi, (unsigned)p->resp_status, p->resp_ctype,
		                                (lws_filepos_t)p->resp_len, &q, end) ||
		    lws_finalize_write_http_header(wsi, start, &q, end))
			return -1;
		p->hdr_sent = 1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	b = xzalloc(LWS_PRE + p->resp_len + 1);
	memcpy(b + LWS_PRE, p->resp, p->resp_len);
	n = lws_write(wsi, b + LWS_PRE, p->resp_len, LWS_WRITE_HTTP_FINAL);
	free(b);
	free(p->resp);
	p->resp = NULL;
	if (n < 0)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

static json_t *call_object(struct call *c)
{
	char created[96], url[160];
	json_t *o, *tr, *af;

	iso_time(c->created_epoch_ms, created, sizeof created);
	snprintf(url, sizeof url, "ws://127.0.0.1:%d/%s/transport", g.port, c->id);
	o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i}", "id", c->id, "orgId", ORG_ID, "createdAt",
	              created, "updatedAt", created, "type", "vapi.websocketCall", "cost", 0);
	json_object_set_new(o, "status",
	                    json_string(c->state == CALL_CREATED ? "queued"
	                                : c->state == CALL_OPEN  ? "in-progress"
	                                                         : "ended"));
	if (c->state == CALL_ENDED && c->ended_reason)
		json_object_set_new(o, "endedReason", json_string(c->ended_reason));
	if (json_object_get(c->request, "assistantId"))
		json_object_set(o, "assistantId", json_object_get(c->request, "assistantId"));
	else
		json_object_set(o, "assistant", json_object_get(c->request, "assistant"));
	if (json_object_get(c->request, "assistantOverrides"))
		json_object_set(o, "assistantOverrides",
		                json_object_get(c->request, "assistantOverrides"));
	if (json_object_get(c->request, "name"))
		json_object_set(o, "name", json_object_get(c->request, "name"));
	af = json_object_get(json_object_get(c->request, "transport"), "audioFormat");
	tr = json_pack("{s:s,s:O,s:s}", "provider", "vapi.websocket", "audioFormat", af,
	               "websocketCallUrl", url);
	json_object_set_new(o, "transport", tr);
	return o;
}

/* Validates a CreateCallDTO; adds one message per problem. */
static void validate(json_t *req, json_t *msgs)
{
	json_t *tr, *af, *v, *ov;
	const char *s;
	int has_id, has_asst;

	if (!json_is_object(req)) {
		json_array_append_new(msgs, json_string("body must be a JSON object"));
		return;
	}
	tr = json_object_get(req, "transport");
	s = json_string_value(json_object_get(tr, "provider"));
	if (!s || strcmp(s, "vapi.websocket"))
		json_array_append_new(
		    msgs, json_string("transport.provider must be one of the following values: "
		                      "vapi.websocket"));
	af = json_object_get(tr, "audioFormat");
	s = json_string_value(json_object_get(af, "format"));
	if (!s || (strcmp(s, "mulaw") && strcmp(s, "pcm_s16le")))
		json_array_append_new(msgs,
		                      json_string("transport.audioFormat.format must be one "
		                                  "of the following values: pcm_s16le, mulaw"));
	v = json_object_get(af, "sampleRate");
	if (!v)
		json_array_append_new(
		    msgs, json_string("transport.audioFormat.sampleRate should not be empty"));
	else if (!json_is_number(v) || json_number_value(v) < 1000 ||
	         json_number_value(v) > 192000 ||
	         json_number_value(v) != floor(json_number_value(v)))
		json_array_append_new(
		    msgs,
		    json_string("transport.audioFormat.sampleRate must be a whole number from "
		                "1000 to 192000 (emulator limit)"));
	v = json_object_get(af, "container");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), "raw")))
		json_array_append_new(msgs, json_string("transport.audioFormat.container must be "
		                                        "one of the following values: raw"));
	has_id = json_object_get(req, "assistantId") != NULL;
	has_asst = json_object_get(req, "assistant") != NULL;
	if (has_id == has_asst)
		json_array_append_new(
		    msgs, json_string(has_id ? "assistantId and assistant cannot both be given"
		                             : "one of assistantId or assistant must be given"));
	else if (has_id && !json_is_string(json_object_get(req, "assistantId")))
		json_array_append_new(msgs, json_string("assistantId must be a string"));
	else if (has_asst && !json_is_object(json_object_get(req, "assistant")))
		json_array_append_new(msgs, json_string("assistant must be an object"));
	if (json_object_get(req, "phoneNumberId") || json_object_get(req, "phoneNumber"))
		json_array_append_new(
		    msgs, json_string("phoneNumber and phoneNumberId cannot be used with the "
		                      "vapi.websocket transport"));
	v = json_object_get(req, "name");
	if (v && !json_is_string(v))
		json_array_append_new(msgs, json_string("name must be a string"));
	ov = json_object_get(req, "assistantOverrides");
	if (ov && !json_is_object(ov)) {
		json_array_append_new(msgs, json_string("assistantOverrides must be an object"));
		return;
	}
	v = json_object_get(ov, "maxDurationSeconds");
	if (v && (!json_is_number(v) || json_number_value(v) < 10 || json_number_value(v) > 43200))
		json_array_append_new(msgs,
		                      json_string("assistantOverrides.maxDurationSeconds must "
		                                  "be a number from 10 to 43200"));
	v = json_object_get(ov, "variableValues");
	if (v && !json_is_object(v))
		json_array_append_new(
		    msgs, json_string("assistantOverrides.variableValues must be an object"));
}

static json_t *scenario_for(unsigned index)
{
	json_t *pc = json_object_get(g.scen, "per_call");

	if (index < json_array_size(pc))
		return json_array_get(pc, index);
	return g.scen;
}

static long long scen_int(json_t *s, const char *key, long long dflt)
{
	json_t *v = json_object_get(s, key);

	if (!v)
		v = json_object_get(g.scen, key);
	return v ? (long long)json_number_value(v) : dflt;
}

static void create_call(struct lws *wsi, struct pss *p, json_t *req /* taken */)
{
	struct call *c = xzalloc(sizeof *c);
	json_t *af = json_object_get(json_object_get(req, "transport"), "audioFormat");
	json_t *md =
	    json_object_get(json_object_get(req, "assistantOverrides"), "maxDurationSeconds");

	c->index = g.ncalls++;
	make_uuid(c->id, sizeof c->id);
	c->request = req;
	c->scen = json_incref(scenario_for(c->index));
	c->client_messages = json_array();
	c->sent = json_array();
	c->speaks = json_array();
	c->webhooks = json_array();
	c->auth_header = p->auth != NULL;
	c->user_agent = xstrdup(p->ua);
	c->mulaw = !strcmp(json_string_value(json_object_get(af, "format")), "mulaw");
	c->rate = (int)json_number_value(json_object_get(af, "sampleRate"));
	c->frame_bytes = (size_t)(c->rate / 50) * (c->mulaw ? 1 : 2);
	c->created_us = now_us();
	c->created_epoch_ms = epoch_ms();
	c->silence_timeout_ms = scen_int(c->scen, "silence_timeout_ms", 0);
	c->connect_timeout_ms = scen_int(c->scen, "connect_timeout_ms", 10000);
	c->max_duration_ms = md ? (long long)(json_number_value(md) * 1000) : 600000;
	c->first_frame_ms = c->first_audio_ms = -1;
	c->interrupted_at_ms = c->interrupted_epoch_ms = c->interrupted_ahead_ms = -1;
	if (g.calls_tail)
		g.calls_tail->next = c;
	else
		g.calls = c;
	g.calls_tail = c;
	emu_log("call %s created (%s %d Hz, UA %s)", c->id, c->mulaw ? "mulaw" : "pcm_s16le",
	        c->rate, p->ua ? p->ua : "-");
	http_json(wsi, p, 201, call_object(c), scen_int(g.scen, "call_delay_ms", 0));
	write_report();
}

static int auth_ok(const char *auth)
{
	if (!auth || strncmp(auth, "Bearer ", 7) || !auth[7])
		return 0;
	return !g.key || !strcmp(auth + 7, g.key);
}

static void unauthorized(struct lws *wsi, struct pss *p)
{
	add_refused(401, p->auth ? "wrong key" : "no Authorization");
	http_json(wsi, p, 401,
	          json_pack("{s:s,s:s,s:i}", "message",
	                    "Invalid Key. Hot tip, you may be using the private key instead of the "
	                    "public key, or vice versa.",
	                    "error", "Unauthorized", "statusCode", 401),
	          0);
}

static void cloudflare_1010(struct lws *wsi, struct pss *p)
{
	add_refused(403, "no User-Agent (Cloudflare error code: 1010)");
	http_answer(wsi, p, 403, "text/plain; charset=UTF-8", xstrdup("error code: 1010"), 0);
}

static void handle_create(struct lws *wsi, struct pss *p)
{
	json_t *rc = json_object_get(g.scen, "refuse_call"), *req, *msgs;
	json_error_t err;

	if (!p->has_ua) {
		cloudflare_1010(wsi, p);
		return;
	}
	if (!auth_ok(p->auth)) {
		unauthorized(wsi, p);
		return;
	}
	if (rc && (!json_integer_value(json_object_get(rc, "count")) ||
	           g.refuse_call_n < json_integer_value(json_object_get(rc, "count")))) {
		json_t *st = json_object_get(rc, "status"), *b = json_object_get(rc, "body");
		int status = st ? (int)json_integer_value(st) : 500;
		char why[64];
		g.refuse_call_n++;
		snprintf(why, sizeof why, "scenario refuse_call #%lld", g.refuse_call_n);
		add_refused(status, why);
		if (json_is_string(b))
			http_answer(wsi, p, status, "text/plain; charset=UTF-8",
			            xstrdup(json_string_value(b)), 0);
		else
			http_json(wsi, p, status,
			          b ? json_incref(b)
			            : json_pack("{s:s,s:s,s:i}", "message", "scenario refusal",
			                        "error", error_name(status), "statusCode", status),
			          0);
		return;
	}
	if (p->body_over) {
		add_refused(413, "body too large");
		http_error(wsi, p, 413, json_string("request entity too large"));
		return;
	}
	req = json_loadb(p->body ? p->body : "", p->body_len, 0, &err);
	msgs = json_array();
	validate(req, msgs);
	if (json_array_size(msgs)) {
		char *s = json_dumps(msgs, JSON_COMPACT);
		add_refused(400, s ? s : "invalid body");
		free(s);
		json_decref(req);
		http_error(wsi, p, 400, msgs);
		return;
	}
	json_decref(msgs);
	if (g.max_calls >= 0 && active_calls() >= (unsigned long)g.max_calls) {
		/* The real API's answer is not documented; VAPI ends such a call with
		 * call.start.error-subscription-concurrency-limit-reached. */
		add_refused(400, "Over Concurrency Limit.");
		json_decref(req);
		http_error(wsi, p, 400, json_string("Over Concurrency Limit."));
		return;
	}
	create_call(wsi, p, req);
}

static void handle_get(struct lws *wsi, struct pss *p, const char *path)
{
	struct call *c;

	if (!p->has_ua) {
		cloudflare_1010(wsi, p);
		return;
	}
	if (strncmp(path, "/call/", 6)) {
		http_error(wsi, p, 404, json_string("Cannot GET"));
		return;
	}
	if (!auth_ok(p->auth)) {
		unauthorized(wsi, p);
		return;
	}
	c = find_call(path + 6);
	if (!c) {
		http_error(wsi, p, 404, json_string("Call not found"));
		return;
	}
	http_json(wsi, p, 200, call_object(c), 0);
}

/* ---------------------------------------------------------------- WebSocket upgrade */

static struct call *call_from_uri(struct lws *wsi)
{
	char uri[256], *slash;

	if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 1 || uri[0] != '/')
		return NULL;
	uri[strcspn(uri, "?")] = '\0';
	slash = strchr(uri + 1, '/');
	if (!slash || strcmp(slash, "/transport"))
		return NULL;
	*slash = '\0';
	return find_call(uri + 1);
}

static int confirm_upgrade(struct lws *wsi)
{
	json_t *rw = json_object_get(g.scen, "refuse_ws");
	struct call *c = call_from_uri(wsi);
	char uri[200] = "", why[300];

	lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
	if (!c || c->state != CALL_CREATED) {
		snprintf(why, sizeof why, "ws upgrade %s: %s", uri,
		         c ? "call already connected or ended" : "unknown call");
		add_refused(404, why);
		lws_return_http_status(wsi, 404, NULL);
		return 1;
	}
	if (rw && (!json_integer_value(json_object_get(rw, "count")) ||
	           g.refuse_ws_n < json_integer_value(json_object_get(rw, "count")))) {
		json_t *st = json_object_get(rw, "status");
		int status = st ? (int)json_integer_value(st) : 500;
		g.refuse_ws_n++;
		snprintf(why, sizeof why, "ws upgrade %s: scenario refuse_ws #%lld", uri,
		         g.refuse_ws_n);
		add_refused(status, why);
		lws_return_http_status(wsi, (unsigned)status, NULL);
		return 1;
	}
	/* No per-session data exists yet here (p is NULL): note the headers on the call. */
	c->ws_auth_header = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
	free(c->ws_user_agent);
	c->ws_user_agent = hdr_dup(wsi, WSI_TOKEN_HTTP_USER_AGENT);
	return 0;
}

static int ws_established(struct lws *wsi, struct pss *p)
{
	struct call *c = call_from_uri(wsi);

	if (!c || c->state != CALL_CREATED)
		return -1;
	p->call = c;
	c->wsi = wsi;
	c->state = CALL_OPEN;
	c->ws_connected = 1;
	c->open_us = c->last_rx_us = now_us();
	c->open_epoch_ms = epoch_ms();
	c->hist = calloc(HIST_BINS, sizeof *c->hist);
	emu_log("call %s: socket open (Authorization %s)", c->id, c->ws_auth_header ? "yes" : "no");
	run_actions(c, c->open_us);
	write_report();
	return 0;
}

static int ws_writeable(struct lws *wsi, struct call *c)
{
	struct tx *t = c->txh;
	long long now = now_us();
	int n, wt;

	if (!t)
		return 0;
	c->txh = t->next;
	if (!c->txh)
		c->txt = NULL;
	c->txn--;
	if (t->audio)
		c->tx_audio--;
	if (t->type[0]) {
		json_t *e =
		    json_pack("{s:I,s:s}", "at_ms", (json_int_t)call_ms(c, now), "type", t->type);
		if (t->extra)
			json_object_update(e, t->extra);
		list_add(c, c->sent, e);
	}
	if (t->interrupt && c->interrupted_at_ms < 0) {
		c->interrupted_at_ms = call_ms(c, now);
		c->interrupted_epoch_ms = epoch_ms();
	}
	switch (t->kind) {
	case TX_CLOSE:
		lws_close_reason(wsi, (enum lws_close_status)t->code, t->buf + LWS_PRE, t->len);
		tx_free(t);
		return -1;
	case TX_DROP:
		shutdown(lws_get_socket_fd(wsi), SHUT_RDWR);
		tx_free(t);
		return -1;
	case TX_PING:
		wt = LWS_WRITE_PING;
		break;
	case TX_BIN:
		wt = LWS_WRITE_BINARY;
		c->audio_chunks++;
		c->audio_bytes += t->len;
		g.w.chunks_sent++;
		break;
	default:
		wt = LWS_WRITE_TEXT;
		break;
	}
	n = lws_write(wsi, t->buf + LWS_PRE, t->len, (enum lws_write_protocol)wt);
	tx_free(t);
	if (n < 0) {
		emu_log("call %s: write failed", c->id);
		return -1;
	}
	if (c->txh)
		lws_callback_on_writable(wsi);
	return 0;
}

/* ---------------------------------------------------------------- webhook results */

static void webhook_wake(void *arg)
{
	(void)arg;
	lws_cancel_service(g.ctx);
}

static void drain_webhooks(void)
{
	struct emu_webhook_result *r = emu_webhook_take();
	int any = r != NULL;

	while (r) {
		struct emu_webhook_result *next = r->next;
		struct call *c = find_call(r->call_id);
		if (c) {
			json_error_t err;
			json_t *resp = r->body ? json_loads(r->body, 0, &err) : NULL;
			json_t *e = json_pack("{s:I,s:s,s:i,s:I}", "at_ms", (json_int_t)r->at_ms,
			                      "type", r->type ? r->type : "", "status", r->status,
			                      "elapsed_ms", (json_int_t)r->elapsed_ms);
			if (resp)
				json_object_set_new(e, "response", resp);
			else
				json_object_set_new(e, "response",
				                    r->body ? json_string(r->body) : json_null());
			if (r->error)
				json_object_set_new(e, "error", json_string(r->error));
			if (r->auth)
				json_object_set_new(e, "auth", json_string(r->auth));
			list_add(c, c->webhooks, e);
			emu_log("call %s: webhook %s -> %d", c->id, r->type ? r->type : "",
			        r->status);
		}
		emu_webhook_result_free(r);
		r = next;
	}
	if (any)
		write_report();
}

/* ---------------------------------------------------------------- the tick */

static void tick(lws_sorted_usec_list_t *sul)
{
	long long now = now_us();

	(void)sul;
	for (struct call *c = g.calls; c; c = c->next) {
		if (c->state == CALL_CREATED) {
			if (c->connect_timeout_ms > 0 &&
			    now - c->created_us >= c->connect_timeout_ms * 1000) {
				c->ended_by = "emulator";
				c->ended_reason = xstrdup(
				    "call.in-progress.error-vapifault-transport-never-connected");
				call_finish(c, NULL, NULL);
			}
			continue;
		}
		if (c->state != CALL_OPEN)
			continue;
		if (c->closing) {
			if (now - c->closing_us > CLOSE_GRACE_US && c->wsi) {
				/* The peer does not read; cut the connection. */
				shutdown(lws_get_socket_fd(c->wsi), SHUT_RDWR);
				lws_callback_on_writable(c->wsi);
				c->closing_us = now;
			}
			continue;
		}
		run_actions(c, now);
		if (c->state != CALL_OPEN || c->closing)
			continue;
		speak_pump(c, now);
		if (c->closing)
			continue;
		if (c->silence_timeout_ms > 0 &&
		    now - c->last_rx_us >= c->silence_timeout_ms * 1000) {
			call_end(c, "silence-timeout", "silence-timed-out", 1, 1000);
			continue;
		}
		if (c->max_duration_ms > 0 && now - c->open_us >= c->max_duration_ms * 1000)
			call_end(c, "emulator", "exceeded-max-duration", 1, 1000);
	}
	for (struct pss **pp = &g.delayed; *pp;) {
		struct pss *p = *pp;
		if (now >= p->due_us) {
			*pp = p->dnext;
			p->delayed = 0;
			lws_callback_on_writable(p->wsi);
		} else {
			pp = &p->dnext;
		}
	}
	g.next_tick_us += TICK_US;
	if (g.next_tick_us <= now)
		g.next_tick_us = now + TICK_US;
	lws_sul_schedule(g.ctx, 0, &g.sul, tick, g.next_tick_us - now);
}

/* ---------------------------------------------------------------- lws callback */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
	struct pss *p = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP: {
		const char *path = in ? (const char *)in : "/";
		http_reset(p);
		p->wsi = wsi;
		p->auth = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
		p->ua = hdr_dup(wsi, WSI_TOKEN_HTTP_USER_AGENT);
		p->has_ua = p->ua != NULL;
		if (g.verbose)
			emu_log("HTTP %s %s",
			        lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) ? "POST" : "GET",
			        path);
		if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI)) {
			char exp[32] = "";
			p->route = !strcmp(path, "/call") ? ROUTE_CREATE : ROUTE_NOT_FOUND;
			lws_hdr_copy(wsi, exp, sizeof exp, WSI_TOKEN_HTTP_EXPECT);
			if (!strcasecmp(exp, "100-continue")) {
				/* lws 4.1.6 never answers Expect; curl would wait 1 s. */
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				if (send(lws_get_socket_fd(wsi), cont, sizeof cont - 1,
				         MSG_NOSIGNAL) < 0)
					return -1;
			}
			return 0; /* the body follows */
		}
		if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) {
			handle_get(wsi, p, path);
			return 0;
		}
		http_error(wsi, p, 405, json_string("method not allowed"));
		return 0;
	}
	case LWS_CALLBACK_HTTP_BODY:
		if (p->body_len + len > MAX_HTTP_BODY) {
			p->body_over = 1;
			return 0;
		}
		if (len) {
			char *b = realloc(p->body, p->body_len + len + 1);
			if (!b)
				return -1;
			p->body = b;
			memcpy(p->body + p->body_len, in, len);
			p->body_len += len;
			p->body[p->body_len] = '\0';
		}
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (p->route == ROUTE_CREATE)
			handle_create(wsi, p);
		else
			http_error(wsi, p, 404, json_string("Cannot POST"));
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return http_write(wsi, p);
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (p)
			http_reset(p);
		return 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return confirm_upgrade(wsi);
	case LWS_CALLBACK_ESTABLISHED:
		return ws_established(wsi, p);
	case LWS_CALLBACK_RECEIVE:
		if (p->call && p->call->state == CALL_OPEN)
			on_receive(p->call, wsi, in, len);
		return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (p->call)
			p->call->pongs++;
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (p->call && len >= 2) {
			const unsigned char *b = in;
			p->call->client_close_code = (b[0] << 8) | b[1];
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!p->call || p->call->wsi != wsi)
			return 0;
		return ws_writeable(wsi, p->call);
	case LWS_CALLBACK_CLOSED:
		if (p->call && p->call->wsi == wsi) {
			struct call *c = p->call;
			if (g.shutting_down)
				call_finish(c, "shutdown", "emulator-shutdown");
			else if (c->client_close_code)
				call_finish(c, "client", "client-closed");
			else
				call_finish(c, "client", "connection-lost");
		}
		p->call = NULL;
		return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		drain_webhooks();
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"vapi-emu", callback, sizeof(struct pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---------------------------------------------------------------- scenario */

/* Removes // comments (outside strings) in place. */
static void strip_comments(char *s)
{
	char *w = s;
	int in_str = 0;

	while (*s) {
		if (in_str) {
			if (*s == '\\' && s[1]) {
				*w++ = *s++;
			} else if (*s == '"') {
				in_str = 0;
			}
			*w++ = *s++;
		} else if (*s == '"') {
			in_str = 1;
			*w++ = *s++;
		} else if (s[0] == '/' && s[1] == '/') {
			while (*s && *s != '\n')
				s++;
		} else {
			*w++ = *s++;
		}
	}
	*w = '\0';
}

static const char *const action_keys[] = {"send",  "speak", "tool_call", "raw",    "end",
                                          "close", "drop",  "ping",      "webhook"};

static int check_number(json_t *o, const char *key, const char *where)
{
	json_t *v = json_object_get(o, key);

	if (v && (!json_is_number(v) || json_number_value(v) < 0)) {
		fprintf(stderr, "vapi-emu: %s: %s must be a number >= 0\n", where, key);
		return -1;
	}
	return 0;
}

/* Checks and sorts (stably, by at_ms) the actions of one scenario object. */
static int check_actions(json_t *s, const char *where)
{
	json_t *acts = json_object_get(s, "actions"), *sorted;
	size_t n, i;
	const char *key;
	json_t *v;

	json_object_foreach(s, key, v)
	{
		static const char *const ok[] = {
		    "silence_timeout_ms", "connect_timeout_ms", "actions",       "per_call",
		    "refuse_call",        "refuse_ws",          "call_delay_ms", "comment",
		    "end_of_call_report"};
		int found = 0;
		for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
			found |= !strcmp(key, ok[i]);
		if (!found) {
			fprintf(stderr, "vapi-emu: %s: unknown key \"%s\"\n", where, key);
			return -1;
		}
	}
	if (check_number(s, "silence_timeout_ms", where) ||
	    check_number(s, "connect_timeout_ms", where) || check_number(s, "call_delay_ms", where))
		return -1;
	if (json_object_get(s, "end_of_call_report") &&
	    !json_is_boolean(json_object_get(s, "end_of_call_report"))) {
		fprintf(stderr, "vapi-emu: %s: end_of_call_report must be true or false\n", where);
		return -1;
	}
	if (!acts)
		return 0;
	if (!json_is_array(acts)) {
		fprintf(stderr, "vapi-emu: %s: actions must be an array\n", where);
		return -1;
	}
	n = json_array_size(acts);
	for (i = 0; i < n; i++) {
		json_t *a = json_array_get(acts, i);
		int kinds = 0;
		if (!json_is_object(a) || !json_is_number(json_object_get(a, "at_ms")) ||
		    json_number_value(json_object_get(a, "at_ms")) < 0) {
			fprintf(stderr, "vapi-emu: %s: action %zu needs \"at_ms\" >= 0\n", where,
			        i);
			return -1;
		}
		json_object_foreach(a, key, v)
		{
			int found = !strcmp(key, "at_ms") || !strcmp(key, "comment");
			for (size_t k = 0; k < sizeof action_keys / sizeof action_keys[0]; k++)
				if (!strcmp(key, action_keys[k])) {
					found = 1;
					kinds++;
				}
			if (!found) {
				fprintf(stderr, "vapi-emu: %s: action %zu: unknown key \"%s\"\n",
				        where, i, key);
				return -1;
			}
		}
		if (kinds != 1) {
			fprintf(stderr,
			        "vapi-emu: %s: action %zu needs exactly one of send, speak, "
			        "tool_call, raw, end, close, drop, ping, webhook\n",
			        where, i);
			return -1;
		}
		if ((json_object_get(a, "send") &&
		     !json_is_string(json_object_get(json_object_get(a, "send"), "type"))) ||
		    (json_object_get(a, "raw") && !json_is_string(json_object_get(a, "raw"))) ||
		    (json_object_get(a, "tool_call") &&
		     !json_is_string(json_object_get(json_object_get(a, "tool_call"), "name"))) ||
		    (json_object_get(a, "webhook") &&
		     !json_is_object(json_object_get(a, "webhook"))) ||
		    (json_object_get(a, "speak") && !json_is_object(json_object_get(a, "speak")))) {
			fprintf(
			    stderr,
			    "vapi-emu: %s: action %zu: send needs an object with a \"type\", raw a "
			    "string, tool_call a \"name\", speak and webhook an object\n",
			    where, i);
			return -1;
		}
		v = json_object_get(json_object_get(a, "webhook"), "_auth");
		if (v && !emu_webhook_auth_valid(json_string_value(v))) {
			fprintf(stderr,
			        "vapi-emu: %s: action %zu: webhook \"_auth\" must be \"none\", "
			        "\"wrong\" or a --webhook-auth mode\n",
			        where, i);
			return -1;
		}
	}
	/* Stable insertion sort by at_ms. */
	sorted = json_array();
	for (i = 0; i < n; i++) {
		json_t *a = json_array_get(acts, i);
		double t = json_number_value(json_object_get(a, "at_ms"));
		size_t j = json_array_size(sorted);
		while (j > 0 && json_number_value(
		                    json_object_get(json_array_get(sorted, j - 1), "at_ms")) > t)
			j--;
		json_array_insert(sorted, j, a);
	}
	json_object_set_new(s, "actions", sorted);
	return 0;
}

static int load_scenario(const char *path)
{
	FILE *f;
	char *text;
	long n;
	json_error_t err;
	json_t *pc;

	if (!path) {
		g.scen = json_pack("{s:[{s:i,s:{s:s,s:s}}]}", "actions", "at_ms", 0, "send", "type",
		                   "status-update", "status", "in-progress");
		return 0;
	}
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "vapi-emu: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > 16 * 1024 * 1024 ||
	    fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "vapi-emu: %s: cannot read (or larger than 16 MiB)\n", path);
		fclose(f);
		return -1;
	}
	text = xzalloc((size_t)n + 1);
	if (fread(text, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "vapi-emu: %s: short read\n", path);
		fclose(f);
		free(text);
		return -1;
	}
	fclose(f);
	strip_comments(text);
	g.scen = json_loads(text, 0, &err);
	free(text);
	if (!json_is_object(g.scen)) {
		fprintf(stderr, "vapi-emu: %s:%d: %s\n", path, err.line,
		        g.scen ? "the scenario must be a JSON object" : err.text);
		return -1;
	}
	if (check_actions(g.scen, "scenario"))
		return -1;
	pc = json_object_get(g.scen, "per_call");
	if (pc && !json_is_array(pc)) {
		fprintf(stderr, "vapi-emu: per_call must be an array\n");
		return -1;
	}
	for (size_t i = 0; i < json_array_size(pc); i++) {
		char where[32];
		snprintf(where, sizeof where, "per_call[%zu]", i);
		if (!json_is_object(json_array_get(pc, i)) ||
		    check_actions(json_array_get(pc, i), where))
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- benchmark window */

static double lat_pct(double p)
{
	unsigned long long want, acc = 0;

	if (!g.w.lat_n)
		return -1;
	want = (unsigned long long)(p * (double)g.w.lat_n);
	if (want >= g.w.lat_n)
		want = g.w.lat_n - 1;
	for (unsigned i = 0; i < LAT_FINE; i++) {
		acc += g.w.fine[i];
		if (acc > want)
			return i;
	}
	for (unsigned i = 0; i < LAT_COARSE; i++) {
		acc += g.w.coarse[i];
		if (acc > want)
			return (double)i * 1000.0;
	}
	return (double)g.w.lat_max_us;
}

/* SIGUSR1: a new window starts (the counters restart). */
static void bench_reset(void)
{
	memset(&g.w, 0, sizeof g.w);
	g.w.start_us = now_us();
}

/* SIGUSR2: the window's counters, one JSON object, to --bench-out (replaced atomically). */
static void bench_dump(void)
{
	char tmp[4096];
	FILE *f;

	if (!g.bench_out)
		return;
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", g.bench_out, (int)getpid());
	f = fopen(tmp, "w");
	if (!f) {
		emu_log("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f,
	        "{\"window_s\": %.3f, \"calls_open\": %u, \"frames\": %llu, \"tagged\": %llu, "
	        "\"untagged\": %llu, \"gaps\": %llu, \"reordered\": %llu, \"bad_size\": %llu, "
	        "\"ia_over_40ms\": %llu, \"lat_n\": %llu, \"lat_p50_us\": %.0f, "
	        "\"lat_p99_us\": %.0f, \"lat_p999_us\": %.0f, \"lat_max_us\": %llu, "
	        "\"lat_mean_us\": %.1f, \"chunks_sent\": %llu, \"chunks_dropped\": %llu}\n",
	        g.w.start_us ? (now_us() - g.w.start_us) / 1e6 : 0.0, active_ws(), g.w.frames,
	        g.w.tagged, g.w.untagged, g.w.gaps, g.w.reordered, g.w.bad_size, g.w.ia_over_40,
	        g.w.lat_n, lat_pct(0.50), lat_pct(0.99), lat_pct(0.999), g.w.lat_max_us,
	        g.w.lat_n ? g.w.lat_sum_us / (double)g.w.lat_n : -1.0, g.w.chunks_sent,
	        g.w.chunks_dropped);
	if (fclose(f) || rename(tmp, g.bench_out))
		emu_log("cannot write %s: %s", g.bench_out, strerror(errno));
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		g_usr1 = 1;
	else if (sig == SIGUSR2)
		g_usr2 = 1;
	else
		g_stop = 1;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: vapi-emu --port N (0 = any) --report FILE [--scenario FILE] [--key KEY]\n"
	        "                [--max-calls N] [--webhook-url URL --webhook-secret S]\n"
	        "                [--webhook-auth x-vapi-secret|bearer|header:NAME|hmac-sha256|\n"
	        "                                hmac-sha512-base64|none] [-v]\n"
	        "                [--report-at-exit] [--bench-out FILE]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
	                                     {"scenario", required_argument, NULL, 's'},
	                                     {"report", required_argument, NULL, 'r'},
	                                     {"key", required_argument, NULL, 'k'},
	                                     {"max-calls", required_argument, NULL, 'm'},
	                                     {"webhook-url", required_argument, NULL, 'w'},
	                                     {"webhook-secret", required_argument, NULL, 'S'},
	                                     {"webhook-auth", required_argument, NULL, 'A'},
	                                     {"verbose", no_argument, NULL, 'v'},
	                                     {"report-at-exit", no_argument, NULL, 'R'},
	                                     {"bench-out", required_argument, NULL, 'B'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct lws_context_creation_info info;
	struct sigaction sa;
	int opt, port = -1;
	char *end;

	g.max_calls = 10;
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			port = (int)strtol(optarg, &end, 10);
			if (*end || port < 0 || port > 65535) {
				usage();
				return 2;
			}
			break;
		case 's':
			g.scen_path = optarg;
			break;
		case 'r':
			g.report_path = optarg;
			break;
		case 'k':
			g.key = optarg;
			break;
		case 'm':
			g.max_calls = strtol(optarg, &end, 10);
			if (*end || g.max_calls < 0) {
				usage();
				return 2;
			}
			break;
		case 'w':
			g.webhook_url = optarg;
			break;
		case 'S':
			g.webhook_secret = optarg;
			break;
		case 'A':
			if (emu_webhook_set_auth(optarg)) {
				fprintf(stderr, "vapi-emu: --webhook-auth %s: unknown mode\n",
				        optarg);
				usage();
				return 2;
			}
			break;
		case 'v':
			g.verbose = 1;
			break;
		case 'R':
			g.report_at_exit = 1;
			break;
		case 'B':
			g.bench_out = optarg;
			break;
		default:
			usage();
			return opt == 'h' ? 0 : 2;
		}
	}
	if (port < 0 || !g.report_path || optind != argc) {
		usage();
		return 2;
	}
	if (load_scenario(g.scen_path))
		return 2;
	g.refused = json_array();

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	bench_reset();

	lws_set_log_level(g.verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR | LLL_WARN, NULL);
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
	info.pt_serv_buf_size = 16384;
	info.max_http_header_data = 16384;
	info.timeout_secs = 20;
	g.ctx = lws_create_context(&info);
	if (!g.ctx) {
		fprintf(stderr, "vapi-emu: lws_create_context failed\n");
		return 1;
	}
	info.port = port;
	info.iface = "127.0.0.1";
	info.protocols = protocols;
	info.vhost_name = "vapi-emu";
	g.vh = lws_create_vhost(g.ctx, &info);
	if (!g.vh) {
		fprintf(stderr, "vapi-emu: cannot listen on 127.0.0.1:%d\n", port);
		lws_context_destroy(g.ctx);
		return 1;
	}
	g.port = lws_get_vhost_listen_port(g.vh);
	if (g.webhook_url) {
		int rc = emu_webhook_start(g.webhook_url, g.webhook_secret, webhook_wake, NULL);
		if (rc) {
			fprintf(stderr, "vapi-emu: --webhook-url %s: %s\n", g.webhook_url,
			        strerror(-rc));
			lws_context_destroy(g.ctx);
			return 2;
		}
	}
	write_report();
	printf("vapi-emu listening on 127.0.0.1:%d\n", g.port);
	fflush(stdout);

	g.next_tick_us = now_us() + TICK_US;
	lws_sul_schedule(g.ctx, 0, &g.sul, tick, TICK_US);
	while (!g_stop) {
		if (lws_service(g.ctx, 0) < 0)
			break;
		if (g_usr1) {
			g_usr1 = 0;
			bench_reset();
		}
		if (g_usr2) {
			g_usr2 = 0;
			bench_dump();
		}
	}

	emu_log("stopping");
	g.shutting_down = 1;
	/* Close open sockets properly (1001 going away), waiting at most 500 ms for them. */
	for (struct call *c = g.calls; c; c = c->next)
		call_end(c, "shutdown", "emulator-shutdown", 0, 1001);
	for (long long dl = now_us() + 500000; active_ws() && now_us() < dl;)
		if (lws_service(g.ctx, 0) < 0)
			break;
	emu_webhook_stop();
	drain_webhooks();
	lws_sul_cancel(&g.sul);
	lws_context_destroy(g.ctx);
	for (struct call *c = g.calls; c; c = c->next)
		call_finish(c, "shutdown", "emulator-shutdown");
	g.final_report = 1;
	write_report();
	while (g.calls) {
		struct call *c = g.calls;
		g.calls = c->next;
		call_free(c);
	}
	json_decref(g.refused);
	json_decref(g.scen);
	return 0;
}
