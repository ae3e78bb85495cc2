/* SPDX-License-Identifier: MIT */
/*
 * The HTTP client: one CURLM per client, its sockets and its timer turned
 * into libevent events (the hiperfifo pattern), and one response object
 * per request. Completions are dispatched after curl_multi_socket_action
 * returns, from the loop; a callback may start or cancel requests and may
 * even free the client.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "ch-config.h"
#include "certherd/http.h"
#include "certherd/log.h"
#include "certherd/macro.h"

struct http_sock {
	struct ch_http *h;
	curl_socket_t fd;
	struct event *ev;
	LIST_ENTRY(http_sock) link;
};

struct ch_http_call {
	struct ch_http *h;
	CURL *easy;
	struct curl_slist *req_headers;
	struct curl_slist *mail_rcpt;
	char *req_body;
	size_t req_body_len;
	size_t req_off; /* MAIL upload */
	ch_http_done_fn *done;
	void *arg;
	char *body;
	size_t body_len, body_cap;
	bool too_big;
	char **headers;
	size_t n_headers, cap_headers;
	char errbuf[CURL_ERROR_SIZE];
	LIST_ENTRY(ch_http_call) link;
};

struct ch_http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	char *cafile;
	char *ca_pem, *cert_pem, *key_pem; /* ch_http_set_tls(); key_pem is secret */
	unsigned busy;  /* dispatching completions */
	bool dying;     /* freed during a dispatch: destroy when it ends */
	LIST_HEAD(, ch_http_call) calls;
	LIST_HEAD(, http_sock) socks;
};

static void http_dispatch(struct ch_http *h);

static void
http_sock_free(struct http_sock *s)
{
	if (!s)
		return;
	LIST_REMOVE(s, link);
	if (s->ev)
		event_free(s->ev);
	free(s);
}

static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ch_http *h = arg;
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, fd, action, &running);
	http_dispatch(h);
}

static void
http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ch_http *h = arg;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_dispatch(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl wants. */
static int
http_socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct ch_http *h = userp;
	struct http_sock *s = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(h->multi, fd, NULL);
			http_sock_free(s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->h = h;
		s->fd = fd;
		LIST_INSERT_HEAD(&h->socks, s, link);
		curl_multi_assign(h->multi, fd, s);
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	       ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (s->ev) {
		event_del(s->ev);
		event_assign(s->ev, h->base, fd, kind, http_event_cb, h);
	} else {
		s->ev = event_new(h->base, fd, kind, http_event_cb, h);
		if (!s->ev)
			return -1;
	}
	event_add(s->ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one libevent timer stands for curl's. */
static int
http_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct ch_http *h = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	return 0;
}

static size_t
http_write_fn(char *data, size_t size, size_t n, void *userp)
{
	struct ch_http_call *c = userp;
	size_t len = size * n;

	if (c->body_len + len > CH_HTTP_MAX_BODY) {
		c->too_big = true;
		return 0;
	}
	if (c->body_len + len + 1 > c->body_cap) {
		size_t cap = c->body_cap ? c->body_cap : 4096;
		char *b;

		while (cap < c->body_len + len + 1)
			cap *= 2;
		/* Not realloc: the old buffer is wiped (a body may hold a key). */
		b = malloc(cap);
		if (!b)
			return 0;
		if (c->body) {
			memcpy(b, c->body, c->body_len);
			explicit_bzero(c->body, c->body_len);
			free(c->body);
		}
		c->body = b;
		c->body_cap = cap;
	}
	memcpy(c->body + c->body_len, data, len);
	c->body_len += len;
	c->body[c->body_len] = '\0';
	return len;
}

/* CURLOPT_READFUNCTION for MAIL: the message from req_body. */
static size_t
http_read_fn(char *buf, size_t size, size_t n, void *userp)
{
	struct ch_http_call *c = userp;
	size_t len = size * n;

	if (len > c->req_body_len - c->req_off)
		len = c->req_body_len - c->req_off;
	memcpy(buf, c->req_body + c->req_off, len);
	c->req_off += len;
	return len;
}

static void
http_headers_clear(struct ch_http_call *c)
{
	for (size_t i = 0; i < c->n_headers; i++)
		free(c->headers[i]);
	c->n_headers = 0;
	if (c->headers)
		c->headers[0] = NULL;
}

/* Keeps the header lines of the last response only. */
static size_t
http_header_fn(char *data, size_t size, size_t n, void *userp)
{
	struct ch_http_call *c = userp;
	size_t len = size * n, l = len;
	char *line;

	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		http_headers_clear(c);
		return len;
	}
	while (l > 0 && (data[l - 1] == '\n' || data[l - 1] == '\r'))
		l--;
	if (l == 0 || !memchr(data, ':', l))
		return len;
	if (c->n_headers + 2 > c->cap_headers) {
		size_t cap = c->cap_headers ? c->cap_headers * 2 : 16;
		char **v = realloc(c->headers, cap * sizeof(*v));

		if (!v)
			return 0;
		c->headers = v;
		c->cap_headers = cap;
	}
	line = strndup(data, l);
	if (!line)
		return 0;
	c->headers[c->n_headers++] = line;
	c->headers[c->n_headers] = NULL;
	return len;
}

/* Frees a call already taken off the client's list. */
static void
http_call_destroy(struct ch_http_call *c)
{
	if (c->easy) {
		curl_multi_remove_handle(c->h->multi, c->easy);
		curl_easy_cleanup(c->easy);
	}
	/* Header lines may carry credentials (Authorization). */
	for (struct curl_slist *l = c->req_headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(c->req_headers);
	/* Bodies may carry key material (a Kubernetes Secret, both ways). */
	if (c->req_body)
		explicit_bzero(c->req_body, c->req_body_len);
	curl_slist_free_all(c->mail_rcpt);
	free(c->req_body);
	if (c->body)
		explicit_bzero(c->body, c->body_len);
	free(c->body);
	http_headers_clear(c);
	free(c->headers);
	free(c);
}

static void
http_call_free(struct ch_http_call *c)
{
	if (!c)
		return;
	LIST_REMOVE(c, link);
	http_call_destroy(c);
}

static int
http_map_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

/*
 * What went wrong, in the words an operator reads in `certherd status`;
 * curl's own text follows in parentheses.
 */
static const char *
http_curl_error_kind(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return "timed out";
	case CURLE_COULDNT_CONNECT:
		return "connection refused";
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return "name not resolved";
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return "connection closed";
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_HTTP2:
	case CURLE_BAD_CONTENT_ENCODING:
		return "malformed response";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		return "TLS error";
	case CURLE_OUT_OF_MEMORY:
		return "out of memory";
	default:
		return "request failed";
	}
}

static void
http_complete(struct ch_http_call *c, CURLcode rc)
{
	struct ch_http_response resp = { 0 };

	if (rc == CURLE_OK) {
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp.status);
	} else if (c->too_big) {
		resp.error = -EFBIG;
		snprintf(resp.errmsg, sizeof(resp.errmsg), "response larger than %d bytes",
			 CH_HTTP_MAX_BODY);
	} else {
		resp.error = http_map_curl_error(rc);
		snprintf(resp.errmsg, sizeof(resp.errmsg), "%s (%.200s)", http_curl_error_kind(rc),
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	}
	resp.body = c->body ? c->body : (char *)"";
	resp.body_len = c->body_len;
	resp.headers = c->headers;
	if (!resp.headers) {
		static char *none[] = { NULL };

		resp.headers = none;
	}
	c->done(&resp, c->arg);
}

/* Hands finished transfers to their callbacks. */
static void
http_dispatch(struct ch_http *h)
{
	CURLMsg *m;
	int left;

	h->busy++;
	while (!h->dying && (m = curl_multi_info_read(h->multi, &left))) {
		struct ch_http_call *c = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		if (!c)
			continue;
		CURLcode rc = m->data.result;

		/* Detach first: the callback may start, cancel or free anything. */
		LIST_REMOVE(c, link);
		curl_multi_remove_handle(h->multi, c->easy);
		http_complete(c, rc);
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
		http_call_destroy(c);
	}
	if (--h->busy == 0 && h->dying)
		ch_http_free(h);
}

int
ch_http_new(struct event_base *base, const char *cafile, struct ch_http **ret)
{
	static bool global_done;
	struct ch_http *h;

	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -ENOMEM;
		global_done = true;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->base = base;
	LIST_INIT(&h->calls);
	LIST_INIT(&h->socks);
	if (cafile && !(h->cafile = strdup(cafile)))
		goto oom;
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, http_timer_cb, h);
	if (!h->multi || !h->timer)
		goto oom;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_fn);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_fn);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
	*ret = h;
	return 0;
oom:
	ch_http_free(h);
	return -ENOMEM;
}

struct ch_http *
ch_http_free(struct ch_http *h)
{
	struct ch_http_call *c;
	struct http_sock *s;

	if (!h)
		return NULL;
	while ((c = LIST_FIRST(&h->calls)))
		http_call_free(c);
	if (h->busy) {
		/* Inside a callback of ours: finish when the dispatch loop ends. */
		h->dying = true;
		return NULL;
	}
	if (h->multi)
		curl_multi_cleanup(h->multi);
	while ((s = LIST_FIRST(&h->socks)))
		http_sock_free(s);
	if (h->timer)
		event_free(h->timer);
	free(h->cafile);
	free(h->ca_pem);
	free(h->cert_pem);
	if (h->key_pem)
		explicit_bzero(h->key_pem, strlen(h->key_pem));
	free(h->key_pem);
	free(h);
	return NULL;
}

int
ch_http_set_tls(struct ch_http *h, const struct ch_http_tls *tls)
{
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (!tls->cert_pem != !tls->key_pem)
		return -EINVAL;
	if ((tls->ca_pem && !(ca = strdup(tls->ca_pem))) ||
	    (tls->cert_pem && !(cert = strdup(tls->cert_pem))) ||
	    (tls->key_pem && !(key = strdup(tls->key_pem)))) {
		free(ca);
		free(cert);
		free(key);
		return -ENOMEM;
	}
	if (ca) {
		free(h->ca_pem);
		h->ca_pem = ca;
	}
	free(h->cert_pem);
	h->cert_pem = cert;
	if (h->key_pem)
		explicit_bzero(h->key_pem, strlen(h->key_pem));
	free(h->key_pem);
	h->key_pem = key;
	return 0;
}

/* Points curl at PEM text the client owns (no copy of the key in curl). */
static void
http_set_blob(CURL *easy, CURLoption opt, char *pem)
{
	struct curl_blob b = { .data = pem, .len = strlen(pem), .flags = CURL_BLOB_NOCOPY };

	curl_easy_setopt(easy, opt, &b);
}

int
ch_http_start(struct ch_http *h, const struct ch_http_request *req, ch_http_done_fn *done,
	      void *arg, struct ch_http_call **ret_call)
{
	struct ch_http_call *c;
	char hdr[256];

	if (h->dying)
		return -ESHUTDOWN;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h = h;
	c->done = done;
	c->arg = arg;
	LIST_INSERT_HEAD(&h->calls, c, link);
	c->easy = curl_easy_init();
	if (!c->easy)
		goto oom;
	curl_easy_setopt(c->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_USERAGENT, "certherd/" CH_VERSION);
	curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, http_write_fn);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, http_header_fn);
	curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
	if (h->ca_pem)
		http_set_blob(c->easy, CURLOPT_CAINFO_BLOB, h->ca_pem);
	else if (h->cafile)
		curl_easy_setopt(c->easy, CURLOPT_CAINFO, h->cafile);
	if (h->cert_pem) {
		curl_easy_setopt(c->easy, CURLOPT_SSLCERTTYPE, "PEM");
		http_set_blob(c->easy, CURLOPT_SSLCERT_BLOB, h->cert_pem);
		curl_easy_setopt(c->easy, CURLOPT_SSLKEYTYPE, "PEM");
		http_set_blob(c->easy, CURLOPT_SSLKEY_BLOB, h->key_pem);
	}
	if (streq(req->method, "HEAD")) {
		curl_easy_setopt(c->easy, CURLOPT_NOBODY, 1L);
	} else if (streq(req->method, "POST") || streq(req->method, "PUT") ||
		   streq(req->method, "PATCH")) {
		c->req_body = malloc(req->body_len + 1);
		if (!c->req_body)
			goto oom;
		if (req->body_len)
			memcpy(c->req_body, req->body, req->body_len);
		c->req_body[req->body_len] = '\0';
		c->req_body_len = req->body_len;
		curl_easy_setopt(c->easy, CURLOPT_POST, 1L);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->req_body);
		curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		if (!streq(req->method, "POST"))
			curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST, req->method);
		/* No "Expect: 100-continue" round trip. */
		c->req_headers = curl_slist_append(c->req_headers, "Expect:");
	} else if (streq(req->method, "MAIL") && req->mail_from && req->mail_rcpt) {
		c->req_body = malloc(req->body_len + 1);
		if (!c->req_body)
			goto oom;
		if (req->body_len)
			memcpy(c->req_body, req->body, req->body_len);
		c->req_body_len = req->body_len;
		for (const char *const *r = req->mail_rcpt; *r; r++)
			c->mail_rcpt = curl_slist_append(c->mail_rcpt, *r);
		curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
		curl_easy_setopt(c->easy, CURLOPT_MAIL_FROM, req->mail_from);
		curl_easy_setopt(c->easy, CURLOPT_MAIL_RCPT, c->mail_rcpt);
		curl_easy_setopt(c->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c->easy, CURLOPT_READFUNCTION, http_read_fn);
		curl_easy_setopt(c->easy, CURLOPT_READDATA, c);
		curl_easy_setopt(c->easy, CURLOPT_INFILESIZE, (long)req->body_len);
	} else if (!streq(req->method, "GET")) {
		http_call_free(c);
		return -EINVAL;
	}
	if (req->content_type) {
		snprintf(hdr, sizeof(hdr), "Content-Type: %s", req->content_type);
		c->req_headers = curl_slist_append(c->req_headers, hdr);
	}
	if (req->accept) {
		snprintf(hdr, sizeof(hdr), "Accept: %s", req->accept);
		c->req_headers = curl_slist_append(c->req_headers, hdr);
	}
	for (const char *const *l = req->headers; l && *l; l++) {
		struct curl_slist *n = curl_slist_append(c->req_headers, *l);

		if (!n)
			goto oom;
		c->req_headers = n;
	}
	if (c->req_headers)
		curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->req_headers);
	if (curl_multi_add_handle(h->multi, c->easy) != CURLM_OK)
		goto oom;
	if (ret_call)
		*ret_call = c;
	return 0;
oom:
	/* Not added to the multi handle: remove_handle in free is harmless. */
	http_call_free(c);
	return -ENOMEM;
}

void
ch_http_cancel(struct ch_http_call *c)
{
	http_call_free(c);
}

const char *
ch_http_header(const struct ch_http_response *resp, const char *name, size_t idx)
{
	size_t len = strlen(name);

	for (char **l = resp->headers; l && *l; l++) {
		if (strncasecmp(*l, name, len) != 0 || (*l)[len] != ':')
			continue;
		if (idx-- > 0)
			continue;
		const char *v = *l + len + 1;

		while (*v == ' ' || *v == '\t')
			v++;
		return v;
	}
	return NULL;
}
