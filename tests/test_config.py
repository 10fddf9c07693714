"""Settings: defaults, then ``--config`` file, then environment, then flags; errors name the key."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from phonepatch.shared.config import (
    DEFAULT_DEEPGRAM_URL,
    Secret,
    Settings,
    build_settings,
    read_config_file,
)
from phonepatch.shared.errors import ConfigError

API_KEY = "dg-secret-0123456789abcdef"
FILE_URL = "ws://file.example/listen"
ENV_URL = "wss://env.example/listen"


def write_config(path: Path, document: Any) -> Path:
    path.write_bytes(orjson.dumps(document))
    return path


class TestDefaults:
    def test_listens_on_loopback_port_5000(self) -> None:
        settings = build_settings()
        assert (settings.host, settings.port) == ("127.0.0.1", 5000)

    def test_codes_are_the_strings_0_to_99(self) -> None:
        assert build_settings().game_codes == tuple(str(n) for n in range(100))

    def test_run_without_accounts(self) -> None:
        settings = build_settings()
        assert settings.deepgram.api_key is None
        assert settings.deepgram.url == DEFAULT_DEEPGRAM_URL
        assert settings.twilio.phone_number == ""

    def test_empty_layers_equal_the_dataclass_defaults(self) -> None:
        assert build_settings(file_values={}, environ={}, flags={}) == Settings()


class TestLayering:
    def test_file_overrides_defaults(self) -> None:
        settings = build_settings(file_values={"host": "0.0.0.0", "port": 6000})
        assert (settings.host, settings.port) == ("0.0.0.0", 6000)

    def test_environment_overrides_file(self) -> None:
        settings = build_settings(
            file_values={"host": "0.0.0.0", "port": 6000, "deepgram_url": FILE_URL},
            environ={"PHONEPATCH_HOST": "10.0.0.1", "PHONEPATCH_PORT": "7000", "DEEPGRAM_URL": ENV_URL},
        )
        assert (settings.host, settings.port, settings.deepgram.url) == ("10.0.0.1", 7000, ENV_URL)

    def test_flags_override_environment(self) -> None:
        settings = build_settings(
            file_values={"port": 6000},
            environ={"PHONEPATCH_HOST": "10.0.0.1", "PHONEPATCH_PORT": "7000"},
            flags={"host": "192.0.2.1", "port": 8000},
        )
        assert (settings.host, settings.port) == ("192.0.2.1", 8000)

    def test_unset_flags_leave_lower_layers_alone(self) -> None:
        """argparse gives None for flags not passed; those must not hide the environment."""
        settings = build_settings(
            environ={"PHONEPATCH_PORT": "7000"}, flags={"host": None, "port": None}
        )
        assert (settings.host, settings.port) == ("127.0.0.1", 7000)

    def test_file_value_survives_when_no_later_layer_sets_it(self) -> None:
        settings = build_settings(
            file_values={"deepgram_url": FILE_URL}, environ={"PHONEPATCH_PORT": "7000"}
        )
        assert settings.deepgram.url == FILE_URL

    def test_unrelated_environment_variables_are_ignored(self) -> None:
        assert build_settings(environ={"HOME": "/root", "PHONEPATCH_TYPO": "1"}) == Settings()

    def test_environment_values_are_cast(self) -> None:
        settings = build_settings(
            environ={"PHONEPATCH_LOG_LEVEL": "DEBUG", "PHONEPATCH_MAX_MESSAGE_BYTES": "1024"}
        )
        assert settings.log_level == "debug"
        assert settings.limits.max_message_bytes == 1024

    def test_recognition_processes_leave_a_core_to_the_loop_and_zero_means_threads(self) -> None:
        assert 1 <= Settings().speech.stt_processes <= 4
        assert build_settings(environ={"PHONEPATCH_STT_PROCESSES": "0"}).speech.stt_processes == 0
        assert build_settings(file_values={"stt_processes": 3}).speech.stt_processes == 3

    def test_file_values_reach_nested_sections(self) -> None:
        settings = build_settings(
            file_values={
                "twilio_phone_number": "+15550001111",
                "deepgram_connect_timeout_s": 2,
                "queue_depth": 8,
                "keypad_pause_s": 0.5,
            }
        )
        assert settings.twilio.phone_number == "+15550001111"
        assert settings.deepgram.connect_timeout_s == 2.0
        assert settings.limits.queue_depth == 8
        assert settings.limits.keypad_pause_s == 0.5


class TestGameCodes:
    def test_config_file_sets_the_codes_in_order(self, tmp_path: Path) -> None:
        path = write_config(tmp_path / "codes.json", {"game_codes": ["apple", "banana", "cherry"]})
        settings = build_settings(file_values=read_config_file(path))
        assert settings.game_codes == ("apple", "banana", "cherry")

    def test_integer_codes_become_strings(self) -> None:
        assert build_settings(file_values={"game_codes": [7, 42, "x"]}).game_codes == ("7", "42", "x")

    def test_duplicate_codes_are_rejected(self) -> None:
        with pytest.raises(ConfigError, match="game_codes"):
            build_settings(file_values={"game_codes": ["apple", "banana", "apple"]})

    def test_an_integer_and_its_string_are_duplicates(self) -> None:
        with pytest.raises(ConfigError, match="game_codes"):
            build_settings(file_values={"game_codes": [1, "1"]})

    def test_empty_list_is_rejected(self) -> None:
        with pytest.raises(ConfigError, match="game_codes"):
            build_settings(file_values={"game_codes": []})

    @pytest.mark.parametrize("codes", ["apple", {"a": 1}, 5, None])
    def test_non_list_is_rejected(self, codes: Any) -> None:
        with pytest.raises(ConfigError, match="game_codes"):
            build_settings(file_values={"game_codes": codes})

    @pytest.mark.parametrize("code", [True, 1.5, None, ["a"], "   "])
    def test_codes_that_are_not_strings_or_integers_are_rejected(self, code: Any) -> None:
        with pytest.raises(ConfigError, match="game_codes"):
            build_settings(file_values={"game_codes": ["apple", code]})


class TestErrorsNameTheKey:
    @pytest.mark.parametrize(
        ("environ", "name"),
        [
            ({"PHONEPATCH_PORT": "abc"}, "PHONEPATCH_PORT"),
            ({"PHONEPATCH_PORT": "70000"}, "PHONEPATCH_PORT"),
            ({"PHONEPATCH_PORT": "-1"}, "PHONEPATCH_PORT"),
            ({"PHONEPATCH_LOG_LEVEL": "loud"}, "PHONEPATCH_LOG_LEVEL"),
            ({"DEEPGRAM_URL": "https://api.deepgram.com/v1/listen"}, "DEEPGRAM_URL"),
            ({"PHONEPATCH_MAX_MESSAGE_BYTES": "lots"}, "PHONEPATCH_MAX_MESSAGE_BYTES"),
            ({"PHONEPATCH_STT_PROCESSES": "-1"}, "PHONEPATCH_STT_PROCESSES"),
        ],
    )
    def test_bad_environment_value_names_the_variable(self, environ: dict[str, str], name: str) -> None:
        with pytest.raises(ConfigError, match=name):
            build_settings(environ=environ)

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("port", "abc"),
            ("port", 70000),
            ("port", 1.5),
            ("port", True),
            ("host", 5),
            ("log_level", "loud"),
            ("deepgram_url", "http://example.com"),
            ("deepgram_api_key", 12345),
            ("start_timeout_s", 0),
            ("start_timeout_s", -1),
            ("start_timeout_s", "soon"),
            ("start_timeout_s", "inf"),
            ("queue_depth", 0),
            ("max_message_bytes", 0),
            ("max_game_text_chars", -5),
        ],
    )
    def test_bad_file_value_names_the_file_key(self, key: str, value: Any) -> None:
        with pytest.raises(ConfigError, match=key):
            build_settings(file_values={key: value})

    def test_bad_flag_names_the_setting(self) -> None:
        with pytest.raises(ConfigError, match="port"):
            build_settings(flags={"port": 70000})

    def test_environment_error_is_labelled_with_the_variable_not_the_file_key(self) -> None:
        with pytest.raises(ConfigError) as caught:
            build_settings(file_values={"port": 6000}, environ={"PHONEPATCH_PORT": "abc"})
        assert str(caught.value).startswith("PHONEPATCH_PORT:")

    @pytest.mark.parametrize("layer", ["file_values", "flags"])
    def test_unknown_key_is_rejected_by_name(self, layer: str) -> None:
        with pytest.raises(ConfigError, match="gmae_codes"):
            build_settings(**{layer: {"gmae_codes": ["apple"]}})

    def test_error_does_not_echo_a_secret_of_the_wrong_type(self) -> None:
        with pytest.raises(ConfigError) as caught:
            build_settings(file_values={"deepgram_api_key": 987654321})
        assert "987654321" not in str(caught.value)


class TestConfigFile:
    def test_reads_a_json_object(self, tmp_path: Path) -> None:
        path = write_config(tmp_path / "settings.json", {"port": 6000, "game_codes": ["a"]})
        assert read_config_file(path) == {"port": 6000, "game_codes": ["a"]}

    def test_missing_file_mentions_config_flag(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="--config"):
            read_config_file(tmp_path / "absent.json")

    def test_invalid_json_mentions_config_flag(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.json"
        path.write_text('{"game_codes": [', encoding="utf-8")
        with pytest.raises(ConfigError, match="--config"):
            read_config_file(path)

    @pytest.mark.parametrize("document", [["apple"], "apple", 42, None])
    def test_non_object_mentions_config_flag(self, tmp_path: Path, document: Any) -> None:
        path = write_config(tmp_path / "list.json", document)
        with pytest.raises(ConfigError, match="--config"):
            read_config_file(path)

    def test_directory_mentions_config_flag(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="--config"):
            read_config_file(tmp_path)

    def test_unknown_key_in_file_is_rejected_by_name(self, tmp_path: Path) -> None:
        path = write_config(tmp_path / "typo.json", {"prot": 6000})
        with pytest.raises(ConfigError, match="prot"):
            build_settings(file_values=read_config_file(path))


class TestSecret:
    def test_repr_and_str_are_masked(self) -> None:
        secret = Secret(API_KEY)
        assert API_KEY not in repr(secret)
        assert API_KEY not in str(secret)
        assert API_KEY not in f"{secret}"

    def test_reveal_returns_the_value(self) -> None:
        assert Secret(API_KEY).reveal() == API_KEY

    def test_environment_key_is_wrapped(self) -> None:
        settings = build_settings(environ={"DEEPGRAM_API_KEY": API_KEY})
        assert isinstance(settings.deepgram.api_key, Secret)
        assert settings.deepgram.api_key.reveal() == API_KEY

    def test_settings_repr_hides_the_key(self) -> None:
        settings = build_settings(environ={"DEEPGRAM_API_KEY": API_KEY})
        assert API_KEY not in repr(settings)
        assert API_KEY not in str(settings)
        assert API_KEY not in repr(settings.deepgram)

    def test_empty_key_means_no_key(self) -> None:
        assert build_settings(environ={"DEEPGRAM_API_KEY": ""}).deepgram.api_key is None

    def test_secrets_compare_by_value(self) -> None:
        assert Secret(API_KEY) == Secret(API_KEY)
        assert Secret(API_KEY) != Secret("other")
        assert Secret(API_KEY) != API_KEY


class TestFrozen:
    def test_settings_cannot_be_assigned(self) -> None:
        settings = build_settings()
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.port = 1  # type: ignore[misc]

    @pytest.mark.parametrize("section", ["twilio", "deepgram", "limits"])
    def test_sections_cannot_be_assigned(self, section: str) -> None:
        part = getattr(build_settings(), section)
        name = dataclasses.fields(part)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, name, None)

    def test_codes_are_an_immutable_tuple(self) -> None:
        settings = build_settings(file_values={"game_codes": ["apple"]})
        assert isinstance(settings.game_codes, tuple)


def run_cli(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m phonepatch.services`` with no PHONEPATCH/DEEPGRAM settings inherited."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PHONEPATCH_", "DEEPGRAM_"))}
    return subprocess.run(
        [sys.executable, "-m", "phonepatch.services", *args],
        env={**clean, **(environ or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestCommandLine:
    def test_missing_config_file_exits_2_naming_the_flag(self) -> None:
        result = run_cli("serve", "--config", "/nonexistent.json")
        assert result.returncode == 2
        assert "--config" in result.stderr

    def test_bad_environment_value_exits_2_naming_the_variable(self) -> None:
        result = run_cli("serve", environ={"PHONEPATCH_PORT": "abc"})
        assert result.returncode == 2
        assert "PHONEPATCH_PORT" in result.stderr

    def test_bad_code_list_exits_2_naming_the_key(self, tmp_path: Path) -> None:
        path = write_config(tmp_path / "dupes.json", {"game_codes": ["apple", "apple"]})
        result = run_cli("serve", "--config", str(path))
        assert result.returncode == 2
        assert "game_codes" in result.stderr

    def test_secret_in_a_bad_setting_is_not_printed(self) -> None:
        result = run_cli("serve", environ={"DEEPGRAM_API_KEY": API_KEY, "PHONEPATCH_PORT": "abc"})
        assert result.returncode == 2
        assert API_KEY not in result.stderr + result.stdout


class TestTwilioSignatureSettings:
    def test_auth_token_needs_the_public_url(self):
        with pytest.raises(ConfigError, match="PHONEPATCH_PUBLIC_URL"):
            build_settings(environ={"TWILIO_AUTH_TOKEN": "token"})

    def test_public_url_must_be_http(self):
        with pytest.raises(ConfigError, match="PHONEPATCH_PUBLIC_URL"):
            build_settings(environ={"PHONEPATCH_PUBLIC_URL": "phone.example.net"})

    def test_auth_token_is_a_masked_secret(self):
        settings = build_settings(
            environ={"TWILIO_AUTH_TOKEN": "tw-secret-9", "PHONEPATCH_PUBLIC_URL": "https://phone.example.net/"}
        )
        assert settings.twilio.public_url == "https://phone.example.net"
        assert settings.twilio.auth_token.reveal() == "tw-secret-9"
        assert "tw-secret-9" not in repr(settings)

    def test_seconds_reject_booleans(self):
        with pytest.raises(ConfigError, match="keypad_pause_s"):
            build_settings(file_values={"keypad_pause_s": True})
