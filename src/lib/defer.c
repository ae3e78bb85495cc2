/* SPDX-License-Identifier: MIT */
/*
 * ch_defer(): run a callback on the next turn of the event loop.
 */
#include <errno.h>
#include <stdlib.h>

#include <event2/event.h>

#include "certherd/defer.h"

struct defer {
	void (*fn)(void *arg);
	void *arg;
};

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct defer *d = arg;
	void (*fn)(void *) = d->fn;
	void *fnarg = d->arg;

	free(d);
	fn(fnarg);
}

int
ch_defer(struct event_base *base, void (*fn)(void *arg), void *arg)
{
	struct timeval zero = { 0, 0 };
	struct defer *d = malloc(sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->fn = fn;
	d->arg = arg;
	if (event_base_once(base, -1, EV_TIMEOUT, defer_cb, d, &zero) < 0) {
		free(d);
		return -ENOMEM;
	}
	return 0;
}
