/* SPDX-License-Identifier: MIT */
/*
 * The CA backend registry: config `type:` to ops struct, and the thin
 * wrappers the daemon uses to create and free backend instances.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ch-config.h"
#include "certherd/ca.h"
#include "certherd/util.h"

static const struct ch_ca_ops *const ca_table[] = {
	&ch_ca_local_ops,
	&ch_ca_acme_ops,
#if HAVE_PKCS11
	&ch_ca_pkcs11_ops,
#endif
};

static const char *const outcome_table[_CH_CA_OUTCOME_MAX] = {
	[CH_CA_ISSUED] = "issued",
	[CH_CA_PENDING] = "pending",
	[CH_CA_REJECTED] = "rejected",
	[CH_CA_UNREACHABLE] = "ca-unreachable",
	[CH_CA_MISCONFIGURED] = "misconfigured",
};

const char *
ch_ca_outcome_to_string(enum ch_ca_outcome o)
{
	if (o < 0 || o >= _CH_CA_OUTCOME_MAX)
		return "unknown";
	return outcome_table[o];
}

const struct ch_ca_ops *
ch_ca_ops_find(const char *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(ca_table); i++)
		if (streq(ca_table[i]->type, type))
			return ca_table[i];
	return NULL;
}

const char *
ch_ca_types(void)
{
	static char buf[256];

	if (!buf[0])
		for (size_t i = 0; i < ARRAY_SIZE(ca_table); i++) {
			if (i)
				strcat(buf, ", ");
			strcat(buf, ca_table[i]->type);
		}
	return buf;
}

int
ch_ca_new(const struct ch_conf_ca *conf, const struct ch_ca_env *env, struct ch_ca **ret,
	  struct ch_err *reterr)
{
	struct ch_ca *ca;
	int r;

	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	ca->ops = conf->ops;
	ca->name = strdup(conf->name);
	if (!ca->name) {
		free(ca);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	r = ca->ops->new(conf->name, conf->opts, env, &ca->state, reterr);
	if (r < 0) {
		ca->state = NULL;
		ch_ca_free(ca);
		return r;
	}
	*ret = ca;
	return 0;
}

struct ch_ca *
ch_ca_free(struct ch_ca *ca)
{
	if (!ca)
		return NULL;
	if (ca->state)
		ca->ops->free(ca->state);
	free(ca->name);
	free(ca);
	return NULL;
}

void
ch_issue_result_done(struct ch_issue_result *res)
{
	if (!res)
		return;
	free(res->cert_pem);
	free(res->chain_pem);
	X509_free(res->cert);
	res->cert_pem = res->chain_pem = NULL;
	res->cert = NULL;
}

#define CA_CRL_VALIDITY (INT64_C(7) * 86400)

int
ch_ca_crl_settings_init(const char *name, int64_t validity, const char *path, const char *url,
			const struct ch_ca_env *env, char **ret_path, char **ret_url,
			struct ch_crl_settings *ret, struct ch_err *reterr)
{
	char *p = NULL, *u = NULL;

	if (path)
		p = strdup(path);
	else if (!env || !env->state_dir)
		return ch_err_set(reterr, -EINVAL, "CA %s: no state directory for its CRL", name);
	else if (asprintf(&p, "%s/ca/%s/crl.pem", env->state_dir, name) < 0)
		p = NULL;
	if (!p || (url && url[0] && !(u = strdup(url)))) {
		free(p);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	*ret_path = p;
	*ret_url = u;
	*ret = (struct ch_crl_settings){
		.validity = validity > 0 ? validity : CA_CRL_VALIDITY,
		.path = p,
		.url = u,
	};
	return 0;
}
