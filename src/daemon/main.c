/* SPDX-License-Identifier: MIT */
/*
 * certherdd: start-up, signals and shutdown. Everything after start-up
 * runs from the libevent loop.
 */
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "ch-config.h"
#include "certherd/filebatch.h"
#include "certherd/log.h"
#include "certherd/sched.h"
#include "certherd/util.h"
#include "daemon.h"

static void
usage(FILE *f)
{
	fprintf(f,
		"Usage: certherdd [OPTIONS]\n"
		"Certificate renewal and distribution daemon.\n\n"
		"  -c, --config FILE     configuration file (default %s/certherd.yaml)\n"
		"  -n, --check-config    check the configuration and exit\n"
		"  -v, --verbose         log more (repeat for debug)\n"
		"      --log-target T    auto, stderr or journal\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            show this help\n",
		CH_SYSCONFDIR);
}

static int
check_config(const char *path)
{
	struct ch_conf_errors errs = { 0 };
	struct ch_conf *conf = NULL;
	int r;

	r = ch_conf_load(path, &conf, &errs);
	for (size_t i = 0; i < errs.n; i++) {
		char *s = ch_conf_error_format(&errs.v[i]);

		fprintf(stderr, "%s\n", s);
		free(s);
	}
	if (r < 0) {
		fprintf(stderr, "%s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
		ch_conf_errors_clear(&errs);
		return EXIT_FAILURE;
	}
	printf("%s: ok (%zu certificates, %zu CAs, %zu targets)\n", conf->file, conf->n_certs,
	       conf->n_cas, conf->n_targets);
	ch_conf_free(conf);
	return EXIT_SUCCESS;
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	switch (sig) {
	case SIGHUP:
		daemon_reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		ch_log_notice("Received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		d->stopping = true;
		notify_stopping();
		event_base_loopexit(d->base, NULL);
		break;
	default:
		break;
	}
}

/* A file system call this long makes the file writer "stalled" in status. */
#define FILES_STALL_SEC 30

/*
 * A test hook: environment variable var as 1 to max seconds; 0 when it is
 * not set, or out of range (logged).
 */
static long
test_hook_seconds(const char *var, long max)
{
	const char *v = getenv(var);
	char *end;
	long n;

	if (!v || !*v)
		return 0;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end || n < 1 || n > max) {
		ch_log_warning("Test hook: %s=%s is not 1-%ld seconds; ignored", var, v, max);
		return 0;
	}
	return n;
}

/*
 * Tests only: CERTHERD_TEST_BACKOFF=N, retries start after N seconds
 * instead of 1 min; CERTHERD_TEST_FILE_STALL=N, file writes count as
 * stalled after N seconds instead of FILES_STALL_SEC.
 */
static void
test_hooks_setup(struct daemon *d)
{
	long n = test_hook_seconds("CERTHERD_TEST_BACKOFF", CH_SCHED_BACKOFF_MIN);

	if (n) {
		ch_sched_set_backoff_min(n);
		ch_log_warning("Test hook: retries start after %lds instead of %ds", n,
			       CH_SCHED_BACKOFF_MIN);
	}
	n = test_hook_seconds("CERTHERD_TEST_FILE_STALL", FILES_STALL_SEC);
	if (n)
		ch_log_warning("Test hook: file writes count as stalled after %lds instead of %ds",
			       n, FILES_STALL_SEC);
	d->files_stall_usec = (n ? n : FILES_STALL_SEC) * CH_USEC_PER_SEC;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "log-target", required_argument, NULL, 'L' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *conf_path = CH_SYSCONFDIR "/certherd.yaml";
	bool check = false;
	int verbose = 0, c, r, rc = EXIT_FAILURE;
	struct daemon d = { 0 };
	struct ch_err err = { "" };
	const int sigs[] = { SIGHUP, SIGTERM, SIGINT };

	while ((c = getopt_long(argc, argv, "c:nvVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'L':
			if (streq(optarg, "stderr"))
				ch_log_set_target(1);
			else if (streq(optarg, "journal"))
				ch_log_set_target(2);
			else if (!streq(optarg, "auto")) {
				fprintf(stderr, "certherdd: --log-target must be auto, stderr or "
						"journal\n");
				return EXIT_FAILURE;
			}
			break;
		case 'V':
			printf("certherdd %s\n", CH_VERSION);
			return EXIT_SUCCESS;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_FAILURE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certherdd: unexpected argument '%s'\n", argv[optind]);
		return EXIT_FAILURE;
	}
	if (check)
		return check_config(conf_path);

	/* No core dumps: they would hold private keys. */
	prctl(PR_SET_DUMPABLE, 0);
	umask(0077);
	signal(SIGPIPE, SIG_IGN);
	ch_log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_NOTICE);
	test_hooks_setup(&d);

	d.conf_path = realpath(conf_path, NULL);
	if (!d.conf_path)
		d.conf_path = ch_xstrdup(conf_path);
	d.started_at = ch_now();
	d.started_mono = ch_mono_usec();
	d.base = event_base_new();
	d.batch = ch_filebatch_new_async(d.base);
	if (!d.base || !d.batch)
		goto out;

	r = daemon_load_config(&d, true);
	if (r < 0) {
		fprintf(stderr, "certherdd: cannot start with %s\n", d.conf_path);
		goto out;
	}
	if (!verbose && d.gen->conf->log_level) {
		static const char *const names[] = { "error", "warning", "notice", "info",
						     "debug" };
		static const int levels[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
					      LOG_DEBUG };

		for (size_t i = 0; i < ARRAY_SIZE(names); i++)
			if (streq(names[i], d.gen->conf->log_level))
				ch_log_set_level(levels[i]);
	}
	r = ch_store_open(d.gen->conf->database, &d.store, &err);
	if (r < 0) {
		ch_log_error("Cannot open the inventory %s: %s", d.gen->conf->database, err.msg);
		goto out;
	}
	/* A lock held by another process: retried by the scheduler, never waited out. */
	ch_store_set_busy_timeout(d.store, CH_STORE_BUSY_MSEC);
	if (sched_init(&d) < 0)
		goto out;
	budget_setup(&d);
	r = renew_sync_config(&d);
	if (r < 0)
		goto out;
	r = control_open(&d, d.gen->conf->socket, &d.control);
	if (r < 0)
		goto out;
	/* Not fatal: renewals matter more; a reload tries to bind again. */
	metrics_setup(&d);
	crl_setup(&d);
	if (alert_setup(&d) < 0)
		goto out;
	heartbeat_setup(&d);
	ari_setup(&d);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
		d.sigs[i] = evsignal_new(d.base, sigs[i], signal_cb, &d);
		evsignal_add(d.sigs[i], NULL);
	}
	notify_watchdog_setup(&d);
	sched_kick(&d);
	ch_log_notice("certherdd %s started: %zu certificates, socket %s", CH_VERSION,
		      d.gen->conf->n_certs, d.gen->conf->socket);
	/* Loading a large configuration leaves the heap full of freed parse trees. */
	malloc_trim(0);
	notify_ready(&d);

	event_base_dispatch(d.base);
	rc = EXIT_SUCCESS;

out:
	/* Also the way out of a failed start: everything below copes with what was never set up. */
	if (d.batch)
		store_drain(&d);
	control_free(d.control);
	metrics_free(&d);
	crl_free(&d);
	heartbeat_free(&d);
	alert_free(&d);
	budget_free(&d);
	rehearse_free(&d);
	ari_free(&d);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		if (d.sigs[i])
			event_free(d.sigs[i]);
	if (d.timer)
		event_free(d.timer);
	notify_watchdog_free();
	/* CAs drop results not yet delivered; jobs still running hold their own reference. */
	generation_unref(&d, d.gen);
	d.gen = NULL;
	ch_store_free(d.store);
	ch_filebatch_free(d.batch);
	ch_conf_errors_clear(&d.conf_errors);
	free(d.busy_certs);
	free(d.busy_deps);
	free(d.busy_probes);
	free(d.conf_path);
	if (d.base)
		event_base_free(d.base);
	if (rc == EXIT_SUCCESS)
		ch_log_notice("certherdd stopped");
	return rc;
}
