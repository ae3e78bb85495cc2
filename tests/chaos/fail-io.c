/* SPDX-License-Identifier: MIT */
/*
 * An LD_PRELOAD shim that makes a directory look full, for the
 * faults-local suite. While the file named by $FAILIO_CONTROL exists,
 * its first line is a path prefix, and every call that would need space
 * under that prefix fails with ENOSPC: write, pwrite, writev, fsync,
 * fdatasync, ftruncate, fallocate, creating a new file (open/openat with
 * O_CREAT of a name that does not exist yet) and rename into the prefix.
 * An optional second line limits the fault to some of these: any of
 * "create", "write", "sync", "rename" (so a file can be created, then its
 * write fails, as on a filesystem with inodes but no blocks left). Reading, unlinking and opening existing files keep working, as they do
 * on a full filesystem. With the word "hang" on that line the calls do
 * not fail but block until the control file is removed, as on a network
 * filesystem whose server went away, and then go through. The fault is switched on and off at run time by
 * creating and removing the control file. Each failure is counted in
 * $FAILIO_CONTROL.hits (one byte appended), so a test can tell that the
 * fault was hit at all.
 */
/* Both the plain and the 64-bit names are defined here, so no redirection. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

enum {
	FAIL_CREATE = 1 << 0,
	FAIL_WRITE = 1 << 1,
	FAIL_SYNC = 1 << 2,
	FAIL_RENAME = 1 << 3,
	FAIL_ALL = 15,
};

static _Thread_local bool failio_hang; /* set by failio_prefix: block instead of failing */

/* The prefix now failing, or false when the control file is absent or the call's kind is spared. */
static bool
failio_prefix(char *buf, size_t len, int kind)
{
	static const struct {
		const char *word;
		int kind;
	} words[] = { { "create", FAIL_CREATE }, { "write", FAIL_WRITE },
		      { "sync", FAIL_SYNC },     { "rename", FAIL_RENAME } };
	int kinds = 0;
	char *nl;
	const char *ctl = getenv("FAILIO_CONTROL");
	ssize_t n;
	int fd;

	if (!ctl || !*ctl)
		return false;
	fd = REAL(open)(ctl, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	nl = strchr(buf, '\n');
	failio_hang = false;
	if (nl) {
		*nl++ = '\0';
		failio_hang = strstr(nl, "hang") != NULL;
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (strstr(nl, words[i].word))
				kinds |= words[i].kind;
	}
	if (!kinds)
		kinds = FAIL_ALL;
	return buf[0] != '\0' && (kinds & kind);
}

static void
failio_count(void)
{
	const char *ctl = getenv("FAILIO_CONTROL");
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s.hits", ctl) >= (int)sizeof(path))
		return;
	fd = REAL(open)(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (REAL(write)(fd, "x", 1) < 0) {
		/* nothing to do: the count is only a hint */
	}
	close(fd);
}

static bool
failio_path_hit(const char *path, int kind)
{
	char prefix[PATH_MAX], abs[PATH_MAX];

	if (!path || !failio_prefix(prefix, sizeof(prefix), kind))
		return false;
	if (path[0] != '/') {
		if (!getcwd(abs, sizeof(abs)))
			return false;
		if (strlen(abs) + 1 + strlen(path) + 1 > sizeof(abs))
			return false;
		strcat(abs, "/");
		strcat(abs, path);
		path = abs;
	}
	if (strncmp(path, prefix, strlen(prefix)) != 0)
		return false;
	failio_count();
	if (failio_hang) {
		const char *ctl = getenv("FAILIO_CONTROL");
		struct timespec tick = { 0, 20 * 1000 * 1000 };

		while (access(ctl, F_OK) == 0)
			nanosleep(&tick, NULL);
		return false;
	}
	return true;
}

static bool
failio_fd_hit(int fd, int kind)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0 || path[0] != '/')
		return false;
	path[n] = '\0';
	return failio_path_hit(path, kind);
}

/* A name under dirfd (AT_FDCWD or a directory) as an absolute path. */
static bool
failio_at_hit(int dirfd, const char *name, int kind)
{
	char link[64], path[PATH_MAX];
	ssize_t n;

	if (dirfd == AT_FDCWD || !name || name[0] == '/')
		return failio_path_hit(name, kind);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0 || (size_t)n + 1 + strlen(name) + 1 > sizeof(path))
		return false;
	path[n] = '\0';
	strcat(path, "/");
	strcat(path, name);
	return failio_path_hit(path, kind);
}

static bool
failio_creates(int dirfd, const char *path, int flags)
{
	return (flags & O_CREAT) && faccessat(dirfd, path, F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
	       failio_at_hit(dirfd, path, FAIL_CREATE);
}

#define FAIL_ENOSPC(ret)        \
	do {                    \
		errno = ENOSPC; \
		return ret;     \
	} while (0)

ssize_t
write(int fd, const void *buf, size_t n)
{
	if (n > 0 && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(write)(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (n > 0 && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(pwrite)(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	if (n > 0 && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
	if (cnt > 0 && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(writev)(fd, iov, cnt);
}

int
fsync(int fd)
{
	if (failio_fd_hit(fd, FAIL_SYNC))
		FAIL_ENOSPC(-1);
	return REAL(fsync)(fd);
}

int
fdatasync(int fd)
{
	if (failio_fd_hit(fd, FAIL_SYNC))
		FAIL_ENOSPC(-1);
	return REAL(fdatasync)(fd);
}

int
ftruncate(int fd, off_t len)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && len > st.st_size && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(ftruncate)(fd, len);
}

int
ftruncate64(int fd, off64_t len)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && len > st.st_size && failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(ftruncate64)(fd, len);
}

int
fallocate(int fd, int mode, off_t off, off_t len)
{
	if (failio_fd_hit(fd, FAIL_WRITE))
		FAIL_ENOSPC(-1);
	return REAL(fallocate)(fd, mode, off, len);
}

int
posix_fallocate(int fd, off_t off, off_t len)
{
	if (failio_fd_hit(fd, FAIL_WRITE))
		return ENOSPC;
	return REAL(posix_fallocate)(fd, off, len);
}

static mode_t
open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int
open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (failio_creates(AT_FDCWD, path, flags))
		FAIL_ENOSPC(-1);
	return REAL(open)(path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (failio_creates(AT_FDCWD, path, flags))
		FAIL_ENOSPC(-1);
	return REAL(open64)(path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (failio_creates(dirfd, path, flags))
		FAIL_ENOSPC(-1);
	return REAL(openat)(dirfd, path, flags, mode);
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	if (failio_creates(dirfd, path, flags))
		FAIL_ENOSPC(-1);
	return REAL(openat64)(dirfd, path, flags, mode);
}

int
rename(const char *from, const char *to)
{
	if (failio_path_hit(to, FAIL_RENAME))
		FAIL_ENOSPC(-1);
	return REAL(rename)(from, to);
}

int
renameat(int fromfd, const char *from, int tofd, const char *to)
{
	if (failio_at_hit(tofd, to, FAIL_RENAME))
		FAIL_ENOSPC(-1);
	return REAL(renameat)(fromfd, from, tofd, to);
}
