#!/usr/bin/env python3
"""A local stand-in for API Gateway's @connections management API, for wsgate's tests.

Every request must carry a valid AWS Signature Version 4 (checked here with hmac/hashlib from the
standard library, independently of wsgate's signer). POST records the body, DELETE forgets the
connection, GET answers its metadata; unknown ids get 410 Gone. Some id prefixes trigger other
answers (after an optional --delay-ms, standing in for the round trip): "forbidden-" 403, "big-" 413, "throttle-" 429 once then 200, "flaky-" 500 once then 200.

Control endpoints (unsigned, under /_control/): POST connections (JSON list of known ids),
GET posts ({id: [bodies]}), GET stats.

Prints "PORT <n>" on stdout once listening on 127.0.0.1.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE_LOCK = threading.Lock()
KNOWN = set()
POSTS = {}
DELETED = []
STATS = {"requests": 0, "bad_signatures": 0, "posts": 0, "gone": 0, "deletes": 0, "gets": 0}
FAILED_ONCE = set()
ARGS = None


def _sign(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _trimall(value):
    return " ".join(value.split())


def canonical_uri(raw_path):
    segments = [s for s in raw_path.split("/") if s not in ("", ".")]
    out = []
    for s in segments:
        if s == "..":
            if out:
                out.pop()
        else:
            out.append(s)
    uri = "/" + "/".join(urllib.parse.quote(s, safe="-_.~") for s in out)
    if raw_path.endswith("/") and out:
        uri += "/"
    return uri


def canonical_query(raw_query):
    pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
    enc = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in enc)


def verify(handler, body):
    auth = handler.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "missing Authorization"
    fields = {}
    for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    try:
        access_key, date, region, service, terminator = fields["Credential"].split("/")
    except (KeyError, ValueError):
        return "bad Credential"
    if access_key != ARGS.access_key or region != ARGS.region or service != ARGS.service or terminator != "aws4_request":
        return "wrong credential scope"
    amz_date = handler.headers.get("X-Amz-Date", "")
    if amz_date[:8] != date:
        return "X-Amz-Date does not match the scope"
    signed = fields.get("SignedHeaders", "").split(";")
    if "host" not in signed:
        return "host not signed"
    if ARGS.session_token and (handler.headers.get("X-Amz-Security-Token") != ARGS.session_token
                               or "x-amz-security-token" not in signed):
        return "session token missing or unsigned"
    raw_path, _, raw_query = handler.path.partition("?")
    lines = []
    for name in signed:
        values = handler.headers.get_all(name) or []
        if not values:
            return f"signed header {name} missing"
        lines.append(name + ":" + ",".join(_trimall(v) for v in values) + "\n")
    creq = "\n".join([handler.command, canonical_uri(raw_path), canonical_query(raw_query), "".join(lines),
                      ";".join(signed), hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    key = _sign(_sign(_sign(_sign(("AWS4" + ARGS.secret).encode("utf-8"), date), region), service), "aws4_request")
    expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "signature mismatch"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, payload=b""):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _control(self, body):
        what = self.path[len("/_control/"):]
        with STATE_LOCK:
            if self.command == "POST" and what == "connections":
                KNOWN.update(json.loads(body.decode("utf-8")))
                return self._reply(200, {"known": len(KNOWN)})
            if self.command == "GET" and what == "posts":
                return self._reply(200, POSTS)
            if self.command == "GET" and what == "stats":
                return self._reply(200, dict(STATS, deleted=DELETED, known=len(KNOWN)))
        return self._reply(404, {"message": "no such control"})

    def _handle(self):
        body = self._body()
        if self.path.startswith("/_control/"):
            return self._control(body)
        with STATE_LOCK:
            STATS["requests"] += 1
        if ARGS.delay_ms > 0:  # stands in for the network round trip to API Gateway
            time.sleep(ARGS.delay_ms / 1000.0)
        problem = verify(self, body)
        if problem:
            with STATE_LOCK:
                STATS["bad_signatures"] += 1
            return self._reply(403, {"message": problem})
        raw_path = self.path.partition("?")[0]
        prefix = ("/" + ARGS.stage if ARGS.stage else "") + "/@connections/"
        if not raw_path.startswith(prefix):
            return self._reply(404, {"message": "not found"})
        conn = urllib.parse.unquote(raw_path[len(prefix):])
        for marker, status in (("throttle-", 429), ("flaky-", 500)):
            if conn.startswith(marker):
                with STATE_LOCK:
                    first = (self.command, conn) not in FAILED_ONCE
                    FAILED_ONCE.add((self.command, conn))
                if first:
                    return self._reply(status, {"message": "try again"})
        if conn.startswith("forbidden-"):
            return self._reply(403, {"message": "Forbidden"})
        if conn.startswith("big-") and self.command == "POST":
            return self._reply(413, {"message": "Payload Too Large"})
        with STATE_LOCK:
            known = conn in KNOWN or conn.startswith(("throttle-", "flaky-"))
            if not known:
                STATS["gone"] += 1
            elif self.command == "POST":
                STATS["posts"] += 1
                POSTS.setdefault(conn, []).append(body.decode("utf-8"))
            elif self.command == "DELETE":
                STATS["deletes"] += 1
                KNOWN.discard(conn)
                DELETED.append(conn)
            else:
                STATS["gets"] += 1
        if not known:
            return self._reply(410, {"message": "Gone"})
        if self.command == "GET":
            return self._reply(200, {"connectedAt": "2026-01-01T00:00:00.000Z", "lastActiveAt": "2026-01-01T00:01:00.000Z",
                                     "identity": {"sourceIp": "203.0.113.7", "userAgent": "test-agent"}})
        return self._reply(204 if self.command == "DELETE" else 200)

    do_GET = do_POST = do_DELETE = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: a parallel fan-out opens many connections at once

    def handle_error(self, request, client_address):
        pass  # a client that hung up is not the test's business


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--access-key", default="AKIDEXAMPLE")
    p.add_argument("--secret", required=True)
    p.add_argument("--session-token", default="")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--service", default="execute-api")
    p.add_argument("--stage", default="prod")
    p.add_argument("--delay-ms", type=float, default=0.0)
    ARGS = p.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    parent = os.getppid()

    def watch_parent():
        # Never outlive the test that started us, even if it crashed before stopping us.
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
