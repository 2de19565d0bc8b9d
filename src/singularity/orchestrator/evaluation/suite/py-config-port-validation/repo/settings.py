"""Read the server's `key = value` config file."""

from dataclasses import dataclass


class ConfigError(ValueError):
    """The config file is wrong; the message is shown to the user as is."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2


def parse_lines(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ConfigError(f"line {number}: expected key = value")
        key, value = (part.strip() for part in line.split("=", 1))
        values[key] = value
    return values


def parse_workers(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"workers must be a positive integer, not {value!r}")
    return int(value)


def load_settings(text: str) -> Settings:
    values = parse_lines(text)
    unknown = set(values) - {"host", "port", "workers"}
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
    settings = Settings()
    return Settings(
        host=values.get("host", settings.host),
        port=int(values["port"]) if "port" in values else settings.port,
        workers=parse_workers(values["workers"]) if "workers" in values else settings.workers,
    )
