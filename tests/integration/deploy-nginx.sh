#!/usr/bin/env bash
# A real nginx from Debian on 127.0.0.1: certherd issues a certificate,
# writes the files, SIGHUPs nginx through its pidfile, and a real TLS
# handshake shows nginx serving the inventory's serial. A forced renewal
# changes the served serial again; nginx's master pid stays the same.
. "$(dirname "$0")/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed (./dev test installs nginx-light)"
PORT=$(free_port)
mkdir -p "$T/nginx/logs" "$T/tls"

# nginx needs a certificate to start: a throwaway one for other names.
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
[ "$(cat "$T/nginx/nginx.pid")" = "$NGINX_PID" ] || fail "pidfile does not hold the master pid"

served_serial() {
	openssl s_client -connect "127.0.0.1:$PORT" -servername www.test </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//;s/^0*//' | tr 'A-F' 'a-f'
}
serving() { [ "$(served_serial)" = "$1" ]; }

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
targets:
  nginx-files: { type: file, fullchain: "tls/{name}.crt", key: "tls/{name}.key" }
  nginx-reload: { type: reload, pidfile: nginx/nginx.pid }
certificates:
  www: { names: [www.test], lifetime: 30d, targets: [nginx-files, nginx-reload] }
YAML
start_daemon
wait_for 20 "deployment to nginx" deployed www nginx-reload
deployed www nginx-files || fail "files not deployed"
first=$(inv_serial www)
wait_for 10 "nginx to serve serial $first" serving "$first"
pass "nginx serves the issued certificate (serial $first) after the SIGHUP"

ch renew www --force >/dev/null
wait_for 20 "a new serial" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show www | jq -r .certificate.serial)\" != '$first' ]"
second=$(inv_serial www)
wait_for 20 "redeployment" deployed www nginx-reload
wait_for 10 "nginx to serve serial $second" serving "$second"
[ "$(cat "$T/nginx/nginx.pid")" = "$NGINX_PID" ] && kill -0 "$NGINX_PID" || fail "nginx master restarted"
chj show www | jq -e '.issuances[0].deployments | map(.target) | index("nginx-reload")' >/dev/null ||
	fail "reload deployment not recorded"
chj show www | jq -r '.events[] | select(.event=="deployed") | .detail' | has "sent SIGHUP to pid $NGINX_PID" ||
	fail "the deployment record does not name the signal and pid"
pass "forced renewal: nginx now serves serial $second with the same master pid"
