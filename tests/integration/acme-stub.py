#!/usr/bin/env python3
"""A misbehaving ACME server for acme-errors.sh: HTTPS on 127.0.0.1, one
scenario per path prefix (/<mode>/dir). Signatures are not checked. Every
request is appended to the log file as "METHOD path".

usage: acme-stub.py PORT CERT KEY LOG
"""
import itertools
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
NS = "urn:ietf:params:acme:error:"
nonces = itertools.count(1)


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
        if n:
            self.rfile.read(n)
        with open(LOG, "a") as f:
            f.write("%s %s\n" % (self.command, self.path))
        parts = self.path.strip("/").split("/")
        if len(parts) != 2:
            return self.reply(404, {"type": "about:blank"})
        mode, what = parts
        base = "https://127.0.0.1:%d/%s" % (PORT, mode)
        if what == "dir":
            d = {"newNonce": base + "/nonce", "newAccount": base + "/acct",
                 "newOrder": base + "/order"}
            if mode == "tos":
                d["meta"] = {"termsOfService": "https://example.test/tos.pdf"}
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
            if mode == "rejected":
                return self.problem(400, "rejectedIdentifier",
                                    "Some of the identifiers requested were rejected",
                                    subproblems=[{"type": NS + "caa",
                                                  "detail": "CAA record forbids issuance",
                                                  "identifier": {"type": "dns",
                                                                 "value": "evil.example.test"}}])
        return self.reply(404, {"type": "about:blank"})

    do_GET = do_HEAD = do_POST = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
