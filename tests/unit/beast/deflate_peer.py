#!/usr/bin/python3
"""An independent permessage-deflate peer for the wsgate::beast server tests (python3-websockets).

  deflate_peer.py echo URL SIZE [--no-compression]
      Connects (offering permessage-deflate unless --no-compression), sends one
      {"type":"echo","data":...} message of about SIZE bytes of repetitive JSON, waits for the
      server's echo and prints one JSON line: the negotiated extension header, whether the echoed
      data equals what was sent, the message sizes, and the bytes that crossed the socket in each
      direction for that one exchange (WebSocket frame headers and masks included).
  deflate_peer.py bomb URL INFLATED
      Opens a bystander connection, then a second one that sends a compressed message inflating
      to INFLATED bytes; prints the close code the second got, its compressed size on the wire,
      and whether the bystander still gets a pong afterwards.

Exit status 0 when it could run the scenario (the C++ test judges the printed figures), 1 otherwise.
"""
import asyncio
import json
import sys

import websockets


def event(i):
    # A seed 002 style METRICS_UPDATE entry: repetitive keys, varying values.
    return {
        "eventType": "MODIFY",
        "timestamp": 1699123456789 + i,
        "data": {"entity_id": f"stream-{i:03d}", "entity_type": "stream", "metric_value": 1000 + i * 7,
                 "timestamp": "2024-11-04T12:34:56Z"},
    }


def payload(size):
    updates = []
    while len(json.dumps(updates)) < size:
        updates.append(event(len(updates)))
    return updates


class Counter:
    """Counts the raw bytes a websockets connection reads from and writes to its socket."""

    def __init__(self, ws):
        self.read = 0
        self.written = 0
        received = ws.data_received
        write = ws.transport.write

        def counting_received(data):
            self.read += len(data)
            received(data)

        def counting_write(data):
            self.written += len(data)
            write(data)

        ws.data_received = counting_received
        ws.transport.write = counting_write


async def echo(url, size, compression):
    async with websockets.connect(url, compression=compression, max_size=None) as ws:
        counter = Counter(ws)
        data = payload(size)
        message = json.dumps({"type": "echo", "data": data})
        await ws.send(message)
        reply = await asyncio.wait_for(ws.recv(), 10)
        # The reply has arrived completely; frames that follow it (none expected) would count too.
        result = {
            "extensions": ws.response_headers.get("Sec-WebSocket-Extensions"),
            "echo_equal": json.loads(reply).get("data") == data,
            "sent_message_bytes": len(message),
            "received_message_bytes": len(reply),
            "sent_wire_bytes": counter.written,
            "received_wire_bytes": counter.read,
        }
    print(json.dumps(result))


async def bomb(url, inflated):
    async with websockets.connect(url) as bystander:
        await bystander.send(json.dumps({"type": "ping"}))
        first = json.loads(await asyncio.wait_for(bystander.recv(), 10))
        attacker = await websockets.connect(url, max_size=None)
        counter = Counter(attacker)
        # One text message of `inflated` bytes that DEFLATE shrinks about a thousandfold.
        await attacker.send('{"type":"echo","data":"' + "0" * inflated + '"}')
        code = None
        try:
            while True:
                await asyncio.wait_for(attacker.recv(), 10)
        except websockets.exceptions.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
        await bystander.send(json.dumps({"type": "ping"}))
        second = json.loads(await asyncio.wait_for(bystander.recv(), 10))
        print(json.dumps({
            "attacker_extensions": attacker.response_headers.get("Sec-WebSocket-Extensions"),
            "attacker_close_code": code,
            "attacker_sent_wire_bytes": counter.written,
            "bystander_before": first.get("type"),
            "bystander_after": second.get("type"),
        }))


def main(argv):
    if len(argv) >= 4 and argv[1] == "echo":
        compression = None if "--no-compression" in argv[4:] else "deflate"
        asyncio.run(echo(argv[2], int(argv[3]), compression))
        return 0
    if len(argv) == 4 and argv[1] == "bomb":
        asyncio.run(bomb(argv[2], int(argv[3])))
        return 0
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
