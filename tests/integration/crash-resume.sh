#!/usr/bin/env bash
# SIGKILL in the middle of issuing and of deploying. After a restart the
# daemon completes the same renewal: one issuance per renewal, the key it
# recorded before asking the CA, no half-written or temporary files, and a
# consistent database.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  local: { type: local }
targets:
  files: { type: file, cert: "out/{name}.crt", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
  hook:
    type: exec
    command: [sh, -c, 'echo "\$CERTHERD_SERIAL" >> "$T/hook.log"; [ -e "$T/hook-block" ] && sleep 60; exit 0']
certificates:
  www: { names: [www.test], lifetime: 30d, targets: [files, hook] }
YAML

check_no_tmp() {
	local left
	left=$(find "$T/out" "$T/var" -name '*.tmp.*' | head -n 5)
	[ -z "$left" ] || fail "temporary files left behind: $left"
}

# 1. Killed after the renewal (key, idempotency key) is recorded, before the CA answers.
start_daemon_bg CERTHERD_CRASHPOINT=issue-recorded
wait_daemon_dead
[ "$(sql "SELECT state FROM certificates WHERE name='www'")" = issuing ] || fail "state after the kill is not issuing"
idem=$(sql "SELECT pending_idem FROM certificates WHERE name='www'")
pending=$(sql "SELECT pending_key FROM certificates WHERE name='www'")
[ -n "$idem" ] && [ -s "$pending/key.pem" ] || fail "the pending key was not recorded before the CA call"
keysum=$(openssl pkey -pubout -in "$pending/key.pem" | sha256sum)
[ "$(sql 'SELECT count(*) FROM issuances')" = 0 ] || fail "an issuance was recorded before issuing"

# 2. Killed after the certificate came back and was written, before it was recorded.
start_daemon_bg CERTHERD_CRASHPOINT=issued-unrecorded
wait_daemon_dead
[ "$(sql 'SELECT count(*) FROM issuances')" = 0 ] || fail "issuance recorded despite the kill"
[ "$(sql "SELECT pending_idem FROM certificates WHERE name='www'")" = "$idem" ] || fail "a restart started a different renewal"

# 3. Resume; the deploy hook blocks so we can kill during deployment.
touch "$T/hook-block"
start_daemon
wait_for 20 "the issuance" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' 'SELECT count(*) FROM issuances')\" = 1 ]"
[ "$(sql 'SELECT idem_key FROM issuances')" = "$idem" ] || fail "the resumed renewal has another idempotency key"
[ "$(sql 'SELECT key_path FROM issuances')" = "$pending/key.pem" ] || fail "the resumed renewal used another key"
[ "$(sql 'SELECT cert_pem FROM issuances' | openssl x509 -noout -pubkey | sha256sum)" = "$keysum" ] || fail "certificate not for the recorded key"
pass "a renewal killed before and after the CA call resumes with the same key and idempotency key"

wait_for 20 "the file target" deployed www files
wait_for 20 "the hook to start" test -s "$T/hook.log"
serial=$(inv_serial www)
kill9_daemon
check_no_tmp
rm -f "$T/hook-block"
start_daemon
wait_for 30 "the hook deployment after restart" deployed www hook
[ "$(sql 'SELECT count(*) FROM issuances')" = 1 ] || fail "restart issued again"
[ "$(inv_serial www)" = "$serial" ] || fail "the serial changed over the restart"
[ "$(sort -u "$T/hook.log" | wc -l)" = 1 ] || fail "the hook saw different serials: $(cat "$T/hook.log")"
pass "a deployment killed half way is completed for the same issuance after restart"

# 4. Killed after a deployment finished but before it was recorded: redone, idempotent.
stop_daemon
sql "UPDATE certificates SET next_at=strftime('%s','now'), force=1 WHERE name='www'"
start_daemon_bg CERTHERD_CRASHPOINT=deployed-unrecorded
wait_daemon_dead
start_daemon
wait_for 20 "deployments of the second issuance" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' \"SELECT count(*) FROM deployments d JOIN issuances i ON i.id=d.issuance_id WHERE i.id=(SELECT max(id) FROM issuances) AND d.state='deployed'\")\" = 2 ]"
[ "$(sql 'SELECT count(*) FROM issuances')" = 2 ] || fail "expected exactly 2 issuances"
[ "$(serial_of "$T/out/www.crt")" = "$(inv_serial www)" ] || fail "file target does not hold the current serial"
openssl verify -CAfile "$(ca_cert local)" "$T/out/www.fullchain.pem" >/dev/null || fail "deployed chain does not verify"
check_no_tmp
[ "$(sql 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
# The event log is append-only and continuous.
[ "$(sql 'SELECT max(id) - min(id) + 1 = count(*) FROM events')" = 1 ] || fail "event log has gaps"
pass "deployment redone after a kill; database consistent, no temp files, event log continuous"

# 5. What a renewal killed before its record left (a directory with its key
# only) is removed before the next renewal; the directories of recorded
# issuances, which hold only their key too, are kept.
stop_daemon
orphan="$T/var/certs/www/$(printf '%032d' 7)"
mkdir -m 0700 "$orphan"
cp "$pending/key.pem" "$orphan/key.pem"
# The hook's copies of the certificate go too: recorded directories then
# hold only their key, like the orphan, and must be told apart by the inventory.
find "$T/var/certs/www" -name '*.pem' ! -name key.pem -delete
sql "UPDATE certificates SET next_at=strftime('%s','now'), force=1 WHERE name='www'"
start_daemon
wait_for 20 "the third issuance" bash -c "[ \"\$(sqlite3 '$T/var/certherd.db' 'SELECT count(*) FROM issuances')\" = 3 ]"
[ ! -e "$orphan" ] || fail "the unrecorded issuance directory $orphan was not removed"
for k in $(sql 'SELECT key_path FROM issuances'); do
	[ -s "$k" ] || fail "the key of a recorded issuance is gone: $k"
done
[ "$(find "$T/var/certs/www" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 3 ] ||
	fail "expected one directory per issuance: $(ls "$T/var/certs/www")"
pass "an unrecorded issuance directory is swept; recorded ones are kept"
