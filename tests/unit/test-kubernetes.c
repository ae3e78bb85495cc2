/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the kubernetes target's plumbing (certherd/kubernetes.h):
 * kubeconfig files and the in-cluster service account files, names, the
 * apply body, the messages of failed responses, the target's options as
 * the config loader fills them (labels and annotations are mappings), and
 * a deploy that fails before or at the network reporting on the loop.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "certherd/conf.h"
#include "certherd/kubernetes.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"

#define CA_PEM "-----BEGIN CERTIFICATE-----\nQ0EK\n-----END CERTIFICATE-----\n"
#define CERT_PEM "-----BEGIN CERTIFICATE-----\nQ0VSVAo=\n-----END CERTIFICATE-----\n"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nS0VZCg==\n-----END PRIVATE KEY-----\n"

static char tmpdir[] = "/tmp/test-kubernetes.XXXXXX";

static void
setup(void)
{
	strcpy(tmpdir, "/tmp/test-kubernetes.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void
teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *
tpath(const char *name)
{
	static char buf[4][1024];
	static unsigned which;
	char *b = buf[which++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return b;
}

static void
write_file(const char *name, const char *content)
{
	FILE *f = fopen(tpath(name), "w");

	ck_assert_ptr_nonnull(f);
	fputs(content, f);
	fclose(f);
}

static char *
b64(const char *s)
{
	char *r = NULL;

	ck_assert_int_eq(ch_kube_b64(s, strlen(s), &r), 0);
	return r;
}

/* Parses text as a kubeconfig in tmpdir; returns r, err in *e. */
static int
parse(const char *text, const char *context, struct ch_kube_auth *a, struct ch_err *e)
{
	*a = (struct ch_kube_auth){ 0 };
	return ch_kube_auth_kubeconfig_parse(text, strlen(text), tmpdir, context, a, e);
}

#define KC_HEAD                                                                            \
	"apiVersion: v1\nkind: Config\n"                                                   \
	"clusters:\n- name: c1\n  cluster:\n    server: https://k8s.example:6443/\n"      \
	"    certificate-authority: ca.crt\n"

START_TEST(test_kubeconfig_token)
{
	struct ch_kube_auth a;
	struct ch_err e = { "" };

	write_file("ca.crt", CA_PEM);
	write_file("tok", "file-token\n");
	ck_assert_int_eq(parse(KC_HEAD "users:\n- name: u1\n  user: {token: abc.def}\n"
					"- name: u2\n  user: {tokenFile: tok}\n"
					"contexts:\n- name: x\n  context: {cluster: c1, user: u1, "
					"namespace: web}\n"
					"- name: y\n  context: {cluster: c1, user: u2}\n"
					"current-context: x\n",
			       NULL, &a, &e),
			 0);
	ck_assert_str_eq(a.server, "https://k8s.example:6443");
	ck_assert_str_eq(a.ca_pem, CA_PEM);
	ck_assert_str_eq(a.token, "abc.def");
	ck_assert_ptr_null(a.cert_pem);
	ck_assert_str_eq(a.namespace, "web");
	ck_assert_str_eq(a.who, "user 'u1' of context 'x'");
	ch_kube_auth_clear(&a);

	/* A named context wins over current-context; tokenFile is read. */
	ck_assert_int_eq(parse(KC_HEAD "users:\n- name: u1\n  user: {token: abc.def}\n"
					"- name: u2\n  user: {tokenFile: tok}\n"
					"contexts:\n- name: x\n  context: {cluster: c1, user: u1}\n"
					"- name: y\n  context: {cluster: c1, user: u2}\n"
					"current-context: x\n",
			       "y", &a, &e),
			 0);
	ck_assert_str_eq(a.token, "file-token");
	ck_assert_ptr_null(a.namespace);
	ch_kube_auth_clear(&a);
}
END_TEST

START_TEST(test_kubeconfig_client_cert)
{
	_cleanup_free_ char *ca = b64(CA_PEM), *cert = b64(CERT_PEM), *key = b64(KEY_PEM);
	_cleanup_free_ char *text = NULL;
	struct ch_kube_auth a;
	struct ch_err e = { "" };

	ck_assert_int_ge(asprintf(&text,
				  "{\"clusters\": [{\"name\": \"c\", \"cluster\": {\"server\": "
				  "\"https://10.0.0.1\", \"certificate-authority-data\": \"%s\"}}],"
				  " \"users\": [{\"name\": \"u\", \"user\": {"
				  "\"client-certificate-data\": \"%s\", \"client-key-data\": "
				  "\"%s\"}}], \"contexts\": [{\"name\": \"k\", \"context\": "
				  "{\"cluster\": \"c\", \"user\": \"u\"}}], "
				  "\"current-context\": \"k\"}",
				  ca, cert, key),
			 0);
	/* JSON is YAML: kubectl writes either. */
	ck_assert_int_eq(parse(text, NULL, &a, &e), 0);
	ck_assert_str_eq(a.server, "https://10.0.0.1");
	ck_assert_str_eq(a.ca_pem, CA_PEM);
	ck_assert_str_eq(a.cert_pem, CERT_PEM);
	ck_assert_str_eq(a.key_pem, KEY_PEM);
	ck_assert_ptr_null(a.token);
	ch_kube_auth_clear(&a);

	/* From files, relative to the kubeconfig. */
	write_file("c.pem", CERT_PEM);
	write_file("k.pem", KEY_PEM);
	write_file("kc", "clusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
			 "users:\n- name: u\n  user: {client-certificate: c.pem, client-key: k.pem}\n"
			 "contexts:\n- name: k\n  context: {cluster: c, user: u}\n"
			 "current-context: k\n");
	ck_assert_int_eq(ch_kube_auth_kubeconfig(tpath("kc"), NULL, &a, &e), 0);
	ck_assert_str_eq(a.cert_pem, CERT_PEM);
	ck_assert_str_eq(a.key_pem, KEY_PEM);
	ck_assert_ptr_null(a.ca_pem);
	ch_kube_auth_clear(&a);
}
END_TEST

/* Each kubeconfig is refused with a message containing want. */
START_TEST(test_kubeconfig_errors)
{
	static const struct {
		const char *users;
		const char *extra_cluster;
		const char *context;
		int r;
		const char *want;
	} cases[] = {
		{ "  user: {exec: {command: aws}}\n", "", NULL, -EOPNOTSUPP, "exec credential plugin" },
		{ "  user: {auth-provider: {name: gcp}}\n", "", NULL, -EOPNOTSUPP, "auth-provider" },
		{ "  user: {username: a, password: b}\n", "", NULL, -EOPNOTSUPP, "basic authentication" },
		{ "  user: {}\n", "", NULL, -EINVAL, "user 'u' has no credentials" },
		{ "  user: {client-certificate-data: Q0VSVAo=}\n", "", NULL, -EINVAL,
		  "only client-certificate is set" },
		{ "  user: {client-key-data: '%%%'}\n", "", NULL, -EINVAL,
		  "client-key-data is not valid base64" },
		{ "  user: {token: t}\n", "    insecure-skip-tls-verify: true\n", NULL, -EINVAL,
		  "insecure-skip-tls-verify" },
		{ "  user: {token: t}\n", "", "nope", -ENOENT, "no context 'nope'" },
		{ "  user: {tokenFile: missing}\n", "", NULL, -ENOENT, "cannot read tokenFile" },
	};
	struct ch_kube_auth a;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *text = NULL;
		struct ch_err e = { "" };

		ck_assert_int_ge(asprintf(&text,
					  "clusters:\n- name: c\n  cluster:\n    server: https://h\n%s"
					  "users:\n- name: u\n%s"
					  "contexts:\n- name: k\n  context: {cluster: c, user: u}\n"
					  "current-context: k\n",
					  cases[i].extra_cluster, cases[i].users),
				 0);
		ck_assert_int_eq(parse(text, cases[i].context, &a, &e), cases[i].r);
		ck_assert_msg(strstr(e.msg, cases[i].want), "case %zu: %s", i, e.msg);
		ck_assert_ptr_null(a.server);
	}

	struct ch_err e = { "" };

	ck_assert_int_eq(parse("clusters:\n- name: c\n  cluster: {server: 'http://h'}\n"
			       "users:\n- name: u\n  user: {token: t}\n"
			       "contexts:\n- name: k\n  context: {cluster: c, user: u}\n"
			       "current-context: k\n",
			       NULL, &a, &e),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "not an https:// URL"));
	ck_assert_int_eq(parse("users: [\n", NULL, &a, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "not valid YAML"));
	ck_assert_int_eq(parse("clusters: []\n", NULL, &a, &e), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.msg, "no current-context"));
	ck_assert_int_eq(parse("contexts:\n- name: k\n  context: {cluster: gone, user: u}\n", "k",
			       &a, &e),
			 -ENOENT);
	ck_assert_str_eq(e.msg, "context 'k': no cluster 'gone'");
	ck_assert_int_eq(ch_kube_auth_kubeconfig(tpath("none"), NULL, &a, &e), -ENOENT);
	ck_assert_ptr_nonnull(strstr(e.msg, "cannot read kubeconfig"));
}
END_TEST

START_TEST(test_in_cluster)
{
	struct ch_kube_auth a = { 0 };
	struct ch_err e = { "" };

	ck_assert_int_eq(ch_kube_auth_in_cluster(tmpdir, NULL, NULL, &a, &e), -ENXIO);
	ck_assert_ptr_nonnull(strstr(e.msg, "KUBERNETES_SERVICE_HOST"));
	ck_assert_int_eq(ch_kube_auth_in_cluster(tmpdir, "10.96.0.1", "443", &a, &e), -ENOENT);
	ck_assert_ptr_nonnull(strstr(e.msg, "service account token"));

	write_file("token", "sa-token\n");
	write_file("ca.crt", CA_PEM);
	ck_assert_int_eq(ch_kube_auth_in_cluster(tmpdir, "10.96.0.1", NULL, &a, &e), 0);
	ck_assert_str_eq(a.server, "https://10.96.0.1:443");
	ck_assert_str_eq(a.token, "sa-token");
	ck_assert_str_eq(a.ca_pem, CA_PEM);
	ck_assert_ptr_null(a.namespace);
	ck_assert_str_eq(a.who, "the service account");
	ch_kube_auth_clear(&a);

	write_file("namespace", "kube-system");
	ck_assert_int_eq(ch_kube_auth_in_cluster(tmpdir, "fd00::1", "6443", &a, &e), 0);
	ck_assert_str_eq(a.server, "https://[fd00::1]:6443");
	ck_assert_str_eq(a.namespace, "kube-system");
	ch_kube_auth_clear(&a);
}
END_TEST

START_TEST(test_names)
{
	ck_assert(ch_kube_label_name_valid("web"));
	ck_assert(ch_kube_label_name_valid("a-1"));
	ck_assert(!ch_kube_label_name_valid("Web"));
	ck_assert(!ch_kube_label_name_valid("-a"));
	ck_assert(!ch_kube_label_name_valid("a.b"));
	ck_assert(!ch_kube_label_name_valid(""));
	ck_assert(ch_kube_subdomain_valid("www-tls"));
	ck_assert(ch_kube_subdomain_valid("www.example.com-tls"));
	ck_assert(!ch_kube_subdomain_valid("www..tls"));
	ck_assert(!ch_kube_subdomain_valid("www_tls"));
	ck_assert(!ch_kube_subdomain_valid("a/b"));
}
END_TEST

START_TEST(test_secret_body)
{
	char *labels[] = { "team", "edge \"x\"", NULL };
	char *annotations[] = { "example.com/owner", "", NULL };
	struct ch_kube_secret s = {
		.namespace = "web", .name = "www-tls", .labels = labels,
		.annotations = annotations, .tls_crt = CERT_PEM, .tls_key = KEY_PEM,
		.tls_key_len = strlen(KEY_PEM), .ca_crt = CA_PEM,
	};
	_cleanup_free_ char *crt = b64(CERT_PEM), *key = b64(KEY_PEM), *ca = b64(CA_PEM);
	char *body = NULL, *key_b64 = NULL;
	size_t len = 0;
	json_t *j;

	ck_assert_int_eq(ch_kube_secret_body(&s, &body, &len, &key_b64), 0);
	ck_assert_uint_eq(len, strlen(body));
	ck_assert_str_eq(key_b64, key);
	j = json_loads(body, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "apiVersion")), "v1");
	ck_assert_str_eq(json_string_value(json_object_get(j, "kind")), "Secret");
	ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "kubernetes.io/tls");
	json_t *m = json_object_get(j, "metadata"), *d = json_object_get(j, "data");
	ck_assert_str_eq(json_string_value(json_object_get(m, "name")), "www-tls");
	ck_assert_str_eq(json_string_value(json_object_get(m, "namespace")), "web");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "labels"), "team")),
			 "edge \"x\"");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "annotations"),
							   "example.com/owner")),
			 "");
	ck_assert_str_eq(json_string_value(json_object_get(d, "tls.crt")), crt);
	ck_assert_str_eq(json_string_value(json_object_get(d, "tls.key")), key);
	ck_assert_str_eq(json_string_value(json_object_get(d, "ca.crt")), ca);
	json_decref(j);
	ch_kube_free_secret(body);
	ch_kube_free_secret(key_b64);

	/* No ca.crt, labels or annotations unless given. */
	s.ca_crt = NULL;
	s.labels = s.annotations = NULL;
	ck_assert_int_eq(ch_kube_secret_body(&s, &body, &len, &key_b64), 0);
	j = json_loads(body, 0, NULL);
	ck_assert_ptr_null(json_object_get(json_object_get(j, "data"), "ca.crt"));
	ck_assert_ptr_null(json_object_get(json_object_get(j, "metadata"), "labels"));
	json_decref(j);
	ch_kube_free_secret(body);
	ch_kube_free_secret(key_b64);
}
END_TEST

START_TEST(test_status_messages)
{
	static const char st403[] =
		"{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":"
		"\"secrets \\\"www-tls\\\" is forbidden: User \\\"sa\\\" cannot patch resource\","
		"\"reason\":\"Forbidden\",\"code\":403}";
	static const char st404[] =
		"{\"kind\":\"Status\",\"message\":\"namespaces \\\"nope\\\" not found\",\"reason\":"
		"\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"namespaces\"},\"code\":404}";
	static const char st422[] =
		"{\"kind\":\"Status\",\"message\":\"Secret \\\"x\\\" is invalid\",\"reason\":"
		"\"Invalid\",\"details\":{\"causes\":[{\"field\":\"metadata.labels\",\"message\":"
		"\"Invalid value: \\\"a b\\\"\"},{\"field\":\"data[tls.key]\",\"message\":"
		"\"Required value\"}]},\"code\":422}";
	static const char st409[] =
		"{\"kind\":\"Status\",\"message\":\"Apply failed with 1 conflict\",\"reason\":"
		"\"Conflict\",\"code\":409}";
	char buf[1024];

	ck_assert_int_eq(ch_kube_status_message(403, st403, strlen(st403), "patch",
						"the service account", "web", "www-tls", buf,
						sizeof(buf)),
			 -EPERM);
	ck_assert_str_eq(buf, "the service account cannot patch secrets in namespace web: secrets "
			      "\"www-tls\" is forbidden: User \"sa\" cannot patch resource");
	ck_assert_int_eq(ch_kube_status_message(404, st404, strlen(st404), "patch", "u", "nope",
						"www-tls", buf, sizeof(buf)),
			 -ENOENT);
	ck_assert_str_eq(buf, "namespace nope does not exist (404 NotFound: namespaces \"nope\" "
			      "not found)");
	ck_assert_int_eq(ch_kube_status_message(422, st422, strlen(st422), "patch", "u", "web",
						"x", buf, sizeof(buf)),
			 -EINVAL);
	ck_assert_str_eq(buf, "the API server refused secret web/x as invalid (422): Secret \"x\" "
			      "is invalid; causes: metadata.labels: Invalid value: \"a b\"; "
			      "data[tls.key]: Required value");
	ck_assert_int_eq(ch_kube_status_message(409, st409, strlen(st409), "patch", "u", "web",
						"x", buf, sizeof(buf)),
			 -EBUSY);
	ck_assert_str_eq(buf, "conflict applying secret web/x (409 Conflict): Apply failed with 1 "
			      "conflict");
	ck_assert_int_eq(ch_kube_status_message(401, "Unauthorized", 12, "patch", "u", "web", "x",
						buf, sizeof(buf)),
			 -EACCES);
	ck_assert_ptr_nonnull(strstr(buf, "rejected the credentials of u (401 Unauthorized: "
					  "HTTP 401 without a Status object)"));
	ck_assert_int_eq(ch_kube_status_message(503, "", 0, "patch", "u", "web", "x", buf,
						sizeof(buf)),
			 -EAGAIN);
	ck_assert_int_eq(ch_kube_status_message(418, "", 0, "patch", "u", "web", "x", buf,
						sizeof(buf)),
			 -EPROTO);
}
END_TEST

static struct ch_conf *
load(const char *yaml, struct ch_conf_errors *e)
{
	struct ch_conf *c = NULL;

	write_file("certherd.yaml", yaml);
	*e = (struct ch_conf_errors){ 0 };
	if (ch_conf_load(tpath("certherd.yaml"), &c, e) < 0)
		return NULL;
	return c;
}

#define OPT(t, key, type)                                                                  \
	({                                                                                 \
		const struct ch_conf_key *k_ = (t)->ops->keys;                             \
		while (k_->name && strcmp(k_->name, key) != 0)                             \
			k_++;                                                              \
		ck_assert_ptr_nonnull(k_->name);                                           \
		*(type *)((char *)(t)->opts + k_->offset);                                 \
	})

START_TEST(test_conf)
{
	struct ch_conf_errors e;
	struct ch_conf *c;
	const struct ch_conf_target *t;
	char **labels;

	c = load("targets:\n"
		 "  k:\n    type: kubernetes\n    kubeconfig: kc\n    namespace: web\n"
		 "    labels: {app.kubernetes.io/name: www, empty: \"\"}\n"
		 "    annotations:\n      example.com/a: \"any text: really\"\n"
		 "  s:\n    type: kubernetes\n    in_cluster: true\n    labels:\n",
		 &e);
	ck_assert_msg(c, "%s", e.n ? e.v[0].message : "?");
	t = ch_conf_find_target(c, "k");
	labels = OPT(t, "labels", char **);
	ck_assert_str_eq(labels[0], "app.kubernetes.io/name");
	ck_assert_str_eq(labels[1], "www");
	ck_assert_str_eq(labels[2], "empty");
	ck_assert_str_eq(labels[3], "");
	ck_assert_ptr_null(labels[4]);
	ck_assert_str_eq(OPT(t, "annotations", char **)[1], "any text: really");
	ck_assert_str_eq(OPT(t, "kubeconfig", char *), tpath("kc"));
	t = ch_conf_find_target(c, "s");
	ck_assert_ptr_null(OPT(t, "labels", char **)[0]);
	ch_conf_free(c);

	static const struct {
		const char *yaml;
		const char *want;
	} bad[] = {
		{ "    kubeconfig: kc\n    labels: [a, b]\n", "expected a mapping of label names" },
		{ "    kubeconfig: kc\n    labels: {a: {b: c}}\n", "a: expected a string, got a mapping" },
		{ "    kubeconfig: kc\n    labels:\n      a: x\n      a: y\n", "appears twice" },
		{ "    kubeconfig: kc\n    labels: {a: 'x y'}\n", "is not a label value" },
		{ "    kubeconfig: kc\n    labels: {'a b': x}\n", "is not a label name" },
		{ "    kubeconfig: kc\n    in_cluster: true\n", "set either kubeconfig" },
		{ "    namespace: web\n", "set either kubeconfig" },
		{ "    in_cluster: true\n    context: x\n", "context needs kubeconfig" },
		{ "    kubeconfig: kc\n    namespace: Web\n", "not a Kubernetes namespace name" },
		{ "    kubeconfig: kc\n    secret: a_b\n", "not a Kubernetes object name" },
		{ "    kubeconfig: kc\n    ca_file: ca.pem\n", "ca_file needs ca_crt" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		_cleanup_free_ char *yaml = NULL;
		bool found = false;

		ck_assert_int_ge(asprintf(&yaml, "targets:\n  k:\n    type: kubernetes\n%s",
					  bad[i].yaml),
				 0);
		c = load(yaml, &e);
		ck_assert_msg(!c, "case %zu loaded", i);
		for (size_t j = 0; j < e.n; j++)
			found = found || strstr(e.v[j].message, bad[i].want);
		ck_assert_msg(found, "case %zu: %s", i, e.n ? e.v[0].message : "no error");
		ch_conf_errors_clear(&e);
	}
}
END_TEST

struct result {
	bool called;
	int r;
	char msg[2048];
};

static void
done_cb(int r, const char *message, void *arg)
{
	struct result *res = arg;

	res->called = true;
	res->r = r;
	snprintf(res->msg, sizeof(res->msg), "%s", message ? message : "");
}

/* Deploys www with target k of yaml; returns after done() ran. */
static void
deploy(const char *yaml, struct result *res)
{
	struct event_base *base = event_base_new();
	struct ch_target_env env = { .base = base, .state_dir = tmpdir };
	struct ch_deploy_item item = {
		.cert_name = "www", .serial = "01", .cert_pem = CERT_PEM, .chain_pem = "",
		.key_pem = KEY_PEM, .key_pem_len = strlen(KEY_PEM), .dir = tmpdir,
	};
	struct ch_conf_errors e;
	struct ch_conf *c = load(yaml, &e);
	const struct ch_conf_target *t;
	int64_t deadline = ch_mono_usec() + 20 * CH_USEC_PER_SEC;

	ck_assert_msg(c, "%s", e.n ? e.v[0].message : "?");
	t = ch_conf_find_target(c, "k");
	*res = (struct result){ 0 };
	ck_assert_int_eq(t->ops->deploy(&env, "k", t->opts, &item, done_cb, res), 0);
	ck_assert(!res->called); /* never from inside deploy() */
	while (!res->called && ch_mono_usec() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert(res->called);
	ch_conf_free(c);
	event_base_free(base);
}

START_TEST(test_deploy_failures)
{
	struct result res;

	/* Nothing listens on port 1. */
	write_file("kc", "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
			 "users:\n- name: u\n  user: {token: secret-token-123}\n"
			 "contexts:\n- name: k\n  context: {cluster: c, user: u, namespace: web}\n"
			 "current-context: k\n");
	deploy("targets:\n  k: {type: kubernetes, kubeconfig: kc}\n", &res);
	ck_assert_int_lt(res.r, 0);
	ck_assert_msg(strstr(res.msg, "cannot reach the API server https://127.0.0.1:1"), "%s",
		      res.msg);
	ck_assert(!strstr(res.msg, "secret-token-123"));

	deploy("targets:\n  k: {type: kubernetes, kubeconfig: nope}\n", &res);
	ck_assert_int_eq(res.r, -ENOENT);
	ck_assert_msg(strstr(res.msg, "cannot read kubeconfig"), "%s", res.msg);

	/* The context has no namespace and the target names none. */
	write_file("kc", "clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
			 "users:\n- name: u\n  user: {token: t}\n"
			 "contexts:\n- name: k\n  context: {cluster: c, user: u}\n"
			 "current-context: k\n");
	deploy("targets:\n  k: {type: kubernetes, kubeconfig: kc}\n", &res);
	ck_assert_int_eq(res.r, -EINVAL);
	ck_assert_str_eq(res.msg, "no namespace: set namespace (the kubeconfig context has none)");

	/* ca_crt with an empty chain and no ca_file. */
	deploy("targets:\n  k: {type: kubernetes, kubeconfig: kc, namespace: web, ca_crt: true}\n",
	       &res);
	ck_assert_int_eq(res.r, -ENOENT);
	ck_assert_msg(strstr(res.msg, "set ca_file"), "%s", res.msg);

	/* {name} expanded into an invalid object name. */
	deploy("targets:\n  k: {type: kubernetes, kubeconfig: kc, namespace: web, "
	       "secret: \"{name}_tls\"}\n",
	       &res);
	ck_assert_int_eq(res.r, -EINVAL);
	ck_assert_msg(strstr(res.msg, "'www_tls' is not a valid Kubernetes object name"), "%s",
		      res.msg);
}
END_TEST

static Suite *
kubernetes_suite(void)
{
	Suite *s = suite_create("kubernetes");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_kubeconfig_token);
	tcase_add_test(tc, test_kubeconfig_client_cert);
	tcase_add_test(tc, test_kubeconfig_errors);
	tcase_add_test(tc, test_in_cluster);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_secret_body);
	tcase_add_test(tc, test_status_messages);
	tcase_add_test(tc, test_conf);
	tcase_add_test(tc, test_deploy_failures);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(kubernetes_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
