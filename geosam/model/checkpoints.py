"""Find and load SAM weights: explicit file, then the cache folder, then random init (tiny).

Official checkpoints are plain ``Sam.state_dict()`` files. They are loaded with
``weights_only=True`` (no code runs from the file), checked to be a SAM state_dict of the
requested model type before any model is built, and identified by the sha256 of the file so
that embeddings and fine-tuned checkpoints can record which base weights made them.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from geosam.errors import CheckpointError, InputNotFoundError
from geosam.model.registry import MODEL_TYPES, ModelSpec, build_sam, get_spec

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
"""The base hash of a model that starts from random weights."""

_VIT_KEY = "image_encoder.patch_embed.proj.weight"


def cache_dir() -> Path:
    """Folder of downloaded weights: ``$GEOSAM_HOME/checkpoints`` or ~/.cache/geosam/checkpoints."""
    home = os.environ.get("GEOSAM_HOME")
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "geosam"
    return root / "checkpoints"


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so that multi-GB checkpoints fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(model_type: str, checkpoint: str | os.PathLike[str] | None) -> Path | None:
    """The weights file to load for `model_type`, or None to start from random weights.

    An explicit `checkpoint` must exist. Without one, the official file in `cache_dir()` is
    used; ``tiny`` has no official weights and starts from random ones.
    """
    spec = get_spec(model_type)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise InputNotFoundError(f"{path}: checkpoint not found")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder; pass the checkpoint file (.pth)")
        return path
    if spec.official_filename is None:
        return None
    cached = cache_dir() / spec.official_filename
    if cached.is_file():
        return cached
    raise CheckpointError(
        f"no checkpoint for {spec.name}: pass --checkpoint PATH, put {spec.official_filename} "
        f"in {cache_dir()}, or run `geosam weights download {spec.name}`"
    )


def load_sam(model_type: str, checkpoint: str | os.PathLike[str] | None = None) -> tuple[Sam, str]:
    """Build SAM of `model_type` and load its weights (see `resolve_checkpoint`).

    Returns:
        The model in eval mode on the CPU, and the base hash: the hex sha256 of the weights
        file, or ``"random-init"`` when no file was loaded.
    """
    spec = get_spec(model_type)
    path = resolve_checkpoint(model_type, checkpoint)
    if path is None:
        log.info("%s starts from random weights", spec.name)
        return build_sam(spec), RANDOM_INIT
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    _warn_if_not_official(path, spec, digest)
    state_dict = _read_state_dict(path)
    found = _check_state_dict(path, state_dict, spec)
    if found.name != spec.name:
        raise CheckpointError(
            f"{path} holds {found.name} weights, but --model-type is {spec.name}; "
            f"pass --model-type {found.name} or a {spec.name} checkpoint"
        )
    sam = build_sam(spec)
    try:
        sam.load_state_dict(state_dict)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1:2] or [str(exc)]
        raise CheckpointError(
            f"{path}: does not fit {spec.name} ({detail[0].strip()}); pass a {spec.name} "
            "checkpoint saved from Sam.state_dict()"
        ) from exc
    log.info("loaded %s weights from %s (sha256 %s)", spec.name, path, digest[:12])
    return sam, digest


def detect_model_type(state_dict: Mapping[str, torch.Tensor]) -> ModelSpec | None:
    """The registered type whose image encoder has exactly these parameter names and shapes."""
    found = _encoder_shapes(state_dict)
    return next((spec for spec in MODEL_TYPES.values() if _spec_shapes(spec.name) == found), None)


@functools.cache
def _spec_shapes(name: str) -> frozenset[tuple[str, tuple[int, ...]]]:
    """Image-encoder parameter names and shapes of a registered type (built on the meta device)."""
    with torch.device("meta"):
        return _encoder_shapes(build_sam(name).state_dict())


def _encoder_shapes(
    state_dict: Mapping[str, torch.Tensor],
) -> frozenset[tuple[str, tuple[int, ...]]]:
    return frozenset(
        (k, tuple(v.shape)) for k, v in state_dict.items() if k.startswith("image_encoder.")
    )


def _describe_encoder(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'a 3-block, 128-wide ViT encoder at 256 px', or what little can be said of another kind."""
    if _VIT_KEY not in state_dict:
        return "an image encoder"
    blocks = {
        int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))
    }
    patch = state_dict[_VIT_KEY].shape  # (width, 3, patch, patch)
    pos = state_dict.get("image_encoder.pos_embed")  # (1, E, E, width)
    cells = int(pos.shape[1]) if pos is not None else 0
    return f"a {len(blocks)}-block, {int(patch[0])}-wide encoder at {cells * int(patch[-1])} px"


def _read_state_dict(path: Path) -> object:
    """`torch.load` the file safely; every failure becomes a `CheckpointError` with a fix."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # torch.load fails with many types on bad bytes
        if "Weights only load failed" in str(exc) and zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path}: holds Python objects besides tensors, which are not loaded for "
                "safety; pass a plain state_dict (torch.save(sam.state_dict(), path))"
            ) from exc
        raise CheckpointError(
            f"{path}: is not a PyTorch checkpoint (corrupt or truncated?); download it again"
        ) from exc


def _check_state_dict(path: Path, obj: object, spec: ModelSpec) -> ModelSpec:
    """Make sure `obj` is a SAM state_dict; return the registered type it matches."""
    if not isinstance(obj, dict) or not _is_sam_state(obj):
        hint = ""
        if isinstance(obj, dict):
            nested = [k for k, v in obj.items() if isinstance(v, dict) and _is_sam_state(v)]
            if nested:
                hint = f" (SAM weights are nested under {nested[0]!r})"
        raise CheckpointError(
            f"{path}: is not a SAM state_dict{hint}; pass a file saved from "
            f"Sam.state_dict(), such as {spec.official_filename or 'sam_vit_b_01ec64.pth'}"
        )
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: is not a SAM state_dict (holds values besides tensors)")
    found = detect_model_type(obj)
    if found is None:
        raise CheckpointError(
            f"{path}: holds a SAM with {_describe_encoder(obj)}, which matches no model type "
            "(choose one of "
            f"{', '.join(sorted(MODEL_TYPES))}); --model-type is {spec.name}"
        )
    return found


def _is_sam_state(obj: Mapping[str, object]) -> bool:
    """Whether a mapping looks like ``Sam.state_dict()``: encoder and decoder entries."""
    keys = [k for k in obj if isinstance(k, str)]
    return any(k.startswith("image_encoder.") for k in keys) and any(
        k.startswith("mask_decoder.") for k in keys
    )


def _warn_if_not_official(path: Path, spec: ModelSpec, digest: str) -> None:
    """Log when a file named like the official weights has another hash (modified or corrupt)."""
    prefix = spec.sha256_prefix
    if path.name == spec.official_filename and prefix and not digest.startswith(prefix):
        log.warning(
            "%s: sha256 starts with %s, not %s as the official file does; it may be "
            "modified or corrupt",
            path,
            digest[:6],
            prefix,
        )
