"""The Prometheus configuration, rules and rule unit tests in deploy/prometheus, checked with
Debian's promtool (Prometheus 2.42: only PromQL it accepts), plus what promtool cannot see:
every alert tested both firing and silent, labelled, annotated, with a runbook entry, and
reading only the metrics the README documents."""

from __future__ import annotations

import re

import pytest

from streams.policy import DEFAULT_OBJECTIVES
from tests.deploy.tools import (PROMETHEUS_DIR, ROOT, RULE_FILES, RULE_TESTS, RUNBOOK,
                                load_yaml, require_tool, run)

SEVERITIES = {"page", "ticket", "warning"}


def alert_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"] if "alert" in rule]


def rule_cases() -> list[dict]:
    return [case for path in RULE_TESTS for test in load_yaml(path)["tests"]
            for case in test.get("alert_rule_test", [])]


def runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_files_are_where_the_stack_expects_them():
    assert RULE_FILES and RULE_TESTS
    assert (PROMETHEUS_DIR / "prometheus.yml").is_file()


def test_prometheus_config_is_valid():
    promtool = require_tool("promtool")
    # Also checks every rule file the config names.
    run([promtool, "check", "config", "--lint=all", str(PROMETHEUS_DIR / "prometheus.yml")])


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_is_valid_and_lint_clean(path):
    promtool = require_tool("promtool")
    # Without --lint-fatal, lint findings still exit 0.
    run([promtool, "check", "rules", "--lint=all", "--lint-fatal", str(path)])


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path):
    promtool = require_tool("promtool")
    run([promtool, "test", "rules", str(path)], timeout=120)


def test_every_alert_is_tested_firing_and_silent():
    cases = rule_cases()
    for rule in alert_rules():
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"no test shows {name} firing"
        assert any(not case.get("exp_alerts") for case in mine), f"no test shows {name} silent"


def test_every_alert_has_severity_team_and_annotations():
    anchors = runbook_anchors()
    for rule in alert_rules():
        name, labels, notes = rule["alert"], rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, f"{name}: severity {labels.get('severity')!r}"
        assert {"summary", "description", "runbook_url"} <= notes.keys(), f"{name}: {sorted(notes)}"
        url = notes["runbook_url"]
        assert url.startswith("docs/runbook.md#"), f"{name}: runbook_url {url}"
        assert url.split("#", 1)[1] in anchors, f"{name}: no heading for {url} in {RUNBOOK}"
    # The team comes from the metric where it exists, so check what the alerts carry when
    # they fire in the unit tests: every firing alert there has a team and its severity.
    severity_of = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
    for case in rule_cases():
        for alert in case.get("exp_alerts") or []:
            labels = alert["exp_labels"]
            assert labels.get("team"), f"{case['alertname']} fired without a team: {labels}"
            assert labels.get("severity") == severity_of[case["alertname"]]


def test_rules_read_only_documented_metrics():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # Every name in a row's first cell: a row may document two ("`a_total` / `b_total`").
    documented = {name for cell in re.findall(r"^\| ([^|]*`servicewatch_[^|]*)\|", readme, flags=re.MULTILINE)
                  for name in re.findall(r"`(servicewatch_\w+)`", cell)}
    assert documented, "no metrics table found in README.md"
    used = set()
    for path in RULE_FILES:
        # Raw metric names only: recorded names carry colons.
        used |= set(re.findall(r"(?<![\w:])servicewatch_\w+", path.read_text(encoding="utf-8")))
    for name in sorted(used):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in documented or base in documented, f"{name} is not in README's metrics table"


def recording_rules(name: str) -> list[dict]:
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"] if rule.get("record") == name]


def test_the_default_on_time_objective_is_the_policys_built_in_one():
    rules = recording_rules("servicewatch:slo_objective:ratio")
    assert len(rules) == 1
    objective = float(re.fullmatch(r"vector\(([\d.]+)\)", rules[0]["expr"].strip()).group(1))
    assert objective == DEFAULT_OBJECTIVES["promise_on_time"]


def test_the_per_team_objectives_fall_back_to_the_policys_built_in_ones():
    """team_objective:servicewatch_objective:ratio is the workers' servicewatch_objective_ratio,
    or, for a team without it, the worker's own built-in objectives (streams/policy.py)."""
    rules = recording_rules("team_objective:servicewatch_objective:ratio")
    assert len(rules) == 1
    expr = rules[0]["expr"]
    assert 'max by (team, objective) (servicewatch_objective_ratio{job="servicewatch"})' in expr
    gauge, *fallbacks = expr.split("or on (team, objective)")
    assert "servicewatch_objective_ratio" in gauge
    found = {}
    for fallback in fallbacks:
        name = re.search(r'"objective", "(\w+)"', fallback).group(1)
        number = re.search(r"label_replace\(\s*([\d.]+) \*", fallback)
        # on time reads the default rule checked above
        found[name] = (DEFAULT_OBJECTIVES["promise_on_time"]
                       if "servicewatch:slo_objective:ratio" in fallback else float(number.group(1)))
    assert found == DEFAULT_OBJECTIVES


def test_objective_alerts_read_the_per_team_objective():
    rules = {rule.get("alert") or rule.get("record"): rule for path in RULE_FILES
             for group in load_yaml(path)["groups"] for rule in group["rules"]}
    for name, objective in (("ResponseTargetBreached", "response_within_target"),
                            ("GreetingTargetBreached", "greeting_within_target")):
        assert f'team_objective:servicewatch_objective:ratio{{objective="{objective}"}}' in rules[name]["expr"]
    burn_rates = [name for name in rules if name.startswith("team:servicewatch_promises_on_time:burnrate")]
    assert len(burn_rates) == 7
    for name in burn_rates:
        assert 'team_objective:servicewatch_objective:ratio{objective="promise_on_time"}' in rules[name]["expr"]
