/* SPDX-License-Identifier: MIT */
/*
 * Pure scheduling arithmetic: when a certificate is renewed, the
 * deterministic per-certificate jitter and the retry backoff. No clocks,
 * and no state but the test-only backoff start, so every rule is
 * unit-testable.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CH_SCHED_BACKOFF_MIN 60
#define CH_SCHED_BACKOFF_MAX 3600

/*
 * Deterministic jitter in [0, span) derived from name and salt: the same
 * certificate always gets the same offset, different ones spread out.
 */
int64_t ch_sched_jitter(const char *name, uint64_t salt, int64_t span);

/*
 * The planned renewal time of a certificate valid from not_before to
 * not_after. With renew_before > 0: not_after - renew_before. Otherwise at
 * 2/3 of the lifetime (1/2 for lifetimes under 10 days). Then moved
 * earlier by a jitter of up to 5% of the lifetime (at most one hour), and
 * never before not_before.
 */
int64_t ch_sched_renew_at(const char *name, int64_t not_before, int64_t not_after,
			  int64_t renew_before);

/*
 * Delay before retry number `failures` (>= 1): 1 min doubling up to 1 h,
 * minus up to 10% deterministic jitter.
 */
int64_t ch_sched_backoff(const char *name, int failures);
/*
 * For tests only (CERTHERD_TEST_BACKOFF): the first delay of the backoff,
 * 1 to 60 seconds (anything else restores 60). It still doubles up to 1 h.
 */
void ch_sched_set_backoff_min(int64_t min);

struct ch_conf;
struct ch_conf_cert;
/*
 * The certificates a scheduled rehearsal of CA ca covers: one per kind of
 * target the CA's certificates deploy to (the first, by name, that
 * brings a kind not yet covered), or the first certificate when none has
 * a target. Fills at most max entries of ret; returns how many.
 */
size_t ch_sched_rehearsal_certs(const struct ch_conf *c, const char *ca,
				const struct ch_conf_cert **ret, size_t max);
