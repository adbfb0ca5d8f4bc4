"""Model floor: SAM registry, checkpoints, embedding cache, prompter head, losses."""

from geosam.model.compat import ensure_torchvision

ensure_torchvision()
