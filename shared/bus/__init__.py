"""The bus interface and its backends."""

from phonepatch.shared.bus.base import Bus
from phonepatch.shared.bus.memory import MemoryBus
from phonepatch.shared.bus.queue import SessionQueue

__all__ = ["Bus", "MemoryBus", "SessionQueue"]
