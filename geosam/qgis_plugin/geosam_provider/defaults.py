"""The geosam CLI's defaults and choices, copied so that QGIS need not import geosam.

QGIS's Python has no torch, and the plugin runs the `geosam` command of the user's own
environment instead of importing it. The values below mirror the click options of each
command; tests/test_qgis_provider.py compares them with the CLI so they cannot drift.
"""

from __future__ import annotations

PLUGIN_VERSION = "0.1.0"
"""The geosam version this plugin was released with (also in metadata.txt)."""

MIN_GEOSAM_VERSION = "0.1.0"
"""The oldest `geosam` command with what the plugin needs (`--progress json`, SIGTERM)."""

CLI_DEFAULTS: dict[str, dict[str, object]] = {
    "tile": {
        "size": 1024,
        "percentiles": (2.0, 98.0),
        "min_visible": 0.25,
        "codec": "deflate",
        "overlap": None,
    },
    "finetune": {
        "model_type": "tiny",
        "steps": 1500,
        "val_every": 100,
        "batch_chips": 4,
        "lr": 0.001,
        "patience": 8,
        "val_fraction": 0.2,
        "box_jitter": 0.1,
        "paste_ships": 0,
        "device": "auto",
        "seed": 0,
        "overlap": None,
    },
    "detect": {"device": "auto", "min_score": None, "prompter_threshold": None},
    "evaluate": {"iou_threshold": 0.5},
}
"""Command -> click parameter name -> default."""

CLI_CHOICES: dict[str, dict[str, list[str]]] = {
    "tile": {"codec": ["deflate", "zstd", "lzw", "none"]},
    "finetune": {
        "model_type": ["tiny", "vit_b", "vit_h", "vit_l"],
        "device": ["auto", "cpu", "cuda"],
    },
    "detect": {"device": ["auto", "cpu", "cuda"]},
}
"""Command -> click parameter name -> allowed values, in the CLI's order."""

ENCODER_CHOICES = ["default (train tiny, freeze vit_*)", "train", "freeze"]
"""`finetune --train-encoder/--freeze-encoder`, or neither."""
