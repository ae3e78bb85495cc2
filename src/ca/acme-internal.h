/* SPDX-License-Identifier: MIT */
/*
 * Private to the ACME backend: the request layer (acme-client.c) and the
 * http-01 responder (acme-http01.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "certherd/ca.h"
#include "certherd/err.h"
#include "certherd/http.h"

struct event_base;
struct acme_http01;

#define ACME_NONCE_POOL 32

/* What every request to one ACME server needs. Owned by the CA instance. */
struct acme_client {
	const char *name;      /* the CA's, for logs (borrowed) */
	struct ch_http *http;
	long timeout_ms;       /* of each request (request_timeout) */
	EVP_PKEY *account_key;
	char *kid;             /* account URL, once known */
	char *url_nonce;       /* newNonce, from the directory */
	char *nonces[ACME_NONCE_POOL];
	size_t n_nonces;
	uint64_t n_bad_nonces; /* badNonce answers retried, for the logs */
};
/* Frees the members (cancelling requests of the HTTP client). */
void acme_client_done(struct acme_client *c);

typedef void acme_op_fn(void *arg, const struct ch_http_response *resp);

/* One ACME request in flight: a nonce, a signature, badNonce retries. */
struct acme_op {
	struct acme_client *c;
	char *url;
	char *payload; /* NULL: POST-as-GET */
	bool post;
	bool use_jwk;  /* sign with the JWK (newAccount) instead of kid */
	EVP_PKEY *sign_key; /* borrowed; NULL: the client's account key */
	const char *accept;
	int bad_nonces;
	struct ch_http_call *call;
	acme_op_fn *fn;
	void *arg;
};

/*
 * Starts op: a GET when !post, else a JWS POST of payload (NULL for
 * POST-as-GET) signed with the JWK (use_jwk) or the kid. A nonce comes
 * from the pool or newNonce; badNonce answers are retried up to 5 times
 * with the nonce they carry. fn runs from the loop, once, with the final
 * response (error < 0 when none came). A running op is replaced.
 */
void acme_op_start(struct acme_op *op, bool post, const char *url, const char *payload,
		   bool use_jwk, const char *accept, acme_op_fn *fn, void *arg);
/* Cancels op (fn is not called) and frees its request data. */
void acme_op_reset(struct acme_op *op);

/*
 * What an answer means for a renewal (RFC 8555 §6.7): true for 2xx;
 * otherwise fills outcome, retry_after (from Retry-After, else 0) and msg
 * ("what: type: detail; subproblems") and returns false.
 */
bool acme_classify(const struct ch_http_response *resp, const char *what,
		   enum ch_ca_outcome *outcome, int64_t *retry_after, char *msg, size_t msglen);

/*
 * Opens (or shares) the responder listening on listen ("host:port",
 * "[v6]:port" or ":port" for all addresses). Instances of every CA that
 * name the same address share one listener, so a reloaded configuration
 * can start while the previous one still finishes its orders.
 */
int acme_http01_open(struct event_base *base, const char *listen, struct acme_http01 **ret,
		     struct ch_err *reterr);
void acme_http01_close(struct acme_http01 *r);
/* Serves keyauth at /.well-known/acme-challenge/<token> until removed. */
int acme_http01_add(struct acme_http01 *r, const char *token, const char *keyauth);
void acme_http01_remove(struct acme_http01 *r, const char *token);
/* Splits "host:port"; *ret_host is NULL for ":port". Returns 0 or -EINVAL. */
int acme_http01_parse_listen(const char *listen, char **ret_host, unsigned *ret_port);

/* --- dns-01 (acme-dns01.c) ---------------------------------------------------------- */

struct acme_dns01;
struct acme_dns01_op;

/* How one CA publishes dns-01 records: RFC 2136 + TSIG, or a hook. */
struct acme_dns01_conf {
	const char *ca_name;
	const char *server;        /* ip[:port] taking updates; NULL with a hook */
	const char *zone;          /* NULL: found by an SOA query */
	const char *tsig_key;      /* key name; NULL: from the key file */
	const char *tsig_key_file; /* a tsig-keygen clause or a base64 secret, mode 0600 */
	char *const *hook;         /* argv; "add"|"remove", name, value are appended */
	char *const *check;        /* servers to poll for the record; NULL: server */
	int64_t timeout;           /* seconds for a record to become visible */
};

int acme_dns01_new(struct event_base *base, const struct acme_dns01_conf *conf,
		   struct acme_dns01 **ret, struct ch_err *reterr);
/* Cancels publications; removals and hooks already running finish on their own. */
void acme_dns01_free(struct acme_dns01 *d);

/* ok: the record is visible; else outcome and msg say why not. */
typedef void acme_dns01_fn(void *arg, bool ok, enum ch_ca_outcome outcome, const char *msg);

/*
 * Adds the TXT record _acme-challenge.<ident> = value and waits until the
 * check servers answer it. fn is called once from the loop, unless the
 * op is cancelled first; *ret is valid until then.
 */
int acme_dns01_publish(struct acme_dns01 *d, const char *ident, const char *value,
		       acme_dns01_fn *fn, void *arg, struct acme_dns01_op **ret);
/* fn is not called; a running hook finishes on its own. NULL is fine. */
void acme_dns01_cancel(struct acme_dns01_op *op);
/* Removes the record in the background; failures are logged. */
void acme_dns01_unpublish(struct acme_dns01 *d, const char *ident, const char *value);

/* --- the account (acme-account.c) ------------------------------------------------------- */

/* An external account binding: the CA's key id and its HMAC key (secret). */
struct acme_eab {
	char *kid;
	unsigned char *key;
	size_t key_len;
};

/*
 * Reads the base64url HMAC key from path, which must not be readable by
 * group or others. Errors name the file, never its contents.
 */
int acme_eab_load(const char *kid, const char *path, struct acme_eab **ret,
		  struct ch_err *reterr);
/* Wipes the key. NULL is fine. */
void acme_eab_free(struct acme_eab *e);

/*
 * The newAccount payload for url: termsOfServiceAgreed, contact (may be
 * NULL) and, with eab, the externalAccountBinding over account_key's JWK.
 * Returns 0 and the JSON text in *ret, or -errno.
 */
int acme_account_payload(const char *url, EVP_PKEY *account_key, bool agree_tos,
			 char *const *contact, const struct acme_eab *eab, char **ret);

/*
 * The keyChange payload (RFC 8555 §7.3.5): a JWS signed by new_key, with
 * its JWK and url but no nonce, over {"account": kid, "oldKey": JWK of
 * old_key}. The outer request is signed by the old key as usual.
 */
int acme_key_change_payload(const char *url, const char *kid, EVP_PKEY *old_key,
			    EVP_PKEY *new_key, char **ret);
