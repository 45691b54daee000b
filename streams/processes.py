"""Stopping a child process the way every launcher here does: ask, wait, then insist."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` s for a clean exit, then SIGKILL. Idempotent."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
