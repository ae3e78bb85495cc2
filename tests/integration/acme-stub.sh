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
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=certherd test stub CA" -keyout "$S/ca.key" -out "$S/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
		-keyout "$S/key.pem" -out "$S/req.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$S/ext"
	openssl x509 -req -in "$S/req.csr" -CA "$S/ca.pem" -CAkey "$S/ca.key" -CAcreateserial -days 2 \
		-extfile "$S/ext" -out "$S/cert.pem" 2>/dev/null
	STUB_PORT=$(free_port)
	STUB_CA=$S/ca.pem
	STUB_LOG=$S/requests.log
	touch "$STUB_LOG"
	python3 "$SRCDIR/tests/integration/acme-stub.py" "$STUB_PORT" "$S/cert.pem" "$S/key.pem" "$STUB_LOG" \
		>"$S/stub.log" 2>&1 &
	PIDS+=("$!")
	wait_for 20 "the stub ACME server" curl -fsS --max-time 2 --cacert "$STUB_CA" "https://127.0.0.1:$STUB_PORT/ari/dir"
}
