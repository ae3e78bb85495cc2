/* SPDX-License-Identifier: MIT */
/*
 * The CLI verbs, one function each, and their table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ch-config.h"
#include "certherd/conf.h"
#include "certherd/crl.h"
#include "certherd/util.h"
#include "cli.h"

#define S(o, k) json_string_value(json_object_get((o), (k)))
#define I(o, k) ((long long)json_integer_value(json_object_get((o), (k))))

static int
print_json(json_t *r)
{
	char *s = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s) {
		puts(s);
		free(s);
	}
	return 0;
}

/* Prints the reply's error and returns CLI_EXIT_ERROR; NULL-safe. */
static int
reply_failed(json_t *r)
{
	json_t *errs;
	size_t i;
	json_t *e;

	if (!r)
		return CLI_EXIT_ERROR;
	fprintf(stderr, "certherd: %s\n", S(r, "error") ? S(r, "error") : "request failed");
	errs = json_object_get(r, "errors");
	json_array_foreach(errs, i, e) fprintf(stderr, "  %s\n", json_string_value(e));
	json_decref(r);
	return CLI_EXIT_ERROR;
}

static json_t *
call(const struct cli *c, json_t *req)
{
	json_t *r = cli_call(c, req);

	if (r && !json_is_true(json_object_get(r, "ok"))) {
		reply_failed(r);
		return NULL;
	}
	return r;
}

static int
verb_status(const struct cli *c, int argc, char **argv)
{
	json_t *r = call(c, json_pack("{s:s}", "cmd", "status"));
	long long now = (long long)time(NULL);
	const char *health;
	char b1[64], b2[64];
	json_t *v, *arr;
	const char *k;
	size_t i;
	int rc;

	if (!r)
		return CLI_EXIT_ERROR;
	health = S(r, "health");
	rc = streq_ptr(health, "ok") ? CLI_EXIT_OK : CLI_EXIT_FAILING;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return rc;
	}
	printf("certherdd %s (pid %lld), up %s\n", S(r, "version"), I(r, "pid"),
	       ch_format_duration(now - I(r, "started_at"), b1, sizeof(b1)));
	printf("health:       %s\n", health);
	printf("certificates: %lld (", I(r, "certificates"));
	i = 0;
	json_object_foreach(json_object_get(r, "counts"), k, v)
	{
		printf("%s%lld %s", i++ ? ", " : "", (long long)json_integer_value(v), k);
	}
	printf(")\n");
	v = json_object_get(r, "next_renewal");
	if (S(v, "name"))
		printf("next renewal: %s %s (%s)\n", S(v, "name"),
		       cli_relative(I(v, "at"), now, b1, sizeof(b1)),
		       ch_format_time(I(v, "at"), b2, sizeof(b2)));
	v = json_object_get(r, "config");
	printf("config:       %s, loaded %s\n", S(v, "file"),
	       cli_relative(I(v, "loaded_at"), now, b1, sizeof(b1)));
	if (json_array_size(json_object_get(v, "errors"))) {
		printf("CONFIG REJECTED %s (still running on the previous one):\n",
		       cli_relative(I(v, "rejected_at"), now, b1, sizeof(b1)));
		json_array_foreach(json_object_get(v, "errors"), i, arr)
			printf("  %s\n", json_string_value(arr));
	}
	v = json_object_get(r, "inventory");
	if (S(v, "state") && !streq(S(v, "state"), "ok"))
		printf("INVENTORY %s since %s: %s; renewals and deployments wait, next try %s\n",
		       streq(S(v, "state"), "locked") ? "LOCKED" : "NOT WRITABLE",
		       cli_relative(I(v, "since"), now, b1, sizeof(b1)), S(v, "error"),
		       cli_relative(I(v, "next_attempt_at"), now, b2, sizeof(b2)));
	v = json_object_get(r, "files");
	if (streq_ptr(S(v, "state"), "stalled"))
		printf("FILE WRITES STALLED: %s has not returned for %llds; %lld groups of files "
		       "(keys, deployments) wait for it\n",
		       S(v, "at"), I(v, "step_seconds"), I(v, "queued"));
	arr = json_object_get(r, "failing");
	if (json_array_size(arr)) {
		printf("\nFAILING RENEWALS:\n");
		json_array_foreach(arr, i, v)
			if (streq_ptr(S(v, "outcome"), "budget-exhausted"))
				printf("  %s: not sent, %s; next try %s\n", S(v, "name"), S(v, "error"),
				       cli_relative(I(v, "next_attempt_at"), now, b1, sizeof(b1)));
			else
				printf("  %s: %s after %lld attempts: %s; next try %s\n", S(v, "name"),
				       S(v, "outcome"), I(v, "failures"), S(v, "error"),
				       cli_relative(I(v, "next_attempt_at"), now, b1, sizeof(b1)));
	}
	arr = json_object_get(r, "budgets");
	if (json_array_size(arr)) {
		json_t *dv;
		size_t kd;

		printf("\nCA budgets (remaining of each limit, per registered domain):\n");
		json_array_foreach(arr, i, v)
		{
			printf("  %s %s: %lld of %lld remaining%s\n", S(v, "ca"), S(v, "limit"),
			       I(v, "remaining"), I(v, "max"),
			       json_array_size(json_object_get(v, "domains")) ? " (least)" : "");
			json_array_foreach(json_object_get(v, "domains"), kd, dv)
			{
				printf("    %s: %lld remaining", S(dv, "domain"), I(dv, "remaining"));
				if (I(dv, "frees_at"))
					printf(", EXHAUSTED until %s (%s)",
					       ch_format_time(I(dv, "frees_at"), b2, sizeof(b2)),
					       cli_relative(I(dv, "frees_at"), now, b1, sizeof(b1)));
				printf("\n");
			}
		}
	}
	arr = json_object_get(r, "deployments_failing");
	if (json_array_size(arr)) {
		printf("\nFAILING DEPLOYMENTS:\n");
		json_array_foreach(arr, i, v)
			printf("  %s -> %s: %s (%lld attempts); next try %s\n", S(v, "name"),
			       S(v, "target"), S(v, "error"), I(v, "attempts"),
			       cli_relative(I(v, "next_attempt_at"), now, b1, sizeof(b1)));
	}
	arr = json_object_get(r, "endpoints_failing");
	if (json_array_size(arr)) {
		printf("\nENDPOINTS NOT SERVING THE NEWEST CERTIFICATE:\n");
		json_array_foreach(arr, i, v)
			printf("  %s @ %s: %s since %s: %s\n", S(v, "name"), S(v, "endpoint"),
			       S(v, "state"), cli_relative(I(v, "since"), now, b1, sizeof(b1)),
			       S(v, "message") ? S(v, "message") : "");
	}
	arr = json_object_get(r, "endpoints_settling");
	if (json_array_size(arr)) {
		printf("\nendpoints not yet verified (within stale_grace):\n");
		json_array_foreach(arr, i, v)
			printf("  %s @ %s: %s since %s\n", S(v, "name"), S(v, "endpoint"),
			       S(v, "state"), cli_relative(I(v, "since"), now, b1, sizeof(b1)));
	}
	v = json_object_get(r, "scheduler");
	if (v && !json_is_true(json_object_get(v, "healthy")))
		printf("\nSCHEDULER STALLED: last turned %s; heartbeats and watchdog pings held "
		       "back\n",
		       cli_relative(I(v, "last_loop_at"), now, b1, sizeof(b1)));
	arr = json_object_get(r, "notifiers_failing");
	if (json_array_size(arr)) {
		printf("\nFAILING NOTIFIERS (alerts may not reach on-call):\n");
		json_array_foreach(arr, i, v)
			printf("  %s (%s): %s; %lld failures in a row, last success %s\n",
			       S(v, "name"), S(v, "type"), S(v, "error") ? S(v, "error") : "",
			       I(v, "consecutive"),
			       I(v, "last_ok_at") ? cli_relative(I(v, "last_ok_at"), now, b1, sizeof(b1))
						  : "never");
	}
	v = json_object_get(r, "alerts");
	if (v && I(v, "open"))
		printf("\nalerts open: %lld (sent to %lld notifiers)\n", I(v, "open"),
		       I(v, "notifiers"));
	arr = json_object_get(r, "expiring");
	if (json_array_size(arr)) {
		printf("\nEXPIRING WITHIN THEIR WARNING WINDOW:\n");
		json_array_foreach(arr, i, v)
			printf("  %s: serial %s expires %s\n", S(v, "name"), S(v, "serial"),
			       cli_relative(I(v, "not_after"), now, b1, sizeof(b1)));
	}
	json_decref(r);
	return rc;
}

static int
verb_list(const struct cli *c, int argc, char **argv)
{
	static const char ok[] = "{\"ok\":true,";
	long long now = (long long)time(NULL);
	struct table *t;
	json_t *r, *v;
	size_t i;

	if (c->json) {
		/* Passed on as the daemon wrote it (one compact line): the list
		 * of a large inventory is not parsed and printed again. */
		_cleanup_free_ char *line = cli_call_line(c, json_pack("{s:s}", "cmd", "list"));

		if (!line)
			return CLI_EXIT_ERROR;
		if (strncmp(line, ok, sizeof(ok) - 1) == 0) {
			puts(line);
			return CLI_EXIT_OK;
		}
		r = json_loads(line, 0, NULL);
		return reply_failed(r);
	}
	r = call(c, json_pack("{s:s}", "cmd", "list"));
	if (!r)
		return CLI_EXIT_ERROR;
	t = table_new(6, "NAME", "STATE", "SERIAL", "EXPIRES", "RENEWS", "LAST");
	json_array_foreach(json_object_get(r, "certificates"), i, v)
	{
		char b1[64], b2[64], serial[20];
		const char *s = S(v, "serial");

		if (!json_is_true(json_object_get(v, "wanted")))
			continue;
		snprintf(serial, sizeof(serial), "%.16s", s ? s : "-");
		table_add(t, S(v, "name"), S(v, "state"), serial,
			  cli_relative(I(v, "not_after"), now, b1, sizeof(b1)),
			  cli_relative(I(v, "next_at"), now, b2, sizeof(b2)), S(v, "last_outcome"));
	}
	table_print(t);
	table_free(t);
	json_decref(r);
	return CLI_EXIT_OK;
}

/* Where the runbook section for a failing stage is. */
static void
print_runbook(const char *indent, const char *section)
{
	printf("%srunbook: %s/runbooks.md#%s\n", indent, CH_DOCDIR, section);
}

static const char *
renewal_runbook(const char *outcome)
{
	if (streq_ptr(outcome, "ca-unreachable"))
		return "ca-unreachable";
	if (streq_ptr(outcome, "pending"))
		return "rate-limited";
	if (streq_ptr(outcome, "budget-exhausted"))
		return "budget-exhausted";
	return "renewal-failing";
}

static int
verb_show(const struct cli *c, int argc, char **argv)
{
	json_t *r = call(c, json_pack("{s:s,s:s}", "cmd", "show", "name", argv[0]));
	long long now = (long long)time(NULL);
	json_t *cert, *v, *d, *n;
	char b1[64], b2[64];
	size_t i, k;

	if (!r)
		return CLI_EXIT_ERROR;
	if (c->json) {
		print_json(r);
		json_decref(r);
		return CLI_EXIT_OK;
	}
	cert = json_object_get(r, "certificate");
	printf("%s: %s%s\n", S(cert, "name"), S(cert, "state"),
	       json_is_true(json_object_get(cert, "wanted")) ? "" : " (not in the configuration)");
	printf("  names:    ");
	json_array_foreach(json_object_get(cert, "names"), i, n)
		printf("%s%s", i ? ", " : "", json_string_value(n));
	printf("\n  CA:       ");
	if (json_array_size(json_object_get(cert, "cas")))
		json_array_foreach(json_object_get(cert, "cas"), i, n)
			printf("%s%s", i ? ", " : "", json_string_value(n));
	else
		printf("%s", S(cert, "ca") ? S(cert, "ca") : "-");
	if (S(cert, "ca_active"))
		printf(" (this renewal failed over to %s, %lld failed attempts there)",
		       S(cert, "ca_active"), I(cert, "ca_failures"));
	printf("\n  targets:  ");
	json_array_foreach(json_object_get(cert, "targets"), i, n)
		printf("%s%s", i ? ", " : "", json_string_value(n));
	printf("\n\nStages:\n");
	printf("  renewal due:       %s (%s)\n", cli_relative(I(cert, "renew_at"), now, b1, 64),
	       ch_format_time(I(cert, "renew_at"), b2, sizeof(b2)));
	if ((v = json_object_get(cert, "renewal_window"))) {
		char b3[64];

		if (I(v, "end"))
			printf("  CA's window (ARI): %s .. %s, ",
			       ch_format_time(I(v, "start"), b1, sizeof(b1)),
			       ch_format_time(I(v, "end"), b2, sizeof(b2)));
		else
			printf("  CA's window (ARI): not known yet, ");
		printf("next check %s\n", cli_relative(I(v, "next_check"), now, b3, sizeof(b3)));
		if (S(v, "explanation_url"))
			printf("  CA's explanation:  %s\n", S(v, "explanation_url"));
		if (S(v, "error"))
			printf("  window check:      %s\n", S(v, "error"));
	}
	printf("  renewal attempted: %s\n", cli_relative(I(cert, "last_attempt_at"), now, b1, 64));
	printf("  renewal succeeded: %s\n", cli_relative(I(cert, "last_success_at"), now, b1, 64));
	printf("  last outcome:      %s\n", S(cert, "last_outcome") ? S(cert, "last_outcome") : "-");
	if (S(cert, "last_error")) {
		printf("  last error:        %s (%lld consecutive failures; next try %s)\n",
		       S(cert, "last_error"), I(cert, "failures"),
		       cli_relative(I(cert, "next_at"), now, b1, 64));
		print_runbook("  ", renewal_runbook(S(cert, "last_outcome")));
	}
	json_array_foreach(json_object_get(r, "issuances"), i, v)
	{
		printf("\n%s serial %s%s\n", i == 0 ? "Current" : "Earlier", S(v, "serial"),
		       json_is_true(json_object_get(v, "adopted")) ? " (adopted)" : "");
		if (S(v, "ca"))
			printf("  issued by CA %s\n", S(v, "ca"));
		if (I(v, "revoked_at"))
			printf("  REVOKED %s (%s)\n", cli_relative(I(v, "revoked_at"), now, b1, 64),
			       S(v, "revocation_reason") ? S(v, "revocation_reason") : "unspecified");
		printf("  valid %s .. %s (expires %s)\n",
		       ch_format_time(I(v, "not_before"), b1, sizeof(b1)),
		       ch_format_time(I(v, "not_after"), b2, sizeof(b2)),
		       cli_relative(I(v, "not_after"), now, b1, sizeof(b1)));
		printf("  sha256 %s\n", S(v, "fingerprint"));
		json_array_foreach(json_object_get(v, "deployments"), k, d)
		{
			printf("  -> %-16s %-10s attempts %lld, ", S(d, "target"), S(d, "state"),
			       I(d, "attempts"));
			if (I(d, "succeeded_at"))
				printf("deployed %s", cli_relative(I(d, "succeeded_at"), now, b1, 64));
			else
				printf("attempted %s",
				       cli_relative(I(d, "attempted_at"), now, b1, 64));
			if (S(d, "last_error"))
				printf(": %s", S(d, "last_error"));
			printf("\n");
			if (streq_ptr(S(d, "state"), "failed"))
				print_runbook("     ", "deployment-failing");
		}
		if (i >= 2)
			break;
	}
	if (json_array_size(json_object_get(r, "endpoints"))) {
		printf("\nEndpoints (verified by a TLS handshake):\n");
		json_array_foreach(json_object_get(r, "endpoints"), i, v)
		{
			printf("  %-24s %-16s since %s, checked %s", S(v, "endpoint"), S(v, "state"),
			       cli_relative(I(v, "since"), now, b1, sizeof(b1)),
			       cli_relative(I(v, "checked_at"), now, b2, sizeof(b2)));
			if (S(v, "message"))
				printf(": %s", S(v, "message"));
			printf("\n");
			if (!streq_ptr(S(v, "state"), "verified") && !streq_ptr(S(v, "state"), "pending") &&
			    !streq_ptr(S(v, "state"), "unknown"))
				print_runbook("    ", "endpoint-stale");
		}
	}
	v = json_array_get(json_object_get(r, "rehearsals"), 0);
	if (v || json_is_true(json_object_get(r, "rehearsal_running"))) {
		printf("\nRehearsal (renew --dry-run or scheduled):\n");
		if (json_is_true(json_object_get(r, "rehearsal_running")))
			printf("  one is running now\n");
	}
	if (v) {
		printf("  last: %s %s (%s) through CA %s", S(v, "result"),
		       cli_relative(I(v, "finished_at"), now, b1, sizeof(b1)), S(v, "trigger"),
		       S(v, "issuer"));
		if (S(v, "stage"))
			printf(": failed at %s%s%s: %s", S(v, "stage"), S(v, "target") ? " " : "",
			       S(v, "target") ? S(v, "target") : "", S(v, "error"));
		printf("\n");
		if (S(v, "stage"))
			print_runbook("  ", "rehearsal-failing");
	}
	printf("\nRecent events:\n");
	json_array_foreach(json_object_get(r, "events"), i, v)
	{
		printf("  %s  %-7s %-14s %s\n", ch_format_time(I(v, "at"), b1, sizeof(b1)),
		       S(v, "stage") ? S(v, "stage") : "", S(v, "event"),
		       S(v, "detail") ? S(v, "detail") : "");
		if (i >= 14)
			break;
	}
	json_decref(r);
	return CLI_EXIT_OK;
}

/* One step of a rehearsal: "issue ok: ..." */
static void
print_rehearsal_steps(json_t *steps)
{
	size_t i;
	json_t *v;

	json_array_foreach(steps, i, v)
	{
		char label[96];

		snprintf(label, sizeof(label), "%s%s%s", S(v, "stage"), S(v, "target") ? " -> " : "",
			 S(v, "target") ? S(v, "target") : "");
		printf("  %-20s %s: %s\n", label,
		       json_is_true(json_object_get(v, "ok")) ? "ok" : "FAILED", S(v, "message"));
	}
}

/* renew --dry-run: waits for the rehearsal, exits 1 when it failed. */
static int
verb_rehearse(const struct cli *c, const char *name)
{
	json_t *r = call(c, json_pack("{s:s,s:s,s:b}", "cmd", "renew", "name", name, "dry_run", 1));
	bool passed;

	if (!r)
		return CLI_EXIT_ERROR;
	passed = streq_ptr(S(r, "result"), "passed");
	if (c->json) {
		print_json(r);
	} else {
		printf("%s: rehearsal %s through CA %s\n", name, passed ? "passed" : "FAILED",
		       S(r, "issuer"));
		if (!streq_ptr(S(r, "issuer"), S(r, "ca")))
			printf("  (%s is the staging CA of %s)\n", S(r, "issuer"), S(r, "ca"));
		print_rehearsal_steps(json_object_get(r, "steps"));
		if (!passed) {
			printf("  failed at: %s%s%s: %s\n", S(r, "stage"), S(r, "target") ? " " : "",
			       S(r, "target") ? S(r, "target") : "", S(r, "error"));
			print_runbook("  ", "rehearsal-failing");
		}
		printf("  scratch directory: %s\n", S(r, "scratch"));
		printf("  no new issuance; targets were written only below the scratch directory\n");
	}
	json_decref(r);
	return passed ? CLI_EXIT_OK : CLI_EXIT_FAILING;
}

static int
verb_renew(const struct cli *c, int argc, char **argv)
{
	if (c->dry_run)
		return verb_rehearse(c, argv[0]);
	json_t *r = call(c, json_pack("{s:s,s:s,s:b}", "cmd", "renew", "name", argv[0], "force",
				      c->force));

	if (!r)
		return CLI_EXIT_ERROR;
	if (c->json)
		print_json(r);
	else
		printf("%s: renewal scheduled; follow it with 'certherd show %s'\n", argv[0],
		       argv[0]);
	json_decref(r);
	return CLI_EXIT_OK;
}

static int
verb_acme(const struct cli *c, int argc, char **argv)
{
	json_t *r;

	if (!streq(argv[0], "rollover")) {
		fprintf(stderr, "certherd: unknown acme command '%s'; known: rollover\n", argv[0]);
		return CLI_EXIT_ERROR;
	}
	r = call(c, json_pack("{s:s,s:s}", "cmd", "acme-rollover", "ca", argv[1]));
	if (!r)
		return CLI_EXIT_ERROR;
	if (c->json)
		print_json(r);
	else
		printf("CA %s: %s\n", S(r, "ca"), S(r, "result"));
	json_decref(r);
	return CLI_EXIT_OK;
}

static int
verb_revoke(const struct cli *c, int argc, char **argv)
{
	const char *reason = c->reason ? c->reason : "unspecified";
	enum ch_crl_reason code = ch_crl_reason_from_string(reason);
	json_t *r;

	if (code < 0 || code == CH_CRL_REASON_REMOVE_FROM_CRL) {
		fprintf(stderr, "certherd: unknown revocation reason '%s'; one of: %s\n", reason,
			ch_crl_reasons_list());
		return CLI_EXIT_ERROR;
	}
	r = call(c, json_pack("{s:s,s:s,s:s}", "cmd", "revoke", "name", argv[0], "reason",
			      ch_crl_reason_to_string(code)));
	if (!r)
		return CLI_EXIT_ERROR;
	if (c->json)
		print_json(r);
	else {
		printf("%s: serial %s revoked (%s)\n", S(r, "name"), S(r, "serial"), S(r, "reason"));
		if (json_is_true(json_object_get(r, "reissue")))
			printf("%s: a new certificate is being issued; follow it with "
			       "'certherd show %s'\n",
			       S(r, "name"), S(r, "name"));
		if (I(r, "crl_number"))
			printf("CA %s: CRL number %lld published\n", S(r, "ca"), I(r, "crl_number"));
		else if (S(r, "crl_error"))
			printf("CA %s: the CRL could not be published yet: %s\n", S(r, "ca"),
			       S(r, "crl_error"));
	}
	json_decref(r);
	return CLI_EXIT_OK;
}

static int
verb_reload(const struct cli *c, int argc, char **argv)
{
	json_t *r = call(c, json_pack("{s:s}", "cmd", "reload"));

	if (!r)
		return CLI_EXIT_ERROR;
	if (c->json)
		print_json(r);
	else
		printf("configuration reloaded\n");
	json_decref(r);
	return CLI_EXIT_OK;
}

static int
verb_check_config(const struct cli *c, int argc, char **argv)
{
	const char *path = argc ? argv[0] : c->config ? c->config : CH_SYSCONFDIR "/certherd.yaml";
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *conf = NULL;
	int r;

	r = ch_conf_load(path, &conf, &errs);
	for (size_t i = 0; i < errs.n; i++) {
		char *s = ch_conf_error_format(&errs.v[i]);

		fprintf(stderr, "%s\n", s);
		free(s);
	}
	if (r < 0) {
		fprintf(stderr, "%s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
		ch_conf_errors_clear(&errs);
		return CLI_EXIT_FAILING;
	}
	printf("%s: ok (%zu certificates, %zu CAs, %zu targets)\n", conf->file, conf->n_certs,
	       conf->n_cas, conf->n_targets);
	ch_conf_free(conf);
	return CLI_EXIT_OK;
}

const struct cli_verb cli_verbs[] = {
	{ "status", "", "health, counts, failures; exit 1 if anything needs attention", 0, 0,
	  verb_status },
	{ "list", "", "every certificate with state and expiry", 0, 0, verb_list },
	{ "show", "NAME", "one certificate: stages, issuances, deployments, events", 1, 1,
	  verb_show },
	{ "renew", "NAME [--force|--dry-run]",
	  "renew now (--force: even when not due; --dry-run: rehearse, change nothing)", 1, 1,
	  verb_renew },
	{ "reload", "", "re-read the configuration (kept if the new one has errors)", 0, 0,
	  verb_reload },
	{ "revoke", "NAME|SERIAL --reason R", "revoke; a wanted certificate is re-issued", 1, 1,
	  verb_revoke },
	{ "acme", "rollover CA", "replace the CA's ACME account key (RFC 8555 keyChange)", 2, 2,
	  verb_acme },
	{ "check-config", "[FILE]", "validate a configuration file", 0, 1, verb_check_config },
#if HAVE_PKCS11
	{ "ca", "STEP --OPTION V ...", "offline CA hierarchy in PKCS#11 tokens (certherd(1))", 1,
	  64, verb_ca },
#endif
	{},
};
