/* SPDX-License-Identifier: MIT */
/*
 * The YAML side of the configuration loader: reads a file into memory and
 * turns it, through libyaml's event parser, into a tree of struct conf_node
 * allocated from a bump allocator. Aliases, more than one document and
 * nesting deeper than CONF_MAX_DEPTH are refused here; what the keys mean
 * is left to conf.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "certherd/macro.h"
#include "conf-internal.h"

#define CONF_ARENA_CHUNK	(64u * 1024)

/* ---- a small bump allocator for the parse tree -------------------------- */

struct conf_arena_chunk {
	struct conf_arena_chunk *next;
	max_align_t data[];
};

static void *
arena_alloc(struct conf_arena *a, size_t size, size_t align)
{
	uintptr_t p = ((uintptr_t)a->p + align - 1) & ~(uintptr_t)(align - 1);
	struct conf_arena_chunk *ch;
	size_t sz;

	if (a->p && p + size <= (uintptr_t)a->end) {
		a->p = (unsigned char *)p + size;
		return (void *)p;
	}

	if (size > CONF_ARENA_CHUNK / 4) {
		/* Large blocks get a chunk of their own; keep filling the current one. */
		ch = malloc(sizeof(*ch) + size);
		if (!ch)
			return NULL;
		if (a->chunks) {
			ch->next = a->chunks->next;
			a->chunks->next = ch;
		} else {
			ch->next = NULL;
			a->chunks = ch;
		}
		return ch->data;
	}

	sz = CONF_ARENA_CHUNK;
	ch = malloc(sizeof(*ch) + sz);
	if (!ch)
		return NULL;
	ch->next = a->chunks;
	a->chunks = ch;
	a->p = (unsigned char *)ch->data + size;
	a->end = (unsigned char *)ch->data + sz;
	return ch->data;
}

void
ch_conf_arena_free(struct conf_arena *a)
{
	while (a->chunks) {
		struct conf_arena_chunk *next = a->chunks->next;

		free(a->chunks);
		a->chunks = next;
	}
	a->p = a->end = NULL;
}

/* ---- YAML to tree ------------------------------------------------------- */

/* Where ch_conf_tree_parse() sends the problems it finds. */
struct tree_report {
	conf_tree_error_fn *fn;
	void *arg;
};

static void tree_error(const struct tree_report *t, unsigned line, unsigned col,
		       const char *fmt, ...) _printf_(4, 5);

static void
tree_error(const struct tree_report *t, unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	t->fn(t->arg, line, col, fmt, ap);
	va_end(ap);
}

struct frame {
	struct conf_node *node;
	struct conf_node **v;
	size_t n, cap;
};

static struct conf_node *
node_new(struct conf_arena *a, enum conf_node_kind kind, const yaml_mark_t *m)
{
	struct conf_node *n = arena_alloc(a, sizeof(*n), _Alignof(struct conf_node));

	if (!n)
		return NULL;
	*n = (struct conf_node){
		.kind = kind,
		.line = (uint32_t)m->line + 1,
		.col = (uint32_t)m->column + 1,
	};
	return n;
}

/* 1-based line and column of a byte offset, for reader errors. */
static void
offset_to_mark(const char *buf, size_t len, size_t off, unsigned *line, unsigned *col)
{
	size_t bol = 0;

	*line = 1;
	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++)
		if (buf[i] == '\n') {
			(*line)++;
			bol = i + 1;
		}
	*col = (unsigned)(off - bol + 1);
}

static void
tree_syntax_error(const struct tree_report *t, const yaml_parser_t *p, const char *buf,
		  size_t len)
{
	const char *problem = p->problem ? p->problem : "malformed YAML";
	unsigned line, col;

	if (p->error == YAML_READER_ERROR) {
		offset_to_mark(buf, len, p->problem_offset, &line, &col);
		tree_error(t, line, col, "invalid YAML: %s", problem);
		return;
	}

	line = (unsigned)p->problem_mark.line + 1;
	col = (unsigned)p->problem_mark.column + 1;
	if (p->context)
		tree_error(t, line, col, "invalid YAML: %s (%s at line %zu, column %zu)", problem,
			   p->context, p->context_mark.line + 1, p->context_mark.column + 1);
	else
		tree_error(t, line, col, "invalid YAML: %s", problem);
}

static int
frame_push(struct frame *f, struct conf_node *n)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		struct conf_node **v = reallocarray(f->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	f->v[f->n++] = n;
	return 0;
}

int
ch_conf_tree_parse(const char *buf, size_t len, struct conf_arena *a, conf_tree_error_fn *error,
		   void *arg, struct conf_node **ret_root)
{
	const struct tree_report rep = { error, arg };
	struct frame frames[CONF_MAX_DEPTH] = { 0 };
	struct conf_node *root = NULL;
	yaml_parser_t p;
	yaml_event_t ev;
	enum conf_node_kind kind;
	size_t depth = 0;
	unsigned docs = 0;
	bool done = false;
	int r = 0;

	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);

	while (!done) {
		struct conf_node *n = NULL;

		if (!yaml_parser_parse(&p, &ev)) {
			if (p.error == YAML_MEMORY_ERROR) {
				r = -ENOMEM;
			} else {
				tree_syntax_error(&rep, &p, buf, len);
				r = -EINVAL;
			}
			break;
		}

		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				tree_error(&rep, (unsigned)ev.start_mark.line + 1,
					   (unsigned)ev.start_mark.column + 1,
					   "only one YAML document per file is supported");
				done = true;
			}
			break;
		case YAML_ALIAS_EVENT:
			if (!(n = node_new(a, CONF_NODE_BAD, &ev.start_mark))) {
				r = -ENOMEM;
				break;
			}
			tree_error(&rep, n->line, n->col, "aliases are not supported");
			break;
		case YAML_SCALAR_EVENT: {
			size_t sl = ev.data.scalar.length;

			if (!(n = node_new(a, CONF_NODE_SCALAR, &ev.start_mark)) ||
			    !(n->s = arena_alloc(a, sl + 1, 1))) {
				r = -ENOMEM;
				break;
			}
			memcpy(n->s, ev.data.scalar.value, sl);
			n->s[sl] = '\0';
			n->n = (uint32_t)sl;
			n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			n->has_nul = memchr(n->s, '\0', sl) != NULL;
			break;
		}
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth == CONF_MAX_DEPTH) {
				tree_error(&rep, (unsigned)ev.start_mark.line + 1,
					   (unsigned)ev.start_mark.column + 1,
					   "nesting deeper than %d levels is not supported",
					   CONF_MAX_DEPTH);
				r = -EINVAL;
				break;
			}
			kind = ev.type == YAML_MAPPING_START_EVENT ? CONF_NODE_MAP : CONF_NODE_SEQ;
			frames[depth].node = node_new(a, kind, &ev.start_mark);
			if (!frames[depth].node) {
				r = -ENOMEM;
				break;
			}
			frames[depth].n = 0;
			depth++;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT: {
			struct frame *f;

			if (depth == 0)
				break; /* cannot happen with a well-behaved parser */
			f = &frames[--depth];
			n = f->node;
			n->n = (uint32_t)f->n;
			if (f->n > 0) {
				n->kids = arena_alloc(a, f->n * sizeof(*n->kids),
						      _Alignof(struct conf_node *));
				if (!n->kids) {
					r = -ENOMEM;
					n = NULL;
					break;
				}
				memcpy(n->kids, f->v, f->n * sizeof(*n->kids));
			}
			break;
		}
		default:
			break;
		}

		yaml_event_delete(&ev);
		if (r < 0)
			break;
		if (!n)
			continue;
		if (depth > 0) {
			if (frame_push(&frames[depth - 1], n) < 0) {
				r = -ENOMEM;
				break;
			}
		} else if (!root) {
			root = n;
		}
	}

	for (size_t i = 0; i < ARRAY_SIZE(frames); i++)
		free(frames[i].v);
	yaml_parser_delete(&p);
	if (r < 0)
		return r;
	*ret_root = root;
	return 0;
}

/* ---- looking at the tree ------------------------------------------------ */

bool
ch_conf_node_is_null(const struct conf_node *n)
{
	if (!n)
		return true;
	if (n->kind != CONF_NODE_SCALAR || !n->plain)
		return false;
	return n->n == 0 || streq(n->s, "~") || streq(n->s, "null") || streq(n->s, "Null") ||
	       streq(n->s, "NULL");
}

const char *
ch_conf_node_kind_name(const struct conf_node *n)
{
	switch (n->kind) {
	case CONF_NODE_MAP:
		return "a mapping";
	case CONF_NODE_SEQ:
		return "a sequence";
	default:
		return "a scalar";
	}
}

const struct conf_node *
ch_conf_map_get(const struct conf_node *map, const char *name, const struct conf_node **ret_key)
{
	if (map->kind != CONF_NODE_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (map->kids[i]->kind == CONF_NODE_SCALAR && streq(map->kids[i]->s, name)) {
			if (ret_key)
				*ret_key = map->kids[i];
			return map->kids[i + 1];
		}
	return NULL;
}

/* ---- reading a file ---------------------------------------------------- */

int
ch_conf_read_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	size_t len = 0, cap;
	char *buf = NULL;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (S_ISREG(st.st_mode) && st.st_size > (off_t)CONF_MAX_FILE_SIZE)
		return -EFBIG;

	cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 2 : 4096;
	for (;;) {
		ssize_t k;

		if (len + 1 >= cap || !buf) {
			char *p;

			if (buf)
				cap *= 2;
			if (cap > CONF_MAX_FILE_SIZE + 2)
				cap = CONF_MAX_FILE_SIZE + 2;
			p = realloc(buf, cap);
			if (!p) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
		}
		k = read(fd, buf + len, cap - len - 1);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return -errno;
		}
		if (k == 0)
			break;
		len += (size_t)k;
		if (len > CONF_MAX_FILE_SIZE) {
			free(buf);
			return -EFBIG;
		}
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

const char *
ch_conf_read_strerror(int r)
{
	if (r == -EFBIG)
		return "file is larger than 16 MiB";
	return strerror(-r);
}
