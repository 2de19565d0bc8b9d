"""The small charts of the analytics view."""

from __future__ import annotations

from singularity.centralcloud.render import bar, sparkline


def test_a_sparkline_scales_to_the_largest_value_and_dots_zeros() -> None:
    assert sparkline([0, 1, 2, 4, 8]) == "·▂▃▅█"
    assert sparkline([0, 0]) == "··"
    assert sparkline([]) == ""


def test_a_bar_shows_a_share() -> None:
    assert bar(0.75) == "████████░░"
    assert bar(1.5, width=4) == "████"
    assert bar(None) == ""
