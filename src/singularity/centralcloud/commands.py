"""The work behind `singularity analytics`: one report (kept as a snapshot), the patterns."""

from __future__ import annotations

from singularity.centralcloud.analytics import check_days, compute_report
from singularity.centralcloud.learning import Learner, LearningCounts
from singularity.centralcloud.pools import archive_reader, centralcloud_store
from singularity.centralcloud.report import AnalyticsReport, Patterns
from singularity.postgres.cluster import Cluster

__all__ = ["analytics_report", "learned_patterns"]


async def analytics_report(cluster: Cluster, days: int) -> tuple[AnalyticsReport, int]:
    """The report of the last `days` days, and the id of the snapshot that keeps it."""
    check_days(days)
    async with archive_reader(cluster) as reader, centralcloud_store(cluster) as store:
        report = await compute_report(reader, days)
        return report, await store.save_snapshot(report)


async def learned_patterns(
    cluster: Cluster, *, learn: bool = True, libraries_per_language: int = 20
) -> tuple[LearningCounts | None, Patterns]:
    """What learning has gathered, after one learning run over what is new (with `learn`)."""
    async with centralcloud_store(cluster) as store:
        counts = None
        if learn:
            async with archive_reader(cluster) as reader:
                counts = await Learner(reader, store).learn()
        return counts, await store.patterns(libraries_per_language=libraries_per_language)
