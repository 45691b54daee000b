"""Formats the harness's results as plain-text tables."""

from __future__ import annotations

import os


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def share(cpu: float | None, seconds: float) -> float | None:
    return None if cpu is None or seconds <= 0 else 100 * cpu / seconds


def bound(consumer_cpu_pct: list[float | None], broker_pct: float | None, machine_busy: float | None) -> str:
    """What limited a row: the consumer's CPU (% of one core), the broker's, the whole machine's."""
    known = [p for p in consumer_cpu_pct if p is not None]
    cores = os.cpu_count() or 1
    broker = f"broker {broker_pct:.0f} %" if broker_pct is not None else "broker ?"
    machine = f"machine {100 * machine_busy:.0f} % of {100 * cores}" if machine_busy is not None else ""
    if not known:
        return f"? ({broker}, {machine})"
    others = None if machine_busy is None else 100 * machine_busy - sum(known) - (broker_pct or 0)
    if len(known) == 1 and known[0] >= 85:
        verdict = "CPU-bound: the consumer"
    elif machine_busy is not None and machine_busy >= 0.9 * cores:
        verdict = "CPU-bound: machine full" + (f", {others:.0f} % others" if others and others > 10 else "")
    else:
        verdict = "not CPU-bound"
    parts = " + ".join(f"{p:.0f}" for p in known)
    return f"{verdict} (consumer {parts} %, {broker}, {machine})"


THROUGHPUT_HEADERS = ["row", "consumer", "events", "seconds", "events/s", "CPU µs/event", "peak RSS MB",
                      "load1", "bounded by"]


def throughput_row(row: str, name: str, events: int, seconds: float, cpu: list[float],
                   rss: list[float], broker_cpu: float | None, load1: float,
                   machine_busy: float | None = None) -> tuple[list[str], dict]:
    rate = events / seconds if seconds > 0 else float("nan")
    cpu_total = sum(cpu)
    cells = [row, name, f"{events:,}", f"{seconds:.1f}", f"{rate:,.0f}",
             f"{1e6 * cpu_total / events:,.0f}" if events else "-",
             " + ".join(f"{r:.0f}" for r in rss), f"{load1:.2f}",
             bound([share(c, seconds) for c in cpu], share(broker_cpu, seconds), machine_busy)]
    data = {"row": row, "consumer": name, "events": events, "seconds": seconds, "events_per_s": rate,
            "cpu_us_per_event": 1e6 * cpu_total / events if events else None, "peak_rss_mb": rss,
            "cpu_pct": [share(c, seconds) for c in cpu], "broker_cpu_pct": share(broker_cpu, seconds),
            "load1": load1, "machine_cores_busy": machine_busy}
    return cells, data


def ratios(rows: dict[str, dict]) -> list[str]:
    lines = []
    a, b, c, d = (rows.get(k) for k in ("a", "b", "c", "d"))
    for (x, y, label) in ((c, b, "c/b (servicewatch vs plain Faust)"), (c, a, "c/a (servicewatch vs raw aiokafka)"),
                          (b, a, "b/a (plain Faust vs raw aiokafka)")):
        if x and y:
            x_cpu, y_cpu = x["cpu_us_per_event"], y["cpu_us_per_event"]
            # A small --quick backlog can take less CPU than the clock ticks /proc counts in.
            cpu = f"x{x_cpu / y_cpu:.2f}" if x_cpu and y_cpu else "n/a (too little CPU to measure)"
            lines.append(f"{label}: events/s x{x['events_per_s'] / y['events_per_s']:.3f}, "
                         f"CPU per event {cpu}")
    if c and d:
        lines.append(f"scale-out d/c (two workers vs one): events/s x{d['events_per_s'] / c['events_per_s']:.2f}")
    return lines


def latency_rows(latencies) -> list[list[str]]:
    rows = []
    for lat in latencies:
        ms = lambda v: "-" if v is None else f"{1000 * v:,.0f}"
        rows.append([lat.name, str(len(lat.samples)), ms(lat.p50), ms(lat.p99),
                     ms(max(lat.samples) if lat.samples else None), lat.note])
    return rows


LATENCY_HEADERS = ["latency", "samples", "p50 ms", "p99 ms", "max ms", "how / note"]
MEMORY_HEADERS = ["store", "open promises", "RSS delta MB", "bytes/promise", "on disk", "note"]


def memory_rows(results: dict) -> list[list[str]]:
    rows = []
    notes = {"book": "PromiseBook only (streams/core/promises.py)",
             "book+table": "book + the in-memory Faust table's dicts: what one worker holds",
             "tracemalloc": "book + table, Python objects only (no allocator slack)",
             "rocksdict": "table records in RocksDB (raw JSON); the book stays in memory"}
    for name, result in results.items():
        if "missing" in result:
            rows.append([name, "-", "-", "-", "-", result["missing"]])
            continue
        count = result["count"]
        if name == "tracemalloc":
            per = result["traced_bytes"] / count
            rows.append([name, f"{count:,}", f"{result['traced_bytes'] / 2**20:,.0f} (traced)", f"{per:,.0f}", "-",
                         notes[name]])
            continue
        per = result["rss_delta_mb"] * 2**20 / count
        disk = f"{result['disk_bytes'] / 2**20:,.0f} MB ({result['disk_bytes'] / count:,.0f} B/promise)" \
            if "disk_bytes" in result else "-"
        note = notes[name] + (f"; point get {result['get_us']:.1f} µs" if "get_us" in result else "")
        rows.append([name, f"{count:,}", f"{result['rss_delta_mb']:,.0f}", f"{per:,.0f}", disk, note])
    return rows


RECOVERY_HEADERS = ["broker", "open promises", "changelog records", "first worker ev/s", "/metrics up s",
                    "recovered s", "records/s", "CPU s", "RSS MB after"]


def recovery_row(kind: str, r) -> list[str]:
    return [kind, f"{r.promises:,}", f"{r.changelog_records:,}", f"{r.ingest_rate:,.0f}",
            num(r.serving_seconds, ".1f"), f"{r.recovered_seconds:.1f}",
            f"{r.changelog_records / r.recovered_seconds:,.0f}", f"{r.cpu_seconds:.1f}", f"{r.rss_mb:,.0f}"]
