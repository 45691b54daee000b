"""deploy/alertmanager/alertmanager.yml, checked with Debian's amtool (Alertmanager 0.25):
valid, every team's alerts of every severity reach that team's receiver, unknown teams
reach the default one, pages are sent faster than tickets, and pages inhibit the same
team's tickets and warnings."""

from __future__ import annotations

import itertools

import pytest

from tests.deploy.tools import ALERTMANAGER_CONFIG, RULE_FILES, load_yaml, require_tool, run

TEAMS = {
    "billing": "team-billing",
    "support": "team-support",
    "logistics": "team-logistics",
    "field-service": "team-field-service",
    "platform": "platform",
}
SEVERITIES = ("page", "ticket", "warning")


def routes_test(labels: dict[str, str], receiver: str) -> None:
    amtool = require_tool("amtool")
    # --verify.receivers makes amtool exit non-zero when the route ends elsewhere.
    run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
         f"--verify.receivers={receiver}", *(f"{key}={value}" for key, value in labels.items())])


def test_config_is_valid():
    amtool = require_tool("amtool")
    run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])


@pytest.mark.parametrize("team,severity", list(itertools.product(TEAMS, SEVERITIES)))
def test_each_team_gets_its_own_alerts(team, severity):
    routes_test({"alertname": "PromiseMissed", "team": team, "severity": severity}, TEAMS[team])


def alert_labels() -> dict[str, dict]:
    return {rule["alert"]: rule["labels"] for path in RULE_FILES
            for group in load_yaml(path)["groups"] for rule in group["rules"] if "alert" in rule}


@pytest.mark.parametrize("alertname", sorted(alert_labels()))
def test_every_alert_reaches_the_team_it_names(alertname):
    # Pipeline alerts name their team (platform); the others carry the metric's team.
    labels = alert_labels()[alertname]
    team = labels.get("team", "billing")
    routes_test({"alertname": alertname, "team": team, "severity": labels["severity"]}, TEAMS[team])


@pytest.mark.parametrize("severity", SEVERITIES)
def test_a_team_without_a_route_goes_to_default(severity):
    routes_test({"alertname": "PromiseMissed", "team": "returns", "severity": severity}, "default")


def test_every_severity_the_rules_use_is_routed():
    used = {rule["labels"]["severity"] for path in RULE_FILES for group in load_yaml(path)["groups"]
            for rule in group["rules"] if "alert" in rule}
    assert used <= set(SEVERITIES), used
    assert used == set(SEVERITIES), f"severities never used by an alert: {set(SEVERITIES) - used}"


def seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(duration[:-1]) * units[duration[-1]]


def test_pages_go_out_faster_and_more_often_than_tickets():
    route = load_yaml(ALERTMANAGER_CONFIG)["route"]
    assert route["group_by"] == ["alertname", "team"]
    by_matcher = {tuple(child["matchers"]): child for child in route["routes"]}
    page = by_matcher[('severity="page"',)]
    ticket = by_matcher[('severity=~"ticket|warning"',)]
    assert seconds(page["group_wait"]) < seconds(ticket["group_wait"])
    assert seconds(page["repeat_interval"]) < seconds(ticket["repeat_interval"])


def test_a_page_holds_back_the_same_teams_tickets_and_warnings():
    rules = load_yaml(ALERTMANAGER_CONFIG)["inhibit_rules"]
    assert {"source_matchers": ['severity="page"'],
            "target_matchers": ['severity=~"ticket|warning"'],
            "equal": ["team"]} in rules
