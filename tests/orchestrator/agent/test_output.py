"""ToolOutput and the bound on every text a tool returns."""

from __future__ import annotations

from singularity.orchestrator.agent.output import ToolOutput, bounded


def test_bounded_cuts_with_a_note() -> None:
    assert bounded("short", 10) == "short"
    assert bounded("x" * 15, 10) == "x" * 10 + "\n[output cut: 5 more characters not shown]"


def test_bounded_replaces_lone_surrogates() -> None:
    assert bounded("caf\udce9", 10) == "caf?"


def test_outputs_serialize_for_the_trajectory() -> None:
    output = ToolOutput(text="Deleted a.txt", changed=("a.txt",))
    assert ToolOutput.model_validate_json(output.model_dump_json()) == output
