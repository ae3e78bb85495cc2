/* SPDX-License-Identifier: MIT */
/*
 * Small utilities: clocks, durations, durable atomic file replacement,
 * whole-file reads, path joining, edit distance and allocation helpers.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "certherd/log.h"
#include "certherd/util.h"

int64_t
ch_now(void)
{
	return (int64_t)time(NULL);
}

int64_t
ch_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * CH_USEC_PER_SEC + ts.tv_nsec / 1000;
}

int64_t
ch_mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * CH_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static const struct {
	char unit;
	int64_t sec;
} duration_units[] = {
	{ 'y', 365 * 86400 }, { 'w', 7 * 86400 }, { 'd', 86400 },
	{ 'h', 3600 },        { 'm', 60 },        { 's', 1 },
};

int
ch_parse_duration(const char *s, int64_t *ret_sec)
{
	int64_t total = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	while (*p) {
		char *end;
		long long v;
		int64_t mul = 0;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		errno = 0;
		v = strtoll(p, &end, 10);
		if (errno || v < 0)
			return -EINVAL;
		if (*end == '\0') {
			/* A bare number counts as seconds, only on its own. */
			if (p != s)
				return -EINVAL;
			mul = 1;
		} else {
			for (size_t i = 0; i < ARRAY_SIZE(duration_units); i++)
				if (*end == duration_units[i].unit)
					mul = duration_units[i].sec;
			if (!mul)
				return -EINVAL;
			end++;
		}
		if (v > INT64_MAX / mul || total > INT64_MAX - v * mul)
			return -ERANGE;
		total += v * mul;
		p = end;
	}
	*ret_sec = total;
	return 0;
}

const char *
ch_format_duration(int64_t sec, char *buf, size_t len)
{
	size_t off = 0;
	int parts = 0;
	bool neg = sec < 0;

	if (sec == 0) {
		snprintf(buf, len, "0s");
		return buf;
	}
	if (neg) {
		sec = -sec;
		off += snprintf(buf + off, len - off, "-");
	}
	for (size_t i = 1; i < ARRAY_SIZE(duration_units) && parts < 2 && off < len; i++) {
		int64_t v = sec / duration_units[i].sec;

		if (v == 0 && parts == 0)
			continue;
		if (v == 0) {
			parts++;
			continue;
		}
		off += snprintf(buf + off, len - off, "%lld%c", (long long)v,
				duration_units[i].unit);
		sec -= v * duration_units[i].sec;
		parts++;
	}
	return buf;
}

const char *
ch_format_time(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

uint64_t
ch_hash64(const char *s)
{
	uint64_t h = UINT64_C(1469598103934665603);

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

int
ch_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = NULL;
	char *slash;
	int r;

	/* Usually only the last component or two are missing: try from the end. */
	if (mkdir(path, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -errno;
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	slash = strrchr(p, '/');
	while (slash && slash > p && slash[-1] == '/')
		slash--;
	if (!slash || slash == p)
		return -ENOENT;
	*slash = '\0';
	r = ch_mkdir_p(p, mode);
	if (r < 0)
		return r;
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
fsync_dir_of(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	int fd, r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* When this process started, by the clock file systems stamp files with. */
static struct timespec util_started;

__attribute__((constructor)) static void
util_note_start(void)
{
	clock_gettime(CLOCK_REALTIME_COARSE, &util_started);
}

int
ch_tmp_create_beside(const char *path, char **ret_tmp)
{
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	_cleanup_free_ char *tmp = NULL;
	struct stat st;
	int fd;

	if (asprintf(&tmp, "%s.tmp.ch", path) < 0)
		return -ENOMEM;
	fd = open(tmp, flags, 0600);
	if (fd < 0 && errno == EEXIST && lstat(tmp, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_mtim.tv_sec < util_started.tv_sec ||
	     (st.st_mtim.tv_sec == util_started.tv_sec &&
	      st.st_mtim.tv_nsec < util_started.tv_nsec))) {
		ch_log_debug("Removing %s, left by a process that was killed while writing it",
			     tmp);
		if (unlink(tmp) < 0 && errno != ENOENT)
			return -errno;
		fd = open(tmp, flags, 0600);
	}
	if (fd < 0 && errno == EEXIST) {
		/* Ours, staged and not yet renamed: another name for this one. */
		free(tmp);
		tmp = NULL;
		if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
			return -ENOMEM;
		fd = mkostemp(tmp, O_CLOEXEC);
	}
	if (fd < 0)
		return errno > 0 ? -errno : -EIO;
	*ret_tmp = TAKE_PTR(tmp);
	return fd;
}

int
ch_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
		     gid_t gid, struct ch_err *reterr)
{
	_cleanup_free_ char *tmp = NULL;
	struct stat st;
	const char *p = data;
	size_t left = len;
	int fd, r;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		return ch_err_set(reterr, -ELOOP, "%s is a symbolic link; refusing to replace it",
				  path);
	fd = ch_tmp_create_beside(path, &tmp);
	if (fd < 0)
		return ch_err_set(reterr, fd, "cannot create a temporary file beside %s: %s", path,
				  strerror(-fd));
	/* Mode and owner are set before any byte is written. */
	if (fchmod(fd, mode) < 0 ||
	    ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)) {
		r = -errno;
		ch_err_set(reterr, r, "cannot set mode/owner of %s: %s", tmp, strerror(-r));
		goto fail;
	}
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			ch_err_set(reterr, r, "cannot write %s: %s", tmp, strerror(-r));
			goto fail;
		}
		p += n;
		left -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot fsync %s: %s", tmp, strerror(-r));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		ch_err_set(reterr, r, "cannot close %s: %s", tmp, strerror(-r));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		ch_err_set(reterr, r, "cannot rename %s to %s: %s", tmp, path, strerror(-r));
		goto fail;
	}
	r = fsync_dir_of(path);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot fsync the directory of %s: %s", path,
				  strerror(-r));
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	return r;
}

int
ch_read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if ((size_t)st.st_size > max)
		return -EFBIG;
	for (;;) {
		ssize_t n;

		if (len + 4096 + 1 > cap) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			if (cap > max + 4097)
				cap = max + 4097;
			nb = realloc(buf, cap);
			if (!nb)
				return -ENOMEM;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max)
			return -EFBIG;
	}
	if (!buf && !(buf = malloc(1)))
		return -ENOMEM;
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

size_t
ch_levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row, r;

	if (la > 256 || lb > 256)
		return SIZE_MAX;
	row = calloc(lb + 1, sizeof(*row));
	if (!row)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev + cost;

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	r = row[lb];
	free(row);
	return r;
}

char *
ch_path_join_abs(const char *base_dir, const char *path)
{
	char *r;

	if (!path)
		return NULL;
	if (path[0] == '/' || !base_dir)
		return strdup(path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (asprintf(&r, "%s/%s", base_dir, path) < 0)
		return NULL;
	return r;
}

char *
ch_xstrdup(const char *s)
{
	char *r;

	if (!s)
		return NULL;
	r = strdup(s);
	if (!r)
		abort();
	return r;
}

void *
ch_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		abort();
	return p;
}

char *
ch_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	if (vasprintf(&r, fmt, ap) < 0)
		abort();
	va_end(ap);
	return r;
}

int
ch_random_hex(size_t n, char *buf, size_t buflen)
{
	unsigned char raw[64];

	if (n > sizeof(raw) || buflen < 2 * n + 1)
		return -EINVAL;
	if (getrandom(raw, n, 0) != (ssize_t)n)
		return -EIO;
	for (size_t i = 0; i < n; i++)
		snprintf(buf + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

const char *
ch_url_redact(const char *url, char *buf, size_t len)
{
	const char *host, *end, *at;

	if (!url) {
		snprintf(buf, len, "-");
		return buf;
	}
	host = strstr(url, "://");
	host = host ? host + 3 : url;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	if (at) /* user info: drop it */
		snprintf(buf, len, "%.*s%.*s/...", (int)(host - url), url, (int)(end - at - 1), at + 1);
	else
		snprintf(buf, len, "%.*s%s", (int)(end - url), url, *end ? "/..." : "");
	return buf;
}
