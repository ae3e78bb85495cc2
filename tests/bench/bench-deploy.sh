#!/usr/bin/env bash
# One renewed certificate deployed to, and verified on, many endpoints:
# NGINX nginx and HAPROXY haproxy instances on loopback, BINDS listening
# ports each (default 20 + 20 instances x 3 + 2 binds = 100 endpoints).
# certherd has an nginx target per nginx instance (files + SIGHUP) and a
# haproxy target per HAProxy (runtime API), and lists every port as an
# endpoint. Measured from `certherd renew --force` to every endpoint
# verified on the new serial, as the daemon reports it, and checked from
# the outside with one handshake per endpoint.
#
# Compared in the same run with the script a user would otherwise write:
# for each server copy the files and HUP nginx, or set+commit through
# socat for HAProxy, one after the other, then an openssl s_client per
# endpoint until each serves the new serial.
#
#   NGINX=20 HAPROXY=20 NGINX_BINDS=3 HAPROXY_BINDS=2 RUNS=3
#
# Figures only: the exit status is 0 unless something breaks.
. "$(dirname "$0")/lib.sh"

need nginx haproxy openssl socat jq sqlite3

NGINX_N=${NGINX:-20}
HAPROXY_N=${HAPROXY:-20}
NGINX_BINDS=${NGINX_BINDS:-3}
HAPROXY_BINDS=${HAPROXY_BINDS:-2}
RUNS=${RUNS:-3}
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
BASE_PORT=${BASE_PORT:-24000}

cd "$T"
mkdir -p tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout tls/boot.key -out tls/boot.crt 2>/dev/null
cat tls/boot.crt tls/boot.key >tls/boot.pem

port=$BASE_PORT
ENDPOINTS=()
start_nginx() {
	local i=$1 d=$T/ngx$1 b listen=""
	mkdir -p "$d/logs"
	cp tls/boot.crt "$d/www.crt"
	cp tls/boot.key "$d/www.key"
	for b in $(seq 1 "$NGINX_BINDS"); do
		listen+="listen 127.0.0.1:$port ssl; "
		ENDPOINTS+=("127.0.0.1:$port")
		port=$((port + 1))
	done
	cat >"$d/nginx.conf" <<CONF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 64; }
http {
	access_log off;
	server { $listen ssl_certificate $d/www.crt; ssl_certificate_key $d/www.key;
		location / { return 200 "ok\n"; } }
}
CONF
	"$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' 2>>"$d/logs/stderr" &
	PIDS+=("$!")
}
start_haproxy() {
	local i=$1 d=$T/hap$1 b binds=""
	mkdir -p "$d"
	cp tls/boot.pem "$d/www.pem"
	chmod 600 "$d/www.pem"
	for b in $(seq 1 "$HAPROXY_BINDS"); do
		binds+="	bind 127.0.0.1:$port ssl crt $d/www.pem
"
		ENDPOINTS+=("127.0.0.1:$port")
		port=$((port + 1))
	done
	cat >"$d/haproxy.cfg" <<CONF
global
	stats socket $d/admin.sock mode 600 level admin
	maxconn 256
defaults
	mode http
	timeout connect 5s
	timeout client 10s
	timeout server 10s
frontend fe
$binds	http-request return status 200 content-type text/plain string ok
CONF
	"$HAPROXY_BIN" -f "$d/haproxy.cfg" -db >"$d/stderr" 2>&1 &
	PIDS+=("$!")
}
for i in $(seq 1 "$NGINX_N"); do start_nginx "$i"; done
for i in $(seq 1 "$HAPROXY_N"); do start_haproxy "$i"; done
N_EP=${#ENDPOINTS[@]}

# Every endpoint answering TLS.
deadline=$(($(date +%s) + 30))
for ep in "${ENDPOINTS[@]}"; do
	until timeout 5 openssl s_client -connect "$ep" </dev/null >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$ep does not answer"
		sleep 0.05
	done
done

{
	cat <<YAML
state_dir: var
socket: certherd.sock
log_level: notice
metrics_listen: "off"
concurrency: 16
verify_interval: 1h
stale_grace: 1h
cas:
  local: { type: local }
targets:
YAML
	for i in $(seq 1 "$NGINX_N"); do
		echo "  ngx$i: { type: nginx, fullchain: \"ngx$i/www.crt\", key: \"ngx$i/www.key\", pidfile: \"ngx$i/nginx.pid\" }"
	done
	for i in $(seq 1 "$HAPROXY_N"); do
		echo "  hap$i: { type: haproxy, socket: \"$T/hap$i/admin.sock\", crt: \"$T/hap$i/www.pem\" }"
	done
	echo "certificates:"
	echo "  www:"
	echo "    names: [www.test]"
	echo "    lifetime: 30d"
	printf '    targets: ['
	for i in $(seq 1 "$NGINX_N"); do printf 'ngx%s, ' "$i"; done
	for i in $(seq 1 "$HAPROXY_N"); do printf 'hap%s, ' "$i"; done
	echo ']' | sed 's/, ]/]/'
	printf '    endpoints: ['
	printf '"%s", ' "${ENDPOINTS[@]}"
	echo ']'
} | sed 's/, ]$/]/' >certherd.yaml
"$CERTHERDD" -n -c certherd.yaml >/dev/null || fail "the generated configuration is invalid"

SOCK=$T/certherd.sock
(exec "$CERTHERDD" -c certherd.yaml --log-target stderr >>daemon.log 2>&1) &
DPID=$!
PIDS+=("$DPID")
chj() { "$CERTHERD" --socket "$SOCK" --json "$@"; }

# all_verified SERIAL: every endpoint verified on SERIAL.
all_verified() {
	chj show www 2>/dev/null | jq -e --arg s "$1" --argjson n "$N_EP" \
		'[.endpoints[] | select(.state == "verified" and .serial == $s)] | length == $n' >/dev/null
}
cur_serial() { chj show www 2>/dev/null | jq -r '.certificate.serial // empty'; }
wait_until() { # SECONDS CMD...: polls every 20 ms
	local end
	end=$(calc "$(now) + $1")
	shift
	until "$@"; do
		[ "$(calc "$(now) < $end ? 1 : 0")" = 1 ] || return 1
		sleep 0.02
	done
}

# outside_check SERIAL: one handshake per endpoint, each must serve SERIAL.
outside_check() {
	local ep s bad=0
	for ep in "${ENDPOINTS[@]}"; do
		s=$(timeout 5 openssl s_client -connect "$ep" -servername www.test </dev/null 2>/dev/null |
			openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//')
		[ "$s" = "${1#0}" ] || bad=$((bad + 1))
	done
	echo "$bad"
}

echo "== certherd deploy benchmark"
machine | sed 's/^/# /'
echo "# $NGINX_N nginx x $NGINX_BINDS binds + $HAPROXY_N haproxy x $HAPROXY_BINDS binds = $N_EP endpoints; runs: $RUNS"
echo

wait_until 120 bash -c "[ -n \"\$('$CERTHERD' --socket '$SOCK' --json show www 2>/dev/null | jq -r '.certificate.serial // empty')\" ]" ||
	fail "no first issuance"
first=$(cur_serial)
wait_until 120 all_verified "$first" || fail "the first issuance is not verified on all $N_EP endpoints"
echo "first issuance verified on all $N_EP endpoints"

ch_times=()
for run in $(seq 1 "$RUNS"); do
	old=$(cur_serial)
	t0=$(now)
	"$CERTHERD" --socket "$SOCK" renew www --force >/dev/null || fail "renew refused"
	wait_until 60 bash -c "s=\$('$CERTHERD' --socket '$SOCK' --json show www | jq -r '.certificate.serial'); [ \"\$s\" != '$old' ]" ||
		fail "no new serial"
	t1=$(now)
	new=$(cur_serial)
	wait_until 120 all_verified "$new" || fail "run $run: not all endpoints verified on $new"
	t2=$(now)
	bad=$(outside_check "$new")
	[ "$bad" = 0 ] || fail "run $run: $bad endpoints do not serve $new from the outside"
	ch_times+=("$(calc "$t2 - $t1")")
	printf '  certherd run %d: issued %.3f s after the request, all %d verified %.3f s after issuance (outside check: 0 stale)\n' \
		"$run" "$(calc "$t1 - $t0")" "$N_EP" "$(calc "$t2 - $t1")"
done

# The script a user would write: the new files from certherd's own issuance.
dir=$(sqlite3 var/certherd.db "SELECT key_path FROM issuances ORDER BY id DESC LIMIT 1" | xargs dirname)
peer_times=()
for run in $(seq 1 "$RUNS"); do
	# Alternate between the two newest issuances so every run is a change.
	dir=$(sqlite3 var/certherd.db "SELECT key_path FROM issuances ORDER BY id DESC LIMIT 1 OFFSET $((run % 2))" | xargs dirname)
	# The issuance directory holds the key; the certificate and chain come
	# from the inventory, written beside it as the script's input (untimed).
	sqlite3 var/certherd.db "SELECT cert_pem FROM issuances ORDER BY id DESC LIMIT 1 OFFSET $((run % 2))" >"$dir/cert.pem"
	sqlite3 var/certherd.db "SELECT cert_pem || chain_pem FROM issuances ORDER BY id DESC LIMIT 1 OFFSET $((run % 2))" >"$dir/fullchain.pem"
	want=$(openssl x509 -in "$dir/cert.pem" -noout -serial | sed 's/serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//')
	t0=$(now)
	for i in $(seq 1 "$NGINX_N"); do
		cp "$dir/fullchain.pem" "ngx$i/www.crt.new" && mv "ngx$i/www.crt.new" "ngx$i/www.crt"
		cp "$dir/key.pem" "ngx$i/www.key.new" && mv "ngx$i/www.key.new" "ngx$i/www.key"
		kill -HUP "$(cat "ngx$i/nginx.pid")"
	done
	for i in $(seq 1 "$HAPROXY_N"); do
		cat "$dir/fullchain.pem" "$dir/key.pem" >"hap$i/payload"
		{ printf 'set ssl cert %s <<\n' "$T/hap$i/www.pem"; cat "hap$i/payload"; printf '\n'; } |
			socat -t 5 - "UNIX-CONNECT:$T/hap$i/admin.sock" >/dev/null
		echo "commit ssl cert $T/hap$i/www.pem" | socat -t 5 - "UNIX-CONNECT:$T/hap$i/admin.sock" >/dev/null
	done
	for ep in "${ENDPOINTS[@]}"; do
		until [ "$(timeout 5 openssl s_client -connect "$ep" -servername www.test </dev/null 2>/dev/null |
			openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//')" = "$want" ]; do
			[ "$(calc "$(now) - $t0 < 120 ? 1 : 0")" = 1 ] || fail "peer script: $ep never served $want"
		done
	done
	t1=$(now)
	peer_times+=("$(calc "$t1 - $t0")")
	printf '  shell script run %d: deployed and checked on %d endpoints in %.3f s\n' "$run" "$N_EP" "$(calc "$t1 - $t0")"
done

c=$(median "${ch_times[@]}")
p=$(median "${peer_times[@]}")
echo
echo "== summary (medians of $RUNS runs)"
printf '%-52s %8.3f s\n' "certherd: issuance to all $N_EP verified" "$c"
printf '%-52s %8.3f s\n' "shell script: deploy + s_client check of all $N_EP" "$p"
printf '%-52s %8.2fx\n' "shell script / certherd" "$(calc "$p / $c")"
printf '%-52s %8s\n' "target: under 10 s on this machine" "$(if [ "$(calc "$c < 10 ? 1 : 0")" = 1 ]; then echo pass; else echo FAIL; fi)"
