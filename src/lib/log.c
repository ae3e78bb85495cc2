/* SPDX-License-Identifier: MIT */
/*
 * Logging to the journal (with CERT_NAME=, STAGE= and PRIORITY= fields)
 * when stderr is connected to journald, to stderr otherwise. Messages
 * above the configured level are dropped before formatting.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ch-config.h"
#include "certherd/log.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-journal.h>
#endif

static int log_level = LOG_INFO;
static int log_target; /* 0 auto, 1 stderr, 2 journal */
static int log_journal = -1;

void
ch_log_set_level(int level)
{
	log_level = level;
}

int
ch_log_get_level(void)
{
	return log_level;
}

void
ch_log_set_target(int target)
{
	log_target = target;
	log_journal = -1;
}

static bool
log_use_journal(void)
{
#if HAVE_LIBSYSTEMD
	if (log_journal >= 0)
		return log_journal;
	if (log_target == 2)
		return (log_journal = 1);
	if (log_target == 1)
		return (log_journal = 0);
	/* JOURNAL_STREAM is "dev:ino" of stderr when systemd connected it. */
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;
	log_journal = 0;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		log_journal = 1;
	return log_journal;
#else
	return false;
#endif
}

static const char *
log_level_name(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

int
ch_log_full(int level, int err, const char *cert, const char *stage, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (level > log_level)
		return err < 0 ? err : -abs(err);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (log_use_journal()) {
#if HAVE_LIBSYSTEMD
		sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level,
				"SYSLOG_IDENTIFIER=%s", program_invocation_short_name,
				cert ? "CERT_NAME=%s" : "CERT_NAME=", cert ? cert : "",
				stage ? "STAGE=%s" : "STAGE=", stage ? stage : "",
				err ? "ERRNO=%d" : "ERRNO=", err ? abs(err) : 0, NULL);
#endif
	} else {
		struct timespec ts;
		struct tm tm;
		char tbuf[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(tbuf, sizeof(tbuf), "%H:%M:%S", &tm);
		if (cert)
			fprintf(stderr, "%s %s: [%s%s%s] %s\n", tbuf, log_level_name(level), cert,
				stage ? " " : "", stage ? stage : "", msg);
		else
			fprintf(stderr, "%s %s: %s\n", tbuf, log_level_name(level), msg);
	}
	return err < 0 ? err : -abs(err);
}
