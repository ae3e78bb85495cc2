/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the target kinds (target-internal.h): the
 * certificate files a target writes, the pidfile signal, and results
 * delivered on the next loop turn.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certherd/defer.h"
#include "certherd/filebatch.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

#define TARGET_MODE_DEFAULT 0644
#define TARGET_KEY_MODE_DEFAULT 0600
#define TARGET_CURRENT_MAX (1024 * 1024)
#define TARGET_PIDFILE_MAX 4096

int
ch_target_files_check(const struct ch_target_files *o, struct ch_err *reterr)
{
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
target_is_number(const char *s)
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
target_resolve_owner(const char *s, uid_t *ret, struct ch_err *reterr)
{
	struct passwd *pw;

	*ret = (uid_t)-1;
	if (!s)
		return 0;
	if (target_is_number(s)) {
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
target_resolve_group(const char *s, gid_t *ret, struct ch_err *reterr)
{
	struct group *gr;

	*ret = (gid_t)-1;
	if (!s)
		return 0;
	if (target_is_number(s)) {
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

int
ch_target_files_owner(const struct ch_target_files *f, uid_t *ret_uid, gid_t *ret_gid,
		      struct ch_err *reterr)
{
	int r;

	r = target_resolve_owner(f->owner, ret_uid, reterr);
	if (r >= 0)
		r = target_resolve_group(f->group, ret_gid, reterr);
	return r;
}

/*
 * Concatenates PEM parts, skipping empty ones and adding a newline
 * after any part that does not end with one.
 */
int
ch_target_join_pem(const char *const *parts, const size_t *lens, size_t n, char **ret,
		   size_t *ret_len)
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

void
ch_target_out_clear(struct ch_target_out *f)
{
	if (f->data && f->secret)
		explicit_bzero(f->data, f->len);
	free(f->data);
	free(f->path);
	*f = (struct ch_target_out){ 0 };
}

/* A cert name becomes part of a path: keep it to one component. */
int
ch_target_expand_path(const char *tmpl, const char *cert_name, char **ret, struct ch_err *reterr)
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

int
ch_target_files_prepare(const struct ch_target_files *o, const struct ch_deploy_item *item,
	     struct ch_target_out *files, size_t *ret_n, struct ch_err *reterr)
{
	const char *chain = item->chain_pem ? item->chain_pem : "";
	const char *parts[3];
	size_t lens[3];
	mode_t mode = o->mode != -1 ? (mode_t)o->mode : TARGET_MODE_DEFAULT;
	mode_t key_mode = o->key_mode != -1 ? (mode_t)o->key_mode : TARGET_KEY_MODE_DEFAULT;
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
		struct ch_target_out *f = &files[n];

		if (!want[i].tmpl)
			continue;
		f->what = want[i].what;
		f->secret = want[i].secret;
		f->mode = want[i].secret ? key_mode : mode;
		n++;
		r = ch_target_expand_path(want[i].tmpl, item->cert_name, &f->path, reterr);
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
			r = ch_target_join_pem(parts, lens, 1, &f->data, &f->len);
		} else if (streq(f->what, "chain")) {
			parts[0] = chain;
			lens[0] = strlen(chain);
			r = ch_target_join_pem(parts, lens, 1, &f->data, &f->len);
		} else if (streq(f->what, "fullchain")) {
			parts[0] = item->cert_pem;
			lens[0] = strlen(item->cert_pem);
			parts[1] = chain;
			lens[1] = strlen(chain);
			r = ch_target_join_pem(parts, lens, 2, &f->data, &f->len);
		} else if (streq(f->what, "key")) {
			parts[0] = item->key_pem;
			lens[0] = item->key_pem_len;
			r = ch_target_join_pem(parts, lens, 1, &f->data, &f->len);
		} else {
			parts[0] = item->key_pem;
			lens[0] = item->key_pem_len;
			parts[1] = item->cert_pem;
			lens[1] = strlen(item->cert_pem);
			parts[2] = chain;
			lens[2] = strlen(chain);
			r = ch_target_join_pem(parts, lens, 3, &f->data, &f->len);
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
		ch_target_out_clear(&files[i]);
	return r;
}

/* Keeps only the CERTIFICATE blocks of a PEM text (drops any key). */
int
ch_target_extract_certs(const char *pem, char **ret)
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

int
ch_target_files_current(const struct ch_target_files *o, const char *cert_name,
			char **ret_pem)
{
	const char *tmpl = o->cert ? o->cert : o->fullchain ? o->fullchain : o->combined;
	_cleanup_free_ char *path = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	if (!tmpl)
		return -ENOENT;
	r = ch_target_expand_path(tmpl, cert_name, &path, NULL);
	if (r < 0)
		return r;
	r = ch_read_file(path, TARGET_CURRENT_MAX, &buf, &len);
	if (r < 0)
		return r;
	r = ch_target_extract_certs(buf, ret_pem);
	/* The combined file holds the private key too. */
	explicit_bzero(buf, len);
	free(buf);
	return r;
}

const char *
ch_target_signal_name(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else
		snprintf(buf, len, "signal %d", sig);
	return buf;
}

/* Parses a pidfile's text: one positive decimal number, whitespace around it. */
static int
target_parse_pid(char *s, pid_t *ret)
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

int
ch_target_signal_pidfile(const char *pidfile, int sig, pid_t *ret_pid, struct ch_err *reterr)
{
	_cleanup_free_ char *text = NULL;
	char signame[32];
	pid_t pid;
	int r;

	if (!pidfile)
		return ch_err_set(reterr, -EINVAL, "pidfile is required");
	ch_target_signal_name(sig, signame, sizeof(signame));
	r = ch_read_file(pidfile, TARGET_PIDFILE_MAX, &text, NULL);
	if (r == -ENOENT)
		return ch_err_set(reterr, r, "pidfile %s does not exist", pidfile);
	if (r == -EFBIG)
		return ch_err_set(reterr, -EINVAL, "pidfile %s does not contain a process id",
				  pidfile);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read pidfile %s: %s", pidfile, strerror(-r));
	if (target_parse_pid(text, &pid) < 0)
		return ch_err_set(reterr, -EINVAL, "pidfile %s does not contain a process id",
				  pidfile);

	if (kill(pid, 0) < 0 || kill(pid, sig) < 0) {
		r = -errno;
		if (r == -ESRCH)
			return ch_err_set(reterr, r, "process %d from %s is not running", (int)pid,
					  pidfile);
		if (r == -EPERM)
			return ch_err_set(reterr, r,
					  "not permitted to send %s to process %d from %s",
					  signame, (int)pid, pidfile);
		return ch_err_set(reterr, r, "cannot send %s to process %d from %s: %s",
				  signame, (int)pid, pidfile, strerror(-r));
	}
	if (ret_pid)
		*ret_pid = pid;
	return ch_err_set(reterr, 0, "sent %s to pid %d (from %s)", signame, (int)pid, pidfile);
}

/* A result waiting for the next loop turn. */
struct target_later {
	ch_deploy_done_fn *done;
	void *arg;
	int r;
	char message[];
};

static void
target_later_cb(void *userdata)
{
	struct target_later *l = userdata;

	l->done(l->r, l->message, l->arg);
	free(l);
}

int
ch_target_done_later(struct event_base *base, ch_deploy_done_fn *done, void *arg, int r,
		     const char *message)
{
	size_t len = strlen(message ? message : "");
	struct target_later *l = malloc(sizeof(*l) + len + 1);
	int q;

	if (!l)
		return -ENOMEM;
	l->done = done;
	l->arg = arg;
	l->r = r;
	memcpy(l->message, message ? message : "", len + 1);
	q = ch_defer(base, target_later_cb, l);
	if (q < 0)
		free(l);
	return q;
}

/* Whether path could be replaced the way a deploy replaces it. */
static int
target_rehearse_dest(const char *path, const char *what, struct ch_err *reterr)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash = dir ? strrchr(dir, '/') : NULL;
	const char *d;
	struct stat st;

	if (!dir)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	d = slash ? dir : ".";
	if (stat(d, &st) < 0)
		return ch_err_set(reterr, -errno, "the directory %s of the %s file %s: %s", d,
				  what, path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return ch_err_set(reterr, -ENOTDIR,
				  "%s, the directory of the %s file %s, is not a directory", d, what,
				  path);
	if (access(d, W_OK | X_OK) < 0)
		return ch_err_set(reterr, -errno, "cannot write the %s file %s: directory %s: %s",
				  what, path, d, strerror(errno));
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return ch_err_set(reterr, -EEXIST, "the %s file %s exists and is not a regular file",
				  what, path);
	return 0;
}

int
ch_target_rehearse_path(const char *scratch, const char *path, const char *what, char **ret,
			struct ch_err *reterr)
{
	_cleanup_free_ char *p = NULL, *d = NULL;
	char *slash;
	int r;

	*ret = NULL;
	r = target_rehearse_dest(path, what, reterr);
	if (r < 0)
		return r;
	if (asprintf(&p, "%s%s%s", scratch, path[0] == '/' ? "" : "/", path) < 0) {
		p = NULL;
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	d = strdup(p);
	if (!d)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	slash = strrchr(d, '/');
	if (slash) {
		*slash = '\0';
		r = ch_mkdir_p(d, 0700);
		if (r < 0)
			return ch_err_set(reterr, r, "cannot create the scratch directory %s: %s", d,
					  strerror(-r));
	}
	*ret = TAKE_PTR(p);
	return 0;
}

struct target_rehearse_result {
	int r;
	struct ch_err err;
};

static void
target_rehearse_note(int r, const char *message, void *arg)
{
	struct target_rehearse_result *res = arg;

	res->r = r;
	if (r < 0)
		ch_err_set(&res->err, r, "%s", message ? message : strerror(-r));
}

int
ch_target_files_rehearse(const struct ch_target_files *f, const struct ch_deploy_item *item,
			 const char *scratch, struct ch_err *reterr)
{
	struct ch_target_out files[CH_TARGET_FILES_MAX] = { 0 };
	struct ch_filebatch *b = NULL;
	struct target_rehearse_result res = { 0, { "" } };
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	size_t n = 0;
	int r;

	r = ch_target_files_owner(f, &uid, &gid, reterr);
	if (r >= 0)
		r = ch_target_files_prepare(f, item, files, &n, reterr);
	if (r >= 0 && !(b = ch_filebatch_new()))
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
	for (size_t i = 0; r >= 0 && i < n; i++) {
		_cleanup_free_ char *p = NULL;

		r = ch_target_rehearse_path(scratch, files[i].path, files[i].what, &p, reterr);
		if (r < 0)
			break;
		/* Owners are checked above, not applied: the scratch copy stays ours. */
		r = ch_filebatch_stage(b, p, files[i].data, files[i].len, files[i].mode, (uid_t)-1,
				       (gid_t)-1, files[i].what, reterr);
	}
	for (size_t i = 0; i < n; i++)
		ch_target_out_clear(&files[i]);
	if (!b)
		return r;
	if (r < 0) {
		ch_filebatch_group_abort(b);
		ch_filebatch_free(b);
		return r;
	}
	ch_filebatch_group_end(b, target_rehearse_note, &res);
	if (ch_filebatch_commit(b) > 0) {
		ch_filebatch_free(b);
		return ch_err_set(reterr, res.r < 0 ? res.r : -EIO, "%s", res.err.msg);
	}
	ch_filebatch_free(b);
	return ch_err_set(reterr, 0, "checked and wrote %zu file%s under %s", n,
			  n == 1 ? "" : "s", scratch);
}

int
ch_target_check_pidfile(const char *pidfile, struct ch_err *reterr)
{
	pid_t pid = 0;
	int r;

	r = ch_target_signal_pidfile(pidfile, 0, &pid, reterr);
	if (r < 0)
		return r;
	return ch_err_set(reterr, 0, "process %d from %s is running (not signalled)", (int)pid,
			  pidfile);
}
