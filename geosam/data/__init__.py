"""Data floor: per-chip samples (image, boxes, masks) from a scene and its footprints."""
