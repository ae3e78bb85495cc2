/* SPDX-License-Identifier: MIT */
/*
 * /metrics (Prometheus text format 0.0.4) and /healthz over HTTP with
 * libevent's evhttp, on the `metrics_listen` address. Gauges come from the
 * inventory in one pass over the certificates when scraped; counters of
 * renewals, deployments and CA requests and the CA request duration
 * histogram live in memory and start from zero at every start. Labels are
 * only names from the configuration and state words, never serials or
 * messages, so the number of series stays bounded by the configuration.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ch-config.h"
#include "certherd/log.h"
#include "certherd/metrics.h"
#include "certherd/util.h"
#include "daemon.h"

/* The scheduler runs at least once a minute while anything is scheduled. */
#define METRICS_LOOP_STALE 180

#define CONTENT_TYPE_PROM "text/plain; version=0.0.4; charset=utf-8"

/* The values each state label can take; the current one is 1, the others 0. */
static const char *const cert_states[] = { "new", "valid", "issuing", "failing" };
static const char *const dep_states[] = { "pending", "deployed", "failed", "superseded" };
static const char *const ep_states[] = { "unknown",	"verified",    "stale",
					 "foreign",	"unreachable", "handshake-error" };
/* Results counted per CA; they are the CA outcomes plus local-error. */
static const char *const renew_results[] = { "issued",	      "pending",       "rejected",
					     "ca-unreachable", "misconfigured", "local-error" };
static const char *const deploy_results[] = { "deployed", "failed" };

/* Upper bounds of the CA request duration buckets, seconds. */
static const double ca_duration_bounds[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 };

struct metrics_counter {
	char *a, *b; /* label values, e.g. ca and result */
	uint64_t v;
};

struct metrics_counters {
	struct metrics_counter *v;
	size_t n, cap;
};

struct metrics_hist {
	char *ca;
	struct ch_metrics_histogram h;
};

struct metrics {
	struct daemon *d;
	struct evhttp *http;
	char *listen; /* address bound; NULL when off */

	struct metrics_counters renewals;    /* ca, result */
	struct metrics_counters deployments; /* target, result */
	struct metrics_counters ca_requests; /* ca, result */
	struct metrics_hist *ca_durations;
	size_t n_ca_durations;
};

static struct metrics *
metrics_get(struct daemon *d)
{
	if (!d->metrics) {
		d->metrics = ch_xcalloc(1, sizeof(*d->metrics));
		d->metrics->d = d;
	}
	return d->metrics;
}

static uint64_t *
counter_slot(struct metrics_counters *c, const char *a, const char *b)
{
	a = a ? a : "";
	b = b ? b : "";
	for (size_t i = 0; i < c->n; i++)
		if (streq(c->v[i].a, a) && streq(c->v[i].b, b))
			return &c->v[i].v;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 32;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (!c->v)
			abort();
	}
	c->v[c->n] = (struct metrics_counter){ ch_xstrdup(a), ch_xstrdup(b), 0 };
	return &c->v[c->n++].v;
}

static void
counters_free(struct metrics_counters *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].a);
		free(c->v[i].b);
	}
	free(c->v);
	*c = (struct metrics_counters){ 0 };
}

static struct ch_metrics_histogram *
hist_slot(struct metrics *m, const char *ca)
{
	ca = ca ? ca : "";
	for (size_t i = 0; i < m->n_ca_durations; i++)
		if (streq(m->ca_durations[i].ca, ca))
			return &m->ca_durations[i].h;
	m->ca_durations = realloc(m->ca_durations,
				  (m->n_ca_durations + 1) * sizeof(*m->ca_durations));
	if (!m->ca_durations)
		abort();
	m->ca_durations[m->n_ca_durations] = (struct metrics_hist){ .ca = ch_xstrdup(ca) };
	return &m->ca_durations[m->n_ca_durations++].h;
}

void
metrics_count_renewal(struct daemon *d, const char *ca, const char *result)
{
	(*counter_slot(&metrics_get(d)->renewals, ca, result))++;
}

void
metrics_count_deployment(struct daemon *d, const char *target, const char *result)
{
	(*counter_slot(&metrics_get(d)->deployments, target, result))++;
}

void
metrics_observe_ca_request(struct daemon *d, const char *ca, const char *result, double seconds)
{
	struct metrics *m = metrics_get(d);

	(*counter_slot(&m->ca_requests, ca, result))++;
	ch_metrics_histogram_observe(hist_slot(m, ca), ca_duration_bounds,
				     ARRAY_SIZE(ca_duration_bounds), seconds < 0 ? 0 : seconds);
}

/* ---- /metrics ------------------------------------------------------------ */

enum {
	F_EXPIRY,
	F_NEXT_RENEWAL,
	F_LAST_ATTEMPT,
	F_LAST_SUCCESS,
	F_FAILURES,
	F_CERT_STATE,
	F_DEP_STATE,
	F_EP_STATE,
	F_EP_VERIFIED,
	_F_MAX,
};

static const struct {
	const char *name, *type, *help;
} families[_F_MAX] = {
	[F_EXPIRY] = { "certherd_certificate_expiry_timestamp_seconds", "gauge",
		       "notAfter of the certificate's current issuance." },
	[F_NEXT_RENEWAL] = { "certherd_certificate_next_renewal_timestamp_seconds", "gauge",
			     "When the next renewal is due: the planned renewal time, or the "
			     "next attempt while a renewal is running or failing." },
	[F_LAST_ATTEMPT] = { "certherd_certificate_last_attempt_timestamp_seconds", "gauge",
			     "When a renewal of the certificate was last started." },
	[F_LAST_SUCCESS] = { "certherd_certificate_last_success_timestamp_seconds", "gauge",
			     "When a renewal of the certificate last succeeded." },
	[F_FAILURES] = { "certherd_certificate_consecutive_failures", "gauge",
			 "Renewal attempts that failed since the last success." },
	[F_CERT_STATE] = { "certherd_certificate_state", "gauge",
			   "1 for the certificate's current renewal state, 0 for the others." },
	[F_DEP_STATE] = { "certherd_deployment_state", "gauge",
			  "1 for the state of the current issuance's deployment to a target, "
			  "0 for the others." },
	[F_EP_STATE] = { "certherd_endpoint_state", "gauge",
			 "1 for what an endpoint was last found serving, 0 for the others." },
	[F_EP_VERIFIED] = { "certherd_endpoint_verified_timestamp_seconds", "gauge",
			    "When the endpoint was last seen serving the current issuance." },
};

struct metrics_build {
	struct daemon *d;
	const struct ch_conf *conf;
	const char *cert; /* during the per-certificate callbacks */
	struct ch_metrics_buf f[_F_MAX];
	size_t n_certs;
	int r;
};

/* One series per possible state; an unlisted stored state is added with 1. */
static void
write_enum(struct ch_metrics_buf *b, const char *name, const char **labels, size_t n_labels,
	   const char *const *states, size_t n_states, const char *cur)
{
	bool found = false;

	labels[n_labels] = "state";
	labels[n_labels + 2] = NULL;
	for (size_t i = 0; i < n_states; i++) {
		bool on = cur && streq(states[i], cur);

		found = found || on;
		labels[n_labels + 1] = states[i];
		ch_metrics_sample_int(b, name, labels, on);
	}
	if (!found && cur) {
		labels[n_labels + 1] = cur;
		ch_metrics_sample_int(b, name, labels, 1);
	}
}

static int
build_dep_cb(const struct ch_store_deployment *dep, void *arg)
{
	struct metrics_build *mb = arg;
	const char *labels[7] = { "certificate", mb->cert, "target", dep->target };

	write_enum(&mb->f[F_DEP_STATE], families[F_DEP_STATE].name, labels, 4, dep_states,
		   ARRAY_SIZE(dep_states), dep->state);
	return 0;
}

static int
build_ep_cb(const struct ch_store_endpoint *e, void *arg)
{
	struct metrics_build *mb = arg;
	const char *labels[7] = { "certificate", mb->cert, "endpoint", e->endpoint };

	write_enum(&mb->f[F_EP_STATE], families[F_EP_STATE].name, labels, 4, ep_states,
		   ARRAY_SIZE(ep_states), e->state);
	labels[4] = NULL;
	if (e->verified_at > 0)
		ch_metrics_sample_int(&mb->f[F_EP_VERIFIED], families[F_EP_VERIFIED].name, labels,
				      e->verified_at);
	return 0;
}

static void
build_gauge(struct metrics_build *mb, int f, const char *const *labels, int64_t v)
{
	if (v > 0)
		ch_metrics_sample_int(&mb->f[f], families[f].name, labels, v);
}

static int
build_cert_cb(const struct ch_store_cert *c, void *arg)
{
	struct metrics_build *mb = arg;
	const struct ch_conf_cert *cc;
	const char *labels[5] = { "certificate", c->name };
	int64_t next;
	int r;

	if (!c->wanted)
		return 0;
	mb->n_certs++;
	mb->cert = c->name;
	build_gauge(mb, F_EXPIRY, labels, c->cur_not_after);
	next = c->state && streq(c->state, "valid") && !c->force ? c->renew_at : c->next_at;
	build_gauge(mb, F_NEXT_RENEWAL, labels, next);
	build_gauge(mb, F_LAST_ATTEMPT, labels, c->last_attempt_at);
	build_gauge(mb, F_LAST_SUCCESS, labels, c->last_success_at);
	ch_metrics_sample_int(&mb->f[F_FAILURES], families[F_FAILURES].name, labels, c->failures);
	write_enum(&mb->f[F_CERT_STATE], families[F_CERT_STATE].name, labels, 2, cert_states,
		   ARRAY_SIZE(cert_states), c->state);
	if (c->current_issuance) {
		r = ch_store_deployment_foreach_for_issuance(mb->d->store, c->current_issuance,
							     build_dep_cb, mb);
		if (r < 0)
			return r;
	}
	cc = ch_conf_find_cert(mb->conf, c->name);
	if (cc && cc->s.endpoints && cc->s.endpoints[0]) {
		r = ch_store_endpoint_foreach_for_cert(mb->d->store, c->id, build_ep_cb, mb);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Why the daemon is unhealthy, or NULL when it is healthy. */
static const char *
metrics_health(struct daemon *d, char *buf, size_t len)
{
	struct ch_store_cert sc = { 0 };
	int r;

	if (d->stopping)
		return "stopping";
	if (!d->last_loop_at)
		return "the scheduler has not run yet";
	if (sched_loop_age(d) > METRICS_LOOP_STALE) {
		snprintf(buf, len, "the scheduler last ran %llds ago",
			 (long long)sched_loop_age(d));
		return buf;
	}
	r = ch_store_cert_next_due(d->store, &sc);
	ch_store_cert_done(&sc);
	if (r < 0 && r != -ENOENT) {
		snprintf(buf, len, "the inventory cannot be read: %s", strerror(-r));
		return buf;
	}
	if (d->store_failures)
		return d->store_error;
	{
		char at[512];
		int64_t stalled = daemon_files_stalled(d, at, sizeof(at));

		if (stalled) {
			snprintf(buf, len, "file writes stalled: %s has not returned for %llds",
				 at, (long long)stalled);
			return buf;
		}
	}
	return NULL;
}

static void
write_counters(struct ch_metrics_buf *b, const char *name, const char *help, const char *la,
	       const char *lb, const struct metrics_counters *c)
{
	ch_metrics_family(b, name, "counter", help);
	for (size_t i = 0; i < c->n; i++)
		ch_metrics_sample_int(b, name, (const char *[]){ la, c->v[i].a, lb, c->v[i].b, NULL },
				      (int64_t)c->v[i].v);
}

static void
write_gauge(struct ch_metrics_buf *b, const char *name, const char *help, int64_t v)
{
	ch_metrics_family(b, name, "gauge", help);
	ch_metrics_sample_int(b, name, NULL, v);
}

/*
 * Builds the whole exposition into *ret (the caller frees it with
 * ch_metrics_buf_done). Returns 0 or -errno.
 */
int
metrics_render(struct daemon *d, struct ch_metrics_buf *ret)
{
	struct metrics *m = metrics_get(d);
	struct metrics_build mb = { .d = d, .conf = d->gen->conf };
	struct ch_metrics_buf *b = ret;
	char why[640];
	int r;

	/* Every configured CA and target has its counters, from 0. */
	for (size_t i = 0; i < mb.conf->n_cas; i++) {
		for (size_t k = 0; k < ARRAY_SIZE(renew_results); k++) {
			counter_slot(&m->renewals, mb.conf->cas[i].name, renew_results[k]);
			counter_slot(&m->ca_requests, mb.conf->cas[i].name, renew_results[k]);
		}
		hist_slot(m, mb.conf->cas[i].name);
	}
	for (size_t i = 0; i < mb.conf->n_targets; i++)
		for (size_t k = 0; k < ARRAY_SIZE(deploy_results); k++)
			counter_slot(&m->deployments, mb.conf->targets[i].name, deploy_results[k]);

	for (int f = 0; f < _F_MAX; f++)
		ch_metrics_family(&mb.f[f], families[f].name, families[f].type, families[f].help);
	store_flush(d);
	r = ch_store_cert_foreach(d->store, build_cert_cb, &mb);

	*b = (struct ch_metrics_buf){ 0 };
	ch_metrics_family(b, "certherd_build_info", "gauge",
			  "Always 1; the version label says which certherd runs.");
	ch_metrics_sample_int(b, "certherd_build_info",
			      (const char *[]){ "version", CH_VERSION, NULL }, 1);
	write_gauge(b, "certherd_start_time_seconds", "When certherdd started.", d->started_at);
	write_gauge(b, "certherd_healthy",
		    "1 when /healthz answers 200: the scheduler ran recently and the inventory "
		    "is readable.",
		    r >= 0 && !metrics_health(d, why, sizeof(why)));
	write_gauge(b, "certherd_scheduler_last_loop_timestamp_seconds",
		    "When the scheduler loop last ran.", d->last_loop_at);
	write_gauge(b, "certherd_inventory_writable",
		    "0 while the inventory refuses writes (disk full, locked by another "
		    "process), else 1.",
		    d->store_failures == 0);
	{
		char at[512];

		write_gauge(b, "certherd_file_writes_stalled",
			    "1 while the file writer has been stuck in one file system call "
			    "(a hung network file system) for long enough to count as stalled, "
			    "else 0.",
			    daemon_files_stalled(d, at, sizeof(at)) > 0);
	}
	write_gauge(b, "certherd_config_last_reload_success_timestamp_seconds",
		    "When the running configuration was loaded.", d->conf_loaded_at);
	write_gauge(b, "certherd_config_last_reload_successful",
		    "0 when the last configuration reload was rejected, 1 otherwise.",
		    d->conf_rejected_at == 0);
	write_gauge(b, "certherd_certificates", "Certificates in the configuration.",
		    (int64_t)mb.n_certs);
	for (int f = 0; f < _F_MAX; f++) {
		ch_metrics_buf_append(b, mb.f[f].data ? mb.f[f].data : "", mb.f[f].len);
		b->oom = b->oom || mb.f[f].oom;
		ch_metrics_buf_done(&mb.f[f]);
	}
	write_counters(b, "certherd_renewals_total", "Renewals finished, by CA and result.", "ca",
		       "result", &m->renewals);
	write_counters(b, "certherd_deployments_total", "Deployments finished, by target and result.",
		       "target", "result", &m->deployments);
	write_counters(b, "certherd_ca_requests_total",
		       "Requests to a CA backend, by CA and the outcome it reported.", "ca",
		       "result", &m->ca_requests);
	ch_metrics_family(b, "certherd_ca_request_duration_seconds", "histogram",
			  "Time from asking a CA for a certificate until it answered.");
	for (size_t i = 0; i < m->n_ca_durations; i++)
		ch_metrics_histogram_write(b, "certherd_ca_request_duration_seconds",
					   (const char *[]){ "ca", m->ca_durations[i].ca, NULL },
					   &m->ca_durations[i].h, ca_duration_bounds,
					   ARRAY_SIZE(ca_duration_bounds));
	alert_metrics(d, b);
	budget_metrics(d, b);
	rehearse_metrics(d, b);
	if (r < 0) {
		ch_metrics_buf_done(b);
		return r;
	}
	if (b->oom) {
		ch_metrics_buf_done(b);
		return -ENOMEM;
	}
	return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

static void
serve_metrics(struct metrics *m, struct evhttp_request *req)
{
	struct ch_metrics_buf b = { 0 };
	struct evbuffer *out;
	int64_t t0 = ch_mono_usec();
	int r;

	r = metrics_render(m->d, &b);
	if (r < 0) {
		ch_log_error("Cannot build /metrics: %s", strerror(-r));
		httpd_reply_text(req, 500, "Internal Server Error", "cannot read the inventory");
		return;
	}
	ch_log_debug("/metrics: %zu bytes in %.1f ms", b.len, (ch_mono_usec() - t0) / 1000.0);
	out = evbuffer_new();
	if (!out || evbuffer_add(out, b.data, b.len) < 0) {
		ch_metrics_buf_done(&b);
		if (out)
			evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	ch_metrics_buf_done(&b);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  CONTENT_TYPE_PROM);
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void
serve_healthz(struct metrics *m, struct evhttp_request *req)
{
	char buf[640];
	const char *why = metrics_health(m->d, buf, sizeof(buf));

	if (why)
		httpd_reply_text(req, 503, "Service Unavailable", why);
	else
		httpd_reply_text(req, HTTP_OK, "OK", "ok");
}

static void
metrics_http_cb(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	bool is_metrics = path && streq(path, "/metrics");
	bool is_healthz = path && streq(path, "/healthz");

	if (!is_metrics && !is_healthz) {
		httpd_reply_text(req, HTTP_NOTFOUND, "Not Found", "not found; try /metrics or /healthz");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		httpd_reply_text(req, 405, "Method Not Allowed", "only GET and HEAD");
		return;
	}
	if (is_metrics)
		serve_metrics(m, req);
	else
		serve_healthz(m, req);
}

static struct evhttp *
metrics_listen(struct metrics *m, const char *addr)
{
	_cleanup_free_ char *host = NULL;
	struct evhttp *http;
	uint16_t port;

	if (ch_metrics_parse_listen(addr, &host, &port) < 0) {
		ch_log_error("metrics_listen: cannot parse \"%s\"", addr);
		return NULL;
	}
	http = httpd_listen(m->d, host, port, metrics_http_cb, m);
	if (!http)
		ch_log_error("Cannot listen for /metrics on %s: %m", addr);
	return http;
}

/*
 * Opens, moves or closes the listener to match the current
 * configuration's metrics_listen. When the new address cannot be bound,
 * the old listener (if any) stays and the next reload tries again.
 * Returns 0 or -errno (logged).
 */
int
metrics_setup(struct daemon *d)
{
	struct metrics *m = metrics_get(d);
	const char *want = d->gen->conf->metrics_listen;
	struct evhttp *http;

	if (ch_metrics_listen_disabled(want)) {
		if (m->http) {
			ch_log_notice("Metrics listener on %s closed", m->listen);
			evhttp_free(m->http);
		}
		m->http = NULL;
		free(m->listen);
		m->listen = NULL;
		return 0;
	}
	if (m->http && streq(m->listen, want))
		return 0;
	http = metrics_listen(m, want);
	if (!http)
		return -EADDRNOTAVAIL;
	if (m->http)
		evhttp_free(m->http);
	m->http = http;
	free(m->listen);
	m->listen = ch_xstrdup(want);
	ch_log_info("Serving /metrics and /healthz on http://%s", want);
	return 0;
}

void
metrics_free(struct daemon *d)
{
	struct metrics *m = d->metrics;

	if (!m)
		return;
	if (m->http)
		evhttp_free(m->http);
	free(m->listen);
	counters_free(&m->renewals);
	counters_free(&m->deployments);
	counters_free(&m->ca_requests);
	for (size_t i = 0; i < m->n_ca_durations; i++)
		free(m->ca_durations[i].ca);
	free(m->ca_durations);
	free(m);
	d->metrics = NULL;
}
