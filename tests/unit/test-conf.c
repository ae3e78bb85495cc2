/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the configuration loader (src/lib/conf.c, conf-yaml.c): a valid
 * configuration spread over included files loads with defaults merged and
 * paths made absolute, and each class of mistake is reported with its exact
 * file, line, column, key and message. Uses the real "local" CA and the
 * "file", "reload" and "exec" target types.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ch-config.h"
#include "certherd/ca.h"
#include "certherd/conf.h"
#include "certherd/macro.h"
#include "certherd/target.h"

static char tmpdir[256];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test-conf-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
teardown(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Absolute path of name in the test directory (static buffer, one at a time). */
static const char *
tpath(const char *name)
{
	static char buf[8][1024];
	static unsigned which;

	which = (which + 1) % ARRAY_SIZE(buf);
	snprintf(buf[which], sizeof(buf[which]), "%s/%s", tmpdir, name);
	return buf[which];
}

static void
write_file(const char *name, const char *content)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	for (char *p = path + strlen(tmpdir) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(content, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

static int
load(const char *name, struct ch_conf **c, struct ch_conf_errors *e)
{
	*c = NULL;
	return ch_conf_load(tpath(name), c, e);
}

/* Loads name expecting failure; returns the errors for checking. */
static void
load_fail(const char *name, struct ch_conf_errors *e)
{
	struct ch_conf *c = NULL;
	int r = load(name, &c, e);

	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_gt(e->n, 0);
}

/*
 * Checks error i against "FILE:line:col: key: message", where FILE is
 * relative to the test directory and may be empty for none.
 */
static void check_error(const struct ch_conf_errors *e, size_t i, const char *fmt, ...)
	_printf_(3, 4);

static void
check_error(const struct ch_conf_errors *e, size_t i, const char *fmt, ...)
{
	char want[4096], *got;
	va_list ap;
	int k;

	k = snprintf(want, sizeof(want), "%s/", tmpdir);
	va_start(ap, fmt);
	vsnprintf(want + k, sizeof(want) - (size_t)k, fmt, ap);
	va_end(ap);

	ck_assert_uint_lt(i, e->n);
	got = ch_conf_error_format(&e->v[i]);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, want);
	free(got);
}

static void
dump_errors(const struct ch_conf_errors *e)
{
	for (size_t i = 0; i < e->n; i++) {
		char *s = ch_conf_error_format(&e->v[i]);

		fprintf(stderr, "# %s\n", s ? s : "?");
		free(s);
	}
}

static const struct ch_conf_key *
opt_key(const struct ch_conf_key *keys, const char *name)
{
	for (const struct ch_conf_key *k = keys; k && k->name; k++)
		if (streq(k->name, name))
			return k;
	ck_abort_msg("no option %s", name);
	return NULL;
}

#define OPT(keys, opts, name, type) (*(type *)((char *)(opts) + opt_key(keys, name)->offset))

static const char ca_and_targets[] = "cas:\n"
				     "  local:\n"
				     "    type: local\n"
				     "targets:\n"
				     "  web-files:\n"
				     "    type: file\n"
				     "    cert: /etc/ssl/{name}.crt\n"
				     "  reload-nginx:\n"
				     "    type: reload\n"
				     "    pidfile: /run/nginx.pid\n";

/* ---- valid configurations ----------------------------------------------- */

START_TEST(test_valid_full)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	const struct ch_conf_cert *www, *api;
	const struct ch_conf_target *t;
	const struct ch_conf_ca *ca;
	char want[PATH_MAX + 64];
	int r;

	write_file("main.yaml",
		   "state_dir: state\n"
		   "log_level: debug\n"
		   "concurrency: 4\n"
		   "include: [conf.d/*.yaml, missing/*.yaml]\n"
		   "defaults:\n"
		   "  ca: local\n"
		   "  key_type: ecdsa-p384\n"
		   "  lifetime: 90d\n"
		   "  renew_before: 30d\n"
		   "  reuse_key: yes\n"
		   "  targets: [web-files]\n"
		   "cas:\n"
		   "  local:\n"
		   "    type: local\n"
		   "    common_name: Test CA\n"
		   "    lifetime: 10y\n"
		   "targets:\n"
		   "  web-files:\n"
		   "    type: file\n"
		   "    cert: certs/{name}.crt\n"
		   "    key: /etc/ssl/private/{name}.key\n"
		   "    mode: \"0644\"\n"
		   "    key_mode: 600\n"
		   "certificates:\n"
		   "  www:\n"
		   "    names: [WWW.Example.com, example.com, 192.0.2.10, \"2001:DB8::1\", "
		   "\"*.example.org\"]\n"
		   "    key_type: rsa-2048\n"
		   "    lifetime: 5m\n"
		   "    renew_before: 2m\n"
		   "    warn_before: 1m\n"
		   "    reuse_key: false\n");
	write_file("conf.d/10-targets.yaml",
		   "targets:\n"
		   "  reload-nginx:\n"
		   "    type: reload\n"
		   "    pidfile: run/nginx.pid\n"
		   "    signal: SIGUSR1\n"
		   "  hook:\n"
		   "    type: exec\n"
		   "    command: [/usr/local/bin/hook, --flag]\n"
		   "    timeout: 30s\n");
	write_file("conf.d/20-certs.yaml",
		   "# more certificates\n"
		   "certificates:\n"
		   "  api:\n"
		   "    names: api.example.com\n"
		   "    targets: [reload-nginx, hook]\n");
	write_file("conf.d/README", "not yaml: [\n");

	r = load("main.yaml", &c, &e);
	if (r < 0)
		dump_errors(&e);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_ptr_nonnull(c);

	ck_assert_str_eq(c->file, tpath("main.yaml"));
	ck_assert_str_eq(c->state_dir, tpath("state"));
	ck_assert_str_eq(c->database, tpath("state/certherd.db"));
	ck_assert_str_eq(c->socket, CH_RUNSTATEDIR "/certherd.sock");
	ck_assert_str_eq(c->log_level, "debug");
	ck_assert_int_eq(c->concurrency, 4);

	ck_assert_uint_eq(c->n_cas, 1);
	ca = ch_conf_find_ca(c, "local");
	ck_assert_ptr_nonnull(ca);
	ck_assert_str_eq(ca->type, "local");
	ck_assert_ptr_eq(ca->ops, &ch_ca_local_ops);
	ck_assert_str_eq(OPT(ca->ops->keys, ca->opts, "common_name", char *), "Test CA");
	ck_assert_int_eq(OPT(ca->ops->keys, ca->opts, "lifetime", int64_t), 10 * 365 * 86400);
	ck_assert_int_eq(OPT(ca->ops->keys, ca->opts, "key_type", int), -1);
	ck_assert_ptr_null(OPT(ca->ops->keys, ca->opts, "cert", char *));
	ck_assert_str_eq(ca->origin.file, tpath("main.yaml"));
	ck_assert_uint_eq(ca->origin.line, 13);
	ck_assert_uint_eq(ca->origin.column, 3);

	ck_assert_uint_eq(c->n_targets, 3);
	t = ch_conf_find_target(c, "web-files");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t->ops, &ch_target_file_ops);
	ck_assert_str_eq(OPT(t->ops->keys, t->opts, "cert", char *), tpath("certs/{name}.crt"));
	ck_assert_str_eq(OPT(t->ops->keys, t->opts, "key", char *), "/etc/ssl/private/{name}.key");
	ck_assert_ptr_null(OPT(t->ops->keys, t->opts, "chain", char *));
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "mode", int), 0644);
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "key_mode", int), 0600);

	t = ch_conf_find_target(c, "reload-nginx");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t->ops, &ch_target_reload_ops);
	/* Relative to the directory of the file that holds the value. */
	ck_assert_str_eq(OPT(t->ops->keys, t->opts, "pidfile", char *),
			 tpath("conf.d/run/nginx.pid"));
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "signal", int), SIGUSR1);
	ck_assert_str_eq(t->origin.file, tpath("conf.d/10-targets.yaml"));
	ck_assert_uint_eq(t->origin.line, 2);

	t = ch_conf_find_target(c, "hook");
	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_eq(t->ops, &ch_target_exec_ops);
	ck_assert_uint_eq(ch_strv_length(OPT(t->ops->keys, t->opts, "command", char **)), 2);
	ck_assert_str_eq(OPT(t->ops->keys, t->opts, "command", char **)[1], "--flag");
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "timeout", int64_t), 30);
	ck_assert_ptr_null(ch_conf_find_target(c, "nope"));

	ck_assert_uint_eq(c->n_certs, 2);
	www = ch_conf_find_cert(c, "www");
	ck_assert_ptr_nonnull(www);
	ck_assert_uint_eq(ch_strv_length(www->dns_names), 3);
	ck_assert_str_eq(www->dns_names[0], "www.example.com");
	ck_assert_str_eq(www->dns_names[1], "example.com");
	ck_assert_str_eq(www->dns_names[2], "*.example.org");
	ck_assert_uint_eq(ch_strv_length(www->ip_names), 2);
	ck_assert_str_eq(www->ip_names[0], "192.0.2.10");
	ck_assert_str_eq(www->ip_names[1], "2001:db8::1");
	ck_assert_str_eq(www->s.ca, "local");
	ck_assert_int_eq(www->s.key_type, CH_KEY_RSA_2048);
	ck_assert_int_eq(www->s.lifetime, 300);
	ck_assert_int_eq(www->s.renew_before, 120);
	ck_assert_int_eq(www->s.warn_before, 60);
	ck_assert(www->s.reuse_key_set);
	ck_assert(!www->s.reuse_key);
	ck_assert_uint_eq(ch_strv_length(www->s.targets), 1);
	ck_assert_str_eq(www->s.targets[0], "web-files");
	ck_assert_uint_eq(www->origin.line, 25);
	ck_assert_uint_eq(www->origin.column, 3);

	api = ch_conf_find_cert(c, "api");
	ck_assert_ptr_nonnull(api);
	ck_assert_uint_eq(ch_strv_length(api->dns_names), 1);
	ck_assert_str_eq(api->dns_names[0], "api.example.com");
	ck_assert_ptr_nonnull(api->ip_names);
	ck_assert_uint_eq(ch_strv_length(api->ip_names), 0);
	ck_assert_str_eq(api->s.ca, "local");
	ck_assert_int_eq(api->s.key_type, CH_KEY_ECDSA_P384);
	ck_assert_int_eq(api->s.lifetime, 90 * 86400);
	ck_assert_int_eq(api->s.renew_before, 30 * 86400);
	ck_assert_int_eq(api->s.warn_before, 0);
	ck_assert(api->s.reuse_key_set && api->s.reuse_key);
	ck_assert_uint_eq(ch_strv_length(api->s.targets), 2);
	ck_assert_str_eq(api->s.targets[0], "reload-nginx");
	ck_assert_str_eq(api->s.targets[1], "hook");
	ck_assert_str_eq(api->origin.file, tpath("conf.d/20-certs.yaml"));
	ck_assert_uint_eq(api->origin.line, 3);
	ck_assert_uint_eq(api->origin.column, 3);

	snprintf(want, sizeof(want), "%s", tpath("conf.d/20-certs.yaml"));
	ck_assert_str_eq(api->origin.file, want);
	ck_assert_ptr_null(ch_conf_find_cert(c, "nope"));

	ch_conf_free(c);
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_valid_minimal)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	const struct ch_conf_cert *www;

	write_file("main.yaml", "cas:\n"
				"  only:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names: 10.0.0.1\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_str_eq(c->state_dir, CH_LOCALSTATEDIR);
	ck_assert_str_eq(c->database, CH_LOCALSTATEDIR "/certherd.db");
	ck_assert_str_eq(c->socket, CH_RUNSTATEDIR "/certherd.sock");
	ck_assert_str_eq(c->log_level, "info");
	ck_assert_int_eq(c->concurrency, 16);
	ck_assert_int_eq(c->defaults.key_type, -1);

	www = ch_conf_find_cert(c, "www");
	ck_assert_ptr_nonnull(www);
	/* The only CA is the default one. */
	ck_assert_str_eq(www->s.ca, "only");
	ck_assert_int_eq(www->s.key_type, CH_KEY_ECDSA_P256);
	ck_assert_int_eq(www->s.lifetime, 0);
	ck_assert_int_eq(www->s.renew_before, 0);
	ck_assert(!www->s.reuse_key_set);
	ck_assert_ptr_nonnull(www->s.targets);
	ck_assert_uint_eq(ch_strv_length(www->s.targets), 0);
	ck_assert_ptr_nonnull(www->dns_names);
	ck_assert_uint_eq(ch_strv_length(www->dns_names), 0);
	ck_assert_str_eq(www->ip_names[0], "10.0.0.1");
	ch_conf_free(c);

	/* An empty file is a valid (empty) configuration. */
	write_file("empty.yaml", "# nothing\n");
	ck_assert_int_eq(load("empty.yaml", &c, &e), 0);
	ck_assert_uint_eq(c->n_certs, 0);
	ch_conf_free(c);
	ck_assert_uint_eq(e.n, 0);
}
END_TEST

/* ---- one class of error each -------------------------------------------- */

START_TEST(test_unknown_key)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    lifetme: 90d\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n"
				"    leaf_lifetim: 1d\n"
				"concurency: 3\n"
				"frobnicate: 1\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 4);
	check_error(&e, 0,
		    "main.yaml:4:5: certificates.www.lifetme: unknown key 'lifetme'; did you mean "
		    "'lifetime'?");
	check_error(&e, 1,
		    "main.yaml:8:5: cas.local.leaf_lifetim: unknown key 'leaf_lifetim'; did you "
		    "mean 'leaf_lifetime'?");
	check_error(&e, 2,
		    "main.yaml:9:1: concurency: unknown key 'concurency'; did you mean "
		    "'concurrency'?");
	check_error(&e, 3,
		    "main.yaml:10:1: frobnicate: unknown key 'frobnicate'; expected one of: "
		    "state_dir, database, socket, log_level, concurrency, verify_interval, stale_grace, "
		    "metrics_listen, crl_listen, alerts, heartbeat, rehearsal, defaults, include, cas, "
		    "targets, certificates, notifiers");
	ch_conf_errors_clear(&e);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_ptr_null(e.v);
}
END_TEST

START_TEST(test_bad_duration)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    lifetime: ninety\n"
				"    renew_before: 0\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "main.yaml:4:15: certificates.www.lifetime: expected a duration such as 90d, "
		    "12h, 30m or 45s, got \"ninety\"");
	check_error(&e, 1,
		    "main.yaml:5:19: certificates.www.renew_before: expected a duration such as "
		    "90d, 12h, 30m or 45s, got \"0\"");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_bad_key_type)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "defaults:\n"
				"  key_type: rsa-1024\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0,
		    "main.yaml:2:13: defaults.key_type: expected one of ecdsa-p256, ecdsa-p384, "
		    "rsa-2048, rsa-3072, ed25519, got \"rsa-1024\"");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_endpoints)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	const struct ch_conf_cert *cc;

	write_file("main.yaml", "verify_interval: 5m\n"
				"stale_grace: 2h\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n"
				"defaults:\n"
				"  endpoints: [\"lb1.example.com:443\"]\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    endpoints: [\"127.0.0.1:8443\", \"[::1]:443\"]\n"
				"    verify_sni: www.example.com\n"
				"    verify_trust: /etc/ssl/ca.pem\n"
				"  api:\n"
				"    names: [api.example.com]\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_int_eq(c->verify_interval, 300);
	ck_assert_int_eq(c->stale_grace, 7200);
	cc = ch_conf_find_cert(c, "www");
	ck_assert_str_eq(cc->s.endpoints[0], "127.0.0.1:8443");
	ck_assert_str_eq(cc->s.endpoints[1], "[::1]:443");
	ck_assert_ptr_null(cc->s.endpoints[2]);
	ck_assert_str_eq(cc->s.verify_sni, "www.example.com");
	ck_assert_str_eq(cc->s.verify_trust, "/etc/ssl/ca.pem");
	cc = ch_conf_find_cert(c, "api");
	ck_assert_str_eq(cc->s.endpoints[0], "lb1.example.com:443");
	ck_assert_ptr_null(cc->s.verify_sni);
	ch_conf_free(c);

	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    endpoints: [\"127.0.0.1\", \"::1:443\"]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "main.yaml:7:16: certificates.www.endpoints: expected host:port or [IPv6]:port, "
		    "got \"127.0.0.1\"");
	check_error(&e, 1,
		    "main.yaml:7:16: certificates.www.endpoints: expected host:port or [IPv6]:port, "
		    "got \"::1:443\"");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_bad_mode)
{
	struct ch_conf_errors e = { 0 };
	const struct ch_conf_key *k = opt_key(ch_target_file_ops.keys, "mode");

	write_file("main.yaml", "targets:\n"
				"  web-files:\n"
				"    type: file\n"
				"    cert: /etc/ssl/{name}.crt\n"
				"    mode: \"0999\"\n"
				"    key_mode: 017777\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0, "main.yaml:5:11: targets.web-files.mode: expected %s, got \"0999\"",
		    k->expect ? k->expect : "an octal file mode such as 0640");
	k = opt_key(ch_target_file_ops.keys, "key_mode");
	check_error(&e, 1, "main.yaml:6:15: targets.web-files.key_mode: expected %s, got \"017777\"",
		    k->expect ? k->expect : "an octal file mode such as 0640");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_unknown_ca)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n"
				"  other:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    ca: lcoal\n"
				"  api:\n"
				"    names: [api.example.com]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "main.yaml:9:9: certificates.www.ca: unknown CA 'lcoal'; defined CAs: local, "
		    "other; did you mean 'local'?");
	check_error(&e, 1,
		    "main.yaml:10:3: certificates.api: no CA for certificate 'api'; set ca: or "
		    "defaults.ca");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "defaults:\n"
				"  ca: acme\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:2:7: defaults.ca: unknown CA 'acme'; defined CAs: local");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_ca_list)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	const struct ch_conf_cert *www, *api;

	write_file("main.yaml", "defaults:\n"
				"  ca: [second, first]\n"
				"  failover_after: 5\n"
				"cas:\n"
				"  first: { type: local }\n"
				"  second:\n"
				"    type: local\n"
				"    budget: { certificates_per_domain_per_week: 2 }\n"
				"certificates:\n"
				"  www: { names: [www.example.com], ca: [first, second], failover_after: 1 }\n"
				"  api: { names: [api.example.com] }\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	www = ch_conf_find_cert(c, "www");
	api = ch_conf_find_cert(c, "api");
	ck_assert_str_eq(www->s.ca, "first");
	ck_assert_uint_eq(ch_strv_length(www->s.cas), 2);
	ck_assert_str_eq(www->s.cas[1], "second");
	ck_assert_int_eq(www->s.failover_after, 1);
	/* From defaults: the list, its order and the threshold. */
	ck_assert_str_eq(api->s.ca, "second");
	ck_assert_str_eq(api->s.cas[1], "first");
	ck_assert_int_eq(api->s.failover_after, 5);
	ck_assert_int_eq(ch_conf_find_ca(c, "second")->budget.certs_per_domain_per_week, 2);
	ck_assert_int_eq(ch_conf_find_ca(c, "second")->budget.failed_validations_per_hour, -1);
	ck_assert_int_eq(ch_conf_find_ca(c, "first")->budget.certs_per_domain_per_week, -1);
	ch_conf_free(c);

	/* A single name still works and gets the default threshold. */
	write_file("main.yaml", "cas:\n"
				"  only: { type: local }\n"
				"certificates:\n"
				"  www: { names: [www.example.com], ca: only }\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	www = ch_conf_find_cert(c, "www");
	ck_assert_uint_eq(ch_strv_length(www->s.cas), 1);
	ck_assert_int_eq(www->s.failover_after, CH_CONF_FAILOVER_AFTER);
	ch_conf_free(c);

	write_file("main.yaml", "cas:\n"
				"  first: { type: local }\n"
				"  second: { type: local, budget: { certificates_per_wek: 3 } }\n"
				"certificates:\n"
				"  a: { names: [a.example.com], ca: [first, secnd] }\n"
				"  b: { names: [b.example.com], ca: [first, first] }\n"
				"  c: { names: [c.example.com], ca: [] }\n"
				"  d: { names: [d.example.com], ca: first, failover_after: 0 }\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 6);
	check_error(&e, 0, "main.yaml:3:36: cas.second.budget.certificates_per_wek: unknown key "
			   "'certificates_per_wek'; expected one of: certificates_per_domain_per_week, "
			   "failed_validations_per_hour");
	check_error(&e, 1, "main.yaml:6:44: certificates.b.ca: CA 'first' is listed twice; list "
			   "each CA once");
	check_error(&e, 2, "main.yaml:7:36: certificates.c.ca: expected at least one CA name, got "
			   "an empty list");
	check_error(&e, 3, "main.yaml:8:59: certificates.d.failover_after: expected the number of "
			   "failed attempts at a CA before the next CA of ca: is asked (>= 1), got 0; "
			   "to never fail over, list a single CA");
	check_error(&e, 4, "main.yaml:5:44: certificates.a.ca: unknown CA 'secnd'; defined CAs: "
			   "first, second; did you mean 'second'?");
	check_error(&e, 5, "main.yaml:7:3: certificates.c: no CA for certificate 'c'; set ca: or "
			   "defaults.ca");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_rehearsal)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;

	/* Off by default; a CA's own setting overrides the global one, "off" too. */
	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_int_eq(ch_conf_rehearsal_interval(c, &c->cas[0]), 0);
	ck_assert_ptr_null(c->cas[0].staging);
	c = ch_conf_free(c);

	write_file("main.yaml", "rehearsal:\n"
				"  interval: 30d\n"
				"cas:\n"
				"  prod:\n"
				"    type: local\n"
				"    staging: stage\n"
				"  stage:\n"
				"    type: local\n"
				"    rehearsal: off\n"
				"  fast:\n"
				"    type: local\n"
				"    rehearsal: {interval: 1h}\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_int_eq(ch_conf_rehearsal_interval(c, ch_conf_find_ca(c, "prod")), 30 * 86400);
	ck_assert_int_eq(ch_conf_rehearsal_interval(c, ch_conf_find_ca(c, "stage")), 0);
	ck_assert_int_eq(ch_conf_rehearsal_interval(c, ch_conf_find_ca(c, "fast")), 3600);
	ck_assert_str_eq(ch_conf_find_ca(c, "prod")->staging, "stage");
	c = ch_conf_free(c);

	write_file("main.yaml", "rehearsal:\n"
				"  interval: soon\n"
				"  every: 1d\n"
				"cas:\n"
				"  prod:\n"
				"    type: local\n"
				"    staging: stagng\n"
				"  stage:\n"
				"    type: local\n"
				"    staging: stage\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 4);
	check_error(&e, 0,
		    "main.yaml:2:13: rehearsal.interval: expected a duration such as 30d or 12h, "
		    "or off, got \"soon\"");
	check_error(&e, 1,
		    "main.yaml:3:3: rehearsal.every: unknown key 'every'; expected one of: interval");
	check_error(&e, 2,
		    "main.yaml:7:14: cas.prod.staging: unknown CA 'stagng'; defined CAs: prod, "
		    "stage; did you mean 'stage'?");
	check_error(&e, 3,
		    "main.yaml:10:14: cas.stage.staging: a CA cannot be its own staging CA; name "
		    "another CA or remove staging:");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_unknown_target)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    targets: [web-flies, reload-nginx, zzzzzzzzzz]\n");
	write_file("more.yaml", ca_and_targets);
	write_file("main.yaml", "include: more.yaml\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    targets: [web-flies, reload-nginx, zzzzzzzzzz]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "main.yaml:3:3: certificates.www.targets: unknown target 'web-flies'; defined "
		    "targets: web-files, reload-nginx; did you mean 'web-files'?");
	check_error(&e, 1,
		    "main.yaml:3:3: certificates.www.targets: unknown target 'zzzzzzzzzz'; defined "
		    "targets: web-files, reload-nginx");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_unknown_type)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "targets:\n"
				"  web-files:\n"
				"    type: fiel\n"
				"    cert: /x\n"
				"cas:\n"
				"  local:\n"
				"    type: [local]\n"
				"  other:\n"
				"    type: acme-v9\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 3);
	check_error(&e, 0,
		    "main.yaml:3:11: targets.web-files.type: unknown target type 'fiel'; known "
		    "types: %s; did you mean 'file'?",
		    ch_target_types());
	check_error(&e, 1, "main.yaml:7:11: cas.local.type: expected a type name, got a sequence");
	check_error(&e, 2,
		    "main.yaml:9:11: cas.other.type: unknown CA type 'acme-v9'; known types: %s",
		    ch_ca_types());
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_missing_required)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    common_name: x\n"
				"targets:\n"
				"  reload-nginx:\n"
				"    type: reload\n"
				"    signal: HUP\n"
				"  hook:\n"
				"certificates:\n"
				"  www:\n"
				"    ca: local\n"
				"  api:\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 5);
	check_error(&e, 0, "main.yaml:3:5: cas.local: missing required key 'type'; known types: %s",
		    ch_ca_types());
	check_error(&e, 1, "main.yaml:6:5: targets.reload-nginx: missing required key 'pidfile'");
	/* An empty value is reported where it would have been. */
	check_error(&e, 2, "main.yaml:8:8: targets.hook: missing required key 'type'; known types: %s",
		    ch_target_types());
	check_error(&e, 3, "main.yaml:11:5: certificates.www: missing required key 'names'");
	check_error(&e, 4, "main.yaml:12:7: certificates.api: missing required key 'names'");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_duplicate_across_files)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "include:\n"
				"  - a.yaml\n"
				"  - b.yaml\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n");
	write_file("a.yaml", "certificates:\n"
			     "  www:\n"
			     "    names: [www.example.com]\n");
	write_file("b.yaml", "# the same again\n"
			     "certificates:\n"
			     "  api:\n"
			     "    names: [api.example.com]\n"
			     "  www:\n"
			     "    names: [www2.example.com]\n"
			     "cas:\n"
			     "  local:\n"
			     "    type: local\n");
	load_fail("a.yaml", &e); /* no CA in a.yaml alone */
	ch_conf_errors_clear(&e);

	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "b.yaml:5:3: certificates.www: duplicate certificate 'www' (first defined at "
		    "%s:2:3)",
		    tpath("a.yaml"));
	check_error(&e, 1,
		    "main.yaml:5:3: cas.local: duplicate CA 'local' (first defined at %s:8:3)",
		    tpath("b.yaml"));
	ch_conf_errors_clear(&e);

	/* Within one mapping, too. */
	write_file("main.yaml", "certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    names: [www.example.com]\n"
				"  www:\n"
				"    names: [www.example.com]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 3);
	check_error(&e, 0,
		    "main.yaml:4:5: certificates.www.names: duplicate key 'names' (first at line 3, "
		    "column 5)");
	check_error(&e, 1,
		    "main.yaml:5:3: certificates.www: duplicate certificate 'www' (first defined at "
		    "%s:2:3)",
		    tpath("main.yaml"));
	check_error(&e, 2,
		    "main.yaml:2:3: certificates.www: no CA for certificate 'www'; no CAs are "
		    "defined under cas:");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_yaml_syntax)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com\n"
				"    ca: local\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0,
		    "main.yaml:7:7: invalid YAML: did not find expected ',' or ']' (while parsing a "
		    "flow sequence at line 6, column 12)");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"   type: local\n"
				"  bad indent\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0,
		    "main.yaml:5:1: invalid YAML: could not find expected ':' (while scanning a "
		    "simple key at line 4, column 3)");
	ch_conf_errors_clear(&e);

	/* In an included file, the error names that file. */
	write_file("main.yaml", "include: inc.yaml\n");
	write_file("inc.yaml", "certificates:\n\t- x\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.v[0].file, tpath("inc.yaml"));
	ck_assert_uint_eq(e.v[0].line, 2);
	ck_assert_uint_eq(e.v[0].column, 1);
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_many_errors)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "log_level: verbose\n"
				"concurrency: 0\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n"
				"    backdate: soon\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com, bad_name]\n"
				"    reuse_key: perhaps\n"
				"  \"bad name\":\n"
				"    names: [x.example.com]\n"
				"  api:\n"
				"    names: [api.example.com]\n"
				"    ca: nope\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 7);
	check_error(&e, 0,
		    "main.yaml:1:12: log_level: expected one of error, warning, notice, info, debug, "
		    "got \"verbose\"");
	check_error(&e, 1, "main.yaml:2:14: concurrency: expected an integer of at least 1, got \"0\"");
	ck_assert_str_eq(e.v[2].key, "cas.local.backdate");
	ck_assert_uint_eq(e.v[2].line, 6);
	ck_assert_uint_eq(e.v[2].column, 15);
	check_error(&e, 3,
		    "main.yaml:9:30: certificates.www.names: invalid DNS name 'bad_name': invalid "
		    "character '_'; expected a host name such as www.example.com or an IP address");
	check_error(&e, 4, "main.yaml:10:16: certificates.www.reuse_key: expected true or false, got \"perhaps\"");
	check_error(&e, 5,
		    "main.yaml:11:3: certificates: invalid certificate name 'bad name'; expected 1 "
		    "to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
	check_error(&e, 6,
		    "main.yaml:15:9: certificates.api.ca: unknown CA 'nope'; defined CAs: local");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_dot_names)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;

	/* Names become directories under state_dir: none may start with '.'. */
	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n"
				"  .hidden:\n"
				"    type: local\n"
				"targets:\n"
				"  ..:\n"
				"    type: file\n"
				"    cert: /etc/ssl/x.crt\n"
				"certificates:\n"
				"  .:\n"
				"    names: [a.example.com]\n"
				"  \"..\":\n"
				"    names: [b.example.com]\n"
				"  .www:\n"
				"    names: [c.example.com]\n"
				"  www.v2.:\n"
				"    names: [d.example.com]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 5);
	check_error(&e, 0, "main.yaml:4:3: cas: invalid CA name '.hidden'; a name must not start "
			   "with '.'");
	check_error(&e, 1, "main.yaml:7:3: targets: invalid target name '..'; a name must not "
			   "start with '.'");
	check_error(&e, 2, "main.yaml:11:3: certificates: invalid certificate name '.'; a name "
			   "must not start with '.'");
	check_error(&e, 3, "main.yaml:13:3: certificates: invalid certificate name '..'; a name "
			   "must not start with '.'");
	check_error(&e, 4, "main.yaml:15:3: certificates: invalid certificate name '.www'; a name "
			   "must not start with '.'");
	ch_conf_errors_clear(&e);

	/* Dots elsewhere are fine. */
	write_file("main.yaml", "cas:\n"
				"  local.v2:\n"
				"    type: local\n"
				"targets:\n"
				"  files.:\n"
				"    type: file\n"
				"    cert: /etc/ssl/x.crt\n"
				"certificates:\n"
				"  www.v2.:\n"
				"    names: [d.example.com]\n"
				"    targets: [files.]\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_ptr_nonnull(ch_conf_find_ca(c, "local.v2"));
	ck_assert_ptr_nonnull(ch_conf_find_target(c, "files."));
	ck_assert_ptr_nonnull(ch_conf_find_cert(c, "www.v2."));
	ch_conf_free(c);
	ck_assert_uint_eq(e.n, 0);
}
END_TEST

START_TEST(test_renew_before_lifetime)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "defaults:\n"
				"  lifetime: 1d\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com]\n"
				"    lifetime: 1h\n"
				"    renew_before: 2h\n"
				"  api:\n"
				"    names: [api.example.com]\n"
				"    renew_before: 1d\n"
				"  ok:\n"
				"    names: [ok.example.com]\n"
				"    renew_before: 12h\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "main.yaml:7:3: certificates.www.renew_before: renew_before (2h) must be shorter "
		    "than lifetime (1h)");
	check_error(&e, 1,
		    "main.yaml:11:3: certificates.api.renew_before: renew_before (1d) must be "
		    "shorter than lifetime (1d)");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "defaults:\n"
				"  lifetime: 1h\n"
				"  renew_before: 90m\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0,
		    "main.yaml:3:17: defaults.renew_before: renew_before (1h30m) must be shorter "
		    "than lifetime (1h)");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_include_cycle)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "include: sub/a.yaml\n");
	write_file("sub/a.yaml", "include: [b.yaml]\n");
	write_file("sub/b.yaml", "include: ../main.yaml\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "sub/b.yaml:1:10: include: include cycle: %s -> %s -> %s -> %s",
		    tpath("main.yaml"), tpath("sub/a.yaml"), tpath("sub/b.yaml"),
		    tpath("sub/../main.yaml"));
	ch_conf_errors_clear(&e);

	/* A glob that matches the including file itself. */
	write_file("main.yaml", "include: \"*.yaml\"\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:1:10: include: include cycle: %s -> %s", tpath("main.yaml"),
		    tpath("main.yaml"));
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_include_depth)
{
	struct ch_conf_errors e = { 0 };
	char name[32], body[64];

	write_file("main.yaml", "include: i1.yaml\n");
	for (int i = 1; i <= 10; i++) {
		snprintf(name, sizeof(name), "i%d.yaml", i);
		snprintf(body, sizeof(body), "include: i%d.yaml\n", i + 1);
		write_file(name, body);
	}
	write_file("i11.yaml", "{}\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "i8.yaml:1:10: include: includes nested deeper than 8 levels");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_global_in_include)
{
	struct ch_conf_errors e = { 0 };

	write_file("main.yaml", "include: conf.d/*.yaml\n");
	write_file("conf.d/x.yaml", "cas:\n"
				    "  local:\n"
				    "    type: local\n"
				    "state_dir: /srv/x\n"
				    "defaults:\n"
				    "  ca: local\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0,
		    "conf.d/x.yaml:4:1: state_dir: 'state_dir' belongs in the main configuration "
		    "file %s; included files may only contain include, cas, targets, "
		    "certificates and notifiers",
		    tpath("main.yaml"));
	check_error(&e, 1,
		    "conf.d/x.yaml:5:1: defaults: 'defaults' belongs in the main configuration "
		    "file %s; included files may only contain include, cas, targets, "
		    "certificates and notifiers",
		    tpath("main.yaml"));
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_invalid_dns_name)
{
	struct ch_conf_errors e = { 0 };
	char longlabel[80];

	memset(longlabel, 'a', 64);
	longlabel[64] = '\0';
	write_file("main.yaml", "cas:\n"
				"  local:\n"
				"    type: local\n"
				"certificates:\n"
				"  www:\n"
				"    names:\n"
				"      - foo_bar.example.com\n"
				"      - -lead.example.com\n"
				"      - trail-.example.com\n"
				"      - a..b\n"
				"      - foo.*.example.com\n"
				"      - example.com.\n"
				"      - ok.example.com\n"
				"      - OK.example.com\n"
				"  empty:\n"
				"    names: []\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 8);
	check_error(&e, 0,
		    "main.yaml:7:9: certificates.www.names: invalid DNS name 'foo_bar.example.com': "
		    "invalid character '_'; expected a host name such as www.example.com or an IP "
		    "address");
	check_error(&e, 1,
		    "main.yaml:8:9: certificates.www.names: invalid DNS name '-lead.example.com': a "
		    "label starts with '-'; expected a host name such as www.example.com or an IP "
		    "address");
	ck_assert(strstr(e.v[2].message, "a label ends with '-'"));
	ck_assert(strstr(e.v[3].message, "empty label"));
	ck_assert(strstr(e.v[4].message, "invalid character '*'"));
	ck_assert(strstr(e.v[5].message, "empty label"));
	check_error(&e, 6, "main.yaml:14:9: certificates.www.names: name 'OK.example.com' is listed twice");
	check_error(&e, 7,
		    "main.yaml:16:12: certificates.empty.names: expected at least one DNS name or IP "
		    "address, got none");
	ch_conf_errors_clear(&e);

	{
		char buf[512];

		snprintf(buf, sizeof(buf),
			 "cas:\n  local:\n    type: local\ncertificates:\n  www:\n"
			 "    names: [%s.example.com]\n",
			 longlabel);
		write_file("main.yaml", buf);
	}
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	ck_assert(strstr(e.v[0].message, "a label is longer than 63 characters"));
	ch_conf_errors_clear(&e);

	/* Long lists are checked for repeats too. */
	{
		char buf[2048];
		int k = snprintf(buf, sizeof(buf), "cas: {local: {type: local}}\n"
						   "certificates:\n  www:\n    names:\n");

		for (int i = 0; i < 20; i++)
			k += snprintf(buf + k, sizeof(buf) - (size_t)k, "      - h%d.example.com\n", i);
		snprintf(buf + k, sizeof(buf) - (size_t)k, "      - H7.example.com\n");
		write_file("main.yaml", buf);
	}
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:25:9: certificates.www.names: name 'H7.example.com' is listed twice");
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_main_file_missing)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = (struct ch_conf *)0x1;

	ck_assert_int_eq(ch_conf_load(tpath("nope.yaml"), &c, &e), -ENOENT);
	ck_assert_ptr_eq(c, (struct ch_conf *)0x1);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.v[0].file, tpath("nope.yaml"));
	ck_assert_uint_eq(e.v[0].line, 0);
	{
		char *s = ch_conf_error_format(&e.v[0]);
		char want[PATH_MAX + 128];

		snprintf(want, sizeof(want), "%s: cannot read configuration: %s", tpath("nope.yaml"),
			 strerror(ENOENT));
		ck_assert_str_eq(s, want);
		free(s);
	}
	ch_conf_errors_clear(&e);

	/* An include naming a file that exists but cannot be read. */
	write_file("main.yaml", "include: [dir]\n");
	mkdir(tpath("dir"), 0755);
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:1:11: include: cannot read included file %s: %s", tpath("dir"),
		    strerror(EISDIR));
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_include_missing)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;

	/* A file name that names nothing is an error at the include entry. */
	write_file("main.yaml", "include:\n"
				"  - conf.d/*.yaml\n"
				"  - missing.yaml\n"
				"  - sub/inc.yaml\n"
				"cas: {local: {type: local}}\n");
	write_file("sub/inc.yaml", "include: nope/x.yaml\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 2);
	check_error(&e, 0, "main.yaml:3:5: include: include file %s does not exist",
		    tpath("missing.yaml"));
	check_error(&e, 1, "sub/inc.yaml:1:10: include: include file %s does not exist",
		    tpath("sub/nope/x.yaml"));
	ch_conf_errors_clear(&e);

	/* One that cannot be looked at says why. */
	write_file("main.yaml", "include: main.yaml/x.yaml\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:1:10: include: cannot read included file %s: %s",
		    tpath("main.yaml/x.yaml"), strerror(ENOTDIR));
	ch_conf_errors_clear(&e);

	/* Patterns with *, ? or [ may match nothing. */
	write_file("main.yaml", "include:\n"
				"  - none/*.yaml\n"
				"  - \"x?.yaml\"\n"
				"  - \"[ab]-missing.yaml\"\n"
				"cas: {local: {type: local}}\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	ck_assert_uint_eq(c->n_cas, 1);
	ch_conf_free(c);
	ck_assert_uint_eq(e.n, 0);
}
END_TEST

/* ---- hostile input ------------------------------------------------------ */

START_TEST(test_aliases_and_depth)
{
	struct ch_conf_errors e = { 0 };
	char *deep;
	size_t n = 40;

	write_file("main.yaml", "defaults: &d\n"
				"  lifetime: 1d\n"
				"certificates:\n"
				"  www:\n"
				"    names: *d\n"
				"cas: {local: {type: local}}\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:5:12: aliases are not supported");
	ch_conf_errors_clear(&e);

	deep = calloc(1, 2 * n + 64);
	strcpy(deep, "certificates: ");
	for (size_t i = 0; i < n; i++)
		strcat(deep, "[");
	for (size_t i = 0; i < n; i++)
		strcat(deep, "]");
	strcat(deep, "\n");
	write_file("main.yaml", deep);
	free(deep);
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:1:46: nesting deeper than 32 levels is not supported");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "--- {}\n--- {}\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:2:1: only one YAML document per file is supported");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "- a\n- b\n");
	load_fail("main.yaml", &e);
	check_error(&e, 0,
		    "main.yaml:1:1: expected a mapping of configuration keys at the top level, got a "
		    "sequence");
	ch_conf_errors_clear(&e);

	write_file("main.yaml", "certificates: !!map\n  ? [a]\n  : x\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0, "main.yaml:2:5: certificates: expected a name as key, got a sequence");
	ch_conf_errors_clear(&e);
}
END_TEST

static const char fuzz_seed[] = "state_dir: /var/lib/x\n"
				"include: [\"c/*.yaml\"]\n"
				"defaults: {ca: local, lifetime: 90d, targets: [f]}\n"
				"cas:\n"
				"  local: {type: local, common_name: \"CA\", key_type: ed25519}\n"
				"targets:\n"
				"  f: {type: file, cert: \"{name}.crt\", mode: \"0640\"}\n"
				"  r: {type: reload, pidfile: /run/x.pid, signal: 1}\n"
				"  e: {type: exec, command: [/bin/true], timeout: 5s}\n"
				"certificates:\n"
				"  www:\n"
				"    names: [www.example.com, \"::1\"]\n"
				"    renew_before: 1d\n"
				"    reuse_key: on\n"
				"    targets: [f, r, e]\n"
				"  'x': {names: y.example}\n";

START_TEST(test_mutations)
{
	static const char junk[] = "[]{}:,-&*!|>'\"%@`#? \n\t\0\x80\xff~0a";
	size_t len = sizeof(fuzz_seed) - 1;
	unsigned seed = 12345;
	char *buf = malloc(len + 64);

	/* The seed itself is valid. */
	{
		struct ch_conf_errors e = { 0 };
		struct ch_conf *c = NULL;

		write_file("main.yaml", fuzz_seed);
		ck_assert_int_eq(load("main.yaml", &c, &e), 0);
		ch_conf_free(c);
	}

	for (int round = 0; round < 1500; round++) {
		struct ch_conf_errors e = { 0 };
		struct ch_conf *c = NULL;
		size_t n = len;
		int edits = 1 + (int)(rand_r(&seed) % 4);
		FILE *f;

		memcpy(buf, fuzz_seed, len);
		for (int k = 0; k < edits; k++) {
			size_t at = rand_r(&seed) % n;

			switch (rand_r(&seed) % 3) {
			case 0:
				buf[at] = junk[rand_r(&seed) % (sizeof(junk) - 1)];
				break;
			case 1:
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
				break;
			default:
				if (n < len + 60) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = junk[rand_r(&seed) % (sizeof(junk) - 1)];
					n++;
				}
				break;
			}
		}
		f = fopen(tpath("main.yaml"), "w");
		ck_assert_ptr_nonnull(f);
		fwrite(buf, 1, n, f);
		fclose(f);

		if (load("main.yaml", &c, &e) == 0) {
			ck_assert_uint_eq(e.n, 0);
			ch_conf_free(c);
		} else {
			ck_assert_uint_gt(e.n, 0);
			for (size_t i = 0; i < e.n; i++) {
				char *s = ch_conf_error_format(&e.v[i]);

				ck_assert_ptr_nonnull(s);
				ck_assert_ptr_nonnull(e.v[i].message);
				free(s);
			}
		}
		ch_conf_errors_clear(&e);
	}
	free(buf);
}
END_TEST

/* ---- scale -------------------------------------------------------------- */

/* Timing means nothing under valgrind or the sanitizers. */
static bool
under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#endif
	return (p && strstr(p, "valgrind")) || getenv("CH_TEST_NO_TIMING");
}

START_TEST(test_many_certificates)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	size_t per_file = under_valgrind() ? 2500 : 25000, files = 4;
	struct timespec t0, t1;
	double secs;

	write_file("main.yaml", "include: certs/*.yaml\n"
				"defaults:\n"
				"  targets: [web-files]\n"
				"cas:\n"
				"  local:\n"
				"    type: local\n"
				"targets:\n"
				"  web-files:\n"
				"    type: file\n"
				"    cert: /etc/ssl/{name}.crt\n");
	for (size_t f = 0; f < files; f++) {
		char name[64];
		FILE *fp;

		snprintf(name, sizeof(name), "certs/%02zu.yaml", f);
		write_file(name, "");
		fp = fopen(tpath(name), "w");
		ck_assert_ptr_nonnull(fp);
		fputs("certificates:\n", fp);
		for (size_t i = 0; i < per_file; i++)
			fprintf(fp,
				"  host-%zu-%zu:\n"
				"    names: [host-%zu-%zu.example.com, 10.%zu.%zu.%zu]\n"
				"    lifetime: 30d\n",
				f, i, f, i, f, i / 256, i % 256);
		fclose(fp);
	}

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	if (load("main.yaml", &c, &e) < 0)
		dump_errors(&e);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "# %zu certificates loaded in %.3f s of CPU time\n", per_file * files, secs);

	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->n_certs, per_file * files);
	ck_assert_str_eq(c->certs[per_file * files - 1].s.targets[0], "web-files");
	for (size_t i = 1; i < c->n_certs; i++)
		ck_assert_int_lt(strcmp(c->certs[i - 1].name, c->certs[i].name), 0);
	ck_assert_str_eq(ch_conf_find_cert(c, "host-3-17")->name, "host-3-17");
	ck_assert_str_eq(ch_conf_find_cert(c, "host-0-0")->name, "host-0-0");
	ck_assert_ptr_null(ch_conf_find_cert(c, "host-9-9"));
	ch_conf_free(c);
	if (!under_valgrind())
		ck_assert_double_lt(secs, 1.0);

	/* The same names again in another file: every one is a duplicate. */
	write_file("certs/99-dup.yaml", "certificates:\n  host-0-7:\n    names: [a.example]\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	check_error(&e, 0,
		    "certs/99-dup.yaml:2:3: certificates.host-0-7: duplicate certificate 'host-0-7' "
		    "(first defined at %s:23:3)",
		    tpath("certs/00.yaml"));
	ch_conf_errors_clear(&e);
}
END_TEST

/* ---- small helpers ------------------------------------------------------ */

START_TEST(test_key_type_strings)
{
	static const char *const names[] = { "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072",
					     "ed25519" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		ck_assert_int_eq(ch_key_type_from_string(names[i]), (int)i);
		ck_assert_str_eq(ch_key_type_to_string((enum ch_key_type)i), names[i]);
	}
	ck_assert_int_eq(ch_key_type_from_string("rsa-1024"), _CH_KEY_TYPE_INVALID);
	ck_assert_int_eq(ch_key_type_from_string(NULL), _CH_KEY_TYPE_INVALID);
	ck_assert_ptr_null(ch_key_type_to_string(_CH_KEY_TYPE_MAX));
	ck_assert_ptr_null(ch_key_type_to_string(_CH_KEY_TYPE_INVALID));
}
END_TEST

START_TEST(test_error_format)
{
	struct ch_conf_error e = { .file = "/a.yaml", .line = 3, .column = 7, .key = "x.y",
				   .message = "bad" };
	char *s;

	s = ch_conf_error_format(&e);
	ck_assert_str_eq(s, "/a.yaml:3:7: x.y: bad");
	free(s);
	e.key = "";
	e.line = e.column = 0;
	s = ch_conf_error_format(&e);
	ck_assert_str_eq(s, "/a.yaml: bad");
	free(s);
}
END_TEST

START_TEST(test_value_types)
{
	struct ch_conf_errors e = { 0 };
	struct ch_conf *c = NULL;
	const struct ch_conf_target *t;

	write_file("main.yaml", "targets:\n"
				"  a: {type: reload, pidfile: p, signal: \"15\"}\n"
				"  b: {type: reload, pidfile: p, signal: hup}\n"
				"  c: {type: exec, command: /bin/true}\n"
				"  d: {type: file, key: k, mode: \"640\", key_mode: \"0\"}\n"
				"cas:\n"
				"  local: {type: local, key_type: rsa-3072, lifetime: 1h30m}\n");
	ck_assert_int_eq(load("main.yaml", &c, &e), 0);
	t = ch_conf_find_target(c, "a");
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "signal", int), SIGTERM);
	t = ch_conf_find_target(c, "b");
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "signal", int), SIGHUP);
	t = ch_conf_find_target(c, "c");
	ck_assert_str_eq(OPT(t->ops->keys, t->opts, "command", char **)[0], "/bin/true");
	ck_assert_ptr_null(OPT(t->ops->keys, t->opts, "command", char **)[1]);
	t = ch_conf_find_target(c, "d");
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "mode", int), 0640);
	ck_assert_int_eq(OPT(t->ops->keys, t->opts, "key_mode", int), 0);
	ck_assert_int_eq(OPT(c->cas[0].ops->keys, c->cas[0].opts, "key_type", int),
			 CH_KEY_RSA_3072);
	ck_assert_int_eq(OPT(c->cas[0].ops->keys, c->cas[0].opts, "lifetime", int64_t), 5400);
	ch_conf_free(c);

	write_file("main.yaml", "targets:\n"
				"  a: {type: reload, pidfile: p, signal: 65}\n"
				"  b: {type: reload, pidfile: p, signal: SIGFOO}\n"
				"  c: {type: exec, command: [/bin/true, {x: 1}]}\n"
				"  d: {type: file, key: \"\"}\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 4);
	ck_assert_str_eq(e.v[0].key, "targets.a.signal");
	ck_assert(strstr(e.v[0].message, "got \"65\""));
	ck_assert_str_eq(e.v[1].key, "targets.b.signal");
	check_error(&e, 2, "main.yaml:4:40: targets.c.command: expected a string in the list, got a mapping");
	ck_assert_str_eq(e.v[3].key, "targets.d.key");
	ck_assert(strstr(e.v[3].message, "got an empty value"));
	ch_conf_errors_clear(&e);
}
END_TEST

START_TEST(test_check_hook)
{
	struct ch_conf_errors e = { 0 };

	/* The file target's own check: at least one file to write. */
	write_file("main.yaml", "targets:\n"
				"  web-files:\n"
				"    type: file\n"
				"    owner: www-data\n");
	load_fail("main.yaml", &e);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.v[0].key, "targets.web-files");
	ck_assert_uint_eq(e.v[0].line, 3);
	ck_assert_uint_eq(e.v[0].column, 5);
	ch_conf_errors_clear(&e);
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_valid_full);
	tcase_add_test(tc, test_valid_minimal);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_bad_duration);
	tcase_add_test(tc, test_bad_key_type);
	tcase_add_test(tc, test_bad_mode);
	tcase_add_test(tc, test_endpoints);
	tcase_add_test(tc, test_unknown_ca);
	tcase_add_test(tc, test_ca_list);
	tcase_add_test(tc, test_rehearsal);
	tcase_add_test(tc, test_unknown_target);
	tcase_add_test(tc, test_unknown_type);
	tcase_add_test(tc, test_missing_required);
	tcase_add_test(tc, test_duplicate_across_files);
	tcase_add_test(tc, test_yaml_syntax);
	tcase_add_test(tc, test_many_errors);
	tcase_add_test(tc, test_dot_names);
	tcase_add_test(tc, test_renew_before_lifetime);
	tcase_add_test(tc, test_include_cycle);
	tcase_add_test(tc, test_include_depth);
	tcase_add_test(tc, test_global_in_include);
	tcase_add_test(tc, test_invalid_dns_name);
	tcase_add_test(tc, test_main_file_missing);
	tcase_add_test(tc, test_include_missing);
	tcase_add_test(tc, test_aliases_and_depth);
	tcase_add_test(tc, test_mutations);
	tcase_add_test(tc, test_many_certificates);
	tcase_add_test(tc, test_key_type_strings);
	tcase_add_test(tc, test_error_format);
	tcase_add_test(tc, test_value_types);
	tcase_add_test(tc, test_check_hook);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
