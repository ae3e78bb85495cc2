/* SPDX-License-Identifier: MIT */
/*
 * The status socket: a unix stream socket speaking one JSON request and
 * one JSON reply per line (ctl.h). Commands live in a table with their
 * access level; mutating commands are accepted only from root or the
 * daemon's own uid, checked with SO_PEERCRED. Requests are capped in
 * size, idle clients time out, and garbage gets an error reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ch-config.h"
#include "certherd/ctl.h"
#include "certherd/log.h"
#include "certherd/util.h"
#include "daemon.h"

#define CONTROL_MAX_CLIENTS 64
#define CONTROL_TIMEOUT_SEC 5

struct control {
	struct daemon *d;
	struct evconnlistener *listener;
	char *path;
	unsigned n_clients;
};

struct client {
	struct control *ctl;
	struct bufferevent *bev;
	uid_t uid;
	pid_t pid;
	bool closing; /* free once the output is written */
	bool broken;  /* read nothing more (oversize request, failed reply) */
	/* A list reply being streamed: the last name written, NULL before the first. */
	bool listing;
	char *list_after;
	/* A renew --dry-run waiting for its rehearsal; read nothing more until it ends. */
	struct rehearsal *rehearsal;
	struct ctl_wait *wait; /* a reply that comes when a CA has answered */
};

/* A command answered later (acme-rollover); c is NULL once the client is gone. */
struct ctl_wait {
	struct client *c;
	struct daemon *d;
	struct generation *gen;
	char *ca;
};

enum ctl_access {
	CTL_READONLY,
	CTL_ADMIN,
};

struct ctl_cmd {
	const char *name;
	const char *usage;
	enum ctl_access access;
	json_t *(*exec)(struct daemon *d, json_t *req);
};

static json_t *
cmd_status(struct daemon *d, json_t *req)
{
	return daemon_status_json(d);
}

/*
 * `list` is streamed: the reply line is written a page of certificates at
 * a time whenever the client has read most of what was sent, so a large
 * inventory neither holds the loop nor builds the whole reply in memory.
 * Pages are read by name order; a certificate renewed meanwhile is shown
 * as it is when its page is read.
 */
#define LIST_PAGE 256
#define LIST_HIGH_WATER (256 * 1024)

struct list_page {
	struct evbuffer *out;
	char *last;
	bool first;
};

static int
list_cb(const struct ch_store_cert *c, void *arg)
{
	struct list_page *p = arg;
	json_t *o = json_pack("{s:s,s:s,s:b,s:s?,s:I,s:I,s:I,s:I,s:i,s:s?,s:s?}", "name", c->name,
			      "state", c->state, "wanted", c->wanted, "serial", c->cur_serial,
			      "not_before", (json_int_t)c->cur_not_before, "not_after",
			      (json_int_t)c->cur_not_after, "renew_at", (json_int_t)c->renew_at,
			      "next_at", (json_int_t)c->next_at, "failures", c->failures,
			      "last_outcome", c->last_outcome, "last_error", c->last_error);
	char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (!js)
		return -ENOMEM;
	if (!p->first)
		evbuffer_add(p->out, ",", 1);
	p->first = false;
	evbuffer_add(p->out, js, strlen(js));
	free(js);
	free(p->last);
	p->last = ch_xstrdup(c->name);
	return 0;
}

static void client_read_cb(struct bufferevent *bev, void *arg);

/* Writes pages until the output is full enough or the list ends. */
static void
list_continue(struct client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct daemon *d = c->ctl->d;

	while (c->listing && evbuffer_get_length(out) < LIST_HIGH_WATER) {
		struct list_page p = { out, NULL, c->list_after == NULL };
		int n = ch_store_cert_foreach_page(d->store, c->list_after, LIST_PAGE, list_cb, &p);

		if (p.last) {
			free(c->list_after);
			c->list_after = p.last;
		}
		if (n < 0) {
			/* The line so far is cut off: the client sees invalid JSON and an error. */
			ch_log_error("Listing certificates failed: %s", strerror(-n));
			c->listing = false;
			c->closing = c->broken = true;
			bufferevent_disable(c->bev, EV_READ);
			break;
		}
		if (n < LIST_PAGE) {
			evbuffer_add(out, "]}\n", 3);
			c->listing = false;
		}
	}
	if (!c->listing) {
		free(c->list_after);
		c->list_after = NULL;
		if (!c->broken)
			client_read_cb(c->bev, c); /* requests that waited behind the list */
	}
}

static json_t *
cmd_list(struct daemon *d, json_t *req)
{
	/* Not reached: list is streamed by client_dispatch(). */
	return ch_ctl_error("list cannot be answered here");
}

static void
client_list_start(struct client *c)
{
	static const char head[] = "{\"ok\":true,\"certificates\":[";

	store_flush(c->ctl->d);
	evbuffer_add(bufferevent_get_output(c->bev), head, sizeof(head) - 1);
	c->listing = true;
	c->list_after = NULL;
	list_continue(c);
}

static int
show_dep_cb(const struct ch_store_deployment *dep, void *arg)
{
	json_array_append_new(
		arg, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:i,s:s?}", "target", dep->target, "state",
			       dep->state, "attempted_at", (json_int_t)dep->attempted_at,
			       "succeeded_at", (json_int_t)dep->succeeded_at, "verified_at",
			       (json_int_t)dep->verified_at, "next_at", (json_int_t)dep->next_at,
			       "attempts", dep->attempts, "last_error", dep->last_error));
	return 0;
}

struct show_ctx {
	struct daemon *d;
	json_t *arr;
};

static int
show_iss_cb(const struct ch_store_issuance *i, void *arg)
{
	struct show_ctx *sc = arg;
	json_t *deps = json_array();

	ch_store_deployment_foreach_for_issuance(sc->d->store, i->id, show_dep_cb, deps);
	json_array_append_new(
		sc->arr, json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:s?,s:b,s:I,s:s?,s:o}", "id",
				   (json_int_t)i->id, "serial", i->serial, "fingerprint",
				   i->fingerprint, "not_before", (json_int_t)i->not_before,
				   "not_after", (json_int_t)i->not_after, "issued_at",
				   (json_int_t)i->issued_at, "ca", i->ca, "adopted", i->adopted,
				   "revoked_at", (json_int_t)i->revoked_at, "revocation_reason",
				   i->revocation_reason, "deployments", deps));
	return 0;
}

static int
show_ep_cb(const struct ch_store_endpoint *e, void *arg)
{
	json_array_append_new(
		arg, json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:s?}", "endpoint", e->endpoint,
			       "state", e->state, "serial", e->serial, "not_after",
			       (json_int_t)e->not_after, "since", (json_int_t)e->state_since,
			       "checked_at", (json_int_t)e->checked_at, "verified_at",
			       (json_int_t)e->verified_at, "message", e->message));
	return 0;
}

static int
show_event_cb(const struct ch_store_event *e, void *arg)
{
	json_array_append_new(arg, json_pack("{s:I,s:s?,s:s,s:s?}", "at", (json_int_t)e->at,
					     "stage", e->stage, "event", e->event, "detail",
					     e->detail));
	return 0;
}

static int
show_rehearsal_cb(const struct ch_store_rehearsal *rh, void *arg)
{
	json_array_append_new(
		arg, json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:s,s:s?,s:s?,s:s?,s:s?}", "id",
			       (json_int_t)rh->id, "trigger", rh->trigger, "ca", rh->ca, "issuer",
			       rh->issuer, "started_at", (json_int_t)rh->started_at, "finished_at",
			       (json_int_t)rh->finished_at, "result", rh->result, "stage", rh->stage,
			       "target", rh->target, "serial", rh->serial, "error", rh->message));
	return 0;
}

static json_t *
cmd_show(struct daemon *d, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	struct ch_store_cert c = { 0 };
	struct show_ctx sc = { d, json_array() };
	json_t *events = json_array(), *names = json_array(), *targets = json_array();
	json_t *cas = json_array();
	const struct ch_conf_cert *cc;
	json_t *r;

	if (!name) {
		json_decref(sc.arr);
		json_decref(events);
		json_decref(names);
		json_decref(targets);
		json_decref(cas);
		return ch_ctl_error("show needs a \"name\"");
	}
	store_flush(d);
	if (ch_store_cert_get(d->store, name, &c) < 0) {
		json_decref(sc.arr);
		json_decref(events);
		json_decref(names);
		json_decref(targets);
		json_decref(cas);
		return ch_ctl_error("no certificate named '%s'", name);
	}
	cc = ch_conf_find_cert(d->gen->conf, name);
	if (cc) {
		for (char **n = cc->dns_names; n && *n; n++)
			json_array_append_new(names, json_string(*n));
		for (char **n = cc->ip_names; n && *n; n++)
			json_array_append_new(names, json_string(*n));
		for (char **n = cc->s.targets; n && *n; n++)
			json_array_append_new(targets, json_string(*n));
		for (char **n = cc->s.cas; n && *n; n++)
			json_array_append_new(cas, json_string(*n));
	}
	ch_store_issuance_foreach_for_cert(d->store, c.id, 10, show_iss_cb, &sc);
	ch_store_event_foreach(d->store, name, 30, show_event_cb, events);
	json_t *eps = json_array();

	ch_store_endpoint_foreach_for_cert(d->store, c.id, show_ep_cb, eps);
	json_t *rehearsals = json_array();

	ch_store_rehearsal_foreach(d->store, name, 5, show_rehearsal_cb, rehearsals);
	json_t *ari = ari_cert_json(d, c.id, c.cur_serial);

	r = json_pack("{s:b,s:{s:s,s:s,s:b,s:o,s:s?,s:o,s:s?,s:i,s:o,s:I,s:I,s:i,s:s?,s:s?,s:I,s:I,"
		      "s:s?},s:o,s:o,s:o,s:o,s:b}",
		      "ok", 1, "certificate", "name", c.name, "state", c.state, "wanted", c.wanted,
		      "names", names, "ca", cc ? cc->s.ca : NULL, "cas", cas, "ca_active",
		      c.ca_active, "ca_failures", c.ca_failures, "targets", targets, "renew_at",
		      (json_int_t)c.renew_at, "next_at", (json_int_t)c.next_at, "failures",
		      c.failures, "last_outcome", c.last_outcome, "last_error", c.last_error,
		      "last_attempt_at", (json_int_t)c.last_attempt_at, "last_success_at",
		      (json_int_t)c.last_success_at, "serial", c.cur_serial, "issuances", sc.arr,
		      "events", events, "endpoints", eps, "rehearsals", rehearsals,
		      "rehearsal_running", rehearse_running(name));
	if (r && ari)
		json_object_set_new(json_object_get(r, "certificate"), "renewal_window", ari);
	else
		json_decref(ari);
	ch_store_cert_done(&c);
	return r;
}

static json_t *
cmd_renew(struct daemon *d, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	bool force = json_is_true(json_object_get(req, "force"));
	char err[512];
	int r;

	if (!name)
		return ch_ctl_error("renew needs a \"name\"");
	r = renew_request(d, name, force, err, sizeof(err));
	if (r < 0)
		return ch_ctl_error("%s", err);
	return json_pack("{s:b,s:s,s:s}", "ok", 1, "name", name, "result", "scheduled");
}

static json_t *
cmd_reload(struct daemon *d, json_t *req)
{
	int r = daemon_reload(d);

	if (r < 0) {
		json_t *errs = json_array();

		for (size_t i = 0; i < d->conf_errors.n; i++) {
			char *s = ch_conf_error_format(&d->conf_errors.v[i]);

			json_array_append_new(errs, json_string(s));
			free(s);
		}
		return json_pack("{s:b,s:s,s:o}", "ok", 0, "error",
				 "the new configuration was rejected; still running on the "
				 "previous one",
				 "errors", errs);
	}
	return json_pack("{s:b,s:s}", "ok", 1, "result", "reloaded");
}

static json_t *
cmd_revoke(struct daemon *d, json_t *req)
{
	const char *what = json_string_value(json_object_get(req, "name"));
	const char *reason = json_string_value(json_object_get(req, "reason"));

	if (!what)
		return ch_ctl_error("revoke needs a \"name\" (a certificate name or a serial)");
	return revoke_request(d, what, reason ? reason : "unspecified");
}

/* Marks acme-rollover in the table; client_dispatch runs client_rollover instead. */
static json_t *
cmd_acme_rollover(struct daemon *d, json_t *req)
{
	return ch_ctl_error("acme-rollover cannot run here");
}

static const struct ctl_cmd ctl_table[] = {
	{ "status", "status", CTL_READONLY, cmd_status },
	{ "list", "list", CTL_READONLY, cmd_list },
	{ "show", "show NAME", CTL_READONLY, cmd_show },
	{ "renew", "renew NAME [force] [dry_run]", CTL_ADMIN, cmd_renew },
	{ "reload", "reload", CTL_ADMIN, cmd_reload },
	{ "revoke", "revoke NAME|SERIAL reason", CTL_ADMIN, cmd_revoke },
	{ "acme-rollover", "acme-rollover CA", CTL_ADMIN, cmd_acme_rollover },
};

static void
client_free(struct client *c)
{
	rehearse_detach(c->rehearsal);
	if (c->wait)
		c->wait->c = NULL;
	free(c->list_after);
	c->ctl->n_clients--;
	bufferevent_free(c->bev);
	free(c);
}

static void
client_reply(struct client *c, json_t *reply)
{
	size_t len;
	char *line;

	if (!reply)
		return; /* answered by a stream */
	line = ch_ctl_dump_line(reply, &len);

	if (line) {
		bufferevent_write(c->bev, line, len);
		free(line);
	}
	json_decref(reply);
}

static void
client_rehearsed(json_t *reply, void *arg)
{
	struct client *c = arg;
	struct timeval tmo = { CONTROL_TIMEOUT_SEC * 12, 0 };

	c->rehearsal = NULL;
	bufferevent_set_timeouts(c->bev, &tmo, &tmo);
	client_reply(c, reply);
	if (!c->closing && !c->broken)
		client_read_cb(c->bev, c); /* requests that waited behind it */
}

/*
 * renew NAME dry_run: answered when the rehearsal ends, which may take as
 * long as an issuance; the client's timeouts are stretched meanwhile.
 */
static json_t *
client_rehearse(struct client *c, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	struct timeval tmo = { CH_ISSUE_LEASE + CH_DEPLOY_LEASE, 0 };
	char err[512];
	int r;

	if (!name)
		return ch_ctl_error("renew needs a \"name\"");
	r = rehearse_start(c->ctl->d, name, "manual", client_rehearsed, c, &c->rehearsal, err,
			   sizeof(err));
	if (r < 0)
		return ch_ctl_error("%s", err);
	bufferevent_set_timeouts(c->bev, &tmo, &tmo);
	return NULL;
}

static void
client_rollover_done(int r, const char *message, void *arg)
{
	struct ctl_wait *w = arg;
	json_t *reply;

	if (r < 0)
		reply = ch_ctl_error("CA %s: account key rollover failed: %s", w->ca, message);
	else
		reply = json_pack("{s:b,s:s,s:s}", "ok", 1, "ca", w->ca, "result", message);
	if (w->c) {
		struct client *c = w->c;

		c->wait = NULL;
		client_reply(c, reply);
		if (!c->closing && !c->broken)
			client_read_cb(c->bev, c); /* requests that waited behind it */
	} else {
		json_decref(reply);
	}
	generation_unref(w->d, w->gen);
	free(w->ca);
	free(w);
}

/* Starts an account key rollover; the reply waits for the CA's answer. */
static json_t *
client_rollover(struct client *c, json_t *req)
{
	struct daemon *d = c->ctl->d;
	const char *name = json_string_value(json_object_get(req, "ca"));
	struct ch_ca *ca = name ? daemon_find_ca(d->gen, name) : NULL;
	struct ctl_wait *w;
	int r;

	if (!name)
		return ch_ctl_error("acme-rollover needs a \"ca\"");
	if (!ca)
		return ch_ctl_error("no CA named '%s' in the configuration", name);
	if (!ca->ops->key_rollover)
		return ch_ctl_error("CA %s is of type %s, which has no ACME account key", name,
				    ca->ops->type);
	w = ch_xcalloc(1, sizeof(*w));
	w->c = c;
	w->d = d;
	w->gen = d->gen;
	w->gen->refs++;
	w->ca = ch_xstrdup(name);
	r = ca->ops->key_rollover(ca->state, client_rollover_done, w);
	if (r < 0) {
		generation_unref(d, w->gen);
		free(w->ca);
		free(w);
		return ch_ctl_error("CA %s: %s", name,
				    r == -EBUSY ? "a rollover is already running" : strerror(-r));
	}
	ch_log_notice("CA %s: account key rollover requested (uid %u)", name, (unsigned)c->uid);
	c->wait = w;
	return NULL;
}

static json_t *
client_dispatch(struct client *c, const char *line, size_t len)
{
	struct daemon *d = c->ctl->d;
	struct ch_err err = { "" };
	json_t *req = NULL, *reply;
	const char *cmd;

	if (ch_ctl_parse_request(line, len, &req, &err) < 0)
		return ch_ctl_error("%s", err.msg);
	cmd = json_string_value(json_object_get(req, "cmd"));
	for (size_t i = 0; i < ARRAY_SIZE(ctl_table); i++) {
		if (!streq(ctl_table[i].name, cmd))
			continue;
		if (ctl_table[i].access == CTL_ADMIN && c->uid != 0 && c->uid != geteuid()) {
			ch_log_warning("Refused '%s' from uid %u (pid %d): not root or the daemon's "
				       "user",
				       cmd, (unsigned)c->uid, (int)c->pid);
			json_decref(req);
			return ch_ctl_error("permission denied: '%s' needs root or the daemon's "
					    "user",
					    ctl_table[i].name);
		}
		if (ctl_table[i].exec == cmd_list) {
			json_decref(req);
			client_list_start(c);
			return NULL;
		}
		if (ctl_table[i].exec == cmd_renew &&
		    json_is_true(json_object_get(req, "dry_run"))) {
			reply = client_rehearse(c, req);
			json_decref(req);
			return reply;
		}
		if (ctl_table[i].exec == cmd_acme_rollover) {
			reply = client_rollover(c, req);
			json_decref(req);
			return reply;
		}
		reply = ctl_table[i].exec(d, req);
		json_decref(req);
		return reply;
	}
	reply = ch_ctl_error("unknown command '%s'; known: status, list, show, renew, reload, revoke, "
			     "acme-rollover",
			     cmd);
	json_decref(req);
	return reply;
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->listing && !c->rehearsal && !c->wait && !c->broken) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);

		if (!line) {
			if (evbuffer_get_length(in) > CH_CTL_MAX_REQUEST) {
				client_reply(c, ch_ctl_error("request longer than %d bytes",
							     CH_CTL_MAX_REQUEST));
				evbuffer_drain(in, evbuffer_get_length(in));
				c->closing = c->broken = true;
				bufferevent_disable(bev, EV_READ);
			}
			return;
		}
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		if (len > 0)
			client_reply(c, client_dispatch(c, line, len));
		free(line);
	}
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	if (c->listing)
		list_continue(c);
	else if (c->closing && !evbuffer_get_length(bufferevent_get_output(bev)))
		client_free(c);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		/* Flush what is pending for a client that only closed its write side. */
		if ((what & BEV_EVENT_EOF) &&
		    (c->listing || c->rehearsal || c->wait ||
		     evbuffer_get_length(bufferevent_get_output(bev)))) {
			c->closing = true;
			return;
		}
		client_free(c);
	}
}

static void
control_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		  void *arg)
{
	struct control *ctl = arg;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct timeval tmo = { CONTROL_TIMEOUT_SEC * 12, 0 };
	struct client *c;
	json_t *hello;

	if (ctl->n_clients >= CONTROL_MAX_CLIENTS ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		close(fd);
		return;
	}
	c = ch_xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	ctl->n_clients++;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tmo, &tmo);
	/* The write callback runs once the client has read most of a streamed reply. */
	bufferevent_setwatermark(c->bev, EV_WRITE, LIST_HIGH_WATER / 4, 0);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	hello = json_pack("{s:s,s:i}", "certherd", CH_VERSION, "protocol", CH_CTL_PROTOCOL);
	client_reply(c, hello);
}

int
control_open(struct daemon *d, const char *path, struct control **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct control *ctl;
	struct stat st;
	mode_t old;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return ch_log_error_errno(-ENAMETOOLONG, "Socket path %s is too long", path);
	strcpy(sa.sun_path, path);
	{
		_cleanup_free_ char *dir = ch_xstrdup(path);
		char *slash = strrchr(dir, '/');

		if (slash && slash != dir) {
			*slash = '\0';
			ch_mkdir_p(dir, 0750);
		}
	}
	/* Remove a stale socket, but never a live one or a non-socket. */
	if (lstat(path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode))
			return ch_log_error_errno(-EEXIST, "%s exists and is not a socket", path);
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			return ch_log_error_errno(-EADDRINUSE,
						  "Another certherdd is listening on %s", path);
		}
		if (probe >= 0)
			close(probe);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return ch_log_error_errno(-errno, "Cannot create a socket: %s", strerror(errno));
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		umask(old);
		close(fd);
		return ch_log_error_errno(r, "Cannot bind %s: %s", path, strerror(-r));
	}
	umask(old);
	chmod(path, 0660);
	if (listen(fd, 64) < 0) {
		int r = -errno;

		close(fd);
		return ch_log_error_errno(r, "Cannot listen on %s: %s", path, strerror(-r));
	}
	ctl = ch_xcalloc(1, sizeof(*ctl));
	ctl->d = d;
	ctl->path = ch_xstrdup(path);
	ctl->listener = evconnlistener_new(d->base, control_accept_cb, ctl,
					   LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!ctl->listener) {
		close(fd);
		free(ctl->path);
		free(ctl);
		return -ENOMEM;
	}
	*ret = ctl;
	return 0;
}

struct control *
control_free(struct control *c)
{
	if (!c)
		return NULL;
	evconnlistener_free(c->listener);
	unlink(c->path);
	free(c->path);
	free(c);
	return NULL;
}
