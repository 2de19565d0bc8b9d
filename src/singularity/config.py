"""The platform's one settings object, read from the environment and a `.env` file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from singularity.errors import ConfigError

__all__ = ["Settings", "load_settings"]

_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,20}$|^$")
# NATS subject tokens, each ending in a dot: "t1234." or "staging.old."; empty for none.
_SUBJECT_PREFIX = re.compile(r"^(?:[A-Za-z0-9_-]+\.)*$")
_URL_FIELDS = (
    "database_url",
    "genesis_database_url",
    "centralcloud_database_url",
    "nexus_database_url",
    "shared_queue_db_url",
)

Port = Annotated[int, Field(ge=1, le=65535)]


def _default_home() -> Path:
    # As root, the server runs as an unprivileged user that must reach the data directory:
    # /var/lib is the place for a service's data, and reaching it loosens no one's home.
    if os.geteuid() == 0:
        return Path("/var/lib/singularity")
    return platformdirs.user_data_path("singularity", appauthor=False)


class Settings(BaseSettings):
    """Effective configuration; every field maps to one environment variable of the same name."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Defaults for every database (the design's names).
    db_host: str | None = None
    db_port: Port = 5432
    db_user: str = "postgres"
    db_password: SecretStr | None = None
    nexus_db: str | None = None

    # Per-database overrides.
    database_url: SecretStr | None = None
    genesis_database_url: SecretStr | None = None
    centralcloud_database_url: SecretStr | None = None
    nexus_database_url: SecretStr | None = None

    # The bus.
    shared_queue_db_url: SecretStr | None = None
    shared_queue_host: str | None = None
    shared_queue_port: Port | None = None
    shared_queue_user: str | None = None
    shared_queue_password: SecretStr | None = None
    shared_queue_retention_days: int = Field(90, ge=1)
    shared_queue_poll_ms: int = Field(250, ge=10, le=60_000)
    shared_queue_batch_size: int = Field(100, ge=1, le=10_000)
    # The largest message a consumer reads (its JSON text, in bytes); a larger one is
    # dead-lettered unread. 8 MiB is four times the largest job result at Genesis's default
    # output limits (1 MiB per stream); jsonb itself stops near 255 MiB.
    shared_queue_max_message_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=255 * 1024 * 1024)

    # Services.
    port: Port = 3000
    genesis_data_dir: Path | None = None

    # Genesis: the sandbox.
    genesis_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    genesis_unsafe_sandbox: bool = False
    # A job a worker took comes back to the others this long after the worker stops being
    # heard from (its heartbeat renews the timeout every third of it while the job runs).
    genesis_visibility_timeout_s: int = Field(30, ge=1, le=3600)
    # Where repositories named by experiment requests on the bus may lie (directories,
    # separated by ':'); empty: the home directory of the user the worker runs as.
    genesis_repo_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    # Hosts (URLs or host[:port], separated by commas or spaces) a setup step may reach
    # through the registry proxy; empty: those the host's own pip and npm are configured to use.
    genesis_allowed_registries: Annotated[tuple[str, ...], NoDecode] = ()
    # The most disk the cached environment layers may take; least recently used go first.
    genesis_env_cache_mb: int = Field(4096, ge=64, le=10_000_000)
    # The blobs of workspace snapshots a worker keeps on disk for the next experiment on the
    # same repository (MiB; the least recently used go first; 0 keeps none).
    genesis_blob_cache_mb: int = Field(1024, ge=0, le=1 << 20)

    # Provider keys: each enables that provider's models.
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str | None = None
    # How the OPENAI_BASE_URL server's model takes tools: natively, or through Nexus's text
    # protocol (a local model without tool calling).
    openai_tool_calling: Literal["native", "text"] = "native"
    google_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    openrouter_api_key: SecretStr | None = None
    ollama_api_base: str | None = None

    # Nexus: the router.
    nexus_models_file: Path | None = None
    nexus_request_timeout_s: float = Field(120.0, gt=0, le=3600)
    nexus_attempt_timeout_s: float = Field(60.0, gt=0, le=3600)
    nexus_rate_limit_retries: int = Field(2, ge=0, le=10)
    nexus_rate_limit_max_wait_s: float = Field(30.0, ge=0, le=600)
    nexus_cooldown_failures: int = Field(3, ge=1, le=100)
    nexus_cooldown_s: float = Field(60.0, ge=0, le=86_400)
    nexus_daily_budget_usd: float | None = Field(None, ge=0)
    nexus_agent_daily_budget_usd: float | None = Field(None, ge=0)
    nexus_llm_concurrency: int = Field(64, ge=1, le=4096)

    # Nexus: the human-in-the-loop web UI.
    nexus_web: bool = True
    nexus_host: str = "127.0.0.1"
    nexus_ui_token: SecretStr | None = None
    nexus_public_url: str | None = None
    # The largest HTTP body the web UI reads (checked before reading; a larger one gets 413).
    nexus_max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30)
    nexus_expiry_policy: Literal["reject", "keep"] = "reject"

    # Singularity: agents, tasks, knowledge, backups.
    singularity_instance: int = Field(1, ge=1, le=999)
    singularity_agents_dir: Path | None = None
    singularity_llm_timeout_s: float = Field(600.0, gt=0, le=86_400)
    singularity_job_timeout_s: float = Field(900.0, gt=0, le=86_400)
    singularity_human_timeout_s: float = Field(86_400.0, gt=0, le=30 * 86_400)
    singularity_task_diff_attempts: int = Field(3, ge=1, le=10)
    singularity_task_revisions: int = Field(2, ge=0, le=10)
    singularity_task_test_command: str = "python -m pytest -q"
    # What one task's agent loop may spend (`singularity task --loop`), across its revisions:
    # model calls, tokens, dollars (known costs only) and seconds since the task began.
    singularity_task_max_steps: int = Field(40, ge=1, le=10_000)
    singularity_task_max_tokens: int | None = Field(400_000, ge=1)
    singularity_task_max_cost_usd: float | None = Field(5.0, gt=0)
    singularity_task_max_wall_s: float | None = Field(3_600.0, gt=0)
    # Tasks one Singularity instance works on at once (taken over from runners that died).
    singularity_max_tasks: int = Field(4, ge=1, le=256)
    singularity_embedding_model: str | None = None
    singularity_embedding_base_url: str | None = None
    singularity_embedding_api_key: SecretStr | None = None
    singularity_backups: bool = True
    singularity_backup_hourly_keep: int = Field(6, ge=0, le=1000)
    singularity_backup_daily_keep: int = Field(7, ge=0, le=1000)

    # The NATS bridge: the old system's subjects, forwarded onto the bus.
    nats_url: str = "nats://127.0.0.1:4222"
    nats_bridge_instance: int = Field(900, ge=2, le=999)
    nats_bridge_timeout_s: float = Field(600.0, gt=0, le=86_400)
    nats_bridge_subject_prefix: str = ""

    # Our own.
    singularity_home: Path = Field(default_factory=_default_home)
    singularity_db_prefix: str = ""
    singularity_log_level: str = "info"
    singularity_log_format: str = "console"
    singularity_metrics_host: str = "127.0.0.1"
    singularity_metrics_port: int = Field(9464, le=65535)  # 0: any free port; < 0: off
    singularity_role_password_singularity: SecretStr | None = None
    singularity_role_password_centralcloud: SecretStr | None = None
    singularity_role_password_genesis: SecretStr | None = None
    singularity_role_password_nexus: SecretStr | None = None
    singularity_role_password_centralcloud_analytics: SecretStr | None = None

    @field_validator(*_URL_FIELDS)
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("singularity_db_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _PREFIX_PATTERN.match(value):
            raise ValueError(
                "must start with a lowercase letter and hold only a-z, 0-9 and _ (21 at most)"
            )
        return value

    @field_validator("nats_bridge_subject_prefix")
    @classmethod
    def _subject_prefix(cls, value: str) -> str:
        if not _SUBJECT_PREFIX.match(value):
            raise ValueError("must be NATS subject tokens each ending in a dot, e.g. staging.")
        return value

    @field_validator("singularity_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @field_validator("singularity_log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        value = value.lower()
        if value not in ("console", "json"):
            raise ValueError("must be console or json")
        return value

    @field_validator("genesis_repo_roots", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            paths = [Path(part) for part in value.split(os.pathsep) if part.strip()]
            if any(not path.is_absolute() for path in paths):
                raise ValueError("every directory must be an absolute path")
            return tuple(paths)
        return value

    @field_validator("genesis_allowed_registries", mode="before")
    @classmethod
    def _word_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(value.replace(",", " ").split())
        return value

    @field_validator(
        "db_host",
        "shared_queue_host",
        "nexus_db",
        "shared_queue_user",
        "openai_base_url",
        "openai_model",
        "ollama_api_base",
        "nexus_public_url",
        "singularity_embedding_model",
        "singularity_embedding_base_url",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @property
    def embedded(self) -> bool:
        """True when no database server is configured: the platform runs its own."""
        return (
            self.db_host is None
            and self.shared_queue_host is None
            and all(getattr(self, name) is None for name in _URL_FIELDS)
        )

    @property
    def pgdata(self) -> Path:
        return self.singularity_home / "pgdata"

    @property
    def nexus_dir(self) -> Path:
        """Where Nexus keeps its files (the web UI token)."""
        return self.singularity_home / "nexus"

    @property
    def genesis_dir(self) -> Path:
        return self.genesis_data_dir or self.singularity_home / "genesis"

    @property
    def backup_dir(self) -> Path:
        """Where `singularity backup` keeps its hourly and daily dumps."""
        return self.singularity_home / ".db-backup"

    def role_password(self, role: str) -> SecretStr | None:
        """The password configured for a service role, if any."""
        value = getattr(self, f"singularity_role_password_{role}", None)
        return value if isinstance(value, SecretStr) and value.get_secret_value() else None

    def masked(self) -> dict[str, Any]:
        """Every setting by its environment name, secrets masked, for display."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = _mask(name, value.get_secret_value())
            elif isinstance(value, Path):
                value = str(value)
            shown[name.upper()] = value
        return shown


def _mask(name: str, secret: str) -> str:
    if name.endswith("_url"):
        parts = urlsplit(secret)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
            return parts._replace(netloc=netloc).geturl()
        return secret
    return "****" if secret else ""


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a bad value into one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None
