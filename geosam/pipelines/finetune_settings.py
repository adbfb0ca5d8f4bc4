"""What a fine-tuning run is asked to do (`FinetuneSettings`) and what it reports (`EpochEvent`).

Kept apart from the trainer so the command line, the benchmarks and the run files can speak
about a run without importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FinetuneSettings:
    """Hyper-parameters of a fine-tuning run (all recorded in the run's files).

    Training length is counted in optimiser steps (`steps`), validated every `val_every`
    steps; one round of `val_every` steps is what the run files call an epoch. A small
    annotated scene has a handful of chips, so a pass over them is too short a unit to train a
    model from scratch. `epochs`, when given, instead makes each round one pass over the
    training chips and trains that many rounds. `minutes`, when given, caps the time of the
    training and validation rounds: the number of rounds (and the learning-rate schedule) is
    fitted to what the machine manages (`geosam.pipelines.time_budget`), so the step count then
    depends on the machine's speed. `average_decay` above 0 validates and saves a moving
    average of the weights over about 1 / (1 - decay) steps instead of the last step's
    (`geosam.pipelines.weight_average`).
    """

    model_type: str = "tiny"
    checkpoint: str | None = None
    steps: int = 1500
    val_every: int = 100
    epochs: int | None = None
    minutes: float | None = None
    batch_chips: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    average_decay: float = 0.995
    val_fraction: float = 0.2
    patience: int = 8
    augment: bool = True
    paste_ships: int = 0
    colour_jitter: bool = False
    train_encoder: bool | None = None
    device: str = "auto"
    seed: int = 0
    cache: bool = True


@dataclass
class EpochEvent:
    """Progress report after each step (`step` counts within the epoch) and epoch end."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)
