/* SPDX-License-Identifier: MIT */
/*
 * The "haproxy" target: updates a running HAProxy through its runtime API
 * without a reload. A certificate HAProxy serves is replaced with
 * `set ssl cert` + `commit ssl cert`; one it does not know yet is created
 * with `new ssl cert`, filled the same way and added to a crt-list with
 * `add ssl crt-list`. Any failure once `set ssl cert` was sent is followed
 * by `abort ssl cert`, so no transaction is left open. Each command is one
 * non-blocking connection on the event loop (HAProxy's non-interactive
 * mode) with a timeout. HAProxy allows one certificate transaction at a
 * time, so the deploys to one socket run one after the other. The PEM
 * (and a crt-list line) is staged on disk first and made durable once
 * HAProxy has committed, so a restart serves the same certificate.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/filebatch.h"
#include "certherd/haproxy.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/target.h"
#include "certherd/util.h"
#include "target-internal.h"

#define HAPROXY_TIMEOUT_DEFAULT 10
#define HAPROXY_REPLY_MAX (1024 * 1024)
#define HAPROXY_LIST_MAX (4 * 1024 * 1024)
#define HAPROXY_PEM_MODE 0600

struct haproxy_opts {
	char *socket;
	char *crt;
	char *crt_list;
	int64_t timeout;
};

static const struct ch_conf_key haproxy_keys[] = {
	{ "socket", CH_CONF_STRING, offsetof(struct haproxy_opts, socket), true,
	  "HAProxy's admin socket: /run/haproxy/admin.sock or 127.0.0.1:9999" },
	{ "crt", CH_CONF_PATH, offsetof(struct haproxy_opts, crt), true,
	  "the certificate's path as haproxy.cfg names it, may contain {name}" },
	{ "crt_list", CH_CONF_PATH, offsetof(struct haproxy_opts, crt_list), false,
	  "a crt-list file or certificate directory of haproxy.cfg" },
	{ "timeout", CH_CONF_DURATION, offsetof(struct haproxy_opts, timeout), false,
	  "a duration per command such as 10s (default 10s)" },
	{ NULL },
};

/* One deploy, from the first command to done(). */
struct haproxy_run {
	struct haproxy_run *next; /* haproxy_runs, oldest first */
	struct event_base *base;
	ch_deploy_done_fn *done;
	void *arg;
	char *target_name;
	char *cert_name;
	char *socket;
	char *path; /* the certificate as HAProxy names it */
	char *list; /* NULL: no crt-list */
	struct sockaddr_storage sa;
	socklen_t sa_len;
	int64_t timeout;
	char *payload; /* fullchain + key: secret */
	size_t payload_len;
	struct ch_filebatch *files; /* the PEM (and crt-list) staged */
	bool list_line;             /* the crt-list file gains a line */
	bool started;
	bool rehearse;              /* only ask HAProxy about path; files go to scratch */

	/* Progress. */
	bool in_transaction; /* set ssl cert was sent, no commit or abort answered */
	char *other;         /* another path's transaction our set went into */
	bool tried_new;
	bool created; /* new ssl cert created it: delete it on failure */
	bool added;
	bool failing;
	int fail_r;
	char fail_msg[1536];

	/* The command in flight. */
	enum ch_haproxy_cmd cmd;
	const char *cmd_path; /* path or other */
	int fd;
	bool connected;
	bool reading;
	struct event *io_ev;
	struct event *timer_ev;
	struct event *start_ev;
	char *out; /* may hold the key: wiped */
	size_t out_len, out_off;
	char *in;
	size_t in_len, in_cap;
};

/* Every run in this process, for the one-transaction-per-socket rule. */
static struct haproxy_run *haproxy_runs;

static void haproxy_send(struct haproxy_run *run, enum ch_haproxy_cmd cmd);
static void haproxy_fail(struct haproxy_run *run, int r, const char *fmt, ...) _printf_(3, 4);
static void haproxy_finish(struct haproxy_run *run, int r, const char *message);
static int haproxy_stage_list(struct haproxy_run *run, struct ch_err *reterr);

static int64_t
haproxy_timeout(const struct haproxy_opts *o)
{
	return o->timeout > 0 ? o->timeout : HAPROXY_TIMEOUT_DEFAULT;
}

static int
haproxy_check(const void *opts, struct ch_err *reterr)
{
	const struct haproxy_opts *o = opts;
	_cleanup_free_ char *probe = NULL;
	int r;

	if (!o->socket)
		return ch_err_set(reterr, -EINVAL, "socket is required");
	r = ch_haproxy_parse_address(o->socket, NULL, NULL, reterr);
	if (r < 0)
		return r;
	if (!o->crt)
		return ch_err_set(reterr, -EINVAL, "crt is required");
	probe = ch_target_expand(o->crt, "x");
	if (!probe)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (!ch_haproxy_arg_ok(probe))
		return ch_err_set(reterr, -EINVAL,
				  "crt %s cannot be named to HAProxy's runtime API (space, ';' "
				  "or '\\')",
				  o->crt);
	if (o->crt_list && !ch_haproxy_arg_ok(o->crt_list))
		return ch_err_set(reterr, -EINVAL,
				  "crt_list %s cannot be named to HAProxy's runtime API (space, "
				  "';' or '\\')",
				  o->crt_list);
	if (o->timeout < 0)
		return ch_err_set(reterr, -EINVAL, "timeout must not be negative");
	return 0;
}

static void
haproxy_conn_close(struct haproxy_run *run)
{
	if (run->io_ev) {
		event_free(run->io_ev);
		run->io_ev = NULL;
	}
	if (run->timer_ev) {
		event_free(run->timer_ev);
		run->timer_ev = NULL;
	}
	if (run->fd >= 0) {
		close(run->fd);
		run->fd = -1;
	}
	if (run->out) {
		explicit_bzero(run->out, run->out_len);
		free(run->out);
		run->out = NULL;
	}
	free(run->in);
	run->in = NULL;
	run->in_len = run->in_cap = 0;
	run->out_len = run->out_off = 0;
	run->connected = run->reading = false;
}

static void
haproxy_run_free(struct haproxy_run *run)
{
	if (!run)
		return;
	haproxy_conn_close(run);
	if (run->start_ev)
		event_free(run->start_ev);
	if (run->payload) {
		explicit_bzero(run->payload, run->payload_len);
		free(run->payload);
	}
	ch_filebatch_free(run->files);
	free(run->other);
	free(run->list);
	free(run->path);
	free(run->socket);
	free(run->cert_name);
	free(run->target_name);
	free(run);
}

/* The first run for run's socket, the one allowed to talk to it. */
static struct haproxy_run *
haproxy_first_for(const char *socket)
{
	for (struct haproxy_run *r = haproxy_runs; r; r = r->next)
		if (streq(r->socket, socket))
			return r;
	return NULL;
}

static void
haproxy_unlink_run(struct haproxy_run *run)
{
	struct haproxy_run **p;

	for (p = &haproxy_runs; *p; p = &(*p)->next)
		if (*p == run) {
			*p = run->next;
			break;
		}
	run->next = NULL;
}

/* Frees the run, lets the next one for its socket go, then calls done(). */
static void
haproxy_finish(struct haproxy_run *run, int r, const char *message)
{
	ch_deploy_done_fn *done = run->done;
	void *arg = run->arg;
	struct haproxy_run *next;

	ch_log_debug("target %s: %s: %s", run->target_name, run->cert_name, message);
	haproxy_unlink_run(run);
	next = haproxy_first_for(run->socket);
	if (next && !next->started)
		event_active(next->start_ev, EV_TIMEOUT, 0);
	haproxy_run_free(run);
	done(r, message, arg);
}

/* Ends the failure path: nothing left to undo in HAProxy. */
static void
haproxy_fail_done(struct haproxy_run *run)
{
	char msg[sizeof(run->fail_msg)];

	/* The staged files are removed with the batch. */
	snprintf(msg, sizeof(msg), "%s", run->fail_msg);
	haproxy_finish(run, run->fail_r, msg);
}

/* Undoes what is open in HAProxy, one step per call, then reports. */
static void
haproxy_unwind(struct haproxy_run *run)
{
	if (run->other) {
		haproxy_send(run, CH_HAPROXY_ABORT_CERT);
		return;
	}
	if (run->in_transaction) {
		haproxy_send(run, CH_HAPROXY_ABORT_CERT);
		return;
	}
	if (run->created && !run->added) {
		run->created = false;
		haproxy_send(run, CH_HAPROXY_DEL_CERT);
		return;
	}
	haproxy_fail_done(run);
}

static void haproxy_fail(struct haproxy_run *run, int r, const char *fmt, ...) _printf_(3, 4);

/* Records the first failure, then aborts what is open. */
static void
haproxy_fail(struct haproxy_run *run, int r, const char *fmt, ...)
{
	va_list ap;

	if (!run->failing) {
		run->failing = true;
		run->fail_r = r;
		va_start(ap, fmt);
		vsnprintf(run->fail_msg, sizeof(run->fail_msg), fmt, ap);
		va_end(ap);
	}
	haproxy_unwind(run);
}

/* Appends a note about the clean-up to the failure's message. */
static void
haproxy_fail_note(struct haproxy_run *run, const char *fmt, ...) _printf_(2, 3);

static void
haproxy_fail_note(struct haproxy_run *run, const char *fmt, ...)
{
	size_t n = strlen(run->fail_msg);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(run->fail_msg + n, sizeof(run->fail_msg) - n, fmt, ap);
	va_end(ap);
}

/* "`commit ssl cert /etc/haproxy/www.pem`" for messages. */
static const char *
haproxy_cmd_desc(const struct haproxy_run *run, enum ch_haproxy_cmd cmd, char *buf, size_t len)
{
	if (cmd == CH_HAPROXY_ADD_CRT_LIST)
		snprintf(buf, len, "`%s %s %s`", ch_haproxy_cmd_to_string(cmd), run->list,
			 run->path);
	else
		snprintf(buf, len, "`%s %s`", ch_haproxy_cmd_to_string(cmd),
			 run->cmd_path ? run->cmd_path : run->path);
	return buf;
}

/* The connection failed before a complete reply. */
static void
haproxy_transport_error(struct haproxy_run *run, int r, const char *what)
{
	enum ch_haproxy_cmd cmd = run->cmd;
	char desc[4200];

	haproxy_conn_close(run);
	haproxy_cmd_desc(run, cmd, desc, sizeof(desc));
	if (run->failing) {
		/* Cleaning up: note it and go on with what is left. */
		if (cmd == CH_HAPROXY_ABORT_CERT) {
			if (run->other) {
				free(run->other);
				run->other = NULL;
			} else
				run->in_transaction = false;
			haproxy_fail_note(run, "; %s failed too (%s): the transaction may still "
					  "be open",
					  desc, what);
		} else
			haproxy_fail_note(run, "; %s failed too (%s)", desc, what);
		haproxy_unwind(run);
		return;
	}
	haproxy_fail(run, r, "HAProxy's runtime API at %s: %s %s", run->socket, desc, what);
}

/* After a committed transaction: the files, then done(). */
static void
haproxy_succeed(struct haproxy_run *run)
{
	char msg[sizeof(run->fail_msg)];
	struct ch_err err = { "" };
	int fails;

	/* Added to a crt-list file: so is its line, for the next start. */
	if (run->added && haproxy_stage_list(run, &err) < 0) {
		ch_filebatch_group_abort(run->files);
		snprintf(msg, sizeof(msg),
			 "HAProxy serves the new certificate (committed %s through %s and added "
			 "it to crt-list %s), but %s, so a restart would not serve it",
			 run->path, run->socket, run->list, err.msg);
		haproxy_finish(run, -EIO, msg);
		return;
	}
	ch_filebatch_group_end(run->files, NULL, NULL);
	fails = ch_filebatch_commit(run->files);
	if (fails > 0) {
		snprintf(msg, sizeof(msg),
			 "HAProxy serves the new certificate (committed %s through %s), but "
			 "writing it to disk failed, so a restart would bring the old one back",
			 run->path, run->socket);
		haproxy_finish(run, -EIO, msg);
		return;
	}
	snprintf(msg, sizeof(msg), "committed %s through %s%s%s%s; wrote %s%s", run->path,
		 run->socket, run->added ? ", added it to crt-list " : "",
		 run->added ? run->list : "", run->created ? " (new in HAProxy)" : "", run->path,
		 run->list_line ? " and its crt-list line" : "");
	haproxy_finish(run, 0, msg);
}

/*
 * A rehearsal's answer to show ssl cert: HAProxy is reachable and knows
 * the certificate (or it would be added to crt_list). Nothing changed in
 * HAProxy; the PEM goes to the scratch dir.
 */
static void
haproxy_rehearsed(struct haproxy_run *run, enum ch_haproxy_reply rep, const char *line)
{
	char msg[sizeof(run->fail_msg)];

	if (rep != CH_HAPROXY_USED && rep != CH_HAPROXY_UNUSED && !run->list) {
		haproxy_fail(run, -ENOENT,
			     "HAProxy at %s does not serve %s (\"%s\"); set crt_list to add it "
			     "to a crt-list, or name the crt of haproxy.cfg",
			     run->socket, run->path, line);
		return;
	}
	ch_filebatch_group_end(run->files, NULL, NULL);
	if (ch_filebatch_commit(run->files) > 0) {
		haproxy_finish(run, -EIO, "cannot write the PEM to the scratch directory");
		return;
	}
	snprintf(msg, sizeof(msg), "HAProxy at %s %s %s (not changed); wrote the PEM under the "
				   "scratch directory",
		 run->socket,
		 rep == CH_HAPROXY_USED	  ? "serves"
		 : rep == CH_HAPROXY_UNUSED ? "knows (unused)"
					    : "would add to crt-list",
		 run->path);
	if (rep != CH_HAPROXY_USED && rep != CH_HAPROXY_UNUSED)
		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), " (%s)", run->list);
	haproxy_finish(run, 0, msg);
}

/* A complete reply to run->cmd is in run->in. */
static void
haproxy_reply(struct haproxy_run *run)
{
	enum ch_haproxy_cmd cmd = run->cmd;
	enum ch_haproxy_reply rep;
	char line[512], desc[4200];
	_cleanup_free_ char *run_in_copy = TAKE_PTR(run->in);

	rep = ch_haproxy_parse_reply(cmd, run->cmd_path, run->list,
				     run_in_copy ? run_in_copy : "");
	ch_haproxy_reply_line(run_in_copy, line, sizeof(line));
	haproxy_cmd_desc(run, cmd, desc, sizeof(desc));
	haproxy_conn_close(run);

	if (run->failing) {
		if (cmd == CH_HAPROXY_ABORT_CERT && run->other) {
			rep = ch_haproxy_parse_reply(cmd, run->other, NULL, run_in_copy);
			if (rep == CH_HAPROXY_OK)
				haproxy_fail_note(run, "; aborted that transaction");
			else
				haproxy_fail_note(run, "; %s answered \"%s\"", desc, line);
			free(run->other);
			run->other = NULL;
		} else if (cmd == CH_HAPROXY_ABORT_CERT) {
			run->in_transaction = false;
			if (rep == CH_HAPROXY_OK)
				haproxy_fail_note(run, "; transaction aborted");
			else if (rep != CH_HAPROXY_NO_TRANSACTION)
				haproxy_fail_note(run, "; %s answered \"%s\"", desc, line);
		} else if (cmd == CH_HAPROXY_DEL_CERT && rep != CH_HAPROXY_OK)
			haproxy_fail_note(run, "; %s answered \"%s\"", desc, line);
		haproxy_unwind(run);
		return;
	}

	switch (cmd) {
	case CH_HAPROXY_SET_CERT:
		if (rep == CH_HAPROXY_OK) {
			haproxy_send(run, CH_HAPROXY_COMMIT_CERT);
			return;
		}
		if (rep == CH_HAPROXY_UNKNOWN_CERT && run->list && !run->tried_new) {
			/* Nothing was opened: HAProxy did not know the path. */
			run->in_transaction = false;
			run->tried_new = true;
			haproxy_send(run, CH_HAPROXY_NEW_CERT);
			return;
		}
		if (rep == CH_HAPROXY_UNKNOWN_CERT) {
			run->in_transaction = false;
			haproxy_fail(run, -ENOENT,
				     "HAProxy at %s does not serve %s (\"%s\"); set crt_list to add "
				     "it to a crt-list, or name the crt of haproxy.cfg",
				     run->socket, run->path, line);
			return;
		}
		if (rep == CH_HAPROXY_OTHER_TRANSACTION) {
			/*
			 * Someone else's transaction was open. Where HAProxy put
			 * our payload into it, it now holds the wrong
			 * certificate: abort it rather than let it be committed.
			 */
			run->in_transaction = false;
			(void)ch_haproxy_reply_transaction_path(run_in_copy, &run->other);
			haproxy_fail(run, -EBUSY,
				     "HAProxy at %s has a transaction open for another certificate "
				     "(\"%s\")",
				     run->socket, line);
			return;
		}
		haproxy_fail(run, -EPROTO, "HAProxy at %s refused %s: \"%s\"", run->socket, desc,
			     line);
		return;
	case CH_HAPROXY_NEW_CERT:
		if (rep == CH_HAPROXY_OK || rep == CH_HAPROXY_EXISTS) {
			run->created = rep == CH_HAPROXY_OK;
			haproxy_send(run, CH_HAPROXY_SET_CERT);
			return;
		}
		haproxy_fail(run, -EPROTO, "HAProxy at %s refused %s: \"%s\"", run->socket, desc,
			     line);
		return;
	case CH_HAPROXY_COMMIT_CERT:
		if (rep == CH_HAPROXY_OK) {
			run->in_transaction = false;
			/*
			 * New in HAProxy: into the crt-list. Known before: still
			 * check it is used, in case an earlier attempt created it
			 * and failed before adding it.
			 */
			if (run->list && run->tried_new)
				haproxy_send(run, CH_HAPROXY_ADD_CRT_LIST);
			else if (run->list)
				haproxy_send(run, CH_HAPROXY_SHOW_CERT);
			else
				haproxy_succeed(run);
			return;
		}
		if (rep == CH_HAPROXY_NO_TRANSACTION)
			run->in_transaction = false;
		haproxy_fail(run, -EPROTO, "HAProxy at %s refused %s: \"%s\"", run->socket, desc,
			     line);
		return;
	case CH_HAPROXY_SHOW_CERT:
		if (run->rehearse) {
			haproxy_rehearsed(run, rep, line);
			return;
		}
		if (rep == CH_HAPROXY_USED) {
			haproxy_succeed(run);
			return;
		}
		if (rep == CH_HAPROXY_UNUSED) {
			haproxy_send(run, CH_HAPROXY_ADD_CRT_LIST);
			return;
		}
		haproxy_fail(run, -EPROTO, "HAProxy at %s answered %s with \"%s\"", run->socket,
			     desc, line);
		return;
	case CH_HAPROXY_ADD_CRT_LIST:
		if (rep == CH_HAPROXY_OK) {
			run->added = true;
			haproxy_succeed(run);
			return;
		}
		haproxy_fail(run, -EPROTO, "HAProxy at %s refused %s: \"%s\"", run->socket, desc,
			     line);
		return;
	default:
		haproxy_fail(run, -EPROTO, "unexpected command %d", (int)cmd);
		return;
	}
}

static void
haproxy_timeout_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct haproxy_run *run = userdata;
	char what_s[64];

	snprintf(what_s, sizeof(what_s), "got no complete answer within %" PRId64 "s",
		 run->timeout);
	haproxy_transport_error(run, -ETIMEDOUT, what_s);
}

static int
haproxy_io_write(struct haproxy_run *run)
{
	while (run->out_off < run->out_len) {
		ssize_t n = send(run->fd, run->out + run->out_off, run->out_len - run->out_off,
				 MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -errno;
		run->out_off += (size_t)n;
	}
	explicit_bzero(run->out, run->out_len);
	free(run->out);
	run->out = NULL;
	run->reading = true;
	/* HAProxy has the whole command: a transaction may be open from now. */
	if (run->cmd == CH_HAPROXY_SET_CERT)
		run->in_transaction = true;
	event_del(run->io_ev);
	if (event_assign(run->io_ev, run->base, run->fd, EV_READ | EV_PERSIST,
			 event_get_callback(run->io_ev), run) < 0 ||
	    event_add(run->io_ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

/* Returns 1 at the end of the reply, 0 for more, -errno on error. */
static int
haproxy_io_read(struct haproxy_run *run)
{
	for (int i = 0; i < 64; i++) {
		ssize_t n;

		if (run->in_cap - run->in_len < 4096) {
			size_t cap = run->in_cap ? 2 * run->in_cap : 8192;
			char *p;

			if (cap > HAPROXY_REPLY_MAX + 1)
				return -EFBIG;
			p = realloc(run->in, cap);
			if (!p)
				return -ENOMEM;
			run->in = p;
			run->in_cap = cap;
		}
		n = recv(run->fd, run->in + run->in_len, run->in_cap - run->in_len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -errno;
		if (n == 0) {
			run->in[run->in_len] = '\0';
			return 1;
		}
		run->in_len += (size_t)n;
		run->in[run->in_len] = '\0';
	}
	return 0;
}

static void
haproxy_io_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct haproxy_run *run = userdata;
	char what_s[256];
	int r, err = 0;

	if (!run->connected) {
		socklen_t len = sizeof(err);

		if (getsockopt(run->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			snprintf(what_s, sizeof(what_s), "cannot connect: %s", strerror(err));
			haproxy_transport_error(run, -err, what_s);
			return;
		}
		run->connected = true;
	}
	if (!run->reading) {
		r = haproxy_io_write(run);
		if (r < 0) {
			snprintf(what_s, sizeof(what_s), "cannot send the command: %s",
				 strerror(-r));
			haproxy_transport_error(run, r, what_s);
		}
		return;
	}
	r = haproxy_io_read(run);
	if (r == 0)
		return;
	if (r < 0) {
		snprintf(what_s, sizeof(what_s), "cannot read the answer: %s", strerror(-r));
		haproxy_transport_error(run, r, what_s);
		return;
	}
	if (run->in_len == 0) {
		haproxy_transport_error(run, -ECONNRESET, "closed the connection without an answer");
		return;
	}
	haproxy_reply(run);
}

/* Sends cmd on a new connection; the reply arrives in haproxy_reply(). */
static void
haproxy_send(struct haproxy_run *run, enum ch_haproxy_cmd cmd)
{
	struct timeval tv = { .tv_sec = (time_t)run->timeout };
	char what_s[256];
	int r;

	haproxy_conn_close(run);
	run->cmd = cmd;
	run->cmd_path = cmd == CH_HAPROXY_ABORT_CERT && run->other ? run->other : run->path;
	r = ch_haproxy_format(cmd, run->cmd_path, run->list, run->payload, run->payload_len, &run->out,
			      &run->out_len);
	if (r < 0) {
		haproxy_transport_error(run, r, "cannot be formatted");
		return;
	}
	run->fd = socket(run->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (run->fd < 0) {
		r = -errno;
		snprintf(what_s, sizeof(what_s), "cannot create a socket: %s", strerror(-r));
		haproxy_transport_error(run, r, what_s);
		return;
	}
	if (connect(run->fd, (struct sockaddr *)&run->sa, run->sa_len) < 0 &&
	    errno != EINPROGRESS) {
		r = -errno;
		snprintf(what_s, sizeof(what_s), "cannot connect: %s", strerror(-r));
		haproxy_transport_error(run, r, what_s);
		return;
	}
	run->io_ev = event_new(run->base, run->fd, EV_WRITE | EV_PERSIST, haproxy_io_cb, run);
	run->timer_ev = evtimer_new(run->base, haproxy_timeout_cb, run);
	if (!run->io_ev || !run->timer_ev || event_add(run->io_ev, NULL) < 0 ||
	    evtimer_add(run->timer_ev, &tv) < 0)
		haproxy_transport_error(run, -ENOMEM, "out of memory");
}

static void
haproxy_start_cb(evutil_socket_t fd, short what, void *userdata)
{
	struct haproxy_run *run = userdata;

	run->started = true;
	haproxy_send(run, run->rehearse ? CH_HAPROXY_SHOW_CERT : CH_HAPROXY_SET_CERT);
}

/*
 * Stages the crt-list file with a line for path when it is a regular file
 * without one (a directory needs nothing: HAProxy loads every file in it).
 */
static int
haproxy_stage_list(struct haproxy_run *run, struct ch_err *reterr)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ char *data = NULL;
	size_t len = 0, plen = strlen(run->path);
	struct stat st;
	int r;

	if (!run->list || stat(run->list, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	r = ch_read_file(run->list, HAPROXY_LIST_MAX, &text, &len);
	if (r < 0)
		return ch_err_set(reterr, r, "cannot read crt-list %s: %s", run->list,
				  strerror(-r));
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		while (*l == ' ' || *l == '\t')
			l++;
		if (strncmp(l, run->path, plen) == 0 &&
		    (l[plen] == '\0' || l[plen] == '\n' || l[plen] == ' ' || l[plen] == '\t'))
			return 0;
	}
	if (!text)
		len = 0;
	if (asprintf(&data, "%s%s%s\n", text ? text : "",
		     len > 0 && text[len - 1] != '\n' ? "\n" : "", run->path) < 0) {
		data = NULL;
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	r = ch_filebatch_stage(run->files, run->list, data, strlen(data), st.st_mode & 07777,
			       st.st_uid == geteuid() ? (uid_t)-1 : st.st_uid,
			       st.st_gid == getegid() ? (gid_t)-1 : st.st_gid, "crt-list", reterr);
	if (r >= 0)
		run->list_line = true;
	return r;
}

static int
haproxy_prepare(struct haproxy_run *run, const struct haproxy_opts *o,
		const struct ch_deploy_item *item, const char *scratch, struct ch_err *reterr)
{
	_cleanup_free_ char *dest = NULL;
	const char *chain = item->chain_pem ? item->chain_pem : "";
	const char *parts[3] = { item->cert_pem, chain, item->key_pem };
	size_t lens[3] = { strlen(item->cert_pem), strlen(chain), item->key_pem_len };
	int r;

	r = ch_haproxy_parse_address(o->socket, &run->sa, &run->sa_len, reterr);
	if (r < 0)
		return r;
	r = ch_target_expand_path(o->crt, item->cert_name, &run->path, reterr);
	if (r < 0)
		return r;
	if (!ch_haproxy_arg_ok(run->path) || (run->list && !ch_haproxy_arg_ok(run->list)))
		return ch_err_set(reterr, -EINVAL,
				  "%s cannot be named to HAProxy's runtime API (space, ';' or "
				  "'\\')",
				  run->path);
	r = ch_target_join_pem(parts, lens, 3, &run->payload, &run->payload_len);
	if (r < 0)
		return ch_err_set(reterr, r, "out of memory");
	if (scratch) {
		r = ch_target_rehearse_path(scratch, run->path, "crt", &dest, reterr);
		if (r < 0)
			return r;
	}
	return ch_filebatch_stage(run->files, dest ? dest : run->path, run->payload, run->payload_len,
				  HAPROXY_PEM_MODE, (uid_t)-1, (gid_t)-1, "crt", reterr);
}

static int
haproxy_deploy(const struct ch_target_env *env, const char *target_name, const void *opts,
	       const struct ch_deploy_item *item, ch_deploy_done_fn *done, void *arg)
{
	const struct haproxy_opts *o = opts;
	struct ch_err err = { "" };
	struct haproxy_run *run, **tail;
	int r;

	if (!o->socket || !o->crt)
		return -EINVAL;
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->fd = -1;
	run->base = env->base;
	run->done = done;
	run->arg = arg;
	run->timeout = haproxy_timeout(o);
	run->target_name = strdup(target_name);
	run->cert_name = strdup(item->cert_name);
	run->socket = strdup(o->socket);
	run->list = o->crt_list ? strdup(o->crt_list) : NULL;
	run->files = ch_filebatch_new();
	run->start_ev = evtimer_new(env->base, haproxy_start_cb, run);
	if (!run->target_name || !run->cert_name || !run->socket || (o->crt_list && !run->list) ||
	    !run->files || !run->start_ev) {
		haproxy_run_free(run);
		return -ENOMEM;
	}

	run->rehearse = env->rehearse_dir != NULL;
	r = haproxy_prepare(run, o, item, env->rehearse_dir, &err);
	if (r < 0) {
		ch_filebatch_group_abort(run->files);
		haproxy_run_free(run);
		ch_log_debug("target %s: %s: %s", target_name, item->cert_name, err.msg);
		return ch_target_done_later(env->base, done, arg, r, err.msg);
	}

	for (tail = &haproxy_runs; *tail; tail = &(*tail)->next)
		;
	*tail = run;
	if (haproxy_first_for(run->socket) == run) {
		struct timeval zero = { 0, 0 };

		if (evtimer_add(run->start_ev, &zero) < 0) {
			haproxy_unlink_run(run);
			haproxy_run_free(run);
			return -ENOMEM;
		}
	}
	return 0;
}

static int
haproxy_current(const void *opts, const char *cert_name, char **ret_pem)
{
	const struct haproxy_opts *o = opts;
	_cleanup_free_ char *path = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	if (!o->crt)
		return -ENOENT;
	r = ch_target_expand_path(o->crt, cert_name, &path, NULL);
	if (r < 0)
		return r;
	r = ch_read_file(path, HAPROXY_REPLY_MAX, &buf, &len);
	if (r < 0)
		return r;
	r = ch_target_extract_certs(buf, ret_pem);
	/* The file holds the private key too. */
	explicit_bzero(buf, len);
	free(buf);
	return r;
}

const struct ch_target_ops ch_target_haproxy_ops = {
	.type = "haproxy",
	.keys = haproxy_keys,
	.opts_size = sizeof(struct haproxy_opts),
	.check = haproxy_check,
	.deploy = haproxy_deploy,
	.current = haproxy_current,
};
