/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what an ACME server sends that certherd parses itself
 * (src/ca/acme-proto.c): the whole input as a problem document
 * (ch_acme_problem_parse), as a Retry-After value (ch_acme_retry_after),
 * and its lines as Link header values (ch_acme_links, rel "up" and
 * "alternate").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/acme.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ch_log_set_level(-1);
	return 0;
}

static void
links(char *s)
{
	static const char *const rels[] = { "up", "alternate" };
	char *values[9] = { 0 };
	size_t n = 0;

	for (char *p = s; p && n < ARRAY_SIZE(values) - 1;) {
		values[n++] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
	for (size_t i = 0; i < ARRAY_SIZE(rels); i++) {
		char **v = NULL;

		if (ch_acme_links(values, rels[i], &v) < 0)
			continue;
		if (!v)
			abort();
		for (size_t k = 0; v[k]; k++)
			if (strchr(v[k], '>'))
				abort(); /* a target ends at the first '>' */
		ch_strv_free(v);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ch_acme_problem p;
	char *s;
	int64_t d;

	if (size > 64 * 1024)
		return -1;

	if (ch_acme_problem_parse((const char *)data, size, &p) == 0) {
		if (strnlen(p.type, sizeof(p.type)) == sizeof(p.type) ||
		    strnlen(p.message, sizeof(p.message)) == sizeof(p.message))
			abort();
		(void)ch_acme_problem_is(&p, "badNonce");
	}

	s = fuzz_strndup(data, size);
	d = ch_acme_retry_after(s, 1700000000);
	if (d < 0 && d != -EINVAL)
		abort();
	links(s);
	free(s);
	return 0;
}
