"""The state's changelog writes go out in batches (streams.state.PartitionStates.send_pending).

Driven through the processor with stand-in tables that record every changelog write, as
in test_processor; what is under test is what reaches the changelog, and when.
"""

from datetime import timedelta

from streams.state import END_MARK_KEY, ID_BATCH_PREFIX, PartitionStates
from tests.unit.test_processor import NOW, ChangelogTable, event, feed, make_worker


def promise(event_id, promise_id, case_id="c1", due_in=600):
    return event("promise", event_id, case_id=case_id, promise_id=promise_id,
                 due_at=(NOW + timedelta(seconds=due_in)).isoformat(), kind="callback")


def delivery(event_id, promise_id, case_id="c1"):
    return event("delivery", event_id, case_id=case_id, promise_id=promise_id)


def process(processor, records, partition=0, first_offset=0):
    """Like feed(), without the send after the records."""
    for offset, (known_at, key, value) in enumerate(records, first_offset):
        processor.process(partition, offset, known_at.timestamp(), key, value)


def test_nothing_reaches_the_changelog_until_sent_and_then_the_latest_value_of_each_key():
    processor, _, (promises, totals, seen) = make_worker()
    process(processor, [(NOW, b"c1", promise("e1", "p1")), (NOW, b"c1", delivery("e2", "p1"))])
    assert promises.changelog == [] and totals.changelog == [] and seen.changelog == []
    assert processor.states.pending_writes > 0
    assert promises.data["p1"]["record"]["ended_as"] == "on_time"  # the tables' data is current at once
    processor.states.send_pending()
    keys = [key for _, key, _ in promises.changelog]
    assert len(keys) == len(set(keys)), "one write per key and send"
    assert processor.states.pending_writes == 0


def test_an_archive_is_sent_before_the_deletion_of_the_records_it_holds():
    processor, _, (promises, totals, _) = make_worker()
    # p1 is written (made), kept, and forgotten after the retention: archived, then deleted,
    # all before one send; the deletion must not overtake the archive.
    process(processor, [(NOW, b"c1", promise("e1", "p1")), (NOW, b"c1", delivery("e2", "p1"))])
    state = processor.states.get(0)
    state.clock.caught_up(at=(NOW + timedelta(days=8)).timestamp())
    processor.sweep(state)
    order = []
    promises.send_changelog = lambda p, key, value, **_: order.append(("promises", key, value))
    totals.send_changelog = lambda p, key, value, **_: order.append(("totals", key, value))
    processor.states.send_pending()
    assert [(table, key) for table, key, value in order if value is None] == [("promises", "p1")]
    archive = [i for i, (table, _, _) in enumerate(order) if table == "totals"]
    deletion = [i for i, (_, _, value) in enumerate(order) if value is None]
    assert archive and archive[0] < deletion[0], order


def test_event_ids_go_out_as_one_record_per_partition_and_send():
    processor, _, (_, _, seen) = make_worker()
    process(processor, [(NOW, b"c1", event("greeting", f"g{n}", contact_at=NOW.isoformat()))
                        for n in range(5)])
    process(processor, [(NOW, b"c2", event("greeting", "h1", case_id="c2", contact_at=NOW.isoformat()))],
            partition=3)
    processor.states.send_pending()
    by_partition = {p: value for p, key, value in seen.changelog}
    assert [key.startswith(ID_BATCH_PREFIX) for _, key, _ in seen.changelog] == [True, True]
    assert by_partition[0]["ids"] == [f"g{n}" for n in range(5)]
    assert by_partition[3] == {"partition": 3, "ids": ["h1"]}


def test_a_restarted_worker_recognises_ids_sent_in_batches_as_duplicates():
    processor, _, tables = make_worker()
    records = [(NOW, b"c1", event("greeting", f"g{n}", contact_at=NOW.isoformat())) for n in range(3)]
    feed(processor, records)
    restarted, registry, _ = make_worker(tuple(table.replayed(0) for table in tables))
    feed(restarted, records, first_offset=0)
    assert registry.get_sample_value("servicewatch_events_duplicate_total") == 3


def test_ids_written_one_per_record_by_earlier_versions_are_recognised_and_moved_into_a_batch():
    tables = (ChangelogTable(), ChangelogTable(), ChangelogTable())
    tables[2].data["g-old"] = 0  # the event id as key, its partition as value
    restarted, registry, _ = make_worker(tables)
    feed(restarted, [(NOW, b"c1", event("greeting", "g-old", contact_at=NOW.isoformat()))])
    assert registry.get_sample_value("servicewatch_events_duplicate_total") == 1
    seen = tables[2]
    assert ("g-old" not in seen.data) and (0, "g-old", None) in seen.changelog
    assert [value["ids"] for _, key, value in seen.changelog if key.startswith(ID_BATCH_PREFIX)] == [["g-old"]]


def test_id_batches_restored_after_a_restart_are_still_deleted_beyond_the_window():
    tables = (ChangelogTable(), ChangelogTable(), ChangelogTable())
    states = PartitionStates(*tables, grace_seconds=2.0, seen_capacity=2)
    state = states.get(0)
    for batch in range(2):
        states.remember_event(state, f"old{batch}")
        state.next_offset = batch + 1
        states.send_pending()
    replayed = tuple(table.replayed(0) for table in tables)
    restarted = PartitionStates(*replayed, grace_seconds=2.0, seen_capacity=2)
    state = restarted.get(0)
    assert "old0" in state.seen and "old1" in state.seen
    for n in range(2):
        restarted.remember_event(state, f"new{n}")
    state.next_offset = 10
    restarted.send_pending()
    assert sorted(id_ for value in replayed[2].data.values() for id_ in value["ids"]) == ["new0", "new1"]


def test_id_batches_beyond_the_window_of_recent_ids_are_deleted():
    tables = (ChangelogTable(), ChangelogTable(), ChangelogTable())
    states = PartitionStates(*tables, grace_seconds=2.0, seen_capacity=4)
    state = states.get(0)
    for batch in range(4):
        for n in range(2):
            states.remember_event(state, f"b{batch}-{n}")
        state.next_offset = 2 * (batch + 1)
        states.send_pending()
    seen = tables[2]
    remaining = sorted(key for key in seen.data)
    # 8 ids sent in 4 batches of 2; a window of 4 ids needs only the last two batches.
    assert len(remaining) == 2
    assert sorted(id_ for key in remaining for id_ in seen.data[key]["ids"]) == [
        "b2-0", "b2-1", "b3-0", "b3-1"]
    deleted = [key for _, key, value in seen.changelog if value is None]
    assert len(deleted) == 2 and not set(deleted) & set(remaining)


def test_a_released_partitions_changes_still_go_out():
    # A commit may yet cover the events that made them (the sweep releases partitions it
    # no longer finds assigned, which need not follow a commit).
    processor, _, (promises, _, seen) = make_worker()
    process(processor, [(NOW, b"c1", promise("e1", "p1"))], partition=2)
    process(processor, [(NOW, b"c9", promise("e2", "p9", case_id="c9"))], partition=5)
    processor.states.release({2})
    assert 2 not in processor.states
    processor.states.send_pending()
    assert {p for p, _, _ in promises.changelog} == {2, 5}
    assert sorted((p, value["ids"]) for p, _, value in seen.changelog) == [(2, ["e1"]), (5, ["e2"])]
    assert processor.states.pending_writes == 0


def test_event_ids_count_towards_the_changes_waiting_and_a_failed_send_keeps_the_rest():
    processor, _, (promises, _, seen) = make_worker()
    process(processor, [(NOW, b"c1", event("greeting", f"g{n}", contact_at=NOW.isoformat()))
                        for n in range(3)])
    assert processor.states.pending_writes == 3
    process(processor, [(NOW, b"c1", promise("e1", "p1")), (NOW, b"c1", promise("e2", "p2"))],
            first_offset=3)
    sent = []

    def failing_second(partition, key, value, **_):
        if len(sent) == 1:
            raise RuntimeError("producer gone")
        sent.append(key)

    promises.send_changelog = failing_second
    try:
        processor.states.send_pending()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the send error must reach the caller")
    assert sent == ["p1"]
    promises.send_changelog = lambda partition, key, value, **_: sent.append(key)
    processor.states.send_pending()
    assert sent == ["p1", "p2"]  # the one that failed went out with the next send
    assert processor.states.pending_writes == 0


def test_each_changelog_partition_written_since_the_last_mark_gets_one_end_mark():
    processor, _, (promises, totals, seen) = make_worker()
    process(processor, [(NOW, b"c1", promise("e1", "p1")), (NOW, b"c1", promise("e2", "p2"))])
    process(processor, [(NOW, b"c9", promise("e3", "p9", case_id="c9"))], partition=4)
    processor.states.send_pending()
    processor.states.mark_ends()
    marks = sorted((name, p) for name, table in (("promises", promises), ("seen", seen), ("totals", totals))
                   for p, key, value in table.changelog if key == END_MARK_KEY and value is None)
    assert marks == [("promises", 0), ("promises", 4), ("seen", 0), ("seen", 4)]
    for table in (promises, seen):
        assert table.changelog[-1][1] == END_MARK_KEY  # after the partition's writes
    assert END_MARK_KEY not in promises.data
    before = len(promises.changelog) + len(seen.changelog)
    processor.states.mark_ends()  # nothing written since
    assert len(promises.changelog) + len(seen.changelog) == before
