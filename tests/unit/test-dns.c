/* SPDX-License-Identifier: MIT */
/*
 * DNS messages for dns-01: queries and RFC 2136 updates on the wire,
 * the parser (compression, bounds), TSIG HMAC-SHA256 against vectors
 * made by dnspython 2.3 (a signed UPDATE and the signed response to it),
 * and TSIG key files as tsig-keygen writes them.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/dns.h"
#include "certherd/macro.h"

/* The key of the vectors: "certherd", secret bytes 0..31. */
static const char SECRET_B64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/*
 * dnspython: UpdateMessage('example.test.', keyring, keyname='certherd.',
 * hmac-sha256), add('_acme-challenge.www.example.test.', 60, TXT, "abc"),
 * id 0x1234 (its TSIG keeps the original ID 0x9c25), signed at 1700000000.
 */
static const char DNSPY_REQ[] =
	"123428000001000000010001076578616d706c65047465737400000600010f5f61636d652d6368616c6c"
	"656e676503777777c00c001000010000003c0004036162630863657274686572640000fa00ff00000000"
	"003d0b686d61632d7368613235360000006553f100012c0020549be65487d0b6730a15a2ea2ac81c91fa"
	"e687e4a7a5bdac860f296a49b2a5839c2500000000";
static const char DNSPY_REQ_MAC[] =
	"549be65487d0b6730a15a2ea2ac81c91fae687e4a7a5bdac860f296a49b2a583";
/* dnspython: make_response() of that request, signed at 1700000001. */
static const char DNSPY_RESP[] =
	"1234a8000001000000000001076578616d706c65047465737400000600010863657274686572640000fa"
	"00ff00000000003d0b686d61632d7368613235360000006553f101012c0020cc75ba62f613070a525ac0"
	"12a1aa999230f0fff27580bb7b7476f46121b5201d123400000000";
/*
 * Our own UPDATE for the same record, id 0x1234, signed at 1700000000:
 * dnspython's from_wire(keyring=...) accepts it, and its MAC is this.
 */
static const char OUR_MAC[] = "8c50a7ab4b67df66853f2fe9688d1a19a58ba7a020e332a772d76ed4f54cdd45";

static size_t
unhex(const char *h, uint8_t *out, size_t size)
{
	size_t n = strlen(h) / 2;

	ck_assert_uint_le(n, size);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		ck_assert_int_eq(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static struct ch_dns_tsig_key
test_key(uint8_t secret[32])
{
	for (int i = 0; i < 32; i++)
		secret[i] = (uint8_t)i;
	return (struct ch_dns_tsig_key){ "certherd", secret, 32 };
}

START_TEST(test_query)
{
	struct ch_dns_msg m;
	struct ch_dns_reply r;
	static const uint8_t want[] = { 0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
					1, 'a', 4, 't', 'e', 's', 't', 0, 0, 16, 0, 1 };

	ck_assert_int_eq(ch_dns_build_query(0xabcd, "a.test.", CH_DNS_TYPE_TXT, &m), 0);
	ck_assert_uint_eq(m.len, sizeof(want));
	ck_assert(memcmp(m.data, want, sizeof(want)) == 0);
	ck_assert_int_eq(ch_dns_parse(m.data, m.len, &r), 0);
	ck_assert_str_eq(r.qname, "a.test");
	ck_assert_uint_eq(r.qtype, CH_DNS_TYPE_TXT);
	ck_assert_uint_eq(r.n_rrs, 0);
	ch_dns_reply_done(&r);
	ch_dns_msg_done(&m);

	/* Bad names: empty labels, a label over 63, a name over 255. */
	ck_assert_int_eq(ch_dns_build_query(1, "a..test", CH_DNS_TYPE_TXT, &m), -EINVAL);
	ck_assert_int_eq(ch_dns_build_query(1, ".a", CH_DNS_TYPE_TXT, &m), -EINVAL);
	{
		char label[70], name[300];

		memset(label, 'x', 64);
		label[64] = '\0';
		ck_assert_int_eq(ch_dns_build_query(1, label, CH_DNS_TYPE_TXT, &m), -EINVAL);
		memset(name, 0, sizeof(name));
		for (int i = 0; i < 64; i++)
			strcat(name, "abc.");
		ck_assert_int_eq(ch_dns_build_query(1, name, CH_DNS_TYPE_TXT, &m), -EINVAL);
	}
}
END_TEST

START_TEST(test_parse_answer)
{
	/* A TXT answer with two strings and the owner compressed to the question. */
	static const uint8_t msg[] = {
		0x00, 0x07, 0x84, 0x00, 0, 1, 0, 1, 0, 1, 0, 0,
		/* question: X.Test TXT IN */
		1, 'X', 4, 'T', 'e', 's', 't', 0, 0, 16, 0, 1,
		/* answer: ptr to 12, TXT IN ttl 60, "ab" "cd" */
		0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 6, 2, 'a', 'b', 2, 'c', 'd',
		/* authority: test SOA (rdata not looked at) via pointer to offset 14 */
		0xc0, 14, 0, 6, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 14,
	};
	struct ch_dns_reply r;
	char txt[8];
	uint8_t bad[sizeof(msg)];

	ck_assert_int_eq(ch_dns_parse(msg, sizeof(msg), &r), 0);
	ck_assert_uint_eq(r.id, 7);
	ck_assert_int_eq(r.rcode, 0);
	ck_assert_str_eq(r.qname, "x.test");
	ck_assert_uint_eq(r.n_rrs, 2);
	ck_assert_str_eq(r.rrs[0].name, "x.test");
	ck_assert_uint_eq(r.rrs[0].section, 1);
	ck_assert_int_eq(ch_dns_txt(msg, sizeof(msg), &r.rrs[0], txt, sizeof(txt)), 4);
	ck_assert_str_eq(txt, "abcd");
	ck_assert_int_eq(ch_dns_txt(msg, sizeof(msg), &r.rrs[0], txt, 4), -ENOBUFS);
	ck_assert_str_eq(r.rrs[1].name, "test");
	ck_assert_uint_eq(r.rrs[1].type, CH_DNS_TYPE_SOA);
	ck_assert_uint_eq(r.rrs[1].section, 2);
	ck_assert(!r.has_tsig);
	ch_dns_reply_done(&r);

	/* Every truncation is refused, and so is a pointer loop. */
	for (size_t n = 0; n < sizeof(msg); n++)
		ck_assert_int_eq(ch_dns_parse(msg, n, &r), -EBADMSG);
	memcpy(bad, msg, sizeof(msg));
	bad[24] = 0xc0; /* the answer's owner points at itself */
	bad[25] = 24;
	ck_assert_int_eq(ch_dns_parse(bad, sizeof(bad), &r), -EBADMSG);
}
END_TEST

START_TEST(test_update_wire)
{
	struct ch_dns_msg m;
	struct ch_dns_reply r;
	char txt[400], long_value[301];

	ck_assert_int_eq(ch_dns_build_update_txt(0x1234, "example.test", "_acme-challenge.www.example.test",
						 true, "abc", 60, &m), 0);
	ck_assert_int_eq(ch_dns_parse(m.data, m.len, &r), 0);
	ck_assert_uint_eq((r.flags >> 11) & 0xf, CH_DNS_OPCODE_UPDATE);
	ck_assert_str_eq(r.qname, "example.test");
	ck_assert_uint_eq(r.qtype, CH_DNS_TYPE_SOA);
	ck_assert_uint_eq(r.n_rrs, 1);
	ck_assert_uint_eq(r.rrs[0].section, 2); /* the update section */
	ck_assert_uint_eq(r.rrs[0].rclass, CH_DNS_CLASS_IN);
	ck_assert_uint_eq(r.rrs[0].ttl, 60);
	ck_assert_int_eq(ch_dns_txt(m.data, m.len, &r.rrs[0], txt, sizeof(txt)), 3);
	ch_dns_reply_done(&r);
	ch_dns_msg_done(&m);

	/* Deleting one value: class NONE, TTL 0, the same rdata. */
	ck_assert_int_eq(ch_dns_build_update_txt(1, "example.test", "_acme-challenge.example.test",
						 false, "abc", 60, &m), 0);
	ck_assert_int_eq(ch_dns_parse(m.data, m.len, &r), 0);
	ck_assert_uint_eq(r.rrs[0].rclass, CH_DNS_CLASS_NONE);
	ck_assert_uint_eq(r.rrs[0].ttl, 0);
	ck_assert_int_eq(ch_dns_txt(m.data, m.len, &r.rrs[0], txt, sizeof(txt)), 3);
	ch_dns_reply_done(&r);
	ch_dns_msg_done(&m);

	/* A value over 255 bytes is split in character-strings. */
	memset(long_value, 'v', 300);
	long_value[300] = '\0';
	ck_assert_int_eq(ch_dns_build_update_txt(1, "t", "a.t", true, long_value, 60, &m), 0);
	ck_assert_int_eq(ch_dns_parse(m.data, m.len, &r), 0);
	ck_assert_uint_eq(r.rrs[0].rdlen, 302);
	ck_assert_int_eq(ch_dns_txt(m.data, m.len, &r.rrs[0], txt, sizeof(txt)), 300);
	ck_assert_str_eq(txt, long_value);
	ch_dns_reply_done(&r);
	ch_dns_msg_done(&m);
}
END_TEST

START_TEST(test_tsig_dnspython)
{
	uint8_t secret[32], msg[512], mac[32];
	struct ch_dns_tsig_key key = test_key(secret);
	struct ch_dns_reply r;
	size_t n, mac_len;

	/* dnspython's signed request verifies (with its original ID, not the header's). */
	n = unhex(DNSPY_REQ, msg, sizeof(msg));
	mac_len = unhex(DNSPY_REQ_MAC, mac, sizeof(mac));
	ck_assert_int_eq(ch_dns_parse(msg, n, &r), 0);
	ck_assert(r.has_tsig);
	ck_assert_str_eq(r.tsig_key, "certherd");
	ck_assert_int_eq(r.tsig_error, 0);
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 1700000100), 0);
	/* Outside the fudge (300 s). */
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 1700000400), -ETIME);
	/* Another secret, a changed byte, another key name. */
	secret[0] = 1;
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 0), -EBADMSG);
	secret[0] = 0;
	msg[40] ^= 1;
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 0), -EBADMSG);
	msg[40] ^= 1;
	key.name = "other.";
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 0), -ENOKEY);
	key.name = "CertHerd.";
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 0), 0);
	ch_dns_reply_done(&r);

	/* The response is signed over the request's MAC. */
	n = unhex(DNSPY_RESP, msg, sizeof(msg));
	ck_assert_int_eq(ch_dns_parse(msg, n, &r), 0);
	ck_assert_int_eq(r.rcode, CH_DNS_RCODE_NOERROR);
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, mac, mac_len, 0), 0);
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, NULL, 0, 0), -EBADMSG);
	mac[3] ^= 0x80;
	ck_assert_int_eq(ch_dns_tsig_verify(msg, n, &r, &key, mac, mac_len, 0), -EBADMSG);
	ch_dns_reply_done(&r);
}
END_TEST

START_TEST(test_tsig_sign)
{
	uint8_t secret[32], mac[32];
	struct ch_dns_tsig_key key = test_key(secret);
	struct ch_dns_msg m;
	struct ch_dns_reply r;
	char mac_hex[65];

	ck_assert_int_eq(ch_dns_build_update_txt(0x1234, "example.test", "_acme-challenge.www.example.test",
						 true, "abc", 60, &m), 0);
	ck_assert_int_eq(ch_dns_tsig_sign(&m, &key, 1700000000, mac), 0);
	hex(mac, 32, mac_hex);
	if (getenv("CH_TEST_PRINT_DNS")) {
		char *h = malloc(m.len * 2 + 1);

		hex(m.data, m.len, h);
		printf("# wire %s\n", h);
		free(h);
	}
	ck_assert_str_eq(mac_hex, OUR_MAC);
	ck_assert_int_eq(ch_dns_parse(m.data, m.len, &r), 0);
	ck_assert(r.has_tsig);
	ck_assert_uint_eq(r.n_rrs, 2);
	ck_assert_int_eq(ch_dns_tsig_verify(m.data, m.len, &r, &key, NULL, 0, 1700000000), 0);
	ch_dns_reply_done(&r);
	ch_dns_msg_done(&m);
}
END_TEST

START_TEST(test_key_file)
{
	uint8_t *secret = NULL;
	size_t len = 0;
	char *name = NULL, err[128];
	char clause[200];

	snprintf(clause, sizeof(clause),
		 "key \"certherd\" {\n\talgorithm hmac-sha256;\n\tsecret \"%s\";\n};\n", SECRET_B64);
	ck_assert_int_eq(ch_dns_tsig_key_parse(clause, &name, &secret, &len, err, sizeof(err)), 0);
	ck_assert_str_eq(name, "certherd");
	ck_assert_uint_eq(len, 32);
	ck_assert_uint_eq(secret[31], 31);
	free(name);
	ch_dns_secret_free(secret, len);

	ck_assert_int_eq(ch_dns_tsig_key_parse("  c2VjcmV0\n", &name, &secret, &len, err, sizeof(err)), 0);
	ck_assert_ptr_null(name);
	ck_assert_uint_eq(len, 6);
	ck_assert(memcmp(secret, "secret", 6) == 0);
	ch_dns_secret_free(secret, len);

	ck_assert_int_eq(ch_dns_tsig_key_parse("key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0\"; };",
					       &name, &secret, &len, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "hmac-md5"));
	ck_assert_int_eq(ch_dns_tsig_key_parse("not base64!", &name, &secret, &len, err, sizeof(err)),
			 -EINVAL);
	ck_assert_int_eq(ch_dns_tsig_key_parse("c2Vjc", &name, &secret, &len, err, sizeof(err)),
			 -EINVAL);
}
END_TEST

START_TEST(test_server)
{
	ck_assert_int_eq(ch_dns_server_check("127.0.0.1"), 0);
	ck_assert_int_eq(ch_dns_server_check("127.0.0.1:5353"), 0);
	ck_assert_int_eq(ch_dns_server_check("[::1]:53"), 0);
	ck_assert_int_eq(ch_dns_server_check("::1"), 0);
	ck_assert_int_eq(ch_dns_server_check("ns1.example.com:53"), -EINVAL);
	ck_assert_int_eq(ch_dns_server_check("127.0.0.1:0"), -EINVAL);
	ck_assert_int_eq(ch_dns_server_check("127.0.0.1:"), -EINVAL);
	ck_assert_int_eq(ch_dns_server_check(""), -EINVAL);
	ck_assert_str_eq(ch_dns_rcode_to_string(CH_DNS_RCODE_BADSIG), "BADSIG");
	ck_assert_str_eq(ch_dns_rcode_to_string(42), "RCODE42");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dns");
	TCase *tc = tcase_create("dns");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_query);
	tcase_add_test(tc, test_parse_answer);
	tcase_add_test(tc, test_update_wire);
	tcase_add_test(tc, test_tsig_dnspython);
	tcase_add_test(tc, test_tsig_sign);
	tcase_add_test(tc, test_key_file);
	tcase_add_test(tc, test_server);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
