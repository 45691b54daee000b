"""The two baselines, each run as its own process with its own consumer group.

(a) ``raw``:   aiokafka ``getmany`` + ``json.loads`` of every value: the practical Python limit.
(b) ``faust``: a plain Faust app whose one agent decodes (``json.loads``) and counts. It is a
    default ``faust.App`` with these settings only: ``value_serializer="raw"`` and
    ``key_serializer="raw"`` on the topic (the agent gets bytes and decodes them itself, as the
    worker does), ``consumer_auto_offset_reset="earliest"`` (to read the backlog), the web
    server off (no port clashes), the in-memory store, and a 6 s session timeout with 1 s
    heartbeats (Tansu holds a group join for half the session timeout; no effect on Kafka
    throughput). Default event loop (asyncio, no uvloop).

Both count from the first record consumed to the N-th: seconds, CPU seconds (user+sys from
/proc/self/stat, all threads) over that window, and peak RSS (VmHWM). They also read the
broker's CPU over the same window, to say what bounded the figure.

The parent runs ``python -m bench.baselines raw|faust ...``; the child writes one JSON object
to --out when it has consumed N records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.proc import CpuWindow, MachineWindow, cpu_seconds, peak_rss_mb
from streams.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]


class Window:
    """First-to-last measurement inside the consuming process."""

    def __init__(self, broker_pid: int | None) -> None:
        self.started: float | None = None
        self.cpu0 = 0.0
        self.broker = CpuWindow(broker_pid)
        self.machine = MachineWindow()

    def first(self) -> None:
        self.started = time.monotonic()
        self.cpu0 = cpu_seconds()
        self.broker.mark()
        self.machine.mark()

    def result(self, events: int) -> dict:
        seconds = time.monotonic() - self.started
        return {"events": events, "seconds": seconds, "cpu_seconds": cpu_seconds() - self.cpu0,
                "peak_rss_mb": peak_rss_mb(), "broker_cpu_seconds": self.broker.stop(),
                "machine_cores_busy": self.machine.stop()}


# -- (a) raw aiokafka --------------------------------------------------------------------------
async def _raw(bootstrap: str, topic: str, events: int, broker_pid: int | None) -> dict:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    await consumer.start()
    window = Window(broker_pid)
    count = bad = 0
    loads = json.loads
    try:
        while count < events:
            batches = await consumer.getmany(timeout_ms=500)
            if batches and window.started is None:
                window.first()
            for records in batches.values():
                for record in records:
                    try:
                        loads(record.value)
                    except ValueError:
                        bad += 1
                count += len(records)
        result = window.result(count)
        result["undecodable"] = bad
        return result
    finally:
        await consumer.stop()


# -- (b) plain Faust ---------------------------------------------------------------------------
def _faust(broker_url: str, topic_name: str, events: int, broker_pid: int | None, out: Path) -> None:
    import faust

    datadir = tempfile.mkdtemp(prefix="bench-faust-")
    app = faust.App(f"bench-faust-{uuid.uuid4().hex[:8]}", broker=broker_url, store="memory://",
                    datadir=datadir, web_enabled=False, consumer_auto_offset_reset="earliest",
                    broker_session_timeout=6, broker_heartbeat_interval=1)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    window = Window(broker_pid)
    state = {"count": 0, "bad": 0, "written": False}
    loads = json.loads

    @app.agent(topic)
    async def count(stream):
        async for value in stream:
            if window.started is None:
                window.first()
            try:
                loads(value)
            except ValueError:
                state["bad"] += 1
            state["count"] += 1
            if state["count"] >= events and not state["written"]:
                result = window.result(state["count"])
                result["undecodable"] = state["bad"]
                out.write_text(json.dumps(result))
                state["written"] = True

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


# -- the parent side ---------------------------------------------------------------------------
def run(kind: str, broker, topic: str, events: int, workdir: Path, timeout: float) -> dict:
    """Run baseline ``kind`` ("raw" or "faust") in a child process; return its result."""
    out = workdir / f"{kind}-{uuid.uuid4().hex[:6]}.json"
    log = open(workdir / f"{kind}.log", "ab")
    command = [sys.executable, "-m", "bench.baselines", kind, "--broker", broker.url, "--topic", topic,
               "--events", str(events), "--out", str(out)]
    if broker.pid:
        command += ["--broker-pid", str(broker.pid)]
    child = subprocess.Popen(command, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    started = time.monotonic()
    try:
        while not (out.exists() and out.stat().st_size):
            if child.poll() is not None and not out.exists():
                raise RuntimeError(f"baseline {kind} exited with {child.returncode}; see {log.name}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"baseline {kind} did not consume {events} events in {timeout:.0f}s; "
                                   f"see {log.name}")
            time.sleep(0.2)
        time.sleep(0.05)
        return json.loads(out.read_text())
    finally:
        stop_process(child, timeout=15)
        log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["raw", "faust"])
    parser.add_argument("--broker", required=True, help="kafka://host:port")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--broker-pid", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.kind == "raw":
        import asyncio
        from streams.topics import parse_broker_url
        result = asyncio.run(_raw(parse_broker_url(args.broker), args.topic, args.events, args.broker_pid))
        args.out.write_text(json.dumps(result))
    else:
        _faust(args.broker, args.topic, args.events, args.broker_pid, args.out)


if __name__ == "__main__":
    main()
