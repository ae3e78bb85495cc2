#!/usr/bin/env bash
# run.sh FUZZER NAME SRCDIR WORKDIR: the meson suite 'fuzz' (a build with
# -Dfuzz=true). Runs one libFuzzer target for FUZZ_SECONDS (default 10)
# over its seed corpus (SRCDIR/corpus/NAME, never written) and the inputs
# earlier runs found (WORKDIR/corpus/NAME, kept in the build directory),
# with its dictionary. A crash, leak, sanitizer report or timeout fails the
# test; the input is left in WORKDIR/crashes/ and belongs in the seed
# corpus once the bug is fixed, where the unit suite replays it.
set -euo pipefail
fuzzer=$1 name=$2 src=$3 work=$4
secs=${FUZZ_SECONDS:-10}
mkdir -p "$work/corpus/$name" "$work/crashes"
log=$work/fuzz-$name.log
dict=()
[ ! -f "$src/fuzz-$name.dict" ] || dict=(-dict="$src/fuzz-$name.dict")
rc=0
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/crashes/$name-" "${dict[@]}" \
	"$work/corpus/$name" "$src/corpus/$name" >"$log" 2>&1 || rc=$?
awk -v t="$name" -v secs="$secs" \
	-v seeds="$(find "$src/corpus/$name" -type f | wc -l)" \
	-v found="$(find "$work/corpus/$name" -type f | wc -l)" \
	'/^stat::number_of_executed_units/ { e = $2 } /^stat::average_exec_per_sec/ { s = $2 }
	 /^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov: / { for (i = 1; i <= NF; i++) if ($i == "cov:") c = $(i + 1) }
	 END { printf "fuzz-%s: %d executions in %ds (%d/s), coverage %d edges, corpus %d seeds + %d found\n",
	       t, e, secs, s, c, seeds, found }' "$log"
if [ $rc -ne 0 ]; then
	grep -A30 -m1 '==ERROR\|runtime error\|SUMMARY\|ALARM\|deadly signal' "$log" >&2 || tail -n 40 "$log" >&2
	grep 'Test unit written to' "$log" >&2 || true
	echo "fuzz-$name failed: fix the bug, then add the input to tests/fuzz/corpus/$name/" >&2
fi
exit $rc
