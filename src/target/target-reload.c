/* SPDX-License-Identifier: MIT */
/*
 * The "reload" target: reads a service's pidfile and sends it a signal
 * (SIGHUP unless configured), the way nginx, HAProxy and most daemons
 * are told to pick up new certificate files. The work is synchronous;
 * the result is delivered on the next loop turn.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>

#include "certherd/log.h"
#include "certherd/target.h"
#include "target-internal.h"

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

static int
reload_signal(const struct reload_opts *o)
{
	return o->signal > 0 ? o->signal : SIGHUP;
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

static int
reload_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	      const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct reload_opts *o = opts;
	struct ch_err err = { "" };
	int r;

	if (env->rehearse_dir)
		r = ch_target_check_pidfile(o->pidfile, &err);
	else
		r = ch_target_signal_pidfile(o->pidfile, reload_signal(o), NULL, &err);
	ch_log_debug("target %s: %s: %s", target_name, item->cert_name, err.msg);
	return ch_target_done_later(env->base, done, arg, r, err.msg);
}

const struct ch_target_ops ch_target_reload_ops = {
	.type = "reload",
	.keys = reload_keys,
	.opts_size = sizeof(struct reload_opts),
	.check = reload_check,
	.deploy = reload_deploy,
	.current = NULL,
};
