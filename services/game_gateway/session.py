"""What a game's session does, whatever server carries its socket (ARCHITECTURE.md §1, v0).

On connect the game gets the phone number, then its code; ``connected`` when a caller is patched
in; then each final speech result as Deepgram ``Results`` JSON. Text from the game is published
toward the patched call. Two servers carry game sockets: aiohttp in ``phonepatch serve`` (beside
``/twilio``) and picows in ``phonepatch game-gateway`` (``server.py``); both drive this class.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from phonepatch.services.context import CloseCode, Gateway
from phonepatch.shared.bus.events import (
    BusGap,
    BusLost,
    CallConnected,
    CallEnded,
    CodeLost,
    GameEvent,
    GameLeft,
    GameText,
    TranscriptReady,
)
from phonepatch.shared.errors import BusError, ProtocolError
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol import game_v0

__all__ = ["Ending", "GameSession"]

log = get_logger(__name__)


class Ending(NamedTuple):
    """Why the server closes a game's socket: close code, log reason, close message."""

    code: CloseCode
    reason: str
    message: str


POOL_EXHAUSTED = Ending(CloseCode.TRY_AGAIN_LATER, "no free game code", "no free game code, try again later")
BUS_DOWN = Ending(CloseCode.TRY_AGAIN_LATER, "message bus unavailable", "phonepatch is not ready, try again later")
BUS_LOST = Ending(CloseCode.INTERNAL_ERROR, "message bus unavailable", "message bus unavailable")
FAILED = Ending(CloseCode.INTERNAL_ERROR, "internal error", "internal error")
BINARY = Ending(CloseCode.UNSUPPORTED_DATA, "binary frame on a text protocol", "v0 takes text frames only")
NOT_UTF8 = Ending(CloseCode.INVALID_DATA, "text frame not UTF-8", "text frames must be UTF-8")
TOO_BIG = Ending(CloseCode.MESSAGE_TOO_BIG, "message too big", "message too big")
TOO_SLOW = Ending(CloseCode.POLICY_VIOLATION, "game reads too slowly", "game reads too slowly")
CODE_LOST = Ending(CloseCode.INTERNAL_ERROR, "game code lost", "game code lost, connect again for a new one")
SHUTTING_DOWN = Ending(CloseCode.GOING_AWAY, "server shutting down", "server shutting down")


class GameSession:
    """One connected game: its code and the call patched into it, if any."""

    def __init__(self, code: str, gateway: Gateway) -> None:
        self.code = code
        self.gateway = gateway
        self.call_sid: str | None = None
        self.close_reason = "game disconnected"
        self.started_s = time.monotonic()
        self.sent_transcripts = 0
        self.received_texts = 0
        self.bus_failing = False  # a publish failed and none has succeeded since

    def hello(self) -> tuple[str, str]:
        """The first two texts, once the session is subscribed: the number, then the code."""
        return game_v0.encode_phone_number(self.gateway.settings.twilio.phone_number), game_v0.encode_code(self.code)

    def render(self, event: GameEvent | BusGap) -> str | None:
        """Update the session for ``event`` and return the v0 text to send, if any."""
        match event:
            case TranscriptReady(call_sid=call_sid) if call_sid == self.call_sid:
                # Provider JSON goes out without the transcript being read (TranscriptReady.unread).
                text = game_v0.encode_result(event.is_final, event.raw_json, lambda: event.transcript)
                self.sent_transcripts += text is not None
                return text
            case CallConnected(call_sid=call_sid):
                self.call_sid = call_sid
                log.info("game_patched", call_sid=call_sid)
                return game_v0.CONNECTED
            case CallEnded(call_sid=call_sid, reason=reason) if call_sid == self.call_sid:
                self.call_sid = None
                log.info("game_call_ended", call_sid=call_sid, reason=reason)
            case BusGap(reason=reason):
                log.warning("game_missed_events", reason=reason)
        return None

    async def resync(self) -> str | None:
        """After missed events (``BusGap``), learn from the bus which call is patched in now;
        return ``connected`` to send when it is a call the game has not been told of. No claim
        tells nothing: after Redis lost its data, the call's process may not have set it again
        yet. A bus out of reach leaves things as they are."""
        try:
            holder = await self.gateway.bus.claim_holder(self.code)
        except BusError:
            return None
        if holder is None or holder == self.call_sid:
            return None
        return self.render(CallConnected(holder))

    @staticmethod
    def ending(event: GameEvent | BusGap) -> Ending | None:
        """Whether ``event`` ends the session, and how."""
        if isinstance(event, BusGap) and event.reason == "queue overflow":
            return TOO_SLOW
        if isinstance(event, BusLost):
            return BUS_LOST
        if isinstance(event, CodeLost):
            # The lease lapsed while Redis was out of reach: the code may be another game's now.
            log.error("game_code_lost")
            return CODE_LOST
        return None

    async def on_text(self, text: str) -> None:
        """A text frame from the game: spoken to the patched call, if there is one."""
        try:
            spoken = game_v0.parse_game_text(text, max_chars=self.gateway.settings.limits.max_game_text_chars)
        except ProtocolError as error:
            log.warning("game_text_rejected", error=str(error))
            return
        self.received_texts += 1
        if self.call_sid is None:
            log.info("game_text_without_call", chars=len(spoken))
            return
        try:
            await self.gateway.bus.publish_to_call(self.call_sid, GameText(code=self.code, text=spoken))
        except BusError as error:  # out of reach for a moment: this text is lost, the game goes on
            if not self.bus_failing:
                log.warning("game_text_lost", error=str(error))
            self.bus_failing = True
            return
        if self.bus_failing:
            self.bus_failing = False
            log.info("game_text_delivered_again")

    async def leave(self, close_code: int | None) -> None:
        """Give the code back and tell the patched call: exactly once, whatever ended the session.

        The code may go to a new game before the call hears of it: whatever the call still sends
        toward the code then reaches a game that ignores it (it names another call)."""
        bus = self.gateway.bus
        try:
            call_sid = await bus.leave_game(self.code)
            if call_sid is None and self.call_sid is not None:
                # The code was lost: the call this game knew is told, if its claim is still there.
                call_sid = await bus.release_claim(self.code, self.call_sid)
            if call_sid is not None:
                await bus.publish_to_call(call_sid, GameLeft(code=self.code, reason=self.close_reason))
        except BusError as error:  # the claim lapses on its own; the call hears of it no sooner
            log.warning("game_leave_unannounced", error=str(error))
        finally:
            log.info(
                "game_session_ended",
                reason=self.close_reason,
                duration_s=round(time.monotonic() - self.started_s, 3),
                transcripts=self.sent_transcripts,
                texts=self.received_texts,
                close_code=close_code,
            )
