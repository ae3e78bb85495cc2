/* SPDX-License-Identifier: MIT */
/*
 * Revocation: the RFC 5280 reason codes with their names, and X.509 v2
 * CRLs (CRL number, authority key identifier, a reasonCode per entry)
 * signed by a CA key in software or through a struct ch_signer, so that
 * a key in a PKCS#11 token signs CRLs the same way it signs leaves.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/crypto.h"
#include "certherd/err.h"

/* CRLReason (RFC 5280, 5.3.1); the numbers are the DER values. */
enum ch_crl_reason {
	CH_CRL_REASON_UNSPECIFIED = 0,
	CH_CRL_REASON_KEY_COMPROMISE = 1,
	CH_CRL_REASON_CA_COMPROMISE = 2,
	CH_CRL_REASON_AFFILIATION_CHANGED = 3,
	CH_CRL_REASON_SUPERSEDED = 4,
	CH_CRL_REASON_CESSATION_OF_OPERATION = 5,
	CH_CRL_REASON_CERTIFICATE_HOLD = 6,
	/* 7 is not used */
	CH_CRL_REASON_REMOVE_FROM_CRL = 8, /* delta CRLs only: never a revocation reason */
	CH_CRL_REASON_PRIVILEGE_WITHDRAWN = 9,
	CH_CRL_REASON_AA_COMPROMISE = 10,
	_CH_CRL_REASON_MAX,
	_CH_CRL_REASON_INVALID = -22,
};

/* The RFC's camelCase name ("keyCompromise"), or NULL for 7 and out of range. */
const char *ch_crl_reason_to_string(enum ch_crl_reason r);
/*
 * The RFC's camelCase name or its kebab-case form ("key-compromise",
 * "ca-compromise", "remove-from-crl"), in any letter case, '_' taken as
 * '-'. Returns the reason or _CH_CRL_REASON_INVALID.
 */
enum ch_crl_reason ch_crl_reason_from_string(const char *s);
/* The names a revocation accepts, comma-separated, for messages. */
const char *ch_crl_reasons_list(void);

struct ch_crl_entry {
	const char *serial; /* hex, as struct ch_cert_info keeps it */
	int64_t revoked_at;
	enum ch_crl_reason reason; /* unspecified: no reasonCode extension (5.3.1) */
};

struct ch_crl_request {
	const struct ch_crl_entry *entries;
	size_t n_entries;
	uint64_t number;     /* cRLNumber, > 0 */
	int64_t this_update; /* epoch seconds */
	int64_t next_update;
};

/*
 * A v2 CRL of issuer (its subject as the CRL issuer, its SKI as the AKI)
 * listing req's entries, not yet signed. Returns 0 or -EINVAL (a bad
 * serial or times) / -ENOMEM with reterr set.
 */
int ch_crl_build(X509 *issuer, const struct ch_crl_request *req, X509_CRL **ret,
		 struct ch_err *reterr);
/* Signs crl in place with a software key; md is NULL for Ed25519. */
int ch_crl_sign_key(X509_CRL *crl, EVP_PKEY *key, const EVP_MD *md, struct ch_err *reterr);
/*
 * Signs crl with signer: the TBSCertList naming signer's algorithm goes to
 * signer->sign(), and the signed CRL replaces *crl. Returns 0 or -errno
 * (the signer's error, or -EIO/-ENOMEM) with *crl untouched on failure.
 */
int ch_crl_sign_signer(X509_CRL **crl, const struct ch_signer *signer, struct ch_err *reterr);

/*
 * A CRL of the CA, signed by its key (software or signer) and checked with
 * the CA certificate's public key. Returns 0 or -errno with reterr set;
 * -EKEYREJECTED when the signature does not verify.
 */
int ch_localca_crl(struct ch_localca *ca, const struct ch_crl_request *req, X509_CRL **ret,
		   struct ch_err *reterr);

/*
 * Leaves issued from now on carry a cRLDistributionPoints extension with
 * url (a NULL or empty url removes it). Returns 0 or -ENOMEM.
 */
int ch_localca_set_crl_url(struct ch_localca *ca, const char *url, struct ch_err *reterr);

/* DER and PEM of a CRL; caller frees with OPENSSL_free() / free(). */
int ch_crl_to_der(X509_CRL *crl, unsigned char **ret, size_t *ret_len);
int ch_crl_to_pem(X509_CRL *crl, char **ret);
