/* SPDX-License-Identifier: MIT */
/*
 * JWS for ACME: base64url, the JWK of an EC P-256 or RSA public key, its
 * RFC 7638 thumbprint and flattened-JSON signatures. ES256 signatures are
 * the fixed-width r||s pair (RFC 7518 §3.4), not OpenSSL's DER.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "certherd/jws.h"
#include "certherd/macro.h"

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
ch_b64url_encode(const void *data, size_t len, char **ret)
{
	const unsigned char *p = data;
	char *out, *o;
	size_t i;

	out = malloc(len / 3 * 4 + 5);
	if (!out)
		return -ENOMEM;
	o = out;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];

		*o++ = b64url_alphabet[v >> 18 & 63];
		*o++ = b64url_alphabet[v >> 12 & 63];
		*o++ = b64url_alphabet[v >> 6 & 63];
		*o++ = b64url_alphabet[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)p[i] << 16;

		*o++ = b64url_alphabet[v >> 18 & 63];
		*o++ = b64url_alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;

		*o++ = b64url_alphabet[v >> 18 & 63];
		*o++ = b64url_alphabet[v >> 12 & 63];
		*o++ = b64url_alphabet[v >> 6 & 63];
	}
	*o = '\0';
	*ret = out;
	return 0;
}

static int
b64url_value(char c)
{
	const char *p;

	if (!c)
		return -1;
	p = strchr(b64url_alphabet, c);
	return p ? (int)(p - b64url_alphabet) : -1;
}

int
ch_b64url_decode(const char *s, unsigned char **ret, size_t *ret_len)
{
	size_t n = strlen(s), len = 0;
	unsigned acc = 0;
	int bits = 0;
	unsigned char *out;

	while (n > 0 && s[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -EINVAL;
	out = malloc(n / 4 * 3 + 3);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_value(s[i]);

		if (v < 0) {
			free(out);
			return -EINVAL;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[len++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (acc) {
		free(out);
		return -EINVAL;
	}
	*ret = out;
	*ret_len = len;
	return 0;
}

static bool
key_is_p256(EVP_PKEY *key)
{
	char group[64];

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC)
		return false;
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    NULL))
		return false;
	return streq(group, "prime256v1") || streq(group, "P-256");
}

const char *
ch_jws_alg(EVP_PKEY *key)
{
	if (key_is_p256(key))
		return "ES256";
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
		return "RS256";
	return NULL;
}

/* base64url of a big number parameter, left-padded to width bytes (0 = minimal). */
static int
bn_param_b64(EVP_PKEY *key, const char *name, int width, char **ret)
{
	BIGNUM *bn = NULL;
	unsigned char *buf;
	int len, r;

	if (!EVP_PKEY_get_bn_param(key, name, &bn))
		return -EIO;
	len = width ? width : BN_num_bytes(bn);
	if (len <= 0)
		len = 1;
	buf = malloc((size_t)len);
	if (!buf) {
		BN_free(bn);
		return -ENOMEM;
	}
	r = BN_bn2binpad(bn, buf, len) == len ? ch_b64url_encode(buf, (size_t)len, ret) : -EIO;
	BN_free(bn);
	free(buf);
	return r;
}

int
ch_jwk_from_key(EVP_PKEY *key, json_t **ret)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	json_t *jwk;
	int r;

	if (key_is_p256(key)) {
		r = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32, &a);
		if (r >= 0)
			r = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32, &b);
		if (r < 0)
			return r;
		jwk = json_pack("{s:s,s:s,s:s,s:s}", "crv", "P-256", "kty", "EC", "x", a, "y", b);
	} else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
		r = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_E, 0, &a);
		if (r >= 0)
			r = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_N, 0, &b);
		if (r < 0)
			return r;
		jwk = json_pack("{s:s,s:s,s:s}", "e", a, "kty", "RSA", "n", b);
	} else
		return -EOPNOTSUPP;
	if (!jwk)
		return -ENOMEM;
	*ret = jwk;
	return 0;
}

int
ch_jwk_thumbprint(EVP_PKEY *key, char **ret)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	json_t *jwk = NULL;
	char *canon;
	int r;

	r = ch_jwk_from_key(key, &jwk);
	if (r < 0)
		return r;
	/* RFC 7638 §3: required members only, sorted, no whitespace. */
	canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(jwk);
	if (!canon)
		return -ENOMEM;
	SHA256((const unsigned char *)canon, strlen(canon), md);
	free(canon);
	return ch_b64url_encode(md, sizeof(md), ret);
}

/* ES256: DER ECDSA-Sig-Value to 64 bytes of r||s. */
static int
ecdsa_der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r, *s;
	int ok;

	if (!sig)
		return -EIO;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -EIO;
}

static int
jws_sign_input(EVP_PKEY *key, const char *input, unsigned char **ret, size_t *ret_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t len = 0;
	int r = -EIO;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(ctx, NULL, &len, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	sig = malloc(len);
	if (!sig) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	if (key_is_p256(key)) {
		unsigned char *raw = malloc(64);

		if (!raw) {
			r = -ENOMEM;
			goto out;
		}
		r = ecdsa_der_to_raw(sig, len, raw);
		free(sig);
		sig = raw;
		len = 64;
		if (r < 0)
			goto out;
	}
	*ret = TAKE_PTR(sig);
	*ret_len = len;
	r = 0;
out:
	free(sig);
	EVP_MD_CTX_free(ctx);
	return r;
}

int
ch_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
	    const char *payload, char **ret)
{
	const char *alg = ch_jws_alg(key);
	_cleanup_free_ char *hdr_json = NULL, *hdr_b64 = NULL, *pay_b64 = NULL, *input = NULL;
	_cleanup_free_ char *sig_b64 = NULL;
	_cleanup_free_ unsigned char *sig = NULL;
	size_t sig_len;
	json_t *hdr, *jwk = NULL, *out;
	int r;

	if (!alg)
		return -EOPNOTSUPP;
	hdr = json_pack("{s:s,s:s}", "alg", alg, "url", url);
	if (!hdr || (nonce && json_object_set_new(hdr, "nonce", json_string(nonce)) < 0)) {
		json_decref(hdr);
		return -ENOMEM;
	}
	if (kid) {
		r = json_object_set_new(hdr, "kid", json_string(kid)) < 0 ? -ENOMEM : 0;
	} else {
		r = ch_jwk_from_key(key, &jwk);
		if (r >= 0 && json_object_set_new(hdr, "jwk", jwk) < 0)
			r = -ENOMEM;
	}
	if (r >= 0) {
		hdr_json = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
		r = hdr_json ? 0 : -ENOMEM;
	}
	json_decref(hdr);
	if (r < 0)
		return r;
	payload = payload ? payload : "";
	r = ch_b64url_encode(hdr_json, strlen(hdr_json), &hdr_b64);
	if (r >= 0)
		r = ch_b64url_encode(payload, strlen(payload), &pay_b64);
	if (r < 0)
		return r;
	if (asprintf(&input, "%s.%s", hdr_b64, pay_b64) < 0) {
		input = NULL;
		return -ENOMEM;
	}
	r = jws_sign_input(key, input, &sig, &sig_len);
	if (r >= 0)
		r = ch_b64url_encode(sig, sig_len, &sig_b64);
	if (r < 0)
		return r;
	out = json_pack("{s:s,s:s,s:s}", "protected", hdr_b64, "payload", pay_b64, "signature",
			sig_b64);
	if (!out)
		return -ENOMEM;
	*ret = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	return *ret ? 0 : -ENOMEM;
}

int
ch_jws_eab(const unsigned char *mac_key, size_t mac_key_len, const char *kid, const char *url,
	   EVP_PKEY *account_key, json_t **ret)
{
	_cleanup_free_ char *hdr_json = NULL, *jwk_json = NULL, *hdr_b64 = NULL, *pay_b64 = NULL;
	_cleanup_free_ char *input = NULL, *sig_b64 = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t mac_len = 0;
	json_t *hdr, *jwk = NULL;
	int r;

	r = ch_jwk_from_key(account_key, &jwk);
	if (r < 0)
		return r;
	jwk_json = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(jwk);
	hdr = json_pack("{s:s,s:s,s:s}", "alg", "HS256", "kid", kid, "url", url);
	hdr_json = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(hdr);
	if (!jwk_json || !hdr_json)
		return -ENOMEM;
	r = ch_b64url_encode(hdr_json, strlen(hdr_json), &hdr_b64);
	if (r >= 0)
		r = ch_b64url_encode(jwk_json, strlen(jwk_json), &pay_b64);
	if (r < 0)
		return r;
	if (asprintf(&input, "%s.%s", hdr_b64, pay_b64) < 0) {
		input = NULL;
		return -ENOMEM;
	}
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, mac_key, mac_key_len,
		       (const unsigned char *)input, strlen(input), mac, sizeof(mac), &mac_len))
		return -EIO;
	r = ch_b64url_encode(mac, mac_len, &sig_b64);
	OPENSSL_cleanse(mac, sizeof(mac));
	if (r < 0)
		return r;
	*ret = json_pack("{s:s,s:s,s:s}", "protected", hdr_b64, "payload", pay_b64, "signature",
			 sig_b64);
	return *ret ? 0 : -ENOMEM;
}
