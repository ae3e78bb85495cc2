/* SPDX-License-Identifier: MIT */
/*
 * The "file" target: writes cert, chain, fullchain, key and an
 * HAProxy-style combined file (key + leaf + chain) with explicit modes
 * and owners. A deploy stages every file in a filebatch (filebatch.h):
 * all of them are written and synced as temporary files before any is
 * renamed into place, so an error while staging or syncing leaves every
 * old file untouched.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/defer.h"
#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

struct file_opts {
	struct ch_target_files files;
};

static const struct ch_conf_key file_keys[] = {
	CH_TARGET_FILES_KEYS(struct file_opts, files),
	{ NULL },
};

/* A finished synchronous deploy waiting for the next loop turn. */
struct file_result {
	ch_deploy_done_fn *done;
	void *arg;
	int r;
	struct ch_err err;
};

static int
file_check(const void *opts, struct ch_err *reterr)
{
	const struct file_opts *o = opts;

	return ch_target_files_check(&o->files, reterr);
}

static void
file_result_cb(void *userdata)
{
	struct file_result *res = userdata;

	res->done(res->r, res->err.msg, res->arg);
	free(res);
}

/* The commit's outcome for this deploy's files. */
static void
file_note(int r, const char *message, void *userdata)
{
	struct file_result *res = userdata;

	if (r < 0) {
		res->r = r;
		ch_err_set(&res->err, r, "%s", message);
	}
}

static void
file_committed(int r, const char *message, void *userdata)
{
	file_note(r, message, userdata);
	file_result_cb(userdata);
}

/*
 * Stages every file of the deploy in the daemon's batch, whose commit
 * (at the end of this loop turn) reports the outcome. Without a batch the
 * deploy commits its own and reports on the next turn.
 */
static int
file_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	    const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct file_opts *o = opts;
	struct ch_target_out files[CH_TARGET_FILES_MAX] = { 0 };
	struct ch_filebatch *own = NULL, *batch = env->batch;
	struct file_result *res;
	size_t n = 0;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int r;

	if (env->rehearse_dir) {
		struct ch_err err = { "" };

		r = ch_target_files_rehearse(&o->files, item, env->rehearse_dir, &err);
		return ch_target_done_later(env->base, done, arg, r, err.msg);
	}
	res = calloc(1, sizeof(*res));
	if (!res)
		return -ENOMEM;
	res->done = done;
	res->arg = arg;
	if (!batch && !(batch = own = ch_filebatch_new())) {
		free(res);
		return -ENOMEM;
	}

	r = ch_target_files_owner(&o->files, &uid, &gid, &res->err);
	if (r >= 0)
		r = ch_target_files_prepare(&o->files, item, files, &n, &res->err);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = ch_filebatch_stage(batch, files[i].path, files[i].data, files[i].len,
				       files[i].mode, uid, gid, files[i].what, &res->err);
	for (size_t i = 0; i < n; i++)
		ch_target_out_clear(&files[i]);
	if (r < 0) {
		ch_filebatch_group_abort(batch);
		ch_filebatch_free(own);
		res->r = r;
		ch_log_debug("target %s: %s: %s", target_name, item->cert_name, res->err.msg);
		r = ch_defer(env->base, file_result_cb, res);
		if (r < 0)
			free(res);
		return r;
	}
	ch_err_set(&res->err, 0, "wrote %zu file%s", n, n == 1 ? "" : "s");
	if (!own) {
		ch_filebatch_group_end(batch, file_committed, res);
		return 0;
	}
	ch_filebatch_group_end(own, file_note, res);
	ch_filebatch_commit(own);
	ch_filebatch_free(own);
	r = ch_defer(env->base, file_result_cb, res);
	if (r < 0)
		free(res);
	return r;
}

static int
file_current(const void *opts, const char *cert_name, char **ret_pem)
{
	const struct file_opts *o = opts;

	return ch_target_files_current(&o->files, cert_name, ret_pem);
}

const struct ch_target_ops ch_target_file_ops = {
	.type = "file",
	.keys = file_keys,
	.opts_size = sizeof(struct file_opts),
	.check = file_check,
	.deploy = file_deploy,
	.current = file_current,
};
