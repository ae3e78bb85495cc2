#!/usr/bin/env bash
# dns-01 against a real BIND and a real Pebble: named (started here on a
# free loopback port, zone example.test updatable with TSIG key certherd)
# is Pebble's only DNS server, and PEBBLE_VA_ALWAYS_VALID is unset, so
# Pebble resolves the TXT records the daemon adds by RFC 2136 updates.
# A certificate for www.example.test and *.example.test is issued, the
# records are gone afterwards; a dns_hook CA (nsupdate) issues too; a
# wrong TSIG secret fails as misconfigured, naming server and key but not
# the secret; a wildcard on an http-01 CA is refused at config load.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pebble.sh"

for t in named tsig-keygen dig nsupdate; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed (apt-get install bind9 bind9-dnsutils)"; exit 77; }
done

# --- BIND ---------------------------------------------------------------------------
B=$T/bind
mkdir -p "$B"
tsig-keygen -a hmac-sha256 certherd >"$T/tsig.key"
chmod 600 "$T/tsig.key"
# The same key name with another secret.
tsig-keygen -a hmac-sha256 certherd >"$T/wrong.key"
chmod 600 "$T/wrong.key"
SECRET=$(sed -n 's/.*secret "\(.*\)";.*/\1/p' "$T/tsig.key")
WRONG_SECRET=$(sed -n 's/.*secret "\(.*\)";.*/\1/p' "$T/wrong.key")
[ -n "$SECRET" ] && [ "$SECRET" != "$WRONG_SECRET" ] || fail "tsig-keygen gave no usable secrets"
cat >"$B/example.test.db" <<'ZONE'
$TTL 60
@	IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@	IN NS ns.example.test.
ns	IN A 127.0.0.1
ZONE
start_named() {
	local attempt deadline
	for attempt in 1 2 3; do
		DNS_PORT=$(free_port)
		cat >"$B/named.conf" <<CONF
options {
	directory "$B";
	pid-file "$B/named.pid";
	session-keyfile "$B/session.key";
	listen-on port $DNS_PORT { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	allow-query { any; };
	querylog yes;
};
controls { };
include "$T/tsig.key";
zone "example.test" {
	type primary;
	file "$B/example.test.db";
	allow-update { key certherd; };
};
CONF
		named -g -c "$B/named.conf" -p "$DNS_PORT" >"$B/named.log" 2>&1 &
		NAMED_PID=$!
		PIDS+=("$NAMED_PID")
		deadline=$((SECONDS + 20))
		while kill -0 "$NAMED_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
			if [ -n "$(dig @127.0.0.1 -p "$DNS_PORT" +short +time=1 +tries=1 SOA example.test 2>/dev/null)" ]; then
				return 0
			fi
			sleep 0.05
		done
		echo "named attempt $attempt failed:" >&2
		tail -n 5 "$B/named.log" >&2
		kill "$NAMED_PID" 2>/dev/null || true
		wait "$NAMED_PID" 2>/dev/null || true
	done
	fail "named did not start"
}
start_named
txt() { dig @127.0.0.1 -p "$DNS_PORT" +short +time=1 +tries=2 TXT "$1"; }
pass "named on 127.0.0.1:$DNS_PORT serves example.test"

# --- Pebble through that BIND -------------------------------------------------------
unset PEBBLE_VA_ALWAYS_VALID
PEBBLE_DNS=127.0.0.1:$DNS_PORT start_pebble PEBBLE_AUTHZREUSE=0
pebble_root >"$T/root.pem" || fail "cannot fetch pebble's root"

# A hook for other DNS providers: here nsupdate with the same key.
cat >"$T/hook.sh" <<HOOK
#!/bin/sh
echo "\$1 \$2 \$3" >>"$T/hook.log"
case "\$1" in
add) op="update add \$2 60 TXT \$3" ;;
remove) op="update delete \$2 TXT \$3" ;;
*) exit 2 ;;
esac
printf 'server 127.0.0.1 $DNS_PORT\nzone example.test\n%s\nsend\n' "\$op" | nsupdate -k "$T/tsig.key"
HOOK
chmod 755 "$T/hook.sh"

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  pebble:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    challenge: dns-01
    dns_server: 127.0.0.1:$DNS_PORT
    dns_tsig_key_file: $T/tsig.key
    dns_timeout: 30s
  wrongkey:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    challenge: dns-01
    dns_server: 127.0.0.1:$DNS_PORT
    dns_zone: example.test
    dns_tsig_key_file: $T/wrong.key
  hooked:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    challenge: dns-01
    dns_hook: [$T/hook.sh]
    dns_check_servers: [127.0.0.1:$DNS_PORT]
    dns_timeout: 30s
targets:
  files: { type: file, cert: "out/{name}.crt", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
certificates:
  www: { names: [www.example.test, "*.example.test"], ca: pebble, targets: [files] }
  bad: { names: [bad.example.test], ca: wrongkey, targets: [files] }
  hook: { names: [hook.example.test], ca: hooked, targets: [files] }
YAML

outcome() { chj show "$1" | jq -r .certificate.last_outcome; }
error_of() { chj show "$1" | jq -r .certificate.last_error; }
outcome_is() { [ "$(outcome "$1")" = "$2" ]; }

start_daemon
wait_for 90 "www from pebble over dns-01" deployed www files
openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/www.fullchain.pem" "$T/out/www.crt" >/dev/null ||
	fail "www: the chain does not verify against pebble's root"
sans=$(openssl x509 -noout -ext subjectAltName -in "$T/out/www.crt")
echo "$sans" | has -F 'DNS:*.example.test' || fail "www: no wildcard SAN: $sans"
echo "$sans" | has -F 'DNS:www.example.test' || fail "www: no www SAN: $sans"
# Pebble looked the records up in BIND: its queries ask for recursion (+), the daemon's do not (-).
has 'query: _acme-challenge.www.example.test IN TXT +' "$B/named.log" ||
	fail "pebble did not look up _acme-challenge.www.example.test"
has 'query: _acme-challenge.example.test IN TXT +' "$B/named.log" ||
	fail "pebble did not look up _acme-challenge.example.test (the wildcard)"
has 'query: _acme-challenge.www.example.test IN TXT -' "$B/named.log" ||
	fail "the daemon did not poll for its record"
has 'client @.*_acme-challenge.www.example.test' "$B/named.log" ||
	has -i 'updating zone .example.test/IN.: adding an RR at ._acme-challenge.www.example.test' "$B/named.log" ||
	fail "named saw no update for _acme-challenge.www.example.test"
pass "www.example.test + *.example.test issued by pebble through dns-01 (RFC 2136 + TSIG to BIND)"

no_txt() { [ -z "$(txt "$1")" ]; }
wait_for 10 "the www record to be removed" no_txt _acme-challenge.www.example.test
wait_for 10 "the wildcard record to be removed" no_txt _acme-challenge.example.test
has -i "deleting an RR at _acme-challenge.www.example.test\|deleting rrset at '_acme-challenge.www" "$B/named.log" ||
	fail "named logged no deletion of the www record"
pass "dig: _acme-challenge TXT records removed after validation"

wait_for 60 "hook from pebble over dns-01 (dns_hook)" deployed hook files
has '^add _acme-challenge.hook.example.test ' "$T/hook.log" || fail "hook not called with add"
wait_for 10 "the hook's remove" has '^remove _acme-challenge.hook.example.test ' "$T/hook.log"
wait_for 10 "the hook record to be removed" no_txt _acme-challenge.hook.example.test
pass "dns_hook: add, visible at the check server, validated, remove"

wait_for 30 "bad to fail" outcome_is bad misconfigured
err=$(error_of bad)
echo "$err" | has -F "127.0.0.1:$DNS_PORT" || fail "bad: the error does not name the server: $err"
echo "$err" | has -F "'certherd'" || fail "bad: the error does not name the key: $err"
echo "$err" | has 'BADSIG\|BADKEY' || fail "bad: the error does not say the TSIG was rejected: $err"
for s in "$SECRET" "$WRONG_SECRET"; do
	! has -F "$s" "$T/daemon.log" || fail "a TSIG secret is in the daemon log"
	! chj show bad | has -F "$s" || fail "a TSIG secret is in show's output"
done
pass "wrong TSIG secret: misconfigured ($err)"

# Refused at config load: a wildcard with http-01, a key file readable by others.
cat >"$T/http.yaml" <<YAML
state_dir: var
metrics_listen: "off"
cas:
  le: { type: acme, directory: https://127.0.0.1:1/dir, http01_listen: "127.0.0.1:$(free_port)" }
certificates:
  wild: { names: ["*.example.test"], ca: le }
YAML
out=$("$CERTHERDD" --check-config --config "$T/http.yaml" 2>&1) && fail "a wildcard with http-01 passed --check-config"
echo "$out" | has "certificates.wild.*names.*wildcard.*dns-01" || fail "unclear wildcard error: $out"
pass "wildcard with http-01 refused at load: $(echo "$out" | head -n 1)"
stop_daemon
chmod 644 "$T/tsig.key"
start_daemon_bg
wait_for 20 "the daemon to refuse a readable key file" has "tsig.key is readable by others" "$T/daemon.log"
stop_daemon
pass "a TSIG key file readable by others is refused"
