"""Helpers for the deployment tests: where the files are, and the external tools they run.

promtool, amtool, prometheus and prometheus-alertmanager come from Debian's `prometheus`
and `prometheus-alertmanager` packages. A missing tool fails the test under CI (CI=true),
so CI can never pass by skipping, and skips it elsewhere with the install line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # pyyaml, in the dev extras

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"

INSTALL_HINT = ("apt-get update && apt-get install -y --no-install-recommends "
                "prometheus prometheus-alertmanager")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, hint: str) -> None:
    """Fail (under CI) or skip (elsewhere) because ``what`` is not available."""
    message = f"{what} is not installed; install it with: {hint}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_tool(name: str, hint: str = INSTALL_HINT) -> str:
    path = shutil.which(name)
    if path is None:
        missing(name, hint)
    return path


def run(command: list[str], timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``command``; fail with its whole output unless it exits 0."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            cwd=cwd, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result


def load_yaml(path: Path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)
