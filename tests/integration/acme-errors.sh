#!/usr/bin/env bash
# ACME error handling against a stub server (acme-stub.py) that answers
# what Pebble never does: rateLimited with Retry-After -> pending and no
# request before Retry-After; 503 serverInternal -> ca-unreachable with its
# Retry-After; badNonce on every request -> retried 5 times, then
# ca-unreachable; rejectedIdentifier with subproblems -> rejected with each
# subproblem in the error; terms of service not agreed -> misconfigured.
. "$(dirname "$0")/lib.sh"

for t in python3 openssl; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

S=$T/stub
mkdir -p "$S" "$T/out"
tls_test_cert "$S" "certherd test stub CA"
PORT=$(free_port)
touch "$S/requests.log"
python3 "$SRCDIR/tests/integration/acme-stub.py" "$PORT" "$S/cert.pem" "$S/key.pem" "$S/requests.log" \
	>"$S/stub.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "the stub ACME server" curl -fsS --max-time 2 --cacert "$S/ca.pem" "https://127.0.0.1:$PORT/down/dir"

{
	cat <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
YAML
	for m in ratelimit down badnonce rejected tos; do
		agree=true
		[ $m = tos ] && agree=false
		cat <<YAML
  $m:
    type: acme
    directory: https://127.0.0.1:$PORT/$m/dir
    trust: $S/ca.pem
    agree_tos: $agree
    http01_listen: 127.0.0.1:$(free_port)
YAML
	done
	cat <<YAML
targets:
  files: { type: file, fullchain: "out/{name}.pem", key: "out/{name}.key" }
certificates:
  rl: { names: [rl.example.test], ca: ratelimit, targets: [files] }
  down: { names: [down.example.test], ca: down, targets: [files] }
  nonce: { names: [nonce.example.test], ca: badnonce, targets: [files] }
  rej: { names: [evil.example.test], ca: rejected, targets: [files] }
  tos: { names: [tos.example.test], ca: tos, targets: [files] }
YAML
} >"$T/certherd.yaml"

outcome() { chj show "$1" | jq -r .certificate.last_outcome; }
error_of() { chj show "$1" | jq -r .certificate.last_error; }
outcome_is() { [ "$(outcome "$1")" = "$2" ]; }
requests() { grep -c "^$1\$" "$S/requests.log" || true; }
delay_of() { sql "SELECT next_at - strftime('%s','now') FROM certificates WHERE name='$1'"; }

start_daemon
wait_for 30 "rl to fail" outcome_is rl pending
wait_for 30 "down to fail" outcome_is down ca-unreachable
wait_for 30 "nonce to fail" outcome_is nonce ca-unreachable
wait_for 30 "rej to fail" outcome_is rej rejected
wait_for 30 "tos to fail" outcome_is tos misconfigured

error_of rl | has 'newOrder: rateLimited: too many new orders' || fail "rl: $(error_of rl)"
[ "$(delay_of rl)" -ge 3500 ] || fail "rl: next attempt in $(delay_of rl) s, not after Retry-After 3600"
pass "429 rateLimited -> pending, next attempt after its Retry-After ($(delay_of rl) s)"

error_of down | has 'newOrder: serverInternal: the database is unavailable' || fail "down: $(error_of down)"
[ "$(delay_of down)" -ge 110 ] || fail "down: next attempt in $(delay_of down) s despite Retry-After 120"
pass "503 serverInternal -> ca-unreachable, Retry-After honoured ($(delay_of down) s)"

[ "$(requests 'POST /badnonce/acct')" = 6 ] ||
	fail "badNonce: expected 1 + 5 retries, got $(requests 'POST /badnonce/acct') POSTs"
error_of nonce | has 'newAccount: badNonce' || fail "nonce: $(error_of nonce)"
pass "badNonce retried 5 times with the fresh nonce, then ca-unreachable"

err=$(error_of rej)
echo "$err" | has 'newOrder: rejectedIdentifier: Some of the identifiers requested were rejected; dns:evil.example.test: caa: CAA record forbids issuance' ||
	fail "rej: the problem document is not in the error: $err"
pass "rejectedIdentifier -> rejected with its subproblems: $err"

error_of tos | has 'terms of service (https://example.test/tos.pdf); set agree_tos: true' || fail "tos: $(error_of tos)"
[ "$(requests 'POST /tos/acct')" = 0 ] || fail "an account was requested without agreeing to the terms"
pass "terms of service not agreed -> misconfigured, no account requested"

# Nothing was asked again before its time.
[ "$(requests 'POST /ratelimit/order')" = 1 ] || fail "rateLimited: $(requests 'POST /ratelimit/order') new-orders"
[ "$(requests 'POST /down/order')" = 1 ] || fail "serverInternal: $(requests 'POST /down/order') new-orders"
ls "$T/out" | has . && fail "something was deployed: $(ls "$T/out")"
daemon_alive || fail "the daemon died"
pass "one request each before Retry-After; nothing deployed"
stop_daemon
