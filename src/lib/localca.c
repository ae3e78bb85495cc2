/* SPDX-License-Identifier: MIT */
/*
 * A software CA: loads (or creates once) a self-signed CA certificate and
 * its key, and issues leaf certificates with it. Issuing is on the renewal
 * hot path, so extensions are built with typed OpenSSL APIs, and whatever
 * is the same for every leaf of a CA (issuer name, AKI, basicConstraints,
 * key usage, EKU, digests, EC groups) is prepared once in struct ch_localca.
 * Signing is a callback: the software key through X509_sign(), or a
 * struct ch_signer (a PKCS#11 token) fed the DER of the TBSCertificate.
 */

/* EC_KEY, for the public-key fast path below; guarded by OPENSSL_NO_DEPRECATED_3_0. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/crl.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/util.h"

#define LOCALCA_DEFAULT_CN "certherd local CA"
#define LOCALCA_DEFAULT_LIFETIME (INT64_C(3650) * 86400)
#define LOCALCA_BACKDATE 300
#define LOCALCA_FILE_MAX (1024 * 1024)
/* ub-common-name: longer names cannot be a CN and only appear as SANs. */
#define LOCALCA_CN_MAX 64

/* keyUsage bit numbers (RFC 5280, 4.2.1.3). */
enum {
	LOCALCA_KU_DIGITAL_SIGNATURE = 0,
	LOCALCA_KU_KEY_ENCIPHERMENT = 2,
	LOCALCA_KU_KEY_CERT_SIGN = 5,
	LOCALCA_KU_CRL_SIGN = 6,
};

/* Curves of leaf keys that take the fast public-key path. */
static const int localca_ec_nids[] = { NID_X9_62_prime256v1, NID_secp384r1 };

struct ch_localca {
	X509 *cert;
	/* Signs a built certificate: localca_sign_key() or localca_sign_ext(). */
	int (*sign)(struct ch_localca *ca, X509 *x, struct ch_err *reterr);
	EVP_PKEY *key; /* software key; NULL with an external signer */
	EVP_MD *md;    /* signature digest of key; NULL for Ed25519 */
	struct ch_signer signer; /* external signer, when key is NULL */
	X509_ALGOR *sigalg;      /* its signature AlgorithmIdentifier, parsed once */
	EVP_MD *sha1; /* key identifiers */
	int64_t not_after;
	/* Extensions shared by every leaf, encoded once. */
	X509_EXTENSION *aki;
	X509_EXTENSION *bc;
	X509_EXTENSION *eku;
	X509_EXTENSION *ku;     /* digitalSignature */
	X509_EXTENSION *ku_rsa; /* digitalSignature, keyEncipherment */
	X509_EXTENSION *cdp;    /* cRLDistributionPoints, when a CRL URL is set */
	EC_GROUP *ec_groups[ARRAY_SIZE(localca_ec_nids)];
};

/* The digest to sign with for a CA key. */
static int
localca_md_for_key(EVP_PKEY *key, EVP_MD **ret)
{
	const char *name;

	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_ED25519:
	case EVP_PKEY_ED448:
		*ret = NULL;
		return 0;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_bits(key) > 384)
			name = "SHA512";
		else if (EVP_PKEY_get_bits(key) > 256)
			name = "SHA384";
		else
			name = "SHA256";
		break;
	default:
		name = "SHA256";
		break;
	}
	*ret = EVP_MD_fetch(NULL, name, NULL);
	return *ret ? 0 : -EIO;
}

/* A random positive 127-bit serial, never zero. */
static int
localca_set_serial(X509 *x)
{
	unsigned char buf[16];
	size_t skip = 0;

	do {
		if (RAND_bytes(buf, sizeof(buf)) != 1)
			return -EIO;
		buf[0] &= 0x7f;
		for (skip = 0; skip < sizeof(buf) && buf[skip] == 0; skip++)
			;
	} while (skip == sizeof(buf));
	/* Minimal big-endian magnitude: DER has no leading zero octets. */
	if (!ASN1_STRING_set(X509_get_serialNumber(x), buf + skip, (int)(sizeof(buf) - skip)))
		return -ENOMEM;
	return 0;
}

static X509_EXTENSION *
localca_ext_ku(bool ca, bool encipher)
{
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	X509_EXTENSION *ext = NULL;

	if (!ku)
		return NULL;
	if (!ASN1_BIT_STRING_set_bit(ku, LOCALCA_KU_DIGITAL_SIGNATURE, 1))
		goto out;
	if (encipher && !ASN1_BIT_STRING_set_bit(ku, LOCALCA_KU_KEY_ENCIPHERMENT, 1))
		goto out;
	if (ca && (!ASN1_BIT_STRING_set_bit(ku, LOCALCA_KU_KEY_CERT_SIGN, 1) ||
		   !ASN1_BIT_STRING_set_bit(ku, LOCALCA_KU_CRL_SIGN, 1)))
		goto out;
	ext = X509V3_EXT_i2d(NID_key_usage, 1, ku);
out:
	ASN1_BIT_STRING_free(ku);
	return ext;
}

static X509_EXTENSION *
localca_ext_bc(bool ca)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	X509_EXTENSION *ext;

	if (!bc)
		return NULL;
	bc->ca = ca ? 0xff : 0;
	ext = X509V3_EXT_i2d(NID_basic_constraints, 1, bc);
	BASIC_CONSTRAINTS_free(bc);
	return ext;
}

static X509_EXTENSION *
localca_ext_eku(void)
{
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	X509_EXTENSION *ext = NULL;

	if (!eku)
		return NULL;
	if (!sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) ||
	    !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)))
		goto out;
	ext = X509V3_EXT_i2d(NID_ext_key_usage, 0, eku);
out:
	/* The objects are static; only the stack is ours. */
	sk_ASN1_OBJECT_free(eku);
	return ext;
}

static X509_EXTENSION *
localca_ext_aki(const ASN1_OCTET_STRING *keyid)
{
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	X509_EXTENSION *ext = NULL;

	if (!akid)
		return NULL;
	akid->keyid = ASN1_OCTET_STRING_dup(keyid);
	if (akid->keyid)
		ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
	AUTHORITY_KEYID_free(akid);
	return ext;
}

/* SHA-1 of the subjectPublicKey bit string (RFC 5280, 4.2.1.2, method 1). */
static ASN1_OCTET_STRING *
localca_key_id(X509 *x, const EVP_MD *sha1)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	ASN1_OCTET_STRING *id;

	if (!X509_pubkey_digest(x, sha1, md, &len))
		return NULL;
	id = ASN1_OCTET_STRING_new();
	if (id && !ASN1_OCTET_STRING_set(id, md, (int)len)) {
		ASN1_OCTET_STRING_free(id);
		return NULL;
	}
	return id;
}

static int
localca_add_ski(X509 *x, const EVP_MD *sha1, ASN1_OCTET_STRING **ret_id)
{
	ASN1_OCTET_STRING *id = localca_key_id(x, sha1);
	int ok;

	if (!id)
		return -EIO;
	ok = X509_add1_ext_i2d(x, NID_subject_key_identifier, id, 0, X509V3_ADD_APPEND);
	if (ok == 1 && ret_id)
		*ret_id = id;
	else
		ASN1_OCTET_STRING_free(id);
	return ok == 1 ? 0 : -ENOMEM;
}

static int
localca_add_ext(X509 *x, X509_EXTENSION *ext, bool consume)
{
	int ok;

	if (!ext)
		return -ENOMEM;
	ok = X509_add_ext(x, ext, -1);
	if (consume)
		X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

static int
localca_file_exists(const char *path, bool *ret)
{
	struct stat st;

	if (stat(path, &st) == 0) {
		*ret = true;
		return 0;
	}
	if (errno == ENOENT) {
		*ret = false;
		return 0;
	}
	return -errno;
}

static int
localca_mkdir_parent(const char *path, struct ch_err *reterr)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	int r;

	if (!dir)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	r = ch_mkdir_p(dir, 0700);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot create directory %s: %s", dir, strerror(-r));
	return 0;
}

static int
localca_sign_key(struct ch_localca *ca, X509 *x, struct ch_err *reterr)
{
	if (X509_sign(x, ca->key, ca->md) <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot sign the certificate");
	return 0;
}

/*
 * The TBSCertificate's DER goes to the external signer, and what comes
 * back becomes the signature. OpenSSL 3.0 has no setters for a
 * certificate's two AlgorithmIdentifiers nor for its signature value, so
 * they are filled in place, as X509_sign() does internally.
 */
static int
localca_sign_ext(struct ch_localca *ca, X509 *x, struct ch_err *reterr)
{
	const ASN1_BIT_STRING *csig;
	const X509_ALGOR *calg;
	ASN1_BIT_STRING *sig;
	unsigned char *tbs = NULL;
	unsigned char buf[CH_SIG_MAX];
	size_t sig_len = sizeof(buf);
	int len, r;

	X509_get0_signature(&csig, &calg, x);
	if (!X509_ALGOR_copy((X509_ALGOR *)X509_get0_tbs_sigalg(x), ca->sigalg) ||
	    !X509_ALGOR_copy((X509_ALGOR *)calg, ca->sigalg))
		return ch_err_set_ssl(reterr, -ENOMEM, "cannot set the signature algorithm");
	len = i2d_re_X509_tbs(x, &tbs);
	if (len <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot encode the certificate");
	r = ca->signer.sign(ca->signer.arg, tbs, (size_t)len, buf, &sig_len, reterr);
	OPENSSL_free(tbs);
	if (r < 0)
		return r;
	if (sig_len == 0 || sig_len > sizeof(buf))
		return ch_err_set(reterr, -EIO, "the signer returned %zu bytes", sig_len);
	sig = (ASN1_BIT_STRING *)csig;
	if (!ASN1_BIT_STRING_set(sig, buf, (int)sig_len))
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	/* Whole octets: no unused bits, whatever the last octet ends with. */
	sig->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	return 0;
}

/* A self-signed CA certificate for pub, signed by ca's signer. */
static int
localca_make_root(struct ch_localca *ca, EVP_PKEY *pub, const char *cn, int64_t lifetime,
		  X509 **ret, struct ch_err *reterr)
{
	ASN1_OCTET_STRING *ski = NULL;
	X509_NAME *name;
	X509 *x;
	time_t now = time(NULL);
	int r = -ENOMEM;

	x = X509_new();
	if (!x)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
					(const unsigned char *)"certherd", -1, -1, 0) ||
	    !X509_set_issuer_name(x, name)) {
		r = ch_err_set_ssl(reterr, -EINVAL, "cannot set the CA name");
		goto fail;
	}
	if (localca_set_serial(x) < 0 ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), now - LOCALCA_BACKDATE) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(now + lifetime)) ||
	    !X509_set_pubkey(x, pub)) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot build the CA certificate");
		goto fail;
	}
	if (localca_add_ext(x, localca_ext_bc(true), true) < 0 ||
	    localca_add_ext(x, localca_ext_ku(true, false), true) < 0 ||
	    localca_add_ski(x, ca->sha1, &ski) < 0 ||
	    localca_add_ext(x, localca_ext_aki(ski), true) < 0) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot add CA certificate extensions");
		goto fail;
	}
	r = ca->sign(ca, x, reterr);
	if (r < 0)
		goto fail;
	ASN1_OCTET_STRING_free(ski);
	*ret = x;
	return 0;
fail:
	ASN1_OCTET_STRING_free(ski);
	X509_free(x);
	return r;
}

static int
localca_create(struct ch_localca *ca, const char *cert_path, const char *key_path, const char *cn,
	       enum ch_key_type key_type, int64_t lifetime, struct ch_err *reterr)
{
	char *key_pem = NULL, *cert_pem = NULL;
	size_t key_len = 0;
	int r;

	r = ch_key_generate(key_type, &ca->key, reterr);
	if (r < 0)
		return r;
	r = localca_md_for_key(ca->key, &ca->md);
	if (r < 0)
		return ch_err_set_ssl(reterr, r, "cannot fetch the signature digest");
	if (lifetime <= 0)
		lifetime = LOCALCA_DEFAULT_LIFETIME;
	r = localca_make_root(ca, ca->key, cn ? cn : LOCALCA_DEFAULT_CN, lifetime, &ca->cert,
			      reterr);
	if (r < 0)
		return r;

	r = localca_mkdir_parent(key_path, reterr);
	if (r < 0)
		return r;
	r = localca_mkdir_parent(cert_path, reterr);
	if (r < 0)
		return r;
	r = ch_key_to_pem(ca->key, &key_pem, &key_len, reterr);
	if (r < 0)
		return r;
	r = ch_write_file_atomic(key_path, key_pem, key_len, 0600, (uid_t)-1, (gid_t)-1, reterr);
	ch_secret_free(key_pem, key_len);
	if (r < 0)
		return r;
	r = ch_cert_to_pem(ca->cert, &cert_pem);
	if (r < 0) {
		unlink(key_path);
		return ch_err_set(reterr, r, "cannot encode the CA certificate");
	}
	r = ch_write_file_atomic(cert_path, cert_pem, strlen(cert_pem), 0644, (uid_t)-1,
				 (gid_t)-1, reterr);
	free(cert_pem);
	if (r < 0) {
		/* Do not leave a key without its certificate behind. */
		unlink(key_path);
		return r;
	}
	return 0;
}

static int
localca_load(struct ch_localca *ca, const char *cert_path, const char *key_path,
	     struct ch_err *reterr)
{
	_cleanup_free_ char *pem = NULL;
	struct ch_err perr = { "" };
	size_t len = 0;
	int r;

	r = ch_read_file(cert_path, LOCALCA_FILE_MAX, &pem, &len);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read CA certificate %s: %s", cert_path,
				  strerror(-r));
	r = ch_cert_from_pem(pem, len, &ca->cert, &perr);
	if (r < 0)
		return ch_err_set(reterr, r, "CA certificate %s: %s", cert_path, perr.msg);
	r = ch_key_load_file(key_path, &ca->key, reterr);
	if (r < 0)
		return r;
	if (X509_check_ca(ca->cert) != 1)
		return ch_err_set(reterr, -EINVAL,
				  "%s is not a CA certificate (no basicConstraints CA:TRUE)",
				  cert_path);
	if (!ch_cert_key_match(ca->cert, ca->key))
		return ch_err_set(reterr, -EINVAL, "CA key %s does not belong to certificate %s",
				  key_path, cert_path);
	r = localca_md_for_key(ca->key, &ca->md);
	if (r < 0)
		return ch_err_set_ssl(reterr, r, "cannot fetch the signature digest");
	return 0;
}

/* Everything reused for each leaf, once cert, key and md are in place. */
static int
localca_prepare(struct ch_localca *ca, struct ch_err *reterr)
{
	const ASN1_OCTET_STRING *ski;
	ASN1_OCTET_STRING *own = NULL;
	struct tm tm;

	if (!ASN1_TIME_to_tm(X509_get0_notAfter(ca->cert), &tm))
		return ch_err_set_ssl(reterr, -EBADMSG,
				      "cannot read the CA certificate's notAfter");
	ca->not_after = (int64_t)timegm(&tm);

	ski = X509_get0_subject_key_id(ca->cert);
	if (!ski) {
		own = localca_key_id(ca->cert, ca->sha1);
		if (!own)
			return ch_err_set_ssl(reterr, -EIO, "cannot compute the CA key identifier");
		ski = own;
	}
	ca->aki = localca_ext_aki(ski);
	ASN1_OCTET_STRING_free(own);
	ca->bc = localca_ext_bc(false);
	ca->eku = localca_ext_eku();
	ca->ku = localca_ext_ku(false, false);
	ca->ku_rsa = localca_ext_ku(false, true);
	if (!ca->aki || !ca->bc || !ca->eku || !ca->ku || !ca->ku_rsa)
		return ch_err_set_ssl(reterr, -ENOMEM, "cannot encode leaf extensions");
	/* Optional: without a group, leaves of that curve take the slow path. */
	for (size_t i = 0; i < ARRAY_SIZE(ca->ec_groups); i++)
		ca->ec_groups[i] = EC_GROUP_new_by_curve_name(localca_ec_nids[i]);
	ERR_clear_error();
	return 0;
}

int
ch_localca_open(const char *cert_path, const char *key_path, bool create, const char *cn,
		enum ch_key_type key_type, int64_t lifetime, struct ch_localca **ret,
		struct ch_err *reterr)
{
	struct ch_localca *ca;
	bool have_cert = false, have_key = false;
	int r;

	r = localca_file_exists(cert_path, &have_cert);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot access CA certificate %s: %s", cert_path,
				  strerror(-r));
	r = localca_file_exists(key_path, &have_key);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot access CA key %s: %s", key_path,
				  strerror(-r));
	if (have_cert && !have_key)
		return ch_err_set(reterr, -ENOENT, "CA key %s not found (certificate %s exists)",
				  key_path, cert_path);
	if (!have_cert && have_key)
		return ch_err_set(reterr, -ENOENT, "CA certificate %s not found (key %s exists)",
				  cert_path, key_path);
	if (!have_cert && !create)
		return ch_err_set(reterr, -ENOENT, "CA certificate %s not found", cert_path);

	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	ca->sign = localca_sign_key;
	ca->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	if (!ca->sha1) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot fetch SHA-1");
		goto fail;
	}
	if (have_cert)
		r = localca_load(ca, cert_path, key_path, reterr);
	else
		r = localca_create(ca, cert_path, key_path, cn, key_type, lifetime, reterr);
	if (r < 0)
		goto fail;
	r = localca_prepare(ca, reterr);
	if (r < 0)
		goto fail;
	*ret = ca;
	return 0;
fail:
	ch_localca_free(ca);
	return r;
}

/* An empty CA around an external signer, with SHA-1 and the parsed sigalg. */
static int
localca_new_ext(const struct ch_signer *signer, struct ch_localca **ret, struct ch_err *reterr)
{
	const unsigned char *p;
	struct ch_localca *ca;

	if (!signer || !signer->sign || !signer->sigalg_der || signer->sigalg_len == 0)
		return ch_err_set(reterr, -EINVAL, "no signer");
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	ca->sign = localca_sign_ext;
	ca->signer = *signer;
	p = signer->sigalg_der;
	ca->sigalg = d2i_X509_ALGOR(NULL, &p, (long)signer->sigalg_len);
	ca->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	if (!ca->sigalg || !ca->sha1) {
		ch_localca_free(ca);
		return ch_err_set_ssl(reterr, -EINVAL, "cannot prepare the signature algorithm");
	}
	*ret = ca;
	return 0;
}

int
ch_localca_make_root_signer(EVP_PKEY *pub, const struct ch_signer *signer, const char *cn,
			    int64_t lifetime, X509 **ret, struct ch_err *reterr)
{
	struct ch_localca *ca = NULL;
	int r;

	r = localca_new_ext(signer, &ca, reterr);
	if (r < 0)
		return r;
	r = localca_make_root(ca, pub, cn ? cn : LOCALCA_DEFAULT_CN,
			      lifetime > 0 ? lifetime : LOCALCA_DEFAULT_LIFETIME, ret, reterr);
	ch_localca_free(ca);
	return r;
}

int
ch_localca_new_signer(X509 *cert, const struct ch_signer *signer, struct ch_localca **ret,
		      struct ch_err *reterr)
{
	struct ch_localca *ca = NULL;
	int r;

	if (X509_check_ca(cert) != 1)
		return ch_err_set(reterr, -EINVAL,
				  "not a CA certificate (no basicConstraints CA:TRUE)");
	r = localca_new_ext(signer, &ca, reterr);
	if (r < 0)
		return r;
	if (!X509_up_ref(cert)) {
		ch_localca_free(ca);
		return ch_err_set_ssl(reterr, -EIO, "cannot reference the CA certificate");
	}
	ca->cert = cert;
	r = localca_prepare(ca, reterr);
	if (r < 0) {
		ch_localca_free(ca);
		return r;
	}
	*ret = ca;
	return 0;
}

struct ch_localca *
ch_localca_free(struct ch_localca *ca)
{
	if (!ca)
		return NULL;
	X509_EXTENSION_free(ca->aki);
	X509_EXTENSION_free(ca->bc);
	X509_EXTENSION_free(ca->eku);
	X509_EXTENSION_free(ca->ku);
	X509_EXTENSION_free(ca->ku_rsa);
	X509_EXTENSION_free(ca->cdp);
	for (size_t i = 0; i < ARRAY_SIZE(ca->ec_groups); i++)
		EC_GROUP_free(ca->ec_groups[i]);
	EVP_MD_free(ca->md);
	X509_ALGOR_free(ca->sigalg);
	EVP_MD_free(ca->sha1);
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca);
	return NULL;
}

X509 *
ch_localca_cert(struct ch_localca *ca)
{
	return ca->cert;
}

#ifndef OPENSSL_NO_DEPRECATED_3_0
/*
 * A public-only legacy EC key equal to key, built from its encoded point.
 * Returns NULL when key's curve is not one we keep a group for.
 */
static EVP_PKEY *
localca_ec_public_twin(struct ch_localca *ca, EVP_PKEY *key)
{
	unsigned char point[1 + 2 * 66];
	const EC_GROUP *group = NULL;
	EVP_PKEY *twin = NULL;
	EC_KEY *ec = NULL;
	char curve[64];
	size_t len = 0;
	int nid;

	if (!EVP_PKEY_get_group_name(key, curve, sizeof(curve), NULL))
		return NULL;
	nid = EC_curve_nist2nid(curve);
	if (nid == NID_undef)
		nid = OBJ_sn2nid(curve);
	for (size_t i = 0; i < ARRAY_SIZE(localca_ec_nids); i++)
		if (localca_ec_nids[i] == nid)
			group = ca->ec_groups[i];
	if (!group ||
	    !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
					     sizeof(point), &len))
		return NULL;
	ec = EC_KEY_new();
	if (!ec || !EC_KEY_set_group(ec, group) || !EC_KEY_oct2key(ec, point, len, NULL))
		goto fail;
	twin = EVP_PKEY_new();
	if (!twin || !EVP_PKEY_assign_EC_KEY(twin, ec))
		goto fail;
	return twin;
fail:
	EVP_PKEY_free(twin);
	EC_KEY_free(ec);
	return NULL;
}
#endif

/*
 * X509_set_pubkey() on a provider key runs an OSSL_ENCODER and then an
 * OSSL_DECODER, whose contexts OpenSSL 3.0 builds from scratch on every
 * call (about 165 us, most of the cost of a leaf). An EVP_PKEY with a
 * legacy EC_KEY takes the direct encoding path instead (about 10 us) and
 * yields the same SubjectPublicKeyInfo. Other key types, and OpenSSL
 * builds without the 3.0 deprecated API, use X509_set_pubkey() on key.
 */
static int
localca_set_pubkey(struct ch_localca *ca, X509 *x, EVP_PKEY *key)
{
#ifndef OPENSSL_NO_DEPRECATED_3_0
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
		EVP_PKEY *twin = localca_ec_public_twin(ca, key);

		if (twin) {
			int ok = X509_set_pubkey(x, twin);

			EVP_PKEY_free(twin);
			if (ok)
				return 0;
		}
		ERR_clear_error();
	}
#endif
	return X509_set_pubkey(x, key) ? 0 : -EIO;
}

/* SANs from the requested names; the names are checked on the way. */
static int
localca_sans(char *const *dns, char *const *ip, GENERAL_NAMES **ret, struct ch_err *reterr)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int r = -ENOMEM;

	if (!gens)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	for (char *const *d = dns; d && *d; d++) {
		size_t len = strlen(*d);
		ASN1_IA5STRING *s;
		GENERAL_NAME *g;

		if (len == 0 || len > 253 || strspn(*d, "abcdefghijklmnopqrstuvwxyz"
						       "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						       "0123456789-._*") != len) {
			r = ch_err_set(reterr, -EINVAL, "invalid DNS name \"%s\"", *d);
			goto fail;
		}
		s = ASN1_IA5STRING_new();
		if (!s || !ASN1_STRING_set(s, *d, (int)len)) {
			ASN1_IA5STRING_free(s);
			goto oom;
		}
		g = GENERAL_NAME_new();
		if (!g) {
			ASN1_IA5STRING_free(s);
			goto oom;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto oom;
		}
	}
	for (char *const *a = ip; a && *a; a++) {
		unsigned char buf[16];
		ASN1_OCTET_STRING *s;
		GENERAL_NAME *g;
		int len;

		if (inet_pton(AF_INET, *a, buf) == 1)
			len = 4;
		else if (inet_pton(AF_INET6, *a, buf) == 1)
			len = 16;
		else {
			r = ch_err_set(reterr, -EINVAL, "invalid IP address \"%s\"", *a);
			goto fail;
		}
		s = ASN1_OCTET_STRING_new();
		if (!s || !ASN1_OCTET_STRING_set(s, buf, len)) {
			ASN1_OCTET_STRING_free(s);
			goto oom;
		}
		g = GENERAL_NAME_new();
		if (!g) {
			ASN1_OCTET_STRING_free(s);
			goto oom;
		}
		GENERAL_NAME_set0_value(g, GEN_IPADD, s);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto oom;
		}
	}
	*ret = gens;
	return 0;
oom:
	r = ch_err_set(reterr, -ENOMEM, "out of memory");
fail:
	GENERAL_NAMES_free(gens);
	return r;
}

/* The subject CN: the first DNS name, else the first IP, that fits in a CN. */
static const char *
localca_pick_cn(char *const *dns, char *const *ip)
{
	for (char *const *d = dns; d && *d; d++)
		if (strlen(*d) <= LOCALCA_CN_MAX)
			return *d;
	return ip && ip[0] ? ip[0] : NULL;
}

/*
 * Returns -EINVAL for unusable names or lifetimes and -EKEYEXPIRED when the
 * CA certificate has expired, with a message in reterr.
 */
int
ch_localca_issue(struct ch_localca *ca, EVP_PKEY *key, char *const *dns, char *const *ip,
		 int64_t lifetime, int64_t backdate, X509 **ret, struct ch_err *reterr)
{
	GENERAL_NAMES *gens = NULL;
	const char *cn;
	X509 *x = NULL;
	int64_t now, not_after;
	int r;

	if (!key)
		return ch_err_set(reterr, -EINVAL, "no key to certify");
	if (ch_strv_length(dns) + ch_strv_length(ip) == 0)
		return ch_err_set(reterr, -EINVAL, "no DNS names or IP addresses to certify");
	if (lifetime <= 0)
		return ch_err_set(reterr, -EINVAL, "invalid certificate lifetime %lld s",
				  (long long)lifetime);
	now = (int64_t)time(NULL);
	if (now >= ca->not_after)
		return ch_err_set(reterr, -EKEYEXPIRED, "the CA certificate has expired");
	not_after = lifetime < ca->not_after - now ? now + lifetime : ca->not_after;
	if (backdate < 0)
		backdate = 0;

	r = localca_sans(dns, ip, &gens, reterr);
	if (r < 0)
		return r;

	x = X509_new();
	if (!x)
		goto oom;
	/* x is fresh: no cached encoding, so its subject can be filled in place. */
	cn = localca_pick_cn(dns, ip);
	if (!X509_set_version(x, X509_VERSION_3) || localca_set_serial(x) < 0 ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    (cn && !X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName,
					       MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
					       0)) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now - backdate)) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after))
		goto ssl;
	if (localca_set_pubkey(ca, x, key) < 0)
		goto ssl;
	/* With an empty subject the SANs carry the identity and are critical. */
	if (localca_add_ext(x, ca->bc, false) < 0 ||
	    localca_add_ext(x, EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA ? ca->ku_rsa : ca->ku,
			    false) < 0 ||
	    localca_add_ext(x, ca->eku, false) < 0 ||
	    X509_add1_ext_i2d(x, NID_subject_alt_name, gens, cn ? 0 : 1, X509V3_ADD_APPEND) != 1 ||
	    localca_add_ski(x, ca->sha1, NULL) < 0 || localca_add_ext(x, ca->aki, false) < 0 ||
	    (ca->cdp && localca_add_ext(x, ca->cdp, false) < 0))
		goto ssl;
	r = ca->sign(ca, x, reterr);
	if (r < 0)
		goto fail;
	GENERAL_NAMES_free(gens);
	*ret = x;
	return 0;
ssl:
	r = ch_err_set_ssl(reterr, -EIO, "cannot build the certificate");
	goto fail;
oom:
	r = ch_err_set(reterr, -ENOMEM, "out of memory");
fail:
	GENERAL_NAMES_free(gens);
	X509_free(x);
	return r;
}

int
ch_localca_self_test(struct ch_localca *ca, struct ch_err *reterr)
{
	static char *const dns[] = { "self-test.invalid", NULL };
	EVP_PKEY *pub = X509_get0_pubkey(ca->cert);
	X509 *x = NULL;
	int r, ok;

	if (!pub)
		return ch_err_set_ssl(reterr, -EBADMSG, "cannot read the CA certificate's key");
	r = ch_localca_issue(ca, pub, dns, NULL, 60, 0, &x, reterr);
	if (r < 0)
		return r;
	ok = X509_verify(x, pub);
	X509_free(x);
	if (ok != 1)
		return ch_err_set_ssl(reterr, -EKEYREJECTED,
				      "a test signature does not verify with the CA certificate's "
				      "public key: the signing key does not belong to it");
	return 0;
}

int
ch_localca_set_crl_url(struct ch_localca *ca, const char *url, struct ch_err *reterr)
{
	CRL_DIST_POINTS *cdps = NULL;
	DIST_POINT *dp = NULL;
	GENERAL_NAME *gen = NULL;
	ASN1_IA5STRING *uri = NULL;
	X509_EXTENSION *ext = NULL;

	if (url && url[0]) {
		cdps = sk_DIST_POINT_new_null();
		dp = DIST_POINT_new();
		gen = GENERAL_NAME_new();
		uri = ASN1_IA5STRING_new();
		if (!cdps || !dp || !gen || !uri || !ASN1_STRING_set(uri, url, -1))
			goto fail;
		GENERAL_NAME_set0_value(gen, GEN_URI, uri);
		uri = NULL;
		dp->distpoint = DIST_POINT_NAME_new();
		if (!dp->distpoint)
			goto fail;
		dp->distpoint->type = 0;
		dp->distpoint->name.fullname = sk_GENERAL_NAME_new_null();
		if (!dp->distpoint->name.fullname ||
		    !sk_GENERAL_NAME_push(dp->distpoint->name.fullname, gen))
			goto fail;
		gen = NULL;
		if (!sk_DIST_POINT_push(cdps, dp))
			goto fail;
		dp = NULL;
		ext = X509V3_EXT_i2d(NID_crl_distribution_points, 0, cdps);
		if (!ext)
			goto fail;
		CRL_DIST_POINTS_free(cdps);
	}
	X509_EXTENSION_free(ca->cdp);
	ca->cdp = ext;
	return 0;
fail:
	ASN1_IA5STRING_free(uri);
	GENERAL_NAME_free(gen);
	DIST_POINT_free(dp);
	CRL_DIST_POINTS_free(cdps);
	return ch_err_set_ssl(reterr, -ENOMEM, "cannot encode the CRL distribution point");
}

int
ch_localca_crl(struct ch_localca *ca, const struct ch_crl_request *req, X509_CRL **ret,
	       struct ch_err *reterr)
{
	X509_CRL *crl = NULL;
	EVP_PKEY *pub;
	int r;

	r = ch_crl_build(ca->cert, req, &crl, reterr);
	if (r < 0)
		return r;
	if (ca->key)
		r = ch_crl_sign_key(crl, ca->key, ca->md, reterr);
	else
		r = ch_crl_sign_signer(&crl, &ca->signer, reterr);
	if (r < 0) {
		X509_CRL_free(crl);
		return r;
	}
	pub = X509_get0_pubkey(ca->cert);
	if (!pub || X509_CRL_verify(crl, pub) != 1) {
		X509_CRL_free(crl);
		ERR_clear_error();
		return ch_err_set(reterr, -EKEYREJECTED,
				  "the CRL's signature does not verify with the CA certificate");
	}
	*ret = crl;
	return 0;
}
