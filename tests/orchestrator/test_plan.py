"""Plans: SPARC phases and files read from the format the prompts ask for, and from the
looser forms models write."""

from __future__ import annotations

from singularity.orchestrator.plan import PHASES, parse_plan

ASKED = """\
Here is the plan.

## Specification
Add a `--verbose` flag to `cli.py` that prints each step.

## Pseudocode
```
# Completion: a comment in code, not a heading
parse the flag
when set, log each step
```

## Architecture
The flag lives in `main()`; logging goes through the existing `log` helper.

## Refinement
The flag must not change the output without it.

## Completion
Run `pytest tests/test_cli.py`.

## Files
- `cli.py`: change, add the flag
- `tests/test_cli.py`: create, tests for the flag
- `src/pkg/log.py`: read, how logging works
"""


def test_the_format_the_prompts_ask_for() -> None:
    plan = parse_plan(ASKED)
    assert list(plan.phases) == list(PHASES)
    assert plan.phases["specification"] == (
        "Add a `--verbose` flag to `cli.py` that prints each step."
    )
    assert plan.phases["completion"] == "Run `pytest tests/test_cli.py`."
    assert plan.files == ["cli.py", "tests/test_cli.py", "src/pkg/log.py"]
    assert plan.text == ASKED.strip()


def test_a_heading_inside_a_code_block_is_content() -> None:
    pseudocode = parse_plan(ASKED).phases["pseudocode"]
    assert "# Completion: a comment in code" in pseudocode
    assert pseudocode.startswith("```") and pseudocode.endswith("```")


def test_bold_numbered_and_colon_headings() -> None:
    plan = parse_plan(
        "**1. Specification**\n"
        "Do X.\n"
        "**Architecture:** put it in `src/x.py`.\n"
        "2) Pseudocode\n"
        "loop over the items\n"
        "Refinement: handle empty input.\n"
        "Phase 5 \u2014 Completion\n"
        "run the tests\n"
        "Files to read/change: src/x.py, tests/test_x.py\n"
    )
    assert plan.phases == {
        "specification": "Do X.",
        "pseudocode": "loop over the items",
        "architecture": "put it in `src/x.py`.",
        "refinement": "handle empty input.",
        "completion": "run the tests",
    }
    assert plan.files == ["src/x.py", "tests/test_x.py"]


def test_markdown_headings_of_any_level_with_titles() -> None:
    plan = parse_plan(
        "# Plan\n### 1. Specification (what and why)\nthe what\n#### Pseudo-code\nsteps\n"
    )
    assert plan.phases == {"specification": "the what", "pseudocode": "steps"}


def test_a_sentence_that_starts_with_a_phase_name_is_not_a_heading() -> None:
    plan = parse_plan("## Architecture\nRefinement of the parser is out of scope.\n")
    assert plan.phases == {"architecture": "Refinement of the parser is out of scope."}


def test_phases_that_do_not_apply_and_empty_ones_are_absent() -> None:
    plan = parse_plan("## Specification\nFix the typo.\n## Pseudocode\n\n## Files\n- `a.md`\n")
    assert plan.phases == {"specification": "Fix the typo."}
    assert plan.files == ["a.md"]


def test_a_plan_without_phases_is_all_specification() -> None:
    text = "Just change the greeting in `app/hello.py` to say hi."
    plan = parse_plan(text)
    assert plan.phases == {"specification": text}
    assert plan.files == ["app/hello.py"]  # backticked paths, when there is no Files section


def test_an_empty_plan() -> None:
    plan = parse_plan("  \n")
    assert (plan.text, plan.phases, plan.files) == ("", {}, [])


def test_files_in_bullets_without_backticks_and_with_notes() -> None:
    plan = parse_plan(
        "## Files\n"
        "* src/app.py (change): add the route\n"
        "1. **tests/test_app.py** - new tests\n"
        "- `Makefile`: read\n"
        "- ./docs/usage.md:12\n"
        "- None of the others\n"
        "- `src/app.py` again\n"
    )
    assert plan.files == ["src/app.py", "tests/test_app.py", "Makefile", "docs/usage.md"]


def test_unsafe_and_non_paths_are_not_files() -> None:
    plan = parse_plan(
        "## Files\n- `../secrets.txt`\n- `/etc/passwd`\n- `--verbose`\n- `src/`\n- `ok.py`\n"
    )
    assert plan.files == ["ok.py"]


def test_without_a_files_section_code_blocks_are_not_searched() -> None:
    plan = parse_plan("## Specification\nChange `a.py`.\n```\nsee `b.py`\n```\n")
    assert plan.files == ["a.py"]


def test_a_files_section_excludes_paths_mentioned_elsewhere() -> None:
    plan = parse_plan("## Specification\nLike `other.py` does.\n## Files\n- `mine.py`\n")
    assert plan.files == ["mine.py"]


def test_repeated_phase_sections_are_joined() -> None:
    plan = parse_plan("## Refinement\nfirst\n## Refinement\nsecond\n")
    assert plan.phases == {"refinement": "first\n\nsecond"}
