/* SPDX-License-Identifier: MIT */
/*
 * dns-01 for the acme CA (RFC 8555 §8.4): the TXT record
 * _acme-challenge.<name> is added by an RFC 2136 UPDATE signed with TSIG
 * (the zone found by an SOA query unless configured) or by a hook, then
 * polled for at the authoritative server(s) until it is visible, and
 * removed after validation. Everything runs on the event loop; the TSIG
 * secret stays in this file's struct and is never logged.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "acme-internal.h"
#include "certherd/crypto.h"
#include "certherd/dns.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/subproc.h"
#include "certherd/util.h"

#define DNS01_TTL 60
#define DNS01_QUERY_MS 3000

struct acme_dns01 {
	struct event_base *base;
	char *ca;
	char *server, *zone, *key_name;
	uint8_t *secret;
	size_t secret_len;
	char **hook, **check;
	int64_t timeout_usec;
	LIST_HEAD(, acme_dns01_op) ops;
};

enum dns01_step { STEP_ZONE, STEP_UPDATE, STEP_HOOK, STEP_WAIT };

struct acme_dns01_op {
	struct acme_dns01 *d;  /* NULL once the owner is gone (a hook still running) */
	bool add;
	char *fqdn, *value, *zone;
	enum dns01_step step;
	struct ch_dns_xfer *xfer;
	bool hook_running;
	uint8_t mac[32];
	struct event *timer;
	int64_t deadline;      /* monotonic usec, for the wait */
	size_t check_i;
	unsigned polls;
	acme_dns01_fn *fn;
	void *arg;
	LIST_ENTRY(acme_dns01_op) link;
};

static void op_next(struct acme_dns01_op *op);

static void
op_free(struct acme_dns01_op *op)
{
	if (op->d)
		LIST_REMOVE(op, link);
	ch_dns_xfer_cancel(op->xfer);
	if (op->timer)
		event_free(op->timer);
	free(op->fqdn);
	free(op->value);
	free(op->zone);
	free(op);
}

void
acme_dns01_cancel(struct acme_dns01_op *op)
{
	if (!op)
		return;
	op->fn = NULL;
	if (op->hook_running) {
		/* Freed when the hook ends. */
		ch_dns_xfer_cancel(op->xfer);
		op->xfer = NULL;
		return;
	}
	op_free(op);
}

static void op_finish(struct acme_dns01_op *op, bool ok, enum ch_ca_outcome outcome,
		      const char *fmt, ...) _printf_(4, 5);
static void
op_finish(struct acme_dns01_op *op, bool ok, enum ch_ca_outcome outcome, const char *fmt, ...)
{
	acme_dns01_fn *fn = op->fn;
	void *arg = op->arg;
	char msg[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!op->add) {
		if (ok)
			ch_log_debug("CA %s: dns-01: removed TXT %s", op->d ? op->d->ca : "?", op->fqdn);
		else
			ch_log_warning("CA %s: dns-01: cannot remove TXT %s: %s",
				       op->d ? op->d->ca : "?", op->fqdn, msg);
	}
	op_free(op);
	if (fn)
		fn(arg, ok, outcome, msg);
}

static uint16_t
dns01_id(void)
{
	uint16_t id = 0;

	if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1)
		id = (uint16_t)ch_mono_usec();
	return id;
}

static void
op_send(struct acme_dns01_op *op, const char *server, struct ch_dns_msg *m,
	ch_dns_done_fn *cb)
{
	int k = ch_dns_exchange(op->d->base, server, m->data, m->len, DNS01_QUERY_MS, cb, op,
				&op->xfer);

	ch_dns_msg_done(m);
	if (k < 0)
		op_finish(op, false, CH_CA_UNREACHABLE, "DNS server %s: %s", server, strerror(-k));
}

/* Parses an answer or finishes op; true with *r filled. */
static bool
op_reply(struct acme_dns01_op *op, const char *server, int k, const uint8_t *msg, size_t len,
	 struct ch_dns_reply *r)
{
	op->xfer = NULL;
	if (k < 0) {
		op_finish(op, false, CH_CA_UNREACHABLE, "DNS server %s: no answer (%s)", server,
			  strerror(-k));
		return false;
	}
	if (ch_dns_parse(msg, len, r) < 0) {
		op_finish(op, false, CH_CA_UNREACHABLE, "DNS server %s: malformed answer", server);
		return false;
	}
	return true;
}

/* --- the zone ----------------------------------------------------------------------- */

static void
op_zone_cb(int k, const uint8_t *msg, size_t len, void *arg)
{
	struct acme_dns01_op *op = arg;
	struct acme_dns01 *d = op->d;
	struct ch_dns_reply r;

	if (!op_reply(op, d->server, k, msg, len, &r))
		return;
	for (size_t i = 0; i < r.n_rrs && !op->zone; i++)
		if (r.rrs[i].type == CH_DNS_TYPE_SOA && r.rrs[i].section <= 2)
			op->zone = strdup(r.rrs[i].name);
	if (!op->zone) {
		op_finish(op, false, CH_CA_MISCONFIGURED,
			  "DNS server %s gives no SOA for %s (%s): it is not authoritative for its "
			  "zone; set dns_zone",
			  d->server, op->fqdn, ch_dns_rcode_to_string(r.rcode));
	} else {
		ch_log_debug("CA %s: dns-01: %s is in zone %s", d->ca, op->fqdn, op->zone);
		op->step = STEP_UPDATE;
		op_next(op);
	}
	ch_dns_reply_done(&r);
}

/* --- the update --------------------------------------------------------------------- */

static void
op_update_cb(int k, const uint8_t *msg, size_t len, void *arg)
{
	struct acme_dns01_op *op = arg;
	struct acme_dns01 *d = op->d;
	struct ch_dns_tsig_key key = { d->key_name, d->secret, d->secret_len };
	struct ch_dns_reply r;
	int tsig_err, v;

	if (!op_reply(op, d->server, k, msg, len, &r))
		return;
	tsig_err = r.has_tsig ? r.tsig_error : 0;
	if (tsig_err) {
		op_finish(op, false, CH_CA_MISCONFIGURED,
			  "DNS server %s rejected TSIG key '%s' (%s): check dns_tsig_key_file "
			  "and the key configured on the server",
			  d->server, d->key_name,
			  ch_dns_rcode_to_string(tsig_err ? tsig_err : r.rcode));
	} else if (r.rcode != CH_DNS_RCODE_NOERROR) {
		op_finish(op, false,
			  r.rcode == CH_DNS_RCODE_SERVFAIL ? CH_CA_UNREACHABLE : CH_CA_MISCONFIGURED,
			  "DNS server %s refused to %s TXT %s in zone %s (%s); does it allow updates "
			  "of that zone with key '%s'?",
			  d->server, op->add ? "add" : "remove", op->fqdn, op->zone,
			  ch_dns_rcode_to_string(r.rcode), d->key_name);
	} else if ((v = ch_dns_tsig_verify(msg, len, &r, &key, op->mac, sizeof(op->mac),
					   (uint64_t)ch_now())) < 0) {
		op_finish(op, false, CH_CA_MISCONFIGURED,
			  "DNS server %s: the answer's TSIG signature with key '%s' does not verify "
			  "(%s)",
			  d->server, d->key_name, v == -ETIME ? "clock skew" : "bad signature");
	} else if (!op->add) {
		op_finish(op, true, CH_CA_ISSUED, "removed");
	} else {
		ch_log_debug("CA %s: dns-01: added TXT %s in zone %s at %s", d->ca, op->fqdn,
			     op->zone, d->server);
		op->step = STEP_WAIT;
		op_next(op);
	}
	ch_dns_reply_done(&r);
}

/* --- the hook ------------------------------------------------------------------------ */

static void
op_hook_cb(int k, const char *message, void *arg)
{
	struct acme_dns01_op *op = arg;

	op->hook_running = false;
	if (!op->fn && op->add) {
		/* Cancelled meanwhile. */
		op_free(op);
		return;
	}
	if (!op->d) {
		/* The CA went away; a removal still reports. */
		op_finish(op, k >= 0, CH_CA_UNREACHABLE, "dns_hook remove %s: %s", op->fqdn, message);
		return;
	}
	if (k < 0)
		op_finish(op, false, CH_CA_UNREACHABLE, "dns_hook %s %s: %s",
			  op->add ? "add" : "remove", op->fqdn, message);
	else if (!op->add)
		op_finish(op, true, CH_CA_ISSUED, "removed");
	else {
		op->step = STEP_WAIT;
		op_next(op);
	}
}

static void
op_hook(struct acme_dns01_op *op)
{
	struct acme_dns01 *d = op->d;
	size_t n = ch_strv_length(d->hook);
	_cleanup_free_ char **argv = calloc(n + 4, sizeof(*argv));
	int k;

	if (!argv)
		abort();
	for (size_t i = 0; i < n; i++)
		argv[i] = d->hook[i];
	argv[n] = op->add ? "add" : "remove";
	argv[n + 1] = op->fqdn;
	argv[n + 2] = op->value;
	k = ch_subproc_run(d->base, argv, NULL, d->timeout_usec / CH_USEC_PER_SEC, op_hook_cb, op);
	if (k < 0) {
		op_finish(op, false, CH_CA_MISCONFIGURED, "dns_hook %s: cannot run %s: %s",
			  op->add ? "add" : "remove", d->hook[0], strerror(-k));
		return;
	}
	op->hook_running = true;
}

/* --- waiting until the record is visible -------------------------------------------- */

static const char *
op_check_server(const struct acme_dns01_op *op)
{
	return op->d->check ? op->d->check[op->check_i] : op->check_i == 0 ? op->d->server : NULL;
}

static void
op_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	op_next(arg);
}

static void
op_check_cb(int k, const uint8_t *msg, size_t len, void *arg)
{
	struct acme_dns01_op *op = arg;
	const char *server = op_check_server(op);
	struct ch_dns_reply r;
	bool seen = false;
	char txt[512];

	op->xfer = NULL;
	if (k >= 0 && ch_dns_parse(msg, len, &r) == 0) {
		for (size_t i = 0; i < r.n_rrs; i++)
			if (r.rrs[i].section == 1 && r.rrs[i].type == CH_DNS_TYPE_TXT &&
			    streq(r.rrs[i].name, op->fqdn) &&
			    ch_dns_txt(msg, len, &r.rrs[i], txt, sizeof(txt)) >= 0 &&
			    streq(txt, op->value))
				seen = true;
		ch_dns_reply_done(&r);
	}
	if (seen) {
		ch_log_debug("CA %s: dns-01: TXT %s visible at %s", op->d->ca, op->fqdn, server);
		op->check_i++;
		op->polls = 0;
		op_next(op);
		return;
	}
	if (ch_mono_usec() > op->deadline) {
		op_finish(op, false, CH_CA_UNREACHABLE,
			  "TXT %s is not visible at %s after %llds%s", op->fqdn, server,
			  (long long)(op->d->timeout_usec / CH_USEC_PER_SEC),
			  k < 0 ? " (no answer)" : "");
		return;
	}
	{
		int64_t ms = op->polls < 3 ? 250LL << op->polls : 2000;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

		op->polls++;
		evtimer_add(op->timer, &tv);
	}
}

/* Runs the current step. */
static void
op_next(struct acme_dns01_op *op)
{
	struct acme_dns01 *d = op->d;
	struct ch_dns_msg m;
	int k;

	switch (op->step) {
	case STEP_ZONE:
		if (op->zone) {
			op->step = STEP_UPDATE;
			op_next(op);
			return;
		}
		k = ch_dns_build_query(dns01_id(), op->fqdn, CH_DNS_TYPE_SOA, &m);
		if (k < 0) {
			op_finish(op, false, CH_CA_MISCONFIGURED, "bad DNS name %s", op->fqdn);
			return;
		}
		op_send(op, d->server, &m, op_zone_cb);
		return;
	case STEP_UPDATE: {
		struct ch_dns_tsig_key key = { d->key_name, d->secret, d->secret_len };

		k = ch_dns_build_update_txt(dns01_id(), op->zone, op->fqdn, op->add, op->value,
					    DNS01_TTL, &m);
		if (k >= 0)
			k = ch_dns_tsig_sign(&m, &key, (uint64_t)ch_now(), op->mac);
		if (k < 0) {
			ch_dns_msg_done(&m);
			op_finish(op, false, CH_CA_MISCONFIGURED, "cannot build the update of %s: %s",
				  op->fqdn, strerror(-k));
			return;
		}
		op_send(op, d->server, &m, op_update_cb);
		return;
	}
	case STEP_HOOK:
		op_hook(op);
		return;
	case STEP_WAIT:
		if (!op->deadline)
			op->deadline = ch_mono_usec() + d->timeout_usec;
		if (!op_check_server(op)) {
			op_finish(op, true, CH_CA_ISSUED, "published");
			return;
		}
		k = ch_dns_build_query(dns01_id(), op->fqdn, CH_DNS_TYPE_TXT, &m);
		if (k < 0) {
			op_finish(op, false, CH_CA_MISCONFIGURED, "bad DNS name %s", op->fqdn);
			return;
		}
		op_send(op, op_check_server(op), &m, op_check_cb);
		return;
	}
}

static int
op_new(struct acme_dns01 *d, bool add, const char *ident, const char *value,
       acme_dns01_fn *fn, void *arg, struct acme_dns01_op **ret)
{
	struct acme_dns01_op *op = calloc(1, sizeof(*op));

	if (!op)
		return -ENOMEM;
	op->d = d;
	op->add = add;
	op->fn = fn;
	op->arg = arg;
	LIST_INSERT_HEAD(&d->ops, op, link);
	/* The record of a wildcard's authorization is the base name's (RFC 8555 §8.4). */
	if (strncmp(ident, "*.", 2) == 0)
		ident += 2;
	if (asprintf(&op->fqdn, "_acme-challenge.%s", ident) < 0)
		op->fqdn = NULL;
	op->value = strdup(value);
	op->zone = d->zone ? strdup(d->zone) : NULL;
	op->timer = evtimer_new(d->base, op_timer_cb, op);
	if (!op->fqdn || !op->value || (d->zone && !op->zone) || !op->timer) {
		op_free(op);
		return -ENOMEM;
	}
	for (char *c = op->fqdn; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	op->step = d->hook ? STEP_HOOK : STEP_ZONE;
	if (ret)
		*ret = op;
	op_next(op);
	return 0;
}

int
acme_dns01_publish(struct acme_dns01 *d, const char *ident, const char *value,
		   acme_dns01_fn *fn, void *arg, struct acme_dns01_op **ret)
{
	return op_new(d, true, ident, value, fn, arg, ret);
}

void
acme_dns01_unpublish(struct acme_dns01 *d, const char *ident, const char *value)
{
	if (op_new(d, false, ident, value, NULL, NULL, NULL) < 0)
		ch_log_warning("CA %s: dns-01: cannot remove TXT _acme-challenge.%s: out of memory",
			       d->ca, ident);
}

/* --- setup --------------------------------------------------------------------------- */

static char **
strv_dup(char *const *v)
{
	size_t n = ch_strv_length(v);
	char **c = calloc(n + 1, sizeof(*c));

	for (size_t i = 0; c && i < n; i++)
		if (!(c[i] = strdup(v[i])))
			return ch_strv_free(c);
	return c;
}

/* Reads the TSIG key file; it must not be readable by anyone but the daemon. */
static int
dns01_load_key(struct acme_dns01 *d, const struct acme_dns01_conf *c, struct ch_err *reterr)
{
	char *text = NULL, err[200] = "";
	_cleanup_free_ char *name = NULL;
	struct stat st;
	size_t len = 0;
	int k;

	if (stat(c->tsig_key_file, &st) < 0)
		return ch_err_set(reterr, -errno, "dns_tsig_key_file %s: %s", c->tsig_key_file,
				  strerror(errno));
	if (st.st_mode & 077)
		return ch_err_set(reterr, -EPERM,
				  "dns_tsig_key_file %s is readable by others (mode %04o); make it "
				  "0600, owned by the daemon's user",
				  c->tsig_key_file, (unsigned)(st.st_mode & 07777));
	k = ch_read_file(c->tsig_key_file, 16384, &text, &len);
	if (k < 0)
		return ch_err_set(reterr, k, "dns_tsig_key_file %s: %s", c->tsig_key_file,
				  strerror(-k));
	k = ch_dns_tsig_key_parse(text, &name, &d->secret, &d->secret_len, err, sizeof(err));
	ch_secret_free(text, len);
	if (k < 0)
		return ch_err_set(reterr, k, "dns_tsig_key_file %s: %s", c->tsig_key_file,
				  k == -ENOMEM ? "out of memory" : err);
	if (name && c->tsig_key && strcasecmp(name, c->tsig_key) != 0)
		return ch_err_set(reterr, -EINVAL,
				  "dns_tsig_key '%s' differs from the key name '%s' in %s",
				  c->tsig_key, name, c->tsig_key_file);
	d->key_name = strdup(c->tsig_key ? c->tsig_key : name ? name : "");
	if (!d->key_name)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!*d->key_name)
		return ch_err_set(reterr, -EINVAL,
				  "%s holds a bare secret: set dns_tsig_key to the key's name",
				  c->tsig_key_file);
	return 0;
}

int
acme_dns01_new(struct event_base *base, const struct acme_dns01_conf *c, struct acme_dns01 **ret,
	       struct ch_err *reterr)
{
	struct acme_dns01 *d = calloc(1, sizeof(*d));
	int k;

	if (!d)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	LIST_INIT(&d->ops);
	d->base = base;
	d->timeout_usec = (c->timeout > 0 ? c->timeout : 120) * CH_USEC_PER_SEC;
	d->ca = strdup(c->ca_name);
	if (!d->ca || (c->server && !(d->server = strdup(c->server))) ||
	    (c->zone && !(d->zone = strdup(c->zone))) || (c->hook && !(d->hook = strv_dup(c->hook))) ||
	    (c->check && !(d->check = strv_dup(c->check)))) {
		acme_dns01_free(d);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	if (d->zone && d->zone[0] && d->zone[strlen(d->zone) - 1] == '.')
		d->zone[strlen(d->zone) - 1] = '\0';
	if (!c->hook) {
		k = dns01_load_key(d, c, reterr);
		if (k < 0) {
			acme_dns01_free(d);
			return k;
		}
	}
	*ret = d;
	return 0;
}

void
acme_dns01_free(struct acme_dns01 *d)
{
	struct acme_dns01_op *op;

	if (!d)
		return;
	while ((op = LIST_FIRST(&d->ops))) {
		LIST_REMOVE(op, link);
		op->d = NULL;
		op->fn = NULL;
		if (op->hook_running) {
			/* The hook reports to the log when it ends; the op frees itself then. */
			ch_dns_xfer_cancel(op->xfer);
			op->xfer = NULL;
		} else {
			op_free(op);
		}
	}
	ch_dns_secret_free(d->secret, d->secret_len);
	free(d->key_name);
	free(d->ca);
	free(d->server);
	free(d->zone);
	ch_strv_free(d->hook);
	ch_strv_free(d->check);
	free(d);
}
