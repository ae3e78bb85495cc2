#!/usr/bin/env bash
# End to end with a CA key in a SoftHSM2 token (type: pkcs11): the key and
# CA certificate are made on first start inside the token, certificates are
# issued to a file target and verify with OpenSSL; with a corrupted or
# loosened PIN file renewal fails with a clear error in `show`, the
# deployed files stay as they were, and the PIN is nowhere in the daemon's
# log, the CLI output or the database.
. "$(dirname "$0")/lib.sh"

MODULE=${CH_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null ||
	[ ! -r "$MODULE" ]; then
	echo "SKIP: SoftHSM2 or pkcs11-tool is not installed (apt install softhsm2 opensc)"
	exit 77
fi

PIN=pin-5150-never-logged
WRONG=wrong-2288-never-logged
mkdir -p "$T/tokens" "$T/out"
cat >"$T/softhsm2.conf" <<EOF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label certherd-ca --pin "$PIN" --so-pin so-4242 >/dev/null
(umask 077 && printf '%s\n' "$PIN" >"$T/pin")

cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
cas:
  hsm:
    type: pkcs11
    module: $MODULE
    token_label: certherd-ca
    key_label: ca-ec
    pin_file: pin
    create: true
    key_type: ecdsa-p256
    common_name: certherd token CA
  hsm-rsa:
    type: pkcs11
    module: $MODULE
    token_label: certherd-ca
    key_label: ca-rsa
    pin_file: pin
    create: true
    key_type: rsa-2048
    signature: pss
targets:
  files:
    type: file
    cert: out/{name}.crt
    chain: out/{name}.chain.pem
    fullchain: out/{name}.fullchain.pem
    key: out/{name}.key
certificates:
  web:
    names: [web.test, 127.0.0.1]
    ca: hsm
    lifetime: 30d
    targets: [files]
  api:
    names: [api.test]
    ca: hsm-rsa
    lifetime: 30d
    targets: [files]
YAML

"$CERTHERDD" --config "$T/certherd.yaml" --check-config >/dev/null ||
	fail "the configuration does not check"

start_daemon
wait_for 30 "first issuance of web" deployed web files
wait_for 30 "first issuance of api" deployed api files
pass "certificates issued by token keys and deployed on first start"

for ca in hsm hsm-rsa; do
	[ -s "$(ca_cert $ca)" ] || fail "no CA certificate for $ca"
	[ ! -e "$T/var/ca/$ca/ca.key" ] || fail "a software CA key exists for $ca"
done
openssl x509 -noout -subject -in "$(ca_cert hsm)" | has 'certherd token CA' ||
	fail "CA common name not used"
for n in web:hsm api:hsm-rsa; do
	name=${n%%:*} ca=${n#*:}
	openssl verify -CAfile "$(ca_cert "$ca")" "$T/out/$name.crt" >/dev/null ||
		fail "$name.crt does not verify against the $ca CA"
	openssl verify -CAfile "$(ca_cert "$ca")" "$T/out/$name.fullchain.pem" >/dev/null ||
		fail "$name.fullchain.pem does not verify"
	# The key on disk belongs to the certificate on disk.
	[ "$(openssl x509 -noout -pubkey -in "$T/out/$name.crt" | sha256sum)" = \
		"$(openssl pkey -pubout -in "$T/out/$name.key" | sha256sum)" ] ||
		fail "$name.key does not match $name.crt"
done
openssl x509 -noout -text -in "$T/out/web.crt" | has 'ecdsa-with-SHA256' ||
	fail "web.crt is not signed with ECDSA"
openssl x509 -noout -text -in "$T/out/api.crt" | has 'rsassaPss' ||
	fail "api.crt is not signed with RSA-PSS"
# The other CA does not vouch for it: verification can fail.
openssl verify -CAfile "$(ca_cert hsm-rsa)" "$T/out/web.crt" >/dev/null 2>&1 &&
	fail "web.crt verifies against the wrong CA"
# The keys live in the token, marked sensitive and never extractable.
objs=$(pkcs11-tool --module "$MODULE" --token-label certherd-ca --login --pin "$PIN" \
	--list-objects --type privkey 2>/dev/null) || fail "pkcs11-tool cannot list the token"
for k in ca-ec ca-rsa; do
	echo "$objs" | grep -A4 "label: *$k\$" | has 'sensitive, always sensitive, never extractable' ||
		fail "$k is missing or not sensitive and never-extractable: $objs"
done
pass "chains verify with openssl; CA keys only in the token"

serial_web=$(serial_of "$T/out/web.crt")
sums_before=$(cd "$T/out" && sha256sum web.* | sort)

# A corrupted PIN file: the next start cannot log in; renewal fails clearly.
stop_daemon
(umask 077 && printf '%s\n' "$WRONG" >"$T/pin")
start_daemon
ch renew web --force >/dev/null || true
wait_for 20 "the renewal of web to fail" \
	bash -c "[ \"\$('$CERTHERD' --socket '$SOCK' --json show web | jq -r .certificate.last_outcome)\" = misconfigured ]"
err=$(chj show web | jq -r .certificate.last_error)
echo "$err" | has 'refused the PIN' || fail "last_error does not say the PIN was refused: $err"
echo "$err" | has 'certherd-ca' || fail "last_error does not name the token: $err"
[ "$(cd "$T/out" && sha256sum web.* | sort)" = "$sums_before" ] ||
	fail "deployed files changed after a failed renewal"
[ "$(serial_of "$T/out/web.crt")" = "$serial_web" ] || fail "web.crt was replaced"
{ ch status || true; } | has 'web' || fail "status does not name the failing certificate"
pass "wrong PIN: renewal misconfigured ($err), deployed files untouched"

# A PIN file others can read is refused before the token sees it.
stop_daemon
(umask 077 && printf '%s\n' "$PIN" >"$T/pin")
chmod 0644 "$T/pin"
start_daemon
ch renew web --force >/dev/null || true
wait_for 20 "the refusal of a readable PIN file" \
	bash -c "'$CERTHERD' --socket '$SOCK' --json show web | jq -r .certificate.last_error | grep -q 'group or others'"
[ "$(cd "$T/out" && sha256sum web.* | sort)" = "$sums_before" ] ||
	fail "deployed files changed after a failed renewal"
pass "a PIN file readable by others is refused"

# Fixed: the same daemon recovers on the next attempt, same token key.
chmod 0600 "$T/pin"
ch renew web --force >/dev/null || true
wait_for 20 "renewal after the fix" \
	bash -c "[ \"\$(openssl x509 -noout -serial -in '$T/out/web.crt' | sed 's/^serial=//;s/^0*//' | tr A-F a-f)\" != '$serial_web' ]"
openssl verify -CAfile "$(ca_cert hsm)" "$T/out/web.crt" >/dev/null || fail "renewed web.crt does not verify"
pass "after fixing the PIN file the renewal succeeds with the same token key"

# The PIN appears nowhere: log, CLI output, socket replies, database.
for p in "$PIN" "$WRONG"; do
	has -F -- "$p" "$T/daemon.log" && fail "the PIN is in the daemon log"
	{ ch show web; ch show api; ch list; ch status || true; } | has -F -- "$p" &&
		fail "the PIN is in CLI output"
	{ chj show web; chj show api; chj status || true; } | has -F -- "$p" &&
		fail "the PIN is in JSON output"
	sql .dump | has -F -- "$p" && fail "the PIN is in the database"
	grep -rlF -- "$p" "$T/var" "$T/out" && fail "the PIN is in a state or output file"
done
pass "the PIN is in no log, output or database"

stop_daemon
