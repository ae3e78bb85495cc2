/* SPDX-License-Identifier: MIT */
/*
 * Keys and certificates with OpenSSL 3: key generation for each key type,
 * PEM encoding and decoding, the facts we record about a certificate
 * (serial, fingerprint, validity, names) and the checks run before an
 * existing certificate is adopted: names, key match and chain verification.
 * Private key bytes never reach the log; buffers holding them are cleansed.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/crypto.h"
#include "certherd/macro.h"

/* Key and certificate files larger than this are not PEM we wrote. */
#define CRYPTO_FILE_MAX (1024 * 1024)

int
ch_key_generate(enum ch_key_type type, EVP_PKEY **ret, struct ch_err *reterr)
{
	EVP_PKEY *key = NULL;

	switch (type) {
	case CH_KEY_ECDSA_P256:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case CH_KEY_ECDSA_P384:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case CH_KEY_RSA_2048:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case CH_KEY_RSA_3072:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	case CH_KEY_ED25519:
		key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	default:
		return ch_err_set(reterr, -EINVAL, "unknown key type %d", (int)type);
	}
	if (!key)
		return ch_err_set_ssl(reterr, -EIO, "key generation failed");
	*ret = key;
	return 0;
}

void
ch_secret_free(char *p, size_t len)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

/* Copies the contents of a memory BIO into a NUL-terminated malloc'ed string. */
static int
crypto_bio_to_string(BIO *bio, char **ret, size_t *ret_len)
{
	char *data, *s;
	long n;

	n = BIO_get_mem_data(bio, &data);
	if (n < 0)
		return -EIO;
	s = malloc((size_t)n + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	*ret = s;
	if (ret_len)
		*ret_len = (size_t)n;
	return 0;
}

/*
 * PKCS#8 for ECDSA keys on P-256 and P-384, the byte-for-byte layout
 * OpenSSL writes (named curve in the AlgorithmIdentifier, an
 * ECPrivateKey with the scalar padded to the order's size and the
 * uncompressed public point): header, scalar, the [1] public key tag,
 * point. OpenSSL 3.0's encoder spends about 70 us a key finding itself;
 * this takes 4 us, and a new key is written for every renewal.
 */
struct ec_pkcs8_layout {
	int nid;
	size_t head_len, scalar_len, point_len;
	unsigned char head[36]; /* up to the scalar's OCTET STRING length */
	unsigned char mid[5];   /* [1] { BIT STRING, no unused bits: the point } */
};

static const struct ec_pkcs8_layout ec_pkcs8_layouts[] = {
	{ NID_X9_62_prime256v1, 36, 32, 65,
	  { 0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86,
	    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
	    0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20 },
	  { 0xa1, 0x44, 0x03, 0x42, 0x00 } },
	{ NID_secp384r1, 35, 48, 97,
	  { 0x30, 0x81, 0xb6, 0x02, 0x01, 0x00, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
	    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22,
	    0x04, 0x81, 0x9e, 0x30, 0x81, 0x9b, 0x02, 0x01, 0x01, 0x04, 0x30 },
	  { 0xa1, 0x64, 0x03, 0x62, 0x00 } },
};

#define EC_PKCS8_MAX 200

/*
 * The DER into der (EC_PKCS8_MAX bytes); returns its length, or 0 when
 * the key is not one of the layouts above (the caller uses OpenSSL's encoder).
 */
static size_t
crypto_ec_pkcs8_der(EVP_PKEY *key, unsigned char *der)
{
	const struct ec_pkcs8_layout *l = NULL;
	char group[64], encoding[32];
	unsigned char point[128];
	BIGNUM *priv = NULL;
	size_t len = 0, n;
	int nid;

	if (!EVP_PKEY_is_a(key, "EC") ||
	    !EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding,
					    sizeof(encoding), NULL) ||
	    !streq(encoding, OSSL_PKEY_EC_ENCODING_GROUP) ||
	    !EVP_PKEY_get_group_name(key, group, sizeof(group), NULL))
		return 0;
	nid = OBJ_txt2nid(group);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(group);
	for (size_t i = 0; i < ARRAY_SIZE(ec_pkcs8_layouts); i++)
		if (ec_pkcs8_layouts[i].nid == nid)
			l = &ec_pkcs8_layouts[i];
	if (!l ||
	    !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
					     &n) ||
	    n != l->point_len || point[0] != 0x04 ||
	    !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &priv))
		return 0;
	memcpy(der, l->head, l->head_len);
	len = l->head_len;
	if (BN_bn2binpad(priv, der + len, (int)l->scalar_len) < 0) {
		BN_clear_free(priv);
		return 0;
	}
	BN_clear_free(priv);
	len += l->scalar_len;
	memcpy(der + len, l->mid, sizeof(l->mid));
	len += sizeof(l->mid);
	memcpy(der + len, point, n);
	return len + n;
}

/* PEM of a DER PKCS#8 key, lines of 64 characters as OpenSSL writes them. */
static int
crypto_pkcs8_pem(const unsigned char *der, size_t len, char **ret, size_t *ret_len)
{
	static const char begin[] = "-----BEGIN PRIVATE KEY-----\n";
	static const char end[] = "-----END PRIVATE KEY-----\n";
	size_t cap = sizeof(begin) + sizeof(end) + (len + 47) / 48 * 65 + 1;
	char *s = malloc(cap), *p;

	if (!s)
		return -ENOMEM;
	p = stpcpy(s, begin);
	for (size_t off = 0; off < len; off += 48) {
		size_t chunk = len - off < 48 ? len - off : 48;

		p += EVP_EncodeBlock((unsigned char *)p, der + off, (int)chunk);
		*p++ = '\n';
	}
	p = stpcpy(p, end);
	*ret = s;
	if (ret_len)
		*ret_len = (size_t)(p - s);
	return 0;
}

int
ch_key_to_pem(EVP_PKEY *key, char **ret, size_t *ret_len, struct ch_err *reterr)
{
	unsigned char der[EC_PKCS8_MAX];
	size_t der_len;
	BIO *bio;
	int r;

	der_len = crypto_ec_pkcs8_der(key, der);
	if (der_len > 0) {
		r = crypto_pkcs8_pem(der, der_len, ret, ret_len);
		OPENSSL_cleanse(der, sizeof(der));
		if (r < 0)
			return ch_err_set(reterr, r, "out of memory");
		return 0;
	}
	ERR_clear_error(); /* what the fast path's queries left */

	/* A secure-memory BIO: its buffer is cleared when it grows and when freed. */
	bio = BIO_new(BIO_s_secmem());
	if (!bio)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		BIO_free(bio);
		return ch_err_set_ssl(reterr, -EIO, "cannot encode private key");
	}
	r = crypto_bio_to_string(bio, ret, ret_len);
	BIO_free(bio);
	if (r < 0)
		return ch_err_set(reterr, r, "out of memory");
	return 0;
}

int
ch_key_from_pem(const char *pem, size_t len, EVP_PKEY **ret, struct ch_err *reterr)
{
	EVP_PKEY *key;
	BIO *bio;

	if (len > INT_MAX)
		return ch_err_set(reterr, -EFBIG, "private key PEM too large");
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!key)
		return ch_err_set_ssl(reterr, -EBADMSG, "cannot parse private key");
	*ret = key;
	return 0;
}

int
ch_key_load_file(const char *path, EVP_PKEY **ret, struct ch_err *reterr)
{
	_cleanup_close_ int fd = -1;
	struct ch_err perr = { "" };
	struct stat st;
	size_t len = 0;
	char *buf;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		return ch_err_set(reterr, r, "cannot open key file %s: %s", path, strerror(-r));
	}
	/* The mode is checked on the descriptor we read, not on the path. */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		return ch_err_set(reterr, r, "cannot stat key file %s: %s", path, strerror(-r));
	}
	if (!S_ISREG(st.st_mode))
		return ch_err_set(reterr, -EINVAL, "key file %s is not a regular file", path);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return ch_err_set(reterr, -EPERM,
				  "key file %s is readable by others (mode %04o); chmod 0600", path,
				  (unsigned)(st.st_mode & 07777));
	if (st.st_size > CRYPTO_FILE_MAX)
		return ch_err_set(reterr, -EFBIG, "key file %s is too large", path);

	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			ch_secret_free(buf, len);
			return ch_err_set(reterr, r, "cannot read key file %s: %s", path,
					  strerror(-r));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	r = ch_key_from_pem(buf, len, ret, &perr);
	ch_secret_free(buf, (size_t)st.st_size + 1);
	if (r < 0)
		return ch_err_set(reterr, r, "key file %s: %s", path, perr.msg);
	return 0;
}

int
ch_cert_from_pem(const char *pem, size_t len, X509 **ret, struct ch_err *reterr)
{
	X509 *x;
	BIO *bio;

	if (len > INT_MAX)
		return ch_err_set(reterr, -EFBIG, "certificate PEM too large");
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!x)
		return ch_err_set_ssl(reterr, -EBADMSG, "cannot parse certificate");
	*ret = x;
	return 0;
}

/*
 * Returns an empty stack when the buffer holds no certificate at all (for
 * example the "" chain of a root CA); text that starts a PEM block but does
 * not parse is an error.
 */
int
ch_certs_from_pem(const char *pem, size_t len, STACK_OF(X509) **ret, struct ch_err *reterr)
{
	STACK_OF(X509) *sk;
	BIO *bio;

	if (len > INT_MAX)
		return ch_err_set(reterr, -EFBIG, "certificate PEM too large");
	sk = sk_X509_new_null();
	if (!sk)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio) {
		sk_X509_free(sk);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	for (;;) {
		X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		unsigned long e;

		if (!x) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
			    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
				ERR_clear_error();
				break;
			}
			BIO_free(bio);
			sk_X509_pop_free(sk, X509_free);
			return ch_err_set_ssl(reterr, -EBADMSG, "cannot parse certificate");
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			BIO_free(bio);
			sk_X509_pop_free(sk, X509_free);
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		}
	}
	BIO_free(bio);
	*ret = sk;
	return 0;
}

/*
 * PEM of one certificate as a NUL-terminated malloc'ed string. Encoded
 * directly rather than through a BIO: this runs once per issued leaf.
 */
int
ch_cert_to_pem(X509 *x, char **ret)
{
	static const char head[] = "-----BEGIN CERTIFICATE-----\n";
	static const char tail[] = "-----END CERTIFICATE-----\n";
	unsigned char *der = NULL;
	size_t nlines, cap, off;
	char *pem;
	int len;

	len = i2d_X509(x, &der);
	if (len <= 0)
		return -EIO;
	/* 48 DER bytes make one 64-character line. */
	nlines = ((size_t)len + 47) / 48;
	cap = sizeof(head) - 1 + ((size_t)len + 2) / 3 * 4 + nlines + sizeof(tail);
	pem = malloc(cap);
	if (!pem) {
		OPENSSL_free(der);
		return -ENOMEM;
	}
	memcpy(pem, head, sizeof(head) - 1);
	off = sizeof(head) - 1;
	for (int i = 0; i < len; i += 48) {
		int n = len - i < 48 ? len - i : 48;

		off += (size_t)EVP_EncodeBlock((unsigned char *)pem + off, der + i, n);
		pem[off++] = '\n';
	}
	memcpy(pem + off, tail, sizeof(tail));
	OPENSSL_free(der);
	*ret = pem;
	return 0;
}

static void
crypto_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int
crypto_time_to_epoch(const ASN1_TIME *t, int64_t *ret)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -EBADMSG;
	*ret = (int64_t)timegm(&tm);
	return 0;
}

static char *
crypto_name_to_string(const X509_NAME *name)
{
	char *s = NULL;
	BIO *bio;

	bio = BIO_new(BIO_s_mem());
	if (!bio)
		return NULL;
	/* RFC 2253, keeping UTF-8 readable instead of escaping each byte. */
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0)
		(void)crypto_bio_to_string(bio, &s, NULL);
	BIO_free(bio);
	return s;
}

/* Textual form of an iPAddress SAN; false for lengths other than 4 and 16. */
static bool
crypto_ip_to_string(const ASN1_OCTET_STRING *ip, char *buf, size_t len)
{
	int n = ASN1_STRING_length(ip);
	const unsigned char *p = ASN1_STRING_get0_data(ip);

	if (n == 4)
		return inet_ntop(AF_INET, p, buf, (socklen_t)len) != NULL;
	if (n == 16)
		return inet_ntop(AF_INET6, p, buf, (socklen_t)len) != NULL;
	return false;
}

int
ch_cert_info_get(X509 *x, struct ch_cert_info *ret)
{
	struct ch_cert_info i = { 0 };
	GENERAL_NAMES *gens = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t ndns = 0, nip = 0;
	BIGNUM *bn;
	char *hex;
	int n, r = -ENOMEM;

	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	if (!bn)
		goto fail;
	hex = BN_bn2hex(bn);
	BN_free(bn);
	if (!hex)
		goto fail;
	for (char *c = hex; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	snprintf(i.serial, sizeof(i.serial), "%s", hex);
	OPENSSL_free(hex);

	if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32) {
		r = -EIO;
		goto fail;
	}
	crypto_hex(md, mdlen, i.fingerprint);

	r = crypto_time_to_epoch(X509_get0_notBefore(x), &i.not_before);
	if (r < 0)
		goto fail;
	r = crypto_time_to_epoch(X509_get0_notAfter(x), &i.not_after);
	if (r < 0)
		goto fail;

	r = -ENOMEM;
	i.subject = crypto_name_to_string(X509_get_subject_name(x));
	i.issuer = crypto_name_to_string(X509_get_issuer_name(x));
	if (!i.subject || !i.issuer)
		goto fail;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	n = gens ? sk_GENERAL_NAME_num(gens) : 0;
	i.dns_names = calloc((size_t)n + 1, sizeof(char *));
	i.ip_names = calloc((size_t)n + 1, sizeof(char *));
	if (!i.dns_names || !i.ip_names)
		goto fail;
	for (int k = 0; k < n; k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
		char buf[INET6_ADDRSTRLEN];
		char *s;

		if (g->type == GEN_DNS) {
			s = strndup((const char *)ASN1_STRING_get0_data(g->d.dNSName),
				    (size_t)ASN1_STRING_length(g->d.dNSName));
			if (!s)
				goto fail;
			i.dns_names[ndns++] = s;
		} else if (g->type == GEN_IPADD) {
			if (!crypto_ip_to_string(g->d.iPAddress, buf, sizeof(buf)))
				continue;
			s = strdup(buf);
			if (!s)
				goto fail;
			i.ip_names[nip++] = s;
		}
	}
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	*ret = i;
	return 0;
fail:
	GENERAL_NAMES_free(gens);
	ERR_clear_error();
	ch_cert_info_done(&i);
	return r;
}

void
ch_cert_info_done(struct ch_cert_info *i)
{
	if (!i)
		return;
	free(i->subject);
	free(i->issuer);
	ch_strv_free(i->dns_names);
	ch_strv_free(i->ip_names);
	*i = (struct ch_cert_info){ 0 };
}

/* Parses a textual IP into 4 or 16 bytes; returns the length or 0. */
static size_t
crypto_parse_ip(const char *s, unsigned char out[16])
{
	if (inet_pton(AF_INET, s, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, out) == 1)
		return 16;
	return 0;
}

static bool
crypto_san_has_dns(const GENERAL_NAMES *gens, const char *name)
{
	size_t len = strlen(name);

	for (int k = 0; k < sk_GENERAL_NAME_num(gens); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);

		if (g->type == GEN_DNS && (size_t)ASN1_STRING_length(g->d.dNSName) == len &&
		    strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), name, len) == 0)
			return true;
	}
	return false;
}

static bool
crypto_san_has_ip(const GENERAL_NAMES *gens, const unsigned char *ip, size_t len)
{
	for (int k = 0; k < sk_GENERAL_NAME_num(gens); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);

		if (g->type == GEN_IPADD && (size_t)ASN1_STRING_length(g->d.iPAddress) == len &&
		    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, len) == 0)
			return true;
	}
	return false;
}

static bool
crypto_strv_has_dns(char *const *v, const unsigned char *p, size_t len)
{
	for (; v && *v; v++)
		if (strlen(*v) == len && strncasecmp(*v, (const char *)p, len) == 0)
			return true;
	return false;
}

static bool
crypto_strv_has_ip(char *const *v, const unsigned char *p, size_t len)
{
	unsigned char buf[16];

	for (; v && *v; v++)
		if (crypto_parse_ip(*v, buf) == len && memcmp(buf, p, len) == 0)
			return true;
	return false;
}

bool
ch_cert_names_match(X509 *x, char *const *dns, char *const *ip)
{
	GENERAL_NAMES *gens;
	bool ok = false;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (!gens) {
		ERR_clear_error();
		return ch_strv_length(dns) == 0 && ch_strv_length(ip) == 0;
	}
	/* Every requested name is in the certificate... */
	for (char *const *d = dns; d && *d; d++)
		if (!crypto_san_has_dns(gens, *d))
			goto out;
	for (char *const *a = ip; a && *a; a++) {
		unsigned char buf[16];
		size_t len = crypto_parse_ip(*a, buf);

		if (!len || !crypto_san_has_ip(gens, buf, len))
			goto out;
	}
	/* ...and every name of the certificate was requested. */
	for (int k = 0; k < sk_GENERAL_NAME_num(gens); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);

		if (g->type == GEN_DNS) {
			if (!crypto_strv_has_dns(dns, ASN1_STRING_get0_data(g->d.dNSName),
						 (size_t)ASN1_STRING_length(g->d.dNSName)))
				goto out;
		} else if (g->type == GEN_IPADD) {
			if (!crypto_strv_has_ip(ip, ASN1_STRING_get0_data(g->d.iPAddress),
						(size_t)ASN1_STRING_length(g->d.iPAddress)))
				goto out;
		} else
			goto out;
	}
	ok = true;
out:
	GENERAL_NAMES_free(gens);
	return ok;
}

bool
ch_cert_key_match(X509 *x, EVP_PKEY *key)
{
	EVP_PKEY *pub = X509_get0_pubkey(x);
	bool ok;

	ok = pub && key && EVP_PKEY_eq(pub, key) == 1;
	ERR_clear_error();
	return ok;
}

/*
 * The anchor is trusted as given, so an intermediate works as an anchor too
 * (X509_V_FLAG_PARTIAL_CHAIN). Validity periods are checked against now.
 */
int
ch_cert_verify(X509 *leaf, STACK_OF(X509) *untrusted, X509 *anchor, struct ch_err *reterr)
{
	X509_STORE_CTX *ctx = NULL;
	X509_STORE *store;
	int r = 0, e, depth;

	store = X509_STORE_new();
	if (!store)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!X509_STORE_add_cert(store, anchor)) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot add trust anchor");
		goto out;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	ctx = X509_STORE_CTX_new();
	if (!ctx) {
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto out;
	}
	if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
		r = ch_err_set_ssl(reterr, -EIO, "cannot set up verification");
		goto out;
	}
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		e = X509_STORE_CTX_get_error(ctx);
		depth = X509_STORE_CTX_get_error_depth(ctx);
		r = ch_err_set(reterr, -EBADMSG, "certificate verification failed at depth %d: %s",
			       depth, X509_verify_cert_error_string(e));
	}
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return r;
}
