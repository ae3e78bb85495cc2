/* SPDX-License-Identifier: MIT */
/*
 * ACME message pieces without I/O: problem documents and their
 * subproblems, Retry-After, Link headers, the finalize CSR and the
 * certificate chain that comes back.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certherd/acme.h"
#include "certherd/jws.h"
#include "certherd/macro.h"

static const char *
problem_short_type(const char *type)
{
	size_t n = strlen(CH_ACME_ERROR_NS);

	return strncmp(type, CH_ACME_ERROR_NS, n) == 0 ? type + n : type;
}

static void _printf_(3, 4)
problem_append(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

int
ch_acme_problem_from_json(const json_t *doc, struct ch_acme_problem *ret)
{
	const char *type, *detail;
	const json_t *subs, *sub;
	size_t i;

	memset(ret, 0, sizeof(*ret));
	if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "type")))
		return -EBADMSG;
	type = problem_short_type(json_string_value(json_object_get(doc, "type")));
	detail = json_string_value(json_object_get(doc, "detail"));
	snprintf(ret->type, sizeof(ret->type), "%s", type);
	if (json_is_integer(json_object_get(doc, "status")))
		ret->status = (long)json_integer_value(json_object_get(doc, "status"));
	problem_append(ret->message, sizeof(ret->message), "%s%s", type, "");
	if (detail && *detail)
		problem_append(ret->message, sizeof(ret->message), "%s%s", ": ", detail);
	subs = json_object_get(doc, "subproblems");
	json_array_foreach(subs, i, sub) {
		const json_t *id = json_object_get(sub, "identifier");
		const char *st = json_string_value(json_object_get(sub, "type"));
		const char *sd = json_string_value(json_object_get(sub, "detail"));

		problem_append(ret->message, sizeof(ret->message), "%s%s", "; ", "");
		if (json_is_object(id))
			problem_append(ret->message, sizeof(ret->message), "%s:%s: ",
				       json_string_value(json_object_get(id, "type")) ?: "?",
				       json_string_value(json_object_get(id, "value")) ?: "?");
		problem_append(ret->message, sizeof(ret->message), "%s%s",
			       st ? problem_short_type(st) : "error", "");
		if (sd && *sd)
			problem_append(ret->message, sizeof(ret->message), "%s%s", ": ", sd);
	}
	return 0;
}

int
ch_acme_problem_parse(const char *body, size_t len, struct ch_acme_problem *ret)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	int r;

	r = ch_acme_problem_from_json(doc, ret);
	json_decref(doc);
	return r;
}

bool
ch_acme_problem_is(const struct ch_acme_problem *p, const char *name)
{
	return streq(p->type, name);
}

int64_t
ch_acme_retry_after(const char *value, int64_t now)
{
	struct tm tm = { 0 };
	const char *end;
	char *e;
	long long v;

	if (!value)
		return -EINVAL;
	while (isspace((unsigned char)*value))
		value++;
	if (isdigit((unsigned char)*value)) {
		v = strtoll(value, &e, 10);
		while (isspace((unsigned char)*e))
			e++;
		if (*e || v < 0)
			return -EINVAL;
		return (int64_t)v;
	}
	/* IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT". */
	end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -EINVAL;
	v = (long long)timegm(&tm) - now;
	return v > 0 ? (int64_t)v : 0;
}

/* Appends the targets with rel in one Link header value to *v. */
static int
links_parse_one(const char *s, const char *rel, char ***v, size_t *n)
{
	while (*s) {
		const char *lt = strchr(s, '<'), *gt;
		bool match = false;

		if (!lt || !(gt = strchr(lt, '>')))
			return 0;
		s = gt + 1;
		/* Parameters up to the next ',' outside quotes. */
		while (*s && *s != ',') {
			const char *name, *val;
			size_t nlen, vlen;

			while (*s == ';' || isspace((unsigned char)*s))
				s++;
			name = s;
			while (*s && *s != '=' && *s != ';' && *s != ',')
				s++;
			nlen = (size_t)(s - name);
			while (nlen && isspace((unsigned char)name[nlen - 1]))
				nlen--;
			if (*s != '=')
				continue;
			s++;
			while (isspace((unsigned char)*s))
				s++;
			if (*s == '"') {
				val = ++s;
				while (*s && *s != '"')
					s++;
				vlen = (size_t)(s - val);
				if (*s)
					s++;
			} else {
				val = s;
				while (*s && *s != ';' && *s != ',' && !isspace((unsigned char)*s))
					s++;
				vlen = (size_t)(s - val);
			}
			if (nlen == 3 && strncasecmp(name, "rel", 3) == 0) {
				/* rel may hold several space-separated relation types. */
				for (size_t i = 0; i < vlen;) {
					size_t j = i;

					while (j < vlen && val[j] != ' ')
						j++;
					if (j - i == strlen(rel) && strncasecmp(val + i, rel, j - i) == 0)
						match = true;
					i = j + 1;
				}
			}
		}
		if (match) {
			char **nv = realloc(*v, (*n + 2) * sizeof(*nv));

			if (!nv)
				return -ENOMEM;
			*v = nv;
			nv[*n] = strndup(lt + 1, (size_t)(gt - lt - 1));
			if (!nv[*n])
				return -ENOMEM;
			nv[++*n] = NULL;
		}
		if (*s == ',')
			s++;
	}
	return 0;
}

int
ch_acme_links(char *const *values, const char *rel, char ***ret)
{
	char **v = calloc(1, sizeof(*v));
	size_t n = 0;
	int r;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; values && values[i]; i++) {
		r = links_parse_one(values[i], rel, &v, &n);
		if (r < 0) {
			ch_strv_free(v);
			return r;
		}
	}
	*ret = v;
	return 0;
}

static int
csr_add_sans(X509_REQ *req, char *const *dns, char *const *ip)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext = NULL;
	int r = -EINVAL;

	if (!names || !exts)
		goto out;
	for (size_t i = 0; dns && dns[i]; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		if (!g || !s || !ASN1_STRING_set(s, dns[i], (int)strlen(dns[i]))) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		sk_GENERAL_NAME_push(names, g);
	}
	for (size_t i = 0; ip && ip[i]; i++) {
		unsigned char buf[16];
		int len = inet_pton(AF_INET, ip[i], buf) == 1 ? 4 :
			  inet_pton(AF_INET6, ip[i], buf) == 1 ? 16 : 0;
		GENERAL_NAME *g;
		ASN1_OCTET_STRING *s;

		if (!len)
			goto out;
		g = GENERAL_NAME_new();
		s = ASN1_OCTET_STRING_new();
		if (!g || !s || !ASN1_OCTET_STRING_set(s, buf, len)) {
			GENERAL_NAME_free(g);
			ASN1_OCTET_STRING_free(s);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_IPADD, s);
		sk_GENERAL_NAME_push(names, g);
	}
	ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
	if (!ext || !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	ext = NULL;
	if (!X509_REQ_add_extensions(req, exts))
		goto out;
	r = 0;
out:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(names);
	return r;
}

int
ch_acme_csr(EVP_PKEY *key, char *const *dns, char *const *ip, char **ret_b64url)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *subj;
	unsigned char *der = NULL;
	int len, r = -EINVAL;

	if (!req)
		return -ENOMEM;
	subj = X509_REQ_get_subject_name(req);
	/* CN = the first DNS name when it fits (64 characters); ACME ignores it otherwise. */
	if (dns && dns[0] && strlen(dns[0]) <= 64 &&
	    !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)dns[0],
					-1, -1, 0))
		goto out;
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, key))
		goto out;
	r = csr_add_sans(req, dns, ip);
	if (r < 0)
		goto out;
	r = -EIO;
	if (X509_REQ_sign(req, key, EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ?
					    NULL : EVP_sha256()) <= 0)
		goto out;
	len = i2d_X509_REQ(req, &der);
	if (len <= 0)
		goto out;
	r = ch_b64url_encode(der, (size_t)len, ret_b64url);
out:
	OPENSSL_free(der);
	X509_REQ_free(req);
	return r;
}

int
ch_acme_chain_split(const char *pem, char **ret_leaf, char **ret_chain)
{
	static const char end_marker[] = "-----END CERTIFICATE-----";
	const char *begin = strstr(pem, "-----BEGIN CERTIFICATE-----");
	const char *end, *rest;
	char *leaf, *chain;

	if (!begin || !(end = strstr(begin, end_marker)))
		return -EBADMSG;
	end += strlen(end_marker);
	rest = end;
	while (*rest == '\r' || *rest == '\n')
		rest++;
	if (asprintf(&leaf, "%.*s\n", (int)(end - begin), begin) < 0)
		return -ENOMEM;
	chain = strdup(rest);
	if (!chain) {
		free(leaf);
		return -ENOMEM;
	}
	*ret_leaf = leaf;
	*ret_chain = chain;
	return 0;
}

bool
ch_acme_chain_has_issuer(const char *pem, const char *issuer_cn)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	bool found = false;

	if (!bio)
		return false;
	while (!found && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		char cn[256];

		if (X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, cn,
					      sizeof(cn)) > 0 &&
		    streq(cn, issuer_cn))
			found = true;
		X509_free(x);
	}
	ERR_clear_error(); /* the read that found no more certificates */
	BIO_free(bio);
	return found;
}

int
ch_acme_ari_cert_id(const char *pem, char **ret)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	const ASN1_OCTET_STRING *kid;
	unsigned char *der = NULL;
	const unsigned char *p;
	_cleanup_free_ char *a = NULL, *b = NULL;
	long clen;
	int len, tag, xclass, r;

	BIO_free(bio);
	if (!x) {
		ERR_clear_error();
		return -EBADMSG;
	}
	kid = X509_get0_authority_key_id(x);
	if (!kid || ASN1_STRING_length(kid) <= 0) {
		X509_free(x);
		return -ENOENT;
	}
	r = ch_b64url_encode(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid), &a);
	/* The serial's DER without tag and length: a leading 00 stays when the high bit is set. */
	len = r < 0 ? -1 : i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der);
	X509_free(x);
	if (len <= 0) {
		OPENSSL_free(der);
		return r < 0 ? r : -EBADMSG;
	}
	p = der;
	if (ASN1_get_object(&p, &clen, &tag, &xclass, len) & 0x80 || tag != V_ASN1_INTEGER) {
		OPENSSL_free(der);
		ERR_clear_error();
		return -EBADMSG;
	}
	r = ch_b64url_encode(p, (size_t)clen, &b);
	OPENSSL_free(der);
	if (r < 0)
		return r;
	if (asprintf(ret, "%s.%s", a, b) < 0)
		return -ENOMEM;
	return 0;
}

int
ch_acme_parse_time(const char *s, int64_t *ret)
{
	struct tm tm = { 0 };
	const char *p;
	int64_t t;

	if (!s)
		return -EINVAL;
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		p = strptime(s, "%Y-%m-%dt%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	t = (int64_t)timegm(&tm);
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) &&
		   isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
		   isdigit((unsigned char)p[5])) {
		int off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
			  ((p[4] - '0') * 10 + (p[5] - '0')) * 60;

		t += *p == '+' ? -off : off;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	*ret = t;
	return 0;
}

int
ch_acme_ari_parse(const char *body, size_t len, int64_t *ret_start, int64_t *ret_end,
		  char **ret_explanation)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	json_t *w = json_object_get(doc, "suggestedWindow");
	const char *expl = json_string_value(json_object_get(doc, "explanationURL"));
	int64_t start, end;
	int r = -EBADMSG;

	if (ch_acme_parse_time(json_string_value(json_object_get(w, "start")), &start) == 0 &&
	    ch_acme_parse_time(json_string_value(json_object_get(w, "end")), &end) == 0 &&
	    end > start) {
		*ret_start = start;
		*ret_end = end;
		*ret_explanation = expl ? strdup(expl) : NULL;
		r = expl && !*ret_explanation ? -ENOMEM : 0;
	}
	json_decref(doc);
	return r;
}

static int
identifiers_cmp(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

char *
ch_acme_identifiers_key(const json_t *ids)
{
	size_t n = json_array_size(ids), len = 1;
	char **v = calloc(n + 1, sizeof(*v)), *out;
	json_t *id;
	size_t i;

	if (!v)
		return NULL;
	json_array_foreach(ids, i, id) {
		if (asprintf(&v[i], "%s:%s", json_string_value(json_object_get(id, "type")) ?: "?",
			     json_string_value(json_object_get(id, "value")) ?: "?") < 0)
			v[i] = NULL;
		len += v[i] ? strlen(v[i]) + 1 : 1;
	}
	qsort(v, n, sizeof(*v), identifiers_cmp);
	out = calloc(1, len);
	for (i = 0; out && i < n; i++) {
		strcat(out, v[i] ? v[i] : "");
		strcat(out, " ");
	}
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return out;
}

void
ch_acme_order_next(const json_t *order, const char *order_url, struct ch_acme_order_next *ret)
{
	const char *status = json_string_value(json_object_get(order, "status"));
	const json_t *a;
	size_t i;
	json_t *u;

	*ret = (struct ch_acme_order_next){ .step = CH_ACME_ORDER_FAILED };
	if (!status) {
		snprintf(ret->message, sizeof(ret->message), "order %s has no status", order_url);
	} else if (streq(status, "pending")) {
		a = json_object_get(order, "authorizations");
		if (!json_is_array(a) || json_array_size(a) == 0) {
			snprintf(ret->message, sizeof(ret->message),
				 "order %s lists no authorizations", order_url);
			return;
		}
		json_array_foreach(a, i, u)
			if (!json_is_string(u)) {
				snprintf(ret->message, sizeof(ret->message),
					 "order %s lists an authorization that is not a URL",
					 order_url);
				return;
			}
		ret->step = CH_ACME_ORDER_AUTHORIZE;
		ret->authzs = a;
	} else if (streq(status, "ready")) {
		ret->url = json_string_value(json_object_get(order, "finalize"));
		if (ret->url)
			ret->step = CH_ACME_ORDER_FINALIZE;
		else
			snprintf(ret->message, sizeof(ret->message), "order %s has no finalize URL",
				 order_url);
	} else if (streq(status, "processing")) {
		ret->step = CH_ACME_ORDER_WAIT;
	} else if (streq(status, "valid")) {
		ret->url = json_string_value(json_object_get(order, "certificate"));
		if (ret->url)
			ret->step = CH_ACME_ORDER_DOWNLOAD;
		else
			snprintf(ret->message, sizeof(ret->message),
				 "valid order %s has no certificate URL", order_url);
	} else {
		struct ch_acme_problem p;

		if (ch_acme_problem_from_json(json_object_get(order, "error"), &p) == 0)
			snprintf(ret->message, sizeof(ret->message), "order %s is %.40s: %s",
				 order_url, status, p.message);
		else
			snprintf(ret->message, sizeof(ret->message), "order %s is %.40s", order_url,
				 status);
	}
}

/* A challenge token (RFC 8555 §8.1): base64url characters only, at least 128 bits. */
static bool
token_valid(const char *t)
{
	size_t n = strlen(t);

	return n >= 22 && n <= 1024 &&
	       strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

void
ch_acme_authz_parse(const json_t *authz, const char *type, struct ch_acme_authz *ret)
{
	const json_t *id = json_object_get(authz, "identifier"), *chall = NULL;
	const char *token;
	json_t *c;
	size_t i;

	*ret = (struct ch_acme_authz){ 0 };
	ret->value = json_string_value(json_object_get(id, "value")) ?: "";
	snprintf(ret->ident, sizeof(ret->ident), "%.40s:%.250s",
		 json_string_value(json_object_get(id, "type")) ?: "?",
		 json_string_value(json_object_get(id, "value")) ?: "?");
	ret->status = json_string_value(json_object_get(authz, "status")) ?: "?";
	json_array_foreach(json_object_get(authz, "challenges"), i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t && streq(t, type))
			chall = c;
	}
	ret->chall_status = "?";
	if (!chall)
		return;
	ret->has_challenge = true;
	ret->chall_status = json_string_value(json_object_get(chall, "status")) ?: "?";
	token = json_string_value(json_object_get(chall, "token"));
	ret->token = token && token_valid(token) ? token : NULL;
	ret->url = json_string_value(json_object_get(chall, "url"));
	ret->has_error = ch_acme_problem_from_json(json_object_get(chall, "error"),
						   &ret->error) == 0;
}
