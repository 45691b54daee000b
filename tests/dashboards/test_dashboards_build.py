"""The committed dashboard JSON is exactly what dashboards/build.py generates."""

from __future__ import annotations

import subprocess
import sys

from dashboards import build
from tests.dashboards.panels import DASHBOARD_FILES, ROOT


def test_committed_dashboards_equal_the_generated_ones():
    generated = build.generate()
    assert sorted(path.name for path in generated) == [path.name for path in DASHBOARD_FILES], (
        "dashboards/ holds a servicewatch-*.json that build.py does not generate (or misses one)")
    differing = build.stale(generated)
    assert not differing, "stale dashboards: run python -m dashboards.build\n" + "\n".join(
        diff[:3000] for _, diff in differing)


def test_check_mode_passes_on_the_committed_files():
    result = subprocess.run([sys.executable, "-m", "dashboards.build", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_finds_an_edited_file(tmp_path):
    path, text = next(iter(build.generate().items()))
    edited = tmp_path / path.name
    edited.write_text(text.replace('"refresh": "30s"', '"refresh": "5s"'), encoding="utf-8")
    differing = build.stale({edited: text})
    assert [found for found, _ in differing] == [edited]
    assert '-  "refresh": "5s"' in differing[0][1] and '+  "refresh": "30s"' in differing[0][1]


def test_generation_is_deterministic():
    assert build.generate() == build.generate()
