"""Prometheus metrics, on a registry of their own so several fleets (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fleetbot_api_requests",
            "Agent API requests by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fleetbot_api_request_seconds",
            "Agent API latency by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.auth_failures = Counter(
            "fleetbot_api_auth_failures",
            "401 answers by reason code, and by agent when the token's signature verified "
            '(agent="unverified" otherwise: forged, malformed or foreign tokens).',
            ["agent", "reason"],
            registry=self.registry,
        )
        self.auth_unverified_sources = Gauge(
            "fleetbot_api_auth_unverified_sources",
            "Distinct client addresses that sent tokens which did not verify.",
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "fleetbot_heartbeats",
            "Heartbeats by outcome (no_work means no model was woken).",
            ["outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "fleetbot_runs_ended",
            "Runs ended, by status.",
            ["status"],
            registry=self.registry,
        )

        self.leader = Gauge(
            "fleetbot_leader",
            "1 while this replica holds the leader's lease, 0 while it stands by.",
            ["replica"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
