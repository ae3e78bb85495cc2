/* SPDX-License-Identifier: MIT */
/*
 * Renewal time, jitter and backoff arithmetic (see sched.h).
 */
#include <stdbool.h>

#include "certherd/conf.h"
#include "certherd/sched.h"
#include "certherd/util.h"

int64_t
ch_sched_jitter(const char *name, uint64_t salt, int64_t span)
{
	uint64_t h;

	if (span <= 0)
		return 0;
	h = ch_hash64(name) ^ (salt * UINT64_C(0x9e3779b97f4a7c15));
	/* Finalise (splitmix64) so nearby names spread evenly. */
	h ^= h >> 30;
	h *= UINT64_C(0xbf58476d1ce4e5b9);
	h ^= h >> 27;
	h *= UINT64_C(0x94d049bb133111eb);
	h ^= h >> 31;
	return (int64_t)(h % (uint64_t)span);
}

int64_t
ch_sched_renew_at(const char *name, int64_t not_before, int64_t not_after, int64_t renew_before)
{
	int64_t lifetime = not_after - not_before;
	int64_t at, span;

	if (lifetime <= 0)
		return not_before;
	if (renew_before > 0 && renew_before < lifetime)
		at = not_after - renew_before;
	else if (lifetime < 10 * 86400)
		at = not_before + lifetime / 2;
	else
		at = not_before + lifetime / 3 * 2;
	span = lifetime / 20;
	if (span > 3600)
		span = 3600;
	at -= ch_sched_jitter(name, (uint64_t)not_after, span);
	if (at < not_before)
		at = not_before;
	return at;
}

static int64_t backoff_min = CH_SCHED_BACKOFF_MIN;

void
ch_sched_set_backoff_min(int64_t min)
{
	backoff_min = min > 0 && min <= CH_SCHED_BACKOFF_MIN ? min : CH_SCHED_BACKOFF_MIN;
}

int64_t
ch_sched_backoff(const char *name, int failures)
{
	int64_t d = backoff_min;

	if (failures < 1)
		failures = 1;
	for (int i = 1; i < failures && d < CH_SCHED_BACKOFF_MAX; i++)
		d *= 2;
	if (d > CH_SCHED_BACKOFF_MAX)
		d = CH_SCHED_BACKOFF_MAX;
	return d - ch_sched_jitter(name, (uint64_t)failures, d / 10);
}

size_t
ch_sched_rehearsal_certs(const struct ch_conf *c, const char *ca,
			 const struct ch_conf_cert **ret, size_t max)
{
	const char *covered[64];
	size_t n = 0, n_covered = 0;
	const struct ch_conf_cert *first = NULL;

	for (size_t i = 0; i < c->n_certs && n < max; i++) {
		const struct ch_conf_cert *cc = &c->certs[i];
		bool brings = false;

		if (!cc->s.ca || !streq(cc->s.ca, ca))
			continue;
		if (!first)
			first = cc;
		for (char **t = cc->s.targets; t && *t; t++) {
			const struct ch_conf_target *tc = ch_conf_find_target(c, *t);
			bool seen = false;

			if (!tc)
				continue;
			for (size_t k = 0; k < n_covered && !seen; k++)
				seen = streq(covered[k], tc->type);
			if (seen || n_covered == sizeof(covered) / sizeof(covered[0]))
				continue;
			covered[n_covered++] = tc->type;
			brings = true;
		}
		if (brings)
			ret[n++] = cc;
	}
	if (n == 0 && first && max > 0)
		ret[n++] = first;
	return n;
}
