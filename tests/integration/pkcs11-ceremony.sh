#!/usr/bin/env bash
# The offline CA ceremony with SoftHSM2 (two tokens: an offline root and
# the daemon's): `certherd ca init-root`, `new-intermediate`,
# `sign-intermediate` (pathlen 0, a name constraint) and `import`; then the
# daemon's pkcs11 CA issues leaves with the intermediate's token key, leaves
# chain to the root through the intermediate, fullchain is leaf +
# intermediate, a name outside the constraint is refused, both keys are
# never extractable (the tokens refuse to hand out their secrets), a CSR
# with a broken signature is refused, every step is in the event log, and
# the errors (no token, wrong PIN, key label taken, output exists, wrong
# root key, chain that does not verify) name what is wrong and write
# nothing, with the PINs in no output.
. "$(dirname "$0")/lib.sh"

MODULE=${CH_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null ||
	[ ! -r "$MODULE" ]; then
	echo "SKIP: SoftHSM2 or pkcs11-tool is not installed (apt install softhsm2 opensc)"
	exit 77
fi

ROOT_PIN=root-7311-never-logged
SUB_PIN=sub-9024-never-logged
mkdir -p "$T/tokens" "$T/out" "$T/offline"
cat >"$T/softhsm2.conf" <<EOF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label offline-root --pin "$ROOT_PIN" --so-pin so-1111 >/dev/null
softhsm2-util --init-token --free --label daemon-ca --pin "$SUB_PIN" --so-pin so-2222 >/dev/null
softhsm2-util --init-token --free --label scratch --pin "$SUB_PIN" --so-pin so-3333 >/dev/null
(umask 077 && printf '%s\n' "$ROOT_PIN" >"$T/offline/root.pin" &&
	printf '%s\n' "$SUB_PIN" >"$T/sub.pin" && printf '%s\n' wrong-5550-pin >"$T/wrong.pin")

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  issuing:
    type: pkcs11
    module: $MODULE
    token_label: daemon-ca
    key_label: issuing-2026
    pin_file: sub.pin
targets:
  files:
    type: file
    cert: out/{name}.crt
    chain: out/{name}.chain.pem
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
certificates:
  web:
    names: [web.example.com]
    ca: issuing
    lifetime: 30d
    targets: [files]
  outside:
    names: [outside.test]
    ca: issuing
    lifetime: 30d
    targets: [files]
YAML
cfg=(--config "$T/certherd.yaml")
log=$T/ceremony.log
root_tok=(--module "$MODULE" --token offline-root --pin-file "$T/offline/root.pin")
sub_tok=(--module "$MODULE" --token daemon-ca --pin-file "$T/sub.pin")

# 1. The root: key made in the offline token, self-signed with C_Sign.
"$CERTHERD" "${cfg[@]}" ca init-root "${root_tok[@]}" --key-label root-2026 \
	--key-type ecdsa-p384 --subject "CN=Example Root CA 2026,O=Example" --days 3650 \
	--out "$T/offline/root.pem" >>"$log" 2>&1 || { cat "$log"; fail "init-root failed"; }
rt=$(openssl x509 -noout -text -in "$T/offline/root.pem")
echo "$rt" | has 'CA:TRUE' || fail "root is not CA:TRUE: $rt"
echo "$rt" | grep -A1 'Basic Constraints' | has critical || fail "root basicConstraints not critical"
echo "$rt" | grep -A1 'Key Usage' | has 'Certificate Sign, CRL Sign' || fail "root key usage: $rt"
echo "$rt" | has 'Subject Key Identifier' || fail "root has no SKI"
echo "$rt" | has 'ecdsa-with-SHA384' || fail "root not signed with ECDSA P-384/SHA-384"
[ "$(openssl x509 -noout -subject -nameopt RFC2253 -in "$T/offline/root.pem")" = \
	"subject=CN=Example Root CA 2026,O=Example" ] || fail "root subject not as given (RFC 4514)"
openssl verify -CAfile "$T/offline/root.pem" "$T/offline/root.pem" >/dev/null ||
	fail "root does not verify itself"
pass "init-root: self-signed P-384 root, CA:TRUE critical, keyCertSign+cRLSign, SKI"

# Errors name what is wrong, write nothing, record nothing, leave no key.
# refused NAME PATTERN ARGS...: certherd ARGS fails and says PATTERN.
refused() {
	local name=$1 pat=$2
	shift 2
	if "$CERTHERD" "$@" >"$T/err-$name.out" 2>&1; then
		fail "$name: accepted: $(cat "$T/err-$name.out")"
	fi
	has -F -- "$pat" "$T/err-$name.out" || fail "$name: unclear error: $(cat "$T/err-$name.out")"
}
root_args=(--key-type ecdsa-p384 --subject "CN=again" --days 10 --out "$T/offline/again.pem")
refused label-taken 'key "root-2026" already exists in PKCS#11 token "offline-root"' \
	"${cfg[@]}" ca init-root "${root_tok[@]}" --key-label root-2026 "${root_args[@]}"
refused wrong-pin 'token "offline-root" refused the PIN from PIN file' \
	"${cfg[@]}" ca init-root --module "$MODULE" --token offline-root --pin-file "$T/wrong.pin" \
	--key-label root-new "${root_args[@]}"
refused no-token 'token "offline-rot" not found in module' \
	"${cfg[@]}" ca init-root --module "$MODULE" --token offline-rot \
	--pin-file "$T/offline/root.pin" --key-label root-new "${root_args[@]}"
refused no-module 'cannot load PKCS#11 module /nonexistent/pkcs11.so' \
	ca init-root --module /nonexistent/pkcs11.so --token offline-root \
	--pin-file "$T/offline/root.pin" --key-label root-new "${root_args[@]}"
chmod 0644 "$T/offline/root.pin"
refused pin-mode 'root.pin' \
	ca init-root "${root_tok[@]}" --key-label root-new "${root_args[@]}"
chmod 0600 "$T/offline/root.pin"
refused out-exists "$T/offline/root.pem already exists" \
	"${cfg[@]}" ca init-root "${root_tok[@]}" --key-label root-new --key-type ecdsa-p384 \
	--subject "CN=again" --days 10 --out "$T/offline/root.pem"
refused out-dir "cannot write to directory $T/nowhere" \
	ca init-root "${root_tok[@]}" --key-label root-new --key-type ecdsa-p384 \
	--subject "CN=again" --days 10 --out "$T/nowhere/root.pem"
refused bad-subject 'subject part "CN" is not KEY=VALUE' \
	ca init-root "${root_tok[@]}" --key-label root-new --key-type ecdsa-p384 \
	--subject "CN" --days 10 --out "$T/offline/again.pem"
[ ! -e "$T/offline/again.pem" ] || fail "a refused init-root wrote a certificate"
[ "$(sql "select count(*) from events where event = 'ca-init-root'")" = 1 ] ||
	fail "a refused init-root was recorded: $(sql 'select event, detail from events')"
pkcs11-tool --module "$MODULE" --token-label offline-root --login --pin "$ROOT_PIN" \
	--list-objects --type privkey 2>/dev/null >"$T/root-objs.out"
[ "$(grep -c 'label:' "$T/root-objs.out")" = 1 ] ||
	fail "a refused init-root left a key behind: $(cat "$T/root-objs.out")"
pass "init-root errors: key label taken, wrong PIN, no token, no module, PIN file mode, --out exists or unwritable, bad subject; nothing written or recorded"

# 2. The intermediate's key in the daemon's token, and its CSR.
"$CERTHERD" "${cfg[@]}" ca new-intermediate "${sub_tok[@]}" --key-label issuing-2026 \
	--key-type ecdsa-p256 --subject "CN=Example Issuing CA 2026,O=Example" \
	--out "$T/inter.csr" >>"$log" 2>&1 || { cat "$log"; fail "new-intermediate failed"; }
openssl req -noout -verify -in "$T/inter.csr" >/dev/null 2>&1 || fail "the CSR does not verify"
openssl req -noout -subject -in "$T/inter.csr" | has 'Example Issuing CA 2026' ||
	fail "the CSR has the wrong subject"
refused sub-label-taken 'key "issuing-2026" already exists in PKCS#11 token "daemon-ca"' \
	ca new-intermediate "${sub_tok[@]}" --key-label issuing-2026 --key-type ecdsa-p256 \
	--subject "CN=again" --out "$T/again.csr"
[ ! -e "$T/again.csr" ] || fail "a refused new-intermediate wrote a request"
pass "new-intermediate: key in the daemon's token, CSR signed by it; label taken refused"

# 3. A CSR with a broken signature is refused by sign-intermediate.
openssl req -in "$T/inter.csr" -outform DER -out "$T/inter.der"
python3 - "$T/inter.der" "$T/bad.der" <<'EOF'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
d[-5] ^= 0x01  # inside the signature value
open(sys.argv[2], 'wb').write(d)
EOF
{ echo '-----BEGIN CERTIFICATE REQUEST-----'; base64 -w 64 "$T/bad.der"
  echo '-----END CERTIFICATE REQUEST-----'; } >"$T/bad.csr"
if "$CERTHERD" ca sign-intermediate "${root_tok[@]}" --key-label root-2026 \
	--root "$T/offline/root.pem" --csr "$T/bad.csr" --days 1825 --path-len 0 \
	--permitted-dns example.com --out "$T/bad.pem" >"$T/bad.out" 2>&1; then
	fail "a CSR with a broken signature was signed"
fi
has 'does not verify' "$T/bad.out" || fail "refusal does not say why: $(cat "$T/bad.out")"
[ ! -e "$T/bad.pem" ] || fail "a refused CSR produced a certificate"
pass "sign-intermediate refuses a CSR whose signature does not verify"

# The intermediate's key cannot sign for the root.
refused wrong-root-key 'the signing key does not belong to the root certificate' \
	ca sign-intermediate "${sub_tok[@]}" --key-label issuing-2026 \
	--root "$T/offline/root.pem" --csr "$T/inter.csr" --days 1825 --out "$T/wrong.pem"
[ ! -e "$T/wrong.pem" ] || fail "a refused sign-intermediate wrote a certificate"
refused bad-dns 'permitted DNS name "exa mple.com" is not a domain' \
	ca sign-intermediate "${root_tok[@]}" --key-label root-2026 --root "$T/offline/root.pem" \
	--csr "$T/inter.csr" --days 1825 --permitted-dns "exa mple.com" --out "$T/wrong.pem"
pass "sign-intermediate refuses a key that is not the root's and a bad name constraint"

# 4. The root signs the intermediate: pathlen 0, permitted DNS example.com.
"$CERTHERD" "${cfg[@]}" ca sign-intermediate "${root_tok[@]}" --key-label root-2026 \
	--root "$T/offline/root.pem" --csr "$T/inter.csr" --days 1825 --path-len 0 \
	--permitted-dns example.com --out "$T/inter.pem" >>"$log" 2>&1 ||
	{ cat "$log"; fail "sign-intermediate failed"; }
it=$(openssl x509 -noout -text -in "$T/inter.pem")
echo "$it" | has 'CA:TRUE, pathlen:0' || fail "intermediate lacks CA:TRUE, pathlen:0: $it"
echo "$it" | grep -A2 'Name Constraints' | has 'DNS:example.com' ||
	fail "intermediate lacks the name constraint: $it"
echo "$it" | has 'Authority Key Identifier' || fail "intermediate has no AKI"
[ "$(openssl x509 -noout -ext subjectKeyIdentifier -in "$T/offline/root.pem" | tail -1)" = \
	"$(openssl x509 -noout -ext authorityKeyIdentifier -in "$T/inter.pem" | tail -1 | sed 's/keyid://')" ] ||
	fail "intermediate AKI is not the root's SKI"
openssl verify -CAfile "$T/offline/root.pem" "$T/inter.pem" >/dev/null ||
	fail "intermediate does not verify against the root"
pass "sign-intermediate: CA:TRUE pathlen 0, name constraint, AKI = root SKI, verifies"

# 5. Import: the wrong certificate (the root's key is not the CA's) is refused.
"$CERTHERD" "${cfg[@]}" ca import --ca issuing --cert "$T/offline/root.pem" >"$T/imp.out" 2>&1 &&
	fail "import accepted a certificate whose key is not the token key"
has 'public key is not' "$T/imp.out" || fail "import refusal unclear: $(cat "$T/imp.out")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
	-subj "/CN=Other Root" -days 10 -out "$T/other.pem" 2>/dev/null
refused import-chain 'CN=Other Root' \
	"${cfg[@]}" ca import --ca issuing --cert "$T/inter.pem" --chain "$T/other.pem"
refused import-no-ca 'no CA nosuch in' \
	"${cfg[@]}" ca import --ca nosuch --cert "$T/inter.pem" --chain "$T/offline/root.pem"
refused import-no-config 'needs --config' \
	ca import --ca issuing --cert "$T/inter.pem" --chain "$T/offline/root.pem"
[ ! -e "$(ca_cert issuing)" ] || fail "a refused import wrote $(ca_cert issuing)"
"$CERTHERD" "${cfg[@]}" ca import --ca issuing --cert "$T/inter.pem" \
	--chain "$T/offline/root.pem" >>"$log" 2>&1 || { cat "$log"; fail "import failed"; }
[ "$(grep -c 'BEGIN CERTIFICATE' "$(ca_cert issuing)")" = 2 ] ||
	fail "the CA certificate file does not hold the intermediate and the root"
pass "import: token key checked, intermediate + chain in $(ca_cert issuing)"

# 6. The daemon issues with the intermediate's token key.
"$CERTHERDD" --config "$T/certherd.yaml" --check-config >/dev/null ||
	fail "the configuration does not check"
start_daemon
wait_for 30 "first issuance of web" deployed web files
outcome() { [ "$(chj show "$1" | jq -r .certificate.last_outcome)" = "$2" ]; }
wait_for 30 "outside.test refused" outcome outside rejected
openssl verify -CAfile "$T/offline/root.pem" -untrusted "$T/inter.pem" "$T/out/web.crt" \
	>/dev/null || fail "web.crt does not verify through the intermediate to the root"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/out/web.fullchain.pem")" = 2 ] ||
	fail "fullchain does not hold exactly leaf + intermediate"
cat "$T/out/web.crt" "$T/inter.pem" | cmp -s - "$T/out/web.fullchain.pem" ||
	fail "fullchain is not leaf followed by intermediate"
cmp -s "$T/out/web.chain.pem" "$T/inter.pem" || fail "chain is not the intermediate"
openssl verify -CAfile "$T/offline/root.pem" -untrusted "$T/out/web.chain.pem" \
	"$T/out/web.crt" >/dev/null || fail "web.crt does not verify with its own chain file"
# A name outside the intermediate's constraint: refused by the CA, nothing deployed.
err=$(chj show outside | jq -r .certificate.last_error)
echo "$err" | has 'outside the name constraints of CA certificate' ||
	fail "outside.test: the error does not name the constraint: $err"
[ ! -e "$T/out/outside.crt" ] || fail "a leaf outside the name constraint was deployed"
pass "leaves chain leaf -> intermediate -> root; fullchain = leaf + intermediate; outside.test refused by the CA ($err)"

# 7. Keys are in their tokens, sensitive and never extractable.
for tk in offline-root:root-2026:$ROOT_PIN daemon-ca:issuing-2026:$SUB_PIN; do
	IFS=: read -r tok label pin <<<"$tk"
	objs=$(pkcs11-tool --module "$MODULE" --token-label "$tok" --login --pin "$pin" \
		--list-objects --type privkey 2>/dev/null) || fail "pkcs11-tool cannot list $tok"
	echo "$objs" | grep -A4 "label: *$label\$" |
		has 'sensitive, always sensitive, never extractable' ||
		fail "$label in $tok is missing or extractable: $objs"
done
# The tokens refuse to hand out the secrets (CKA_VALUE of the EC keys),
# asked through the raw module; a planted readable key shows the asking works.
if [ -n "${P11_READ_SECRET:-}" ]; then
	"$P11_READ_SECRET" --plant "$MODULE" scratch "$T/sub.pin" readable >"$T/plant.out" 2>&1 ||
		fail "the secret of a readable key was not read: $(cat "$T/plant.out")"
	for tk in offline-root:root-2026:offline/root.pin daemon-ca:issuing-2026:sub.pin; do
		IFS=: read -r tok label pinf <<<"$tk"
		rc=0
		"$P11_READ_SECRET" "$MODULE" "$tok" "$T/$pinf" "$label" >"$T/secret.out" 2>&1 || rc=$?
		[ "$rc" = 1 ] && has CKR_ATTRIBUTE_SENSITIVE "$T/secret.out" ||
			fail "$label in $tok: the secret was not refused (rc $rc): $(cat "$T/secret.out")"
	done
fi
pass "root and intermediate keys are sensitive and never extractable; CKA_VALUE refused"

# 8. Every step is in the event log; the PINs are nowhere.
for e in ca-init-root ca-new-intermediate ca-sign-intermediate ca-import; do
	[ "$(sql "select count(*) from events where event = '$e'")" -ge 1 ] ||
		fail "no $e event: $(sql 'select event, detail from events')"
done
sql "select detail from events where event = 'ca-import'" | has 'CA issuing now uses' ||
	fail "the import event does not name the CA"
sql "select detail from events where event = 'ca-sign-intermediate'" |
	has 'path length 0, 1 permitted DNS subtree' || fail "the sign event lacks the constraints"
sql "select detail from events where event = 'ca-init-root'" |
	has 'key "root-2026" in PKCS#11 token "offline-root"' || fail "the root event lacks the key"
for p in "$ROOT_PIN" "$SUB_PIN" wrong-5550-pin; do
	has -F -- "$p" "$log" "$T/bad.out" "$T/imp.out" "$T/daemon.log" "$T"/err-*.out &&
		fail "a PIN was printed"
	sql .dump | has -F -- "$p" && fail "a PIN is in the database"
done
pass "each step recorded in the event log; no PIN in any output"

# 9. A new intermediate is picked up by `certherd reload`.
"$CERTHERD" "${cfg[@]}" ca sign-intermediate "${root_tok[@]}" --key-label root-2026 \
	--root "$T/offline/root.pem" --csr "$T/inter.csr" --days 365 --path-len 0 \
	--permitted-dns example.com --out "$T/inter2.pem" >>"$log" 2>&1 || fail "re-sign failed"
"$CERTHERD" "${cfg[@]}" ca import --ca issuing --cert "$T/inter2.pem" \
	--chain "$T/offline/root.pem" >>"$log" 2>&1 || fail "second import failed"
ch reload >/dev/null || fail "reload failed"
serial=$(serial_of "$T/out/web.crt")
ch renew web --force >/dev/null
wait_for 30 "the new intermediate in web's chain" cmp -s "$T/out/web.chain.pem" "$T/inter2.pem"
wait_for 30 "deployment of the renewed web" deployed web files
[ "$(serial_of "$T/out/web.crt")" != "$serial" ] || fail "web.crt was not renewed"
openssl verify -CAfile "$T/offline/root.pem" -untrusted "$T/inter2.pem" "$T/out/web.crt" \
	>/dev/null || fail "renewed web.crt does not verify through the new intermediate"
pass "a re-imported intermediate is used after certherd reload"

stop_daemon
