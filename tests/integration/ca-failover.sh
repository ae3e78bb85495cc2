#!/usr/bin/env bash
# CA failover: a certificate lists its CAs in order (ca: [first, second]).
# An ACME CA answering newOrder with 429 rateLimited (acme-stub.py) is left
# at once and the local CA issues; an ACME CA whose directory nobody
# answers is left after failover_after failed attempts. The issuance
# records the CA that issued, show names it and the failover event says
# why. The next renewal starts at the first CA again. Unknown CA names in
# a list are config errors with file:line:column and the nearest name.
. "$(dirname "$0")/lib.sh"

for t in python3 openssl jq; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

S=$T/stub
mkdir -p "$S" "$T/out"
tls_test_cert "$S" "certherd test stub CA"
PORT=$(free_port)
DEAD=$(free_port) # nothing listens there
touch "$S/requests.log"
python3 "$SRCDIR/tests/integration/acme-stub.py" "$PORT" "$S/cert.pem" "$S/key.pem" "$S/requests.log" \
	>"$S/stub.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "the stub ACME server" curl -fsS --max-time 2 --cacert "$S/ca.pem" "https://127.0.0.1:$PORT/ratelimit/dir"

# --- config: unknown names in a list ------------------------------------
cat >"$T/bad.yaml" <<YAML
state_dir: var
cas:
  good: { type: local }
  limited: { type: local }
certificates:
  a: { names: [a.example.test], ca: [limited, godo] }
YAML
out=$("$CERTHERDD" --check-config --config "$T/bad.yaml" 2>&1) && fail "an unknown CA in a list passed"
echo "$out" | has "bad.yaml:6:47: certificates.a.ca: unknown CA 'godo'; defined CAs: good, limited; did you mean 'good'?" ||
	fail "unknown CA in a list: $out"
pass "an unknown CA in a ca: list names file:line:column and the nearest CA"

# --- failover ------------------------------------------------------------
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  limited:
    type: acme
    directory: https://127.0.0.1:$PORT/ratelimit/dir
    trust: $S/ca.pem
    agree_tos: true
    http01_listen: 127.0.0.1:$(free_port)
  gone:
    type: acme
    directory: https://127.0.0.1:$DEAD/dir
    trust: $S/ca.pem
    agree_tos: true
    http01_listen: 127.0.0.1:$(free_port)
  rej:
    type: acme
    directory: https://127.0.0.1:$PORT/rejected/dir
    trust: $S/ca.pem
    agree_tos: true
    http01_listen: 127.0.0.1:$(free_port)
    budget: { failed_validations_per_hour: 1 }
  good:
    type: local
targets:
  files: { type: file, fullchain: "out/{name}.pem", key: "out/{name}.key" }
certificates:
  rl: { names: [rl.example.test], ca: [limited, good], targets: [files] }
  down: { names: [down.example.test], ca: [gone, good], failover_after: 1, targets: [files] }
  single: { names: [single.example.test], ca: good, targets: [files] }
  patient: { names: [patient.example.test], ca: [gone, good], targets: [files] }
  val: { names: [val.example.test], ca: rej, targets: [files] }
YAML

issuer() { chj show "$1" | jq -r '.issuances[0].ca // empty'; }
issued_by() { [ "$(issuer "$1")" = "$2" ]; }
event_detail() { chj show "$1" | jq -r --arg e "$2" '[.events[] | select(.event == $e) | .detail] | first // empty'; }
requests() { grep -c "^$1\$" "$S/requests.log" || true; }

start_daemon
wait_for 30 "rl to be issued by good" issued_by rl good
wait_for 30 "down to be issued by good" issued_by down good
wait_for 20 "single to be issued" issued_by single good

d=$(event_detail rl failover)
echo "$d" | has "from limited to good: CA limited is rate limiting; last error: newOrder: rateLimited" ||
	fail "rl: failover event: '$d'"
[ "$(requests 'POST /ratelimit/order')" = 1 ] || fail "limited was asked $(requests 'POST /ratelimit/order') times"
openssl verify -CAfile "$(ca_cert good)" "$T/out/rl.pem" >/dev/null || fail "rl.pem is not from CA good"
chj show rl | jq -r '.events[] | select(.event == "issued") | .detail' | has "by CA good" ||
	fail "the issued event does not name the CA"
ch show rl | has "issued by CA good" || fail "show does not name the issuing CA: $(ch show rl)"
ch show rl | has "failover.*from limited to good" || fail "show lists no failover event"
pass "rateLimited at the first CA: failed over at once, issued by good ($d)"

d=$(event_detail down failover)
echo "$d" | has "from gone to good: 1 failed attempt in a row at CA gone; last error: directory:" ||
	fail "down: failover event: '$d'"
[ "$(sql "SELECT ca FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = 'down'")" = good ] ||
	fail "the inventory does not record good as the issuer"
pass "unreachable directory: failed over after failover_after=1 attempt ($d)"

[ -z "$(event_detail single failover)" ] || fail "a single-CA certificate failed over"
# Default failover_after (3): one failure at gone is retried at gone after backoff.
wait_for 30 "patient to fail once" bash -c "[ \$(sqlite3 '$T/var/certherd.db' \"SELECT ca_failures FROM certificates WHERE name = 'patient'\") = 1 ]"
[ -z "$(event_detail patient failover)" ] || fail "patient failed over after one failure"
[ -z "$(issuer patient)" ] || fail "patient was issued by $(issuer patient) after one failure at gone"
[ "$(chj show patient | jq -r .certificate.last_outcome)" = ca-unreachable ] || fail "patient: $(chj show patient | jq -r .certificate.last_outcome)"
pass "with the default failover_after (3), one failure stays at the first CA with backoff"
[ "$(sql "SELECT COALESCE(ca_active, '') || '/' || ca_failures FROM certificates WHERE name = 'rl'")" = /0 ] ||
	fail "after issuing, rl still points at $(sql "SELECT ca_active FROM certificates WHERE name = 'rl'")"

# The next renewal tries the first CA again.
before=$(requests 'POST /ratelimit/order')
ch renew rl --force >/dev/null
wait_for 30 "a second failover of rl" bash -c "[ \$(grep -c '^POST /ratelimit/order\$' '$S/requests.log') -gt $before ]"
wait_for 30 "rl to be issued by good again" bash -c \
	"[ \$('$CERTHERD' --socket '$SOCK' --json show rl | jq '[.events[] | select(.event == \"failover\")] | length') -ge 2 ]"
pass "the next renewal asked the first CA (limited) again, then failed over"
# A rejection spends the failed-validation budget (1 per hour): the retry is not sent.
wait_for 30 "val to be rejected" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show val | jq -r .certificate.last_outcome)\" = rejected ]"
ch renew val >/dev/null
wait_for 30 "val to wait for the budget" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show val | jq -r .certificate.last_outcome)\" = budget-exhausted ]"
[ "$(requests 'POST /rejected/order')" = 1 ] || fail "rej was asked $(requests 'POST /rejected/order') times"
chj show val | jq -r .certificate.last_error | has "budget of CA rej exhausted: failed_validations_per_hour (1) for example.test" ||
	fail "val: $(chj show val | jq -r .certificate.last_error)"
pass "a rejected order spent rej's failed-validation budget; the retry was held back"
daemon_alive || fail "the daemon died"
stop_daemon
