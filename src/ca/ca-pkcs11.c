/* SPDX-License-Identifier: MIT */
/*
 * The "pkcs11" CA backend: the local CA's leaves (src/lib/localca.c), signed
 * by a key that lives in a PKCS#11 token (src/lib/pkcs11.c) and never
 * leaves it. The token is reached lazily and again after any loss; until it
 * is, issuance fails with ca-unreachable or misconfigured and a message
 * naming what is wrong. There is no software key to fall back to. Signing
 * is synchronous (a C_Sign per leaf); done() runs on the next loop turn.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "certherd/ca.h"
#include "certherd/ceremony.h"
#include "certherd/conf.h"
#include "certherd/crl.h"
#include "certherd/crypto.h"
#include "certherd/defer.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/pkcs11.h"
#include "certherd/util.h"

#define CA_P11_LIFETIME (INT64_C(10) * 365 * 86400)
#define CA_P11_LEAF_LIFETIME (INT64_C(90) * 86400)
#define CA_P11_BACKDATE 300
#define CA_P11_CERT_MAX (1024 * 1024)

struct ca_p11_opts {
	char *module;
	char *token_label;
	char *token_serial;
	char *key_label;
	char *key_id;
	char *pin_file;
	char *pin_env;
	char *cert;
	bool create;
	enum ch_key_type key_type; /* -1 = unset */
	char *signature;           /* RSA: "pkcs1" (default) or "pss" */
	char *common_name;
	int64_t lifetime;          /* of a created CA certificate; 0 = unset */
	int64_t leaf_lifetime;     /* 0 = unset */
	int64_t backdate;          /* 0 = unset */
	int64_t crl_validity;      /* 0 = unset */
	char *crl_path;
	char *crl_url;
};

static const struct ch_conf_key ca_p11_keys[] = {
	{ "module", CH_CONF_PATH, offsetof(struct ca_p11_opts, module), true,
	  "a path to a PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so" },
	{ "token_label", CH_CONF_STRING, offsetof(struct ca_p11_opts, token_label), false,
	  "the token's label" },
	{ "token_serial", CH_CONF_STRING, offsetof(struct ca_p11_opts, token_serial), false,
	  "the token's serial number" },
	{ "key_label", CH_CONF_STRING, offsetof(struct ca_p11_opts, key_label), false,
	  "the CA key's label (CKA_LABEL)" },
	{ "key_id", CH_CONF_STRING, offsetof(struct ca_p11_opts, key_id), false,
	  "the CA key's id (CKA_ID) in hex" },
	{ "pin_file", CH_CONF_PATH, offsetof(struct ca_p11_opts, pin_file), false,
	  "a path to a file holding the user PIN (mode 0400 or 0600)" },
	{ "pin_env", CH_CONF_STRING, offsetof(struct ca_p11_opts, pin_env), false,
	  "the name of an environment variable holding the user PIN" },
	{ "cert", CH_CONF_PATH, offsetof(struct ca_p11_opts, cert), false,
	  "a path to the CA certificate (PEM)" },
	{ "create", CH_CONF_BOOL, offsetof(struct ca_p11_opts, create), false,
	  "true to generate the key and a self-signed certificate when missing" },
	{ "key_type", CH_CONF_KEYTYPE, offsetof(struct ca_p11_opts, key_type), false,
	  "ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-3072" },
	{ "signature", CH_CONF_STRING, offsetof(struct ca_p11_opts, signature), false,
	  "pkcs1 or pss (RSA keys)" },
	{ "common_name", CH_CONF_STRING, offsetof(struct ca_p11_opts, common_name), false,
	  "the created CA certificate's common name" },
	{ "lifetime", CH_CONF_DURATION, offsetof(struct ca_p11_opts, lifetime), false,
	  "a duration such as 10y" },
	{ "leaf_lifetime", CH_CONF_DURATION, offsetof(struct ca_p11_opts, leaf_lifetime), false,
	  "a duration such as 90d" },
	{ "backdate", CH_CONF_DURATION, offsetof(struct ca_p11_opts, backdate), false,
	  "a duration such as 5m" },
	{ "crl_validity", CH_CONF_DURATION, offsetof(struct ca_p11_opts, crl_validity), false,
	  "a duration such as 7d" },
	{ "crl_path", CH_CONF_PATH, offsetof(struct ca_p11_opts, crl_path), false,
	  "a path for the CRL (PEM; the DER goes beside it)" },
	{ "crl_url", CH_CONF_STRING, offsetof(struct ca_p11_opts, crl_url), false,
	  "a URL such as http://crl.example.com/crl/NAME.crl" },
	{ NULL },
};

struct ca_p11_pending;

struct ca_p11 {
	char *name;
	struct event_base *base;
	struct ch_p11 *tok;
	struct ch_localca *ca;  /* NULL until token, key and certificate are in place */
	uint64_t checked;       /* ch_p11_connections() when the key was last checked */
	int sign_r;             /* the token's error in the last signature, or 0 */
	char *cert_path;
	bool create;
	enum ch_key_type key_type;
	char *common_name;
	int64_t lifetime, leaf_lifetime, backdate;
	char *trust_pem;
	char *chain_pem;        /* the CA certificate file's certificates that are not self-signed */
	struct ch_crl_settings crl;
	char *crl_path, *crl_url;
	LIST_HEAD(, ca_p11_pending) pending;
};

/* One result on its way to done(). */
struct ca_p11_pending {
	struct ca_p11 *owner; /* back-reference; NULL once the backend is freed */
	ch_issue_done_fn *done;
	void *arg;
	struct ch_issue_result res;
	LIST_ENTRY(ca_p11_pending) link;
};

static int
ca_p11_check(const void *opts, struct ch_err *reterr)
{
	const struct ca_p11_opts *o = opts;
	unsigned char id[64];

	if (!o->token_label == !o->token_serial)
		return ch_err_set(reterr, -EINVAL, "give one of token_label and token_serial");
	if (!o->key_label && !o->key_id)
		return ch_err_set(reterr, -EINVAL, "give key_label, key_id or both");
	if (o->key_id && ch_p11_parse_id(o->key_id, id, sizeof(id)) < 0)
		return ch_err_set(reterr, -EINVAL,
				  "key_id must be hex of at most 64 bytes, e.g. 01a2 or 01:a2");
	if (!o->pin_file == !o->pin_env)
		return ch_err_set(reterr, -EINVAL,
				  "give one of pin_file and pin_env (the PIN never goes in "
				  "the configuration)");
	if (o->key_type == CH_KEY_ED25519)
		return ch_err_set(reterr, -EINVAL,
				  "key_type must be ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-3072");
	if (o->crl_url && !strstr(o->crl_url, "://"))
		return ch_err_set(reterr, -EINVAL, "crl_url must be a URL such as "
				  "http://crl.example.com/crl/NAME.crl");
	if (o->signature && !streq(o->signature, "pkcs1") && !streq(o->signature, "pss"))
		return ch_err_set(reterr, -EINVAL, "signature must be pkcs1 or pss");
	if (o->signature && streq(o->signature, "pss") &&
	    (o->key_type == CH_KEY_ECDSA_P256 || o->key_type == CH_KEY_ECDSA_P384))
		return ch_err_set(reterr, -EINVAL, "signature pss needs an RSA key_type");
	return 0;
}

/* What a failure means for the scheduler: come back later, or fix something. */
static enum ch_ca_outcome
ca_p11_outcome(int r)
{
	switch (r) {
	case -ENODEV:
	case -EIO:
	case -EAGAIN:
	case -EBUSY:
	case -ETIMEDOUT:
		return CH_CA_UNREACHABLE;
	default:
		return CH_CA_MISCONFIGURED;
	}
}

static int
ca_p11_sign(void *arg, const unsigned char *tbs, size_t tbs_len, unsigned char *sig,
	    size_t *sig_len, struct ch_err *reterr)
{
	struct ca_p11 *s = arg;

	s->sign_r = ch_p11_sign(s->tok, tbs, tbs_len, sig, sig_len, reterr);
	return s->sign_r;
}

static int
ca_p11_signer(struct ca_p11 *s, struct ch_signer *ret, struct ch_err *reterr)
{
	int r = ch_p11_signer(s->tok, ret, reterr);

	if (r < 0)
		return r;
	ret->sign = ca_p11_sign;
	ret->arg = s;
	return 0;
}

/* A self-signed certificate for the token key pub, written to cert_path. */
static int
ca_p11_make_cert(struct ca_p11 *s, EVP_PKEY *pub, X509 **ret, struct ch_err *reterr)
{
	_cleanup_free_ char *pem = NULL, *dir = NULL;
	struct ch_signer signer;
	char *slash;
	X509 *x = NULL;
	int r;

	r = ca_p11_signer(s, &signer, reterr);
	if (r < 0)
		return r;
	r = ch_localca_make_root_signer(pub, &signer, s->common_name, s->lifetime, &x, reterr);
	if (r < 0)
		return r;
	r = ch_cert_to_pem(x, &pem);
	if (r < 0) {
		X509_free(x);
		return ch_err_set(reterr, r, "cannot encode the CA certificate");
	}
	dir = strdup(s->cert_path);
	if (!dir) {
		X509_free(x);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = ch_mkdir_p(dir, 0700);
		if (r < 0) {
			X509_free(x);
			return ch_err_set(reterr, r, "cannot create directory %s: %s", dir,
					  strerror(-r));
		}
	}
	r = ch_write_file_atomic(s->cert_path, pem, strlen(pem), 0644, (uid_t)-1, (gid_t)-1,
				 reterr);
	if (r < 0) {
		X509_free(x);
		return r;
	}
	ch_log_notice("CA %s: created CA certificate %s for the %s in PKCS#11 %s", s->name,
		      s->cert_path, ch_p11_key_name(s->tok), ch_p11_token_name(s->tok));
	*ret = x;
	return 0;
}

/*
 * The chain leaves carry: every certificate of a CA certificate file (an
 * intermediate, then what is above it) that is not self-signed.
 */
static int
ca_p11_chain_pem(const char *pem, size_t len, char **ret, struct ch_err *reterr)
{
	STACK_OF(X509) *sk = NULL;
	struct ch_err perr = { "" };
	char *buf = NULL;
	size_t blen = 0;
	FILE *f;
	int r;

	r = ch_certs_from_pem(pem, len, &sk, &perr);
	if (r < 0)
		return ch_err_set(reterr, -EINVAL, "CA certificate file: %s", perr.msg);
	f = open_memstream(&buf, &blen);
	if (!f) {
		sk_X509_pop_free(sk, X509_free);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	for (int i = 0; i < sk_X509_num(sk) && r >= 0; i++) {
		X509 *x = sk_X509_value(sk, i);
		_cleanup_free_ char *one = NULL;

		if (X509_check_issued(x, x) == X509_V_OK)
			continue;
		r = ch_cert_to_pem(x, &one);
		if (r >= 0)
			fputs(one, f);
	}
	ERR_clear_error();
	sk_X509_pop_free(sk, X509_free);
	if (fclose(f) != 0 && r >= 0)
		r = -ENOMEM;
	if (r < 0) {
		free(buf);
		return ch_err_set(reterr, r, "cannot encode the CA chain");
	}
	*ret = buf;
	return 0;
}

/*
 * A leaf with a name outside the CA certificate's name constraints (an
 * intermediate signed with certherd ca sign-intermediate --permitted-dns)
 * would not verify anywhere: refused rather than deployed.
 */
static int
ca_p11_check_constraints(struct ca_p11 *s, X509 *leaf, struct ch_err *reterr)
{
	NAME_CONSTRAINTS *nc;
	int rc;

	nc = X509_get_ext_d2i(ch_localca_cert(s->ca), NID_name_constraints, NULL, NULL);
	if (!nc) {
		ERR_clear_error();
		return 0;
	}
	rc = NAME_CONSTRAINTS_check(leaf, nc);
	if (rc == X509_V_OK)
		rc = NAME_CONSTRAINTS_check_CN(leaf, nc);
	NAME_CONSTRAINTS_free(nc);
	ERR_clear_error();
	if (rc == X509_V_OK)
		return 0;
	return ch_err_set(reterr, -EPERM,
			  "the names are outside the name constraints of CA certificate %s (%s); "
			  "a certificate for them would not verify: use a CA whose constraints "
			  "permit them", s->cert_path, X509_verify_cert_error_string(rc));
}

static int
ca_p11_load_cert(struct ca_p11 *s, X509 **ret, struct ch_err *reterr)
{
	_cleanup_free_ char *pem = NULL;
	struct ch_err perr = { "" };
	size_t len = 0;
	int r;

	r = ch_read_file(s->cert_path, CA_P11_CERT_MAX, &pem, &len);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read CA certificate %s: %s", s->cert_path,
				  strerror(-r));
	r = ch_cert_from_pem(pem, len, ret, &perr);
	if (r < 0)
		return ch_err_set(reterr, -EINVAL, "CA certificate %s: %s", s->cert_path, perr.msg);
	free(s->chain_pem);
	s->chain_pem = NULL;
	r = ca_p11_chain_pem(pem, len, &s->chain_pem, reterr);
	if (r < 0) {
		X509_free(*ret);
		*ret = NULL;
	}
	return r;
}

/*
 * Connects to the token and sets up the CA: finds the key (or, with create,
 * generates it and a self-signed certificate), loads the certificate and
 * proves with a test signature that the key is the certificate's.
 */
static int
ca_p11_ready(struct ca_p11 *s, struct ch_err *reterr)
{
	struct ch_signer signer;
	struct stat st;
	EVP_PKEY *pub = NULL;
	X509 *cert = NULL;
	bool have_cert;
	int r;

	if (s->ca)
		return ch_p11_connect(s->tok, reterr);
	if (stat(s->cert_path, &st) == 0)
		have_cert = true;
	else if (errno == ENOENT)
		have_cert = false;
	else
		return ch_err_set(reterr, -errno, "cannot access CA certificate %s: %s",
				  s->cert_path, strerror(errno));

	r = ch_p11_find_key(s->tok, have_cert ? NULL : &pub, reterr);
	if (r == -ENOKEY && s->create && !have_cert) {
		ch_log_notice("CA %s: generating a new %s key in PKCS#11 %s", s->name,
			      ch_key_type_to_string(s->key_type), ch_p11_token_name(s->tok));
		r = ch_p11_generate_key(s->tok, s->key_type, &pub, reterr);
	} else if (r == -ENOKEY && have_cert) {
		/* A new key could never match the certificate: an operator must look. */
		char msg[sizeof(reterr->msg)];

		snprintf(msg, sizeof(msg), "%s", reterr ? reterr->msg : "");
		return ch_err_set(reterr, r, "%s, but CA certificate %s exists", msg, s->cert_path);
	}
	if (r < 0)
		goto out;
	if (have_cert)
		r = ca_p11_load_cert(s, &cert, reterr);
	else if (!s->create)
		r = ch_err_set(reterr, -ENOENT,
			       "CA certificate %s not found (set create: true to make one)",
			       s->cert_path);
	else
		r = ca_p11_make_cert(s, pub, &cert, reterr);
	if (r < 0)
		goto out;

	r = ca_p11_signer(s, &signer, reterr);
	if (r >= 0)
		r = ch_localca_new_signer(cert, &signer, &s->ca, reterr);
	if (r < 0) {
		s->ca = NULL;
		goto out;
	}
	r = ch_localca_self_test(s->ca, reterr);
	if (r >= 0)
		r = ch_localca_set_crl_url(s->ca, s->crl_url, reterr);
	if (r < 0) {
		s->ca = ch_localca_free(s->ca);
		goto out;
	}
	s->checked = ch_p11_connections(s->tok);
	free(s->trust_pem);
	s->trust_pem = NULL;
	r = ch_cert_to_pem(cert, &s->trust_pem);
	if (r < 0)
		ch_err_set(reterr, r, "cannot encode the CA certificate");
out:
	EVP_PKEY_free(pub);
	X509_free(cert);
	return r;
}

static void
ca_p11_free(void *state)
{
	struct ca_p11 *s = state;
	struct ca_p11_pending *p;

	if (!s)
		return;
	while ((p = LIST_FIRST(&s->pending))) {
		LIST_REMOVE(p, link);
		p->owner = NULL;
	}
	ch_localca_free(s->ca);
	ch_p11_free(s->tok);
	free(s->trust_pem);
	free(s->chain_pem);
	free(s->crl_path);
	free(s->crl_url);
	free(s->cert_path);
	free(s->common_name);
	free(s->name);
	free(s);
}

static int
ca_p11_new(const char *name, const void *opts, const struct ch_ca_env *env, void **ret_state,
	   struct ch_err *reterr)
{
	const struct ca_p11_opts *o = opts;
	struct ch_p11_config cfg = {
		.module = o->module,
		.token_label = o->token_label,
		.token_serial = o->token_serial,
		.key_label = o->key_label,
		.key_id = o->key_id,
		.pin_file = o->pin_file,
		.pin_env = o->pin_env,
		.rsa_pss = o->signature && streq(o->signature, "pss"),
	};
	struct ch_err err = { "" };
	struct ca_p11 *s;
	int r;

	if (!env || !env->base)
		return ch_err_set(reterr, -EINVAL, "CA %s: no event loop", name);
	r = ca_p11_check(o, reterr);
	if (r < 0)
		return r;
	if (!o->cert && !env->state_dir)
		return ch_err_set(reterr, -EINVAL, "CA %s: no state directory", name);
	s = calloc(1, sizeof(*s));
	if (!s)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	LIST_INIT(&s->pending);
	s->base = env->base;
	s->create = o->create;
	s->key_type = (int)o->key_type >= 0 ? o->key_type : CH_KEY_ECDSA_P256;
	s->lifetime = o->lifetime > 0 ? o->lifetime : CA_P11_LIFETIME;
	s->leaf_lifetime = o->leaf_lifetime > 0 ? o->leaf_lifetime : CA_P11_LEAF_LIFETIME;
	s->backdate = o->backdate > 0 ? o->backdate : CA_P11_BACKDATE;
	s->name = strdup(name);
	if (o->cert)
		s->cert_path = strdup(o->cert);
	else if (asprintf(&s->cert_path, "%s/ca/%s/ca.crt", env->state_dir, name) < 0)
		s->cert_path = NULL;
	if (!s->name || !s->cert_path ||
	    (o->common_name && !(s->common_name = strdup(o->common_name)))) {
		ca_p11_free(s);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	r = ch_ca_crl_settings_init(name, o->crl_validity, o->crl_path, o->crl_url, env,
				    &s->crl_path, &s->crl_url, &s->crl, reterr);
	if (r >= 0)
		r = ch_p11_new(&cfg, &s->tok, reterr);
	if (r < 0) {
		ca_p11_free(s);
		return r;
	}
	/* The token may come later: issuance reports it until then. */
	r = ca_p11_ready(s, &err);
	if (r < 0)
		ch_log_warning("CA %s: not ready (%s): %s", name,
			       ch_ca_outcome_to_string(ca_p11_outcome(r)), err.msg);
	*ret_state = s;
	return 0;
}

static void
ca_p11_deliver(void *arg)
{
	struct ca_p11_pending *p = arg;

	if (p->owner) {
		LIST_REMOVE(p, link);
		p->owner = NULL;
		p->done(&p->res, p->arg);
	}
	ch_issue_result_done(&p->res);
	free(p);
}

/* The leaf for req, or an outcome and message in res. */
static void
ca_p11_issue_now(struct ca_p11 *s, const struct ch_issue_request *req,
		 struct ch_issue_result *res)
{
	struct ch_err err = { "" };
	X509 *x = NULL;
	int64_t lifetime = req->lifetime > 0 ? req->lifetime : s->leaf_lifetime;
	/* Backdating is for clock skew; it must not eat a short lifetime. */
	int64_t backdate = s->backdate < lifetime / 10 ? s->backdate : lifetime / 10;
	int r;

	r = ca_p11_ready(s, &err);
	if (r < 0) {
		res->outcome = ca_p11_outcome(r);
		goto fail;
	}
	s->sign_r = 0;
	r = ch_localca_issue(s->ca, req->key, req->dns_names, req->ip_names, lifetime, backdate,
			     &x, &err);
	if (r < 0) {
		if (s->sign_r < 0)
			res->outcome = ca_p11_outcome(s->sign_r);
		else
			res->outcome = r == -EKEYEXPIRED ? CH_CA_MISCONFIGURED : CH_CA_REJECTED;
		goto fail;
	}
	if (ch_p11_connections(s->tok) != s->checked) {
		/* A new session: the key found again must still be the certificate's. */
		if (X509_verify(x, X509_get0_pubkey(ch_localca_cert(s->ca))) != 1) {
			X509_free(x);
			ERR_clear_error();
			ch_err_set(&err, -EKEYREJECTED,
				   "after reconnecting, the %s in PKCS#11 %s no longer belongs "
				   "to CA certificate %s",
				   ch_p11_key_name(s->tok), ch_p11_token_name(s->tok), s->cert_path);
			res->outcome = CH_CA_MISCONFIGURED;
			goto fail;
		}
		s->checked = ch_p11_connections(s->tok);
	}
	r = ca_p11_check_constraints(s, x, &err);
	if (r < 0) {
		X509_free(x);
		res->outcome = CH_CA_REJECTED;
		goto fail;
	}
	r = ch_cert_to_pem(x, &res->cert_pem);
	res->cert = x; /* spares the receiver parsing it again */
	if (r >= 0) {
		res->chain_pem = strdup(s->chain_pem ? s->chain_pem : "");
		if (!res->chain_pem)
			r = -ENOMEM;
	}
	if (r < 0) {
		ch_err_set(&err, r, "cannot encode the certificate");
		res->outcome = CH_CA_REJECTED;
		goto fail;
	}
	res->outcome = CH_CA_ISSUED;
	return;
fail:
	ch_issue_result_done(res);
	snprintf(res->message, sizeof(res->message), "%s", err.msg);
}

/* Signs now; done() runs from the event loop with the outcome. */
static int
ca_p11_issue(void *state, const struct ch_issue_request *req, ch_issue_done_fn *done, void *arg)
{
	struct ca_p11 *s = state;
	struct ca_p11_pending *p;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->done = done;
	p->arg = arg;
	ca_p11_issue_now(s, req, &p->res);
	r = ch_defer(s->base, ca_p11_deliver, p);
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
ca_p11_trust_pem(void *state)
{
	struct ca_p11 *s = state;

	return s->trust_pem;
}

static const struct ch_crl_settings *
ca_p11_crl_settings(void *state)
{
	struct ca_p11 *s = state;

	return &s->crl;
}

/* Signs a CRL in the token; -ENODEV and friends while it is unreachable. */
static int
ca_p11_sign_crl(void *state, const struct ch_crl_request *req, X509_CRL **ret,
		struct ch_err *reterr)
{
	struct ca_p11 *s = state;
	int r;

	r = ca_p11_ready(s, reterr);
	if (r < 0)
		return r;
	return ch_localca_crl(s->ca, req, ret, reterr);
}

const struct ch_ca_ops ch_ca_pkcs11_ops = {
	.type = "pkcs11",
	.keys = ca_p11_keys,
	.opts_size = sizeof(struct ca_p11_opts),
	.check = ca_p11_check,
	.new = ca_p11_new,
	.free = ca_p11_free,
	.issue = ca_p11_issue,
	.trust_pem = ca_p11_trust_pem,
	.crl_settings = ca_p11_crl_settings,
	.sign_crl = ca_p11_sign_crl,
};

/* The anchor of chain (its last certificate) and the rest as untrusted. */
static int
ca_p11_import_verify(X509 *cert, const char *chain_pem, size_t chain_len, struct ch_err *reterr)
{
	STACK_OF(X509) *sk = NULL;
	struct ch_err perr = { "" };
	X509 *anchor;
	int r;

	r = ch_certs_from_pem(chain_pem, chain_len, &sk, &perr);
	if (r < 0 || sk_X509_num(sk) < 1) {
		sk_X509_pop_free(sk, X509_free);
		return ch_err_set(reterr, -EINVAL, "the chain holds no certificate: %s", perr.msg);
	}
	anchor = sk_X509_pop(sk);
	r = ch_cert_verify(cert, sk, anchor, &perr);
	if (r < 0) {
		char subject[256] = "?";

		X509_NAME_oneline(X509_get_subject_name(anchor), subject, sizeof(subject));
		ch_err_set(reterr, r, "the certificate does not verify up to %s, the last of the "
			   "chain: %s", subject, perr.msg);
	}
	X509_free(anchor);
	sk_X509_pop_free(sk, X509_free);
	return r;
}

int
ch_ca_pkcs11_import(const struct ch_conf_ca *conf, const char *state_dir, const char *cert_pem,
		    size_t cert_len, const char *chain_pem, size_t chain_len, char **ret_path,
		    struct ch_err *reterr)
{
	const struct ca_p11_opts *o = conf->opts;
	struct ch_p11_config cfg = {
		.module = o->module,
		.token_label = o->token_label,
		.token_serial = o->token_serial,
		.key_label = o->key_label,
		.key_id = o->key_id,
		.pin_file = o->pin_file,
		.pin_env = o->pin_env,
		.rsa_pss = o->signature && streq(o->signature, "pss"),
	};
	_cleanup_free_ char *path = NULL, *one = NULL, *dir = NULL, *all = NULL;
	struct ch_err perr = { "" };
	struct ch_p11 *tok = NULL;
	EVP_PKEY *pub = NULL;
	X509 *cert = NULL;
	char *slash;
	int r;

	if (conf->ops != &ch_ca_pkcs11_ops)
		return ch_err_set(reterr, -EINVAL, "CA %s is of type %s, not pkcs11", conf->name,
				  conf->type);
	if (o->cert)
		path = strdup(o->cert);
	else if (asprintf(&path, "%s/ca/%s/ca.crt", state_dir, conf->name) < 0)
		path = NULL;
	if (!path)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	r = ch_cert_from_pem(cert_pem, cert_len, &cert, &perr);
	if (r < 0)
		return ch_err_set(reterr, -EINVAL, "the certificate: %s", perr.msg);
	if (X509_check_ca(cert) != 1) {
		r = ch_err_set(reterr, -EINVAL, "the certificate is not a CA certificate");
		goto out;
	}
	if (chain_pem) {
		r = ca_p11_import_verify(cert, chain_pem, chain_len, reterr);
		if (r < 0)
			goto out;
	}
	r = ch_p11_new(&cfg, &tok, reterr);
	if (r >= 0)
		r = ch_p11_find_key(tok, &pub, reterr);
	if (r < 0)
		goto out;
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), pub) != 1) {
		r = ch_err_set(reterr, -EKEYREJECTED,
			       "the certificate's public key is not the %s in PKCS#11 %s",
			       ch_p11_key_name(tok), ch_p11_token_name(tok));
		goto out;
	}
	r = ch_cert_to_pem(cert, &one);
	if (r >= 0 && asprintf(&all, "%s%s", one, chain_pem ? chain_pem : "") < 0) {
		all = NULL;
		r = -ENOMEM;
	}
	if (r < 0) {
		ch_err_set(reterr, r, "cannot encode the certificate");
		goto out;
	}
	dir = strdup(path);
	if (!dir) {
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = ch_mkdir_p(dir, 0700);
		if (r < 0) {
			ch_err_set(reterr, r, "cannot create directory %s: %s", dir, strerror(-r));
			goto out;
		}
	}
	r = ch_write_file_atomic(path, all, strlen(all), 0644, (uid_t)-1, (gid_t)-1, reterr);
	if (r >= 0)
		*ret_path = TAKE_PTR(path);
out:
	ERR_clear_error();
	EVP_PKEY_free(pub);
	X509_free(cert);
	ch_p11_free(tok);
	return r;
}
