#!/usr/bin/env bash
# Chaos: a CA that misbehaves. A fault-injecting HTTPS proxy
# (fault-proxy.py) sits between certherdd and a real Pebble, and answers
# with garbage instead of HTTP (directory), 500 with an HTML body
# (newOrder), nothing at all (finalize: request_timeout 2s) and a response
# cut off mid-body after Pebble acted on it (finalize and certificate
# download; newOrder once: the order is found in the account's list), and
# (once) a 200 with an HTML page for newOrder. For each
# fault, from `certherd --json show`: the certificate is ca-unreachable
# with an error naming the fault, its failures count up, and the retries
# back off (the gaps between faulted attempts in the proxy log grow; the
# daemon runs with CERTHERD_TEST_BACKOFF=3, so 3 s, 6 s, 12 s); a
# certificate on the local CA keeps renewing meanwhile. Once the fault is
# lifted the certificate is issued and deployed on the next retry. At the
# end: one issuance per renewal, every certificate Pebble issued recorded
# exactly once, every order accounted for, integrity_check ok, no
# temporary files, the deployed files hold the inventory's serial.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/pebble.sh"

for t in python3 openssl sqlite3 jq; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# No random badNonce answers: a fault aimed at one request (the newOrder
# cut off after Pebble created the order) must meet the request that does
# it, not a 400 Pebble chose to send instead (then no order exists to be
# found and the step waits for a 201 that never comes).
start_pebble PEBBLE_WFE_NONCEREJECT=0
UPSTREAM=${PEBBLE_DIR_URL#https://}
UPSTREAM=${UPSTREAM%%/*}

# The proxy's own TLS certificate, from a CA of its own.
S=$T/proxy
mkdir -p "$S" "$T/out"
tls_test_cert "$S" "certherd test fault proxy CA"
CTL=$S/control
LOG=$S/requests.log
: >"$LOG"
fault() { echo "$*" >"$CTL"; }
fault mode=garbage 'path=^/dir$'
PORT=$(free_port)
python3 "$SRCDIR/tests/chaos/fault-proxy.py" "$PORT" "$S/cert.pem" "$S/key.pem" "$UPSTREAM" \
	"$PEBBLE_TLS_CA" "$CTL" "$LOG" >"$S/proxy.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "the fault proxy" curl -sS --max-time 2 --cacert "$S/ca.pem" -o /dev/null "https://127.0.0.1:$PORT/nothing"

TIMEOUT=2
BACKOFF=3
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  local: { type: local }
  pebble:
    type: acme
    directory: https://127.0.0.1:$PORT/dir
    trust: $S/ca.pem
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    request_timeout: ${TIMEOUT}s
targets:
  files: { type: file, cert: "out/{name}.crt", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
certificates:
  www: { names: [www.faults.test], ca: pebble, targets: [files] }
  loc: { names: [loc.faults.test], ca: local, lifetime: 20s, targets: [files] }
YAML

# request_timeout is bounded: an hour-long hang is refused at load.
sed "s/request_timeout: ${TIMEOUT}s/request_timeout: 1h/" "$T/certherd.yaml" >"$T/bad.yaml"
out=$("$CERTHERDD" --check-config --config "$T/bad.yaml" 2>&1) && fail "request_timeout: 1h was accepted"
echo "$out" | has -F "$T/bad.yaml:7:5: cas.pebble: request_timeout must be 1s-10m, not 3600s" ||
	fail "request_timeout: 1h: $out"

field() { chj show "$1" | jq -r ".certificate.$2 // empty"; }
issuances() { sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = '$1'"; }
failures_reach() { [ "$(field www failures)" -ge "$1" ] && [ "$(field www last_outcome)" = ca-unreachable ]; }
# Start times of the faulted attempts since log line $1: faulted requests
# less than a second apart belong to one attempt.
attempt_times() {
	tail -n +"$1" "$LOG" | awk '$4 != "pass" { if (!n || $1 - last > 1) { print $1; n++ } last = $1 }'
}
n_attempts() { attempt_times "$1" | wc -l; }
# Issued, deployed, and the file holds the inventory's serial.
www_settled() {
	[ "$(field www state)" = valid ] && [ "$(issuances www)" = "$1" ] && deployed www files &&
		[ "$(serial_of "$T/out/www.crt")" = "$(inv_serial www)" ]
}

# phase NAME EXPECTED_ERROR RENEWALS_SO_FAR FIRST_LOG_LINE: the fault in $CTL is on; www is
# being renewed. Three faulted attempts, each a clear ca-unreachable; the
# gaps grow; loc renews meanwhile; the fault is lifted and www is issued.
phase() {
	local name=$1 want=$2 renewals=$3 from=$4 t1 t2 t3 g1 g2 loc0 err
	loc0=$(issuances loc)
	wait_for 60 "$name: a first failed attempt" failures_reach 1
	err=$(field www last_error)
	echo "$err" | has -F "$want" || fail "$name: the error does not say '$want': $err"
	wait_for 60 "$name: a third failed attempt" failures_reach 3
	[ "$(n_attempts "$from")" -ge 3 ] || fail "$name: $(n_attempts "$from") faulted attempts in the proxy log for 3 failures"
	read -r t1 t2 t3 <<<"$(attempt_times "$from" | head -n 3 | tr '\n' ' ')"
	g1=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
	g2=$(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.1f", b - a }')
	# 3 s then 6 s, each minus up to 1 s of rounding; a flat backoff fails.
	awk -v a="$g1" -v b="$g2" 'BEGIN { exit !(b >= a + 1) }' || fail "$name: the retries do not back off: gaps ${g1}s then ${g2}s"
	[ "$(field www state)" = failing ] || fail "$name: www is $(field www state), not failing"
	{ ch status || true; } | has www || fail "$name: status does not list www"
	wait_for 30 "$name: loc renewed while www fails" bash -c "[ \$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = 'loc'\") -gt $loc0 ]"
	[ "$(field www last_outcome)" = ca-unreachable ] || fail "$name: loc renewed, but www is $(field www last_outcome)"
	local lifted=$SECONDS
	fault mode=pass
	wait_for 40 "$name: www issued after the fault is lifted" www_settled "$renewals"
	pass "$name: ca-unreachable ($err); 3 attempts, gaps ${g1}s then ${g2}s; loc renewed $(($(issuances loc) - loc0)) times meanwhile; issued and deployed $((SECONDS - lifted))s after the fault was lifted"
	FIGURES+=("$name: 3+ faulted attempts, gaps ${g1}s/${g2}s, recovered in $((SECONDS - lifted))s")
}
FIGURES=()

# 1. The directory answers random bytes instead of HTTP (from the start).
start_daemon CERTHERD_TEST_BACKOFF=$BACKOFF
phase "garbage on the directory" "directory: malformed response" 1 1

# 2. newOrder answers 500 with an HTML page.
from=$(($(wc -l <"$LOG") + 1))
fault mode=http500 'path=^/order-plz'
ch renew www --force >/dev/null
phase "HTTP 500 on newOrder" "newOrder: HTTP 500" 2 "$from"

# 3. finalize never answers: each attempt ends after request_timeout.
from=$(($(wc -l <"$LOG") + 1))
fault mode=timeout 'path=^/finalize-order/'
ch renew www --force >/dev/null
wait_for 60 "a finalize request held by the proxy" bash -c "tail -n +$from '$LOG' | grep -q ' timeout '"
# Ended within the request timeout (2 s), well before the 30 s default.
wait_for 12 "the hung finalize to end as ca-unreachable" failures_reach 1
phase "finalize times out" "timed out" 3 "$from"

# 4. Pebble finalizes, but the answer is cut off mid-body; so is every
# certificate download after it. The next attempts must resume the order
# Pebble has already issued for, not order a second certificate.
from=$(($(wc -l <"$LOG") + 1))
fault mode=close-mid 'path=^/(finalize-order|certZ)/'
ch renew www --force >/dev/null
phase "response cut off after finalize" "connection closed" 4 "$from"
tail -n +"$from" "$LOG" | grep -q ' POST /finalize-order/[^ ]* close-mid 200$' ||
	fail "the cut-off finalize never reached pebble"

# 5. Pebble creates an order, but the newOrder answer is cut off, once
# (count=1): the daemon never learnt the order's URL. The retry finds the
# order in the account's order list instead of creating a second one.
from=$(($(wc -l <"$LOG") + 1))
fault mode=close-mid 'path=^/order-plz$' count=1
ch renew www --force >/dev/null
wait_for 60 "the newOrder answer cut off" bash -c "tail -n +$from '$LOG' | grep -q ' POST /order-plz close-mid 201$'"
lifted=$SECONDS
wait_for 40 "www issued after the cut-off newOrder" www_settled 5
# The failed attempt is in the certificate's event log.
err=$(chj show www | jq -r '[.events[] | select(.event == "ca-unreachable")][0].detail')
echo "$err" | has -F "newOrder: connection closed" || fail "newOrder cut off: the last ca-unreachable event says $err"
[ "$(tail -n +"$from" "$LOG" | grep -c ' POST /order-plz ')" = 1 ] ||
	fail "a second order was created after the cut-off newOrder: $(tail -n +"$from" "$LOG" | grep ' POST /order-plz ')"
pass "newOrder cut off after pebble created the order ($err): the order was found and finished, none created again; issued $((SECONDS - lifted))s later"
FIGURES+=("newOrder cut off once: 1 failed attempt, the orphan order resumed, recovered in $((SECONDS - lifted))s")

# 6. newOrder answers 200 with an HTML page instead of the order, once:
# a malformed answer, retried as ca-unreachable, not a rejection (which
# would count against the CA's failed-validation budget).
from=$(($(wc -l <"$LOG") + 1))
fault mode=html200 'path=^/order-plz$' count=1
ch renew www --force >/dev/null
wait_for 60 "the HTML newOrder answer" bash -c "tail -n +$from '$LOG' | grep -q ' POST /order-plz html200 '"
lifted=$SECONDS
wait_for 40 "www issued after the HTML newOrder answer" www_settled 6
ev=$(chj show www | jq -r '[.events[] | select(.event == "ca-unreachable" or .event == "rejected")][0] | "\(.event): \(.detail)"')
[ "$ev" = "ca-unreachable: newOrder: malformed response (the CA gave no order URL)" ] ||
	fail "a 200 with an HTML body ended as $ev"
pass "a 200 with an HTML body for newOrder: $ev; issued $((SECONDS - lifted))s later"
FIGURES+=("HTML 200 for newOrder once: ca-unreachable, recovered in $((SECONDS - lifted))s")
# --- no loss -------------------------------------------------------------
[ "$(serial_of "$T/out/www.crt")" = "$(inv_serial www)" ] || fail "www: the deployed file is not the inventory's serial"
stop_daemon
has -F "$UPSTREAM" "$T/daemon.log" && fail "the daemon reached pebble ($UPSTREAM) directly, not through the proxy"
pebble_root >"$T/pebble-root.pem"
openssl verify -CAfile "$T/pebble-root.pem" -untrusted "$T/out/www.fullchain.pem" "$T/out/www.crt" >/dev/null ||
	fail "www's deployed chain does not verify against pebble's root"
left=$(find "$T/out" "$T/var" -name '*.tmp*')
[ -z "$left" ] || fail "temporary files left behind: $left"
[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
[ "$(sql 'SELECT count(*) - count(DISTINCT serial) FROM issuances')" = 0 ] || fail "two issuances share a serial"
[ "$(issuances www)" = 6 ] || fail "www: $(issuances www) issuances for 6 renewals"
sed -n 's/.*Issued certificate serial \([0-9a-f]*\) .*/\1/p' "$T/pebble/pebble.log" | sed 's/^0*//' | sort >"$T/pebble-serials"
sql "SELECT serial FROM issuances WHERE ca = 'pebble'" | sed 's/^0*//' | sort >"$T/our-serials"
diff "$T/pebble-serials" "$T/our-serials" >&2 || fail "the certificates pebble issued and the issuances recorded differ"
orders=$(grep -c 'Added order' "$T/pebble/pebble.log" || true)
# Every order went through the proxy: its log counts the same.
proxied=$(grep -c ' POST /order-plz [a-z-]* 201$' "$LOG" || true)
[ "$proxied" = "$orders" ] || fail "pebble made $orders orders, the proxy saw $proxied created"
certs=$(wc -l <"$T/pebble-serials")
abandoned=$((orders - certs))
[ "$abandoned" -ge 0 ] || fail "$certs certificates from $orders orders"
pass "no loss: 6 renewals, 6 issuances, $certs certificates at pebble each recorded once, $orders orders ($abandoned abandoned), integrity ok, no temporary files"
faulted=$(awk '$4 != "pass"' "$LOG" | wc -l)
echo "# faults-ca: $faulted faulted requests of $(wc -l <"$LOG"); $orders pebble orders, $abandoned abandoned"
for f in "${FIGURES[@]}"; do echo "# $f"; done
