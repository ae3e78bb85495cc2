/* SPDX-License-Identifier: MIT */
/*
 * The configuration: YAML (libyaml) read into typed structs. Every error
 * carries file:line:column, the key and what was expected; all errors of a
 * load are collected, not only the first. Options of CA backends and
 * target kinds are described by key tables their ops structs export
 * (struct ch_conf_key), so the loader knows every key and can suggest the
 * nearest one for a misspelling.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "certherd/err.h"

enum ch_key_type {
	CH_KEY_ECDSA_P256,
	CH_KEY_ECDSA_P384,
	CH_KEY_RSA_2048,
	CH_KEY_RSA_3072,
	CH_KEY_ED25519,
	_CH_KEY_TYPE_MAX,
	_CH_KEY_TYPE_INVALID = -22,
};
const char *ch_key_type_to_string(enum ch_key_type t);
enum ch_key_type ch_key_type_from_string(const char *s);

/* Value kinds a key table entry can hold. */
enum ch_conf_type {
	CH_CONF_STRING,   /* char *                                          */
	CH_CONF_PATH,     /* char *, made absolute against the file's dir     */
	CH_CONF_DURATION, /* int64_t seconds: "90d", "1h30m", 45              */
	CH_CONF_UINT,     /* int64_t >= 0                                     */
	CH_CONF_BOOL,     /* bool: true/false/yes/no                          */
	CH_CONF_MODE,     /* int, octal string "0640" (-1 when unset)         */
	CH_CONF_SIGNAL,   /* int, "HUP", "SIGHUP" or 1-64 (0 when unset)      */
	CH_CONF_STRV,     /* char **, a sequence of scalars or one scalar     */
	CH_CONF_KEYTYPE,  /* enum ch_key_type (-1 when unset)                 */
	CH_CONF_MAP,      /* char **, a mapping of string to string, stored as
			     key, value, key, value, ..., NULL (labels)        */
};

/* Key tables end with an entry whose name is NULL. */
struct ch_conf_key {
	const char *name;
	enum ch_conf_type type;
	size_t offset; /* into the options struct */
	bool required;
	const char *expect; /* what the value should look like, for errors */
};

/* A configuration error, formatted "file:line:col: key: message". */
struct ch_conf_error {
	char *file;
	unsigned line, column; /* 1-based; 0 when unknown */
	char *key;             /* dotted path, e.g. "certificates.www.lifetime" */
	char *message;         /* what was wrong and what was expected */
};

/* Zero-initialise; filled by ch_conf_load, emptied with ch_conf_errors_clear. */
struct ch_conf_errors {
	struct ch_conf_error *v;
	size_t n;
};
void ch_conf_errors_clear(struct ch_conf_errors *e);
/* Formats one error as "file:line:col: key: message" (caller frees). */
char *ch_conf_error_format(const struct ch_conf_error *e);

/* Where a definition came from, for diagnostics after loading. */
struct ch_conf_origin {
	const char *file; /* shared: one copy per file in struct ch_conf's files */
	unsigned line, column;
};

/*
 * A local budget for a CA's published rate limits (budget: under a CA).
 * -1 = not configured (a default may apply, see budget.h), 0 = no limit.
 */
struct ch_conf_budget {
	int64_t certs_per_domain_per_week;   /* new certificates per registered domain */
	int64_t failed_validations_per_hour; /* rejected attempts per registered domain */
};

/* rehearsal: how often the renewal path of each CA is rehearsed. */
struct ch_conf_rehearsal {
	int64_t interval; /* seconds; 0 = off */
	bool set;         /* given here (a CA's overrides the global one) */
};

struct ch_conf_ca {
	char *name;
	char *type;                    /* "local", ... */
	const struct ch_ca_ops *ops;   /* resolved from type */
	void *opts;                    /* ops->opts_size bytes, filled from ops->keys */
	struct ch_conf_budget budget;
	struct ch_conf_origin origin;
	char *staging;                 /* the CA rehearsals ask instead; NULL = this one */
	unsigned staging_line, staging_column;
	struct ch_conf_rehearsal rehearsal;
};

struct ch_conf_target {
	char *name;
	char *type;                      /* "file", "reload", "exec", ... */
	const struct ch_target_ops *ops; /* resolved from type */
	void *opts;                      /* ops->opts_size bytes, filled from ops->keys */
	struct ch_conf_origin origin;
};

/* A notifier: where alerts go (notifiers: NAME: {type: webhook|exec|email, ...}). */
struct ch_conf_notifier {
	char *name;
	char *type;
	const struct ch_notifier_ops *ops; /* resolved from type */
	void *opts;                        /* ops->opts_size bytes, filled from ops->keys */
	struct ch_conf_origin origin;
};

/* alerts: when conditions alert and how often. */
struct ch_conf_alerts {
	int64_t repeat_interval;  /* re-send an open alert this often; default 4h */
	int64_t *warning_windows; /* seconds, longest first; default 30d 14d 7d 1d */
	size_t n_warning_windows;
	int64_t renewal_failures; /* failed renewals in a row before alerting; default 3 */
	int64_t check_interval;   /* conditions are evaluated this often; default 30s */
};

/* heartbeat: a dead man's switch pinged while the scheduler turns. */
struct ch_conf_heartbeat {
	char *url;        /* NULL = no heartbeat */
	char *method;     /* GET (default) or POST */
	int64_t interval; /* default 5m */
	int64_t timeout;  /* default 10s */
};

/* Where a value was written: 1-based line and column, 0 when unknown. */
struct ch_conf_mark {
	unsigned line, column;
};

/* Failed attempts at a CA before the next CA of a `ca:` list is asked. */
#define CH_CONF_FAILOVER_AFTER 3

/* Settings shared by `defaults:` and each certificate. */
struct ch_conf_cert_settings {
	char *ca;                   /* the first of cas: where renewals start */
	char **cas;                 /* `ca:` in order of preference; one name or a list */
	struct ch_conf_mark *cas_at; /* where each of cas was written (same length) */
	int64_t failover_after;     /* failed attempts at a CA before the next one; 0 = unset
				       (default 3) */
	enum ch_key_type key_type;  /* -1 = unset */
	int64_t lifetime;           /* seconds; 0 = unset (CA default) */
	int64_t renew_before;       /* seconds before expiry; 0 = unset (2/3 of lifetime) */
	int64_t warn_before;        /* seconds; 0 = unset */
	char **targets;             /* target names, NULL = unset */
	bool reuse_key;             /* keep the key across renewals */
	bool reuse_key_set;
	char **endpoints;           /* "host:port" that must serve the certificate */
	char *verify_sni;           /* SNI for endpoint checks; NULL = first DNS name */
	char *verify_trust;         /* PEM anchors the served chain must verify against */
	char *profile;              /* ACME certificate profile; NULL = the CA's default */
};

/*
 * After ch_conf_load: dns_names, ip_names and s.targets are never NULL
 * (possibly empty); certs[] is sorted by name.
 */
struct ch_conf_cert {
	char *name;
	/*
	 * DNS SANs; the subject CN is the first DNS name of at most 64
	 * characters, else the first IP.
	 */
	char **dns_names;
	char **ip_names;  /* IP SANs, textual */
	struct ch_conf_cert_settings s; /* merged with defaults after load */
	struct ch_conf_origin origin;
};

struct ch_conf {
	char *file;       /* absolute path of the main file */
	char *state_dir;  /* default /var/lib/certherd */
	char *database;   /* default <state_dir>/certherd.db */
	char *socket;     /* default /run/certherd/certherd.sock */
	char *log_level;  /* error|warning|notice|info|debug */
	int64_t concurrency;     /* renewals and deployments in flight, each; default 16 */
	int64_t verify_interval; /* seconds between endpoint checks; default 10 min */
	int64_t stale_grace;     /* an endpoint not serving the newest issuance for longer
				    than this is failing; default 1 h */
	char *metrics_listen;    /* "host:port" of /metrics and /healthz; "" = off;
				    default 127.0.0.1:9465 */
	char *crl_listen;        /* "host:port" serving /crl/NAME.crl; NULL, "" or "off" = off */
	struct ch_conf_cert_settings defaults;
	/*
	 * What certificates that set nothing of their own share (not copies,
	 * so that 100,000 of them cost no memory each): with one CA and no
	 * defaults.ca that CA, and an empty list. A certificate's settings
	 * may point into these or into defaults; ch_conf_free() knows.
	 */
	struct ch_conf_cert_settings implicit;
	char **empty_strv;

	struct ch_conf_ca *cas;
	size_t n_cas;
	struct ch_conf_target *targets;
	size_t n_targets;
	struct ch_conf_cert *certs;
	size_t n_certs;

	/* The paths origins point to, one per file read. */
	char **files;
	size_t n_files;
	struct ch_conf_notifier *notifiers;
	size_t n_notifiers;
	struct ch_conf_alerts alerts;
	struct ch_conf_heartbeat heartbeat;
	struct ch_conf_rehearsal rehearsal; /* default off */
};

/*
 * Loads path and everything it includes. On success returns 0 and sets
 * *ret. On any error returns -EINVAL (or -errno for I/O on the main file),
 * sets no *ret and appends every problem found to errs.
 */
int ch_conf_load(const char *path, struct ch_conf **ret, struct ch_conf_errors *errs);
struct ch_conf *ch_conf_free(struct ch_conf *c);

const struct ch_conf_ca *ch_conf_find_ca(const struct ch_conf *c, const char *name);
const struct ch_conf_target *ch_conf_find_target(const struct ch_conf *c, const char *name);
const struct ch_conf_cert *ch_conf_find_cert(const struct ch_conf *c, const char *name);
const struct ch_conf_notifier *ch_conf_find_notifier(const struct ch_conf *c, const char *name);

/* Seconds between scheduled rehearsals of ca (its own setting, else the global one); 0 = off. */
int64_t ch_conf_rehearsal_interval(const struct ch_conf *c, const struct ch_conf_ca *ca);

/* Frees the heap members of an options struct described by keys. */
void ch_conf_opts_free(const struct ch_conf_key *keys, void *opts);
