/* SPDX-License-Identifier: MIT */
/*
 * The service manager protocol: READY=1 once the first scheduling pass is
 * armed, STATUS= with a one-line summary, and WATCHDOG=1 pings sent from a
 * timer on the event loop, and only while the scheduler turns, so a
 * wedged loop or a stalled scheduler stops the pings.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "ch-config.h"
#include "certherd/log.h"
#include "certherd/util.h"
#include "daemon.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static struct event *watchdog_ev;

void
notify_ready(struct daemon *d)
{
#if HAVE_LIBSYSTEMD
	/* The full summary reads every certificate; it follows with the first
	 * status refresh, so that READY=1 is not held back by it. */
	sd_notifyf(0, "READY=1\nSTATUS=started, %zu certificates", d->gen->conf->n_certs);
#endif
}

void
notify_status(struct daemon *d)
{
#if HAVE_LIBSYSTEMD
	if (!getenv("NOTIFY_SOCKET"))
		return;
	_cleanup_free_ char *line = daemon_status_line(d);

	sd_notifyf(0, "STATUS=%s", line);
#endif
}

void
notify_stopping(void)
{
#if HAVE_LIBSYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
}

/*
 * Pings only while the scheduler turns (daemon_loop_healthy): a scheduler
 * that stopped while the loop runs on gets the service restarted too.
 */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	static bool held;
	int64_t age;

	if (!daemon_loop_healthy(d, &age)) {
		if (!held)
			ch_log_error("The scheduler has not run for %llds; holding back the "
				     "watchdog ping",
				     (long long)age);
		held = true;
		notify_status(d);
		return;
	}
	held = false;
#if HAVE_LIBSYSTEMD
	sd_notify(0, "WATCHDOG=1");
#endif
	notify_status(d);
}

int
notify_watchdog_setup(struct daemon *d)
{
#if HAVE_LIBSYSTEMD
	uint64_t usec = 0;
	struct timeval tv;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		usec = 30 * CH_USEC_PER_SEC; /* STATUS= refresh only */
	else
		usec /= 2;
	tv.tv_sec = (time_t)(usec / CH_USEC_PER_SEC);
	tv.tv_usec = (suseconds_t)(usec % CH_USEC_PER_SEC);
	watchdog_ev = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
	if (!watchdog_ev)
		return -1;
	return event_add(watchdog_ev, &tv);
#else
	return 0;
#endif
}

void
notify_watchdog_free(void)
{
#if HAVE_LIBSYSTEMD
	if (watchdog_ev)
		event_free(watchdog_ev);
	watchdog_ev = NULL;
#endif
}
