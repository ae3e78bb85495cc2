#!/usr/bin/env bash
# Renewal throughput with the local CA (software key, ECDSA P-256, a fresh
# key per certificate), end to end: issue, record in the inventory, write
# the file target, record the deployment. Compared in the same run with
# what a user would otherwise run:
#
#   openssl CLI   the shell loop: openssl req -newkey ec + openssl x509 -req
#   plain loop    bench-sign.c, in-process OpenSSL only: keygen, build, sign, PEM
#   signing path  bench-sign-certherd.c, certherd's own ch_key_generate +
#                 ch_localca_issue + ch_cert_to_pem, linked against its core library
#
# and, when SoftHSM2 is installed, the same end-to-end run through the
# pkcs11 CA (ECDSA P-256 CA key generated in a SoftHSM2 token): what the
# token costs next to a software CA key, with the rest of the path equal.
#
#   N=2000            certificates issued by the daemon from an empty state dir
#   CONCURRENCY=1024  the daemon's concurrency setting
#   N_PEER=200        certificates made by the openssl CLI loop
#   N_P11=N           certificates issued through the pkcs11 CA (0: skip)
#   SIGN_SECONDS=5    duration of each in-process signing loop
#   PROFILE=0         1: a second daemon run of N_PROFILE (default 500)
#                     certificates under strace -c -f (syscalls per
#                     certificate) and one under perf record (CPU profile)
#
#   FS=tmp            where the daemon's state and target files live:
#                     tmp = under TMPDIR; ext4 = a new ext4 file system
#                     with mkfs.ext4's defaults (journal) on a loop device
#                     (root only), as on a freshly installed host
#
# Then the same N certificates are all renewed once more (forced, after a
# restart): the daemon replaces every key and certificate it deployed.
#
# Figures only: the exit status is 0 unless something breaks.
. "$(dirname "$0")/lib.sh"

need sqlite3 openssl python3 awk "$CC" pkg-config

N=${N:-2000}
CONCURRENCY=${CONCURRENCY:-1024}
N_PEER=${N_PEER:-200}
SIGN_SECONDS=${SIGN_SECONDS:-5}
PROFILE=${PROFILE:-0}
N_PROFILE=${N_PROFILE:-500}
STALL=${STALL:-60} # seconds without progress that count as broken
FS=${FS:-tmp}

# gen_config DIR N [CA_YAML]: N certificates from CA "local" (by default a
# software-key local CA; CA_YAML replaces its definition).
gen_config() {
	local dir=$1 n=$2 ca=${3:-"    type: local"}
	mkdir -p "$dir/out"
	{
		cat <<YAML
state_dir: var
socket: certherd.sock
concurrency: $CONCURRENCY
cas:
  local:
$ca
targets:
  files:
    type: file
    cert: "out/{name}.crt"
    fullchain: "out/{name}.fullchain.pem"
    key: "out/{name}.key"
defaults:
  ca: local
  key_type: ecdsa-p256
  lifetime: 90d
  targets: [files]
certificates:
YAML
		awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++) printf "  r%06d: { names: [r%06d.bench.test] }\n", i, i }'
	} >"$dir/certherd.yaml"
	"$CERTHERDD" -n -c "$dir/certherd.yaml" >/dev/null || fail "the generated configuration is invalid"
}

# counts DB: "issued deployed" (0 0 while the inventory does not exist yet),
# counting only issuances with an id above AFTER_ID (default 0).
counts() {
	[ -f "$1" ] || { echo "0 0"; return; }
	sqlite3 -cmd '.timeout 2000' -separator ' ' "$1" \
		"SELECT (SELECT count(*) FROM issuances WHERE id > ${AFTER_ID:-0}), (SELECT count(*) FROM deployments WHERE state = 'deployed' AND issuance_id > ${AFTER_ID:-0})" 2>/dev/null ||
		echo "0 0"
}

# run_daemon DIR N [WRAPPER...]: starts certherdd on DIR (optionally under
# WRAPPER, which must exec it), polls every 50 ms until N deployments are
# recorded as deployed, then stops it. Writes DIR/result:
# "wall_s ready_s first_issue_s all_issued_s cpu_s"
run_daemon() {
	local dir=$1 n=$2 pid t0 tr t tfirst= tissued= tdone cpu last=-1 lastt
	shift 2
	local db=$dir/var/certherd.db
	notify_listen "$dir/notify.sock" "$dir/ready.at"
	(cd "$dir" && echo "$EPOCHREALTIME" >start.at &&
		NOTIFY_SOCKET=$dir/notify.sock exec "$@" "$CERTHERDD" -c certherd.yaml \
			--log-target stderr >>daemon.log 2>&1) &
	pid=$!
	PIDS+=("$pid")
	DAEMON_PID=$pid
	lastt=$(now)
	while :; do
		read -r iss dep < <(counts "$db")
		t=$(now)
		[ -z "$tfirst" ] && [ "$iss" -ge 1 ] && tfirst=$t
		[ -z "$tissued" ] && [ "$iss" -ge "$n" ] && tissued=$t
		if [ "$dep" -ge "$n" ]; then
			tdone=$t
			break
		fi
		kill -0 "$pid" 2>/dev/null || fail "certherdd died after $iss issuances, $dep deployments"
		if [ "$((iss + dep))" != "$last" ]; then
			last=$((iss + dep))
			lastt=$t
		elif [ "$(calc "$t - $lastt > $STALL ? 1 : 0")" = 1 ]; then
			fail "no progress for ${STALL}s at $iss issuances, $dep deployments"
		fi
		sleep 0.05
	done
	# The daemon itself: with a wrapper, its child.
	local dpid=$pid
	if [ $# -gt 0 ]; then
		dpid=$(pgrep -P "$pid" -x certherdd | head -1 || true)
		[ -n "$dpid" ] || dpid=$pid
	fi
	cpu=$(cpu_s "$dpid")
	wait "$NOTIFY_PID" 2>/dev/null || true
	forget "$NOTIFY_PID"
	t0=$(cat "$dir/start.at")
	tr=$(cat "$dir/ready.at" 2>/dev/null || echo "$t0")
	STOP_PID=$dpid
	WRAP_PID=$pid
	echo "$(calc "$tdone - $t0") $(calc "$tr - $t0") $(calc "$tfirst - $t0") $(calc "$tissued - $t0") $cpu" >"$dir/result"
}

# stop_run: SIGTERM to the daemon, then wait for it (and its wrapper) to exit.
stop_run() {
	kill -TERM "$STOP_PID" 2>/dev/null || true
	wait "$WRAP_PID" 2>/dev/null || true
	forget "$WRAP_PID"
}

# check_e2e DIR N [CA_CRT]: every certificate issued once, valid, on disk and verifying.
check_e2e() {
	local dir=$1 n=$2 db=$1/var/certherd.db ca=${3:-$1/var/ca/local/ca.crt}
	[ "$(sqlite3 "$db" "SELECT count(*) FROM certificates WHERE state = 'valid'")" = "$n" ] ||
		fail "not every certificate is valid"
	[ "$(sqlite3 "$db" "SELECT count(DISTINCT cert_id) FROM issuances")" = "$n" ] ||
		fail "issuances do not cover every certificate"
	[ "$(find "$dir/out" -name '*.crt' | wc -l)" = "$n" ] || fail "not $n certificates in the file target"
	[ "$(find "$dir/out" -name '*.key' | wc -l)" = "$n" ] || fail "not $n keys in the file target"
	local i name
	for i in 1 $(((n + 1) / 2)) "$n"; do
		name=$(printf 'r%06d' "$i")
		openssl verify -CAfile "$ca" "$dir/out/$name.crt" >/dev/null ||
			fail "$name.crt does not verify against the local CA"
		[ "$(openssl x509 -noout -pubkey -in "$dir/out/$name.crt" | sha256sum)" = \
			"$(openssl pkey -pubout -in "$dir/out/$name.key" | sha256sum)" ] ||
			fail "$name.key does not match $name.crt"
		openssl x509 -noout -text -in "$dir/out/$name.crt" | grep -q 'prime256v1' ||
			fail "$name is not ECDSA P-256"
	done
}

echo "== certherd renewal throughput benchmark"
machine | sed 's/^/# /'
echo "# N=$N CONCURRENCY=$CONCURRENCY N_PEER=$N_PEER SIGN_SECONDS=$SIGN_SECONDS"
echo

# --- certherd end to end
dir=$T/e2e
if [ "$FS" = ext4 ]; then
	fresh_ext4 "$T/fs" $((N / 4 + 512)) || fail "FS=ext4 needs root, mkfs.ext4 and a loop device"
	dir=$T/fs/e2e
	echo "# daemon's file system: $(fs_describe "$T/fs"), new, $((N / 4 + 512)) MB image on $(fs_describe "$T")"
fi
gen_config "$dir" "$N"
echo "== certherd end to end: $N certificates, concurrency $CONCURRENCY, empty state dir"
run_daemon "$dir" "$N"
stop_run
read -r e2e_wall e2e_ready e2e_first e2e_issued e2e_cpu <"$dir/result"
check_e2e "$dir" "$N"
e2e_rate=$(calc "$N / $e2e_wall")
printf '  READY after %.3f s; first issuance recorded after %.3f s; all issued after %.3f s; all deployed after %.3f s\n' \
	"$e2e_ready" "$e2e_first" "$e2e_issued" "$e2e_wall"
printf '  %.1f certificates/s end to end (%.2f ms each); daemon CPU %.2f s = %.2f ms per certificate (%.0f%% of the wall time)\n' \
	"$e2e_rate" "$(calc "$e2e_wall / $N * 1000")" "$e2e_cpu" "$(calc "$e2e_cpu / $N * 1000")" \
	"$(calc "$e2e_cpu / $e2e_wall * 100")"
printf '  inventory %s kB, %s events\n' "$(du -k "$dir/var/certherd.db" | cut -f1)" \
	"$(sqlite3 "$dir/var/certherd.db" 'SELECT count(*) FROM events')"

# --- certherd renewing all of them: each certificate exists, is deployed
# and is renewed (a new key, a new issuance, the target's files replaced)
echo "== certherd renewing the same $N certificates (forced), one restart later"
AFTER_ID=$(sqlite3 "$dir/var/certherd.db" 'SELECT max(id) FROM issuances')
sqlite3 "$dir/var/certherd.db" "UPDATE certificates SET force = 1, next_at = strftime('%s', 'now')"
run_daemon "$dir" "$N"
stop_run
read -r rn_wall rn_ready _ _ rn_cpu <"$dir/result"
[ "$(sqlite3 "$dir/var/certherd.db" "SELECT count(DISTINCT cert_id) FROM issuances WHERE id > $AFTER_ID")" = "$N" ] ||
	fail "the forced renewals do not cover every certificate"
[ "$(sqlite3 "$dir/var/certherd.db" "SELECT count(*) FROM certificates WHERE current_issuance <= $AFTER_ID")" = 0 ] ||
	fail "a certificate still has its first issuance as current"
check_e2e "$dir" "$N"
AFTER_ID=0
rn_rate=$(calc "$N / ($rn_wall - $rn_ready)")
printf '  READY after %.3f s; all renewed and deployed %.3f s after READY\n' "$rn_ready" "$(calc "$rn_wall - $rn_ready")"
printf '  %.1f renewals/s end to end after READY (%.2f ms each); daemon CPU %.2f s = %.2f ms per renewal, start-up included\n' \
	"$rn_rate" "$(calc "($rn_wall - $rn_ready) / $N * 1000")" "$rn_cpu" "$(calc "$rn_cpu / $N * 1000")"
echo

# --- certherd end to end through the pkcs11 CA
N_P11=${N_P11:-$N}
P11_MODULE=${CH_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
p11_rate=
if [ "$N_P11" -gt 0 ] && command -v softhsm2-util >/dev/null && [ -r "$P11_MODULE" ]; then
	p11dir=$T/e2e-p11
	mkdir -p "$p11dir/tokens"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$p11dir/tokens" >"$p11dir/softhsm2.conf"
	export SOFTHSM2_CONF=$p11dir/softhsm2.conf
	softhsm2-util --init-token --free --label bench --pin bench-1234 --so-pin so-bench >/dev/null ||
		fail "cannot initialise a SoftHSM2 token"
	(umask 077 && echo bench-1234 >"$p11dir/pin")
	gen_config "$p11dir" "$N_P11" "    type: pkcs11
    module: $P11_MODULE
    token_label: bench
    key_label: ca
    pin_file: $p11dir/pin
    create: true
    key_type: ecdsa-p256
    common_name: bench token CA
    cert: $p11dir/ca.crt"
	echo "== certherd end to end through the pkcs11 CA (SoftHSM2, ECDSA P-256 key in the token): $N_P11 certificates"
	run_daemon "$p11dir" "$N_P11"
	stop_run
	read -r p11_wall p11_ready _ _ p11_cpu <"$p11dir/result"
	check_e2e "$p11dir" "$N_P11" "$p11dir/ca.crt"
	p11_rate=$(calc "$N_P11 / $p11_wall")
	printf '  READY after %.3f s; all deployed after %.3f s\n' "$p11_ready" "$p11_wall"
	printf '  %.1f certificates/s end to end (%.2f ms each; software CA key: %.2f ms); daemon CPU %.2f ms per certificate (software CA key: %.2f ms)\n' \
		"$p11_rate" "$(calc "$p11_wall / $N_P11 * 1000")" "$(calc "$e2e_wall / $N * 1000")" \
		"$(calc "$p11_cpu / $N_P11 * 1000")" "$(calc "$e2e_cpu / $N * 1000")"
	unset SOFTHSM2_CONF
	echo
fi

CA_CRT=$T/ca.crt
CA_KEY=$T/ca.key
cp "$dir/var/ca/local/ca.crt" "$CA_CRT"
cp "$dir/var/ca/local/ca.key" "$CA_KEY"
# Kept until exit: deleting many files now would slow file creation in the next run
# (ext4 skips inodes freed within the last dirty_expire_centisecs when allocating).
echo

# --- peer 1: the openssl CLI loop, same CA
echo "== openssl CLI: $N_PEER certificates (req -newkey ec P-256 + x509 -req), same CA"
p=$T/peer-cli
mkdir -p "$p"
t0=$(now)
for i in $(seq 1 "$N_PEER"); do
	name=$(printf 'p%06d' "$i")
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\nsubjectAltName=DNS:%s.bench.test\n' \
		"$name" >"$p/$name.ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$name.bench.test" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null ||
		fail "openssl req failed"
	openssl x509 -req -in "$p/$name.csr" -CA "$CA_CRT" -CAkey "$CA_KEY" -days 90 -sha256 \
		-extfile "$p/$name.ext" -out "$p/$name.crt" 2>/dev/null || fail "openssl x509 -req failed"
done
t1=$(now)
openssl verify -CAfile "$CA_CRT" "$p/p000001.crt" >/dev/null || fail "the openssl CLI certificate does not verify"
cli_rate=$(calc "$N_PEER / ($t1 - $t0)")
printf '  %.1f certificates/s (%.2f ms each; files written, not fsynced)\n' "$cli_rate" "$(calc "($t1 - $t0) / $N_PEER * 1000")"
echo

# --- peer 2: in-process loops
echo "== in-process signing loops, ${SIGN_SECONDS}s each, one thread, same CA"
# shellcheck disable=SC2046
$CC $BENCH_CFLAGS -o "$T/bench-sign" "$BENCHDIR/bench-sign.c" \
	$(pkg-config --cflags --libs openssl) || fail "cannot build bench-sign"
build_core_helper "$T/bench-sign-certherd" "$BENCHDIR/bench-sign-certherd.c"
out=$("$T/bench-sign" "$CA_CRT" "$CA_KEY" "$SIGN_SECONDS") || fail "bench-sign failed"
plain_rate=$(sed 's/.*certs_per_s=//' <<<"$out")
echo "  plain OpenSSL loop:           $out"
out=$("$T/bench-sign-certherd" "$CA_CRT" "$CA_KEY" "$SIGN_SECONDS") || fail "bench-sign-certherd failed"
ch_rate=$(sed 's/.*certs_per_s=//' <<<"$out")
echo "  certherd signing path:        $out"
out=$("$T/bench-sign-certherd" "$CA_CRT" "$CA_KEY" "$SIGN_SECONDS" keypem) || fail "bench-sign-certherd failed"
chk_rate=$(sed 's/.*certs_per_s=//' <<<"$out")
echo "  certherd path + key PEM:      $out"
echo

echo "== summary"
printf '%-44s %10s\n' "what" "certs/s"
printf '%-44s %10.1f\n' "certherd end to end (N=$N)" "$e2e_rate"
printf '%-44s %10.1f\n' "certherd renewing them all (N=$N)" "$rn_rate"
[ -z "$p11_rate" ] || printf '%-44s %10.1f\n' "certherd e2e, pkcs11 CA in SoftHSM2 (N=$N_P11)" "$p11_rate"
printf '%-44s %10.1f\n' "openssl CLI loop (N_PEER=$N_PEER)" "$cli_rate"
printf '%-44s %10.1f\n' "plain in-process OpenSSL loop" "$plain_rate"
printf '%-44s %10.1f\n' "certherd signing path" "$ch_rate"
printf '%-44s %10.1f\n' "certherd signing path + key PEM" "$chk_rate"
printf '%-44s %10.2fx\n' "certherd e2e / openssl CLI" "$(calc "$e2e_rate / $cli_rate")"
printf '%-44s %10.2fx\n' "certherd e2e / plain loop" "$(calc "$e2e_rate / $plain_rate")"
[ -z "$p11_rate" ] || printf '%-44s %10.2fx\n' "certherd e2e pkcs11 CA / software CA key" "$(calc "$p11_rate / $e2e_rate")"
printf '%-44s %10.2fx\n' "certherd signing path / plain loop" "$(calc "$ch_rate / $plain_rate")"
for r in "first issuance:$e2e_rate" "renewal:$rn_rate"; do
	printf '%-44s %10s  %s\n' "target: >= 1000/s end to end, ${r%%:*}" "$(fmt %.1f "${r#*:}")" \
		"$(if [ "$(calc "${r#*:} >= 1000 ? 1 : 0")" = 1 ]; then echo pass; else echo FAIL; fi)"
done

[ "$PROFILE" = 1 ] || exit 0

# --- where the time goes
echo
need strace perf
dir=$T/strace
gen_config "$dir" "$N_PROFILE"
echo "== strace -c -f -w: $N_PROFILE certificates (syscall counts and time blocked in them; strace slows the run)"
run_daemon "$dir" "$N_PROFILE" strace -f -c -w -o "$dir/strace.txt"
stop_run
read -r w _ _ _ _ <"$dir/result"
printf '  %.1f certificates/s under strace\n' "$(calc "$N_PROFILE / $w")"
awk -v n="$N_PROFILE" '
	$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
		printf "  %-16s %8d calls %7.2f per cert %8.3f s blocked %7.3f ms per cert %8.1f us per call\n", $NF, $4, $4 / n, $2, $2 / n * 1000, $2 / $4 * 1e6
	}' "$dir/strace.txt" | sort -k7 -g -r | head -14
syncs=$(awk '$NF ~ /^(fsync|fdatasync|syncfs|sync_file_range)$/ { s += $4 } END { print s + 0 }' "$dir/strace.txt")
printf '  fsync+fdatasync+syncfs: %d calls = %.2f per certificate\n' "$syncs" "$(calc "$syncs / $N_PROFILE")"
# Kept until exit: deleting many files now would slow file creation in the next run
# (ext4 skips inodes freed within the last dirty_expire_centisecs when allocating).

dir=$T/perf
gen_config "$dir" "$N_PROFILE"
echo
echo "== perf record -g: $N_PROFILE certificates (on-CPU profile of the daemon)"
run_daemon "$dir" "$N_PROFILE" perf record -q -g -o "$dir/perf.data" --
stop_run
read -r w _ _ _ c <"$dir/result"
printf '  %.1f certificates/s under perf; CPU %.2f s of %.2f s wall\n' "$(calc "$N_PROFILE / $w")" "$c" "$w"
perf report -i "$dir/perf.data" --no-children --sort dso --stdio 2>/dev/null |
	awk '/^ +[0-9.]+%/ { print "  " $0 }' | head -12
echo "  system calls, with what they call (share of all samples):"
perf report -i "$dir/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
	awk '/^ +[0-9.]+%/ && /\[k\] (__x64_sys_|__do_sys_|ksys_)/ { printf "  %8s  %s\n", $1, $4 }' | head -10
echo "  top symbols (self):"
perf report -i "$dir/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
	awk '/^ +[0-9.]+%/ { print "  " $0 }' | head -15
echo "  file system work, with what it calls:"
perf report -i "$dir/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
	awk '/^ +[0-9.]+%/ && $4 ~ /^(__ext4_new_inode|find_inode_bit|recently_deleted|ext4_sync_file|ext4_rename|ext4_add_entry|ext4_da_write_begin)$/ { printf "  %8s  %s\n", $1, $4 }'
