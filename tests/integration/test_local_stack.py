"""`servicewatch run` (the README's `make run`): broker, worker and simulated traffic, then a
clean stop, by its --duration or by SIGTERM, that leaves nothing running behind it."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.embedded_broker import free_port

pytestmark = pytest.mark.broker


def start_run(cwd: Path, *extra: str) -> tuple[subprocess.Popen, int, int]:
    broker_port, web_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "run", "--broker-port", str(broker_port),
         "--web-port", str(web_port), *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, broker_port, web_port


def kill_leftovers(broker_port: int) -> None:
    """After a failure: kill what a run left behind (everything it started names the broker)."""
    marker = f"127.0.0.1:{broker_port}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Wait for output with the deadline in view; readline alone would block on a silent run.
        if not select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
            break
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout:.0f} s; output:\n{''.join(lines)}")


def test_run_shows_promises_ending_and_stops_after_its_duration(tmp_path):
    process, broker_port, web_port = start_run(tmp_path, "--duration", "40")
    try:
        output, _ = process.communicate(timeout=150)
    finally:
        process.kill()
        kill_leftovers(broker_port)
    assert process.returncode == 0, output
    assert "Worker ready. Metrics: http://127.0.0.1:" in output
    ended = [int(on_time) + int(missed)
             for on_time, missed in re.findall(r"promises: (\d+) on time, (\d+) missed", output)]
    assert ended and ended[-1] > 0, f"no promise ended in 40 s of simulated traffic:\n{output}"
    assert output.rstrip().endswith("Stopped.")
    assert not listening(broker_port) and not listening(web_port), "something is still serving"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signalled_run_stops_its_worker_and_broker_first(tmp_path, stop_signal):
    process, broker_port, web_port = start_run(tmp_path)
    try:
        read_until(process, "Simulating", timeout=120)
        assert listening(broker_port) and listening(web_port)
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=60)
        assert "Stopped." in output
        assert process.returncode == 128 + stop_signal, "the shell's code for a signalled stop"
        assert not listening(broker_port), "the broker outlived `servicewatch run`"
        assert not listening(web_port), "the worker outlived `servicewatch run`"
    finally:
        process.kill()
        kill_leftovers(broker_port)


def test_a_run_whose_terminal_went_away_still_stops_its_worker_and_broker(tmp_path):
    """A closed terminal: output fails (here EPIPE; EIO on a tty), then SIGHUP arrives."""
    process, broker_port, web_port = start_run(tmp_path)
    try:
        read_until(process, "Simulating", timeout=120)
        process.stdout.close()
        time.sleep(3)  # a summary line or two is written into the closed pipe
        process.send_signal(signal.SIGHUP)
        process.wait(timeout=60)
        assert not listening(broker_port), "the broker outlived `servicewatch run`"
        assert not listening(web_port), "the worker outlived `servicewatch run`"
    finally:
        process.kill()
        kill_leftovers(broker_port)
