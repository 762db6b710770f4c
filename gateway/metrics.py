"""Prometheus metrics, on a registry of our own so /metrics shows the gateway and nothing else.

Labels stay low-cardinality on purpose: channel (sms, email...), a fixed outcome, a pipeline stage
or a queue name. Never an instance name from a URL, a customer or a message id: a label value
per customer would grow the scrape without bound.

Each process counts what it did. `omnigateway serve` runs HTTP and workers in one process, so its
/metrics is complete; separate `omnigateway worker` processes keep their own counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

InboundOutcome = Literal["stored", "duplicate", "forged", "malformed", "unavailable"]
OutboundOutcome = Literal["sent", "failed", "retried", "dead"]
Stage = Literal["ack", "routed"]

NAMESPACE = "omnigateway"
REGISTRY = CollectorRegistry(auto_describe=True)

INBOUND_MESSAGES = Counter(
    "inbound_messages", "Inbound webhook messages by channel and what became of them.",
    ["channel", "outcome"], namespace=NAMESPACE, registry=REGISTRY,
)
OUTBOUND_MESSAGES = Counter(
    "outbound_messages", "Outbound send attempts by channel and result.",
    ["channel", "outcome"], namespace=NAMESPACE, registry=REGISTRY,
)
PIPELINE_LATENCY = Histogram(
    "pipeline_latency_seconds",
    "Seconds from a webhook's arrival to a stage: ack (durably recorded and answered), "
    "routed (in the customer's thread and an agent queue).",
    ["stage"], namespace=NAMESPACE, registry=REGISTRY,
    # The ack path is sub-millisecond to a few ms; routing under backlog can take seconds.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
# The instance label is a configured instance name, never one taken from a URL: bounded.
WEBHOOK_SKIPPED = Counter(
    "webhook_skipped", "Authentic webhook items acknowledged and left out, by instance and why "
    "(another page or number, a group chat, our own echo, an event kind we do not handle).",
    ["instance", "reason"], namespace=NAMESPACE, registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "queue_depth", "Conversations waiting in each agent queue.",
    ["queue"], namespace=NAMESPACE, registry=REGISTRY,
)


# Labelled children, looked up once: `labels()` takes a lock and builds a key on every call, a
# measurable share of the ack path. Labels are low-cardinality (see above), so these stay small.
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def inbound(channel: str, outcome: InboundOutcome, count: int = 1) -> None:
    _child(INBOUND_MESSAGES, channel, outcome).inc(count)


def skipped(instance: str, reasons: Sequence[str]) -> None:
    for reason in reasons:
        _child(WEBHOOK_SKIPPED, instance, reason).inc()


def outbound(channel: str, outcome: OutboundOutcome) -> None:
    _child(OUTBOUND_MESSAGES, channel, outcome).inc()


def observe_latency(stage: Stage, seconds: float) -> None:
    _child(PIPELINE_LATENCY, stage).observe(seconds)


def set_queue_depth(queue: str, depth: int) -> None:
    QUEUE_DEPTH.labels(queue=queue).set(depth)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format. The app refreshes QUEUE_DEPTH before calling."""
    # aiohttp's content_type argument refuses parameters; the exposition format needs its version.
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


__all__ = [
    "INBOUND_MESSAGES",
    "OUTBOUND_MESSAGES",
    "PIPELINE_LATENCY",
    "QUEUE_DEPTH",
    "REGISTRY",
    "inbound",
    "metrics_handler",
    "observe_latency",
    "outbound",
    "set_queue_depth",
]
