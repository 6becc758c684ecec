#!/usr/bin/python3
"""WSGATE_HANDLER of examples/aws_lambda: each mode serves its own kind of event, answers any
other kind with an error naming the right function, and an unknown mode stops at start.
WSGATE_JWT_SECRET turns the authorizer into a JWT check of ?token=.

usage: check_modes.py <aws_lambda_example binary> <events dir>
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time

BINARY, EVENTS = sys.argv[1], sys.argv[2]
KIND = {  # the sample events and the function each belongs to
    "00_authorizer.json": "authorizer",
    "01_connect.json": "websocket",
    "02_subscribe.json": "websocket",
    "03_ping.json": "websocket",
    "04_metrics_stream.json": "broadcast",
    "05_broadcast.json": "broadcast",
    "06_disconnect.json": "websocket",
}
MODES = ["websocket", "authorizer", "broadcast"]
failures = []


def run(args, mode=None, env_extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("WSGATE_HANDLER", "WEBSOCKET_API_ENDPOINT", "WSGATE_STORE", "WSGATE_JWT_SECRET",
                        "AWS_LAMBDA_RUNTIME_API")}
    if mode is not None:
        env["WSGATE_HANDLER"] = mode
    env.update(env_extra or {})
    p = subprocess.run([BINARY] + args, env=env, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def expect(cond, what, out=""):
    if not cond:
        failures.append(what + ("\n" + out if out else ""))


def event(name):
    return os.path.join(EVENTS, name)


# --list-handlers names exactly the modes.
rc, out, _ = run(["--list-handlers"])
expect(rc == 0 and [l.split("\t")[0] for l in out.splitlines()] == MODES, "--list-handlers", out)

# Every sample event under every mode: its own kind is served, another kind is refused.
for mode in MODES:
    for name, kind in KIND.items():
        rc, out, err = run([event(name)], mode)
        if kind == mode:
            expect(rc == 0 and "-> error" not in out, f"{mode} should serve {name}", out + err)
        else:
            expect(rc == 1, f"{mode} should refuse {name} with exit 1 (got {rc})", out + err)
            expect(f"-> error: WSGATE_HANDLER={mode} serves" in out, f"{mode}/{name}: error names the mode", out)
            expect(f"WSGATE_HANDLER is {kind}" in out, f"{mode}/{name}: error names the right function", out)

# Each function's own sequence works end to end.
rc, out, err = run([event(n) for n in sorted(KIND) if KIND[n] == "websocket"], "websocket")
expect(rc == 0 and '"type":"pong"' in out and "connections left: 0" in out, "websocket sequence", out + err)
rc, out, err = run([event("00_authorizer.json")], "authorizer")
expect(rc == 0 and '"Effect":"Allow"' in out and "connections left" not in out,
       "authorizer allows (and builds no store)", out + err)
rc, out, err = run([event("01_connect.json"), event("02_subscribe.json"), event("05_broadcast.json")], None)
expect(rc == 0 and '"delivered":1' in out, "unset mode dispatches by shape", out + err)
rc, out, err = run([event("00_authorizer.json"), event("04_metrics_stream.json")], "")
expect(rc == 0 and '"Effect":"Allow"' in out and '"batchItemFailures":[]' in out,
       "empty WSGATE_HANDLER dispatches by shape", out + err)

# A refused event does not stop the events after it.
rc, out, err = run([event("05_broadcast.json"), event("00_authorizer.json")], "authorizer")
expect(rc == 1 and out.index("-> error") < out.index('"Effect":"Allow"'), "refusal then the next event", out + err)

# An unknown mode, or a bad store spec, stops at start with a clear message.
rc, out, err = run([event("01_connect.json")], "websockets")
expect(rc == 2 and "unknown WSGATE_HANDLER 'websockets'" in err and "websocket, authorizer, broadcast" in err
       and "event " not in out, "unknown mode", out + err)
rc, out, err = run(["--store", "bogus://x", event("01_connect.json")], "websocket")
expect(rc == 1 and "error: store 'bogus://x'" in err, "bad --store", out + err)
rc, out, err = run([event("01_connect.json")], "websocket", {"WSGATE_STORE": "bogus://y"})
expect(rc == 1 and "error: store 'bogus://y'" in err, "bad WSGATE_STORE", out + err)
rc, out, err = run(["--store", "bogus://x", event("00_authorizer.json")], "authorizer")
expect(rc == 0 and '"Effect":"Allow"' in out, "the authorizer opens no store", out + err)


# WSGATE_JWT_SECRET: HS256 session tokens, read from ?token= only.
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret):
    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())


SECRET = "a-secret-of-at-least-32-bytes-for-hs256"
rc, out, err = run([event("00_authorizer.json")], "authorizer", {"WSGATE_JWT_SECRET": "short"})
expect(rc == 1 and "HS256 secret is 5 bytes" in err, "a short WSGATE_JWT_SECRET stops at start", out + err)

with open(event("00_authorizer.json")) as f:
    base = json.load(f)
with tempfile.TemporaryDirectory() as tmp:
    def authorize(token=None, header=None, secret=SECRET):
        e = json.loads(json.dumps(base))
        e["queryStringParameters"] = {"token": token} if token is not None else {}
        e["multiValueQueryStringParameters"] = {"token": [token]} if token is not None else {}
        if header:
            e["headers"]["Authorization"] = "Bearer " + header
        path = os.path.join(tmp, "authorizer.json")
        with open(path, "w") as f:
            json.dump(e, f)
        rc, out, err = run([path], "authorizer", {"WSGATE_JWT_SECRET": secret})
        line = next((l for l in out.splitlines() if l.startswith("  -> ")), "  -> {}")
        return rc, json.loads(line[5:]) if line[5:].startswith("{") else {}, out + err

    good = hs256({"sub": "u-1", "exp": int(time.time()) + 3600, "permissions": ["read_leaderboard"]}, SECRET)
    rc, resp, out = authorize(good)
    effect = resp.get("policyDocument", {}).get("Statement", [{}])[0].get("Effect")
    expect(rc == 0 and effect == "Allow" and resp.get("context", {}).get("userId") == "u-1", "JWT in ?token= allowed", out)
    for label, args in [("the sample's opaque token", {"token": "good-token"}),
                        ("a token signed with another secret", {"token": hs256({"sub": "u-1"}, "other")}),
                        ("an expired token", {"token": hs256({"sub": "u-1", "exp": int(time.time()) - 60}, SECRET)}),
                        ("no token", {}),
                        ("a token only in Authorization (not the identity source)", {"header": good})]:
        rc, resp, out = authorize(**args)
        effect = resp.get("policyDocument", {}).get("Statement", [{}])[0].get("Effect")
        expect(effect == "Deny", f"JWT authorizer denies {label}", out)

if failures:
    print("FAILED:\n- " + "\n- ".join(failures))
    sys.exit(1)
print("all handler-mode checks passed")
