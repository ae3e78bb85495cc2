/* SPDX-License-Identifier: MIT */
/*
 * The acme backend's requests outside issuance: renewal information
 * (RFC 9773) for the daemon's scheduler, account key rollover (RFC 8555
 * §7.3.5) with the new key stored before the CA hears of it, and
 * revocation (§7.6). Each waits for the directory and account like an
 * order does (ca-acme.c) and answers from the event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "acme-backend.h"
#include "certherd/acme.h"
#include "certherd/crashpoint.h"
#include "certherd/crypto.h"
#include "certherd/jws.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/util.h"

/* --- renewal information (RFC 9773) -------------------------------------------------- */

void
acme_ari_free(struct acme_ari *a)
{
	LIST_REMOVE(a, link);
	acme_op_reset(&a->op);
	if (a->kick)
		event_free(a->kick);
	free(a->cert_id);
	free(a);
}

static void
ari_finish(struct acme_ari *a, int r, struct ch_renewal_info *ri)
{
	ch_renewal_info_done_fn *done = a->done;
	void *arg = a->arg;

	acme_ari_free(a);
	done(r, ri, arg);
}

static void
ari_resp_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_ari *a = arg;
	struct ch_renewal_info ri = { 0 };
	enum ch_ca_outcome outcome;
	int64_t ra = ch_acme_retry_after(ch_http_header(resp, "Retry-After", 0), ch_now());
	_cleanup_free_ char *expl = NULL;

	if (!acme_classify(resp, "renewalInfo", &outcome, &ri.retry_after, ri.message,
			   sizeof(ri.message))) {
		ari_finish(a, resp->error < 0 ? resp->error : -EPROTO, &ri);
		return;
	}
	ri.retry_after = ra > 0 ? ra : 0;
	if (ch_acme_ari_parse(resp->body, resp->body_len, &ri.start, &ri.end, &expl) < 0) {
		snprintf(ri.message, sizeof(ri.message),
			 "renewalInfo: the CA's answer has no valid suggestedWindow");
		ari_finish(a, -EBADMSG, &ri);
		return;
	}
	if (expl)
		snprintf(ri.explanation_url, sizeof(ri.explanation_url), "%s", expl);
	ari_finish(a, 0, &ri);
}

static void
ari_go(struct acme_ari *a)
{
	struct ca_acme *s = a->s;
	_cleanup_free_ char *url = NULL;
	struct ch_renewal_info ri = { 0 };

	if (!s->url_renewal_info) {
		snprintf(ri.message, sizeof(ri.message), "the CA's directory has no renewalInfo");
		ari_finish(a, -EOPNOTSUPP, &ri);
		return;
	}
	if (asprintf(&url, "%s%s%s", s->url_renewal_info,
		     s->url_renewal_info[strlen(s->url_renewal_info) - 1] == '/' ? "" : "/",
		     a->cert_id) < 0)
		abort();
	acme_op_start(&a->op, false, url, NULL, false, NULL, ari_resp_cb, a);
}

static void
ari_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct acme_ari *a = arg;
	struct ca_acme *s = a->s;

	if (s->setup == SETUP_DONE) {
		ari_go(a);
		return;
	}
	a->awaiting_setup = true;
	if (s->setup == SETUP_NONE)
		acme_setup_start(s);
}

/* The directory is known (fail == NULL) or could not be: waiting requests go on. */
void
acme_ari_setup_done(struct ca_acme *s, const char *fail)
{
	struct acme_ari *a, *next;

	for (a = LIST_FIRST(&s->aris); a; a = next) {
		next = LIST_NEXT(a, link);
		if (!a->awaiting_setup)
			continue;
		a->awaiting_setup = false;
		if (fail) {
			struct ch_renewal_info ri = { 0 };

			snprintf(ri.message, sizeof(ri.message), "%s", fail);
			ari_finish(a, -EIO, &ri);
		} else {
			ari_go(a);
		}
	}
}

int
ca_acme_renewal_info(void *state, const char *cert_pem, ch_renewal_info_done_fn *done, void *arg)
{
	struct ca_acme *s = state;
	struct timeval zero = { 0, 0 };
	struct acme_ari *a = calloc(1, sizeof(*a));
	int r;

	if (!a)
		return -ENOMEM;
	r = ch_acme_ari_cert_id(cert_pem, &a->cert_id);
	if (r < 0) {
		free(a);
		return r == -ENOENT ? -EOPNOTSUPP : r;
	}
	a->s = s;
	a->op.c = &s->client;
	a->done = done;
	a->arg = arg;
	a->kick = evtimer_new(s->base, ari_kick_cb, a);
	LIST_INSERT_HEAD(&s->aris, a, link);
	if (!a->kick) {
		acme_ari_free(a);
		return -ENOMEM;
	}
	evtimer_add(a->kick, &zero);
	return 0;
}

/* --- account key rollover (RFC 8555 §7.3.5) --------------------------------------------- */

static char *
acme_key_path(const struct ca_acme *s, bool new)
{
	char *p;

	if (asprintf(&p, "%s/account.key%s", s->dir, new ? ".new" : "") < 0)
		abort();
	return p;
}

/* Drops the new key: the CA did not take it. */
void
acme_rollover_discard(struct ca_acme *s)
{
	_cleanup_free_ char *path = acme_key_path(s, true);

	if (unlink(path) < 0 && errno != ENOENT)
		ch_log_warning("CA %s: cannot remove %s: %m", s->name, path);
	EVP_PKEY_free(s->new_key);
	s->new_key = NULL;
}

/* The CA has the new key: it replaces the old one, on disk first. */
int
acme_rollover_commit(struct ca_acme *s, struct ch_err *err)
{
	_cleanup_free_ char *path = acme_key_path(s, false), *new_path = acme_key_path(s, true);
	char *tp = NULL;
	int fd, r;

	if (rename(new_path, path) < 0)
		return ch_err_set(err, -errno, "cannot replace %s with %s: %s", path, new_path,
				  strerror(errno));
	fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	r = ch_jwk_thumbprint(s->new_key, &tp);
	if (r < 0)
		return ch_err_set(err, r, "cannot compute the new key's thumbprint");
	EVP_PKEY_free(s->client.account_key);
	s->client.account_key = TAKE_PTR(s->new_key);
	free(s->thumbprint);
	s->thumbprint = tp;
	return 0;
}

static void
rollover_finish(struct ca_acme *s, int r, const char *fmt, ...) _printf_(3, 4);

static void
rollover_finish(struct ca_acme *s, int r, const char *fmt, ...)
{
	struct acme_rollover *ro = s->rollover;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->rollover = NULL;
	acme_op_reset(&ro->op);
	if (ro->kick)
		event_free(ro->kick);
	if (r < 0)
		ch_log_error("CA %s: account key rollover failed: %s", s->name, msg);
	else
		ch_log_notice("CA %s: %s", s->name, msg);
	ro->done(r, msg, ro->arg);
	free(ro);
}

static void
rollover_resp_cb(void *arg, const struct ch_http_response *resp)
{
	struct ca_acme *s = arg;
	struct ch_err err = { "" };
	enum ch_ca_outcome outcome;
	int64_t retry_after;
	char msg[1024];

	if (!acme_classify(resp, "keyChange", &outcome, &retry_after, msg, sizeof(msg))) {
		acme_rollover_discard(s);
		rollover_finish(s, -EPROTO, "%s; the old key stays", msg);
		return;
	}
	ch_crashpoint("acme-rollover-confirmed");
	if (acme_rollover_commit(s, &err) < 0) {
		rollover_finish(s, -EIO, "the CA took the new key, but %s; it is used from the next "
					 "start",
				err.msg);
		return;
	}
	rollover_finish(s, 0, "account %s now uses a new key (the CA confirmed the rollover)",
			s->client.kid);
}

static void
rollover_go(struct ca_acme *s)
{
	_cleanup_free_ char *path = acme_key_path(s, true), *payload = NULL;
	struct ch_err err = { "" };
	char *pem = NULL;
	size_t len = 0;
	int r;

	if (!s->url_key_change || !s->client.kid) {
		rollover_finish(s, -EOPNOTSUPP, "the CA's directory has no keyChange");
		return;
	}
	EVP_PKEY_free(s->new_key);
	s->new_key = NULL;
	r = ch_key_generate(CH_KEY_ECDSA_P256, &s->new_key, &err);
	if (r >= 0)
		r = ch_key_to_pem(s->new_key, &pem, &len, &err);
	/* Durable before the CA hears of it: a crash from here on is resolved at the next start. */
	if (r >= 0)
		r = ch_write_file_atomic(path, pem, len, 0600, -1, -1, &err);
	ch_secret_free(pem, len);
	if (r < 0) {
		EVP_PKEY_free(s->new_key);
		s->new_key = NULL;
		rollover_finish(s, r, "cannot store the new key: %s", err.msg);
		return;
	}
	ch_crashpoint("acme-rollover-key-stored");
	r = acme_key_change_payload(s->url_key_change, s->client.kid, s->client.account_key,
				    s->new_key, &payload);
	if (r < 0) {
		acme_rollover_discard(s);
		rollover_finish(s, r, "cannot sign the keyChange request");
		return;
	}
	acme_op_start(&s->rollover->op, true, s->url_key_change, payload, false, NULL,
		      rollover_resp_cb, s);
}

void
acme_rollover_setup_done(struct ca_acme *s, const char *fail)
{
	if (!s->rollover || !s->rollover->awaiting_setup)
		return;
	s->rollover->awaiting_setup = false;
	if (fail)
		rollover_finish(s, -EIO, "%s", fail);
	else
		rollover_go(s);
}

static void
rollover_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ca_acme *s = arg;

	if (s->setup == SETUP_DONE) {
		rollover_go(s);
		return;
	}
	s->rollover->awaiting_setup = true;
	if (s->setup == SETUP_NONE)
		acme_setup_start(s);
}

int
ca_acme_key_rollover(void *state, ch_ca_done_fn *done, void *arg)
{
	struct ca_acme *s = state;
	struct timeval zero = { 0, 0 };
	struct acme_rollover *ro;

	if (s->rollover)
		return -EBUSY;
	ro = calloc(1, sizeof(*ro));
	if (!ro)
		return -ENOMEM;
	ro->done = done;
	ro->arg = arg;
	ro->op.c = &s->client;
	ro->kick = evtimer_new(s->base, rollover_kick_cb, s);
	if (!ro->kick) {
		free(ro);
		return -ENOMEM;
	}
	s->rollover = ro;
	evtimer_add(ro->kick, &zero);
	return 0;
}

/* --- revocation (RFC 8555 §7.6) ------------------------------------------------------- */

void
acme_revoke_free(struct acme_revoke *rv)
{
	LIST_REMOVE(rv, link);
	acme_op_reset(&rv->op);
	if (rv->kick)
		event_free(rv->kick);
	free(rv->payload);
	free(rv->serial);
	free(rv);
}

static void
revoke_finish(struct acme_revoke *rv, int r, const char *msg)
{
	ch_revoke_done_fn *done = rv->done;
	void *arg = rv->arg;
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s", msg);
	acme_revoke_free(rv);
	done(r, buf, arg);
}

static void
revoke_resp_cb(void *arg, const struct ch_http_response *resp)
{
	struct acme_revoke *rv = arg;
	struct ch_acme_problem p;
	enum ch_ca_outcome outcome;
	int64_t retry_after;
	char msg[1024];

	if (acme_classify(resp, "revokeCert", &outcome, &retry_after, msg, sizeof(msg))) {
		ch_log_notice("CA %s: revoked serial %s", rv->s->name, rv->serial);
		revoke_finish(rv, 0, "revoked");
	} else if (resp->error == 0 &&
		   ch_acme_problem_parse(resp->body, resp->body_len, &p) == 0 &&
		   ch_acme_problem_is(&p, "alreadyRevoked")) {
		revoke_finish(rv, 0, "already revoked");
	} else {
		revoke_finish(rv, -EPROTO, msg);
	}
}

static void
revoke_go(struct acme_revoke *rv)
{
	if (!rv->s->url_revoke) {
		revoke_finish(rv, -EOPNOTSUPP, "the CA's directory has no revokeCert");
		return;
	}
	acme_op_start(&rv->op, true, rv->s->url_revoke, rv->payload, false, NULL, revoke_resp_cb,
		      rv);
}

void
acme_revoke_setup_done(struct ca_acme *s, const char *fail)
{
	struct acme_revoke *rv, *next;

	for (rv = LIST_FIRST(&s->revokes); rv; rv = next) {
		next = LIST_NEXT(rv, link);
		if (!rv->awaiting_setup)
			continue;
		rv->awaiting_setup = false;
		if (fail)
			revoke_finish(rv, -EIO, fail);
		else
			revoke_go(rv);
	}
}

static void
revoke_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct acme_revoke *rv = arg;
	struct ca_acme *s = rv->s;

	if (s->setup == SETUP_DONE) {
		revoke_go(rv);
		return;
	}
	rv->awaiting_setup = true;
	if (s->setup == SETUP_NONE)
		acme_setup_start(s);
}

/* revokeCert for the leaf, signed with the account key (kid). */
int
ca_acme_revoke(void *state, const struct ch_revoke_request *req, ch_revoke_done_fn *done,
	       void *arg)
{
	struct ca_acme *s = state;
	struct timeval zero = { 0, 0 };
	_cleanup_free_ char *b64 = NULL;
	struct acme_revoke *rv;
	unsigned char *der = NULL;
	json_t *doc;
	BIO *bio;
	X509 *x;
	int len, r;

	if (!req->cert_pem)
		return -EINVAL;
	bio = BIO_new_mem_buf(req->cert_pem, -1);
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	len = x ? i2d_X509(x, &der) : -1;
	X509_free(x);
	if (len <= 0)
		return -EBADMSG;
	r = ch_b64url_encode(der, (size_t)len, &b64);
	OPENSSL_free(der);
	if (r < 0)
		return r;
	rv = calloc(1, sizeof(*rv));
	if (!rv)
		return -ENOMEM;
	LIST_INSERT_HEAD(&s->revokes, rv, link);
	rv->s = s;
	rv->op.c = &s->client;
	rv->done = done;
	rv->arg = arg;
	rv->serial = strdup(req->serial ? req->serial : "?");
	doc = json_pack("{s:s}", "certificate", b64);
	/* RFC 8555 §7.6: the reason is optional; unspecified (0) is left out. */
	if (doc && req->reason > 0)
		json_object_set_new(doc, "reason", json_integer(req->reason));
	rv->payload = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	rv->kick = evtimer_new(s->base, revoke_kick_cb, rv);
	if (!rv->serial || !rv->payload || !rv->kick) {
		acme_revoke_free(rv);
		return -ENOMEM;
	}
	evtimer_add(rv->kick, &zero);
	return 0;
}
