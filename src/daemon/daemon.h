/* SPDX-License-Identifier: MIT */
/*
 * The daemon's shared state and the entry points of its parts: the
 * scheduler and renewal state machine (renew.c), deployments (deploy.c),
 * the status socket (control.c) and the service manager (notify.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "certherd/ca.h"
#include "certherd/conf.h"
#include "certherd/store.h"

struct event_base;
struct event;
struct control;
struct metrics;
struct crls;
struct ch_metrics_buf;
struct ch_filebatch;
struct alerts;
struct heartbeat;
struct ari;

/* A configuration generation kept alive while work started under it runs. */
struct generation {
	struct ch_conf *conf;
	struct ch_ca **cas;
	size_t n_cas;
	unsigned refs; /* 1 while current + one per job in flight */
	struct generation *next;
};

struct ch_psl;

struct daemon {
	struct event_base *base;
	char *conf_path;
	struct generation *gen;     /* current */
	unsigned gen_seq;           /* counts the generations loaded */
	struct generation *retired; /* older ones with jobs still running */
	struct ch_store *store;
	struct ch_filebatch *batch; /* files staged this turn, handed to its worker by store_flush() */
	struct event *timer;
	struct event *sigs[4];
	struct control *control;
	struct metrics *metrics; /* counters and the /metrics listener */
	struct crls *crls;       /* CRL publishing and its listener */
	struct alerts *alerts;       /* alert conditions and their delivery (alert.c) */
	struct heartbeat *heartbeat; /* the dead man's switch (heartbeat.c) */
	struct ch_psl *psl;          /* public suffix list for budgets; NULL = two labels */
	struct ari *ari;             /* CA-suggested renewal windows (ari.c) */

	/* Ids of certificates and deployments with work in flight. */
	int64_t *busy_certs;
	size_t n_busy_certs, cap_busy_certs;
	int64_t *busy_deps;
	size_t n_busy_deps, cap_busy_deps;
	int64_t *busy_probes;
	size_t n_busy_probes, cap_busy_probes;

	/* The last rejected configuration, shown by status until a good one loads. */
	struct ch_conf_errors conf_errors;
	int64_t conf_rejected_at;
	int64_t conf_loaded_at;

	bool txn_open;      /* a group commit is pending */
	/*
	 * The inventory refusing writes (disk full, locked by another process):
	 * renewals and deployments wait until store_retry_mono (monotonic usec),
	 * the wait doubling from 1 s to a minute while it keeps failing.
	 */
	int store_failures;
	int store_errno;
	int64_t store_failing_since, store_retry_mono;
	char store_error[256];
	int64_t files_stall_usec; /* a file system call this long is a stalled file writer */
	bool stopping;
	int64_t started_at;
	int64_t last_loop_at;   /* wall clock, for display */
	int64_t started_mono;   /* monotonic usec: ages never follow wall-clock jumps */
	int64_t last_loop_mono;
};

#define CH_ISSUE_LEASE 600  /* seconds an issuance may run before it is retried */
#define CH_DEPLOY_LEASE 300 /* same for a deployment */
#define CH_MIN_RENEW_DELAY 5 /* never renew again sooner than this after an issuance */
#define CH_STORE_BUSY_MSEC 200  /* a statement waits this long for another process's lock */
#define CH_STORE_RETRY_MAX 60   /* seconds between attempts at a failing inventory, at most */

/* renew.c */
int sched_init(struct daemon *d);
int renew_sync_config(struct daemon *d);
void sched_kick(struct daemon *d);
void sched_arm(struct daemon *d);
int renew_request(struct daemon *d, const char *name, bool force, char *errbuf, size_t errlen);
struct ch_ca *daemon_find_ca(struct generation *g, const char *name);
void generation_unref(struct daemon *d, struct generation *g);

/* Group commit: writes made during one loop turn commit together. */
int store_txn(struct daemon *d);
int store_flush(struct daemon *d);
/* At exit: flushes, and waits for the files handed over and what their callbacks record. */
void store_drain(struct daemon *d);
/* Seconds until the failing inventory is tried again; 0 when it is not failing. */
int64_t store_retry_in(struct daemon *d);

/* deploy.c */
int deploy_start(struct daemon *d, const struct ch_store_deployment *dep);
void deploy_timer_run(struct daemon *d);

/* budget.c: rate-limit budgets per CA */
void budget_setup(struct daemon *d);
void budget_free(struct daemon *d);
/* A renewal of the names sc already holds from ca (exempt from the per-domain limit). */
bool budget_renewal_exempt(struct daemon *d, const struct ch_conf_cert *cc,
			   const struct ch_store_cert *sc, const char *ca);
/* Whether ca's budget allows sending cc (the uses of idem not counted); else why
 * and when it frees. */
bool budget_allows(struct daemon *d, const struct ch_conf_cert *cc, const char *ca, const char *idem,
		   bool exempt, char *why, size_t len, int64_t *ret_frees_at);
/* Counts cc as sent to ca (once per idem); budget_refund takes it back. */
void budget_spend(struct daemon *d, const struct ch_conf_cert *cc, const char *ca, const char *idem);
void budget_refund(struct daemon *d, const char *ca, const char *idem);
void budget_failed_validation(struct daemon *d, const struct ch_conf_cert *cc, const char *ca);
json_t *budget_status_json(struct daemon *d);
struct ch_metrics_buf;
void budget_metrics(struct daemon *d, struct ch_metrics_buf *b);

/* probe.c */
void probe_timer_run(struct daemon *d);
void probe_soon(struct daemon *d, const char *cert);
void probe_sync_cert(struct daemon *d, int64_t cert_id, const struct ch_conf_cert *cc);

/* busy sets (renew.c) */
bool busy_has(int64_t *v, size_t n, int64_t id);
void busy_add(int64_t **v, size_t *n, size_t *cap, int64_t id);
void busy_del(int64_t *v, size_t *n, int64_t id);

/* control.c */
int control_open(struct daemon *d, const char *path, struct control **ret);
struct control *control_free(struct control *c);

/* Status reports shared by control.c and notify.c. */
json_t *daemon_status_json(struct daemon *d);
/*
 * The file writer (the daemon's batch worker) stuck in one file system
 * call for files_stall_usec or more: how long in seconds, with what it is
 * doing in buf; 0 when it is not.
 */
int64_t daemon_files_stalled(struct daemon *d, char *buf, size_t len);
char *daemon_status_line(struct daemon *d);
int daemon_reload(struct daemon *d);
int daemon_load_config(struct daemon *d, bool first);

/* metrics.c: the /metrics and /healthz listener and the in-memory counters. */
/* httpd.c: the daemon's HTTP listeners. NULL with errno set when host:port cannot be bound. */
struct evhttp;
struct evhttp_request;
struct evhttp *httpd_listen(struct daemon *d, const char *host, uint16_t port,
			    void (*cb)(struct evhttp_request *req, void *arg), void *arg);
void httpd_reply_text(struct evhttp_request *req, int code, const char *reason,
		      const char *body);

int metrics_setup(struct daemon *d);
void metrics_free(struct daemon *d);
int metrics_render(struct daemon *d, struct ch_metrics_buf *ret);
void metrics_count_renewal(struct daemon *d, const char *ca, const char *result);
void metrics_count_deployment(struct daemon *d, const char *target, const char *result);
void metrics_observe_ca_request(struct daemon *d, const char *ca, const char *result,
				double seconds);

/* crl.c: CRLs of the CAs that sign their own, and the crl_listen listener. */
int crl_setup(struct daemon *d);
void crl_free(struct daemon *d);
/* Signs, records and writes a new CRL for CA ca_name now. Returns 0 or -errno (logged,
 * recorded as an event, retried later). */
int crl_publish(struct daemon *d, const char *ca_name, const char *why, int64_t *ret_number,
		struct ch_err *err);

/* revoke.c: the `revoke` command; returns the reply. */
json_t *revoke_request(struct daemon *d, const char *what, const char *reason);
/* alert.c: conditions evaluated from the scheduler, sent to the notifiers. */
int alert_setup(struct daemon *d);
void alert_free(struct daemon *d);
void alert_run(struct daemon *d);
int64_t alert_next_at(struct daemon *d);
void alert_status_json(struct daemon *d, json_t *status);
void alert_metrics(struct daemon *d, struct ch_metrics_buf *b);

/*
 * rehearse.c: renew --dry-run and the rehearsal schedule. done gets the
 * reply (consumed) once the rehearsal ended and was recorded; a waiter
 * that goes away detaches. *ret (may be NULL) is the running rehearsal.
 */
struct rehearsal;
typedef void rehearse_done_fn(json_t *reply, void *arg);
int rehearse_start(struct daemon *d, const char *name, const char *trigger, rehearse_done_fn *done,
		   void *arg, struct rehearsal **ret, char *errbuf, size_t errlen);
void rehearse_detach(struct rehearsal *rh);
bool rehearse_running(const char *cert);
/* The schedule: started from the scheduler's turn; 0 = nothing due. */
void rehearse_run(struct daemon *d);
int64_t rehearse_next_at(struct daemon *d);
void rehearse_free(struct daemon *d);
void rehearse_metrics(struct daemon *d, struct ch_metrics_buf *b);

/* ari.c: renewal windows suggested by the CA (RFC 9773), run from the scheduler. */
int ari_setup(struct daemon *d);
void ari_free(struct daemon *d);
void ari_run(struct daemon *d);
/* Looks again soon (a certificate was issued or the configuration changed). */
void ari_kick(struct daemon *d);
int64_t ari_next_at(struct daemon *d);
/* The window of cert_id's certificate serial for `show`, or NULL. */
json_t *ari_cert_json(struct daemon *d, int64_t cert_id, const char *serial);

/* heartbeat.c: the dead man's switch and the scheduler's health. */
int heartbeat_setup(struct daemon *d);
void heartbeat_free(struct daemon *d);
void heartbeat_status_json(struct daemon *d, json_t *status);
int64_t sched_tick(struct daemon *d);
bool daemon_loop_healthy(struct daemon *d, int64_t *ret_age);
/* Seconds since the scheduler last turned (or since start), on the monotonic clock. */
int64_t sched_loop_age(struct daemon *d);
bool sched_wedged(struct daemon *d);

/* notify.c */
void notify_ready(struct daemon *d);
void notify_status(struct daemon *d);
void notify_stopping(void);
int notify_watchdog_setup(struct daemon *d);
void notify_watchdog_free(void);
