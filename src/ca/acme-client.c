/* SPDX-License-Identifier: MIT */
/*
 * Talking to an ACME server: the nonce pool, JWS-signed requests (kid or
 * JWK) with badNonce retries using the nonce the error carries (RFC 8555
 * §6.5), and what a failed answer means as a CA outcome. The order and
 * account logic on top of it is in ca-acme.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme-internal.h"
#include "certherd/acme.h"
#include "certherd/jws.h"
#include "certherd/log.h"
#include "certherd/util.h"

#define ACME_MAX_BAD_NONCES 5 /* retries of one request */

static void
nonce_push(struct acme_client *c, const char *nonce)
{
	char *n;

	if (!nonce || !*nonce)
		return;
	n = strdup(nonce);
	if (!n)
		return;
	if (c->n_nonces == ACME_NONCE_POOL) {
		/* Oldest out: the newest nonces are the most likely to be valid. */
		free(c->nonces[0]);
		memmove(c->nonces, c->nonces + 1, (ACME_NONCE_POOL - 1) * sizeof(*c->nonces));
		c->n_nonces--;
	}
	c->nonces[c->n_nonces++] = n;
}

static char *
nonce_pop(struct acme_client *c)
{
	return c->n_nonces ? c->nonces[--c->n_nonces] : NULL;
}

void
acme_op_reset(struct acme_op *op)
{
	if (op->call)
		ch_http_cancel(op->call);
	op->call = NULL;
	free(op->url);
	free(op->payload);
	op->url = op->payload = NULL;
}

/* Calls fn with a response that failed before any HTTP exchange. */
static void
op_fail(struct acme_op *op, int error, const char *msg)
{
	struct ch_http_response resp = { .error = error, .body = (char *)"" };
	static char *none[] = { NULL };

	resp.headers = none;
	snprintf(resp.errmsg, sizeof(resp.errmsg), "%s", msg);
	op->fn(op->arg, &resp);
}

static void op_send(struct acme_op *op, const char *nonce);

static void
op_resp_cb(const struct ch_http_response *resp, void *arg)
{
	struct acme_op *op = arg;
	struct acme_client *c = op->c;
	const char *nonce = ch_http_header(resp, "Replay-Nonce", 0);
	struct ch_acme_problem p;

	op->call = NULL;
	if (op->post && resp->error == 0 && resp->status == 400 &&
	    ch_acme_problem_parse(resp->body, resp->body_len, &p) == 0 &&
	    ch_acme_problem_is(&p, "badNonce") && op->bad_nonces < ACME_MAX_BAD_NONCES) {
		/* RFC 8555 §6.5: retry with the nonce this error carries. */
		_cleanup_free_ char *fresh = nonce ? strdup(nonce) : NULL;

		op->bad_nonces++;
		c->n_bad_nonces++;
		ch_log_debug("CA %s: badNonce on %s, retry %d with a fresh nonce (%llu so far)",
			     c->name, op->url, op->bad_nonces, (unsigned long long)c->n_bad_nonces);
		op_send(op, fresh);
		return;
	}
	nonce_push(c, nonce);
	op->fn(op->arg, resp);
}

static void
op_nonce_cb(const struct ch_http_response *resp, void *arg)
{
	struct acme_op *op = arg;
	const char *nonce = ch_http_header(resp, "Replay-Nonce", 0);
	_cleanup_free_ char *n = NULL;

	op->call = NULL;
	if (resp->error < 0 || resp->status >= 400 || !nonce) {
		if (resp->error < 0 || resp->status >= 500) {
			op->fn(op->arg, resp);
			return;
		}
		op_fail(op, -EPROTO, "the CA's newNonce gave no Replay-Nonce");
		return;
	}
	n = strdup(nonce);
	if (!n) {
		op_fail(op, -ENOMEM, "out of memory");
		return;
	}
	op_send(op, n);
}

/* Signs and sends op with nonce, or gets a nonce first. */
static void
op_send(struct acme_op *op, const char *nonce)
{
	struct acme_client *c = op->c;
	_cleanup_free_ char *pooled = NULL, *body = NULL;
	struct ch_http_request req = { .timeout_ms = c->timeout_ms };
	int r;

	if (!op->post) {
		req.method = "GET";
		req.url = op->url;
		req.accept = op->accept;
		r = ch_http_start(c->http, &req, op_resp_cb, op, &op->call);
		if (r < 0)
			op_fail(op, r, "cannot start an HTTP request");
		return;
	}
	if (!nonce) {
		pooled = nonce_pop(c);
		nonce = pooled;
	}
	if (!nonce) {
		req.method = "HEAD";
		req.url = c->url_nonce;
		r = ch_http_start(c->http, &req, op_nonce_cb, op, &op->call);
		if (r < 0)
			op_fail(op, r, "cannot start an HTTP request");
		return;
	}
	r = ch_jws_sign(op->sign_key ? op->sign_key : c->account_key, op->use_jwk ? NULL : c->kid,
			nonce, op->url, op->payload, &body);
	if (r < 0) {
		op_fail(op, r, "cannot sign the request with the account key");
		return;
	}
	req.method = "POST";
	req.url = op->url;
	req.body = body;
	req.body_len = strlen(body);
	req.content_type = "application/jose+json";
	req.accept = op->accept;
	r = ch_http_start(c->http, &req, op_resp_cb, op, &op->call);
	if (r < 0)
		op_fail(op, r, "cannot start an HTTP request");
}

/*
 * Starts a request: GET when !post, else a JWS POST of payload (NULL for
 * POST-as-GET). fn runs from the loop with the final response.
 */
void
acme_op_start(struct acme_op *op, bool post, const char *url, const char *payload, bool use_jwk,
	 const char *accept, acme_op_fn *fn, void *arg)
{
	acme_op_reset(op);
	op->post = post;
	op->use_jwk = use_jwk;
	op->accept = accept;
	op->bad_nonces = 0;
	op->fn = fn;
	op->arg = arg;
	op->url = strdup(url);
	op->payload = payload ? strdup(payload) : NULL;
	if (!op->url || (payload && !op->payload)) {
		op_fail(op, -ENOMEM, "out of memory");
		return;
	}
	op_send(op, NULL);
}

/*
 * What a failed response means for a renewal (RFC 8555 §6.7, LE's
 * guidance): returns true for 2xx; otherwise fills outcome, retry_after
 * and msg and returns false.
 */
bool
acme_classify(const struct ch_http_response *resp, const char *what, enum ch_ca_outcome *outcome,
	      int64_t *retry_after, char *msg, size_t msglen)
{
	struct ch_acme_problem p;
	int64_t ra;

	*retry_after = 0;
	if (resp->error < 0) {
		*outcome = CH_CA_UNREACHABLE;
		snprintf(msg, msglen, "%s: %s", what, resp->errmsg);
		return false;
	}
	if (resp->status >= 200 && resp->status < 300)
		return true;
	ra = ch_acme_retry_after(ch_http_header(resp, "Retry-After", 0), ch_now());
	if (ra > 0)
		*retry_after = ra;
	if (ch_acme_problem_parse(resp->body, resp->body_len, &p) < 0) {
		snprintf(p.type, sizeof(p.type), "HTTP %ld", resp->status);
		snprintf(p.message, sizeof(p.message), "HTTP %ld", resp->status);
	}
	snprintf(msg, msglen, "%s: %s", what, p.message);
	if (resp->status == 429 || ch_acme_problem_is(&p, "rateLimited"))
		*outcome = CH_CA_PENDING;
	else if (resp->status >= 500 || ch_acme_problem_is(&p, "serverInternal") ||
		 ch_acme_problem_is(&p, "badNonce"))
		*outcome = CH_CA_UNREACHABLE;
	else if (ch_acme_problem_is(&p, "userActionRequired") ||
		 ch_acme_problem_is(&p, "accountDoesNotExist") ||
		 ch_acme_problem_is(&p, "unauthorized") ||
		 ch_acme_problem_is(&p, "externalAccountRequired") ||
		 ch_acme_problem_is(&p, "badSignatureAlgorithm") ||
		 ch_acme_problem_is(&p, "badPublicKey"))
		*outcome = CH_CA_MISCONFIGURED;
	else
		*outcome = CH_CA_REJECTED;
	return false;
}

void
acme_client_done(struct acme_client *c)
{
	ch_http_free(c->http);
	c->http = NULL;
	for (size_t i = 0; i < c->n_nonces; i++)
		free(c->nonces[i]);
	c->n_nonces = 0;
	EVP_PKEY_free(c->account_key);
	c->account_key = NULL;
	free(c->kid);
	free(c->url_nonce);
	c->kid = c->url_nonce = NULL;
}
