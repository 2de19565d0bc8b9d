"""Prices for models the registry gives none for: LiteLLM's bundled price list, read as data
(importing LiteLLM takes seconds; the list is one JSON file in its package)."""

from __future__ import annotations

import json
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from singularity.nexus.providers import Deployment

__all__ = ["PriceSource", "call_cost", "litellm_price", "price_source"]

_PRICE_FILE = "model_prices_and_context_window_backup.json"

PriceSource = str  # "registry", "litellm", or why the price is unknown


@cache
def _price_list() -> dict[str, dict[str, object]]:
    spec = find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _PRICE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def litellm_price(litellm_model: str) -> tuple[float, float] | None:
    """USD per token (input, output) by LiteLLM's list, trying the name with and without its
    provider prefix."""
    prices = _price_list()
    _, _, bare = litellm_model.partition("/")
    for name in (litellm_model, bare):
        entry = prices.get(name) if name else None
        if isinstance(entry, dict):
            given_in = entry.get("input_cost_per_token")
            given_out = entry.get("output_cost_per_token")
            if isinstance(given_in, int | float) and isinstance(given_out, int | float):
                return float(given_in), float(given_out)
    return None


def price_source(deployment: Deployment) -> PriceSource:
    """Where a deployment's price comes from, or why there is none."""
    if not deployment.priced_by_registry:
        return "unknown: calls go to OPENAI_BASE_URL"
    if deployment.spec.priced:
        return "registry"
    if litellm_price(deployment.litellm_model) is not None:
        return "litellm"
    return "unknown: add input_usd_per_mtok and output_usd_per_mtok to the registry"


def call_cost(deployment: Deployment, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What one call cost, or None when no price is known (never a silent 0)."""
    if not deployment.priced_by_registry:
        return None
    cost = deployment.spec.cost_usd(prompt_tokens, completion_tokens)
    if cost is not None:
        return cost
    per_token = litellm_price(deployment.litellm_model)
    if per_token is None:
        return None
    return prompt_tokens * per_token[0] + completion_tokens * per_token[1]
