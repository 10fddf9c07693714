"""Settings: one frozen tree, built once from defaults, then a file, then the environment, then flags.

Only ``services`` reads the environment and the command line; they hand the raw layers to
``build_settings``, which casts every value and names the bad key in its ``ConfigError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from phonepatch.shared.bus.keys import PREFIX_RULE, is_valid_prefix
from phonepatch.shared.codes import generated_codes
from phonepatch.shared.errors import ConfigError

__all__ = [
    "DEFAULT_DEEPGRAM_URL",
    "DeepgramSettings",
    "Limits",
    "RedisSettings",
    "Secret",
    "Settings",
    "SpeechSettings",
    "TwilioSettings",
    "build_settings",
    "default_stt_processes",
    "read_config_file",
]

DEFAULT_DEEPGRAM_URL = (
    "wss://api.deepgram.com/v1/listen?model=nova-3&encoding=mulaw&sample_rate=8000&channels=1"
    "&interim_results=true&endpointing=300&utterance_end_ms=1000&vad_events=true&numerals=true"
)


class Secret:
    """A value that hides itself in ``repr`` and ``str``; ``reveal()`` where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """The Twilio side. With an auth token, every webhook and stream upgrade must be signed."""

    phone_number: str = ""
    auth_token: Secret | None = None
    public_url: str = ""
    prompt: str = "Say or key in the code shown in your game."
    goodbye: str = "Goodbye."


@dataclass(frozen=True, slots=True)
class DeepgramSettings:
    api_key: Secret | None = None
    url: str = DEFAULT_DEEPGRAM_URL
    connect_timeout_s: float = 5.0
    keepalive_interval_s: float = 4.0
    close_timeout_s: float = 3.0


def default_stt_processes() -> int:
    """Offline recognition processes by default: a core is left to the event loop; 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """Which speech engines run, and how careful code entry is."""

    stt: str = "auto"  # "auto": Deepgram when a key is set, else the offline engine
    tts: str = "espeak"
    voice: str = "en-us"
    rate_wpm: int = 175
    workers: int = 2  # threads for speech synthesis (and recognition when stt_processes is 0)
    # Offline recognition runs in processes of its own, so that it never stalls the event loop;
    # 0 runs it in the server's threads instead (less memory, but up to ~0.5 s stalls).
    stt_processes: int = field(default_factory=default_stt_processes)
    confirm_below: float = 0.9  # spoken codes heard with less confidence are read back first
    max_attempts: int = 3
    confirm_timeout_s: float = 8.0
    listen_timeout_s: float = 8.0  # silence after a prompt or hint before the caller is asked again


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The shared bus. Without a URL, one process runs everything on its in-memory bus.

    The URL may carry a password, so it is a ``Secret``. Timing: a crashed process's codes return
    to the pool within ``lease_ttl_s`` + ``sweep_s``; a heartbeat renews leases and claims every
    ``heartbeat_s``."""

    url: Secret | None = None
    prefix: str = "phonepatch"
    lease_ttl_s: float = 10.0
    heartbeat_s: float = 2.0
    sweep_s: float = 2.0
    claim_ttl_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound a peer can run into, with its unit."""

    max_message_bytes: int = 64 * 1024
    max_game_text_chars: int = 2000
    start_timeout_s: float = 10.0
    twilio_receive_timeout_s: float = 30.0
    game_heartbeat_s: float = 20.0
    queue_depth: int = 256
    keypad_pause_s: float = 3.0
    grammar_refresh_s: float = 1.0
    min_speech_s: float = 0.4  # shorter unrecognised sounds are not counted as a try
    close_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    log_level: str = "info"
    event_loop: str = "auto"  # "auto": uvloop where it is installed, else asyncio's own
    game_codes: tuple[str, ...] = tuple(str(n) for n in range(100))
    code_digits: int = 0  # > 0: a generated pool of codes this long, with a Damm check digit
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    deepgram: DeepgramSettings = field(default_factory=DeepgramSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    limits: Limits = field(default_factory=Limits)

    def pool(self) -> tuple[str, ...]:
        """The codes games are given: generated check-digit codes, or ``game_codes``."""
        return generated_codes(self.code_digits) if self.code_digits else self.game_codes


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _int(key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if isinstance(value, bool | float) or number < 0:
        raise ConfigError(f"{key}: expected a non-negative integer, got {value!r}")
    return number


def _count(key: str, value: Any) -> int:
    # A zero limit would disable it (aiohttp reads max_msg_size=0 as unlimited) or fail later.
    number = _int(key, value)
    if number < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return number


def _count_or_zero(key: str, value: Any) -> int:
    number = _int(key, value)
    if number < 0:
        raise ConfigError(f"{key}: expected 0 or a positive integer, got {value!r}")
    return number


def _port(key: str, value: Any) -> int:
    number = _int(key, value)
    if number > 65535:
        raise ConfigError(f"{key}: expected a port number 0..65535, got {number}")
    return number


def _float(key: str, value: Any, expected: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {expected}, got {value!r}") from None


def _seconds(key: str, value: Any) -> float:
    number = _float(key, value, "a number of seconds")
    if not 0 < number < math.inf:
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    return number


def _secret(key: str, value: Any) -> Secret | None:
    text = _str(key, value)
    return Secret(text) if text else None


def _redis_url(key: str, value: Any) -> Secret | None:
    url = _str(key, value)
    if url and not url.lower().startswith(("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://", "redis+sentinel://")):
        raise ConfigError(f"{key}: expected redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://")
    return Secret(url) if url else None


def _redis_prefix(key: str, value: Any) -> str:
    prefix = _str(key, value)
    if not is_valid_prefix(prefix):
        raise ConfigError(f"{key}: {PREFIX_RULE}")
    return prefix


def _level(key: str, value: Any) -> str:
    level = _str(key, value).lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"{key}: expected debug, info, warning or error, got {value!r}")
    return level


def _url(key: str, value: Any) -> str:
    url = _str(key, value)
    if not url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{key}: expected a ws:// or wss:// URL")
    return url


def _public_url(key: str, value: Any) -> str:
    url = _str(key, value).rstrip("/")
    if url and not url.startswith(("https://", "http://")):
        raise ConfigError(f"{key}: expected an https:// URL, as Twilio requests it")
    return url


def _choice(*options: str) -> Callable[[str, Any], str]:
    def cast(key: str, value: Any) -> str:
        text = _str(key, value).lower()
        if text not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return text

    return cast


def _fraction(key: str, value: Any) -> float:
    number = _float(key, value, "a number from 0 to 1")
    if not 0 <= number <= 1:
        raise ConfigError(f"{key}: expected a number from 0 to 1, got {value!r}")
    return number


def _code_digits(key: str, value: Any) -> int:
    number = _int(key, value)
    if number and not 2 <= number <= 7:
        raise ConfigError(f"{key}: expected 0 (use game_codes) or 2..7 digits, got {value!r}")
    return number


def _codes(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of codes")
    codes = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ConfigError(f"{key}: every code must be a string or an integer, got {item!r}")
        code = " ".join(str(item).lower().split())
        if not code:
            raise ConfigError(f"{key}: codes must not be blank")
        codes.append(code)
    if len(set(codes)) != len(codes):
        raise ConfigError(f"{key}: codes must be unique")
    return tuple(codes)


# name → (section, field, cast, environment variable or None)
_FIELDS: dict[str, tuple[str | None, str, Callable[[str, Any], Any], str | None]] = {
    "host": (None, "host", _str, "PHONEPATCH_HOST"),
    "port": (None, "port", _port, "PHONEPATCH_PORT"),
    "log_level": (None, "log_level", _level, "PHONEPATCH_LOG_LEVEL"),
    "event_loop": (None, "event_loop", _choice("auto", "asyncio", "uvloop"), "PHONEPATCH_EVENT_LOOP"),
    "game_codes": (None, "game_codes", _codes, None),
    "code_digits": (None, "code_digits", _code_digits, "PHONEPATCH_CODE_DIGITS"),
    "stt_provider": ("speech", "stt", _choice("auto", "deepgram", "pocketsphinx"), "PHONEPATCH_STT"),
    "tts_provider": ("speech", "tts", _choice("espeak", "none"), "PHONEPATCH_TTS"),
    "tts_voice": ("speech", "voice", _str, None),
    "tts_rate_wpm": ("speech", "rate_wpm", _count, None),
    "speech_workers": ("speech", "workers", _count, None),
    "stt_processes": ("speech", "stt_processes", _count_or_zero, "PHONEPATCH_STT_PROCESSES"),
    "confirm_below": ("speech", "confirm_below", _fraction, None),
    "max_attempts": ("speech", "max_attempts", _count, None),
    "confirm_timeout_s": ("speech", "confirm_timeout_s", _seconds, None),
    "listen_timeout_s": ("speech", "listen_timeout_s", _seconds, None),
    "twilio_phone_number": ("twilio", "phone_number", _str, "TWILIO_PHONE_NUMBER"),
    "twilio_auth_token": ("twilio", "auth_token", _secret, "TWILIO_AUTH_TOKEN"),
    "public_url": ("twilio", "public_url", _public_url, "PHONEPATCH_PUBLIC_URL"),
    "twilio_prompt": ("twilio", "prompt", _str, None),
    "twilio_goodbye": ("twilio", "goodbye", _str, None),
    "deepgram_api_key": ("deepgram", "api_key", _secret, "DEEPGRAM_API_KEY"),
    "deepgram_url": ("deepgram", "url", _url, "DEEPGRAM_URL"),
    "deepgram_connect_timeout_s": ("deepgram", "connect_timeout_s", _seconds, None),
    "deepgram_keepalive_interval_s": ("deepgram", "keepalive_interval_s", _seconds, None),
    "redis_url": ("redis", "url", _redis_url, "REDIS_URL"),
    "redis_prefix": ("redis", "prefix", _redis_prefix, "PHONEPATCH_REDIS_PREFIX"),
    "redis_lease_ttl_s": ("redis", "lease_ttl_s", _seconds, None),
    "redis_heartbeat_s": ("redis", "heartbeat_s", _seconds, None),
    "redis_sweep_s": ("redis", "sweep_s", _seconds, None),
    "redis_claim_ttl_s": ("redis", "claim_ttl_s", _seconds, None),
    "max_message_bytes": ("limits", "max_message_bytes", _count, "PHONEPATCH_MAX_MESSAGE_BYTES"),
    "max_game_text_chars": ("limits", "max_game_text_chars", _count, None),
    "start_timeout_s": ("limits", "start_timeout_s", _seconds, None),
    "twilio_receive_timeout_s": ("limits", "twilio_receive_timeout_s", _seconds, None),
    "game_heartbeat_s": ("limits", "game_heartbeat_s", _seconds, None),
    "queue_depth": ("limits", "queue_depth", _count, None),
    "keypad_pause_s": ("limits", "keypad_pause_s", _seconds, None),
    "grammar_refresh_s": ("limits", "grammar_refresh_s", _seconds, None),
    "min_speech_s": ("limits", "min_speech_s", _seconds, None),
    "close_timeout_s": ("limits", "close_timeout_s", _seconds, None),
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON settings file such as ``{"game_codes": ["apple", "banana"]}``."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise ConfigError(f"--config: cannot read {path}: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise ConfigError(f"--config: {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"--config: {path} must hold a JSON object")
    return document


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: environ[env]
        for name, (_, _, _, env) in _FIELDS.items()
        if env is not None and env in environ
    }


def build_settings(
    *,
    file_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Layer defaults, file, environment and flags (later wins) into one frozen ``Settings``."""
    raw: dict[str, tuple[Any, str]] = {}
    layers = (
        (file_values or {}, "config file", False),
        (_from_environment(environ or {}), "environment", True),
        ({k: v for k, v in (flags or {}).items() if v is not None}, "flag", False),
    )
    for layer, origin, by_env_name in layers:
        for name, value in layer.items():
            if name not in _FIELDS:
                raise ConfigError(f"{name}: unknown setting (from {origin})")
            env = _FIELDS[name][3]
            raw[name] = (value, env if by_env_name and env else name)
    sections: dict[str | None, dict[str, Any]] = {}
    for name, (value, label) in raw.items():
        section, attribute, cast, _ = _FIELDS[name]
        sections.setdefault(section, {})[attribute] = cast(label, value)
    twilio = TwilioSettings(**sections.get("twilio", {}))
    if twilio.auth_token is not None and not twilio.public_url:
        # Signatures cover the URL Twilio requested, which only the public base URL can rebuild.
        raise ConfigError("PHONEPATCH_PUBLIC_URL: required when TWILIO_AUTH_TOKEN is set")
    redis = RedisSettings(**sections.get("redis", {}))
    if not 0 < redis.heartbeat_s < min(redis.lease_ttl_s, redis.claim_ttl_s):
        # A heartbeat slower than a TTL lets a live game's lease lapse and its code be handed out.
        raise ConfigError("redis_heartbeat_s: must be shorter than redis_lease_ttl_s and redis_claim_ttl_s")
    return Settings(
        **sections.get(None, {}),
        twilio=twilio,
        deepgram=DeepgramSettings(**sections.get("deepgram", {})),
        speech=SpeechSettings(**sections.get("speech", {})),
        redis=redis,
        limits=Limits(**sections.get("limits", {})),
    )
