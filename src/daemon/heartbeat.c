/* SPDX-License-Identifier: MIT */
/*
 * The dead man's switch: an HTTP request to heartbeat.url every interval,
 * sent only while the scheduler loop is healthy, that is while it has
 * turned recently (d->last_loop_mono). The systemd watchdog (notify.c) asks
 * the same question. An outside monitor that stops hearing from certherdd
 * pages on-call, which covers a dead host, a dead daemon and a wedged
 * scheduler alike.
 *
 * Test hook, never for production: with CERTHERD_TEST_WEDGE=<file> in the
 * environment, every scheduler pass does nothing while that file exists,
 * so the scheduler stops turning while the rest of the loop runs on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/http.h"
#include "certherd/log.h"
#include "certherd/util.h"
#include "daemon.h"

struct heartbeat {
	struct daemon *d;
	struct ch_http *http;
	struct event *timer;
	int64_t interval; /* armed with */
	bool in_flight;
	bool withheld;    /* the last one was held back */
	int64_t last_sent_at, last_ok_at, last_failure_at;
	uint64_t sent, failures, held;
	char last_error[256];
};

/* The longest the scheduler sleeps between passes, seconds. */
int64_t
sched_tick(struct daemon *d)
{
	int64_t t = d->gen->conf->alerts.check_interval;

	return t > 0 && t < 60 ? t : 60;
}

int64_t
sched_loop_age(struct daemon *d)
{
	int64_t since = d->last_loop_mono ? d->last_loop_mono : d->started_mono;

	/* Monotonic: a wall-clock step (NTP, a clock set by hand) is not a stalled loop. */
	return (ch_mono_usec() - since) / CH_USEC_PER_SEC;
}

bool
daemon_loop_healthy(struct daemon *d, int64_t *ret_age)
{
	int64_t age = sched_loop_age(d);

	if (ret_age)
		*ret_age = age;
	return age <= 2 * sched_tick(d) + 2;
}

bool
sched_wedged(struct daemon *d)
{
	static const char *path;
	static bool looked, logged;
	struct timeval tv = { 1, 0 };

	if (!looked) {
		path = getenv("CERTHERD_TEST_WEDGE");
		looked = true;
	}
	if (!path || !*path || access(path, F_OK) < 0) {
		if (logged)
			ch_log_warning("Test hook: %s is gone, the scheduler runs again", path);
		logged = false;
		return false;
	}
	if (!logged)
		ch_log_warning("Test hook: %s exists, the scheduler is wedged", path);
	logged = true;
	evtimer_add(d->timer, &tv);
	return true;
}

static void
heartbeat_done(const struct ch_http_response *resp, void *arg)
{
	struct heartbeat *hb = arg;

	hb->in_flight = false;
	if (resp->error == 0 && resp->status >= 200 && resp->status < 300) {
		hb->last_ok_at = ch_now();
		hb->last_error[0] = '\0';
		ch_log_debug("Heartbeat sent: HTTP %ld", resp->status);
		return;
	}
	hb->failures++;
	hb->last_failure_at = ch_now();
	if (resp->error < 0)
		snprintf(hb->last_error, sizeof(hb->last_error), "%s", resp->errmsg);
	else
		snprintf(hb->last_error, sizeof(hb->last_error), "HTTP %ld", resp->status);
	char shown[256];

	ch_log_warning("Heartbeat to %s failed: %s",
		       ch_url_redact(hb->d->gen->conf->heartbeat.url, shown, sizeof(shown)),
		       hb->last_error);
}

static void
heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct heartbeat *hb = arg;
	struct daemon *d = hb->d;
	const struct ch_conf_heartbeat *c = &d->gen->conf->heartbeat;
	int64_t age;
	int r;

	if (!c->url || hb->in_flight || d->stopping)
		return;
	if (!daemon_loop_healthy(d, &age)) {
		if (!hb->withheld)
			ch_log_error("The scheduler has not run for %llds; heartbeats are held back "
				     "until it does",
				     (long long)age);
		hb->withheld = true;
		hb->held++;
		return;
	}
	if (hb->withheld)
		ch_log_notice("The scheduler runs again; heartbeats resume");
	hb->withheld = false;
	struct ch_http_request req = {
		.method = c->method ? c->method : "GET",
		.url = c->url,
		.body = "",
		.body_len = 0,
		.timeout_ms = c->timeout * 1000,
	};
	r = ch_http_start(hb->http, &req, heartbeat_done, hb, NULL);
	if (r < 0) {
		hb->failures++;
		snprintf(hb->last_error, sizeof(hb->last_error), "%s", strerror(-r));
		return;
	}
	hb->in_flight = true;
	hb->sent++;
	hb->last_sent_at = ch_now();
}

/* Starts, re-arms (after a reload changed the interval) or stops the heartbeat. */
int
heartbeat_setup(struct daemon *d)
{
	const struct ch_conf_heartbeat *c = &d->gen->conf->heartbeat;
	struct heartbeat *hb = d->heartbeat;
	struct timeval tv;
	int r;

	if (!c->url) {
		if (hb)
			event_del(hb->timer);
		return 0;
	}
	if (!hb) {
		hb = ch_xcalloc(1, sizeof(*hb));
		hb->d = d;
		r = ch_http_new(d->base, NULL, &hb->http);
		if (r < 0) {
			free(hb);
			return ch_log_error_errno(r, "Cannot set up the heartbeat: %s", strerror(-r));
		}
		hb->timer = event_new(d->base, -1, EV_PERSIST, heartbeat_cb, hb);
		d->heartbeat = hb;
	}
	if (hb->interval == c->interval && evtimer_pending(hb->timer, NULL))
		return 0;
	hb->interval = c->interval;
	tv.tv_sec = (time_t)c->interval;
	tv.tv_usec = 0;
	return event_add(hb->timer, &tv);
}

void
heartbeat_free(struct daemon *d)
{
	struct heartbeat *hb = d->heartbeat;

	if (!hb)
		return;
	event_free(hb->timer);
	ch_http_free(hb->http);
	free(hb);
	d->heartbeat = NULL;
}

void
heartbeat_status_json(struct daemon *d, json_t *status)
{
	struct heartbeat *hb = d->heartbeat;
	const struct ch_conf_heartbeat *c = &d->gen->conf->heartbeat;
	int64_t age;
	bool healthy = daemon_loop_healthy(d, &age);

	json_object_set_new(status, "scheduler",
			    json_pack("{s:b,s:I,s:I}", "healthy", healthy, "last_loop_at",
				      (json_int_t)d->last_loop_at, "age", (json_int_t)age));
	if (!hb || !c->url)
		return;
	char shown[256];

	json_object_set_new(
		status, "heartbeat",
		json_pack("{s:s,s:I,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "url",
			  ch_url_redact(c->url, shown, sizeof(shown)), "interval",
			  (json_int_t)c->interval, "withheld", hb->withheld, "sent",
			  (json_int_t)hb->sent, "held", (json_int_t)hb->held, "failures",
			  (json_int_t)hb->failures, "last_sent_at", (json_int_t)hb->last_sent_at,
			  "last_ok_at", (json_int_t)hb->last_ok_at, "last_failure_at",
			  (json_int_t)hb->last_failure_at, "error",
			  hb->last_error[0] ? hb->last_error : NULL));
}
