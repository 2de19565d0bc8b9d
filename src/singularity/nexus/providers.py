"""Which models can be called with the credentials at hand, and with which key and address.

Configuration by environment needs no file: a provider's key enables its models, and
OPENAI_BASE_URL points the OpenAI models at any OpenAI-compatible server (Ollama, vLLM,
LM Studio), where OPENAI_MODEL names the model that server serves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from singularity.config import Settings
from singularity.nexus.registry import ModelSpec, ToolCalling

__all__ = ["CONFIGURE_A_PROVIDER", "PROVIDER_SETTINGS", "Deployment", "Providers"]

# What enables each provider, for the hint when nothing is configured.
PROVIDER_SETTINGS: dict[str, str] = {
    "openai": "OPENAI_API_KEY (or OPENAI_BASE_URL for an OpenAI-compatible server)",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY or GOOGLE_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "ollama": "OLLAMA_API_BASE (e.g. http://localhost:11434)",
}

# What to do when no model can be called: said by `nexus models`, `doctor` and `demo`.
CONFIGURE_A_PROVIDER = (
    "set an API key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or OPENROUTER_API_KEY), "
    "or point OPENAI_BASE_URL at an OpenAI-compatible server such as a local Ollama "
    "(OPENAI_BASE_URL=http://localhost:11434/v1) with OPENAI_MODEL naming its model "
    "(e.g. OPENAI_MODEL=llama3.2), in .env or the environment; `singularity nexus models` "
    "shows what each model needs"
)

# Local OpenAI-compatible servers take any key, but the client insists on one.
_ANY_KEY = "not-needed"


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model with what it takes to call it."""

    spec: ModelSpec
    litellm_model: str
    api_key: str | None
    api_base: str | None
    # False when the registry's price does not apply (the call goes to another server).
    priced_by_registry: bool = True
    # How the model takes tools: natively, or through the text protocol (nexus/tool_text.py).
    tool_calling: ToolCalling = "native"

    @property
    def name(self) -> str:
        return self.spec.name


class Providers:
    """Resolves a model to a deployment, or None when its provider has no credentials."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = os.environ if environ is None else environ

    def deployment(self, spec: ModelSpec) -> Deployment | None:
        tools = spec.tool_calling
        if spec.api_key_env is not None:
            key = self._environ.get(spec.api_key_env)
            if not key:
                return None
            return Deployment(spec, spec.litellm_model, key, spec.api_base, tool_calling=tools)
        access = self._access(spec.provider)
        if access is None:
            return None
        key, base = access
        if spec.api_base is not None:
            return Deployment(
                spec, spec.litellm_model, key or _ANY_KEY, spec.api_base, tool_calling=tools
            )
        s = self._settings
        if spec.provider == "openai" and s.openai_base_url:
            # The server's own model answers, so the server's setting says how it takes tools.
            model = f"openai/{s.openai_model}" if s.openai_model else spec.litellm_model
            return Deployment(
                spec,
                model,
                key or _ANY_KEY,
                base,
                priced_by_registry=False,
                tool_calling=s.openai_tool_calling,
            )
        return Deployment(spec, spec.litellm_model, key, base, tool_calling=tools)

    def configured(self) -> list[str]:
        """The providers that have credentials."""
        return [name for name in PROVIDER_SETTINGS if self._access(name) is not None]

    def _access(self, provider: str) -> tuple[str | None, str | None] | None:
        s = self._settings
        if provider == "openai":
            key = _secret(s.openai_api_key)
            return (key, s.openai_base_url) if key or s.openai_base_url else None
        if provider == "anthropic":
            key = _secret(s.anthropic_api_key)
            return (key, None) if key else None
        if provider == "gemini":
            key = _secret(s.gemini_api_key) or _secret(s.google_api_key)
            return (key, None) if key else None
        if provider == "openrouter":
            key = _secret(s.openrouter_api_key)
            return (key, None) if key else None
        if provider == "ollama":
            return (None, s.ollama_api_base) if s.ollama_api_base else None
        return None


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    secret = getter() if getter else None
    return secret or None
