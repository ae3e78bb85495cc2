/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text format writer: label value escaping, sample and
 * family lines, histogram buckets and the metrics_listen address parser.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/metrics.h"

/* The text written by fn into a fresh buffer; the caller frees it. */
static char *
take(struct ch_metrics_buf *b)
{
	char *s;

	ck_assert(!b->oom);
	s = strdup(b->data ? b->data : "");
	ch_metrics_buf_done(b);
	return s;
}

static void
assert_escaped(const char *in, const char *want)
{
	struct ch_metrics_buf b = { 0 };
	char *got;

	ch_metrics_escape_label(&b, in);
	got = take(&b);
	ck_assert_str_eq(got, want);
	free(got);
}

START_TEST(test_escape_label)
{
	assert_escaped("plain-name.example", "plain-name.example");
	assert_escaped("", "");
	assert_escaped(NULL, "");
	assert_escaped("a\\b", "a\\\\b");
	assert_escaped("say \"hi\"", "say \\\"hi\\\"");
	assert_escaped("two\nlines", "two\\nlines");
	assert_escaped("\\\"\n", "\\\\\\\"\\n");
	/* Other bytes, UTF-8 and tabs included, are copied as they are. */
	assert_escaped("tab\there \xc3\xa9", "tab\there \xc3\xa9");
	assert_escaped("trailing\\", "trailing\\\\");
}
END_TEST

START_TEST(test_samples)
{
	struct ch_metrics_buf b = { 0 };
	char *got;

	ch_metrics_family(&b, "certherd_x_total", "counter", "Help with \\ and\nnewline.");
	ch_metrics_sample_int(&b, "certherd_x_total", NULL, 3);
	ch_metrics_sample_int(&b, "certherd_x_total",
			      (const char *[]){ "certificate", "w\"w\nw", "result", "ok", NULL },
			      -7);
	ch_metrics_sample_int(&b, "certherd_y", (const char *[]){ NULL }, 1795434781);
	ch_metrics_sample_double(&b, "certherd_z", NULL, 0.25);
	got = take(&b);
	ck_assert_str_eq(got, "# HELP certherd_x_total Help with \\\\ and\\nnewline.\n"
			      "# TYPE certherd_x_total counter\n"
			      "certherd_x_total 3\n"
			      "certherd_x_total{certificate=\"w\\\"w\\nw\",result=\"ok\"} -7\n"
			      "certherd_y 1795434781\n"
			      "certherd_z 0.25\n");
	free(got);
}
END_TEST

START_TEST(test_format_double)
{
	char buf[40];

	ck_assert_str_eq(ch_metrics_format_double(1, buf, sizeof(buf)), "1");
	ck_assert_str_eq(ch_metrics_format_double(0.05, buf, sizeof(buf)), "0.05");
	ck_assert_str_eq(ch_metrics_format_double(0.1 + 0.2, buf, sizeof(buf)),
			 "0.30000000000000004");
	ck_assert_str_eq(ch_metrics_format_double(-2.5, buf, sizeof(buf)), "-2.5");
	ck_assert_str_eq(ch_metrics_format_double(INFINITY, buf, sizeof(buf)), "+Inf");
	ck_assert_str_eq(ch_metrics_format_double(-INFINITY, buf, sizeof(buf)), "-Inf");
	ck_assert_str_eq(ch_metrics_format_double(NAN, buf, sizeof(buf)), "NaN");
}
END_TEST

START_TEST(test_histogram)
{
	static const double bounds[] = { 0.1, 1, 10 };
	struct ch_metrics_histogram h = { 0 };
	struct ch_metrics_buf b = { 0 };
	char *got;

	ch_metrics_histogram_observe(&h, bounds, 3, 0.05);
	ch_metrics_histogram_observe(&h, bounds, 3, 0.1); /* le is inclusive */
	ch_metrics_histogram_observe(&h, bounds, 3, 5);
	ch_metrics_histogram_observe(&h, bounds, 3, 50);
	ch_metrics_histogram_write(&b, "certherd_d_seconds", (const char *[]){ "ca", "x", NULL },
				   &h, bounds, 3);
	got = take(&b);
	ck_assert_str_eq(got, "certherd_d_seconds_bucket{ca=\"x\",le=\"0.1\"} 2\n"
			      "certherd_d_seconds_bucket{ca=\"x\",le=\"1\"} 2\n"
			      "certherd_d_seconds_bucket{ca=\"x\",le=\"10\"} 3\n"
			      "certherd_d_seconds_bucket{ca=\"x\",le=\"+Inf\"} 4\n"
			      "certherd_d_seconds_sum{ca=\"x\"} 55.15\n"
			      "certherd_d_seconds_count{ca=\"x\"} 4\n");
	free(got);
}
END_TEST

START_TEST(test_parse_listen)
{
	char *host = NULL;
	uint16_t port = 0;

	ck_assert_int_eq(ch_metrics_parse_listen("127.0.0.1:9465", &host, &port), 0);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_int_eq(port, 9465);
	free(host);
	ck_assert_int_eq(ch_metrics_parse_listen("[::1]:80", &host, &port), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 80);
	free(host);
	ck_assert_int_eq(ch_metrics_parse_listen("localhost:65535", NULL, NULL), 0);
	ck_assert_int_eq(ch_metrics_parse_listen("127.0.0.1", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen(":9465", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("::1:9465", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("[::1]9465", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("host:0", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("host:65536", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("host:+80", NULL, NULL), -EINVAL);
	ck_assert_int_eq(ch_metrics_parse_listen("host:", NULL, NULL), -EINVAL);
	ck_assert(ch_metrics_listen_disabled(""));
	ck_assert(ch_metrics_listen_disabled("off"));
	ck_assert(ch_metrics_listen_disabled(NULL));
	ck_assert(!ch_metrics_listen_disabled("127.0.0.1:9465"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_escape_label);
	tcase_add_test(tc, test_samples);
	tcase_add_test(tc, test_format_double);
	tcase_add_test(tc, test_histogram);
	tcase_add_test(tc, test_parse_listen);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
