"""The model registry: which models exist, what they cost, and the order to try them in.

The package ships `models.toml`; a user file (NEXUS_MODELS_FILE, else
$SINGULARITY_HOME/models.toml when it exists) overrides it model by model and rule by rule.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from singularity.config import Settings
from singularity.errors import ConfigError
from singularity.nexus.complexity import Tier

__all__ = ["ModelSpec", "Registry", "ToolCalling", "load_registry", "user_registry_file"]

ToolCalling = Literal["native", "text"]


class ModelSpec(BaseModel):
    """One model a request can be routed to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    provider: str = Field(min_length=1)
    litellm_model: str = Field(min_length=1)
    context_window: int = Field(gt=0)
    input_usd_per_mtok: float | None = Field(None, ge=0)
    output_usd_per_mtok: float | None = Field(None, ge=0)
    capabilities: tuple[str, ...] = ()
    api_base: str | None = None
    api_key_env: str | None = None
    # "text" for a model without native tool calling: Nexus then asks for tool calls in
    # plain text (nexus/tool_text.py) and reads them back into the same `tool_calls`.
    tool_calling: ToolCalling = "native"

    @property
    def priced(self) -> bool:
        return self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What a call cost by this registry's prices (None when the model has none)."""
        if self.input_usd_per_mtok is None or self.output_usd_per_mtok is None:
            return None
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / 1_000_000


TierRules = dict[Tier, list[str]]


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, dict[str, Any]] = {}
    tiers: TierRules = {}
    task_types: dict[str, TierRules] = {}
    budgets: dict[str, dict[str, float]] = {}

    @model_validator(mode="after")
    def _known_budget_sections(self) -> _RegistryFile:
        unknown = set(self.budgets) - {"agents"}
        if unknown:
            raise ValueError(f"unknown budgets section {sorted(unknown)[0]!r} (only: agents)")
        return self


class Registry:
    """Models by name, and the candidate order per task type and tier."""

    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        tiers: TierRules,
        task_types: Mapping[str, TierRules],
        agent_budgets: Mapping[str, float],
        sources: Iterable[str],
    ) -> None:
        self.models = dict(models)
        self.tiers = tiers
        self.task_types = dict(task_types)
        self.agent_budgets = dict(agent_budgets)
        self.sources = list(sources)

    def candidates(self, task_type: str, tier: Tier) -> list[ModelSpec]:
        """The models to try, in order: the task type's rule for this tier, else the tier's."""
        names = self.task_types.get(task_type, {}).get(tier) or self.tiers.get(tier, [])
        return [self.models[name] for name in names]

    def larger_than(self, context_window: int) -> list[ModelSpec]:
        """Every model with a larger context window, smallest (then cheapest) first."""
        return sorted(
            (m for m in self.models.values() if m.context_window > context_window),
            key=lambda m: (m.context_window, m.input_usd_per_mtok or 0.0),
        )


def user_registry_file(settings: Settings) -> Path | None:
    """The user's registry file, if there is one."""
    if settings.nexus_models_file is not None:
        return settings.nexus_models_file
    default = settings.singularity_home / "models.toml"
    return default if default.is_file() else None


def load_registry(settings: Settings) -> Registry:
    """The shipped registry with the user's file laid over it; a bad file is one clear line."""
    shipped = files("singularity.nexus").joinpath("models.toml").read_text(encoding="utf-8")
    layers = [("the shipped models.toml", _parse("the shipped models.toml", shipped))]
    user = user_registry_file(settings)
    if user is not None:
        try:
            text = user.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"NEXUS_MODELS_FILE: cannot read {user}: {exc.strerror}") from None
        layers.append((str(user), _parse(str(user), text)))

    raw_models: dict[str, dict[str, Any]] = {}
    tiers: TierRules = {}
    task_types: dict[str, TierRules] = {}
    budgets: dict[str, float] = {}
    for _, layer in layers:
        raw_models.update(layer.models)
        tiers.update(layer.tiers)
        for task_type, rules in layer.task_types.items():
            task_types.setdefault(task_type, {}).update(rules)
        budgets.update(layer.budgets.get("agents", {}))

    source = layers[-1][0]
    models: dict[str, ModelSpec] = {}
    for name, fields in raw_models.items():
        try:
            models[name] = ModelSpec(name=name, **fields)
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"{source}: model {name!r}: {_first_problem(exc)}") from None
    for where, rules in [
        ("tiers", tiers),
        *((f"task_types.{t}", r) for t, r in task_types.items()),
    ]:
        for tier, names in rules.items():
            for name in names:
                if name not in models:
                    raise ConfigError(f"{source}: {where}.{tier} names unknown model {name!r}")
    return Registry(models, tiers, task_types, budgets, [s for s, _ in layers])


def _parse(source: str, text: str) -> _RegistryFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return _RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_problem(exc)}") from None


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return str(exc)
