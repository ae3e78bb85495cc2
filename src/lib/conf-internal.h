/* SPDX-License-Identifier: MIT */
/*
 * What the configuration loader (conf.c) and its YAML reader (conf-yaml.c)
 * share: the parse tree one file is read into, the bump allocator the tree
 * lives in, and reading a file into memory. conf-yaml.c knows nothing of the
 * schema; conf.c never calls libyaml.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certherd/macro.h"

#define CONF_MAX_FILE_SIZE	(16u * 1024 * 1024)
#define CONF_MAX_DEPTH		32	/* nested mappings and sequences */

/* ---- a small bump allocator for the parse tree -------------------------- */

/* Zero-initialise; everything allocated from it goes at once. */
struct conf_arena {
	struct conf_arena_chunk *chunks;
	unsigned char *p, *end;
};

void ch_conf_arena_free(struct conf_arena *a);

/* ---- the parse tree ----------------------------------------------------- */

enum conf_node_kind {
	CONF_NODE_SCALAR,
	CONF_NODE_MAP,
	CONF_NODE_SEQ,
	CONF_NODE_BAD, /* already reported (an alias); skipped silently */
};

struct conf_node {
	uint8_t kind;
	bool plain;   /* scalar written without quotes */
	bool has_nul; /* scalar contains a NUL byte */
	uint32_t line, col; /* 1-based */
	uint32_t n;         /* scalar: length; mapping: 2 * pairs; sequence: items */
	union {
		char *s;
		struct conf_node **kids; /* mapping: key, value, key, value, ... */
	};
};

/*
 * Called for each problem found while parsing, with a 1-based line and
 * column in the buffer being parsed and a printf-style message.
 */
typedef void conf_tree_error_fn(void *arg, unsigned line, unsigned col, const char *fmt,
				va_list ap) _printf_(4, 0);

/*
 * Parses buf (len bytes, NUL-terminated) into a tree allocated from a.
 * *ret_root is NULL for an empty file. Problems go to error(arg, ...): a
 * syntax error or nesting deeper than CONF_MAX_DEPTH stops the parse, an
 * alias becomes a CONF_NODE_BAD node and a second document ends it. Returns
 * 0, -EINVAL after a syntax error or too deep nesting, or -ENOMEM.
 */
int ch_conf_tree_parse(const char *buf, size_t len, struct conf_arena *a,
		       conf_tree_error_fn *error, void *arg, struct conf_node **ret_root);

/* A missing value, or a plain scalar that is empty, ~ or null. */
bool ch_conf_node_is_null(const struct conf_node *n);
/* "a mapping", "a sequence" or "a scalar", for messages. */
const char *ch_conf_node_kind_name(const struct conf_node *n);
/*
 * The value of a plain key in a mapping node, or NULL (also when map is not
 * a mapping). *ret_key, when given, is set to the key node.
 */
const struct conf_node *ch_conf_map_get(const struct conf_node *map, const char *name,
					const struct conf_node **ret_key);

/* ---- reading a file ---------------------------------------------------- */

/*
 * Reads a whole file into a NUL-terminated buffer the caller frees.
 * Returns 0, -EISDIR, -EFBIG above CONF_MAX_FILE_SIZE, -ENOMEM or -errno.
 */
int ch_conf_read_file(const char *path, char **ret, size_t *ret_len);
/* What went wrong, for a negative return of ch_conf_read_file(). */
const char *ch_conf_read_strerror(int r);

/* conf-names.c */
/* Why s is not a valid DNS name (into buf when formatted), or NULL when it is. */
const char *ch_conf_dns_name_problem(const char *s, char *buf, size_t buflen);
/* A copy of s: IPv6 in canonical form, DNS names lowercased; *is_ip says which. */
char *ch_conf_name_normalize(const char *s, bool *is_ip);
