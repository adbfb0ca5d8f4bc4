"""Outputs written completely or not at all, whenever an interrupt lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from geosam.io.atomic import atomic_path
from geosam.io.staging import staged_output, staging_folder


def test_an_interrupt_just_after_the_staging_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """Cancel in QGIS can land at any instant, also between making the folder and using it."""
    out = tmp_path / "out"
    make = Path.mkdir

    def make_then_interrupt(self: Path, *args: object, **kwargs: object) -> None:
        make(self, *args, **kwargs)
        if self == staging_folder(out):
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", make_then_interrupt)
    with pytest.raises(KeyboardInterrupt), staged_output(out, ["chips"], "metadata.json"):
        pytest.fail("the block never starts")
    assert not staging_folder(out).exists()
    assert not out.exists()


def test_a_finished_block_moves_its_files_in_and_leaves_no_staging_folder(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, ["chips", "metadata.json"], "metadata.json") as stage:
        (stage / "chips").mkdir()
        (stage / "metadata.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["chips", "metadata.json"]
    assert not staging_folder(out).exists()


def test_an_interrupted_file_write_leaves_the_folder_as_it_was(tmp_path):
    final = tmp_path / "ships.gpkg"
    final.write_text("the previous run's layer")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".gpkg" and not tmp.exists()
        tmp.write_text("half a layer")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["ships.gpkg"]
    assert final.read_text() == "the previous run's layer"
    with atomic_path(final) as tmp:
        tmp.write_text("this run's layer")
    assert [p.name for p in tmp_path.iterdir()] == ["ships.gpkg"]
    assert final.read_text() == "this run's layer"
