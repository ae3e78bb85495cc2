/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the offline CA hierarchy (src/lib/ceremony.c): subjects in
 * both orders, a root, a request and an intermediate signed through a
 * struct ch_signer over a software key (as a token key signs them), checked
 * with OpenSSL's API: extensions, validity capped at the root's, chains
 * that verify, and the refusals (a request whose signature does not verify,
 * a signer that is not the root's key, bad options).
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/ceremony.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"

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

static char *
name_str(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s;
	long len;

	ck_assert_ptr_nonnull(bio);
	ck_assert_int_ge(X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253), 0);
	len = BIO_get_mem_data(bio, &data);
	s = strndup(data, (size_t)len);
	BIO_free(bio);
	return s;
}

static X509_NAME *
subject(const char *s)
{
	struct ch_err err = { "" };
	X509_NAME *name = NULL;

	ck_assert_msg(ch_ceremony_parse_subject(s, &name, &err) == 0, "%s: %s", s, err.msg);
	return name;
}

START_TEST(test_parse_subject)
{
	static const struct {
		const char *in, *want; /* want in RFC 2253 form, most significant last */
	} good[] = {
		{ "CN=Example Root,O=Example", "CN=Example Root,O=Example" },
		{ "CN=Example Root, O=Example, C=DE", "CN=Example Root,O=Example,C=DE" },
		{ "/O=Example/CN=Example Root", "CN=Example Root,O=Example" },
		{ "CN=only", "CN=only" },
	};
	static const char *const bad[] = { "", "CN", "=x", "CN=", "CN=a,", "XYZ=1", "/CN=a//O=b",
					   "CN=a,O" };
	struct ch_err err = { "" };
	char big[2048];

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		X509_NAME *name = subject(good[i].in);
		_cleanup_free_ char *s = name_str(name);

		ck_assert_msg(streq(s, good[i].want), "%s gave %s", good[i].in, s);
		X509_NAME_free(name);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		X509_NAME *name = NULL;

		err.msg[0] = '\0';
		ck_assert_msg(ch_ceremony_parse_subject(bad[i], &name, &err) == -EINVAL, "%s",
			      bad[i]);
		ck_assert_ptr_null(name);
		ck_assert_msg(err.msg[0], "no message for %s", bad[i]);
	}
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "CN=", 3);
	ck_assert_int_eq(ch_ceremony_parse_subject(big, &(X509_NAME *){ NULL }, &err), -EINVAL);
	ck_assert_int_eq(ERR_peek_error(), 0);
}
END_TEST

/* The extension nid of x is there and critical (or not). */
static void
assert_ext(X509 *x, int nid, int critical)
{
	int loc = X509_get_ext_by_NID(x, nid, -1);

	ck_assert_msg(loc >= 0, "no extension %s", OBJ_nid2sn(nid));
	ck_assert_int_eq(X509_EXTENSION_get_critical(X509_get_ext(x, loc)), critical);
}

static X509 *
make_root(struct fake_token *tok, const struct ch_signer *signer, int days)
{
	struct ch_err err = { "" };
	X509_NAME *name = subject("CN=Test Root,O=Test");
	X509 *x = NULL;

	ck_assert_msg(ch_ceremony_make_root(tok->key, signer, name, days, &x, &err) == 0, "%s",
		      err.msg);
	X509_NAME_free(name);
	return x;
}

START_TEST(test_root)
{
	struct fake_token tok;
	struct ch_signer signer;
	struct ch_err err = { "" };
	X509_NAME *name = subject("CN=Test Root");
	BASIC_CONSTRAINTS *bc;
	X509 *x, *bad = NULL;
	time_t now = time(NULL);
	int day;

	fake_token_init(&tok, &signer);
	x = make_root(&tok, &signer, 3650);
	ck_assert_int_eq(tok.calls, 1);
	ck_assert_int_eq(X509_verify(x, tok.key), 1);
	ck_assert_int_eq(X509_check_issued(x, x), X509_V_OK);
	ck_assert_int_eq(X509_check_ca(x), 1);
	ck_assert_int_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_ext(x, NID_basic_constraints, 1);
	assert_ext(x, NID_key_usage, 1);
	assert_ext(x, NID_subject_key_identifier, 0);
	assert_ext(x, NID_authority_key_identifier, 0);
	ck_assert_int_eq(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	ck_assert_ptr_nonnull(bc);
	ck_assert_ptr_null(bc->pathlen);
	BASIC_CONSTRAINTS_free(bc);
	ck_assert_int_eq(ASN1_TIME_diff(&day, &(int){ 0 }, X509_get0_notBefore(x),
				       X509_get0_notAfter(x)),
			 1);
	ck_assert_int_eq(day, 3650);
	ck_assert_int_lt(X509_cmp_time(X509_get0_notBefore(x), &now), 0);
	ck_assert_int_eq(ch_cert_verify(x, NULL, x, &err), 0);

	/* Bad lifetimes are refused before the token is asked. */
	ck_assert_int_eq(ch_ceremony_make_root(tok.key, &signer, name, 0, &bad, &err), -EINVAL);
	ck_assert_int_eq(ch_ceremony_make_root(tok.key, &signer, name, CH_CEREMONY_DAYS_MAX + 1,
					       &bad, &err),
			 -EINVAL);
	ck_assert_int_eq(tok.calls, 1);
	/* The token's error comes back as it was. */
	tok.fail = -ENODEV;
	ck_assert_int_eq(ch_ceremony_make_root(tok.key, &signer, name, 10, &bad, &err), -ENODEV);
	ck_assert_ptr_null(bad);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(tok.key);
}
END_TEST

START_TEST(test_root_wrong_key)
{
	struct fake_token tok, other;
	struct ch_signer signer, other_signer;
	struct ch_err err = { "" };
	X509_NAME *name = subject("CN=Test Root");
	X509 *x = NULL;

	fake_token_init(&tok, &signer);
	fake_token_init(&other, &other_signer);
	/* The public key given is not the signer's: the self-signature does not verify. */
	ck_assert_int_eq(ch_ceremony_make_root(tok.key, &other_signer, name, 10, &x, &err),
			 -EKEYREJECTED);
	ck_assert_ptr_null(x);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not verify"));
	X509_NAME_free(name);
	EVP_PKEY_free(tok.key);
	EVP_PKEY_free(other.key);
}
END_TEST

static X509_REQ *
make_csr(struct fake_token *tok, const struct ch_signer *signer, const char *s)
{
	struct ch_err err = { "" };
	X509_NAME *name = subject(s);
	X509_REQ *req = NULL;

	ck_assert_msg(ch_ceremony_make_csr(tok->key, signer, name, &req, &err) == 0, "%s",
		      err.msg);
	X509_NAME_free(name);
	return req;
}

START_TEST(test_intermediate)
{
	struct fake_token root_tok, sub_tok;
	struct ch_signer root_signer, sub_signer;
	struct ch_err err = { "" };
	char *dns[] = { "example.com", "example.net", NULL };
	struct ch_ceremony_sub opts = { .days = 1825, .path_len = 0, .permitted_dns = dns };
	BASIC_CONSTRAINTS *bc;
	NAME_CONSTRAINTS *nc;
	X509 *root, *x = NULL;
	X509_REQ *req;
	_cleanup_free_ char *subj = NULL, *issuer = NULL;
	const ASN1_OCTET_STRING *ski, *akid;

	fake_token_init(&root_tok, &root_signer);
	fake_token_init(&sub_tok, &sub_signer);
	root = make_root(&root_tok, &root_signer, 3650);
	req = make_csr(&sub_tok, &sub_signer, "CN=Test Issuing,O=Test");
	ck_assert_int_eq(X509_REQ_verify(req, sub_tok.key), 1);

	ck_assert_msg(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err) == 0, "%s",
		      err.msg);
	subj = name_str(X509_get_subject_name(x));
	issuer = name_str(X509_get_issuer_name(x));
	ck_assert_str_eq(subj, "CN=Test Issuing,O=Test");
	ck_assert_str_eq(issuer, "CN=Test Root,O=Test");
	ck_assert_int_eq(EVP_PKEY_eq(X509_get0_pubkey(x), sub_tok.key), 1);
	ck_assert_int_eq(X509_verify(x, root_tok.key), 1);
	ck_assert_int_eq(ch_cert_verify(x, NULL, root, &err), 0);
	ck_assert_int_eq(X509_check_ca(x), 1);
	assert_ext(x, NID_basic_constraints, 1);
	assert_ext(x, NID_key_usage, 1);
	assert_ext(x, NID_name_constraints, 1);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	ck_assert_ptr_nonnull(bc);
	ck_assert_ptr_nonnull(bc->pathlen);
	ck_assert_int_eq(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	nc = X509_get_ext_d2i(x, NID_name_constraints, NULL, NULL);
	ck_assert_ptr_nonnull(nc);
	ck_assert_int_eq(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 2);
	ck_assert_ptr_null(nc->excludedSubtrees);
	for (int i = 0; i < 2; i++) {
		GENERAL_NAME *gn = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;

		ck_assert_int_eq(gn->type, GEN_DNS);
		ck_assert_str_eq((const char *)ASN1_STRING_get0_data(gn->d.dNSName), dns[i]);
	}
	NAME_CONSTRAINTS_free(nc);
	/* AKI is the root's SKI. */
	ski = X509_get0_subject_key_id(root);
	akid = X509_get0_authority_key_id(x);
	ck_assert_ptr_nonnull(ski);
	ck_assert_ptr_nonnull(akid);
	ck_assert_int_eq(ASN1_OCTET_STRING_cmp(ski, akid), 0);

	/* Leaves signed with the intermediate's key verify inside the constraint only. */
	{
		static const struct {
			const char *name;
			int ok;
		} leaves[] = {
			{ "www.example.com", 1 },
			{ "example.net", 1 },
			{ "www.example.org", 0 },
			{ "badexample.com", 0 },
		};
		struct ch_localca *ca = NULL;
		STACK_OF(X509) *chain = sk_X509_new_null();

		ck_assert_int_eq(sk_X509_push(chain, x), 1);
		ck_assert_int_eq(ch_localca_new_signer(x, &sub_signer, &ca, &err), 0);
		for (size_t i = 0; i < ARRAY_SIZE(leaves); i++) {
			X509 *leaf = NULL;
			EVP_PKEY *key = EVP_EC_gen("P-256");
			int r;

			ck_assert_msg(ch_localca_issue(ca, key, (char *[]){ (char *)leaves[i].name,
									   NULL },
						       NULL, 86400, 0, &leaf, &err) == 0,
				      "%s", err.msg);
			r = ch_cert_verify(leaf, chain, root, &err);
			ck_assert_msg(leaves[i].ok ? r == 0 : r < 0, "%s: %d %s", leaves[i].name, r,
				      err.msg);
			ERR_clear_error();
			X509_free(leaf);
			EVP_PKEY_free(key);
		}
		sk_X509_free(chain);
		ch_localca_free(ca);
	}
	X509_free(x);
	x = NULL;

	/* No path length, no name constraints. */
	opts = (struct ch_ceremony_sub){ .days = 30, .path_len = -1 };
	ck_assert_msg(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err) == 0, "%s",
		      err.msg);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	ck_assert_ptr_null(bc->pathlen);
	BASIC_CONSTRAINTS_free(bc);
	ck_assert_int_lt(X509_get_ext_by_NID(x, NID_name_constraints, -1), 0);
	X509_free(x);

	X509_REQ_free(req);
	X509_free(root);
	EVP_PKEY_free(root_tok.key);
	EVP_PKEY_free(sub_tok.key);
}
END_TEST

START_TEST(test_intermediate_capped)
{
	struct fake_token root_tok, sub_tok;
	struct ch_signer root_signer, sub_signer;
	struct ch_err err = { "" };
	struct ch_ceremony_sub opts = { .days = 3650, .path_len = 1 };
	X509 *root, *x = NULL;
	X509_REQ *req;

	fake_token_init(&root_tok, &root_signer);
	fake_token_init(&sub_tok, &sub_signer);
	root = make_root(&root_tok, &root_signer, 100);
	req = make_csr(&sub_tok, &sub_signer, "CN=Test Issuing");
	ck_assert_msg(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err) == 0, "%s",
		      err.msg);
	ck_assert_int_eq(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(root)), 0);
	X509_free(x);
	X509_REQ_free(req);
	X509_free(root);
	EVP_PKEY_free(root_tok.key);
	EVP_PKEY_free(sub_tok.key);
}
END_TEST

START_TEST(test_intermediate_refused)
{
	struct fake_token root_tok, sub_tok;
	struct ch_signer root_signer, sub_signer;
	struct ch_err err = { "" };
	char *bad_dns[] = { "exa mple.com", NULL };
	char *empty_dns[] = { "", NULL };
	struct ch_ceremony_sub opts = { .days = 30, .path_len = 0 };
	X509 *root, *x = NULL;
	X509_REQ *req, *tampered;
	const ASN1_BIT_STRING *sig;
	unsigned calls;

	fake_token_init(&root_tok, &root_signer);
	fake_token_init(&sub_tok, &sub_signer);
	root = make_root(&root_tok, &root_signer, 365);
	req = make_csr(&sub_tok, &sub_signer, "CN=Test Issuing");
	calls = root_tok.calls;

	/* A request whose signature does not verify: the token is not asked. */
	tampered = X509_REQ_dup(req);
	X509_REQ_get0_signature(tampered, &sig, NULL);
	sig->data[sig->length - 2] ^= 0x01;
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &root_signer, tampered, &opts, &x, &err),
			 -EBADMSG);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not verify"));
	X509_REQ_free(tampered);

	/* Bad options. */
	opts.path_len = 17;
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err), -EINVAL);
	opts.path_len = 0;
	opts.days = 0;
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err), -EINVAL);
	opts.days = 30;
	opts.permitted_dns = bad_dns;
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "exa mple.com"));
	opts.permitted_dns = empty_dns;
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err), -EINVAL);
	opts.permitted_dns = NULL;
	ck_assert_int_eq(root_tok.calls, calls);

	/* The signer is the intermediate's key, not the root's. */
	ck_assert_int_eq(ch_ceremony_sign_sub(root, &sub_signer, req, &opts, &x, &err),
			 -EKEYREJECTED);
	ck_assert_ptr_nonnull(strstr(err.msg, "does not belong to the root"));

	/* A "root" that is not a CA certificate. */
	ck_assert_msg(ch_ceremony_sign_sub(root, &root_signer, req, &opts, &x, &err) == 0, "%s",
		      err.msg);
	{
		X509 *leafish = NULL;
		struct ch_localca *ca = NULL;

		ck_assert_int_eq(ch_localca_new_signer(root, &root_signer, &ca, &err), 0);
		ck_assert_int_eq(ch_localca_issue(ca, sub_tok.key, (char *[]){ "a.test", NULL },
						  NULL, 86400, 0, &leafish, &err),
				 0);
		X509_free(x);
		x = NULL;
		ck_assert_int_eq(ch_ceremony_sign_sub(leafish, &root_signer, req, &opts, &x, &err),
				 -EINVAL);
		X509_free(leafish);
		ch_localca_free(ca);
	}
	ck_assert_ptr_null(x);
	ck_assert_int_eq(ERR_peek_error(), 0);
	X509_REQ_free(req);
	X509_free(root);
	EVP_PKEY_free(root_tok.key);
	EVP_PKEY_free(sub_tok.key);
}
END_TEST

static Suite *
ceremony_suite(void)
{
	Suite *s = suite_create("ceremony");
	TCase *tc = tcase_create("ceremony");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_parse_subject);
	tcase_add_test(tc, test_root);
	tcase_add_test(tc, test_root_wrong_key);
	tcase_add_test(tc, test_intermediate);
	tcase_add_test(tc, test_intermediate_capped);
	tcase_add_test(tc, test_intermediate_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ceremony_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
