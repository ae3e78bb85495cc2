/* SPDX-License-Identifier: MIT */
/*
 * The "email" notifier: sends an alert as a plain-text mail over SMTP
 * (smtp:// or smtps:// URL) through libcurl's SMTP support on the
 * asynchronous client, so the loop never waits for the mail server.
 * The server accepting the message (250) is success.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certherd/http.h"
#include "certherd/macro.h"
#include "certherd/notifier.h"
#include "certherd/util.h"

#define EMAIL_TIMEOUT_DEFAULT 30

struct email_opts {
	char *smtp;
	char *from;
	char **to;
	int64_t timeout;
};

static const struct ch_conf_key email_keys[] = {
	{ "smtp", CH_CONF_STRING, offsetof(struct email_opts, smtp), true,
	  "an smtp://host:port or smtps://host:port URL" },
	{ "from", CH_CONF_STRING, offsetof(struct email_opts, from), true,
	  "a sender address such as certherd@example.com" },
	{ "to", CH_CONF_STRV, offsetof(struct email_opts, to), true,
	  "a list of recipient addresses" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct email_opts, timeout), false,
	  "a duration such as 30s (default 30s)" },
	{ NULL },
};

static bool
address_ok(const char *s)
{
	return s && *s && !strpbrk(s, "\r\n<>,") && strchr(s, '@');
}

static int
email_check(const void *opts, struct ch_err *reterr)
{
	const struct email_opts *o = opts;

	if (!o->smtp ||
	    (strncmp(o->smtp, "smtp://", 7) != 0 && strncmp(o->smtp, "smtps://", 8) != 0))
		return ch_err_set(reterr, -EINVAL, "smtp: expected an smtp://host:port URL");
	if (!address_ok(o->from))
		return ch_err_set(reterr, -EINVAL, "from: expected one address such as "
						    "certherd@example.com");
	if (!o->to || !o->to[0])
		return ch_err_set(reterr, -EINVAL, "to: expected at least one address");
	for (char **t = o->to; *t; t++)
		if (!address_ok(*t))
			return ch_err_set(reterr, -EINVAL, "to: \"%.80s\" is not an address", *t);
	return 0;
}

char *
ch_alert_email_message(const struct ch_alert *a, const char *from, char *const *to)
{
	_cleanup_free_ char *subject = ch_alert_subject_line(a);
	_cleanup_free_ char *text = ch_alert_text(a);
	char date[64];
	char *buf = NULL;
	size_t len = 0;
	time_t at = (time_t)a->at;
	struct tm tm;
	FILE *f;

	if (!subject || !text || !gmtime_r(&at, &tm))
		return NULL;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fprintf(f, "From: %s\r\nTo: ", from);
	for (char *const *t = to; t && *t; t++)
		fprintf(f, "%s%s", t == to ? "" : ", ", *t);
	fprintf(f, "\r\nSubject: %s\r\nDate: %s\r\n", subject, date);
	fprintf(f, "Message-ID: <certherd.%lld.%016llx.%d@%s>\r\n", (long long)a->at,
		(unsigned long long)ch_hash64(a->key ? a->key : ""), (int)a->state,
		a->host && *a->host ? a->host : "localhost");
	fprintf(f, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		   "Content-Transfer-Encoding: 8bit\r\n");
	fprintf(f, "X-Certherd-Alert: %s %s\r\n\r\n", ch_alert_state_to_string(a->state),
		a->key ? a->key : "");
	for (const char *p = text; *p; p++) {
		if (*p == '\n')
			fputs("\r\n", f);
		else if (*p != '\r')
			fputc(*p, f);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

struct email_job {
	ch_notifier_done_fn *done;
	void *arg;
};

static void
email_done(const struct ch_http_response *resp, void *arg)
{
	struct email_job *j = arg;
	char msg[320];
	int r = 0;

	if (resp->error < 0) {
		r = resp->error;
		snprintf(msg, sizeof(msg), "%s", resp->errmsg);
	} else {
		snprintf(msg, sizeof(msg), "SMTP %ld", resp->status);
		if (resp->status < 200 || resp->status > 299)
			r = -EPROTO;
	}
	j->done(r, msg, j->arg);
	free(j);
}

static int
email_send(const struct ch_notifier_env *env, const void *opts, const struct ch_alert *a,
	   ch_notifier_done_fn *done, void *arg)
{
	const struct email_opts *o = opts;
	_cleanup_free_ char *msg = ch_alert_email_message(a, o->from, o->to);
	struct email_job *j;
	int r;

	if (!msg)
		return -ENOMEM;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->done = done;
	j->arg = arg;
	struct ch_http_request req = {
		.method = "MAIL",
		.url = o->smtp,
		.body = msg,
		.body_len = strlen(msg),
		.timeout_ms = (o->timeout > 0 ? o->timeout : EMAIL_TIMEOUT_DEFAULT) * 1000,
		.mail_from = o->from,
		.mail_rcpt = (const char *const *)o->to,
	};
	r = ch_http_start(env->http, &req, email_done, j, NULL);
	if (r < 0)
		free(j);
	return r;
}

const struct ch_notifier_ops ch_notifier_email_ops = {
	.type = "email",
	.keys = email_keys,
	.opts_size = sizeof(struct email_opts),
	.check = email_check,
	.send = email_send,
};
