/* SPDX-License-Identifier: MIT */
/*
 * Local budgets for the rate limits of each CA (budget: under a CA, with
 * Let's Encrypt's published limits as the default for its directory).
 * Uses are kept in the inventory (ca_usage), so they survive restarts: a
 * new certificate counts against every registered domain among its names
 * when it is sent to the CA, and is taken back if the CA does not issue
 * it; a rejected attempt counts as a failed validation. Renewals of the
 * same names from the same CA are exempt from the per-domain limit, as at
 * Let's Encrypt. Registered domains come from Debian's public suffix list
 * when it is installed, else from the last two labels of each name.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "certherd/budget.h"
#include "certherd/crypto.h"
#include "certherd/log.h"
#include "certherd/metrics.h"
#include "certherd/store.h"
#include "certherd/util.h"
#include "daemon.h"

#define BUDGET_KEEP (8 * 86400) /* uses older than the longest window, and a day */

void
budget_setup(struct daemon *d)
{
	int r = ch_psl_load(CH_PSL_PATH, &d->psl);

	if (r < 0)
		ch_log_notice("No public suffix list at %s (%s): budgets count registered "
			      "domains as the last two labels of each name",
			      CH_PSL_PATH, strerror(-r));
	else
		ch_log_debug("Public suffix list: %zu rules", ch_psl_size(d->psl));
	store_txn(d);
	ch_store_usage_prune(d->store, ch_now() - BUDGET_KEEP);
}

void
budget_free(struct daemon *d)
{
	d->psl = ch_psl_free(d->psl);
}

/* The limits of CA name in the running configuration. */
static bool
budget_limits(struct daemon *d, const char *name, struct ch_budget_limits *ret)
{
	const struct ch_conf_ca *ca = ch_conf_find_ca(d->gen->conf, name);
	const char *dir = NULL;

	*ret = (struct ch_budget_limits){ 0 };
	if (!ca)
		return false;
	if (ca->ops && ca->ops->directory && ca->opts)
		dir = ca->ops->directory(ca->opts);
	ch_budget_limits_resolve(&ca->budget, dir, ret);
	for (int l = 0; l < _CH_BUDGET_LIMIT_MAX; l++)
		if (ret->max[l] > 0)
			return true;
	return false;
}

/* The registered domains of a certificate's DNS names, each once. */
static char **
budget_domains(struct daemon *d, const struct ch_conf_cert *cc)
{
	size_t n = ch_strv_length(cc->dns_names), k = 0;
	char **v = ch_xcalloc(n + 1, sizeof(*v));
	char buf[256];

	for (size_t i = 0; i < n; i++) {
		const char *dom = ch_registered_domain(d->psl, cc->dns_names[i], buf, sizeof(buf));
		bool seen = !*dom;

		for (size_t j = 0; j < k && !seen; j++)
			seen = streq(v[j], dom);
		if (!seen)
			v[k++] = ch_xstrdup(dom);
	}
	return v;
}

/* Remaining tokens of one limit for one domain, and when the next frees. */
static int
budget_domain_eval(struct daemon *d, const char *ca, enum ch_budget_limit l, int64_t max,
		   const char *domain, const char *except_idem, int64_t now, int64_t *ret_remaining,
		   int64_t *ret_frees_at)
{
	int64_t window = ch_budget_limit_window(l), *used = NULL;
	size_t n = 0;
	int r;

	r = ch_store_usage_times(d->store, ca, ch_budget_limit_to_string(l), domain, now - window,
				 except_idem, &used, &n);
	if (r < 0)
		return r;
	ch_budget_eval(max, window, used, n, now, ret_remaining, ret_frees_at);
	free(used);
	return 0;
}

bool
budget_renewal_exempt(struct daemon *d, const struct ch_conf_cert *cc,
		      const struct ch_store_cert *sc, const char *ca)
{
	struct ch_store_issuance cur = { 0 };
	struct ch_budget_limits lim;
	X509 *x = NULL;
	bool same = false;

	/* Only the certificates-per-domain limit exempts renewals: without it, no parse. */
	if (!budget_limits(d, ca, &lim) || lim.max[CH_BUDGET_CERTS_PER_DOMAIN] <= 0)
		return false;
	if (!sc->current_issuance || ch_store_issuance_get(d->store, sc->current_issuance, &cur) < 0)
		return false;
	if (!cur.adopted && streq_ptr(cur.ca, ca) && cur.cert_pem &&
	    ch_cert_from_pem(cur.cert_pem, strlen(cur.cert_pem), &x, NULL) == 0)
		same = ch_cert_names_match(x, cc->dns_names, cc->ip_names);
	X509_free(x);
	ch_store_issuance_done(&cur);
	return same;
}

bool
budget_allows(struct daemon *d, const struct ch_conf_cert *cc, const char *ca, const char *idem,
	      bool exempt, char *why, size_t len, int64_t *ret_frees_at)
{
	struct ch_budget_limits lim;
	_cleanup_strv_free_ char **domains = NULL;
	int64_t now = ch_now(), frees = 0;
	bool ok = true;

	if (!budget_limits(d, ca, &lim))
		return true;
	domains = budget_domains(d, cc);
	for (int l = 0; l < _CH_BUDGET_LIMIT_MAX; l++) {
		if (lim.max[l] <= 0 || (exempt && l == CH_BUDGET_CERTS_PER_DOMAIN))
			continue;
		for (char **dom = domains; *dom; dom++) {
			int64_t rem, at;
			char t[32];

			if (budget_domain_eval(d, ca, l, lim.max[l], *dom, idem, now, &rem, &at) < 0)
				continue;
			if (rem >= 1)
				continue;
			if (ok)
				snprintf(why, len,
					 "budget of CA %s exhausted: %s (%lld) for %s, 0 remaining; "
					 "frees at %s",
					 ca, ch_budget_limit_to_string(l), (long long)lim.max[l], *dom,
					 ch_format_time(at, t, sizeof(t)));
			ok = false;
			if (at > frees)
				frees = at;
		}
	}
	*ret_frees_at = frees;
	return ok;
}

void
budget_spend(struct daemon *d, const struct ch_conf_cert *cc, const char *ca, const char *idem)
{
	struct ch_budget_limits lim;
	_cleanup_strv_free_ char **domains = NULL;
	const char *kind = ch_budget_limit_to_string(CH_BUDGET_CERTS_PER_DOMAIN);

	if (!budget_limits(d, ca, &lim) || lim.max[CH_BUDGET_CERTS_PER_DOMAIN] <= 0)
		return;
	domains = budget_domains(d, cc);
	store_txn(d);
	for (char **dom = domains; *dom; dom++)
		ch_store_usage_add(d->store, ca, kind, *dom, ch_now(), cc->name, idem);
}

void
budget_refund(struct daemon *d, const char *ca, const char *idem)
{
	store_txn(d);
	ch_store_usage_drop(d->store, ca, ch_budget_limit_to_string(CH_BUDGET_CERTS_PER_DOMAIN),
			    idem);
}

void
budget_failed_validation(struct daemon *d, const struct ch_conf_cert *cc, const char *ca)
{
	struct ch_budget_limits lim;
	_cleanup_strv_free_ char **domains = NULL;
	const char *kind = ch_budget_limit_to_string(CH_BUDGET_FAILED_VALIDATIONS);

	if (!budget_limits(d, ca, &lim) || lim.max[CH_BUDGET_FAILED_VALIDATIONS] <= 0)
		return;
	domains = budget_domains(d, cc);
	store_txn(d);
	for (char **dom = domains; *dom; dom++)
		ch_store_usage_add(d->store, ca, kind, *dom, ch_now(), cc->name, NULL);
}

struct budget_walk {
	struct daemon *d;
	const char *ca;
	enum ch_budget_limit l;
	int64_t max, now;
	int64_t min_remaining;
	json_t *domains;
};

static int
budget_walk_domain(const char *domain, void *arg)
{
	struct budget_walk *w = arg;
	int64_t rem, at;

	if (budget_domain_eval(w->d, w->ca, w->l, w->max, domain, NULL, w->now, &rem, &at) < 0)
		return 0;
	if (rem < w->min_remaining)
		w->min_remaining = rem;
	if (w->domains && json_array_size(w->domains) < 100)
		json_array_append_new(w->domains, json_pack("{s:s,s:I,s:I}", "domain", domain,
							    "remaining", (json_int_t)rem,
							    "frees_at",
							    (json_int_t)(rem > 0 ? 0 : at)));
	return 0;
}

/*
 * Calls fn for every CA and limit that has one: the least remaining over
 * the registered domains that used it (the limit itself when none did),
 * and with domains set, one entry per such domain.
 */
static void
budget_foreach(struct daemon *d, bool with_domains,
	       void (*fn)(const char *ca, enum ch_budget_limit l, int64_t max, int64_t remaining,
			  json_t *domains, void *arg),
	       void *arg)
{
	const struct ch_conf *conf = d->gen->conf;
	int64_t now = ch_now();

	store_flush(d);
	for (size_t i = 0; i < conf->n_cas; i++) {
		struct ch_budget_limits lim;

		if (!budget_limits(d, conf->cas[i].name, &lim))
			continue;
		for (int l = 0; l < _CH_BUDGET_LIMIT_MAX; l++) {
			struct budget_walk w = {
				.d = d,
				.ca = conf->cas[i].name,
				.l = l,
				.max = lim.max[l],
				.now = now,
				.min_remaining = lim.max[l],
			};

			if (lim.max[l] <= 0)
				continue;
			/* Made here, not above: a limit that is off would leak it. */
			w.domains = with_domains ? json_array() : NULL;
			ch_store_usage_foreach_domain(d->store, w.ca, ch_budget_limit_to_string(l),
						      now - ch_budget_limit_window(l),
						      budget_walk_domain, &w);
			fn(w.ca, l, w.max, w.min_remaining, w.domains, arg);
		}
	}
}

static void
budget_json_cb(const char *ca, enum ch_budget_limit l, int64_t max, int64_t remaining,
	       json_t *domains, void *arg)
{
	json_array_append_new(arg, json_pack("{s:s,s:s,s:I,s:I,s:o}", "ca", ca, "limit",
					     ch_budget_limit_to_string(l), "max", (json_int_t)max,
					     "remaining", (json_int_t)remaining, "domains",
					     domains));
}

json_t *
budget_status_json(struct daemon *d)
{
	json_t *v = json_array();

	budget_foreach(d, true, budget_json_cb, v);
	return v;
}

static void
budget_metrics_cb(const char *ca, enum ch_budget_limit l, int64_t max, int64_t remaining,
		  json_t *domains, void *arg)
{
	ch_metrics_sample_int(arg, "certherd_ca_budget_remaining",
			      (const char *[]){ "ca", ca, "limit", ch_budget_limit_to_string(l),
						NULL },
			      remaining);
}

void
budget_metrics(struct daemon *d, struct ch_metrics_buf *b)
{
	ch_metrics_family(b, "certherd_ca_budget_remaining", "gauge",
			  "What is left of a CA's rate-limit budget: the least over the "
			  "registered domains that used it, or the limit when none did.");
	budget_foreach(d, false, budget_metrics_cb, b);
}
