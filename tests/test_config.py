"""Settings: the design's variable names, a .env file, masking, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from singularity.config import load_settings
from singularity.errors import ConfigError

pytestmark = pytest.mark.usefixtures("no_settings_env")


def test_nothing_configured_means_the_embedded_server(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, singularity_home=tmp_path)
    assert settings.embedded
    assert settings.pgdata == tmp_path / "pgdata"
    assert settings.shared_queue_retention_days == 90
    assert settings.port == 3000


@pytest.mark.parametrize(
    "variable",
    ["DB_HOST", "DATABASE_URL", "NEXUS_DATABASE_URL", "SHARED_QUEUE_DB_URL", "SHARED_QUEUE_HOST"],
)
def test_any_server_setting_means_an_external_server(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    value = "db.example" if variable.endswith("HOST") else "postgresql://db.example/x"
    monkeypatch.setenv(variable, value)
    assert not load_settings(_env_file=None).embedded


def test_the_design_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "db.example")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("NEXUS_DB", "hitl")
    monkeypatch.setenv("SHARED_QUEUE_POLL_MS", "100")
    monkeypatch.setenv("SHARED_QUEUE_BATCH_SIZE", "50")
    monkeypatch.setenv("GENESIS_DATA_DIR", "/srv/genesis")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "secret")
    settings = load_settings(_env_file=None)
    assert (settings.db_host, settings.db_port, settings.nexus_db) == ("db.example", 6543, "hitl")
    assert settings.shared_queue_poll_ms == 100
    assert settings.shared_queue_batch_size == 50
    assert settings.genesis_dir == Path("/srv/genesis")
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "secret"


def test_a_dotenv_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DB_HOST=from-file\nNEXUS_DB=from-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEXUS_DB", "from-env")
    settings = load_settings()
    assert settings.db_host == "from-file"
    assert settings.nexus_db == "from-env"


def test_secrets_are_masked() -> None:
    settings = load_settings(
        _env_file=None,
        openai_api_key="sk-123",
        db_password="pw",
        database_url="postgresql://app:pw@db.example/singularity",
        genesis_database_url="postgresql://db.example/genesis",
    )
    shown = settings.masked()
    assert shown["OPENAI_API_KEY"] == "****"
    assert shown["DB_PASSWORD"] == "****"
    assert shown["DATABASE_URL"] == "postgresql://app:****@db.example/singularity"
    assert shown["GENESIS_DATABASE_URL"] == "postgresql://db.example/genesis"
    assert "pw" not in str(shown.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"db_port": "abc"}, "DB_PORT: Input should be a valid integer"),
        ({"db_port": 70000}, "DB_PORT: Input should be less than or equal to 65535"),
        ({"nexus_database_url": "mysql://x/y"}, "NEXUS_DATABASE_URL: Value error, must be a"),
        ({"shared_queue_retention_days": 0}, "SHARED_QUEUE_RETENTION_DAYS: Input should be"),
        ({"singularity_db_prefix": "Bad-"}, "SINGULARITY_DB_PREFIX: Value error"),
        ({"singularity_log_format": "xml"}, "SINGULARITY_LOG_FORMAT: Value error, must be"),
    ],
)
def test_bad_values_get_one_clear_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **overrides)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_example_env_file_lists_every_setting() -> None:
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    names = {line.split("=")[0].lstrip("# ") for line in example.splitlines() if "=" in line}
    settings = load_settings(_env_file=None)
    assert set(settings.masked()) <= names
