#!/usr/bin/env bash
# ACME certificate profiles against the stub server (acme-stub.py, mode
# "prof": meta.profiles offers classic (90 days) and shortlived (6 days);
# Pebble 2.4.0 has no profiles). Checked: newOrder carries the profile set
# per certificate or through defaults, and none without one; the renewal is
# planned from the issued certificate's notBefore/notAfter (half of 6 days,
# two thirds of 90), never from an assumed lifetime; a profile the CA does
# not offer, and a profile at a CA without meta.profiles, end
# 'misconfigured' with no order made and an error that lists what is
# offered; a profile on a non-ACME CA is refused at config load.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acme-stub.sh"

start_acme_stub
mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
defaults:
  profile: classic
cas:
  prof:
    type: acme
    directory: https://127.0.0.1:$STUB_PORT/prof/dir
    trust: $STUB_CA
    http01_listen: 127.0.0.1:$(free_port)
  noprof:
    type: acme
    directory: https://127.0.0.1:$STUB_PORT/noprof/dir
    trust: $STUB_CA
    http01_listen: 127.0.0.1:$(free_port)
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
certificates:
  short: { names: [short.example.test], ca: prof, profile: shortlived, targets: [files] }
  classic: { names: [classic.example.test], ca: prof, targets: [files] }
  typo: { names: [typo.example.test], ca: prof, profile: shortlivd, targets: [files] }
  elsewhere: { names: [elsewhere.example.test], ca: noprof, profile: shortlived, targets: [files] }
YAML

outcome_is() { [ "$(chj show "$1" | jq -r .certificate.last_outcome)" = "$2" ]; }
error_of() { chj show "$1" | jq -r .certificate.last_error; }
order_of() { grep "^NEWORDER .*\"$1.example.test\"" "$STUB_LOG" | sed 's/^NEWORDER //'; }
days() { echo $(( ($2 - $1) / 86400 )); }

start_daemon
wait_for 60 "short to be deployed" deployed short files
wait_for 60 "classic to be deployed" deployed classic files
[ "$(order_of short | jq -r .profile)" = shortlived ] || fail "short's order: $(order_of short)"
[ "$(order_of classic | jq -r .profile)" = classic ] || fail "classic's order (profile from defaults): $(order_of classic)"
pass "newOrder carries the certificate's profile, or the one from defaults"

for c in short classic; do
	s=$(chj show $c)
	nb=$(echo "$s" | jq '.issuances[0].not_before')
	na=$(echo "$s" | jq '.issuances[0].not_after')
	at=$(echo "$s" | jq '.certificate.renew_at')
	life=$((na - nb))
	case $c in
	short) [ "$(days "$nb" "$na")" = 6 ] || fail "short lives $life s, not 6 days"
		want=$((nb + life / 2)) ;;
	classic) [ "$(days "$nb" "$na")" = 90 ] || fail "classic lives $life s, not 90 days"
		want=$((nb + life / 3 * 2)) ;;
	esac
	# Up to an hour of per-certificate jitter before the planned time.
	[ "$at" -le "$want" ] && [ "$at" -gt $((want - 3601)) ] ||
		fail "$c: renewal at $at, expected about $want from notBefore $nb and notAfter $na"
	pass "$c ($(days "$nb" "$na") days): renewal planned from the issued certificate's validity ($(( (at - nb) / 3600 )) h after notBefore)"
done

wait_for 30 "typo to fail" outcome_is typo misconfigured
error_of typo | has -F "the CA offers no profile 'shortlivd'; it offers: classic, shortlived" ||
	fail "unclear error for an unknown profile: $(error_of typo)"
[ -z "$(order_of typo)" ] || fail "an order was made with an unknown profile"
pass "unknown profile -> misconfigured: $(error_of typo)"

wait_for 30 "elsewhere to fail" outcome_is elsewhere misconfigured
error_of elsewhere | has -F "profile 'shortlived' was asked for, but the CA's directory offers no profiles (no meta.profiles)" ||
	fail "unclear error without meta.profiles: $(error_of elsewhere)"
[ -z "$(order_of elsewhere)" ] || fail "an order was made at a CA without profiles"
pass "profile at a CA without meta.profiles -> misconfigured: $(error_of elsewhere)"
daemon_alive || fail "the daemon died"
stop_daemon

cat >"$T/local.yaml" <<YAML
state_dir: var
cas:
  own: { type: local }
certificates:
  x: { names: [x.example.test], ca: own, profile: shortlived }
YAML
out=$("$CERTHERDD" --check-config --config "$T/local.yaml" 2>&1) && fail "a profile on a local CA passed --check-config"
echo "$out" | has "local.yaml:5:[0-9]*: certificates.x.profile.*needs ACME CAs; CA 'own' is of type local" || fail "unclear error: $out"
pass "a profile on a non-ACME CA is refused at load: $out"
