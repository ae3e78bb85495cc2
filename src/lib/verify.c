/* SPDX-License-Identifier: MIT */
/*
 * Endpoint verification by a TLS handshake (see verify.h).
 *
 * One probe: resolve (evdns for names, nothing for address literals),
 * non-blocking connect to each address in turn, then SSL_connect driven
 * by read/write readiness, all under one deadline. Verification is off
 * during the handshake so that any certificate, even an expired or
 * foreign one, is captured; the chain is checked afterwards against the
 * optional trust file. The result is delivered from a deferred event so
 * that done() never runs inside ch_verify_start().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/util.h"
#include "certherd/verify.h"

struct probe {
	struct event_base *base;
	ch_verify_done_fn *done;
	void *arg;

	char *host;
	char *sni;
	char *trust_file;
	uint16_t port;
	int64_t started;

	struct event *deadline;
	struct event *finish;
	struct event *io;
	struct evdns_base *dns;
	struct evdns_getaddrinfo_request *dns_req;
	struct evutil_addrinfo *ai_list; /* from evdns */
	struct addrinfo *ai_num;         /* from getaddrinfo (numeric host) */
	struct evutil_addrinfo *ai_next;
	char last_err[256];

	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	bool finished;
	struct ch_verify_outcome out;
};

static const char *const result_names[_CH_VERIFY_RESULT_MAX] = {
	[CH_VERIFY_SERVED] = "served",
	[CH_VERIFY_UNREACHABLE] = "unreachable",
	[CH_VERIFY_HANDSHAKE_ERROR] = "handshake-error",
};

const char *
ch_verify_result_to_string(enum ch_verify_result r)
{
	if (r < 0 || r >= _CH_VERIFY_RESULT_MAX)
		return NULL;
	return result_names[r];
}

int
ch_verify_parse_endpoint(const char *s, char **ret_host, uint16_t *ret_port)
{
	const char *colon, *hs, *he;
	struct in6_addr a6;
	char *end, *host;
	unsigned long port;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		he = strchr(s, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* none, or an IPv6 literal without brackets */
		hs = s;
		he = colon;
	}
	if (he == hs)
		return -EINVAL;
	for (const char *p = hs; p < he; p++)
		if (*p <= ' ' || *p == '/' || *p == '[' || *p == ']' || (*p == ':' && s[0] != '['))
			return -EINVAL;
	if (!colon[1] || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -EINVAL;
	host = strndup(hs, (size_t)(he - hs));
	if (!host)
		return -ENOMEM;
	if (s[0] == '[' && inet_pton(AF_INET6, host, &a6) != 1) {
		free(host);
		return -EINVAL;
	}
	*ret_host = host;
	*ret_port = (uint16_t)port;
	return 0;
}

static void
probe_free(struct probe *p)
{
	if (p->io)
		event_free(p->io);
	if (p->deadline)
		event_free(p->deadline);
	if (p->finish)
		event_free(p->finish);
	if (p->ssl)
		SSL_free(p->ssl);
	if (p->ctx)
		SSL_CTX_free(p->ctx);
	if (p->fd >= 0)
		close(p->fd);
	if (p->ai_list)
		evutil_freeaddrinfo(p->ai_list);
	if (p->ai_num)
		freeaddrinfo(p->ai_num);
	if (p->dns)
		evdns_base_free(p->dns, 0);
	if (p->out.leaf)
		X509_free(p->out.leaf);
	free(p->host);
	free(p->sni);
	free(p->trust_file);
	free(p);
}

static void
probe_finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	(void)fd;
	(void)what;
	p->out.elapsed_usec = ch_mono_usec() - p->started;
	p->done(&p->out, p->arg);
	probe_free(p);
}

/* Records the result, stops all I/O and delivers from the loop. */
_printf_(3, 4) static void
probe_finish(struct probe *p, enum ch_verify_result r, const char *fmt, ...)
{
	va_list ap;

	if (p->finished)
		return;
	p->finished = true;
	p->out.result = r;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(p->out.message, sizeof(p->out.message), fmt, ap);
		va_end(ap);
	}
	if (p->io)
		event_del(p->io);
	event_del(p->deadline);
	if (p->dns_req) {
		struct evdns_getaddrinfo_request *req = p->dns_req;

		p->dns_req = NULL;
		evdns_getaddrinfo_cancel(req); /* calls back with EVUTIL_EAI_CANCEL */
	}
	if (p->ssl && r == CH_VERIFY_SERVED)
		SSL_shutdown(p->ssl); /* one close_notify, best effort */
	if (p->fd >= 0) {
		close(p->fd);
		p->fd = -1;
	}
	event_active(p->finish, EV_TIMEOUT, 1);
}

static void
probe_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	(void)fd;
	(void)what;
	if (p->ssl)
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR, "TLS handshake with %s:%u timed out",
			     p->host, p->port);
	else
		probe_finish(p, CH_VERIFY_UNREACHABLE, "%s:%u did not answer in time%s%s",
			     p->host, p->port, p->last_err[0] ? "; " : "", p->last_err);
}

/* The served certificate and, when asked, its chain against the anchors. */
static void
probe_served(struct probe *p)
{
	struct ch_cert_info info = { 0 };
	STACK_OF(X509) *chain;
	X509_STORE *store = NULL;
	X509_STORE_CTX *vctx = NULL;
	X509 *leaf;

	leaf = SSL_get1_peer_certificate(p->ssl);
	if (!leaf) {
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR, "%s:%u sent no certificate", p->host,
			     p->port);
		return;
	}
	p->out.leaf = leaf;
	if (ch_cert_info_get(leaf, &info) < 0) {
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR,
			     "%s:%u sent a certificate that cannot be read", p->host, p->port);
		return;
	}
	snprintf(p->out.serial, sizeof(p->out.serial), "%s", info.serial);
	snprintf(p->out.fingerprint, sizeof(p->out.fingerprint), "%s", info.fingerprint);
	p->out.not_after = info.not_after;
	ch_cert_info_done(&info);

	if (!p->trust_file) {
		probe_finish(p, CH_VERIFY_SERVED, "TLS %s", SSL_get_version(p->ssl));
		return;
	}
	chain = SSL_get_peer_cert_chain(p->ssl); /* includes the leaf on the client side */
	store = X509_STORE_new();
	vctx = X509_STORE_CTX_new();
	if (!store || !vctx || X509_STORE_load_file(store, p->trust_file) != 1) {
		unsigned long e = ERR_get_error();

		snprintf(p->out.message, sizeof(p->out.message), "cannot load trust anchors %s: %s",
			 p->trust_file, e ? ERR_reason_error_string(e) : "out of memory");
	} else if (X509_STORE_CTX_init(vctx, store, leaf, chain) == 1) {
		X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(vctx);

		X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
		if (p->sni)
			X509_VERIFY_PARAM_set1_host(vp, p->sni, 0);
		if (X509_verify_cert(vctx) == 1) {
			p->out.trusted = true;
			snprintf(p->out.message, sizeof(p->out.message), "TLS %s, chain verified",
				 SSL_get_version(p->ssl));
		} else
			snprintf(p->out.message, sizeof(p->out.message), "%s",
				 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
	}
	ERR_clear_error();
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	probe_finish(p, CH_VERIFY_SERVED, NULL);
}

static void probe_io_cb(evutil_socket_t fd, short what, void *arg);

static void
probe_wait(struct probe *p, short what)
{
	if (p->io)
		event_free(p->io);
	p->io = event_new(p->base, p->fd, what, probe_io_cb, p);
	if (!p->io || event_add(p->io, NULL) < 0)
		probe_finish(p, CH_VERIFY_UNREACHABLE, "cannot watch the socket: out of memory");
}

static void
probe_handshake(struct probe *p)
{
	int r, e;

	ERR_clear_error();
	r = SSL_connect(p->ssl);
	if (r == 1) {
		probe_served(p);
		return;
	}
	e = SSL_get_error(p->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		probe_wait(p, EV_READ);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		probe_wait(p, EV_WRITE);
		return;
	}
	if (e == SSL_ERROR_SSL) {
		unsigned long err = ERR_peek_last_error();
		char buf[256];

		ERR_error_string_n(err, buf, sizeof(buf));
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR, "TLS handshake with %s:%u failed: %s",
			     p->host, p->port, err ? ERR_reason_error_string(err) : buf);
	} else if (e == SSL_ERROR_SYSCALL && errno)
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR, "TLS handshake with %s:%u failed: %s",
			     p->host, p->port, strerror(errno));
	else
		probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR,
			     "%s:%u closed the connection during the TLS handshake", p->host,
			     p->port);
	ERR_clear_error();
}

static int
probe_tls_begin(struct probe *p)
{
	struct in6_addr a;
	bool literal;

	p->ctx = SSL_CTX_new(TLS_client_method());
	if (!p->ctx)
		return -ENOMEM;
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
	p->ssl = SSL_new(p->ctx);
	if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1)
		return -ENOMEM;
	literal = p->sni && (inet_pton(AF_INET, p->sni, &a) == 1 ||
			     inet_pton(AF_INET6, p->sni, &a) == 1);
	if (p->sni && !literal && SSL_set_tlsext_host_name(p->ssl, p->sni) != 1)
		return -EINVAL;
	return 0;
}

static void probe_connect_next(struct probe *p);

static void
probe_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	(void)what;
	if (!p->ssl) {
		/* Connect finished, one way or the other. */
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			snprintf(p->last_err, sizeof(p->last_err), "connect to %s:%u: %s", p->host,
				 p->port, strerror(err));
			probe_connect_next(p);
			return;
		}
		if (probe_tls_begin(p) < 0) {
			probe_finish(p, CH_VERIFY_HANDSHAKE_ERROR, "cannot set up TLS for %s",
				     p->sni ? p->sni : p->host);
			return;
		}
	}
	probe_handshake(p);
}

/* Tries the next resolved address; unreachable when none is left. */
static void
probe_connect_next(struct probe *p)
{
	if (p->io) {
		event_free(p->io);
		p->io = NULL;
	}
	if (p->fd >= 0) {
		close(p->fd);
		p->fd = -1;
	}
	for (; p->ai_next; p->ai_next = p->ai_next->ai_next) {
		struct evutil_addrinfo *ai = p->ai_next;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (p->fd < 0) {
			snprintf(p->last_err, sizeof(p->last_err), "socket: %s", strerror(errno));
			continue;
		}
		if (connect(p->fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			p->ai_next = ai->ai_next;
			probe_wait(p, EV_WRITE);
			return;
		}
		snprintf(p->last_err, sizeof(p->last_err), "connect to %s:%u: %s", p->host, p->port,
			 strerror(errno));
		close(p->fd);
		p->fd = -1;
	}
	probe_finish(p, CH_VERIFY_UNREACHABLE, "%s",
		     p->last_err[0] ? p->last_err : "no address to connect to");
}

static void
probe_resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct probe *p = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return; /* finished already; the probe is freed by its finish event */
	p->dns_req = NULL;
	if (result != 0) {
		if (res)
			evutil_freeaddrinfo(res);
		probe_finish(p, CH_VERIFY_UNREACHABLE, "cannot resolve %s: %s", p->host,
			     evutil_gai_strerror(result));
		return;
	}
	p->ai_list = res;
	p->ai_next = res;
	probe_connect_next(p);
}

/* Address literals need no resolver; started from the loop like the rest. */
static void
probe_numeric_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	(void)fd;
	(void)what;
	p->ai_next = (struct evutil_addrinfo *)p->ai_num;
	probe_connect_next(p);
}

int
ch_verify_start(struct event_base *base, const struct ch_verify_request *req,
		ch_verify_done_fn *done, void *arg)
{
	struct evutil_addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
					 .ai_flags = EVUTIL_AI_ADDRCONFIG };
	struct addrinfo nhints = { .ai_socktype = SOCK_STREAM,
				   .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct timeval tv;
	struct probe *p;
	char port[8];

	if (!base || !req || !req->host || !*req->host || req->port == 0 || !done ||
	    req->timeout_usec <= 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = -1;
	p->base = base;
	p->done = done;
	p->arg = arg;
	p->port = req->port;
	p->started = ch_mono_usec();
	p->host = strdup(req->host);
	p->sni = req->sni ? strdup(req->sni) : NULL;
	p->trust_file = req->trust_file ? strdup(req->trust_file) : NULL;
	p->deadline = evtimer_new(base, probe_deadline_cb, p);
	p->finish = evtimer_new(base, probe_finish_cb, p);
	if (!p->host || (req->sni && !p->sni) || (req->trust_file && !p->trust_file) ||
	    !p->deadline || !p->finish)
		goto oom;
	tv.tv_sec = req->timeout_usec / CH_USEC_PER_SEC;
	tv.tv_usec = req->timeout_usec % CH_USEC_PER_SEC;
	if (event_add(p->deadline, &tv) < 0)
		goto oom;

	snprintf(port, sizeof(port), "%u", req->port);
	if (getaddrinfo(p->host, port, &nhints, &p->ai_num) == 0) {
		p->io = evtimer_new(base, probe_numeric_cb, p);
		if (!p->io)
			goto oom;
		event_active(p->io, EV_TIMEOUT, 1);
		return 0;
	}
	p->ai_num = NULL;
	p->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
					      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!p->dns) {
		/* No resolv.conf: /etc/hosts alone still answers "localhost". */
		p->dns = evdns_base_new(base, 0);
		if (!p->dns)
			goto oom;
		evdns_base_load_hosts(p->dns, NULL);
	}
	/* May call back at once (hosts file); then dns_req stays NULL. */
	p->dns_req = evdns_getaddrinfo(p->dns, p->host, port, &hints, probe_resolved_cb, p);
	return 0;
oom:
	probe_free(p);
	return -ENOMEM;
}
