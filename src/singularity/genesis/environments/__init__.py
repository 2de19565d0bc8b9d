"""Environments: a repository's dependencies installed once in the sandbox, through a proxy that
reaches only the package registries, and cached as a read-only layer for its test runs."""

from singularity.genesis.environments.cache import EnvironmentCache, LayerInfo
from singularity.genesis.environments.detect import LAYER, SetupStep, step_for
from singularity.genesis.environments.prepare import (
    SETUP_LIMITS,
    Prepared,
    SetupFailed,
    SetupOutput,
    described,
    nothing_installed,
    prepare,
)
from singularity.genesis.environments.provider import Environments, SetupChoice
from singularity.genesis.environments.proxy import RegistryProxy, registry_proxy
from singularity.genesis.environments.registries import Registries, load_registries

__all__ = [
    "LAYER",
    "SETUP_LIMITS",
    "EnvironmentCache",
    "Environments",
    "LayerInfo",
    "Prepared",
    "Registries",
    "RegistryProxy",
    "SetupChoice",
    "SetupFailed",
    "SetupOutput",
    "SetupStep",
    "described",
    "load_registries",
    "nothing_installed",
    "prepare",
    "registry_proxy",
    "step_for",
]
