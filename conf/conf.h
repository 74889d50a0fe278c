/* Configuration: one libconfig file, validated at load, secrets from the environment. */
#ifndef VACS_CONF_CONF_H
#define VACS_CONF_CONF_H

#include <stddef.h>
#include <stdint.h>

/*
 * A loaded configuration is an immutable, reference-counted snapshot. The sip thread
 * loads a new one on SIGHUP and swaps it in only when it validates; calls in progress
 * keep a reference to the snapshot they started with, so a reload never drops them.
 * docs/configuration.md documents every key; conf/vacs.conf is the annotated example.
 */

enum conf_transport { CONF_TP_UDP = 0, CONF_TP_TCP, CONF_TP_TLS };
enum conf_trunk_type { CONF_TRUNK_CARRIER = 0, CONF_TRUNK_CUCM };
enum conf_srtp_mode { CONF_SRTP_OFF = 0, CONF_SRTP_OPTIONAL, CONF_SRTP_MANDATORY };
enum conf_egress_format {
	CONF_EGRESS_PLUS_E164 = 0, /* +525512345678 */
	CONF_EGRESS_E164,          /* 525512345678 */
	CONF_EGRESS_NATIONAL,      /* national_prefix + NSN */
};
enum conf_unknown_source { CONF_UNKNOWN_REJECT = 0, CONF_UNKNOWN_DROP };
/* sip.tls_verify: which TLS peers' certificates are checked against cafile.pem. */
enum conf_tls_verify { CONF_TLS_VERIFY_NONE = 0, CONF_TLS_VERIFY_SERVERS, CONF_TLS_VERIFY_ALL };

/* An IPv4 network: addr/prefix, both in host byte order; port 0 = any port. */
struct conf_cidr {
	uint32_t addr;
	uint32_t mask;
	uint16_t port;
};

/* One CUCM node (or the carrier's single proxy). */
struct conf_node {
	char *host; /* IPv4 literal or name */
	uint16_t port;
	unsigned priority; /* lower is tried first */
};

struct conf_numbering {
	char *country_code;         /* "52" */
	char *national_prefix;      /* "" or "0" or "01" */
	char *international_prefix; /* "00" */
	unsigned national_length;   /* digits of a national significant number, 0 = any */
	enum conf_egress_format egress;
	char *strip_prefix; /* dial prefix removed before normalising (CUCM access code "9") */
};

struct conf_credentials {
	char *user;
	char *password; /* read from the environment variable named by password_env */
	char *realm;    /* only challenges for this realm are answered ("" = the trunk host) */
};

struct conf_trunk {
	char *name;
	enum conf_trunk_type type;
	enum conf_transport transport;
	struct conf_node *nodes; /* carrier: one or more SBCs; cucm: the group */
	size_t n_nodes;
	struct conf_cidr *acl; /* sources accepted from this trunk (nodes are added) */
	size_t n_acl;
	char *domain; /* host part of the Request-URI / To; "" = node host */

	int register_enable;
	unsigned register_expires_s;
	struct conf_credentials auth; /* for REGISTER and for 401/407 on requests */

	struct conf_numbering numbering;
	enum conf_srtp_mode srtp;
	char **srtp_suites; /* SDES names, in preference order */
	size_t n_srtp_suites;
	char **codecs; /* "PCMU", "PCMA", in preference order */
	size_t n_codecs;
	unsigned dtmf_pt;           /* our telephone-event PT on this trunk (96..127) */
	unsigned session_expires_s; /* 0 = no session timer */
	unsigned min_se_s;
	int rel100;                  /* offer/accept 100rel */
	unsigned options_interval_s; /* OPTIONS probe period, 0 = off */
	unsigned invite_timeout_s;   /* no final answer within this -> next node */
	unsigned max_calls;          /* 0 = unlimited */
	int latch;                   /* symmetric RTP latching on this trunk (NAT) */
};

enum conf_route_target { CONF_ROUTE_TRUNK = 0, CONF_ROUTE_AI };

/* What happens when the AI leg cannot be set up, or breaks mid-call (routes to "ai",
 * outbound AI calls): never dead air, never a stuck call. */
struct conf_ai_fallback {
	char *prompt; /* apology WAV played to the caller first ("" = none) */
	char *to;     /* trunk to move the caller to, an agent queue ("" = none) */
	char *number; /* the queue's number on that trunk (hunt pilot, DN) */
	int callback; /* when the caller is let go: a callback job in spool/callbacks.jsonl */
	const struct conf_trunk *to_trunk; /* resolved at load */
};

struct conf_route {
	char *name;
	char *from;         /* trunk name the call arrives on */
	char *match;        /* POSIX ERE on the normalised called number */
	char *caller_match; /* optional ERE on the normalised calling number ("" = any) */
	enum conf_route_target target_type;
	char *to;            /* trunk name (target_type TRUNK) */
	char *rewrite;       /* replacement with \1..\9 for the called number ("" = unchanged) */
	int record;          /* record answered calls (stereo WAV in spool/recordings) */
	char *record_notice; /* WAV played to both parties when recording starts ("" = none) */
	int amd;             /* answering-machine detection on the called party's audio */
	char *assistant;     /* route "ai": VAPI assistantId ("" = vapi.assistant_id) */
	struct conf_ai_fallback fallback;  /* route "ai" */
	const struct conf_trunk *to_trunk; /* resolved at load */
	void *regex;                       /* compiled match (regex_t), private */
	void *caller_regex;
};

/* An agent queue for warm transfers from the AI: a CUCM hunt pilot or DN on a trunk. */
enum conf_whisper { CONF_WHISPER_NONE = 0, CONF_WHISPER_PROMPT, CONF_WHISPER_AI };
enum conf_accept { CONF_ACCEPT_ANSWER = 0, CONF_ACCEPT_DTMF };
struct conf_queue {
	char *name;
	char *trunk;               /* trunk name (usually the CUCM trunk group) */
	char *number;              /* hunt pilot or DN */
	unsigned ring_timeout_s;   /* no answer by then: back to the assistant */
	enum conf_whisper whisper; /* what the agent hears before the bridge */
	char *whisper_prompt;      /* WAV for whisper = "prompt" */
	enum conf_accept accept;   /* answering accepts, or 1 accepts / 2 declines */
	unsigned accept_timeout_s; /* accept = "dtmf": no key by then = decline */
	char *moh;                 /* music on hold for the customer ("" = silence) */
	/* Opening hours ("Mon-Fri 09:00-19:00"), local time = UTC + utc_offset minutes;
	 * outside them the transfer goes to after_hours_number on after_hours_trunk. */
	char **hours;
	size_t n_hours;
	int utc_offset_min;
	char *after_hours_trunk;
	char *after_hours_number;
	const struct conf_trunk *to_trunk;       /* resolved at load */
	const struct conf_trunk *after_hours_to; /* resolved at load (NULL = none) */
	uint8_t open[7][24 * 4];                 /* parsed hours: [weekday Sun=0][quarter hour] */
};

struct conf {
	int refs; /* sip thread only */
	char *path;

	struct {
		char *level;  /* error|warn|info|debug */
		char *format; /* text|json */
		char *file;   /* "" = stderr */
	} log;

	struct {
		char *address;      /* bind address */
		char *advertise;    /* address in Contact/Via ("" = address) */
		uint16_t port;      /* UDP and TCP */
		uint16_t tls_port;  /* 0 = off */
		char *tls_cert_dir; /* agent.pem + cafile.pem */
		enum conf_tls_verify tls_verify;
		char *user_agent;
		unsigned udp_mtu;
		unsigned drain_retry_after_s;
		enum conf_unknown_source unknown_source;
		unsigned max_headers; /* requests with more header lines get 400 */
		unsigned max_cps;     /* new calls per second before 503 (0 = no limit) */
	} sip;

	struct {
		char *address;
		char *advertise;
		uint16_t port_min, port_max;
		unsigned workers;
		unsigned rtp_timeout_s;
		unsigned hold_timeout_s;
		unsigned max_sessions;
		unsigned realtime_priority; /* SCHED_FIFO priority of the workers, 0 = off */
		unsigned coalesce_us;       /* least time between a worker's wake-ups, 0 = off */
	} media;

	struct {
		char *address;
		uint16_t port;    /* 0 = off */
		char *api_key;    /* bearer key of the /v1 API, from api_key_env ("" = none) */
		char *public_url; /* how agents reach the dashboard ("" = no Call-Info) */
		char *web_dir;    /* the built dashboard served at "/" ("" = none) */
	} http;

	/* Outbound AI calls (the originate operation: REST API, dialer). */
	struct {
		char *trunk;             /* carrier trunk the calls go out on ("" = off) */
		char *caller_id;         /* number presented ("" = the request must give one) */
		char *assistant;         /* VAPI assistantId ("" = vapi.assistant_id) */
		unsigned ring_timeout_s; /* no answer after this: the attempt ends (no_answer) */
		int amd;                 /* answering-machine detection on the lead's audio */
		int record;              /* record answered calls */
		struct conf_ai_fallback fallback;  /* prompt and callback (no `to` yet) */
		const struct conf_trunk *to_trunk; /* resolved at load */
	} outbound;

	struct {
		char *dir; /* CDR JSON lines and store spool */
	} spool;

	/* PostgreSQL and Redis (db/). Connection strings come from the environment only:
	 * a variable that is named but unset or empty means that store is off. Read at
	 * start-up; a change needs a restart. */
	struct {
		char *postgres_env;      /* variable name ("" = none) */
		char *postgres;          /* its value, a libpq conninfo or URI ("" = off) */
		char *redis_env;         /* variable name ("" = none) */
		char *redis;             /* its value, a Redis URL ("" = off) */
		unsigned backoff_min_ms; /* first wait after a failed connect */
		unsigned backoff_max_ms; /* the wait doubles up to this */
	} store;

	/* The campaign dialer (dialer/, docs/dialer.md): on when enabled and both stores are
	 * configured. Read at start-up. */
	struct {
		int enabled;
		char *node_id;      /* "" = host name and pid */
		char *redis_prefix; /* key prefix shared by the nodes of one deployment */
		unsigned max_calls; /* calls at once over all nodes: the VAPI account's limit */
		unsigned tick_ms;   /* scheduling period */
		unsigned lease_s;   /* slot lease of a call, renewed every second */
		unsigned reclaim_s; /* a job claimed by a node that died goes to another after */
		unsigned sweep_s;   /* queued jobs missing from Redis are put back after */
		unsigned unanswered_hold_s; /* VAPI slot kept after a call never answered */
	} dialer;
	/* Event notifications (control/notify.c) and S3 uploads of recordings
	 * (control/uploader.c). Read at start-up; a change needs a restart. */
	struct {
		unsigned attempts;       /* deliveries per event and subscriber */
		unsigned backoff_ms;     /* wait before the 2nd attempt, doubling */
		unsigned backoff_max_ms; /* cap of the wait */
		unsigned timeout_ms;     /* one attempt */
		unsigned queue;          /* deliveries pending at most; more are dropped */
		unsigned refresh_ms;     /* subscriptions re-read from PostgreSQL */
		int allow_private;       /* subscriber URLs may be loopback/private */
	} notify;
	struct {
		char *endpoint;   /* "" = https://s3.<region>.amazonaws.com */
		char *region;     /* "us-east-1" */
		char *bucket;     /* "" = uploads off */
		char *access_key; /* from access_key_env */
		char *secret_key; /* from secret_key_env */
		int path_style;   /* <endpoint>/<bucket>/<key> (S3-compatible servers) */
		int delete_after_upload;
		unsigned attempts;
		unsigned backoff_ms, backoff_max_ms;
		unsigned timeout_s; /* one PUT */
	} s3;

	struct {
		char *api_url; /* "https://api.vapi.ai" */
		char
		    *api_key; /* private key, read from the variable named by key_env ("" = none) */
		char *assistant_id;          /* default assistant for routes to "ai" */
		unsigned connect_timeout_ms; /* POST /call, and the WebSocket connect */
		unsigned max_duration_s;     /* assistantOverrides.maxDurationSeconds */
		char *ca_file;               /* extra CA for TLS ("" = system store) */
		char *dtmf_text; /* add-message text for a caller's key, one %c ("" = off) */
		/* Server webhooks at /webhooks/vapi (reference vapi.md §3.4); off without a
		 * secret. */
		struct conf_vapi_webhook {
			int auth;                   /* 1 bearer, 2 hmac (enum vapi_hook_auth) */
			char *secret;               /* from secret_env */
			char *header;               /* bearer: header name, lowercase */
			int bearer_prefix;          /* bearer: "Bearer " before the token */
			char *algorithm;            /* hmac: sha256 | sha512 | sha1 */
			char *signature_header;     /* hmac */
			char *timestamp_header;     /* hmac */
			char *signature_prefix;     /* hmac: e.g. "sha256=" */
			int include_timestamp;      /* hmac: sign "{timestamp}.{body}" */
			int base64;                 /* hmac: signature encoding (else hex) */
			unsigned max_skew_s;        /* hmac: timestamp window */
			unsigned max_body;          /* bytes; larger bodies get 413 */
			unsigned answer_timeout_ms; /* tool-calls etc. answered within this */
		} webhook;
	} vapi;

	/* WhatsApp lead ingest (wa/, docs/whatsapp.md); off without app_secret_env. */
	struct {
		char *app_secret_env, *app_secret; /* X-Hub-Signature-256 key */
		char *verify_token;                /* from verify_token_env */
		char *access_token;                /* from access_token_env ("" = no sending) */
		char *graph_url;                   /* "https://graph.facebook.com/v25.0" */
		char *phone_number_id;
		char *rules_file;    /* discovery rules (JSON) */
		char *campaign_id;   /* call_jobs.campaign_id ("" = none) */
		char *template_name; /* outside the 24 h window ("" = none) */
		char *template_lang_es, *template_lang_en;
		unsigned max_age_s;        /* older inbound messages get no reply */
		unsigned pair_interval_ms; /* one message per user per this */
		unsigned rate_per_s;       /* messages per second from the number */
		unsigned send_timeout_ms;
		char *calling_hours;                     /* "HH:MM-HH:MM" local */
		char *utc_offset;                        /* local time = UTC + this, "-06:00" */
		unsigned hours_start_min, hours_end_min; /* parsed calling_hours */
		int utc_offset_min;                      /* parsed utc_offset */
		char *llm_url, *llm_model, *llm_key;     /* llm_key from llm_key_env */
		unsigned llm_timeout_ms;
		unsigned media_max_bytes;      /* inbound media fetched up to this (0 = off) */
		unsigned inbox_retention_days; /* processed inbox rows kept (0 = forever) */
		/* whatsapp.followup.<outcome>: answered, transferred, no_answer, machine */
		struct {
			char *text, *template_name;
		} followup[4];
	} whatsapp;

	struct conf_trunk *trunks;
	size_t n_trunks;
	struct conf_route *routes;
	size_t n_routes;
	struct conf_queue *queues;
	size_t n_queues;
};

/* Loads and validates `path`. On error returns -EINVAL (or -errno) and writes one
 * message per problem into err (up to errlen), each naming file, line and key, e.g.
 * "vacs.conf:12: trunks.[1].srtp: must be one of off, optional, mandatory".
 * *out is set (refs = 1) only on success. */
int conf_load(const char *path, struct conf **out, char *err, size_t errlen);
struct conf *conf_ref(struct conf *c);
/* Drops a reference; frees at zero. NULL accepted. */
void conf_unref(struct conf *c);

const struct conf_trunk *conf_trunk_find(const struct conf *c, const char *name);
/* 1 when the queue is open at this Unix time (always, without hours). */
int conf_queue_open(const struct conf_queue *q, uint64_t unix_s);
/* The queue named `name`; NULL or "" = the first queue. NULL when none. */
const struct conf_queue *conf_queue_find(const struct conf *c, const char *name);
/* The trunk whose ACL (or node address) admits this IPv4 source (host order), or NULL. */
const struct conf_trunk *conf_trunk_by_source(const struct conf *c, uint32_t addr, uint16_t port);

#endif
