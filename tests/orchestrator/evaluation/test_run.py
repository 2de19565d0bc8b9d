"""An evaluation end to end: the agent loop through a real Nexus (the local server scripted to
follow a correct trajectory for one task and a wrong one for another), the judge's hidden
tests in a real Genesis sandbox, and the report that tells the two apart."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path

from genesis_support import RunningGenesis
from nexus_support import RunningNexus
from singularity.cli.eval_cmd import _chosen
from singularity.config import Settings
from singularity.orchestrator.evaluation.run import evaluate, summary
from singularity.orchestrator.evaluation.suite import EvalTask, copy_repo, load_suite
from singularity.orchestrator.platform import Connected
from singularity.orchestrator.service import task_runner
from singularity.testing.openai_server import MockOpenAI, Reply, ScriptedToolCall

CORRECT = "py-slugify-dashes"
WRONG = "sh-semver-bump-reset"


def _solved_files(task: EvalTask, scratch: Path) -> dict[str, str]:
    """The files the reference solution changes, with their contents after it."""
    assert task.solution is not None
    before = copy_repo(task, scratch / "before")
    after = copy_repo(task, scratch / "after")
    subprocess.run(["git", "init", "-q"], cwd=after, check=True)
    subprocess.run(["git", "apply", str(task.solution)], cwd=after, check=True)
    changed = {}
    for path in sorted(after.rglob("*")):
        relative = path.relative_to(after)
        if path.is_file() and ".git" not in relative.parts:
            original = before / relative
            if not original.exists() or not filecmp.cmp(original, path, shallow=False):
                changed[str(relative)] = path.read_text()
    shutil.rmtree(scratch)
    return changed


def _write(path: str, content: str) -> Reply:
    call = ScriptedToolCall("write_file", {"path": path, "content": content})
    return Reply("", tool_calls=[call])


def _finish(summary_text: str) -> Reply:
    return Reply("", tool_calls=[ScriptedToolCall("finish", {"summary": summary_text})])


async def test_the_judge_tells_a_correct_trajectory_from_a_wrong_one(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    tmp_path: Path,
) -> None:
    tasks = _chosen(load_suite(), f"{CORRECT},{WRONG}")
    correct = next(task for task in tasks if task.id == CORRECT)
    solution = _solved_files(correct, tmp_path / "scratch")
    assert solution  # the reference change touches files
    # Tasks run one at a time, in the suite's order: the model's script follows them.
    script = [_write(path, content) for path, content in solution.items()]
    script.append(_finish("Slugs collapse runs of dashes and keep accented letters' base."))
    script += [
        _write("NOTES.md", "Looked at the bump script; it seems fine.\n"),
        _finish("Nothing to change."),  # the visible tests pass; the hidden ones will not
    ]
    ordered = sorted(tasks, key=lambda task: task.id)
    first_correct = ordered[0].id == CORRECT
    if not first_correct:
        half = len(solution) + 1
        script = script[half:] + script[:half]
    llm.script("alpha", *script)
    runner = task_runner(connected, nexus_settings)
    results = await evaluate(ordered, runner, tmp_path / "eval", concurrency=1)

    by_id = {result.id: result for result in results}
    assert by_id[CORRECT].resolved and by_id[CORRECT].outcome == "resolved"
    assert all(by_id[CORRECT].judged.values()) and len(by_id[CORRECT].judged) == 3
    assert not by_id[WRONG].resolved and by_id[WRONG].outcome == "unresolved"
    assert by_id[WRONG].judged == {
        "bash tests/test_bump_reset.sh": False,  # fail_to_pass still fails
        "bash tests/test_bump.sh": True,  # pass_to_pass still passes
    }
    for result in results:
        assert result.model_calls >= 2 and result.tokens > 0 and result.cost_usd is not None
    totals = summary(results)
    assert (totals["tasks"], totals["resolved"], totals["resolved_pct"]) == (2, 1, 50.0)
    json.dumps({"tasks": [r.to_dict() for r in results], "summary": totals})
    # The hidden tests never reached the agent: nothing the model was sent names them.
    sent = json.dumps([call.body for call in llm.calls_for("alpha")])
    assert "test_hidden_slugs" not in sent and "test_bump_reset" not in sent
