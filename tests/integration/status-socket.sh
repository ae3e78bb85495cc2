#!/usr/bin/env bash
# The status socket and the CLI: garbage gets a JSON error and the daemon
# carries on; renew refuses a certificate that is not due unless forced;
# status exits non-zero while a stage is failing and names it; the socket
# is 0660; list --json has every certificate.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
  broken: { type: file, cert: "missing-dir/{name}.crt" }
certificates:
  a: { names: [a.test], lifetime: 30d, targets: [files] }
  b: { names: [b.test], lifetime: 30d, targets: [files] }
  c: { names: [c.test], lifetime: 30d, targets: [files] }
YAML
start_daemon
wait_for 20 "issuance of a, b, c" bash -c ". '$(dirname "$0")/lib.sh' >/dev/null 2>&1; true; for n in a b c; do [ -s '$T/out/'\$n.crt ] || exit 1; done"
[ "$(stat -c %a "$SOCK")" = 660 ] || fail "socket mode is $(stat -c %a "$SOCK"), not 660"

# Raw protocol: hello line, then one reply per request line.
raw() { printf '%s\n' "$1" | timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK" | sed -n 2p; }
for req in 'garbage' '[1,2]' '{"cmd":42}' '{"cmd":"status","x":{"a":1}}' '{"cmd":"frobnicate"}' '{"cmd":"show"}' '{"cmd":"show","name":"nope"}'; do
	rep=$(raw "$req")
	echo "$rep" | jq -e '.ok == false and (.error | length > 5)' >/dev/null ||
		fail "request '$req' got '$rep' instead of a JSON error"
done
rep=$(raw "$(head -c 5000 /dev/zero | tr '\0' x)")
echo "$rep" | jq -e '.ok == false and (.error | test("longer than"))' >/dev/null || fail "oversize request: $rep"
daemon_alive || fail "daemon died on garbage"
ch status >/dev/null || fail "status not ok after garbage: $(ch status)"
pass "garbage, unknown commands and oversize requests get JSON errors; daemon unaffected"

chj list | jq -e '.certificates | length == 3 and all(.state == "valid")' >/dev/null || fail "list --json: $(chj list)"
ch list | has '^a  *valid' || fail "list table: $(ch list)"
pass "list shows every certificate"

serial=$(inv_serial b)
out=$(ch renew b 2>&1) && fail "renew of a certificate not due succeeded: $out"
echo "$out" | has 'not due' || fail "renew refusal does not say why: $out"
ch renew b --force >/dev/null || fail "forced renew refused"
wait_for 10 "forced renewal of b" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show b | jq -r .certificate.serial)\" != '$serial' ]"
out=$(ch renew nope 2>&1) && fail "renew of an unknown name succeeded"
echo "$out" | has "no certificate named 'nope'" || fail "renew of an unknown name: $out"
pass "renew refuses when not due, --force renews"

# A failing deployment makes status exit 1 and name the target and error.
sed -i 's/targets: \[files\] }$/targets: [files] }/; s/^  c: .*/  c: { names: [c.test], lifetime: 30d, targets: [files, broken] }/' "$T/certherd.yaml"
ch reload >/dev/null || fail "reload failed"
wait_for 10 "the broken deployment to fail" bash -c "'$CERTHERD' --socket '$SOCK' --json status | jq -e '.deployments_failing | length > 0'"
set +e
out=$(ch status)
rc=$?
set -e
[ $rc = 1 ] || fail "status exit code $rc with a failing deployment"
echo "$out" | has 'c -> broken: .*missing-dir' || fail "status does not name the failing target: $out"
ch show c | has 'broken .*failed' || fail "show does not show the failed target: $(ch show c)"
ch show c | grep -A1 'broken .*failed' | has 'runbook: .*/runbooks.md#deployment-failing' ||
	fail "show does not point to the runbook of the failing stage: $(ch show c)"
grep -q '^## deployment-failing$' "$SRCDIR/docs/runbooks.md" || fail "docs/runbooks.md has no deployment-failing section"
deployed c files || fail "the failing target blocked the other target"
pass "a failing target shows in status (exit 1), points to its runbook and does not block the other target"

# Mutating requests only from root or the daemon's own uid (SO_PEERCRED);
# reading is allowed to whoever may open the socket.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	chmod 0755 "$T"
	chmod 0666 "$SOCK"
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$CERTHERD" --socket "$SOCK" "$@"; }
	as_nobody list >/dev/null || fail "a read-only request from another uid was refused"
	out=$(as_nobody renew a --force 2>&1) && fail "renew from uid 65534 was accepted"
	echo "$out" | has "permission denied" || fail "refusal does not say why: $out"
	out=$(as_nobody reload 2>&1) && fail "reload from uid 65534 was accepted"
	has "Refused 'renew' from uid 65534" "$T/daemon.log" || fail "the refusal was not logged"
	chmod 0660 "$SOCK"
	pass "renew and reload are refused to another uid, read-only requests allowed"
else
	echo "not root: skipping the second-uid check" >&2
fi
