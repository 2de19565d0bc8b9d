"""The catalog's reply queues per Singularity instance."""

from __future__ import annotations

import pytest

from singularity.postgres.topology import Role
from singularity.shared_queue.catalog import (
    REPLY_QUEUES,
    instance_of,
    instance_queues,
    queue_spec,
    reply_queue,
)


def test_instance_one_uses_the_catalog_queues_and_others_their_own() -> None:
    assert [reply_queue(base, 1) for base in REPLY_QUEUES] == list(REPLY_QUEUES)
    assert reply_queue("llm_results", 2) == "llm_results_2"
    assert instance_queues(1) == ()
    names = [spec.name for spec in instance_queues(7)]
    assert names == [f"{base}_7" for base in REPLY_QUEUES]


def test_an_instance_queue_has_its_base_queue_roles_and_message() -> None:
    spec = queue_spec("job_results_12")
    assert spec is not None
    base = queue_spec("job_results")
    assert base is not None
    assert (spec.publishers, spec.consumer, spec.message) == (
        (Role.GENESIS,),
        Role.SINGULARITY,
        base.message,
    )
    assert spec.dead_letter == "job_results_12_dlq"


@pytest.mark.parametrize(
    ("queue", "instance"),
    [
        ("llm_results", 1),
        ("llm_results_2", 2),
        ("experiment_results_999", 999),
        ("llm_results_1000", None),
        ("llm_results_02", None),
        ("llm_requests_2", None),
        ("job_results_2_dlq", None),
    ],
)
def test_instance_of_reads_only_reply_queues(queue: str, instance: int | None) -> None:
    assert instance_of(queue) == instance


def test_a_queue_that_is_not_a_reply_queue_has_no_instance_copy() -> None:
    with pytest.raises(ValueError, match="not a reply queue"):
        reply_queue("llm_requests", 2)
