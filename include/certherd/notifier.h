/* SPDX-License-Identifier: MIT */
/*
 * Alert messages and the notifiers that deliver them, behind one small
 * ops struct, one file per kind (src/notifier/notifier-*.c), found by
 * `type:` through a compile-time table like the deploy targets. send()
 * returning 0 means "started"; done() is always called later from the
 * event loop. A negative return means nothing was started.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "certherd/conf.h"
#include "certherd/err.h"

struct event_base;
struct ch_http;

enum ch_alert_kind {
	CH_ALERT_EXPIRING,        /* inside a warning window, not renewed */
	CH_ALERT_RENEWAL_FAILING, /* failed renewals reached the threshold */
	CH_ALERT_CA_UNREACHABLE,  /* the last renewal found the CA unreachable */
	CH_ALERT_CA_RATE_LIMITED, /* the CA asked us to come back later */
	CH_ALERT_DEPLOY_FAILED,   /* a deployment to a target is failing */
	CH_ALERT_ENDPOINT_STALE,  /* an endpoint is past stale_grace */
	CH_ALERT_CONFIG_REJECTED, /* a reloaded configuration was rejected */
	CH_ALERT_REHEARSAL_FAILED, /* the newest rehearsal of a certificate failed */
	_CH_ALERT_KIND_MAX,
	_CH_ALERT_KIND_INVALID = -22,
};
/* "expiring", "renewal-failing", "ca-unreachable", "ca-rate-limited",
 * "deploy-failed", "endpoint-stale", "config-rejected" */
const char *ch_alert_kind_to_string(enum ch_alert_kind k);
enum ch_alert_kind ch_alert_kind_from_string(const char *s);

/*
 * The stable key of a condition: "kind/cert/subject", where subject is
 * the target, endpoint or CA (cert and subject may be NULL: empty). '/'
 * and '%' inside the parts are escaped as %2F and %25 so that the key
 * splits back unambiguously. Caller frees; NULL on OOM.
 */
char *ch_alert_key(enum ch_alert_kind kind, const char *cert, const char *subject);

enum ch_alert_state {
	CH_ALERT_FIRING,   /* it started (or got worse) */
	CH_ALERT_REPEAT,   /* still open after the repeat interval */
	CH_ALERT_RESOLVED, /* it cleared */
};
const char *ch_alert_state_to_string(enum ch_alert_state s);

/* One message about one condition; every string borrowed. */
struct ch_alert {
	enum ch_alert_kind kind;
	enum ch_alert_state state;
	const char *key;
	const char *cert;    /* may be NULL */
	const char *subject; /* target, endpoint or CA; may be NULL */
	const char *summary; /* one line, e.g. "deployment of www to files is failing" */
	const char *detail;  /* the last error or similar; may be NULL */
	const char *host;    /* the cert host certherdd runs on */
	int64_t started_at;  /* when the condition began */
	int64_t at;          /* when this message was made */
};
/* "critical" for failures, "warning" for expiring and stale, per kind. */
const char *ch_alert_severity(const struct ch_alert *a);
/* "[certherd] FIRING deploy-failed: deployment of www to files is failing" (caller frees). */
char *ch_alert_subject_line(const struct ch_alert *a);
/* A few lines of plain text for mail and chat bodies (caller frees). */
char *ch_alert_text(const struct ch_alert *a);

/* Webhook bodies. */
enum ch_webhook_format {
	CH_WEBHOOK_JSON,
	CH_WEBHOOK_SLACK,
	CH_WEBHOOK_ALERTMANAGER,
	_CH_WEBHOOK_FORMAT_MAX,
	_CH_WEBHOOK_FORMAT_INVALID = -22,
};
enum ch_webhook_format ch_webhook_format_from_string(const char *s);
/* The body posted for a in format f (a new reference; NULL on OOM). */
json_t *ch_alert_webhook_body(const struct ch_alert *a, enum ch_webhook_format f);
/*
 * The whole RFC 5322 message for a (caller frees): From, To, Subject,
 * Date, Message-ID and a text/plain body, CRLF line ends, no bare dots
 * problem (libcurl dot-stuffs).
 */
char *ch_alert_email_message(const struct ch_alert *a, const char *from, char *const *to);

typedef void ch_notifier_done_fn(int r, const char *message, void *arg);

struct ch_notifier_env {
	struct event_base *base;
	struct ch_http *http; /* shared client for webhook and email */
};

struct ch_notifier_ops {
	const char *type;
	const struct ch_conf_key *keys;
	size_t opts_size;
	int (*check)(const void *opts, struct ch_err *reterr);
	/* Starts delivering a; done(r, message, arg) follows from the loop. */
	int (*send)(const struct ch_notifier_env *env, const void *opts, const struct ch_alert *a,
		    ch_notifier_done_fn *done, void *arg);
};

extern const struct ch_notifier_ops ch_notifier_webhook_ops, ch_notifier_exec_ops,
	ch_notifier_email_ops;

const struct ch_notifier_ops *ch_notifier_ops_find(const char *type);
const char *ch_notifier_types(void);
