/* SPDX-License-Identifier: MIT */
/*
 * Status-socket request parsing: every malformed request gets an error,
 * never a crash.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/ctl.h"

static int
parse(const char *s, json_t **ret, struct ch_err *err)
{
	return ch_ctl_parse_request(s, strlen(s), ret, err);
}

START_TEST(test_good)
{
	struct ch_err err = { "" };
	json_t *req = NULL;

	ck_assert_int_eq(parse("{\"cmd\":\"renew\",\"name\":\"www\",\"force\":true}", &req, &err),
			 0);
	ck_assert_str_eq(json_string_value(json_object_get(req, "cmd")), "renew");
	json_decref(req);
}
END_TEST

START_TEST(test_bad)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"[1,2,3]",
		"{\"name\":\"x\"}",
		"{\"cmd\":42}",
		"{\"cmd\":\"status\",\"x\":{\"nested\":1}}",
		"{\"cmd\":\"status\",\"x\":[1]}",
		"{\"cmd\":\"status\",\"cmd\":\"list\"}",
		"{\"cmd\":\"status\"",
		"\xff\xfe\x00",
	};
	struct ch_err err;
	json_t *req = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		ck_assert_int_eq(parse(bad[i], &req, &err), -EINVAL);
		ck_assert_int_gt(strlen(err.msg), 5);
	}
}
END_TEST

START_TEST(test_too_long)
{
	struct ch_err err = { "" };
	json_t *req = NULL;
	size_t n = CH_CTL_MAX_REQUEST + 10;
	char *big = malloc(n + 1);

	memset(big, ' ', n);
	big[n] = '\0';
	memcpy(big, "{\"cmd\":\"status\"}", 16);
	ck_assert_int_eq(ch_ctl_parse_request(big, n, &req, &err), -EMSGSIZE);
	free(big);
}
END_TEST

START_TEST(test_reply_framing)
{
	json_t *e = ch_ctl_error("no certificate named '%s'", "www");
	size_t len;
	char *line = ch_ctl_dump_line(e, &len);

	ck_assert_int_eq(line[len - 1], '\n');
	ck_assert_ptr_null(memchr(line, '\n', len - 1));
	ck_assert_ptr_nonnull(strstr(line, "\"ok\":false"));
	ck_assert_ptr_nonnull(strstr(line, "no certificate named 'www'"));
	free(line);
	json_decref(e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("ctl");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_good);
	tcase_add_test(tc, test_bad);
	tcase_add_test(tc, test_too_long);
	tcase_add_test(tc, test_reply_framing);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
