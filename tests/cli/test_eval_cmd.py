"""`singularity eval` as a user runs it: bad input gets one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import singularity


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--tasks", "no-such-task"], "no task 'no-such-task' in the suite"),
        (["eval", "/no/such/suite"], "/no/such/suite"),
        (["eval", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    ],
)
def test_bad_input_gets_one_line(args: list[str], message: str) -> None:
    result = singularity(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


def test_a_malformed_task_is_named_in_one_line(tmp_path: Path) -> None:
    task = tmp_path / "suite" / "py-broken"
    (task / "repo").mkdir(parents=True)
    (task / "hidden").mkdir()
    (task / "task.toml").write_text('description = "x"\nlanguage = "cobol"\n')
    result = singularity("eval", str(tmp_path / "suite"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "task.toml" in lines[0], result.stderr
