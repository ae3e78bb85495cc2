/* SPDX-License-Identifier: MIT */
/*
 * CA backends behind one small ops struct, found by the `type:` of a CA
 * in the config through a compile-time table (src/ca/ca.c). Issuance is
 * asynchronous: issue() returning 0 means "started", and done() is always
 * called later from the event loop, never from inside issue().
 * The backend reports an outcome; the scheduler alone decides backoff.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/conf.h"
#include "certherd/err.h"

struct event_base;

enum ch_ca_outcome {
	CH_CA_ISSUED,
	CH_CA_PENDING,       /* try again after retry_after */
	CH_CA_REJECTED,      /* the CA refused this request */
	CH_CA_UNREACHABLE,   /* CA, token or network unavailable */
	CH_CA_MISCONFIGURED, /* our configuration cannot work */
	_CH_CA_OUTCOME_MAX,
	_CH_CA_OUTCOME_INVALID = -22,
};
/* "issued", "pending", "rejected", "ca-unreachable", "misconfigured" */
const char *ch_ca_outcome_to_string(enum ch_ca_outcome o);

struct ch_issue_request {
	const char *cert_name;
	char *const *dns_names;
	char *const *ip_names;
	EVP_PKEY *key;               /* the certificate's new key (borrowed) */
	int64_t lifetime;            /* requested seconds; 0 = CA default */
	const char *idempotency_key; /* same key = same renewal */
	const char *replaces_pem;    /* the certificate this one replaces (ARI); may be NULL */
	const char *profile;         /* ACME profile name; NULL = the CA's default */
};

struct ch_issue_result {
	enum ch_ca_outcome outcome;
	char *cert_pem;       /* leaf, on CH_CA_ISSUED */
	char *chain_pem;      /* intermediates up to (excluding) the root; may be "" */
	X509 *cert;           /* on CH_CA_ISSUED, the leaf when the backend built it; may be NULL */
	int64_t retry_after;  /* seconds, on CH_CA_PENDING, 0 = unknown */
	bool rate_limited;    /* on CH_CA_PENDING: the CA's rate limit, not work in progress */
	char message[1024];   /* on failure, what went wrong */
};

typedef void ch_issue_done_fn(struct ch_issue_result *res, void *arg);

/* A revocation the CA is told about (ch_ca_ops.revoke). */
struct ch_revoke_request {
	const char *cert_name;
	const char *serial;   /* hex */
	const char *cert_pem; /* the revoked leaf */
	int reason;           /* enum ch_crl_reason (crl.h) */
};
/* r is 0 or -errno; message says what went wrong. */
typedef void ch_revoke_done_fn(int r, const char *message, void *arg);

/* A CA's suggested renewal window for one certificate (ACME ARI, RFC 9773). */
struct ch_renewal_info {
	int64_t start, end;       /* the window, Unix seconds */
	int64_t retry_after;      /* seconds until asking again; 0 = not said */
	char explanation_url[512];
	char message[512];        /* on failure, what went wrong */
};
/*
 * r is 0 (ri holds the window), -EOPNOTSUPP (this CA offers no renewal
 * information) or another -errno (message says why; retry_after may be set).
 */
typedef void ch_renewal_info_done_fn(int r, const struct ch_renewal_info *ri, void *arg);

/* An administrative CA operation ended: r is 0 or -errno; message says what happened. */
typedef void ch_ca_done_fn(int r, const char *message, void *arg);

/* Where and for how long a CA that signs its own CRLs publishes them. */
struct ch_crl_settings {
	int64_t validity; /* seconds from thisUpdate to nextUpdate */
	const char *path; /* PEM file; the DER goes beside it (crl.pem -> crl.der) */
	const char *url;  /* in leaves' CRL distribution point; NULL = none */
};
struct ch_crl_request;

struct ch_ca_env {
	struct event_base *base;
	const char *state_dir;
};

struct ch_ca_ops {
	const char *type;
	const struct ch_conf_key *keys; /* options under the CA's name */
	size_t opts_size;
	/* Cross-field checks at config load (may be NULL). */
	int (*check)(const void *opts, struct ch_err *reterr);
	/* Whether the CA can issue for these names (may be NULL), at config load. */
	int (*check_names)(const void *opts, char *const *dns, char *const *ip,
			   struct ch_err *reterr);
	int (*new)(const char *name, const void *opts, const struct ch_ca_env *env,
		   void **ret_state, struct ch_err *reterr);
	/* Results not yet delivered are dropped; done() is not called. */
	void (*free)(void *state);
	int (*issue)(void *state, const struct ch_issue_request *req, ch_issue_done_fn *done,
		     void *arg);
	/* The ACME directory URL in opts, for default rate-limit budgets (may be NULL). */
	const char *(*directory)(const void *opts);
	/* PEM of the CA certificates a client should trust (may be NULL). */
	const char *(*trust_pem)(void *state);
	/* Tells the CA about a revocation; asynchronous like issue(). NULL = not needed. */
	int (*revoke)(void *state, const struct ch_revoke_request *req, ch_revoke_done_fn *done,
		      void *arg);
	/* The CA's renewal window for cert_pem; asynchronous like issue(). NULL = none. */
	int (*renewal_info)(void *state, const char *cert_pem, ch_renewal_info_done_fn *done,
			    void *arg);
	/*
	 * Replaces the account key at the CA (ACME keyChange); asynchronous,
	 * done() is always called once. NULL = the CA has no account key.
	 */
	int (*key_rollover)(void *state, ch_ca_done_fn *done, void *arg);
	/* For CAs that sign their own CRLs (else both NULL): settings, and a CRL
	 * signed now, checked with the CA certificate. Returns 0 or -errno. */
	const struct ch_crl_settings *(*crl_settings)(void *state);
	int (*sign_crl)(void *state, const struct ch_crl_request *req, X509_CRL **ret,
			struct ch_err *reterr);
};

extern const struct ch_ca_ops ch_ca_local_ops, ch_ca_acme_ops;
extern const struct ch_ca_ops ch_ca_pkcs11_ops; /* with HAVE_PKCS11 */

const struct ch_ca_ops *ch_ca_ops_find(const char *type);
/* Comma-separated list of known types, for error messages. */
const char *ch_ca_types(void);

struct ch_ca {
	char *name;
	const struct ch_ca_ops *ops;
	void *state;
};

int ch_ca_new(const struct ch_conf_ca *conf, const struct ch_ca_env *env, struct ch_ca **ret,
	      struct ch_err *reterr);
struct ch_ca *ch_ca_free(struct ch_ca *ca);
void ch_issue_result_done(struct ch_issue_result *res);
/*
 * For backends that sign CRLs: fills *ret from the configured values with
 * the defaults (7 days, <state_dir>/ca/<name>/crl.pem); the path and URL
 * are copied to *ret_path and *ret_url, which the backend frees.
 */
int ch_ca_crl_settings_init(const char *name, int64_t validity, const char *path,
			    const char *url, const struct ch_ca_env *env, char **ret_path,
			    char **ret_url, struct ch_crl_settings *ret, struct ch_err *reterr);
