/* SPDX-License-Identifier: MIT */
/*
 * The plain in-process OpenSSL loop a program would run to mint
 * certificates, built against OpenSSL only: for SECONDS, generate a P-256
 * key, build a v3 leaf (SAN, EKU, KU, SKI, AKI, basicConstraints, random
 * 128-bit serial, 90 days), sign it with the CA key (SHA-256) and
 * PEM-encode it. Nothing is written to disk.
 *
 *   bench-sign CA_CERT CA_KEY [SECONDS]
 *
 * Prints: certs=N seconds=S certs_per_s=R
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench-sign: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static int
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok;

	if (!ext)
		return 0;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok;
}

/* One leaf for a fresh key; returns the PEM length, 0 on failure. */
static size_t
issue_one(X509 *ca, EVP_PKEY *ca_key, unsigned long i)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char rnd[16];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	X509V3_CTX ctx;
	char cn[64], san[96];
	BIO *bio = NULL;
	BUF_MEM *mem;
	size_t len = 0;

	if (!key || !x || !name)
		goto out;
	snprintf(cn, sizeof(cn), "c%07lu.bench.test", i);
	snprintf(san, sizeof(san), "DNS:%s", cn);
	if (!X509_set_version(x, X509_VERSION_3))
		goto out;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		goto out;
	rnd[0] &= 0x7f;
	bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
	serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	if (!serial || !X509_set_serialNumber(x, serial))
		goto out;
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (unsigned char *)cn, -1, -1,
					0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca)))
		goto out;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -300) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 90L * 86400))
		goto out;
	if (!X509_set_pubkey(x, key))
		goto out;
	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
	    !add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") ||
	    !add_ext(x, &ctx, NID_subject_alt_name, san))
		goto out;
	if (!X509_sign(x, ca_key, EVP_sha256()))
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_X509(bio, x))
		goto out;
	BIO_get_mem_ptr(bio, &mem);
	len = mem->length;
out:
	BIO_free(bio);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return len;
}

int
main(int argc, char **argv)
{
	double seconds = argc > 3 ? atof(argv[3]) : 5, t0, t;
	unsigned long n = 0;
	EVP_PKEY *ca_key;
	X509 *ca;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CA_CERT CA_KEY [SECONDS]\n", argv[0]);
		return 2;
	}
	f = fopen(argv[1], "r");
	if (!f || !(ca = PEM_read_X509(f, NULL, NULL, NULL)))
		die("cannot read the CA certificate");
	fclose(f);
	f = fopen(argv[2], "r");
	if (!f || !(ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)))
		die("cannot read the CA key");
	fclose(f);

	t0 = now_s();
	do {
		if (!issue_one(ca, ca_key, n + 1))
			die("issuing failed");
		n++;
		t = now_s();
	} while (t - t0 < seconds);
	printf("certs=%lu seconds=%.3f certs_per_s=%.1f\n", n, t - t0, (double)n / (t - t0));
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return 0;
}
