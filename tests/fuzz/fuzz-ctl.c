/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the status-socket request parser (ch_ctl_parse_request) with one
 * request line. A request it accepts must survive the way back: written
 * out with ch_ctl_dump_line it is one line, and parsed again it is the
 * same request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "certherd/ctl.h"
#include "certherd/log.h"
#include "fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	ch_log_set_level(-1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ch_err err = { "" };
	json_t *req = NULL, *again = NULL;
	size_t len;
	char *line;
	int r;

	r = ch_ctl_parse_request((const char *)data, size, &req, &err);
	if (r < 0) {
		if (req || !err.msg[0] || (r != -EINVAL && r != -EMSGSIZE))
			abort(); /* a refusal says why, and leaves nothing behind */
		return 0;
	}
	if (!json_is_object(req) || !json_is_string(json_object_get(req, "cmd")))
		abort();

	line = ch_ctl_dump_line(req, &len);
	if (!line || len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1))
		abort();
	if (len - 1 <= CH_CTL_MAX_REQUEST) {
		if (ch_ctl_parse_request(line, len - 1, &again, &err) < 0 || !json_equal(req, again))
			abort();
	}
	json_decref(again);
	free(line);
	json_decref(req);
	return 0;
}
