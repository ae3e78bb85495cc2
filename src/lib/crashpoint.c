/* SPDX-License-Identifier: MIT */
/*
 * SIGKILL at a named point when CERTHERD_CRASHPOINT asks for it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certherd/crashpoint.h"
#include "certherd/log.h"

void
ch_crashpoint(const char *name)
{
	static const char *want;
	static int init;

	if (!init) {
		want = getenv("CERTHERD_CRASHPOINT");
		init = 1;
	}
	if (want && strcmp(want, name) == 0) {
		ch_log_warning("Crash point %s reached: killing myself", name);
		kill(getpid(), SIGKILL);
	}
}
