#!/usr/bin/env bash
# Chaos: targets that hang or refuse, with the local CA. Three faulty
# targets on one certificate (www), next to a file target, and a second
# certificate (api) on the file target alone:
# - hang: an exec target whose command (and a child it forks) sleeps
#   forever, timeout 2s: each attempt fails with "timed out after 2s", the
#   whole process group is killed (the pids it wrote are gone), and the
#   retries back off;
# - svc: a reload target whose pidfile names no process: a failed
#   deployment naming the pidfile, retried with backoff;
# - hap: the haproxy target on a unix socket that accepts and never
#   answers (timeout 2s): failed with "timed out", retried.
# Meanwhile www's file target and api are deployed. Then each fault is
# lifted (the command stops hanging, the service starts and writes its
# pidfile, a real HAProxy takes over the socket) and every target is
# deployed on its next retry: the service received its signal, HAProxy
# serves the certificate. CERTHERD_TEST_BACKOFF=3: retries after 3, 6 s.
. "$(dirname "$0")/../integration/lib.sh"

HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || fail "haproxy is not installed (./dev test installs it)"
for t in python3 openssl sqlite3 jq; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
mkdir -p "$T/out" "$T/hang" "$T/hap/certs"
H=$T/hap

# A pid that names no process: a child that has exited and been reaped.
sh -c 'exit 0' &
dead=$!
wait "$dead" || true
echo "$dead" >"$T/svc.pid"

# A unix socket that accepts connections and never answers.
python3 - "$H/admin.sock" >"$T/mute.log" 2>&1 <<'PY' &
import socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
    print("accepted", len(held), flush=True)
PY
MUTE_PID=$!
PIDS+=("$MUTE_PID")
wait_for 10 "the mute socket" test -S "$H/admin.sock"

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
verify_interval: 1h
cas:
  local: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
  hang:
    type: exec
    timeout: 2s
    command: [sh, -c, 'date +%s.%N >>"$T/hang/starts"; [ -e "$T/hang/off" ] && exit 0; echo \$\$ >>"$T/hang/pids"; sleep 1000 & echo \$! >>"$T/hang/pids"; wait']
  svc:
    type: reload
    pidfile: $T/svc.pid
    signal: USR1
  hap:
    type: haproxy
    socket: "$H/admin.sock"
    crt: "$H/certs/{name}.pem"
    crt_list: "$H/list.txt"
    timeout: 2s
certificates:
  www: { names: [www.test], lifetime: 30d, targets: [files, hang, svc, hap] }
  api: { names: [api.test], lifetime: 30d, targets: [files] }
YAML

dep() { chj show "$1" | jq -r --arg t "$2" ".issuances[0].deployments[] | select(.target==\$t) | .$3 // empty"; }
attempts_reach() { [ "$(dep www "$1" attempts)" -ge "$2" ] && [ "$(dep www "$1" state)" = failed ]; }
alive() { kill -0 "$1" 2>/dev/null; }

start_daemon CERTHERD_TEST_BACKOFF=3
wait_for 20 "www deployed to files" deployed www files
wait_for 20 "api deployed to files" deployed api files
wait_for 10 "the hanging command to start" test -s "$T/hang/pids"
# The first attempt is still hanging while the others are done.
[ "$(dep www hang state)" != deployed ] || fail "hang deployed"
pass "www's file target and api deployed while the hang target still hangs"

# --- hang -------------------------------------------------------------------
wait_for 30 "the hang target to fail three times" attempts_reach hang 3
err=$(dep www hang last_error)
echo "$err" | has -F "timed out after 2s" || fail "hang: the error does not say it timed out: $err"
# Every process the command started (the shell and its sleeping child) is gone.
dead_all() { local p; while read -r p; do ! alive "$p" || return 1; done <"$T/hang/pids"; }
wait_for 10 "the timed out commands to be killed" dead_all
mapfile -t starts <"$T/hang/starts"
[ "${#starts[@]}" -ge 3 ] || fail "hang: ${#starts[@]} runs for 3 attempts"
g1=$(awk -v a="${starts[0]}" -v b="${starts[1]}" 'BEGIN { printf "%.1f", b - a }')
g2=$(awk -v a="${starts[1]}" -v b="${starts[2]}" 'BEGIN { printf "%.1f", b - a }')
# 2 s timeout + 3 s, then 2 s + 6 s (each backoff minus up to 1 s of rounding).
awk -v a="$g1" -v b="$g2" 'BEGIN { exit !(b >= a + 1) }' || fail "hang: the retries do not back off: ${g1}s then ${g2}s"
pass "hang: failed ($err), $(wc -l <"$T/hang/pids") processes killed, retries ${g1}s then ${g2}s apart"

# --- refusing service ------------------------------------------------------------
wait_for 30 "the svc target to fail twice" attempts_reach svc 2
err=$(dep www svc last_error)
echo "$err" | has -F "$T/svc.pid" || fail "svc: the error does not name the pidfile: $err"
pass "svc: failed while its pidfile names no process ($err)"

# --- mute HAProxy socket ------------------------------------------------------
wait_for 30 "the hap target to fail twice" attempts_reach hap 2
err=$(dep www hap last_error)
echo "$err" | has -F "got no complete answer within 2s" || fail "hap: the error does not say it timed out: $err"
echo "$err" | has -F "$H/admin.sock" || fail "hap: the error does not name the socket: $err"
{ ch status || true; } | has hap || fail "status does not name the failing hap target"
pass "hap: failed on a socket that never answers ($err)"
daemon_alive || fail "the daemon died"

# --- everything comes back ---------------------------------------------------
touch "$T/hang/off"
python3 -c '
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda *a: open(sys.argv[1], "a").write("usr1\n"))
open(sys.argv[2], "w").write("%d\n" % __import__("os").getpid())
while True:
    time.sleep(1)
' "$T/svc.got" "$T/svc.pid.new" &
SVC_PID=$!
PIDS+=("$SVC_PID")
wait_for 10 "the service to start" test -s "$T/svc.pid.new"
mv "$T/svc.pid.new" "$T/svc.pid"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=placeholder -keyout "$H/placeholder.key" -out "$H/placeholder.crt" 2>/dev/null
cat "$H/placeholder.crt" "$H/placeholder.key" >"$H/placeholder.pem"
: >"$H/list.txt"
PORT=$(free_port)
cat >"$H/haproxy.cfg" <<CFG
global
	stats socket $H/admin.sock mode 600 level admin
	stats timeout 10s
defaults
	mode http
	timeout connect 2s
	timeout client 5s
	timeout server 5s
frontend fe
	bind 127.0.0.1:$PORT ssl crt $H/placeholder.pem crt-list $H/list.txt
	http-request return status 200 content-type text/plain string ok
CFG
kill "$MUTE_PID"
wait "$MUTE_PID" 2>/dev/null || true
rm -f "$H/admin.sock"
"$HAPROXY" -db -f "$H/haproxy.cfg" >>"$H/haproxy.log" 2>&1 &
PIDS+=("$!")
wait_for 10 "haproxy's runtime API" test -S "$H/admin.sock"
lifted=$SECONDS

all_deployed() { deployed www hang && deployed www svc && deployed www hap; }
wait_for 60 "every target of www deployed after the faults are lifted" all_deployed
has -x usr1 "$T/svc.got" || fail "the service never received SIGUSR1"
serial=$(inv_serial www)
served=$(openssl s_client -connect "127.0.0.1:$PORT" -servername www.test </dev/null 2>/dev/null |
	openssl x509 -noout -serial | sed 's/^serial=//;s/^0*//' | tr 'A-F' 'a-f')
[ "$served" = "$serial" ] || fail "haproxy serves $served, not the inventory's $serial"
[ "$(serial_of "$T/out/www.crt")" = "$serial" ] || fail "the deployed file is not the inventory's serial"
[ "$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = 'www'")" = 1 ] ||
	fail "www was issued again because of failing targets"
pass "all three targets deployed $((SECONDS - lifted))s after the faults were lifted; haproxy serves $serial; one issuance"
attempts="hang $(dep www hang attempts), svc $(dep www svc attempts), hap $(dep www hap attempts)"
stop_daemon
[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
left=$(find "$T/out" "$T/var" "$H" -name '*.tmp*')
[ -z "$left" ] || fail "temporary files left behind: $left"
echo "# faults-target: attempts until deployed: $attempts; recovered in $((SECONDS - lifted))s or less"
