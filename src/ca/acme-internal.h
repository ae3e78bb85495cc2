/* SPDX-License-Identifier: MIT */
/*
 * Private to the ACME backend: the http-01 responder (acme-http01.c).
 */
#pragma once

#include "certherd/err.h"

struct event_base;
struct acme_http01;

/*
 * Opens (or shares) the responder listening on listen ("host:port",
 * "[v6]:port" or ":port" for all addresses). Instances of every CA that
 * name the same address share one listener, so a reloaded configuration
 * can start while the previous one still finishes its orders.
 */
int acme_http01_open(struct event_base *base, const char *listen, struct acme_http01 **ret,
		     struct ch_err *reterr);
void acme_http01_close(struct acme_http01 *r);
/* Serves keyauth at /.well-known/acme-challenge/<token> until removed. */
int acme_http01_add(struct acme_http01 *r, const char *token, const char *keyauth);
void acme_http01_remove(struct acme_http01 *r, const char *token);
/* Splits "host:port"; *ret_host is NULL for ":port". Returns 0 or -EINVAL. */
int acme_http01_parse_listen(const char *listen, char **ret_host, unsigned *ret_port);
