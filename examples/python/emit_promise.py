"""Emit a promise and, a moment later, its delivery, with servicewatch's Python emitter.

Run it next to a worker (which creates the topic), e.g. after `make run` in another terminal:

    python examples/python/emit_promise.py
    SERVICEWATCH_BROKER=kafka://kafka:9092 python examples/python/emit_promise.py --late

The events are validated before they are sent: try `--team "no spaces allowed"` to see the
error name the field. Watch the outcome appear on the worker's /metrics:

    curl -s http://127.0.0.1:6066/metrics | grep 'promise_outcomes_total{.*team="example"' | grep -v ' 0.0'
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta

from schemas.emitter import EmitError, Emitter, InvalidEventError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default=os.environ.get("SERVICEWATCH_BROKER", "kafka://127.0.0.1:9092"))
    parser.add_argument("--topic", default=os.environ.get("SERVICEWATCH_TOPIC", "servicewatch.events"))
    parser.add_argument("--team", default="example")
    parser.add_argument("--due-in", type=float, default=5.0, help="seconds until the promise is due")
    parser.add_argument("--late", action="store_true", help="deliver after the due time (a miss)")
    args = parser.parse_args()

    case_id = f"case-{uuid.uuid4().hex[:8]}"
    promise_id = f"{case_id}-callback"
    try:
        # One Emitter per process; it is thread-safe (share it between request handlers).
        with Emitter(args.broker, args.topic, source="examples/python") as emitter:
            promise = emitter.promise(
                case_id=case_id, team=args.team, channel="phone", promise_id=promise_id,
                kind="callback", due_at=timedelta(seconds=args.due_in),  # or a tz-aware datetime
                wait=True,  # block until Kafka acknowledged it (default: asynchronous)
            )
            print(f"promise {promise_id} sent (event {promise.event_id}), due in {args.due_in:g}s")

            time.sleep(args.due_in + 3 if args.late else 1)
            delivery = emitter.delivery(case_id=case_id, team=args.team, channel="phone",
                                        promise_id=promise_id)
            # Leaving the `with` block flushes: it raises EmitError if anything was not written.
        print(f"delivery sent (event {delivery.event_id}): expect outcome "
              f"{'missed (and a late delivery)' if args.late else 'on_time'} for team {args.team}")
    except InvalidEventError as error:  # names the field at fault; nothing was sent
        print(f"not sent: {error}", file=sys.stderr)
        return 2
    except EmitError as error:  # broker unreachable, topic missing, write refused...
        print(f"Kafka problem: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
