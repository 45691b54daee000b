"""The oracle (streams/core/oracle.py) on small logs whose outcomes are worked out by hand.

Times are seconds after T0; GRACE is the default two seconds. Each record is
(timestamp, key, value) in partition order; ``log()`` numbers the offsets.
"""

import json
from collections import namedtuple
from datetime import datetime, timedelta, timezone

from streams.core.oracle import MISSED, ON_TIME, OPEN, LoggedRecord, judge

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
GRACE = 2.0
LABELS = ("billing", "callback", "external")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return at(seconds).timestamp()


def event(type_, event_id, occurred, case="c1", **fields) -> bytes:
    body = dict(event_id=event_id, type=type_, occurred_at=at(occurred).isoformat(),
                case_id=case, team="billing", channel="phone", **fields)
    return json.dumps(body).encode()


def promise(event_id, promise_id, made, due, case="c1", kind="callback"):
    return event("promise", event_id, made, case=case, promise_id=promise_id,
                 due_at=at(due).isoformat(), kind=kind)


def delivery(event_id, promise_id, occurred, case="c1"):
    return event("delivery", event_id, occurred, case=case, promise_id=promise_id)


def log(*records, partition=0):
    """records: (known at, value) or (known at, key, value); key defaults to c1."""
    out = []
    for offset, record in enumerate(records):
        if len(record) == 2:
            known, value = record
            key = b"c1"
        else:
            known, key, value = record
        out.append(LoggedRecord(partition, offset, ts(known), key, value))
    return out


def outcome_of(result, promise_id, partition=0):
    return result.verdicts[(partition, promise_id)].outcome


def test_a_delivery_before_the_due_time_keeps_the_promise():
    result = judge(log((0, promise("e1", "p1", 0, due=10)), (5, delivery("e2", "p1", 5))))
    assert outcome_of(result, "p1") == ON_TIME
    assert result.outcomes == {(*LABELS, ON_TIME): 1}
    assert not result.late_deliveries and not result.overdue and not result.open


def test_delivered_exactly_at_due_and_known_exactly_at_due_plus_grace_is_on_time():
    result = judge(log((0, promise("e1", "p1", 0, due=10)), (10 + GRACE, delivery("e2", "p1", 10))))
    assert outcome_of(result, "p1") == ON_TIME


def test_an_on_time_delivery_known_after_due_plus_grace_leaves_the_promise_missed_and_late():
    result = judge(log((0, promise("e1", "p1", 0, due=10)),
                       (10 + GRACE + 0.001, delivery("e2", "p1", 9))))
    verdict = result.verdicts[(0, "p1")]
    assert verdict.outcome == MISSED and verdict.late_delivery and not verdict.overdue
    assert result.late_deliveries == {LABELS: 1}


def test_a_delivery_after_the_due_time_is_late():
    result = judge(log((0, promise("e1", "p1", 0, due=10)), (15, delivery("e2", "p1", 15))))
    assert outcome_of(result, "p1") == MISSED
    assert result.late_deliveries == {LABELS: 1}
    assert result.verdicts[(0, "p1")].delivered_at == ts(15)


def test_never_delivered_is_open_until_the_partition_time_passes_due_plus_grace():
    records = log((0, promise("e1", "p1", 0, due=10)), (10 + GRACE, event("greeting", "g", 12, contact_at=at(11).isoformat())))
    assert outcome_of(judge(records), "p1") == OPEN  # exactly due + grace is not past it
    assert judge(records).open == {LABELS: 1}
    # a caught-up partition moves on without records
    result = judge(records, end_of_log_time=ts(10 + GRACE + 0.5))
    assert outcome_of(result, "p1") == MISSED
    assert result.overdue == {LABELS: 1} and not result.late_deliveries
    # the same, given per partition
    assert outcome_of(judge(records, end_of_log_time={0: ts(13)}), "p1") == MISSED
    assert outcome_of(judge(records, end_of_log_time={1: ts(13)}), "p1") == OPEN


def test_a_later_record_on_the_partition_makes_the_miss_certain():
    records = log((0, promise("e1", "p1", 0, due=10)),
                  (12.5, event("greeting", "g", 12, contact_at=at(11).isoformat())))
    assert outcome_of(judge(records), "p1") == MISSED


def test_a_delivery_before_its_promise_counts():
    result = judge(log((3, delivery("e2", "p1", 3)), (4, promise("e1", "p1", 0, due=10))))
    assert outcome_of(result, "p1") == ON_TIME


def test_duplicates_count_once_and_the_first_promise_stands():
    result = judge(log(
        (0, promise("e1", "p1", 0, due=10)),
        (0.5, promise("e1", "p1", 0, due=10)),          # the same event again
        (1, promise("e9", "p1", 1, due=100)),           # the promise announced again: ignored
        (11, delivery("e2", "p1", 11)),                 # late for the first due time
        (12.5, delivery("e2", "p1", 11)),               # ... and again, past due + grace
    ))
    verdict = result.verdicts[(0, "p1")]
    assert verdict.due_at == ts(10) and verdict.outcome == MISSED
    assert result.duplicates == 2
    assert result.events == {"promise": 2, "delivery": 1}
    assert result.late_deliveries == {LABELS: 1}


def test_invalid_events_are_ignored_and_counted_by_reason():
    result = judge(log(
        (0, b"{oops"),
        (0, b"c1", event("teleport", "e0", 0)),
        (1, b"other-case", promise("e1", "p1", 0, due=10)),   # key is not the case id
        (2, None, promise("e2", "p2", 0, due=10)),            # no key
        (3, promise("e3", "p3", 0, due=10)),
    ))
    assert set(result.verdicts) == {(0, "p3")}
    assert result.rejected == {"invalid_json": 1, "unknown_type": 1, "key_mismatch": 2}


def test_partitions_are_judged_each_by_its_own_time():
    p0 = log((0, promise("e1", "p1", 0, due=10)))
    p1 = log((50, b"c2", event("greeting", "g", 50, case="c2", contact_at=at(49).isoformat())),
             partition=1)
    result = judge(p0 + p1)
    assert outcome_of(result, "p1") == OPEN
    assert result.partition_time == {0: ts(0), 1: ts(50)}


def test_a_record_stamped_earlier_than_one_before_it_was_known_only_when_the_log_reached_it():
    # Two emitters with clocks apart: the second record of the partition is stamped 20 s,
    # the delivery after it is stamped 11 s. The log knew the delivery only at 20 s.
    result = judge(log((0, promise("e1", "p1", 0, due=10)),
                       (20, event("greeting", "g", 20, contact_at=at(19).isoformat())),
                       (11, delivery("e2", "p1", 9))))
    assert outcome_of(result, "p1") == MISSED
    assert result.verdicts[(0, "p1")].delivery_known_at == ts(20)


def test_any_qualifying_delivery_keeps_the_promise_not_only_the_first():
    # A delivery stamped after due, then (another system) one that occurred before due,
    # both known within the grace window: the rule reads the log, the promise was kept.
    result = judge(log((0, promise("e1", "p1", 0, due=10)),
                       (10.5, delivery("e2", "p1", 10.5)),
                       (11, delivery("e3", "p1", 9.5))))
    assert outcome_of(result, "p1") == ON_TIME
    assert not result.late_deliveries


def test_a_late_delivery_alone_does_not_end_the_promise_before_its_deadline():
    # Strict reading: until due + grace an on-time delivery could still come.
    result = judge(log((0, promise("e1", "p1", 0, due=10)), (10.5, delivery("e2", "p1", 10.5))))
    assert outcome_of(result, "p1") == OPEN
    assert outcome_of(judge(log((0, promise("e1", "p1", 0, due=10)), (10.5, delivery("e2", "p1", 10.5))),
                            end_of_log_time=ts(13)), "p1") == MISSED


def test_from_kafka_reads_milliseconds():
    Record = namedtuple("Record", "partition offset timestamp key value")
    record = LoggedRecord.from_kafka(Record(3, 7, 1_767_600_000_123, b"k", b"v"))
    assert record == LoggedRecord(3, 7, 1_767_600_000.123, b"k", b"v")


def test_summary_and_sets():
    result = judge(log((0, promise("e1", "p1", 0, due=10)), (1, promise("e2", "p2", 0, due=0)),
                       (5, delivery("e3", "p1", 5))))
    assert result.on_time == {(0, "p1")} and result.missed == {(0, "p2")}
    assert result.still_open == set()
    assert "1 on time, 1 missed" in result.summary()
