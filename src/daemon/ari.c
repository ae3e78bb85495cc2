/* SPDX-License-Identifier: MIT */
/*
 * Renewal windows suggested by the CA (ACME Renewal Information, RFC
 * 9773): for each certificate whose CA offers them, the window for the
 * current certificate is fetched, kept in <state_dir>/ari/<cert id>.json
 * and asked again after the CA's Retry-After (6 hours when it gives none,
 * within 1 minute..1 day). The renewal is planned at a uniformly random
 * time inside the window, kept while the window holds it, and at once
 * when the window is already over. Errors leave the usual schedule alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/util.h"
#include "daemon.h"

#define ARI_SCAN_INTERVAL 600     /* look for new certificates and due polls */
#define ARI_DEFAULT_POLL (6 * 3600)
#define ARI_MIN_POLL 60
#define ARI_MAX_POLL 86400
#define ARI_ERROR_POLL 3600

struct ari_entry {
	int64_t cert_id;
	char *serial;     /* the certificate the window is for */
	int64_t start, end;
	int64_t fetched_at, poll_at;
	char *explanation;
	char *error;      /* the last failure, while it lasts */
	bool unsupported; /* the CA has no renewalInfo */
	bool in_flight;
};

struct ari {
	struct ari_entry *v;
	size_t n, cap;
	int64_t next_scan;
	char *dir;
};

struct ari_call {
	struct daemon *d;
	struct generation *gen;
	int64_t cert_id;
	char *serial;
	char *name;
};

static struct ari_entry *
ari_find(struct ari *a, int64_t cert_id)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].cert_id == cert_id)
			return &a->v[i];
	return NULL;
}

static void
ari_entry_clear(struct ari_entry *e)
{
	free(e->serial);
	free(e->explanation);
	free(e->error);
	*e = (struct ari_entry){ .cert_id = e->cert_id };
}

static char *
ari_path(struct ari *a, int64_t cert_id)
{
	return ch_xasprintf("%s/%lld.json", a->dir, (long long)cert_id);
}

static void
ari_save(struct ari *a, const struct ari_entry *e)
{
	_cleanup_free_ char *path = ari_path(a, e->cert_id), *data = NULL;
	struct ch_err err = { "" };
	json_t *j;

	j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:s?}", "serial", e->serial, "start",
		      (json_int_t)e->start, "end", (json_int_t)e->end, "fetched_at",
		      (json_int_t)e->fetched_at, "poll_at", (json_int_t)e->poll_at,
		      "explanation_url", e->explanation);
	data = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!data || ch_write_file_atomic(path, data, strlen(data), 0644, -1, -1, &err) < 0)
		ch_log_debug("ARI: cannot save %s: %s", path, err.msg);
}

/* The saved window of this certificate, when it is for serial. */
static void
ari_load(struct ari *a, struct ari_entry *e, const char *serial)
{
	_cleanup_free_ char *path = ari_path(a, e->cert_id), *data = NULL;
	json_t *j;

	if (ch_read_file(path, 65536, &data, NULL) < 0 || !(j = json_loads(data, 0, NULL)))
		return;
	if (streq_ptr(json_string_value(json_object_get(j, "serial")), serial)) {
		const char *expl = json_string_value(json_object_get(j, "explanation_url"));

		e->start = json_integer_value(json_object_get(j, "start"));
		e->end = json_integer_value(json_object_get(j, "end"));
		e->fetched_at = json_integer_value(json_object_get(j, "fetched_at"));
		e->poll_at = json_integer_value(json_object_get(j, "poll_at"));
		e->explanation = expl ? ch_xstrdup(expl) : NULL;
	}
	json_decref(j);
}

static int64_t
ari_clamp_poll(int64_t s)
{
	return s < ARI_MIN_POLL ? ARI_MIN_POLL : s > ARI_MAX_POLL ? ARI_MAX_POLL : s;
}

/* A uniformly random time in [start, end). */
static int64_t
ari_pick(int64_t start, int64_t end)
{
	uint64_t r = 0;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint64_t)ch_now_usec();
	return start + (int64_t)(r % (uint64_t)(end - start));
}

/*
 * Moves the planned renewal of a valid certificate into its window. Past
 * windows mean now. A renewal already planned inside the window stays.
 */
static void
ari_apply(struct daemon *d, const struct ari_entry *e)
{
	struct ch_store_cert sc = { 0 };
	int64_t now = ch_now(), at;
	char t1[32], t2[32], t3[32], detail[512];

	if (!e->end || ch_store_cert_get_by_id(d->store, e->cert_id, &sc) < 0)
		return;
	if (!sc.wanted || !streq_ptr(sc.cur_serial, e->serial) || !streq_ptr(sc.state, "valid") ||
	    busy_has(d->busy_certs, d->n_busy_certs, sc.id) ||
	    (sc.renew_at >= e->start && sc.renew_at < e->end)) {
		ch_store_cert_done(&sc);
		return;
	}
	at = ari_pick(e->start, e->end);
	if (at < now)
		at = now;
	snprintf(detail, sizeof(detail), "the CA suggests %s .. %s; renewal planned at %s%s%s",
		 ch_format_time(e->start, t1, sizeof(t1)), ch_format_time(e->end, t2, sizeof(t2)),
		 ch_format_time(at, t3, sizeof(t3)), e->explanation ? " (see " : "",
		 e->explanation ? e->explanation : "");
	if (e->explanation)
		strncat(detail, ")", sizeof(detail) - strlen(detail) - 1);
	store_txn(d);
	sc.renew_at = at;
	sc.next_at = at;
	ch_store_cert_update(d->store, &sc);
	ch_store_event_add(d->store, now, sc.name, "issue", "renewal-window", detail);
	ch_log_cert(LOG_NOTICE, sc.name, "issue", "Renewal window: %s", detail);
	ch_store_cert_done(&sc);
	if (at <= now)
		sched_kick(d);
}

static void
ari_done(int r, const struct ch_renewal_info *ri, void *arg)
{
	struct ari_call *c = arg;
	struct daemon *d = c->d;
	struct ari_entry *e = d->ari ? ari_find(d->ari, c->cert_id) : NULL;
	int64_t now = ch_now();

	if (e && streq_ptr(e->serial, c->serial)) {
		e->in_flight = false;
		free(e->error);
		e->error = NULL;
		if (r == 0) {
			e->start = ri->start;
			e->end = ri->end;
			e->fetched_at = now;
			e->poll_at = now + ari_clamp_poll(ri->retry_after > 0 ? ri->retry_after :
									      ARI_DEFAULT_POLL);
			free(e->explanation);
			e->explanation = ri->explanation_url[0] ? ch_xstrdup(ri->explanation_url) : NULL;
			ch_log_cert(LOG_DEBUG, c->name, "issue",
				    "ARI window %lld..%lld, next check in %lld s", (long long)e->start,
				    (long long)e->end, (long long)(e->poll_at - now));
			ari_save(d->ari, e);
			ari_apply(d, e);
		} else if (r == -EOPNOTSUPP) {
			e->unsupported = true;
			e->poll_at = now + ARI_MAX_POLL;
		} else {
			e->error = ch_xstrdup(ri && ri->message[0] ? ri->message : strerror(-r));
			e->poll_at = now + ari_clamp_poll(ri && ri->retry_after > 0 ? ri->retry_after :
										    ARI_ERROR_POLL);
			ch_log_cert(LOG_WARNING, c->name, "issue",
				    "Cannot fetch the renewal window: %s; the usual schedule holds",
				    e->error);
		}
		if (d->ari->next_scan > e->poll_at)
			d->ari->next_scan = e->poll_at;
	}
	generation_unref(d, c->gen);
	free(c->serial);
	free(c->name);
	free(c);
	store_flush(d);
	sched_arm(d);
}

struct ari_scan {
	struct daemon *d;
	int64_t *due;
	size_t n_due;
};

static int
ari_scan_cb(const struct ch_store_cert *c, void *arg)
{
	struct ari_scan *sc = arg;
	struct daemon *d = sc->d;
	struct ari *a = d->ari;
	const struct ch_conf_cert *cc;
	struct ch_ca *ca;
	struct ari_entry *e;
	int64_t now = ch_now();

	bool any = false;

	if (!c->wanted || !c->current_issuance || !c->cur_serial ||
	    !(cc = ch_conf_find_cert(d->gen->conf, c->name)))
		return 0;
	for (char **n = cc->s.cas; n && *n && !any; n++)
		any = (ca = daemon_find_ca(d->gen, *n)) && ca->ops->renewal_info;
	if (!any)
		return 0;
	e = ari_find(a, c->id);
	if (!e) {
		if (a->n == a->cap) {
			a->cap = a->cap ? a->cap * 2 : 16;
			a->v = realloc(a->v, a->cap * sizeof(*a->v));
			if (!a->v)
				abort();
		}
		e = &a->v[a->n++];
		*e = (struct ari_entry){ .cert_id = c->id };
	}
	if (!streq_ptr(e->serial, c->cur_serial)) {
		ari_entry_clear(e);
		e->serial = ch_xstrdup(c->cur_serial);
		ari_load(a, e, c->cur_serial);
	}
	if (e->in_flight)
		return 0;
	if (e->poll_at <= now) {
		sc->due = realloc(sc->due, (sc->n_due + 1) * sizeof(*sc->due));
		if (!sc->due)
			abort();
		sc->due[sc->n_due++] = c->id;
		return 0;
	}
	if (a->next_scan > e->poll_at)
		a->next_scan = e->poll_at;
	return 0;
}

static void
ari_start(struct daemon *d, int64_t cert_id)
{
	struct ari_entry *e = ari_find(d->ari, cert_id);
	struct ch_store_cert sc = { 0 };
	struct ch_store_issuance iss = { 0 };
	const struct ch_conf_cert *cc;
	struct ch_ca *ca;
	struct ari_call *c;
	int r;

	if (!e || ch_store_cert_get_by_id(d->store, cert_id, &sc) < 0)
		return;
	cc = ch_conf_find_cert(d->gen->conf, sc.name);
	ca = NULL;
	if (cc && ch_store_issuance_get(d->store, sc.current_issuance, &iss) == 0 && iss.cert_pem &&
	    iss.ca && !iss.adopted)
		for (char **n = cc->s.cas; n && *n && !ca; n++)
			if (streq(*n, iss.ca))
				ca = daemon_find_ca(d->gen, iss.ca);
	if (!ca || !ca->ops->renewal_info) {
		/* Not issued by one of its CAs that has windows (adopted, or the CA changed). */
		e->unsupported = true;
		e->poll_at = ch_now() + ARI_MAX_POLL;
		goto out;
	}
	c = ch_xcalloc(1, sizeof(*c));
	c->d = d;
	c->gen = d->gen;
	c->gen->refs++;
	c->cert_id = cert_id;
	c->serial = ch_xstrdup(e->serial);
	c->name = ch_xstrdup(sc.name);
	e->in_flight = true;
	r = ca->ops->renewal_info(ca->state, iss.cert_pem, ari_done, c);
	if (r < 0) {
		struct ch_renewal_info ri = { 0 };

		snprintf(ri.message, sizeof(ri.message), "%s", strerror(-r));
		ari_done(r, &ri, c);
	}
out:
	ch_store_issuance_done(&iss);
	ch_store_cert_done(&sc);
}

void
ari_run(struct daemon *d)
{
	struct ari *a = d->ari;
	struct ari_scan sc = { d, NULL, 0 };
	int64_t now = ch_now();

	bool any = false;

	if (!a || now < a->next_scan)
		return;
	a->next_scan = now + ARI_SCAN_INTERVAL;
	/* Without a CA that has renewal information there is nothing to scan for. */
	for (size_t i = 0; i < d->gen->n_cas && !any; i++)
		any = d->gen->cas[i]->ops->renewal_info != NULL;
	if (!any)
		return;
	store_flush(d);
	ch_store_cert_foreach(d->store, ari_scan_cb, &sc);
	for (size_t i = 0; i < sc.n_due; i++)
		ari_start(d, sc.due[i]);
	free(sc.due);
	/* A reload or a restart may have planned a renewal outside its window. */
	for (size_t i = 0; i < a->n; i++)
		if (!a->v[i].in_flight && a->v[i].end)
			ari_apply(d, &a->v[i]);
}

void
ari_kick(struct daemon *d)
{
	if (d->ari)
		d->ari->next_scan = 0;
}

int64_t
ari_next_at(struct daemon *d)
{
	return d->ari ? d->ari->next_scan : 0;
}

json_t *
ari_cert_json(struct daemon *d, int64_t cert_id, const char *serial)
{
	struct ari_entry *e = d->ari ? ari_find(d->ari, cert_id) : NULL;

	if (!e || !streq_ptr(e->serial, serial) || (e->unsupported && !e->end))
		return NULL;
	return json_pack("{s:I,s:I,s:I,s:I,s:s?,s:s?}", "start", (json_int_t)e->start, "end",
			 (json_int_t)e->end, "fetched_at", (json_int_t)e->fetched_at, "next_check",
			 (json_int_t)e->poll_at, "explanation_url", e->explanation, "error",
			 e->error);
}

int
ari_setup(struct daemon *d)
{
	struct ari *a = ch_xcalloc(1, sizeof(*a));
	int r;

	a->dir = ch_xasprintf("%s/ari", d->gen->conf->state_dir);
	r = ch_mkdir_p(a->dir, 0755);
	if (r < 0)
		ch_log_warning("ARI: cannot create %s: %s; windows are not kept across restarts",
			       a->dir, strerror(-r));
	d->ari = a;
	return 0;
}

void
ari_free(struct daemon *d)
{
	struct ari *a = d->ari;

	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		ari_entry_clear(&a->v[i]);
	free(a->v);
	free(a->dir);
	free(a);
	d->ari = NULL;
}
