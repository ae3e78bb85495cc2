/* SPDX-License-Identifier: MIT */
/*
 * ACME (RFC 8555) protocol pieces that need no network: problem documents
 * (RFC 7807, with ACME subproblems), Retry-After values, Link headers,
 * the CSR sent to finalize and the PEM chain that comes back. The
 * backend that speaks the protocol is src/ca/ca-acme.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#define CH_ACME_ERROR_NS "urn:ietf:params:acme:error:"

struct ch_acme_problem {
	char type[96];     /* short ACME type ("badNonce") or the full URI of another */
	long status;       /* "status" member, 0 when absent */
	char message[900]; /* "type: detail; dns:a.test: type: detail; ..." */
};

/*
 * Reads a problem document from a JSON object. Returns 0, or -EBADMSG
 * when doc is not an object with a string "type".
 */
int ch_acme_problem_from_json(const json_t *doc, struct ch_acme_problem *ret);
/* The same from a response body. */
int ch_acme_problem_parse(const char *body, size_t len, struct ch_acme_problem *ret);
/* True when p's type is the ACME error name (e.g. "badNonce"). */
bool ch_acme_problem_is(const struct ch_acme_problem *p, const char *name);

/*
 * Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date
 * (relative to now). Returns >= 0, or -EINVAL when unparsable.
 */
int64_t ch_acme_retry_after(const char *value, int64_t now);

/*
 * Targets of Link header values with rel=rel (e.g. "alternate", "up").
 * values is the list of Link header values; returns a NULL-terminated
 * vector (possibly empty) in *ret, caller frees with ch_strv_free.
 */
int ch_acme_links(char *const *values, const char *rel, char ***ret);

/* A DER CSR for key with the DNS and IP SANs, base64url-encoded. */
int ch_acme_csr(EVP_PKEY *key, char *const *dns, char *const *ip, char **ret_b64url);

/*
 * Splits a PEM chain into the first certificate and the rest (may be "").
 * Returns 0 or -EBADMSG when no certificate is found.
 */
int ch_acme_chain_split(const char *pem, char **ret_leaf, char **ret_chain);
/* True when any certificate of the PEM chain has an issuer with this CN. */
bool ch_acme_chain_has_issuer(const char *pem, const char *issuer_cn);

/*
 * The ARI certificate identifier (RFC 9773 §4.1) of the first certificate
 * in pem: base64url(AKI keyIdentifier) "." base64url(serial DER content
 * octets). Returns 0, -EBADMSG (no certificate), -ENOENT (no AKI key
 * identifier) or -ENOMEM; caller frees *ret.
 */
int ch_acme_ari_cert_id(const char *pem, char **ret);

/* An RFC 3339 time ("2025-01-02T04:00:00.123Z", "...+02:00") as Unix seconds; -EINVAL. */
int ch_acme_parse_time(const char *s, int64_t *ret);

/*
 * A renewalInfo answer: suggestedWindow start and end (end > start) and
 * the optional explanationURL (NULL when absent; caller frees). Returns 0
 * or -EBADMSG.
 */
int ch_acme_ari_parse(const char *body, size_t len, int64_t *ret_start, int64_t *ret_end,
		      char **ret_explanation);

/*
 * "dns:a.test ip:127.0.0.1 ..." from an order's identifiers array, sorted
 * and space-terminated, to compare identifier sets; NULL on ENOMEM.
 */
char *ch_acme_identifiers_key(const json_t *ids);

/* What an order object (RFC 8555 §7.1.6) asks for next. */
enum ch_acme_order_step {
	CH_ACME_ORDER_AUTHORIZE, /* "pending": answer the authorizations in authzs */
	CH_ACME_ORDER_FINALIZE,  /* "ready": send the CSR to url */
	CH_ACME_ORDER_WAIT,      /* "processing": ask again later */
	CH_ACME_ORDER_DOWNLOAD,  /* "valid": the certificate is at url */
	CH_ACME_ORDER_FAILED,    /* invalid, unknown or malformed: message says why */
};

struct ch_acme_order_next {
	enum ch_acme_order_step step;
	const char *url;       /* FINALIZE, DOWNLOAD; borrowed from the order */
	const json_t *authzs;  /* AUTHORIZE: a non-empty array of URL strings; borrowed */
	char message[1100];    /* FAILED: "order URL is invalid: ..." */
};

/* Reads order (fetched from order_url, for messages) into *ret. */
void ch_acme_order_next(const json_t *order, const char *order_url,
			struct ch_acme_order_next *ret);

/* An authorization object (RFC 8555 §7.1.4) and its challenge of one type. */
struct ch_acme_authz {
	char ident[300];           /* "dns:a.test", for messages */
	const char *value;         /* the identifier's value, "" when absent; borrowed */
	const char *status;        /* the authorization's, "?" when absent */
	bool has_challenge;        /* a challenge of the wanted type is offered */
	const char *chall_status;  /* its status, "?" when absent */
	const char *token;         /* its token when well-formed (base64url), else NULL */
	const char *url;           /* its URL, NULL when absent */
	bool has_error;
	struct ch_acme_problem error; /* the challenge's error, when has_error */
};

/* Reads authz, picking the challenge of type ("http-01", "dns-01"). */
void ch_acme_authz_parse(const json_t *authz, const char *type, struct ch_acme_authz *ret);
