/* SPDX-License-Identifier: MIT */
/*
 * Local budgets for the rate limits a CA publishes: which registered
 * domain (eTLD+1) a name counts against, which limits apply to a CA, and
 * the token-bucket arithmetic those limits use. No clock and no state:
 * the daemon keeps the counts in the inventory (src/daemon/budget.c).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "certherd/conf.h"

enum ch_budget_limit {
	CH_BUDGET_CERTS_PER_DOMAIN,       /* new certificates per registered domain, 7 days */
	CH_BUDGET_FAILED_VALIDATIONS,     /* failed validations per registered domain, 1 hour */
	_CH_BUDGET_LIMIT_MAX,
	_CH_BUDGET_LIMIT_INVALID = -22,
};
/* "certificates_per_domain_per_week", "failed_validations_per_hour" (the config keys). */
const char *ch_budget_limit_to_string(enum ch_budget_limit l);
/* The window the limit refills over, seconds. */
int64_t ch_budget_limit_window(enum ch_budget_limit l);

/* The limits of one CA; 0 = no limit. */
struct ch_budget_limits {
	int64_t max[_CH_BUDGET_LIMIT_MAX];
};

/*
 * The limits that apply to a CA: what its budget: sets, and for what it
 * leaves out, the published limits of a known ACME directory (Let's
 * Encrypt production: 50 certificates per registered domain per week, 5
 * failed validations per hour). directory_url may be NULL (not ACME).
 */
void ch_budget_limits_resolve(const struct ch_conf_budget *conf, const char *directory_url,
			      struct ch_budget_limits *ret);

/*
 * A token bucket of capacity max that refills at max per window (how Let's
 * Encrypt counts), starting full before the first of the n uses in used[]
 * (epoch seconds, ascending; uses older than now - window cannot matter).
 * Sets *ret_remaining to the whole tokens left at now (0 when exhausted)
 * and *ret_frees_at to when the next token is available: now when one is.
 */
void ch_budget_eval(int64_t max, int64_t window, const int64_t *used, size_t n, int64_t now,
		    int64_t *ret_remaining, int64_t *ret_frees_at);

/* The public suffix list (Debian's publicsuffix package installs it). */
#define CH_PSL_PATH "/usr/share/publicsuffix/public_suffix_list.dat"

struct ch_psl;
/* Loads a public_suffix_list.dat (ICANN and private rules). 0 or -errno. */
int ch_psl_load(const char *path, struct ch_psl **ret);
struct ch_psl *ch_psl_free(struct ch_psl *p);
/* Number of rules loaded. */
size_t ch_psl_size(const struct ch_psl *p);

/*
 * The registered domain a DNS name counts against, lower case, into buf
 * (returned; "" when buf is too small): the public suffix by the list's
 * rules (wildcards and exceptions; the default rule "*" for an unlisted
 * TLD) plus one label. Without a list (psl NULL): the last two labels. A
 * leading "*." is dropped; a name that is itself a public suffix is its
 * own registered domain.
 */
const char *ch_registered_domain(const struct ch_psl *psl, const char *name, char *buf,
				 size_t len);
