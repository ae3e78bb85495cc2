/* SPDX-License-Identifier: MIT */
/*
 * The "exec" target: runs a command with CERTHERD_* variables naming the
 * certificate and its files, and reports its exit status. The child is
 * watched from the event loop (subproc.h): the tail of its stderr goes
 * into the message, and its whole process group is killed when it runs
 * too long.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/subproc.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

#define EXEC_TIMEOUT_DEFAULT 60

extern char **environ;

struct exec_opts {
	char **command;
	int64_t timeout;
	bool rehearse;
};

static const struct ch_conf_key exec_keys[] = {
	{ "command", CH_CONF_STRV, offsetof(struct exec_opts, command), true,
	  "a command as a list of arguments, e.g. [/usr/local/bin/hook, --reload]" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct exec_opts, timeout), false,
	  "a duration such as 30s or 5m (default 60s)" },
	{ "rehearse", CH_CONF_BOOL, offsetof(struct exec_opts, rehearse), false,
	  "true to run the command in rehearsals with CERTHERD_DRY_RUN=1 (default false)" },
	{ NULL },
};

/* The environment of the child, built before fork. */
struct exec_env {
	char *own[12];
	size_t n_own;
	char **envp; /* borrows environ's strings and own[] */
};

static int64_t
exec_timeout(const struct exec_opts *o)
{
	return o->timeout > 0 ? o->timeout : EXEC_TIMEOUT_DEFAULT;
}

static int
exec_check(const void *opts, struct ch_err *reterr)
{
	const struct exec_opts *o = opts;

	if (!o->command || !o->command[0])
		return ch_err_set(reterr, -EINVAL, "command is required");
	if (!o->command[0][0])
		return ch_err_set(reterr, -EINVAL, "command: the program name is empty");
	if (o->timeout < 0)
		return ch_err_set(reterr, -EINVAL, "timeout must not be negative");
	return 0;
}

static void
exec_env_clear(struct exec_env *e)
{
	for (size_t i = 0; i < e->n_own; i++)
		free(e->own[i]);
	free(e->envp);
	*e = (struct exec_env){ 0 };
}

static int
exec_env_add(struct exec_env *e, const char *name, const char *dir, const char *value)
{
	char *s;
	int n;

	if (!value)
		return 0;
	if (e->n_own >= ARRAY_SIZE(e->own))
		return -ENOBUFS;
	if (dir)
		n = asprintf(&s, "%s=%s/%s", name, dir, value);
	else
		n = asprintf(&s, "%s=%s", name, value);
	if (n < 0)
		return -ENOMEM;
	e->own[e->n_own++] = s;
	return 0;
}

/*
 * The daemon's environment without any CERTHERD_* variable, plus the
 * ones describing this deploy.
 */
static int
exec_env_build(struct exec_env *e, const char *target_name, const struct ch_deploy_item *item,
	       bool rehearsal)
{
	const char *dir = item->dir;
	size_t n = 0, i = 0;
	int r = 0;

	r = r < 0 ? r : exec_env_add(e, "CERTHERD_NAME", NULL, item->cert_name);
	r = r < 0 ? r : exec_env_add(e, "CERTHERD_TARGET", NULL, target_name);
	r = r < 0 ? r : exec_env_add(e, "CERTHERD_SERIAL", NULL, item->serial);
	if (rehearsal)
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_DRY_RUN", NULL, "1");
	if (dir) {
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_DIR", NULL, dir);
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_CERT_FILE", dir, "cert.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_CHAIN_FILE", dir, "chain.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_FULLCHAIN_FILE", dir, "fullchain.pem");
		r = r < 0 ? r : exec_env_add(e, "CERTHERD_KEY_FILE", dir, "key.pem");
	}
	if (r < 0)
		return r;

	while (environ && environ[n])
		n++;
	e->envp = calloc(n + e->n_own + 1, sizeof(char *));
	if (!e->envp)
		return -ENOMEM;
	for (size_t j = 0; j < n; j++)
		if (strncmp(environ[j], "CERTHERD_", 9) != 0)
			e->envp[i++] = environ[j];
	for (size_t j = 0; j < e->n_own; j++)
		e->envp[i++] = e->own[j];
	e->envp[i] = NULL;
	return 0;
}

/* Without rehearse: true the command is not run, only found. */
static int
exec_rehearse_check(const char *prog, struct ch_err *reterr)
{
	const char *path = getenv("PATH");

	if (strchr(prog, '/')) {
		if (access(prog, X_OK) < 0)
			return ch_err_set(reterr, -errno, "command %s: %s", prog, strerror(errno));
		return ch_err_set(reterr, 0, "%s is executable; not run (set rehearse: true to run "
					     "it with CERTHERD_DRY_RUN=1)",
				  prog);
	}
	for (const char *p = path ? path : "/usr/bin:/bin"; p && *p;) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		_cleanup_free_ char *full = NULL;

		if (n && asprintf(&full, "%.*s/%s", (int)n, p, prog) >= 0 && access(full, X_OK) == 0)
			return ch_err_set(reterr, 0,
					  "%s is executable; not run (set rehearse: true to run it "
					  "with CERTHERD_DRY_RUN=1)",
					  full);
		p = end ? end + 1 : NULL;
	}
	return ch_err_set(reterr, -ENOENT, "command %s is not found in PATH", prog);
}

/* A command waiting for the issuance's files to be committed. */
struct exec_pending {
	struct event_base *base;
	const struct exec_opts *o;
	struct exec_env ce;
	const char *target_name, *cert_name;
	ch_deploy_done_fn *done;
	void *arg;
	int r;
	struct ch_err err;
};

/* Frees p after its command was started or its failure reported. */
static void
exec_pending_free(struct exec_pending *p)
{
	exec_env_clear(&p->ce);
	free(p);
}

static int
exec_start(struct exec_pending *p)
{
	int r = ch_subproc_run(p->base, p->o->command, p->ce.envp, exec_timeout(p->o), p->done,
			       p->arg);

	if (r >= 0)
		ch_log_debug("target %s: %s: started %s", p->target_name, p->cert_name,
			     p->o->command[0]);
	return r;
}

/* The files were committed in this deploy's own batch or not needed: as deploy() returns. */
static int
exec_start_now(struct exec_pending *p)
{
	int r = p->r < 0 ? ch_target_done_later(p->base, p->done, p->arg, p->r, p->err.msg)
			 : exec_start(p);

	exec_pending_free(p);
	return r;
}

static void
exec_files_note(int r, const char *message, void *userdata)
{
	struct exec_pending *p = userdata;

	if (r < 0) {
		p->r = r;
		ch_err_set(&p->err, r, "%s", message);
	}
}

/* The daemon's batch was committed: the command starts, or done() hears why not. */
static void
exec_files_committed(int r, const char *message, void *userdata)
{
	struct exec_pending *p = userdata;

	exec_files_note(r, message, p);
	r = p->r;
	if (r >= 0 && (r = exec_start(p)) < 0)
		ch_err_set(&p->err, r, "cannot start %s: %s", p->o->command[0], strerror(-r));
	if (r < 0)
		p->done(r, p->err.msg, p->arg);
	exec_pending_free(p);
}

/*
 * Stages the issuance's cert.pem, chain.pem and fullchain.pem beside its
 * key for the command's CERTHERD_*_FILE paths, those not there already
 * (the inventory holds them; they are written the first time a command
 * needs them). Returns how many were staged.
 */
static int
exec_stage_files(struct ch_filebatch *batch, const struct ch_deploy_item *item,
		 struct ch_err *reterr)
{
	static const char *const names[] = { "cert.pem", "chain.pem", "fullchain.pem" };
	const char *chain = item->chain_pem ? item->chain_pem : "";
	_cleanup_free_ char *full = ch_xasprintf("%s%s", item->cert_pem, chain);
	const char *data[] = { item->cert_pem, chain, full };
	int n = 0, r;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = ch_xasprintf("%s/%s", item->dir, names[i]);
		_cleanup_free_ char *old = NULL;
		size_t len = strlen(data[i]), old_len = 0;

		if (ch_read_file(p, len + 1, &old, &old_len) == 0 && old_len == len &&
		    memcmp(old, data[i], len) == 0)
			continue;
		r = ch_filebatch_stage(batch, p, data[i], len, 0644, -1, -1, names[i], reterr);
		if (r < 0)
			return r;
		n++;
	}
	return n;
}

/*
 * The command runs once the files it is given are written: in the
 * daemon's batch, committed at the end of this loop turn, or (without
 * one) in a batch of its own committed now.
 */
static int
exec_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	    const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct exec_opts *o = opts;
	struct ch_filebatch *own = NULL, *batch = env->batch;
	struct exec_pending *p;
	int r, n;

	if (!o->command || !o->command[0])
		return -EINVAL;
	if (env->rehearse_dir && !o->rehearse) {
		struct ch_err err = { "" };

		r = exec_rehearse_check(o->command[0], &err);
		return ch_target_done_later(env->base, done, arg, r, err.msg);
	}

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct exec_pending){ .base = env->base, .o = o, .target_name = target_name,
				    .cert_name = item->cert_name, .done = done, .arg = arg };
	r = exec_env_build(&p->ce, target_name, item, env->rehearse_dir != NULL);
	if (r < 0) {
		exec_pending_free(p);
		return r;
	}
	if (item->dir && item->cert_pem) {
		if (!batch && !(batch = own = ch_filebatch_new())) {
			exec_pending_free(p);
			return -ENOMEM;
		}
		n = exec_stage_files(batch, item, &p->err);
		if (n < 0) {
			ch_filebatch_group_abort(batch);
			p->r = n;
		} else if (n > 0 && !own) {
			ch_filebatch_group_end(batch, exec_files_committed, p);
			return 0;
		} else if (n > 0) {
			ch_filebatch_group_end(own, exec_files_note, p);
			ch_filebatch_commit(own);
		}
	}
	ch_filebatch_free(own);
	return exec_start_now(p);
}

const struct ch_target_ops ch_target_exec_ops = {
	.type = "exec",
	.keys = exec_keys,
	.opts_size = sizeof(struct exec_opts),
	.check = exec_check,
	.deploy = exec_deploy,
	.current = NULL,
};
