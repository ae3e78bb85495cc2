/* SPDX-License-Identifier: MIT */
/*
 * Endpoint verification: a real TLS handshake to host:port with an SNI
 * name, reporting what the endpoint serves. Asynchronous on the event
 * loop (non-blocking connect and handshake with a deadline); done() is
 * always called later from the loop, never from inside ch_verify_start().
 * The probe does not judge the certificate against our inventory: the
 * daemon compares the served leaf with its newest issuance.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>

struct event_base;

enum ch_verify_result {
	CH_VERIFY_SERVED,          /* handshake done, leaf below */
	CH_VERIFY_UNREACHABLE,     /* DNS, connect refused or timed out */
	CH_VERIFY_HANDSHAKE_ERROR, /* connected, TLS failed */
	_CH_VERIFY_RESULT_MAX,
	_CH_VERIFY_RESULT_INVALID = -22,
};
const char *ch_verify_result_to_string(enum ch_verify_result r);

struct ch_verify_outcome {
	enum ch_verify_result result;
	X509 *leaf;             /* served leaf on CH_VERIFY_SERVED (owned by the outcome) */
	char serial[80];        /* lowercase hex, as ch_cert_info_get() */
	char fingerprint[65];   /* SHA-256 of the DER, lowercase hex */
	int64_t not_after;
	bool trusted;           /* chain verified against trust_file, when one was given */
	char message[512];      /* what went wrong, or details */
	int64_t elapsed_usec;
};

typedef void ch_verify_done_fn(const struct ch_verify_outcome *o, void *arg);

struct ch_verify_request {
	const char *host;       /* name or address literal */
	uint16_t port;
	const char *sni;        /* NULL = none */
	const char *trust_file; /* PEM anchors to check the chain against; NULL = skip */
	int64_t timeout_usec;   /* whole probe: connect + handshake */
};

/* Starts a probe. Returns 0 (done() will be called) or -errno. */
int ch_verify_start(struct event_base *base, const struct ch_verify_request *req,
		    ch_verify_done_fn *done, void *arg);

/* Parses "host:port", "[v6]:port"; returns 0 or -EINVAL. ret_host is allocated. */
int ch_verify_parse_endpoint(const char *s, char **ret_host, uint16_t *ret_port);
