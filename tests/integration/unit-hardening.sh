#!/usr/bin/env bash
# The systemd unit as built: systemd-analyze's offline security review
# stays at or under an exposure of 2.0, and the settings the daemon's
# least-privilege design relies on are there.
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || fail "systemd-analyze is not installed (apt-get install systemd)"
UNIT=$(dirname "$CERTHERDD")/systemd/certherd.service
[ -f "$UNIT" ] || fail "no built unit at $UNIT"

systemd-analyze security --offline=true "$UNIT" >"$T/security.txt" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for certherd.service: \([0-9.]*\).*/\1/p' "$T/security.txt")
[ -n "$score" ] || fail "no exposure level in: $(tail -3 "$T/security.txt")"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score is above 2.0: $(grep '✗' "$T/security.txt")"
pass "systemd-analyze security --offline: exposure $score"

for want in 'User=certherd' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateTmp=yes' \
	'CapabilityBoundingSet=CAP_KILL' 'AmbientCapabilities=CAP_KILL' 'SystemCallFilter=@system-service' \
	'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'UMask=0077' 'StateDirectoryMode=0700' \
	'ProtectProc=invisible' 'Type=notify' 'WatchdogSec='; do
	grep -qx "$want.*" "$UNIT" || fail "the unit lacks $want"
done
grep -q '^ExecStartPre=.*--check-config' "$UNIT" || fail "no configuration check before start"
pass "least-privilege settings present"
