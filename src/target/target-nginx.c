/* SPDX-License-Identifier: MIT */
/*
 * The "nginx" target: writes the certificate files (as the file target
 * does), runs an optional configuration test (`nginx -t`) off the event
 * loop, then asks the master found through the pidfile for a graceful
 * reload (SIGHUP). The previous contents of every file are kept before
 * they are replaced; a failed test or reload puts them back, so nginx
 * keeps serving the old certificate and the failure is retried.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certherd/defer.h"
#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/subproc.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

#define NGINX_TEST_TIMEOUT_DEFAULT 60
#define NGINX_OLD_MAX (1024 * 1024)

struct nginx_opts {
	struct ch_target_files files;
	char *pidfile;
	char **test_command;
	int64_t timeout;
};

static const struct ch_conf_key nginx_keys[] = {
	CH_TARGET_FILES_KEYS(struct nginx_opts, files),
	{ "pidfile", CH_CONF_PATH, offsetof(struct nginx_opts, pidfile), true,
	  "the path of nginx's pidfile, e.g. /run/nginx.pid" },
	{ "test_command", CH_CONF_STRV, offsetof(struct nginx_opts, test_command), false,
	  "a configuration test as a list of arguments, e.g. [nginx, -t, -q]" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct nginx_opts, timeout), false,
	  "a duration for the configuration test such as 30s (default 60s)" },
	{ NULL },
};

/* What a file held before the deploy replaced it. */
struct nginx_old {
	char *path;
	char *data; /* the old contents when existed */
	size_t len;
	bool existed;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	bool secret;
};

/* One deploy, from the first write to done(). */
struct nginx_run {
	struct event_base *base;
	ch_deploy_done_fn *done;
	void *arg;
	char *target_name;
	char *cert_name;
	char *pidfile;
	char **test_command; /* NULL: no test */
	int64_t timeout;
	struct nginx_old old[CH_TARGET_FILES_MAX];
	size_t n_old;
	int r; /* the outcome of writing the new files */
	char wrote[64];
	struct ch_err err;
};

static int
nginx_check(const void *opts, struct ch_err *reterr)
{
	const struct nginx_opts *o = opts;
	int r;

	r = ch_target_files_check(&o->files, reterr);
	if (r < 0)
		return r;
	if (!o->pidfile)
		return ch_err_set(reterr, -EINVAL, "pidfile is required");
	if (o->test_command && (!o->test_command[0] || !o->test_command[0][0]))
		return ch_err_set(reterr, -EINVAL, "test_command: the program name is empty");
	if (o->timeout < 0)
		return ch_err_set(reterr, -EINVAL, "timeout must not be negative");
	return 0;
}

static void
nginx_old_clear(struct nginx_old *f)
{
	if (f->data && f->secret)
		explicit_bzero(f->data, f->len);
	free(f->data);
	free(f->path);
	*f = (struct nginx_old){ 0 };
}

static struct nginx_run *
nginx_run_free(struct nginx_run *run)
{
	if (!run)
		return NULL;
	for (size_t i = 0; i < run->n_old; i++)
		nginx_old_clear(&run->old[i]);
	ch_strv_free(run->test_command);
	free(run->pidfile);
	free(run->cert_name);
	free(run->target_name);
	free(run);
	return NULL;
}

static char **
nginx_strv_copy(char *const *v)
{
	size_t n = ch_strv_length(v);
	char **c = calloc(n + 1, sizeof(char *));

	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(c[i] = strdup(v[i])))
			return ch_strv_free(c);
	return c;
}

/* Keeps what path holds now (or that it does not exist). */
static int
nginx_snapshot(struct nginx_old *f, const struct ch_target_out *out, struct ch_err *reterr)
{
	struct stat st;
	int r;

	f->secret = out->secret;
	f->mode = out->mode;
	f->uid = (uid_t)-1;
	f->gid = (gid_t)-1;
	f->path = strdup(out->path);
	if (!f->path)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (lstat(f->path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		r = -errno;
		return ch_err_set(reterr, r, "cannot read the current %s %s: %s", out->what,
				  f->path, strerror(-r));
	}
	f->existed = true;
	if (!S_ISREG(st.st_mode))
		/* Staging refuses it with the right message. */
		return 0;
	r = ch_read_file(f->path, NGINX_OLD_MAX, &f->data, &f->len);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot keep the current %s %s: %s", out->what,
				  f->path, strerror(-r));
	f->mode = st.st_mode & 07777;
	if (st.st_uid != geteuid())
		f->uid = st.st_uid;
	if (st.st_gid != getegid())
		f->gid = st.st_gid;
	return 0;
}

static void
nginx_note(int r, const char *message, void *userdata)
{
	struct nginx_run *run = userdata;

	run->r = r;
	if (r < 0)
		ch_err_set(&run->err, r, "%s", message ? message : strerror(-r));
}

/*
 * Puts every file back as it was: the old contents durably, files that
 * did not exist removed. Appends what could not be restored to reason.
 */
static void
nginx_rollback(struct nginx_run *run, char *reason, size_t len)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct ch_err err = { "" };
	size_t n = strlen(reason);
	int r = 0, fails = 0;

	if (!b) {
		snprintf(reason + n, len - n, "; out of memory restoring the previous files");
		return;
	}
	for (size_t i = 0; r >= 0 && i < run->n_old; i++) {
		struct nginx_old *f = &run->old[i];

		if (f->existed && f->data)
			r = ch_filebatch_stage(b, f->path, f->data, f->len, f->mode, f->uid, f->gid,
					       "previous file", &err);
	}
	if (r < 0) {
		ch_filebatch_group_abort(b);
		ch_filebatch_free(b);
		snprintf(reason + n, len - n, "; the previous files could not be restored: %s",
			 err.msg);
		return;
	}
	ch_filebatch_group_end(b, nginx_note, run);
	run->r = 0;
	fails = ch_filebatch_commit(b);
	ch_filebatch_free(b);
	if (fails > 0) {
		snprintf(reason + n, len - n, "; the previous files could not be restored: %s",
			 run->err.msg);
		return;
	}
	for (size_t i = 0; i < run->n_old; i++)
		if (!run->old[i].existed && unlink(run->old[i].path) < 0 && errno != ENOENT) {
			snprintf(reason + n, len - n, "; cannot remove the new %s: %s",
				 run->old[i].path, strerror(errno));
			return;
		}
	snprintf(reason + n, len - n, "; the previous files were restored");
}

/* Rolls back, then reports the failure r (reason says what failed). */
static void
nginx_fail(struct nginx_run *run, int r, const char *reason)
{
	char msg[sizeof(run->err.msg) + 256];

	snprintf(msg, sizeof(msg), "%s", reason);
	nginx_rollback(run, msg, sizeof(msg));
	ch_log_debug("target %s: %s: %s", run->target_name, run->cert_name, msg);
	run->done(r, msg, run->arg);
	nginx_run_free(run);
}

static void
nginx_reload(struct nginx_run *run, bool tested)
{
	struct ch_err err = { "" };
	char msg[sizeof(err.msg) + 128];
	int r;

	r = ch_target_signal_pidfile(run->pidfile, SIGHUP, NULL, &err);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "reload failed: %s", err.msg);
		nginx_fail(run, r, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "%s, %s%s", run->wrote,
		 tested ? "configuration test passed, " : "", err.msg);
	ch_log_debug("target %s: %s: %s", run->target_name, run->cert_name, msg);
	run->done(0, msg, run->arg);
	nginx_run_free(run);
}

static void
nginx_tested(int r, const char *message, void *userdata)
{
	struct nginx_run *run = userdata;
	char msg[sizeof(run->err.msg) + 64];

	if (r < 0) {
		snprintf(msg, sizeof(msg), "configuration test %s %s", run->test_command[0],
			 message);
		nginx_fail(run, r, msg);
		return;
	}
	nginx_reload(run, true);
}

/* The new files are in place (or failed to be): test, then reload. */
static void
nginx_written(void *userdata)
{
	struct nginx_run *run = userdata;
	char msg[sizeof(run->err.msg) + 64];
	int r;

	if (run->r < 0) {
		nginx_fail(run, run->r, run->err.msg);
		return;
	}
	if (!run->test_command) {
		nginx_reload(run, false);
		return;
	}
	r = ch_subproc_run(run->base, run->test_command, NULL, run->timeout, nginx_tested, run);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot start the configuration test %s: %s",
			 run->test_command[0], strerror(-r));
		nginx_fail(run, r, msg);
	}
}

static void
nginx_committed(int r, const char *message, void *userdata)
{
	nginx_note(r, message, userdata);
	nginx_written(userdata);
}

/* A rehearsal: the files under the scratch dir, then the test of the live configuration. */
struct nginx_rehearsal {
	ch_deploy_done_fn *done;
	void *arg;
	char *prog;
	struct ch_err err; /* what was done so far */
};

static void
nginx_rehearsal_tested(int r, const char *message, void *userdata)
{
	struct nginx_rehearsal *rh = userdata;
	char msg[sizeof(rh->err.msg) + 1024];

	if (r < 0)
		snprintf(msg, sizeof(msg), "configuration test %s %s", rh->prog,
			 message ? message : strerror(-r));
	else
		snprintf(msg, sizeof(msg), "%s; configuration test passed", rh->err.msg);
	rh->done(r, msg, rh->arg);
	free(rh->prog);
	free(rh);
}

/*
 * Writes the files under the scratch dir, checks nginx runs and runs the
 * configuration test (against the live configuration: the files it names
 * are not changed); nginx is not signalled.
 */
static int
nginx_rehearse(const struct ch_target_env *env, const struct nginx_opts *o,
	       const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	struct nginx_rehearsal *rh;
	struct ch_err err = { "" }, pid = { "" };
	int r;

	r = ch_target_files_rehearse(&o->files, item, env->rehearse_dir, &err);
	if (r >= 0) {
		r = ch_target_check_pidfile(o->pidfile, &pid);
		if (r < 0)
			ch_err_set(&err, r, "%s", pid.msg);
		else
			ch_err_set(&err, 0, "%.500s; %.500s", err.msg, pid.msg);
	}
	if (r < 0 || !o->test_command)
		return ch_target_done_later(env->base, done, arg, r, err.msg);
	rh = calloc(1, sizeof(*rh));
	if (!rh)
		return -ENOMEM;
	rh->done = done;
	rh->arg = arg;
	rh->err = err;
	rh->prog = strdup(o->test_command[0]);
	if (!rh->prog) {
		free(rh);
		return -ENOMEM;
	}
	r = ch_subproc_run(env->base, o->test_command, NULL,
			   o->timeout > 0 ? o->timeout : NGINX_TEST_TIMEOUT_DEFAULT,
			   nginx_rehearsal_tested, rh);
	if (r < 0) {
		free(rh->prog);
		free(rh);
	}
	return r;
}

static int
nginx_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	     const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct nginx_opts *o = opts;
	struct ch_target_out files[CH_TARGET_FILES_MAX] = { 0 };
	struct ch_filebatch *own = NULL, *batch = env->batch;
	struct nginx_run *run;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	size_t n = 0;
	int r;

	if (!o->pidfile)
		return -EINVAL;
	if (env->rehearse_dir)
		return nginx_rehearse(env, o, item, done, arg);
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->base = env->base;
	run->done = done;
	run->arg = arg;
	run->timeout = o->timeout > 0 ? o->timeout : NGINX_TEST_TIMEOUT_DEFAULT;
	run->target_name = strdup(target_name);
	run->cert_name = strdup(item->cert_name);
	run->pidfile = strdup(o->pidfile);
	if (o->test_command)
		run->test_command = nginx_strv_copy(o->test_command);
	if (!run->target_name || !run->cert_name || !run->pidfile ||
	    (o->test_command && !run->test_command) ||
	    (!batch && !(batch = own = ch_filebatch_new()))) {
		nginx_run_free(run);
		return -ENOMEM;
	}

	r = ch_target_files_owner(&o->files, &uid, &gid, &run->err);
	if (r >= 0)
		r = ch_target_files_prepare(&o->files, item, files, &n, &run->err);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = nginx_snapshot(&run->old[i], &files[i], &run->err);
		run->n_old = i + 1;
	}
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = ch_filebatch_stage(batch, files[i].path, files[i].data, files[i].len,
				       files[i].mode, uid, gid, files[i].what, &run->err);
	for (size_t i = 0; i < n; i++)
		ch_target_out_clear(&files[i]);
	if (r < 0) {
		/* Nothing was replaced: no rollback. */
		ch_filebatch_group_abort(batch);
		ch_filebatch_free(own);
		ch_log_debug("target %s: %s: %s", target_name, item->cert_name, run->err.msg);
		r = ch_target_done_later(env->base, done, arg, r, run->err.msg);
		nginx_run_free(run);
		return r;
	}
	snprintf(run->wrote, sizeof(run->wrote), "wrote %zu file%s", n, n == 1 ? "" : "s");
	if (!own) {
		ch_filebatch_group_end(batch, nginx_committed, run);
		return 0;
	}
	ch_filebatch_group_end(own, nginx_note, run);
	ch_filebatch_commit(own);
	ch_filebatch_free(own);
	r = ch_defer(env->base, nginx_written, run);
	if (r < 0) {
		/* The files are written but nobody will test or reload them. */
		char msg[64];

		snprintf(msg, sizeof(msg), "out of memory");
		nginx_rollback(run, msg, sizeof(msg));
		nginx_run_free(run);
	}
	return r;
}

static int
nginx_current(const void *opts, const char *cert_name, char **ret_pem)
{
	const struct nginx_opts *o = opts;

	return ch_target_files_current(&o->files, cert_name, ret_pem);
}

const struct ch_target_ops ch_target_nginx_ops = {
	.type = "nginx",
	.keys = nginx_keys,
	.opts_size = sizeof(struct nginx_opts),
	.check = nginx_check,
	.deploy = nginx_deploy,
	.current = nginx_current,
};
