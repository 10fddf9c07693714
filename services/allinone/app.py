"""The all-in-one application: ``/game``, ``/twilio`` and ``/healthz`` in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web

from phonepatch.services.context import GATEWAY, Gateway, close_sockets, healthz
from phonepatch.services.game_gateway.app import add_game_routes
from phonepatch.services.twilio_gateway.app import add_twilio_routes
from phonepatch.shared.bus import MemoryBus
from phonepatch.shared.config import Settings
from phonepatch.shared.logs import get_logger
from phonepatch.services.providers import build_stt, build_tts

__all__ = ["build_app"]

log = get_logger(__name__)


def build_app(settings: Settings) -> web.Application:
    """Build the application; its bus and provider clients live as long as it runs."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    add_game_routes(app)
    add_twilio_routes(app)

    async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
        bus = MemoryBus(settings.pool())
        if settings.twilio.auth_token is None:
            log.warning("twilio_signatures_unchecked", hint="set TWILIO_AUTH_TOKEN and PHONEPATCH_PUBLIC_URL")
        # CPU-heavy recognition and synthesis run here, never on the event loop.
        with ThreadPoolExecutor(settings.speech.workers, thread_name_prefix="speech") as executor:
            async with aiohttp.ClientSession() as http:
                stt = build_stt(settings, executor=executor, http=http)
                await stt.warm_up()
                tts = build_tts(settings, executor=executor)
                log.info("speech_providers", stt=stt.name, tts=tts.name if tts else "none")
                app[GATEWAY] = Gateway(settings=settings, bus=bus, stt=stt, tts=tts)
                try:
                    yield
                finally:
                    await bus.close()

    app.cleanup_ctx.append(gateway_ctx)
    app.on_shutdown.append(close_sockets)
    return app
