/* SPDX-License-Identifier: MIT */
/*
 * ACME building blocks: base64url, JWK thumbprints (RFC 7638's example),
 * JWS signatures that verify, problem documents, Retry-After, Link
 * headers, the finalize CSR and chain splitting.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/acme.h"
#include "certherd/crypto.h"
#include "certherd/jws.h"
#include "certherd/macro.h"

static void
check_b64(const char *in, size_t len, const char *want)
{
	char *out = NULL;
	unsigned char *back = NULL;
	size_t back_len = 0;

	ck_assert_int_eq(ch_b64url_encode(in, len, &out), 0);
	ck_assert_str_eq(out, want);
	ck_assert_int_eq(ch_b64url_decode(out, &back, &back_len), 0);
	ck_assert_uint_eq(back_len, len);
	ck_assert(memcmp(back, in, len) == 0);
	free(out);
	free(back);
}

START_TEST(test_base64url)
{
	unsigned char *b = NULL;
	size_t n;

	/* RFC 4648 §10 vectors, without padding. */
	check_b64("", 0, "");
	check_b64("f", 1, "Zg");
	check_b64("fo", 2, "Zm8");
	check_b64("foo", 3, "Zm9v");
	check_b64("foob", 4, "Zm9vYg");
	check_b64("fooba", 5, "Zm9vYmE");
	check_b64("foobar", 6, "Zm9vYmFy");
	/* The URL-safe alphabet: 0xfb 0xff 0xbf is "-_-_" not "+/+/". */
	check_b64("\xfb\xff\xbf", 3, "-_-_");
	check_b64("\x03\xe0", 2, "A-A");
	/* Padding is accepted on input, invalid characters and lengths are not. */
	ck_assert_int_eq(ch_b64url_decode("Zg==", &b, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(b);
	ck_assert_int_eq(ch_b64url_decode("Zm9v+g", &b, &n), -EINVAL);
	ck_assert_int_eq(ch_b64url_decode("Zm9vY", &b, &n), -EINVAL);
	ck_assert_int_eq(ch_b64url_decode("Zh", &b, &n), -EINVAL); /* non-zero pad bits */
}
END_TEST

/* An RSA public key from base64url n and e. */
static EVP_PKEY *
rsa_from_jwk(const char *n64, const char *e64)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nl, el;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *key = NULL;
	BIGNUM *bn, *be;

	ck_assert_int_eq(ch_b64url_decode(n64, &n, &nl), 0);
	ck_assert_int_eq(ch_b64url_decode(e64, &e, &el), 0);
	bn = BN_bin2bn(n, (int)nl, NULL);
	be = BN_bin2bn(e, (int)el, NULL);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
	params = OSSL_PARAM_BLD_to_param(bld);
	ck_assert_int_eq(EVP_PKEY_fromdata_init(ctx), 1);
	ck_assert_int_eq(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(bn);
	BN_free(be);
	free(n);
	free(e);
	return key;
}

START_TEST(test_thumbprint_rfc7638)
{
	/* RFC 7638 §3.1. */
	static const char n[] =
		"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
		"WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368"
		"QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lF"
		"d2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
	EVP_PKEY *key = rsa_from_jwk(n, "AQAB");
	json_t *jwk = NULL;
	char *tp = NULL;

	ck_assert_int_eq(ch_jwk_from_key(key, &jwk), 0);
	ck_assert_str_eq(json_string_value(json_object_get(jwk, "n")), n);
	ck_assert_str_eq(json_string_value(json_object_get(jwk, "e")), "AQAB");
	ck_assert_str_eq(json_string_value(json_object_get(jwk, "kty")), "RSA");
	ck_assert_int_eq(ch_jwk_thumbprint(key, &tp), 0);
	ck_assert_str_eq(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	ck_assert_str_eq(ch_jws_alg(key), "RS256");
	free(tp);
	json_decref(jwk);
	EVP_PKEY_free(key);
}
END_TEST

static json_t *
b64_json(const char *s)
{
	unsigned char *raw = NULL;
	size_t len;
	json_t *j;

	ck_assert_int_eq(ch_b64url_decode(s, &raw, &len), 0);
	j = json_loadb((const char *)raw, len, 0, NULL);
	free(raw);
	return j;
}

/* Verifies a flattened JWS with key; ES256 signatures are r||s. */
static bool
jws_verifies(EVP_PKEY *key, json_t *jws)
{
	const char *prot = json_string_value(json_object_get(jws, "protected"));
	const char *pay = json_string_value(json_object_get(jws, "payload"));
	unsigned char *sig = NULL, *der = NULL;
	size_t sig_len;
	int der_len;
	char *input = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok;

	ck_assert_int_eq(ch_b64url_decode(json_string_value(json_object_get(jws, "signature")),
					  &sig, &sig_len), 0);
	ck_assert_int_ge(asprintf(&input, "%s.%s", prot, pay), 0);
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
		ECDSA_SIG *es = ECDSA_SIG_new();

		ck_assert_uint_eq(sig_len, 64);
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
		der_len = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
	} else {
		der = OPENSSL_memdup(sig, sig_len);
		der_len = (int)sig_len;
	}
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
	     EVP_DigestVerify(ctx, der, (size_t)der_len, (unsigned char *)input,
			      strlen(input)) == 1;
	/* A flipped bit in the payload must not verify. */
	input[strlen(input) - 1] ^= 1;
	if (ok)
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		     EVP_DigestVerify(ctx, der, (size_t)der_len, (unsigned char *)input,
				      strlen(input)) != 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	free(sig);
	free(input);
	return ok;
}

static void
check_jws(enum ch_key_type type, const char *alg)
{
	EVP_PKEY *key = NULL;
	char *s = NULL;
	json_t *jws, *hdr, *pay;

	ck_assert_int_eq(ch_key_generate(type, &key, NULL), 0);
	ck_assert_str_eq(ch_jws_alg(key), alg);

	/* With the JWK (newAccount). */
	ck_assert_int_eq(ch_jws_sign(key, NULL, "n0nce", "https://ca/new-acct",
				     "{\"termsOfServiceAgreed\":true}", &s), 0);
	jws = json_loads(s, 0, NULL);
	ck_assert_ptr_nonnull(jws);
	hdr = b64_json(json_string_value(json_object_get(jws, "protected")));
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "alg")), alg);
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "nonce")), "n0nce");
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "url")), "https://ca/new-acct");
	ck_assert_ptr_nonnull(json_object_get(hdr, "jwk"));
	ck_assert_ptr_null(json_object_get(hdr, "kid"));
	pay = b64_json(json_string_value(json_object_get(jws, "payload")));
	ck_assert(json_is_true(json_object_get(pay, "termsOfServiceAgreed")));
	ck_assert(jws_verifies(key, jws));
	json_decref(pay);
	json_decref(hdr);
	json_decref(jws);
	free(s);

	/* With the account URL, as POST-as-GET: empty payload. */
	ck_assert_int_eq(ch_jws_sign(key, "https://ca/acct/1", "n2", "https://ca/order/1", NULL,
				     &s), 0);
	jws = json_loads(s, 0, NULL);
	hdr = b64_json(json_string_value(json_object_get(jws, "protected")));
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "kid")), "https://ca/acct/1");
	ck_assert_ptr_null(json_object_get(hdr, "jwk"));
	ck_assert_str_eq(json_string_value(json_object_get(jws, "payload")), "");
	ck_assert(jws_verifies(key, jws));
	json_decref(hdr);
	json_decref(jws);
	free(s);
	EVP_PKEY_free(key);
}

START_TEST(test_jws_es256)
{
	EVP_PKEY *key = NULL;
	json_t *jwk = NULL;
	char *tp = NULL;

	check_jws(CH_KEY_ECDSA_P256, "ES256");
	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, NULL), 0);
	ck_assert_int_eq(ch_jwk_from_key(key, &jwk), 0);
	/* Coordinates are always 32 bytes: 43 base64url characters. */
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(jwk, "x"))), 43);
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(jwk, "y"))), 43);
	ck_assert_str_eq(json_string_value(json_object_get(jwk, "crv")), "P-256");
	ck_assert_int_eq(ch_jwk_thumbprint(key, &tp), 0);
	ck_assert_uint_eq(strlen(tp), 43);
	free(tp);
	json_decref(jwk);
	EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_jws_rs256)
{
	EVP_PKEY *key = NULL;
	char *s = NULL;

	check_jws(CH_KEY_RSA_2048, "RS256");
	/* P-384 and Ed25519 are not account key types here. */
	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P384, &key, NULL), 0);
	ck_assert_ptr_null(ch_jws_alg(key));
	ck_assert_int_eq(ch_jws_sign(key, NULL, "n", "u", NULL, &s), -EOPNOTSUPP);
	EVP_PKEY_free(key);
}
END_TEST

/* The EAB JWS: HS256 over the account's JWK, checked with an independent HMAC. */
START_TEST(test_jws_eab)
{
	static const unsigned char mac_key[] = "0123456789abcdef0123456789abcdef";
	EVP_PKEY *key = NULL;
	json_t *eab = NULL, *hdr, *pay, *jwk = NULL;
	unsigned char mac[32], *sig = NULL;
	unsigned int mac_len = 0;
	size_t sig_len = 0;
	char *input = NULL, *s = NULL;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, NULL), 0);
	ck_assert_int_eq(ch_jws_eab(mac_key, 32, "kid-1", "https://ca/new-acct", key, &eab), 0);
	hdr = b64_json(json_string_value(json_object_get(eab, "protected")));
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "alg")), "HS256");
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "kid")), "kid-1");
	ck_assert_str_eq(json_string_value(json_object_get(hdr, "url")), "https://ca/new-acct");
	ck_assert_ptr_null(json_object_get(hdr, "nonce"));
	pay = b64_json(json_string_value(json_object_get(eab, "payload")));
	ck_assert_int_eq(ch_jwk_from_key(key, &jwk), 0);
	ck_assert(json_equal(pay, jwk));
	ck_assert_int_ge(asprintf(&input, "%s.%s",
				  json_string_value(json_object_get(eab, "protected")),
				  json_string_value(json_object_get(eab, "payload"))), 0);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), mac_key, 32, (unsigned char *)input,
				   strlen(input), mac, &mac_len));
	ck_assert_int_eq(ch_b64url_decode(json_string_value(json_object_get(eab, "signature")),
					  &sig, &sig_len), 0);
	ck_assert_uint_eq(sig_len, 32);
	ck_assert(memcmp(sig, mac, 32) == 0);
	/* Another key gives another MAC. */
	json_decref(eab);
	ck_assert_int_eq(ch_jws_eab((const unsigned char *)"x", 1, "kid-1", "https://ca/new-acct",
				    key, &eab), 0);
	ck_assert_str_ne(json_string_value(json_object_get(eab, "signature")),
			 json_string_value(json_object_get(eab, "payload")));
	free(sig);
	ck_assert_int_eq(ch_b64url_decode(json_string_value(json_object_get(eab, "signature")),
					  &sig, &sig_len), 0);
	ck_assert(memcmp(sig, mac, 32) != 0);

	/* The inner JWS of a keyChange has no nonce. */
	ck_assert_int_eq(ch_jws_sign(key, NULL, NULL, "https://ca/key-change", "{}", &s), 0);
	json_decref(hdr);
	hdr = json_loads(s, 0, NULL);
	json_decref(pay);
	pay = b64_json(json_string_value(json_object_get(hdr, "protected")));
	ck_assert_ptr_null(json_object_get(pay, "nonce"));
	ck_assert_ptr_nonnull(json_object_get(pay, "jwk"));
	ck_assert(jws_verifies(key, hdr));
	free(s);
	free(sig);
	free(input);
	json_decref(jwk);
	json_decref(pay);
	json_decref(hdr);
	json_decref(eab);
	EVP_PKEY_free(key);
}
END_TEST

/* A self-signed certificate with this AKI key identifier and serial, as PEM. */
static char *
cert_with_aki(const unsigned char *kid, int kid_len, long long serial)
{
	X509 *x = X509_new();
	EVP_PKEY *key = NULL;
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem, *data;
	long len;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, NULL), 0);
	akid->keyid = ASN1_OCTET_STRING_new();
	ASN1_OCTET_STRING_set(akid->keyid, kid, kid_len);
	ck_assert(ASN1_INTEGER_set_int64(X509_get_serialNumber(x), serial));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	ck_assert(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0));
	ck_assert(X509_sign(x, key, EVP_sha256()) > 0);
	PEM_write_bio_X509(bio, x);
	len = BIO_get_mem_data(bio, &data);
	pem = strndup(data, (size_t)len);
	BIO_free(bio);
	AUTHORITY_KEYID_free(akid);
	X509_free(x);
	EVP_PKEY_free(key);
	return pem;
}

START_TEST(test_ari)
{
	/* RFC 9773 §4.1's example. */
	static const unsigned char kid[] = { 0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
					     0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4 };
	char *pem = cert_with_aki(kid, sizeof(kid), 0x87654321LL), *id = NULL, *expl = NULL;
	int64_t t, start, end;
	const char *ok = "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
			 "\"end\":\"2025-01-03T04:00:00.123456789Z\"},"
			 "\"explanationURL\":\"https://ca.test/incident\"}";

	ck_assert_int_eq(ch_acme_ari_cert_id(pem, &id), 0);
	ck_assert_str_eq(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	free(id);
	free(pem);
	/* No leading zero when the high bit is clear. */
	pem = cert_with_aki(kid, sizeof(kid), 0x1234);
	ck_assert_int_eq(ch_acme_ari_cert_id(pem, &id), 0);
	ck_assert_str_eq(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.EjQ");
	free(id);
	free(pem);
	ck_assert_int_eq(ch_acme_ari_cert_id("not a certificate", &id), -EBADMSG);

	ck_assert_int_eq(ch_acme_parse_time("2025-01-02T04:00:00Z", &t), 0);
	ck_assert_int_eq(t, 1735790400);
	ck_assert_int_eq(ch_acme_parse_time("2025-01-02T06:30:00.5+02:30", &t), 0);
	ck_assert_int_eq(t, 1735790400);
	ck_assert_int_eq(ch_acme_parse_time("2025-01-02T04:00:00", &t), -EINVAL);
	ck_assert_int_eq(ch_acme_parse_time("2025-01-02T04:00:00Zjunk", &t), -EINVAL);

	ck_assert_int_eq(ch_acme_ari_parse(ok, strlen(ok), &start, &end, &expl), 0);
	ck_assert_int_eq(start, 1735790400);
	ck_assert_int_eq(end, 1735790400 + 86400);
	ck_assert_str_eq(expl, "https://ca.test/incident");
	free(expl);
	/* An end before the start is not a window. */
	ok = "{\"suggestedWindow\":{\"start\":\"2025-01-03T04:00:00Z\",\"end\":\"2025-01-02T04:00:00Z\"}}";
	ck_assert_int_eq(ch_acme_ari_parse(ok, strlen(ok), &start, &end, &expl), -EBADMSG);
	ck_assert_int_eq(ch_acme_ari_parse("{}", 2, &start, &end, &expl), -EBADMSG);
}
END_TEST

START_TEST(test_problem)
{
	static const char doc[] =
		"{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
		"\"detail\":\"Some of the identifiers requested were rejected\",\"status\":400,"
		"\"subproblems\":[{\"type\":\"urn:ietf:params:acme:error:malformed\","
		"\"detail\":\"Invalid underscore in DNS name \\\"_example.org\\\"\","
		"\"identifier\":{\"type\":\"dns\",\"value\":\"_example.org\"}},"
		"{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
		"\"detail\":\"This CA will not issue for \\\"example.net\\\"\","
		"\"identifier\":{\"type\":\"dns\",\"value\":\"example.net\"}}]}";
	struct ch_acme_problem p;

	ck_assert_int_eq(ch_acme_problem_parse(doc, strlen(doc), &p), 0);
	ck_assert_str_eq(p.type, "rejectedIdentifier");
	ck_assert(ch_acme_problem_is(&p, "rejectedIdentifier"));
	ck_assert(!ch_acme_problem_is(&p, "badNonce"));
	ck_assert_int_eq(p.status, 400);
	ck_assert_str_eq(p.message,
			 "rejectedIdentifier: Some of the identifiers requested were rejected; "
			 "dns:_example.org: malformed: Invalid underscore in DNS name "
			 "\"_example.org\"; dns:example.net: rejectedIdentifier: This CA will not "
			 "issue for \"example.net\"");

	/* Pebble's badNonce. */
	static const char bad[] = "{\"type\":\"urn:ietf:params:acme:error:badNonce\","
				  "\"detail\":\"JWS has an invalid anti-replay nonce: \\\"x\\\"\","
				  "\"status\":400}";
	ck_assert_int_eq(ch_acme_problem_parse(bad, strlen(bad), &p), 0);
	ck_assert(ch_acme_problem_is(&p, "badNonce"));
	ck_assert_str_eq(p.message, "badNonce: JWS has an invalid anti-replay nonce: \"x\"");

	/* A non-ACME type stays whole; no detail is fine. */
	static const char other[] = "{\"type\":\"about:blank\"}";
	ck_assert_int_eq(ch_acme_problem_parse(other, strlen(other), &p), 0);
	ck_assert_str_eq(p.type, "about:blank");
	ck_assert_str_eq(p.message, "about:blank");

	/* Not problem documents. */
	ck_assert_int_eq(ch_acme_problem_parse("<html>502</html>", 16, &p), -EBADMSG);
	ck_assert_int_eq(ch_acme_problem_parse("{\"detail\":\"x\"}", 14, &p), -EBADMSG);
	ck_assert_int_eq(ch_acme_problem_parse("[1]", 3, &p), -EBADMSG);

	/* A huge detail is cut, not overflowed. */
	{
		static char big[5000];

		snprintf(big, sizeof(big),
			 "{\"type\":\"urn:ietf:params:acme:error:serverInternal\",\"detail\":\"%0*d\"}",
			 3000, 0);
		ck_assert_int_eq(ch_acme_problem_parse(big, strlen(big), &p), 0);
		ck_assert_uint_eq(strlen(p.message), sizeof(p.message) - 1);
	}
}
END_TEST

static json_t *
jparse(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	ck_assert_ptr_nonnull(j);
	return j;
}

START_TEST(test_order_next)
{
	static const char *const url = "https://ca.test/order/1";
	struct ch_acme_order_next n;
	json_t *o;

	o = jparse("{\"status\":\"pending\",\"authorizations\":[\"https://ca.test/a/1\","
		   "\"https://ca.test/a/2\"],\"finalize\":\"https://ca.test/f\"}");
	ch_acme_order_next(o, url, &n);
	ck_assert_int_eq(n.step, CH_ACME_ORDER_AUTHORIZE);
	ck_assert_uint_eq(json_array_size(n.authzs), 2);
	json_decref(o);

	o = jparse("{\"status\":\"ready\",\"finalize\":\"https://ca.test/f\"}");
	ch_acme_order_next(o, url, &n);
	ck_assert_int_eq(n.step, CH_ACME_ORDER_FINALIZE);
	ck_assert_str_eq(n.url, "https://ca.test/f");
	json_decref(o);

	o = jparse("{\"status\":\"processing\"}");
	ch_acme_order_next(o, url, &n);
	ck_assert_int_eq(n.step, CH_ACME_ORDER_WAIT);
	json_decref(o);

	o = jparse("{\"status\":\"valid\",\"certificate\":\"https://ca.test/c\"}");
	ch_acme_order_next(o, url, &n);
	ck_assert_int_eq(n.step, CH_ACME_ORDER_DOWNLOAD);
	ck_assert_str_eq(n.url, "https://ca.test/c");
	json_decref(o);

	/* What a broken or hostile CA may send ends the order with a reason. */
	static const struct {
		const char *doc, *msg;
	} bad[] = {
		{ "{}", "order https://ca.test/order/1 has no status" },
		{ "{\"status\":1}", "order https://ca.test/order/1 has no status" },
		{ "{\"status\":\"pending\"}",
		  "order https://ca.test/order/1 lists no authorizations" },
		{ "{\"status\":\"pending\",\"authorizations\":[]}",
		  "order https://ca.test/order/1 lists no authorizations" },
		{ "{\"status\":\"pending\",\"authorizations\":[\"https://a\",{}]}",
		  "order https://ca.test/order/1 lists an authorization that is not a URL" },
		{ "{\"status\":\"ready\",\"finalize\":7}",
		  "order https://ca.test/order/1 has no finalize URL" },
		{ "{\"status\":\"valid\"}", "valid order https://ca.test/order/1 has no certificate URL" },
		{ "{\"status\":\"invalid\",\"error\":{\"type\":\"urn:ietf:params:acme:error:"
		  "unauthorized\",\"detail\":\"no\"}}",
		  "order https://ca.test/order/1 is invalid: unauthorized: no" },
		{ "{\"status\":\"expired\"}", "order https://ca.test/order/1 is expired" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		o = jparse(bad[i].doc);
		ch_acme_order_next(o, url, &n);
		ck_assert_int_eq(n.step, CH_ACME_ORDER_FAILED);
		ck_assert_str_eq(n.message, bad[i].msg);
		json_decref(o);
	}
	/* Not even an object. */
	o = jparse("[1,2]");
	ch_acme_order_next(o, url, &n);
	ck_assert_int_eq(n.step, CH_ACME_ORDER_FAILED);
	json_decref(o);

	/* Identifier sets compare regardless of order and case. */
	{
		json_t *a = jparse("[{\"type\":\"dns\",\"value\":\"B.test\"},"
				   "{\"type\":\"ip\",\"value\":\"127.0.0.1\"}]");
		json_t *b = jparse("[{\"type\":\"ip\",\"value\":\"127.0.0.1\"},"
				   "{\"type\":\"dns\",\"value\":\"b.test\"}]");
		char *ka = ch_acme_identifiers_key(a), *kb = ch_acme_identifiers_key(b);

		ck_assert_str_eq(ka, "dns:B.test ip:127.0.0.1 ");
		ck_assert_int_eq(strcasecmp(ka, kb), 0);
		free(ka);
		free(kb);
		ka = ch_acme_identifiers_key(NULL);
		ck_assert_str_eq(ka, "");
		free(ka);
		json_decref(a);
		json_decref(b);
	}
}
END_TEST

START_TEST(test_authz_parse)
{
	struct ch_acme_authz az;
	json_t *a;

	a = jparse("{\"identifier\":{\"type\":\"dns\",\"value\":\"www.test\"},\"status\":\"pending\","
		   "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.test/c/1\","
		   "\"status\":\"pending\",\"token\":\"DGyRejmCefe7v4NfDGDKfA\"},"
		   "{\"type\":\"dns-01\",\"url\":\"https://ca.test/c/2\",\"status\":\"invalid\","
		   "\"token\":\"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA\",\"error\":{\"type\":"
		   "\"urn:ietf:params:acme:error:dns\",\"detail\":\"NXDOMAIN\"}}]}");
	ch_acme_authz_parse(a, "http-01", &az);
	ck_assert_str_eq(az.ident, "dns:www.test");
	ck_assert_str_eq(az.value, "www.test");
	ck_assert_str_eq(az.status, "pending");
	ck_assert(az.has_challenge);
	ck_assert_str_eq(az.chall_status, "pending");
	ck_assert_str_eq(az.token, "DGyRejmCefe7v4NfDGDKfA");
	ck_assert_str_eq(az.url, "https://ca.test/c/1");
	ck_assert(!az.has_error);
	ch_acme_authz_parse(a, "dns-01", &az);
	ck_assert_str_eq(az.url, "https://ca.test/c/2");
	ck_assert_str_eq(az.chall_status, "invalid");
	ck_assert(az.has_error);
	ck_assert_str_eq(az.error.message, "dns: NXDOMAIN");
	ch_acme_authz_parse(a, "tls-alpn-01", &az);
	ck_assert(!az.has_challenge);
	ck_assert_ptr_null(az.url);
	ck_assert_ptr_null(az.token);
	json_decref(a);

	/* A token that is not base64url, or too short to be random, is not used. */
	static const char *const tokens[] = { "../../etc/passwd.xxxxxxxxxxxxxxxx", "short",
					      "DGyRejmCefe7v4NfDGDKfA\n", "DGyRejmC efe7v4NfDGDKfA" };
	for (size_t i = 0; i < ARRAY_SIZE(tokens); i++) {
		json_t *c = json_pack("{s:s,s:[{s:s,s:s,s:s,s:s}]}", "status", "pending",
				      "challenges", "type", "http-01", "url", "https://ca.test/c",
				      "status", "pending", "token", tokens[i]);

		ck_assert_ptr_nonnull(c);
		ch_acme_authz_parse(c, "http-01", &az);
		ck_assert(az.has_challenge);
		ck_assert_ptr_null(az.token);
		ck_assert_str_eq(az.ident, "?:?");
		ck_assert_str_eq(az.value, "");
		json_decref(c);
	}

	/* Nothing usable at all. */
	a = jparse("[]");
	ch_acme_authz_parse(a, "http-01", &az);
	ck_assert_str_eq(az.status, "?");
	ck_assert_str_eq(az.chall_status, "?");
	ck_assert(!az.has_challenge);
	json_decref(a);
}
END_TEST

START_TEST(test_retry_after)
{
	int64_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */

	ck_assert_int_eq(ch_acme_retry_after("120", now), 120);
	ck_assert_int_eq(ch_acme_retry_after(" 0 ", now), 0);
	ck_assert_int_eq(ch_acme_retry_after("Wed, 21 Oct 2015 07:38:00 GMT", now), 600);
	ck_assert_int_eq(ch_acme_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), 0);
	ck_assert_int_eq(ch_acme_retry_after("soon", now), -EINVAL);
	ck_assert_int_eq(ch_acme_retry_after("12x", now), -EINVAL);
	ck_assert_int_eq(ch_acme_retry_after(NULL, now), -EINVAL);
}
END_TEST

START_TEST(test_links)
{
	char *values[] = {
		"<https://ca/cert/1/alt/1>;rel=\"alternate\", <https://ca/dir>;rel=\"index\"",
		"<https://ca/cert/1/alt/2> ; rel=alternate",
		"<https://ca/issuer>;title=\"a, b\";rel=\"up\"",
		NULL,
	};
	char **v = NULL;

	ck_assert_int_eq(ch_acme_links(values, "alternate", &v), 0);
	ck_assert_uint_eq(ch_strv_length(v), 2);
	ck_assert_str_eq(v[0], "https://ca/cert/1/alt/1");
	ck_assert_str_eq(v[1], "https://ca/cert/1/alt/2");
	ch_strv_free(v);
	ck_assert_int_eq(ch_acme_links(values, "up", &v), 0);
	ck_assert_uint_eq(ch_strv_length(v), 1);
	ck_assert_str_eq(v[0], "https://ca/issuer");
	ch_strv_free(v);
	ck_assert_int_eq(ch_acme_links(values, "next", &v), 0);
	ck_assert_uint_eq(ch_strv_length(v), 0);
	ch_strv_free(v);
}
END_TEST

START_TEST(test_csr)
{
	char *dns[] = { "a.test", "b.test", NULL }, *ip[] = { "127.0.0.1", "::1", NULL };
	EVP_PKEY *key = NULL;
	char *b64 = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t len;
	X509_REQ *req;
	STACK_OF(X509_EXTENSION) *exts;
	GENERAL_NAMES *names;

	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &key, NULL), 0);
	ck_assert_int_eq(ch_acme_csr(key, dns, ip, &b64), 0);
	ck_assert_int_eq(ch_b64url_decode(b64, &der, &len), 0);
	p = der;
	req = d2i_X509_REQ(NULL, &p, (long)len);
	ck_assert_ptr_nonnull(req);
	ck_assert_int_eq(X509_REQ_verify(req, key), 1);
	exts = X509_REQ_get_extensions(req);
	names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	ck_assert_int_eq(sk_GENERAL_NAME_num(names), 4);
	ck_assert_int_eq(sk_GENERAL_NAME_value(names, 0)->type, GEN_DNS);
	ck_assert_int_eq(sk_GENERAL_NAME_value(names, 3)->type, GEN_IPADD);
	GENERAL_NAMES_free(names);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	free(der);
	free(b64);
	{
		char *bad[] = { "not-an-ip", NULL };

		ck_assert_int_eq(ch_acme_csr(key, dns, bad, &b64), -EINVAL);
	}
	EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_chain_split)
{
	static const char pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
				  "\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
	char *leaf = NULL, *chain = NULL;

	ck_assert_int_eq(ch_acme_chain_split(pem, &leaf, &chain), 0);
	ck_assert_str_eq(leaf, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	ck_assert_str_eq(chain, "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n");
	free(leaf);
	free(chain);
	ck_assert_int_eq(ch_acme_chain_split("no pem here", &leaf, &chain), -EBADMSG);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("acme");
	TCase *tc = tcase_create("acme");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_base64url);
	tcase_add_test(tc, test_thumbprint_rfc7638);
	tcase_add_test(tc, test_jws_es256);
	tcase_add_test(tc, test_jws_rs256);
	tcase_add_test(tc, test_jws_eab);
	tcase_add_test(tc, test_ari);
	tcase_add_test(tc, test_problem);
	tcase_add_test(tc, test_retry_after);
	tcase_add_test(tc, test_links);
	tcase_add_test(tc, test_csr);
	tcase_add_test(tc, test_chain_split);
	tcase_add_test(tc, test_order_next);
	tcase_add_test(tc, test_authz_parse);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
