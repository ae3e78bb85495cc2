/* SPDX-License-Identifier: MIT */
/*
 * DNS messages as the dns-01 challenge needs them, without any network:
 * QUERY (TXT, SOA) and RFC 2136 UPDATE messages, TSIG signatures with
 * HMAC-SHA256 (RFC 8945) on requests and their check on responses, and a
 * parser for the answers (names decompressed, TXT strings joined). The
 * transport (UDP, TCP on truncation) is src/lib/dns-client.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_DNS_NAME_MAX 256 /* presentation form, with the NUL */
#define CH_DNS_MSG_MAX 65535

enum {
	CH_DNS_TYPE_SOA = 6,
	CH_DNS_TYPE_TXT = 16,
	CH_DNS_TYPE_TSIG = 250,
	CH_DNS_CLASS_IN = 1,
	CH_DNS_CLASS_NONE = 254,
	CH_DNS_CLASS_ANY = 255,
	CH_DNS_OPCODE_QUERY = 0,
	CH_DNS_OPCODE_UPDATE = 5,
	CH_DNS_FLAG_QR = 0x8000,
	CH_DNS_FLAG_TC = 0x0200,
	CH_DNS_FLAG_RD = 0x0100,
};

/* RCODEs and TSIG errors (RFC 1035, 2136, 8945). */
enum {
	CH_DNS_RCODE_NOERROR = 0,
	CH_DNS_RCODE_FORMERR = 1,
	CH_DNS_RCODE_SERVFAIL = 2,
	CH_DNS_RCODE_NXDOMAIN = 3,
	CH_DNS_RCODE_NOTIMP = 4,
	CH_DNS_RCODE_REFUSED = 5,
	CH_DNS_RCODE_YXDOMAIN = 6,
	CH_DNS_RCODE_YXRRSET = 7,
	CH_DNS_RCODE_NXRRSET = 8,
	CH_DNS_RCODE_NOTAUTH = 9,
	CH_DNS_RCODE_NOTZONE = 10,
	CH_DNS_RCODE_BADSIG = 16,
	CH_DNS_RCODE_BADKEY = 17,
	CH_DNS_RCODE_BADTIME = 18,
	CH_DNS_RCODE_BADTRUNC = 22,
};
/* "NOERROR", "REFUSED", "BADSIG", ... or "RCODE42" (static or thread-unsafe buffer). */
const char *ch_dns_rcode_to_string(int rcode);

/* A message being built: data grows as needed, up to CH_DNS_MSG_MAX. */
struct ch_dns_msg {
	uint8_t *data;
	size_t len, cap;
};
void ch_dns_msg_done(struct ch_dns_msg *m);

/* A TSIG key (HMAC-SHA256 only). name is in presentation form. */
struct ch_dns_tsig_key {
	const char *name;
	const uint8_t *secret;
	size_t secret_len;
};

/* A QUERY for name/type IN, without RD. Returns 0, -EINVAL (bad name) or -ENOMEM. */
int ch_dns_build_query(uint16_t id, const char *name, uint16_t type, struct ch_dns_msg *ret);

/*
 * An UPDATE of zone: add (true) the TXT record name IN TXT "value" with
 * ttl, or delete (false) exactly that record (class NONE, RFC 2136
 * §2.5.4), leaving other values of the same name alone. value is split in
 * 255-byte strings. Returns 0, -EINVAL or -ENOMEM.
 */
int ch_dns_build_update_txt(uint16_t id, const char *zone, const char *name, bool add,
			    const char *value, uint32_t ttl, struct ch_dns_msg *ret);

/*
 * Appends a TSIG record (hmac-sha256, fudge 300 s, time_signed seconds)
 * to m and increments ARCOUNT. The MAC (32 bytes) is copied to ret_mac for
 * checking the response. Returns 0, -EINVAL or -ENOMEM.
 */
int ch_dns_tsig_sign(struct ch_dns_msg *m, const struct ch_dns_tsig_key *key,
		     uint64_t time_signed, uint8_t ret_mac[32]);

/* One resource record of a parsed message. */
struct ch_dns_rr {
	char name[CH_DNS_NAME_MAX]; /* lower case, no trailing dot ("" = root) */
	uint16_t type, rclass;
	uint32_t ttl;
	uint8_t section;            /* 1 answer, 2 authority, 3 additional */
	size_t offset;              /* of the record in the message */
	size_t rdata_off, rdlen;
};

struct ch_dns_reply {
	uint16_t id, flags;
	int rcode;                  /* header RCODE */
	char qname[CH_DNS_NAME_MAX];
	uint16_t qtype;
	struct ch_dns_rr *rrs;
	size_t n_rrs;
	/* The TSIG record, when the last additional record is one. */
	bool has_tsig;
	size_t tsig_offset;          /* start of the TSIG record */
	int tsig_error;              /* its Error field */
	char tsig_key[CH_DNS_NAME_MAX];
};

/*
 * Parses a whole message (one question at most). Returns 0, or -EBADMSG
 * when it is malformed, -ENOMEM. Free with ch_dns_reply_done.
 */
int ch_dns_parse(const uint8_t *msg, size_t len, struct ch_dns_reply *ret);
void ch_dns_reply_done(struct ch_dns_reply *r);

/*
 * The character-strings of a TXT record joined, NUL-terminated. Returns the
 * length, -EBADMSG or -ENOBUFS (size too small).
 */
int ch_dns_txt(const uint8_t *msg, size_t len, const struct ch_dns_rr *rr, char *buf,
	       size_t size);

/*
 * Checks the TSIG record of a parsed message with key: request_mac is the
 * MAC of the request for a response (NULL to check a signed request).
 * Returns 0, -ENOKEY (unsigned, or signed with another key or
 * algorithm), -EBADMSG (the MAC does not match) or -ETIME (time signed
 * further than fudge from now; now = 0 skips this check).
 */
int ch_dns_tsig_verify(const uint8_t *msg, size_t len, const struct ch_dns_reply *r,
		       const struct ch_dns_tsig_key *key, const uint8_t *request_mac,
		       size_t request_mac_len, uint64_t now);

/*
 * Reads a TSIG key file: a BIND key clause as tsig-keygen writes it
 * (key "name" { algorithm hmac-sha256; secret "base64"; };) or a line
 * with the base64 secret alone. ret_name is NULL for the bare form.
 * Returns 0, -EINVAL (with reterr-style text in errbuf) or -ENOMEM; the
 * secret is freed by the caller with ch_dns_secret_free.
 */
int ch_dns_tsig_key_parse(const char *text, char **ret_name, uint8_t **ret_secret,
			  size_t *ret_secret_len, char *errbuf, size_t errlen);
void ch_dns_secret_free(uint8_t *secret, size_t len);

/* --- transport (src/lib/dns-client.c) ---------------------------------------------- */

struct event_base;
struct ch_dns_xfer;

/*
 * r is 0 with the reply (its ID matches the request's, QR set), or
 * -ETIMEDOUT, -ECONNREFUSED, another -errno. Valid during the call only.
 */
typedef void ch_dns_done_fn(int r, const uint8_t *reply, size_t len, void *arg);

/* Checks "ip", "ip:port", "[v6]" or "[v6]:port" (port 53 by default). Returns 0 or -EINVAL. */
int ch_dns_server_check(const char *server);

/*
 * Sends msg to server over UDP (sent again every third of the timeout),
 * and again over TCP when the answer is truncated. Returns 0 when started:
 * done() is then called exactly once from the event loop, unless the
 * exchange is cancelled first; *ret (may be NULL) is valid until then.
 */
int ch_dns_exchange(struct event_base *base, const char *server, const uint8_t *msg, size_t len,
		    int64_t timeout_ms, ch_dns_done_fn *done, void *arg, struct ch_dns_xfer **ret);
/* Stops an exchange; done() is not called. NULL is fine. */
void ch_dns_xfer_cancel(struct ch_dns_xfer *x);
