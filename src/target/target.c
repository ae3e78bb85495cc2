/* SPDX-License-Identifier: MIT */
/*
 * The deployment target registry: config `type:` to ops struct, and the
 * "{name}" template expansion shared by the target kinds.
 */
#include <stdlib.h>
#include <string.h>

#include "certherd/target.h"
#include "certherd/util.h"

static const struct ch_target_ops *const target_table[] = {
	&ch_target_file_ops,
	&ch_target_reload_ops,
	&ch_target_exec_ops,
	&ch_target_nginx_ops,
	&ch_target_haproxy_ops,
	&ch_target_kubernetes_ops,
};

const struct ch_target_ops *
ch_target_ops_find(const char *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(target_table); i++)
		if (streq(target_table[i]->type, type))
			return target_table[i];
	return NULL;
}

const char *
ch_target_types(void)
{
	static char buf[256];

	if (!buf[0])
		for (size_t i = 0; i < ARRAY_SIZE(target_table); i++) {
			if (i)
				strcat(buf, ", ");
			strcat(buf, target_table[i]->type);
		}
	return buf;
}

char *
ch_target_expand(const char *tmpl, const char *name)
{
	size_t n = 0, nl = strlen(name);
	const char *p;
	char *r, *o;

	if (!tmpl)
		return NULL;
	for (p = tmpl; (p = strstr(p, "{name}")); p += 6)
		n++;
	r = malloc(strlen(tmpl) + n * nl + 1);
	if (!r)
		return NULL;
	for (o = r, p = tmpl; *p;) {
		if (strncmp(p, "{name}", 6) == 0) {
			memcpy(o, name, nl);
			o += nl;
			p += 6;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return r;
}
