"""bench/soak.py, short: 45 s of traffic on the embedded broker. The worker keeps up (its lag
returns to 0 once traffic stops) and its memory grows boundedly (generous: this is a smoke
test of the soak, not the soak; run bench/soak.py --minutes 30 for that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"


def test_soak_help_teaches():
    result = subprocess.run([sys.executable, str(SOAK), "--help"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for words in ("--minutes", "--rate", "--broker-kind", "VmRSS", "servicewatch_consumer_lag_messages",
                  "first third", "Examples:", "Exit status"):
        assert words in result.stdout, words


def test_a_short_soak_keeps_up_and_its_memory_is_bounded(tmp_path):
    report = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "0.75", "--rate", "8", "--interval", "3",
         "--broker-kind", "tansu", "--json", str(report), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    print(result.stdout[-4000:])
    assert result.returncode in (0, 1), f"the soak itself failed:\n{result.stdout}\n{result.stderr}"
    data = json.loads(report.read_text())
    samples, verdict = data["samples"], data["verdict"]
    traffic = [s for s in samples if s["phase"] == "traffic"]
    assert len(traffic) >= 10, samples
    assert samples[-1]["events"] > 300, "the worker processed too little for a soak"
    assert verdict["lag_drained"] and samples[-1]["lag"] == 0, "the lag did not return to 0"
    assert max(s["lag"] for s in traffic) < 500, "the worker fell behind 8 cases/s"
    assert verdict["rss_growth_mb"] < 60, f"RSS grew {verdict['rss_growth_mb']:.1f} MB in 45 s"
    assert max(s["rss_mb"] for s in samples) < 400, "the worker uses far more memory than expected"
