#!/usr/bin/env python3
"""An ACME server for what Pebble 2.4.0 does not do: HTTPS on 127.0.0.1,
one scenario per path prefix (/<mode>/dir). Signatures are not checked.
Every request is appended to the log file as "METHOD path".

Misbehaving modes (acme-errors.sh): ratelimit, down, badnonce, rejected, tos.

Issuing modes: orders are ready at once (no authorizations), finalize signs
the CSR with a CA of the stub's own (openssl), and the log gets
"NEWORDER <payload>" for each newOrder.
  ari    the directory has renewalInfo (RFC 9773). Windows are answered the
         way Let's Encrypt does (RFC 3339 with fractional seconds,
         Retry-After: 3600): a certificate for a name starting "now." that
         replaces nothing is in a window already over (renew now, with an
         explanationURL); others 30-31 days ahead. Logged as
         "WINDOW <certID> <start> <end>"; unknown certIDs get 404.
  prof   meta.profiles offers "classic" (90 days) and "shortlived" (6 days).
  noprof neither renewalInfo nor profiles.

usage: acme-stub.py PORT CERT KEY LOG
"""
import base64
import datetime
import itertools
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
NS = "urn:ietf:params:acme:error:"
nonces = itertools.count(1)
ISSUING = ("ari", "prof", "noprof")
WORK = tempfile.mkdtemp(prefix="acme-stub.")
LOCK = threading.Lock()
orders = {}  # id -> {"mode", "payload", "status", "cert"}
windows = {}  # certID -> (start, end, explanation)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


# The issuing CA: its key identifier goes into every leaf's AKI.
run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-days", "30", "-subj", "/CN=certherd test stub issuer", "-keyout", WORK + "/issuer.key",
    "-out", WORK + "/issuer.pem")


def cert_id(pem_path):
    """RFC 9773 certID, computed from openssl's text output."""
    aki = run("openssl", "x509", "-noout", "-ext", "authorityKeyIdentifier", "-in", pem_path)
    hexid = "".join(l.strip() for l in aki.splitlines()[1:]).replace("keyid:", "").replace(":", "")
    serial = run("openssl", "x509", "-noout", "-serial", "-in", pem_path).strip().split("=")[1]
    raw = bytes.fromhex(serial if len(serial) % 2 == 0 else "0" + serial)
    if raw[0] & 0x80:
        raw = b"\0" + raw
    return b64url(bytes.fromhex(hexid)) + "." + b64url(raw)


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + "%06dZ" % secrets.randbelow(1000000)


def sign(order_id, csr_b64):
    o = orders[order_id]
    csr = WORK + "/%s.csr" % order_id
    with open(csr, "w") as f:
        f.write("-----BEGIN CERTIFICATE REQUEST-----\n")
        f.write(base64.encodebytes(b64url_decode(csr_b64)).decode())
        f.write("-----END CERTIFICATE REQUEST-----\n")
    ext = WORK + "/%s.ext" % order_id
    with open(ext, "w") as f:
        f.write("authorityKeyIdentifier=keyid:always\nbasicConstraints=CA:FALSE\n")
    days = "6" if o["payload"].get("profile") == "shortlived" else "90"
    out = WORK + "/%s.pem" % order_id
    # The high bit set: the certID's serial part then starts with a 00 byte.
    run("openssl", "x509", "-req", "-in", csr, "-CA", WORK + "/issuer.pem", "-CAkey",
        WORK + "/issuer.key", "-set_serial", "0x8" + secrets.token_hex(8)[1:], "-days", days,
        "-copy_extensions", "copy", "-extfile", ext, "-out", out)
    names = run("openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", out)
    cid, now = cert_id(out), int(datetime.datetime.now().timestamp())
    if "DNS:now." in names and "replaces" not in o["payload"]:
        windows[cid] = (now - 7200, now - 3600, "https://ca.example.test/incident/42")
    else:
        windows[cid] = (now + 30 * 86400, now + 31 * 86400, None)
    with open(out) as f, open(WORK + "/issuer.pem") as g:
        o["cert"] = f.read() + g.read()
    o["status"] = "valid"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=None, headers=None, ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Replay-Nonce", "stub-nonce-%d" % next(nonces))
        self.send_header("Content-Length", str(len(data)))
        if body is not None:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def problem(self, status, kind, detail, headers=None, **extra):
        body = {"type": NS + kind, "detail": detail, "status": status}
        body.update(extra)
        self.reply(status, body, headers, "application/problem+json")

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with open(LOG, "a") as f:
            f.write("%s %s\n" % (self.command, self.path))
        parts = self.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] in ISSUING:
            with LOCK:
                return self.issuing(parts[0], parts[1], parts[2], body)
        if len(parts) != 2:
            return self.reply(404, {"type": "about:blank"})
        mode, what = parts
        base = "https://127.0.0.1:%d/%s" % (PORT, mode)
        if what == "dir":
            d = {"newNonce": base + "/nonce", "newAccount": base + "/acct",
                 "newOrder": base + "/order"}
            if mode == "tos":
                d["meta"] = {"termsOfService": "https://example.test/tos.pdf"}
            if mode == "ari":
                d["renewalInfo"] = base + "/renewal-info/"
            if mode == "prof":
                d["meta"] = {"profiles": {"classic": "https://ca.example.test/docs#classic",
                                          "shortlived": "https://ca.example.test/docs#short"}}
            return self.reply(200, d)
        if what == "nonce":
            return self.reply(200)
        if self.command != "POST":
            return self.reply(405, {"type": "about:blank"})
        if mode == "badnonce":
            return self.problem(400, "badNonce", "JWS has an invalid anti-replay nonce")
        if what == "acct":
            return self.reply(201, {"status": "valid"}, {"Location": base + "/acct/1"})
        if what == "order":
            if mode == "ratelimit":
                return self.problem(429, "rateLimited",
                                    "too many new orders (300) from this account in the last 3h0m0s",
                                    {"Retry-After": "3600"})
            if mode == "down":
                return self.problem(503, "serverInternal", "the database is unavailable",
                                    {"Retry-After": "120"})
            if mode in ISSUING:
                with LOCK:
                    payload = json.loads(b64url_decode(json.loads(body)["payload"]))
                    with open(LOG, "a") as f:
                        f.write("NEWORDER %s\n" % json.dumps(payload, sort_keys=True))
                    oid = "o%d" % (len(orders) + 1)
                    orders[oid] = {"mode": mode, "payload": payload, "status": "ready"}
                    return self.reply(201, self.order(mode, oid), {"Location": base + "/order/" + oid})
            if mode == "rejected":
                return self.problem(400, "rejectedIdentifier",
                                    "Some of the identifiers requested were rejected",
                                    subproblems=[{"type": NS + "caa",
                                                  "detail": "CAA record forbids issuance",
                                                  "identifier": {"type": "dns",
                                                                 "value": "evil.example.test"}}])
        return self.reply(404, {"type": "about:blank"})

    def order(self, mode, oid):
        base = "https://127.0.0.1:%d/%s" % (PORT, mode)
        o = orders[oid]
        r = {"status": o["status"], "identifiers": o["payload"]["identifiers"],
             "authorizations": [], "finalize": base + "/finalize/" + oid}
        if "profile" in o["payload"]:
            r["profile"] = o["payload"]["profile"]
        if o["status"] == "valid":
            r["certificate"] = base + "/cert/" + oid
        return r

    def issuing(self, mode, what, arg, body):
        if what == "renewal-info" and self.command == "GET":
            if arg not in windows:
                return self.problem(404, "malformed", "no such certificate")
            start, end, expl = windows[arg]
            with open(LOG, "a") as f:
                f.write("WINDOW %s %d %d\n" % (arg, start, end))
            r = {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
            if expl:
                r["explanationURL"] = expl
            return self.reply(200, r, {"Retry-After": "3600"})
        if self.command != "POST" or arg not in orders:
            return self.reply(404, {"type": "about:blank"})
        if what == "finalize":
            sign(arg, json.loads(b64url_decode(json.loads(body)["payload"]))["csr"])
            return self.reply(200, self.order(mode, arg))
        if what == "order":
            return self.reply(200, self.order(mode, arg))
        if what == "cert":
            data = orders[arg]["cert"].encode()
            self.send_response(200)
            self.send_header("Replay-Nonce", "stub-nonce-%d" % next(nonces))
            self.send_header("Content-Type", "application/pem-certificate-chain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self.reply(404, {"type": "about:blank"})

    do_GET = do_HEAD = do_POST = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
