/* SPDX-License-Identifier: MIT */
/*
 * The verification stage: a real TLS handshake to every endpoint a
 * certificate lists, after each deployment and every verify_interval,
 * whatever the deployment reported. The served leaf is compared with the
 * newest issuance: verified, stale (an older one of ours), foreign (one
 * we never issued), unreachable or handshake-error. An endpoint that
 * stays unverified past stale_grace makes the daemon unhealthy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/log.h"
#include "certherd/sched.h"
#include "certherd/util.h"
#include "certherd/verify.h"
#include "daemon.h"

#define PROBE_TIMEOUT_USEC (10 * CH_USEC_PER_SEC)
#define PROBE_LEASE 60
/*
 * A server needs a moment to load what was just deployed (nginx starts new
 * workers, HAProxy commits a transaction). For this long after the last
 * deployment attempt (or stale_grace, when shorter) an endpoint not yet
 * serving the new certificate is "pending" and checked again every
 * PROBE_SETTLE_RECHECK seconds, instead of being reported stale or foreign.
 */
#define PROBE_SETTLE 30
#define PROBE_SETTLE_RECHECK 2

struct probe_job {
	struct daemon *d;
	struct generation *gen;
	int64_t endpoint_id;
};

static void
probe_job_free(struct probe_job *j)
{
	busy_del(j->d->busy_probes, &j->d->n_busy_probes, j->endpoint_id);
	generation_unref(j->d, j->gen);
	free(j);
}

static int
probe_last_attempt_cb(const struct ch_store_deployment *dep, void *arg)
{
	int64_t *last = arg;

	if (dep->attempted_at > *last)
		*last = dep->attempted_at;
	return 0;
}

static int
probe_mark_verified_cb(const struct ch_store_deployment *dep, void *arg)
{
	struct daemon *d = arg;
	struct ch_store_deployment u = { .id = dep->id,
					 .state = NULL,
					 .attempted_at = dep->attempted_at,
					 .succeeded_at = dep->succeeded_at,
					 .verified_at = ch_now(),
					 .next_at = dep->next_at,
					 .attempts = dep->attempts,
					 .last_error = dep->last_error };

	if (streq(dep->state, "deployed"))
		ch_store_deployment_update(d->store, &u);
	return 0;
}

/* The next periodic check, spread by a deterministic jitter. */
static int64_t
probe_next(struct daemon *d, const struct ch_store_endpoint *e, int64_t now)
{
	int64_t interval = d->gen->conf->verify_interval;

	return now + interval - ch_sched_jitter(e->endpoint, (uint64_t)e->id, interval / 10);
}

/* Judges what an endpoint served against the certificate's issuances. */
static void
probe_judge(struct daemon *d, const struct ch_store_cert *c, const struct ch_verify_outcome *o,
	    const char *trust, const char **ret_state, char *msg, size_t msglen)
{
	struct ch_store_issuance cur = { 0 }, old = { 0 };
	char t[32];

	switch (o->result) {
	case CH_VERIFY_UNREACHABLE:
		*ret_state = "unreachable";
		snprintf(msg, msglen, "%s", o->message);
		return;
	case CH_VERIFY_HANDSHAKE_ERROR:
		*ret_state = "handshake-error";
		snprintf(msg, msglen, "%s", o->message);
		return;
	default:
		break;
	}
	if (c->current_issuance && ch_store_issuance_get(d->store, c->current_issuance, &cur) == 0 &&
	    streq_ptr(cur.fingerprint, o->fingerprint)) {
		if (trust && !o->trusted) {
			*ret_state = "handshake-error";
			snprintf(msg, msglen,
				 "serves serial %s but its chain does not verify against %s: %s",
				 o->serial, trust, o->message);
		} else {
			*ret_state = "verified";
			snprintf(msg, msglen, "serves serial %s", o->serial);
		}
	} else if (ch_store_issuance_get_by_serial(d->store, o->serial, &old) == 0 &&
		   old.cert_id == c->id) {
		*ret_state = "stale";
		snprintf(msg, msglen, "serves older serial %s (expires %s) instead of %s", o->serial,
			 ch_format_time(old.not_after, t, sizeof(t)), c->cur_serial ? c->cur_serial : "-");
	} else {
		*ret_state = "foreign";
		snprintf(msg, msglen, "serves serial %s, which certherd did not issue for %s",
			 o->serial, c->name);
	}
	ch_store_issuance_done(&cur);
	ch_store_issuance_done(&old);
}

static void
probe_done(const struct ch_verify_outcome *o, void *arg)
{
	struct probe_job *j = arg;
	struct daemon *d = j->d;
	struct ch_store_endpoint e = { 0 };
	struct ch_store_cert c = { 0 };
	const struct ch_conf_cert *cc;
	const char *state = "unknown";
	bool settling = false;
	char msg[768];
	int64_t now = ch_now();

	store_txn(d);
	if (ch_store_endpoint_get(d->store, j->endpoint_id, &e) < 0 ||
	    ch_store_cert_get_by_id(d->store, e.cert_id, &c) < 0)
		goto out;
	cc = ch_conf_find_cert(d->gen->conf, c.name);
	probe_judge(d, &c, o, cc ? cc->s.verify_trust : NULL, &state, msg, sizeof(msg));
	if (!streq(state, "verified") && c.current_issuance) {
		int64_t last = 0;

		ch_store_deployment_foreach_for_issuance(d->store, c.current_issuance,
							 probe_last_attempt_cb, &last);
		if (last && now - last < (d->gen->conf->stale_grace < PROBE_SETTLE ? d->gen->conf->stale_grace : PROBE_SETTLE)) {
			settling = true;
			state = "pending";
		}
	}
	if (!streq_ptr(e.state, state)) {
		char detail[1024];

		snprintf(detail, sizeof(detail), "%s: %s", e.endpoint, msg);
		ch_store_event_add(d->store, now, c.name, "verify", state, detail);
		ch_log_cert(streq(state, "verified")  ? LOG_NOTICE
			    : settling			? LOG_INFO
							: LOG_WARNING,
			    c.name, "verify",
			    "Endpoint %s is %s: %s", e.endpoint, state, msg);
		free(e.state);
		e.state = ch_xstrdup(state);
		e.state_since = now;
	}
	free(e.serial);
	e.serial = o->result == CH_VERIFY_SERVED ? ch_xstrdup(o->serial) : NULL;
	free(e.fingerprint);
	e.fingerprint = o->result == CH_VERIFY_SERVED ? ch_xstrdup(o->fingerprint) : NULL;
	e.not_after = o->result == CH_VERIFY_SERVED ? o->not_after : 0;
	free(e.message);
	e.message = ch_xstrdup(msg);
	e.checked_at = now;
	if (streq(state, "verified")) {
		e.verified_at = now;
		if (c.current_issuance)
			ch_store_deployment_foreach_for_issuance(d->store, c.current_issuance,
								 probe_mark_verified_cb, d);
	}
	e.next_at = settling ? now + PROBE_SETTLE_RECHECK : probe_next(d, &e, now);
	ch_store_endpoint_update(d->store, &e);
out:
	ch_store_endpoint_done(&e);
	ch_store_cert_done(&c);
	probe_job_free(j);
	sched_kick(d);
}

/* Starts the check of one endpoint; the row is leased while it runs. */
static void
probe_start(struct daemon *d, struct ch_store_endpoint *e)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, e->cert_name);
	struct ch_verify_request req = { .timeout_usec = PROBE_TIMEOUT_USEC };
	_cleanup_free_ char *host = NULL;
	struct probe_job *j;
	int64_t now = ch_now();
	int r;

	store_txn(d);
	if (!cc || ch_verify_parse_endpoint(e->endpoint, &host, &req.port) < 0) {
		/* No longer configured: the next sync removes it. */
		e->next_at = 0;
		ch_store_endpoint_update(d->store, e);
		return;
	}
	req.host = host;
	req.sni = cc->s.verify_sni ? cc->s.verify_sni
				   : (cc->dns_names && cc->dns_names[0] ? cc->dns_names[0] : NULL);
	req.trust_file = cc->s.verify_trust;
	e->next_at = now + PROBE_LEASE;
	ch_store_endpoint_update(d->store, e);

	j = ch_xcalloc(1, sizeof(*j));
	j->d = d;
	j->gen = d->gen;
	j->gen->refs++;
	j->endpoint_id = e->id;
	busy_add(&d->busy_probes, &d->n_busy_probes, &d->cap_busy_probes, e->id);
	r = ch_verify_start(d->base, &req, probe_done, j);
	if (r < 0) {
		ch_log_cert(LOG_ERR, e->cert_name, "verify", "Cannot check %s: %s", e->endpoint,
			    strerror(-r));
		e->next_at = probe_next(d, e, now);
		ch_store_endpoint_update(d->store, e);
		probe_job_free(j);
	}
}

void
probe_timer_run(struct daemon *d)
{
	int64_t now = ch_now();
	int started = 0;

	while ((int64_t)d->n_busy_probes < d->gen->conf->concurrency && started < 1024) {
		struct ch_store_endpoint e = { 0 };

		if (ch_store_endpoint_next_due(d->store, &e) < 0)
			break;
		if (e.next_at > now) {
			ch_store_endpoint_done(&e);
			break;
		}
		if (busy_has(d->busy_probes, d->n_busy_probes, e.id)) {
			store_txn(d);
			e.next_at = now + PROBE_LEASE;
			ch_store_endpoint_update(d->store, &e);
		} else
			probe_start(d, &e);
		started++;
		ch_store_endpoint_done(&e);
	}
}

/* Makes every endpoint of a certificate due shortly, e.g. after a deployment. */
void
probe_soon(struct daemon *d, const char *cert)
{
	struct ch_store_cert c = { 0 };

	if (ch_store_cert_get(d->store, cert, &c) < 0)
		return;
	store_txn(d);
	/* A second for the reloaded service to pick the files up. */
	ch_store_endpoint_due_for_cert(d->store, c.id, ch_now() + 1);
	ch_store_cert_done(&c);
}

/* Brings the endpoint rows of a certificate in line with its configuration. */
struct probe_sync {
	struct daemon *d;
	const struct ch_conf_cert *cc;
};

static int
probe_prune_cb(const struct ch_store_endpoint *e, void *arg)
{
	struct probe_sync *ps = arg;

	for (char **p = ps->cc ? ps->cc->s.endpoints : NULL; p && *p; p++)
		if (streq(*p, e->endpoint))
			return 0;
	ch_store_endpoint_delete(ps->d->store, e->id);
	return 0;
}

void
probe_sync_cert(struct daemon *d, int64_t cert_id, const struct ch_conf_cert *cc)
{
	struct probe_sync ps = { d, cc };
	int64_t now = ch_now();

	store_txn(d);
	ch_store_endpoint_foreach_for_cert(d->store, cert_id, probe_prune_cb, &ps);
	for (char **p = cc ? cc->s.endpoints : NULL; p && *p; p++)
		ch_store_endpoint_ensure(d->store, cert_id, *p, now);
}
