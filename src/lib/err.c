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

void
ch_err_setf(struct ch_err *e, const char *fmt, ...)
{
	va_list ap;

	if (e) {
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
	}
}

void
ch_err_setf_ssl(struct ch_err *e, const char *what)
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
		ch_err_setf(e, "%s: %s", what, buf);
	else
		ch_err_setf(e, "%s", what);
}
