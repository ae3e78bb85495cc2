#!/usr/bin/env bash
# Account key rollover (RFC 8555 §7.3.5, `certherd acme rollover CA`)
# against a real Pebble: the CA confirms, the new key (mode 0600) replaces
# the old one and the same account keeps issuing, also after a restart
# (newAccount with the new key finds the existing account). Crash safety:
# killed after the new key is stored but before the CA heard of it, the
# next start keeps the old key; killed after the CA confirmed but before
# the swap, the next start takes the new key; either way the account stays
# the same. A local CA has no account key to roll over.
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
  own: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
certificates:
  www: { names: [www.example.test], ca: pebble, targets: [files] }
YAML
K=$T/var/acme/pebble/account.key
pub() { openssl pkey -in "$1" -pubout 2>/dev/null | sha256sum | cut -c1-16; }
account_urls() { grep -o 'ACME account https://[^ ]*' "$T/daemon.log" | sort -u; }
issued() { chj show www | jq '.issuances | length'; }

start_daemon
wait_for 60 "www to be deployed" deployed www files
ACCT=$(account_urls)
[ "$(echo "$ACCT" | wc -l)" = 1 ] || fail "accounts: $ACCT"
k0=$(pub "$K")

out=$(ch acme rollover pebble) || fail "rollover failed: $out"
echo "$out" | has "now uses a new key (the CA confirmed the rollover)" || fail "unexpected answer: $out"
k1=$(pub "$K")
[ "$k1" != "$k0" ] || fail "the account key did not change"
[ "$(stat -c %a "$K")" = 600 ] || fail "the new key has mode $(stat -c %a "$K")"
[ ! -e "$K.new" ] || fail "account.key.new left behind"
ch renew www --force >/dev/null
wait_for 60 "a renewal signed with the new key" bash -c "[ \$($CERTHERD --socket $SOCK --json show www | jq '.issuances | length') -ge 2 ]"
pass "rollover confirmed by Pebble: new key ($k0 -> $k1, 0600), the next renewal issued with it"

stop_daemon
start_daemon
ch renew www --force >/dev/null
wait_for 60 "a renewal after the restart" bash -c "[ \$($CERTHERD --socket $SOCK --json show www | jq '.issuances | length') -ge 3 ]"
has "using existing ACME account ${ACCT#ACME account }" "$T/daemon.log" || fail "the new key did not find the account: $(account_urls)"
[ "$(account_urls | wc -l)" = 1 ] || fail "a second account appeared: $(account_urls)"
pass "after a restart the new key finds the same account; no second account"
stop_daemon

# Killed with the new key stored, before the CA heard of it: the old key stays.
start_daemon CERTHERD_CRASHPOINT=acme-rollover-key-stored
ch acme rollover pebble >/dev/null 2>&1 || true
wait_daemon_dead
[ -e "$K.new" ] || fail "no account.key.new at the crash point"
[ "$(pub "$K")" = "$k1" ] || fail "the key changed before the CA confirmed"
start_daemon
ch renew www --force >/dev/null
wait_for 60 "a renewal after the first crash" bash -c "[ \$($CERTHERD --socket $SOCK --json show www | jq '.issuances | length') -ge 4 ]"
has "rollover was not confirmed by the CA .*keeping the old key" "$T/daemon.log" || fail "no recovery logged"
[ "$(pub "$K")" = "$k1" ] && [ ! -e "$K.new" ] || fail "after recovery: key $(pub "$K"), .new $(ls "$K.new" 2>&1)"
[ "$(account_urls | wc -l)" = 1 ] || fail "a second account appeared: $(account_urls)"
pass "crash before the request: the old key kept, the new one dropped, same account"
stop_daemon

# Killed after the CA confirmed, before the swap: the next start takes the new key.
start_daemon CERTHERD_CRASHPOINT=acme-rollover-confirmed
ch acme rollover pebble >/dev/null 2>&1 || true
wait_daemon_dead
k2=$(pub "$K.new")
[ "$(pub "$K")" = "$k1" ] || fail "the key was swapped before the crash point"
start_daemon
ch renew www --force >/dev/null
wait_for 60 "a renewal after the second crash" bash -c "[ \$($CERTHERD --socket $SOCK --json show www | jq '.issuances | length') -ge 5 ]"
has "rollover had been confirmed by the CA; now using the new key" "$T/daemon.log" || fail "no recovery logged"
[ "$(pub "$K")" = "$k2" ] && [ ! -e "$K.new" ] || fail "after recovery: key $(pub "$K") not $k2"
[ "$(stat -c %a "$K")" = 600 ] || fail "the key has mode $(stat -c %a "$K")"
[ "$(account_urls | wc -l)" = 1 ] || fail "a second account appeared: $(account_urls)"
pass "crash after the CA confirmed: the new key taken at the next start, same account"

out=$(ch acme rollover own 2>&1) && fail "a local CA rolled over: $out"
echo "$out" | has "CA own is of type local, which has no ACME account key" || fail "unclear error: $out"
out=$(ch acme rollover nosuch 2>&1) && fail "an unknown CA rolled over: $out"
echo "$out" | has "no CA named 'nosuch'" || fail "unclear error: $out"
daemon_alive || fail "the daemon died"
pass "rollover of a local or unknown CA is refused clearly"
stop_daemon
