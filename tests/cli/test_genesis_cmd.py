"""`singularity genesis ...`, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genesis_support import BAD_DIFF, GOOD_DIFF, MODULE, TEST_COMMAND, make_repo, require_bwrap
from helpers import singularity
from singularity.postgres.cluster import Cluster


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    require_bwrap()


def test_check_says_the_sandbox_is_ready_and_lists_languages() -> None:
    shown = singularity("genesis", "check")
    assert shown.returncode == 0, shown.stderr
    assert "sandbox: ready" in shown.stdout
    for language in ("python", "javascript", "bash", "elixir"):
        assert language in shown.stdout


def test_run_prints_the_output_and_the_status(tmp_path: Path) -> None:
    source = tmp_path / "hello.py"
    source.write_text("print('hi there')\n")
    ran = singularity("genesis", "run", str(source), "--language", "python")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "hi there\n"
    assert "OK" in ran.stderr
    as_json = json.loads(
        singularity("genesis", "run", str(source), "-l", "python", "--json").stdout
    )
    assert as_json["status"] == "OK" and as_json["steps"] == ["check", "run"]


def test_a_failing_program_exits_non_zero_with_its_status(tmp_path: Path) -> None:
    source = tmp_path / "fail.sh"
    source.write_text("echo oops >&2; exit 3\n")
    ran = singularity("genesis", "run", str(source), "--language", "bash")
    assert ran.returncode == 1
    assert "oops" in ran.stderr and "RUNTIME_ERROR" in ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "fly"], "--mode must be check, lint, run or test"),
        (["--limits", "{nope"], "--limits is not JSON"),
        (["--limits", '{"wall_s": 100000}'], "--limits: "),
        (["--limits", "[1]"], "--limits must be a JSON object"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    source = tmp_path / "x.py"
    source.write_text("print(1)\n")
    ran = singularity("genesis", "run", str(source), "-l", "python", *args)
    assert ran.returncode == 2
    assert message in ran.stderr
    assert "Traceback" not in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_a_missing_source_file_is_one_line(tmp_path: Path) -> None:
    ran = singularity("genesis", "run", str(tmp_path / "absent.py"), "-l", "python")
    assert ran.returncode == 2 and "cannot read" in ran.stderr and "Traceback" not in ran.stderr


def test_experiment_apply_and_rollback(cluster: Cluster, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    diff = tmp_path / "change.diff"
    diff.write_text(GOOD_DIFF)
    ran = singularity(
        "genesis", "experiment", "--repo", str(repo), "--diff", str(diff),
        "--test", TEST_COMMAND, "--apply", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    outcome = json.loads(ran.stdout)
    assert outcome["recommendation"] == "merge"
    assert outcome["applied"] == ["calc.py"]
    assert "integers and floats" in (repo / "calc.py").read_text()

    listed = singularity("genesis", "experiments", "--json")
    assert any(
        row["id"] == outcome["id"] and row["applied_at"] for row in json.loads(listed.stdout)
    )
    rolled = singularity("genesis", "rollback", outcome["id"], "--reason", "not now")
    assert rolled.returncode == 0, rolled.stderr
    assert (repo / "calc.py").read_text() == MODULE
    shown = json.loads(singularity("genesis", "show", outcome["id"]).stdout)
    assert shown["rollbacks"][0]["reason"] == "not now"
    again = singularity("genesis", "rollback", outcome["id"])
    assert again.returncode == 2 and "rolled back already" in again.stderr


def test_an_experiment_that_breaks_tests_is_not_applied(cluster: Cluster, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    diff = tmp_path / "change.diff"
    diff.write_text(BAD_DIFF)
    ran = singularity(
        "genesis", "experiment", "--repo", str(repo), "--diff", str(diff),
        "--test", TEST_COMMAND, "--apply",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "rollback" in ran.stdout and "not applied" in ran.stdout
    assert (repo / "calc.py").read_text() == MODULE


def test_show_of_an_unknown_experiment_is_one_line(cluster: Cluster) -> None:
    shown = singularity("genesis", "show", "exp-nope")
    assert shown.returncode == 1
    assert "no experiment 'exp-nope'" in shown.stderr and "Traceback" not in shown.stderr


def test_an_experiment_shows_its_setup_step_and_why_it_failed(
    cluster: Cluster, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    diff = tmp_path / "change.diff"
    diff.write_text(GOOD_DIFF)
    ran = singularity(
        "genesis", "experiment", "--repo", str(repo), "--diff", str(diff),
        "--test", TEST_COMMAND, "--setup", "echo resolving; echo 'index unreachable' >&2; exit 5",
    )  # fmt: skip
    assert "environment: the given step: `echo resolving" in ran.stdout, ran.stderr
    assert "the setup step exited with 5: index unreachable" in ran.stdout
    assert "setup stdout:" in ran.stdout and "resolving" in ran.stdout
    assert "status setup_failed" in ran.stdout and "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--setup", "pip install .", "--no-setup"], "--setup and --no-setup exclude each other"),
        (["--setup", "  "], "--setup is empty"),
    ],
)
def test_bad_setup_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = make_repo(tmp_path)
    diff = tmp_path / "change.diff"
    diff.write_text(GOOD_DIFF)
    ran = singularity(
        "genesis", "experiment", "--repo", str(repo), "--diff", str(diff), "--test", "true", *args
    )
    assert ran.returncode == 2 and message in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
