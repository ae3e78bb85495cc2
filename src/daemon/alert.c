/* SPDX-License-Identifier: MIT */
/*
 * Alert conditions and their delivery. The scheduler calls alert_run()
 * every turn; every check_interval it sweeps the inventory (failed
 * deployments, stale endpoints and a rejected configuration at once, the
 * certificates a page per turn) and compares what it finds with the open
 * conditions. A condition is sent when it starts (or gets worse), again
 * every repeat_interval while it lasts, and as resolved once a whole
 * sweep no longer finds it. Open conditions live in the inventory's
 * alerts table, so a restart neither forgets nor re-sends them. Every
 * message goes to every notifier, asynchronously, retried with backoff.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/http.h"
#include "certherd/log.h"
#include "certherd/metrics.h"
#include "certherd/notifier.h"
#include "certherd/util.h"
#include "daemon.h"

#define ALERT_PAGE 1000          /* certificates looked at per scheduler turn */
#define ALERT_RETRY_BASE 5       /* seconds before the first retry of a delivery */
#define ALERT_MAX_ATTEMPTS 6     /* then wait for the next repeat */

struct alert_cond {
	char *key;
	enum ch_alert_kind kind;
	char *cert, *subject;
	char *summary, *detail;
	int level;
	int64_t started_at, last_sent_at;
	unsigned seen; /* the last sweep that found it */
	struct alert_cond *next; /* hash chain */
};

struct alert_delivery {
	struct alerts *al;
	struct generation *gen; /* holds the notifier's options */
	const struct ch_conf_notifier *n;
	enum ch_alert_kind kind;
	enum ch_alert_state state;
	char *key, *cert, *subject, *summary, *detail;
	int64_t started_at, at;
	int attempts;
	bool in_flight;
	struct event *retry;
	LIST_ENTRY(alert_delivery) link;
};

struct notifier_stat {
	char *name;
	uint64_t sent, failures;
	int consecutive;
	char *last_error;
	int64_t last_failure_at, last_ok_at;
};

struct alerts {
	struct daemon *d;
	struct ch_http *http;
	struct alert_cond **buckets;
	size_t n_buckets, n_conds;
	unsigned sweep;
	bool in_sweep;
	char *cursor; /* last certificate name of the sweep so far */
	int64_t next_at;
	int64_t last_sweep_at;
	struct notifier_stat *stats;
	size_t n_stats;
	LIST_HEAD(, alert_delivery) deliveries;
	char host[256];
};

/* ---- open conditions ----------------------------------------------------- */

static struct alert_cond **
cond_slot(struct alerts *al, const char *key)
{
	struct alert_cond **p = &al->buckets[ch_hash64(key) % al->n_buckets];

	while (*p && !streq((*p)->key, key))
		p = &(*p)->next;
	return p;
}

static void
cond_grow(struct alerts *al)
{
	struct alert_cond **old = al->buckets;
	size_t n_old = al->n_buckets;

	if (al->n_buckets && al->n_conds < al->n_buckets)
		return;
	al->n_buckets = n_old ? n_old * 2 : 64;
	al->buckets = ch_xcalloc(al->n_buckets, sizeof(*al->buckets));
	for (size_t i = 0; i < n_old; i++)
		for (struct alert_cond *c = old[i], *nx; c; c = nx) {
			nx = c->next;
			c->next = NULL;
			*cond_slot(al, c->key) = c;
		}
	free(old);
}

static void
cond_free(struct alert_cond *c)
{
	free(c->key);
	free(c->cert);
	free(c->subject);
	free(c->summary);
	free(c->detail);
	free(c);
}

static void
set_str(char **p, const char *s)
{
	if (streq_ptr(*p, s))
		return;
	free(*p);
	*p = s ? ch_xstrdup(s) : NULL;
}

static void
cond_store(struct alerts *al, const struct alert_cond *c)
{
	struct ch_store_alert row = {
		.key = c->key,
		.kind = (char *)ch_alert_kind_to_string(c->kind),
		.cert = c->cert,
		.subject = c->subject,
		.level = c->level,
		.started_at = c->started_at,
		.last_sent_at = c->last_sent_at,
		.detail = c->detail,
	};

	if (store_txn(al->d) == 0)
		ch_store_alert_put(al->d->store, &row);
}

/* ---- delivery ------------------------------------------------------------ */

static struct notifier_stat *
stat_get(struct alerts *al, const char *name)
{
	for (size_t i = 0; i < al->n_stats; i++)
		if (streq(al->stats[i].name, name))
			return &al->stats[i];
	al->stats = realloc(al->stats, (al->n_stats + 1) * sizeof(*al->stats));
	if (!al->stats)
		abort();
	al->stats[al->n_stats] = (struct notifier_stat){ .name = ch_xstrdup(name) };
	return &al->stats[al->n_stats++];
}

static void
delivery_free(struct alert_delivery *dl)
{
	if (!dl)
		return;
	LIST_REMOVE(dl, link);
	if (dl->retry)
		event_free(dl->retry);
	generation_unref(dl->al->d, dl->gen);
	free(dl->key);
	free(dl->cert);
	free(dl->subject);
	free(dl->summary);
	free(dl->detail);
	free(dl);
}

static void delivery_start(struct alert_delivery *dl);

static void
delivery_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	delivery_start(arg);
}

static void
alert_event(struct alerts *al, const char *cert, const char *event, const char *detail)
{
	if (store_txn(al->d) == 0)
		ch_store_event_add(al->d->store, ch_now(), cert, "alert", event, detail);
}

static void
delivery_done(int r, const char *message, void *arg)
{
	struct alert_delivery *dl = arg;
	struct alerts *al = dl->al;
	struct notifier_stat *st = stat_get(al, dl->n->name);
	const char *state = dl->state == CH_ALERT_REPEAT ? "repeat"
							  : ch_alert_state_to_string(dl->state);
	char detail[768];

	dl->in_flight = false;
	snprintf(detail, sizeof(detail), "%s %s to %s: %s", state, dl->key, dl->n->name,
		 message ? message : "");
	if (r >= 0) {
		st->sent++;
		st->consecutive = 0;
		st->last_ok_at = ch_now();
		alert_event(al, dl->cert, "sent", detail);
		ch_log_cert(LOG_INFO, dl->cert, "alert", "Sent %s", detail);
		delivery_free(dl);
		return;
	}
	st->failures++;
	st->consecutive++;
	st->last_failure_at = ch_now();
	set_str(&st->last_error, message);
	alert_event(al, dl->cert, "failed", detail);
	if (dl->attempts >= ALERT_MAX_ATTEMPTS) {
		ch_log_cert(LOG_ERR, dl->cert, "alert",
			    "Giving up sending %s after %d attempts; it is sent again after "
			    "repeat_interval while it lasts",
			    detail, dl->attempts);
		delivery_free(dl);
		return;
	}
	{
		struct timeval tv = { ALERT_RETRY_BASE << (dl->attempts - 1), 0 };

		ch_log_cert(LOG_WARNING, dl->cert, "alert", "Failed to send %s; retrying in %llds",
			    detail, (long long)tv.tv_sec);
		if (!dl->retry)
			dl->retry = evtimer_new(al->d->base, delivery_retry_cb, dl);
		if (!dl->retry || evtimer_add(dl->retry, &tv) < 0)
			delivery_free(dl);
	}
}

static void
delivery_start(struct alert_delivery *dl)
{
	struct alerts *al = dl->al;
	struct ch_notifier_env env = { .base = al->d->base, .http = al->http };
	struct ch_alert a = {
		.kind = dl->kind,
		.state = dl->state,
		.key = dl->key,
		.cert = dl->cert,
		.subject = dl->subject,
		.summary = dl->summary,
		.detail = dl->detail,
		.host = al->host,
		.started_at = dl->started_at,
		.at = dl->at,
	};
	int r;

	dl->attempts++;
	dl->in_flight = true;
	r = dl->n->ops->send(&env, dl->n->opts, &a, delivery_done, dl);
	if (r < 0)
		delivery_done(r, strerror(-r), dl);
}

/* Queues the message about c in state st to every notifier. */
static void
alert_emit(struct alerts *al, const struct alert_cond *c, enum ch_alert_state st, int64_t now)
{
	struct generation *g = al->d->gen;
	const char *state = st == CH_ALERT_REPEAT ? "repeat" : ch_alert_state_to_string(st);
	char detail[640];

	snprintf(detail, sizeof(detail), "%s: %s", c->key, c->summary ? c->summary : "");
	alert_event(al, c->cert, state, detail);
	ch_log_cert(st == CH_ALERT_RESOLVED ? LOG_NOTICE : LOG_WARNING, c->cert, "alert",
		    "Alert %s %s", state, detail);
	for (size_t i = 0; i < g->conf->n_notifiers; i++) {
		const struct ch_conf_notifier *n = &g->conf->notifiers[i];
		struct alert_delivery *dl, *old, *nx;
		enum ch_alert_state this = st;

		/*
		 * A message still waiting for its retry is overtaken by this one;
		 * a start that never got through is still announced as a start.
		 */
		for (old = LIST_FIRST(&al->deliveries); old; old = nx) {
			nx = LIST_NEXT(old, link);
			if (old->in_flight || !streq(old->key, c->key) || !streq(old->n->name, n->name))
				continue;
			if (old->state == CH_ALERT_FIRING && this == CH_ALERT_REPEAT)
				this = CH_ALERT_FIRING;
			delivery_free(old);
		}
		dl = ch_xcalloc(1, sizeof(*dl));
		dl->al = al;
		dl->gen = g;
		g->refs++;
		dl->n = n;
		dl->kind = c->kind;
		dl->state = this;
		dl->key = ch_xstrdup(c->key);
		dl->cert = c->cert ? ch_xstrdup(c->cert) : NULL;
		dl->subject = c->subject ? ch_xstrdup(c->subject) : NULL;
		dl->summary = c->summary ? ch_xstrdup(c->summary) : NULL;
		dl->detail = c->detail ? ch_xstrdup(c->detail) : NULL;
		dl->started_at = c->started_at;
		dl->at = now;
		LIST_INSERT_HEAD(&al->deliveries, dl, link);
		stat_get(al, n->name);
		delivery_start(dl);
	}
}

/* ---- evaluation ---------------------------------------------------------- */

/*
 * A condition found during the sweep: new ones (and ones that got worse,
 * a higher level) are sent at once, open ones again once repeat_interval
 * has passed since they were last sent.
 */
static void
cond_active(struct alerts *al, enum ch_alert_kind kind, const char *cert, const char *subject,
	    int level, const char *summary, const char *detail, int64_t now)
{
	_cleanup_free_ char *key = ch_alert_key(kind, cert, subject);
	struct alert_cond **slot, *c;

	if (!key)
		abort();
	slot = cond_slot(al, key);
	c = *slot;
	if (!c) {
		cond_grow(al);
		c = ch_xcalloc(1, sizeof(*c));
		c->key = TAKE_PTR(key);
		c->kind = kind;
		c->cert = cert && *cert ? ch_xstrdup(cert) : NULL;
		c->subject = subject && *subject ? ch_xstrdup(subject) : NULL;
		c->level = level;
		c->started_at = now;
		*cond_slot(al, c->key) = c;
		al->n_conds++;
		c->seen = al->sweep;
		set_str(&c->summary, summary);
		set_str(&c->detail, detail);
		c->last_sent_at = now;
		cond_store(al, c);
		alert_emit(al, c, CH_ALERT_FIRING, now);
		return;
	}
	c->seen = al->sweep;
	set_str(&c->summary, summary);
	set_str(&c->detail, detail);
	if (level > c->level) {
		c->level = level;
		c->last_sent_at = now;
		cond_store(al, c);
		alert_emit(al, c, CH_ALERT_FIRING, now);
	} else if (now - c->last_sent_at >= al->d->gen->conf->alerts.repeat_interval) {
		c->level = level;
		c->last_sent_at = now;
		cond_store(al, c);
		alert_emit(al, c, CH_ALERT_REPEAT, now);
	} else if (level < c->level) {
		c->level = level;
		cond_store(al, c);
	}
}

struct sweep_ctx {
	struct alerts *al;
	int64_t now;
	const char *last; /* name of the last certificate seen */
	char *last_buf;
};

/* Which warning windows the certificate is inside; 0 = none. */
static int
cert_expiry_level(const struct ch_conf *conf, const struct ch_conf_cert *cc,
		  const struct ch_store_cert *c, int64_t now)
{
	const struct ch_conf_alerts *a = &conf->alerts;
	int64_t left = c->cur_not_after - now;
	/* Windows that open before the planned renewal would always be open. */
	int64_t slack = c->renew_at ? c->cur_not_after - c->renew_at : 0;
	int level = 0;

	if (!c->cur_not_after)
		return 0;
	if (cc && cc->s.warn_before && left < cc->s.warn_before)
		level = 1;
	for (size_t i = 0; i < a->n_warning_windows; i++)
		if (a->warning_windows[i] < slack && left < a->warning_windows[i])
			level = level > (int)i + 1 ? level : (int)i + 1;
	if (left <= 0)
		level = (int)a->n_warning_windows + 2;
	return level;
}

static int
sweep_cert_cb(const struct ch_store_cert *c, void *arg)
{
	struct sweep_ctx *x = arg;
	struct alerts *al = x->al;
	const struct ch_conf *conf = al->d->gen->conf;
	const struct ch_conf_cert *cc;
	char buf[512], t[32], dur[32];
	int level;

	free(x->last_buf);
	x->last_buf = ch_xstrdup(c->name);
	if (!c->wanted)
		return 0;
	cc = ch_conf_find_cert(conf, c->name);
	level = cert_expiry_level(conf, cc, c, x->now);
	if (level > 0) {
		if (c->cur_not_after <= x->now)
			snprintf(buf, sizeof(buf), "certificate %s expired at %s", c->name,
				 ch_format_time(c->cur_not_after, t, sizeof(t)));
		else
			snprintf(buf, sizeof(buf), "certificate %s expires in %s (%s) and is not "
						   "renewed yet",
				 c->name, ch_format_duration(c->cur_not_after - x->now, dur, sizeof(dur)),
				 ch_format_time(c->cur_not_after, t, sizeof(t)));
		cond_active(al, CH_ALERT_EXPIRING, c->name, NULL, level, buf,
			    c->last_error ? c->last_error : c->state, x->now);
	}
	if (!streq_ptr(c->state, "failing"))
		return 0;
	if (c->failures >= conf->alerts.renewal_failures) {
		char detail[640];

		snprintf(buf, sizeof(buf), "renewal of %s keeps failing (%s)", c->name,
			 c->last_outcome ? c->last_outcome : "failed");
		snprintf(detail, sizeof(detail), "%d failures in a row: %s", c->failures,
			 c->last_error ? c->last_error : "no error recorded");
		cond_active(al, CH_ALERT_RENEWAL_FAILING, c->name, NULL, 0, buf, detail, x->now);
	}
	if (streq_ptr(c->last_outcome, "ca-unreachable") || streq_ptr(c->last_outcome, "pending")) {
		bool limited = streq(c->last_outcome, "pending");
		const char *ca = cc && cc->s.ca ? cc->s.ca : "";

		snprintf(buf, sizeof(buf), "CA %s %s renewing %s", ca,
			 limited ? "is rate limiting" : "was unreachable", c->name);
		cond_active(al, limited ? CH_ALERT_CA_RATE_LIMITED : CH_ALERT_CA_UNREACHABLE,
			    c->name, ca, 0, buf, c->last_error, x->now);
	}
	return 0;
}

static int
sweep_dep_cb(const struct ch_store_deployment *dep, void *arg)
{
	struct sweep_ctx *x = arg;
	char buf[512];

	char detail[640];

	snprintf(buf, sizeof(buf), "deployment of %s to %s is failing",
		 dep->cert_name ? dep->cert_name : "?", dep->target);
	snprintf(detail, sizeof(detail), "attempt %d: %s", dep->attempts,
		 dep->last_error ? dep->last_error : "no error recorded");
	cond_active(x->al, CH_ALERT_DEPLOY_FAILED, dep->cert_name, dep->target, 0, buf, detail,
		    x->now);
	return 0;
}

static int
sweep_ep_cb(const struct ch_store_endpoint *e, void *arg)
{
	struct sweep_ctx *x = arg;
	char buf[512], dur[32];

	if (x->now - e->state_since <= x->al->d->gen->conf->stale_grace)
		return 0;
	snprintf(buf, sizeof(buf), "endpoint %s does not serve the newest certificate of %s (%s "
				   "for %s)",
		 e->endpoint, e->cert_name ? e->cert_name : "?", e->state,
		 ch_format_duration(x->now - e->state_since, dur, sizeof(dur)));
	cond_active(x->al, CH_ALERT_ENDPOINT_STALE, e->cert_name, e->endpoint, 0, buf, e->message,
		    x->now);
	return 0;
}

/* The newest rehearsal of a certificate (through its current CA) failed. */
static int
sweep_rehearsal_cb(const struct ch_store_rehearsal *rh, void *arg)
{
	struct sweep_ctx *x = arg;
	const struct ch_conf_cert *cc = ch_conf_find_cert(x->al->d->gen->conf, rh->cert);
	char buf[512], detail[1200];

	if (!cc || !streq_ptr(cc->s.ca, rh->ca))
		return 0;
	snprintf(buf, sizeof(buf), "rehearsal of %s through CA %s failed at %s%s%s", rh->cert,
		 rh->issuer, rh->stage ? rh->stage : "?", rh->target ? " " : "",
		 rh->target ? rh->target : "");
	snprintf(detail, sizeof(detail), "%s rehearsal: %s", rh->trigger,
		 rh->message ? rh->message : "no error recorded");
	cond_active(x->al, CH_ALERT_REHEARSAL_FAILED, rh->cert, rh->ca, 0, buf, detail, x->now);
	return 0;
}

/* Ends a sweep: whatever it did not find has cleared. */
static void
sweep_finish(struct alerts *al, int64_t now)
{
	for (size_t i = 0; i < al->n_buckets; i++) {
		struct alert_cond **p = &al->buckets[i];

		while (*p) {
			struct alert_cond *c = *p;

			if (c->seen == al->sweep) {
				p = &c->next;
				continue;
			}
			*p = c->next;
			al->n_conds--;
			alert_emit(al, c, CH_ALERT_RESOLVED, now);
			if (store_txn(al->d) == 0)
				ch_store_alert_delete(al->d->store, c->key);
			cond_free(c);
		}
	}
	al->in_sweep = false;
	free(al->cursor);
	al->cursor = NULL;
	al->last_sweep_at = now;
	al->next_at = now + al->d->gen->conf->alerts.check_interval;
}

/* One step of the sweep; called by the scheduler every turn. */
void
alert_run(struct daemon *d)
{
	struct alerts *al = d->alerts;
	int64_t now = ch_now();
	struct sweep_ctx x = { .al = al, .now = now };
	int r;

	if (!al || now < al->next_at || d->stopping)
		return;
	if (!al->in_sweep) {
		al->in_sweep = true;
		al->sweep++;
		store_flush(d);
		ch_store_deployment_foreach_failed(d->store, sweep_dep_cb, &x);
		ch_store_endpoint_foreach_problem(d->store, sweep_ep_cb, &x);
		ch_store_rehearsal_foreach_failing(d->store, sweep_rehearsal_cb, &x);
		if (d->conf_rejected_at) {
			char buf[256];
			_cleanup_free_ char *first =
				d->conf_errors.n ? ch_conf_error_format(&d->conf_errors.v[0]) : NULL;

			snprintf(buf, sizeof(buf), "the configuration reloaded from %s was rejected "
						   "(%zu errors); still running the previous one",
				 d->conf_path, d->conf_errors.n);
			cond_active(al, CH_ALERT_CONFIG_REJECTED, NULL, NULL, 0, buf, first, now);
		}
	}
	r = ch_store_cert_foreach_page(d->store, al->cursor ? al->cursor : "", ALERT_PAGE,
				       sweep_cert_cb, &x);
	if (x.last_buf) {
		free(al->cursor);
		al->cursor = TAKE_PTR(x.last_buf);
	}
	if (r < 0) {
		/* Try again later; conditions stay as they are. */
		ch_log_warning("Alerts: cannot read the inventory: %s", strerror(-r));
		al->in_sweep = false;
		al->sweep--;
		free(al->cursor);
		al->cursor = NULL;
		al->next_at = now + d->gen->conf->alerts.check_interval;
		return;
	}
	if (r < ALERT_PAGE)
		sweep_finish(al, now);
	else
		al->next_at = now; /* the next page on the next turn */
}

int64_t
alert_next_at(struct daemon *d)
{
	return d->alerts ? d->alerts->next_at : 0;
}

/* ---- start-up, status, metrics ------------------------------------------- */

static int
load_cb(const struct ch_store_alert *row, void *arg)
{
	struct alerts *al = arg;
	enum ch_alert_kind kind = ch_alert_kind_from_string(row->kind);
	struct alert_cond *c;

	if ((int)kind < 0 || !row->key || *cond_slot(al, row->key))
		return 0;
	cond_grow(al);
	c = ch_xcalloc(1, sizeof(*c));
	c->key = ch_xstrdup(row->key);
	c->kind = kind;
	c->cert = row->cert ? ch_xstrdup(row->cert) : NULL;
	c->subject = row->subject ? ch_xstrdup(row->subject) : NULL;
	c->detail = row->detail ? ch_xstrdup(row->detail) : NULL;
	c->summary = ch_xstrdup(row->key);
	c->level = row->level;
	c->started_at = row->started_at;
	c->last_sent_at = row->last_sent_at;
	*cond_slot(al, c->key) = c;
	al->n_conds++;
	return 0;
}

int
alert_setup(struct daemon *d)
{
	struct alerts *al = ch_xcalloc(1, sizeof(*al));
	int r;

	al->d = d;
	LIST_INIT(&al->deliveries);
	cond_grow(al);
	if (gethostname(al->host, sizeof(al->host) - 1) < 0)
		snprintf(al->host, sizeof(al->host), "localhost");
	r = ch_http_new(d->base, NULL, &al->http);
	if (r < 0) {
		free(al->buckets);
		free(al);
		return ch_log_error_errno(r, "Cannot set up the alert HTTP client: %s",
					  strerror(-r));
	}
	r = ch_store_alert_foreach(d->store, load_cb, al);
	if (r < 0)
		ch_log_warning("Cannot read the open alerts from the inventory: %s", strerror(-r));
	if (al->n_conds)
		ch_log_notice("%zu alerts open since before the restart", al->n_conds);
	d->alerts = al;
	return 0;
}

void
alert_free(struct daemon *d)
{
	struct alerts *al = d->alerts;
	struct alert_delivery *dl;

	if (!al)
		return;
	/* Requests still running are cancelled without their callbacks. */
	al->http = ch_http_free(al->http);
	while ((dl = LIST_FIRST(&al->deliveries)))
		delivery_free(dl);
	for (size_t i = 0; i < al->n_buckets; i++)
		for (struct alert_cond *c = al->buckets[i], *nx; c; c = nx) {
			nx = c->next;
			cond_free(c);
		}
	free(al->buckets);
	for (size_t i = 0; i < al->n_stats; i++) {
		free(al->stats[i].name);
		free(al->stats[i].last_error);
	}
	free(al->stats);
	free(al->cursor);
	free(al);
	d->alerts = NULL;
}

/*
 * Adds "alerts" (open conditions, the last sweep) and "notifiers_failing"
 * to a status reply; a failing notifier makes an "ok" health "degraded".
 */
void
alert_status_json(struct daemon *d, json_t *status)
{
	struct alerts *al = d->alerts;
	json_t *failing = json_array();
	const struct ch_conf *conf = d->gen->conf;

	if (!al) {
		json_decref(failing);
		return;
	}
	for (size_t i = 0; i < conf->n_notifiers; i++) {
		struct notifier_stat *st = stat_get(al, conf->notifiers[i].name);

		if (st->consecutive > 0)
			json_array_append_new(
				failing, json_pack("{s:s,s:s,s:I,s:i,s:s?,s:I,s:I}", "name", st->name,
						   "type", conf->notifiers[i].type, "failures",
						   (json_int_t)st->failures, "consecutive",
						   st->consecutive, "error", st->last_error,
						   "last_failure_at", (json_int_t)st->last_failure_at,
						   "last_ok_at", (json_int_t)st->last_ok_at));
	}
	json_object_set_new(status, "alerts",
			    json_pack("{s:I,s:I,s:I,s:i}", "open", (json_int_t)al->n_conds,
				      "last_sweep_at", (json_int_t)al->last_sweep_at, "sweeps",
				      (json_int_t)al->sweep, "notifiers", (int)conf->n_notifiers));
	if (json_array_size(failing) &&
	    streq_ptr(json_string_value(json_object_get(status, "health")), "ok"))
		json_object_set_new(status, "health", json_string("degraded"));
	json_object_set_new(status, "notifiers_failing", failing);
}

void
alert_metrics(struct daemon *d, struct ch_metrics_buf *b)
{
	struct alerts *al = d->alerts;
	const struct ch_conf *conf = d->gen->conf;

	if (!al)
		return;
	ch_metrics_family(b, "certherd_notifier_failures_total", "counter",
			  "Alert deliveries that failed, by notifier (each retry counts).");
	for (size_t i = 0; i < conf->n_notifiers; i++)
		ch_metrics_sample_int(b, "certherd_notifier_failures_total",
				      (const char *[]){ "notifier", conf->notifiers[i].name, NULL },
				      (int64_t)stat_get(al, conf->notifiers[i].name)->failures);
	ch_metrics_family(b, "certherd_alerts_open", "gauge",
			  "Alert conditions open (sent and not yet resolved).");
	ch_metrics_sample_int(b, "certherd_alerts_open", NULL, (int64_t)al->n_conds);
}
