"""The phonepatch application: ``/game``, ``/twilio`` or both, with ``/healthz``.

``phonepatch serve`` runs both in one process; ``phonepatch game-gateway`` and ``phonepatch
twilio-gateway`` run one side each, any number of replicas, on one Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web

from phonepatch.services.bus import open_bus
from phonepatch.services.context import GATEWAY, Gateway, close_sockets, healthz
from phonepatch.services.game_gateway.app import add_game_routes
from phonepatch.services.providers import build_stt, build_tts
from phonepatch.services.twilio_gateway.app import add_twilio_routes
from phonepatch.shared.config import Settings
from phonepatch.shared.logs import get_logger

__all__ = ["build_app"]

log = get_logger(__name__)


def build_app(settings: Settings, *, games: bool = True, calls: bool = True) -> web.Application:
    """Build the application; its bus and provider clients live as long as it runs. ``games``
    serves ``/game``, ``calls`` serves ``/twilio`` (and needs the speech providers)."""
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if games:
        add_game_routes(app)
    if calls:
        add_twilio_routes(app)

    async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_bus(settings) as bus:
            if not calls:
                app[GATEWAY] = Gateway(settings=settings, bus=bus)
                yield
                return
            if settings.twilio.auth_token is None:
                log.warning("twilio_signatures_unchecked", hint="set TWILIO_AUTH_TOKEN and PHONEPATCH_PUBLIC_URL")
            # Synthesis (and recognition with stt_processes = 0) runs in these threads, never on
            # the event loop; offline recognition otherwise runs in engine processes of its own.
            with ThreadPoolExecutor(settings.speech.workers, thread_name_prefix="speech") as executor:
                async with aiohttp.ClientSession() as http:
                    stt = build_stt(settings, executor=executor, http=http)
                    try:
                        await stt.warm_up()
                        tts = build_tts(settings, executor=executor)
                        log.info("speech_providers", stt=stt.name, tts=tts.name if tts else "none")
                        app[GATEWAY] = Gateway(settings=settings, bus=bus, stt=stt, tts=tts)
                        yield
                    finally:
                        await stt.close()

    app.cleanup_ctx.append(gateway_ctx)
    app.on_shutdown.append(close_sockets)
    return app
