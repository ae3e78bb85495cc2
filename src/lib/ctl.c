/* SPDX-License-Identifier: MIT */
/*
 * Request parsing and reply framing for the status-socket protocol.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/ctl.h"

int
ch_ctl_parse_request(const char *line, size_t len, json_t **ret, struct ch_err *reterr)
{
	json_error_t jerr;
	const char *key;
	json_t *req, *v;

	if (len > CH_CTL_MAX_REQUEST)
		return ch_err_set(reterr, -EMSGSIZE, "request longer than %d bytes",
				  CH_CTL_MAX_REQUEST);
	req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req)
		return ch_err_set(reterr, -EINVAL, "request is not valid JSON: %s (column %d)",
				  jerr.text, jerr.column);
	if (!json_is_object(req)) {
		json_decref(req);
		return ch_err_set(reterr, -EINVAL, "request must be a JSON object");
	}
	if (!json_is_string(json_object_get(req, "cmd"))) {
		json_decref(req);
		return ch_err_set(reterr, -EINVAL, "request needs a \"cmd\" string");
	}
	json_object_foreach(req, key, v)
	{
		if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v)) {
			/* key belongs to req: format before letting go of it. */
			ch_err_set(reterr, -EINVAL,
				   "request member \"%s\" must be a string, number or boolean", key);
			json_decref(req);
			return -EINVAL;
		}
	}
	*ret = req;
	return 0;
}

char *
ch_ctl_dump_line(const json_t *reply, size_t *ret_len)
{
	char *s = json_dumps(reply, JSON_COMPACT);
	size_t n;
	char *r;

	if (!s)
		return NULL;
	n = strlen(s);
	r = realloc(s, n + 2);
	if (!r) {
		free(s);
		return NULL;
	}
	r[n] = '\n';
	r[n + 1] = '\0';
	if (ret_len)
		*ret_len = n + 1;
	return r;
}

json_t *
ch_ctl_error(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return json_pack("{s:b,s:s}", "ok", 0, "error", buf);
}
