#!/usr/bin/env bash
# On first start, a certificate whose targets already hold a valid
# certificate for the same names is adopted into the inventory instead of
# being issued again; one for other names is replaced.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
mk() { # name, san
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj "/CN=$1" -addext "subjectAltName=$2" \
		-keyout "$T/out/$1.key" -out "$T/out/$1.crt" 2>/dev/null
}
mk keep "DNS:keep.test"
mk other "DNS:elsewhere.test"
keep_serial=$(serial_of "$T/out/keep.crt")
other_serial=$(serial_of "$T/out/other.crt")

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
  hook: { type: exec, command: [touch, "$T/hook-ran"] }
defaults: { targets: [files, hook], lifetime: 30d }
certificates:
  keep: { names: [keep.test] }
  other: { names: [other.test] }
YAML
start_daemon
wait_for 20 "other to be replaced" deployed other hook
[ "$(serial_of "$T/out/other.crt")" != "$other_serial" ] || fail "a certificate for other names was adopted"
[ "$(serial_of "$T/out/keep.crt")" = "$keep_serial" ] || fail "the matching certificate was replaced"
[ "$(inv_serial keep)" = "$keep_serial" ] || fail "the adopted certificate is not in the inventory"
chj show keep | jq -e '.issuances[0].adopted == true and .certificate.last_outcome == "adopted"' >/dev/null ||
	fail "not recorded as adopted: $(chj show keep)"
[ "$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id=i.cert_id WHERE c.name='keep'")" = 1 ] ||
	fail "keep was issued anew"
renew_at=$(chj show keep | jq .certificate.renew_at)
now=$(date +%s)
[ "$renew_at" -gt $((now + 86400 * 15)) ] || fail "adopted certificate scheduled too early ($renew_at)"
deployed keep hook || fail "the hook target of the adopted certificate is not marked deployed"
pass "a matching certificate is adopted and scheduled; one for other names is replaced"
