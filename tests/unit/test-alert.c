/* SPDX-License-Identifier: MIT */
/*
 * The pure parts of alerting: condition keys, kind words, subject lines,
 * the webhook bodies (certherd JSON, Slack, Alertmanager), the mail, and
 * the notifiers:, alerts: and heartbeat: configuration.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certherd/conf.h"
#include "certherd/notifier.h"

static struct ch_alert
sample(enum ch_alert_state st)
{
	return (struct ch_alert){
		.kind = CH_ALERT_DEPLOY_FAILED,
		.state = st,
		.key = "deploy-failed/www/files",
		.cert = "www",
		.subject = "files",
		.summary = "deployment of www to files is failing",
		.detail = "attempt 2: cannot open out/www.crt",
		.host = "certhost",
		.started_at = 1800000000,
		.at = 1800000600,
	};
}

START_TEST(test_keys)
{
	char *k = ch_alert_key(CH_ALERT_DEPLOY_FAILED, "www", "files");

	ck_assert_str_eq(k, "deploy-failed/www/files");
	free(k);
	k = ch_alert_key(CH_ALERT_CONFIG_REJECTED, NULL, NULL);
	ck_assert_str_eq(k, "config-rejected//");
	free(k);
	/* Parts that contain the separator cannot collide with other keys. */
	k = ch_alert_key(CH_ALERT_ENDPOINT_STALE, "a/b", "c%d");
	ck_assert_str_eq(k, "endpoint-stale/a%2Fb/c%25d");
	free(k);
	char *k1 = ch_alert_key(CH_ALERT_ENDPOINT_STALE, "a/b", "c");
	char *k2 = ch_alert_key(CH_ALERT_ENDPOINT_STALE, "a", "b/c");

	ck_assert_str_ne(k1, k2);
	free(k1);
	free(k2);
	ck_assert_ptr_null(ch_alert_key(_CH_ALERT_KIND_MAX, "x", "y"));
}
END_TEST

START_TEST(test_kinds)
{
	for (int i = 0; i < _CH_ALERT_KIND_MAX; i++) {
		const char *s = ch_alert_kind_to_string(i);

		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(ch_alert_kind_from_string(s), i);
	}
	ck_assert_int_lt(ch_alert_kind_from_string("nope"), 0);
	ck_assert_int_lt(ch_alert_kind_from_string(NULL), 0);
	ck_assert_str_eq(ch_alert_kind_to_string(CH_ALERT_CA_RATE_LIMITED), "ca-rate-limited");
	ck_assert_ptr_nonnull(ch_notifier_ops_find("webhook"));
	ck_assert_ptr_nonnull(ch_notifier_ops_find("exec"));
	ck_assert_ptr_nonnull(ch_notifier_ops_find("email"));
	ck_assert_ptr_null(ch_notifier_ops_find("pager"));
	ck_assert_str_eq(ch_notifier_types(), "webhook, exec, email");
}
END_TEST

START_TEST(test_subject_line)
{
	struct ch_alert a = sample(CH_ALERT_FIRING);
	char *s = ch_alert_subject_line(&a);

	ck_assert_str_eq(s, "[certherd] FIRING deploy-failed: deployment of www to files is failing");
	free(s);
	a.state = CH_ALERT_REPEAT;
	s = ch_alert_subject_line(&a);
	ck_assert_str_eq(s, "[certherd] STILL FIRING deploy-failed: deployment of www to files is "
			    "failing");
	free(s);
	a.state = CH_ALERT_RESOLVED;
	a.summary = "evil\r\nBcc: someone@example.com";
	s = ch_alert_subject_line(&a);
	ck_assert_ptr_null(strpbrk(s, "\r\n"));
	free(s);
	ck_assert_str_eq(ch_alert_severity(&a), "critical");
	a.kind = CH_ALERT_EXPIRING;
	ck_assert_str_eq(ch_alert_severity(&a), "warning");
}
END_TEST

START_TEST(test_webhook_json)
{
	struct ch_alert a = sample(CH_ALERT_REPEAT);
	json_t *b = ch_alert_webhook_body(&a, CH_WEBHOOK_JSON);

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(json_integer_value(json_object_get(b, "version")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "firing");
	ck_assert(json_is_true(json_object_get(b, "repeat")));
	ck_assert_str_eq(json_string_value(json_object_get(b, "kind")), "deploy-failed");
	ck_assert_str_eq(json_string_value(json_object_get(b, "key")), "deploy-failed/www/files");
	ck_assert_str_eq(json_string_value(json_object_get(b, "certificate")), "www");
	ck_assert_str_eq(json_string_value(json_object_get(b, "subject")), "files");
	ck_assert_str_eq(json_string_value(json_object_get(b, "severity")), "critical");
	ck_assert_int_eq(json_integer_value(json_object_get(b, "started_at")), 1800000000);
	json_decref(b);
	a.state = CH_ALERT_RESOLVED;
	a.cert = NULL;
	b = ch_alert_webhook_body(&a, CH_WEBHOOK_JSON);
	ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "resolved");
	ck_assert(json_is_false(json_object_get(b, "repeat")));
	ck_assert(json_is_null(json_object_get(b, "certificate")));
	json_decref(b);
}
END_TEST

START_TEST(test_webhook_slack)
{
	struct ch_alert a = sample(CH_ALERT_FIRING);
	json_t *b = ch_alert_webhook_body(&a, CH_WEBHOOK_SLACK);
	json_t *att;

	ck_assert_ptr_nonnull(b);
	ck_assert_str_eq(json_string_value(json_object_get(b, "text")),
			 "[certherd] FIRING deploy-failed: deployment of www to files is failing");
	att = json_array_get(json_object_get(b, "attachments"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(att, "color")), "danger");
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(att, "text")),
				     "Detail: attempt 2: cannot open out/www.crt"));
	json_decref(b);
	a.state = CH_ALERT_RESOLVED;
	b = ch_alert_webhook_body(&a, CH_WEBHOOK_SLACK);
	att = json_array_get(json_object_get(b, "attachments"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(att, "color")), "good");
	json_decref(b);
}
END_TEST

START_TEST(test_webhook_alertmanager)
{
	struct ch_alert a = sample(CH_ALERT_FIRING);
	json_t *b = ch_alert_webhook_body(&a, CH_WEBHOOK_ALERTMANAGER);
	json_t *al, *labels;

	ck_assert(json_is_array(b));
	ck_assert_int_eq(json_array_size(b), 1);
	al = json_array_get(b, 0);
	labels = json_object_get(al, "labels");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "alertname")),
			 "certherd-deploy-failed");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "certificate")), "www");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "subject")), "files");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "instance")), "certhost");
	ck_assert_str_eq(json_string_value(json_object_get(labels, "severity")), "critical");
	ck_assert_str_eq(json_string_value(json_object_get(al, "startsAt")), "2027-01-15T08:00:00Z");
	ck_assert_ptr_null(json_object_get(al, "endsAt"));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(al, "annotations"),
							   "description")),
			 "attempt 2: cannot open out/www.crt");
	json_decref(b);
	a.state = CH_ALERT_RESOLVED;
	b = ch_alert_webhook_body(&a, CH_WEBHOOK_ALERTMANAGER);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(b, 0), "endsAt")),
			 "2027-01-15T08:10:00Z");
	json_decref(b);
	ck_assert_int_eq(ch_webhook_format_from_string("slack"), CH_WEBHOOK_SLACK);
	ck_assert_int_eq(ch_webhook_format_from_string(NULL), CH_WEBHOOK_JSON);
	ck_assert_int_lt(ch_webhook_format_from_string("xml"), 0);
}
END_TEST

START_TEST(test_email)
{
	struct ch_alert a = sample(CH_ALERT_FIRING);
	char *to[] = { "a@example.com", "b@example.com", NULL };
	char *m = ch_alert_email_message(&a, "certherd@example.com", to);

	ck_assert_ptr_nonnull(m);
	ck_assert(strncmp(m, "From: certherd@example.com\r\nTo: a@example.com, b@example.com\r\n"
			     "Subject: [certherd] FIRING deploy-failed: deployment of www to files "
			     "is failing\r\nDate: Fri, 15 Jan 2027 08:10:00 +0000\r\n",
			  strlen("From: certherd@example.com\r\nTo: a@example.com, "
				 "b@example.com\r\nSubject: [certherd] FIRING deploy-failed: "
				 "deployment of www to files is failing\r\nDate: Fri, 15 Jan "
				 "2027 08:10:00 +0000\r\n")) == 0);
	ck_assert_ptr_nonnull(strstr(m, "\r\n\r\nFiring: deployment of www to files is failing\r\n"));
	/* Every line ends in CRLF: no bare LF. */
	for (char *p = m; (p = strchr(p, '\n')); p++)
		ck_assert(p > m && p[-1] == '\r');
	free(m);
}
END_TEST

static struct ch_conf *
load(const char *yaml, struct ch_conf_errors *errs)
{
	char path[] = "/tmp/test-alert-XXXXXX.yaml";
	int fd = mkstemps(path, 5);
	struct ch_conf *c = NULL;
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(yaml, f);
	fclose(f);
	if (ch_conf_load(path, &c, errs) < 0)
		c = NULL;
	unlink(path);
	return c;
}

#define BASE "state_dir: /tmp/x\ncas:\n  l:\n    type: local\n"

START_TEST(test_conf_defaults)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *c = load(BASE, &errs);

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->alerts.repeat_interval, 4 * 3600);
	ck_assert_int_eq(c->alerts.renewal_failures, 3);
	ck_assert_int_eq(c->alerts.n_warning_windows, 4);
	ck_assert_int_eq(c->alerts.warning_windows[0], 30 * 86400);
	ck_assert_int_eq(c->alerts.warning_windows[3], 86400);
	ck_assert_ptr_null(c->heartbeat.url);
	ck_assert_int_eq(c->heartbeat.interval, 300);
	ck_assert_int_eq(c->n_notifiers, 0);
	ch_conf_free(c);
}
END_TEST

START_TEST(test_conf_full)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *c = load(BASE "notifiers:\n"
				      "  hook:\n    type: webhook\n    url: https://h/x\n"
				      "    format: slack\n    headers: [\"Authorization: Bearer t\"]\n"
				      "  page:\n    type: exec\n    command: [/bin/true]\n"
				      "  mail:\n    type: email\n    smtp: smtp://127.0.0.1:25\n"
				      "    from: c@example.com\n    to: [o@example.com]\n"
				      "alerts:\n  repeat_interval: 1h\n  warning_windows: [1d, 10d]\n"
				      "  renewal_failures: 5\n  check_interval: 10s\n"
				      "heartbeat:\n  url: https://hc/ping\n  interval: 1m\n"
				      "  method: POST\n",
				 &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i].message);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->n_notifiers, 3);
	ck_assert_ptr_nonnull(ch_conf_find_notifier(c, "mail"));
	ck_assert_str_eq(ch_conf_find_notifier(c, "page")->type, "exec");
	ck_assert_int_eq(c->alerts.repeat_interval, 3600);
	ck_assert_int_eq(c->alerts.n_warning_windows, 2);
	ck_assert_int_eq(c->alerts.warning_windows[0], 10 * 86400); /* longest first */
	ck_assert_int_eq(c->alerts.renewal_failures, 5);
	ck_assert_int_eq(c->alerts.check_interval, 10);
	ck_assert_str_eq(c->heartbeat.url, "https://hc/ping");
	ck_assert_str_eq(c->heartbeat.method, "POST");
	ck_assert_int_eq(c->heartbeat.interval, 60);
	ch_conf_free(c);
}
END_TEST

START_TEST(test_conf_errors)
{
	static const char *const bad[] = {
		BASE "notifiers:\n  x:\n    type: pager\n",
		BASE "notifiers:\n  x:\n    type: webhook\n    url: ftp://x\n",
		BASE "notifiers:\n  x:\n    type: webhook\n    url: http://x\n    format: xml\n",
		BASE "notifiers:\n  x:\n    type: webhook\n    url: http://x\n    headers: [nocolon]\n",
		BASE "notifiers:\n  x:\n    type: email\n    smtp: http://x\n    from: a@b\n    to: [c@d]\n",
		BASE "notifiers:\n  x:\n    type: email\n    smtp: smtp://x\n    from: a@b\n",
		BASE "alerts:\n  warning_windows: [7d, soon]\n",
		BASE "alerts:\n  renewal_failures: 0\n",
		BASE "alerts:\n  repeat: 1h\n",
		BASE "heartbeat:\n  interval: 5m\n",
		BASE "heartbeat:\n  url: https://x\n  method: PUT\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ch_conf_errors errs = { 0 };
		struct ch_conf *c = load(bad[i], &errs);

		ck_assert_msg(c == NULL, "config %zu loaded", i);
		ck_assert_uint_ge(errs.n, 1);
		ch_conf_errors_clear(&errs);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("alert");
	TCase *tc = tcase_create("alert");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_kinds);
	tcase_add_test(tc, test_subject_line);
	tcase_add_test(tc, test_webhook_json);
	tcase_add_test(tc, test_webhook_slack);
	tcase_add_test(tc, test_webhook_alertmanager);
	tcase_add_test(tc, test_email);
	tcase_add_test(tc, test_conf_defaults);
	tcase_add_test(tc, test_conf_full);
	tcase_add_test(tc, test_conf_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
