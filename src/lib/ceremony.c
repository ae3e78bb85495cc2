/* SPDX-License-Identifier: MIT */
/*
 * The offline CA hierarchy (`certherd ca`): a root certificate, an
 * intermediate's CSR and the intermediate certificate, each signed by a
 * struct ch_signer fed the DER of what is signed. Not on any hot path, so
 * CA extensions are built from OpenSSL's v3 configuration strings.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/ceremony.h"

#define CEREMONY_BACKDATE 300
#define CEREMONY_SUBJECT_MAX 1024
#define CEREMONY_NC_MAX 4096

int
ch_ceremony_parse_subject(const char *s, X509_NAME **ret, struct ch_err *reterr)
{
	char buf[CEREMONY_SUBJECT_MAX];
	char sep = ',', *p, *next;
	X509_NAME *name;

	if (!s || strlen(s) >= sizeof(buf))
		return ch_err_set(reterr, -EINVAL, "the subject must be 1 to %d characters",
				  CEREMONY_SUBJECT_MAX - 1);
	if (s[0] == '/') {
		sep = '/';
		s++;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	name = X509_NAME_new();
	if (!name)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	for (p = buf; p; p = next) {
		char *eq, *key, *val;

		next = strchr(p, sep);
		if (next)
			*next++ = '\0';
		key = p;
		while (isspace((unsigned char)*key))
			key++;
		eq = strchr(key, '=');
		if (!eq || eq == key || !eq[1]) {
			X509_NAME_free(name);
			return ch_err_set(reterr, -EINVAL,
					  "subject part \"%s\" is not KEY=VALUE, as in \"CN=Example "
					  "Root,O=Example\"", key);
		}
		*eq = '\0';
		val = eq + 1;
		/* "CN=a,O=b" is RFC 4514's order, most significant last; "/O=b/CN=a" openssl's. */
		if (!X509_NAME_add_entry_by_txt(name, key, MBSTRING_UTF8, (unsigned char *)val, -1,
						sep == ',' ? 0 : -1, 0)) {
			ERR_clear_error();
			X509_NAME_free(name);
			return ch_err_set(reterr, -EINVAL, "subject attribute \"%s\" is unknown or "
					  "its value is invalid", key);
		}
	}
	if (X509_NAME_entry_count(name) == 0) {
		X509_NAME_free(name);
		return ch_err_set(reterr, -EINVAL, "the subject is empty");
	}
	*ret = name;
	return 0;
}

/* A random positive serial of at most 127 bits, never zero. */
static int
ceremony_set_serial(X509 *x)
{
	unsigned char buf[16];
	BIGNUM *bn;
	int ok;

	do {
		if (RAND_bytes(buf, sizeof(buf)) != 1)
			return -EIO;
		buf[0] &= 0x7f;
		bn = BN_bin2bn(buf, sizeof(buf), NULL);
		if (!bn)
			return -ENOMEM;
		if (!BN_is_zero(bn))
			break;
		BN_free(bn);
	} while (true);
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

static int
ceremony_add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/* The signature AlgorithmIdentifier the signer produces. */
static X509_ALGOR *
ceremony_sigalg(const struct ch_signer *signer)
{
	const unsigned char *p = signer->sigalg_der;

	if (!signer->sign || !p || signer->sigalg_len == 0)
		return NULL;
	return d2i_X509_ALGOR(NULL, &p, (long)signer->sigalg_len);
}

/* A signature value as a BIT STRING of whole octets. */
static int
ceremony_set_sig(ASN1_BIT_STRING *sig, const unsigned char *buf, size_t len)
{
	if (!ASN1_BIT_STRING_set(sig, (unsigned char *)buf, (int)len))
		return -ENOMEM;
	sig->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	return 0;
}

/* Signs a built certificate: the TBSCertificate's DER goes to the signer. */
static int
ceremony_sign_x509(const struct ch_signer *signer, X509 *x, struct ch_err *reterr)
{
	const ASN1_BIT_STRING *csig;
	const X509_ALGOR *calg;
	X509_ALGOR *alg = ceremony_sigalg(signer);
	unsigned char *tbs = NULL;
	unsigned char buf[CH_SIG_MAX];
	size_t sig_len = sizeof(buf);
	int len, r;

	if (!alg)
		return ch_err_set_ssl(reterr, -EINVAL, "no usable signer");
	X509_get0_signature(&csig, &calg, x);
	/* OpenSSL 3.0 has no setters for these; filled in place as X509_sign() does. */
	if (!X509_ALGOR_copy((X509_ALGOR *)X509_get0_tbs_sigalg(x), alg) ||
	    !X509_ALGOR_copy((X509_ALGOR *)calg, alg)) {
		X509_ALGOR_free(alg);
		return ch_err_set_ssl(reterr, -ENOMEM, "cannot set the signature algorithm");
	}
	X509_ALGOR_free(alg);
	len = i2d_re_X509_tbs(x, &tbs);
	if (len <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot encode the certificate");
	r = signer->sign(signer->arg, tbs, (size_t)len, buf, &sig_len, reterr);
	OPENSSL_free(tbs);
	if (r < 0)
		return r;
	if (sig_len == 0 || sig_len > sizeof(buf))
		return ch_err_set(reterr, -EIO, "the signer returned %zu bytes", sig_len);
	if (ceremony_set_sig((ASN1_BIT_STRING *)csig, buf, sig_len) < 0)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	return 0;
}

static int
ceremony_set_validity(X509 *x, int days, int64_t cap)
{
	time_t now = time(NULL);
	int64_t end = (int64_t)now + (int64_t)days * 86400;

	if (cap > 0 && end > cap)
		end = cap;
	if (!ASN1_TIME_set(X509_getm_notBefore(x), now - CEREMONY_BACKDATE) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)end))
		return -EIO;
	return 0;
}

static int
ceremony_check_days(int days, struct ch_err *reterr)
{
	if (days < 1 || days > CH_CEREMONY_DAYS_MAX)
		return ch_err_set(reterr, -EINVAL, "days must be 1 to %d", CH_CEREMONY_DAYS_MAX);
	return 0;
}

int
ch_ceremony_make_root(EVP_PKEY *pub, const struct ch_signer *signer, const X509_NAME *subject,
		      int days, X509 **ret, struct ch_err *reterr)
{
	X509 *x;
	int r;

	r = ceremony_check_days(days, reterr);
	if (r < 0)
		return r;
	x = X509_new();
	if (!x)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!X509_set_version(x, X509_VERSION_3) || !X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, subject) || ceremony_set_serial(x) < 0 ||
	    ceremony_set_validity(x, days, 0) < 0 || !X509_set_pubkey(x, pub)) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot build the root certificate");
		goto fail;
	}
	if (ceremony_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    ceremony_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    ceremony_add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
	    ceremony_add_ext(x, x, NID_authority_key_identifier, "keyid:always") < 0) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot add the root's extensions");
		goto fail;
	}
	r = ceremony_sign_x509(signer, x, reterr);
	if (r < 0)
		goto fail;
	if (X509_verify(x, pub) != 1) {
		r = ch_err_set_ssl(reterr, -EKEYREJECTED,
				   "the token's signature does not verify with its public key");
		goto fail;
	}
	*ret = x;
	return 0;
fail:
	X509_free(x);
	return r;
}

int
ch_ceremony_make_csr(EVP_PKEY *pub, const struct ch_signer *signer, const X509_NAME *subject,
		     X509_REQ **ret, struct ch_err *reterr)
{
	X509_ALGOR *alg = ceremony_sigalg(signer);
	ASN1_BIT_STRING *sig = NULL;
	unsigned char *tbs = NULL;
	unsigned char buf[CH_SIG_MAX];
	size_t sig_len = sizeof(buf);
	X509_REQ *req;
	int len, r;

	if (!alg)
		return ch_err_set_ssl(reterr, -EINVAL, "no usable signer");
	req = X509_REQ_new();
	if (!req || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, pub) ||
	    !X509_REQ_set1_signature_algo(req, alg)) {
		r = ch_err_set_ssl(reterr, -ENOMEM, "cannot build the request");
		goto fail;
	}
	len = i2d_re_X509_REQ_tbs(req, &tbs);
	if (len <= 0) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot encode the request");
		goto fail;
	}
	r = signer->sign(signer->arg, tbs, (size_t)len, buf, &sig_len, reterr);
	OPENSSL_free(tbs);
	if (r < 0)
		goto fail;
	if (sig_len == 0 || sig_len > sizeof(buf)) {
		r = ch_err_set(reterr, -EIO, "the signer returned %zu bytes", sig_len);
		goto fail;
	}
	sig = ASN1_BIT_STRING_new();
	if (!sig || ceremony_set_sig(sig, buf, sig_len) < 0) {
		ASN1_BIT_STRING_free(sig);
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto fail;
	}
	X509_REQ_set0_signature(req, sig);
	if (X509_REQ_verify(req, pub) != 1) {
		r = ch_err_set_ssl(reterr, -EKEYREJECTED,
				   "the token's signature does not verify with its public key");
		goto fail;
	}
	X509_ALGOR_free(alg);
	*ret = req;
	return 0;
fail:
	X509_ALGOR_free(alg);
	X509_REQ_free(req);
	return r;
}

/* A DNS name or domain for a name constraint: letters, digits, '-', '.'. */
static bool
ceremony_dns_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return false;
	return true;
}

static int
ceremony_name_constraints(X509 *root, X509 *x, char *const *dns, struct ch_err *reterr)
{
	char buf[CEREMONY_NC_MAX];
	size_t len;

	len = (size_t)snprintf(buf, sizeof(buf), "critical");
	for (char *const *d = dns; *d; d++) {
		if (!ceremony_dns_ok(*d))
			return ch_err_set(reterr, -EINVAL,
					  "permitted DNS name \"%s\" is not a domain such as "
					  "example.com", *d);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, ",permitted;DNS:%s", *d);
		if (len >= sizeof(buf))
			return ch_err_set(reterr, -EINVAL, "too many permitted DNS names");
	}
	if (ceremony_add_ext(root, x, NID_name_constraints, buf) < 0)
		return ch_err_set_ssl(reterr, -EINVAL, "cannot encode the name constraints");
	return 0;
}

int
ch_ceremony_sign_sub(X509 *root, const struct ch_signer *signer, X509_REQ *req,
		     const struct ch_ceremony_sub *opts, X509 **ret, struct ch_err *reterr)
{
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	char bc[64];
	struct tm tm;
	X509 *x;
	int r;

	r = ceremony_check_days(opts->days, reterr);
	if (r < 0)
		return r;
	if (opts->path_len < -1 || opts->path_len > 16)
		return ch_err_set(reterr, -EINVAL, "path length must be 0 to 16");
	if (!pub || X509_REQ_verify(req, pub) != 1) {
		ERR_clear_error();
		return ch_err_set(reterr, -EBADMSG, "the request's signature does not verify");
	}
	if (X509_check_ca(root) != 1)
		return ch_err_set(reterr, -EINVAL, "the root is not a CA certificate");
	if (!ASN1_TIME_to_tm(X509_get0_notAfter(root), &tm))
		return ch_err_set_ssl(reterr, -EBADMSG, "cannot read the root's notAfter");
	x = X509_new();
	if (!x)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_set_subject_name(x, X509_REQ_get_subject_name(req)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(root)) || ceremony_set_serial(x) < 0 ||
	    ceremony_set_validity(x, opts->days, (int64_t)timegm(&tm)) < 0 ||
	    !X509_set_pubkey(x, pub)) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot build the intermediate certificate");
		goto fail;
	}
	if (opts->path_len >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", opts->path_len);
	else
		snprintf(bc, sizeof(bc), "critical,CA:TRUE");
	if (ceremony_add_ext(root, x, NID_basic_constraints, bc) < 0 ||
	    ceremony_add_ext(root, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    ceremony_add_ext(root, x, NID_subject_key_identifier, "hash") < 0 ||
	    ceremony_add_ext(root, x, NID_authority_key_identifier, "keyid:always") < 0) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot add the intermediate's extensions");
		goto fail;
	}
	if (opts->permitted_dns && opts->permitted_dns[0]) {
		r = ceremony_name_constraints(root, x, opts->permitted_dns, reterr);
		if (r < 0)
			goto fail;
	}
	r = ceremony_sign_x509(signer, x, reterr);
	if (r < 0)
		goto fail;
	if (X509_verify(x, X509_get0_pubkey(root)) != 1) {
		ERR_clear_error();
		r = ch_err_set(reterr, -EKEYREJECTED,
			       "the signing key does not belong to the root certificate");
		goto fail;
	}
	*ret = x;
	return 0;
fail:
	X509_free(x);
	return r;
}
