/* SPDX-License-Identifier: MIT */
/*
 * Endpoint verification by a TLS handshake (see verify.h).
 */
#include <errno.h>

#include "certherd/verify.h"

int
ch_verify_start(struct event_base *base, const struct ch_verify_request *req,
		ch_verify_done_fn *done, void *arg)
{
	return -ENOSYS;
}
