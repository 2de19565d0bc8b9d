"""A manifest read back from the bus is hostile input: every rule of `Manifest.from_json`."""

from __future__ import annotations

from typing import Any

import pytest

from singularity.shared_queue.manifest import CHUNK_BYTES, Entry, Manifest, ManifestRefused

DIGEST = "a" * 64


def _file(path: str, size: int = 3, mode: int = 0o644) -> dict[str, Any]:
    chunks = [DIGEST] * (-(-size // CHUNK_BYTES))
    return {"path": path, "type": "file", "mode": mode, "size": size, "chunks": chunks}


def _manifest(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "entries": list(entries)}


def test_a_manifest_survives_its_canonical_json_and_keeps_its_id() -> None:
    manifest = Manifest.of(
        [
            Entry("b/run.sh", "file", mode=0o755, size=3, chunks=(DIGEST,)),
            Entry("a.txt", "file", mode=0o644, size=0),
            Entry("link", "symlink", target="/etc/passwd"),
            Entry("empty", "dir"),
        ]
    )
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest and again.id == manifest.id
    assert [entry.path for entry in manifest.entries] == ["a.txt", "b/run.sh", "empty", "link"]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (_file("../x"), "not a plain path"),
        (_file("a/../../x"), "not a plain path"),
        (_file("/etc/cron.d/x"), "not relative"),
        (_file(""), "not relative"),
        (_file("a//b"), "not a plain path"),
        (_file(".git/hooks/pre-commit"), ".git"),
        (_file("nul\0byte"), "not relative"),
        (_file("big", size=1 << 40), "no valid size"),
        ({**_file("x"), "chunks": ["not-a-digest"]}, "chunk digests"),
        ({**_file("x"), "chunks": []}, "0 chunks for 3 bytes"),
        ({**_file("x"), "mode": "0755"}, "no valid mode"),
        ({"path": "l", "type": "symlink", "target": ""}, "no valid target"),
        ({"path": "d", "type": "fifo"}, "unknown type"),
    ],
)
def test_a_bad_entry_is_refused_with_its_reason(entry: dict[str, Any], reason: str) -> None:
    with pytest.raises(ManifestRefused, match=reason):
        Manifest.from_json(_manifest(entry))


def test_a_path_through_a_symlink_entry_is_refused() -> None:
    link = {"path": "out", "type": "symlink", "target": "/etc"}
    with pytest.raises(ManifestRefused, match="lies under 'out', which is a symlink"):
        Manifest.from_json(_manifest(link, _file("out/passwd")))


def test_a_path_under_a_file_is_refused() -> None:
    with pytest.raises(ManifestRefused, match="which is a file"):
        Manifest.from_json(_manifest(_file("a"), _file("a/b")))


def test_a_duplicate_path_is_refused() -> None:
    with pytest.raises(ManifestRefused, match="listed twice"):
        Manifest.from_json(_manifest(_file("a"), {"path": "a", "type": "symlink", "target": "b"}))


def test_a_huge_declared_size_is_refused_before_anything_is_fetched() -> None:
    entries = [_file(f"f{i}", size=600 << 20) for i in range(2)]
    with pytest.raises(ManifestRefused, match="more than the 1024 MiB allowed"):
        Manifest.from_json(_manifest(*entries))
    with pytest.raises(ManifestRefused, match="more than the 100 MiB allowed"):
        Manifest.from_json(_manifest(entries[0]), max_bytes=100 << 20)


def test_too_many_entries_are_refused() -> None:
    with pytest.raises(ManifestRefused, match="more than 2 entries"):
        Manifest.from_json(_manifest(_file("a"), _file("b"), _file("c")), max_entries=2)


def test_one_digest_given_two_lengths_is_refused() -> None:
    with pytest.raises(ManifestRefused, match="two different lengths"):
        Manifest.from_json(_manifest(_file("a", size=3), _file("b", size=4)))


def test_modes_are_reduced_to_0644_and_0755() -> None:
    found = Manifest.from_json(
        _manifest(_file("a", mode=0o4777), _file("b", mode=0o600), _file("c", mode=0o7100))
    )
    assert [entry.mode for entry in found.entries] == [0o755, 0o644, 0o755]


@pytest.mark.parametrize("data", [None, [], {"version": 2, "entries": []}, {"version": 1}])
def test_what_is_not_a_manifest_is_refused(data: Any) -> None:
    with pytest.raises(ManifestRefused):
        Manifest.from_json(data)
