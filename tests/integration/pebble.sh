# shellcheck shell=bash
# Pebble for the ACME suites: sourced after lib.sh. start_pebble runs
# Debian's pebble (with -strict) and pebble-challtestsrv as its DNS server
# (every name is 127.0.0.1) in $T/pebble, on free loopback ports; both are
# stopped by PID with the other test processes. Pebble validates http-01
# for real, against the daemon's responder on $HTTP01_PORT.
# Sets PEBBLE_DIR_URL, PEBBLE_TLS_CA, PEBBLE_MGMT, HTTP01_PORT, PEBBLE_PID.
# With PEBBLE_DNS=host:port set, pebble resolves through that server
# instead (dns-01 against a real BIND) and no pebble-challtestsrv runs.
# With PEBBLE_EAB_KEYS='"kid": "base64url key", ...' set, pebble requires
# an external account binding made with one of those keys.

pebble_needs() {
	local t
	for t in pebble pebble-challtestsrv openssl curl jq; do
		command -v "$t" >/dev/null || { echo "SKIP: $t not installed (apt-get install pebble)"; exit 77; }
	done
}

# start_pebble [VAR=value...]: extra environment for pebble (e.g. PEBBLE_WFE_NONCEREJECT=0).
start_pebble() {
	pebble_needs
	local P=$T/pebble listen mgmt dns tls eab_required=false
	[ -n "${PEBBLE_EAB_KEYS:-}" ] && eab_required=true
	mkdir -p "$P"
	# Pebble's own HTTPS listener needs a certificate: a throwaway CA for it.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=certherd test pebble TLS CA" -keyout "$P/tls-ca.key" -out "$P/tls-ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
		-keyout "$P/tls-key.pem" -out "$P/tls.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$P/tls.ext"
	openssl x509 -req -in "$P/tls.csr" -CA "$P/tls-ca.pem" -CAkey "$P/tls-ca.key" -CAcreateserial \
		-days 2 -extfile "$P/tls.ext" -out "$P/tls-cert.pem" 2>/dev/null
	# free_port can race with other processes: a pebble that cannot bind is retried on new ports.
	local attempt pid_dns deadline
	for attempt in 1 2 3; do
		listen=$(free_port)
		mgmt=$(free_port)
		dns=$(free_port)
		tls=$(free_port)
		HTTP01_PORT=$(free_port)
		cat >"$P/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$listen",
    "managementListenAddress": "127.0.0.1:$mgmt",
    "certificate": "$P/tls-cert.pem",
    "privateKey": "$P/tls-key.pem",
    "httpPort": $HTTP01_PORT,
    "tlsPort": $tls,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": $eab_required,
    "externalAccountMACKeys": { ${PEBBLE_EAB_KEYS:-} }
  }
}
JSON
		if [ -n "${PEBBLE_DNS:-}" ]; then
			dns=${PEBBLE_DNS#127.0.0.1:}
			: >"$P/challtestsrv.log"
		else
		# DNS only: every A query answers 127.0.0.1, no AAAA, no challenge servers of its own.
		pebble-challtestsrv -dns01 "127.0.0.1:$dns" -http01 "" -https01 "" -tlsalpn01 "" \
			-management "127.0.0.1:$(free_port)" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
			>"$P/challtestsrv.log" 2>&1 &
		pid_dns=$!
		PIDS+=("$pid_dns")
		fi
		env PEBBLE_VA_NOSLEEP=1 "$@" pebble -config "$P/pebble-config.json" -strict \
			-dnsserver "127.0.0.1:$dns" >"$P/pebble.log" 2>&1 &
		PEBBLE_PID=$!
		PIDS+=("$PEBBLE_PID")
		[ -n "${PEBBLE_DNS:-}" ] && pid_dns=$PEBBLE_PID
		PEBBLE_DIR_URL=https://127.0.0.1:$listen/dir
		PEBBLE_TLS_CA=$P/tls-ca.pem
		PEBBLE_MGMT=https://127.0.0.1:$mgmt
		deadline=$((SECONDS + 20))
		while kill -0 "$PEBBLE_PID" 2>/dev/null && kill -0 "$pid_dns" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
			if curl -fsS --max-time 2 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_DIR_URL" >/dev/null 2>&1 &&
				curl -fsS --max-time 2 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_MGMT/roots/0" >/dev/null 2>&1; then
				return 0
			fi
			sleep 0.05
		done
		echo "pebble attempt $attempt failed:" >&2
		tail -n 3 "$P/pebble.log" "$P/challtestsrv.log" >&2
		kill "$PEBBLE_PID" "$pid_dns" 2>/dev/null || true
		wait "$PEBBLE_PID" "$pid_dns" 2>/dev/null || true
	done
	fail "pebble did not start"
}

# The issuing root of this pebble (it changes at every start).
pebble_root() {
	curl -fsS --max-time 5 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_MGMT/roots/0"
}
