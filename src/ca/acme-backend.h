/* SPDX-License-Identifier: MIT */
/*
 * Private to the acme CA backend: its state, shared by the order machinery
 * (ca-acme.c) and the requests outside issuance (acme-admin.c: renewal
 * information, account key rollover, revocation).
 */
#pragma once

#include <stdbool.h>
#include <sys/queue.h>

#include <jansson.h>

#include "acme-internal.h"
#include "certherd/ca.h"

struct event;

enum acme_setup {
	SETUP_NONE,    /* directory and account not known */
	SETUP_RUNNING,
	SETUP_DONE,
};

struct ca_acme;

struct acme_job;
TAILQ_HEAD(acme_jobq, acme_job);

/* A renewalInfo request (RFC 9773), waiting for the directory or in flight. */
struct acme_ari {
	struct ca_acme *s;
	char *cert_id;
	ch_renewal_info_done_fn *done;
	void *arg;
	bool awaiting_setup;
	struct acme_op op;
	struct event *kick; /* starts it from the loop */
	LIST_ENTRY(acme_ari) link;
};

/* An account key rollover (RFC 8555 §7.3.5); one at a time. */
struct acme_rollover {
	ch_ca_done_fn *done;
	void *arg;
	bool awaiting_setup;
	struct acme_op op;
	struct event *kick;
};

/* A revokeCert request (RFC 8555 §7.6), signed with the account key. */
struct acme_revoke {
	struct ca_acme *s;
	char *payload;
	char *serial;
	ch_revoke_done_fn *done;
	void *arg;
	bool awaiting_setup;
	struct acme_op op;
	struct event *kick;
	LIST_ENTRY(acme_revoke) link;
};

struct acme_delivery {
	struct ca_acme *owner; /* back-reference; NULL once the backend is freed */
	ch_issue_done_fn *done;
	void *arg;
	struct ch_issue_result res;
	LIST_ENTRY(acme_delivery) link;
};

struct ca_acme {
	char *name;
	struct event_base *base;
	char *directory_url;
	char **contact;
	bool agree_tos;
	char *preferred_chain;
	size_t max_in_flight;
	char *dir;        /* <state_dir>/acme/<name> */
	struct acme_client client; /* HTTP, account key and kid, nonces */
	char *thumbprint;
	struct acme_http01 *http01; /* http-01, else NULL */
	struct acme_dns01 *dns01;   /* dns-01, else NULL */
	struct acme_eab *eab;       /* external account binding, else NULL */
	struct event *pump;

	enum acme_setup setup;
	struct acme_op setup_op;
	char *url_account, *url_order;
	char *url_orders;  /* the account's order list, if the CA has one */
	char *url_renewal_info; /* ARI (RFC 9773), if the CA has it */
	json_t *profiles;       /* the directory's meta.profiles, if any */
	char *url_key_change;
	EVP_PKEY *new_key;      /* account.key.new: rolled to, or left by a crash */
	struct acme_rollover *rollover;
	char *url_revoke;
	LIST_HEAD(, acme_revoke) revokes;
	LIST_HEAD(, acme_ari) aris;

	struct acme_jobq queue;  /* waiting for a slot */
	struct acme_jobq active; /* holding a slot */
	size_t n_active;
	LIST_HEAD(, acme_delivery) deliveries;
};

/* Fetches the directory and finds or creates the account; waiters are told. */
void acme_setup_start(struct ca_acme *s);

/* acme-admin.c: each waits for the setup; told when it ended (fail: why not). */
void acme_ari_setup_done(struct ca_acme *s, const char *fail);
void acme_rollover_setup_done(struct ca_acme *s, const char *fail);
void acme_revoke_setup_done(struct ca_acme *s, const char *fail);
/* Frees a request without calling its done(). */
void acme_ari_free(struct acme_ari *a);
void acme_revoke_free(struct acme_revoke *rv);
/* The CA has the new key: account.key.new replaces account.key, then in memory. */
int acme_rollover_commit(struct ca_acme *s, struct ch_err *err);
/* The CA does not have the new key: it is dropped. */
void acme_rollover_discard(struct ca_acme *s);

/* The ch_ca_ops entries. */
int ca_acme_renewal_info(void *state, const char *cert_pem, ch_renewal_info_done_fn *done,
			 void *arg);
int ca_acme_key_rollover(void *state, ch_ca_done_fn *done, void *arg);
int ca_acme_revoke(void *state, const struct ch_revoke_request *req, ch_revoke_done_fn *done,
		   void *arg);
