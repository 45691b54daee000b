"""Lint rules for the dashboards, as tests (grafana/dashboard-linter cannot be installed here).

- every panel has a title, a description and a unit;
- every panel and query reads Prometheus through the ``datasource`` variable;
- ``rate``/``irate``/``increase`` only over counters (``_total``, ``_bucket``, ``_count``,
  ``_sum``, or a recording rule over one), and over a window Grafana sizes: ``$__rate_interval``
  in every time series; an instant (stat, bar, table) query may instead use ``$__range`` when
  its title says "selected range", or a fixed window its title names (``1h``, ``7d`` ...);
- every metric a query reads is one the README's "Metrics" table lists, ``up``, or a recording
  rule in deploy/prometheus/rules.
"""

from __future__ import annotations

import re

import pytest
import yaml

from dashboards import build
from tests.dashboards.panels import (
    DASHBOARD_FILES, ROOT, RULE_DIR, dashboards, expressions, is_counter, load, panels, range_calls,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ALL = dashboards()
PANELS = [(name, panel) for name, dashboard in ALL.items() for panel in panels(dashboard)]
EXPRESSIONS = expressions(ALL)


def panel_id(item) -> str:
    name, panel = item
    return f"{name}:{panel.get('title', panel.get('id'))}"


def test_there_are_three_dashboards_with_panels():
    assert sorted(ALL) == ["servicewatch-overview.json", "servicewatch-pipeline.json",
                           "servicewatch-team.json"]
    for name, dashboard in ALL.items():
        assert len(panels(dashboard)) >= 8, name


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_panel_has_title_description_and_unit(item):
    _, panel = item
    assert panel.get("title", "").strip(), "panel without a title"
    assert len(panel.get("description", "").strip()) >= 30, "panel without a real description"
    assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "").strip(), "panel without a unit"


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_panel_reads_the_datasource_variable(item):
    _, panel = item
    assert panel.get("datasource") == DATASOURCE
    assert panel.get("targets"), "panel without a query"
    for target in panel["targets"]:
        assert target.get("datasource") == DATASOURCE, target.get("refId")
        assert target.get("expr", "").strip(), "empty query"
    assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), "repeated refId"


@pytest.mark.parametrize("name", sorted(ALL))
def test_dashboard_has_a_prometheus_datasource_variable_and_unique_ids(name):
    dashboard = ALL[name]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "repeated panel id"
    titles = [panel["title"] for panel in panels(dashboard)]
    assert len(titles) == len(set(titles)), "repeated panel title"
    assert dashboard["uid"] == name.removesuffix(".json")


def test_team_dashboard_has_the_team_variable_and_every_query_uses_it():
    dashboard = ALL["servicewatch-team.json"]
    team = next(v for v in dashboard["templating"]["list"] if v["name"] == "team")
    assert team["type"] == "query"
    assert team["query"] == "label_values(servicewatch_promise_outcomes_total, team)"
    assert team["datasource"] == DATASOURCE
    for expression in expressions({"servicewatch-team.json": dashboard}):
        assert 'team="$team"' in expression.expr, expression.name


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.name)
def test_rate_and_increase_only_on_counters_over_grafana_windows(expression):
    title = expression.panel
    for call in range_calls(expression.expr):
        assert call.metric is not None, (
            f"{call.function}() over something other than a series selector: {call.argument}")
        assert is_counter(call.metric), f"{call.function}() over {call.metric}, which is not a counter"
        assert call.window is not None, f"{call.function}() without a range: {call.argument}"
        if call.window == "$__rate_interval":
            continue
        assert expression.instant, (
            f"time series query with {call.function}(...[{call.window}]): use $__rate_interval")
        if call.window == "$__range":
            assert "selected range" in title, f"$__range in a panel whose title does not say so: {title}"
        else:
            assert re.fullmatch(r"\d+[smhdw]", call.window), f"odd window [{call.window}]"
            assert re.search(rf"\b{call.window}\b", title), (
                f"fixed window [{call.window}] in a panel whose title does not name it: {title}")


def test_the_lint_catches_what_it_should():
    bad = [
        ("rate(servicewatch_promises_open[5m])", "gauge"),
        ("rate(sum(servicewatch_events_total)[5m:])", "subquery"),
        ("increase(servicewatch_events_total)", "no window"),
    ]
    for expr, why in bad:
        call = range_calls(expr)[0]
        assert call.metric is None or not is_counter(call.metric) or call.window is None, why
    (call,) = range_calls('rate(x_total{a="rate(y[1m])"}[$__rate_interval])')
    assert (call.metric, call.window) == ("x_total", "$__rate_interval")
    assert is_counter("team_outcome:servicewatch_promise_outcomes_total:sum")
    assert not is_counter("team:servicewatch_promises_on_time:burnrate1h")


def readme_metrics() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    # Every name in a row's first cell: a row may document two ("`a_total` / `b_total`").
    return {name for cell in re.findall(r"^\| ([^|]*`servicewatch_[^|]*)\|", section, re.M)
            for name in re.findall(r"`(servicewatch_\w+)`", cell)}


def recording_rules() -> set[str]:
    names = set()
    for path in sorted(RULE_DIR.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            names.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return names


def test_queries_read_only_documented_metrics_and_existing_recording_rules():
    documented = readme_metrics()
    assert "servicewatch_promise_outcomes_total" in documented, "README Metrics table not found"
    recorded = recording_rules()
    unknown = set()
    for expression in EXPRESSIONS:
        plain = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression.expr)
        for name in re.findall(r"\b(servicewatch_\w+|[a-z_]+:[\w:]+)", plain):
            if ":" in name:
                if name not in recorded:
                    unknown.add(f"{name} (no such recording rule in {RULE_DIR.relative_to(ROOT)})")
            elif name not in documented and re.sub(r"_(bucket|count|sum)$", "", name) not in documented:
                unknown.add(f"{name} (not in the README's Metrics table)")
    assert not unknown, "\n".join(sorted(unknown))


def test_no_response_target_is_written_outside_the_policy():
    """Targets are the service policy's (per team, channel, priority, business hours): the
    worker judges each answer, and the dashboards and rules only read its verdicts."""
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(RULE_DIR.glob("*.yml"))}
    texts.update({f"{e.name}": e.expr for e in EXPRESSIONS})
    for name, text in texts.items():
        assert not re.search(r"servicewatch_(response|greeting)_seconds_bucket\{[^}]*le=", text), (
            f"{name} reads a response/greeting bucket edge as a target")
    within = {(e.dashboard, e.panel) for e in EXPRESSIONS if "within target" in e.panel.lower()}
    assert within, "no within-target panel"
    for dashboard, panel in sorted(within):
        exprs = [e.expr for e in EXPRESSIONS if (e.dashboard, e.panel) == (dashboard, panel)]
        assert any(re.search(r'servicewatch_(responses|greetings)_total\{[^}]*within_target="true"', expr)
                   for expr in exprs), f"{dashboard} / {panel} does not read the worker's verdicts"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.name)
def test_provisioning_friendly(path):
    dashboard = load(path)
    assert dashboard["schemaVersion"] == 41  # Grafana 11.6
    assert dashboard["editable"] is False  # provisioned from files: UI edits would be lost
    assert "id" not in dashboard or dashboard["id"] is None
    assert "servicewatch" in dashboard["tags"]
