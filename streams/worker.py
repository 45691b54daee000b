"""Starts one servicewatch worker against a Kafka broker."""

from __future__ import annotations

import logging

from streams.embedded_broker import port_is_free
from streams.settings import Settings
from streams.topics import TopicSpec, ensure_topics, parse_broker_url


class WorkerError(RuntimeError):
    """A problem the operator can fix; its message says how."""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.topic, settings.partitions),
        TopicSpec(settings.dead_letter_topic, settings.partitions),
        TopicSpec(settings.findings_topic, settings.partitions),
    ]


def prepare(settings: Settings) -> None:
    """Check the web port and create the topics Faust will not create by itself."""
    if not port_is_free(settings.web_host, settings.web_port):
        raise WorkerError(
            f"port {settings.web_port} on {settings.web_host} is already in use — "
            "stop whatever is using it or pass --web-port with another port"
        )
    # Faust does not create an agent's source topic, and on Apache Kafka an agent
    # whose topic appears only later never consumes it: create it first.
    created = ensure_topics(parse_broker_url(settings.broker), topic_specs(settings))
    for warning in getattr(created, "warnings", []):
        logging.getLogger("servicewatch").warning(warning)


def quiet_libraries(level_name: str) -> None:
    """Hold the Kafka and Faust libraries to the worker's log level.

    Their loggers were left at DEBUG (filtered only by the handler), so they built a
    few log records per event that nobody saw: measurable CPU on the hot path.
    """
    level = getattr(logging, level_name.upper())
    for name in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(name).setLevel(level)


def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. Raises WorkerError or topics errors before starting."""
    import faust  # imported late: it is slow to import and not needed for --help

    from streams.app import Monitor, service_policy

    policy = service_policy(settings)  # a bad policy file stops here, with what to fix
    prepare(settings)
    quiet_libraries(settings.log_level)
    monitor = Monitor(settings, policy)
    worker = faust.Worker(
        monitor.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
