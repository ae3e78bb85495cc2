/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the SQLite inventory: opening and migrating, the row
 * round trips of certificates, issuances and deployments, the event log's
 * append-only triggers, transactions, the query plans of the scheduler's
 * lookups, and a 100,000-certificate bulk load.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "certherd/macro.h"
#include "certherd/store.h"

static char test_dir[PATH_MAX];
static char test_db[PATH_MAX + 16];

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(test_dir, sizeof(test_dir), "%s/test-store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(test_dir));
	snprintf(test_db, sizeof(test_db), "%s/store.db", test_dir);
}

static void
teardown(void)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
	char p[sizeof(test_db) + 16];

	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
		snprintf(p, sizeof(p), "%s%s", test_db, suffixes[i]);
		unlink(p);
	}
	rmdir(test_dir);
}

static struct ch_store *
open_store(void)
{
	struct ch_store *s = NULL;
	struct ch_err err = {};
	int r;

	r = ch_store_open(test_db, &s, &err);
	ck_assert_msg(r == 0, "ch_store_open: %d %s", r, err.msg);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* A second, plain connection to the same file. */
static sqlite3 *
raw_open(void)
{
	sqlite3 *db = NULL;

	ck_assert_int_eq(sqlite3_open_v2(test_db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void
raw_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st = NULL;

	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static int64_t
raw_int(sqlite3 *db, const char *sql)
{
	char buf[64];

	raw_text(db, sql, buf, sizeof(buf));
	return strtoll(buf, NULL, 10);
}

static int64_t
add_cert(struct ch_store *s, const char *name, bool wanted, int64_t next_at)
{
	struct ch_store_cert c = {
		.name = (char *)name,
		.wanted = wanted,
		.next_at = next_at,
	};

	ck_assert_int_eq(ch_store_cert_insert(s, &c), 0);
	ck_assert_int_gt(c.id, 0);
	return c.id;
}

static int64_t
add_issuance(struct ch_store *s, int64_t cert_id, const char *idem, const char *serial)
{
	struct ch_store_issuance i = {
		.cert_id = cert_id,
		.idem_key = (char *)idem,
		.serial = (char *)serial,
		.not_before = 1000,
		.not_after = 2000,
	};

	ck_assert_int_eq(ch_store_issuance_insert(s, &i), 0);
	ck_assert_int_gt(i.id, 0);
	return i.id;
}

START_TEST(test_open_fresh)
{
	struct ch_store *s;
	struct stat st;
	char buf[64], wal[sizeof(test_db) + 8];
	sqlite3 *db;

	umask(022);
	s = open_store();
	ck_assert_int_ge(ch_store_schema_version(s), 1);
	ck_assert_int_eq(ch_store_integrity_check(s), 0);

	ck_assert_int_eq(stat(test_db, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	snprintf(wal, sizeof(wal), "%s-wal", test_db);
	if (stat(wal, &st) == 0)
		ck_assert_int_eq(st.st_mode & 07777, 0600);

	db = raw_open();
	raw_text(db, "PRAGMA journal_mode", buf, sizeof(buf));
	ck_assert_str_eq(buf, "wal");
	ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), ch_store_schema_version(s));
	ck_assert_int_eq(raw_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
				     "name IN ('certificates', 'issuances', 'deployments', 'events')"),
			 4);
	sqlite3_close(db);

	ck_assert_ptr_null(ch_store_free(s));
	ck_assert_ptr_null(ch_store_free(NULL));
}
END_TEST

START_TEST(test_reopen)
{
	struct ch_store *s;
	struct ch_store_cert c = {};
	int version;
	int64_t objects;
	sqlite3 *db;

	s = open_store();
	version = ch_store_schema_version(s);
	add_cert(s, "keep.example", true, 42);
	ch_store_free(s);

	db = raw_open();
	objects = raw_int(db, "SELECT COUNT(*) FROM sqlite_master");
	sqlite3_close(db);

	s = open_store();
	ck_assert_int_eq(ch_store_schema_version(s), version);
	ck_assert_int_eq(ch_store_cert_get(s, "keep.example", &c), 0);
	ck_assert_int_eq(c.next_at, 42);
	ch_store_cert_done(&c);
	ch_store_free(s);

	db = raw_open();
	ck_assert_int_eq(raw_int(db, "SELECT COUNT(*) FROM sqlite_master"), objects);
	ck_assert_int_eq(raw_int(db, "PRAGMA user_version"), version);
	sqlite3_close(db);
}
END_TEST

START_TEST(test_future_version)
{
	struct ch_store *s;
	struct ch_err err = {};
	char sql[64];
	sqlite3 *db;
	int r;

	s = open_store();
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", ch_store_schema_version(s) + 1);
	ch_store_free(s);

	db = raw_open();
	ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	s = NULL;
	r = ch_store_open(test_db, &s, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err.msg, "newer"), "unexpected message: %s", err.msg);
}
END_TEST

START_TEST(test_not_a_database)
{
	struct ch_store *s = NULL;
	struct ch_err err = {};
	FILE *f;

	f = fopen(test_db, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 64; i++)
		fputs("this is not an SQLite database at all. ", f);
	fclose(f);

	ck_assert_int_lt(ch_store_open(test_db, &s, &err), 0);
	ck_assert_ptr_null(s);
	ck_assert_str_ne(err.msg, "");
}
END_TEST

static void
assert_cert_eq(const struct ch_store_cert *a, const struct ch_store_cert *b)
{
	ck_assert_int_eq(a->id, b->id);
	ck_assert_pstr_eq(a->name, b->name);
	ck_assert_pstr_eq(a->spec, b->spec);
	ck_assert_int_eq(a->wanted, b->wanted);
	ck_assert_pstr_eq(a->state, b->state);
	ck_assert_int_eq(a->next_at, b->next_at);
	ck_assert_int_eq(a->renew_at, b->renew_at);
	ck_assert_int_eq(a->failures, b->failures);
	ck_assert_pstr_eq(a->last_outcome, b->last_outcome);
	ck_assert_pstr_eq(a->last_error, b->last_error);
	ck_assert_int_eq(a->last_attempt_at, b->last_attempt_at);
	ck_assert_int_eq(a->last_success_at, b->last_success_at);
	ck_assert_int_eq(a->current_issuance, b->current_issuance);
	ck_assert_pstr_eq(a->pending_idem, b->pending_idem);
	ck_assert_pstr_eq(a->pending_key, b->pending_key);
	ck_assert_int_eq(a->force, b->force);
}

START_TEST(test_cert_roundtrip)
{
	struct ch_store *s = open_store();
	struct ch_store_cert in = {
		.name = "www.example.com",
		.spec = "{\"sans\":[\"www.example.com\"]}",
		.wanted = true,
		.state = "issuing",
		.next_at = 1700000000,
		.renew_at = 1700000100,
		.failures = 3,
		.last_outcome = "ca-unreachable",
		.last_error = "connection refused",
		.last_attempt_at = 1690000000,
		.last_success_at = 1680000000,
		.pending_idem = "idem-1",
		.pending_key = "/var/lib/certherd/keys/next.pem",
		.force = true,
	};
	struct ch_store_cert out = {};
	struct ch_store_issuance is = {
		.serial = "0a1b2c",
		.fingerprint = "ff00",
		.not_before = 1600000000,
		.not_after = 1800000000,
		.issued_at = 1600000005,
		.ca = "local",
		.idem_key = "idem-0",
		.cert_pem = "-----BEGIN CERTIFICATE-----\n",
		.chain_pem = "",
		.key_path = "/k.pem",
		.adopted = true,
	};

	ck_assert_int_eq(ch_store_cert_insert(s, &in), 0);
	ck_assert_int_gt(in.id, 0);

	ck_assert_int_eq(ch_store_cert_get(s, "www.example.com", &out), 0);
	assert_cert_eq(&out, &in);
	ck_assert_ptr_null(out.cur_serial);
	ck_assert_int_eq(out.cur_not_before, 0);
	ck_assert_int_eq(out.cur_not_after, 0);
	ch_store_cert_done(&out);
	ck_assert_ptr_null(out.name);
	ck_assert_int_eq(out.id, 0);

	/* An issuance made current shows up in cur_*. */
	is.cert_id = in.id;
	ck_assert_int_eq(ch_store_issuance_insert(s, &is), 0);
	in.current_issuance = is.id;
	in.spec = "{\"sans\":[\"www.example.com\",\"example.com\"]}";
	in.wanted = false;
	in.state = "valid";
	in.next_at = 0;
	in.renew_at = 1750000000;
	in.failures = 0;
	in.last_outcome = "issued";
	in.last_error = NULL;
	in.last_attempt_at = 1700000050;
	in.last_success_at = 1700000060;
	in.pending_idem = NULL;
	in.pending_key = NULL;
	in.force = false;
	ck_assert_int_eq(ch_store_cert_update(s, &in), 0);

	ck_assert_int_eq(ch_store_cert_get_by_id(s, in.id, &out), 0);
	assert_cert_eq(&out, &in);
	ck_assert_pstr_eq(out.cur_serial, "0a1b2c");
	ck_assert_int_eq(out.cur_not_before, 1600000000);
	ck_assert_int_eq(out.cur_not_after, 1800000000);
	ch_store_cert_done(&out);
	ch_store_cert_done(NULL);

	/* The issuance round trip, every field. */
	struct ch_store_issuance got = {};
	ck_assert_int_eq(ch_store_issuance_get(s, is.id, &got), 0);
	ck_assert_int_eq(got.id, is.id);
	ck_assert_int_eq(got.cert_id, in.id);
	ck_assert_pstr_eq(got.serial, is.serial);
	ck_assert_pstr_eq(got.fingerprint, is.fingerprint);
	ck_assert_int_eq(got.not_before, is.not_before);
	ck_assert_int_eq(got.not_after, is.not_after);
	ck_assert_int_eq(got.issued_at, is.issued_at);
	ck_assert_pstr_eq(got.ca, is.ca);
	ck_assert_pstr_eq(got.idem_key, is.idem_key);
	ck_assert_pstr_eq(got.cert_pem, is.cert_pem);
	ck_assert_pstr_eq(got.chain_pem, "");
	ck_assert_pstr_eq(got.key_path, is.key_path);
	ck_assert_int_eq(got.revoked_at, 0);
	ck_assert_ptr_null(got.revocation_reason);
	ck_assert(got.adopted);
	ch_store_issuance_done(&got);
	ch_store_issuance_done(NULL);

	ck_assert_int_eq(ch_store_issuance_revoke(s, is.id, 1750000001, "keyCompromise"), 0);
	ck_assert_int_eq(ch_store_issuance_get(s, is.id, &got), 0);
	ck_assert_int_eq(got.revoked_at, 1750000001);
	ck_assert_pstr_eq(got.revocation_reason, "keyCompromise");
	ch_store_issuance_done(&got);
	ck_assert_int_eq(ch_store_issuance_revoke(s, 99999, 1, NULL), -ENOENT);

	ch_store_free(s);
}
END_TEST

START_TEST(test_cert_errors)
{
	struct ch_store *s = open_store();
	struct ch_store_cert c = { .name = "dup.example" }, out = {};

	ck_assert_int_eq(ch_store_cert_insert(s, &c), 0);
	ck_assert_int_eq(ch_store_cert_get(s, "dup.example", &out), 0);
	ck_assert_pstr_eq(out.state, "new");
	ch_store_cert_done(&out);

	c.id = 0;
	ck_assert_int_eq(ch_store_cert_insert(s, &c), -EEXIST);
	ck_assert_int_eq(ch_store_cert_get(s, "missing.example", &out), -ENOENT);
	ck_assert_ptr_null(out.name);
	ck_assert_int_eq(ch_store_cert_get_by_id(s, 4242, &out), -ENOENT);

	c.id = 4242;
	ck_assert_int_eq(ch_store_cert_update(s, &c), -ENOENT);

	/* A state word outside the CHECK list is refused. */
	struct ch_store_cert bad = { .name = "bad.example", .state = "bogus" };
	ck_assert_int_eq(ch_store_cert_insert(s, &bad), -EEXIST);

	/* A current_issuance that does not exist violates the foreign key. */
	ck_assert_int_eq(ch_store_cert_get(s, "dup.example", &out), 0);
	out.current_issuance = 777;
	ck_assert_int_eq(ch_store_cert_update(s, &out), -EEXIST);
	ch_store_cert_done(&out);

	ch_store_free(s);
}
END_TEST

START_TEST(test_next_due)
{
	struct ch_store *s = open_store();
	struct ch_store_cert c = {};
	int64_t id;

	ck_assert_int_eq(ch_store_cert_next_due(s, &c), -ENOENT);

	add_cert(s, "a.example", true, 300);
	add_cert(s, "b.example", false, 100); /* unwanted */
	id = add_cert(s, "c.example", true, 200);
	add_cert(s, "d.example", true, 0); /* nothing scheduled */
	add_cert(s, "e.example", false, 0);

	ck_assert_int_eq(ch_store_cert_next_due(s, &c), 0);
	ck_assert_int_eq(c.id, id);
	ck_assert_str_eq(c.name, "c.example");
	ck_assert_int_eq(c.next_at, 200);

	/* Rescheduling moves it behind a.example. */
	c.next_at = 400;
	ck_assert_int_eq(ch_store_cert_update(s, &c), 0);
	ch_store_cert_done(&c);
	ck_assert_int_eq(ch_store_cert_next_due(s, &c), 0);
	ck_assert_str_eq(c.name, "a.example");
	ch_store_cert_done(&c);

	ch_store_free(s);
}
END_TEST

/* Captures the store's own connection and the SQL of the statements it runs. */
static sqlite3 *captured_db;
static bool capture_armed;
static char traced_sql[4096];

static int
capture_ext(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api)
{
	if (capture_armed) {
		captured_db = db;
		capture_armed = false;
	}
	return SQLITE_OK;
}

static int
trace_cb(unsigned type, void *ctx, void *p, void *x)
{
	const char *sql;

	if (type == SQLITE_TRACE_STMT && !traced_sql[0]) {
		sql = sqlite3_sql(p);
		if (sql)
			snprintf(traced_sql, sizeof(traced_sql), "%s", sql);
	}
	return 0;
}

/* Concatenates the EXPLAIN QUERY PLAN details of sql, one per line. */
static void
explain(sqlite3 *db, const char *sql, char *plan, size_t len)
{
	char q[sizeof(traced_sql) + 32];
	sqlite3_stmt *st = NULL;
	size_t n = 0;

	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	ck_assert_int_eq(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	plan[0] = '\0';
	while (sqlite3_step(st) == SQLITE_ROW && n < len) {
		const char *d = (const char *)sqlite3_column_text(st, 3);
		n += snprintf(plan + n, len - n, "%s\n", d ? d : "");
	}
	sqlite3_finalize(st);
}

static void
assert_plan_uses_index(const char *plan, const char *table, const char *alias,
		       const char *index)
{
	char full_scan[64], line[256];
	const char *p = plan, *nl;

	ck_assert_msg(strstr(plan, index), "plan does not use %s:\n%s", index, plan);
	ck_assert_msg(!strstr(plan, "TEMP B-TREE"), "plan sorts:\n%s", plan);
	snprintf(full_scan, sizeof(full_scan), "SCAN %s", alias);
	while (*p) {
		nl = strchr(p, '\n');
		snprintf(line, sizeof(line), "%.*s", (int)(nl ? nl - p : (ptrdiff_t)strlen(p)), p);
		if (strncmp(line, full_scan, strlen(full_scan)) == 0 ||
		    strncmp(line, "SCAN ", 5) == 0)
			ck_assert_msg(strstr(line, "USING INDEX") || strstr(line, "USING COVERING INDEX"),
				      "full scan of %s:\n%s", table, plan);
		if (!nl)
			break;
		p = nl + 1;
	}
}

START_TEST(test_query_plans)
{
	struct ch_store *s;
	struct ch_store_cert c = {};
	struct ch_store_deployment d = {};
	char plan[2048];

	captured_db = NULL;
	capture_armed = true;
	ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))capture_ext), SQLITE_OK);
	s = open_store();
	sqlite3_reset_auto_extension();
	ck_assert_ptr_nonnull(captured_db);

	add_cert(s, "plan.example", true, 10);

	traced_sql[0] = '\0';
	sqlite3_trace_v2(captured_db, SQLITE_TRACE_STMT, trace_cb, NULL);
	ck_assert_int_eq(ch_store_cert_next_due(s, &c), 0);
	sqlite3_trace_v2(captured_db, 0, NULL, NULL);
	ch_store_cert_done(&c);
	ck_assert_msg(strstr(traced_sql, "certificates"), "traced: %s", traced_sql);
	explain(captured_db, traced_sql, plan, sizeof(plan));
	assert_plan_uses_index(plan, "certificates", "c", "certificates_next_at");

	traced_sql[0] = '\0';
	sqlite3_trace_v2(captured_db, SQLITE_TRACE_STMT, trace_cb, NULL);
	ck_assert_int_eq(ch_store_deployment_next_due(s, &d), -ENOENT);
	sqlite3_trace_v2(captured_db, 0, NULL, NULL);
	ck_assert_msg(strstr(traced_sql, "deployments"), "traced: %s", traced_sql);
	explain(captured_db, traced_sql, plan, sizeof(plan));
	assert_plan_uses_index(plan, "deployments", "d", "deployments_next_at");

	ch_store_free(s);
}
END_TEST

struct collect {
	int n;
	int stop_after;
	int64_t ids[16];
	char names[16][64];
};

static int
collect_issuance(const struct ch_store_issuance *i, void *arg)
{
	struct collect *c = arg;

	if (c->n < (int)ARRAY_SIZE(c->ids))
		c->ids[c->n] = i->id;
	c->n++;
	if (c->stop_after && c->n >= c->stop_after)
		return -ECANCELED;
	return 0;
}

START_TEST(test_issuances)
{
	struct ch_store *s = open_store();
	struct ch_store_issuance i = {};
	struct collect col = {};
	int64_t cert, other, i1, i2, i3;

	cert = add_cert(s, "iss.example", true, 0);
	other = add_cert(s, "other.example", true, 0);
	i1 = add_issuance(s, cert, "k1", "01");
	i2 = add_issuance(s, cert, "k2", "02");
	add_issuance(s, other, "k-other", "02");
	i3 = add_issuance(s, cert, "k3", "03");

	struct ch_store_issuance dup = { .cert_id = cert, .idem_key = "k2", .serial = "99" };
	ck_assert_int_eq(ch_store_issuance_insert(s, &dup), -EEXIST);
	struct ch_store_issuance orphan = { .cert_id = 999, .idem_key = "k9" };
	ck_assert_int_eq(ch_store_issuance_insert(s, &orphan), -EEXIST);

	ck_assert_int_eq(ch_store_issuance_get_by_idem(s, "k2", &i), 0);
	ck_assert_int_eq(i.id, i2);
	ck_assert_str_eq(i.serial, "02");
	ch_store_issuance_done(&i);
	ck_assert_int_eq(ch_store_issuance_get_by_idem(s, "nope", &i), -ENOENT);

	ck_assert_int_eq(ch_store_issuance_get_by_serial(s, "03", &i), 0);
	ck_assert_int_eq(i.id, i3);
	ck_assert_int_eq(i.cert_id, cert);
	ch_store_issuance_done(&i);
	ck_assert_int_eq(ch_store_issuance_get_by_serial(s, "ff", &i), -ENOENT);
	ck_assert_int_eq(ch_store_issuance_get(s, 12345, &i), -ENOENT);

	ck_assert_int_eq(ch_store_issuance_foreach_for_cert(s, cert, 0, collect_issuance, &col), 0);
	ck_assert_int_eq(col.n, 3);
	ck_assert_int_eq(col.ids[0], i3);
	ck_assert_int_eq(col.ids[1], i2);
	ck_assert_int_eq(col.ids[2], i1);

	col = (struct collect){};
	ck_assert_int_eq(ch_store_issuance_foreach_for_cert(s, cert, 2, collect_issuance, &col), 0);
	ck_assert_int_eq(col.n, 2);
	ck_assert_int_eq(col.ids[0], i3);
	ck_assert_int_eq(col.ids[1], i2);

	col = (struct collect){ .stop_after = 1 };
	ck_assert_int_eq(ch_store_issuance_foreach_for_cert(s, cert, 0, collect_issuance, &col),
			 -ECANCELED);
	ck_assert_int_eq(col.n, 1);

	col = (struct collect){};
	ck_assert_int_eq(ch_store_issuance_foreach_for_cert(s, 4242, 0, collect_issuance, &col), 0);
	ck_assert_int_eq(col.n, 0);

	ch_store_free(s);
}
END_TEST

static int
collect_deployment(const struct ch_store_deployment *d, void *arg)
{
	struct collect *c = arg;

	if (c->n < (int)ARRAY_SIZE(c->names))
		snprintf(c->names[c->n], sizeof(c->names[0]), "%s:%s:%s", d->cert_name, d->target,
			 d->state);
	c->n++;
	return 0;
}

START_TEST(test_deployments)
{
	struct ch_store *s = open_store();
	struct ch_store_deployment d = {}, due = {};
	struct collect col = {};
	int64_t cert, old1, old2, cur;

	cert = add_cert(s, "dep.example", true, 0);
	old1 = add_issuance(s, cert, "d1", "01");
	old2 = add_issuance(s, cert, "d2", "02");
	cur = add_issuance(s, cert, "d3", "03");

	ck_assert_int_eq(ch_store_deployment_next_due(s, &due), -ENOENT);

	/* ensure is idempotent: the second call does not reset the row. */
	ck_assert_int_eq(ch_store_deployment_ensure(s, cur, "nginx", 500), 0);
	ck_assert_int_eq(ch_store_deployment_get(s, cur, "nginx", &d), 0);
	ck_assert_int_gt(d.id, 0);
	ck_assert_int_eq(d.issuance_id, cur);
	ck_assert_str_eq(d.target, "nginx");
	ck_assert_str_eq(d.state, "pending");
	ck_assert_int_eq(d.next_at, 500);
	ck_assert_int_eq(d.attempts, 0);
	ck_assert_str_eq(d.cert_name, "dep.example");

	free(d.state);
	d.state = strdup("failed");
	d.attempts = 2;
	d.attempted_at = 450;
	d.next_at = 900;
	d.last_error = strdup("reload failed");
	ck_assert_int_eq(ch_store_deployment_update(s, &d), 0);
	ck_assert_int_eq(ch_store_deployment_ensure(s, cur, "nginx", 1), 0);
	ch_store_deployment_done(&d);
	ck_assert_ptr_null(d.target);
	ch_store_deployment_done(NULL);

	ck_assert_int_eq(ch_store_deployment_get(s, cur, "nginx", &d), 0);
	ck_assert_str_eq(d.state, "failed");
	ck_assert_int_eq(d.attempts, 2);
	ck_assert_int_eq(d.attempted_at, 450);
	ck_assert_int_eq(d.succeeded_at, 0);
	ck_assert_int_eq(d.verified_at, 0);
	ck_assert_int_eq(d.next_at, 900);
	ck_assert_str_eq(d.last_error, "reload failed");
	ch_store_deployment_done(&d);

	ck_assert_int_eq(ch_store_deployment_get(s, cur, "haproxy", &d), -ENOENT);
	struct ch_store_deployment bogus = { .issuance_id = cur, .target = "nginx",
					     .state = "bogus" };
	ck_assert_int_eq(ch_store_deployment_update(s, &bogus), -EEXIST);
	ck_assert_int_eq(ch_store_deployment_ensure(s, 4242, "nginx", 1), -EEXIST);

	/* Update by (issuance, target) when the id is not known. */
	struct ch_store_deployment by_key = {
		.issuance_id = cur, .target = "nginx", .state = "deployed",
		.attempted_at = 950, .succeeded_at = 951, .verified_at = 952, .attempts = 3,
	};
	ck_assert_int_eq(ch_store_deployment_update(s, &by_key), 0);
	by_key.target = "nowhere";
	ck_assert_int_eq(ch_store_deployment_update(s, &by_key), -ENOENT);
	by_key.id = 4242;
	ck_assert_int_eq(ch_store_deployment_update(s, &by_key), -ENOENT);
	ck_assert_int_eq(ch_store_deployment_get(s, cur, "nginx", &d), 0);
	ck_assert_str_eq(d.state, "deployed");
	ck_assert_int_eq(d.verified_at, 952);
	ck_assert_ptr_null(d.last_error);
	ch_store_deployment_done(&d);

	/* Older issuances: one deployed, two unfinished. */
	ck_assert_int_eq(ch_store_deployment_ensure(s, old1, "nginx", 100), 0);
	ck_assert_int_eq(ch_store_deployment_ensure(s, old1, "haproxy", 0), 0);
	ck_assert_int_eq(ch_store_deployment_ensure(s, old2, "nginx", 200), 0);
	ck_assert_int_eq(ch_store_deployment_ensure(s, cur, "haproxy", 300), 0);
	struct ch_store_deployment done1 = { .issuance_id = old1, .target = "haproxy",
					     .state = "deployed", .next_at = 50 };
	ck_assert_int_eq(ch_store_deployment_update(s, &done1), 0);

	/* next_due: smallest next_at > 0, not deployed or superseded. */
	ck_assert_int_eq(ch_store_deployment_next_due(s, &due), 0);
	ck_assert_int_eq(due.issuance_id, old1);
	ck_assert_str_eq(due.target, "nginx");
	ck_assert_str_eq(due.cert_name, "dep.example");
	ch_store_deployment_done(&due);

	ck_assert_int_eq(ch_store_deployment_supersede_older(s, cert, cur), 0);

	ck_assert_int_eq(ch_store_deployment_get(s, old1, "nginx", &d), 0);
	ck_assert_str_eq(d.state, "superseded");
	ck_assert_int_eq(d.next_at, 0);
	ch_store_deployment_done(&d);
	ck_assert_int_eq(ch_store_deployment_get(s, old2, "nginx", &d), 0);
	ck_assert_str_eq(d.state, "superseded");
	ch_store_deployment_done(&d);
	ck_assert_int_eq(ch_store_deployment_get(s, old1, "haproxy", &d), 0);
	ck_assert_str_eq(d.state, "deployed");
	ck_assert_int_eq(d.next_at, 50);
	ch_store_deployment_done(&d);
	ck_assert_int_eq(ch_store_deployment_get(s, cur, "haproxy", &d), 0);
	ck_assert_str_eq(d.state, "pending");
	ch_store_deployment_done(&d);

	ck_assert_int_eq(ch_store_deployment_next_due(s, &due), 0);
	ck_assert_int_eq(due.issuance_id, cur);
	ck_assert_str_eq(due.target, "haproxy");
	ch_store_deployment_done(&due);

	ck_assert_int_eq(ch_store_deployment_foreach_for_issuance(s, cur, collect_deployment, &col),
			 0);
	ck_assert_int_eq(col.n, 2);
	ck_assert_str_eq(col.names[0], "dep.example:haproxy:pending");
	ck_assert_str_eq(col.names[1], "dep.example:nginx:deployed");

	ch_store_free(s);
}
END_TEST

struct event_log {
	int n;
	int64_t ids[16];
	char lines[16][128];
};

static int
collect_event(const struct ch_store_event *e, void *arg)
{
	struct event_log *l = arg;

	if (l->n < (int)ARRAY_SIZE(l->ids)) {
		l->ids[l->n] = e->id;
		snprintf(l->lines[l->n], sizeof(l->lines[0]), "%lld|%s|%s|%s|%s", (long long)e->at,
			 e->cert ? e->cert : "-", e->stage ? e->stage : "-", e->event,
			 e->detail ? e->detail : "-");
	}
	l->n++;
	return 0;
}

static int
collect_rehearsal(const struct ch_store_rehearsal *rh, void *arg)
{
	struct event_log *l = arg;

	if (l->n >= (int)ARRAY_SIZE(l->lines))
		return -E2BIG;
	l->ids[l->n] = rh->id;
	snprintf(l->lines[l->n], sizeof(l->lines[0]), "%s|%s|%s|%s|%s|%s|%s|%s", rh->cert, rh->ca,
		 rh->issuer, rh->trigger, rh->result, rh->stage ? rh->stage : "-",
		 rh->target ? rh->target : "-", rh->message ? rh->message : "-");
	l->n++;
	return 0;
}

START_TEST(test_rehearsals)
{
	struct ch_store *s = open_store();
	struct ch_store_rehearsal_summary sum;
	struct event_log l = {};
	struct ch_store_rehearsal rh = {
		.cert = "a.example", .ca = "prod", .issuer = "stage", .trigger = "scheduled",
		.started_at = 100, .finished_at = 110, .result = "failed", .stage = "deploy",
		.target = "nginx", .message = "configuration test failed",
	};

	ck_assert_int_eq(ch_store_rehearsal_add(s, &rh), 0);
	ck_assert_int_gt(rh.id, 0);
	rh = (struct ch_store_rehearsal){ .cert = "b.example", .ca = "prod", .trigger = "manual",
					  .started_at = 120, .finished_at = 125,
					  .result = "passed", .serial = "01" };
	ck_assert_int_eq(ch_store_rehearsal_add(s, &rh), 0);
	rh.result = NULL;
	ck_assert_int_eq(ch_store_rehearsal_add(s, &rh), -EINVAL);

	ck_assert_int_eq(ch_store_rehearsal_foreach(s, NULL, 0, collect_rehearsal, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_str_eq(l.lines[0], "b.example|prod|prod|manual|passed|-|-|-");
	ck_assert_str_eq(l.lines[1],
			 "a.example|prod|stage|scheduled|failed|deploy|nginx|configuration test failed");

	/* Failing: the newest of a.example failed; then a pass clears it. */
	l = (struct event_log){};
	ck_assert_int_eq(ch_store_rehearsal_foreach_failing(s, collect_rehearsal, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.lines[0],
			 "a.example|prod|stage|scheduled|failed|deploy|nginx|configuration test failed");
	ck_assert_int_eq(ch_store_rehearsal_summary(s, "prod", &sum), 0);
	ck_assert_int_eq(sum.last_run_at, 120);
	ck_assert_int_eq(sum.last_success_at, 125);
	ck_assert_int_eq(sum.last_scheduled_at, 100);

	rh = (struct ch_store_rehearsal){ .cert = "a.example", .ca = "prod", .trigger = "scheduled",
					  .started_at = 200, .finished_at = 201,
					  .result = "passed" };
	ck_assert_int_eq(ch_store_rehearsal_add(s, &rh), 0);
	l = (struct event_log){};
	ck_assert_int_eq(ch_store_rehearsal_foreach_failing(s, collect_rehearsal, &l), 0);
	ck_assert_int_eq(l.n, 0);
	l = (struct event_log){};
	ck_assert_int_eq(ch_store_rehearsal_foreach(s, "a.example", 1, collect_rehearsal, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.lines[0], "a.example|prod|prod|scheduled|passed|-|-|-");
	ck_assert_int_eq(ch_store_rehearsal_summary(s, "prod", &sum), 0);
	ck_assert_int_eq(sum.last_scheduled_at, 200);
	ck_assert_int_eq(ch_store_rehearsal_summary(s, "other", &sum), 0);
	ck_assert_int_eq(sum.last_run_at, 0);
	ch_store_free(s);
}
END_TEST

START_TEST(test_events)
{
	struct ch_store *s = open_store();
	struct event_log l = {};
	sqlite3 *db;

	ck_assert_int_eq(ch_store_event_add(s, 10, "a.example", "renew", "started", NULL), 0);
	ck_assert_int_eq(ch_store_event_add(s, 11, NULL, NULL, "daemon-start", "v0.1"), 0);
	ck_assert_int_eq(ch_store_event_add(s, 12, "b.example", "deploy", "deployed", "nginx"), 0);
	ck_assert_int_eq(ch_store_event_add(s, 13, "a.example", "renew", "issued", "serial 01"), 0);
	ck_assert_int_eq(ch_store_event_add(s, 14, NULL, NULL, NULL, NULL), -EINVAL);

	ck_assert_int_eq(ch_store_event_foreach(s, NULL, 0, collect_event, &l), 0);
	ck_assert_int_eq(l.n, 4);
	ck_assert_int_gt(l.ids[0], l.ids[1]);
	ck_assert_str_eq(l.lines[0], "13|a.example|renew|issued|serial 01");
	ck_assert_str_eq(l.lines[1], "12|b.example|deploy|deployed|nginx");
	ck_assert_str_eq(l.lines[2], "11|-|-|daemon-start|v0.1");
	ck_assert_str_eq(l.lines[3], "10|a.example|renew|started|-");

	l = (struct event_log){};
	ck_assert_int_eq(ch_store_event_foreach(s, "a.example", 0, collect_event, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_str_eq(l.lines[0], "13|a.example|renew|issued|serial 01");
	ck_assert_str_eq(l.lines[1], "10|a.example|renew|started|-");

	l = (struct event_log){};
	ck_assert_int_eq(ch_store_event_foreach(s, NULL, 2, collect_event, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_str_eq(l.lines[1], "12|b.example|deploy|deployed|nginx");

	l = (struct event_log){};
	ck_assert_int_eq(ch_store_event_foreach(s, "a.example", 1, collect_event, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.lines[0], "13|a.example|renew|issued|serial 01");

	/* The log is append-only, whoever tries to change it. */
	db = raw_open();
	ck_assert_int_ne(sqlite3_exec(db, "UPDATE events SET detail = 'x'", NULL, NULL, NULL),
			 SQLITE_OK);
	ck_assert_int_ne(sqlite3_exec(db, "DELETE FROM events", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_ne(sqlite3_exec(db, "DELETE FROM events WHERE id = 1", NULL, NULL, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(raw_int(db, "SELECT COUNT(*) FROM events"), 4);
	ck_assert_int_eq(raw_int(db, "SELECT COUNT(*) FROM events WHERE detail = 'x'"), 0);
	sqlite3_close(db);

	ch_store_free(s);
}
END_TEST

START_TEST(test_transactions)
{
	struct ch_store *s = open_store();
	struct ch_store_cert c = {};

	ck_assert_int_eq(ch_store_commit(s), -EINVAL);
	ck_assert_int_eq(ch_store_rollback(s), 0);

	ck_assert_int_eq(ch_store_begin(s), 0);
	ck_assert_int_eq(ch_store_begin(s), -EBUSY);
	add_cert(s, "gone.example", true, 5);
	ck_assert_int_eq(ch_store_event_add(s, 1, "gone.example", NULL, "added", NULL), 0);
	ck_assert_int_eq(ch_store_rollback(s), 0);
	ck_assert_int_eq(ch_store_cert_get(s, "gone.example", &c), -ENOENT);
	ck_assert_int_eq(ch_store_cert_next_due(s, &c), -ENOENT);

	ck_assert_int_eq(ch_store_begin(s), 0);
	add_cert(s, "kept.example", true, 5);
	ck_assert_int_eq(ch_store_commit(s), 0);
	ck_assert_int_eq(ch_store_cert_get(s, "kept.example", &c), 0);
	ch_store_cert_done(&c);

	/* A failed statement leaves the transaction usable. */
	ck_assert_int_eq(ch_store_begin(s), 0);
	add_cert(s, "also.example", true, 5);
	struct ch_store_cert dup = { .name = "kept.example" };
	ck_assert_int_eq(ch_store_cert_insert(s, &dup), -EEXIST);
	ck_assert_int_eq(ch_store_commit(s), 0);
	ck_assert_int_eq(ch_store_cert_get(s, "also.example", &c), 0);
	ch_store_cert_done(&c);

	ch_store_free(s);
}
END_TEST

START_TEST(test_busy)
{
	struct ch_store *s = open_store();
	struct ch_store_cert c = { .name = "busy.example" };
	sqlite3 *db;

	db = raw_open();
	sqlite3_busy_timeout(db, 0);
	ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	/* Waits out the store's busy timeout, then gives up. */
	ck_assert_int_eq(ch_store_begin(s), -EBUSY);
	ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	ck_assert_int_eq(ch_store_begin(s), 0);
	ck_assert_int_eq(ch_store_cert_insert(s, &c), 0);
	ck_assert_int_eq(ch_store_commit(s), 0);

	ch_store_free(s);
}
END_TEST

struct state_count {
	char lines[8][32];
	int n;
};

static void
count_state(const char *state, int64_t n, void *arg)
{
	struct state_count *sc = arg;

	if (sc->n < (int)ARRAY_SIZE(sc->lines))
		snprintf(sc->lines[sc->n], sizeof(sc->lines[0]), "%s=%lld", state, (long long)n);
	sc->n++;
}

START_TEST(test_count_by_state)
{
	struct ch_store *s = open_store();
	struct state_count sc = {};
	static const char *const states[] = { "valid", "new", "valid", "failing", "valid", "new" };
	char name[32];

	ck_assert_int_eq(ch_store_cert_count_by_state(s, count_state, &sc), 0);
	ck_assert_int_eq(sc.n, 0);

	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		struct ch_store_cert c = { .name = name, .state = (char *)states[i] };
		snprintf(name, sizeof(name), "c%zu.example", i);
		ck_assert_int_eq(ch_store_cert_insert(s, &c), 0);
	}
	ck_assert_int_eq(ch_store_cert_count_by_state(s, count_state, &sc), 0);
	ck_assert_int_eq(sc.n, 3);
	ck_assert_str_eq(sc.lines[0], "failing=1");
	ck_assert_str_eq(sc.lines[1], "new=2");
	ck_assert_str_eq(sc.lines[2], "valid=3");

	ch_store_free(s);
}
END_TEST

struct reenter {
	struct ch_store *s;
	int outer, inner;
};

static int
count_inner(const struct ch_store_cert *c, void *arg)
{
	struct reenter *re = arg;

	re->inner++;
	return 0;
}

/* Re-enters the same query and writes while the outer iteration runs. */
static int
reenter_outer(const struct ch_store_cert *c, void *arg)
{
	struct reenter *re = arg;
	struct ch_store_cert copy = {};

	re->outer++;
	ck_assert_int_eq(ch_store_cert_foreach(re->s, count_inner, re), 0);
	ck_assert_int_eq(ch_store_cert_get(re->s, c->name, &copy), 0);
	copy.failures++;
	ck_assert_int_eq(ch_store_cert_update(re->s, &copy), 0);
	ch_store_cert_done(&copy);
	return 0;
}

START_TEST(test_foreach_reentrant)
{
	struct ch_store *s = open_store();
	struct reenter re = { .s = s };
	struct ch_store_cert c = {};

	add_cert(s, "r1.example", true, 1);
	add_cert(s, "r2.example", true, 2);
	add_cert(s, "r3.example", true, 3);

	ck_assert_int_eq(ch_store_cert_foreach(s, reenter_outer, &re), 0);
	ck_assert_int_eq(re.outer, 3);
	ck_assert_int_eq(re.inner, 9);
	ck_assert_int_eq(ch_store_cert_get(s, "r2.example", &c), 0);
	ck_assert_int_eq(c.failures, 1);
	ch_store_cert_done(&c);

	ch_store_free(s);
}
END_TEST

#define BULK_N 100000

struct bulk {
	int64_t n, with_issuance, wanted;
	char last[64];
	bool sorted;
};

static int
bulk_cb(const struct ch_store_cert *c, void *arg)
{
	struct bulk *b = arg;

	if (b->last[0] && strcmp(b->last, c->name) >= 0)
		b->sorted = false;
	snprintf(b->last, sizeof(b->last), "%s", c->name);
	b->n++;
	if (c->wanted)
		b->wanted++;
	if (c->cur_serial) {
		b->with_issuance++;
		if (c->cur_not_after != c->cur_not_before + 1000)
			b->sorted = false;
	}
	return 0;
}

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST(test_bulk)
{
	struct ch_store *s = open_store();
	struct bulk b = { .sorted = true };
	struct ch_store_cert c = {};
	char name[64], idem[64], serial[32];
	double t0, t1, t2;

	t0 = now_sec();
	ck_assert_int_eq(ch_store_begin(s), 0);
	for (int i = 0; i < BULK_N; i++) {
		/* Reverse order so that insertion order differs from name order. */
		snprintf(name, sizeof(name), "host%06d.example.com", BULK_N - i);
		struct ch_store_cert in = {
			.name = name,
			.spec = "{}",
			.wanted = i % 7 != 0,
			.state = "valid",
			.next_at = 2000000000 - i,
		};
		ck_assert_int_eq(ch_store_cert_insert(s, &in), 0);
		if (i % 10 == 0) {
			snprintf(idem, sizeof(idem), "bulk-%d", i);
			snprintf(serial, sizeof(serial), "%08x", i);
			struct ch_store_issuance is = {
				.cert_id = in.id, .idem_key = idem, .serial = serial,
				.not_before = 1000 + i, .not_after = 2000 + i,
			};
			ck_assert_int_eq(ch_store_issuance_insert(s, &is), 0);
			in.current_issuance = is.id;
			ck_assert_int_eq(ch_store_cert_update(s, &in), 0);
		}
	}
	ck_assert_int_eq(ch_store_commit(s), 0);
	t1 = now_sec();

	ck_assert_int_eq(ch_store_cert_foreach(s, bulk_cb, &b), 0);
	t2 = now_sec();
	fprintf(stderr, "# %d certificates: insert %.3f s, foreach %.3f s\n", BULK_N, t1 - t0,
		t2 - t1);

	ck_assert_int_eq(b.n, BULK_N);
	ck_assert_int_eq(b.with_issuance, BULK_N / 10);
	ck_assert_int_eq(b.wanted, BULK_N - (BULK_N + 6) / 7);
	ck_assert(b.sorted);

	/* The latest wanted insert (i = BULK_N - 1, wanted) has the smallest next_at. */
	ck_assert_int_eq(ch_store_cert_next_due(s, &c), 0);
	ck_assert_int_eq(c.next_at, 2000000000 - (BULK_N - 1));
	ck_assert_str_eq(c.name, "host000001.example.com");
	ch_store_cert_done(&c);

	ck_assert_int_eq(ch_store_integrity_check(s), 0);
	ch_store_free(s);
}
END_TEST

static Suite *
store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc;

	tc = tcase_create("open");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_open_fresh);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_future_version);
	tcase_add_test(tc, test_not_a_database);
	suite_add_tcase(s, tc);

	tc = tcase_create("rows");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_cert_roundtrip);
	tcase_add_test(tc, test_cert_errors);
	tcase_add_test(tc, test_next_due);
	tcase_add_test(tc, test_query_plans);
	tcase_add_test(tc, test_issuances);
	tcase_add_test(tc, test_deployments);
	tcase_add_test(tc, test_events);
	tcase_add_test(tc, test_rehearsals);
	tcase_add_test(tc, test_transactions);
	tcase_add_test(tc, test_count_by_state);
	tcase_add_test(tc, test_foreach_reentrant);
	suite_add_tcase(s, tc);

	tc = tcase_create("busy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_busy);
	suite_add_tcase(s, tc);

	tc = tcase_create("bulk");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_bulk);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(store_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
