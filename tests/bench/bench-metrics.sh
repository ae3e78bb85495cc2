#!/usr/bin/env bash
# /metrics on a large inventory: N certificates (default 10000), each issued,
# deployed to one file target and with one verified endpoint (rows made with
# sqlite3, not by the CA). Prints the build time the daemon logs (debug),
# the wall time of GET /metrics and the response size. Figures only.
# Usage: CERTHERDD=build/certherdd N=10000 tests/bench/bench-metrics.sh
set -euo pipefail
N=${N:-10000}
D=${CERTHERDD:-build/certherdd}
T=$(mktemp -d /tmp/ch-bench-metrics.XXXXXX)
PORT=$((20000 + RANDOM % 30000))
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
{
	echo "state_dir: var"
	echo "socket: certherd.sock"
	echo "metrics_listen: 127.0.0.1:$PORT"
	echo "cas: {local: {type: local}}"
	echo "targets: {files: {type: file, cert: 'out/{name}.crt', key: 'out/{name}.key'}}"
	echo "certificates:"
	for i in $(seq 1 "$N"); do
		echo "  c$i: {names: [c$i.test], lifetime: 90d, targets: [files], endpoints: [\"127.0.0.1:1\"]}"
	done
} >certherd.yaml
mkdir -p out
"$D" -c certherd.yaml --log-target stderr -vv 2>first.log &
PID=$!
until grep -q 'started:' first.log; do kill -0 $PID || { cat first.log; exit 1; }; sleep 0.1; done
kill -STOP $PID; kill -9 $PID; wait $PID 2>/dev/null || true
now=$(date +%s)
sqlite3 var/certherd.db <<SQL
PRAGMA foreign_keys=OFF;
BEGIN;
INSERT INTO issuances (cert_id, serial, fingerprint, not_before, not_after, issued_at, ca, idem_key, cert_pem, chain_pem, key_path)
  SELECT id, printf('%032x', id), printf('%064x', id), $now, $now + 90*86400, $now, 'local', 'bench-' || id, '', '', NULL
  FROM certificates WHERE current_issuance IS NULL;
UPDATE certificates SET current_issuance = (SELECT max(i.id) FROM issuances i WHERE i.cert_id = certificates.id),
  state = 'valid', renew_at = $now + 60*86400, next_at = $now + 60*86400, last_attempt_at = $now, last_success_at = $now,
  pending_idem = NULL, pending_key = NULL, force = 0;
INSERT OR IGNORE INTO deployments (issuance_id, target, state, attempted_at, succeeded_at, attempts)
  SELECT current_issuance, 'files', 'deployed', $now, $now, 1 FROM certificates;
UPDATE deployments SET state = 'deployed', next_at = 0;
UPDATE endpoints SET state = 'verified', verified_at = $now, checked_at = $now, state_since = $now, next_at = $now + 86400;
COMMIT;
SQL
"$D" -c certherd.yaml --log-target stderr -vv 2>daemon.log &
PID=$!
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; do kill -0 $PID || { tail daemon.log; exit 1; }; sleep 0.1; done
for i in 1 2 3 4 5; do
	curl -s -o m.txt -w "GET /metrics: %{time_total}s, %{size_download} bytes\n" "http://127.0.0.1:$PORT/metrics"
done
grep -c '^certherd_certificate_expiry_timestamp_seconds{' m.txt | sed 's/^/expiry series: /'
wc -l <m.txt | sed 's/^/lines: /'
grep '/metrics:' daemon.log | sed 's/^.*debug: //'
