#!/usr/bin/env bash
# /metrics and /healthz: two certificates from the local CA deployed to a
# file target; the exposition must parse with a real Prometheus text-format
# parser (prometheus_client's text_string_to_metric_families, Debian package
# python3-prometheus-client, plus the structural checks in check_exposition
# below), its values must match the inventory, a forced renewal must add
# exactly one to certherd_renewals_total{result="issued"}, and wrong paths
# and methods get 404 and 405.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
if ! "$PY" -c 'import prometheus_client' 2>/dev/null; then
	echo "python3-prometheus-client is not installed (./dev deps installs it)" >&2
	exit 77
fi

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: 127.0.0.1:$PORT
cas:
  local:
    type: local
targets:
  files:
    type: file
    cert: out/{name}.crt
    key: out/{name}.key
certificates:
  alpha:
    names: [alpha.test]
    lifetime: 30d
    targets: [files]
  beta:
    names: [beta.test]
    lifetime: 30d
    targets: [files]
YAML

# Parses the exposition on stdin; prints "name{sorted labels} value" per
# sample. Fails on anything the parser rejects, a family without TYPE, a
# series given twice, non-cumulative histogram buckets, or a label value
# that looks like a serial.
check_exposition() {
	"$PY" -c '
import re, sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
if not text.endswith("\n"):
    sys.exit("exposition does not end with a newline")
typed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
seen = set()
for fam in text_string_to_metric_families(text):
    name = fam.name + ("_total" if fam.type == "counter" else "")
    if name not in typed and fam.name not in typed:
        sys.exit("family %s has no # TYPE line" % fam.name)
    if fam.type == "unknown":
        sys.exit("family %s has type unknown" % fam.name)
    for s in fam.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in seen:
            sys.exit("duplicate series %r" % (key,))
        seen.add(key)
        for v in s.labels.values():
            if re.fullmatch(r"[0-9a-f]{16,}", v):
                sys.exit("label value %r looks like a serial" % v)
        print("%s{%s} %r" % (s.name, ",".join("%s=%s" % kv for kv in sorted(s.labels.items())), s.value))
    if fam.type == "histogram":
        groups = {}
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                groups.setdefault(base, []).append((float(s.labels["le"]), s.value))
        for base, b in groups.items():
            vals = [v for _, v in sorted(b)]
            if vals != sorted(vals) or sorted(b)[-1][0] != float("inf"):
                sys.exit("histogram %s %r buckets are not cumulative up to +Inf" % (fam.name, base))
'
}

metrics() { curl -sf "$URL/metrics"; }
# not_after of the current issuance of NAME, from `certherd --json show`.
inv_not_after() { chj show "$1" | jq -r '.certificate.serial as $s | .issuances[] | select(.serial == $s) | .not_after'; }
# value SERIES: the value of one series in $T/m.txt, e.g. value 'certherd_x{a=b}'.
value() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }' "$T/m.txt"; }
scrape() {
	metrics >"$T/m.raw" || fail "GET /metrics failed"
	check_exposition <"$T/m.raw" >"$T/m.txt" || fail "the exposition does not parse: $(head -c 2000 "$T/m.raw")"
}

start_daemon
wait_for 20 "alpha deployed" deployed alpha files
wait_for 20 "beta deployed" deployed beta files
wait_for 10 "the metrics listener" curl -sf "$URL/healthz"
pass "certificates issued and deployed; /healthz answers"

# Headers: status 200 and the text format's content type.
curl -sf -D "$T/h.txt" -o /dev/null "$URL/metrics" || fail "GET /metrics failed"
has -i '^content-type: text/plain; version=0.0.4' "$T/h.txt" || fail "wrong content type: $(cat "$T/h.txt")"

# The inventory's numbers, then the exposition's.
wait_for 10 "both renewals counted" bash -c "curl -sf '$URL/metrics' | grep -q '^certherd_renewals_total{ca=\"local\",result=\"issued\"} 2\$'"
scrape
for n in alpha beta; do
	want=$(inv_not_after "$n")
	[ -n "$want" ] && [ "$want" != null ] && [ "$want" -gt 0 ] || fail "no not_after for $n in show"
	got=$(value "certherd_certificate_expiry_timestamp_seconds{certificate=$n}") ||
		fail "no expiry series for $n"
	[ "${got%.0}" = "$want" ] || fail "expiry of $n: metrics $got, inventory $want"
	renew_at=$(chj show "$n" | jq -r '.certificate.renew_at')
	got=$(value "certherd_certificate_next_renewal_timestamp_seconds{certificate=$n}") ||
		fail "no next renewal series for $n"
	[ "${got%.0}" = "$renew_at" ] || fail "next renewal of $n: metrics $got, inventory $renew_at"
	[ "$(value "certherd_certificate_state{certificate=$n,state=valid}")" = 1.0 ] ||
		fail "$n is not state=valid in the metrics"
	[ "$(value "certherd_certificate_state{certificate=$n,state=failing}")" = 0.0 ] ||
		fail "$n has state=failing set"
	[ "$(value "certherd_deployment_state{certificate=$n,state=deployed,target=files}")" = 1.0 ] ||
		fail "deployment of $n to files is not state=deployed in the metrics"
	[ "$(value "certherd_deployment_state{certificate=$n,state=failed,target=files}")" = 0.0 ] ||
		fail "deployment of $n to files has state=failed set"
done
[ "$(value 'certherd_renewals_total{ca=local,result=issued}')" = 2.0 ] || fail "renewals_total issued is not 2"
[ "$(value 'certherd_renewals_total{ca=local,result=rejected}')" = 0.0 ] || fail "renewals_total rejected is not 0"
[ "$(value 'certherd_deployments_total{result=deployed,target=files}')" = 2.0 ] ||
	fail "deployments_total deployed is not 2"
[ "$(value 'certherd_ca_requests_total{ca=local,result=issued}')" = 2.0 ] || fail "ca_requests_total issued is not 2"
[ "$(value 'certherd_ca_request_duration_seconds_count{ca=local}')" = 2.0 ] || fail "duration histogram count is not 2"
[ "$(value 'certherd_healthy{}')" = 1.0 ] || fail "certherd_healthy is not 1"
[ "$(value 'certherd_config_last_reload_successful{}')" = 1.0 ] || fail "last reload not successful"
value 'certherd_build_info{version='"$("$CERTHERDD" --version | awk '{print $2}')"'}' >/dev/null || fail "build_info with the version missing"
loop=$(value 'certherd_scheduler_last_loop_timestamp_seconds{}') || fail "no scheduler loop timestamp"
[ $(( $(date +%s) - ${loop%.0} )) -lt 120 ] || fail "scheduler loop timestamp is old: $loop"
pass "the exposition parses and matches the inventory (expiry, next renewal, states, counters)"

# A forced renewal adds exactly one issuance.
old=$(inv_serial alpha)
ch renew alpha --force >/dev/null || fail "renew --force failed"
wait_for 20 "alpha renewed" bash -c "[ \"\$(\"$CERTHERD\" --socket '$SOCK' --json show alpha | jq -r .certificate.serial | sed 's/^0*//')\" != '$old' ]"
wait_for 20 "the new alpha deployed" deployed alpha files
scrape
[ "$(value 'certherd_renewals_total{ca=local,result=issued}')" = 3.0 ] ||
	fail "renewals_total issued after one forced renewal: $(value 'certherd_renewals_total{ca=local,result=issued}'), want 3"
[ "$(value 'certherd_ca_requests_total{ca=local,result=issued}')" = 3.0 ] || fail "ca_requests_total issued is not 3"
want=$(inv_not_after alpha)
[ "$(value 'certherd_certificate_expiry_timestamp_seconds{certificate=alpha}')" = "$want.0" ] ||
	fail "expiry of alpha after renewal does not follow the inventory"
pass "a forced renewal increments renewals_total{result=issued} by exactly 1"

# HTTP behaviour.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "$URL/healthz")" = 200 ] || fail "healthz is not 200"
[ "$(curl -s "$URL/healthz")" = ok ] || fail "healthz body is not ok"
[ "$(code "$URL/nothing-here")" = 404 ] || fail "an unknown path is not 404"
[ "$(code "$URL/")" = 404 ] || fail "/ is not 404"
[ "$(code -X POST -d x=1 "$URL/metrics")" = 405 ] || fail "POST /metrics is not 405"
[ "$(code -X DELETE "$URL/healthz")" = 405 ] || fail "DELETE /healthz is not 405"
curl -s -D - -o /dev/null -X POST "$URL/metrics" | has -i '^allow: GET, HEAD' || fail "405 without Allow"
[ "$(code -I "$URL/metrics")" = 200 ] || fail "HEAD /metrics is not 200"
[ "$(code "$URL/metrics?x=1")" = 200 ] || fail "a query string breaks /metrics"
pass "healthz 200, unknown path 404, POST/DELETE 405, HEAD 200"

# Turning it off on reload closes the port.
sed -i "s/^metrics_listen: .*/metrics_listen: off/" "$T/certherd.yaml"
ch reload >/dev/null || fail "reload failed"
wait_for 10 "the listener to close" bash -c "! curl -s -o /dev/null '$URL/healthz'"
pass "metrics_listen: off closes the listener on reload"

stop_daemon
