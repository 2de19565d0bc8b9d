"""Agent kinds: shipped prompts that agree with the plan and diff readers, user overrides
that are checked when loaded, and placeholders filled safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from singularity.config import Settings
from singularity.errors import ConfigError, SingularityError, UsageError
from singularity.orchestrator.agent.loop import ALL_TOOLS, loop_tool_specs
from singularity.orchestrator.agents import (
    AGENT_KINDS,
    PLACEHOLDERS,
    PROMPT_NAMES,
    load_agent,
    load_agents,
    render,
    shipped_tool_descriptions,
    tool_descriptions,
)
from singularity.orchestrator.plan import PHASES, parse_plan

VALUES = {
    "description": "DESCRIPTION",
    "layout": "LAYOUT",
    "files": "FILES",
    "knowledge": "KNOWLEDGE",
    "plan": "PLAN",
    "diff": "DIFF",
    "error": "ERROR",
    "feedback": "FEEDBACK",
    "test_results": "TEST RESULTS",
    "test_command": "TEST COMMAND",
}

# What each shipped prompt shows the model, at least.
SHOWN = {
    "system": (),
    "plan": ("description", "layout", "files", "knowledge"),
    "code": ("description", "layout", "files", "knowledge", "plan"),
    "fix": ("description", "files", "plan", "diff", "error"),
    "revise": ("description", "files", "knowledge", "plan", "diff", "feedback", "test_results"),
    "work": ("description", "layout", "files", "knowledge", "test_command"),
    "rework": ("feedback", "test_results"),
    "tools": (),
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(_env_file=None, singularity_home=home)


def test_every_kind_loads_its_shipped_prompts(settings: Settings) -> None:
    kinds = load_agents(settings)
    assert [kind.name for kind in kinds] == list(AGENT_KINDS)
    shipped = Path(__file__).parents[2] / "src/singularity/orchestrator/prompts"
    for kind in kinds:
        assert kind.description
        assert list(kind.prompts) == list(PROMPT_NAMES)
        for prompt in PROMPT_NAMES:
            source = kind.sources[prompt]
            assert source.resolve() == (shipped / kind.name / f"{prompt}.md").resolve()
            assert kind.prompts[prompt] == source.read_text(encoding="utf-8")


def test_the_kinds_differ_in_their_prompts(settings: Settings) -> None:
    kinds = load_agents(settings)
    for prompt in ("system", "plan", "code"):
        assert len({kind.prompts[prompt] for kind in kinds}) == len(kinds)


@pytest.mark.parametrize("name", AGENT_KINDS)
def test_each_prompt_renders_with_its_placeholders(settings: Settings, name: str) -> None:
    kind = load_agent(name, settings)
    for prompt in PROMPT_NAMES:
        allowed = {key: VALUES[key] for key in PLACEHOLDERS[prompt]}
        text = kind.render(prompt, **allowed)
        assert "{" not in text  # every placeholder was filled, and the prompts need no braces
        for key in SHOWN[prompt]:
            assert VALUES[key] in text, f"{name}/{prompt}.md does not show {{{key}}}"


@pytest.mark.parametrize("name", AGENT_KINDS)
def test_the_plan_prompt_asks_for_the_format_parse_plan_reads(
    settings: Settings, name: str
) -> None:
    text = load_agent(name, settings).render("plan", **VALUES)
    example = text[text.index("## Specification") :]
    plan = parse_plan(example)
    assert list(plan.phases) == list(PHASES)
    assert plan.files and all("/" in path for path in plan.files)


@pytest.mark.parametrize("name", AGENT_KINDS)
def test_the_diff_prompts_ask_for_a_diff_fence(settings: Settings, name: str) -> None:
    kind = load_agent(name, settings)
    for prompt in ("code", "fix", "revise"):
        assert "```diff" in kind.prompts[prompt]
        assert "--- a/PATH" in kind.prompts[prompt] or prompt != "code"


def test_an_unknown_kind_lists_the_kinds(settings: Settings) -> None:
    with pytest.raises(UsageError, match="architect, coder, qa, self-improving-agent"):
        load_agent("reviewer", settings)


def test_a_user_file_overrides_one_prompt(settings: Settings, home: Path) -> None:
    override = home / "agents" / "coder" / "plan.md"
    override.parent.mkdir(parents=True)
    override.write_text("Plan {description} in {{JSON}}.\n")
    kind = load_agent("coder", settings)
    assert kind.sources["plan"] == override
    assert kind.render("plan", description="X") == "Plan X in {JSON}.\n"
    assert kind.sources["code"].name == "code.md" and kind.sources["code"] != override.parent
    assert "{plan}" in kind.prompts["code"]  # the other prompts stay the shipped ones


def test_the_agents_dir_setting_wins_over_home(tmp_path: Path, home: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "qa").mkdir(parents=True)
    (mine / "qa" / "system.md").write_text("You test.\n")
    (home / "agents" / "qa").mkdir(parents=True)
    (home / "agents" / "qa" / "system.md").write_text("Not me.\n")
    settings = Settings(_env_file=None, singularity_home=home, singularity_agents_dir=mine)
    assert load_agent("qa", settings).prompts["system"] == "You test.\n"


@pytest.mark.parametrize(
    ("prompt", "text", "expected"),
    [
        ("plan", "Uses {diff}.", "uses {diff}, which this prompt cannot use"),
        ("system", "You are {description}.", "uses {description}"),
        ("code", "Broken { brace", "write {{ and }} for a literal brace"),
        ("code", "{plan.__class__}", "is not a placeholder"),
        ("code", "{plan!r}", "is not a placeholder"),
        ("code", "   \n", "is empty"),
    ],
)
def test_a_bad_override_is_refused_naming_its_file(
    settings: Settings, home: Path, prompt: str, text: str, expected: str
) -> None:
    override = home / "agents" / "architect" / f"{prompt}.md"
    override.parent.mkdir(parents=True)
    override.write_text(text)
    with pytest.raises(SingularityError) as raised:
        load_agent("architect", settings)
    assert expected in str(raised.value)
    assert str(override) in str(raised.value)


def test_an_override_that_is_not_utf8_is_a_config_error(settings: Settings, home: Path) -> None:
    override = home / "agents" / "coder" / "fix.md"
    override.parent.mkdir(parents=True)
    override.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_agent("coder", settings)


def test_a_missing_value_names_the_prompt_file(settings: Settings) -> None:
    kind = load_agent("coder", settings)
    with pytest.raises(SingularityError) as raised:
        kind.render("revise", description="x")
    message = str(raised.value)
    assert str(kind.sources["revise"]) in message
    assert "which is not filled here" in message


def test_render_fills_placeholders_once_and_keeps_escaped_braces() -> None:
    template = 'Answer {{"files": []}} for {description}.'
    assert render(template, description="{layout}") == 'Answer {"files": []} for {layout}.'


def test_render_of_a_plain_string_reports_the_prompt() -> None:
    with pytest.raises(SingularityError, match=r"the prompt uses \{x\}"):
        render("{x}")


def test_an_unknown_prompt_name(settings: Settings) -> None:
    with pytest.raises(UsageError, match="has no prompt 'review'"):
        load_agent("qa", settings).render("review")


def test_a_users_tools_md_describes_the_tools_the_model_sees(
    settings: Settings, home: Path
) -> None:
    override = home / "agents" / "coder" / "tools.md"
    override.parent.mkdir(parents=True)
    override.write_text("Ours.\n\n## read_file\n\nRead it slowly,\nline by line.\n")
    kind = load_agent("coder", settings)
    assert tool_descriptions(kind) == {"read_file": "Read it slowly, line by line."}
    specs = {spec["function"]["name"]: spec["function"] for spec in loop_tool_specs(
        tool_descriptions(kind)
    )}  # fmt: skip
    assert specs["read_file"]["description"] == "Read it slowly, line by line."
    shipped = shipped_tool_descriptions()
    assert set(shipped) == set(ALL_TOOLS)  # every tool is described in the shipped file
    assert specs["finish"]["description"] == shipped["finish"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("## finish\nA.\n## finish\nB.\n", "described twice"),
        ("## finish\n\n## run_tests\nRun them.\n", "has no description"),
    ],
)
def test_a_malformed_tools_md_is_refused_with_its_file(
    settings: Settings, home: Path, text: str, problem: str
) -> None:
    override = home / "agents" / "qa" / "tools.md"
    override.parent.mkdir(parents=True)
    override.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        tool_descriptions(load_agent("qa", settings))
    assert str(override) in str(caught.value)
