/* SPDX-License-Identifier: MIT */
/*
 * One DNS request and its answer over the event loop: UDP to a server
 * given by address (resent every third of the timeout), TCP when the
 * answer comes back truncated. Answers whose ID differs are ignored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/dns.h"
#include "certherd/macro.h"

struct ch_dns_xfer {
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint8_t *req;       /* with the 2-byte TCP length prefix */
	size_t req_len;     /* without it */
	int fd;
	bool tcp, connected;
	size_t io_off;      /* TCP: bytes written, then bytes read */
	uint8_t *buf;       /* TCP: 2-byte length + answer; UDP: answer */
	size_t buf_len;
	struct event *io, *timer;
	int64_t interval_ms;
	unsigned sends;
	ch_dns_done_fn *done;
	void *arg;
};

static int
server_parse(const char *server, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[64];
	const char *port = NULL, *h = server;
	size_t hlen;
	unsigned long p = 53;
	char *end;

	memset(ss, 0, sizeof(*ss));
	if (server[0] == '[') {
		const char *close = strchr(server, ']');

		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		h = server + 1;
		hlen = (size_t)(close - h);
		if (close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = strchr(server, ':');

		if (colon && strchr(colon + 1, ':'))
			colon = NULL, hlen = strlen(server); /* a bare IPv6 address */
		else
			hlen = colon ? (size_t)(colon - server) : strlen(server);
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (port) {
		errno = 0;
		p = strtoul(port, &end, 10);
		if (!*port || *end || errno || p == 0 || p > 65535)
			return -EINVAL;
	}
	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
		*sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)p);
		*sl = sizeof(*a);
	}
	return 0;
}

int
ch_dns_server_check(const char *server)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	return server_parse(server, &ss, &sl);
}

static void
xfer_close_io(struct ch_dns_xfer *x)
{
	if (x->io)
		event_free(x->io);
	x->io = NULL;
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

void
ch_dns_xfer_cancel(struct ch_dns_xfer *x)
{
	if (!x)
		return;
	xfer_close_io(x);
	if (x->timer)
		event_free(x->timer);
	free(x->req);
	free(x->buf);
	free(x);
}

static void
xfer_finish(struct ch_dns_xfer *x, int r, const uint8_t *reply, size_t len)
{
	ch_dns_done_fn *done = x->done;
	void *arg = x->arg;
	uint8_t *buf = TAKE_PTR(x->buf);

	ch_dns_xfer_cancel(x);
	done(r, reply, len, arg);
	free(buf);
}

/* True when reply answers our request. */
static bool
xfer_matches(const struct ch_dns_xfer *x, const uint8_t *reply, size_t len)
{
	return len >= 12 && reply[0] == x->req[2] && reply[1] == x->req[3] && (reply[2] & 0x80);
}

static void xfer_io_cb(evutil_socket_t fd, short what, void *arg);

static int
xfer_socket(struct ch_dns_xfer *x, bool tcp)
{
	int fd = socket(x->addr.ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&x->addr, x->addr_len) < 0 && errno != EINPROGRESS) {
		int k = -errno;

		close(fd);
		return k;
	}
	x->fd = fd;
	x->tcp = tcp;
	x->connected = !tcp;
	x->io_off = 0;
	x->io = event_new(x->base, fd, (tcp ? EV_WRITE : EV_READ) | EV_PERSIST, xfer_io_cb, x);
	if (!x->io || event_add(x->io, NULL) < 0)
		return -ENOMEM;
	return 0;
}

static int
xfer_udp_send(struct ch_dns_xfer *x)
{
	x->sends++;
	if (send(x->fd, x->req + 2, x->req_len, 0) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

static void
xfer_udp_read(struct ch_dns_xfer *x)
{
	uint8_t buf[4096];
	ssize_t n;
	int k;

	for (;;) {
		n = recv(x->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* ECONNREFUSED: an ICMP port unreachable from an earlier send. */
			xfer_finish(x, -errno, NULL, 0);
			return;
		}
		if (!xfer_matches(x, buf, (size_t)n))
			continue;
		if (buf[2] & (CH_DNS_FLAG_TC >> 8)) {
			struct timeval tv = { x->interval_ms * 3 / 1000, (x->interval_ms * 3 % 1000) * 1000 };

			xfer_close_io(x);
			k = xfer_socket(x, true);
			if (k < 0)
				xfer_finish(x, k, NULL, 0);
			else
				evtimer_add(x->timer, &tv);
			return;
		}
		xfer_finish(x, 0, buf, (size_t)n);
		return;
	}
}

static void
xfer_tcp(struct ch_dns_xfer *x, short what)
{
	ssize_t n;

	if (!x->connected) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			xfer_finish(x, -err, NULL, 0);
			return;
		}
		x->connected = true;
	}
	if (what & EV_WRITE) {
		n = send(x->fd, x->req + x->io_off, x->req_len + 2 - x->io_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				xfer_finish(x, -errno, NULL, 0);
			return;
		}
		x->io_off += (size_t)n;
		if (x->io_off == x->req_len + 2) {
			event_free(x->io);
			x->io_off = 0;
			x->buf = malloc(2 + CH_DNS_MSG_MAX);
			x->io = event_new(x->base, x->fd, EV_READ | EV_PERSIST, xfer_io_cb, x);
			if (!x->buf || !x->io || event_add(x->io, NULL) < 0)
				xfer_finish(x, -ENOMEM, NULL, 0);
		}
		return;
	}
	for (;;) {
		size_t want = x->io_off < 2 ? 2 : 2 + (size_t)(x->buf[0] << 8 | x->buf[1]);

		if (x->io_off == want && want > 2) {
			if (!xfer_matches(x, x->buf + 2, want - 2))
				xfer_finish(x, -EBADMSG, NULL, 0);
			else
				xfer_finish(x, 0, x->buf + 2, want - 2);
			return;
		}
		n = recv(x->fd, x->buf + x->io_off, want - x->io_off, 0);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				xfer_finish(x, -errno, NULL, 0);
			return;
		}
		if (n == 0) {
			xfer_finish(x, -ECONNRESET, NULL, 0);
			return;
		}
		x->io_off += (size_t)n;
	}
}

static void
xfer_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ch_dns_xfer *x = arg;

	if (x->tcp)
		xfer_tcp(x, what);
	else
		xfer_udp_read(x);
}

static void
xfer_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ch_dns_xfer *x = arg;
	struct timeval tv = { x->interval_ms / 1000, (x->interval_ms % 1000) * 1000 };
	int k;

	if (x->tcp || x->sends >= 3) {
		xfer_finish(x, -ETIMEDOUT, NULL, 0);
		return;
	}
	k = xfer_udp_send(x);
	if (k < 0) {
		xfer_finish(x, k, NULL, 0);
		return;
	}
	evtimer_add(x->timer, &tv);
}

int
ch_dns_exchange(struct event_base *base, const char *server, const uint8_t *msg, size_t len,
		int64_t timeout_ms, ch_dns_done_fn *done, void *arg, struct ch_dns_xfer **ret)
{
	struct ch_dns_xfer *x;
	struct timeval tv;
	int k;

	if (len < 12 || len > CH_DNS_MSG_MAX || timeout_ms <= 0)
		return -EINVAL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->fd = -1;
	x->base = base;
	x->done = done;
	x->arg = arg;
	x->interval_ms = timeout_ms / 3 > 0 ? timeout_ms / 3 : 1;
	k = server_parse(server, &x->addr, &x->addr_len);
	if (k < 0)
		goto fail;
	x->req = malloc(len + 2);
	x->timer = evtimer_new(base, xfer_timer_cb, x);
	if (!x->req || !x->timer) {
		k = -ENOMEM;
		goto fail;
	}
	x->req[0] = (uint8_t)(len >> 8);
	x->req[1] = (uint8_t)len;
	memcpy(x->req + 2, msg, len);
	x->req_len = len;
	k = xfer_socket(x, false);
	if (k >= 0)
		k = xfer_udp_send(x);
	if (k < 0)
		goto fail;
	tv.tv_sec = x->interval_ms / 1000;
	tv.tv_usec = (x->interval_ms % 1000) * 1000;
	evtimer_add(x->timer, &tv);
	if (ret)
		*ret = x;
	return 0;
fail:
	ch_dns_xfer_cancel(x);
	return k;
}
