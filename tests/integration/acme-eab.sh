#!/usr/bin/env bash
# External account binding (RFC 8555 §7.3.4) against a real Pebble that
# requires one: the right kid and HMAC key create the account and a
# certificate is issued; a wrong HMAC key and a missing binding end
# 'misconfigured' with an error that says what to fix; the HMAC key is in
# neither the log nor the socket's answers; a key file readable by others
# or only half a binding is refused at config load.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pebble.sh"

b64url_key() { openssl rand 32 | basenc --base64url | tr -d '=\n'; }
KEY=$(b64url_key)
WRONG=$(b64url_key)
printf '%s\n' "$KEY" >"$T/eab.key"
printf '%s\n' "$WRONG" >"$T/wrong.key"
chmod 600 "$T/eab.key" "$T/wrong.key"

PEBBLE_EAB_KEYS="\"kid-certherd\": \"$KEY\"" start_pebble
pebble_root >"$T/root.pem" || fail "cannot fetch pebble's root"
curl -fsS --cacert "$PEBBLE_TLS_CA" "$PEBBLE_DIR_URL" | jq -e '.meta.externalAccountRequired == true' >/dev/null ||
	fail "pebble does not require an external account binding"

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  bound:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    eab_kid: kid-certherd
    eab_hmac_key_file: $T/eab.key
  wrongkey:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    eab_kid: kid-certherd
    eab_hmac_key_file: $T/wrong.key
  unbound:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
targets:
  files: { type: file, cert: "out/{name}.crt", chain: "out/{name}.chain.pem", key: "out/{name}.key" }
certificates:
  good: { names: [good.example.test], ca: bound, targets: [files] }
  wrong: { names: [wrong.example.test], ca: wrongkey, targets: [files] }
  none: { names: [none.example.test], ca: unbound, targets: [files] }
YAML

outcome() { chj show "$1" | jq -r .certificate.last_outcome; }
error_of() { chj show "$1" | jq -r .certificate.last_error; }
outcome_is() { [ "$(outcome "$1")" = "$2" ]; }

start_daemon
wait_for 60 "good to be deployed" deployed good files
openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/good.chain.pem" "$T/out/good.crt" >/dev/null ||
	fail "the certificate does not verify against pebble's root"
has -F "created ACME account" "$T/daemon.log" || fail "no account was created"
pass "account bound with the right kid and HMAC key; certificate issued and verified"

wait_for 30 "wrong to fail" outcome_is wrong misconfigured
err=$(error_of wrong)
echo "$err" | has "newAccount: .*external account binding: check eab_kid and eab_hmac_key_file" ||
	fail "unclear error for a wrong HMAC key: $err"
[ -z "$(ls var/acme/wrongkey/orders 2>/dev/null)" ] || fail "an order was made without an account"
pass "wrong HMAC key -> misconfigured: $err"

wait_for 30 "none to fail" outcome_is none misconfigured
err=$(error_of none)
echo "$err" | has "requires an external account binding; set eab_kid and eab_hmac_key_file" ||
	fail "unclear error without a binding: $err"
pass "no binding where the CA requires one -> misconfigured: $err"

for s in "$KEY" "$WRONG"; do
	! has -F "$s" "$T/daemon.log" || fail "an HMAC key is in the daemon log"
	! chj show wrong | has -F "$s" || fail "an HMAC key is in show's output"
	! status_json | has -F "$s" || fail "an HMAC key is in status"
done
daemon_alive || fail "the daemon died"
pass "the HMAC keys are in neither the log nor the socket's answers"
stop_daemon

# Refused at load: a readable key file, half a binding.
chmod 644 "$T/eab.key"
out=$("$CERTHERDD" --check-config --config "$T/certherd.yaml" 2>&1) && fail "a readable HMAC key file passed --check-config"
echo "$out" | has "eab.key is readable by others (mode 0644); make it 0600" || fail "unclear error: $out"
! echo "$out" | has -F "$KEY" || fail "the HMAC key is in the error"
pass "an HMAC key file readable by others is refused: $(echo "$out" | head -n 1)"
chmod 600 "$T/eab.key"
sed -i '/eab_hmac_key_file: .*wrong.key/d' "$T/certherd.yaml"
out=$("$CERTHERDD" --check-config --config "$T/certherd.yaml" 2>&1) && fail "eab_kid alone passed --check-config"
echo "$out" | has "wrongkey.*needs both eab_kid and eab_hmac_key_file" || fail "unclear error: $out"
pass "eab_kid without eab_hmac_key_file is refused: $(echo "$out" | head -n 1)"
