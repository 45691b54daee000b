"""Each dashboard validates against Grafana 11.6's dashboard JSON Schema; broken copies do not.

The schema (tests/dashboards/grafana-schema/dashboard.schema.json) is generated from @grafana/schema's
TypeScript types; tests/dashboards/grafana-schema/README.md says how.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from tests.dashboards.panels import DASHBOARD_FILES, SCHEMA, load


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.name)
def test_dashboard_validates(validator, path):
    assert errors(validator, load(path)) == []


def _first_panel(dashboard: dict) -> dict:
    return next(panel for panel in dashboard["panels"] if panel["type"] != "row")


def _with_thresholds(dashboard: dict) -> dict:
    return next(panel["fieldConfig"]["defaults"]["thresholds"] for panel in dashboard["panels"]
                if "thresholds" in panel.get("fieldConfig", {}).get("defaults", {}))


BREAKAGES = {
    "panels not a list": lambda d: d.update(panels={"a": 1}),
    "grid position without height": lambda d: _first_panel(d)["gridPos"].pop("h"),
    "panel title a number": lambda d: _first_panel(d).update(title=42),
    "panel without a type": lambda d: _first_panel(d).pop("type"),
    "no schemaVersion": lambda d: d.pop("schemaVersion"),
    "unknown variable type": lambda d: d["templating"]["list"][0].update(type="sql-magic"),
    "threshold colour missing": lambda d: _with_thresholds(d)["steps"][0].pop("color"),
    "datasource uid a list": lambda d: _first_panel(d)["datasource"].update(uid=["prometheus"]),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda path: path.name)
def test_a_broken_copy_fails(validator, path, breakage):
    broken = copy.deepcopy(load(path))
    BREAKAGES[breakage](broken)
    assert errors(validator, broken), f"the schema accepted a dashboard with {breakage}"
