/* SPDX-License-Identifier: MIT */
/*
 * The "nginx" target.
 */
#include <errno.h>

#include "certherd/target.h"

static const struct ch_conf_key nginx_keys[] = {
	{ NULL },
};

static int
nginx_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	     const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	return -ENOSYS;
}

const struct ch_target_ops ch_target_nginx_ops = {
	.type = "nginx",
	.keys = nginx_keys,
	.opts_size = 1,
	.deploy = nginx_deploy,
};
