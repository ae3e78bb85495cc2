#!/usr/bin/env bash
# certherdd --check-config: the shipped examples pass; each class of bad
# input gives file:line:column, the key and what was expected, all errors
# at once, and a non-zero exit. The daemon refuses to start on them.
. "$(dirname "$0")/lib.sh"

"$CERTHERDD" --check-config --config "$SRCDIR/conf/certherd.yaml.example" >/dev/null ||
	fail "conf/certherd.yaml.example does not pass --check-config"
"$CERTHERDD" --check-config --config "$SRCDIR/conf/demo.yaml" >/dev/null ||
	fail "conf/demo.yaml does not pass --check-config"
pass "shipped configurations are valid"

C=$T/bad.yaml
cat >"$C" <<'YAML'
state_dir: var
cas:
  local:
    type: local
    lifetme: 10y
targets:
  files:
    type: fiel
certificates:
  www:
    names: [www.test]
    lifetime: ninety
    key_type: rsa-1024
  api:
    names: [bad..name]
    ca: lcoal
YAML
set +e
out=$("$CERTHERDD" --check-config --config "$C" 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] || fail "--check-config accepted a bad file"
expect() {
	echo "$out" | has -F -- "$1" || fail "missing error: $1
--- got:
$out"
}
expect "$C:5:5: cas.local.lifetme: unknown key 'lifetme'; did you mean 'lifetime'?"
expect "$C:8:11: targets.files.type:"
expect "known types: file, reload, exec"
expect "$C:12:15: certificates.www.lifetime:"
expect "got \"ninety\""
expect "$C:13:15: certificates.www.key_type:"
expect "ecdsa-p256"
expect "certificates.api.names"
expect "certificates.api.ca"
expect "did you mean 'local'"
n=$(echo "$out" | grep -c "^$C:")
[ "$n" -ge 6 ] || fail "expected every error at once, got $n:
$out"
pass "$n errors, each with file:line:column, key and what was expected"

printf 'certificates:\n  www:\n    names: [a\n' >"$C"
set +e
out=$("$CERTHERDD" --check-config --config "$C" 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] && echo "$out" | has "^$C:[0-9]*:[0-9]*:" || fail "YAML syntax error not located: $out"
pass "YAML syntax errors are located"

set +e
out=$("$CERTHERDD" --config "$C" 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] || fail "certherdd started on a bad configuration"
"$CERTHERD" check-config "$C" >/dev/null 2>&1 && fail "certherd check-config accepted a bad file"
"$CERTHERD" check-config "$SRCDIR/conf/demo.yaml" >/dev/null || fail "certherd check-config rejects the demo"
pass "the daemon refuses to start on it; certherd check-config agrees"
