/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what the kubernetes target reads from others
 * (src/target/kubernetes.c): an API server's failed response
 * (ch_kube_status_message, the first byte choosing the HTTP status) and
 * a kubeconfig (ch_kube_auth_kubeconfig_parse) on the rest. Kubeconfigs
 * that name a file (tokenFile, certificate-authority, client-certificate,
 * client-key without -data) or hold a backslash (a YAML escape could
 * spell such a key) only go through the first step: a file reference
 * could make the parser read any file on the machine (/dev/stdin, ...).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certherd/kubernetes.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "fuzz.h"

static char dir[64];

static void
cleanup(void)
{
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	ch_log_set_level(-1);
	snprintf(dir, sizeof(dir), "%s/fuzz-kube-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
	return 0;
}

/* Whether s (len bytes) may name a file the kubeconfig parser would read. */
static bool
names_a_file(const char *s, size_t len)
{
	static const char *const keys[] = { "certificate-authority", "client-certificate",
					    "client-key" };

	if (memchr(s, '\\', len) || memmem(s, len, "tokenFile", 9))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		size_t k = strlen(keys[i]);

		for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), keys[i], k)); p += k)
			if ((size_t)(p - s) + k + 5 > len || memcmp(p + k, "-data", 5) != 0)
				return true;
	}
	return false;
}

static void
kubeconfig(const char *text, size_t len)
{
	struct ch_kube_auth a = { 0 };
	struct ch_err err = { "" };
	int r;

	r = ch_kube_auth_kubeconfig_parse(text, len, dir, NULL, &a, &err);
	if (r < 0) {
		if (!err.msg[0] || a.server || a.token || a.key_pem)
			abort(); /* a refusal says why, and hands back nothing */
		return;
	}
	/* Credentials only ever go to an https:// server, and come as a pair. */
	if (!a.server || strncmp(a.server, "https://", 8) != 0 || !a.who ||
	    (!a.token && !a.cert_pem) || !a.cert_pem != !a.key_pem)
		abort();
	ch_kube_auth_clear(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 400, 401, 403, 404, 409, 422, 429, 500, 503, 200, 302, 0 };
	char buf[256];
	char *s;
	long status;
	int r;

	if (size < 1 || size > 64 * 1024)
		return -1;
	status = statuses[data[0] % ARRAY_SIZE(statuses)];
	data++, size--;

	/* A small buffer, so that long messages and 422 causes are cut. */
	memset(buf, 'x', sizeof(buf));
	r = ch_kube_status_message(status, (const char *)data, size, "patch", "the service account",
				   "web", "www-tls", buf, sizeof(buf));
	if (r >= 0 || !memchr(buf, '\0', sizeof(buf)))
		abort();

	s = fuzz_strndup(data, size);
	if (!names_a_file(s, size))
		kubeconfig(s, size);
	free(s);
	return 0;
}
