/* SPDX-License-Identifier: MIT */
/*
 * What the kubernetes target (src/target/target-kubernetes.c) needs to
 * talk to an API server, kept apart so it can be tested without one:
 * credentials from a kubeconfig file or the in-cluster service account,
 * the server-side apply body of a kubernetes.io/tls Secret, and the
 * message a failed response (a Status object) means for on-call.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "certherd/err.h"

#define CH_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* How to reach and authenticate to one API server. */
struct ch_kube_auth {
	char *server;    /* "https://host:port[/path]" without a trailing slash */
	char *ca_pem;    /* PEM trust anchors; NULL: the system bundle */
	char *token;     /* bearer token (secret); NULL: none */
	char *cert_pem;  /* client certificate; NULL: none */
	char *key_pem;   /* its private key (secret) */
	char *namespace; /* the context's or the service account's; may be NULL */
	char *who;       /* "the service account" or "user U of context C", for messages */
};

/* Frees (and wipes the secrets of) everything in a; a stays usable. */
void ch_kube_auth_clear(struct ch_kube_auth *a);

/*
 * Reads the kubeconfig file at path: the cluster, user and namespace of
 * context (NULL: current-context). Relative file references are taken
 * from the kubeconfig's directory. Credentials supported: token,
 * tokenFile, client-certificate(-data) with client-key(-data); exec and
 * auth-provider plugins, basic auth and insecure-skip-tls-verify are
 * refused with a message saying so. Returns 0 or -errno with reterr set.
 */
int ch_kube_auth_kubeconfig(const char *path, const char *context, struct ch_kube_auth *ret,
			    struct ch_err *reterr);
/* The same from text already read (dir: for relative references). */
int ch_kube_auth_kubeconfig_parse(const char *text, size_t len, const char *dir,
				  const char *context, struct ch_kube_auth *ret,
				  struct ch_err *reterr);
/*
 * The in-cluster service account: token, ca.crt and namespace (optional)
 * in dir (NULL: CH_KUBE_SA_DIR), the server from host and port (normally
 * KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; port NULL: 443).
 */
int ch_kube_auth_in_cluster(const char *dir, const char *host, const char *port,
			    struct ch_kube_auth *ret, struct ch_err *reterr);

/* A DNS-1123 label (namespaces: 63 characters, a-z0-9 and '-'). */
bool ch_kube_label_name_valid(const char *s);
/* A DNS-1123 subdomain (object names: 253 characters, labels joined by '.'). */
bool ch_kube_subdomain_valid(const char *s);

/* The Secret a deploy applies. */
struct ch_kube_secret {
	const char *namespace;
	const char *name;
	char *const *labels;      /* key, value, ..., NULL; may be NULL */
	char *const *annotations; /* key, value, ..., NULL; may be NULL */
	const char *tls_crt;      /* leaf + chain, PEM */
	const char *tls_key;      /* secret */
	size_t tls_key_len;
	const char *ca_crt;       /* NULL: no ca.crt */
};

/*
 * The server-side apply body (JSON, which is YAML) of a kubernetes.io/tls
 * Secret, and in *ret_key_b64 the base64 of the key as it appears in the
 * body (to blank it out of responses). Both hold the key: free them with
 * ch_kube_free_secret(). Returns 0, -EINVAL or -ENOMEM.
 */
int ch_kube_secret_body(const struct ch_kube_secret *s, char **ret, size_t *ret_len,
			char **ret_key_b64);
/* Wipes and frees a string holding secret material; returns NULL. */
char *ch_kube_free_secret(char *s);

/* Standard base64 (padded) of data; caller frees. Returns 0 or -ENOMEM. */
int ch_kube_b64(const void *data, size_t len, char **ret);

/*
 * The deployment message for a failed response to `verb` on the Secret
 * namespace/name: what the status code means, then the Status object's
 * message (and for 422 its causes). who names the credentials (see
 * struct ch_kube_auth). Returns the errno the status maps to (negative):
 * 401 -EACCES, 403 -EPERM, 404 -ENOENT, 409 -EBUSY, 400/422 -EINVAL,
 * 429 and 5xx -EAGAIN, anything else -EPROTO.
 */
int ch_kube_status_message(long status, const char *body, size_t len, const char *verb,
			   const char *who, const char *namespace, const char *name, char *buf,
			   size_t size);
