"""The ceiling for game churn: a bare aiohttp websocket server doing what a game connect costs
without phonepatch (upgrade, two text messages, the close handshake), and nothing else.

    python bench/bare_ws.py --port 8765 [--loop asyncio|uvloop]

``bench/bus.py --ceiling`` runs it beside the game-gateway's churn, on the same CPU, with the same
load generator.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


async def game(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("+15550001111")
    await ws.send_str("1234")
    async for _ in ws:  # until the client's close
        pass
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/game", game)
    app.router.add_get("/healthz", healthz)
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
