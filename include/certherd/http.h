/* SPDX-License-Identifier: MIT */
/*
 * An asynchronous HTTP(S) client: libcurl's multi interface driven by the
 * libevent loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION), so no call ever
 * blocks the loop. A request completes with one response object handed to
 * its callback from the loop, never from inside ch_http_start().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct ch_http;
struct ch_http_call;

#define CH_HTTP_MAX_BODY (1024 * 1024) /* larger responses fail with -EFBIG */

struct ch_http_request {
	const char *method;       /* "GET", "HEAD", "POST", "PUT", "PATCH" or "MAIL" (below) */
	const char *url;
	const char *body;         /* POST/PUT/PATCH body; may be NULL */
	size_t body_len;
	const char *content_type; /* of the body; may be NULL */
	const char *accept;       /* Accept header; may be NULL */
	long timeout_ms;          /* whole request; 0 = 30 s */
	/*
	 * More "Name: value" header lines, NULL-terminated; may be NULL.
	 * Copied, and wiped when the request ends (they may carry tokens).
	 */
	const char *const *headers;
	/*
	 * MAIL: url is smtp://host[:port] (or smtps://), body the whole
	 * message; resp->status is the server's last reply code (250).
	 */
	const char *mail_from;
	const char *const *mail_rcpt; /* NULL-terminated */
};

/* TLS material given as PEM text rather than files (kubeconfig "-data"). */
struct ch_http_tls {
	const char *ca_pem;   /* trust anchors instead of cafile; NULL: keep cafile */
	const char *cert_pem; /* client certificate (chain); NULL: none */
	const char *key_pem;  /* its private key: secret, wiped when the client is freed */
};

struct ch_http_response {
	int error;         /* 0, or -errno when no HTTP response arrived */
	char errmsg[256];  /* what failed, when error < 0 */
	long status;       /* HTTP status code */
	char *body;        /* NUL-terminated (may contain NULs before body_len) */
	size_t body_len;
	char **headers;    /* "name: value" lines of the last response, NULL-terminated */
};

/*
 * Called once per request from the event loop. resp is valid only during
 * the call. The call object is gone once this runs.
 */
typedef void ch_http_done_fn(const struct ch_http_response *resp, void *arg);

/*
 * A client bound to base. cafile (may be NULL: the system bundle) is the
 * PEM bundle that servers' certificates must chain to.
 */
int ch_http_new(struct event_base *base, const char *cafile, struct ch_http **ret);
/*
 * Sets the PEM trust anchors and client certificate used by the requests
 * started after it (copied). Returns 0, -EINVAL (a key without a
 * certificate or the reverse) or -ENOMEM.
 */
int ch_http_set_tls(struct ch_http *h, const struct ch_http_tls *tls);
/* Cancels every request still running (their callbacks are not called). */
struct ch_http *ch_http_free(struct ch_http *h);

/*
 * Starts a request. Returns 0 and (if ret_call is not NULL) the call
 * handle, which stays valid until done() runs or ch_http_cancel().
 */
int ch_http_start(struct ch_http *h, const struct ch_http_request *req, ch_http_done_fn *done,
		  void *arg, struct ch_http_call **ret_call);
/* Stops a running request; done() is not called. */
void ch_http_cancel(struct ch_http_call *c);

/* The value of the idx-th header called name (case-insensitive), or NULL. */
const char *ch_http_header(const struct ch_http_response *resp, const char *name, size_t idx);
