"""``servicewatch simulate``: realistic traffic into a topic, with progress."""

from __future__ import annotations

import sys
from argparse import Namespace

from streams.simulation import SimulationProfile, SimulationStats, run_simulation


def simulate(args: Namespace) -> None:
    profile = SimulationProfile(late_share=args.late_share, never_share=args.never_share)
    print(f"Sending {args.rate:g} cases per second to {args.topic} at {args.broker}. Ctrl-C stops.", flush=True)

    def progress(stats: SimulationStats) -> None:
        counts = ", ".join(f"{n:,} {kind}" for kind, n in sorted(stats.sent_by_type.items()))
        end = "" if sys.stdout.isatty() else "\n"
        prefix = "\r\033[K" if sys.stdout.isatty() else ""
        print(f"{prefix}{stats.cases:,} cases, {stats.sent:,} events sent ({counts})", end=end, flush=True)

    try:
        stats = run_simulation(
            args.broker, args.topic, cases_per_second=args.rate, duration=args.duration,
            profile=profile, seed=args.seed, on_progress=progress,
        )
    except KeyboardInterrupt:
        print("\nStopped.")
        return
    print(f"\nDone: {stats.cases:,} cases, {stats.sent:,} events sent, {stats.failed:,} not acknowledged.")
