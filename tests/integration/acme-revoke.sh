#!/usr/bin/env bash
# Revocation through ACME (RFC 8555 §7.6) against a real Pebble:
# `certherd revoke` of a certificate issued by an acme CA sends revokeCert
# signed with the account key; Pebble's management interface
# (/cert-status-by-serial) then reports it Revoked with the reason given,
# the event log says the CA revoked it, and a new certificate is issued
# and deployed. A second revocation is refused locally.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pebble.sh"

start_pebble
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
    http01_listen: 127.0.0.1:$HTTP01_PORT
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
certificates:
  www: { names: [www.example.test], ca: pebble, targets: [files] }
YAML
pebble_status() {
	curl -fsS --max-time 5 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_MGMT/cert-status-by-serial/$1"
}
revoked_at_pebble() { pebble_status "$1" | jq -e '.Status == "Revoked"'; }
ca_revoked_event() { chj show www | jq -e '.events[] | select(.event == "ca-revoked")'; }

start_daemon
wait_for 60 "www to be deployed" deployed www files
serial=$(serial_of "$T/out/www.crt")
pebble_status "$serial" | jq -e '.Status == "Valid"' >/dev/null ||
	fail "pebble does not list $serial as valid: $(pebble_status "$serial")"

ch revoke www --reason key-compromise >/dev/null || fail "revoke failed"
wait_for 30 "pebble to list $serial as revoked" revoked_at_pebble "$serial"
reason=$(pebble_status "$serial" | jq -r '.Reason')
[ "$reason" = 1 ] || fail "pebble has reason $reason, not keyCompromise (1): $(pebble_status "$serial")"
wait_for 10 "the ca-revoked event" ca_revoked_event
pass "revoke www: pebble reports serial $serial Revoked (reason 1, keyCompromise); event ca-revoked"

wait_for 60 "a new certificate" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/www.crt' | sed 's/^serial=//' | tr A-F a-f | sed 's/^0*//')\" != '$serial' ]"
wait_for 30 "the new certificate to be deployed" deployed www files
new=$(serial_of "$T/out/www.crt")
pebble_status "$new" | jq -e '.Status == "Valid"' >/dev/null || fail "the new certificate is not valid at pebble"
out=$(ch revoke "$serial" 2>&1) && fail "a second revocation went through: $out"
daemon_alive || fail "the daemon died"
pass "the revoked certificate was replaced ($new, valid at pebble); revoking it again is refused"
stop_daemon
