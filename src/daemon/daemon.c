/* SPDX-License-Identifier: MIT */
/*
 * Loading and reloading the configuration as whole generations, and the
 * status reports built from the inventory. A new configuration replaces
 * the running one only when it loads without a single error and every
 * CA in it starts; otherwise the old one keeps running and the errors are
 * kept for `certherd status`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ch-config.h"
#include "certherd/log.h"
#include "certherd/util.h"
#include "certherd/filebatch.h"
#include "daemon.h"

static struct generation *
generation_build(struct daemon *d, struct ch_conf *conf, struct ch_err *err)
{
	struct generation *g = ch_xcalloc(1, sizeof(*g));
	struct ch_ca_env env = { .base = d->base, .state_dir = conf->state_dir };
	int r;

	g->conf = conf;
	g->refs = 1;
	g->cas = ch_xcalloc(conf->n_cas, sizeof(*g->cas));
	for (size_t i = 0; i < conf->n_cas; i++) {
		struct ch_err e = { "" };

		r = ch_ca_new(&conf->cas[i], &env, &g->cas[g->n_cas], &e);
		if (r < 0) {
			ch_err_set(err, r, "CA %s (%s:%u): %s", conf->cas[i].name,
				   conf->cas[i].origin.file, conf->cas[i].origin.line, e.msg);
			g->conf = NULL;
			for (size_t k = 0; k < g->n_cas; k++)
				ch_ca_free(g->cas[k]);
			free(g->cas);
			free(g);
			return NULL;
		}
		g->n_cas++;
	}
	return g;
}

static void
conf_errors_log(const struct ch_conf_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++) {
		_cleanup_free_ char *s = ch_conf_error_format(&errs->v[i]);

		ch_log_error("%s", s);
	}
}

static void
conf_errors_add_plain(struct ch_conf_errors *errs, const char *file, const char *msg)
{
	struct ch_conf_error *v = realloc(errs->v, (errs->n + 1) * sizeof(*v));

	if (!v)
		abort();
	errs->v = v;
	errs->v[errs->n++] = (struct ch_conf_error){
		.file = ch_xstrdup(file),
		.key = ch_xstrdup(""),
		.message = ch_xstrdup(msg),
	};
}

/*
 * Loads the configuration into a new generation and makes it current.
 * first: at start-up, where a failure is fatal. Returns 0 or -errno.
 */
int
daemon_load_config(struct daemon *d, bool first)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *conf = NULL;
	struct generation *g;
	struct ch_err err = { "" };
	int r;

	r = ch_conf_load(d->conf_path, &conf, &errs);
	if (r < 0) {
		conf_errors_log(&errs);
		goto reject;
	}
	if (!first && d->gen &&
	    (!streq(conf->database, d->gen->conf->database) ||
	     !streq(conf->socket, d->gen->conf->socket))) {
		conf_errors_add_plain(&errs, conf->file,
				      "database and socket cannot change on reload; restart "
				      "certherdd to move them");
		ch_conf_free(conf);
		conf_errors_log(&errs);
		r = -EINVAL;
		goto reject;
	}
	r = ch_mkdir_p(conf->state_dir, 0700);
	if (r < 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "cannot create state_dir %s: %s", conf->state_dir,
			 strerror(-r));
		conf_errors_add_plain(&errs, conf->file, msg);
		ch_conf_free(conf);
		conf_errors_log(&errs);
		goto reject;
	}
	g = generation_build(d, conf, &err);
	if (!g) {
		conf_errors_add_plain(&errs, conf->file, err.msg);
		ch_conf_free(conf);
		conf_errors_log(&errs);
		r = -EINVAL;
		goto reject;
	}
	if (d->gen) {
		d->gen->next = d->retired;
		d->retired = d->gen;
		generation_unref(d, d->gen);
	}
	d->gen = g;
	d->gen_seq++;
	ch_conf_errors_clear(&d->conf_errors);
	d->conf_rejected_at = 0;
	d->conf_loaded_at = ch_now();
	return 0;

reject:
	ch_conf_errors_clear(&d->conf_errors);
	d->conf_errors = errs;
	d->conf_rejected_at = ch_now();
	return r < 0 ? r : -EINVAL;
}

int
daemon_reload(struct daemon *d)
{
	int r;

	ch_log_info("Reloading the configuration from %s", d->conf_path);
	r = daemon_load_config(d, false);
	if (r < 0) {
		ch_log_error("The new configuration was rejected (%zu errors); still running on the "
			     "previous one",
			     d->conf_errors.n);
		if (store_txn(d) == 0) {
			char detail[128];

			snprintf(detail, sizeof(detail), "%zu errors", d->conf_errors.n);
			ch_store_event_add(d->store, ch_now(), NULL, "config", "reload-rejected",
					   detail);
		}
		return r;
	}
	if (store_txn(d) == 0)
		ch_store_event_add(d->store, ch_now(), NULL, "config", "reloaded", d->conf_path);
	r = renew_sync_config(d);
	metrics_setup(d);
	crl_setup(d);
	heartbeat_setup(d);
	sched_kick(d);
	ch_log_notice("Configuration reloaded: %zu certificates, %zu CAs, %zu targets",
		      d->gen->conf->n_certs, d->gen->conf->n_cas, d->gen->conf->n_targets);
	return r;
}

struct status_acc {
	struct daemon *d;
	int64_t now;
	json_t *failing;
	json_t *expiring;
	json_t *counts;
	const char *next_name;
	char *next_name_buf;
	int64_t next_at;
	int64_t n;
};

static int
status_cert_cb(const struct ch_store_cert *c, void *arg)
{
	struct status_acc *a = arg;
	const struct ch_conf_cert *cc;
	int64_t warn;

	if (!c->wanted)
		return 0;
	a->n++;
	if ((streq(c->state, "failing") || streq_ptr(c->last_outcome, "budget-exhausted")) &&
	    json_array_size(a->failing) < 100)
		json_array_append_new(a->failing,
				      json_pack("{s:s,s:s,s:s?,s:s?,s:i,s:I,s:I}", "name", c->name,
						"stage", "issue", "outcome", c->last_outcome,
						"error", c->last_error, "failures", c->failures,
						"last_attempt_at", (json_int_t)c->last_attempt_at,
						"next_attempt_at", (json_int_t)c->next_at));
	cc = ch_conf_find_cert(a->d->gen->conf, c->name);
	/* Unless configured: half of the slack between planned renewal and expiry is gone. */
	warn = cc && cc->s.warn_before ? cc->s.warn_before : 0;
	if (warn == 0 && c->cur_not_after && c->renew_at)
		warn = (c->cur_not_after - c->renew_at) / 2;
	if (c->cur_not_after && c->cur_not_after - a->now < warn &&
	    json_array_size(a->expiring) < 100)
		json_array_append_new(a->expiring,
				      json_pack("{s:s,s:s?,s:I,s:b}", "name", c->name, "serial",
						c->cur_serial, "not_after",
						(json_int_t)c->cur_not_after, "expired",
						c->cur_not_after <= a->now));
	if (c->next_at > 0 && (!a->next_at || c->next_at < a->next_at)) {
		a->next_at = c->next_at;
		free(a->next_name_buf);
		a->next_name_buf = ch_xstrdup(c->name);
	}
	return 0;
}

static void
status_count_cb(const char *state, int64_t n, void *arg)
{
	struct status_acc *a = arg;

	json_object_set_new(a->counts, state, json_integer(n));
}

static int
status_dep_cb(const struct ch_store_deployment *dep, void *arg)
{
	json_t *arr = arg;

	if (json_array_size(arr) < 100)
		json_array_append_new(
			arr, json_pack("{s:s?,s:s,s:s,s:s?,s:i,s:I,s:I}", "name", dep->cert_name,
				       "stage", "deploy", "target", dep->target, "error",
				       dep->last_error, "attempts", dep->attempts, "attempted_at",
				       (json_int_t)dep->attempted_at, "next_attempt_at",
				       (json_int_t)dep->next_at));
	return 0;
}

struct status_ep {
	int64_t now, grace;
	json_t *failing;
	json_t *settling;
};

static int
status_ep_cb(const struct ch_store_endpoint *e, void *arg)
{
	struct status_ep *a = arg;
	json_t *arr = a->now - e->state_since > a->grace ? a->failing : a->settling;

	if (json_array_size(arr) < 100)
		json_array_append_new(
			arr, json_pack("{s:s?,s:s,s:s,s:s?,s:I,s:I,s:I,s:s?}", "name", e->cert_name,
				       "endpoint", e->endpoint, "state", e->state, "serial", e->serial,
				       "not_after", (json_int_t)e->not_after, "since",
				       (json_int_t)e->state_since, "checked_at",
				       (json_int_t)e->checked_at, "message", e->message));
	return 0;
}

/* Whether the inventory takes writes; when not, since when, why and the next attempt. */
static json_t *
store_status_json(struct daemon *d, int64_t now)
{
	int64_t next_at = now + store_retry_in(d);

	if (!d->store_failures)
		return json_pack("{s:s,s:s}", "state", "ok", "database", d->gen->conf->database);
	return json_pack("{s:s,s:s,s:s,s:i,s:I,s:I}", "state",
			 d->store_errno == -EBUSY ? "locked" : "failing", "database",
			 d->gen->conf->database, "error", d->store_error, "failures",
			 d->store_failures, "since", (json_int_t)d->store_failing_since,
			 "next_attempt_at", (json_int_t)next_at);
}

int64_t
daemon_files_stalled(struct daemon *d, char *buf, size_t len)
{
	size_t queued;
	int64_t since = ch_filebatch_worker_step(d->batch, buf, len, &queued);
	int64_t age = since ? ch_mono_usec() - since : 0;

	return since && age >= d->files_stall_usec ? age / CH_USEC_PER_SEC : 0;
}

/*
 * The file writer: "idle", "writing", or "stalled" when one file system
 * call has not returned for files_stall_usec (a hung network file
 * system): no other file is written until it returns.
 */
static json_t *
files_status_json(struct daemon *d)
{
	char at[512];
	size_t queued;
	int64_t since = ch_filebatch_worker_step(d->batch, at, sizeof(at), &queued);
	int64_t age = since ? ch_mono_usec() - since : 0;

	if (!since)
		return json_pack("{s:s,s:i}", "state", "idle", "queued", 0);
	return json_pack("{s:s,s:I,s:s,s:I}", "state",
			 age >= d->files_stall_usec ? "stalled" : "writing", "queued",
			 (json_int_t)queued, "at", at, "step_seconds",
			 (json_int_t)(age / CH_USEC_PER_SEC));
}

json_t *
daemon_status_json(struct daemon *d)
{
	struct status_acc a = {
		.d = d,
		.now = ch_now(),
		.failing = json_array(),
		.expiring = json_array(),
		.counts = json_object(),
	};
	json_t *deps_failing = json_array();
	json_t *cerrs = json_array();
	const char *health;
	char at[512];
	int64_t files_stalled = daemon_files_stalled(d, at, sizeof(at));

	store_flush(d);
	ch_store_cert_foreach(d->store, status_cert_cb, &a);
	ch_store_cert_count_by_state(d->store, status_count_cb, &a);
	ch_store_deployment_foreach_failed(d->store, status_dep_cb, deps_failing);
	struct status_ep ep = { a.now, d->gen->conf->stale_grace, json_array(), json_array() };

	ch_store_endpoint_foreach_problem(d->store, status_ep_cb, &ep);
	for (size_t i = 0; i < d->conf_errors.n; i++) {
		char *s = ch_conf_error_format(&d->conf_errors.v[i]);

		json_array_append_new(cerrs, json_string(s));
		free(s);
	}
	if (d->store_failures || files_stalled || json_array_size(a.failing) ||
	    json_array_size(deps_failing) ||
	    json_array_size(a.expiring) || json_array_size(ep.failing))
		health = "failing";
	else if (d->conf_errors.n)
		health = "degraded";
	else
		health = "ok";

	json_t *r = json_pack(
		"{s:b,s:s,s:s,s:i,s:I,s:I,s:{s:s,s:I,s:I,s:o},s:I,s:o,s:{s:s?,s:I},s:o,s:o,s:o,s:o,"
		"s:o}",
		"ok", 1, "version", CH_VERSION, "health", health, "pid", (int)getpid(),
		"started_at", (json_int_t)d->started_at, "now", (json_int_t)a.now, "config", "file",
		d->conf_path, "loaded_at", (json_int_t)d->conf_loaded_at, "rejected_at",
		(json_int_t)d->conf_rejected_at, "errors", cerrs, "certificates", (json_int_t)a.n,
		"counts", a.counts, "next_renewal", "name", a.next_name_buf, "at",
		(json_int_t)a.next_at, "failing", a.failing, "deployments_failing", deps_failing,
		"expiring", a.expiring, "endpoints_failing", ep.failing, "endpoints_settling",
		ep.settling);
	free(a.next_name_buf);
	json_object_set_new(r, "inventory", store_status_json(d, a.now));
	json_object_set_new(r, "files", files_status_json(d));
	json_object_set_new(r, "budgets", budget_status_json(d));
	alert_status_json(d, r);
	heartbeat_status_json(d, r);
	return r;
}

char *
daemon_status_line(struct daemon *d)
{
	json_t *s = daemon_status_json(d);
	char at[512];
	char *line;

	line = ch_xasprintf("%s: %lld certificates, %zu failing, %zu deployments failing, "
			    "%zu endpoints stale%s%s%s",
			    json_string_value(json_object_get(s, "health")),
			    (long long)json_integer_value(json_object_get(s, "certificates")),
			    json_array_size(json_object_get(s, "failing")),
			    json_array_size(json_object_get(s, "deployments_failing")),
			    json_array_size(json_object_get(s, "endpoints_failing")),
			    d->conf_errors.n ? ", config rejected" : "",
			    d->store_failures ? ", inventory not writable" : "",
			    daemon_files_stalled(d, at, sizeof(at)) ? ", file writes stalled" : "");
	json_decref(s);
	return line;
}
