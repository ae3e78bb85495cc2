#!/usr/bin/env bash
# The kubernetes target against two instances of the Kubernetes API
# emulator (tests/k8s-emulator.py) standing for two clusters:
# - www goes to cluster A (kubeconfig with a bearer token and a CA file)
#   and cluster B (kubeconfig with a client certificate and CA as -data,
#   a named context with its namespace) and to B again through the
#   in-cluster service account files: each Secret is kubernetes.io/tls,
#   tls.crt is the deployed fullchain (leaf serial = inventory), tls.key
#   matches the leaf, ca.crt is the CA, labels and annotations are there
#   and certherd is the Apply manager in managedFields;
# - `certherd renew www --force` updates them (new serial, higher
#   resourceVersion);
# - a token forbidden in the namespace fails that deployment with the
#   403 message, an unknown namespace with the 404 message, while the
#   other targets are deployed;
# - no key, token or Secret data appears in the daemon log;
# - the emulator itself: 401, 400 (no fieldManager), 409 (apply conflict,
#   stale resourceVersion on PUT), 415, 422.
#
# Against a real cluster instead of the emulator: K8S_KUBECONFIG=path
# K8S_NAMESPACE=ns [K8S_CONTEXT=name] (kubectl must be installed; see
# docs/kubernetes.md for the RBAC Role). The emulator-only checks (403,
# 404, in-cluster, the emulator's own behaviour) are skipped then.
. "$(dirname "$0")/lib.sh"

EMULATOR=$SRCDIR/tests/k8s-emulator.py
REAL=${K8S_KUBECONFIG:+1}
REAL=${REAL:-0}
command -v jq >/dev/null || fail "jq is not installed (./dev test installs it)"
b64d() { base64 -d 2>/dev/null; }
rand() { openssl rand -hex 16; }

# --- test PKI: a CA per cluster, server certificates for 127.0.0.1, a client cert for B
mkpki() { # DIR CN
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$2 emulator CA" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
		-keyout "$1/server.key" -out "$1/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$1/ext"
	openssl x509 -req -in "$1/server.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" \
		-CAcreateserial -days 2 -extfile "$1/ext" -out "$1/server.crt" 2>/dev/null
}

# start_emulator NAME DIR CONFIG [client-ca]: sets port in $T/NAME.port
start_emulator() {
	local name=$1 dir=$2 conf=$3 cca=${4:-}
	python3 "$EMULATOR" --cert "$dir/server.crt" --key "$dir/server.key" --config "$conf" \
		--port-file "$T/$name.port" --log "$T/$name.log" ${cca:+--client-ca "$cca"} \
		>>"$T/$name.out" 2>&1 &
	PIDS+=("$!")
	wait_for 10 "the $name emulator's port" test -s "$T/$name.port"
	wait_for 10 "the $name emulator" curl -sf --cacert "$dir/ca.crt" \
		"https://127.0.0.1:$(cat "$T/$name.port")/version"
}

TOK_A=$(rand)
TOK_FORBIDDEN=$(rand)
TOK_SA=$(rand)
if [ "$REAL" = 0 ]; then
	mkpki "$T/pki-a" cluster-a
	mkpki "$T/pki-b" cluster-b
	# B authenticates certherd by a client certificate (CN = user name).
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=certherd-b" \
		-keyout "$T/pki-b/client.key" -out "$T/pki-b/client.csr" 2>/dev/null
	openssl x509 -req -in "$T/pki-b/client.csr" -CA "$T/pki-b/ca.crt" \
		-CAkey "$T/pki-b/ca.key" -CAcreateserial -days 2 -out "$T/pki-b/client.crt" 2>/dev/null
	cat >"$T/emu-a.json" <<JSON
{"namespaces": ["web", "other"],
 "tokens": {"$TOK_A": {"user": "system:serviceaccount:web:certherd", "namespaces": "*"},
            "$TOK_FORBIDDEN": {"user": "system:serviceaccount:other:certherd",
                               "namespaces": ["other"]}}}
JSON
	cat >"$T/emu-b.json" <<JSON
{"namespaces": ["prod"],
 "tokens": {"$TOK_SA": {"user": "system:serviceaccount:prod:certherd", "namespaces": ["prod"]}},
 "client_users": {"certherd-b": {"namespaces": ["prod"]}}}
JSON
	start_emulator emu-a "$T/pki-a" "$T/emu-a.json"
	start_emulator emu-b "$T/pki-b" "$T/emu-b.json" "$T/pki-b/ca.crt"
	PA=$(cat "$T/emu-a.port")
	PB=$(cat "$T/emu-b.port")
	NS_A=web
	NS_B=prod

	# Cluster A: token, CA by path, current-context.
	cat >"$T/kubeconfig-a" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: a
  cluster:
    server: https://127.0.0.1:$PA/
    certificate-authority: pki-a/ca.crt
users:
- name: certherd
  user:
    token: $TOK_A
- name: forbidden
  user:
    token: $TOK_FORBIDDEN
contexts:
- name: a
  context: {cluster: a, user: certherd}
- name: a-forbidden
  context: {cluster: a, user: forbidden, namespace: web}
current-context: a
YAML
	# Cluster B: client certificate and CA as -data, a named context.
	cat >"$T/kubeconfig-b" <<YAML
apiVersion: v1
kind: Config
current-context: broken
clusters:
- name: b
  cluster:
    server: https://127.0.0.1:$PB
    certificate-authority-data: $(base64 -w0 "$T/pki-b/ca.crt")
users:
- name: certherd-b
  user:
    client-certificate-data: $(base64 -w0 "$T/pki-b/client.crt")
    client-key-data: $(base64 -w0 "$T/pki-b/client.key")
contexts:
- name: broken
  context: {cluster: nowhere, user: nobody}
- name: b-prod
  context: {cluster: b, user: certherd-b, namespace: prod}
YAML
	mkdir -p "$T/sa"
	printf '%s\n' "$TOK_SA" >"$T/sa/token"
	cp "$T/pki-b/ca.crt" "$T/sa/ca.crt"
	printf 'prod' >"$T/sa/namespace"
	KC_A=$T/kubeconfig-a
	KC_B=$T/kubeconfig-b
	CTX_B="context: b-prod"
	CTX_A=
else
	command -v kubectl >/dev/null || fail "K8S_KUBECONFIG needs kubectl to read the Secrets back"
	[ -n "${K8S_NAMESPACE:-}" ] || fail "K8S_KUBECONFIG needs K8S_NAMESPACE"
	KC_A=$K8S_KUBECONFIG
	KC_B=$K8S_KUBECONFIG
	NS_A=$K8S_NAMESPACE
	NS_B=$K8S_NAMESPACE
	CTX_A=${K8S_CONTEXT:+context: $K8S_CONTEXT}
	CTX_B="${CTX_A:-}"
fi

# The Secret NAME in NS as JSON, from cluster A or B.
kget() { # a|b NS NAME
	if [ "$REAL" = 1 ]; then
		kubectl --kubeconfig "$K8S_KUBECONFIG" ${K8S_CONTEXT:+--context "$K8S_CONTEXT"} \
			-n "$2" get secret "$3" -o json --show-managed-fields
	elif [ "$1" = a ]; then
		curl -sf --cacert "$T/pki-a/ca.crt" -H "Authorization: Bearer $TOK_A" \
			"https://127.0.0.1:$PA/api/v1/namespaces/$2/secrets/$3"
	else
		curl -sf --cacert "$T/pki-b/ca.crt" --cert "$T/pki-b/client.crt" \
			--key "$T/pki-b/client.key" "https://127.0.0.1:$PB/api/v1/namespaces/$2/secrets/$3"
	fi
}

SECRET_B=www-tls
[ "$REAL" = 1 ] && SECRET_B=www-tls-b
{
	cat <<YAML
state_dir: var
socket: certherd.sock
verify_interval: 1h
cas:
  local: { type: local }
targets:
  k8s-a:
    type: kubernetes
    kubeconfig: $KC_A
    $CTX_A
    namespace: $NS_A
    labels:
      app.kubernetes.io/managed-by: certherd
      team: edge
    annotations:
      example.com/owner: "on-call, edge team"
      example.com/empty: ""
    ca_crt: true
    ca_file: var/ca/local/ca.crt
    timeout: 10s
  k8s-b:
    type: kubernetes
    kubeconfig: $KC_B
    $CTX_B
    secret: "$SECRET_B"
    namespace: $NS_B
YAML
	if [ "$REAL" = 0 ]; then
		cat <<YAML
  k8s-incluster:
    type: kubernetes
    in_cluster: true
    service_account_dir: sa
    secret: "{name}-sa-tls"
  k8s-forbidden:
    type: kubernetes
    kubeconfig: $KC_A
    context: a-forbidden
  k8s-nons:
    type: kubernetes
    kubeconfig: $KC_A
    namespace: missing
YAML
	fi
	cat <<YAML
certificates:
  www:
    names: [www.test]
    lifetime: 30d
YAML
	if [ "$REAL" = 0 ]; then
		echo "    targets: [k8s-a, k8s-b, k8s-incluster, k8s-forbidden, k8s-nons]"
	else
		echo "    targets: [k8s-a, k8s-b]"
	fi
} >"$T/certherd.yaml"

"$CERTHERDD" --check-config --config "$T/certherd.yaml" >/dev/null 2>&1 ||
	fail "certherdd --check-config refuses the configuration: $("$CERTHERDD" --check-config --config "$T/certherd.yaml" 2>&1)"

dep_field() { chj show "$1" | jq -r --arg t "$2" --arg f "$3" \
	'.issuances[0].deployments[] | select(.target==$t) | .[$f] // empty'; }
failed() { [ "$(dep_field "$1" "$2" state)" = failed ]; }

if [ "$REAL" = 0 ]; then
	start_daemon KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$PB"
else
	start_daemon
fi
wait_for 30 "deployment of www to cluster A" deployed www k8s-a
wait_for 30 "deployment of www to cluster B" deployed www k8s-b
first=$(inv_serial www)
[ -n "$first" ] || fail "no serial for www"

# The issuance directory (its key.pem) and fullchain of a serial, from the inventory.
issuance_dir() { # SERIAL
	local k
	k=$(sql "SELECT key_path FROM issuances WHERE ltrim(lower(serial), '0') = ltrim(lower('$1'), '0')")
	[ -n "$k" ] && dirname "$k"
}
issuance_fullchain() { # SERIAL
	printf '%s\n' "$(sql "SELECT cert_pem || chain_pem FROM issuances WHERE ltrim(lower(serial), '0') = ltrim(lower('$1'), '0')")"
}
# check_secret a|b NS NAME SERIAL -> also sets RV
check_secret() {
	local c=$1 ns=$2 name=$3 serial=$4 j d
	j=$(kget "$c" "$ns" "$name") || fail "cannot read secret $ns/$name from cluster $c"
	d=$(issuance_dir "$serial")
	[ -n "$d" ] || fail "no issuance dir for serial $serial"
	[ "$(echo "$j" | jq -r .type)" = kubernetes.io/tls ] ||
		fail "$ns/$name has type $(echo "$j" | jq -r .type)"
	echo "$j" | jq -r '.data["tls.crt"]' | b64d >"$T/got.crt"
	echo "$j" | jq -r '.data["tls.key"]' | b64d >"$T/got.key"
	issuance_fullchain "$serial" | cmp -s "$T/got.crt" - || fail "$ns/$name tls.crt is not the deployed fullchain"
	[ "$(serial_of "$T/got.crt")" = "$serial" ] ||
		fail "$ns/$name holds serial $(serial_of "$T/got.crt"), not $serial"
	[ "$(openssl x509 -noout -pubkey -in "$T/got.crt" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$T/got.key" 2>/dev/null | sha256sum)" ] ||
		fail "$ns/$name tls.key does not match the leaf"
	echo "$j" | jq -e '.metadata.managedFields[] |
		select(.manager == "certherd" and .operation == "Apply") |
		.fieldsV1["f:data"]["f:tls.crt"]' >/dev/null ||
		fail "certherd is not the Apply manager of $ns/$name's data: $(echo "$j" | jq -c .metadata.managedFields)"
	RV=$(echo "$j" | jq -r .metadata.resourceVersion)
	SECRET_JSON=$j
}

check_secret a "$NS_A" www-tls "$first"
rv_a=$RV
echo "$SECRET_JSON" | jq -e '.metadata.labels["app.kubernetes.io/managed-by"] == "certherd" and
	.metadata.labels.team == "edge" and
	.metadata.annotations["example.com/owner"] == "on-call, edge team" and
	.metadata.annotations["example.com/empty"] == ""' >/dev/null ||
	fail "labels or annotations missing: $(echo "$SECRET_JSON" | jq -c '.metadata | {labels, annotations}')"
echo "$SECRET_JSON" | jq -r '.data["ca.crt"]' | b64d | cmp -s - "$(ca_cert local)" ||
	fail "ca.crt is not the local CA's certificate"
check_secret b "$NS_B" "$SECRET_B" "$first"
rv_b=$RV
echo "$SECRET_JSON" | jq -e '.data["ca.crt"] == null' >/dev/null || fail "ca.crt set without ca_crt"
pass "www (serial $first) is a kubernetes.io/tls Secret on A ($NS_A/www-tls, rv $rv_a, labels, annotations, ca.crt) and B ($NS_B/$SECRET_B, rv $rv_b)"

if [ "$REAL" = 0 ]; then
	wait_for 30 "the in-cluster deployment" deployed www k8s-incluster
	check_secret b prod www-sa-tls "$first"
	pass "in-cluster service account (token, ca.crt, namespace files + KUBERNETES_SERVICE_HOST/PORT) deployed prod/www-sa-tls"

	jq -e -s 'map(select(.method == "PATCH")) | length > 0 and
		all(.content_type == "application/apply-patch+yaml" and
		    .field_manager == "certherd" and .force == "true")' "$T/emu-a.log" >/dev/null ||
		fail "not every PATCH was a forced server-side apply by certherd"
	jq -e -s 'map(select(.method == "PATCH" and .status < 300)) | all(.user == "certherd-b" or
		.user == "system:serviceaccount:prod:certherd")' "$T/emu-b.log" >/dev/null ||
		fail "B was not reached with the client certificate and the service account"
	pass "every request was PATCH application/apply-patch+yaml ?fieldManager=certherd&force=true"

	# --- failures: 403 and 404, the other targets unaffected
	wait_for 30 "the forbidden deployment to fail" failed www k8s-forbidden
	err=$(dep_field www k8s-forbidden last_error)
	echo "$err" | has -F "user 'forbidden' of context 'a-forbidden' cannot patch secrets in namespace web" ||
		fail "the 403 error does not say who cannot do what: $err"
	echo "$err" | has -F 'cannot patch resource "secrets"' ||
		fail "the 403 error lacks the Status message: $err"
	pass "403: $err"
	wait_for 30 "the deployment to a missing namespace to fail" failed www k8s-nons
	err=$(dep_field www k8s-nons last_error)
	echo "$err" | has -F "namespace missing does not exist" || fail "the 404 error: $err"
	pass "404: $err"
	deployed www k8s-a && deployed www k8s-b || fail "a failing target affected another"
	{ ch status || true; } | has "k8s-forbidden" || fail "status does not name the failing target"
fi

# --- renewal ---------------------------------------------------------------
ch renew www --force >/dev/null
new_serial() { s=$(inv_serial www) && [ -n "$s" ] && [ "$s" != "$first" ]; }
wait_for 30 "a new serial for www" new_serial
second=$(inv_serial www)
wait_for 30 "deployment of $second to A" deployed www k8s-a
wait_for 30 "deployment of $second to B" deployed www k8s-b
check_secret a "$NS_A" www-tls "$second"
[ "$RV" -gt "$rv_a" ] || fail "resourceVersion on A did not increase ($rv_a -> $RV)"
rv_a2=$RV
check_secret b "$NS_B" "$SECRET_B" "$second"
[ "$RV" -gt "$rv_b" ] || fail "resourceVersion on B did not increase ($rv_b -> $RV)"
pass "renew --force: serial $first -> $second on both clusters, resourceVersion $rv_a -> $rv_a2 (A), $rv_b -> $RV (B)"
rv_b2=$RV

# --- a rehearsal is a server-side dry run: admitted, nothing stored ----------
rc=0
chj renew www --dry-run >"$T/dry.json" || rc=$?
for t in k8s-a k8s-b; do
	jq -e --arg t "$t" '.steps[] | select(.target == $t) | .ok' "$T/dry.json" >/dev/null ||
		fail "the rehearsal of $t did not pass: $(cat "$T/dry.json")"
done
check_secret a "$NS_A" www-tls "$second"
[ "$RV" = "$rv_a2" ] || fail "the rehearsal changed the Secret on A (resourceVersion $rv_a2 -> $RV)"
check_secret b "$NS_B" "$SECRET_B" "$second"
[ "$RV" = "$rv_b2" ] || fail "the rehearsal changed the Secret on B (resourceVersion $rv_b2 -> $RV)"
if [ "$REAL" = 0 ]; then
	[ "$rc" = 1 ] || fail "the rehearsal with a forbidden target exited $rc"
	jq -e '.result == "failed" and .stage == "deploy" and .target == "k8s-forbidden" and (.error | test("403|forbidden"))' \
		"$T/dry.json" >/dev/null || fail "the forbidden target's rehearsal: $(cat "$T/dry.json")"
	jq -se '[.[] | select(.method == "PATCH" and (.query | test("dryRun=All")))] | length >= 1' \
		"$T/emu-a.log" >/dev/null || fail "no PATCH with dryRun=All reached cluster A"
fi
pass "renew --dry-run: a server-side dry run on both clusters, the Secrets unchanged"

# --- secrets stay out of the log and of show ---------------------------------
d=$(issuance_dir "$second")
keyline=$(sed -n 2p "$d/key.pem")
keyb64=$(base64 -w0 "$d/key.pem" | cut -c1-40)
for s in "PRIVATE KEY" "$keyline" "$keyb64" "$TOK_A" "$TOK_FORBIDDEN" "$TOK_SA" \
	"$(issuance_fullchain "$second" | base64 -w0 | cut -c1-40)"; do
	has -F -- "$s" "$T/daemon.log" && fail "the daemon log holds secret data (${s:0:12}...)"
	chj show www | has -F -- "$s" && fail "show holds secret data (${s:0:12}...)"
done
pass "no key, token or Secret data in the daemon log or in show"

# --- the emulator behaves like the API server --------------------------------
if [ "$REAL" = 0 ]; then
	U="https://127.0.0.1:$PA/api/v1/namespaces/web/secrets"
	kc() { curl -s -o "$T/resp" -w '%{http_code}' --cacert "$T/pki-a/ca.crt" "$@"; }
	reason() { jq -r .reason "$T/resp"; }
	[ "$(kc "$U/www-tls")" = 401 ] && [ "$(reason)" = Unauthorized ] || fail "no token: not 401"
	AUTH=(-H "Authorization: Bearer $TOK_A")
	body='{"apiVersion":"v1","kind":"Secret","metadata":{"name":"www-tls"},"type":"kubernetes.io/tls","data":{"tls.crt":"QUJD","tls.key":"QUJD"}}'
	code=$(kc "${AUTH[@]}" -X PATCH -H 'Content-Type: application/apply-patch+yaml' -d "$body" "$U/www-tls")
	[ "$code" = 400 ] || fail "apply without fieldManager: $code"
	code=$(kc "${AUTH[@]}" -X PATCH -H 'Content-Type: application/apply-patch+yaml' -d "$body" "$U/www-tls?fieldManager=kubectl")
	[ "$code" = 409 ] && jq -e '.details.causes[] | select(.field == ".data.tls.crt") |
		.message == "conflict with \"certherd\" using v1"' "$T/resp" >/dev/null ||
		fail "apply conflict: $code $(cat "$T/resp")"
	code=$(kc "${AUTH[@]}" -X PATCH -H 'Content-Type: text/plain' -d x "$U/www-tls?fieldManager=x")
	[ "$code" = 415 ] || fail "text/plain patch: $code"
	code=$(kc "${AUTH[@]}" -X PATCH -H 'Content-Type: application/apply-patch+yaml' \
		-d '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad"},"type":"kubernetes.io/tls","data":{"tls.crt":"QUJD"}}' \
		"$U/bad?fieldManager=x")
	[ "$code" = 422 ] && jq -e '.details.causes[0].field == "data[tls.key]"' "$T/resp" >/dev/null ||
		fail "tls secret without tls.key: $code $(cat "$T/resp")"
	code=$(kc "${AUTH[@]}" -X PATCH -H 'Content-Type: application/apply-patch+yaml' \
		-d '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bad"},"data":{"x":"not base64!"}}' \
		"$U/bad?fieldManager=x")
	[ "$code" = 422 ] || fail "non-base64 data: $code"
	kget a web www-tls | jq '.metadata.resourceVersion = "1"' >"$T/stale.json"
	code=$(kc "${AUTH[@]}" -X PUT -H 'Content-Type: application/json' -d @"$T/stale.json" "$U/www-tls")
	[ "$code" = 409 ] && [ "$(reason)" = Conflict ] || fail "PUT with a stale resourceVersion: $code"
	kget a web www-tls | jq -e --arg rv "$rv_a2" '.metadata.resourceVersion == $rv' >/dev/null ||
		fail "a refused request changed the secret"
	pass "emulator: 401, 400 without fieldManager, 409 apply conflict, 415, 422, 409 stale PUT"
fi
