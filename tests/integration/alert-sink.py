#!/usr/bin/env python3
"""Receivers on 127.0.0.1 for the alert and heartbeat suites. Each binds an
ephemeral port, writes it to PORTFILE once listening, and appends one JSON
line per request received to LOG (the file is flushed per line).

usage: alert-sink.py http PORTFILE LOG [FAIL_FIRST]
         answers 200, except 500 to the first FAIL_FIRST requests;
         logs {"t", "method", "path", "headers", "status", "body"} where body
         is the parsed JSON (or the text when it is not JSON)
       alert-sink.py smtp PORTFILE LOG
         a minimal SMTP server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT);
         logs {"t", "from", "rcpt", "subject", "headers", "body"} per message
       alert-sink.py notify SOCKET LOG
         a service manager's notify socket (AF_UNIX datagrams) at SOCKET;
         logs {"t", "fields"} per datagram ("READY=1", "WATCHDOG=1", ...)
"""
import json
import socketserver
import sys
import threading
import time
from email.parser import Parser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORTFILE, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 0
lock = threading.Lock()
count = 0


def record(entry):
    entry["t"] = time.time()
    with lock, open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


class HTTPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        global count
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with lock:
            count += 1
            status = 500 if count <= FAIL_FIRST else 200
        record({"method": self.command, "path": self.path, "headers": dict(self.headers),
                "status": status, "body": body})
        data = b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = handle_any


class SMTPHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def handle(self):
        self.reply("220 alert-sink ESMTP")
        mail_from, rcpt = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-alert-sink")
                self.reply("250 8BITMIME")
            elif verb == "HELO" or verb == "NOOP" or verb == "RSET":
                if verb == "RSET":
                    mail_from, rcpt = None, []
                self.reply("250 ok")
            elif verb == "MAIL":
                mail_from = cmd.split(":", 1)[1].strip()
                self.reply("250 ok")
            elif verb == "RCPT":
                rcpt.append(cmd.split(":", 1)[1].strip())
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                lines = []
                while True:
                    l = self.rfile.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b".."):
                        l = l[1:]
                    lines.append(l.decode("utf-8", "replace"))
                msg = Parser().parsestr("".join(lines).replace("\r\n", "\n"))
                record({"from": mail_from, "rcpt": rcpt, "subject": msg["Subject"],
                        "headers": dict(msg.items()), "body": msg.get_payload()})
                mail_from, rcpt = None, []
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 unknown command")


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if MODE == "notify":
    import os
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(PORTFILE + ".tmp")
    os.rename(PORTFILE + ".tmp", PORTFILE)
    while True:
        data = sock.recv(65536).decode("utf-8", "replace")
        record({"fields": data.split("\n")})
if MODE == "http":
    srv = ThreadingHTTPServer(("127.0.0.1", 0), HTTPHandler)
else:
    srv = SMTPServer(("127.0.0.1", 0), SMTPHandler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
import os
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
