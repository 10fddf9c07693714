"""The ``phonepatch`` command: reads settings once (defaults, file, environment, flags) and runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from phonepatch.shared.config import Settings, build_settings, read_config_file
from phonepatch.shared.errors import ConfigError
from phonepatch.shared.logs import configure_logging, get_logger

__all__ = ["main"]

log = get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phonepatch", description="Patch phone calls into games.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run /game, /twilio and /healthz in one process")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 5000)")
    serve.add_argument("--config", metavar="FILE", help='JSON settings, e.g. {"game_codes": ["apple"]}')
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    """Defaults → ``--config`` file → environment → flags; the first bad key stops with its name."""
    file_values = read_config_file(args.config) if args.config else {}
    flags = {"host": args.host, "port": args.port, "log_level": args.log_level}
    return build_settings(file_values=file_values, environ=os.environ, flags=flags)


def _serve(settings: Settings) -> None:
    from phonepatch.services.allinone.app import build_app

    log.info("serving", host=settings.host, port=settings.port, codes=len(settings.game_codes))
    web.run_app(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.limits.close_timeout_s,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ConfigError as error:
        print(f"phonepatch: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "serve":
        _serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
