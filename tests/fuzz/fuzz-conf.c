/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the configuration loader: the YAML reader (ch_conf_tree_parse)
 * on the raw bytes, then the whole loader (ch_conf_load: schema, defaults,
 * names, references) on the same bytes written to a file in a private
 * directory, formatting every error it reports. Inputs that mention
 * "include" skip the second step: an include glob could make the loader
 * read any file on the machine (/dev/stdin, /proc, ...).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certherd/conf.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "src/lib/conf-internal.h"
#include "fuzz.h"

static char dir[64], path[96];

static void
cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	ch_log_set_level(-1);
	snprintf(dir, sizeof(dir), "%s/fuzz-conf-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/certherd.yaml", dir);
	atexit(cleanup);
	return 0;
}

static void _printf_(4, 0)
tree_error(void *arg, unsigned line, unsigned col, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	(*(unsigned *)arg)++;
}

static void
load(const uint8_t *data, size_t size)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *c = NULL;
	int fd, r;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	r = ch_conf_load(path, &c, &errs);
	if (r == 0 && (!c || errs.n > 0))
		abort(); /* success means a configuration and no errors */
	if (r < 0 && c)
		abort();
	for (size_t i = 0; i < errs.n; i++) {
		char *s = ch_conf_error_format(&errs.v[i]);

		if (!s)
			abort();
		free(s);
	}
	if (c) {
		/* Every certificate can be found again by name. */
		for (size_t i = 0; i < c->n_certs; i++)
			if (ch_conf_find_cert(c, c->certs[i].name) != &c->certs[i])
				abort();
		for (size_t i = 0; i < c->n_cas; i++)
			if (!ch_conf_find_ca(c, c->cas[i].name))
				abort();
	}
	ch_conf_free(c);
	ch_conf_errors_clear(&errs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_arena arena = { 0 };
	struct conf_node *root = NULL;
	unsigned nerr = 0;
	char *buf;

	if (size > 256 * 1024)
		return -1;
	buf = fuzz_strndup(data, size);
	if (ch_conf_tree_parse(buf, size, &arena, tree_error, &nerr, &root) == -EINVAL && nerr == 0)
		abort(); /* a refused parse always says why */
	ch_conf_arena_free(&arena);

	if (!memmem(data, size, "include", 7))
		load(data, size);
	free(buf);
	return 0;
}
