/* SPDX-License-Identifier: MIT */
/*
 * The ACME account beyond creating it: the external account binding
 * (RFC 8555 §7.3.4) whose HMAC key is read once from a 0600 file and
 * never leaves this file's struct, the newAccount request built with it,
 * and the keyChange request of an account key rollover (§7.3.5).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "acme-internal.h"
#include "certherd/crypto.h"
#include "certherd/jws.h"
#include "certherd/macro.h"
#include "certherd/util.h"

int
acme_eab_load(const char *kid, const char *path, struct acme_eab **ret, struct ch_err *reterr)
{
	char *text = NULL;
	size_t len = 0, n;
	struct acme_eab *e;
	struct stat st;
	int r;

	if (stat(path, &st) < 0)
		return ch_err_set(reterr, -errno, "eab_hmac_key_file %s: %s", path, strerror(errno));
	if (st.st_mode & 077)
		return ch_err_set(reterr, -EPERM,
				  "eab_hmac_key_file %s is readable by others (mode %04o); make it "
				  "0600, owned by the daemon's user",
				  path, (unsigned)(st.st_mode & 07777));
	r = ch_read_file(path, 4096, &text, &len);
	if (r < 0)
		return ch_err_set(reterr, r, "eab_hmac_key_file %s: %s", path, strerror(-r));
	/* One base64url line as the CA shows it; surrounding blanks are not part of it. */
	n = len;
	while (n > 0 && isspace((unsigned char)text[n - 1]))
		text[--n] = '\0';
	e = calloc(1, sizeof(*e));
	if (!e) {
		ch_secret_free(text, len);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	{
		const char *p = text;

		while (isspace((unsigned char)*p))
			p++;
		r = *p ? ch_b64url_decode(p, &e->key, &e->key_len) : -EINVAL;
	}
	ch_secret_free(text, len);
	if (r < 0 || e->key_len < 16) {
		acme_eab_free(e);
		if (r == -ENOMEM)
			return ch_err_set(reterr, r, "out of memory");
		return ch_err_set(reterr, -EINVAL,
				  "eab_hmac_key_file %s must hold the CA's HMAC key in base64url "
				  "(at least 16 bytes), as the CA shows it",
				  path);
	}
	e->kid = strdup(kid);
	if (!e->kid) {
		acme_eab_free(e);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	*ret = e;
	return 0;
}

void
acme_eab_free(struct acme_eab *e)
{
	if (!e)
		return;
	if (e->key)
		OPENSSL_cleanse(e->key, e->key_len);
	free(e->key);
	free(e->kid);
	free(e);
}

int
acme_account_payload(const char *url, EVP_PKEY *account_key, bool agree_tos,
		     char *const *contact, const struct acme_eab *eab, char **ret)
{
	json_t *acct = json_pack("{s:b}", "termsOfServiceAgreed", agree_tos);
	int r = 0;

	if (!acct)
		return -ENOMEM;
	if (contact && contact[0]) {
		json_t *c = json_array();

		for (char *const *m = contact; c && *m; m++)
			json_array_append_new(c, json_string(*m));
		if (!c || json_object_set_new(acct, "contact", c) < 0)
			r = -ENOMEM;
	}
	if (r >= 0 && eab) {
		json_t *binding = NULL;

		r = ch_jws_eab(eab->key, eab->key_len, eab->kid, url, account_key, &binding);
		if (r >= 0 && json_object_set_new(acct, "externalAccountBinding", binding) < 0)
			r = -ENOMEM;
	}
	*ret = r >= 0 ? json_dumps(acct, JSON_COMPACT) : NULL;
	json_decref(acct);
	if (r >= 0 && !*ret)
		r = -ENOMEM;
	return r;
}

int
acme_key_change_payload(const char *url, const char *kid, EVP_PKEY *old_key, EVP_PKEY *new_key,
			char **ret)
{
	_cleanup_free_ char *inner = NULL;
	json_t *old_jwk = NULL, *doc;
	int r;

	r = ch_jwk_from_key(old_key, &old_jwk);
	if (r < 0)
		return r;
	doc = json_pack("{s:s,s:o}", "account", kid, "oldKey", old_jwk);
	inner = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!inner)
		return -ENOMEM;
	return ch_jws_sign(new_key, NULL, NULL, url, inner, ret);
}
