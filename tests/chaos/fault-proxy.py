#!/usr/bin/env python3
# A fault-injecting HTTPS proxy for the chaos suites, in front of a real
# ACME server (Pebble) on loopback. Python standard library only.
#
#   fault-proxy.py PORT CERT KEY UPSTREAM_HOST:PORT UPSTREAM_CA CONTROL LOG
#
# Every request is read whole and, in mode "pass", forwarded to the
# upstream over TLS with the client's Host header, so the upstream's URLs
# already name the proxy; any upstream host:port left in the answer's
# headers or body is rewritten to the proxy's (Replay-Nonce is never
# touched). The fault is read from the CONTROL file at every request, one
# "key=value" per word:
#
#   mode=pass|timeout|close-mid|http500|html200|garbage
#   path=REGEX    only requests whose path matches (default: all)
#   count=N       only the first N matching requests after CONTROL changed
#
#   timeout    read the request, never answer (the upstream never sees it)
#   close-mid  forward it (the upstream acts on it), then send the status
#              line and part of the headers, and close
#   http500    answer 500 with an HTML body, not a problem document
#   html200    answer 200 with an HTML page (a captive portal, a
#              misrouted load balancer)
#   garbage    answer random bytes instead of HTTP
#
# LOG gets one line per request:
#   EPOCH METHOD PATH ACTION UPSTREAM_STATUS
# ACTION is the mode applied ("pass" when no fault matched);
# UPSTREAM_STATUS is the upstream's status code, or "-" when the request
# never reached it.
import http.client
import os
import random
import re
import socket
import socketserver
import ssl
import sys
import threading
import time

PORT, CERT, KEY, UPSTREAM, UPSTREAM_CA, CONTROL, LOG = sys.argv[1:8]
UP_HOST, UP_PORT = UPSTREAM.rsplit(":", 1)
ME = "127.0.0.1:%s" % PORT
lock = threading.Lock()
state = {"control": None, "matched": 0}
up_ctx = ssl.create_default_context(cafile=UPSTREAM_CA)
up_ctx.check_hostname = False


def log(method, path, action, status):
    with lock, open(LOG, "a") as f:
        f.write("%.3f %s %s %s %s\n" % (time.time(), method, path, action, status))


def fault_for(path):
    """The mode for this request, counting it against count=N."""
    try:
        with open(CONTROL) as f:
            text = f.read().strip()
    except OSError:
        text = ""
    conf = dict(w.split("=", 1) for w in text.split() if "=" in w)
    mode = conf.get("mode", "pass")
    with lock:
        if text != state["control"]:
            state["control"] = text
            state["matched"] = 0
        if mode == "pass" or not re.search(conf.get("path", ""), path):
            return "pass"
        if "count" in conf and state["matched"] >= int(conf["count"]):
            return "pass"
        state["matched"] += 1
    return mode


def rewrite(data):
    return data.replace(UPSTREAM.encode(), ME.encode())


def read_request(rf):
    line = rf.readline(65536)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        h = rf.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, value = h.decode("latin-1").split(":", 1)
        headers.append((name.strip(), value.strip()))
    length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
    body = rf.read(length) if length else b""
    return method, target, headers, body


def forward(method, target, headers, body):
    conn = http.client.HTTPSConnection(UP_HOST, int(UP_PORT), context=up_ctx, timeout=30)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for n, v in headers:
        if n.lower() not in ("connection", "keep-alive", "accept-encoding"):
            conn.putheader(n, v)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    out = []
    for n, v in resp.getheaders():
        if n.lower() in ("transfer-encoding", "connection", "content-length"):
            continue
        if n.lower() != "replay-nonce":
            v = rewrite(v.encode("latin-1")).decode("latin-1")
        out.append((n, v))
    data = rewrite(data) if method != "HEAD" else b""
    head = "HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)
    head += "".join("%s: %s\r\n" % (n, v) for n, v in out)
    if method != "HEAD":
        head += "Content-Length: %d\r\n" % len(data)
    head += "\r\n"
    return resp.status, head.encode("latin-1"), data


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            tls = srv_ctx.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        rf = tls.makefile("rb")
        try:
            while True:
                req = read_request(rf)
                if req is None:
                    return
                method, target, headers, body = req
                path = target.split("?", 1)[0]
                mode = fault_for(path)
                if mode == "timeout":
                    log(method, path, mode, "-")
                    while tls.recv(4096):  # until the client gives up
                        pass
                    return
                if mode in ("http500", "html200"):
                    status = b"500 Internal Server Error" if mode == "http500" else b"200 OK"
                    page = b"<html><body><h1>%s</h1></body></html>\n" % status
                    tls.sendall(b"HTTP/1.1 %s\r\nContent-Type: text/html\r\n"
                                b"Content-Length: %d\r\n\r\n%s" % (status, len(page), page))
                    log(method, path, mode, "-")
                    continue
                if mode == "garbage":
                    tls.sendall(bytes(random.getrandbits(8) for _ in range(512)))
                    log(method, path, mode, "-")
                    return
                status, head, data = forward(method, target, headers, body)
                if mode == "close-mid":
                    # The headers and half the body; half the headers when there is none.
                    part = head + data[: len(data) // 2] if data else head[: len(head) // 2]
                    tls.sendall(part)
                    log(method, path, mode, status)
                    return
                tls.sendall(head + data)
                log(method, path, mode, status)
        except (OSError, ValueError, ssl.SSLError, http.client.HTTPException) as e:
            print("connection ended: %r" % e, file=sys.stderr, flush=True)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
srv_ctx.load_cert_chain(CERT, KEY)
with Server(("127.0.0.1", int(PORT)), Handler) as srv:
    print("listening on %s, upstream %s" % (ME, UPSTREAM), flush=True)
    srv.serve_forever()
