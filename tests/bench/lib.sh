# shellcheck shell=bash
# Shared helpers for the benchmarks: the build to measure, a temp dir per
# run, processes stopped by PID, wall-clock stamps and small statistics.
# Benchmarks print figures; they exit non-zero only when something breaks
# functionally, never because a figure is slow.
set -euo pipefail

SRCDIR=${CH_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BENCHDIR=$SRCDIR/tests/bench
BUILDDIR=${BUILDDIR:-$SRCDIR/build-bench}
# The binaries sit at the top of the build directory (older trees: src/).
bench_bin() {
	if [ -x "$BUILDDIR/$1" ]; then echo "$BUILDDIR/$1"; else echo "$BUILDDIR/src/$1"; fi
}
CERTHERDD=${CERTHERDD:-$(bench_bin certherdd)}
CERTHERD=${CERTHERD:-$(bench_bin certherd)}
CORE_LIB=${CORE_LIB:-$(find "$BUILDDIR" -name libcertherd-core.a -print -quit 2>/dev/null)}
T=$(mktemp -d "${TMPDIR:-/tmp}/certherd-bench.XXXXXX")
PIDS=()
MOUNTS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	for p in "${MOUNTS[@]}"; do
		umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
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
	local l
	for l in "$T"/*.log "$T"/*/*.log; do
		[ -f "$l" ] || continue
		echo "--- $l (last 20 lines)" >&2
		tail -n 20 "$l" >&2
	done
	exit 1
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || fail "$c is needed (apt-get install $c)"
	done
}

[ -x "$CERTHERDD" ] && [ -x "$CERTHERD" ] ||
	fail "no build at $BUILDDIR; run: meson setup build-bench -Dbuildtype=release && ninja -C build-bench"

# Seconds since the epoch with microseconds.
now() { echo "$EPOCHREALTIME"; }

# Arithmetic on decimals: calc 'EXPR' (awk syntax).
calc() { awk "BEGIN { printf \"%s\", ($1) }" </dev/null; }
fmt() { awk -v v="$2" "BEGIN { printf \"$1\", v }" </dev/null; }

# median V...: the median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# forget PID: drop PID from the list cleanup kills.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop_pid PID: SIGTERM, then wait for it (it is our child).
stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget "$1"
}

# proc_kb PID FIELD: a field of /proc/PID/status in kB (VmRSS, VmHWM).
proc_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_s PID: user+system CPU seconds of PID so far, threads included.
cpu_s() {
	local tck
	tck=$(getconf CLK_TCK)
	# Fields after the ")" that closes comm: state is $1, utime $12, stime $13.
	sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$tck" '{ printf "%.2f", ($12 + $13) / t }'
}

# machine: one line per fact about this host, for the reports.
machine() {
	echo "nproc: $(nproc)"
	echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "kernel: $(uname -sr)"
	echo "memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "tmp fs: $(fs_describe "$T")"
	echo "openssl: $(openssl version)"
	echo "sqlite3: $(sqlite3 --version | cut -d' ' -f1)"
	echo "build: $BUILDDIR, buildtype $(python3 -c 'import json, sys; print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"))' "$BUILDDIR/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?')"
}

# fs_describe DIR: "ext4 on /dev/vda (no journal, discard)" and the like.
fs_describe() {
	local dev type opts notes=() j
	read -r dev type < <(df -T "$1" | awk 'NR == 2 { print $1, $2 }')
	if [ "$type" = ext4 ]; then
		j=$(cat "/sys/fs/ext4/${dev##*/}/journal_task" 2>/dev/null || true)
		[ "$j" != "<none>" ] || notes+=("no journal")
		opts=$(awk -v d="$dev" '$1 == d { print $4; exit }' /proc/mounts)
		[[ ",$opts," != *,discard,* ]] || notes+=("discard")
	fi
	echo "$type on $dev${notes[*]:+ (${notes[*]})}" | sed 's/journal discard/journal, discard/'
}

# fresh_ext4 DIR SIZE_MB: mounts a new ext4 file system made with
# mkfs.ext4's defaults (a journal), in an image file under $T, on DIR.
# Needs root and a loop device; returns 1 when either is missing.
fresh_ext4() {
	local dir=$1 mb=$2
	[ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null || return 1
	mkdir -p "$dir"
	truncate -s "${mb}M" "$T/ext4.img" && mkfs.ext4 -q -F "$T/ext4.img" >/dev/null 2>&1 &&
		mount -o loop "$T/ext4.img" "$dir" 2>/dev/null || return 1
	MOUNTS+=("$dir")
}

# notify_listen SOCKET OUT: a background listener on the unix datagram
# socket SOCKET that writes the wall-clock time READY=1 arrived to OUT.
# Returns once the socket exists; sets NOTIFY_PID.
notify_listen() {
	rm -f "$1" "$2"
	python3 -u - "$1" "$2" <<'PY' &
import socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
while True:
    data = s.recv(1 << 16)
    t = time.time()
    if b"READY=1" in data.split(b"\n"):
        with open(out + ".tmp", "w") as f:
            f.write("%.6f\n" % t)
        import os
        os.rename(out + ".tmp", out)
        break
PY
	NOTIFY_PID=$!
	PIDS+=("$NOTIFY_PID")
	local i
	for i in $(seq 1 200); do
		[ -S "$1" ] && return 0
		sleep 0.01
	done
	fail "the notify listener did not bind $1"
}

# build_core_helper OUT SRC...: a C helper linked against certherd's core library.
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--O2 -g -Wall}
build_core_helper() {
	local out=$1 pcs="sqlite3 openssl libevent jansson yaml-0.1 libcurl"
	shift
	[ -n "$CORE_LIB" ] && [ -f "$CORE_LIB" ] || fail "no libcertherd-core.a under $BUILDDIR"
	pkg-config --exists libsystemd && pcs="$pcs libsystemd"
	# shellcheck disable=SC2086
	$CC $BENCH_CFLAGS -D_GNU_SOURCE -DNDEBUG -I"$SRCDIR/include" -I"$BUILDDIR" -o "$out" "$@" \
		"$CORE_LIB" $(pkg-config --cflags --libs $pcs) || fail "cannot build $out"
}
