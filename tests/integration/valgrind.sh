#!/usr/bin/env bash
# The daemon under valgrind's memcheck through a whole cycle: start,
# issue two certificates (ECDSA and RSA) and deploy them, a forced
# renewal, a status query, a reload, SIGTERM. No invalid access, no
# definite or indirect leak.
. "$(dirname "$0")/lib.sh"

command -v valgrind >/dev/null || fail "valgrind is not installed (apt-get install valgrind)"
mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  local: { type: local }
targets:
  files: { type: file, fullchain: "out/{name}.crt", key: "out/{name}.key" }
certificates:
  a: { names: [a.test], lifetime: 30d, targets: [files] }
  b: { names: [b.test], key_type: rsa-2048, lifetime: 30d, targets: [files] }
YAML
(cd "$T" && exec valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=9 --log-file="$T/valgrind.log" \
	"$CERTHERDD" --config "$T/certherd.yaml" --log-target stderr >>"$T/daemon.log" 2>&1) &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_for 120 "a and b deployed under valgrind" bash -c "[ -s '$T/out/a.crt' ] && [ -s '$T/out/b.crt' ]"
first=$(inv_serial a)
ch renew a --force >/dev/null
wait_for 120 "a renewed" bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show a | jq -r .certificate.serial | sed 's/^0*//')\" != '$first' ]"
wait_for 120 "a redeployed" deployed a files
ch status >/dev/null || fail "status not ok: $(ch status)"
kill -HUP "$DAEMON_PID"
wait_for 60 "the reload" bash -c "grep -q 'Configuration reloaded' '$T/daemon.log'"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
[ "$rc" = 0 ] || fail "valgrind exit status $rc: $(cat "$T/valgrind.log")"
[ ! -s "$T/valgrind.log" ] || fail "valgrind reported: $(head -40 "$T/valgrind.log")"
pass "memcheck: no errors and no leaks through issuance, renewal, status, reload and shutdown"
