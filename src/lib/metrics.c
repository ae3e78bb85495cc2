/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text exposition format, version 0.0.4: lines appended
 * to a growing buffer, label values escaped, histograms written as
 * cumulative buckets. Kept free of I/O so that it can be unit-tested and
 * so that one exposition of a large inventory costs little more than the
 * bytes it holds.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/macro.h"
#include "certherd/metrics.h"

void
ch_metrics_buf_done(struct ch_metrics_buf *b)
{
	free(b->data);
	*b = (struct ch_metrics_buf){ 0 };
}

static bool
metrics_buf_reserve(struct ch_metrics_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1) {
		if (cap > SIZE_MAX / 2) {
			b->oom = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void
ch_metrics_buf_append(struct ch_metrics_buf *b, const char *s, size_t n)
{
	if (!metrics_buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
metrics_buf_puts(struct ch_metrics_buf *b, const char *s)
{
	ch_metrics_buf_append(b, s, strlen(s));
}

/* Appends s with the characters in `special` escaped. */
static void
metrics_escape(struct ch_metrics_buf *b, const char *s, const char *special)
{
	while (*s) {
		size_t run = strcspn(s, special);

		ch_metrics_buf_append(b, s, run);
		s += run;
		if (!*s)
			break;
		switch (*s) {
		case '\\':
			ch_metrics_buf_append(b, "\\\\", 2);
			break;
		case '"':
			ch_metrics_buf_append(b, "\\\"", 2);
			break;
		case '\n':
			ch_metrics_buf_append(b, "\\n", 2);
			break;
		default:
			break;
		}
		s++;
	}
}

void
ch_metrics_escape_label(struct ch_metrics_buf *b, const char *v)
{
	metrics_escape(b, v ? v : "", "\\\"\n");
}

void
ch_metrics_family(struct ch_metrics_buf *b, const char *name, const char *type,
		  const char *help)
{
	metrics_buf_puts(b, "# HELP ");
	metrics_buf_puts(b, name);
	ch_metrics_buf_append(b, " ", 1);
	metrics_escape(b, help, "\\\n");
	metrics_buf_puts(b, "\n# TYPE ");
	metrics_buf_puts(b, name);
	ch_metrics_buf_append(b, " ", 1);
	metrics_buf_puts(b, type);
	ch_metrics_buf_append(b, "\n", 1);
}

/* name{k="v",...} followed by a space; extra_k/extra_v add one more label. */
static void
metrics_series(struct ch_metrics_buf *b, const char *name, const char *const *labels,
	       const char *extra_k, const char *extra_v)
{
	bool first = true;

	metrics_buf_puts(b, name);
	if ((labels && labels[0]) || extra_k) {
		ch_metrics_buf_append(b, "{", 1);
		for (size_t i = 0; labels && labels[i]; i += 2) {
			if (!first)
				ch_metrics_buf_append(b, ",", 1);
			first = false;
			metrics_buf_puts(b, labels[i]);
			ch_metrics_buf_append(b, "=\"", 2);
			ch_metrics_escape_label(b, labels[i + 1]);
			ch_metrics_buf_append(b, "\"", 1);
		}
		if (extra_k) {
			if (!first)
				ch_metrics_buf_append(b, ",", 1);
			metrics_buf_puts(b, extra_k);
			ch_metrics_buf_append(b, "=\"", 2);
			ch_metrics_escape_label(b, extra_v);
			ch_metrics_buf_append(b, "\"", 1);
		}
		ch_metrics_buf_append(b, "}", 1);
	}
	ch_metrics_buf_append(b, " ", 1);
}

void
ch_metrics_sample_int(struct ch_metrics_buf *b, const char *name, const char *const *labels,
		      int64_t value)
{
	char v[32];
	int n;

	metrics_series(b, name, labels, NULL, NULL);
	n = snprintf(v, sizeof(v), "%" PRId64 "\n", value);
	ch_metrics_buf_append(b, v, (size_t)n);
}

const char *
ch_metrics_format_double(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
	else if (v == (double)(int64_t)v && fabs(v) < 9.0e15)
		snprintf(buf, len, "%" PRId64, (int64_t)v);
	else {
		/* The shortest of %.15g and %.17g that reads back as v. */
		snprintf(buf, len, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, len, "%.17g", v);
	}
	return buf;
}

void
ch_metrics_sample_double(struct ch_metrics_buf *b, const char *name,
			 const char *const *labels, double value)
{
	char v[40];

	metrics_series(b, name, labels, NULL, NULL);
	metrics_buf_puts(b, ch_metrics_format_double(value, v, sizeof(v)));
	ch_metrics_buf_append(b, "\n", 1);
}

void
ch_metrics_histogram_observe(struct ch_metrics_histogram *h, const double *bounds,
			     size_t n_bounds, double v)
{
	size_t i = 0;

	if (n_bounds > CH_METRICS_MAX_BUCKETS)
		n_bounds = CH_METRICS_MAX_BUCKETS;
	while (i < n_bounds && v > bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

void
ch_metrics_histogram_write(struct ch_metrics_buf *b, const char *name,
			   const char *const *labels, const struct ch_metrics_histogram *h,
			   const double *bounds, size_t n_bounds)
{
	size_t size = strlen(name) + sizeof("_bucket");
	char *series = malloc(size);
	char le[40], v[40];
	uint64_t cum = 0;
	int n;

	if (!series) {
		b->oom = true;
		return;
	}
	if (n_bounds > CH_METRICS_MAX_BUCKETS)
		n_bounds = CH_METRICS_MAX_BUCKETS;
	snprintf(series, size, "%s_bucket", name);
	for (size_t i = 0; i <= n_bounds; i++) {
		cum += h->counts[i];
		metrics_series(b, series, labels, "le",
			       i < n_bounds ? ch_metrics_format_double(bounds[i], le, sizeof(le))
					    : "+Inf");
		n = snprintf(v, sizeof(v), "%" PRIu64 "\n", cum);
		ch_metrics_buf_append(b, v, (size_t)n);
	}
	snprintf(series, size, "%s_sum", name);
	ch_metrics_sample_double(b, series, labels, h->sum);
	snprintf(series, size, "%s_count", name);
	metrics_series(b, series, labels, NULL, NULL);
	n = snprintf(v, sizeof(v), "%" PRIu64 "\n", h->count);
	ch_metrics_buf_append(b, v, (size_t)n);
	free(series);
}

bool
ch_metrics_listen_disabled(const char *s)
{
	return !s || !*s || streq(s, "off");
}

int
ch_metrics_parse_listen(const char *s, char **ret_host, uint16_t *ret_port)
{
	const char *host, *port;
	size_t hlen;
	char *end;
	unsigned long p;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(close - host);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* none, or a bare IPv6 address without brackets */
		host = s;
		hlen = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hlen == 0 || hlen > 255 || !*port || strspn(port, "0123456789") != strlen(port))
		return -EINVAL;
	errno = 0;
	p = strtoul(port, &end, 10);
	if (errno || *end || p == 0 || p > 65535)
		return -EINVAL;
	if (ret_host) {
		*ret_host = strndup(host, hlen);
		if (!*ret_host)
			return -ENOMEM;
	}
	if (ret_port)
		*ret_port = (uint16_t)p;
	return 0;
}
