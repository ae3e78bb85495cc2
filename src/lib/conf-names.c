/* SPDX-License-Identifier: MIT */
/*
 * Checking and normalising the names of a certificate: DNS name syntax
 * (with a leading wildcard label) and IP literals in canonical form.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf-internal.h"

/* Why s is not a valid DNS name, or NULL when it is. */
const char *
ch_conf_dns_name_problem(const char *s, char *buf, size_t buflen)
{
	size_t label = 0;
	char prev = '\0';

	if (strlen(s) > 253)
		return "longer than 253 characters";
	if (s[0] == '*') {
		if (s[1] != '.')
			return "a wildcard must be a whole leading label, as in *.example.com";
		s += 2;
		if (!*s)
			return "a wildcard needs a domain after \"*.\"";
	}
	for (const char *p = s; *p; p++) {
		char ch = *p;

		if (ch == '.') {
			if (label == 0)
				return "empty label";
			if (prev == '-')
				return "a label ends with '-'";
			label = 0;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			   (ch >= '0' && ch <= '9') || ch == '-') {
			if (label == 0 && ch == '-')
				return "a label starts with '-'";
			if (++label > 63)
				return "a label is longer than 63 characters";
		} else {
			if ((unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f)
				snprintf(buf, buflen, "invalid character '%c'", ch);
			else
				snprintf(buf, buflen, "invalid character 0x%02x", (unsigned char)ch);
			return buf;
		}
		prev = ch;
	}
	if (label == 0)
		return "empty label";
	if (prev == '-')
		return "a label ends with '-'";
	return NULL;
}

/* Lower-cased DNS name or canonical IP address text; *is_ip says which. */
char *
ch_conf_name_normalize(const char *s, bool *is_ip)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char text[INET6_ADDRSTRLEN];
	char *d;

	*is_ip = true;
	if (inet_pton(AF_INET, s, addr) == 1)
		return strdup(s); /* only dotted quads without leading zeros parse */
	if (inet_pton(AF_INET6, s, addr) == 1)
		return strdup(inet_ntop(AF_INET6, addr, text, sizeof(text)) ? text : s);

	*is_ip = false;
	d = strdup(s);
	if (!d)
		return NULL;
	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return d;
}
