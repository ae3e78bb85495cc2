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

/* Formats into e (if non-NULL) and returns r (a negative errno). */
int ch_err_set(struct ch_err *e, int r, const char *fmt, ...) _printf_(3, 4);
/* Drains the OpenSSL error queue, appending its first reason to e. */
int ch_err_set_ssl(struct ch_err *e, int r, const char *what);
