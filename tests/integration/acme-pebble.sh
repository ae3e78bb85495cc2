#!/usr/bin/env bash
# The acme CA against a real Pebble (-strict, 5% of nonces rejected, no
# PEBBLE_VA_ALWAYS_VALID): certificates issued through real http-01
# validation of the daemon's responder, deployed to files, verified against
# Pebble's root; a forced renewal; the account created once and reused
# across renewals and restarts; many certificates at once; and the
# outcomes of a failed validation and of an unreachable CA.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pebble.sh"

N_BULK=${N_BULK:-47} # with www, rsa and pref: 50 issuances under random nonce rejection
B1=bulk$(seq -w 1 "$N_BULK" | head -n 1) # bulk01, or bulk001 from 100 on
# Two roots: the default chain goes to /roots/0, an alternate (Link rel="alternate") to /roots/1.
start_pebble PEBBLE_ALTERNATE_ROOTS=1
pebble_root >"$T/root.pem" || fail "cannot fetch pebble's root from its management interface"
curl -fsS --max-time 5 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_MGMT/roots/1" >"$T/root1.pem" ||
	fail "cannot fetch pebble's alternate root"
ALT_CN=$(openssl x509 -noout -subject -nameopt multiline -in "$T/root1.pem" | sed -n 's/^ *commonName *= //p')
[ -n "$ALT_CN" ] || fail "no CN in pebble's alternate root"
BAD_HTTP01=$(free_port)
DEAD_PORT=$(free_port)

mkdir -p "$T/out"
{
	cat <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  pebble:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    contact: [mailto:ops@example.test]
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    max_in_flight: 8
  # The same pebble and responder address, preferring the chain to pebble's second root.
  pebble-alt:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    preferred_chain: $ALT_CN
  # Pebble validates on $HTTP01_PORT, not here: its challenges must fail.
  misrouted:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$BAD_HTTP01
  nowhere:
    type: acme
    directory: https://127.0.0.1:$DEAD_PORT/dir
    agree_tos: true
    http01_listen: 127.0.0.1:$(free_port)
targets:
  files: { type: file, cert: "out/{name}.crt", chain: "out/{name}.chain.pem", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
certificates:
  www: { names: [www.example.test, example.test], ca: pebble, targets: [files] }
  rsa: { names: [rsa.example.test], ca: pebble, key_type: rsa-2048, targets: [files] }
  pref: { names: [pref.example.test], ca: pebble-alt, targets: [files] }
  bad: { names: [bad.example.test], ca: misrouted, targets: [files] }
  down: { names: [down.example.test], ca: nowhere, targets: [files] }
YAML
	for i in $(seq -w 1 "$N_BULK"); do
		echo "  bulk$i: { names: [bulk$i.example.test], ca: pebble, targets: [files] }"
	done
} >"$T/certherd.yaml"

all_bulk_deployed() {
	local i
	for i in $(seq -w 1 "$N_BULK"); do
		deployed "bulk$i" files || return 1
	done
}

t0=$(date +%s%N)
start_daemon
wait_for 60 "www from pebble" deployed www files
wait_for 60 "rsa from pebble" deployed rsa files
wait_for 60 "pref from pebble" deployed pref files
wait_for 120 "$N_BULK bulk certificates" all_bulk_deployed
t1=$(date +%s%N)
n_nonce=$(grep -c 'badNonce on' "$T/daemon.log" || true)
pass "$((N_BULK + 3)) certificates issued by pebble at once in $(((t1 - t0) / 1000000)) ms (from daemon start), $n_nonce badNonce answers retried"

# Real validation happened: pebble fetched the tokens from our responder.
has -c 'Attempting to validate w/ HTTP: http://www.example.test:' "$T/pebble/pebble.log" ||
	fail "pebble did not validate www over http-01"
has 'http-01: served token' "$T/daemon.log" || fail "the responder served no token"

for n in www rsa $B1; do
	[ -s "$T/out/$n.chain.pem" ] || fail "$n: empty chain from pebble"
	openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/$n.fullchain.pem" "$T/out/$n.crt" >/dev/null ||
		fail "$n: the fullchain does not verify against pebble's root"
	[ "$(openssl x509 -noout -pubkey -in "$T/out/$n.crt" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$T/out/$n.key" | sha256sum)" ] || fail "$n: key does not match"
	[ "$(stat -c %a "$T/out/$n.key")" = 600 ] || fail "$n.key is not 0600"
done
openssl x509 -noout -ext subjectAltName -in "$T/out/www.crt" | has 'DNS:example.test' ||
	fail "www lacks its second name"
openssl x509 -noout -text -in "$T/out/rsa.crt" | has rsaEncryption || fail "rsa is not RSA"
pass "fullchains verify against pebble's root (/roots/0), keys match and are 0600, SANs complete"

# preferred_chain picked the alternate chain: it verifies to root 1, not root 0.
openssl verify -CAfile "$T/root1.pem" -untrusted "$T/out/pref.fullchain.pem" "$T/out/pref.crt" >/dev/null ||
	fail "pref: the chain does not lead to the preferred root '$ALT_CN'"
! openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/pref.fullchain.pem" "$T/out/pref.crt" >/dev/null 2>&1 ||
	fail "pref: got the default chain"
openssl verify -CAfile "$T/root1.pem" -untrusted "$T/out/www.fullchain.pem" "$T/out/www.crt" >/dev/null 2>&1 &&
	fail "www: got an alternate chain without asking"
pass "preferred_chain '$ALT_CN' chose the alternate chain; the others got the default"

# The misrouted CA's validation fails: rejected, with pebble's problem document.
wait_for 30 "the failed validation to be reported" bash -c \
	"[ \"\$('$CERTHERD' --socket '$SOCK' --json show bad | jq -r .certificate.last_outcome)\" = rejected ]"
err=$(chj show bad | jq -r .certificate.last_error)
echo "$err" | has 'authorization for dns:bad.example.test is invalid' || fail "bad: unexpected error: $err"
echo "$err" | has -E 'unauthorized|connection' || fail "bad: the problem type is missing: $err"
wait_for 30 "the unreachable CA to be reported" bash -c \
	"[ \"\$('$CERTHERD' --socket '$SOCK' --json show down | jq -r .certificate.last_outcome)\" = ca-unreachable ]"
[ ! -e "$T/out/bad.crt" ] && [ ! -e "$T/out/down.crt" ] || fail "a failed certificate was deployed"
pass "failed validation -> rejected ($err); closed port -> ca-unreachable"

# One account per CA, created once, its key 0600.
acct_files=$(find "$T/var/acme/pebble" -maxdepth 1 -type f | wc -l)
[ "$acct_files" = 1 ] && [ -f "$T/var/acme/pebble/account.key" ] ||
	fail "expected one account file, found: $(ls -la "$T/var/acme/pebble")"
[ "$(stat -c %a "$T/var/acme/pebble/account.key")" = 600 ] || fail "account key is not 0600"
[ "$(grep -c 'CA pebble: created ACME account' "$T/daemon.log")" = 1 ] || fail "more than one account was created"
acct=$(sed -n 's/.*CA pebble: created ACME account //p' "$T/daemon.log")

# A forced renewal: a new certificate and key from the same account.
serial=$(inv_serial www)
ch renew www --force >/dev/null || fail "renew --force was refused"
wait_for 60 "the forced renewal" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/www.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$serial' ]"
wait_for 20 "deployment of the renewal" deployed www files
[ "$(serial_of "$T/out/www.crt")" = "$(inv_serial www)" ] || fail "inventory and file disagree after renewal"
openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/www.fullchain.pem" "$T/out/www.crt" >/dev/null ||
	fail "the renewed fullchain does not verify"
[ "$(grep -c 'CA pebble: created ACME account' "$T/daemon.log")" = 1 ] || fail "the renewal created another account"
[ "$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id=i.cert_id WHERE c.name='www'")" = 2 ] ||
	fail "expected 2 issuances of www"
pass "renew --force issued a new certificate with the same account"

# After a restart the same account key finds the same account.
stop_daemon
start_daemon
ch renew www --force >/dev/null || fail "renew --force after restart was refused"
wait_for 60 "the account lookup after restart" has "CA pebble: using existing ACME account $acct" "$T/daemon.log"
wait_for 60 "the renewal after restart" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM issuances i JOIN certificates c ON c.id=i.cert_id WHERE c.name='www'\")\" = 3 ]"
[ "$(grep -c 'CA pebble: created ACME account' "$T/daemon.log")" = 1 ] || fail "the restart created another account"
[ "$(find "$T/var/acme/pebble" -maxdepth 1 -type f | wc -l)" = 1 ] || fail "a second account file appeared"
pass "after a restart the account $acct is reused"

# A reload builds new CA instances; they share the responder with the old ones.
ch reload >/dev/null || fail "reload was refused"
ch renew $B1 --force >/dev/null || fail "renew --force after reload was refused"
wait_for 60 "the renewal after reload" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM issuances i JOIN certificates c ON c.id=i.cert_id WHERE c.name='$B1'\")\" = 2 ]"
pass "after a reload the http-01 responder still answers"

stop_daemon
