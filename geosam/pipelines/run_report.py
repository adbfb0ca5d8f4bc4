"""Per-epoch metrics of a fine-tuning run as CSV and as a picture."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from geosam.io.atomic import atomic_path, atomic_write_text


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """One row per epoch, columns in first-seen order."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    for row in history:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def write_curves(path: Path, history: list[dict[str, float]]) -> None:
    """Training loss and validation IoU (with the filled-box baseline) per epoch, as PNG."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(epochs, [r["val_iou"] for r in history], marker="o", label="mask IoU")
    right.plot(epochs, [r["box_iou"] for r in history], linestyle="--", label="filled box")
    right.plot(epochs, [r["prompter_recall"] for r in history], marker=".", label="prompter recall")
    right.set(xlabel="epoch", ylabel="validation", title="validation", ylim=(0, 1))
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
