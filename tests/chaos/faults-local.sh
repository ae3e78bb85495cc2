#!/usr/bin/env bash
# Local faults, with the local CA and a file target, one daemon under two
# LD_PRELOAD shims: fail-io.so (tests/chaos/fail-io.c) makes a directory
# look full (ENOSPC) while a control file names it, and libfaketime moves
# the wall clock (CLOCK_REALTIME only: the monotonic clock libevent's
# timers run on never jumps on a real machine either). Backoffs are
# waited out by moving the clock, not by sleeping.
#  1. The target directory full: the deployment fails naming ENOSPC, the
#     deployed files stay byte-identical, no temporary file is left, the
#     retries back off (1 min, then 2), and once space returns the
#     deployment completes.
#  1b. The target directory hanging (a network file system gone away):
#     the event loop is not held (status answers, the scheduler turns),
#     status, /healthz and /metrics say the file writer is stalled and on
#     which file; the deployment completes once the file system answers.
#  2. The state directory full (key files and the SQLite database and
#     WAL): a renewal request is refused rather than acknowledged and
#     lost; the due renewal fails with the inventory shown as failing in
#     status, attempts back off instead of spinning, the daemon answers
#     status, the database passes integrity_check, no half-written key;
#     once space returns the renewal completes with one issuance.
#  3. The inventory locked by another process (BEGIN EXCLUSIVE held open):
#     status answers at once and says "locked", the scheduler keeps
#     turning (the watchdog's question), a renewal request is refused;
#     on release the due renewal completes, once.
#  4. Clock jumps: forward past the renewal time (renewed promptly, once),
#     forward past expiry (status reports it expired, then it is renewed
#     once), an hour back (no renewal, nothing not yet valid, a requested
#     renewal runs at once and the new certificate is valid by the daemon's
#     clock).
. "$(dirname "$0")/../integration/lib.sh"

for t in openssl sqlite3 jq python3 curl; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
FAKETIME_SO=
for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
	[ -e "$f" ] && FAKETIME_SO=$f && break
done
[ -n "$FAKETIME_SO" ] || { echo "SKIP: libfaketime not installed (Debian package faketime)"; exit 77; }
FAIL_IO_SO=${FAIL_IO_SO:-$SRCDIR/build/tests/fail-io.so}
[ -e "$FAIL_IO_SO" ] || fail "no fail-io shim at $FAIL_IO_SO"

mkdir -p "$T/out"
MPORT=$(free_port)
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$MPORT
alerts:
  check_interval: 1s
cas:
  local: { type: local }
targets:
  files:
    type: file
    cert: out/{name}.crt
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
defaults:
  targets: [files]
  lifetime: 1h
certificates:
  web: { names: [web.faults.test] }
  api: { names: [api.faults.test] }
YAML

CTL=$T/full
OFFSET=0
echo "+0" >"$T/faketime"
# Moves the daemon's wall clock to real time + $1 seconds.
clock_at() {
	OFFSET=$1
	echo "+$OFFSET" >"$T/faketime.new"
	mv "$T/faketime.new" "$T/faketime"
}
# Moves it forward (or back, negative) by $1 seconds.
clock_by() { clock_at $((OFFSET + $1)); }
# The daemon's clock, seconds (from its status).
dnow() { status_json | jq -r .now; }
full_on() { printf '%s\n%s\n' "$1" "${2:-}" >"$CTL.new" && mv "$CTL.new" "$CTL"; }
full_off() { rm -f "$CTL"; }
hits() { [ -e "$CTL.hits" ] && wc -c <"$CTL.hits" || echo 0; }

start_daemon LD_PRELOAD="$FAIL_IO_SO $FAKETIME_SO" FAILIO_CONTROL="$CTL" \
	FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 \
	FAKETIME_DONT_FAKE_MONOTONIC=1 NO_FAKE_STAT=1 CERTHERD_TEST_WEDGE="$T/wedge" \
	CERTHERD_TEST_FILE_STALL=2
wait_for 20 "first issuance of web" deployed web files
wait_for 20 "first issuance of api" deployed api files

n_iss() { sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = '$1'"; }
dep_json() { chj show "$1" | jq -c --arg t "$2" '.issuances[0].deployments[] | select(.target == $t)'; }
check_no_tmp() {
	local left
	left=$(find "$T/out" "$T/var" -name '*.tmp*' | head -n 5)
	[ -z "$left" ] || fail "temporary files left behind: $left"
}
check_keys_whole() {
	local k
	while IFS= read -r k; do
		openssl pkey -noout -in "$k" 2>/dev/null || fail "half-written key file $k"
	done < <(find "$T/var/certs" -name key.pem)
}
check_db() {
	[ "$(sql 'PRAGMA integrity_check; PRAGMA foreign_key_check')" = ok ] ||
		fail "the inventory fails integrity_check: $(sql 'PRAGMA integrity_check')"
}
# The files deployed for NAME hold the inventory's current certificate and its key.
check_deployed_current() {
	[ "$(serial_of "$T/out/$1.crt")" = "$(inv_serial "$1")" ] ||
		fail "$1.crt does not hold the inventory's serial"
	[ "$(openssl x509 -noout -pubkey -in "$T/out/$1.crt" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$T/out/$1.key" | sha256sum)" ] ||
		fail "$1.key does not match $1.crt"
	# By the daemon's clock: its certificates may not be valid yet in real time.
	openssl verify -attime "$(dnow)" -CAfile "$(ca_cert local)" "$T/out/$1.fullchain.pem" \
		>/dev/null || fail "$1.fullchain.pem does not verify"
}
# Waits until the scheduler has turned $1 seconds of the daemon's clock from now on.
sched_turns() {
	local from
	from=$(dnow)
	wait_for 20 "the scheduler to turn" bash -c \
		"[ \$('$CERTHERD' --socket '$SOCK' --json status | jq -r .scheduler.last_loop_at) -ge $((from + $1)) ]"
}
# Before the clock moves to $1: when each certificate falls due (RENEW),
# whether it will be due then (DUE) and how many issuances it has (ISS).
declare -A ISS DUE RENEW
expect_at() {
	local n
	for n in web api; do
		ISS[$n]=$(n_iss $n)
		RENEW[$n]=$(chj show $n | jq .certificate.renew_at)
		DUE[$n]=$([ "${RENEW[$n]}" -le "$1" ] && echo 1 || echo 0)
	done
}
# Afterwards: each due certificate renewed and deployed, exactly once; the
# others not, unless they fell due meanwhile (issued after their renewal time).
check_renewed_once() {
	local n new
	for n in web api; do
		[ "${DUE[$n]}" = 1 ] || continue
		wait_for 20 "the renewal of $n" bash -c "[ \$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = '$n'\") -gt ${ISS[$n]} ]"
	done
	sched_turns 3
	for n in web api; do
		new=$(($(n_iss $n) - ISS[$n]))
		[ "$new" = "${DUE[$n]}" ] ||
			{ [ "$new" = 1 ] && [ "$(chj show $n | jq .issuances[0].issued_at)" -ge "${RENEW[$n]}" ]; } ||
			fail "$n: $new new issuances, expected ${DUE[$n]}"
		[ "$new" = 0 ] && continue
		wait_for 20 "the deployment of $n" deployed $n files
		check_deployed_current $n
	done
}
pass "web and api issued and deployed under the fault shims"

# --- 1. The target directory full ---------------------------------------
before=$(cd "$T/out" && sha256sum web.crt web.fullchain.pem web.key)
# The file can be created, its write fails: the temporary file must go.
full_on "$T/out/" write
ch renew web --force >/dev/null || fail "renew --force refused while only the target is full"
wait_for 20 "the deployment to fail" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show web | jq -r '.issuances[0].deployments[0].state')\" = failed ]"
dep=$(dep_json web files)
echo "$dep" | jq -r .last_error | has 'No space left on device' ||
	fail "the deployment error does not name ENOSPC: $dep"
[ "$(hits)" -gt 0 ] || fail "the shim never failed a call"
[ "$(cd "$T/out" && sha256sum web.crt web.fullchain.pem web.key)" = "$before" ] ||
	fail "the deployed files changed although their replacement failed"
check_no_tmp
status_json | jq -e '.health == "failing" and (.deployments_failing[] | select(.name == "web" and .target == "files") | .error | test("No space left"))' >/dev/null ||
	fail "status does not report the failing deployment: $(status_json | jq -c .deployments_failing)"
a1=$(echo "$dep" | jq .attempted_at)
n1=$(echo "$dep" | jq .next_at)
gap1=$((n1 - a1))
[ "$gap1" -ge 50 ] || fail "first retry after ${gap1}s: no backoff"
sched_turns 2
[ "$(dep_json web files | jq .attempts)" = 1 ] || fail "retried before the backoff ran out"
clock_by $((n1 - $(dnow) + 1))
wait_for 20 "the second attempt" bash -c "[ \$('$CERTHERD' --socket '$SOCK' --json show web | jq '.issuances[0].deployments[0].attempts') -ge 2 ]"
dep=$(dep_json web files)
gap2=$(($(echo "$dep" | jq .next_at) - $(echo "$dep" | jq .attempted_at)))
[ "$gap2" -gt $((gap1 * 3 / 2)) ] || fail "the backoff did not grow: ${gap1}s then ${gap2}s"
[ "$(cd "$T/out" && sha256sum web.crt web.fullchain.pem web.key)" = "$before" ] ||
	fail "the deployed files changed after the second failed attempt"
check_no_tmp
pass "target full: ENOSPC reported, old files byte-identical, no temporary file, backoff ${gap1}s then ${gap2}s"

full_off
clock_by $(($(echo "$dep" | jq .next_at) - $(dnow) + 1))
wait_for 20 "the deployment once space returned" deployed web files
check_deployed_current web
check_no_tmp
[ "$(cd "$T/out" && sha256sum web.crt)" != "$(echo "$before" | head -n 1)" ] || fail "web.crt not replaced"
pass "space back: the deployment completed with the new certificate"

# --- 1b. The target directory hangs -------------------------------------------
: >"$CTL.hits"
serial_before=$(serial_of "$T/out/web.crt")
full_on "$T/out/" "create hang"
ch renew web --force >/dev/null || fail "renew --force refused while the target hangs"
wait_for 20 "status to say the file writer is stalled" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.files.state == \"stalled\"'"
[ "$(hits)" -gt 0 ] || fail "the shim never held a call"
st=$(status_json)
echo "$st" | jq -e '.health == "failing"' >/dev/null || fail "health is not failing with file writes stalled: $st"
echo "$st" | jq -r .files.at | has "$T/out/web\\." ||
	fail "status does not say which file the writer is stuck on: $(echo "$st" | jq -c .files)"
{ ch status || true; } | has "^FILE WRITES STALLED: writing $T/out/web\\..* has not returned" ||
	fail "certherd status does not show the stalled file writer: $(ch status || true)"
code=$(curl -s -o "$T/healthz" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz" || true)
[ "$code" = 503 ] && has 'file writes stalled' <"$T/healthz" ||
	fail "/healthz answers $code ($(cat "$T/healthz")) with file writes stalled"
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has '^certherd_file_writes_stalled 1$' ||
	fail "/metrics does not say file writes are stalled"
# The event loop is not held by the hung call: the scheduler keeps turning.
sched_turns 2
[ "$(serial_of "$T/out/web.crt")" = "$serial_before" ] || fail "web.crt changed while its write hung"
full_off
wait_for 20 "the deployment once the file system answers" deployed web files
check_deployed_current web
check_no_tmp
wait_for 10 "the file writer to be idle" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.files.state == \"idle\"'"
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has '^certherd_file_writes_stalled 0$' ||
	fail "/metrics still says file writes are stalled"
pass "target hangs: status, /healthz and /metrics name the stalled write while the loop turns; deployed once it returns"

# --- 2. The state directory full --------------------------------------------
iss_web=$(n_iss web)
: >"$CTL.hits"
full_on "$T/var/"
if out=$(ch renew api --force 2>&1); then
	fail "a renewal request was acknowledged although the inventory cannot record it: $out"
fi
echo "$out" | has 'not recorded' || fail "the refused request does not say why: $out"
echo "$out" | has 'No space left on device' || fail "the refused request does not name ENOSPC: $out"
# web becomes due: its renewal needs a key file and records, neither can be written.
renew_at=$(chj show web | jq .certificate.renew_at)
expect_at $((renew_at + 2))
clock_by $((renew_at - $(dnow) + 2))
wait_for 20 "status to report the inventory failing" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.inventory.state == \"failing\"'"
st=$(status_json)
echo "$st" | jq -e '.health == "failing"' >/dev/null || fail "health is not failing: $st"
echo "$st" | jq -r .inventory.error | has 'No space left on device' ||
	fail "the inventory error does not name ENOSPC: $(echo "$st" | jq -c .inventory)"
{ ch status || true; } | has '^INVENTORY NOT WRITABLE .*No space left on device' ||
	fail "certherd status does not show the inventory failing: $(ch status || true)"
sched_turns 4
daemon_alive || fail "certherdd died with the state directory full"
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has '^certherd_inventory_writable 0$' ||
	fail "/metrics does not say the inventory is not writable"
code=$(curl -s -o "$T/healthz" -w '%{http_code}' "http://127.0.0.1:$MPORT/healthz" || true)
[ "$code" = 503 ] && has 'No space left on device' <"$T/healthz" ||
	fail "/healthz answers $code ($(cat "$T/healthz")) with the inventory full"
f=$(status_json | jq .inventory.failures)
[ "$f" -ge 1 ] && [ "$f" -le 6 ] || fail "$f failed attempts at the inventory in a few seconds: no backoff"
[ "$(hits)" -lt 500 ] || fail "$(hits) failed writes in a few seconds: the daemon spins"
check_db
check_keys_whole
check_no_tmp
[ "$(n_iss web)" = "$iss_web" ] || fail "an issuance was recorded with the inventory full"
pass "state dir full: request refused, status failing with ENOSPC, $f attempts backed off, database sound, no half key"

full_off
wait_for 30 "the inventory to take writes again" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.inventory.state == \"ok\"'"
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has '^certherd_inventory_writable 1$' ||
	fail "/metrics does not say the inventory is writable again"
# The refused request for api is not carried out (unless api was due anyway).
check_renewed_once
check_keys_whole
check_db
chj show web | jq -e '.certificate.state == "valid"' >/dev/null || fail "web not valid after recovery"
pass "space back: the renewal completed with one issuance"

# --- 3. The inventory locked by another process ---------------------------------
python3 - "$T/var/certherd.db" "$T/locked" <<'PY' &
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE certificates SET name = name WHERE 0")
open(sys.argv[2], "w").close()
while os.path.exists(sys.argv[2]):
    time.sleep(0.05)
db.execute("COMMIT")
PY
LOCKER=$!
PIDS+=("$LOCKER")
wait_for 10 "the lock" test -e "$T/locked"
if out=$(ch renew api --force 2>&1); then
	fail "a renewal request was acknowledged while the inventory is locked: $out"
fi
echo "$out" | has 'locked by another process' || fail "the refused request does not say the inventory is locked: $out"
renew_at=$(chj show web | jq .certificate.renew_at)
expect_at $((renew_at + 2))
clock_by $((renew_at - $(dnow) + 2))
wait_for 20 "status to report the inventory locked" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.inventory.state == \"locked\"'"
sched_turns 4
# A daemon waiting out the lock in its event loop would not answer within seconds.
st=$(timeout 10 "$CERTHERD" --socket "$SOCK" --json status) && fail "status says all is well while locked"
[ -n "$st" ] || fail "status did not answer while the inventory is locked"
echo "$st" | jq -e '.scheduler.healthy and .health == "failing"' >/dev/null ||
	fail "while locked: $(echo "$st" | jq -c '{health, scheduler, inventory}')"
{ ch status || true; } | has '^INVENTORY LOCKED .*locked by another process' ||
	fail "certherd status does not show the inventory locked: $(ch status || true)"
daemon_alive || fail "certherdd died while the inventory was locked"
[ "$(n_iss web)" = "${ISS[web]}" ] || fail "an issuance was recorded through someone else's lock"
pass "locked: status answers, says locked, the scheduler turns, the request is refused"

rm -f "$T/locked"
wait "$LOCKER" || fail "the lock holder failed"
wait_for 30 "the inventory to take writes again" bash -c \
	"'$CERTHERD' --socket '$SOCK' --json status | jq -e '.inventory.state == \"ok\"'"
check_renewed_once
check_db
pass "lock released: the renewal completed, once"

# --- 4. Clock jumps -------------------------------------------------------------------
# Forward past api's renewal time: renewed within a few scheduler turns, once.
renew_at=$(chj show api | jq .certificate.renew_at)
expect_at $((renew_at + 2))
clock_by $((renew_at - $(dnow) + 2))
check_renewed_once
pass "clock forward past the renewal time: renewed once (web: ${DUE[web]} due)"

# Forward past expiry, with the scheduler held so status can be read first.
touch "$T/wedge"
not_after=$(chj show web | jq .issuances[0].not_after)
expect_at $((not_after + 600))
clock_by $((not_after - $(dnow) + 600))
st=$(status_json)
echo "$st" | jq -e '.health == "failing" and (.expiring[] | select(.name == "web") | .expired)' >/dev/null ||
	fail "status does not report web expired: $(echo "$st" | jq -c '{health, expiring}')"
# The scheduler turned a moment ago by the monotonic clock: the hours the wall
# clock jumped are not a stalled loop (which would hold back the watchdog ping).
echo "$st" | jq -e '.scheduler.healthy and .scheduler.age < 60' >/dev/null ||
	fail "a wall-clock jump looks like a stalled scheduler: $(echo "$st" | jq -c .scheduler)"
rm -f "$T/wedge"
check_renewed_once
st=$(status_json)
echo "$st" | jq -e '.health == "ok" and (.expiring | length == 0)' >/dev/null ||
	fail "after renewing: $(echo "$st" | jq -c '{health, expiring, failing}')"
pass "clock forward past expiry: reported expired, then renewed once"

# An hour back, right after the renewals: their notBefore is now an hour ahead.
iss_web=$(n_iss web)
iss_api=$(n_iss api)
clock_by -3600
sched_turns 3
[ "$(n_iss web)" = "$iss_web" ] && [ "$(n_iss api)" = "$iss_api" ] || fail "renewed after the clock went back"
st=$(status_json)
echo "$st" | jq -e '.health == "ok" and (.failing | length == 0)' >/dev/null ||
	fail "after the clock went back: $(echo "$st" | jq -c '{health, failing, expiring}')"
# The scheduler does not wait out the hour: a requested renewal runs now.
ch renew web --force >/dev/null || fail "renew --force refused after the clock went back"
wait_for 20 "web renewed after the clock went back" bash -c "[ \$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = 'web'\") -gt $iss_web ]"
wait_for 20 "web deployed" deployed web files
nb=$(chj show web | jq .issuances[0].not_before)
[ "$nb" -le "$(dnow)" ] || fail "the new certificate is not yet valid by the daemon's clock"
sched_turns 3
[ "$(n_iss web)" = $((iss_web + 1)) ] || fail "$(($(n_iss web) - iss_web)) issuances of web for one request"
[ "$(n_iss api)" = "$iss_api" ] || fail "api renewed after the clock went back"
check_deployed_current web
check_db
check_no_tmp
pass "clock an hour back: no renewal, healthy, a requested renewal ran at once and is valid"

stop_daemon
daemon_alive && fail "certherdd did not stop"
pass "clean shutdown"
