"""The model registry: the shipped file, a user's file over it, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from singularity.config import Settings, load_settings
from singularity.errors import ConfigError
from singularity.nexus.complexity import Tier
from singularity.nexus.models_view import describe_models
from singularity.nexus.providers import Providers
from singularity.nexus.registry import load_registry


def settings_with(tmp_path: Path, text: str | None = None, **values: object) -> Settings:
    overrides: dict[str, object] = {"singularity_home": tmp_path, **values}
    if text is not None:
        path = tmp_path / "models.toml"
        path.write_text(text)
    return load_settings(_env_file=None, **overrides)


def test_the_shipped_registry_prices_every_model_and_covers_every_tier(
    tmp_path: Path, no_settings_env: None
) -> None:
    registry = load_registry(settings_with(tmp_path))
    assert registry.sources == ["the shipped models.toml"]
    assert all(m.priced for m in registry.models.values())
    for tier in Tier:
        assert registry.candidates("chat", tier), tier
    assert registry.candidates("code_generation", Tier.COMPLEX)[0].name == "claude-sonnet"


def test_a_user_file_overrides_models_and_rules(tmp_path: Path, no_settings_env: None) -> None:
    registry = load_registry(
        settings_with(
            tmp_path,
            """
            [models.gpt-4o-mini]
            provider = "openai"
            litellm_model = "openai/gpt-4o-mini"
            context_window = 1000
            [models.local]
            provider = "ollama"
            litellm_model = "ollama_chat/qwen2.5-coder"
            context_window = 32000
            input_usd_per_mtok = 0
            output_usd_per_mtok = 0
            [tiers]
            simple = ["local", "gpt-4o-mini"]
            [budgets.agents]
            coder = 2.5
            """,
        )
    )
    assert registry.sources[-1].endswith("models.toml")
    assert [m.name for m in registry.candidates("classifier", Tier.SIMPLE)] == [
        "local",
        "gpt-4o-mini",
    ]
    assert registry.models["gpt-4o-mini"].context_window == 1000
    assert not registry.models["gpt-4o-mini"].priced  # replaced whole: the user gave no price
    assert registry.candidates("chat", Tier.COMPLEX)  # rules not given are kept
    assert registry.agent_budgets == {"coder": 2.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x]\nprovider = 1", "model 'x'"),
        ("not toml [", "not valid TOML"),
        ('[tiers]\nsimple = ["nobody"]', "tiers.simple names unknown model 'nobody'"),
        ("[budgets.teams]\nx = 1", "unknown budgets section 'teams'"),
        (
            '[models.x]\nprovider = "openai"\nlitellm_model = "openai/x"\ncontext_window = -1',
            "context_window",
        ),
    ],
)
def test_a_bad_user_file_is_one_clear_line(
    tmp_path: Path, no_settings_env: None, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_registry(settings_with(tmp_path, text))


def test_a_missing_registry_file_is_named(tmp_path: Path, no_settings_env: None) -> None:
    settings = settings_with(tmp_path, nexus_models_file=tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"NEXUS_MODELS_FILE: cannot read .*nope\.toml"):
        load_registry(settings)


def test_a_provider_key_enables_that_providers_models(
    tmp_path: Path, no_settings_env: None
) -> None:
    settings = settings_with(tmp_path, anthropic_api_key="sk-ant-test")
    rows = {r["name"]: r for r in describe_models(load_registry(settings), Providers(settings, {}))}
    assert rows["claude-sonnet"]["credentials"] and rows["claude-haiku"]["credentials"]
    assert not rows["gpt-4o-mini"]["credentials"]
    assert Providers(settings, {}).configured() == ["anthropic"]


def test_openai_base_url_points_the_openai_models_at_another_server(
    tmp_path: Path, no_settings_env: None
) -> None:
    settings = settings_with(
        tmp_path, openai_base_url="http://localhost:11434/v1", openai_model="llama3.1"
    )
    rows = {r["name"]: r for r in describe_models(load_registry(settings), Providers(settings, {}))}
    mini = rows["gpt-4o-mini"]
    assert mini["credentials"]
    assert (mini["litellm_model"], mini["api_base"]) == (
        "openai/llama3.1",
        "http://localhost:11434/v1",
    )
    # The registry's OpenAI price does not apply to another server's model: flagged, not 0.
    assert mini["price"].startswith("unknown")


def test_a_model_without_any_price_is_flagged(tmp_path: Path, no_settings_env: None) -> None:
    settings = settings_with(
        tmp_path,
        '[models.mystery]\nprovider = "openai"\nlitellm_model = "openai/mystery-9"\n'
        "context_window = 8000\n",
        openai_api_key="sk-test",
    )
    rows = {r["name"]: r for r in describe_models(load_registry(settings), Providers(settings, {}))}
    assert rows["mystery"]["price"].startswith("unknown: add input_usd_per_mtok")
    assert rows["gpt-4o-mini"]["price"] == "registry"
