"""The deployment artifacts: Kubernetes manifests against the Kubernetes schemas, the compose
file's shape, and every setting and service command they use against the code."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from kubernetes_validate.utils import ValidationError, latest_version, validate

from singularity.cli import app
from singularity.config import Settings
from singularity.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "compose.yaml"
CREDENTIALS = ROOT / "deploy" / "compose" / "credentials.env.example"
DOCKERFILE = ROOT / "Dockerfile"

# The oldest Kubernetes the manifests are for (appArmorProfile is a field from 1.30 on), and
# the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", latest_version())
METRICS_PORT = 9464
APP_SERVICES = ("centralcloud", "singularity", "nexus", "genesis")


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def unknown_settings(names: Any) -> list[str]:
    allowed = setting_names()
    return sorted(name for name in names if name not in allowed)


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def k8s_objects() -> list[dict[str, Any]]:
    found = []
    for name in kustomization()["resources"]:
        found += [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]
    return found


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, obj in by_kind(kind).items():
            yield name, obj["spec"]["template"]["spec"]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_app_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the platform's image (not PostgreSQL)."""
    image = doc["services"]["db-init"]["image"]
    return {name: s for name, s in doc["services"].items() if s.get("image") == image}


def dockerfile_instruction(name: str) -> Any:
    lines = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert len(lines) == 1, f"one {name} in the Dockerfile, found {lines}"
    return json.loads(lines[0])


# --- Kubernetes -------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert kustomization()["namespace"] == by_kind("Namespace").popitem()[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    objects = k8s_objects()
    assert len(objects) == 12
    for obj in objects:
        # strict: a field the API does not have (a typo) is an error too.
        validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "metrics"),
        (("spec", "replica"), 2),  # a field Deployments do not have
    ],
)
def test_a_broken_manifest_is_rejected(path: tuple[str | int, ...], value: Any) -> None:
    broken = copy.deepcopy(by_kind("Deployment")["nexus"])
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        validate(broken, K8S_VERSIONS[0], strict=True)


def test_one_deployment_per_service_with_its_replicas() -> None:
    deployments = by_kind("Deployment")
    replicas = {name: d["spec"]["replicas"] for name, d in deployments.items()}
    assert replicas == {"centralcloud": 1, "singularity": 1, "nexus": 2, "genesis": 2}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["run", name]
    for name in ("centralcloud", "singularity"):  # never two at once, even in a rollout
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"


def test_service_commands_are_real_services() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert "run" in commands
    assert "init" in commands["db"].commands
    used = [c["args"] for _, spec in pod_specs() for c in spec["containers"]]
    used += [s["command"] for s in compose_app_services(compose()).values()]
    used += [dockerfile_instruction("CMD")]
    for args in used:
        assert args == ["db", "init"] or (args[0] == "run" and args[1:] and len(args) == 2), args
        if args[0] == "run":
            assert args[1] in SERVICES, f"{args[1]} is not one of {sorted(SERVICES)}"


def test_probes_and_resources() -> None:
    for name, deployment in by_kind("Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT, name
        ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        assert ready["path"] == "/healthz" and ports[ready["port"]] == METRICS_PORT, name
        assert live["path"] == "/livez" and ports[live["port"]] == METRICS_PORT, name
        assert set(container["resources"]) == {"requests", "limits"}, name
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, name
    settings = by_kind("ConfigMap")["singularity-settings"]["data"]
    assert settings["SINGULARITY_METRICS_HOST"] == "0.0.0.0"
    assert int(settings["SINGULARITY_METRICS_PORT"]) == METRICS_PORT


def test_services_and_autoscalers() -> None:
    services = by_kind("Service")
    nexus = by_kind("Deployment")["nexus"]
    labels = nexus["spec"]["template"]["metadata"]["labels"]
    (container,) = nexus["spec"]["template"]["spec"]["containers"]
    ui = services["nexus-ui"]
    assert ui["spec"]["selector"].items() <= labels.items()
    (ui_port,) = ui["spec"]["ports"]
    http = {p["name"]: p["containerPort"] for p in container["ports"]}[ui_port["targetPort"]]
    settings = by_kind("ConfigMap")["singularity-settings"]["data"]
    assert http == int(settings["PORT"]) and settings["NEXUS_HOST"] == "0.0.0.0"
    metrics = services["singularity-metrics"]
    for deployment in by_kind("Deployment").values():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert metrics["spec"]["selector"].items() <= pod_labels.items()
    assert metrics["spec"]["ports"][0]["port"] == METRICS_PORT
    hpas = by_kind("HorizontalPodAutoscaler")
    assert set(hpas) == {"genesis", "nexus"}
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_k8s_settings_are_real_settings() -> None:
    config = by_kind("ConfigMap")["singularity-settings"]["data"]
    secret = by_kind("Secret")["singularity-credentials"]["stringData"]
    assert unknown_settings(config) == []
    assert unknown_settings(secret) == []
    for name, spec in pod_specs():
        for container in spec["containers"]:
            env = [e["name"] for e in container.get("env", [])]
            assert unknown_settings(env) == [], name
            for entry in container.get("env", []):
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["key"] in secret, f"{name}: {ref['key']} is not in the Secret"
        assert spec["enableServiceLinks"] is False, f"{name}: service links shadow settings"


def test_the_secret_is_a_marked_template() -> None:
    text = (KUBERNETES / "secret.yaml").read_text()
    assert "TEMPLATE" in text
    secret = by_kind("Secret")["singularity-credentials"]["stringData"]
    assert all(v.startswith("REPLACE-ME") for k, v in secret.items() if not k.endswith("API_KEY"))


# --- The sandbox ------------------------------------------------------------------------------


def test_genesis_gets_a_real_sandbox() -> None:
    for path in [COMPOSE, DOCKERFILE, *KUBERNETES.glob("*.yaml")]:
        assert "GENESIS_UNSAFE_SANDBOX" not in path.read_text(), path
    (container,) = by_kind("Deployment")["genesis"]["spec"]["template"]["spec"]["containers"]
    context = container["securityContext"]
    assert context["privileged"] is False and context["runAsUser"] == 0
    assert context["capabilities"]["add"] == ["SYS_ADMIN"]
    assert context["procMount"] == "Unmasked"
    genesis = compose()["services"]["genesis"]
    assert genesis["privileged"] is False and genesis["cap_add"] == ["SYS_ADMIN"]
    assert "systempaths=unconfined" in genesis["security_opt"]


# --- Compose ----------------------------------------------------------------------------------


def test_compose_has_the_platform() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"postgres", "db-init", *APP_SERVICES}
    postgres = services["postgres"]
    assert postgres["image"] == "pgvector/pgvector:pg16"
    assert "healthcheck" in postgres
    assert postgres["volumes"][0].split(":")[0] in doc["volumes"]
    init = services["db-init"]
    assert init["command"] == ["db", "init"] and init["restart"] == "no"
    assert init["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in APP_SERVICES:
        service = services[name]
        assert service["command"] == ["run", name]
        assert service["depends_on"] == {"db-init": {"condition": "service_completed_successfully"}}
        probe = " ".join(service["healthcheck"]["test"])
        assert "urllib" in probe and f"127.0.0.1:{METRICS_PORT}/healthz" in probe, name
    assert services["genesis"]["deploy"]["replicas"] == 2
    assert any(str(p).endswith(":3000") for p in services["nexus"]["ports"])
    assert services["nexus"]["environment"]["NEXUS_HOST"] == "0.0.0.0"


def compose_problems(doc: dict[str, Any]) -> list[str]:
    """Environment names that are not settings, and interpolated credentials not in the
    credentials template."""
    template = {
        line.split("=", 1)[0]
        for line in CREDENTIALS.read_text().splitlines()
        if line and not line.startswith("#")
    }
    problems = [f"credentials: {n}" for n in unknown_settings(template)]
    for name, service in compose_app_services(doc).items():
        environment = service.get("environment", {})
        problems += [f"{name}: {n}" for n in unknown_settings(environment)]
        for value in map(str, environment.values()):
            for variable in re.findall(r"\$\{(\w+)", value):
                if variable not in template:
                    problems.append(f"{name}: ${{{variable}}} is not in {CREDENTIALS.name}")
    return problems


def test_compose_settings_are_real_settings() -> None:
    assert compose_problems(compose()) == []


def test_a_misnamed_compose_setting_is_caught() -> None:
    broken = compose()
    broken["services"]["nexus"]["environment"]["NEXUS_UI_PORT"] = "3000"
    broken["services"]["genesis"]["environment"]["GENESIS_CONCURRENCY"] = "${GENESIS_WORKERS}"
    assert compose_problems(broken) == [
        "nexus: NEXUS_UI_PORT",
        "genesis: ${GENESIS_WORKERS} is not in credentials.env.example",
    ]


# --- The image --------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_instruction("ENTRYPOINT") == ["singularity"]
    assert dockerfile_instruction("CMD") == ["run", "singularity"]
    assert re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)[-1].startswith("python:3.11-slim")
    install = re.search(r"apt-get install[^\n]*", text)
    assert install is not None
    assert {"bubblewrap", "git", "python3"} <= set(install.group(0).split())
    assert "[test]" not in text and "[bench]" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "tests"} <= set(ignored)


def test_docs_are_linked() -> None:
    assert (ROOT / "docs" / "deploy.md").is_file()
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
