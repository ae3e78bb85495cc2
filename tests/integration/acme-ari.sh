#!/usr/bin/env bash
# ACME Renewal Information (RFC 9773) against the stub server
# (acme-stub.py, mode "ari"): Pebble 2.4.0 has no renewalInfo, so the stub
# answers the way Let's Encrypt does (RFC 3339 times with fractional
# seconds, Retry-After: 3600, an explanationURL during an incident).
# Checked: the certID sent is the one computed independently from the
# deployed certificate (AKI key id and serial with its leading 00 byte);
# a window 30 days ahead plans the renewal inside it and show displays
# it; a window already over renews at once, and that order carries
# 'replaces' with the old certificate's certID; Retry-After is kept across
# a restart (no second fetch); a CA without renewalInfo keeps the usual
# schedule.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acme-stub.sh"

start_acme_stub
S=$T/stub
PORT=$STUB_PORT
mkdir -p "$T/out"

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  ari:
    type: acme
    directory: https://127.0.0.1:$PORT/ari/dir
    trust: $S/ca.pem
    http01_listen: 127.0.0.1:$(free_port)
  plain:
    type: acme
    directory: https://127.0.0.1:$PORT/noprof/dir
    trust: $S/ca.pem
    http01_listen: 127.0.0.1:$(free_port)
targets:
  files: { type: file, cert: "out/{name}.crt", key: "out/{name}.key" }
certificates:
  later: { names: [later.example.test], ca: ari, targets: [files] }
  now: { names: [now.example.test], ca: ari, targets: [files] }
  plain: { names: [plain.example.test], ca: plain, targets: [files] }
YAML

# certID computed here from the PEM: AKI key id . serial DER bytes (00 first when the high bit is set).
cert_id() {
	python3 - "$1" <<'PY'
import base64, subprocess, sys
def run(*a): return subprocess.run(a, check=True, capture_output=True, text=True).stdout
aki = run("openssl", "x509", "-noout", "-ext", "authorityKeyIdentifier", "-in", sys.argv[1])
kid = bytes.fromhex("".join(l.strip() for l in aki.splitlines()[1:]).replace("keyid:", "").replace(":", ""))
serial = run("openssl", "x509", "-noout", "-serial", "-in", sys.argv[1]).strip().split("=")[1]
raw = bytes.fromhex(serial.rjust(len(serial) + len(serial) % 2, "0"))
raw = (b"\0" + raw) if raw[0] & 0x80 else raw
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
print(b(kid) + "." + b(raw))
PY
}
window_of() { chj show "$1" | jq -c '.certificate.renewal_window // empty'; }
has_window() { [ "$(chj show "$1" | jq -r '.certificate.renewal_window.end // 0')" -gt 0 ]; }
n_issued() { chj show "$1" | jq '.issuances | length'; }
fetches() { grep -c "^GET /ari/renewal-info/$1\$" "$S/requests.log" || true; }

start_daemon
wait_for 60 "later to be deployed" deployed later files
wait_for 30 "later's renewal window" has_window later
ID=$(cert_id "$T/out/later.crt")
has "^WINDOW $ID " "$S/requests.log" || fail "the stub served no window for certID $ID: $(grep WINDOW "$S/requests.log")"
read -r _ _ start end < <(grep "^WINDOW $ID " "$S/requests.log" | head -n 1)
w=$(window_of later)
[ "$(echo "$w" | jq .start)" = "$start" ] && [ "$(echo "$w" | jq .end)" = "$end" ] ||
	fail "show's window $w is not the stub's $start..$end"
renew_at=$(chj show later | jq .certificate.renew_at)
[ "$renew_at" -ge "$start" ] && [ "$renew_at" -lt "$end" ] ||
	fail "renewal planned at $renew_at, outside the window $start..$end"
fetched=$(echo "$w" | jq .fetched_at)
next=$(echo "$w" | jq .next_check)
[ $((next - fetched)) -eq 3600 ] || fail "next check $((next - fetched)) s after the fetch, not Retry-After 3600"
ch show later | has "CA's window (ARI): .* next check in" || fail "show does not display the window: $(ch show later)"
pass "certID $ID as computed from the certificate; renewal planned at $renew_at inside the window; next check after Retry-After"

# "now" is in a window that is already over: renewed at once, the order replaces the first certificate.
wait_for 60 "now to be renewed" bash -c "[ \$($CERTHERD --socket $SOCK --json show now | jq '.issuances | length') -ge 2 ]"
OLD_PEM=$(chj show now | jq -r '.issuances[1].serial')
wait_for 30 "now's new certificate to be deployed" deployed now files
NEW_ID=$(cert_id "$T/out/now.crt")
orders=$(grep '^NEWORDER .*now.example.test' "$S/requests.log")
[ "$(echo "$orders" | wc -l)" -eq 2 ] || fail "expected 2 orders for now: $orders"
echo "$orders" | head -n 1 | has -v replaces || fail "the first order replaces something: $orders"
OLD_ID=$(echo "$orders" | sed -n 2p | sed 's/^NEWORDER //' | jq -r .replaces)
has "^WINDOW $OLD_ID " "$S/requests.log" || fail "'replaces' $OLD_ID is not the certID whose window was fetched"
[ "$OLD_ID" != "$NEW_ID" ] || fail "replaces names the new certificate"
chj show now | jq -r '.events[].detail // empty' | has "renewal planned at .*incident/42" ||
	fail "the window's explanation is not in the events"
wait_for 30 "the new certificate's window" bash -c "grep -q '^WINDOW $NEW_ID ' '$S/requests.log'"
wait_for 30 "now's renewal inside the new window" has_window now
[ "$(n_issued now)" -eq 2 ] || fail "now was issued $(n_issued now) times"
pass "a window already over renews at once; the new order replaces $OLD_ID (serial $OLD_PEM)"

# No window from a CA without renewalInfo: the usual schedule, nothing in show.
wait_for 60 "plain to be deployed" deployed plain files
[ -z "$(window_of plain)" ] || fail "plain has a window: $(window_of plain)"
grep '^NEWORDER .*plain.example.test' "$S/requests.log" | has -v replaces || fail "plain's order has replaces"
pass "a CA without renewalInfo: no window, no replaces"

# Restart: the window and Retry-After are kept, nothing fetched again before its time.
stop_daemon
start_daemon
wait_for 30 "later's window after a restart" has_window later
[ "$(window_of later | jq .end)" = "$end" ] || fail "window lost across the restart: $(window_of later)"
[ "$(chj show later | jq .certificate.renew_at)" = "$renew_at" ] || fail "the renewal time was drawn again"
[ "$(fetches "$ID")" = 1 ] || fail "the window was fetched $(fetches "$ID") times before Retry-After"
daemon_alive || fail "the daemon died"
pass "after a restart: same window and renewal time, no fetch before Retry-After"
stop_daemon
[ "$(fetches "$ID")" = 1 ] || fail "the window was fetched $(fetches "$ID") times before Retry-After"
