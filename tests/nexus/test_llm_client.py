"""How a call carries tools: natively, or in text when the deployment or its provider says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from singularity.config import load_settings
from singularity.errors import ConfigError
from singularity.nexus.llm_client import takes_tools, tool_mode
from singularity.nexus.providers import Deployment, Providers
from singularity.nexus.registry import ModelSpec, load_registry
from singularity.nexus.tool_calls import ToolSet
from singularity.shared_queue.messages import Tool

TOOLS = ToolSet((Tool.model_validate({"type": "function", "function": {"name": "run_tests"}}),))
ASK = [{"role": "user", "content": "go"}]


def deployment(litellm_model: str = "openai/m", tool_calling: str = "native") -> Deployment:
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "provider": "openai",
            "litellm_model": litellm_model,
            "context_window": 1000,
            "tool_calling": tool_calling,
        }
    )
    return Deployment(spec, litellm_model, "k", None, tool_calling=spec.tool_calling)


def test_a_call_without_tools_has_no_tool_mode() -> None:
    assert tool_mode(deployment(), ASK, None) is None
    assert tool_mode(deployment(tool_calling="text"), ASK, None) is None


def test_a_native_deployment_gets_tools_natively() -> None:
    assert tool_mode(deployment(), ASK, TOOLS) == "native"


def test_a_text_deployment_gets_the_text_protocol() -> None:
    assert tool_mode(deployment(tool_calling="text"), ASK, TOOLS) == "text"
    history = [*ASK, {"role": "tool", "tool_call_id": "c", "content": "ok"}]
    assert tool_mode(deployment(tool_calling="text"), history, None) == "text"


def test_a_provider_that_lacks_tools_gets_the_text_protocol_rather_than_losing_them() -> None:
    """LiteLLM drops parameters a provider lacks: tools must never be dropped silently."""
    assert not takes_tools("ollama/llama3")
    assert tool_mode(deployment("ollama/llama3"), ASK, TOOLS) == "text"
    assert takes_tools("ollama_chat/llama3.1") and takes_tools("openai/anything")


def test_the_registry_flag_reaches_the_deployment(tmp_path: Path, no_settings_env: None) -> None:
    (tmp_path / "models.toml").write_text(
        '[models.local]\nprovider = "ollama"\nlitellm_model = "ollama_chat/qwen"\n'
        'context_window = 8000\ntool_calling = "text"\n'
    )
    settings = load_settings(
        _env_file=None, singularity_home=tmp_path, ollama_api_base="http://localhost:11434"
    )
    registry = load_registry(settings)
    found = Providers(settings, {}).deployment(registry.models["local"])
    assert found is not None and found.tool_calling == "text"
    native = Providers(settings, {}).deployment(registry.models["ollama-llama"])
    assert native is not None and native.tool_calling == "native"


def test_a_bad_flag_is_one_clear_line(tmp_path: Path, no_settings_env: None) -> None:
    (tmp_path / "models.toml").write_text(
        '[models.local]\nprovider = "ollama"\nlitellm_model = "ollama_chat/qwen"\n'
        'context_window = 8000\ntool_calling = "sometimes"\n'
    )
    with pytest.raises(ConfigError, match="model 'local': tool_calling"):
        load_registry(load_settings(_env_file=None, singularity_home=tmp_path))


@pytest.mark.parametrize(("setting", "expected"), [(None, "native"), ("text", "text")])
def test_openai_tool_calling_marks_the_openai_base_url_server(
    tmp_path: Path, no_settings_env: None, setting: str | None, expected: str
) -> None:
    values: dict[str, object] = {"openai_base_url": "http://localhost:11434/v1"}
    if setting is not None:
        values["openai_tool_calling"] = setting
    settings = load_settings(_env_file=None, singularity_home=tmp_path, **values)
    spec = load_registry(settings).models["gpt-4o-mini"]
    found = Providers(settings, {}).deployment(spec)
    assert found is not None and found.tool_calling == expected
