/* SPDX-License-Identifier: MIT */
/*
 * The "local" CA backend: a software CA (src/lib/localca.c) that signs
 * synchronously, then hands the result to done() on the next turn of the
 * event loop. Its certificate and key live under <state_dir>/ca/<name>/
 * and are created on first use unless cert and key are configured.
 * Results still pending when the backend is freed are dropped silently.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "certherd/ca.h"
#include "certherd/crl.h"
#include "certherd/crypto.h"
#include "certherd/defer.h"
#include "certherd/macro.h"

#define CA_LOCAL_LIFETIME (INT64_C(10) * 365 * 86400)
#define CA_LOCAL_LEAF_LIFETIME (INT64_C(90) * 86400)
#define CA_LOCAL_BACKDATE 300

struct ca_local_opts {
	char *cert;
	char *key;
	char *common_name;
	enum ch_key_type key_type; /* -1 = unset */
	int64_t lifetime;          /* of the CA certificate; 0 = unset */
	int64_t leaf_lifetime;     /* 0 = unset */
	int64_t backdate;          /* 0 = unset */
	int64_t crl_validity;      /* 0 = unset */
	char *crl_path;
	char *crl_url;
};

static const struct ch_conf_key ca_local_keys[] = {
	{ "cert", CH_CONF_PATH, offsetof(struct ca_local_opts, cert), false,
	  "a path to the CA certificate (PEM)" },
	{ "key", CH_CONF_PATH, offsetof(struct ca_local_opts, key), false,
	  "a path to the CA private key (PEM, mode 0600)" },
	{ "common_name", CH_CONF_STRING, offsetof(struct ca_local_opts, common_name), false,
	  "the CA certificate's common name" },
	{ "key_type", CH_CONF_KEYTYPE, offsetof(struct ca_local_opts, key_type), false,
	  "ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or ed25519" },
	{ "lifetime", CH_CONF_DURATION, offsetof(struct ca_local_opts, lifetime), false,
	  "a duration such as 10y" },
	{ "leaf_lifetime", CH_CONF_DURATION, offsetof(struct ca_local_opts, leaf_lifetime), false,
	  "a duration such as 90d" },
	{ "backdate", CH_CONF_DURATION, offsetof(struct ca_local_opts, backdate), false,
	  "a duration such as 5m" },
	{ "crl_validity", CH_CONF_DURATION, offsetof(struct ca_local_opts, crl_validity), false,
	  "a duration such as 7d" },
	{ "crl_path", CH_CONF_PATH, offsetof(struct ca_local_opts, crl_path), false,
	  "a path for the CRL (PEM; the DER goes beside it)" },
	{ "crl_url", CH_CONF_STRING, offsetof(struct ca_local_opts, crl_url), false,
	  "a URL such as http://crl.example.com/crl/NAME.crl" },
	{ NULL },
};

struct ca_local_pending;

struct ca_local {
	char *name;
	struct ch_localca *ca;
	struct event_base *base;
	char *trust_pem;
	int64_t leaf_lifetime;
	int64_t backdate;
	struct ch_crl_settings crl;
	char *crl_path, *crl_url;
	LIST_HEAD(, ca_local_pending) pending;
};

/* One result on its way to done(). */
struct ca_local_pending {
	struct ca_local *owner; /* back-reference; NULL once the backend is freed */
	ch_issue_done_fn *done;
	void *arg;
	struct ch_issue_result res;
	LIST_ENTRY(ca_local_pending) link;
};

static int
ca_local_check(const void *opts, struct ch_err *reterr)
{
	const struct ca_local_opts *o = opts;

	if (o->crl_url && !strstr(o->crl_url, "://"))
		return ch_err_set(reterr, -EINVAL, "crl_url must be a URL such as "
				  "http://crl.example.com/crl/NAME.crl");
	if (!o->cert != !o->key)
		return ch_err_set(reterr, -EINVAL,
				  "cert and key must be set together (only %s is set)",
				  o->cert ? "cert" : "key");
	return 0;
}

static void
ca_local_free(void *state)
{
	struct ca_local *s = state;
	struct ca_local_pending *p;

	if (!s)
		return;
	/* Pending deliveries still fire from the loop, but only to free themselves. */
	while ((p = LIST_FIRST(&s->pending))) {
		LIST_REMOVE(p, link);
		p->owner = NULL;
	}
	ch_localca_free(s->ca);
	free(s->trust_pem);
	free(s->crl_path);
	free(s->crl_url);
	free(s->name);
	free(s);
}

static int
ca_local_new(const char *name, const void *opts, const struct ch_ca_env *env, void **ret_state,
	     struct ch_err *reterr)
{
	const struct ca_local_opts *o = opts;
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct ca_local *s;
	bool create;
	int r;

	if (!env || !env->base)
		return ch_err_set(reterr, -EINVAL, "CA %s: no event loop", name);
	create = !o->cert && !o->key;
	if (create) {
		if (!env->state_dir)
			return ch_err_set(reterr, -EINVAL, "CA %s: no state directory", name);
		if (asprintf(&cert, "%s/ca/%s/ca.crt", env->state_dir, name) < 0) {
			cert = NULL;
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		}
		if (asprintf(&key, "%s/ca/%s/ca.key", env->state_dir, name) < 0) {
			key = NULL;
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		}
	} else {
		r = ca_local_check(o, reterr);
		if (r < 0)
			return r;
		cert = strdup(o->cert);
		key = strdup(o->key);
		if (!cert || !key)
			return ch_err_set(reterr, -ENOMEM, "out of memory");
	}

	s = calloc(1, sizeof(*s));
	if (!s)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	LIST_INIT(&s->pending);
	s->base = env->base;
	s->leaf_lifetime = o->leaf_lifetime > 0 ? o->leaf_lifetime : CA_LOCAL_LEAF_LIFETIME;
	s->backdate = o->backdate > 0 ? o->backdate : CA_LOCAL_BACKDATE;
	s->name = strdup(name);
	if (!s->name) {
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto fail;
	}
	r = ch_localca_open(cert, key, create, o->common_name,
			    (int)o->key_type >= 0 ? o->key_type : CH_KEY_ECDSA_P256,
			    o->lifetime > 0 ? o->lifetime : CA_LOCAL_LIFETIME, &s->ca, reterr);
	if (r < 0)
		goto fail;
	r = ch_cert_to_pem(ch_localca_cert(s->ca), &s->trust_pem);
	if (r < 0) {
		ch_err_set(reterr, r, "CA %s: cannot encode its certificate", name);
		goto fail;
	}
	r = ch_ca_crl_settings_init(name, o->crl_validity, o->crl_path, o->crl_url, env,
				    &s->crl_path, &s->crl_url, &s->crl, reterr);
	if (r < 0)
		goto fail;
	r = ch_localca_set_crl_url(s->ca, s->crl_url, reterr);
	if (r < 0)
		goto fail;
	*ret_state = s;
	return 0;
fail:
	ca_local_free(s);
	return r;
}

static void
ca_local_deliver(void *arg)
{
	struct ca_local_pending *p = arg;

	if (p->owner) {
		LIST_REMOVE(p, link);
		p->owner = NULL;
		p->done(&p->res, p->arg);
	}
	ch_issue_result_done(&p->res);
	free(p);
}

/* Signs now; done() runs from the event loop with the outcome. */
static int
ca_local_issue(void *state, const struct ch_issue_request *req, ch_issue_done_fn *done, void *arg)
{
	struct ca_local *s = state;
	struct ca_local_pending *p;
	struct ch_err err = { "" };
	X509 *x = NULL;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->done = done;
	p->arg = arg;

	int64_t lifetime = req->lifetime > 0 ? req->lifetime : s->leaf_lifetime;
	/* Backdating is for clock skew; it must not eat a short lifetime. */
	int64_t backdate = s->backdate < lifetime / 10 ? s->backdate : lifetime / 10;

	r = ch_localca_issue(s->ca, req->key, req->dns_names, req->ip_names, lifetime, backdate,
			     &x, &err);
	if (r >= 0) {
		r = ch_cert_to_pem(x, &p->res.cert_pem);
		p->res.cert = x; /* spares the receiver parsing it again */
		if (r >= 0) {
			p->res.chain_pem = strdup("");
			if (!p->res.chain_pem)
				r = -ENOMEM;
		}
		if (r < 0)
			ch_err_set(&err, r, "cannot encode the certificate");
	}
	if (r >= 0)
		p->res.outcome = CH_CA_ISSUED;
	else {
		ch_issue_result_done(&p->res);
		/* An expired CA needs an operator; anything else is this request's fault. */
		p->res.outcome = r == -EKEYEXPIRED ? CH_CA_MISCONFIGURED : CH_CA_REJECTED;
		snprintf(p->res.message, sizeof(p->res.message), "%s", err.msg);
	}

	r = ch_defer(s->base, ca_local_deliver, p);
	if (r < 0) {
		ch_issue_result_done(&p->res);
		free(p);
		return r;
	}
	p->owner = s;
	LIST_INSERT_HEAD(&s->pending, p, link);
	return 0;
}

static const char *
ca_local_trust_pem(void *state)
{
	struct ca_local *s = state;

	return s->trust_pem;
}

static const struct ch_crl_settings *
ca_local_crl_settings(void *state)
{
	struct ca_local *s = state;

	return &s->crl;
}

static int
ca_local_sign_crl(void *state, const struct ch_crl_request *req, X509_CRL **ret,
		  struct ch_err *reterr)
{
	struct ca_local *s = state;

	return ch_localca_crl(s->ca, req, ret, reterr);
}

const struct ch_ca_ops ch_ca_local_ops = {
	.type = "local",
	.keys = ca_local_keys,
	.opts_size = sizeof(struct ca_local_opts),
	.check = ca_local_check,
	.new = ca_local_new,
	.free = ca_local_free,
	.issue = ca_local_issue,
	.trust_pem = ca_local_trust_pem,
	.crl_settings = ca_local_crl_settings,
	.sign_crl = ca_local_sign_crl,
};
