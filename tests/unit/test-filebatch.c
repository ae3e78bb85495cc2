/* SPDX-License-Identifier: MIT */
/*
 * Batched durable file replacement: groups succeed or fail as a whole,
 * nothing is visible before the commit, no temporary file survives (not
 * even one a killed predecessor left), and modes are set.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "certherd/filebatch.h"
#include "certherd/util.h"

static char tmpdir[] = "/tmp/ch-test-fb.XXXXXX";

struct outcome {
	int calls;
	int r;
	char msg[512];
	int order; /* the callback's place among all callbacks */
};

static int callbacks_run;

static void
note(int r, const char *message, void *arg)
{
	struct outcome *o = arg;

	o->calls++;
	o->order = ++callbacks_run;
	o->r = r;
	snprintf(o->msg, sizeof(o->msg), "%s", message ? message : "");
}

static int
count_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		if (strstr(e->d_name, ".tmp."))
			n++;
	if (d)
		closedir(d);
	return n;
}

static char *
slurp(const char *path)
{
	char *buf = NULL;

	if (ch_read_file(path, 1 << 20, &buf, NULL) < 0)
		return NULL;
	return buf;
}

static void
path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

START_TEST(test_groups)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct outcome ok = { 0 };
	struct ch_err err = { "" };
	char a[256], k[256], missing[256];
	struct stat st;
	char *s;

	path_of(a, sizeof(a), "a.pem");
	path_of(k, sizeof(k), "a.key");
	path_of(missing, sizeof(missing), "nodir/x.pem");
	ck_assert_int_eq(ch_write_file_atomic(a, "old", 3, 0644, -1, -1, &err), 0);

	ck_assert_int_eq(ch_filebatch_stage(b, a, "new-cert", 8, 0644, -1, -1, "cert", &err), 0);
	ck_assert_int_eq(ch_filebatch_stage(b, k, "secret", 6, 0600, -1, -1, "key", &err), 0);
	ch_filebatch_group_end(b, note, &ok);
	/* Nothing is visible before the commit. */
	s = slurp(a);
	ck_assert_str_eq(s, "old");
	free(s);
	ck_assert_int_eq(access(k, F_OK), -1);

	/* A group that cannot stage is aborted and leaves nothing behind. */
	ck_assert_int_eq(ch_filebatch_stage(b, missing, "x", 1, 0644, -1, -1, "cert", &err),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "nodir"));
	ch_filebatch_group_abort(b);
	ck_assert_int_eq(ch_filebatch_pending(b), 1);

	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	ck_assert_int_eq(ok.calls, 1);
	ck_assert_int_eq(ok.r, 0);
	s = slurp(a);
	ck_assert_str_eq(s, "new-cert");
	free(s);
	ck_assert_int_eq(stat(k, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	ck_assert_int_eq(ch_filebatch_pending(b), 0);
	ch_filebatch_free(b);
}
END_TEST

START_TEST(test_many_files_syncfs)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct outcome o[40] = { 0 };
	struct ch_err err = { "" };
	char p[256], data[64];

	/* More files than the fsync-each threshold: one syncfs path. */
	for (int g = 0; g < 40; g++) {
		for (int f = 0; f < 3; f++) {
			char name[64];

			snprintf(name, sizeof(name), "m%d-%d.pem", g, f);
			path_of(p, sizeof(p), name);
			snprintf(data, sizeof(data), "group %d file %d", g, f);
			ck_assert_int_eq(ch_filebatch_stage(b, p, data, strlen(data), 0640, -1, -1,
							    "cert", &err),
					 0);
		}
		ch_filebatch_group_end(b, note, &o[g]);
	}
	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	for (int g = 0; g < 40; g++) {
		ck_assert_int_eq(o[g].calls, 1);
		ck_assert_int_eq(o[g].r, 0);
	}
	path_of(p, sizeof(p), "m39-2.pem");
	{
		char *s = slurp(p);

		ck_assert_str_eq(s, "group 39 file 2");
		free(s);
	}
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	ch_filebatch_free(b);
}
END_TEST

START_TEST(test_symlink_refused_and_free_unstages)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct ch_err err = { "" };
	struct outcome o = { 0 };
	char target[256], link[256], p[256];

	path_of(target, sizeof(target), "real");
	path_of(link, sizeof(link), "link");
	ck_assert_int_eq(ch_write_file_atomic(target, "x", 1, 0644, -1, -1, &err), 0);
	ck_assert_int_eq(symlink(target, link), 0);
	ck_assert_int_eq(ch_filebatch_stage(b, link, "y", 1, 0644, -1, -1, "cert", &err), -ELOOP);
	ch_filebatch_group_abort(b);

	/* Freed without a commit: staged files are removed, callbacks not called. */
	path_of(p, sizeof(p), "never.pem");
	ck_assert_int_eq(ch_filebatch_stage(b, p, "z", 1, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &o);
	ch_filebatch_free(b);
	ck_assert_int_eq(o.calls, 0);
	ck_assert_int_eq(access(p, F_OK), -1);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
}
END_TEST

/* Writes "left" to name as a killed writer would have, an hour ago. */
static void
leave_tmp(const char *name, int age)
{
	struct timespec t[2];
	char p[256];
	FILE *f;

	path_of(p, sizeof(p), name);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("left", f);
	fclose(f);
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age;
	t[1] = t[0];
	ck_assert_int_eq(utimensat(AT_FDCWD, p, t, 0), 0);
}

START_TEST(test_crash_leftover_taken_over)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct outcome o = { 0 };
	struct ch_err err = { "" };
	char a[256], c[256], live[256];
	char *s;

	/* Temporary files of a predecessor killed between create and rename. */
	path_of(a, sizeof(a), "crash.pem");
	path_of(c, sizeof(c), "crash.key");
	leave_tmp("crash.pem.tmp.ch", 3600);
	leave_tmp("crash.key.tmp.ch", 3600);
	ck_assert_int_eq(count_tmp(tmpdir), 2);
	/* Written again (the resumed deployment), nothing is left behind. */
	ck_assert_int_eq(ch_filebatch_stage(b, a, "one", 3, 0644, -1, -1, "cert", &err), 0);
	/* The same path twice in one batch: the second gets another name. */
	ck_assert_int_eq(ch_filebatch_stage(b, a, "two", 3, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &o);
	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	ck_assert_int_eq(o.r, 0);
	s = slurp(a);
	ck_assert_str_eq(s, "two");
	free(s);
	ck_assert_int_eq(ch_write_file_atomic(c, "key", 3, 0600, -1, -1, &err), 0);
	s = slurp(c);
	ck_assert_str_eq(s, "key");
	free(s);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	ch_filebatch_free(b);

	/* One written since this process started is in use: left alone. */
	path_of(live, sizeof(live), "live.pem");
	leave_tmp("live.pem.tmp.ch", -5);
	ck_assert_int_eq(ch_write_file_atomic(live, "new", 3, 0644, -1, -1, &err), 0);
	s = slurp(live);
	ck_assert_str_eq(s, "new");
	free(s);
	path_of(live, sizeof(live), "live.pem.tmp.ch");
	s = slurp(live);
	ck_assert_str_eq(s, "left");
	free(s);
	ck_assert_int_eq(unlink(live), 0);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
}
END_TEST

START_TEST(test_commit_keeps_open_group)
{
	struct ch_filebatch *b = ch_filebatch_new();
	struct outcome first = { 0 }, open = { 0 };
	struct ch_err err = { "" };
	char a[256], o[256];
	char *s;

	path_of(a, sizeof(a), "ended.pem");
	path_of(o, sizeof(o), "open.pem");
	ck_assert_int_eq(ch_filebatch_stage(b, a, "a", 1, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &first);
	ck_assert_int_eq(ch_filebatch_stage(b, o, "o", 1, 0644, -1, -1, "cert", &err), 0);
	/* A commit while a group is being staged leaves that group for the next one. */
	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	ck_assert_int_eq(first.calls, 1);
	ck_assert_int_eq(access(a, F_OK), 0);
	ck_assert_int_eq(access(o, F_OK), -1);
	ch_filebatch_group_end(b, note, &open);
	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	ck_assert_int_eq(open.calls, 1);
	ck_assert_int_eq(open.r, 0);
	s = slurp(o);
	ck_assert_str_eq(s, "o");
	free(s);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	ch_filebatch_free(b);
}
END_TEST

/* Runs base's loop until *calls reaches want, for at most 10 s. */
static void
loop_until(struct event_base *base, const int *calls, int want)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (*calls < want) {
		struct timeval tick = { 0, 10000 };

		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
		clock_gettime(CLOCK_MONOTONIC, &t);
		ck_assert_msg(t.tv_sec - t0.tv_sec < 10, "callbacks did not run within 10 s");
	}
}

START_TEST(test_async_worker)
{
	struct event_base *base = event_base_new();
	struct ch_filebatch *b = ch_filebatch_new_async(base);
	struct outcome a = { 0 }, miss = { 0 }, c = { 0 };
	struct ch_err err = { "" };
	char dir[256], key[256], missing[256], cp[256];
	struct stat st;
	char *s;

	ck_assert_ptr_nonnull(b);
	path_of(dir, sizeof(dir), "async/issuance");
	path_of(key, sizeof(key), "async/issuance/key.pem");
	path_of(missing, sizeof(missing), "nodir/x.pem");
	path_of(cp, sizeof(cp), "async.pem");
	callbacks_run = 0;

	/* Staging only copies: the directory is made and files written by the worker. */
	ck_assert_int_eq(ch_filebatch_mkdir(b, dir, 0700, &err), 0);
	ck_assert_int_eq(ch_filebatch_stage(b, key, "secret", 6, 0600, -1, -1, "key", &err), 0);
	ch_filebatch_group_end(b, note, &a);
	/* What the file system refuses reaches the callback, not the stage. */
	ck_assert_int_eq(ch_filebatch_stage(b, missing, "x", 1, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &miss);
	ck_assert_int_eq(ch_filebatch_stage(b, cp, "cert", 4, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &c);
	ck_assert_int_eq(access(dir, F_OK), -1);
	ck_assert_int_eq(count_tmp(tmpdir), 0);

	ck_assert_int_eq(ch_filebatch_commit(b), 0);
	ck_assert_int_eq(ch_filebatch_pending(b), 0);
	/* Callbacks run on the loop only, in staging order. */
	ck_assert_int_eq(callbacks_run, 0);
	loop_until(base, &callbacks_run, 3);
	ck_assert_int_eq(a.r, 0);
	ck_assert_int_eq(a.order, 1);
	ck_assert_int_eq(miss.r, -ENOENT);
	ck_assert_int_eq(miss.order, 2);
	ck_assert_ptr_nonnull(strstr(miss.msg, "nodir does not exist (for cert"));
	ck_assert_int_eq(c.r, 0);
	ck_assert_int_eq(c.order, 3);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(key, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	s = slurp(key);
	ck_assert_str_eq(s, "secret");
	free(s);
	s = slurp(cp);
	ck_assert_str_eq(s, "cert");
	free(s);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	ch_filebatch_free(b);
	event_base_free(base);
}
END_TEST

/* Stages one more file from a callback, as a deployment started by a renewal does. */
static void
stage_more(int r, const char *message, void *arg)
{
	struct ch_filebatch *b = arg;
	struct ch_err err = { "" };
	char p[256];

	(void)message;
	ck_assert_int_eq(r, 0);
	path_of(p, sizeof(p), "from-callback.pem");
	ck_assert_int_eq(ch_filebatch_stage(b, p, "later", 5, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, NULL, NULL);
}

START_TEST(test_async_many_commits_drain)
{
	struct event_base *base = event_base_new();
	struct ch_filebatch *b = ch_filebatch_new_async(base);
	static struct outcome o[700];
	struct outcome never = { 0 };
	struct ch_err err = { "" };
	char p[256], data[64];
	char *s;

	ck_assert_ptr_nonnull(b);
	memset(o, 0, sizeof(o));
	callbacks_run = 0;
	/* More groups than one pass of the worker, over several commits. */
	for (int g = 0; g < 700; g++) {
		snprintf(data, sizeof(data), "d%d", g);
		path_of(p, sizeof(p), data);
		ck_assert_int_eq(ch_filebatch_stage(b, p, data, strlen(data), 0644, -1, -1, "cert",
						    &err),
				 0);
		ch_filebatch_group_end(b, note, &o[g]);
		if (g % 100 == 99)
			ch_filebatch_commit(b);
	}
	ch_filebatch_group_end(b, stage_more, b);
	ch_filebatch_commit(b);
	/* Drain waits for the worker and runs every callback, in order. */
	ck_assert_uint_gt(ch_filebatch_drain(b), 0);
	for (int g = 0; g < 700; g++) {
		ck_assert_int_eq(o[g].calls, 1);
		ck_assert_int_eq(o[g].r, 0);
		ck_assert_int_eq(o[g].order, g + 1);
	}
	path_of(p, sizeof(p), "d699");
	s = slurp(p);
	ck_assert_str_eq(s, "d699");
	free(s);
	/* What the callback staged is written by the next commit. */
	ck_assert_int_eq(ch_filebatch_pending(b), 1);
	ch_filebatch_commit(b);
	ch_filebatch_drain(b);
	path_of(p, sizeof(p), "from-callback.pem");
	s = slurp(p);
	ck_assert_str_eq(s, "later");
	free(s);

	/* Freed: what was committed completes, what is only staged is dropped. */
	path_of(p, sizeof(p), "committed-at-free.pem");
	ck_assert_int_eq(ch_filebatch_stage(b, p, "c", 1, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &o[0]);
	ch_filebatch_commit(b);
	path_of(p, sizeof(p), "never-committed.pem");
	ck_assert_int_eq(ch_filebatch_stage(b, p, "n", 1, 0644, -1, -1, "cert", &err), 0);
	ch_filebatch_group_end(b, note, &never);
	ch_filebatch_free(b);
	ck_assert_int_eq(o[0].calls, 2);
	ck_assert_int_eq(never.calls, 0);
	ck_assert_int_eq(access(p, F_OK), -1);
	path_of(p, sizeof(p), "committed-at-free.pem");
	ck_assert_int_eq(access(p, F_OK), 0);
	ck_assert_int_eq(count_tmp(tmpdir), 0);
	event_base_free(base);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("filebatch");
	TCase *tc = tcase_create("filebatch");
	SRunner *sr;
	int failed;

	if (!mkdtemp(tmpdir))
		return EXIT_FAILURE;
	tcase_add_test(tc, test_groups);
	tcase_add_test(tc, test_many_files_syncfs);
	tcase_add_test(tc, test_symlink_refused_and_free_unstages);
	tcase_add_test(tc, test_crash_leftover_taken_over);
	tcase_add_test(tc, test_commit_keeps_open_group);
	tcase_add_test(tc, test_async_worker);
	tcase_add_test(tc, test_async_many_commits_drain);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
