"""Routes of the game gateway."""

from __future__ import annotations

from aiohttp import web

from phonepatch.services.game_gateway.handlers import game_v0_handler

__all__ = ["add_game_routes"]


def add_game_routes(app: web.Application) -> None:
    app.router.add_get("/game", game_v0_handler)
