/* SPDX-License-Identifier: MIT */
/*
 * Writing the Prometheus text exposition format (version 0.0.4): a
 * growing text buffer, label value escaping, sample lines and a
 * fixed-bucket histogram. Pure formatting, no I/O; the daemon's HTTP side
 * is src/daemon/metrics.c. Also parses the `metrics_listen` address.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Zero-initialise. Out of memory sets oom and drops what follows. */
struct ch_metrics_buf {
	char *data; /* NUL-terminated when non-NULL */
	size_t len, cap;
	bool oom;
};
void ch_metrics_buf_done(struct ch_metrics_buf *b);
void ch_metrics_buf_append(struct ch_metrics_buf *b, const char *s, size_t n);

/*
 * Appends v escaped as a label value: backslash, double quote and line
 * feed become \\, \" and \n; everything else is copied as is.
 */
void ch_metrics_escape_label(struct ch_metrics_buf *b, const char *v);

/* "# HELP name help" (help escaped: \\ and \n) and "# TYPE name type". */
void ch_metrics_family(struct ch_metrics_buf *b, const char *name, const char *type,
		       const char *help);

/*
 * One sample line: name{k1="v1",k2="v2"} value. labels holds name/value
 * pairs and ends with NULL (labels itself may be NULL for none); a NULL
 * value is written as "".
 */
void ch_metrics_sample_int(struct ch_metrics_buf *b, const char *name,
			   const char *const *labels, int64_t value);
void ch_metrics_sample_double(struct ch_metrics_buf *b, const char *name,
			      const char *const *labels, double value);

/* Formats a sample value: integers exactly, +Inf/-Inf/NaN by name. */
const char *ch_metrics_format_double(double v, char *buf, size_t len);

/*
 * A histogram over fixed upper bounds (ascending, without +Inf). counts[i]
 * holds the observations in bucket i alone; the cumulative _bucket lines
 * are computed when written.
 */
#define CH_METRICS_MAX_BUCKETS 16
struct ch_metrics_histogram {
	uint64_t counts[CH_METRICS_MAX_BUCKETS + 1]; /* the last one is +Inf */
	uint64_t count;
	double sum;
};
void ch_metrics_histogram_observe(struct ch_metrics_histogram *h, const double *bounds,
				  size_t n_bounds, double v);
/* name_bucket{labels...,le="b"}, name_sum{labels} and name_count{labels}. */
void ch_metrics_histogram_write(struct ch_metrics_buf *b, const char *name,
				const char *const *labels, const struct ch_metrics_histogram *h,
				const double *bounds, size_t n_bounds);

/*
 * Parses "host:port" or "[v6addr]:port" (port 1-65535). The host may be
 * a name or an address and is not resolved. Returns 0, or -EINVAL.
 * *ret_host is allocated; the caller frees it.
 */
int ch_metrics_parse_listen(const char *s, char **ret_host, uint16_t *ret_port);
/* True when s disables the listener: NULL, "" or "off". */
bool ch_metrics_listen_disabled(const char *s);
