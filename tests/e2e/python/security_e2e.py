#!/usr/bin/env python3
"""Security checks of examples/realtime_server with independent Python peers: what a client with a
valid token (or with none) can read, forge or exhaust.

Run by tests/e2e/test_realtime_server.cpp against a demo started with --allow-anonymous:
    security_e2e.py --port=N --admin-key=K --session-secret=S --public-secret=P --max-per-address=N
Exits 0 when every case passed; prints one line per case.
Needs Debian's python3-websockets and python3-jwt.
"""
import argparse
import asyncio
import json
import os
import sys
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realtime_server_e2e import (TIMEOUT, expect_denied, healthz, http, public_token, publish,  # noqa: E402
                                 recv_json, recv_until, run_cases, ws_url)


def session_token(a, user, permissions, lifetime=600):
    import jwt  # python3-jwt
    now = int(time.time())
    return jwt.encode({"sub": user, "sid": "s-" + user, "permissions": permissions, "iat": now, "exp": now + lifetime},
                      a.session_secret, algorithm="HS256")


async def subscribe(ws, topic):
    await ws.send(json.dumps({"type": "subscribe", "topic": topic}))
    return await recv_json(ws)


async def quiesce(a):
    """Waits until the server holds no connection (earlier cases' closes have been processed)."""
    deadline = time.monotonic() + 10
    while (await healthz(a.port))["connections"] != 0:
        assert time.monotonic() < deadline, "connections of earlier cases are still open"
        await asyncio.sleep(0.05)


async def say(ws, msg):
    await ws.send(json.dumps(msg))
    return await recv_json(ws)


# --- 1. publishing is least-privilege ------------------------------------------------------------

async def case_client_cannot_forge_server_events(a):
    reader_token = public_token(a.port, "board-sec")
    async with websockets.connect(ws_url(a.port, reader_token), open_timeout=TIMEOUT) as reader, \
            websockets.connect(ws_url(a.port, session_token(a, "mallory", ["read_events"])),
                               open_timeout=TIMEOUT) as mallory, \
            websockets.connect(ws_url(a.port, session_token(a, "ana", ["publish", "read_events"])),
                               open_timeout=TIMEOUT) as ana:
        assert (await subscribe(reader, "events:sec"))["type"] == "ack"
        # A user without the rule's publish permission: 403.
        err = await say(mallory, {"type": "publish", "topic": "events:sec", "event": "bid_placed", "data": 1})
        assert err["type"] == "error" and err["status"] == 403, err
        # A topic no rule covers: nobody publishes there, whatever they hold.
        err = await say(ana, {"type": "publish", "topic": "auction:7", "event": "bid_placed"})
        assert err["type"] == "error" and err["status"] == 403, err
        # The server's own event types cannot be chosen by a client.
        for forged in ("ack", "error", "pong", "token_expiring"):
            err = await say(ana, {"type": "publish", "topic": "events:sec", "event": forged})
            assert err["type"] == "error" and err["status"] == 400, (forged, err)
        # A permitted publish reaches the reader marked with its sender ...
        ack = await say(ana, {"type": "publish", "topic": "events:sec", "event": "note", "data": {"n": 1},
                              "from": {"userId": "admin"}})
        assert ack["type"] == "ack" and ack["delivered"] == 1, ack
        got = await recv_until(reader, lambda m: m.get("type") == "note")
        assert got["from"]["userId"] == "ana", got
        # ... and a server publish never is.
        await publish(a.port, a.admin_key, "events:sec", type_="server_note")
        got = await recv_until(reader, lambda m: m.get("type") == "server_note")
        assert "from" not in got, got


async def case_uncovered_topics_are_closed(a):
    async with websockets.connect(ws_url(a.port, session_token(a, "ana", ["*"])), open_timeout=TIMEOUT) as ws:
        err = await subscribe(ws, "private:bob")
        assert err["type"] == "error" and err["status"] == 403, err


# --- 2. anonymous mode is read-only ----------------------------------------------------------------

async def case_anonymous_reads_board_topics_only(a):
    async with websockets.connect(ws_url(a.port), open_timeout=TIMEOUT) as anon:
        assert (await subscribe(anon, "events:board"))["type"] == "ack"
        assert (await subscribe(anon, "leaderboard:1"))["type"] == "ack"
        err = await subscribe(anon, "private:bob")
        assert err["type"] == "error" and err["status"] == 403, err
        err = await say(anon, {"type": "publish", "topic": "events:board", "data": 1})
        assert err["type"] == "error" and err["status"] == 403, err
        rep = await publish(a.port, a.admin_key, "events:board", data={"x": 1})
        assert rep["delivered"] == 1, rep
        got = await recv_until(anon, lambda m: m.get("type") == "activity_event")
        assert got["data"] == {"x": 1}, got


async def case_anonymous_connections_are_capped_per_ip(a):
    cap = 8  # GatewaySettings::max_anonymous_per_ip, the demo's default
    await quiesce(a)
    held = []
    try:
        for _ in range(cap):
            held.append(await websockets.connect(ws_url(a.port), open_timeout=TIMEOUT))
        await expect_denied(a.port, None, 429)
        # Tokens are not anonymous: a public token still gets in from the same address.
        async with websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT) as ws:
            assert (await say(ws, {"type": "ping"}))["type"] == "pong"
        await held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the slot frees once the server saw the close
            try:
                held.append(await websockets.connect(ws_url(a.port), open_timeout=TIMEOUT))
                break
            except websockets.exceptions.InvalidStatusCode as e:
                assert e.status_code == 429 and time.monotonic() < deadline, e
                await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(ws.close() for ws in held))


# --- 3. no data past the permission model ---------------------------------------------------------

async def case_recent_feed_needs_a_token_and_filters(a):
    await publish(a.port, a.admin_key, "events:recent", type_="visible")
    await publish(a.port, a.admin_key, "staff:payroll", type_="hidden")
    # This server allows anonymous readers: without a token the feed is what anonymous may read.
    # (realtime_server_e2e.py checks the 401 of a server that does not.)
    status, text = await asyncio.to_thread(http, a.port, "GET", "/public/recent")
    assert status == 200, (status, text)
    types = {e["type"] for e in json.loads(text)["events"]}
    assert "visible" in types and "hidden" not in types, types
    status, _ = await asyncio.to_thread(http, a.port, "GET", "/public/recent", None,
                                        {"Authorization": "Bearer not-a-token"})
    assert status == 401, status
    token = public_token(a.port)
    status, text = await asyncio.to_thread(http, a.port, "GET", "/public/recent", None,
                                           {"Authorization": "Bearer " + token})
    assert status == 200, (status, text)
    types = {e["type"] for e in json.loads(text)["events"]}
    assert "visible" in types and "hidden" not in types, types
    # Even a token holding every permission reads nothing of a topic no rule covers.
    status, text = await asyncio.to_thread(http, a.port, "GET", "/public/recent?topic=staff:payroll", None,
                                           {"Authorization": "Bearer " + session_token(a, "ana", ["*"])})
    assert status == 200 and json.loads(text)["events"] == [], (status, text)


# --- 4. a connection ends when its token ends, unless it is refreshed -----------------------------

async def case_token_expiry_ends_the_connection(a):
    token = session_token(a, "ana", ["read_events"], lifetime=3)
    async with websockets.connect(ws_url(a.port, token), open_timeout=TIMEOUT) as ws:
        warn = await recv_until(ws, lambda m: m.get("type") == "token_expiring", timeout=TIMEOUT)
        assert "expires_at" in warn, warn
        try:
            await recv_until(ws, lambda m: False, timeout=10)
            raise AssertionError("the connection outlived its token")
        except websockets.exceptions.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 4001 and e.rcvd.reason == "token expired", e


async def case_refresh_keeps_the_connection(a):
    lifetime = 6  # long enough for the steps below on a busy machine, short enough to wait out
    started = time.monotonic()
    async with websockets.connect(ws_url(a.port, session_token(a, "ana", ["read_events"], lifetime=lifetime)),
                                  open_timeout=TIMEOUT) as ws:
        await recv_until(ws, lambda m: m.get("type") == "token_expiring")
        # Another user's token is refused and ends the connection.
        async with websockets.connect(ws_url(a.port, session_token(a, "ana", ["read_events"])),
                                      open_timeout=TIMEOUT) as other:
            await other.send(json.dumps({"type": "refresh", "token": session_token(a, "mallory", ["*"])}))
            err = await recv_until(other, lambda m: m.get("type") == "error")
            assert err["status"] == 403, err
            try:
                await recv_until(other, lambda m: False, timeout=TIMEOUT)
                raise AssertionError("a refresh as another user kept the connection")
            except websockets.exceptions.ConnectionClosed:
                pass
        # A bad token is refused; the connection keeps its old deadline.
        await ws.send(json.dumps({"type": "refresh", "token": "not-a-token"}))
        err = await recv_until(ws, lambda m: m.get("type") == "error")
        assert err["status"] == 401, err
        # The same user's fresh token moves the deadline; the connection outlives the first token.
        await ws.send(json.dumps({"type": "refresh", "token": session_token(a, "ana", ["read_events"], lifetime=600)}))
        ack = await recv_until(ws, lambda m: m.get("type") == "ack" and m.get("action") == "refresh")
        assert "expires_at" in ack, ack
        await asyncio.sleep(max(0.0, started + lifetime + 1.5 - time.monotonic()))
        assert (await say(ws, {"type": "ping"}))["type"] == "pong"


# --- 6. sockets and HTTP ------------------------------------------------------------------------

async def case_subprotocol_is_echoed_and_bare_tokens_refused(a):
    token = public_token(a.port)
    async with websockets.connect(ws_url(a.port), subprotocols=["wsgate", token], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "wsgate", ws.subprotocol
    try:
        async with websockets.connect(ws_url(a.port), subprotocols=[token], open_timeout=TIMEOUT):
            raise AssertionError("a bare token as the subprotocol was accepted")
    except websockets.exceptions.InvalidStatusCode as e:
        assert e.status_code == 400, e.status_code


async def case_connections_per_address_are_capped(a):
    await quiesce(a)
    held = []
    try:
        while len(held) < a.max_per_address:
            held.append(await websockets.connect(ws_url(a.port, public_token(a.port)), open_timeout=TIMEOUT))
        await expect_denied(a.port, public_token(a.port), 503)
    finally:
        await asyncio.gather(*(ws.close() for ws in held))


async def case_http_limits(a):
    status, _ = await asyncio.to_thread(http, a.port, "GET", "/healthz", None, {"X-Big": "x" * 20000})
    assert status == 431, status
    status, body = await asyncio.to_thread(http, a.port, "HEAD", "/healthz")
    assert status == 200 and body == "", (status, body)
    status, _ = await asyncio.to_thread(http, a.port, "GET", "/.")
    assert status == 404, status
    status, _ = await asyncio.to_thread(http, a.port, "POST", "/publish", {"topic": "events:x", "type": 5},
                                        {"X-Admin-Key": a.admin_key})
    assert status == 400, status


CASES = [
    case_client_cannot_forge_server_events, case_uncovered_topics_are_closed,
    case_anonymous_reads_board_topics_only, case_anonymous_connections_are_capped_per_ip,
    case_recent_feed_needs_a_token_and_filters, case_token_expiry_ends_the_connection,
    case_refresh_keeps_the_connection, case_subprotocol_is_echoed_and_bare_tokens_refused,
    case_connections_per_address_are_capped, case_http_limits,
]


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--session-secret", required=True)
    p.add_argument("--public-secret", required=True)
    p.add_argument("--max-per-address", type=int, required=True)
    a = p.parse_args()
    return await run_cases(CASES, a)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
