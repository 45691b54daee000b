"""The worker's Prometheus metrics, named in the product's vocabulary.

Counters of what this process read (events, rejections, duplicates) and the
timing histograms are ordinary prometheus_client instruments. Promise outcomes
and open/overdue gauges are not counted here: they live in the partitions' state
and are exposed by :mod:`streams.collector`, so they follow partitions between
workers and survive restarts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from schemas import EVENT_TYPES, REJECT_REASONS
from schemas.events import Audience, Channel, PromiseKind

CHANNELS = tuple(c.value for c in Channel)
SCORES = ("1", "2", "3", "4", "5")
WITHIN_TARGET = ("true", "false")
REVISABLE = ("promise_revised", "promise_cancelled")
AUDIENCES = tuple(a.value for a in Audience)
KINDS = tuple(k.value for k in PromiseKind)
REJECT_REASONS_ALL = (*REJECT_REASONS, "key_mismatch", "processing_error")
OVERFLOW_TEAM = "other"

# The *_created series double what Prometheus stores and no dashboard reads them.
disable_created_metrics()

# Edges sit on typical targets (chat 1 min, phone 5 min, email 1 h/4 h/1 day) so
# "within target" is an exact bucket read, not an interpolation.
RESPONSE_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
GREETING_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
MARGIN_BUCKETS = (0, 1, 5, 15, 30, 60, 300, 900, 3600, 14400, 86400, 604800)


class TeamLabels:
    """Maps team names to label values, folding teams past the limit into ``other``."""

    def __init__(self, max_teams: int) -> None:
        self.max_teams = max_teams
        self.known: list[str] = []
        self._known_set: set[str] = set()

    def label(self, team: str) -> tuple[str, bool]:
        """The label for ``team`` and whether it is new to this process."""
        if team in self._known_set:
            return team, False
        if len(self.known) >= self.max_teams:
            team = OVERFLOW_TEAM
            if team in self._known_set:
                return team, False
        self.known.append(team)
        self._known_set.add(team)
        return team, True


class Instruments:
    """Counters and histograms of one worker process, all series present from start."""

    def __init__(self, registry: CollectorRegistry, teams: TeamLabels) -> None:
        self.teams = teams
        self.events = Counter(
            "servicewatch_events", "Valid events processed, by type.", ["type"], registry=registry
        )
        self.rejected = Counter(
            "servicewatch_events_rejected",
            "Invalid events sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "servicewatch_events_duplicate",
            "Events dropped because their event_id was already seen.",
            registry=registry,
        )
        self.misplaced = Counter(
            "servicewatch_events_misplaced",
            "Events not on the partition Kafka's default (murmur2) partitioner gives their key: "
            "an emitter hashing keys differently may split cases across partitions.",
            registry=registry,
        )
        timing_labels = ["team", "channel", "audience"]
        self.greeting = Histogram(
            "servicewatch_greeting_seconds",
            "Time from a customer reaching out to being greeted "
            "(in business hours where the team's policy has a calendar).",
            timing_labels, buckets=GREETING_BUCKETS, registry=registry,
        )
        self.response = Histogram(
            "servicewatch_response_seconds",
            "Time from a customer asking to being answered "
            "(in business hours where the team's policy has a calendar).",
            timing_labels, buckets=RESPONSE_BUCKETS, registry=registry,
        )
        judged_labels = [*timing_labels, "within_target"]
        self.greetings_judged = Counter(
            "servicewatch_greetings",
            "Greetings, by whether they came within the policy's greeting target.",
            judged_labels, registry=registry,
        )
        self.responses_judged = Counter(
            "servicewatch_responses",
            "Responses, by whether they came within the policy's response target.",
            judged_labels, registry=registry,
        )
        self.feedback = Counter(
            "servicewatch_feedback",
            "Satisfaction scores customers gave (1 = very dissatisfied, 5 = very satisfied).",
            [*timing_labels, "score"], registry=registry,
        )
        self.complaints = Counter(
            "servicewatch_complaints", "Customer complaints.", timing_labels, registry=registry,
        )
        self.promise_changes_ignored = Counter(
            "servicewatch_promise_changes_ignored",
            "Revisions and cancellations that changed nothing: the promise was unknown (not "
            "read yet), already ended, or past its deadline.",
            ["type"], registry=registry,
        )
        promise_labels = ["team", "kind", "audience"]
        self.delivery_margin = Histogram(
            "servicewatch_delivery_margin_seconds",
            "How early promises kept on time were delivered (0 = exactly at the due time).",
            promise_labels, buckets=MARGIN_BUCKETS, registry=registry,
        )
        self.delivery_lateness = Histogram(
            "servicewatch_delivery_lateness_seconds",
            "How late deliveries of missed promises came after the due time.",
            promise_labels, buckets=MARGIN_BUCKETS, registry=registry,
        )
        self.partition_lag = Gauge(
            "servicewatch_consumer_lag_messages",
            "Records in the events topic not yet processed, by assigned partition.",
            ["partition"], registry=registry,
        )
        self.partition_time = Gauge(
            "servicewatch_partition_time_seconds",
            "How far each assigned partition's time has provably moved (epoch seconds).",
            ["partition"], registry=registry,
        )
        self.by_type = {t: self.events.labels(t) for t in EVENT_TYPES}
        self.by_reason = {r: self.rejected.labels(r) for r in REJECT_REASONS_ALL}
        self._ignored = {t: self.promise_changes_ignored.labels(t) for t in REVISABLE}
        # (team label, channel, audience) -> bound child; bound once, not per event.
        self._greeting_children: dict[tuple[str, str, str], Histogram] = {}
        self._response_children: dict[tuple[str, str, str], Histogram] = {}
        # (team label, channel, audience) -> (within target, over target) counters
        self._greeting_judged: dict[tuple[str, str, str], tuple[Counter, Counter]] = {}
        self._response_judged: dict[tuple[str, str, str], tuple[Counter, Counter]] = {}
        self._feedback_children: dict[tuple[str, str, str], tuple[Counter, ...]] = {}
        self._complaint_children: dict[tuple[str, str, str], Counter] = {}
        self._margin_children: dict[tuple[str, str, str], Histogram] = {}
        self._lateness_children: dict[tuple[str, str, str], Histogram] = {}

    def team_label(self, team: str) -> str:
        label, is_new = self.teams.label(team)
        if is_new:
            for channel in CHANNELS:
                for audience in AUDIENCES:
                    key = (label, channel, audience)
                    self._greeting_children[key] = self.greeting.labels(*key)
                    self._response_children[key] = self.response.labels(*key)
                    self._greeting_judged[key] = tuple(
                        self.greetings_judged.labels(*key, w) for w in WITHIN_TARGET)
                    self._response_judged[key] = tuple(
                        self.responses_judged.labels(*key, w) for w in WITHIN_TARGET)
                    self._feedback_children[key] = tuple(
                        self.feedback.labels(*key, score) for score in SCORES)
                    self._complaint_children[key] = self.complaints.labels(*key)
            for kind in KINDS:
                for audience in AUDIENCES:
                    key = (label, kind, audience)
                    self._margin_children[key] = self.delivery_margin.labels(*key)
                    self._lateness_children[key] = self.delivery_lateness.labels(*key)
        return label

    def observe_greeting(
        self, team: str, channel: str, audience: str, seconds: float, target_seconds: float
    ) -> None:
        key = (self.team_label(team), channel, audience)
        self._greeting_children[key].observe(seconds)
        within, over = self._greeting_judged[key]
        (within if seconds <= target_seconds else over).inc()

    def observe_response(
        self, team: str, channel: str, audience: str, seconds: float, target_seconds: float
    ) -> None:
        key = (self.team_label(team), channel, audience)
        self._response_children[key].observe(seconds)
        within, over = self._response_judged[key]
        (within if seconds <= target_seconds else over).inc()

    def observe_feedback(self, team: str, channel: str, audience: str, score: int) -> None:
        self._feedback_children[(self.team_label(team), channel, audience)][score - 1].inc()

    def observe_complaint(self, team: str, channel: str, audience: str) -> None:
        self._complaint_children[(self.team_label(team), channel, audience)].inc()

    def promise_change_ignored(self, event_type: str) -> None:
        self._ignored[event_type].inc()

    def observe_margin(self, team: str, kind: str, audience: str, seconds: float) -> None:
        self._margin_children[(self.team_label(team), kind, audience)].observe(seconds)

    def observe_lateness(self, team: str, kind: str, audience: str, seconds: float) -> None:
        self._lateness_children[(self.team_label(team), kind, audience)].observe(seconds)
