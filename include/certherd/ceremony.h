/* SPDX-License-Identifier: MIT */
/*
 * A CA hierarchy made offline, key by key, with keys that live in a token:
 * a self-signed root, an intermediate's CSR, and the root's signature over
 * that CSR. Every signature goes through a struct ch_signer (C_Sign in the
 * token); nothing here holds a private key. Used by `certherd ca`.
 */
#pragma once

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/crypto.h"
#include "certherd/err.h"

#define CH_CEREMONY_DAYS_MAX 36500

/*
 * Parses a subject such as "CN=Example Root,O=Example" (RFC 4514's order,
 * the most significant part last) or the slash form "/O=Example/CN=Example
 * Root" (openssl's order, most significant first) into a new name; no
 * escapes, so values cannot hold ',' or '/'. Returns 0 or -EINVAL naming
 * the bad part.
 */
int ch_ceremony_parse_subject(const char *s, X509_NAME **ret, struct ch_err *reterr);

/*
 * A self-signed root for pub, signed by signer: basicConstraints CA:TRUE
 * (critical), keyUsage keyCertSign and cRLSign (critical), SKI and AKI, a
 * random serial, valid from 5 minutes ago for days days.
 */
int ch_ceremony_make_root(EVP_PKEY *pub, const struct ch_signer *signer, const X509_NAME *subject,
			  int days, X509 **ret, struct ch_err *reterr);

/* A PKCS#10 request for pub with subject, signed by signer. */
int ch_ceremony_make_csr(EVP_PKEY *pub, const struct ch_signer *signer, const X509_NAME *subject,
			 X509_REQ **ret, struct ch_err *reterr);

struct ch_ceremony_sub {
	int days;                    /* capped at the root's notAfter */
	int path_len;                /* -1: no pathLenConstraint */
	char *const *permitted_dns;  /* NULL-terminated, or NULL: no name constraints */
};

/*
 * An intermediate CA certificate for the subject and key of req, issued by
 * root and signed by signer (the root's key): basicConstraints CA:TRUE with
 * path_len (critical), keyUsage keyCertSign and cRLSign (critical), SKI,
 * AKI of the root, and permitted DNS subtrees (critical) when given. The
 * request's own extensions are ignored. Returns -EBADMSG when the request's
 * signature does not verify, -EKEYREJECTED when signer's key is not root's,
 * -EINVAL for bad options, or another -errno.
 */
int ch_ceremony_sign_sub(X509 *root, const struct ch_signer *signer, X509_REQ *req,
			 const struct ch_ceremony_sub *opts, X509 **ret, struct ch_err *reterr);

struct ch_conf_ca;

/*
 * Activates a CA certificate for the pkcs11 CA conf (src/ca/ca-pkcs11.c):
 * the certificate (the first of cert_pem) must be a CA whose public key is
 * the configured token key's, and must verify up to the last certificate of
 * chain_pem. The CA's cert path then holds the certificate followed by
 * chain_pem, written atomically and durably; leaves issued afterwards
 * carry every certificate of it that is not self-signed as their chain.
 * Sets *ret_path (caller frees) to that path. Returns 0, -EKEYREJECTED (not
 * the token key), -EBADMSG (does not verify), -EINVAL or a token error.
 */
int ch_ca_pkcs11_import(const struct ch_conf_ca *conf, const char *state_dir,
			const char *cert_pem, size_t cert_len, const char *chain_pem,
			size_t chain_len, char **ret_path, struct ch_err *reterr);
