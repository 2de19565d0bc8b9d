"""The sandbox's one addition for environments: a host directory bound read-write elsewhere
than /work."""

from __future__ import annotations

from pathlib import Path

import pytest

from environment_support import sandbox
from singularity.genesis.limits import Limits

FAST = Limits(wall_s=10.0, cpu_s=5.0)


async def test_a_writable_bind_takes_writes_and_a_read_only_one_does_not(tmp_path: Path) -> None:
    layer, tools = tmp_path / "layer", tmp_path / "tools"
    layer.mkdir()
    tools.mkdir()
    script = "echo made > /env/made && (echo x > /tools/x || echo refused)"
    result = await sandbox().run(
        ["sh", "-c", script],
        limits=FAST,
        binds={"/tools": tools},
        writable_binds={"/env": layer},
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == b"refused\n"
    assert (layer / "made").read_text() == "made\n"
    assert not (tools / "x").exists()


@pytest.mark.parametrize("target", ["/work", "/work/env", "relative", "/"])
async def test_a_writable_bind_may_not_cover_work(tmp_path: Path, target: str) -> None:
    with pytest.raises(ValueError, match="outside /work"):
        await sandbox().run(["true"], limits=FAST, writable_binds={target: tmp_path})
