"""Image embeddings computed once per chip and kept on disk, so the encoder never runs twice.

With a frozen image encoder, a chip's embedding depends only on the chip's pixels and the
encoder weights. The cache key is therefore a hash of both: the uint8 chip array (which
already reflects the scene bytes, the window, the bands and the stretch) and a fingerprint of
the encoder (model type and base-weights hash). Any change of either is a new key; nothing
stale can be served. Embeddings are stored as float16 ``.npy`` files, sharded by key prefix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from segment_anything.modeling import Sam

from geosam.io.atomic import atomic_path

log = logging.getLogger(__name__)


def encode_images(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    """Run SAM's image encoder. images: (B, 3, S, S) uint8 or float RGB 0-255 -> (B, C, E, E)."""
    pixels = (images.float() - sam.pixel_mean) / sam.pixel_std
    return sam.image_encoder(pixels)


class EmbeddingCache:
    """Embeddings of chips, from memory, then disk, then the encoder (counted).

    Args:
        sam: the model whose frozen image encoder makes embeddings.
        fingerprint: identifies the encoder weights, e.g. ``"vit_b:<sha256>"``.
        folder: where ``.npy`` files live; None keeps them in memory only.
        device: where the encoder runs.
        batch_size: chips per encoder call.
    """

    def __init__(
        self,
        sam: Sam,
        fingerprint: str,
        folder: Path | None,
        device: torch.device,
        batch_size: int = 4,
    ) -> None:
        self.sam, self.fingerprint, self.folder = sam, fingerprint, folder
        self.device, self.batch_size = device, batch_size
        self.encoder_calls = 0
        self.chips_encoded = 0
        self._memory: dict[str, NDArray[np.float16]] = {}

    def key(self, image: NDArray[np.uint8]) -> str:
        """Cache key of a (3, S, S) uint8 chip for this encoder."""
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / f"{key}.npy"

    def get(self, images: Sequence[NDArray[np.uint8]]) -> torch.Tensor:
        """Embeddings (B, C, E, E) float32 on CPU for (3, S, S) uint8 chips, encoding misses."""
        keys = [self.key(image) for image in images]
        missing = []
        for i, key in enumerate(keys):
            if key in self._memory:
                continue
            path = self._path(key)
            if path is not None and path.exists():
                try:
                    self._memory[key] = np.load(path)
                    continue
                except (OSError, ValueError, EOFError):  # EOFError: an empty file
                    log.warning("embedding cache file %s is unreadable; recomputing", path)
            missing.append(i)
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            pixels = torch.from_numpy(np.stack([images[i] for i in batch])).to(self.device)
            with torch.no_grad():
                out = encode_images(self.sam, pixels).float().cpu().numpy().astype(np.float16)
            self.encoder_calls += 1
            self.chips_encoded += len(batch)
            for i, embedding in zip(batch, out, strict=True):
                self._memory[keys[i]] = embedding
                self._store(keys[i], embedding)
        return torch.from_numpy(np.stack([self._memory[k] for k in keys]).astype(np.float32))

    def _store(self, key: str, embedding: NDArray[np.float16]) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, embedding)
