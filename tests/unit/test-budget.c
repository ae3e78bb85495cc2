/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for budgets (src/lib/budget.c): registered domains by the
 * public suffix list (rules, wildcards, exceptions, private suffixes) and
 * by the two-label fallback, the limits a CA gets, and the token-bucket
 * arithmetic (remaining tokens, when the next one frees).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "certherd/budget.h"
#include "certherd/util.h"

#define DAY INT64_C(86400)
#define WEEK (7 * DAY)

static struct ch_psl *
load_rules(const char *text)
{
	char path[] = "/tmp/test-budget-XXXXXX";
	int fd = mkstemp(path);
	struct ch_psl *p = NULL;
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(ch_psl_load(path, &p), 0);
	unlink(path);
	return p;
}

static void
check_domain(const struct ch_psl *p, const char *name, const char *want)
{
	char buf[256];

	ck_assert_str_eq(ch_registered_domain(p, name, buf, sizeof(buf)), want);
}

START_TEST(test_domain_rules)
{
	/* The rule shapes of public_suffix_list.dat, with its comments. */
	struct ch_psl *p = load_rules("// ===BEGIN ICANN DOMAINS===\n"
				      "com\n"
				      "uk\n"
				      "co.uk\n"
				      "// kawasaki.jp : wildcard with an exception\n"
				      "jp\n"
				      "*.kawasaki.jp\n"
				      "!city.kawasaki.jp\n"
				      "// ===BEGIN PRIVATE DOMAINS===\n"
				      "github.io\n"
				      "\n");

	ck_assert_uint_eq(ch_psl_size(p), 7);
	check_domain(p, "www.example.com", "example.com");
	check_domain(p, "a.b.c.example.com", "example.com");
	check_domain(p, "example.com", "example.com");
	check_domain(p, "WWW.Example.COM.", "example.com");
	check_domain(p, "*.example.com", "example.com");
	check_domain(p, "shop.example.co.uk", "example.co.uk");
	check_domain(p, "example.uk", "example.uk");
	check_domain(p, "a.b.kawasaki.jp", "a.b.kawasaki.jp");      /* *.kawasaki.jp is a suffix */
	check_domain(p, "x.city.kawasaki.jp", "city.kawasaki.jp"); /* the exception */
	check_domain(p, "alice.github.io", "alice.github.io");     /* private suffix */
	check_domain(p, "www.example.test", "example.test");       /* unlisted TLD: rule "*" */
	check_domain(p, "com", "com");                              /* a suffix itself */
	ch_psl_free(p);
}
END_TEST

START_TEST(test_domain_fallback)
{
	char small[8];

	check_domain(NULL, "www.example.com", "example.com");
	check_domain(NULL, "a.example.test", "example.test");
	check_domain(NULL, "*.example.test", "example.test");
	check_domain(NULL, "localhost", "localhost");
	/* The fallback cannot know co.uk: documented, which is why the list is used. */
	check_domain(NULL, "shop.example.co.uk", "co.uk");
	ck_assert_str_eq(ch_registered_domain(NULL, "www.example.com", small, sizeof(small)), "");
}
END_TEST

START_TEST(test_domain_debian_list)
{
	struct ch_psl *p = NULL;

	if (access(CH_PSL_PATH, R_OK) != 0)
		return; /* publicsuffix not installed: covered by test_domain_rules */
	ck_assert_int_eq(ch_psl_load(CH_PSL_PATH, &p), 0);
	ck_assert_uint_gt(ch_psl_size(p), 5000);
	check_domain(p, "www.bbc.co.uk", "bbc.co.uk");
	check_domain(p, "a.b.example.com", "example.com");
	check_domain(p, "me.github.io", "me.github.io");
	check_domain(p, "x.example.test", "example.test");
	ch_psl_free(p);
}
END_TEST

START_TEST(test_limits)
{
	struct ch_conf_budget none = { -1, -1 }, some = { 2, -1 }, off = { 0, 0 };
	struct ch_budget_limits l;
	const char *le = "https://acme-v02.api.letsencrypt.org/directory";

	ch_budget_limits_resolve(&none, le, &l);
	ck_assert_int_eq(l.max[CH_BUDGET_CERTS_PER_DOMAIN], 50);
	ck_assert_int_eq(l.max[CH_BUDGET_FAILED_VALIDATIONS], 5);
	ch_budget_limits_resolve(&some, le, &l);
	ck_assert_int_eq(l.max[CH_BUDGET_CERTS_PER_DOMAIN], 2);
	ck_assert_int_eq(l.max[CH_BUDGET_FAILED_VALIDATIONS], 5);
	ch_budget_limits_resolve(&off, le, &l);
	ck_assert_int_eq(l.max[CH_BUDGET_CERTS_PER_DOMAIN], 0);
	ck_assert_int_eq(l.max[CH_BUDGET_FAILED_VALIDATIONS], 0);
	/* Other CAs get none unless configured. */
	ch_budget_limits_resolve(&none, "https://acme.zerossl.com/v2/DV90", &l);
	ck_assert_int_eq(l.max[CH_BUDGET_CERTS_PER_DOMAIN], 0);
	ch_budget_limits_resolve(&some, NULL, &l);
	ck_assert_int_eq(l.max[CH_BUDGET_CERTS_PER_DOMAIN], 2);
	ck_assert_int_eq(l.max[CH_BUDGET_FAILED_VALIDATIONS], 0);
	ck_assert_str_eq(ch_budget_limit_to_string(CH_BUDGET_CERTS_PER_DOMAIN),
			 "certificates_per_domain_per_week");
	ck_assert_int_eq(ch_budget_limit_window(CH_BUDGET_FAILED_VALIDATIONS), 3600);
}
END_TEST

START_TEST(test_bucket)
{
	int64_t now = 1000 * WEEK, rem, at;
	int64_t two[] = { now - 100, now - 50 };
	int64_t old[] = { now - WEEK - 1, now - WEEK };

	/* Unused: full. */
	ch_budget_eval(2, WEEK, NULL, 0, now, &rem, &at);
	ck_assert_int_eq(rem, 2);
	ck_assert_int_eq(at, now);
	/* Two of two used just now: exhausted; one token back after WEEK / 2 from the last. */
	ch_budget_eval(2, WEEK, two, 2, now, &rem, &at);
	ck_assert_int_eq(rem, 0);
	ck_assert_int_eq(at, now - 50 + WEEK / 2 - 50);
	/* One used: one left. */
	ch_budget_eval(2, WEEK, two, 1, now, &rem, &at);
	ck_assert_int_eq(rem, 1);
	ck_assert_int_eq(at, now);
	/* Uses a window ago or older no longer count. */
	ch_budget_eval(2, WEEK, old, 2, now, &rem, &at);
	ck_assert_int_eq(rem, 2);
	/* Let's Encrypt's 50 per week: 1 back every 201.6 minutes. */
	{
		int64_t v[50];

		for (int i = 0; i < 50; i++)
			v[i] = now - 10;
		ch_budget_eval(50, WEEK, v, 50, now, &rem, &at);
		ck_assert_int_eq(rem, 0);
		ck_assert_int_eq(at, now - 10 + (WEEK + 49) / 50);
		ch_budget_eval(50, WEEK, v, 50, now + WEEK / 50 * 3, &rem, &at);
		ck_assert_int_eq(rem, 3); /* three refill periods (and 10 s) since */
		ch_budget_eval(50, WEEK, v, 50, now + WEEK, &rem, &at);
		ck_assert_int_eq(rem, 50);
	}
	/* Refill between uses: 5 per hour, used at 0 and 720 s (one refill in between). */
	{
		int64_t v[] = { now - 3000, now - 2280, now - 2280, now - 2280, now - 2280, now - 2280 };

		ch_budget_eval(5, 3600, v, 6, now - 2280, &rem, &at);
		ck_assert_int_eq(rem, 0);
		ck_assert_int_eq(at, now - 2280 + 720);
	}
	/* No limit configured counts as nothing left, never as free. */
	ch_budget_eval(0, WEEK, NULL, 0, now, &rem, &at);
	ck_assert_int_eq(rem, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("budget");
	TCase *tc = tcase_create("budget");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_domain_rules);
	tcase_add_test(tc, test_domain_fallback);
	tcase_add_test(tc, test_domain_debian_list);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_bucket);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
