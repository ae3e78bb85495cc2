#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An EMULATOR of the Kubernetes API server's core/v1 Secrets API, for the
kubernetes target's tests (tests/integration/deploy-kubernetes.sh). It is
not Kubernetes: it follows the API reference closely enough for a client
(authentication, authorization, Status objects, server-side apply with
managedFields, resourceVersion, validation) and nothing more.

  HTTPS only (certificate and key from the test), HTTP/1.1 keep-alive.
  Authentication: "Authorization: Bearer <token>" from the config, or a
    client certificate signed by --client-ca (the user is its CN). Neither,
    or an unknown token: 401 Unauthorized.
  Authorization: each token/user lists the namespaces it may use ("*" for
    all); anything else is 403 Forbidden with the apiserver's message.
  Namespaces: only those in the config exist (404 NotFound otherwise).
  Routes: GET /version (no auth);
    GET|POST /api/v1/namespaces/{ns}/secrets
    GET|PUT|PATCH|DELETE /api/v1/namespaces/{ns}/secrets/{name}
  PATCH content types: application/apply-patch+yaml (server-side apply:
    fieldManager required, create when absent, managedFields per manager,
    409 on fields owned by another manager with a different value unless
    force=true, fields the manager stops applying are removed),
    application/merge-patch+json and application/strategic-merge-patch+json
    (both as a JSON merge patch); anything else is 415. Apply bodies must be
    JSON (the JSON subset of YAML) unless PyYAML is installed.
  PUT: a metadata.resourceVersion other than the current one is 409.
  Validation (422 Invalid with causes): names, data keys, base64 values,
    type kubernetes.io/tls needs tls.crt and tls.key, type is immutable,
    label keys and values.
  resourceVersion is a global counter bumped on every change.
  Every request is appended to --log as one JSON line (method, path, query,
  content type, user, status) - never a body or a credential.

Config (--config, JSON):
  {"namespaces": ["default", "web"],
   "tokens": {"TOKEN": {"user": "system:serviceaccount:web:certherd",
                        "namespaces": ["web"]}},
   "client_users": {"CN": {"namespaces": "*"}}}
The port actually bound (--port 0: any free one) is written to --port-file.
"""
import argparse
import base64
import binascii
import copy
import datetime
import http.server
import json
import os
import re
import ssl
import sys
import threading
import urllib.parse
import uuid

LOCK = threading.Lock()
STATE = {"rv": 1000, "secrets": {}}  # (ns, name) -> {"obj": ..., "managers": [...]}
CONFIG = {}
LOG = None

APPLY = "application/apply-patch+yaml"
MERGE = ("application/merge-patch+json", "application/strategic-merge-patch+json")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
STRICT_B64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
# Fields that identify or describe the object rather than hold its content.
UNTRACKED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
             ("metadata", "resourceVersion"), ("metadata", "uid"),
             ("metadata", "managedFields"), ("metadata", "creationTimestamp"),
             ("metadata", "generation")}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def subdomain_ok(s):
    return 0 < len(s) <= 253 and all(DNS_LABEL.match(p) and len(p) <= 63 for p in s.split("."))


def qualified_name_ok(k):
    prefix, _, name = k.rpartition("/")
    if prefix and not subdomain_ok(prefix):
        return False
    return 0 < len(name) <= 63 and bool(NAME_PART.match(name))


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def invalid(name, causes):
    parts = ["%s: %s" % (c["field"], c["message"]) for c in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", 'Secret "%s" is invalid: %s' % (name, text),
                    {"name": name, "kind": "Secret", "causes": causes})


def cause(reason, field, message):
    return {"reason": reason, "field": field, "message": message}


def validate(obj, old):
    name = obj["metadata"]["name"]
    causes = []
    if not subdomain_ok(name):
        causes.append(cause("FieldValueInvalid", "metadata.name",
                            'Invalid value: "%s": a lowercase RFC 1123 subdomain must consist '
                            "of lower case alphanumeric characters, '-' or '.'" % name))
    for what in ("labels", "annotations"):
        for k, v in (obj["metadata"].get(what) or {}).items():
            if not qualified_name_ok(k):
                causes.append(cause("FieldValueInvalid", "metadata.%s" % what,
                                    'Invalid value: "%s": name part must consist of '
                                    "alphanumeric characters, '-', '_' or '.'" % k))
            if what == "labels" and not isinstance(v, str):
                causes.append(cause("FieldValueInvalid", "metadata.labels",
                                    "Invalid value: must be a string"))
            elif what == "labels" and v and not (len(v) <= 63 and NAME_PART.match(v)):
                causes.append(cause("FieldValueInvalid", "metadata.labels",
                                    'Invalid value: "%s": a valid label must be an empty string '
                                    "or consist of alphanumeric characters, '-', '_' or '.'" % v))
    data = obj.get("data") or {}
    for k, v in data.items():
        if not DATA_KEY.match(k):
            causes.append(cause("FieldValueInvalid", "data[%s]" % k,
                                "Invalid value: a valid config key must consist of "
                                "alphanumeric characters, '-', '_' or '.'"))
        if not isinstance(v, str) or not STRICT_B64.match(v):
            causes.append(cause("FieldValueInvalid", "data[%s]" % k,
                                "Invalid value: illegal base64 data"))
    typ = obj.get("type") or "Opaque"
    if typ == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                causes.append(cause("FieldValueRequired", "data[%s]" % k, "Required value"))
    if old is not None and (old.get("type") or "Opaque") != typ:
        causes.append(cause("FieldValueInvalid", "type",
                            'Invalid value: "%s": field is immutable' % typ))
    if causes:
        raise invalid(name, causes)


def paths(obj, prefix=()):
    """Leaf paths of the fields an object sets (maps are walked, the rest is atomic)."""
    out = {}
    for k, v in obj.items():
        p = prefix + (k,)
        if p in UNTRACKED or p[:2] == ("metadata", "managedFields"):
            continue
        if isinstance(v, dict) and v:
            out.update(paths(v, p))
        else:
            out[p] = v
    return out


def get_path(obj, p):
    for k in p:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def set_path(obj, p, v):
    for k in p[:-1]:
        obj = obj.setdefault(k, {})
    obj[p[-1]] = copy.deepcopy(v)


def del_path(obj, p):
    chain = [obj]
    for k in p[:-1]:
        if k not in chain[-1]:
            return
        chain.append(chain[-1][k])
    chain[-1].pop(p[-1], None)
    for i in range(len(p) - 1, 0, -1):  # drop maps left empty
        if chain[i] == {}:
            chain[i - 1].pop(p[i - 1], None)


def fields_v1(ps):
    root = {}
    for p in sorted(ps):
        node = root
        for k in p:
            node = node.setdefault("f:" + k, {})
    return root


def managed_fields(managers):
    return [{"manager": m["manager"], "operation": m["operation"], "apiVersion": "v1",
             "time": m["time"], "fieldsType": "FieldsV1", "fieldsV1": fields_v1(m["fields"])}
            for m in managers if m["fields"]]


def render(entry):
    obj = copy.deepcopy(entry["obj"])
    obj["metadata"]["managedFields"] = managed_fields(entry["managers"])
    return obj


def next_rv():
    STATE["rv"] += 1
    return str(STATE["rv"])


def normalise(body, ns, name):
    """Common checks of a submitted object; returns it without server-owned fields."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    if body.get("apiVersion") != "v1" or body.get("kind") != "Secret":
        raise ApiError(400, "BadRequest",
                       "the body must be a v1 Secret (apiVersion: v1, kind: Secret)")
    meta = body.setdefault("metadata", {})
    if name is not None:
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest",
                           "the name of the object (%s) does not match the name on the URL (%s)"
                           % (meta.get("name"), name))
        meta["name"] = name
    if meta.get("namespace", ns) != ns:
        raise ApiError(400, "BadRequest",
                       "the namespace of the provided object does not match the namespace "
                       "sent on the request")
    meta["namespace"] = ns
    string_data = body.pop("stringData", None) or {}
    for k, v in string_data.items():
        body.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
    return body


def find_manager(entry, manager, operation):
    for m in entry["managers"]:
        if m["manager"] == manager and m["operation"] == operation:
            return m
    m = {"manager": manager, "operation": operation, "fields": set(), "time": now()}
    entry["managers"].append(m)
    return m


def apply(ns, name, body, manager, force, dry_run=False):
    body = normalise(body, ns, name)
    applied = paths(body)
    key = (ns, name)
    entry = STATE["secrets"].get(key)
    created = entry is None
    if created:
        entry = {"obj": {"metadata": {"name": name, "namespace": ns}}, "managers": []}
    old = entry["obj"]
    conflicts = []
    for m in entry["managers"]:
        if m["manager"] == manager and m["operation"] == "Apply":
            continue
        for p in m["fields"] & set(applied):
            if get_path(old, p) != applied[p]:
                conflicts.append((p, m["manager"]))
    if conflicts and not force:
        causes = [{"reason": "FieldManagerConflict", "field": "." + ".".join(p),
                   "message": 'conflict with "%s" using v1' % who} for p, who in conflicts]
        raise ApiError(409, "Conflict",
                       "Apply failed with %d conflict%s: %s" % (
                           len(conflicts), "" if len(conflicts) == 1 else "s",
                           "; ".join("%s: %s" % (c["message"], c["field"]) for c in causes)),
                       {"causes": causes})
    new = copy.deepcopy(old)
    managers = copy.deepcopy(entry["managers"])
    tmp = {"obj": new, "managers": managers}
    mine = find_manager(tmp, manager, "Apply")
    for p, who in conflicts:  # force: the applier takes the field over
        for m in managers:
            if m["manager"] == who:
                m["fields"].discard(p)
    for p in mine["fields"] - set(applied):
        if not any(p in m["fields"] for m in managers if m is not mine):
            del_path(new, p)
    for p, v in applied.items():
        set_path(new, p, v)
    mine["fields"] = set(applied)
    validate(new, None if created else old)
    changed = created or new != old or [(m["manager"], m["fields"]) for m in managers] != \
        [(m["manager"], m["fields"]) for m in entry["managers"]]
    if changed:
        mine["time"] = now()
        new["apiVersion"], new["kind"] = "v1", "Secret"
        meta = new["metadata"]
        # A dry run (?dryRun=All) is validated and answered, never stored.
        meta["resourceVersion"] = next_rv() if not dry_run else \
            old["metadata"].get("resourceVersion", "0")
        if created:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
        entry = {"obj": new, "managers": [m for m in managers if m["fields"]]}
        if not dry_run:
            STATE["secrets"][key] = entry
    return (201 if created else 200), render(entry)


def update(ns, name, new, manager, creating):
    """PUT, POST and merge patches: the manager owns what it changed."""
    key = (ns, name)
    entry = STATE["secrets"].get(key)
    old = entry["obj"] if entry else None
    validate(new, old)
    entry = entry or {"managers": []}
    oldp = paths(old) if old else {}
    changed = {p for p, v in paths(new).items() if oldp.get(p) != v}
    if old is not None and new == old:
        return 200, render(entry)
    for m in entry["managers"]:
        m["fields"] -= changed
    mine = find_manager(entry, manager, "Update")
    mine["fields"] |= changed
    mine["time"] = now()
    gone = set(oldp) - set(paths(new))
    for m in entry["managers"]:
        m["fields"] -= gone
    entry["managers"] = [m for m in entry["managers"] if m["fields"]]
    new["apiVersion"], new["kind"] = "v1", "Secret"
    meta = new["metadata"]
    meta["resourceVersion"] = next_rv()
    if creating:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
    else:
        meta["uid"] = old["metadata"]["uid"]
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
    entry["obj"] = new
    STATE["secrets"][key] = entry
    return (201 if creating else 200), render(entry)


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    target = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def parse_body(raw, ctype):
    try:
        return json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        if ctype == APPLY:
            try:
                import yaml  # noqa: PLC0415 (optional)
                return yaml.safe_load(raw)
            except ImportError:
                raise ApiError(400, "BadRequest",
                               "the emulator reads the JSON subset of YAML only") from e
            except Exception as e2:  # noqa: BLE001
                raise ApiError(400, "BadRequest", "error decoding YAML: %s" % e2) from e2
        raise ApiError(400, "BadRequest",
                       "the body of the request could not be decoded: %s" % e) from e


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-emulator"

    def log_message(self, fmt, *args):  # the JSON log below replaces it
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.code = code

    def authenticate(self):
        auth = self.headers.get("Authorization")
        if auth is not None:
            if auth.startswith("Bearer ") and auth[7:] in CONFIG.get("tokens", {}):
                t = CONFIG["tokens"][auth[7:]]
                return t.get("user", "token-user"), t.get("namespaces", [])
            raise ApiError(401, "Unauthorized", "Unauthorized")
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"),
                      None)
            if cn:
                return cn, CONFIG.get("client_users", {}).get(cn, {}).get("namespaces", [])
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def handle_any(self, method):
        self.code, self.user = 0, None
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if method == "GET" and url.path == "/version":
                self.send_json(200, {"major": "1", "minor": "30",
                                     "gitVersion": "v1.30.0-certherd-emulator"})
                return
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?", url.path)
            if not m:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            ns, name = m.group(1), m.group(2)
            verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update",
                    "PATCH": "patch", "DELETE": "delete"}[method]
            if (name is None and method not in ("GET", "POST")) or (name and method == "POST"):
                raise ApiError(405, "MethodNotAllowed",
                               "the server does not allow this method on the requested resource")
            self.user, allowed = self.authenticate()
            if allowed != "*" and ns not in allowed:
                what = 'secrets "%s"' % name if name else "secrets"
                raise ApiError(403, "Forbidden",
                               '%s is forbidden: User "%s" cannot %s resource "secrets" in API '
                               'group "" in the namespace "%s"' % (what, self.user, verb, ns),
                               {"name": name or "", "kind": "secrets"})
            with LOCK:
                if ns not in CONFIG.get("namespaces", []):
                    raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                                   {"name": ns, "kind": "namespaces"})
                self.send_json(*self.route(method, ns, name, query, ctype, raw))
        except ApiError as e:
            self.send_json(e.code, e.status())
        finally:
            if LOG:
                rec = {"time": now(), "method": method, "path": url.path,
                       "query": url.query, "content_type": ctype, "user": self.user,
                       "status": self.code,
                       "field_manager": (query.get("fieldManager") or [None])[0],
                       "force": (query.get("force") or [None])[0]}
                with LOCK:
                    LOG.write(json.dumps(rec) + "\n")
                    LOG.flush()

    def route(self, method, ns, name, query, ctype, raw):
        secrets = STATE["secrets"]
        manager = (query.get("fieldManager") or [None])[0]
        default_manager = (self.headers.get("User-Agent") or "unknown").split("/")[0]
        if method == "GET" and name is None:
            items = [render(e) for (n, _), e in sorted(secrets.items()) if n == ns]
            return 200, {"kind": "SecretList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": str(STATE["rv"])}, "items": items}
        if method == "GET":
            if (ns, name) not in secrets:
                raise ApiError(404, "NotFound", 'secrets "%s" not found' % name,
                               {"name": name, "kind": "secrets"})
            return 200, render(secrets[(ns, name)])
        if method == "DELETE":
            if secrets.pop((ns, name), None) is None:
                raise ApiError(404, "NotFound", 'secrets "%s" not found' % name,
                               {"name": name, "kind": "secrets"})
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Success", "details": {"name": name, "kind": "secrets"}}
        if method == "PATCH":
            if ctype == APPLY:
                if not manager:
                    raise ApiError(400, "BadRequest",
                                   "PATCH /apply requires fieldManager: "
                                   "fieldManager is required for apply requests")
                force = (query.get("force") or ["false"])[0] == "true"
                dry = query.get("dryRun")
                if dry and dry != ["All"]:
                    raise ApiError(400, "BadRequest",
                                   'Invalid dry run value: %s; only "All" is supported'
                                   % dry[0])
                return apply(ns, name, parse_body(raw, ctype), manager, force, bool(dry))
            if ctype not in MERGE:
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted "
                               "media types include: application/merge-patch+json, "
                               "application/strategic-merge-patch+json, "
                               "application/apply-patch+yaml")
            if "force" in query:
                raise ApiError(400, "BadRequest", "force is only supported for apply patches")
            if (ns, name) not in secrets:
                raise ApiError(404, "NotFound", 'secrets "%s" not found' % name,
                               {"name": name, "kind": "secrets"})
            new = merge_patch(secrets[(ns, name)]["obj"], parse_body(raw, ctype))
            return update(ns, name, normalise(new, ns, name), manager or default_manager, False)
        # PUT and POST take a whole object.
        if ctype not in ("application/json", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: application/json")
        body = normalise(parse_body(raw, ctype), ns, name)
        if method == "POST":
            name = body["metadata"].get("name")
            if not name:
                raise invalid("", [cause("FieldValueRequired", "metadata.name",
                                         "Required value: name or generateName is required")])
            if (ns, name) in secrets:
                raise ApiError(409, "AlreadyExists", 'secrets "%s" already exists' % name,
                               {"name": name, "kind": "secrets"})
            return update(ns, name, body, manager or default_manager, True)
        if (ns, name) not in secrets:
            raise ApiError(404, "NotFound", 'secrets "%s" not found' % name,
                           {"name": name, "kind": "secrets"})
        rv = body["metadata"].get("resourceVersion")
        current = secrets[(ns, name)]["obj"]["metadata"]["resourceVersion"]
        if rv is not None and rv != current:
            raise ApiError(409, "Conflict",
                           'Operation cannot be fulfilled on secrets "%s": the object has been '
                           "modified; please apply your changes to the latest version and try "
                           "again" % name, {"name": name, "kind": "secrets"})
        body["metadata"].pop("managedFields", None)
        return update(ns, name, body, manager or default_manager, False)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    global CONFIG, LOG
    ap = argparse.ArgumentParser(description="Kubernetes Secrets API emulator (tests only)")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log")
    a = ap.parse_args()
    with open(a.config) as f:
        CONFIG = json.load(f)
    if a.log:
        LOG = open(a.log, "a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    # The handshake happens in the connection's thread, not in accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(a.port_file + ".tmp", a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
