/* SPDX-License-Identifier: MIT */
/*
 * Rehearsals: `certherd renew NAME --dry-run` and the rehearsal schedule.
 * A rehearsal runs a certificate's whole renewal path with a throw-away
 * key: issuance by its CA (or the CA's staging CA), the checks a renewal
 * makes, then every target in the target's rehearsal mode (files below a
 * scratch directory, services checked but not signalled). It never
 * becomes an issuance: the result is a row of the rehearsals table and an
 * event. The scratch directory <state_dir>/rehearsals/NAME keeps the last
 * rehearsal's files for inspection. The schedule rehearses, every
 * rehearsal.interval, each CA with one certificate per kind of target its
 * certificates use; alert.c raises an alert for the failures.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/crypto.h"
#include "certherd/defer.h"
#include "certherd/log.h"
#include "certherd/metrics.h"
#include "certherd/sched.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "daemon.h"

struct rehearsal {
	struct daemon *d;
	struct generation *gen;
	char *cert, *ca, *issuer;
	const char *trigger; /* static: manual | scheduled */
	char *dir;           /* scratch */
	char *iss_dir;       /* dir/issuance */
	EVP_PKEY *key;
	int64_t started_at;
	char *serial, *cert_pem, *chain_pem, *key_pem;
	size_t key_len;
	size_t next_target;
	/* The first failure. */
	char *stage, *target, *message;
	json_t *steps;
	rehearse_done_fn *done;
	void *arg;
	LIST_ENTRY(rehearsal) link;
};

static LIST_HEAD(, rehearsal) rehearsals = LIST_HEAD_INITIALIZER(rehearsals);

/* The schedule per CA, rebuilt for each configuration generation. */
struct rehearse_ca {
	char *ca;
	int64_t interval;
	int64_t next_at;
	unsigned running; /* scheduled rehearsals of this CA in flight */
};

static struct {
	bool built;
	unsigned gen_seq; /* the configuration generation v was built for */
	struct rehearse_ca *v;
	size_t n;
} sched;

static void rehearse_scheduled_done(const char *ca);

static void
rehearsal_free(struct rehearsal *rh)
{
	if (!rh)
		return;
	LIST_REMOVE(rh, link);
	generation_unref(rh->d, rh->gen);
	EVP_PKEY_free(rh->key);
	if (rh->key_pem)
		ch_secret_free(rh->key_pem, rh->key_len);
	free(rh->cert);
	free(rh->ca);
	free(rh->issuer);
	free(rh->dir);
	free(rh->iss_dir);
	free(rh->serial);
	free(rh->cert_pem);
	free(rh->chain_pem);
	free(rh->stage);
	free(rh->target);
	free(rh->message);
	json_decref(rh->steps);
	free(rh);
}

bool
rehearse_running(const char *cert)
{
	struct rehearsal *rh;

	LIST_FOREACH(rh, &rehearsals, link)
		if (streq(rh->cert, cert))
			return true;
	return false;
}

void
rehearse_detach(struct rehearsal *rh)
{
	if (rh) {
		rh->done = NULL;
		rh->arg = NULL;
	}
}

static void
rehearsal_step(struct rehearsal *rh, const char *stage, const char *target, int r,
	       const char *message)
{
	json_array_append_new(rh->steps, json_pack("{s:s,s:s?,s:b,s:s}", "stage", stage, "target",
						   target, "ok", r >= 0, "message",
						   message ? message : ""));
	if (r >= 0 || rh->stage)
		return;
	rh->stage = ch_xstrdup(stage);
	rh->target = target ? ch_xstrdup(target) : NULL;
	rh->message = ch_xstrdup(message && *message ? message : strerror(-r));
}

/* The reply of renew --dry-run, also kept in `show`. */
static json_t *
rehearsal_json(const struct rehearsal *rh, int64_t id, int64_t finished_at)
{
	return json_pack("{s:b,s:s,s:b,s:I,s:s,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:s,s:I,s:I,s:O}",
			 "ok", 1, "name", rh->cert, "dry_run", 1, "id", (json_int_t)id, "result",
			 rh->stage ? "failed" : "passed", "trigger", rh->trigger, "ca", rh->ca,
			 "issuer", rh->issuer, "stage", rh->stage, "target", rh->target, "error",
			 rh->message, "serial", rh->serial, "scratch", rh->dir, "started_at",
			 (json_int_t)rh->started_at, "finished_at", (json_int_t)finished_at,
			 "steps", rh->steps);
}

/* Records the outcome, tells the waiter and frees rh. */
static void
rehearsal_finish(struct rehearsal *rh)
{
	struct daemon *d = rh->d;
	int64_t now = ch_now();
	struct ch_store_rehearsal row = {
		.cert = rh->cert,
		.ca = rh->ca,
		.issuer = rh->issuer,
		.trigger = rh->trigger,
		.started_at = rh->started_at,
		.finished_at = now,
		.result = rh->stage ? "failed" : "passed",
		.stage = rh->stage,
		.target = rh->target,
		.serial = rh->serial,
		.message = rh->message,
	};
	char detail[1536];
	json_t *reply;

	if (rh->stage)
		snprintf(detail, sizeof(detail), "%s through CA %s: failed at %s%s%s: %s",
			 rh->trigger, rh->issuer, rh->stage, rh->target ? " " : "",
			 rh->target ? rh->target : "", rh->message);
	else
		snprintf(detail, sizeof(detail), "%s through CA %s: passed (serial %s, %zu "
						 "targets)",
			 rh->trigger, rh->issuer, rh->serial ? rh->serial : "?",
			 rh->next_target);
	if (store_txn(d) == 0) {
		if (ch_store_rehearsal_add(d->store, &row) < 0)
			ch_log_warning("Cannot record the rehearsal of %s in the inventory",
				       rh->cert);
		ch_store_event_add(d->store, now, rh->cert, "rehearsal",
				   rh->stage ? "rehearsal-failed" : "rehearsal-passed", detail);
	}
	ch_log_cert(rh->stage ? LOG_WARNING : LOG_NOTICE, rh->cert, "rehearsal", "Rehearsal %s",
		    detail);
	if (streq(rh->trigger, "scheduled"))
		rehearse_scheduled_done(rh->ca);
	if (rh->done) {
		reply = rehearsal_json(rh, row.id, now);
		rh->done(reply, rh->arg);
	}
	rehearsal_free(rh);
	sched_kick(d);
}

static void
rehearsal_finish_cb(void *arg)
{
	rehearsal_finish(arg);
}

static void rehearsal_next_target(struct rehearsal *rh);

static void
rehearsal_deployed(int r, const char *message, void *arg)
{
	struct rehearsal *rh = arg;
	const struct ch_conf_cert *cc = ch_conf_find_cert(rh->gen->conf, rh->cert);
	const char *target = cc ? cc->s.targets[rh->next_target] : "?";

	rehearsal_step(rh, "deploy", target, r, message ? message : (r < 0 ? NULL : "ok"));
	rh->next_target++;
	rehearsal_next_target(rh);
}

/* Every target in turn, in its rehearsal mode; a failed one does not stop the next. */
static void
rehearsal_next_target(struct rehearsal *rh)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(rh->gen->conf, rh->cert);
	const struct ch_conf_target *tc;
	_cleanup_free_ char *scratch = NULL;
	int r;

	for (;;) {
		const char *name;

		if (!cc || !cc->s.targets[rh->next_target]) {
			rehearsal_finish(rh);
			return;
		}
		name = cc->s.targets[rh->next_target];
		tc = ch_conf_find_target(rh->gen->conf, name);
		if (tc)
			break;
		rehearsal_step(rh, "deploy", name, -ENOENT, "the target is not in the configuration");
		rh->next_target++;
	}
	scratch = ch_xasprintf("%s/targets/%s", rh->dir, tc->name);
	r = ch_mkdir_p(scratch, 0700);
	if (r < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "cannot create %s: %s", scratch, strerror(-r));
		rehearsal_deployed(r, msg, rh);
		return;
	}
	struct ch_deploy_item item = {
		.cert_name = rh->cert,
		.serial = rh->serial,
		.cert_pem = rh->cert_pem,
		.chain_pem = rh->chain_pem,
		.key_pem = rh->key_pem,
		.key_pem_len = rh->key_len,
		.dir = rh->iss_dir,
	};
	struct ch_target_env env = {
		.base = rh->d->base,
		.state_dir = rh->gen->conf->state_dir,
		.batch = NULL,
		.rehearse_dir = scratch,
	};
	r = tc->ops->deploy(&env, tc->name, tc->opts, &item, rehearsal_deployed, rh);
	if (r < 0)
		rehearsal_deployed(r, "the target could not start the rehearsal", rh);
}

/* Writes cert, chain, fullchain and key below the scratch dir, as a renewal would. */
static int
rehearsal_write_issuance(struct rehearsal *rh, struct ch_err *err)
{
	_cleanup_free_ char *full = ch_xasprintf("%s%s", rh->cert_pem, rh->chain_pem);
	const char *names[] = { "cert.pem", "chain.pem", "fullchain.pem", "key.pem" };
	const char *data[] = { rh->cert_pem, rh->chain_pem, full, rh->key_pem };
	size_t lens[] = { strlen(rh->cert_pem), strlen(rh->chain_pem), strlen(full), rh->key_len };
	int r;

	r = ch_mkdir_p(rh->iss_dir, 0700);
	if (r < 0)
		return ch_err_set(err, r, "cannot create %s: %s", rh->iss_dir, strerror(-r));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *p = ch_xasprintf("%s/%s", rh->iss_dir, names[i]);

		r = ch_write_file_atomic(p, data[i], lens[i], i == 3 ? 0600 : 0644, (uid_t)-1,
					 (gid_t)-1, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static void
rehearsal_issued(struct ch_issue_result *res, void *arg)
{
	struct rehearsal *rh = arg;
	const struct ch_conf_cert *cc = ch_conf_find_cert(rh->gen->conf, rh->cert);
	struct ch_cert_info info = { 0 };
	struct ch_err err = { "" };
	char msg[1200];
	X509 *x = NULL;
	int r;

	if (res->outcome != CH_CA_ISSUED) {
		snprintf(msg, sizeof(msg), "%s: %s", ch_ca_outcome_to_string(res->outcome),
			 res->message[0] ? res->message : "the CA gave no reason");
		rehearsal_step(rh, "issue", NULL, -EPROTO, msg);
		rehearsal_finish(rh);
		return;
	}
	rh->cert_pem = ch_xstrdup(res->cert_pem);
	rh->chain_pem = ch_xstrdup(res->chain_pem ? res->chain_pem : "");
	/* The checks a renewal makes before anything is written. */
	if (ch_cert_from_pem(rh->cert_pem, strlen(rh->cert_pem), &x, &err) < 0 ||
	    ch_cert_info_get(x, &info) < 0)
		r = ch_err_set(&err, -EBADMSG, "the CA returned an unreadable certificate");
	else if (!ch_cert_key_match(x, rh->key))
		r = ch_err_set(&err, -EBADMSG, "the issued certificate is not for our key");
	else if (cc && !ch_cert_names_match(x, cc->dns_names, cc->ip_names))
		r = ch_err_set(&err, -EBADMSG,
			       "the issued certificate has other names than requested");
	else
		r = 0;
	if (r == 0) {
		rh->serial = ch_xstrdup(info.serial);
		snprintf(msg, sizeof(msg), "issued serial %s by CA %s", info.serial, rh->issuer);
		rehearsal_step(rh, "issue", NULL, 0, msg);
		r = ch_key_to_pem(rh->key, &rh->key_pem, &rh->key_len, &err);
		if (r >= 0)
			r = rehearsal_write_issuance(rh, &err);
	}
	X509_free(x);
	ch_cert_info_done(&info);
	if (r < 0) {
		rehearsal_step(rh, "check", NULL, r, err.msg);
		rehearsal_finish(rh);
		return;
	}
	rehearsal_step(rh, "check", NULL, 0, "certificate, key and names checked");
	rehearsal_next_target(rh);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the scratch dir of the previous rehearsal. */
static int
rm_tree(const char *path)
{
	if (access(path, F_OK) < 0)
		return errno == ENOENT ? 0 : -errno;
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

int
rehearse_start(struct daemon *d, const char *name, const char *trigger, rehearse_done_fn *done,
	       void *arg, struct rehearsal **ret, char *errbuf, size_t errlen)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, name);
	const struct ch_conf_ca *cac;
	struct ch_ca *ca;
	struct rehearsal *rh;
	struct ch_err err = { "" };
	char idem[33];
	int r;

	if (ret)
		*ret = NULL;
	if (!cc) {
		snprintf(errbuf, errlen, "no certificate named '%s' in the configuration", name);
		return -ENOENT;
	}
	if (rehearse_running(name)) {
		snprintf(errbuf, errlen, "a rehearsal of '%s' is already running", name);
		return -EBUSY;
	}
	cac = ch_conf_find_ca(d->gen->conf, cc->s.ca);
	ca = cac ? daemon_find_ca(d->gen, cac->staging ? cac->staging : cac->name) : NULL;

	rh = ch_xcalloc(1, sizeof(*rh));
	rh->d = d;
	rh->gen = d->gen;
	rh->gen->refs++;
	rh->cert = ch_xstrdup(name);
	rh->ca = ch_xstrdup(cc->s.ca);
	rh->issuer = ch_xstrdup(cac && cac->staging ? cac->staging : cc->s.ca);
	rh->trigger = streq(trigger, "scheduled") ? "scheduled" : "manual";
	rh->started_at = ch_now();
	rh->steps = json_array();
	rh->done = done;
	rh->arg = arg;
	rh->dir = ch_xasprintf("%s/rehearsals/%s", d->gen->conf->state_dir, name);
	rh->iss_dir = ch_xasprintf("%s/issuance", rh->dir);
	LIST_INSERT_HEAD(&rehearsals, rh, link);
	ch_log_cert(LOG_INFO, name, "rehearsal", "Rehearsing the renewal through CA %s (%s)",
		    rh->issuer, rh->trigger);
	if (ret)
		*ret = rh;

	if (!ca) {
		rehearsal_step(rh, "prepare", NULL, -ENOENT, "the certificate's CA is not available");
		goto fail;
	}
	r = rm_tree(rh->dir);
	if (r >= 0)
		r = ch_mkdir_p(rh->dir, 0700);
	if (r < 0) {
		ch_err_set(&err, r, "cannot prepare the scratch directory %s: %s", rh->dir,
			   strerror(-r));
		rehearsal_step(rh, "prepare", NULL, r, err.msg);
		goto fail;
	}
	r = ch_key_generate(cc->s.key_type, &rh->key, &err);
	if (r < 0) {
		rehearsal_step(rh, "prepare", NULL, r, err.msg);
		goto fail;
	}
	ch_random_hex(16, idem, sizeof(idem));
	{
		_cleanup_free_ char *key = ch_xasprintf("rehearsal-%s", idem);
		struct ch_issue_request req = {
			.cert_name = cc->name,
			.dns_names = cc->dns_names,
			.ip_names = cc->ip_names,
			.key = rh->key,
			.lifetime = cc->s.lifetime,
			.idempotency_key = key,
		};

		r = ca->ops->issue(ca->state, &req, rehearsal_issued, rh);
	}
	if (r < 0) {
		rehearsal_step(rh, "issue", NULL, r, "the CA backend could not start the request");
		goto fail;
	}
	return 0;
fail:
	/* Reported from the loop like any other outcome. */
	if (ch_defer(d->base, rehearsal_finish_cb, rh) < 0)
		abort();
	return 0;
}

/* ---- the schedule ---------------------------------------------------------- */

static void
sched_clear(void)
{
	for (size_t i = 0; i < sched.n; i++)
		free(sched.v[i].ca);
	free(sched.v);
	sched.v = NULL;
	sched.n = 0;
	sched.built = false;
}

/* Per CA with an interval: due one interval after its last scheduled rehearsal, else now. */
static void
sched_build(struct daemon *d, int64_t now)
{
	const struct ch_conf *conf = d->gen->conf;
	struct rehearse_ca *old = sched.v;
	size_t n_old = sched.n;

	sched.v = ch_xcalloc(conf->n_cas + 1, sizeof(*sched.v));
	sched.n = 0;
	for (size_t i = 0; i < conf->n_cas; i++) {
		const struct ch_conf_ca *ca = &conf->cas[i];
		int64_t interval = ch_conf_rehearsal_interval(conf, ca);
		struct ch_store_rehearsal_summary sum = { 0 };
		struct rehearse_ca *e;

		if (interval <= 0)
			continue;
		e = &sched.v[sched.n++];
		e->ca = ch_xstrdup(ca->name);
		e->interval = interval;
		ch_store_rehearsal_summary(d->store, ca->name, &sum);
		e->next_at = sum.last_scheduled_at ? sum.last_scheduled_at + interval : now;
		/* Rehearsals still running under the previous generation keep counting. */
		for (size_t k = 0; k < n_old; k++)
			if (streq(old[k].ca, ca->name))
				e->running = old[k].running;
	}
	for (size_t k = 0; k < n_old; k++)
		free(old[k].ca);
	free(old);
	sched.built = true;
	sched.gen_seq = d->gen_seq;
}

static void
rehearse_scheduled_done(const char *ca)
{
	for (size_t i = 0; i < sched.n; i++)
		if (streq(sched.v[i].ca, ca) && sched.v[i].running > 0)
			sched.v[i].running--;
}

void
rehearse_run(struct daemon *d)
{
	int64_t now = ch_now();

	if (d->stopping)
		return;
	if (!sched.built || sched.gen_seq != d->gen_seq)
		sched_build(d, now);
	for (size_t i = 0; i < sched.n; i++) {
		struct rehearse_ca *e = &sched.v[i];
		const struct ch_conf_cert *picks[32];
		size_t n;

		if (e->next_at > now || e->running > 0)
			continue;
		e->next_at = now + e->interval;
		n = ch_sched_rehearsal_certs(d->gen->conf, e->ca, picks, ARRAY_SIZE(picks));
		if (n == 0)
			continue;
		ch_log_info("Rehearsing CA %s with %zu certificate%s", e->ca, n, n == 1 ? "" : "s");
		for (size_t k = 0; k < n; k++) {
			char err[256];

			if (rehearse_start(d, picks[k]->name, "scheduled", NULL, NULL, NULL, err,
					   sizeof(err)) == 0)
				e->running++;
			else
				ch_log_cert(LOG_INFO, picks[k]->name, "rehearsal",
					    "Scheduled rehearsal skipped: %s", err);
		}
	}
}

int64_t
rehearse_next_at(struct daemon *d)
{
	int64_t next = 0;

	/* Not built yet for this configuration: the next turn builds it. */
	if (!sched.built || sched.gen_seq != d->gen_seq)
		return 0;
	for (size_t i = 0; i < sched.n; i++)
		if (!sched.v[i].running && (!next || sched.v[i].next_at < next))
			next = sched.v[i].next_at;
	return next;
}

void
rehearse_free(struct daemon *d)
{
	sched_clear();
}

struct rehearse_metrics {
	const char *ca;
	int64_t failing;
};

static int
metrics_failing_cb(const struct ch_store_rehearsal *rh, void *arg)
{
	struct rehearse_metrics *m = arg;

	if (streq(rh->ca, m->ca))
		m->failing++;
	return 0;
}

void
rehearse_metrics(struct daemon *d, struct ch_metrics_buf *b)
{
	const struct ch_conf *conf = d->gen->conf;
	static const char *const families[][3] = {
		{ "certherd_rehearsal_last_success_timestamp_seconds", "gauge",
		  "When the last rehearsal through the CA passed (0: never)." },
		{ "certherd_rehearsal_last_run_timestamp_seconds", "gauge",
		  "When the last rehearsal through the CA started (0: never)." },
		{ "certherd_rehearsal_failing", "gauge",
		  "Certificates of the CA whose newest rehearsal failed." },
	};
	struct ch_store_rehearsal_summary *sums;

	store_flush(d);
	sums = ch_xcalloc(conf->n_cas + 1, sizeof(*sums));
	for (size_t i = 0; i < conf->n_cas; i++)
		ch_store_rehearsal_summary(d->store, conf->cas[i].name, &sums[i]);
	for (size_t f = 0; f < ARRAY_SIZE(families); f++) {
		ch_metrics_family(b, families[f][0], families[f][1], families[f][2]);
		for (size_t i = 0; i < conf->n_cas; i++) {
			struct rehearse_metrics m = { conf->cas[i].name, 0 };
			int64_t v;

			if (f == 0)
				v = sums[i].last_success_at;
			else if (f == 1)
				v = sums[i].last_run_at;
			else {
				ch_store_rehearsal_foreach_failing(d->store, metrics_failing_cb, &m);
				v = m.failing;
			}
			ch_metrics_sample_int(b, families[f][0],
					      (const char *[]){ "ca", conf->cas[i].name, NULL }, v);
		}
	}
	free(sums);
}
