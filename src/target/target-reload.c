/* SPDX-License-Identifier: MIT */
/*
 * The "reload" target: reads a service's pidfile and sends it a signal
 * (SIGHUP unless configured), the way nginx, HAProxy and most daemons
 * are told to pick up new certificate files. The work is synchronous;
 * the result is delivered on the next loop turn.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/defer.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"

#define RELOAD_PIDFILE_MAX 4096

struct reload_opts {
	char *pidfile;
	int signal;
};

static const struct ch_conf_key reload_keys[] = {
	{ "pidfile", CH_CONF_PATH, offsetof(struct reload_opts, pidfile), true,
	  "the path of the service's pidfile, e.g. /run/nginx.pid" },
	{ "signal", CH_CONF_SIGNAL, offsetof(struct reload_opts, signal), false,
	  "a signal name or number such as HUP or USR2 (default HUP)" },
	{ NULL },
};

/* A finished deploy waiting for the next loop turn. */
struct reload_result {
	ch_deploy_done_fn *done;
	void *arg;
	int r;
	struct ch_err err;
};

static int
reload_signal(const struct reload_opts *o)
{
	return o->signal > 0 ? o->signal : SIGHUP;
}

static const char *
reload_signal_name(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else
		snprintf(buf, len, "signal %d", sig);
	return buf;
}

static int
reload_check(const void *opts, struct ch_err *reterr)
{
	const struct reload_opts *o = opts;
	int sig = reload_signal(o);

	if (!o->pidfile)
		return ch_err_set(reterr, -EINVAL, "pidfile is required");
	if (o->signal < 0 || sig >= NSIG)
		return ch_err_set(reterr, -EINVAL, "signal %d is not a valid signal", o->signal);
	if (sig == SIGKILL || sig == SIGSTOP)
		return ch_err_set(reterr, -EINVAL,
				  "signal %s would stop the service instead of reloading it",
				  sig == SIGKILL ? "SIGKILL" : "SIGSTOP");
	return 0;
}

/* Parses a pidfile's text: one positive decimal number, whitespace around it. */
static int
reload_parse_pid(char *s, pid_t *ret)
{
	char *end;
	long v;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
			   end[-1] == '\r'))
		*--end = '\0';
	if (!*s || strlen(s) > 10)
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	errno = 0;
	v = strtol(s, NULL, 10);
	if (errno || v <= 0 || v > INT_MAX)
		return -EINVAL;
	*ret = (pid_t)v;
	return 0;
}

/* Does the work of a deploy; returns 0 or -errno with reterr set either way. */
static int
reload_run(const struct reload_opts *o, struct ch_err *reterr)
{
	_cleanup_free_ char *text = NULL;
	int sig = reload_signal(o);
	char signame[32];
	pid_t pid;
	int r;

	if (!o->pidfile)
		return ch_err_set(reterr, -EINVAL, "pidfile is required");
	reload_signal_name(sig, signame, sizeof(signame));
	r = ch_read_file(o->pidfile, RELOAD_PIDFILE_MAX, &text, NULL);
	if (r == -ENOENT)
		return ch_err_set(reterr, r, "pidfile %s does not exist", o->pidfile);
	if (r == -EFBIG)
		return ch_err_set(reterr, -EINVAL, "pidfile %s does not contain a process id",
				  o->pidfile);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read pidfile %s: %s", o->pidfile,
				  strerror(-r));
	if (reload_parse_pid(text, &pid) < 0)
		return ch_err_set(reterr, -EINVAL, "pidfile %s does not contain a process id",
				  o->pidfile);

	if (kill(pid, 0) < 0 || kill(pid, sig) < 0) {
		r = -errno;
		if (r == -ESRCH)
			return ch_err_set(reterr, r, "process %d from %s is not running",
					  (int)pid, o->pidfile);
		if (r == -EPERM)
			return ch_err_set(reterr, r,
					  "not permitted to send %s to process %d from %s",
					  signame, (int)pid, o->pidfile);
		return ch_err_set(reterr, r, "cannot send %s to process %d from %s: %s",
				  signame, (int)pid, o->pidfile, strerror(-r));
	}
	return ch_err_set(reterr, 0, "sent %s to pid %d (from %s)", signame, (int)pid,
			  o->pidfile);
}

static void
reload_result_cb(void *userdata)
{
	struct reload_result *res = userdata;

	res->done(res->r, res->err.msg, res->arg);
	free(res);
}

static int
reload_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	      const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	struct reload_result *res;
	int r;

	res = calloc(1, sizeof(*res));
	if (!res)
		return -ENOMEM;
	res->done = done;
	res->arg = arg;
	res->r = reload_run(opts, &res->err);
	ch_log_debug("target %s: %s: %s", target_name, item->cert_name, res->err.msg);

	r = ch_defer(env->base, reload_result_cb, res);
	if (r < 0) {
		free(res);
		return r;
	}
	return 0;
}

const struct ch_target_ops ch_target_reload_ops = {
	.type = "reload",
	.keys = reload_keys,
	.opts_size = sizeof(struct reload_opts),
	.check = reload_check,
	.deploy = reload_deploy,
	.current = NULL,
};
