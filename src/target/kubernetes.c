/* SPDX-License-Identifier: MIT */
/*
 * Kubernetes API plumbing for the kubernetes target (certherd/kubernetes.h):
 * kubeconfig files (read with libyaml's document API: a kubeconfig is its
 * own format, not certherd configuration), the in-cluster service account
 * files, the server-side apply body of a TLS Secret, and the messages of
 * failed responses. Nothing here does network I/O.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "certherd/kubernetes.h"
#include "certherd/macro.h"
#include "certherd/util.h"

#define KUBE_FILE_MAX (4 * 1024 * 1024)
#define KUBE_SECRET_FILE_MAX (256 * 1024)

char *
ch_kube_free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
	return NULL;
}

void
ch_kube_auth_clear(struct ch_kube_auth *a)
{
	free(a->server);
	free(a->ca_pem);
	ch_kube_free_secret(a->token);
	free(a->cert_pem);
	ch_kube_free_secret(a->key_pem);
	free(a->namespace);
	free(a->who);
	*a = (struct ch_kube_auth){ 0 };
}

int
ch_kube_b64(const void *data, size_t len, char **ret)
{
	char *out;

	if (len > (size_t)INT32_MAX / 2)
		return -EINVAL;
	out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return -ENOMEM;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	*ret = out;
	return 0;
}

/* Decodes padded standard base64 (whitespace ignored); the result is NUL-terminated. */
static int
kube_unb64(const char *s, char **ret, size_t *ret_len)
{
	size_t n = 0, len = strlen(s);
	char *clean, *out;
	int w;

	clean = malloc(len + 1);
	if (!clean)
		return -ENOMEM;
	for (const char *p = s; *p; p++)
		if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
			clean[n++] = *p;
	clean[n] = '\0';
	if (n % 4 != 0 || n > (size_t)INT32_MAX) {
		ch_kube_free_secret(clean);
		return -EINVAL;
	}
	out = malloc(n / 4 * 3 + 1);
	if (!out) {
		ch_kube_free_secret(clean);
		return -ENOMEM;
	}
	w = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)clean, (int)n);
	if (w < 0) {
		ch_kube_free_secret(clean);
		free(out);
		return -EINVAL;
	}
	/* EVP_DecodeBlock counts the padding as output bytes. */
	if (n >= 1 && clean[n - 1] == '=')
		w--;
	if (n >= 2 && clean[n - 2] == '=')
		w--;
	out[w] = '\0';
	ch_kube_free_secret(clean);
	*ret = out;
	if (ret_len)
		*ret_len = (size_t)w;
	return 0;
}

/* ---- kubeconfig ---------------------------------------------------------- */

struct kube_doc {
	yaml_document_t doc;
	const char *dir;
	const char *context; /* chosen context name, for messages */
};

static yaml_node_t *
kube_get(struct kube_doc *d, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&d->doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE &&
		    strlen(key) == k->data.scalar.length &&
		    memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
			return yaml_document_get_node(&d->doc, p->value);
	}
	return NULL;
}

/* The text of a scalar value of map, NULL when absent, empty or not a scalar. */
static const char *
kube_str(struct kube_doc *d, yaml_node_t *map, const char *key)
{
	yaml_node_t *n = kube_get(d, map, key);

	if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0 ||
	    strlen((char *)n->data.scalar.value) != n->data.scalar.length)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* The `what` mapping of the entry called name in the list under key. */
static yaml_node_t *
kube_named(struct kube_doc *d, yaml_node_t *root, const char *key, const char *name,
	   const char *what)
{
	yaml_node_t *seq = kube_get(d, root, key);

	if (!seq || seq->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *i = seq->data.sequence.items.start;
	     i < seq->data.sequence.items.top; i++) {
		yaml_node_t *e = yaml_document_get_node(&d->doc, *i);
		const char *n = kube_str(d, e, "name");

		if (n && streq(n, name)) {
			yaml_node_t *m = kube_get(d, e, what);

			return m && m->type == YAML_MAPPING_NODE ? m : NULL;
		}
	}
	return NULL;
}

/*
 * PEM text from key-data (base64) or the file named by key, *ret NULL
 * when neither is set.
 */
static int
kube_material(struct kube_doc *d, yaml_node_t *map, const char *key, const char *where,
	      char **ret, struct ch_err *reterr)
{
	_cleanup_free_ char *data_key = NULL, *path = NULL;
	const char *v;
	int r;

	*ret = NULL;
	if (asprintf(&data_key, "%s-data", key) < 0)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	v = kube_str(d, map, data_key);
	if (v) {
		r = kube_unb64(v, ret, NULL);
		if (r == -EINVAL)
			return ch_err_set(reterr, r, "%s: %s is not valid base64", where, data_key);
		if (r < 0)
			return ch_err_set(reterr, r, "out of memory");
		return 0;
	}
	v = kube_str(d, map, key);
	if (!v)
		return 0;
	path = ch_path_join_abs(d->dir, v);
	if (!path)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	r = ch_read_file(path, KUBE_SECRET_FILE_MAX, ret, NULL);
	if (r < 0)
		return ch_err_set(reterr, r, "%s: cannot read %s %s: %s", where, key, path,
				  strerror(-r));
	return 0;
}

static int
kube_set(char **field, const char *v, struct ch_err *reterr)
{
	free(*field);
	*field = v ? strdup(v) : NULL;
	if (v && !*field)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	return 0;
}

/* Drops a trailing slash: paths are appended to server. */
static void
kube_trim_server(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

static int
kube_cluster(struct kube_doc *d, yaml_node_t *cluster, const char *name, struct ch_kube_auth *a,
	     struct ch_err *reterr)
{
	_cleanup_free_ char *where = NULL;
	const char *server = kube_str(d, cluster, "server"), *v;
	int r;

	if (asprintf(&where, "cluster '%s'", name) < 0)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!server)
		return ch_err_set(reterr, -EINVAL, "%s has no server", where);
	if (strncmp(server, "https://", 8) != 0)
		return ch_err_set(reterr, -EINVAL,
				  "%s: server %s is not an https:// URL (the token and the key "
				  "must not travel in clear text)",
				  where, server);
	v = kube_str(d, cluster, "insecure-skip-tls-verify");
	if (v && (streq(v, "true") || streq(v, "True") || streq(v, "yes")))
		return ch_err_set(reterr, -EINVAL,
				  "%s sets insecure-skip-tls-verify; certherd always verifies "
				  "the API server: give certificate-authority(-data)",
				  where);
	if (kube_str(d, cluster, "tls-server-name") || kube_str(d, cluster, "proxy-url"))
		return ch_err_set(reterr, -EOPNOTSUPP,
				  "%s: tls-server-name and proxy-url are not supported", where);
	r = kube_set(&a->server, server, reterr);
	if (r < 0)
		return r;
	kube_trim_server(a->server);
	return kube_material(d, cluster, "certificate-authority", where, &a->ca_pem, reterr);
}

static int
kube_user(struct kube_doc *d, yaml_node_t *user, const char *name, struct ch_kube_auth *a,
	  struct ch_err *reterr)
{
	_cleanup_free_ char *where = NULL;
	const char *v;
	int r;

	if (asprintf(&where, "user '%s'", name) < 0)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (kube_get(d, user, "exec"))
		return ch_err_set(reterr, -EOPNOTSUPP,
				  "%s uses an exec credential plugin, which certherd does not "
				  "run; give it a service account token or a client certificate",
				  where);
	if (kube_get(d, user, "auth-provider"))
		return ch_err_set(reterr, -EOPNOTSUPP,
				  "%s uses an auth-provider plugin, which certherd does not run; "
				  "give it a service account token or a client certificate",
				  where);
	if (kube_str(d, user, "username") || kube_str(d, user, "password"))
		return ch_err_set(reterr, -EOPNOTSUPP,
				  "%s uses basic authentication, which Kubernetes removed; give "
				  "it a token or a client certificate",
				  where);

	v = kube_str(d, user, "token");
	if (v) {
		r = kube_set(&a->token, v, reterr);
		if (r < 0)
			return r;
	} else if ((v = kube_str(d, user, "tokenFile"))) {
		_cleanup_free_ char *path = ch_path_join_abs(d->dir, v);

		if (!path)
			return ch_err_set(reterr, -ENOMEM, "out of memory");
		r = ch_read_file(path, KUBE_SECRET_FILE_MAX, &a->token, NULL);
		if (r < 0)
			return ch_err_set(reterr, r, "%s: cannot read tokenFile %s: %s", where,
					  path, strerror(-r));
		a->token[strcspn(a->token, "\r\n")] = '\0';
	}

	r = kube_material(d, user, "client-certificate", where, &a->cert_pem, reterr);
	if (r < 0)
		return r;
	r = kube_material(d, user, "client-key", where, &a->key_pem, reterr);
	if (r < 0)
		return r;
	if (!a->cert_pem != !a->key_pem)
		return ch_err_set(reterr, -EINVAL,
				  "%s: client-certificate and client-key go together; only %s "
				  "is set",
				  where, a->cert_pem ? "client-certificate" : "client-key");
	if (!a->token && !a->cert_pem)
		return ch_err_set(reterr, -EINVAL,
				  "%s has no credentials: set token, tokenFile or "
				  "client-certificate with client-key",
				  where);
	return 0;
}

int
ch_kube_auth_kubeconfig_parse(const char *text, size_t len, const char *dir, const char *context,
			      struct ch_kube_auth *ret, struct ch_err *reterr)
{
	struct kube_doc d = { .dir = dir };
	struct ch_kube_auth a = { 0 };
	yaml_parser_t parser;
	yaml_node_t *root, *ctx;
	const char *cluster_name, *user_name, *ns;
	bool loaded = false;
	int r;

	if (!yaml_parser_initialize(&parser))
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &d.doc)) {
		r = ch_err_set(reterr, -EINVAL, "not valid YAML at line %zu, column %zu: %s",
			       parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			       parser.problem ? parser.problem : "syntax error");
		goto out;
	}
	loaded = true;
	root = yaml_document_get_root_node(&d.doc);
	if (!root || root->type != YAML_MAPPING_NODE) {
		r = ch_err_set(reterr, -EINVAL, "not a kubeconfig: expected a mapping");
		goto out;
	}
	if (!context) {
		context = kube_str(&d, root, "current-context");
		if (!context) {
			r = ch_err_set(reterr, -EINVAL,
				       "no current-context; name one with the target's context:");
			goto out;
		}
	}
	ctx = kube_named(&d, root, "contexts", context, "context");
	if (!ctx) {
		r = ch_err_set(reterr, -ENOENT, "no context '%s'", context);
		goto out;
	}
	cluster_name = kube_str(&d, ctx, "cluster");
	user_name = kube_str(&d, ctx, "user");
	if (!cluster_name || !user_name) {
		r = ch_err_set(reterr, -EINVAL, "context '%s' needs a cluster and a user", context);
		goto out;
	}
	ctx = kube_named(&d, root, "clusters", cluster_name, "cluster");
	if (!ctx) {
		r = ch_err_set(reterr, -ENOENT, "context '%s': no cluster '%s'", context,
			       cluster_name);
		goto out;
	}
	r = kube_cluster(&d, ctx, cluster_name, &a, reterr);
	if (r < 0)
		goto out;
	ctx = kube_named(&d, root, "users", user_name, "user");
	if (!ctx) {
		r = ch_err_set(reterr, -ENOENT, "context '%s': no user '%s'", context, user_name);
		goto out;
	}
	r = kube_user(&d, ctx, user_name, &a, reterr);
	if (r < 0)
		goto out;
	ctx = kube_named(&d, root, "contexts", context, "context");
	ns = kube_str(&d, ctx, "namespace");
	if (kube_set(&a.namespace, ns, reterr) < 0 ||
	    asprintf(&a.who, "user '%s' of context '%s'", user_name, context) < 0) {
		a.who = NULL;
		r = ch_err_set(reterr, -ENOMEM, "out of memory");
		goto out;
	}
	*ret = a;
	a = (struct ch_kube_auth){ 0 };
	r = 0;
out:
	ch_kube_auth_clear(&a);
	if (loaded)
		yaml_document_delete(&d.doc);
	yaml_parser_delete(&parser);
	return r;
}

int
ch_kube_auth_kubeconfig(const char *path, const char *context, struct ch_kube_auth *ret,
			struct ch_err *reterr)
{
	_cleanup_free_ char *dir = NULL;
	char *text = NULL, *slash;
	size_t len = 0;
	int r;

	r = ch_read_file(path, KUBE_FILE_MAX, &text, &len);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read kubeconfig %s: %s", path, strerror(-r));
	dir = strdup(path);
	if (!dir) {
		ch_kube_free_secret(text);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	r = ch_kube_auth_kubeconfig_parse(text, len, dir, context, ret, reterr);
	/* The file may hold a token or a key. */
	explicit_bzero(text, len);
	free(text);
	if (r < 0) {
		char msg[sizeof(reterr->msg)];

		if (reterr) {
			snprintf(msg, sizeof(msg), "%s", reterr->msg);
			ch_err_set(reterr, r, "kubeconfig %s: %s", path, msg);
		}
		return r;
	}
	return 0;
}

int
ch_kube_auth_in_cluster(const char *dir, const char *host, const char *port,
			struct ch_kube_auth *ret, struct ch_err *reterr)
{
	struct ch_kube_auth a = { 0 };
	_cleanup_free_ char *path = NULL;
	int r;

	if (!dir)
		dir = CH_KUBE_SA_DIR;
	if (!host || !*host)
		return ch_err_set(reterr, -ENXIO,
				  "in_cluster: KUBERNETES_SERVICE_HOST is not set (certherd is "
				  "not running in a pod)");
	if (!port || !*port)
		port = "443";
	if (asprintf(&a.server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port) < 0) {
		a.server = NULL;
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}

	if (asprintf(&path, "%s/token", dir) < 0)
		goto oom;
	r = ch_read_file(path, KUBE_SECRET_FILE_MAX, &a.token, NULL);
	if (r < 0) {
		r = ch_err_set(reterr, r, "in_cluster: cannot read the service account token %s: %s",
			       path, strerror(-r));
		goto fail;
	}
	a.token[strcspn(a.token, "\r\n")] = '\0';
	free(path);
	if (asprintf(&path, "%s/ca.crt", dir) < 0)
		goto oom;
	r = ch_read_file(path, KUBE_SECRET_FILE_MAX, &a.ca_pem, NULL);
	if (r < 0) {
		r = ch_err_set(reterr, r, "in_cluster: cannot read the cluster CA %s: %s", path,
			       strerror(-r));
		goto fail;
	}
	free(path);
	if (asprintf(&path, "%s/namespace", dir) < 0)
		goto oom;
	r = ch_read_file(path, 1024, &a.namespace, NULL);
	if (r == -ENOENT) {
		a.namespace = NULL;
	} else if (r < 0) {
		r = ch_err_set(reterr, r, "in_cluster: cannot read %s: %s", path, strerror(-r));
		goto fail;
	} else {
		a.namespace[strcspn(a.namespace, "\r\n")] = '\0';
	}
	a.who = strdup("the service account");
	if (!a.who)
		goto oom;
	*ret = a;
	return 0;
oom:
	r = ch_err_set(reterr, -ENOMEM, "out of memory");
fail:
	ch_kube_auth_clear(&a);
	return r;
}

/* ---- names ---------------------------------------------------------------- */

static bool
kube_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
kube_label_n(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !kube_alnum(s[0]) || !kube_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!kube_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool
ch_kube_label_name_valid(const char *s)
{
	return kube_label_n(s, strlen(s));
}

bool
ch_kube_subdomain_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	for (const char *p = s;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (!kube_label_n(p, n))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

/* ---- the Secret ------------------------------------------------------------ */

static int
kube_add_map(json_t *meta, const char *field, char *const *kv)
{
	json_t *m;

	if (!kv || !kv[0])
		return 0;
	m = json_object();
	if (!m || json_object_set_new(meta, field, m) < 0)
		return -ENOMEM;
	for (size_t i = 0; kv[i] && kv[i + 1]; i += 2)
		if (json_object_set_new(m, kv[i], json_string(kv[i + 1])) < 0)
			return -EINVAL; /* not UTF-8 */
	return 0;
}

int
ch_kube_secret_body(const struct ch_kube_secret *s, char **ret, size_t *ret_len,
		    char **ret_key_b64)
{
	_cleanup_(json_decrefp) json_t *meta = NULL;
	_cleanup_free_ char *meta_text = NULL, *crt = NULL, *ca = NULL;
	char *key = NULL, *body = NULL;
	size_t size;
	int r, n;

	/*
	 * The metadata goes through jansson (labels and annotations need
	 * escaping); the data (base64) is put in by hand, so no copy of the
	 * key is left in memory nobody wipes.
	 */
	meta = json_pack("{s:s, s:s}", "name", s->name, "namespace", s->namespace);
	if (!meta)
		return -EINVAL;
	r = kube_add_map(meta, "labels", s->labels);
	if (r >= 0)
		r = kube_add_map(meta, "annotations", s->annotations);
	if (r < 0)
		return r;
	meta_text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
	if (!meta_text)
		return -ENOMEM;
	r = ch_kube_b64(s->tls_crt, strlen(s->tls_crt), &crt);
	if (r >= 0)
		r = ch_kube_b64(s->tls_key, s->tls_key_len, &key);
	if (r >= 0 && s->ca_crt)
		r = ch_kube_b64(s->ca_crt, strlen(s->ca_crt), &ca);
	if (r < 0)
		goto fail;
	size = strlen(meta_text) + strlen(crt) + strlen(key) + (ca ? strlen(ca) : 0) + 256;
	body = malloc(size);
	if (!body) {
		r = -ENOMEM;
		goto fail;
	}
	n = snprintf(body, size,
		     "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":%s,"
		     "\"type\":\"kubernetes.io/tls\",\"data\":{%s%s%s\"tls.crt\":\"%s\","
		     "\"tls.key\":\"%s\"}}",
		     meta_text, ca ? "\"ca.crt\":\"" : "", ca ? ca : "", ca ? "\"," : "", crt, key);
	if (n < 0 || (size_t)n >= size) {
		r = -EINVAL;
		goto fail;
	}
	*ret = body;
	*ret_len = (size_t)n;
	*ret_key_b64 = key;
	return 0;
fail:
	ch_kube_free_secret(body);
	ch_kube_free_secret(key);
	return r;
}

/* ---- failed responses --------------------------------------------------------- */

/* Appends the Status causes ("field: message") to buf, for 422. */
static void
kube_causes(json_t *status, char *buf, size_t size)
{
	json_t *causes = json_object_get(json_object_get(status, "details"), "causes");
	size_t i, n = strlen(buf);
	json_t *c;

	json_array_foreach(causes, i, c) {
		const char *field = json_string_value(json_object_get(c, "field"));
		const char *msg = json_string_value(json_object_get(c, "message"));

		if (n + 4 >= size)
			return;
		snprintf(buf + n, size - n, "%s%s%s%s", i == 0 ? "; causes: " : "; ",
			 field ? field : "", field ? ": " : "", msg ? msg : "?");
		n = strlen(buf);
	}
}

int
ch_kube_status_message(long status, const char *body, size_t len, const char *verb,
		       const char *who, const char *namespace, const char *name, char *buf,
		       size_t size)
{
	_cleanup_(json_decrefp) json_t *st = json_loadb(body ? body : "", len, 0, NULL);
	const char *msg = NULL, *reason = NULL, *kind = NULL;
	char detail[512];
	int r;

	if (json_is_object(st) &&
	    streq(json_string_value(json_object_get(st, "kind")) ?: "", "Status")) {
		msg = json_string_value(json_object_get(st, "message"));
		reason = json_string_value(json_object_get(st, "reason"));
		kind = json_string_value(json_object_get(json_object_get(st, "details"), "kind"));
	}
	if (msg)
		snprintf(detail, sizeof(detail), "%s", msg);
	else
		snprintf(detail, sizeof(detail), "HTTP %ld without a Status object", status);

	switch (status) {
	case 401:
		r = -EACCES;
		snprintf(buf, size,
			 "the API server rejected the credentials of %s (401 Unauthorized: %s); "
			 "the token or client certificate is wrong or expired",
			 who, detail);
		break;
	case 403:
		r = -EPERM;
		snprintf(buf, size, "%s cannot %s secrets in namespace %s: %s", who, verb,
			 namespace, detail);
		break;
	case 404:
		r = -ENOENT;
		if (kind && streq(kind, "namespaces"))
			snprintf(buf, size, "namespace %s does not exist (404 NotFound: %s)",
				 namespace, detail);
		else if (kind && streq(kind, "secrets"))
			snprintf(buf, size, "secret %s/%s does not exist (404 NotFound: %s)",
				 namespace, name, detail);
		else
			snprintf(buf, size, "404 Not Found for secret %s/%s: %s", namespace, name,
				 detail);
		break;
	case 409:
		r = -EBUSY;
		snprintf(buf, size, "conflict applying secret %s/%s (409 %s): %s", namespace, name,
			 reason ? reason : "Conflict", detail);
		break;
	case 422:
		r = -EINVAL;
		snprintf(buf, size, "the API server refused secret %s/%s as invalid (422): %s",
			 namespace, name, detail);
		if (st)
			kube_causes(st, buf, size);
		break;
	case 400:
		r = -EINVAL;
		snprintf(buf, size, "bad request for secret %s/%s (400 %s): %s", namespace, name,
			 reason ? reason : "BadRequest", detail);
		break;
	case 429:
		r = -EAGAIN;
		snprintf(buf, size, "the API server is throttling requests (429): %s", detail);
		break;
	default:
		r = status >= 500 ? -EAGAIN : -EPROTO;
		snprintf(buf, size, "unexpected HTTP %ld for secret %s/%s%s%s: %s", status,
			 namespace, name, reason ? " " : "", reason ? reason : "", detail);
		break;
	}
	return r;
}
