"""Channels on Redis: a ``Router`` from channels to the sessions of this process, and a ``Link``
per pub/sub connection (one on one server; one per node holding subscriptions on a cluster).

A link's connection is made, read and re-made by one task only, so no two coroutines ever read
it. Subscriptions asked for while it is down are sent once it is up; after a reconnect it
subscribes again to every channel still wanted and the router tells their sessions ``BusGap``.
An idle connection is pinged, so a Redis that stopped answering is left, not waited on for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from phonepatch.shared.bus import wire
from phonepatch.shared.bus.events import BusGap
from phonepatch.shared.bus.queue import SessionQueue
from phonepatch.shared.bus.redis.connection import CONNECTION_ERRORS, FAILURES, Backoff, Timing
from phonepatch.shared.bus.redis.replies import Replies
from phonepatch.shared.errors import BusError
from phonepatch.shared.logs import get_logger

__all__ = ["Link", "Router"]

log = get_logger(__name__)

_MESSAGE = (b"message", b"smessage")
_SUBSCRIBED = (b"subscribe", b"ssubscribe")
_UNSUBSCRIBED = (b"unsubscribe", b"sunsubscribe")


class Router:
    """Which local sessions each channel's messages go to; ``deliver`` never awaits a session."""

    def __init__(self, link_for: Callable[[str], Link], timing: Timing) -> None:
        self._link_for = link_for
        self._timing = timing
        self.routes: dict[str, set[SessionQueue]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def subscribe(self, channel: str, queue: SessionQueue) -> None:
        """Route ``channel`` to ``queue``; return once Redis confirmed the subscription, so that
        nothing published from then on is missed. Raises ``BusError`` when it is not in time."""
        queues = self.routes.get(channel)
        if queues:
            queues.add(queue)
            return
        self.routes[channel] = {queue}
        confirmed = asyncio.get_running_loop().create_future()
        self._waiting[channel] = confirmed
        try:
            if not self._link_for(channel).want(channel):
                async with asyncio.timeout(self._timing.subscribe_timeout_s):
                    await confirmed
        except BaseException as error:
            await self.unsubscribe(channel, queue)
            if isinstance(error, TimeoutError | RedisError | OSError):
                raise BusError(f"redis: subscription not confirmed: {type(error).__name__}") from None
            raise
        finally:
            if self._waiting.get(channel) is confirmed:
                del self._waiting[channel]

    async def unsubscribe(self, channel: str, queue: SessionQueue) -> None:
        queues = self.routes.get(channel)
        if queues is None:
            return
        queues.discard(queue)
        if not queues:
            del self.routes[channel]
            self._link_for(channel).drop(channel)

    def route(self, channel: bytes, data: bytes) -> None:
        queues = self.routes.get(channel.decode())
        if not queues:
            return
        try:
            event = wire.decode(data)
        except BusError as error:
            log.warning("bus_message_dropped", error=str(error))
            return
        for queue in queues:
            queue.deliver(event)

    def confirmed(self, channel: str) -> None:
        waiting = self._waiting.get(channel)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def refused(self, channels: Iterable[str], error: Exception) -> None:
        for channel in channels:
            waiting = self._waiting.get(channel)
            if waiting is not None and not waiting.done():
                waiting.set_exception(error)

    def deliver(self, channels: Iterable[str], event: Any) -> None:
        """Hand ``event`` to every local session of ``channels`` (events the bus makes itself)."""
        for channel in channels:
            for queue in self.routes.get(channel, ()):
                queue.deliver(event)


class Link:
    """One pub/sub connection: ``want`` and ``drop`` say which channels it should carry."""

    def __init__(
        self,
        name: str,
        make_connection: Callable[[], AbstractConnection],
        router: Router,
        timing: Timing,
        *,
        sharded: bool = False,
    ) -> None:
        self.name = name
        self._make = make_connection
        self._router = router
        self._timing = timing
        self._subscribe, self._unsubscribe = (b"SSUBSCRIBE", b"SUNSUBSCRIBE") if sharded else (b"SUBSCRIBE", b"UNSUBSCRIBE")
        self._sharded = sharded
        self.wanted: set[str] = set()
        self._sent: set[str] = set()  # asked for on the current connection
        self._confirmed: set[str] = set()  # confirmed on the current connection
        self._carried: set[str] = set()  # confirmed on the connection lost: their sessions missed messages
        self._connection: AbstractConnection | None = None  # while up
        self._flushing: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.fast: bool | None = None  # whether replies are taken in batches, once connected
        self.connects = 0
        # A context of its own: the session whose subscription made the link is not its to log.
        self._task = asyncio.create_task(self._run(), name=f"bus-pubsub-{name}", context=contextvars.Context())

    def want(self, channel: str) -> bool:
        """Carry ``channel``; True when it is confirmed on the connection already."""
        self.wanted.add(channel)
        if self._connection is not None and channel in self._sent and channel in self._confirmed:
            return True
        self._changed_now()
        return False

    def drop(self, channel: str) -> None:
        self.wanted.discard(channel)
        self._carried.discard(channel)
        self._changed_now()

    def _changed_now(self) -> None:
        self._changed.set()
        if self._connection is not None and self._flushing is None:
            self._flushing = asyncio.create_task(
                self._flush(self._connection), name=f"bus-subscriptions-{self.name}", context=contextvars.Context()
            )

    async def _flush(self, connection: AbstractConnection) -> None:
        """Send what changed since the last command, in order, one command each way; a channel
        left and wanted again before they go is left as it is."""
        try:
            while self._connection is connection:
                gone, new = self._sent - self.wanted, self.wanted - self._sent
                if not gone and not new:
                    return
                self._sent = set(self.wanted)
                self._confirmed -= gone
                commands = [*self._commands(self._unsubscribe, gone), *self._commands(self._subscribe, new)]
                await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        except CONNECTION_ERRORS:
            pass  # the link's task sees the connection go, and subscribes again on the next
        finally:
            if self._flushing is asyncio.current_task():
                self._flushing = None
                if self._connection is not None and self._connection is not connection:
                    self._changed_now()  # a new connection came while this one's send was stuck

    def _commands(self, verb: bytes, channels: set[str]) -> list[tuple[bytes | str, ...]]:
        """One command for all ``channels``; sharded, one each (a command may name one slot)."""
        if not channels:
            return []
        return [(verb, channel) for channel in channels] if self._sharded else [(verb, *channels)]

    async def _run(self) -> None:
        backoff, lost = Backoff(self._timing), False
        while True:
            if not self.wanted:
                self._changed.clear()
                await self._changed.wait()
                continue
            connection = None
            try:
                connection = self._make()
                await connection.connect()
                self.connects += 1
                replies = Replies(connection)
                self.fast = replies.fast
                self._connection = connection
                self._changed_now()
                if lost:
                    lost = False
                    log.info("bus_reconnected", link=self.name, channels=len(self.wanted))
                    self._router.deliver(self._carried & self.wanted, BusGap("bus reconnected"))
                backoff.reset()
                await self._serve(connection, replies)
            except FAILURES as error:
                if not lost:
                    lost = True
                    log.warning("bus_connection_lost", link=self.name, error=type(error).__name__)
            except Exception:  # never the end of the link: it is made again after the backoff
                lost = True
                log.exception("bus_link_failed", link=self.name)
            finally:
                if connection is not None and self._connection is connection:
                    self._carried = set(self._confirmed)
                self._connection = None
                self._sent, self._confirmed = set(), set()  # nothing is subscribed without it
                if connection is not None:
                    with contextlib.suppress(*FAILURES):
                        await connection.disconnect(nowait=True)
            await asyncio.sleep(backoff.next_s())

    async def _serve(self, connection: AbstractConnection, replies: Replies) -> None:
        """Read until the connection fails or stays silent through two pings."""
        heard = asyncio.Event()
        reading = asyncio.create_task(self._read(replies, heard), name=f"bus-reader-{self.name}")
        pinging = asyncio.create_task(self._ping(connection, heard), name=f"bus-ping-{self.name}")
        try:
            await asyncio.wait([reading, pinging], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, pinging):
                task.cancel()
            outcomes = await asyncio.gather(reading, pinging, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        raise ConnectionError("no reply to two pings")

    async def _ping(self, connection: AbstractConnection, heard: asyncio.Event) -> None:
        """Return when a ping got nothing back within ``ping_s``."""
        pinged = False
        while True:
            heard.clear()
            try:
                async with asyncio.timeout(self._timing.ping_s):
                    await heard.wait()
                pinged = False
            except TimeoutError:
                if pinged:
                    return
                pinged = True
                await connection.send_command(b"PING", check_health=False)

    async def _read(self, replies: Replies, heard: asyncio.Event) -> None:
        route, confirmed = self._router.route, self._confirm
        while True:
            try:
                batch = await replies.read()
            except ResponseError as error:  # a refused command: what it asked for fails
                self._refuse(error)
                continue
            heard.set()
            for reply in batch:
                if isinstance(reply, list) and len(reply) == 3:
                    kind = reply[0]
                    if kind in _MESSAGE:
                        route(reply[1], reply[2])
                    elif kind in _SUBSCRIBED:
                        confirmed(reply[1].decode())
                    elif kind in _UNSUBSCRIBED:
                        self._confirmed.discard(reply[1].decode())
                elif isinstance(reply, Exception):
                    self._refuse(reply)

    def _confirm(self, channel: str) -> None:
        self._confirmed.add(channel)
        self._router.confirmed(channel)

    def _refuse(self, error: Exception) -> None:
        """Redis refused a (un)subscription: those not confirmed yet are given up on."""
        log.warning("bus_error_reply", link=self.name, error=str(error))
        pending = self._sent - self._confirmed
        self._sent -= pending
        self._router.refused(pending, error)

    async def close(self) -> None:
        tasks = [task for task in (self._task, self._flushing) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=self._timing.close_timeout_s)
