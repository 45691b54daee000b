"""`servicewatch worker` options that shape the worker's Kafka group membership."""

from __future__ import annotations

import pytest

from streams.cli import _settings_from, build_parser
from streams.settings import DEFAULT_SESSION_TIMEOUT


def settings(*argv: str):
    return _settings_from(build_parser().parse_args(["worker", *argv]))


def test_the_session_timeout_flag_reaches_the_settings_with_a_heartbeat_to_match():
    chosen = settings("--session-timeout", "45")
    assert chosen.session_timeout == 45
    assert chosen.heartbeat_interval <= 45 / 3  # several beats per session, as Kafka advises


def test_the_default_session_is_short_with_heartbeats_every_second():
    default = settings()
    assert default.session_timeout == DEFAULT_SESSION_TIMEOUT
    assert default.heartbeat_interval == pytest.approx(DEFAULT_SESSION_TIMEOUT / 6)


def test_the_environment_sets_the_session_timeout(monkeypatch):
    monkeypatch.setenv("SERVICEWATCH_SESSION_TIMEOUT", "30")
    assert settings().session_timeout == 30


@pytest.mark.parametrize("value, says", [
    ("3", "outside 6-1800 s"),
    ("7200", "outside 6-1800 s"),
    ("soon", "not a number of seconds"),
])
def test_a_session_timeout_kafka_would_refuse_is_refused_with_the_range(value, says, capsys):
    with pytest.raises(SystemExit):
        settings("--session-timeout", value)
    assert says in capsys.readouterr().err
