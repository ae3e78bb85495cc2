/* SPDX-License-Identifier: MIT */
/*
 * Small helpers used everywhere: scope-bound cleanup, pointer stealing,
 * array sizes and string comparison.
 */
#pragma once

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TAKE_PTR(p)                                                            \
	({                                                                     \
		__typeof__(p) _p_ = (p);                                       \
		(p) = NULL;                                                    \
		_p_;                                                           \
	})

#define TAKE_FD(fd)                                                            \
	({                                                                     \
		int _fd_ = (fd);                                               \
		(fd) = -1;                                                     \
		_fd_;                                                          \
	})

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                \
	static inline void func##p(type *p)                                    \
	{                                                                      \
		if (*p)                                                        \
			func(*p);                                              \
	}

static inline bool
streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static inline bool
streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static inline void
freep(void *p)
{
	free(*(void **)p);
}

static inline void
closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Frees a NULL-terminated string vector; returns NULL. */
static inline char **
ch_strv_free(char **v)
{
	if (!v)
		return NULL;
	for (char **s = v; *s; s++)
		free(*s);
	free(v);
	return NULL;
}

static inline size_t
ch_strv_length(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

static inline void
ch_strv_freep(char ***v)
{
	ch_strv_free(*v);
}
#define _cleanup_strv_free_ _cleanup_(ch_strv_freep)
