/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes certificate import: ch_certs_from_pem and, for every certificate
 * it returns, ch_cert_info_get and the name and chain helpers used on
 * what a CA sends back (ch_cert_names_match, ch_acme_chain_split,
 * ch_acme_chain_has_issuer). An input starting with 0x30 (a DER SEQUENCE)
 * is wrapped into a PEM block first, so that mutations reach the
 * certificate's structure instead of stopping at base64.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "certherd/acme.h"
#include "certherd/crypto.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ch_log_set_level(-1);
	return 0;
}

/* data as one PEM CERTIFICATE block, NUL-terminated; *ret_len without the NUL. */
static char *
der_to_pem(const uint8_t *data, size_t size, size_t *ret_len)
{
	static const char head[] = "-----BEGIN CERTIFICATE-----\n";
	static const char tail[] = "-----END CERTIFICATE-----\n";
	size_t nlines = (size + 47) / 48, off;
	char *pem = malloc(sizeof(head) + sizeof(tail) + nlines * 66 + 1);

	if (!pem)
		abort();
	off = strlen(head);
	memcpy(pem, head, off);
	for (size_t i = 0; i < size; i += 48) {
		size_t n = size - i < 48 ? size - i : 48;

		off += (size_t)EVP_EncodeBlock((unsigned char *)pem + off, data + i, (int)n);
		pem[off++] = '\n';
	}
	memcpy(pem + off, tail, sizeof(tail));
	*ret_len = off + strlen(tail);
	return pem;
}

static void
check_cert(X509 *x)
{
	struct ch_cert_info info = { 0 };

	if (ch_cert_info_get(x, &info) < 0)
		return;
	if (!info.subject || !info.issuer || !info.dns_names || !info.ip_names ||
	    strlen(info.fingerprint) != 64)
		abort();
	/* The names read back are compared with the SANs again, as after issuance. */
	(void)ch_cert_names_match(x, info.dns_names, info.ip_names);
	ch_cert_info_done(&info);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ch_err err = { "" };
	STACK_OF(X509) *sk = NULL;
	char *pem, *leaf = NULL, *chain = NULL;
	size_t len;

	if (size > 64 * 1024)
		return -1;
	if (size > 0 && data[0] == 0x30) {
		pem = der_to_pem(data, size, &len);
	} else {
		pem = fuzz_strndup(data, size);
		len = size;
	}

	if (ch_certs_from_pem(pem, len, &sk, &err) == 0) {
		for (int i = 0; i < sk_X509_num(sk); i++)
			check_cert(sk_X509_value(sk, i));
		sk_X509_pop_free(sk, X509_free);
	} else if (sk) {
		abort();
	}

	if (ch_acme_chain_split(pem, &leaf, &chain) == 0) {
		if (!strstr(leaf, "-----BEGIN CERTIFICATE-----"))
			abort();
		free(leaf);
		free(chain);
	}
	ch_acme_chain_has_issuer(pem, "certherd test CA");
	ERR_clear_error();
	free(pem);
	return 0;
}
