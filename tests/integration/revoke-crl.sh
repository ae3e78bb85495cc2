#!/usr/bin/env bash
# Revocation and CRLs with the local CA: `certherd revoke www --reason
# keyCompromise` marks the issuance revoked in the inventory, a new
# certificate is issued and deployed at once, and the CA's CRL (file and
# http://crl_listen/crl/local.crl) lists the old serial with its reason,
# verifies with the CA certificate, has a higher CRL number, and makes
# `openssl verify -crl_check` refuse the old certificate and accept the new
# one. Bad input gets a clear error and exit status 2. The CRL number
# survives a restart and only grows. With SoftHSM2 the same for a pkcs11 CA.
. "$(dirname "$0")/lib.sh"

PORT=$(free_port)
mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
crl_listen: 127.0.0.1:$PORT
cas:
  local:
    type: local
    crl_validity: 2d
    crl_url: http://127.0.0.1:$PORT/crl/local.crl
targets:
  files:
    type: file
    cert: out/{name}.crt
    key: out/{name}.key
certificates:
  www:
    names: [www.test]
    lifetime: 30d
    targets: [files]
  api:
    names: [api.test]
    lifetime: 30d
    targets: [files]
YAML

# Configuration errors name the key.
sed 's/^crl_listen: .*/crl_listen: "no-port-here"/; s/crl_validity: 2d/crl_validity: soon/' \
	"$T/certherd.yaml" >"$T/bad.yaml"
set +e
out=$("$CERTHERDD" --config "$T/bad.yaml" --check-config 2>&1); rc=$?
set -e
[ $rc != 0 ] || fail "a bad crl_listen and crl_validity pass --check-config"
echo "$out" | has 'crl_listen' && echo "$out" | has 'crl_validity' ||
	fail "the errors do not name crl_listen and crl_validity: $out"
pass "bad crl_listen / crl_validity are configuration errors naming the key"

CRL=$T/var/ca/local/crl.pem
CA=$(ca_cert local)
crl_number() { echo $(($(openssl crl -in "$1" -noout -crlnumber | sed 's/^crlNumber=//'))); }
crl_has_serial() { openssl crl -in "$1" -noout -text | has -i "Serial Number: *0*$2$"; }

start_daemon
wait_for 20 "first issuance of www" deployed www files
wait_for 20 "first issuance of api" deployed api files
wait_for 10 "the first CRL" test -s "$CRL"
[ -s "${CRL%.pem}.der" ] || fail "no DER CRL beside $CRL"
openssl crl -in "$CRL" -CAfile "$CA" -noout 2>&1 | has 'verify OK' || fail "the first CRL does not verify"
n0=$(crl_number "$CRL")
[ -n "$n0" ] || fail "the CRL has no CRL number"
openssl crl -in "$CRL" -noout -text | has 'No Revoked Certificates' || fail "the first CRL is not empty"
# nextUpdate = thisUpdate + crl_validity (2d)
this=$(date -d "$(openssl crl -in "$CRL" -noout -lastupdate | sed 's/^lastUpdate=//')" +%s)
next=$(date -d "$(openssl crl -in "$CRL" -noout -nextupdate | sed 's/^nextUpdate=//')" +%s)
[ $((next - this)) -eq 172800 ] || fail "nextUpdate - thisUpdate is $((next - this)) s, not 2d"
openssl x509 -in "$T/out/www.crt" -noout -ext crlDistributionPoints | has "URI:http://127.0.0.1:$PORT/crl/local.crl" ||
	fail "leaves carry no CRL distribution point"
pass "an empty CRL (number $n0, 2d validity) is published at start; leaves point at it"

cp "$T/out/www.crt" "$T/old.pem"
old=$(serial_of "$T/old.pem")
api_serial=$(serial_of "$T/out/api.crt")

# Bad input: clear errors, exit status 2, nothing revoked.
set +e
out=$(ch revoke www --reason keyCompromized 2>&1); rc=$?
set -e
[ $rc = 2 ] || fail "an unknown reason exits $rc, not 2"
echo "$out" | has "unknown revocation reason 'keyCompromized'" || fail "unclear error for a bad reason: $out"
echo "$out" | has 'keyCompromise' || fail "the error does not list the reasons: $out"
set +e
out=$(ch revoke 0123456789abcdef --reason keyCompromise 2>&1); rc=$?
set -e
[ $rc = 2 ] || fail "an unknown serial exits $rc, not 2"
echo "$out" | has "no certificate named '0123456789abcdef'" || fail "unclear error for an unknown serial: $out"
set +e
out=$(ch revoke nosuch-cert 2>&1); rc=$?
set -e
[ $rc = 2 ] || fail "an unknown name exits $rc, not 2"
# The socket refuses removeFromCRL even from a client that skips the CLI's check.
reply=$(printf '{"cmd":"revoke","name":"www","reason":"removeFromCRL"}\n' |
	socat -t5 - "UNIX-CONNECT:$SOCK" | tail -n1)
echo "$reply" | jq -e '.ok == false' >/dev/null || fail "the socket accepted removeFromCRL: $reply"
[ "$(chj show www | jq '[.issuances[] | select(.revoked_at > 0)] | length')" = 0 ] ||
	fail "bad input revoked something"
pass "unknown reason, serial or name: clear error, exit 2, nothing revoked"

# kebab-case works as well as camelCase.
ch revoke www --reason key-compromise >"$T/revoke.out" || fail "revoke failed: $(cat "$T/revoke.out")"
has 'revoked (keyCompromise)' <"$T/revoke.out" || fail "revoke printed: $(cat "$T/revoke.out")"
chj show www | jq -e --arg s "$old" '.issuances[] | select((.serial | ascii_downcase | ltrimstr("0")) == $s) |
	.revoked_at > 0 and .revocation_reason == "keyCompromise"' >/dev/null ||
	fail "the issuance is not shown revoked: $(chj show www | jq -c '.issuances')"
chj show www | jq -e '.events | map(.event) | index("revoked")' >/dev/null || fail "no revoked event"
ch show www | has 'REVOKED' || fail "show does not say REVOKED"
pass "revoke www --reason key-compromise: the issuance is revoked (keyCompromise) with an event"

wait_for 20 "a new serial for www" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/www.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$old' ]"
wait_for 10 "deployment of the re-issue" deployed www files
new=$(serial_of "$T/out/www.crt")
[ "$new" = "$(inv_serial www)" ] || fail "the inventory's current serial is not the deployed one"
chj show www | jq -e '.issuances[0].revoked_at == 0' >/dev/null || fail "the new issuance is revoked"
[ "$(serial_of "$T/out/api.crt")" = "$api_serial" ] || fail "api was re-issued too"
pass "a new certificate ($new) replaced the revoked one ($old) and is deployed"

n1=$(crl_number "$CRL")
[ "$n1" -gt "$n0" ] 2>/dev/null || fail "the CRL number did not grow ($n0 -> $n1)"
openssl crl -in "$CRL" -CAfile "$CA" -noout 2>&1 | has 'verify OK' || fail "the new CRL does not verify"
crl_has_serial "$CRL" "$(echo "$old" | tr a-f A-F)" || fail "the CRL does not list $old: $(openssl crl -in "$CRL" -noout -text)"
openssl crl -in "$CRL" -noout -text | has 'Key Compromise' || fail "the CRL entry has no reason"
crl_has_serial "$CRL" "$(echo "$new" | tr a-f A-F)" && fail "the CRL lists the new certificate"
set +e
out=$(openssl verify -crl_check -CRLfile "$CRL" -CAfile "$CA" "$T/old.pem" 2>&1); rc=$?
set -e
[ $rc != 0 ] || fail "openssl verify -crl_check accepts the revoked certificate"
echo "$out" | has 'certificate revoked' || fail "openssl verify said: $out"
openssl verify -crl_check -CRLfile "$CRL" -CAfile "$CA" "$T/out/www.crt" >/dev/null ||
	fail "openssl verify -crl_check refuses the new certificate"
pass "CRL number $n0 -> $n1 lists $old (keyCompromise); verify -crl_check: old revoked, new OK"

curl -fsS -D "$T/headers" -o "$T/fetched.crl" "http://127.0.0.1:$PORT/crl/local.crl" ||
	fail "cannot fetch the CRL over HTTP"
has -i '^content-type: application/pkix-crl' <"$T/headers" || fail "wrong Content-Type: $(cat "$T/headers")"
cmp -s "$T/fetched.crl" "${CRL%.pem}.der" || fail "the CRL served differs from the DER file"
openssl crl -inform DER -in "$T/fetched.crl" -outform PEM | cmp -s - "$CRL" ||
	fail "the CRL served differs from the PEM file"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/crl/nosuch.crl")
[ "$code" = 404 ] || fail "an unknown CA's CRL gives $code, not 404"
pass "GET /crl/local.crl serves the same CRL in DER as application/pkix-crl; unknown CA 404"

# By serial (colon-separated, upper case), and a second revocation is refused.
api_hex=$(openssl x509 -noout -serial -in "$T/out/api.crt" | sed 's/^serial=//;s/../&:/g;s/:$//')
ch revoke "$api_hex" --reason superseded >/dev/null || fail "revoke by serial $api_hex failed"
set +e
out=$(ch revoke "$api_hex" --reason superseded 2>&1); rc=$?
set -e
[ $rc = 2 ] && echo "$out" | has 'already revoked' || fail "a second revocation: rc $rc, $out"
n2=$(crl_number "$CRL")
[ "$n2" -gt "$n1" ] || fail "the CRL number did not grow on the second revocation ($n1 -> $n2)"
crl_has_serial "$CRL" "$(echo "$api_serial" | tr a-f A-F)" || fail "the CRL does not list api's serial"
crl_has_serial "$CRL" "$(echo "$old" | tr a-f A-F)" || fail "the CRL lost www's old serial"
wait_for 20 "re-issue of api" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/api.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$api_serial' ]"
pass "revoke by serial ($api_hex): CRL number $n2 lists both; a second revocation is refused"

# A restart keeps the CRL as it is (still fresh); a reload with another
# validity publishes a new one with a higher number.
stop_daemon
start_daemon
[ "$(crl_number "$CRL")" = "$n2" ] || fail "a restart changed a fresh CRL"
sed -i 's/crl_validity: 2d/crl_validity: 3d/' "$T/certherd.yaml"
ch reload >/dev/null || fail "reload failed"
wait_for 10 "a CRL for the new validity" bash -c "[ \$((\$(openssl crl -in '$CRL' -noout -crlnumber | sed 's/^crlNumber=//'))) != '$n2' ]"
n3=$(crl_number "$CRL")
[ "$n3" -gt "$n2" ] || fail "the CRL number went from $n2 to $n3"
crl_has_serial "$CRL" "$(echo "$old" | tr a-f A-F)" || fail "the regenerated CRL lost a serial"
pass "restart keeps CRL $n2; a new crl_validity publishes CRL $n3"

# With a short validity the CRL is made again once half of it has passed.
sed -i 's/crl_validity: 3d/crl_validity: 4s/' "$T/certherd.yaml"
ch reload >/dev/null || fail "reload failed"
wait_for 10 "a CRL for the 4s validity" bash -c "[ \$((\$(openssl crl -in '$CRL' -noout -crlnumber | sed 's/^crlNumber=//'))) -gt $n3 ]"
n4=$(crl_number "$CRL")
wait_for 10 "the CRL refreshed at half its validity" bash -c "[ \$((\$(openssl crl -in '$CRL' -noout -crlnumber | sed 's/^crlNumber=//'))) -gt $n4 ]"
n5=$(crl_number "$CRL")
openssl crl -in "$CRL" -CAfile "$CA" -noout 2>&1 | has 'verify OK' || fail "the refreshed CRL does not verify"
crl_has_serial "$CRL" "$(echo "$old" | tr a-f A-F)" || fail "the refreshed CRL lost a serial"
this=$(date -d "$(openssl crl -in "$CRL" -noout -lastupdate | sed 's/^lastUpdate=//')" +%s)
now=$(date +%s)
[ $((now - this)) -le 4 ] || fail "the newest CRL is $((now - this)) s old with a 4 s validity"
chj show www >/dev/null
sql "SELECT count(*) FROM events WHERE stage = 'crl' AND event = 'published'" | has -x "$n5" ||
	fail "not every CRL is in the event log: $(sql "SELECT count(*) FROM events WHERE stage = 'crl'") events, CRL $n5"
pass "crl_validity 4s: CRL $n4 refreshed as $n5 after half its validity; each one logged as an event"
stop_daemon

# ---- the same with a CA key in a SoftHSM2 token ---------------------------
MODULE=${CH_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
if ! command -v softhsm2-util >/dev/null || [ ! -r "$MODULE" ]; then
	echo "ok - pkcs11 part skipped: SoftHSM2 is not installed"
	exit 0
fi
PIN=pin-1234-crl
mkdir -p "$T/tokens"
cat >"$T/softhsm2.conf" <<EOF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label certherd-crl --pin "$PIN" --so-pin so-4242 >/dev/null
(umask 077 && printf '%s\n' "$PIN" >"$T/pin")
cat >"$T/certherd.yaml" <<YAML
state_dir: var2
socket: certherd.sock
metrics_listen: "off"
crl_listen: 127.0.0.1:$PORT
cas:
  hsm:
    type: pkcs11
    module: $MODULE
    token_label: certherd-crl
    key_label: ca-rsa
    pin_file: pin
    create: true
    key_type: rsa-2048
    signature: pss
targets:
  files:
    type: file
    cert: out/{name}.crt
    key: out/{name}.key
certificates:
  tok:
    names: [tok.test]
    ca: hsm
    lifetime: 30d
    targets: [files]
YAML
CRL=$T/var2/ca/hsm/crl.pem
CA=$T/var2/ca/hsm/ca.crt
start_daemon
wait_for 30 "first issuance of tok" deployed tok files
wait_for 10 "the token CA's first CRL" test -s "$CRL"
openssl crl -in "$CRL" -CAfile "$CA" -noout 2>&1 | has 'verify OK' || fail "the token CA's CRL does not verify"
openssl crl -in "$CRL" -noout -text | has 'rsassaPss' || fail "the token CA's CRL is not signed with RSA-PSS"
m0=$(crl_number "$CRL")
cp "$T/out/tok.crt" "$T/tok-old.pem"
told=$(serial_of "$T/tok-old.pem")
ch revoke tok --reason cessationOfOperation >/dev/null || fail "revoke tok failed"
wait_for 30 "a new serial for tok" bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/tok.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$told' ]"
wait_for 10 "deployment of tok's re-issue" deployed tok files
m1=$(crl_number "$CRL")
[ "$m1" -gt "$m0" ] || fail "the token CA's CRL number did not grow ($m0 -> $m1)"
openssl crl -in "$CRL" -CAfile "$CA" -noout 2>&1 | has 'verify OK' || fail "the token CA's new CRL does not verify"
set +e
out=$(openssl verify -crl_check -CRLfile "$CRL" -CAfile "$CA" "$T/tok-old.pem" 2>&1); rc=$?
set -e
[ $rc != 0 ] && echo "$out" | has 'certificate revoked' || fail "the revoked token-CA leaf: $out"
openssl verify -crl_check -CRLfile "$CRL" -CAfile "$CA" "$T/out/tok.crt" >/dev/null ||
	fail "verify -crl_check refuses tok's new certificate"
curl -fsS -o "$T/fetched-hsm.crl" "http://127.0.0.1:$PORT/crl/hsm.crl" || fail "cannot fetch hsm.crl"
cmp -s "$T/fetched-hsm.crl" "${CRL%.pem}.der" || fail "hsm.crl served differs from the DER file"
pass "pkcs11 CA on SoftHSM2: CRL signed in the token (RSA-PSS), $m0 -> $m1, old revoked, new OK"
