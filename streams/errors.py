"""Turns the errors an operator can fix into one clear line instead of a traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def friendly_errors() -> Iterator[None]:
    from streams.embedded_broker import EmbeddedBrokerError
    from streams.kafka_broker import KafkaBrokerError
    from streams.simulation import SimulationError
    from streams.topics import TopicsError
    from streams.worker import WorkerError

    try:
        yield
    except (EmbeddedBrokerError, KafkaBrokerError, SimulationError, TopicsError, WorkerError, ValueError) as error:
        print(f"servicewatch: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("\nservicewatch: stopped.", file=sys.stderr)
        raise SystemExit(130) from None
