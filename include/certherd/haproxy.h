/* SPDX-License-Identifier: MIT */
/*
 * HAProxy's runtime API (its stats socket at "level admin") as the
 * haproxy target speaks it: socket addresses, the certificate commands,
 * and strict parsing of their replies as HAProxy 2.6 words them. A reply
 * that is not exactly one of the expected ones is a failure. No I/O.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "certherd/err.h"

enum ch_haproxy_cmd {
	CH_HAPROXY_SET_CERT,      /* set ssl cert <path> <<\n<payload>\n */
	CH_HAPROXY_COMMIT_CERT,   /* commit ssl cert <path> */
	CH_HAPROXY_ABORT_CERT,    /* abort ssl cert <path> */
	CH_HAPROXY_NEW_CERT,      /* new ssl cert <path> */
	CH_HAPROXY_DEL_CERT,      /* del ssl cert <path> */
	CH_HAPROXY_SHOW_CERT,     /* show ssl cert <path> */
	CH_HAPROXY_ADD_CRT_LIST,  /* add ssl crt-list <list> <path> */
	_CH_HAPROXY_CMD_MAX,
	_CH_HAPROXY_CMD_INVALID = -22,
};

enum ch_haproxy_reply {
	CH_HAPROXY_OK,                /* done as asked (new: store created) */
	CH_HAPROXY_EXISTS,            /* new: the certificate is already known */
	CH_HAPROXY_UNKNOWN_CERT,      /* set: no such certificate in HAProxy */
	CH_HAPROXY_NO_TRANSACTION,    /* commit/abort: none in progress */
	CH_HAPROXY_OTHER_TRANSACTION, /* set/abort: one for another path is in progress */
	CH_HAPROXY_USED,              /* show cert: a bind or crt-list uses it */
	CH_HAPROXY_UNUSED,            /* show cert: known but used nowhere (or empty) */
	CH_HAPROXY_FAILED,            /* anything else */
	_CH_HAPROXY_REPLY_MAX,
	_CH_HAPROXY_REPLY_INVALID = -22,
};

/* "set ssl cert" and so on, without arguments. */
const char *ch_haproxy_cmd_to_string(enum ch_haproxy_cmd c);

/*
 * Parses a runtime API address: an absolute unix socket path, optionally
 * prefixed "unix@" (HAProxy's spelling) or "unix:", or a numeric
 * "ipv4:port" / "[ipv6]:port", optionally prefixed "ipv4@"/"ipv6@"/"tcp:".
 * ret and ret_len may be NULL (validation only).
 */
int ch_haproxy_parse_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len,
			     struct ch_err *reterr);

/*
 * True when path can go on a command line: printable, no space,
 * semicolon or backslash (HAProxy splits and unescapes on those).
 */
bool ch_haproxy_arg_ok(const char *path);

/*
 * Formats cmd for path (and list) as one non-interactive request. For
 * SET the payload follows: its empty lines are dropped, since an empty
 * line ends the payload. The buffer holds the key: the caller wipes it
 * with explicit_bzero() before freeing.
 */
int ch_haproxy_format(enum ch_haproxy_cmd cmd, const char *path, const char *list,
		      const char *payload, size_t payload_len, char **ret, size_t *ret_len);

/* Classifies HAProxy's reply to cmd about path (and list). */
enum ch_haproxy_reply ch_haproxy_parse_reply(enum ch_haproxy_cmd cmd, const char *path,
					     const char *list, const char *reply);

/*
 * The path a "Transaction updated for certificate <path>!" reply names.
 * HAProxy 2.6 answers a `set ssl cert` for one path while a transaction
 * for another is open by putting the payload into that other transaction
 * and naming it: that transaction then holds the wrong certificate.
 */
int ch_haproxy_reply_transaction_path(const char *reply, char **ret);

/*
 * One line for messages: lines joined by "; ", control characters
 * replaced, anything from a PEM armour line on dropped, at most len - 1
 * bytes. Returns buf.
 */
const char *ch_haproxy_reply_line(const char *reply, char *buf, size_t len);
