/* SPDX-License-Identifier: MIT */
/*
 * DNS message encoding and decoding for the dns-01 challenge: queries,
 * RFC 2136 updates of one TXT record, TSIG (RFC 8945, HMAC-SHA256) on
 * requests and responses, a bounds-checked parser with name
 * decompression, and TSIG key files. No network here.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "certherd/dns.h"
#include "certherd/macro.h"

#define TSIG_ALG "hmac-sha256"
#define TSIG_FUDGE 300
#define TSIG_MAC_LEN 32

const char *
ch_dns_rcode_to_string(int rcode)
{
	static const char *const names[] = {
		[0] = "NOERROR",   [1] = "FORMERR",   [2] = "SERVFAIL", [3] = "NXDOMAIN",
		[4] = "NOTIMP",    [5] = "REFUSED",   [6] = "YXDOMAIN", [7] = "YXRRSET",
		[8] = "NXRRSET",   [9] = "NOTAUTH",   [10] = "NOTZONE", [16] = "BADSIG",
		[17] = "BADKEY",   [18] = "BADTIME",  [22] = "BADTRUNC",
	};
	static char buf[16];

	if (rcode >= 0 && (size_t)rcode < ARRAY_SIZE(names) && names[rcode])
		return names[rcode];
	snprintf(buf, sizeof(buf), "RCODE%d", rcode);
	return buf;
}

/* --- building ---------------------------------------------------------------------- */

void
ch_dns_msg_done(struct ch_dns_msg *m)
{
	free(m->data);
	*m = (struct ch_dns_msg){ 0 };
}

static int
msg_put(struct ch_dns_msg *m, const void *p, size_t n)
{
	if (m->len + n > CH_DNS_MSG_MAX)
		return -EINVAL;
	if (m->len + n > m->cap) {
		size_t cap = m->cap ? m->cap : 512;
		uint8_t *d;

		while (cap < m->len + n)
			cap *= 2;
		d = realloc(m->data, cap);
		if (!d)
			return -ENOMEM;
		m->data = d;
		m->cap = cap;
	}
	memcpy(m->data + m->len, p, n);
	m->len += n;
	return 0;
}

static int
msg_u16(struct ch_dns_msg *m, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	return msg_put(m, b, 2);
}

static int
msg_u32(struct ch_dns_msg *m, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	return msg_put(m, b, 4);
}

/* The wire form of a presentation name, lower-cased when lower (TSIG's canonical form). */
static int
msg_name(struct ch_dns_msg *m, const char *name, bool lower)
{
	size_t total = 1;
	const char *p = name;
	int r;

	if (streq(name, ".") || !*name)
		return msg_put(m, "", 1);
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		uint8_t label[64];

		if (n == 0 || n > 63)
			return -EINVAL;
		total += n + 1;
		if (total > 255)
			return -EINVAL;
		label[0] = (uint8_t)n;
		for (size_t i = 0; i < n; i++)
			label[i + 1] = lower ? (uint8_t)tolower((unsigned char)p[i]) : (uint8_t)p[i];
		r = msg_put(m, label, n + 1);
		if (r < 0)
			return r;
		if (!dot || !dot[1])
			break;
		p = dot + 1;
	}
	return msg_put(m, "", 1);
}

static int
msg_header(struct ch_dns_msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
	   uint16_t ns, uint16_t ar)
{
	*m = (struct ch_dns_msg){ 0 };
	if (msg_u16(m, id) < 0 || msg_u16(m, flags) < 0 || msg_u16(m, qd) < 0 ||
	    msg_u16(m, an) < 0 || msg_u16(m, ns) < 0 || msg_u16(m, ar) < 0)
		return -ENOMEM;
	return 0;
}

int
ch_dns_build_query(uint16_t id, const char *name, uint16_t type, struct ch_dns_msg *ret)
{
	struct ch_dns_msg m;
	int r;

	r = msg_header(&m, id, CH_DNS_OPCODE_QUERY << 11, 1, 0, 0, 0);
	if (r >= 0)
		r = msg_name(&m, name, false);
	if (r >= 0)
		r = msg_u16(&m, type);
	if (r >= 0)
		r = msg_u16(&m, CH_DNS_CLASS_IN);
	if (r < 0) {
		ch_dns_msg_done(&m);
		return r;
	}
	*ret = m;
	return 0;
}

int
ch_dns_build_update_txt(uint16_t id, const char *zone, const char *name, bool add,
			const char *value, uint32_t ttl, struct ch_dns_msg *ret)
{
	struct ch_dns_msg m;
	size_t vlen = strlen(value), rdlen = 0, len_at;
	int r;

	/* Zone section: one SOA question; no prerequisites; one update record. */
	r = msg_header(&m, id, CH_DNS_OPCODE_UPDATE << 11, 1, 0, 1, 0);
	if (r >= 0)
		r = msg_name(&m, zone, false);
	if (r >= 0)
		r = msg_u16(&m, CH_DNS_TYPE_SOA);
	if (r >= 0)
		r = msg_u16(&m, CH_DNS_CLASS_IN);
	if (r >= 0)
		r = msg_name(&m, name, false);
	if (r >= 0)
		r = msg_u16(&m, CH_DNS_TYPE_TXT);
	if (r >= 0)
		r = msg_u16(&m, add ? CH_DNS_CLASS_IN : CH_DNS_CLASS_NONE);
	if (r >= 0)
		r = msg_u32(&m, add ? ttl : 0);
	len_at = m.len;
	if (r >= 0)
		r = msg_u16(&m, 0);
	for (size_t off = 0; r >= 0 && (off < vlen || off == 0); off += 255) {
		size_t n = vlen - off < 255 ? vlen - off : 255;
		uint8_t l = (uint8_t)n;

		r = msg_put(&m, &l, 1);
		if (r >= 0)
			r = msg_put(&m, value + off, n);
		rdlen += n + 1;
		if (vlen == 0)
			break;
	}
	if (r >= 0 && rdlen > 65535)
		r = -EINVAL;
	if (r < 0) {
		ch_dns_msg_done(&m);
		return r;
	}
	m.data[len_at] = (uint8_t)(rdlen >> 8);
	m.data[len_at + 1] = (uint8_t)rdlen;
	*ret = m;
	return 0;
}

static void
put48(uint8_t *p, uint64_t v)
{
	for (int i = 5; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/*
 * The TSIG variables (RFC 8945 §4.3.3): key name and algorithm in
 * canonical wire form, class ANY, TTL 0, time, fudge, error, other data.
 */
static int
tsig_variables(struct ch_dns_msg *d, const char *key, uint64_t time_signed, uint16_t fudge,
	       uint16_t error, const uint8_t *other, uint16_t other_len)
{
	uint8_t t[6];

	put48(t, time_signed);
	if (msg_name(d, key, true) < 0 || msg_u16(d, CH_DNS_CLASS_ANY) < 0 || msg_u32(d, 0) < 0 ||
	    msg_name(d, TSIG_ALG, true) < 0 || msg_put(d, t, 6) < 0 || msg_u16(d, fudge) < 0 ||
	    msg_u16(d, error) < 0 || msg_u16(d, other_len) < 0 ||
	    (other_len && msg_put(d, other, other_len) < 0))
		return -ENOMEM;
	return 0;
}

static int
hmac_sha256(const struct ch_dns_tsig_key *key, const struct ch_dns_msg *d, uint8_t mac[32])
{
	size_t n = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->secret, key->secret_len, d->data,
		       d->len, mac, TSIG_MAC_LEN, &n) ||
	    n != TSIG_MAC_LEN)
		return -EIO;
	return 0;
}

int
ch_dns_tsig_sign(struct ch_dns_msg *m, const struct ch_dns_tsig_key *key, uint64_t time_signed,
		 uint8_t ret_mac[32])
{
	struct ch_dns_msg d = { 0 };
	uint8_t t[6];
	size_t rdlen_at, start;
	uint16_t ar;
	int r;

	if (m->len < 12 || !key->name || !key->secret_len)
		return -EINVAL;
	r = msg_put(&d, m->data, m->len);
	if (r >= 0)
		r = tsig_variables(&d, key->name, time_signed, TSIG_FUDGE, 0, NULL, 0);
	if (r >= 0)
		r = hmac_sha256(key, &d, ret_mac);
	ch_dns_msg_done(&d);
	if (r < 0)
		return r;

	start = m->len;
	put48(t, time_signed);
	r = msg_name(m, key->name, true);
	if (r >= 0)
		r = msg_u16(m, CH_DNS_TYPE_TSIG);
	if (r >= 0)
		r = msg_u16(m, CH_DNS_CLASS_ANY);
	if (r >= 0)
		r = msg_u32(m, 0);
	rdlen_at = m->len;
	if (r >= 0)
		r = msg_u16(m, 0);
	if (r >= 0)
		r = msg_name(m, TSIG_ALG, true);
	if (r >= 0)
		r = msg_put(m, t, 6);
	if (r >= 0)
		r = msg_u16(m, TSIG_FUDGE);
	if (r >= 0)
		r = msg_u16(m, TSIG_MAC_LEN);
	if (r >= 0)
		r = msg_put(m, ret_mac, TSIG_MAC_LEN);
	if (r >= 0)
		r = msg_put(m, m->data, 2); /* original ID */
	if (r >= 0)
		r = msg_u16(m, 0);          /* error */
	if (r >= 0)
		r = msg_u16(m, 0);          /* other len */
	if (r < 0) {
		m->len = start;
		return r;
	}
	m->data[rdlen_at] = (uint8_t)((m->len - rdlen_at - 2) >> 8);
	m->data[rdlen_at + 1] = (uint8_t)(m->len - rdlen_at - 2);
	ar = (uint16_t)((m->data[10] << 8 | m->data[11]) + 1);
	m->data[10] = (uint8_t)(ar >> 8);
	m->data[11] = (uint8_t)ar;
	return 0;
}

/* --- parsing ----------------------------------------------------------------------- */

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Reads the name at *off (following compression pointers, at most 64 of
 * them) into out in lower case without the trailing dot, and moves *off
 * past it in the record.
 */
static int
parse_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t size)
{
	size_t p = *off, o = 0, end = 0;
	unsigned jumps = 0;

	for (;;) {
		uint8_t l;

		if (p >= len)
			return -EBADMSG;
		l = msg[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 1 >= len || ++jumps > 64)
				return -EBADMSG;
			if (!end)
				end = p + 2;
			p = (size_t)(l & 0x3f) << 8 | msg[p + 1];
			continue;
		}
		if (l & 0xc0)
			return -EBADMSG;
		if (l == 0) {
			p++;
			break;
		}
		if (p + 1 + l > len || o + l + 2 > size)
			return -EBADMSG;
		if (o)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++)
			out[o++] = (char)tolower(msg[p + 1 + i]);
		p += 1 + (size_t)l;
	}
	if (size)
		out[o] = '\0';
	*off = end ? end : p;
	return 0;
}

void
ch_dns_reply_done(struct ch_dns_reply *r)
{
	free(r->rrs);
	r->rrs = NULL;
	r->n_rrs = 0;
}

int
ch_dns_parse(const uint8_t *msg, size_t len, struct ch_dns_reply *ret)
{
	struct ch_dns_reply r = { 0 };
	size_t off = 12, counts[4], total;
	int k;

	if (len < 12)
		return -EBADMSG;
	r.id = get16(msg);
	r.flags = get16(msg + 2);
	r.rcode = r.flags & 0xf;
	for (int i = 0; i < 4; i++)
		counts[i] = get16(msg + 4 + 2 * i);
	if (counts[0] > 1)
		return -EBADMSG;
	if (counts[0]) {
		k = parse_name(msg, len, &off, r.qname, sizeof(r.qname));
		if (k < 0 || off + 4 > len)
			return -EBADMSG;
		r.qtype = get16(msg + off);
		off += 4;
	}
	total = counts[1] + counts[2] + counts[3];
	if (total > len / 11 + 1)
		return -EBADMSG;
	r.rrs = calloc(total ? total : 1, sizeof(*r.rrs));
	if (!r.rrs)
		return -ENOMEM;
	for (size_t s = 1, i = 0; s <= 3; s++)
		for (size_t n = 0; n < counts[s]; n++, i++) {
			struct ch_dns_rr *rr = &r.rrs[i];

			rr->offset = off;
			rr->section = (uint8_t)s;
			k = parse_name(msg, len, &off, rr->name, sizeof(rr->name));
			if (k < 0 || off + 10 > len)
				goto bad;
			rr->type = get16(msg + off);
			rr->rclass = get16(msg + off + 2);
			rr->ttl = get32(msg + off + 4);
			rr->rdlen = get16(msg + off + 8);
			rr->rdata_off = off + 10;
			off += 10 + rr->rdlen;
			if (off > len)
				goto bad;
			r.n_rrs++;
		}
	if (off != len)
		goto bad;
	if (r.n_rrs && r.rrs[r.n_rrs - 1].type == CH_DNS_TYPE_TSIG &&
	    r.rrs[r.n_rrs - 1].section == 3) {
		const struct ch_dns_rr *t = &r.rrs[r.n_rrs - 1];
		size_t p = t->rdata_off, end = t->rdata_off + t->rdlen;
		char alg[CH_DNS_NAME_MAX];
		uint16_t maclen;

		if (parse_name(msg, end, &p, alg, sizeof(alg)) < 0 || p + 10 > end)
			goto bad;
		maclen = get16(msg + p + 8);
		p += 10 + maclen;
		if (p + 6 > end)
			goto bad;
		r.has_tsig = true;
		r.tsig_offset = t->offset;
		r.tsig_error = get16(msg + p + 2);
		snprintf(r.tsig_key, sizeof(r.tsig_key), "%s", t->name);
	}
	*ret = r;
	return 0;
bad:
	free(r.rrs);
	return -EBADMSG;
}

int
ch_dns_txt(const uint8_t *msg, size_t len, const struct ch_dns_rr *rr, char *buf, size_t size)
{
	size_t p = rr->rdata_off, end = rr->rdata_off + rr->rdlen, o = 0;

	if (rr->type != CH_DNS_TYPE_TXT || end > len || size == 0)
		return -EBADMSG;
	while (p < end) {
		size_t n = msg[p];

		if (p + 1 + n > end)
			return -EBADMSG;
		if (o + n + 1 > size)
			return -ENOBUFS;
		memcpy(buf + o, msg + p + 1, n);
		o += n;
		p += 1 + n;
	}
	buf[o] = '\0';
	return (int)o;
}

int
ch_dns_tsig_verify(const uint8_t *msg, size_t len, const struct ch_dns_reply *r,
		   const struct ch_dns_tsig_key *key, const uint8_t *request_mac,
		   size_t request_mac_len, uint64_t now)
{
	const struct ch_dns_rr *t;
	struct ch_dns_msg d = { 0 };
	char alg[CH_DNS_NAME_MAX], want_key[CH_DNS_NAME_MAX];
	const uint8_t *mac;
	uint8_t calc[TSIG_MAC_LEN];
	uint64_t time_signed = 0;
	uint16_t fudge, maclen, orig_id, error, other_len;
	size_t p, end;
	uint16_t ar;
	int k;

	if (!r->has_tsig || !r->n_rrs)
		return -ENOKEY;
	t = &r->rrs[r->n_rrs - 1];
	snprintf(want_key, sizeof(want_key), "%s", key->name);
	for (char *c = want_key; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (*want_key && want_key[strlen(want_key) - 1] == '.')
		want_key[strlen(want_key) - 1] = '\0';
	if (!streq(t->name, want_key))
		return -ENOKEY;
	p = t->rdata_off;
	end = t->rdata_off + t->rdlen;
	if (parse_name(msg, end, &p, alg, sizeof(alg)) < 0 || !streq(alg, TSIG_ALG))
		return -ENOKEY;
	if (p + 10 > end)
		return -EBADMSG;
	for (int i = 0; i < 6; i++)
		time_signed = time_signed << 8 | msg[p + i];
	fudge = get16(msg + p + 6);
	maclen = get16(msg + p + 8);
	mac = msg + p + 10;
	p += 10 + maclen;
	if (p + 6 > end)
		return -EBADMSG;
	orig_id = get16(msg + p);
	error = get16(msg + p + 2);
	other_len = get16(msg + p + 4);
	if (p + 6 + other_len > end || maclen != TSIG_MAC_LEN)
		return -EBADMSG;

	/* [request MAC] + message without TSIG (original ID, ARCOUNT - 1) + variables. */
	k = 0;
	if (request_mac) {
		k = msg_u16(&d, (uint16_t)request_mac_len);
		if (k >= 0)
			k = msg_put(&d, request_mac, request_mac_len);
	}
	if (k >= 0)
		k = msg_u16(&d, orig_id);
	if (k >= 0)
		k = msg_put(&d, msg + 2, r->tsig_offset - 2);
	if (k >= 0)
		k = tsig_variables(&d, want_key, time_signed, fudge, error, msg + p + 6, other_len);
	if (k >= 0) {
		size_t ar_at = request_mac ? 2 + request_mac_len + 10 : 10;

		ar = (uint16_t)(get16(d.data + ar_at) - 1);
		d.data[ar_at] = (uint8_t)(ar >> 8);
		d.data[ar_at + 1] = (uint8_t)ar;
		k = hmac_sha256(key, &d, calc);
	}
	ch_dns_msg_done(&d);
	if (k < 0)
		return k;
	if (CRYPTO_memcmp(calc, mac, TSIG_MAC_LEN) != 0)
		return -EBADMSG;
	if (now && (now > time_signed + fudge || time_signed > now + fudge))
		return -ETIME;
	return 0;
}

/* --- key files --------------------------------------------------------------------- */

void
ch_dns_secret_free(uint8_t *secret, size_t len)
{
	if (secret)
		OPENSSL_clear_free(secret, len);
}

static int
b64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len)
{
	uint8_t *out;
	int k;
	size_t pad = 0;

	if (n == 0 || n % 4)
		return -EINVAL;
	out = OPENSSL_malloc(n);
	if (!out)
		return -ENOMEM;
	k = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (k < 0) {
		OPENSSL_clear_free(out, n);
		return -EINVAL;
	}
	while (pad < 2 && s[n - 1 - pad] == '=')
		pad++;
	*ret = out;
	*ret_len = (size_t)k - pad;
	return 0;
}

/* The quoted string after word in text, or NULL. */
static const char *
clause_value(const char *text, const char *word, size_t *ret_len)
{
	const char *p = text;

	while ((p = strstr(p, word))) {
		const char *q = p + strlen(word), *e;

		if ((p == text || isspace((unsigned char)p[-1]) || p[-1] == '{' || p[-1] == ';') &&
		    isspace((unsigned char)*q)) {
			while (isspace((unsigned char)*q))
				q++;
			if (*q == '"' && (e = strchr(q + 1, '"'))) {
				*ret_len = (size_t)(e - q - 1);
				return q + 1;
			}
			if (*q && *q != '"') {
				e = q;
				while (*e && *e != ';' && !isspace((unsigned char)*e))
					e++;
				*ret_len = (size_t)(e - q);
				return q;
			}
		}
		p = q;
	}
	return NULL;
}

int
ch_dns_tsig_key_parse(const char *text, char **ret_name, uint8_t **ret_secret,
		      size_t *ret_secret_len, char *errbuf, size_t errlen)
{
	const char *v, *name = NULL, *secret;
	size_t n = 0, name_len = 0;
	char *nm = NULL;
	int k;

	if (strstr(text, "secret")) {
		name = clause_value(text, "key", &name_len);
		v = clause_value(text, "algorithm", &n);
		if (v && !(n == strlen(TSIG_ALG) && strncasecmp(v, TSIG_ALG, n) == 0)) {
			snprintf(errbuf, errlen, "algorithm %.*s is not supported; use hmac-sha256",
				 (int)(n > 40 ? 40 : n), v);
			return -EINVAL;
		}
		secret = clause_value(text, "secret", &n);
		if (!secret) {
			snprintf(errbuf, errlen, "no secret \"...\" in the key clause");
			return -EINVAL;
		}
	} else {
		secret = text;
		while (isspace((unsigned char)*secret))
			secret++;
		n = strcspn(secret, " \t\r\n");
		if (secret[n + strspn(secret + n, " \t\r\n")]) {
			snprintf(errbuf, errlen,
				 "expected a BIND key clause or one base64 secret");
			return -EINVAL;
		}
	}
	k = b64_decode(secret, n, ret_secret, ret_secret_len);
	if (k == -EINVAL)
		snprintf(errbuf, errlen, "the secret is not valid base64");
	if (k < 0)
		return k;
	if (*ret_secret_len == 0) {
		ch_dns_secret_free(*ret_secret, n);
		snprintf(errbuf, errlen, "the secret is empty");
		return -EINVAL;
	}
	if (name && name_len) {
		nm = strndup(name, name_len);
		if (!nm) {
			ch_dns_secret_free(*ret_secret, *ret_secret_len);
			return -ENOMEM;
		}
	}
	*ret_name = nm;
	return 0;
}
