/* SPDX-License-Identifier: MIT */
/*
 * Revocation reasons by name, and building and signing X.509 v2 CRLs.
 * A CRL for a key in a token is signed the way localca.c signs leaves:
 * the DER of the TBSCertList goes to a struct ch_signer. OpenSSL 3.0 has
 * no setter for a CRL's inner signature AlgorithmIdentifier, so the
 * TBSCertList is re-encoded with the signer's algorithm in DER here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certherd/crl.h"
#include "certherd/macro.h"

static const struct {
	const char *camel, *kebab;
} crl_reasons[_CH_CRL_REASON_MAX] = {
	[CH_CRL_REASON_UNSPECIFIED] = { "unspecified", "unspecified" },
	[CH_CRL_REASON_KEY_COMPROMISE] = { "keyCompromise", "key-compromise" },
	[CH_CRL_REASON_CA_COMPROMISE] = { "cACompromise", "ca-compromise" },
	[CH_CRL_REASON_AFFILIATION_CHANGED] = { "affiliationChanged", "affiliation-changed" },
	[CH_CRL_REASON_SUPERSEDED] = { "superseded", "superseded" },
	[CH_CRL_REASON_CESSATION_OF_OPERATION] = { "cessationOfOperation",
						   "cessation-of-operation" },
	[CH_CRL_REASON_CERTIFICATE_HOLD] = { "certificateHold", "certificate-hold" },
	[CH_CRL_REASON_REMOVE_FROM_CRL] = { "removeFromCRL", "remove-from-crl" },
	[CH_CRL_REASON_PRIVILEGE_WITHDRAWN] = { "privilegeWithdrawn", "privilege-withdrawn" },
	[CH_CRL_REASON_AA_COMPROMISE] = { "aACompromise", "aa-compromise" },
};

const char *
ch_crl_reason_to_string(enum ch_crl_reason r)
{
	if (r < 0 || r >= _CH_CRL_REASON_MAX)
		return NULL;
	return crl_reasons[r].camel;
}

enum ch_crl_reason
ch_crl_reason_from_string(const char *s)
{
	char buf[64];
	size_t len;

	if (!s)
		return _CH_CRL_REASON_INVALID;
	len = strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return _CH_CRL_REASON_INVALID;
	for (size_t i = 0; i <= len; i++)
		buf[i] = s[i] == '_' ? '-' : s[i];
	for (int r = 0; r < _CH_CRL_REASON_MAX; r++) {
		if (!crl_reasons[r].camel)
			continue;
		if (strcasecmp(buf, crl_reasons[r].camel) == 0 ||
		    strcasecmp(buf, crl_reasons[r].kebab) == 0)
			return (enum ch_crl_reason)r;
	}
	return _CH_CRL_REASON_INVALID;
}

const char *
ch_crl_reasons_list(void)
{
	static char buf[256];

	if (!buf[0])
		for (int r = 0; r < _CH_CRL_REASON_MAX; r++) {
			if (!crl_reasons[r].camel || r == CH_CRL_REASON_REMOVE_FROM_CRL)
				continue;
			if (buf[0])
				strcat(buf, ", ");
			strcat(buf, crl_reasons[r].camel);
		}
	return buf;
}

static ASN1_INTEGER *
crl_serial_from_hex(const char *hex)
{
	ASN1_INTEGER *ai;
	BIGNUM *bn = NULL;
	size_t len = hex ? strlen(hex) : 0;

	if (len == 0 || len > 80 || strspn(hex, "0123456789abcdefABCDEF") != len)
		return NULL;
	if (BN_hex2bn(&bn, hex) != (int)len)
		return NULL;
	ai = BN_to_ASN1_INTEGER(bn, NULL);
	BN_free(bn);
	return ai;
}

static int
crl_add_entry(X509_CRL *crl, const struct ch_crl_entry *e, struct ch_err *reterr)
{
	X509_REVOKED *rev = X509_REVOKED_new();
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *t = NULL;
	ASN1_ENUMERATED *code = NULL;
	int r = -ENOMEM;

	if (!rev)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	serial = crl_serial_from_hex(e->serial);
	if (!serial) {
		r = ch_err_set(reterr, -EINVAL, "invalid serial \"%s\"", e->serial ? e->serial : "");
		goto out;
	}
	if (e->reason < 0 || e->reason >= _CH_CRL_REASON_MAX || !crl_reasons[e->reason].camel ||
	    e->reason == CH_CRL_REASON_REMOVE_FROM_CRL) {
		r = ch_err_set(reterr, -EINVAL, "serial %s: invalid revocation reason %d", e->serial,
			       (int)e->reason);
		goto out;
	}
	t = ASN1_TIME_set(NULL, (time_t)e->revoked_at);
	if (!t || !X509_REVOKED_set_serialNumber(rev, serial) ||
	    !X509_REVOKED_set_revocationDate(rev, t))
		goto ssl;
	/* "the reason code unspecified SHOULD be absent" (RFC 5280, 5.3.1) */
	if (e->reason != CH_CRL_REASON_UNSPECIFIED) {
		code = ASN1_ENUMERATED_new();
		if (!code || !ASN1_ENUMERATED_set(code, e->reason) ||
		    X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0) != 1)
			goto ssl;
	}
	if (!X509_CRL_add0_revoked(crl, rev))
		goto ssl;
	rev = NULL;
	r = 0;
	goto out;
ssl:
	r = ch_err_set_ssl(reterr, -ENOMEM, "cannot add a CRL entry");
out:
	ASN1_ENUMERATED_free(code);
	ASN1_TIME_free(t);
	ASN1_INTEGER_free(serial);
	X509_REVOKED_free(rev);
	return r;
}

int
ch_crl_build(X509 *issuer, const struct ch_crl_request *req, X509_CRL **ret,
	     struct ch_err *reterr)
{
	const ASN1_OCTET_STRING *ski;
	AUTHORITY_KEYID *akid = NULL;
	ASN1_INTEGER *number = NULL;
	ASN1_TIME *t = NULL;
	X509_CRL *crl;
	int r;

	if (!issuer || !req || req->number == 0 || req->next_update <= req->this_update)
		return ch_err_set(reterr, -EINVAL, "invalid CRL number or update times");
	crl = X509_CRL_new();
	if (!crl)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)))
		goto ssl;
	t = ASN1_TIME_set(NULL, (time_t)req->this_update);
	if (!t || !X509_CRL_set1_lastUpdate(crl, t))
		goto ssl;
	if (!ASN1_TIME_set(t, (time_t)req->next_update) || !X509_CRL_set1_nextUpdate(crl, t))
		goto ssl;
	for (size_t i = 0; i < req->n_entries; i++) {
		r = crl_add_entry(crl, &req->entries[i], reterr);
		if (r < 0)
			goto fail;
	}
	ski = X509_get0_subject_key_id(issuer);
	if (ski) {
		akid = AUTHORITY_KEYID_new();
		if (!akid || !(akid->keyid = ASN1_OCTET_STRING_dup(ski)) ||
		    X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) != 1)
			goto ssl;
	}
	number = ASN1_INTEGER_new();
	if (!number || !ASN1_INTEGER_set_uint64(number, req->number) ||
	    X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) != 1)
		goto ssl;
	if (!X509_CRL_sort(crl))
		goto ssl;
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(number);
	ASN1_TIME_free(t);
	*ret = crl;
	return 0;
ssl:
	r = ch_err_set_ssl(reterr, -ENOMEM, "cannot build the CRL");
fail:
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(number);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return r;
}

int
ch_crl_sign_key(X509_CRL *crl, EVP_PKEY *key, const EVP_MD *md, struct ch_err *reterr)
{
	if (X509_CRL_sign(crl, key, md) <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot sign the CRL");
	return 0;
}

/* A DER header: tag, then the length in short or long form. */
static size_t
crl_der_put_header(unsigned char *p, unsigned char tag, size_t len)
{
	size_t n = 0;

	p[n++] = tag;
	if (len < 0x80) {
		p[n++] = (unsigned char)len;
		return n;
	}
	int bytes = 0;

	for (size_t l = len; l; l >>= 8)
		bytes++;
	p[n++] = (unsigned char)(0x80 | bytes);
	for (int i = bytes - 1; i >= 0; i--)
		p[n++] = (unsigned char)(len >> (8 * i));
	return n;
}

/* Reads a DER header at p (avail bytes): tag, header and content length. */
static int
crl_der_get_header(const unsigned char *p, size_t avail, unsigned char *tag, size_t *hdr,
		   size_t *len)
{
	size_t n = 2, l;

	if (avail < 2)
		return -EBADMSG;
	*tag = p[0];
	l = p[1];
	if (l & 0x80) {
		size_t bytes = l & 0x7f;

		if (bytes == 0 || bytes > 4 || avail < 2 + bytes)
			return -EBADMSG;
		l = 0;
		for (size_t i = 0; i < bytes; i++)
			l = (l << 8) | p[2 + i];
		n += bytes;
	}
	if (l > avail - n)
		return -EBADMSG;
	*hdr = n;
	*len = l;
	return 0;
}

/*
 * The TBSCertList in tbs (a SEQUENCE: optional version INTEGER, then the
 * signature AlgorithmIdentifier, then the rest) with alg in place of its
 * AlgorithmIdentifier. Caller frees *ret.
 */
static int
crl_tbs_with_alg(const unsigned char *tbs, size_t tbs_len, const unsigned char *alg,
		 size_t alg_len, unsigned char **ret, size_t *ret_len)
{
	const unsigned char *c, *end, *alg_at;
	size_t hdr, len, ehdr, elen, old_alg_len, content;
	unsigned char tag, *out;
	size_t n = 0;

	if (crl_der_get_header(tbs, tbs_len, &tag, &hdr, &len) < 0 || tag != 0x30)
		return -EBADMSG;
	c = tbs + hdr;
	end = c + len;
	alg_at = c;
	if (crl_der_get_header(c, (size_t)(end - c), &tag, &ehdr, &elen) < 0)
		return -EBADMSG;
	if (tag == 0x02) { /* version */
		alg_at = c + ehdr + elen;
		if (crl_der_get_header(alg_at, (size_t)(end - alg_at), &tag, &ehdr, &elen) < 0)
			return -EBADMSG;
	}
	if (tag != 0x30)
		return -EBADMSG;
	old_alg_len = ehdr + elen;
	content = len - old_alg_len + alg_len;
	out = malloc(content + 8);
	if (!out)
		return -ENOMEM;
	n = crl_der_put_header(out, 0x30, content);
	memcpy(out + n, c, (size_t)(alg_at - c));
	n += (size_t)(alg_at - c);
	memcpy(out + n, alg, alg_len);
	n += alg_len;
	memcpy(out + n, alg_at + old_alg_len, (size_t)(end - (alg_at + old_alg_len)));
	n += (size_t)(end - (alg_at + old_alg_len));
	*ret = out;
	*ret_len = n;
	return 0;
}

int
ch_crl_sign_signer(X509_CRL **crl, const struct ch_signer *signer, struct ch_err *reterr)
{
	unsigned char sig[CH_SIG_MAX];
	size_t sig_len = sizeof(sig), tbs2_len = 0, body, bits, n;
	unsigned char hdr[8];
	unsigned char *tbs = NULL, *tbs2 = NULL, *der = NULL;
	const unsigned char *p;
	EVP_PKEY *dummy = NULL;
	X509_CRL *signed_crl;
	int len, r;

	if (!signer || !signer->sign || !signer->sigalg_der || !signer->sigalg_len)
		return ch_err_set(reterr, -EINVAL, "no signer");
	/*
	 * Both AlgorithmIdentifiers must be set before OpenSSL encodes the
	 * TBSCertList: a throwaway signature fills them, and the DER is then
	 * rebuilt around the signer's algorithm.
	 */
	dummy = EVP_EC_gen("P-256");
	if (!dummy || X509_CRL_sign(*crl, dummy, EVP_sha256()) <= 0) {
		EVP_PKEY_free(dummy);
		return ch_err_set_ssl(reterr, -EIO, "cannot encode the CRL");
	}
	EVP_PKEY_free(dummy);
	len = i2d_re_X509_CRL_tbs(*crl, &tbs);
	if (len <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot encode the CRL");
	r = crl_tbs_with_alg(tbs, (size_t)len, signer->sigalg_der, signer->sigalg_len, &tbs2,
			     &tbs2_len);
	OPENSSL_free(tbs);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot re-encode the CRL");
	r = signer->sign(signer->arg, tbs2, tbs2_len, sig, &sig_len, reterr);
	if (r < 0)
		goto out;
	if (sig_len == 0 || sig_len > sizeof(sig)) {
		r = ch_err_set(reterr, -EIO, "the signer returned %zu bytes", sig_len);
		goto out;
	}
	/* CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue } */
	bits = crl_der_put_header(hdr, 0x03, 1 + sig_len) + 1 + sig_len;
	body = tbs2_len + signer->sigalg_len + bits;
	der = malloc(body + 8);
	if (!der) {
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto out;
	}
	n = crl_der_put_header(der, 0x30, body);
	memcpy(der + n, tbs2, tbs2_len);
	n += tbs2_len;
	memcpy(der + n, signer->sigalg_der, signer->sigalg_len);
	n += signer->sigalg_len;
	n += crl_der_put_header(der + n, 0x03, 1 + sig_len);
	der[n++] = 0; /* no unused bits */
	memcpy(der + n, sig, sig_len);
	n += sig_len;
	p = der;
	signed_crl = d2i_X509_CRL(NULL, &p, (long)n);
	if (!signed_crl || p != der + n) {
		X509_CRL_free(signed_crl);
		r = ch_err_set_ssl(reterr, -EIO, "cannot decode the signed CRL");
		goto out;
	}
	X509_CRL_free(*crl);
	*crl = signed_crl;
	r = 0;
out:
	free(der);
	free(tbs2);
	return r;
}

int
ch_crl_to_der(X509_CRL *crl, unsigned char **ret, size_t *ret_len)
{
	unsigned char *der = NULL;
	int len = i2d_X509_CRL(crl, &der);

	if (len <= 0) {
		ERR_clear_error();
		return -EIO;
	}
	*ret = der;
	*ret_len = (size_t)len;
	return 0;
}

int
ch_crl_to_pem(X509_CRL *crl, char **ret)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s;
	long len;

	if (!b)
		return -ENOMEM;
	if (!PEM_write_bio_X509_CRL(b, crl)) {
		BIO_free(b);
		ERR_clear_error();
		return -EIO;
	}
	len = BIO_get_mem_data(b, &data);
	s = malloc((size_t)len + 1);
	if (!s) {
		BIO_free(b);
		return -ENOMEM;
	}
	memcpy(s, data, (size_t)len);
	s[len] = '\0';
	BIO_free(b);
	*ret = s;
	return 0;
}
