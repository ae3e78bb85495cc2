/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what an ACME server sends that certherd parses itself
 * (src/ca/acme-proto.c): the whole input as a problem document
 * (ch_acme_problem_parse), as an order (ch_acme_order_next, its
 * identifiers through ch_acme_identifiers_key), as an authorization
 * (ch_acme_authz_parse, both challenge types), as a Retry-After value
 * (ch_acme_retry_after), and its lines as Link header values
 * (ch_acme_links, rel "up" and "alternate").
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

/* What the order and authorization readers return is usable as they say. */
static void
order_and_authz(const uint8_t *data, size_t size)
{
	static const char *const types[] = { "http-01", "dns-01" };
	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	struct ch_acme_order_next next;
	char *key;

	if (!doc)
		return;
	ch_acme_order_next(doc, "https://ca.test/order/1", &next);
	switch (next.step) {
	case CH_ACME_ORDER_FINALIZE:
	case CH_ACME_ORDER_DOWNLOAD:
		if (!next.url)
			abort();
		break;
	case CH_ACME_ORDER_AUTHORIZE:
		if (!json_is_array(next.authzs) || json_array_size(next.authzs) == 0)
			abort();
		for (size_t i = 0; i < json_array_size(next.authzs); i++)
			if (!json_string_value(json_array_get(next.authzs, i)))
				abort();
		break;
	case CH_ACME_ORDER_WAIT:
		break;
	case CH_ACME_ORDER_FAILED:
		if (!next.message[0] || strnlen(next.message, sizeof(next.message)) ==
						 sizeof(next.message))
			abort();
		break;
	default:
		abort();
	}
	key = ch_acme_identifiers_key(json_object_get(doc, "identifiers"));
	if (!key)
		abort();
	free(key);

	for (size_t t = 0; t < ARRAY_SIZE(types); t++) {
		struct ch_acme_authz az;

		ch_acme_authz_parse(doc, types[t], &az);
		if (!az.status || !az.chall_status || !az.value ||
		    strnlen(az.ident, sizeof(az.ident)) == sizeof(az.ident))
			abort();
		/* A token reaches a URL path and a key authorization: base64url only. */
		if (az.token && (!az.has_challenge || strlen(az.token) < 22 ||
				 strspn(az.token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
						  "0123456789-_") != strlen(az.token)))
			abort();
		if (!az.has_challenge && (az.url || az.token || az.has_error))
			abort();
	}
	json_decref(doc);
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

	order_and_authz(data, size);

	s = fuzz_strndup(data, size);
	d = ch_acme_retry_after(s, 1700000000);
	if (d < 0 && d != -EINVAL)
		abort();
	links(s);
	free(s);
	return 0;
}
