"""Train/validation split by chip, spatially separated so validation ships are unseen.

Overlapping chips share pixels, so a random split would leak validation ships into training.
Per scene, the eastmost chips holding at least `val_fraction` of the scene's ships become
validation, and training chips that overlap any validation chip are left out. A scene that
cannot be split that way (one annotated chip) only trains, so validation never scores a chip
the model trained on. Only when no scene can be split at all (one-shot on a single chip) does
the run validate on its training chips, and the caller warns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from geosam.geometry.grid import Chip


@dataclass(frozen=True)
class SplitChip:
    """What the split needs to know about a chip."""

    scene: str
    chip: Chip
    ships: int


def _overlaps(a: Chip, b: Chip) -> bool:
    return (
        a.col_off < b.col_off + b.size
        and b.col_off < a.col_off + a.size
        and a.row_off < b.row_off + b.size
        and b.row_off < a.row_off + a.size
    )


def spatial_split(
    chips: Sequence[SplitChip], val_fraction: float = 0.2
) -> tuple[list[int], list[int], bool]:
    """Indices of training and validation chips, and whether the split fell back to one set.

    Only chips with ships are split; chips without ships go to training unless they overlap
    validation chips (they teach the prompter what open water looks like).
    """
    by_scene: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(chips):
        by_scene[c.scene].append(i)
    train: list[int] = []
    val: list[int] = []
    unsplit: list[int] = []
    for indices in by_scene.values():
        total = sum(chips[i].ships for i in indices)
        annotated = [i for i in indices if chips[i].ships > 0]
        east_first = sorted(
            annotated, key=lambda i: (-chips[i].chip.col_off, chips[i].chip.row_off)
        )
        scene_val: list[int] = []
        seen = 0
        for i in east_first:
            if seen >= val_fraction * total or len(scene_val) == len(annotated) - 1:
                break
            scene_val.append(i)
            seen += chips[i].ships
        scene_train = [
            i
            for i in indices
            if i not in scene_val
            and not any(_overlaps(chips[i].chip, chips[v].chip) for v in scene_val)
        ]
        if not scene_val or not any(chips[i].ships for i in scene_train):
            train.extend(indices)  # too small to split: it trains only
            unsplit.extend(i for i in annotated)
            continue
        train.extend(scene_train)
        val.extend(scene_val)
    if val or not unsplit:
        return sorted(train), sorted(val), False
    return sorted(train), sorted(unsplit), True
