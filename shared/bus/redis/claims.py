"""The claims of this process's calls: one caller per game, following the game they claimed.

- **Claim**: a script in the code's slot sets the claim (``NX``, with a TTL) only while a game
  holds the code, and returns that game's lease value: the claim belongs to that game, not to
  the code.
- **Renew**: the heartbeat extends each claim only while the same game still holds the code. A
  game that is gone (its process died and its lease lapsed, or it left and the news was lost)
  drops the claim, and the call is told the game left. After Redis lost its data, a claim is
  set again once its game's lease is (its holder does that within ``restore_wait_s``), and
  dropped if the game does not come back within twice that.
- **Release**: a call that ended forgets its claim at once, so it is never renewed nor set again;
  a release Redis did not get is tried again by every heartbeat, and the game told then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from phonepatch.shared.bus.redis.topology import Topology
from phonepatch.shared.errors import UnknownCodeError

__all__ = ["Claims"]


@dataclass(slots=True)
class _Claim:
    call_sid: str
    game: bytes  # the lease value of the game claimed
    seen: bytes | None  # the seeded marker when last seen held
    missing_since: float | None = None  # since when its game's lease has not been found


class Claims:
    def __init__(self, topology: Topology, ttl_ms: int, grace_s: float) -> None:
        self._topology = topology
        self._keys = topology.keys
        self._ttl_ms = ttl_ms
        self._grace_s = grace_s
        self.held: dict[str, _Claim] = {}
        self.releasing: dict[str, str] = {}  # code -> call SID: releases to try again

    def holder(self, code: str) -> str | None:
        claim = self.held.get(code)
        return claim.call_sid if claim else None

    async def claim(self, code: str, call_sid: str, epoch: bytes | None) -> bool:
        """Raises ``UnknownCodeError`` when no game holds ``code``."""
        topology = self._topology
        keys = [self._keys.lease(code), self._keys.claim(code)]
        try:
            result = await topology.run(topology.claim, keys, [call_sid, self._ttl_ms])
        except asyncio.CancelledError:
            if self.holder(code) != call_sid:  # it may have been set: drop it, not the holder's
                topology.spawn(topology.run(topology.release, [keys[1]], [call_sid]))
            raise
        if result == -1:
            raise UnknownCodeError("no live game holds this code")
        if isinstance(result, int):
            return False
        self.held[code] = _Claim(call_sid, result, epoch)
        self.releasing.pop(code, None)
        return True

    async def release(self, code: str, call_sid: str | None = None) -> str | None:
        """Drop the claim on ``code`` (only ``call_sid``'s, when given): the SID dropped, or None.
        A call's own claim is forgotten here first, whatever Redis answers."""
        mine = call_sid is not None and call_sid in (self.holder(code), self.releasing.get(code))
        if call_sid is None or self.holder(code) == call_sid:
            self.held.pop(code, None)
        if mine:
            self.releasing[code] = call_sid
        holder = await self._topology.run(self._topology.release, [self._keys.claim(code)], [call_sid or ""])
        if mine and self.releasing.get(code) == call_sid:
            del self.releasing[code]
        return holder.decode() if holder is not None else None

    async def retry_releasing(self) -> list[tuple[str, str]]:
        """Try the releases that failed again: the (code, call SID) of each call whose game is
        to be told it ended (its claim may have gone with Redis's data: the call ended anyway)."""
        released = []
        for code, call_sid in list(self.releasing.items()):
            await self.release(code, call_sid)
            released.append((code, call_sid))
        return released

    async def renew(self, epoch: bytes | None, now: float) -> list[tuple[str, str]]:
        """Extend every claim whose game is still there; the (code, call SID) of those dropped."""
        held = list(self.held.items())
        groups = [
            (
                [self._keys.lease(code), self._keys.claim(code)],
                [claim.call_sid, claim.game, self._ttl_ms, "1" if claim.seen != epoch else "0"],
            )
            for code, claim in held
        ]
        results = await self._topology.renew(self._topology.renew_claims, groups)
        dropped = []
        for (code, claim), result in zip(held, results, strict=True):
            if self.held.get(code) is not claim:
                continue  # released while the renewals ran
            if result in (1, 2):
                claim.seen, claim.missing_since = epoch, None
                continue
            if result == 3 and claim.seen != epoch:  # Redis lost its data: wait for the game
                claim.missing_since = claim.missing_since or now
                if now - claim.missing_since < self._grace_s:
                    continue
            del self.held[code]
            dropped.append((code, claim.call_sid))
        return dropped
