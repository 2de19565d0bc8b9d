"""The tool specs and the dispatcher: every call gets an answer, never an exception."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from orchestrator.agent.agent_support import call, small
from singularity.orchestrator.agent import TOOL_NAMES, WorkspaceTools, tool_specs


@pytest.mark.parametrize(
    "module",
    [
        "singularity.orchestrator.agent",
        *(
            f"singularity.orchestrator.agent.{name}"
            for name in ("arguments", "edit", "files", "limits", "output", "paths", "search")
        ),
        *(f"singularity.orchestrator.agent.{name}" for name in ("text", "tools", "tree")),
    ],
)
def test_public_api_names_exist(module: str) -> None:
    package = importlib.import_module(module)
    for name in package.__all__:
        assert hasattr(package, name), name


def test_specs_are_openai_functions_with_closed_schemas() -> None:
    specs = tool_specs()
    assert [spec["function"]["name"] for spec in specs] == list(TOOL_NAMES)
    assert set(TOOL_NAMES) == {
        "list_files",
        "read_file",
        "search_files",
        "edit_file",
        "write_file",
        "create_file",
        "delete_file",
    }
    for spec in specs:
        assert spec["type"] == "function"
        function = spec["function"]
        assert len(function["description"]) > 40
        parameters = function["parameters"]
        assert parameters["type"] == "object"
        assert parameters["additionalProperties"] is False
        assert set(parameters.get("required", [])) <= set(parameters["properties"])
        assert "title" not in json.dumps(parameters)
        for name, schema in parameters["properties"].items():
            assert schema.get("description"), (function["name"], name)


def test_specs_are_a_fresh_copy_each_time() -> None:
    specs = tool_specs()
    specs[0]["function"]["name"] = "changed"
    assert tool_specs()[0]["function"]["name"] == "list_files"


def test_required_fields_match_what_the_dispatcher_demands(tools: WorkspaceTools) -> None:
    for spec in tool_specs():
        function = spec["function"]
        answer = tools.run_sync(function["name"], "{}")
        for field in function["parameters"].get("required", []):
            assert f"{field}: Field required" in answer.text


async def test_run_works_from_the_event_loop(tools: WorkspaceTools) -> None:
    answer = await tools.run("read_file", '{"path": "README.md"}')
    assert answer.ok and "# App" in answer.text


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("rm_rf", "{}", "there is no tool 'rm_rf'; the tools are: list_files, read_file"),
        ("read_file", "{path: README.md}", "arguments for read_file are not valid JSON"),
        ("read_file", '["README.md"]', "must be a JSON object, not list"),
        ("read_file", '"README.md"', "must be a JSON object, not str"),
        ("read_file", "null", "must be a JSON object, not NoneType"),
        ("read_file", "[" * 100_000, "not valid JSON: nested too deeply"),
        ("read_file", '{"path": 7}', "path: Input should be a valid string"),
        ("read_file", '{"path": "README.md", "start_line": "2"}', "start_line: Input should"),
        ("read_file", '{"path": "README.md", "start_line": true}', "start_line: Input should"),
        ("read_file", '{"path": "README.md", "start_line": 0}', "start_line: Input should be"),
        ("read_file", '{"path": "README.md", "mode": "x"}', "mode: Extra inputs"),
        ("edit_file", '{"path": "README.md"}', "old_text: Field required; new_text: Field"),
        ("read_file", '{"path": "README\\u0000.md"}', "path contains a NUL byte"),
        ("list_files", '{"path": {"nested": [[[]]]}}', "path: Input should be a valid string"),
    ],
)
def test_bad_calls_get_an_error_text(
    tools: WorkspaceTools, name: str, arguments: str, expected: str
) -> None:
    answer = tools.run_sync(name, arguments)
    assert not answer.ok and answer.changed == ()
    assert answer.text.startswith("Error: ")
    assert expected in answer.text


def test_deeply_nested_json_inside_an_object(tools: WorkspaceTools) -> None:
    nested = '{"path": ' + "[" * 50_000 + "]" * 50_000 + "}"
    answer = tools.run_sync("read_file", nested)
    assert not answer.ok and "Error: " in answer.text


def test_empty_arguments_mean_no_arguments(tools: WorkspaceTools) -> None:
    assert tools.run_sync("list_files", "").ok


def test_oversized_arguments_are_refused_before_parsing(workspace: Path) -> None:
    tools = small(workspace, max_arguments_chars=1000)
    answer = call(tools, "write_file", path="a.txt", content="x" * 2000)
    assert not answer.ok and "the limit is 1000" in answer.text
    assert not (workspace / "a.txt").exists()


def test_argument_strings_are_bounded(tools: WorkspaceTools, workspace: Path) -> None:
    too_long = call(tools, "write_file", path="a.txt", content="x" * 1_000_001)
    assert not too_long.ok and "content: String should have at most" in too_long.text
    assert "xxxx" not in too_long.text  # the value sent is not echoed back
    long_path = call(tools, "read_file", path="a/" * 600)
    assert not long_path.ok and "path: String should have at most 1024" in long_path.text


def test_every_output_is_bounded(workspace: Path) -> None:
    (workspace / "wide.txt").write_text("w" * 5000 + "\n")
    tools = small(workspace, max_output_chars=300)
    answer = call(tools, "search_files", pattern="w")
    assert answer.ok
    assert len(answer.text) < 400
    assert answer.text.endswith("more characters not shown]")


def test_file_names_that_are_not_utf8_come_back_as_text(workspace: Path) -> None:
    (workspace / "src").joinpath(b"caf\xe9.txt".decode("utf-8", "surrogateescape")).write_text("")
    answer = call(WorkspaceTools(workspace), "list_files", path="src")
    answer.text.encode("utf-8")  # no lone surrogates reach the model or the database
    assert "src/caf?.txt" in answer.text


def test_a_missing_workspace_is_an_error_not_an_exception(tmp_path: Path) -> None:
    answer = call(WorkspaceTools(tmp_path / "gone"), "list_files")
    assert not answer.ok
    assert answer.text == "Error: the workspace cannot be opened: No such file or directory"
