#!/usr/bin/env bash
# Alerts end to end: a certificate whose file target cannot be written (its
# directory is missing) must give exactly one "firing" webhook and mail for
# the failing deployment (the webhook receiver fails the first request, so
# it arrives through a retry, and the failing notifier shows in status and
# /metrics meanwhile), one repeat after repeat_interval, no resend before
# the interval across a restart, and exactly one "resolved" once the
# directory exists and a forced renewal deploys. An exec notifier gets the
# same firing, repeat and resolved messages in its CERTHERD_ALERT_* variables.
. "$(dirname "$0")/lib.sh"

SINK=$SRCDIR/tests/integration/alert-sink.py
python3 "$SINK" http "$T/http.port" "$T/hooks.log" 1 >"$T/http-sink.log" 2>&1 &
PIDS+=($!)
python3 "$SINK" smtp "$T/smtp.port" "$T/mail.log" >"$T/smtp-sink.log" 2>&1 &
PIDS+=($!)
wait_for 10 "the webhook receiver" test -s "$T/http.port"
wait_for 10 "the SMTP sink" test -s "$T/smtp.port"
HPORT=$(cat "$T/http.port")
SPORT=$(cat "$T/smtp.port")
MPORT=$(free_port)
touch "$T/hooks.log" "$T/mail.log" "$T/page.log"
# The exec notifier: one JSON line per call, from the variables it was given.
cat >"$T/page.sh" <<'SH'
#!/bin/sh
printf '%s' "$CERTHERD_ALERT_JSON" | jq -c --arg state "$CERTHERD_ALERT_STATE" \
	--arg key "$CERTHERD_ALERT_KEY" --arg kind "$CERTHERD_ALERT_KIND" \
	--arg repeat "$CERTHERD_ALERT_REPEAT" --arg cert "$CERTHERD_ALERT_CERT" \
	--arg subject "$CERTHERD_ALERT_SUBJECT" --arg severity "$CERTHERD_ALERT_SEVERITY" \
	'{state: $state, key: $key, kind: $kind, repeat: $repeat, cert: $cert,
	  subject: $subject, severity: $severity, json: .}' >>"$(dirname "$0")/page.log"
SH
chmod 755 "$T/page.sh"
REPEAT=8

write_config() {
	cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$MPORT
alerts:
  repeat_interval: ${REPEAT}s
  check_interval: 1s
cas:
  local:
    type: local
targets:
  files:
    type: file
    cert: out/{name}.crt
    key: out/{name}.key
  good:
    type: file
    cert: ok/{name}.crt
    key: ok/{name}.key
notifiers:
  hook:
    type: webhook
    url: http://127.0.0.1:$HPORT/hook
    headers: ["X-Token: s3cret"]
  mail:
    type: email
    smtp: smtp://127.0.0.1:$SPORT
    from: certherd@test.invalid
    to: [oncall@test.invalid, pki@test.invalid]
  page:
    type: exec
    command: [$T/page.sh]
certificates:
  web:
    names: [web.test]
    lifetime: 1h
    targets: [files]
  fine:
    names: [fine.test]
    lifetime: 1h
    targets: [good]
YAML
}
mkdir -p "$T/ok"
write_config

KEY=deploy-failed/web/files
# hooks STATE [REPEAT]: webhooks answered 200 for KEY in STATE.
hooks() {
	jq -s --arg k "$KEY" --arg s "$1" --argjson r "${2:-false}" \
		'[.[] | select(.status == 200 and .body.key == $k and .body.status == $s
		  and .body.repeat == $r)] | length' "$T/hooks.log"
}
mails() { jq -s --arg p "$1" '[.[] | select(.subject | startswith($p))] | length' "$T/mail.log"; }
total_hooks() { wc -l <"$T/hooks.log"; }
# pages STATE [REPEAT]: exec notifier calls for KEY in STATE (CERTHERD_ALERT_REPEAT 0 or 1).
pages() {
	jq -s --arg k "$KEY" --arg s "$1" --arg r "${2:-0}" \
		'[.[] | select(.key == $k and .state == $s and .repeat == $r)] | length' "$T/page.log"
}
count_is() { [ "$("$@" | tail -n1)" = "$EXPECT" ]; }
sweeps() { status_json | jq -r '.alerts.sweeps // 0'; }
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | grep -F "$1" | awk '{print $2}'; }

start_daemon
# The first delivery gets a 500: the notifier shows as failing until the retry.
wait_for 30 "a failed delivery to the webhook" \
	bash -c "[ \$(jq -s '[.[] | select(.status == 500)] | length' '$T/hooks.log') -ge 1 ]"
wait_for 10 "the failing notifier in status" \
	bash -c "$CERTHERD --socket $SOCK --json status | jq -e '.notifiers_failing[] | select(.name == \"hook\")'"
[ "$(status_json | jq -r .health)" = failing ] || fail "health is not failing"
ch status >"$T/status.txt" || true
has -F "hook (webhook): HTTP 500" "$T/status.txt" || fail "certherd status does not name the failing notifier"
[ "$(metric 'certherd_notifier_failures_total{notifier="hook"}')" = 1 ] ||
	fail "certherd_notifier_failures_total{notifier=\"hook\"} is not 1"
pass "a failing notifier shows in status and /metrics"

EXPECT=1 wait_for 30 "the firing webhook" count_is hooks firing
EXPECT=1 wait_for 30 "the firing mail" count_is mails "[certherd] FIRING deploy-failed: deployment of web to files is failing"
jq -se --arg k "$KEY" '[.[] | select(.body.key == $k)][-1] |
	.headers["X-Token"] == "s3cret" and .body.certificate == "web" and .body.subject == "files"
	and .body.severity == "critical" and (.body.detail | test("attempt"))' "$T/hooks.log" >/dev/null ||
	fail "the webhook lacks the header or fields: $(tail -n1 "$T/hooks.log")"
jq -se '.[0].rcpt == ["<oncall@test.invalid>", "<pki@test.invalid>"] and
	.[0].from == "<certherd@test.invalid>" and (.[0].body | test("Certificate: web"))' \
	"$T/mail.log" >/dev/null || fail "the mail is wrong: $(head -n1 "$T/mail.log")"
[ "$(status_json | jq '.notifiers_failing | length')" = 0 ] || fail "the notifier still shows as failing"
sql "SELECT count(*) FROM events WHERE stage = 'alert' AND event = 'failed'" | has -x 1 ||
	fail "the failed delivery is not in the event log"
EXPECT=1 wait_for 30 "the firing exec notifier call" count_is pages firing
jq -se --arg k "$KEY" '[.[] | select(.key == $k)][0] | .kind == "deploy-failed" and .repeat == "0"
	and .cert == "web" and .subject == "files" and .severity == "critical"
	and .json.key == $k and .json.status == "firing"' "$T/page.log" >/dev/null ||
	fail "the exec notifier got wrong variables: $(head -n1 "$T/page.log")"
! has -F s3cret "$T/page.log" || fail "the webhook's header reached the exec notifier"
pass "one firing webhook (after a retry), one mail and one exec call for the failing deployment"

EXPECT=1 wait_for $((REPEAT + 10)) "one repeat" count_is hooks firing true
first=$(jq -s --arg k "$KEY" '[.[] | select(.status == 200 and .body.key == $k)][0].t' "$T/hooks.log")
rep=$(jq -s --arg k "$KEY" '[.[] | select(.status == 200 and .body.key == $k and .body.repeat)][0].t' "$T/hooks.log")
awk -v a="$first" -v b="$rep" -v r="$REPEAT" 'BEGIN { exit !(b - a >= r - 6) }' ||
	fail "the repeat came too early ($first, $rep)"
[ "$(hooks firing)" = 1 ] || fail "more than one firing message"
EXPECT=1 wait_for 10 "the repeat through the exec notifier" count_is pages firing 1
pass "one repeat after repeat_interval"

# Restart: the open alert is remembered and not sent again before its interval.
stop_daemon
last=$(jq -s '[.[] | select(.status == 200)][-1].t' "$T/hooks.log")
before=$(total_hooks)
start_daemon
[ "$(status_json | jq '.alerts.open')" = 1 ] || fail "the open alert was not loaded after the restart"
s0=$(sweeps)
wait_for 20 "two sweeps after the restart" bash -c "[ \$($CERTHERD --socket $SOCK --json status | jq .alerts.sweeps) -ge $((s0 + 2)) ]"
now=$(date +%s.%N)
if awk -v n="$now" -v l="$last" -v r="$REPEAT" 'BEGIN { exit !(n - l < r - 1) }'; then
	[ "$(total_hooks)" = "$before" ] || fail "a message was sent right after the restart: $(tail -n1 "$T/hooks.log")"
fi
wait_for $((REPEAT + 10)) "the next repeat after the restart" bash -c "[ \$(wc -l <'$T/hooks.log') -gt $before ]"
next=$(jq -s '.['"$before"']' "$T/hooks.log")
echo "$next" | jq -e --arg k "$KEY" '.body.key == $k and .body.repeat == true' >/dev/null ||
	fail "the first message after the restart is not a repeat: $next"
awk -v a="$last" -v b="$(echo "$next" | jq .t)" -v r="$REPEAT" 'BEGIN { exit !(b - a >= r - 1.5) }' ||
	fail "the restart re-sent the open alert before repeat_interval ($last, $(echo "$next" | jq .t))"
[ "$(hooks firing)" = 1 ] || fail "the restart sent a new firing message"
pass "a restart keeps the open alert and its schedule"

# Fix the target: the forced renewal deploys, the condition resolves once.
mkdir -p "$T/out"
ch renew web --force >/dev/null
EXPECT=1 wait_for 30 "the resolved webhook" count_is hooks resolved
EXPECT=1 wait_for 30 "the resolved mail" count_is mails "[certherd] RESOLVED deploy-failed: deployment of web to files is failing"
s0=$(sweeps)
wait_for 20 "three more sweeps" bash -c "[ \$($CERTHERD --socket $SOCK --json status | jq .alerts.sweeps) -ge $((s0 + 3)) ]"
[ "$(hooks resolved)" = 1 ] || fail "more than one resolved message"
[ "$(hooks firing)" = 1 ] || fail "a new firing message after the fix"
EXPECT=1 wait_for 10 "the resolved exec notifier call" count_is pages resolved
[ "$(pages firing)" = 1 ] || fail "the exec notifier was called for a new firing after the fix"
after=$(jq -s --arg k "$KEY" '[.[] | select(.body.key == $k)] | .[-1].body.status' "$T/hooks.log")
[ "$after" = '"resolved"' ] || fail "something was sent after the resolved message"
[ "$(status_json | jq '.alerts.open')" = 0 ] || fail "the alert is still open"
[ "$(sql 'SELECT count(*) FROM alerts')" = 0 ] || fail "the alert is still stored"
[ "$(jq -s '[.[] | select(.body.certificate == "fine")] | length' "$T/hooks.log")" = 0 ] ||
	fail "the healthy certificate alerted"
pass "one resolved message once the deployment works"
