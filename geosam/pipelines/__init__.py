"""Pipelines floor: tile, fine-tune, detect and evaluate, built from the floors below."""
