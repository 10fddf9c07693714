"""Call sessions on ``/twilio``: Twilio Media Streams in (PROTOCOLS.md §1), code entry, patch.

A call waits for ``start``, opens a speech session, and forwards each inbound frame as it arrives.
Until patched it listens for a code, spoken or keyed; once it has claimed a game, every speech
result goes to that game's channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from aiohttp import web
from structlog.contextvars import bind_contextvars, bound_contextvars

from phonepatch.services.context import GATEWAY, CloseCode, Gateway
from phonepatch.services.twilio_gateway.speaker import Speaker
from phonepatch.services.twilio_gateway.webhook import is_signed
from phonepatch.shared.bus import SessionQueue
from phonepatch.shared.bus.events import (
    BusGap,
    BusLost,
    CallConnected,
    CallEnded,
    CallEvent,
    GameLeft,
    GameText,
    TranscriptReady,
)
from phonepatch.shared.errors import BusError, ProtocolError, ProviderError, UnknownCodeError
from phonepatch.shared.entry import Claim, CodeEntry, EntryAction, EntryState, Hangup, Listen, Say
from phonepatch.shared.keypad import KeypadCollector
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol import twilio_media as media
from phonepatch.shared.protocol.twiml import stream_url
from phonepatch.shared.providers.stt import SpeechSession
from phonepatch.shared.speech import SpeechEvent, Transcript, UtteranceEnd

__all__ = ["CallSession", "twilio_handler"]

log = get_logger(__name__)

T = TypeVar("T")


async def twilio_handler(request: web.Request) -> web.WebSocketResponse:
    """Serve one Media Streams websocket from ``start`` to ``stop``."""
    gateway = request.app[GATEWAY]
    limits = gateway.settings.limits
    # Twilio signs the wss:// URL of the stream as written in the TwiML, with no params (§3.4).
    if not is_signed(gateway, request, stream_url(gateway.settings.twilio.public_url), None):
        raise web.HTTPForbidden(text="invalid Twilio signature")
    ws = web.WebSocketResponse(
        timeout=limits.close_timeout_s,
        max_msg_size=limits.max_message_bytes,
        receive_timeout=limits.twilio_receive_timeout_s,
    )
    await ws.prepare(request)
    try:
        async with asyncio.timeout(limits.start_timeout_s):
            start = await _await_start(ws)
    except (ProtocolError, TimeoutError) as error:
        reason = str(error) or "no start event in time"
        log.warning("twilio_stream_rejected", reason=reason)
        await ws.close(code=CloseCode.POLICY_VIOLATION, message=reason.encode()[:120])
        return ws
    with bound_contextvars(call_sid=start.call_sid, stream_sid=start.stream_sid):
        gateway.sockets.add(ws)
        try:
            await CallSession(ws, start, gateway).run()
        finally:
            gateway.sockets.discard(ws)
    return ws


async def _await_start(ws: web.WebSocketResponse) -> media.Start:
    """Read up to ``start``: ``connected`` and unknown events may precede it, nothing else."""
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ProtocolError("expected a text frame before start")
        event = media.parse_event(message.data)
        match event:
            case media.Start():
                return event
            case media.Connected() | media.UnknownEvent():
                continue
            case _:
                raise ProtocolError(f"{type(event).__name__.lower()} before start")
    raise ProtocolError("stream closed before start")


class CallSession:
    """One phone call: its stream, its speech sessions, its code entry and its patch."""

    def __init__(self, ws: web.WebSocketResponse, start: media.Start, gateway: Gateway) -> None:
        self.ws = ws
        self.gateway = gateway
        self.call_sid = start.call_sid
        speech = gateway.settings.speech
        self.entry = CodeEntry(
            confirm_below=speech.confirm_below,
            max_attempts=speech.max_attempts,
            confirm_timeout_s=speech.confirm_timeout_s,
            prompt=gateway.settings.twilio.prompt,
        )
        self.speaker = Speaker(ws, start.stream_sid, gateway.tts, depth=gateway.settings.limits.queue_depth)
        self._last_said: asyncio.Future[bool] | None = None
        self.keypad = KeypadCollector(pause_s=gateway.settings.limits.keypad_pause_s)
        self._timers_changed = asyncio.Event()
        self._silence_deadline: float | None = None  # when quiet after a prompt counts as a try
        self._phrase: list[str] = []
        self._speech: SpeechSession | None = None
        self._grammar_codes: frozenset[str] | None = None
        self._live: frozenset[str] = frozenset()  # the live codes last read
        self._bus_failing = False  # a bus call failed and none has succeeded since
        self.code: str | None = None
        self.end_reason = "caller hung up"
        self.started_s = time.monotonic()
        self.frames = 0
        self.transcripts = 0
        self.bad_frames = 0

    @property
    def patched(self) -> bool:
        return self.entry.state is EntryState.PATCHED and self.code is not None

    async def run(self) -> None:
        """Subscribe, open speech, run the loops until the call ends, then clean up."""
        bus, limits = self.gateway.bus, self.gateway.settings.limits
        try:
            async with bus.subscribe_call(self.call_sid, depth=limits.queue_depth) as inbox:
                await self._serve(inbox)
        except* ProviderError as group:
            self.end_reason = f"speech provider failed: {group.exceptions[0]}"
            log.error("provider_unavailable", error=str(group.exceptions[0]))
        except* BusError as group:
            self.end_reason = "message bus unavailable"
            log.error("bus_unavailable", error=str(group.exceptions[0]))
        except* Exception:
            self.end_reason = "internal error"
            log.exception("call_session_failed")
        finally:
            await asyncio.shield(self._end())

    async def _serve(self, inbox: SessionQueue[CallEvent]) -> None:
        stt = self.gateway.stt
        if stt is None:
            raise ProviderError("no speech-to-text provider configured")
        async with stt.session(call_sid=self.call_sid) as speech:
            self._speech = speech
            log.info("call_started", provider=stt.name)
            async with asyncio.TaskGroup() as tasks:
                helpers = [
                    tasks.create_task(self._read_inbox(inbox)),
                    tasks.create_task(self._run_timers()),
                    tasks.create_task(self.speaker.run()),
                ]
                listener = tasks.create_task(self._read_speech(speech))
                try:
                    await self._apply(self.entry.start(await self._live_codes()))
                    await self._read_stream(speech)
                    await speech.finish()
                    await asyncio.wait([listener], timeout=self.gateway.settings.limits.close_timeout_s)
                finally:
                    for task in (*helpers, listener):
                        task.cancel()

    # -- the Twilio stream ---------------------------------------------------------------------

    async def _read_stream(self, speech: SpeechSession) -> None:
        """Forward audio and keys until ``stop``, the socket closes or media stops arriving."""
        try:
            await self._forward(speech)
        except TimeoutError:
            # Twilio sends media every 20 ms, silence included (§1.1): a quiet socket is dead.
            self.end_reason = "no media in time"
            log.warning("twilio_stream_silent")

    async def _forward(self, speech: SpeechSession) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                try:
                    event = media.parse_event(message.data)
                except ProtocolError as error:
                    self._note_bad_frame(str(error))
                    continue
                if isinstance(event, media.Stop):
                    return
                await self._on_event(event, speech)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self._note_bad_frame("binary frame on a text protocol")
            elif message.type is aiohttp.WSMsgType.ERROR:
                self.end_reason = f"stream error: {message.data}"
                log.warning("twilio_stream_error", error=str(message.data))

    def _note_bad_frame(self, reason: str) -> None:
        self.bad_frames += 1
        log.warning("twilio_frame_rejected", reason=reason)

    async def _on_event(self, event: media.TwilioInbound, speech: SpeechSession) -> None:
        match event:
            case media.Media(payload=payload):
                self.frames += 1
                await speech.send_audio(payload)
            case media.Dtmf(digit=digit):
                await self._on_digit(digit)
            case media.Mark(name=name):
                self.speaker.on_mark(name)
            case media.Start():
                self._note_bad_frame("second start on one stream")
            case _:
                pass  # connected and unknown events need nothing here (§1.2)

    async def _on_digit(self, digit: str) -> None:
        now = asyncio.get_running_loop().time()
        self._silence_deadline = None
        if self.entry.state is EntryState.CONFIRMING and digit in "#*":
            await self._apply(self.entry.on_key(digit, now))
            return
        try:
            result = self.keypad.press(digit, now)
        except ProtocolError as error:
            self._note_bad_frame(str(error))
            return
        self._timers_changed.set()
        if result is not None:
            await self._on_keys(result.digits)

    async def _on_keys(self, digits: str) -> None:
        live = await self._live_codes()
        await self._apply(self.entry.on_keys(digits, live, asyncio.get_running_loop().time()))

    async def _run_timers(self) -> None:
        """Sleep until the next deadline the pure parts computed: keypad pause, read-back timeout."""
        loop = asyncio.get_running_loop()
        refresh_s = self.gateway.settings.limits.grammar_refresh_s
        while True:
            self._timers_changed.clear()
            timers = (self.keypad.deadline, self.entry.deadline, self._silence_deadline)
            deadlines = [d for d in timers if d is not None]
            deadline = min(deadlines, default=loop.time() + refresh_s)
            try:
                async with asyncio.timeout_at(deadline):
                    await self._timers_changed.wait()
            except TimeoutError:
                now = loop.time()
                result = self.keypad.poll(now)
                if result is not None:
                    await self._on_keys(result.digits)
                await self._apply(self.entry.poll(now))
                if self._silence_deadline is not None and now >= self._silence_deadline:
                    self._silence_deadline = None
                    await self._apply(self.entry.on_silence(now))
                await self._refresh_grammar()

    # -- speech --------------------------------------------------------------------------------

    async def _read_speech(self, speech: SpeechSession) -> None:
        async for event in speech.events():
            await self._on_speech(event)

    async def _on_speech(self, event: SpeechEvent) -> None:
        self._silence_deadline = None  # the caller is talking
        if self.patched:
            if isinstance(event, Transcript):
                self.transcripts += 1
                await self._tolerate(self.gateway.bus.publish_to_game(self.code, TranscriptReady(self.call_sid, event)))
            return
        now = asyncio.get_running_loop().time()
        if self._is_unrecognised(event):
            await self._apply(self.entry.on_unrecognised(now))
            return
        phrase = self._collect_phrase(event)
        if phrase is not None:
            text, confidence, alternatives = phrase
            if self.gateway.stt is not None and self.gateway.stt.always_confirm:
                confidence = 0.0  # this engine's confidence cannot make a code safe (ARCHITECTURE §6)
            live = await self._live_codes()
            # Code entry speech is a code or a yes/no, never the conversation: it may be logged.
            log.debug("entry_heard", state=self.entry.state.name, text=text, alternatives=alternatives)
            await self._apply(self.entry.on_speech(text, confidence, live, now, alternatives))

    def _is_unrecognised(self, event: SpeechEvent) -> bool:
        """A grammar engine's empty final after real speech: the caller said something else.

        Only grammar engines qualify; a service's empty finals are mostly noise (§4.5).
        """
        return (
            self.gateway.stt is not None
            and self.gateway.stt.always_confirm
            and isinstance(event, Transcript)
            and event.is_final
            and not event.text
            and not self._phrase
            and event.duration_s >= self.gateway.settings.limits.min_speech_s
        )

    def _collect_phrase(self, event: SpeechEvent) -> tuple[str, float, tuple[str, ...]] | None:
        """Join finals until the utterance ends (PROTOCOLS.md §4.5); return it with its confidence
        and, for an utterance of one final, that final's alternative readings."""
        if isinstance(event, Transcript) and event.is_final and event.text:
            self._phrase.append(event)
        ended = isinstance(event, UtteranceEnd) or (isinstance(event, Transcript) and event.speech_final)
        if not ended or not self._phrase:
            return None
        finals, self._phrase = self._phrase, []
        alternatives = finals[0].alternatives if len(finals) == 1 else ()
        return " ".join(t.text for t in finals), min(t.confidence for t in finals), alternatives

    async def _refresh_grammar(self) -> None:
        """Keep a grammar of live codes current while the caller is entering one."""
        if self.entry.state is not EntryState.AWAITING_CODE or self._speech is None:
            return
        live = await self._live_codes(max_age_s=self.gateway.settings.limits.grammar_refresh_s / 2)
        if live != self._grammar_codes:
            self._grammar_codes = live
            await self._speech.expect(self.entry.expected_phrases(live))

    # -- decisions -----------------------------------------------------------------------------

    async def _apply(self, actions: tuple[EntryAction, ...]) -> None:
        """Carry out what code entry decided, in order."""
        for action in actions:
            match action:
                case Say(text=text, kind=kind):
                    log.info("caller_prompted", kind=kind)
                    if kind == "readback":
                        log.debug("entry_read_back", text=text)
                    self._last_said = self.speaker.say(text, kind=kind)
                    self._last_said.add_done_callback(self._start_listening_clock)
                case Listen(phrases=phrases):
                    if self._speech is not None:
                        await self._speech.expect(phrases)
                case Claim(code=code, via=via):
                    await self._claim(code, via)
                case Hangup(reason=reason):
                    await self._hang_up(reason)
        self._timers_changed.set()

    def _start_listening_clock(self, said: asyncio.Future[bool]) -> None:
        """Once a prompt or hint has played, the caller has ``listen_timeout_s`` to say or key
        something before being asked again (see ``CodeEntry.on_silence``); once a read-back has
        played, ``confirm_timeout_s`` to answer it."""
        if said is not self._last_said:
            return
        now = asyncio.get_running_loop().time()
        if self.entry.state is EntryState.CONFIRMING:
            self.entry.on_question_played(now)
        elif self.entry.state is EntryState.AWAITING_CODE:
            self._silence_deadline = now + self.gateway.settings.speech.listen_timeout_s
        self._timers_changed.set()

    async def _claim(self, code: str, via: str) -> None:
        """Claim the game holding ``code``; on success tell it ``connected``."""
        try:
            claimed: bool | None = await self._tolerate(self.gateway.bus.claim_game(code, self.call_sid))
        except UnknownCodeError:
            claimed = None
        if claimed:
            self.code = code
            bind_contextvars(code=code)
            await self._tolerate(self.gateway.bus.publish_to_game(code, CallConnected(self.call_sid)))
            log.info("call_patched", via=via)
        else:
            reason = "unknown code" if claimed is None else "game already has a caller"
            log.warning("code_rejected", via=via, reason=reason)
        await self._apply(self.entry.on_claim_result(code, claimed))

    async def _hang_up(self, reason: str) -> None:
        """Let the goodbye play (bounded), then close the stream: Twilio ends the call (§1.8)."""
        self.end_reason = reason.replace("_", " ")
        if self._last_said is not None:
            await asyncio.wait([self._last_said], timeout=self.gateway.settings.limits.close_timeout_s)
        await self.ws.close(code=CloseCode.NORMAL, message=b"goodbye")

    async def _tolerate(self, work: Awaitable[T]) -> T | None:
        """Await a bus call; while the bus is out of reach (a Redis restart, say), what it
        carried is lost and the call goes on: logged once per outage, None returned."""
        try:
            result = await work
        except BusError as error:
            if not self._bus_failing:
                log.warning("bus_call_failed", error=str(error))
            self._bus_failing = True
            return None
        if self._bus_failing:
            self._bus_failing = False
            log.info("bus_call_recovered")
        return result

    async def _live_codes(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        """The live codes, or the last ones read while the bus is out of reach."""
        live = await self._tolerate(self.gateway.bus.live_codes(max_age_s=max_age_s))
        if live is not None:
            self._live = live
        return self._live

    async def _read_inbox(self, inbox: SessionQueue[CallEvent]) -> None:
        while True:
            event = await inbox.get()
            match event:
                case GameText(code=code, text=text) if code == self.code:
                    log.info("game_text_received", chars=len(text))
                    self.speaker.say(text, kind="game")
                case GameLeft(code=code, reason=reason) if code == self.code:
                    self.code = None
                    log.info("game_left", reason=reason)
                    await self._apply(self.entry.on_game_left())
                case BusGap(reason=reason):
                    log.warning("call_missed_events", reason=reason)
                case BusLost(reason=reason):
                    # Out of reach longer than a claim lives: the game may be another's by now.
                    await self._hang_up(reason)
                    return

    async def _end(self) -> None:
        """Release the game (it keeps its code) and close the stream; runs once, shielded."""
        code, self.code = self.code, None
        self.speaker.cancel_all()
        try:
            if code is not None and await self.gateway.bus.release_claim(code, self.call_sid):
                await self.gateway.bus.publish_to_game(code, CallEnded(self.call_sid, self.end_reason))
        except BusError as error:  # the claim lapses on its own (claim TTL)
            log.warning("call_end_unannounced", error=str(error))
        finally:
            if not self.ws.closed:
                await self.ws.close(code=CloseCode.NORMAL, message=b"call ended")
            log.info(
                "call_ended",
                reason=self.end_reason,
                patched_code=code,
                duration_s=round(time.monotonic() - self.started_s, 3),
                frames=self.frames,
                transcripts=self.transcripts,
                bad_frames=self.bad_frames,
                frames_spoken=self.speaker.frames_sent,
            )
