# Copyright 2026 The transformers-clipflant5 authors. Licensed under the Apache License, Version 2.0.
"""The server's Prometheus metrics (served at /metrics), each app with a registry of its own."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "clip_flant5_requests", "Requests answered, by endpoint and status", ["endpoint", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.items = Counter(
            "clip_flant5_items", "Pairs of requests, by endpoint and outcome (scored or error)",
            ["endpoint", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "clip_flant5_request_latency_seconds", "Time from a request's arrival to its answer", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "clip_flant5_batch_size", "Pairs per model batch", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "clip_flant5_batch_seconds", "Time a replica took to score a batch", ["device"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queued = Gauge("clip_flant5_queued_items", "Pairs waiting for a replica", registry=self.registry)
        self.oom_splits = Counter(
            "clip_flant5_oom_splits", "Batches split in two after running out of memory", registry=self.registry
        )
