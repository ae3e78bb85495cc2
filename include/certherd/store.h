/* SPDX-License-Identifier: MIT */
/*
 * The inventory: one SQLite database (WAL, synchronous=FULL) holding the
 * desired certificates and their schedule, every issuance, every
 * deployment per issuance and target, and an append-only event log.
 * The schema is migrated by numbered steps tracked in PRAGMA user_version.
 * Times are Unix epoch seconds; 0 means "none". States are stored as words.
 *
 * Returned structs own their strings; release with the matching _done().
 * Errors: -ENOENT (no row), -EEXIST (constraint), -EBUSY, -EIO.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "certherd/err.h"

struct ch_store;

int ch_store_open(const char *path, struct ch_store **ret, struct ch_err *reterr);
struct ch_store *ch_store_free(struct ch_store *s);
/*
 * How long a statement waits for a lock another process holds before it
 * fails with -EBUSY (5 s after ch_store_open). The daemon waits briefly, so
 * a long lock never stalls its event loop.
 */
void ch_store_set_busy_timeout(struct ch_store *s, int msec);
/* Schema version after migrations (PRAGMA user_version). */
int ch_store_schema_version(struct ch_store *s);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Nested begin is -EBUSY; commit without a
 * transaction is -EINVAL; rollback without one is a no-op. */
int ch_store_begin(struct ch_store *s);
int ch_store_commit(struct ch_store *s);
int ch_store_rollback(struct ch_store *s);

/* Runs PRAGMA integrity_check; 0 when "ok", -EIO otherwise. */
int ch_store_integrity_check(struct ch_store *s);

struct ch_store_cert {
	int64_t id;
	char *name;
	char *spec;       /* canonical desired state; a change forces renewal */
	bool wanted;      /* false once removed from the config */
	char *state;      /* new | valid | issuing | failing | retired */
	int64_t next_at;  /* next scheduler action; indexed; 0 = none */
	int64_t renew_at; /* planned renewal time of the current issuance */
	int failures;     /* consecutive failed attempts */
	char *last_outcome; /* issued | ca-unreachable | rejected | misconfigured | ... */
	char *last_error;
	int64_t last_attempt_at;
	int64_t last_success_at;
	int64_t current_issuance; /* issuance id, 0 = none */
	char *pending_idem;       /* idempotency key of the renewal in flight */
	char *pending_key;        /* path of the next key, kept apart */
	bool force;               /* a forced renewal was requested */
	char *ca_active;          /* CA of the `ca:` list the renewal goes to; NULL = the first */
	int ca_failures;          /* failed attempts in a row at ca_active */
	/* Read-only, filled by the getters from the current issuance: */
	char *cur_serial;
	int64_t cur_not_before;
	int64_t cur_not_after;
};
void ch_store_cert_done(struct ch_store_cert *c);

/* Inserts c (c->id is set). -EEXIST if the name exists. */
int ch_store_cert_insert(struct ch_store *s, struct ch_store_cert *c);
/* Updates every writable column of the row c->id. */
int ch_store_cert_update(struct ch_store *s, const struct ch_store_cert *c);
int ch_store_cert_get(struct ch_store *s, const char *name, struct ch_store_cert *ret);
int ch_store_cert_get_by_id(struct ch_store *s, int64_t id, struct ch_store_cert *ret);
/* Calls fn for every certificate ordered by name; fn returning <0 stops.
 * The struct passed to fn is borrowed: valid only during the callback. */
int ch_store_cert_foreach(struct ch_store *s,
			  int (*fn)(const struct ch_store_cert *c, void *arg), void *arg);
/* Like foreach for at most limit certificates named after `after` ("" or
 * NULL: from the first). Returns how many were visited, or <0. */
int ch_store_cert_foreach_page(struct ch_store *s, const char *after, int limit,
			       int (*fn)(const struct ch_store_cert *c, void *arg), void *arg);
/* The wanted certificate with the smallest next_at > 0 (index lookup). */
int ch_store_cert_next_due(struct ch_store *s, struct ch_store_cert *ret);
/* Number of certificates per state: fn(state, count, arg). */
int ch_store_cert_count_by_state(struct ch_store *s,
				 void (*fn)(const char *state, int64_t n, void *arg), void *arg);

struct ch_store_issuance {
	int64_t id;
	int64_t cert_id;
	char *serial;      /* lowercase hex */
	char *fingerprint; /* SHA-256 of the DER, lowercase hex */
	int64_t not_before, not_after, issued_at;
	char *ca;
	char *idem_key;    /* unique */
	char *cert_pem;    /* leaf */
	char *chain_pem;   /* intermediates (may be empty) */
	char *key_path;    /* private key file in the state dir */
	int64_t revoked_at;
	char *revocation_reason;
	bool adopted;      /* taken over from existing files, not issued by us */
};
void ch_store_issuance_done(struct ch_store_issuance *i);
/* Inserts i (i->id is set). -EEXIST when idem_key already exists. */
int ch_store_issuance_insert(struct ch_store *s, struct ch_store_issuance *i);
int ch_store_issuance_get(struct ch_store *s, int64_t id, struct ch_store_issuance *ret);
int ch_store_issuance_get_by_idem(struct ch_store *s, const char *idem,
				  struct ch_store_issuance *ret);
int ch_store_issuance_get_by_serial(struct ch_store *s, const char *serial,
				    struct ch_store_issuance *ret);
/* Newest first, at most limit (0 = all). */
int ch_store_issuance_foreach_for_cert(struct ch_store *s, int64_t cert_id, int limit,
				       int (*fn)(const struct ch_store_issuance *i, void *arg),
				       void *arg);
int ch_store_issuance_revoke(struct ch_store *s, int64_t id, int64_t at, const char *reason);
/* Revoked issuances of CA ca (not adopted) expiring at or after not_after_min, oldest
 * first. The struct passed to fn is valid only during the callback. */
int ch_store_issuance_foreach_revoked(struct ch_store *s, const char *ca, int64_t not_after_min,
				      int (*fn)(const struct ch_store_issuance *i, void *arg),
				      void *arg);

/* The last CRL published for a CA. */
struct ch_store_crl {
	char *ca;
	int64_t number; /* cRLNumber; only ever grows */
	int64_t this_update, next_update;
	unsigned char *der;
	size_t der_len;
};
void ch_store_crl_done(struct ch_store_crl *c);
/* -ENOENT when the CA has none yet. */
int ch_store_crl_get(struct ch_store *s, const char *ca, struct ch_store_crl *ret);
/* Inserts or replaces the CA's row. */
int ch_store_crl_put(struct ch_store *s, const struct ch_store_crl *c);

struct ch_store_deployment {
	int64_t id;
	int64_t issuance_id;
	char *target;
	char *state; /* pending | deployed | failed | superseded */
	int64_t attempted_at, succeeded_at, verified_at;
	int64_t next_at; /* next attempt; 0 = none; indexed */
	int attempts;
	char *last_error;
	/* Read-only, filled by the getters: */
	char *cert_name;
};
void ch_store_deployment_done(struct ch_store_deployment *d);
/* Creates the (issuance, target) row in state pending with next_at, unless it exists. */
int ch_store_deployment_ensure(struct ch_store *s, int64_t issuance_id, const char *target,
			       int64_t next_at);
/* Updates the row d->id, or (d->issuance_id, d->target) when d->id is 0. A NULL
 * state keeps the stored one. -ENOENT if there is no such row. */
int ch_store_deployment_update(struct ch_store *s, const struct ch_store_deployment *d);
int ch_store_deployment_get(struct ch_store *s, int64_t issuance_id, const char *target,
			    struct ch_store_deployment *ret);
int ch_store_deployment_foreach_for_issuance(struct ch_store *s, int64_t issuance_id,
					     int (*fn)(const struct ch_store_deployment *d, void *arg),
					     void *arg);
/* The deployment with the smallest next_at > 0 not in state deployed/superseded. */
int ch_store_deployment_next_due(struct ch_store *s, struct ch_store_deployment *ret);
/*
 * After a restart: deployments in state pending or failed whose next_at
 * lies in the future because a run was in flight (attempted_at within the
 * last lease) become due at now. Returns the number of rows changed.
 */
int ch_store_deployment_reset_leases(struct ch_store *s, int64_t now);
/* Deployments in state failed (or retried and pending), newest issuance first. */
int ch_store_deployment_foreach_failed(struct ch_store *s,
				       int (*fn)(const struct ch_store_deployment *d, void *arg),
				       void *arg);
/* Marks every unfinished deployment of older issuances of cert_id superseded. */
int ch_store_deployment_supersede_older(struct ch_store *s, int64_t cert_id, int64_t issuance_id);

/*
 * An endpoint that must serve a certificate, and what a TLS handshake
 * last found there.
 */
struct ch_store_endpoint {
	int64_t id;
	int64_t cert_id;
	char *endpoint;    /* "host:port" as configured */
	char *state;       /* unknown | verified | stale | foreign | unreachable | handshake-error */
	char *serial;      /* what it served at the last check */
	char *fingerprint;
	int64_t not_after;
	int64_t checked_at;
	int64_t state_since; /* when the current state began */
	int64_t verified_at; /* last time it served the newest issuance */
	int64_t next_at;     /* next check; indexed; 0 = none */
	char *message;
	/* Read-only, filled by the getters: */
	char *cert_name;
};
void ch_store_endpoint_done(struct ch_store_endpoint *e);
/* Creates the (cert, endpoint) row in state unknown, unless it exists. */
int ch_store_endpoint_ensure(struct ch_store *s, int64_t cert_id, const char *endpoint,
			     int64_t next_at);
int ch_store_endpoint_get(struct ch_store *s, int64_t id, struct ch_store_endpoint *ret);
int ch_store_endpoint_update(struct ch_store *s, const struct ch_store_endpoint *e);
int ch_store_endpoint_delete(struct ch_store *s, int64_t id);
/* The struct passed to fn is borrowed: valid only during the callback. */
int ch_store_endpoint_foreach_for_cert(struct ch_store *s, int64_t cert_id,
				       int (*fn)(const struct ch_store_endpoint *e, void *arg),
				       void *arg);
/* Endpoints of wanted certificates not verified, oldest state first, at most 1000. */
int ch_store_endpoint_foreach_problem(struct ch_store *s,
				      int (*fn)(const struct ch_store_endpoint *e, void *arg),
				      void *arg);
/* The endpoint with the smallest next_at > 0 (index lookup). */
int ch_store_endpoint_next_due(struct ch_store *s, struct ch_store_endpoint *ret);
/* Makes every endpoint of the certificate due at `at`. */
int ch_store_endpoint_due_for_cert(struct ch_store *s, int64_t cert_id, int64_t at);

/* Appends to the event log. cert/stage/detail may be NULL. */
int ch_store_event_add(struct ch_store *s, int64_t at, const char *cert, const char *stage,
		       const char *event, const char *detail);
struct ch_store_event {
	int64_t id, at;
	const char *cert, *stage, *event, *detail; /* valid during the callback */
};
/* Newest first, at most limit; cert NULL = all. */
int ch_store_event_foreach(struct ch_store *s, const char *cert, int limit,
			   int (*fn)(const struct ch_store_event *e, void *arg), void *arg);

/*
 * Open alert conditions (see the daemon's alert.c): one row per condition
 * key while it lasts, with when it started and when it was last sent.
 */
struct ch_store_alert {
	char *key;     /* "kind/cert/subject" */
	char *kind;
	char *cert;    /* may be NULL */
	char *subject; /* target, endpoint or CA; may be NULL */
	int level;     /* kind-specific severity step (warning window index) */
	int64_t started_at;
	int64_t last_sent_at;
	char *detail;
};
/* Inserts or replaces the row a->key. */
int ch_store_alert_put(struct ch_store *s, const struct ch_store_alert *a);
/* -ENOENT when there was no such row. */
int ch_store_alert_delete(struct ch_store *s, const char *key);
/* Every open alert by key; the struct is borrowed for the callback only. */
int ch_store_alert_foreach(struct ch_store *s,
			   int (*fn)(const struct ch_store_alert *a, void *arg), void *arg);

/*
 * Rehearsals (renew --dry-run, the rehearsal schedule): a whole renewal
 * into a scratch directory, recorded apart from the issuances. Strings
 * are borrowed: by add() for the call, by the callbacks for theirs.
 */
struct ch_store_rehearsal {
	int64_t id;
	const char *cert;
	const char *ca;      /* the certificate's CA */
	const char *issuer;  /* the CA asked: ca, or its staging CA */
	const char *trigger; /* manual | scheduled */
	int64_t started_at, finished_at;
	const char *result;  /* passed | failed */
	const char *stage;   /* where it failed: prepare | issue | check | deploy */
	const char *target;  /* with stage deploy */
	const char *serial;  /* of the rehearsal certificate, when issued */
	const char *message;
};
/* Records rh (rh->id is set). */
int ch_store_rehearsal_add(struct ch_store *s, struct ch_store_rehearsal *rh);
/* Newest first, at most limit (0 = all); cert NULL = every certificate. */
int ch_store_rehearsal_foreach(struct ch_store *s, const char *cert, int limit,
			       int (*fn)(const struct ch_store_rehearsal *rh, void *arg),
			       void *arg);
/* The newest rehearsal of each (certificate, CA) pair, where it failed. */
int ch_store_rehearsal_foreach_failing(struct ch_store *s,
				       int (*fn)(const struct ch_store_rehearsal *rh, void *arg),
				       void *arg);
struct ch_store_rehearsal_summary {
	int64_t last_run_at;       /* 0 = never */
	int64_t last_success_at;   /* finished_at of the newest passed one */
	int64_t last_scheduled_at; /* started_at of the newest scheduled one */
};
int ch_store_rehearsal_summary(struct ch_store *s, const char *ca,
			       struct ch_store_rehearsal_summary *ret);

/*
 * What was spent of each CA's budget (budget.h): one row per use, by CA,
 * limit (kind) and registered domain. A row with an idempotency key is
 * added once per (ca, kind, domain, idem); rows without one always are.
 */
int ch_store_usage_add(struct ch_store *s, const char *ca, const char *kind, const char *domain,
		       int64_t at, const char *cert, const char *idem);
/* Takes back the uses of one renewal (idem) at ca; returns how many. */
int ch_store_usage_drop(struct ch_store *s, const char *ca, const char *kind, const char *idem);
/* Times of the uses after `after`, ascending, except those of except_idem (may be NULL).
 * *ret (caller frees) may be NULL when there are none. */
int ch_store_usage_times(struct ch_store *s, const char *ca, const char *kind, const char *domain,
			 int64_t after, const char *except_idem, int64_t **ret, size_t *ret_n);
/* Registered domains with uses after `after`, by name. The string is valid during fn only. */
int ch_store_usage_foreach_domain(struct ch_store *s, const char *ca, const char *kind,
				  int64_t after, int (*fn)(const char *domain, void *arg), void *arg);
/* Forgets uses at or before `before`; returns how many. */
int ch_store_usage_prune(struct ch_store *s, int64_t before);
