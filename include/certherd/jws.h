/* SPDX-License-Identifier: MIT */
/*
 * JSON Web Signatures as ACME uses them (RFC 7515, RFC 8555 §6.2):
 * base64url without padding, the public JWK of an account key, its
 * RFC 7638 thumbprint, and the flattened JWS serialization signed with
 * ES256 (EC P-256 keys) or RS256 (RSA keys).
 */
#pragma once

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* base64url of data without '=' padding; caller frees. Returns 0 or -ENOMEM. */
int ch_b64url_encode(const void *data, size_t len, char **ret);
/* Decodes base64url (padding optional); caller frees. Returns 0, -EINVAL or -ENOMEM. */
int ch_b64url_decode(const char *s, unsigned char **ret, size_t *ret_len);

/* "ES256" or "RS256" for the key, NULL when the key type cannot sign JWS. */
const char *ch_jws_alg(EVP_PKEY *key);
/* The public JWK of key (new reference). Returns 0, -EOPNOTSUPP or -ENOMEM. */
int ch_jwk_from_key(EVP_PKEY *key, json_t **ret);
/* base64url(SHA-256(canonical JWK)) per RFC 7638; caller frees. */
int ch_jwk_thumbprint(EVP_PKEY *key, char **ret);

/*
 * Signs payload (NULL or "" = POST-as-GET) for url with key. The protected
 * header carries alg, nonce (omitted when NULL: the inner JWS of a
 * keyChange), url and either kid (when not NULL) or the public jwk. *ret is the flattened JSON serialization; caller frees.
 * Returns 0, -EOPNOTSUPP (key type), -EIO (signing) or -ENOMEM.
 */
int ch_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
		const char *payload, char **ret);

/*
 * The externalAccountBinding of a newAccount (RFC 8555 §7.3.4): a JWS
 * with alg HS256, kid and url (the newAccount URL) whose payload is the
 * public JWK of account_key, MACed with the CA-issued mac_key. *ret is a
 * new JSON object. Returns 0, -EOPNOTSUPP (account key type), -EIO or
 * -ENOMEM.
 */
int ch_jws_eab(const unsigned char *mac_key, size_t mac_key_len, const char *kid,
	       const char *url, EVP_PKEY *account_key, json_t **ret);
