#!/usr/bin/env python3
"""A local stand-in for the Lambda Runtime API, for wsgate's tests.

Hands out the given event files one per GET /2018-06-01/runtime/invocation/next (with the
Lambda-Runtime-* headers), records what comes back to .../{id}/response and .../{id}/error, and
answers 410 to `next` once the events are used up (a real Runtime API would block instead).
GET /_control/results returns {"responses": {id: body}, "errors": {id: {"body", "type"}}}.
Prints "PORT <n>" on stdout once listening on 127.0.0.1.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
EVENTS = []
RESPONSES = {}
ERRORS = {}
PREFIX = "/2018-06-01/runtime/invocation/"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_control/results":
            with LOCK:
                return self._reply(200, json.dumps({"responses": RESPONSES, "errors": ERRORS}).encode())
        if self.path != PREFIX + "next":
            return self._reply(404)
        with LOCK:
            if not EVENTS:
                return self._reply(410, b'{"message":"no more events"}')
            n, body = EVENTS.pop(0)
        headers = [("Lambda-Runtime-Aws-Request-Id", f"req-{n}"),
                   ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000)),
                   ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:ws"),
                   ("Lambda-Runtime-Trace-Id", f"Root=1-00000000-{n:024d};Sampled=0"),
                   ("Content-Type", "application/json")]
        return self._reply(200, body, headers)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
        if not self.path.startswith(PREFIX):
            return self._reply(404)
        request_id, _, what = self.path[len(PREFIX):].partition("/")
        with LOCK:
            if what == "response":
                RESPONSES[request_id] = body
            elif what == "error":
                ERRORS[request_id] = {"body": body, "type": self.headers.get("Lambda-Runtime-Function-Error-Type", "")}
            else:
                return self._reply(404)
        return self._reply(202, b'{"status":"OK"}')


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def main():
    for n, path in enumerate(sys.argv[1:]):
        with open(path, "rb") as f:
            EVENTS.append((n, f.read()))
    server = Server(("127.0.0.1", 0), Handler)
    parent = os.getppid()

    def watch_parent():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
