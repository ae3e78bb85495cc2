#!/usr/bin/env bash
# End to end with the local CA: certificates are issued on first start,
# written to their file targets, verify against the CA with OpenSSL, are
# renewed before expiry (a new serial and key on disk, not the same one),
# and every stage is recorded.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local:
    type: local
targets:
  files:
    type: file
    cert: out/{name}.crt
    chain: out/{name}.chain.pem
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
certificates:
  short:
    names: [short.test, 127.0.0.1]
    lifetime: 20s
    targets: [files]
  long:
    names: [long.test]
    key_type: rsa-2048
    lifetime: 30d
    targets: [files]
YAML

start_daemon
wait_for 20 "first issuance of short" deployed short files
wait_for 20 "first issuance of long" deployed long files
pass "both certificates issued and deployed on first start"

for n in short long; do
	openssl verify -CAfile "$(ca_cert local)" "$T/out/$n.crt" >/dev/null ||
		fail "$n.crt does not verify against the local CA"
	openssl verify -CAfile "$(ca_cert local)" "$T/out/$n.fullchain.pem" >/dev/null ||
		fail "$n.fullchain.pem does not verify"
	[ "$(stat -c %a "$T/out/$n.key")" = 600 ] || fail "$n.key is not 0600"
	# The key on disk belongs to the certificate on disk.
	[ "$(openssl x509 -noout -pubkey -in "$T/out/$n.crt" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$T/out/$n.key" | sha256sum)" ] ||
		fail "$n.key does not match $n.crt"
done
openssl x509 -noout -ext subjectAltName -in "$T/out/short.crt" | has 'DNS:short.test' ||
	fail "SAN DNS missing"
openssl x509 -noout -ext subjectAltName -in "$T/out/short.crt" | has 'IP Address:127.0.0.1' ||
	fail "SAN IP missing"
openssl x509 -noout -text -in "$T/out/long.crt" | has 'rsaEncryption' ||
	fail "long.test is not RSA"
pass "files verify with openssl, keys are 0600 and match"

first=$(serial_of "$T/out/short.crt")
[ "$first" = "$(inv_serial short)" ] || fail "inventory serial differs from the file's"
first_key=$(sha256sum <"$T/out/short.key")
long_serial=$(serial_of "$T/out/long.crt")

# 20 s lifetime: renewal at half the lifetime, so a new serial within ~15 s.
wait_for 30 "renewal of short" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/short.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$first' ]"
wait_for 10 "deployment of the renewal" deployed short files
second=$(serial_of "$T/out/short.crt")
[ "$second" = "$(inv_serial short)" ] || fail "after renewal the inventory serial differs"
[ "$(sha256sum <"$T/out/short.key")" != "$first_key" ] || fail "renewal reused the key"
openssl verify -CAfile "$(ca_cert local)" "$T/out/short.crt" >/dev/null || fail "renewed cert does not verify"
[ "$(serial_of "$T/out/long.crt")" = "$long_serial" ] || fail "long was renewed although not due"
pass "short renewed before expiry with a new key; long untouched"

# Every stage is recorded: issuances, deployments and events.
n_iss=$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id=i.cert_id WHERE c.name='short'")
[ "$n_iss" -ge 2 ] || fail "expected at least 2 issuances of short, got $n_iss"
chj show short | jq -e '.events | map(.event) | index("attempted") and index("issued") and index("deployed")' >/dev/null ||
	fail "events attempted/issued/deployed missing"
chj show short | jq -e '.issuances[1].deployments[0].state == "deployed" or .issuances[1].deployments[0].state == "superseded"' >/dev/null ||
	fail "the earlier issuance's deployment is not recorded"
[ "$(sql 'PRAGMA journal_mode')" = wal ] || fail "database not in WAL mode"
[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check failed"
ch status >/dev/null || fail "status reports a problem: $(ch status)"
pass "stages recorded, database in WAL mode and consistent, status healthy"

stop_daemon
daemon_alive && fail "daemon did not stop on SIGTERM"
[ ! -e "$SOCK" ] || fail "socket left behind after a clean stop"
pass "clean shutdown"
