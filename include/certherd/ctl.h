/* SPDX-License-Identifier: MIT */
/*
 * The status-socket protocol shared by the daemon and the CLI: one JSON
 * object per line each way. On connect the daemon sends a hello line
 * {"certherd": VERSION, "protocol": 1}. A request is {"cmd": NAME, ...};
 * a reply is {"ok": true, ...} or {"ok": false, "error": TEXT}.
 */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "certherd/err.h"

#define CH_CTL_PROTOCOL 1
#define CH_CTL_MAX_REQUEST 4096
#define CH_CTL_MAX_REPLY (256u << 20)

/*
 * Parses and checks one request line (without the newline): size cap, a
 * JSON object, "cmd" a string, every other member a string, number or
 * boolean. Returns 0 and a new reference, or -EINVAL/-EMSGSIZE with reterr.
 */
int ch_ctl_parse_request(const char *line, size_t len, json_t **ret, struct ch_err *reterr);

/* Serialises reply compactly followed by '\n' (caller frees). */
char *ch_ctl_dump_line(const json_t *reply, size_t *ret_len);

/* {"ok": false, "error": msg} (new reference). */
json_t *ch_ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
