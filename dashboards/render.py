"""Pictures of the dashboards without Grafana: every panel's queries, run against a live
Prometheus, drawn with matplotlib on the dashboard's own grid (one PNG per dashboard).

    python -m dashboards.render --prometheus http://127.0.0.1:9090 --minutes 3 --out docs/img

Time series panels are drawn from range queries, stat, bar and table panels from instant
queries at the end of the window (``$__range`` = the whole window), with each panel's unit,
thresholds, legend format and log axis. It is a faithful reading of the queries, not of
Grafana's styling: every picture says so in its title.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "img"
DISCLAIMER = "Rendered from the panel queries against live data — not a Grafana screenshot"

# Grafana's named colours and its classic series palette.
NAMED = {"green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "blue": "#5794F2",
         "yellow": "#FADE2A", "purple": "#B877D9", "text": "#333333"}
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
           "#705DA0", "#508642", "#CCA300", "#447EBC", "#C15C17"]

FIG_WIDTH = 22.0  # inches for Grafana's 24 columns
UNIT_HEIGHT = 0.40  # inches per grid row
HEADER, FOOTER = 1.0, 0.35


# -- Prometheus ------------------------------------------------------------------------------------
class Prometheus:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=self.timeout) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus said {body}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[dict]:
        return self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})["result"]

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}",
                                                 "end": f"{end:.3f}", "step": f"{step:g}"})["result"]


# -- dashboards ------------------------------------------------------------------------------------
def substitute(text: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(name, variables[name])
    return text


def legend(fmt: str | None, labels: dict[str, str]) -> str:
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "value")


def value_of(raw: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def format_value(value: float | None, unit: str, decimals: int | None = None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞"

    def number(v: float, default: int = 2) -> str:
        if decimals is not None:
            return f"{v:.{decimals}f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        text = f"{v:.{default}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "s":
        magnitude = abs(value)
        if magnitude and magnitude < 1:
            return f"{number(value * 1000, 0)} ms"
        if magnitude < 60:
            return f"{number(value, 1)} s"
        if magnitude < 3600:
            return f"{number(value / 60, 1)} min"
        return f"{number(value / 3600, 1)} h"
    if unit == "opm":
        return f"{number(value, 1)}/min"
    if unit.startswith("suffix:"):
        return f"{number(value)}{unit[len('suffix:'):]}"
    return number(value)


def colour_for(value: float, steps: list[dict]) -> str:
    colour = steps[0]["color"] if steps else "blue"
    for step in steps:
        if step.get("value") is None or (not math.isnan(value) and value >= step["value"]):
            colour = step["color"]
    return NAMED.get(colour, colour)


def _defaults(panel: dict) -> dict:
    return panel.get("fieldConfig", {}).get("defaults", {})


def _steps(panel: dict) -> list[dict]:
    return _defaults(panel).get("thresholds", {}).get("steps", [])


# -- drawing ---------------------------------------------------------------------------------------
class Renderer:
    def __init__(self, prometheus: Prometheus, start: float, end: float, variables: dict[str, str]) -> None:
        self.prometheus = prometheus
        self.start, self.end = start, end
        self.step = max(1.0, round((end - start) / 300))
        self.variables = {"$__range": f"{int(round(end - start))}s", **variables}

    def expr(self, target: dict) -> str:
        return substitute(target["expr"], self.variables)

    def instant_rows(self, panel: dict) -> list[tuple[dict, str, float]]:
        """(target, legend, value) for every series every query of ``panel`` returns at the end."""
        rows = []
        for target in panel.get("targets", []):
            for series in self.prometheus.instant(self.expr(target), self.end):
                rows.append((target, legend(target.get("legendFormat"), series["metric"]),
                             value_of(series["value"][1])))
        return rows

    def draw(self, dashboard: dict, out: Path) -> Path:
        layout = dashboard["panels"]
        grid_height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in layout)
        height = HEADER + grid_height * UNIT_HEIGHT + FOOTER
        figure = plt.figure(figsize=(FIG_WIDTH, height), dpi=90, facecolor="white")
        title = substitute(dashboard["title"], self.variables)
        figure.text(0.01, 1 - 0.35 / height, title, fontsize=17, weight="bold", va="center")
        figure.text(0.01, 1 - 0.72 / height, DISCLAIMER, fontsize=12, color="#B03030", va="center",
                    style="italic")
        shown = {k: v for k, v in self.variables.items() if not k.startswith("${")}
        stamp = (f"{_utc(self.start)} – {_utc(self.end)} UTC · Prometheus {self.prometheus.url} · "
                 + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())))
        figure.text(0.01, 0.16 / height, stamp, fontsize=9, color="#666666", va="center")

        for panel in layout:
            grid = panel["gridPos"]
            left = grid["x"] / 24
            width = grid["w"] / 24
            top = 1 - (HEADER + grid["y"] * UNIT_HEIGHT) / height
            box_height = grid["h"] * UNIT_HEIGHT / height
            if panel["type"] == "row":
                figure.text(left + 0.003, top - box_height / 2, substitute(panel["title"], self.variables),
                            fontsize=13, weight="bold", va="center", color="#1F3B70")
                figure.add_artist(plt.Line2D([0.005, 0.995], [top - box_height * 0.95] * 2,
                                             color="#1F3B70", linewidth=0.8))
                continue
            frame = (left + 0.003, top - box_height + 0.003 * FIG_WIDTH / height,
                     width - 0.006, box_height - 0.006 * FIG_WIDTH / height)
            self._frame(figure, frame, substitute(panel["title"], self.variables))
            inner = (frame[0], frame[1], frame[2], frame[3] - 0.34 / height)
            try:
                getattr(self, f"_draw_{panel['type']}")(figure, inner, panel, height)
            except Exception as error:  # a panel that fails says why, the picture is still made
                ax = figure.add_axes(inner)
                ax.axis("off")
                ax.text(0.5, 0.5, f"query failed: {error}", ha="center", va="center", fontsize=8,
                        color=NAMED["red"], wrap=True, transform=ax.transAxes)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=90, facecolor="white")
        plt.close(figure)
        return out

    def _frame(self, figure, frame, title: str) -> None:
        left, bottom, width, height = frame
        figure.add_artist(FancyBboxPatch((left, bottom), width, height, boxstyle="round,pad=0,rounding_size=0.004",
                                         transform=figure.transFigure, facecolor="#FAFAFA",
                                         edgecolor="#D0D0D0", linewidth=0.8, zorder=0))
        figure.text(left + 0.004, bottom + height - 0.006, title, fontsize=10.5, weight="bold",
                    va="top", ha="left", color="#222222")

    def _empty(self, ax, message: str = "no data") -> None:
        ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, color="#888888",
                transform=ax.transAxes)

    def _draw_timeseries(self, figure, inner, panel, height) -> None:
        left, bottom, width, top_height = inner
        pad_left, pad_bottom = 0.055 * 24 / max(6, panel["gridPos"]["w"]) * width, 0.85 / height
        ax = figure.add_axes((left + pad_left, bottom + pad_bottom,
                              width - pad_left - 0.006, top_height - pad_bottom - 0.05 / height))
        defaults = _defaults(panel)
        unit, custom = defaults.get("unit", ""), defaults.get("custom", {})
        lines = 0
        for target in panel.get("targets", []):
            for series in self.prometheus.range(self.expr(target), self.start, self.end, self.step):
                times = [datetime.fromtimestamp(t, tz=timezone.utc) for t, _ in series["values"]]
                values = [value_of(v) for _, v in series["values"]]
                ax.plot(times, values, linewidth=1.6, color=PALETTE[lines % len(PALETTE)],
                        label=legend(target.get("legendFormat"), series["metric"]))
                lines += 1
        if custom.get("scaleDistribution", {}).get("type") == "log":
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
        elif defaults.get("min") == 0:
            ax.set_ylim(bottom=0)
        if custom.get("thresholdsStyle", {}).get("mode") in ("line", "dashed", "line+area", "dashed+area"):
            for step in _steps(panel):
                if step.get("value") is not None:
                    ax.axhline(step["value"], color=NAMED.get(step["color"], step["color"]),
                               linestyle="--", linewidth=1.1)
        ax.set_xlim(datetime.fromtimestamp(self.start, tz=timezone.utc),
                    datetime.fromtimestamp(self.end, tz=timezone.utc))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
        ax.tick_params(labelsize=8)
        ax.grid(True, color="#E5E5E5", linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        if not lines:
            self._empty(ax)
            return
        columns = max(1, min(lines, int(panel["gridPos"]["w"] / 2.2)))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=columns, fontsize=7.5,
                  frameon=False, handlelength=1.2, columnspacing=1.0)

    def _draw_stat(self, figure, inner, panel, height) -> None:
        ax = figure.add_axes(inner)
        ax.axis("off")
        defaults = _defaults(panel)
        rows = self.instant_rows(panel)
        if not rows:
            self._empty(ax, defaults.get("noValue", "no data"))
            return
        per_line = min(len(rows), 4)
        lines = math.ceil(len(rows) / per_line)
        gap = 0.02
        cell_w = (1 - gap * (per_line + 1)) / per_line
        cell_h = (1 - gap * (lines + 1)) / lines
        for index, (_, name, value) in enumerate(rows):
            column, line = index % per_line, index // per_line
            x = gap + column * (cell_w + gap)
            y = 1 - (line + 1) * (cell_h + gap)
            colour = colour_for(value, _steps(panel))
            ax.add_patch(FancyBboxPatch((x, y), cell_w, cell_h, boxstyle="round,pad=0,rounding_size=0.02",
                                        transform=ax.transAxes, facecolor=colour, edgecolor="none"))
            ax.text(x + cell_w / 2, y + cell_h * 0.74, name, ha="center", va="center", fontsize=9.5,
                    color="white", weight="bold", transform=ax.transAxes)
            ax.text(x + cell_w / 2, y + cell_h * 0.34,
                    format_value(value, defaults.get("unit", ""), defaults.get("decimals")),
                    ha="center", va="center", fontsize=18 if lines == 1 else 13, color="white",
                    weight="bold", transform=ax.transAxes)

    def _draw_bargauge(self, figure, inner, panel, height) -> None:
        left, bottom, width, top_height = inner
        defaults = _defaults(panel)
        rows = sorted(self.instant_rows(panel), key=lambda row: row[1])
        names = [name for _, name, _ in rows]
        label_width = (max(map(len, names), default=4) * 0.075 + 0.2) / FIG_WIDTH  # inches at 9 pt
        value_width = 0.8 / FIG_WIDTH
        ax = figure.add_axes((left + label_width, bottom + 0.04 / height,
                              width - label_width - value_width, top_height - 0.1 / height))
        if not rows:
            ax.axis("off")
            self._empty(ax, defaults.get("noValue", "no data"))
            return
        # Bars grow from 0 (or the panel's min) to the value; a negative value grows leftwards.
        origin = defaults.get("min", 0) or 0
        values = [origin if math.isnan(v) else v for _, _, v in rows]
        high = defaults.get("max", max([*values, origin + 1e-9]) * 1.05)
        low = min([origin, *values])
        positions = range(len(rows))
        ax.barh(positions, [high - low] * len(rows), left=low, color="#EEEEEE", height=0.7)
        ax.barh(positions, [v - origin for v in values], left=origin, height=0.7,
                color=[colour_for(v, _steps(panel)) for _, _, v in rows])
        if low < origin:
            ax.axvline(origin, color="#999999", linewidth=0.8)
        for position, (_, _, value) in zip(positions, rows):
            ax.text(high, position, "  " + format_value(value, defaults.get("unit", ""), defaults.get("decimals")),
                    va="center", ha="left", fontsize=9.5, weight="bold", color="#222222")
        ax.set_yticks(list(positions), names, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(low, high)
        ax.set_xticks([])
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        ax.tick_params(length=0)

    def _draw_table(self, figure, inner, panel, height) -> None:
        ax = figure.add_axes(inner)
        ax.axis("off")
        defaults = _defaults(panel)
        organize = next((t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {})
        order = organize.get("indexByName", {})
        rename = organize.get("renameByName", {})
        key = min(order, key=order.get) if order else "series"
        units = {o["matcher"]["options"]: p["value"] for o in panel.get("fieldConfig", {}).get("overrides", [])
                 for p in o["properties"] if p["id"] == "unit"}
        labels = [name for name in sorted(order, key=order.get) if not name.startswith("Value")]
        if len(panel.get("targets", [])) == 1 and len(labels) > 1:
            self._draw_series_table(ax, panel, defaults, labels, rename.get("Value", "Value"))
            return
        columns, cells = [], {}
        for target in panel.get("targets", []):
            column = rename.get(f"Value #{target['refId']}", target["refId"])
            columns.append(column)
            for series in self.prometheus.instant(self.expr(target), self.end):
                row = series["metric"].get(key, legend(None, series["metric"]))
                cells.setdefault(row, {})[column] = value_of(series["value"][1])
        if not cells:
            self._empty(ax, defaults.get("noValue", "no data"))
            return
        body = [[row] + [format_value(cells[row].get(c), units.get(c, defaults.get("unit", "")),
                                      defaults.get("decimals")) for c in columns]
                for row in sorted(cells)]
        _show_table(ax, [key, *columns], body)

    def _draw_series_table(self, ax, panel, defaults, labels: list[str], value_name: str) -> None:
        """One row per series of the panel's single query: its labels, then its value, largest
        first (the tables built with dashboards.build.series_table)."""
        (target,) = panel["targets"]
        found = [(series["metric"], value_of(series["value"][1]))
                 for series in self.prometheus.instant(self.expr(target), self.end)]
        if not found:
            self._empty(ax, defaults.get("noValue", "no data"))
            return
        found.sort(key=lambda item: -item[1] if not math.isnan(item[1]) else math.inf)
        body = [[metric.get(name, "") for name in labels]
                + [format_value(value, defaults.get("unit", ""), defaults.get("decimals"))]
                for metric, value in found]
        _show_table(ax, [*labels, value_name], body)


def _show_table(ax, header: list[str], body: list[list[str]]) -> None:
    shown = ax.table(cellText=body, colLabels=header, loc="upper center", cellLoc="right",
                     colLoc="right", edges="horizontal")
    shown.auto_set_font_size(False)
    shown.set_fontsize(9)
    shown.scale(1, 1.25)
    for (line, _), cell in shown.get_celld().items():
        cell.set_edgecolor("#DDDDDD")
        if line == 0:
            cell.set_text_props(weight="bold")


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def render_all(prometheus_url: str, out_dir: Path, start: float, end: float,
               variables: dict[str, str], dashboards: list[Path] | None = None) -> list[Path]:
    """Draw each dashboard (default: every dashboards/servicewatch-*.json) into ``out_dir``."""
    renderer = Renderer(Prometheus(prometheus_url), start, end, variables)
    written = []
    for path in dashboards or sorted(HERE.glob("servicewatch-*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        written.append(renderer.draw(dashboard, out_dir / f"{path.stem}.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.render", description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=5.0, help="window ending now (default 5)")
    parser.add_argument("--team", default="billing", help="value of the team variable")
    parser.add_argument("--rate-interval", default="30s", help="value of $__rate_interval (default 30s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"directory (default {DEFAULT_OUT})")
    parser.add_argument("dashboards", nargs="*", type=Path, help="dashboard JSON files (default: all)")
    args = parser.parse_args(argv)
    end = time.time()
    for path in render_all(args.prometheus, args.out, end - args.minutes * 60, end,
                           {"$__rate_interval": args.rate_interval, "$team": args.team},
                           args.dashboards or None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
