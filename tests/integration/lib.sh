# shellcheck shell=bash
# Shared helpers for the integration suites: a temp dir per test, daemons
# started on loopback and stopped by PID, polling with deadlines.
# Needs $CERTHERDD and $CERTHERD (set by meson) or a build in ./build.
set -euo pipefail

SRCDIR=${CH_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CERTHERDD=${CERTHERDD:-$SRCDIR/build/certherdd}
CERTHERD=${CERTHERD:-$SRCDIR/build/certherd}
T=$(mktemp -d /tmp/certherd-test.XXXXXX)
PIDS=()
DAEMON_PID=

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "kept $T" >&2
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$T/daemon.log" ]; then
		echo "--- daemon log (last 40 lines)" >&2
		tail -n 40 "$T/daemon.log" >&2
	fi
	exit 1
}

pass() { echo "ok - $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
	local limit=$1 what=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || fail "timed out after ${limit}s waiting for $what"
		sleep 0.05
	done
}

# A free TCP port on 127.0.0.1.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port"
}

SOCK=$T/certherd.sock
ch() { "$CERTHERD" --socket "$SOCK" "$@"; }
chj() { "$CERTHERD" --socket "$SOCK" --json "$@"; }

# start_daemon_bg [VAR=value...]: starts certherdd on $T/certherd.yaml.
start_daemon_bg() {
	env "$@" "$CERTHERDD" --config "$T/certherd.yaml" -vv --log-target stderr \
		>>"$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	PIDS+=("$DAEMON_PID")
}

# start_daemon [VAR=value...]: the same, then waits for the status socket.
start_daemon() {
	start_daemon_bg "$@"
	wait_for 10 "the status socket" ch list --json
}

# Waits until the daemon has died (at a crash point).
wait_daemon_dead() {
	wait_for 20 "certherdd to die at its crash point" bash -c "! kill -0 $DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null || true
}

daemon_alive() { kill -0 "$DAEMON_PID" 2>/dev/null; }

stop_daemon() {
	kill "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
}

kill9_daemon() {
	kill -9 "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
}

# The serial of the certificate in a PEM file, lowercase hex.
serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//'; }

# tls_test_cert DIR CN: a throwaway CA called CN (DIR/ca.pem, ca.key) and
# a server certificate it signed for 127.0.0.1 (DIR/cert.pem, key.pem),
# for the HTTPS test servers (stub CA, fault proxy).
tls_test_cert() {
	local d=$1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$2" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
		-keyout "$d/key.pem" -out "$d/req.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext"
	openssl x509 -req -in "$d/req.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/ext" -out "$d/cert.pem" 2>/dev/null
}

# Current serial of certificate NAME in the inventory.
inv_serial() { chj show "$1" | jq -r '.certificate.serial // empty' | sed 's/^0*//'; }

# True when the deployment of the current issuance of NAME to TARGET succeeded.
deployed() {
	[ "$(chj show "$1" | jq -r --arg t "$2" \
		'.issuances[0].deployments[] | select(.target==$t) | .state')" = deployed ]
}

sql() { sqlite3 "$T/var/certherd.db" "$@"; }

# The local CA certificate of CA NAME.
ca_cert() { echo "$T/var/ca/$1/ca.crt"; }

# grep that reads all its input (grep -q would close the pipe early and,
# under pipefail, fail the writer with SIGPIPE).
has() { grep "$@" >/dev/null; }

# status --json exits 1 while something needs attention; here only its output counts.
status_json() { chj status || true; }
