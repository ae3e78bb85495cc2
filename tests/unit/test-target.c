/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the deployment target kinds (file, reload, exec), driven
 * through their ops structs on a real event loop. Options structs are
 * filled through each kind's key table, the way the config loader does.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/haproxy.h"
#include "certherd/macro.h"
#include "certherd/filebatch.h"
#include "certherd/target.h"
#include "certherd/util.h"

#define LEAF "-----BEGIN CERTIFICATE-----\nTEST-LEAF\n-----END CERTIFICATE-----\n"
#define INTER "-----BEGIN CERTIFICATE-----\nTEST-INTERMEDIATE\n-----END CERTIFICATE-----\n"
#define KEY "-----BEGIN PRIVATE KEY-----\nTEST-SECRET\n-----END PRIVATE KEY-----\n"

static struct event_base *base;
static char tmpdir[] = "/tmp/test-target.XXXXXX";
static char workdir[sizeof(tmpdir)];
static bool in_deploy;

struct result {
	bool called;
	bool sync;
	int r;
	char msg[2048];
};

/* Options structs filled by key name, as the config loader would. */

/*
 * Everything a test allocates is kept here and freed by teardown(), so
 * a failing assertion leaks nothing and a forked child still reaches it.
 */
static struct {
	const struct ch_target_ops *ops; /* set: p is an options struct */
	void *p;
} kept[256];
static size_t n_kept;

static void *
keep(const struct ch_target_ops *ops, void *p)
{
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_lt(n_kept, ARRAY_SIZE(kept));
	kept[n_kept].ops = ops;
	kept[n_kept].p = p;
	n_kept++;
	return p;
}

static char *tfmt(const char *fmt, ...) _printf_(1, 2);

/* A formatted string that lives until the end of the test. */
static char *
tfmt(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(r, 0);
	return keep(NULL, s);
}

static const struct ch_conf_key *
key_find(const struct ch_target_ops *ops, const char *name)
{
	for (const struct ch_conf_key *k = ops->keys; k->name; k++)
		if (streq(k->name, name))
			return k;
	ck_abort_msg("%s target has no key %s", ops->type, name);
	return NULL;
}

static void *
opts_new(const struct ch_target_ops *ops)
{
	char *opts = calloc(1, ops->opts_size);

	ck_assert_ptr_nonnull(opts);
	for (const struct ch_conf_key *k = ops->keys; k->name; k++)
		if (k->type == CH_CONF_MODE || k->type == CH_CONF_KEYTYPE)
			*(int *)(opts + k->offset) = -1;
	return keep(ops, opts);
}

static void
opts_free(const struct ch_target_ops *ops, void *opts)
{
	for (const struct ch_conf_key *k = ops->keys; k->name; k++) {
		void *p = (char *)opts + k->offset;

		if (k->type == CH_CONF_STRING || k->type == CH_CONF_PATH)
			free(*(char **)p);
		else if (k->type == CH_CONF_STRV)
			ch_strv_free(*(char ***)p);
	}
	free(opts);
}

static void
opt_str(const struct ch_target_ops *ops, void *opts, const char *name, const char *value)
{
	const struct ch_conf_key *k = key_find(ops, name);
	char **p = (char **)((char *)opts + k->offset);

	ck_assert(k->type == CH_CONF_STRING || k->type == CH_CONF_PATH);
	free(*p);
	*p = strdup(value);
}

static void
opt_int(const struct ch_target_ops *ops, void *opts, const char *name, int value)
{
	const struct ch_conf_key *k = key_find(ops, name);

	ck_assert(k->type == CH_CONF_MODE || k->type == CH_CONF_SIGNAL);
	*(int *)((char *)opts + k->offset) = value;
}

static void
opt_duration(const struct ch_target_ops *ops, void *opts, const char *name, int64_t value)
{
	const struct ch_conf_key *k = key_find(ops, name);

	ck_assert(k->type == CH_CONF_DURATION);
	*(int64_t *)((char *)opts + k->offset) = value;
}

/* The arguments end with NULL. */
static void
opt_strv(const struct ch_target_ops *ops, void *opts, const char *name, ...)
{
	const struct ch_conf_key *k = key_find(ops, name);
	char ***p = (char ***)((char *)opts + k->offset);
	char **v = calloc(16, sizeof(char *));
	const char *s;
	size_t n = 0;
	va_list ap;

	ck_assert(k->type == CH_CONF_STRV);
	va_start(ap, name);
	while ((s = va_arg(ap, const char *)) && n < 15)
		v[n++] = strdup(s);
	va_end(ap);
	ch_strv_free(*p);
	*p = v;
}

/* Fixture: a scratch directory and an event loop per test. */

static void
setup(void)
{
	memcpy(workdir, tmpdir, sizeof(tmpdir));
	ck_assert_ptr_nonnull(mkdtemp(workdir));
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void
teardown(void)
{
	nftw(workdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	while (n_kept > 0) {
		n_kept--;
		if (kept[n_kept].ops)
			opts_free(kept[n_kept].ops, kept[n_kept].p);
		else
			free(kept[n_kept].p);
	}
	event_base_free(base);
	base = NULL;
}

static char *
path_of(const char *rel)
{
	return tfmt("%s/%s", workdir, rel);
}

static void
put_file(const char *rel, const char *data)
{
	const char *p = path_of(rel);
	FILE *f = fopen(p, "w");

	ck_assert_ptr_nonnull(f);
	fputs(data, f);
	ck_assert_int_eq(fclose(f), 0);
}

static char *
get_file(const char *rel)
{
	const char *p = path_of(rel);
	char *buf = NULL;

	ck_assert_int_eq(ch_read_file(p, 1 << 20, &buf, NULL), 0);
	return keep(NULL, buf);
}

static mode_t
mode_of(const char *rel)
{
	const char *p = path_of(rel);
	struct stat st;

	ck_assert_int_eq(lstat(p, &st), 0);
	return st.st_mode & 07777;
}

static void
assert_file(const char *rel, const char *want, mode_t mode)
{
	const char *got = get_file(rel);

	ck_assert_str_eq(got, want);
	ck_assert_int_eq(mode_of(rel), mode);
}

/* Asserts no "*.tmp.*" entry is left in the directory. */
static void
assert_no_temp(const char *rel)
{
	const char *p = path_of(rel);
	DIR *d = opendir(p);
	struct dirent *de;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		ck_assert_msg(!strstr(de->d_name, ".tmp."), "temporary file %s left behind",
			      de->d_name);
	closedir(d);
}

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_done(int r, const char *message, void *arg)
{
	struct result *res = arg;

	ck_assert(!res->called);
	ck_assert_ptr_nonnull(message);
	res->called = true;
	res->sync = in_deploy;
	res->r = r;
	snprintf(res->msg, sizeof(res->msg), "%s", message);
}

static struct ch_deploy_item
item_new(void)
{
	return (struct ch_deploy_item){
		.cert_name = "www",
		.serial = "0a1b2c",
		.cert_pem = LEAF,
		.chain_pem = INTER,
		.key_pem = KEY,
		.key_pem_len = strlen(KEY),
		.dir = NULL, /* test_exec_env sets one */
	};
}

/*
 * Deploys and runs the loop until done(); checks that done() came from
 * the loop, and that the target left no event behind.
 */
static int
deploy(const struct ch_target_ops *ops, const void *opts, const struct ch_deploy_item *item,
       struct result *res)
{
	struct ch_target_env env = { .base = base, .state_dir = workdir };
	int r;

	*res = (struct result){ 0 };
	in_deploy = true;
	r = ops->deploy(&env, "t1", opts, item, test_done, res);
	in_deploy = false;
	ck_assert_int_eq(r, 0);
	ck_assert_msg(!res->called, "done() was called from inside deploy()");
	while (!res->called)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
	ck_assert(!res->sync);
	ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
	ck_assert_msg(!strstr(res->msg, "TEST-SECRET"), "key bytes in message: %s", res->msg);
	return res->r;
}

static void
assert_no_children(void)
{
	errno = 0;
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
}

/* file */

static void *
file_opts_all(void)
{
	void *o = opts_new(&ch_target_file_ops);
	const char *cert = path_of("{name}/cert.pem");
	const char *chain = path_of("{name}/chain.pem");
	const char *full = path_of("{name}/fullchain.pem");
	const char *key = path_of("{name}/key.pem");
	const char *comb = path_of("{name}/combined.pem");

	opt_str(&ch_target_file_ops, o, "cert", cert);
	opt_str(&ch_target_file_ops, o, "chain", chain);
	opt_str(&ch_target_file_ops, o, "fullchain", full);
	opt_str(&ch_target_file_ops, o, "key", key);
	opt_str(&ch_target_file_ops, o, "combined", comb);
	return o;
}

START_TEST(test_file_writes_all)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *dir = path_of("www");
	struct group *gr = getgrgid(getgid());
	char uid[32];
	struct result res;
	void *o = file_opts_all();

	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	opt_str(ops, o, "owner", uid);
	if (gr)
		opt_str(ops, o, "group", gr->gr_name);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	ck_assert_int_eq(mkdir(dir, 0755), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_str_eq(res.msg, "wrote 5 files");
	assert_file("www/cert.pem", LEAF, 0644);
	assert_file("www/chain.pem", INTER, 0644);
	assert_file("www/fullchain.pem", LEAF INTER, 0644);
	assert_file("www/key.pem", KEY, 0600);
	assert_file("www/combined.pem", KEY LEAF INTER, 0600);
	assert_no_temp("www");
}
END_TEST

START_TEST(test_file_modes_and_name)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *cert = path_of("{name}-cert.pem");
	const char *key = path_of("keys/{name}.key");
	const char *keys = path_of("keys");
	struct result res;
	void *o = opts_new(ops);

	item.cert_name = "api";
	item.chain_pem = "";
	opt_str(ops, o, "cert", cert);
	opt_str(ops, o, "key", key);
	opt_int(ops, o, "mode", 0640);
	opt_int(ops, o, "key_mode", 0640);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	ck_assert_int_eq(mkdir(keys, 0700), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_str_eq(res.msg, "wrote 2 files");
	assert_file("api-cert.pem", LEAF, 0640);
	assert_file("keys/api.key", KEY, 0640);
}
END_TEST

START_TEST(test_file_empty_chain)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *dir = path_of("www");
	struct result res;
	void *o = file_opts_all();

	item.chain_pem = "";
	item.cert_pem = "-----BEGIN CERTIFICATE-----\nTEST-LEAF\n-----END CERTIFICATE-----";
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	assert_file("www/chain.pem", "", 0644);
	assert_file("www/fullchain.pem", LEAF, 0644);
	assert_file("www/combined.pem", KEY LEAF, 0600);
}
END_TEST

START_TEST(test_file_replaces_atomically)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *dir = path_of("www");
	const char *cert = path_of("www/cert.pem");
	struct stat before, after;
	struct result res;
	void *o = file_opts_all();

	ck_assert_int_eq(mkdir(dir, 0755), 0);
	put_file("www/cert.pem", "old cert\n");
	put_file("www/key.pem", "old key\n");
	ck_assert_int_eq(stat(cert, &before), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_int_eq(stat(cert, &after), 0);
	ck_assert(before.st_ino != after.st_ino);
	assert_file("www/cert.pem", LEAF, 0644);
	assert_file("www/key.pem", KEY, 0600);
	assert_no_temp("www");

	/* A second deploy replaces them again. */
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	assert_file("www/fullchain.pem", LEAF INTER, 0644);
	assert_no_temp("www");
}
END_TEST

START_TEST(test_file_missing_dir)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *cert = path_of("cert.pem");
	const char *chain = path_of("chain.pem");
	const char *key = path_of("missing/key.pem");
	const char *missing = path_of("missing");
	struct result res;
	void *o = opts_new(ops);

	opt_str(ops, o, "cert", cert);
	opt_str(ops, o, "chain", chain);
	opt_str(ops, o, "key", key);
	put_file("cert.pem", "old cert\n");
	put_file("chain.pem", "old chain\n");

	ck_assert_int_eq(deploy(ops, o, &item, &res), -ENOENT);
	ck_assert_msg(strstr(res.msg, missing), "message does not name %s: %s", missing,
		      res.msg);
	ck_assert_msg(strstr(res.msg, "does not exist"), "%s", res.msg);
	ck_assert_str_eq(get_file("cert.pem"), "old cert\n");
	ck_assert_str_eq(get_file("chain.pem"), "old chain\n");
	assert_no_temp(".");
	ck_assert_int_eq(access(missing, F_OK), -1);
}
END_TEST

START_TEST(test_file_symlink_refused)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *cert = path_of("cert.pem");
	const char *real = path_of("real.pem");
	const char *key = path_of("key.pem");
	struct result res;
	struct stat st;
	void *o = opts_new(ops);

	opt_str(ops, o, "key", key);
	opt_str(ops, o, "cert", cert);
	put_file("real.pem", "real\n");
	ck_assert_int_eq(symlink(real, cert), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), -ELOOP);
	ck_assert_msg(strstr(res.msg, cert) && strstr(res.msg, "symbolic link"), "%s", res.msg);
	ck_assert_int_eq(lstat(cert, &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert_str_eq(get_file("real.pem"), "real\n");
	/* Nothing was written, not even the key listed first. */
	ck_assert_int_eq(access(key, F_OK), -1);
	assert_no_temp(".");
}
END_TEST

START_TEST(test_file_unknown_owner)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *cert = path_of("cert.pem");
	struct result res;
	void *o = opts_new(ops);

	opt_str(ops, o, "cert", cert);
	opt_str(ops, o, "owner", "certherd-no-such-user");
	ck_assert_int_lt(deploy(ops, o, &item, &res), 0);
	ck_assert_msg(strstr(res.msg, "certherd-no-such-user"), "%s", res.msg);
	ck_assert_int_eq(access(cert, F_OK), -1);

	opt_str(ops, o, "owner", "0");
	opt_str(ops, o, "group", "certherd-no-such-group");
	ck_assert_int_lt(deploy(ops, o, &item, &res), 0);
	ck_assert_msg(strstr(res.msg, "certherd-no-such-group"), "%s", res.msg);
}
END_TEST

START_TEST(test_file_check)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_err err = { "" };
	void *o = opts_new(ops);

	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "at least one"), "%s", err.msg);

	opt_str(ops, o, "key", "/etc/ssl/private/{name}.pem");
	ck_assert_int_eq(ops->check(o, &err), 0);

	opt_int(ops, o, "key_mode", 0644);
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "key_mode 0644 lets every user read the private key; "
				  "use 0600 or 0640 with group");

	opt_int(ops, o, "key_mode", 0660);
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "0660"), "%s", err.msg);

	opt_int(ops, o, "key_mode", 0602);
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);

	opt_int(ops, o, "key_mode", 0640);
	ck_assert_int_eq(ops->check(o, &err), 0);

	opt_str(ops, o, "combined", "/etc/ssl/private/{name}.pem");
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "key and combined"), "%s", err.msg);
}
END_TEST

START_TEST(test_file_current)
{
	const struct ch_target_ops *ops = &ch_target_file_ops;
	struct ch_deploy_item item = item_new();
	const char *dir = path_of("www");
	const char *comb = path_of("{name}/combined.pem");
	struct result res;
	char *pem = NULL;
	void *o = file_opts_all();
	void *c = opts_new(ops);

	ck_assert_int_eq(ops->current(o, "www", &pem), -ENOENT);
	ck_assert_int_eq(mkdir(dir, 0755), 0);
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_int_eq(ops->current(o, "www", &pem), 0);
	ck_assert_str_eq(pem, LEAF);
	free(pem);
	pem = NULL;

	/* From a combined file: the certificates, never the key. */
	opt_str(ops, c, "combined", comb);
	ck_assert_int_eq(ops->current(c, "www", &pem), 0);
	ck_assert_str_eq(pem, LEAF INTER);
	ck_assert_ptr_null(strstr(pem, "PRIVATE"));
	free(pem);
	ck_assert_int_eq(ops->current(c, "other", &pem), -ENOENT);
}
END_TEST

/* reload */

/*
 * Test children are forked before the test allocates anything and only
 * wait or exit, so a leak checker following the fork sees nothing lost.
 */

/* A child that waits for SIGHUP and reports 'H' (or 'x') on fd. */
static pid_t
fork_sighup_waiter(int fd)
{
	struct timespec ts = { 10, 0 };
	sigset_t set, old;
	pid_t pid;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &old);
	pid = fork();
	if (pid == 0) {
		char c = sigtimedwait(&set, NULL, &ts) == SIGHUP ? 'H' : 'x';

		(void)!write(fd, &c, 1);
		_exit(0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	ck_assert_int_gt(pid, 0);
	return pid;
}

/* A child that runs `sleep 10` until a signal ends it. */
static pid_t
fork_sleeper(void)
{
	pid_t pid = fork();

	const char *comm;
	char *text = NULL;

	if (pid == 0) {
		execl("/bin/sleep", "sleep", "10", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_gt(pid, 0);
	/* Signal it only once it is sleep, not the fork (or a tool's loader). */
	comm = tfmt("/proc/%d/comm", (int)pid);
	for (int i = 0; i < 200; i++) {
		bool is_sleep = ch_read_file(comm, 4096, &text, NULL) == 0 &&
				streq(text, "sleep\n");

		free(text);
		text = NULL;
		if (is_sleep)
			break;
		usleep(10000);
	}
	return pid;
}

/* The id of a process that has exited and been reaped. */
static pid_t
fork_gone(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

/* Writes the pidfile with the pid between before and after. */
static void
put_pidfile(const char *before, pid_t pid, const char *after)
{
	put_file("svc.pid", tfmt("%s%d%s", before, (int)pid, after));
}

START_TEST(test_reload_sends_signal)
{
	const struct ch_target_ops *ops = &ch_target_reload_ops;
	struct ch_deploy_item item = item_new();
	const char *pidfile;
	const char *want;
	struct result res;
	void *o;
	char c = 0;
	int p[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork_sighup_waiter(p[1]);
	close(p[1]);
	put_pidfile("  ", pid, "\n\n");
	pidfile = path_of("svc.pid");
	o = opts_new(ops);
	opt_str(ops, o, "pidfile", pidfile);
	ck_assert_int_eq(ops->check(o, NULL), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	want = tfmt("sent SIGHUP to pid %d (from %s)", (int)pid, pidfile);
	ck_assert_str_eq(res.msg, want);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'H');
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}
END_TEST

START_TEST(test_reload_other_signal)
{
	const struct ch_target_ops *ops = &ch_target_reload_ops;
	struct ch_deploy_item item = item_new();
	const char *pidfile;
	struct result res;
	void *o;
	int status;
	pid_t pid;

	pid = fork_sleeper();
	put_pidfile("", pid, "");
	pidfile = path_of("svc.pid");
	o = opts_new(ops);
	opt_str(ops, o, "pidfile", pidfile);
	opt_int(ops, o, "signal", SIGUSR2);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_msg(strstr(res.msg, "sent SIGUSR2 to pid"), "%s", res.msg);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGUSR2);
}
END_TEST

START_TEST(test_reload_stale_pid)
{
	const struct ch_target_ops *ops = &ch_target_reload_ops;
	struct ch_deploy_item item = item_new();
	const char *pidfile;
	const char *want;
	struct result res;
	void *o;
	pid_t pid;

	pid = fork_gone();
	put_pidfile("", pid, "\n");
	pidfile = path_of("svc.pid");
	o = opts_new(ops);
	opt_str(ops, o, "pidfile", pidfile);

	ck_assert_int_eq(deploy(ops, o, &item, &res), -ESRCH);
	want = tfmt("process %d from %s is not running", (int)pid, pidfile);
	ck_assert_str_eq(res.msg, want);
}
END_TEST

START_TEST(test_reload_bad_pidfile)
{
	const struct ch_target_ops *ops = &ch_target_reload_ops;
	struct ch_deploy_item item = item_new();
	const char *pidfile = path_of("svc.pid");
	const char *bad[] = { "", "\n", "abc", "12x", "-5", "0", "1 2", "99999999999" };
	struct ch_err err;
	struct result res;
	void *o = opts_new(ops);

	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	opt_str(ops, o, "pidfile", pidfile);

	ck_assert_int_eq(deploy(ops, o, &item, &res), -ENOENT);
	ck_assert_msg(strstr(res.msg, pidfile) && strstr(res.msg, "does not exist"), "%s",
		      res.msg);

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *want = tfmt("pidfile %s does not contain a process id", pidfile);

		put_file("svc.pid", bad[i]);
		ck_assert_int_eq(deploy(ops, o, &item, &res), -EINVAL);
		ck_assert_str_eq(res.msg, want);
	}

	opt_int(ops, o, "signal", SIGKILL);
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
}
END_TEST

/* exec */

START_TEST(test_exec_env)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	const char *out = path_of("env.txt");
	const char *script;
	const char *got;
	struct result res;
	void *o = opts_new(ops);

	/*
	 * The descriptors the command inherited, as ls (a child of the shell,
	 * not in a pipeline) sees them: 0 1 2 and 3, ls's own handle on the
	 * directory. Listing the shell's (/proc/$$/fd) from "ls | tr" raced:
	 * the shell holds the pipe's ends while it starts tr, and a quick ls
	 * listed them too.
	 */
	script = tfmt("env | grep ^CERTHERD_ | sort > '%s';"
			      " ls /proc/self/fd > '%s.fd'; tr '\\n' ' ' < '%s.fd' >> '%s';"
			      " cat >> '%s'",
			      out, out, out, out, out);
	opt_strv(ops, o, "command", "sh", "-c", script, NULL);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	setenv("CERTHERD_STALE", "1", 1);

	item.dir = path_of("0a1b2c");
	ck_assert_int_eq(mkdir(item.dir, 0700), 0);
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	unsetenv("CERTHERD_STALE");
	ck_assert_str_eq(res.msg, "exited 0");
	got = get_file("env.txt");
	ck_assert_str_eq(got, tfmt("CERTHERD_CERT_FILE=%s/cert.pem\n"
				   "CERTHERD_CHAIN_FILE=%s/chain.pem\n"
				   "CERTHERD_DIR=%s\n"
				   "CERTHERD_FULLCHAIN_FILE=%s/fullchain.pem\n"
				   "CERTHERD_KEY_FILE=%s/key.pem\n"
				   "CERTHERD_NAME=www\n"
				   "CERTHERD_SERIAL=0a1b2c\n"
				   "CERTHERD_TARGET=t1\n"
				   "0 1 2 3 ",
				   item.dir, item.dir, item.dir, item.dir, item.dir));
	assert_no_children();

	/* The files the variables name are there (the inventory holds them otherwise). */
	ck_assert_str_eq(get_file("0a1b2c/cert.pem"), LEAF);
	ck_assert_str_eq(get_file("0a1b2c/chain.pem"), INTER);
	ck_assert_str_eq(get_file("0a1b2c/fullchain.pem"), tfmt("%s%s", LEAF, INTER));
	ck_assert_uint_eq(mode_of("0a1b2c/cert.pem") & 07777, 0644);
	ck_assert_uint_eq(mode_of("0a1b2c/fullchain.pem") & 07777, 0644);

	/* Written once: a second run of the command leaves them as they are. */
	{
		struct stat a, b;

		ck_assert_int_eq(stat(path_of("0a1b2c/fullchain.pem"), &a), 0);
		ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
		ck_assert_int_eq(stat(path_of("0a1b2c/fullchain.pem"), &b), 0);
		ck_assert_uint_eq(a.st_ino, b.st_ino);
	}
	assert_no_children();
}
END_TEST

/*
 * With the daemon's batch, the files a command is given are staged there
 * and the command starts only once the batch is committed (at the end of
 * the daemon's loop turn), seeing them in place.
 */
START_TEST(test_exec_files_in_batch)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	struct ch_filebatch *batch = ch_filebatch_new();
	struct ch_target_env env = { .base = base, .state_dir = workdir, .batch = batch };
	const char *out = path_of("seen.txt");
	struct result res = { 0 };
	struct stat st;
	void *o = opts_new(ops);

	opt_strv(ops, o, "command", "sh", "-c",
		 tfmt("cat \"$CERTHERD_FULLCHAIN_FILE\" > '%s'", out), NULL);
	item.dir = path_of("0a1b2c");
	ck_assert_int_eq(mkdir(item.dir, 0700), 0);
	ck_assert_int_eq(ops->deploy(&env, "t1", o, &item, test_done, &res), 0);
	/* Nothing written or started before the commit. */
	ck_assert_uint_eq(ch_filebatch_pending(batch), 1);
	ck_assert_int_eq(stat(path_of("0a1b2c/fullchain.pem"), &st), -1);
	ck_assert_int_eq(stat(out, &st), -1);
	ck_assert_int_eq(ch_filebatch_commit(batch), 0);
	while (!res.called)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
	ck_assert_int_eq(res.r, 0);
	ck_assert_str_eq(get_file("seen.txt"), tfmt("%s%s", LEAF, INTER));
	ch_filebatch_free(batch);
	assert_no_children();
}
END_TEST

START_TEST(test_exec_failure_stderr)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = opts_new(ops);

	opt_strv(ops, o, "command", "/bin/sh", "-c",
		 "echo noise; echo 'first line' >&2; echo 'reload failed: bad config' >&2; exit 3",
		 NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_str_eq(res.msg, "exited 3: first line; reload failed: bad config");

	opt_strv(ops, o, "command", "/bin/sh", "-c", "exit 4", NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_str_eq(res.msg, "exited 4");

	opt_strv(ops, o, "command", "/bin/sh", "-c", "kill -TERM $$", NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_str_eq(res.msg, "killed by signal 15");
	assert_no_children();
}
END_TEST

START_TEST(test_exec_long_stderr)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = opts_new(ops);

	opt_strv(ops, o, "command", "/bin/sh", "-c",
		 "i=0; while [ $i -lt 3000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2",
		 NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_msg(strncmp(res.msg, "exited 2: line ", 15) == 0, "%s", res.msg);
	ck_assert_msg(strstr(res.msg, "; line 2999") && !strstr(res.msg, "line 100;"), "%s",
		      res.msg);
	ck_assert_int_lt(strlen(res.msg), 700);
	assert_no_children();
}
END_TEST

START_TEST(test_exec_timeout)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	const char *pidf = path_of("bg.pid");
	const char *script;
	const char *bg;
	struct result res;
	void *o = opts_new(ops);
	double t0;
	int gone = 0;

	/* A background grandchild in the same group must die too. */
	script = tfmt("sleep 30 & echo $! > '%s'; exec sleep 30", pidf);
	opt_strv(ops, o, "command", "sh", "-c", script, NULL);
	opt_duration(ops, o, "timeout", 1);
	t0 = now_sec();
	ck_assert_int_eq(deploy(ops, o, &item, &res), -ETIMEDOUT);
	ck_assert_double_lt(now_sec() - t0, 5.0);
	ck_assert_double_ge(now_sec() - t0, 0.9);
	ck_assert_str_eq(res.msg, "timed out after 1s");
	assert_no_children();

	bg = get_file("bg.pid");
	for (int i = 0; i < 40 && !gone; i++) {
		const char *stat = tfmt("/proc/%d/stat", atoi(bg));
		_cleanup_free_ char *text = NULL;
		char *paren;

		if (ch_read_file(stat, 4096, &text, NULL) < 0)
			gone = 1;
		else if ((paren = strrchr(text, ')')) && paren[1] == ' ' && paren[2] == 'Z')
			gone = 1;
		else
			usleep(50000);
	}
	ck_assert_msg(gone, "background process %s survived the timeout", bg);

	/* Plain `sleep 30` found through PATH. */
	opt_strv(ops, o, "command", "sleep", "30", NULL);
	t0 = now_sec();
	ck_assert_int_eq(deploy(ops, o, &item, &res), -ETIMEDOUT);
	ck_assert_double_lt(now_sec() - t0, 5.0);
	ck_assert_str_eq(res.msg, "timed out after 1s");
	assert_no_children();
}
END_TEST

START_TEST(test_exec_exit_with_stderr_held_open)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	const char *pidf = path_of("bg.pid");
	const char *script;
	const char *bg;
	struct result res;
	void *o = opts_new(ops);
	double t0;

	/* A daemon started by the hook keeps stderr open; exit is enough. */
	script = tfmt("sleep 20 & echo $! > '%s'; exit 0", pidf);
	opt_strv(ops, o, "command", "/bin/sh", "-c", script, NULL);
	t0 = now_sec();
	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_double_lt(now_sec() - t0, 5.0);
	ck_assert_str_eq(res.msg, "exited 0");
	bg = get_file("bg.pid");
	kill(atoi(bg), SIGKILL);
}
END_TEST

START_TEST(test_exec_not_found)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_deploy_item item = item_new();
	const char *abs = path_of("no-such-hook");
	struct result res;
	void *o = opts_new(ops);

	opt_strv(ops, o, "command", "certherd-no-such-command", "--flag", NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_str_eq(res.msg, "exited 127: cannot execute certherd-no-such-command: "
				  "No such file or directory");

	opt_strv(ops, o, "command", abs, NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_msg(strncmp(res.msg, "exited 127: ", 12) == 0, "%s", res.msg);
	assert_no_children();
}
END_TEST

START_TEST(test_exec_check)
{
	const struct ch_target_ops *ops = &ch_target_exec_ops;
	struct ch_err err;
	void *o = opts_new(ops);

	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "command"), "%s", err.msg);
	opt_strv(ops, o, "command", "true", NULL);
	ck_assert_int_eq(ops->check(o, &err), 0);
}
END_TEST

START_TEST(test_registry)
{
	const struct ch_target_ops *all[] = { &ch_target_file_ops, &ch_target_reload_ops,
					      &ch_target_exec_ops };

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		ck_assert_ptr_eq(ch_target_ops_find(all[i]->type), all[i]);
		for (const struct ch_conf_key *k = all[i]->keys; k->name; k++) {
			ck_assert_uint_le(k->offset, all[i]->opts_size - 1);
			ck_assert_ptr_nonnull(k->expect);
			for (const struct ch_conf_key *l = k + 1; l->name; l++)
				ck_assert_str_ne(k->name, l->name);
		}
	}
}
END_TEST


/* haproxy: the runtime API parser */

#define HP "/etc/haproxy/certs/www.pem"
#define HL "/etc/haproxy/crt-list.txt"

START_TEST(test_haproxy_replies)
{
	static const struct {
		enum ch_haproxy_cmd cmd;
		const char *reply;
		enum ch_haproxy_reply want;
	} cases[] = {
		{ CH_HAPROXY_SET_CERT, "Transaction created for certificate " HP "!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_SET_CERT, "Transaction updated for certificate " HP "!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_SET_CERT, "Transaction updated for certificate /other.pem!\n\n",
		  CH_HAPROXY_OTHER_TRANSACTION },
		{ CH_HAPROXY_SET_CERT,
		  "Can't replace a certificate which is not referenced by the configuration!\n"
		  "Can't update " HP "!\n\n",
		  CH_HAPROXY_UNKNOWN_CERT },
		{ CH_HAPROXY_SET_CERT,
		  "unable to load certificate from file '" HP "'.\nCan't load the payload\n"
		  "Can't update " HP "!\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SET_CERT, "Transaction created for certificate " HP "!x\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SET_CERT, "Transaction created for certificate " HP,
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SET_CERT, "Permission denied\n\n", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SET_CERT, "", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_COMMIT_CERT, "Committing " HP ".\nSuccess!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_COMMIT_CERT, "Committing " HP "\nSuccess!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_COMMIT_CERT, "Committing " HP "......\nSuccess!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_COMMIT_CERT, "Committing " HP ".\nFailed!\n\n", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_COMMIT_CERT, "Committing /x.pem.\nSuccess!\n\n", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_COMMIT_CERT, "Committing " HP ".\nSuccess!\nmore\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_COMMIT_CERT, "No ongoing transaction! !\nCan't commit " HP "!\n\n",
		  CH_HAPROXY_NO_TRANSACTION },
		{ CH_HAPROXY_ABORT_CERT, "Transaction aborted for certificate '" HP "'!\n\n",
		  CH_HAPROXY_OK },
		{ CH_HAPROXY_ABORT_CERT, "No ongoing transaction!\n\n", CH_HAPROXY_NO_TRANSACTION },
		{ CH_HAPROXY_ABORT_CERT,
		  "The ongoing transaction is about '/o.pem' but you are trying to abort a "
		  "transaction for '" HP "'\n\n",
		  CH_HAPROXY_OTHER_TRANSACTION },
		{ CH_HAPROXY_NEW_CERT, "New empty certificate store '" HP "'!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_NEW_CERT, "Certificate '" HP "' already exists!\n\n", CH_HAPROXY_EXISTS },
		{ CH_HAPROXY_NEW_CERT, "Unknown command\n\n", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_DEL_CERT, "Certificate '" HP "' deleted!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_DEL_CERT,
		  "Can't remove the certificate: certificate '" HP "' in use, can't be deleted!\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SHOW_CERT, "Filename: " HP "\nStatus: Used\nSerial: 01\n\n", CH_HAPROXY_USED },
		{ CH_HAPROXY_SHOW_CERT, "Filename: " HP "\nStatus: Unused\nSerial: 01\n\n",
		  CH_HAPROXY_UNUSED },
		{ CH_HAPROXY_SHOW_CERT, "Filename: " HP "\nStatus: Empty\n\n", CH_HAPROXY_UNUSED },
		{ CH_HAPROXY_SHOW_CERT, "Filename: " HP ".old\nStatus: Used\n\n", CH_HAPROXY_FAILED },
		{ CH_HAPROXY_SHOW_CERT,
		  "Can't display the certificate: Not found or the certificate is a bundle!\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_ADD_CRT_LIST,
		  "Inserting certificate '" HP "' in crt-list '" HL "'.\nSuccess!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_ADD_CRT_LIST,
		  "Inserting certificate '" HP "' in crt-list '" HL "'\nSuccess!\n\n", CH_HAPROXY_OK },
		{ CH_HAPROXY_ADD_CRT_LIST,
		  "Inserting certificate '/x.pem' in crt-list '" HL "'.\nSuccess!\n\n",
		  CH_HAPROXY_FAILED },
		{ CH_HAPROXY_ADD_CRT_LIST,
		  "Can't edit the crt-list: crt-list '" HL "' does not exist!\n\n", CH_HAPROXY_FAILED },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		ck_assert_msg(ch_haproxy_parse_reply(cases[i].cmd, HP, HL, cases[i].reply) ==
				      cases[i].want,
			      "case %zu: %s", i, cases[i].reply);
	/* A directory list is printed without its final slash. */
	ck_assert_int_eq(ch_haproxy_parse_reply(CH_HAPROXY_ADD_CRT_LIST, "/d/www.pem", "/d/",
						"Inserting certificate '/d/www.pem' in crt-list "
						"'/d'.\nSuccess!\n\n"),
			 CH_HAPROXY_OK);
}
END_TEST

START_TEST(test_haproxy_format)
{
	const char *pem = "-----BEGIN CERTIFICATE-----\r\nAAA\n\n-----END CERTIFICATE-----\n"
			  "\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----";
	char *out = NULL, *other = NULL;
	size_t len = 0;
	char line[64];

	ck_assert_int_eq(ch_haproxy_format(CH_HAPROXY_SET_CERT, HP, NULL, pem, strlen(pem), &out,
					   &len), 0);
	ck_assert_str_eq(out, "set ssl cert " HP " <<\n-----BEGIN CERTIFICATE-----\nAAA\n"
			      "-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n"
			      "-----END PRIVATE KEY-----\n\n");
	ck_assert_uint_eq(len, strlen(out));
	free(out);
	ck_assert_int_eq(ch_haproxy_format(CH_HAPROXY_COMMIT_CERT, HP, NULL, pem, strlen(pem),
					   &out, &len), 0);
	ck_assert_str_eq(out, "commit ssl cert " HP "\n");
	free(out);
	ck_assert_int_eq(ch_haproxy_format(CH_HAPROXY_ADD_CRT_LIST, HP, HL, NULL, 0, &out, &len),
			 0);
	ck_assert_str_eq(out, "add ssl crt-list " HL " " HP "\n");
	free(out);
	ck_assert_int_eq(ch_haproxy_format(CH_HAPROXY_ABORT_CERT, "/a b.pem", NULL, NULL, 0, &out,
					   &len), -EINVAL);
	ck_assert_int_eq(ch_haproxy_format(CH_HAPROXY_ABORT_CERT, "/a;show info", NULL, NULL, 0,
					   &out, &len), -EINVAL);
	ck_assert(!ch_haproxy_arg_ok("/a\\b"));
	ck_assert(ch_haproxy_arg_ok(HP));

	/* Messages: one line, never PEM. */
	ck_assert_str_eq(ch_haproxy_reply_line("a\nb\n\n", line, sizeof(line)), "a; b");
	ck_assert_str_eq(ch_haproxy_reply_line("bad: -----BEGIN PRIVATE KEY-----\nBBB\n", line,
					       sizeof(line)),
			 "bad: [PEM data left out]");
	ck_assert_str_eq(ch_haproxy_reply_line("x\x01y", line, 3), "x?");

	ck_assert_int_eq(ch_haproxy_reply_transaction_path(
				 "Transaction updated for certificate /o.pem!\n\n", &other), 0);
	ck_assert_str_eq(other, "/o.pem");
	free(other);
	ck_assert_int_lt(ch_haproxy_reply_transaction_path("Permission denied\n", &other), 0);
}
END_TEST

START_TEST(test_haproxy_address)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct ch_err err = { "" };

	ck_assert_int_eq(ch_haproxy_parse_address("/run/haproxy/admin.sock", &ss, &len, NULL), 0);
	ck_assert_int_eq(ss.ss_family, AF_UNIX);
	ck_assert_int_eq(ch_haproxy_parse_address("unix@/run/h.sock", &ss, &len, NULL), 0);
	ck_assert_int_eq(ss.ss_family, AF_UNIX);
	ck_assert_int_eq(ch_haproxy_parse_address("127.0.0.1:9999", &ss, &len, NULL), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_int_eq(ch_haproxy_parse_address("ipv6@[::1]:9999", &ss, &len, NULL), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	ck_assert_int_eq(ch_haproxy_parse_address("admin.sock", &ss, &len, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "admin.sock"), "%s", err.msg);
	ck_assert_int_eq(ch_haproxy_parse_address("unix@run/h.sock", &ss, &len, &err), -EINVAL);
	ck_assert_int_eq(ch_haproxy_parse_address("127.0.0.1", &ss, &len, &err), -EINVAL);
	ck_assert_int_eq(ch_haproxy_parse_address("localhost:9999", &ss, &len, &err), -EINVAL);
	ck_assert_int_eq(ch_haproxy_parse_address("127.0.0.1:0", &ss, &len, &err), -EINVAL);
	ck_assert_int_eq(ch_haproxy_parse_address("", &ss, &len, &err), -EINVAL);
}
END_TEST

START_TEST(test_haproxy_check)
{
	const struct ch_target_ops *ops = &ch_target_haproxy_ops;
	struct ch_err err = { "" };
	void *o = opts_new(ops);

	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	opt_str(ops, o, "socket", "/run/haproxy/admin.sock");
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "crt"), "%s", err.msg);
	opt_str(ops, o, "crt", "/etc/haproxy/certs/{name}.pem");
	ck_assert_int_eq(ops->check(o, &err), 0);
	opt_str(ops, o, "crt", "/etc/haproxy/my certs/{name}.pem");
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	opt_str(ops, o, "crt", "/etc/haproxy/certs/{name}.pem");
	opt_str(ops, o, "socket", "haproxy.sock");
	ck_assert_int_eq(ops->check(o, &err), -EINVAL);
	ck_assert_msg(strstr(err.msg, "haproxy.sock"), "%s", err.msg);
}
END_TEST


/* haproxy: deploys against a scripted stand-in for the runtime API */

#define FAKE_MAX 8

struct fake_conn {
	int fd;
	struct event *ev;
	char buf[16384];
	size_t len;
	bool done;
};

static struct {
	int lfd;
	struct event *lev;
	const char *replies[FAKE_MAX]; /* one per connection; NULL: never answer */
	size_t n_replies;
	struct fake_conn conns[FAKE_MAX];
	size_t n_conns;
	char cmds[512];      /* first lines, joined by '|' */
	bool payload_seen;   /* the set command carried the key */
} fake;

static void
fake_conn_close(struct fake_conn *c)
{
	if (c->ev)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	c->ev = NULL;
	c->fd = -1;
}

static void
fake_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fake_conn *c = arg;
	size_t i = (size_t)(c - fake.conns);
	ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len - 1);
	bool complete;

	if (n <= 0) {
		fake_conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	complete = strncmp(c->buf, "set ssl cert ", 13) == 0 ? strstr(c->buf, "\n\n") != NULL
							     : strchr(c->buf, '\n') != NULL;
	if (!complete || c->done)
		return;
	c->done = true;
	if (strstr(c->buf, "TEST-SECRET"))
		fake.payload_seen = true;
	snprintf(fake.cmds + strlen(fake.cmds), sizeof(fake.cmds) - strlen(fake.cmds), "%s%.*s",
		 fake.cmds[0] ? "|" : "", (int)strcspn(c->buf, "<\n"), c->buf);
	if (i < fake.n_replies && fake.replies[i]) {
		ck_assert_int_eq(write(fd, fake.replies[i], strlen(fake.replies[i])),
				 (ssize_t)strlen(fake.replies[i]));
		fake_conn_close(c);
	}
}

static void
fake_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct fake_conn *c;

	ck_assert_int_ge(cfd, 0);
	ck_assert_uint_lt(fake.n_conns, FAKE_MAX);
	c = &fake.conns[fake.n_conns++];
	c->fd = cfd;
	c->ev = event_new(base, cfd, EV_READ | EV_PERSIST, fake_read_cb, c);
	ck_assert_int_eq(event_add(c->ev, NULL), 0);
}

/* Listens on workdir/admin.sock with one reply per connection. */
static const char *
fake_start(const char *const *replies, size_t n)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	const char *path = path_of("admin.sock");

	memset(&fake, 0, sizeof(fake));
	for (size_t i = 0; i < n; i++)
		fake.replies[i] = replies[i];
	fake.n_replies = n;
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	fake.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fake.lfd, 0);
	ck_assert_int_eq(bind(fake.lfd, (struct sockaddr *)&un, sizeof(un)), 0);
	ck_assert_int_eq(listen(fake.lfd, 8), 0);
	fake.lev = event_new(base, fake.lfd, EV_READ | EV_PERSIST, fake_accept_cb, NULL);
	ck_assert_int_eq(event_add(fake.lev, NULL), 0);
	return path;
}

static void
fake_stop(void)
{
	for (size_t i = 0; i < fake.n_conns; i++)
		fake_conn_close(&fake.conns[i]);
	event_free(fake.lev);
	close(fake.lfd);
	fake.lev = NULL;
}

/* Runs deploys of items[] at once; returns when every one is done. */
static void
hap_deploy(const void *opts, const struct ch_deploy_item *items, struct result *res, size_t n)
{
	struct ch_target_env env = { .base = base, .state_dir = workdir };
	bool all;

	for (size_t i = 0; i < n; i++) {
		res[i] = (struct result){ 0 };
		in_deploy = true;
		ck_assert_int_eq(ch_target_haproxy_ops.deploy(&env, "t1", opts, &items[i], test_done,
							      &res[i]),
				 0);
		in_deploy = false;
		ck_assert(!res[i].called);
	}
	do {
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
		all = true;
		for (size_t i = 0; i < n; i++)
			all = all && res[i].called;
	} while (!all);
	fake_stop();
	ck_assert_int_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert(!res[i].sync);
		ck_assert_msg(!strstr(res[i].msg, "TEST-SECRET"), "key in message: %s", res[i].msg);
	}
}

static void *
hap_opts(const char *sock, const char *list)
{
	const struct ch_target_ops *ops = &ch_target_haproxy_ops;
	void *o = opts_new(ops);

	opt_str(ops, o, "socket", sock);
	opt_str(ops, o, "crt", path_of("{name}.pem"));
	if (list)
		opt_str(ops, o, "crt_list", list);
	opt_duration(ops, o, "timeout", 1);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	return o;
}

START_TEST(test_haproxy_set_commit)
{
	const char *P = path_of("www.pem");
	const char *replies[] = {
		tfmt("Transaction created for certificate %s!\n\n", P),
		tfmt("Committing %s.\nSuccess!\n\n", P),
	};
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = hap_opts(fake_start(replies, 2), NULL);

	hap_deploy(o, &item, &res, 1);
	ck_assert_msg(res.r == 0, "%s", res.msg);
	ck_assert_str_eq(fake.cmds, tfmt("set ssl cert %s |commit ssl cert %s", P, P));
	ck_assert(fake.payload_seen);
	assert_file("www.pem", LEAF INTER KEY, 0600);
	assert_no_temp(".");
	ck_assert_msg(strstr(res.msg, tfmt("committed %s through", P)), "%s", res.msg);
}
END_TEST

START_TEST(test_haproxy_commit_fails_aborts)
{
	const char *P = path_of("www.pem");
	const char *replies[] = {
		tfmt("Transaction created for certificate %s!\n\n", P),
		tfmt("Committing %s.\nunable to load the key\nFailed!\n\n", P),
		tfmt("Transaction aborted for certificate '%s'!\n\n", P),
	};
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = hap_opts(fake_start(replies, 3), NULL);

	put_file("www.pem", "old\n");
	hap_deploy(o, &item, &res, 1);
	ck_assert_int_eq(res.r, -EPROTO);
	ck_assert_str_eq(fake.cmds, tfmt("set ssl cert %s |commit ssl cert %s|abort ssl cert %s",
					 P, P, P));
	ck_assert_msg(strstr(res.msg, tfmt("refused `commit ssl cert %s`", P)) &&
			      strstr(res.msg, "unable to load the key; Failed!") &&
			      strstr(res.msg, "; transaction aborted"),
		      "%s", res.msg);
	ck_assert_str_eq(get_file("www.pem"), "old\n");
	assert_no_temp(".");
}
END_TEST

START_TEST(test_haproxy_timeout_aborts)
{
	const char *P = path_of("www.pem");
	const char *replies[] = {
		tfmt("Transaction created for certificate %s!\n\n", P),
		NULL,
		tfmt("Transaction aborted for certificate '%s'!\n\n", P),
	};
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = hap_opts(fake_start(replies, 3), NULL);

	hap_deploy(o, &item, &res, 1);
	ck_assert_int_eq(res.r, -ETIMEDOUT);
	ck_assert_msg(strstr(res.msg, "got no complete answer within 1s") &&
			      strstr(res.msg, "; transaction aborted"),
		      "%s", res.msg);
	ck_assert_str_eq(fake.cmds, tfmt("set ssl cert %s |commit ssl cert %s|abort ssl cert %s",
					 P, P, P));
	ck_assert_int_eq(access(P, F_OK), -1);
}
END_TEST

START_TEST(test_haproxy_new_cert)
{
	const char *P = path_of("www.pem");
	const char *L = path_of("list.txt");
	const char *replies[] = {
		tfmt("Can't replace a certificate which is not referenced by the configuration!\n"
		     "Can't update %s!\n\n", P),
		tfmt("New empty certificate store '%s'!\n\n", P),
		tfmt("Transaction created for certificate %s!\n\n", P),
		tfmt("Committing %s\nSuccess!\n\n", P),
		tfmt("Inserting certificate '%s' in crt-list '%s'.\nSuccess!\n\n", P, L),
	};
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o;

	put_file("list.txt", "/other.pem [alpn h2]");
	o = hap_opts(fake_start(replies, 5), L);
	hap_deploy(o, &item, &res, 1);
	ck_assert_msg(res.r == 0, "%s", res.msg);
	ck_assert_str_eq(fake.cmds, tfmt("set ssl cert %s |new ssl cert %s|set ssl cert %s |"
					 "commit ssl cert %s|add ssl crt-list %s %s",
					 P, P, P, P, L, P));
	assert_file("www.pem", LEAF INTER KEY, 0600);
	ck_assert_str_eq(get_file("list.txt"), tfmt("/other.pem [alpn h2]\n%s\n", P));
}
END_TEST

START_TEST(test_haproxy_add_fails_deletes)
{
	const char *P = path_of("www.pem");
	const char *L = path_of("list.txt");
	const char *replies[] = {
		tfmt("Can't replace a certificate which is not referenced by the configuration!\n"
		     "Can't update %s!\n\n", P),
		tfmt("New empty certificate store '%s'!\n\n", P),
		tfmt("Transaction created for certificate %s!\n\n", P),
		tfmt("Committing %s\nSuccess!\n\n", P),
		tfmt("Can't edit the crt-list: crt-list '%s' does not exist!\n\n", L),
		tfmt("Certificate '%s' deleted!\n\n", P),
	};
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o;

	put_file("list.txt", "");
	o = hap_opts(fake_start(replies, 6), L);
	hap_deploy(o, &item, &res, 1);
	ck_assert_int_eq(res.r, -EPROTO);
	ck_assert_msg(strstr(fake.cmds, tfmt("|add ssl crt-list %s %s|del ssl cert %s", L, P, P)),
		      "%s", fake.cmds);
	ck_assert_msg(strstr(res.msg, "does not exist!"), "%s", res.msg);
	ck_assert_int_eq(access(P, F_OK), -1);
	ck_assert_str_eq(get_file("list.txt"), "");
	assert_no_temp(".");
}
END_TEST

START_TEST(test_haproxy_one_transaction_at_a_time)
{
	const char *A = path_of("a.pem");
	const char *B = path_of("b.pem");
	const char *replies[] = {
		tfmt("Transaction created for certificate %s!\n\n", A),
		tfmt("Committing %s\nSuccess!\n\n", A),
		tfmt("Transaction created for certificate %s!\n\n", B),
		tfmt("Committing %s\nSuccess!\n\n", B),
	};
	struct ch_deploy_item items[2] = { item_new(), item_new() };
	struct result res[2];
	void *o = hap_opts(fake_start(replies, 4), NULL);

	items[0].cert_name = "a";
	items[1].cert_name = "b";
	hap_deploy(o, items, res, 2);
	ck_assert_msg(res[0].r == 0 && res[1].r == 0, "%s / %s", res[0].msg, res[1].msg);
	ck_assert_str_eq(fake.cmds, tfmt("set ssl cert %s |commit ssl cert %s|set ssl cert %s |"
					 "commit ssl cert %s",
					 A, A, B, B));
}
END_TEST

START_TEST(test_haproxy_no_socket)
{
	const char *P = path_of("www.pem");
	const char *sock = path_of("missing.sock");
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o;

	fake_start(NULL, 0);
	o = hap_opts(sock, NULL);
	hap_deploy(o, &item, &res, 1);
	ck_assert_int_eq(res.r, -ENOENT);
	ck_assert_str_eq(res.msg, tfmt("HAProxy's runtime API at %s: `set ssl cert %s` cannot "
				       "connect: No such file or directory",
				       sock, P));
	ck_assert_int_eq(access(P, F_OK), -1);
	assert_no_temp(".");
}
END_TEST

/* nginx */

START_TEST(test_nginx_test_fails_restores)
{
	const struct ch_target_ops *ops = &ch_target_nginx_ops;
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o = opts_new(ops);

	opt_str(ops, o, "fullchain", path_of("{name}.crt"));
	opt_str(ops, o, "key", path_of("{name}.key"));
	opt_str(ops, o, "chain", path_of("{name}.chain"));
	opt_str(ops, o, "pidfile", path_of("nginx.pid"));
	opt_strv(ops, o, "test_command", "/bin/sh", "-c", "echo 'nginx: [emerg] bad' >&2; exit 1",
		 NULL);
	ck_assert_int_eq(ops->check(o, NULL), 0);
	put_file("www.crt", "old cert\n");
	put_file("www.key", "old key\n");
	ck_assert_int_eq(chmod(path_of("www.key"), 0640), 0);

	ck_assert_int_eq(deploy(ops, o, &item, &res), -EIO);
	ck_assert_str_eq(res.msg, "configuration test /bin/sh exited 1: nginx: [emerg] bad; "
				  "the previous files were restored");
	assert_file("www.crt", "old cert\n", 0644);
	assert_file("www.key", "old key\n", 0640);
	/* A file that did not exist before is removed again. */
	ck_assert_int_eq(access(path_of("www.chain"), F_OK), -1);
	assert_no_temp(".");
	assert_no_children();

	/* No master to signal: restored as well. */
	opt_strv(ops, o, "test_command", "/bin/true", NULL);
	ck_assert_int_eq(deploy(ops, o, &item, &res), -ENOENT);
	ck_assert_msg(strstr(res.msg, "reload failed: pidfile") &&
			      strstr(res.msg, "the previous files were restored"),
		      "%s", res.msg);
	assert_file("www.key", "old key\n", 0640);
}
END_TEST

START_TEST(test_nginx_reloads)
{
	const struct ch_target_ops *ops = &ch_target_nginx_ops;
	struct ch_deploy_item item = item_new();
	struct result res;
	void *o;
	char c = 0;
	int p[2], status;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork_sighup_waiter(p[1]);
	close(p[1]);
	put_pidfile("", pid, "\n");
	o = opts_new(ops);
	opt_str(ops, o, "fullchain", path_of("{name}.crt"));
	opt_str(ops, o, "key", path_of("{name}.key"));
	opt_str(ops, o, "pidfile", path_of("svc.pid"));
	opt_strv(ops, o, "test_command", "/bin/true", NULL);

	ck_assert_int_eq(deploy(ops, o, &item, &res), 0);
	ck_assert_str_eq(res.msg, tfmt("wrote 2 files, configuration test passed, sent SIGHUP to "
				       "pid %d (from %s)",
				       (int)pid, path_of("svc.pid")));
	assert_file("www.crt", LEAF INTER, 0644);
	assert_file("www.key", KEY, 0600);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(c, 'H');
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}
END_TEST

static Suite *
target_suite(void)
{
	Suite *s = suite_create("target");
	TCase *tc;

	tc = tcase_create("file");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_file_writes_all);
	tcase_add_test(tc, test_file_modes_and_name);
	tcase_add_test(tc, test_file_empty_chain);
	tcase_add_test(tc, test_file_replaces_atomically);
	tcase_add_test(tc, test_file_missing_dir);
	tcase_add_test(tc, test_file_symlink_refused);
	tcase_add_test(tc, test_file_unknown_owner);
	tcase_add_test(tc, test_file_check);
	tcase_add_test(tc, test_file_current);
	suite_add_tcase(s, tc);

	tc = tcase_create("reload");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reload_sends_signal);
	tcase_add_test(tc, test_reload_other_signal);
	tcase_add_test(tc, test_reload_stale_pid);
	tcase_add_test(tc, test_reload_bad_pidfile);
	suite_add_tcase(s, tc);

	tc = tcase_create("exec");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_exec_env);
	tcase_add_test(tc, test_exec_files_in_batch);
	tcase_add_test(tc, test_exec_failure_stderr);
	tcase_add_test(tc, test_exec_long_stderr);
	tcase_add_test(tc, test_exec_timeout);
	tcase_add_test(tc, test_exec_exit_with_stderr_held_open);
	tcase_add_test(tc, test_exec_not_found);
	tcase_add_test(tc, test_exec_check);
	suite_add_tcase(s, tc);

	tc = tcase_create("haproxy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_haproxy_replies);
	tcase_add_test(tc, test_haproxy_format);
	tcase_add_test(tc, test_haproxy_address);
	tcase_add_test(tc, test_haproxy_check);
	tcase_add_test(tc, test_haproxy_set_commit);
	tcase_add_test(tc, test_haproxy_commit_fails_aborts);
	tcase_add_test(tc, test_haproxy_timeout_aborts);
	tcase_add_test(tc, test_haproxy_new_cert);
	tcase_add_test(tc, test_haproxy_add_fails_deletes);
	tcase_add_test(tc, test_haproxy_one_transaction_at_a_time);
	tcase_add_test(tc, test_haproxy_no_socket);
	suite_add_tcase(s, tc);

	tc = tcase_create("nginx");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_nginx_test_fails_restores);
	tcase_add_test(tc, test_nginx_reloads);
	suite_add_tcase(s, tc);

	tc = tcase_create("registry");
	tcase_add_test(tc, test_registry);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(target_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
