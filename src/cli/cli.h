/* SPDX-License-Identifier: MIT */
/*
 * The certherd CLI's shared pieces: talking to the status socket, the
 * verb table and plain-text table output.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

struct cli {
	const char *socket;
	const char *config;
	bool json;
	bool force;
	bool dry_run; /* renew --dry-run */
	const char *reason; /* revoke --reason */
};

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILING 1
#define CLI_EXIT_ERROR 2

/* Sends req (consumed), returns the reply or NULL after printing why. */
json_t *cli_call(const struct cli *c, json_t *req);
char *cli_call_line(const struct cli *c, json_t *req);

struct cli_verb {
	const char *name;
	const char *args;
	const char *help;
	int min_args, max_args;
	int (*run)(const struct cli *c, int argc, char **argv);
};
extern const struct cli_verb cli_verbs[];
/* verb-ca.c: certherd ca init-root|new-intermediate|sign-intermediate|import */
int verb_ca(const struct cli *c, int argc, char **argv);

/* table.c: collects rows, then prints them with aligned columns. */
struct table;
struct table *table_new(int ncols, ...);
void table_add(struct table *t, ...);
void table_print(struct table *t);
void table_free(struct table *t);

/* "in 3m", "5m ago", "-" */
const char *cli_relative(long long at, long long now, char *buf, size_t len);
