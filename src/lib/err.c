/* SPDX-License-Identifier: MIT */
/*
 * struct ch_err: a message buffer that travels with a -errno return.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "certherd/err.h"
#include "certherd/log.h"

int
ch_err_set(struct ch_err *e, int r, const char *fmt, ...)
{
	va_list ap;

	if (e) {
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
	return r;
}

int
ch_err_set_ssl(struct ch_err *e, int r, const char *what)
{
	unsigned long code, first = 0;
	char buf[256] = "";

	while ((code = ERR_get_error()) != 0) {
		char tmp[256];

		ERR_error_string_n(code, tmp, sizeof(tmp));
		ch_log_debug("OpenSSL: %s: %s", what, tmp);
		if (!first) {
			first = code;
			const char *reason = ERR_reason_error_string(code);
			snprintf(buf, sizeof(buf), "%s", reason ? reason : tmp);
		}
	}
	if (first)
		return ch_err_set(e, r, "%s: %s", what, buf);
	return ch_err_set(e, r, "%s", what);
}
