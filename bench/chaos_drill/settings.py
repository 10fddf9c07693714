"""The drill's two sizes, every timeout and limit it judges by, and the log events it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phonepatch.shared.config import RedisSettings

__all__ = [
    "CALL_ENDED", "CLOSE_TIMEOUT_S", "CODE_REJECTED", "CONNECT_TIMEOUT_S", "FULL", "GAME_ENDED", "GAME_LEFT",
    "GAME_TEXT_RECEIVED", "GAP_TOLD", "PATCH_TIMEOUT_S", "POLL_S", "PREFIX", "REDIS_RECOVERY_S", "SHORT",
    "STALL_DELAY_LIMIT_S", "START_TIMEOUT_S", "TOLERANCE_S", "WORKS_WITHIN_S", "Mode",
]  # fmt: skip

PREFIX = "chaos"
CONNECT_TIMEOUT_S = 3.0  # a game's or a call's socket, and a game's first two texts
PATCH_TIMEOUT_S = 2.0  # keys pressed -> "connected" at the game
CLOSE_TIMEOUT_S = 3.0
START_TIMEOUT_S = 30.0  # a gateway process up to /healthz
TOLERANCE_S = 1.0  # on top of TTL-based limits: polling and heartbeat phase
WORKS_WITHIN_S = 3.0  # survivors of a kill or a stall: a transcript and a text get through
REDIS_RECOVERY_S = 2.0  # after Redis answers again: transcripts, texts, new games and calls work
STALL_DELAY_LIMIT_S = 1.0  # other games' transcripts while one game reads nothing
POLL_S = 0.1
# What the gateways log, as the drill reads it (each line also carries the session's call_sid or code).
GAME_LEFT = "game_left"  # a call heard that its game left
GAME_TEXT_RECEIVED = "game_text_received"  # a game's text reached its call
GAP_TOLD = {"game": "game_missed_events", "call": "call_missed_events"}  # a session told of a bus gap
CODE_REJECTED = "code_rejected"
CALL_ENDED, GAME_ENDED = "call_ended", "game_session_ended"  # with the reason, for the report


@dataclass(frozen=True, slots=True)
class Mode:
    """How big and how fast one drill is."""

    name: str
    games: int
    calls: int
    codes: tuple[str, ...]
    redis: RedisSettings
    outages_s: tuple[float, float]
    talk_interval_s: float
    stall_s: float
    burst_interval_s: float
    recovery_s: float  # to bring the population back after a fault
    budget_s: float  # the whole drill, start-up and shutdown included
    timing_in_config: bool  # False: the gateways run on the default TTLs

    def config(self) -> dict[str, Any]:
        """The gateways' settings file."""
        settings: dict[str, Any] = {
            "game_codes": list(self.codes),
            "stt_provider": "deepgram",
            "tts_provider": "none",  # game texts are seen arriving in the twilio-gateway's log
            "keypad_pause_s": 0.3,
            "close_timeout_s": 2.0,
            "listen_timeout_s": 60.0,  # a caller back at code entry waits for the drill, not a hint
        }
        if self.timing_in_config:
            settings |= {
                "redis_lease_ttl_s": self.redis.lease_ttl_s,
                "redis_heartbeat_s": self.redis.heartbeat_s,
                "redis_sweep_s": self.redis.sweep_s,
                "redis_claim_ttl_s": self.redis.claim_ttl_s,
            }
        return settings


SHORT = Mode(
    name="short", games=20, calls=6, codes=tuple(str(n) for n in range(10, 42)),
    redis=RedisSettings(lease_ttl_s=3.0, heartbeat_s=0.5, sweep_s=0.5, claim_ttl_s=3.0),
    outages_s=(1.0, 2.5), talk_interval_s=0.3, stall_s=4.0, burst_interval_s=0.02, recovery_s=10.0,
    budget_s=170.0,
    timing_in_config=True,
)  # fmt: skip
FULL = Mode(
    name="full", games=100, calls=30, codes=tuple(str(n) for n in range(100, 230)),
    redis=RedisSettings(), outages_s=(2.0, 8.0), talk_interval_s=0.4, stall_s=6.0, burst_interval_s=0.02,
    recovery_s=30.0, budget_s=600.0, timing_in_config=False,
)  # fmt: skip
