"""Whether the deployment works: on each patched pair a transcript reaches the game and a game
text reaches the call, and on each pairing of gateways a new game takes a new call."""

from __future__ import annotations

import asyncio
import time

from .clients import Call, Game
from .drill import Drill
from .polling import wait_until
from .processes import Gateway
from .report import FaultReport, seconds
from .settings import GAME_TEXT_RECEIVED, POLL_S, WORKS_WITHIN_S

__all__ = ["flow", "new_sessions", "pairs_work"]


async def flow(drill: Drill, report: FaultReport, since: float, *, pairs: list[tuple[Call, Game]], limit_s: float,
               window_s: float) -> None:  # fmt: skip
    """Each pair, from ``since``: a transcript spoken reaches the game, a game text reaches the call."""
    deadline = since + window_s
    marks = {gateway.name: gateway.log.mark for gateway in drill.live("twilio-gateway")}
    heard: dict[int, float] = {}
    texts: dict[int, float] = {}

    def transcripts_in() -> bool:
        for call, game in pairs:
            if call.cid not in heard and game.latest_spoken.get(call.cid, 0.0) >= since:
                heard[call.cid] = time.monotonic()
        return len(heard) == len(pairs)

    async def texts_in() -> None:
        while len(texts) < len(pairs) and time.monotonic() < deadline:
            for n, (call, game) in enumerate(pairs):
                if call.cid not in texts and game.open:
                    await game.send_text(f"text {n} from game {game.gid}")
            resend_at = time.monotonic() + 0.5
            while time.monotonic() < min(resend_at, deadline) and len(texts) < len(pairs):
                for call, _ in pairs:
                    mark = marks.get(call.gateway.name, 0)
                    if call.cid not in texts and call.gateway.log.find(GAME_TEXT_RECEIVED, mark, call_sid=call.sid):
                        texts[call.cid] = time.monotonic()
                await asyncio.sleep(POLL_S)

    await asyncio.gather(wait_until(transcripts_in, deadline), texts_in())
    for key, label, got in (("transcripts", "a transcript reaches each game", heard), ("game_texts", "a game text reaches each call", texts)):
        slowest = max(got.values()) - since if len(got) == len(pairs) and got else None
        late = slowest is None or slowest > limit_s
        shown = f"{len(got)} of {len(pairs)} pairs, all within {seconds(slowest)} (limit {limit_s:.1f} s)"
        if not pairs:
            shown = "n/a (no pair)"
        report.figure(key + "_s", label, slowest, shown,
                      f"{label}: {len(got)} of {len(pairs)} pairs, slowest {seconds(slowest)} (limit {limit_s:.1f} s)" if late and pairs else None)  # fmt: skip


async def pairs_work(drill: Drill, report: FaultReport, since: float, pairs: list[tuple[Call, Game]]) -> None:
    """:func:`flow` held to ``WORKS_WITHIN_S``: for a new population, or the pairs a fault spared."""
    await flow(drill, report, since, pairs=pairs, limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2)


async def new_sessions(drill: Drill, report: FaultReport, since: float, *, limit_s: float, window_s: float) -> None:
    """On every pairing of live game-gateway and twilio-gateway: a new game connects, a new call
    patches into it, a transcript and a game text get through. Then both leave."""
    deadline = since + window_s
    pairings = [(games, calls) for games in drill.live("game-gateway") for calls in drill.live("twilio-gateway")]
    results = await asyncio.gather(*(_new_pair(drill, games, calls, since, deadline) for games, calls in pairings))
    games_at = [result[0] for result in results]
    works_at = [result[1] for result in results]
    for key, label, times in (("new_game_s", "a new game connects, on each game-gateway", games_at),
                              ("new_call_s", "a new call patches into it and talks, on each pairing", works_at)):  # fmt: skip
        done = [t for t in times if t is not None]
        slowest = max(done) if len(done) == len(times) and done else None
        late = slowest is None or slowest > limit_s
        shown = f"{len(done)} of {len(times)}, all within {seconds(slowest)} (limit {limit_s:.1f} s)"
        report.figure(key, label, slowest, shown,
                      f"{label}: {len(done)} of {len(times)}, slowest {seconds(slowest)} (limit {limit_s:.1f} s)" if late else None)  # fmt: skip


async def _new_pair(drill: Drill, games_at: Gateway, calls_at: Gateway, since: float, deadline: float) -> tuple[float | None, float | None]:
    """(seconds until the game got a code, seconds until the pair worked), from ``since``."""
    game: Game | None = None
    game_s: float | None = None
    try:
        while time.monotonic() < deadline:
            if game is None or not game.open:
                game = await drill.open_game(games_at, probe=True)
                if game is None:
                    await asyncio.sleep(0.2)
                    continue
                game_s = game_s if game_s is not None else time.monotonic() - since
            if await _probe_call(drill, calls_at, game, deadline):
                return game_s, time.monotonic() - since
            await asyncio.sleep(0.2)
        return game_s, None
    finally:
        if game is not None:
            await game.close()


async def _probe_call(drill: Drill, gateway: Gateway, game: Game, deadline: float) -> bool:
    """A new call on ``gateway`` patches into ``game``, and a transcript and a game text get
    through (each within ``WORKS_WITHIN_S``); the call hangs up either way."""
    call = await drill.dial(gateway, probe=True)
    if call is None:
        return False
    try:
        if not await drill.patch(call, game):
            return False
        began = time.monotonic()
        mark = gateway.log.mark
        heard = await wait_until(lambda: game.latest_spoken.get(call.cid, 0.0) >= began, min(deadline, began + WORKS_WITHIN_S))
        if heard is None or not await game.send_text("a probe's text"):
            return False
        told = await wait_until(lambda: bool(gateway.log.find(GAME_TEXT_RECEIVED, mark, call_sid=call.sid)),
                                min(deadline, began + WORKS_WITHIN_S))  # fmt: skip
        return told is not None
    finally:
        await call.hang_up()
