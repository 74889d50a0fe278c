/* Private to b2bua/: the call model, SDP glue, trunks; all on the sip thread. */
#ifndef VACS_B2BUA_INT_H
#define VACS_B2BUA_INT_H

#include "b2bua/b2bua.h"
#include "db/db.h"
#include "media/media.h"
#include "vapi/vapi.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct conf;
struct conf_trunk;
struct strbuf;

/* ---- SDP (b2bua/sdp.c) ---- */

enum b2b_dir {
	B2B_DIR_INACTIVE = 0,
	B2B_DIR_SENDONLY = 1,
	B2B_DIR_RECVONLY = 2,
	B2B_DIR_SENDRECV = 3
};

#define B2B_SDP_MAX_CODECS 16
#define B2B_SDP_MAX_CRYPTO 8
#define B2B_SDP_MAX_MLINES 8

struct b2b_sdp_codec {
	uint8_t pt;
	char name[24];
	unsigned rate;
};

struct b2b_sdp_crypto {
	unsigned tag;
	enum media_srtp_suite suite;
	uint8_t key[MEDIA_SRTP_MAX_KEY];
};

/* The parts of a remote SDP that a relay needs (the first audio m-line). */
struct b2b_sdp {
	char addr[48];    /* c= address of the audio stream */
	uint32_t addr_be; /* the same, network order (0.0.0.0 = hold) */
	uint16_t port;    /* 0 = audio rejected */
	int secure;       /* RTP/SAVP */
	enum b2b_dir dir;
	struct b2b_sdp_codec codecs[B2B_SDP_MAX_CODECS];
	unsigned n_codecs;
	int pt_dtmf; /* telephone-event/8000 PT, -1 none */
	int pt_cn;   /* CN/8000 PT, -1 none */
	struct b2b_sdp_crypto crypto[B2B_SDP_MAX_CRYPTO];
	unsigned n_crypto; /* suites we know only */
	int rtcp_mux;
	uint16_t rtcp_port; /* a=rtcp, 0 = port + 1 */
	unsigned ptime;
	/* Other m-lines, echoed with port 0 in answers to keep the order. */
	char other_media[B2B_SDP_MAX_MLINES][40]; /* "video 0 RTP/AVP" */
	unsigned n_other;
	unsigned audio_index; /* position of the audio m-line among all m-lines */
};

/* Parses an SDP body. 0, or -EINVAL with *why set to a static reason
 * ("no audio", "bad c= line", "unparsable"). */
int b2b_sdp_parse(const char *body, size_t len, struct b2b_sdp *out, const char **why);

/* What we put in an SDP we send. */
struct b2b_sdp_local {
	const char *addr;
	uint16_t port;
	uint64_t sess_id;
	unsigned version;
	enum b2b_dir dir;
	int secure;
	enum media_codec codecs[4]; /* in preference order */
	unsigned n_codecs;
	int pt_dtmf; /* -1 = none */
	unsigned crypto_tag;
	enum media_srtp_suite suites[4]; /* offered (or the single answered) suites */
	const uint8_t *keys[4];          /* key+salt per suite */
	unsigned n_suites;
	const struct b2b_sdp *answer_to; /* when answering: echo rejected m-lines */
};

/* Builds the SDP text into sb. 0 or -ENOMEM. */
int b2b_sdp_build(const struct b2b_sdp_local *l, struct strbuf *sb);

const char *b2b_codec_name(enum media_codec c);
enum media_codec b2b_codec_parse(const char *name);
uint8_t b2b_codec_static_pt(enum media_codec c);
/* The codec a remote SDP codec entry stands for, or MEDIA_CODEC_NONE. */
enum media_codec b2b_sdp_codec_of(const struct b2b_sdp_codec *c);

/* ---- Calls (b2bua/call.c) ---- */

#define SU_ROOT_MAGIC_T void
#define SU_WAKEUP_ARG_T void
#define SU_TIMER_ARG_T  void
#define NUA_MAGIC_T     void
#define NUA_HMAGIC_T    struct b2b_leg
#include <sofia-sip/nua.h>
#include <sofia-sip/su_wait.h>

enum b2b_leg_state {
	LEG_IDLE = 0,
	LEG_CALLING,  /* INVITE sent / received, no final answer */
	LEG_EARLY,    /* 18x with SDP */
	LEG_ANSWERED, /* 200 sent, waiting for ACK (delayed offer: the answer) */
	LEG_UP,
	LEG_ENDING,
	LEG_GONE,
};

struct b2b_call;

/* One SIP leg: a nua handle and its media session. Embedded in the call. */
struct b2b_leg {
	struct b2b_call *call;
	nua_handle_t *nh; /* NULL when there is none (yet, or any more) */
	const struct conf_trunk *trunk;
	char side;   /* slot: 'a' caller, 'b' callee, 'x' warm-transfer agent, 't' REFER target */
	uint64_t id; /* media owner id */
	enum b2b_leg_state state;
	struct media_session *ms;
	uint16_t local_port;

	/* Our SDP on this leg. */
	uint64_t sess_id;
	unsigned sdp_version;
	enum media_codec codec;
	int pt_dtmf; /* our telephone-event PT on this leg */
	int secure;
	enum media_srtp_suite suite;
	uint8_t key[MEDIA_SRTP_MAX_KEY];
	unsigned crypto_tag;
	/* Suites and keys of the last offer we sent (the answer picks one by tag). */
	enum media_srtp_suite offer_suites[4];
	uint8_t offer_keys[4][MEDIA_SRTP_MAX_KEY];
	unsigned n_offer_suites;
	int offer_pending;  /* we sent an offer; the answer comes in ACK/200 */
	int early_answered; /* a 18x with SDP went out (a leg) */

	/* The far end's last SDP (1.4 KB), allocated when the first one arrives: most calls
	 * use two of a call's four legs. Set with have_remote; freed with the leg. */
	struct b2b_sdp *remote;
	int have_remote;

	unsigned node;       /* b leg: index into the trunk's node order */
	unsigned auth_tries; /* b leg: digest answers sent */
	int final_status;
	su_timer_t *invite_timer;
	su_timer_t *refresh_timer; /* our own session refresh (peer without UPDATE) */
	int refresh_pending;       /* a refresh re-INVITE of ours is out */
	unsigned refresh_ms;       /* period of refresh_timer (re-armed when the leg moves) */
	int reoffer;               /* a re-INVITE with a new media port is out (refer.c) */
	char peer_identity[256];   /* PAI/RPID seen from this leg's far end */
	char contact[128]; /* our Contact on this leg when nua's would be wrong ("" = nua's) */
};

struct b2b_call {
	struct b2b_call *next, *prev;
	struct conf *conf; /* the snapshot the call started with (ref) */
	char id[96];       /* the caller's Call-ID */
	struct b2b_leg a, b;
	struct b2b_leg x;      /* the agent leg of a warm transfer (side 'x'), when any */
	struct b2b_xfer *xfer; /* the transfer in progress or done (transfer.c), or NULL */
	/* A REFER being honoured (refer.c): the target is called on slot t and, once it
	 * answers, swapped into the referrer's slot, so a/b/x keep meaning "bridged". */
	struct b2b_leg t;
	struct b2b_refer *refer; /* the REFER in progress, or NULL */
	json_t *refers;          /* the call record's "refers" entries (NULL = none yet) */
	int ai_speaking;         /* the assistant's speech-update said started, not stopped */
	const struct conf_trunk *counted; /* the trunk whose active_calls counts this call */
	int ended;
	unsigned step_seq; /* the next call_events seq (b2b_call_step) */
	uint64_t start_ms, ring_ms, answer_ms, end_ms;
	char caller[64], caller_e164[64], called[64], called_e164[64], target[64];
	char caller_display[64]; /* quotes and control characters removed */
	const char *route;
	const struct conf_route *route_cfg; /* in conf */
	char recording[512];                /* the WAV being written ("" = none) */
	/* The AI leg (route to "ai"): the VAPI call, its audio format, what VAPI said. */
	struct vapi_call *ai;
	struct b2b_leg *ai_on; /* the leg whose media feeds the AI port (NULL = none) */
	su_timer_t *ai_timer;  /* create + connect deadline */
	enum media_ai_format ai_format;
	char ai_id[64];       /* VAPI call id */
	char ai_end[96];      /* VAPI's endedReason, or why the AI leg failed */
	unsigned transcripts; /* final transcript lines seen */
	json_t *ai_lines;     /* the transcript kept for the record: [{ms, role, text}] */
	size_t ai_lines_bytes;
	int amd_verdict; /* enum media_amd_verdict, 0 = none (yet) */
	unsigned amd_ms;
	const char *amd_why; /* static text from media/ */
	int privacy_id;
	char *diversion; /* Diversion header values to pass on (mem_) */
	char end_reason[96];
	char hangup_side; /* 'a', 'b' or 'n' (vacsd) */
	int sip_code;
	unsigned dtmf_digits;
	unsigned node_order[16]; /* b trunk node indexes in try order */
	unsigned n_nodes;

	/* Outbound AI calls (b2b_originate): the lead is leg b, leg a is unused. */
	int outbound;
	char assistant[96]; /* outbound: the assistantId */
	char *variables;    /* outbound: variableValues JSON text (mem_), NULL = none */
	char lead_id[64], ref[96];
	enum b2b_amd_action amd_action; /* outbound: on a machine verdict */
	char amd_prompt[256];           /* outbound, MESSAGE: the WAV's path */
	int amd_acted;                  /* the action ran (once per call) */
	su_timer_t *ring_timer;         /* outbound: the lead did not answer in ring_timeout */
	uint64_t ai_speech_ms;          /* the assistant first started speaking (speech-update) */
	char *ai_summary;               /* end-of-call-report analysis.summary (mem_) */
	double ai_cost;                 /* end-of-call-report cost, < 0 = none */
	/* The AI leg's fallback (conf_ai_fallback of the route or of outbound). */
	const struct conf_ai_fallback *fallback;
	int fb_state;    /* enum fb_state in call.c */
	char fb_why[96]; /* why the fallback ran */
};

/* Runtime state of a trunk (registration, node health); rebuilt on reload. */
#define B2B_MAX_NODES 16
struct b2b_node_rt {
	int up;
	int probe_pending;
	uint64_t next_probe_ms;
	struct b2b_leg probe; /* side 'o': hmagic of the OPTIONS probe handle */
	struct metric *m_up;
};

struct b2b_trunk_rt {
	const struct conf_trunk *t;
	struct b2b_leg reg; /* side 'r': hmagic of the REGISTER handle */
	int registered;
	unsigned reg_failures;
	uint64_t reg_retry_ms;
	unsigned active_calls;
	struct b2b_node_rt nodes[B2B_MAX_NODES];
};

/* Everything the sip thread owns. */
struct b2b_global {
	su_home_t home[1];
	su_root_t *root;
	nua_t *nua;
	void *mclass; /* extended SIP parser (PAI, RPID), freed at close */
	struct conf *conf;
	struct b2b_call *calls;
	unsigned n_calls;
	uint64_t next_leg_id;
	int draining;
	int shutdown_sent;
	uint64_t drain_deadline_ms;
	int sig_fd;
	su_wait_t sig_wait[1];
	su_wait_t media_wait[1];
	su_timer_t *tick;
	struct b2b_trunk_rt *trunks;
	size_t n_trunks;
	int cdr_fd;
	char our_host[64];
	int vapi_up; /* VAPI calls can be made */
	su_wait_t vapi_wait[1];
	su_wait_t api_wait[1];
	int api_registered;
};
extern struct b2b_global b2b_g;

/* call.c: helpers shared with transfer.c and refer.c */
#define LEG_CONTACT(leg) TAG_IF((leg)->contact[0], SIPTAG_CONTACT_STR((leg)->contact))
int b2b_leg_answered(const struct b2b_leg *leg);
void b2b_call_set_end(struct b2b_call *call, char side, int code, const char *why);
void b2b_leg_media_apply(struct b2b_leg *leg, int live);
int b2b_leg_media_create(struct b2b_leg *leg, struct media_session *pin);
/* A full offer on leg (prefer first); caller frees (mem_). */
char *b2b_leg_offer(struct b2b_leg *leg, enum media_codec prefer, unsigned only_mask);
int b2b_leg_take_answer(struct b2b_leg *leg, const struct b2b_sdp *ans);
/* Keeps sdp as the leg's remote SDP (leg->remote allocated on first use). 0 or -ENOMEM. */
int b2b_leg_keep_remote(struct b2b_leg *leg, const struct b2b_sdp *sdp);
/* Frees the leg's remote SDP (have_remote = 0). */
void b2b_leg_drop_remote(struct b2b_leg *leg);
/* The SDP body of a message: 0, 1 when there is none, -EINVAL with *why. */
int b2b_sip_sdp(const sip_t *sip, struct b2b_sdp *out, const char **why);
void b2b_leg_set_contact(struct b2b_leg *leg, int tls);
/* Sends the INVITE of a UAC leg (b, x) to ruri on leg->trunk: our offer (prefer first),
 * the trunk's session timer, the extra header lines in hdr (CRLF-ended; trimmed here),
 * Privacy: id when asked. 0, or -ENOMEM with nothing sent (leg->nh NULL). */
int b2b_leg_invite(struct b2b_leg *leg, const char *ruri, const char *from, enum media_codec prefer,
                   struct strbuf *hdr, int privacy);
void b2b_timer_drop(su_timer_t **t);
void b2b_call_maybe_finish(struct b2b_call *call);
/* The leg this one is bridged to (or would be): a <-> b, the customer <-> x once a warm
 * transfer bridged; NULL for slot t. */
struct b2b_leg *b2b_leg_peer(struct b2b_leg *leg);
/* After a leg's struct was copied into another slot: binds its nua handle to the new
 * address and re-arms its refresh timer there. */
void b2b_leg_rebind(struct b2b_leg *leg);
/* Session refresh for an answered leg from the answer (sip): UPDATE when the peer allows
 * it, else our own re-INVITE when we are the refresher. `uac`: we sent the INVITE. */
void b2b_leg_session_timers(struct b2b_leg *leg, const sip_t *sip, int uac);
/* BYE, CANCEL or a final answer, as the leg's state needs; `reason` a Reason value. */
void b2b_leg_bye(struct b2b_leg *leg, const char *reason);
/* Ends the AI leg (end-call, close) and detaches its port from the customer's media. */
void b2b_ai_drop(struct b2b_call *call);
/* The AI leg failed (or ended while a transfer could not complete): the fallback runs. */
void b2b_ai_fail(struct b2b_call *call, int status, const char *text);
/* Moves the AI leg's audio to leg (the whisper to the agent, and back). 0 or -errno. */
int b2b_ai_move(struct b2b_call *call, struct b2b_leg *leg);
/* The customer's leg, the one the assistant talks with: a for inbound calls, b for
 * outbound ones. */
struct b2b_leg *b2b_call_customer(struct b2b_call *call);

/* transfer.c: the warm transfer from the assistant to an agent queue */
/* Starts a transfer of call to queue (NULL/"" = the first), with the assistant's reason
 * and summary. 0, or an HTTP-like status with *why: 404 no such queue, 409 not possible
 * now (no assistant on the call, not answered, a transfer already running). */
int b2b_xfer_start(struct b2b_call *call, const char *queue, const char *reason,
                   const char *summary, const char *source, const char **why);
/* Events for the transfer: a response on leg x, a request on leg x, a media event of
 * any leg of the call, an assistant speech-update, the AI leg's end. Each returns 1 when
 * the transfer took the event. */
void b2b_xfer_response(struct b2b_call *call, int status, const char *phrase, const sip_t *sip);
void b2b_xfer_leg_bye(struct b2b_call *call);
void b2b_xfer_leg_gone(struct b2b_call *call, int status, const char *phrase);
int b2b_xfer_media_event(struct b2b_call *call, struct b2b_leg *leg, const struct media_event *ev);
void b2b_xfer_speech(struct b2b_call *call, int started);
/* The AI leg ended or failed during a transfer: 1 when the transfer goes on without it. */
int b2b_xfer_ai_gone(struct b2b_call *call);
/* The customer hung up: the agent leg is ended. */
void b2b_xfer_customer_gone(struct b2b_call *call);
/* 1 while the agent is being reached (ringing, whisper, accept), not yet bridged. */
int b2b_xfer_active(const struct b2b_call *call);
/* 1 once the customer is bridged to the agent. */
int b2b_xfer_bridged(const struct b2b_call *call);
/* Appends the context header lines of a transfer INVITE (X-VACS-Call-Id, -Lead-Id,
 * -Queue, -Reason, -Summary, Call-Info) that the call has to hdr. */
void b2b_xfer_context(const struct b2b_call *call, struct strbuf *hdr);
/* The music on hold of the call's transfer queue, or NULL (silence). */
struct media_prompt *b2b_xfer_moh(const struct b2b_call *call);
/* Adds the "transfer" object to a call record; frees the transfer. */
void b2b_xfer_record(struct b2b_call *call, json_t *cdr);
void b2b_xfer_free(struct b2b_call *call);
/* The transfer's id for POST /v1/calls/{id}/transfer: finds the call by id. */
struct b2b_call *b2b_call_by_id(const char *id);

/* refer.c: an in-dialog REFER on a bridged call (blind, or attended with Replaces) */
/* nua_i_refer on a leg of a call: answered inside (202, or 400/403/416/491 with the
 * reason) and, when accepted, the target is called. Sip thread. */
void b2b_refer_request(struct b2b_leg *leg, const sip_t *sip, tagi_t tags[]);
/* A REFER outside any call's dialog: 403. */
void b2b_refer_reject_ood(nua_handle_t *nh);
/* Events of the legs a REFER involves (slot t, the referrer, the other party). 1 when
 * the event was consumed; 0 to let call.c handle it as usual. */
int b2b_refer_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                    const sip_t *sip, tagi_t tags[]);
/* 1 while a REFER of this call is being honoured. */
int b2b_refer_active(const struct b2b_call *call);
/* Adds the "refers" array to a call record. */
void b2b_refer_record(struct b2b_call *call, json_t *cdr);
/* Frees the REFER state (call teardown). */
void b2b_refer_free(struct b2b_call *call);

/* call.c */
/* An outbound AI call (the originate operation). Strings may be NULL (config defaults).
 * 0 with the new call's id in id, or an HTTP-like status (400, 429, 503) with *why a
 * static reason and *field the request field at fault (or NULL). Sip thread. */
struct b2b_orig {
	const char *to;             /* the lead's number (E.164, or national on the trunk) */
	const char *from;           /* caller ID (NULL = outbound.caller_id) */
	const char *assistant_id;   /* NULL = outbound.assistant, else vapi.assistant_id */
	const char *variables_json; /* variableValues object text */
	const char *lead_id, *ref;  /* echoed in the call record */
	enum b2b_amd_action amd_action;
	const char *amd_prompt; /* MESSAGE: WAV path */
};
int b2b_originate(const struct b2b_orig *o, char *id, size_t idlen, const char **why,
                  const char **field);
/* A server webhook from VAPI (vapi_hook_parse'd): acts on the call it names and returns
 * the HTTP status and JSON answer body (mem_, may be NULL for an empty object). Sip
 * thread. */
struct vapi_hook_msg;
int b2b_call_hook(const struct vapi_hook_msg *m, char **answer, size_t *len);
void b2b_call_new_invite(nua_handle_t *nh, const sip_t *sip);
void b2b_call_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                    const sip_t *sip, tagi_t tags[]);
void b2b_call_media_events(void);
/* VAPI events (the AI legs' lifecycle, transcripts, tool calls). */
void b2b_call_vapi_events(void);
/* Ends a call from our side (timeout, drain): BYE/CANCEL/final answer as each leg needs. */
void b2b_call_hangup(struct b2b_call *call, int cause, const char *text);
void b2b_calls_hangup_all(const char *why);
/* Keeps an unanswered INVITE's handle until its sender has given up (no final answer). */
void b2b_silence(nua_handle_t *nh);
void b2b_silence_expire(uint64_t now_ms, int all);

/* sip.c */
/* Starts the drain (as a first SIGTERM does: no new calls, 503 to OPTIONS, /readyz 503,
 * exit once the calls in progress end); nothing when already draining. Sip thread. */
void b2b_drain_start(const char *who);

/* record.c */
/* Appends one JSON line (o is consumed) to spool/NAME and fsyncs it: the hand-off files
 * the data layer picks up (recordings.jsonl, callbacks.jsonl, vapi-reports.jsonl). */
int b2b_spool_append(const char *name, json_t *o);
/* One step of an AI call's life (AI leg, fallback, transfer) with its time: a line in
 * spool/call-events.jsonl, the rows of call_events for the data layer. */
void b2b_call_step(struct b2b_call *call, const char *event, const char *detail);
/* Queues a record (o is consumed) for the store: PostgreSQL, or its spool while it is
 * down; nothing when no store is configured. Sip thread. */
void b2b_store_put(enum db_rec kind, json_t *o);
/* Tells the call-life observers (b2b_life_watch); cdr for B2B_LIFE_ENDED, agent for
 * B2B_LIFE_TRANSFERRED, else NULL. Sip thread. */
void b2b_life_emit(const struct b2b_call *call, enum b2b_life what, const char *agent,
                   const json_t *cdr);
/* A prompt of the running configuration (record notices, fallback prompts) by path. */
struct media_prompt *b2b_prompt_find(const char *path);
/* Loads the prompts of c (record_notice, fallback_prompt), replacing the running set. 0, or -errno
 * with a message naming the route and the file in err. */
int b2b_notices_load(const struct conf *c, char *err, size_t errlen);
void b2b_record_close(void);
/* On answer: starts the route's recording (and notice) for the call. */
void b2b_call_record_start(struct b2b_call *call);
/* MEDIA_EV_RECORDING: writes the hand-off line. 1 when the event was one of ours. */
int b2b_record_event(const struct media_event *ev);

/* trunk.c */
int b2b_trunks_start(void);
/* Drops trunk state; `unregister` sends un-REGISTERs (reload), 0 after shutdown. */
void b2b_trunks_stop(int unregister);
/* Drops the OPTIONS probe handles (before nua_shutdown). */
void b2b_trunks_stop_probes(void);
void b2b_trunks_tick(uint64_t now_ms);
void b2b_trunk_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                     const sip_t *sip);
struct b2b_trunk_rt *b2b_trunk_rt(const struct conf_trunk *t);
/* Fills order[] with the trunk's node indexes: up nodes by priority, then down ones. */
unsigned b2b_trunk_node_order(const struct conf_trunk *t, unsigned *order, unsigned max);
void b2b_trunk_node_failed(const struct conf_trunk *t, unsigned node);
/* "sip:USER@HOST:PORT;transport=tcp" for a node (user may be NULL). */
int b2b_trunk_uri(const struct conf_trunk *t, unsigned node, const char *user, char *out,
                  size_t len);
/* Answers a digest challenge on nh if the trunk has credentials for its realm. 1 = sent. */
int b2b_trunk_authenticate(const struct conf_trunk *t, nua_handle_t *nh, const sip_t *sip);

/* api.c: the sip thread's side of the HTTP routes */
int b2b_api_fd(void);
void b2b_api_poll(void);

/* sip.c */
void b2b_count_reject(const char *reason);
uint64_t b2b_now_ms(void);

#endif
