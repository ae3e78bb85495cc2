# shellcheck shell=bash
# The stub ACME server (acme-stub.py) for the suites that need what
# Pebble 2.4.0 lacks; sourced after lib.sh. start_acme_stub starts it on a
# free port with a throwaway TLS CA and sets STUB_PORT, STUB_CA (the TLS CA
# to trust) and STUB_LOG (one line per request).

start_acme_stub() {
	local t S=$T/stub
	for t in python3 openssl jq; do
		command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
	done
	mkdir -p "$S"
	tls_test_cert "$S" "certherd test stub CA"
	STUB_PORT=$(free_port)
	STUB_CA=$S/ca.pem
	STUB_LOG=$S/requests.log
	touch "$STUB_LOG"
	python3 "$SRCDIR/tests/integration/acme-stub.py" "$STUB_PORT" "$S/cert.pem" "$S/key.pem" "$STUB_LOG" \
		>"$S/stub.log" 2>&1 &
	PIDS+=("$!")
	wait_for 20 "the stub ACME server" curl -fsS --max-time 2 --cacert "$STUB_CA" "https://127.0.0.1:$STUB_PORT/ari/dir"
}
