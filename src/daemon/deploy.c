/* SPDX-License-Identifier: MIT */
/*
 * Deployments: pushing an issuance to each of its certificate's targets.
 * Each (issuance, target) pair is a row of its own with its own attempts,
 * backoff and last error, so one failing target never holds up another.
 * A run in flight keeps state pending with a lease in next_at; a restart
 * makes leased rows due again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/crashpoint.h"
#include "certherd/crypto.h"
#include "certherd/log.h"
#include "certherd/sched.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "daemon.h"

struct deploy_job {
	struct daemon *d;
	struct generation *gen;
	int64_t dep_id;
	int64_t issuance_id;
	char *target;
	char *cert_name;
	char *serial;
	char *cert_pem;
	char *chain_pem;
	char *key_pem;
	size_t key_len;
	char *dir;
};

static void deploy_wake_later(struct daemon *d, int64_t issuance_id, const char *cert,
			      const char *target);

static void
deploy_job_free(struct deploy_job *j)
{
	if (!j)
		return;
	busy_del(j->d->busy_deps, &j->d->n_busy_deps, j->dep_id);
	generation_unref(j->d, j->gen);
	free(j->target);
	free(j->cert_name);
	free(j->serial);
	free(j->cert_pem);
	free(j->chain_pem);
	if (j->key_pem)
		ch_secret_free(j->key_pem, j->key_len);
	free(j->dir);
	free(j);
}

static void
deploy_record(struct daemon *d, int64_t issuance_id, const char *target, const char *cert,
	      int r, const char *message)
{
	struct ch_store_deployment dep = { 0 };
	int64_t now = ch_now();

	metrics_count_deployment(d, target, r >= 0 ? "deployed" : "failed");
	store_txn(d);
	if (ch_store_deployment_get(d->store, issuance_id, target, &dep) < 0)
		return;
	if (streq(dep.state, "superseded")) {
		ch_store_deployment_done(&dep);
		return;
	}
	free(dep.state);
	free(dep.last_error);
	if (r >= 0) {
		dep.state = strdup("deployed");
		dep.succeeded_at = now;
		dep.next_at = 0;
		dep.last_error = NULL;
		ch_log_cert(LOG_NOTICE, cert, "deploy", "Deployed to %s: %s", target, message);
	} else {
		int64_t delay = ch_sched_backoff(target, dep.attempts);
		char buf[32];

		dep.state = strdup("failed");
		dep.next_at = now + delay;
		dep.last_error = strdup(message);
		ch_log_cert(LOG_ERR, cert, "deploy", "Deployment to %s failed: %s; retrying in %s",
			    target, message, ch_format_duration(delay, buf, sizeof(buf)));
	}
	ch_store_deployment_update(d->store, &dep);
	ch_store_event_add(d->store, now, cert, "deploy", r >= 0 ? "deployed" : "deploy-failed",
			   message);
	ch_store_deployment_done(&dep);
	deploy_wake_later(d, issuance_id, cert, target);
	/* Whatever the target reported, check what the endpoints now serve. */
	probe_soon(d, cert);
}

/*
 * Targets of a certificate deploy in the order the configuration lists
 * them (files before the reload that picks them up); a target's first
 * attempt holds up the next one, but a failed target does not, nor does
 * its retry while it runs (a retry that hangs until its timeout would
 * otherwise park the next target's own retry for a whole lease).
 */
static bool
deploy_waits_for_earlier(struct daemon *d, const struct ch_store_deployment *dep)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, dep->cert_name);

	if (!cc)
		return false;
	for (char **t = cc->s.targets; t && *t && !streq(*t, dep->target); t++) {
		struct ch_store_deployment e = { 0 };
		bool wait;

		if (ch_store_deployment_get(d->store, dep->issuance_id, *t, &e) < 0)
			continue;
		wait = streq(e.state, "pending") && e.attempts <= 1;
		ch_store_deployment_done(&e);
		if (wait)
			return true;
	}
	return false;
}

/* Makes the targets after `target` that were waiting for it due now. */
static void
deploy_wake_later(struct daemon *d, int64_t issuance_id, const char *cert, const char *target)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, cert);
	bool after = false;

	if (!cc)
		return;
	for (char **t = cc->s.targets; t && *t; t++) {
		struct ch_store_deployment e = { 0 };

		if (streq(*t, target)) {
			after = true;
			continue;
		}
		if (!after || ch_store_deployment_get(d->store, issuance_id, *t, &e) < 0)
			continue;
		if (streq(e.state, "pending") &&
		    !busy_has(d->busy_deps, d->n_busy_deps, e.id)) {
			e.next_at = ch_now();
			ch_store_deployment_update(d->store, &e);
		}
		ch_store_deployment_done(&e);
	}
}

static void
deploy_done(int r, const char *message, void *arg)
{
	struct deploy_job *j = arg;

	ch_crashpoint("deployed-unrecorded");
	deploy_record(j->d, j->issuance_id, j->target, j->cert_name, r,
		      message ? message : (r < 0 ? strerror(-r) : "ok"));
	sched_kick(j->d);
	deploy_job_free(j);
}

int
deploy_start(struct daemon *d, const struct ch_store_deployment *dep)
{
	const struct ch_conf_target *tc = ch_conf_find_target(d->gen->conf, dep->target);
	struct ch_store_issuance iss = { 0 };
	struct ch_store_deployment upd = { 0 };
	struct deploy_job *j;
	struct ch_err err = { "" };
	int64_t now = ch_now();
	int r;

	store_txn(d);
	r = ch_store_issuance_get(d->store, dep->issuance_id, &iss);
	if (r < 0)
		return r;
	r = ch_store_deployment_get(d->store, dep->issuance_id, dep->target, &upd);
	if (r < 0) {
		ch_store_issuance_done(&iss);
		return r;
	}
	upd.attempts++;
	upd.attempted_at = now;
	free(upd.state);
	upd.state = strdup("pending");
	upd.next_at = now + CH_DEPLOY_LEASE;
	ch_store_deployment_update(d->store, &upd);
	ch_store_deployment_done(&upd);

	j = ch_xcalloc(1, sizeof(*j));
	j->d = d;
	j->gen = d->gen;
	j->gen->refs++;
	j->dep_id = dep->id;
	j->issuance_id = dep->issuance_id;
	j->target = ch_xstrdup(dep->target);
	j->cert_name = ch_xstrdup(dep->cert_name ? dep->cert_name : "?");
	j->serial = ch_xstrdup(iss.serial);
	j->cert_pem = ch_xstrdup(iss.cert_pem);
	j->chain_pem = ch_xstrdup(iss.chain_pem ? iss.chain_pem : "");
	busy_add(&d->busy_deps, &d->n_busy_deps, &d->cap_busy_deps, dep->id);

	if (!tc) {
		ch_store_issuance_done(&iss);
		deploy_record(d, j->issuance_id, j->target, j->cert_name, -ENOENT,
			      "the target is no longer in the configuration");
		deploy_job_free(j);
		return 0;
	}
	if (!iss.key_path) {
		ch_store_issuance_done(&iss);
		deploy_record(d, j->issuance_id, j->target, j->cert_name, -ENOKEY,
			      "no private key is held for this issuance (adopted); it is "
			      "deployed with the next renewal");
		deploy_job_free(j);
		return 0;
	}
	r = ch_read_file(iss.key_path, 1 << 20, &j->key_pem, &j->key_len);
	if (r < 0) {
		snprintf(err.msg, sizeof(err.msg), "cannot read the key %s: %s", iss.key_path,
			 strerror(-r));
		ch_store_issuance_done(&iss);
		deploy_record(d, j->issuance_id, j->target, j->cert_name, r, err.msg);
		deploy_job_free(j);
		return 0;
	}
	{
		char *slash = strrchr(iss.key_path, '/');

		j->dir = slash ? strndup(iss.key_path, (size_t)(slash - iss.key_path))
			       : ch_xstrdup(".");
	}
	ch_store_issuance_done(&iss);

	struct ch_deploy_item item = {
		.cert_name = j->cert_name,
		.serial = j->serial,
		.cert_pem = j->cert_pem,
		.chain_pem = j->chain_pem,
		.key_pem = j->key_pem,
		.key_pem_len = j->key_len,
		.dir = j->dir,
	};
	struct ch_target_env env = {
		.base = d->base,
		.state_dir = d->gen->conf->state_dir,
		.batch = d->batch,
	};
	ch_log_cert(LOG_INFO, j->cert_name, "deploy", "Deploying serial %s to %s", j->serial,
		    j->target);
	r = tc->ops->deploy(&env, tc->name, tc->opts, &item, deploy_done, j);
	if (r < 0) {
		deploy_record(d, j->issuance_id, j->target, j->cert_name, r,
			      "the target could not start the deployment");
		deploy_job_free(j);
	}
	return 0;
}

void
deploy_timer_run(struct daemon *d)
{
	int64_t now = ch_now();
	int started = 0;

	while ((int64_t)d->n_busy_deps < d->gen->conf->concurrency && started < 1024) {
		struct ch_store_deployment dep = { 0 };

		if (ch_store_deployment_next_due(d->store, &dep) < 0)
			break;
		if (dep.next_at > now) {
			ch_store_deployment_done(&dep);
			break;
		}
		/*
		 * Busy, waiting for an earlier target of the same certificate, or
		 * (deploy_start failing) the issuance row is gone or unreadable:
		 * park the row for a lease.
		 */
		if (busy_has(d->busy_deps, d->n_busy_deps, dep.id) ||
		    deploy_waits_for_earlier(d, &dep) || deploy_start(d, &dep) < 0) {
			store_txn(d);
			dep.next_at = now + CH_DEPLOY_LEASE;
			ch_store_deployment_update(d->store, &dep);
		}
		started++;
		ch_store_deployment_done(&dep);
	}
}
