"""`singularity genesis env list|prune`, run as a user runs them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from helpers import singularity
from singularity.genesis.environments import EnvironmentCache, SetupStep
from singularity.genesis.environments.cache import layer_key


def cached(root: Path, name: str, repository: str) -> str:
    """A layer committed as a build would commit it (without running a build)."""
    cache = EnvironmentCache(root, 1 << 30)
    cache.ensure()
    step = SetupStep(f"echo {name}\n", f"the {name} step", "given")
    key = layer_key(step, {}, {"machine": name})
    built = Path(tempfile.mkdtemp(dir=root)) / "layer"
    built.mkdir()
    (built / "file").write_text(name)
    cache.commit(key, built, step, repository)
    built.parent.rmdir()
    return key


def test_list_shows_each_layer_and_prune_removes_them(tmp_path: Path) -> None:
    env = {"GENESIS_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    root = tmp_path / "environments"
    empty = singularity("genesis", "env", "list", env=env)
    assert empty.returncode == 0 and "no cached environments" in empty.stdout
    first = cached(root, "alpha", "calc")
    cached(root, "beta", "web")
    shown = singularity(
        "genesis",
        "env",
        "list",
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    for text in (first[:12], "the alpha step", "calc", "the beta step", "web"):
        assert text in shown.stdout
    kept = singularity("genesis", "env", "prune", "--older-than", "1", env=env)
    assert kept.returncode == 0 and "removed 0" in kept.stdout
    pruned = singularity("genesis", "env", "prune", "--all", env=env)
    assert pruned.returncode == 0 and "removed 2" in pruned.stdout
    assert not (root / first).exists()


def test_prune_needs_exactly_one_choice(tmp_path: Path) -> None:
    env = {"GENESIS_DATA_DIR": str(tmp_path)}
    for args in ([], ["--all", "--older-than", "3"]):
        done = singularity("genesis", "env", "prune", *args, env=env)
        assert done.returncode == 2
        assert done.stderr.strip() == "error: give either --all or --older-than DAYS"
    bad = singularity("genesis", "env", "prune", "--older-than", "soon", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
