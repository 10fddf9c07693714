"""Replies read off a pub/sub connection, every reply already parsed taken at once.

redis-py reads one reply per ``read_response`` (10-12 us of CPU each, in four nested
coroutines). When the connection parses with hiredis, the replies parsed behind the first are
taken straight from its hiredis reader. That reader, and the marker it answers when a reply is
incomplete, are redis-py's private names: where an upgrade of redis-py moves either,
``hiredis_reader`` finds nothing and the public path is used alone.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection

try:
    from hiredis import Reader as _HiredisReader
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # without hiredis, or with a redis-py that moved it: one reply at a time
    _HiredisReader = _NOT_ENOUGH_DATA = None

__all__ = ["Replies", "hiredis_reader"]


def hiredis_reader(connection: AbstractConnection) -> Any:
    """The connected ``connection``'s hiredis reader, or None where there is none to be found."""
    reader = getattr(getattr(connection, "_parser", None), "_reader", None)
    if _HiredisReader is None or not isinstance(reader, _HiredisReader):
        return None
    return reader


class Replies:
    """Read a connection's replies in batches; ``fast`` tells whether hiredis's are taken at once."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._parsed = hiredis_reader(connection)

    @property
    def fast(self) -> bool:
        return self._parsed is not None

    async def read(self) -> list[Any]:
        """Wait for the next reply; return it with every reply parsed behind it. An error reply
        is returned as its exception, not raised."""
        reply = await self._connection.read_response(timeout=float("inf"), push_request=True)
        if self._parsed is None:
            return [reply]
        replies = [reply]
        while (more := self._parsed.gets()) is not _NOT_ENOUGH_DATA:
            replies.append(more)
        return replies
