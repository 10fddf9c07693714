"""The drill's faults, in the order it runs them; each judges itself into a ``FaultReport``."""

from .kills import kill_game_gateway, kill_twilio_gateway
from .leaving import everyone_leaves
from .outage import restart_redis
from .stall import stall_a_game

__all__ = ["everyone_leaves", "kill_game_gateway", "kill_twilio_gateway", "restart_redis", "stall_a_game"]
