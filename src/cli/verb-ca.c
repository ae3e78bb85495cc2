/* SPDX-License-Identifier: MIT */
/*
 * certherd ca: the offline CA hierarchy with keys in PKCS#11 tokens, run
 * in the CLI process (no daemon): init-root, new-intermediate,
 * sign-intermediate and import. Each step prints a record of what it did
 * and, with --config, appends it to the inventory's event log. The PIN is
 * read by src/lib/pkcs11.c from a file or the environment and never shown.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certherd/ceremony.h"
#include "certherd/conf.h"
#include "certherd/crypto.h"
#include "certherd/macro.h"
#include "certherd/pkcs11.h"
#include "certherd/store.h"
#include "certherd/util.h"
#include "cli.h"

#define CA_FILE_MAX (1024 * 1024)
#define CA_DNS_MAX 32

struct ca_args {
	const char *module, *token, *token_serial, *pin_file, *pin_env, *key_label, *key_id;
	const char *key_type, *subject, *out, *root, *csr, *ca, *cert, *chain;
	int days, path_len;
	char *dns[CA_DNS_MAX + 1];
	size_t n_dns;
};

static int
ca_fail(const char *sub, const struct ch_err *err)
{
	fprintf(stderr, "certherd ca %s: %s\n", sub, err->msg);
	return CLI_EXIT_ERROR;
}

static int
ca_int(const char *s, int min, int max, int *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* --name VALUE or --name=VALUE into a; 0, or -EINVAL after printing why. */
static int
ca_parse(const char *sub, int argc, char **argv, struct ca_args *a)
{
	static const struct {
		const char *name;
		size_t off;
	} strs[] = {
		{ "module", offsetof(struct ca_args, module) },
		{ "token", offsetof(struct ca_args, token) },
		{ "token-serial", offsetof(struct ca_args, token_serial) },
		{ "pin-file", offsetof(struct ca_args, pin_file) },
		{ "pin-env", offsetof(struct ca_args, pin_env) },
		{ "key-label", offsetof(struct ca_args, key_label) },
		{ "key-id", offsetof(struct ca_args, key_id) },
		{ "key-type", offsetof(struct ca_args, key_type) },
		{ "subject", offsetof(struct ca_args, subject) },
		{ "out", offsetof(struct ca_args, out) },
		{ "root", offsetof(struct ca_args, root) },
		{ "csr", offsetof(struct ca_args, csr) },
		{ "ca", offsetof(struct ca_args, ca) },
		{ "cert", offsetof(struct ca_args, cert) },
		{ "chain", offsetof(struct ca_args, chain) },
	};

	const char *arg = NULL;

	a->path_len = -1;
	for (int i = 0; i < argc; i++) {
		char name[32];
		const char *val, *eq;
		bool found = false;

		arg = argv[i];
		if (strncmp(argv[i], "--", 2) != 0)
			goto bad;
		eq = strchr(argv[i], '=');
		if (eq) {
			snprintf(name, sizeof(name), "%.*s", (int)(eq - argv[i] - 2), argv[i] + 2);
			val = eq + 1;
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "certherd ca %s: %s needs a value\n", sub, argv[i]);
				return -EINVAL;
			}
			snprintf(name, sizeof(name), "%s", argv[i] + 2);
			val = argv[++i];
		}
		for (size_t k = 0; k < ARRAY_SIZE(strs); k++)
			if (streq(name, strs[k].name)) {
				*(const char **)((char *)a + strs[k].off) = val;
				found = true;
			}
		if (found)
			continue;
		if (streq(name, "days")) {
			if (ca_int(val, 1, CH_CEREMONY_DAYS_MAX, &a->days) < 0) {
				fprintf(stderr, "certherd ca %s: --days must be 1 to %d\n", sub,
					CH_CEREMONY_DAYS_MAX);
				return -EINVAL;
			}
		} else if (streq(name, "path-len")) {
			if (ca_int(val, 0, 16, &a->path_len) < 0) {
				fprintf(stderr, "certherd ca %s: --path-len must be 0 to 16\n", sub);
				return -EINVAL;
			}
		} else if (streq(name, "permitted-dns")) {
			if (a->n_dns >= CA_DNS_MAX) {
				fprintf(stderr, "certherd ca %s: at most %d --permitted-dns\n", sub,
					CA_DNS_MAX);
				return -EINVAL;
			}
			a->dns[a->n_dns++] = (char *)val;
		} else {
			goto bad;
		}
	}
	a->dns[a->n_dns] = NULL;
	return 0;
bad:
	fprintf(stderr, "certherd ca %s: unexpected argument '%s' (see certherd(1))\n", sub,
		arg ? arg : "");
	return -EINVAL;
}

static int
ca_need(const char *sub, const char *what, const char *val)
{
	if (val)
		return 0;
	fprintf(stderr, "certherd ca %s: --%s is required\n", sub, what);
	return -EINVAL;
}

/*
 * --out must be a new file in a directory we can write: checked before a
 * key is generated or the token is asked to sign, so that a step never
 * leaves a new key behind for want of a place to write its certificate,
 * and never replaces a certificate or request of an earlier ceremony.
 */
static int
ca_check_out(const char *out, struct ch_err *err)
{
	_cleanup_free_ char *copy = ch_xstrdup(out);
	char *slash = strrchr(copy, '/');
	const char *dir = copy;

	if (access(out, F_OK) == 0)
		return ch_err_set(err, -EEXIST, "%s already exists; remove it or pick another --out",
				  out);
	if (!slash)
		dir = ".";
	else if (slash == copy)
		dir = "/";
	else
		*slash = '\0';
	if (access(dir, W_OK | X_OK) < 0)
		return ch_err_set(err, -errno, "cannot write to directory %s for --out: %s", dir,
				  strerror(errno));
	return 0;
}

/* The token and key named on the command line. */
static int
ca_token(const char *sub, const struct ca_args *a, struct ch_p11 **ret, struct ch_err *err)
{
	struct ch_p11_config cfg = {
		.module = a->module,
		.token_label = a->token,
		.token_serial = a->token_serial,
		.key_label = a->key_label,
		.key_id = a->key_id,
		.pin_file = a->pin_file,
		.pin_env = a->pin_env,
	};

	if (ca_need(sub, "module", a->module) < 0)
		return -EINVAL;
	if (!a->token == !a->token_serial || !a->pin_file == !a->pin_env ||
	    (!a->key_label && !a->key_id)) {
		fprintf(stderr, "certherd ca %s: give --token (or --token-serial), --pin-file (or "
				"--pin-env) and --key-label (and/or --key-id)\n", sub);
		return -EINVAL;
	}
	return ch_p11_new(&cfg, ret, err);
}

/*
 * With --config, the inventory whose event log records each step: opened
 * before the step, so that a step never fails for want of it after it made
 * a key or wrote a file.
 */
struct ca_log {
	const char *config;
	struct ch_conf *conf;
	struct ch_store *store;
};

static int
ca_log_open(const struct cli *c, const char *sub, struct ca_log *log)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_err err = { "" };
	int r;

	if (!c->config)
		return 0;
	log->config = c->config;
	r = ch_conf_load(c->config, &log->conf, &errs);
	ch_conf_errors_clear(&errs);
	if (r < 0) {
		fprintf(stderr, "certherd ca %s: cannot read %s; run 'certherd check-config %s'\n",
			sub, c->config, c->config);
		return r;
	}
	r = ch_mkdir_p(log->conf->state_dir, 0700);
	if (r < 0) {
		fprintf(stderr, "certherd ca %s: cannot create %s: %s\n", sub,
			log->conf->state_dir, strerror(-r));
		return r;
	}
	r = ch_store_open(log->conf->database, &log->store, &err);
	if (r < 0) {
		fprintf(stderr, "certherd ca %s: cannot open the inventory %s to record the step: "
				"%s\n", sub, log->conf->database, err.msg);
		return r;
	}
	return 0;
}

static void
ca_log_close(struct ca_log *log)
{
	ch_store_free(log->store);
	ch_conf_free(log->conf);
}

/* Prints the record of a step and appends it to the event log (stage "ca"). */
static int
ca_record(const struct ca_log *log, const char *event, const char *detail)
{
	int r;

	printf("%s: %s\n", event, detail);
	if (!log->store)
		return 0;
	r = ch_store_event_add(log->store, ch_now(), NULL, "ca", event, detail);
	if (r < 0) {
		fprintf(stderr, "certherd ca: cannot record the event in %s: %s\n",
			log->conf->database, strerror(-r));
		return r;
	}
	printf("recorded in %s\n", log->conf->database);
	return 0;
}

static char *
ca_describe(X509 *x)
{
	struct ch_cert_info info = { 0 };
	char until[32] = "?";
	struct tm tm;
	time_t t;
	char *s;

	if (ch_cert_info_get(x, &info) < 0)
		return ch_xstrdup("(unreadable certificate)");
	t = (time_t)info.not_after;
	if (gmtime_r(&t, &tm))
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	s = ch_xasprintf("\"%s\" issued by \"%s\", serial %s, sha256 %s, valid until %s",
			 info.subject, info.issuer, info.serial, info.fingerprint, until);
	ch_cert_info_done(&info);
	return s;
}

static int
ca_write(const char *path, const char *pem, struct ch_err *err)
{
	return ch_write_file_atomic(path, pem, strlen(pem), 0644, (uid_t)-1, (gid_t)-1, err);
}

static int
ca_read_cert(const char *path, X509 **ret, struct ch_err *err)
{
	_cleanup_free_ char *pem = NULL;
	struct ch_err perr = { "" };
	size_t len = 0;
	int r;

	r = ch_read_file(path, CA_FILE_MAX, &pem, &len);
	if (r < 0)
		return ch_err_set(err, r, "cannot read %s: %s", path, strerror(-r));
	r = ch_cert_from_pem(pem, len, ret, &perr);
	if (r < 0)
		return ch_err_set(err, r, "%s: %s", path, perr.msg);
	return 0;
}

/* Generates the key named by a (refusing to reuse an existing one). */
static int
ca_new_key(const char *sub, const struct ca_args *a, struct ch_p11 *tok, EVP_PKEY **ret_pub,
	   struct ch_err *err)
{
	enum ch_key_type type = ch_key_type_from_string(a->key_type);
	int r;

	if ((int)type < 0 || type == CH_KEY_ED25519)
		return ch_err_set(err, -EINVAL,
				  "--key-type must be ecdsa-p384, ecdsa-p256, rsa-3072 or rsa-2048");
	r = ch_p11_find_key(tok, NULL, err);
	if (r >= 0 || r == -ENOTUNIQ || r == -EKEYREJECTED)
		return ch_err_set(err, -EEXIST,
				  "the %s already exists in PKCS#11 %s; a ceremony makes a new "
				  "key, so pick another --key-label", ch_p11_key_name(tok),
				  ch_p11_token_name(tok));
	if (r != -ENOKEY)
		return r;
	return ch_p11_generate_key(tok, type, ret_pub, err);
}

static int
ca_init_root(const struct ca_log *log, const char *sub, const struct ca_args *a)
{
	_cleanup_free_ char *pem = NULL, *desc = NULL, *detail = NULL;
	struct ch_err err = { "" };
	struct ch_p11 *tok = NULL;
	struct ch_signer signer;
	X509_NAME *subject = NULL;
	EVP_PKEY *pub = NULL;
	X509 *x = NULL;
	int r;

	if (ca_need(sub, "key-type", a->key_type) < 0 || ca_need(sub, "subject", a->subject) < 0 ||
	    ca_need(sub, "days", a->days ? "" : NULL) < 0 || ca_need(sub, "out", a->out) < 0)
		return CLI_EXIT_ERROR;
	r = ch_ceremony_parse_subject(a->subject, &subject, &err);
	if (r >= 0)
		r = ca_check_out(a->out, &err);
	if (r >= 0)
		r = ca_token(sub, a, &tok, &err);
	if (r == -EINVAL && !err.msg[0])
		goto out;
	if (r >= 0)
		r = ca_new_key(sub, a, tok, &pub, &err);
	if (r >= 0)
		r = ch_p11_signer(tok, &signer, &err);
	if (r >= 0)
		r = ch_ceremony_make_root(pub, &signer, subject, a->days, &x, &err);
	if (r >= 0 && ch_cert_to_pem(x, &pem) < 0)
		r = ch_err_set(&err, -ENOMEM, "cannot encode the root certificate");
	if (r >= 0)
		r = ca_write(a->out, pem, &err);
	if (r < 0)
		goto out;
	desc = ca_describe(x);
	detail = ch_xasprintf("root %s; %s %s in PKCS#11 %s (sensitive, never "
			      "extractable); written to %s", desc, a->key_type,
			      ch_p11_key_name(tok), ch_p11_token_name(tok), a->out);
	r = ca_record(log, "ca-init-root", detail);
out:
	X509_free(x);
	EVP_PKEY_free(pub);
	X509_NAME_free(subject);
	ch_p11_free(tok);
	if (r < 0 && err.msg[0])
		return ca_fail(sub, &err);
	return r < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

static int
ca_new_intermediate(const struct ca_log *log, const char *sub, const struct ca_args *a)
{
	_cleanup_free_ char *detail = NULL;
	struct ch_err err = { "" };
	struct ch_p11 *tok = NULL;
	struct ch_signer signer;
	X509_NAME *subject = NULL;
	EVP_PKEY *pub = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char *pem = NULL;
	long len;
	int r;

	if (ca_need(sub, "key-type", a->key_type) < 0 || ca_need(sub, "subject", a->subject) < 0 ||
	    ca_need(sub, "out", a->out) < 0)
		return CLI_EXIT_ERROR;
	r = ch_ceremony_parse_subject(a->subject, &subject, &err);
	if (r >= 0)
		r = ca_check_out(a->out, &err);
	if (r >= 0)
		r = ca_token(sub, a, &tok, &err);
	if (r == -EINVAL && !err.msg[0])
		goto out;
	if (r >= 0)
		r = ca_new_key(sub, a, tok, &pub, &err);
	if (r >= 0)
		r = ch_p11_signer(tok, &signer, &err);
	if (r >= 0)
		r = ch_ceremony_make_csr(pub, &signer, subject, &req, &err);
	if (r < 0)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_X509_REQ(bio, req) || (len = BIO_get_mem_data(bio, &pem)) <= 0) {
		r = ch_err_set_ssl(&err, -ENOMEM, "cannot encode the request");
		goto out;
	}
	r = ch_write_file_atomic(a->out, pem, (size_t)len, 0644, (uid_t)-1, (gid_t)-1, &err);
	if (r < 0)
		goto out;
	detail = ch_xasprintf("request for \"%s\"; %s %s in PKCS#11 %s (sensitive, never "
			      "extractable); written to %s", a->subject, a->key_type,
			      ch_p11_key_name(tok), ch_p11_token_name(tok), a->out);
	r = ca_record(log, "ca-new-intermediate", detail);
out:
	BIO_free(bio);
	X509_REQ_free(req);
	EVP_PKEY_free(pub);
	X509_NAME_free(subject);
	ch_p11_free(tok);
	if (r < 0 && err.msg[0])
		return ca_fail(sub, &err);
	return r < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

static int
ca_read_csr(const char *path, X509_REQ **ret, struct ch_err *err)
{
	_cleanup_free_ char *pem = NULL;
	size_t len = 0;
	BIO *bio;
	int r;

	r = ch_read_file(path, CA_FILE_MAX, &pem, &len);
	if (r < 0)
		return ch_err_set(err, r, "cannot read %s: %s", path, strerror(-r));
	bio = BIO_new_mem_buf(pem, (int)len);
	*ret = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!*ret)
		return ch_err_set_ssl(err, -EINVAL, "not a PEM certificate request");
	return 0;
}

static int
ca_sign_intermediate(const struct ca_log *log, const char *sub, const struct ca_args *a)
{
	_cleanup_free_ char *pem = NULL, *desc = NULL, *detail = NULL;
	struct ch_ceremony_sub opts = { .days = a->days, .path_len = a->path_len };
	struct ch_err err = { "" };
	struct ch_p11 *tok = NULL;
	struct ch_signer signer;
	X509_REQ *req = NULL;
	X509 *root = NULL, *x = NULL;
	int r;

	if (ca_need(sub, "root", a->root) < 0 || ca_need(sub, "csr", a->csr) < 0 ||
	    ca_need(sub, "days", a->days ? "" : NULL) < 0 || ca_need(sub, "out", a->out) < 0)
		return CLI_EXIT_ERROR;
	opts.permitted_dns = a->n_dns ? a->dns : NULL;
	r = ca_check_out(a->out, &err);
	if (r >= 0)
		r = ca_read_cert(a->root, &root, &err);
	if (r >= 0)
		r = ca_read_csr(a->csr, &req, &err);
	if (r >= 0 && (X509_REQ_get0_pubkey(req) == NULL ||
		       X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1)) {
		ERR_clear_error();
		r = ch_err_set(&err, -EBADMSG, "refused: the signature of %s does not verify",
			       a->csr);
	}
	if (r >= 0)
		r = ca_token(sub, a, &tok, &err);
	if (r == -EINVAL && !err.msg[0])
		goto out;
	if (r >= 0)
		r = ch_p11_find_key(tok, NULL, &err);
	if (r >= 0)
		r = ch_p11_signer(tok, &signer, &err);
	if (r >= 0)
		r = ch_ceremony_sign_sub(root, &signer, req, &opts, &x, &err);
	if (r >= 0 && ch_cert_to_pem(x, &pem) < 0)
		r = ch_err_set(&err, -ENOMEM, "cannot encode the certificate");
	if (r >= 0)
		r = ca_write(a->out, pem, &err);
	if (r < 0)
		goto out;
	desc = ca_describe(x);
	detail = ch_xasprintf("intermediate %s; path length %d, %zu permitted DNS subtree%s; "
			      "signed by the %s in PKCS#11 %s; written to %s", desc, a->path_len,
			      a->n_dns, a->n_dns == 1 ? "" : "s", ch_p11_key_name(tok),
			      ch_p11_token_name(tok), a->out);
	r = ca_record(log, "ca-sign-intermediate", detail);
out:
	X509_free(x);
	X509_free(root);
	X509_REQ_free(req);
	ch_p11_free(tok);
	if (r < 0 && err.msg[0])
		return ca_fail(sub, &err);
	return r < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

static int
ca_import(const struct ca_log *log, const char *sub, const struct ca_args *a)
{
	_cleanup_free_ char *cert_pem = NULL, *chain_pem = NULL, *path = NULL, *desc = NULL;
	_cleanup_free_ char *detail = NULL;
	struct ch_err err = { "" };
	const struct ch_conf *conf = log->conf;
	const struct ch_conf_ca *ca;
	size_t cert_len = 0, chain_len = 0;
	X509 *x = NULL;
	int r;

	if (ca_need(sub, "ca", a->ca) < 0 || ca_need(sub, "cert", a->cert) < 0)
		return CLI_EXIT_ERROR;
	if (!conf) {
		fprintf(stderr, "certherd ca %s: needs --config (the CA's token, key and "
				"certificate path are read from it)\n", sub);
		return CLI_EXIT_ERROR;
	}
	ca = ch_conf_find_ca(conf, a->ca);
	if (!ca) {
		r = ch_err_set(&err, -ENOENT, "no CA %s in %s", a->ca, log->config);
		goto out;
	}
	r = ch_read_file(a->cert, CA_FILE_MAX, &cert_pem, &cert_len);
	if (r < 0) {
		ch_err_set(&err, r, "cannot read %s: %s", a->cert, strerror(-r));
		goto out;
	}
	if (a->chain) {
		r = ch_read_file(a->chain, CA_FILE_MAX, &chain_pem, &chain_len);
		if (r < 0) {
			ch_err_set(&err, r, "cannot read %s: %s", a->chain, strerror(-r));
			goto out;
		}
	}
	r = ch_ca_pkcs11_import(ca, conf->state_dir, cert_pem, cert_len, chain_pem, chain_len,
				&path, &err);
	if (r < 0)
		goto out;
	r = ch_cert_from_pem(cert_pem, cert_len, &x, NULL);
	desc = r >= 0 ? ca_describe(x) : ch_xstrdup(a->cert);
	detail = ch_xasprintf("CA %s now uses %s%s%s; written to %s; run 'certherd reload' "
			      "for a running daemon", a->ca, desc, a->chain ? ", chain from " : "",
			      a->chain ? a->chain : "", path);
	r = ca_record(log, "ca-import", detail);
out:
	X509_free(x);
	if (r < 0 && err.msg[0])
		return ca_fail(sub, &err);
	return r < 0 ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

int
verb_ca(const struct cli *c, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(const struct ca_log *log, const char *sub, const struct ca_args *a);
	} steps[] = {
		{ "init-root", ca_init_root },
		{ "new-intermediate", ca_new_intermediate },
		{ "sign-intermediate", ca_sign_intermediate },
		{ "import", ca_import },
	};
	struct ca_args a = { 0 };
	struct ca_log log = { 0 };
	const char *sub = argv[0];
	int r = CLI_EXIT_ERROR;

	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		if (!streq(sub, steps[i].name))
			continue;
		if (ca_parse(sub, argc - 1, argv + 1, &a) >= 0 && ca_log_open(c, sub, &log) >= 0)
			r = steps[i].run(&log, sub, &a);
		ca_log_close(&log);
		return r;
	}
	fprintf(stderr, "certherd ca: unknown step '%s' (init-root, new-intermediate, "
			"sign-intermediate, import)\n", sub);
	return CLI_EXIT_ERROR;
}
