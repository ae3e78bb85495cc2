/* SPDX-License-Identifier: MIT */
/*
 * Batched durable atomic file replacement (see filebatch.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/util.h"

/* Up to this many files an fsync each is cheaper than syncfs. */
#define FILEBATCH_FSYNC_MAX 8
/*
 * The worker commits at most this many groups per pass, so the loop gets
 * the first callbacks (and has work to do) while it writes the rest.
 */
#define FILEBATCH_PASS_GROUPS 256

struct fb_file {
	char *path;
	char *tmp; /* written, not (yet) renamed */
	size_t group;
	dev_t dev; /* of the temporary file (so of the renamed one), or of the directory */
	bool is_dir; /* a directory to create (path), not a file */
	bool done; /* renamed into place, or the directory exists */
	/* Deferred: what the commit writes (data is wiped when freed). */
	char *data;
	size_t len;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	char *what;
};

struct fb_group {
	ch_filebatch_done_fn *done;
	void *arg;
	int r;
	char msg[512];
};

/* Files and groups: those being staged, or those one commit works on. */
struct fb_set {
	struct fb_file *files;
	size_t n_files, cap_files;
	struct fb_group *groups;
	size_t n_groups, cap_groups;
	struct fb_set *next; /* in the worker's done list */
	struct fb_worker *w; /* the worker writing it, told of each step */
};

/* The thread that commits an asynchronous batch, and its queues. */
struct fb_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fb_set *todo; /* not started yet: later commits join it */
	struct fb_set *done, **done_tail; /* committed, callbacks not run */
	size_t in_flight; /* sets handed over whose callbacks have not run */
	bool stop;
	int efd; /* written by the worker when done has a set */
	struct event *ev;
	/* The step the worker is on (for status): since when, 0 when idle, and on what. */
	int64_t at_since;
	char at[512];
	size_t pass_groups; /* groups of the pass being written */
};

struct ch_filebatch {
	struct fb_set s;
	size_t open_from; /* first file of the group being staged */
	struct fb_worker *w; /* asynchronous: staging copies, the worker writes */
};

struct ch_filebatch *
ch_filebatch_new(void)
{
	return calloc(1, sizeof(struct ch_filebatch));
}

static void
fb_file_clear(struct fb_file *f)
{
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	free(f->what);
	if (f->data) {
		explicit_bzero(f->data, f->len);
		free(f->data);
	}
	*f = (struct fb_file){ 0 };
}

static void
fb_drop_files(struct fb_set *s, size_t from)
{
	for (size_t i = from; i < s->n_files; i++)
		fb_file_clear(&s->files[i]);
	s->n_files = from;
}

static void
fb_set_free(struct fb_set *s)
{
	if (!s)
		return;
	fb_drop_files(s, 0);
	free(s->files);
	free(s->groups);
	free(s);
}

static char *
fb_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* Records the first failure of group g; the message ends with strerror(r). */
static void _printf_(4, 5)
fb_fail(struct fb_set *s, size_t g, int r, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	if (s->groups[g].r < 0)
		return;
	s->groups[g].r = r;
	va_start(ap, fmt);
	vsnprintf(s->groups[g].msg, sizeof(s->groups[g].msg), fmt, ap);
	va_end(ap);
	len = strlen(s->groups[g].msg);
	snprintf(s->groups[g].msg + len, sizeof(s->groups[g].msg) - len, ": %s", strerror(-r));
}

static int
fb_fsync_path(const char *path, int flags)
{
	_cleanup_close_ int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

/* Tells the worker's observers which step starts now (what, on path). */
static void
fb_at(struct fb_set *s, const char *what, const char *path)
{
	if (!s->w)
		return;
	pthread_mutex_lock(&s->w->lock);
	s->w->at_since = ch_mono_usec();
	snprintf(s->w->at, sizeof(s->w->at), "%s %s", what, path);
	pthread_mutex_unlock(&s->w->lock);
}

/*
 * Writes f's temporary file beside f->path: owner and mode in place
 * before any byte is written. Refuses a symlink or non-regular file at
 * the destination.
 */
static int
fb_write_tmp(struct fb_file *f, const void *data, size_t len, const char *what,
	     struct ch_err *reterr)
{
	_cleanup_free_ char *tmp = NULL;
	const char *path = f->path, *p = data;
	size_t left = len;
	struct stat st;
	int fd, r;

	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return ch_err_set(reterr, -ELOOP,
					  "%s is a symbolic link; refusing to replace it", path);
		if (!S_ISREG(st.st_mode))
			return ch_err_set(reterr, -EEXIST, "%s exists and is not a regular file",
					  path);
	}
	fd = ch_tmp_create_beside(path, &tmp);
	if (fd == -ENOMEM)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (fd < 0) {
		_cleanup_free_ char *dir = fb_dirname(path);

		r = fd;
		if (r == -ENOENT || r == -ENOTDIR)
			return ch_err_set(reterr, r, "directory %s does not exist (for %s %s)",
					  dir ? dir : path, what, path);
		return ch_err_set(reterr, r, "cannot create a file in %s (for %s %s): %s",
				  dir ? dir : path, what, path, strerror(-r));
	}
	if ((f->uid != (uid_t)-1 || f->gid != (gid_t)-1) && fchown(fd, f->uid, f->gid) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot set the owner of %s: %s", path, strerror(-r));
		goto fail;
	}
	if (fchmod(fd, f->mode) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot set the mode of %s: %s", path, strerror(-r));
		goto fail;
	}
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			ch_err_set(reterr, r, "cannot write %s: %s", path, strerror(-r));
			goto fail;
		}
		p += n;
		left -= (size_t)n;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot stat %s: %s", tmp, strerror(-r));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		ch_err_set(reterr, r, "cannot write %s: %s", path, strerror(-r));
		goto fail;
	}
	f->tmp = TAKE_PTR(tmp);
	f->dev = st.st_dev;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

/*
 * mkdir -p of f->path with f->mode. Each directory it creates has its
 * entry synced at once when sync_parents (a small batch); a large batch
 * syncs the whole file system after its renames.
 */
static int
fb_mkdir(struct fb_file *f, const char *path, bool sync_parents, struct ch_err *reterr)
{
	_cleanup_free_ char *parent = NULL;
	struct stat st;
	int r;

	if (mkdir(path, f->mode) < 0) {
		r = -errno;
		if (r == -EEXIST)
			goto exists;
		if (r == -ENOENT && !(parent = fb_dirname(path)))
			r = -ENOMEM;
		if (r != -ENOENT || streq(parent, path) || streq(parent, "/") ||
		    streq(parent, "."))
			return ch_err_set(reterr, r, "cannot create the directory %s: %s", path,
					  strerror(-r));
		r = fb_mkdir(f, parent, sync_parents, reterr);
		if (r < 0)
			return r;
		if (mkdir(path, f->mode) < 0 && errno != EEXIST) {
			r = -errno;
			return ch_err_set(reterr, r, "cannot create the directory %s: %s", path,
					  strerror(-r));
		}
	}
	if (sync_parents) {
		_cleanup_free_ char *dir = parent ? TAKE_PTR(parent) : fb_dirname(path);

		r = dir ? fb_fsync_path(dir, O_RDONLY | O_DIRECTORY) : -ENOMEM;
		if (r < 0)
			return ch_err_set(reterr, r, "cannot fsync the directory of %s: %s", path,
					  strerror(-r));
	}
exists:
	if (stat(path, &st) < 0) {
		r = -errno;
		return ch_err_set(reterr, r, "cannot create the directory %s: %s", path,
				  strerror(-r));
	}
	if (!S_ISDIR(st.st_mode))
		return ch_err_set(reterr, -ENOTDIR, "%s exists and is not a directory", path);
	f->dev = st.st_dev;
	f->done = true;
	return 0;
}

static struct fb_file *
fb_add(struct ch_filebatch *b, const char *path, struct ch_err *reterr)
{
	struct fb_set *s = &b->s;

	if (s->n_files == s->cap_files) {
		size_t cap = s->cap_files ? s->cap_files * 2 : 64;
		struct fb_file *v = realloc(s->files, cap * sizeof(*v));

		if (!v)
			goto oom;
		s->files = v;
		s->cap_files = cap;
	}
	s->files[s->n_files] = (struct fb_file){ .group = s->n_groups, .path = strdup(path) };
	if (!s->files[s->n_files].path)
		goto oom;
	return &s->files[s->n_files];
oom:
	ch_err_set(reterr, -ENOMEM, "out of memory");
	return NULL;
}

int
ch_filebatch_stage(struct ch_filebatch *b, const char *path, const void *data, size_t len,
		   mode_t mode, uid_t uid, gid_t gid, const char *what, struct ch_err *reterr)
{
	struct fb_file *f = fb_add(b, path, reterr);
	int r;

	if (!f)
		return -ENOMEM;
	f->mode = mode;
	f->uid = uid;
	f->gid = gid;
	if (b->w) {
		f->data = malloc(len ? len : 1);
		f->what = strdup(what);
		if (!f->data || !f->what) {
			fb_file_clear(f);
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		}
		memcpy(f->data, data, len);
		f->len = len;
		b->s.n_files++;
		return 0;
	}
	r = fb_write_tmp(f, data, len, what, reterr);
	if (r < 0) {
		fb_file_clear(f);
		return r;
	}
	b->s.n_files++;
	return 0;
}

int
ch_filebatch_mkdir(struct ch_filebatch *b, const char *path, mode_t mode, struct ch_err *reterr)
{
	struct fb_file *f = fb_add(b, path, reterr);
	int r;

	if (!f)
		return -ENOMEM;
	f->is_dir = true;
	f->mode = mode;
	if (!b->w) {
		r = fb_mkdir(f, f->path, true, reterr);
		if (r < 0) {
			fb_file_clear(f);
			return r;
		}
	}
	b->s.n_files++;
	return 0;
}

void
ch_filebatch_group_end(struct ch_filebatch *b, ch_filebatch_done_fn *done, void *arg)
{
	struct fb_set *s = &b->s;

	if (s->n_groups == s->cap_groups) {
		size_t cap = s->cap_groups ? s->cap_groups * 2 : 64;
		struct fb_group *v = realloc(s->groups, cap * sizeof(*v));

		if (!v)
			abort();
		s->groups = v;
		s->cap_groups = cap;
	}
	s->groups[s->n_groups++] = (struct fb_group){ .done = done, .arg = arg };
	b->open_from = s->n_files;
}

void
ch_filebatch_group_abort(struct ch_filebatch *b)
{
	fb_drop_files(&b->s, b->open_from);
}

size_t
ch_filebatch_pending(const struct ch_filebatch *b)
{
	return b->s.n_groups;
}

/* Whether a syncfs is for f: after the renames (its entry) or before them (its data). */
static bool
fb_syncs(const struct fb_file *f, bool entries)
{
	return entries ? f->done : f->tmp != NULL;
}

/*
 * One syncfs per file system for large batches: it makes the new
 * directory entries of entries (the files renamed into place, the
 * directories created) durable, and the data of data (written, not yet
 * renamed). Either may be NULL; the worker passes both to sync the
 * entries of one pass with the data of the next. A failure is shared by
 * every file on that file system.
 */
static void
fb_syncfs(struct fb_set *entries, struct fb_set *data)
{
	struct fb_set *sets[2] = { entries, data };
	size_t cap = (entries ? entries->n_files : 0) + (data ? data->n_files : 0);
	dev_t *devs = calloc(cap ? cap : 1, sizeof(*devs));
	size_t n_devs = 0;

	if (!devs)
		abort();
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; sets[k] && i < sets[k]->n_files; i++) {
			struct fb_file *f = &sets[k]->files[i];
			_cleanup_free_ char *dir = NULL;
			_cleanup_close_ int fd = -1;
			bool seen = false;
			int r = 0;

			if (!fb_syncs(f, k == 0))
				continue;
			for (size_t d = 0; d < n_devs && !seen; d++)
				seen = devs[d] == f->dev;
			if (seen)
				continue;
			devs[n_devs++] = f->dev;
			dir = fb_dirname(k == 0 ? f->path : f->tmp);
			fb_at(sets[k], "syncing the file system of", dir ? dir : f->path);
			fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
			if (fd < 0 || syncfs(fd) < 0)
				r = dir ? -errno : -ENOMEM;
			if (r < 0)
				for (size_t m = 0; m < 2; m++)
					for (size_t j = 0; sets[m] && j < sets[m]->n_files; j++) {
						struct fb_file *o = &sets[m]->files[j];

						if (fb_syncs(o, m == 0) && o->dev == f->dev)
							fb_fail(sets[m], o->group, r,
								"cannot sync %s", o->path);
					}
		}
	free(devs);
}

/* Syncs the written data: an fsync per file, or one syncfs per filesystem. */
static void
fb_sync_data(struct fb_set *s)
{
	if (s->n_files > FILEBATCH_FSYNC_MAX) {
		fb_syncfs(NULL, s);
		return;
	}
	for (size_t i = 0; i < s->n_files; i++) {
		struct fb_file *f = &s->files[i];
		int r;

		if (!f->tmp)
			continue;
		fb_at(s, "syncing", f->tmp);
		r = fb_fsync_path(f->tmp, O_RDONLY);
		if (r < 0)
			fb_fail(s, f->group, r, "cannot fsync %s", f->path);
	}
}

/* Syncs the directories of the renamed files: an fsync each, or syncfs. */
static void
fb_sync_dirs(struct fb_set *s)
{
	size_t n = s->n_files;

	if (n > FILEBATCH_FSYNC_MAX) {
		fb_syncfs(s, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *dir = NULL;
		bool seen = false;
		int r;

		/* A directory created in a small batch had its entry synced then. */
		if (!s->files[i].done || s->files[i].is_dir)
			continue;
		dir = fb_dirname(s->files[i].path);
		for (size_t k = 0; k < i && !seen; k++)
			if (s->files[k].done && !s->files[k].is_dir) {
				_cleanup_free_ char *other = fb_dirname(s->files[k].path);

				seen = other && dir && streq(other, dir);
			}
		if (seen || !dir)
			continue;
		fb_at(s, "syncing the directory", dir);
		r = fb_fsync_path(dir, O_RDONLY | O_DIRECTORY);
		if (r < 0)
			for (size_t k = i; k < n; k++) {
				_cleanup_free_ char *other = fb_dirname(s->files[k].path);

				if (other && streq(other, dir))
					fb_fail(s, s->files[k].group, r,
						"cannot fsync the directory of %s",
						s->files[k].path);
			}
	}
}

/* Creates the directories and writes the temporary files deferred to the commit. */
static void
fb_write_all(struct fb_set *s)
{
	bool small = s->n_files <= FILEBATCH_FSYNC_MAX;

	for (size_t i = 0; i < s->n_files; i++) {
		struct fb_file *f = &s->files[i];
		struct ch_err err = { "" };
		int r = 0;

		if (s->groups[f->group].r < 0)
			continue;
		fb_at(s, f->is_dir ? "creating the directory" : "writing", f->path);
		if (f->is_dir && !f->done)
			r = fb_mkdir(f, f->path, small, &err);
		else if (f->data)
			r = fb_write_tmp(f, f->data, f->len, f->what, &err);
		if (f->data) {
			explicit_bzero(f->data, f->len);
			free(f->data);
			f->data = NULL;
		}
		if (r < 0) {
			s->groups[f->group].r = r;
			snprintf(s->groups[f->group].msg, sizeof(s->groups[f->group].msg), "%s",
				 err.msg);
		}
	}
}

/* Renames the synced temporary files into place; a group that failed keeps its old files. */
static void
fb_rename_all(struct fb_set *s)
{
	for (size_t i = 0; i < s->n_files; i++) {
		struct fb_file *f = &s->files[i];

		if (!f->tmp || s->groups[f->group].r < 0)
			continue;
		fb_at(s, "renaming into place", f->path);
		if (rename(f->tmp, f->path) < 0) {
			fb_fail(s, f->group, -errno, "cannot rename a temporary file to %s",
				f->path);
			continue;
		}
		free(f->tmp);
		f->tmp = NULL;
		f->done = true;
	}
}

/*
 * The file system work of a commit: what was deferred is created and
 * written, then synced, renamed into place and the directories synced.
 * Touches nothing but s, so it runs on the worker as well.
 */
static void
fb_commit_set(struct fb_set *s)
{
	fb_write_all(s);
	fb_sync_data(s);
	fb_rename_all(s);
	fb_sync_dirs(s);
}

/* Calls the callbacks of a committed set, in staging order; returns the failures. */
static int
fb_run_callbacks(struct fb_set *s)
{
	int failed = 0;

	for (size_t g = 0; g < s->n_groups; g++) {
		struct fb_group *grp = &s->groups[g];

		if (grp->r < 0) {
			failed++;
			ch_log_debug("filebatch: %s", grp->msg);
		}
		if (grp->done)
			grp->done(grp->r, grp->r < 0 ? grp->msg : NULL, grp->arg);
	}
	return failed;
}

/*
 * Moves the groups b staged into a set of its own. b starts empty but for
 * the files of a group not yet ended, which wait for the next commit.
 */
static struct fb_set *
fb_take(struct ch_filebatch *b)
{
	struct fb_set *s = malloc(sizeof(*s));
	size_t open = b->s.n_files - b->open_from;

	if (!s)
		abort();
	*s = b->s;
	b->s = (struct fb_set){ 0 };
	if (open) {
		b->s.files = malloc(open * sizeof(*b->s.files));
		if (!b->s.files)
			abort();
		memcpy(b->s.files, s->files + b->open_from, open * sizeof(*b->s.files));
		for (size_t i = 0; i < open; i++)
			b->s.files[i].group = 0;
		b->s.n_files = b->s.cap_files = open;
		s->n_files = b->open_from;
	}
	b->open_from = 0;
	return s;
}

/* Appends src's files and groups to dst, which keeps their order; frees src. */
static void
fb_join(struct fb_set *dst, struct fb_set *src)
{
	size_t nf = dst->n_files + src->n_files, ng = dst->n_groups + src->n_groups;

	if (nf > dst->cap_files) {
		struct fb_file *v = realloc(dst->files, nf * sizeof(*v));

		if (!v)
			abort();
		dst->files = v;
		dst->cap_files = nf;
	}
	if (ng > dst->cap_groups) {
		struct fb_group *v = realloc(dst->groups, ng * sizeof(*v));

		if (!v)
			abort();
		dst->groups = v;
		dst->cap_groups = ng;
	}
	for (size_t i = 0; i < src->n_files; i++) {
		dst->files[dst->n_files + i] = src->files[i];
		dst->files[dst->n_files + i].group += dst->n_groups;
	}
	memcpy(dst->groups + dst->n_groups, src->groups, src->n_groups * sizeof(*src->groups));
	dst->n_files = nf;
	dst->n_groups = ng;
	src->n_files = 0;
	fb_set_free(src);
}

int
ch_filebatch_commit(struct ch_filebatch *b)
{
	struct fb_set *s;
	int failed;

	if (b->w) {
		struct fb_worker *w = b->w;

		if (!b->s.n_groups)
			return 0;
		s = fb_take(b);
		pthread_mutex_lock(&w->lock);
		if (w->todo) {
			fb_join(w->todo, s);
		} else {
			w->todo = s;
			w->in_flight++;
			pthread_cond_broadcast(&w->cond);
		}
		pthread_mutex_unlock(&w->lock);
		return 0;
	}
	/* Reset before the callbacks, which may stage more. */
	s = fb_take(b);
	fb_commit_set(s);
	failed = fb_run_callbacks(s);
	fb_set_free(s);
	return failed;
}

/*
 * Leaves the first max groups of s (and their files) in s and returns a
 * new set with the rest, or NULL when s has no more than max groups.
 */
static struct fb_set *
fb_split(struct fb_set *s, size_t max)
{
	struct fb_set *rest;
	size_t f = 0;

	if (s->n_groups <= max)
		return NULL;
	while (f < s->n_files && s->files[f].group < max)
		f++;
	rest = calloc(1, sizeof(*rest));
	if (!rest)
		abort();
	rest->n_files = rest->cap_files = s->n_files - f;
	rest->n_groups = rest->cap_groups = s->n_groups - max;
	rest->files = malloc((rest->n_files ? rest->n_files : 1) * sizeof(*rest->files));
	rest->groups = malloc(rest->n_groups * sizeof(*rest->groups));
	if (!rest->files || !rest->groups)
		abort();
	memcpy(rest->files, s->files + f, rest->n_files * sizeof(*rest->files));
	for (size_t i = 0; i < rest->n_files; i++)
		rest->files[i].group -= max;
	memcpy(rest->groups, s->groups + max, rest->n_groups * sizeof(*rest->groups));
	s->n_files = f;
	s->n_groups = max;
	return rest;
}

/* Hands a committed set to the loop. Called with the worker's lock held. */
static void
fb_worker_publish(struct fb_worker *w, struct fb_set *s)
{
	uint64_t one = 1;

	s->next = NULL;
	*w->done_tail = s;
	w->done_tail = &s->next;
	pthread_cond_broadcast(&w->cond);
	/* The counter cannot overflow: the loop reads it after every write. */
	if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

/*
 * The worker: a pass at a time, as fb_commit_set() does. When another
 * large pass is waiting, one syncfs makes both this pass's renames and
 * the next pass's data durable, instead of one each.
 */
static void *
fb_worker_main(void *arg)
{
	struct fb_worker *w = arg;
	struct fb_set *cur = NULL; /* renamed, its directory entries not yet synced */

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct fb_set *s;

		if (!w->todo && !cur) {
			w->at_since = 0;
			w->pass_groups = 0;
		}
		while (!w->todo && !w->stop && !cur)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->todo) {
			if (!cur)
				break; /* stopping, and nothing left */
			pthread_mutex_unlock(&w->lock);
			fb_sync_dirs(cur);
			pthread_mutex_lock(&w->lock);
			fb_worker_publish(w, cur);
			cur = NULL;
			continue;
		}
		s = w->todo;
		s->w = w;
		w->todo = fb_split(s, FILEBATCH_PASS_GROUPS);
		if (w->todo)
			w->in_flight++;
		w->pass_groups = s->n_groups;
		pthread_mutex_unlock(&w->lock);
		fb_write_all(s);
		if (cur && cur->n_files > FILEBATCH_FSYNC_MAX && s->n_files > FILEBATCH_FSYNC_MAX) {
			fb_syncfs(cur, s);
		} else {
			if (cur)
				fb_sync_dirs(cur);
			fb_sync_data(s);
		}
		if (cur) {
			pthread_mutex_lock(&w->lock);
			fb_worker_publish(w, cur);
			pthread_mutex_unlock(&w->lock);
		}
		fb_rename_all(s);
		cur = s;
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Runs the callbacks of every set the worker finished; returns how many sets. */
static size_t
fb_worker_reap(struct fb_worker *w)
{
	struct fb_set *list, *next;
	size_t n = 0;

	pthread_mutex_lock(&w->lock);
	list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->lock);
	for (struct fb_set *s = list; s; s = next) {
		next = s->next;
		fb_run_callbacks(s);
		fb_set_free(s);
		n++;
	}
	pthread_mutex_lock(&w->lock);
	w->in_flight -= n;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static void
fb_worker_event(evutil_socket_t fd, short what, void *arg)
{
	struct fb_worker *w = arg;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		ch_log_warning("filebatch: cannot read its event counter: %s", strerror(errno));
	fb_worker_reap(w);
}

struct ch_filebatch *
ch_filebatch_new_async(struct event_base *base)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct fb_worker *w = calloc(1, sizeof(*w));

	if (!b || !w)
		goto fail;
	w->done_tail = &w->done;
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0)
		goto fail;
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, fb_worker_event, w);
	if (!w->ev || event_add(w->ev, NULL) < 0)
		goto fail_ev;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (pthread_create(&w->thread, NULL, fb_worker_main, w) != 0) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		goto fail_ev;
	}
	/* Named for top -H and perf: the thread that writes every file. */
	pthread_setname_np(w->thread, "certherd-files");
	b->w = w;
	return b;
fail_ev:
	if (w->ev)
		event_free(w->ev);
	close(w->efd);
fail:
	free(w);
	free(b);
	return NULL;
}

int64_t
ch_filebatch_worker_step(struct ch_filebatch *b, char *at, size_t len, size_t *queued)
{
	struct fb_worker *w = b->w;
	int64_t since;

	*queued = 0;
	if (len)
		at[0] = '\0';
	if (!w)
		return 0;
	pthread_mutex_lock(&w->lock);
	since = w->at_since;
	if (since)
		snprintf(at, len, "%s", w->at);
	*queued = w->pass_groups + (w->todo ? w->todo->n_groups : 0);
	pthread_mutex_unlock(&w->lock);
	return since;
}

size_t
ch_filebatch_drain(struct ch_filebatch *b)
{
	struct fb_worker *w = b->w;
	size_t n = 0;

	if (!w)
		return 0;
	for (;;) {
		bool more;

		pthread_mutex_lock(&w->lock);
		while (w->in_flight > 0 && !w->done)
			pthread_cond_wait(&w->cond, &w->lock);
		more = w->done != NULL;
		pthread_mutex_unlock(&w->lock);
		if (!more)
			return n;
		n += fb_worker_reap(w);
	}
}

struct ch_filebatch *
ch_filebatch_free(struct ch_filebatch *b)
{
	struct fb_worker *w;

	if (!b)
		return NULL;
	w = b->w;
	if (w) {
		/* What was handed over completes; what is only staged is dropped. */
		ch_filebatch_drain(b);
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		event_free(w->ev);
		close(w->efd);
		free(w);
	}
	fb_drop_files(&b->s, 0);
	free(b->s.files);
	free(b->s.groups);
	free(b);
	return NULL;
}
