#!/usr/bin/env bash
# Rehearsals: `certherd renew NAME --dry-run` issues from the local CA and
# deploys into a scratch directory only. The production files keep their
# checksums, the inventory gains no issuance and keeps its current serial,
# the service behind a reload target gets no signal, and an exec target
# with rehearse: true runs with CERTHERD_DRY_RUN=1. A target whose
# directory is missing and an nginx target whose configuration test fails
# make the rehearsal report that stage and target (CLI text, --json, show).
# The schedule (rehearsal: interval 2s; a CA with rehearsal: off is left
# alone) rehearses a certificate whose target directory is missing: the
# webhook gets one rehearsal-failed alert and /metrics counts it failing;
# once the directory exists the next scheduled rehearsal passes, the alert
# is resolved and the last-success timestamp is set, with no issuance added.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/out"
# A service that logs every SIGHUP it gets, for the reload target.
bash -c "trap 'echo hup >>\"$T/hups\"' HUP; echo \$\$ >\"$T/svc.pid\"; while :; do sleep 0.2; done" &
PIDS+=($!)
wait_for 10 "the fake service" test -s "$T/svc.pid"
cat >"$T/hook.sh" <<'SH'
#!/bin/sh
echo "dry_run=${CERTHERD_DRY_RUN:-0} dir=$CERTHERD_DIR" >>"$HOOK_LOG"
test -s "$CERTHERD_FULLCHAIN_FILE"
SH
chmod +x "$T/hook.sh"
export HOOK_LOG=$T/hook.log

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  local:
    type: local
targets:
  files:
    type: file
    cert: out/{name}.crt
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
  svc:
    type: reload
    pidfile: $T/svc.pid
  hook:
    type: exec
    command: [$T/hook.sh]
    rehearse: true
  missing:
    type: file
    cert: nowhere/{name}.crt
    key: nowhere/{name}.key
  ngx:
    type: nginx
    cert: out/{name}.crt
    key: out/{name}.key
    pidfile: $T/svc.pid
    test_command: [sh, -c, "echo 'nginx: [emerg] cannot load certificate' >&2; exit 1"]
certificates:
  web:
    names: [web.test, 127.0.0.1]
    lifetime: 30d
    targets: [files, svc, hook]
  broken:
    names: [broken.test]
    lifetime: 30d
    targets: [files, missing]
  nginxbad:
    names: [nginxbad.test]
    lifetime: 30d
    targets: [ngx]
YAML

start_daemon
wait_for 20 "first deployment of web" deployed web hook
wait_for 20 "files of broken" deployed broken files
wait_for 10 "the reload's SIGHUP" test -s "$T/hups"
sums() { (cd "$T/out" && sha256sum ./* | sort); }
before=$(sums)
hups=$(wc -l <"$T/hups")
hooks=$(wc -l <"$T/hook.log")
n_iss=$(sql "SELECT count(*) FROM issuances")
serial=$(inv_serial web)
[ -n "$serial" ] || fail "web has no current serial"

# ---- a passing rehearsal --------------------------------------------------
ch renew web --dry-run >"$T/dry.txt" || { cat "$T/dry.txt"; fail "renew --dry-run of web failed"; }
has 'rehearsal passed through CA local' "$T/dry.txt" || fail "no 'passed' in: $(cat "$T/dry.txt")"
has -- '-> svc' "$T/dry.txt" || fail "the reload target is not listed: $(cat "$T/dry.txt")"
[ "$(sums)" = "$before" ] || fail "the production files changed: $(sums)"
[ "$(sql "SELECT count(*) FROM issuances")" = "$n_iss" ] || fail "the rehearsal added an issuance"
[ "$(inv_serial web)" = "$serial" ] || fail "the current serial changed"
[ "$(wc -l <"$T/hups")" = "$hups" ] || fail "the service got a SIGHUP from the rehearsal"
pass "renew --dry-run passes; production files, inventory and service untouched"

[ "$(wc -l <"$T/hook.log")" -gt "$hooks" ] || fail "the exec target with rehearse: true did not run"
tail -n 1 "$T/hook.log" | has "dry_run=1 dir=$T/var/rehearsals/web/issuance" ||
	fail "the hook did not see CERTHERD_DRY_RUN=1 and the scratch dir: $(tail -n 1 "$T/hook.log")"
scratch_crt=$T/var/rehearsals/web/targets/files$T/out/web.crt
[ -s "$scratch_crt" ] || fail "no $scratch_crt"
openssl verify -CAfile "$(ca_cert local)" "$scratch_crt" >/dev/null || fail "the scratch cert does not verify"
[ "$(serial_of "$scratch_crt")" != "$serial" ] || fail "the scratch cert is the current one"
[ "$(stat -c %a "$T/var/rehearsals/web/targets/files$T/out/web.key")" = 600 ] ||
	fail "the scratch key is not 0600"
pass "the rehearsal's files are in the scratch directory, verify, and the hook saw CERTHERD_DRY_RUN=1"

chj renew web --dry-run >"$T/dry.json"
jq -e '.result == "passed" and .dry_run and .ca == "local" and (.steps | map(select(.stage == "deploy")) | length) == 3 and all(.steps[]; .ok)' \
	"$T/dry.json" >/dev/null || fail "--json reply: $(cat "$T/dry.json")"
chj show web | jq -e '.rehearsals[0].result == "passed" and .rehearsals[0].trigger == "manual" and (.events | map(.event) | index("rehearsal-passed"))' >/dev/null ||
	fail "show does not hold the rehearsal: $(chj show web | jq -c '.rehearsals')"
ch show web | has 'last: passed' || fail "show (text) does not report the rehearsal"
[ "$(sql "SELECT count(*) FROM rehearsals WHERE cert='web' AND result='passed'")" = 2 ] ||
	fail "the rehearsals table does not hold both"
[ "$(sql "SELECT count(*) FROM issuances")" = "$n_iss" ] || fail "the rehearsals added an issuance"
pass "--json reply, show and the rehearsals table hold the result; still no new issuance"

# ---- failing stages ---------------------------------------------------------
rc=0
ch renew broken --dry-run >"$T/broken.txt" || rc=$?
[ "$rc" = 1 ] || fail "a failing rehearsal exits $rc, not 1: $(cat "$T/broken.txt")"
has 'rehearsal FAILED' "$T/broken.txt" || fail "no FAILED in: $(cat "$T/broken.txt")"
has 'failed at: deploy missing' "$T/broken.txt" || fail "the failing target is not named: $(cat "$T/broken.txt")"
has 'runbooks.md#rehearsal-failing' "$T/broken.txt" || fail "no runbook pointer"
chj renew broken --dry-run >"$T/broken.json" || true
jq -e '.result == "failed" and .stage == "deploy" and .target == "missing" and (.error | test("nowhere"))' \
	"$T/broken.json" >/dev/null || fail "--json of the failure: $(cat "$T/broken.json")"
jq -e '.steps[] | select(.target == "files") | .ok' "$T/broken.json" >/dev/null ||
	fail "the good target of broken did not pass: $(cat "$T/broken.json")"
[ ! -e "$T/nowhere" ] || fail "the rehearsal created the missing directory"
chj show broken | jq -e '.rehearsals[0].result == "failed" and .rehearsals[0].target == "missing"' >/dev/null ||
	fail "show broken: $(chj show broken | jq -c .rehearsals)"
pass "a missing target directory fails the rehearsal at deploy missing (exit 1, text, --json, show)"

hups=$(wc -l <"$T/hups")
chj renew nginxbad --dry-run >"$T/ngx.json" || true
jq -e '.result == "failed" and .stage == "deploy" and .target == "ngx" and (.error | test("configuration test")) and (.error | test("emerg"))' \
	"$T/ngx.json" >/dev/null || fail "nginx test failure: $(cat "$T/ngx.json")"
[ "$(wc -l <"$T/hups")" = "$hups" ] || fail "nginx was signalled in a rehearsal"
[ "$(sums)" = "$before" ] || fail "the production files changed"
pass "a failing nginx configuration test fails the rehearsal at deploy ngx; nothing signalled"

ch renew nosuch --dry-run >/dev/null 2>&1 && fail "a rehearsal of an unknown certificate succeeded"
[ "$(sql "SELECT count(*) FROM issuances")" = "$n_iss" ] || fail "issuances changed"
pass "unknown certificates are refused"

# ---- the schedule -------------------------------------------------------------
# Every 2s for CA other (timed, its file target's directory missing); the
# local CA is off.
stop_daemon
SINK=$SRCDIR/tests/integration/alert-sink.py
python3 "$SINK" http "$T/http.port" "$T/hooks.log" >"$T/http-sink.log" 2>&1 &
PIDS+=($!)
wait_for 10 "the webhook receiver" test -s "$T/http.port"
touch "$T/hooks.log"
MPORT=$(free_port)
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$MPORT
rehearsal:
  interval: 2s
alerts:
  check_interval: 1s
cas:
  local:
    type: local
    rehearsal: off
  other:
    type: local
notifiers:
  hook:
    type: webhook
    url: http://127.0.0.1:$(cat "$T/http.port")/hook
targets:
  later:
    type: file
    cert: later/{name}.crt
    key: later/{name}.key
certificates:
  web:
    names: [web.test]
    ca: local
    lifetime: 30d
  timed:
    names: [timed.test]
    ca: other
    lifetime: 30d
    targets: [later]
YAML
start_daemon
KEY=rehearsal-failed/timed/other
hooks() {
	jq -s --arg k "$KEY" --arg s "$1" \
		'[.[] | select(.status == 200 and .body.key == $k and .body.status == $s)] | length' \
		"$T/hooks.log"
}
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | grep -F "$1" | awk '{print $2}'; }
ge1() { [ "$("$@")" -ge 1 ]; }
wait_for 30 "the firing rehearsal-failed webhook" ge1 hooks firing
jq -se --arg k "$KEY" '[.[] | select(.body.key == $k)][0].body |
	.kind == "rehearsal-failed" and .certificate == "timed" and .subject == "other"
	and (.summary | test("failed at deploy later")) and (.detail | test("later"))' "$T/hooks.log" >/dev/null ||
	fail "the webhook: $(grep rehearsal "$T/hooks.log" | head -n1)"
[ "$(metric 'certherd_rehearsal_failing{ca="other"}')" = 1 ] || fail "certherd_rehearsal_failing{ca=\"other\"} is not 1"
[ "$(sql "SELECT count(*) FROM rehearsals WHERE trigger='scheduled' AND ca='local'")" = 0 ] ||
	fail "the local CA with rehearsal: off was rehearsed"
pass "a scheduled rehearsal that fails raises rehearsal-failed through the webhook and in /metrics"

n_sched=$(sql "SELECT count(*) FROM rehearsals WHERE trigger='scheduled' AND cert='timed'")
mkdir "$T/later"
wait_for 30 "the resolved rehearsal-failed webhook" ge1 hooks resolved
[ "$(hooks firing)" = 1 ] || fail "rehearsal-failed fired $(hooks firing) times"
[ "$(sql "SELECT count(*) FROM rehearsals WHERE trigger='scheduled' AND cert='timed'")" -gt "$n_sched" ] ||
	fail "no later scheduled rehearsal"
[ "$(metric 'certherd_rehearsal_failing{ca="other"}')" = 0 ] || fail "certherd_rehearsal_failing{ca=\"other\"} is not 0"
[ "$(metric 'certherd_rehearsal_last_success_timestamp_seconds{ca="other"}')" -gt 0 ] ||
	fail "no last success timestamp for CA other"
[ "$(sql "SELECT count(*) FROM issuances i JOIN certificates c ON c.id = i.cert_id WHERE c.name = 'timed'")" = 1 ] ||
	fail "scheduled rehearsals added issuances of timed"
[ ! -e "$T/later/timed.crt" ] || [ "$(chj show timed | jq -r '.issuances[0].deployments[0].state')" = deployed ] ||
	fail "a rehearsal wrote the production file"
pass "the next scheduled rehearsal passes, the alert resolves and /metrics shows the success"
