/* SPDX-License-Identifier: MIT */
/*
 * certherd's own signing path, as the local CA backend runs it for one
 * renewal, linked against the core library: ch_key_generate (P-256),
 * ch_localca_issue, ch_cert_to_pem, for SECONDS. Nothing is written to
 * disk. With "keypem" the new key is also PEM-encoded (ch_key_to_pem), as
 * the daemon does before it writes key.pem.
 *
 *   bench-sign-certherd CA_CERT CA_KEY [SECONDS] [keypem]
 *
 * Prints: certs=N seconds=S certs_per_s=R
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certherd/crypto.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	double seconds = argc > 3 ? atof(argv[3]) : 5, t0, t;
	bool keypem = argc > 4 && strcmp(argv[4], "keypem") == 0;
	struct ch_localca *ca = NULL;
	struct ch_err err = { "" };
	unsigned long n = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CA_CERT CA_KEY [SECONDS] [keypem]\n", argv[0]);
		return 2;
	}
	if (ch_localca_open(argv[1], argv[2], false, NULL, CH_KEY_ECDSA_P256, 0, &ca, &err) < 0) {
		fprintf(stderr, "bench-sign-certherd: cannot open the CA: %s\n", err.msg);
		return 1;
	}
	t0 = now_s();
	do {
		char dns[64];
		char *dnsv[] = { dns, NULL }, *ipv[] = { NULL };
		EVP_PKEY *key = NULL;
		X509 *x = NULL;
		char *pem = NULL, *kpem = NULL;
		size_t klen = 0;

		snprintf(dns, sizeof(dns), "c%07lu.bench.test", n + 1);
		if (ch_key_generate(CH_KEY_ECDSA_P256, &key, &err) < 0 ||
		    (keypem && ch_key_to_pem(key, &kpem, &klen, &err) < 0) ||
		    ch_localca_issue(ca, key, dnsv, ipv, 90 * 86400, 300, &x, &err) < 0 ||
		    ch_cert_to_pem(x, &pem) < 0) {
			fprintf(stderr, "bench-sign-certherd: issuing failed: %s\n", err.msg);
			return 1;
		}
		if (kpem)
			ch_secret_free(kpem, klen);
		free(pem);
		X509_free(x);
		EVP_PKEY_free(key);
		n++;
		t = now_s();
	} while (t - t0 < seconds);
	printf("certs=%lu seconds=%.3f certs_per_s=%.1f\n", n, t - t0, (double)n / (t - t0));
	ch_localca_free(ca);
	return 0;
}
