"""Create the Kafka topics servicewatch needs, with errors an operator can act on.

Uses kafka-python 3.x's admin client. Two Tansu quirks shape this module:
Tansu auto-creates a topic with 1 partition when a client asks for its metadata
(with auto-creation allowed) or produces to it, and it cannot add partitions
later. So topics must be created here, before any producer or consumer touches
them, and an existing topic with too few partitions can only be reported.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

import kafka.errors as kafka_errors
from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)

BROKER_URL_SCHEME = "kafka://"
_POLL_INTERVAL = 0.05
# What kafka-python 3.x raises when it cannot talk to any broker.
_CONNECTION_ERRORS = (kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError,
                      kafka_errors.NodeNotReadyError)


class TopicsError(RuntimeError):
    """Base class for the errors this module raises."""


class BrokerUnreachable(TopicsError):
    """No Kafka broker answered at the bootstrap address."""


class TopicCreationRefused(TopicsError):
    """The broker refused to create topics (authorisation or policy)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        configs = "".join(f", {key}={value}" for key, value in sorted(self.configs.items()))
        return f"{self.name} (partitions={self.partitions}{configs})"


class CreatedTopics(list):
    """Names of the topics ensure_topics created; a plain list of str.

    `warnings` carries problems that did not stop startup, e.g. an existing
    topic with fewer partitions than requested (Tansu cannot add partitions).
    """

    def __init__(self, names=(), warnings=()):
        super().__init__(names)
        self.warnings: list[str] = list(warnings)


def parse_broker_url(url: str) -> str:
    """Turn "kafka://host:port", "host:port" or a comma-separated list of either
    into a kafka-python bootstrap string "host:port[,host:port]"."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("broker URL is empty; expected kafka://host:port or host:port[,host:port]")
    addresses = [_parse_one_address(item.strip(), url) for item in url.split(",")]
    return ",".join(addresses)


def _parse_one_address(item: str, whole: str) -> str:
    expected = "expected kafka://host:port or host:port[,host:port]"
    if item.lower().startswith(BROKER_URL_SCHEME):
        item = item[len(BROKER_URL_SCHEME):]
    if "://" in item:
        raise ValueError(f"unsupported scheme in broker URL {whole!r}; {expected}")
    item = item.rstrip("/")
    if not item or "/" in item or "@" in item or "?" in item:
        raise ValueError(f"invalid broker address {item!r} in {whole!r}; {expected}")
    host, sep, port = item.rpartition(":")
    if not sep or not host:
        raise ValueError(f"broker address {item!r} in {whole!r} has no port; {expected}")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"invalid host in {item!r}; write IPv6 addresses as [addr]:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port {port!r} in broker URL {whole!r}; {expected}")
    return f"{host}:{int(port)}"


def _split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    addresses = []
    for item in parse_broker_url(bootstrap).split(","):
        host, _, port = item.rpartition(":")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _unreachable(bootstrap: str) -> BrokerUnreachable:
    return BrokerUnreachable(
        f"cannot reach a Kafka broker at {bootstrap} — is it running? "
        "set --broker / SERVICEWATCH_BROKER"
    )


def _any_address_accepts(addresses: list[tuple[str, int]]) -> bool:
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            continue
    return False


def _open_admin(bootstrap: str, timeout: float) -> KafkaAdminClient:
    """Return a connected admin client, or raise BrokerUnreachable by the deadline.

    A plain TCP probe comes first because kafka-python, when nothing listens,
    logs an ERROR per retry and leaves its I/O thread running after __init__
    fails; the probe keeps the common "broker not started" case quiet and fast.
    """
    deadline = time.monotonic() + timeout
    addresses = _split_bootstrap(bootstrap)
    while not _any_address_accepts(addresses):
        if time.monotonic() >= deadline:
            raise _unreachable(bootstrap)
        time.sleep(_POLL_INTERVAL)
    remaining_ms = max(int((deadline - time.monotonic()) * 1000), 500)
    try:
        return KafkaAdminClient(
            bootstrap_servers=parse_broker_url(bootstrap),
            client_id="servicewatch-admin",
            bootstrap_timeout_ms=remaining_ms,
            request_timeout_ms=remaining_ms,
        )
    except _CONNECTION_ERRORS as exc:
        raise _unreachable(bootstrap) from exc


def wait_for_broker(bootstrap: str, timeout: float = 15.0) -> str:
    """Block until a broker at `bootstrap` answers a metadata request; return its cluster id."""
    admin = _open_admin(bootstrap, timeout)
    try:
        return admin.describe_cluster()["cluster_id"]
    except kafka_errors.KafkaError as exc:
        raise _unreachable(bootstrap) from exc
    finally:
        admin.close()


def _replication_factor(broker_count: int) -> int:
    return 1 if broker_count <= 1 else min(3, broker_count)


def _kafka_topics_command(bootstrap: str, spec: TopicSpec, replication: int) -> str:
    configs = "".join(f" --config {key}={value}" for key, value in sorted(spec.configs.items()))
    return (f"kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {spec.name}"
            f" --partitions {spec.partitions} --replication-factor {replication}{configs}")


def _refused(bootstrap: str, specs: list[TopicSpec], replication: int, reason: str) -> TopicCreationRefused:
    lines = [f"the broker at {bootstrap} refused to create topics ({reason}).",
             "Ask an operator to create them by hand:"]
    lines += [f"  {spec.describe()}\n    {_kafka_topics_command(bootstrap, spec, replication)}"
              for spec in specs]
    return TopicCreationRefused("\n".join(lines))


def _partition_warning(spec: TopicSpec, actual: int) -> str:
    return (f"topic {spec.name} has {actual} partition(s), fewer than the {spec.partitions} "
            "requested; parallelism is limited to that. Recreate the topic to change it "
            "(partitions cannot be added on Tansu).")


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout: float = 15.0) -> CreatedTopics:
    """Create the topics in `specs` that do not exist yet; return the names created.

    Waits at most `timeout` seconds for the broker before raising BrokerUnreachable.
    """
    deadline = time.monotonic() + timeout
    admin = _open_admin(bootstrap, timeout)
    try:
        return _ensure_with_admin(admin, bootstrap, list(specs), deadline)
    except _CONNECTION_ERRORS as exc:
        raise _unreachable(bootstrap) from exc
    finally:
        admin.close()


def _existing_partition_counts(admin: KafkaAdminClient) -> dict[str, int]:
    # Asks for all topics (topics=None), never for the names we are about to
    # create, so no broker can auto-create them with 1 partition.
    return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics()}


def _ensure_with_admin(admin, bootstrap, specs, deadline) -> CreatedTopics:
    existing = _existing_partition_counts(admin)
    missing = [spec for spec in specs if spec.name not in existing]
    replication = _replication_factor(len(admin.describe_cluster()["brokers"]))
    created: list[str] = []
    if missing:
        created = _create(admin, bootstrap, missing, replication, deadline)
        if len(created) < len(missing):  # some lost a creation race: re-read them
            existing = _existing_partition_counts(admin)
    warnings = [_partition_warning(spec, existing[spec.name])
                for spec in specs
                if spec.name not in created and existing.get(spec.name, spec.partitions) < spec.partitions]
    for warning in warnings:
        log.warning(warning)
    return CreatedTopics(created, warnings)


def _create(admin, bootstrap, missing, replication, deadline) -> list[str]:
    remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1000)
    request = {spec.name: {"num_partitions": spec.partitions, "replication_factor": replication,
                           "configs": dict(spec.configs)} for spec in missing}
    try:
        response = admin.create_topics(request, timeout_ms=remaining_ms, raise_errors=False)
    except kafka_errors.AuthorizationError as exc:
        raise _refused(bootstrap, missing, replication, type(exc).__name__) from exc

    refused, failed, created = [], [], []
    by_name = {spec.name: spec for spec in missing}
    for result in response["topics"]:
        error = kafka_errors.for_code(result["error_code"])
        if error is kafka_errors.NoError:
            created.append(result["name"])
        elif error is kafka_errors.TopicAlreadyExistsError:
            continue  # another process created it between our check and our request
        elif issubclass(error, (kafka_errors.AuthorizationError, kafka_errors.PolicyViolationError)):
            refused.append((by_name[result["name"]], error.__name__))
        else:
            failed.append(f"{result['name']}: {error.__name__} {result.get('error_message') or ''}".rstrip())
    if refused:
        reason = ", ".join(sorted({name for _, name in refused}))
        raise _refused(bootstrap, [spec for spec, _ in refused], replication, reason)
    if failed:
        raise TopicsError(f"could not create topics on {bootstrap}: " + "; ".join(failed))
    if created:
        admin.wait_for_topics(created, timeout_ms=max(int((deadline - time.monotonic()) * 1000), 1000))
        log.info("created Kafka topics: %s", ", ".join(created))
    return created
