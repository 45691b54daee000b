"""A worker SIGKILLed mid-stream, a replacement started, and a replay by a new group: the
numbers on /metrics are the oracle's, exactly.

The live run (a module fixture, once per broker): two workers in one group share 8
partitions; a producer starts simulated cases for 30 s and sends them to their end (~15 s
more), their promises falling due within the test; 6 s in, one worker is SIGKILLed (no
shutdown, no commit, no leaving the group); the survivor takes all partitions over, then a
replacement is started and takes its share back. Then the survivor is SIGKILLed in turn, and
the same again: every partition has moved to another worker and been restored there from
its changelog, several of them more than once.
When traffic has stopped, every due time + grace has passed and no partition lags:

* test (a): the outcome counters summed over the live workers equal the oracle's totals,
  by team, kind, audience and outcome — nothing lost, nothing counted twice — and so do
  late deliveries, overdue and open; and every promise's persisted outcome (the promises
  changelog) is the oracle's: no miss declared for a promise whose on-time delivery was in
  the log.
* test (c): a fresh group (new app id) replaying the topic from the beginning reaches the
  same numbers as the live run and the oracle, and reads each event once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from streams.core.oracle import LoggedRecord, OracleResult
from tests.faults.support import (
    DUPLICATES,
    EVENTS,
    LATE,
    OUTCOMES,
    REJECTED,
    Fleet,
    Traffic,
    changelog_outcomes,
    counts,
    explain_differences,
    holdings,
    judged,
    last_deadline,
    per_promise_differences,
    read_topic,
    scrape_all,
    settle_on_oracle,
    totals_line,
    wait_for_assignment,
    wait_past,
)
from tests.integration.harness import total, unique_name, wait_for

pytestmark = pytest.mark.broker

PARTITIONS = 8
RATE = 4.0  # cases per second: ~20 events/s
TRAFFIC_SECONDS = 30.0  # cases start for 30 s, then finish (~15 s more)
KILL_AFTER = (6.0, 20.0)  # seconds into the traffic; the second waits for the first round
SEED = 7


@dataclass
class LiveRun:
    fleet: Fleet
    records: list[LoggedRecord]
    oracle: OracleResult
    story: list[str] = field(default_factory=list)
    live_outcomes: dict | None = None  # set by test (a) once it has seen them settle


@pytest.fixture(scope="module")
def killed_run(broker, tmp_path_factory):
    started = time.monotonic()
    fleet = Fleet(broker.url, unique_name("events"), unique_name("sw-fault"),
                  tmp_path_factory.mktemp("killed"), PARTITIONS)
    story: list[str] = []

    def say(line: str) -> None:
        story.append(f"[{time.monotonic() - started:6.1f}s] {line}")

    try:
        first, second = fleet.start(2)
        held = wait_for_assignment([first, second], PARTITIONS, 2)
        say(f"two workers (pids {first.pid}, {second.pid}) hold {[sorted(h) for h in held]}")

        traffic = Traffic(broker.bootstrap, fleet.topic, RATE, TRAFFIC_SECONDS, SEED)
        traffic.start()
        # Two rounds: kill a worker, let the survivor take everything, start a replacement and
        # let it take its share back. Round two kills the survivor of round one, whose state for
        # half the partitions was itself restored from the changelog.
        survivor, victim = first, second
        for round_, kill_after in enumerate(KILL_AFTER, 1):
            wait_for(lambda: traffic.started_at and time.time() >= traffic.started_at + kill_after,
                     kill_after + 60, "traffic to run a while", interval=0.1)
            victim_holds = holdings(scrape_all([victim])[0])
            assert traffic.is_alive(), f"traffic ended before kill {round_}: make it longer\n" + "\n".join(story)
            fleet.kill(victim)
            say(f"round {round_}: SIGKILLed worker pid {victim.pid} holding partitions "
                f"{sorted(victim_holds)}, {traffic.sent} events sent so far")
            held = wait_for_assignment([survivor], PARTITIONS, 1)
            say(f"survivor pid {survivor.pid} took over: holds {sorted(held[0])}")
            (replacement,) = fleet.start(1)
            held = wait_for_assignment([survivor, replacement], PARTITIONS, 2)
            say(f"replacement pid {replacement.pid} joined: {[sorted(h) for h in held]}")
            survivor, victim = replacement, survivor
        traffic.wait_done(TRAFFIC_SECONDS + 120)
        assert not traffic.failed, f"{len(traffic.failed)} sends failed: {traffic.failed[:3]}"
        say(f"traffic done: {traffic.sent} events sent, {traffic.acked} acknowledged")
        records = read_topic(broker.bootstrap, fleet.topic, at_least=traffic.acked)
        assert len(records) == traffic.acked
        wait_past(last_deadline(judged(records)))
        oracle = judged(records)
        say(f"every deadline + grace has passed; oracle: {oracle.summary()}")
        yield LiveRun(fleet, records, oracle, story)
    finally:
        fleet.stop()


def test_two_workers_one_killed_sum_to_the_oracle(killed_run, broker):
    run = killed_run
    fleet = run.fleet
    began = time.monotonic()
    scraped = settle_on_oracle(
        fleet.live, run.oracle, PARTITIONS, timeout=120,
        context=lambda: (explain_differences(broker.bootstrap, fleet.app_id, run.oracle, run.records)
                         + "\n".join(run.story) + fleet.logs(20)))
    run.story.append(f"live workers agree with the oracle after {time.monotonic() - began:.1f}s: "
                     f"{totals_line(scraped)}")
    run.live_outcomes = {"outcomes": counts(scraped, OUTCOMES, True), "late": counts(scraped, LATE)}

    persisted = changelog_outcomes(broker.bootstrap, fleet.app_id)
    differences = per_promise_differences(persisted, run.oracle, run.records)
    assert not differences, ("promises the workers persisted otherwise than the oracle:\n  "
                             + "\n  ".join(differences) + "\n" + "\n".join(run.story))
    missed = {key for key, stored in persisted.items() if stored.outcome == "missed"}
    assert missed == run.oracle.missed
    run.story.append(f"per promise, the promises changelog matches the oracle "
                     f"({len(run.oracle.on_time)} on time, {len(missed)} missed)")
    # Process-local counters restarted with the killed worker: reported, not asserted.
    read = sum(total(m, EVENTS) for m in scraped)
    run.story.append(f"events counted by the live workers: {read:g} "
                     f"(the log holds {sum(run.oracle.events.values())} valid events)")
    print("\n" + "\n".join(run.story))
    fleet.stop()  # the replay test runs on its own


def test_a_replay_by_a_new_group_reaches_the_same_numbers(killed_run, broker, tmp_path):
    run = killed_run
    replay = Fleet(broker.url, run.fleet.topic, unique_name("sw-replay"), tmp_path, PARTITIONS)
    began = time.monotonic()
    try:
        (worker,) = replay.start(1)
        scraped = settle_on_oracle(
            replay.live, run.oracle, PARTITIONS, timeout=120,
            context=lambda: (explain_differences(broker.bootstrap, replay.app_id, run.oracle, run.records)
                             + replay.logs(30)))
        took = time.monotonic() - began
        if run.live_outcomes is not None:
            assert counts(scraped, OUTCOMES, True) == run.live_outcomes["outcomes"]
            assert counts(scraped, LATE) == run.live_outcomes["late"]
        # One clean pass: it read every event once, as the oracle did.
        (metrics,) = scraped
        for type_, n in run.oracle.events.items():
            assert total(metrics, EVENTS, type=type_) == n, type_
        assert total(metrics, EVENTS) == sum(run.oracle.events.values())
        assert total(metrics, DUPLICATES) == run.oracle.duplicates
        assert total(metrics, REJECTED) == sum(run.oracle.rejected.values())
        persisted = changelog_outcomes(broker.bootstrap, replay.app_id)
        assert not per_promise_differences(persisted, run.oracle, run.records)
        print(f"\nreplay by a new group (pid {worker.pid}) of {len(run.records)} records agreed "
              f"with the live run and the oracle after {took:.1f}s: {totals_line(scraped)}")
    finally:
        replay.stop()
