/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for revocation reasons and CRLs (src/lib/crl.c): names in
 * both spellings, CRLs signed by a software CA key and through a
 * struct ch_signer (as a token key signs them), checked with OpenSSL's
 * API and with `openssl crl` / `openssl verify -crl_check` as an outside
 * opinion.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/crl.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"

START_TEST(test_reason_names)
{
	static const struct {
		const char *in;
		int want;
	} cases[] = {
		{ "unspecified", CH_CRL_REASON_UNSPECIFIED },
		{ "keyCompromise", CH_CRL_REASON_KEY_COMPROMISE },
		{ "key-compromise", CH_CRL_REASON_KEY_COMPROMISE },
		{ "KEY_COMPROMISE", CH_CRL_REASON_KEY_COMPROMISE },
		{ "keycompromise", CH_CRL_REASON_KEY_COMPROMISE },
		{ "cACompromise", CH_CRL_REASON_CA_COMPROMISE },
		{ "ca-compromise", CH_CRL_REASON_CA_COMPROMISE },
		{ "affiliationChanged", CH_CRL_REASON_AFFILIATION_CHANGED },
		{ "affiliation-changed", CH_CRL_REASON_AFFILIATION_CHANGED },
		{ "superseded", CH_CRL_REASON_SUPERSEDED },
		{ "cessationOfOperation", CH_CRL_REASON_CESSATION_OF_OPERATION },
		{ "cessation-of-operation", CH_CRL_REASON_CESSATION_OF_OPERATION },
		{ "certificateHold", CH_CRL_REASON_CERTIFICATE_HOLD },
		{ "certificate-hold", CH_CRL_REASON_CERTIFICATE_HOLD },
		{ "removeFromCRL", CH_CRL_REASON_REMOVE_FROM_CRL },
		{ "remove-from-crl", CH_CRL_REASON_REMOVE_FROM_CRL },
		{ "privilegeWithdrawn", CH_CRL_REASON_PRIVILEGE_WITHDRAWN },
		{ "privilege-withdrawn", CH_CRL_REASON_PRIVILEGE_WITHDRAWN },
		{ "aACompromise", CH_CRL_REASON_AA_COMPROMISE },
		{ "aa-compromise", CH_CRL_REASON_AA_COMPROMISE },
		{ "", _CH_CRL_REASON_INVALID },
		{ "bogus", _CH_CRL_REASON_INVALID },
		{ "7", _CH_CRL_REASON_INVALID },
		{ "1", _CH_CRL_REASON_INVALID },
		{ "key compromise", _CH_CRL_REASON_INVALID },
		{ "keyCompromise ", _CH_CRL_REASON_INVALID },
		{ "keyCompromised", _CH_CRL_REASON_INVALID },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		ck_assert_msg((int)ch_crl_reason_from_string(cases[i].in) == cases[i].want,
			      "\"%s\": got %d, want %d", cases[i].in,
			      (int)ch_crl_reason_from_string(cases[i].in), cases[i].want);
	ck_assert_int_eq(ch_crl_reason_from_string(NULL), _CH_CRL_REASON_INVALID);

	/* Every name round-trips; 7 and out-of-range values have none. */
	for (int r = 0; r < _CH_CRL_REASON_MAX; r++) {
		const char *s = ch_crl_reason_to_string((enum ch_crl_reason)r);

		if (r == 7) {
			ck_assert_ptr_null(s);
			continue;
		}
		ck_assert_ptr_nonnull(s);
		ck_assert_int_eq(ch_crl_reason_from_string(s), r);
	}
	ck_assert_ptr_null(ch_crl_reason_to_string(_CH_CRL_REASON_MAX));
	ck_assert_ptr_null(ch_crl_reason_to_string(_CH_CRL_REASON_INVALID));
	ck_assert_str_eq(ch_crl_reason_to_string(CH_CRL_REASON_KEY_COMPROMISE), "keyCompromise");
	ck_assert_str_eq(ch_crl_reason_to_string(CH_CRL_REASON_CA_COMPROMISE), "cACompromise");

	/* The list offered to users has no removeFromCRL (not a revocation reason). */
	ck_assert_ptr_nonnull(strstr(ch_crl_reasons_list(), "keyCompromise"));
	ck_assert_ptr_nonnull(strstr(ch_crl_reasons_list(), "aACompromise"));
	ck_assert_ptr_null(strstr(ch_crl_reasons_list(), "removeFromCRL"));
}
END_TEST

static char tmpdir[] = "/tmp/test-crl.XXXXXX";

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void
setup(void)
{
	strcpy(tmpdir, "/tmp/test-crl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *
tmp_path(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tmpdir, name);
	return buf[i];
}

static struct ch_localca *
soft_ca(enum ch_key_type type)
{
	struct ch_localca *ca = NULL;
	struct ch_err err = { "" };
	char name[64];

	snprintf(name, sizeof(name), "ca-%d", (int)type);
	ck_assert_msg(ch_localca_open(tmp_path(name), tmp_path("ca.key"), true, "Test CA", type,
				      86400, &ca, &err) == 0,
		      "%s", err.msg);
	unlink(tmp_path("ca.key"));
	return ca;
}

static X509 *
leaf(struct ch_localca *ca, struct ch_cert_info *info)
{
	static char *const dns[] = { "www.test", NULL };
	struct ch_err err = { "" };
	EVP_PKEY *key = NULL;
	X509 *x = NULL;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, &err), 0);
	ck_assert_msg(ch_localca_issue(ca, key, dns, NULL, 3600, 0, &x, &err) == 0, "%s",
		      err.msg);
	EVP_PKEY_free(key);
	ck_assert_int_eq(ch_cert_info_get(x, info), 0);
	return x;
}

static void
write_cert(X509 *x, const char *path)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(PEM_write_X509(f, x), 1);
	fclose(f);
}

static void
write_crl(X509_CRL *crl, const char *path)
{
	char *pem = NULL;
	FILE *f;

	ck_assert_int_eq(ch_crl_to_pem(crl, &pem), 0);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(pem, f);
	fclose(f);
	free(pem);
}

static int
sh(const char *fmt, ...) _printf_(1, 2);

static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t
crl_number(X509_CRL *crl)
{
	ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
	uint64_t v = 0;

	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(ASN1_INTEGER_get_uint64(&v, n), 1);
	ASN1_INTEGER_free(n);
	return v;
}

static int
entry_reason(X509_CRL *crl, X509 *x)
{
	X509_REVOKED *rev = NULL;
	ASN1_ENUMERATED *code;
	int crit = 0;
	long v;

	if (X509_CRL_get0_by_serial(crl, &rev, X509_get0_serialNumber(x)) != 1)
		return -1;
	code = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
	if (!code)
		return -2; /* listed, no reasonCode */
	v = ASN1_ENUMERATED_get(code);
	ASN1_ENUMERATED_free(code);
	return (int)v;
}

/* A CRL listing the leaf, checked by the API and by the openssl CLI. */
static void
check_ca_crl(struct ch_localca *ca, const char *tag)
{
	struct ch_cert_info i1 = { 0 }, i2 = { 0 }, i3 = { 0 };
	X509 *a = leaf(ca, &i1), *b = leaf(ca, &i2), *good = leaf(ca, &i3);
	int64_t now = (int64_t)time(NULL);
	struct ch_crl_entry entries[] = {
		{ i1.serial, now - 60, CH_CRL_REASON_KEY_COMPROMISE },
		{ i2.serial, now - 30, CH_CRL_REASON_UNSPECIFIED },
	};
	struct ch_crl_request req = { entries, ARRAY_SIZE(entries), 42, now, now + 7 * 86400 };
	struct ch_err err = { "" };
	X509_CRL *crl = NULL;
	char ca_path[256], crl_path[256], a_path[256], good_path[256];

	ck_assert_msg(ch_localca_crl(ca, &req, &crl, &err) == 0, "%s: %s", tag, err.msg);
	ck_assert_int_eq(X509_CRL_verify(crl, X509_get0_pubkey(ch_localca_cert(ca))), 1);
	ck_assert_int_eq(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	ck_assert_int_eq(X509_NAME_cmp(X509_CRL_get_issuer(crl),
				       X509_get_subject_name(ch_localca_cert(ca))),
			 0);
	ck_assert_uint_eq(crl_number(crl), 42);
	ck_assert_int_eq(ASN1_TIME_cmp_time_t(X509_CRL_get0_lastUpdate(crl), (time_t)now), 0);
	ck_assert_int_eq(ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl),
					      (time_t)(now + 7 * 86400)),
			 0);
	ck_assert_int_eq(entry_reason(crl, a), CH_CRL_REASON_KEY_COMPROMISE);
	ck_assert_int_eq(entry_reason(crl, b), -2);
	ck_assert_int_eq(entry_reason(crl, good), -1);
	ck_assert_int_eq(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);

	snprintf(ca_path, sizeof(ca_path), "%s/%s-ca.pem", tmpdir, tag);
	snprintf(crl_path, sizeof(crl_path), "%s/%s-crl.pem", tmpdir, tag);
	snprintf(a_path, sizeof(a_path), "%s/%s-a.pem", tmpdir, tag);
	snprintf(good_path, sizeof(good_path), "%s/%s-good.pem", tmpdir, tag);
	write_cert(ch_localca_cert(ca), ca_path);
	write_crl(crl, crl_path);
	write_cert(a, a_path);
	write_cert(good, good_path);
	ck_assert_int_eq(sh("openssl crl -in %s -CAfile %s -noout 2>/dev/null", crl_path, ca_path),
			 0);
	ck_assert_int_eq(sh("openssl crl -in %s -noout -text | grep -q 'Key Compromise'",
			    crl_path),
			 0);
	ck_assert_int_eq(sh("openssl verify -crl_check -CRLfile %s -CAfile %s %s 2>&1 | "
			    "grep -q 'certificate revoked'",
			    crl_path, ca_path, a_path),
			 0);
	ck_assert_int_eq(sh("openssl verify -crl_check -CRLfile %s -CAfile %s %s >/dev/null 2>&1",
			    crl_path, ca_path, good_path),
			 0);
	X509_CRL_free(crl);
	X509_free(a);
	X509_free(b);
	X509_free(good);
	ch_cert_info_done(&i1);
	ch_cert_info_done(&i2);
	ch_cert_info_done(&i3);
}

START_TEST(test_crl_software_key)
{
	static const enum ch_key_type types[] = { CH_KEY_ECDSA_P256, CH_KEY_ECDSA_P384,
						  CH_KEY_RSA_2048, CH_KEY_ED25519 };

	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		struct ch_localca *ca = soft_ca(types[i]);

		check_ca_crl(ca, ch_key_type_to_string(types[i]));
		ch_localca_free(ca);
	}
}
END_TEST

/* A stand-in for a token: a software P-256 key behind struct ch_signer. */
struct fake_token {
	EVP_PKEY *key;
	unsigned char alg[64];
	size_t alg_len;
	unsigned calls;
	int fail; /* returned instead of signing when < 0 */
};

static int
fake_sign(void *arg, const unsigned char *tbs, size_t tbs_len, unsigned char *sig,
	  size_t *sig_len, struct ch_err *reterr)
{
	struct fake_token *t = arg;
	EVP_MD_CTX *ctx;
	int ok;

	t->calls++;
	if (t->fail < 0)
		return ch_err_set(reterr, t->fail, "the token went away");
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, t->key) == 1 &&
	     EVP_DigestSign(ctx, sig, sig_len, tbs, tbs_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : ch_err_set(reterr, -EIO, "cannot sign");
}

static void
fake_token_init(struct fake_token *t, struct ch_signer *signer)
{
	X509_ALGOR *alg = X509_ALGOR_new();
	unsigned char *p;
	int len;

	memset(t, 0, sizeof(*t));
	t->key = EVP_EC_gen("P-256");
	ck_assert_ptr_nonnull(t->key);
	ck_assert_ptr_nonnull(alg);
	ck_assert_int_eq(X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF,
					 NULL),
			 1);
	p = t->alg;
	len = i2d_X509_ALGOR(alg, &p);
	X509_ALGOR_free(alg);
	ck_assert_int_gt(len, 0);
	t->alg_len = (size_t)len;
	*signer = (struct ch_signer){ fake_sign, t, t->alg, t->alg_len };
}

START_TEST(test_crl_signer)
{
	struct fake_token tok, other;
	struct ch_signer signer, other_signer;
	struct ch_localca *ca = NULL, *wrong = NULL;
	struct ch_err err = { "" };
	X509 *cert = NULL;
	X509_CRL *crl = NULL;
	int64_t now = (int64_t)time(NULL);
	struct ch_crl_request req = { NULL, 0, 1, now, now + 3600 };
	unsigned before;

	fake_token_init(&tok, &signer);
	ck_assert_msg(ch_localca_make_root_signer(tok.key, &signer, "Token CA", 86400, &cert,
						  &err) == 0,
		      "%s", err.msg);
	ck_assert_msg(ch_localca_new_signer(cert, &signer, &ca, &err) == 0, "%s", err.msg);
	check_ca_crl(ca, "signer");

	/* An empty CRL is signed by the token too (one signature per CRL). */
	before = tok.calls;
	ck_assert_msg(ch_localca_crl(ca, &req, &crl, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(tok.calls, before + 1);
	ck_assert_int_le(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 0); /* NULL when empty */
	ck_assert_uint_eq(crl_number(crl), 1);
	X509_CRL_free(crl);
	crl = NULL;

	/* The token's failure is reported as is. */
	tok.fail = -ENODEV;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -ENODEV);
	ck_assert_ptr_null(crl);
	tok.fail = 0;

	/* Another key signing for this certificate: the CRL is refused, not published. */
	fake_token_init(&other, &other_signer);
	ck_assert_int_eq(ch_localca_new_signer(cert, &other_signer, &wrong, &err), 0);
	ck_assert_int_eq(ch_localca_crl(wrong, &req, &crl, &err), -EKEYREJECTED);
	ck_assert_ptr_null(crl);

	ch_localca_free(wrong);
	ch_localca_free(ca);
	X509_free(cert);
	EVP_PKEY_free(tok.key);
	EVP_PKEY_free(other.key);
}
END_TEST

START_TEST(test_crl_bad_input)
{
	struct ch_localca *ca = soft_ca(CH_KEY_ECDSA_P256);
	int64_t now = (int64_t)time(NULL);
	struct ch_crl_entry bad_serial[] = { { "12xz", now, CH_CRL_REASON_SUPERSEDED } };
	struct ch_crl_entry bad_reason[] = { { "0a1b", now, CH_CRL_REASON_REMOVE_FROM_CRL } };
	struct ch_crl_entry seven[] = { { "0a1b", now, (enum ch_crl_reason)7 } };
	struct ch_crl_request req = { bad_serial, 1, 1, now, now + 60 };
	struct ch_err err = { "" };
	X509_CRL *crl = NULL;

	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "12xz"));
	req.entries = bad_reason;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -EINVAL);
	req.entries = seven;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -EINVAL);
	req.n_entries = 0;
	req.number = 0;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -EINVAL);
	req.number = 1;
	req.next_update = now;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), -EINVAL);
	ck_assert_ptr_null(crl);
	/* Large CRL numbers (up to 2^64 - 1) are kept exactly. */
	req.next_update = now + 60;
	req.number = UINT64_MAX;
	ck_assert_int_eq(ch_localca_crl(ca, &req, &crl, &err), 0);
	ck_assert(crl_number(crl) == UINT64_MAX);
	X509_CRL_free(crl);
	ch_localca_free(ca);
}
END_TEST

START_TEST(test_leaf_distribution_point)
{
	struct ch_localca *ca = soft_ca(CH_KEY_ECDSA_P256);
	struct ch_cert_info info = { 0 };
	struct ch_err err = { "" };
	CRL_DIST_POINTS *cdps;
	X509 *x;

	x = leaf(ca, &info);
	ck_assert_ptr_null(X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL));
	X509_free(x);
	ch_cert_info_done(&info);

	ck_assert_int_eq(ch_localca_set_crl_url(ca, "http://crl.test/crl/local.crl", &err), 0);
	x = leaf(ca, &info);
	cdps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
	ck_assert_ptr_nonnull(cdps);
	ck_assert_int_eq(sk_DIST_POINT_num(cdps), 1);
	{
		DIST_POINT *dp = sk_DIST_POINT_value(cdps, 0);
		GENERAL_NAME *g = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);

		ck_assert_int_eq(g->type, GEN_URI);
		ck_assert_str_eq((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
				 "http://crl.test/crl/local.crl");
	}
	CRL_DIST_POINTS_free(cdps);
	X509_free(x);
	ch_cert_info_done(&info);

	ck_assert_int_eq(ch_localca_set_crl_url(ca, NULL, &err), 0);
	x = leaf(ca, &info);
	ck_assert_ptr_null(X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL));
	X509_free(x);
	ch_cert_info_done(&info);
	ch_localca_free(ca);
}
END_TEST

static Suite *
crl_suite(void)
{
	Suite *s = suite_create("crl");
	TCase *tc = tcase_create("crl");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_reason_names);
	tcase_add_test(tc, test_crl_software_key);
	tcase_add_test(tc, test_crl_signer);
	tcase_add_test(tc, test_crl_bad_input);
	tcase_add_test(tc, test_leaf_distribution_point);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(crl_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
