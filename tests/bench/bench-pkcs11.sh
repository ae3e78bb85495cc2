#!/usr/bin/env bash
# PKCS#11 local CA: raw C_Sign per second on a SoftHSM2 token against
# leaves per second through the pkcs11 CA backend, ECDSA P-256 and
# RSA-2048 (tests/bench/bench-pkcs11.c). Figures go to docs/PERFORMANCE.md.
#   BUILDDIR=build-p11 SECONDS_PER_CASE=3 tests/bench/bench-pkcs11.sh
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build-p11}
case $BUILDDIR in /*) ;; *) BUILDDIR=$SRCDIR/$BUILDDIR ;; esac
SECS=${SECONDS_PER_CASE:-3}
RUNS=${RUNS:-3}
MODULE=${CH_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
CORE_LIB=$(find "$BUILDDIR" -name libcertherd-core.a -print -quit)
[ -n "$CORE_LIB" ] || { echo "no libcertherd-core.a under $BUILDDIR; build it first" >&2; exit 1; }
command -v softhsm2-util >/dev/null || { echo "softhsm2-util missing (apt install softhsm2)" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/certherd-bench-p11.XXXXXX")
trap 'rm -rf "$T"' EXIT

PIN=bench-pin-1234
${CC:-cc} -O2 -g -Wall -D_GNU_SOURCE -I"$SRCDIR/include" -I"$BUILDDIR" \
	$(pkg-config --cflags p11-kit-1) -o "$T/bench-pkcs11" "$SRCDIR/tests/bench/bench-pkcs11.c" \
	"$CORE_LIB" $(pkg-config --libs openssl libevent libcurl yaml-0.1 sqlite3 jansson) \
	$(pkg-config --libs libsystemd 2>/dev/null || true) -ldl -lm

echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "# $(softhsm2-util --version | head -1 | sed 's/^/SoftHSM /'), $(openssl version)"
for run in $(seq 1 "$RUNS"); do
	d=$T/run$run
	mkdir -p "$d/tokens" "$d/state"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$d/tokens" >"$d/softhsm2.conf"
	export SOFTHSM2_CONF=$d/softhsm2.conf
	softhsm2-util --init-token --free --label bench --pin "$PIN" --so-pin so-bench >/dev/null
	(umask 077 && echo "$PIN" >"$d/pin")
	echo "# run $run"
	"$T/bench-pkcs11" "$MODULE" bench "$d/pin" "$SECS" "$d/state" 2>"$d/stderr.log" ||
		{ cat "$d/stderr.log" >&2; exit 1; }
done
