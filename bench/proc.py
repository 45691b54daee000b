"""What a process has cost so far, read from /proc (Linux): CPU seconds and resident memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of the process, all its threads (/proc/PID/stat utime+stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _status_kb(pid: int | str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size now (VmRSS), in MiB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size so far (VmHWM), in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


class CpuWindow:
    """CPU seconds a process spent between mark() and stop(), or None if it is gone."""

    def __init__(self, pid: int | str | None) -> None:
        self.pid = pid
        self.start: float | None = None
        self.seconds: float | None = None

    def mark(self) -> "CpuWindow":
        self.start = self._read()
        return self

    def stop(self) -> float | None:
        end = self._read()
        if self.start is not None and end is not None:
            self.seconds = end - self.start
        return self.seconds

    def _read(self) -> float | None:
        if self.pid is None:
            return None
        try:
            return cpu_seconds(self.pid)
        except (OSError, IndexError, ValueError):
            return None


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / _TICKS, total / _TICKS


class MachineWindow:
    """How busy the whole machine was between mark() and stop(), in cores (2.0 = both busy)."""

    def mark(self) -> "MachineWindow":
        self.start = machine_cpu_seconds()
        self.started_at = time.monotonic()
        return self

    def stop(self) -> float:
        busy, _ = machine_cpu_seconds()
        return (busy - self.start[0]) / max(time.monotonic() - self.started_at, 1e-9)
