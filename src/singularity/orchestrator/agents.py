"""Agent kinds and their prompts.

Every kind has the same eight prompts, one Markdown file each, shipped in
`singularity/orchestrator/prompts/<kind>/`:

- `system.md`: the system message, the agent's role. No placeholders.
- `plan.md` (task_type "architect"): asks for a plan in SPARC phases and a Files list, in
  the format `plan.py` reads. Placeholders: {description}, {layout}, {files}, {knowledge}.
- `code.md` (task_type "coder"): asks for one unified diff in a ```diff block. Those of
  plan.md, and {plan}.
- `fix.md` (task_type "coder"): git refused the diff; asks for a corrected one. Those of
  code.md, and {diff}, {error}.
- `revise.md` (task_type "coder"): a reviewer (or the tests) sent the change back; asks for a
  revised diff against the original files. Those of code.md, and {diff}, {feedback},
  {test_results}.
- `work.md` (task_type "coder"): the first message of the agent loop (`singularity task
  --loop`): the task, and how to work with the tools until the tests pass. Those of
  plan.md, and {test_command}.
- `rework.md`: a reviewer sent the loop's change back; the loop goes on in the same
  workspace with this message. Placeholders: {feedback}, {test_results}.
- `tools.md`: the loop's tools as the model reads them, a section per tool (`## NAME`, then
  its description); a tool left out keeps the shipped description. No placeholders.

`AgentKind.prompts` and `.sources` are keyed by the name without `.md` ("system", "plan",
...). PLACEHOLDERS holds the sets above; a caller passes at least the values of its prompt's set.
For a self-improving agent, {description} is the list of improvement goals.

A user overrides any prompt with a file of the same name in
`$SINGULARITY_AGENTS_DIR/<kind>/` (default `$SINGULARITY_HOME/agents/<kind>/`); the others
stay the shipped ones. Prompts are checked when loaded: a placeholder a prompt may not use
is an error that names the file.

Placeholders are written `{name}`, as in `str.format`, and only plain names are allowed (no
attributes, indexes, conversions or format specs). A literal brace is written twice: `{{`
gives `{` and `}}` gives `}` (so a JSON example reads `{{"key": 1}}`).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from singularity.config import Settings
from singularity.errors import ConfigError, SingularityError, UsageError

__all__ = [
    "AGENT_KINDS",
    "PLACEHOLDERS",
    "PROMPT_NAMES",
    "AgentKind",
    "Prompt",
    "agents_dir",
    "load_agent",
    "load_agents",
    "render",
    "shipped_tool_descriptions",
    "tool_descriptions",
]

AGENT_KINDS = ("architect", "coder", "qa", "self-improving-agent")
PROMPT_NAMES = ("system", "plan", "code", "fix", "revise", "work", "rework", "tools")

_CONTEXT = frozenset({"description", "layout", "files", "knowledge"})
PLACEHOLDERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "system": frozenset(),
        "plan": _CONTEXT,
        "code": _CONTEXT | {"plan"},
        "fix": _CONTEXT | {"plan", "diff", "error"},
        "revise": _CONTEXT | {"plan", "diff", "feedback", "test_results"},
        "work": _CONTEXT | {"test_command"},
        "rework": frozenset({"feedback", "test_results"}),
        "tools": frozenset(),
    }
)
_DESCRIPTIONS = {
    "architect": "designs first: a careful plan, then the change that follows it",
    "coder": "implements: a short plan, then working code with its tests",
    "qa": "tests first: adds or strengthens tests, then makes them pass",
    "self-improving-agent": (
        "improves a repository towards goals: picks the most valuable small improvement"
    ),
}
_PACKAGE = "singularity.orchestrator"


class Prompt(str):
    """A prompt's text that remembers the file it came from, for error messages."""

    source: Path

    def __new__(cls, text: str, source: Path) -> Prompt:
        prompt = super().__new__(cls, text)
        prompt.source = source
        return prompt


@dataclass(frozen=True)
class AgentKind:
    """An agent kind: its name, what it is for, its prompts by name, and their files."""

    name: str
    description: str
    prompts: Mapping[str, str]
    sources: Mapping[str, Path]

    def render(self, prompt: str, **values: str) -> str:
        """The named prompt (e.g. "plan") with its placeholders filled."""
        if prompt not in self.prompts:
            raise UsageError(
                f"agent {self.name} has no prompt {prompt!r}: it has {', '.join(self.prompts)}"
            )
        return render(self.prompts[prompt], **values)


def tool_descriptions(kind: AgentKind) -> dict[str, str]:
    """The tools' descriptions of `kind`'s tools.md: a section per tool, `## NAME` then its
    text (anything before the first heading is a note to the reader). ConfigError, naming
    the file, for a tool described twice or not at all."""
    return _sections(kind.prompts["tools"], kind.sources["tools"])


def shipped_tool_descriptions() -> dict[str, str]:
    """The tools' descriptions as shipped (the coder's tools.md), read once."""
    return dict(_shipped_tools())


@functools.cache
def _shipped_tools() -> dict[str, str]:
    return _sections(*_read_shipped("coder", "tools"))


def _sections(text: str, source: Path) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in render(text).splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            if name in found:
                raise ConfigError(f"{source}: the tool {name!r} is described twice")
            current = found[name] = []
        elif current is not None:
            current.append(line.strip())
    descriptions = {name: " ".join(" ".join(lines).split()) for name, lines in found.items()}
    for name, described in descriptions.items():
        if not described:
            raise ConfigError(f"{source}: the tool {name!r} has no description")
    return descriptions


def agents_dir(settings: Settings) -> Path:
    """The directory whose `<kind>/<prompt>.md` files override the shipped prompts."""
    return settings.singularity_agents_dir or settings.singularity_home / "agents"


def load_agent(name: str, settings: Settings) -> AgentKind:
    """The agent kind `name` with its prompts: the user's overrides, else the shipped ones."""
    if name not in AGENT_KINDS:
        raise UsageError(f"unknown agent {name!r}: the agents are {', '.join(AGENT_KINDS)}")
    user = agents_dir(settings) / name
    prompts: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for prompt in PROMPT_NAMES:
        text = _read_override(user / f"{prompt}.md")
        if text is None:
            text, source = _read_shipped(name, prompt)
        else:
            source = user / f"{prompt}.md"
        loaded = Prompt(text, source)
        _check(loaded, PLACEHOLDERS[prompt])
        prompts[prompt], sources[prompt] = loaded, source
    return AgentKind(
        name=name,
        description=_DESCRIPTIONS[name],
        prompts=MappingProxyType(prompts),
        sources=MappingProxyType(sources),
    )


def load_agents(settings: Settings) -> list[AgentKind]:
    """Every agent kind, in the order of AGENT_KINDS."""
    return [load_agent(name, settings) for name in AGENT_KINDS]


def render(template: str, **values: str) -> str:
    """The template with each `{name}` replaced by `values[name]`, and `{{`/`}}` unescaped.

    A placeholder without a value is a SingularityError that names the prompt's file.
    """
    pieces: list[str] = []
    for literal, field in _parse(template):
        pieces.append(literal)
        if field is None:
            continue
        if field not in values:
            given = ", ".join(sorted(values)) or "none"
            raise SingularityError(
                f"{_where(template)} uses {{{field}}}, which is not filled here "
                f"(the values given are: {given})"
            )
        pieces.append(str(values[field]))
    return "".join(pieces)


def _parse(template: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder name or None) pieces; a malformed template is an error."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SingularityError(
            f"{_where(template)}: {exc}; write {{{{ and }}}} for a literal brace"
        ) from None
    pieces: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (not field.isidentifier() or spec or conversion):
            whole = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise SingularityError(
                f"{_where(template)}: {{{whole}}} is not a placeholder; placeholders are plain "
                f"names such as {{description}}, and {{{{ }}}} write literal braces"
            )
        pieces.append((literal, field))
    return pieces


def _check(prompt: Prompt, allowed: frozenset[str]) -> None:
    for _, field in _parse(prompt):
        if field is not None and field not in allowed:
            names = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "none"
            raise ConfigError(
                f"{_where(prompt)} uses {{{field}}}, which this prompt cannot use "
                f"(it may use: {names}); write {{{{ and }}}} for literal braces"
            )


def _where(template: str) -> str:
    source = getattr(template, "source", None)
    return f"prompt file {str(source)!r}" if source is not None else "the prompt"


def _read_override(path: Path) -> str | None:
    """The text of a user's prompt file, or None when there is none."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"prompt file {str(path)!r} cannot be read: {exc}") from None
    if not text.strip():
        raise ConfigError(f"prompt file {str(path)!r} is empty: remove it to use the shipped one")
    return text


def _read_shipped(name: str, prompt: str) -> tuple[str, Path]:
    resource = resources.files(_PACKAGE).joinpath("prompts", name, f"{prompt}.md")
    try:
        return resource.read_text(encoding="utf-8"), Path(str(resource))
    except OSError:
        raise SingularityError(
            f"the shipped prompt {name}/{prompt}.md is missing: reinstall singularity"
        ) from None
