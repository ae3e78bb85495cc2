/* SPDX-License-Identifier: MIT */
/*
 * The "kubernetes" target: writes a kubernetes.io/tls Secret (tls.crt =
 * leaf + chain, tls.key, optionally ca.crt) with labels and annotations,
 * creating or updating it in one server-side apply (PATCH with
 * application/apply-patch+yaml, fieldManager=certherd, force=true) over
 * the asynchronous HTTP client. Credentials come from a kubeconfig file
 * or the in-cluster service account and are read again on every deploy
 * (service account tokens rotate). The key and the token never reach a
 * message or the log.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "certherd/http.h"
#include "certherd/kubernetes.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

#define KUBE_TIMEOUT_DEFAULT 30
#define KUBE_CA_FILE_MAX (1024 * 1024)
#define KUBE_FIELD_MANAGER "certherd"

struct kube_opts {
	char *kubeconfig;
	bool in_cluster;
	char *service_account_dir;
	char *context;
	char *namespace;
	char *secret;
	char **labels;      /* key, value, ..., NULL */
	char **annotations; /* key, value, ..., NULL */
	bool ca_crt;
	char *ca_file;
	int64_t timeout;
};

static const struct ch_conf_key kube_keys[] = {
	{ "kubeconfig", CH_CONF_PATH, offsetof(struct kube_opts, kubeconfig), false,
	  "the path of a kubeconfig file" },
	{ "in_cluster", CH_CONF_BOOL, offsetof(struct kube_opts, in_cluster), false,
	  "true to use the pod's service account" },
	{ "service_account_dir", CH_CONF_PATH, offsetof(struct kube_opts, service_account_dir),
	  false, "the directory of the service account's token, ca.crt and namespace" },
	{ "context", CH_CONF_STRING, offsetof(struct kube_opts, context), false,
	  "the name of a context in the kubeconfig" },
	{ "namespace", CH_CONF_STRING, offsetof(struct kube_opts, namespace), false,
	  "a namespace name, may contain {name}" },
	{ "secret", CH_CONF_STRING, offsetof(struct kube_opts, secret), false,
	  "the Secret's name, may contain {name} (default \"{name}-tls\")" },
	{ "labels", CH_CONF_MAP, offsetof(struct kube_opts, labels), false,
	  "a mapping of label names to values" },
	{ "annotations", CH_CONF_MAP, offsetof(struct kube_opts, annotations), false,
	  "a mapping of annotation names to values" },
	{ "ca_crt", CH_CONF_BOOL, offsetof(struct kube_opts, ca_crt), false,
	  "true to add ca.crt" },
	{ "ca_file", CH_CONF_PATH, offsetof(struct kube_opts, ca_file), false,
	  "a PEM file whose certificates go in ca.crt" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct kube_opts, timeout), false,
	  "a duration for the API request such as 30s (default 30s)" },
	{ NULL },
};

/* One deploy, from the request to done(). */
struct kube_run {
	struct ch_http *http;
	ch_deploy_done_fn *done;
	void *arg;
	char *target_name;
	char *cert_name;
	char *server;
	char *who;
	char *ns;
	char *name;
	char *crt_b64;
	char *key_b64; /* secret: blanked out of the response */
	bool dry_run;  /* a rehearsal: ?dryRun=All */
};

/* Prefix and name parts of a label or annotation key ("example.com/name"). */
static bool
kube_qualified_name_valid(const char *k)
{
	const char *slash = strchr(k, '/'), *n = slash ? slash + 1 : k;
	size_t len = strlen(n);

	if (slash) {
		_cleanup_free_ char *prefix = strndup(k, (size_t)(slash - k));

		if (!prefix || !ch_kube_subdomain_valid(prefix))
			return false;
	}
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');

		if (!alnum && ((i == 0 || i == len - 1) || (c != '-' && c != '_' && c != '.')))
			return false;
	}
	return true;
}

static bool
kube_label_value_valid(const char *v)
{
	return !*v || kube_qualified_name_valid(v);
}

static int
kube_check(const void *opts, struct ch_err *reterr)
{
	const struct kube_opts *o = opts;

	if (!o->kubeconfig == !o->in_cluster)
		return ch_err_set(reterr, -EINVAL,
				  "set either kubeconfig (a file) or in_cluster: true (the pod's "
				  "service account)");
	if (o->context && !o->kubeconfig)
		return ch_err_set(reterr, -EINVAL, "context needs kubeconfig");
	if (o->service_account_dir && !o->in_cluster)
		return ch_err_set(reterr, -EINVAL, "service_account_dir needs in_cluster: true");
	if (o->ca_file && !o->ca_crt)
		return ch_err_set(reterr, -EINVAL, "ca_file needs ca_crt: true");
	if (o->namespace && !strstr(o->namespace, "{name}") &&
	    !ch_kube_label_name_valid(o->namespace))
		return ch_err_set(reterr, -EINVAL,
				  "namespace '%s' is not a Kubernetes namespace name (lower case "
				  "letters, digits and '-', at most 63)",
				  o->namespace);
	if (o->secret && !strstr(o->secret, "{name}") && !ch_kube_subdomain_valid(o->secret))
		return ch_err_set(reterr, -EINVAL,
				  "secret '%s' is not a Kubernetes object name (lower case "
				  "letters, digits, '-' and '.', at most 253)",
				  o->secret);
	for (size_t i = 0; o->labels && o->labels[i]; i += 2) {
		if (!kube_qualified_name_valid(o->labels[i]))
			return ch_err_set(reterr, -EINVAL,
					  "labels: '%s' is not a label name ([prefix/]name, the "
					  "name at most 63 of a-z A-Z 0-9 - _ .)",
					  o->labels[i]);
		if (!kube_label_value_valid(o->labels[i + 1]))
			return ch_err_set(reterr, -EINVAL,
					  "labels: %s: '%s' is not a label value (at most 63 of "
					  "a-z A-Z 0-9 - _ ., starting and ending alphanumeric)",
					  o->labels[i], o->labels[i + 1]);
	}
	for (size_t i = 0; o->annotations && o->annotations[i]; i += 2)
		if (!kube_qualified_name_valid(o->annotations[i]))
			return ch_err_set(reterr, -EINVAL,
					  "annotations: '%s' is not an annotation name",
					  o->annotations[i]);
	if (o->timeout < 0)
		return ch_err_set(reterr, -EINVAL, "timeout must not be negative");
	return 0;
}

static struct kube_run *
kube_run_free(struct kube_run *run)
{
	if (!run)
		return NULL;
	ch_http_free(run->http);
	free(run->target_name);
	free(run->cert_name);
	free(run->server);
	free(run->who);
	free(run->ns);
	free(run->name);
	free(run->crt_b64);
	ch_kube_free_secret(run->key_b64);
	free(run);
	return NULL;
}

/* Overwrites every copy of the key's base64 in a response body. */
static void
kube_redact(char *body, size_t len, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	char *p = body;

	if (n == 0)
		return;
	while (len >= n) {
		char *q = memmem(p, len, secret, n);

		if (!q)
			return;
		memset(q, '*', n);
		len -= (size_t)(q - p) + n;
		p = q + n;
	}
}

/* The message for a 200 or 201 answer, checking what the server kept. */
static int
kube_applied_message(struct kube_run *run, const struct ch_http_response *resp, char *buf,
		     size_t size)
{
	json_t *obj = json_loadb(resp->body, resp->body_len, 0, NULL);
	const char *rv, *type, *crt;
	int r = 0;

	rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	type = json_string_value(json_object_get(obj, "type"));
	crt = json_string_value(json_object_get(json_object_get(obj, "data"), "tls.crt"));
	if (!json_is_object(obj)) {
		r = -EPROTO;
		snprintf(buf, size, "the API server answered HTTP %ld without a Secret object",
			 resp->status);
	} else if (!type || !streq(type, "kubernetes.io/tls")) {
		r = -EPROTO;
		snprintf(buf, size,
			 "secret %s/%s has type %s, not kubernetes.io/tls; delete it so "
			 "certherd can create it",
			 run->ns, run->name, type ? type : "(none)");
	} else if (!crt || !streq(crt, run->crt_b64)) {
		r = -EPROTO;
		snprintf(buf, size,
			 "secret %s/%s does not hold the new tls.crt after the apply (changed "
			 "by an admission webhook?)",
			 run->ns, run->name);
	} else {
		snprintf(buf, size, "%s%s secret %s/%s on %s (resourceVersion %s)",
			 run->dry_run ? "server-side dry run: would have " : "",
			 resp->status == 201 ? "created" : "applied", run->ns, run->name,
			 run->server, rv ? rv : "?");
	}
	json_decref(obj);
	return r;
}

static void
kube_applied(const struct ch_http_response *resp, void *arg)
{
	struct kube_run *run = arg;
	char msg[2048];
	int r;

	/* The API echoes the Secret: its key never gets parsed or kept. */
	kube_redact(resp->body, resp->body_len, run->key_b64);
	if (resp->error < 0) {
		r = resp->error;
		snprintf(msg, sizeof(msg), "cannot reach the API server %s: %s", run->server,
			 resp->errmsg);
	} else if (resp->status == 200 || resp->status == 201) {
		r = kube_applied_message(run, resp, msg, sizeof(msg));
	} else {
		r = ch_kube_status_message(resp->status, resp->body, resp->body_len, "patch",
					   run->who, run->ns, run->name, msg, sizeof(msg));
	}
	ch_log_debug("target %s: %s: %s", run->target_name, run->cert_name, msg);
	run->done(r, msg, run->arg);
	kube_run_free(run);
}

/* ca.crt: the certificates of ca_file, else the chain's last certificate. */
static int
kube_ca_crt(const struct kube_opts *o, const struct ch_deploy_item *item, char **ret,
	    struct ch_err *reterr)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	_cleanup_free_ char *text = NULL, *certs = NULL;
	const char *last = NULL;
	int r;

	*ret = NULL;
	if (!o->ca_crt)
		return 0;
	if (o->ca_file) {
		r = ch_read_file(o->ca_file, KUBE_CA_FILE_MAX, &text, NULL);
		if (r < 0)
			return ch_err_set(reterr, r, "cannot read ca_file %s: %s", o->ca_file,
					  strerror(-r));
		r = ch_target_extract_certs(text, ret);
		if (r == -EBADMSG)
			return ch_err_set(reterr, r, "ca_file %s holds no PEM certificate",
					  o->ca_file);
		if (r < 0)
			return ch_err_set(reterr, r, "out of memory");
		return 0;
	}
	r = ch_target_extract_certs(item->chain_pem ? item->chain_pem : "", &certs);
	if (r < 0 && r != -EBADMSG)
		return ch_err_set(reterr, r, "out of memory");
	for (const char *p = r < 0 ? NULL : certs; p && (p = strstr(p, begin)); p++)
		last = p;
	if (!last)
		return ch_err_set(reterr, -ENOENT,
				  "ca_crt: the issuance has no chain (the CA signs leaves with "
				  "its root, as the local CA does); set ca_file to the CA "
				  "certificate");
	*ret = strdup(last);
	if (!*ret)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	return 0;
}

/* Reads the credentials and fills in run's names; reterr says what is wrong. */
static int
kube_prepare(const struct kube_opts *o, const struct ch_deploy_item *item,
	     struct ch_kube_auth *auth, struct kube_run *run, struct ch_err *reterr)
{
	int r;

	if (o->kubeconfig)
		r = ch_kube_auth_kubeconfig(o->kubeconfig, o->context, auth, reterr);
	else
		r = ch_kube_auth_in_cluster(o->service_account_dir,
					    getenv("KUBERNETES_SERVICE_HOST"),
					    getenv("KUBERNETES_SERVICE_PORT"), auth, reterr);
	if (r < 0)
		return r;
	if (o->namespace)
		run->ns = ch_target_expand(o->namespace, item->cert_name);
	else if (auth->namespace)
		run->ns = strdup(auth->namespace);
	else
		return ch_err_set(reterr, -EINVAL,
				  "no namespace: set namespace (the %s has none)",
				  o->kubeconfig ? "kubeconfig context" : "service account");
	run->name = ch_target_expand(o->secret ? o->secret : "{name}-tls", item->cert_name);
	run->server = strdup(auth->server);
	run->who = strdup(auth->who);
	if (!run->ns || !run->name || !run->server || !run->who)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!ch_kube_label_name_valid(run->ns))
		return ch_err_set(reterr, -EINVAL, "namespace '%s' is not a valid namespace name",
				  run->ns);
	if (!ch_kube_subdomain_valid(run->name))
		return ch_err_set(reterr, -EINVAL,
				  "secret name '%s' is not a valid Kubernetes object name "
				  "(lower case letters, digits, '-' and '.')",
				  run->name);
	return 0;
}

/* Builds the apply body and starts the PATCH. */
static int
kube_start(const struct kube_opts *o, const struct ch_target_env *env,
	   const struct ch_deploy_item *item, const struct ch_kube_auth *auth,
	   struct kube_run *run, struct ch_err *reterr)
{
	const char *parts[2] = { item->cert_pem, item->chain_pem ? item->chain_pem : "" };
	size_t lens[2] = { strlen(parts[0]), strlen(parts[1]) };
	_cleanup_free_ char *fullchain = NULL, *ca = NULL, *url = NULL, *authz = NULL;
	char *body = NULL;
	size_t fullchain_len, body_len;
	const char *headers[2] = { NULL, NULL };
	struct ch_http_request req;
	struct ch_kube_secret s;
	int r;

	r = ch_target_join_pem(parts, lens, 2, &fullchain, &fullchain_len);
	if (r < 0)
		return ch_err_set(reterr, r, "out of memory");
	r = kube_ca_crt(o, item, &ca, reterr);
	if (r < 0)
		return r;
	s = (struct ch_kube_secret){
		.namespace = run->ns,
		.name = run->name,
		.labels = o->labels,
		.annotations = o->annotations,
		.tls_crt = fullchain,
		.tls_key = item->key_pem,
		.tls_key_len = item->key_pem_len,
		.ca_crt = ca,
	};
	r = ch_kube_secret_body(&s, &body, &body_len, &run->key_b64);
	if (r == -EINVAL)
		return ch_err_set(reterr, r, "a label or annotation is not valid UTF-8");
	if (r < 0)
		return ch_err_set(reterr, r, "out of memory");
	r = ch_kube_b64(fullchain, fullchain_len, &run->crt_b64);
	if (r < 0)
		goto oom;
	/* A rehearsal is a server-side dry run: validated and admitted, not stored. */
	if (asprintf(&url, "%s/api/v1/namespaces/%s/secrets/%s?fieldManager=%s&force=true%s",
		     auth->server, run->ns, run->name, KUBE_FIELD_MANAGER,
		     env->rehearse_dir ? "&dryRun=All" : "") < 0) {
		url = NULL;
		goto oom;
	}
	if (auth->token) {
		if (asprintf(&authz, "Authorization: Bearer %s", auth->token) < 0) {
			authz = NULL;
			goto oom;
		}
		headers[0] = authz;
	}

	r = ch_http_new(env->base, NULL, &run->http);
	if (r >= 0)
		r = ch_http_set_tls(run->http, &(struct ch_http_tls){ .ca_pem = auth->ca_pem,
								      .cert_pem = auth->cert_pem,
								      .key_pem = auth->key_pem });
	if (r < 0)
		goto oom;
	req = (struct ch_http_request){
		.method = "PATCH",
		.url = url,
		.body = body,
		.body_len = body_len,
		.content_type = "application/apply-patch+yaml",
		.accept = "application/json",
		.timeout_ms = (long)(o->timeout > 0 ? o->timeout : KUBE_TIMEOUT_DEFAULT) * 1000,
		.headers = headers,
	};
	r = ch_http_start(run->http, &req, kube_applied, run, NULL);
	ch_kube_free_secret(body);
	ch_kube_free_secret(TAKE_PTR(authz));
	if (r < 0)
		return ch_err_set(reterr, r, "cannot start the request to %s: %s", auth->server,
				  strerror(-r));
	return 0;
oom:
	ch_kube_free_secret(body);
	ch_kube_free_secret(TAKE_PTR(authz));
	return ch_err_set(reterr, -ENOMEM, "out of memory");
}

static int
kube_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	    const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct kube_opts *o = opts;
	struct ch_kube_auth auth = { 0 };
	struct ch_err err = { "" };
	struct kube_run *run;
	int r;

	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->done = done;
	run->arg = arg;
	run->dry_run = env->rehearse_dir != NULL;
	run->target_name = strdup(target_name);
	run->cert_name = strdup(item->cert_name);
	if (!run->target_name || !run->cert_name) {
		kube_run_free(run);
		return -ENOMEM;
	}
	r = kube_prepare(o, item, &auth, run, &err);
	if (r >= 0)
		r = kube_start(o, env, item, &auth, run, &err);
	ch_kube_auth_clear(&auth);
	if (r < 0) {
		ch_log_debug("target %s: %s: %s", target_name, item->cert_name, err.msg);
		r = ch_target_done_later(env->base, done, arg, r, err.msg);
		kube_run_free(run);
		return r;
	}
	return 0;
}

const struct ch_target_ops ch_target_kubernetes_ops = {
	.type = "kubernetes",
	.keys = kube_keys,
	.opts_size = sizeof(struct kube_opts),
	.check = kube_check,
	.deploy = kube_deploy,
	/* Reading the Secret back would block on the network: no adoption. */
	.current = NULL,
};
