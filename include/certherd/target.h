/* SPDX-License-Identifier: MIT */
/*
 * Deployment targets behind one small ops struct, one file per kind
 * (src/target/target-*.c), found by `type:` through a compile-time table.
 * deploy() returning 0 means "started"; done() is always called later
 * from the event loop, never from inside deploy(). A negative return means
 * nothing was started and done() will not be called. A failing target
 * never affects another.
 */
#pragma once

#include <stdint.h>

#include "certherd/conf.h"
#include "certherd/err.h"

struct event_base;

struct ch_deploy_item {
	const char *cert_name;
	const char *serial;
	const char *cert_pem;  /* leaf */
	const char *chain_pem; /* intermediates, may be "" */
	const char *key_pem;   /* secret: never log */
	size_t key_pem_len;
	/*
	 * The issuance's own directory in the state dir holding cert.pem,
	 * chain.pem, fullchain.pem and key.pem (0600), for targets that pass
	 * paths on (exec).
	 */
	const char *dir;
};

typedef void ch_deploy_done_fn(int r, const char *message, void *arg);

struct ch_filebatch;

struct ch_target_env {
	struct event_base *base;
	const char *state_dir;
	/*
	 * Files written by a deploy may be staged here; the daemon commits
	 * the batch at the end of the loop turn. NULL: commit your own.
	 */
	struct ch_filebatch *batch;
	/*
	 * Set for a rehearsal (renew --dry-run, the rehearsal schedule):
	 * nothing a service uses may change. Files go below this directory
	 * (their absolute path appended) after the real destination was
	 * checked; services are checked but not signalled; each kind's
	 * rehearsal is described in certherd(1) under renew --dry-run.
	 */
	const char *rehearse_dir;
};

struct ch_target_ops {
	const char *type;
	const struct ch_conf_key *keys;
	size_t opts_size;
	int (*check)(const void *opts, struct ch_err *reterr);
	int (*deploy)(const struct ch_target_env *env, const char *target_name, const void *opts,
		      const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg);
	/*
	 * The certificate PEM (leaf first) this target currently holds for
	 * cert_name, for adopting existing files (may be NULL: not supported).
	 * Returns -ENOENT when there is none.
	 */
	int (*current)(const void *opts, const char *cert_name, char **ret_pem);
};

extern const struct ch_target_ops ch_target_file_ops, ch_target_reload_ops, ch_target_exec_ops,
	ch_target_nginx_ops, ch_target_haproxy_ops, ch_target_kubernetes_ops;

const struct ch_target_ops *ch_target_ops_find(const char *type);
const char *ch_target_types(void);

/* Replaces every "{name}" in tmpl with name (caller frees). */
char *ch_target_expand(const char *tmpl, const char *name);
