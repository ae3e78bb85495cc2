#!/usr/bin/env bash
# Chaos: SIGKILL certherdd over and over while it renews a batch of
# short-lived certificates (local CA, 40 s lifetime, renewed about every
# 12 s; two Pebble ACME certificates renewed on demand), at random moments
# and at random crash points, restarting it each time. After every kill:
# the database passes integrity_check and every deployed file parses.
# After a final clean run: every certificate is valid and deployed (files
# hold the inventory's serial, verify against their CA, match their key),
# one issuance and one "issued" event per renewal, every certificate
# Pebble issued recorded exactly once, one Pebble order per renewal, no
# temporary files, a continuous event log.
#   CHAOS_KILLS=N (default 15)  CHAOS_SEED=N (random)  CHAOS_PEBBLE=0 (skip ACME)
# A long run: CHAOS_KILLS=200 meson test -C build --suite chaos -t 20
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/pebble.sh"

KILLS=${CHAOS_KILLS:-15}
SEED=${CHAOS_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
echo "# chaos: $KILLS kills, seed $SEED (CHAOS_SEED=$SEED reproduces the schedule)"
for t in openssl sqlite3 jq; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

ACME=0
if [ "${CHAOS_PEBBLE:-1}" = 1 ]; then
	start_pebble
	ACME=1
fi
BASE_PIDS=("${PIDS[@]}")

LOCAL_CERTS=(c1 c2 c3 c4 c5 c6 c7 c8)
ACME_CERTS=()
[ $ACME = 1 ] && ACME_CERTS=(a1 a2)
CERTS=("${LOCAL_CERTS[@]}" "${ACME_CERTS[@]}")
CRASHPOINTS=(issue-recorded issued-unrecorded deployed-unrecorded)
[ $ACME = 1 ] && CRASHPOINTS+=(acme-order-created acme-order-unrecorded)

mkdir -p "$T/out"
# write_config LIFETIME RENEW_BEFORE
write_config() {
	{
		cat <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
concurrency: 4
cas:
  local: { type: local }
YAML
		[ $ACME = 1 ] && cat <<YAML
  pebble:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
YAML
		cat <<YAML
targets:
  files:
    type: file
    cert: out/{name}.crt
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
  hook:
    type: exec
    command: [bash, -c, 'sleep 0.\$((RANDOM % 3)); echo "\$CERTHERD_NAME \$CERTHERD_SERIAL" >> "$T/hook.log"']
defaults:
  ca: local
  targets: [files, hook]
  lifetime: $1
  renew_before: $2
certificates:
  c1: { names: [c1.chaos.test] }
  c2: { names: [c2.chaos.test, 127.0.0.1] }
  c3: { names: [c3.chaos.test], key_type: ecdsa-p384 }
  c4: { names: [c4.chaos.test] }
  c5: { names: [c5.chaos.test], key_type: rsa-2048 }
  c6: { names: [c6.chaos.test, www.c6.chaos.test] }
  c7: { names: [c7.chaos.test], key_type: ed25519 }
  c8: { names: [c8.chaos.test] }
YAML
		[ $ACME = 1 ] && cat <<YAML
  a1: { names: [a1.chaos.test], ca: pebble }
  a2: { names: [a2.chaos.test, www.a2.chaos.test], ca: pebble }
YAML
		true
	} >"$T/certherd.yaml"
}
write_config 40s 28s

reap() { # forget the dead daemon so that cleanup never signals a reused PID
	{ wait "$DAEMON_PID" || true; } 2>/dev/null
	PIDS=("${BASE_PIDS[@]}")
}

# Waits for the status socket, or for the daemon to die at its crash point.
socket_or_dead() {
	local deadline=$((SECONDS + 10))
	until ch list --json >/dev/null 2>&1; do
		kill -0 "$DAEMON_PID" 2>/dev/null || return 1
		[ $SECONDS -lt $deadline ] || fail "no status socket after 10s"
		sleep 0.05
	done
}

force_acme() {
	ch renew "${ACME_CERTS[RANDOM % 2]}" --force >/dev/null 2>&1 && forced=$((forced + 1)) || true
}

msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# Waits up to $1 seconds for the daemon to die by itself; false if it did not.
died_within() {
	local deadline=$((SECONDS + $1))
	while kill -0 "$DAEMON_PID" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.05
	done
}

pubkey() { # x509|pkey FILE
	if [ "$1" = x509 ]; then
		openssl x509 -noout -pubkey -in "$2"
	else
		openssl pkey -pubout -in "$2"
	fi 2>/dev/null | sha256sum
}

MISMATCH=0
# After every kill (cheap: the machine is shared, openssl costs a process
# per file): a sound database; every deployed certificate parses; each
# certificate file is byte for byte the certificate of a recorded issuance,
# and its key and fullchain files those of the same issuance. A kill
# between the renames of one deployment may leave files of two issuances
# for a moment (counted); the deployment is then still pending and the
# restart must repair it, which the final check verifies.
check_after_kill() {
	local f n d crt dirs=() args=()
	[ "$(sql 'PRAGMA integrity_check; PRAGMA foreign_key_check')" = ok ] ||
		fail "integrity_check or foreign_key_check after kill $1"
	for f in "$T"/out/*.crt "$T"/out/*.fullchain.pem; do
		[ -e "$f" ] && args+=(-certfile "$f")
	done
	[ ${#args[@]} = 0 ] || openssl crl2pkcs7 -nocrl "${args[@]}" -out /dev/null 2>/dev/null ||
		fail "a deployed certificate file does not parse after kill $1"
	for n in "${CERTS[@]}"; do
		[ -e "$T/out/$n.crt" ] || continue
		crt=$(<"$T/out/$n.crt")
		d=$(sql "SELECT key_path FROM issuances WHERE rtrim(cert_pem, char(10)) = '$crt'")
		[ -n "$d" ] || fail "$n.crt is no issued certificate after kill $1"
		d=${d%key.pem}
		dirs+=("'${d}key.pem'")
		[ "$(<"$T/out/$n.key")" = "$(<"${d}key.pem")" ] &&
			[ "$(<"$T/out/$n.fullchain.pem")" = \
				"$(sql "SELECT cert_pem || chain_pem FROM issuances WHERE key_path = '${d}key.pem'")" ] ||
			MISMATCH=$((MISMATCH + 1))
	done
	[ ${#dirs[@]} = 0 ] || [ "$(sql "SELECT count(DISTINCT key_path) FROM issuances WHERE key_path IN ($(IFS=,; echo "${dirs[*]}"))")" = ${#dirs[@]} ] ||
		fail "a deployed certificate is not a recorded issuance after kill $1"
}

cp= random_kills=0 point_kills=0 points_missed=0 forced=0
start=$SECONDS
for i in $(seq 1 "$KILLS"); do
	if [ $((RANDOM % 3)) = 0 ]; then
		cp=${CRASHPOINTS[RANDOM % ${#CRASHPOINTS[@]}]}
		start_daemon_bg CERTHERD_CRASHPOINT="$cp"
		if [[ $cp == acme-* ]]; then
			# Only an ACME renewal reaches these: ask for one.
			socket_or_dead && force_acme
		fi
		if died_within 15 2>/dev/null; then
			point_kills=$((point_kills + 1))
		else
			points_missed=$((points_missed + 1))
			{ kill -9 "$DAEMON_PID" && wait "$DAEMON_PID"; } 2>/dev/null || true
		fi
	else
		start_daemon_bg
		if [ $ACME = 1 ] && [ $((RANDOM % 3)) = 0 ]; then
			socket_or_dead && force_acme
		fi
		msleep $((RANDOM % 2500))
		daemon_alive || fail "certherdd died by itself in round $i"
		{ kill -9 "$DAEMON_PID" && wait "$DAEMON_PID"; } 2>/dev/null || true
		random_kills=$((random_kills + 1))
	fi
	reap
	t0=$SECONDS
	check_after_kill "$i"
	[ -z "${CHAOS_DEBUG:-}" ] || echo "# round $i ${cp:-random}: checks $((SECONDS - t0))s, at $((SECONDS - start))s" >&2
	cp=
done
chaos_secs=$((SECONDS - start))
renewed=$(sql 'SELECT count(*) FROM issuances')
[ "$renewed" -gt ${#CERTS[@]} ] || fail "only $renewed issuances in ${chaos_secs}s of chaos: no renewals got through"
pass "$KILLS kills survived ($random_kills at random moments, $point_kills at crash points, $points_missed crash points not reached) in ${chaos_secs}s; $renewed issuances"

# Final clean run: a long lifetime renews everything once more (a config
# change), then nothing is due for a while and the state can be compared.
write_config 1h 30m
start_daemon
settled() {
	local n
	for n in "${CERTS[@]}"; do
		[ "$(sqlite3 "$T/var/certherd.db" "SELECT state = 'valid' AND pending_idem IS NULL AND force = 0
			FROM certificates WHERE name = '$n'")" = 1 ] || return 1
		[ "$(sqlite3 "$T/var/certherd.db" "SELECT count(*) FROM deployments d JOIN certificates c
			ON d.issuance_id = c.current_issuance WHERE c.name = '$n' AND d.state = 'deployed'")" = 2 ] || return 1
	done
	for n in "${LOCAL_CERTS[@]}"; do
		[ "$(sqlite3 "$T/var/certherd.db" "SELECT i.not_after - i.not_before >= 3000 FROM issuances i
			JOIN certificates c ON i.id = c.current_issuance WHERE c.name = '$n'")" = 1 ] || return 1
	done
}
wait_for 120 "every certificate renewed for 1h and deployed" settled
stop_daemon
reap
total_secs=$((SECONDS - start))

now=$(date +%s)
[ $ACME = 0 ] || pebble_root >"$T/pebble-root.pem"
for n in "${CERTS[@]}"; do
	row=$(sql "SELECT i.serial, i.not_after, i.ca FROM issuances i JOIN certificates c
		ON i.id = c.current_issuance WHERE c.name = '$n'")
	IFS='|' read -r serial not_after ca <<<"$row"
	[ "$not_after" -gt "$now" ] || fail "$n: current certificate expired"
	[ "$(serial_of "$T/out/$n.crt")" = "$(echo "$serial" | sed 's/^0*//')" ] ||
		fail "$n: file serial $(serial_of "$T/out/$n.crt") is not the inventory's $serial"
	if [ "$ca" = pebble ]; then
		openssl verify -CAfile "$T/pebble-root.pem" -untrusted "$T/out/$n.fullchain.pem" "$T/out/$n.crt" >/dev/null ||
			fail "$n: the deployed chain does not verify against pebble's root"
	else
		openssl verify -CAfile "$(ca_cert local)" "$T/out/$n.fullchain.pem" >/dev/null ||
			fail "$n: the deployed chain does not verify against the local CA"
	fi
	[ "$(pubkey x509 "$T/out/$n.crt")" = "$(pubkey pkey "$T/out/$n.key")" ] || fail "$n: key and certificate differ"
	[ "$(stat -c %a "$T/out/$n.key")" = 600 ] || fail "$n.key is not 0600"
	has -x "$n $serial" "$T/hook.log" || fail "$n: the hook never saw the current serial $serial"
done
pass "every certificate valid, deployed with its key, verified against its CA, seen by the hook"

left=$(find "$T/out" "$T/var" -name '*.tmp.*')
[ -z "$left" ] || fail "temporary files left behind: $(echo "$left" | sed -n 1,5p)"
[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
[ "$(sql 'SELECT count(*) - count(DISTINCT idem_key) FROM issuances')" = 0 ] || fail "two issuances share an idempotency key"
[ "$(sql 'SELECT count(*) - count(DISTINCT serial) FROM issuances')" = 0 ] || fail "two issuances share a serial"
[ "$(sql 'SELECT count(*) FROM issuances WHERE adopted')" = 0 ] || fail "an issuance was adopted from files"
# One "issued" event per issuance, naming its serial; none for anything else.
sql "SELECT c.name || ' serial ' || i.serial FROM issuances i JOIN certificates c ON c.id = i.cert_id ORDER BY 1" >"$T/iss.txt"
sql "SELECT cert || ' ' || substr(detail, 1, instr(detail, ',') - 1) FROM events WHERE event = 'issued' ORDER BY 1" >"$T/ev.txt"
diff "$T/iss.txt" "$T/ev.txt" >&2 || fail "issued events and issuances differ"
# The log is append-only: ids continuous (a rolled-back insert takes its AUTOINCREMENT
# value back with it) and time never goes backwards along them.
[ "$(sql 'SELECT max(id) - min(id) + 1 = count(*) FROM events')" = 1 ] || fail "the event log has gaps"
[ "$(sql 'SELECT count(*) FROM events a JOIN events b ON b.id = a.id + 1 WHERE b.at < a.at')" = 0 ] ||
	fail "event times go backwards"
# Every serial a hook saw was recorded for that certificate.
sort -u "$T/hook.log" | while read -r n s; do
	[ "$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id
		WHERE c.name = '$n' AND i.serial = '$s'")" = 1 ] || fail "the hook deployed $n serial $s, which is not recorded"
done
# No more issuances than the schedule allows: one per ~12 s per local
# certificate, one per forced ACME renewal, plus the final round.
for n in "${LOCAL_CERTS[@]}"; do
	k=$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = '$n'")
	[ "$k" -le $((total_secs / 9 + 3)) ] || fail "$n: $k issuances in ${total_secs}s"
done
for n in "${ACME_CERTS[@]}"; do
	k=$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = '$n'")
	[ "$k" -le $((forced + 2)) ] || fail "$n: $k issuances for $forced forced renewals"
done
pass "one issuance and one issued event per renewal, continuous event log, no temporary files"

if [ $ACME = 1 ]; then
	sed -n 's/.*Issued certificate serial \([0-9a-f]*\) .*/\1/p' "$T/pebble/pebble.log" | sed 's/^0*//' | sort >"$T/pebble-serials"
	sql "SELECT i.serial FROM issuances i WHERE i.ca = 'pebble'" | sed 's/^0*//' | sort >"$T/our-serials"
	diff "$T/pebble-serials" "$T/our-serials" >&2 ||
		fail "the certificates pebble issued and the issuances recorded differ"
	pass "every certificate pebble issued ($(wc -l <"$T/pebble-serials")) recorded exactly once ($forced forced renewals)"
	# One order per renewal: every order pebble created was finalized once,
	# unless it went invalid (a kill while pebble validated) and was given up
	# for a new one. An order created and then forgotten is a duplicate.
	orders=0 abandoned=0
	for o in $(sed -n 's/.*Added order "\([^"]*\)" to the db.*/\1/p' "$T/pebble/pebble.log"); do
		orders=$((orders + 1))
		k=$(grep -c "Issued certificate serial [0-9a-f]* for order $o\$" "$T/pebble/pebble.log" || true)
		[ "$k" -le 1 ] || fail "pebble issued $k certificates for order $o"
		[ "$k" = 0 ] || continue
		grep -E "ACME order [^ ]*/$o (cannot be resumed \((invalid|expired)\)|ended rejected)" \
			"$T/daemon.log" >/dev/null || fail "order $o was created and never finalized nor found invalid: a duplicate order"
		abandoned=$((abandoned + 1))
	done
	[ $((orders - abandoned)) = "$(wc -l <"$T/pebble-serials")" ] || fail "$orders orders, $abandoned invalid, $(wc -l <"$T/pebble-serials") certificates"
	pass "one order per renewal at pebble: $orders orders, $abandoned went invalid and were replaced"
fi
total=$(sql 'SELECT count(*) FROM issuances')
echo "# chaos summary: seed $SEED, $KILLS kills survived ($random_kills random, $point_kills at crash points), $total issuances, ${MISMATCH} cert/key mismatches seen right after a kill (repaired), ${total_secs}s"
