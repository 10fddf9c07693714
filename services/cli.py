"""The ``phonepatch`` command: reads settings once (defaults, file, environment, flags) and runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from phonepatch.shared.config import Settings, build_settings, read_config_file
from phonepatch.shared.errors import BusError, ConfigError, ProviderError
from phonepatch.shared.logs import configure_logging, get_logger

__all__ = ["main"]

log = get_logger(__name__)


class _AppendStep(argparse.Action):
    """Collect --say/--wav/--keys/--pause in the order given on the command line."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        steps = getattr(namespace, "steps", None) or []
        steps.append((self.dest, values))
        namespace.steps = steps


_SERVERS = ("serve", "game-gateway", "twilio-gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phonepatch", description="Patch phone calls into games.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run /game, /twilio and /healthz in one process (on Redis with --redis-url)"),
        ("game-gateway", "run /game only, on Redis, beside any number of twilio-gateways"),
        ("twilio-gateway", "run /twilio only, on Redis, beside any number of game-gateways"),
        ("demo", "run the whole loop offline"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", metavar="FILE", help='JSON settings, e.g. {"game_codes": ["apple"]}')
        command.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    for name in _SERVERS:
        server = commands.choices[name]
        server.add_argument("--host", help="listen address (default 127.0.0.1)")
        server.add_argument("--port", type=int, help="listen port (default 5000)")
        server.add_argument("--redis-url", help="the shared bus, e.g. redis://127.0.0.1:6379/0 (or REDIS_URL)")
    demo = commands.choices["demo"]
    demo.add_argument("--speed", type=float, default=4.0, help="how much faster than real time the caller talks")
    demo.add_argument("--record", type=Path, help="write what the caller heard to this WAV file")

    call = commands.add_parser("call", help="simulate a phone call to a /twilio URL")
    call.add_argument("url", help="e.g. ws://127.0.0.1:5000/twilio")
    call.add_argument("--say", dest="say", action=_AppendStep, help="speak this text (offline TTS)")
    call.add_argument("--wav", dest="wav", action=_AppendStep, help="play this WAV (any rate and channels)")
    call.add_argument("--keys", dest="keys", action=_AppendStep, help="press these keys, e.g. 427#")
    call.add_argument("--pause", dest="pause", type=float, action=_AppendStep, help="wait this many seconds")
    call.add_argument("--confirm", metavar="CODE", help="answer read-backs: yes only if CODE is read back")
    call.add_argument("--record", type=Path, help="write what the caller heard to this WAV file")
    call.add_argument("--speed", type=float, default=1.0, help="send audio this many times faster than real time")
    call.add_argument("--linger", type=float, default=3.0, help="seconds to stay on the line after the last step")
    call.add_argument("--voice", default="en-us")
    call.add_argument("--rate", type=int, default=175, help="speaking rate, words per minute")

    client = commands.add_parser("client", help="a terminal game client for a /game URL")
    client.add_argument("url", help="e.g. ws://127.0.0.1:5000/game")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    """Defaults → ``--config`` file → environment → flags; the first bad key stops with its name."""
    file_values = read_config_file(args.config) if getattr(args, "config", None) else {}
    flags = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "log_level": getattr(args, "log_level", None),
        "redis_url": getattr(args, "redis_url", None),
    }
    return build_settings(file_values=file_values, environ=os.environ, flags=flags)


def _serve(settings: Settings, command: str) -> int:
    from phonepatch.services.allinone.app import build_app
    from phonepatch.services.context import settle_garbage_collector

    if command != "serve" and settings.redis.url is None:
        print(f"phonepatch {command}: needs the shared bus: --redis-url or REDIS_URL", file=sys.stderr)
        return 2
    games, calls = command != "twilio-gateway", command != "game-gateway"
    loop = _event_loop(settings.event_loop)
    log.info(
        "serving", role=command, host=settings.host, port=settings.port, codes=len(settings.pool()),
        event_loop=type(loop).__module__.split(".")[0],
    )
    if command == "game-gateway":  # games only: on picows (services/game_gateway/server.py)
        from phonepatch.services.game_gateway.server import run_game_gateway

        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            runner.run(run_game_gateway(settings))
        return 0
    app = build_app(settings, games=games, calls=calls)

    async def settle(_: web.Application) -> None:  # after the bus and providers have started
        settle_garbage_collector()

    app.on_startup.append(settle)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.limits.close_timeout_s,
        loop=loop,
    )
    return 0


def _event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked for, or ("auto") when installed: it costs about half the CPU of
    asyncio's own loop per websocket frame; else asyncio's."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("event_loop: uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _call(args: argparse.Namespace) -> int:
    from phonepatch.services.simulator.run import run_call

    return asyncio.run(run_call(args))


def _client(args: argparse.Namespace) -> int:
    from phonepatch.services.simulator.terminal import run_client

    return asyncio.run(run_client(args.url))


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from phonepatch.services.simulator.demo import main_demo

    return main_demo(settings, speed=args.speed, record=args.record)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ConfigError as error:
        print(f"phonepatch: configuration error: {error}", file=sys.stderr)
        return 2
    default_level = "error" if args.command in ("demo", "call", "client") else settings.log_level
    configure_logging(getattr(args, "log_level", None) or default_level)
    try:
        match args.command:
            case "serve" | "game-gateway" | "twilio-gateway":
                return _serve(settings, args.command)
            case "demo":
                return _demo(settings, args)
            case "call":
                return _call(args)
            case "client":
                return _client(args)
    except ConfigError as error:
        print(f"phonepatch: configuration error: {error}", file=sys.stderr)
        return 2
    except (ProviderError, BusError) as error:
        print(f"phonepatch: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
