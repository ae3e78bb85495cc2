/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for PKCS#11 keys (src/lib/pkcs11.c) and the "pkcs11" CA
 * backend (src/ca/ca-pkcs11.c) against a real SoftHSM2 token, initialised
 * per test in a temporary directory (SOFTHSM2_CONF). Keys must stay in the
 * token, leaves must verify (X509_verify and `openssl verify`), a wrong PIN
 * must be reported without the PIN, and a lost session must come back.
 * Skips (TAP "1..0 # SKIP") only when SoftHSM2 is not installed.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "certherd/ca.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/pkcs11.h"

#define TOKEN_LABEL "certherd-test"
#define USER_PIN "pin-4711-do-not-log"
#define SO_PIN "so-pin-0815"
#define WRONG_PIN "wrong-pin-9321"

static const char *module_path;
static char tmpdir[64];

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
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
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static int
run(const char *cmd)
{
	int st = system(cmd);

	ck_assert_int_ne(st, -1);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A fresh SoftHSM2 token store with one initialised token, and a PIN file. */
static void
token_setup(void)
{
	_cleanup_free_ char *conf = NULL, *tokens = NULL, *text = NULL, *cmd = NULL,
			    *pin = NULL;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-pkcs11.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	conf = tmp_path("softhsm2.conf");
	tokens = tmp_path("tokens");
	ck_assert_int_eq(mkdir(tokens, 0700), 0);
	ck_assert_int_ge(asprintf(&text,
				  "directories.tokendir = %s\nobjectstore.backend = file\n"
				  "log.level = ERROR\nslots.removable = false\n",
				  tokens),
			 0);
	write_text(conf, text, 0600);
	ck_assert_int_eq(setenv("SOFTHSM2_CONF", conf, 1), 0);
	ck_assert_int_ge(asprintf(&cmd,
				  "softhsm2-util --init-token --free --label " TOKEN_LABEL
				  " --pin " USER_PIN " --so-pin " SO_PIN " >/dev/null"),
			 0);
	ck_assert_int_eq(run(cmd), 0);
	pin = tmp_path("pin");
	write_text(pin, USER_PIN "\n", 0600);
}

static void
token_teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A handle on the test token with key label, PIN from the file. */
static struct ch_p11 *
p11_open(const char *label, bool pss)
{
	_cleanup_free_ char *pin = tmp_path("pin");
	struct ch_p11_config cfg = {
		.module = module_path,
		.token_label = TOKEN_LABEL,
		.key_label = label,
		.pin_file = pin,
		.rsa_pss = pss,
	};
	struct ch_err err = { "" };
	struct ch_p11 *p = NULL;

	ck_assert_msg(ch_p11_new(&cfg, &p, &err) == 0, "%s", err.msg);
	return p;
}

static CK_BBOOL
get_bool(struct ch_p11 *p, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = 0xaa;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };

	ck_assert_int_eq(ch_p11_functions(p)->C_GetAttributeValue(ch_p11_session(p), ch_p11_key(p),
								    &a, 1),
			 CKR_OK);
	return v;
}

START_TEST(test_keys_stay_in_token)
{
	static const struct {
		enum ch_key_type type;
		const char *label;
		CK_ATTRIBUTE_TYPE secret;
	} cases[] = {
		{ CH_KEY_ECDSA_P256, "gen-p256", CKA_VALUE },
		{ CH_KEY_ECDSA_P384, "gen-p384", CKA_VALUE },
		{ CH_KEY_RSA_2048, "gen-rsa2048", CKA_PRIVATE_EXPONENT },
		{ CH_KEY_RSA_3072, "gen-rsa3072", CKA_PRIVATE_EXPONENT },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ch_p11 *p = p11_open(cases[i].label, false), *again;
		struct ch_err err = { "" };
		unsigned char buf[1024];
		CK_ATTRIBUTE a = { cases[i].secret, buf, sizeof(buf) };
		EVP_PKEY *pub = NULL, *pub2 = NULL;
		CK_RV rv;

		/* Nothing there yet. */
		ck_assert_int_eq(ch_p11_find_key(p, NULL, &err), -ENOKEY);
		ck_assert_msg(strstr(err.msg, cases[i].label), "%s", err.msg);
		ck_assert_msg(ch_p11_generate_key(p, cases[i].type, &pub, &err) == 0, "%s",
			      err.msg);
		ck_assert_ptr_nonnull(pub);

		rv = ch_p11_functions(p)->C_GetAttributeValue(ch_p11_session(p), ch_p11_key(p),
							      &a, 1);
		ck_assert_msg(rv == CKR_ATTRIBUTE_SENSITIVE, "%s: reading the secret gave %s",
			      cases[i].label, ch_p11_rv_string(rv));
		ck_assert_int_eq(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
		ck_assert_int_eq(get_bool(p, CKA_EXTRACTABLE), CK_FALSE);
		ck_assert_int_eq(get_bool(p, CKA_SENSITIVE), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_NEVER_EXTRACTABLE), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_ALWAYS_SENSITIVE), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_TOKEN), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_PRIVATE), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_SIGN), CK_TRUE);
		ck_assert_int_eq(get_bool(p, CKA_DECRYPT), CK_FALSE);

		/* On the token: another handle finds it with the same public key. */
		again = p11_open(cases[i].label, false);
		ck_assert_msg(ch_p11_find_key(again, &pub2, &err) == 0, "%s", err.msg);
		ck_assert_int_eq(EVP_PKEY_eq(pub, pub2), 1);
		ch_p11_free(again);
		EVP_PKEY_free(pub);
		EVP_PKEY_free(pub2);
		ch_p11_free(p);
	}
}
END_TEST

/* A CA on a fresh token key; returns the CA, its certificate file and handle. */
static struct ch_localca *
token_ca(const char *label, enum ch_key_type type, bool pss, struct ch_p11 **ret_p,
	 X509 **ret_cert)
{
	struct ch_p11 *p = p11_open(label, pss);
	struct ch_err err = { "" };
	struct ch_signer signer;
	struct ch_localca *ca = NULL;
	EVP_PKEY *pub = NULL;
	X509 *cert = NULL;

	ck_assert_msg(ch_p11_generate_key(p, type, &pub, &err) == 0, "%s", err.msg);
	ck_assert_msg(ch_p11_signer(p, &signer, &err) == 0, "%s", err.msg);
	ck_assert_msg(ch_localca_make_root_signer(pub, &signer, "Token CA", 86400, &cert, &err) ==
			      0,
		      "%s", err.msg);
	ck_assert_int_eq(X509_verify(cert, pub), 1);
	ck_assert_msg(ch_localca_new_signer(cert, &signer, &ca, &err) == 0, "%s", err.msg);
	ck_assert_msg(ch_localca_self_test(ca, &err) == 0, "%s", err.msg);
	EVP_PKEY_free(pub);
	*ret_p = p;
	*ret_cert = cert;
	return ca;
}

static void
write_cert(const char *path, X509 *x)
{
	char *pem = NULL;

	ck_assert_int_eq(ch_cert_to_pem(x, &pem), 0);
	write_text(path, pem, 0644);
	free(pem);
}

static int
openssl_verify(const char *ca_path, const char *leaf_path)
{
	_cleanup_free_ char *cmd = NULL;

	ck_assert_int_ge(asprintf(&cmd, "openssl verify -CAfile '%s' '%s' >/dev/null 2>&1",
				  ca_path, leaf_path),
			 0);
	return run(cmd);
}

START_TEST(test_leaves_verify)
{
	static const struct {
		enum ch_key_type type;
		bool pss;
		int sig_nid;
	} cases[] = {
		{ CH_KEY_ECDSA_P256, false, NID_ecdsa_with_SHA256 },
		{ CH_KEY_ECDSA_P384, false, NID_ecdsa_with_SHA384 },
		{ CH_KEY_RSA_2048, false, NID_sha256WithRSAEncryption },
		{ CH_KEY_RSA_2048, true, NID_rsassaPss },
	};
	char *const dns[] = { "www.example.test", "api.example.test", NULL };
	char *const ip[] = { "192.0.2.7", NULL };
	_cleanup_free_ char *ca_path = tmp_path("ca.pem"), *leaf_path = tmp_path("leaf.pem"),
			    *bad_path = tmp_path("bad.pem");
	struct ch_err err = { "" };
	EVP_PKEY *leaf_key = NULL;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &leaf_key, &err), 0);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char label[32];
		struct ch_p11 *p;
		X509 *cert, *leaf = NULL;
		struct ch_localca *ca;
		const ASN1_BIT_STRING *sig;
		const X509_ALGOR *alg;

		snprintf(label, sizeof(label), "ca-%zu", i);
		ca = token_ca(label, cases[i].type, cases[i].pss, &p, &cert);
		ck_assert_int_eq(X509_get_signature_nid(cert), cases[i].sig_nid);
		ck_assert_msg(ch_localca_issue(ca, leaf_key, dns, ip, 3600, 60, &leaf, &err) == 0,
			      "%s", err.msg);
		ck_assert_int_eq(X509_get_signature_nid(leaf), cases[i].sig_nid);
		ck_assert_int_eq(X509_verify(leaf, X509_get0_pubkey(cert)), 1);
		ck_assert_msg(ch_cert_verify(leaf, NULL, cert, &err) == 0, "%s", err.msg);
		write_cert(ca_path, cert);
		write_cert(leaf_path, leaf);
		ck_assert_msg(openssl_verify(ca_path, leaf_path) == 0,
			      "openssl verify failed for case %zu", i);

		/* The checks can fail: one flipped signature bit is caught by both. */
		X509_get0_signature(&sig, &alg, leaf);
		((ASN1_BIT_STRING *)sig)->data[sig->length / 2] ^= 0x01;
		ck_assert_int_ne(X509_verify(leaf, X509_get0_pubkey(cert)), 1);
		write_cert(bad_path, leaf);
		ck_assert_int_ne(openssl_verify(ca_path, bad_path), 0);

		X509_free(leaf);
		X509_free(cert);
		ch_localca_free(ca);
		ch_p11_free(p);
	}
	EVP_PKEY_free(leaf_key);
}
END_TEST

START_TEST(test_self_test_catches_wrong_key)
{
	struct ch_p11 *p1, *p2;
	X509 *cert1, *cert2;
	struct ch_localca *ca1 = token_ca("one", CH_KEY_ECDSA_P256, false, &p1, &cert1);
	struct ch_localca *ca2 = token_ca("two", CH_KEY_ECDSA_P256, false, &p2, &cert2);
	struct ch_localca *mixed = NULL;
	struct ch_signer signer;
	struct ch_err err = { "" };

	/* Certificate of key one, signatures by key two. */
	ck_assert_int_eq(ch_p11_signer(p2, &signer, &err), 0);
	ck_assert_int_eq(ch_localca_new_signer(cert1, &signer, &mixed, &err), 0);
	ck_assert_int_eq(ch_localca_self_test(mixed, &err), -EKEYREJECTED);
	ck_assert_msg(strstr(err.msg, "does not belong"), "%s", err.msg);
	ch_localca_free(mixed);
	ch_localca_free(ca1);
	ch_localca_free(ca2);
	X509_free(cert1);
	X509_free(cert2);
	ch_p11_free(p1);
	ch_p11_free(p2);
}
END_TEST

START_TEST(test_pin_errors)
{
	_cleanup_free_ char *pin = tmp_path("pin"), *bad = tmp_path("badpin");
	struct ch_p11_config cfg = {
		.module = module_path,
		.token_label = TOKEN_LABEL,
		.key_label = "k",
		.pin_file = bad,
	};
	struct ch_err err = { "" };
	struct ch_p11 *p = NULL;

	/* Wrong PIN: EACCES, the message says which, and holds no PIN. */
	write_text(bad, WRONG_PIN "\n", 0600);
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -EACCES);
	ck_assert_msg(strstr(err.msg, "refused the PIN") && strstr(err.msg, bad) &&
			      strstr(err.msg, "CKR_PIN_INCORRECT"),
		      "%s", err.msg);
	ck_assert_ptr_null(strstr(err.msg, WRONG_PIN));
	ck_assert_ptr_null(strstr(err.msg, USER_PIN));
	/* The same PIN is not offered to the token again. */
	ck_assert_int_eq(ch_p11_connect(p, &err), -EACCES);
	ck_assert_msg(strstr(err.msg, "not trying it again"), "%s", err.msg);
	ck_assert_ptr_null(strstr(err.msg, WRONG_PIN));
	/* Once the file changes, the new PIN is tried and works. */
	write_text(bad, USER_PIN "\n", 0600);
	ck_assert_msg(ch_p11_connect(p, &err) == 0, "%s", err.msg);
	ch_p11_free(p);

	/* A PIN file others can read is refused before it is read. */
	write_text(bad, USER_PIN "\n", 0644);
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -EPERM);
	ck_assert_msg(strstr(err.msg, "group or others") && strstr(err.msg, "0644"), "%s",
		      err.msg);
	ck_assert_ptr_null(strstr(err.msg, USER_PIN));
	ch_p11_free(p);

	/* Missing PIN file. */
	ck_assert_int_eq(unlink(bad), 0);
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -ENOENT);
	ch_p11_free(p);

	/* PIN from the environment. */
	cfg.pin_file = NULL;
	cfg.pin_env = "CH_TEST_PKCS11_PIN";
	unsetenv("CH_TEST_PKCS11_PIN");
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -ENOENT);
	ck_assert_msg(strstr(err.msg, "CH_TEST_PKCS11_PIN"), "%s", err.msg);
	ck_assert_int_eq(setenv("CH_TEST_PKCS11_PIN", USER_PIN, 1), 0);
	ck_assert_msg(ch_p11_connect(p, &err) == 0, "%s", err.msg);
	ch_p11_free(p);
	unsetenv("CH_TEST_PKCS11_PIN");

	/* Neither or both PIN sources: refused at once. */
	cfg.pin_env = NULL;
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), -EINVAL);
	cfg.pin_env = "X";
	cfg.pin_file = pin;
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), -EINVAL);
}
END_TEST

START_TEST(test_unreachable)
{
	_cleanup_free_ char *pin = tmp_path("pin");
	struct ch_p11_config cfg = {
		.module = module_path,
		.token_label = "no-such-token",
		.key_label = "k",
		.pin_file = pin,
	};
	struct ch_err err = { "" };
	struct ch_p11 *p = NULL;

	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -ENODEV);
	ck_assert_msg(strstr(err.msg, "no-such-token") && strstr(err.msg, "not found"), "%s",
		      err.msg);
	ch_p11_free(p);

	cfg.token_label = NULL;
	cfg.token_serial = "0000000000000000";
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -ENODEV);
	ck_assert_msg(strstr(err.msg, "serial"), "%s", err.msg);
	ch_p11_free(p);

	cfg.token_label = TOKEN_LABEL;
	cfg.token_serial = NULL;
	cfg.module = "/nonexistent/libnothing.so";
	ck_assert_int_eq(ch_p11_new(&cfg, &p, &err), 0);
	ck_assert_int_eq(ch_p11_connect(p, &err), -ELIBACC);
	ck_assert_msg(strstr(err.msg, "/nonexistent/libnothing.so"), "%s", err.msg);
	ch_p11_free(p);
}
END_TEST

START_TEST(test_reconnect)
{
	char *const dns[] = { "again.example.test", NULL };
	struct ch_err err = { "" };
	EVP_PKEY *leaf_key = NULL;
	struct ch_p11 *p;
	X509 *cert, *leaf = NULL;
	struct ch_localca *ca = token_ca("re", CH_KEY_ECDSA_P256, false, &p, &cert);
	CK_FUNCTION_LIST *f = ch_p11_functions(p);
	uint64_t n0 = ch_p11_connections(p);

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &leaf_key, &err), 0);

	/* Every session of the token closed behind our back. */
	ck_assert_int_eq(f->C_CloseAllSessions(ch_p11_slot(p)), CKR_OK);
	ck_assert_msg(ch_localca_issue(ca, leaf_key, dns, NULL, 3600, 0, &leaf, &err) == 0, "%s",
		      err.msg);
	ck_assert_int_eq(X509_verify(leaf, X509_get0_pubkey(cert)), 1);
	ck_assert_uint_eq(ch_p11_connections(p), n0 + 1);
	X509_free(leaf);
	leaf = NULL;

	/* The whole module finalised behind our back. */
	ck_assert_int_eq(f->C_Finalize(NULL), CKR_OK);
	ck_assert_msg(ch_localca_issue(ca, leaf_key, dns, NULL, 3600, 0, &leaf, &err) == 0, "%s",
		      err.msg);
	ck_assert_int_eq(X509_verify(leaf, X509_get0_pubkey(cert)), 1);
	ck_assert_uint_eq(ch_p11_connections(p), n0 + 2);
	X509_free(leaf);
	leaf = NULL;

	/* Still the same session afterwards: no reconnect without a cause. */
	ck_assert_int_eq(ch_localca_issue(ca, leaf_key, dns, NULL, 3600, 0, &leaf, &err), 0);
	ck_assert_uint_eq(ch_p11_connections(p), n0 + 2);
	X509_free(leaf);

	EVP_PKEY_free(leaf_key);
	X509_free(cert);
	ch_localca_free(ca);
	ch_p11_free(p);
}
END_TEST

/* The backend, through its ops and key table as the daemon uses it. */
struct issue_ctx {
	int calls;
	enum ch_ca_outcome outcome;
	char *cert_pem;
	char message[1024];
};

static void
issue_done(struct ch_issue_result *res, void *arg)
{
	struct issue_ctx *c = arg;

	c->calls++;
	c->outcome = res->outcome;
	free(c->cert_pem);
	c->cert_pem = res->cert_pem ? strdup(res->cert_pem) : NULL;
	snprintf(c->message, sizeof(c->message), "%s", res->message);
}

static void *
opt_ptr(const struct ch_ca_ops *ops, void *opts, const char *name)
{
	for (const struct ch_conf_key *k = ops->keys; k->name; k++)
		if (streq(k->name, name))
			return (char *)opts + k->offset;
	ck_abort_msg("no option %s", name);
	return NULL;
}

static void
ca_issue(struct ch_ca *ca, struct event_base *base, EVP_PKEY *key, struct issue_ctx *c)
{
	char *const dns[] = { "svc.example.test", NULL };
	struct ch_issue_request req = { .cert_name = "svc", .dns_names = dns, .key = key };

	c->calls = 0;
	ck_assert_int_eq(ca->ops->issue(ca->state, &req, issue_done, c), 0);
	ck_assert_int_eq(c->calls, 0);
	ck_assert_int_ge(event_base_dispatch(base), 0);
	ck_assert_int_eq(c->calls, 1);
}

START_TEST(test_backend)
{
	const struct ch_ca_ops *ops = ch_ca_ops_find("pkcs11");
	struct event_base *base = event_base_new();
	_cleanup_free_ char *pin = tmp_path("pin"), *bad = tmp_path("badpin"),
			    *crt = tmp_path("ca/p11/ca.crt");
	struct ch_conf_ca conf = { .name = "p11", .type = "pkcs11" };
	struct ch_ca_env env = { .base = base, .state_dir = tmpdir };
	struct ch_err err = { "" };
	struct issue_ctx c = { 0 };
	struct ch_ca *ca = NULL;
	EVP_PKEY *key = NULL;
	X509 *root = NULL, *leaf = NULL;
	void *opts;

	ck_assert_ptr_nonnull(ops);
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, &err), 0);
	opts = conf.opts = calloc(1, ops->opts_size);
	conf.ops = ops;
	*(int *)opt_ptr(ops, opts, "key_type") = -1;
	*(char **)opt_ptr(ops, opts, "module") = (char *)module_path;
	*(char **)opt_ptr(ops, opts, "token_label") = TOKEN_LABEL;
	*(char **)opt_ptr(ops, opts, "key_label") = "backend";
	*(char **)opt_ptr(ops, opts, "pin_file") = pin;
	ck_assert_msg(ops->check(opts, &err) == 0, "%s", err.msg);

	/* No key and no create: misconfigured, naming the key. */
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ca_issue(ca, base, key, &c);
	ck_assert_int_eq(c.outcome, CH_CA_MISCONFIGURED);
	ck_assert_msg(strstr(c.message, "key \"backend\""), "%s", c.message);
	ca = ch_ca_free(ca);

	/* create: key and certificate made on first start, leaves verify. */
	*(bool *)opt_ptr(ops, opts, "create") = true;
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(access(crt, R_OK), 0);
	ck_assert_ptr_nonnull(ops->trust_pem(ca->state));
	ck_assert_int_eq(ch_cert_from_pem(ops->trust_pem(ca->state),
					  strlen(ops->trust_pem(ca->state)), &root, &err),
			 0);
	ca_issue(ca, base, key, &c);
	ck_assert_msg(c.outcome == CH_CA_ISSUED, "%s", c.message);
	ck_assert_int_eq(ch_cert_from_pem(c.cert_pem, strlen(c.cert_pem), &leaf, &err), 0);
	ck_assert_msg(ch_cert_verify(leaf, NULL, root, &err) == 0, "%s", err.msg);
	ck_assert(ch_cert_key_match(leaf, key));
	X509_free(leaf);

	/* Sessions lost between two issuances: the next one still works. */
	{
		struct ch_p11 *other = p11_open("backend", false);

		ck_assert_msg(ch_p11_connect(other, &err) == 0, "%s", err.msg);
		ck_assert_int_eq(ch_p11_functions(other)->C_CloseAllSessions(ch_p11_slot(other)),
				 CKR_OK);
		ch_p11_free(other);
	}
	ca_issue(ca, base, key, &c);
	ck_assert_msg(c.outcome == CH_CA_ISSUED, "%s", c.message);
	ca = ch_ca_free(ca);

	/* A second start finds the same key and certificate. */
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(ch_cert_from_pem(ops->trust_pem(ca->state),
					  strlen(ops->trust_pem(ca->state)), &leaf, &err),
			 0);
	ck_assert_int_eq(X509_cmp(leaf, root), 0);
	X509_free(leaf);
	ca = ch_ca_free(ca);

	/* Wrong PIN: the daemon starts, issuance is misconfigured, no PIN in sight. */
	write_text(bad, WRONG_PIN, 0600);
	*(char **)opt_ptr(ops, opts, "pin_file") = bad;
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ca_issue(ca, base, key, &c);
	ck_assert_int_eq(c.outcome, CH_CA_MISCONFIGURED);
	ck_assert_ptr_null(c.cert_pem);
	ck_assert_msg(strstr(c.message, "refused the PIN"), "%s", c.message);
	ck_assert_ptr_null(strstr(c.message, WRONG_PIN));
	ca = ch_ca_free(ca);

	/* No such token: ca-unreachable, naming the token. */
	*(char **)opt_ptr(ops, opts, "pin_file") = pin;
	*(char **)opt_ptr(ops, opts, "token_label") = "gone";
	ck_assert_msg(ch_ca_new(&conf, &env, &ca, &err) == 0, "%s", err.msg);
	ca_issue(ca, base, key, &c);
	ck_assert_int_eq(c.outcome, CH_CA_UNREACHABLE);
	ck_assert_msg(strstr(c.message, "token \"gone\""), "%s", c.message);
	ca = ch_ca_free(ca);

	/* Config checks. */
	*(char **)opt_ptr(ops, opts, "pin_env") = "X";
	ck_assert_int_eq(ops->check(opts, &err), -EINVAL);
	*(char **)opt_ptr(ops, opts, "pin_env") = NULL;
	*(char **)opt_ptr(ops, opts, "key_id") = "zz";
	ck_assert_int_eq(ops->check(opts, &err), -EINVAL);
	*(char **)opt_ptr(ops, opts, "key_id") = "01:02";
	ck_assert_int_eq(ops->check(opts, &err), 0);
	*(int *)opt_ptr(ops, opts, "key_type") = CH_KEY_ED25519;
	ck_assert_int_eq(ops->check(opts, &err), -EINVAL);

	free(c.cert_pem);
	X509_free(root);
	EVP_PKEY_free(key);
	free(opts);
	event_base_free(base);
}
END_TEST

static Suite *
pkcs11_suite(void)
{
	Suite *s = suite_create("pkcs11");
	TCase *tc = tcase_create("pkcs11");

	tcase_add_checked_fixture(tc, token_setup, token_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_keys_stay_in_token);
	tcase_add_test(tc, test_leaves_verify);
	tcase_add_test(tc, test_self_test_catches_wrong_key);
	tcase_add_test(tc, test_pin_errors);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_backend);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	static const char *const modules[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	};
	SRunner *sr;
	int failed;

	module_path = getenv("CH_TEST_PKCS11_MODULE");
	for (size_t i = 0; !module_path && i < ARRAY_SIZE(modules); i++)
		if (access(modules[i], R_OK) == 0)
			module_path = modules[i];
	if (!module_path || system("softhsm2-util --version >/dev/null 2>&1") != 0) {
		printf("1..0 # SKIP SoftHSM2 is not installed (no libsofthsm2.so or "
		       "softhsm2-util; apt install softhsm2)\n");
		return EXIT_SUCCESS;
	}
	sr = srunner_create(pkcs11_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
