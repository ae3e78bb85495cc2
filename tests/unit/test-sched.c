/* SPDX-License-Identifier: MIT */
/*
 * Scheduling arithmetic: renewal window, jitter bounds and backoff.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "certherd/conf.h"
#include "certherd/sched.h"

#define DAY 86400

START_TEST(test_two_thirds)
{
	/* 90-day certificate: renew about 60 days in, never later. */
	int64_t nb = 1000000, na = nb + 90 * DAY;
	int64_t at = ch_sched_renew_at("www", nb, na, 0);

	ck_assert_int_le(at, nb + 60 * DAY);
	ck_assert_int_ge(at, nb + 60 * DAY - 3600);
}
END_TEST

START_TEST(test_short_lived_half)
{
	/* Under 10 days: half the lifetime (a 6-day cert renews at 3 days). */
	int64_t nb = 5000, na = nb + 6 * DAY;
	int64_t at = ch_sched_renew_at("short", nb, na, 0);

	ck_assert_int_le(at, nb + 3 * DAY);
	ck_assert_int_ge(at, nb + 3 * DAY - 3600);
}
END_TEST

START_TEST(test_renew_before)
{
	int64_t nb = 0, na = 90 * DAY;
	int64_t at = ch_sched_renew_at("x", nb, na, 30 * DAY);

	ck_assert_int_le(at, na - 30 * DAY);
	ck_assert_int_ge(at, na - 30 * DAY - 3600);
	/* renew_before longer than the lifetime falls back to the default rule. */
	at = ch_sched_renew_at("x", nb, na, 100 * DAY);
	ck_assert_int_le(at, 60 * DAY);
}
END_TEST

START_TEST(test_minutes)
{
	/* A 3-minute demo certificate renews at 90 s minus at most 9 s. */
	int64_t at = ch_sched_renew_at("demo", 100, 280, 0);

	ck_assert_int_le(at, 190);
	ck_assert_int_ge(at, 181);
}
END_TEST

START_TEST(test_jitter_bounds_and_spread)
{
	int64_t min = 1 << 30, max = -1, sum = 0;
	int distinct_first = 0;

	for (int i = 0; i < 10000; i++) {
		char name[32];
		int64_t j;

		snprintf(name, sizeof(name), "cert-%d", i);
		j = ch_sched_jitter(name, 42, 3600);
		ck_assert_int_ge(j, 0);
		ck_assert_int_lt(j, 3600);
		if (j < min)
			min = j;
		if (j > max)
			max = j;
		sum += j;
		if (i < 100 && j != ch_sched_jitter("cert-0", 42, 3600))
			distinct_first++;
	}
	/* Spread over the whole span, mean near the middle. */
	ck_assert_int_lt(min, 60);
	ck_assert_int_gt(max, 3540);
	ck_assert_int_gt(sum / 10000, 1600);
	ck_assert_int_lt(sum / 10000, 2000);
	ck_assert_int_gt(distinct_first, 95);
	/* Deterministic. */
	ck_assert_int_eq(ch_sched_jitter("www", 7, 1000), ch_sched_jitter("www", 7, 1000));
	ck_assert_int_eq(ch_sched_jitter("www", 7, 0), 0);
}
END_TEST

/* One certificate per kind of target, by name; the first one without targets. */
START_TEST(test_rehearsal_certs)
{
	char *t_files[] = { "files", NULL }, *t_both[] = { "files2", "k8s", NULL },
	     *t_reload[] = { "files", "hup", NULL }, *t_none[] = { NULL };
	struct ch_conf_target targets[] = {
		{ .name = "files", .type = "file" },
		{ .name = "files2", .type = "file" },
		{ .name = "hup", .type = "reload" },
		{ .name = "k8s", .type = "kubernetes" },
	};
	struct ch_conf_cert certs[] = {
		{ .name = "a", .s = { .ca = "prod", .targets = t_files } },
		{ .name = "b", .s = { .ca = "prod", .targets = t_files } },
		{ .name = "c", .s = { .ca = "other", .targets = t_both } },
		{ .name = "d", .s = { .ca = "prod", .targets = t_both } },
		{ .name = "e", .s = { .ca = "prod", .targets = t_reload } },
		{ .name = "f", .s = { .ca = "bare", .targets = t_none } },
		{ .name = "g", .s = { .ca = "bare", .targets = t_none } },
	};
	struct ch_conf c = { .targets = targets, .n_targets = 4, .certs = certs, .n_certs = 7 };
	const struct ch_conf_cert *got[8];

	ck_assert_uint_eq(ch_sched_rehearsal_certs(&c, "prod", got, 8), 3);
	ck_assert_str_eq(got[0]->name, "a"); /* file */
	ck_assert_str_eq(got[1]->name, "d"); /* kubernetes (file already covered) */
	ck_assert_str_eq(got[2]->name, "e"); /* reload */
	ck_assert_uint_eq(ch_sched_rehearsal_certs(&c, "prod", got, 1), 1);
	ck_assert_uint_eq(ch_sched_rehearsal_certs(&c, "other", got, 8), 1);
	ck_assert_str_eq(got[0]->name, "c");
	ck_assert_uint_eq(ch_sched_rehearsal_certs(&c, "bare", got, 8), 1);
	ck_assert_str_eq(got[0]->name, "f");
	ck_assert_uint_eq(ch_sched_rehearsal_certs(&c, "none", got, 8), 0);
}
END_TEST

START_TEST(test_backoff)
{
	int64_t prev = 0;

	/* 1 min doubling, capped at 1 h, jitter at most 10 % below. */
	for (int f = 1; f <= 20; f++) {
		int64_t d = ch_sched_backoff("www", f);
		int64_t nominal = 60;

		for (int i = 1; i < f && nominal < 3600; i++)
			nominal *= 2;
		if (nominal > 3600)
			nominal = 3600;
		ck_assert_int_le(d, nominal);
		ck_assert_int_ge(d, nominal - nominal / 10);
		ck_assert_int_ge(d, prev - 360);
		prev = d;
	}
	ck_assert_int_ge(ch_sched_backoff("www", 1), 54);
	ck_assert_int_le(ch_sched_backoff("www", 100), 3600);
	ck_assert_int_ge(ch_sched_backoff("www", 100), 3240);
	/* Never 0, even for nonsense input. */
	ck_assert_int_ge(ch_sched_backoff("www", 0), 54);
	/* The test-only start: 3 s doubling, still capped at 1 h; nonsense restores 1 min. */
	ch_sched_set_backoff_min(3);
	ck_assert_int_eq(ch_sched_backoff("www", 1), 3);
	ck_assert_int_eq(ch_sched_backoff("www", 3), 12);
	ck_assert_int_le(ch_sched_backoff("www", 30), 3600);
	ck_assert_int_ge(ch_sched_backoff("www", 30), 3240);
	ch_sched_set_backoff_min(0);
	ck_assert_int_ge(ch_sched_backoff("www", 1), 54);
	ch_sched_set_backoff_min(61);
	ck_assert_int_ge(ch_sched_backoff("www", 1), 54);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("sched");
	TCase *tc = tcase_create("sched");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_two_thirds);
	tcase_add_test(tc, test_short_lived_half);
	tcase_add_test(tc, test_renew_before);
	tcase_add_test(tc, test_minutes);
	tcase_add_test(tc, test_jitter_bounds_and_spread);
	tcase_add_test(tc, test_backoff);
	tcase_add_test(tc, test_rehearsal_certs);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
