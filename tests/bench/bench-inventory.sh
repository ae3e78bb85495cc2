#!/usr/bin/env bash
# Inventory size: how start-up, the scheduler's "next due" lookup,
# `certherd list --json` and the daemon's memory grow with the number of
# certificates, each already issued and valid.
#
#   SIZES="10000 30000 100000"  inventory sizes
#   REPEAT=3                    runs per figure (the median is reported)
#   PER_FILE=5000               certificates per conf.d/*.yaml file
#   LOOKUPS=20000               timed next-due lookups per size
#
# Each size gets its own configuration (a local CA, one file target,
# lifetime 90d, the certificates spread over include files). The daemon is
# started once so that its first sync records every certificate with its
# exact spec, stopped as soon as its socket answers, and the certificates
# it did not issue yet get issuance rows with sqlite3 (a copy of one real
# certificate with its own serial, fingerprint and idempotency key, valid
# for 90 days, renewals spread over the next 60 days, deployed). Then:
#
#   start to READY=1 (sd_notify) and to the socket answering a request
#   the next-due lookup: its plan, sqlite3 .timer, and per call timing
#   certherd list --json: wall time and size
#   VmHWM/VmRSS of the daemon after start and after the list
#
# Figures only: the exit status is 0 unless something breaks.
. "$(dirname "$0")/lib.sh"

need sqlite3 jq python3 awk "$CC" pkg-config

SIZES=${SIZES:-"10000 30000 100000"}
REPEAT=${REPEAT:-3}
PER_FILE=${PER_FILE:-5000}
LOOKUPS=${LOOKUPS:-20000}

BENCH_CFLAGS="$BENCH_CFLAGS -O3" build_core_helper "$T/bench-nextdue" "$BENCHDIR/bench-nextdue.c"
NEXT_DUE_SQL=$("$T/bench-nextdue" sql)

# gen_config DIR N: the main file and N certificates in conf.d/.
gen_config() {
	local dir=$1 n=$2
	mkdir -p "$dir/conf.d" "$dir/out"
	cat >"$dir/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
log_level: notice
include: conf.d/*.yaml
cas:
  local:
    type: local
targets:
  files:
    type: file
    cert: "out/{name}.crt"
    key: "out/{name}.key"
defaults:
  ca: local
  lifetime: 90d
  targets: [files]
YAML
	awk -v n="$n" -v per="$PER_FILE" -v dir="$dir/conf.d" 'BEGIN {
		for (i = 1; i <= n; i++) {
			if ((i - 1) % per == 0) {
				if (f) close(f)
				f = sprintf("%s/part-%04d.yaml", dir, (i - 1) / per)
				print "certificates:" > f
			}
			name = sprintf("c%07d", i)
			printf "  %s: { names: [%s.bench.test] }\n", name, name > f
		}
	}'
}

# populate DIR N: every certificate issued, valid and deployed.
populate() {
	local dir=$1 n=$2 pid t0 t1 db=$1/var/certherd.db
	t0=$(now)
	(cd "$dir" && exec "$CERTHERDD" -c certherd.yaml --log-target stderr >>first.log 2>&1) &
	pid=$!
	PIDS+=("$pid")
	# status, not list: the first start issues every certificate, and a list
	# of all of them is streamed in between those renewals.
	# (exit 1 is an answer too: certificates not issued yet need attention).
	until rc=0; "$CERTHERD" --socket "$dir/certherd.sock" --json status >/dev/null 2>&1 || rc=$?
		[ "$rc" -le 1 ]; do
		kill -0 "$pid" 2>/dev/null || fail "certherdd died on its first start with $n certificates"
		sleep 0.02
	done
	t1=$(now)
	stop_pid "$pid"
	local issued
	issued=$(sqlite3 "$db" "SELECT count(*) FROM issuances")
	[ "$(sqlite3 "$db" "SELECT count(*) FROM certificates WHERE wanted = 1")" = "$n" ] ||
		fail "the first sync did not record $n certificates"
	[ "$issued" -ge 1 ] || {
		# Not one issued before the stop: start again until one is.
		(cd "$dir" && exec "$CERTHERDD" -c certherd.yaml --log-target stderr >>first.log 2>&1) &
		pid=$!
		PIDS+=("$pid")
		until [ "$(sqlite3 "$db" 'SELECT count(*) FROM issuances' 2>/dev/null)" -ge 1 ]; do
			kill -0 "$pid" 2>/dev/null || fail "certherdd died"
			sleep 0.05
		done
		stop_pid "$pid"
		issued=$(sqlite3 "$db" "SELECT count(*) FROM issuances")
	}
	echo "  first start (inserting $n): socket answered after $(fmt %.2f "$(calc "$t1 - $t0")") s; $issued issued by the daemon before the stop"

	sqlite3 "$db" >/dev/null <<SQL || fail "populating the inventory failed"
.bail on
PRAGMA busy_timeout = 5000;
BEGIN IMMEDIATE;
CREATE TEMP TABLE tpl AS
  SELECT cert_pem, key_path, ca FROM issuances
  WHERE key_path IS NOT NULL AND cert_pem IS NOT NULL ORDER BY id LIMIT 1;
CREATE TEMP TABLE clock AS SELECT CAST(strftime('%s', 'now') AS INTEGER) AS now;
INSERT INTO issuances (cert_id, serial, fingerprint, not_before, not_after, issued_at, ca,
                       idem_key, cert_pem, chain_pem, key_path)
  SELECT c.id, printf('bebe%028x', c.id), printf('%064x', c.id), clock.now - 300,
         clock.now + 90 * 86400, clock.now, tpl.ca, printf('bench%027x', c.id),
         tpl.cert_pem, '', tpl.key_path
  FROM certificates c, tpl, clock WHERE c.current_issuance IS NULL;
UPDATE certificates SET current_issuance =
  (SELECT max(i.id) FROM issuances i WHERE i.cert_id = certificates.id)
  WHERE current_issuance IS NULL;
UPDATE certificates SET state = 'valid', failures = 0, force = 0, pending_idem = NULL,
  pending_key = NULL, last_outcome = 'issued', last_error = NULL,
  last_success_at = (SELECT now FROM clock),
  renew_at = (SELECT now FROM clock) + 3600 + (id * 7919) % (60 * 86400),
  next_at = (SELECT now FROM clock) + 3600 + (id * 7919) % (60 * 86400);
INSERT OR IGNORE INTO deployments (issuance_id, target, state, attempted_at, succeeded_at,
                                   next_at, attempts)
  SELECT current_issuance, 'files', 'deployed', clock.now, clock.now, 0, 1
  FROM certificates, clock;
UPDATE deployments SET state = 'deployed', next_at = 0,
  succeeded_at = (SELECT now FROM clock) WHERE state != 'deployed';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
	local valid future
	valid=$(sqlite3 "$db" "SELECT count(*) FROM certificates c JOIN issuances i ON i.id = c.current_issuance WHERE c.state = 'valid' AND i.not_after > strftime('%s', 'now')")
	future=$(sqlite3 "$db" "SELECT count(*) FROM certificates WHERE next_at > strftime('%s', 'now')")
	[ "$valid" = "$n" ] && [ "$future" = "$n" ] ||
		fail "after populating: $valid of $n valid, $future scheduled in the future"
	echo "  inventory: $n valid certificates, $(sqlite3 "$db" 'SELECT count(*) FROM issuances') issuances, $(sqlite3 "$db" 'SELECT count(*) FROM deployments') deployments, $(du -k "$db" | cut -f1) kB"
}

# measure DIR N RUN: one start; appends "ready sock list_s list_bytes hwm1 rss1 hwm2 rss2".
measure() {
	local dir=$1 n=$2 pid t0 tr ts tl0 tl1 hwm1 rss1 hwm2 rss2 bytes
	local sock=$dir/certherd.sock
	notify_listen "$dir/notify.sock" "$dir/ready.at"
	(cd "$dir" && echo "$EPOCHREALTIME" >start.at &&
		NOTIFY_SOCKET=$dir/notify.sock exec "$CERTHERDD" -c certherd.yaml \
			--log-target stderr >>daemon.log 2>&1) &
	pid=$!
	PIDS+=("$pid")
	# A cheap request: one certificate.
	until "$CERTHERD" --socket "$sock" --json show c0000001 >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || fail "certherdd died while starting with $n certificates"
		sleep 0.005
	done
	ts=$(now)
	wait "$NOTIFY_PID" 2>/dev/null || true
	forget "$NOTIFY_PID"
	[ -s "$dir/ready.at" ] || fail "no READY=1 from certherdd"
	t0=$(cat "$dir/start.at")
	tr=$(cat "$dir/ready.at")
	hwm1=$(proc_kb "$pid" VmHWM)
	rss1=$(proc_kb "$pid" VmRSS)
	tl0=$(now)
	"$CERTHERD" --socket "$sock" --json list >"$dir/list.json" || fail "certherd list failed"
	tl1=$(now)
	bytes=$(wc -c <"$dir/list.json")
	[ "$(jq '.certificates | length' "$dir/list.json")" = "$n" ] ||
		fail "list --json does not hold $n certificates"
	[ "$(jq '[.certificates[] | select(.state == "valid")] | length' "$dir/list.json")" = "$n" ] ||
		fail "not every certificate is valid in list --json"
	hwm2=$(proc_kb "$pid" VmHWM)
	rss2=$(proc_kb "$pid" VmRSS)
	stop_pid "$pid"
	[ ! -e "$sock" ] || fail "socket left behind after SIGTERM"
	echo "$(calc "$tr - $t0") $(calc "$ts - $t0") $(calc "$tl1 - $tl0") $bytes $hwm1 $rss1 $hwm2 $rss2"
}

echo "== certherd inventory benchmark"
machine | sed 's/^/# /'
echo "# sizes: $SIZES; repeat: $REPEAT; per file: $PER_FILE; lookups: $LOOKUPS"
echo

declare -A R
for n in $SIZES; do
	dir=$T/n$n
	echo "== $n certificates"
	gen_config "$dir" "$n"
	"$CERTHERDD" -n -c "$dir/certherd.yaml" >/dev/null || fail "the generated configuration is invalid"
	populate "$dir" "$n"

	ready=() sockt=() list=() hwm1=() rss1=() hwm2=() rss2=() bytes=0
	for run in $(seq 1 "$REPEAT"); do
		measure "$dir" "$n" "$run" >"$dir/run.txt"
		read -r a b c d e f g h <"$dir/run.txt"
		[ -n "$h" ] || fail "run $run of $n gave no figures"
		ready+=("$a") sockt+=("$b") list+=("$c") hwm1+=("$e") rss1+=("$f") hwm2+=("$g") rss2+=("$h")
		bytes=$d
		printf '  run %d: READY %.3f s, socket %.3f s, list --json %.3f s (%d bytes), VmHWM/VmRSS %d/%d kB after start, %d/%d kB after list\n' \
			"$run" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
	done
	R[$n,ready]=$(median "${ready[@]}")
	R[$n,sock]=$(median "${sockt[@]}")
	R[$n,list]=$(median "${list[@]}")
	R[$n,bytes]=$bytes
	R[$n,hwm1]=$(median "${hwm1[@]}")
	R[$n,rss1]=$(median "${rss1[@]}")
	R[$n,hwm2]=$(median "${hwm2[@]}")
	R[$n,rss2]=$(median "${rss2[@]}")

	db=$dir/var/certherd.db
	echo "  next due, plan:"
	sqlite3 "$db" "EXPLAIN QUERY PLAN $NEXT_DUE_SQL" | sed 's/^/    /'
	sqlite3 "$db" "EXPLAIN QUERY PLAN $NEXT_DUE_SQL" | grep -q 'USING INDEX certificates_next_at' ||
		echo "  note: the next-due plan does not use certificates_next_at"
	# sqlite3 .timer on: the statement 1000 times (its real time has 1 ms resolution).
	{
		echo ".timer on"
		echo ".output /dev/null"
		for _ in $(seq 1 1000); do echo "$NEXT_DUE_SQL;"; done
	} | sqlite3 "$db" 2>&1 | awk '/^Run Time/ { n++; r += $4; if ($4 > m) m = $4; u += $6; s += $8 }
		END { printf "  next due, sqlite3 .timer on x%d: real total %.3f s, max %.3f s, user+sys %.1f us per statement\n", n, r, m, (u + s) / n * 1e6 }'
	"$T/bench-nextdue" time "$db" "$LOOKUPS" >"$dir/nd.txt" || fail "the next-due lookup failed"
	read -r nd <"$dir/nd.txt"
	echo "  next due, ch_store_cert_next_due(): $nd"
	R[$n,nd]=$(sed 's/.*median_us=\([0-9.]*\).*/\1/' <<<"$nd")
	R[$n,nd99]=$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$nd")
	echo
	[ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
done

echo "== summary (medians of $REPEAT runs)"
printf '%-10s %10s %10s %12s %12s %12s %12s %12s %12s %12s\n' certs ready_s socket_s next_due_us nd_p99_us list_s list_MB hwm_start_MB hwm_list_MB rss_list_MB
for n in $SIZES; do
	printf '%-10s %10.3f %10.3f %12.2f %12.2f %12.3f %12.1f %12.1f %12.1f %12.1f\n' "$n" \
		"${R[$n,ready]}" "${R[$n,sock]}" "${R[$n,nd]}" "${R[$n,nd99]}" "${R[$n,list]}" \
		"$(calc "${R[$n,bytes]} / 1048576")" "$(calc "${R[$n,hwm1]} / 1024")" \
		"$(calc "${R[$n,hwm2]} / 1024")" "$(calc "${R[$n,rss2]} / 1024")"
done

# Growth per 10x between the smallest and the largest size.
read -r small large < <(printf '%s\n' $SIZES | sort -n | awk 'NR == 1 { s = $1 } { l = $1 } END { print s, l }')
if [ "$small" != "$large" ]; then
	echo
	echo "== growth from $small to $large, as a factor per 10x more certificates"
	for k in ready sock nd list bytes hwm1 hwm2 rss2; do
		printf '%-12s %8.2fx\n' "$k" "$(calc "(${R[$large,$k]} / ${R[$small,$k]}) ^ (1 / (log($large / $small) / log(10)))")"
	done
fi

echo
echo "== targets at $large certificates (reported, not enforced)"
verdict() { if [ "$(calc "$2 < $3 ? 1 : 0")" = 1 ]; then echo "pass"; else echo "FAIL"; fi; }
printf '%-34s %12s  %s\n' "start to READY < 1 s" "$(fmt %.3f "${R[$large,ready]}") s" "$(verdict x "${R[$large,ready]}" 1)"
printf '%-34s %12s  %s\n' "next due well under 1 ms" "$(fmt %.2f "${R[$large,nd]}") us" "$(verdict x "${R[$large,nd]}" 100)"
printf '%-34s %12s  %s\n' "list --json < 2 s" "$(fmt %.3f "${R[$large,list]}") s" "$(verdict x "${R[$large,list]}" 2)"
printf '%-34s %12s  %s\n' "RSS (VmHWM) < 64 MB" "$(fmt %.1f "$(calc "${R[$large,hwm2]} / 1024")") MB" "$(verdict x "${R[$large,hwm2]}" 65536)"
