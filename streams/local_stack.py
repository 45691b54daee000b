"""``servicewatch run``: an embedded broker, one worker and simulated traffic on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

from streams.embedded_broker import EmbeddedBroker
from streams.kafka_broker import ApacheKafkaBroker
from streams.processes import stop_process
from streams.scrape import summarize
from streams.settings import Settings
from streams.simulation import run_simulation
from streams.settings import DEMO_POLICY
from streams.worker import WorkerError, prepare

WORKER_READY_TIMEOUT = 90.0
SUMMARY_EVERY = 2.0


def run_local_stack(args: Namespace, settings: Settings) -> None:
    state_dir = Path.cwd() / ".servicewatch"
    state_dir.mkdir(exist_ok=True)
    settings = replace(settings, data_dir=state_dir / "data")
    if args.broker_kind == "kafka":
        say(f"Starting Apache Kafka on 127.0.0.1:{args.broker_port} (first time: jars from Maven Central) ...")
        broker = ApacheKafkaBroker(port=args.broker_port, log_file=state_dir / "broker.log")
    else:
        say(f"Starting the embedded Kafka-compatible broker (Tansu) on 127.0.0.1:{args.broker_port} ...")
        broker = EmbeddedBroker(port=args.broker_port, log_file=state_dir / "broker.log")
    worker = None
    simulator_stop = threading.Event()
    stop_on_signals(signal.SIGTERM, signal.SIGHUP)
    try:
        broker.start()
        settings = replace(settings, broker=broker.url)
        prepare(settings)
        worker = start_worker(settings, state_dir / "worker.log")
        metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
        say(f"Starting a worker (log: {state_dir / 'worker.log'}) ...")
        wait_for_worker(worker, metrics_url, state_dir / "worker.log")
        base_url = metrics_url.removesuffix("/metrics")
        say(f"Worker ready. Metrics: {metrics_url}")
        say(f"Worklists: {base_url}/promises/overdue  {base_url}/promises/at-risk")
        say(f"Findings are published to the topic {settings.findings_topic}")
        if settings.policy_path is None:
            say(f"Policy: {DEMO_POLICY} (targets in seconds, to match the simulated traffic)")
        simulator = start_simulator(broker.bootstrap, settings.topic, args.rate, simulator_stop)
        say(f"Simulating {args.rate:g} customer cases per second. Press Ctrl-C to stop.\n")
        show_summaries(metrics_url, worker, simulator, args.duration)
    except KeyboardInterrupt as interrupt:
        stopped_by = interrupt.args[0] if interrupt.args else None
    else:
        stopped_by = None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a repeated signal must not cut the clean-up short
        say("\nStopping simulator, worker and broker ...")
        simulator_stop.set()
        if worker is not None:
            stop_process(worker, timeout=15.0)
        broker.stop()
        say("Stopped.")
    if isinstance(stopped_by, signal.Signals):
        raise SystemExit(128 + stopped_by)  # the shell's convention for "ended by a signal"


def stop_on_signals(*signals: signal.Signals) -> None:
    """Stop as Ctrl-C does on these signals too. The broker and the worker run in sessions of
    their own (so a terminal's Ctrl-C reaches only us); killed by `timeout`, a supervisor
    or a closed terminal without this, we would leave them running, holding their ports."""
    def interrupt(signum: int, _frame) -> None:
        raise KeyboardInterrupt(signal.Signals(signum))

    for sig in signals:
        signal.signal(sig, interrupt)


def say(text: str, end: str = "\n") -> None:
    try:
        print(text, end=end, flush=True)
    except OSError:  # a closed terminal (EIO) or pipe: keep going, the clean-up matters more
        pass


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "streams", "worker",
        "--broker", settings.broker, "--topic", settings.topic,
        "--partitions", str(settings.partitions),
        "--web-port", str(settings.web_port), "--web-host", settings.web_host,
        "--grace", str(settings.grace_seconds), "--at-risk", str(settings.at_risk_seconds),
        "--log-level", settings.log_level,
        "--session-timeout", str(settings.session_timeout),
        "--policy", str(settings.policy_path or "demo"),
        "--findings-topic", settings.findings_topic,
    ]
    env = dict(os.environ, SERVICEWATCH_DATA_DIR=str(settings.data_dir))
    with open(log_path, "ab") as log:
        # Its own process group, so the terminal's Ctrl-C reaches only us and we
        # stop the worker in order (simulator first, then worker, then broker).
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def wait_for_worker(worker: subprocess.Popen, metrics_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise WorkerError(f"the worker exited with code {worker.returncode}; its log:\n{tail(log_path)}")
        try:
            summarize(metrics_url, timeout=1.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise WorkerError(f"the worker did not serve {metrics_url} within {WORKER_READY_TIMEOUT:.0f} s; its log:\n{tail(log_path)}")


def start_simulator(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> threading.Thread:
    errors: list[BaseException] = []

    def send() -> None:
        try:
            run_simulation(bootstrap, topic, cases_per_second=rate, stop=stop)
        except BaseException as error:  # reported by show_summaries
            errors.append(error)

    thread = threading.Thread(target=send, name="simulator", daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def show_summaries(
    metrics_url: str, worker: subprocess.Popen, simulator: threading.Thread, duration: float | None
) -> None:
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    while duration is None or time.monotonic() - started < duration:
        time.sleep(SUMMARY_EVERY)
        if worker.poll() is not None:
            raise WorkerError(f"the worker stopped unexpectedly (exit code {worker.returncode})")
        if simulator.errors:  # type: ignore[attr-defined]
            raise simulator.errors[0]  # type: ignore[attr-defined]
        try:
            line = summarize(metrics_url).line()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            line = f"(metrics unavailable: {error})"
        elapsed = time.monotonic() - started
        if interactive:
            say(f"\r\033[K[{elapsed:5.0f}s] {line}", end="")
        else:
            say(f"[{elapsed:5.0f}s] {line}")
    if interactive:
        print()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
