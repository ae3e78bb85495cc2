/* SPDX-License-Identifier: MIT */
/*
 * The "webhook" notifier: POSTs an alert as JSON to a URL through the
 * asynchronous HTTP client, in certherd's own format, as a Slack incoming
 * webhook message, or as an Alertmanager v2 alert list. Any 2xx answer is
 * success; anything else fails the attempt (the caller retries).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/http.h"
#include "certherd/macro.h"
#include "certherd/notifier.h"
#include "certherd/util.h"

#define WEBHOOK_TIMEOUT_DEFAULT 10

struct webhook_opts {
	char *url;
	char *format;
	char **headers;
	int64_t timeout;
};

static const struct ch_conf_key webhook_keys[] = {
	{ "url", CH_CONF_STRING, offsetof(struct webhook_opts, url), true,
	  "an http:// or https:// URL" },
	{ "format", CH_CONF_STRING, offsetof(struct webhook_opts, format), false,
	  "json, slack or alertmanager" },
	{ "headers", CH_CONF_STRV, offsetof(struct webhook_opts, headers), false,
	  "a list of \"Name: value\" header lines" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct webhook_opts, timeout), false,
	  "a duration such as 10s (default 10s)" },
	{ NULL },
};

static const char *const format_table[_CH_WEBHOOK_FORMAT_MAX] = {
	[CH_WEBHOOK_JSON] = "json",
	[CH_WEBHOOK_SLACK] = "slack",
	[CH_WEBHOOK_ALERTMANAGER] = "alertmanager",
};

enum ch_webhook_format
ch_webhook_format_from_string(const char *s)
{
	if (!s)
		return CH_WEBHOOK_JSON;
	for (size_t i = 0; i < ARRAY_SIZE(format_table); i++)
		if (streq(s, format_table[i]))
			return (enum ch_webhook_format)i;
	return _CH_WEBHOOK_FORMAT_INVALID;
}

static int
webhook_check(const void *opts, struct ch_err *reterr)
{
	const struct webhook_opts *o = opts;

	if (!o->url || (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0))
		return ch_err_set(reterr, -EINVAL, "url: expected an http:// or https:// URL");
	if ((int)ch_webhook_format_from_string(o->format) < 0)
		return ch_err_set(reterr, -EINVAL,
				  "format: expected json, slack or alertmanager, got \"%.80s\"",
				  o->format);
	for (char **h = o->headers; h && *h; h++) {
		const char *colon = strchr(*h, ':');

		if (!colon || colon == *h || strpbrk(*h, "\r\n"))
			return ch_err_set(reterr, -EINVAL,
					  "headers: expected \"Name: value\" lines, got \"%.80s\"",
					  *h);
	}
	return 0;
}

static json_t *
body_json(const struct ch_alert *a)
{
	return json_pack("{s:i,s:s,s:b,s:s,s:s,s:s?,s:s?,s:s,s:s?,s:s?,s:s?,s:I,s:I}", "version", 1,
			 "status", ch_alert_state_to_string(a->state), "repeat",
			 a->state == CH_ALERT_REPEAT, "kind", ch_alert_kind_to_string(a->kind),
			 "key", a->key, "certificate", a->cert, "subject", a->subject, "severity",
			 ch_alert_severity(a), "summary", a->summary, "detail", a->detail, "host",
			 a->host, "started_at", (json_int_t)a->started_at, "at",
			 (json_int_t)a->at);
}

static json_t *
body_slack(const struct ch_alert *a)
{
	_cleanup_free_ char *title = ch_alert_subject_line(a);
	_cleanup_free_ char *text = ch_alert_text(a);
	const char *color = a->state == CH_ALERT_RESOLVED		 ? "good"
			    : streq(ch_alert_severity(a), "critical") ? "danger"
								  : "warning";

	if (!title || !text)
		return NULL;
	return json_pack("{s:s,s:[{s:s,s:s,s:s,s:s}]}", "text", title, "attachments", "color",
			 color, "title", a->summary ? a->summary : "", "text", text, "fallback",
			 title);
}

static json_t *
body_alertmanager(const struct ch_alert *a)
{
	char t1[32], t2[32];
	_cleanup_free_ char *name = ch_xasprintf("certherd-%s", ch_alert_kind_to_string(a->kind));
	json_t *labels, *alert;

	labels = json_pack("{s:s,s:s,s:s,s:s}", "alertname", name, "kind",
			   ch_alert_kind_to_string(a->kind), "severity", ch_alert_severity(a),
			   "key", a->key ? a->key : "");
	if (!labels)
		return NULL;
	if (a->cert && *a->cert)
		json_object_set_new(labels, "certificate", json_string(a->cert));
	if (a->subject && *a->subject)
		json_object_set_new(labels, "subject", json_string(a->subject));
	if (a->host && *a->host)
		json_object_set_new(labels, "instance", json_string(a->host));
	alert = json_pack("{s:o,s:{s:s,s:s},s:s}", "labels", labels, "annotations", "summary",
			  a->summary ? a->summary : "", "description", a->detail ? a->detail : "",
			  "startsAt", ch_format_time(a->started_at, t1, sizeof(t1)));
	if (!alert)
		return NULL;
	/* Without endsAt Alertmanager keeps a firing alert open for its resolve_timeout. */
	if (a->state == CH_ALERT_RESOLVED)
		json_object_set_new(alert, "endsAt",
				    json_string(ch_format_time(a->at, t2, sizeof(t2))));
	return json_pack("[o]", alert);
}

json_t *
ch_alert_webhook_body(const struct ch_alert *a, enum ch_webhook_format f)
{
	switch (f) {
	case CH_WEBHOOK_SLACK:
		return body_slack(a);
	case CH_WEBHOOK_ALERTMANAGER:
		return body_alertmanager(a);
	case CH_WEBHOOK_JSON:
		return body_json(a);
	default:
		return NULL;
	}
}

struct webhook_job {
	ch_notifier_done_fn *done;
	void *arg;
};

static void
webhook_done(const struct ch_http_response *resp, void *arg)
{
	struct webhook_job *j = arg;
	char msg[320];
	int r = 0;

	if (resp->error < 0) {
		r = resp->error;
		snprintf(msg, sizeof(msg), "%s", resp->errmsg);
	} else if (resp->status < 200 || resp->status > 299) {
		r = -EPROTO;
		snprintf(msg, sizeof(msg), "HTTP %ld", resp->status);
	} else
		snprintf(msg, sizeof(msg), "HTTP %ld", resp->status);
	j->done(r, msg, j->arg);
	free(j);
}

static int
webhook_send(const struct ch_notifier_env *env, const void *opts, const struct ch_alert *a,
	     ch_notifier_done_fn *done, void *arg)
{
	const struct webhook_opts *o = opts;
	json_t *body = ch_alert_webhook_body(a, ch_webhook_format_from_string(o->format));
	_cleanup_free_ char *s = NULL;
	struct webhook_job *j;
	int r;

	if (!body)
		return -ENOMEM;
	s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!s)
		return -ENOMEM;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->done = done;
	j->arg = arg;
	struct ch_http_request req = {
		.method = "POST",
		.url = o->url,
		.body = s,
		.body_len = strlen(s),
		.content_type = "application/json",
		.headers = (const char *const *)o->headers,
		.timeout_ms = (o->timeout > 0 ? o->timeout : WEBHOOK_TIMEOUT_DEFAULT) * 1000,
	};
	r = ch_http_start(env->http, &req, webhook_done, j, NULL);
	if (r < 0)
		free(j);
	return r;
}

const struct ch_notifier_ops ch_notifier_webhook_ops = {
	.type = "webhook",
	.keys = webhook_keys,
	.opts_size = sizeof(struct webhook_opts),
	.check = webhook_check,
	.send = webhook_send,
};
