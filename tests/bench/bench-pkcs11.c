/* SPDX-License-Identifier: MIT */
/*
 * PKCS#11 local CA throughput: raw C_SignInit+C_Sign per second on one
 * session of the token (the mechanism certherd uses: CKM_ECDSA over a
 * SHA-256 digest, CKM_SHA256_RSA_PKCS over a TBS-sized message) against
 * leaves issued per second through the "pkcs11" CA backend (ops->issue,
 * one event-loop turn per leaf, PEM out), for ECDSA P-256 and RSA-2048 CA
 * keys generated in the token. Prints one TSV line per key type.
 *
 * Usage: bench-pkcs11 MODULE TOKEN_LABEL PIN_FILE SECONDS STATE_DIR
 * (run by bench-pkcs11.sh, which makes a SoftHSM2 token first).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "certherd/ca.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/pkcs11.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void
die(const char *what, const char *msg)
{
	fprintf(stderr, "bench-pkcs11: %s: %s\n", what, msg);
	exit(1);
}

/* Raw signatures per second on the handle's own session and key. */
static double
raw_rate(struct ch_p11 *p, bool ec, double secs)
{
	CK_FUNCTION_LIST *f = ch_p11_functions(p);
	CK_SESSION_HANDLE s = ch_p11_session(p);
	CK_OBJECT_HANDLE key = ch_p11_key(p);
	CK_MECHANISM m = { ec ? CKM_ECDSA : CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char msg[700], sig[1024];
	CK_ULONG msglen = ec ? 32 : sizeof(msg);
	unsigned long n = 0;
	double t0 = now(), end = t0 + secs, t;

	RAND_bytes(msg, sizeof(msg));
	do {
		for (int k = 0; k < 8; k++) {
			CK_ULONG siglen = sizeof(sig);
			CK_RV rv = f->C_SignInit(s, &m, key);

			if (rv == CKR_OK)
				rv = f->C_Sign(s, msg, msglen, sig, &siglen);
			if (rv != CKR_OK)
				die("C_Sign", ch_p11_rv_string(rv));
			n++;
		}
		t = now();
	} while (t < end);
	return (double)n / (t - t0);
}

struct leaf_ctx {
	enum ch_ca_outcome outcome;
	size_t bytes;
	char message[1024];
};

static void
leaf_done(struct ch_issue_result *res, void *arg)
{
	struct leaf_ctx *c = arg;

	c->outcome = res->outcome;
	c->bytes += res->cert_pem ? strlen(res->cert_pem) : 0;
	snprintf(c->message, sizeof(c->message), "%s", res->message);
}

static void *
opt(const struct ch_ca_ops *ops, void *opts, const char *name)
{
	for (const struct ch_conf_key *k = ops->keys; k->name; k++)
		if (streq(k->name, name))
			return (char *)opts + k->offset;
	die("option", name);
}

struct leaf_bench {
	const struct ch_ca_ops *ops;
	struct event_base *base;
	struct ch_conf_ca conf;
	struct ch_ca *ca;
	EVP_PKEY *leaf_key;
	struct leaf_ctx c;
};

/* The backend with its CA key created in the token on first use. */
static void
leaf_setup(struct leaf_bench *b, const char *module, const char *token, const char *pin_file,
	   const char *state_dir, const char *label, enum ch_key_type type)
{
	struct ch_err err = { "" };
	struct ch_ca_env env;

	b->ops = ch_ca_ops_find("pkcs11");
	b->base = event_base_new();
	if (!b->ops || !b->base)
		die("setup", "no pkcs11 backend or event base");
	env = (struct ch_ca_env){ .base = b->base, .state_dir = state_dir };
	b->conf = (struct ch_conf_ca){ .name = (char *)label, .type = "pkcs11", .ops = b->ops };
	b->conf.opts = calloc(1, b->ops->opts_size);
	*(int *)opt(b->ops, b->conf.opts, "key_type") = type;
	*(char **)opt(b->ops, b->conf.opts, "module") = (char *)module;
	*(char **)opt(b->ops, b->conf.opts, "token_label") = (char *)token;
	*(char **)opt(b->ops, b->conf.opts, "key_label") = (char *)label;
	*(char **)opt(b->ops, b->conf.opts, "pin_file") = (char *)pin_file;
	*(bool *)opt(b->ops, b->conf.opts, "create") = true;
	if (ch_ca_new(&b->conf, &env, &b->ca, &err) < 0)
		die("CA", err.msg);
	if (ch_key_generate(CH_KEY_ECDSA_P256, &b->leaf_key, &err) < 0)
		die("leaf key", err.msg);
}

static void
leaf_teardown(struct leaf_bench *b)
{
	ch_ca_free(b->ca);
	EVP_PKEY_free(b->leaf_key);
	free(b->conf.opts);
	event_base_free(b->base);
}

/* Leaves per second through ops->issue, one loop turn each, for secs. */
static double
leaf_rate(struct leaf_bench *b, double secs)
{
	char *const dns[] = { "www.bench.example", "bench.example", NULL };
	struct ch_issue_request req = { .cert_name = "bench", .dns_names = dns,
					.key = b->leaf_key };
	unsigned long n = 0;
	double t0 = now(), end = t0 + secs, t;

	do {
		for (int k = 0; k < 8; k++) {
			if (b->ops->issue(b->ca->state, &req, leaf_done, &b->c) < 0)
				die("issue", "could not start");
			event_base_loop(b->base, EVLOOP_ONCE);
			if (b->c.outcome != CH_CA_ISSUED)
				die("issue", b->c.message);
			n++;
		}
		t = now();
	} while (t < end);
	return (double)n / (t - t0);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

#define SLICES 10

int
main(int argc, char **argv)
{
	static const struct {
		const char *name, *label;
		enum ch_key_type type;
		bool ec;
	} cases[] = {
		{ "ECDSA-P256", "bench-ec", CH_KEY_ECDSA_P256, true },
		{ "RSA-2048", "bench-rsa", CH_KEY_RSA_2048, false },
	};
	double secs;

	if (argc != 6) {
		fprintf(stderr, "usage: %s MODULE TOKEN_LABEL PIN_FILE SECONDS STATE_DIR\n",
			argv[0]);
		return 2;
	}
	secs = atof(argv[4]);
	/*
	 * The two loops alternate in SLICES short slices each, on the same
	 * key, so that load from elsewhere on the machine hits both alike;
	 * the medians are reported.
	 */
	printf("ca_key\traw_c_sign_per_s\tleaves_per_s\tratio\n");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ch_p11_config cfg = {
			.module = argv[1],
			.token_label = argv[2],
			.key_label = cases[i].label,
			.pin_file = argv[3],
		};
		struct ch_err err = { "" };
		struct ch_p11 *p = NULL;
		struct leaf_bench b = { 0 };
		double raw[SLICES], leaves[SLICES];

		leaf_setup(&b, argv[1], argv[2], argv[3], argv[5], cases[i].label, cases[i].type);
		if (ch_p11_new(&cfg, &p, &err) < 0 || ch_p11_find_key(p, NULL, &err) < 0)
			die("token", err.msg);
		for (int k = 0; k < SLICES; k++) {
			raw[k] = raw_rate(p, cases[i].ec, secs / SLICES);
			leaves[k] = leaf_rate(&b, secs / SLICES);
		}
		qsort(raw, SLICES, sizeof(double), cmp_double);
		qsort(leaves, SLICES, sizeof(double), cmp_double);
		double r = (raw[SLICES / 2 - 1] + raw[SLICES / 2]) / 2;
		double l = (leaves[SLICES / 2 - 1] + leaves[SLICES / 2]) / 2;
		printf("%s\t%.0f\t%.0f\t%.2f\n", cases[i].name, r, l, l / r);
		fflush(stdout);
		ch_p11_free(p);
		leaf_teardown(&b);
	}
	return 0;
}
