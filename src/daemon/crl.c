/* SPDX-License-Identifier: MIT */
/*
 * CRL publishing for the CAs that sign their own (local, pkcs11): one CRL
 * per CA listing its revoked, unexpired issuances, signed by the CA key
 * (a token key through its signer), regenerated on every revocation and
 * once half of its validity has passed. The CRL and its number are
 * committed to the inventory before the files are written, so a number is
 * never reused for other contents; after a crash the files are rewritten
 * from the inventory. The files (PEM at crl_path, DER beside it) are
 * replaced atomically and durably, and `crl_listen` serves the DER at
 * /crl/NAME.crl.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "certherd/crl.h"
#include "certherd/crypto.h"
#include "certherd/log.h"
#include "certherd/metrics.h"
#include "certherd/util.h"
#include "daemon.h"

#define CRL_RETRY 60       /* seconds before a failed CRL is tried again */
#define CRL_TIMER_MAX 60   /* the timer looks at least this often (clock jumps) */
#define CRL_FILE_MAX (64 * 1024 * 1024)

struct crl_state {
	char *ca;
	int64_t retry_at; /* after a failure; 0 = none */
};

struct crls {
	struct daemon *d;
	struct evhttp *http;
	char *listen;
	struct event *timer;
	struct crl_state *v;
	size_t n;
};

static struct crls *
crls_get(struct daemon *d)
{
	if (!d->crls) {
		d->crls = ch_xcalloc(1, sizeof(*d->crls));
		d->crls->d = d;
	}
	return d->crls;
}

static struct crl_state *
crl_state(struct crls *c, const char *ca)
{
	for (size_t i = 0; i < c->n; i++)
		if (streq(c->v[i].ca, ca))
			return &c->v[i];
	c->v = realloc(c->v, (c->n + 1) * sizeof(*c->v));
	if (!c->v)
		abort();
	c->v[c->n] = (struct crl_state){ .ca = ch_xstrdup(ca) };
	return &c->v[c->n++];
}

/* The CA of the current configuration that publishes CRLs, or NULL. */
static struct ch_ca *
crl_ca(struct daemon *d, const char *name)
{
	struct ch_ca *ca = daemon_find_ca(d->gen, name);

	if (!ca || !ca->ops->sign_crl || !ca->ops->crl_settings)
		return NULL;
	return ca;
}

/* crl.pem -> crl.der; any other name gets ".der" appended. Caller frees. */
static char *
crl_der_path(const char *pem_path)
{
	size_t len = strlen(pem_path);

	if (len > 4 && streq(pem_path + len - 4, ".pem"))
		return ch_xasprintf("%.*s.der", (int)(len - 4), pem_path);
	return ch_xasprintf("%s.der", pem_path);
}

static int
crl_write_one(const char *path, const void *data, size_t len, struct ch_err *err)
{
	_cleanup_free_ char *dir = ch_xstrdup(path);
	char *slash = strrchr(dir, '/');
	int r;

	if (slash && slash != dir) {
		*slash = '\0';
		r = ch_mkdir_p(dir, 0755);
		if (r < 0)
			return ch_err_set(err, r, "cannot create %s: %s", dir, strerror(-r));
	}
	return ch_write_file_atomic(path, data, len, 0644, (uid_t)-1, (gid_t)-1, err);
}

/* Writes the PEM and DER files of a CRL unless they already hold it. */
static int
crl_write_files(const struct ch_crl_settings *set, const unsigned char *der, size_t der_len,
		struct ch_err *err)
{
	_cleanup_free_ char *der_path = crl_der_path(set->path);
	_cleanup_free_ char *pem = NULL, *old = NULL;
	const unsigned char *p = der;
	X509_CRL *crl;
	size_t old_len = 0;
	int r;

	crl = d2i_X509_CRL(NULL, &p, (long)der_len);
	if (!crl) {
		ERR_clear_error();
		return ch_err_set(err, -EBADMSG, "the stored CRL cannot be decoded");
	}
	r = ch_crl_to_pem(crl, &pem);
	X509_CRL_free(crl);
	if (r < 0)
		return ch_err_set(err, r, "cannot encode the CRL");
	if (ch_read_file(set->path, CRL_FILE_MAX, &old, &old_len) < 0 || old_len != strlen(pem) ||
	    memcmp(old, pem, old_len) != 0) {
		r = crl_write_one(set->path, pem, strlen(pem), err);
		if (r < 0)
			return r;
	}
	free(old);
	old = NULL;
	if (ch_read_file(der_path, CRL_FILE_MAX, &old, &old_len) < 0 || old_len != der_len ||
	    memcmp(old, der, der_len) != 0)
		return crl_write_one(der_path, der, der_len, err);
	return 0;
}

struct crl_collect {
	struct ch_crl_entry *v;
	size_t n, cap;
};

static int
crl_collect_cb(const struct ch_store_issuance *i, void *arg)
{
	struct crl_collect *c = arg;
	enum ch_crl_reason reason = ch_crl_reason_from_string(i->revocation_reason);

	if (!i->serial)
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (!c->v)
			abort();
	}
	c->v[c->n++] = (struct ch_crl_entry){
		.serial = ch_xstrdup(i->serial),
		.revoked_at = i->revoked_at,
		.reason = reason < 0 || reason == CH_CRL_REASON_REMOVE_FROM_CRL
				  ? CH_CRL_REASON_UNSPECIFIED
				  : reason,
	};
	return 0;
}

static void
crl_collect_done(struct crl_collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		free((char *)c->v[i].serial);
	free(c->v);
}

static void crl_arm(struct daemon *d);

static void
crl_event(struct daemon *d, const char *event, const char *detail)
{
	if (store_txn(d) == 0)
		ch_store_event_add(d->store, ch_now(), NULL, "crl", event, detail);
}

int
crl_publish(struct daemon *d, const char *ca_name, const char *why, int64_t *ret_number,
	    struct ch_err *err)
{
	struct ch_ca *ca = crl_ca(d, ca_name);
	const struct ch_crl_settings *set;
	struct crl_state *st = crl_state(crls_get(d), ca_name);
	struct ch_store_crl old = { 0 }, row = { 0 };
	struct crl_collect entries = { 0 };
	struct ch_crl_request req;
	X509_CRL *crl = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	int64_t now = ch_now();
	char detail[600];
	int r;

	if (!ca)
		return ch_err_set(err, -EOPNOTSUPP, "CA %s publishes no CRL", ca_name);
	set = ca->ops->crl_settings(ca->state);
	r = ch_store_crl_get(d->store, ca_name, &old);
	if (r < 0 && r != -ENOENT) {
		ch_err_set(err, r, "cannot read the last CRL from the inventory");
		goto fail;
	}
	r = ch_store_issuance_foreach_revoked(d->store, ca_name, now, crl_collect_cb, &entries);
	if (r < 0) {
		ch_err_set(err, r, "cannot read revoked certificates from the inventory");
		goto fail;
	}
	req = (struct ch_crl_request){
		.entries = entries.v,
		.n_entries = entries.n,
		.number = (uint64_t)old.number + 1,
		.this_update = now,
		.next_update = now + set->validity,
	};
	r = ca->ops->sign_crl(ca->state, &req, &crl, err);
	if (r < 0)
		goto fail;
	r = ch_crl_to_der(crl, &der, &der_len);
	X509_CRL_free(crl);
	if (r < 0) {
		ch_err_set(err, r, "cannot encode the CRL");
		goto fail;
	}
	/* The number is durable before any file shows it: never reused. */
	row = (struct ch_store_crl){ (char *)ca_name, (int64_t)req.number, req.this_update,
				     req.next_update, der, der_len };
	r = store_txn(d);
	if (r >= 0)
		r = ch_store_crl_put(d->store, &row);
	if (r >= 0)
		r = store_flush(d);
	if (r < 0) {
		ch_err_set(err, r, "cannot record the CRL in the inventory");
		goto fail;
	}
	r = crl_write_files(set, der, der_len, err);
	OPENSSL_free(der);
	der = NULL;
	if (r < 0)
		goto fail;
	st->retry_at = 0;
	snprintf(detail, sizeof(detail), "CA %s: CRL number %llu, %zu revoked, next update %s (%s)",
		 ca_name, (unsigned long long)req.number, entries.n,
		 ch_format_time(req.next_update, (char[32]){ 0 }, 32), why);
	crl_event(d, "published", detail);
	ch_log_notice("%s", detail);
	if (ret_number)
		*ret_number = (int64_t)req.number;
	crl_collect_done(&entries);
	ch_store_crl_done(&old);
	crl_arm(d);
	return 0;
fail:
	OPENSSL_free(der);
	st->retry_at = now + CRL_RETRY;
	snprintf(detail, sizeof(detail), "CA %s: %.400s", ca_name, err->msg);
	crl_event(d, "failed", detail);
	ch_log_error("Cannot publish the CRL of CA %s (%s): %s; retrying in %ds", ca_name, why,
		     err->msg, CRL_RETRY);
	crl_collect_done(&entries);
	ch_store_crl_done(&old);
	crl_arm(d);
	return r;
}

/* When the CRL of ca must be made again, or 0 when it is fine as it is. */
static int64_t
crl_due(struct daemon *d, struct ch_ca *ca, const struct ch_store_crl *row,
	const struct crl_state *st)
{
	const struct ch_crl_settings *set = ca->ops->crl_settings(ca->state);

	if (st->retry_at)
		return st->retry_at;
	if (!row->der || row->next_update - row->this_update != set->validity)
		return 1;
	/* Regenerated when half of its validity has passed. */
	return row->this_update + set->validity / 2;
}

/* The stored CRL is of this CA certificate (after a new CA or key, it is not). */
static bool
crl_matches_ca(struct ch_ca *ca, const struct ch_store_crl *row)
{
	const char *pem = ca->ops->trust_pem ? ca->ops->trust_pem(ca->state) : NULL;
	const unsigned char *p = row->der;
	X509_CRL *crl;
	X509 *x = NULL;
	bool ok;

	if (!pem) /* not known yet (a token not reached): keep what is there */
		return true;
	if (ch_cert_from_pem(pem, strlen(pem), &x, NULL) < 0)
		return true;
	crl = d2i_X509_CRL(NULL, &p, (long)row->der_len);
	ok = crl && X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1;
	X509_CRL_free(crl);
	X509_free(x);
	ERR_clear_error();
	return ok;
}

/* Publishes what is due; on start-up also rewrites files that differ. */
static void
crl_check_all(struct daemon *d, bool files)
{
	int64_t now = ch_now();

	for (size_t i = 0; i < d->gen->n_cas; i++) {
		struct ch_ca *ca = d->gen->cas[i];
		struct ch_store_crl row = { 0 };
		struct ch_err err = { "" };
		struct crl_state *st;
		int64_t due;

		if (!crl_ca(d, ca->name))
			continue;
		st = crl_state(crls_get(d), ca->name);
		if (ch_store_crl_get(d->store, ca->name, &row) < 0)
			row = (struct ch_store_crl){ 0 };
		due = crl_due(d, ca, &row, st);
		if (files && row.der && !crl_matches_ca(ca, &row))
			due = 1;
		if (due <= now)
			crl_publish(d, ca->name, row.der ? "due" : "first", NULL, &err);
		else if (files && row.der &&
			 crl_write_files(ca->ops->crl_settings(ca->state), row.der, row.der_len,
					 &err) < 0)
			ch_log_error("Cannot write the CRL files of CA %s: %s", ca->name, err.msg);
		ch_store_crl_done(&row);
	}
}

static void
crl_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping)
		return;
	crl_check_all(d, false);
	store_flush(d);
	crl_arm(d);
}

static void
crl_arm(struct daemon *d)
{
	struct crls *c = crls_get(d);
	int64_t next = 0, now = ch_now();
	struct timeval tv = { 0, 0 };

	if (d->stopping || !c->timer)
		return;
	for (size_t i = 0; i < d->gen->n_cas; i++) {
		struct ch_ca *ca = d->gen->cas[i];
		struct ch_store_crl row = { 0 };
		int64_t due;

		if (!crl_ca(d, ca->name))
			continue;
		if (ch_store_crl_get(d->store, ca->name, &row) < 0)
			row = (struct ch_store_crl){ 0 };
		due = crl_due(d, ca, &row, crl_state(c, ca->name));
		ch_store_crl_done(&row);
		if (!next || due < next)
			next = due;
	}
	if (!next) {
		event_del(c->timer);
		return;
	}
	tv.tv_sec = next > now ? next - now : 0;
	if (tv.tv_sec > CRL_TIMER_MAX)
		tv.tv_sec = CRL_TIMER_MAX;
	evtimer_add(c->timer, &tv);
}

/* ---- HTTP ---------------------------------------------------------------- */

static void
crl_http_cb(struct evhttp_request *req, void *arg)
{
	struct crls *c = arg;
	struct daemon *d = c->d;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct ch_store_crl row = { 0 };
	struct evbuffer *out;
	char name[256];
	size_t len;

	if (!path || strncmp(path, "/crl/", 5) != 0 || (len = strlen(path + 5)) <= 4 ||
	    len - 4 >= sizeof(name) || !streq(path + 5 + len - 4, ".crl")) {
		httpd_reply_text(req, HTTP_NOTFOUND, "Not Found", "not found; try /crl/NAME.crl");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		httpd_reply_text(req, 405, "Method Not Allowed", "only GET and HEAD");
		return;
	}
	memcpy(name, path + 5, len - 4);
	name[len - 4] = '\0';
	if (!crl_ca(d, name) || ch_store_crl_get(d->store, name, &row) < 0 || !row.der) {
		ch_store_crl_done(&row);
		httpd_reply_text(req, HTTP_NOTFOUND, "Not Found", "no CRL for this CA");
		return;
	}
	out = evbuffer_new();
	if (!out || evbuffer_add(out, row.der, row.der_len) < 0) {
		if (out)
			evbuffer_free(out);
		ch_store_crl_done(&row);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/pkix-crl");
	{
		/* Caches may keep it until the next update is due. */
		int64_t age = row.next_update - ch_now();
		char cc[64];

		snprintf(cc, sizeof(cc), "max-age=%lld", (long long)(age > 0 ? age : 0));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", cc);
	}
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
	ch_store_crl_done(&row);
}

static int
crl_listen_setup(struct daemon *d)
{
	struct crls *c = crls_get(d);
	const char *want = d->gen->conf->crl_listen;
	_cleanup_free_ char *host = NULL;
	struct evhttp *http;
	uint16_t port;

	if (ch_metrics_listen_disabled(want)) {
		if (c->http) {
			ch_log_notice("CRL listener on %s closed", c->listen);
			evhttp_free(c->http);
		}
		c->http = NULL;
		free(c->listen);
		c->listen = NULL;
		return 0;
	}
	if (c->http && streq(c->listen, want))
		return 0;
	if (ch_metrics_parse_listen(want, &host, &port) < 0)
		return ch_log_error_errno(-EINVAL, "crl_listen: cannot parse \"%s\"", want);
	http = httpd_listen(d, host, port, crl_http_cb, c);
	if (!http) {
		ch_log_error("Cannot listen for CRLs on %s: %m", want);
		return -EADDRNOTAVAIL;
	}
	if (c->http)
		evhttp_free(c->http);
	c->http = http;
	free(c->listen);
	c->listen = ch_xstrdup(want);
	ch_log_info("Serving CRLs on http://%s/crl/NAME.crl", want);
	return 0;
}

int
crl_setup(struct daemon *d)
{
	struct crls *c = crls_get(d);

	if (!c->timer) {
		c->timer = evtimer_new(d->base, crl_timer_cb, d);
		if (!c->timer)
			return -ENOMEM;
	}
	crl_check_all(d, true);
	store_flush(d);
	crl_arm(d);
	return crl_listen_setup(d);
}

void
crl_free(struct daemon *d)
{
	struct crls *c = d->crls;

	if (!c)
		return;
	if (c->timer)
		event_free(c->timer);
	if (c->http)
		evhttp_free(c->http);
	free(c->listen);
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].ca);
	free(c->v);
	free(c);
	d->crls = NULL;
}
