/* SPDX-License-Identifier: MIT */
/*
 * The configuration loader: reads the main YAML file and everything it
 * includes into struct ch_conf. conf-yaml.c reads each file into a small
 * tree (no aliases, bounded size and depth), which is then checked
 * against the key table of each level. Every problem becomes a struct
 * ch_conf_error with file, line, column and key, and loading carries on
 * past errors so that one run reports all of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ch-config.h"
#include "certherd/ca.h"
#include "certherd/conf.h"
#include "certherd/macro.h"
#include "certherd/metrics.h"
#include "certherd/notifier.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "certherd/verify.h"
#include "conf-internal.h"

#define CONF_MAX_INCLUDE_DEPTH	8	/* nested include levels */
#define CONF_NAME_MAX		64	/* certificate, CA and target names */
#define CONF_LIST_MAX		20	/* names listed in one message */

/* ---- key types ---------------------------------------------------------- */

static const char *const key_type_table[_CH_KEY_TYPE_MAX] = {
	[CH_KEY_ECDSA_P256] = "ecdsa-p256",
	[CH_KEY_ECDSA_P384] = "ecdsa-p384",
	[CH_KEY_RSA_2048] = "rsa-2048",
	[CH_KEY_RSA_3072] = "rsa-3072",
	[CH_KEY_ED25519] = "ed25519",
};

const char *
ch_key_type_to_string(enum ch_key_type t)
{
	if ((int)t < 0 || t >= _CH_KEY_TYPE_MAX)
		return NULL;
	return key_type_table[t];
}

enum ch_key_type
ch_key_type_from_string(const char *s)
{
	if (!s)
		return _CH_KEY_TYPE_INVALID;
	for (size_t i = 0; i < ARRAY_SIZE(key_type_table); i++)
		if (streq(s, key_type_table[i]))
			return (enum ch_key_type)i;
	return _CH_KEY_TYPE_INVALID;
}

/* ---- errors ------------------------------------------------------------- */

void
ch_conf_errors_clear(struct ch_conf_errors *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].file);
		free(e->v[i].key);
		free(e->v[i].message);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

char *
ch_conf_error_format(const struct ch_conf_error *e)
{
	const char *key = e->key && *e->key ? e->key : NULL;
	const char *file = e->file ? e->file : "";
	const char *msg = e->message ? e->message : "";
	char *s = NULL;
	char pos[64] = "";
	int r;

	if (e->line > 0 && e->column > 0)
		snprintf(pos, sizeof(pos), ":%u:%u", e->line, e->column);
	else if (e->line > 0)
		snprintf(pos, sizeof(pos), ":%u", e->line);

	if (key)
		r = asprintf(&s, "%s%s: %s: %s", file, pos, key, msg);
	else
		r = asprintf(&s, "%s%s: %s", file, pos, msg);
	return r < 0 ? NULL : s;
}

/*
 * Errors are kept in an array whose capacity is implied by its length:
 * 8 up to 8 entries, then the next power of two. Appending grows it when
 * the length is about to pass that capacity.
 */
static bool
errors_grow(struct ch_conf_errors *e)
{
	size_t cap;
	struct ch_conf_error *v;

	if (e->n == 0)
		cap = 8;
	else if (e->n >= 8 && (e->n & (e->n - 1)) == 0)
		cap = e->n * 2;
	else
		return true;
	if (e->n == 0)
		free(e->v);
	v = reallocarray(e->n ? e->v : NULL, cap, sizeof(*v));
	if (!v)
		return false;
	e->v = v;
	return true;
}

struct conf_file {
	const char *path; /* absolute, as shown in messages */
	const char *kept; /* the copy in c->files that origins share, once made */
	char *dir;
	char *real; /* resolved, for include cycle detection */
	bool main;
};

/* Names of a section (certificates, CAs, targets) to their array index. */
struct name_slot {
	const char *name;
	size_t idx;
};

struct name_index {
	struct name_slot *v;
	size_t cap, n;
};

struct conf_mark {
	unsigned line, col;
};

struct loader {
	struct ch_conf *c;
	struct ch_conf_errors *errs;
	size_t n_errors; /* reported during this load */
	bool oom;

	struct conf_file *file; /* being processed */
	const struct conf_file *stack[CONF_MAX_INCLUDE_DEPTH + 1];
	size_t depth;

	struct name_index cas, targets, certs;
	size_t cap_cas, cap_targets, cap_certs;
	struct name_index notifiers;
	size_t cap_notifiers;

	int main_error;    /* the main file could not be read */
	bool syntax_error; /* some file could not be parsed */
	bool no_ca_reported;
	struct conf_mark defaults_ca_at, defaults_targets_at, defaults_renew_at;
};

static void conf_verror(struct loader *l, const char *file, unsigned line, unsigned col,
			const char *path, const char *sub, const char *fmt, va_list ap)
	_printf_(7, 0);

static void
conf_verror(struct loader *l, const char *file, unsigned line, unsigned col, const char *path,
	    const char *sub, const char *fmt, va_list ap)
{
	struct ch_conf_errors *e = l->errs;
	struct ch_conf_error x = { .line = line, .column = col };
	int r;

	l->n_errors++;
	if (!errors_grow(e)) {
		l->oom = true;
		return;
	}

	x.file = strdup(file ? file : "");
	if (path && *path && sub && *sub)
		r = asprintf(&x.key, "%s.%s", path, sub);
	else
		r = (x.key = strdup(sub && *sub ? sub : path ? path : "")) ? 0 : -1;
	if (r < 0)
		x.key = NULL;
	if (vasprintf(&x.message, fmt, ap) < 0)
		x.message = NULL;

	if (!x.file || !x.key || !x.message) {
		free(x.file);
		free(x.key);
		free(x.message);
		l->oom = true;
		return;
	}
	e->v[e->n++] = x;
}

static void conf_error(struct loader *l, const char *file, unsigned line, unsigned col,
		       const char *path, const char *sub, const char *fmt, ...) _printf_(7, 8);

static void
conf_error(struct loader *l, const char *file, unsigned line, unsigned col, const char *path,
	   const char *sub, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verror(l, file, line, col, path, sub, fmt, ap);
	va_end(ap);
}

/* An error at node n of the file being processed; key is path.sub. */
static void conf_error_at(struct loader *l, const struct conf_node *n, const char *path,
			  const char *sub, const char *fmt, ...) _printf_(5, 6);

static void
conf_error_at(struct loader *l, const struct conf_node *n, const char *path, const char *sub,
	      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_verror(l, l->file->path, n ? n->line : 0, n ? n->col : 0, path, sub, fmt, ap);
	va_end(ap);
}

/* Reports a problem ch_conf_tree_parse() found in the file being processed. */
static void conf_tree_error(void *arg, unsigned line, unsigned col, const char *fmt, va_list ap)
	_printf_(4, 0);

static void
conf_tree_error(void *arg, unsigned line, unsigned col, const char *fmt, va_list ap)
{
	struct loader *l = arg;

	conf_verror(l, l->file->path, line, col, "", NULL, fmt, ap);
}

static char *
conf_strdup(struct loader *l, const char *s)
{
	char *d = strdup(s);

	if (!d)
		l->oom = true;
	return d;
}

/* ---- name index --------------------------------------------------------- */

static uint64_t
name_hash(const char *s)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static size_t
name_index_find(const struct name_index *t, const char *name)
{
	size_t mask, i;

	if (!t->cap)
		return SIZE_MAX;
	mask = t->cap - 1;
	for (i = name_hash(name) & mask; t->v[i].name; i = (i + 1) & mask)
		if (streq(t->v[i].name, name))
			return t->v[i].idx;
	return SIZE_MAX;
}

static int
name_index_add(struct name_index *t, const char *name, size_t idx)
{
	size_t mask, i;

	if ((t->n + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct name_slot *v = calloc(cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		for (size_t j = 0; j < t->cap; j++) {
			if (!t->v[j].name)
				continue;
			for (i = name_hash(t->v[j].name) & (cap - 1); v[i].name; i = (i + 1) & (cap - 1))
				;
			v[i] = t->v[j];
		}
		free(t->v);
		t->v = v;
		t->cap = cap;
	}
	mask = t->cap - 1;
	for (i = name_hash(name) & mask; t->v[i].name; i = (i + 1) & mask)
		;
	t->v[i] = (struct name_slot){ .name = name, .idx = idx };
	t->n++;
	return 0;
}

static void
name_index_free(struct name_index *t)
{
	free(t->v);
	*t = (struct name_index){ 0 };
}

/* ---- value helpers ------------------------------------------------------ */

/*
 * Returns the string value of a scalar node, or reports an error (that
 * the value should be expect) and returns NULL.
 */
static const char *
conf_scalar(struct loader *l, const struct conf_node *n, const char *path, const char *sub,
	    const char *expect)
{
	if (n->kind == CONF_NODE_BAD)
		return NULL;
	if (n->kind != CONF_NODE_SCALAR) {
		conf_error_at(l, n, path, sub, "expected %s, got %s", expect,
			      ch_conf_node_kind_name(n));
		return NULL;
	}
	if (n->n == 0 || ch_conf_node_is_null(n)) {
		conf_error_at(l, n, path, sub, "expected %s, got an empty value", expect);
		return NULL;
	}
	if (n->has_nul) {
		conf_error_at(l, n, path, sub, "expected %s, got a string containing a NUL byte",
			      expect);
		return NULL;
	}
	return n->s;
}

/* Joins n strings with ", ", at most CONF_LIST_MAX of them. */
static char *
conf_join(const char *const *v, size_t n)
{
	size_t len = 1, shown = n < CONF_LIST_MAX ? n : CONF_LIST_MAX;
	char *s, *p;

	for (size_t i = 0; i < shown; i++)
		len += (v[i] ? strlen(v[i]) : 0) + 2;
	len += 8;
	s = p = malloc(len);
	if (!s)
		return NULL;
	*p = '\0';
	for (size_t i = 0; i < shown; i++)
		p += sprintf(p, "%s%s", i ? ", " : "", v[i] ? v[i] : "");
	if (shown < n)
		strcpy(p, ", ...");
	return s;
}

/*
 * The candidate nearest to word, if it is near enough to be a likely
 * misspelling: at most 2 edits, or a third of the word's length.
 */
static const char *
conf_suggest(const char *word, const char *const *cands, size_t n)
{
	size_t wl = strlen(word), best = SIZE_MAX;
	const char *r = NULL;

	if (wl == 0 || wl > 64)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t d;

		if (!cands[i] || strlen(cands[i]) > 64)
			continue;
		d = ch_levenshtein(word, cands[i]);
		if (d < best) {
			best = d;
			r = cands[i];
		}
	}
	if (!r || best == 0)
		return NULL;
	if (best >= wl && best >= strlen(r))
		return NULL; /* nothing in common */
	if (best <= 2 || best <= wl / 3)
		return r;
	return NULL;
}

/* Splits a comma-separated list such as ch_ca_types() into a vector. */
static char **
split_list(const char *s)
{
	size_t n = 1, k = 0;
	char **v, *dup, *tok, *save = NULL;

	if (!s)
		s = "";
	for (const char *p = s; *p; p++)
		if (*p == ',')
			n++;
	v = calloc(n + 1, sizeof(*v));
	dup = strdup(s);
	if (!v || !dup) {
		free(v);
		free(dup);
		return NULL;
	}
	for (tok = strtok_r(dup, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!(v[k] = strdup(tok))) {
			free(dup);
			return ch_strv_free(v);
		}
		k++;
	}
	free(dup);
	return v;
}

static char **
strv_dup(char *const *v)
{
	size_t n = ch_strv_length(v);
	char **d = calloc(n + 1, sizeof(*d));

	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(d[i] = strdup(v[i])))
			return ch_strv_free(d);
	return d;
}

/* "section.name" into buf, cut short if it does not fit. */
static const char *
make_path(char *buf, size_t size, const char *section, const char *name)
{
	snprintf(buf, size, "%s.%s", section, name);
	return buf;
}

static bool
conf_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > CONF_NAME_MAX || strlen(s) != len)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* ---- typed values ------------------------------------------------------- */

static const char *const type_expect[] = {
	[CH_CONF_STRING] = "a string",
	[CH_CONF_PATH] = "a path",
	[CH_CONF_DURATION] = "a duration such as 90d, 12h, 30m or 45s",
	[CH_CONF_UINT] = "a non-negative integer",
	[CH_CONF_BOOL] = "true or false",
	[CH_CONF_MODE] = "an octal file mode such as 0640",
	[CH_CONF_SIGNAL] = "a signal such as HUP, USR1, TERM or a number from 1 to 64",
	[CH_CONF_STRV] = "a list of strings",
	[CH_CONF_KEYTYPE] = "one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, ed25519",
	[CH_CONF_MAP] = "a mapping of strings to strings",
};

static const struct {
	const char *name;
	int sig;
} signal_table[] = {
	{ "HUP", SIGHUP },   { "INT", SIGINT },	  { "QUIT", SIGQUIT }, { "KILL", SIGKILL },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "ALRM", SIGALRM }, { "TERM", SIGTERM },
	{ "CONT", SIGCONT }, { "WINCH", SIGWINCH },
};

static bool
parse_uint(const char *s, int64_t *ret)
{
	int64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*ret = v;
	return true;
}

static bool
parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return true;
		}
	}
	return false;
}

static bool
parse_mode(const char *s, int *ret)
{
	size_t len = strlen(s);
	int v = 0;

	if (len == 0 || len > 5)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return false;
		v = v * 8 + (*s - '0');
	}
	if (v > 07777)
		return false;
	*ret = v;
	return true;
}

static bool
parse_signal(const char *s, int *ret)
{
	int64_t v;

	if (parse_uint(s, &v)) {
		if (v < 1 || v > 64)
			return false;
		*ret = (int)v;
		return true;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ARRAY_SIZE(signal_table); i++)
		if (strcasecmp(s, signal_table[i].name) == 0) {
			*ret = signal_table[i].sig;
			return true;
		}
	return false;
}

/* A sequence of scalars, or one scalar as a one-element list. */
static bool
conf_strv(struct loader *l, const struct conf_node *val, const char *path, const char *sub,
	  const char *expect, char ***ret)
{
	const struct conf_node *const *items = &val;
	size_t n = 1, k = 0;
	bool ok = true;
	char **v;

	if (val->kind == CONF_NODE_BAD)
		return false;
	if (val->kind == CONF_NODE_MAP) {
		conf_error_at(l, val, path, sub, "expected %s, got a mapping", expect);
		return false;
	}
	if (val->kind == CONF_NODE_SEQ) {
		items = (const struct conf_node *const *)val->kids;
		n = val->n;
	}

	v = calloc(n + 1, sizeof(*v));
	if (!v) {
		l->oom = true;
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = conf_scalar(l, items[i], path, sub, "a string in the list");

		if (!s) {
			ok = false;
			continue;
		}
		if (!(v[k++] = conf_strdup(l, s))) {
			ok = false;
			break;
		}
	}
	if (!ok) {
		ch_strv_free(v);
		return false;
	}
	ch_strv_free(*ret);
	*ret = v;
	return true;
}

/*
 * A mapping of plain keys to scalars, as key, value, ..., NULL. A value
 * may be empty (""); a key may not, nor appear twice.
 */
static bool
conf_map(struct loader *l, const struct conf_node *val, const char *path, const char *sub,
	 const char *expect, char ***ret)
{
	bool ok = true;
	size_t k = 0;
	char **v;

	if (val->kind == CONF_NODE_BAD)
		return false;
	if (ch_conf_node_is_null(val)) {
		val = NULL;
	} else if (val->kind != CONF_NODE_MAP) {
		conf_error_at(l, val, path, sub, "expected %s, got %s", expect,
			      ch_conf_node_kind_name(val));
		return false;
	}
	v = calloc((val ? val->n : 0) + 1, sizeof(*v));
	if (!v) {
		l->oom = true;
		return false;
	}
	for (size_t i = 0; val && i + 1 < val->n; i += 2) {
		const struct conf_node *key = val->kids[i], *value = val->kids[i + 1];
		const char *ks = conf_scalar(l, key, path, sub, "a string as key");
		const char *vs = "";

		if (!ks) {
			ok = false;
			continue;
		}
		for (size_t j = 0; j < k; j += 2)
			if (streq(v[j], ks)) {
				conf_error_at(l, key, path, sub, "key '%.80s' appears twice", ks);
				ok = false;
			}
		if (value->kind == CONF_NODE_BAD) {
			ok = false;
			continue;
		}
		if (value->kind != CONF_NODE_SCALAR || value->has_nul) {
			conf_error_at(l, value, path, sub, "%.80s: expected a string, got %s", ks,
				      value->has_nul ? "a string containing a NUL byte"
						     : ch_conf_node_kind_name(value));
			ok = false;
			continue;
		}
		if (!ch_conf_node_is_null(value))
			vs = value->s;
		if (!ok)
			continue;
		if (!(v[k] = conf_strdup(l, ks)) || !(v[k + 1] = conf_strdup(l, vs))) {
			ok = false;
			break;
		}
		k += 2;
	}
	if (!ok) {
		ch_strv_free(v);
		return false;
	}
	ch_strv_free(*ret);
	*ret = v;
	return true;
}

/*
 * Stores the value of key k into the struct at base. Returns false (after
 * reporting why) when the value does not fit the key's type.
 */
static bool
conf_fill(struct loader *l, const struct ch_conf_key *k, const struct conf_node *val, void *base,
	  const char *path)
{
	void *field = (char *)base + k->offset;
	const char *expect;
	const char *s;

	if ((unsigned)k->type >= ARRAY_SIZE(type_expect)) {
		conf_error_at(l, val, path, k->name, "key has an unsupported value type %d",
			      (int)k->type);
		return false;
	}
	expect = k->expect ? k->expect : type_expect[k->type];

	if (k->type == CH_CONF_STRV)
		return conf_strv(l, val, path, k->name, expect, (char ***)field);
	if (k->type == CH_CONF_MAP)
		return conf_map(l, val, path, k->name, expect, (char ***)field);

	s = conf_scalar(l, val, path, k->name, expect);
	if (!s)
		return false;

	switch (k->type) {
	case CH_CONF_STRING:
	case CH_CONF_PATH: {
		char *d = k->type == CH_CONF_PATH ? ch_path_join_abs(l->file->dir, s) : strdup(s);

		if (!d) {
			l->oom = true;
			return false;
		}
		free(*(char **)field);
		*(char **)field = d;
		return true;
	}
	case CH_CONF_DURATION: {
		int64_t d;

		if (ch_parse_duration(s, &d) < 0 || d <= 0)
			break;
		*(int64_t *)field = d;
		return true;
	}
	case CH_CONF_UINT:
		if (!parse_uint(s, (int64_t *)field))
			break;
		return true;
	case CH_CONF_BOOL:
		if (!parse_bool(s, (bool *)field))
			break;
		return true;
	case CH_CONF_MODE:
		if (!parse_mode(s, (int *)field))
			break;
		return true;
	case CH_CONF_SIGNAL:
		if (!parse_signal(s, (int *)field))
			break;
		return true;
	case CH_CONF_KEYTYPE: {
		enum ch_key_type t = ch_key_type_from_string(s);

		if ((int)t < 0)
			break;
		*(enum ch_key_type *)field = t;
		return true;
	}
	default:
		break;
	}
	conf_error_at(l, val, path, k->name, "expected %s, got \"%.80s\"", expect, s);
	return false;
}

static void
conf_opts_init(const struct ch_conf_key *keys, void *opts)
{
	for (const struct ch_conf_key *k = keys; k && k->name; k++) {
		void *field = (char *)opts + k->offset;

		if (k->type == CH_CONF_MODE || k->type == CH_CONF_KEYTYPE)
			*(int *)field = -1;
		else if (k->type == CH_CONF_SIGNAL)
			*(int *)field = 0;
	}
}

void
ch_conf_opts_free(const struct ch_conf_key *keys, void *opts)
{
	if (!opts)
		return;
	for (const struct ch_conf_key *k = keys; k && k->name; k++) {
		void *field = (char *)opts + k->offset;

		switch (k->type) {
		case CH_CONF_STRING:
		case CH_CONF_PATH:
			free(*(char **)field);
			*(char **)field = NULL;
			break;
		case CH_CONF_STRV:
		case CH_CONF_MAP:
			*(char ***)field = ch_strv_free(*(char ***)field);
			break;
		default:
			break;
		}
	}
}

/* ---- walking mappings --------------------------------------------------- */

typedef void conf_walk_fn(struct loader *l, size_t idx, const struct conf_node *key,
			  const struct conf_node *val, const char *path, void *arg);

/*
 * Checks that map is a mapping (an empty value counts as an empty one)
 * whose keys are all in names, without duplicates, and calls fn for each
 * known pair in document order. seen[i] is set to the key node of
 * names[i]. Returns false when map is not a mapping.
 */
static bool
conf_walk(struct loader *l, const struct conf_node *map, const char *path, const char *const *names,
	  size_t n_names, const struct conf_node **seen, conf_walk_fn *fn, void *arg)
{
	if (map->kind == CONF_NODE_BAD)
		return false;
	if (ch_conf_node_is_null(map))
		return true;
	if (map->kind != CONF_NODE_MAP) {
		if (map->kind == CONF_NODE_SCALAR)
			conf_error_at(l, map, path, NULL, "expected a mapping, got \"%.80s\"",
				      map->s);
		else
			conf_error_at(l, map, path, NULL, "expected a mapping, got %s",
				      ch_conf_node_kind_name(map));
		return false;
	}

	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct conf_node *key = map->kids[i], *val = map->kids[i + 1];
		size_t idx;

		if (key->kind == CONF_NODE_BAD)
			continue;
		if (key->kind != CONF_NODE_SCALAR || key->has_nul) {
			conf_error_at(l, key, path, NULL, "expected a plain string as key, got %s",
				      key->kind == CONF_NODE_SCALAR ? "a string with a NUL byte"
							       : ch_conf_node_kind_name(key));
			continue;
		}
		for (idx = 0; idx < n_names; idx++)
			if (streq(key->s, names[idx]))
				break;

		if (idx == n_names) {
			const char *hint = conf_suggest(key->s, names, n_names);

			if (hint) {
				conf_error_at(l, key, path, key->s,
					      "unknown key '%.80s'; did you mean '%s'?", key->s, hint);
			} else {
				_cleanup_free_ char *list = conf_join(names, n_names);

				conf_error_at(l, key, path, key->s,
					      "unknown key '%.80s'; expected one of: %s", key->s,
					      list ? list : "");
			}
			continue;
		}
		if (seen[idx]) {
			conf_error_at(l, key, path, key->s,
				      "duplicate key '%s' (first at line %u, column %u)", key->s,
				      seen[idx]->line, seen[idx]->col);
			continue;
		}
		seen[idx] = key;
		fn(l, idx, key, val, path, arg);
	}
	return true;
}

/* ---- certificate settings ----------------------------------------------- */

static const struct ch_conf_key settings_keys[] = {
	{ "ca", CH_CONF_STRV, offsetof(struct ch_conf_cert_settings, cas), false,
	  "the name of a CA defined under cas:, or a list of them in order of preference" },
	{ "key_type", CH_CONF_KEYTYPE, offsetof(struct ch_conf_cert_settings, key_type), false,
	  NULL },
	{ "lifetime", CH_CONF_DURATION, offsetof(struct ch_conf_cert_settings, lifetime), false,
	  NULL },
	{ "renew_before", CH_CONF_DURATION, offsetof(struct ch_conf_cert_settings, renew_before),
	  false, NULL },
	{ "warn_before", CH_CONF_DURATION, offsetof(struct ch_conf_cert_settings, warn_before),
	  false, NULL },
	{ "reuse_key", CH_CONF_BOOL, offsetof(struct ch_conf_cert_settings, reuse_key), false,
	  NULL },
	{ "targets", CH_CONF_STRV, offsetof(struct ch_conf_cert_settings, targets), false,
	  "a list of target names" },
	{ "endpoints", CH_CONF_STRV, offsetof(struct ch_conf_cert_settings, endpoints), false,
	  "a list of host:port endpoints that must serve the certificate" },
	{ "verify_sni", CH_CONF_STRING, offsetof(struct ch_conf_cert_settings, verify_sni), false,
	  "the server name sent when checking endpoints" },
	{ "verify_trust", CH_CONF_PATH, offsetof(struct ch_conf_cert_settings, verify_trust),
	  false, "a PEM file of trust anchors the served chain must verify against" },
	{ "failover_after", CH_CONF_UINT,
	  offsetof(struct ch_conf_cert_settings, failover_after), false,
	  "the number of failed attempts at a CA before the next CA of ca: is asked (>= 1)" },
	{ "profile", CH_CONF_STRING, offsetof(struct ch_conf_cert_settings, profile), false,
	  "the name of a certificate profile the ACME CA offers, e.g. shortlived" },
	{ NULL },
};

#define N_SETTINGS (ARRAY_SIZE(settings_keys) - 1)

/* "names" followed by the settings keys, for certificates. */
static const char *const cert_names[] = {
	"names",     "ca",	   "key_type",	   "lifetime",	   "renew_before", "warn_before",
	"reuse_key", "targets", "endpoints", "verify_sni", "verify_trust", "failover_after",
	"profile",
};
#define defaults_names (cert_names + 1)
_Static_assert(ARRAY_SIZE(cert_names) == N_SETTINGS + 1, "cert_names matches settings_keys");

static void
settings_free(struct ch_conf_cert_settings *s)
{
	free(s->ca);
	s->ca = NULL;
	s->cas = ch_strv_free(s->cas);
	free(s->cas_at);
	s->cas_at = NULL;
	s->targets = ch_strv_free(s->targets);
	s->endpoints = ch_strv_free(s->endpoints);
	free(s->verify_sni);
	s->verify_sni = NULL;
	free(s->verify_trust);
	s->verify_trust = NULL;
	free(s->profile);
	s->profile = NULL;
}

/* A certificate's settings: what points into c's defaults, implicit or empty_strv is theirs. */
static void
settings_free_cert(struct ch_conf_cert_settings *s, const struct ch_conf *c)
{
	const struct ch_conf_cert_settings *d = &c->defaults, *im = &c->implicit;

	if (s->ca != d->ca && s->ca != im->ca)
		free(s->ca);
	if (s->cas != d->cas && s->cas != im->cas) {
		ch_strv_free(s->cas);
		free(s->cas_at);
	}
	if (s->targets != d->targets && s->targets != c->empty_strv)
		ch_strv_free(s->targets);
	if (s->endpoints != d->endpoints && s->endpoints != c->empty_strv)
		ch_strv_free(s->endpoints);
	if (s->verify_sni != d->verify_sni)
		free(s->verify_sni);
	if (s->verify_trust != d->verify_trust)
		free(s->verify_trust);
	if (s->profile != d->profile)
		free(s->profile);
	*s = (struct ch_conf_cert_settings){ 0 };
}

/*
 * After `ca:` was read into s->cas: the first is where renewals start,
 * each is listed once, and where each was written is kept for the check
 * of the names once every CA is known.
 */
static void
conf_setting_cas(struct loader *l, const struct conf_node *val, const char *path,
		 struct ch_conf_cert_settings *s)
{
	size_t n = ch_strv_length(s->cas);

	free(s->ca);
	s->ca = NULL;
	free(s->cas_at);
	s->cas_at = NULL;
	if (n == 0) {
		conf_error_at(l, val, path, "ca", "expected at least one CA name, got an empty list");
		return;
	}
	s->ca = conf_strdup(l, s->cas[0]);
	s->cas_at = calloc(n, sizeof(*s->cas_at));
	if (!s->cas_at) {
		l->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const struct conf_node *item = val->kind == CONF_NODE_SEQ && i < val->n
						       ? val->kids[i]
						       : val;

		s->cas_at[i] = (struct ch_conf_mark){ item->line, item->col };
		for (size_t k = 0; k < i; k++)
			if (streq(s->cas[k], s->cas[i]))
				conf_error_at(l, item, path, "ca",
					      "CA '%.80s' is listed twice; list each CA once",
					      s->cas[i]);
	}
}

/* Fills one settings key; settings_keys[idx]. */
static void
conf_setting(struct loader *l, size_t idx, const struct conf_node *val, const char *path,
	     struct ch_conf_cert_settings *s)
{
	const struct ch_conf_key *k = &settings_keys[idx];

	if (!conf_fill(l, k, val, s, path))
		return;
	if (streq(k->name, "reuse_key"))
		s->reuse_key_set = true;
	if (streq(k->name, "ca"))
		conf_setting_cas(l, val, path, s);
	if (streq(k->name, "failover_after") && s->failover_after < 1) {
		conf_error_at(l, val, path, k->name,
			      "expected %s, got 0; to never fail over, list a single CA", k->expect);
		s->failover_after = 0;
	}
	if (streq(k->name, "endpoints"))
		for (char **e = s->endpoints; e && *e; e++) {
			char *host = NULL;
			uint16_t port;

			if (ch_verify_parse_endpoint(*e, &host, &port) < 0)
				conf_error_at(l, val, path, k->name,
					      "expected host:port or [IPv6]:port, got \"%.80s\"",
					      *e);
			free(host);
		}
}

static void
defaults_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	     const char *path, void *arg)
{
	struct conf_mark m = { val->line, val->col };

	conf_setting(l, idx, val, path, &l->c->defaults);
	if (streq(settings_keys[idx].name, "ca"))
		l->defaults_ca_at = m;
	else if (streq(settings_keys[idx].name, "targets"))
		l->defaults_targets_at = m;
	else if (streq(settings_keys[idx].name, "renew_before"))
		l->defaults_renew_at = m;
}

static void
conf_defaults(struct loader *l, const struct conf_node *val)
{
	const struct conf_node *seen[N_SETTINGS] = { 0 };

	conf_walk(l, val, "defaults", defaults_names, N_SETTINGS, seen, defaults_key, NULL);
}

/* ---- certificate names -------------------------------------------------- */

/*
 * Whether s is among the k strings of v. Lists of more than 16 (total n)
 * are looked up in idx instead, which the caller fills.
 */
static bool
strv_find(char *const *v, size_t k, size_t n, const struct name_index *idx, const char *s)
{
	if (n > 16)
		return name_index_find(idx, s) != SIZE_MAX;
	for (size_t i = 0; i < k; i++)
		if (streq(v[i], s))
			return true;
	return false;
}

static void
conf_cert_names(struct loader *l, const struct conf_node *val, const char *path,
		struct ch_conf_cert *cert)
{
	static const char expect[] = "a list of DNS names or IP addresses";
	const struct conf_node *const *items = &val;
	struct name_index seen = { 0 };
	size_t n = 1, nd = 0, ni = 0;
	char **dns = NULL, **ip = NULL;
	bool ok = true;

	if (val->kind == CONF_NODE_BAD)
		return;
	if (val->kind == CONF_NODE_MAP) {
		conf_error_at(l, val, path, "names", "expected %s, got a mapping", expect);
		return;
	}
	if (val->kind == CONF_NODE_SEQ) {
		items = (const struct conf_node *const *)val->kids;
		n = val->n;
	}
	if (n == 0 || ch_conf_node_is_null(val)) {
		conf_error_at(l, val, path, "names",
			      "expected at least one DNS name or IP address, got none");
		return;
	}

	dns = calloc(n + 1, sizeof(*dns));
	ip = calloc(n + 1, sizeof(*ip));
	if (!dns || !ip) {
		l->oom = true;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = conf_scalar(l, items[i], path, "names", "a DNS name or IP address");
		const char *why;
		char buf[64], *d;
		bool is_ip;

		if (!s) {
			ok = false;
			continue;
		}
		d = ch_conf_name_normalize(s, &is_ip);
		if (!d) {
			l->oom = true;
			goto out;
		}
		if (!is_ip && (why = ch_conf_dns_name_problem(d, buf, sizeof(buf)))) {
			conf_error_at(l, items[i], path, "names",
				      "invalid DNS name '%.80s': %s; expected a host name such as "
				      "www.example.com or an IP address",
				      s, why);
			free(d);
			ok = false;
			continue;
		}
		if (strv_find(is_ip ? ip : dns, is_ip ? ni : nd, n, &seen, d)) {
			conf_error_at(l, items[i], path, "names", "name '%.80s' is listed twice",
				      s);
			free(d);
			ok = false;
			continue;
		}
		if (is_ip)
			ip[ni++] = d;
		else
			dns[nd++] = d;
		if (n > 16 && name_index_add(&seen, d, i) < 0) {
			l->oom = true;
			goto out;
		}
	}
	if (ok) {
		ch_strv_free(cert->dns_names);
		ch_strv_free(cert->ip_names);
		cert->dns_names = TAKE_PTR(dns);
		cert->ip_names = TAKE_PTR(ip);
	}
out:
	name_index_free(&seen);
	ch_strv_free(dns);
	ch_strv_free(ip);
}

/* ---- sections of named entries ------------------------------------------ */

static bool
grow(void **v, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t c;

	if (n < *cap)
		return true;
	c = *cap ? *cap * 2 : 16;
	p = reallocarray(*v, c, size);
	if (!p)
		return false;
	*v = p;
	*cap = c;
	return true;
}

/*
 * The sections of named entries, cas, targets and certificates, described
 * by offsets so that one function can add to any of them. Each entry type
 * starts with its char *name.
 */
struct section {
	const char *name; /* "cas" */
	const char *what; /* "CA" */
	size_t size;      /* of one entry */
	size_t v, n;      /* offsets of the array and its length in struct ch_conf */
	size_t origin;    /* offset of the struct ch_conf_origin in an entry */
};

static const struct section section_cas = {
	"cas", "CA", sizeof(struct ch_conf_ca), offsetof(struct ch_conf, cas),
	offsetof(struct ch_conf, n_cas), offsetof(struct ch_conf_ca, origin),
};
static const struct section section_targets = {
	"targets", "target", sizeof(struct ch_conf_target), offsetof(struct ch_conf, targets),
	offsetof(struct ch_conf, n_targets), offsetof(struct ch_conf_target, origin),
};
static const struct section section_certs = {
	"certificates", "certificate", sizeof(struct ch_conf_cert),
	offsetof(struct ch_conf, certs), offsetof(struct ch_conf, n_certs),
	offsetof(struct ch_conf_cert, origin),
};
static const struct section section_notifiers = {
	"notifiers", "notifier", sizeof(struct ch_conf_notifier),
	offsetof(struct ch_conf, notifiers), offsetof(struct ch_conf, n_notifiers),
	offsetof(struct ch_conf_notifier, origin),
};

/* The current file's path as origins keep it: one copy per file, not per entry. */
static const char *
conf_file_kept(struct loader *l)
{
	char **v;

	if (l->file->kept)
		return l->file->kept;
	v = realloc(l->c->files, (l->c->n_files + 1) * sizeof(*v));
	if (!v)
		return NULL;
	l->c->files = v;
	v[l->c->n_files] = strdup(l->file->path);
	if (!v[l->c->n_files])
		return NULL;
	l->file->kept = v[l->c->n_files++];
	return l->file->kept;
}

/*
 * Adds a zeroed entry named by key to a section, after checking that the
 * name is valid and new. Returns NULL after reporting why not (or on OOM).
 */
static void *
section_add(struct loader *l, const struct section *sec, struct name_index *idx, size_t *cap,
	    const struct conf_node *key)
{
	void **v = (void **)((char *)l->c + sec->v);
	size_t *n = (size_t *)((char *)l->c + sec->n);
	struct ch_conf_origin *o;
	char *entry;
	size_t i;

	if (!conf_name_valid(key->s, key->n)) {
		conf_error_at(l, key, sec->name, NULL,
			      "invalid %s name '%.80s'; expected 1 to %d characters of A-Z, a-z, "
			      "0-9, '.', '_' and '-'",
			      sec->what, key->has_nul ? "" : key->s, CONF_NAME_MAX);
		return NULL;
	}
	/* Names become file names (state_dir/certs/<name>/): no ".", ".." or hidden ones. */
	if (key->s[0] == '.') {
		conf_error_at(l, key, sec->name, NULL,
			      "invalid %s name '%s'; a name must not start with '.'", sec->what,
			      key->s);
		return NULL;
	}
	i = name_index_find(idx, key->s);
	if (i != SIZE_MAX) {
		o = (struct ch_conf_origin *)((char *)*v + i * sec->size + sec->origin);
		conf_error_at(l, key, sec->name, key->s,
			      "duplicate %s '%s' (first defined at %s:%u:%u)", sec->what, key->s,
			      o->file, o->line, o->column);
		return NULL;
	}

	if (!grow(v, cap, *n, sec->size)) {
		l->oom = true;
		return NULL;
	}
	entry = (char *)*v + *n * sec->size;
	memset(entry, 0, sec->size);
	o = (struct ch_conf_origin *)(entry + sec->origin);
	*(char **)entry = strdup(key->s);
	o->file = conf_file_kept(l);
	o->line = key->line;
	o->column = key->col;
	if (!*(char **)entry || !o->file || name_index_add(idx, *(char **)entry, *n) < 0) {
		free(*(char **)entry);
		l->oom = true;
		return NULL;
	}
	(*n)++;
	return entry;
}

/* What the loader needs of a CA or target backend's ops. */
struct plugin {
	const struct ch_conf_key *keys;
	size_t opts_size;
	int (*check)(const void *opts, struct ch_err *reterr);
};

struct plugin_kind {
	const char *what;    /* "CA", "target" */
	const char *section; /* "cas", "targets" */
	const char *(*types)(void);
	const void *(*find)(const char *type, struct plugin *ret);
};

static const void *
plugin_find_ca(const char *type, struct plugin *ret)
{
	const struct ch_ca_ops *ops = ch_ca_ops_find(type);

	if (ops)
		*ret = (struct plugin){ ops->keys, ops->opts_size, ops->check };
	return ops;
}

static const void *
plugin_find_target(const char *type, struct plugin *ret)
{
	const struct ch_target_ops *ops = ch_target_ops_find(type);

	if (ops)
		*ret = (struct plugin){ ops->keys, ops->opts_size, ops->check };
	return ops;
}

static const void *
plugin_find_notifier(const char *type, struct plugin *ret)
{
	const struct ch_notifier_ops *ops = ch_notifier_ops_find(type);

	if (ops)
		*ret = (struct plugin){ ops->keys, ops->opts_size, ops->check };
	return ops;
}

static const struct plugin_kind kind_ca = { "CA", "cas", ch_ca_types, plugin_find_ca };
static const struct plugin_kind kind_notifier = { "notifier", "notifiers", ch_notifier_types,
						  plugin_find_notifier };
static const struct plugin_kind kind_target = { "target", "targets", ch_target_types,
						plugin_find_target };

/* Keys every plugin of a kind accepts besides its own (a CA's staging:). */
struct plugin_extra {
	const char *const *names;
	size_t n;
	conf_walk_fn *fn; /* called with the index into names */
	void *arg;
};

struct plugin_walk {
	const struct ch_conf_key *keys;
	size_t n_keys;
	void *opts;
	struct ch_conf_budget *budget; /* CAs only */
	const struct plugin_extra *extra;
};

static const struct ch_conf_key budget_keys[] = {
	{ "certificates_per_domain_per_week", CH_CONF_UINT,
	  offsetof(struct ch_conf_budget, certs_per_domain_per_week), false,
	  "a number of certificates (0 = no limit)" },
	{ "failed_validations_per_hour", CH_CONF_UINT,
	  offsetof(struct ch_conf_budget, failed_validations_per_hour), false,
	  "a number of failed attempts (0 = no limit)" },
	{ NULL },
};

static void
budget_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	   const char *path, void *arg)
{
	conf_fill(l, &budget_keys[idx], val, arg, path);
}

/* budget: under a CA; a key left out keeps -1 (the CA's default, if any). */
static void
conf_budget(struct loader *l, const struct conf_node *val, const char *path,
	    struct ch_conf_budget *b)
{
	static const char *const names[] = { "certificates_per_domain_per_week",
					     "failed_validations_per_hour" };
	const struct conf_node *seen[ARRAY_SIZE(names)] = { 0 };
	char sub[64 + CONF_NAME_MAX];

	_Static_assert(ARRAY_SIZE(names) == ARRAY_SIZE(budget_keys) - 1, "budget keys");
	snprintf(sub, sizeof(sub), "%s.budget", path);
	conf_walk(l, val, sub, names, ARRAY_SIZE(names), seen, budget_key, b);
}

static void
plugin_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	   const char *path, void *arg)
{
	struct plugin_walk *w = arg;

	if (idx < w->n_keys)
		conf_fill(l, &w->keys[idx], val, w->opts, path);
	else if (idx == w->n_keys + 1 && w->budget)
		conf_budget(l, val, path, w->budget);
	else if (idx > w->n_keys && w->extra)
		w->extra->fn(l, idx - w->n_keys - 1 - (w->budget ? 1 : 0), key, val, path,
			     w->extra->arg);
	/* idx == n_keys is "type", handled before the walk. */
}

/*
 * Parses the body of a CA or target: its type first, then the options
 * that type's key table describes. Sets *ret_type, *ret_ops and *ret_opts
 * as far as it got.
 */
static void
conf_plugin(struct loader *l, const struct plugin_kind *kind, const struct conf_node *val,
	    const char *path, char **ret_type, const void **ret_ops, void **ret_opts,
	    struct ch_conf_budget *budget, const struct plugin_extra *extra)
{
	const struct conf_node *type_key = NULL, *type_val, **seen = NULL;
	const char **names = NULL;
	struct plugin p = { 0 };
	struct plugin_walk w = { 0 };
	size_t n_errors = l->n_errors;
	const char *type;
	const void *ops;
	struct ch_err err = { "" };
	size_t n_extra;

	if (val->kind == CONF_NODE_BAD)
		return;
	if (val->kind != CONF_NODE_MAP && !ch_conf_node_is_null(val)) {
		conf_error_at(l, val, path, NULL, "expected a mapping with a 'type' key, got %s",
			      ch_conf_node_kind_name(val));
		return;
	}
	type_val = ch_conf_map_get(val, "type", &type_key);
	if (!type_val) {
		conf_error_at(l, val, path, NULL, "missing required key 'type'; known types: %s",
			      kind->types());
		return;
	}
	type = conf_scalar(l, type_val, path, "type", "a type name");
	if (!type)
		return;
	if (!(*ret_type = conf_strdup(l, type)))
		return;

	ops = kind->find(type, &p);
	if (!ops) {
		_cleanup_strv_free_ char **types = split_list(kind->types());
		const char *hint = types ? conf_suggest(type, (const char *const *)types,
							ch_strv_length(types))
					 : NULL;

		if (hint)
			conf_error_at(l, type_val, path, "type",
				      "unknown %s type '%.80s'; known types: %s; did you mean '%s'?",
				      kind->what, type, kind->types(), hint);
		else
			conf_error_at(l, type_val, path, "type",
				      "unknown %s type '%.80s'; known types: %s", kind->what, type,
				      kind->types());
		return;
	}
	*ret_ops = ops;

	*ret_opts = calloc(1, p.opts_size ? p.opts_size : 1);
	if (!*ret_opts) {
		l->oom = true;
		return;
	}
	conf_opts_init(p.keys, *ret_opts);

	for (const struct ch_conf_key *k = p.keys; k && k->name; k++)
		w.n_keys++;
	n_extra = extra ? extra->n : 0;
	names = calloc(w.n_keys + 2 + n_extra, sizeof(*names));
	seen = calloc(w.n_keys + 2 + n_extra, sizeof(*seen));
	if (!names || !seen) {
		l->oom = true;
		goto out;
	}
	for (size_t i = 0; i < w.n_keys; i++)
		names[i] = p.keys[i].name;
	names[w.n_keys] = "type";
	names[w.n_keys + 1] = "budget"; /* CAs only */
	for (size_t i = 0; i < n_extra; i++)
		names[w.n_keys + (budget ? 2 : 1) + i] = extra->names[i];
	w.keys = p.keys;
	w.opts = *ret_opts;
	w.budget = budget;
	w.extra = extra;

	conf_walk(l, val, path, names, w.n_keys + (budget ? 2 : 1) + n_extra, seen, plugin_key,
		  &w);

	for (size_t i = 0; p.keys && i < w.n_keys; i++)
		if (p.keys[i].required && !seen[i])
			conf_error_at(l, val, path, NULL, "missing required key '%s'",
				      p.keys[i].name);

	if (l->n_errors == n_errors && p.check && p.check(*ret_opts, &err) < 0)
		conf_error_at(l, val, path, NULL, "%s",
			      *err.msg ? err.msg : "invalid combination of options");
out:
	free(names);
	free(seen);
}

/* ---- rehearsal: (global and per CA) and a CA's staging: ------------------ */

static void
rehearsal_key(struct loader *l, size_t idx, const struct conf_node *key,
	      const struct conf_node *val, const char *path, void *arg)
{
	static const struct ch_conf_key interval = {
		"interval", CH_CONF_DURATION, offsetof(struct ch_conf_rehearsal, interval), false,
		"a duration such as 30d or 12h, or off"
	};
	struct ch_conf_rehearsal *rh = arg;

	if (val->kind == CONF_NODE_SCALAR && streq(val->s, "off")) {
		rh->interval = 0;
		return;
	}
	conf_fill(l, &interval, val, rh, path);
}

/* rehearsal: {interval: 30d} or rehearsal: off */
static void
conf_rehearsal(struct loader *l, const struct conf_node *val, const char *path,
	       struct ch_conf_rehearsal *rh)
{
	static const char *const names[] = { "interval" };
	const struct conf_node *seen[ARRAY_SIZE(names)] = { 0 };

	rh->set = true;
	if (val->kind == CONF_NODE_SCALAR && streq(val->s, "off")) {
		rh->interval = 0;
		return;
	}
	conf_walk(l, val, path, names, ARRAY_SIZE(names), seen, rehearsal_key, rh);
}

enum { CA_STAGING, CA_REHEARSAL, _CA_EXTRA_MAX };

static const char *const ca_extra_names[_CA_EXTRA_MAX] = {
	[CA_STAGING] = "staging",
	[CA_REHEARSAL] = "rehearsal",
};

static void
ca_extra_key(struct loader *l, size_t idx, const struct conf_node *key,
	     const struct conf_node *val, const char *path, void *arg)
{
	struct ch_conf_ca *ca = *(struct ch_conf_ca **)arg;
	char sub[16 + 2 * CONF_NAME_MAX];
	const char *s;

	if (idx == CA_REHEARSAL) {
		snprintf(sub, sizeof(sub), "%s.rehearsal", path);
		conf_rehearsal(l, val, sub, &ca->rehearsal);
		return;
	}
	s = conf_scalar(l, val, path, key->s, "the name of another CA under cas:");
	if (!s)
		return;
	free(ca->staging);
	ca->staging = conf_strdup(l, s);
	ca->staging_line = val->line;
	ca->staging_column = val->col;
}

static void
conf_ca(struct loader *l, const struct conf_node *key, const struct conf_node *val)
{
	struct ch_conf_ca *cur = NULL;
	const struct plugin_extra ca_extra = { ca_extra_names, _CA_EXTRA_MAX, ca_extra_key,
					       &cur };
	struct ch_conf_ca *ca = section_add(l, &section_cas, &l->cas, &l->cap_cas, key);
	const void *ops = NULL;
	char path[16 + CONF_NAME_MAX];

	if (!ca)
		return;
	cur = ca;
	make_path(path, sizeof(path), "cas", ca->name);
	ca->budget = (struct ch_conf_budget){ -1, -1 };
	conf_plugin(l, &kind_ca, val, path, &ca->type, &ops, &ca->opts, &ca->budget, &ca_extra);
	ca->ops = ops;
}

static void
conf_target(struct loader *l, const struct conf_node *key, const struct conf_node *val)
{
	struct ch_conf_target *t =
		section_add(l, &section_targets, &l->targets, &l->cap_targets, key);
	const void *ops = NULL;
	char path[16 + CONF_NAME_MAX];

	if (!t)
		return;
	make_path(path, sizeof(path), "targets", t->name);
	conf_plugin(l, &kind_target, val, path, &t->type, &ops, &t->opts, NULL, NULL);
	t->ops = ops;
}

static void
conf_notifier(struct loader *l, const struct conf_node *key, const struct conf_node *val)
{
	struct ch_conf_notifier *n =
		section_add(l, &section_notifiers, &l->notifiers, &l->cap_notifiers, key);
	const void *ops = NULL;
	char path[16 + CONF_NAME_MAX];

	if (!n)
		return;
	make_path(path, sizeof(path), "notifiers", n->name);
	conf_plugin(l, &kind_notifier, val, path, &n->type, &ops, &n->opts, NULL, NULL);
	n->ops = ops;
}

/* ---- alerts: and heartbeat: --------------------------------------------- */

enum { ALERTS_REPEAT, ALERTS_WINDOWS, ALERTS_FAILURES, ALERTS_CHECK, _ALERTS_MAX };

static const char *const alerts_names[_ALERTS_MAX] = {
	[ALERTS_REPEAT] = "repeat_interval", [ALERTS_WINDOWS] = "warning_windows",
	[ALERTS_FAILURES] = "renewal_failures", [ALERTS_CHECK] = "check_interval",
};

static const struct ch_conf_key alerts_keys[_ALERTS_MAX] = {
	[ALERTS_REPEAT] = { "repeat_interval", CH_CONF_DURATION,
			    offsetof(struct ch_conf_alerts, repeat_interval) },
	[ALERTS_FAILURES] = { "renewal_failures", CH_CONF_UINT,
			      offsetof(struct ch_conf_alerts, renewal_failures), false,
			      "an integer of at least 1" },
	[ALERTS_CHECK] = { "check_interval", CH_CONF_DURATION,
			   offsetof(struct ch_conf_alerts, check_interval) },
};

static int
cmp_desc_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

static void
alerts_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	   const char *path, void *arg)
{
	struct ch_conf_alerts *a = arg;
	_cleanup_strv_free_ char **v = NULL;
	size_t n;

	if (idx != ALERTS_WINDOWS) {
		if (conf_fill(l, &alerts_keys[idx], val, a, path) && idx == ALERTS_FAILURES &&
		    a->renewal_failures < 1) {
			conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
				      alerts_keys[idx].expect, val->s);
			a->renewal_failures = 0;
		}
		return;
	}
	if (!conf_strv(l, val, path, key->s, "a list of durations such as [30d, 7d, 1d]", &v))
		return;
	n = ch_strv_length(v);
	free(a->warning_windows);
	a->warning_windows = calloc(n + 1, sizeof(*a->warning_windows));
	a->n_warning_windows = 0;
	if (!a->warning_windows) {
		l->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t d;

		if (ch_parse_duration(v[i], &d) < 0 || d <= 0) {
			conf_error_at(l, val, path, key->s,
				      "expected a list of durations such as [30d, 7d, 1d], got "
				      "\"%.80s\" in it",
				      v[i]);
			continue;
		}
		a->warning_windows[a->n_warning_windows++] = d;
	}
	qsort(a->warning_windows, a->n_warning_windows, sizeof(int64_t), cmp_desc_int64);
}

static void
conf_alerts(struct loader *l, const struct conf_node *val)
{
	const struct conf_node *seen[_ALERTS_MAX] = { 0 };

	conf_walk(l, val, "alerts", alerts_names, _ALERTS_MAX, seen, alerts_key, &l->c->alerts);
}

enum { HB_URL, HB_METHOD, HB_INTERVAL, HB_TIMEOUT, _HB_MAX };

static const char *const heartbeat_names[_HB_MAX] = {
	[HB_URL] = "url", [HB_METHOD] = "method", [HB_INTERVAL] = "interval",
	[HB_TIMEOUT] = "timeout",
};

static const struct ch_conf_key heartbeat_keys[_HB_MAX] = {
	[HB_URL] = { "url", CH_CONF_STRING, offsetof(struct ch_conf_heartbeat, url), true,
		     "an http:// or https:// URL" },
	[HB_METHOD] = { "method", CH_CONF_STRING, offsetof(struct ch_conf_heartbeat, method),
			false, "GET or POST" },
	[HB_INTERVAL] = { "interval", CH_CONF_DURATION,
			  offsetof(struct ch_conf_heartbeat, interval) },
	[HB_TIMEOUT] = { "timeout", CH_CONF_DURATION,
			 offsetof(struct ch_conf_heartbeat, timeout) },
};

static void
heartbeat_key(struct loader *l, size_t idx, const struct conf_node *key,
	      const struct conf_node *val, const char *path, void *arg)
{
	struct ch_conf_heartbeat *h = arg;
	char **field;

	if (!conf_fill(l, &heartbeat_keys[idx], val, h, path))
		return;
	field = idx == HB_URL ? &h->url : idx == HB_METHOD ? &h->method : NULL;
	if (!field)
		return;
	if (idx == HB_URL ? (strncmp(*field, "http://", 7) == 0 ||
			     strncmp(*field, "https://", 8) == 0)
			  : (streq(*field, "GET") || streq(*field, "POST")))
		return;
	conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
		      heartbeat_keys[idx].expect, *field);
	free(*field);
	*field = NULL;
}

static void
conf_heartbeat(struct loader *l, const struct conf_node *val)
{
	const struct conf_node *seen[_HB_MAX] = { 0 };

	if (!conf_walk(l, val, "heartbeat", heartbeat_names, _HB_MAX, seen, heartbeat_key,
		       &l->c->heartbeat))
		return;
	if (!ch_conf_node_is_null(val) && !seen[HB_URL])
		conf_error_at(l, val, "heartbeat", NULL, "missing required key 'url'");
}

static void
cert_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	 const char *path, void *arg)
{
	struct ch_conf_cert *cert = arg;

	if (idx == 0)
		conf_cert_names(l, val, path, cert);
	else
		conf_setting(l, idx - 1, val, path, &cert->s);
}

static void
conf_cert(struct loader *l, const struct conf_node *key, const struct conf_node *val)
{
	const struct conf_node *seen[ARRAY_SIZE(cert_names)] = { 0 };
	struct ch_conf_cert *cert = section_add(l, &section_certs, &l->certs, &l->cap_certs, key);
	char path[16 + CONF_NAME_MAX];

	if (!cert)
		return;
	cert->s.key_type = -1;
	make_path(path, sizeof(path), "certificates", cert->name);
	if (!conf_walk(l, val, path, cert_names, ARRAY_SIZE(cert_names), seen, cert_key, cert))
		return;
	if (!seen[0])
		conf_error_at(l, val, path, NULL, "missing required key 'names'");
}

/* A section mapping entry names to bodies: cas, targets, certificates. */
static void
conf_section(struct loader *l, const struct conf_node *map, const char *section,
	     void (*fn)(struct loader *l, const struct conf_node *key, const struct conf_node *val))
{
	if (map->kind == CONF_NODE_BAD || ch_conf_node_is_null(map))
		return;
	if (map->kind != CONF_NODE_MAP) {
		conf_error_at(l, map, section, NULL,
			      "expected a mapping from names to settings, got %s",
			      ch_conf_node_kind_name(map));
		return;
	}
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct conf_node *key = map->kids[i];

		if (key->kind == CONF_NODE_BAD)
			continue;
		if (key->kind != CONF_NODE_SCALAR) {
			conf_error_at(l, key, section, NULL, "expected a name as key, got %s",
				      ch_conf_node_kind_name(key));
			continue;
		}
		fn(l, key, map->kids[i + 1]);
		if (l->oom)
			return;
	}
}

/* ---- files and includes ------------------------------------------------- */

static void conf_file_process(struct loader *l, const struct conf_node *root);

/*
 * Loads one file. inc is the include pattern that named it (NULL for the
 * main file), where problems opening it are reported.
 */
static int
conf_load_file(struct loader *l, const char *path, const struct conf_node *inc)
{
	struct conf_file f = { .path = path, .main = inc == NULL };
	struct conf_file *saved = l->file;
	struct conf_arena arena = { 0 };
	struct conf_node *root = NULL;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	char *slash;
	int r;

	f.dir = strdup(path);
	if (!f.dir) {
		l->oom = true;
		return -ENOMEM;
	}
	slash = strrchr(f.dir, '/');
	if (slash == f.dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';

	f.real = realpath(path, NULL);
	if (!f.real && !(f.real = strdup(path))) {
		free(f.dir);
		l->oom = true;
		return -ENOMEM;
	}

	for (size_t i = 0; i < l->depth; i++) {
		if (!streq(l->stack[i]->real, f.real))
			continue;

		size_t sz = strlen(path) + 1;
		char *chain, *p;

		for (size_t j = i; j < l->depth; j++)
			sz += strlen(l->stack[j]->path) + 4;
		chain = p = malloc(sz);
		if (!chain) {
			l->oom = true;
			r = -ENOMEM;
			goto out;
		}
		for (size_t j = i; j < l->depth; j++) {
			/* cppcheck-suppress uninitdata ; sprintf writes p, it does not read it */
			p += sprintf(p, "%s -> ", l->stack[j]->path);
		}
		strcpy(p, path);
		conf_error_at(l, inc, "", "include", "include cycle: %s", chain);
		free(chain);
		r = -ELOOP;
		goto out;
	}

	r = ch_conf_read_file(path, &buf, &len);
	if (r == -ENOMEM) {
		l->oom = true;
		goto out;
	}
	if (r < 0) {
		if (inc)
			conf_error_at(l, inc, "", "include", "cannot read included file %s: %s",
				      path, ch_conf_read_strerror(r));
		else {
			conf_error(l, path, 0, 0, "", NULL, "cannot read configuration: %s",
				   ch_conf_read_strerror(r));
			l->main_error = r;
		}
		goto out;
	}

	l->stack[l->depth++] = &f;
	l->file = &f;
	r = ch_conf_tree_parse(buf, len, &arena, conf_tree_error, l, &root);
	if (r == -ENOMEM)
		l->oom = true;
	else if (r < 0)
		l->syntax_error = true;
	else if (root)
		conf_file_process(l, root);
	l->file = saved;
	l->depth--;
	ch_conf_arena_free(&arena);
out:
	free(f.dir);
	free(f.real);
	return r;
}

static void
conf_include_one(struct loader *l, const struct conf_node *pat)
{
	_cleanup_free_ char *full = NULL;
	struct stat st;
	const char *s;
	glob_t g;
	int r;

	s = conf_scalar(l, pat, "", "include", "a file name or glob pattern");
	if (!s)
		return;
	if (l->depth > CONF_MAX_INCLUDE_DEPTH) {
		conf_error_at(l, pat, "", "include", "includes nested deeper than %d levels",
			      CONF_MAX_INCLUDE_DEPTH);
		return;
	}
	full = ch_path_join_abs(l->file->dir, s);
	if (!full) {
		l->oom = true;
		return;
	}

	r = glob(full, 0, NULL, &g);
	if (r == GLOB_NOMATCH) {
		/* A pattern may match nothing, but a plain file name must exist. */
		if (strpbrk(s, "*?["))
			return;
		if (stat(full, &st) < 0 && errno == ENOENT)
			conf_error_at(l, pat, "", "include", "include file %s does not exist", full);
		else
			conf_load_file(l, full, pat); /* reports why it cannot be read */
		return;
	}
	if (r == GLOB_NOSPACE) {
		l->oom = true;
		return;
	}
	if (r != 0) {
		conf_error_at(l, pat, "", "include", "cannot expand include pattern '%.80s'", s);
		return;
	}
	for (size_t i = 0; i < g.gl_pathc && !l->oom; i++)
		conf_load_file(l, g.gl_pathv[i], pat);
	globfree(&g);
}

static void
conf_include(struct loader *l, const struct conf_node *val)
{
	if (val->kind == CONF_NODE_BAD || ch_conf_node_is_null(val))
		return;
	if (val->kind == CONF_NODE_MAP) {
		conf_error_at(l, val, "", "include",
			      "expected a file name, a glob pattern or a list of them, got a mapping");
		return;
	}
	if (val->kind == CONF_NODE_SCALAR) {
		conf_include_one(l, val);
		return;
	}
	for (size_t i = 0; i < val->n && !l->oom; i++)
		conf_include_one(l, val->kids[i]);
}

enum {
	TOP_STATE_DIR,
	TOP_DATABASE,
	TOP_SOCKET,
	TOP_LOG_LEVEL,
	TOP_CONCURRENCY,
	TOP_VERIFY_INTERVAL,
	TOP_STALE_GRACE,
	TOP_METRICS_LISTEN,
	TOP_CRL_LISTEN,
	TOP_ALERTS,
	TOP_HEARTBEAT,
	TOP_REHEARSAL,
	TOP_DEFAULTS,
	TOP_INCLUDE,
	TOP_CAS,
	TOP_TARGETS,
	TOP_CERTIFICATES,
	TOP_NOTIFIERS,
	_TOP_MAX,
};

static const char *const top_names[_TOP_MAX] = {
	[TOP_STATE_DIR] = "state_dir",	 [TOP_DATABASE] = "database",
	[TOP_SOCKET] = "socket",	 [TOP_LOG_LEVEL] = "log_level",
	[TOP_CONCURRENCY] = "concurrency", [TOP_DEFAULTS] = "defaults",
	[TOP_VERIFY_INTERVAL] = "verify_interval", [TOP_STALE_GRACE] = "stale_grace",
	[TOP_METRICS_LISTEN] = "metrics_listen",
	[TOP_CRL_LISTEN] = "crl_listen",
	[TOP_ALERTS] = "alerts", [TOP_HEARTBEAT] = "heartbeat", [TOP_NOTIFIERS] = "notifiers",
	[TOP_REHEARSAL] = "rehearsal",
	[TOP_INCLUDE] = "include",	 [TOP_CAS] = "cas",
	[TOP_TARGETS] = "targets",	 [TOP_CERTIFICATES] = "certificates",
};

/* The global keys that are plain values, indexed like top_names. */
static const struct ch_conf_key global_keys[] = {
	[TOP_STATE_DIR] = { "state_dir", CH_CONF_PATH, offsetof(struct ch_conf, state_dir) },
	[TOP_DATABASE] = { "database", CH_CONF_PATH, offsetof(struct ch_conf, database) },
	[TOP_SOCKET] = { "socket", CH_CONF_PATH, offsetof(struct ch_conf, socket) },
	[TOP_LOG_LEVEL] = { "log_level", CH_CONF_STRING, offsetof(struct ch_conf, log_level), false,
			    "one of error, warning, notice, info, debug" },
	[TOP_CONCURRENCY] = { "concurrency", CH_CONF_UINT, offsetof(struct ch_conf, concurrency),
			      false, "an integer of at least 1" },
	[TOP_VERIFY_INTERVAL] = { "verify_interval", CH_CONF_DURATION,
				  offsetof(struct ch_conf, verify_interval) },
	[TOP_STALE_GRACE] = { "stale_grace", CH_CONF_DURATION,
			      offsetof(struct ch_conf, stale_grace) },
	[TOP_METRICS_LISTEN] = { "metrics_listen", CH_CONF_STRING,
				 offsetof(struct ch_conf, metrics_listen), false,
				 "host:port, [ipv6]:port, \"\" or off" },
	[TOP_CRL_LISTEN] = { "crl_listen", CH_CONF_STRING, offsetof(struct ch_conf, crl_listen),
			     false, "host:port, [ipv6]:port, \"\" or off" },
};

static const char *const log_levels[] = { "error", "warning", "notice", "info", "debug" };

static void
top_key(struct loader *l, size_t idx, const struct conf_node *key, const struct conf_node *val,
	const char *path, void *arg)
{
	struct ch_conf *c = l->c;

	if (!l->file->main && idx <= TOP_DEFAULTS) {
		conf_error_at(l, key, path, key->s,
			      "'%s' belongs in the main configuration file %s; included files "
			      "may only contain include, cas, targets, certificates and notifiers",
			      key->s, l->stack[0]->path);
		return;
	}

	switch (idx) {
	case TOP_STATE_DIR:
	case TOP_DATABASE:
	case TOP_SOCKET:
	case TOP_VERIFY_INTERVAL:
	case TOP_STALE_GRACE:
		conf_fill(l, &global_keys[idx], val, c, path);
		break;
	case TOP_LOG_LEVEL: {
		bool ok = false;

		if (!conf_fill(l, &global_keys[idx], val, c, path))
			break;
		for (size_t i = 0; i < ARRAY_SIZE(log_levels); i++)
			ok = ok || streq(c->log_level, log_levels[i]);
		if (!ok) {
			conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
				      global_keys[idx].expect, c->log_level);
			free(c->log_level);
			c->log_level = NULL;
		}
		break;
	}
	case TOP_METRICS_LISTEN:
		if (!conf_fill(l, &global_keys[idx], val, c, path))
			break;
		if (!ch_metrics_listen_disabled(c->metrics_listen) &&
		    ch_metrics_parse_listen(c->metrics_listen, NULL, NULL) < 0) {
			conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
				      global_keys[idx].expect, c->metrics_listen);
			free(c->metrics_listen);
			c->metrics_listen = NULL;
		}
		break;
	case TOP_CRL_LISTEN:
		if (!conf_fill(l, &global_keys[idx], val, c, path))
			break;
		if (!ch_metrics_listen_disabled(c->crl_listen) &&
		    ch_metrics_parse_listen(c->crl_listen, NULL, NULL) < 0) {
			conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
				      global_keys[idx].expect, c->crl_listen);
			free(c->crl_listen);
			c->crl_listen = NULL;
		}
		break;
	case TOP_CONCURRENCY:
		if (!conf_fill(l, &global_keys[idx], val, c, path))
			break;
		if (c->concurrency < 1) {
			conf_error_at(l, val, path, key->s, "expected %s, got \"%.80s\"",
				      global_keys[idx].expect, val->s);
			c->concurrency = 0;
		}
		break;
	case TOP_DEFAULTS:
		conf_defaults(l, val);
		break;
	case TOP_INCLUDE:
		conf_include(l, val);
		break;
	case TOP_CAS:
		conf_section(l, val, "cas", conf_ca);
		break;
	case TOP_TARGETS:
		conf_section(l, val, "targets", conf_target);
		break;
	case TOP_CERTIFICATES:
		conf_section(l, val, "certificates", conf_cert);
		break;
	case TOP_NOTIFIERS:
		conf_section(l, val, "notifiers", conf_notifier);
		break;
	case TOP_ALERTS:
		conf_alerts(l, val);
		break;
	case TOP_HEARTBEAT:
		conf_heartbeat(l, val);
		break;
	case TOP_REHEARSAL:
		conf_rehearsal(l, val, "rehearsal", &c->rehearsal);
		break;
	default:
		break;
	}
}

static void
conf_file_process(struct loader *l, const struct conf_node *root)
{
	const struct conf_node *seen[_TOP_MAX] = { 0 };

	if (root->kind == CONF_NODE_BAD || ch_conf_node_is_null(root))
		return;
	if (root->kind != CONF_NODE_MAP) {
		conf_error_at(l, root, "", NULL,
			      "expected a mapping of configuration keys at the top level, got %s",
			      ch_conf_node_kind_name(root));
		return;
	}
	conf_walk(l, root, "", top_names, _TOP_MAX, seen, top_key, NULL);
}

/* ---- after all files ---------------------------------------------------- */

/*
 * Reports that name is not among the defined CAs or targets (what),
 * listing those and the nearest one.
 */
static void
conf_unknown_ref(struct loader *l, const char *file, struct conf_mark m, const char *path,
		 const char *sub, const char *what, const char *plural, const char *name,
		 const char *const *defined, size_t n)
{
	_cleanup_free_ char *list = NULL;
	const char *hint;

	if (n == 0) {
		conf_error(l, file, m.line, m.col, path, sub,
			   "unknown %s '%.80s'; no %s are defined", what, name, plural);
		return;
	}
	list = conf_join(defined, n);
	hint = conf_suggest(name, defined, n);
	if (hint)
		conf_error(l, file, m.line, m.col, path, sub,
			   "unknown %s '%.80s'; defined %s: %s; did you mean '%s'?", what, name,
			   plural, list ? list : "", hint);
	else
		conf_error(l, file, m.line, m.col, path, sub, "unknown %s '%.80s'; defined %s: %s",
			   what, name, plural, list ? list : "");
}

struct refs {
	const char **cas, **targets;
};

static void
check_ca_ref(struct loader *l, const struct refs *r, const char *file, struct conf_mark m,
	     const char *path, const char *name)
{
	if (name_index_find(&l->cas, name) == SIZE_MAX)
		conf_unknown_ref(l, file, m, path, "ca", "CA", "CAs", name, r->cas, l->c->n_cas);
}

/* Every CA of a `ca:` list, each reported where it was written. */
static void
check_ca_refs(struct loader *l, const struct refs *r, const char *file, struct conf_mark m,
	      const char *path, const struct ch_conf_cert_settings *s)
{
	for (size_t i = 0; s->cas && s->cas[i]; i++) {
		struct conf_mark at = m;

		if (s->cas_at && s->cas_at[i].line)
			at = (struct conf_mark){ s->cas_at[i].line, s->cas_at[i].column };
		check_ca_ref(l, r, file, at, path, s->cas[i]);
	}
}

static void
check_target_refs(struct loader *l, const struct refs *r, const char *file, struct conf_mark m,
		  const char *path, char *const *names)
{
	for (size_t i = 0; names && names[i]; i++)
		if (name_index_find(&l->targets, names[i]) == SIZE_MAX)
			conf_unknown_ref(l, file, m, path, "targets", "target", "targets", names[i], r->targets,
					 l->c->n_targets);
}

static void
check_renew(struct loader *l, const char *file, struct conf_mark m, const char *path,
	    int64_t renew_before, int64_t lifetime)
{
	char a[64], b[64];

	if (!renew_before || !lifetime || renew_before < lifetime)
		return;
	conf_error(l, file, m.line, m.col, path, "renew_before",
		   "renew_before (%s) must be shorter than lifetime (%s)",
		   ch_format_duration(renew_before, a, sizeof(a)),
		   ch_format_duration(lifetime, b, sizeof(b)));
}

static void
cert_merge(struct loader *l, const struct refs *refs, struct ch_conf_cert *cert)
{
	const struct ch_conf_cert_settings *d = &l->c->defaults;
	struct ch_conf_cert_settings *s = &cert->s;
	struct conf_mark m = { cert->origin.line, cert->origin.column };
	const char *file = cert->origin.file;
	char path[16 + CONF_NAME_MAX];
	bool own_renew = s->renew_before || s->lifetime;

	make_path(path, sizeof(path), "certificates", cert->name);
	check_ca_refs(l, refs, file, m, path, s);
	check_target_refs(l, refs, file, m, path, s->targets);

	/* What comes from the defaults is shared with them, not copied (settings_free_cert). */
	if (!s->cas && d->cas) {
		free(s->ca);
		s->cas = d->cas;
		s->cas_at = d->cas_at;
		s->ca = d->ca;
	}
	if (!s->ca && l->c->n_cas == 1) {
		struct ch_conf_cert_settings *im = &l->c->implicit;

		if (!im->cas) {
			im->ca = conf_strdup(l, l->c->cas[0].name);
			im->cas = strv_dup((char *const[]){ im->ca, NULL });
			im->cas_at = calloc(1, sizeof(*im->cas_at));
			if (!im->ca || !im->cas || !im->cas_at) {
				l->oom = true;
				settings_free(im);
			}
		}
		s->ca = im->ca;
		s->cas = im->cas;
		s->cas_at = im->cas_at;
	}
	if (!s->failover_after)
		s->failover_after = d->failover_after ? d->failover_after : CH_CONF_FAILOVER_AFTER;
	if (!s->ca && !l->oom) {
		if (l->c->n_cas > 1)
			conf_error(l, file, m.line, m.col, path, NULL,
				   "no CA for certificate '%s'; set ca: or defaults.ca", cert->name);
		else if (!l->no_ca_reported)
			conf_error(l, file, m.line, m.col, path, NULL,
				   "no CA for certificate '%s'; no CAs are defined under cas:",
				   cert->name);
		l->no_ca_reported = true;
	}
	for (char **ca = s->cas; ca && *ca; ca++) {
		size_t i = name_index_find(&l->cas, *ca);
		const struct ch_ca_ops *ops = i == SIZE_MAX ? NULL : l->c->cas[i].ops;
		struct ch_err err = { "" };

		if (ops && ops->check_names && l->c->cas[i].opts &&
		    ops->check_names(l->c->cas[i].opts, cert->dns_names, cert->ip_names, &err) < 0)
			conf_error(l, file, m.line, m.col, path, "names", "CA '%s': %s", *ca, err.msg);
	}

	if ((int)s->key_type < 0)
		s->key_type = (int)d->key_type >= 0 ? d->key_type : CH_KEY_ECDSA_P256;
	if (!s->lifetime)
		s->lifetime = d->lifetime;
	if (!s->renew_before)
		s->renew_before = d->renew_before;
	if (!s->warn_before)
		s->warn_before = d->warn_before;
	if (!s->reuse_key_set && d->reuse_key_set) {
		s->reuse_key = d->reuse_key;
		s->reuse_key_set = true;
	}
	if ((!s->targets && !d->targets) || (!s->endpoints && !d->endpoints)) {
		if (!l->c->empty_strv)
			l->c->empty_strv = calloc(1, sizeof(char *));
		if (!l->c->empty_strv)
			l->oom = true;
	}
	if (!s->targets)
		s->targets = d->targets ? d->targets : l->c->empty_strv;
	if (!s->endpoints)
		s->endpoints = d->endpoints ? d->endpoints : l->c->empty_strv;
	if (!s->verify_sni)
		s->verify_sni = d->verify_sni;
	if (!s->verify_trust)
		s->verify_trust = d->verify_trust;
	if (!s->profile)
		s->profile = d->profile;
	for (char **n = s->cas; s->profile && n && *n; n++) {
		size_t i = name_index_find(&l->cas, *n);
		const struct ch_ca_ops *ops = i == SIZE_MAX ? NULL : l->c->cas[i].ops;

		if (ops && !streq(ops->type, "acme")) {
			conf_error(l, file, m.line, m.col, path, "profile",
				   "profile '%s' needs ACME CAs; CA '%s' is of type %s",
				   s->profile, *n, ops->type);
			break;
		}
	}

	if (own_renew)
		check_renew(l, file, m, path, s->renew_before, s->lifetime);
}

static void
conf_finish(struct loader *l)
{
	struct ch_conf *c = l->c;
	struct ch_conf_cert_settings *d = &c->defaults;
	struct refs refs = { 0 };

	if (!c->state_dir)
		c->state_dir = conf_strdup(l, CH_LOCALSTATEDIR);
	if (!c->database && c->state_dir && asprintf(&c->database, "%s/certherd.db", c->state_dir) < 0) {
		c->database = NULL;
		l->oom = true;
	}
	if (!c->socket)
		c->socket = conf_strdup(l, CH_RUNSTATEDIR "/certherd.sock");
	if (!c->log_level)
		c->log_level = conf_strdup(l, "info");
	if (c->concurrency == 0)
		c->concurrency = 16;
	if (c->verify_interval == 0)
		c->verify_interval = 600;
	if (c->stale_grace == 0)
		c->stale_grace = 3600;
	if (!c->metrics_listen)
		c->metrics_listen = conf_strdup(l, "127.0.0.1:9465");
	if (!c->alerts.repeat_interval)
		c->alerts.repeat_interval = 4 * 3600;
	if (!c->alerts.renewal_failures)
		c->alerts.renewal_failures = 3;
	if (!c->alerts.check_interval)
		c->alerts.check_interval = 30;
	if (!c->alerts.warning_windows) {
		static const int64_t windows[] = { 30 * 86400, 14 * 86400, 7 * 86400, 86400 };

		c->alerts.warning_windows = calloc(ARRAY_SIZE(windows), sizeof(int64_t));
		if (!c->alerts.warning_windows)
			l->oom = true;
		else {
			memcpy(c->alerts.warning_windows, windows, sizeof(windows));
			c->alerts.n_warning_windows = ARRAY_SIZE(windows);
		}
	}
	if (c->heartbeat.url && !c->heartbeat.method)
		c->heartbeat.method = conf_strdup(l, "GET");
	if (!c->heartbeat.interval)
		c->heartbeat.interval = 300;
	if (!c->heartbeat.timeout)
		c->heartbeat.timeout = 10;

	refs.cas = calloc(c->n_cas + 1, sizeof(*refs.cas));
	refs.targets = calloc(c->n_targets + 1, sizeof(*refs.targets));
	if (!refs.cas || !refs.targets) {
		l->oom = true;
		goto out;
	}
	for (size_t i = 0; i < c->n_cas; i++)
		refs.cas[i] = c->cas[i].name;
	for (size_t i = 0; i < c->n_targets; i++)
		refs.targets[i] = c->targets[i].name;

	for (size_t i = 0; i < c->n_cas; i++) {
		const struct ch_conf_ca *ca = &c->cas[i];
		struct conf_mark m = { ca->staging_line, ca->staging_column };
		char path[16 + CONF_NAME_MAX];

		if (!ca->staging)
			continue;
		make_path(path, sizeof(path), "cas", ca->name);
		if (streq(ca->staging, ca->name))
			conf_error(l, ca->origin.file, m.line, m.col, path, "staging",
				   "a CA cannot be its own staging CA; name another CA or remove "
				   "staging:");
		else if (name_index_find(&l->cas, ca->staging) == SIZE_MAX)
			conf_unknown_ref(l, ca->origin.file, m, path, "staging", "CA", "CAs",
					 ca->staging, refs.cas, c->n_cas);
	}
	check_ca_refs(l, &refs, c->file, l->defaults_ca_at, "defaults", d);
	check_target_refs(l, &refs, c->file, l->defaults_targets_at, "defaults", d->targets);
	check_renew(l, c->file, l->defaults_renew_at, "defaults", d->renew_before,
		    d->lifetime);

	for (size_t i = 0; i < c->n_certs && !l->oom; i++)
		cert_merge(l, &refs, &c->certs[i]);
out:
	free(refs.cas);
	free(refs.targets);
}

/* ---- public entry points ------------------------------------------------ */

static int
cert_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ch_conf_cert *)a)->name, ((const struct ch_conf_cert *)b)->name);
}

int
ch_conf_load(const char *path, struct ch_conf **ret, struct ch_conf_errors *errs)
{
	struct loader l = { .errs = errs };
	struct ch_conf *c;
	int r;

	if (!path || !*path || !ret || !errs)
		return -EINVAL;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->defaults.key_type = -1;
	l.c = c;

	if (path[0] == '/') {
		c->file = strdup(path);
	} else {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);

		c->file = cwd ? ch_path_join_abs(cwd, path) : NULL;
	}
	if (!c->file) {
		ch_conf_free(c);
		return -ENOMEM;
	}

	conf_load_file(&l, c->file, NULL);
	/* References between files are only worth checking when all parsed. */
	if (!l.oom && !l.main_error && !l.syntax_error)
		conf_finish(&l);

	if (l.main_error) {
		ch_conf_free(c);
		r = l.main_error;
	} else if (l.oom) {
		ch_conf_free(c);
		r = -ENOMEM;
	} else if (l.n_errors > 0) {
		ch_conf_free(c);
		r = -EINVAL;
	} else {
		/* By name, so that ch_conf_find_cert() can bisect. */
		if (c->n_certs > 1)
			qsort(c->certs, c->n_certs, sizeof(*c->certs), cert_cmp);
		*ret = c;
		r = 0;
	}
	name_index_free(&l.cas);
	name_index_free(&l.targets);
	name_index_free(&l.certs);
	name_index_free(&l.notifiers);
	return r;
}

struct ch_conf *
ch_conf_free(struct ch_conf *c)
{
	if (!c)
		return NULL;

	for (size_t i = 0; i < c->n_cas; i++) {
		struct ch_conf_ca *ca = &c->cas[i];

		if (ca->ops)
			ch_conf_opts_free(ca->ops->keys, ca->opts);
		free(ca->opts);
		free(ca->name);
		free(ca->type);
		free(ca->staging);
	}
	free(c->cas);

	for (size_t i = 0; i < c->n_targets; i++) {
		struct ch_conf_target *t = &c->targets[i];

		if (t->ops)
			ch_conf_opts_free(t->ops->keys, t->opts);
		free(t->opts);
		free(t->name);
		free(t->type);
	}
	free(c->targets);

	for (size_t i = 0; i < c->n_notifiers; i++) {
		struct ch_conf_notifier *n = &c->notifiers[i];

		if (n->ops)
			ch_conf_opts_free(n->ops->keys, n->opts);
		free(n->opts);
		free(n->name);
		free(n->type);
	}
	free(c->notifiers);
	free(c->alerts.warning_windows);
	free(c->heartbeat.url);
	free(c->heartbeat.method);

	for (size_t i = 0; i < c->n_certs; i++) {
		struct ch_conf_cert *cert = &c->certs[i];

		free(cert->name);
		ch_strv_free(cert->dns_names);
		ch_strv_free(cert->ip_names);
		settings_free_cert(&cert->s, c);
	}
	free(c->certs);

	for (size_t i = 0; i < c->n_files; i++)
		free(c->files[i]);
	free(c->files);

	settings_free(&c->defaults);
	settings_free(&c->implicit);
	free(c->empty_strv);
	free(c->file);
	free(c->state_dir);
	free(c->database);
	free(c->socket);
	free(c->log_level);
	free(c->metrics_listen);
	free(c->crl_listen);
	free(c);
	return NULL;
}

int64_t
ch_conf_rehearsal_interval(const struct ch_conf *c, const struct ch_conf_ca *ca)
{
	if (ca && ca->rehearsal.set)
		return ca->rehearsal.interval;
	return c->rehearsal.interval;
}

const struct ch_conf_ca *
ch_conf_find_ca(const struct ch_conf *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_cas; i++)
		if (streq(c->cas[i].name, name))
			return &c->cas[i];
	return NULL;
}

const struct ch_conf_target *
ch_conf_find_target(const struct ch_conf *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_targets; i++)
		if (streq(c->targets[i].name, name))
			return &c->targets[i];
	return NULL;
}

const struct ch_conf_notifier *
ch_conf_find_notifier(const struct ch_conf *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_notifiers; i++)
		if (streq(c->notifiers[i].name, name))
			return &c->notifiers[i];
	return NULL;
}

/*
 * ch_conf_load() sorts the certificates by name, so this bisects first;
 * a struct ch_conf put together some other way may not be sorted, so a
 * miss falls back to a linear scan.
 */
const struct ch_conf_cert *
ch_conf_find_cert(const struct ch_conf *c, const char *name)
{
	size_t lo = 0, hi;

	if (!c || !name)
		return NULL;
	hi = c->n_certs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int k = strcmp(name, c->certs[mid].name);

		if (k == 0)
			return &c->certs[mid];
		if (k < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	for (size_t i = 0; i < c->n_certs; i++)
		if (streq(c->certs[i].name, name))
			return &c->certs[i];
	return NULL;
}
