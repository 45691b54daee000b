"""`servicewatch worker` options that shape the worker's Kafka group membership."""

from __future__ import annotations

from dataclasses import replace

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
    ("3", "outside 6-90 s"),
    ("120", "outside 6-90 s"),
    ("soon", "not a number of seconds"),
])
def test_a_session_timeout_kafka_or_faust_would_refuse_is_refused_with_the_range(value, says, capsys):
    with pytest.raises(SystemExit):
        settings("--session-timeout", value)
    assert says in capsys.readouterr().err


def test_the_environment_is_held_to_the_same_range(monkeypatch, capsys):
    monkeypatch.setenv("SERVICEWATCH_SESSION_TIMEOUT", "3")
    with pytest.raises(SystemExit):
        settings()
    assert "outside 6-90 s" in capsys.readouterr().err


def test_the_longest_session_allowed_builds_a_consumer_faust_accepts(tmp_path):
    # Faust refuses a session longer than its request timeout when it builds the consumer.
    import asyncio

    from streams.app import Monitor
    from streams.settings import SESSION_TIMEOUT_RANGE

    longest = settings("--session-timeout", f"{SESSION_TIMEOUT_RANGE[1]:g}", "--broker", "kafka://127.0.0.1:9")

    async def build():
        monitor = Monitor(replace(longest, data_dir=tmp_path))
        thread = monitor.app.consumer._thread
        return thread._create_worker_consumer(monitor.app.transport)

    assert asyncio.run(build())._session_timeout_ms == SESSION_TIMEOUT_RANGE[1] * 1000
