"""The process's counters: messages handled per queue and outcome, and LLM tokens and cost.

They live in no registry of their own: each health and metrics server registers them in its
own registry (prometheus_client's global one is left alone).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from prometheus_client import Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = [
    "COLLECTORS",
    "DEAD_LETTERED",
    "FAILED",
    "OK",
    "OUTCOMES",
    "RETRIED",
    "ConsumerMetrics",
    "observe_llm_call",
]

# A `_created` series beside every counter doubles the output and says nothing a dashboard
# needs (the process's start time is in process_start_time_seconds).
disable_created_metrics()

OK: Final = "ok"  # the handler returned; the message is archived
RETRIED: Final = "retried"  # the handler raised; the message comes back after a backoff
FAILED: Final = "failed"  # the handler raised on its last delivery: dead-lettered
DEAD_LETTERED: Final = "dead_lettered"  # unreadable, refused, or delivered too often
OUTCOMES: Final = (OK, RETRIED, FAILED, DEAD_LETTERED)

# From a millisecond reply to a sandboxed job of many minutes.
BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0,
)  # fmt: skip
_LE: Final = (*(floatToGoString(b) for b in BUCKETS), "+Inf")


class _QueueSeries:
    """One queue's figures: plain numbers, turned into Prometheus series only when scraped."""

    __slots__ = ("buckets", "outcomes", "total_s")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one: above every bound
        self.total_s = 0.0


# Every queue a consumer of this process handles (consumers of one queue share its series).
_QUEUES: dict[str, _QueueSeries] = {}


class ConsumerMetrics:
    """The consumer runtime's hook: counting a delivery is a few additions, no lock (the
    consumers and the scrapes share one event loop's thread)."""

    __slots__ = ("_series",)

    def __init__(self, queue: str) -> None:
        # Every outcome exists from the start at 0, so that rate() sees its first increase.
        self._series = _QUEUES.setdefault(queue, _QueueSeries())

    def handled(self, outcome: str, seconds: float | None = None) -> None:
        """Count one delivery; `seconds` is how long its handler ran (None: it did not run)."""
        series = self._series
        series.outcomes[outcome] += 1
        if seconds is not None:
            series.buckets[bisect_left(BUCKETS, seconds)] += 1
            series.total_s += seconds


class _ConsumersCollector:
    def collect(self) -> Iterator[Metric]:
        handled = CounterMetricFamily(
            "singularity_messages_handled",
            "Deliveries of a queue this process finished, by outcome.",
            labels=["queue", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "singularity_handle_seconds",
            "Time a handler took on one delivery.",
            labels=["queue"],
        )
        for queue, series in sorted(_QUEUES.items()):
            for outcome, count in series.outcomes.items():
                handled.add_metric([queue, outcome], count)
            cumulative = accumulate(series.buckets)
            seconds.add_metric(
                [queue], list(zip(_LE, cumulative, strict=True)), sum_value=series.total_s
            )
        yield handled
        yield seconds


LLM_TOKENS = Counter(
    "singularity_llm_tokens",
    "Tokens of the LLM calls this process routed, by model and kind (prompt, completion).",
    ["model", "kind"],
    registry=None,
)
LLM_COST = Counter(
    "singularity_llm_cost_usd",
    "Cost in USD of the LLM calls this process routed, by model (calls of unknown cost "
    "add nothing).",
    ["model"],
    registry=None,
)

COLLECTORS: Final = (_ConsumersCollector(), LLM_TOKENS, LLM_COST)


def observe_llm_call(
    model: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost_usd: float | None,
) -> None:
    """Count one routed LLM call's tokens and cost (nothing for a call that reached no model)."""
    if model is None:
        return
    if prompt_tokens:
        LLM_TOKENS.labels(model, "prompt").inc(max(0, prompt_tokens))
    if completion_tokens:
        LLM_TOKENS.labels(model, "completion").inc(max(0, completion_tokens))
    if cost_usd is not None and cost_usd > 0:
        LLM_COST.labels(model).inc(cost_usd)
