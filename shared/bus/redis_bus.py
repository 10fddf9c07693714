"""The Redis bus: code pool, leases, claims and channels shared by any number of gateway processes.

Key and channel names come from ``keys.Keys``. How each rule of the contract is kept:

- **Take** a code: ``SPOP`` from the pool, then ``SET lease NX PX`` naming this process. When the
  ``NX`` fails, the code was a stale pool entry (see the sweeper) held by someone else: it is
  dropped from the pool and another is taken. So at most one process ever holds a code. On one
  server (or behind Sentinel) both steps are one script; on a cluster the pool and the lease live
  in different slots, and a process that crashes between the two leaves the code in neither
  place: the sweeper gives it back.
- **Leases** are refreshed by one heartbeat task per process, for every code it holds; a refresh
  that finds another owner (or none) means the lease expired, and the game is told ``CodeLost``.
  A lease that is gone is set again only when Redis lost its data since the lease was last seen
  (see seeding): otherwise a refresh racing the code's return would set a lease nobody holds.
- **Sweeper** (every process runs it; it is safe to run on all of them at once): every configured
  code that is neither in the pool nor leased goes back to the pool, and pool entries that are
  leased are removed. The pool is read before the leases, so a code seen free-of-lease was not in
  the pool a moment before: it is an orphan of a crash, a code being returned, or one just popped
  whose lease is about to be set. Giving the first two back is right; the third becomes a stale
  entry that the taker's ``NX`` and the next sweep remove.
- **Seeding** is the sweep, run by every process from its start: it adds only codes that are
  neither free nor leased, so replicas starting together cannot add a code twice (a set holds it
  once) nor resurrect a taken one (its lease is set, except in the instant above). A Redis that
  lost its data (a restart without persistence) has lost the leases too: every holder sets its
  leases again on its next heartbeat, and orphans are given back only once the ``seeded`` marker
  (set with the first sweep after the data went) is two heartbeats old. The same wait applies to
  a deployment's first start.
- **Return**: a script deletes the lease (only if it is still this holder's) and the claim, then
  ``SADD``s the code, in the same script on one server. On a cluster the ``SADD`` follows apart,
  and a crash between the two leaves an orphan for the sweeper.
- **Batches** (one server): the take and give-back scripts of concurrent sessions go in one
  pipeline per turn of the event loop (``_Batches``). A take whose caller gave up may still run:
  what it leased is given back once it has.
- **Claim**: a script in the code's slot: no lease, unknown code; otherwise ``SET NX`` with a TTL
  the claiming process refreshes, so a claim of a crashed Twilio gateway lapses.
- **Channels**: one pub/sub connection and one reader task per process route each message to the
  bounded queues of that channel's local sessions; the reader never awaits a session. A
  subscription returns once Redis has confirmed it, so a session can tell its peer where to
  publish only after nothing can be missed. On one server, (un)subscriptions asked in one turn
  of the loop go in one command each, sent by one task in the order asked. On a lost connection
  the reader retries with backoff (the client resubscribes) and every local session is told
  ``BusGap``. On Redis Cluster, channels are sharded (``SSUBSCRIBE``/``SPUBLISH``): a message goes
  only to the node of its code's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from hiredis import Reader as _HiredisReader
from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from phonepatch.shared.bus import wire
from phonepatch.shared.bus.base import Bus
from phonepatch.shared.bus.events import BusGap, CallEnded, CallEvent, CodeLost, GameEvent
from phonepatch.shared.bus.keys import Keys
from phonepatch.shared.bus.queue import SessionQueue
from phonepatch.shared.config import RedisSettings
from phonepatch.shared.errors import BusError, ConfigError, PoolExhaustedError, UnknownCodeError
from phonepatch.shared.logs import get_logger

__all__ = ["RedisBus", "connect_redis"]

log = get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_SUBSCRIBE_TIMEOUT_S = 5.0
_MAX_CONNECTIONS = 32  # per process, besides the pub/sub connection
_SWEEP_SLICE = 256  # codes the sweeper looks at per step
_BATCH = 64  # renewals per round trip: a step short enough not to hold up delivery
_CLOSE_TIMEOUT_S = 3.0
_MESSAGE_KINDS = (b"message", b"smessage")
_SUBSCRIBED = (b"subscribe", b"ssubscribe")

# KEYS: lease, claim[, pool]. ARGV: holder, code. When the lease is this holder's, or gone (it
# expired, or a cut-off take never set it): deletes lease and claim, adds the code to the pool
# when given the pool (one server; on a cluster the pool is in another slot), and returns the
# call SID of the claim it dropped, or "" when there was none. False when another holder has it.
_GIVE_BACK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return false end
local call = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[2]) end
return call or ''
"""
# One server only (it names lease keys it was not given). KEYS: pool. ARGV: lease key before and
# after the code, holder, ttl ms. The code popped and leased to the holder, or false when the
# pool is empty. Stale entries (leased already) are dropped on the way, a bounded number of them.
_TAKE = """
for _ = 1, 64 do
  local code = redis.call('SPOP', KEYS[1])
  if not code then return false end
  if redis.call('SET', ARGV[1] .. code .. ARGV[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return code end
end
return redis.error_reply('too many stale pool entries')
"""
# KEYS: keys (one slot each on a cluster: one key per call there). ARGV: holder, ttl ms, and "1"
# to set it again if it is gone, for each key in turn. For each key: 1 extended; 2 set again; 0
# another holder has it, or it is gone and not to be set again.
_REFRESH = """
local results = {}
for i, key in ipairs(KEYS) do
  local holder, ttl = ARGV[3 * i - 2], ARGV[3 * i - 1]
  local current = redis.call('GET', key)
  if not current then
    if ARGV[3 * i] == '1' then
      redis.call('SET', key, holder, 'PX', ttl)
      results[i] = 2
    else
      results[i] = 0
    end
  elseif current ~= holder then
    results[i] = 0
  else
    redis.call('PEXPIRE', key, ttl)
    results[i] = 1
  end
end
return results
"""
# KEYS: lease, claim. ARGV: call SID, ttl ms. -1 no live game, 0 another call has it, 1 claimed.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: claim. ARGV: call SID or "". The SID whose claim was dropped, or false.
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return false end
if ARGV[1] ~= '' and holder ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return holder
"""


def connect_redis(url: str, **options: Any) -> aioredis.Redis | RedisCluster:
    """A client for ``url``: ``redis://`` or ``rediss://`` (one server), ``redis+cluster://`` (any
    node of a cluster), or ``redis+sentinel://[password@]host:port[,host:port...]/service[/db]``.
    Raises ``ConfigError`` for any other scheme."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        # A blocking pool: a burst (every game of a process leaving at once) waits for one of
        # its connections instead of failing with MaxConnectionsError.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=_MAX_CONNECTIONS, timeout=10, **options)
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True
        return client
    if scheme in ("redis+cluster", "rediss+cluster"):
        return RedisCluster.from_url(url.replace("+cluster", "", 1), **options)
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        netloc = parts.netloc
        password = None
        if "@" in netloc:
            credentials, netloc = netloc.rsplit("@", 1)
            password = unquote(credentials.split(":", 1)[-1]) or None
        sentinels = []
        for host_port in netloc.split(","):
            host, _, port = host_port.rpartition(":")
            sentinels.append((host or host_port, int(port) if port and host else 26379))
        path = [part for part in parts.path.split("/") if part]
        if not path:
            raise ConfigError("REDIS_URL: a redis+sentinel:// URL must name the service: .../mymaster")
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(sentinels, sentinel_kwargs={"password": password} if password else None)
        return sentinel.master_for(path[0], password=password, db=db, **options)
    raise ConfigError("REDIS_URL: expected redis://, rediss://, redis+cluster:// or redis+sentinel://")


def _as_bus_error(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Raise a Redis that cannot be reached, or refuses, as ``BusError`` (callers know that one)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (*_CONNECTION_ERRORS, RedisError) as error:
            raise BusError(f"redis: {method.__name__} failed: {type(error).__name__}") from error

    return wrapper


class RedisBus(Bus):
    """The bus on Redis. Build with :meth:`start`; :meth:`close` gives back what it still holds."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        codes: Iterable[str],
        settings: RedisSettings | None = None,
        *,
        holder: str | None = None,
    ) -> None:
        self._client = client
        self._codes = tuple(dict.fromkeys(codes))
        self._universe = frozenset(self._codes)
        self._settings = settings or RedisSettings()
        self._keys = Keys(self._settings.prefix)
        self._cluster = isinstance(client, RedisCluster)
        # Lease values name the process and the take, so a lease lost and taken again by this
        # same process is never mistaken for the old one.
        self._holder = holder or f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        # code -> (lease value, the seeded marker when last seen held): leases this process renews
        self._held: dict[str, tuple[str, bytes | None]] = {}
        # code -> (call SID, the seeded marker when last seen held): claims this process renews
        self._claims: dict[str, tuple[str, bytes | None]] = {}
        self._epoch: bytes | None = None  # the seeded marker: it changes when Redis loses its data
        self._live: tuple[float, frozenset[str]] | None = None  # when read, what
        self._live_read: asyncio.Task[frozenset[str]] | None = None
        self._routes: dict[str, set[SessionQueue]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._routes_changed = asyncio.Event()
        self._to_subscribe: set[str] = set()  # channels to (un)subscribe on one server, not sent yet
        self._to_unsubscribe: set[str] = set()
        self._subscribing: asyncio.Task[None] | None = None
        self._gap = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._node_readers: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._takes = 0
        self._give_back_script = client.register_script(_GIVE_BACK)
        self._take = client.register_script(_TAKE)
        self._refresh = client.register_script(_REFRESH)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._pubsub = client.pubsub(push_handler_func=_as_is)
        self._batches = None if self._cluster else _Batches(client)
        self._watching_connection = False

    @classmethod
    async def start(
        cls,
        client: aioredis.Redis | RedisCluster,
        codes: Iterable[str],
        settings: RedisSettings | None = None,
        *,
        holder: str | None = None,
    ) -> RedisBus:
        """Seed the pool (see the module notes; on a Redis that has never held this deployment's
        pool, that takes two heartbeats), then start the heartbeat, sweeper and reader.

        Raises ``BusError`` when Redis cannot be reached."""
        bus = cls(client, codes, settings, holder=holder)
        try:
            while wait_s := await bus.sweep():
                await asyncio.sleep(wait_s)
            bus._epoch = await client.get(bus._keys.seeded)
        except _CONNECTION_ERRORS as error:
            await bus._close_client()
            raise BusError(f"redis: cannot reach the server: {error}") from None
        bus._tasks = [
            asyncio.create_task(
                bus._every(bus._settings.heartbeat_s, bus.heartbeat, "bus_heartbeat_failed"), name="bus-heartbeat"
            ),
            asyncio.create_task(bus._every(bus._settings.sweep_s, bus.sweep, "bus_sweep_failed"), name="bus-sweeper"),
        ]
        if not bus._cluster:
            bus._tasks.append(asyncio.create_task(bus._read_loop(), name="bus-reader"))
        return bus

    # -- pool ----------------------------------------------------------------------------------

    @_as_bus_error
    async def take_code(self) -> str:
        while True:
            self._takes += 1
            value = f"{self._holder}:{self._takes}"
            if not self._cluster:
                code = await self._take_in_one_step(value)
                if code is not None:
                    return code
                continue
            popped = await self._client.spop(self._keys.pool)
            if popped is None:
                raise PoolExhaustedError("every game code is in use")
            code = popped.decode()
            if code not in self._universe:
                continue  # left by another configuration sharing the prefix: not ours to give
            try:
                leased = await self._client.set(
                    self._keys.lease(code), value, nx=True, px=_ms(self._settings.lease_ttl_s)
                )
            except BaseException:
                # Cancelled or cut off: the lease may or may not be set. Give it back in the
                # background; if that fails too, the lease expires and the sweeper does it.
                self._spawn(self._give_back(code, value))
                raise
            if leased:
                self._held[code] = (value, self._epoch)
                return code
            # A stale pool entry: another process holds this code.

    async def _take_in_one_step(self, value: str) -> str | None:
        """The take script; None when it took a code that is not this configuration's."""
        before, after = self._keys.lease_parts()
        assert self._batches is not None  # one server (or Sentinel): the take is one script
        taking = self._batches.run(self._take, [self._keys.pool], [before, after, value, _ms(self._settings.lease_ttl_s)])
        try:
            popped = await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The script may still run: whatever it leases under this take's value goes back.
            self._spawn(self._give_back_taken(taking, value))
            raise
        if popped is None:
            raise PoolExhaustedError("every game code is in use")
        code = popped.decode()
        if code not in self._universe:
            # Left by another configuration sharing the prefix: not ours to give, nor to keep.
            self._spawn(self._give_back(code, value, to_pool=False))
            return None
        self._held[code] = (value, self._epoch)
        return code

    async def return_code(self, code: str) -> None:
        # A failure is logged by the give-back task; the lease then expires and the sweeper gives
        # the code back.
        with contextlib.suppress(BusError):
            await self.leave_game(code)

    async def leave_game(self, code: str) -> str | None:
        held = self._held.pop(code, None)
        if held is None:
            # Not this process's code (any more: its lease was lost). A claim on it now may be
            # another game's: it is left alone (the caller may release its own call's claim).
            return None
        self._claims.pop(code, None)
        try:
            # Shielded: a session cancelled while it gives its code back still gives it back.
            return await asyncio.shield(self._spawn(self._give_back(code, held[0])))
        except (*_CONNECTION_ERRORS, RedisError) as error:
            raise BusError(f"redis: leave_game failed: {type(error).__name__}") from error

    async def _give_back(self, code: str, value: str, *, to_pool: bool = True) -> str | None:
        """Drop lease and claim and (``to_pool``) put the code back, in one script on one server;
        on a cluster the code goes back to the pool apart. Returns the call SID of the claim
        dropped, if any; None too when another holder has the code."""
        keys = [self._keys.lease(code), self._keys.claim(code)]
        if self._batches is not None:
            dropped = await self._batches.run(self._give_back_script, [*keys, self._keys.pool] if to_pool else keys, [value, code])
        else:
            dropped = await self._give_back_script(keys=keys, args=[value, code])
        if dropped is None:
            return None
        if to_pool and self._cluster:
            await self._client.sadd(self._keys.pool, code)
        return dropped.decode() or None

    async def _give_back_taken(self, taking: asyncio.Future[Any], value: str) -> None:
        """Once a take its caller gave up on has run, give back what it leased."""
        try:
            popped = await taking
        except (*_CONNECTION_ERRORS, RedisError):
            await self._give_back_any(value)  # cut off: it may or may not have run
            return
        if popped is not None:
            await self._give_back(popped.decode(), value)

    async def _give_back_any(self, value: str) -> None:
        """Give back the code a cut-off take script leased under ``value``, if it leased one: the
        leases of codes neither held nor free are looked up (the sweeper's view of orphans)."""
        free = {member.decode() for member in await self._client.smembers(self._keys.pool)}
        candidates = [code for code in self._codes if code not in free and code not in self._held]
        if not candidates:
            return
        values = await self._client.mget([self._keys.lease(code) for code in candidates])
        for code, lease in zip(candidates, values, strict=True):
            if lease is not None and lease.decode() == value:
                await self._give_back(code, value)
                return

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    @_as_bus_error
    async def live_codes(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        # The pool is read whole (SMEMBERS): 0.5 ms of CPU for 1,000 codes, 57 ms for 100,000.
        # Calls entering a code refresh their grammar every second; with ``max_age_s`` they
        # share one read per process, and callers at the same moment share the read under way.
        if max_age_s <= 0:
            return await self._read_live_codes()
        if self._live is not None and asyncio.get_running_loop().time() - self._live[0] <= max_age_s:
            return self._live[1]
        if self._live_read is None:
            self._live_read = asyncio.create_task(self._read_live_codes())
            self._live_read.add_done_callback(self._live_read_done)
        return await asyncio.shield(self._live_read)

    async def _read_live_codes(self) -> frozenset[str]:
        began = asyncio.get_running_loop().time()
        free = await self._client.smembers(self._keys.pool)
        live = self._universe - {member.decode() for member in free}
        if self._live is None or self._live[0] <= began:
            self._live = (began, live)
        return live

    def _live_read_done(self, task: asyncio.Task[frozenset[str]]) -> None:
        self._live_read = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers that awaited it got it already

    async def sweep(self) -> float:
        """Give back codes neither free nor leased; drop pool entries that are leased.

        Returns 0, or the seconds to wait before orphans may be given back (see the module notes
        on seeding)."""
        seconds, micros = await self._client.time()
        now_ms = seconds * 1000 + micros // 1000
        await self._client.set(self._keys.seeded, now_ms, nx=True)
        seeded_ms = int(await self._client.get(self._keys.seeded) or now_ms)
        wait_ms = max(0, seeded_ms + 2 * _ms(self._settings.heartbeat_s) - now_ms)
        settled = wait_ms == 0
        returned = 0
        # In slices, each a short step for the event loop (all 1,000 codes at once held it for
        # 5 ms here, and 100,000 would for half a second); each slice's pool is read first.
        for start in range(0, len(self._codes), _SWEEP_SLICE):
            codes = self._codes[start : start + _SWEEP_SLICE]
            free = await self._client.smismember(self._keys.pool, codes)
            leased = await self._leased(codes)
            orphans = [code for code, is_free in zip(codes, free, strict=True) if not is_free and code not in leased]
            stale = [code for code, is_free in zip(codes, free, strict=True) if is_free and code in leased]
            if orphans and settled:
                await self._client.sadd(self._keys.pool, *orphans)
                returned += len(orphans)
            if stale:
                await self._client.srem(self._keys.pool, *stale)
        if returned:
            log.info("codes_returned_by_sweep", count=returned)
        return wait_ms / 1000

    async def _leased(self, codes: Iterable[str]) -> set[str]:
        codes = list(codes)
        if self._cluster:
            values = await self._client.mget_nonatomic([self._keys.lease(code) for code in codes])
        else:
            values = await self._client.mget([self._keys.lease(code) for code in codes]) if codes else []
        return {code for code, value in zip(codes, values, strict=True) if value is not None}

    # -- claims --------------------------------------------------------------------------------

    @_as_bus_error
    async def claim_game(self, code: str, call_sid: str) -> bool:
        try:
            result = await self._claim(
                keys=[self._keys.lease(code), self._keys.claim(code)],
                args=[call_sid, _ms(self._settings.claim_ttl_s)],
            )
        except asyncio.CancelledError:
            if self._claim_holder(code) != call_sid:  # it may have been set: drop it, not the holder's
                self._spawn(self._drop_claim(code, call_sid))
            raise
        if result == -1:
            raise UnknownCodeError("no live game holds this code")
        if result == 1:
            self._claims[code] = (call_sid, self._epoch)
        return result == 1

    async def _drop_claim(self, code: str, call_sid: str) -> None:
        await self._release(keys=[self._keys.claim(code)], args=[call_sid])

    @_as_bus_error
    async def release_claim(self, code: str, call_sid: str | None = None) -> str | None:
        holder = await self._release(keys=[self._keys.claim(code)], args=[call_sid or ""])
        if call_sid is None or self._claim_holder(code) == call_sid:
            self._claims.pop(code, None)
        return holder.decode() if holder is not None else None

    def _claim_holder(self, code: str) -> str | None:
        claim = self._claims.get(code)
        return claim[0] if claim else None

    # -- channels ------------------------------------------------------------------------------

    @_as_bus_error
    async def publish_to_game(self, code: str, event: GameEvent) -> None:
        await self._publish(self._keys.game_channel(code), event)

    @_as_bus_error
    async def publish_to_call(self, call_sid: str, event: CallEvent) -> None:
        await self._publish(self._keys.call_channel(call_sid), event)

    async def _publish(self, channel: str, event: GameEvent | CallEvent) -> None:
        if self._cluster:
            await self._client.spublish(channel, wire.encode(event))
        else:
            await self._client.publish(channel, wire.encode(event))

    def _game_channel(self, code: str) -> str:
        return self._keys.game_channel(code)

    def _call_channel(self, call_sid: str) -> str:
        return self._keys.call_channel(call_sid)

    async def _subscribe(self, channel: str, queue: SessionQueue) -> None:
        queues = self._routes.get(channel)
        if queues:
            queues.add(queue)
            return
        self._routes[channel] = {queue}
        self._routes_changed.set()  # the reader waits while nothing is routed
        if channel in self._to_unsubscribe:  # not sent yet: the channel is still subscribed
            self._to_unsubscribe.discard(channel)
            return
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            if self._cluster:
                await self._pubsub.ssubscribe(channel)
                self._start_node_readers()
            else:
                self._to_subscribe.add(channel)
                self._send_subscriptions()
            async with asyncio.timeout(_SUBSCRIBE_TIMEOUT_S):
                await confirmed
        except BaseException as error:
            await self._unsubscribe(channel, queue)
            if isinstance(error, TimeoutError | RedisError | OSError):
                raise BusError(f"redis: subscription not confirmed: {type(error).__name__}") from None
            raise
        finally:
            if self._confirmations.get(channel) is confirmed:
                del self._confirmations[channel]

    async def _unsubscribe(self, channel: str, queue: SessionQueue) -> None:
        queues = self._routes.get(channel)
        if queues is None:
            return
        queues.discard(queue)
        if queues:
            return
        del self._routes[channel]
        if not self._cluster:
            if channel in self._to_subscribe:  # never sent: nothing to undo
                self._to_subscribe.discard(channel)
            else:
                self._to_unsubscribe.add(channel)
                self._send_subscriptions()
            return
        with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
            await self._pubsub.sunsubscribe(channel)

    def _send_subscriptions(self) -> None:
        """(Un)subscriptions asked for in one turn of the loop go in one command each, sent by
        one task at a time, so that a channel's commands reach Redis in the order asked."""
        if self._subscribing is None:
            self._subscribing = asyncio.create_task(self._subscriptions(), name="bus-subscriptions")

    async def _subscriptions(self) -> None:
        try:
            while self._to_subscribe or self._to_unsubscribe:
                gone, new = self._to_unsubscribe, self._to_subscribe
                self._to_unsubscribe, self._to_subscribe = set(), set()
                if gone:
                    with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
                        await self._pubsub.unsubscribe(*gone)
                if new:
                    try:
                        await self._pubsub.subscribe(*new)
                    except (*_CONNECTION_ERRORS, RedisError) as error:
                        for channel in new:
                            confirmed = self._confirmations.get(channel)
                            if confirmed is not None and not confirmed.done():
                                confirmed.set_exception(error)
                        continue
                    self._watch_connection()
        finally:
            self._subscribing = None

    def _watch_connection(self) -> None:
        """Be told of every reconnect of the pub/sub connection, even one the client retries
        silently: messages published meanwhile were lost."""
        connection = getattr(self._pubsub, "connection", None)
        if connection is not None and not self._watching_connection:
            connection.register_connect_callback(self._on_reconnect)
            self._watching_connection = True

    def _on_reconnect(self, connection: Any) -> None:
        self._gap = True

    def _start_node_readers(self) -> None:
        """On a cluster, sharded subscriptions live on one connection per node that holds any of
        them: each gets a reader, so a message waiting on one node never waits for another."""
        for name, pubsub in self._pubsub.node_pubsub_mapping.items():
            if name not in self._node_readers:
                self._node_readers[name] = asyncio.create_task(self._read_loop(pubsub), name=f"bus-reader-{name}")

    async def _read_loop(self, source: Any = None) -> None:
        source = source or self._pubsub
        backoff_s = 0.05
        while not self._closing:
            if source is self._pubsub and not self._routes and not self._confirmations:
                self._routes_changed.clear()
                await self._routes_changed.wait()
                continue
            connection = source.connection
            if connection is None:  # nothing subscribed yet on this connection
                await asyncio.sleep(0.01)
                continue
            try:
                if not connection.is_connected:
                    await connection.connect()  # its connect callback resubscribes
                # Replies are read off the connection itself: through ``get_message`` each
                # message cost 15-18 us of CPU here, most of it retry and bookkeeping wrappers.
                reply = await connection.read_response(timeout=math.inf, push_request=True)
                backoff_s = 0.05
                if self._gap:
                    self._announce_gap()
                await self._take_replies(source, reply)
            except _CONNECTION_ERRORS as error:
                if self._closing:
                    return  # a cancellation that a client-side timeout turned into TimeoutError
                if not self._gap:
                    log.warning("bus_connection_lost", error=type(error).__name__)
                self._gap = True
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
            except InvalidResponse as error:  # the stream is out of step: start it again
                log.warning("bus_reply_unreadable", error=str(error))
                await connection.disconnect()
            except RedisError as error:  # an error reply (a refused subscription): logged, no more
                log.warning("bus_error_reply", error=str(error))

    def _announce_gap(self) -> None:
        """Tell every local session that messages may have been lost while the connection was."""
        self._gap = False
        log.warning("bus_reconnected", sessions=sum(len(queues) for queues in self._routes.values()))
        for queues in self._routes.values():
            for queue in queues:
                queue.deliver(BusGap("bus reconnected"))

    async def _take_replies(self, source: Any, reply: Any) -> None:
        """Route ``reply`` and every reply already parsed behind it. Those are taken straight
        from the connection's hiredis reader where there is one: through ``read_response`` each
        cost 10-12 us of CPU here, in four nested coroutines."""
        parsed = getattr(getattr(source.connection, "_parser", None), "_reader", None)
        if not isinstance(parsed, _HiredisReader):
            parsed = None
        while True:
            if isinstance(reply, Exception):
                raise reply
            kind = reply[0] if isinstance(reply, list) and len(reply) == 3 else None
            if kind in _MESSAGE_KINDS:
                self._route(reply[1], reply[2])
            elif kind in _SUBSCRIBED:
                self._confirm(reply[1])  # the client keeps nothing of these
            elif reply is not None:
                # Unsubscribe confirmations (and pongs): the client keeps its list of channels,
                # what it resubscribes after a reconnect, from these.
                await source.handle_message(reply)
            if parsed is None or (reply := parsed.gets()) is _NOT_ENOUGH_DATA:
                return

    def _confirm(self, channel: bytes) -> None:
        confirmed = self._confirmations.get(channel.decode())
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    def _route(self, channel: bytes, data: bytes) -> None:
        queues = self._routes.get(channel.decode())
        if not queues:
            return
        try:
            event = wire.decode(data)
        except BusError as error:
            log.warning("bus_message_dropped", error=str(error))
            return
        for queue in queues:
            queue.deliver(event)

    # -- upkeep --------------------------------------------------------------------------------

    async def _every(self, seconds: float, work: Callable[[], Awaitable[object]], failure: str) -> None:
        """Run ``work`` every ``seconds`` until the bus closes; a Redis error is logged, not fatal."""
        while not self._closing:
            await asyncio.sleep(seconds)
            try:
                await work()
            except _CONNECTION_ERRORS + (RedisError,) as error:
                if not self._closing:
                    log.warning(failure, error=type(error).__name__)

    async def heartbeat(self) -> None:
        """Extend every lease and claim this process holds; tell the games whose lease is gone.

        A lease or claim that is gone is set again only when Redis lost its data since it was
        last seen (the seeded marker changed): the game still runs here. Otherwise a lease that is
        gone expired (the game is told ``CodeLost``), and a claim that is gone was released by the
        game side. A lease set again for a code given back meanwhile is given back once more."""
        lease_ms, claim_ms = _ms(self._settings.lease_ttl_s), _ms(self._settings.claim_ttl_s)
        epoch = self._epoch = await self._client.get(self._keys.seeded)
        held = [(code, value, seen) for code, (value, seen) in self._held.items()]
        claims = [(code, sid, seen) for code, (sid, seen) in self._claims.items()]
        renewals = [
            *((self._keys.lease(code), value, lease_ms, "1" if seen != epoch else "0") for code, value, seen in held),
            *((self._keys.claim(code), sid, claim_ms, "1" if seen != epoch else "0") for code, sid, seen in claims),
        ]
        results = await self._renew(renewals)
        if 0 in results and await self._client.get(self._keys.seeded) != epoch:
            return  # Redis lost its data while the renewals ran: the next heartbeat sets them again
        if 2 in results:
            log.warning("bus_leases_restored", count=results.count(2))
        for (code, value, _), kept in zip(held, results[: len(held)], strict=True):
            current = self._held.get(code)
            if current is None or current[0] != value:  # given back while the renewals ran
                if kept == 2:
                    self._spawn(self._give_back(code, value))
            elif kept:
                self._held[code] = (value, epoch)
            else:
                del self._held[code]
                log.error("code_lease_lost", code=code)
                for queue in self._routes.get(self._keys.game_channel(code), ()):
                    queue.deliver(CodeLost(code))
        for (code, sid, _), kept in zip(claims, results[len(held) :], strict=True):
            if self._claim_holder(code) != sid:
                continue
            if kept:
                self._claims[code] = (sid, epoch)
            else:
                del self._claims[code]

    async def _renew(self, renewals: list[tuple[str, str, int, str]]) -> list[int]:
        """Run the refresh script for each (key, holder, ttl, restore): on one server, one call
        per ``_BATCH`` keys, each a short step for the event loop; on a cluster, one call per key
        (each key has its own slot), a bounded number at a time."""
        results: list[int] = []
        for start in range(0, len(renewals), _BATCH):
            batch = renewals[start : start + _BATCH]
            if self._cluster:
                replies = await asyncio.gather(
                    *(self._refresh(keys=[key], args=[holder, ttl, restore]) for key, holder, ttl, restore in batch)
                )
                results += [reply[0] for reply in replies]
                continue
            args = [arg for _, holder, ttl, restore in batch for arg in (holder, ttl, restore)]
            results += await self._refresh(keys=[key for key, *_ in batch], args=args)
        return results

    async def close(self) -> None:
        """Stop the tasks, give back every code and claim still held (bounded), close the
        connections."""
        # The flag ends a loop whose cancellation a client-side timeout turned into TimeoutError
        # (an OSError, which the loops survive); the wait is bounded whatever a task does.
        self._closing = True
        tasks = [*self._tasks, *self._node_readers.values(), *([self._subscribing] if self._subscribing else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
            if stuck:
                log.warning("bus_tasks_left_running", tasks=sorted(task.get_name() for task in stuck))
        self._tasks, self._node_readers = [], {}
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                for code in list(self._held):
                    await self.return_code(code)
                for code, (call_sid, _) in list(self._claims.items()):  # calls whose end did not
                    if await self.release_claim(code, call_sid):  # get as far as releasing them
                        await self.publish_to_game(code, CallEnded(call_sid, "server shutting down"))
                await asyncio.gather(*self._background, return_exceptions=True)
                if self._batches is not None:
                    await self._batches.close()
        except (TimeoutError, BusError, *_CONNECTION_ERRORS, RedisError) as error:
            log.warning("bus_codes_left_to_expire", count=len(self._held), error=type(error).__name__)
        await self._close_client()

    async def _close_client(self) -> None:
        with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
            await self._pubsub.aclose()
        with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
            await self._client.aclose()
        manager = getattr(getattr(self._client, "connection_pool", None), "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):  # the connections that found the master
            with contextlib.suppress(*_CONNECTION_ERRORS, RedisError):
                await sentinel.aclose()


async def _as_is(message: Any) -> Any:
    """The pub/sub connection's handler for each message: as it came. redis-py's own logs every
    message at debug, formatting it whole first (2 us of the 15-18 a message costs to read)."""
    return message


class _Batches:
    """The take and give-back scripts of concurrent sessions, sent in one pipeline per turn of
    the event loop (one server, or Sentinel's master): each costs its share of one round trip
    through redis-py instead of a round trip of its own (287 us of CPU each here, alone)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._waiting: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def run(self, script: Any, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """Queue ``script`` for the next pipeline; its future holds the reply or the error."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._send)
        future = loop.create_future()
        self._waiting.append((script, keys, args, future))
        return future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.create_task(self._execute(batch), name="bus-batch")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _execute(self, batch: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._pipeline(batch)
            unknown = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if unknown:  # Redis lost its scripts (a restart): load them and run those again
                for script in {batch[index][0] for index in unknown}:
                    await self._client.script_load(script.script)
                for index, reply in zip(unknown, await self._pipeline([batch[i] for i in unknown]), strict=True):
                    replies[index] = reply
        except BaseException as error:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)

    async def close(self) -> None:
        """Wait for the pipelines under way (each is bounded by the client's own timeouts)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("bus_give_back_failed", error=type(task.exception()).__name__)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
