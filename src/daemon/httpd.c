/* SPDX-License-Identifier: MIT */
/*
 * What the daemon's own HTTP listeners (/metrics and /healthz, /crl/)
 * share: binding an evhttp with the same limits, and plain-text replies.
 */
#include <errno.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "daemon.h"

#define HTTPD_TIMEOUT 10 /* seconds per request */

struct evhttp *
httpd_listen(struct daemon *d, const char *host, uint16_t port,
	     void (*cb)(struct evhttp_request *req, void *arg), void *arg)
{
	struct evhttp *http = evhttp_new(d->base);
	int saved;

	if (!http)
		return NULL;
	/* Every method reaches the callback, which answers 405 itself. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						 EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(http, HTTPD_TIMEOUT);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 4096);
	evhttp_set_gencb(http, cb, arg);
	if (!evhttp_bind_socket_with_handle(http, host, port)) {
		saved = errno;
		evhttp_free(http);
		errno = saved;
		return NULL;
	}
	return http;
}

void
httpd_reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; charset=utf-8");
	evbuffer_add_printf(out, "%s\n", body);
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}
