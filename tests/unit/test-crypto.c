/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for keys and certificates (src/lib/crypto.c), the software CA
 * (src/lib/localca.c) and the "local" CA backend (src/ca/ca-local.c).
 * Leaves are also checked with `openssl verify` as an outside opinion.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/ca.h"
#include "certherd/conf.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"

static const enum ch_key_type all_types[] = {
	CH_KEY_ECDSA_P256, CH_KEY_ECDSA_P384, CH_KEY_RSA_2048, CH_KEY_RSA_3072, CH_KEY_ED25519,
};

/* Keys are slow to make for RSA; each type is generated once per process. */
static EVP_PKEY *key_cache[_CH_KEY_TYPE_MAX];

static EVP_PKEY *
test_key(enum ch_key_type t)
{
	struct ch_err err = { "" };

	if (!key_cache[t])
		ck_assert_msg(ch_key_generate(t, &key_cache[t], &err) == 0, "%s", err.msg);
	return key_cache[t];
}

static void
test_keys_free(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(key_cache); i++) {
		EVP_PKEY_free(key_cache[i]);
		key_cache[i] = NULL;
	}
}

static char tmpdir[64];

static void
tmpdir_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-crypto.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
tmpdir_teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	test_keys_free();
}

static char *
tmp_path(const char *name)
{
	char *p;

	ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, name), 0);
	return p;
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static void
write_cert(const char *path, X509 *x)
{
	char *pem = NULL;

	ck_assert_int_eq(ch_cert_to_pem(x, &pem), 0);
	write_text(path, pem, 0644);
	free(pem);
}

static mode_t
file_mode(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void
fingerprint(X509 *x, char out[65])
{
	struct ch_cert_info i;

	ck_assert_int_eq(ch_cert_info_get(x, &i), 0);
	memcpy(out, i.fingerprint, 65);
	ch_cert_info_done(&i);
}

static struct ch_localca *
open_ca(const char *sub, enum ch_key_type t, int64_t lifetime)
{
	_cleanup_free_ char *dir = tmp_path(sub);
	_cleanup_free_ char *crt = NULL, *key = NULL;
	struct ch_err err = { "" };
	struct ch_localca *ca = NULL;

	ck_assert_int_ge(asprintf(&crt, "%s/ca.crt", dir), 0);
	ck_assert_int_ge(asprintf(&key, "%s/ca.key", dir), 0);
	ck_assert_msg(ch_localca_open(crt, key, true, NULL, t, lifetime, &ca, &err) == 0, "%s",
		      err.msg);
	return ca;
}

static X509 *
issue(struct ch_localca *ca, EVP_PKEY *key, char *const *dns, char *const *ip, int64_t lifetime,
      int64_t backdate)
{
	struct ch_err err = { "" };
	X509 *x = NULL;

	ck_assert_msg(ch_localca_issue(ca, key, dns, ip, lifetime, backdate, &x, &err) == 0, "%s",
		      err.msg);
	return x;
}

static int
openssl_verify(const char *ca_path, const char *leaf_path)
{
	_cleanup_free_ char *cmd = NULL;
	int st;

	ck_assert_int_ge(asprintf(&cmd, "openssl verify -CAfile '%s' '%s' >/dev/null 2>&1",
				  ca_path, leaf_path),
			 0);
	st = system(cmd);
	ck_assert_int_ne(st, -1);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_key_roundtrip)
{
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		struct ch_err err = { "" };
		EVP_PKEY *k = test_key(all_types[i]), *back = NULL;
		char *pem = NULL;
		size_t len = 0;

		ck_assert_int_eq(ch_key_to_pem(k, &pem, &len, &err), 0);
		ck_assert_uint_eq(strlen(pem), len);
		ck_assert_msg(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0, "%.40s", pem);
		ck_assert_int_eq(ch_key_from_pem(pem, len, &back, &err), 0);
		ck_assert_int_eq(EVP_PKEY_eq(k, back), 1);
		ck_assert_int_eq(EVP_PKEY_get_base_id(k), EVP_PKEY_get_base_id(back));
		EVP_PKEY_free(back);
		ch_secret_free(pem, len);
	}
	ck_assert_int_eq(EVP_PKEY_get_bits(test_key(CH_KEY_ECDSA_P384)), 384);
	ck_assert_int_eq(EVP_PKEY_get_bits(test_key(CH_KEY_RSA_3072)), 3072);
	ck_assert_int_eq(EVP_PKEY_get_base_id(test_key(CH_KEY_ED25519)), EVP_PKEY_ED25519);
}
END_TEST

/* OpenSSL's own PKCS#8 PEM of k, to compare ch_key_to_pem with. */
static char *
openssl_pkcs8_pem(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;

	ck_assert_ptr_nonnull(bio);
	ck_assert_int_eq(PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(bio, &data);
	s = strndup(data, (size_t)n);
	BIO_free(bio);
	return s;
}

/*
 * ECDSA keys are written without OpenSSL's encoder: the PEM must be
 * OpenSSL's byte for byte, also for a scalar with leading zero bytes
 * (padded to the order's size), which one key in 256 has.
 */
START_TEST(test_key_pem_ec_same_as_openssl)
{
	static const enum ch_key_type types[] = { CH_KEY_ECDSA_P256, CH_KEY_ECDSA_P384 };

	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		size_t n = 0, short_scalars = 0;

		for (; n < 20000 && (n < 64 || short_scalars < 2); n++) {
			struct ch_err err = { "" };
			EVP_PKEY *k = NULL;
			BIGNUM *priv = NULL;
			char *pem = NULL, *want;
			size_t len = 0;

			ck_assert_int_eq(ch_key_generate(types[t], &k, &err), 0);
			ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &priv), 1);
			if (BN_num_bytes(priv) < EVP_PKEY_get_bits(k) / 8)
				short_scalars++;
			BN_clear_free(priv);
			ck_assert_int_eq(ch_key_to_pem(k, &pem, &len, &err), 0);
			want = openssl_pkcs8_pem(k);
			ck_assert_str_eq(pem, want);
			ck_assert_uint_eq(len, strlen(want));
			free(want);
			ch_secret_free(pem, len);
			EVP_PKEY_free(k);
		}
		ck_assert_msg(short_scalars >= 2, "%zu keys, %zu short scalars", n, short_scalars);
	}
}
END_TEST

START_TEST(test_key_bad)
{
	struct ch_err err = { "" };
	EVP_PKEY *k = NULL;

	ck_assert_int_eq(ch_key_generate((enum ch_key_type)42, &k, &err), -EINVAL);
	ck_assert_int_eq(ch_key_from_pem("garbage", 7, &k, &err), -EBADMSG);
	ck_assert_ptr_null(k);
	ch_secret_free(NULL, 0);
}
END_TEST

START_TEST(test_key_load_file_mode)
{
	_cleanup_free_ char *path = tmp_path("k.pem");
	struct ch_err err = { "" };
	EVP_PKEY *k = NULL;
	char *pem = NULL, *want = NULL;
	size_t len;

	ck_assert_int_eq(ch_key_to_pem(test_key(CH_KEY_ECDSA_P256), &pem, &len, &err), 0);
	write_text(path, pem, 0644);
	ch_secret_free(pem, len);

	ck_assert_int_eq(ch_key_load_file(path, &k, &err), -EPERM);
	ck_assert_ptr_null(k);
	ck_assert_int_ge(asprintf(&want,
				  "key file %s is readable by others (mode 0644); chmod 0600", path),
			 0);
	ck_assert_str_eq(err.msg, want);
	free(want);

	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(ch_key_load_file(path, &k, &err), -EPERM);
	ck_assert_int_eq(chmod(path, 0604), 0);
	ck_assert_int_eq(ch_key_load_file(path, &k, &err), -EPERM);

	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_msg(ch_key_load_file(path, &k, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(EVP_PKEY_eq(k, test_key(CH_KEY_ECDSA_P256)), 1);
	EVP_PKEY_free(k);

	ck_assert_int_eq(ch_key_load_file("/nonexistent/k.pem", &k, &err), -ENOENT);
	write_text(path, "not a key\n", 0600);
	ck_assert_int_eq(ch_key_load_file(path, &k, &err), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err.msg, path));
}
END_TEST

START_TEST(test_ca_create_reopen)
{
	_cleanup_free_ char *crt = tmp_path("a/b/ca.crt");
	_cleanup_free_ char *key = tmp_path("a/b/ca.key");
	_cleanup_free_ char *dir = tmp_path("a");
	struct ch_err err = { "" };
	struct ch_localca *ca = NULL;
	struct ch_cert_info info;
	char fp1[65], fp2[65];
	BASIC_CONSTRAINTS *bc;
	ASN1_BIT_STRING *ku;
	int crit = -1;
	X509 *x;

	ck_assert_msg(ch_localca_open(crt, key, true, "Test CA", CH_KEY_ECDSA_P256, 0, &ca, &err) ==
			      0,
		      "%s", err.msg);
	ck_assert_uint_eq(file_mode(key), 0600);
	ck_assert_uint_eq(file_mode(crt), 0644);
	ck_assert_uint_eq(file_mode(dir), 0700);
	x = ch_localca_cert(ca);
	fingerprint(x, fp1);

	ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
	ck_assert_str_eq(info.subject, "O=certherd,CN=Test CA");
	ck_assert_str_eq(info.issuer, info.subject);
	/* Default lifetime: ten years; notBefore backdated by five minutes. */
	ck_assert_int_le(llabs(info.not_after - (time(NULL) + 3650LL * 86400)), 5);
	ck_assert_int_le(llabs(info.not_before - (time(NULL) - 300)), 5);
	ch_cert_info_done(&info);

	ck_assert_int_eq(X509_get_version(x), X509_VERSION_3);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	ck_assert_ptr_nonnull(bc);
	ck_assert_int_eq(crit, 1);
	ck_assert_int_ne(bc->ca, 0);
	BASIC_CONSTRAINTS_free(bc);
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	ck_assert_ptr_nonnull(ku);
	ck_assert_int_eq(crit, 1);
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 0), 1); /* digitalSignature */
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 5), 1); /* keyCertSign */
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 6), 1); /* cRLSign */
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 2), 0);
	ASN1_BIT_STRING_free(ku);
	ck_assert_ptr_nonnull(X509_get0_subject_key_id(x));
	ck_assert_int_eq(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x),
					       X509_get0_authority_key_id(x)),
			 0);
	ck_assert_int_eq(X509_check_ca(x), 1);
	ck_assert_int_eq(X509_verify(x, X509_get0_pubkey(x)), 1);
	ch_localca_free(ca);

	/* Reopening loads, whatever create says; it never regenerates. */
	ca = NULL;
	ck_assert_msg(ch_localca_open(crt, key, false, NULL, CH_KEY_RSA_2048, 0, &ca, &err) == 0,
		      "%s", err.msg);
	fingerprint(ch_localca_cert(ca), fp2);
	ck_assert_str_eq(fp1, fp2);
	ch_localca_free(ca);
	ca = NULL;
	ck_assert_int_eq(ch_localca_open(crt, key, true, NULL, CH_KEY_RSA_2048, 0, &ca, &err), 0);
	fingerprint(ch_localca_cert(ca), fp2);
	ck_assert_str_eq(fp1, fp2);
	ch_localca_free(ca);
	ck_assert_ptr_null(ch_localca_free(NULL));
}
END_TEST

START_TEST(test_ca_default_cn_and_types)
{
	for (size_t i = 0; i < ARRAY_SIZE(all_types); i++) {
		char sub[16];
		struct ch_localca *ca;
		struct ch_cert_info info;

		snprintf(sub, sizeof(sub), "ca%zu", i);
		ca = open_ca(sub, all_types[i], 86400);
		ck_assert_int_eq(ch_cert_info_get(ch_localca_cert(ca), &info), 0);
		ck_assert_str_eq(info.subject, "O=certherd,CN=certherd local CA");
		ck_assert_int_le(llabs(info.not_after - (time(NULL) + 86400)), 5);
		ch_cert_info_done(&info);
		ch_localca_free(ca);
	}
}
END_TEST

START_TEST(test_ca_half_present)
{
	_cleanup_free_ char *crt = tmp_path("h/ca.crt");
	_cleanup_free_ char *key = tmp_path("h/ca.key");
	struct ch_err err = { "" };
	struct ch_localca *ca = NULL;

	/* Both missing and create false. */
	ck_assert_int_eq(ch_localca_open(crt, key, false, NULL, CH_KEY_ECDSA_P256, 0, &ca, &err),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "not found"));
	ck_assert_ptr_nonnull(strstr(err.msg, crt));

	ck_assert_int_eq(ch_localca_open(crt, key, true, NULL, CH_KEY_ECDSA_P256, 0, &ca, &err), 0);
	ch_localca_free(ca);
	ca = NULL;

	/* Only the certificate: an error naming the key, even with create. */
	{
		_cleanup_free_ char *saved = tmp_path("h/saved.key");

		ck_assert_int_eq(rename(key, saved), 0);
		ck_assert_int_eq(
			ch_localca_open(crt, key, true, NULL, CH_KEY_ECDSA_P256, 0, &ca, &err),
			-ENOENT);
		ck_assert_ptr_null(ca);
		ck_assert_ptr_nonnull(strstr(err.msg, key));
		ck_assert_ptr_nonnull(strstr(err.msg, "not found"));

		/* Only the key: an error naming the certificate. */
		ck_assert_int_eq(rename(saved, key), 0);
		ck_assert_int_eq(unlink(crt), 0);
		ck_assert_int_eq(
			ch_localca_open(crt, key, true, NULL, CH_KEY_ECDSA_P256, 0, &ca, &err),
			-ENOENT);
		ck_assert_ptr_nonnull(strstr(err.msg, crt));
	}
}
END_TEST

START_TEST(test_ca_mismatch_and_not_ca)
{
	struct ch_localca *a = open_ca("m1", CH_KEY_ECDSA_P256, 0);
	struct ch_localca *b = open_ca("m2", CH_KEY_ECDSA_P256, 0);
	_cleanup_free_ char *crt1 = tmp_path("m1/ca.crt"), *key2 = tmp_path("m2/ca.key");
	_cleanup_free_ char *leafc = tmp_path("leaf.crt"), *leafk = tmp_path("leaf.key");
	char *const dns[] = { "x.example", NULL };
	struct ch_err err = { "" };
	struct ch_localca *ca = NULL;
	char *pem;
	size_t len;
	X509 *leaf;

	ck_assert_int_eq(ch_localca_open(crt1, key2, false, NULL, 0, 0, &ca, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not belong"));

	leaf = issue(a, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);
	write_cert(leafc, leaf);
	ck_assert_int_eq(ch_key_to_pem(test_key(CH_KEY_ECDSA_P256), &pem, &len, &err), 0);
	write_text(leafk, pem, 0600);
	ch_secret_free(pem, len);
	ck_assert_int_eq(ch_localca_open(leafc, leafk, false, NULL, 0, 0, &ca, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "not a CA"));
	X509_free(leaf);
	ch_localca_free(a);
	ch_localca_free(b);
}
END_TEST

/* The leaf carries exactly the SubjectPublicKeyInfo OpenSSL encodes for key. */
static void
check_spki(X509 *x, EVP_PKEY *key)
{
	unsigned char *a = NULL, *b = NULL;
	int alen, blen;

	alen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &a);
	blen = i2d_PUBKEY(key, &b);
	ck_assert_int_gt(alen, 0);
	ck_assert_int_eq(alen, blen);
	ck_assert_int_eq(memcmp(a, b, (size_t)alen), 0);
	ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
	OPENSSL_free(a);
	OPENSSL_free(b);
}

/* Every CA key type signs a leaf for every key type; both verifiers agree. */
START_TEST(test_leaf_verify_all_types)
{
	char *const dns[] = { "www.example.com", "example.com", NULL };
	char *const ip[] = { "192.0.2.7", NULL };

	for (size_t c = 0; c < ARRAY_SIZE(all_types); c++) {
		char sub[16], name[64];
		struct ch_localca *ca;
		_cleanup_free_ char *ca_path = NULL;

		snprintf(sub, sizeof(sub), "v%zu", c);
		ca = open_ca(sub, all_types[c], 0);
		ck_assert_int_ge(asprintf(&ca_path, "%s/%s/ca.crt", tmpdir, sub), 0);
		for (size_t l = 0; l < ARRAY_SIZE(all_types); l++) {
			struct ch_err err = { "" };
			_cleanup_free_ char *leaf_path = NULL;
			X509 *x = issue(ca, test_key(all_types[l]), dns, ip, 86400, 300);

			ck_assert_msg(ch_cert_verify(x, NULL, ch_localca_cert(ca), &err) == 0,
				      "ca %zu leaf %zu: %s", c, l, err.msg);
			ck_assert(ch_cert_key_match(x, test_key(all_types[l])));
			check_spki(x, test_key(all_types[l]));
			snprintf(name, sizeof(name), "leaf-%zu-%zu.crt", c, l);
			leaf_path = tmp_path(name);
			write_cert(leaf_path, x);
			ck_assert_msg(openssl_verify(ca_path, leaf_path) == 0,
				      "openssl verify failed: ca %zu leaf %zu", c, l);
			X509_free(x);
		}
		ch_localca_free(ca);
	}
}
END_TEST

START_TEST(test_verify_wrong_ca)
{
	struct ch_localca *a = open_ca("w1", CH_KEY_ECDSA_P256, 0);
	struct ch_localca *b = open_ca("w2", CH_KEY_ECDSA_P256, 0);
	_cleanup_free_ char *bpath = tmp_path("w2/ca.crt"), *lpath = tmp_path("w.crt");
	char *const dns[] = { "a.example", NULL };
	struct ch_err err = { "" };
	X509 *x = issue(a, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);

	ck_assert_int_eq(ch_cert_verify(x, NULL, ch_localca_cert(b), &err), -EBADMSG);
	ck_assert_msg(strstr(err.msg, "unable to get local issuer certificate") != NULL, "%s",
		      err.msg);
	write_cert(lpath, x);
	ck_assert_int_ne(openssl_verify(bpath, lpath), 0);
	X509_free(x);
	ch_localca_free(a);
	ch_localca_free(b);
}
END_TEST

static void
check_leaf_extensions(struct ch_localca *ca, EVP_PKEY *key, bool rsa)
{
	char *const dns[] = { "www.example.com", "Example.COM", NULL };
	char *const ip[] = { "192.0.2.1", "2001:db8::1", NULL };
	X509 *x = issue(ca, key, dns, ip, 86400, 300);
	X509 *cax = ch_localca_cert(ca);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct ch_cert_info info, cainfo;
	GENERAL_NAMES *gens;
	EXTENDED_KEY_USAGE *eku;
	BASIC_CONSTRAINTS *bc;
	ASN1_BIT_STRING *ku;
	ASN1_OCTET_STRING *ski;
	AUTHORITY_KEYID *akid;
	int crit = -1;

	ck_assert_int_eq(X509_get_version(x), X509_VERSION_3);

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	ck_assert_ptr_nonnull(gens);
	ck_assert_int_eq(crit, 0);
	ck_assert_int_eq(sk_GENERAL_NAME_num(gens), 4);
	GENERAL_NAMES_free(gens);

	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	ck_assert_ptr_nonnull(eku);
	ck_assert_int_eq(crit, 0);
	ck_assert_int_eq(sk_ASN1_OBJECT_num(eku), 2);
	ck_assert_int_eq(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
	ck_assert_int_eq(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)), NID_client_auth);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);

	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	ck_assert_ptr_nonnull(ku);
	ck_assert_int_eq(crit, 1);
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 0), 1);
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 2), rsa);
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 5), 0);
	ck_assert_int_eq(ASN1_BIT_STRING_get_bit(ku, 6), 0);
	ASN1_BIT_STRING_free(ku);

	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	ck_assert_ptr_nonnull(bc);
	ck_assert_int_eq(crit, 1);
	ck_assert_int_eq(bc->ca, 0);
	ck_assert_ptr_null(bc->pathlen);
	BASIC_CONSTRAINTS_free(bc);
	ck_assert_int_eq(X509_check_ca(x), 0);

	ski = X509_get_ext_d2i(x, NID_subject_key_identifier, &crit, NULL);
	ck_assert_ptr_nonnull(ski);
	ck_assert_int_eq(crit, 0);
	ck_assert_int_eq(X509_pubkey_digest(x, EVP_sha1(), md, &mdlen), 1);
	ck_assert_int_eq(ASN1_STRING_length(ski), (int)mdlen);
	ck_assert_int_eq(memcmp(ASN1_STRING_get0_data(ski), md, mdlen), 0);
	ASN1_OCTET_STRING_free(ski);

	akid = X509_get_ext_d2i(x, NID_authority_key_identifier, &crit, NULL);
	ck_assert_ptr_nonnull(akid);
	ck_assert_int_eq(crit, 0);
	ck_assert_ptr_nonnull(akid->keyid);
	ck_assert_int_eq(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(cax)), 0);
	AUTHORITY_KEYID_free(akid);

	ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
	ck_assert_int_eq(ch_cert_info_get(cax, &cainfo), 0);
	ck_assert_str_eq(info.subject, "CN=www.example.com");
	ck_assert_str_eq(info.issuer, cainfo.subject);
	ck_assert_ptr_nonnull(info.dns_names[0]);
	ck_assert_str_eq(info.dns_names[0], "www.example.com");
	ck_assert_str_eq(info.dns_names[1], "Example.COM");
	ck_assert_ptr_null(info.dns_names[2]);
	ck_assert_str_eq(info.ip_names[0], "192.0.2.1");
	ck_assert_str_eq(info.ip_names[1], "2001:db8::1");
	ck_assert_ptr_null(info.ip_names[2]);
	ck_assert_int_eq(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
	for (unsigned i = 0; i < mdlen; i++) {
		char hex[3];

		snprintf(hex, sizeof(hex), "%02x", md[i]);
		ck_assert_int_eq(memcmp(info.fingerprint + 2 * i, hex, 2), 0);
	}
	ck_assert_uint_eq(strlen(info.fingerprint), 64);
	ch_cert_info_done(&info);
	ch_cert_info_done(&cainfo);
	X509_free(x);
}

START_TEST(test_leaf_extensions)
{
	struct ch_localca *ca = open_ca("e", CH_KEY_ECDSA_P256, 0);

	check_leaf_extensions(ca, test_key(CH_KEY_ECDSA_P256), false);
	check_leaf_extensions(ca, test_key(CH_KEY_ED25519), false);
	check_leaf_extensions(ca, test_key(CH_KEY_RSA_2048), true);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_leaf_subject_choice)
{
	struct ch_localca *ca = open_ca("s", CH_KEY_ECDSA_P256, 0);
	char *const ip[] = { "2001:db8::5", NULL };
	char longname[80];
	char *const dns_long[] = { longname, NULL };
	char *const bad_dns[] = { "bad name", NULL };
	char *const bad_ip[] = { "300.1.1.1", NULL };
	char *const none[] = { NULL };
	struct ch_err err = { "" };
	struct ch_cert_info info;
	GENERAL_NAMES *gens;
	X509 *x = NULL;
	int crit = -1;

	x = issue(ca, test_key(CH_KEY_ECDSA_P256), NULL, ip, 3600, 0);
	ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
	ck_assert_str_eq(info.subject, "CN=2001:db8::5");
	ck_assert_ptr_null(info.dns_names[0]);
	ck_assert_str_eq(info.ip_names[0], "2001:db8::5");
	ch_cert_info_done(&info);
	X509_free(x);

	/* Too long for a CN: empty subject, critical SAN. */
	memset(longname, 'a', 70);
	strcpy(longname + 70, ".example");
	x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns_long, NULL, 3600, 0);
	ck_assert_int_eq(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	ck_assert_ptr_nonnull(gens);
	ck_assert_int_eq(crit, 1);
	GENERAL_NAMES_free(gens);
	ck_assert_int_eq(ch_cert_verify(x, NULL, ch_localca_cert(ca), &err), 0);
	X509_free(x);
	x = NULL;

	ck_assert_int_eq(ch_localca_issue(ca, test_key(CH_KEY_ECDSA_P256), NULL, NULL, 3600, 0, &x,
					  &err),
			 -EINVAL);
	ck_assert_int_eq(ch_localca_issue(ca, test_key(CH_KEY_ECDSA_P256), none, none, 3600, 0, &x,
					  &err),
			 -EINVAL);
	ck_assert_int_eq(ch_localca_issue(ca, test_key(CH_KEY_ECDSA_P256), bad_dns, NULL, 3600, 0,
					  &x, &err),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "bad name"));
	ck_assert_int_eq(ch_localca_issue(ca, test_key(CH_KEY_ECDSA_P256), NULL, bad_ip, 3600, 0,
					  &x, &err),
			 -EINVAL);
	ck_assert_int_eq(ch_localca_issue(ca, test_key(CH_KEY_ECDSA_P256), NULL, ip, 0, 0, &x,
					  &err),
			 -EINVAL);
	ck_assert_ptr_null(x);
	ch_localca_free(ca);
}
END_TEST

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(test_serials)
{
	struct ch_localca *ca = open_ca("n", CH_KEY_ECDSA_P256, 0);
	char *const dns[] = { "s.example", NULL };
	enum { N = 1000 };
	char **serials = calloc(N, sizeof(char *));
	int minbits = 128;

	ck_assert_ptr_nonnull(serials);
	for (int i = 0; i < N; i++) {
		X509 *x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);
		const ASN1_INTEGER *ai = X509_get0_serialNumber(x);
		BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
		struct ch_cert_info info;

		ck_assert_ptr_nonnull(bn);
		ck_assert_int_eq(ASN1_STRING_type(ai), V_ASN1_INTEGER); /* not negative */
		ck_assert_int_eq(BN_is_negative(bn), 0);
		ck_assert_int_eq(BN_is_zero(bn), 0);
		ck_assert_int_le(BN_num_bits(bn), 127);
		if (BN_num_bits(bn) < minbits)
			minbits = BN_num_bits(bn);
		BN_free(bn);
		ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
		for (const char *c = info.serial; *c; c++)
			ck_assert(strchr("0123456789abcdef", *c));
		serials[i] = strdup(info.serial);
		ch_cert_info_done(&info);
		X509_free(x);
	}
	/* Out of 1000 random 127-bit values, the smallest still has > 100 bits. */
	ck_assert_int_gt(minbits, 100);
	qsort(serials, N, sizeof(char *), cmp_str);
	for (int i = 1; i < N; i++)
		ck_assert_str_ne(serials[i - 1], serials[i]);
	for (int i = 0; i < N; i++)
		free(serials[i]);
	free(serials);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_validity)
{
	struct ch_localca *ca = open_ca("t", CH_KEY_ECDSA_P256, 7 * 86400);
	char *const dns[] = { "t.example", NULL };
	struct ch_cert_info info, cainfo;
	int64_t now = time(NULL);
	X509 *x;

	ck_assert_int_eq(ch_cert_info_get(ch_localca_cert(ca), &cainfo), 0);

	x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 86400, 600);
	ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
	ck_assert_int_le(llabs(info.not_before - (now - 600)), 2);
	ck_assert_int_le(llabs(info.not_after - (now + 86400)), 2);
	ch_cert_info_done(&info);
	X509_free(x);

	/* A 90-day leaf from a 7-day CA ends with the CA. */
	x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 90 * 86400, 300);
	ck_assert_int_eq(ch_cert_info_get(x, &info), 0);
	ck_assert_int_eq(info.not_after, cainfo.not_after);
	ck_assert_int_le(llabs(info.not_before - (now - 300)), 2);
	ch_cert_info_done(&info);
	X509_free(x);

	ch_cert_info_done(&cainfo);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_names_match)
{
	struct ch_localca *ca = open_ca("nm", CH_KEY_ECDSA_P256, 0);
	char *const dns[] = { "www.example.com", "api.example.com", NULL };
	char *const ip[] = { "192.0.2.1", "2001:db8::1", NULL };
	X509 *x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, ip, 3600, 0);
	X509 *only_dns = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);

	char *const dns_case[] = { "API.example.COM", "WWW.EXAMPLE.COM", NULL };
	char *const ip_long[] = { "2001:0db8:0000:0000:0000:0000:0000:0001", "192.0.2.1", NULL };
	char *const dns_one[] = { "www.example.com", NULL };
	char *const dns_more[] = { "www.example.com", "api.example.com", "x.example.com", NULL };
	char *const dns_other[] = { "www.example.com", "api.example.org", NULL };
	char *const ip_one[] = { "192.0.2.1", NULL };
	char *const ip_other[] = { "192.0.2.1", "2001:db8::2", NULL };
	char *const ip_bad[] = { "192.0.2.1", "nonsense", NULL };
	char *const ip_v4mapped[] = { "::ffff:192.0.2.1", "2001:db8::1", NULL };
	char *const none[] = { NULL };

	ck_assert(ch_cert_names_match(x, dns, ip));
	ck_assert(ch_cert_names_match(x, dns_case, ip));
	ck_assert(ch_cert_names_match(x, dns, ip_long));
	ck_assert(ch_cert_names_match(x, dns_case, ip_long));
	ck_assert(!ch_cert_names_match(x, dns_one, ip));
	ck_assert(!ch_cert_names_match(x, dns_more, ip));
	ck_assert(!ch_cert_names_match(x, dns_other, ip));
	ck_assert(!ch_cert_names_match(x, dns, ip_one));
	ck_assert(!ch_cert_names_match(x, dns, ip_other));
	ck_assert(!ch_cert_names_match(x, dns, ip_bad));
	ck_assert(!ch_cert_names_match(x, dns, ip_v4mapped));
	ck_assert(!ch_cert_names_match(x, dns, NULL));
	ck_assert(!ch_cert_names_match(x, NULL, ip));
	ck_assert(ch_cert_names_match(only_dns, dns, NULL));
	ck_assert(ch_cert_names_match(only_dns, dns, none));
	ck_assert(!ch_cert_names_match(only_dns, dns, ip_one));
	ck_assert(!ch_cert_names_match(only_dns, NULL, NULL));
	/* The CA certificate has no SANs at all. */
	ck_assert(ch_cert_names_match(ch_localca_cert(ca), NULL, NULL));
	ck_assert(!ch_cert_names_match(ch_localca_cert(ca), dns_one, NULL));

	X509_free(x);
	X509_free(only_dns);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_key_match)
{
	struct ch_localca *ca = open_ca("km", CH_KEY_ECDSA_P256, 0);
	char *const dns[] = { "k.example", NULL };
	X509 *x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);
	X509 *r = issue(ca, test_key(CH_KEY_RSA_2048), dns, NULL, 3600, 0);
	struct ch_err err = { "" };
	EVP_PKEY *other = NULL;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &other, &err), 0);
	ck_assert(ch_cert_key_match(x, test_key(CH_KEY_ECDSA_P256)));
	ck_assert(!ch_cert_key_match(x, other));
	ck_assert(!ch_cert_key_match(x, test_key(CH_KEY_RSA_2048)));
	ck_assert(!ch_cert_key_match(x, NULL));
	ck_assert(ch_cert_key_match(r, test_key(CH_KEY_RSA_2048)));
	ck_assert(!ch_cert_key_match(r, test_key(CH_KEY_ECDSA_P256)));
	EVP_PKEY_free(other);
	X509_free(x);
	X509_free(r);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_pem_lists)
{
	struct ch_localca *ca = open_ca("pl", CH_KEY_ECDSA_P256, 0);
	char *const dns[] = { "p.example", NULL };
	X509 *x = issue(ca, test_key(CH_KEY_ECDSA_P256), dns, NULL, 3600, 0);
	struct ch_err err = { "" };
	STACK_OF(X509) *sk = NULL;
	char *a = NULL, *b = NULL, *both = NULL;
	char fa[65], fb[65], f0[65], f1[65];
	X509 *one = NULL;

	ck_assert_int_eq(ch_cert_to_pem(x, &a), 0);
	ck_assert_int_eq(ch_cert_to_pem(ch_localca_cert(ca), &b), 0);
	ck_assert_int_ge(asprintf(&both, "%s%s", a, b), 0);

	ck_assert_int_eq(ch_cert_from_pem(both, strlen(both), &one, &err), 0);
	fingerprint(one, f0);
	fingerprint(x, fa);
	ck_assert_str_eq(f0, fa);
	X509_free(one);

	ck_assert_int_eq(ch_certs_from_pem(both, strlen(both), &sk, &err), 0);
	ck_assert_int_eq(sk_X509_num(sk), 2);
	fingerprint(sk_X509_value(sk, 0), f0);
	fingerprint(sk_X509_value(sk, 1), f1);
	fingerprint(ch_localca_cert(ca), fb);
	ck_assert_str_eq(f0, fa);
	ck_assert_str_eq(f1, fb);
	ck_assert_int_eq(ch_cert_verify(x, sk, ch_localca_cert(ca), &err), 0);
	sk_X509_pop_free(sk, X509_free);

	ck_assert_int_eq(ch_certs_from_pem("", 0, &sk, &err), 0);
	ck_assert_int_eq(sk_X509_num(sk), 0);
	sk_X509_free(sk);

	ck_assert_int_eq(ch_cert_from_pem("", 0, &one, &err), -EBADMSG);
	both[strlen(a) + 40] = '!';
	ck_assert_int_eq(ch_certs_from_pem(both, strlen(both), &sk, &err), -EBADMSG);

	free(a);
	free(b);
	free(both);
	X509_free(x);
	ch_localca_free(ca);
}
END_TEST

/* The backend, driven through an event loop like the daemon drives it. */
struct issue_ctx {
	int calls;
	enum ch_ca_outcome outcome;
	char *cert_pem;
	char *chain_pem;
	char message[1024];
};

static void
issue_done(struct ch_issue_result *res, void *arg)
{
	struct issue_ctx *c = arg;

	c->calls++;
	c->outcome = res->outcome;
	c->cert_pem = res->cert_pem ? strdup(res->cert_pem) : NULL;
	c->chain_pem = res->chain_pem ? strdup(res->chain_pem) : NULL;
	snprintf(c->message, sizeof(c->message), "%s", res->message);
}

static void
issue_ctx_done(struct issue_ctx *c)
{
	free(c->cert_pem);
	free(c->chain_pem);
	*c = (struct issue_ctx){ 0 };
}

/* Sets an option through the backend's own key table. */
static void *
opt_ptr(const struct ch_ca_ops *ops, void *opts, const char *name)
{
	for (const struct ch_conf_key *k = ops->keys; k->name; k++)
		if (streq(k->name, name))
			return (char *)opts + k->offset;
	ck_abort_msg("no option %s", name);
	return NULL;
}

START_TEST(test_ca_ops_event_loop)
{
	const struct ch_ca_ops *ops = ch_ca_ops_find("local");
	struct event_base *base = event_base_new();
	char *const dns[] = { "svc.example", NULL };
	char *const ip[] = { "10.0.0.1", NULL };
	struct ch_conf_ca conf = { .name = "test", .type = "local" };
	struct ch_ca_env env = { .base = base, .state_dir = tmpdir };
	struct ch_issue_request req = {
		.cert_name = "svc", .dns_names = dns, .ip_names = ip,
		.key = test_key(CH_KEY_ECDSA_P256), .lifetime = 0,
	};
	struct ch_err err = { "" };
	struct issue_ctx c = { 0 };
	struct ch_ca *ca = NULL;
	struct ch_cert_info info;
	_cleanup_free_ char *crt = tmp_path("ca/test/ca.crt"), *key = tmp_path("ca/test/ca.key");
	X509 *leaf = NULL, *root = NULL;
	int64_t now;

	ck_assert_ptr_nonnull(base);
	ck_assert_ptr_eq(ops, &ch_ca_local_ops);
	ck_assert_str_eq(ops->type, "local");
	conf.ops = ops;
	conf.opts = calloc(1, ops->opts_size);
	*(int *)opt_ptr(ops, conf.opts, "key_type") = -1;

	ck_assert_int_eq(ops->check(conf.opts, &err), 0);
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(file_mode(key), 0600);
	ck_assert_uint_eq(file_mode(crt), 0644);
	ck_assert_ptr_nonnull(ops->trust_pem(ca->state));
	ck_assert_int_eq(ch_cert_from_pem(ops->trust_pem(ca->state),
					  strlen(ops->trust_pem(ca->state)), &root, &err),
			 0);

	now = time(NULL);
	ck_assert_int_eq(ops->issue(ca->state, &req, issue_done, &c), 0);
	ck_assert_int_eq(c.calls, 0); /* never from inside issue() */
	ck_assert_int_ge(event_base_dispatch(base), 0);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_msg(c.outcome == CH_CA_ISSUED, "%s", c.message);
	ck_assert_ptr_nonnull(c.chain_pem);
	ck_assert_str_eq(c.chain_pem, "");
	ck_assert_int_eq(ch_cert_from_pem(c.cert_pem, strlen(c.cert_pem), &leaf, &err), 0);
	ck_assert_msg(ch_cert_verify(leaf, NULL, root, &err) == 0, "%s", err.msg);
	ck_assert(ch_cert_names_match(leaf, dns, ip));
	ck_assert(ch_cert_key_match(leaf, req.key));
	ck_assert_int_eq(ch_cert_info_get(leaf, &info), 0);
	/* Defaults: 90-day leaves, backdated by 300 s. */
	ck_assert_int_le(llabs(info.not_after - (now + 90 * 86400)), 3);
	ck_assert_int_le(llabs(info.not_before - (now - 300)), 3);
	ch_cert_info_done(&info);
	X509_free(leaf);
	issue_ctx_done(&c);

	/* Requested lifetime wins over the default. */
	req.lifetime = 3600;
	ck_assert_int_eq(ops->issue(ca->state, &req, issue_done, &c), 0);
	ck_assert_int_ge(event_base_dispatch(base), 0);
	ck_assert_int_eq(c.outcome, CH_CA_ISSUED);
	ck_assert_int_eq(ch_cert_from_pem(c.cert_pem, strlen(c.cert_pem), &leaf, &err), 0);
	ck_assert_int_eq(ch_cert_info_get(leaf, &info), 0);
	ck_assert_int_le(llabs(info.not_after - (time(NULL) + 3600)), 3);
	ch_cert_info_done(&info);
	X509_free(leaf);
	issue_ctx_done(&c);

	/* No names: rejected, still asynchronously. */
	req.dns_names = NULL;
	req.ip_names = NULL;
	ck_assert_int_eq(ops->issue(ca->state, &req, issue_done, &c), 0);
	ck_assert_int_eq(c.calls, 0);
	ck_assert_int_ge(event_base_dispatch(base), 0);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_int_eq(c.outcome, CH_CA_REJECTED);
	ck_assert_ptr_null(c.cert_pem);
	ck_assert_str_ne(c.message, "");
	issue_ctx_done(&c);

	/* Freed with a result pending: done never fires, nothing leaks. */
	req.dns_names = dns;
	ck_assert_int_eq(ops->issue(ca->state, &req, issue_done, &c), 0);
	ca = ch_ca_free(ca);
	event_base_dispatch(base);
	ck_assert_int_eq(c.calls, 0);

	/* A second start loads the same CA. */
	ck_assert_int_eq(ch_ca_new(&conf, &env, &ca, &err), 0);
	ck_assert_int_eq(ch_cert_from_pem(ops->trust_pem(ca->state),
					  strlen(ops->trust_pem(ca->state)), &leaf, &err),
			 0);
	ck_assert_int_eq(X509_cmp(leaf, root), 0);
	X509_free(leaf);
	ch_ca_free(ca);

	X509_free(root);
	free(conf.opts);
	event_base_free(base);
}
END_TEST

START_TEST(test_ca_ops_config)
{
	const struct ch_ca_ops *ops = &ch_ca_local_ops;
	struct event_base *base = event_base_new();
	struct ch_conf_ca conf = { .name = "explicit", .type = "local", .ops = ops };
	struct ch_ca_env env = { .base = base, .state_dir = tmpdir };
	_cleanup_free_ char *crt = tmp_path("x/ca.pem"), *key = tmp_path("x/ca-key.pem");
	struct ch_err err = { "" };
	struct ch_localca *lca;
	struct ch_ca *ca = NULL;
	char **cert_opt, **key_opt;
	int64_t *lifetime;
	char *want = NULL;

	conf.opts = calloc(1, ops->opts_size);
	cert_opt = opt_ptr(ops, conf.opts, "cert");
	key_opt = opt_ptr(ops, conf.opts, "key");
	lifetime = opt_ptr(ops, conf.opts, "lifetime");
	*(int *)opt_ptr(ops, conf.opts, "key_type") = -1;
	ck_assert_ptr_nonnull(opt_ptr(ops, conf.opts, "common_name"));
	ck_assert_ptr_nonnull(opt_ptr(ops, conf.opts, "leaf_lifetime"));
	ck_assert_ptr_nonnull(opt_ptr(ops, conf.opts, "backdate"));

	/* cert without key, and key without cert */
	*cert_opt = crt;
	ck_assert_int_eq(ops->check(conf.opts, &err), -EINVAL);
	*cert_opt = NULL;
	*key_opt = key;
	ck_assert_int_eq(ops->check(conf.opts, &err), -EINVAL);

	/* Configured explicitly and missing: not created. */
	*cert_opt = crt;
	ck_assert_int_eq(ops->check(conf.opts, &err), 0);
	ck_assert_int_lt(ch_ca_new(&conf, &env, &ca, &err), 0);
	ck_assert_ptr_null(ca);
	ck_assert_int_ge(asprintf(&want, "CA certificate %s not found", crt), 0);
	ck_assert_str_eq(err.msg, want);
	free(want);
	ck_assert_int_eq(access(key, F_OK), -1);

	/* Present: loaded; the CA lifetime option only matters on creation. */
	*lifetime = 86400;
	ck_assert_int_eq(ch_localca_open(crt, key, true, "Explicit", CH_KEY_ED25519, 0, &lca, &err),
			 0);
	ch_localca_free(lca);
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ck_assert_ptr_nonnull(strstr(ops->trust_pem(ca->state), "BEGIN CERTIFICATE"));
	ch_ca_free(ca);

	free(conf.opts);
	event_base_free(base);
}
END_TEST

static Suite *
crypto_suite(void)
{
	Suite *s = suite_create("crypto");
	TCase *tc = tcase_create("crypto");

	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_key_roundtrip);
	tcase_add_test(tc, test_key_pem_ec_same_as_openssl);
	tcase_add_test(tc, test_key_bad);
	tcase_add_test(tc, test_key_load_file_mode);
	tcase_add_test(tc, test_ca_create_reopen);
	tcase_add_test(tc, test_ca_default_cn_and_types);
	tcase_add_test(tc, test_ca_half_present);
	tcase_add_test(tc, test_ca_mismatch_and_not_ca);
	tcase_add_test(tc, test_leaf_verify_all_types);
	tcase_add_test(tc, test_verify_wrong_ca);
	tcase_add_test(tc, test_leaf_extensions);
	tcase_add_test(tc, test_leaf_subject_choice);
	tcase_add_test(tc, test_serials);
	tcase_add_test(tc, test_validity);
	tcase_add_test(tc, test_names_match);
	tcase_add_test(tc, test_key_match);
	tcase_add_test(tc, test_pem_lists);
	tcase_add_test(tc, test_ca_ops_event_loop);
	tcase_add_test(tc, test_ca_ops_config);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(crypto_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
