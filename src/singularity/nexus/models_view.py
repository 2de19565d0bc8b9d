"""The registry as `singularity nexus models` and the API show it: credentials and prices."""

from __future__ import annotations

from typing import Any

from singularity.nexus.prices import price_source
from singularity.nexus.providers import Deployment, Providers
from singularity.nexus.registry import Registry

__all__ = ["describe_models"]


def describe_models(registry: Registry, providers: Providers) -> list[dict[str, Any]]:
    """One row per model: what it is, whether it can be called, where its price comes from,
    and the rules that list it."""
    used_in: dict[str, list[str]] = {}
    for tier, names in registry.tiers.items():
        for name in names:
            used_in.setdefault(name, []).append(str(tier))
    for task_type, rules in registry.task_types.items():
        for tier, names in rules.items():
            for name in names:
                used_in.setdefault(name, []).append(f"{task_type}.{tier}")
    rows = []
    for spec in registry.models.values():
        deployment = providers.deployment(spec)
        shown = deployment or Deployment(spec, spec.litellm_model, None, spec.api_base)
        rows.append(
            {
                "name": spec.name,
                "provider": spec.provider,
                "litellm_model": shown.litellm_model,
                "api_base": shown.api_base,
                "context_window": spec.context_window,
                "input_usd_per_mtok": spec.input_usd_per_mtok,
                "output_usd_per_mtok": spec.output_usd_per_mtok,
                "capabilities": list(spec.capabilities),
                "credentials": deployment is not None,
                "price": price_source(shown),
                "used_in": used_in.get(spec.name, []),
            }
        )
    return rows
