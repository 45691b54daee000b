"""Every panel query parses in Prometheus 2.42 (Debian's), checked with ``promtool check rules``.

Each expression, with Grafana's variables replaced ($__rate_interval -> 1m, $__range -> 1h,
$team -> billing), becomes one recording rule of a temporary rule file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.dashboards.panels import expressions, require_tool


def rule_file(exprs: list[str], path: Path) -> Path:
    rules = [{"record": f"dashboard:query_{index}:check", "expr": expr} for index, expr in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]},
                                   sort_keys=False), encoding="utf-8")
    return path


def check_rules(promtool: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_every_panel_query_parses_in_prometheus_2_42(tmp_path):
    promtool = require_tool("promtool")
    found = expressions()
    assert len(found) > 40
    path = rule_file([expression.substituted() for expression in found], tmp_path / "queries.yml")
    result = check_rules(promtool, path)
    listing = "\n".join(f"  rule {index}: {e.name}" for index, e in enumerate(found))
    assert result.returncode == 0, (f"promtool rejected a panel query\n{result.stdout}{result.stderr}"
                                    f"\nrules by index:\n{listing}")
    assert f"SUCCESS: {len(found)} rules found" in result.stdout, result.stdout


def test_promtool_rejects_what_2_42_cannot_run(tmp_path):
    promtool = require_tool("promtool")
    for bad in ["histogram_avg(rate(servicewatch_response_seconds[1m]))",  # newer than 2.42
                "rate(servicewatch_events_total[$__rate_interval])",  # a variable left in
                "sum by (team) (servicewatch_promises_open"]:
        result = check_rules(promtool, rule_file([bad], tmp_path / "bad.yml"))
        assert result.returncode != 0, f"promtool accepted {bad}"
