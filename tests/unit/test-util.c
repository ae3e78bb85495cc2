/* SPDX-License-Identifier: MIT */
/*
 * Durations, durable atomic writes, file reads and small helpers.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certherd/target.h"
#include "certherd/util.h"

static char tmpdir[] = "/tmp/ch-test-util.XXXXXX";

static int
count_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)))
		if (strstr(e->d_name, ".tmp."))
			n++;
	closedir(d);
	return n;
}

START_TEST(test_duration)
{
	int64_t s;

	ck_assert_int_eq(ch_parse_duration("90d", &s), 0);
	ck_assert_int_eq(s, 90 * 86400);
	ck_assert_int_eq(ch_parse_duration("1h30m", &s), 0);
	ck_assert_int_eq(s, 5400);
	ck_assert_int_eq(ch_parse_duration("45", &s), 0);
	ck_assert_int_eq(s, 45);
	ck_assert_int_eq(ch_parse_duration("2w1d", &s), 0);
	ck_assert_int_eq(s, 15 * 86400);
	ck_assert_int_eq(ch_parse_duration("10y", &s), 0);
	ck_assert_int_eq(s, 3650 * 86400LL);
	ck_assert_int_eq(ch_parse_duration("ninety", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("5x", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("-5m", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("1h30", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("99999999999999999999d", &s), -EINVAL);
	ck_assert_int_eq(ch_parse_duration("999999999999999y", &s), -ERANGE);
}
END_TEST

START_TEST(test_format)
{
	char b[32];

	ck_assert_str_eq(ch_format_duration(0, b, sizeof(b)), "0s");
	ck_assert_str_eq(ch_format_duration(90, b, sizeof(b)), "1m30s");
	ck_assert_str_eq(ch_format_duration(86400 * 2 + 3600 * 3 + 5, b, sizeof(b)), "2d3h");
	ck_assert_str_eq(ch_format_duration(3600, b, sizeof(b)), "1h");
	ck_assert_str_eq(ch_format_time(0, b, sizeof(b)), "-");
	ck_assert_str_eq(ch_format_time(1700000000, b, sizeof(b)), "2023-11-14T22:13:20Z");
}
END_TEST

START_TEST(test_atomic_write)
{
	char path[256], *buf = NULL;
	struct ch_err err = { "" };
	struct stat st1, st2;
	size_t len;

	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	ck_assert_int_eq(ch_write_file_atomic(path, "first", 5, 0600, -1, -1, &err), 0);
	ck_assert_int_eq(stat(path, &st1), 0);
	ck_assert_int_eq(st1.st_mode & 07777, 0600);
	ck_assert_int_eq(ch_write_file_atomic(path, "second", 6, 0640, -1, -1, &err), 0);
	ck_assert_int_eq(stat(path, &st2), 0);
	/* Replaced by rename, not rewritten in place. */
	ck_assert_int_ne(st1.st_ino, st2.st_ino);
	ck_assert_int_eq(st2.st_mode & 07777, 0640);
	ck_assert_int_eq(ch_read_file(path, 1024, &buf, &len), 0);
	ck_assert_str_eq(buf, "second");
	ck_assert_int_eq(len, 6);
	free(buf);
	ck_assert_int_eq(count_tmp_files(tmpdir), 0);
	/* Too big for the cap. */
	ck_assert_int_eq(ch_read_file(path, 3, &buf, &len), -EFBIG);
}
END_TEST

START_TEST(test_atomic_write_failures)
{
	char path[256], link[256];
	struct ch_err err = { "" };

	snprintf(path, sizeof(path), "%s/missing-dir/x.pem", tmpdir);
	ck_assert_int_eq(ch_write_file_atomic(path, "x", 1, 0600, -1, -1, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "missing-dir"));

	snprintf(path, sizeof(path), "%s/real.pem", tmpdir);
	snprintf(link, sizeof(link), "%s/link.pem", tmpdir);
	ck_assert_int_eq(ch_write_file_atomic(path, "real", 4, 0600, -1, -1, &err), 0);
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(ch_write_file_atomic(link, "evil", 4, 0600, -1, -1, &err), -ELOOP);
	ck_assert_ptr_nonnull(strstr(err.msg, "symbolic link"));
	ck_assert_int_eq(count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_mkdir_p)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	ck_assert_int_eq(ch_mkdir_p(path, 0700), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(ch_mkdir_p(path, 0700), 0);
}
END_TEST

START_TEST(test_levenshtein_and_paths)
{
	char *p;

	ck_assert_int_eq(ch_levenshtein("lifetime", "lifetme"), 1);
	ck_assert_int_eq(ch_levenshtein("targets", "target"), 1);
	ck_assert_int_eq(ch_levenshtein("", "abc"), 3);
	ck_assert_int_eq(ch_levenshtein("same", "same"), 0);
	p = ch_path_join_abs("/etc/certherd", "./conf.d/x.yaml");
	ck_assert_str_eq(p, "/etc/certherd/conf.d/x.yaml");
	free(p);
	p = ch_path_join_abs("/etc/certherd", "/abs");
	ck_assert_str_eq(p, "/abs");
	free(p);
	p = ch_target_expand("/etc/ssl/{name}/{name}.crt", "www");
	ck_assert_str_eq(p, "/etc/ssl/www/www.crt");
	free(p);
	ck_assert_int_ne(ch_hash64("a"), ch_hash64("b"));
}
END_TEST

START_TEST(test_url_redact)
{
	static const char *const cases[][2] = {
		{ "https://hc-ping.com/0f1e2d3c-secret", "https://hc-ping.com/..." },
		{ "http://127.0.0.1:8080", "http://127.0.0.1:8080" },
		{ "http://127.0.0.1:8080/", "http://127.0.0.1:8080/..." },
		{ "https://user:pw@hooks.example.com/x?token=1", "https://hooks.example.com/..." },
		{ "https://hooks.slack.com/services/T0/B0/XYZ", "https://hooks.slack.com/..." },
		{ "smtp://mail.example.com:25", "smtp://mail.example.com:25" },
		{ "host?x=1", "host/..." },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_str_eq(ch_url_redact(cases[i][0], buf, sizeof(buf)), cases[i][1]);
	ck_assert_str_eq(ch_url_redact(NULL, buf, sizeof(buf)), "-");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");
	SRunner *sr;
	int failed;

	if (!mkdtemp(tmpdir))
		return EXIT_FAILURE;
	tcase_add_test(tc, test_duration);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_atomic_write);
	tcase_add_test(tc, test_atomic_write_failures);
	tcase_add_test(tc, test_mkdir_p);
	tcase_add_test(tc, test_url_redact);
	tcase_add_test(tc, test_levenshtein_and_paths);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
