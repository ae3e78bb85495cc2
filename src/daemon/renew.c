/* SPDX-License-Identifier: MIT */
/*
 * The scheduler and the per-certificate renewal state machine.
 *
 * One libevent timer is armed for the earliest next action, found through
 * the store's next_at indexes. A renewal goes new/valid -> issuing ->
 * valid (or failing, with backoff, and issuing again). The key and the
 * idempotency key of a renewal are recorded before the CA is asked, so a
 * restart resumes the same renewal; the issued certificate, the new
 * schedule and the pending deployments are recorded in one transaction.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/crashpoint.h"
#include "certherd/crypto.h"
#include "certherd/defer.h"
#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/sched.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "daemon.h"

struct renew_job {
	struct daemon *d;
	struct generation *gen;
	int64_t cert_id;
	char *name;
	char *idem;
	char *dir;
	EVP_PKEY *key;
	char *ca_name;      /* the CA asked, once it is */
	int64_t ca_started; /* monotonic usec when it was asked */
	bool unrecorded;    /* the record of its start was rolled back */
};

bool
busy_has(int64_t *v, size_t n, int64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

void
busy_add(int64_t **v, size_t *n, size_t *cap, int64_t id)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*v = realloc(*v, *cap * sizeof(**v));
		if (!*v)
			abort();
	}
	(*v)[(*n)++] = id;
}

void
busy_del(int64_t *v, size_t *n, int64_t id)
{
	for (size_t i = 0; i < *n; i++)
		if (v[i] == id) {
			v[i] = v[--*n];
			return;
		}
}

static void
store_flush_cb(void *arg)
{
	struct daemon *d = arg;

	store_flush(d);
	sched_kick(d);
}

static const char *
store_strerror(int r)
{
	return r == -EBUSY ? "the database is locked by another process" : strerror(-r);
}

/*
 * A write to the inventory failed and was rolled back: nothing is
 * recorded, so the scheduler waits (1 s, doubling to a minute) before it
 * tries again instead of starting the same work over at once.
 */
static void
store_failed(struct daemon *d, int r, const char *what)
{
	int64_t delay = 1;

	if (!d->store_failures)
		d->store_failing_since = ch_now();
	d->store_failures++;
	for (int i = 1; i < d->store_failures && delay < CH_STORE_RETRY_MAX; i++)
		delay *= 2;
	if (delay > CH_STORE_RETRY_MAX)
		delay = CH_STORE_RETRY_MAX;
	d->store_retry_mono = ch_mono_usec() + delay * CH_USEC_PER_SEC;
	d->store_errno = r;
	snprintf(d->store_error, sizeof(d->store_error), "cannot %s the inventory: %s", what,
		 store_strerror(r));
	ch_log_error("The inventory %s refused a write (%s); renewals and deployments wait, "
		     "next attempt in %llds",
		     d->gen->conf->database, store_strerror(r), (long long)delay);
}

int64_t
store_retry_in(struct daemon *d)
{
	int64_t left;

	if (!d->store_failures)
		return 0;
	left = (d->store_retry_mono - ch_mono_usec() + CH_USEC_PER_SEC - 1) / CH_USEC_PER_SEC;
	return left > 0 ? left : 0;
}

static int
store_resume_cb(const struct ch_store_cert *c, void *arg)
{
	struct daemon *d = arg;
	struct ch_store_cert sc = { 0 };

	if (!streq_ptr(c->state, "issuing") || busy_has(d->busy_certs, d->n_busy_certs, c->id))
		return 0;
	if (ch_store_cert_get_by_id(d->store, c->id, &sc) == 0) {
		sc.next_at = ch_now();
		ch_store_cert_update(d->store, &sc);
	}
	ch_store_cert_done(&sc);
	return 0;
}

/*
 * The inventory takes writes again. Work whose record was rolled back
 * (a renewal left "issuing", a deployment holding its lease) resumes now
 * rather than when its lease runs out.
 */
static void
store_recovered(struct daemon *d)
{
	ch_log_notice("The inventory %s takes writes again after %d failed attempts",
		      d->gen->conf->database, d->store_failures);
	d->store_failures = 0;
	d->store_errno = 0;
	d->store_error[0] = '\0';
	d->store_failing_since = 0;
	if (store_txn(d) < 0)
		return;
	ch_store_event_add(d->store, ch_now(), NULL, "store", "writable", NULL);
	ch_store_cert_foreach(d->store, store_resume_cb, d);
	ch_store_deployment_reset_leases(d->store, ch_now());
	sched_kick(d);
}

int
store_txn(struct daemon *d)
{
	int r;

	if (d->txn_open)
		return 0;
	r = ch_store_begin(d->store);
	if (r < 0) {
		store_failed(d, r, "begin a transaction in");
		return r;
	}
	d->txn_open = true;
	ch_defer(d->base, store_flush_cb, d);
	return 0;
}

/*
 * Commits the turn's records, then hands the turn's files to the batch's
 * worker. Records first: a file staged this turn (a deployed certificate)
 * may hold what they record, while no record written before a file is
 * durable claims it is (that is recorded by the file's callback, which
 * runs after the worker wrote it).
 */
int
store_flush(struct daemon *d)
{
	int r = 0;

	if (d->txn_open) {
		d->txn_open = false;
		r = ch_store_commit(d->store);
		if (r < 0) {
			ch_store_rollback(d->store);
			store_failed(d, r, "commit to");
		} else if (d->store_failures) {
			store_recovered(d);
		}
	}
	if (ch_filebatch_pending(d->batch))
		ch_filebatch_commit(d->batch);
	return r;
}

void
store_drain(struct daemon *d)
{
	do
		store_flush(d);
	while (ch_filebatch_drain(d->batch) > 0 || d->txn_open);
}

struct ch_ca *
daemon_find_ca(struct generation *g, const char *name)
{
	for (size_t i = 0; i < g->n_cas; i++)
		if (streq(g->cas[i]->name, name))
			return g->cas[i];
	return NULL;
}

void
generation_unref(struct daemon *d, struct generation *g)
{
	if (!g || --g->refs > 0)
		return;
	for (struct generation **p = &d->retired; *p; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			break;
		}
	for (size_t i = 0; i < g->n_cas; i++)
		ch_ca_free(g->cas[i]);
	free(g->cas);
	ch_conf_free(g->conf);
	free(g);
}

static void
record_event(struct daemon *d, const char *cert, const char *stage, const char *event,
	  const char *detail)
{
	store_txn(d);
	ch_store_event_add(d->store, ch_now(), cert, stage, event, detail);
}

/* What a change of requires a new certificate: names, CA, key type, lifetime. */
static char *
cert_spec(const struct ch_conf_cert *c)
{
	size_t len = 0;
	char *buf = NULL;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		abort();
	fprintf(f, "ca=%s;key=%s;lifetime=%lld;", c->s.ca, ch_key_type_to_string(c->s.key_type),
		(long long)c->s.lifetime);
	if (c->s.profile)
		fprintf(f, "profile=%s;", c->s.profile);
	fprintf(f, "dns=");
	for (char **n = c->dns_names; n && *n; n++)
		fprintf(f, "%s,", *n);
	fprintf(f, ";ip=");
	for (char **n = c->ip_names; n && *n; n++)
		fprintf(f, "%s,", *n);
	fprintf(f, "\nrenew_before=%lld", (long long)c->s.renew_before);
	fprintf(f, "\ntargets=");
	for (char **n = c->s.targets; n && *n; n++)
		fprintf(f, "%s,", *n);
	fprintf(f, "\nendpoints=");
	for (char **n = c->s.endpoints; n && *n; n++)
		fprintf(f, "%s,", *n);
	fclose(f);
	return buf;
}

/*
 * A spec has four lines: what the certificate must contain (a change
 * needs a new certificate), the renewal window, the targets and the
 * endpoints that must serve it.
 */
enum {
	SPEC_ISSUE,
	SPEC_SCHEDULE,
	SPEC_TARGETS,
	SPEC_ENDPOINTS,
};

static bool
spec_line_equal(const char *a, const char *b, int line)
{
	size_t na, nb;

	for (int i = 0; i < line; i++) {
		a = strchr(a, '\n');
		b = strchr(b, '\n');
		if (!a || !b)
			return !a && !b;
		a++;
		b++;
	}
	na = strcspn(a, "\n");
	nb = strcspn(b, "\n");
	return na == nb && memcmp(a, b, na) == 0;
}

/* Records deployments of the issuance for every target of the certificate. */
static void
ensure_deployments(struct daemon *d, const struct ch_conf_cert *cc, int64_t issuance_id,
		   int64_t at)
{
	for (char **t = cc->s.targets; t && *t; t++)
		ch_store_deployment_ensure(d->store, issuance_id, *t, at);
}

/*
 * Takes over a certificate that the targets already hold for the same
 * names, instead of issuing a new one on first start.
 */
static int
try_adopt(struct daemon *d, const struct ch_conf_cert *cc, struct ch_store_cert *sc)
{
	const struct ch_conf *conf = d->gen->conf;
	_cleanup_free_ char *pem = NULL;
	const struct ch_conf_target *held_by = NULL;
	struct ch_cert_info info = { 0 };
	struct ch_store_issuance iss = { 0 };
	X509 *x = NULL;
	int64_t now = ch_now();
	char idem[96];
	int r;

	for (char **t = cc->s.targets; t && *t && !held_by; t++) {
		const struct ch_conf_target *tc = ch_conf_find_target(conf, *t);

		if (tc && tc->ops->current && tc->ops->current(tc->opts, cc->name, &pem) == 0 && pem)
			held_by = tc;
	}
	if (!held_by)
		return -ENOENT;
	if (ch_cert_from_pem(pem, strlen(pem), &x, NULL) < 0)
		return -EBADMSG;
	r = -ESTALE;
	if (!ch_cert_names_match(x, cc->dns_names, cc->ip_names))
		goto out;
	if (ch_cert_info_get(x, &info) < 0)
		goto out;
	if (info.not_after <= now || info.not_before > now + 300)
		goto out;
	/*
	 * Without the key we cannot deploy elsewhere: every target that can
	 * say what it holds must hold this one. Targets that cannot (reload,
	 * exec) act on those files and count as done.
	 */
	for (char **t = cc->s.targets; t && *t; t++) {
		const struct ch_conf_target *tc = ch_conf_find_target(conf, *t);
		_cleanup_free_ char *other = NULL;
		X509 *ox = NULL;
		bool same = false;

		if (!tc)
			goto out;
		if (!tc->ops->current)
			continue;
		if (tc->ops->current(tc->opts, cc->name, &other) < 0)
			goto out;
		if (ch_cert_from_pem(other, strlen(other), &ox, NULL) == 0) {
			same = X509_cmp(ox, x) == 0;
			X509_free(ox);
		}
		if (!same)
			goto out;
	}

	snprintf(idem, sizeof(idem), "adopted-%s", info.fingerprint);
	iss.cert_id = sc->id;
	iss.serial = info.serial;
	iss.fingerprint = info.fingerprint;
	iss.not_before = info.not_before;
	iss.not_after = info.not_after;
	iss.issued_at = now;
	iss.ca = cc->s.ca;
	iss.idem_key = idem;
	{
		char *leaf = NULL;

		ch_cert_to_pem(x, &leaf);
		iss.cert_pem = leaf;
	}
	iss.chain_pem = (char *)"";
	iss.adopted = true;
	r = ch_store_issuance_insert(d->store, &iss);
	free(iss.cert_pem);
	if (r < 0)
		goto out;
	for (char **t = cc->s.targets; t && *t; t++) {
		struct ch_store_deployment dep = { 0 };

		ch_store_deployment_ensure(d->store, iss.id, *t, 0);
		if (ch_store_deployment_get(d->store, iss.id, *t, &dep) == 0) {
			free(dep.state);
			dep.state = strdup("deployed");
			dep.succeeded_at = now;
			dep.next_at = 0;
			ch_store_deployment_update(d->store, &dep);
			ch_store_deployment_done(&dep);
		}
	}
	sc->current_issuance = iss.id;
	free(sc->state);
	sc->state = strdup("valid");
	free(sc->last_outcome);
	sc->last_outcome = strdup("adopted");
	sc->renew_at = ch_sched_renew_at(cc->name, info.not_before, info.not_after,
					 cc->s.renew_before);
	sc->next_at = sc->renew_at > now ? sc->renew_at : now;
	r = ch_store_cert_update(d->store, sc);
	if (r == 0) {
		char detail[256];

		snprintf(detail, sizeof(detail), "serial %s from target %s", info.serial,
			 held_by->name);
		record_event(d, cc->name, "issue", "adopted", detail);
		ch_log_cert(LOG_NOTICE, cc->name, "issue",
			    "Adopted the certificate already deployed (serial %s)", info.serial);
	}
out:
	X509_free(x);
	ch_cert_info_done(&info);
	return r;
}

/* What start-up keeps per inventory row: a hash of the spec, not the spec. */
struct sync_row {
	int64_t id;
	char *name;
	uint64_t spec_hash;
	bool wanted;
	bool issuing;
};

struct sync_rows {
	struct sync_row *v;
	size_t n, cap;
};

static int
sync_collect(const struct ch_store_cert *c, void *arg)
{
	struct sync_rows *rows = arg;

	if (rows->n == rows->cap) {
		rows->cap = rows->cap ? rows->cap * 2 : 1024;
		rows->v = realloc(rows->v, rows->cap * sizeof(*rows->v));
		if (!rows->v)
			abort();
	}
	rows->v[rows->n++] = (struct sync_row){
		.id = c->id,
		.name = ch_xstrdup(c->name),
		.spec_hash = ch_hash64(c->spec ? c->spec : ""),
		.wanted = c->wanted,
		.issuing = streq_ptr(c->state, "issuing"),
	};
	return 0;
}

static int
cmp_conf_cert(const void *a, const void *b)
{
	const struct ch_conf_cert *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static void
sync_new_cert(struct daemon *d, const struct ch_conf_cert *cc, char *spec, int64_t now)
{
	struct ch_store_cert sc = {
		.name = (char *)cc->name,
		.spec = spec,
		.wanted = true,
		.state = (char *)"new",
		.next_at = now,
	};
	int r;

	r = ch_store_cert_insert(d->store, &sc);
	if (r < 0) {
		ch_log_error_errno(r, "Cannot add certificate %s to the inventory: %s", cc->name,
				   strerror(-r));
		return;
	}
	record_event(d, cc->name, "config", "added", NULL);
	probe_sync_cert(d, sc.id, cc);
	/* try_adopt updates strings it owns; give it an owned copy. */
	struct ch_store_cert own = { 0 };

	if (ch_store_cert_get_by_id(d->store, sc.id, &own) == 0) {
		try_adopt(d, cc, &own);
		ch_store_cert_done(&own);
	}
}

static void
sync_existing_cert(struct daemon *d, const struct ch_conf_cert *cc, const struct sync_row *row,
		   char *spec, int64_t now)
{
	struct ch_store_cert sc = { 0 };
	_cleanup_free_ char *old = NULL;
	bool changed = false;

	if (row->wanted && row->spec_hash == ch_hash64(spec))
		return;
	if (ch_store_cert_get_by_id(d->store, row->id, &sc) < 0)
		return;
	old = ch_xstrdup(sc.spec ? sc.spec : "");
	if (!sc.wanted) {
		sc.wanted = true;
		changed = true;
		if (streq(sc.state, "retired")) {
			free(sc.state);
			sc.state = strdup(sc.current_issuance ? "valid" : "new");
		}
		sc.next_at = now;
		record_event(d, cc->name, "config", "wanted-again", NULL);
	}
	if (!streq(old, spec)) {
		if (!spec_line_equal(old, spec, SPEC_ISSUE) && sc.current_issuance) {
			/* Names, CA, key type or lifetime changed: a new certificate is needed. */
			sc.force = true;
			sc.next_at = now;
			record_event(d, cc->name, "config", "changed", "renewing for the new settings");
		} else if (sc.current_issuance && !spec_line_equal(old, spec, SPEC_TARGETS)) {
			ensure_deployments(d, cc, sc.current_issuance, now);
			record_event(d, cc->name, "config", "targets-changed", NULL);
		}
		if (!spec_line_equal(old, spec, SPEC_ENDPOINTS))
			probe_sync_cert(d, sc.id, cc);
		free(sc.spec);
		sc.spec = strdup(spec);
		changed = true;
	}
	if (sc.current_issuance && sc.cur_not_after) {
		int64_t at = ch_sched_renew_at(cc->name, sc.cur_not_before, sc.cur_not_after,
					       cc->s.renew_before);

		if (at != sc.renew_at && !spec_line_equal(old, spec, SPEC_SCHEDULE)) {
			sc.renew_at = at;
			if (streq(sc.state, "valid") && !sc.force)
				sc.next_at = at > now + CH_MIN_RENEW_DELAY ? at : now + CH_MIN_RENEW_DELAY;
			changed = true;
		}
	}
	if (changed)
		ch_store_cert_update(d->store, &sc);
	ch_store_cert_done(&sc);
}

static void
sync_retire(struct daemon *d, const struct sync_row *row)
{
	struct ch_store_cert sc = { 0 };

	if (!row->wanted || ch_store_cert_get_by_id(d->store, row->id, &sc) < 0)
		return;
	sc.wanted = false;
	free(sc.state);
	sc.state = strdup("retired");
	sc.next_at = 0;
	ch_store_cert_update(d->store, &sc);
	probe_sync_cert(d, sc.id, NULL);
	record_event(d, row->name, "config", "retired", "no longer in the configuration");
	ch_store_cert_done(&sc);
}

/*
 * Brings the inventory's desired state in line with the current
 * configuration: new certificates are added (or adopted), changed ones
 * scheduled, removed ones retired. Both sides are walked in name order.
 */
int
renew_sync_config(struct daemon *d)
{
	const struct ch_conf *conf = d->gen->conf;
	struct sync_rows rows = { 0 };
	const struct ch_conf_cert **sorted;
	int64_t now = ch_now();
	size_t i = 0, j = 0;
	int r;

	r = store_txn(d);
	if (r < 0)
		return r;
	r = ch_store_cert_foreach(d->store, sync_collect, &rows);
	if (r < 0)
		return ch_log_error_errno(r, "Cannot read the inventory: %s", strerror(-r));
	sorted = ch_xcalloc(conf->n_certs, sizeof(*sorted));
	for (size_t k = 0; k < conf->n_certs; k++)
		sorted[k] = &conf->certs[k];
	qsort(sorted, conf->n_certs, sizeof(*sorted), cmp_conf_cert);

	while (i < conf->n_certs || j < rows.n) {
		int c;

		if (i == conf->n_certs)
			c = 1;
		else if (j == rows.n)
			c = -1;
		else
			c = strcmp(sorted[i]->name, rows.v[j].name);
		if (c < 0) {
			char *spec = cert_spec(sorted[i]);

			sync_new_cert(d, sorted[i], spec, now);
			free(spec);
			i++;
		} else if (c > 0) {
			sync_retire(d, &rows.v[j]);
			j++;
		} else {
			char *spec = cert_spec(sorted[i]);

			sync_existing_cert(d, sorted[i], &rows.v[j], spec, now);
			/* A renewal cut short by a restart resumes at once. */
			if (rows.v[j].issuing) {
				struct ch_store_cert sc = { 0 };

				if (ch_store_cert_get_by_id(d->store, rows.v[j].id, &sc) == 0) {
					sc.next_at = now;
					ch_store_cert_update(d->store, &sc);
					ch_store_cert_done(&sc);
				}
			}
			free(spec);
			i++;
			j++;
		}
	}
	for (size_t k = 0; k < rows.n; k++) {
		free(rows.v[k].name);
	}
	free(rows.v);
	free(sorted);
	ch_store_deployment_reset_leases(d->store, now);
	return store_flush(d);
}

static void
renew_job_free(struct renew_job *j)
{
	if (!j)
		return;
	busy_del(j->d->busy_certs, &j->d->n_busy_certs, j->cert_id);
	generation_unref(j->d, j->gen);
	EVP_PKEY_free(j->key);
	free(j->name);
	free(j->idem);
	free(j->dir);
	free(j->ca_name);
	free(j);
}

/* The CA a renewal goes to, for the metrics' ca label. */
static const char *
renew_job_ca(const struct renew_job *j)
{
	const struct ch_conf_cert *cc;

	if (j->ca_name)
		return j->ca_name;
	cc = ch_conf_find_cert(j->gen->conf, j->name);
	return cc && cc->s.ca ? cc->s.ca : "";
}

/*
 * CA failover. A certificate lists its CAs in order of preference; a
 * renewal starts at the first. After failover_after failed attempts in a
 * row at one CA, or at once when it answers with its rate limit, the
 * renewal moves to the next CA of the list and is retried there at once.
 * The last CA is retried with the usual backoff (and its Retry-After)
 * until it issues: the walk never wraps around, so a rate-limited CA is
 * never asked again before its Retry-After. The next renewal, and a
 * renewal requested with `certherd renew`, start at the first CA again.
 */

/* Index in cc's `ca:` list of the CA the renewal of sc goes to. */
static size_t
renew_ca_index(const struct ch_conf_cert *cc, const struct ch_store_cert *sc)
{
	for (size_t i = 0; sc->ca_active && cc->s.cas && cc->s.cas[i]; i++)
		if (streq(cc->s.cas[i], sc->ca_active))
			return i;
	return 0;
}

/*
 * After a failed attempt at CA ca: moves sc on to the next CA when the
 * failure calls for it. Returns true (and records why) when it did.
 */
static bool
renew_failover(struct daemon *d, const struct ch_conf_cert *cc, struct ch_store_cert *sc,
	       const char *ca, bool rate_limited, const char *message)
{
	size_t i = renew_ca_index(cc, sc);
	const char *next;
	char why[160], detail[1400];

	if (!cc->s.cas || !streq(cc->s.cas[i], ca) || !cc->s.cas[i + 1])
		return false;
	if (!rate_limited && sc->ca_failures < cc->s.failover_after)
		return false;
	next = cc->s.cas[i + 1];
	if (rate_limited)
		snprintf(why, sizeof(why), "CA %s is rate limiting", ca);
	else
		snprintf(why, sizeof(why), "%d failed attempt%s in a row at CA %s", sc->ca_failures,
			 sc->ca_failures == 1 ? "" : "s", ca);
	snprintf(detail, sizeof(detail), "from %s to %s: %s; last error: %s", ca, next, why,
		 message);
	free(sc->ca_active);
	sc->ca_active = ch_xstrdup(next);
	sc->ca_failures = 0;
	record_event(d, sc->name, "issue", "failover", detail);
	ch_log_cert(LOG_WARNING, sc->name, "issue", "Failing over to CA %s: %s", next, why);
	return true;
}

static void
renew_fail_ca(struct daemon *d, struct renew_job *j, const char *outcome, const char *message,
	      int64_t retry_after, bool ca_failed, bool rate_limited)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(j->gen->conf, j->name);
	struct ch_store_cert sc = { 0 };
	int64_t now = ch_now(), delay;
	char dbuf[32];

	metrics_count_renewal(d, renew_job_ca(j), outcome);
	store_txn(d);
	if (ch_store_cert_get_by_id(d->store, j->cert_id, &sc) < 0)
		return;
	sc.failures++;
	delay = ch_sched_backoff(sc.name, sc.failures);
	if (retry_after > delay)
		delay = retry_after;
	if (ca_failed && j->ca_name) {
		/* Not issued: the certificate is not spent; a rejection counts as failed. */
		budget_refund(d, j->ca_name, j->idem);
		if (cc && streq(outcome, ch_ca_outcome_to_string(CH_CA_REJECTED)))
			budget_failed_validation(d, cc, j->ca_name);
	}
	if (ca_failed && cc && j->ca_name) {
		sc.ca_failures++;
		if (renew_failover(d, cc, &sc, j->ca_name, rate_limited, message))
			delay = 0;
	}
	free(sc.state);
	sc.state = strdup("failing");
	free(sc.last_outcome);
	sc.last_outcome = strdup(outcome);
	free(sc.last_error);
	sc.last_error = strdup(message);
	sc.next_at = now + delay;
	ch_store_cert_update(d->store, &sc);
	record_event(d, sc.name, "issue", outcome, message);
	ch_log_cert(LOG_ERR, sc.name, "issue", "Renewal failed (%s): %s; retrying in %s", outcome,
		    message, ch_format_duration(delay, dbuf, sizeof(dbuf)));
	ch_store_cert_done(&sc);
}

static void
renew_fail(struct daemon *d, struct renew_job *j, const char *outcome, const char *message,
	   int64_t retry_after)
{
	renew_fail_ca(d, j, outcome, message, retry_after, false, false);
}

/* What a CA returned, kept until its files are durable. */
struct renew_result {
	struct renew_job *j;
	char *cert_pem;
	char *chain_pem;
	struct ch_cert_info info;
};

static void
renew_result_free(struct renew_result *rr)
{
	renew_job_free(rr->j);
	free(rr->cert_pem);
	free(rr->chain_pem);
	ch_cert_info_done(&rr->info);
	free(rr);
}

/*
 * Records a new issuance: the issuance, the certificate's new schedule
 * and a pending deployment per target, all in the same transaction.
 */
static void
renew_record(struct renew_result *rr)
{
	struct renew_job *j = rr->j;
	struct daemon *d = j->d;
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, j->name);
	const struct ch_cert_info *info = &rr->info;
	struct ch_store_cert sc = { 0 };
	struct ch_store_issuance iss = { 0 };
	int64_t now = ch_now();
	char *key_path = NULL;
	int r;

	ch_crashpoint("issued-unrecorded");
	store_txn(d);
	if (ch_store_cert_get_by_id(d->store, j->cert_id, &sc) < 0)
		goto out;
	key_path = ch_xasprintf("%s/key.pem", j->dir);
	iss.cert_id = j->cert_id;
	iss.serial = (char *)info->serial;
	iss.fingerprint = (char *)info->fingerprint;
	iss.not_before = info->not_before;
	iss.not_after = info->not_after;
	iss.issued_at = now;
	iss.ca = j->ca_name ? j->ca_name : cc ? cc->s.ca : (char *)"";
	iss.idem_key = j->idem;
	iss.cert_pem = rr->cert_pem;
	iss.chain_pem = rr->chain_pem;
	iss.key_path = key_path;
	r = ch_store_issuance_insert(d->store, &iss);
	if (r == -EEXIST) {
		struct ch_store_issuance old = { 0 };

		/* Already recorded by an earlier attempt of the same renewal. */
		if (ch_store_issuance_get_by_idem(d->store, j->idem, &old) == 0)
			iss.id = old.id;
		ch_store_issuance_done(&old);
		r = 0;
	}
	if (r < 0) {
		renew_fail(d, j, "local-error", "cannot record the issuance in the inventory", 0);
		goto out;
	}
	sc.current_issuance = iss.id;
	sc.failures = 0;
	sc.force = false;
	free(sc.state);
	sc.state = strdup("valid");
	free(sc.last_outcome);
	sc.last_outcome = strdup("issued");
	free(sc.last_error);
	sc.last_error = NULL;
	free(sc.pending_idem);
	sc.pending_idem = NULL;
	free(sc.pending_key);
	sc.pending_key = NULL;
	sc.last_success_at = now;
	/* The next renewal starts at the first CA of the list again. */
	free(sc.ca_active);
	sc.ca_active = NULL;
	sc.ca_failures = 0;
	/* The lifetime counts from now: a backdated notBefore must not pull renewal in. */
	sc.renew_at = ch_sched_renew_at(sc.name, info->not_before > now ? info->not_before : now,
					info->not_after, cc ? cc->s.renew_before : 0);
	sc.next_at = sc.renew_at > now + CH_MIN_RENEW_DELAY ? sc.renew_at : now + CH_MIN_RENEW_DELAY;
	ch_store_cert_update(d->store, &sc);
	if (cc)
		ensure_deployments(d, cc, iss.id, now);
	ch_store_deployment_supersede_older(d->store, j->cert_id, iss.id);
	ari_kick(d);
	{
		char detail[256], t1[32];

		snprintf(detail, sizeof(detail), "serial %s, expires %s, by CA %s", info->serial,
			 ch_format_time(info->not_after, t1, sizeof(t1)), iss.ca);
		record_event(d, sc.name, "issue", "issued", detail);
		metrics_count_renewal(d, renew_job_ca(j), "issued");
		ch_log_cert(LOG_NOTICE, sc.name, "issue", "Issued serial %s, expires %s, by CA %s",
			    info->serial, t1, iss.ca);
	}
out:
	ch_store_cert_done(&sc);
	free(key_path);
	renew_result_free(rr);
}

/* The CA's answer: checked, then recorded by renew_record. */
static void
renew_done(struct ch_issue_result *res, void *arg)
{
	struct renew_job *j = arg;
	struct daemon *d = j->d;
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, j->name);
	struct renew_result *rr;
	struct ch_err err = { "" };
	X509 *x = NULL;

	metrics_observe_ca_request(d, renew_job_ca(j), ch_ca_outcome_to_string(res->outcome),
				   (double)(ch_mono_usec() - j->ca_started) / CH_USEC_PER_SEC);
	if (res->outcome != CH_CA_ISSUED) {
		renew_fail_ca(d, j, ch_ca_outcome_to_string(res->outcome),
			      res->message[0] ? res->message : "the CA gave no reason",
			      res->retry_after, true, res->rate_limited);
		renew_job_free(j);
		return;
	}
	rr = ch_xcalloc(1, sizeof(*rr));
	rr->j = j;
	rr->cert_pem = ch_xstrdup(res->cert_pem);
	rr->chain_pem = ch_xstrdup(res->chain_pem ? res->chain_pem : "");
	/* Check what came back before it goes anywhere. */
	if (res->cert && X509_up_ref(res->cert))
		x = res->cert;
	else if (ch_cert_from_pem(rr->cert_pem, strlen(rr->cert_pem), &x, &err) < 0)
		x = NULL;
	if (!x || ch_cert_info_get(x, &rr->info) < 0) {
		renew_fail(d, j, "rejected", "the CA returned an unreadable certificate", 0);
		goto fail;
	}
	if (!ch_cert_key_match(x, j->key)) {
		renew_fail(d, j, "rejected", "the issued certificate is not for our key", 0);
		goto fail;
	}
	if (cc && !ch_cert_names_match(x, cc->dns_names, cc->ip_names)) {
		renew_fail(d, j, "rejected", "the issued certificate has other names than requested",
			   0);
		goto fail;
	}
	X509_free(x);
	x = NULL;
	/*
	 * The certificate and chain go into the inventory only; the key is
	 * durable since before the CA was asked.
	 */
	renew_record(rr);
	return;
fail:
	X509_free(x);
	renew_result_free(rr);
}

/*
 * Removes what renewals killed before their record committed left in the
 * certificate's directory: issuance directories (named by an idempotency
 * key) that no issuance in the inventory has, holding only key.pem or its
 * temporary file. Called when no renewal of the certificate is pending,
 * so none of them is in use. A directory holding anything else is left
 * as it is.
 */
static void
renew_sweep_unrecorded(struct daemon *d, const char *certdir)
{
	DIR *dir = opendir(certdir);
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		_cleanup_free_ char *path = NULL;
		struct ch_store_issuance iss = { 0 };
		bool only_key = true, recorded;
		DIR *sub;
		struct dirent *f;

		if (strlen(e->d_name) != 32 || strspn(e->d_name, "0123456789abcdef") != 32)
			continue;
		recorded = ch_store_issuance_get_by_idem(d->store, e->d_name, &iss) != -ENOENT;
		ch_store_issuance_done(&iss);
		if (recorded)
			continue;
		path = ch_xasprintf("%s/%s", certdir, e->d_name);
		sub = opendir(path);
		if (!sub)
			continue;
		while (only_key && (f = readdir(sub)))
			only_key = streq(f->d_name, ".") || streq(f->d_name, "..") ||
				   streq(f->d_name, "key.pem") ||
				   strncmp(f->d_name, "key.pem.tmp.", 12) == 0;
		rewinddir(sub);
		while (only_key && (f = readdir(sub)))
			if (f->d_name[0] != '.')
				unlinkat(dirfd(sub), f->d_name, 0);
		closedir(sub);
		if (only_key && rmdir(path) == 0)
			ch_log_debug("Removed %s, the key of a renewal killed before it was recorded",
				     path);
	}
	closedir(dir);
}

/*
 * Loads the pending key of a resumed renewal, or makes and records a new
 * one, staged (with its directory) in the current group of the daemon's
 * batch, which the caller ends.
 */
static int
renew_prepare_key(struct daemon *d, const struct ch_conf_cert *cc, struct ch_store_cert *sc,
		  struct renew_job *j, struct ch_err *err)
{
	const struct ch_conf *conf = d->gen->conf;
	char idem[33];
	size_t len;
	char *pem = NULL;
	int r;

	if (sc->pending_idem && sc->pending_key) {
		j->idem = ch_xstrdup(sc->pending_idem);
		j->dir = ch_xstrdup(sc->pending_key);
		{
			_cleanup_free_ char *kp = ch_xasprintf("%s/key.pem", j->dir);

			if (ch_key_load_file(kp, &j->key, NULL) == 0)
				return 0;
		}
	} else {
		_cleanup_free_ char *certdir = ch_xasprintf("%s/certs/%s", conf->state_dir, cc->name);

		renew_sweep_unrecorded(d, certdir);
		ch_random_hex(16, idem, sizeof(idem));
		j->idem = ch_xstrdup(idem);
		j->dir = ch_xasprintf("%s/certs/%s/%s", conf->state_dir, cc->name, idem);
		free(sc->pending_idem);
		sc->pending_idem = ch_xstrdup(j->idem);
		free(sc->pending_key);
		sc->pending_key = ch_xstrdup(j->dir);
	}
	if (cc->s.reuse_key && sc->current_issuance) {
		struct ch_store_issuance cur = { 0 };

		if (ch_store_issuance_get(d->store, sc->current_issuance, &cur) == 0 &&
		    cur.key_path)
			ch_key_load_file(cur.key_path, &j->key, NULL);
		ch_store_issuance_done(&cur);
	}
	if (!j->key) {
		r = ch_key_generate(cc->s.key_type, &j->key, err);
		if (r < 0)
			return r;
	}
	r = ch_key_to_pem(j->key, &pem, &len, err);
	if (r < 0)
		return r;
	/* Durable before the CA is asked: the job starts from the group's callback. */
	r = ch_filebatch_mkdir(d->batch, j->dir, 0700, err);
	if (r >= 0) {
		_cleanup_free_ char *kp = ch_xasprintf("%s/key.pem", j->dir);

		r = ch_filebatch_stage(d->batch, kp, pem, len, 0600, -1, -1, "key", err);
	}
	ch_secret_free(pem, len);
	return r;
}

/*
 * The CA this attempt goes to: the one the renewal has reached in the
 * certificate's list (the first, unless it failed over), or the next one
 * that is available when that one could not be set up.
 */
static struct ch_ca *
renew_pick_ca(struct daemon *d, const struct ch_conf_cert *cc, struct ch_store_cert *sc)
{
	size_t i = renew_ca_index(cc, sc);
	struct ch_ca *ca;

	if (!cc->s.cas)
		return daemon_find_ca(d->gen, cc->s.ca);
	for (; cc->s.cas[i]; i++) {
		ca = daemon_find_ca(d->gen, cc->s.cas[i]);
		if (ca) {
			if (!streq_ptr(sc->ca_active, cc->s.cas[i]) && (i > 0 || sc->ca_active)) {
				free(sc->ca_active);
				sc->ca_active = ch_xstrdup(cc->s.cas[i]);
				sc->ca_failures = 0;
			}
			return ca;
		}
	}
	return NULL;
}

/*
 * The CA this attempt goes to once budgets are counted: ca (picked by
 * renew_pick_ca), or the next CA of the list whose budget allows it (a
 * failover event says why). When no CA from ca on has budget left, sc
 * waits until the earliest of them frees (last_outcome
 * "budget-exhausted") and NULL is returned.
 */
static struct ch_ca *
renew_budget_pick(struct daemon *d, const struct ch_conf_cert *cc, struct ch_store_cert *sc,
		  const char *idem, struct ch_ca *ca)
{
	size_t first = renew_ca_index(cc, sc), best = first;
	int64_t best_at = INT64_MAX, at;
	char why[512], first_why[512] = "", best_why[512] = "";

	if (!cc->s.cas)
		return ca;
	for (size_t i = first; cc->s.cas[i]; i++) {
		struct ch_ca *c = daemon_find_ca(d->gen, cc->s.cas[i]);
		bool exempt;

		if (!c)
			continue;
		exempt = budget_renewal_exempt(d, cc, sc, c->name);
		if (budget_allows(d, cc, c->name, idem, exempt, why, sizeof(why), &at)) {
			if (i != first) {
				char detail[1200];

				snprintf(detail, sizeof(detail), "from %s to %s: %s", cc->s.cas[first],
					 c->name, first_why);
				free(sc->ca_active);
				sc->ca_active = ch_xstrdup(c->name);
				sc->ca_failures = 0;
				record_event(d, sc->name, "issue", "failover", detail);
				ch_log_cert(LOG_WARNING, sc->name, "issue",
					    "Failing over to CA %s: %s", c->name, first_why);
			}
			return c;
		}
		if (!first_why[0])
			snprintf(first_why, sizeof(first_why), "%s", why);
		if (at < best_at) {
			best_at = at;
			best = i;
			snprintf(best_why, sizeof(best_why), "%s", why);
		}
	}
	if (best_at == INT64_MAX)
		return ca; /* nothing was counted: nothing to wait for */
	{
		char dbuf[32];
		bool again = streq_ptr(sc->last_outcome, "budget-exhausted");

		free(sc->ca_active);
		sc->ca_active = best > 0 ? ch_xstrdup(cc->s.cas[best]) : NULL;
		sc->ca_failures = 0;
		free(sc->last_outcome);
		sc->last_outcome = ch_xstrdup("budget-exhausted");
		free(sc->last_error);
		sc->last_error = ch_xstrdup(best_why);
		sc->next_at = best_at > ch_now() ? best_at : ch_now() + CH_SCHED_BACKOFF_MIN;
		if (!again)
			record_event(d, sc->name, "issue", "budget-exhausted", best_why);
		ch_log_cert(again ? LOG_INFO : LOG_WARNING, sc->name, "issue",
			    "Not sent to any CA: %s; waiting %s", best_why,
			    ch_format_duration(sc->next_at - ch_now(), dbuf, sizeof(dbuf)));
	}
	return NULL;
}

static void renew_start(struct daemon *d, struct renew_job *j);

/*
 * The renewal's key and its directory are durable, as is the record of
 * its start (committed before the files were handed over): the CA is
 * asked. Not when that record was rolled back, or when the daemon stops
 * (the renewal resumes at the next start).
 */
static void
renew_key_written(int r, const char *message, void *arg)
{
	struct renew_job *j = arg;
	struct daemon *d = j->d;

	if (j->unrecorded || d->stopping) {
		renew_job_free(j);
		return;
	}
	if (r < 0) {
		renew_fail(d, j, "local-error", message, 0);
		renew_job_free(j);
		return;
	}
	renew_start(d, j);
}

/*
 * Prepares a renewal: the key and idempotency key are made (or taken from
 * the renewal a restart cut short) and recorded. Returns the job, which
 * starts once its key is durable (renew_key_written), or NULL when it
 * already failed.
 */
static struct renew_job *
renew_prepare(struct daemon *d, struct ch_store_cert *sc)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(d->gen->conf, sc->name);
	struct ch_err err = { "" };
	struct renew_job *j;
	struct ch_ca *ca;
	int64_t now = ch_now();
	int r;

	if (!cc) {
		sc->next_at = 0;
		ch_store_cert_update(d->store, sc);
		return NULL;
	}
	j = ch_xcalloc(1, sizeof(*j));
	j->d = d;
	j->gen = d->gen;
	j->gen->refs++;
	j->cert_id = sc->id;
	j->name = ch_xstrdup(sc->name);
	busy_add(&d->busy_certs, &d->n_busy_certs, &d->cap_busy_certs, sc->id);

	ca = renew_pick_ca(d, cc, sc);
	if (!ca) {
		renew_fail(d, j, "misconfigured", "the certificate's CA is not available", 0);
		renew_job_free(j);
		return NULL;
	}
	r = renew_prepare_key(d, cc, sc, j, &err);
	if (r < 0) {
		ch_filebatch_group_abort(d->batch);
		renew_fail(d, j, "local-error", err.msg, 0);
		renew_job_free(j);
		return NULL;
	}
	ca = renew_budget_pick(d, cc, sc, j->idem, ca);
	if (!ca) {
		/* Waits for the budget: the pending key is kept for then. */
		ch_filebatch_group_end(d->batch, NULL, NULL);
		ch_store_cert_update(d->store, sc);
		renew_job_free(j);
		return NULL;
	}
	ch_filebatch_group_end(d->batch, renew_key_written, j);
	j->ca_name = ch_xstrdup(ca->name);
	if (!budget_renewal_exempt(d, cc, sc, ca->name))
		budget_spend(d, cc, ca->name, j->idem);
	free(sc->state);
	sc->state = strdup("issuing");
	sc->last_attempt_at = now;
	sc->next_at = now + CH_ISSUE_LEASE;
	ch_store_cert_update(d->store, sc);
	record_event(d, sc->name, "issue", "attempted", ca->name);
	ch_log_cert(LOG_INFO, sc->name, "issue", "Renewing through CA %s", ca->name);
	return j;
}

/* Asks the CA, after the renewal's record has been committed. */
static void
renew_start(struct daemon *d, struct renew_job *j)
{
	const struct ch_conf_cert *cc = ch_conf_find_cert(j->gen->conf, j->name);
	struct ch_ca *ca = cc && j->ca_name ? daemon_find_ca(j->gen, j->ca_name) : NULL;
	int r;

	ch_crashpoint("issue-recorded");
	if (!ca) {
		renew_fail(d, j, "misconfigured", "the certificate's CA is not available", 0);
		renew_job_free(j);
		return;
	}
	struct ch_store_cert sc = { 0 };
	struct ch_store_issuance cur = { 0 };
	struct ch_issue_request req = {
		.cert_name = cc->name,
		.dns_names = cc->dns_names,
		.ip_names = cc->ip_names,
		.key = j->key,
		.lifetime = cc->s.lifetime,
		.idempotency_key = j->idem,
		.profile = cc->s.profile,
	};
	/* The certificate replaced, for CAs that track renewals (ARI); only one of theirs. */
	if (ca->ops->renewal_info && ch_store_cert_get_by_id(d->store, j->cert_id, &sc) == 0 &&
	    sc.current_issuance && ch_store_issuance_get(d->store, sc.current_issuance, &cur) == 0 &&
	    !cur.adopted && streq_ptr(cur.ca, ca->name))
		req.replaces_pem = cur.cert_pem;
	j->ca_started = ch_mono_usec();
	r = ca->ops->issue(ca->state, &req, renew_done, j);
	ch_store_issuance_done(&cur);
	ch_store_cert_done(&sc);
	if (r < 0) {
		budget_refund(d, ca->name, j->idem);
		metrics_observe_ca_request(d, ca->name, "local-error", 0);
		renew_fail(d, j, "local-error", "the CA backend could not start the request", 0);
		renew_job_free(j);
	}
}

int
renew_request(struct daemon *d, const char *name, bool force, char *errbuf, size_t errlen)
{
	struct ch_store_cert sc = { 0 };
	int64_t now = ch_now();
	int r;

	r = ch_store_cert_get(d->store, name, &sc);
	if (r < 0 || !sc.wanted) {
		snprintf(errbuf, errlen, "no certificate named '%s' in the configuration", name);
		ch_store_cert_done(&sc);
		return -ENOENT;
	}
	if (busy_has(d->busy_certs, d->n_busy_certs, sc.id)) {
		snprintf(errbuf, errlen, "a renewal of '%s' is already running", name);
		ch_store_cert_done(&sc);
		return -EBUSY;
	}
	if (!force && sc.current_issuance && sc.renew_at > now && !streq(sc.state, "failing")) {
		char t[32];

		snprintf(errbuf, errlen, "'%s' is not due until %s; use --force to renew now", name,
			 ch_format_time(sc.renew_at, t, sizeof(t)));
		ch_store_cert_done(&sc);
		return -EAGAIN;
	}
	r = store_txn(d);
	if (r == 0) {
		sc.force = force;
		sc.next_at = now;
		/* Asked for by an operator: start at the first CA of the list again. */
		free(sc.ca_active);
		sc.ca_active = NULL;
		sc.ca_failures = 0;
		ch_store_cert_update(d->store, &sc);
		record_event(d, name, "issue", force ? "forced" : "requested",
			     "by the status socket");
		/* Acknowledged only once it is recorded. */
		r = store_flush(d);
	}
	ch_store_cert_done(&sc);
	if (r < 0) {
		snprintf(errbuf, errlen, "the request was not recorded (%s); try again later",
			 d->store_error);
		return r;
	}
	sched_kick(d);
	return 0;
}

static void
sched_run(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	int64_t now = ch_now();
	int64_t max = d->gen->conf->concurrency;
	int started = 0;

	if (d->stopping || sched_wedged(d))
		return;
	d->last_loop_at = now;
	d->last_loop_mono = ch_mono_usec();
	/* The inventory refused the last write: nothing is started until it is tried again. */
	if (store_retry_in(d) > 0) {
		sched_arm(d);
		return;
	}
	/* Bounded per pass so deployments and the socket get their turn. */
	struct renew_job **jobs = NULL;
	size_t n_jobs = 0;

	while ((int64_t)d->n_busy_certs < max && started < 1024) {
		struct ch_store_cert sc = { 0 };

		if (ch_store_cert_next_due(d->store, &sc) < 0)
			break;
		if (sc.next_at > now || store_txn(d) < 0) {
			ch_store_cert_done(&sc);
			break;
		}
		if (busy_has(d->busy_certs, d->n_busy_certs, sc.id)) {
			sc.next_at = now + CH_ISSUE_LEASE;
			ch_store_cert_update(d->store, &sc);
		} else {
			struct renew_job *j = renew_prepare(d, &sc);

			if (j) {
				jobs = realloc(jobs, (n_jobs + 1) * sizeof(*jobs));
				if (!jobs)
					abort();
				jobs[n_jobs++] = j;
			}
			started++;
		}
		ch_store_cert_done(&sc);
	}
	/*
	 * One commit records every renewal of this pass; each starts when the
	 * batch's worker has written its key.
	 */
	if (store_flush(d) < 0) {
		/* Not recorded: nothing starts, and nothing more is written until the retry. */
		for (size_t i = 0; i < n_jobs; i++)
			jobs[i]->unrecorded = true;
		free(jobs);
		sched_arm(d);
		return;
	}
	free(jobs);
	deploy_timer_run(d);
	probe_timer_run(d);
	rehearse_run(d);
	alert_run(d);
	ari_run(d);
	store_flush(d);
	sched_arm(d);
}

void
sched_arm(struct daemon *d)
{
	struct ch_store_cert sc = { 0 };
	struct ch_store_deployment dep = { 0 };
	struct ch_store_endpoint ep = { 0 };
	int64_t next = 0, now = ch_now();
	struct timeval tv;

	if (d->stopping)
		return;
	if ((int64_t)d->n_busy_certs < d->gen->conf->concurrency &&
	    ch_store_cert_next_due(d->store, &sc) == 0)
		next = sc.next_at;
	if ((int64_t)d->n_busy_deps < d->gen->conf->concurrency &&
	    ch_store_deployment_next_due(d->store, &dep) == 0 && (!next || dep.next_at < next))
		next = dep.next_at;
	if ((int64_t)d->n_busy_probes < d->gen->conf->concurrency &&
	    ch_store_endpoint_next_due(d->store, &ep) == 0 && (!next || ep.next_at < next))
		next = ep.next_at;
	ch_store_cert_done(&sc);
	ch_store_deployment_done(&dep);
	ch_store_endpoint_done(&ep);
	if (alert_next_at(d) && (!next || alert_next_at(d) < next))
		next = alert_next_at(d);
	if (store_retry_in(d) > 0 && (!next || next < now + store_retry_in(d)))
		next = now + store_retry_in(d);
	if (rehearse_next_at(d) && (!next || rehearse_next_at(d) < next))
		next = rehearse_next_at(d);
	if (ari_next_at(d) && (!next || ari_next_at(d) < next))
		next = ari_next_at(d);
	/*
	 * Turn at least every sched_tick: clock jumps are noticed, and the
	 * heartbeat and the watchdog see a scheduler that turns.
	 */
	if (!next || next - now > sched_tick(d))
		next = now + sched_tick(d);
	tv.tv_sec = next > now ? next - now : 0;
	tv.tv_usec = 0;
	evtimer_add(d->timer, &tv);
}

void
sched_kick(struct daemon *d)
{
	struct timeval zero = { 0, 0 };

	if (!d->stopping)
		evtimer_add(d->timer, &zero);
}

int
sched_init(struct daemon *d)
{
	d->timer = evtimer_new(d->base, sched_run, d);
	return d->timer ? 0 : -ENOMEM;
}
