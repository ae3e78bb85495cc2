#!/usr/bin/env bash
# No private key material in any output channel: after issuance, a forced
# renewal, deployments to a file, an exec hook and an nginx target, a
# failing target and endpoint checks, the daemon's log, every status
# socket reply (text and JSON), /metrics, the exec hook's environment and
# the inventory itself (a full SQL dump) are searched for each key's
# base64 lines, its PKCS#8 DER in hex, and the private scalar in hex.
. "$(dirname "$0")/lib.sh"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed"
PORT=$(free_port)
MPORT=$(free_port)
mkdir -p "$T/nginx/logs" "$T/tls" "$T/hook"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout "$T/tls/www.key" -out "$T/tls/www.crt" 2>/dev/null
cat >"$T/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 16; }
http { access_log off;
	server { listen 127.0.0.1:$PORT ssl; ssl_certificate $T/tls/www.crt;
		ssl_certificate_key $T/tls/www.key; location / { return 200 "ok\n"; } } }
CONF
"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>>"$T/nginx/logs/stderr" &
PIDS+=("$!")
wait_for 10 "nginx to listen" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"

cat >"$T/hook/run.sh" <<'HOOK'
#!/bin/sh
env >>"$(dirname "$0")/env.log"
echo "hook ran for $CERTHERD_NAME"
HOOK
chmod +x "$T/hook/run.sh"

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$MPORT
verify_interval: 2s
cas:
  local: { type: local }
targets:
  files: { type: file, fullchain: "tls/{name}.crt", key: "tls/{name}.key" }
  web: { type: nginx, fullchain: "tls/{name}.crt", key: "tls/{name}.key", pidfile: nginx/nginx.pid }
  hook: { type: exec, command: ["$T/hook/run.sh"] }
  broken: { type: file, key: "missing-dir/{name}.key" }
certificates:
  www:
    names: [www.test]
    lifetime: 30d
    targets: [files, web, hook, broken]
    endpoints: ["127.0.0.1:$PORT"]
  api:
    names: [api.test]
    key_type: rsa-2048
    lifetime: 30d
    targets: [files, hook]
YAML

start_daemon
wait_for 30 "www deployed to nginx" deployed www web
wait_for 30 "api deployed" deployed api files
ch renew www --force >/dev/null
ch renew api --force >/dev/null
wait_for 30 "three issuances of each" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' 'SELECT count(*) FROM issuances')\" -ge 4 ]"
wait_for 30 "www redeployed" deployed www web
wait_for 30 "the endpoint verified" bash -c "'$CERTHERD' --socket '$SOCK' --json show www | jq -e '.endpoints[0].state == \"verified\"' >/dev/null"
wait_for 30 "the broken target to fail" bash -c "'$CERTHERD' --socket '$SOCK' --json show www | jq -e '[.issuances[0].deployments[] | select(.target == \"broken\" and .state == \"failed\")] | length == 1' >/dev/null"

# Every output channel.
out=$T/channels
mkdir -p "$out"
cp "$T/daemon.log" "$out/daemon.log"
for v in status list; do
	{ ch "$v" || true; } >"$out/$v.txt" 2>&1
	{ chj "$v" || true; } >"$out/$v.json" 2>&1
done
for n in www api; do
	ch show "$n" >"$out/show-$n.txt" 2>&1
	chj show "$n" >"$out/show-$n.json" 2>&1
done
printf '{"cmd":"show","name":"www"}\n{"cmd":"frobnicate"}\n' |
	socat -t 5 - "UNIX-CONNECT:$SOCK" >"$out/raw.txt"
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$out/metrics.txt" || fail "no /metrics"
cp "$T/hook/env.log" "$out/hook-env.log"
sqlite3 "$T/var/certherd.db" .dump >"$out/inventory.sql"
[ -s "$out/metrics.txt" ] && [ -s "$out/hook-env.log" ] && [ -s "$out/inventory.sql" ] ||
	fail "a channel is empty"

# The needles: for every key ever made (issuance keys and the CA's).
n_keys=0
: >"$T/needles"
for k in $(find "$T/var" -name '*.key' -o -name 'key.pem'); do
	grep -v '^-----' "$k" >>"$T/needles"                        # base64 lines
	openssl pkey -in "$k" -outform DER 2>/dev/null | od -An -tx1 -v | tr -d ' \n' |
		fold -w 64 | head -3 >>"$T/needles"                     # DER, hex
	openssl pkey -in "$k" -text -noout 2>/dev/null |
		awk '/^priv(ate)?(Exponent)?:/ { p = 1; next } /^[a-zA-Z]/ { p = 0 } p' |
		tr -d ' :\n' | fold -w 32 | head -2 >>"$T/needles"      # private scalar, hex
	n_keys=$((n_keys + 1))
done
[ "$n_keys" -ge 5 ] || fail "expected at least 5 keys, found $n_keys"
sort -u "$T/needles" | awk 'length($0) >= 24' >"$T/needles.u"
[ "$(wc -l <"$T/needles.u")" -ge 20 ] || fail "too few needles: $(wc -l <"$T/needles.u")"

# The search must be able to find one: a key line planted in a copy is found.
cp "$out/metrics.txt" "$T/planted.txt"
head -1 "$T/needles.u" >>"$T/planted.txt"
grep -qF -f "$T/needles.u" "$T/planted.txt" || fail "the search does not find a planted needle"

hits=$(grep -rlF -f "$T/needles.u" "$out" || true)
[ -z "$hits" ] || fail "key material in: $hits"
pass "no key material in the log, socket replies, metrics, hook environment or inventory ($n_keys keys, $(wc -l <"$T/needles.u") needles, $(ls "$out" | wc -l) channel files)"

for k in $(find "$T/var" "$T/tls" -name '*.key' -o -name 'key.pem'); do
	[ "$(stat -c %a "$k")" = 600 ] || fail "$k has mode $(stat -c %a "$k")"
done
pass "every key file is 0600"
