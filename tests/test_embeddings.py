"""Embedding cache: the encoder runs once per chip and encoder; disk and memory serve the rest."""

import math
import shutil

import numpy as np
import pytest
import torch

from geosam.model.embeddings import EmbeddingCache, encode_images
from geosam.model.registry import build_sam, get_spec

SPEC = get_spec("tiny")
SIZE, CELLS, DIM = SPEC.image_size, SPEC.embedding_size, SPEC.embedding_channels
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_sam("tiny")


@pytest.fixture
def calls(sam):
    """A list that grows by the batch size at every real call of the image encoder."""
    seen = []
    handle = sam.image_encoder.register_forward_hook(
        lambda module, inputs, output: seen.append(len(inputs[0]))
    )
    yield seen
    handle.remove()


def chips(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8) for _ in range(n)]


def npy_files(folder):
    return sorted(folder.rglob("*.npy"))


def test_first_get_encodes_in_batches_and_writes_float16_files(sam, calls, tmp_path):
    images = chips(3)
    cache = EmbeddingCache(sam, "tiny:test", tmp_path, CPU, batch_size=2)
    out = cache.get(images)
    assert out.shape == (3, DIM, CELLS, CELLS) and out.dtype == torch.float32
    assert out.device.type == "cpu"
    assert calls == [2, 1] and cache.encoder_calls == math.ceil(3 / 2) == 2
    assert cache.chips_encoded == 3
    files = npy_files(tmp_path)
    assert len(files) == 3
    assert {f.stem for f in files} == {cache.key(image) for image in images}
    assert all(f.parent.name == f.stem[:2] for f in files)  # sharded by key prefix
    for image, embedding in zip(images, out, strict=True):
        stored = np.load(tmp_path / cache.key(image)[:2] / f"{cache.key(image)}.npy")
        assert stored.dtype == np.float16 and stored.shape == (DIM, CELLS, CELLS)
        np.testing.assert_array_equal(stored.astype(np.float32), embedding.numpy())
    # The values are the encoder's, to float16 precision.
    with torch.no_grad():
        direct = encode_images(sam, torch.from_numpy(images[0][None]))
    torch.testing.assert_close(out[:1], direct, rtol=1e-3, atol=1e-3)


def test_second_get_and_a_new_cache_on_the_folder_never_encode(sam, calls, tmp_path):
    images = chips(2)
    cache = EmbeddingCache(sam, "tiny:test", tmp_path, CPU)
    first = cache.get(images)
    assert torch.equal(cache.get(images), first) and calls == [2]
    calls.clear()
    cache = EmbeddingCache(sam, "tiny:test", tmp_path, CPU)
    again = cache.get(images)
    assert calls == [] and cache.encoder_calls == 0
    assert torch.equal(again, first)
    # In a new order and with a repeat, each chip gets its own embedding back.
    mixed = cache.get([images[1], images[0], images[1]])
    assert calls == [] and cache.encoder_calls == 0
    assert torch.equal(mixed, first[[1, 0, 1]])
    assert len(npy_files(tmp_path)) == 2


def test_one_changed_pixel_or_another_encoder_is_a_new_key(sam, calls, tmp_path):
    (image,) = chips(1)
    cache = EmbeddingCache(sam, "tiny:aaaa", tmp_path, CPU)
    cache.get([image])
    changed = image.copy()
    changed[2, 100, 37] ^= 1
    assert cache.key(changed) != cache.key(image)
    calls.clear()
    cache.get([image, changed])
    assert calls == [1] and cache.encoder_calls == 2
    other = EmbeddingCache(sam, "tiny:bbbb", tmp_path, CPU)
    assert other.key(image) != cache.key(image)
    other.get([image])
    assert calls == [1, 1] and other.encoder_calls == 1
    assert len(npy_files(tmp_path)) == 3
    # The key depends on the pixels and the encoder only, not on the array object.
    assert cache.key(image.copy()) == cache.key(image)


def test_without_a_folder_embeddings_stay_in_memory(sam, calls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = chips(1)
    cache = EmbeddingCache(sam, "tiny:test", None, CPU)
    first = cache.get(images)
    assert calls == [1]
    assert torch.equal(cache.get(images), first) and calls == [1]
    assert list(tmp_path.iterdir()) == []
    # A new cache without a folder has nothing to reuse.
    EmbeddingCache(sam, "tiny:test", None, CPU).get(images)
    assert calls == [1, 1]


@pytest.fixture(scope="module")
def stored(sam, tmp_path_factory):
    """A cache folder holding the embeddings of two chips, and those embeddings."""
    folder = tmp_path_factory.mktemp("stored")
    images = chips(2, seed=9)
    return folder, images, EmbeddingCache(sam, "tiny:test", folder, CPU).get(images)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_file_is_recomputed_and_rewritten(sam, calls, tmp_path, stored, damage):
    source, images, first = stored
    shutil.copytree(source, tmp_path / "cache")
    cache = EmbeddingCache(sam, "tiny:test", tmp_path / "cache", CPU)
    key = cache.key(images[1])
    path = tmp_path / "cache" / key[:2] / f"{key}.npy"
    whole = path.read_bytes()
    broken = {"garbage": b"not an array" * 50, "truncated": whole[:300], "empty": b""}[damage]
    path.write_bytes(broken)
    again = cache.get(images)
    assert calls == [1] and cache.encoder_calls == 1  # only the damaged chip
    # Recomputed in another batch, so equal to float16 precision rather than bit for bit.
    torch.testing.assert_close(again, first, rtol=1e-3, atol=1e-3)
    rewritten = np.load(path)
    assert rewritten.dtype == np.float16
    np.testing.assert_array_equal(rewritten.astype(np.float32), again[1].numpy())
