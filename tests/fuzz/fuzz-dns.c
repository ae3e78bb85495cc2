/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what a DNS server sends back during dns-01 (src/lib/dns.c): the
 * message parser (ch_dns_parse, names with compression pointers), the
 * TXT reader (ch_dns_txt) on every record, the TSIG check of a response
 * and of a request (ch_dns_tsig_verify, with the key and request MAC of
 * the unit tests' dnspython vectors, so that the seeds verify), and the
 * TSIG key file reader (ch_dns_tsig_key_parse) on the same bytes as text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/dns.h"
#include "certherd/log.h"
#include "fuzz.h"

static uint8_t secret[32];
static const struct ch_dns_tsig_key key = { "certherd", secret, sizeof(secret) };
/* The MAC of the signed request the seed update-reply-tsig.bin answers. */
static const uint8_t request_mac[32] = {
	0x54, 0x9b, 0xe6, 0x54, 0x87, 0xd0, 0xb6, 0x73, 0x0a, 0x15, 0xa2, 0xea, 0x2a, 0xc8, 0x1c, 0x91,
	0xfa, 0xe6, 0x87, 0xe4, 0xa7, 0xa5, 0xbd, 0xac, 0x86, 0x0f, 0x29, 0x6a, 0x49, 0xb2, 0xa5, 0x83,
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ch_log_set_level(-1);
	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (uint8_t)i;
	return 0;
}

static void
message(const uint8_t *data, size_t size)
{
	struct ch_dns_reply r;
	char txt[64], big[1024];
	int k;

	if (ch_dns_parse(data, size, &r) < 0)
		return;
	if (strnlen(r.qname, sizeof(r.qname)) == sizeof(r.qname) || (r.n_rrs > 0 && !r.rrs))
		abort();
	for (size_t i = 0; i < r.n_rrs; i++) {
		const struct ch_dns_rr *rr = &r.rrs[i];

		/* Every record and its data lie inside the message. */
		if (strnlen(rr->name, sizeof(rr->name)) == sizeof(rr->name) ||
		    rr->offset >= size || rr->rdata_off > size || rr->rdlen > size - rr->rdata_off ||
		    rr->section < 1 || rr->section > 3)
			abort();
		if (rr->type != CH_DNS_TYPE_TXT)
			continue;
		k = ch_dns_txt(data, size, rr, txt, sizeof(txt));
		if (k >= (int)sizeof(txt) || (k < 0 && k != -EBADMSG && k != -ENOBUFS))
			abort();
		k = ch_dns_txt(data, size, rr, big, sizeof(big));
		if (k >= (int)sizeof(big) || (k < 0 && k != -EBADMSG && k != -ENOBUFS))
			abort();
	}
	if (r.has_tsig) {
		if (r.tsig_offset >= size)
			abort();
		(void)ch_dns_tsig_verify(data, size, &r, &key, request_mac, sizeof(request_mac), 0);
		(void)ch_dns_tsig_verify(data, size, &r, &key, NULL, 0, 1700000000);
	}
	ch_dns_reply_done(&r);
}

static void
key_file(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), *name = NULL, errbuf[256];
	uint8_t *sec = NULL;
	size_t len = 0;

	errbuf[0] = '\0';
	if (ch_dns_tsig_key_parse(text, &name, &sec, &len, errbuf, sizeof(errbuf)) == 0) {
		if (!sec || len == 0)
			abort();
		ch_dns_secret_free(sec, len);
		free(name);
	} else if (!errbuf[0]) {
		abort(); /* a refusal says why */
	}
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return -1;
	message(data, size);
	key_file(data, size);
	return 0;
}
