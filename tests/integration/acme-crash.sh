#!/usr/bin/env bash
# SIGKILL while an ACME order is in flight. The order URL is recorded
# durably before the new-order response is acted on, so after a restart the
# same idempotency key resumes the same order: one new-order at Pebble, one
# certificate issued by Pebble, one issuance recorded, and that issuance is
# the certificate Pebble issued. A kill inside the new-order round trip
# (the order exists at Pebble, its URL is not recorded) is recovered from
# the account's order list instead of creating another order.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pebble.sh"

# Exact request counts below: no random nonce rejections here.
start_pebble PEBBLE_WFE_NONCEREJECT=0

mkdir -p "$T/out"
cat >"$T/certherd.yaml" <<YAML
state_dir: var
socket: certherd.sock
metrics_listen: "off"
cas:
  pebble:
    type: acme
    directory: $PEBBLE_DIR_URL
    trust: $PEBBLE_TLS_CA
    agree_tos: true
    http01_listen: 127.0.0.1:$HTTP01_PORT
targets:
  files: { type: file, cert: "out/{name}.crt", fullchain: "out/{name}.fullchain.pem", key: "out/{name}.key" }
certificates:
  www: { names: [www.example.test, api.example.test], ca: pebble, targets: [files] }
YAML

PLOG=$T/pebble/pebble.log
new_orders() { grep -c 'POST /order-plz ' "$PLOG" || true; }
pebble_issued() { grep -c 'Issued certificate serial' "$PLOG" || true; }

# 1. Killed right after the order was created and recorded.
start_daemon_bg CERTHERD_CRASHPOINT=acme-order-created
wait_daemon_dead
idem=$(sql "SELECT pending_idem FROM certificates WHERE name='www'")
[ -n "$idem" ] || fail "no pending renewal recorded"
orders=$(find "$T/var/acme/pebble/orders" -type f)
[ "$orders" = "$T/var/acme/pebble/orders/$idem.json" ] ||
	fail "expected exactly the order file of $idem, found: $orders"
order_url=$(jq -r .order "$T/var/acme/pebble/orders/$idem.json")
[ -n "$order_url" ] && [ "$order_url" != null ] || fail "the order file holds no URL"
has "Created ACME order $order_url" "$T/daemon.log" || fail "the log names another order"
[ "$(stat -c %a "$T/var/acme/pebble/orders/$idem.json")" = 600 ] || fail "order file is not 0600"
[ "$(new_orders)" = 1 ] || fail "expected 1 new-order at pebble, got $(new_orders)"
[ "$(sql 'SELECT count(*) FROM issuances')" = 0 ] || fail "an issuance was recorded"
pass "killed after new-order: order $order_url recorded under idempotency key $idem"

# 2. Restarted, killed again once the certificate came back but before it was recorded.
start_daemon_bg CERTHERD_CRASHPOINT=issued-unrecorded
wait_daemon_dead
has "Resuming ACME order $order_url" "$T/daemon.log" || fail "the restart did not resume $order_url"
[ "$(new_orders)" = 1 ] || fail "the restart created another order ($(new_orders) new-orders)"
[ "$(pebble_issued)" = 1 ] || fail "pebble issued $(pebble_issued) certificates"
[ "$(sql 'SELECT count(*) FROM issuances')" = 0 ] || fail "an issuance was recorded before the kill"
[ "$(sql "SELECT pending_idem FROM certificates WHERE name='www'")" = "$idem" ] || fail "the idempotency key changed"
pass "restart resumed the same order; killed again after the certificate came back"

# 3. Restarted for good: the valid order's certificate is downloaded again and recorded once.
start_daemon
wait_for 60 "deployment of www" deployed www files
[ "$(grep -c "Resuming ACME order $order_url (valid)" "$T/daemon.log")" = 1 ] ||
	fail "the second restart did not pick up the valid order"
[ "$(new_orders)" = 1 ] || fail "$(new_orders) new-orders at pebble in total"
[ "$(pebble_issued)" = 1 ] || fail "pebble issued $(pebble_issued) certificates in total"
[ "$(sql 'SELECT count(*) FROM issuances')" = 1 ] || fail "expected exactly one issuance"
[ "$(sql 'SELECT idem_key FROM issuances')" = "$idem" ] || fail "the issuance has another idempotency key"
pebble_serial=$(sed -n 's/.*Issued certificate serial \([0-9a-f]*\) .*/\1/p' "$PLOG" | sed 's/^0*//')
[ "$(inv_serial www)" = "$pebble_serial" ] || fail "recorded serial $(inv_serial www) is not pebble's $pebble_serial"
[ "$(serial_of "$T/out/www.crt")" = "$pebble_serial" ] || fail "the deployed certificate is not pebble's"
pebble_root >"$T/root.pem"
openssl verify -CAfile "$T/root.pem" -untrusted "$T/out/www.fullchain.pem" "$T/out/www.crt" >/dev/null ||
	fail "the deployed chain does not verify against pebble's root"
[ -z "$(find "$T/var" -name '*.tmp.*')" ] || fail "temporary files left behind"
pass "one order, one certificate from pebble, one issuance (serial $pebble_serial) after two kills"
stop_daemon

# 4. A second certificate; killed after pebble created its order, before the URL was recorded.
cat >>"$T/certherd.yaml" <<YAML
  mail: { names: [mail.example.test], ca: pebble, targets: [files] }
YAML
start_daemon_bg CERTHERD_CRASHPOINT=acme-order-unrecorded
wait_daemon_dead
midem=$(sql "SELECT pending_idem FROM certificates WHERE name='mail'")
[ -n "$midem" ] || fail "no pending renewal of mail"
jq -e '.creating == true and (has("order") | not)' "$T/var/acme/pebble/orders/$midem.json" >/dev/null ||
	fail "the intent record is wrong: $(cat "$T/var/acme/pebble/orders/$midem.json")"
[ "$(new_orders)" = 2 ] || fail "expected 2 new-orders at pebble, got $(new_orders)"
start_daemon
wait_for 60 "deployment of mail" deployed mail files
has 'Recovered ACME order .* (pending) from the account' "$T/daemon.log" || fail "the orphan order was not recovered"
[ "$(new_orders)" = 2 ] || fail "the orphan was not reused: $(new_orders) new-orders"
[ "$(pebble_issued)" = 2 ] || fail "pebble issued $(pebble_issued) certificates"
[ "$(sql 'SELECT count(*) FROM issuances')" = 2 ] || fail "expected 2 issuances"
recovered=$(sed -n 's/.*Recovered ACME order \([^ ]*\) .*/\1/p' "$T/daemon.log")
[ "$(jq -r .order "$T/var/acme/pebble/orders/$midem.json")" = "$recovered" ] || fail "the recovered order was not recorded"
pass "killed inside the new-order round trip: order $recovered found in the account's order list, no second order"
stop_daemon
