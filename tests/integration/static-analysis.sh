#!/usr/bin/env bash
# cppcheck over src/ with the project's own configuration
# (tests/cppcheck-suppressions.txt says what is suppressed and why): no
# warning, performance or portability finding.
. "$(dirname "$0")/lib.sh"

command -v cppcheck >/dev/null || fail "cppcheck is not installed (apt-get install cppcheck)"
BUILD=$(dirname "$CERTHERDD")
# Headers whose macros cppcheck must see to parse the code (LIST_HEAD, json_*_foreach).
header() { echo "#include <$1>" | cpp -H -o /dev/null 2>&1 | awk 'NR == 1 { print $2 }'; }
QUEUE_H=$(header sys/queue.h)
JANSSON_H=$(header jansson.h)
[ -f "$QUEUE_H" ] && [ -f "$JANSSON_H" ] || fail "cannot find sys/queue.h or jansson.h"
cppcheck --quiet --enable=warning,performance,portability --std=c11 --library=posix \
	-I"$SRCDIR/include" -I"$BUILD" -D_GNU_SOURCE \
	--include="$QUEUE_H" --include="$JANSSON_H" \
	--inline-suppr --suppressions-list="$SRCDIR/tests/cppcheck-suppressions.txt" \
	--error-exitcode=3 -j2 "$SRCDIR/src" >"$T/cppcheck.txt" 2>&1 ||
	fail "cppcheck findings: $(grep -E '^/|^src' "$T/cppcheck.txt" | head -20)"
[ ! -s "$T/cppcheck.txt" ] || fail "cppcheck output: $(head -20 "$T/cppcheck.txt")"
pass "cppcheck: src/ clean ($(find "$SRCDIR/src" -name '*.c' | wc -l) files)"
