/* SPDX-License-Identifier: MIT */
/*
 * Revocation from the status socket: the issuance named by a certificate
 * (its current one) or a serial is marked revoked with a reason in the
 * inventory, together with an event and, when it is the current issuance
 * of a wanted certificate, a forced renewal so a new certificate replaces
 * it. Once that is committed, the issuing CA is told (ops->revoke, when it
 * has one) and, for a CA that signs CRLs, a new CRL is published.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/crl.h"
#include "certherd/ctl.h"
#include "certherd/log.h"
#include "certherd/util.h"
#include "daemon.h"

/* "0A:1B", "0x0a1b", "a1b" -> "0a1b" (BN_bn2hex's form, lowercase); false if not hex. */
static bool
revoke_normalize_serial(const char *in, char *buf, size_t size)
{
	char digits[80];
	size_t n = 0;
	const char *p = in;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	for (; *p; p++) {
		if (*p == ':')
			continue;
		if (!isxdigit((unsigned char)*p) || n + 1 >= sizeof(digits))
			return false;
		if (n == 0 && *p == '0')
			continue; /* leading zeros */
		digits[n++] = (char)tolower((unsigned char)*p);
	}
	digits[n] = '\0';
	if (n == 0 || n + 2 > size)
		return false;
	if (n % 2)
		*buf++ = '0';
	memcpy(buf, digits, n + 1);
	return true;
}

struct revoke_ca_job {
	struct daemon *d;
	struct generation *gen;
	char *cert;
	char *serial;
	char *ca;
};

static void
revoke_ca_done(int r, const char *message, void *arg)
{
	struct revoke_ca_job *j = arg;
	struct daemon *d = j->d;
	char detail[1024];

	if (r < 0) {
		snprintf(detail, sizeof(detail), "CA %s did not revoke serial %s: %s", j->ca,
			 j->serial, message && message[0] ? message : strerror(-r));
		ch_log_cert(LOG_ERR, j->cert, "revoke", "%s", detail);
	} else
		snprintf(detail, sizeof(detail), "CA %s revoked serial %s", j->ca, j->serial);
	if (store_txn(d) == 0)
		ch_store_event_add(d->store, ch_now(), j->cert, "revoke",
				   r < 0 ? "ca-failed" : "ca-revoked", detail);
	generation_unref(d, j->gen);
	free(j->cert);
	free(j->serial);
	free(j->ca);
	free(j);
}

/* Finds the issuance: the current one of certificate `what`, or by serial. */
static int
revoke_find(struct daemon *d, const char *what, struct ch_store_issuance *iss,
	    struct ch_store_cert *cert, char *errbuf, size_t errlen)
{
	char serial[96]; /* room for 80 digits and a leading 0 */
	int r;

	r = ch_store_cert_get(d->store, what, cert);
	if (r == 0) {
		if (!cert->current_issuance) {
			snprintf(errbuf, errlen, "'%s' has no issued certificate to revoke", what);
			return -ENOENT;
		}
		r = ch_store_issuance_get(d->store, cert->current_issuance, iss);
		if (r < 0)
			snprintf(errbuf, errlen, "cannot read the current issuance of '%s'", what);
		return r;
	}
	if (r != -ENOENT) {
		snprintf(errbuf, errlen, "cannot read the inventory: %s", strerror(-r));
		return r;
	}
	if (!revoke_normalize_serial(what, serial, sizeof(serial)) ||
	    ch_store_issuance_get_by_serial(d->store, serial, iss) < 0) {
		snprintf(errbuf, errlen, "no certificate named '%s' and no issuance with that serial",
			 what);
		return -ENOENT;
	}
	r = ch_store_cert_get_by_id(d->store, iss->cert_id, cert);
	if (r < 0)
		snprintf(errbuf, errlen, "cannot read the certificate of serial %s", serial);
	return r;
}

json_t *
revoke_request(struct daemon *d, const char *what, const char *reason_s)
{
	struct ch_store_issuance iss = { 0 };
	struct ch_store_cert sc = { 0 };
	enum ch_crl_reason reason = ch_crl_reason_from_string(reason_s);
	const char *reason_name;
	struct ch_ca *ca;
	struct ch_err err = { "" };
	int64_t now = ch_now(), crl_number = 0;
	bool reissue = false;
	char errbuf[512], detail[512];
	json_t *reply;
	int r;

	if (reason < 0 || reason == CH_CRL_REASON_REMOVE_FROM_CRL)
		return ch_ctl_error("unknown revocation reason '%s'; one of: %s",
				    reason_s ? reason_s : "", ch_crl_reasons_list());
	reason_name = ch_crl_reason_to_string(reason);
	store_flush(d);
	r = revoke_find(d, what, &iss, &sc, errbuf, sizeof(errbuf));
	if (r < 0) {
		reply = ch_ctl_error("%s", errbuf);
		goto out;
	}
	if (iss.revoked_at) {
		char t[32];

		reply = ch_ctl_error("serial %s of '%s' was already revoked at %s (%s)", iss.serial,
				     sc.name, ch_format_time(iss.revoked_at, t, sizeof(t)),
				     iss.revocation_reason ? iss.revocation_reason : "unspecified");
		goto out;
	}

	r = store_txn(d);
	if (r >= 0)
		r = ch_store_issuance_revoke(d->store, iss.id, now, reason_name);
	if (r < 0) {
		ch_store_rollback(d->store);
		reply = ch_ctl_error("cannot record the revocation: %s", strerror(-r));
		goto out;
	}
	snprintf(detail, sizeof(detail), "serial %s, reason %s, CA %s", iss.serial, reason_name,
		 iss.ca ? iss.ca : "-");
	ch_store_event_add(d->store, now, sc.name, "revoke", "revoked", detail);
	if (sc.wanted && sc.current_issuance == iss.id) {
		/* A revoked certificate must not stay deployed: replace it now. */
		sc.force = true;
		sc.next_at = now;
		ch_store_cert_update(d->store, &sc);
		ch_store_event_add(d->store, now, sc.name, "issue", "forced",
				   "the current certificate was revoked");
		reissue = true;
	}
	r = store_flush(d);
	if (r < 0) {
		reply = ch_ctl_error("cannot commit the revocation: %s", strerror(-r));
		goto out;
	}
	ch_log_cert(LOG_NOTICE, sc.name, "revoke", "Revoked serial %s (%s)%s", iss.serial,
		    reason_name, reissue ? "; renewing now" : "");

	ca = iss.ca ? daemon_find_ca(d->gen, iss.ca) : NULL;
	if (ca && ca->ops->revoke && !iss.adopted) {
		struct revoke_ca_job *j = ch_xcalloc(1, sizeof(*j));
		struct ch_revoke_request req = {
			.cert_name = sc.name,
			.serial = iss.serial,
			.cert_pem = iss.cert_pem,
			.reason = (int)reason,
		};

		j->d = d;
		j->gen = d->gen;
		j->gen->refs++;
		j->cert = ch_xstrdup(sc.name);
		j->serial = ch_xstrdup(iss.serial);
		j->ca = ch_xstrdup(ca->name);
		r = ca->ops->revoke(ca->state, &req, revoke_ca_done, j);
		if (r < 0)
			revoke_ca_done(r, "the CA backend could not start the request", j);
	}
	if (ca && ca->ops->sign_crl && !iss.adopted) {
		if (crl_publish(d, ca->name, "revocation", &crl_number, &err) < 0)
			crl_number = 0;
	}
	if (reissue)
		sched_kick(d);
	reply = json_pack("{s:b,s:s,s:s,s:s,s:I,s:s?,s:b}", "ok", 1, "name", sc.name, "serial",
			  iss.serial, "reason", reason_name, "revoked_at", (json_int_t)now, "ca",
			  iss.ca, "reissue", reissue);
	if (crl_number)
		json_object_set_new(reply, "crl_number", json_integer(crl_number));
	else if (err.msg[0])
		json_object_set_new(reply, "crl_error", json_string(err.msg));
out:
	ch_store_issuance_done(&iss);
	ch_store_cert_done(&sc);
	return reply;
}
