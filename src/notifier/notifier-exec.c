/* SPDX-License-Identifier: MIT */
/*
 * The "exec" notifier: runs a command with the alert in CERTHERD_ALERT_*
 * variables (and the whole of it as JSON in CERTHERD_ALERT_JSON), off the
 * event loop through subproc.h. Exit status 0 is success.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/macro.h"
#include "certherd/notifier.h"
#include "certherd/subproc.h"
#include "certherd/util.h"

#define EXEC_TIMEOUT_DEFAULT 30

extern char **environ;

struct exec_opts {
	char **command;
	int64_t timeout;
};

static const struct ch_conf_key exec_keys[] = {
	{ "command", CH_CONF_STRV, offsetof(struct exec_opts, command), true,
	  "a command as a list of arguments, e.g. [/usr/local/bin/page, --team, pki]" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct exec_opts, timeout), false,
	  "a duration such as 30s (default 30s)" },
	{ NULL },
};

static int
exec_check(const void *opts, struct ch_err *reterr)
{
	const struct exec_opts *o = opts;

	if (!o->command || !o->command[0] || !o->command[0][0])
		return ch_err_set(reterr, -EINVAL, "command: the program name is empty");
	return 0;
}

struct exec_job {
	ch_notifier_done_fn *done;
	void *arg;
};

static void
exec_done(int r, const char *message, void *arg)
{
	struct exec_job *j = arg;

	j->done(r, message, j->arg);
	free(j);
}

#define EXEC_N_VARS 11

static int
exec_send(const struct ch_notifier_env *env, const void *opts, const struct ch_alert *a,
	  ch_notifier_done_fn *done, void *arg)
{
	const struct exec_opts *o = opts;
	json_t *js = ch_alert_webhook_body(a, CH_WEBHOOK_JSON);
	_cleanup_free_ char *json = js ? json_dumps(js, JSON_COMPACT) : NULL;
	char *own[EXEC_N_VARS] = { 0 };
	char **envp;
	size_t n_env = 0, k = 0;
	struct exec_job *j;
	char t[32];
	int r;

	json_decref(js);
	if (!json)
		return -ENOMEM;
	own[k++] = ch_xasprintf("CERTHERD_ALERT_KEY=%s", a->key ? a->key : "");
	own[k++] = ch_xasprintf("CERTHERD_ALERT_KIND=%s", ch_alert_kind_to_string(a->kind));
	own[k++] = ch_xasprintf("CERTHERD_ALERT_STATE=%s", ch_alert_state_to_string(a->state));
	own[k++] = ch_xasprintf("CERTHERD_ALERT_REPEAT=%d", a->state == CH_ALERT_REPEAT);
	own[k++] = ch_xasprintf("CERTHERD_ALERT_SEVERITY=%s", ch_alert_severity(a));
	own[k++] = ch_xasprintf("CERTHERD_ALERT_CERT=%s", a->cert ? a->cert : "");
	own[k++] = ch_xasprintf("CERTHERD_ALERT_SUBJECT=%s", a->subject ? a->subject : "");
	own[k++] = ch_xasprintf("CERTHERD_ALERT_SUMMARY=%s", a->summary ? a->summary : "");
	own[k++] = ch_xasprintf("CERTHERD_ALERT_DETAIL=%s", a->detail ? a->detail : "");
	own[k++] = ch_xasprintf("CERTHERD_ALERT_SINCE=%s",
				ch_format_time(a->started_at, t, sizeof(t)));
	own[k++] = ch_xasprintf("CERTHERD_ALERT_JSON=%s", json);
	for (char **e = environ; e && *e; e++)
		n_env++;
	envp = ch_xcalloc(n_env + k + 1, sizeof(*envp));
	n_env = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "CERTHERD_ALERT_", 15) != 0)
			envp[n_env++] = *e;
	for (size_t i = 0; i < k; i++)
		envp[n_env++] = own[i];
	j = ch_xcalloc(1, sizeof(*j));
	j->done = done;
	j->arg = arg;
	r = ch_subproc_run(env->base, o->command, envp,
			   o->timeout > 0 ? o->timeout : EXEC_TIMEOUT_DEFAULT, exec_done, j);
	if (r < 0)
		free(j);
	/* subproc has forked (or failed) by now: the child has its own copy. */
	free(envp);
	for (size_t i = 0; i < k; i++)
		free(own[i]);
	return r;
}

const struct ch_notifier_ops ch_notifier_exec_ops = {
	.type = "exec",
	.keys = exec_keys,
	.opts_size = sizeof(struct exec_opts),
	.check = exec_check,
	.send = exec_send,
};
