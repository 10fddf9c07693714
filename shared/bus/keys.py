"""Every Redis key and channel name phonepatch uses, under one configurable prefix.

Several deployments (or several game servers sharing one phone number with separate pools) can
share one Redis by giving each its own prefix. On Redis Cluster, every key and channel of one code
shares the hash tag ``{<prefix>:<code>}``, so each script touches one slot and the game's sharded
channel lives on the node that holds its keys; a call's channel has its own tag.

    <prefix>:pool                 set of free codes
    <prefix>:seeded               when the pool was first filled (Redis server time, ms)
    {<prefix>:<code>}:lease       the process holding the code's game (value), with a TTL
    {<prefix>:<code>}:claim       the call patched into the game (value), with a TTL
    {<prefix>:<code>}:game        channel toward the game holding the code
    {<prefix>:call:<sid>}:call    channel toward one call
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from phonepatch.shared.errors import ConfigError

__all__ = ["DEFAULT_PREFIX", "PREFIX_RULE", "Keys", "is_valid_prefix"]

DEFAULT_PREFIX = "phonepatch"
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PREFIX_RULE = "expected 1..64 letters, digits or _ . : -"


def is_valid_prefix(prefix: str) -> bool:
    """No braces (they would break the hash tags) and nothing a key name would misread."""
    return bool(_PREFIX.match(prefix))


@dataclass(frozen=True, slots=True)
class Keys:
    """Names for one deployment. Raises ``ConfigError`` for a prefix with braces or spaces."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not is_valid_prefix(self.prefix):
            raise ConfigError(f"redis_prefix: {PREFIX_RULE}")

    @property
    def pool(self) -> str:
        return f"{self.prefix}:pool"

    @property
    def seeded(self) -> str:
        return f"{self.prefix}:seeded"

    def lease(self, code: str) -> str:
        return f"{self._code_tag(code)}:lease"

    def lease_parts(self) -> tuple[str, str]:
        """What comes before and after the code in ``lease(code)``: for a script on one server
        that names the lease of a code it pops."""
        before, after = self.lease("\0").split("\0")
        return before, after

    def claim(self, code: str) -> str:
        return f"{self._code_tag(code)}:claim"

    def game_channel(self, code: str) -> str:
        return f"{self._code_tag(code)}:game"

    def call_channel(self, call_sid: str) -> str:
        return f"{{{self.prefix}:call:{call_sid}}}:call"

    def _code_tag(self, code: str) -> str:
        # A code holding "}" ends the tag early, but at the same place in each of its keys.
        return f"{{{self.prefix}:{code}}}"
