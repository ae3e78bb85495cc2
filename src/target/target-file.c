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
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "certherd/defer.h"
#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"

#define FILE_MODE_DEFAULT 0644
#define FILE_KEY_MODE_DEFAULT 0600
#define FILE_CURRENT_MAX (1024 * 1024)

struct file_opts {
	char *cert;
	char *chain;
	char *fullchain;
	char *key;
	char *combined;
	char *owner;
	char *group;
	int mode;
	int key_mode;
};

static const struct ch_conf_key file_keys[] = {
	{ "cert", CH_CONF_PATH, offsetof(struct file_opts, cert), false,
	  "a file path for the leaf certificate, may contain {name}" },
	{ "chain", CH_CONF_PATH, offsetof(struct file_opts, chain), false,
	  "a file path for the intermediate certificates, may contain {name}" },
	{ "fullchain", CH_CONF_PATH, offsetof(struct file_opts, fullchain), false,
	  "a file path for leaf + intermediates, may contain {name}" },
	{ "key", CH_CONF_PATH, offsetof(struct file_opts, key), false,
	  "a file path for the private key, may contain {name}" },
	{ "combined", CH_CONF_PATH, offsetof(struct file_opts, combined), false,
	  "a file path for key + leaf + intermediates, may contain {name}" },
	{ "owner", CH_CONF_STRING, offsetof(struct file_opts, owner), false,
	  "a user name or numeric uid" },
	{ "group", CH_CONF_STRING, offsetof(struct file_opts, group), false,
	  "a group name or numeric gid" },
	{ "mode", CH_CONF_MODE, offsetof(struct file_opts, mode), false,
	  "an octal file mode such as \"0644\"" },
	{ "key_mode", CH_CONF_MODE, offsetof(struct file_opts, key_mode), false,
	  "an octal file mode such as \"0600\" or \"0640\"" },
	{ NULL },
};

/* One file of a deploy, from its contents to its temporary twin. */
struct file_out {
	const char *what; /* the option name, for messages */
	char *path;       /* expanded destination */
	char *data;       /* owned contents, wiped when secret */
	size_t len;
	mode_t mode;
	bool secret;
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
	const char *paths[] = { o->cert, o->chain, o->fullchain, o->key, o->combined };
	const char *names[] = { "cert", "chain", "fullchain", "key", "combined" };
	size_t i, j;

	for (i = 0; i < ARRAY_SIZE(paths); i++)
		if (paths[i])
			break;
	if (i == ARRAY_SIZE(paths))
		return ch_err_set(reterr, -EINVAL,
				  "no file to write: set at least one of cert, chain, fullchain, "
				  "key or combined");
	for (i = 0; i < ARRAY_SIZE(paths); i++)
		for (j = i + 1; j < ARRAY_SIZE(paths); j++)
			if (paths[i] && paths[j] && streq(paths[i], paths[j]))
				return ch_err_set(reterr, -EINVAL, "%s and %s both point to %s",
						  names[i], names[j], paths[i]);

	if (o->mode != -1 && (o->mode & ~07777))
		return ch_err_set(reterr, -EINVAL, "mode %o is not a file mode", o->mode);
	if (o->mode != -1 && (o->mode & 0002))
		return ch_err_set(reterr, -EINVAL,
				  "mode %04o lets every user replace the certificate; use 0644",
				  o->mode);
	if (o->key_mode != -1) {
		if (o->key_mode & ~07777)
			return ch_err_set(reterr, -EINVAL, "key_mode %o is not a file mode",
					  o->key_mode);
		if (o->key_mode & 0022)
			return ch_err_set(reterr, -EINVAL,
					  "key_mode %04o lets other users write the private key; "
					  "use 0600 or 0640 with group",
					  o->key_mode);
		if (o->key_mode & 0004)
			return ch_err_set(reterr, -EINVAL,
					  "key_mode %04o lets every user read the private key; "
					  "use 0600 or 0640 with group",
					  o->key_mode);
	}
	return 0;
}

static bool
file_is_number(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Resolves owner (user name or uid) to *ret; (uid_t)-1 when unset. */
static int
file_resolve_owner(const char *s, uid_t *ret, struct ch_err *reterr)
{
	struct passwd *pw;

	*ret = (uid_t)-1;
	if (!s)
		return 0;
	if (file_is_number(s)) {
		unsigned long v;

		errno = 0;
		v = strtoul(s, NULL, 10);
		if (errno || v >= (uid_t)-1)
			return ch_err_set(reterr, -ERANGE, "owner %s is not a valid uid", s);
		*ret = (uid_t)v;
		return 0;
	}
	errno = 0;
	pw = getpwnam(s);
	if (!pw)
		return ch_err_set(reterr, -EINVAL, "owner: unknown user '%s'", s);
	*ret = pw->pw_uid;
	return 0;
}

/* Resolves group (group name or gid) to *ret; (gid_t)-1 when unset. */
static int
file_resolve_group(const char *s, gid_t *ret, struct ch_err *reterr)
{
	struct group *gr;

	*ret = (gid_t)-1;
	if (!s)
		return 0;
	if (file_is_number(s)) {
		unsigned long v;

		errno = 0;
		v = strtoul(s, NULL, 10);
		if (errno || v >= (gid_t)-1)
			return ch_err_set(reterr, -ERANGE, "group %s is not a valid gid", s);
		*ret = (gid_t)v;
		return 0;
	}
	errno = 0;
	gr = getgrnam(s);
	if (!gr)
		return ch_err_set(reterr, -EINVAL, "group: unknown group '%s'", s);
	*ret = gr->gr_gid;
	return 0;
}

/*
 * Concatenates PEM parts, skipping empty ones and adding a newline
 * after any part that does not end with one.
 */
static int
file_join(const char *const *parts, const size_t *lens, size_t n, char **ret, size_t *ret_len)
{
	size_t total = 0, off = 0;
	char *buf;

	for (size_t i = 0; i < n; i++)
		total += lens[i] + 1;
	buf = malloc(total + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (lens[i] == 0)
			continue;
		memcpy(buf + off, parts[i], lens[i]);
		off += lens[i];
		if (parts[i][lens[i] - 1] != '\n')
			buf[off++] = '\n';
	}
	buf[off] = '\0';
	*ret = buf;
	*ret_len = off;
	return 0;
}

/* Copies the directory part of an absolute path. */
static void
file_out_clear(struct file_out *f)
{
	if (f->data && f->secret)
		explicit_bzero(f->data, f->len);
	free(f->data);
	free(f->path);
	*f = (struct file_out){ 0 };
}

/* A cert name becomes part of a path: keep it to one component. */
static int
file_expand(const char *tmpl, const char *cert_name, char **ret, struct ch_err *reterr)
{
	char *p;

	if (strstr(tmpl, "{name}") &&
	    (!*cert_name || strchr(cert_name, '/') || streq(cert_name, ".") ||
	     streq(cert_name, "..")))
		return ch_err_set(reterr, -EINVAL,
				  "certificate name '%s' cannot be used in a path", cert_name);
	p = ch_target_expand(tmpl, cert_name);
	if (!p)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	*ret = p;
	return 0;
}

static int
file_prepare(const struct file_opts *o, const struct ch_deploy_item *item,
	     struct file_out *files, size_t *ret_n, struct ch_err *reterr)
{
	const char *chain = item->chain_pem ? item->chain_pem : "";
	const char *parts[3];
	size_t lens[3];
	mode_t mode = o->mode != -1 ? (mode_t)o->mode : FILE_MODE_DEFAULT;
	mode_t key_mode = o->key_mode != -1 ? (mode_t)o->key_mode : FILE_KEY_MODE_DEFAULT;
	size_t n = 0;
	int r;

	struct {
		const char *what;
		const char *tmpl;
		bool secret;
	} want[] = {
		{ "cert", o->cert, false },
		{ "chain", o->chain, false },
		{ "fullchain", o->fullchain, false },
		{ "key", o->key, true },
		{ "combined", o->combined, true },
	};

	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		struct file_out *f = &files[n];

		if (!want[i].tmpl)
			continue;
		f->what = want[i].what;
		f->secret = want[i].secret;
		f->mode = want[i].secret ? key_mode : mode;
		n++;
		r = file_expand(want[i].tmpl, item->cert_name, &f->path, reterr);
		if (r < 0)
			goto fail;
		for (size_t j = 0; j + 1 < n; j++)
			if (streq(files[j].path, f->path)) {
				r = ch_err_set(reterr, -EINVAL, "%s and %s both point to %s",
					       files[j].what, f->what, f->path);
				goto fail;
			}

		if (streq(f->what, "cert")) {
			parts[0] = item->cert_pem;
			lens[0] = strlen(item->cert_pem);
			r = file_join(parts, lens, 1, &f->data, &f->len);
		} else if (streq(f->what, "chain")) {
			parts[0] = chain;
			lens[0] = strlen(chain);
			r = file_join(parts, lens, 1, &f->data, &f->len);
		} else if (streq(f->what, "fullchain")) {
			parts[0] = item->cert_pem;
			lens[0] = strlen(item->cert_pem);
			parts[1] = chain;
			lens[1] = strlen(chain);
			r = file_join(parts, lens, 2, &f->data, &f->len);
		} else if (streq(f->what, "key")) {
			parts[0] = item->key_pem;
			lens[0] = item->key_pem_len;
			r = file_join(parts, lens, 1, &f->data, &f->len);
		} else {
			parts[0] = item->key_pem;
			lens[0] = item->key_pem_len;
			parts[1] = item->cert_pem;
			lens[1] = strlen(item->cert_pem);
			parts[2] = chain;
			lens[2] = strlen(chain);
			r = file_join(parts, lens, 3, &f->data, &f->len);
		}
		if (r < 0) {
			r = ch_err_set(reterr, r, "out of memory");
			goto fail;
		}
	}
	*ret_n = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		file_out_clear(&files[i]);
	return r;
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
	struct file_out files[5] = { 0 };
	struct ch_filebatch *own = NULL, *batch = env->batch;
	struct file_result *res;
	size_t n = 0;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int r;

	res = calloc(1, sizeof(*res));
	if (!res)
		return -ENOMEM;
	res->done = done;
	res->arg = arg;
	if (!batch && !(batch = own = ch_filebatch_new())) {
		free(res);
		return -ENOMEM;
	}

	r = file_resolve_owner(o->owner, &uid, &res->err);
	if (r >= 0)
		r = file_resolve_group(o->group, &gid, &res->err);
	if (r >= 0)
		r = file_prepare(o, item, files, &n, &res->err);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = ch_filebatch_stage(batch, files[i].path, files[i].data, files[i].len,
				       files[i].mode, uid, gid, files[i].what, &res->err);
	for (size_t i = 0; i < n; i++)
		file_out_clear(&files[i]);
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

/* Keeps only the CERTIFICATE blocks of a PEM text (drops any key). */
static int
file_extract_certs(const char *pem, char **ret)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	size_t len = 0;
	const char *p;
	char *out;

	/* Each block gains at most one newline. */
	out = malloc(2 * strlen(pem) + 2);
	if (!out)
		return -ENOMEM;
	for (p = pem; (p = strstr(p, begin));) {
		const char *e = strstr(p, end);

		if (!e)
			break;
		e += sizeof(end) - 1;
		memcpy(out + len, p, (size_t)(e - p));
		len += (size_t)(e - p);
		out[len++] = '\n';
		p = e;
	}
	out[len] = '\0';
	if (len == 0) {
		free(out);
		return -EBADMSG;
	}
	*ret = out;
	return 0;
}

static int
file_current(const void *opts, const char *cert_name, char **ret_pem)
{
	const struct file_opts *o = opts;
	const char *tmpl = o->cert ? o->cert : o->fullchain ? o->fullchain : o->combined;
	_cleanup_free_ char *path = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	if (!tmpl)
		return -ENOENT;
	r = file_expand(tmpl, cert_name, &path, NULL);
	if (r < 0)
		return r;
	r = ch_read_file(path, FILE_CURRENT_MAX, &buf, &len);
	if (r < 0)
		return r;
	r = file_extract_certs(buf, ret_pem);
	/* The combined file holds the private key too. */
	explicit_bzero(buf, len);
	free(buf);
	return r;
}

const struct ch_target_ops ch_target_file_ops = {
	.type = "file",
	.keys = file_keys,
	.opts_size = sizeof(struct file_opts),
	.check = file_check,
	.deploy = file_deploy,
	.current = file_current,
};
