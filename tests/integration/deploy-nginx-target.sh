#!/usr/bin/env bash
# The nginx target against a real nginx (Debian nginx-light) on 127.0.0.1:
# files written, `nginx -t` run, the master SIGHUPed through its pidfile;
# the endpoint is verified by a TLS handshake and the master pid stays the
# same across a forced renewal. Then the configuration is broken: the
# next deployment fails with nginx's own message, the files on disk are
# byte for byte the previous ones and nginx still serves the old serial.
. "$(dirname "$0")/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed (./dev test installs nginx-light)"
PORT=$(free_port)
mkdir -p "$T/nginx/logs" "$T/nginx/tmp" "$T/tls"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout "$T/tls/www.key" -out "$T/tls/www.crt" 2>/dev/null
cat >"$T/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $T/nginx/tmp;
	server {
		listen 127.0.0.1:$PORT ssl;
		server_name www.test;
		ssl_certificate $T/tls/www.crt;
		ssl_certificate_key $T/tls/www.key;
		location / { return 200 "ok\n"; }
	}
}
CONF
"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>>"$T/nginx/logs/stderr" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_for 10 "nginx to listen" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
wait_for 10 "the nginx pidfile" test -s "$T/nginx/nginx.pid"

served_serial() {
	openssl s_client -connect "127.0.0.1:$PORT" -servername www.test </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//;s/^0*//' | tr 'A-F' 'a-f'
}
serving() { [ "$(served_serial)" = "$1" ]; }

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
verify_interval: 1h
cas:
  local: { type: local }
targets:
  web:
    type: nginx
    fullchain: "tls/{name}.crt"
    key: "tls/{name}.key"
    pidfile: nginx/nginx.pid
    test_command: ["$NGINX", -t, -p, "$T/nginx", -c, "$T/nginx/nginx.conf"]
    timeout: 20s
certificates:
  www:
    names: [www.test]
    lifetime: 30d
    targets: [web]
    endpoints: ["127.0.0.1:$PORT"]
    verify_trust: var/ca/local/ca.crt
YAML

dep_field() { chj show www | jq -r --arg f "$1" '.issuances[0].deployments[] | select(.target=="web") | .[$f] // empty'; }
# The newest issuance's serial is verified on the endpoint.
verified_newest() {
	chj show www | jq -e '.endpoints[0].state == "verified" and
		.endpoints[0].serial == .certificate.serial' >/dev/null
}

start_daemon
wait_for 20 "deployment to nginx" deployed www web
first=$(inv_serial www)
wait_for 20 "the endpoint to be verified with serial $first" verified_newest
serving "$first" || fail "nginx does not serve $first"
dep_field last_error | has . && fail "a successful deployment has an error: $(dep_field last_error)"
chj show www | jq -r '.events[] | select(.event=="deployed") | .detail' |
	has "wrote 2 files, configuration test passed, sent SIGHUP to pid $NGINX_PID" ||
	fail "the deployment record does not say what was done: $(chj show www | jq -c .events)"
[ "$(stat -c %a "$T/tls/www.key")" = 600 ] || fail "the key is not 0600"
pass "nginx target: files written, config tested, SIGHUP; endpoint verified (serial $first)"

t0=$(date +%s%N)
ch renew www --force >/dev/null
new_serial() { [ "$(inv_serial www)" != "$first" ]; }
wait_for 20 "a new serial" new_serial
second=$(inv_serial www)
wait_for 20 "redeployment" deployed www web
wait_for 20 "serial $second to be verified" verified_newest
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$(cat "$T/nginx/nginx.pid")" = "$NGINX_PID" ] && kill -0 "$NGINX_PID" || fail "nginx master restarted"
serving "$second" || fail "nginx does not serve $second"
pass "forced renewal: serial $second served and verified ${ms} ms after the request, same master pid $NGINX_PID"

# Break nginx's configuration: its test fails, the renewal must not land.
cp -p "$T/tls/www.crt" "$T/before.crt"
cp -p "$T/tls/www.key" "$T/before.key"
echo "certherd_test_not_a_directive on;" >>"$T/nginx/nginx.conf"
"$NGINX" -t -p "$T/nginx" -c "$T/nginx/nginx.conf" 2>/dev/null && fail "the broken configuration passes nginx -t"
ch renew www --force >/dev/null
third_issued() { s=$(inv_serial www) && [ -n "$s" ] && [ "$s" != "$second" ]; }
wait_for 20 "a third serial" third_issued
third=$(inv_serial www)
dep_failed() { [ "$(dep_field state)" = failed ]; }
wait_for 30 "the deployment of $third to fail" dep_failed
err=$(dep_field last_error)
echo "$err" | has "configuration test $NGINX exited 1" || fail "the error does not name the test and its status: $err"
echo "$err" | has 'unknown directive "certherd_test_not_a_directive"' || fail "the error does not carry nginx's message: $err"
echo "$err" | has "the previous files were restored" || fail "the error does not say the files were restored: $err"
cmp -s "$T/before.crt" "$T/tls/www.crt" || fail "www.crt is not the previous file"
cmp -s "$T/before.key" "$T/tls/www.key" || fail "www.key is not the previous file"
[ "$(stat -c %a "$T/tls/www.key")" = 600 ] || fail "the restored key is not 0600"
ls "$T/tls" | has '\.tmp\.' && fail "temporary files left in tls/: $(ls "$T/tls")"
serving "$second" || fail "nginx no longer serves the previous serial $second"
kill -0 "$NGINX_PID" || fail "nginx died"
ch status >/dev/null && fail "status is healthy while a deployment fails"
{ ch status || true; } | has "web" || fail "status does not name the failing target: $(ch status)"
pass "a failing nginx -t: deployment of $third failed ($err), files byte-identical, serial $second still served"

# Repaired configuration: the retry (forced through a restart of the
# schedule by renewing again) deploys.
sed -i '/certherd_test_not_a_directive/d' "$T/nginx/nginx.conf"
ch renew www --force >/dev/null
fourth_issued() { s=$(inv_serial www) && [ -n "$s" ] && [ "$s" != "$third" ]; }
wait_for 20 "a fourth serial" fourth_issued
wait_for 20 "the repaired deployment" deployed www web
wait_for 20 "the fourth serial to be verified" verified_newest
[ "$(cat "$T/nginx/nginx.pid")" = "$NGINX_PID" ] || fail "nginx master restarted"
pass "after the configuration is repaired the next issuance deploys and is verified"
