/* SPDX-License-Identifier: MIT */
/*
 * Keys and certificates with OpenSSL 3: key generation per key type,
 * PEM in and out, the facts we keep about a certificate, and checks used
 * before adopting existing files. PEM buffers holding private keys must be
 * released with ch_secret_free().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certherd/conf.h"
#include "certherd/err.h"

int ch_key_generate(enum ch_key_type type, EVP_PKEY **ret, struct ch_err *reterr);
/* PKCS#8 PEM, unencrypted; free with ch_secret_free(). */
int ch_key_to_pem(EVP_PKEY *key, char **ret, size_t *ret_len, struct ch_err *reterr);
int ch_key_from_pem(const char *pem, size_t len, EVP_PKEY **ret, struct ch_err *reterr);
/* Reads a key file; refuses (-EPERM) files with any group or other permission bits. */
int ch_key_load_file(const char *path, EVP_PKEY **ret, struct ch_err *reterr);
void ch_secret_free(char *p, size_t len);

/* First certificate of a PEM buffer. */
int ch_cert_from_pem(const char *pem, size_t len, X509 **ret, struct ch_err *reterr);
/* All certificates of a PEM buffer, in order. */
int ch_certs_from_pem(const char *pem, size_t len, STACK_OF(X509) **ret, struct ch_err *reterr);
/* NUL-terminated PEM, caller frees; returns 0 or -errno. */
int ch_cert_to_pem(X509 *x, char **ret);

struct ch_cert_info {
	char serial[80];      /* lowercase hex, no separators */
	char fingerprint[65]; /* SHA-256 of DER, lowercase hex */
	int64_t not_before, not_after;
	char *subject;        /* one-line RFC 2253 */
	char *issuer;
	char **dns_names;     /* NULL-terminated */
	char **ip_names;      /* NULL-terminated, textual */
};
int ch_cert_info_get(X509 *x, struct ch_cert_info *ret);
void ch_cert_info_done(struct ch_cert_info *i);

/* True when the SAN set equals dns+ip exactly (order and case of DNS ignored). */
bool ch_cert_names_match(X509 *x, char *const *dns, char *const *ip);
/* True when the certificate's public key belongs to key. */
bool ch_cert_key_match(X509 *x, EVP_PKEY *key);

/* Verifies leaf against trust anchors with OpenSSL's chain verification.
 * untrusted may be NULL. Returns 0 or -EBADMSG with the reason in reterr. */
int ch_cert_verify(X509 *leaf, STACK_OF(X509) *untrusted, X509 *anchor, struct ch_err *reterr);

/*
 * A software CA: a certificate and its private key.
 */
struct ch_localca;

/*
 * Loads the CA cert and key from cert_path/key_path. When both files are
 * missing and create is true, generates a key of key_type and a self-signed
 * CA certificate with subject CN=cn valid for lifetime seconds and writes
 * both durably (key 0600). Returns 0 or -errno.
 */
int ch_localca_open(const char *cert_path, const char *key_path, bool create, const char *cn,
		    enum ch_key_type key_type, int64_t lifetime, struct ch_localca **ret,
		    struct ch_err *reterr);
struct ch_localca *ch_localca_free(struct ch_localca *ca);
X509 *ch_localca_cert(struct ch_localca *ca);

/*
 * A signer for a CA key that lives elsewhere (a PKCS#11 token). sign()
 * gets the DER of a TBSCertificate that already names sigalg_der (a DER
 * AlgorithmIdentifier) and writes the signature value (a DER
 * ECDSA-Sig-Value, or the RSA signature) to sig, which has room for
 * *sig_len (CH_SIG_MAX) bytes, setting *sig_len. Returns 0 or -errno with
 * reterr set.
 */
#define CH_SIG_MAX 1024
typedef int ch_sign_fn(void *arg, const unsigned char *tbs, size_t tbs_len, unsigned char *sig,
		       size_t *sig_len, struct ch_err *reterr);
struct ch_signer {
	ch_sign_fn *sign;
	void *arg; /* borrowed: must outlive every CA made with this signer */
	const unsigned char *sigalg_der;
	size_t sigalg_len;
};

/*
 * A CA over cert (a reference is taken) whose leaves signer signs. Nothing
 * is signed yet; ch_localca_self_test() proves signer matches cert.
 */
int ch_localca_new_signer(X509 *cert, const struct ch_signer *signer, struct ch_localca **ret,
			  struct ch_err *reterr);
/* A self-signed CA certificate for pub with subject CN=cn, signed by signer. */
int ch_localca_make_root_signer(EVP_PKEY *pub, const struct ch_signer *signer, const char *cn,
				int64_t lifetime, X509 **ret, struct ch_err *reterr);
/*
 * Issues a throwaway leaf and checks its signature with the CA
 * certificate's public key. Returns 0, -EKEYREJECTED when the signing key
 * is not the certificate's, or the signer's error.
 */
int ch_localca_self_test(struct ch_localca *ca, struct ch_err *reterr);

/*
 * Issues a leaf for the public key of key: subject CN = first DNS name (or
 * first IP), SANs from dns and ip, EKU serverAuth+clientAuth, KU
 * digitalSignature (+keyEncipherment for RSA), SKI/AKI, basicConstraints
 * CA:FALSE, a random 128-bit serial, notBefore backdated by backdate
 * seconds, notAfter = now + lifetime (capped at the CA's notAfter).
 * Returns 0, -EINVAL (bad names/lifetime) or -EKEYEXPIRED (CA expired).
 */
int ch_localca_issue(struct ch_localca *ca, EVP_PKEY *key, char *const *dns, char *const *ip,
		     int64_t lifetime, int64_t backdate, X509 **ret, struct ch_err *reterr);
