"""Worker settings: flags override ``SERVICEWATCH_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_TOPIC = "servicewatch.events"
DEFAULT_PARTITIONS = 8
DEFAULT_WEB_PORT = 6066
DEFAULT_INGEST_MAX_BYTES = 1024 * 1024
# Short, for a quick takeover of a dead worker's partitions. Kafka refuses less than 6 s
# (group.min.session.timeout.ms); Faust refuses more than its request timeout (90 s).
DEFAULT_SESSION_TIMEOUT = 6.0
SESSION_TIMEOUT_RANGE = (6.0, 90.0)
# `--policy demo`: targets in seconds, for the simulator's compressed time (servicewatch run).
DEMO_POLICY = Path(__file__).with_name("demo_policy.toml")


def env(name: str, default: str) -> str:
    return os.environ.get(f"SERVICEWATCH_{name}", default)


def policy_file(value: str | Path | None) -> Path | None:
    """A policy path as given by flag or environment; ``demo`` names the packaged demo policy."""
    if value is None or str(value) == "":
        return None
    return DEMO_POLICY if str(value) == "demo" else Path(value)


@dataclass(frozen=True)
class Settings:
    broker: str = field(default_factory=lambda: env("BROKER", DEFAULT_BROKER))
    topic: str = field(default_factory=lambda: env("TOPIC", DEFAULT_TOPIC))
    partitions: int = field(default_factory=lambda: int(env("PARTITIONS", str(DEFAULT_PARTITIONS))))
    web_host: str = field(default_factory=lambda: env("WEB_HOST", "127.0.0.1"))
    web_port: int = field(default_factory=lambda: int(env("WEB_PORT", str(DEFAULT_WEB_PORT))))
    grace_seconds: float = field(default_factory=lambda: float(env("GRACE_SECONDS", "2")))
    # An open promise due within this long is "at risk": time to act before it is missed.
    at_risk_seconds: float = field(default_factory=lambda: float(env("AT_RISK_SECONDS", "900")))
    app_id: str = field(default_factory=lambda: env("APP_ID", "servicewatch"))
    data_dir: Path = field(
        default_factory=lambda: Path(env("DATA_DIR", str(Path.home() / ".cache" / "servicewatch")))
    )
    # Prometheus labels must stay bounded, whatever emitters send.
    max_teams: int = field(default_factory=lambda: int(env("MAX_TEAMS", "200")))
    # POST /events: a bearer token to require (unset or empty: open) and a body size limit.
    ingest_token: str | None = field(default_factory=lambda: env("INGEST_TOKEN", "") or None, repr=False)
    ingest_max_bytes: int = field(default_factory=lambda: int(env("INGEST_MAX_BYTES", str(DEFAULT_INGEST_MAX_BYTES))))
    # The service policy (targets, calendars, at-risk thresholds); None: built-in defaults.
    policy_path: Path | None = field(default_factory=lambda: policy_file(env("POLICY", "")))
    findings_topic_name: str = field(default_factory=lambda: env("FINDINGS_TOPIC", ""))
    # How long the broker waits for a silent worker before handing its partitions to others.
    session_timeout: float = field(
        default_factory=lambda: float(env("SESSION_TIMEOUT", str(DEFAULT_SESSION_TIMEOUT)))
    )
    sweep_interval: float = 0.2
    log_level: str = field(default_factory=lambda: env("LOG_LEVEL", "warning"))

    @property
    def heartbeat_interval(self) -> float:
        # Kafka's advice: at most a third of the session timeout; a few beats per session
        # survive one lost beat without a rebalance.
        return min(3.0, self.session_timeout / 6)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def findings_topic(self) -> str:
        return self.findings_topic_name or f"{self.topic}.findings"
