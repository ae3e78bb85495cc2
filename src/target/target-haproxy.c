/* SPDX-License-Identifier: MIT */
/*
 * The "haproxy" target.
 */
#include <errno.h>

#include "certherd/target.h"

static const struct ch_conf_key haproxy_keys[] = {
	{ NULL },
};

static int
haproxy_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	     const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	return -ENOSYS;
}

const struct ch_target_ops ch_target_haproxy_ops = {
	.type = "haproxy",
	.keys = haproxy_keys,
	.opts_size = 1,
	.deploy = haproxy_deploy,
};
