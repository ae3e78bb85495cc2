/* SPDX-License-Identifier: MIT */
/*
 * HAProxy runtime API requests and strict reply parsing (haproxy.h). The
 * replies are those of HAProxy 2.6 (src/ssl_ckch.c, src/ssl_crtlist.c):
 * anything else, including a reply naming another certificate, is a
 * failure.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <event2/util.h>

#include "certherd/haproxy.h"
#include "certherd/macro.h"

static const char *const haproxy_cmd_table[_CH_HAPROXY_CMD_MAX] = {
	[CH_HAPROXY_SET_CERT] = "set ssl cert",
	[CH_HAPROXY_COMMIT_CERT] = "commit ssl cert",
	[CH_HAPROXY_ABORT_CERT] = "abort ssl cert",
	[CH_HAPROXY_NEW_CERT] = "new ssl cert",
	[CH_HAPROXY_DEL_CERT] = "del ssl cert",
	[CH_HAPROXY_SHOW_CERT] = "show ssl cert",
	[CH_HAPROXY_ADD_CRT_LIST] = "add ssl crt-list",
};

const char *
ch_haproxy_cmd_to_string(enum ch_haproxy_cmd c)
{
	if (c < 0 || c >= _CH_HAPROXY_CMD_MAX)
		return NULL;
	return haproxy_cmd_table[c];
}

static bool
haproxy_skip_prefix(const char **s, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(*s, prefix, n) != 0)
		return false;
	*s += n;
	return true;
}

int
ch_haproxy_parse_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len,
			 struct ch_err *reterr)
{
	struct sockaddr_storage ss = { 0 };
	int len = sizeof(ss);
	const char *p = s;

	if (!s || !*s)
		return ch_err_set(reterr, -EINVAL, "the socket address is empty");
	if (haproxy_skip_prefix(&p, "unix@") || haproxy_skip_prefix(&p, "unix:") || *p == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		if (*p != '/')
			return ch_err_set(reterr, -EINVAL,
					  "unix socket path %s is not absolute", p);
		if (strlen(p) >= sizeof(un->sun_path))
			return ch_err_set(reterr, -ENAMETOOLONG,
					  "unix socket path %s is longer than %zu bytes", p,
					  sizeof(un->sun_path) - 1);
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, p);
		len = (int)sizeof(*un);
	} else {
		if (!haproxy_skip_prefix(&p, "ipv4@") && !haproxy_skip_prefix(&p, "ipv6@"))
			haproxy_skip_prefix(&p, "tcp:");
		if (!strrchr(p, ':') || evutil_parse_sockaddr_port(p, (struct sockaddr *)&ss, &len) < 0)
			return ch_err_set(reterr, -EINVAL,
					  "socket %s is neither an absolute unix socket path nor "
					  "a numeric address:port",
					  s);
		if (((struct sockaddr_in *)&ss)->sin_port == 0)
			return ch_err_set(reterr, -EINVAL, "socket %s has no port", s);
	}
	if (ret)
		*ret = ss;
	if (ret_len)
		*ret_len = (socklen_t)len;
	return 0;
}

bool
ch_haproxy_arg_ok(const char *path)
{
	if (!path || !*path)
		return false;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++)
		if (*p <= ' ' || *p == 0x7f || *p == ';' || *p == '\\')
			return false;
	return true;
}

int
ch_haproxy_format(enum ch_haproxy_cmd cmd, const char *path, const char *list,
		  const char *payload, size_t payload_len, char **ret, size_t *ret_len)
{
	const char *name = ch_haproxy_cmd_to_string(cmd);
	const char *arg1 = path, *arg2 = NULL;
	size_t cap, off;
	char *buf;
	int n;

	if (!name || !ch_haproxy_arg_ok(path))
		return -EINVAL;
	if (cmd == CH_HAPROXY_ADD_CRT_LIST) {
		if (!ch_haproxy_arg_ok(list))
			return -EINVAL;
		arg1 = list;
		arg2 = path;
	}
	if (cmd != CH_HAPROXY_SET_CERT)
		payload_len = 0;
	cap = strlen(name) + strlen(arg1) + (arg2 ? strlen(arg2) : 0) + payload_len + 16;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	n = snprintf(buf, cap, "%s %s%s%s%s\n", name, arg1, arg2 ? " " : "", arg2 ? arg2 : "",
		     cmd == CH_HAPROXY_SET_CERT ? " <<" : "");
	off = (size_t)n;
	if (cmd == CH_HAPROXY_SET_CERT) {
		/* Line by line, dropping empty ones (and carriage returns). */
		bool line_empty = true;

		for (size_t i = 0; i < payload_len; i++) {
			char c = payload[i];

			if (c == '\r')
				continue;
			if (c == '\n') {
				if (!line_empty)
					buf[off++] = '\n';
				line_empty = true;
				continue;
			}
			buf[off++] = c;
			line_empty = false;
		}
		if (!line_empty)
			buf[off++] = '\n';
		buf[off++] = '\n';
	}
	buf[off] = '\0';
	*ret = buf;
	*ret_len = off;
	return 0;
}

/* s is exactly prefix + a + middle + b + suffix (NULL parts skipped). */
static bool
haproxy_is(const char *s, const char *prefix, const char *a, const char *middle, const char *b,
	   const char *suffix)
{
	const char *parts[] = { prefix, a, middle, b, suffix };

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
		if (parts[i] && !haproxy_skip_prefix(&s, parts[i]))
			return false;
	return *s == '\0';
}

/* s is exactly head + any number of '.' + "\nSuccess!" (progress dots). */
static bool
haproxy_is_success(const char *s, const char *head)
{
	if (!haproxy_skip_prefix(&s, head))
		return false;
	while (*s == '.')
		s++;
	return streq(s, "\nSuccess!");
}

/* The list name as HAProxy prints it: a directory without its final '/'. */
static bool
haproxy_list_is(const char *got, size_t got_len, const char *list)
{
	size_t n = strlen(list);

	while (n > 1 && list[n - 1] == '/')
		n--;
	return got_len == n && strncmp(got, list, n) == 0;
}

/* "Filename: <path>\nStatus: Used|Unused|Empty\n..." */
static enum ch_haproxy_reply
haproxy_parse_show_cert(const char *t, const char *path)
{
	const char *s = t;
	size_t plen = strlen(path);

	if (!haproxy_skip_prefix(&s, "Filename: ") || strncmp(s, path, plen) != 0)
		return CH_HAPROXY_FAILED;
	s += plen;
	if (haproxy_skip_prefix(&s, "\nStatus: Used") && (*s == '\n' || !*s))
		return CH_HAPROXY_USED;
	s = t + 10 + plen;
	if ((haproxy_skip_prefix(&s, "\nStatus: Unused") ||
	     haproxy_skip_prefix(&s, "\nStatus: Empty")) &&
	    (*s == '\n' || !*s))
		return CH_HAPROXY_UNUSED;
	return CH_HAPROXY_FAILED;
}

static enum ch_haproxy_reply
haproxy_parse_add(const char *t, const char *path, const char *list)
{
	static const char head[] = "Inserting certificate '";
	const char *s = t, *q;
	size_t plen = strlen(path);

	if (!haproxy_skip_prefix(&s, head) || strncmp(s, path, plen) != 0)
		return CH_HAPROXY_FAILED;
	s += plen;
	if (!haproxy_skip_prefix(&s, "' in crt-list '") || !(q = strchr(s, '\'')) ||
	    !haproxy_list_is(s, (size_t)(q - s), list))
		return CH_HAPROXY_FAILED;
	s = q + 1;
	while (*s == '.')
		s++;
	return streq(s, "\nSuccess!") ? CH_HAPROXY_OK : CH_HAPROXY_FAILED;
}

enum ch_haproxy_reply
ch_haproxy_parse_reply(enum ch_haproxy_cmd cmd, const char *path, const char *list,
		       const char *reply)
{
	_cleanup_free_ char *t = NULL;
	char head[4200];
	size_t n;

	if (!reply || !path || strlen(path) > 4096)
		return CH_HAPROXY_FAILED;
	/* Every answer ends with an empty line; compare without it. */
	t = strdup(reply);
	if (!t)
		return CH_HAPROXY_FAILED;
	n = strlen(t);
	while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r'))
		t[--n] = '\0';

	switch (cmd) {
	case CH_HAPROXY_SET_CERT:
		if (haproxy_is(t, "Transaction created for certificate ", path, "!", NULL, NULL) ||
		    haproxy_is(t, "Transaction updated for certificate ", path, "!", NULL, NULL))
			return CH_HAPROXY_OK;
		if (haproxy_is(t, "Can't replace a certificate which is not referenced by the "
				  "configuration!\nCan't update ",
			       path, "!", NULL, NULL))
			return CH_HAPROXY_UNKNOWN_CERT;
		if (strncmp(t, "Transaction updated for certificate ", 36) == 0 &&
		    !strchr(t, '\n') && n > 37 && t[n - 1] == '!')
			return CH_HAPROXY_OTHER_TRANSACTION;
		if (strncmp(t, "The ongoing transaction is about '", 34) == 0)
			return CH_HAPROXY_OTHER_TRANSACTION;
		return CH_HAPROXY_FAILED;
	case CH_HAPROXY_COMMIT_CERT:
		snprintf(head, sizeof(head), "Committing %s", path);
		if (haproxy_is_success(t, head))
			return CH_HAPROXY_OK;
		if (haproxy_is(t, "No ongoing transaction! !\nCan't commit ", path, "!", NULL, NULL))
			return CH_HAPROXY_NO_TRANSACTION;
		if (strncmp(t, "The ongoing transaction is about '", 34) == 0)
			return CH_HAPROXY_OTHER_TRANSACTION;
		return CH_HAPROXY_FAILED;
	case CH_HAPROXY_ABORT_CERT:
		if (haproxy_is(t, "Transaction aborted for certificate '", path, "'!", NULL, NULL))
			return CH_HAPROXY_OK;
		if (streq(t, "No ongoing transaction!"))
			return CH_HAPROXY_NO_TRANSACTION;
		if (strncmp(t, "The ongoing transaction is about '", 34) == 0)
			return CH_HAPROXY_OTHER_TRANSACTION;
		return CH_HAPROXY_FAILED;
	case CH_HAPROXY_NEW_CERT:
		if (haproxy_is(t, "New empty certificate store '", path, "'!", NULL, NULL))
			return CH_HAPROXY_OK;
		if (haproxy_is(t, "Certificate '", path, "' already exists!", NULL, NULL))
			return CH_HAPROXY_EXISTS;
		return CH_HAPROXY_FAILED;
	case CH_HAPROXY_DEL_CERT:
		if (haproxy_is(t, "Certificate '", path, "' deleted!", NULL, NULL))
			return CH_HAPROXY_OK;
		return CH_HAPROXY_FAILED;
	case CH_HAPROXY_SHOW_CERT:
		return haproxy_parse_show_cert(t, path);
	case CH_HAPROXY_ADD_CRT_LIST:
		return list ? haproxy_parse_add(t, path, list) : CH_HAPROXY_FAILED;
	default:
		return CH_HAPROXY_FAILED;
	}
}

int
ch_haproxy_reply_transaction_path(const char *reply, char **ret)
{
	static const char head[] = "Transaction updated for certificate ";
	const char *s = reply, *end;

	if (!s || !haproxy_skip_prefix(&s, head))
		return -EBADMSG;
	end = strchr(s, '\n');
	if (!end)
		end = s + strlen(s);
	if (end == s || end[-1] != '!' || end - 1 == s)
		return -EBADMSG;
	*ret = strndup(s, (size_t)(end - 1 - s));
	return *ret ? 0 : -ENOMEM;
}

const char *
ch_haproxy_reply_line(const char *reply, char *buf, size_t len)
{
	size_t off = 0;
	bool sep = false;

	if (len == 0)
		return buf;
	for (const char *p = reply ? reply : ""; *p && off + 1 < len; p++) {
		unsigned char c = (unsigned char)*p;

		if (strncmp(p, "-----BEGIN", 10) == 0) {
			snprintf(buf + off, len - off, "%s[PEM data left out]", sep ? "; " : "");
			off += strlen(buf + off);
			break;
		}
		if (c == '\n' || c == '\r') {
			sep = off > 0;
			continue;
		}
		if (sep) {
			if (off + 3 >= len)
				break;
			buf[off++] = ';';
			buf[off++] = ' ';
			sep = false;
		}
		buf[off++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
	}
	buf[off] = '\0';
	return buf;
}
