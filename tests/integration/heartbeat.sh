#!/usr/bin/env bash
# The dead man's switch: heartbeats reach a receiver every interval and
# systemd watchdog pings reach a notify socket while the scheduler turns.
# With the test-only wedge file present (CERTHERD_TEST_WEDGE) the
# scheduler stops turning while the rest of the loop runs on: the status
# socket still answers, and both the heartbeats and the watchdog pings stop
# until the file is removed.
. "$(dirname "$0")/lib.sh"

SINK=$SRCDIR/tests/integration/alert-sink.py
python3 "$SINK" http "$T/http.port" "$T/beats.log" >"$T/http-sink.log" 2>&1 &
PIDS+=($!)
python3 "$SINK" notify "$T/notify.sock" "$T/notify.log" >"$T/notify-sink.log" 2>&1 &
PIDS+=($!)
wait_for 10 "the heartbeat receiver" test -s "$T/http.port"
wait_for 10 "the notify socket" test -S "$T/notify.sock"
HPORT=$(cat "$T/http.port")
touch "$T/beats.log" "$T/notify.log"

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
alerts:
  check_interval: 1s
heartbeat:
  url: http://127.0.0.1:$HPORT/ping/abc
  interval: 1s
  method: POST
cas:
  local:
    type: local
certificates:
  web:
    names: [web.test]
    lifetime: 1h
YAML

beats() { jq -s '[.[] | select(.method == "POST" and .path == "/ping/abc")] | length' "$T/beats.log"; }
pings() { jq -s '[.[] | select(.fields | index("WATCHDOG=1"))] | length' "$T/notify.log"; }
at_least() { [ "$("$1")" -ge "$2" ]; }
st() { status_json | jq -r "$1"; }
held_at_least() { [ "$(st '.heartbeat.held')" -ge "$1" ]; }
healthy_is() { [ "$(st '.scheduler.healthy')" = "$1" ]; }

start_daemon CERTHERD_TEST_WEDGE="$T/wedge" NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000
wait_for 20 "three heartbeats" at_least beats 3
wait_for 20 "two watchdog pings" at_least pings 2
[ "$(st '.heartbeat.failures')" = 0 ] || fail "heartbeats failed: $(st '.heartbeat.error')"
pass "heartbeats and watchdog pings while the scheduler turns"

touch "$T/wedge"
wait_for 20 "the scheduler to count as stalled" healthy_is false
b0=$(beats)
p0=$(pings)
h0=$(st '.heartbeat.held')
# Three more heartbeat intervals pass, every one of them held back.
wait_for 20 "three held-back heartbeats" held_at_least $((h0 + 3))
ch list --json >/dev/null || fail "the status socket stopped answering while wedged"
b1=$(beats)
p1=$(pings)
# One request may have been on its way when the scheduler was declared stalled.
[ "$b1" -le $((b0 + 1)) ] || fail "heartbeats went on while wedged ($b0 -> $b1)"
[ "$p1" -le $((p0 + 1)) ] || fail "watchdog pings went on while wedged ($p0 -> $p1)"
has -F "heartbeats are held back" "$T/daemon.log" || fail "no log line about the held heartbeats"
pass "no heartbeats and no watchdog pings while the scheduler is wedged"

rm -f "$T/wedge"
wait_for 20 "the scheduler to turn again" healthy_is true
wait_for 20 "heartbeats to resume" at_least beats $((b1 + 2))
wait_for 20 "watchdog pings to resume" at_least pings $((p1 + 2))
pass "heartbeats and watchdog pings resume once the scheduler turns"
