/* SPDX-License-Identifier: MIT */
/*
 * The SQLite inventory: opening and migrating the database, the cache of
 * prepared statements, and the row <-> struct mapping for certificates,
 * issuances, deployments and the append-only event log. SQLite result
 * codes are translated to negative errno values here and nowhere else.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "certherd/err.h"
#include "certherd/log.h"
#include "certherd/macro.h"
#include "certherd/store.h"

/*
 * Schema migrations. Entry N takes the database from user_version N to
 * N + 1; each runs in its own transaction together with the version bump.
 * Never edit an entry once released: append a new one.
 *
 * The state CHECKs are OR chains rather than "state IN (...)": SQLite
 * builds a temporary b-tree for an IN list of three or more words in a
 * constraint, again for every row written.
 */
static const char *const store_migrations[] = {
	/* 0 -> 1: initial schema */
	"CREATE TABLE certificates ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT UNIQUE NOT NULL,"
	"  spec TEXT,"
	"  wanted INTEGER NOT NULL DEFAULT 1 CHECK (wanted IN (0, 1)),"
	"  state TEXT NOT NULL DEFAULT 'new'"
	"    CHECK (state = 'new' OR state = 'valid' OR state = 'issuing' OR"
	"           state = 'failing' OR state = 'retired'),"
	"  next_at INTEGER NOT NULL DEFAULT 0,"
	"  renew_at INTEGER NOT NULL DEFAULT 0,"
	"  failures INTEGER NOT NULL DEFAULT 0,"
	"  last_outcome TEXT,"
	"  last_error TEXT,"
	"  last_attempt_at INTEGER NOT NULL DEFAULT 0,"
	"  last_success_at INTEGER NOT NULL DEFAULT 0,"
	"  current_issuance INTEGER REFERENCES issuances(id),"
	"  pending_idem TEXT,"
	"  pending_key TEXT,"
	"  force INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),"
	"  created_at INTEGER NOT NULL DEFAULT 0,"
	"  updated_at INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX certificates_next_at ON certificates(next_at)"
	"  WHERE wanted = 1 AND next_at > 0;"
	"CREATE TABLE issuances ("
	"  id INTEGER PRIMARY KEY,"
	"  cert_id INTEGER NOT NULL REFERENCES certificates(id),"
	"  serial TEXT,"
	"  fingerprint TEXT,"
	"  not_before INTEGER NOT NULL DEFAULT 0,"
	"  not_after INTEGER NOT NULL DEFAULT 0,"
	"  issued_at INTEGER NOT NULL DEFAULT 0,"
	"  ca TEXT,"
	"  idem_key TEXT UNIQUE NOT NULL,"
	"  cert_pem TEXT,"
	"  chain_pem TEXT,"
	"  key_path TEXT,"
	"  revoked_at INTEGER NOT NULL DEFAULT 0,"
	"  revocation_reason TEXT,"
	"  adopted INTEGER NOT NULL DEFAULT 0 CHECK (adopted IN (0, 1))"
	");"
	"CREATE INDEX issuances_cert ON issuances(cert_id, id);"
	"CREATE INDEX issuances_serial ON issuances(serial);"
	"CREATE TABLE deployments ("
	"  id INTEGER PRIMARY KEY,"
	"  issuance_id INTEGER NOT NULL REFERENCES issuances(id),"
	"  target TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'pending'"
	"    CHECK (state = 'pending' OR state = 'deployed' OR state = 'failed' OR"
	"           state = 'superseded'),"
	"  attempted_at INTEGER NOT NULL DEFAULT 0,"
	"  succeeded_at INTEGER NOT NULL DEFAULT 0,"
	"  verified_at INTEGER NOT NULL DEFAULT 0,"
	"  next_at INTEGER NOT NULL DEFAULT 0,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  UNIQUE (issuance_id, target)"
	");"
	"CREATE INDEX deployments_next_at ON deployments(next_at)"
	"  WHERE state NOT IN ('deployed', 'superseded') AND next_at > 0;"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  at INTEGER NOT NULL,"
	"  cert TEXT,"
	"  stage TEXT,"
	"  event TEXT NOT NULL,"
	"  detail TEXT"
	");"
	"CREATE INDEX events_cert ON events(cert, id);"
	"CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
	"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
	"CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
	"  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;",
	/* 1 -> 2: endpoints verified by a TLS handshake */
	"CREATE TABLE endpoints ("
	"  id INTEGER PRIMARY KEY,"
	"  cert_id INTEGER NOT NULL REFERENCES certificates(id),"
	"  endpoint TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'unknown'"
	"    CHECK (state = 'unknown' OR state = 'verified' OR state = 'pending' OR"
	"           state = 'stale' OR state = 'foreign' OR state = 'unreachable' OR"
	"           state = 'handshake-error'),"
	"  serial TEXT,"
	"  fingerprint TEXT,"
	"  not_after INTEGER NOT NULL DEFAULT 0,"
	"  checked_at INTEGER NOT NULL DEFAULT 0,"
	"  state_since INTEGER NOT NULL DEFAULT 0,"
	"  verified_at INTEGER NOT NULL DEFAULT 0,"
	"  next_at INTEGER NOT NULL DEFAULT 0,"
	"  message TEXT,"
	"  UNIQUE (cert_id, endpoint)"
	");"
	"CREATE INDEX endpoints_next_at ON endpoints(next_at) WHERE next_at > 0;",
	/*
	 * 2 -> 3: the current issuance's serial and validity kept on the
	 * certificate row, so that reading certificates (start-up, list,
	 * status) does not touch the much larger issuance rows.
	 */
	"ALTER TABLE certificates ADD COLUMN cur_serial TEXT;"
	"ALTER TABLE certificates ADD COLUMN cur_not_before INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE certificates ADD COLUMN cur_not_after INTEGER NOT NULL DEFAULT 0;"
	"UPDATE certificates SET"
	"  cur_serial = (SELECT serial FROM issuances i WHERE i.id = current_issuance),"
	"  cur_not_before = coalesce((SELECT not_before FROM issuances i"
	"                             WHERE i.id = current_issuance), 0),"
	"  cur_not_after = coalesce((SELECT not_after FROM issuances i"
	"                            WHERE i.id = current_issuance), 0);"
	"CREATE TRIGGER certificates_current_update AFTER UPDATE OF current_issuance"
	"  ON certificates WHEN NEW.current_issuance IS NOT OLD.current_issuance BEGIN"
	"  UPDATE certificates SET"
	"    cur_serial = (SELECT serial FROM issuances WHERE id = NEW.current_issuance),"
	"    cur_not_before = coalesce((SELECT not_before FROM issuances"
	"                               WHERE id = NEW.current_issuance), 0),"
	"    cur_not_after = coalesce((SELECT not_after FROM issuances"
	"                              WHERE id = NEW.current_issuance), 0)"
	"  WHERE id = NEW.id;"
	"END;"
	"CREATE TRIGGER certificates_current_insert AFTER INSERT ON certificates"
	"  WHEN NEW.current_issuance IS NOT NULL BEGIN"
	"  UPDATE certificates SET"
	"    cur_serial = (SELECT serial FROM issuances WHERE id = NEW.current_issuance),"
	"    cur_not_before = coalesce((SELECT not_before FROM issuances"
	"                               WHERE id = NEW.current_issuance), 0),"
	"    cur_not_after = coalesce((SELECT not_after FROM issuances"
	"                              WHERE id = NEW.current_issuance), 0)"
	"  WHERE id = NEW.id;"
	"END;",
	/*
	 * 3 -> 4: the last CRL published per CA (its number only ever grows),
	 * and revoked issuances found per CA without a scan.
	 */
	"CREATE TABLE crls ("
	"  ca TEXT PRIMARY KEY,"
	"  number INTEGER NOT NULL DEFAULT 0,"
	"  this_update INTEGER NOT NULL DEFAULT 0,"
	"  next_update INTEGER NOT NULL DEFAULT 0,"
	"  der BLOB"
	");"
	"CREATE INDEX issuances_revoked ON issuances(ca, not_after) WHERE revoked_at > 0;",
	/* 4 -> 5: open alert conditions and when they were last sent */
	"CREATE TABLE alerts ("
	"  key TEXT PRIMARY KEY,"
	"  kind TEXT NOT NULL,"
	"  cert TEXT,"
	"  subject TEXT,"
	"  level INTEGER NOT NULL DEFAULT 0,"
	"  started_at INTEGER NOT NULL,"
	"  last_sent_at INTEGER NOT NULL DEFAULT 0,"
	"  detail TEXT"
	");",
	/*
	 * 5 -> 6: CA failover. The CA of the certificate's `ca:` list the
	 * current renewal goes to, and its failed attempts there in a row.
	 */
	"ALTER TABLE certificates ADD COLUMN ca_active TEXT;"
	"ALTER TABLE certificates ADD COLUMN ca_failures INTEGER NOT NULL DEFAULT 0;",
	/*
	 * 6 -> 7: rehearsals (renew --dry-run and the rehearsal schedule):
	 * issuance and deployment into a scratch directory, never current.
	 */
	"CREATE TABLE rehearsals ("
	"  id INTEGER PRIMARY KEY,"
	"  cert TEXT NOT NULL,"
	"  ca TEXT NOT NULL,"
	"  issuer TEXT NOT NULL,"
	"  trigger TEXT NOT NULL,"
	"  started_at INTEGER NOT NULL,"
	"  finished_at INTEGER NOT NULL,"
	"  result TEXT NOT NULL,"
	"  stage TEXT,"
	"  target TEXT,"
	"  serial TEXT,"
	"  message TEXT"
	");"
	"CREATE INDEX rehearsals_cert ON rehearsals(cert, ca, id);"
	"CREATE INDEX rehearsals_ca ON rehearsals(ca, trigger, started_at);",
	/*
	 * 7 -> 8: what was spent of each CA's budget, per limit and
	 * registered domain. A renewal's certificate is counted (by its
	 * idempotency key, once) when it is sent, and taken back if it fails.
	 */
	"CREATE TABLE ca_usage ("
	"  id INTEGER PRIMARY KEY,"
	"  ca TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  domain TEXT NOT NULL,"
	"  at INTEGER NOT NULL,"
	"  cert TEXT,"
	"  idem TEXT,"
	"  UNIQUE (ca, kind, domain, idem)"
	");"
	"CREATE INDEX ca_usage_at ON ca_usage(ca, kind, domain, at);",
};

#define STORE_SCHEMA_VERSION ((int)ARRAY_SIZE(store_migrations))

#define STORE_NOW "CAST(strftime('%s', 'now') AS INTEGER)"

/* Column lists shared by the getters; the readers below follow this order. */
#define STORE_CERT_SELECT                                                      \
	"SELECT c.id, c.name, c.spec, c.wanted, c.state, c.next_at, c.renew_at, " \
	"c.failures, c.last_outcome, c.last_error, c.last_attempt_at, "          \
	"c.last_success_at, c.current_issuance, c.pending_idem, c.pending_key, " \
	"c.force, c.cur_serial, c.cur_not_before, c.cur_not_after, "             \
	"c.ca_active, c.ca_failures "                                            \
	"FROM certificates c "

#define STORE_ISSUANCE_SELECT                                                  \
	"SELECT id, cert_id, serial, fingerprint, not_before, not_after, "       \
	"issued_at, ca, idem_key, cert_pem, chain_pem, key_path, revoked_at, "   \
	"revocation_reason, adopted FROM issuances "

#define STORE_DEPLOYMENT_SELECT                                                \
	"SELECT d.id, d.issuance_id, d.target, d.state, d.attempted_at, "        \
	"d.succeeded_at, d.verified_at, d.next_at, d.attempts, d.last_error, "   \
	"c.name FROM deployments d "                                             \
	"LEFT JOIN issuances i ON i.id = d.issuance_id "                         \
	"LEFT JOIN certificates c ON c.id = i.cert_id "

#define STORE_ENDPOINT_SELECT                                                  \
	"SELECT e.id, e.cert_id, e.endpoint, e.state, e.serial, e.fingerprint, " \
	"e.not_after, e.checked_at, e.state_since, e.verified_at, e.next_at, "   \
	"e.message, c.name FROM endpoints e "                                    \
	"LEFT JOIN certificates c ON c.id = e.cert_id "

#define STORE_REHEARSAL_SELECT                                                 \
	"SELECT id, cert, ca, issuer, trigger, started_at, finished_at, result, " \
	"stage, target, serial, message FROM rehearsals "

enum store_sql {
	STORE_SQL_BEGIN,
	STORE_SQL_COMMIT,
	STORE_SQL_ROLLBACK,
	STORE_SQL_CERT_INSERT,
	STORE_SQL_CERT_UPDATE,
	STORE_SQL_CERT_GET,
	STORE_SQL_CERT_GET_BY_ID,
	STORE_SQL_CERT_FOREACH,
	STORE_SQL_CERT_PAGE,
	STORE_SQL_CERT_NEXT_DUE,
	STORE_SQL_CERT_COUNT_BY_STATE,
	STORE_SQL_ISSUANCE_INSERT,
	STORE_SQL_ISSUANCE_GET,
	STORE_SQL_ISSUANCE_GET_BY_IDEM,
	STORE_SQL_ISSUANCE_GET_BY_SERIAL,
	STORE_SQL_ISSUANCE_FOREACH_FOR_CERT,
	STORE_SQL_ISSUANCE_REVOKE,
	STORE_SQL_DEPLOYMENT_ENSURE,
	STORE_SQL_DEPLOYMENT_UPDATE,
	STORE_SQL_DEPLOYMENT_UPDATE_BY_KEY,
	STORE_SQL_DEPLOYMENT_GET,
	STORE_SQL_DEPLOYMENT_FOREACH_FOR_ISSUANCE,
	STORE_SQL_DEPLOYMENT_NEXT_DUE,
	STORE_SQL_DEPLOYMENT_SUPERSEDE_OLDER,
	STORE_SQL_DEPLOYMENT_RESET_LEASES,
	STORE_SQL_DEPLOYMENT_FOREACH_FAILED,
	STORE_SQL_ENDPOINT_ENSURE,
	STORE_SQL_ENDPOINT_GET,
	STORE_SQL_ENDPOINT_UPDATE,
	STORE_SQL_ENDPOINT_FOREACH_FOR_CERT,
	STORE_SQL_ENDPOINT_NEXT_DUE,
	STORE_SQL_ENDPOINT_FOREACH_PROBLEM,
	STORE_SQL_ENDPOINT_DUE_FOR_CERT,
	STORE_SQL_ENDPOINT_DELETE,
	STORE_SQL_EVENT_ADD,
	STORE_SQL_EVENT_FOREACH,
	STORE_SQL_EVENT_FOREACH_CERT,
	STORE_SQL_ISSUANCE_FOREACH_REVOKED,
	STORE_SQL_CRL_GET,
	STORE_SQL_CRL_PUT,
	STORE_SQL_ALERT_PUT,
	STORE_SQL_ALERT_DELETE,
	STORE_SQL_ALERT_FOREACH,
	STORE_SQL_REHEARSAL_ADD,
	STORE_SQL_REHEARSAL_FOREACH,
	STORE_SQL_REHEARSAL_FOREACH_CERT,
	STORE_SQL_REHEARSAL_FOREACH_FAILING,
	STORE_SQL_REHEARSAL_SUMMARY,
	STORE_SQL_USAGE_ADD,
	STORE_SQL_USAGE_DROP,
	STORE_SQL_USAGE_TIMES,
	STORE_SQL_USAGE_DOMAINS,
	STORE_SQL_USAGE_PRUNE,
	_STORE_SQL_MAX,
};

/*
 * Certificate parameters are numbered so that insert and update share
 * one binder: ?1 id (update only), ?2 name ... ?16 force, ?17 ca_active,
 * ?18 ca_failures.
 */
static const char *const store_sql[_STORE_SQL_MAX] = {
	[STORE_SQL_BEGIN] = "BEGIN IMMEDIATE",
	[STORE_SQL_COMMIT] = "COMMIT",
	[STORE_SQL_ROLLBACK] = "ROLLBACK",
	[STORE_SQL_CERT_INSERT] =
		"INSERT INTO certificates (name, spec, wanted, state, next_at, renew_at, "
		"failures, last_outcome, last_error, last_attempt_at, last_success_at, "
		"current_issuance, pending_idem, pending_key, force, ca_active, ca_failures, "
		"created_at, updated_at) "
		"VALUES (?2, ?3, ?4, COALESCE(?5, 'new'), ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
		"?13, ?14, ?15, ?16, ?17, ?18, " STORE_NOW ", " STORE_NOW ")",
	[STORE_SQL_CERT_UPDATE] =
		"UPDATE certificates SET name = COALESCE(?2, name), spec = ?3, wanted = ?4, "
		"state = COALESCE(?5, state), next_at = ?6, renew_at = ?7, failures = ?8, "
		"last_outcome = ?9, last_error = ?10, last_attempt_at = ?11, "
		"last_success_at = ?12, current_issuance = ?13, pending_idem = ?14, "
		"pending_key = ?15, force = ?16, ca_active = ?17, ca_failures = ?18, "
		"updated_at = " STORE_NOW " WHERE id = ?1",
	[STORE_SQL_CERT_GET] = STORE_CERT_SELECT "WHERE c.name = ?1",
	[STORE_SQL_CERT_GET_BY_ID] = STORE_CERT_SELECT "WHERE c.id = ?1",
	[STORE_SQL_CERT_FOREACH] = STORE_CERT_SELECT "ORDER BY c.name",
	[STORE_SQL_CERT_PAGE] = STORE_CERT_SELECT "WHERE c.name > ?1 ORDER BY c.name LIMIT ?2",
	/* The WHERE terms repeat the partial index's so the planner can use it. */
	[STORE_SQL_CERT_NEXT_DUE] =
		STORE_CERT_SELECT "WHERE c.wanted = 1 AND c.next_at > 0 "
		"ORDER BY c.next_at, c.id LIMIT 1",
	[STORE_SQL_CERT_COUNT_BY_STATE] =
		"SELECT state, COUNT(*) FROM certificates GROUP BY state ORDER BY state",
	[STORE_SQL_ISSUANCE_INSERT] =
		"INSERT INTO issuances (cert_id, serial, fingerprint, not_before, not_after, "
		"issued_at, ca, idem_key, cert_pem, chain_pem, key_path, revoked_at, "
		"revocation_reason, adopted) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
	[STORE_SQL_ISSUANCE_GET] = STORE_ISSUANCE_SELECT "WHERE id = ?1",
	[STORE_SQL_ISSUANCE_GET_BY_IDEM] = STORE_ISSUANCE_SELECT "WHERE idem_key = ?1",
	[STORE_SQL_ISSUANCE_GET_BY_SERIAL] =
		STORE_ISSUANCE_SELECT "WHERE serial = ?1 ORDER BY id DESC LIMIT 1",
	[STORE_SQL_ISSUANCE_FOREACH_FOR_CERT] =
		STORE_ISSUANCE_SELECT "WHERE cert_id = ?1 ORDER BY id DESC LIMIT ?2",
	[STORE_SQL_ISSUANCE_REVOKE] =
		"UPDATE issuances SET revoked_at = ?2, revocation_reason = ?3 WHERE id = ?1",
	[STORE_SQL_DEPLOYMENT_ENSURE] =
		"INSERT OR IGNORE INTO deployments (issuance_id, target, state, next_at, attempts) "
		"VALUES (?1, ?2, 'pending', ?3, 0)",
	[STORE_SQL_DEPLOYMENT_UPDATE] =
		"UPDATE deployments SET state = COALESCE(?4, state), attempted_at = ?5, "
		"succeeded_at = ?6, verified_at = ?7, next_at = ?8, attempts = ?9, "
		"last_error = ?10 WHERE id = ?1",
	[STORE_SQL_DEPLOYMENT_UPDATE_BY_KEY] =
		"UPDATE deployments SET state = COALESCE(?4, state), attempted_at = ?5, "
		"succeeded_at = ?6, verified_at = ?7, next_at = ?8, attempts = ?9, "
		"last_error = ?10 WHERE issuance_id = ?2 AND target = ?3",
	[STORE_SQL_DEPLOYMENT_GET] =
		STORE_DEPLOYMENT_SELECT "WHERE d.issuance_id = ?1 AND d.target = ?2",
	[STORE_SQL_DEPLOYMENT_FOREACH_FOR_ISSUANCE] =
		STORE_DEPLOYMENT_SELECT "WHERE d.issuance_id = ?1 ORDER BY d.target",
	[STORE_SQL_DEPLOYMENT_NEXT_DUE] =
		STORE_DEPLOYMENT_SELECT
		"WHERE d.state NOT IN ('deployed', 'superseded') AND d.next_at > 0 "
		"ORDER BY d.next_at, d.id LIMIT 1",
	[STORE_SQL_DEPLOYMENT_SUPERSEDE_OLDER] =
		"UPDATE deployments SET state = 'superseded', next_at = 0 "
		"WHERE state != 'deployed' AND issuance_id IN "
		"(SELECT id FROM issuances WHERE cert_id = ?1 AND id != ?2)",
	/* Both repeat the partial index's terms so the planner can use it. */
	[STORE_SQL_DEPLOYMENT_RESET_LEASES] =
		"UPDATE deployments SET next_at = ?1 "
		"WHERE state NOT IN ('deployed', 'superseded') AND next_at > ?1 "
		"AND state = 'pending'",
	[STORE_SQL_DEPLOYMENT_FOREACH_FAILED] =
		STORE_DEPLOYMENT_SELECT
		"WHERE d.state NOT IN ('deployed', 'superseded') AND d.next_at > 0 "
		"AND (d.state = 'failed' OR d.attempts > 1) "
		"ORDER BY d.issuance_id DESC, d.target LIMIT 1000",
	[STORE_SQL_ENDPOINT_ENSURE] =
		"INSERT OR IGNORE INTO endpoints (cert_id, endpoint, state, next_at) "
		"VALUES (?1, ?2, 'unknown', ?3)",
	[STORE_SQL_ENDPOINT_GET] = STORE_ENDPOINT_SELECT "WHERE e.id = ?1",
	[STORE_SQL_ENDPOINT_UPDATE] =
		"UPDATE endpoints SET state = COALESCE(?2, state), serial = ?3, fingerprint = ?4, "
		"not_after = ?5, checked_at = ?6, state_since = ?7, verified_at = ?8, "
		"next_at = ?9, message = ?10 WHERE id = ?1",
	[STORE_SQL_ENDPOINT_FOREACH_FOR_CERT] =
		STORE_ENDPOINT_SELECT "WHERE e.cert_id = ?1 ORDER BY e.endpoint",
	[STORE_SQL_ENDPOINT_NEXT_DUE] =
		STORE_ENDPOINT_SELECT "WHERE e.next_at > 0 ORDER BY e.next_at, e.id LIMIT 1",
	[STORE_SQL_ENDPOINT_FOREACH_PROBLEM] =
		STORE_ENDPOINT_SELECT "WHERE e.state != 'verified' AND c.wanted = 1 "
		"ORDER BY e.state_since, e.id LIMIT 1000",
	[STORE_SQL_ENDPOINT_DUE_FOR_CERT] =
		"UPDATE endpoints SET next_at = ?2 WHERE cert_id = ?1",
	[STORE_SQL_ENDPOINT_DELETE] = "DELETE FROM endpoints WHERE id = ?1",
	[STORE_SQL_EVENT_ADD] =
		"INSERT INTO events (at, cert, stage, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
	[STORE_SQL_EVENT_FOREACH] =
		"SELECT id, at, cert, stage, event, detail FROM events "
		"ORDER BY id DESC LIMIT ?1",
	[STORE_SQL_EVENT_FOREACH_CERT] =
		"SELECT id, at, cert, stage, event, detail FROM events "
		"WHERE cert = ?2 ORDER BY id DESC LIMIT ?1",
	/* Repeats the partial index's term so the planner can use it. */
	[STORE_SQL_ISSUANCE_FOREACH_REVOKED] =
		STORE_ISSUANCE_SELECT "WHERE revoked_at > 0 AND ca = ?1 AND not_after >= ?2 "
		"AND adopted = 0 ORDER BY id",
	[STORE_SQL_CRL_GET] =
		"SELECT ca, number, this_update, next_update, der FROM crls WHERE ca = ?1",
	[STORE_SQL_CRL_PUT] =
		"INSERT INTO crls (ca, number, this_update, next_update, der) "
		"VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (ca) DO UPDATE SET "
		"number = excluded.number, this_update = excluded.this_update, "
		"next_update = excluded.next_update, der = excluded.der",
	[STORE_SQL_ALERT_PUT] =
		"INSERT OR REPLACE INTO alerts (key, kind, cert, subject, level, started_at, "
		"last_sent_at, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[STORE_SQL_ALERT_DELETE] = "DELETE FROM alerts WHERE key = ?1",
	[STORE_SQL_ALERT_FOREACH] =
		"SELECT key, kind, cert, subject, level, started_at, last_sent_at, detail "
		"FROM alerts ORDER BY key",
	[STORE_SQL_REHEARSAL_ADD] =
		"INSERT INTO rehearsals (cert, ca, issuer, trigger, started_at, finished_at, "
		"result, stage, target, serial, message) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[STORE_SQL_REHEARSAL_FOREACH] =
		STORE_REHEARSAL_SELECT "ORDER BY id DESC LIMIT ?1",
	[STORE_SQL_REHEARSAL_FOREACH_CERT] =
		STORE_REHEARSAL_SELECT "WHERE cert = ?2 ORDER BY id DESC LIMIT ?1",
	/* The newest rehearsal of each certificate and CA, when it failed. */
	[STORE_SQL_REHEARSAL_FOREACH_FAILING] =
		STORE_REHEARSAL_SELECT "WHERE id IN (SELECT max(id) FROM rehearsals "
		"GROUP BY cert, ca) AND result = 'failed' ORDER BY ca, cert LIMIT 1000",
	[STORE_SQL_REHEARSAL_SUMMARY] =
		"SELECT max(started_at), "
		"max(CASE WHEN result = 'passed' THEN finished_at END), "
		"max(CASE WHEN trigger = 'scheduled' THEN started_at END) "
		"FROM rehearsals WHERE ca = ?1",
	[STORE_SQL_USAGE_ADD] =
		"INSERT OR IGNORE INTO ca_usage (ca, kind, domain, at, cert, idem) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[STORE_SQL_USAGE_DROP] = "DELETE FROM ca_usage WHERE ca = ?1 AND kind = ?2 AND idem = ?3",
	[STORE_SQL_USAGE_TIMES] =
		"SELECT at FROM ca_usage WHERE ca = ?1 AND kind = ?2 AND domain = ?3 AND at > ?4 "
		"AND idem IS NOT ?5 ORDER BY at",
	[STORE_SQL_USAGE_DOMAINS] =
		"SELECT DISTINCT domain FROM ca_usage WHERE ca = ?1 AND kind = ?2 AND at > ?3 "
		"ORDER BY domain",
	[STORE_SQL_USAGE_PRUNE] = "DELETE FROM ca_usage WHERE at <= ?1",
};

struct ch_store {
	sqlite3 *db;
	char *path;
	int version;
	sqlite3_stmt *stmts[_STORE_SQL_MAX];
};

/*
 * One use of a statement: the cached one, or a private copy when the
 * cached one is still stepping (a callback re-entering the same query).
 */
struct store_query {
	struct ch_store *store;
	sqlite3_stmt *stmt;
	const char *what;
	bool cached;
	int rc; /* first binding failure */
};

static int
store_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static int
store_error(struct ch_store *s, int rc, const char *what)
{
	ch_log_debug("store: %s: %s (%d)", what, sqlite3_errmsg(s->db), rc);
	return store_errno(rc);
}

static int
store_query_start(struct ch_store *s, enum store_sql id, struct store_query *q,
		  const char *what)
{
	sqlite3_stmt **slot = &s->stmts[id];
	int rc;

	*q = (struct store_query){ .store = s, .what = what };

	if (*slot && !sqlite3_stmt_busy(*slot)) {
		q->stmt = *slot;
		q->cached = true;
		return 0;
	}
	if (!*slot) {
		rc = sqlite3_prepare_v3(s->db, store_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					slot, NULL);
		if (rc != SQLITE_OK)
			return store_error(s, rc, what);
		q->stmt = *slot;
		q->cached = true;
		return 0;
	}
	rc = sqlite3_prepare_v3(s->db, store_sql[id], -1, 0, &q->stmt, NULL);
	if (rc != SQLITE_OK)
		return store_error(s, rc, what);
	return 0;
}

#define store_query(s, id, q) store_query_start(s, id, q, __func__)

static void
store_query_end(struct store_query *q)
{
	if (!q->stmt)
		return;
	if (q->cached) {
		sqlite3_reset(q->stmt);
		sqlite3_clear_bindings(q->stmt);
	} else
		sqlite3_finalize(q->stmt);
	q->stmt = NULL;
}

#define _cleanup_query_ _cleanup_(store_query_end)

static void
store_bind_int(struct store_query *q, int idx, int64_t v)
{
	if (q->rc == SQLITE_OK)
		q->rc = sqlite3_bind_int64(q->stmt, idx, v);
}

/* Binds a row id, with 0 ("none") stored as NULL. */
static void
store_bind_ref(struct store_query *q, int idx, int64_t v)
{
	if (q->rc != SQLITE_OK)
		return;
	if (v == 0)
		q->rc = sqlite3_bind_null(q->stmt, idx);
	else
		q->rc = sqlite3_bind_int64(q->stmt, idx, v);
}

/* The string must outlive the step; NULL binds SQL NULL. */
static void
store_bind_text(struct store_query *q, int idx, const char *v)
{
	if (q->rc != SQLITE_OK)
		return;
	if (v)
		q->rc = sqlite3_bind_text(q->stmt, idx, v, -1, SQLITE_STATIC);
	else
		q->rc = sqlite3_bind_null(q->stmt, idx);
}

/* LIMIT value: 0 or less means no limit. */
static void
store_bind_limit(struct store_query *q, int idx, int limit)
{
	store_bind_int(q, idx, limit > 0 ? limit : -1);
}

/* Returns 1 on a row, 0 when done, a negative errno on failure. */
static int
store_query_step(struct store_query *q)
{
	int rc;

	if (q->rc != SQLITE_OK)
		return store_error(q->store, q->rc, q->what);
	rc = sqlite3_step(q->stmt);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_error(q->store, rc, q->what);
}

/* Runs a statement without result rows; returns the number of changed rows. */
static int
store_query_exec(struct store_query *q)
{
	int r;

	r = store_query_step(q);
	if (r < 0)
		return r;
	return sqlite3_changes(q->store->db);
}

/*
 * Reads a text column. With copy the result is a new string, otherwise
 * it points into the statement and lives until the next step or reset.
 */
static int
store_col_text(sqlite3_stmt *st, int i, bool copy, char **ret)
{
	const char *v;

	*ret = NULL;
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return 0;
	v = (const char *)sqlite3_column_text(st, i);
	if (!v)
		return -ENOMEM;
	if (!copy) {
		*ret = (char *)v;
		return 0;
	}
	*ret = strdup(v);
	return *ret ? 0 : -ENOMEM;
}

static int
store_exec(struct ch_store *s, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		ch_log_debug("store: %s: %s (%d)", what, msg ? msg : sqlite3_errstr(rc), rc);
		sqlite3_free(msg);
		return store_errno(rc);
	}
	return 0;
}

/* Runs a one-row PRAGMA and copies its first column into buf. */
static int
store_pragma(struct ch_store *s, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st = NULL;
	const char *v;
	int rc, r = 0;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_error(s, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		v = (const char *)sqlite3_column_text(st, 0);
		snprintf(buf, len, "%s", v ? v : "");
	} else if (rc == SQLITE_DONE)
		buf[0] = '\0';
	else
		r = store_error(s, rc, sql);
	sqlite3_finalize(st);
	return r;
}

static int
store_user_version(struct ch_store *s, int *ret)
{
	char buf[32];
	int r;

	r = store_pragma(s, "PRAGMA user_version", buf, sizeof(buf));
	if (r < 0)
		return r;
	*ret = atoi(buf);
	return 0;
}

static int
store_migrate(struct ch_store *s, struct ch_err *reterr)
{
	char sql[64];
	int version, r;

	r = store_user_version(s, &version);
	if (r < 0)
		return ch_err_set(reterr, r, "Failed to read the schema version of '%s'", s->path);

	while (version != STORE_SCHEMA_VERSION) {
		if (version > STORE_SCHEMA_VERSION || version < 0)
			break;

		r = store_exec(s, "BEGIN IMMEDIATE", "migrate");
		if (r < 0)
			return ch_err_set(reterr, r, "Failed to lock '%s' for migration", s->path);
		/* Another process may have migrated while we waited for the lock. */
		r = store_user_version(s, &version);
		if (r < 0 || version >= STORE_SCHEMA_VERSION || version < 0) {
			(void)store_exec(s, "ROLLBACK", "migrate");
			if (r < 0)
				return ch_err_set(reterr, r, "Failed to read the schema version of '%s'",
						  s->path);
			continue;
		}

		ch_log_debug("store: migrating '%s' to schema version %d", s->path, version + 1);
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
		r = store_exec(s, store_migrations[version], "migrate");
		if (r >= 0)
			r = store_exec(s, sql, "migrate");
		if (r >= 0)
			r = store_exec(s, "COMMIT", "migrate");
		if (r < 0) {
			if (!sqlite3_get_autocommit(s->db))
				(void)store_exec(s, "ROLLBACK", "migrate");
			return ch_err_set(reterr, r, "Failed to migrate '%s' to schema version %d",
					  s->path, version + 1);
		}
		version++;
	}

	if (version < 0)
		return ch_err_set(reterr, -ENOTSUP,
				  "Database '%s' has an invalid schema version %d; refusing to open it",
				  s->path, version);
	if (version != STORE_SCHEMA_VERSION)
		return ch_err_set(reterr, -ENOTSUP,
				  "Database '%s' has schema version %d, newer than the %d this build "
				  "supports; refusing to open it",
				  s->path, version, STORE_SCHEMA_VERSION);
	s->version = version;
	return 0;
}

/* Creates the database file 0600 if it does not exist yet, whatever the umask. */
static int
store_create_file(const char *path, struct ch_err *reterr)
{
	int fd, r;

	if (streq(path, ":memory:"))
		return 0;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		r = -errno;
		return ch_err_set(reterr, r, "Failed to create '%s': %s", path, strerror(-r));
	}
	if (fchmod(fd, 0600) < 0) {
		r = -errno;
		close(fd);
		return ch_err_set(reterr, r, "Failed to set the mode of '%s': %s", path,
				  strerror(-r));
	}
	close(fd);
	return 0;
}

int
ch_store_open(const char *path, struct ch_store **ret, struct ch_err *reterr)
{
	struct ch_store *s;
	char mode[32];
	int rc, r;

	assert(path);
	assert(ret);

	r = store_create_file(path, reterr);
	if (r < 0)
		return r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return ch_err_set(reterr, -ENOMEM, "Out of memory");
	s->path = strdup(path);
	if (!s->path) {
		ch_store_free(s);
		return ch_err_set(reterr, -ENOMEM, "Out of memory");
	}

	rc = sqlite3_open_v2(path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = s->db ? store_error(s, rc, "open") : store_errno(rc);
		ch_err_set(reterr, r, "Failed to open database '%s': %s", path, sqlite3_errstr(rc));
		ch_store_free(s);
		return r;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);

	r = store_pragma(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
	if (r < 0) {
		ch_err_set(reterr, r, "Failed to open database '%s': %s", path,
			   r == -EIO ? "not a usable SQLite database" : strerror(-r));
		ch_store_free(s);
		return r;
	}
	if (!streq(mode, "wal") && !streq(path, ":memory:")) {
		ch_err_set(reterr, -EIO, "Failed to enable WAL journaling on '%s' (mode is '%s')",
			   path, mode);
		ch_store_free(s);
		return -EIO;
	}
	r = store_exec(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", "open");
	if (r < 0) {
		ch_err_set(reterr, r, "Failed to configure database '%s'", path);
		ch_store_free(s);
		return r;
	}

	r = store_migrate(s, reterr);
	if (r < 0) {
		ch_store_free(s);
		return r;
	}

	*ret = s;
	return 0;
}

struct ch_store *
ch_store_free(struct ch_store *s)
{
	int rc;

	if (!s)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(s->stmts); i++)
		sqlite3_finalize(s->stmts[i]);
	if (s->db) {
		rc = sqlite3_close(s->db);
		if (rc != SQLITE_OK) {
			ch_log_debug("store: close '%s': %s (%d)", s->path, sqlite3_errmsg(s->db), rc);
			sqlite3_close_v2(s->db);
		}
	}
	free(s->path);
	free(s);
	return NULL;
}

void
ch_store_set_busy_timeout(struct ch_store *s, int msec)
{
	assert(s);
	sqlite3_busy_timeout(s->db, msec);
}

int
ch_store_schema_version(struct ch_store *s)
{
	assert(s);
	return s->version;
}

int
ch_store_begin(struct ch_store *s)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (!sqlite3_get_autocommit(s->db)) {
		ch_log_debug("store: begin: a transaction is already open");
		return -EBUSY;
	}
	r = store_query(s, STORE_SQL_BEGIN, &q);
	if (r < 0)
		return r;
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/* Fails with -EINVAL when no transaction is open; on failure the transaction stays open. */
int
ch_store_commit(struct ch_store *s)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (sqlite3_get_autocommit(s->db)) {
		ch_log_debug("store: commit: no transaction is open");
		return -EINVAL;
	}
	r = store_query(s, STORE_SQL_COMMIT, &q);
	if (r < 0)
		return r;
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/* A no-op returning 0 when no transaction is open (e.g. SQLite already rolled back). */
int
ch_store_rollback(struct ch_store *s)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (sqlite3_get_autocommit(s->db))
		return 0;
	r = store_query(s, STORE_SQL_ROLLBACK, &q);
	if (r < 0)
		return r;
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_integrity_check(struct ch_store *s)
{
	sqlite3_stmt *st = NULL;
	const char *v;
	bool ok = false;
	int rc, r = 0, n = 0;

	assert(s);
	rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_error(s, rc, "integrity_check");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		v = (const char *)sqlite3_column_text(st, 0);
		if (n++ == 0 && v && streq(v, "ok"))
			ok = true;
		else {
			ok = false;
			if (n <= 10)
				ch_log_debug("store: integrity_check '%s': %s", s->path, v ? v : "?");
		}
	}
	if (rc != SQLITE_DONE)
		r = store_error(s, rc, "integrity_check");
	sqlite3_finalize(st);
	if (r < 0)
		return r;
	return ok ? 0 : -EIO;
}

/* Certificates */

void
ch_store_cert_done(struct ch_store_cert *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->spec);
	free(c->state);
	free(c->last_outcome);
	free(c->last_error);
	free(c->pending_idem);
	free(c->pending_key);
	free(c->cur_serial);
	free(c->ca_active);
	*c = (struct ch_store_cert){};
}

static int
store_cert_read(sqlite3_stmt *st, bool copy, struct ch_store_cert *c)
{
	int i = 0, r = 0;

	*c = (struct ch_store_cert){};
	c->id = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &c->name);
	r = r ?: store_col_text(st, i++, copy, &c->spec);
	c->wanted = sqlite3_column_int(st, i++) != 0;
	r = r ?: store_col_text(st, i++, copy, &c->state);
	c->next_at = sqlite3_column_int64(st, i++);
	c->renew_at = sqlite3_column_int64(st, i++);
	c->failures = sqlite3_column_int(st, i++);
	r = r ?: store_col_text(st, i++, copy, &c->last_outcome);
	r = r ?: store_col_text(st, i++, copy, &c->last_error);
	c->last_attempt_at = sqlite3_column_int64(st, i++);
	c->last_success_at = sqlite3_column_int64(st, i++);
	c->current_issuance = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &c->pending_idem);
	r = r ?: store_col_text(st, i++, copy, &c->pending_key);
	c->force = sqlite3_column_int(st, i++) != 0;
	r = r ?: store_col_text(st, i++, copy, &c->cur_serial);
	c->cur_not_before = sqlite3_column_int64(st, i++);
	c->cur_not_after = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &c->ca_active);
	c->ca_failures = sqlite3_column_int(st, i++);
	if (r < 0 && copy)
		ch_store_cert_done(c);
	return r;
}

static void
store_cert_bind(struct store_query *q, const struct ch_store_cert *c)
{
	store_bind_text(q, 2, c->name);
	store_bind_text(q, 3, c->spec);
	store_bind_int(q, 4, c->wanted);
	store_bind_text(q, 5, c->state);
	store_bind_int(q, 6, c->next_at);
	store_bind_int(q, 7, c->renew_at);
	store_bind_int(q, 8, c->failures);
	store_bind_text(q, 9, c->last_outcome);
	store_bind_text(q, 10, c->last_error);
	store_bind_int(q, 11, c->last_attempt_at);
	store_bind_int(q, 12, c->last_success_at);
	store_bind_ref(q, 13, c->current_issuance);
	store_bind_text(q, 14, c->pending_idem);
	store_bind_text(q, 15, c->pending_key);
	store_bind_int(q, 16, c->force);
	store_bind_text(q, 17, c->ca_active);
	store_bind_int(q, 18, c->ca_failures);
}

int
ch_store_cert_insert(struct ch_store *s, struct ch_store_cert *c)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(c);
	if (!c->name)
		return -EINVAL;
	r = store_query(s, STORE_SQL_CERT_INSERT, &q);
	if (r < 0)
		return r;
	store_cert_bind(&q, c);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	c->id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

/* A NULL name or state keeps the stored value. -ENOENT if c->id does not exist. */
int
ch_store_cert_update(struct ch_store *s, const struct ch_store_cert *c)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(c);
	r = store_query(s, STORE_SQL_CERT_UPDATE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, c->id);
	store_cert_bind(&q, c);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	return r == 0 ? -ENOENT : 0;
}

/* Runs a certificate query expected to return at most one row into ret. */
static int
store_cert_get_one(struct store_query *q, struct ch_store_cert *ret)
{
	int r;

	*ret = (struct ch_store_cert){};
	r = store_query_step(q);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	return store_cert_read(q->stmt, true, ret);
}

int
ch_store_cert_get(struct ch_store *s, const char *name, struct ch_store_cert *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(name);
	assert(ret);
	r = store_query(s, STORE_SQL_CERT_GET, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, name);
	return store_cert_get_one(&q, ret);
}

int
ch_store_cert_get_by_id(struct ch_store *s, int64_t id, struct ch_store_cert *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(ret);
	r = store_query(s, STORE_SQL_CERT_GET_BY_ID, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, id);
	return store_cert_get_one(&q, ret);
}

int
ch_store_cert_next_due(struct ch_store *s, struct ch_store_cert *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(ret);
	r = store_query(s, STORE_SQL_CERT_NEXT_DUE, &q);
	if (r < 0)
		return r;
	return store_cert_get_one(&q, ret);
}

/*
 * The struct passed to fn points into SQLite's row buffer: its strings are
 * valid only during the callback. Returns 0, or fn's negative return.
 */
int
ch_store_cert_foreach(struct ch_store *s,
		      int (*fn)(const struct ch_store_cert *c, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_cert c;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_CERT_FOREACH, &q);
	if (r < 0)
		return r;
	while ((r = store_query_step(&q)) > 0) {
		r = store_cert_read(q.stmt, false, &c);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&c, arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_cert_foreach_page(struct ch_store *s, const char *after, int limit,
			   int (*fn)(const struct ch_store_cert *c, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_cert c;
	int r, n = 0;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_CERT_PAGE, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, after ? after : "");
	store_bind_int(&q, 2, limit);
	while ((r = store_query_step(&q)) > 0) {
		r = store_cert_read(q.stmt, false, &c);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&c, arg);
		if (r < 0)
			return r;
		n++;
	}
	return r < 0 ? r : n;
}

int
ch_store_cert_count_by_state(struct ch_store *s,
			     void (*fn)(const char *state, int64_t n, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	const char *state;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_CERT_COUNT_BY_STATE, &q);
	if (r < 0)
		return r;
	while ((r = store_query_step(&q)) > 0) {
		state = (const char *)sqlite3_column_text(q.stmt, 0);
		fn(state ? state : "", sqlite3_column_int64(q.stmt, 1), arg);
	}
	return r;
}

/* Issuances */

void
ch_store_issuance_done(struct ch_store_issuance *i)
{
	if (!i)
		return;
	free(i->serial);
	free(i->fingerprint);
	free(i->ca);
	free(i->idem_key);
	free(i->cert_pem);
	free(i->chain_pem);
	free(i->key_path);
	free(i->revocation_reason);
	*i = (struct ch_store_issuance){};
}

static int
store_issuance_read(sqlite3_stmt *st, bool copy, struct ch_store_issuance *is)
{
	int i = 0, r = 0;

	*is = (struct ch_store_issuance){};
	is->id = sqlite3_column_int64(st, i++);
	is->cert_id = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &is->serial);
	r = r ?: store_col_text(st, i++, copy, &is->fingerprint);
	is->not_before = sqlite3_column_int64(st, i++);
	is->not_after = sqlite3_column_int64(st, i++);
	is->issued_at = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &is->ca);
	r = r ?: store_col_text(st, i++, copy, &is->idem_key);
	r = r ?: store_col_text(st, i++, copy, &is->cert_pem);
	r = r ?: store_col_text(st, i++, copy, &is->chain_pem);
	r = r ?: store_col_text(st, i++, copy, &is->key_path);
	is->revoked_at = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &is->revocation_reason);
	is->adopted = sqlite3_column_int(st, i++) != 0;
	if (r < 0 && copy)
		ch_store_issuance_done(is);
	return r;
}

int
ch_store_issuance_insert(struct ch_store *s, struct ch_store_issuance *i)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(i);
	if (!i->idem_key)
		return -EINVAL;
	r = store_query(s, STORE_SQL_ISSUANCE_INSERT, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, i->cert_id);
	store_bind_text(&q, 2, i->serial);
	store_bind_text(&q, 3, i->fingerprint);
	store_bind_int(&q, 4, i->not_before);
	store_bind_int(&q, 5, i->not_after);
	store_bind_int(&q, 6, i->issued_at);
	store_bind_text(&q, 7, i->ca);
	store_bind_text(&q, 8, i->idem_key);
	store_bind_text(&q, 9, i->cert_pem);
	store_bind_text(&q, 10, i->chain_pem);
	store_bind_text(&q, 11, i->key_path);
	store_bind_int(&q, 12, i->revoked_at);
	store_bind_text(&q, 13, i->revocation_reason);
	store_bind_int(&q, 14, i->adopted);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	i->id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

static int
store_issuance_get_one(struct store_query *q, struct ch_store_issuance *ret)
{
	int r;

	*ret = (struct ch_store_issuance){};
	r = store_query_step(q);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	return store_issuance_read(q->stmt, true, ret);
}

int
ch_store_issuance_get(struct ch_store *s, int64_t id, struct ch_store_issuance *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(ret);
	r = store_query(s, STORE_SQL_ISSUANCE_GET, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, id);
	return store_issuance_get_one(&q, ret);
}

int
ch_store_issuance_get_by_idem(struct ch_store *s, const char *idem,
			      struct ch_store_issuance *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(idem);
	assert(ret);
	r = store_query(s, STORE_SQL_ISSUANCE_GET_BY_IDEM, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, idem);
	return store_issuance_get_one(&q, ret);
}

/* Serials are unique only per CA: the newest matching issuance wins. */
int
ch_store_issuance_get_by_serial(struct ch_store *s, const char *serial,
				struct ch_store_issuance *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(serial);
	assert(ret);
	r = store_query(s, STORE_SQL_ISSUANCE_GET_BY_SERIAL, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, serial);
	return store_issuance_get_one(&q, ret);
}

/* The struct passed to fn is valid only during the callback. */
int
ch_store_issuance_foreach_for_cert(struct ch_store *s, int64_t cert_id, int limit,
				   int (*fn)(const struct ch_store_issuance *i, void *arg),
				   void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_issuance is;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_ISSUANCE_FOREACH_FOR_CERT, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, cert_id);
	store_bind_limit(&q, 2, limit);
	while ((r = store_query_step(&q)) > 0) {
		r = store_issuance_read(q.stmt, false, &is);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&is, arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_issuance_revoke(struct ch_store *s, int64_t id, int64_t at, const char *reason)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ISSUANCE_REVOKE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, id);
	store_bind_int(&q, 2, at);
	store_bind_text(&q, 3, reason);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	return r == 0 ? -ENOENT : 0;
}

/* Deployments */

void
ch_store_deployment_done(struct ch_store_deployment *d)
{
	if (!d)
		return;
	free(d->target);
	free(d->state);
	free(d->last_error);
	free(d->cert_name);
	*d = (struct ch_store_deployment){};
}

static int
store_deployment_read(sqlite3_stmt *st, bool copy, struct ch_store_deployment *d)
{
	int i = 0, r = 0;

	*d = (struct ch_store_deployment){};
	d->id = sqlite3_column_int64(st, i++);
	d->issuance_id = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &d->target);
	r = r ?: store_col_text(st, i++, copy, &d->state);
	d->attempted_at = sqlite3_column_int64(st, i++);
	d->succeeded_at = sqlite3_column_int64(st, i++);
	d->verified_at = sqlite3_column_int64(st, i++);
	d->next_at = sqlite3_column_int64(st, i++);
	d->attempts = sqlite3_column_int(st, i++);
	r = r ?: store_col_text(st, i++, copy, &d->last_error);
	r = r ?: store_col_text(st, i++, copy, &d->cert_name);
	if (r < 0 && copy)
		ch_store_deployment_done(d);
	return r;
}

int
ch_store_deployment_ensure(struct ch_store *s, int64_t issuance_id, const char *target,
			   int64_t next_at)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (!target)
		return -EINVAL;
	r = store_query(s, STORE_SQL_DEPLOYMENT_ENSURE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, issuance_id);
	store_bind_text(&q, 2, target);
	store_bind_int(&q, 3, next_at);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/*
 * Writes state (NULL keeps it), the times, attempts and last_error of the
 * row d->id, or of (d->issuance_id, d->target) when d->id is 0.
 * -ENOENT if no such row.
 */
int
ch_store_deployment_update(struct ch_store *s, const struct ch_store_deployment *d)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(d);
	if (d->id == 0 && !d->target)
		return -EINVAL;
	r = store_query(s, d->id ? STORE_SQL_DEPLOYMENT_UPDATE : STORE_SQL_DEPLOYMENT_UPDATE_BY_KEY,
			&q);
	if (r < 0)
		return r;
	if (d->id) {
		store_bind_int(&q, 1, d->id);
	} else {
		store_bind_int(&q, 2, d->issuance_id);
		store_bind_text(&q, 3, d->target);
	}
	store_bind_text(&q, 4, d->state);
	store_bind_int(&q, 5, d->attempted_at);
	store_bind_int(&q, 6, d->succeeded_at);
	store_bind_int(&q, 7, d->verified_at);
	store_bind_int(&q, 8, d->next_at);
	store_bind_int(&q, 9, d->attempts);
	store_bind_text(&q, 10, d->last_error);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	return r == 0 ? -ENOENT : 0;
}

static int
store_deployment_get_one(struct store_query *q, struct ch_store_deployment *ret)
{
	int r;

	*ret = (struct ch_store_deployment){};
	r = store_query_step(q);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	return store_deployment_read(q->stmt, true, ret);
}

int
ch_store_deployment_get(struct ch_store *s, int64_t issuance_id, const char *target,
			struct ch_store_deployment *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(target);
	assert(ret);
	r = store_query(s, STORE_SQL_DEPLOYMENT_GET, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, issuance_id);
	store_bind_text(&q, 2, target);
	return store_deployment_get_one(&q, ret);
}

/* Ordered by target; the struct passed to fn is valid only during the callback. */
int
ch_store_deployment_foreach_for_issuance(struct ch_store *s, int64_t issuance_id,
					 int (*fn)(const struct ch_store_deployment *d, void *arg),
					 void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_deployment d;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_DEPLOYMENT_FOREACH_FOR_ISSUANCE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, issuance_id);
	while ((r = store_query_step(&q)) > 0) {
		r = store_deployment_read(q.stmt, false, &d);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&d, arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_deployment_next_due(struct ch_store *s, struct ch_store_deployment *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(ret);
	r = store_query(s, STORE_SQL_DEPLOYMENT_NEXT_DUE, &q);
	if (r < 0)
		return r;
	return store_deployment_get_one(&q, ret);
}

int
ch_store_deployment_supersede_older(struct ch_store *s, int64_t cert_id, int64_t issuance_id)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_DEPLOYMENT_SUPERSEDE_OLDER, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, cert_id);
	store_bind_int(&q, 2, issuance_id);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_deployment_reset_leases(struct ch_store *s, int64_t now)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_DEPLOYMENT_RESET_LEASES, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, now);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	return sqlite3_changes(s->db);
}

/* At most 1000 rows; the struct passed to fn is valid only during the callback. */
int
ch_store_deployment_foreach_failed(struct ch_store *s,
				   int (*fn)(const struct ch_store_deployment *d, void *arg),
				   void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_deployment d;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_DEPLOYMENT_FOREACH_FAILED, &q);
	if (r < 0)
		return r;
	while ((r = store_query_step(&q)) > 0) {
		r = store_deployment_read(q.stmt, false, &d);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&d, arg);
		if (r < 0)
			return r;
	}
	return r;
}

/* Endpoints */

void
ch_store_endpoint_done(struct ch_store_endpoint *e)
{
	if (!e)
		return;
	free(e->endpoint);
	free(e->state);
	free(e->serial);
	free(e->fingerprint);
	free(e->message);
	free(e->cert_name);
	*e = (struct ch_store_endpoint){};
}

static int
store_endpoint_read(sqlite3_stmt *st, bool copy, struct ch_store_endpoint *e)
{
	int i = 0, r = 0;

	*e = (struct ch_store_endpoint){};
	e->id = sqlite3_column_int64(st, i++);
	e->cert_id = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &e->endpoint);
	r = r ?: store_col_text(st, i++, copy, &e->state);
	r = r ?: store_col_text(st, i++, copy, &e->serial);
	r = r ?: store_col_text(st, i++, copy, &e->fingerprint);
	e->not_after = sqlite3_column_int64(st, i++);
	e->checked_at = sqlite3_column_int64(st, i++);
	e->state_since = sqlite3_column_int64(st, i++);
	e->verified_at = sqlite3_column_int64(st, i++);
	e->next_at = sqlite3_column_int64(st, i++);
	r = r ?: store_col_text(st, i++, copy, &e->message);
	r = r ?: store_col_text(st, i++, copy, &e->cert_name);
	if (r < 0 && copy)
		ch_store_endpoint_done(e);
	return r;
}

int
ch_store_endpoint_ensure(struct ch_store *s, int64_t cert_id, const char *endpoint, int64_t next_at)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ENDPOINT_ENSURE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, cert_id);
	store_bind_text(&q, 2, endpoint);
	store_bind_int(&q, 3, next_at);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_endpoint_update(struct ch_store *s, const struct ch_store_endpoint *e)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ENDPOINT_UPDATE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, e->id);
	store_bind_text(&q, 2, e->state);
	store_bind_text(&q, 3, e->serial);
	store_bind_text(&q, 4, e->fingerprint);
	store_bind_int(&q, 5, e->not_after);
	store_bind_int(&q, 6, e->checked_at);
	store_bind_int(&q, 7, e->state_since);
	store_bind_int(&q, 8, e->verified_at);
	store_bind_int(&q, 9, e->next_at);
	store_bind_text(&q, 10, e->message);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	return r == 0 ? -ENOENT : 0;
}

static int
store_endpoint_foreach(struct ch_store *s, enum store_sql id, int64_t cert_id,
		       int (*fn)(const struct ch_store_endpoint *e, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_endpoint e;
	int r;

	r = store_query(s, id, &q);
	if (r < 0)
		return r;
	if (id == STORE_SQL_ENDPOINT_FOREACH_FOR_CERT)
		store_bind_int(&q, 1, cert_id);
	while ((r = store_query_step(&q)) > 0) {
		r = store_endpoint_read(q.stmt, false, &e);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&e, arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_endpoint_foreach_for_cert(struct ch_store *s, int64_t cert_id,
				   int (*fn)(const struct ch_store_endpoint *e, void *arg), void *arg)
{
	assert(s);
	return store_endpoint_foreach(s, STORE_SQL_ENDPOINT_FOREACH_FOR_CERT, cert_id, fn, arg);
}

int
ch_store_endpoint_foreach_problem(struct ch_store *s,
				  int (*fn)(const struct ch_store_endpoint *e, void *arg), void *arg)
{
	assert(s);
	return store_endpoint_foreach(s, STORE_SQL_ENDPOINT_FOREACH_PROBLEM, 0, fn, arg);
}

static int
store_endpoint_get_one(struct ch_store *s, enum store_sql id, int64_t arg,
		       struct ch_store_endpoint *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	*ret = (struct ch_store_endpoint){};
	r = store_query(s, id, &q);
	if (r < 0)
		return r;
	if (id == STORE_SQL_ENDPOINT_GET)
		store_bind_int(&q, 1, arg);
	r = store_query_step(&q);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	return store_endpoint_read(q.stmt, true, ret);
}

int
ch_store_endpoint_get(struct ch_store *s, int64_t id, struct ch_store_endpoint *ret)
{
	assert(s);
	return store_endpoint_get_one(s, STORE_SQL_ENDPOINT_GET, id, ret);
}

int
ch_store_endpoint_next_due(struct ch_store *s, struct ch_store_endpoint *ret)
{
	assert(s);
	return store_endpoint_get_one(s, STORE_SQL_ENDPOINT_NEXT_DUE, 0, ret);
}

int
ch_store_endpoint_due_for_cert(struct ch_store *s, int64_t cert_id, int64_t at)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ENDPOINT_DUE_FOR_CERT, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, cert_id);
	store_bind_int(&q, 2, at);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_endpoint_delete(struct ch_store *s, int64_t id)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ENDPOINT_DELETE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, id);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/* Events */

int
ch_store_event_add(struct ch_store *s, int64_t at, const char *cert, const char *stage,
		   const char *event, const char *detail)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (!event)
		return -EINVAL;
	r = store_query(s, STORE_SQL_EVENT_ADD, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, at);
	store_bind_text(&q, 2, cert);
	store_bind_text(&q, 3, stage);
	store_bind_text(&q, 4, event);
	store_bind_text(&q, 5, detail);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/* A limit of 0 or less means all events. */
int
ch_store_event_foreach(struct ch_store *s, const char *cert, int limit,
		       int (*fn)(const struct ch_store_event *e, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_event e;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, cert ? STORE_SQL_EVENT_FOREACH_CERT : STORE_SQL_EVENT_FOREACH, &q);
	if (r < 0)
		return r;
	store_bind_limit(&q, 1, limit);
	if (cert)
		store_bind_text(&q, 2, cert);
	while ((r = store_query_step(&q)) > 0) {
		e = (struct ch_store_event){
			.id = sqlite3_column_int64(q.stmt, 0),
			.at = sqlite3_column_int64(q.stmt, 1),
			.cert = (const char *)sqlite3_column_text(q.stmt, 2),
			.stage = (const char *)sqlite3_column_text(q.stmt, 3),
			.event = (const char *)sqlite3_column_text(q.stmt, 4),
			.detail = (const char *)sqlite3_column_text(q.stmt, 5),
		};
		r = fn(&e, arg);
		if (r < 0)
			return r;
	}
	return r;
}

/* Revocation and CRLs */

int
ch_store_issuance_foreach_revoked(struct ch_store *s, const char *ca, int64_t not_after_min,
				  int (*fn)(const struct ch_store_issuance *i, void *arg),
				  void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_issuance is;
	int r;

	assert(s);
	assert(ca);
	assert(fn);
	r = store_query(s, STORE_SQL_ISSUANCE_FOREACH_REVOKED, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	store_bind_int(&q, 2, not_after_min);
	while ((r = store_query_step(&q)) > 0) {
		r = store_issuance_read(q.stmt, false, &is);
		if (r < 0)
			return store_error(s, SQLITE_NOMEM, __func__);
		r = fn(&is, arg);
		if (r < 0)
			return r;
	}
	return r;
}

void
ch_store_crl_done(struct ch_store_crl *c)
{
	if (!c)
		return;
	free(c->ca);
	free(c->der);
	*c = (struct ch_store_crl){};
}

int
ch_store_crl_get(struct ch_store *s, const char *ca, struct ch_store_crl *ret)
{
	_cleanup_query_ struct store_query q = {};
	const void *blob;
	int r, n;

	assert(s);
	assert(ca);
	assert(ret);
	*ret = (struct ch_store_crl){};
	r = store_query(s, STORE_SQL_CRL_GET, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	r = store_query_step(&q);
	if (r < 0)
		return r;
	if (r == 0)
		return -ENOENT;
	r = store_col_text(q.stmt, 0, true, &ret->ca);
	if (r < 0)
		return r;
	ret->number = sqlite3_column_int64(q.stmt, 1);
	ret->this_update = sqlite3_column_int64(q.stmt, 2);
	ret->next_update = sqlite3_column_int64(q.stmt, 3);
	blob = sqlite3_column_blob(q.stmt, 4);
	n = sqlite3_column_bytes(q.stmt, 4);
	if (blob && n > 0) {
		ret->der = malloc((size_t)n);
		if (!ret->der) {
			ch_store_crl_done(ret);
			return -ENOMEM;
		}
		memcpy(ret->der, blob, (size_t)n);
		ret->der_len = (size_t)n;
	}
	return 0;
}

int
ch_store_crl_put(struct ch_store *s, const struct ch_store_crl *c)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(c && c->ca);
	r = store_query(s, STORE_SQL_CRL_PUT, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, c->ca);
	store_bind_int(&q, 2, c->number);
	store_bind_int(&q, 3, c->this_update);
	store_bind_int(&q, 4, c->next_update);
	if (q.rc == SQLITE_OK)
		q.rc = c->der ? sqlite3_bind_blob(q.stmt, 5, c->der, (int)c->der_len, SQLITE_STATIC)
			      : sqlite3_bind_null(q.stmt, 5);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

/* Alerts */

int
ch_store_alert_put(struct ch_store *s, const struct ch_store_alert *a)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (!a->key || !a->kind)
		return -EINVAL;
	r = store_query(s, STORE_SQL_ALERT_PUT, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, a->key);
	store_bind_text(&q, 2, a->kind);
	store_bind_text(&q, 3, a->cert);
	store_bind_text(&q, 4, a->subject);
	store_bind_int(&q, 5, a->level);
	store_bind_int(&q, 6, a->started_at);
	store_bind_int(&q, 7, a->last_sent_at);
	store_bind_text(&q, 8, a->detail);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_alert_delete(struct ch_store *s, const char *key)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_ALERT_DELETE, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, key);
	r = store_query_exec(&q);
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int
ch_store_alert_foreach(struct ch_store *s,
		       int (*fn)(const struct ch_store_alert *a, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	struct ch_store_alert a;
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_ALERT_FOREACH, &q);
	if (r < 0)
		return r;
	while ((r = store_query_step(&q)) > 0) {
		a = (struct ch_store_alert){
			.key = (char *)sqlite3_column_text(q.stmt, 0),
			.kind = (char *)sqlite3_column_text(q.stmt, 1),
			.cert = (char *)sqlite3_column_text(q.stmt, 2),
			.subject = (char *)sqlite3_column_text(q.stmt, 3),
			.level = sqlite3_column_int(q.stmt, 4),
			.started_at = sqlite3_column_int64(q.stmt, 5),
			.last_sent_at = sqlite3_column_int64(q.stmt, 6),
			.detail = (char *)sqlite3_column_text(q.stmt, 7),
		};
		r = fn(&a, arg);
		if (r < 0)
			return r;
	}
	return r;
}

/* Rehearsals */

int
ch_store_rehearsal_add(struct ch_store *s, struct ch_store_rehearsal *rh)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	if (!rh->cert || !rh->ca || !rh->trigger || !rh->result)
		return -EINVAL;
	r = store_query(s, STORE_SQL_REHEARSAL_ADD, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, rh->cert);
	store_bind_text(&q, 2, rh->ca);
	store_bind_text(&q, 3, rh->issuer ? rh->issuer : rh->ca);
	store_bind_text(&q, 4, rh->trigger);
	store_bind_int(&q, 5, rh->started_at);
	store_bind_int(&q, 6, rh->finished_at);
	store_bind_text(&q, 7, rh->result);
	store_bind_text(&q, 8, rh->stage);
	store_bind_text(&q, 9, rh->target);
	store_bind_text(&q, 10, rh->serial);
	store_bind_text(&q, 11, rh->message);
	r = store_query_exec(&q);
	if (r < 0)
		return r;
	rh->id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

static int
store_rehearsal_each(struct store_query *q,
		     int (*fn)(const struct ch_store_rehearsal *rh, void *arg), void *arg)
{
	struct ch_store_rehearsal rh;
	int r;

	while ((r = store_query_step(q)) > 0) {
		rh = (struct ch_store_rehearsal){
			.id = sqlite3_column_int64(q->stmt, 0),
			.cert = (const char *)sqlite3_column_text(q->stmt, 1),
			.ca = (const char *)sqlite3_column_text(q->stmt, 2),
			.issuer = (const char *)sqlite3_column_text(q->stmt, 3),
			.trigger = (const char *)sqlite3_column_text(q->stmt, 4),
			.started_at = sqlite3_column_int64(q->stmt, 5),
			.finished_at = sqlite3_column_int64(q->stmt, 6),
			.result = (const char *)sqlite3_column_text(q->stmt, 7),
			.stage = (const char *)sqlite3_column_text(q->stmt, 8),
			.target = (const char *)sqlite3_column_text(q->stmt, 9),
			.serial = (const char *)sqlite3_column_text(q->stmt, 10),
			.message = (const char *)sqlite3_column_text(q->stmt, 11),
		};
		r = fn(&rh, arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_rehearsal_foreach(struct ch_store *s, const char *cert, int limit,
			   int (*fn)(const struct ch_store_rehearsal *rh, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, cert ? STORE_SQL_REHEARSAL_FOREACH_CERT : STORE_SQL_REHEARSAL_FOREACH,
			&q);
	if (r < 0)
		return r;
	store_bind_limit(&q, 1, limit);
	if (cert)
		store_bind_text(&q, 2, cert);
	return store_rehearsal_each(&q, fn, arg);
}

int
ch_store_rehearsal_foreach_failing(struct ch_store *s,
				   int (*fn)(const struct ch_store_rehearsal *rh, void *arg),
				   void *arg)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(fn);
	r = store_query(s, STORE_SQL_REHEARSAL_FOREACH_FAILING, &q);
	if (r < 0)
		return r;
	return store_rehearsal_each(&q, fn, arg);
}

int
ch_store_rehearsal_summary(struct ch_store *s, const char *ca,
			   struct ch_store_rehearsal_summary *ret)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	assert(ca);
	*ret = (struct ch_store_rehearsal_summary){ 0 };
	r = store_query(s, STORE_SQL_REHEARSAL_SUMMARY, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	r = store_query_step(&q);
	if (r < 0)
		return r;
	if (r > 0) {
		ret->last_run_at = sqlite3_column_int64(q.stmt, 0);
		ret->last_success_at = sqlite3_column_int64(q.stmt, 1);
		ret->last_scheduled_at = sqlite3_column_int64(q.stmt, 2);
	}
	return 0;
}

/* CA budget usage */

int
ch_store_usage_add(struct ch_store *s, const char *ca, const char *kind, const char *domain,
		   int64_t at, const char *cert, const char *idem)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_USAGE_ADD, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	store_bind_text(&q, 2, kind);
	store_bind_text(&q, 3, domain);
	store_bind_int(&q, 4, at);
	store_bind_text(&q, 5, cert);
	store_bind_text(&q, 6, idem);
	r = store_query_exec(&q);
	return r < 0 ? r : 0;
}

int
ch_store_usage_drop(struct ch_store *s, const char *ca, const char *kind, const char *idem)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_USAGE_DROP, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	store_bind_text(&q, 2, kind);
	store_bind_text(&q, 3, idem);
	return store_query_exec(&q);
}

int
ch_store_usage_times(struct ch_store *s, const char *ca, const char *kind, const char *domain,
		     int64_t after, const char *except_idem, int64_t **ret, size_t *ret_n)
{
	_cleanup_query_ struct store_query q = {};
	int64_t *v = NULL;
	size_t n = 0, cap = 0;
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_USAGE_TIMES, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	store_bind_text(&q, 2, kind);
	store_bind_text(&q, 3, domain);
	store_bind_int(&q, 4, after);
	store_bind_text(&q, 5, except_idem);
	while ((r = store_query_step(&q)) > 0) {
		if (n == cap) {
			int64_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = sqlite3_column_int64(q.stmt, 0);
	}
	if (r < 0) {
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int
ch_store_usage_foreach_domain(struct ch_store *s, const char *ca, const char *kind,
			      int64_t after, int (*fn)(const char *domain, void *arg), void *arg)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_USAGE_DOMAINS, &q);
	if (r < 0)
		return r;
	store_bind_text(&q, 1, ca);
	store_bind_text(&q, 2, kind);
	store_bind_int(&q, 3, after);
	while ((r = store_query_step(&q)) > 0) {
		r = fn((const char *)sqlite3_column_text(q.stmt, 0), arg);
		if (r < 0)
			return r;
	}
	return r;
}

int
ch_store_usage_prune(struct ch_store *s, int64_t before)
{
	_cleanup_query_ struct store_query q = {};
	int r;

	assert(s);
	r = store_query(s, STORE_SQL_USAGE_PRUNE, &q);
	if (r < 0)
		return r;
	store_bind_int(&q, 1, before);
	return store_query_exec(&q);
}
