#!/usr/bin/env python3
"""End-to-end checks of examples/realtime_server with independent Python WebSocket peers.

Run by tests/e2e/test_realtime_server.cpp, which starts the server on a free port:
    realtime_server_e2e.py --port N --admin-key K [--session-secret S --public-secret P]
Exits 0 when every case passed; prints one line per case.
Needs Debian's python3-websockets (and python3-jwt for the signed-token cases).
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request

import websockets

TIMEOUT = 5.0


def http(port, method, path, body=None, headers=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def public_token(port, device_id=None):
    status, body = http(port, "POST", "/public/token", {"deviceId": device_id} if device_id else {})
    assert status == 200, (status, body)
    j = json.loads(body)
    assert j["success"] is True and j["token"] and "publicToken" not in j, j
    assert "read_leaderboard" in j["permissions"], j
    return j["token"]


def ws_url(port, token=None):
    return f"ws://127.0.0.1:{port}/ws" + (f"?token={token}" if token is not None else "")


async def recv_json(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("expected frame did not arrive")
        msg = await recv_json(ws, left)
        if pred(msg):
            return msg


async def expect_denied(port, token, status):
    try:
        async with websockets.connect(ws_url(port, token), open_timeout=TIMEOUT):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == status, f"expected HTTP {status}, got {e.status_code}"
        return
    raise AssertionError("the upgrade was accepted")


async def publish(port, admin_key, topic, type_="activity_event", data=None, fields=None):
    body = {"topic": topic, "type": type_, "data": data or {}}
    if fields:
        body["fields"] = fields
    status, text = await asyncio.to_thread(http, port, "POST", "/publish", body, {"X-Admin-Key": admin_key})
    assert status == 200, (status, text)
    return json.loads(text)


async def healthz(port):
    status, text = await asyncio.to_thread(http, port, "GET", "/healthz")
    assert status == 200
    return json.loads(text)


# --- cases -------------------------------------------------------------------------------------

async def case_denied_without_token(a):
    await expect_denied(a.port, None, 401)
    await expect_denied(a.port, "", 401)


async def case_denied_bad_token(a):
    await expect_denied(a.port, "not-a-token", 401)
    await expect_denied(a.port, "a" * 4000, 401)


async def case_http_endpoints(a):
    status, _ = http(a.port, "POST", "/publish", {"topic": "events:x"})
    assert status == 401, status  # no admin key
    status, _ = http(a.port, "POST", "/publish", {"topic": "events:x"}, {"Authorization": "Bearer wrong"})
    assert status == 401, status
    status, _ = http(a.port, "POST", "/publish", b"{oops", {"X-Admin-Key": a.admin_key})
    assert status == 400, status
    status, text = http(a.port, "GET", "/metrics")
    assert status == 200 and "wsgate_connects_total" in text, text[:200]
    status, _ = http(a.port, "POST", "/public/token", b"[1,2]")
    assert status == 400, status
    status, _ = http(a.port, "GET", "/../../etc/passwd")
    assert status == 404, status
    # The recent feed answers only a token, and only with what that token may read.
    status, _ = http(a.port, "GET", "/public/recent")
    assert status == 401, status
    status, text = http(a.port, "GET", "/public/recent", None, {"Authorization": "Bearer " + public_token(a.port)})
    assert status == 200 and isinstance(json.loads(text)["events"], list), (status, text)
    # a wrong JSON type is the client's error, never a 500
    for bad in ({"topic": "events:x", "type": 5}, {"topic": "events:x", "fields": [1]}, {"topic": 7}):
        status, _ = http(a.port, "POST", "/publish", bad, {"X-Admin-Key": a.admin_key})
        assert status == 400, (bad, status)
    status, body = http(a.port, "HEAD", "/healthz")
    assert status == 200 and body == "", (status, body)
    status, _ = http(a.port, "GET", "/.")
    assert status == 404, status
    status, text = http(a.port, "GET", "/metrics")
    assert "wsgate_accept_errors_total" in text and "wsgate_upgrades_refused_total" in text, text[-400:]


async def case_ping_pong(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        msg = await recv_json(ws)
        assert msg["type"] == "pong" and "timestamp" in msg, msg
        pong = await asyncio.wait_for(ws.ping(b"x"), TIMEOUT)  # WebSocket-level ping frame
        await asyncio.wait_for(pong, TIMEOUT)


async def case_token_in_subprotocol(a):
    token = public_token(a.port)
    async with websockets.connect(ws_url(a.port), subprotocols=["wsgate", token], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "wsgate", ws.subprotocol
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
    # a bare token names no protocol the server could echo: refused, not half-accepted
    try:
        async with websockets.connect(ws_url(a.port), subprotocols=[token], open_timeout=TIMEOUT):
            pass
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == 400, e.status_code
    else:
        raise AssertionError("a bare-token subprotocol was accepted")


async def case_fan_out(a, n=40):
    topic = "events:fanout"
    peers = [await websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) for _ in range(n)]
    try:
        for ws in peers:
            await ws.send(json.dumps({"type": "subscribe", "topic": topic}))
            ack = await recv_json(ws)
            assert ack["type"] == "ack", ack
        rep = await publish(a.port, a.admin_key, topic, data={"step": 1}, fields={"leaderboard": [{"name": "a", "score": 3}]})
        assert rep["delivered"] == n, rep
        got = await asyncio.gather(*(recv_until(ws, lambda m: m.get("type") == "activity_event") for ws in peers))
        assert all(m["id"] == rep["id"] and m["data"] == {"step": 1} and m["topic"] == topic for m in got), got[0]
        assert got[0]["leaderboard"][0]["score"] == 3
    finally:
        await asyncio.gather(*(ws.close() for ws in peers))


async def case_public_token_reads_not_publishes(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topic": "leaderboard:7"}))
        assert (await recv_json(ws))["type"] == "ack"
        await ws.send(json.dumps({"type": "publish", "topic": "leaderboard:7", "data": {"cheat": True}}))
        err = await recv_json(ws)
        assert err["type"] == "error" and err["status"] == 403, err
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"  # still connected


async def case_vanishing_client(a):
    topic = "events:vanish"
    base = (await healthz(a.port))["connections"]
    stay = await websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT)
    gone = await websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT)
    for ws in (stay, gone):
        await ws.send(json.dumps({"type": "subscribe", "topic": topic}))
        await recv_json(ws)
    assert (await healthz(a.port))["connections"] == base + 2
    gone.transport.abort()  # TCP reset, no close frame
    deadline = time.monotonic() + 10
    while (await healthz(a.port))["connections"] != base + 1:
        assert time.monotonic() < deadline, "vanished connection was not cleaned up"
        await asyncio.sleep(0.05)
    rep = await publish(a.port, a.admin_key, topic, data={"after": "vanish"})
    assert rep["targets"] == 1 and rep["delivered"] == 1, rep
    msg = await recv_until(stay, lambda m: m.get("type") == "activity_event")
    assert msg["data"] == {"after": "vanish"}
    await stay.close()


async def case_rate_limit(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        for _ in range(a.burst * 3):
            await ws.send(json.dumps({"type": "ping"}))
        limited = 0
        for _ in range(a.burst * 3):
            m = await recv_json(ws)
            if m["type"] == "error" and m["status"] == 429:
                limited += 1
        assert limited > 0, "no message was rate limited"
        await asyncio.sleep(1.0)  # the bucket refills; the connection is still usable
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


async def case_oversize_frame(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as other:
        async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT, max_size=None) as ws:
            await ws.send(json.dumps({"type": "x", "pad": "y" * (a.max_message_bytes + 10)}))
            try:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
                raise AssertionError("no close after an oversize frame")
            except websockets.exceptions.ConnectionClosed as e:
                assert e.rcvd is not None and e.rcvd.code == 1009, e
        await other.send(json.dumps({"type": "ping"}))
        assert (await recv_json(other))["type"] == "pong"


async def case_malformed_json(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        for bad in ["{not json", "[1,2,3]", "\"str\"", json.dumps({"no_type": 1})]:
            await ws.send(bad)
            m = await recv_json(ws)
            assert m["type"] in ("error", "ack"), m
            if bad == "{not json":
                assert m["type"] == "error" and m["status"] == 400, m
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"


async def case_binary_and_invalid_utf8(a):
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        await ws.send(b'{"type":"ping"}')  # binary frame: answered with an error, connection kept
        m = await recv_json(ws)
        assert m["type"] == "error" and m["status"] == 400, m
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
    async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
        # A text frame that is not UTF-8 fails the connection with 1007 (RFC 6455 §8.1).
        frame = websockets.frames.Frame(websockets.frames.Opcode.TEXT, b'{"x":"\xff\xfe"}')
        await ws.write_frame(True, frame.opcode, frame.data)
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            raise AssertionError("invalid UTF-8 was accepted")
        except websockets.exceptions.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1007, e


# --- signed-token cases (server configured with the session + public TokenAuthorizer) ----------

def jwt_token(secret, claims):
    import jwt  # python3-jwt
    return jwt.encode(claims, secret, algorithm="HS256")


async def case_jwt_tokens(a):
    now = int(time.time())
    user = jwt_token(a.session_secret, {"sub": "user-1", "sid": "s-1", "nickname": "ana",
                                         "permissions": ["publish", "read_events"], "iat": now, "exp": now + 600})
    board = public_token(a.port, "board-7")
    async with websockets.connect(ws_url(a.port, user), open_timeout=TIMEOUT) as ws, \
            websockets.connect(ws_url(a.port, board), open_timeout=TIMEOUT) as reader:
        for c in (ws, reader):
            await c.send(json.dumps({"type": "subscribe", "topic": "events:jwt"}))
            assert (await recv_json(c))["type"] == "ack"
        await ws.send(json.dumps({"type": "publish", "topic": "events:jwt", "data": {"move": 1}}))
        got = await recv_until(reader, lambda m: m.get("topic") == "events:jwt" and m.get("type") != "ack")
        assert got["data"] == {"move": 1}, got
    # the same session token offered as a subprotocol (browsers cannot set headers)
    async with websockets.connect(ws_url(a.port), subprotocols=["bearer", user], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "bearer", ws.subprotocol
    expired = jwt_token(a.session_secret, {"sub": "user-1", "iat": now - 7200, "exp": now - 3600})
    await expect_denied(a.port, expired, 401)
    expired_public = jwt_token(a.public_secret, {"kind": "public", "deviceId": "d", "permissions": ["read_events"],
                                                 "iat": now - 7200, "exp": now - 3600})
    await expect_denied(a.port, expired_public, 401)
    forged = jwt_token("not-the-secret-" + a.session_secret, {"sub": "user-1", "exp": now + 600})
    await expect_denied(a.port, forged, 401)
    # a public token signed with the session key is not a session (kind=public) nor a valid public token
    crossed = jwt_token(a.session_secret, {"kind": "public", "deviceId": "d", "permissions": ["*"], "exp": now + 600})
    await expect_denied(a.port, crossed, 401)
    unsigned = jwt_token(a.session_secret, {"sub": "x", "exp": now + 600}).split(".")
    await expect_denied(a.port, ".".join(unsigned[:2]) + ".", 401)


CASES = [
    case_denied_without_token, case_denied_bad_token, case_http_endpoints, case_ping_pong,
    case_token_in_subprotocol, case_fan_out, case_public_token_reads_not_publishes,
    case_vanishing_client, case_rate_limit, case_oversize_frame, case_malformed_json,
    case_binary_and_invalid_utf8,
]


async def run_cases(cases, a):
    """Runs every case (60 s each), prints one line per case and a total; the exit code."""
    failures = []
    for case in cases:
        try:
            await asyncio.wait_for(case(a), 60)
            print(f"ok   {case.__name__}")
        except BaseException as e:  # noqa: BLE001 - report every failure, keep going
            failures.append(case.__name__)
            print(f"FAIL {case.__name__}: {type(e).__name__}: {e}")
    print(f"{len(cases) - len(failures)}/{len(cases)} cases passed")
    return 1 if failures else 0


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--session-secret", default="")
    p.add_argument("--public-secret", default="")
    p.add_argument("--burst", type=int, default=40)
    p.add_argument("--max-message-bytes", type=int, default=65536)
    a = p.parse_args()
    auth = (await healthz(a.port)).get("auth")
    cases = list(CASES)
    if auth == "jwt":
        cases.append(case_jwt_tokens)
    else:
        print(f"SKIP case_jwt_tokens: server auth is '{auth}', not 'jwt'")
    return await run_cases(cases, a)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
