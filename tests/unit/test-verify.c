/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for endpoint verification (src/lib/verify.c): endpoint
 * parsing, and real handshakes on loopback against a TLS server run on the
 * same event loop (so the probe must be truly non-blocking: a blocking
 * probe would never let the server answer). Also a server that speaks no
 * TLS, a port nobody listens on, and one that never answers.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/util.h"
#include "certherd/verify.h"

/* Parsing */

START_TEST(test_parse_endpoint)
{
	static const struct {
		const char *in, *host;
		unsigned port;
	} good[] = {
		{ "127.0.0.1:443", "127.0.0.1", 443 },
		{ "www.example.com:8443", "www.example.com", 8443 },
		{ "[::1]:443", "::1", 443 },
		{ "[2001:db8::1]:65535", "2001:db8::1", 65535 },
		{ "localhost:1", "localhost", 1 },
	};
	static const char *const bad[] = {
		"", "host", "host:", ":443", "host:0", "host:65536", "host:44x", "host:-1",
		"::1:443", "[::1]", "[::1]443", "[nothost]:443", "a b:443", "[]:443", "h/x:443",
		"host:+443",
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		char *h = NULL;
		uint16_t port = 0;

		ck_assert_msg(ch_verify_parse_endpoint(good[i].in, &h, &port) == 0, "%s", good[i].in);
		ck_assert_str_eq(h, good[i].host);
		ck_assert_uint_eq(port, good[i].port);
		free(h);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *h = NULL;
		uint16_t port = 0;

		ck_assert_msg(ch_verify_parse_endpoint(bad[i], &h, &port) == -EINVAL, "%s accepted",
			      bad[i]);
		ck_assert_ptr_null(h);
	}
	ck_assert_str_eq(ch_verify_result_to_string(CH_VERIFY_SERVED), "served");
	ck_assert_str_eq(ch_verify_result_to_string(CH_VERIFY_UNREACHABLE), "unreachable");
	ck_assert_str_eq(ch_verify_result_to_string(CH_VERIFY_HANDSHAKE_ERROR), "handshake-error");
	ck_assert_ptr_null(ch_verify_result_to_string(_CH_VERIFY_RESULT_MAX));
}
END_TEST

/* A loopback server on the probe's own event loop */

enum server_mode { SERVE_TLS, SERVE_GARBAGE, SERVE_SILENT };

struct server {
	struct event_base *base;
	enum server_mode mode;
	int lfd;
	uint16_t port;
	struct event *accept_ev;
	SSL_CTX *ctx;
	char *sni_seen;
	/* One connection at a time is enough here. */
	int cfd;
	SSL *ssl;
	struct event *conn_ev;
};

struct outcome {
	bool called;
	enum ch_verify_result result;
	char serial[80], fingerprint[65];
	bool trusted;
	char message[512];
	int calls;
};

static char tmpdir[64];
static struct ch_localca *ca;
static X509 *leaf;
static EVP_PKEY *leaf_key;
static char ca_file[128], other_ca_file[128];

static void
setup(void)
{
	struct ch_err err = { "" };
	char *dns[] = { "www.test", NULL };
	struct ch_localca *other = NULL;
	char crt[128], key[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-verify.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(crt, sizeof(crt), "%s/ca.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/ca.key", tmpdir);
	ck_assert_msg(ch_localca_open(crt, key, true, "Verify CA", CH_KEY_ECDSA_P256, 86400 * 30,
				      &ca, &err) == 0,
		      "%s", err.msg);
	snprintf(ca_file, sizeof(ca_file), "%s", crt);
	ck_assert_int_eq(ch_key_generate(CH_KEY_ECDSA_P256, &leaf_key, &err), 0);
	ck_assert_msg(ch_localca_issue(ca, leaf_key, dns, NULL, 86400, 60, &leaf, &err) == 0, "%s",
		      err.msg);

	snprintf(crt, sizeof(crt), "%s/other.crt", tmpdir);
	snprintf(key, sizeof(key), "%s/other.key", tmpdir);
	ck_assert_int_eq(ch_localca_open(crt, key, true, "Other CA", CH_KEY_ECDSA_P256, 86400 * 30,
					 &other, &err),
			 0);
	snprintf(other_ca_file, sizeof(other_ca_file), "%s", crt);
	ch_localca_free(other);
}

static void
teardown(void)
{
	char cmd[128];

	X509_free(leaf);
	EVP_PKEY_free(leaf_key);
	ch_localca_free(ca);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
conn_close(struct server *s)
{
	if (s->conn_ev)
		event_free(s->conn_ev);
	s->conn_ev = NULL;
	if (s->ssl)
		SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->cfd >= 0)
		close(s->cfd);
	s->cfd = -1;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg);

static void
conn_step(struct server *s)
{
	int r = SSL_accept(s->ssl), e;

	if (r == 1) {
		const char *sni = SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);

		free(s->sni_seen);
		s->sni_seen = strdup(sni ? sni : "");
		/* Keep the connection until the client closes it. */
	}
	e = SSL_get_error(s->ssl, r);
	if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		ERR_clear_error();
		conn_close(s);
		return;
	}
	if (s->conn_ev)
		event_free(s->conn_ev);
	s->conn_ev = event_new(s->base, s->cfd, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ,
			       conn_cb, s);
	event_add(s->conn_ev, NULL);
}

static void
conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	char buf[256];

	if (SSL_is_init_finished(s->ssl)) {
		if (SSL_read(s->ssl, buf, sizeof(buf)) <= 0 &&
		    SSL_get_error(s->ssl, -1) != SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			conn_close(s);
			return;
		}
		event_add(s->conn_ev, NULL);
		return;
	}
	conn_step(s);
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char garbage[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
	struct server *s = arg;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (c < 0)
		return;
	if (s->mode == SERVE_GARBAGE) {
		ck_assert_int_gt(write(c, garbage, sizeof(garbage) - 1), 0);
		close(c);
		return;
	}
	conn_close(s);
	s->cfd = c;
	s->ssl = SSL_new(s->ctx);
	SSL_set_fd(s->ssl, c);
	conn_step(s);
}

static void
server_start(struct server *s, struct event_base *base, enum server_mode mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	memset(s, 0, sizeof(*s));
	s->base = base;
	s->mode = mode;
	s->cfd = -1;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(s->lfd, 8), 0);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
	s->port = ntohs(sa.sin_port);
	if (mode == SERVE_SILENT)
		return; /* the kernel completes connects from the backlog; nobody talks */
	s->ctx = SSL_CTX_new(TLS_server_method());
	ck_assert_int_eq(SSL_CTX_use_certificate(s->ctx, leaf), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(s->ctx, leaf_key), 1);
	s->accept_ev = event_new(base, s->lfd, EV_READ | EV_PERSIST, accept_cb, s);
	event_add(s->accept_ev, NULL);
}

static void
server_stop(struct server *s)
{
	conn_close(s);
	if (s->accept_ev)
		event_free(s->accept_ev);
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	close(s->lfd);
	free(s->sni_seen);
}

static void
done_cb(const struct ch_verify_outcome *o, void *arg)
{
	struct outcome *out = arg;

	out->called = true;
	out->calls++;
	out->result = o->result;
	out->trusted = o->trusted;
	snprintf(out->serial, sizeof(out->serial), "%s", o->serial);
	snprintf(out->fingerprint, sizeof(out->fingerprint), "%s", o->fingerprint);
	snprintf(out->message, sizeof(out->message), "%s", o->message);
	ck_assert(o->result != CH_VERIFY_SERVED || o->leaf);
}

/* Runs the loop until the probe reports, with a deadline. */
static void
run_probe(struct event_base *base, const struct ch_verify_request *req, struct outcome *out)
{
	int64_t deadline = ch_mono_usec() + 20 * CH_USEC_PER_SEC;

	memset(out, 0, sizeof(*out));
	ck_assert_int_eq(ch_verify_start(base, req, done_cb, out), 0);
	ck_assert_msg(!out->called, "done() ran inside ch_verify_start()");
	while (!out->called && ch_mono_usec() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_msg(out->called, "probe never reported");
	/* Nothing left over calls done() a second time. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(out->calls, 1);
}

START_TEST(test_served)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct outcome out;
	struct ch_cert_info info;
	struct ch_verify_request req = { .host = "127.0.0.1",
					 .sni = "www.test",
					 .timeout_usec = 10 * CH_USEC_PER_SEC };

	server_start(&s, base, SERVE_TLS);
	req.port = s.port;
	ck_assert_int_eq(ch_cert_info_get(leaf, &info), 0);

	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_SERVED, "%s", out.message);
	ck_assert_str_eq(out.serial, info.serial);
	ck_assert_str_eq(out.fingerprint, info.fingerprint);
	ck_assert(!out.trusted);

	/* The SNI name reached the server. */
	for (int i = 0; i < 100 && !s.sni_seen; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_ptr_nonnull(s.sni_seen);
	ck_assert_str_eq(s.sni_seen, "www.test");

	/* Chain checked against the right anchor, then a wrong one, then a
	 * name the certificate does not carry. */
	req.trust_file = ca_file;
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_SERVED && out.trusted, "%s", out.message);
	req.trust_file = other_ca_file;
	run_probe(base, &req, &out);
	ck_assert_int_eq(out.result, CH_VERIFY_SERVED);
	ck_assert(!out.trusted);
	ck_assert_msg(strstr(out.message, "issuer"), "%s", out.message);
	req.trust_file = ca_file;
	req.sni = "other.test";
	run_probe(base, &req, &out);
	ck_assert(!out.trusted);
	ck_assert_msg(strstr(out.message, "mismatch"), "%s", out.message);

	/* "localhost" goes through the resolver. */
	req.host = "localhost";
	req.sni = "www.test";
	req.trust_file = NULL;
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_SERVED, "%s", out.message);
	ck_assert_str_eq(out.serial, info.serial);

	ch_cert_info_done(&info);
	server_stop(&s);
	event_base_free(base);
}
END_TEST

START_TEST(test_not_tls)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct outcome out;
	struct ch_verify_request req = { .host = "127.0.0.1", .timeout_usec = 10 * CH_USEC_PER_SEC };

	server_start(&s, base, SERVE_GARBAGE);
	req.port = s.port;
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_HANDSHAKE_ERROR, "%s", out.message);
	ck_assert_msg(strstr(out.message, "127.0.0.1"), "%s", out.message);
	server_stop(&s);
	event_base_free(base);
}
END_TEST

START_TEST(test_unreachable)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct outcome out;
	struct ch_verify_request req = { .host = "127.0.0.1", .timeout_usec = 10 * CH_USEC_PER_SEC };

	/* A port that was just free: bind, learn it, close. */
	server_start(&s, base, SERVE_SILENT);
	req.port = s.port;
	server_stop(&s);
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_UNREACHABLE, "%s", out.message);
	ck_assert_msg(strstr(out.message, "refused"), "%s", out.message);

	req.host = "no-such-host.invalid";
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_UNREACHABLE, "%s", out.message);
	ck_assert_msg(strstr(out.message, "no-such-host.invalid"), "%s", out.message);
	event_base_free(base);
}
END_TEST

START_TEST(test_timeout)
{
	struct event_base *base = event_base_new();
	struct server s;
	struct outcome out;
	struct ch_verify_request req = { .host = "127.0.0.1", .timeout_usec = CH_USEC_PER_SEC / 5 };
	int64_t t0;

	server_start(&s, base, SERVE_SILENT);
	req.port = s.port;
	t0 = ch_mono_usec();
	run_probe(base, &req, &out);
	ck_assert_msg(out.result == CH_VERIFY_HANDSHAKE_ERROR, "%s", out.message);
	ck_assert_msg(strstr(out.message, "timed out"), "%s", out.message);
	/* The deadline, not the test's own 20 s guard, ended it. */
	ck_assert_int_lt(ch_mono_usec() - t0, 10 * CH_USEC_PER_SEC);
	server_stop(&s);
	event_base_free(base);
}
END_TEST

START_TEST(test_bad_request)
{
	struct event_base *base = event_base_new();
	struct outcome out = { 0 };
	struct ch_verify_request req = { .host = "127.0.0.1", .port = 0, .timeout_usec = 1 };

	ck_assert_int_eq(ch_verify_start(base, &req, done_cb, &out), -EINVAL);
	req.port = 443;
	req.timeout_usec = 0;
	ck_assert_int_eq(ch_verify_start(base, &req, done_cb, &out), -EINVAL);
	req.host = "";
	req.timeout_usec = 1;
	ck_assert_int_eq(ch_verify_start(base, &req, done_cb, &out), -EINVAL);
	ck_assert(!out.called);
	event_base_free(base);
}
END_TEST

static Suite *
verify_suite(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_parse_endpoint);
	tcase_add_test(tc, test_bad_request);
	suite_add_tcase(s, tc);

	tc = tcase_create("probe");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_served);
	tcase_add_test(tc, test_not_tls);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_timeout);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(verify_suite());
	int failed;

	/* As in the daemon: a peer that closes first must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
