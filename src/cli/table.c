/* SPDX-License-Identifier: MIT */
/*
 * Plain-text tables with aligned columns for the CLI's human output.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/util.h"
#include "cli.h"

struct table {
	int ncols;
	char **cells; /* row-major, the first row is the header */
	size_t nrows, cap;
};

static void
table_add_v(struct table *t, va_list ap)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->cells = realloc(t->cells, t->cap * (size_t)t->ncols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	for (int i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);

		t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = ch_xstrdup(s ? s : "-");
	}
	t->nrows++;
}

struct table *
table_new(int ncols, ...)
{
	struct table *t = ch_xcalloc(1, sizeof(*t));
	va_list ap;

	t->ncols = ncols;
	va_start(ap, ncols);
	table_add_v(t, ap);
	va_end(ap);
	return t;
}

void
table_add(struct table *t, ...)
{
	va_list ap;

	va_start(ap, t);
	table_add_v(t, ap);
	va_end(ap);
}

void
table_print(struct table *t)
{
	size_t *w = ch_xcalloc((size_t)t->ncols, sizeof(*w));

	for (size_t r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++) {
			size_t l = strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);

			if (l > w[c])
				w[c] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];

			if (c == t->ncols - 1)
				printf("%s\n", s);
			else
				printf("%-*s  ", (int)w[c], s);
		}
	}
	free(w);
}

void
table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

const char *
cli_relative(long long at, long long now, char *buf, size_t len)
{
	char d[32];

	if (at <= 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	if (at >= now)
		snprintf(buf, len, "in %s", ch_format_duration(at - now, d, sizeof(d)));
	else
		snprintf(buf, len, "%s ago", ch_format_duration(now - at, d, sizeof(d)));
	return buf;
}
