"""The ceiling for game churn: a bare websocket server doing what a game connect costs without
phonepatch (upgrade, two text messages, the close handshake), and nothing else.

    python bench/bare_ws.py --port 8765 [--stack picows|aiohttp] [--loop asyncio|uvloop]

``bench/bus.py --ceiling`` runs it beside the game-gateway's churn, on the same CPU, with the same
load generator: picows is what ``phonepatch game-gateway`` serves games with, aiohttp what
``phonepatch serve`` does.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

NUMBER, CODE = "+15550001111", "1234"


async def game(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(NUMBER)
    await ws.send_str(CODE)
    async for _ in ws:  # until the client's close
        pass
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def run_aiohttp(port: int, loop: asyncio.AbstractEventLoop) -> None:
    app = web.Application()
    app.router.add_get("/game", game)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


def run_picows(port: int, loop: asyncio.AbstractEventLoop) -> None:
    import picows

    class Game(picows.WSListener):
        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            transport.send(picows.WSMsgType.TEXT, NUMBER.encode())
            transport.send(picows.WSMsgType.TEXT, CODE.encode())

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type == picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    def route(request: picows.WSUpgradeRequest):
        if request.path == b"/game":
            return Game()
        if request.path == b"/healthz":
            return picows.WSUpgradeResponseWithListener(picows.WSUpgradeResponse.create_ok_response(b'{"status": "ok"}'), None)
        return None

    async def serve() -> None:
        server = await picows.ws_create_server(route, "127.0.0.1", port)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stack", choices=["picows", "aiohttp"], default="picows")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    (run_picows if args.stack == "picows" else run_aiohttp)(args.port, loop)


if __name__ == "__main__":
    main()
