"""Routes of the Twilio gateway."""

from __future__ import annotations

from aiohttp import web

from phonepatch.services.twilio_gateway.handlers import twilio_handler
from phonepatch.services.twilio_gateway.webhook import voice_webhook

__all__ = ["add_twilio_routes"]


def add_twilio_routes(app: web.Application) -> None:
    app.router.add_get("/twilio", twilio_handler)
    app.router.add_post("/twilio/voice", voice_webhook)
    app.router.add_get("/twilio/voice", voice_webhook)
