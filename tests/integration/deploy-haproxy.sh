#!/usr/bin/env bash
# The haproxy target against a real HAProxy (Debian 2.6) on 127.0.0.1,
# through its runtime API on a unix socket at level admin:
# - a certificate HAProxy serves is replaced with set/commit ssl cert
#   while a loop of TLS handshakes runs: none fails, the served serial goes
#   from the old to the new one and never back, HAProxy's pid is the same,
#   the PEM on disk is the new one with mode 0600;
# - a certificate HAProxy does not serve yet goes in with new ssl cert and
#   add ssl crt-list, and its crt-list file gains the line;
# - a wrong socket path fails the deployment with a clear message;
# - the endpoints are verified, no transaction is left open, the key never
#   appears in the log, and a restarted HAProxy serves the same certificates.
. "$(dirname "$0")/lib.sh"

HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || fail "haproxy is not installed (./dev test installs it)"
command -v socat >/dev/null || fail "socat is not installed (./dev test installs it)"
PORT=$(free_port)
H=$T/hap
mkdir -p "$H/certs"

# HAProxy needs a certificate to start: a throwaway one for www.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout "$H/placeholder.key" -out "$H/placeholder.crt" 2>/dev/null
cat "$H/placeholder.crt" "$H/placeholder.key" >"$H/certs/www.pem"
: >"$H/list.txt"
cat >"$H/haproxy.cfg" <<CFG
global
	stats socket $H/admin.sock mode 600 level admin
	stats timeout 10s
defaults
	mode http
	timeout connect 2s
	timeout client 5s
	timeout server 5s
frontend fe
	bind 127.0.0.1:$PORT ssl crt $H/certs/www.pem crt-list $H/list.txt
	http-request return status 200 content-type text/plain string ok
CFG
"$HAPROXY" -c -q -f "$H/haproxy.cfg" || fail "haproxy.cfg does not pass haproxy -c"

start_haproxy() {
	"$HAPROXY" -db -f "$H/haproxy.cfg" >>"$H/haproxy.log" 2>&1 &
	HAP_PID=$!
	PIDS+=("$HAP_PID")
	wait_for 10 "haproxy to listen" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
	wait_for 10 "haproxy's runtime API" test -S "$H/admin.sock"
}
start_haproxy

api() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$H/admin.sock"; }
served_serial() { # SNI
	openssl s_client -connect "127.0.0.1:$PORT" -servername "$1" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//;s/^0*//' | tr 'A-F' 'a-f'
}
serving() { [ "$(served_serial "$1")" = "$2" ]; }
hap_pid() { api "show info" | sed -n 's/^Pid: //p'; }
[ "$(hap_pid)" = "$HAP_PID" ] || fail "the runtime API does not report haproxy's pid"

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
verify_interval: 1h
cas:
  local: { type: local }
targets:
  hap:
    type: haproxy
    socket: "$H/admin.sock"
    crt: "$H/certs/{name}.pem"
    crt_list: "$H/list.txt"
    timeout: 5s
  hap-wrong:
    type: haproxy
    socket: "$H/no-such.sock"
    crt: "$H/certs/{name}.pem"
certificates:
  www:
    names: [www.test]
    lifetime: 30d
    targets: [hap]
    endpoints: ["127.0.0.1:$PORT"]
    verify_trust: var/ca/local/ca.crt
  api:
    names: [api.test]
    lifetime: 30d
    targets: [hap]
    endpoints: ["127.0.0.1:$PORT"]
    verify_trust: var/ca/local/ca.crt
  wrong:
    names: [wrong.test]
    lifetime: 30d
    targets: [hap-wrong]
YAML

verified_newest() {
	chj show "$1" | jq -e '.endpoints[0].state == "verified" and
		.endpoints[0].serial == .certificate.serial' >/dev/null
}
dep_field() { chj show "$1" | jq -r --arg t "$2" --arg f "$3" \
	'.issuances[0].deployments[] | select(.target==$t) | .[$f] // empty'; }
no_transaction() { ! api "show ssl cert" | has -i transaction; }
key_matches() { # PEM file holding cert and key
	[ "$(openssl x509 -noout -pubkey -in "$1" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$1" 2>/dev/null | sha256sum)" ]
}

start_daemon
wait_for 20 "deployment of www" deployed www hap
first=$(inv_serial www)
wait_for 20 "www to be verified with serial $first" verified_newest www
serving www.test "$first" || fail "haproxy does not serve $first"
[ "$(serial_of "$H/certs/www.pem")" = "$first" ] || fail "the PEM on disk is not serial $first"
pass "first issuance of www committed through the runtime API and verified (serial $first)"

# --- a renewal while handshakes run ------------------------------------
handshakes() {
	local s
	while [ ! -e "$T/stop" ]; do
		s=$(timeout 5 openssl s_client -connect "127.0.0.1:$PORT" -servername www.test \
			</dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null || true)
		if [ -n "$s" ]; then
			echo "$s" | sed 's/^serial=//;s/^0*//' | tr 'A-F' 'a-f'
		else
			echo FAIL
		fi
	done >"$T/hs.log"
}
handshakes &
HS_PID=$!
PIDS+=("$HS_PID")
hs_count() { wc -l <"$T/hs.log"; }
hs_at_least() { [ "$(hs_count)" -ge "$1" ]; }
wait_for 10 "handshakes before the renewal" hs_at_least 5

t0=$(date +%s%N)
ch renew www --force >/dev/null
new_serial() { s=$(inv_serial www) && [ -n "$s" ] && [ "$s" != "$first" ]; }
wait_for 20 "a new serial for www" new_serial
second=$(inv_serial www)
seen_new() { has -x "$second" "$T/hs.log"; }
wait_for 20 "the handshake loop to see serial $second" seen_new
ms_served=$((($(date +%s%N) - t0) / 1000000))
n_before=$(hs_count)
wait_for 20 "handshakes after the update" hs_at_least $((n_before + 10))
touch "$T/stop"
wait "$HS_PID" || true
total=$(hs_count)
failures=$(grep -c -x FAIL "$T/hs.log" || true)
others=$({ grep -v -x -e "$first" -e "$second" -e FAIL "$T/hs.log" || true; } | wc -l)
[ "$failures" = 0 ] || fail "$failures of $total handshakes failed during the update"
[ "$others" = 0 ] || fail "handshakes saw serials other than $first and $second"
# Old, then new, never old again.
first_new=$(grep -n -x "$second" "$T/hs.log" | head -1 | cut -d: -f1)
tail -n +"$first_new" "$T/hs.log" | has -x "$first" && fail "the old serial came back after the new one"
[ "$(grep -c -x "$first" "$T/hs.log")" -gt 0 ] || fail "no handshake saw the old serial: the loop proves nothing"
wait_for 20 "the deployment record" deployed www hap
wait_for 20 "www to be verified with serial $second" verified_newest www
kill -0 "$HAP_PID" && [ "$(hap_pid)" = "$HAP_PID" ] || fail "haproxy's pid changed"
[ "$(serial_of "$H/certs/www.pem")" = "$second" ] || fail "the PEM on disk is not serial $second"
[ "$(stat -c %a "$H/certs/www.pem")" = 600 ] || fail "the PEM on disk is not mode 0600"
key_matches "$H/certs/www.pem" || fail "the PEM on disk holds no matching key"
ls "$H/certs" | has '\.tmp\.' && fail "temporary files left: $(ls "$H/certs")"
chj show www | jq -r '.events[] | select(.event=="deployed") | .detail' |
	has "committed $H/certs/www.pem through $H/admin.sock" || fail "the deployment record does not say what was done"
no_transaction || fail "a transaction is left open: $(api 'show ssl cert')"
pass "renewal served after ${ms_served} ms; $total handshakes during the update, failures=$failures, same pid $HAP_PID, PEM on disk mode 0600"

# --- a certificate HAProxy did not serve --------------------------------
wait_for 20 "deployment of api" deployed api hap
api_serial=$(inv_serial api)
serving api.test "$api_serial" || fail "haproxy does not serve api.test with $api_serial"
api "show ssl crt-list $H/list.txt" | has -x "$H/certs/api.pem" || fail "api.pem is not in HAProxy's crt-list"
[ "$(grep -c -x "$H/certs/api.pem" "$H/list.txt")" = 1 ] || fail "list.txt does not hold one api.pem line: $(cat "$H/list.txt")"
[ "$(stat -c %a "$H/certs/api.pem")" = 600 ] || fail "api.pem is not mode 0600"
chj show api | jq -r '.events[] | select(.event=="deployed") | .detail' | has "added it to crt-list $H/list.txt" ||
	fail "the deployment record does not mention the crt-list"
wait_for 20 "api to be verified" verified_newest api
# Once added, a renewal is a plain set + commit (no second crt-list line).
ch renew api --force >/dev/null
api_new() { s=$(inv_serial api) && [ -n "$s" ] && [ "$s" != "$api_serial" ]; }
wait_for 20 "a new serial for api" api_new
api_serial2=$(inv_serial api)
wait_for 20 "api redeployed and verified" verified_newest api
[ "$(grep -c -x "$H/certs/api.pem" "$H/list.txt")" = 1 ] || fail "list.txt gained a second line"
[ "$(api "show ssl crt-list $H/list.txt" | grep -c -x "$H/certs/api.pem")" = 1 ] || fail "HAProxy's crt-list gained a second entry"
no_transaction || fail "a transaction is left open"
pass "a certificate HAProxy did not serve went in through new ssl cert + add ssl crt-list (serial $api_serial, then $api_serial2)"

# --- a wrong socket -----------------------------------------------------
wrong_failed() { [ "$(dep_field wrong hap-wrong state)" = failed ]; }
wait_for 20 "the deployment to the wrong socket to fail" wrong_failed
err=$(dep_field wrong hap-wrong last_error)
echo "$err" | has "$H/no-such.sock" || fail "the error does not name the socket: $err"
echo "$err" | has "cannot connect: No such file or directory" || fail "the error does not say why: $err"
[ ! -e "$H/certs/wrong.pem" ] || fail "a failed deployment left its PEM on disk"
{ ch status || true; } | has "hap-wrong" || fail "status does not name the failing target"
pass "a wrong socket path is a failed deployment: $err"

# The key never reaches the log or the messages.
has -F "PRIVATE KEY" "$T/daemon.log" && fail "the daemon log holds a private key"
keyline=$(sed -n '/PRIVATE KEY/,$p' "$H/certs/www.pem" | sed -n 2p)
[ -n "$keyline" ] || fail "no key line to look for"
has -F "$keyline" "$T/daemon.log" && fail "the daemon log holds key material"
chj show www | has -F "$keyline" && fail "show holds key material"

# A restarted HAProxy reads what the API was given.
kill "$HAP_PID"
wait "$HAP_PID" 2>/dev/null || true
start_haproxy
serving www.test "$second" || fail "after a restart haproxy serves $(served_serial www.test), not $second"
serving api.test "$api_serial2" || fail "after a restart haproxy does not serve api $api_serial2"
pass "a restarted HAProxy serves the same certificates from disk"
