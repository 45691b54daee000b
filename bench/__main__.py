"""servicewatch benchmark harness (issue #11): how fast, how prompt and how big.

On each broker asked for (a fresh one per run: Tansu, the embedded broker, and/or Apache Kafka
4.x from Maven Central jars), it pre-produces ONE backlog of N events (the simulator's case mix
from CasePlanner: greetings, responses, promises, deliveries, 15 % late and 5 % never
delivered, plus ~1 % invalid events) into one topic with --partitions partitions, and has
each consumer drain all of it, each in its own process and its own consumer group:

  (a) raw aiokafka getmany + json.loads         the practical Python limit
  (b) a plain Faust agent: json.loads + count  the framework baseline (raw value serializer)
  (c) the servicewatch worker                  `python -m streams worker`, timed from /metrics
  (d) two servicewatch workers, one group      scale-out: combined events/s

Columns: events counted in the window; seconds from the first event consumed to the last
(for (c)/(d): from the first /metrics poll showing progress to the one showing N, polled
sparingly mid-run and every --poll s near the end, counting servicewatch_events_total + _events_rejected_total +
_events_duplicate_total); events/s; CPU µs per event (user+sys of the consumer process over
that window, from /proc/PID/stat, all threads); peak RSS (VmHWM, MB); the 1-minute load
average just before the row started; and what bounded it: the consumer's CPU as a share of a
core, the broker process's, and the whole machine's (/proc/stat) over the same window, so
other work on the machine shows. Ratios c/b and c/a follow the table.

Then, with the worker from (c) caught up: latency end to end (greeting produced -> visible on
/metrics) and of miss detection (D + grace -> the missed counter increments), p50/p99, and the
findings topic if one exists. Memory per open promise (in-memory PromiseBook and table vs
RocksDB via rocksdict), and recovery time of the promises table with N open promises after a
restart (on Apache Kafka; on Tansu only if it is the only broker asked for). --profile adds a
cProfile run of the worker with its top 25 entries. Details: bench/README.md.

Examples:
  python -m bench                                  # both brokers, 200k events, everything
  python -m bench --broker tansu --events 50000 --skip recovery
  python -m bench --broker kafka --profile         # add a profile of the worker
  python -m bench --quick --broker tansu           # what CI runs: small counts, under a minute

Progress goes to stderr, the tables to stdout. Exit status 0, or 2 if a measurement failed.
Keep other heavy work off the machine while measuring: the figures are only as quiet as it is.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from bench import backlog as backlogs
from bench import baselines, latency, machine, memory, profiling, recovery, report
from bench.throughput import drain, new_workers, stop

SKIPPABLE = ("latency", "memory", "recovery", "scaleout")


class Background(threading.Thread):
    """Runs fn(*args) in a thread (--quick overlaps measurements); get() returns or raises."""

    def __init__(self, fn, *args) -> None:
        super().__init__(daemon=True)
        self.fn, self.args, self.result, self.error = fn, args, None, None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as error:  # re-raised by get()
            self.error = error

    def get(self):
        if self.ident is not None:  # started as a thread, not run in place
            self.join()
        if self.error is not None:
            raise self.error
        return self.result

    @classmethod
    def now_or_later(cls, later: bool, fn, *args) -> "Background":
        job = cls(fn, *args)
        job.start() if later else job.run()
        return job


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", choices=["tansu", "kafka", "both"], default="both",
                        help="which broker(s) to measure on, each started fresh (default: both)")
    parser.add_argument("--events", type=int, default=None,
                        help="backlog size, drained by every consumer (default: 200000; --quick: 2000)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the topics (default: 8)")
    parser.add_argument("--quick", action="store_true",
                        help="small counts for CI: 2000 events, 5 latency samples, 10000 promises in "
                        "memory, 2000 for recovery; memory and recovery run in the background, "
                        "overlapping the rest, to keep it under a minute: a smoke test, not figures")
    parser.add_argument("--latency-samples", type=int, default=None,
                        help="samples per latency measurement (default: 100; --quick: 5)")
    parser.add_argument("--memory-promises", type=int, default=None,
                        help="open promises for the memory comparison (default: 1000000; --quick: 10000)")
    parser.add_argument("--recovery-promises", type=int, default=None,
                        help="open promises produced through a worker before the restart (default: "
                        "1000000, which takes one worker ~10+ min to ingest; --quick: 2000)")
    parser.add_argument("--grace", type=float, default=2.0,
                        help="the worker's --grace, seconds (default: 2, the worker's own default)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the worker under cProfile on the backlog and print the top 25 "
                        "entries by cumulative and by self time")
    parser.add_argument("--profile-events", type=int, default=50_000,
                        help="records the profiled worker processes before it is stopped (default: 50000)")
    parser.add_argument("--poll", type=float, default=0.5,
                        help="shortest time between /metrics polls while workers drain the backlog "
                        "(default: 0.5). A scrape costs the worker 0.05-0.2 s of its event loop, so "
                        "mid-run polls are spaced by the time left (up to 5 s)")
    parser.add_argument("--skip", action="append", default=[], choices=SKIPPABLE,
                        help="leave a measurement out (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result to this file")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="logs and data dirs (default: a temporary directory, removed unless a step fails)")
    return parser


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message} (load {machine.load()})", file=sys.stderr, flush=True)


def start_broker(kind: str, workdir: Path):
    from streams.embedded_broker import EmbeddedBroker, free_port
    from streams.kafka_broker import ApacheKafkaBroker
    if kind == "kafka":
        return ApacheKafkaBroker(port=free_port(), log_file=workdir / "kafka.log").start(timeout=180)
    return EmbeddedBroker(port=free_port(), log_file=workdir / "tansu.log").start()


def run_broker(kind: str, args, workdir: Path, out: dict) -> list[str]:
    """All broker-bound measurements on one fresh broker; returns the printed section."""
    lines = [f"== {kind} =="]
    broker = start_broker(kind, workdir)
    result = out[kind] = {}
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        progress(f"{kind}: producing {args.events:,} events into {topic} ({args.partitions} partitions)")
        backlog = backlogs.create(broker.bootstrap, topic, args.partitions, args.events)
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(backlog.by_type.items()))
        lines.append(f"backlog: {backlog.count:,} records in {args.partitions} partitions, produced in "
                     f"{backlog.produce_seconds:.1f} s; {mix} ({backlog.invalid:,} invalid, "
                     f"{100 * backlog.invalid / backlog.count:.1f} %)")
        recovering = None
        if "recovery" not in args.skip and kind == "kafka":
            if args.quick:  # overlapped with everything else: a smoke test only
                progress(f"{kind}: recovery with {args.recovery_promises:,} open promises, in the background")
                recovering = Background.now_or_later(True, recovery.measure, broker, args.recovery_promises,
                                                     args.partitions, workdir)

        cells, rows = [], {}
        timeout = max(600.0, args.events / 200)

        def add(row, name, events, seconds, cpu, rss, broker_cpu, load1, machine_busy, note=""):
            c, d = report.throughput_row(row, name, events, seconds, cpu, rss, broker_cpu, load1, machine_busy)
            cells.append(c)
            d["note"] = note
            rows[row] = d

        for row, kind_, name in (("a", "raw", "raw aiokafka getmany + json.loads"),
                                 ("b", "faust", "plain Faust agent, json.loads + count")):
            load1 = machine.load1()
            progress(f"{kind}: ({row}) {name}")
            r = baselines.run(kind_, broker, topic, backlog.count, workdir, timeout)
            add(row, name, r["events"], r["seconds"], [r["cpu_seconds"]], [r["peak_rss_mb"]],
                r["broker_cpu_seconds"], load1, r["machine_cores_busy"])

        load1 = machine.load1()
        progress(f"{kind}: (c) servicewatch worker")
        workers = new_workers(broker, topic, args.partitions, workdir,
                              extra_args=("--grace", f"{args.grace:g}"), label="c")
        try:
            d = drain(workers, backlog.count, args.partitions, broker.pid, poll=args.poll, timeout=timeout)
            add("c", "servicewatch worker", d.events, d.seconds, d.cpu_seconds, d.peak_rss_mb,
                d.broker_cpu_seconds, load1, d.machine_cores_busy)
            if "latency" not in args.skip:
                result["latency"] = run_latency(kind, broker, topic, workers[0], args, lines)
        finally:
            stop(workers, timeout=1)  # measured already: no need to wait for Faust's slow shutdown

        if "scaleout" not in args.skip:
            load1 = machine.load1()
            progress(f"{kind}: (d) two servicewatch workers, one group")
            pair = new_workers(broker, topic, args.partitions, workdir, count=2, label="d")
            try:
                d = drain(pair, backlog.count, args.partitions, broker.pid, poll=args.poll, timeout=timeout)
            finally:
                stop(pair, timeout=1)
            add("d", "2 servicewatch workers, 1 group", d.events, d.seconds, d.cpu_seconds,
                d.peak_rss_mb, d.broker_cpu_seconds, load1, d.machine_cores_busy, d.note)

        section = [report.table(report.THROUGHPUT_HEADERS, cells)]
        section += [f"  ({r['row']}) {r['note']}" for r in rows.values() if r.get("note")]
        section += ["  " + line for line in report.ratios(rows)]
        lines[1:1] = section
        result["throughput"] = rows
        result["backlog"] = {"count": backlog.count, "by_type": dict(backlog.by_type),
                             "produce_seconds": backlog.produce_seconds}

        if args.profile:
            progress(f"{kind}: profiling a worker under cProfile")
            text = profiling.profile(broker, topic, args.partitions, backlog.count, workdir,
                                     min(args.profile_events, backlog.count), poll=args.poll)
            lines += ["", f"-- profile of the servicewatch worker on {kind} --", text]
            result["profile"] = text

        if "recovery" not in args.skip and kind == "kafka":
            if recovering is None:
                progress(f"{kind}: recovery with {args.recovery_promises:,} open promises")
                recovering = Background.now_or_later(False, recovery.measure, broker, args.recovery_promises,
                                                     args.partitions, workdir)
            r = recovering.get()
            result["recovery"] = r.__dict__
            caveat = "" if kind == "kafka" else " (Tansu: durability is proven on Apache Kafka, not here)"
            lines += ["", f"recovery of the promises table after a restart{caveat}:",
                      report.table(report.RECOVERY_HEADERS, [report.recovery_row(kind, r)]),
                      "  launch of a fresh worker (empty data dir) -> /metrics shows every promise open "
                      "again; the changelog records are the promises' and their event ids'."]
    finally:
        broker.stop()
    return lines


def run_latency(kind, broker, topic, worker, args, lines) -> dict:
    worker.wait_until_caught_up(120)
    progress(f"{kind}: latency, {args.latency_samples} samples each")
    scrape_s = latency.scrape_seconds(worker.metrics_url)
    held_p50, held_max = latency.loop_held_by_scrapes(worker.metrics_url)
    results = latency.end_to_end(broker.bootstrap, topic, worker.app_id, worker.metrics_url,
                                 args.latency_samples)
    found = latency.findings_topic(broker.bootstrap, topic)
    results += latency.misses(broker.bootstrap, topic, worker.app_id, worker.metrics_url,
                              args.latency_samples, args.grace, found)
    lines += ["", f"latency with the worker caught up (one /metrics scrape takes {1000 * scrape_s:.0f} ms, "
              f"median of 5; while /metrics is scraped back to back, a small request to the "
              f"worker takes {1000 * held_p50:.0f} ms at the median, {1000 * held_max:.0f} ms at most):",
              report.table(report.LATENCY_HEADERS, report.latency_rows(results))]
    out = {lat.name: {"samples": lat.samples, "p50": lat.p50, "p99": lat.p99, "note": lat.note}
           for lat in results}
    out["scrape_seconds"] = scrape_s
    out["small_request_during_scrapes_seconds"] = {"p50": held_p50, "max": held_max}
    return out


def apply_defaults(args) -> None:
    quick = args.quick
    for name, full, small in (("events", 200_000, 2_000), ("latency_samples", 100, 5),
                              ("memory_promises", 1_000_000, 10_000), ("recovery_promises", 1_000_000, 2_000)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if quick:
        args.profile_events = min(args.profile_events, 2_000)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_defaults(args)
    if args.quick:  # a stuck smoke run shows where it is stuck before CI's timeout kills it
        faulthandler.dump_traceback_later(150, exit=False)
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servicewatch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    print("\n".join(machine.header()), flush=True)
    out["machine"] = machine.header()
    failed = False
    brokers = ["tansu", "kafka"] if args.broker == "both" else [args.broker]
    measuring_memory = None
    if "memory" not in args.skip:
        progress(f"memory with {args.memory_promises:,} open promises"
                 + (", in the background" if args.quick else ", after the brokers"))
        # --quick overlaps it with everything else (a smoke test); otherwise it runs alone, last.
        measuring_memory = Background(memory.measure, args.memory_promises)
        if args.quick:
            measuring_memory.start()
    for kind in brokers:
        try:
            section = run_broker(kind, args, workdir / kind, out)
        except Exception as error:  # report and go on with the other broker
            traceback.print_exc()
            failed = True
            section = [f"== {kind} ==", f"FAILED: {type(error).__name__}: {error}"]
        print("\n" + "\n".join(section), flush=True)
    if measuring_memory is not None:
        try:
            if not args.quick:
                measuring_memory.run()
            results = measuring_memory.get()
            out["memory"] = results
            print("\nmemory per open promise (each in a fresh process; RSS = VmRSS delta):\n"
                  + report.table(report.MEMORY_HEADERS, report.memory_rows(results)), flush=True)
        except Exception as error:
            failed = True
            print(f"\nmemory: FAILED: {type(error).__name__}: {error}", flush=True)
    print(f"\nload average at end (1/5/15 min): {machine.load()}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if failed:
        print(f"logs kept in {workdir}", file=sys.stderr)
    elif not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
