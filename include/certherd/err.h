/* SPDX-License-Identifier: MIT */
/*
 * A caller-provided buffer for a human-readable error message that
 * travels next to a negative-errno return value.
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "certherd/macro.h"

struct ch_err {
	char msg[1024];
};

/* Formats into e (if non-NULL). */
void ch_err_setf(struct ch_err *e, const char *fmt, ...) _printf_(2, 3);
/* Drains the OpenSSL error queue into e: what, then the first reason. */
void ch_err_setf_ssl(struct ch_err *e, const char *what);

/*
 * ch_err_set(e, r, fmt, ...) formats into e and returns r (a negative
 * errno); ch_err_set_ssl(e, r, what) does so from the OpenSSL error
 * queue. r is evaluated first, so "-errno" is the caller's errno. Macros
 * rather than functions so that the static analyzer sees the value
 * returned in "return ch_err_set(...)" and follows the error paths.
 */
#define ch_err_set(e, r, ...)                                                  \
	({                                                                     \
		int ch_err_r_ = (r);                                           \
		ch_err_setf((e), __VA_ARGS__);                                 \
		ch_err_r_;                                                     \
	})
#define ch_err_set_ssl(e, r, what)                                             \
	({                                                                     \
		int ch_err_r_ = (r);                                           \
		ch_err_setf_ssl((e), (what));                                  \
		ch_err_r_;                                                     \
	})
