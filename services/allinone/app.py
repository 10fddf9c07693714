"""The all-in-one application: ``/game``, ``/twilio`` and ``/healthz`` in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from phonepatch.services.context import GATEWAY, Gateway, close_sockets, healthz
from phonepatch.services.game_gateway.app import add_game_routes
from phonepatch.services.twilio_gateway.app import add_twilio_routes
from phonepatch.shared.bus import MemoryBus
from phonepatch.shared.config import Settings
from phonepatch.shared.logs import get_logger
from phonepatch.shared.providers.deepgram import DeepgramLive

__all__ = ["build_app"]

log = get_logger(__name__)


def build_app(settings: Settings) -> web.Application:
    """Build the application; its bus and provider clients live as long as it runs."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    add_game_routes(app)
    add_twilio_routes(app)

    async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
        bus = MemoryBus(settings.game_codes)
        async with aiohttp.ClientSession() as http:
            if settings.twilio.auth_token is None:
                log.warning("twilio_signatures_unchecked", hint="set TWILIO_AUTH_TOKEN and PHONEPATCH_PUBLIC_URL")
            if settings.deepgram.api_key is None:
                log.warning("speech_provider_unconfigured", provider="deepgram", hint="set DEEPGRAM_API_KEY")
            app[GATEWAY] = Gateway(settings=settings, bus=bus, stt=DeepgramLive(settings.deepgram, http))
            try:
                yield
            finally:
                await bus.close()

    app.cleanup_ctx.append(gateway_ctx)
    app.on_shutdown.append(close_sockets)
    return app
