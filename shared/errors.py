"""Exceptions raised by phonepatch.

- PhonepatchError: base of everything below.
  - ConfigError: a bad setting; the message names the key.
  - ProtocolError: a peer sent something its protocol does not allow.
  - UnknownCodeError: a code that no live game holds.
  - PoolExhaustedError: no free code left for a new game.
  - ProviderError: a speech provider refused, failed or dropped a session.
  - BusError: the message bus could not carry out an operation.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ConfigError",
    "PhonepatchError",
    "PoolExhaustedError",
    "ProtocolError",
    "ProviderError",
    "UnknownCodeError",
]


class PhonepatchError(Exception):
    """Base class of phonepatch errors."""


class ConfigError(PhonepatchError):
    """A setting is missing or invalid; the message names the key."""


class ProtocolError(PhonepatchError):
    """A peer broke its wire protocol; the message says how, without echoing secrets."""


class UnknownCodeError(PhonepatchError):
    """No live game holds this code."""


class PoolExhaustedError(PhonepatchError):
    """Every code of the pool is held by a game."""


class ProviderError(PhonepatchError):
    """A speech provider refused, failed or dropped a session."""


class BusError(PhonepatchError):
    """The message bus failed to carry out an operation."""
