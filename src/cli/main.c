/* SPDX-License-Identifier: MIT */
/*
 * certherd: the on-call CLI. Talks to certherdd over its status socket,
 * prints tables for people and JSON (--json) for scripts.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ch-config.h"
#include "certherd/conf.h"
#include "certherd/ctl.h"
#include "certherd/util.h"
#include "cli.h"

static void
usage(FILE *f)
{
	fprintf(f, "Usage: certherd [--socket PATH | --config FILE] [--json] COMMAND [ARGS]\n\n"
		   "Commands:\n");
	for (const struct cli_verb *v = cli_verbs; v->name; v++)
		fprintf(f, "  %-14s %-22s %s\n", v->name, v->args, v->help);
	fprintf(f, "\nOptions:\n"
		   "  -s, --socket PATH   status socket (default $CERTHERD_SOCKET or %s)\n"
		   "  -c, --config FILE   take the socket path from this configuration\n"
		   "  -j, --json          print the daemon's JSON reply\n"
		   "  -f, --force         with renew: renew even when not due\n"
		   "  -n, --dry-run       with renew: rehearse the renewal into a scratch\n"
		   "                      directory; the inventory and targets are not changed\n"
		   "  -r, --reason REASON with revoke: an RFC 5280 reason, e.g. keyCompromise\n"
		   "  -V, --version       print the version\n",
		   CH_RUNSTATEDIR "/certherd.sock");
}

static int
read_line(int fd, char **ret)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t n;

		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > CH_CTL_MAX_REPLY) {
				free(buf);
				return -EMSGSIZE;
			}
			char *nbuf = realloc(buf, cap);

			if (!nbuf) {
				free(buf);
				return -ENOMEM;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return n < 0 ? -errno : -ECONNRESET;
		}
		/* Only the new bytes can hold the newline: a long reply stays linear. */
		char *nl = memchr(buf + len, '\n', (size_t)n);

		len += (size_t)n;
		buf[len] = '\0';
		if (nl) {
			*nl = '\0';
			*ret = buf;
			return 0;
		}
	}
}

/* One connection per call: hello, request, reply. */
json_t *
cli_call(const struct cli *c, json_t *req)
{
	_cleanup_free_ char *reply = cli_call_line(c, req);
	json_error_t jerr;
	json_t *r;

	if (!reply)
		return NULL;
	r = json_loads(reply, 0, &jerr);
	if (!r)
		fprintf(stderr, "certherd: unreadable reply from certherdd: %s\n", jerr.text);
	return r;
}

/* Like cli_call(), returning the reply line unparsed (caller frees). */
char *
cli_call_line(const struct cli *c, json_t *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *hello = NULL, *reply = NULL, *line = NULL;
	size_t len;

	if (strlen(c->socket) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "certherd: socket path too long: %s\n", c->socket);
		json_decref(req);
		return NULL;
	}
	strcpy(sa.sun_path, c->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr,
			"certherd: cannot connect to certherdd at %s: %s\n"
			"Is certherdd running? (systemctl status certherd; or pass --socket)\n",
			c->socket, strerror(errno));
		json_decref(req);
		return NULL;
	}
	if (read_line(fd, &hello) < 0) {
		fprintf(stderr, "certherd: certherdd at %s closed the connection\n", c->socket);
		json_decref(req);
		return NULL;
	}
	line = ch_ctl_dump_line(req, &len);
	json_decref(req);
	if (!line || write(fd, line, len) != (ssize_t)len) {
		fprintf(stderr, "certherd: cannot send the request: %s\n", strerror(errno));
		return NULL;
	}
	if (read_line(fd, &reply) < 0) {
		fprintf(stderr, "certherd: no reply from certherdd\n");
		return NULL;
	}
	return TAKE_PTR(reply);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct cli c = { 0 };
	struct ch_conf *conf = NULL;
	char *socket_buf = NULL;
	int o, r;

	c.socket = getenv("CERTHERD_SOCKET");
	/* "+" stops at the verb; options after it are parsed again below. */
	while ((o = getopt_long(argc, argv, "+s:c:jfnVh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			c.socket = optarg;
			break;
		case 'c':
			c.config = optarg;
			break;
		case 'j':
			c.json = true;
			break;
		case 'f':
			c.force = true;
			break;
		case 'n':
			c.dry_run = true;
			break;
		case 'V':
			printf("certherd %s\n", CH_VERSION);
			return CLI_EXIT_OK;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_ERROR;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_EXIT_ERROR;
	}
	const char *verb = argv[optind];
	int vargc = 0;
	char **vargv = ch_xcalloc((size_t)argc, sizeof(char *));

	for (int i = optind + 1; i < argc; i++) {
		if (streq(argv[i], "--json") || streq(argv[i], "-j"))
			c.json = true;
		else if (streq(argv[i], "--force") || streq(argv[i], "-f"))
			c.force = true;
		else if (streq(argv[i], "--dry-run") || streq(argv[i], "-n"))
			c.dry_run = true;
		else if ((streq(argv[i], "--reason") || streq(argv[i], "-r")) && i + 1 < argc)
			c.reason = argv[++i];
		else if (strncmp(argv[i], "--reason=", 9) == 0)
			c.reason = argv[i] + 9;
		else
			vargv[vargc++] = argv[i];
	}
	if (!c.socket && c.config && !streq(verb, "check-config")) {
		struct ch_conf_errors errs = { 0 };

		if (ch_conf_load(c.config, &conf, &errs) < 0) {
			fprintf(stderr, "certherd: cannot read %s; run 'certherd check-config %s'\n",
				c.config, c.config);
			ch_conf_errors_clear(&errs);
			free(vargv);
			return CLI_EXIT_ERROR;
		}
		socket_buf = ch_xstrdup(conf->socket);
		c.socket = socket_buf;
		ch_conf_free(conf);
	}
	if (!c.socket)
		c.socket = CH_RUNSTATEDIR "/certherd.sock";

	for (const struct cli_verb *v = cli_verbs; v->name; v++) {
		if (!streq(v->name, verb))
			continue;
		if (vargc < v->min_args || vargc > v->max_args) {
			fprintf(stderr, "Usage: certherd %s %s\n", v->name, v->args);
			free(vargv);
			free(socket_buf);
			return CLI_EXIT_ERROR;
		}
		r = v->run(&c, vargc, vargv);
		free(vargv);
		free(socket_buf);
		return r;
	}
	fprintf(stderr, "certherd: unknown command '%s'\n", verb);
	usage(stderr);
	free(vargv);
	free(socket_buf);
	return CLI_EXIT_ERROR;
}
