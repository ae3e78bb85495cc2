/* SPDX-License-Identifier: MIT */
/*
 * Logging: to the journal with structured fields when running under
 * systemd (JOURNAL_STREAM set), to stderr otherwise. The _errno variants
 * return the (negative) error passed in, so callers can
 * "return ch_log_error_errno(r, ...)". "%m" is not used; pass strerror.
 */
#pragma once

#include <syslog.h>

#include "certherd/macro.h"

void ch_log_set_level(int level);
int ch_log_get_level(void);
/* Force the output: 0 = auto, 1 = stderr, 2 = journal. */
void ch_log_set_target(int target);

/* cert and stage may be NULL; they become CERT_NAME= and STAGE= fields. */
int ch_log_full(int level, int err, const char *cert, const char *stage,
		const char *fmt, ...) _printf_(5, 6);

#define ch_log_error(...) ch_log_full(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)
#define ch_log_warning(...) ch_log_full(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define ch_log_notice(...) ch_log_full(LOG_NOTICE, 0, NULL, NULL, __VA_ARGS__)
#define ch_log_info(...) ch_log_full(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define ch_log_debug(...) ch_log_full(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
#define ch_log_error_errno(r, ...) ch_log_full(LOG_ERR, r, NULL, NULL, __VA_ARGS__)
#define ch_log_warning_errno(r, ...) ch_log_full(LOG_WARNING, r, NULL, NULL, __VA_ARGS__)
#define ch_log_debug_errno(r, ...) ch_log_full(LOG_DEBUG, r, NULL, NULL, __VA_ARGS__)
/* With certificate name and stage fields. */
#define ch_log_cert(level, cert, stage, ...) ch_log_full(level, 0, cert, stage, __VA_ARGS__)
