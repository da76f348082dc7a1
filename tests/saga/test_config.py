from __future__ import annotations

from pathlib import Path

import pytest

from saga.config import Settings
from saga.errors import ConfigError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == ""
    assert settings.partitions == 6
    assert settings.replication_factor == 1
    assert settings.state_dir == Path(".saga")
    assert settings.topic("saga.inbox") == "saga.inbox"


def test_environment_and_overrides() -> None:
    env = {"SAGA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "SAGA_PARTITIONS": "12",
           "SAGA_STATE_DIR": "/tmp/x", "SAGA_TOPIC_PREFIX": "dev."}
    settings = Settings.from_env(env, partitions=3, topic_prefix=None)
    assert settings.bootstrap_servers == "127.0.0.1:9"
    assert settings.partitions == 3  # a flag beats the environment
    assert settings.state_dir == Path("/tmp/x")
    assert settings.topic("saga.journal") == "dev.saga.journal"


@pytest.mark.parametrize(("env", "message"), [
    ({"SAGA_PARTITIONS": "many"}, "not a whole number"),
    ({"SAGA_PARTITIONS": "0"}, "partitions must be >= 1"),
    ({"SAGA_REPLICATION_FACTOR": "-1"}, "replication_factor must be >= 1"),
])
def test_bad_values_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env(env)
    assert info.value.hint


def test_flags_are_parsed_like_their_variables() -> None:
    # `saga --state-dir X` passes text; the embedded broker needs a Path.
    settings = Settings.from_env({}, state_dir="here", partitions="3")
    assert settings.state_dir == Path("here")
    assert settings.partitions == 3
    with pytest.raises(ConfigError, match="SAGA_PARTITIONS"):
        Settings.from_env({}, partitions="three")


def test_a_secret_may_come_from_a_mounted_file(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret-from-file\n")
    settings = Settings.from_env({"SAGA_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
                                  "SAGA_API_TOKEN": "given", "SAGA_API_TOKEN_FILE": "/nope"})
    assert settings.kafka_sasl_password.reveal() == "s3cret-from-file"
    assert settings.api_token.reveal() == "given"  # the variable itself wins
    with pytest.raises(ConfigError) as unreadable:
        Settings.from_env({"SAGA_PAYLOAD_KEYS_FILE": str(tmp_path / "absent")})
    assert "SAGA_PAYLOAD_KEYS_FILE" in unreadable.value.message
    assert "SAGA_PAYLOAD_KEYS" in (unreadable.value.hint or "")
    assert "s3cret" not in repr(settings)
