#!/usr/bin/env bash
# `list` of an inventory larger than one page of the streamed reply: every
# certificate exactly once, in name order, one valid JSON line; a request
# sent behind it on the same connection is answered after it; a client
# that goes away in the middle does not disturb the daemon.
. "$(dirname "$0")/lib.sh"

N=1500
{
	cat <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
certificates:
YAML
	awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "  c%04d: { names: [c%04d.test], lifetime: 30d }\n", i, i }' 
} >"$T/certherd.yaml"
start_daemon

chj list >"$T/list.json"
[ "$(wc -l <"$T/list.json")" = 1 ] || fail "list --json is not one line"
jq -e --argjson n "$N" '.ok and (.certificates | length == $n)' "$T/list.json" >/dev/null ||
	fail "list --json does not hold $N certificates"
jq -r '.certificates[].name' "$T/list.json" >"$T/names"
sort -u "$T/names" | cmp -s - "$T/names" || fail "names are not unique and in order"
[ "$(head -1 "$T/names")" = c0001 ] && [ "$(tail -1 "$T/names")" = "c$N" ] ||
	fail "first/last: $(head -1 "$T/names") $(tail -1 "$T/names")"
pass "list --json of $N certificates: each once, in name order"

printf '{"cmd":"list"}\n{"cmd":"status"}\n' | timeout 20 socat -t 10 - "UNIX-CONNECT:$SOCK" >"$T/pipe"
[ "$(wc -l <"$T/pipe")" = 3 ] || fail "expected hello, list and status lines, got $(wc -l <"$T/pipe")"
sed -n 2p "$T/pipe" | jq -e --argjson n "$N" '.certificates | length == $n' >/dev/null ||
	fail "pipelined list incomplete"
sed -n 3p "$T/pipe" | jq -e '.version and .health' >/dev/null || fail "the status behind the list: $(sed -n 3p "$T/pipe" | head -c 200)"
pass "a request behind a list is answered after it"

# Clients that read a little and hang up mid-stream.
for _ in 1 2 3; do # each client hangs up after 100 bytes
	{ printf '{"cmd":"list"}\n'; sleep 1; } | timeout 5 socat - "UNIX-CONNECT:$SOCK" 2>/dev/null |
		head -c 100 >/dev/null || true
done
daemon_alive || fail "daemon died after clients left in the middle of a list"
chj list | jq -e --argjson n "$N" '.certificates | length == $n' >/dev/null || fail "list after aborted clients"
pass "clients leaving mid-list leave the daemon serving"
