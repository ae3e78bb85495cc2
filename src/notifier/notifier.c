/* SPDX-License-Identifier: MIT */
/*
 * The notifier registry (config `type:` to ops struct) and what every
 * notifier kind shares about an alert: its kind and state words, its
 * stable condition key, its severity, subject line and plain-text body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/notifier.h"
#include "certherd/util.h"

static const struct ch_notifier_ops *const notifier_table[] = {
	&ch_notifier_webhook_ops,
	&ch_notifier_exec_ops,
	&ch_notifier_email_ops,
};

static const char *const kind_table[_CH_ALERT_KIND_MAX] = {
	[CH_ALERT_EXPIRING] = "expiring",
	[CH_ALERT_RENEWAL_FAILING] = "renewal-failing",
	[CH_ALERT_CA_UNREACHABLE] = "ca-unreachable",
	[CH_ALERT_CA_RATE_LIMITED] = "ca-rate-limited",
	[CH_ALERT_DEPLOY_FAILED] = "deploy-failed",
	[CH_ALERT_ENDPOINT_STALE] = "endpoint-stale",
	[CH_ALERT_CONFIG_REJECTED] = "config-rejected",
	[CH_ALERT_REHEARSAL_FAILED] = "rehearsal-failed",
};

static const char *const state_table[] = {
	[CH_ALERT_FIRING] = "firing",
	[CH_ALERT_REPEAT] = "firing",
	[CH_ALERT_RESOLVED] = "resolved",
};

const struct ch_notifier_ops *
ch_notifier_ops_find(const char *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(notifier_table); i++)
		if (streq(notifier_table[i]->type, type))
			return notifier_table[i];
	return NULL;
}

const char *
ch_notifier_types(void)
{
	static char buf[128];

	if (!buf[0])
		for (size_t i = 0; i < ARRAY_SIZE(notifier_table); i++) {
			if (i)
				strcat(buf, ", ");
			strcat(buf, notifier_table[i]->type);
		}
	return buf;
}

const char *
ch_alert_kind_to_string(enum ch_alert_kind k)
{
	if ((int)k < 0 || k >= _CH_ALERT_KIND_MAX)
		return NULL;
	return kind_table[k];
}

enum ch_alert_kind
ch_alert_kind_from_string(const char *s)
{
	for (size_t i = 0; s && i < ARRAY_SIZE(kind_table); i++)
		if (streq(s, kind_table[i]))
			return (enum ch_alert_kind)i;
	return _CH_ALERT_KIND_INVALID;
}

const char *
ch_alert_state_to_string(enum ch_alert_state s)
{
	if ((int)s < 0 || (size_t)s >= ARRAY_SIZE(state_table))
		return NULL;
	return state_table[s];
}

/* Appends s with '%' and '/' escaped. */
static void
key_part(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '%')
			fputs("%25", f);
		else if (*s == '/')
			fputs("%2F", f);
		else
			fputc(*s, f);
	}
}

char *
ch_alert_key(enum ch_alert_kind kind, const char *cert, const char *subject)
{
	const char *k = ch_alert_kind_to_string(kind);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (!k)
		return NULL;
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fprintf(f, "%s/", k);
	key_part(f, cert);
	fputc('/', f);
	key_part(f, subject);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

const char *
ch_alert_severity(const struct ch_alert *a)
{
	switch (a->kind) {
	case CH_ALERT_EXPIRING:
	case CH_ALERT_ENDPOINT_STALE:
	case CH_ALERT_CA_RATE_LIMITED:
	case CH_ALERT_CONFIG_REJECTED:
	case CH_ALERT_REHEARSAL_FAILED:
		return "warning";
	default:
		return "critical";
	}
}

char *
ch_alert_subject_line(const struct ch_alert *a)
{
	const char *st = a->state == CH_ALERT_RESOLVED ? "RESOLVED"
			 : a->state == CH_ALERT_REPEAT ? "STILL FIRING"
						       : "FIRING";
	char *s = NULL;

	if (asprintf(&s, "[certherd] %s %s: %s", st, ch_alert_kind_to_string(a->kind),
		     a->summary ? a->summary : "") < 0)
		return NULL;
	/* One header line: no CR or LF may come from a summary. */
	for (char *p = s; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	return s;
}

char *
ch_alert_text(const struct ch_alert *a)
{
	char t1[32], t2[32];
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "%s: %s\n", a->state == CH_ALERT_RESOLVED ? "Resolved" : "Firing",
		a->summary ? a->summary : "");
	if (a->detail && *a->detail)
		fprintf(f, "Detail: %s\n", a->detail);
	if (a->cert && *a->cert)
		fprintf(f, "Certificate: %s\n", a->cert);
	if (a->subject && *a->subject)
		fprintf(f, "Subject: %s\n", a->subject);
	fprintf(f, "Kind: %s (%s)\n", ch_alert_kind_to_string(a->kind), ch_alert_severity(a));
	fprintf(f, "Since: %s\n", ch_format_time(a->started_at, t1, sizeof(t1)));
	fprintf(f, "At: %s\n", ch_format_time(a->at, t2, sizeof(t2)));
	if (a->host && *a->host)
		fprintf(f, "Host: %s\n", a->host);
	fprintf(f, "Key: %s\n", a->key ? a->key : "");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
