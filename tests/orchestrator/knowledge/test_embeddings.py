"""The embeddings client: configured by settings, called for real on a local OpenAI server."""

from __future__ import annotations

import pytest

from singularity.config import Settings
from singularity.orchestrator.knowledge import Embedder, EmbeddingError, embedder_from_settings
from singularity.testing.openai_server import EMBEDDINGS_PATH, MockOpenAI, embedding_vector


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_no_model_means_no_embedder(no_settings_env: None) -> None:
    assert embedder_from_settings(settings()) is None
    assert embedder_from_settings(settings(singularity_embedding_model="")) is None


def test_keys_fall_back_to_openais(no_settings_env: None) -> None:
    own = embedder_from_settings(
        settings(
            singularity_embedding_model="openai/text-embedding-3-small",
            singularity_embedding_api_key="sk-own",
            openai_api_key="sk-openai",
        )
    )
    assert own is not None and own.api_key == "sk-own" and own.api_base is None
    fallback = embedder_from_settings(
        settings(singularity_embedding_model="text-embedding-3-small", openai_api_key="sk-openai")
    )
    assert fallback is not None and fallback.api_key == "sk-openai"
    # Another provider's model does not get OpenAI's key: LiteLLM finds that provider's own.
    other = embedder_from_settings(
        settings(singularity_embedding_model="cohere/embed-v4.0", openai_api_key="sk-openai")
    )
    assert other is not None and other.api_key is None
    # A local server takes any key, but the client insists on one.
    local = embedder_from_settings(
        settings(
            singularity_embedding_model="nomic-embed-text",
            singularity_embedding_base_url="http://127.0.0.1:11434/v1",
        )
    )
    assert local is not None and local.api_key and local.api_base == "http://127.0.0.1:11434/v1"
    assert "sk-" not in repr(own)  # keys stay out of logs


async def test_vectors_come_back_in_order(mock_llm_server: MockOpenAI) -> None:
    embedder = Embedder(
        model="openai/order-test", api_base=mock_llm_server.base_url, api_key="k", batch_size=2
    )
    texts = ["alpha", "beta", "gamma"]
    vectors = await embedder.embed(texts)
    assert len(vectors) == 3
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(embedding_vector(text))
    calls = [c for c in mock_llm_server.calls_for("order-test") if c.path == EMBEDDINGS_PATH]
    assert [c.body["input"] for c in calls] == [["alpha", "beta"], ["gamma"]]  # batched


async def test_a_bare_model_name_is_the_servers(mock_llm_server: MockOpenAI) -> None:
    embedder = Embedder(model="bare-embedder", api_base=mock_llm_server.base_url, api_key="k")
    assert await embedder.embed_one("x") == pytest.approx(embedding_vector("x"))
    assert mock_llm_server.calls_for("bare-embedder")  # sent as is, through the OpenAI protocol


async def test_an_unreachable_server_is_one_clear_error(broken_embedder: Embedder) -> None:
    with pytest.raises(EmbeddingError) as caught:
        await broken_embedder.embed(["x"])
    message = str(caught.value)
    assert message.startswith(
        f"embedding with {broken_embedder.model} at {broken_embedder.api_base} failed: "
    )
    assert "\n" not in message
