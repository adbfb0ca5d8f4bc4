from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import pytest
import torch

import geosam.model  # noqa: F401  (makes segment_anything importable)
from geosam.errors import CheckpointError, InputNotFoundError
from geosam.model.checkpoints import (
    RANDOM_INIT,
    cache_dir,
    detect_model_type,
    load_sam,
    resolve_checkpoint,
    sha256_file,
)
from geosam.model.registry import build_sam, model_names


@pytest.fixture(autouse=True)
def geosam_home(tmp_path, monkeypatch):
    """Point the cache at an empty folder so the user's real cache never matters."""
    home = tmp_path / "home"
    monkeypatch.setenv("GEOSAM_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory):
    """A randomly initialised vit_b saved the way official files are: Sam.state_dict()."""
    torch.manual_seed(0)
    state = build_sam("vit_b").state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "my_vit_b.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_sam("tiny").state_dict(), path)
    return path


def test_cache_dir_from_env(geosam_home, monkeypatch):
    assert cache_dir() == geosam_home / "checkpoints"
    monkeypatch.delenv("GEOSAM_HOME")
    assert cache_dir() == Path.home() / ".cache" / "geosam" / "checkpoints"


def test_vit_b_round_trip(vit_b_file):
    path, saved = vit_b_file
    sam, base_hash = load_sam("vit_b", path)
    assert base_hash == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    loaded = sam.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert not sam.training


def test_official_file_found_in_cache(vit_b_file, geosam_home):
    path, _ = vit_b_file
    cached = geosam_home / "checkpoints" / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    os.symlink(path, cached)
    assert resolve_checkpoint("vit_b", None) == cached


def test_tiny_without_checkpoint_is_random():
    assert resolve_checkpoint("tiny", None) is None
    sam, base_hash = load_sam("tiny")
    assert base_hash == RANDOM_INIT
    assert sam.image_encoder.stem[0].weight.shape == (24, 3, 3, 3)  # the convolutional encoder


def test_tiny_with_checkpoint(tiny_file):
    sam, base_hash = load_sam("tiny", tiny_file)
    assert base_hash == sha256_file(tiny_file)
    saved = torch.load(tiny_file, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in sam.state_dict().items())


def test_vit_b_without_checkpoint_says_how(geosam_home):
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint("vit_b", None)
    message = str(info.value)
    assert "geosam weights download vit_b" in message
    assert "sam_vit_b_01ec64.pth" in message
    assert str(geosam_home / "checkpoints") in message
    assert "--checkpoint" in message


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(InputNotFoundError, match="nope.pth"):
        load_sam("tiny", missing)


def test_folder_as_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_sam("tiny", tmp_path)


def test_random_bytes(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"garbage\.pth.*not a PyTorch checkpoint"):
        load_sam("tiny", path)


def test_truncated_file(tiny_file):
    data = tiny_file.read_bytes()
    tiny_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"tiny\.pth.*corrupt or truncated\?\); download"):
        load_sam("tiny", tiny_file)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_sam("tiny", path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=r"other\.pth: is not a SAM state_dict"):
        load_sam("tiny", path)


def test_nested_state_dict_is_named(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": build_sam("tiny").state_dict(), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="nested under 'model'"):
        load_sam("tiny", path)


def test_other_model_type(tiny_file):
    with pytest.raises(CheckpointError) as info:
        load_sam("vit_b", tiny_file)
    message = str(info.value)
    assert "holds tiny weights, but --model-type is vit_b" in message
    assert str(tiny_file) in message


def test_state_dict_with_missing_keys(tmp_path):
    state = build_sam("tiny").state_dict()
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"partial\.pth: does not fit tiny"):
        load_sam("tiny", path)


def test_unregistered_shape(tmp_path):
    state = build_sam("tiny").state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("image_encoder.stages.3.")}
    path = tmp_path / "three_stages.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="an image encoder, which matches no model type"):
        load_sam("tiny", path)


def test_unregistered_vit_shape_is_described(tmp_path):
    with torch.device("meta"):
        state = build_sam("vit_b").state_dict()
    state = {
        k: torch.zeros(v.shape) if "patch_embed" in k or "pos_embed" in k else torch.zeros(1)
        for k, v in state.items()
        if not k.startswith("image_encoder.blocks.11.")
    }
    path = tmp_path / "eleven_blocks.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="11-block, 768-wide encoder at 1024 px"):
        load_sam("vit_b", path)


@pytest.mark.parametrize("name", model_names())
def test_detect_model_type(name):
    with torch.device("meta"):
        state = build_sam(name).state_dict()
    found = detect_model_type(state)
    assert found is not None and found.name == name


def test_cached_official_name_with_other_hash_warns(tiny_file, geosam_home, monkeypatch, caplog):
    """A file under an official name whose hash differs from the name's prefix is flagged."""
    from geosam.model import registry

    spec = dataclasses.replace(
        registry.MODEL_TYPES["tiny"], official_filename="sam_tiny_000000.pth"
    )
    monkeypatch.setitem(registry.MODEL_TYPES, "tiny", spec)
    cached = geosam_home / "checkpoints" / "sam_tiny_000000.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_file.read_bytes())
    assert resolve_checkpoint("tiny", None) == cached
    with caplog.at_level(logging.WARNING, logger="geosam"):
        _, base_hash = load_sam("tiny")
    assert base_hash == sha256_file(cached)
    assert not base_hash.startswith("000000")
    assert "not 000000 as the official file does" in caplog.text
