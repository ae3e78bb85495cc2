#!/usr/bin/env bash
# Verification as a stage of its own: after each deployment and every
# verify_interval, a real TLS handshake to each endpoint compares the
# served leaf with the newest issuance. Drift is caught: an endpoint put
# back on the old certificate by hand is reported stale (and, past
# stale_grace, makes status fail); a certificate we never issued is
# foreign; a stopped server is unreachable.
. "$(dirname "$0")/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed"
PORT=$(free_port)
mkdir -p "$T/nginx/logs" "$T/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout "$T/tls/www.key" -out "$T/tls/www.crt" 2>/dev/null
cat >"$T/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 64; }
http {
	access_log off;
	server {
		listen 127.0.0.1:$PORT ssl;
		ssl_certificate $T/tls/www.crt;
		ssl_certificate_key $T/tls/www.key;
		location / { return 200 "ok\n"; }
	}
}
CONF
start_nginx() {
	"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>>"$T/nginx/logs/stderr" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	wait_for 10 "nginx to listen" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
}
start_nginx

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
verify_interval: 2s
stale_grace: 3s
cas:
  local: { type: local }
targets:
  files: { type: file, fullchain: "tls/{name}.crt", key: "tls/{name}.key" }
  nginx: { type: reload, pidfile: nginx/nginx.pid }
certificates:
  www:
    names: [www.test]
    lifetime: 30d
    targets: [files, nginx]
    endpoints: ["127.0.0.1:$PORT"]
    verify_trust: var/ca/local/ca.crt
YAML

ep_state() { chj show www | jq -r '.endpoints[0].state'; }
ep_is() { [ "$(ep_state)" = "$1" ]; }

start_daemon
wait_for 20 "the endpoint to be verified" ep_is verified
first=$(inv_serial www)
chj show www | jq -e '.endpoints[0].serial == .certificate.serial' >/dev/null || fail "verified serial differs"
chj show www | jq -e '.issuances[0].deployments | all(.verified_at > 0)' >/dev/null ||
	fail "deployments of the verified issuance have no verified_at"
ch status >/dev/null || fail "status not healthy with a verified endpoint: $(ch status)"
pass "after deployment the endpoint is verified by a TLS handshake (serial $first)"

old_dir=$(sql "SELECT key_path FROM issuances ORDER BY id LIMIT 1" | xargs dirname)
ch renew www --force >/dev/null
new_verified() {
	chj show www | jq -e --arg f "$first" '.certificate.serial as $s | ($s | ltrimstr("0")) != $f and
		.endpoints[0].state == "verified" and .endpoints[0].serial == $s' >/dev/null
}
wait_for 20 "the new serial to be verified" new_verified
second=$(inv_serial www)
pass "the renewal is verified on the endpoint (serial $second)"

# Drift: someone restores the old certificate by hand.
# The issuance directory holds the key only; the certificate is in the inventory.
sql "SELECT cert_pem || chain_pem FROM issuances ORDER BY id LIMIT 1" >"$T/tls/www.crt"
cp "$old_dir/key.pem" "$T/tls/www.key"
kill -HUP "$NGINX_PID"
wait_for 20 "the periodic check to report stale" ep_is stale
chj show www | jq -r '.endpoints[0].message' | has "older serial 0*$first" || fail "stale message does not name the old serial"
wait_for 20 "stale past the grace to fail status" bash -c "! '$CERTHERD' --socket '$SOCK' status >/dev/null"
{ ch status || true; } | has "www @ 127.0.0.1:$PORT: stale" || fail "status does not name the stale endpoint: $(ch status)"
pass "an endpoint swapped back to the old certificate is reported stale, and status fails past stale_grace"

# A certificate certherd never issued.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=www.test -keyout "$T/tls/www.key" -out "$T/tls/www.crt" 2>/dev/null
kill -HUP "$NGINX_PID"
wait_for 20 "foreign" ep_is foreign
pass "a certificate we never issued is reported foreign"

kill "$NGINX_PID"
wait "$NGINX_PID" 2>/dev/null || true
wait_for 20 "unreachable" ep_is unreachable
chj show www | jq -r '.events[] | select(.stage=="verify") | .event' | sort -u | tr '\n' ' ' | has "foreign.*stale.*unreachable.*verified" ||
	fail "the event log does not record each state change"
pass "a stopped server is reported unreachable; each change is in the event log"
