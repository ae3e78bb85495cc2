#!/usr/bin/env bash
# clang-tidy over src/ with the project's own configuration (.clang-tidy at
# the top says which checks run and why some are left out): no finding.
# First a canary proves the configuration catches what it should: a NULL
# dereference on an error path.
. "$(dirname "$0")/lib.sh"

command -v clang-tidy >/dev/null || fail "clang-tidy is not installed (apt-get install clang-tidy)"
BUILD=$(dirname "$CERTHERDD")
DB=$BUILD/compile_commands.json
[ -f "$DB" ] || fail "no $DB (meson writes it at setup)"
CONFIG=$SRCDIR/.clang-tidy

cat >"$T/canary.c" <<'C'
int canary(int k);
int canary(int k)
{
	int v = k, *p = 0;

	if (k > 3)
		p = &v;
	return *p;
}
C
out=$(clang-tidy --quiet --config-file="$CONFIG" "$T/canary.c" -- -std=gnu17 2>&1) &&
	fail "the configuration let a NULL dereference through: $out"
echo "$out" | has 'core.NullDereference' || fail "canary: unexpected output: $out"
pass "canary: the configuration reports a NULL dereference"

find "$SRCDIR/src" -name '*.c' | sort >"$T/files"
n=$(wc -l <"$T/files")
xargs -P 2 -n 4 clang-tidy --quiet -p "$BUILD" --config-file="$CONFIG" <"$T/files" \
	>"$T/tidy.txt" 2>&1 || true
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$T/tidy.txt" | sort -u || true)
[ -z "$findings" ] || fail "clang-tidy findings:
$(echo "$findings" | head -30)"
grep -q 'error: unable to handle compilation\|Error while processing' "$T/tidy.txt" &&
	fail "clang-tidy could not process a file: $(grep -m3 'Error while processing\|unable to handle' "$T/tidy.txt")"
pass "clang-tidy: src/ clean ($n files)"
