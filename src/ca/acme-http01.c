/* SPDX-License-Identifier: MIT */
/*
 * The http-01 responder: an evhttp listener per address, shared by every
 * ACME CA instance that names it, answering
 * GET /.well-known/acme-challenge/<token> with the key authorization
 * (RFC 8555 §8.3) and 404 for anything else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "acme-internal.h"
#include "certherd/log.h"
#include "certherd/macro.h"

#define HTTP01_PREFIX "/.well-known/acme-challenge/"

struct http01_token {
	char *token;
	char *keyauth;
	LIST_ENTRY(http01_token) link;
};

struct acme_http01 {
	struct event_base *base;
	char *listen;
	struct evhttp *http;
	unsigned refs;
	LIST_HEAD(, http01_token) tokens;
	LIST_ENTRY(acme_http01) link;
};

static LIST_HEAD(, acme_http01) responders = LIST_HEAD_INITIALIZER(responders);

int
acme_http01_parse_listen(const char *listen, char **ret_host, unsigned *ret_port)
{
	const char *colon, *host = listen;
	size_t hlen;
	char *end;
	unsigned long port;

	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		host = listen + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon || memchr(listen, ':', (size_t)(colon - listen)))
			return -EINVAL;
		hlen = (size_t)(colon - listen);
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port == 0 || port > 65535)
		return -EINVAL;
	*ret_host = hlen ? strndup(host, hlen) : NULL;
	if (hlen && !*ret_host)
		return -ENOMEM;
	*ret_port = (unsigned)port;
	return 0;
}

static void
http01_request_cb(struct evhttp_request *req, void *arg)
{
	struct acme_http01 *r = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *out;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, 405, NULL);
		return;
	}
	if (path && strncmp(path, HTTP01_PREFIX, strlen(HTTP01_PREFIX)) == 0) {
		const char *token = path + strlen(HTTP01_PREFIX);
		struct http01_token *t;

		LIST_FOREACH(t, &r->tokens, link)
			if (streq(t->token, token))
				break;
		if (t) {
			out = evbuffer_new();
			if (!out) {
				evhttp_send_error(req, 500, NULL);
				return;
			}
			evbuffer_add(out, t->keyauth, strlen(t->keyauth));
			evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
					  "application/octet-stream");
			evhttp_send_reply(req, 200, "OK", out);
			evbuffer_free(out);
			ch_log_debug("http-01: served token %s", token);
			return;
		}
		ch_log_debug("http-01: unknown token %s", token);
	}
	evhttp_send_error(req, 404, NULL);
}

int
acme_http01_open(struct event_base *base, const char *listen, struct acme_http01 **ret,
		 struct ch_err *reterr)
{
	_cleanup_free_ char *host = NULL;
	struct acme_http01 *r;
	unsigned port;
	int k;

	LIST_FOREACH(r, &responders, link)
		if (r->base == base && streq(r->listen, listen)) {
			r->refs++;
			*ret = r;
			return 0;
		}
	k = acme_http01_parse_listen(listen, &host, &port);
	if (k < 0)
		return ch_err_set(reterr, k, "http01_listen '%s' is not host:port", listen);
	r = calloc(1, sizeof(*r));
	if (!r)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	LIST_INIT(&r->tokens);
	r->base = base;
	r->refs = 1;
	r->listen = strdup(listen);
	r->http = evhttp_new(base);
	if (!r->listen || !r->http) {
		evhttp_free(r->http);
		free(r->listen);
		free(r);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	evhttp_set_gencb(r->http, http01_request_cb, r);
	evhttp_set_timeout(r->http, 10);
	evhttp_set_max_body_size(r->http, 4096);
	evhttp_set_allowed_methods(r->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	if (evhttp_bind_socket(r->http, host ? host : "0.0.0.0", (ev_uint16_t)port) < 0) {
		k = errno ? -errno : -EADDRINUSE;
		evhttp_free(r->http);
		free(r->listen);
		free(r);
		return ch_err_set(reterr, k, "cannot listen for http-01 on %s: %s", listen,
				  strerror(-k));
	}
	LIST_INSERT_HEAD(&responders, r, link);
	*ret = r;
	return 0;
}

void
acme_http01_close(struct acme_http01 *r)
{
	struct http01_token *t;

	if (!r || --r->refs > 0)
		return;
	LIST_REMOVE(r, link);
	evhttp_free(r->http);
	while ((t = LIST_FIRST(&r->tokens))) {
		LIST_REMOVE(t, link);
		free(t->token);
		free(t->keyauth);
		free(t);
	}
	free(r->listen);
	free(r);
}

int
acme_http01_add(struct acme_http01 *r, const char *token, const char *keyauth)
{
	struct http01_token *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->token = strdup(token);
	t->keyauth = strdup(keyauth);
	if (!t->token || !t->keyauth) {
		free(t->token);
		free(t->keyauth);
		free(t);
		return -ENOMEM;
	}
	LIST_INSERT_HEAD(&r->tokens, t, link);
	return 0;
}

void
acme_http01_remove(struct acme_http01 *r, const char *token)
{
	struct http01_token *t;

	LIST_FOREACH(t, &r->tokens, link)
		if (streq(t->token, token)) {
			LIST_REMOVE(t, link);
			free(t->token);
			free(t->keyauth);
			free(t);
			return;
		}
}
