/* SPDX-License-Identifier: MIT */
/*
 * Budget arithmetic and registered domains (see budget.h). The public
 * suffix list is kept as a sorted array of its rules, looked up with
 * bsearch: about 10,000 short strings, read once at start-up.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/budget.h"
#include "certherd/macro.h"
#include "certherd/util.h"

static const char *const limit_table[_CH_BUDGET_LIMIT_MAX] = {
	[CH_BUDGET_CERTS_PER_DOMAIN] = "certificates_per_domain_per_week",
	[CH_BUDGET_FAILED_VALIDATIONS] = "failed_validations_per_hour",
};

static const int64_t limit_window[_CH_BUDGET_LIMIT_MAX] = {
	[CH_BUDGET_CERTS_PER_DOMAIN] = 7 * 86400,
	[CH_BUDGET_FAILED_VALIDATIONS] = 3600,
};

const char *
ch_budget_limit_to_string(enum ch_budget_limit l)
{
	if (l < 0 || l >= _CH_BUDGET_LIMIT_MAX)
		return "unknown";
	return limit_table[l];
}

int64_t
ch_budget_limit_window(enum ch_budget_limit l)
{
	if (l < 0 || l >= _CH_BUDGET_LIMIT_MAX)
		return 0;
	return limit_window[l];
}

/*
 * Published limits by directory URL (RELIABILITY-NOTES.md, Let's Encrypt
 * rate limits page, 2026). Only production: staging's limits are far
 * higher and other CAs publish none we could rely on.
 */
static const struct {
	const char *directory;
	int64_t max[_CH_BUDGET_LIMIT_MAX];
} known_cas[] = {
	{ "https://acme-v02.api.letsencrypt.org/directory", { 50, 5 } },
};

void
ch_budget_limits_resolve(const struct ch_conf_budget *conf, const char *directory_url,
			 struct ch_budget_limits *ret)
{
	const int64_t *set = conf ? (const int64_t[]){ conf->certs_per_domain_per_week,
						       conf->failed_validations_per_hour }
				  : NULL;

	*ret = (struct ch_budget_limits){ 0 };
	for (size_t i = 0; directory_url && i < ARRAY_SIZE(known_cas); i++)
		if (streq(known_cas[i].directory, directory_url))
			memcpy(ret->max, known_cas[i].max, sizeof(ret->max));
	for (int l = 0; set && l < _CH_BUDGET_LIMIT_MAX; l++)
		if (set[l] >= 0)
			ret->max[l] = set[l];
}

void
ch_budget_eval(int64_t max, int64_t window, const int64_t *used, size_t n, int64_t now,
	       int64_t *ret_remaining, int64_t *ret_frees_at)
{
	/*
	 * In units of 1/window token, so every step is exact: the bucket
	 * holds max * window, refills max per second, a use costs window.
	 */
	int64_t cap = max * window, level = cap, last = 0;
	bool started = false;

	if (max <= 0 || window <= 0) {
		*ret_remaining = 0;
		*ret_frees_at = INT64_MAX;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (used[i] <= now - window || used[i] > now)
			continue;
		if (started && used[i] > last) {
			int64_t dt = used[i] - last;

			level = dt >= window ? cap : level + dt * max;
			if (level > cap)
				level = cap;
		}
		started = true;
		last = used[i];
		level -= window; /* may go below zero: counted all the same */
	}
	if (started) {
		int64_t dt = now - last;

		level = dt >= window ? cap : level + dt * max;
		if (level > cap)
			level = cap;
	}
	*ret_remaining = level > 0 ? level / window : 0;
	if (level >= window)
		*ret_frees_at = now;
	else /* ceil((window - level) / max) more seconds */
		*ret_frees_at = now + (window - level + max - 1) / max;
}

/* --- the public suffix list -------------------------------------------------------- */

struct ch_psl {
	char **rules; /* sorted: "com", "*.ck", "!www.ck", ... */
	size_t n;
};

static int
psl_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
ch_psl_load(const char *path, struct ch_psl **ret)
{
	FILE *f = fopen(path, "re");
	struct ch_psl *p;
	char line[512];
	size_t cap = 0;

	if (!f)
		return -errno;
	p = calloc(1, sizeof(*p));
	if (!p) {
		fclose(f);
		return -ENOMEM;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t len = strcspn(line, " \t\r\n");
		char *rule;

		if (len == 0 || strncmp(line, "//", 2) == 0)
			continue;
		if (p->n == cap) {
			char **v;

			cap = cap ? cap * 2 : 8192;
			v = realloc(p->rules, cap * sizeof(*v));
			if (!v)
				goto oom;
			p->rules = v;
		}
		rule = strndup(line, len);
		if (!rule)
			goto oom;
		for (char *c = rule; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		p->rules[p->n++] = rule;
	}
	fclose(f);
	if (p->n)
		qsort(p->rules, p->n, sizeof(*p->rules), psl_cmp);
	*ret = p;
	return 0;
oom:
	fclose(f);
	ch_psl_free(p);
	return -ENOMEM;
}

struct ch_psl *
ch_psl_free(struct ch_psl *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; i < p->n; i++)
		free(p->rules[i]);
	free(p->rules);
	free(p);
	return NULL;
}

size_t
ch_psl_size(const struct ch_psl *p)
{
	return p ? p->n : 0;
}

static bool
psl_has(const struct ch_psl *p, const char *prefix, const char *s)
{
	char key[300];
	const char *k = key;

	if ((size_t)snprintf(key, sizeof(key), "%s%s", prefix, s) >= sizeof(key))
		return false;
	return bsearch(&k, p->rules, p->n, sizeof(*p->rules), psl_cmp) != NULL;
}

/* Where the public suffix of name (lower case, no trailing dot) begins. */
static const char *
psl_suffix(const struct ch_psl *p, const char *name)
{
	const char *last = strrchr(name, '.');

	/* Longest suffix first: the first rule that matches has the most labels. */
	for (const char *s = name; s; s = strchr(s, '.') ? strchr(s, '.') + 1 : NULL) {
		const char *parent = strchr(s, '.');

		if (psl_has(p, "!", s))
			return parent ? parent + 1 : s;
		if (psl_has(p, "", s) || (parent && psl_has(p, "*.", parent + 1)))
			return s;
	}
	return last ? last + 1 : name; /* the default rule "*" */
}

const char *
ch_registered_domain(const struct ch_psl *psl, const char *name, char *buf, size_t len)
{
	char lower[256];
	const char *suffix, *start;
	size_t n;

	if (strncmp(name, "*.", 2) == 0)
		name += 2;
	n = strlen(name);
	while (n && name[n - 1] == '.')
		n--;
	if (n >= sizeof(lower) || len == 0) {
		if (len)
			buf[0] = '\0';
		return buf;
	}
	for (size_t i = 0; i < n; i++)
		lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	lower[n] = '\0';

	if (psl && psl->n) {
		suffix = psl_suffix(psl, lower);
	} else {
		suffix = strrchr(lower, '.');
		suffix = suffix ? suffix + 1 : lower;
	}
	start = suffix;
	if (suffix > lower) {
		/* One label more than the suffix. */
		start = suffix - 1;
		while (start > lower && start[-1] != '.')
			start--;
	}
	if (strlen(start) >= len) {
		buf[0] = '\0';
		return buf;
	}
	strcpy(buf, start);
	return buf;
}
