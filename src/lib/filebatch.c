/* SPDX-License-Identifier: MIT */
/*
 * Batched durable atomic file replacement (see filebatch.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/util.h"

/* Up to this many files an fsync each is cheaper than syncfs. */
#define FILEBATCH_FSYNC_MAX 8

struct fb_file {
	char *path;
	char *tmp;
	size_t group;
	dev_t dev; /* of the temporary file, and so of the renamed one */
};

struct fb_group {
	ch_filebatch_done_fn *done;
	void *arg;
	int r;
	char msg[512];
};

struct ch_filebatch {
	struct fb_file *files;
	size_t n_files, cap_files;
	size_t open_from; /* first file of the group being staged */
	struct fb_group *groups;
	size_t n_groups, cap_groups;
};

struct ch_filebatch *
ch_filebatch_new(void)
{
	return calloc(1, sizeof(struct ch_filebatch));
}

static void
fb_drop_files(struct ch_filebatch *b, size_t from)
{
	for (size_t i = from; i < b->n_files; i++) {
		if (b->files[i].tmp)
			unlink(b->files[i].tmp);
		free(b->files[i].tmp);
		free(b->files[i].path);
	}
	b->n_files = from;
}

struct ch_filebatch *
ch_filebatch_free(struct ch_filebatch *b)
{
	if (!b)
		return NULL;
	fb_drop_files(b, 0);
	free(b->files);
	free(b->groups);
	free(b);
	return NULL;
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

int
ch_filebatch_stage(struct ch_filebatch *b, const char *path, const void *data, size_t len,
		   mode_t mode, uid_t uid, gid_t gid, const char *what, struct ch_err *reterr)
{
	_cleanup_free_ char *tmp = NULL;
	const char *p = data;
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
	if (b->n_files == b->cap_files) {
		size_t cap = b->cap_files ? b->cap_files * 2 : 64;
		struct fb_file *v = realloc(b->files, cap * sizeof(*v));

		if (!v)
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		b->files = v;
		b->cap_files = cap;
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
	/* Owner and mode are in place before any byte is written. */
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot set the owner of %s: %s", path, strerror(-r));
		goto fail;
	}
	if (fchmod(fd, mode) < 0) {
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
	b->files[b->n_files++] = (struct fb_file){
		.path = strdup(path),
		.tmp = TAKE_PTR(tmp),
		.group = b->n_groups,
		.dev = st.st_dev,
	};
	if (!b->files[b->n_files - 1].path) {
		fb_drop_files(b, b->n_files - 1);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

void
ch_filebatch_group_end(struct ch_filebatch *b, ch_filebatch_done_fn *done, void *arg)
{
	if (b->n_groups == b->cap_groups) {
		size_t cap = b->cap_groups ? b->cap_groups * 2 : 64;
		struct fb_group *v = realloc(b->groups, cap * sizeof(*v));

		if (!v)
			abort();
		b->groups = v;
		b->cap_groups = cap;
	}
	b->groups[b->n_groups++] = (struct fb_group){ .done = done, .arg = arg };
	b->open_from = b->n_files;
}

void
ch_filebatch_group_abort(struct ch_filebatch *b)
{
	fb_drop_files(b, b->open_from);
}

size_t
ch_filebatch_pending(const struct ch_filebatch *b)
{
	return b->n_groups;
}

/* Records the first failure of group g; the message ends with strerror(r). */
static void _printf_(4, 5)
fb_fail(struct ch_filebatch *b, size_t g, int r, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	if (b->groups[g].r < 0)
		return;
	b->groups[g].r = r;
	va_start(ap, fmt);
	vsnprintf(b->groups[g].msg, sizeof(b->groups[g].msg), fmt, ap);
	va_end(ap);
	len = strlen(b->groups[g].msg);
	snprintf(b->groups[g].msg + len, sizeof(b->groups[g].msg) - len, ": %s", strerror(-r));
}

static int
fb_fsync_path(const char *path, int flags)
{
	_cleanup_close_ int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return fsync(fd) < 0 ? -errno : 0;
}

/*
 * One syncfs per filesystem for the files of a large batch: before the
 * renames it makes their data durable (path: the temporary names), after
 * them the new directory entries (path: the final names, skipping files
 * not renamed). A failure is shared by every file on that filesystem.
 */
static void
fb_syncfs(struct ch_filebatch *b, size_t n, bool renamed)
{
	dev_t *devs = calloc(n, sizeof(*devs));
	size_t n_devs = 0;

	if (!devs)
		abort();
	for (size_t i = 0; i < n; i++) {
		const char *path = renamed ? b->files[i].path : b->files[i].tmp;
		_cleanup_free_ char *dir = NULL;
		_cleanup_close_ int fd = -1;
		dev_t dev = b->files[i].dev;
		bool seen = false;
		int r = 0;

		if (renamed && b->files[i].tmp)
			continue; /* not renamed */
		for (size_t k = 0; k < n_devs && !seen; k++)
			seen = devs[k] == dev;
		if (seen)
			continue;
		devs[n_devs++] = dev;
		dir = fb_dirname(path);
		fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		if (fd < 0 || syncfs(fd) < 0)
			r = dir ? -errno : -ENOMEM;
		if (r < 0)
			for (size_t k = i; k < n; k++)
				if ((!renamed || !b->files[k].tmp) && b->files[k].dev == dev)
					fb_fail(b, b->files[k].group, r, "cannot sync %s",
						b->files[k].path);
	}
	free(devs);
}

/* Syncs the staged data: an fsync per file, or one syncfs per filesystem. */
static void
fb_sync_data(struct ch_filebatch *b, size_t n)
{
	if (n > FILEBATCH_FSYNC_MAX) {
		fb_syncfs(b, n, false);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int r = fb_fsync_path(b->files[i].tmp, O_RDONLY);

		if (r < 0)
			fb_fail(b, b->files[i].group, r, "cannot fsync %s", b->files[i].path);
	}
}

/* Syncs the directories of the renamed files: an fsync each, or syncfs. */
static void
fb_sync_dirs(struct ch_filebatch *b, size_t n)
{
	if (n > FILEBATCH_FSYNC_MAX) {
		fb_syncfs(b, n, true);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *dir = NULL;
		bool seen = false;
		int r;

		if (b->files[i].tmp) /* not renamed */
			continue;
		dir = fb_dirname(b->files[i].path);
		for (size_t k = 0; k < i && !seen; k++)
			if (!b->files[k].tmp) {
				_cleanup_free_ char *other = fb_dirname(b->files[k].path);

				seen = other && dir && streq(other, dir);
			}
		if (seen || !dir)
			continue;
		r = fb_fsync_path(dir, O_RDONLY | O_DIRECTORY);
		if (r < 0)
			for (size_t k = i; k < n; k++) {
				_cleanup_free_ char *other = fb_dirname(b->files[k].path);

				if (other && streq(other, dir))
					fb_fail(b, b->files[k].group, r,
						"cannot fsync the directory of %s",
						b->files[k].path);
			}
	}
}

int
ch_filebatch_commit(struct ch_filebatch *b)
{
	size_t n = b->n_files;
	size_t n_groups = b->n_groups;
	struct fb_group *groups;
	int failed = 0;

	fb_sync_data(b, n);
	/* A group that failed to sync keeps its old files: nothing renamed. */
	for (size_t i = 0; i < n; i++) {
		struct fb_file *f = &b->files[i];

		if (b->groups[f->group].r < 0)
			continue;
		if (rename(f->tmp, f->path) < 0) {
			fb_fail(b, f->group, -errno, "cannot rename a temporary file to %s",
				f->path);
			continue;
		}
		free(f->tmp);
		f->tmp = NULL;
	}
	fb_sync_dirs(b, n);

	/* Reset before the callbacks, which may stage more. */
	groups = b->groups;
	b->groups = NULL;
	b->n_groups = b->cap_groups = 0;
	fb_drop_files(b, 0);
	b->open_from = 0;
	for (size_t g = 0; g < n_groups; g++) {
		if (groups[g].r < 0) {
			failed++;
			ch_log_debug("filebatch: %s", groups[g].msg);
		}
		if (groups[g].done)
			groups[g].done(groups[g].r, groups[g].r < 0 ? groups[g].msg : NULL,
				       groups[g].arg);
	}
	free(groups);
	return failed;
}
