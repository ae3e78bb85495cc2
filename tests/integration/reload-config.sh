#!/usr/bin/env bash
# SIGHUP and `certherd reload` re-read the configuration atomically: a bad
# new configuration is rejected with its errors shown in status, and the
# daemon keeps running on the old one; a good one adds, changes and
# retires certificates.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
write_conf() {
	cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
defaults: { targets: [files], lifetime: 30d }
certificates:
$1
YAML
}
write_conf "  a: { names: [a.test] }"
start_daemon
wait_for 20 "a" deployed a files
serial_a=$(inv_serial a)

# A broken configuration: rejected, errors in status, old one still serving.
write_conf "  a: { names: [a.test] }
  b: { names: [b.test], lifetim: 5d }"
kill -HUP "$DAEMON_PID"
wait_for 10 "the rejection to show" bash -c "'$CERTHERD' --socket '$SOCK' --json status | jq -e '.config.errors | length > 0'"
daemon_alive || fail "daemon died on a bad reload"
status_json | jq -r '.config.errors[]' | has "certherd.yaml:[0-9]*:[0-9]*: certificates.b.lifetim: unknown key 'lifetim'; did you mean 'lifetime'" ||
	fail "status does not show the config error: $(status_json | jq .config)"
set +e
ch status >"$T/status.txt"
rc=$?
out=$(ch reload 2>&1)
rrc=$?
set -e
[ $rc -ne 0 ] || fail "status exit 0 with a rejected configuration"
grep -q "CONFIG REJECTED" "$T/status.txt" || fail "human status does not say the config was rejected"
[ $rrc -ne 0 ] && echo "$out" | has "lifetim" || fail "certherd reload did not report the errors: $out"
chj list | jq -e '.certificates | length == 1' >/dev/null || fail "the rejected config was partly applied"
[ "$(inv_serial a)" = "$serial_a" ] || fail "a changed"
pass "a bad configuration is rejected with its errors in status; the old one keeps running"

# A good one: b added, a retired.
write_conf "  b: { names: [b.test] }"
ch reload >/dev/null || fail "reload of a good configuration failed"
wait_for 20 "b" deployed b files
status_json | jq -e '.config.errors | length == 0' >/dev/null || fail "errors still shown after a good reload"
chj list | jq -e '.certificates[] | select(.name=="a") | .state == "retired" and .wanted == false' >/dev/null ||
	fail "a not retired: $(chj list)"
ch status >/dev/null || fail "status not healthy after a good reload: $(ch status)"
pass "a good configuration adds b and retires a; status healthy again"

# Changing the names of a certificate renews it.
serial_b=$(inv_serial b)
write_conf "  b: { names: [b.test, www.b.test] }"
kill -HUP "$DAEMON_PID"
wait_for 20 "b renewed for its new names" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show b | jq -r .certificate.serial)\" != '$serial_b' ]"
wait_for 20 "b deployed" deployed b files
openssl x509 -noout -ext subjectAltName -in "$T/out/b.crt" | has www.b.test || fail "new name missing"
pass "changed names trigger a renewal"
