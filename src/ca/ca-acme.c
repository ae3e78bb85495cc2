/* SPDX-License-Identifier: MIT */
/*
 * The "acme" CA backend (RFC 8555): directory, nonces, an account that is
 * created once and reused (its ES256 key in <state_dir>/acme/<ca>/), and
 * per renewal an order for all its identifiers, http-01 authorizations,
 * finalize with a CSR from the certificate's own key and the chain
 * download. The order URL is written durably to orders/<idempotency
 * key>.json before the new-order response is acted on, so a restart
 * resumes the same order. Each request is a small state machine driven
 * from the event loop over acme-client.c's signed requests; at most
 * max_in_flight run per CA, the rest queue. Outcomes reach done() on a
 * later turn of the loop. Renewal information, key rollover and
 * revocation are in acme-admin.c.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "acme-backend.h"
#include "acme-internal.h"
#include "certherd/acme.h"
#include "certherd/ca.h"
#include "certherd/crashpoint.h"
#include "certherd/crypto.h"
#include "certherd/defer.h"
#include "certherd/dns.h"
#include "certherd/http.h"
#include "certherd/jws.h"
#include "certherd/log.h"
#include "certherd/util.h"

#define ACME_MAX_IN_FLIGHT 8
#define ACME_REQUEST_TIMEOUT 30 /* seconds for one request, connecting included */
#define ACME_POLL_LIMIT (300 * CH_USEC_PER_SEC) /* polling per attempt, then "pending" */
#define ACME_POLL_MAX_DELAY 60      /* seconds; a longer Retry-After ends the attempt */
#define ACME_ORDER_FILE_MAX_AGE (30 * 86400)
#define ACME_ORPHAN_MAX_PAGES 1000   /* of the account's order list */
#define ACME_ORPHAN_MAX_LOOKUPS 100  /* newest orders of the list looked at */

struct ca_acme_opts {
	char *directory;
	char **contact;
	bool agree_tos;
	char *http01_listen;
	char *trust;
	int64_t max_in_flight;
	int64_t request_timeout;
	char *preferred_chain;
	char *challenge;
	char *dns_server;
	char *dns_zone;
	char *dns_tsig_key;
	char *dns_tsig_key_file;
	char **dns_hook;
	char **dns_check_servers;
	int64_t dns_timeout;
	char *eab_kid;
	char *eab_hmac_key_file;
};

static const struct ch_conf_key ca_acme_keys[] = {
	{ "directory", CH_CONF_STRING, offsetof(struct ca_acme_opts, directory), true,
	  "the https:// URL of the ACME directory" },
	{ "contact", CH_CONF_STRV, offsetof(struct ca_acme_opts, contact), false,
	  "a list of mailto: URLs" },
	{ "agree_tos", CH_CONF_BOOL, offsetof(struct ca_acme_opts, agree_tos), false,
	  "true to agree to the CA's terms of service" },
	{ "http01_listen", CH_CONF_STRING, offsetof(struct ca_acme_opts, http01_listen), false,
	  "host:port for the http-01 responder, e.g. 0.0.0.0:80" },
	{ "trust", CH_CONF_PATH, offsetof(struct ca_acme_opts, trust), false,
	  "a PEM bundle of CAs for the directory's TLS certificate" },
	{ "max_in_flight", CH_CONF_UINT, offsetof(struct ca_acme_opts, max_in_flight), false,
	  "the number of orders run at once, 1-1000" },
	{ "request_timeout", CH_CONF_DURATION, offsetof(struct ca_acme_opts, request_timeout), false,
	  "how long one request to the CA may take, e.g. 30s (1s-10m)" },
	{ "preferred_chain", CH_CONF_STRING, offsetof(struct ca_acme_opts, preferred_chain), false,
	  "the issuer common name of the preferred chain" },
	{ "challenge", CH_CONF_STRING, offsetof(struct ca_acme_opts, challenge), false,
	  "http-01 or dns-01" },
	{ "dns_server", CH_CONF_STRING, offsetof(struct ca_acme_opts, dns_server), false,
	  "ip[:port] of the DNS server taking RFC 2136 updates, e.g. 192.0.2.53:53" },
	{ "dns_zone", CH_CONF_STRING, offsetof(struct ca_acme_opts, dns_zone), false,
	  "the zone updated, e.g. example.com (default: found by an SOA query)" },
	{ "dns_tsig_key", CH_CONF_STRING, offsetof(struct ca_acme_opts, dns_tsig_key), false,
	  "the TSIG key's name (default: the name in dns_tsig_key_file)" },
	{ "dns_tsig_key_file", CH_CONF_PATH, offsetof(struct ca_acme_opts, dns_tsig_key_file), false,
	  "a file (mode 0600) with the hmac-sha256 key as tsig-keygen writes it" },
	{ "dns_hook", CH_CONF_STRV, offsetof(struct ca_acme_opts, dns_hook), false,
	  "a command run with add|remove, the record name and its value" },
	{ "dns_check_servers", CH_CONF_STRV, offsetof(struct ca_acme_opts, dns_check_servers), false,
	  "ip[:port] of the authoritative servers polled for the record" },
	{ "dns_timeout", CH_CONF_DURATION, offsetof(struct ca_acme_opts, dns_timeout), false,
	  "how long to wait for the record to be visible, e.g. 2m" },
	{ "eab_kid", CH_CONF_STRING, offsetof(struct ca_acme_opts, eab_kid), false,
	  "the key identifier of the CA's external account binding" },
	{ "eab_hmac_key_file", CH_CONF_PATH, offsetof(struct ca_acme_opts, eab_hmac_key_file), false,
	  "a file (mode 0600) with the binding's base64url HMAC key" },
	{ NULL },
};

struct acme_job {
	struct ca_acme *s;
	char *cert_name;
	char *idem;
	char **dns, **ip;
	char *replaces;        /* ARI certID of the certificate replaced, or NULL */
	char *profile;         /* the profile asked for, or NULL */
	bool replaces_sent;
	EVP_PKEY *key;
	ch_issue_done_fn *done;
	void *arg;
	bool awaiting_setup;
	struct acme_op op;
	struct event *timer;
	void (*timer_fn)(struct acme_job *j);
	int64_t poll_deadline; /* monotonic usec */
	unsigned polls;
	int64_t started;       /* monotonic usec */

	char *order_path;
	char *order_url;
	bool resuming;         /* the next order fetch checks a stored order */
	json_t *authzs;
	size_t authz_i;
	char *token;           /* registered with the responder */
	struct acme_dns01_op *dns_op; /* dns-01: publishing */
	char *dns_ident, *dns_value;  /* dns-01: the record published (to remove) */
	char *chall_url;       /* dns-01: answered once the record is visible */
	bool responded;
	bool authzs_done;      /* walked every authorization once */
	char **alts;           /* alternate chain URLs still to look at */
	size_t alt_i;
	char *default_chain;
	char **candidates;     /* orphan search: the order list, oldest first */
	size_t n_cands;
	size_t cand_i;         /* candidates[cand_i - 1] is the next to look at */
	unsigned lookups;
	char *list_next;       /* orphan search: the next page of the order list */
	unsigned list_pages;
	TAILQ_ENTRY(acme_job) link;
};

static void job_finish(struct acme_job *j, enum ch_ca_outcome outcome, int64_t retry_after,
		       const char *fmt, ...) _printf_(4, 5);
static void job_order_begin(struct acme_job *j);
static void job_dns01_publish(struct acme_job *j, const char *ident, const char *keyauth,
			      const char *url);
static void setup_account_cb(void *arg, const struct ch_http_response *resp);
static char **resp_links(const struct ch_http_response *resp, const char *rel);

/* --- deliveries and the queue -------------------------------------------------------- */

static void
acme_deliver(void *arg)
{
	struct acme_delivery *d = arg;

	if (d->owner) {
		LIST_REMOVE(d, link);
		d->owner = NULL;
		d->done(&d->res, d->arg);
	}
	ch_issue_result_done(&d->res);
	free(d);
}

static void
job_start(struct acme_job *j)
{
	struct ca_acme *s = j->s;

	TAILQ_INSERT_TAIL(&s->active, j, link);
	s->n_active++;
	j->started = ch_mono_usec();
	if (s->setup == SETUP_DONE) {
		job_order_begin(j);
		return;
	}
	j->awaiting_setup = true;
	if (s->setup == SETUP_NONE)
		acme_setup_start(s);
}

static void
acme_pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ca_acme *s = arg;
	struct acme_job *j;

	while (s->n_active < s->max_in_flight && (j = TAILQ_FIRST(&s->queue))) {
		TAILQ_REMOVE(&s->queue, j, link);
		job_start(j);
	}
}

static void
acme_pump(struct ca_acme *s)
{
	struct timeval zero = { 0, 0 };

	evtimer_add(s->pump, &zero);
}

static void
job_free(struct acme_job *j)
{
	if (!j)
		return;
	acme_op_reset(&j->op);
	if (j->timer)
		event_free(j->timer);
	if (j->token)
		acme_http01_remove(j->s->http01, j->token);
	free(j->token);
	acme_dns01_cancel(j->dns_op);
	if (j->dns_ident)
		acme_dns01_unpublish(j->s->dns01, j->dns_ident, j->dns_value);
	free(j->dns_ident);
	free(j->dns_value);
	free(j->chall_url);
	EVP_PKEY_free(j->key);
	ch_strv_free(j->dns);
	ch_strv_free(j->ip);
	free(j->cert_name);
	free(j->idem);
	free(j->replaces);
	free(j->profile);
	free(j->order_path);
	free(j->order_url);
	json_decref(j->authzs);
	ch_strv_free(j->alts);
	free(j->default_chain);
	ch_strv_free(j->candidates);
	free(j->list_next);
	free(j);
}

/* Ends an active job: its outcome goes to done() on the next turn of the loop. */
static void
job_deliver(struct acme_job *j, struct acme_delivery *d)
{
	struct ca_acme *s = j->s;

	TAILQ_REMOVE(&s->active, j, link);
	s->n_active--;
	d->done = j->done;
	d->arg = j->arg;
	if (ch_defer(s->base, acme_deliver, d) < 0) {
		ch_log_error("CA %s: cannot queue the outcome of %s; it will be retried", s->name,
			     j->cert_name);
		ch_issue_result_done(&d->res);
		free(d);
	} else {
		d->owner = s;
		LIST_INSERT_HEAD(&s->deliveries, d, link);
	}
	job_free(j);
	acme_pump(s);
}

static void
job_finish(struct acme_job *j, enum ch_ca_outcome outcome, int64_t retry_after, const char *fmt,
	   ...)
{
	struct acme_delivery *d = calloc(1, sizeof(*d));
	va_list ap;

	if (!d)
		abort();
	d->res.outcome = outcome;
	d->res.retry_after = retry_after;
	va_start(ap, fmt);
	vsnprintf(d->res.message, sizeof(d->res.message), fmt, ap);
	va_end(ap);
	/* acme_classify() words a 429 or rateLimited problem "what: rateLimited: ..." */
	d->res.rate_limited = outcome == CH_CA_PENDING && (strstr(d->res.message, "rateLimited") ||
							    strstr(d->res.message, "HTTP 429"));
	ch_log_cert(LOG_DEBUG, j->cert_name, "issue", "ACME order %s ended %s: %s",
		    j->order_url ? j->order_url : "(none)", ch_ca_outcome_to_string(outcome),
		    d->res.message);
	job_deliver(j, d);
}

/* 2xx: true. Otherwise ends the job with the outcome that fits and returns false. */
static bool
job_ok(struct acme_job *j, const struct ch_http_response *resp, const char *what)
{
	enum ch_ca_outcome outcome;
	int64_t retry_after;
	char msg[1024];

	if (acme_classify(resp, what, &outcome, &retry_after, msg, sizeof(msg)))
		return true;
	job_finish(j, outcome, retry_after, "%s", msg);
	return false;
}

/* Parses a JSON object body, or ends the job. */
static json_t *
job_json(struct acme_job *j, const struct ch_http_response *resp, const char *what)
{
	json_t *doc = json_loadb(resp->body, resp->body_len, 0, NULL);

	if (!json_is_object(doc)) {
		json_decref(doc);
		/* A broken CA or something in between, not a refusal: retried as unreachable. */
		job_finish(j, CH_CA_UNREACHABLE, 0,
			   "%s: malformed response (the CA's answer is not a JSON object)", what);
		return NULL;
	}
	return doc;
}

static void
job_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct acme_job *j = arg;

	j->timer_fn(j);
}

/*
 * Runs fn again after the server's Retry-After, or a short backoff
 * (0.25 s doubling to 5 s) when it gave none. Past the polling limit the
 * attempt ends as pending; the next one resumes the same order.
 */
static void
job_poll(struct acme_job *j, const struct ch_http_response *resp, void (*fn)(struct acme_job *))
{
	int64_t ra = resp ? ch_acme_retry_after(ch_http_header(resp, "Retry-After", 0), ch_now())
			  : -EINVAL;
	int64_t delay_ms;
	struct timeval tv;

	if (ch_mono_usec() > j->poll_deadline || ra > ACME_POLL_MAX_DELAY) {
		job_finish(j, CH_CA_PENDING, ra > 0 ? ra : 30,
			   "the CA has not finished order %s yet; it will be resumed",
			   j->order_url ? j->order_url : "?");
		return;
	}
	if (ra > 0)
		delay_ms = ra * 1000;
	else
		delay_ms = j->polls < 5 ? 250LL << j->polls : 5000;
	j->polls++;
	j->timer_fn = fn;
	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(j->timer, &tv);
}

/* --- directory and account ----------------------------------------------------------- */

static void
setup_fail(struct ca_acme *s, enum ch_ca_outcome outcome, int64_t retry_after, const char *msg)
{
	struct acme_job *j, *next;

	s->setup = SETUP_NONE;
	ch_log_warning("CA %s: %s", s->name, msg);
	acme_ari_setup_done(s, msg);
	acme_rollover_setup_done(s, msg);
	acme_revoke_setup_done(s, msg);
	for (j = TAILQ_FIRST(&s->active); j; j = next) {
		next = TAILQ_NEXT(j, link);
		if (j->awaiting_setup)
			job_finish(j, outcome, retry_after, "%s", msg);
	}
}

static void
setup_done(struct ca_acme *s)
{
	struct acme_job *j;
	bool again = true;

	s->setup = SETUP_DONE;
	acme_ari_setup_done(s, NULL);
	acme_rollover_setup_done(s, NULL);
	acme_revoke_setup_done(s, NULL);
	/* A job may end at once and leave the list; start over after each. */
	while (again) {
		again = false;
		TAILQ_FOREACH(j, &s->active, link)
			if (j->awaiting_setup) {
				j->awaiting_setup = false;
				job_order_begin(j);
				again = true;
				break;
			}
	}
}

static void
setup_account_cb(void *arg, const struct ch_http_response *resp)
{
	struct ca_acme *s = arg;
	enum ch_ca_outcome outcome;
	int64_t retry_after;
	const char *loc;
	char msg[1024];

	if (!acme_classify(resp, "newAccount", &outcome, &retry_after, msg, sizeof(msg))) {
		struct ch_acme_problem p;

		if (s->eab && resp->error == 0 &&
		    ch_acme_problem_parse(resp->body, resp->body_len, &p) == 0 &&
		    (ch_acme_problem_is(&p, "unauthorized") || ch_acme_problem_is(&p, "malformed") ||
		     ch_acme_problem_is(&p, "externalAccountRequired"))) {
			/* The binding is the likely culprit; retrying cannot fix it. */
			outcome = CH_CA_MISCONFIGURED;
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
				 " (the CA refused the external account binding: check eab_kid "
				 "and eab_hmac_key_file)");
		}
		setup_fail(s, outcome, retry_after, msg);
		return;
	}
	loc = ch_http_header(resp, "Location", 0);
	if (!loc) {
		setup_fail(s, CH_CA_UNREACHABLE, 0,
			   "newAccount: malformed response (the CA gave no account URL)");
		return;
	}
	free(s->client.kid);
	s->client.kid = strdup(loc);
	if (!s->client.kid) {
		setup_fail(s, CH_CA_UNREACHABLE, 0, "out of memory");
		return;
	}
	{
		json_t *acct = json_loadb(resp->body, resp->body_len, 0, NULL);
		const char *orders = json_string_value(json_object_get(acct, "orders"));

		free(s->url_orders);
		s->url_orders = orders ? strdup(orders) : NULL;
		json_decref(acct);
	}
	if (resp->status == 201)
		ch_log_notice("CA %s: created ACME account %s", s->name, s->client.kid);
	else
		ch_log_notice("CA %s: using existing ACME account %s", s->name, s->client.kid);
	setup_done(s);
}

static int
dup_url(json_t *dir, const char *key, char **ret)
{
	const char *v = json_string_value(json_object_get(dir, key));

	free(*ret);
	*ret = v ? strdup(v) : NULL;
	return *ret ? 0 : -EBADMSG;
}

/*
 * The answer to onlyReturnExisting signed with the key of an unfinished
 * rollover: the account has it (the CA confirmed before the crash), or
 * not (the old key stays and the new one is dropped).
 */
static void
setup_recover_cb(void *arg, const struct ch_http_response *resp)
{
	struct ca_acme *s = arg;
	struct ch_err err = { "" };

	s->setup_op.sign_key = NULL;
	if (resp->error < 0 || resp->status >= 500 || resp->status == 429) {
		setup_account_cb(s, resp); /* fails the setup; retried later */
		return;
	}
	if (resp->status >= 200 && resp->status < 300) {
		if (acme_rollover_commit(s, &err) < 0) {
			setup_fail(s, CH_CA_MISCONFIGURED, 0, err.msg);
			return;
		}
		ch_log_notice("CA %s: the interrupted account key rollover had been confirmed by the "
			      "CA; now using the new key",
			      s->name);
		setup_account_cb(s, resp);
		return;
	}
	ch_log_notice("CA %s: the interrupted account key rollover was not confirmed by the CA "
		      "(HTTP %ld); keeping the old key",
		      s->name, resp->status);
	acme_rollover_discard(s);
	acme_setup_start(s);
}

static void
setup_directory_cb(void *arg, const struct ch_http_response *resp)
{
	struct ca_acme *s = arg;
	enum ch_ca_outcome outcome;
	int64_t retry_after;
	char msg[1024];
	json_t *dir;
	const char *tos;
	bool eab_required;
	char *payload = NULL;
	int r;

	if (!acme_classify(resp, "directory", &outcome, &retry_after, msg, sizeof(msg))) {
		setup_fail(s, outcome, retry_after, msg);
		return;
	}
	dir = json_loadb(resp->body, resp->body_len, 0, NULL);
	if (!json_is_object(dir) || dup_url(dir, "newNonce", &s->client.url_nonce) < 0 ||
	    dup_url(dir, "newAccount", &s->url_account) < 0 ||
	    dup_url(dir, "newOrder", &s->url_order) < 0) {
		json_decref(dir);
		setup_fail(s, CH_CA_MISCONFIGURED, 0,
			   "directory: not an ACME directory (newNonce, newAccount or newOrder "
			   "missing)");
		return;
	}
	if (dup_url(dir, "renewalInfo", &s->url_renewal_info) < 0)
		s->url_renewal_info = NULL; /* optional */
	if (dup_url(dir, "keyChange", &s->url_key_change) < 0)
		s->url_key_change = NULL; /* optional */
	if (dup_url(dir, "revokeCert", &s->url_revoke) < 0)
		s->url_revoke = NULL; /* optional */
	json_decref(s->profiles);
	s->profiles = json_object_get(json_object_get(dir, "meta"), "profiles");
	s->profiles = json_is_object(s->profiles) ? json_incref(s->profiles) : NULL;
	tos = json_string_value(json_object_get(json_object_get(dir, "meta"), "termsOfService"));
	if (tos && !s->agree_tos) {
		snprintf(msg, sizeof(msg),
			 "the CA requires agreeing to its terms of service (%s); set agree_tos: true",
			 tos);
		json_decref(dir);
		setup_fail(s, CH_CA_MISCONFIGURED, 0, msg);
		return;
	}
	eab_required = json_is_true(
		json_object_get(json_object_get(dir, "meta"), "externalAccountRequired"));
	json_decref(dir);
	if (eab_required && !s->eab) {
		setup_fail(s, CH_CA_MISCONFIGURED, 0,
			   "the CA requires an external account binding; set eab_kid and "
			   "eab_hmac_key_file from the CA's account page");
		return;
	}
	r = acme_account_payload(s->url_account, s->client.account_key, s->agree_tos, s->contact,
				 s->eab, &payload);
	if (r < 0) {
		setup_fail(s, CH_CA_UNREACHABLE, 0, "cannot build the newAccount request");
		return;
	}
	if (s->new_key) {
		/* A rollover was cut short: does the CA know the new key? */
		free(payload);
		s->setup_op.sign_key = s->new_key;
		acme_op_start(&s->setup_op, true, s->url_account, "{\"onlyReturnExisting\":true}",
			      true, NULL, setup_recover_cb, s);
		return;
	}
	/* Creates the account, or finds the one this key already has. */
	acme_op_start(&s->setup_op, true, s->url_account, payload, true, NULL, setup_account_cb, s);
	free(payload);
}

void
acme_setup_start(struct ca_acme *s)
{
	s->setup = SETUP_RUNNING;
	acme_op_start(&s->setup_op, false, s->directory_url, NULL, false, NULL, setup_directory_cb, s);
}

/* --- the order ------------------------------------------------------------------------ */

static json_t *
job_identifiers(const struct acme_job *j)
{
	json_t *ids = json_array();

	for (char **n = j->dns; n && *n; n++)
		json_array_append_new(ids, json_pack("{s:s,s:s}", "type", "dns", "value", *n));
	for (char **n = j->ip; n && *n; n++)
		json_array_append_new(ids, json_pack("{s:s,s:s}", "type", "ip", "value", *n));
	return ids;
}

static void job_order_cb(void *arg, const struct ch_http_response *resp);
static void job_next_authz(struct acme_job *j);

static void
job_refetch_order(struct acme_job *j)
{
	acme_op_start(&j->op, true, j->order_url, NULL, false, NULL, job_order_cb, j);
}

static void
job_cert_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	struct ca_acme *s = j->s;
	struct acme_delivery *d;
	const char *pem;
	_cleanup_free_ char *body = NULL;

	if (!job_ok(j, resp, "certificate"))
		return;
	body = strndup(resp->body, resp->body_len);
	if (!body)
		abort();
	pem = body;
	if (s->preferred_chain) {
		const char *cand = body;

		if (!j->default_chain) {
			/* The first answer is the default chain; alternates are in its Link headers. */
			j->alts = resp_links(resp, "alternate");
			j->default_chain = TAKE_PTR(body);
			cand = j->default_chain;
		}
		if (ch_acme_chain_has_issuer(cand, s->preferred_chain)) {
			pem = cand;
		} else if (j->alts && j->alts[j->alt_i]) {
			const char *url = j->alts[j->alt_i++];

			acme_op_start(&j->op, true, url, NULL, false, "application/pem-certificate-chain",
				 job_cert_cb, j);
			return;
		} else {
			/* No chain has the preferred issuer: the default one it is. */
			pem = j->default_chain;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		abort();
	if (ch_acme_chain_split(pem, &d->res.cert_pem, &d->res.chain_pem) < 0) {
		free(d);
		job_finish(j, CH_CA_UNREACHABLE, 0,
			   "certificate: malformed response (the CA's answer holds no PEM certificate)");
		return;
	}
	d->res.outcome = CH_CA_ISSUED;
	ch_log_cert(LOG_INFO, j->cert_name, "issue", "ACME order %s: certificate downloaded in %lld ms",
		    j->order_url, (long long)((ch_mono_usec() - j->started) / 1000));
	job_deliver(j, d);
}

static void
job_finalize_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	struct ch_acme_problem p;
	json_t *order;
	const char *status;

	if (resp->error == 0 && resp->status == 403 &&
	    ch_acme_problem_parse(resp->body, resp->body_len, &p) == 0 &&
	    ch_acme_problem_is(&p, "orderNotReady")) {
		/* Not ready (yet, or any more): look at the order again. */
		job_poll(j, resp, job_refetch_order);
		return;
	}
	if (!job_ok(j, resp, "finalize"))
		return;
	order = job_json(j, resp, "finalize");
	if (!order)
		return;
	status = json_string_value(json_object_get(order, "status"));
	if (status && streq(status, "valid") &&
	    json_is_string(json_object_get(order, "certificate"))) {
		const char *url = json_string_value(json_object_get(order, "certificate"));

		acme_op_start(&j->op, true, url, NULL, false, "application/pem-certificate-chain",
			 job_cert_cb, j);
	} else
		job_poll(j, resp, job_refetch_order);
	json_decref(order);
}

static void
job_finalize(struct acme_job *j, const char *url)
{
	_cleanup_free_ char *csr = NULL, *payload = NULL;
	json_t *doc;
	int r;

	r = ch_acme_csr(j->key, j->dns, j->ip, &csr);
	if (r < 0) {
		job_finish(j, CH_CA_REJECTED, 0, "cannot build the CSR: %s", strerror(-r));
		return;
	}
	doc = json_pack("{s:s}", "csr", csr);
	payload = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!payload)
		abort();
	acme_op_start(&j->op, true, url, payload, false, NULL, job_finalize_cb, j);
}

/* Acts on an order object (RFC 8555 §7.1.6). */
static void
job_order_advance(struct acme_job *j, json_t *order, const struct ch_http_response *resp)
{
	struct ch_acme_order_next next;

	ch_acme_order_next(order, j->order_url, &next);
	switch (next.step) {
	case CH_ACME_ORDER_AUTHORIZE:
		json_decref(j->authzs);
		j->authzs = json_incref((json_t *)next.authzs);
		j->authz_i = 0;
		job_next_authz(j);
		break;
	case CH_ACME_ORDER_FINALIZE:
		job_finalize(j, next.url);
		break;
	case CH_ACME_ORDER_WAIT:
		job_poll(j, resp, job_refetch_order);
		break;
	case CH_ACME_ORDER_DOWNLOAD:
		acme_op_start(&j->op, true, next.url, NULL, false,
			      "application/pem-certificate-chain", job_cert_cb, j);
		break;
	case CH_ACME_ORDER_FAILED:
		job_finish(j, CH_CA_REJECTED, 0, "%s", next.message);
		break;
	}
}

static void job_new_order(struct acme_job *j);

static void
job_order_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	bool resuming = j->resuming;
	json_t *order;
	const char *status;

	j->resuming = false;
	if (resuming && resp->error == 0 && resp->status >= 400 && resp->status < 500 &&
	    resp->status != 429) {
		/* Unknown to the CA (404), or another account's (403). */
		ch_log_cert(LOG_INFO, j->cert_name, "issue",
			    "ACME order %s cannot be fetched (HTTP %ld); creating a new one",
			    j->order_url, resp->status);
		job_new_order(j);
		return;
	}
	if (!job_ok(j, resp, "order"))
		return;
	order = job_json(j, resp, "order");
	if (!order)
		return;
	status = json_string_value(json_object_get(order, "status"));
	if (resuming) {
		json_t *want = job_identifiers(j);
		_cleanup_free_ char *a = ch_acme_identifiers_key(want);
		_cleanup_free_ char *b = ch_acme_identifiers_key(json_object_get(order, "identifiers"));

		json_decref(want);
		if (!a || !b || !streq(a, b) || !status || streq(status, "invalid") ||
		    streq(status, "expired") || streq(status, "deactivated")) {
			ch_log_cert(LOG_INFO, j->cert_name, "issue",
				    "ACME order %s cannot be resumed (%s); creating a new one",
				    j->order_url,
				    a && b && !streq(a, b) ? "other identifiers" : status ?: "no status");
			json_decref(order);
			job_new_order(j);
			return;
		}
		ch_log_cert(LOG_INFO, j->cert_name, "issue", "Resuming ACME order %s (%s)",
			    j->order_url, status);
	}
	job_order_advance(j, order, resp);
	json_decref(order);
}

/*
 * Writes the order record of this renewal durably: the order URL once
 * known, or only the intent ("creating") before new-order is sent, so
 * that a crash inside the new-order round trip leaves a trace.
 */
static int
job_record(struct acme_job *j, const char *url, struct ch_err *err)
{
	_cleanup_free_ char *data = NULL;
	json_t *rec;

	rec = json_pack("{s:s,s:I,s:o}", "cert", j->cert_name, "created", (json_int_t)ch_now(),
			"identifiers", job_identifiers(j));
	if (rec && url)
		json_object_set_new(rec, "order", json_string(url));
	else if (rec)
		json_object_set_new(rec, "creating", json_true());
	data = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!data)
		return ch_err_set(err, -ENOMEM, "out of memory");
	return ch_write_file_atomic(j->order_path, data, strlen(data), 0600, -1, -1, err);
}

static void
job_new_order_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	struct ch_err err = { "" };
	const char *loc;
	json_t *order;
	int r;

	if (j->replaces_sent && resp->error == 0 && resp->status >= 400 && resp->status < 500 &&
	    resp->status != 429) {
		struct ch_acme_problem p;

		if (ch_acme_problem_parse(resp->body, resp->body_len, &p) == 0 &&
		    (ch_acme_problem_is(&p, "alreadyReplaced") || resp->status == 409)) {
			/* RFC 9773 §5: another order replaces it already; ask without. */
			ch_log_cert(LOG_INFO, j->cert_name, "issue",
				    "ACME newOrder refused 'replaces' (%s); ordering without it",
				    p.message);
			free(j->replaces);
			j->replaces = NULL;
			job_new_order(j);
			return;
		}
	}
	if (!job_ok(j, resp, "newOrder"))
		return;
	loc = ch_http_header(resp, "Location", 0);
	if (!loc) {
		job_finish(j, CH_CA_UNREACHABLE, 0,
			   "newOrder: malformed response (the CA gave no order URL)");
		return;
	}
	free(j->order_url);
	j->order_url = strdup(loc);
	if (!j->order_url)
		abort();
	ch_crashpoint("acme-order-unrecorded");
	/* Durable before anything else is done with the order. */
	r = job_record(j, j->order_url, &err);
	if (r < 0) {
		job_finish(j, CH_CA_MISCONFIGURED, 0, "cannot record ACME order %s: %s",
			   j->order_url, err.msg);
		return;
	}
	ch_log_cert(LOG_INFO, j->cert_name, "issue", "Created ACME order %s", j->order_url);
	ch_crashpoint("acme-order-created");
	order = job_json(j, resp, "newOrder");
	if (!order)
		return;
	job_order_advance(j, order, resp);
	json_decref(order);
}

/* The profile is one the directory offers (meta.profiles), or the job ends misconfigured. */
static bool
job_profile_offered(struct acme_job *j)
{
	json_t *profiles = j->s->profiles;
	char offered[512] = "";
	const char *name;
	json_t *v;

	if (!profiles || json_object_size(profiles) == 0) {
		job_finish(j, CH_CA_MISCONFIGURED, 0,
			   "profile '%s' was asked for, but the CA's directory offers no profiles "
			   "(no meta.profiles); remove profile:",
			   j->profile);
		return false;
	}
	if (json_object_get(profiles, j->profile))
		return true;
	json_object_foreach(profiles, name, v) {
		size_t len = strlen(offered);

		snprintf(offered + len, sizeof(offered) - len, "%s%s", len ? ", " : "", name);
	}
	job_finish(j, CH_CA_MISCONFIGURED, 0, "the CA offers no profile '%s'; it offers: %s",
		   j->profile, offered);
	return false;
}

static void
job_new_order(struct acme_job *j)
{
	json_t *doc = json_pack("{s:o}", "identifiers", job_identifiers(j));
	_cleanup_free_ char *payload = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

	struct ch_err err = { "" };

	json_decref(doc);
	if (!payload)
		abort();
	if (j->profile && !job_profile_offered(j))
		return;
	j->replaces_sent = j->replaces && j->s->url_renewal_info;
	if (j->replaces_sent || j->profile) {
		doc = json_pack("{s:o}", "identifiers", job_identifiers(j));
		if (doc && j->replaces_sent)
			json_object_set_new(doc, "replaces", json_string(j->replaces));
		if (doc && j->profile)
			json_object_set_new(doc, "profile", json_string(j->profile));
		free(payload);
		payload = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		if (!payload)
			abort();
	}
	free(j->order_url);
	j->order_url = NULL;
	if (job_record(j, NULL, &err) < 0) {
		job_finish(j, CH_CA_MISCONFIGURED, 0, "cannot record the new ACME order: %s", err.msg);
		return;
	}
	acme_op_start(&j->op, true, j->s->url_order, payload, false, NULL, job_new_order_cb, j);
}

/* Link targets with rel of a response; NULL when there are none. */
static char **
resp_links(const struct ch_http_response *resp, const char *rel)
{
	_cleanup_strv_free_ char **values = NULL;
	char **out = NULL;
	size_t n = 0;

	while (ch_http_header(resp, "Link", n))
		n++;
	values = calloc(n + 1, sizeof(*values));
	if (!values)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(values[i] = strdup(ch_http_header(resp, "Link", i))))
			return NULL;
	if (ch_acme_links(values, rel, &out) < 0 || !out[0])
		return ch_strv_free(out);
	return out;
}

static void job_orphan_next(struct acme_job *j);

/* A candidate of the order list: adopted when unfinished and for our identifiers. */
static void
job_orphan_order_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	const char *url = j->candidates[j->cand_i];
	struct ch_err err = { "" };
	json_t *order = NULL, *want;
	const char *status;

	if (resp->error < 0 || resp->status >= 500) {
		job_ok(j, resp, "order");
		return;
	}
	if (resp->status >= 200 && resp->status < 300)
		order = json_loadb(resp->body, resp->body_len, 0, NULL);
	status = json_string_value(json_object_get(order, "status"));
	/* Only orders nobody finalized: a valid one may hold an older key's certificate. */
	if (status && (streq(status, "pending") || streq(status, "ready"))) {
		_cleanup_free_ char *a = NULL, *b = NULL;

		want = job_identifiers(j);
		a = ch_acme_identifiers_key(want);
		b = ch_acme_identifiers_key(json_object_get(order, "identifiers"));
		json_decref(want);
		if (a && b && streq(a, b)) {
			j->order_url = strdup(url);
			if (!j->order_url)
				abort();
			if (job_record(j, j->order_url, &err) < 0) {
				json_decref(order);
				job_finish(j, CH_CA_MISCONFIGURED, 0, "cannot record ACME order %s: %s",
					   j->order_url, err.msg);
				return;
			}
			ch_log_cert(LOG_INFO, j->cert_name, "issue",
				    "Recovered ACME order %s (%s) from the account's order list",
				    j->order_url, status);
			job_order_advance(j, order, resp);
			json_decref(order);
			return;
		}
	}
	json_decref(order);
	job_orphan_next(j);
}

static void
job_orphan_list_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	json_t *list, *v;
	char **next, **cands;
	size_t i, n;

	if (resp->error < 0 || resp->status >= 500) {
		job_ok(j, resp, "order list");
		return;
	}
	list = resp->status >= 200 && resp->status < 300 ?
		       json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
	/* Pages are collected first: the order cut short is among the newest, at the end. */
	n = j->n_cands;
	cands = reallocarray(j->candidates, n + json_array_size(json_object_get(list, "orders")) + 1,
			     sizeof(*cands));
	if (!cands)
		abort();
	j->candidates = cands;
	json_array_foreach(json_object_get(list, "orders"), i, v)
		if (json_is_string(v))
			j->candidates[n++] = ch_xstrdup(json_string_value(v));
	j->candidates[n] = NULL;
	j->n_cands = n;
	j->cand_i = n;
	json_decref(list);
	free(j->list_next);
	j->list_next = NULL;
	next = resp_links(resp, "next");
	if (next)
		j->list_next = strdup(next[0]);
	ch_strv_free(next);
	job_orphan_next(j);
}

static void
job_orphan_next(struct acme_job *j)
{
	if (j->list_next && j->list_pages < ACME_ORPHAN_MAX_PAGES) {
		_cleanup_free_ char *next = TAKE_PTR(j->list_next);

		j->list_pages++;
		acme_op_start(&j->op, true, next, NULL, false, NULL, job_orphan_list_cb, j);
		return;
	}
	if (j->list_next) {
		ch_log_cert(LOG_WARNING, j->cert_name, "issue",
			    "The account's order list is longer than %d pages; looking at the "
			    "orders listed so far", ACME_ORPHAN_MAX_PAGES);
		free(j->list_next);
		j->list_next = NULL;
	}
	/* Newest first: the order cut short was created moments before the crash. */
	if (j->cand_i > 0 && j->lookups < ACME_ORPHAN_MAX_LOOKUPS) {
		const char *url = j->candidates[--j->cand_i];

		j->lookups++;
		acme_op_start(&j->op, true, url, NULL, false, NULL, job_orphan_order_cb, j);
		return;
	}
	ch_log_cert(LOG_INFO, j->cert_name, "issue",
		    "No unfinished order for these names in the account's order list; creating one");
	job_new_order(j);
}

/*
 * A crash inside the new-order round trip left an intent but no URL: the
 * order may exist at the CA. Look for it in the account's order list
 * (RFC 8555 §7.1.2.1) before creating another.
 */
static void
job_orphan_search(struct acme_job *j)
{
	ch_log_cert(LOG_INFO, j->cert_name, "issue",
		    "A new-order was cut short; looking for it in the account's order list");
	j->list_pages = 1;
	j->lookups = 0;
	acme_op_start(&j->op, true, j->s->url_orders, NULL, false, NULL, job_orphan_list_cb, j);
}

/* Looks for a stored order of this idempotency key first. */
static void
job_order_begin(struct acme_job *j)
{
	_cleanup_free_ char *data = NULL;
	json_t *rec;
	const char *url;
	bool creating = false;

	j->poll_deadline = ch_mono_usec() + ACME_POLL_LIMIT;
	if (ch_read_file(j->order_path, 65536, &data, NULL) == 0 &&
	    (rec = json_loads(data, 0, NULL))) {
		url = json_string_value(json_object_get(rec, "order"));
		if (url) {
			j->order_url = strdup(url);
			if (!j->order_url)
				abort();
		}
		creating = json_is_true(json_object_get(rec, "creating"));
		json_decref(rec);
	}
	if (!j->order_url) {
		if (creating && j->s->url_orders)
			job_orphan_search(j);
		else
			job_new_order(j);
		return;
	}
	j->resuming = true;
	job_refetch_order(j);
}

/* --- authorizations ------------------------------------------------------------------- */

static void job_authz_cb(void *arg, const struct ch_http_response *resp);

static const char *
job_authz_url(struct acme_job *j)
{
	return json_string_value(json_array_get(j->authzs, j->authz_i));
}

static void
job_refetch_authz(struct acme_job *j)
{
	acme_op_start(&j->op, true, job_authz_url(j), NULL, false, NULL, job_authz_cb, j);
}

static void
job_token_drop(struct acme_job *j)
{
	if (j->token)
		acme_http01_remove(j->s->http01, j->token);
	free(j->token);
	j->token = NULL;
	acme_dns01_cancel(j->dns_op);
	j->dns_op = NULL;
	if (j->dns_ident)
		acme_dns01_unpublish(j->s->dns01, j->dns_ident, j->dns_value);
	free(j->dns_ident);
	free(j->dns_value);
	j->dns_ident = j->dns_value = NULL;
	j->responded = false;
}

static void
job_next_authz(struct acme_job *j)
{
	if (j->authz_i >= json_array_size(j->authzs)) {
		/* Every authorization is valid: the order should now be ready. */
		if (j->authzs_done) {
			job_poll(j, NULL, job_refetch_order);
		} else {
			j->authzs_done = true;
			j->polls = 0;
			job_refetch_order(j);
		}
		return;
	}
	if (!job_authz_url(j)) {
		job_finish(j, CH_CA_REJECTED, 0, "order %s lists a bad authorization", j->order_url);
		return;
	}
	j->polls = 0;
	job_refetch_authz(j);
}

static void
job_challenge_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;

	if (!job_ok(j, resp, "challenge"))
		return;
	j->responded = true;
	job_poll(j, resp, job_refetch_authz);
}

static void
job_dns01_published(void *arg, bool ok, enum ch_ca_outcome outcome, const char *msg)
{
	struct acme_job *j = arg;

	j->dns_op = NULL;
	if (!ok) {
		if (outcome == CH_CA_MISCONFIGURED) {
			/* Nothing was added: no removal to try. */
			free(j->dns_ident);
			j->dns_ident = NULL;
		}
		job_finish(j, outcome, 0, "dns-01: %s", msg);
		return;
	}
	ch_log_cert(LOG_DEBUG, j->cert_name, "issue", "dns-01: TXT _acme-challenge.%s visible, responding",
		    j->dns_ident);
	acme_op_start(&j->op, true, j->chall_url, "{}", false, NULL, job_challenge_cb, j);
}

/*
 * dns-01 (RFC 8555 §8.4): the TXT record _acme-challenge.<ident> holds
 * base64url(SHA-256(keyauth)); the challenge is answered once it is visible.
 */
static void
job_dns01_publish(struct acme_job *j, const char *ident, const char *keyauth, const char *url)
{
	unsigned char digest[32];
	unsigned int dlen = 0;
	int r;

	job_token_drop(j);
	if (!EVP_Digest(keyauth, strlen(keyauth), digest, &dlen, EVP_sha256(), NULL))
		abort();
	free(j->chall_url);
	j->dns_ident = strdup(ident);
	j->chall_url = strdup(url);
	if (!j->dns_ident || !j->chall_url || ch_b64url_encode(digest, dlen, &j->dns_value) < 0)
		abort();
	ch_log_cert(LOG_DEBUG, j->cert_name, "issue", "dns-01 for %s: publishing TXT _acme-challenge.%s",
		    ident, ident);
	r = acme_dns01_publish(j->s->dns01, ident, j->dns_value, job_dns01_published, j, &j->dns_op);
	if (r < 0) {
		free(j->dns_ident);
		j->dns_ident = NULL;
		job_finish(j, CH_CA_UNREACHABLE, 0, "dns-01: %s", strerror(-r));
	}
}

static void
job_authz_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_job *j = arg;
	struct ca_acme *s = j->s;
	const char *type = s->dns01 ? "dns-01" : "http-01";
	struct ch_acme_authz az;
	json_t *authz;

	if (!job_ok(j, resp, "authorization"))
		return;
	authz = job_json(j, resp, "authorization");
	if (!authz)
		return;
	ch_acme_authz_parse(authz, type, &az);

	if (streq(az.status, "valid")) {
		job_token_drop(j);
		j->authz_i++;
		job_next_authz(j);
	} else if (streq(az.status, "pending")) {
		_cleanup_free_ char *keyauth = NULL;

		if (!az.has_challenge || !az.url) {
			job_finish(j, CH_CA_REJECTED, 0, "authorization for %s offers no %s challenge",
				   az.ident, type);
		} else if (!az.token) {
			job_finish(j, CH_CA_REJECTED, 0,
				   "authorization for %s: the %s challenge's token is missing or "
				   "not base64url",
				   az.ident, type);
		} else if (j->responded || !streq(az.chall_status, "pending")) {
			job_poll(j, resp, job_refetch_authz);
		} else if (asprintf(&keyauth, "%s.%s", az.token, s->thumbprint) < 0) {
			abort();
		} else if (s->dns01) {
			job_dns01_publish(j, az.value, keyauth, az.url);
		} else {
			job_token_drop(j);
			j->token = strdup(az.token);
			if (!j->token || acme_http01_add(s->http01, az.token, keyauth) < 0)
				abort();
			ch_log_cert(LOG_DEBUG, j->cert_name, "issue",
				    "http-01 for %s: token %s published, responding", az.ident,
				    az.token);
			acme_op_start(&j->op, true, az.url, "{}", false, NULL, job_challenge_cb, j);
		}
	} else if (streq(az.status, "invalid")) {
		job_token_drop(j);
		if (az.has_error)
			job_finish(j, CH_CA_REJECTED, 0, "authorization for %s is invalid: %s",
				   az.ident, az.error.message);
		else
			job_finish(j, CH_CA_REJECTED, 0, "authorization for %s is invalid", az.ident);
	} else {
		job_token_drop(j);
		job_finish(j, CH_CA_REJECTED, 0, "authorization for %s is %.40s", az.ident,
			   az.status);
	}
	json_decref(authz);
}

/* --- the backend ---------------------------------------------------------------------- */

static int
ca_acme_check(const void *opts, struct ch_err *reterr)
{
	const struct ca_acme_opts *o = opts;
	_cleanup_free_ char *host = NULL;
	unsigned port;

	if (o->directory && strncmp(o->directory, "https://", 8) != 0)
		return ch_err_set(reterr, -EINVAL, "directory must be an https:// URL, not '%s'",
				  o->directory);
	for (char **c = o->contact; c && *c; c++)
		if (strncmp(*c, "mailto:", 7) != 0)
			return ch_err_set(reterr, -EINVAL,
					  "contact '%s' must be a mailto: URL, e.g. "
					  "mailto:hostmaster@example.com",
					  *c);
	if (o->challenge && !streq(o->challenge, "http-01") && !streq(o->challenge, "dns-01"))
		return ch_err_set(reterr, -EINVAL, "challenge must be http-01 or dns-01, not '%s'",
				  o->challenge);
	if (o->challenge && streq(o->challenge, "dns-01")) {
		if (!o->dns_hook && !(o->dns_server && o->dns_tsig_key_file))
			return ch_err_set(reterr, -EINVAL,
					  "dns-01 needs dns_server and dns_tsig_key_file (RFC 2136 "
					  "updates) or dns_hook");
		if (o->dns_hook && (o->dns_tsig_key_file || o->dns_zone))
			return ch_err_set(reterr, -EINVAL,
					  "dns_hook and dns_tsig_key_file/dns_zone exclude each other");
		if (o->dns_hook && !o->dns_hook[0])
			return ch_err_set(reterr, -EINVAL, "dns_hook must name a command");
		if (o->dns_server && ch_dns_server_check(o->dns_server) < 0)
			return ch_err_set(reterr, -EINVAL,
					  "dns_server '%s' must be an IP address with an optional "
					  "port, e.g. 192.0.2.53 or 127.0.0.1:5353",
					  o->dns_server);
		for (char **c = o->dns_check_servers; c && *c; c++)
			if (ch_dns_server_check(*c) < 0)
				return ch_err_set(reterr, -EINVAL,
						  "dns_check_servers: '%s' must be an IP address with "
						  "an optional port",
						  *c);
	} else if (!o->http01_listen) {
		return ch_err_set(reterr, -EINVAL, "http-01 needs http01_listen (host:port)");
	} else if (o->dns_server || o->dns_hook || o->dns_tsig_key_file) {
		return ch_err_set(reterr, -EINVAL, "dns_* options need challenge: dns-01");
	}
	if (o->http01_listen && acme_http01_parse_listen(o->http01_listen, &host, &port) < 0)
		return ch_err_set(reterr, -EINVAL,
				  "http01_listen '%s' must be host:port, [v6]:port or :port",
				  o->http01_listen);
	if (!o->eab_kid != !o->eab_hmac_key_file)
		return ch_err_set(reterr, -EINVAL,
				  "an external account binding needs both eab_kid and "
				  "eab_hmac_key_file");
	if (o->eab_kid) {
		struct acme_eab *eab = NULL;
		int r = acme_eab_load(o->eab_kid, o->eab_hmac_key_file, &eab, reterr);

		acme_eab_free(eab);
		if (r < 0)
			return r;
	}
	if (o->max_in_flight > 1000)
		return ch_err_set(reterr, -EINVAL, "max_in_flight must be 1-1000, not %lld",
				  (long long)o->max_in_flight);
	if (o->request_timeout && (o->request_timeout < 1 || o->request_timeout > 600))
		return ch_err_set(reterr, -EINVAL, "request_timeout must be 1s-10m, not %llds",
				  (long long)o->request_timeout);
	return 0;
}

static void
ca_acme_free(void *state)
{
	struct ca_acme *s = state;
	struct acme_job *j;
	struct acme_delivery *d;

	if (!s)
		return;
	/* Results already on their way still fire, but only to free themselves. */
	while ((d = LIST_FIRST(&s->deliveries))) {
		LIST_REMOVE(d, link);
		d->owner = NULL;
	}
	while ((j = TAILQ_FIRST(&s->queue))) {
		TAILQ_REMOVE(&s->queue, j, link);
		job_free(j);
	}
	while ((j = TAILQ_FIRST(&s->active))) {
		TAILQ_REMOVE(&s->active, j, link);
		job_free(j);
	}
	while (!LIST_EMPTY(&s->aris))
		acme_ari_free(LIST_FIRST(&s->aris));
	if (s->rollover) {
		acme_op_reset(&s->rollover->op);
		event_free(s->rollover->kick);
		free(s->rollover);
	}
	EVP_PKEY_free(s->new_key);
	free(s->url_key_change);
	while (!LIST_EMPTY(&s->revokes))
		acme_revoke_free(LIST_FIRST(&s->revokes));
	free(s->url_revoke);
	acme_op_reset(&s->setup_op);
	acme_http01_close(s->http01);
	acme_dns01_free(s->dns01);
	acme_eab_free(s->eab);
	if (s->pump)
		event_free(s->pump);
	acme_client_done(&s->client);
	free(s->thumbprint);
	free(s->url_account);
	free(s->url_orders);
	free(s->url_renewal_info);
	json_decref(s->profiles);
	free(s->url_order);
	free(s->dir);
	free(s->directory_url);
	ch_strv_free(s->contact);
	free(s->preferred_chain);
	free(s->name);
	free(s);
}

/* Loads the account key, or creates it (ES256, mode 0600) on first use. */
static int
acme_account_key(struct ca_acme *s, struct ch_err *reterr)
{
	_cleanup_free_ char *path = NULL;
	char *pem = NULL;
	size_t len;
	int r;

	if (asprintf(&path, "%s/account.key", s->dir) < 0) {
		path = NULL;
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	if (access(path, F_OK) == 0) {
		r = ch_key_load_file(path, &s->client.account_key, reterr);
		if (r < 0)
			return r;
		if (!ch_jws_alg(s->client.account_key))
			return ch_err_set(reterr, -EINVAL,
					  "%s is neither an EC P-256 nor an RSA key", path);
		/* A rollover cut short: settled with the CA at setup. */
		free(path);
		if (asprintf(&path, "%s/account.key.new", s->dir) < 0) {
			path = NULL;
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		}
		if (access(path, F_OK) == 0 && ch_key_load_file(path, &s->new_key, NULL) < 0) {
			ch_log_warning("CA %s: %s is unreadable; removing it", s->name, path);
			unlink(path);
		}
		return 0;
	}
	r = ch_key_generate(CH_KEY_ECDSA_P256, &s->client.account_key, reterr);
	if (r < 0)
		return r;
	r = ch_key_to_pem(s->client.account_key, &pem, &len, reterr);
	if (r < 0)
		return r;
	r = ch_write_file_atomic(path, pem, len, 0600, -1, -1, reterr);
	ch_secret_free(pem, len);
	if (r >= 0)
		ch_log_info("CA %s: created the ACME account key %s", s->name, path);
	return r;
}

/* Removes order records older than any order could live. */
static void
acme_orders_gc(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int64_t now = ch_now();

	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;

		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
			continue;
		if (S_ISREG(st.st_mode) && now - st.st_mtime > ACME_ORDER_FILE_MAX_AGE)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

static int
ca_acme_new(const char *name, const void *opts, const struct ch_ca_env *env, void **ret_state,
	    struct ch_err *reterr)
{
	const struct ca_acme_opts *o = opts;
	_cleanup_free_ char *orders = NULL;
	struct ca_acme *s;
	int r;

	if (!env || !env->base || !env->state_dir)
		return ch_err_set(reterr, -EINVAL, "CA %s: no event loop or state directory", name);
	r = ca_acme_check(o, reterr);
	if (r < 0)
		return r;
	if (!o->directory)
		return ch_err_set(reterr, -EINVAL, "directory is required");
	s = calloc(1, sizeof(*s));
	if (!s)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	TAILQ_INIT(&s->queue);
	TAILQ_INIT(&s->active);
	LIST_INIT(&s->deliveries);
	LIST_INIT(&s->aris);
	LIST_INIT(&s->revokes);
	s->base = env->base;
	s->agree_tos = o->agree_tos;
	s->max_in_flight = o->max_in_flight > 0 ? (size_t)o->max_in_flight : ACME_MAX_IN_FLIGHT;
	s->client.timeout_ms = (o->request_timeout > 0 ? o->request_timeout : ACME_REQUEST_TIMEOUT) *
			       1000;
	s->setup_op.c = &s->client;
	s->name = strdup(name);
	s->client.name = s->name;
	s->directory_url = strdup(o->directory);
	if (o->preferred_chain)
		s->preferred_chain = strdup(o->preferred_chain);
	if (o->contact) {
		size_t n = ch_strv_length(o->contact);

		s->contact = calloc(n + 1, sizeof(*s->contact));
		for (size_t i = 0; s->contact && i < n; i++)
			if (!(s->contact[i] = strdup(o->contact[i])))
				goto oom;
	}
	if (asprintf(&s->dir, "%s/acme/%s", env->state_dir, name) < 0)
		s->dir = NULL;
	if (!s->name || !s->directory_url || !s->dir || (o->contact && !s->contact) ||
	    (o->preferred_chain && !s->preferred_chain))
		goto oom;
	if (asprintf(&orders, "%s/orders", s->dir) < 0) {
		orders = NULL;
		goto oom;
	}
	r = ch_mkdir_p(orders, 0700);
	if (r < 0) {
		ch_err_set(reterr, r, "cannot create %s: %s", orders, strerror(-r));
		goto fail;
	}
	acme_orders_gc(orders);
	if (o->eab_kid) {
		r = acme_eab_load(o->eab_kid, o->eab_hmac_key_file, &s->eab, reterr);
		if (r < 0)
			goto fail;
	}
	r = acme_account_key(s, reterr);
	if (r < 0)
		goto fail;
	r = ch_jwk_thumbprint(s->client.account_key, &s->thumbprint);
	if (r < 0) {
		ch_err_set(reterr, r, "cannot compute the account key's thumbprint");
		goto fail;
	}
	r = ch_http_new(s->base, o->trust, &s->client.http);
	if (r < 0) {
		ch_err_set(reterr, r, "cannot set up the HTTP client");
		goto fail;
	}
	if (o->challenge && streq(o->challenge, "dns-01")) {
		struct acme_dns01_conf dc = {
			.ca_name = s->name,
			.server = o->dns_server,
			.zone = o->dns_zone,
			.tsig_key = o->dns_tsig_key,
			.tsig_key_file = o->dns_tsig_key_file,
			.hook = o->dns_hook,
			.check = o->dns_check_servers,
			.timeout = o->dns_timeout,
		};

		r = acme_dns01_new(s->base, &dc, &s->dns01, reterr);
	} else
		r = acme_http01_open(s->base, o->http01_listen, &s->http01, reterr);
	if (r < 0)
		goto fail;
	s->pump = evtimer_new(s->base, acme_pump_cb, s);
	if (!s->pump)
		goto oom;
	*ret_state = s;
	return 0;
oom:
	r = ch_err_set(reterr, -ENOMEM, "out of memory");
fail:
	ca_acme_free(s);
	return r;
}

static char **
strv_copy(char *const *v)
{
	size_t n = ch_strv_length(v);
	char **c = calloc(n + 1, sizeof(*c));

	for (size_t i = 0; c && i < n; i++)
		if (!(c[i] = strdup(v[i])))
			return ch_strv_free(c);
	return c;
}

/* Queues the request; everything happens from the event loop. */
static int
ca_acme_issue(void *state, const struct ch_issue_request *req, ch_issue_done_fn *done, void *arg)
{
	struct ca_acme *s = state;
	struct acme_job *j;
	char safe[80];
	size_t k = 0;

	if (!req->idempotency_key || !req->key ||
	    (ch_strv_length(req->dns_names) + ch_strv_length(req->ip_names)) == 0)
		return -EINVAL;
	/* The idempotency key names a file: keep it to a safe alphabet. */
	for (const char *p = req->idempotency_key; *p && k + 1 < sizeof(safe); p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')
			safe[k++] = *p;
	safe[k] = '\0';
	if (k == 0 || strlen(req->idempotency_key) != k)
		snprintf(safe, sizeof(safe), "h%016llx",
			 (unsigned long long)ch_hash64(req->idempotency_key));
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->s = s;
	j->op.c = &s->client;
	j->done = done;
	j->arg = arg;
	j->cert_name = strdup(req->cert_name ? req->cert_name : "?");
	j->idem = strdup(req->idempotency_key);
	j->dns = strv_copy(req->dns_names);
	j->ip = strv_copy(req->ip_names);
	j->timer = evtimer_new(s->base, job_timer_cb, j);
	if (asprintf(&j->order_path, "%s/orders/%s.json", s->dir, safe) < 0)
		j->order_path = NULL;
	if (!j->cert_name || !j->idem || !j->dns || !j->ip || !j->timer || !j->order_path) {
		job_free(j);
		return -ENOMEM;
	}
	if (req->profile && !(j->profile = strdup(req->profile))) {
		job_free(j);
		return -ENOMEM;
	}
	if (req->replaces_pem && ch_acme_ari_cert_id(req->replaces_pem, &j->replaces) < 0)
		j->replaces = NULL; /* no AKI: nothing to name */
	EVP_PKEY_up_ref(req->key);
	j->key = req->key;
	TAILQ_INSERT_TAIL(&s->queue, j, link);
	acme_pump(s);
	return 0;
}

/* Wildcards need dns-01; so do IP identifiers need http-01. */
static int
ca_acme_check_names(const void *opts, char *const *dns, char *const *ip, struct ch_err *reterr)
{
	const struct ca_acme_opts *o = opts;
	bool dns01 = o->challenge && streq(o->challenge, "dns-01");

	for (size_t i = 0; dns && dns[i]; i++)
		if (!dns01 && strncmp(dns[i], "*.", 2) == 0)
			return ch_err_set(reterr, -EINVAL,
					  "'%s' is a wildcard: the CA validates with http-01, which "
					  "cannot prove wildcards; set challenge: dns-01 on the CA",
					  dns[i]);
	if (dns01 && ip && ip[0])
		return ch_err_set(reterr, -EINVAL,
				  "'%s' is an IP address: dns-01 cannot validate it; use a CA with "
				  "http-01",
				  ip[0]);
	return 0;
}

static const char *
ca_acme_directory(const void *opts)
{
	return ((const struct ca_acme_opts *)opts)->directory;
}

const struct ch_ca_ops ch_ca_acme_ops = {
	.type = "acme",
	.keys = ca_acme_keys,
	.opts_size = sizeof(struct ca_acme_opts),
	.check = ca_acme_check,
	.check_names = ca_acme_check_names,
	.directory = ca_acme_directory,
	.new = ca_acme_new,
	.free = ca_acme_free,
	.issue = ca_acme_issue,
	.renewal_info = ca_acme_renewal_info,
	.key_rollover = ca_acme_key_rollover,
	.revoke = ca_acme_revoke,
	.trust_pem = NULL,
};
