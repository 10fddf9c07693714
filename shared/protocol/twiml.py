"""TwiML documents phonepatch returns to Twilio's voice webhook (PROTOCOLS.md §2.2)."""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

__all__ = ["connect_stream", "stream_url"]


def stream_url(public_url: str, path: str = "/twilio") -> str:
    """The ``wss://`` URL of the Media Streams endpoint under a public ``https://`` base URL."""
    base = public_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + path


def connect_stream(*, url: str, prompt: str, goodbye: str) -> str:
    """Say ``prompt``, stream the call bidirectionally to ``url``, say ``goodbye`` when it ends.

    The stream URL carries no query string: Twilio refuses one (§1.6).
    """
    reply = VoiceResponse()
    if prompt:
        reply.say(prompt)
    reply.connect().stream(url=url)
    if goodbye:
        reply.say(goodbye)
    return str(reply)
