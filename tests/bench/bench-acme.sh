#!/usr/bin/env bash
# N separate certificates from Debian's Pebble (always-valid, no VA sleep,
# no nonce rejection): certherd (one daemon, orders in flight at once)
# against the clients a user would script, in the same run and against
# the same Pebble: uacme, lego and certbot one process per certificate,
# one at a time and PAR at a time. Reports wall time, certificates/s and
# the CPU time per certificate of certherd and of Pebble.
#
#   N=100 PAR=4 CERTBOT_N=10 MAX_IN_FLIGHT=16
#   BUILDDIR=build-bench (the build to measure)
#
# certbot takes seconds per certificate, so it issues CERTBOT_N and its
# rate is scaled. uacme has no CA-file option; it runs in a private mount
# namespace over a bundle that includes Pebble's TLS CA (needs root).
# Figures only: the exit status is 0 unless something breaks.
set -euo pipefail
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build-bench}
export CERTHERDD=${CERTHERDD:-$BUILDDIR/certherdd} CERTHERD=${CERTHERD:-$BUILDDIR/certherd}
. "$SRCDIR/tests/integration/lib.sh"
. "$SRCDIR/tests/integration/pebble.sh"

N=${N:-100}
PAR=${PAR:-4}
CERTBOT_N=${CERTBOT_N:-10}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-16}
CMD_TIMEOUT=${CMD_TIMEOUT:-60}
for t in uacme lego certbot unshare; do
	command -v "$t" >/dev/null || fail "$t is needed (apt-get install uacme lego certbot)"
done

start_pebble PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
DIR_URL=$PEBBLE_DIR_URL
TCK=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$TCK" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / t) }' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { echo "$EPOCHREALTIME"; }
calc() { awk "BEGIN { printf \"%s\", ($1) }" </dev/null; }
RESULTS=()
record() { # name n ok seconds pebble_ms [daemon_ms]
	RESULTS+=("$*")
	printf '  %-22s %4d of %4d in %8.2f s = %6.1f certs/s; pebble CPU %5.1f ms/cert%s\n' "$1" "$3" "$2" "$4" \
		"$(calc "$3 / $4")" "$(calc "$5 / ($3 > 0 ? $3 : 1)")" \
		"${6:+; certherd CPU $(calc "$6 / ($3 > 0 ? $3 : 1)") ms/cert}"
}

echo "== ACME issuance: $N certificates from Pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null)"
echo "# $(nproc) cores; $(lego --version 2>&1 | head -1); certbot $(dpkg-query -W -f='${Version}' certbot); uacme $(dpkg-query -W -f='${Version}' uacme)"

# certherd: one daemon, N certificates, each deployed to a file target.
mkdir -p "$T/ch/out"
{
	cat <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
log_level: notice
concurrency: 256
cas:
  pebble:
    type: acme
    directory: $DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
    max_in_flight: $MAX_IN_FLIGHT
targets:
  files: { type: file, fullchain: "out/{name}.crt", key: "out/{name}.key" }
defaults: { ca: pebble, targets: [files] }
certificates:
YAML
	awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "  h%d: { names: [h%d.certherd.example.test] }\n", i, i }'
} >"$T/ch/certherd.yaml"
p0=$(cpu_ms "$PEBBLE_PID")
t0=$(now)
(cd "$T/ch" && exec "$CERTHERDD" -c certherd.yaml --log-target stderr >>daemon.log 2>&1) &
DPID=$!
PIDS+=("$DPID")
ok=0
until [ "$ok" -ge "$N" ]; do
	kill -0 "$DPID" 2>/dev/null || fail "certherdd died: $(tail -5 "$T/ch/daemon.log")"
	ok=$(sqlite3 -cmd '.timeout 2000' "$T/ch/var/certherd.db" \
		"SELECT count(*) FROM deployments WHERE state = 'deployed'" 2>/dev/null || echo 0)
	[ "$(calc "$(now) - $t0 < 600 ? 1 : 0")" = 1 ] || fail "certherd: only $ok of $N after 600 s"
	sleep 0.05
done
t1=$(now)
record "certherd" "$N" "$ok" "$(calc "$t1 - $t0")" "$(($(cpu_ms "$PEBBLE_PID") - p0))" "$(cpu_ms "$DPID")"
kill "$DPID"
wait "$DPID" 2>/dev/null || true

# Peers: accounts first, untimed.
W=$T/peers
mkdir -p "$W/www"
LEGO=(timeout "$CMD_TIMEOUT" lego --server "$DIR_URL" --email bench@example.test --accept-tos
	--path "$W/lego" --key-type ec256 --http --http.webroot "$W/www")
CERTBOT=(timeout "$CMD_TIMEOUT" certbot --config-dir "$W/cb/etc" --work-dir "$W/cb/work"
	--logs-dir "$W/cb/log" --server "$DIR_URL" --non-interactive --agree-tos
	--register-unsafely-without-email)
export LEGO_CA_CERTIFICATES=$PEBBLE_TLS_CA REQUESTS_CA_BUNDLE=$PEBBLE_TLS_CA
"${LEGO[@]}" -d warmup.lego.example.test run >"$W/lego-warm.log" 2>&1 || fail "lego account setup failed"
"${CERTBOT[@]}" register >"$W/cb-reg.log" 2>&1 || fail "certbot account setup failed"
cat /etc/ssl/certs/ca-certificates.crt "$PEBBLE_TLS_CA" >"$W/uacme-bundle.pem"
uacme_ns() { timeout "$1" unshare -m bash -c "mount --bind '$W/uacme-bundle.pem' /etc/ssl/certs/ca-certificates.crt && $2"; }
uacme_ns 30 "uacme -a $DIR_URL -c '$W/uacme' -y -t EC new bench@example.test" >"$W/uacme-new.log" 2>&1 ||
	fail "uacme account setup failed"

peer() { # name n command-string (run with {} = index)
	local name=$1 n=$2 par=$3 cmd=$4 p0 t0 t1 ok
	p0=$(cpu_ms "$PEBBLE_PID")
	t0=$(now)
	ok=$(seq 1 "$n" | xargs -P "$par" -I{} sh -c "$cmd >>'$W/$name.log' 2>&1 && echo ok" | grep -c ok || true)
	t1=$(now)
	record "$name" "$n" "$ok" "$(calc "$t1 - $t0")" "$(($(cpu_ms "$PEBBLE_PID") - p0))"
}
peer lego-seq "$N" 1 "$(printf '%q ' "${LEGO[@]}") -d h{}.lego-seq.example.test run"
peer lego-par$PAR "$N" "$PAR" "$(printf '%q ' "${LEGO[@]}") -d h{}.lego-par.example.test run"
peer certbot-seq "$CERTBOT_N" 1 "$(printf '%q ' "${CERTBOT[@]}") certonly --manual --preferred-challenges http --manual-auth-hook /bin/true --key-type ecdsa --elliptic-curve secp256r1 -d h{}.certbot.example.test"
for mode in seq par; do
	par=1
	[ "$mode" = par ] && par=$PAR
	p0=$(cpu_ms "$PEBBLE_PID")
	res=$(uacme_ns $((CMD_TIMEOUT * N)) "
		t0=\$EPOCHREALTIME
		ok=\$(seq 1 $N | xargs -P $par -I{} sh -c 'timeout $CMD_TIMEOUT uacme -a $DIR_URL -c \"$W/uacme\" -h /bin/true -t EC issue h{}.uacme-$mode.example.test >>\"$W/uacme-$mode.log\" 2>&1 && echo ok' | grep -c ok)
		echo \$t0 \$EPOCHREALTIME \$ok")
	read -r t0 t1 ok <<<"$res"
	name=uacme-seq
	[ "$mode" = par ] && name=uacme-par$PAR
	record "$name" "$N" "$ok" "$(calc "$t1 - $t0")" "$(($(cpu_ms "$PEBBLE_PID") - p0))"
done

echo
echo "== summary"
printf '| %-14s | %5s | %8s | %9s | %16s |\n' client certs seconds certs/s "pebble ms/cert"
best=0
best_name=
for r in "${RESULTS[@]}"; do
	read -r name n ok secs pms dms <<<"$r"
	rate=$(calc "$ok / $secs")
	printf '| %-14s | %5d | %8.2f | %9.1f | %16.1f |\n' "$name" "$ok" "$secs" "$rate" "$(calc "$pms / ($ok > 0 ? $ok : 1)")"
	if [ "$name" != certherd ] && [ "$(calc "$rate > $best ? 1 : 0")" = 1 ]; then
		best=$rate
		best_name=$name
	fi
	[ "$name" = certherd ] && ch_rate=$rate
done
printf 'certherd / fastest peer (%s): %.2fx (target: at least 3x)\n' "$best_name" "$(calc "$ch_rate / $best")"
