/* vacsd: parses the command line, loads the configuration, starts the modules in order. */
#include "b2bua/live.h"
#include "b2bua/b2bua.h"
#include "b2bua/number.h"
#include "conf/conf.h"
#include "control/api_calls.h"
#include "control/api_campaigns.h"
#include "control/control.h"
#include "control/notify.h"
#include "control/outbound.h"
#include "control/uploader.h"
#include "control/checks.h"
#include "core/log.h"
#include "core/metric.h"
#include "db/db.h"
#include "dialer/dialer.h"
#include "media/media.h"
#include "vapi/vapi.h"
#include "wa/wa.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void on_stop(int sig)
{
	(void)sig;
	b2b_stop();
}

static void on_hup(int sig)
{
	(void)sig;
	b2b_reload();
}

/* /readyz's store line. PostgreSQL down is not "not ready": records go to the spool and
 * calls go on, and a shared database failing must not take every node out of service. */
static int ready_postgres(void *arg, char *buf, size_t len)
{
	const struct conf *c = arg;
	if (!c->store.postgres || !c->store.postgres[0])
		snprintf(buf, len, "off (no store.postgres_env)");
	else if (db_pg_up())
		snprintf(buf, len, "up, %ld records spooled", db_spool_pending());
	else
		snprintf(buf, len, "down, %ld records spooled (replayed when it returns)",
		         db_spool_pending());
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vacsd --config FILE      run the daemon\n"
	           "       vacsd --check-config FILE validate FILE and exit (0 = valid)\n"
	           "       vacsd --version\n"
	           "Signals: SIGTERM/SIGINT drain then stop (twice: hang up and stop);\n"
	           "         SIGHUP reloads trunks and routes (calls in progress keep theirs).\n");
}

static int log_setup(const struct conf *c)
{
	struct log_config lc = {.level = LOG_INFO, .format = LOG_FMT_TEXT, .path = c->log.file};
	log_level_parse(c->log.level, &lc.level);
	if (c->log.format && strcmp(c->log.format, "json") == 0)
		lc.format = LOG_FMT_JSON;
	return log_init(&lc);
}

/* Event notifications and S3 uploads share the out thread (control/outbound.h): their
 * routes and ticks are registered, then the thread starts. Before ctl_init. */
static int outbound_start(const struct conf *cfg)
{
	struct notify_config nc = {
	    .attempts = cfg->notify.attempts,
	    .backoff_ms = cfg->notify.backoff_ms,
	    .backoff_max_ms = cfg->notify.backoff_max_ms,
	    .timeout_ms = cfg->notify.timeout_ms,
	    .queue_len = cfg->notify.queue,
	    .refresh_ms = cfg->notify.refresh_ms,
	    .allow_private = cfg->notify.allow_private,
	};
	struct ctl_s3_config sc = {
	    .endpoint = cfg->s3.endpoint,
	    .region = cfg->s3.region,
	    .bucket = cfg->s3.bucket,
	    .access_key = cfg->s3.access_key,
	    .secret_key = cfg->s3.secret_key,
	    .path_style = cfg->s3.path_style,
	    .delete_after_upload = cfg->s3.delete_after_upload,
	    .use_db = cfg->store.postgres && cfg->store.postgres[0],
	    .spool_dir = cfg->spool.dir,
	    .attempts = cfg->s3.attempts,
	    .backoff_ms = cfg->s3.backoff_ms,
	    .backoff_max_ms = cfg->s3.backoff_max_ms,
	    .timeout_ms = cfg->s3.timeout_s * 1000u,
	};
	int rc = notify_init(&nc);
	if (!rc)
		rc = b2b_events_init();
	if (!rc)
		rc = ctl_s3_init(&sc);
	struct ctl_checks_config kc = {
	    .vapi_url = cfg->vapi.api_url,
	    .vapi_key = cfg->vapi.api_key,
	    .graph_url = cfg->whatsapp.graph_url,
	    .wa_token = cfg->whatsapp.access_token,
	    .wa_phone_number_id = cfg->whatsapp.phone_number_id,
	};
	if (!rc && cfg->http.port)
		rc = ctl_checks_init(&kc);
	if (!rc)
		rc = ctl_out_init(0);
	if (rc)
		log_err("main", "notifications and uploads: %s", strerror(-rc));
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int check = 0;
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", required_argument, NULL, 'k'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "c:k:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			path = optarg;
			check = 1;
			break;
		case 'v':
			printf("vacsd %s\n", VACS_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	char err[8192];
	struct conf *cfg = NULL;
	if (conf_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "%s", err);
		if (err[0] && err[strlen(err) - 1] != '\n')
			fputc('\n', stderr);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", path);
		conf_unref(cfg);
		return 0;
	}
	int rc = log_setup(cfg);
	if (rc) {
		fprintf(stderr, "vacsd: cannot open log %s: %s\n", cfg->log.file, strerror(-rc));
		conf_unref(cfg);
		return 1;
	}
	log_info("main", "vacsd %s starting with %s", VACS_VERSION, path);
	mkdir(cfg->spool.dir, 0750);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct media_config mc = {
	    .address = cfg->media.address,
	    .advertise =
	        cfg->media.advertise && cfg->media.advertise[0] ? cfg->media.advertise : NULL,
	    .port_min = cfg->media.port_min,
	    .port_max = cfg->media.port_max,
	    .workers = cfg->media.workers,
	    .rtp_timeout_ms = cfg->media.rtp_timeout_s * 1000u,
	    .hold_timeout_ms = cfg->media.hold_timeout_s * 1000u,
	    .max_sessions = cfg->media.max_sessions,
	    .realtime_priority = cfg->media.realtime_priority,
	    .coalesce_us = cfg->media.coalesce_us,
	};
	const char *api_keys[] = {
	    cfg->http.api_key && cfg->http.api_key[0] ? cfg->http.api_key : NULL, NULL};
	struct ctl_config cc = {.address = cfg->http.address,
	                        .port = cfg->http.port,
	                        .api_keys = api_keys,
	                        .web_dir = cfg->http.web_dir,
	                        .cookie_secure = cfg->http.public_url &&
	                                         !strncmp(cfg->http.public_url, "https:", 6)};
	int exit_code = 1;
	struct db_config dc = {
	    .conninfo = cfg->store.postgres,
	    .spool_dir = cfg->spool.dir,
	    .backoff_min_ms = cfg->store.backoff_min_ms,
	    .backoff_max_ms = cfg->store.backoff_max_ms,
	};
	if ((rc = db_init(&dc))) {
		log_err("main", "store: %s", strerror(-rc));
		goto out_conf;
	}
	if (!dc.conninfo || !dc.conninfo[0])
		log_info("main", "store.postgres_env not set: call records go to the spool as "
		                 "JSON lines; the API's reads, the dialer and WhatsApp are off");
	if ((rc = media_init(&mc))) {
		log_err("main", "media: %s", strerror(-rc));
		goto out_db;
	}
	int vapi_up = 0;
	if (cfg->vapi.api_key && cfg->vapi.api_key[0]) {
		struct vapi_config vc = {
		    .api_url = cfg->vapi.api_url,
		    .api_key = cfg->vapi.api_key,
		    .user_agent = cfg->sip.user_agent,
		    .connect_timeout_ms = cfg->vapi.connect_timeout_ms,
		    .ca_file = cfg->vapi.ca_file && cfg->vapi.ca_file[0] ? cfg->vapi.ca_file : NULL,
		    .ai_threads = media_worker_count(),
		    .on_media_workers = 1, /* no hand-off between threads (docs/architecture.md) */
		};
		if ((rc = vapi_init(&vc))) {
			log_err("main", "vapi: %s", strerror(-rc));
			goto out_media;
		}
		vapi_up = 1;
	} else {
		log_info("main", "vapi.key_env not set: routes to \"ai\" answer 503");
	}
	if ((rc = b2b_api_init(cfg)) || (rc = api_calls_init()) ||
	    (rc = api_campaigns_init(b2b_number_normalise)) || (rc = b2b_live_init())) {
		log_err("main", "http routes: %s", strerror(-rc));
		goto out_api;
	}
	if (cfg->http.port && !api_keys[0])
		log_info("main", "http.api_key_env not set: the /v1 API answers 401");
	struct wa_config wc = {
	    .app_secret = cfg->whatsapp.app_secret,
	    .verify_token = cfg->whatsapp.verify_token,
	    .access_token = cfg->whatsapp.access_token,
	    .graph_url = cfg->whatsapp.graph_url,
	    .phone_number_id = cfg->whatsapp.phone_number_id,
	    .rules_file = cfg->whatsapp.rules_file,
	    .campaign_id = cfg->whatsapp.campaign_id,
	    .template_name = cfg->whatsapp.template_name,
	    .template_lang_es = cfg->whatsapp.template_lang_es,
	    .template_lang_en = cfg->whatsapp.template_lang_en,
	    .max_age_s = cfg->whatsapp.max_age_s,
	    .pair_interval_ms = cfg->whatsapp.pair_interval_ms,
	    .rate_per_s = cfg->whatsapp.rate_per_s,
	    .send_timeout_ms = cfg->whatsapp.send_timeout_ms,
	    .hours_start_min = cfg->whatsapp.hours_start_min,
	    .hours_end_min = cfg->whatsapp.hours_end_min,
	    .utc_offset_min = cfg->whatsapp.utc_offset_min,
	    .llm_url = cfg->whatsapp.llm_url,
	    .llm_key = cfg->whatsapp.llm_key,
	    .llm_model = cfg->whatsapp.llm_model,
	    .llm_timeout_ms = cfg->whatsapp.llm_timeout_ms,
	    .media_max_bytes = cfg->whatsapp.media_max_bytes,
	    .spool_dir = cfg->spool.dir,
	    .inbox_retention_days = cfg->whatsapp.inbox_retention_days,
	};
	for (int fo = 0; fo < 4; fo++) /* whatsapp.followup.<outcome> */
		wc.followup[fo] = (struct wa_followup){cfg->whatsapp.followup[fo].text,
		                                       cfg->whatsapp.followup[fo].template_name};
	if (!cfg->store.postgres || !cfg->store.postgres[0])
		wc.app_secret = NULL; /* said above: WhatsApp needs PostgreSQL */
	if ((rc = wa_init(&wc))) {
		log_err("main", "whatsapp: %s", strerror(-rc));
		goto out_api;
	}
	ctl_ready_check("postgres", ready_postgres, cfg);
	ctl_ready_check("dialer", dialer_ready_line, NULL);
	if ((rc = outbound_start(cfg)))
		goto out_out;
	if ((rc = ctl_init(&cc))) {
		log_err("main", "http %s:%u: %s", cc.address, cc.port, strerror(-rc));
		goto out_out;
	}
	if ((rc = dialer_init_conf(cfg))) /* the campaign dialer: needs both stores */
		goto out_ctl;
	if ((rc = b2b_init(cfg, vapi_up))) {
		log_err("main", "sip: %s", strerror(-rc));
		b2b_close();
		goto out_ctl;
	}
	b2b_run();
	exit_code = 0;
	log_info("main", "vacsd stopped");
	b2b_close();
out_ctl:
	dialer_close();
	ctl_close();
out_out:
	ctl_out_close();
out_api:
	wa_close();
	b2b_api_close();
	if (vapi_up)
		vapi_close();
out_media:
	media_close();
out_db:
	db_close();
	ctl_s3_close(); /* after db_close: its callbacks may still hold uploads */
	ctl_checks_close();
	notify_close();
out_conf:
	conf_unref(cfg);
	metric_registry_close();
	log_close();
	return exit_code;
}
