#!/usr/bin/env bash
# CA budgets: a local CA with a budget of 2 certificates per registered
# domain per week and three certificates of example.test: two are issued,
# the third is not sent (budget-exhausted, with when the budget frees);
# status and /metrics show 0 remaining. After a restart the count holds: a
# new certificate of the same domain listing [limited, spare] fails over
# to spare. A renewal of the same names from the same CA is exempt, as at
# Let's Encrypt, and is issued while the third still waits.
. "$(dirname "$0")/lib.sh"

for t in jq curl openssl sqlite3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

mkdir -p "$T/out"
MPORT=$(free_port)
write_config() {
	cat <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$MPORT
cas:
  limited:
    type: local
    budget: { certificates_per_domain_per_week: 2 }
  spare:
    type: local
targets:
  files: { type: file, fullchain: "out/{name}.pem", key: "out/{name}.key" }
certificates:
  a: { names: [a.example.test], ca: limited, targets: [files] }
  b: { names: [www.b.example.test, b.example.test], ca: limited, targets: [files] }
  c: { names: [c.example.test], ca: limited, targets: [files] }
YAML
	[ "${1:-}" = with-d ] &&
		echo "  d: { names: [d.example.test], ca: [limited, spare], targets: [files] }"
	true
}
write_config >"$T/certherd.yaml"

outcome() { chj show "$1" | jq -r .certificate.last_outcome; }
issuer() { chj show "$1" | jq -r '.issuances[0].ca // empty'; }
count_outcome() {
	local n=0 c
	for c in a b c; do [ "$(outcome $c)" = "$1" ] && n=$((n + 1)); done
	echo $n
}
settled() { [ "$(count_outcome issued)" = 2 ] && [ "$(count_outcome budget-exhausted)" = 1 ]; }
remaining() {
	status_json | jq -r --arg ca "$1" \
		'.budgets[] | select(.ca == $ca and .limit == "certificates_per_domain_per_week") | .remaining'
}
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | grep "^certherd_ca_budget_remaining{ca=\"$1\",limit=\"$2\"} " | awk '{print $2}'; }

start_daemon
wait_for 30 "two issued and one waiting for the budget" settled
for c in a b c; do [ "$(outcome $c)" = budget-exhausted ] && third=$c; done
[ -z "$(issuer "$third")" ] || fail "$third was issued by $(issuer "$third")"
[ ! -e "$T/out/$third.pem" ] || fail "$third was deployed"
err=$(chj show "$third" | jq -r .certificate.last_error)
echo "$err" | has "budget of CA limited exhausted: certificates_per_domain_per_week (2) for example.test, 0 remaining; frees at " ||
	fail "$third: reason: $err"
next=$(sql "SELECT next_at - strftime('%s','now') FROM certificates WHERE name = '$third'")
[ "$next" -gt $((3 * 86400)) ] || fail "$third: next attempt in $next s, not when the budget frees (3.5 days)"
chj show "$third" | jq -r '.events[].event' | has -x budget-exhausted || fail "no budget-exhausted event"
pass "budget of 2: the third certificate ($third) was not sent: $err"

[ "$(remaining limited)" = 0 ] || fail "status: limited has $(remaining limited) remaining"
status_json | jq -e '.budgets[] | select(.ca == "limited") | .domains[] | select(.domain == "example.test" and .remaining == 0 and .frees_at > 0)' >/dev/null ||
	fail "status has no exhausted example.test: $(status_json | jq -c .budgets)"
status_json | jq -e --arg n "$third" '.failing[] | select(.name == $n and .outcome == "budget-exhausted")' >/dev/null ||
	fail "status does not list $third as waiting for the budget"
status_text() { ch status || true; } # exits 1 while something waits
status_text | has "limited certificates_per_domain_per_week: 0 of 2 remaining" || fail "status text: $(status_text)"
status_text | has "example.test: 0 remaining, EXHAUSTED until" || fail "status text lacks the domain"
status_text | has "  $third: not sent, budget of CA limited exhausted" || fail "status text lacks $third"
[ "$(metric limited certificates_per_domain_per_week)" = 0 ] ||
	fail "metrics: '$(metric limited certificates_per_domain_per_week)'"
curl -fsS "http://127.0.0.1:$MPORT/metrics" | has 'certherd_ca_budget_remaining{ca="spare"' &&
	fail "spare has no budget yet exports one"
ch show "$third" | has "runbooks.md#budget-exhausted" || fail "show points to no runbook"
pass "status and /metrics show 0 remaining for limited, with when it frees"

# --- restart: the count is kept ------------------------------------------
stop_daemon
write_config with-d >"$T/certherd.yaml"
start_daemon
wait_for 30 "d to be issued" bash -c "[ -n \"\$('$CERTHERD' --socket '$SOCK' --json show d | jq -r '.issuances[0].ca // empty')\" ]"
[ "$(issuer d)" = spare ] || fail "d was issued by $(issuer d), the budget was forgotten over the restart"
chj show d | jq -r '.events[] | select(.event == "failover") | .detail' |
	has "from limited to spare: budget of CA limited exhausted" || fail "d: no failover event for the budget"
[ "$(remaining limited)" = 0 ] || fail "after the restart: limited has $(remaining limited) remaining"
[ "$(outcome "$third")" = budget-exhausted ] || fail "$third: $(outcome "$third") after the restart"
pass "after a restart the budget is still spent: d failed over to spare"

# --- a renewal of the same names is exempt -------------------------------
for c in a b c; do [ "$(outcome $c)" = issued ] && { done1=$c; break; }; done
s1=$(inv_serial "$done1")
ch renew "$done1" --force >/dev/null
wait_for 30 "$done1 to be renewed" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show $done1 | jq -r .certificate.serial | sed 's/^0*//')\" != '$s1' ]"
[ "$(issuer "$done1")" = limited ] || fail "$done1 renewed by $(issuer "$done1")"
[ "$(outcome "$third")" = budget-exhausted ] || fail "$third: $(outcome "$third")"
pass "the renewal of $done1 (same names, same CA) was issued by limited; $third still waits"
daemon_alive || fail "the daemon died"
stop_daemon
