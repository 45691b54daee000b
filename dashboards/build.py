"""Builds servicewatch's Grafana dashboards with grafana-foundation-sdk (Grafana 11.6).

    python -m dashboards.build          # rewrite dashboards/*.json
    python -m dashboards.build --check  # exit 1 if a committed file differs from the code

The JSON files are provisioned into Grafana from files (deploy/grafana/provisioning): edit
this module, never the JSON. Every panel reads Prometheus through the dashboard variable
``datasource``; rates use ``$__rate_interval``; "over the selected range" panels use
``$__range``; panels named after a fixed window (1h, 24h, 7d, 30d) use that window.

Promise outcomes are read from the recording rule
``team_outcome:servicewatch_promise_outcomes_total:sum`` (deploy/prometheus/rules): the
totals live in partition state and move between workers, so they are summed over workers
before any ``increase`` (a per-worker increase would count a moving partition twice). Each
team's objectives are the service policy's, read from the recording rule
``team_objective:servicewatch_objective:ratio`` (built-in 0.95 on time, 0.90 within target for a
team without them), so the dashboards and the alerts hold a team to the same numbers. Renegotiations,
cancellations and answered inquiries live in partition state too and are read from their
recorded sums over workers (``team:servicewatch_promise_revisions_total:sum`` ...).

Response and greeting targets are the service policy's (per team, channel and priority, in
business hours; docs/policy.md): the worker judges each answer and counts it in
``servicewatch_{responses,greetings}_total{within_target}``, so no target is written here.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Iterable

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

HERE = Path(__file__).resolve().parent

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job="servicewatch"'  # the scrape job the recording rules and alerts select
TEAM = 'team="$team"'
MISSED = 'outcome="missed"'
ON_TIME = 'outcome="on_time"'

OUTCOMES = "team_outcome:servicewatch_promise_outcomes_total:sum"  # recorded: sum by (team, outcome)
OBJECTIVES = "team_objective:servicewatch_objective:ratio"  # recorded: the policy's, per team
ON_TIME_OBJECTIVE = 'objective="promise_on_time"'
RESPONSE_OBJECTIVE = 'objective="response_within_target"'
GREETING_OBJECTIVE = 'objective="greeting_within_target"'
BURN_RATE = "team:servicewatch_promises_on_time:burnrate{window}"
SLO_PERIOD = "30d"  # the error budget period the burn-rate alerts assume
FAST_BURN, SLOW_BURN = 14.4, 6  # thresholds of OnTimeSLOFastBurn (1h/5m and 6h/30m pairs)

# Recorded sums over workers of partition-held counters (deploy/prometheus/rules/recording.yml).
REVISIONS = "team:servicewatch_promise_revisions_total:sum"
CANCELLED = "team:servicewatch_promises_cancelled_total:sum"
# Recorded per-team customer figures, by window ("1h" or "1d").
RENEGOTIATED_SHARE = "team:servicewatch_promises_renegotiated:ratio_rate{window}"
CANCELLED_SHARE = "team:servicewatch_promises_cancelled:ratio_rate{window}"
CSAT = "team:servicewatch_feedback_csat:ratio_rate{window}"
AVERAGE_SCORE = "team:servicewatch_feedback_score:avg_rate{window}"
COMPLAINTS_PER_1000 = "team:servicewatch_complaints_per_1000_interactions:ratio_rate{window}"
OLDEST_OVERDUE = "servicewatch_promise_overdue_oldest_seconds"  # 10 per worker, by rank
WORKLIST_HINT = ("For case and promise ids ask each worker's worklist, GET /promises/overdue "
                 "(?team=, ?limit= 1..1000; most overdue first).")

DASHBOARD_FILES = {
    "servicewatch-overview": "servicewatch-overview.json",
    "servicewatch-team": "servicewatch-team.json",
    "servicewatch-pipeline": "servicewatch-pipeline.json",
}

RED, ORANGE, GREEN, BLUE = "red", "orange", "green", "blue"

# Clicking a team's value on the overview opens its drill-down, same time range and Prometheus.
TEAM_LINK = (db.DashboardLink("Drill down into ${__field.labels.team}")
             .url("/d/servicewatch-team/servicewatch-team?var-team=${__field.labels.team}"
                  "&${__url_time_range}&${datasource:queryparam}"))


# -- PromQL ----------------------------------------------------------------------------------------
def sel(metric: str, *matchers: str) -> str:
    """``metric{m1, m2}`` (or the bare name without matchers)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def on_time_ratio(window: str, *matchers: str, by: str = "team") -> str:
    """Share of promises kept on time among those that ended in ``window``; absent if none did."""
    kept = sel(OUTCOMES, *matchers, ON_TIME)
    ended = sel(OUTCOMES, *matchers)
    return (f"sum by ({by}) (increase({kept}[{window}]))\n"
            f"  / (sum by ({by}) (increase({ended}[{window}])) > 0)")


def budget_remaining(*matchers: str) -> str:
    """Share of the SLO period's error budget not yet spent (negative once overspent)."""
    return (f"1 - (1 - ({on_time_ratio(SLO_PERIOD, *matchers)}))\n"
            f"  / on (team) (1 - {sel(OBJECTIVES, *matchers, ON_TIME_OBJECTIVE)})")


def quantile(q: float, histogram: str, by: str | None, *matchers: str,
             window: str = "$__rate_interval", observed_only: bool = False) -> str:
    """Classic histogram_quantile over ``histogram``'s buckets, per ``by`` (or over everything).

    ``observed_only`` drops the NaN that histogram_quantile gives a series without observations
    in the window (``NaN >= 0`` is false), so a table shows no empty rows.
    """
    buckets = sel(f"{histogram}_bucket", JOB, *matchers)
    labels = f"{by}, le" if by else "le"
    expr = f"histogram_quantile({q}, sum by ({labels}) (rate({buckets}[{window}])))"
    return f"{expr} >= 0" if observed_only else expr


def within_target(counter: str, *matchers: str, by: str = "channel",
                  window: str = "$__range") -> str:
    """Share of ``counter``'s answers (servicewatch_responses_total or _greetings_total) the
    worker judged within the policy's target, per ``by``; absent where there were none."""
    within = sel(counter, JOB, *matchers, 'within_target="true"')
    judged = sel(counter, JOB, *matchers)
    return (f"sum by ({by}) (rate({within}[{window}]))\n"
            f"  / (sum by ({by}) (rate({judged}[{window}])) > 0)")


def settled_rate(counter: str, *matchers: str) -> str:
    """Per minute, from a recorded sum over workers of a partition-held counter."""
    return f"sum(rate({sel(counter, *matchers)}[$__rate_interval])) * 60"


# -- panels ----------------------------------------------------------------------------------------
def query(expr: str, legend: str | None = None, *, instant: bool = False,
          as_table: bool = False) -> prom.Dataquery:
    target = prom.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend is not None:
        target.legend_format(legend)
    if instant:
        target.instant()
    else:
        target.range()
    if as_table:
        target.format(pm.PromQueryFormat.TABLE)
    return target


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=value, color=color) for value, color in steps]))


ON_TIME_COLOURS = thresholds((None, RED), (0.9, ORANGE), (0.95, GREEN))
COUNT_BAD_COLOURS = thresholds((None, GREEN), (1, RED))
COUNT_WARN_COLOURS = thresholds((None, GREEN), (1, ORANGE))
NEUTRAL = thresholds((None, BLUE))
CSAT_COLOURS = thresholds((None, RED), (0.7, ORANGE), (0.8, GREEN))
SCORE_COLOURS = thresholds((None, RED), (3.5, ORANGE), (4, GREEN))
COMPLAINT_COLOURS = thresholds((None, GREEN), (5, ORANGE), (10, RED))
SHARE_COLOURS = thresholds((None, GREEN), (0.1, ORANGE), (0.25, RED))


def _finish(panel, title: str, description: str, unit: str,
            targets: Iterable[prom.Dataquery], width: int, height: int):
    panel.title(title).description(description).unit(unit).datasource(DATASOURCE)
    for index, target in enumerate(targets):
        panel.with_target(target.ref_id(chr(ord("A") + index)))
    return panel.span(width).height(height)


def graph(title: str, description: str, unit: str, targets: Iterable[prom.Dataquery], *,
          width: int = 12, height: int = 8, log_scale: bool = False, min_zero: bool = True,
          colours: db.ThresholdsConfig | None = None, threshold_lines: bool = False,
          decimals: int | None = None) -> timeseries.Panel:
    panel = (timeseries.Panel()
             .line_width(2).fill_opacity(8).show_points(cm.VisibilityMode.NEVER)
             .span_nulls(False)
             .legend(common_builders.VizLegendOptions()
                     .display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(common_builders.VizTooltipOptions()
                      .mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    if log_scale:
        panel.scale_distribution(common_builders.ScaleDistributionConfig()
                                 .type(cm.ScaleDistribution.LOG).log(10))
    elif min_zero:
        panel.min(0)
    if colours is not None:
        panel.thresholds(colours)
    if threshold_lines:
        panel.thresholds_style(common_builders.GraphThresholdsStyleConfig()
                               .mode(cm.GraphThresholdsStyleMode.DASHED))
    if decimals is not None:
        panel.decimals(decimals)
    return _finish(panel, title, description, unit, targets, width, height)


def big_numbers(title: str, description: str, unit: str, targets: Iterable[prom.Dataquery], *,
                width: int = 8, height: int = 6, colours: db.ThresholdsConfig = NEUTRAL,
                decimals: int | None = None, min_value: float | None = None,
                max_value: float | None = None) -> stat.Panel:
    panel = (stat.Panel()
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
             .color_mode(cm.BigValueColorMode.BACKGROUND)
             .graph_mode(cm.BigValueGraphMode.NONE)
             .justify_mode(cm.BigValueJustifyMode.AUTO)
             .orientation(cm.VizOrientation.AUTO)
             .thresholds(colours)
             .no_value("no data yet"))
    if decimals is not None:
        panel.decimals(decimals)
    if min_value is not None:
        panel.min(min_value)
    if max_value is not None:
        panel.max(max_value)
    return _finish(panel, title, description, unit, targets, width, height)


def bars(title: str, description: str, unit: str, targets: Iterable[prom.Dataquery], *,
         width: int = 8, height: int = 7, colours: db.ThresholdsConfig = NEUTRAL,
         min_value: float | None = 0, max_value: float | None = None,
         decimals: int | None = None) -> bargauge.Panel:
    panel = (bargauge.Panel()
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
             .orientation(cm.VizOrientation.HORIZONTAL)
             .show_unfilled(True)
             .thresholds(colours)
             .no_value("no data yet"))
    if min_value is not None:
        panel.min(min_value)
    if max_value is not None:
        panel.max(max_value)
    if decimals is not None:
        panel.decimals(decimals)
    return _finish(panel, title, description, unit, targets, width, height)


def columns(title: str, description: str, unit: str, key: str,
            named_targets: list[tuple[str, prom.Dataquery]], *, width: int = 12, height: int = 8,
            column_units: dict[str, str] | None = None, decimals: int | None = None) -> table.Panel:
    """A table: one row per ``key`` value, one column per instant query, named by ``named_targets``."""
    # Grafana's organize transformation orders by the fields' names before renaming them.
    values = [f"Value #{chr(ord('A') + index)}" for index in range(len(named_targets))]
    rename = {value: name for value, (name, _) in zip(values, named_targets)}
    order = {key: 0, **{value: index + 1 for index, value in enumerate(values)}}
    panel = (table.Panel()
             .show_header(True)
             .cell_height(cm.TableCellHeight.SM)
             .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {"Time": True},
                 "indexByName": order,
                 "renameByName": rename,
             }))
             .sort_by([common_builders.TableSortByFieldState().display_name(key)])
             .no_value("–"))
    if decimals is not None:
        panel.decimals(decimals)
    for name, column_unit in (column_units or {}).items():
        panel.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=column_unit)])
    return _finish(panel, title, description, unit,
                   [target for _, target in named_targets], width, height)


def series_table(title: str, description: str, unit: str, target: prom.Dataquery,
                 label_columns: list[str], value_name: str, *, width: int = 12, height: int = 8,
                 decimals: int | None = None) -> table.Panel:
    """A table of one instant query: a row per series, ``label_columns`` then its value
    (named ``value_name``), largest value first."""
    order = {name: index for index, name in enumerate([*label_columns, "Value"])}
    panel = (table.Panel()
             .show_header(True)
             .cell_height(cm.TableCellHeight.SM)
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {"Time": True, "__name__": True, "job": True},
                 "indexByName": order,
                 "renameByName": {"Value": value_name},
             }))
             .sort_by([common_builders.TableSortByFieldState().display_name(value_name).desc(True)])
             .no_value("none"))
    if decimals is not None:
        panel.decimals(decimals)
    return _finish(panel, title, description, unit, [target], width, height)


def row(title: str) -> db.Row:
    return db.Row(title)


# -- dashboards ------------------------------------------------------------------------------------
def _dashboard(uid: str, title: str, description: str, time_from: str) -> db.Dashboard:
    return (db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["servicewatch"])
            .readonly()
            .timezone("browser")
            .time(time_from, "now")
            .refresh("30s")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
                           .description("The Prometheus that scrapes the servicewatch workers "
                                        "(job=\"servicewatch\") and loads deploy/prometheus/rules."))
            .link(db.DashboardLink("servicewatch").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(["servicewatch"]).as_dropdown(True).include_vars(False).keep_time(True)))


def _number_panels(dashboard: db.Dashboard) -> dm.Dashboard:
    """Give every panel and row a stable id (1, 2, ...) in the order they appear."""
    built = dashboard.build()
    for index, panel in enumerate(built.panels or [], start=1):
        panel.id_val = index
    return built


def within_target_graph(title: str, description: str, counter: str, objective: str,
                        *matchers: str) -> timeseries.Panel:
    """Share within target per channel, against the objective: for one team (``matchers``)
    its own, drawn as a series; for all teams the built-in 90 %, as a dashed line."""
    shares = query(within_target(counter, *matchers, window="$__rate_interval"), "{{channel}}")
    if matchers:
        return graph(
            title, f"{description} (the service policy's, drawn as \"objective\"; recording rule "
            f"{OBJECTIVES}).", "percentunit",
            [shares, query(f"max({sel(OBJECTIVES, *matchers, objective)})", "objective")],
            decimals=1)
    return graph(
        title, f"{description}: each team's own in the service policy; the dashed line is the "
        "built-in 90 %.", "percentunit", [shares],
        colours=thresholds((None, RED), (0.9, GREEN)), threshold_lines=True, decimals=1)


def response_panels(*matchers: str, scope: str) -> list:
    return [
        graph(
            "Response time p90 by channel",
            f"90th percentile of the time from a customer asking to being answered, per channel"
            f"{scope}, from the classic histogram servicewatch_response_seconds (in business time "
            f"where the team's policy has a calendar). Logarithmic axis. Targets are the service "
            f"policy's, per team, channel and priority: see the within-target panels.",
            "s",
            [query(quantile(0.9, "servicewatch_response_seconds", "channel", *matchers), "{{channel}}")],
            log_scale=True),
        columns(
            "Response times by channel and share within target, over the selected range",
            f"p50, p90 and p99 response times per channel{scope} over the dashboard's time range, "
            "the number of responses, and the share the worker judged within the service "
            "policy's response target (per team, channel and priority, in business hours where "
            "configured; servicewatch_responses_total{within_target}).",
            "s", "channel",
            [("p50", query(quantile(0.5, "servicewatch_response_seconds", "channel", *matchers,
                                    window="$__range", observed_only=True), instant=True, as_table=True)),
             ("p90", query(quantile(0.9, "servicewatch_response_seconds", "channel", *matchers,
                                    window="$__range", observed_only=True), instant=True, as_table=True)),
             ("p99", query(quantile(0.99, "servicewatch_response_seconds", "channel", *matchers,
                                    window="$__range", observed_only=True), instant=True, as_table=True)),
             ("responses", query(
                 f"round(sum by (channel) (increase({sel('servicewatch_responses_total', JOB, *matchers)}"
                 f"[$__range]))) > 0", instant=True, as_table=True)),
             ("within target", query(within_target("servicewatch_responses_total", *matchers),
                                     instant=True, as_table=True))],
            column_units={"within target": "percentunit", "responses": "short"}, decimals=1),
        within_target_graph(
            "Responses within target by channel",
            f"Share of responses{scope} the worker judged within the service policy's response "
            "target, per channel (servicewatch_responses_total{within_target}). The alert "
            "ResponseTargetBreached tickets a channel below the team's response objective over "
            "15 minutes",
            "servicewatch_responses_total", RESPONSE_OBJECTIVE, *matchers),
        within_target_graph(
            "Greetings within target by channel",
            f"Share of new contacts{scope} greeted within the service policy's greeting target, "
            "per channel (servicewatch_greetings_total{within_target}). The alert "
            "GreetingTargetBreached tickets a channel below the team's greeting objective over "
            "15 minutes",
            "servicewatch_greetings_total", GREETING_OBJECTIVE, *matchers),
        graph(
            "Time to greet p90 by channel",
            f"90th percentile of the time from a customer reaching out to being greeted, per "
            f"channel{scope} (servicewatch_greeting_seconds). Logarithmic axis.",
            "s",
            [query(quantile(0.9, "servicewatch_greeting_seconds", "channel", *matchers), "{{channel}}")],
            log_scale=True),
    ]


def overview() -> dm.Dashboard:
    board = _dashboard(
        "servicewatch-overview", "servicewatch: overview",
        "Are we keeping our word to customers, right now? On-time promises, overdue and at-risk "
        "promises, response and greeting times, and the on-time SLO, for every team.",
        "now-6h")
    board.with_row(row("Promises"))
    for window, label in (("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days")):
        board.with_panel(bars(
            f"On-time rate by team, {window}",
            f"Share of promises kept on time among those that ended in the {label}, per team: "
            f"on_time / (on_time + missed). A team with no promise ending in the window shows no "
            f"bar. Green from 95 %, the built-in on-time objective (each team's own: On-time SLO "
            f"row).",
            "percentunit", [query(on_time_ratio(window), "{{team}}", instant=True)],
            colours=ON_TIME_COLOURS, max_value=1, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(big_numbers(
        "Promises missed in the selected range",
        "Promises whose due time passed without an on-time delivery, per team, over the "
        "dashboard's time range. A miss is counted at its deadline, not when a late delivery "
        "turns up.",
        "short",
        [query(f'sum by (team) (increase({sel(OUTCOMES, MISSED)}[$__range]))',
               "{{team}}", instant=True)],
        colours=COUNT_BAD_COLOURS, decimals=0).data_links([TEAM_LINK]))
    board.with_panel(big_numbers(
        "Overdue promises now",
        "Promises already missed and still not delivered, per team: customers still waiting "
        "(servicewatch_promises_overdue).",
        "short",
        [query(f"sum by (team) ({sel('servicewatch_promises_overdue', JOB)})", "{{team}}", instant=True)],
        colours=COUNT_BAD_COLOURS, decimals=0).data_links([TEAM_LINK]))
    board.with_panel(big_numbers(
        "Promises at risk now",
        "Open promises within their team's at-risk threshold of the due time (service policy, "
        "per team and kind, in business hours where configured; 15 min by default), as of their "
        "partition's time, per team: act on these before they become misses "
        "(servicewatch_promises_at_risk). The list: GET /promises/at-risk on each worker.",
        "short",
        [query(f"sum by (team) ({sel('servicewatch_promises_at_risk', JOB)})", "{{team}}", instant=True)],
        colours=COUNT_WARN_COLOURS, decimals=0).data_links([TEAM_LINK]))
    board.with_panel(series_table(
        "Oldest overdue promises",
        "The longest-overdue promises (missed, still not delivered) across all workers: each "
        f"worker reports its 10 oldest in {OLDEST_OVERDUE} by rank, and the table shows the "
        f"10 oldest of those, with team, kind and the worker holding them. {WORKLIST_HINT}",
        "s",
        query(f"topk(10, {sel(OLDEST_OVERDUE, JOB)})", instant=True, as_table=True),
        ["team", "kind", "audience", "instance", "rank"], "overdue by",
        width=24, height=8, decimals=0))

    board.with_row(row("Responses and greetings"))
    for panel in response_panels(scope=""):
        board.with_panel(panel)
    board.with_panel(columns(
        "Customers waiting for an answer, by team",
        "Customers who asked and have no answer yet, per team: still within the response "
        "target (servicewatch_inquiries_waiting), and past it (servicewatch_responses_overdue; "
        "the alert ResponseOverdue tickets the team). Each overdue one is a response_overdue "
        "finding on the findings topic.",
        "short", "team",
        [("waiting", query(f"sum by (team) ({sel('servicewatch_inquiries_waiting', JOB)})",
                           instant=True, as_table=True)),
         ("overdue", query(f"sum by (team) ({sel('servicewatch_responses_overdue', JOB)})",
                           instant=True, as_table=True))],
        width=12, height=8, decimals=0))
    board.with_panel(graph(
        "Delivery margin: how early promises are kept",
        "How long before the due time on-time promises were delivered, all teams: the median "
        "(p50) and the tightest tenth (p10). A p10 sliding towards zero means promises are "
        "being kept at the last moment (servicewatch_delivery_margin_seconds).",
        "s",
        [query(quantile(0.5, "servicewatch_delivery_margin_seconds", None), "p50"),
         query(quantile(0.1, "servicewatch_delivery_margin_seconds", None), "p10")],
        width=24, height=7))

    board.with_row(row("Customers"))
    board.with_panel(bars(
        "CSAT by team, 24h",
        "Customer satisfaction per team over the last 24 hours: the share of feedback scores "
        "of 4 or 5 (out of 1-5). A team without feedback in the window shows no bar. Recording "
        "rule team:servicewatch_feedback_csat:ratio_rate1d.",
        "percentunit", [query(CSAT.format(window="1d"), "{{team}}", instant=True)],
        colours=CSAT_COLOURS, max_value=1, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(bars(
        "Average satisfaction score by team, 24h",
        "The average feedback score (1 = very dissatisfied, 5 = very satisfied) per team over "
        "the last 24 hours. Recording rule team:servicewatch_feedback_score:avg_rate1d.",
        "none", [query(AVERAGE_SCORE.format(window="1d"), "{{team}}", instant=True)],
        colours=SCORE_COLOURS, min_value=1, max_value=5, decimals=2).data_links([TEAM_LINK]))
    board.with_panel(bars(
        "Complaints per 1,000 interactions by team, 24h",
        "Complaints per 1,000 interactions (greetings, responses and inquiries) per team over "
        "the last 24 hours. Recording rule "
        "team:servicewatch_complaints_per_1000_interactions:ratio_rate1d; the alert "
        "ComplaintsRising warns when the last hour runs at twice the day's rate.",
        "short", [query(COMPLAINTS_PER_1000.format(window="1d"), "{{team}}", instant=True)],
        colours=COMPLAINT_COLOURS, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(bars(
        "Renegotiated promises by team, 24h",
        "Renegotiations (a promise_revised event moving a due time before it passed) per "
        "promise settled in the last 24 hours (ended on time or missed, or cancelled), per team. "
        "Frequent renegotiation means due times promised too optimistically. Recording rule "
        "team:servicewatch_promises_renegotiated:ratio_rate1d.",
        "percentunit", [query(RENEGOTIATED_SHARE.format(window="1d"), "{{team}}", instant=True)],
        colours=SHARE_COLOURS, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(bars(
        "Cancelled promises by team, 24h",
        "Share of the promises settled in the last 24 hours that were cancelled before their "
        "due time (they count neither on time nor missed), per team. Recording rule "
        "team:servicewatch_promises_cancelled:ratio_rate1d.",
        "percentunit", [query(CANCELLED_SHARE.format(window="1d"), "{{team}}", instant=True)],
        colours=SHARE_COLOURS, max_value=1, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(graph(
        "Renegotiations and cancellations per minute",
        "Promises renegotiated (a new due time agreed before the old one passed) and cancelled, "
        "per minute, all teams, from their sums over workers (recording rules "
        f"{REVISIONS} and {CANCELLED}).",
        "opm",
        [query(f"sum by (team) (rate({REVISIONS}[$__rate_interval])) * 60", "{{team}} renegotiated"),
         query(f"sum by (team) (rate({CANCELLED}[$__rate_interval])) * 60", "{{team}} cancelled")],
        width=8, height=7))

    board.with_row(row("On-time SLO"))
    board.with_panel(columns(
        "Objectives by team",
        "What each team aims for, from the service policy (docs/policy.md; built in: 95 % of "
        "promises on time, 90 % of responses and greetings within target): error budgets, burn "
        "rates and the within-target alerts hold each team to its own. Recording rule "
        f"{OBJECTIVES}.",
        "percentunit", "team",
        [(name, query(f"max by (team) ({sel(OBJECTIVES, objective)})", instant=True, as_table=True))
         for name, objective in (("on time", ON_TIME_OBJECTIVE), ("responses", RESPONSE_OBJECTIVE),
                                 ("greetings", GREETING_OBJECTIVE))],
        width=8, height=7, decimals=1))
    board.with_panel(bars(
        "Error budget remaining by team, 30d",
        "Share of the 30-day error budget (1 − the team's on-time objective) not yet spent by "
        "missed promises, per team: 1 − (missed share over 30 days) / (1 − objective). Below 0 "
        "the objective is already broken for the period.",
        "percentunit", [query(budget_remaining(), "{{team}}", instant=True)],
        width=6, height=7, colours=thresholds((None, RED), (0, ORANGE), (0.25, GREEN)),
        min_value=None, max_value=1, decimals=1).data_links([TEAM_LINK]))
    board.with_panel(graph(
        "Burn rate by team, 1h window",
        "How fast each team spends its error budget, over the last hour: missed share / "
        "(1 − the team's on-time objective). 1 spends exactly the 30-day budget in 30 days; the dashed lines are "
        f"the fast-burn page thresholds ({FAST_BURN} with the 1h window, {SLOW_BURN} with 6h). "
        "Recording rule team:servicewatch_promises_on_time:burnrate1h.",
        "suffix:×",
        [query(BURN_RATE.format(window="1h"), "{{team}}")],
        width=10, height=7, colours=thresholds((None, GREEN), (SLOW_BURN, ORANGE), (FAST_BURN, RED)),
        threshold_lines=True, decimals=1))
    return _number_panels(board)


def team() -> dm.Dashboard:
    board = _dashboard(
        "servicewatch-team", "servicewatch: team drill-down",
        "One team's promises, responses, greetings and on-time SLO, with breakdowns by channel "
        "and promise kind.",
        "now-6h")
    board.with_variable(
        db.QueryVariable("team").label("Team").datasource(DATASOURCE)
        .description("A team that has made promises (label team of servicewatch_promise_outcomes_total).")
        .query("label_values(servicewatch_promise_outcomes_total, team)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC))

    board.with_row(row("Promises of $team"))
    board.with_panel(big_numbers(
        "On-time rate of $team: 1h, 24h, 7d",
        "Share of $team's promises kept on time among those that ended in the last hour, day "
        "and week: on_time / (on_time + missed). Green from 95 %, the built-in on-time objective "
        "($team's own: On-time SLO row).",
        "percentunit",
        [query(on_time_ratio("1h", TEAM), "1h", instant=True),
         query(on_time_ratio("24h", TEAM), "24h", instant=True),
         query(on_time_ratio("7d", TEAM), "7d", instant=True)],
        width=9, height=6, colours=ON_TIME_COLOURS, decimals=1))
    board.with_panel(big_numbers(
        "Missed in the selected range",
        "$team's promises whose due time passed without an on-time delivery, over the "
        "dashboard's time range.",
        "short",
        [query(f'sum(increase({sel(OUTCOMES, TEAM, MISSED)}[$__range]))', "missed",
               instant=True)],
        width=5, height=6, colours=COUNT_BAD_COLOURS, decimals=0))
    board.with_panel(big_numbers(
        "Overdue now",
        "$team's promises already missed and still not delivered: customers still waiting.",
        "short",
        [query(f"sum({sel('servicewatch_promises_overdue', JOB, TEAM)})", "overdue", instant=True)],
        width=5, height=6, colours=COUNT_BAD_COLOURS, decimals=0))
    board.with_panel(big_numbers(
        "At risk now",
        "$team's open promises within the team's at-risk threshold of the due time (service "
        "policy; 15 min by default). The list: GET /promises/at-risk?team=$team on each worker.",
        "short",
        [query(f"sum({sel('servicewatch_promises_at_risk', JOB, TEAM)})", "at risk", instant=True)],
        width=5, height=6, colours=COUNT_WARN_COLOURS, decimals=0))
    board.with_panel(graph(
        "Promises ending per minute, by outcome",
        "How many of $team's promises end each minute, kept on time or missed (from the "
        "outcome totals summed over workers).",
        "opm",
        [query(f"sum by (outcome) (rate({sel(OUTCOMES, TEAM)}[$__rate_interval])) * 60", "{{outcome}}")],
        width=12, height=8))
    raw_outcomes = "servicewatch_promise_outcomes_total"
    board.with_panel(bars(
        "On-time rate by kind, over the selected range",
        "Share of $team's promises kept on time per promise kind (callback, delivery, ...) over "
        "the dashboard's time range. Read per worker: while partitions move between workers "
        "the ratio can wobble briefly.",
        "percentunit",
        [query(f"sum by (kind) (increase({sel(raw_outcomes, JOB, TEAM, ON_TIME)}[$__range]))\n"
               f"  / (sum by (kind) (increase({sel(raw_outcomes, JOB, TEAM)}[$__range])) > 0)",
               "{{kind}}", instant=True)],
        width=12, height=8, colours=ON_TIME_COLOURS, max_value=1, decimals=1))
    board.with_panel(columns(
        "Open, at-risk and overdue promises by kind",
        "$team's promises now, per kind: open (made, not yet ended), at risk (open and due within "
        "the at-risk window) and overdue (missed, not yet delivered).",
        "short", "kind",
        [("open", query(f"sum by (kind) ({sel('servicewatch_promises_open', JOB, TEAM)})",
                        instant=True, as_table=True)),
         ("at risk", query(f"sum by (kind) ({sel('servicewatch_promises_at_risk', JOB, TEAM)})",
                           instant=True, as_table=True)),
         ("overdue", query(f"sum by (kind) ({sel('servicewatch_promises_overdue', JOB, TEAM)})",
                           instant=True, as_table=True))],
        width=8, height=8, decimals=0))
    board.with_panel(graph(
        "Delivery margin p50 by kind",
        "Median time before the due time at which $team kept its on-time promises, per kind "
        "(servicewatch_delivery_margin_seconds).",
        "s",
        [query(quantile(0.5, "servicewatch_delivery_margin_seconds", "kind", TEAM), "{{kind}}")],
        width=8, height=8))
    board.with_panel(graph(
        "Late deliveries: how late, p50 by kind",
        "Median time after the due time at which $team delivered promises it had already missed, "
        "per kind (servicewatch_delivery_lateness_seconds).",
        "s",
        [query(quantile(0.5, "servicewatch_delivery_lateness_seconds", "kind", TEAM), "{{kind}}")],
        width=8, height=8))
    board.with_panel(graph(
        "Renegotiations and cancellations per minute",
        "$team's promises renegotiated (a promise_revised event: a new due time agreed before "
        "the old one passed) and cancelled before their due time, per minute, from their sums "
        f"over workers (recording rules {REVISIONS} and {CANCELLED}).",
        "opm",
        [query(settled_rate(REVISIONS, TEAM), "renegotiated"),
         query(settled_rate(CANCELLED, TEAM), "cancelled")],
        width=8, height=8))
    board.with_panel(big_numbers(
        "Renegotiated and cancelled share of $team: 1h, 24h",
        "Renegotiations per promise settled (ended on time or missed, or cancelled) and the "
        "share cancelled, over the last hour and day. Renegotiating often means due times "
        "promised too optimistically. Recording rules team:servicewatch_promises_renegotiated:* "
        "and team:servicewatch_promises_cancelled:*.",
        "percentunit",
        [query(sel(RENEGOTIATED_SHARE.format(window="1h"), TEAM), "renegotiated 1h", instant=True),
         query(sel(RENEGOTIATED_SHARE.format(window="1d"), TEAM), "renegotiated 24h", instant=True),
         query(sel(CANCELLED_SHARE.format(window="1h"), TEAM), "cancelled 1h", instant=True),
         query(sel(CANCELLED_SHARE.format(window="1d"), TEAM), "cancelled 24h", instant=True)],
        width=8, height=8, colours=SHARE_COLOURS, decimals=1))
    board.with_panel(series_table(
        "Oldest overdue promises of $team",
        "$team's longest-overdue promises (missed, still not delivered) among the 10 oldest each "
        f"worker reports in {OLDEST_OVERDUE}: a worker whose 10 oldest belong to other teams "
        f"shows none of $team's here. {WORKLIST_HINT.replace('?team=', '?team=$team')}",
        "s",
        query(f"topk(10, {sel(OLDEST_OVERDUE, JOB, TEAM)})", instant=True, as_table=True),
        ["kind", "audience", "instance", "rank"], "overdue by",
        width=8, height=8, decimals=0))

    board.with_row(row("Responses and greetings of $team"))
    for panel in response_panels(TEAM, scope=" of $team"):
        board.with_panel(panel)
    board.with_panel(bars(
        "Responses by channel, over the selected range",
        "How many responses $team gave per channel over the dashboard's time range.",
        "short",
        [query(f"sum by (channel) (increase({sel('servicewatch_response_seconds_count', JOB, TEAM)}"
               f"[$__range]))", "{{channel}}", instant=True)],
        width=12, height=8, decimals=0))
    board.with_panel(graph(
        "Customers waiting for an answer",
        "$team's customers who asked and have no answer yet: still within the response target "
        "(servicewatch_inquiries_waiting) and past it (servicewatch_responses_overdue). The "
        "alert ResponseOverdue tickets the team when any wait past the target for a minute.",
        "short",
        [query(f"sum({sel('servicewatch_inquiries_waiting', JOB, TEAM)})", "within target"),
         query(f"sum({sel('servicewatch_responses_overdue', JOB, TEAM)})", "past target")],
        width=12, height=8, decimals=0,
        colours=thresholds((None, GREEN), (1, RED))))
    board.with_panel(bars(
        "Responses overdue now, by channel",
        "$team's customers waiting for an answer past the response target, per channel "
        "(servicewatch_responses_overdue). Each is a response_overdue finding on the findings "
        "topic, keyed by case id.",
        "short",
        [query(f"sum by (channel) ({sel('servicewatch_responses_overdue', JOB, TEAM)})",
               "{{channel}}", instant=True)],
        width=12, height=8, colours=COUNT_BAD_COLOURS, decimals=0))

    board.with_row(row("Customers of $team"))
    board.with_panel(bars(
        "Satisfaction scores of $team, over the selected range",
        "How many feedback scores of each value $team received over the dashboard's time range "
        "(1 = very dissatisfied, 5 = very satisfied; servicewatch_feedback_total).",
        "short",
        [query(f"sum by (score) (increase({sel('servicewatch_feedback_total', JOB, TEAM)}[$__range]))",
               "score {{score}}", instant=True)],
        width=8, height=8, decimals=0))
    board.with_panel(big_numbers(
        "CSAT of $team: 1h, 24h",
        "Share of $team's feedback scores that were 4 or 5, over the last hour and day. The alert "
        "SatisfactionDropping warns when the hour falls 15 points below the day. Recording "
        "rules team:servicewatch_feedback_csat:*.",
        "percentunit",
        [query(sel(CSAT.format(window="1h"), TEAM), "1h", instant=True),
         query(sel(CSAT.format(window="1d"), TEAM), "24h", instant=True)],
        width=8, height=8, colours=CSAT_COLOURS, decimals=1))
    board.with_panel(big_numbers(
        "Average score of $team: 1h, 24h",
        "$team's average feedback score (1-5) over the last hour and day. Recording rules "
        "team:servicewatch_feedback_score:*.",
        "none",
        [query(sel(AVERAGE_SCORE.format(window="1h"), TEAM), "1h", instant=True),
         query(sel(AVERAGE_SCORE.format(window="1d"), TEAM), "24h", instant=True)],
        width=8, height=8, colours=SCORE_COLOURS, decimals=2))
    board.with_panel(graph(
        "Complaints per 1,000 interactions of $team, 1h and 24h windows",
        "$team's complaints per 1,000 interactions (greetings, responses and inquiries) over "
        "rolling 1-hour and 24-hour windows. The alert ComplaintsRising warns when the hour "
        "runs at twice the day. Recording rules "
        "team:servicewatch_complaints_per_1000_interactions:*.",
        "short",
        [query(sel(COMPLAINTS_PER_1000.format(window="1h"), TEAM), "1h"),
         query(sel(COMPLAINTS_PER_1000.format(window="1d"), TEAM), "24h")],
        width=12, height=8, decimals=1))
    board.with_panel(graph(
        "Feedback and complaints per hour",
        "How many feedback scores and complaints $team receives, per hour "
        "(servicewatch_feedback_total, servicewatch_complaints_total).",
        "short",
        [query(f"sum(rate({sel('servicewatch_feedback_total', JOB, TEAM)}[$__rate_interval])) * 3600",
               "feedback scores"),
         query(f"sum(rate({sel('servicewatch_complaints_total', JOB, TEAM)}[$__rate_interval])) * 3600",
               "complaints")],
        width=12, height=8))

    board.with_row(row("On-time SLO of $team"))
    board.with_panel(big_numbers(
        "Objectives of $team",
        "What $team aims for, from the service policy (docs/policy.md; built in: 95 % of "
        "promises on time, 90 % of responses and greetings within target): its error budget, "
        "burn rates and within-target alerts are measured against these. Recording rule "
        f"{OBJECTIVES}.",
        "percentunit",
        [query(f"max({sel(OBJECTIVES, TEAM, objective)})", name, instant=True)
         for name, objective in (("on time", ON_TIME_OBJECTIVE), ("responses", RESPONSE_OBJECTIVE),
                                 ("greetings", GREETING_OBJECTIVE))],
        width=6, height=8, decimals=1))
    board.with_panel(big_numbers(
        "Error budget remaining, 30d",
        "Share of $team's 30-day error budget (1 − its on-time objective) not yet spent: "
        "1 − (missed share over 30 days) / (1 − objective). Below 0 the objective is broken "
        "for the period.",
        "percentunit", [query(budget_remaining(TEAM), "budget left", instant=True)],
        width=6, height=8, colours=thresholds((None, RED), (0, ORANGE), (0.25, GREEN)), decimals=1))
    board.with_panel(graph(
        "Burn rate of $team: 5m, 1h, 6h, 1d windows",
        "How fast $team spends its error budget over four windows: missed share / (1 − its "
        "on-time objective). "
        f"The fast-burn page fires when both 1h and 5m exceed {FAST_BURN}, or 6h and 30m exceed "
        f"{SLOW_BURN} (dashed lines). Recording rules team:servicewatch_promises_on_time:burnrate*.",
        "suffix:×",
        [query(sel(BURN_RATE.format(window=window), TEAM), window) for window in ("5m", "1h", "6h", "1d")],
        width=12, height=8, colours=thresholds((None, GREEN), (SLOW_BURN, ORANGE), (FAST_BURN, RED)),
        threshold_lines=True, decimals=1))
    return _number_panels(board)


def pipeline() -> dm.Dashboard:
    board = _dashboard(
        "servicewatch-pipeline", "servicewatch: pipeline health",
        "Is servicewatch itself keeping up? Events processed, dead letters, duplicates, workers, "
        "consumer lag and how far each partition's time trails the clock.",
        "now-1h")
    board.with_row(row("Events"))
    board.with_panel(graph(
        "Events processed per second, by type",
        "Valid events processed per second by all workers, per event type "
        "(servicewatch_events_total).",
        "suffix: events/s",
        [query(f"sum by (type) (rate({sel('servicewatch_events_total', JOB)}[$__rate_interval]))", "{{type}}")]))
    board.with_panel(graph(
        "Dead letters per second, by reason",
        "Invalid events sent to the dead-letter topic per second, per reason (invalid_json, "
        "unknown_type, schema_violation, too_large, key_mismatch, processing_error). The "
        "dead-letter record names the field at fault (servicewatch_events_rejected_total).",
        "suffix: events/s",
        [query(f"sum by (reason) (rate({sel('servicewatch_events_rejected_total', JOB)}[$__rate_interval]))",
               "{{reason}}")]))
    board.with_panel(big_numbers(
        "Dead letters in the selected range",
        "Events sent to the dead-letter topic over the dashboard's time range, all reasons.",
        "short",
        [query(f"sum(increase({sel('servicewatch_events_rejected_total', JOB)}[$__range]))",
               "dead letters", instant=True)],
        width=6, height=7, colours=COUNT_WARN_COLOURS, decimals=0))
    board.with_panel(graph(
        "Duplicates and misplaced events per second",
        "Duplicates: events dropped because their event_id was already seen (a producer retry or "
        "a replay); harmless, but a steady stream points at an emitter resending "
        "(servicewatch_events_duplicate_total). Misplaced: events on another partition than "
        "Kafka's default partitioner gives their case id; an emitter with another partitioner "
        "splits cases and causes false misses (servicewatch_events_misplaced_total, "
        "docs/emitting.md).",
        "suffix: events/s",
        [query(f"sum(rate({sel('servicewatch_events_duplicate_total', JOB)}[$__rate_interval]))",
               "duplicates"),
         query(f"sum(rate({sel('servicewatch_events_misplaced_total', JOB)}[$__rate_interval]))",
               "misplaced")],
        width=18, height=7))

    board.with_row(row("Workers and partitions"))
    board.with_panel(big_numbers(
        "Workers up",
        "Workers answering Prometheus's scrape (up{job=\"servicewatch\"} = 1) out of all "
        "scraped. Red when none is up.",
        "short",
        [query('sum(up{job="servicewatch"})', "up", instant=True),
         query('count(up{job="servicewatch"})', "scraped", instant=True)],
        width=6, height=8, colours=thresholds((None, RED), (1, GREEN)), decimals=0))
    board.with_panel(graph(
        "Partitions held per worker",
        "How many partitions of the events topic each worker holds (it reports a partition time "
        "for each). Partitions bound scale-out: a worker holding none is idle.",
        "short",
        [query(f"count by (instance) ({sel('servicewatch_partition_time_seconds', JOB)})", "{{instance}}")],
        width=9, height=8, decimals=0))
    board.with_panel(graph(
        "Partitions reported and known",
        "Partitions reported by some worker now against all partitions seen in the last hour. "
        "Fewer reported than known means partitions nobody watches (a rebalance, or a worker "
        "gone): their promises are not being judged. Recording rules servicewatch:partitions_*.",
        "short",
        [query("servicewatch:partitions_reported:count", "reported"),
         query("servicewatch:partitions_known:count", "known")],
        width=9, height=8, decimals=0))
    board.with_panel(graph(
        "Consumer lag by partition",
        "Records in the events topic not yet processed, per partition, from the high watermark "
        "the broker reports in fetch answers (servicewatch_consumer_lag_messages).",
        "suffix: records",
        [query(f"max by (partition) ({sel('servicewatch_consumer_lag_messages', JOB)})", "partition {{partition}}")],
        width=12, height=8))
    board.with_panel(graph(
        "Partition time lag",
        "How far each partition's time trails the wall clock: time() − "
        "servicewatch_partition_time_seconds. Misses are declared on partition time, so a "
        "partition that falls behind declares its misses late. About a second on an idle or "
        "caught-up partition.",
        "s",
        [query(f"max by (partition) (time() - {sel('servicewatch_partition_time_seconds', JOB)})",
               "partition {{partition}}")],
        width=12, height=8))
    return _number_panels(board)


BUILDERS = {
    "servicewatch-overview": overview,
    "servicewatch-team": team,
    "servicewatch-pipeline": pipeline,
}


# -- files -----------------------------------------------------------------------------------------
def render_json(model: dm.Dashboard) -> str:
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[Path, str]:
    """{path of each dashboard file: its JSON text}, from the code."""
    return {HERE / DASHBOARD_FILES[uid]: render_json(build()) for uid, build in BUILDERS.items()}


def stale(generated: dict[Path, str]) -> list[tuple[Path, str]]:
    """Files whose committed text differs from ``generated``, each with a unified diff."""
    out = []
    for path, text in generated.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            diff = "".join(difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                f"{path.name} (committed)", f"{path.name} (generated)", n=2))
            out.append((path, diff))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed dashboard differs from the code")
    args = parser.parse_args(argv)
    generated = generate()
    if args.check:
        differing = stale(generated)
        for path, diff in differing:
            print(f"{path.relative_to(HERE.parent)} is stale: run python -m dashboards.build\n{diff[:4000]}",
                  file=sys.stderr)
        if not differing:
            print(f"{len(generated)} dashboards up to date")
        return 1 if differing else 0
    for path, text in generated.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
