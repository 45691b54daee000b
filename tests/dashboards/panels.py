"""Reading the committed dashboards: their panels, PromQL, and the functions over range vectors.

The tests read the JSON files (what Grafana gets), not the Python that makes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards"
# Kept out of dashboards/: Grafana provisioning loads every .json file under it.
SCHEMA = Path(__file__).parent / "grafana-schema" / "dashboard.schema.json"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("servicewatch-*.json"))
RULE_DIR = ROOT / "deploy" / "prometheus" / "rules"

# What Grafana would put in place of its variables, for a Prometheus that scrapes every second.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "1h", "$team": "billing"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
INSTALL_HINT = "apt-get update && apt-get install -y --no-install-recommends prometheus"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def dashboards() -> dict[str, dict]:
    return {path.name: load(path) for path in DASHBOARD_FILES}


def panels(dashboard: dict) -> list[dict]:
    """Every panel that shows data (rows are headings, not panels), rows' children included."""
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


@dataclass(frozen=True)
class Expression:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"

    def substituted(self, substitutions: dict[str, str] = SUBSTITUTIONS) -> str:
        return substitute(self.expr, substitutions)


def expressions(only: dict[str, dict] | None = None) -> list[Expression]:
    found = []
    for file_name, dashboard in (only or dashboards()).items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append(Expression(file_name, panel.get("title", "?"), target.get("refId", "?"),
                                        target["expr"], bool(target.get("instant"))))
    return found


def substitute(expr: str, substitutions: dict[str, str] = SUBSTITUTIONS) -> str:
    # Longest names first: $__range must not eat the start of a longer variable.
    for name in sorted(substitutions, key=len, reverse=True):
        expr = expr.replace(name, substitutions[name])
    leftover = re.findall(r"\$\{?\w+", expr)
    assert not leftover, f"unsubstituted variables {leftover} in {expr}"
    return expr


# -- PromQL, just enough to lint it ----------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')


@dataclass(frozen=True)
class RangeCall:
    function: str
    argument: str
    metric: str | None  # the selector's metric name; None when the argument is not a selector
    window: str | None  # what is inside [...]; None if there is none


def _blank_strings(expr: str) -> str:
    """``expr`` with string literals' contents replaced by spaces (same length)."""
    return _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', expr)


def range_calls(expr: str, functions: tuple[str, ...] = ("rate", "irate", "increase")) -> list[RangeCall]:
    """Every call of ``functions`` in ``expr``, with its argument's metric name and window."""
    plain = _blank_strings(expr)
    calls = []
    for match in re.finditer(r"\b(" + "|".join(functions) + r")\s*\(", plain):
        start = match.end()
        depth, index = 1, start
        while depth and index < len(plain):
            depth += {"(": 1, ")": -1}.get(plain[index], 0)
            index += 1
        argument = plain[start:index - 1].strip()
        selector = re.fullmatch(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?\s*\[([^\]]+)\]", argument)
        window = re.search(r"\[([^\]]+)\]\s*$", argument)
        calls.append(RangeCall(match.group(1), expr[start:index - 1].strip(),
                               selector.group(1) if selector else None,
                               window.group(1) if window else None))
    return calls


def is_counter(metric: str) -> bool:
    """A counter series, or a recording rule ``level:metric:operations`` over one."""
    if ":" in metric:
        parts = metric.split(":")
        metric = parts[1] if len(parts) == 3 else metric
    return metric.endswith(COUNTER_SUFFIXES)


# -- tools -----------------------------------------------------------------------------------------
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The tool's path; fails under CI when it is missing, skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; install it with: {INSTALL_HINT}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path
