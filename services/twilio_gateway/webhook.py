"""The voice webhook (TwiML for an incoming call) and the signature check on Twilio requests."""

from __future__ import annotations

from aiohttp import web

from phonepatch.services.context import GATEWAY, Gateway
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol.twiml import connect_stream, stream_url
from phonepatch.shared.signatures import TwilioSignatureChecker

__all__ = ["is_signed", "voice_webhook"]

log = get_logger(__name__)


def is_signed(gateway: Gateway, request: web.Request, url: str, params: dict[str, str] | None) -> bool:
    """True when signatures are not configured, or when this request carries a valid one."""
    token = gateway.settings.twilio.auth_token
    if token is None:
        return True
    signature = request.headers.get("X-Twilio-Signature")
    if TwilioSignatureChecker(token.reveal()).is_valid(url, params, signature):
        return True
    log.warning("twilio_signature_rejected", path=request.path, signed=signature is not None)
    return False


async def voice_webhook(request: web.Request) -> web.Response:
    """Answer an incoming call: a short prompt, then the bidirectional Media Stream (§2.2)."""
    gateway = request.app[GATEWAY]
    twilio = gateway.settings.twilio
    form = await request.post() if request.method == "POST" else {}
    params = {key: str(value) for key, value in form.items()}
    if not is_signed(gateway, request, twilio.public_url + request.raw_path, params):
        raise web.HTTPForbidden(text="invalid Twilio signature")
    base = twilio.public_url or f"https://{request.host}"
    # With a synthesizer the prompt is spoken through the stream, so the caller can answer at once
    # (audio during a TwiML <Say> never reaches the stream, §2.2).
    prompt = "" if gateway.tts is not None else twilio.prompt
    document = connect_stream(url=stream_url(base), prompt=prompt, goodbye=twilio.goodbye)
    log.info("call_answered", call_sid=params.get("CallSid", ""))
    return web.Response(text=document, content_type="text/xml")
